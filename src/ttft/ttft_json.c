/* ttft_json: writes a ttft_result as OUT/ttft.json in schema slmprobe.ttft/1 (docs/schema.md):
 * config, environment, a summary, per-repeat numbers (timeline, phases, telemetry, warm
 * statistics) and every request, with units in every key name and unknown values as null. It
 * is a data file, not a rendering of the Markdown report, and it computes nothing the report
 * does not (the numbers come from the same accessors in ttft_result.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "ttft/ttft.h"
#include "util/buf.h"

#define TTFT_JSON_MAX_BYTES ((size_t)256 << 20)

/* A minimal object/array writer over a buf: commas and nesting. */
struct jw {
    struct buf *b;
    int depth;
    int n_items[16]; /* items written at each depth */
    int bad;         /* a write hit the cap */
};

static void jw_sep(struct jw *w, const char *key)
{
    if (w->n_items[w->depth]++)
        w->bad |= buf_putc(w->b, ',') != BUF_OK;
    if (key) {
        w->bad |= buf_json_str(w->b, key) != BUF_OK;
        w->bad |= buf_putc(w->b, ':') != BUF_OK;
    }
}

static void jw_open(struct jw *w, const char *key, char c)
{
    jw_sep(w, key);
    w->bad |= buf_putc(w->b, c) != BUF_OK;
    if (w->depth < 15)
        w->n_items[++w->depth] = 0;
}

static void jw_close(struct jw *w, char c)
{
    w->bad |= buf_putc(w->b, c) != BUF_OK;
    if (w->depth > 0)
        w->depth--;
}

static void jw_num(struct jw *w, const char *key, double v)
{
    jw_sep(w, key);
    w->bad |= buf_json_double(w->b, v) != BUF_OK;
}

static void jw_int(struct jw *w, const char *key, long long v)
{
    jw_sep(w, key);
    w->bad |= buf_printf(w->b, "%lld", v) != BUF_OK;
}

/* v < 0: null (unknown) */
static void jw_count(struct jw *w, const char *key, long long v)
{
    jw_sep(w, key);
    if (v < 0)
        w->bad |= buf_puts(w->b, "null") != BUF_OK;
    else
        w->bad |= buf_printf(w->b, "%lld", v) != BUF_OK;
}

static void jw_bool(struct jw *w, const char *key, int v)
{
    jw_sep(w, key);
    w->bad |= buf_puts(w->b, v ? "true" : "false") != BUF_OK;
}

static void jw_str(struct jw *w, const char *key, const char *s)
{
    jw_sep(w, key);
    if (s)
        w->bad |= buf_json_str(w->b, s) != BUF_OK;
    else
        w->bad |= buf_puts(w->b, "null") != BUF_OK;
}

static void json_config(struct jw *w, const struct ttft_result *res)
{
    const struct probe_opts *po = res->s->po;
    const struct target_config *tc = &po->target;
    jw_open(w, "config", '{');
    jw_str(w, "server_kind", target_kind_str(tc->kind));
    jw_str(w, "model", tc->model);
    jw_str(w, "url", tc->url);
    jw_bool(w, "url_mode", res->url_mode);
    jw_str(w, "api", client_api_str(po->api));
    jw_int(w, "warm_runs", res->opt.warm_runs);
    jw_num(w, "idle_gap_s", res->opt.idle_gap_s);
    jw_int(w, "repeat", res->opt.repeat);
    jw_int(w, "prompt_len_tokens", res->opt.prompt_len);
    jw_int(w, "max_tokens", res->opt.max_tokens);
    jw_bool(w, "drop_caches", tc->drop_caches);
    jw_str(w, "workload", res->workload);
    jw_count(w, "model_file_bytes", res->model_file_bytes);
    jw_str(w, "command_line", res->s->command_line);
    jw_close(w, '}');
}

static void json_environment(struct jw *w, const struct ttft_result *res)
{
    const struct session *s = res->s;
    jw_open(w, "environment", '{');
    jw_str(w, "slmprobe_version", SLMPROBE_VERSION);
    jw_str(w, "started_at", s->started_at);
    jw_str(w, "cpu_model", s->have_host ? s->host.cpu_model : NULL);
    jw_count(w, "n_cpus", s->have_host ? s->host.n_cpus : -1);
    jw_count(w, "mem_total_bytes", s->have_host ? (long long)s->host.mem_total_bytes : -1);
    jw_str(w, "os", s->have_host ? s->host.os : NULL);
    jw_str(w, "kernel", s->have_host ? s->host.kernel : NULL);
    jw_bool(w, "gpus_available", s->gpus.available);
    jw_str(w, "gpus_reason", s->gpus.available ? NULL : s->gpus.reason);
    jw_open(w, "gpus", '[');
    for (int i = 0; s->gpus.available && i < s->gpus.n_gpus; i++) {
        jw_open(w, NULL, '{');
        jw_str(w, "name", s->gpus.gpu[i].name);
        jw_count(w, "mem_total_bytes", s->gpus.gpu[i].mem_total_bytes);
        jw_close(w, '}');
    }
    jw_close(w, ']');
    jw_int(w, "sample_interval_ms", s->sample_interval_ms);
    jw_close(w, '}');
}

static void json_warm(struct jw *w, const struct summary *sm)
{
    jw_open(w, "warm", '{');
    jw_int(w, "n", (long long)sm->n);
    jw_num(w, "ttft_min_ms", sm->min);
    jw_num(w, "ttft_p50_ms", sm->p50);
    jw_num(w, "ttft_p95_ms", sm->p95);
    jw_num(w, "ttft_max_ms", sm->max);
    jw_num(w, "ttft_mean_ms", sm->mean);
    jw_num(w, "ttft_stddev_ms", sm->stddev);
    jw_num(w, "max_min_ratio", sm->min > 0 ? sm->max / sm->min : NAN);
    jw_close(w, '}');
}

static void json_timeline(struct jw *w, const struct ttft_repeat *rr)
{
    const struct ttft_req *cold = ttft_find_kind(rr, TTFT_KIND_COLD);
    mono_ns t0 = rr->tl.t_launch_ns;
    jw_open(w, "timeline_ms", '{');
    jw_num(w, "launch", t0 ? 0.0 : NAN);
    jw_num(w, "port_open", ttft_rel_ms(rr->tl.t_port_open_ns, t0));
    jw_num(w, "health_ok", ttft_rel_ms(rr->tl.t_health_ok_ns, t0));
    jw_num(w, "ready", ttft_rel_ms(rr->tl.t_models_ok_ns, t0));
    jw_num(w, "cold_sent", cold ? ttft_rel_ms(cold->rec.t_sent_ns, t0) : NAN);
    jw_num(w, "cold_first_token", cold ? ttft_rel_ms(cold->rec.t_first_token_ns, t0) : NAN);
    jw_num(w, "cold_done", cold ? ttft_rel_ms(cold->rec.t_done_ns, t0) : NAN);
    jw_num(w, "stop_sent", ttft_rel_ms(rr->tl.t_stop_ns, t0));
    jw_num(w, "stopped", ttft_rel_ms(rr->tl.t_stopped_ns, t0));
    jw_close(w, '}');
}

static void json_phases(struct jw *w, const struct ttft_repeat *rr)
{
    jw_open(w, "phases_s", '{');
    for (int ph = 0; ph < STARTUP_PHASE__COUNT; ph++)
        jw_num(w, startup_phase_str((enum startup_phase)ph),
               rr->have_startup ? rr->startup.phase_s[ph] : NAN);
    jw_close(w, '}');
    jw_open(w, "phase_sources", '{');
    for (int ph = 0; ph < STARTUP_PHASE__COUNT; ph++)
        jw_str(w, startup_phase_str((enum startup_phase)ph),
               rr->have_startup ? startup_phase_source_str(rr->startup.phase_source[ph]) : "none");
    jw_close(w, '}');
    jw_open(w, "log_timeline", '[');
    for (int i = 0; rr->have_startup && i < rr->startup.n_timeline; i++) {
        const struct startup_line *l = &rr->startup.timeline[i];
        jw_open(w, NULL, '{');
        jw_num(w, "t_first_s", l->t_first_s);
        jw_num(w, "t_last_s", l->t_last_s);
        jw_int(w, "n_seen", l->n_seen);
        jw_bool(w, "recognised", l->recognised);
        jw_str(w, "line", l->text);
        jw_close(w, '}');
    }
    jw_close(w, ']');
    jw_str(w, "log_dialect", rr->have_startup ? logparse_server_str(rr->startup.server) : NULL);
    jw_count(w, "kv_cache_tokens", rr->have_startup ? rr->startup.kv_cache_tokens : -1);
}

static void json_telemetry(struct jw *w, const struct ttft_repeat *rr)
{
    jw_open(w, "telemetry", '{');
    jw_num(w, "gpu_mem_before_launch_mib", ttft_mib(rr->gpu_mem_before_bytes));
    jw_num(w, "gpu_mem_after_cold_mib", ttft_mib(rr->gpu_mem_after_cold_bytes));
    jw_num(w, "gpu_util_warm_pct", rr->gpu_util_warm_pct);
    jw_num(w, "server_cpu_cold_pct", rr->cpu_cold_pct);
    jw_num(w, "server_cpu_warm_pct", rr->cpu_warm_pct);
    jw_num(w, "server_rss_ready_mib", ttft_mib(rr->rss_ready_bytes));
    jw_num(w, "server_rss_max_mib", ttft_mib(rr->rss_max_bytes));
    jw_num(w, "page_cache_before_mib", ttft_mib(rr->page_cache_before_bytes));
    jw_num(w, "page_cache_growth_startup_mib",
           rr->page_cache_before_bytes >= 0 && rr->page_cache_ready_bytes >= 0
               ? ttft_mib(rr->page_cache_ready_bytes) - ttft_mib(rr->page_cache_before_bytes)
               : NAN);
    jw_num(w, "page_cache_after_mib", ttft_mib(rr->page_cache_after_bytes));
    jw_num(w, "server_read_startup_mib", ttft_mib(rr->read_bytes_ready));
    jw_num(w, "server_read_total_mib", ttft_mib(rr->read_bytes_end));
    jw_close(w, '}');
}

static void json_request(struct jw *w, const struct ttft_req *q)
{
    const struct request_record *r = &q->rec;
    jw_open(w, NULL, '{');
    jw_str(w, "run", r->tag);
    jw_str(w, "kind", ttft_kind_str(q->kind));
    jw_str(w, "status", r->error == REQ_ERROR_NONE ? "ok" : req_error_str(r->error));
    jw_str(w, "error_msg", r->error == REQ_ERROR_NONE ? NULL : r->error_msg);
    jw_num(w, "ttft_ms", ttft_rec_ttft_ms(r));
    jw_num(w, "e2e_ms", ttft_rec_e2e_ms(r));
    jw_num(w, "tpot_ms", record_tpot_ms(r));
    jw_count(w, "prompt_tokens", r->n_prompt_tokens);
    jw_count(w, "completion_tokens", r->n_completion_tokens);
    jw_count(w, "cached_tokens", r->n_cached_tokens);
    jw_close(w, '}');
}

static void json_errors(struct jw *w, const int *n_err_class)
{
    jw_open(w, "errors", '{');
    for (int e = REQ_ERROR_NONE + 1; e < REQ_ERROR__COUNT; e++)
        jw_int(w, req_error_str((enum req_error)e), n_err_class[e]);
    jw_close(w, '}');
}

static void json_repeat(struct jw *w, const struct ttft_result *res, const struct ttft_repeat *rr)
{
    const struct ttft_req *cold = ttft_find_kind(rr, TTFT_KIND_COLD);
    int cold_ok = cold && cold->rec.error == REQ_ERROR_NONE;
    struct summary sm;
    ttft_warm_summary(rr, &sm);
    double cold_ms = ttft_cold_ttft_ms(rr);
    char ex[96];
    jw_open(w, NULL, '{');
    jw_int(w, "repeat", rr->index);
    jw_str(w, "start_status", target_status_str(rr->start_status));
    jw_str(w, "start_error", rr->start_err[0] ? rr->start_err : NULL);
    jw_bool(w, "ready", rr->ready);
    jw_bool(w, "died", rr->died);
    jw_str(w, "exit", rr->died ? target_exit_str(&rr->exit, ex, sizeof ex) : NULL);
    jw_bool(w, "killed_after_grace", rr->stop.killed);
    jw_str(w, "server_cmdline", res->url_mode ? NULL : rr->cmdline);
    jw_str(w, "server_version", rr->version[0] ? rr->version : NULL);
    jw_str(w, "log_path", res->url_mode ? NULL : rr->log_path);
    jw_num(w, "launch_to_ready_ms", res->url_mode ? NAN : ttft_ready_ms(rr));
    jw_num(w, "cold_ttft_ms", cold_ms);
    jw_num(w, "cold_e2e_ms", cold_ok ? ttft_rec_e2e_ms(&cold->rec) : NAN);
    jw_num(w, "launch_to_first_token_ms",
           cold_ok ? ttft_rel_ms(cold->rec.t_first_token_ns, rr->tl.t_launch_ns) : NAN);
    jw_num(w, "cold_warm_factor", sm.p50 > 0 ? cold_ms / sm.p50 : NAN);
    json_warm(w, &sm);
    json_timeline(w, rr);
    json_phases(w, rr);
    json_telemetry(w, rr);
    json_errors(w, rr->n_err_class);
    jw_open(w, "requests", '[');
    for (size_t i = 0; i < rr->n_reqs; i++)
        json_request(w, &rr->reqs[i]);
    jw_close(w, ']');
    jw_close(w, '}');
}

/* Headline numbers of launch 1 and the errors of every launch. */
static void json_summary(struct jw *w, const struct ttft_result *res)
{
    const struct ttft_repeat *r0 = res->n_reps ? &res->reps[0] : NULL;
    struct summary sm = {.n = 0, .p50 = NAN, .p95 = NAN};
    if (r0)
        ttft_warm_summary(r0, &sm);
    double cold = r0 ? ttft_cold_ttft_ms(r0) : NAN;
    jw_open(w, "summary", '{');
    jw_num(w, "cold_ttft_ms", cold);
    jw_num(w, "warm_ttft_p50_ms", sm.p50);
    jw_num(w, "warm_ttft_p95_ms", sm.p95);
    jw_int(w, "n_warm", (long long)sm.n);
    jw_num(w, "cold_warm_factor", sm.p50 > 0 ? cold / sm.p50 : NAN);
    jw_num(w, "launch_to_ready_ms", r0 && !res->url_mode ? ttft_ready_ms(r0) : NAN);
    jw_num(w, "max_events_per_s", res->max_events_per_s);
    jw_str(w, "client_ceiling_warning", res->ceiling_msg[0] ? res->ceiling_msg : NULL);
    jw_close(w, '}');
    int n_err[REQ_ERROR__COUNT] = {0};
    for (int k = 0; k < res->n_reps; k++)
        for (int e = 0; e < REQ_ERROR__COUNT; e++)
            n_err[e] += res->reps[k].n_err_class[e];
    json_errors(w, n_err);
}

int ttft_json_write(const struct ttft_result *res, const char *path, char *err, size_t err_len)
{
    struct buf b;
    buf_init(&b, 1 << 14, TTFT_JSON_MAX_BYTES);
    struct jw w = {.b = &b};
    jw_open(&w, NULL, '{');
    jw_str(&w, "schema", TTFT_JSON_SCHEMA);
    jw_str(&w, "status", ttft_status_str(res));
    jw_str(&w, "fail_reason", res->failed && res->fail_msg[0] ? res->fail_msg : NULL);
    json_config(&w, res);
    json_environment(&w, res);
    json_summary(&w, res);
    jw_open(&w, "repeats", '[');
    for (int k = 0; k < res->n_reps; k++)
        json_repeat(&w, res, &res->reps[k]);
    jw_close(&w, ']');
    jw_close(&w, '}');
    w.bad |= buf_putc(&b, '\n') != BUF_OK;
    int rc = 0;
    if (w.bad) {
        snprintf(err, err_len, "%s: larger than %zu bytes", path, TTFT_JSON_MAX_BYTES);
        rc = -1;
    } else if (file_write_all(path, b.data, b.len) != 0) {
        snprintf(err, err_len, "%s: cannot write", path);
        rc = -1;
    }
    buf_free(&b);
    return rc;
}
