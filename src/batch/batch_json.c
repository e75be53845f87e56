/* batch_json: batch.json, the machine-readable result of `slmprobe batch` in the schema
 * slmprobe.batch/1 (docs/schema.md): config, environment, outcome, per-level numbers with units in
 * the key names, the knee as {"concurrency": N, "reason": "..."} (null when the sweep did not
 * reach one), sweet spot, peak, SLO limit, rules, open loop and errors by class. It is written
 * from the struct batch_result, not from the Markdown document; it computes nothing. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "batch/batch.h"
#include "util/buf.h"

/* A minimal nesting-aware emitter over buf (commas and keys); values via buf_json_*. */
struct jw {
    struct buf *b;
    int n_items[16]; /* items written at each depth */
    int depth;
};

static void jw_sep(struct jw *j, const char *key)
{
    if (j->n_items[j->depth]++)
        buf_putc(j->b, ',');
    if (key) {
        buf_json_str(j->b, key);
        buf_putc(j->b, ':');
    }
}

static void jw_open(struct jw *j, const char *key, char c)
{
    jw_sep(j, key);
    buf_putc(j->b, c);
    j->n_items[++j->depth] = 0;
}

static void jw_close(struct jw *j, char c)
{
    j->depth--;
    buf_putc(j->b, c);
}

static void jw_num(struct jw *j, const char *key, double v)
{
    jw_sep(j, key);
    if (isfinite(v))
        buf_json_double(j->b, v);
    else
        buf_puts(j->b, "null");
}

static void jw_str(struct jw *j, const char *key, const char *s)
{
    jw_sep(j, key);
    if (s)
        buf_json_str(j->b, s);
    else
        buf_puts(j->b, "null");
}

static void jw_bool(struct jw *j, const char *key, int v)
{
    jw_sep(j, key);
    buf_puts(j->b, v ? "true" : "false");
}

static void jw_null(struct jw *j, const char *key)
{
    jw_sep(j, key);
    buf_puts(j->b, "null");
}

static void json_summary(struct jw *j, const char *key, const struct summary *s)
{
    jw_open(j, key, '{');
    jw_num(j, "n", (double)s->n);
    jw_num(j, "mean", s->mean);
    jw_num(j, "p50", s->p50);
    jw_num(j, "p90", s->p90);
    jw_num(j, "p95", s->p95);
    jw_num(j, "p99", s->p99);
    jw_num(j, "min", s->min);
    jw_num(j, "max", s->max);
    jw_close(j, '}');
}

static void json_errors(struct jw *j, const struct batch_level *ls)
{
    jw_open(j, "errors_by_class", '{');
    for (int e = 1; e < REQ_ERROR__COUNT; e++) {
        if (!ls->n_err_class[e])
            continue;
        jw_open(j, req_error_str(e), '{');
        jw_num(j, "count", ls->n_err_class[e]);
        jw_str(j, "first_message", ls->err_msg[e][0] ? ls->err_msg[e] : NULL);
        jw_close(j, '}');
    }
    jw_close(j, '}');
}

/* Every metric of one level; load_key is "concurrency" or "rate_rps". */
static void json_level(struct jw *j, const char *key, const struct batch_level *ls,
                       const char *load_key, int open_loop, const char *warning)
{
    jw_open(j, key, '{');
    jw_num(j, load_key, ls->load);
    jw_bool(j, "complete", ls->complete);
    jw_num(j, "n_requests", ls->n_sent);
    jw_num(j, "n_ok", ls->n_ok);
    jw_num(j, "n_errors", ls->n_err);
    jw_num(j, "n_no_usage", ls->n_no_usage);
    jw_num(j, "window_s", ls->duration_s);
    jw_num(j, "qps", ls->qps);
    jw_num(j, "tok_s", ls->tok_s);
    jw_num(j, "total_tok_s", ls->total_tok_s);
    jw_num(j, "inflight_mean", ls->inflight_mean);
    json_summary(j, "e2e_ms", &ls->e2e_ms);
    json_summary(j, "ttft_ms", &ls->ttft_ms);
    json_summary(j, "itl_ms", &ls->itl_ms);
    json_summary(j, "tpot_ms", &ls->tpot_ms);
    if (open_loop) {
        json_summary(j, "e2e_intended_ms", &ls->e2e_int_ms);
        json_summary(j, "ttft_intended_ms", &ls->ttft_int_ms);
        json_summary(j, "queue_delay_ms", &ls->qdelay_ms);
        jw_num(j, "scheduled_rate_rps", ls->offered_rate_rps);
        jw_num(j, "send_rate_rps", ls->send_rate_rps);
        jw_str(j, "not_sustained", warning && warning[0] ? warning : NULL);
    }
    jw_num(j, "prompt_tokens_mean", ls->prompt_tok_mean);
    jw_num(j, "prompt_tokens_min", ls->prompt_tok_min);
    jw_num(j, "prompt_tokens_max", ls->prompt_tok_max);
    jw_num(j, "output_tokens_mean", ls->out_tok_mean);
    jw_num(j, "goodput_frac", ls->goodput_frac);
    jw_num(j, "goodput_rps", ls->goodput_rps);
    jw_num(j, "gpu_util_mean_pct", ls->gpu_available ? ls->gpu_util_mean_pct : NAN);
    jw_num(j, "gpu_util_max_pct", ls->gpu_available ? ls->gpu_util_max_pct : NAN);
    jw_num(j, "gpu_mem_max_gib", ls->gpu_available ? ls->gpu_mem_max_gib : NAN);
    jw_str(j, "gpu_reason", ls->gpu_available ? NULL : ls->gpu_reason);
    jw_num(j, "cpu_mean_pct", ls->cpu_mean_pct);
    jw_num(j, "cpu_max_pct", ls->cpu_max_pct);
    jw_num(j, "metrics_scrapes", ls->sw.n);
    jw_num(j, "waiting_mean", ls->sw.has_waiting ? ls->sw.waiting_mean : NAN);
    jw_num(j, "waiting_max", ls->sw.has_waiting ? ls->sw.waiting_max : NAN);
    jw_num(j, "running_mean", ls->sw.has_running ? ls->sw.running_mean : NAN);
    jw_num(j, "running_max", ls->sw.has_running ? ls->sw.running_max : NAN);
    jw_num(j, "kv_usage_max_pct", ls->sw.has_kv_usage ? 100.0 * ls->sw.kv_usage_max : NAN);
    if (!open_loop) {
        jw_num(j, "repeats", ls->n_repeats);
        jw_num(j, "repeats_cut", ls->n_repeats_cut);
        jw_num(j, "tok_s_min", ls->tok_s_min);
        jw_num(j, "tok_s_max", ls->tok_s_max);
        jw_num(j, "p95_e2e_min_s", ls->p95_e2e_min_s);
        jw_num(j, "p95_e2e_max_s", ls->p95_e2e_max_s);
    }
    json_errors(j, ls);
    jw_close(j, '}');
}

static void json_config(struct jw *j, const struct batch_result *res)
{
    const struct batch_opts *o = &res->opts;
    jw_open(j, "config", '{');
    jw_open(j, "modes", '[');
    if (o->do_seqconc)
        jw_str(j, NULL, "seqconc");
    if (o->do_sweep)
        jw_str(j, NULL, "sweep");
    if (o->do_open)
        jw_str(j, NULL, "open");
    jw_close(j, ']');
    jw_num(j, "num_requests", o->num_requests);
    jw_open(j, "concurrency", '[');
    for (int i = 0; i < o->n_conc; i++)
        jw_num(j, NULL, o->conc[i]);
    jw_close(j, ']');
    jw_num(j, "requests_per_level", o->requests ? o->requests : NAN);
    jw_num(j, "rounds", o->rounds);
    jw_num(j, "duration_s", o->duration_s > 0 ? o->duration_s : NAN);
    jw_num(j, "warmup_requests", o->warmup >= 0 ? o->warmup : NAN);
    jw_num(j, "repeat", o->repeat);
    jw_open(j, "rates_rps", '[');
    for (int i = 0; i < o->n_rates; i++)
        jw_num(j, NULL, o->rates[i]);
    jw_close(j, ']');
    jw_num(j, "burstiness", o->burstiness);
    jw_num(j, "max_concurrency", o->max_concurrency ? o->max_concurrency : NAN);
    jw_num(j, "input_len_tokens", o->prompt_file ? NAN : o->input_len);
    jw_num(j, "input_len_range", o->input_len_range);
    jw_num(j, "output_len_tokens", o->output_len);
    jw_str(j, "prompt_file", o->prompt_file);
    jw_num(j, "seed", (double)o->seed);
    jw_open(j, "slo", '{');
    jw_num(j, "ttft_ms", o->slo.ttft_ms);
    jw_num(j, "tpot_ms", o->slo.tpot_ms);
    jw_num(j, "e2e_ms", o->slo.e2e_ms);
    jw_close(j, '}');
    jw_num(j, "slo_attainment", o->slo_attainment);
    jw_num(j, "knee_threshold", o->knee_threshold);
    jw_num(j, "metrics_interval_ms", o->metrics_interval_ms);
    jw_close(j, '}');
}

static void json_environment(struct jw *j, const struct batch_result *res)
{
    const struct batch_server *sv = &res->server;
    jw_open(j, "environment", '{');
    jw_str(j, "server_kind", sv->kind);
    jw_bool(j, "launched", sv->launched);
    jw_str(j, "base_url", sv->base_url);
    jw_str(j, "model", res->model[0] ? res->model : NULL);
    jw_str(j, "server_version", sv->version[0] ? sv->version : NULL);
    jw_num(j, "max_model_len_tokens", sv->max_model_len > 0 ? sv->max_model_len : NAN);
    jw_num(j, "server_pid", sv->launched ? sv->pid : NAN);
    jw_str(j, "server_log", sv->log_path[0] ? sv->log_path : NULL);
    jw_str(j, "server_end", sv->end[0] ? sv->end : NULL);
    jw_str(j, "workload", res->workload_desc);
    jw_str(j, "metrics_note", res->metrics_note[0] ? res->metrics_note : NULL);
    jw_close(j, '}');
}

/* {"concurrency": N, ...} of knee level i (the key given), or null when i < 0. */
static void json_point(struct jw *j, const char *key, const struct batch_result *res, int i,
                       const char *reason)
{
    if (i < 0 || i >= res->n_kl) {
        jw_null(j, key);
        return;
    }
    jw_open(j, key, '{');
    jw_num(j, "concurrency", res->kl[i].load);
    jw_num(j, "tok_s", res->kl[i].tok_s);
    jw_num(j, "p95_e2e_s", res->kl[i].p95_e2e_s);
    if (reason)
        jw_str(j, "reason", reason);
    jw_close(j, '}');
}

static void json_sweep(struct jw *j, const struct batch_result *res)
{
    jw_open(j, "sweep", '[');
    for (int i = 0; i < res->n_sweep; i++)
        json_level(j, NULL, &res->sweep[i], "concurrency", 0, NULL);
    jw_close(j, ']');
    const struct knee_result *kr = &res->kr;
    char reason[512];
    snprintf(reason, sizeof reason, "%s: %s", knee_reason_str(kr->reason), kr->summary);
    json_point(j, "knee", res, kr->knee_reached ? kr->i_knee : -1, reason);
    jw_str(j, "knee_summary", res->n_sweep ? kr->summary : NULL);
    json_point(j, "sweet_spot", res, kr->i_sweet, NULL);
    json_point(j, "peak", res, kr->i_peak, NULL);
    json_point(j, "slo_limit", res, kr->i_slo_max, NULL);
    jw_open(j, "rules", '[');
    for (int i = 0; i < res->rules.n; i++)
        jw_str(j, NULL, res->rules.text[i]);
    jw_close(j, ']');
}

static void json_body(struct jw *j, const struct batch_result *res)
{
    jw_open(j, NULL, '{');
    jw_str(j, "schema", BATCH_SCHEMA);
    jw_str(j, "slmprobe_version", SLMPROBE_VERSION);
    jw_str(j, "started_at", res->started_at);
    jw_str(j, "command", res->command_line);
    json_config(j, res);
    json_environment(j, res);
    jw_open(j, "outcome", '{');
    jw_str(j, "status", res->interrupted ? "interrupted" : res->failed ? "failed" : "ok");
    jw_str(j, "failure", res->failure[0] ? res->failure : NULL);
    jw_close(j, '}');
    if (res->have_seqconc) {
        jw_open(j, "seqconc", '{');
        json_level(j, "sequential", &res->seq, "concurrency", 0, NULL);
        json_level(j, "concurrent", &res->conc, "concurrency", 0, NULL);
        jw_num(j, "sequential_s", res->seq.duration_s);
        jw_num(j, "concurrent_s", res->conc.duration_s);
        jw_num(j, "speedup", res->seq.duration_s / res->conc.duration_s);
        jw_close(j, '}');
    } else {
        jw_null(j, "seqconc");
    }
    json_sweep(j, res);
    jw_open(j, "open_loop", '[');
    for (int i = 0; i < res->n_open; i++)
        json_level(j, NULL, &res->open[i], "rate_rps", 1, res->open_warn[i]);
    jw_close(j, ']');
    jw_close(j, '}');
    buf_putc(j->b, '\n');
}

int batch_json_write(const struct batch_result *res, const char *path, char *err, size_t err_len)
{
    struct buf b;
    buf_init(&b, 1 << 16, (size_t)64 << 20);
    struct jw j = {.b = &b};
    json_body(&j, res);
    int rc = 0;
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (file_write_all(tmp, b.data, b.len) != 0 || rename(tmp, path) != 0) {
        snprintf(err, err_len, "cannot write %s", path);
        rc = -1;
    }
    buf_free(&b);
    return rc;
}
