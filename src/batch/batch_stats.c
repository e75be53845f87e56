/* batch_stats: what is computed over level statistics after the run: the aggregate of a sweep
 * level's repeats (median of every metric, sums of counts, min/max spreads), the error summary,
 * and the knee analysis over the sweep and the rates (measure/knee.h). It sees no request and
 * no server: per-level numbers come from batch_run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *v, int n)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i]))
            v[m++] = v[i];
    if (!m)
        return NAN;
    qsort(v, (size_t)m, sizeof *v, cmp_double);
    return m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
}

static void minmax_of(const double *v, int n, double *lo, double *hi)
{
    *lo = *hi = NAN;
    for (int i = 0; i < n; i++) {
        if (isnan(v[i]))
            continue;
        if (isnan(*lo) || v[i] < *lo)
            *lo = v[i];
        if (isnan(*hi) || v[i] > *hi)
            *hi = v[i];
    }
}

/* One row from R repeats: medians of every metric, sums of counts, min/max of the spreads. */
void batch_level_aggregate(const struct batch_level *rep, int R, struct batch_level *out)
{
    double v[128];
    if (R > 128)
        R = 128;
    *out = rep[0];
    out->n_repeats = R;
#define AGG(f)                                                                                     \
    do {                                                                                           \
        for (int k_ = 0; k_ < R; k_++)                                                             \
            v[k_] = rep[k_].f;                                                                     \
        out->f = median_of(v, R);                                                                  \
    } while (0)
#define AGG_SUM(f)                                                                                 \
    do {                                                                                           \
        for (int k_ = 1; k_ < R; k_++)                                                             \
            out->f += rep[k_].f;                                                                   \
    } while (0)
#define AGG_SUMMARY(s)                                                                             \
    do {                                                                                           \
        AGG(s.mean);                                                                               \
        AGG(s.p50);                                                                                \
        AGG(s.p90);                                                                                \
        AGG(s.p95);                                                                                \
        AGG(s.p99);                                                                                \
        AGG(s.stddev);                                                                             \
        double lo_, hi_;                                                                           \
        for (int k_ = 0; k_ < R; k_++)                                                             \
            v[k_] = rep[k_].s.min;                                                                 \
        minmax_of(v, R, &lo_, &hi_);                                                               \
        out->s.min = lo_;                                                                          \
        for (int k_ = 0; k_ < R; k_++)                                                             \
            v[k_] = rep[k_].s.max;                                                                 \
        minmax_of(v, R, &lo_, &hi_);                                                               \
        out->s.max = hi_;                                                                          \
        AGG_SUM(s.n);                                                                              \
    } while (0)
    AGG_SUMMARY(e2e_ms);
    AGG_SUMMARY(ttft_ms);
    AGG_SUMMARY(itl_ms);
    AGG_SUMMARY(tpot_ms);
    AGG_SUMMARY(e2e_int_ms);
    AGG_SUMMARY(ttft_int_ms);
    AGG_SUMMARY(qdelay_ms);
    AGG(duration_s);
    AGG(qps);
    AGG(tok_s);
    AGG(total_tok_s);
    AGG(inflight_mean);
    AGG(prompt_tok_mean);
    AGG(out_tok_mean);
    AGG(goodput_rps);
    AGG(send_rate_rps);
    AGG(offered_rate_rps);
    AGG(gpu_util_mean_pct);
    AGG(cpu_mean_pct);
    AGG(sw.waiting_mean);
    AGG(sw.running_mean);
    for (int k = 0; k < R; k++)
        v[k] = rep[k].tok_s;
    minmax_of(v, R, &out->tok_s_min, &out->tok_s_max);
    for (int k = 0; k < R; k++)
        v[k] = rep[k].e2e_ms.p95 / 1000.0;
    minmax_of(v, R, &out->p95_e2e_min_s, &out->p95_e2e_max_s);
    double lo, hi;
#define AGG_MAX(f)                                                                                 \
    do {                                                                                           \
        for (int k_ = 0; k_ < R; k_++)                                                             \
            v[k_] = rep[k_].f;                                                                     \
        minmax_of(v, R, &lo, &hi);                                                                 \
        out->f = hi;                                                                               \
    } while (0)
#define AGG_MIN(f)                                                                                 \
    do {                                                                                           \
        for (int k_ = 0; k_ < R; k_++)                                                             \
            v[k_] = rep[k_].f;                                                                     \
        minmax_of(v, R, &lo, &hi);                                                                 \
        out->f = lo;                                                                               \
    } while (0)
    AGG_MAX(gpu_util_max_pct);
    AGG_MAX(gpu_mem_max_gib);
    AGG_MAX(cpu_max_pct);
    AGG_MAX(sw.waiting_max);
    AGG_MAX(sw.running_max);
    AGG_MAX(prompt_tok_max);
    AGG_MIN(prompt_tok_min);
    AGG_SUM(n_sent);
    AGG_SUM(n_ok);
    AGG_SUM(n_err);
    AGG_SUM(n_good);
    AGG_SUM(n_no_usage);
    AGG_SUM(sw.n);
    for (int k = 1; k < R; k++) {
        out->complete &= rep[k].complete;
        out->gpu_available |= rep[k].gpu_available;
        out->sw.has_waiting |= rep[k].sw.has_waiting;
        out->sw.has_running |= rep[k].sw.has_running;
        for (int e = 0; e < REQ_ERROR__COUNT; e++) {
            if (!out->n_err_class[e] && rep[k].n_err_class[e])
                memcpy(out->err_msg[e], rep[k].err_msg[e], sizeof out->err_msg[e]);
            out->n_err_class[e] += rep[k].n_err_class[e];
        }
    }
    out->goodput_frac =
        !isnan(rep[0].goodput_frac) && out->n_sent ? (double)out->n_good / out->n_sent : NAN;
#undef AGG
#undef AGG_SUM
#undef AGG_SUMMARY
#undef AGG_MAX
#undef AGG_MIN
}

void batch_errors_str(const struct batch_level *ls, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (int e = 1; e < REQ_ERROR__COUNT; e++) {
        if (!ls->n_err_class[e])
            continue;
        int w = snprintf(out + len, n - len, "%s%s:%d", len ? " " : "", req_error_str(e),
                         ls->n_err_class[e]);
        if (w < 0 || (size_t)w >= n - len)
            break;
        len += (size_t)w;
    }
}

static void knee_levels_fill(const struct batch_level *ls, int n, struct knee_level *kl, int *row,
                             int *n_out)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!ls[i].complete)
            continue;
        kl[m] =
            (struct knee_level){.load = ls[i].load,
                                .tok_s = ls[i].tok_s,
                                .qps = ls[i].qps,
                                .p95_e2e_s = ls[i].e2e_ms.p95 / 1000.0,
                                .p95_ttft_ms = ls[i].ttft_ms.p95,
                                .p95_tpot_ms = ls[i].tpot_ms.p95,
                                .goodput_frac = ls[i].goodput_frac,
                                .goodput_rps = ls[i].goodput_rps,
                                .waiting_mean = ls[i].sw.has_waiting ? ls[i].sw.waiting_mean : NAN,
                                .waiting_max = ls[i].sw.has_waiting ? ls[i].sw.waiting_max : NAN,
                                .n_ok = ls[i].n_ok,
                                .n_err = ls[i].n_err};
        if (row)
            row[m] = i;
        m++;
    }
    *n_out = m;
}

void batch_level_fold(struct batch_level *rep, int n_rep, struct batch_level *out)
{
    int n_ok = 0;
    for (int k = 0; k < n_rep; k++)
        if (rep[k].complete)
            rep[n_ok++] = rep[k];
    if (n_ok) {
        batch_level_aggregate(rep, n_ok, out);
        out->n_repeats_cut = n_rep - n_ok;
    } else {
        batch_level_aggregate(rep, n_rep, out);
        out->complete = 0;
    }
}

void batch_analyze(struct batch_result *res)
{
    const struct batch_opts *o = &res->opts;
    if (knee_slo_is_set(&o->slo))
        knee_slo_str(&o->slo, res->slo_desc, sizeof res->slo_desc);
    struct knee_config kc;
    knee_config_defaults(&kc);
    kc.threshold = o->knee_threshold;
    kc.slo_attainment = o->slo_attainment;
    kc.slo_desc = res->slo_desc[0] ? res->slo_desc : NULL;
    knee_levels_fill(res->sweep, res->n_sweep, res->kl, res->kl_row, &res->n_kl);
    knee_analyze(res->kl, (size_t)res->n_kl, &kc, &res->kr);
    knee_rules_make(res->kl, (size_t)res->n_kl, &kc, &res->kr, &res->rules);
    if (res->n_open >= 2) {
        kc.load_name = "rate";
        kc.load_unit = " req/s";
        knee_levels_fill(res->open, res->n_open, res->okl, NULL, &res->n_okl);
        knee_analyze(res->okl, (size_t)res->n_okl, &kc, &res->okr);
        knee_rules_make(res->okl, (size_t)res->n_okl, &kc, &res->okr, &res->orules);
    }
}
