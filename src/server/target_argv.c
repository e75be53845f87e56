/* target_argv: what the probe runs for each server kind (declared in target.h): the per-kind
 * capabilities table (metrics and prefix-cache flags, the request member that turns caching off,
 * the version route), target_argv_build (embedded, vLLM, llama.cpp, SGLang, or the user's own
 * serve command, then the arguments after --) and target_cmdline, the redacted one-line form for
 * logs and reports. Pure: it launches nothing, checks no port and touches no signal or process
 * state (target.c does). */
#include "server/target.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/redact.h"

static const struct target_kind_caps kind_caps[TARGET_KIND__COUNT] = {
    [TARGET_KIND_EMBEDDED] = {1, NULL, "--enable-prefix-caching", "--no-enable-prefix-caching",
                              NULL, 0, "/version"},
    [TARGET_KIND_VLLM] = {1, NULL, "--enable-prefix-caching", "--no-enable-prefix-caching", NULL,
                          0, "/version"},
    [TARGET_KIND_LLAMACPP] = {1, "--metrics", NULL, "--no-cache-prompt",
                              "\"cache_prompt\":false", 1, "/props"},
    [TARGET_KIND_SGLANG] = {1, "--enable-metrics", NULL, "--disable-radix-cache", NULL, 1,
                            "/version"},
};

const struct target_kind_caps *target_kind_caps(enum target_kind k)
{
    if ((unsigned)k >= TARGET_KIND__COUNT)
        k = TARGET_KIND_EMBEDDED;
    return &kind_caps[k];
}

struct argv_b {
    char **v;
    int n, cap;
};

static void av_push(struct argv_b *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        int cap = a->cap ? a->cap * 2 : 32;
        char **v = xcalloc((size_t)cap, sizeof *v);
        if (a->n)
            memcpy(v, a->v, (size_t)a->n * sizeof *v);
        free(a->v);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = xstrdup(s);
    a->v[a->n] = NULL;
}

static void av_pushf(struct argv_b *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void av_pushf(struct argv_b *a, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    av_push(a, tmp);
}

/* The flags every server kind takes in this order: --host, --port, then the context length under
 * ctx_flag and the GPU memory fraction under mem_flag (NULL: the kind has none), each when set. */
static void av_push_serve_common(struct argv_b *a, const struct target_config *cfg,
                                 const char *host, int port, const char *ctx_flag,
                                 const char *mem_flag)
{
    av_push(a, "--host");
    av_push(a, host);
    av_push(a, "--port");
    av_pushf(a, "%d", port);
    if (cfg->max_model_len > 0) {
        av_push(a, ctx_flag);
        av_pushf(a, "%d", cfg->max_model_len);
    }
    if (mem_flag && cfg->gpu_memory_utilization > 0) {
        av_push(a, mem_flag);
        av_pushf(a, "%g", cfg->gpu_memory_utilization);
    }
}

const char *target_cmdline(const struct target_config *cfg, int port, char *out, size_t out_len)
{
    char **argv = NULL;
    int argc = 0;
    char err[256];
    if (!out_len)
        return out;
    if (target_argv_build(cfg, port, &argv, &argc, err, sizeof err) != TARGET_OK) {
        snprintf(out, out_len, "(%s)", err);
    } else {
        redact_argv_join(argc, argv, out, out_len);
        target_argv_free(argv);
    }
    redact_secret_in(out, cfg->api_key);
    return out;
}

void target_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}

enum target_status target_argv_build(const struct target_config *cfg, int port, char ***argv_out,
                                     int *argc_out, char *err, size_t err_len)
{
    struct argv_b a = {0};
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    enum target_kind k = cfg->kind;
    *argv_out = NULL;
    *argc_out = 0;
    if ((unsigned)k >= TARGET_KIND__COUNT) {
        snprintf(err, err_len, "unknown server kind %d", (int)k);
        return TARGET_ERR_CONFIG;
    }
    if (cfg->n_serve_cmd > 0) {
        for (int i = 0; i < cfg->n_serve_cmd; i++)
            av_push(&a, cfg->serve_cmd[i]);
        goto extra;
    }
    if (!cfg->model || !cfg->model[0]) {
        snprintf(err, err_len, "no model given for --server %s (--model PATH|ID)",
                 target_kind_str(k));
        return TARGET_ERR_CONFIG;
    }
    if (port <= 0 || port > 65535) {
        snprintf(err, err_len, "bad port %d", port);
        return TARGET_ERR_CONFIG;
    }
    if (cfg->max_model_len < 0 || cfg->gpu_memory_utilization < 0 ||
        cfg->gpu_memory_utilization > 1) {
        snprintf(err, err_len, "bad max_model_len %d or gpu_memory_utilization %g",
                 cfg->max_model_len, cfg->gpu_memory_utilization);
        return TARGET_ERR_CONFIG;
    }
    const struct target_kind_caps *caps = target_kind_caps(k);
    switch (k) {
    case TARGET_KIND_EMBEDDED:
    case TARGET_KIND_VLLM:
        if (k == TARGET_KIND_EMBEDDED) {
            av_push(&a, cfg->self_exe ? cfg->self_exe : "/proc/self/exe");
            av_push(&a, "serve");
            av_push(&a, "--model");
        } else {
            av_push(&a, "vllm");
            av_push(&a, "serve");
        }
        av_push(&a, cfg->model);
        av_push_serve_common(&a, cfg, host, port, "--max-model-len", "--gpu-memory-utilization");
        av_push(&a, "--enable-prompt-tokens-details"); /* usage reports cached tokens */
        break;
    case TARGET_KIND_LLAMACPP:
        if (cfg->gpu_memory_utilization > 0) {
            snprintf(err, err_len,
                     "--gpu-memory-utilization has no llama.cpp equivalent (llama.cpp sizes KV "
                     "from -c; pass -ngl/-fit after --)");
            return TARGET_ERR_CONFIG;
        }
        av_push(&a, "llama-server");
        av_push(&a, "-m");
        av_push(&a, cfg->model);
        av_push_serve_common(&a, cfg, host, port, "-c", NULL);
        av_push(&a, caps->metrics_flag);
        break;
    case TARGET_KIND_SGLANG:
        av_push(&a, "python3");
        av_push(&a, "-m");
        av_push(&a, "sglang.launch_server");
        av_push(&a, "--model-path");
        av_push(&a, cfg->model);
        av_push_serve_common(&a, cfg, host, port, "--context-length", "--mem-fraction-static");
        av_push(&a, caps->metrics_flag);
        break;
    case TARGET_KIND__COUNT:
        break;
    }
    if (cfg->prefix_cache == TARGET_PREFIX_CACHE_OFF && caps->prefix_cache_off_flag)
        av_push(&a, caps->prefix_cache_off_flag);
    if (cfg->prefix_cache == TARGET_PREFIX_CACHE_ON && caps->prefix_cache_on_flag)
        av_push(&a, caps->prefix_cache_on_flag);
    if (cfg->api_key && cfg->api_key[0]) {
        av_push(&a, "--api-key");
        av_push(&a, cfg->api_key);
    }
    if (cfg->served_name && cfg->served_name[0]) {
        av_push(&a, k == TARGET_KIND_LLAMACPP ? "--alias" : "--served-model-name");
        av_push(&a, cfg->served_name);
    }
extra:
    for (int i = 0; i < cfg->n_extra_args; i++)
        av_push(&a, cfg->extra_args[i]);
    if (a.n == 0) {
        snprintf(err, err_len, "empty server command");
        free(a.v);
        return TARGET_ERR_CONFIG;
    }
    *argv_out = a.v;
    *argc_out = a.n;
    return TARGET_OK;
}
