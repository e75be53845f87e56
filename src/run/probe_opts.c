/* probe_opts: the target and client options every probe command shares (see probe_opts.h).
 * One pass over argv: shared options are consumed, everything else is handed back in order;
 * defaults that depend on --server are resolved at the end. No files are touched here. */
#include "run/probe_opts.h"

#include "engine/model.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "run/model_default.h"
#include "util/buf.h"

#define PROBE_OPTS_DEFAULT_TIMEOUT_MS 600000L
/* For --help only; the path itself comes from run/model_default.h. */
#define PROBE_OPTS_DEFAULT_MODEL "~/.local/share/" MODEL_DEFAULT_REL

void probe_opts_help(FILE *f)
{
    fputs(
        "server options (shared by every probe):\n"
        "  --server embedded|vllm|llamacpp|sglang  server to launch (default embedded)\n"
        "  --model PATH|ID           model file or HF id (embedded default: $SLMPROBE_MODEL,\n"
        "                            else " PROBE_OPTS_DEFAULT_MODEL "\n"
        "                            under $XDG_DATA_HOME if set, generated when missing;\n"
        "                            required for the others unless --url or --serve-cmd;\n"
        "                            with --url: the \"model\" name sent in requests)\n"
        "  --url URL                 probe an already-running server (no launch, warm-only)\n"
        "  --serve-cmd \"ARGV...\"     launch this command instead of the built one (split on\n"
        "                            spaces; '...' and \"...\" group words; no shell)\n"
        "  --host HOST               bind/connect host (default 127.0.0.1)\n"
        "  --port N                  port (default 8000; embedded: a free port)\n"
        "  --max-model-len N         context length passed to the server\n"
        "  --gpu-memory-utilization F  fraction of (device) memory for the server (0 < F <= 1)\n"
        "  --prefix-caching on|off|default  prefix/radix/prompt cache flag (default: server's)\n"
        "  --served-model-name NAME  name the server serves (and the client sends)\n"
        "  --api-key KEY             API key for the server and the client\n"
        "  --endpoint completions|chat  /v1/completions or /v1/chat/completions (default\n"
        "                            completions)\n"
        "  --timeout SECONDS         per request (default 600)\n"
        "  --ready-timeout SECONDS   start-up deadline (default 600 for vllm/sglang, 120 others)\n"
        "  --stop-grace SECONDS      SIGTERM -> SIGKILL grace (default 10)\n"
        "  --log FILE                server log (default OUT/server.log); a probe that\n"
        "                            launches several times names the others after FILE's\n"
        "                            stem (FILE_r2.log, FILE_len2048.log, ...)\n"
        "  --out DIR                 results directory (default results)\n"
        "  --drop-caches             root only: drop the page cache before launch (storage-cold)\n"
        "  --cold-storage            evict only the model's own files from the page cache before\n"
        "                            each launch (fsync + fadvise DONTNEED; no root needed)\n"
        "  -- ARGS...                extra flags for the server\n",
        f);
}

/* ---- splitting ---- */

int probe_opts_split(const char *line, char ***argv_out, int *argc_out, char *err, size_t err_len)
{
    size_t len = strlen(line);
    char *tmp = xmalloc(len + 1);
    size_t o = 0;
    int n = 0, in_word = 0;
    const char *p = line;
    *argv_out = NULL;
    *argc_out = 0;
    /* pass 1: words into tmp, each NUL-terminated */
    while (*p) {
        char c = *p;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (in_word) {
                tmp[o++] = 0;
                n++;
                in_word = 0;
            }
            p++;
            continue;
        }
        in_word = 1;
        if (c == '\'') {
            const char *q = strchr(p + 1, '\'');
            if (!q) {
                snprintf(err, err_len, "unbalanced ' in command: %s", line);
                free(tmp);
                return -1;
            }
            memcpy(tmp + o, p + 1, (size_t)(q - p - 1));
            o += (size_t)(q - p - 1);
            p = q + 1;
        } else if (c == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
                    p++;
                tmp[o++] = *p++;
            }
            if (*p != '"') {
                snprintf(err, err_len, "unbalanced \" in command: %s", line);
                free(tmp);
                return -1;
            }
            p++;
        } else if (c == '\\' && p[1]) {
            tmp[o++] = p[1];
            p += 2;
        } else {
            tmp[o++] = c;
            p++;
        }
    }
    if (in_word) {
        tmp[o++] = 0;
        n++;
    }
    if (n == 0) {
        snprintf(err, err_len, "empty command");
        free(tmp);
        return -1;
    }
    /* pass 2: one block, pointers then strings */
    size_t ptr_bytes = ((size_t)n + 1) * sizeof(char *);
    char **argv = xmalloc(ptr_bytes + o);
    char *strs = (char *)argv + ptr_bytes;
    memcpy(strs, tmp, o);
    free(tmp);
    char *s = strs;
    for (int i = 0; i < n; i++) {
        argv[i] = s;
        s += strlen(s) + 1;
    }
    argv[n] = NULL;
    *argv_out = argv;
    *argc_out = n;
    return 0;
}

void probe_opts_split_free(char **argv)
{
    free(argv);
}

/* ---- parsing ---- */

void probe_opts_free(struct probe_opts *o)
{
    if (!o)
        return;
    free(o->log_path_);
    free(o->model_path_);
    o->model_path_ = NULL;
    probe_opts_split_free(o->serve_cmd_);
    o->log_path_ = NULL;
    o->serve_cmd_ = NULL;
    o->target.serve_cmd = NULL;
    o->target.n_serve_cmd = 0;
    o->target.log_path = NULL;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* Seconds (fractional allowed, > 0) to milliseconds. */
static int parse_seconds_ms(const char *s, long *ms)
{
    double v;
    if (parse_double(s, &v) != 0 || v <= 0 || v > 1e7)
        return -1;
    *ms = (long)llround(v * 1000.0);
    if (*ms < 1)
        *ms = 1;
    return 0;
}

/* The embedded default model (run/model_default.h): resolved, and generated when missing. */
static int default_model(struct probe_opts *o, char *err, size_t err_len)
{
    char path[4096];
    int from_env;
    enum model_default_status st = model_default_path(path, sizeof path, &from_env);
    if (st == MODEL_DEFAULT_OK && !from_env)
        st = model_default_ensure(path, err, err_len);
    else if (st != MODEL_DEFAULT_OK)
        snprintf(err, err_len, "default model: %s (give --model)", model_default_status_str(st));
    if (st != MODEL_DEFAULT_OK)
        return -1;
    o->model_path_ = xstrdup(path);
    return 0;
}

enum opt_id {
    OPT_SERVER,
    OPT_MODEL,
    OPT_URL,
    OPT_SERVE_CMD,
    OPT_HOST,
    OPT_PORT,
    OPT_MAX_MODEL_LEN,
    OPT_GPU_UTIL,
    OPT_PREFIX,
    OPT_SERVED_NAME,
    OPT_API_KEY,
    OPT_ENDPOINT,
    OPT_TIMEOUT,
    OPT_READY_TIMEOUT,
    OPT_STOP_GRACE,
    OPT_LOG,
    OPT_OUT,
    OPT_DROP_CACHES,
    OPT_COLD_STORAGE,
};

static const struct {
    const char *name;
    enum opt_id id;
    int has_value;
} opts[] = {
    {"--server", OPT_SERVER, 1},
    {"--model", OPT_MODEL, 1},
    {"--url", OPT_URL, 1},
    {"--serve-cmd", OPT_SERVE_CMD, 1},
    {"--host", OPT_HOST, 1},
    {"--port", OPT_PORT, 1},
    {"--max-model-len", OPT_MAX_MODEL_LEN, 1},
    {"--gpu-memory-utilization", OPT_GPU_UTIL, 1},
    {"--prefix-caching", OPT_PREFIX, 1},
    {"--served-model-name", OPT_SERVED_NAME, 1},
    {"--api-key", OPT_API_KEY, 1},
    {"--endpoint", OPT_ENDPOINT, 1},
    {"--timeout", OPT_TIMEOUT, 1},
    {"--ready-timeout", OPT_READY_TIMEOUT, 1},
    {"--stop-grace", OPT_STOP_GRACE, 1},
    {"--log", OPT_LOG, 1},
    {"--out", OPT_OUT, 1},
    {"--drop-caches", OPT_DROP_CACHES, 0},
    {"--cold-storage", OPT_COLD_STORAGE, 0},
};

/* Formats the error into err and returns -1, so a check can fail in one statement. */
static int opt_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int opt_err(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -1;
}

/* The shared options as given, before the --server defaults are applied. */
struct raw_opts {
    const char *server, *model, *url, *serve_cmd, *host, *served, *api_key, *log, *out;
    long port, max_model_len, timeout_ms, ready_ms, grace_ms;
    double gpu_util;
    enum target_prefix_cache prefix;
    enum client_api api;
    int drop, cold;
    char **extra;
    int n_extra;
};

/* Stores one shared option's value v (NULL for a flag) in r; -1 with err on a bad value. */
static int raw_opts_set(struct raw_opts *r, int id, const char *v, char *err, size_t err_len)
{
    switch (id) {
    case OPT_SERVER:
        r->server = v;
        break;
    case OPT_MODEL:
        r->model = v;
        break;
    case OPT_URL:
        r->url = v;
        break;
    case OPT_SERVE_CMD:
        r->serve_cmd = v;
        break;
    case OPT_HOST:
        r->host = v;
        break;
    case OPT_SERVED_NAME:
        r->served = v;
        break;
    case OPT_API_KEY:
        r->api_key = v;
        break;
    case OPT_LOG:
        r->log = v;
        break;
    case OPT_OUT:
        r->out = v;
        break;
    case OPT_DROP_CACHES:
        r->drop = 1;
        break;
    case OPT_COLD_STORAGE:
        r->cold = 1;
        break;
    case OPT_PORT:
        if (parse_int(v, 0, 65535, &r->port) != 0)
            return opt_err(err, err_len, "--port: expected 0..65535, got '%s'", v);
        break;
    case OPT_MAX_MODEL_LEN:
        if (parse_int(v, 1, 100000000, &r->max_model_len) != 0)
            return opt_err(err, err_len, "--max-model-len: expected a positive integer, got '%s'",
                           v);
        break;
    case OPT_GPU_UTIL:
        if (parse_double(v, &r->gpu_util) != 0 || r->gpu_util <= 0 || r->gpu_util > 1)
            return opt_err(err, err_len, "--gpu-memory-utilization: expected 0 < F <= 1, got '%s'",
                           v);
        break;
    case OPT_PREFIX:
        if (!strcmp(v, "on"))
            r->prefix = TARGET_PREFIX_CACHE_ON;
        else if (!strcmp(v, "off"))
            r->prefix = TARGET_PREFIX_CACHE_OFF;
        else if (!strcmp(v, "default"))
            r->prefix = TARGET_PREFIX_CACHE_DEFAULT;
        else
            return opt_err(err, err_len, "--prefix-caching: expected on|off|default, got '%s'", v);
        break;
    case OPT_ENDPOINT:
        if (!strcmp(v, "completions"))
            r->api = CLIENT_API_COMPLETIONS;
        else if (!strcmp(v, "chat"))
            r->api = CLIENT_API_CHAT;
        else
            return opt_err(err, err_len, "--endpoint: expected completions|chat, got '%s'", v);
        break;
    case OPT_TIMEOUT:
        if (parse_seconds_ms(v, &r->timeout_ms) != 0)
            return opt_err(err, err_len, "--timeout: expected seconds > 0, got '%s'", v);
        break;
    case OPT_READY_TIMEOUT:
        if (parse_seconds_ms(v, &r->ready_ms) != 0)
            return opt_err(err, err_len, "--ready-timeout: expected seconds > 0, got '%s'", v);
        break;
    case OPT_STOP_GRACE:
        if (parse_seconds_ms(v, &r->grace_ms) != 0)
            return opt_err(err, err_len, "--stop-grace: expected seconds > 0, got '%s'", v);
        break;
    }
    return 0;
}

/* Checks the combination in r and fills o (o->target with the --server defaults under it). */
static int raw_opts_resolve(const struct raw_opts *r, struct probe_opts *o, char *err,
                            size_t err_len)
{
    enum target_kind kind;
    if (target_kind_parse(r->server, &kind) != 0)
        return opt_err(err, err_len, "--server: expected embedded|vllm|llamacpp|sglang, got '%s'",
                       r->server);
    if (r->url && r->serve_cmd)
        return opt_err(err, err_len, "--url and --serve-cmd exclude each other");
    if (r->url && (r->drop || r->cold))
        return opt_err(err, err_len, "%s needs a server we launch (not --url)",
                       r->drop ? "--drop-caches" : "--cold-storage");
    if (r->url && strncmp(r->url, "http://", 7) && strncmp(r->url, "https://", 8))
        return opt_err(err, err_len, "--url: expected http://HOST:PORT, got '%s'", r->url);
    target_config_defaults(&o->target, kind);
    struct target_config *t = &o->target;
    const char *model = r->model;
    if (!model && !r->url && !r->serve_cmd) {
        if (kind != TARGET_KIND_EMBEDDED)
            return opt_err(err, err_len,
                           "--model is required with --server %s (or give --url / --serve-cmd)",
                           target_kind_str(kind));
        if (default_model(o, err, err_len) != 0)
            return -1;
        model = o->model_path_;
    }
    t->model = r->url ? NULL : model;
    t->url = r->url;
    if (r->host)
        t->host = r->host;
    if (r->port >= 0)
        t->port = (int)r->port;
    else
        t->port = kind == TARGET_KIND_EMBEDDED && !r->serve_cmd ? 0 : 8000;
    o->port_given = r->port >= 0;
    t->max_model_len = (int)r->max_model_len;
    t->gpu_memory_utilization = r->gpu_util;
    t->prefix_cache = r->prefix;
    t->api_key = r->api_key;
    t->served_name = r->served;
    t->extra_args = r->extra;
    t->n_extra_args = r->n_extra;
    if (r->ready_ms > 0)
        t->ready_timeout_ms = r->ready_ms;
    if (r->grace_ms > 0)
        t->stop_grace_ms = r->grace_ms;
    t->drop_caches = r->drop;
    t->cold_storage = r->cold;
    if (r->serve_cmd) {
        if (probe_opts_split(r->serve_cmd, &o->serve_cmd_, &t->n_serve_cmd, err, err_len) != 0) {
            char why[256]; /* err says why; prefix it */
            snprintf(why, sizeof why, "%s", err);
            return opt_err(err, err_len, "--serve-cmd: %s", why);
        }
        t->serve_cmd = o->serve_cmd_;
    }
    if (r->log) {
        t->log_path = r->log;
    } else {
        size_t n = strlen(r->out) + sizeof "/server.log";
        o->log_path_ = xmalloc(n);
        snprintf(o->log_path_, n, "%s/server.log", r->out);
        t->log_path = o->log_path_;
    }
    o->api = r->api;
    o->timeout_ms = r->timeout_ms;
    o->model_name = r->served ? r->served : (r->url ? model : NULL);
    o->out_dir = r->out;
    return 0;
}

/* Index into opts[] of the option a names (before any "="), or -1. */
static int opt_find(const char *a, size_t name_len)
{
    for (size_t j = 0; j < sizeof opts / sizeof opts[0]; j++)
        if (strlen(opts[j].name) == name_len && !strncmp(a, opts[j].name, name_len))
            return (int)j;
    return -1;
}

int probe_opts_parse(int argc, char **argv, struct probe_opts *o, int *argc_rest, char **argv_rest,
                     char *err, size_t err_len)
{
    struct raw_opts r = {.server = "embedded",
                         .out = "results",
                         .port = -1,
                         .timeout_ms = PROBE_OPTS_DEFAULT_TIMEOUT_MS,
                         .prefix = TARGET_PREFIX_CACHE_DEFAULT,
                         .api = CLIENT_API_COMPLETIONS};
    int n_rest = 0, rc = -1;

    memset(o, 0, sizeof *o);
    if (err_len)
        err[0] = 0;
    if (argc > 0)
        argv_rest[n_rest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            r.extra = argv + i + 1;
            r.n_extra = argc - i - 1;
            break;
        }
        size_t name_len = strcspn(a, "=");
        int k = opt_find(a, name_len);
        if (k < 0) {
            argv_rest[n_rest++] = argv[i];
            continue;
        }
        const char *v = NULL;
        if (opts[k].has_value) {
            if (a[name_len] == '=') {
                v = a + name_len + 1;
            } else if (i + 1 < argc) {
                v = argv[++i];
            } else {
                snprintf(err, err_len, "%s needs a value", opts[k].name);
                goto out;
            }
        } else if (a[name_len] == '=') {
            snprintf(err, err_len, "%s takes no value", opts[k].name);
            goto out;
        }
        if (raw_opts_set(&r, opts[k].id, v, err, err_len) != 0)
            goto out;
    }
    rc = raw_opts_resolve(&r, o, err, err_len);
out:
    argv_rest[n_rest] = NULL;
    *argc_rest = n_rest;
    return rc;
}

void probe_opts_client_config(const struct probe_opts *o, const char *base_url,
                              struct client_config *out)
{
    memset(out, 0, sizeof *out);
    out->base_url = base_url;
    out->api_key = o->target.api_key;
    out->model = o->model_name;
    out->api = o->api;
    out->timeout_ms = o->timeout_ms;
    out->max_connections = 0;
}

int probe_opts_parse_int(const char *name, const char *v, long lo, long hi, int *out, char *err,
                         size_t err_len)
{
    long x;
    if (!v || parse_int(v, lo, hi, &x) != 0 || x < INT_MIN || x > INT_MAX) {
        snprintf(err, err_len, "%s: expected an integer in [%ld, %ld], got '%s'", name, lo, hi,
                 v ? v : "");
        return -1;
    }
    *out = (int)x;
    return 0;
}

int probe_opts_parse_double(const char *name, const char *v, double lo, double hi, double *out,
                            char *err, size_t err_len)
{
    double x;
    if (!v || parse_double(v, &x) != 0 || x < lo || x > hi) {
        snprintf(err, err_len, "%s: expected a number in [%g, %g], got '%s'", name, lo, hi,
                 v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

int probe_opts_parse_int_list(const char *name, const char *v, long lo, long hi, int *out, int cap,
                              int *n_out, char *err, size_t err_len)
{
    int n = 0;
    for (const char *p = v ? v : ""; *p;) {
        char item[32];
        size_t len = strcspn(p, ",");
        if (!len || len >= sizeof item || n == cap) {
            snprintf(err, err_len,
                     "%s: expected up to %d comma-separated integers in [%ld, %ld], "
                     "got '%s'",
                     name, cap, lo, hi, v);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (probe_opts_parse_int(name, item, lo, hi, &out[n++], err, err_len) != 0)
            return -1;
        p += len + (p[len] == ',');
    }
    if (!n) {
        snprintf(err, err_len, "%s: empty list", name);
        return -1;
    }
    *n_out = n;
    return 0;
}

int probe_tokens_are_bytes(const struct target_config *t)
{
    if (t->kind != TARGET_KIND_EMBEDDED)
        return 0;
    if (!t->model || !t->model[0])
        return 1; /* the default model: slmprobe's vocabulary */
    struct model_file_info mi;
    char err[256];
    if (model_file_info(t->model, &mi, err, sizeof err) != 0)
        return 1; /* not a readable file (a --url model name): the launch or the server says */
    return mi.tok_kind == TOK_KIND_SLM;
}
