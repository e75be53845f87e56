/* blas_env: OPENBLAS_CORETYPE fix-up by re-exec; see blas_env.h. */
#include "engine/blas_env.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/log.h"

/* From OpenBLAS (declared here so that only forward.c includes <cblas.h>). */
char *openblas_get_corename(void);

const char *blas_env_core(void)
{
    const char *core = openblas_get_corename();
    return core ? core : "unknown";
}

const char *blas_env_better_core(void)
{
    static const char *const old_cores[] = {"Prescott", "Core2",    "Penryn",     "Dunnington",
                                            "Nehalem",  "Atom",     "Katmai",     "Coppermine",
                                            "Northwood", "Banias",  "Barcelona", "Sandybridge",
                                            "unknown"};
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                 __builtin_cpu_supports("avx512cd");
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const char *want = avx512 ? "SkylakeX" : avx2 ? "Haswell" : NULL;
    if (!want)
        return NULL;
    const char *core = blas_env_core();
    int old = 0;
    for (size_t i = 0; i < sizeof old_cores / sizeof old_cores[0]; i++)
        if (!strcasecmp(core, old_cores[i]))
            old = 1;
    /* An AVX2 family on an AVX-512 CPU is fine: OpenBLAS chose it on purpose (e.g. Zen 4). */
    return old ? want : NULL;
}

void blas_env_reexec_if_needed(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || getenv("SLMPROBE_NO_REEXEC"))
        return;
    const char *want = blas_env_better_core();
    if (!want)
        return;
    const char *core = blas_env_core();
    if (setenv("OPENBLAS_CORETYPE", want, 1) != 0)
        return;
    log_debug("blas", "OpenBLAS picked %s kernels; re-executing with OPENBLAS_CORETYPE=%s", core,
              want);
    execv("/proc/self/exe", argv);
    log_warn("blas", "could not re-execute with OPENBLAS_CORETYPE=%s; matrix products use the "
                     "slower %s kernels",
             want, core);
}
