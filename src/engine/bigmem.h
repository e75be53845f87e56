/* bigmem: large anonymous allocations committed at memory bandwidth. The KV pool and the
 * converted f16 weights are gigabytes that must be resident before the server says ready (vLLM
 * pre-allocates its KV cache, and the probe reads that in RSS). malloc + a page-by-page touch on
 * one thread faults 4 KiB at a time (about 0.25 GB/s measured); here the region is an mmap
 * aligned to 2 MiB with madvise(MADV_HUGEPAGE), so the kernel can back it with transparent huge
 * pages, and the OpenMP team writes one byte per page in parallel. Anonymous pages arrive zeroed,
 * so the region is zero without a second pass.
 *
 *   struct bigmem_info bi;
 *   float *p = bigmem_alloc(bytes, 1, &bi);    // committed + zero; bi says THP, time, threads
 *   ...
 *   bigmem_free(p, bytes);
 */
#ifndef SLM_BIGMEM_H
#define SLM_BIGMEM_H

#include <stddef.h>
#include <stdint.h>

struct bigmem_info {
    int thp_requested;     /* madvise(MADV_HUGEPAGE) succeeded on the region */
    uint64_t thp_bytes;    /* AnonHugePages of the region after the touch (smaps), 0 if unknown */
    uint64_t touch_ns;     /* time of the parallel first touch (0 when commit is 0) */
    int n_threads;         /* threads that touched */
};

/* bytes (> 0) of zeroed, page-aligned memory. commit: write every page now (in parallel), so it
 * is resident on return; else pages fault in on first use. NULL (errno set) if mmap failed.
 * info may be NULL. */
void *bigmem_alloc(size_t bytes, int commit, struct bigmem_info *info);
/* Frees a bigmem_alloc region of the same size. NULL-safe. */
void bigmem_free(void *p, size_t bytes);
/* Touches every page of [p, p + bytes) in parallel, reading (write 0: read the byte only, for
 * file maps) or writing zero over the first byte of each page (write 1). Returns the threads
 * used. */
int bigmem_touch(void *p, size_t bytes, int write);
/* Whether transparent huge pages can back a madvise'd region ("always" or "madvise" in
 * /sys/kernel/mm/transparent_hugepage/enabled). */
int bigmem_thp_available(void);

#endif
