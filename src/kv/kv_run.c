/* kv_run: the measuring half of `slmprobe kv`. For each --gpu-memory-utilization value and each
 * max-model-len it makes one struct launch (run/launch.h: log, start, sampler, scraper, stop,
 * start-up log parsing), reads memory at ready (GPU used minus before launch, the server tree's
 * RSS), KV capacity and maximum concurrency (start-up log, else vllm:cache_config_info from
 * /metrics, else capacity / length), optionally loads the server at its claimed concurrency
 * (--verify, run/driver.h), stops it and goes on; a length that does not start is a row with
 * the server's reason. With --serve-cmd the length goes into "{max_model_len}" (and the
 * utilisation into "{gpu_memory_utilization}") wherever the command has them, else the kind's
 * flag is appended. It holds no lifecycle, telemetry or HTTP code of its own and does no
 * arithmetic beyond unit conversion (kv_fit.c). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/model.h"
#include "kv/kv_probe.h"
#include "run/driver.h"
#include "run/launch.h"
#include "server/promscrape.h"
#include "util/buf.h"
#include "util/log.h"

#define MOD "kv"
#define KV_SETTLE_MS 300 /* after ready: the sampler's ticks, and time for a crash to show */
#define KV_MAX_ARGS 256

/* Owned argv pieces of one launch: the substituted serve command and the extra flags. */
struct kv_argv {
    char *serve[KV_MAX_ARGS];
    int n_serve;
    char *extra[KV_MAX_ARGS];
    int n_extra;
    int warned; /* the swept-flag warning was given for this launch */
};

static void kv_argv_free(struct kv_argv *a)
{
    for (int i = 0; i < a->n_serve; i++)
        free(a->serve[i]);
    for (int i = 0; i < a->n_extra; i++)
        free(a->extra[i]);
    memset(a, 0, sizeof *a);
}

/* s with every "{key}" replaced by val (a new string); *hit = 1 when one was found. */
static char *subst(const char *s, const char *key, const char *val, int *hit)
{
    struct buf b;
    buf_init(&b, strlen(s) + 32, 1u << 16);
    size_t kl = strlen(key);
    for (const char *p = s; *p;) {
        if (strncmp(p, key, kl) == 0) {
            buf_puts(&b, val);
            p += kl;
            *hit = 1;
        } else {
            buf_putc(&b, *p++);
        }
    }
    char *out = buf_steal(&b);
    return out ? out : xstrdup("");
}

static void add_extra(struct kv_argv *a, const char *s)
{
    if (a->n_extra < KV_MAX_ARGS)
        a->extra[a->n_extra++] = xstrdup(s);
}

static const char *len_flag(enum target_kind k)
{
    return k == TARGET_KIND_LLAMACPP ? "-c" : k == TARGET_KIND_SGLANG ? "--context-length"
                                                                      : "--max-model-len";
}

/* 2 when arg is flag (its value follows), 1 when it is "flag=value", else 0. */
static int swept_flag(const char *arg, const char *flag)
{
    size_t n = strlen(flag);
    if (strncmp(arg, flag, n))
        return 0;
    return arg[n] == 0 ? 2 : arg[n] == '=' ? 1 : 0;
}

/* cfg for one launch: the length and utilisation set (built argv), or substituted/appended
 * (--serve-cmd); --kv-cache-dtype for servers that take it. */
static void kv_config(const struct kv_opts *o, const struct target_config *base, int len,
                      double util, struct target_config *cfg, struct kv_argv *a)
{
    *cfg = *base;
    memset(a, 0, sizeof *a);
    char lens[32], utils[32];
    snprintf(lens, sizeof lens, "%d", len);
    snprintf(utils, sizeof utils, "%g", util);
    if (base->serve_cmd) {
        int hit_len = 0, hit_util = 0;
        for (int i = 0; i < base->n_serve_cmd && a->n_serve < KV_MAX_ARGS; i++) {
            char *t = subst(base->serve_cmd[i], "{max_model_len}", lens, &hit_len);
            a->serve[a->n_serve++] = subst(t, "{gpu_memory_utilization}", utils, &hit_util);
            free(t);
        }
        cfg->serve_cmd = a->serve;
        cfg->n_serve_cmd = a->n_serve;
        if (!hit_len) {
            add_extra(a, len_flag(base->kind));
            add_extra(a, lens);
        }
        if (util > 0 && !hit_util && base->kind != TARGET_KIND_LLAMACPP) {
            add_extra(a, base->kind == TARGET_KIND_SGLANG ? "--mem-fraction-static"
                                                          : "--gpu-memory-utilization");
            add_extra(a, utils);
        }
    } else {
        cfg->max_model_len = len;
        if (util > 0)
            cfg->gpu_memory_utilization = util;
    }
    if (o->kv_cache_dtype && base->kind != TARGET_KIND_EMBEDDED) {
        add_extra(a, base->kind == TARGET_KIND_LLAMACPP ? "-ctk" : "--kv-cache-dtype");
        add_extra(a, o->kv_cache_dtype);
    }
    const char *util_flag = base->kind == TARGET_KIND_SGLANG ? "--mem-fraction-static"
                                                             : "--gpu-memory-utilization";
    for (int i = 0; i < base->n_extra_args; i++) {
        /* the swept flags are the sweep's: a copy after `--` would override every launch */
        const char *x = base->extra_args[i];
        int n = swept_flag(x, len_flag(base->kind));
        if (!n && o->n_utils > 0)
            n = swept_flag(x, util_flag);
        if (n) {
            if (!a->warned)
                log_warn(MOD, "ignoring '%s%s%s' after --: kv sets it per launch", x,
                         n == 2 && i + 1 < base->n_extra_args ? " " : "",
                         n == 2 && i + 1 < base->n_extra_args ? base->extra_args[i + 1] : "");
            a->warned = 1;
            i += n - 1;
            continue;
        }
        add_extra(a, x);
    }
    cfg->extra_args = a->extra;
    cfg->n_extra_args = a->n_extra;
}

/* The launch command for kv_scaling.sh: /proc/self/exe replaced by this binary's path. */
static void row_cmdline(struct kv_row *w, const char *cmd)
{
    const char *self = "/proc/self/exe";
    char exe[PATH_MAX];
    ssize_t n = readlink(self, exe, sizeof exe - 1);
    if (n > 0 && strncmp(cmd, self, strlen(self)) == 0) {
        exe[n] = 0;
        struct buf b;
        buf_init(&b, sizeof w->cmdline, sizeof w->cmdline - 1);
        buf_puts(&b, exe);
        buf_puts(&b, cmd + strlen(self));
        memcpy(w->cmdline, b.data, b.len);
        w->cmdline[b.len] = 0;
        buf_free(&b);
    } else {
        snprintf(w->cmdline, sizeof w->cmdline, "%s", cmd);
    }
}

/* vllm:cache_config_info{num_gpu_blocks, block_size}: blocks x block size, or -1. */
static int64_t metrics_capacity(const char *base_url, const char *api_key)
{
    char url[320], err[256];
    snprintf(url, sizeof url, "%s/metrics", base_url);
    struct prom_set ps;
    int http = 0;
    int64_t cap = -1;
    if (prom_fetch(url, api_key, 3000, &ps, &http, err, sizeof err) == PROM_OK) {
        for (size_t i = 0; i < ps.n_samples; i++) {
            const struct prom_sample *sm = &ps.samples[i];
            if (strcmp(sm->name, "vllm:cache_config_info") != 0)
                continue;
            const char *nb = prom_label_get(sm, "num_gpu_blocks");
            const char *bs = prom_label_get(sm, "block_size");
            if (nb && bs && atoll(nb) > 0 && atoll(bs) > 0)
                cap = (int64_t)atoll(nb) * atoll(bs);
            break;
        }
    }
    prom_set_free(&ps);
    return cap;
}

static void read_capacity(struct kv_row *w, const struct startup_info *si, struct launch *L)
{
    if (si->kv_cache_tokens >= 0) {
        w->kv_capacity_tokens = si->kv_cache_tokens;
        w->capacity_source = "log";
    } else if (L->t && !L->url_mode) {
        w->kv_capacity_tokens = metrics_capacity(L->t->base_url, L->cfg.api_key);
        w->capacity_source = w->kv_capacity_tokens >= 0 ? "metrics" : "";
    }
    if (!isnan(si->max_concurrency) &&
        (si->max_concurrency_len < 0 || si->max_concurrency_len == w->max_model_len)) {
        w->max_concurrency = si->max_concurrency;
    } else if (w->kv_capacity_tokens >= 0 && si->server != LOGPARSE_SERVER_LLAMACPP) {
        w->max_concurrency = (double)w->kv_capacity_tokens / w->max_model_len;
        if (!w->capacity_source[0] || strcmp(w->capacity_source, "log") == 0)
            w->capacity_source = "derived";
    } else if (w->kv_capacity_tokens >= 0) {
        /* llama.cpp: one unified context of n_ctx cells shared by the slots */
        w->max_concurrency = (double)w->kv_capacity_tokens / w->max_model_len;
    }
}

static void read_memory(struct kv_row *w, struct launch *L, const struct session *s)
{
    if (L->gpu_mem_ready_bytes >= 0) {
        w->gpu_mem_total_used_mb = (double)L->gpu_mem_ready_bytes / 1048576.0;
        if (L->gpu_mem_before_bytes >= 0)
            w->gpu_mem_used_mb =
                (double)(L->gpu_mem_ready_bytes - L->gpu_mem_before_bytes) / 1048576.0;
    }
    int64_t rss = L->rss_ready_bytes;
    struct telemetry_window tw;
    if (L->t && launch_window(L, L->tl.t_models_ok_ns, clock_now_ns(), &tw) == 0 &&
        tw.rss_max_bytes > rss)
        rss = tw.rss_max_bytes;
    if (rss >= 0)
        w->server_rss_mb = (double)rss / 1048576.0;
    const char *gpu_why = s->gpus.available ? "GPU memory not read" : s->gpus.reason;
    const char *rss_why = L->url_mode ? "no RSS: --url (no process of ours)" : "no RSS read";
    if (isnan(w->gpu_mem_used_mb) && isnan(w->server_rss_mb))
        snprintf(w->mem_reason, sizeof w->mem_reason, "no GPU (%s) and %s", gpu_why, rss_why);
    else if (isnan(w->gpu_mem_used_mb))
        snprintf(w->mem_reason, sizeof w->mem_reason, "no GPU: %s", gpu_why);
    else if (isnan(w->server_rss_mb))
        snprintf(w->mem_reason, sizeof w->mem_reason, "%s", rss_why);
}

/* ---- --verify ---- */

struct verify_ud {
    struct buf prompt_text;
    int max_tokens;
};

static int verify_make(void *ud, uint64_t i, struct client_request *rq, struct buf *prompt)
{
    struct verify_ud *v = ud;
    /* a distinct start per request, so that prefix caching cannot share their KV blocks */
    if (buf_printf(prompt, "%llu:", (unsigned long long)i) != BUF_OK ||
        buf_append(prompt, v->prompt_text.data, v->prompt_text.len) != BUF_OK)
        return -1;
    rq->prompt = prompt->data;
    rq->prompt_len = prompt->len;
    rq->max_tokens = v->max_tokens;
    rq->min_tokens = v->max_tokens;
    rq->ignore_eos = 1;
    rq->temperature = 0;
    return 0;
}

/* One wave of n concurrent requests; fills the verdict and the /metrics readings. */
static enum driver_status verify_wave(struct driver *d, struct launch *L, struct verify_ud *vu,
                                      int n, const char *tag, enum kv_verify_verdict *verdict,
                                      int *n_ok, double *waiting, double *running, double *preempt)
{
    struct server_metrics m0, m1, dm;
    int have0 = L->scr && scraper_scrape_now(L->scr, &m0) == 0;
    struct driver_phase ph = {.mode = DRIVER_MODE_CLOSED, .tag = tag, .level = n,
                              .concurrency = n, .n_requests = n, .make = verify_make, .ud = vu};
    struct driver_result res;
    enum driver_status st = driver_run(d, &ph, &res);
    int have1 = L->scr && scraper_scrape_now(L->scr, &m1) == 0;
    *n_ok = res.n_ok;
    if (L->scr) {
        struct scrape_window sw;
        scraper_window(L->scr, res.t_start_ns, clock_now_ns(), &sw);
        *waiting = sw.has_waiting ? sw.waiting_max : NAN;
        *running = sw.has_running ? sw.running_max : NAN;
    }
    if (have0 && have1) {
        server_metrics_delta(&m0, &m1, &dm);
        *preempt = dm.has_preemptions ? dm.preemptions : NAN;
    }
    if (res.n_ok < n)
        *verdict = KV_VERIFY_FAILED;
    else if ((!isnan(*waiting) && *waiting > 0) || (!isnan(*preempt) && *preempt > 0))
        *verdict = KV_VERIFY_QUEUED;
    else
        *verdict = KV_VERIFY_CONCURRENT;
    driver_result_free(&res);
    return st;
}

static void run_verify(const struct kv_opts *o, struct session *s, struct launch *L,
                       struct kv_row *w)
{
    struct kv_verify *v = &w->verify;
    if (isnan(w->max_concurrency) || w->max_concurrency < 1) {
        snprintf(v->note, sizeof v->note, "no claimed concurrency of at least 1 to verify");
        return;
    }
    int c = (int)floor(w->max_concurrency);
    if (c > o->verify_max) {
        snprintf(v->note, sizeof v->note, "claimed %d capped at --verify-max %d", c,
                 o->verify_max);
        c = o->verify_max;
    }
    struct client_config cc;
    probe_opts_client_config(s->po, L->t->base_url, &cc);
    char err[512];
    struct driver *d = driver_new(s, L, &cc, NULL, err, sizeof err);
    if (!d) {
        snprintf(v->note, sizeof v->note, "verify: %s", err);
        return;
    }
    /* about max-model-len minus the output tokens: " a" is one BPE token, two byte tokens */
    struct verify_ud vu = {.max_tokens = o->verify_output_tokens};
    buf_init(&vu.prompt_text, 4096, 64u << 20);
    int n_words = (w->max_model_len - o->verify_output_tokens - 8) / 2;
    for (int i = 0; i < n_words; i++)
        buf_puts(&vu.prompt_text, " a");
    v->n_claimed = c;
    v->n_above = c + 1;
    enum driver_status st = verify_wave(d, L, &vu, c, "verify_claimed", &v->claimed,
                                        &v->ok_claimed, &v->waiting_max_claimed,
                                        &v->running_max_claimed, &v->preemptions_claimed);
    if (st == DRIVER_STATUS_OK)
        verify_wave(d, L, &vu, c + 1, "verify_above", &v->above, &v->ok_above,
                    &v->waiting_max_above, &v->running_max_above, &v->preemptions_above);
    buf_free(&vu.prompt_text);
    driver_free(d);
}

/* ---- one launch ---- */

static void sleep_settle(const struct session *s)
{
    for (int i = 0; i < KV_SETTLE_MS / 20 && !session_cancelled(s); i++)
        usleep(20000);
}

static void measure_one(const struct kv_opts *o, struct session *s, int len, double util,
                        struct kv_row *w, struct kv_result *out)
{
    struct target_config cfg;
    struct kv_argv a;
    kv_config(o, &s->po->target, len, util, &cfg, &a);
    w->max_model_len = len;
    w->gpu_util = util;
    if (util > 0)
        snprintf(w->log_name, sizeof w->log_name, "server_len%d_util%g.log", len, util);
    else
        snprintf(w->log_name, sizeof w->log_name, "server_len%d.log", len);
    struct launch L;
    struct launch_opts lo = {.metrics_interval_ms = o->verify ? 20 : 0};
    launch_init_opts(&L, s, &cfg, w->log_name, &lo);
    enum target_status st = launch_start(&L);
    row_cmdline(w, L.cmdline);
    if (st == TARGET_OK) {
        sleep_settle(s);
        read_memory(w, &L, s);
        read_capacity(w, &L.t->startup, &L);
        if (launch_alive(&L) && o->verify && !session_cancelled(s))
            run_verify(o, s, &L, w);
    }
    int alive = st == TARGET_OK && launch_alive(&L);
    launch_stop(&L);
    if (L.have_startup && w->kv_capacity_tokens < 0 && st == TARGET_OK)
        read_capacity(w, &L.startup, &L);
    if (L.tl.t_models_ok_ns > 0)
        w->start_s = (double)(L.tl.t_models_ok_ns - L.tl.t_launch_ns) / 1e9;
    const char *why = L.have_startup && L.startup.error_message[0] ? L.startup.error_message
                                                                   : L.err;
    if (st == TARGET_ERR_INTERRUPTED) {
        w->status = KV_ROW_SKIPPED;
        snprintf(w->error, sizeof w->error, "interrupted while starting");
    } else if (st != TARGET_OK) {
        w->status = KV_ROW_START_FAILED;
        snprintf(w->error, sizeof w->error, "%s", why[0] ? why : target_status_str(st));
        w->estimated_max_model_len = L.have_startup ? L.startup.estimated_max_model_len : -1;
    } else if (!alive || L.died) {
        char ex[96];
        w->status = KV_ROW_DIED;
        snprintf(w->error, sizeof w->error, "the server exited (%s) after it was ready",
                 target_exit_str(&L.exit, ex, sizeof ex));
        out->failed = 1;
        snprintf(out->failure, sizeof out->failure, "the server died at max-model-len %d (%s)",
                 len, ex);
    }
    launch_free(&L);
    kv_argv_free(&a);
}

/* ---- the sweep ---- */

static int row_done(const struct kv_result *r, int len, double util)
{
    for (size_t i = 0; i < r->n_rows; i++)
        if (r->rows[i].status == KV_ROW_RESUMED && r->rows[i].max_model_len == len &&
            r->rows[i].gpu_util == util)
            return 1;
    return 0;
}

/* 1 when the embedded server is told to run on the GPU (`-- --device cuda`): its KV cache is
 * then 16-bit, as on the other servers, not f32. */
static int embedded_on_cuda(const struct target_config *t)
{
    static const char flag[] = "--device";
    for (int i = 0; i < t->n_extra_args; i++) {
        const char *a = t->extra_args[i];
        int n = swept_flag(a, flag); /* 1: --device=V, 2: --device V */
        const char *v = n == 1                            ? a + sizeof flag
                        : n == 2 && i + 1 < t->n_extra_args ? t->extra_args[i + 1]
                                                            : NULL;
        if (v && !strcmp(v, "cuda"))
            return 1;
    }
    return 0;
}

static void load_theory(const struct kv_opts *o, const struct target_config *t,
                        struct kv_theory *th)
{
    int dt = o->kv_cache_dtype ? kv_dtype_bytes(o->kv_cache_dtype) : 0;
    if ((t->kind != TARGET_KIND_EMBEDDED || embedded_on_cuda(t)) && dt <= 0)
        dt = 2; /* f16 / bf16: the default KV dtype of vLLM, SGLang, llama.cpp and the embedded
                   runtime on cuda; the embedded runtime on the CPU keeps f32 */
    char cj[1100];
    if (o->model_config) {
        kv_theory_from_config_json(o->model_config, o->kv_cache_dtype, th);
    } else if (t->model && strstr(t->model, ".gguf")) {
        kv_theory_from_gguf(t->model, dt, th);
        struct model_file_info mi;
        char err[256];
        /* on cuda the pool holds the model's 16-bit type: bf16 for a bf16 file */
        if (t->kind == TARGET_KIND_EMBEDDED && embedded_on_cuda(t) && dt == 2 &&
            model_file_info(t->model, &mi, err, sizeof err) == 0 &&
            mi.file_dtype == MODEL_DTYPE_BF16)
            snprintf(th->dtype, sizeof th->dtype, "bf16");
    } else if (t->model && snprintf(cj, sizeof cj, "%s/config.json", t->model) > 0 &&
               access(cj, R_OK) == 0) {
        kv_theory_from_config_json(cj, o->kv_cache_dtype, th);
    } else {
        memset(th, 0, sizeof *th);
        th->bytes_per_token = NAN;
        snprintf(th->reason, sizeof th->reason,
                 "no model config: give --model-config config.json (model '%s')",
                 t->model ? t->model : "(none)");
    }
}

static int cmp_row(const void *a, const void *b)
{
    const struct kv_row *x = a, *y = b;
    if (x->gpu_util != y->gpu_util)
        return x->gpu_util < y->gpu_util ? -1 : 1;
    return (x->max_model_len > y->max_model_len) - (x->max_model_len < y->max_model_len);
}

static const char *mb_str(double mb, char *out, size_t n)
{
    if (isnan(mb))
        snprintf(out, n, "n/a");
    else
        snprintf(out, n, "%.1f MiB", mb);
    return out;
}

static void sweep_progress(int i, int n, const struct kv_row *w)
{
    char g[32], r[32];
    if (w->status == KV_ROW_OK)
        log_info(MOD, "[%d/%d] max-model-len %d%s: ready in %.2f s, KV %lld tokens, %.2fx "
                      "concurrency, GPU %s, RSS %s",
                 i, n, w->max_model_len, w->gpu_util > 0 ? " (util set)" : "", w->start_s,
                 (long long)w->kv_capacity_tokens, w->max_concurrency,
                 mb_str(w->gpu_mem_used_mb, g, sizeof g), mb_str(w->server_rss_mb, r, sizeof r));
    else
        log_warn(MOD, "[%d/%d] max-model-len %d: %s: %s", i, n, w->max_model_len,
                 kv_row_status_str(w->status), w->error);
}

int kv_run(const struct kv_opts *o, struct session *s, struct kv_result *out)
{
    const struct target_config *t = &s->po->target;
    snprintf(out->server, sizeof out->server, "%s",
             t->url ? "url" : t->serve_cmd ? "serve-cmd" : target_kind_str(t->kind));
    snprintf(out->model, sizeof out->model, "%s", t->model ? t->model : "");
    snprintf(out->out_dir, sizeof out->out_dir, "%s", s->out_dir);
    out->concurrency_wanted = o->concurrency;
    load_theory(o, t, &out->theory);
    int lens[KV_MAX_LENGTHS], n_lens = o->n_lengths;
    memcpy(lens, o->lengths, sizeof lens);
    if (n_lens == 0)
        n_lens = kv_lengths_default(KV_DEFAULT_MIN_LEN, out->theory.n_ctx_train, lens,
                                    KV_MAX_LENGTHS);
    if (n_lens == 0) {
        snprintf(out->failure, sizeof out->failure,
                 "no lengths: the model's context length is unknown (%s); give --lengths",
                 out->theory.reason[0] ? out->theory.reason : "below 512");
        out->failed = 1;
        return 1;
    }
    double utils[KV_MAX_UTILS] = {0};
    int n_utils = o->n_utils ? o->n_utils : 1;
    if (o->n_utils)
        memcpy(utils, o->utils, sizeof utils);
    int n_total = n_lens * n_utils, i_run = 0;
    for (int u = 0; u < n_utils; u++) {
        for (int k = 0; k < n_lens; k++) {
            if (row_done(out, lens[k], utils[u]))
                continue;
            struct kv_row *w = kv_result_add_row(out);
            if (session_cancelled(s)) {
                w->max_model_len = lens[k];
                w->gpu_util = utils[u];
                w->status = KV_ROW_SKIPPED;
                snprintf(w->error, sizeof w->error, "%s",
                         session_interrupted(s) ? "interrupted" : session_cancel_reason(s));
                continue;
            }
            measure_one(o, s, lens[k], utils[u], w, out);
            sweep_progress(++i_run, n_total, w); /* a length that did not start is data */
        }
    }
    out->interrupted = session_interrupted(s);
    if (out->interrupted)
        snprintf(out->failure, sizeof out->failure,
                 "interrupted: the server it launched was stopped, finished rows kept");
    qsort(out->rows, out->n_rows, sizeof *out->rows, cmp_row);
    return out->failed || out->interrupted;
}
