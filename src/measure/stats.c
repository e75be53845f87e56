/* stats: summaries of stored samples with numpy-style linear-interpolation percentiles. Copies the
 * input once (NANs dropped) and sorts the copy; never touches the caller's array. */
#include "measure/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

static int stats_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double percentile_sorted(const double *sorted, size_t n, double p)
{
    if (n == 0 || !sorted || isnan(p))
        return NAN;
    if (p < 0)
        p = 0;
    if (p > 100)
        p = 100;
    /* numpy "linear": rank h = (n - 1) * p / 100, interpolate between floor(h) and floor(h) + 1. */
    double h = (double)(n - 1) * p / 100.0;
    size_t lo = (size_t)floor(h);
    if (lo >= n - 1)
        return sorted[n - 1];
    double frac = h - (double)lo;
    return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac;
}

void summary_of(const double *v, size_t n, struct summary *out)
{
    out->n = 0;
    out->mean = out->min = out->p50 = out->p90 = out->p95 = out->p99 = out->max = out->stddev = NAN;
    if (n == 0 || !v)
        return;
    size_t bytes;
    if (size_mul_ok(n, sizeof(double), &bytes) != 0)
        return;
    double *s = xmalloc(bytes);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(v[i]))
            s[m++] = v[i];
    if (m == 0) {
        free(s);
        return;
    }
    qsort(s, m, sizeof(double), stats_cmp_double);
    /* Mean and variance by Welford's method (stable for large offsets such as ns timestamps). */
    double mean = 0, m2 = 0;
    for (size_t i = 0; i < m; i++) {
        double d = s[i] - mean;
        mean += d / (double)(i + 1);
        m2 += d * (s[i] - mean);
    }
    out->n = m;
    out->mean = mean;
    out->stddev = sqrt(m2 / (double)m);
    out->min = s[0];
    out->max = s[m - 1];
    out->p50 = percentile_sorted(s, m, 50);
    out->p90 = percentile_sorted(s, m, 90);
    out->p95 = percentile_sorted(s, m, 95);
    out->p99 = percentile_sorted(s, m, 99);
    free(s);
}

double stats_rate(double count, double seconds)
{
    if (isnan(count) || isnan(seconds) || !(seconds > 0))
        return NAN;
    return count / seconds;
}
