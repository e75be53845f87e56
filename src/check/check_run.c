/* check_run: the measuring half of `slmprobe check`: one launch (or the --url check), a warm-up,
 * then the measured requests through the shared driver, all inside one deadline. It judges
 * nothing (check_slo.c) and renders nothing (check_render.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check/check.h"
#include "measure/workload.h"
#include "run/driver.h"
#include "run/launch.h"
#include "run/probe_opts.h"
#include "util/clock.h"
#include "util/log.h"

#define MOD "check"

struct check_ctx {
    struct workload wl;
    int max_tokens;
};

static int make_request(void *ud, uint64_t i, struct client_request *rq, struct buf *prompt)
{
    struct check_ctx *cx = ud;
    if (workload_prompt(&cx->wl, i, prompt, NULL) != WORKLOAD_OK)
        return -1;
    rq->prompt = prompt->data;
    rq->prompt_len = prompt->len;
    rq->max_tokens = cx->max_tokens;
    rq->ignore_eos = 1;
    rq->min_tokens = cx->max_tokens;
    rq->temperature = 0;
    return 0;
}

/* Folds a driver phase's measurements into r. */
static void take_result(struct check_result *r, const struct driver_result *d)
{
    r->measured = 1;
    r->n_sent += d->n_done;
    r->n_ok += d->n_ok;
    r->n_failed += d->n_done - d->n_ok;
    for (int e = 0; e < REQ_ERROR__COUNT; e++)
        r->n_err_class[e] += d->n_err_class[e];
    hist_merge(&r->ttft_ms, &d->ttft_ms);
    hist_merge(&r->tpot_ms, &d->tpot_ms);
    hist_merge(&r->itl_ms, &d->itl_ms);
    hist_merge(&r->e2e_ms, &d->e2e_ms);
}

static void result_init(struct check_result *r)
{
    memset(r, 0, sizeof *r);
    hist_init(&r->ttft_ms);
    hist_init(&r->tpot_ms);
    hist_init(&r->itl_ms);
    hist_init(&r->e2e_ms);
}

/* The driver phases once the server is ready. 0, or -1 with r->fail_reason. */
static int drive(const struct check_opts *o, struct session *s, struct launch *L,
                 struct check_ctx *cx, mono_ns deadline, struct check_result *r)
{
    struct client_config cc;
    probe_opts_client_config(s->po, L->t->base_url, &cc);
    mono_ns now = clock_now_ns();
    long left_ms = deadline > now ? (long)((deadline - now) / 1000000) : 1;
    if (!cc.timeout_ms || cc.timeout_ms > left_ms)
        cc.timeout_ms = left_ms;
    char err[512];
    struct driver *d = driver_new(s, L, &cc, NULL, err, sizeof err);
    if (!d) {
        snprintf(r->fail_reason, sizeof r->fail_reason, "client: %.400s", err);
        return -1;
    }
    int rc = 0;
    struct driver_phase ph = {.mode = DRIVER_MODE_SEQUENTIAL, .tag = "warmup", .level = 0,
                              .n_requests = o->n_warmup, .make = make_request, .ud = cx};
    struct driver_result res;
    if (o->n_warmup > 0) {
        driver_run(d, &ph, &res);
        if (res.status != DRIVER_STATUS_OK) {
            snprintf(r->fail_reason, sizeof r->fail_reason, "warm-up: %s%s%.400s",
                     driver_status_str(res.status), res.stop_reason[0] ? ": " : "",
                     res.stop_reason);
            rc = -1;
        }
        driver_result_free(&res);
    }
    if (rc == 0) {
        now = clock_now_ns();
        ph = (struct driver_phase){.mode = DRIVER_MODE_CLOSED, .tag = "check", .level = 1,
                                   .concurrency = o->concurrency, .n_requests = o->n_requests,
                                   .duration_s = deadline > now ? ns_to_s(deadline - now) : 0.001,
                                   .make = make_request, .ud = cx};
        driver_run(d, &ph, &res);
        take_result(r, &res);
        if (res.n_done < o->n_requests && res.status == DRIVER_STATUS_OK)
            r->timed_out = 1;
        if (res.status != DRIVER_STATUS_OK && res.status != DRIVER_STATUS_CANCELLED) {
            snprintf(r->fail_reason, sizeof r->fail_reason, "%s%s%.400s",
                     driver_status_str(res.status), res.stop_reason[0] ? ": " : "",
                     res.stop_reason);
        }
        driver_result_free(&res);
    }
    driver_free(d);
    return rc;
}

int check_run(const struct check_opts *o, struct session *s, struct check_result *r)
{
    result_init(r);
    mono_ns t0 = clock_now_ns();
    mono_ns deadline = t0 + (mono_ns)(o->timeout_s * 1e9);
    struct check_ctx cx = {.max_tokens = o->max_tokens};
    struct workload_synth syn = {
        .input_len_tokens = o->prompt_len,
        .unit = probe_tokens_are_bytes(&s->po->target) ? WORKLOAD_UNIT_BYTE : WORKLOAD_UNIT_WORD,
        .seed = 1};
    if (workload_init_synth(&cx.wl, &syn) != WORKLOAD_OK) {
        snprintf(r->fail_reason, sizeof r->fail_reason, "bad prompt length %d", o->prompt_len);
        return -1;
    }
    struct target_config cfg = s->po->target;
    long budget_ms = (long)(o->timeout_s * 1000);
    if (!cfg.ready_timeout_ms || cfg.ready_timeout_ms > budget_ms)
        cfg.ready_timeout_ms = budget_ms;
    struct launch L;
    launch_init_opts(&L, s, &cfg, "check_server.log", &(struct launch_opts){.no_scraper = 1});
    snprintf(r->target, sizeof r->target, "%s", cfg.url ? cfg.url : target_kind_str(cfg.kind));
    int rc = 0;
    if (launch_start(&L) != TARGET_OK) {
        snprintf(r->fail_reason, sizeof r->fail_reason, "server not ready: %.400s", L.err);
        if (L.status == TARGET_ERR_TIMEOUT)
            r->timed_out = 1;
        rc = -1;
    } else {
        if (!cfg.url)
            snprintf(r->target, sizeof r->target, "%s (launched)", L.t->base_url);
        rc = drive(o, s, &L, &cx, deadline, r);
    }
    launch_stop(&L);
    if (L.died && !r->fail_reason[0]) {
        char ex[96];
        snprintf(r->fail_reason, sizeof r->fail_reason, "the server exited during the check (%s)",
                 target_exit_str(&L.exit, ex, sizeof ex));
    }
    launch_free(&L);
    workload_free(&cx.wl);
    r->duration_s = ns_to_s(clock_now_ns() - t0);
    r->finished_unix_s = clock_wall_s();
    return rc || r->fail_reason[0] ? -1 : 0;
}
