/* serve_cli: `slmprobe serve --model FILE.gguf [flags]`. Parses vLLM-spelled flags, binds the
 * HTTP port (server.c) before loading, loads the model, sizes and warms the engine, then serves
 * until SIGTERM/SIGINT. Logs each cold-start part with its duration in the wording the probe's
 * log parser expects (vLLM-style timestamps). It does no HTTP and no inference itself. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "engine/engine.h"
#include "engine/forward_dev.h"
#include "engine/model.h"
#include "engine/server.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: slmprobe serve --model FILE.gguf [options]\n"
        "\n"
        "Runs the embedded reference runtime: a transformer engine on the CPU or, built with\n"
        "`make CUDA=1`, on an NVIDIA GPU (paged KV cache, continuous batching, prefix caching)\n"
        "behind a vLLM-compatible HTTP API.\n"
        "Sizes accept k/m/g/t (x1000) and K/M/G/T, KiB/MiB/GiB/TiB (x1024), kB/MB/GB/TB.\n"
        "\n"
        "model and API:\n"
        "  --model FILE                  GGUF model file (required; also accepted as the\n"
        "                                first positional argument)\n"
        "  --served-model-name NAME      name in the API (default: file name without .gguf)\n"
        "  --host HOST                   address to bind (default 127.0.0.1)\n"
        "  --port N                      port (default 8000; 0 = any free port)\n"
        "  --api-key KEY                 require 'Authorization: Bearer KEY' on /v1 routes\n"
        "  --max-body-bytes SIZE         request body cap, 413 above (default 8MiB)\n"
        "  --enable-prompt-tokens-details  report usage.prompt_tokens_details.cached_tokens\n"
        "  --enable-log-requests         one log line per request (default off)\n"
        "  --disable-log-requests        accepted for compatibility (the default)\n"
        "  --disable-log-stats           no periodic throughput line\n"
        "  --drain-timeout SECONDS       after SIGTERM, wait this long for in-flight requests\n"
        "                                before aborting them (default 30)\n"
        "\n"
        "engine:\n"
        "  --device cpu|cuda             where the forward pass runs (default cpu). cuda: the\n"
        "                                weights, activations and KV cache in GPU memory (needs\n"
        "                                a `make CUDA=1` build), the KV cache sized from the\n"
        "                                GPU's real memory as vLLM does (--device-memory is\n"
        "                                ignored), CUDA graphs captured for decode batches\n"
        "  --max-model-len N             context length (default: the model's; 1k = 1000,\n"
        "                                1K = 1024)\n"
        "  --block-size N                tokens per KV block (default 16)\n"
        "  --device-memory SIZE          simulated device memory (default 4GiB; cpu only)\n"
        "  --gpu-memory-utilization F    fraction of the device for weights + activations +\n"
        "                                KV cache (default 0.9); on cuda the device must have\n"
        "                                that much free at start-up\n"
        "  --kv-cache-memory-bytes SIZE  KV pool size; overrides --gpu-memory-utilization\n"
        "  --max-num-seqs N              most sequences per step (default 256)\n"
        "  --max-num-batched-tokens N    token budget per step (default 2048)\n"
        "  --enable-chunked-prefill      split long prompts across steps (default on)\n"
        "  --no-enable-chunked-prefill\n"
        "  --enable-prefix-caching       reuse KV blocks of shared prompt prefixes (default on)\n"
        "  --no-enable-prefix-caching\n"
        "  --warmup kernels|shapes|none  warm-up before ready (default kernels): kernels =\n"
        "                                each kernel path once (a prefill, one decode token,\n"
        "                                one small decode batch); shapes = one step per batch\n"
        "                                shape (prefill 1, 2, 4, ... tokens, decode 2, 4, ...\n"
        "                                sequences; the analogue of CUDA graph capture);\n"
        "                                none = no warm-up. On cuda, kernels and shapes both\n"
        "                                mean CUDA graph capture of decode batches 1, 2, 4, 8,\n"
        "                                16, 24, ... up to --max-num-seqs (at most 512)\n"
        "  --enforce-eager               same as --warmup none: no warm-up; on cuda no CUDA\n"
        "                                graphs, every step runs eagerly (vLLM's flag)\n"
        "  --load-format mmap|read       how weights are loaded (default mmap)\n"
        "  --threads N                   compute threads (default: number of CPUs)\n"
        "  --seed N                      requests without a seed get seeds derived from N\n"
        "                                (default: the engine's own RNG)\n"
        "  --debug-check-invariants      check KV/scheduler invariants after every step\n"
        "  -h, --help                    this help\n");
}

/* vLLM's human-readable integers plus IEC spellings. 0 or -1. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0) || isinf(v))
        return -1;
    double mult = 1;
    static const struct {
        const char *suffix;
        double mult;
    } sfx[] = {
        {"", 1},
        {"B", 1},
        {"k", 1e3},
        {"m", 1e6},
        {"g", 1e9},
        {"t", 1e12},
        {"kB", 1e3},
        {"KB", 1e3},
        {"MB", 1e6},
        {"GB", 1e9},
        {"TB", 1e12},
        {"K", 1024.0},
        {"M", 1048576.0},
        {"G", 1073741824.0},
        {"T", 1099511627776.0},
        {"KiB", 1024.0},
        {"MiB", 1048576.0},
        {"GiB", 1073741824.0},
        {"TiB", 1099511627776.0},
    };
    size_t i;
    for (i = 0; i < sizeof sfx / sizeof sfx[0]; i++)
        if (!strcmp(end, sfx[i].suffix))
            break;
    if (i == sizeof sfx / sizeof sfx[0])
        return -1;
    mult = sfx[i].mult;
    double r = v * mult;
    if (r >= 18446744073709551615.0 || r != floor(r))
        return -1;
    *out = (uint64_t)r;
    return 0;
}

static int parse_int_range(const char *s, long lo, long hi, int *out)
{
    uint64_t v;
    if (parse_size(s, &v) != 0 || v > (uint64_t)hi || (long)v < lo)
        return -1;
    *out = (int)v;
    return 0;
}

struct serve_opts {
    const char *model_path;
    struct server_config sc;
    struct engine_config ec;
    enum model_load_format load_format;
};

/* A flag's handler stores its value in o. Returns NULL, or what the value should have looked like
 * (the message's "expected ..." part). Switches take no value and get val NULL. */
typedef const char *(*serve_flag_fn)(struct serve_opts *o, const char *val);

struct serve_flag {
    const char *name;
    int takes_value;
    serve_flag_fn apply;
};

/* Switch handlers: each sets one field to one value. */
#define SERVE_SWITCH(fn, field, value)                                                             \
    static const char *fn(struct serve_opts *o, const char *val)                                   \
    {                                                                                              \
        (void)val;                                                                                 \
        o->field = value;                                                                          \
        return NULL;                                                                               \
    }
SERVE_SWITCH(chunked_prefill_on, ec.enable_chunked_prefill, 1)
SERVE_SWITCH(chunked_prefill_off, ec.enable_chunked_prefill, 0)
SERVE_SWITCH(prefix_caching_on, ec.enable_prefix_caching, 1)
SERVE_SWITCH(prefix_caching_off, ec.enable_prefix_caching, 0)
SERVE_SWITCH(prompt_tokens_details_on, sc.enable_prompt_tokens_details, 1)
SERVE_SWITCH(enforce_eager, ec.warmup, ENGINE_WARMUP_NONE)
SERVE_SWITCH(log_requests_on, sc.log_requests, 1)
SERVE_SWITCH(log_requests_off, sc.log_requests, 0)
SERVE_SWITCH(log_stats_off, sc.log_stats, 0)
SERVE_SWITCH(debug_check_invariants_on, ec.debug_check_invariants, 1)
#undef SERVE_SWITCH

/* Shared value checks: *out is written only when the value is good. */
static const char *int_value(const char *val, long lo, long hi, int *out, const char *expected)
{
    return parse_int_range(val, lo, hi, out) != 0 ? expected : NULL;
}

static const char *positive_size_value(const char *val, uint64_t *out, const char *expected)
{
    uint64_t u;
    if (parse_size(val, &u) != 0 || u == 0)
        return expected;
    *out = u;
    return NULL;
}

/* 0 when all of val is a number. */
static int parse_double(const char *val, double *out)
{
    char *end;
    *out = strtod(val, &end);
    return end == val || *end ? -1 : 0;
}

/* Value handlers, in the order of the help. */
static const char *set_model(struct serve_opts *o, const char *val)
{
    o->model_path = val;
    return NULL;
}

static const char *set_served_model_name(struct serve_opts *o, const char *val)
{
    o->sc.served_model_name = val;
    return !*val || strlen(val) > 256 ? "a non-empty name of at most 256 bytes" : NULL;
}

static const char *set_host(struct serve_opts *o, const char *val)
{
    o->sc.host = val;
    return !*val ? "a host name or address" : NULL;
}

static const char *set_port(struct serve_opts *o, const char *val)
{
    return int_value(val, 0, 65535, &o->sc.port, "a port number in [0, 65535]");
}

static const char *set_api_key(struct serve_opts *o, const char *val)
{
    o->sc.api_key = val;
    return !*val || strlen(val) > 256 ? "a non-empty key of at most 256 bytes" : NULL;
}

static const char *set_max_body_bytes(struct serve_opts *o, const char *val)
{
    uint64_t u;
    if (parse_size(val, &u) != 0 || u < 1024 || u > (1ull << 32))
        return "a size between 1KiB and 4GiB";
    o->sc.max_body_bytes = (size_t)u;
    return NULL;
}

static const char *set_drain_timeout(struct serve_opts *o, const char *val)
{
    double d;
    if (parse_double(val, &d) != 0 || !(d >= 0 && d <= 86400))
        return "seconds in [0, 86400]";
    o->sc.drain_grace_s = d;
    return NULL;
}

static const char *set_max_model_len(struct serve_opts *o, const char *val)
{
    return int_value(val, 1, 1 << 24, &o->ec.max_model_len,
                     "a positive token count such as 2048, 2k or 2K");
}

static const char *set_block_size(struct serve_opts *o, const char *val)
{
    return int_value(val, 1, 1024, &o->ec.block_size, "an integer in [1, 1024]");
}

static const char *set_device_memory(struct serve_opts *o, const char *val)
{
    return positive_size_value(val, &o->ec.device_memory_bytes,
                               "a positive size such as 4GiB or 512MiB");
}

static const char *set_gpu_memory_utilization(struct serve_opts *o, const char *val)
{
    double d;
    if (parse_double(val, &d) != 0 || !(d > 0 && d <= 1))
        return "a fraction in (0, 1]";
    o->ec.gpu_memory_utilization = d;
    return NULL;
}

static const char *set_kv_cache_memory_bytes(struct serve_opts *o, const char *val)
{
    return positive_size_value(val, &o->ec.kv_cache_memory_bytes, "a positive size such as 64MiB");
}

static const char *set_max_num_seqs(struct serve_opts *o, const char *val)
{
    return int_value(val, 1, 1 << 16, &o->ec.max_num_seqs, "an integer in [1, 65536]");
}

static const char *set_max_num_batched_tokens(struct serve_opts *o, const char *val)
{
    return int_value(val, 1, 1 << 24, &o->ec.max_num_batched_tokens, "a positive integer");
}

static const char *set_warmup(struct serve_opts *o, const char *val)
{
    return engine_warmup_mode_parse(val, &o->ec.warmup) != 0 ? "kernels, shapes or none" : NULL;
}

static const char *set_device(struct serve_opts *o, const char *val)
{
    return engine_device_parse(val, &o->ec.device) != 0 ? "cpu or cuda" : NULL;
}

static const char *set_load_format(struct serve_opts *o, const char *val)
{
    if (!strcmp(val, "mmap"))
        o->load_format = MODEL_LOAD_MMAP;
    else if (!strcmp(val, "read"))
        o->load_format = MODEL_LOAD_READ;
    else
        return "mmap or read";
    return NULL;
}

static const char *set_threads(struct serve_opts *o, const char *val)
{
    return int_value(val, 0, 1024, &o->ec.n_threads,
                     "an integer in [0, 1024] (0 = number of CPUs)");
}

static const char *set_seed(struct serve_opts *o, const char *val)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    o->sc.seed = v;
    o->sc.has_seed = 1;
    return end == val || *end || errno || val[0] == '-' ? "a non-negative integer" : NULL;
}

static const struct serve_flag serve_flags[] = {
    {"--enable-chunked-prefill", 0, chunked_prefill_on},
    {"--no-enable-chunked-prefill", 0, chunked_prefill_off},
    {"--enable-prefix-caching", 0, prefix_caching_on},
    {"--no-enable-prefix-caching", 0, prefix_caching_off},
    {"--enable-prompt-tokens-details", 0, prompt_tokens_details_on},
    {"--enforce-eager", 0, enforce_eager},
    {"--enable-log-requests", 0, log_requests_on},
    {"--disable-log-requests", 0, log_requests_off},
    {"--disable-log-stats", 0, log_stats_off},
    {"--debug-check-invariants", 0, debug_check_invariants_on},
    {"--model", 1, set_model},
    {"--host", 1, set_host},
    {"--port", 1, set_port},
    {"--api-key", 1, set_api_key},
    {"--served-model-name", 1, set_served_model_name},
    {"--block-size", 1, set_block_size},
    {"--gpu-memory-utilization", 1, set_gpu_memory_utilization},
    {"--device-memory", 1, set_device_memory},
    {"--kv-cache-memory-bytes", 1, set_kv_cache_memory_bytes},
    {"--max-model-len", 1, set_max_model_len},
    {"--max-num-seqs", 1, set_max_num_seqs},
    {"--max-num-batched-tokens", 1, set_max_num_batched_tokens},
    {"--load-format", 1, set_load_format},
    {"--threads", 1, set_threads},
    {"--max-body-bytes", 1, set_max_body_bytes},
    {"--seed", 1, set_seed},
    {"--drain-timeout", 1, set_drain_timeout},
    {"--warmup", 1, set_warmup},
    {"--device", 1, set_device},
};

static const struct serve_flag *serve_flag_find(const char *name)
{
    for (size_t k = 0; k < sizeof serve_flags / sizeof serve_flags[0]; k++)
        if (!strcmp(name, serve_flags[k].name))
            return &serve_flags[k];
    return NULL;
}

/* 0 ok, 1 help shown, 2 usage error (message printed). */
static int parse_args(int argc, char **argv, struct serve_opts *o)
{
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        const char *val = NULL;
        char name[64];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(stdout);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            if (i == 1 && !o->model_path) {
                o->model_path = arg;
                continue;
            }
            fprintf(stderr, "serve: unexpected argument '%s'\n\n", arg);
            goto usage_err;
        }
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        if (nlen >= sizeof name) {
            fprintf(stderr, "serve: unknown option '%s'\n\n", arg);
            goto usage_err;
        }
        memcpy(name, arg, nlen);
        name[nlen] = 0;

        const struct serve_flag *f = serve_flag_find(name);
        if (!f) {
            fprintf(stderr, "serve: unknown option '%s'\n\n", name);
            goto usage_err;
        }
        if (!f->takes_value && eq) {
            fprintf(stderr, "serve: option '%s' takes no value\n\n", name);
            goto usage_err;
        }
        if (f->takes_value && eq) {
            val = eq + 1;
        } else if (f->takes_value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "serve: option '%s' needs a value\n\n", name);
                goto usage_err;
            }
            val = argv[++i];
        }
        const char *bad = f->apply(o, val);
        if (bad) {
            fprintf(stderr, "serve: invalid value '%s' for %s: expected %s\n", val, name, bad);
            return 2;
        }
    }
    if (!o->model_path) {
        fprintf(stderr, "serve: --model FILE.gguf is required\n\n");
        goto usage_err;
    }
    return 0;

usage_err:
    usage(stderr);
    return 2;
}

/* "dir/tiny.gguf" -> "tiny" */
static void default_model_name(const char *path, char *out, size_t out_len)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf"))
        n -= 5;
    if (n == 0) {
        base = "model";
        n = 5;
    }
    if (n >= out_len)
        n = out_len - 1;
    memcpy(out, base, n);
    out[n] = 0;
}

int cmd_serve(int argc, char **argv)
{
    struct serve_opts o;
    memset(&o, 0, sizeof o);
    server_config_defaults(&o.sc);
    engine_config_defaults(&o.ec);
    o.load_format = MODEL_LOAD_MMAP;
    int rc = parse_args(argc, argv, &o);
    if (rc == 1)
        return 0;
    if (rc != 0)
        return rc;

    char name[300];
    if (!o.sc.served_model_name) {
        default_model_name(o.model_path, name, sizeof name);
        o.sc.served_model_name = name;
    }
    o.sc.model_path = o.model_path;

    log_set_timestamps(1);
    log_info("serve", "slmprobe API server version %s", SLMPROBE_VERSION);

    char err[1024];
    if (o.ec.device == ENGINE_DEVICE_CUDA) {
        /* before binding or loading anything: a CPU build or a machine without a GPU says so */
        struct dev_props p;
        mono_ns t_probe = clock_now_ns();
        if (dev_probe(o.ec.device_ordinal, &p, err, sizeof err) != 0) {
            log_error("serve", "--device cuda: %s", err);
            return 1;
        }
        log_info("serve", "CUDA initialised in %.3f seconds (cuda:%d, %s)",
                 ns_to_s(clock_now_ns() - t_probe), p.ordinal, p.name);
    }
    struct model *model = NULL;
    struct engine *engine = NULL;
    int engine_started = 0;
    rc = 1;
    struct server *srv = server_new(&o.sc, err, sizeof err);
    if (!srv) {
        log_error("serve", "%s", err);
        return 1;
    }
    if (server_start(srv) != 0) {
        log_error("serve", "cannot start the HTTP thread");
        goto out;
    }

    log_info("serve", "Starting to load model %s...", o.model_path);
    mono_ns t0 = clock_now_ns();
    model = model_load(o.model_path, o.load_format, err, sizeof err);
    mono_ns t1 = clock_now_ns();
    if (!model) {
        log_error("serve", "cannot load model %s: %s", o.model_path, err);
        goto out;
    }
    log_info("serve",
             "Loading weights took %.2f seconds (open+map %.3f s, first touch %.3f s, to f32 "
             "%.3f s, load format %s)",
             ns_to_s(t1 - t0), ns_to_s(model->load.open_ns), ns_to_s(model->load.touch_ns),
             ns_to_s(model->load.convert_ns), o.load_format == MODEL_LOAD_MMAP ? "mmap" : "read");
    if (o.ec.device == ENGINE_DEVICE_CUDA)
        o.ec.host_load_ns = t1 - t0; /* engine_new logs the line once the weights are on the GPU */
    else
        log_info("serve", "Model loading took %.4f GiB and %.6f seconds",
                 (double)model->weight_bytes / 1073741824.0, ns_to_s(t1 - t0));
    if (server_stop_requested(srv))
        goto stopped;

    mono_ns t2 = clock_now_ns();
    engine = engine_new(&o.ec, model, err, sizeof err);
    if (!engine) {
        log_error("serve", "%s", err);
        goto out;
    }
    if (server_stop_requested(srv))
        goto stopped;
    engine_warmup(engine);
    if (engine_start(engine) != 0) {
        log_error("serve", "cannot start the engine thread");
        goto out;
    }
    engine_started = 1;
    /* as vLLM's: profile, KV cache, warm-up; on cuda the weights' upload inside engine_new
     * belongs to "Model loading took", not here */
    struct engine_info info;
    engine_get_info(engine, &info);
    log_info("serve", "init engine (profile, create kv cache, warmup model) took %.2f seconds",
             ns_to_s(clock_now_ns() - t2 - info.dev_load_ns));
    if (server_stop_requested(srv))
        goto stopped;

    const char *host = o.sc.host;
    if (strchr(host, ':'))
        log_info("serve", "Starting vLLM API server 0 on http://[%s]:%d", host, server_port(srv));
    else
        log_info("serve", "Starting vLLM API server 0 on http://%s:%d", host, server_port(srv));
    if (server_set_ready(srv, engine, model) != 0)
        goto stopped;
    log_info("serve", "Application startup complete.");
    server_wait(srv);
    log_info("serve", "Waiting for application shutdown.");
    rc = 0;
    goto out;

stopped:
    log_info("serve", "Shutting down: stop requested during start-up");
    server_wait(srv); /* the loop exits by itself after the signal */
    rc = 0;
out:
    /* on errors server_free stops the loop; after server_wait it has already exited */
    if (engine_started)
        engine_stop(engine);
    server_free(srv);
    engine_free(engine);
    model_free(model);
    if (rc == 0)
        log_info("serve", "Application shutdown complete.");
    return rc;
}
