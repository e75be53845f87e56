/* ttft_report: turns a ttft_result into the report's sections (run status, observations, server
 * configuration, cold vs warm requests, warm variance, launch timeline with the server's phases,
 * sanity metrics, cold start across launches). Every number in prose is formatted from measured
 * values; only the verdict words come from the thresholds in ttft.h. It measures nothing and
 * writes no file (cmd_ttft.c writes the renderings). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "measure/workload.h"
#include "net/client.h"
#include "ttft/ttft.h"
#include "util/log.h"
#include "util/buf.h"
#include "util/clock.h"

static double int_or_nan(int v)
{
    return v < 0 ? NAN : (double)v;
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

static void section_status(const struct ttft_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "status", "Run status");
    int n_ok = 0;
    for (int k = 0; k < res->n_reps; k++) {
        const struct ttft_repeat *rr = &res->reps[k];
        int ok = rr->ready && !rr->died && !rr->interrupted && !rr->n_failed_requests;
        n_ok += ok;
    }
    if (res->url_mode)
        report_paragraph(s,
                         "Warm-only run: --url %s was given, so the server was not launched by "
                         "the probe. Cold start, launch timeline and start-up phases are not "
                         "measured; every request is a warm run against the running server.",
                         res->s->po->target.url);
    if (res->interrupted)
        report_paragraph(s,
                         "Interrupted (Ctrl-C / SIGTERM): the server was stopped and these are "
                         "partial results: %d of %d launch(es) ran to completion.",
                         n_ok, res->opt.repeat);
    else if (res->failed)
        report_paragraph(s,
                         "FAILED: %s. Every request that finished is kept below and in "
                         "ttft_requests.jsonl.",
                         res->fail_msg[0] ? res->fail_msg : "see below");
    else if (res->url_mode)
        report_paragraph(s, "Completed: warm_1 and %d warm run(s) against the running server.",
                         res->opt.warm_runs);
    else
        report_paragraph(s,
                         "Completed: %d launch(es), each with a cold request, one immediate "
                         "follow-up (warm_1) and %d warm run(s).",
                         res->n_reps, res->opt.warm_runs);
    for (int k = 0; k < res->n_reps; k++) {
        const struct ttft_repeat *rr = &res->reps[k];
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
    if (res->ceiling_msg[0])
        report_bullet(s, "Client ceiling: %s", res->ceiling_msg);
}

static void section_config(const struct ttft_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "config", "Server configuration");
    const struct target_config *tc = &res->s->po->target;
    const struct ttft_repeat *r0 = res->n_reps ? &res->reps[0] : NULL;
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
    if (res->model_file_bytes >= 0)
        KV("model_file_mib", "%.1f", ttft_mib(res->model_file_bytes));
    if (r0 && r0->max_model_len > 0)
        KV("max_model_len", "%d", r0->max_model_len);
    KV("server_version", "%s", r0 && r0->version[0] ? r0->version : "unknown");
    if (res->url_mode)
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
    KV("api", "%s", client_api_str(res->s->po->api));
    KV("drop_caches", "%s", tc->drop_caches ? "yes (page cache dropped before each launch)" : "no");
    KV("cold_storage", "%s",
       tc->cold_storage ? "yes (the model's files evicted from the page cache before each launch)"
                        : "no");
    KV("workload", "%s", res->workload);
    KV("requests",
       "max_tokens %d, ignore_eos, temperature 0, streamed; warm runs %d, idle gap %g "
       "s, launches %d",
       res->opt.max_tokens, res->opt.warm_runs, res->opt.idle_gap_s, res->opt.repeat);
    /* environment */
    if (res->s->gpus.available) {
        struct buf gn;
        buf_init(&gn, 256, 1 << 14);
        for (int i = 0; i < res->s->gpus.n_gpus; i++)
            buf_printf(&gn, "%s%s (%.0f MiB)", i ? ", " : "", res->s->gpus.gpu[i].name,
                       ttft_mib(res->s->gpus.gpu[i].mem_total_bytes));
        KV("gpus", "%s", gn.data);
        buf_free(&gn);
        if (res->s->gpus.driver_version[0])
            KV("gpu_driver", "%s (read via %s)", res->s->gpus.driver_version, res->s->gpus.source);
    } else {
        KV("gpus", "none: %s", res->s->gpus.reason);
    }
    if (res->s->have_host) {
        KV("cpu", "%s, %d online CPUs", res->s->host.cpu_model[0] ? res->s->host.cpu_model : "unknown",
           res->s->host.n_cpus);
        KV("memory_gib", "%.1f", (double)res->s->host.mem_total_bytes / (1024.0 * 1024 * 1024));
        KV("os", "%s", res->s->host.os[0] ? res->s->host.os : "unknown");
        KV("kernel", "%s", res->s->host.kernel[0] ? res->s->host.kernel : "unknown");
    }
    KV("slmprobe_version", "%s", SLMPROBE_VERSION);
#undef KV
    if (r0 && r0->cmdline[0]) {
        report_paragraph(s, "Server command line (exec'd directly, no shell; secrets as %s; log: %s):",
                         "***", r0->log_path);
        report_pre(s, r0->cmdline);
    }
}

static void runs_chart(const struct ttft_result *res, struct report_section *s);

/* The seed's single-run table: cold_1 and warm_1 of launch 1. */
static void single_run_table(const struct ttft_result *res, struct report_section *s)
{
    if (!res->n_reps)
        return;
    const struct ttft_repeat *rr = &res->reps[0];
    struct report_table *t =
        report_table_add(s, "single_run", "Single-run measurements (cold vs warm)");
    report_table_col(t, "run", "Run", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "ttft_s", "TTFT", "s", REPORT_COL_NUMBER, 4);
    report_table_col(t, "e2e_s", "E2E", "s", REPORT_COL_NUMBER, 4);
    report_table_col(t, "tokens", "Tokens", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "notes", "Notes", NULL, REPORT_COL_TEXT, 0);
    const enum ttft_kind kinds[] = {TTFT_KIND_COLD, TTFT_KIND_WARM_IMMEDIATE};
    const char *notes[] = {"first request after server start", "immediate second request"};
    for (size_t k = 0; k < 2; k++) {
        const struct ttft_req *q = ttft_find_kind(rr, kinds[k]);
        if (!q)
            continue;
        report_table_row_add(t);
        report_row_text(t, "%s", q->rec.tag);
        report_row_num(t, ttft_rec_ttft_ms(&q->rec) / 1000);
        report_row_num(t, ttft_rec_e2e_ms(&q->rec) / 1000);
        report_row_num(t, int_or_nan(q->rec.n_completion_tokens));
        report_row_text(t, "%s%s%s", notes[k], q->rec.error == REQ_ERROR_NONE ? "" : "; ",
                        q->rec.error == REQ_ERROR_NONE ? "" : req_error_str(q->rec.error));
    }
}

static void section_runs(const struct ttft_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "runs", "Cold vs warm requests");
    report_paragraph(s, "cold_N is the first request after launch N, sent the moment /v1/models "
                        "answered; warm_1 follows it immediately; warm_2.. are the warm runs 1..N "
                        "(the statistics below use these). TTFT is from handing the request to "
                        "the socket to the first streamed event with text; tokens are the "
                        "server's own usage counts.");
    single_run_table(res, s);
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
    for (int k = 0; k < res->n_reps; k++) {
        const struct ttft_repeat *rr = &res->reps[k];
        for (size_t i = 0; i < rr->n_reqs; i++) {
            const struct request_record *q = &rr->reqs[i].rec;
            report_table_row_add(t);
            report_row_num(t, rr->index);
            report_row_text(t, "%s", q->tag);
            report_row_text(t, "%s", ttft_kind_str(rr->reqs[i].kind));
            report_row_num(t, ttft_rec_ttft_ms(q));
            report_row_num(t, ttft_rec_e2e_ms(q));
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
    runs_chart(res, s);
}

/* TTFT by request: the ok requests only (a failed one has no TTFT), the failures named below. */
static void runs_chart(const struct ttft_result *res, struct report_section *s)
{
    struct report_chart *c = report_chart_add(s, REPORT_CHART_LINE, "ttft_by_run",
                                              "TTFT by request (1 = cold_1, 2 = warm_1, 3.. = warm runs)",
                                              "request", NULL, "TTFT", "ms");
    for (int k = 0; k < res->n_reps; k++) {
        const struct ttft_repeat *rr = &res->reps[k];
        double *x = xcalloc(rr->n_reqs + 1, sizeof *x), *y = xcalloc(rr->n_reqs + 1, sizeof *y);
        size_t n = 0;
        for (size_t i = 0; i < rr->n_reqs; i++) {
            /* url mode has no cold request: keep the numbering (warm_1 is request 2) */
            double xi = (double)rr->reqs[i].i_in_repeat + (res->url_mode ? 1 : 0);
            const struct request_record *q = &rr->reqs[i].rec;
            if (q->error != REQ_ERROR_NONE) {
                report_paragraph(s, "Not plotted: launch %d, request %.0f (%s) failed (%s).",
                                 rr->index, xi, q->tag, req_error_str(q->error));
                continue;
            }
            x[n] = xi;
            y[n++] = ttft_rec_ttft_ms(q);
        }
        char name[32];
        snprintf(name, sizeof name, res->n_reps > 1 ? "launch %d" : "TTFT", rr->index);
        report_chart_series(c, name, x, y, n);
        free(x);
        free(y);
    }
}

/* The seed's warm-run table: runs 1..N of each launch, outliers marked. */
static void warm_runs_table(const struct ttft_result *res, struct report_section *s)
{
    struct report_table *t = report_table_add(s, "warm_runs", NULL);
    report_table_col(t, "repeat", "Launch", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "run", "Run", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "tag", "Request", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "ttft_s", "TTFT", "s", REPORT_COL_NUMBER, 4);
    report_table_col(t, "e2e_s", "E2E", "s", REPORT_COL_NUMBER, 4);
    report_table_col(t, "tokens", "Tokens", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "notes", "Notes", NULL, REPORT_COL_TEXT, 0);
    for (int k = 0; k < res->n_reps; k++) {
        const struct ttft_repeat *rr = &res->reps[k];
        for (size_t i = 0; i < rr->n_reqs; i++) {
            const struct ttft_req *q = &rr->reqs[i];
            if (q->kind != TTFT_KIND_WARM)
                continue;
            const char *note = q->rec.error != REQ_ERROR_NONE ? req_error_str(q->rec.error) : "";
            for (int o = 0; o < rr->n_outliers; o++)
                if (rr->outliers[o].run == q->i_warm_run)
                    note = "outlier (see Observations)";
            report_table_row_add(t);
            report_row_num(t, rr->index);
            report_row_num(t, q->i_warm_run);
            report_row_text(t, "%s", q->rec.tag);
            report_row_num(t, ttft_rec_ttft_ms(&q->rec) / 1000);
            report_row_num(t, ttft_rec_e2e_ms(&q->rec) / 1000);
            report_row_num(t, int_or_nan(q->rec.n_completion_tokens));
            report_row_text(t, "%s", note);
        }
    }
}

static void section_variance(const struct ttft_result *res, struct report *r)
{
    struct report_section *s =
        report_section_add(r, "warm_variance", "Warm-run variance (steady state)");
    report_paragraph(s, "Prompt: %s. Runs 1..N are warm_2 .. warm_N+1; the summary below is over "
                        "them (warm_1 is the immediate second request above).",
                     res->workload);
    warm_runs_table(res, s);
    struct report_table *t = report_table_add(s, "warm_variance", "Summary");
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
    for (int k = 0; k < res->n_reps; k++) {
        const struct ttft_repeat *rr = &res->reps[k];
        struct summary sm;
        ttft_warm_summary(rr, &sm);
        size_t n = sm.n;
        double cold = ttft_cold_ttft_ms(rr);
        report_table_row_add(t);
        report_row_num(t, rr->index);
        report_row_num(t, (double)n);
        report_row_num(t, sm.min);
        report_row_num(t, sm.p50);
        report_row_num(t, sm.max);
        report_row_num(t, sm.mean);
        report_row_num(t, sm.stddev);
        report_row_num(t, sm.min > 0 ? sm.max / sm.min : NAN);
        if (res->url_mode)
            report_row_na(t, "warm-only (--url)");
        else
            report_row_num(t, cold);
        if (res->url_mode)
            report_row_na(t, "warm-only (--url)");
        else
            report_row_num(t, sm.p50 > 0 ? cold / sm.p50 : NAN);
    }
}

/* llama.cpp prints no durations: its milestones (arrival offsets) and sizes. */
static void llamacpp_facts(const struct startup_info *si, struct report_section *s)
{
    if (si->server != LOGPARSE_SERVER_LLAMACPP)
        return;
    const struct {
        const char *what;
        double t_s;
    } ms[] = {{"loading model", si->t_load_start_s},
              {"first context / KV cache line", si->t_context_start_s},
              {"warming up the model", si->t_warmup_start_s},
              {"model loaded", si->t_model_loaded_s},
              {"server is listening", si->t_listening_s}};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        if (isfinite(ms[i].t_s))
            report_bullet(s, "llama.cpp milestone \"%s\" arrived %.3f s after launch", ms[i].what,
                          ms[i].t_s);
    if (isfinite(si->weights_mib))
        report_bullet(s, "Model buffers: %.1f MiB", si->weights_mib);
    if (si->n_ctx_tokens >= 0)
        report_bullet(s, "Context: %lld tokens in all (%lld per sequence)",
                      (long long)si->n_ctx_tokens, (long long)si->n_ctx_per_seq_tokens);
}

/* A server whose log matched no dialect: its distinct lines with arrival offsets. */
static void log_timeline(const struct startup_info *si, struct report_section *s)
{
    if (si->n_timeline <= 0)
        return;
    report_paragraph(s,
                     "No known log wording matched, so no phase could be named. The server's "
                     "distinct log lines in arrival order (lines that differ only in digits "
                     "count once; offsets are arrival times from launch as the probe read the "
                     "log)%s:",
                     si->n_timeline_dropped ? ", some lines dropped for room" : "");
    struct report_table *t = report_table_add(s, "log_timeline", NULL);
    report_table_col(t, "t_first_s", "First seen", "s", REPORT_COL_NUMBER, 3);
    report_table_col(t, "t_last_s", "Last seen", "s", REPORT_COL_NUMBER, 3);
    report_table_col(t, "n_seen", "Times", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "line", "Line", NULL, REPORT_COL_TEXT, 0);
    for (int i = 0; i < si->n_timeline; i++) {
        const struct startup_line *l = &si->timeline[i];
        report_table_row_add(t);
        report_row_num(t, l->t_first_s);
        report_row_num(t, l->t_last_s);
        report_row_num(t, (double)l->n_seen);
        report_row_text(t, "%s", l->text);
    }
}

static void timeline_chart(const struct ttft_repeat *rr, struct report_section *s);
static void timeline_phases(const struct ttft_result *res, struct report_section *s);
static void startup_facts(const struct startup_info *si, struct report_section *s);

static void section_timeline(const struct ttft_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "timeline", "Launch timeline");
    if (res->url_mode) {
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
    for (int k = 0; k < res->n_reps; k++) {
        const struct ttft_repeat *rr = &res->reps[k];
        const struct ttft_req *cold = ttft_find_kind(rr, TTFT_KIND_COLD);
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
            double v = i == 0 ? (t0 ? 0.0 : NAN) : ttft_rel_ms(ev[i].t, t0);
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
    if (res->n_reps && res->reps[0].tl.t_launch_ns)
        timeline_chart(&res->reps[0], s);
    timeline_phases(res, s);
}

/* Launch 1's consecutive stages as floating bars. */
static void timeline_chart(const struct ttft_repeat *rr, struct report_section *s)
{
    {
        const struct ttft_req *cold = ttft_find_kind(rr, TTFT_KIND_COLD);
        mono_ns t0 = rr->tl.t_launch_ns;
        double m[6] = {0,
                       ttft_rel_ms(rr->tl.t_port_open_ns, t0),
                       ttft_rel_ms(rr->tl.t_health_ok_ns, t0),
                       ttft_rel_ms(rr->tl.t_models_ok_ns, t0),
                       cold ? ttft_rel_ms(cold->rec.t_sent_ns, t0) : NAN,
                       cold ? ttft_rel_ms(cold->rec.t_first_token_ns, t0) : NAN};
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
}

/* The start-up phases the server logged, per launch, and launch 1's start-up facts. */
static void timeline_phases(const struct ttft_result *res, struct report_section *s)
{
    const struct ttft_repeat *rr = res->n_reps ? &res->reps[0] : NULL;
    report_paragraph(s, "Start-up phases from the server's log. Source \"logged\": a duration the "
                        "server printed; \"arrival\": the difference of the arrival times of two "
                        "log lines as the probe read them (resolution: how often the log was "
                        "read, 20-50 ms; llama.cpp prints no durations). n/a: not logged by this "
                        "server or not reached.");
    struct report_table *p = report_table_add(s, "phases", NULL);
    report_table_col(p, "repeat", "Launch", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(p, "phase", "Phase", NULL, REPORT_COL_TEXT, 0);
    report_table_col(p, "what", "What", NULL, REPORT_COL_TEXT, 0);
    report_table_col(p, "duration_s", "Duration", "s", REPORT_COL_NUMBER, 3);
    report_table_col(p, "source", "Source", NULL, REPORT_COL_TEXT, 0);
    for (int k = 0; k < res->n_reps; k++) {
        const struct ttft_repeat *q = &res->reps[k];
        for (int ph = 0; ph < STARTUP_PHASE__COUNT; ph++) {
            report_table_row_add(p);
            report_row_num(p, q->index);
            report_row_text(p, "%s", startup_phase_str((enum startup_phase)ph));
            report_row_text(p, "%s", phase_what((enum startup_phase)ph));
            double v = q->have_startup ? q->startup.phase_s[ph] : NAN;
            if (isfinite(v)) {
                report_row_num(p, v);
                report_row_text(p, "%s", startup_phase_source_str(q->startup.phase_source[ph]));
            } else {
                report_row_na(p, q->have_startup ? "not logged" : "no log");
                report_row_text(p, "-");
            }
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
        startup_facts(&rr->startup, s);
    }
}

/* KV capacity, warm-up shapes, errors and the recognised dialect from one launch's log. */
static void startup_facts(const struct startup_info *si, struct report_section *s)
{
    {
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
        if (isfinite(si->upload_s))
            report_bullet(s, "Weights copied to device memory in %.3f s (%.2f GB/s)",
                          si->upload_s, si->upload_gbps);
        if (isfinite(si->graph_gib))
            report_bullet(s, "CUDA graphs: captured in %.2f s, %.2f GiB of device memory",
                          si->phase_s[STARTUP_PHASE_WARMUP_GRAPH_CAPTURE], si->graph_gib);
        if (si->n_warmup_shapes > 0)
            report_bullet(s, "Warm-up ran %d batch shapes", si->n_warmup_shapes);
        if (si->warmup_skipped)
            report_bullet(s, "Warm-up was skipped (--enforce-eager)");
        if (si->error_message[0])
            report_bullet(s, "Start-up error in the log: %s", si->error_message);
        report_bullet(s, "Log wording recognised as: %s (%llu lines)",
                      logparse_server_str(si->server), (unsigned long long)si->n_lines);
        llamacpp_facts(si, s);
        if (si->server == LOGPARSE_SERVER_UNKNOWN)
            log_timeline(si, s);
    }
}

static void section_sanity(const struct ttft_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "sanity", "Sanity metrics");
    report_paragraph(s,
                     "The machine's view while the server ran, sampled every %d ms by a "
                     "separate thread (server CPU: process tree, 100%% = one core busy; a "
                     "window shorter than the sampling interval is attributed the CPU of the "
                     "interval around it).",
                     res->s->sample_interval_ms);
    struct report_table *t = report_table_add(s, "sanity", NULL);
    report_table_col(t, "metric", "Metric", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "what", "What", NULL, REPORT_COL_TEXT, 0);
    int first_val = 2;
    for (int k = 0; k < res->n_reps; k++) {
        char key[32], label[32];
        snprintf(key, sizeof key, "launch_%d", res->reps[k].index);
        snprintf(label, sizeof label, res->n_reps > 1 ? "Launch %d" : "Value", res->reps[k].index);
        report_table_col(t, key, label, NULL, REPORT_COL_NUMBER, 1);
    }
    const char *no_gpu = res->s->gpus.available ? "not sampled" : "no GPU";
    const char *no_proc = res->url_mode ? "not launched (--url)" : "not measured";
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
        for (int k = 0; k < res->n_reps; k++) {
            const struct ttft_repeat *rr = &res->reps[k];
            size_t row = report_table_n_rows(t) - 1;
            int col = first_val + k;
            double v = NAN;
            const char *why = "not measured";
            switch (m) {
            case M_GPU_BEFORE:
                v = ttft_mib(rr->gpu_mem_before_bytes);
                why = no_gpu;
                break;
            case M_GPU_AFTER:
                v = ttft_mib(rr->gpu_mem_after_cold_bytes);
                why = res->url_mode ? "warm-only (--url)" : no_gpu;
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
                v = ttft_mib(rr->rss_ready_bytes);
                why = no_proc;
                break;
            case M_RSS_MAX:
                v = ttft_mib(rr->rss_max_bytes);
                why = no_proc;
                break;
            case M_PC_BEFORE:
                v = ttft_mib(rr->page_cache_before_bytes);
                break;
            case M_PC_AFTER:
                v = ttft_mib(rr->page_cache_after_bytes);
                break;
            case M_PC_GROWTH:
                v = !res->url_mode && rr->page_cache_before_bytes >= 0 &&
                            rr->page_cache_ready_bytes >= 0
                        ? ttft_mib(rr->page_cache_ready_bytes) -
                              ttft_mib(rr->page_cache_before_bytes)
                        : NAN;
                why = res->url_mode ? "not launched (--url)" : "not reached";
                break;
            case M_READ_READY:
                v = ttft_mib(rr->read_bytes_ready);
                why = res->url_mode ? no_proc : "unreadable (/proc/PID/io)";
                break;
            case M_READ_END:
                v = ttft_mib(rr->read_bytes_end);
                why = res->url_mode ? no_proc : "unreadable (/proc/PID/io)";
                break;
            }
            if (isfinite(v))
                report_cell_num(t, row, col, v);
            else
                report_cell_na(t, row, col, why);
        }
    }
    if (!res->s->gpus.available)
        report_paragraph(s, "No GPU: %s.", res->s->gpus.reason);
}

/* The five per-launch metrics, in the order section_repeats fills them: one column each, the
 * same in the per-launch table and the spread table. */
static void repeat_metric_cols(struct report_table *t)
{
    report_table_col(t, "ready_ms", "Launch to ready", "ms", REPORT_COL_NUMBER, 1);
    report_table_col(t, "cold_ttft_ms", "Cold TTFT", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "cold_e2e_ms", "Cold E2E", "ms", REPORT_COL_NUMBER, 2);
    report_table_col(t, "launch_to_first_token_ms", "Launch to first token", "ms",
                     REPORT_COL_NUMBER, 1);
    report_table_col(t, "warm_median_ms", "Warm median", "ms", REPORT_COL_NUMBER, 2);
}

static void section_repeats(const struct ttft_result *res, struct report *r)
{
    if (res->n_reps < 2)
        return;
    struct report_section *s = report_section_add(r, "repeats", "Cold start across launches");
    struct report_table *t = report_table_add(s, "repeats", NULL);
    report_table_col(t, "repeat", "Launch", NULL, REPORT_COL_NUMBER, 0);
    repeat_metric_cols(t);
    int n = res->n_reps;
    double *cols[5];
    for (int j = 0; j < 5; j++)
        cols[j] = xcalloc((size_t)n, sizeof(double));
    for (int k = 0; k < n; k++) {
        const struct ttft_repeat *rr = &res->reps[k];
        const struct ttft_req *c = ttft_find_kind(rr, TTFT_KIND_COLD);
        mono_ns t0 = rr->tl.t_launch_ns;
        struct summary sm;
        ttft_warm_summary(rr, &sm);
        cols[0][k] = ttft_rel_ms(rr->tl.t_models_ok_ns, t0);
        cols[1][k] = ttft_cold_ttft_ms(rr);
        cols[2][k] = c && c->rec.error == REQ_ERROR_NONE ? ttft_rec_e2e_ms(&c->rec) : NAN;
        cols[3][k] =
            c && c->rec.error == REQ_ERROR_NONE ? ttft_rel_ms(c->rec.t_first_token_ns, t0) : NAN;
        cols[4][k] = sm.p50;
        report_table_row_add(t);
        report_row_num(t, rr->index);
        for (int j = 0; j < 5; j++)
            report_row_num(t, cols[j][k]);
    }
    struct report_table *sp = report_table_add(s, "cold_spread", "Spread over launches");
    report_table_col(sp, "statistic", "Statistic", NULL, REPORT_COL_TEXT, 0);
    repeat_metric_cols(sp);
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

/* ---- observations: each sentence formats measured values; the thresholds are in ttft.h ---- */

struct obs_part {
    const char *name;
    double s;
};

/* The logged phases of si that do not overlap: model (or weights) load, engine init or its
 * parts. Returns the count (at most 5). */
static int obs_phase_parts(const struct startup_info *si, struct obs_part *parts)
{
    static const enum startup_phase engine_sub[] = {STARTUP_PHASE_TORCH_COMPILE,
                                                    STARTUP_PHASE_KV_CACHE_ALLOC,
                                                    STARTUP_PHASE_WARMUP_GRAPH_CAPTURE};
    int np = 0;
    int have_model = isfinite(si->phase_s[STARTUP_PHASE_MODEL_LOAD]);
    double load = have_model ? si->phase_s[STARTUP_PHASE_MODEL_LOAD]
                             : si->phase_s[STARTUP_PHASE_WEIGHTS_LOAD];
    if (isfinite(load))
        parts[np++] = (struct obs_part){have_model ? "model_load" : "weights_load", load};
    double engine = si->phase_s[STARTUP_PHASE_ENGINE_INIT];
    if (isfinite(engine)) {
        parts[np++] = (struct obs_part){"engine_init", engine};
        return np;
    }
    for (size_t i = 0; i < 3; i++)
        if (isfinite(si->phase_s[engine_sub[i]]))
            parts[np++] = (struct obs_part){startup_phase_str(engine_sub[i]),
                                            si->phase_s[engine_sub[i]]};
    return np;
}

/* When an aggregate phase (engine_init, model_load) dominated: its largest logged part. */
static void obs_phase_within(struct report_section *s, const struct startup_info *si,
                             const struct obs_part *best)
{
    static const enum startup_phase sub_e[] = {STARTUP_PHASE_TORCH_COMPILE,
                                               STARTUP_PHASE_KV_CACHE_ALLOC,
                                               STARTUP_PHASE_WARMUP_GRAPH_CAPTURE};
    static const enum startup_phase sub_m[] = {STARTUP_PHASE_WEIGHTS_LOAD};
    const enum startup_phase *sub = NULL;
    size_t n_sub = 0;
    if (!strcmp(best->name, "engine_init")) {
        sub = sub_e;
        n_sub = 3;
    } else if (!strcmp(best->name, "model_load")) {
        sub = sub_m;
        n_sub = 1;
    }
    int bi = -1;
    for (size_t i = 0; i < n_sub; i++)
        if (isfinite(si->phase_s[sub[i]]) && (bi < 0 || si->phase_s[sub[i]] > si->phase_s[sub[bi]]))
            bi = (int)i;
    if (bi >= 0 && best->s > 0)
        report_bullet(s, "Within %s, %s took %.3f s (%.0f%%).", best->name,
                      startup_phase_str(sub[bi]), si->phase_s[sub[bi]],
                      100 * si->phase_s[sub[bi]] / best->s);
}

/* Which start-up phase dominated launch to ready. Returns 1 if it said something. */
static int obs_dominant_phase(const struct ttft_result *res, const struct ttft_repeat *rr,
                              struct report_section *s)
{
    double ready_ms = res->url_mode ? NAN : ttft_ready_ms(rr);
    if (!isfinite(ready_ms)) {
        if (res->url_mode)
            return 0;
        report_bullet(s, "The server never became ready, so there is no cold-start split.");
        return 1;
    }
    if (!rr->have_startup)
        return 0;
    const struct startup_info *si = &rr->startup;
    struct obs_part parts[5];
    int np = obs_phase_parts(si, parts);
    double logged = 0;
    int best = -1;
    for (int i = 0; i < np; i++) {
        logged += parts[i].s;
        if (best < 0 || parts[i].s > parts[best].s)
            best = i;
    }
    double ready_s = ready_ms / 1000, unlogged_s = ready_s - logged;
    char a[32];
    ttft_fmt_ms(ready_ms, a, sizeof a);
    if (best >= 0 && rr->logged_exceeds_measured) {
        report_bullet(s,
                      "Launch to ready took %s (measured), but the logged phases add up to %.3f "
                      "s, more than that (a log replayed from another run, or clocks that "
                      "disagree): no phase share is given; the largest logged phase, %s, took "
                      "%.3f s (logged).",
                      a, logged, parts[best].name, parts[best].s);
    } else if (best < 0) {
        report_bullet(s,
                      "Launch to ready took %s; the server logged no start-up phase this probe "
                      "recognises (log wording: %s), so the time cannot be split.",
                      a, logparse_server_str(si->server));
    } else if (unlogged_s > parts[best].s) {
        report_bullet(s,
                      "Time outside every logged phase dominated launch to ready (%s, measured): "
                      "%.3f s (%.0f%%, measured remainder) went to process start, imports, HTTP "
                      "start-up and readiness polling, against the largest logged phase, %s, "
                      "%.3f s (%.0f%%, logged).",
                      a, unlogged_s, 100 * unlogged_s / ready_s, parts[best].name, parts[best].s,
                      100 * parts[best].s / ready_s);
    } else {
        report_bullet(s,
                      "%s (%.3f s, logged) dominated launch to ready (%s, measured): %.0f%% of "
                      "it, against %.3f s outside every logged phase (process start, HTTP "
                      "start-up, readiness polling; measured remainder). Logged phases cover "
                      "%.3f s.",
                      parts[best].name, parts[best].s, a, 100 * parts[best].s / ready_s,
                      unlogged_s > 0 ? unlogged_s : 0.0, logged);
        obs_phase_within(s, si, &parts[best]);
    }
    return 1;
}

/* Launch to first token split into readiness and the cold TTFT. */
static int obs_cold_share(const struct ttft_result *res, const struct ttft_repeat *rr,
                          struct report_section *s)
{
    const struct ttft_req *cold = ttft_find_kind(rr, TTFT_KIND_COLD);
    double cold_ms = ttft_cold_ttft_ms(rr);
    double ready_ms = res->url_mode ? NAN : ttft_ready_ms(rr);
    if (!cold || !isfinite(cold_ms) || !isfinite(ready_ms))
        return 0;
    double ft = ttft_rel_ms(cold->rec.t_first_token_ns, rr->tl.t_launch_ns);
    char a[32], b[32];
    ttft_fmt_ms(ft, a, sizeof a);
    ttft_fmt_ms(cold_ms, b, sizeof b);
    report_bullet(s,
                  "From launch to the first token of the cold request took %s: waiting for "
                  "readiness was %.1f%% of it and the cold request's TTFT (%s) %.1f%%.",
                  a, 100 * ready_ms / ft, b, 100 * cold_ms / ft);
    return 1;
}

/* First-request penalty, warm spread and warm_1. Returns how many sentences. */
static int obs_warm(const struct ttft_result *res, const struct ttft_repeat *rr,
                    struct report_section *s)
{
    int n_said = 0;
    char a[32], b[32], c[32];
    double cold_ms = ttft_cold_ttft_ms(rr);
    struct summary sm;
    ttft_warm_summary(rr, &sm);
    size_t nw = sm.n;
    if (isfinite(cold_ms) && nw > 0) {
        ttft_fmt_ms(cold_ms, a, sizeof a);
        ttft_fmt_ms(sm.p50, b, sizeof b);
        ttft_fmt_ms(cold_ms - sm.p50, c, sizeof c);
        if (cold_ms > sm.max)
            report_bullet(s,
                          "The first request paid a first-request penalty: cold TTFT %s vs a warm "
                          "median of %s (%.2fx, %s more), above the slowest of the %zu warm runs "
                          "(%.2f ms).",
                          a, b, cold_ms / sm.p50, c, nw, sm.max);
        else
            report_bullet(s,
                          "No first-request penalty beyond warm noise: cold TTFT %s lies within "
                          "the warm range %.2f .. %.2f ms (median %s, %.2fx).",
                          a, sm.min, sm.max, b, cold_ms / sm.p50);
        n_said++;
    }
    if (nw >= 2 && sm.min > 0) {
        double ratio = sm.max / sm.min;
        const char *verdict = ratio <= TTFT_SPREAD_TIGHT_RATIO  ? "tight"
                              : ratio <= TTFT_SPREAD_WIDE_RATIO ? "moderate"
                                                                : "wide";
        report_bullet(s,
                      "Warm spread is %s: max/min %.2f over %zu runs (%.2f .. %.2f ms, stddev "
                      "%.2f ms = %.1f%% of the mean).",
                      verdict, ratio, nw, sm.min, sm.max, sm.stddev,
                      sm.mean > 0 ? 100 * sm.stddev / sm.mean : 0.0);
        n_said++;
    }
    const struct ttft_req *w0 = ttft_find_kind(rr, TTFT_KIND_WARM_IMMEDIATE);
    if (w0 && w0->rec.error == REQ_ERROR_NONE && nw > 0 && isfinite(sm.p50) && sm.p50 > 0) {
        double w0ms = ttft_rec_ttft_ms(&w0->rec);
        ttft_fmt_ms(w0ms, a, sizeof a);
        const char *verdict =
            w0ms <= sm.max  ? "within the warm range: already warm"
            : res->url_mode ? "slower than every warm run"
                            : "slower than every warm run: some warm-up outlasted the cold request";
        report_bullet(s, "%s (warm_1) took %s, %.2fx the warm median, %s.",
                      res->url_mode ? "The first request of this run"
                                    : "The request sent right after the cold one",
                      a, w0ms / sm.p50, verdict);
        n_said++;
    }
    return n_said;
}

/* Server CPU and the storage signals (ttft_story.c). */
static int obs_host(const struct ttft_result *res, const struct ttft_repeat *rr,
                    struct report_section *s)
{
    int n_said = 0;
    if (isfinite(rr->cpu_cold_pct) || isfinite(rr->cpu_warm_pct)) {
        char cc[48], cw[48];
        snprintf(cc, sizeof cc, isfinite(rr->cpu_cold_pct) ? "%.0f%%" : "n/a", rr->cpu_cold_pct);
        snprintf(cw, sizeof cw, isfinite(rr->cpu_warm_pct) ? "%.0f%%" : "n/a", rr->cpu_warm_pct);
        report_bullet(s,
                      "Server CPU was %s during the %s and %s on average during the warm runs "
                      "(100%% = one core).",
                      cc, res->url_mode ? "first request" : "cold request", cw);
        n_said++;
    }
    n_said += ttft_obs_storage(res, rr, s);
    return n_said;
}

/* GPU memory growth and utilisation, or why there is no GPU. */
static int obs_gpu(const struct ttft_result *res, const struct ttft_repeat *rr,
                   struct report_section *s)
{
    if (!res->s->gpus.available) {
        report_bullet(s, "No GPU: %s. GPU memory and utilisation are n/a.", res->s->gpus.reason);
        return 1;
    }
    if (rr->gpu_mem_before_bytes < 0 || rr->gpu_mem_after_cold_bytes < 0)
        return 0;
    double before = ttft_mib(rr->gpu_mem_before_bytes);
    double after = ttft_mib(rr->gpu_mem_after_cold_bytes);
    char util[48];
    snprintf(util, sizeof util, isfinite(rr->gpu_util_warm_pct) ? "averaged %.0f%%" : "was not sampled",
             rr->gpu_util_warm_pct);
    report_bullet(s,
                  "GPU memory went from %.0f MiB before launch to %.0f MiB after the cold request "
                  "(%+.0f MiB%s); GPU utilisation %s during the warm runs.",
                  before, after, after - before,
                  fabs(after - before) < 1 ? ": this server did not allocate GPU memory" : "",
                  util);
    return 1;
}

/* Requests that returned fewer tokens than asked or reported prefix-cache hits. */
static int obs_requests(const struct ttft_result *res, struct report_section *s)
{
    int n_short = 0, n_cached = 0, n_ok = 0, n_said = 0;
    for (int k = 0; k < res->n_reps; k++)
        for (size_t i = 0; i < res->reps[k].n_reqs; i++) {
            const struct request_record *q = &res->reps[k].reqs[i].rec;
            if (q->error != REQ_ERROR_NONE)
                continue;
            n_ok++;
            n_short += q->n_completion_tokens >= 0 && q->n_completion_tokens < res->opt.max_tokens;
            n_cached += q->n_cached_tokens > 0;
        }
    if (n_short) {
        report_bullet(s,
                      "%d of %d requests generated fewer than the %d tokens asked for (the server "
                      "ignored ignore_eos or hit a length limit): their E2E is not comparable.",
                      n_short, n_ok, res->opt.max_tokens);
        n_said++;
    }
    if (n_cached) {
        report_bullet(s,
                      "%d of %d requests reported prefix-cache hits although every prompt starts "
                      "with a unique header: their TTFT is lower than an uncached prefill.",
                      n_cached, n_ok);
        n_said++;
    }
    return n_said;
}

/* The range of cold TTFT and launch to ready over launches. */
static int obs_launches(const struct ttft_result *res, struct report_section *s)
{
    if (res->n_reps < 2)
        return 0;
    double *cv = xcalloc((size_t)res->n_reps, sizeof *cv);
    double *rv = xcalloc((size_t)res->n_reps, sizeof *rv);
    for (int k = 0; k < res->n_reps; k++) {
        cv[k] = ttft_cold_ttft_ms(&res->reps[k]);
        rv[k] = ttft_ready_ms(&res->reps[k]);
    }
    struct summary cs, rs;
    summary_of(cv, (size_t)res->n_reps, &cs);
    summary_of(rv, (size_t)res->n_reps, &rs);
    free(cv);
    free(rv);
    if (cs.n < 2)
        return 0;
    report_bullet(s,
                  "Over %zu launches, cold TTFT ranged %.2f .. %.2f ms (median %.2f) and launch "
                  "to ready %.1f .. %.1f ms (median %.1f).",
                  cs.n, cs.min, cs.max, cs.p50, rs.min, rs.max, rs.p50);
    return 1;
}

static void section_observations(const struct ttft_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "observations", "Observations");
    const struct ttft_repeat *rr = res->n_reps ? &res->reps[0] : NULL;
    if (!rr) {
        report_paragraph(s, "Nothing was measured.");
        return;
    }
    int n_said = obs_dominant_phase(res, rr, s);
    n_said += obs_cold_share(res, rr, s);
    n_said += obs_warm(res, rr, s);
    n_said += ttft_obs_outliers(res, rr, s);
    n_said += obs_host(res, rr, s);
    n_said += obs_gpu(res, rr, s);
    n_said += obs_requests(res, s);
    n_said += obs_launches(res, s);
    if (!n_said)
        report_paragraph(s, "Too little was measured for observations.");
}

/* The report's meta block: probe, server, status and the headline numbers. */
static void report_head(const struct ttft_result *res, struct report *r)
{
    const struct target_config *tc = &res->s->po->target;
    report_set_html_name(r, "first_token_latency.html");
    report_meta(r, "probe", "slmprobe ttft %s", SLMPROBE_VERSION);
    report_meta(r, "started", "%s", res->s->started_at);
    report_meta(r, "client_calibration", "%s", res->s->ceiling_note);
    report_meta(r, "server", "%s%s", target_kind_str(tc->kind),
                res->url_mode ? " (--url, warm only)" : "");
    report_meta(r, "model", "%s",
                tc->model                                 ? tc->model
                : res->n_reps && res->reps[0].model_id[0] ? res->reps[0].model_id
                                                          : "unknown");
    report_meta(r, "status", "%s",
                res->interrupted ? "interrupted (partial)"
                : res->failed    ? "failed"
                                 : "ok");
    if (!res->n_reps)
        return;
    const struct ttft_repeat *rr = &res->reps[0];
    struct summary sm;
    ttft_warm_summary(rr, &sm);
    double cold = ttft_cold_ttft_ms(rr);
    if (isfinite(cold))
        report_meta(r, "cold_ttft", "%.2f ms", cold);
    if (isfinite(sm.p50))
        report_meta(r, "warm_ttft_median", "%.2f ms over %zu runs", sm.p50, sm.n);
    if (isfinite(cold) && isfinite(sm.p50) && sm.p50 > 0)
        report_meta(r, "cold_warm_factor", "%.2f", cold / sm.p50);
    double ready = ttft_ready_ms(rr);
    if (!res->url_mode && isfinite(ready))
        report_meta(r, "launch_to_ready", "%.1f ms", ready);
}

void ttft_report(const struct ttft_result *res, struct report *r)
{
    report_head(res, r);
    section_status(res, r);
    section_observations(res, r);
    ttft_section_stack(res, r);
    ttft_section_model(res, r);
    ttft_section_sre(res, r);
    section_config(res, r);
    section_runs(res, r);
    section_variance(res, r);
    section_timeline(res, r);
    section_sanity(res, r);
    section_repeats(res, r);
}

/* The four renderings into the output directory. Returns the number that failed. */
#define MOD "ttft"

int ttft_write_outputs(const struct ttft_result *res, const struct session *s)
{
    struct report *r = report_new(TTFT_REPORT_TITLE);
    ttft_report(res, r);
    char path[1200], err[1400];
    int n_bad = 0;
    struct {
        const char *name;
        int fmt; /* -1: csv, -2: ttft.json */
    } outs[] = {{"first_token_latency.md", REPORT_FORMAT_MARKDOWN},
                {"first_token_latency.html", REPORT_FORMAT_HTML},
                {"ttft.json", -2},
                {"ttft_runs.csv", -1}};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", s->out_dir, outs[i].name);
        int ok;
        if (outs[i].fmt == -2)
            ok = ttft_json_write(res, path, err, sizeof err) == 0;
        else if (outs[i].fmt == -1)
            ok = report_write_csv(r, "runs", path, err, sizeof err) == REPORT_OK;
        else
            ok = report_write_file(r, (enum report_format)outs[i].fmt, path, err, sizeof err) ==
                 REPORT_OK;
        if (ok) {
            printf("wrote %s\n", path);
        } else {
            log_error(MOD, "%s", err);
            n_bad++;
        }
    }
    report_free(r);
    return n_bad;
}
