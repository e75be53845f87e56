/* ttft_run: runs the ttft probe on the probe core. Per repeat one struct launch (run/launch.h:
 * log file, sampler, readings, start-up log, death) and one driver (run/driver.h) in sequential
 * mode: the cold request the moment the server is ready, then warm_1 and the N warm runs (the
 * idle gap is the driver's think time), every finished request to the session's JSONL sink.
 * What is left here is ttft's own: which request is which, the telemetry windows of the cold and
 * warm requests, and the repeat's outcome. It renders nothing (ttft_report.c, ttft_json.c) and
 * parses no argv (cmd_ttft.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "measure/workload.h"
#include "run/driver.h"
#include "run/launch.h"
#include "run/probe_opts.h"
#include "server/telemetry.h"
#include "ttft/ttft.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

#define MOD "ttft"
#define TTFT_SAMPLES_CAP 40000

struct ttft_ctx {
    struct session *s;
    struct ttft_result *res;
    struct workload wl;
    struct record_sink *sink;
    struct driver *d;        /* of the repeat being run */
    uint64_t next_prompt_id; /* every request gets a prompt of its own, over all repeats */
    int is_cold;             /* the phase being run */
    int i_repeat;            /* 1-based */
    char tag[32];            /* the phase's tag; make_request names each request in it */
};

static void fail(struct ttft_result *res, const char *msg)
{
    res->failed = 1;
    if (!res->fail_msg[0])
        snprintf(res->fail_msg, sizeof res->fail_msg, "%.*s", (int)sizeof res->fail_msg - 1, msg);
}

/* ------------------------------------------------------------------ requests */

/* Driver callback: the i-th request of the phase. The driver copies ph->tag (our cx->tag) into
 * the record after this call, so each request is named here: cold_N, then warm_1 (the immediate
 * follow-up), warm_2 .. warm_N+1 (warm runs 1..N), as in the seed's template. */
static int make_request(void *ud, uint64_t i, struct client_request *rq, struct buf *prompt)
{
    struct ttft_ctx *cx = ud;
    if (cx->is_cold)
        snprintf(cx->tag, sizeof cx->tag, "cold_%d", cx->i_repeat);
    else
        snprintf(cx->tag, sizeof cx->tag, "warm_%llu", (unsigned long long)i + 1);
    int n_target = -1;
    if (workload_prompt(&cx->wl, cx->next_prompt_id++, prompt, &n_target) != WORKLOAD_OK) {
        driver_set_reason(cx->d, "prompt %d tokens exceeds the buffer cap", n_target);
        return -1;
    }
    rq->max_tokens = cx->res->opt.max_tokens;
    rq->ignore_eos = 1;
    rq->temperature = 0;
    return 0;
}

/* Takes rec's contents into rr. */
static void repeat_push(struct ttft_repeat *rr, const struct request_record *rec,
                        enum ttft_kind kind)
{
    if (rr->n_reqs == rr->cap_reqs) {
        size_t n = rr->cap_reqs ? rr->cap_reqs * 2 : 16;
        rr->reqs = xrealloc(rr->reqs, n * sizeof *rr->reqs);
        rr->cap_reqs = n;
    }
    struct ttft_req *q = &rr->reqs[rr->n_reqs++];
    q->rec = *rec;
    q->kind = kind;
    q->i_in_repeat = (int)rr->n_reqs;
    q->i_warm_run = 0;
    if (kind == TTFT_KIND_WARM) {
        int n_before = 0;
        for (size_t i = 0; i + 1 < rr->n_reqs; i++)
            n_before += rr->reqs[i].kind == TTFT_KIND_WARM;
        q->i_warm_run = n_before + 1;
    }
    if (rec->error != REQ_ERROR_NONE && rec->error < REQ_ERROR__COUNT)
        rr->n_err_class[rec->error]++;
    if (rec->error != REQ_ERROR_NONE && rec->error != REQ_ERROR_ABORTED)
        rr->n_failed_requests++;
    if (rec->error == REQ_ERROR_NONE)
        log_info(MOD, "%s: ttft %.2f ms, e2e %.2f ms, %d completion tokens", rec->tag,
                 ttft_rec_ttft_ms(rec), ttft_rec_e2e_ms(rec), rec->n_completion_tokens);
    else
        log_warn(MOD, "%s: %s: %s", rec->tag, req_error_str(rec->error), rec->error_msg);
}

/* One sequential phase: the cold request (n 1) or warm_1 and the warm runs (think time = idle
 * gap before each warm run). Its records move into rr. Returns the driver's status. */
static enum driver_status run_phase(struct ttft_ctx *cx, struct ttft_repeat *rr, int cold, int n)
{
    cx->is_cold = cold;
    snprintf(cx->tag, sizeof cx->tag, "%s", cold ? "cold" : "warm");
    struct driver_phase ph = {
        .mode = DRIVER_MODE_SEQUENTIAL,
        .tag = cx->tag,
        .level = rr->index - 1,
        .n_requests = n,
        .think_s = cold ? 0 : cx->res->opt.idle_gap_s,
        .make = make_request,
        .ud = cx,
        .keep_records = (size_t)n,
    };
    struct driver_result dr;
    enum driver_status st = driver_run(cx->d, &ph, &dr);
    for (size_t i = 0; i < dr.n_recs; i++)
        repeat_push(rr, &dr.recs[i],
                    cold     ? TTFT_KIND_COLD
                    : i == 0 ? TTFT_KIND_WARM_IMMEDIATE
                             : TTFT_KIND_WARM);
    dr.n_recs = 0; /* the records are rr's now; driver_result_free frees the array only */
    if (dr.max_events_per_s > cx->res->max_events_per_s)
        cx->res->max_events_per_s = dr.max_events_per_s;
    if (st == DRIVER_STATUS_CANCELLED && session_interrupted(cx->s))
        cx->res->interrupted = rr->interrupted = 1;
    else if (st != DRIVER_STATUS_OK)
        fail(cx->res, dr.stop_reason);
    driver_result_free(&dr);
    return st;
}

/* The windows the telemetry is read over: the cold request, warm runs 1..N. */
static void repeat_windows(struct ttft_repeat *rr)
{
    for (size_t i = 0; i < rr->n_reqs; i++) {
        const struct ttft_req *q = &rr->reqs[i];
        if (q->kind == TTFT_KIND_COLD) {
            rr->t_cold_sent_ns = q->rec.t_sent_ns;
            rr->t_cold_done_ns = q->rec.t_done_ns;
        } else if (q->kind == TTFT_KIND_WARM) {
            if (!rr->t_warm_start_ns)
                rr->t_warm_start_ns = q->rec.t_sent_ns;
            rr->t_warm_end_ns = q->rec.t_done_ns;
        }
    }
}

/* The cold request, warm_1 and the warm runs of one ready launch. */
static void send_all(struct ttft_ctx *cx, struct ttft_repeat *rr, struct launch *L)
{
    struct client_config cc;
    char err[512] = "";
    probe_opts_client_config(cx->s->po, L->t->base_url, &cc);
    cx->d = driver_new(cx->s, L, &cc, cx->sink, err, sizeof err);
    if (!cx->d) {
        fail(cx->res, err);
        return;
    }
    enum driver_status st = DRIVER_STATUS_OK;
    if (!L->url_mode) {
        st = run_phase(cx, rr, 1, 1);
        telemetry_sampler_tick(L->smp); /* closes the cold window (after the request: no delay) */
    }
    if (st == DRIVER_STATUS_OK)
        run_phase(cx, rr, 0, 1 + cx->res->opt.warm_runs);
    if (L->smp)
        telemetry_sampler_tick(L->smp);
    driver_free(cx->d);
    cx->d = NULL;
    repeat_windows(rr);
}

/* ------------------------------------------------------------------ one repeat */

static void repeat_init(struct ttft_repeat *rr, int index)
{
    memset(rr, 0, sizeof *rr);
    rr->index = index;
    rr->max_model_len = -1;
    startup_info_init(&rr->startup);
    rr->gpu_mem_before_bytes = rr->gpu_mem_after_cold_bytes = -1;
    rr->gpu_util_warm_pct = NAN;
    rr->cpu_cold_pct = rr->cpu_warm_pct = NAN;
    rr->rss_ready_bytes = rr->rss_max_bytes = -1;
    rr->page_cache_before_bytes = rr->page_cache_ready_bytes = rr->page_cache_after_bytes = -1;
    rr->read_bytes_ready = rr->read_bytes_end = -1;
    rr->model_bytes = rr->model_resident_before_bytes = -1;
    rr->model_resident_launch_bytes = rr->model_resident_ready_bytes = -1;
    rr->majflt_ready = -1;
    rr->ready_s = rr->logged_sum_s = NAN;
}

/* The storage signals and the logged-vs-measured check of the launch (run/launch.h). */
static void repeat_storage(struct ttft_repeat *rr, const struct launch *L)
{
    rr->model_bytes = L->model_bytes;
    rr->model_resident_before_bytes = L->model_resident_before_bytes;
    rr->model_resident_launch_bytes = L->model_resident_launch_bytes;
    rr->model_resident_ready_bytes = L->model_resident_ready_bytes;
    rr->cold_storage_done = L->cold_storage_done;
    rr->cold_storage_effective = L->cold_storage_effective;
    snprintf(rr->cold_storage_err, sizeof rr->cold_storage_err, "%s", L->cold_storage_err);
    rr->majflt_ready = L->majflt_ready;
    rr->read_bytes_ready = L->read_bytes_ready;
    rr->ready_s = L->ready_s;
    rr->logged_sum_s = L->logged_sum_s;
    rr->logged_exceeds_measured = L->logged_exceeds_measured;
}

/* The telemetry that is ttft's own (CPU over the cold and warm windows, GPU after the cold
 * request, read bytes, RSS peak) from the launch's sampler ring; the readings from L. */
static void repeat_telemetry(struct ttft_ctx *cx, struct ttft_repeat *rr, struct launch *L)
{
    rr->gpu_mem_before_bytes = L->gpu_mem_before_bytes;
    rr->rss_ready_bytes = L->rss_ready_bytes;
    rr->page_cache_before_bytes = L->page_cache_before_bytes;
    rr->page_cache_ready_bytes = L->page_cache_ready_bytes;
    rr->page_cache_after_bytes = telemetry_page_cache_bytes();
    if (!L->smp)
        return;
    int with_gpu = cx->s->gpus.available;
    struct telemetry_sample *s = xcalloc(TTFT_SAMPLES_CAP, sizeof *s);
    size_t n = telemetry_sampler_copy(L->smp, s, TTFT_SAMPLES_CAP);
    rr->cpu_cold_pct = ttft_cpu_over_window(s, n, rr->t_cold_sent_ns, rr->t_cold_done_ns);
    rr->cpu_warm_pct = ttft_cpu_over_window(s, n, rr->t_warm_start_ns, rr->t_warm_end_ns);
    for (size_t i = 0; i < n; i++) {
        if (s[i].n_procs <= 0)
            continue;
        if (s[i].rss_bytes >= 0 && s[i].rss_bytes > rr->rss_max_bytes)
            rr->rss_max_bytes = s[i].rss_bytes;
        if (s[i].read_bytes > rr->read_bytes_end)
            rr->read_bytes_end = s[i].read_bytes;
    }
    for (size_t i = 0; with_gpu && i < n; i++) {
        if (rr->t_cold_done_ns && s[i].t_ns >= rr->t_cold_done_ns && s[i].gpu_available &&
            s[i].gpu_mem_used_bytes >= 0) {
            rr->gpu_mem_after_cold_bytes = s[i].gpu_mem_used_bytes;
            break;
        }
    }
    struct telemetry_window w;
    mono_ns slack = (mono_ns)cx->s->sample_interval_ms * 1000000ull;
    if (with_gpu && rr->t_warm_start_ns && rr->t_warm_end_ns &&
        launch_window(L, rr->t_warm_start_ns, rr->t_warm_end_ns + slack, &w) == 0 &&
        w.gpu_available)
        rr->gpu_util_warm_pct = w.gpu_util_mean_pct;
    ttft_outliers_find(rr, s, n, slack);
    free(s);
}

/* After launch_stop: what the launch says about the server and how it ended. */
static void repeat_outcome(struct ttft_ctx *cx, struct ttft_repeat *rr, struct launch *L)
{
    rr->start_status = L->status;
    rr->ready = L->ready;
    rr->tl = L->tl;
    rr->stop = L->stop;
    snprintf(rr->start_err, sizeof rr->start_err, "%s", L->err);
    snprintf(rr->cmdline, sizeof rr->cmdline, "%s", L->cmdline);
    snprintf(rr->log_path, sizeof rr->log_path, "%s", L->log_path);
    snprintf(rr->log_tail, sizeof rr->log_tail, "%s", L->log_tail);
    if (L->t) {
        snprintf(rr->version, sizeof rr->version, "%s", L->t->version);
        snprintf(rr->model_id, sizeof rr->model_id, "%s", L->t->model_id);
        rr->max_model_len = L->t->max_model_len;
        rr->port = L->t->port;
    }
    rr->died = L->died;
    rr->exit = L->exit;
    if (L->have_startup) { /* the live parse, with arrival times (launch.h) */
        rr->startup = L->startup;
        rr->have_startup = 1;
    }
    if (rr->start_status == TARGET_ERR_INTERRUPTED)
        cx->res->interrupted = rr->interrupted = 1;
    else if (rr->start_status != TARGET_OK)
        fail(cx->res, "the server did not become ready");
    if (rr->died) {
        char ex[96], msg[160];
        snprintf(msg, sizeof msg, "launch %d: the server exited (%s)", rr->index,
                 target_exit_str(&rr->exit, ex, sizeof ex));
        fail(cx->res, msg);
    }
    if (rr->n_failed_requests)
        fail(cx->res, "a request failed");
}

/* Log file of launch k: server.log, server_r2.log, ... in the output directory. */
static void repeat_log_name(int index, char *out, size_t out_len)
{
    if (index > 1)
        snprintf(out, out_len, "server_r%d.log", index);
    else
        snprintf(out, out_len, "server.log");
}

/* Runs one launch (or, in url mode, the one warm-only pass). */
static void run_repeat(struct ttft_ctx *cx, struct ttft_repeat *rr, const struct target_config *cfg)
{
    char log_name[64];
    repeat_log_name(rr->index, log_name, sizeof log_name);
    struct launch L;
    launch_init(&L, cx->s, cfg, log_name);
    rr->attempted = 1;
    cx->i_repeat = rr->index;
    if (launch_start(&L) == TARGET_OK)
        send_all(cx, rr, &L);
    launch_stop(&L);
    repeat_outcome(cx, rr, &L);
    repeat_storage(rr, &L);
    repeat_telemetry(cx, rr, &L);
    launch_free(&L);
}

/* ------------------------------------------------------------------ the probe */

static int ctx_open(struct ttft_ctx *cx)
{
    struct ttft_result *res = cx->res;
    const struct probe_opts *po = cx->s->po;
    if (workload_init_synth(&cx->wl,
                            &(struct workload_synth){.input_len_tokens = res->opt.prompt_len,
                                                     .unit = probe_tokens_are_bytes(&po->target)
                                                                 ? WORKLOAD_UNIT_BYTE
                                                                 : WORKLOAD_UNIT_WORD,
                                                     .seed = 1}) != WORKLOAD_OK) {
        fail(res, "bad --prompt-len");
        return -1;
    }
    struct buf wd;
    buf_init(&wd, 256, sizeof res->workload - 1);
    workload_describe(&cx->wl, &wd);
    snprintf(res->workload, sizeof res->workload, "%s", wd.data ? wd.data : "");
    buf_free(&wd);
    char err[512];
    cx->sink = session_sink_open(cx->s, "ttft_requests.jsonl", err, sizeof err);
    if (!cx->sink) {
        fail(res, err);
        return -1;
    }
    return 0;
}

int ttft_run(const struct ttft_opts *opts, struct session *s, struct ttft_result *res)
{
    memset(res, 0, sizeof *res);
    res->opt = *opts;
    res->s = s;
    res->url_mode = s->po->target.url != NULL;
    res->model_file_bytes = -1;
    if (res->url_mode && res->opt.repeat > 1) {
        log_warn(MOD, "--repeat %d ignored with --url (nothing is launched)", res->opt.repeat);
        res->opt.repeat = 1;
    }
    struct stat st;
    if (!res->url_mode && s->po->target.model && stat(s->po->target.model, &st) == 0 &&
        S_ISREG(st.st_mode))
        res->model_file_bytes = (int64_t)st.st_size;
    struct target_config cfg = s->po->target; /* launch_init fills self_exe for embedded */
    struct ttft_ctx cx = {.s = s, .res = res};
    if (ctx_open(&cx) == 0) {
        res->reps = xcalloc((size_t)res->opt.repeat, sizeof *res->reps);
        for (int k = 0; k < res->opt.repeat; k++) {
            struct ttft_repeat *rr = &res->reps[k];
            repeat_init(rr, k + 1);
            res->n_reps = k + 1;
            log_info(MOD, "%s %d of %d", res->url_mode ? "run" : "launch", k + 1, res->opt.repeat);
            run_repeat(&cx, rr, &cfg);
            if (res->interrupted || session_interrupted(s)) {
                res->interrupted = 1;
                break;
            }
            if (rr->died || rr->start_status != TARGET_OK)
                break;
        }
    }
    if (s->ceiling.valid && client_ceiling_warn(&s->ceiling, res->max_events_per_s, NAN,
                                                res->ceiling_msg, sizeof res->ceiling_msg))
        log_warn(MOD, "%s", res->ceiling_msg);
    record_sink_close(cx.sink);
    workload_free(&cx.wl);
    return res->failed;
}
