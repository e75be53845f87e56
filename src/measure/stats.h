/* stats: summaries of stored samples (mean, min, percentiles, max, stddev). Percentiles use
 * linear interpolation between closest ranks (numpy's default, "linear"). NAN samples are skipped
 * and counted by the caller if it cares; nothing here allocates more than one copy of the input.
 * No histograms, no rates of its own beyond stats_rate(), which guards its denominator. */
#ifndef SLM_STATS_H
#define SLM_STATS_H

#include <stddef.h>

struct summary { size_t n; double mean, min, p50, p90, p95, p99, max, stddev; };

/* Copies v (skipping NAN), sorts, fills out. n == 0 (or all NAN): every field NAN, n = 0.
 * stddev is the population standard deviation (divides by n). Any thread. */
void summary_of(const double *v, size_t n, struct summary *out);
/* sorted ascending, no NAN; p in [0,100] (clamped). n == 0: NAN. */
double percentile_sorted(const double *sorted, size_t n, double p); /* linear interpolation, p in [0,100] */

/* Added: count / seconds, NAN when seconds <= 0 or either is NAN. */
double stats_rate(double count, double seconds);

#endif
