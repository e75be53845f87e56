/* ttft_result: the small accessors that the ttft report and the ttft.json writer share (status,
 * warm summary, cold TTFT, launch to ready, unit conversions), the option defaults and freeing a
 * result. It measures nothing and renders nothing. */
#include <math.h>
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

const char *ttft_status_str(const struct ttft_result *res)
{
    return res->interrupted ? "interrupted" : res->failed ? "failed" : "ok";
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
