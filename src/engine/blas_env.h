/* blas_env: makes OpenBLAS use the kernels this CPU can run. OpenBLAS (DYNAMIC_ARCH) picks its
 * kernels from the CPU model when it is loaded; on CPUs it does not recognise (many virtual
 * machines report a generic model) it falls back to SSE3 "Prescott" kernels, measured 4.6x
 * slower than SkylakeX's on an AVX-512 VM. The choice cannot change after load, only through
 * OPENBLAS_CORETYPE before it, so the fix is to set it and re-execute the process once.
 * It does no arithmetic and does not include <cblas.h> (forward.c owns BLAS). */
#ifndef SLM_BLAS_ENV_H
#define SLM_BLAS_ENV_H

/* The kernel family OpenBLAS picked ("Prescott", "SkylakeX", ...), or "unknown". */
const char *blas_env_core(void);

/* "SkylakeX" or "Haswell" when OpenBLAS picked older kernels than the CPU (with OS support)
 * can run; NULL when its choice is fine or nothing better applies. Any thread. */
const char *blas_env_better_core(void);

/* When blas_env_better_core() names a family and OPENBLAS_CORETYPE is unset (and
 * SLMPROBE_NO_REEXEC is unset), sets OPENBLAS_CORETYPE and re-executes /proc/self/exe with argv:
 * the same pid, so a supervisor tracking it sees no change. Returns only when it did not re-exec
 * (nothing to do, or exec failed: then it logs why and the process goes on with slow kernels).
 * Call from main() before any thread starts. */
void blas_env_reexec_if_needed(char **argv);

#endif
