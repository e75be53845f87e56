/* ttft_run: runs the ttft probe. Per repeat it launches the server (target.h), records the launch
 * timeline, sends the cold request the moment the server is ready, one request right after it
 * (warm_0) and N warm runs (optional idle gap), stops the server and reads its start-up phases
 * from its log (logparse.h), with the machine's view alongside (telemetry.h). Every finished
 * request goes to OUT/ttft_requests.jsonl at once. It renders nothing (ttft_report.c,
 * ttft_json.c) and parses no argv (cmd_ttft.c). */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "measure/workload.h"
#include "net/client.h"
#include "server/telemetry.h"
#include "ttft/ttft.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

#define MOD "ttft"

struct ttft_ctx {
    struct session *s;
    struct ttft_result *res;
    struct workload wl;
    struct buf prompt;
    struct record_writer *writer;
    char jsonl_path[1100];
    uint64_t next_req_id;
    /* the request in flight (one at a time) */
    struct request_record last;
    int have_last;
};

/* CPU % of the server tree over [t0, t1]: each sample's cpu_pct covers (previous sample, this
 * sample]; intervals are weighted by their overlap with the window. NAN if none overlaps. */
static double cpu_over_window(const struct telemetry_sample *s, size_t n, mono_ns t0, mono_ns t1)
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

/* ------------------------------------------------------------------ running requests */

static void on_done(void *ud, struct request_record *rec)
{
    struct ttft_ctx *cx = ud;
    if (cx->have_last) { /* cannot happen (one request at a time); never leak */
        record_free(rec);
        return;
    }
    cx->last = *rec; /* we own its contents now */
    cx->have_last = 1;
}

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
    if (rec->error != REQ_ERROR_NONE && rec->error < REQ_ERROR__COUNT)
        rr->n_err_class[rec->error]++;
}

static void fail(struct ttft_result *res, const char *msg)
{
    res->failed = 1;
    if (!res->fail_msg[0])
        snprintf(res->fail_msg, sizeof res->fail_msg, "%s", msg);
}

/* Waits for the request in flight, watching for Ctrl-C and for the server dying. Returns 1 if
 * the server is gone, 0 otherwise; cx->have_last is set when the record arrived. */
static int wait_done(struct ttft_ctx *cx, struct ttft_repeat *rr, struct client *cl,
                     struct target *t)
{
    while (!cx->have_last) {
        client_poll(cl, 50);
        if (cx->have_last)
            break;
        if (target_interrupted()) {
            cx->res->interrupted = rr->interrupted = 1;
            client_abort_all(cl);
            break;
        }
        if (!cx->res->url_mode && !target_alive(t)) {
            client_abort_all(cl);
            return 1;
        }
    }
    return 0;
}

/* Sends one request and drives it to completion. Returns 0 when the run may go on, -1 when it
 * must stop (interrupted, server gone, client error). */
static int send_one(struct ttft_ctx *cx, struct ttft_repeat *rr, struct client *cl,
                    struct target *t, const char *tag, enum ttft_kind kind)
{
    struct ttft_result *res = cx->res;
    uint64_t id = cx->next_req_id++;
    buf_reset(&cx->prompt);
    int n_target = -1;
    if (workload_prompt(&cx->wl, id, &cx->prompt, &n_target) != WORKLOAD_OK) {
        fail(res, "prompt exceeds the buffer cap");
        return -1;
    }
    struct client_request req = {
        .id = id,
        .tag = tag,
        .level = rr->index - 1,
        .prompt = cx->prompt.data,
        .prompt_len = cx->prompt.len,
        .max_tokens = res->opt.max_tokens,
        .ignore_eos = 1,
        .temperature = 0,
    };
    cx->have_last = 0;
    if (client_submit(cl, &req) != 0) {
        fail(res, "the client refused a request");
        return -1;
    }
    int server_gone = wait_done(cx, rr, cl, t);
    if (!cx->have_last) { /* abort delivers the record; defensive */
        fail(res, "a request was never delivered");
        return -1;
    }
    struct request_record rec = cx->last;
    cx->have_last = 0;
    if ((rec.error == REQ_ERROR_CONNECT || rec.error == REQ_ERROR_PROTOCOL) && !res->url_mode &&
        !server_gone) {
        /* a cut connection is often the server going down: give its exit a moment to show */
        mono_ns until = clock_now_ns() + 1000000000ull;
        while (target_alive(t) && clock_now_ns() < until && !target_interrupted())
            poll(NULL, 0, 20);
    }
    if (rec.error != REQ_ERROR_NONE && !res->url_mode && !server_gone && !target_alive(t))
        server_gone = 1;
    if (server_gone && rec.error != REQ_ERROR_NONE)
        rec.error = REQ_ERROR_SERVER_EXIT;
    if (rec.error != REQ_ERROR_NONE && rec.error != REQ_ERROR_ABORTED)
        rr->n_failed_requests++;
    if (cx->writer && record_writer_append(cx->writer, &rec) != 0)
        log_warn(MOD, "%s: write failed: %s", cx->jsonl_path, strerror(errno));
    repeat_push(rr, &rec, kind);
    if (rec.error == REQ_ERROR_NONE)
        log_info(MOD, "%s: ttft %.2f ms, e2e %.2f ms, %d completion tokens", tag,
                 ttft_rec_ttft_ms(&rec), ttft_rec_e2e_ms(&rec), rec.n_completion_tokens);
    else
        log_warn(MOD, "%s: %s: %s", tag, req_error_str(rec.error), rec.error_msg);
    if (server_gone) {
        rr->died = 1;
        rr->exit = t->exit;
        return -1;
    }
    return rr->interrupted ? -1 : 0;
}

/* Idle gap between warm runs; returns -1 if interrupted or the server died meanwhile. */
static int idle_gap(struct ttft_ctx *cx, struct ttft_repeat *rr, struct target *t)
{
    if (cx->res->opt.idle_gap_s <= 0)
        return 0;
    mono_ns end = clock_now_ns() + (mono_ns)(cx->res->opt.idle_gap_s * 1e9);
    for (;;) {
        if (target_interrupted()) {
            cx->res->interrupted = rr->interrupted = 1;
            return -1;
        }
        if (!cx->res->url_mode && !target_alive(t)) {
            rr->died = 1;
            rr->exit = t->exit;
            return -1;
        }
        mono_ns now = clock_now_ns();
        if (now >= end)
            return 0;
        uint64_t left_ms = (end - now) / 1000000 + 1;
        struct pollfd pfd = {.fd = target_signal_fd(), .events = POLLIN};
        poll(pfd.fd >= 0 ? &pfd : NULL, pfd.fd >= 0 ? 1 : 0, (int)(left_ms < 100 ? left_ms : 100));
    }
}

/* The cold request, warm_0 and the warm runs of one repeat. */
static void send_all(struct ttft_ctx *cx, struct ttft_repeat *rr, struct client *cl,
                     struct target *t, struct telemetry_sampler *smp)
{
    char tag[32];
    if (!cx->res->url_mode) {
        snprintf(tag, sizeof tag, "cold_%d", rr->index);
        int r = send_one(cx, rr, cl, t, tag, TTFT_KIND_COLD);
        const struct ttft_req *c = ttft_find_kind(rr, TTFT_KIND_COLD);
        if (c) {
            rr->t_cold_sent_ns = c->rec.t_sent_ns;
            rr->t_cold_done_ns = c->rec.t_done_ns;
        }
        telemetry_sampler_tick(smp); /* closes the cold window (after the request: no delay) */
        if (r)
            return;
    }
    if (send_one(cx, rr, cl, t, "warm_0", TTFT_KIND_WARM_IMMEDIATE))
        return;
    for (int i = 1; i <= cx->res->opt.warm_runs; i++) {
        if (idle_gap(cx, rr, t))
            break;
        snprintf(tag, sizeof tag, "warm_%d", i);
        size_t before = rr->n_reqs;
        int r = send_one(cx, rr, cl, t, tag, TTFT_KIND_WARM);
        if (rr->n_reqs > before) {
            const struct request_record *rec = &rr->reqs[rr->n_reqs - 1].rec;
            if (!rr->t_warm_start_ns)
                rr->t_warm_start_ns = rec->t_sent_ns;
            rr->t_warm_end_ns = rec->t_done_ns;
        }
        if (r)
            break;
    }
    telemetry_sampler_tick(smp);
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
}

/* Fills the telemetry fields of rr from the sampler ring. */
static void repeat_telemetry(struct ttft_ctx *cx, struct ttft_repeat *rr,
                             struct telemetry_sampler *smp, int with_gpu)
{
    size_t cap = 40000;
    struct telemetry_sample *s = xcalloc(cap, sizeof *s);
    size_t n = telemetry_sampler_copy(smp, s, cap);
    mono_ns t_ready = rr->tl.t_models_ok_ns;
    rr->cpu_cold_pct = cpu_over_window(s, n, rr->t_cold_sent_ns, rr->t_cold_done_ns);
    rr->cpu_warm_pct = cpu_over_window(s, n, rr->t_warm_start_ns, rr->t_warm_end_ns);
    for (size_t i = 0; i < n; i++) {
        if (s[i].n_procs <= 0)
            continue;
        if (s[i].rss_bytes >= 0 && s[i].rss_bytes > rr->rss_max_bytes)
            rr->rss_max_bytes = s[i].rss_bytes;
        if (t_ready && s[i].t_ns <= t_ready) {
            if (s[i].rss_bytes >= 0)
                rr->rss_ready_bytes = s[i].rss_bytes;
            if (s[i].read_bytes >= 0)
                rr->read_bytes_ready = s[i].read_bytes;
        }
        if (s[i].read_bytes >= 0)
            rr->read_bytes_end = s[i].read_bytes;
    }
    for (size_t i = 0; with_gpu && i < n; i++) {
        if (rr->t_cold_done_ns && s[i].t_ns >= rr->t_cold_done_ns && s[i].gpu_available &&
            s[i].gpu_mem_used_bytes >= 0) {
            rr->gpu_mem_after_cold_bytes = s[i].gpu_mem_used_bytes;
            break;
        }
    }
    if (with_gpu && rr->t_warm_start_ns && rr->t_warm_end_ns) {
        struct telemetry_window w;
        mono_ns slack = (mono_ns)cx->s->sample_interval_ms * 1000000ull;
        if (telemetry_sampler_window(smp, rr->t_warm_start_ns, rr->t_warm_end_ns + slack, &w) ==
                0 &&
            w.gpu_available)
            rr->gpu_util_warm_pct = w.gpu_util_mean_pct;
    }
    free(s);
}

/* The server argv as exec'd, shell-quoted, secrets as *** (target_cmdline), with the real path
 * of this binary for the embedded server's /proc/self/exe so that it can be pasted back. */
static void repeat_cmdline(struct ttft_repeat *rr, const struct target_config *cfg, int port)
{
    char line[sizeof rr->cmdline];
    target_cmdline(cfg, port, line, sizeof line);
    const char *pse = "/proc/self/exe";
    char self[1024];
    ssize_t sl = readlink(pse, self, sizeof self - 1);
    self[sl > 0 ? sl : 0] = 0;
    size_t n_self = strlen(self);
    if (n_self && n_self < sizeof rr->cmdline && !strncmp(line, pse, strlen(pse)) &&
        !strpbrk(self, " \t'\"\\$`")) {
        memcpy(rr->cmdline, self, n_self);
        snprintf(rr->cmdline + n_self, sizeof rr->cmdline - n_self, "%s", line + strlen(pse));
    } else {
        snprintf(rr->cmdline, sizeof rr->cmdline, "%s", line);
    }
}

/* Before launch: GPU memory and the page cache. */
static void repeat_before(struct ttft_repeat *rr)
{
    struct telemetry_gpus g;
    if (telemetry_gpu_read(&g) == 0) {
        int64_t sum = 0;
        for (int i = 0; i < g.n_gpus; i++)
            if (g.gpu[i].mem_used_bytes >= 0)
                sum += g.gpu[i].mem_used_bytes;
        rr->gpu_mem_before_bytes = sum;
    } else {
        snprintf(rr->gpu_reason, sizeof rr->gpu_reason, "%s", g.reason);
    }
    rr->page_cache_before_bytes = telemetry_page_cache_bytes();
}

/* Launches and waits until ready. 0 when ready. */
static int repeat_start(struct ttft_ctx *cx, struct ttft_repeat *rr, struct target *t,
                        const struct target_config *cfg, struct telemetry_sampler *smp)
{
    char err[2048] = "";
    rr->attempted = 1;
    rr->start_status = target_launch(t, err, sizeof err);
    if (rr->start_status == TARGET_OK) {
        rr->port = t->port;
        if (!cx->res->url_mode) {
            telemetry_sampler_set_root(smp, t->pid);
            repeat_cmdline(rr, cfg, t->port);
        }
        rr->start_status = target_wait_ready(t, err, sizeof err);
    }
    rr->tl = t->tl;
    if (rr->start_status == TARGET_OK) {
        rr->ready = 1;
        rr->page_cache_ready_bytes = telemetry_page_cache_bytes();
        return 0;
    }
    /* first line only: the log tail is shown as its own block */
    snprintf(rr->start_err, sizeof rr->start_err, "%.*s", (int)strcspn(err, "\n"), err);
    if (rr->start_status == TARGET_ERR_INTERRUPTED || target_interrupted())
        cx->res->interrupted = rr->interrupted = 1;
    else
        fail(cx->res, "the server did not become ready");
    if (rr->start_status == TARGET_ERR_EXITED) {
        rr->died = 1;
        rr->exit = t->exit;
    }
    log_error(MOD, "server did not become ready: %s: %s", target_status_str(rr->start_status),
              rr->start_err);
    return -1;
}

/* After the requests: stop, reap, classify how it ended, parse the log. */
static void repeat_finish(struct ttft_ctx *cx, struct ttft_repeat *rr, struct target *t)
{
    struct ttft_result *res = cx->res;
    if (!res->url_mode && !rr->died && rr->ready && target_alive(t) == 0) {
        rr->died = 1; /* died between requests */
        rr->exit = t->exit;
    }
    if (!t->version[0] && rr->ready && !rr->died)
        target_fetch_version(t);
    snprintf(rr->version, sizeof rr->version, "%s", t->version);
    snprintf(rr->model_id, sizeof rr->model_id, "%s", t->model_id);
    rr->max_model_len = t->max_model_len;
    target_stop(t, &rr->stop);
    if (!rr->died && rr->ready && !rr->interrupted && rr->stop.exit.exited &&
        !rr->stop.was_running && t->launched) {
        rr->died = 1;
        rr->exit = rr->stop.exit;
    }
    if (rr->died) {
        char ex[96], msg[160];
        snprintf(msg, sizeof msg, "launch %d: the server exited (%s)", rr->index,
                 target_exit_str(&rr->exit, ex, sizeof ex));
        fail(res, msg);
    }
    rr->tl = t->tl;
    if (res->url_mode)
        return;
    /* the live parse has arrival times (inferred phases, timeline offsets); the file is the
     * fallback when the log was never followed */
    target_follow_log(t);
    char lerr[256];
    if (t->startup.n_lines > 0) {
        rr->startup = t->startup;
        rr->have_startup = 1;
    } else if (logparse_file(rr->log_path, &rr->startup, lerr, sizeof lerr) == 0) {
        rr->have_startup = 1;
    }
    if (rr->died || rr->start_status != TARGET_OK) {
        struct buf tail;
        buf_init(&tail, 1024, sizeof rr->log_tail - 1);
        if (target_log_tail(rr->log_path, 20, &tail) == 0)
            snprintf(rr->log_tail, sizeof rr->log_tail, "%s", tail.data);
        buf_free(&tail);
    }
}

/* Runs one launch (or, in url mode, the one warm-only pass). */
static void run_repeat(struct ttft_ctx *cx, struct ttft_repeat *rr)
{
    struct target_config cfg = cx->s->po->target;
    char log_path[1024];
    if (!cx->res->url_mode && rr->index > 1) {
        /* keep every launch's log: server.log, server_r2.log, ... */
        const char *base = cfg.log_path ? cfg.log_path : "server.log";
        size_t bl = strlen(base);
        if (bl > 4 && !strcmp(base + bl - 4, ".log"))
            snprintf(log_path, sizeof log_path, "%.*s_r%d.log", (int)(bl - 4), base, rr->index);
        else
            snprintf(log_path, sizeof log_path, "%s_r%d", base, rr->index);
        cfg.log_path = log_path;
    }
    snprintf(rr->log_path, sizeof rr->log_path, "%s", cfg.log_path ? cfg.log_path : "server.log");
    int with_gpu = cx->s->gpus.available;
    struct telemetry_sampler *smp = telemetry_sampler_new(&(struct telemetry_sampler_config){
        .root_pid = 0,
        .interval_ms = cx->s->sample_interval_ms,
        .cap_samples = 36000,
        .with_gpu = with_gpu});
    if (telemetry_sampler_start(smp) != 0)
        log_warn(MOD, "telemetry sampler thread did not start; CPU/RSS/GPU figures will be n/a");
    repeat_before(rr);
    struct target *t = target_new(&cfg);
    if (repeat_start(cx, rr, t, &cfg, smp) == 0) {
        struct client_config cc;
        char err[512];
        probe_opts_client_config(cx->s->po, t->base_url, &cc);
        if (!cc.model && t->model_id[0])
            cc.model = t->model_id;
        struct client *cl = client_new(&cc, on_done, cx, err, sizeof err);
        if (cl)
            send_all(cx, rr, cl, t, smp);
        else
            fail(cx->res, err);
        client_free(cl);
    }
    repeat_finish(cx, rr, t);
    telemetry_sampler_stop(smp);
    repeat_telemetry(cx, rr, smp, with_gpu);
    telemetry_sampler_free(smp);
    rr->page_cache_after_bytes = telemetry_page_cache_bytes();
    if (rr->n_failed_requests)
        fail(cx->res, "a request failed");
    target_free(t);
}

/* ------------------------------------------------------------------ the probe */

/* The fastest stream's event rate against the client's own ceiling. */
static void check_ceiling(struct ttft_ctx *cx)
{
    struct ttft_result *res = cx->res;
    double max_ev_per_s = 0;
    for (int k = 0; k < res->n_reps; k++)
        for (size_t i = 0; i < res->reps[k].n_reqs; i++) {
            const struct request_record *q = &res->reps[k].reqs[i].rec;
            double e2e_s = ttft_rec_e2e_ms(q) / 1000;
            if (q->error == REQ_ERROR_NONE && e2e_s > 0 && q->n_events / e2e_s > max_ev_per_s)
                max_ev_per_s = q->n_events / e2e_s;
        }
    res->max_events_per_s = max_ev_per_s;
    if (cx->s->ceiling.valid &&
        client_ceiling_warn(&cx->s->ceiling, max_ev_per_s, NAN, res->ceiling_msg,
                            sizeof res->ceiling_msg))
        log_warn(MOD, "%s", res->ceiling_msg);
}

static int ctx_open(struct ttft_ctx *cx)
{
    struct ttft_result *res = cx->res;
    const struct probe_opts *po = cx->s->po;
    if (workload_init_synth(&cx->wl, &(struct workload_synth){
                                         .input_len_tokens = res->opt.prompt_len,
                                         .unit = po->target.kind == TARGET_KIND_EMBEDDED
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
    buf_init(&cx->prompt, 4096, (size_t)WORKLOAD_MAX_LEN_TOKENS * 16);
    session_path(cx->s, "ttft_requests.jsonl", cx->jsonl_path, sizeof cx->jsonl_path);
    if (unlink(cx->jsonl_path) != 0 && errno != ENOENT)
        log_warn(MOD, "cannot remove the old %s: %s", cx->jsonl_path, strerror(errno));
    char err[512];
    cx->writer = record_writer_open(cx->jsonl_path, err, sizeof err);
    if (!cx->writer) {
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
    struct ttft_ctx cx = {.s = s, .res = res};
    if (ctx_open(&cx) == 0) {
        res->reps = xcalloc((size_t)res->opt.repeat, sizeof *res->reps);
        for (int k = 0; k < res->opt.repeat; k++) {
            struct ttft_repeat *rr = &res->reps[k];
            repeat_init(rr, k + 1);
            res->n_reps = k + 1;
            log_info(MOD, "%s %d of %d", res->url_mode ? "run" : "launch", k + 1, res->opt.repeat);
            run_repeat(&cx, rr);
            if (res->interrupted || target_interrupted()) {
                res->interrupted = 1;
                break;
            }
            if (rr->died || rr->start_status != TARGET_OK)
                break;
        }
        check_ceiling(&cx);
    }
    record_writer_close(cx.writer);
    buf_free(&cx.prompt);
    workload_free(&cx.wl);
    return res->failed;
}
