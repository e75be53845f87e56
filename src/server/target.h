/* target: the lifecycle of the server under test. Builds the launch argv for the embedded runtime,
 * vLLM, llama.cpp or SGLang from ONE set of options, checks the port is free, launches the server
 * (fork + execvp, never a shell) in its own process group with stdout/stderr to a log file, polls
 * it until ready (TCP connect, GET /health 200, GET /v1/models 200) while recording a timeline and
 * following the start-up log (logparse.h), and stops it (SIGTERM to the group, SIGKILL after a
 * grace period, reap). A process-wide registry of launched groups guarantees no orphans: atexit and
 * a second Ctrl-C kill every registered group. With `url` set it only probes an already-running
 * server (no launch, no stop: warm-only measurements). It does not send completions (client.h),
 * scrape /metrics (promscrape.h) or sample CPU/GPU (telemetry.h).
 *
 *   target_install_signal_handlers();            // once, main thread, before any launch
 *   struct target_config cfg;
 *   target_config_defaults(&cfg, TARGET_KIND_EMBEDDED);
 *   cfg.model = "models/tiny.gguf"; cfg.log_path = "results/server.log";
 *   char err[1024];
 *   struct target *t = target_new(&cfg);
 *   if (target_start(t, err, sizeof err) != TARGET_OK) { log_error("ttft", "%s", err); ... }
 *   ... requests against t->base_url; poll target_alive(t) and target_interrupted() ...
 *   struct target_stop_result sr;
 *   target_stop(t, &sr);
 *   target_free(t);                               // stops it too if still running
 *
 * Secrets: the API key never appears in what target prints, logs or returns: commands go through
 * target_cmdline / redact_argv_join, and error messages, t->startup.error_message and the
 * timeline lines have every occurrence of the key replaced by "***" (redact_secret_in).
 *
 * Threads: one thread owns a struct target (the main thread). target_interrupted(),
 * target_signal_fd() and the registry are safe from any thread. */
#ifndef SLM_PROBE_TARGET_H
#define SLM_PROBE_TARGET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/logparse.h"
#include "util/buf.h"
#include "util/clock.h"

enum target_kind {
    TARGET_KIND_EMBEDDED = 0, /* `slmprobe serve` (vLLM's flags and log wording) */
    TARGET_KIND_VLLM,
    TARGET_KIND_LLAMACPP,
    TARGET_KIND_SGLANG,
    TARGET_KIND__COUNT
};
const char *target_kind_str(enum target_kind k); /* "embedded", "vllm", "llamacpp", "sglang" */
/* Parses "embedded"|"vllm"|"llamacpp"|"llama.cpp"|"sglang". 0, or -1 if unknown. */
int target_kind_parse(const char *s, enum target_kind *out);

enum target_prefix_cache {
    TARGET_PREFIX_CACHE_DEFAULT = 0, /* pass nothing: the server's default (on for all four) */
    TARGET_PREFIX_CACHE_ON,
    TARGET_PREFIX_CACHE_OFF,
};

/* What each kind can do, and how (static data, never NULL strings unless said). */
struct target_kind_caps {
    int has_metrics;                  /* serves /metrics once launched with our argv */
    const char *metrics_flag;         /* flag we add for metrics ("--metrics"), or NULL: on by default */
    const char *prefix_cache_on_flag; /* e.g. "--enable-prefix-caching"; NULL: no flag (default on) */
    const char *prefix_cache_off_flag;/* "--no-enable-prefix-caching", "--disable-radix-cache", "--no-cache-prompt" */
    const char *prefix_cache_off_json;/* per-request member that also turns it off, or NULL:
                                         llama.cpp "\"cache_prompt\":false" */
    int port_open_while_loading;      /* llama.cpp, SGLang: 503 while loading; vLLM: refused */
    const char *version_path;         /* "/version", or "/props" for llama.cpp (build_info) */
};
const struct target_kind_caps *target_kind_caps(enum target_kind k);

enum target_state {
    TARGET_STATE_STARTING = 0, /* launched, port not open yet */
    TARGET_STATE_LOADING,      /* port open, /health or /v1/models not 200 yet */
    TARGET_STATE_READY,
    TARGET_STATE_DRAINING,     /* SIGTERM sent, waiting for exit */
    TARGET_STATE_STOPPED,      /* exited and reaped (or never launched) */
};
const char *target_state_str(enum target_state s); /* "starting", "loading", ... */

enum target_status {
    TARGET_OK = 0,
    TARGET_ERR_CONFIG,      /* bad options (no model, bad kind, argv too long, ...) */
    TARGET_ERR_PORT_IN_USE, /* "port 8000 is already in use" (before launch) */
    TARGET_ERR_LOG,         /* cannot open/create the log file */
    TARGET_ERR_SPAWN,       /* fork failed, or exec failed (command not found: exit 127) */
    TARGET_ERR_EXITED,      /* the server exited before ready / during the run */
    TARGET_ERR_TIMEOUT,     /* not ready before ready_timeout_ms */
    TARGET_ERR_INTERRUPTED, /* Ctrl-C / SIGTERM while waiting */
    TARGET_ERR_DROP_CACHES, /* drop_caches asked for but not root, or the write failed */
    TARGET_ERR_HTTP,        /* url mode: server unreachable or not healthy */
    TARGET_ERR__COUNT
};
const char *target_status_str(enum target_status st);

/* One set of options for every kind. Strings and arrays are borrowed: they must outlive the
 * struct target (target_new does not copy them). */
struct target_config {
    enum target_kind kind;
    const char *model;             /* path (embedded, llama.cpp: .gguf) or HF id; required unless
                                      serve_cmd or url */
    const char *host;              /* bind/connect host; default "127.0.0.1" */
    int port;                      /* 0: pick a free port just before launch */
    int max_model_len;             /* 0: server default (llama.cpp: -c; SGLang: --context-length) */
    double gpu_memory_utilization; /* 0: server default (SGLang: --mem-fraction-static) */
    enum target_prefix_cache prefix_cache;
    const char *api_key;           /* passed as --api-key and used for our HTTP polls; NULL: none */
    const char *served_name;       /* --served-model-name (llama.cpp: --alias); NULL: none */
    char *const *extra_args;       /* appended after our flags (argv after `--`) */
    int n_extra_args;
    char *const *serve_cmd;        /* explicit argv; overrides the built one (extra args still
                                      appended); host/port must match what it listens on */
    int n_serve_cmd;
    const char *url;               /* probe a running server: no launch/stop; "http://h:p" */
    long ready_timeout_ms;         /* default 120000 (vllm/sglang: 600000) */
    long stop_grace_ms;            /* default 10000 */
    long poll_interval_ms;         /* readiness polls; default 25 (kept within 20..50) */
    const char *log_path;          /* server stdout+stderr (truncated); NULL: "server.log" */
    const char *self_exe;          /* embedded: the slmprobe binary; NULL: /proc/self/exe */
    int drop_caches;               /* root only: sync + "3" > /proc/sys/vm/drop_caches first */
    int cold_storage;              /* evict the model's own files from the page cache before the
                                      launch (run/launch.c does it; target_launch ignores it) */
};

/* What drop_caches does (target_launch calls it first when asked): root only, sync + "3" >
 * /proc/sys/vm/drop_caches. TARGET_OK, or TARGET_ERR_DROP_CACHES with the reason in err. */
enum target_status target_drop_caches(char *err, size_t err_len);

/* Fills defaults for a kind (host, timeouts, poll interval; everything else 0/NULL). */
void target_config_defaults(struct target_config *cfg, enum target_kind kind);

/* Pure: the argv that launch would exec for cfg with the given port (cfg->port is ignored),
 * NULL-terminated, in *argv_out (count in *argc_out). Free with target_argv_free. Does not look
 * at the file system or PATH (embedded with self_exe NULL uses "/proc/self/exe" literally).
 *   embedded: <self> serve --model M --host H --port P [--max-model-len N]
 *             [--gpu-memory-utilization U] --enable-prompt-tokens-details
 *             [--enable-prefix-caching|--no-enable-prefix-caching]
 *             [--api-key K] [--served-model-name S] EXTRA...
 *   vllm:     vllm serve M --host H --port P [same optional flags as embedded] EXTRA...
 *             (--enable-prompt-tokens-details: usage.prompt_tokens_details.cached_tokens; llama.cpp
 *             and SGLang report cached tokens without a flag, or not at all)
 *   llamacpp: llama-server -m M --host H --port P [-c N] --metrics [--no-cache-prompt]
 *             [--api-key K] [--alias S] EXTRA...      (gpu_memory_utilization has no equivalent)
 *   sglang:   python3 -m sglang.launch_server --model-path M --host H --port P
 *             [--context-length N] [--mem-fraction-static U] --enable-metrics
 *             [--disable-radix-cache] [--api-key K] [--served-model-name S] EXTRA...
 *   serve_cmd set: serve_cmd... EXTRA...
 * Numbers are printed with %d / %g. Returns TARGET_OK or TARGET_ERR_CONFIG (message in err). */
enum target_status target_argv_build(const struct target_config *cfg, int port, char ***argv_out,
                                     int *argc_out, char *err, size_t err_len);
void target_argv_free(char **argv); /* NULL-safe */
/* The command target_argv_build gives for cfg and port as one shell-quoted line (redact.h), the
 * API key shown as "***" wherever it appears, into out (always NUL-terminated, cut at out_len);
 * on a config error "(message)". Use it for every printed or logged command. Returns out. */
const char *target_cmdline(const struct target_config *cfg, int port, char *out, size_t out_len);

/* Exit of the server process (the group leader). */
struct target_exit {
    int exited;      /* 1 once reaped */
    int exit_code;   /* WEXITSTATUS, or -1 if killed by a signal */
    int exit_signal; /* WTERMSIG, or 0 */
};
/* "exit status 1", "killed by signal 9 (Killed)", "running". Writes into out; returns out. */
const char *target_exit_str(const struct target_exit *ex, char *out, size_t out_len);

struct target_timeline {
    mono_ns t_launch_ns;     /* fork (url mode: when polling began) */
    mono_ns t_port_open_ns;  /* first successful TCP connect (0 never) */
    mono_ns t_health_ok_ns;  /* first GET /health 200 */
    mono_ns t_models_ok_ns;  /* first GET /v1/models 200 (= ready) */
    mono_ns t_stop_ns;       /* SIGTERM sent (0 not yet) */
    mono_ns t_stopped_ns;    /* reaped */
};

/* Public fields are read-only for callers. */
struct target {
    struct target_config cfg;  /* copy of the config (strings still borrowed) */
    enum target_state state;
    int launched;              /* 1 if we own a process (0 in url mode) */
    pid_t pid;                 /* server pid = its process group id; 0 if none */
    int port;                  /* the port actually used */
    char base_url[256];        /* "http://127.0.0.1:8000" (no trailing slash) */
    char log_path[1024];
    struct target_timeline tl;
    struct target_exit exit;
    char model_id[256];        /* data[0].id from /v1/models ("" unknown) */
    int max_model_len;         /* data[0].max_model_len or meta.n_ctx; -1 unknown */
    char version[128];         /* server version ("" unknown), see target_fetch_version */
    struct startup_info startup; /* parsed from the log so far (live while waiting) */
    /* private */
    struct logparse lp_;
    int log_fd_;
    char **argv_;
};

/* Allocates a target in state STOPPED; copies *cfg (its strings stay borrowed). Never NULL. */
struct target *target_new(const struct target_config *cfg);
/* Stops the server if we launched it and it still runs (as target_stop), then frees. NULL-safe. */
void target_free(struct target *t);

/* Launch only (no waiting): drop caches if asked, port check (bind test on host:port), log file,
 * fork; the child does setpgid(0,0), redirects stdout/stderr to the log, execvp(argv).
 * Registers the group. State -> STARTING. In url mode: sets base_url and returns TARGET_OK.
 * Errors: CONFIG, PORT_IN_USE, LOG, SPAWN, DROP_CACHES, each with a message in err. */
enum target_status target_launch(struct target *t, char *err, size_t err_len);

/* Polls every poll_interval_ms until GET /v1/models answers 200 after GET /health did: fills
 * the timeline, state (LOADING at the first connect/503), model_id, max_model_len, version, and
 * t->startup from the log. Connection refused, reset and 503 all mean "not yet".
 * Returns TARGET_OK (state READY), TARGET_ERR_EXITED (child died: exit status + last 20 log lines
 * in err), TARGET_ERR_TIMEOUT (deadline; the server is killed, err has the log tail),
 * TARGET_ERR_INTERRUPTED (signal; the server is stopped), or in url mode TARGET_ERR_HTTP. */
enum target_status target_wait_ready(struct target *t, char *err, size_t err_len);

/* target_launch + target_wait_ready. */
enum target_status target_start(struct target *t, char *err, size_t err_len);

/* 1 while our server runs (or in url mode: always 1, nothing is checked); 0 once it has exited:
 * then t->exit tells how, t->state is STOPPED. Non-blocking (waitpid WNOHANG). */
int target_alive(struct target *t);

struct target_stop_result {
    struct target_exit exit;
    int killed;          /* 1 if SIGKILL was needed after the grace period */
    uint64_t stop_ns;    /* SIGTERM -> reaped */
    int was_running;     /* 0 if it had already exited (or url mode / never launched) */
};
/* SIGTERM to the group, wait up to stop_grace_ms, SIGKILL the group, reap the leader, and
 * unregister. Also SIGKILLs any member of the group left behind. Idempotent; url mode: no-op.
 * out may be NULL. Returns TARGET_OK. */
enum target_status target_stop(struct target *t, struct target_stop_result *out);

/* GET /version ({"version": ...}) or, for llama.cpp, /props build_info; result in t->version
 * (also done by target_wait_ready). 0, or -1 (version stays ""). */
int target_fetch_version(struct target *t);

/* Re-reads new bytes of the log into t->startup (cheap; call any time). */
void target_follow_log(struct target *t);

/* The last n_lines lines of a file into out (reset first; capped by out's cap). 0 or -1. */
int target_log_tail(const char *path, int n_lines, struct buf *out);

/* 0 if host:port can be bound now (SO_REUSEADDR, like the servers), -1 with "port N is already in
 * use" (or the bind error) in err. */
int target_port_free(const char *host, int port, char *err, size_t err_len);
/* A free TCP port on host chosen by the kernel (bind port 0), or -1. Racy by nature: use at once. */
int target_find_free_port(const char *host);

/* ---- process-wide signal handling and orphan protection ---- */

/* Installs SIGINT/SIGTERM handlers (they only set a flag and write a self-pipe) and an atexit
 * hook that SIGKILLs every registered group. A second SIGINT/SIGTERM kills every registered group
 * with SIGKILL and _exit(130) at once (async-signal-safe). Idempotent. Main thread. */
void target_install_signal_handlers(void);
/* Nonzero once SIGINT/SIGTERM arrived. Any thread. */
int target_interrupted(void);
/* Read end of the self-pipe (readable after a signal) for poll(); -1 before installation. */
int target_signal_fd(void);
/* SIGKILLs every registered group now (what atexit does). Async-signal-safe. */
void target_kill_all(void);

#endif
