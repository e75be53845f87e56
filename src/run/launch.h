/* launch: one server launch as every probe uses it: per-launch log file, target_start (or the
 * --url check), the telemetry sampler following the server's process tree, the /metrics scraper,
 * memory and page-cache readings before launch and at ready, the page cache dropped (root,
 * --drop-caches) or the model's own files evicted (--cold-storage) just before the launch, the
 * model files' residency before eviction, at launch and at ready, the tree's storage reads and
 * major faults up to ready, and at the end target_stop, the
 * start-up log parsed (every dialect tried for --serve-cmd), the log tail after a failure and the
 * redacted command line for reports. A probe that needs several launches (ttft --repeat, prefix
 * off/on, kv per length) makes one struct launch each. It sends no completions (run/driver.h).
 *
 *   struct launch L;
 *   launch_init(&L, &s, &cfg, "server_len512.log");   // cfg: a copy of po.target, edited
 *   if (launch_start(&L) != TARGET_OK) { report L.err, L.log_tail; }
 *   else { ... driver runs against L.t->base_url; launch_alive(&L) ... }
 *   launch_stop(&L);          // stop, reap, parse the log, read the tail; idempotent
 *   ... report from L.* ...
 *   launch_free(&L);
 *
 * Threads: the main thread owns a launch (the sampler and scraper have threads of their own). */
#ifndef SLM_RUN_LAUNCH_H
#define SLM_RUN_LAUNCH_H

#include <stdint.h>

#include "run/session.h"
#include "server/logparse.h"
#include "server/scraper.h"
#include "server/target.h"
#include "server/telemetry.h"

struct launch {
    struct session *s;          /* borrowed */
    struct target_config cfg;   /* copy (strings borrowed from the caller's config) */
    struct target *t;           /* NULL before launch_start */
    struct telemetry_sampler *smp; /* follows the server's tree; NULL until launch_start */
    struct scraper *scr;        /* /metrics every SESSION_METRICS_INTERVAL_MS once ready; NULL if
                                   the kind has no metrics or launch_init_opts said no */
    int url_mode;               /* probing a running server: nothing launched or stopped */
    char log_path[1024];        /* out_dir/log_name */
    char cmdline[4096];         /* the exact server argv, shell-quoted, secrets as *** ("" url) */
    /* outcome of launch_start */
    enum target_status status;  /* TARGET_OK when ready */
    char err[2048];             /* first line of the failure; "" when ready */
    int ready;
    struct target_timeline tl;  /* copy, refreshed by launch_stop */
    /* readings */
    int64_t gpu_mem_before_bytes; /* sum over GPUs before launch; -1 unknown */
    int64_t gpu_mem_ready_bytes;  /* at ready; -1 unknown */
    int64_t page_cache_before_bytes, page_cache_ready_bytes; /* -1 unknown */
    int64_t rss_ready_bytes;      /* server tree RSS at ready; -1 unknown */
    /* storage -> page cache. page_cache_* is Cached - Shmem of the whole machine, read after the
     * drop or eviction, so it corroborates at best (telemetry.h). The direct signals: */
    int64_t model_bytes;                 /* size of the model's files (cfg.model: a file or a
                                            directory); -1 not a local path */
    int64_t model_resident_before_bytes; /* in the page cache before eviction (= at launch when
                                            nothing was evicted); -1 unknown */
    int64_t model_resident_launch_bytes; /* just before the fork, after any eviction; -1 */
    int64_t model_resident_ready_bytes;  /* at ready; -1 */
    int cold_storage_done;       /* cfg.cold_storage and the eviction ran without error */
    int cold_storage_effective;  /* ... and left at most LAUNCH_COLD_MAX_RESIDENT_FRAC resident
                                    (0 on tmpfs/overlay, which ignore the eviction) */
    char cold_storage_err[256];  /* why eviction failed or was not effective; "" otherwise */
    int64_t read_bytes_ready;    /* bytes the server's tree read from storage, fork to ready
                                    (/proc/PID/io read_bytes, highest tree total); -1 unknown */
    int64_t majflt_ready;        /* major page faults of the tree, fork to ready; -1 unknown */
    /* after launch_stop */
    int stopped;
    int died;                   /* the server exited on its own (before or during the run) */
    struct target_exit exit;    /* how, when died */
    struct target_stop_result stop;
    struct startup_info startup; /* phases, KV capacity, ... from the whole log */
    int have_startup;
    double ready_s;             /* measured fork -> ready (t_models_ok - t_launch); NAN unknown */
    double logged_sum_s;        /* startup_logged_sum_s(&startup); NAN none logged */
    int logged_exceeds_measured; /* startup_logged_exceeds(&startup, ready_s): shares of ready_s
                                    would pass 100%; say so instead of printing them */
    char log_tail[4096];        /* last 20 log lines when it failed or died; "" otherwise */
    /* private: from launch_init_opts */
    int no_scraper_;
    char self_exe_[1024];       /* this binary's path, for the embedded server's argv[0] */
    int metrics_interval_ms_;
};

/* Eviction counts as effective when at most this fraction of the model stayed resident. */
#define LAUNCH_COLD_MAX_RESIDENT_FRAC 0.05

struct launch_opts {
    int no_scraper;             /* 1: do not scrape /metrics */
    int metrics_interval_ms;    /* 0: SESSION_METRICS_INTERVAL_MS */
};

/* Prepares L for cfg (copied; strings borrowed and must outlive L). log_name is relative to the
 * session's out_dir (NULL: "server.log"). Nothing starts yet. */
void launch_init(struct launch *L, struct session *s, const struct target_config *cfg,
                 const char *log_name);
void launch_init_opts(struct launch *L, struct session *s, const struct target_config *cfg,
                      const char *log_name, const struct launch_opts *o);
/* Starts the sampler, launches and waits until ready (or checks the URL), starts the scraper.
 * Returns L->status; on failure L->err, L->log_tail, L->died/exit are set and the server is
 * stopped. A Ctrl-C while waiting gives TARGET_ERR_INTERRUPTED. */
enum target_status launch_start(struct launch *L);
/* 1 while the server runs (url mode: 1). Non-blocking; main thread. */
int launch_alive(struct launch *L);
/* Stops the scraper and the server (SIGTERM, SIGKILL after the grace), parses the log, sets
 * died/exit/stop/startup/log_tail. The sampler keeps its samples for launch_window. Idempotent. */
void launch_stop(struct launch *L);
/* Telemetry over [t0, t1] of this launch (after or before launch_stop). 0, or -1 no sample. */
int launch_window(struct launch *L, mono_ns t0, mono_ns t1, struct telemetry_window *out);
void launch_free(struct launch *L); /* stops if needed; NULL-safe */

#endif
