/* bigmem: 2 MiB-aligned anonymous maps with madvise(MADV_HUGEPAGE), committed by a parallel
 * first touch (see bigmem.h). The mapping is over-allocated by one huge page and trimmed, so the
 * returned pointer is aligned and the region's size is rounded up to whole huge pages; free
 * recomputes the same rounding. Whether huge pages really backed the region is read from
 * /proc/self/smaps_rollup (AnonHugePages before and after the touch), a process-wide figure:
 * good enough for a start-up log line, not an exact accounting. */
#include "engine/bigmem.h"

#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/clock.h"

#define BIGMEM_HUGE ((size_t)2 << 20)

static size_t round_up(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

static size_t page_bytes(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

/* AnonHugePages of the whole process in bytes, 0 if unreadable. */
static uint64_t anon_huge_bytes(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (uint64_t)kb * 1024u;
}

int bigmem_thp_available(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f)
        return 0;
    char line[128] = {0};
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    return ok && (strstr(line, "[always]") || strstr(line, "[madvise]"));
}

static int touch_threads(void)
{
#if defined(__SANITIZE_THREAD__)
    /* TSan cannot see libgomp's barriers: later accesses from the engine thread would be
     * reported as racing with the team's writes (forward.c makes the same choice). */
    return 1;
#else
    return omp_get_max_threads();
#endif
}

int bigmem_touch(void *p, size_t bytes, int write)
{
    if (!p || bytes == 0)
        return 0;
    const size_t pg = page_bytes();
    const size_t n_chunks = (bytes + BIGMEM_HUGE - 1) / BIGMEM_HUGE;
    int nt = touch_threads();
    if ((size_t)nt > n_chunks)
        nt = (int)n_chunks;
    volatile unsigned char *base = p;
    unsigned char sink = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(^ : sink) if (nt > 1)
    for (size_t c = 0; c < n_chunks; c++) {
        size_t lo = c * BIGMEM_HUGE, hi = lo + BIGMEM_HUGE < bytes ? lo + BIGMEM_HUGE : bytes;
        for (size_t off = lo; off < hi; off += pg) {
            if (write)
                base[off] = 0;
            else
                sink ^= base[off];
        }
    }
    (void)sink;
    return nt;
}

void *bigmem_alloc(size_t bytes, int commit, struct bigmem_info *info)
{
    struct bigmem_info bi;
    memset(&bi, 0, sizeof bi);
    if (bytes == 0 || bytes > SIZE_MAX - 2 * BIGMEM_HUGE) {
        errno = EINVAL;
        return NULL;
    }
    size_t len = round_up(bytes, BIGMEM_HUGE);
    size_t map_len = len + BIGMEM_HUGE;
    unsigned char *raw = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                              -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    unsigned char *p = (unsigned char *)round_up((size_t)(uintptr_t)raw, BIGMEM_HUGE);
    size_t head = (size_t)(p - raw), tail = map_len - head - len;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap(p + len, tail);
    bi.thp_requested = madvise(p, len, MADV_HUGEPAGE) == 0 && bigmem_thp_available();
    if (commit) {
        uint64_t huge0 = anon_huge_bytes();
        mono_ns t0 = clock_now_ns();
        bi.n_threads = bigmem_touch(p, len, 1);
        bi.touch_ns = (uint64_t)(clock_now_ns() - t0);
        uint64_t huge1 = anon_huge_bytes();
        bi.thp_bytes = huge1 > huge0 ? huge1 - huge0 : 0;
    }
    if (info)
        *info = bi;
    return p;
}

void bigmem_free(void *p, size_t bytes)
{
    if (p && bytes)
        munmap(p, round_up(bytes, BIGMEM_HUGE));
}
