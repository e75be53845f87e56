/* test_stats: percentiles against numpy's default ("linear") values computed by hand, summaries,
 * NAN handling, empty input and guarded rates. */
#include <stdlib.h>

#include "measure/stats.h"
#include "test.h"

static void test_percentile_numpy_linear(void)
{
    /* numpy.percentile([1,2,3,4], q): 0->1, 25->1.75, 50->2.5, 90->3.7, 99->3.97, 100->4 */
    double v[] = {1, 2, 3, 4};
    CHECK_NEAR(percentile_sorted(v, 4, 0), 1.0, 1e-12);
    CHECK_NEAR(percentile_sorted(v, 4, 25), 1.75, 1e-12);
    CHECK_NEAR(percentile_sorted(v, 4, 50), 2.5, 1e-12);
    CHECK_NEAR(percentile_sorted(v, 4, 90), 3.7, 1e-12);
    CHECK_NEAR(percentile_sorted(v, 4, 99), 3.97, 1e-12);
    CHECK_NEAR(percentile_sorted(v, 4, 100), 4.0, 1e-12);
    /* Clamped outside [0,100]; one element; empty; NAN p. */
    CHECK_NEAR(percentile_sorted(v, 4, -5), 1.0, 0);
    CHECK_NEAR(percentile_sorted(v, 4, 105), 4.0, 0);
    double one = 7;
    CHECK_NEAR(percentile_sorted(&one, 1, 99), 7.0, 0);
    CHECK(isnan(percentile_sorted(v, 0, 50)));
    CHECK(isnan(percentile_sorted(NULL, 0, 50)));
    CHECK(isnan(percentile_sorted(v, 4, NAN)));
    /* numpy.percentile(range(1, 101), 99) = 99.01; 95 -> 95.05; 50 -> 50.5 */
    double h[100];
    for (int i = 0; i < 100; i++)
        h[i] = i + 1;
    CHECK_NEAR(percentile_sorted(h, 100, 99), 99.01, 1e-9);
    CHECK_NEAR(percentile_sorted(h, 100, 95), 95.05, 1e-9);
    CHECK_NEAR(percentile_sorted(h, 100, 50), 50.5, 1e-9);
}

static void test_summary(void)
{
    /* Unsorted input with a NAN: the NAN is skipped, the input left untouched. */
    double v[] = {10, 1, NAN, 4, 3, 2};
    struct summary s;
    summary_of(v, 6, &s);
    CHECK_EQ_INT(s.n, 5);
    CHECK_NEAR(s.mean, 4.0, 1e-12);
    CHECK_NEAR(s.min, 1.0, 0);
    CHECK_NEAR(s.max, 10.0, 0);
    CHECK_NEAR(s.p50, 3.0, 1e-12);
    /* numpy.percentile([1,2,3,4,10], 90) = 7.6; 99 -> 9.76; population std = sqrt(10) */
    CHECK_NEAR(s.p90, 7.6, 1e-12);
    CHECK_NEAR(s.p99, 9.76, 1e-12);
    CHECK_NEAR(s.stddev, sqrt(10.0), 1e-12);
    CHECK_NEAR(v[0], 10.0, 0);
    CHECK(isnan(v[2]));
    /* Large offsets (ns timestamps) keep their precision. */
    double big[3] = {1e15 + 1, 1e15 + 2, 1e15 + 3};
    summary_of(big, 3, &s);
    CHECK_NEAR(s.mean, 1e15 + 2, 1e-3);
    CHECK_NEAR(s.stddev, sqrt(2.0 / 3.0), 1e-6);
}

static void test_empty_and_nan(void)
{
    struct summary s;
    summary_of(NULL, 0, &s);
    CHECK_EQ_INT(s.n, 0);
    CHECK(isnan(s.mean) && isnan(s.min) && isnan(s.p50) && isnan(s.p99) && isnan(s.max) &&
          isnan(s.stddev) && isnan(s.p90) && isnan(s.p95));
    double all_nan[2] = {NAN, NAN};
    summary_of(all_nan, 2, &s);
    CHECK_EQ_INT(s.n, 0);
    CHECK(isnan(s.p50));
}

static void test_rate(void)
{
    CHECK_NEAR(stats_rate(100, 2), 50.0, 0);
    CHECK(isnan(stats_rate(100, 0)));
    CHECK(isnan(stats_rate(100, -1)));
    CHECK(isnan(stats_rate(NAN, 1)));
    CHECK(isnan(stats_rate(1, NAN)));
    CHECK_NEAR(stats_rate(0, 3), 0.0, 0);
}

int main(void)
{
    TEST_RUN(test_percentile_numpy_linear);
    TEST_RUN(test_summary);
    TEST_RUN(test_empty_and_nan);
    TEST_RUN(test_rate);
    return TEST_DONE();
}
