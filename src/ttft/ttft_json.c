/* ttft_json: writes a ttft_result as OUT/ttft.json in schema slmprobe.ttft/1 (docs/schema.md):
 * config, environment, a summary, per-repeat numbers (timeline, phases, telemetry, warm
 * statistics) and every request, with units in every key name and unknown values as null. It
 * is a data file, not a rendering of the Markdown report, and it computes nothing the report
 * does not (the numbers come from the same accessors in ttft_result.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "report/jsonw.h"
#include "ttft/ttft.h"

#define TTFT_JSON_MAX_BYTES ((size_t)256 << 20)

/* v < 0: null (unknown) */
static void key_count(struct jsonw *w, const char *key, long long v)
{
    if (v < 0)
        jsonw_key_null(w, key);
    else
        jsonw_key_int(w, key, v);
}

static void key_object(struct jsonw *w, const char *key)
{
    jsonw_key(w, key);
    jsonw_object_begin(w);
}

static void key_array(struct jsonw *w, const char *key)
{
    jsonw_key(w, key);
    jsonw_array_begin(w);
}

static void json_config(struct jsonw *w, const struct ttft_result *res)
{
    const struct probe_opts *po = res->s->po;
    const struct target_config *tc = &po->target;
    key_object(w, "config");
    jsonw_key_str(w, "server_kind", target_kind_str(tc->kind));
    jsonw_key_str(w, "model", tc->model);
    jsonw_key_str(w, "url", tc->url);
    jsonw_key_bool(w, "url_mode", res->url_mode);
    jsonw_key_str(w, "api", client_api_str(po->api));
    jsonw_key_int(w, "warm_runs", res->opt.warm_runs);
    jsonw_key_num(w, "idle_gap_s", res->opt.idle_gap_s);
    jsonw_key_int(w, "repeat", res->opt.repeat);
    jsonw_key_int(w, "prompt_len_tokens", res->opt.prompt_len);
    jsonw_key_int(w, "max_tokens", res->opt.max_tokens);
    jsonw_key_bool(w, "drop_caches", tc->drop_caches);
    jsonw_key_bool(w, "cold_storage", tc->cold_storage);
    jsonw_key_str(w, "workload", res->workload);
    key_count(w, "model_file_bytes", res->model_file_bytes);
    jsonw_key_str(w, "command_line", res->s->command_line);
    jsonw_object_end(w);
}

static void json_environment(struct jsonw *w, const struct ttft_result *res)
{
    const struct session *s = res->s;
    key_object(w, "environment");
    jsonw_key_str(w, "slmprobe_version", SLMPROBE_VERSION);
    jsonw_key_str(w, "started_at", s->started_at);
    jsonw_key_str(w, "cpu_model", s->have_host ? s->host.cpu_model : NULL);
    key_count(w, "n_cpus", s->have_host ? s->host.n_cpus : -1);
    key_count(w, "mem_total_bytes", s->have_host ? (long long)s->host.mem_total_bytes : -1);
    jsonw_key_str(w, "os", s->have_host ? s->host.os : NULL);
    jsonw_key_str(w, "kernel", s->have_host ? s->host.kernel : NULL);
    jsonw_key_bool(w, "gpus_available", s->gpus.available);
    jsonw_key_str(w, "gpus_reason", s->gpus.available ? NULL : s->gpus.reason);
    key_array(w, "gpus");
    for (int i = 0; s->gpus.available && i < s->gpus.n_gpus; i++) {
        jsonw_object_begin(w);
        jsonw_key_str(w, "name", s->gpus.gpu[i].name);
        key_count(w, "mem_total_bytes", s->gpus.gpu[i].mem_total_bytes);
        jsonw_object_end(w);
    }
    jsonw_array_end(w);
    jsonw_key_int(w, "sample_interval_ms", s->sample_interval_ms);
    jsonw_key_str(w, "client_calibration", s->ceiling_note);
    jsonw_object_end(w);
}

static void json_warm(struct jsonw *w, const struct summary *sm)
{
    key_object(w, "warm");
    jsonw_key_int(w, "n", (long long)sm->n);
    jsonw_key_num(w, "ttft_min_ms", sm->min);
    jsonw_key_num(w, "ttft_p50_ms", sm->p50);
    jsonw_key_num(w, "ttft_p95_ms", sm->p95);
    jsonw_key_num(w, "ttft_max_ms", sm->max);
    jsonw_key_num(w, "ttft_mean_ms", sm->mean);
    jsonw_key_num(w, "ttft_stddev_ms", sm->stddev);
    jsonw_key_num(w, "max_min_ratio", sm->min > 0 ? sm->max / sm->min : NAN);
    jsonw_object_end(w);
}

static void json_timeline(struct jsonw *w, const struct ttft_repeat *rr)
{
    const struct ttft_req *cold = ttft_find_kind(rr, TTFT_KIND_COLD);
    mono_ns t0 = rr->tl.t_launch_ns;
    key_object(w, "timeline_ms");
    jsonw_key_num(w, "launch", t0 ? 0.0 : NAN);
    jsonw_key_num(w, "port_open", ttft_rel_ms(rr->tl.t_port_open_ns, t0));
    jsonw_key_num(w, "health_ok", ttft_rel_ms(rr->tl.t_health_ok_ns, t0));
    jsonw_key_num(w, "ready", ttft_rel_ms(rr->tl.t_models_ok_ns, t0));
    jsonw_key_num(w, "cold_sent", cold ? ttft_rel_ms(cold->rec.t_sent_ns, t0) : NAN);
    jsonw_key_num(w, "cold_first_token", cold ? ttft_rel_ms(cold->rec.t_first_token_ns, t0) : NAN);
    jsonw_key_num(w, "cold_done", cold ? ttft_rel_ms(cold->rec.t_done_ns, t0) : NAN);
    jsonw_key_num(w, "stop_sent", ttft_rel_ms(rr->tl.t_stop_ns, t0));
    jsonw_key_num(w, "stopped", ttft_rel_ms(rr->tl.t_stopped_ns, t0));
    jsonw_object_end(w);
}

static void json_phases(struct jsonw *w, const struct ttft_repeat *rr)
{
    key_object(w, "phases_s");
    for (int ph = 0; ph < STARTUP_PHASE__COUNT; ph++)
        jsonw_key_num(w, startup_phase_str((enum startup_phase)ph),
                      rr->have_startup ? rr->startup.phase_s[ph] : NAN);
    jsonw_object_end(w);
    key_object(w, "phase_sources");
    for (int ph = 0; ph < STARTUP_PHASE__COUNT; ph++)
        jsonw_key_str(w, startup_phase_str((enum startup_phase)ph),
                      rr->have_startup ? startup_phase_source_str(rr->startup.phase_source[ph])
                                       : "none");
    jsonw_object_end(w);
    key_array(w, "log_timeline");
    for (int i = 0; rr->have_startup && i < rr->startup.n_timeline; i++) {
        const struct startup_line *l = &rr->startup.timeline[i];
        jsonw_object_begin(w);
        jsonw_key_num(w, "t_first_s", l->t_first_s);
        jsonw_key_num(w, "t_last_s", l->t_last_s);
        jsonw_key_int(w, "n_seen", l->n_seen);
        jsonw_key_bool(w, "recognised", l->recognised);
        jsonw_key_str(w, "line", l->text);
        jsonw_object_end(w);
    }
    jsonw_array_end(w);
    jsonw_key_str(w, "log_dialect",
                  rr->have_startup ? logparse_server_str(rr->startup.server) : NULL);
    key_count(w, "kv_cache_tokens", rr->have_startup ? rr->startup.kv_cache_tokens : -1);
}

static void json_telemetry(struct jsonw *w, const struct ttft_repeat *rr)
{
    key_object(w, "telemetry");
    jsonw_key_num(w, "gpu_mem_before_launch_mib", ttft_mib(rr->gpu_mem_before_bytes));
    jsonw_key_num(w, "gpu_mem_after_cold_mib", ttft_mib(rr->gpu_mem_after_cold_bytes));
    jsonw_key_num(w, "gpu_util_warm_pct", rr->gpu_util_warm_pct);
    jsonw_key_num(w, "server_cpu_cold_pct", rr->cpu_cold_pct);
    jsonw_key_num(w, "server_cpu_warm_pct", rr->cpu_warm_pct);
    jsonw_key_num(w, "server_rss_ready_mib", ttft_mib(rr->rss_ready_bytes));
    jsonw_key_num(w, "server_rss_max_mib", ttft_mib(rr->rss_max_bytes));
    jsonw_key_num(w, "page_cache_before_mib", ttft_mib(rr->page_cache_before_bytes));
    jsonw_key_num(w, "page_cache_growth_startup_mib",
                  rr->page_cache_before_bytes >= 0 && rr->page_cache_ready_bytes >= 0
                      ? ttft_mib(rr->page_cache_ready_bytes) - ttft_mib(rr->page_cache_before_bytes)
                      : NAN);
    jsonw_key_num(w, "page_cache_after_mib", ttft_mib(rr->page_cache_after_bytes));
    jsonw_key_num(w, "server_read_startup_mib", ttft_mib(rr->read_bytes_ready));
    jsonw_key_num(w, "server_read_total_mib", ttft_mib(rr->read_bytes_end));
    jsonw_object_end(w);
}

/* Storage signals, the latency stack and the warm outliers of one launch. */
static void json_storage(struct jsonw *w, const struct ttft_result *res,
                         const struct ttft_repeat *rr)
{
    key_object(w, "storage");
    jsonw_key_str(w, "verdict", ttft_storage_str(ttft_storage_verdict(rr)));
    key_count(w, "model_bytes", rr->model_bytes);
    key_count(w, "model_resident_before_bytes", rr->model_resident_before_bytes);
    key_count(w, "model_resident_launch_bytes", rr->model_resident_launch_bytes);
    key_count(w, "model_resident_ready_bytes", rr->model_resident_ready_bytes);
    jsonw_key_bool(w, "cold_storage_done", rr->cold_storage_done);
    jsonw_key_bool(w, "cold_storage_effective", rr->cold_storage_effective);
    jsonw_key_str(w, "cold_storage_error", rr->cold_storage_err[0] ? rr->cold_storage_err : NULL);
    key_count(w, "read_bytes_ready", rr->read_bytes_ready);
    key_count(w, "majflt_ready", rr->majflt_ready);
    jsonw_object_end(w);
    struct ttft_stack st;
    ttft_stack_of(rr, res->url_mode, &st);
    key_object(w, "latency_stack_ms");
    jsonw_key_num(w, "load_weights", st.load_weights_ms);
    jsonw_key_num(w, "runtime_warmup", st.runtime_warmup_ms);
    jsonw_key_num(w, "other_startup", st.other_startup_ms);
    jsonw_key_num(w, "queueing", st.queueing_ms);
    jsonw_key_num(w, "first_prefill", st.first_prefill_ms);
    jsonw_key_num(w, "cold_total", st.cold_total_ms);
    jsonw_key_num(w, "warm_median", st.warm_median_ms);
    jsonw_key_bool(w, "logged_exceeds_measured", st.logged_exceeds);
    jsonw_object_end(w);
    key_array(w, "outliers");
    for (int i = 0; i < rr->n_outliers; i++) {
        const struct ttft_outlier *o = &rr->outliers[i];
        jsonw_object_begin(w);
        jsonw_key_int(w, "run", o->run);
        jsonw_key_str(w, "tag", o->tag);
        jsonw_key_num(w, "ttft_ms", o->ttft_ms);
        jsonw_key_num(w, "median_ms", o->median_ms);
        jsonw_key_num(w, "server_cpu_pct", o->cpu_pct);
        jsonw_key_num(w, "gpu_util_pct", o->gpu_util_pct);
        key_count(w, "majflt", o->majflt_delta);
        key_count(w, "read_bytes", o->read_bytes_delta);
        jsonw_key_str(w, "coincided", o->coincided);
        jsonw_object_end(w);
    }
    jsonw_array_end(w);
}

static void json_request(struct jsonw *w, const struct ttft_req *q)
{
    const struct request_record *r = &q->rec;
    jsonw_object_begin(w);
    jsonw_key_str(w, "run", r->tag);
    jsonw_key_str(w, "kind", ttft_kind_str(q->kind));
    jsonw_key_str(w, "status", r->error == REQ_ERROR_NONE ? "ok" : req_error_str(r->error));
    jsonw_key_str(w, "error_msg", r->error == REQ_ERROR_NONE ? NULL : r->error_msg);
    jsonw_key_num(w, "ttft_ms", ttft_rec_ttft_ms(r));
    jsonw_key_num(w, "e2e_ms", ttft_rec_e2e_ms(r));
    jsonw_key_num(w, "tpot_ms", record_tpot_ms(r));
    key_count(w, "prompt_tokens", r->n_prompt_tokens);
    key_count(w, "completion_tokens", r->n_completion_tokens);
    key_count(w, "cached_tokens", r->n_cached_tokens);
    jsonw_object_end(w);
}

static void json_errors(struct jsonw *w, const int *n_err_class)
{
    key_object(w, "errors");
    for (int e = REQ_ERROR_NONE + 1; e < REQ_ERROR__COUNT; e++)
        jsonw_key_int(w, req_error_str((enum req_error)e), n_err_class[e]);
    jsonw_object_end(w);
}

static void json_repeat(struct jsonw *w, const struct ttft_result *res,
                        const struct ttft_repeat *rr)
{
    const struct ttft_req *cold = ttft_find_kind(rr, TTFT_KIND_COLD);
    int cold_ok = cold && cold->rec.error == REQ_ERROR_NONE;
    struct summary sm;
    ttft_warm_summary(rr, &sm);
    double cold_ms = ttft_cold_ttft_ms(rr);
    char ex[96];
    jsonw_object_begin(w);
    jsonw_key_int(w, "repeat", rr->index);
    jsonw_key_str(w, "start_status", target_status_str(rr->start_status));
    jsonw_key_str(w, "start_error", rr->start_err[0] ? rr->start_err : NULL);
    jsonw_key_bool(w, "ready", rr->ready);
    jsonw_key_bool(w, "died", rr->died);
    jsonw_key_str(w, "exit", rr->died ? target_exit_str(&rr->exit, ex, sizeof ex) : NULL);
    jsonw_key_bool(w, "killed_after_grace", rr->stop.killed);
    jsonw_key_str(w, "server_cmdline", res->url_mode ? NULL : rr->cmdline);
    jsonw_key_str(w, "server_version", rr->version[0] ? rr->version : NULL);
    jsonw_key_str(w, "log_path", res->url_mode ? NULL : rr->log_path);
    jsonw_key_num(w, "launch_to_ready_ms", res->url_mode ? NAN : ttft_ready_ms(rr));
    jsonw_key_num(w, "cold_ttft_ms", cold_ms);
    jsonw_key_num(w, "cold_e2e_ms", cold_ok ? ttft_rec_e2e_ms(&cold->rec) : NAN);
    jsonw_key_num(w, "launch_to_first_token_ms",
                  cold_ok ? ttft_rel_ms(cold->rec.t_first_token_ns, rr->tl.t_launch_ns) : NAN);
    jsonw_key_num(w, "cold_warm_factor", sm.p50 > 0 ? cold_ms / sm.p50 : NAN);
    json_warm(w, &sm);
    json_timeline(w, rr);
    json_phases(w, rr);
    json_telemetry(w, rr);
    json_storage(w, res, rr);
    json_errors(w, rr->n_err_class);
    key_array(w, "requests");
    for (size_t i = 0; i < rr->n_reqs; i++)
        json_request(w, &rr->reqs[i]);
    jsonw_array_end(w);
    jsonw_object_end(w);
}

/* Headline numbers of launch 1 and the errors of every launch. */
static void json_summary(struct jsonw *w, const struct ttft_result *res)
{
    const struct ttft_repeat *r0 = res->n_reps ? &res->reps[0] : NULL;
    struct summary sm = {.n = 0, .p50 = NAN, .p95 = NAN};
    if (r0)
        ttft_warm_summary(r0, &sm);
    double cold = r0 ? ttft_cold_ttft_ms(r0) : NAN;
    key_object(w, "summary");
    jsonw_key_num(w, "cold_ttft_ms", cold);
    jsonw_key_num(w, "warm_ttft_p50_ms", sm.p50);
    jsonw_key_num(w, "warm_ttft_p95_ms", sm.p95);
    jsonw_key_int(w, "n_warm", (long long)sm.n);
    jsonw_key_num(w, "cold_warm_factor", sm.p50 > 0 ? cold / sm.p50 : NAN);
    jsonw_key_num(w, "launch_to_ready_ms", r0 && !res->url_mode ? ttft_ready_ms(r0) : NAN);
    jsonw_key_num(w, "max_events_per_s", res->max_events_per_s);
    jsonw_key_str(w, "client_ceiling_warning", res->ceiling_msg[0] ? res->ceiling_msg : NULL);
    jsonw_object_end(w);
    int n_err[REQ_ERROR__COUNT] = {0};
    for (int k = 0; k < res->n_reps; k++)
        for (int e = 0; e < REQ_ERROR__COUNT; e++)
            n_err[e] += res->reps[k].n_err_class[e];
    json_errors(w, n_err);
}

int ttft_json_write(const struct ttft_result *res, const char *path, char *err, size_t err_len)
{
    struct jsonw jw;
    struct jsonw *w = &jw;
    jsonw_init(w, TTFT_JSON_MAX_BYTES, 1);
    jsonw_object_begin(w);
    jsonw_key_str(w, "schema", TTFT_JSON_SCHEMA);
    jsonw_key_str(w, "status", ttft_status_str(res));
    jsonw_key_str(w, "fail_reason", res->failed && res->fail_msg[0] ? res->fail_msg : NULL);
    json_config(w, res);
    json_environment(w, res);
    json_summary(w, res);
    key_array(w, "repeats");
    for (int k = 0; k < res->n_reps; k++)
        json_repeat(w, res, &res->reps[k]);
    jsonw_array_end(w);
    jsonw_object_end(w);
    int rc = jsonw_write_file(w, path, err, err_len) == JSONW_OK ? 0 : -1;
    jsonw_free(w);
    return rc;
}
