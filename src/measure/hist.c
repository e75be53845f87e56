/* hist: the log-bucketed histogram of measure/hist.h. A value's bucket is
 * floor(ln(v / HIST_MIN_VALUE) / ln(g)), clamped to the table; percentiles walk the cumulative
 * counts to the bucket that holds the sample of the wanted rank and report its midpoint, clamped
 * to the exact min and max. It keeps no samples and never allocates. */
#include "measure/hist.h"

#include <math.h>
#include <string.h>

#define HIST_GROWTH (1.0 + 2.0 * HIST_REL_PRECISION)

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = INFINITY;
    h->max = -INFINITY;
}

static int hist_bucket_of(double v)
{
    if (v < HIST_MIN_VALUE)
        return 0;
    double i = floor(log(v / HIST_MIN_VALUE) / log(HIST_GROWTH));
    if (i < 0)
        return 0;
    if (i >= HIST_N_BUCKETS - 1)
        return HIST_N_BUCKETS - 1;
    return (int)i;
}

static double hist_bucket_mid(int i)
{
    double lo = HIST_MIN_VALUE * pow(HIST_GROWTH, (double)i);
    return lo * (1.0 + HIST_GROWTH) / 2.0;
}

void hist_add(struct hist *h, double v)
{
    if (isnan(v) || v < 0) {
        h->n_invalid++;
        return;
    }
    h->n++;
    h->sum += v;
    h->sum_sq += v * v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    if (v > HIST_MAX_VALUE)
        h->n_over++;
    else
        h->bucket[hist_bucket_of(v)]++;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    into->n += from->n;
    into->n_invalid += from->n_invalid;
    into->n_over += from->n_over;
    into->sum += from->sum;
    into->sum_sq += from->sum_sq;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
    for (int i = 0; i < HIST_N_BUCKETS; i++)
        into->bucket[i] += from->bucket[i];
}

double hist_percentile(const struct hist *h, double p)
{
    if (h->n == 0 || isnan(p))
        return NAN;
    if (p <= 0)
        return h->min;
    if (p >= 100)
        return h->max;
    /* the sample nearest to numpy's linear rank (n - 1) * p / 100 */
    uint64_t k = (uint64_t)((double)(h->n - 1) * p / 100.0 + 0.5);
    if (k >= h->n - h->n_over)
        return h->max; /* overflow is ranked last */
    uint64_t cum = 0;
    for (int i = 0; i < HIST_N_BUCKETS; i++) {
        cum += h->bucket[i];
        if (cum > k) {
            double v = hist_bucket_mid(i);
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}

void hist_summary(const struct hist *h, struct summary *out)
{
    if (h->n == 0) {
        out->n = 0;
        out->mean = out->min = out->p50 = out->p90 = out->p95 = out->p99 = out->max =
            out->stddev = NAN;
        return;
    }
    double n = (double)h->n;
    out->n = (size_t)h->n;
    out->mean = h->sum / n;
    double var = h->sum_sq / n - out->mean * out->mean;
    out->stddev = var > 0 ? sqrt(var) : 0;
    out->min = h->min;
    out->max = h->max;
    out->p50 = hist_percentile(h, 50);
    out->p90 = hist_percentile(h, 90);
    out->p95 = hist_percentile(h, 95);
    out->p99 = hist_percentile(h, 99);
}
