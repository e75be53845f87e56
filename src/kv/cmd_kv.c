/* cmd_kv: `slmprobe kv`, the argv side of the KV cache scaling probe: the shared options
 * (run/probe_opts.h), the probe's own (--lengths, the --gpu-memory-utilization list, theory and
 * verify options), then kv_run / kv_analyse / kv_report / kv_write_outputs on one session. It
 * measures and computes nothing itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "kv/kv_probe.h"
#include "run/probe_opts.h"
#include "run/session.h"
#include "util/buf.h"
#include "util/log.h"

#define MOD "kv"

static void kv_usage(FILE *f)
{
    fprintf(f,
            "usage: slmprobe kv [--lengths 512,1024,...] [options] [shared options] [-- ARGS]\n"
            "\n"
            "KV cache capacity and memory vs max-model-len: one server launch per length (and\n"
            "per utilisation), memory, KV capacity and max concurrency read at ready, a linear\n"
            "fit against the theoretical bytes per KV token, the regime (pre-allocating or\n"
            "per-context), step changes and a headroom envelope. Writes kv_cache_scaling.csv,\n"
            "kv_cache_scaling_notes.md/.html, kv.json, kv_scaling.sh and server_len*.log.\n"
            "\n"
            "kv options:\n"
            "  --lengths LIST            max-model-len values, comma-separated positive integers\n"
            "                            [powers of two from 512 to the model's context length]\n"
            "  --gpu-memory-utilization LIST  second axis, fractions in (0,1] (vLLM, SGLang,\n"
            "                            embedded; not llama.cpp) [the server's default]\n"
            "  --model-config FILE       config.json for the theory [GGUF header, or\n"
            "                            MODEL/config.json]\n"
            "  --kv-cache-dtype DTYPE    f16|bf16|fp8|f32: theory dtype, passed to vLLM/SGLang\n"
            "                            (--kv-cache-dtype) and llama.cpp (-ctk) [auto]\n"
            "  --concurrency N           concurrent full-length requests wanted, for the safe\n"
            "                            length and the picks [8]\n"
            "  --verify                  at each length send the claimed number of concurrent\n"
            "                            max-length requests, then one more, and report whether\n"
            "                            they ran concurrently or queued/preempted\n"
            "  --verify-max N            cap on verify concurrency [32]\n"
            "  --verify-output-tokens N  max_tokens of verify requests [4]\n"
            "  --resume                  skip lengths already in OUT/kv_cache_scaling.csv\n"
            "  -h, --help\n"
            "With --serve-cmd, {max_model_len} and {gpu_memory_utilization} in the command are\n"
            "replaced per launch; without them the kind's flag is appended (-c for llamacpp).\n"
            "\n"
            "shared options:\n");
    probe_opts_help(f);
}

static int int_arg(const char *v, int lo, int *out, char *err, size_t err_len, const char *name)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > 1000000) {
        snprintf(err, err_len, "%s: '%s' is not an integer >= %d", name, v, lo);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* Puts prefix in front of the message in err (truncating the message if needed). */
static void err_prefix(char *err, size_t err_len, const char *prefix)
{
    size_t pl = strlen(prefix), el = strlen(err);
    if (pl + 1 >= err_len)
        return;
    if (pl + el + 1 > err_len)
        el = err_len - pl - 1;
    memmove(err + pl, err, el);
    memcpy(err, prefix, pl);
    err[pl + el] = 0;
}

/* "--opt=value" or "--opt value": the value, or NULL (not this option). Advances *i. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, int *missing)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != 0)
        return NULL;
    if (*i + 1 >= argc) {
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

/* The probe's own options from what probe_opts handed back. 0, 1 (--help), -1 (err). */
static int kv_opts_parse(int argc, char **argv, struct kv_opts *o, char *err, size_t err_len)
{
    for (int i = 1; i < argc; i++) {
        int miss = 0;
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
        if (!strcmp(argv[i], "--verify")) {
            o->verify = 1;
        } else if (!strcmp(argv[i], "--resume")) {
            o->resume = 1;
        } else if ((v = opt_value(argc, argv, &i, "--lengths", &miss))) {
            if (kv_lengths_parse(v, o->lengths, KV_MAX_LENGTHS, &o->n_lengths, err,
                                 err_len) != 0) {
                err_prefix(err, err_len, "--lengths: ");
                return -1;
            }
        } else if ((v = opt_value(argc, argv, &i, "--model-config", &miss))) {
            o->model_config = v;
        } else if ((v = opt_value(argc, argv, &i, "--kv-cache-dtype", &miss))) {
            if (strcmp(v, "auto") != 0 && kv_dtype_bytes(v) < 0) {
                snprintf(err, err_len, "--kv-cache-dtype: unknown dtype '%s'", v);
                return -1;
            }
            o->kv_cache_dtype = strcmp(v, "auto") ? v : NULL;
        } else if ((v = opt_value(argc, argv, &i, "--concurrency", &miss))) {
            if (int_arg(v, 1, &o->concurrency, err, err_len, "--concurrency") != 0)
                return -1;
        } else if ((v = opt_value(argc, argv, &i, "--verify-max", &miss))) {
            if (int_arg(v, 1, &o->verify_max, err, err_len, "--verify-max") != 0)
                return -1;
        } else if ((v = opt_value(argc, argv, &i, "--verify-output-tokens", &miss))) {
            if (int_arg(v, 1, &o->verify_output_tokens, err, err_len,
                        "--verify-output-tokens") != 0)
                return -1;
        } else {
            snprintf(err, err_len, miss ? "%s needs a value" : "unknown option '%s' (see --help)",
                     argv[i]);
            return -1;
        }
    }
    return 0;
}

/* Takes the --gpu-memory-utilization list out of argv (the shared parser takes one number). */
static int take_utils(int *argc, char **argv, struct kv_opts *o, char *err, size_t err_len)
{
    int w = 0;
    for (int i = 0; i < *argc; i++) {
        int miss = 0;
        if (!strcmp(argv[i], "--")) {
            while (i < *argc)
                argv[w++] = argv[i++];
            break;
        }
        const char *v = i > 0 ? opt_value(*argc, argv, &i, "--gpu-memory-utilization", &miss)
                              : NULL;
        if (miss) {
            snprintf(err, err_len, "--gpu-memory-utilization needs a value");
            return -1;
        }
        if (!v) {
            argv[w++] = argv[i];
            continue;
        }
        if (kv_utils_parse(v, o->utils, KV_MAX_UTILS, &o->n_utils, err, err_len) != 0) {
            err_prefix(err, err_len, "--gpu-memory-utilization: ");
            return -1;
        }
    }
    *argc = w;
    argv[w] = NULL;
    return 0;
}

static int kv_execute(const struct kv_opts *o, struct probe_opts *po, int argc, char **argv)
{
    char err[1024];
    struct session s;
    struct kv_result res;
    kv_result_init(&res);
    int rc = PROBE_EXIT_FAILED;
    if (session_init(&s, po, argc, argv, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        goto done;
    }
    if (o->resume) {
        char path[1200];
        session_path(&s, "kv_cache_scaling.csv", path, sizeof path);
        int n = kv_csv_load(path, &res, err, sizeof err);
        if (n < 0) {
            log_error(MOD, "--resume: %s", err);
            rc = PROBE_EXIT_USAGE;
            goto done;
        }
        log_info(MOD, "--resume: %d finished rows kept from %s", n, path);
    }
    int failed = kv_run(o, &s, &res);
    kv_analyse(&res);
    struct report *r = report_new("KV cache capacity and memory vs max-model-len");
    report_meta(r, "command", "%s", s.command_line);
    report_meta(r, "started", "%s", s.started_at);
    kv_report(&res, r);
    if (kv_write_outputs(&res, r, s.out_dir, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        failed = 1;
    } else {
        log_info(MOD, "wrote %s/kv_cache_scaling.csv, kv_cache_scaling_notes.md/.html, kv.json, "
                      "kv_scaling.sh; regime %s",
                 s.out_dir, kv_regime_str(res.regime));
    }
    if (res.failure[0])
        log_error(MOD, "%s", res.failure);
    report_free(r);
    rc = session_exit_code(&s, failed);
done:
    kv_result_free(&res);
    session_free(&s);
    return rc;
}

int cmd_kv(int argc, char **argv)
{
    char err[1024];
    struct kv_opts o;
    kv_opts_defaults(&o);
    struct probe_opts po;
    memset(&po, 0, sizeof po);
    char **args = xcalloc((size_t)argc + 1, sizeof *args);
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    memcpy(args, argv, (size_t)argc * sizeof *args);
    int n_args = argc, n_rest = 0, rc = PROBE_EXIT_USAGE;
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            kv_usage(stdout);
            rc = 0;
            goto done;
        }
    }
    if (take_utils(&n_args, args, &o, err, sizeof err) != 0 ||
        probe_opts_parse(n_args, args, &po, &n_rest, rest, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        goto done;
    }
    int pr = kv_opts_parse(n_rest, rest, &o, err, sizeof err);
    if (pr != 0) {
        if (pr == 1)
            kv_usage(stdout);
        else
            log_error(MOD, "%s", err);
        rc = pr == 1 ? 0 : PROBE_EXIT_USAGE;
        goto done;
    }
    if (po.target.max_model_len > 0) {
        log_error(MOD, "--max-model-len is set per launch: give the values with --lengths");
        goto done;
    }
    rc = kv_execute(&o, &po, argc, argv);
done:
    probe_opts_free(&po);
    free(rest);
    free(args);
    return rc;
}
