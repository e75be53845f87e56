/* ttft_outlier: the spread rule that makes a warm run an outlier (above both 1.5x the warm median
 * and the IQR fence Q3 + 1.5 IQR, ttft.h) and the matching of each outlier against the telemetry
 * samples of its window: server CPU and GPU utilisation against their warm-run baselines, major
 * faults and storage reads of the server's tree. It writes one sentence per outlier saying what
 * coincided or that nothing did; it does not sample (server/telemetry.h) or render sections. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ttft/ttft.h"
#include "util/buf.h"

/* A baseline differs when both the absolute and the relative difference pass these. */
#define OUTLIER_CPU_DIFF_PCT 25.0 /* percentage points of one core */
#define OUTLIER_GPU_DIFF_PCT 20.0 /* percentage points of utilisation */
#define OUTLIER_REL_DIFF 0.5

double ttft_outlier_threshold_ms(const double *ttft_ms, size_t n)
{
    double *v = xcalloc(n + 1, sizeof *v);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ttft_ms[i]))
            v[m++] = ttft_ms[i];
    struct summary sm;
    summary_of(v, m, &sm);
    double thr = NAN;
    if (m >= 3) {
        double *sorted = xcalloc(m, sizeof *sorted);
        memcpy(sorted, v, m * sizeof *v);
        for (size_t i = 1; i < m; i++) /* insertion sort: n is a handful of warm runs */
            for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
                double t = sorted[j];
                sorted[j] = sorted[j - 1];
                sorted[j - 1] = t;
            }
        double q1 = percentile_sorted(sorted, m, 25), q3 = percentile_sorted(sorted, m, 75);
        double fence = q3 + TTFT_OUTLIER_IQR_K * (q3 - q1);
        double by_median = TTFT_OUTLIER_MEDIAN_RATIO * sm.p50;
        thr = fence > by_median ? fence : by_median;
        free(sorted);
    }
    free(v);
    return thr;
}

double ttft_cpu_over_window(const struct telemetry_sample *s, size_t n, mono_ns t0, mono_ns t1)
{
    double sum = 0, w = 0;
    if (!t0 || !t1 || t1 <= t0)
        return NAN;
    for (size_t i = 1; i < n; i++) {
        if (!isfinite(s[i].cpu_pct) || s[i].n_procs <= 0)
            continue;
        mono_ns a = s[i - 1].t_ns > t0 ? s[i - 1].t_ns : t0;
        mono_ns b = s[i].t_ns < t1 ? s[i].t_ns : t1;
        if (b <= a)
            continue;
        sum += s[i].cpu_pct * (double)(b - a);
        w += (double)(b - a);
    }
    return w > 0 ? sum / w : NAN;
}

/* 1 when v differs from base by more than abs_pts points and OUTLIER_REL_DIFF of base. */
static int differs(double v, double base, double abs_pts)
{
    if (!isfinite(v) || !isfinite(base))
        return 0;
    double d = fabs(v - base);
    return d > abs_pts && d > OUTLIER_REL_DIFF * fabs(base);
}

/* Counters (majflt, read_bytes) over the window: the last known value minus the one at or just
 * before t0. -1 when unknown. */
static int64_t counter_delta(const struct telemetry_sample *s, size_t n, mono_ns t0, mono_ns t1,
                             int majflt)
{
    int64_t first = -1, last = -1;
    for (size_t i = 0; i < n; i++) {
        int64_t v = majflt ? s[i].majflt : s[i].read_bytes;
        if (v < 0 || s[i].n_procs <= 0)
            continue;
        if (s[i].t_ns <= t0)
            first = v;
        else if (s[i].t_ns <= t1) {
            if (first < 0)
                first = v;
            last = v;
        }
    }
    if (first < 0 || last < 0)
        return -1;
    return last > first ? last - first : 0;
}

void ttft_outlier_match(const struct telemetry_sample *s, size_t n, mono_ns t0, mono_ns t1,
                        mono_ns slack_ns, struct ttft_outlier *o)
{
    mono_ns a = t0 > slack_ns ? t0 - slack_ns : 0, b = t1 + slack_ns;
    o->n_samples = 0;
    double gsum = 0;
    size_t gn = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i].t_ns < a || s[i].t_ns > b)
            continue;
        o->n_samples++;
        if (s[i].gpu_available && isfinite(s[i].gpu_util_pct)) {
            gsum += s[i].gpu_util_pct;
            gn++;
        }
    }
    o->cpu_pct = ttft_cpu_over_window(s, n, t0, t1);
    o->gpu_util_pct = gn ? gsum / (double)gn : NAN;
    o->majflt_delta = counter_delta(s, n, a, b, 1);
    o->read_bytes_delta = counter_delta(s, n, a, b, 0);
    struct buf w;
    buf_init(&w, 256, sizeof o->coincided - 1);
    if (!o->n_samples && !isfinite(o->cpu_pct)) {
        snprintf(o->coincided, sizeof o->coincided,
                 "no telemetry sample fell in its window, so nothing can be said about what "
                 "coincided");
        buf_free(&w);
        return;
    }
    if (differs(o->cpu_pct, o->cpu_baseline_pct, OUTLIER_CPU_DIFF_PCT))
        buf_printf(&w, "%sserver CPU %.0f%% against %.0f%% over all warm runs", w.len ? "; " : "",
                   o->cpu_pct, o->cpu_baseline_pct);
    if (differs(o->gpu_util_pct, o->gpu_util_baseline_pct, OUTLIER_GPU_DIFF_PCT))
        buf_printf(&w, "%sGPU utilisation %.0f%% against %.0f%% over all warm runs",
                   w.len ? "; " : "", o->gpu_util_pct, o->gpu_util_baseline_pct);
    if (o->majflt_delta > 0)
        buf_printf(&w, "%s%lld major page fault(s) of the server (it waited for storage)",
                   w.len ? "; " : "", (long long)o->majflt_delta);
    if (o->read_bytes_delta > 0)
        buf_printf(&w, "%s%.2f MiB read from storage by the server", w.len ? "; " : "",
                   ttft_mib(o->read_bytes_delta));
    char cpu[32], base[32];
    snprintf(cpu, sizeof cpu, isfinite(o->cpu_pct) ? "%.0f%%" : "n/a", o->cpu_pct);
    snprintf(base, sizeof base, isfinite(o->cpu_baseline_pct) ? "%.0f%%" : "n/a",
             o->cpu_baseline_pct);
    if (w.len)
        snprintf(o->coincided, sizeof o->coincided, "coincided with %s", w.data);
    else
        snprintf(o->coincided, sizeof o->coincided,
                 "nothing coincided in the %zu telemetry sample(s) of its window: server CPU %s "
                 "(warm runs %s), %s, %s%s; other processes' CPU is not sampled",
                 o->n_samples, cpu, base,
                 o->majflt_delta == 0 ? "no major fault" : "major faults unknown",
                 o->read_bytes_delta == 0 ? "no storage read" : "storage reads unknown",
                 isfinite(o->gpu_util_pct) ? ", GPU utilisation as in the other runs" : "");
    buf_free(&w);
}

double ttft_warm_outlier_threshold_ms(const struct ttft_repeat *rr)
{
    double *v = xcalloc(rr->n_reqs + 1, sizeof *v);
    size_t m = 0;
    for (size_t i = 0; i < rr->n_reqs; i++)
        if (rr->reqs[i].kind == TTFT_KIND_WARM && rr->reqs[i].rec.error == REQ_ERROR_NONE)
            v[m++] = ttft_rec_ttft_ms(&rr->reqs[i].rec);
    double thr = ttft_outlier_threshold_ms(v, m);
    free(v);
    return thr;
}

void ttft_outliers_find(struct ttft_repeat *rr, const struct telemetry_sample *s, size_t n,
                        mono_ns slack_ns)
{
    double thr = ttft_warm_outlier_threshold_ms(rr);
    struct summary sm;
    ttft_warm_summary(rr, &sm);
    rr->n_outliers = 0;
    for (size_t i = 0; isfinite(thr) && i < rr->n_reqs; i++) {
        const struct ttft_req *q = &rr->reqs[i];
        double t = ttft_rec_ttft_ms(&q->rec);
        if (q->kind != TTFT_KIND_WARM || q->rec.error != REQ_ERROR_NONE || !(t > thr) ||
            rr->n_outliers == TTFT_OUTLIERS_MAX)
            continue;
        struct ttft_outlier *o = &rr->outliers[rr->n_outliers++];
        memset(o, 0, sizeof *o);
        o->run = q->i_warm_run;
        snprintf(o->tag, sizeof o->tag, "%s", q->rec.tag);
        o->ttft_ms = t;
        o->median_ms = sm.p50;
        o->cpu_baseline_pct = rr->cpu_warm_pct;
        o->gpu_util_baseline_pct = rr->gpu_util_warm_pct;
        ttft_outlier_match(s, n, q->rec.t_sent_ns, q->rec.t_done_ns, slack_ns, o);
    }
}
