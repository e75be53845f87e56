/* ttft_result: the small accessors that the ttft report and the ttft.json writer share (status,
 * warm summary, cold TTFT, launch to ready, the storage verdict, unit conversions), the option
 * defaults and freeing a result. It measures nothing and renders nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ttft/ttft.h"
#include "util/buf.h"
#include "util/clock.h"

void ttft_opts_defaults(struct ttft_opts *o)
{
    o->warm_runs = 5;
    o->idle_gap_s = 0;
    o->repeat = 1;
    o->prompt_len = 128;
    o->max_tokens = 32;
}

const char *ttft_kind_str(enum ttft_kind k)
{
    switch (k) {
    case TTFT_KIND_COLD:
        return "cold";
    case TTFT_KIND_WARM_IMMEDIATE:
        return "warm_immediate";
    case TTFT_KIND_WARM:
        return "warm";
    }
    return "?";
}

const char *ttft_storage_str(enum ttft_storage st)
{
    switch (st) {
    case TTFT_STORAGE_UNKNOWN:
        return "unknown";
    case TTFT_STORAGE_COLD:
        return "storage_cold";
    case TTFT_STORAGE_WARM:
        return "warm_cache";
    case TTFT_STORAGE_PARTIAL:
        return "partly_resident";
    case TTFT_STORAGE_DISAGREE:
        return "signals_disagree";
    }
    return "?";
}

enum ttft_storage ttft_storage_verdict(const struct ttft_repeat *rr)
{
    double f_launch = telemetry_resident_frac(rr->model_resident_launch_bytes, rr->model_bytes);
    double f_ready = telemetry_resident_frac(rr->model_resident_ready_bytes, rr->model_bytes);
    if (!isfinite(f_launch))
        return TTFT_STORAGE_UNKNOWN;
    int read_known = rr->read_bytes_ready >= 0;
    int read_weights = read_known && (double)rr->read_bytes_ready >=
                                         TTFT_STORAGE_READ_FRAC * (double)rr->model_bytes;
    if (f_launch <= TTFT_STORAGE_COLD_FRAC) {
        /* the files filled the cache by ready, but not through the server's reads */
        if (read_known && !read_weights && isfinite(f_ready) && f_ready >= TTFT_STORAGE_READ_FRAC &&
            rr->majflt_ready == 0)
            return TTFT_STORAGE_DISAGREE;
        return TTFT_STORAGE_COLD;
    }
    if (f_launch >= TTFT_STORAGE_RESIDENT_FRAC)
        return read_weights ? TTFT_STORAGE_DISAGREE : TTFT_STORAGE_WARM;
    return TTFT_STORAGE_PARTIAL;
}

const char *ttft_status_str(const struct ttft_result *res)
{
    return res->interrupted ? "interrupted" : res->failed ? "failed" : "ok";
}

void ttft_fmt_ms(double ms, char *out, size_t n)
{
    if (!isfinite(ms))
        snprintf(out, n, "n/a");
    else if (ms >= 10000)
        snprintf(out, n, "%.2f s", ms / 1000);
    else if (ms >= 100)
        snprintf(out, n, "%.0f ms", ms);
    else
        snprintf(out, n, "%.2f ms", ms);
}

double ttft_mib(int64_t bytes)
{
    return bytes < 0 ? NAN : (double)bytes / (1024.0 * 1024.0);
}

double ttft_rel_ms(mono_ns t, mono_ns t0)
{
    return t && t0 && t >= t0 ? ns_to_ms(t - t0) : NAN;
}

double ttft_rec_ttft_ms(const struct request_record *r)
{
    int64_t v = record_ttft_ns(r);
    return v < 0 ? NAN : ns_to_ms((uint64_t)v);
}

double ttft_rec_e2e_ms(const struct request_record *r)
{
    int64_t v = record_e2e_ns(r);
    return v < 0 ? NAN : ns_to_ms((uint64_t)v);
}

const struct ttft_req *ttft_find_kind(const struct ttft_repeat *rr, enum ttft_kind kind)
{
    for (size_t i = 0; i < rr->n_reqs; i++)
        if (rr->reqs[i].kind == kind)
            return &rr->reqs[i];
    return NULL;
}

void ttft_warm_summary(const struct ttft_repeat *rr, struct summary *out)
{
    double *v = xcalloc(rr->n_reqs + 1, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < rr->n_reqs; i++) {
        const struct ttft_req *q = &rr->reqs[i];
        if (q->kind != TTFT_KIND_WARM || q->rec.error != REQ_ERROR_NONE)
            continue;
        double t = ttft_rec_ttft_ms(&q->rec);
        if (isfinite(t))
            v[n++] = t;
    }
    summary_of(v, n, out);
    free(v);
}

double ttft_cold_ttft_ms(const struct ttft_repeat *rr)
{
    const struct ttft_req *c = ttft_find_kind(rr, TTFT_KIND_COLD);
    return c && c->rec.error == REQ_ERROR_NONE ? ttft_rec_ttft_ms(&c->rec) : NAN;
}

double ttft_ready_ms(const struct ttft_repeat *rr)
{
    return ttft_rel_ms(rr->tl.t_models_ok_ns, rr->tl.t_launch_ns);
}

void ttft_result_free(struct ttft_result *res)
{
    if (!res)
        return;
    for (int k = 0; k < res->n_reps; k++) {
        struct ttft_repeat *rr = &res->reps[k];
        for (size_t i = 0; i < rr->n_reqs; i++)
            record_free(&rr->reqs[i].rec);
        free(rr->reqs);
    }
    free(res->reps);
    memset(res, 0, sizeof *res);
}

/* Phase p of rr in ms and its source; NAN / "not logged" when unknown. */
static double phase_ms(const struct ttft_repeat *rr, enum startup_phase p, const char **src)
{
    double v = rr->have_startup ? rr->startup.phase_s[p] : NAN;
    if (src)
        *src = isfinite(v) ? startup_phase_source_str(rr->startup.phase_source[p]) : "not logged";
    return isfinite(v) ? v * 1000 : NAN;
}

void ttft_stack_of(const struct ttft_repeat *rr, int url_mode, struct ttft_stack *st)
{
    struct summary sm;
    ttft_warm_summary(rr, &sm);
    const struct ttft_req *w1 = ttft_find_kind(rr, TTFT_KIND_WARM_IMMEDIATE);
    const struct ttft_req *cold = ttft_find_kind(rr, TTFT_KIND_COLD);
    int cold_ok = cold && cold->rec.error == REQ_ERROR_NONE;
    memset(st, 0, sizeof *st);
    st->warm_median_ms = sm.p50;
    st->warm_immediate_ms =
        w1 && w1->rec.error == REQ_ERROR_NONE ? ttft_rec_ttft_ms(&w1->rec) : NAN;
    st->load_weights_ms = st->runtime_warmup_ms = st->other_startup_ms = NAN;
    st->ready_ms = st->queueing_ms = st->first_prefill_ms = st->cold_total_ms = NAN;
    st->load_weights_src = st->runtime_warmup_src = "not logged";
    if (url_mode)
        return;
    st->load_weights_ms = phase_ms(rr, STARTUP_PHASE_MODEL_LOAD, &st->load_weights_src);
    if (!isfinite(st->load_weights_ms))
        st->load_weights_ms = phase_ms(rr, STARTUP_PHASE_WEIGHTS_LOAD, &st->load_weights_src);
    st->runtime_warmup_ms = phase_ms(rr, STARTUP_PHASE_ENGINE_INIT, &st->runtime_warmup_src);
    if (!isfinite(st->runtime_warmup_ms)) {
        static const enum startup_phase sub[] = {STARTUP_PHASE_TORCH_COMPILE,
                                                 STARTUP_PHASE_KV_CACHE_ALLOC,
                                                 STARTUP_PHASE_WARMUP_GRAPH_CAPTURE};
        double sum = 0;
        int n = 0;
        for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++) {
            double v = phase_ms(rr, sub[i], n ? NULL : &st->runtime_warmup_src);
            if (isfinite(v)) {
                sum += v;
                n++;
            }
        }
        st->runtime_warmup_ms = n ? sum : NAN;
    }
    st->ready_ms = ttft_ready_ms(rr);
    st->logged_exceeds = rr->logged_exceeds_measured;
    double logged = (isfinite(st->load_weights_ms) ? st->load_weights_ms : 0) +
                    (isfinite(st->runtime_warmup_ms) ? st->runtime_warmup_ms : 0);
    if (isfinite(st->ready_ms) && logged > st->ready_ms + STARTUP_LOGGED_SLACK_S * 1000)
        st->logged_exceeds = 1;
    if (isfinite(st->ready_ms) && !st->logged_exceeds)
        st->other_startup_ms = st->ready_ms > logged ? st->ready_ms - logged : 0;
    if (cold_ok) {
        st->queueing_ms = ttft_rel_ms(cold->rec.t_sent_ns, rr->tl.t_models_ok_ns);
        st->first_prefill_ms = ttft_rec_ttft_ms(&cold->rec);
        st->cold_total_ms = ttft_rel_ms(cold->rec.t_first_token_ns, rr->tl.t_launch_ns);
    }
}
