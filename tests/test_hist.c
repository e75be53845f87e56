/* test_hist: the log-bucketed histogram against exact percentiles of the same samples
 * (measure/stats.h): every percentile lies between the two samples numpy interpolates between,
 * widened by the stated precision; empty, invalid, overflow and merge. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "measure/hist.h"
#include "measure/stats.h"
#include "test.h"

static uint64_t rng_state = 88172645463325252ull;

static double rng_unit(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* h's p-th percentile within [sorted[lo] * (1 - prec), sorted[hi] * (1 + prec)]. */
static void check_rank(const struct hist *h, const double *sorted, size_t n, double p)
{
    double r = (double)(n - 1) * p / 100.0;
    size_t lo = (size_t)floor(r), hi = (size_t)ceil(r);
    double v = hist_percentile(h, p);
    double a = sorted[lo] * (1 - HIST_REL_PRECISION) - 1e-12;
    double b = sorted[hi] * (1 + HIST_REL_PRECISION) + 1e-12;
    CHECK_MSG(v >= a && v <= b, "p%g = %.9g not in [%.9g, %.9g]", p, v, a, b);
}

static void check_against_exact(double (*gen)(void), size_t n)
{
    double *v = malloc(n * sizeof *v);
    struct hist *h = malloc(sizeof *h);
    hist_init(h);
    for (size_t i = 0; i < n; i++) {
        v[i] = gen();
        hist_add(h, v[i]);
    }
    struct summary exact, approx;
    summary_of(v, n, &exact);
    hist_summary(h, &approx);
    CHECK_EQ_INT(approx.n, n);
    CHECK_NEAR(approx.mean, exact.mean, fabs(exact.mean) * 1e-9);
    CHECK_NEAR(approx.stddev, exact.stddev, exact.stddev * 1e-6 + 1e-9);
    CHECK(approx.min == exact.min);
    CHECK(approx.max == exact.max);
    qsort(v, n, sizeof *v, cmp_double);
    static const double ps[] = {1, 10, 25, 50, 75, 90, 95, 99, 99.9};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
        check_rank(h, v, n, ps[i]);
    /* the summary's percentiles are the same as hist_percentile's */
    CHECK(approx.p50 == hist_percentile(h, 50));
    CHECK(approx.p99 == hist_percentile(h, 99));
    free(v);
    free(h);
}

static double gen_uniform(void) { return 1 + 999 * rng_unit(); }
static double gen_lognormal(void)
{
    double u1 = rng_unit() + 1e-300, u2 = rng_unit();
    return exp(3 + 1.5 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}
static double gen_tiny(void) { return 0.002 + 0.01 * rng_unit(); }

static void test_random_samples(void)
{
    check_against_exact(gen_uniform, 20000);
    check_against_exact(gen_lognormal, 50000);
    check_against_exact(gen_tiny, 5000);
}

static void test_empty(void)
{
    struct hist h;
    hist_init(&h);
    struct summary s;
    hist_summary(&h, &s);
    CHECK_EQ_INT(s.n, 0);
    CHECK(isnan(s.mean) && isnan(s.p50) && isnan(s.max) && isnan(s.stddev) && isnan(s.min));
    CHECK(isnan(hist_percentile(&h, 50)));
}

static void test_invalid(void)
{
    struct hist h;
    hist_init(&h);
    hist_add(&h, NAN);
    hist_add(&h, -1);
    hist_add(&h, -INFINITY);
    CHECK_EQ_INT(h.n, 0);
    CHECK_EQ_INT(h.n_invalid, 3);
    hist_add(&h, 5);
    struct summary s;
    hist_summary(&h, &s);
    CHECK_EQ_INT(s.n, 1);
    CHECK(s.min == 5 && s.max == 5 && s.p50 == 5 && s.mean == 5);
    /* zero and values below the range count in bucket 0 and stay exact at the edges */
    hist_add(&h, 0);
    CHECK(hist_percentile(&h, 0) == 0);
    CHECK_EQ_INT(h.bucket[0], 1);
}

static void test_overflow(void)
{
    struct hist h;
    hist_init(&h);
    for (int i = 0; i < 98; i++)
        hist_add(&h, 10);
    hist_add(&h, 2e8);
    hist_add(&h, 5e9);
    CHECK_EQ_INT(h.n, 100);
    CHECK_EQ_INT(h.n_over, 2);
    CHECK(h.max == 5e9);
    CHECK_NEAR(hist_percentile(&h, 50), 10, 10 * HIST_REL_PRECISION);
    CHECK(hist_percentile(&h, 99.5) == 5e9); /* ranked last */
    CHECK_NEAR(h.sum, 98 * 10 + 2e8 + 5e9, 1);
}

static void test_merge(void)
{
    struct hist a, b, all;
    hist_init(&a);
    hist_init(&b);
    hist_init(&all);
    for (int i = 0; i < 1000; i++) {
        double v = gen_lognormal();
        hist_add(i % 3 ? &a : &b, v);
        hist_add(&all, v);
    }
    hist_add(&b, NAN);
    hist_merge(&a, &b);
    CHECK_EQ_INT(a.n, 1000);
    CHECK_EQ_INT(a.n_invalid, 1);
    CHECK(a.min == all.min && a.max == all.max);
    CHECK(memcmp(a.bucket, all.bucket, sizeof a.bucket) == 0);
    CHECK(hist_percentile(&a, 90) == hist_percentile(&all, 90));
    struct hist empty;
    hist_init(&empty);
    hist_merge(&empty, &all);
    CHECK(empty.min == all.min && empty.n == all.n);
}

int main(void)
{
    TEST_RUN(test_random_samples);
    TEST_RUN(test_empty);
    TEST_RUN(test_invalid);
    TEST_RUN(test_overflow);
    TEST_RUN(test_merge);
    return TEST_DONE();
}
