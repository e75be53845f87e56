/* clock: the one interval clock (CLOCK_MONOTONIC, nanoseconds) and wall-clock labels.
 * Intervals are always measured with clock_now_ns(); wall time is only a label in reports. */
#ifndef SLM_CLOCK_H
#define SLM_CLOCK_H

#include <stdint.h>
#include <stddef.h>

typedef uint64_t mono_ns;

/* Monotonic nanoseconds since an arbitrary origin. Any thread. */
mono_ns clock_now_ns(void);

/* Wall clock, seconds since the epoch (a label, never for intervals). */
double clock_wall_s(void);

/* Writes an ISO-8601 UTC label ("2026-11-22T21:30:16Z") into out (>= 21 bytes). */
void clock_wall_iso(char *out, size_t out_len);

/* Sleeps at least ns nanoseconds (used by pacing loops, never to imitate work). */
void clock_sleep_ns(uint64_t ns);

static inline double ns_to_ms(uint64_t ns)
{
    return (double)ns / 1e6;
}
static inline double ns_to_s(uint64_t ns)
{
    return (double)ns / 1e9;
}

#endif
