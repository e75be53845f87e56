/* hist: a log-bucketed histogram of non-negative values (latencies in ms, gaps, rates) with a
 * stated relative precision, so that a probe can report percentiles over any number of requests
 * in fixed memory (HdrHistogram's idea, simplified). Buckets are geometric: bucket i covers
 * [lo * g^i, lo * g^(i+1)) with g = 1 + 2 * HIST_REL_PRECISION; a percentile is reported as the
 * bucket's midpoint, so it is within HIST_REL_PRECISION (1%) of some sample of that rank. Values
 * below HIST_MIN_VALUE count in bucket 0, above HIST_MAX_VALUE in the overflow count (reported,
 * never dropped). Mean, min and max are exact. It does not store samples and does not allocate
 * after hist_init. One thread per histogram.
 *
 *   struct hist h;
 *   hist_init(&h);
 *   hist_add(&h, ttft_ms);            // NAN and negative values are counted in n_invalid
 *   struct summary s;
 *   hist_summary(&h, &s);             // n, mean, min, p50, p90, p95, p99, max, stddev
 */
#ifndef SLM_MEASURE_HIST_H
#define SLM_MEASURE_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "measure/stats.h"

#define HIST_REL_PRECISION 0.01 /* half-width of a bucket relative to its midpoint */
#define HIST_MIN_VALUE 1e-3     /* e.g. 1 us when values are in ms */
#define HIST_MAX_VALUE 1e8      /* e.g. ~28 h in ms */
#define HIST_N_BUCKETS 1282     /* ceil(ln(MAX/MIN) / ln(1 + 2 * precision)) + 2 */

struct hist {
    uint64_t n;         /* values added (valid ones, overflow included) */
    uint64_t n_invalid; /* NAN or negative: not in any statistic */
    uint64_t n_over;    /* > HIST_MAX_VALUE: counted in n, mean, max; ranked last */
    double sum, sum_sq, min, max;
    uint32_t bucket[HIST_N_BUCKETS];
};

void hist_init(struct hist *h);                            /* empty */
void hist_add(struct hist *h, double v);                   /* O(1) */
void hist_merge(struct hist *into, const struct hist *from);
/* p in [0,100]; NAN when empty. Exact min at 0 and max at 100. */
double hist_percentile(const struct hist *h, double p);
/* Fills a struct summary (stats.h); every field NAN and n = 0 when empty. */
void hist_summary(const struct hist *h, struct summary *out);

#endif
