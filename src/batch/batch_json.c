/* batch_json: batch.json, the machine-readable result of `slmprobe batch` in the schema
 * slmprobe.batch/1 (docs/schema.md): config, environment, outcome, per-level numbers with units in
 * the key names, the knee as {"concurrency": N, "reason": "..."} (concurrency null when the sweep
 * did not reach one), sweet spot, peak, SLO limit, rules, open loop and errors by class, written
 * with report/jsonw.h. It is written from the struct batch_result, not from the Markdown
 * document; it computes nothing. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "batch/batch.h"
#include "report/jsonw.h"
#include "util/buf.h"

/* Opens an object or array as member key (NULL: an array element or the top level). */
static void open_in(struct jsonw *w, const char *key, char c)
{
    if (key)
        jsonw_key(w, key);
    if (c == '{')
        jsonw_object_begin(w);
    else
        jsonw_array_begin(w);
}

static void json_summary(struct jsonw *w, const char *key, const struct summary *s)
{
    open_in(w, key, '{');
    jsonw_key_int(w, "n", (long long)s->n);
    jsonw_key_num(w, "mean", s->mean);
    jsonw_key_num(w, "p50", s->p50);
    jsonw_key_num(w, "p90", s->p90);
    jsonw_key_num(w, "p95", s->p95);
    jsonw_key_num(w, "p99", s->p99);
    jsonw_key_num(w, "min", s->min);
    jsonw_key_num(w, "max", s->max);
    jsonw_object_end(w);
}

/* Rule 4 of docs/schema.md: every class counted (0 when none); the first message of each class
 * that happened under error_messages. */
static void json_errors(struct jsonw *w, const struct batch_level *ls)
{
    open_in(w, "errors", '{');
    for (int e = REQ_ERROR_NONE + 1; e < REQ_ERROR__COUNT; e++)
        jsonw_key_int(w, req_error_str((enum req_error)e), ls->n_err_class[e]);
    jsonw_object_end(w);
    open_in(w, "error_messages", '{');
    for (int e = REQ_ERROR_NONE + 1; e < REQ_ERROR__COUNT; e++)
        if (ls->n_err_class[e] && ls->err_msg[e][0])
            jsonw_key_str(w, req_error_str((enum req_error)e), ls->err_msg[e]);
    jsonw_object_end(w);
}

/* Every metric of one level; load_key is "concurrency" or "rate_rps". */
static void json_level(struct jsonw *w, const char *key, const struct batch_level *ls,
                       const char *load_key, int open_loop, const char *warning)
{
    open_in(w, key, '{');
    jsonw_key_num(w, load_key, ls->load);
    jsonw_key_bool(w, "complete", ls->complete);
    jsonw_key_int(w, "n_requests", ls->n_sent);
    jsonw_key_int(w, "n_ok", ls->n_ok);
    jsonw_key_int(w, "n_errors", ls->n_err);
    jsonw_key_int(w, "n_no_usage", ls->n_no_usage);
    jsonw_key_num(w, "window_s", ls->duration_s);
    jsonw_key_num(w, "qps", ls->qps);
    jsonw_key_num(w, "tok_s", ls->tok_s);
    jsonw_key_num(w, "total_tok_s", ls->total_tok_s);
    jsonw_key_num(w, "inflight_mean", ls->inflight_mean);
    json_summary(w, "e2e_ms", &ls->e2e_ms);
    json_summary(w, "ttft_ms", &ls->ttft_ms);
    json_summary(w, "itl_ms", &ls->itl_ms);
    json_summary(w, "tpot_ms", &ls->tpot_ms);
    if (open_loop) {
        json_summary(w, "e2e_intended_ms", &ls->e2e_int_ms);
        json_summary(w, "ttft_intended_ms", &ls->ttft_int_ms);
        json_summary(w, "queue_delay_ms", &ls->qdelay_ms);
        jsonw_key_num(w, "scheduled_rate_rps", ls->offered_rate_rps);
        jsonw_key_num(w, "send_rate_rps", ls->send_rate_rps);
        jsonw_key_str(w, "not_sustained", warning && warning[0] ? warning : NULL);
    }
    jsonw_key_num(w, "prompt_tokens_mean", ls->prompt_tok_mean);
    jsonw_key_num(w, "prompt_tokens_min", ls->prompt_tok_min);
    jsonw_key_num(w, "prompt_tokens_max", ls->prompt_tok_max);
    jsonw_key_num(w, "output_tokens_mean", ls->out_tok_mean);
    jsonw_key_num(w, "goodput_frac", ls->goodput_frac);
    jsonw_key_num(w, "goodput_rps", ls->goodput_rps);
    jsonw_key_num(w, "gpu_util_mean_pct", ls->gpu_available ? ls->gpu_util_mean_pct : NAN);
    jsonw_key_num(w, "gpu_util_max_pct", ls->gpu_available ? ls->gpu_util_max_pct : NAN);
    jsonw_key_num(w, "gpu_mem_max_gib", ls->gpu_available ? ls->gpu_mem_max_gib : NAN);
    jsonw_key_str(w, "gpu_reason", ls->gpu_available ? NULL : ls->gpu_reason);
    jsonw_key_num(w, "cpu_mean_pct", ls->cpu_mean_pct);
    jsonw_key_num(w, "cpu_max_pct", ls->cpu_max_pct);
    jsonw_key_int(w, "metrics_scrapes", ls->sw.n);
    jsonw_key_num(w, "waiting_mean", ls->sw.has_waiting ? ls->sw.waiting_mean : NAN);
    jsonw_key_num(w, "waiting_max", ls->sw.has_waiting ? ls->sw.waiting_max : NAN);
    jsonw_key_num(w, "running_mean", ls->sw.has_running ? ls->sw.running_mean : NAN);
    jsonw_key_num(w, "running_max", ls->sw.has_running ? ls->sw.running_max : NAN);
    jsonw_key_num(w, "kv_usage_max_pct", ls->sw.has_kv_usage ? 100.0 * ls->sw.kv_usage_max : NAN);
    if (!open_loop) {
        jsonw_key_int(w, "repeats", ls->n_repeats);
        jsonw_key_int(w, "repeats_cut", ls->n_repeats_cut);
        jsonw_key_num(w, "tok_s_min", ls->tok_s_min);
        jsonw_key_num(w, "tok_s_max", ls->tok_s_max);
        jsonw_key_num(w, "p95_e2e_min_s", ls->p95_e2e_min_s);
        jsonw_key_num(w, "p95_e2e_max_s", ls->p95_e2e_max_s);
    }
    json_errors(w, ls);
    jsonw_object_end(w);
}

static void json_config(struct jsonw *w, const struct batch_result *res)
{
    const struct batch_opts *o = &res->opts;
    open_in(w, "config", '{');
    open_in(w, "modes", '[');
    if (o->do_seqconc)
        jsonw_str(w, "seqconc");
    if (o->do_sweep)
        jsonw_str(w, "sweep");
    if (o->do_open)
        jsonw_str(w, "open");
    jsonw_array_end(w);
    jsonw_key_int(w, "num_requests", o->num_requests);
    open_in(w, "concurrency", '[');
    for (int i = 0; i < o->n_conc; i++)
        jsonw_int(w, o->conc[i]);
    jsonw_array_end(w);
    jsonw_key_num(w, "requests_per_level", o->requests ? o->requests : NAN);
    jsonw_key_int(w, "rounds", o->rounds);
    jsonw_key_num(w, "duration_s", o->duration_s > 0 ? o->duration_s : NAN);
    jsonw_key_num(w, "warmup_requests", o->warmup >= 0 ? o->warmup : NAN);
    jsonw_key_int(w, "repeat", o->repeat);
    open_in(w, "rates_rps", '[');
    for (int i = 0; i < o->n_rates; i++)
        jsonw_num(w, o->rates[i]);
    jsonw_array_end(w);
    jsonw_key_num(w, "burstiness", o->burstiness);
    jsonw_key_num(w, "max_concurrency", o->max_concurrency ? o->max_concurrency : NAN);
    jsonw_key_num(w, "input_len_tokens", o->prompt_file ? NAN : o->input_len);
    jsonw_key_num(w, "input_len_range", o->input_len_range);
    jsonw_key_int(w, "output_len_tokens", o->output_len);
    jsonw_key_str(w, "prompt_file", o->prompt_file);
    jsonw_key_int(w, "seed", (long long)o->seed);
    open_in(w, "slo", '{');
    jsonw_key_num(w, "ttft_ms", o->slo.ttft_ms);
    jsonw_key_num(w, "tpot_ms", o->slo.tpot_ms);
    jsonw_key_num(w, "e2e_ms", o->slo.e2e_ms);
    jsonw_object_end(w);
    jsonw_key_num(w, "slo_attainment", o->slo_attainment);
    jsonw_key_num(w, "knee_threshold", o->knee_threshold);
    jsonw_key_int(w, "metrics_interval_ms", o->metrics_interval_ms);
    jsonw_object_end(w);
}

static void json_environment(struct jsonw *w, const struct batch_result *res)
{
    const struct batch_server *sv = &res->server;
    open_in(w, "environment", '{');
    jsonw_key_str(w, "server_kind", sv->kind);
    jsonw_key_bool(w, "launched", sv->launched);
    jsonw_key_str(w, "base_url", sv->base_url);
    jsonw_key_str(w, "model", res->model[0] ? res->model : NULL);
    jsonw_key_str(w, "server_version", sv->version[0] ? sv->version : NULL);
    jsonw_key_num(w, "max_model_len_tokens", sv->max_model_len > 0 ? sv->max_model_len : NAN);
    jsonw_key_num(w, "server_pid", sv->launched ? sv->pid : NAN);
    jsonw_key_str(w, "server_log", sv->log_path[0] ? sv->log_path : NULL);
    jsonw_key_str(w, "server_end", sv->end[0] ? sv->end : NULL);
    jsonw_key_str(w, "workload", res->workload_desc);
    jsonw_key_str(w, "metrics_note", res->metrics_note[0] ? res->metrics_note : NULL);
    jsonw_object_end(w);
}

/* {"concurrency": N, "tok_s": ..., "p95_e2e_s": ...} of knee level i as member key, or null
 * when i < 0. */
static void json_point(struct jsonw *w, const char *key, const struct batch_result *res, int i)
{
    if (i < 0 || i >= res->n_kl) {
        jsonw_key_null(w, key);
        return;
    }
    open_in(w, key, '{');
    jsonw_key_num(w, "concurrency", res->kl[i].load);
    jsonw_key_num(w, "tok_s", res->kl[i].tok_s);
    jsonw_key_num(w, "p95_e2e_s", res->kl[i].p95_e2e_s);
    jsonw_object_end(w);
}

/* Rule 5 of docs/schema.md: {"concurrency": N or null, "reason": "..."}. */
static void json_knee(struct jsonw *w, const struct batch_result *res)
{
    const struct knee_result *kr = &res->kr;
    int i = kr->knee_reached && kr->i_knee >= 0 && kr->i_knee < res->n_kl ? kr->i_knee : -1;
    char reason[512];
    if (res->n_sweep)
        snprintf(reason, sizeof reason, "%s: %s", knee_reason_str(kr->reason), kr->summary);
    else
        snprintf(reason, sizeof reason, "no sweep ran");
    open_in(w, "knee", '{');
    if (i >= 0)
        jsonw_key_int(w, "concurrency", lround(res->kl[i].load));
    else
        jsonw_key_null(w, "concurrency");
    jsonw_key_str(w, "reason", reason);
    jsonw_key_num(w, "tok_s", i >= 0 ? res->kl[i].tok_s : NAN);
    jsonw_key_num(w, "p95_e2e_s", i >= 0 ? res->kl[i].p95_e2e_s : NAN);
    jsonw_object_end(w);
}

static void json_sweep(struct jsonw *w, const struct batch_result *res)
{
    open_in(w, "sweep", '[');
    for (int i = 0; i < res->n_sweep; i++)
        json_level(w, NULL, &res->sweep[i], "concurrency", 0, NULL);
    jsonw_array_end(w);
    const struct knee_result *kr = &res->kr;
    json_knee(w, res);
    jsonw_key_str(w, "knee_summary", res->n_sweep ? kr->summary : NULL);
    json_point(w, "sweet_spot", res, kr->i_sweet);
    json_point(w, "peak", res, kr->i_peak);
    json_point(w, "slo_limit", res, kr->i_slo_max);
    open_in(w, "rules", '[');
    for (int i = 0; i < res->rules.n; i++)
        jsonw_str(w, res->rules.text[i]);
    jsonw_array_end(w);
}

static void json_body(struct jsonw *w, const struct batch_result *res)
{
    open_in(w, NULL, '{');
    jsonw_key_str(w, "schema", BATCH_SCHEMA);
    jsonw_key_str(w, "slmprobe_version", SLMPROBE_VERSION);
    jsonw_key_str(w, "started_at", res->started_at);
    jsonw_key_str(w, "command", res->command_line);
    json_config(w, res);
    json_environment(w, res);
    open_in(w, "outcome", '{');
    jsonw_key_str(w, "status", res->interrupted ? "interrupted" : res->failed ? "failed" : "ok");
    jsonw_key_str(w, "failure", res->failure[0] ? res->failure : NULL);
    jsonw_object_end(w);
    if (res->have_seqconc) {
        open_in(w, "seqconc", '{');
        json_level(w, "sequential", &res->seq, "concurrency", 0, NULL);
        json_level(w, "concurrent", &res->conc, "concurrency", 0, NULL);
        jsonw_key_num(w, "sequential_s", res->seq.duration_s);
        jsonw_key_num(w, "concurrent_s", res->conc.duration_s);
        jsonw_key_num(w, "speedup", res->seq.duration_s / res->conc.duration_s);
        jsonw_object_end(w);
    } else {
        jsonw_key_null(w, "seqconc");
    }
    json_sweep(w, res);
    open_in(w, "open_loop", '[');
    for (int i = 0; i < res->n_open; i++)
        json_level(w, NULL, &res->open[i], "rate_rps", 1, res->open_warn[i]);
    jsonw_array_end(w);
    jsonw_object_end(w);
}

int batch_json_write(const struct batch_result *res, const char *path, char *err, size_t err_len)
{
    struct jsonw w;
    jsonw_init(&w, (size_t)64 << 20, 1);
    json_body(&w, res);
    enum jsonw_status st = jsonw_write_file(&w, path, err, err_len);
    jsonw_free(&w);
    return st == JSONW_OK ? 0 : -1;
}
