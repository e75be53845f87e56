/* lab_write: everything `slmprobe lab` writes after the tiers ran: the launch scripts
 * (serve_slm.sh for the configuration the tiers used, serve_slm_interactive.sh and
 * serve_slm_throughput.sh for the presets), DAY.md, lab.json (schema slmprobe.lab/1: each tier's
 * state and its whole result file) and report.html (lab_page.h). It reads the tiers' result
 * files from the output directory, so a resumed lab writes the same set. It runs nothing. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lab/lab.h"
#include "lab/lab_json.h"
#include "lab/lab_page.h"
#include "report/jsonw.h"
#include "server/target.h"
#include "util/buf.h"
#include "util/log.h"

#define MOD "lab"
#define LAB_MAX_EXTRA 64

void lab_inputs_load(const char *out_dir, struct lab_inputs *in)
{
    memset(in, 0, sizeof *in);
    for (int t = 0; t < LAB_TIER__COUNT; t++) {
        char path[1200], err[300];
        snprintf(path, sizeof path, "%s/%s", out_dir, lab_tier_json((enum lab_tier)t));
        if (access(path, R_OK) != 0)
            continue;
        in->tier[t] = lab_json_load(path, err, sizeof err);
        if (!in->tier[t])
            log_warn(MOD, "%s", err);
    }
}

void lab_inputs_free(struct lab_inputs *in)
{
    for (int t = 0; t < LAB_TIER__COUNT; t++) {
        json_free(in->tier[t]);
        in->tier[t] = NULL;
    }
}

/* Appends the preset's knobs in the server's own flag names to extra[]; returns the count. */
static int preset_flags(enum target_kind kind, const struct lab_preset *p, char store[][24],
                        char **extra, int n)
{
    int k = 0;
#define ADD(flag, fmt, v)                                                                          \
    do {                                                                                           \
        extra[n++] = flag;                                                                         \
        snprintf(store[k], sizeof store[k], fmt, v);                                               \
        extra[n++] = store[k++];                                                                   \
    } while (0)
    switch (kind) {
    case TARGET_KIND_LLAMACPP:
        ADD("-np", "%d", p->max_num_seqs);
        ADD("-b", "%d", p->max_num_batched_tokens);
        break;
    case TARGET_KIND_SGLANG:
        ADD("--max-running-requests", "%d", p->max_num_seqs);
        ADD("--chunked-prefill-size", "%d", p->max_num_batched_tokens);
        break;
    default:
        ADD("--max-num-seqs", "%d", p->max_num_seqs);
        ADD("--max-num-batched-tokens", "%d", p->max_num_batched_tokens);
        extra[n++] = p->chunked_prefill ? "--enable-chunked-prefill" : "--no-enable-chunked-prefill";
        break;
    }
#undef ADD
    return n;
}

/* Writes a bash launch script for cfg (the key as an environment variable, never inline). */
static int write_script(const char *path, const char *what, const struct target_config *cfg,
                        char *err, size_t err_len)
{
    char cmd[8192];
    target_cmdline(cfg, cfg->port > 0 ? cfg->port : 8000, cmd, sizeof cmd);
    struct buf b;
    buf_init(&b, 4096, 1 << 20);
    buf_printf(&b, "#!/usr/bin/env bash\n# %s\n# Written by slmprobe lab %s.\nset -euo pipefail\n",
               what, SLMPROBE_VERSION);
    const char *key = strstr(cmd, "--api-key ***");
    if (key) {
        buf_printf(&b, "exec %.*s--api-key \"${SLMPROBE_API_KEY:?set SLMPROBE_API_KEY}\"%s\n",
                   (int)(key - cmd), cmd, key + strlen("--api-key ***"));
    } else {
        buf_printf(&b, "exec %s\n", cmd);
    }
    int rc = file_write_all(path, b.data, b.len);
    if (rc == 0)
        chmod(path, 0755);
    else
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
    buf_free(&b);
    return rc;
}

/* serve_slm.sh and one script per usable preset. */
static int write_scripts(const struct session *s, const struct lab_preset *p, int n_p, char *err,
                         size_t err_len)
{
    struct target_config cfg = s->po->target;
    if (cfg.url)
        return 0; /* nothing was launched: no script can reproduce it */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (cfg.kind == TARGET_KIND_EMBEDDED && !cfg.self_exe && n > 0) {
        self[n] = 0;
        cfg.self_exe = self;
    }
    char path[1200];
    if (write_script(session_path(s, "serve_slm.sh", path, sizeof path),
                     "The server configuration every tier of the day ran against.", &cfg, err,
                     err_len) != 0)
        return -1;
    for (int i = 0; i < n_p; i++) {
        if (!p[i].usable)
            continue;
        struct target_config pc = cfg;
        char *extra[LAB_MAX_EXTRA + 8];
        char store[4][24];
        int ne = cfg.n_extra_args < LAB_MAX_EXTRA ? cfg.n_extra_args : LAB_MAX_EXTRA;
        for (int k = 0; k < ne; k++)
            extra[k] = cfg.extra_args[k];
        ne = preset_flags(cfg.kind, &p[i], store, extra, ne);
        pc.extra_args = extra;
        pc.n_extra_args = ne;
        if (p[i].max_model_len > 0)
            pc.max_model_len = cfg.kind == TARGET_KIND_LLAMACPP
                                   ? p[i].max_model_len * p[i].max_num_seqs /* -c is all slots */
                                   : p[i].max_model_len;
        if (isfinite(p[i].gpu_memory_utilization))
            pc.gpu_memory_utilization = p[i].gpu_memory_utilization;
        char name[64], what[160];
        snprintf(name, sizeof name, "serve_slm_%s.sh", p[i].name);
        snprintf(what, sizeof what, "The %s preset derived from the day's measurements (DAY.md "
                                    "says what it rests on).", p[i].name);
        if (write_script(session_path(s, name, path, sizeof path), what, &pc, err, err_len) != 0)
            return -1;
    }
    return 0;
}

static const char *const artifact_names[] = {
    "DAY.md", "report.html", "lab.json", "first_token_latency.md", "first_token_latency.html",
    "ttft.json", "prefix_prompts.jsonl", "prefix_caching_results.md",
    "prefix_caching_results.csv", "prefix_caching_results.html", "prefix.json",
    "kv_cache_scaling.csv", "kv_cache_scaling_notes.md", "kv_cache_scaling_notes.html", "kv.json",
    "batching_benchmark.md", "batching_benchmark.html", "concurrency_sweep.csv", "batch.json",
    "serve_slm.sh", "serve_slm_no_prefix_cache.sh", "serve_slm_prefix_cache.sh", "kv_scaling.sh",
    "serve_slm_interactive.sh", "serve_slm_throughput.sh"};
#define N_ARTIFACTS ((int)(sizeof artifact_names / sizeof artifact_names[0]))

/* Names of the artifacts present (the first three are written last, so always listed). */
static int present_artifacts(const struct session *s, const char **out)
{
    int n = 0;
    for (int i = 0; i < N_ARTIFACTS; i++) {
        char path[1200];
        if (i < 3 || access(session_path(s, artifact_names[i], path, sizeof path), F_OK) == 0)
            out[n++] = artifact_names[i];
    }
    return n;
}

static void json_preset(struct jsonw *w, const struct lab_preset *p)
{
    jsonw_object_begin(w);
    jsonw_key_str(w, "name", p->name);
    jsonw_key_bool(w, "usable", p->usable);
    jsonw_key_num(w, "max_num_seqs", p->max_num_seqs >= 0 ? p->max_num_seqs : NAN);
    jsonw_key_num(w, "max_num_batched_tokens",
                  p->max_num_batched_tokens >= 0 ? p->max_num_batched_tokens : NAN);
    jsonw_key_num(w, "max_model_len", p->max_model_len >= 0 ? p->max_model_len : NAN);
    jsonw_key_num(w, "gpu_memory_utilization", p->gpu_memory_utilization);
    jsonw_key_bool(w, "chunked_prefill", p->chunked_prefill);
    jsonw_key(w, "evidence");
    jsonw_array_begin(w);
    for (int k = 0; k < p->n_evidence; k++)
        jsonw_str(w, p->evidence[k]);
    jsonw_array_end(w);
    jsonw_object_end(w);
}

/* lab.json: the lab's own facts plus each tier's whole result file. */
static int write_lab_json(const struct session *s, const struct lab_result *r,
                          const struct lab_preset *p, int n_p, char *err, size_t err_len)
{
    struct jsonw w;
    jsonw_init(&w, 256u << 20, 1);
    jsonw_object_begin(&w);
    jsonw_key_str(&w, "schema", "slmprobe.lab/1");
    jsonw_key_str(&w, "slmprobe_version", SLMPROBE_VERSION);
    jsonw_key_str(&w, "started_at", s->started_at);
    jsonw_key_str(&w, "command", s->command_line);
    jsonw_key_str(&w, "status", r->interrupted ? "interrupted" : r->failed ? "failed" : "ok");
    jsonw_key(&w, "tiers");
    jsonw_object_begin(&w);
    for (int t = 0; t < LAB_TIER__COUNT; t++) {
        jsonw_key(&w, lab_tier_name((enum lab_tier)t));
        jsonw_object_begin(&w);
        jsonw_key_str(&w, "tier", lab_tier_str((enum lab_tier)t));
        jsonw_key_str(&w, "state", lab_tier_state_str(r->state[t]));
        jsonw_key_num(&w, "wall_s", r->tier_s[t] > 0 ? r->tier_s[t] : NAN);
        jsonw_key_str(&w, "file", lab_tier_json((enum lab_tier)t));
        char path[1200], perr[256];
        size_t n = 0;
        char *text = file_read_all(session_path(s, lab_tier_json((enum lab_tier)t), path,
                                                sizeof path), 128u << 20, &n);
        struct json *ok = text ? json_parse(text, n, perr, sizeof perr) : NULL;
        jsonw_key(&w, "result");
        if (ok)
            jsonw_raw(&w, text, n);
        else
            jsonw_null(&w);
        json_free(ok);
        free(text);
        jsonw_object_end(&w);
    }
    jsonw_object_end(&w);
    jsonw_key(&w, "presets");
    jsonw_array_begin(&w);
    for (int i = 0; i < n_p; i++)
        json_preset(&w, &p[i]);
    jsonw_array_end(&w);
    jsonw_object_end(&w);
    char path[1200];
    enum jsonw_status st =
        jsonw_write_file(&w, session_path(s, "lab.json", path, sizeof path), err, err_len);
    jsonw_free(&w);
    return st == JSONW_OK ? 0 : -1;
}

static int write_page(const struct session *s, const char *day_md, char *err, size_t err_len)
{
    struct lab_page_part parts[LAB_TIER__COUNT];
    char paths[LAB_TIER__COUNT][1200];
    for (int t = 0; t < LAB_TIER__COUNT; t++) {
        parts[t].key = lab_tier_name((enum lab_tier)t);
        parts[t].title = lab_tier_title((enum lab_tier)t);
        parts[t].path = session_path(s, lab_tier_html((enum lab_tier)t), paths[t], sizeof paths[t]);
    }
    struct buf sum;
    buf_init(&sum, 4096, 4u << 20);
    buf_puts(&sum, "<section id=\"day\" class=\"day\">\n");
    lab_page_md_html(day_md, &sum);
    buf_puts(&sum, "</section>\n");
    char path[1200];
    enum lab_page_status st =
        lab_page_write("slmprobe lab: the day on one page", sum.data, parts, LAB_TIER__COUNT,
                       session_path(s, "report.html", path, sizeof path), err, err_len);
    buf_free(&sum);
    return st == LAB_PAGE_OK ? 0 : -1;
}

int lab_write(const struct lab_opts *o, struct session *s, const struct lab_result *r, char *err,
              size_t err_len)
{
    struct lab_inputs in;
    lab_inputs_load(s->out_dir, &in);
    struct lab_preset p[2];
    lab_presets_derive(&in, o->concurrency_wanted, &p[0], &p[1]);
    int rc = write_scripts(s, p, 2, err, err_len);
    const char *arts[N_ARTIFACTS];
    int n_arts = present_artifacts(s, arts);
    struct buf day;
    buf_init(&day, 1 << 16, 16u << 20);
    lab_day_render(&in, s, r, p, 2, arts, n_arts, &day);
    char path[1200];
    if (rc == 0 && file_write_all(session_path(s, "DAY.md", path, sizeof path), day.data,
                                  day.len) != 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    if (rc == 0)
        rc = write_lab_json(s, r, p, 2, err, err_len);
    if (rc == 0)
        rc = write_page(s, day.data ? day.data : "", err, err_len);
    buf_free(&day);
    lab_inputs_free(&in);
    return rc;
}
