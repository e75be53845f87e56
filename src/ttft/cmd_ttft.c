/* cmd_ttft: `slmprobe ttft`, the Tier 1 probe of cold versus warm time to first token. Per repeat
 * it launches the server (target.h), records the launch timeline, sends the cold request the
 * moment the server is ready, one request right after it (warm_0) and N warm runs (optional idle
 * gap), stops the server and reads its own start-up phases from its log (logparse.h), with the
 * machine's view alongside (telemetry.h: server CPU, RSS, read bytes, page cache, GPU). Every
 * finished request goes to OUT/ttft_requests.jsonl at once; the report (report.h) goes to
 * OUT/first_token_latency.{md,html}, OUT/ttft.json and OUT/ttft_runs.csv, also after a failure or
 * Ctrl-C, with what was measured. Observations are sentences built from the measured values.
 * It does no load testing (that is `slmprobe batch`) and never imitates a server. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "net/client.h"
#include "server/logparse.h"
#include "run/probe_opts.h"
#include "measure/record.h"
#include "report/report.h"
#include "measure/stats.h"
#include "server/target.h"
#include "server/telemetry.h"
#include "measure/workload.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

#define MOD "ttft"

/* Judgement thresholds used by the observations (documented in docs/ttft.md). */
#define TTFT_SPREAD_TIGHT_RATIO 1.25 /* warm max/min at or below: tight */
#define TTFT_SPREAD_WIDE_RATIO 2.0   /* above: wide */
#define TTFT_PAGE_CACHE_READ_FRAC                                                                  \
    0.5 /* page-cache growth >= this share of the model file:                                      \
           the weights were read from storage at start-up */
#define TTFT_SAMPLE_INTERVAL_MS 50
#define TTFT_SAMPLE_INTERVAL_SMI_MS 500 /* when GPUs are read by forking nvidia-smi */

struct ttft_opts {
    int warm_runs;
    double idle_gap_s;
    int repeat;
    int prompt_len;
    int max_tokens;
};

/* One request as the report sees it: the record plus what kind of run it was. */
struct ttft_req {
    struct request_record rec; /* owned (t_content_ns) */
    char kind[24];             /* "cold", "warm_immediate", "warm" */
    int i_in_repeat;           /* 1 = first request of the repeat */
};

struct ttft_repeat {
    int index; /* 1-based */
    /* launch */
    int attempted;
    enum target_status start_status;
    char start_err[2048];
    int ready;
    int port;
    char **argv;
    int argc;
    char log_path[1024];
    struct target_timeline tl;
    char version[128];
    char model_id[256];
    int max_model_len;
    struct startup_info startup;
    int have_startup;
    char log_tail[4096];
    /* outcome */
    int died;                /* server exited on its own during the run */
    struct target_exit exit; /* how it exited (died) */
    int interrupted;
    struct target_stop_result stop;
    int n_failed_requests;
    /* requests */
    struct ttft_req *reqs;
    size_t n_reqs, cap_reqs;
    mono_ns t_cold_sent_ns, t_cold_done_ns, t_warm_start_ns, t_warm_end_ns;
    /* telemetry */
    int64_t gpu_mem_before_bytes;
    int64_t gpu_mem_after_cold_bytes;
    double gpu_util_warm_pct;
    char gpu_reason[256];
    double cpu_cold_pct, cpu_warm_pct;
    int64_t rss_ready_bytes, rss_max_bytes;
    int64_t page_cache_before_bytes, page_cache_ready_bytes, page_cache_after_bytes;
    int64_t read_bytes_ready, read_bytes_end;
    char read_bytes_reason[96];
};

struct ttft_ctx {
    struct ttft_opts opt;
    struct probe_opts po;
    int url_mode;
    struct workload wl;
    struct buf prompt;
    struct record_writer *writer;
    char jsonl_path[1024];
    uint64_t next_req_id;
    /* the request in flight (one at a time) */
    struct request_record last;
    int have_last;
    /* environment */
    struct telemetry_host host;
    int have_host;
    struct telemetry_gpus gpus;
    int64_t model_file_bytes;
    struct client_ceiling ceiling;
    char ceiling_msg[256];
    int interval_ms;
    char started_at[32];
    /* results */
    struct ttft_repeat *reps;
    int n_reps;
    int failed;
    int interrupted;
    char fail_msg[512];
};

/* ------------------------------------------------------------------ options */

static void ttft_usage(FILE *f)
{
    fprintf(
        f,
        "usage: slmprobe ttft [options] [-- extra server flags]\n"
        "\n"
        "Tier 1: cold vs warm time to first token. Launches the server, records the launch\n"
        "timeline (process start, port open, /health ok, /v1/models ok), sends the cold request\n"
        "the moment it is ready, one request right after it (warm_0), then N warm runs; stops\n"
        "the server and reads its start-up phases from its log. Writes OUT/ttft_requests.jsonl\n"
        "(one line per finished request), OUT/first_token_latency.md and .html, OUT/ttft.json\n"
        "and OUT/ttft_runs.csv. With --url: no launch, warm runs only.\n"
        "\n"
        "ttft options:\n"
        "  --warm-runs N        warm requests after warm_0 (statistics use these) [5]\n"
        "  --idle-gap SECONDS   idle time before each warm run [0]\n"
        "  --repeat K           launch the server K times; report the spread of cold numbers [1]\n"
        "  --prompt-len TOKENS  synthetic prompt length; on the embedded runtime one token is\n"
        "                       one byte (exact), elsewhere one common word (approximate) [128]\n"
        "  --max-tokens N       tokens generated per request (sent with ignore_eos) [32]\n"
        "  --drop-caches        (root) sync and drop the page cache before each launch, so the\n"
        "                       weights are read from storage: a disk-cold start\n"
        "  -h, --help           this text\n"
        "\n"
        "Exit status: 0 ok; 1 a run failed (server did not start, died, or a request failed);\n"
        "2 usage error; 130 interrupted (partial results are written).\n"
        "\n"
        "common probe options:\n");
    probe_opts_help(f);
}

static int parse_int_opt(const char *name, const char *v, long lo, long hi, int *out, char *err,
                         size_t err_len)
{
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || errno || *end || x < lo || x > hi) {
        snprintf(err, err_len, "%s: expected an integer in [%ld, %ld], got '%s'", name, lo, hi,
                 v ? v : "");
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_double_opt(const char *name, const char *v, double lo, double hi, double *out,
                            char *err, size_t err_len)
{
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || !*v || errno || *end || !isfinite(x) || x < lo || x > hi) {
        snprintf(err, err_len, "%s: expected a number in [%g, %g], got '%s'", name, lo, hi,
                 v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

/* Parses the ttft options out of rest[1..n). 0, or -1 with a message. */
static int ttft_parse(int n, char **rest, struct ttft_opts *o, char *err, size_t err_len)
{
    o->warm_runs = 5;
    o->idle_gap_s = 0;
    o->repeat = 1;
    o->prompt_len = 128;
    o->max_tokens = 32;
    for (int i = 1; i < n; i++) {
        const char *a = rest[i];
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, err_len, "unexpected argument '%s'", a);
            return -1;
        }
        char name[64];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
        int known = !strcmp(name, "--warm-runs") || !strcmp(name, "--idle-gap") ||
                    !strcmp(name, "--repeat") || !strcmp(name, "--prompt-len") ||
                    !strcmp(name, "--max-tokens");
        if (!known) {
            snprintf(err, err_len, "unknown option '%s'", a);
            return -1;
        }
        if (!val) {
            if (i + 1 >= n) {
                snprintf(err, err_len, "%s needs a value", name);
                return -1;
            }
            val = rest[++i];
        }
        int r;
        if (!strcmp(name, "--warm-runs"))
            r = parse_int_opt(name, val, 0, 100000, &o->warm_runs, err, err_len);
        else if (!strcmp(name, "--idle-gap"))
            r = parse_double_opt(name, val, 0, 86400, &o->idle_gap_s, err, err_len);
        else if (!strcmp(name, "--repeat"))
            r = parse_int_opt(name, val, 1, 1000, &o->repeat, err, err_len);
        else if (!strcmp(name, "--prompt-len"))
            r = parse_int_opt(name, val, 1, WORKLOAD_MAX_LEN_TOKENS, &o->prompt_len, err, err_len);
        else
            r = parse_int_opt(name, val, 1, 1000000, &o->max_tokens, err, err_len);
        if (r)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ helpers */

static double bytes_to_mib(int64_t b)
{
    return b < 0 ? NAN : (double)b / (1024.0 * 1024.0);
}

static double rel_ms(mono_ns t, mono_ns t0)
{
    return t && t0 && t >= t0 ? ns_to_ms(t - t0) : NAN;
}

static double rec_ttft_ms(const struct request_record *r)
{
    int64_t v = record_ttft_ns(r);
    return v < 0 ? NAN : ns_to_ms((uint64_t)v);
}

static double rec_e2e_ms(const struct request_record *r)
{
    int64_t v = record_e2e_ns(r);
    return v < 0 ? NAN : ns_to_ms((uint64_t)v);
}

static double int_or_nan(int v)
{
    return v < 0 ? NAN : (double)v;
}

static const struct ttft_req *find_kind(const struct ttft_repeat *rr, const char *kind)
{
    for (size_t i = 0; i < rr->n_reqs; i++)
        if (!strcmp(rr->reqs[i].kind, kind))
            return &rr->reqs[i];
    return NULL;
}

/* TTFT (ms) of the successful warm runs of a repeat into out (cap n); returns the count. */
static size_t warm_ttfts(const struct ttft_repeat *rr, double *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < rr->n_reqs && n < cap; i++) {
        const struct ttft_req *q = &rr->reqs[i];
        if (strcmp(q->kind, "warm") || q->rec.error != REQ_ERROR_NONE)
            continue;
        double v = rec_ttft_ms(&q->rec);
        if (isfinite(v))
            out[n++] = v;
    }
    return n;
}

static double cold_ttft_ms(const struct ttft_repeat *rr)
{
    const struct ttft_req *c = find_kind(rr, "cold");
    return c && c->rec.error == REQ_ERROR_NONE ? rec_ttft_ms(&c->rec) : NAN;
}

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

static void repeat_push(struct ttft_repeat *rr, const struct request_record *rec, const char *kind)
{
    if (rr->n_reqs == rr->cap_reqs) {
        size_t n = rr->cap_reqs ? rr->cap_reqs * 2 : 16;
        rr->reqs = xrealloc(rr->reqs, n * sizeof *rr->reqs);
        rr->cap_reqs = n;
    }
    struct ttft_req *q = &rr->reqs[rr->n_reqs++];
    q->rec = *rec;
    snprintf(q->kind, sizeof q->kind, "%s", kind);
    q->i_in_repeat = (int)rr->n_reqs;
}

/* Sends one request and drives it to completion, watching for Ctrl-C and for the server dying.
 * Returns 0 when the run may go on, -1 when it must stop (interrupted, server gone, client error).
 */
static int send_one(struct ttft_ctx *cx, struct ttft_repeat *rr, struct client *cl,
                    struct target *t, const char *tag, const char *kind)
{
    uint64_t id = cx->next_req_id++;
    buf_reset(&cx->prompt);
    int n_target = -1;
    if (workload_prompt(&cx->wl, id, &cx->prompt, &n_target) != WORKLOAD_OK) {
        snprintf(cx->fail_msg, sizeof cx->fail_msg, "prompt of %d tokens exceeds the buffer cap",
                 cx->opt.prompt_len);
        cx->failed = 1;
        return -1;
    }
    struct client_request req = {
        .id = id,
        .tag = tag,
        .level = rr->index - 1,
        .prompt = cx->prompt.data,
        .prompt_len = cx->prompt.len,
        .max_tokens = cx->opt.max_tokens,
        .ignore_eos = 1,
        .temperature = 0,
    };
    cx->have_last = 0;
    if (client_submit(cl, &req) != 0) {
        snprintf(cx->fail_msg, sizeof cx->fail_msg, "client refused request %s", tag);
        cx->failed = 1;
        return -1;
    }
    int server_gone = 0;
    while (!cx->have_last) {
        client_poll(cl, 50);
        if (cx->have_last)
            break;
        if (target_interrupted()) {
            cx->interrupted = rr->interrupted = 1;
            client_abort_all(cl);
            break;
        }
        if (!cx->url_mode && !target_alive(t)) {
            server_gone = 1;
            client_abort_all(cl);
            break;
        }
    }
    if (!cx->have_last) { /* abort delivers the record; defensive */
        snprintf(cx->fail_msg, sizeof cx->fail_msg, "request %s was never delivered", tag);
        cx->failed = 1;
        return -1;
    }
    struct request_record rec = cx->last;
    cx->have_last = 0;
    if ((rec.error == REQ_ERROR_CONNECT || rec.error == REQ_ERROR_PROTOCOL) && !cx->url_mode &&
        !server_gone) {
        /* a cut connection is often the server going down: give its exit a moment to show */
        mono_ns until = clock_now_ns() + 1000000000ull;
        while (target_alive(t) && clock_now_ns() < until && !target_interrupted())
            poll(NULL, 0, 20);
    }
    if (rec.error != REQ_ERROR_NONE && !cx->url_mode && !server_gone && !target_alive(t))
        server_gone = 1;
    if (server_gone && rec.error != REQ_ERROR_NONE)
        rec.error = REQ_ERROR_SERVER_EXIT;
    if (rec.error != REQ_ERROR_NONE && rec.error != REQ_ERROR_ABORTED)
        rr->n_failed_requests++;
    if (cx->writer && record_writer_append(cx->writer, &rec) != 0)
        log_warn(MOD, "%s: write failed: %s", cx->jsonl_path, strerror(errno));
    repeat_push(rr, &rec, kind);
    double ttft = rec_ttft_ms(&rec), e2e = rec_e2e_ms(&rec);
    if (rec.error == REQ_ERROR_NONE)
        log_info(MOD, "%s: ttft %.2f ms, e2e %.2f ms, %d completion tokens", tag, ttft, e2e,
                 rec.n_completion_tokens);
    else
        log_warn(MOD, "%s: %s: %s", tag, req_error_str(rec.error), rec.error_msg);
    if (server_gone) {
        rr->died = 1;
        rr->exit = t->exit;
        return -1;
    }
    if (rr->interrupted)
        return -1;
    return 0;
}

/* Idle gap between warm runs; returns -1 if interrupted or the server died meanwhile. */
static int idle_gap(struct ttft_ctx *cx, struct ttft_repeat *rr, struct target *t)
{
    if (cx->opt.idle_gap_s <= 0)
        return 0;
    mono_ns end = clock_now_ns() + (mono_ns)(cx->opt.idle_gap_s * 1e9);
    for (;;) {
        if (target_interrupted()) {
            cx->interrupted = rr->interrupted = 1;
            return -1;
        }
        if (!cx->url_mode && !target_alive(t)) {
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

static void repeat_free(struct ttft_repeat *rr)
{
    for (size_t i = 0; i < rr->n_reqs; i++)
        record_free(&rr->reqs[i].rec);
    free(rr->reqs);
    target_argv_free(rr->argv);
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
    if (with_gpu) {
        for (size_t i = 0; i < n; i++) {
            if (rr->t_cold_done_ns && s[i].t_ns >= rr->t_cold_done_ns && s[i].gpu_available &&
                s[i].gpu_mem_used_bytes >= 0) {
                rr->gpu_mem_after_cold_bytes = s[i].gpu_mem_used_bytes;
                break;
            }
        }
        if (rr->t_warm_start_ns && rr->t_warm_end_ns) {
            struct telemetry_window w;
            mono_ns slack = (mono_ns)cx->interval_ms * 1000000ull;
            if (telemetry_sampler_window(smp, rr->t_warm_start_ns, rr->t_warm_end_ns + slack, &w) ==
                    0 &&
                w.gpu_available)
                rr->gpu_util_warm_pct = w.gpu_util_mean_pct;
        }
    }
    free(s);
}

/* Runs one launch (or, in url mode, the one warm-only pass). */
static void run_repeat(struct ttft_ctx *cx, struct ttft_repeat *rr)
{
    struct target_config cfg = cx->po.target;
    char log_path[1024];
    if (!cx->url_mode && rr->index > 1) {
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
    int with_gpu = cx->gpus.available;
    struct telemetry_sampler *smp = telemetry_sampler_new(&(struct telemetry_sampler_config){
        .root_pid = 0, .interval_ms = cx->interval_ms, .cap_samples = 36000, .with_gpu = with_gpu});
    if (telemetry_sampler_start(smp) != 0)
        log_warn(MOD, "telemetry sampler thread did not start; CPU/RSS/GPU figures will be n/a");

    /* before launch */
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

    struct target *t = target_new(&cfg);
    struct client *cl = NULL;
    rr->attempted = 1;
    char err[2048] = "";
    rr->start_status = target_launch(t, err, sizeof err);
    if (rr->start_status == TARGET_OK) {
        rr->port = t->port;
        if (!cx->url_mode) {
            telemetry_sampler_set_root(smp, t->pid);
            target_argv_build(&cfg, t->port, &rr->argv, &rr->argc, NULL, 0);
        }
        rr->start_status = target_wait_ready(t, err, sizeof err);
    }
    rr->tl = t->tl;
    if (rr->start_status != TARGET_OK) {
        /* first line only: the log tail that target appends is shown as its own block */
        snprintf(rr->start_err, sizeof rr->start_err, "%.*s", (int)strcspn(err, "\n"), err);
        if (rr->start_status == TARGET_ERR_INTERRUPTED || target_interrupted())
            cx->interrupted = rr->interrupted = 1;
        else
            cx->failed = 1;
        if (rr->start_status == TARGET_ERR_EXITED) {
            rr->died = 1;
            rr->exit = t->exit;
        }
        log_error(MOD, "server did not become ready: %s: %s", target_status_str(rr->start_status),
                  err);
        goto stop;
    }
    rr->ready = 1;
    rr->page_cache_ready_bytes = telemetry_page_cache_bytes();

    struct client_config cc;
    probe_opts_client_config(&cx->po, t->base_url, &cc);
    if (!cc.model && t->model_id[0])
        cc.model = t->model_id;
    cl = client_new(&cc, on_done, cx, err, sizeof err);
    if (!cl) {
        snprintf(cx->fail_msg, sizeof cx->fail_msg, "client: %s", err);
        cx->failed = 1;
        goto stop;
    }

    char tag[32];
    if (!cx->url_mode) {
        snprintf(tag, sizeof tag, "cold_%d", rr->index);
        int r = send_one(cx, rr, cl, t, tag, "cold");
        const struct ttft_req *c = find_kind(rr, "cold");
        if (c) {
            rr->t_cold_sent_ns = c->rec.t_sent_ns;
            rr->t_cold_done_ns = c->rec.t_done_ns;
        }
        telemetry_sampler_tick(smp); /* closes the cold window (after the request: no delay) */
        if (r)
            goto stop;
    }
    if (send_one(cx, rr, cl, t, "warm_0", "warm_immediate"))
        goto stop;
    for (int i = 1; i <= cx->opt.warm_runs; i++) {
        if (idle_gap(cx, rr, t))
            break;
        snprintf(tag, sizeof tag, "warm_%d", i);
        size_t before = rr->n_reqs;
        int r = send_one(cx, rr, cl, t, tag, "warm");
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

stop:
    client_free(cl);
    if (!cx->url_mode && !rr->died && target_alive(t) == 0 && rr->ready) {
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
        char ex[96];
        cx->failed = 1;
        if (!cx->fail_msg[0])
            snprintf(cx->fail_msg, sizeof cx->fail_msg, "launch %d: the server exited (%s)",
                     rr->index, target_exit_str(&rr->exit, ex, sizeof ex));
    }
    rr->tl = t->tl;
    telemetry_sampler_stop(smp);
    repeat_telemetry(cx, rr, smp, with_gpu);
    telemetry_sampler_free(smp);
    rr->page_cache_after_bytes = telemetry_page_cache_bytes();
    if (!cx->url_mode) {
        char lerr[256];
        if (logparse_file(rr->log_path, &rr->startup, lerr, sizeof lerr) == 0)
            rr->have_startup = 1;
        else if (t->startup.n_lines > 0) {
            rr->startup = t->startup;
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
    if (rr->n_failed_requests)
        cx->failed = 1;
    target_free(t);
}

/* ------------------------------------------------------------------ report */

static void fmt_ms(double ms, char *out, size_t n)
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

static const char *phase_what(enum startup_phase p)
{
    switch (p) {
    case STARTUP_PHASE_WEIGHTS_LOAD:
        return "reading the weights";
    case STARTUP_PHASE_MODEL_LOAD:
        return "whole model load (weights included)";
    case STARTUP_PHASE_TORCH_COMPILE:
        return "torch.compile";
    case STARTUP_PHASE_KV_CACHE_ALLOC:
        return "KV cache allocation";
    case STARTUP_PHASE_WARMUP_GRAPH_CAPTURE:
        return "warm-up / CUDA graph capture";
    case STARTUP_PHASE_ENGINE_INIT:
        return "engine init total (profile, KV cache, warm-up)";
    case STARTUP_PHASE__COUNT:
        break;
    }
    return "";
}

static void section_status(struct ttft_ctx *cx, struct report *r)
{
    struct report_section *s = report_section_add(r, "status", "Run status");
    int n_ok = 0;
    for (int k = 0; k < cx->n_reps; k++) {
        const struct ttft_repeat *rr = &cx->reps[k];
        int ok = rr->ready && !rr->died && !rr->interrupted && !rr->n_failed_requests;
        n_ok += ok;
    }
    if (cx->url_mode)
        report_paragraph(s,
                         "Warm-only run: --url %s was given, so the server was not launched by "
                         "the probe. Cold start, launch timeline and start-up phases are not "
                         "measured; every request is a warm run against the running server.",
                         cx->po.target.url);
    if (cx->interrupted)
        report_paragraph(s,
                         "Interrupted (Ctrl-C / SIGTERM): the server was stopped and these are "
                         "partial results: %d of %d launch(es) ran to completion.",
                         n_ok, cx->opt.repeat);
    else if (cx->failed)
        report_paragraph(s,
                         "FAILED: %s. Every request that finished is kept below and in "
                         "ttft_requests.jsonl.",
                         cx->fail_msg[0] ? cx->fail_msg : "see below");
    else if (cx->url_mode)
        report_paragraph(s, "Completed: warm_0 and %d warm run(s) against the running server.",
                         cx->opt.warm_runs);
    else
        report_paragraph(s,
                         "Completed: %d launch(es), each with a cold request, one immediate "
                         "follow-up (warm_0) and %d warm run(s).",
                         cx->n_reps, cx->opt.warm_runs);
    for (int k = 0; k < cx->n_reps; k++) {
        const struct ttft_repeat *rr = &cx->reps[k];
        if (rr->start_status != TARGET_OK)
            report_bullet(s, "Launch %d: server not ready: %s: %s", rr->index,
                          target_status_str(rr->start_status), rr->start_err);
        if (rr->died && rr->ready) {
            char ex[96];
            report_bullet(s,
                          "Launch %d: the server exited on its own (%s) after %zu finished "
                          "request(s).",
                          rr->index, target_exit_str(&rr->exit, ex, sizeof ex), rr->n_reqs);
        }
        for (size_t i = 0; i < rr->n_reqs; i++) {
            const struct request_record *q = &rr->reqs[i].rec;
            if (q->error != REQ_ERROR_NONE)
                report_bullet(s, "Launch %d, %s: %s%s%s", rr->index, q->tag,
                              req_error_str(q->error), q->error_msg[0] ? ": " : "", q->error_msg);
        }
        if (rr->stop.killed)
            report_bullet(s,
                          "Launch %d: the server ignored SIGTERM for the grace period and was "
                          "killed with SIGKILL.",
                          rr->index);
        if (rr->log_tail[0]) {
            report_paragraph(s, "Last lines of the server log (%s):", rr->log_path);
            report_pre(s, rr->log_tail);
        }
    }
    if (cx->ceiling_msg[0])
        report_bullet(s, "Client ceiling: %s", cx->ceiling_msg);
}

static void section_config(struct ttft_ctx *cx, struct report *r)
{
    struct report_section *s = report_section_add(r, "config", "Server configuration");
    const struct target_config *tc = &cx->po.target;
    const struct ttft_repeat *r0 = cx->n_reps ? &cx->reps[0] : NULL;
    struct report_table *t = report_table_add(s, "config", NULL);
    report_table_col(t, "key", "Setting", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "value", "Value", NULL, REPORT_COL_TEXT, 0);
#define KV(k, ...)                                                                                 \
    do {                                                                                           \
        report_table_row_add(t);                                                                   \
        report_row_text(t, "%s", k);                                                               \
        report_row_text(t, __VA_ARGS__);                                                           \
    } while (0)
    KV("server_kind", "%s", target_kind_str(tc->kind));
    KV("model", "%s", tc->model ? tc->model : "(from --serve-cmd / --url)");
    if (r0 && r0->model_id[0])
        KV("served_model_id", "%s", r0->model_id);
    if (cx->model_file_bytes >= 0)
        KV("model_file_mib", "%.1f", bytes_to_mib(cx->model_file_bytes));
    if (r0 && r0->max_model_len > 0)
        KV("max_model_len", "%d", r0->max_model_len);
    KV("server_version", "%s", r0 && r0->version[0] ? r0->version : "unknown");
    if (cx->url_mode)
        KV("url", "%s", tc->url);
    else if (r0 && r0->port)
        KV("endpoint", "http://%s:%d", tc->host ? tc->host : "127.0.0.1", r0->port);
    KV("prefix_caching", "%s",
       tc->prefix_cache == TARGET_PREFIX_CACHE_ON    ? "on"
       : tc->prefix_cache == TARGET_PREFIX_CACHE_OFF ? "off"
                                                     : "server default");
    if (tc->max_model_len)
        KV("max_model_len_flag", "%d", tc->max_model_len);
    if (tc->gpu_memory_utilization > 0)
        KV("gpu_memory_utilization", "%g", tc->gpu_memory_utilization);
    struct buf extra;
    buf_init(&extra, 256, 1 << 16);
    for (int i = 0; i < tc->n_extra_args; i++)
        buf_printf(&extra, "%s%s", i ? " " : "", tc->extra_args[i]);
    KV("extra_server_flags", "%s", extra.len ? extra.data : "(none)");
    buf_free(&extra);
    KV("api", "%s", client_api_str(cx->po.api));
    KV("drop_caches", "%s", tc->drop_caches ? "yes (page cache dropped before each launch)" : "no");
    struct buf wd;
    buf_init(&wd, 256, 1 << 14);
    workload_describe(&cx->wl, &wd);
    KV("workload", "%s", wd.data);
    buf_free(&wd);
    KV("requests",
       "max_tokens %d, ignore_eos, temperature 0, streamed; warm runs %d, idle gap %g "
       "s, launches %d",
       cx->opt.max_tokens, cx->opt.warm_runs, cx->opt.idle_gap_s, cx->opt.repeat);
    /* environment */
    if (cx->gpus.available) {
        struct buf gn;
        buf_init(&gn, 256, 1 << 14);
        for (int i = 0; i < cx->gpus.n_gpus; i++)
            buf_printf(&gn, "%s%s (%.0f MiB)", i ? ", " : "", cx->gpus.gpu[i].name,
                       bytes_to_mib(cx->gpus.gpu[i].mem_total_bytes));
        KV("gpus", "%s", gn.data);
        buf_free(&gn);
        if (cx->gpus.driver_version[0])
            KV("gpu_driver", "%s (read via %s)", cx->gpus.driver_version, cx->gpus.source);
    } else {
        KV("gpus", "none: %s", cx->gpus.reason);
    }
    if (cx->have_host) {
        KV("cpu", "%s, %d online CPUs", cx->host.cpu_model[0] ? cx->host.cpu_model : "unknown",
           cx->host.n_cpus);
        KV("memory_gib", "%.1f", (double)cx->host.mem_total_bytes / (1024.0 * 1024 * 1024));
        KV("os", "%s", cx->host.os[0] ? cx->host.os : "unknown");
        KV("kernel", "%s", cx->host.kernel[0] ? cx->host.kernel : "unknown");
    }
    KV("slmprobe_version", "%s", SLMPROBE_VERSION);
#undef KV
    if (r0 && r0->argv) {
        struct buf a;
        buf_init(&a, 256, 1 << 16);
        char self[1024];
        ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
        self[sl > 0 ? sl : 0] = 0;
        for (int i = 0; i < r0->argc; i++) {
            const char *w = r0->argv[i];
            if (i == 0 && !strcmp(w, "/proc/self/exe") && self[0])
                w = self; /* what the child exec'd */
            int quote = !*w || strpbrk(w, " \t\"'\\$`") != NULL;
            buf_printf(&a, "%s%s%s%s", i ? " " : "", quote ? "'" : "", w, quote ? "'" : "");
        }
        report_paragraph(s,
                         "Server command line (exec'd directly, no shell; log: %s):", r0->log_path);
        report_pre(s, a.data);
        buf_free(&a);
    }
}

static void section_runs(struct ttft_ctx *cx, struct report *r)
{
    struct report_section *s = report_section_add(r, "runs", "Cold vs warm requests");
    report_paragraph(s, "cold_N is the first request after launch N, sent the moment /v1/models "
                        "answered; warm_0 follows it immediately; warm_1.. are the warm runs "
                        "(the statistics below use these). TTFT is from handing the request to "
                        "the socket to the first streamed event with text; tokens are the "
                        "server's own usage counts.");
    struct report_table *t = report_table_add(s, "runs", NULL);
    report_table_col(t, "repeat", "Launch", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "run", "Run", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "kind", "Kind", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "ttft_ms", "TTFT", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "e2e_ms", "E2E", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "tpot_ms", "TPOT", "ms", REPORT_COL_NUMBER, 3);
    report_table_col(t, "prompt_tokens", "Prompt tokens", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "completion_tokens", "Completion tokens", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "cached_tokens", "Cached tokens", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "status", "Status", NULL, REPORT_COL_TEXT, 0);
    for (int k = 0; k < cx->n_reps; k++) {
        const struct ttft_repeat *rr = &cx->reps[k];
        for (size_t i = 0; i < rr->n_reqs; i++) {
            const struct request_record *q = &rr->reqs[i].rec;
            report_table_row_add(t);
            report_row_num(t, rr->index);
            report_row_text(t, "%s", q->tag);
            report_row_text(t, "%s", rr->reqs[i].kind);
            report_row_num(t, rec_ttft_ms(q));
            report_row_num(t, rec_e2e_ms(q));
            report_row_num(t, record_tpot_ms(q));
            report_row_num(t, int_or_nan(q->n_prompt_tokens));
            report_row_num(t, int_or_nan(q->n_completion_tokens));
            if (q->n_cached_tokens < 0)
                report_row_na(t, "not reported");
            else
                report_row_num(t, q->n_cached_tokens);
            if (q->error == REQ_ERROR_NONE)
                report_row_text(t, "ok");
            else
                report_row_text(t, "%s", req_error_str(q->error));
        }
    }
    struct report_chart *c = report_chart_add(s, REPORT_CHART_LINE, "ttft_by_run",
                                              "TTFT by request (1 = cold, 2 = warm_0, 3.. = warm)",
                                              "request", NULL, "TTFT", "ms");
    for (int k = 0; k < cx->n_reps; k++) {
        const struct ttft_repeat *rr = &cx->reps[k];
        double *x = xcalloc(rr->n_reqs + 1, sizeof *x), *y = xcalloc(rr->n_reqs + 1, sizeof *y);
        for (size_t i = 0; i < rr->n_reqs; i++) {
            /* url mode has no cold request: keep the numbering (warm_0 is request 2) */
            x[i] = (double)rr->reqs[i].i_in_repeat + (cx->url_mode ? 1 : 0);
            y[i] = rr->reqs[i].rec.error == REQ_ERROR_NONE ? rec_ttft_ms(&rr->reqs[i].rec) : NAN;
        }
        char name[32];
        snprintf(name, sizeof name, cx->n_reps > 1 ? "launch %d" : "TTFT", rr->index);
        report_chart_series(c, name, x, y, rr->n_reqs);
        free(x);
        free(y);
    }
}

static void section_variance(struct ttft_ctx *cx, struct report *r)
{
    struct report_section *s = report_section_add(r, "warm_variance", "Warm variance");
    struct report_table *t = report_table_add(s, "warm_variance", NULL);
    report_table_col(t, "repeat", "Launch", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "n_warm", "Warm runs", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "warm_min_ms", "Min", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "warm_median_ms", "Median", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "warm_max_ms", "Max", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "warm_mean_ms", "Mean", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "warm_stddev_ms", "Stddev", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "warm_max_min_ratio", "Max/min", NULL, REPORT_COL_NUMBER, 2);
    report_table_col(t, "cold_ttft_ms", "Cold TTFT", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "cold_warm_factor", "Cold / warm median", NULL, REPORT_COL_NUMBER, 2);
    for (int k = 0; k < cx->n_reps; k++) {
        const struct ttft_repeat *rr = &cx->reps[k];
        double *v = xcalloc(rr->n_reqs + 1, sizeof *v);
        size_t n = warm_ttfts(rr, v, rr->n_reqs + 1);
        struct summary sm;
        summary_of(v, n, &sm);
        free(v);
        double cold = cold_ttft_ms(rr);
        report_table_row_add(t);
        report_row_num(t, rr->index);
        report_row_num(t, (double)n);
        report_row_num(t, sm.min);
        report_row_num(t, sm.p50);
        report_row_num(t, sm.max);
        report_row_num(t, sm.mean);
        report_row_num(t, sm.stddev);
        report_row_num(t, sm.min > 0 ? sm.max / sm.min : NAN);
        if (cx->url_mode)
            report_row_na(t, "warm-only (--url)");
        else
            report_row_num(t, cold);
        if (cx->url_mode)
            report_row_na(t, "warm-only (--url)");
        else
            report_row_num(t, sm.p50 > 0 ? cold / sm.p50 : NAN);
    }
}

static void section_timeline(struct ttft_ctx *cx, struct report *r)
{
    struct report_section *s = report_section_add(r, "timeline", "Launch timeline");
    if (cx->url_mode) {
        report_paragraph(s, "Not measured: the server was already running (--url).");
        return;
    }
    report_paragraph(s, "Times since the probe forked the server (t = 0), measured by the probe: "
                        "first successful TCP connect, first GET /health 200, first GET "
                        "/v1/models 200 (ready), the cold request sent, its first token, and "
                        "its end. The server's own phases below are durations it logged.");
    struct report_table *t = report_table_add(s, "timeline", NULL);
    report_table_col(t, "repeat", "Launch", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "event", "Event", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "t_since_launch_ms", "Since launch", "ms", REPORT_COL_NUMBER, 1);
    report_table_col(t, "delta_ms", "Since previous", "ms", REPORT_COL_NUMBER, 1);
    for (int k = 0; k < cx->n_reps; k++) {
        const struct ttft_repeat *rr = &cx->reps[k];
        const struct ttft_req *cold = find_kind(rr, "cold");
        mono_ns t0 = rr->tl.t_launch_ns;
        struct {
            const char *name;
            mono_ns t;
        } ev[] = {
            {"launch", t0},
            {"port_open", rr->tl.t_port_open_ns},
            {"health_ok", rr->tl.t_health_ok_ns},
            {"ready", rr->tl.t_models_ok_ns},
            {"cold_sent", cold ? cold->rec.t_sent_ns : 0},
            {"cold_first_token", cold ? cold->rec.t_first_token_ns : 0},
            {"cold_done", cold ? cold->rec.t_done_ns : 0},
            {"stop_sent", rr->tl.t_stop_ns},
            {"stopped", rr->tl.t_stopped_ns},
        };
        double prev = NAN;
        for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
            double v = i == 0 ? (t0 ? 0.0 : NAN) : rel_ms(ev[i].t, t0);
            report_table_row_add(t);
            report_row_num(t, rr->index);
            report_row_text(t, "%s", ev[i].name);
            if (isfinite(v))
                report_row_num(t, v);
            else
                report_row_na(t, "not reached");
            report_row_num(t, isfinite(v) && isfinite(prev) ? v - prev : NAN);
            if (isfinite(v))
                prev = v;
        }
    }
    /* chart of launch 1: consecutive stages as floating bars */
    const struct ttft_repeat *rr = cx->n_reps ? &cx->reps[0] : NULL;
    if (rr && rr->tl.t_launch_ns) {
        const struct ttft_req *cold = find_kind(rr, "cold");
        mono_ns t0 = rr->tl.t_launch_ns;
        double m[6] = {0,
                       rel_ms(rr->tl.t_port_open_ns, t0),
                       rel_ms(rr->tl.t_health_ok_ns, t0),
                       rel_ms(rr->tl.t_models_ok_ns, t0),
                       cold ? rel_ms(cold->rec.t_sent_ns, t0) : NAN,
                       cold ? rel_ms(cold->rec.t_first_token_ns, t0) : NAN};
        const char *names[] = {"launch -> port open", "port open -> /health 200",
                               "/health -> /v1/models 200", "ready -> cold request sent",
                               "cold request -> first token"};
        double lo[5], hi[5];
        for (int i = 0; i < 5; i++) {
            lo[i] = m[i] / 1000;
            hi[i] = m[i + 1] / 1000;
        }
        char title[96];
        snprintf(title, sizeof title, "Launch to first token, launch %d (measured by the probe)",
                 rr->index);
        struct report_chart *c = report_chart_add(s, REPORT_CHART_BAR, "launch_stages", title,
                                                  "stage", NULL, "time since launch", "s");
        report_chart_categories(c, names, 5);
        report_chart_series_range(c, "", lo, hi, 5);
    }

    /* server phases */
    report_paragraph(s, "Start-up phases the server logged (durations, from its log; n/a: not "
                        "logged by this server or not reached).");
    struct report_table *p = report_table_add(s, "phases", NULL);
    report_table_col(p, "repeat", "Launch", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(p, "phase", "Phase", NULL, REPORT_COL_TEXT, 0);
    report_table_col(p, "what", "What", NULL, REPORT_COL_TEXT, 0);
    report_table_col(p, "duration_s", "Duration", "s", REPORT_COL_NUMBER, 3);
    for (int k = 0; k < cx->n_reps; k++) {
        const struct ttft_repeat *q = &cx->reps[k];
        for (int ph = 0; ph < STARTUP_PHASE__COUNT; ph++) {
            report_table_row_add(p);
            report_row_num(p, q->index);
            report_row_text(p, "%s", startup_phase_str((enum startup_phase)ph));
            report_row_text(p, "%s", phase_what((enum startup_phase)ph));
            double v = q->have_startup ? q->startup.phase_s[ph] : NAN;
            if (isfinite(v))
                report_row_num(p, v);
            else
                report_row_na(p, q->have_startup ? "not logged" : "no log");
        }
    }
    if (rr && rr->have_startup) {
        const char *names[STARTUP_PHASE__COUNT];
        double v[STARTUP_PHASE__COUNT];
        for (int ph = 0; ph < STARTUP_PHASE__COUNT; ph++) {
            names[ph] = startup_phase_str((enum startup_phase)ph);
            v[ph] = rr->startup.phase_s[ph];
        }
        char title[96];
        snprintf(title, sizeof title, "Server start-up phases, launch %d (from its log)",
                 rr->index);
        struct report_chart *c = report_chart_add(s, REPORT_CHART_BAR, "startup_phases", title,
                                                  "phase", NULL, "duration", "s");
        report_chart_categories(c, names, STARTUP_PHASE__COUNT);
        report_chart_series(c, "", NULL, v, STARTUP_PHASE__COUNT);
        const struct startup_info *si = &rr->startup;
        if (si->kv_cache_tokens >= 0)
            report_bullet(s, "KV cache: %lld tokens", (long long)si->kv_cache_tokens);
        if (isfinite(si->kv_cache_gib))
            report_bullet(s, "KV cache pool: %.3f GiB", si->kv_cache_gib);
        if (isfinite(si->available_kv_gib))
            report_bullet(s, "Available KV cache memory: %.2f GiB", si->available_kv_gib);
        if (isfinite(si->max_concurrency))
            report_bullet(s, "Maximum concurrency for %lld tokens per request: %.2fx",
                          (long long)si->max_concurrency_len, si->max_concurrency);
        if (isfinite(si->weights_gib))
            report_bullet(s, "Weights in device memory: %.2f GiB", si->weights_gib);
        if (si->n_warmup_shapes > 0)
            report_bullet(s, "Warm-up ran %d batch shapes", si->n_warmup_shapes);
        if (si->warmup_skipped)
            report_bullet(s, "Warm-up was skipped (--enforce-eager)");
        if (si->error_message[0])
            report_bullet(s, "Start-up error in the log: %s", si->error_message);
        report_bullet(s, "Log wording recognised as: %s (%llu lines)",
                      logparse_server_str(si->server), (unsigned long long)si->n_lines);
    }
}

static void section_sanity(struct ttft_ctx *cx, struct report *r)
{
    struct report_section *s = report_section_add(r, "sanity", "Sanity metrics");
    report_paragraph(s,
                     "The machine's view while the server ran, sampled every %d ms by a "
                     "separate thread (server CPU: process tree, 100%% = one core busy; a "
                     "window shorter than the sampling interval is attributed the CPU of the "
                     "interval around it).",
                     cx->interval_ms);
    struct report_table *t = report_table_add(s, "sanity", NULL);
    report_table_col(t, "metric", "Metric", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "what", "What", NULL, REPORT_COL_TEXT, 0);
    int first_val = 2;
    for (int k = 0; k < cx->n_reps; k++) {
        char key[32], label[32];
        snprintf(key, sizeof key, "launch_%d", cx->reps[k].index);
        snprintf(label, sizeof label, cx->n_reps > 1 ? "Launch %d" : "Value", cx->reps[k].index);
        report_table_col(t, key, label, NULL, REPORT_COL_NUMBER, 1);
    }
    const char *no_gpu = cx->gpus.available ? "not sampled" : "no GPU";
    const char *no_proc = cx->url_mode ? "not launched (--url)" : "not measured";
    enum {
        M_GPU_BEFORE,
        M_GPU_AFTER,
        M_GPU_UTIL,
        M_CPU_COLD,
        M_CPU_WARM,
        M_RSS_READY,
        M_RSS_MAX,
        M_PC_BEFORE,
        M_PC_GROWTH,
        M_PC_AFTER,
        M_READ_READY,
        M_READ_END,
        M__N
    };
    static const char *const keys[M__N] = {
        "gpu_mem_before_launch_mib", "gpu_mem_after_cold_mib",  "gpu_util_warm_pct",
        "server_cpu_cold_pct",       "server_cpu_warm_pct",     "server_rss_ready_mib",
        "server_rss_max_mib",        "page_cache_before_mib",   "page_cache_growth_startup_mib",
        "page_cache_after_mib",      "server_read_startup_mib", "server_read_total_mib"};
    static const char *const whats[M__N] = {"GPU memory used (all GPUs) before launch",
                                            "GPU memory used after the cold request",
                                            "GPU utilisation during the warm runs (mean)",
                                            "server CPU during the cold request",
                                            "server CPU during the warm runs",
                                            "server resident memory at ready",
                                            "server resident memory, max over the run",
                                            "page cache before launch",
                                            "page cache growth from launch to ready",
                                            "page cache after the run (server stopped)",
                                            "bytes the server read from storage up to ready",
                                            "bytes the server read from storage, whole run"};
    for (int m = 0; m < M__N; m++) {
        report_table_row_add(t);
        report_row_text(t, "%s", keys[m]);
        report_row_text(t, "%s", whats[m]);
        for (int k = 0; k < cx->n_reps; k++) {
            const struct ttft_repeat *rr = &cx->reps[k];
            size_t row = report_table_n_rows(t) - 1;
            int col = first_val + k;
            double v = NAN;
            const char *why = "not measured";
            switch (m) {
            case M_GPU_BEFORE:
                v = bytes_to_mib(rr->gpu_mem_before_bytes);
                why = no_gpu;
                break;
            case M_GPU_AFTER:
                v = bytes_to_mib(rr->gpu_mem_after_cold_bytes);
                why = cx->url_mode ? "warm-only (--url)" : no_gpu;
                break;
            case M_GPU_UTIL:
                v = rr->gpu_util_warm_pct;
                why = no_gpu;
                break;
            case M_CPU_COLD:
                v = rr->cpu_cold_pct;
                why = no_proc;
                break;
            case M_CPU_WARM:
                v = rr->cpu_warm_pct;
                why = no_proc;
                break;
            case M_RSS_READY:
                v = bytes_to_mib(rr->rss_ready_bytes);
                why = no_proc;
                break;
            case M_RSS_MAX:
                v = bytes_to_mib(rr->rss_max_bytes);
                why = no_proc;
                break;
            case M_PC_BEFORE:
                v = bytes_to_mib(rr->page_cache_before_bytes);
                break;
            case M_PC_AFTER:
                v = bytes_to_mib(rr->page_cache_after_bytes);
                break;
            case M_PC_GROWTH:
                v = !cx->url_mode && rr->page_cache_before_bytes >= 0 &&
                            rr->page_cache_ready_bytes >= 0
                        ? bytes_to_mib(rr->page_cache_ready_bytes) -
                              bytes_to_mib(rr->page_cache_before_bytes)
                        : NAN;
                why = cx->url_mode ? "not launched (--url)" : "not reached";
                break;
            case M_READ_READY:
                v = bytes_to_mib(rr->read_bytes_ready);
                why = cx->url_mode ? no_proc : "unreadable (/proc/PID/io)";
                break;
            case M_READ_END:
                v = bytes_to_mib(rr->read_bytes_end);
                why = cx->url_mode ? no_proc : "unreadable (/proc/PID/io)";
                break;
            }
            if (isfinite(v))
                report_cell_num(t, row, col, v);
            else
                report_cell_na(t, row, col, why);
        }
    }
    if (!cx->gpus.available)
        report_paragraph(s, "No GPU: %s.", cx->gpus.reason);
}

static void section_repeats(struct ttft_ctx *cx, struct report *r)
{
    if (cx->n_reps < 2)
        return;
    struct report_section *s = report_section_add(r, "repeats", "Cold start across launches");
    struct report_table *t = report_table_add(s, "repeats", NULL);
    report_table_col(t, "repeat", "Launch", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "ready_ms", "Launch to ready", "ms", REPORT_COL_NUMBER, 1);
    report_table_col(t, "cold_ttft_ms", "Cold TTFT", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "cold_e2e_ms", "Cold E2E", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "launch_to_first_token_ms", "Launch to first token", "ms",
                     REPORT_COL_NUMBER, 1);
    report_table_col(t, "warm_median_ms", "Warm median", "ms", REPORT_COL_NUMBER, 2);
    int n = cx->n_reps;
    double *cols[5];
    for (int j = 0; j < 5; j++)
        cols[j] = xcalloc((size_t)n, sizeof(double));
    for (int k = 0; k < n; k++) {
        const struct ttft_repeat *rr = &cx->reps[k];
        const struct ttft_req *c = find_kind(rr, "cold");
        mono_ns t0 = rr->tl.t_launch_ns;
        double *v = xcalloc(rr->n_reqs + 1, sizeof *v);
        size_t nw = warm_ttfts(rr, v, rr->n_reqs + 1);
        struct summary sm;
        summary_of(v, nw, &sm);
        free(v);
        cols[0][k] = rel_ms(rr->tl.t_models_ok_ns, t0);
        cols[1][k] = cold_ttft_ms(rr);
        cols[2][k] = c && c->rec.error == REQ_ERROR_NONE ? rec_e2e_ms(&c->rec) : NAN;
        cols[3][k] =
            c && c->rec.error == REQ_ERROR_NONE ? rel_ms(c->rec.t_first_token_ns, t0) : NAN;
        cols[4][k] = sm.p50;
        report_table_row_add(t);
        report_row_num(t, rr->index);
        for (int j = 0; j < 5; j++)
            report_row_num(t, cols[j][k]);
    }
    struct report_table *sp = report_table_add(s, "cold_spread", "Spread over launches");
    report_table_col(sp, "statistic", "Statistic", NULL, REPORT_COL_TEXT, 0);
    report_table_col(sp, "ready_ms", "Launch to ready", "ms", REPORT_COL_NUMBER, 1);
    report_table_col(sp, "cold_ttft_ms", "Cold TTFT", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(sp, "cold_e2e_ms", "Cold E2E", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(sp, "launch_to_first_token_ms", "Launch to first token", "ms",
                     REPORT_COL_NUMBER, 1);
    report_table_col(sp, "warm_median_ms", "Warm median", "ms", REPORT_COL_NUMBER, 2);
    struct summary sm[5];
    for (int j = 0; j < 5; j++)
        summary_of(cols[j], (size_t)n, &sm[j]);
    const char *stat_names[] = {"min", "median", "max", "mean", "stddev"};
    for (int st = 0; st < 5; st++) {
        report_table_row_add(sp);
        report_row_text(sp, "%s", stat_names[st]);
        for (int j = 0; j < 5; j++) {
            double v = st == 0   ? sm[j].min
                       : st == 1 ? sm[j].p50
                       : st == 2 ? sm[j].max
                       : st == 3 ? sm[j].mean
                                 : sm[j].stddev;
            report_row_num(sp, v);
        }
    }
    for (int j = 0; j < 5; j++)
        free(cols[j]);
}

/* Observations: each sentence formats measured values; the thresholds are named constants. */
static void section_observations(struct ttft_ctx *cx, struct report *r)
{
    struct report_section *s = report_section_add(r, "observations", "Observations");
    int n_said = 0;
    const struct ttft_repeat *rr = cx->n_reps ? &cx->reps[0] : NULL;
    if (!rr) {
        report_paragraph(s, "Nothing was measured.");
        return;
    }
    char a[32], b[32], c[32];
    mono_ns t0 = rr->tl.t_launch_ns;
    double ready_ms = cx->url_mode ? NAN : rel_ms(rr->tl.t_models_ok_ns, t0);
    const struct startup_info *si = &rr->startup;

    /* 1. which start-up phase dominated */
    if (isfinite(ready_ms) && rr->have_startup) {
        struct part {
            const char *name;
            double s;
        } parts[5];
        int np = 0;
        double load = isfinite(si->phase_s[STARTUP_PHASE_MODEL_LOAD])
                          ? si->phase_s[STARTUP_PHASE_MODEL_LOAD]
                          : si->phase_s[STARTUP_PHASE_WEIGHTS_LOAD];
        const char *load_name =
            isfinite(si->phase_s[STARTUP_PHASE_MODEL_LOAD]) ? "model_load" : "weights_load";
        if (isfinite(load))
            parts[np++] = (struct part){load_name, load};
        double engine = si->phase_s[STARTUP_PHASE_ENGINE_INIT];
        if (isfinite(engine)) {
            parts[np++] = (struct part){"engine_init", engine};
        } else {
            const enum startup_phase sub[] = {STARTUP_PHASE_TORCH_COMPILE,
                                              STARTUP_PHASE_KV_CACHE_ALLOC,
                                              STARTUP_PHASE_WARMUP_GRAPH_CAPTURE};
            for (size_t i = 0; i < 3; i++)
                if (isfinite(si->phase_s[sub[i]]))
                    parts[np++] = (struct part){startup_phase_str(sub[i]), si->phase_s[sub[i]]};
        }
        double logged = 0;
        int best = -1;
        for (int i = 0; i < np; i++) {
            logged += parts[i].s;
            if (best < 0 || parts[i].s > parts[best].s)
                best = i;
        }
        double unlogged_s = ready_ms / 1000 - logged;
        fmt_ms(ready_ms, a, sizeof a);
        if (best < 0) {
            report_bullet(s,
                          "Launch to ready took %s; the server logged no start-up phase this "
                          "probe recognises (log wording: %s), so the time cannot be split.",
                          a, logparse_server_str(si->server));
        } else if (unlogged_s > parts[best].s) {
            report_bullet(s,
                          "Launch to ready took %s. The largest share was not covered by any "
                          "logged phase: %.3f s (%.0f%%) went to process start, imports, "
                          "HTTP start-up and readiness polling; the largest logged phase, %s, "
                          "took %.3f s (%.0f%%).",
                          a, unlogged_s, 100 * unlogged_s / (ready_ms / 1000), parts[best].name,
                          parts[best].s, 100 * parts[best].s / (ready_ms / 1000));
        } else {
            report_bullet(s,
                          "Launch to ready took %s; %s dominated with %.3f s (%.0f%% of it). "
                          "Logged phases cover %.3f s; %.3f s is outside them (process start, "
                          "HTTP start-up, readiness polling).",
                          a, parts[best].name, parts[best].s,
                          100 * parts[best].s / (ready_ms / 1000), logged,
                          unlogged_s > 0 ? unlogged_s : 0.0);
            /* an aggregate phase dominated: name its largest logged part */
            const enum startup_phase sub_e[] = {STARTUP_PHASE_TORCH_COMPILE,
                                                STARTUP_PHASE_KV_CACHE_ALLOC,
                                                STARTUP_PHASE_WARMUP_GRAPH_CAPTURE};
            const enum startup_phase sub_m[] = {STARTUP_PHASE_WEIGHTS_LOAD};
            const enum startup_phase *sub = NULL;
            size_t n_sub = 0;
            if (!strcmp(parts[best].name, "engine_init")) {
                sub = sub_e;
                n_sub = 3;
            } else if (!strcmp(parts[best].name, "model_load")) {
                sub = sub_m;
                n_sub = 1;
            }
            int bi = -1;
            for (size_t i = 0; i < n_sub; i++)
                if (isfinite(si->phase_s[sub[i]]) &&
                    (bi < 0 || si->phase_s[sub[i]] > si->phase_s[sub[bi]]))
                    bi = (int)i;
            if (bi >= 0 && parts[best].s > 0)
                report_bullet(s, "Within %s, %s took %.3f s (%.0f%%).", parts[best].name,
                              startup_phase_str(sub[bi]), si->phase_s[sub[bi]],
                              100 * si->phase_s[sub[bi]] / parts[best].s);
        }
        n_said++;
    } else if (!cx->url_mode && !isfinite(ready_ms)) {
        report_bullet(s, "The server never became ready, so there is no cold-start split.");
        n_said++;
    }

    /* 2. share of the cold time */
    const struct ttft_req *cold = find_kind(rr, "cold");
    double cold_ms = cold_ttft_ms(rr);
    if (cold && isfinite(cold_ms) && isfinite(ready_ms)) {
        double ft = rel_ms(cold->rec.t_first_token_ns, t0);
        fmt_ms(ft, a, sizeof a);
        fmt_ms(cold_ms, b, sizeof b);
        report_bullet(s,
                      "From launch to the first token of the cold request took %s: waiting "
                      "for readiness was %.1f%% of it and the cold request's TTFT (%s) "
                      "%.1f%%.",
                      a, 100 * ready_ms / ft, b, 100 * cold_ms / ft);
        n_said++;
    }

    /* 3. first-prefill penalty and 4. warm spread */
    double *v = xcalloc(rr->n_reqs + 1, sizeof *v);
    size_t nw = warm_ttfts(rr, v, rr->n_reqs + 1);
    struct summary sm;
    summary_of(v, nw, &sm);
    free(v);
    if (isfinite(cold_ms) && nw > 0) {
        fmt_ms(cold_ms, a, sizeof a);
        fmt_ms(sm.p50, b, sizeof b);
        if (cold_ms > sm.max) {
            fmt_ms(cold_ms - sm.p50, c, sizeof c);
            report_bullet(s,
                          "The first request paid a first-request penalty: cold TTFT %s vs a "
                          "warm median of %s (%.2fx, %s more), above the slowest of the %zu "
                          "warm runs (%.2f ms).",
                          a, b, cold_ms / sm.p50, c, nw, sm.max);
        } else {
            report_bullet(s,
                          "No first-request penalty beyond warm noise: cold TTFT %s lies within "
                          "the warm range %.2f .. %.2f ms (median %s, %.2fx).",
                          a, sm.min, sm.max, b, cold_ms / sm.p50);
        }
        n_said++;
    }
    if (nw >= 2 && sm.min > 0) {
        double ratio = sm.max / sm.min;
        const char *verdict = ratio <= TTFT_SPREAD_TIGHT_RATIO  ? "tight"
                              : ratio <= TTFT_SPREAD_WIDE_RATIO ? "moderate"
                                                                : "wide";
        report_bullet(s,
                      "Warm spread is %s: max/min %.2f over %zu runs (%.2f .. %.2f ms, "
                      "stddev %.2f ms = %.1f%% of the mean).",
                      verdict, ratio, nw, sm.min, sm.max, sm.stddev,
                      sm.mean > 0 ? 100 * sm.stddev / sm.mean : 0.0);
        n_said++;
    }
    const struct ttft_req *w0 = find_kind(rr, "warm_immediate");
    if (w0 && w0->rec.error == REQ_ERROR_NONE && nw > 0 && isfinite(sm.p50) && sm.p50 > 0) {
        double w0ms = rec_ttft_ms(&w0->rec);
        fmt_ms(w0ms, a, sizeof a);
        const char *verdict =
            w0ms <= sm.max ? "within the warm range: already warm"
            : cx->url_mode ? "slower than every warm run"
                           : "slower than every warm run: some warm-up outlasted the cold request";
        report_bullet(s, "%s (warm_0) took %s, %.2fx the warm median, %s.",
                      cx->url_mode ? "The first request of this run"
                                   : "The request sent right after the cold one",
                      a, w0ms / sm.p50, verdict);
        n_said++;
    }

    /* CPU */
    if (isfinite(rr->cpu_cold_pct) || isfinite(rr->cpu_warm_pct)) {
        char cc[48], cw[48];
        snprintf(cc, sizeof cc, isfinite(rr->cpu_cold_pct) ? "%.0f%%" : "n/a", rr->cpu_cold_pct);
        snprintf(cw, sizeof cw, isfinite(rr->cpu_warm_pct) ? "%.0f%%" : "n/a", rr->cpu_warm_pct);
        report_bullet(s,
                      "Server CPU was %s during the %s and %s on average during the warm "
                      "runs (100%% = one core).",
                      cc, cx->url_mode ? "first request" : "cold request", cw);
        n_said++;
    }

    /* page cache / storage */
    if (!cx->url_mode && cx->model_file_bytes > 0 && rr->page_cache_before_bytes >= 0 &&
        rr->page_cache_ready_bytes >= 0) {
        double growth = (double)(rr->page_cache_ready_bytes - rr->page_cache_before_bytes);
        double size = (double)cx->model_file_bytes;
        if (growth >= TTFT_PAGE_CACHE_READ_FRAC * size)
            report_bullet(s,
                          "The page cache grew by %.1f MiB from launch to ready against a "
                          "%.1f MiB model file: the weights were read from storage (a "
                          "disk-cold start).",
                          growth / 1048576.0, size / 1048576.0);
        else
            report_bullet(s,
                          "The page cache grew by only %.1f MiB from launch to ready against a "
                          "%.1f MiB model file: the weights were already cached in memory, so "
                          "this cold start did not pay for storage reads%s.",
                          growth / 1048576.0, size / 1048576.0,
                          cx->po.target.drop_caches ? ""
                                                    : " (use --drop-caches as root for a "
                                                      "disk-cold start)");
        n_said++;
    }
    if (!cx->url_mode && rr->read_bytes_ready >= 0) {
        report_bullet(s, "The server's processes read %.1f MiB from storage up to ready (%s).",
                      bytes_to_mib(rr->read_bytes_ready),
                      cx->model_file_bytes > 0 ? "compare with the model file size above"
                                               : "model file size unknown");
        n_said++;
    }

    /* GPU */
    if (!cx->gpus.available) {
        report_bullet(s, "No GPU: %s. GPU memory and utilisation are n/a.", cx->gpus.reason);
        n_said++;
    } else if (rr->gpu_mem_before_bytes >= 0 && rr->gpu_mem_after_cold_bytes >= 0) {
        double d_mib =
            bytes_to_mib(rr->gpu_mem_after_cold_bytes) - bytes_to_mib(rr->gpu_mem_before_bytes);
        char util[48];
        snprintf(util, sizeof util,
                 isfinite(rr->gpu_util_warm_pct) ? "averaged %.0f%%" : "was not sampled",
                 rr->gpu_util_warm_pct);
        report_bullet(s,
                      "GPU memory went from %.0f MiB before launch to %.0f MiB after the cold "
                      "request (%+.0f MiB%s); GPU utilisation %s during the warm runs.",
                      bytes_to_mib(rr->gpu_mem_before_bytes),
                      bytes_to_mib(rr->gpu_mem_after_cold_bytes), d_mib,
                      fabs(d_mib) < 1 ? ": this server did not allocate GPU memory" : "", util);
        n_said++;
    }

    /* tokens as asked, cache hits */
    int n_short = 0, n_cached = 0, n_ok = 0;
    for (int k = 0; k < cx->n_reps; k++)
        for (size_t i = 0; i < cx->reps[k].n_reqs; i++) {
            const struct request_record *q = &cx->reps[k].reqs[i].rec;
            if (q->error != REQ_ERROR_NONE)
                continue;
            n_ok++;
            if (q->n_completion_tokens >= 0 && q->n_completion_tokens < cx->opt.max_tokens)
                n_short++;
            if (q->n_cached_tokens > 0)
                n_cached++;
        }
    if (n_short) {
        report_bullet(s,
                      "%d of %d requests generated fewer than the %d tokens asked for (the "
                      "server ignored ignore_eos or hit a length limit): their E2E is not "
                      "comparable.",
                      n_short, n_ok, cx->opt.max_tokens);
        n_said++;
    }
    if (n_cached) {
        report_bullet(s,
                      "%d of %d requests reported prefix-cache hits although every prompt "
                      "starts with a unique header: their TTFT is lower than an uncached "
                      "prefill.",
                      n_cached, n_ok);
        n_said++;
    }

    /* across launches */
    if (cx->n_reps >= 2) {
        double *cv = xcalloc((size_t)cx->n_reps, sizeof *cv);
        double *rv = xcalloc((size_t)cx->n_reps, sizeof *rv);
        for (int k = 0; k < cx->n_reps; k++) {
            cv[k] = cold_ttft_ms(&cx->reps[k]);
            rv[k] = rel_ms(cx->reps[k].tl.t_models_ok_ns, cx->reps[k].tl.t_launch_ns);
        }
        struct summary cs, rs;
        summary_of(cv, (size_t)cx->n_reps, &cs);
        summary_of(rv, (size_t)cx->n_reps, &rs);
        if (cs.n >= 2)
            report_bullet(s,
                          "Over %zu launches, cold TTFT ranged %.2f .. %.2f ms (median %.2f) "
                          "and launch to ready %.1f .. %.1f ms (median %.1f).",
                          cs.n, cs.min, cs.max, cs.p50, rs.min, rs.max, rs.p50);
        free(cv);
        free(rv);
        n_said++;
    }
    if (!n_said)
        report_paragraph(s, "Too little was measured for observations.");
}

static void write_report(struct ttft_ctx *cx)
{
    struct report *r = report_new("First token latency: cold vs warm");
    report_set_html_name(r, "first_token_latency.html");
    report_meta(r, "probe", "slmprobe ttft %s", SLMPROBE_VERSION);
    report_meta(r, "started", "%s", cx->started_at);
    report_meta(r, "server", "%s%s", target_kind_str(cx->po.target.kind),
                cx->url_mode ? " (--url, warm only)" : "");
    report_meta(r, "model", "%s",
                cx->po.target.model                     ? cx->po.target.model
                : cx->n_reps && cx->reps[0].model_id[0] ? cx->reps[0].model_id
                                                        : "unknown");
    report_meta(r, "status", "%s",
                cx->interrupted ? "interrupted (partial)"
                : cx->failed    ? "failed"
                                : "ok");
    /* headline numbers */
    if (cx->n_reps) {
        const struct ttft_repeat *rr = &cx->reps[0];
        double *v = xcalloc(rr->n_reqs + 1, sizeof *v);
        size_t nw = warm_ttfts(rr, v, rr->n_reqs + 1);
        struct summary sm;
        summary_of(v, nw, &sm);
        free(v);
        double cold = cold_ttft_ms(rr);
        if (isfinite(cold))
            report_meta(r, "cold_ttft", "%.2f ms", cold);
        if (isfinite(sm.p50))
            report_meta(r, "warm_ttft_median", "%.2f ms over %zu runs", sm.p50, nw);
        if (isfinite(cold) && isfinite(sm.p50) && sm.p50 > 0)
            report_meta(r, "cold_warm_factor", "%.2f", cold / sm.p50);
        double ready = rel_ms(rr->tl.t_models_ok_ns, rr->tl.t_launch_ns);
        if (!cx->url_mode && isfinite(ready))
            report_meta(r, "launch_to_ready", "%.1f ms", ready);
    }
    section_status(cx, r);
    section_observations(cx, r);
    section_config(cx, r);
    section_runs(cx, r);
    section_variance(cx, r);
    section_timeline(cx, r);
    section_sanity(cx, r);
    section_repeats(cx, r);

    char path[1200], err[1400];
    const char *dir = cx->po.out_dir ? cx->po.out_dir : "results";
    struct {
        const char *name;
        int fmt; /* -1: csv */
    } outs[] = {{"first_token_latency.md", REPORT_FORMAT_MARKDOWN},
                {"first_token_latency.html", REPORT_FORMAT_HTML},
                {"ttft.json", REPORT_FORMAT_JSON},
                {"ttft_runs.csv", -1}};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, outs[i].name);
        enum report_status st =
            outs[i].fmt < 0
                ? report_write_csv(r, "runs", path, err, sizeof err)
                : report_write_file(r, (enum report_format)outs[i].fmt, path, err, sizeof err);
        if (st != REPORT_OK)
            log_error(MOD, "%s", err);
        else
            printf("wrote %s\n", path);
    }
    report_free(r);
}

/* ------------------------------------------------------------------ entry point */

int cmd_ttft(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ttft_usage(stdout);
            return 0;
        }
    }
    struct ttft_ctx *cx = xcalloc(1, sizeof *cx);
    char err[1024] = "";
    int rc = 2;
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0;
    if (probe_opts_parse(argc, argv, &cx->po, &n_rest, rest, err, sizeof err) != 0 ||
        ttft_parse(n_rest, rest, &cx->opt, err, sizeof err) != 0) {
        fprintf(stderr, "slmprobe ttft: %s\n(slmprobe ttft --help lists the options)\n", err);
        goto out_opts;
    }
    cx->url_mode = cx->po.target.url != NULL;
    if (cx->url_mode && cx->opt.repeat > 1) {
        log_warn(MOD, "--repeat %d ignored with --url (nothing is launched)", cx->opt.repeat);
        cx->opt.repeat = 1;
    }
    rc = 1;
    const char *dir = cx->po.out_dir ? cx->po.out_dir : "results";
    if (dir_make_all(dir) != 0) {
        log_error(MOD, "cannot create %s: %s", dir, strerror(errno));
        goto out_opts;
    }
    if (workload_init_synth(
            &cx->wl, &(struct workload_synth){.input_len_tokens = cx->opt.prompt_len,
                                              .unit = cx->po.target.kind == TARGET_KIND_EMBEDDED
                                                          ? WORKLOAD_UNIT_BYTE
                                                          : WORKLOAD_UNIT_WORD,
                                              .seed = 1}) != WORKLOAD_OK) {
        log_error(MOD, "bad --prompt-len %d", cx->opt.prompt_len);
        goto out_opts;
    }
    snprintf(cx->jsonl_path, sizeof cx->jsonl_path, "%s/ttft_requests.jsonl", dir);
    if (unlink(cx->jsonl_path) != 0 && errno != ENOENT)
        log_warn(MOD, "cannot remove the old %s: %s", cx->jsonl_path, strerror(errno));
    cx->writer = record_writer_open(cx->jsonl_path, err, sizeof err);
    if (!cx->writer) {
        log_error(MOD, "%s", err);
        goto out_wl;
    }
    buf_init(&cx->prompt, 4096, (size_t)WORKLOAD_MAX_LEN_TOKENS * 16);
    target_install_signal_handlers();
    clock_wall_iso(cx->started_at, sizeof cx->started_at);
    cx->have_host = telemetry_host_read(&cx->host) == 0;
    telemetry_gpu_read(&cx->gpus);
    cx->interval_ms =
        cx->gpus.available && cx->gpus.source && !strcmp(cx->gpus.source, "nvidia-smi")
            ? TTFT_SAMPLE_INTERVAL_SMI_MS
            : TTFT_SAMPLE_INTERVAL_MS;
    cx->model_file_bytes = -1;
    struct stat st;
    if (!cx->url_mode && cx->po.target.model && stat(cx->po.target.model, &st) == 0 &&
        S_ISREG(st.st_mode))
        cx->model_file_bytes = (int64_t)st.st_size;
    client_ceiling_load(NULL, &cx->ceiling);

    cx->reps = xcalloc((size_t)cx->opt.repeat, sizeof *cx->reps);
    for (int k = 0; k < cx->opt.repeat; k++) {
        struct ttft_repeat *rr = &cx->reps[k];
        repeat_init(rr, k + 1);
        cx->n_reps = k + 1;
        log_info(MOD, "%s %d of %d", cx->url_mode ? "run" : "launch", k + 1, cx->opt.repeat);
        run_repeat(cx, rr);
        if (cx->interrupted || target_interrupted()) {
            cx->interrupted = 1;
            break;
        }
        if (rr->died || rr->start_status != TARGET_OK)
            break;
    }

    /* client ceiling: the fastest stream's event rate */
    double max_ev_per_s = 0;
    for (int k = 0; k < cx->n_reps; k++)
        for (size_t i = 0; i < cx->reps[k].n_reqs; i++) {
            const struct request_record *q = &cx->reps[k].reqs[i].rec;
            double e2e_s = rec_e2e_ms(q) / 1000;
            if (q->error == REQ_ERROR_NONE && e2e_s > 0 && q->n_events / e2e_s > max_ev_per_s)
                max_ev_per_s = q->n_events / e2e_s;
        }
    if (cx->ceiling.valid && client_ceiling_warn(&cx->ceiling, max_ev_per_s, NAN, cx->ceiling_msg,
                                                 sizeof cx->ceiling_msg))
        log_warn(MOD, "%s", cx->ceiling_msg);

    write_report(cx);
    rc = cx->interrupted ? 130 : cx->failed ? 1 : 0;
    if (cx->n_reps && !cx->interrupted) {
        const struct ttft_repeat *rr = &cx->reps[0];
        double *v = xcalloc(rr->n_reqs + 1, sizeof *v);
        size_t nw = warm_ttfts(rr, v, rr->n_reqs + 1);
        struct summary sm;
        summary_of(v, nw, &sm);
        free(v);
        char a[32], b[32];
        fmt_ms(cold_ttft_ms(rr), a, sizeof a);
        fmt_ms(sm.p50, b, sizeof b);
        printf("cold ttft %s, warm median ttft %s over %zu runs%s\n", a, b, nw,
               cx->failed ? " (run FAILED)" : "");
    }

    record_writer_close(cx->writer);
    for (int k = 0; k < cx->n_reps; k++)
        repeat_free(&cx->reps[k]);
    free(cx->reps);
    buf_free(&cx->prompt);
out_wl:
    workload_free(&cx->wl);
out_opts:
    probe_opts_free(&cx->po);
    free(rest);
    free(cx);
    return rc;
}
