/* ttft: the Tier 1 probe of cold versus warm time to first token as library calls, so that
 * `slmprobe ttft` (cmd_ttft.c) and `slmprobe lab` run the same code. ttft_run makes one launch
 * (run/launch.h) per repeat and sends, through the driver (run/driver.h), the cold request the
 * moment it is ready, warm_0 right after it and N warm runs, and keeps every request with the
 * launch's timeline, start-up phases and telemetry readings; ttft_report turns that into report
 * sections; ttft_json_write writes ttft.json in schema slmprobe.ttft/1. It parses no argv
 * (cmd_ttft.c) and writes no report file itself.
 *
 *   struct ttft_opts o; ttft_opts_defaults(&o);  ... set fields ...
 *   struct ttft_result res;
 *   int failed = ttft_run(&o, &s, &res);          // s: an initialised session
 *   struct report *r = report_new(TTFT_REPORT_TITLE);
 *   ttft_report(&res, r);  ... report_write_file ...
 *   ttft_json_write(&res, path, err, sizeof err);
 *   ttft_result_free(&res);
 *
 * Threads: main thread only. The session must outlive the result (the result borrows it). */
#ifndef SLM_TTFT_TTFT_H
#define SLM_TTFT_TTFT_H

#include <stddef.h>
#include <stdint.h>

#include "measure/record.h"
#include "measure/stats.h"
#include "report/report.h"
#include "run/session.h"
#include "server/logparse.h"
#include "server/target.h"

#define TTFT_REPORT_TITLE "First token latency: cold vs warm"
#define TTFT_JSON_SCHEMA "slmprobe.ttft/1"

/* Judgement thresholds used by the observations (documented in docs/ttft.md). */
#define TTFT_SPREAD_TIGHT_RATIO 1.25 /* warm max/min at or below: tight */
#define TTFT_SPREAD_WIDE_RATIO 2.0   /* above: wide */
#define TTFT_PAGE_CACHE_READ_FRAC 0.5 /* page-cache growth >= this share of the model file: the
                                         weights were read from storage at start-up */

struct ttft_opts {
    int warm_runs;     /* warm runs after warm_0 [5] */
    double idle_gap_s; /* idle time before each warm run [0] */
    int repeat;        /* launches [1]; forced to 1 with --url */
    int prompt_len;    /* synthetic prompt tokens [128] */
    int max_tokens;    /* generated per request (ignore_eos) [32] */
};

void ttft_opts_defaults(struct ttft_opts *o);

/* One request as the report sees it: the record plus what kind of run it was. */
enum ttft_kind {
    TTFT_KIND_COLD = 0,       /* cold_N: first request after launch N */
    TTFT_KIND_WARM_IMMEDIATE, /* warm_0: right after the cold one */
    TTFT_KIND_WARM,           /* warm_1 .. warm_N: the statistics use these */
};
const char *ttft_kind_str(enum ttft_kind k); /* "cold", "warm_immediate", "warm" */

struct ttft_req {
    struct request_record rec; /* owned (t_content_ns) */
    enum ttft_kind kind;
    int i_in_repeat;           /* 1 = first request of the repeat */
};

struct ttft_repeat {
    int index; /* 1-based */
    /* launch */
    int attempted;
    enum target_status start_status;
    char start_err[2048];
    int ready;
    int port;
    char cmdline[4096]; /* the server argv, shell-quoted, secrets as *** ("" in url mode) */
    char log_path[1024];
    struct target_timeline tl;
    char version[128];
    char model_id[256];
    int max_model_len;
    struct startup_info startup;
    int have_startup;
    char log_tail[4096];
    /* outcome */
    int died;                /* server exited on its own during the run */
    struct target_exit exit; /* how it exited (died) */
    int interrupted;
    struct target_stop_result stop;
    int n_failed_requests;
    int n_err_class[REQ_ERROR__COUNT];
    /* requests */
    struct ttft_req *reqs;
    size_t n_reqs, cap_reqs;
    mono_ns t_cold_sent_ns, t_cold_done_ns, t_warm_start_ns, t_warm_end_ns;
    /* telemetry (-1 / NAN: unknown) */
    int64_t gpu_mem_before_bytes;
    int64_t gpu_mem_after_cold_bytes;
    double gpu_util_warm_pct;
    double cpu_cold_pct, cpu_warm_pct;
    int64_t rss_ready_bytes, rss_max_bytes;
    int64_t page_cache_before_bytes, page_cache_ready_bytes, page_cache_after_bytes;
    int64_t read_bytes_ready, read_bytes_end;
};

struct ttft_result {
    struct ttft_opts opt;     /* as run (repeat 1 with --url) */
    const struct session *s;  /* borrowed: options, environment */
    int url_mode;
    char workload[512];       /* workload_describe */
    int64_t model_file_bytes; /* -1: not a local file */
    char ceiling_msg[256];    /* client-ceiling warning, "" none */
    double max_events_per_s;  /* fastest stream */
    struct ttft_repeat *reps;
    int n_reps;
    int failed;
    int interrupted;
    char fail_msg[512];
};

/* Runs the probe: opts->repeat launches (or one warm-only pass with --url), every finished
 * request to s's JSONL sink ttft_requests.jsonl. Fills *res (free with ttft_result_free, also
 * after a failure). Returns 1 if the run failed (server not ready, died, a request failed), else
 * 0; an interrupt sets res->interrupted (session_exit_code tells 130). */
int ttft_run(const struct ttft_opts *opts, struct session *s, struct ttft_result *res);
void ttft_result_free(struct ttft_result *res); /* NULL-safe */

/* Adds the report's meta and sections (status, observations, config, runs, warm variance,
 * timeline, sanity, repeats) to r. Numbers in prose are computed from res. */
void ttft_report(const struct ttft_result *res, struct report *r);

/* Writes res as JSON (schema slmprobe.ttft/1, docs/schema.md) to path. 0, or -1 with err. */
int ttft_json_write(const struct ttft_result *res, const char *path, char *err, size_t err_len);

/* ---- accessors shared by the report and the JSON writer ---- */

/* "ok", "failed" or "interrupted". */
const char *ttft_status_str(const struct ttft_result *res);
/* The first request of that kind in rr, NULL if none. */
const struct ttft_req *ttft_find_kind(const struct ttft_repeat *rr, enum ttft_kind kind);
/* Summary of the ok warm runs' TTFT (ms) of rr (n 0, NAN fields when none). */
void ttft_warm_summary(const struct ttft_repeat *rr, struct summary *out);
/* Cold TTFT (ms) of rr; NAN when there is no ok cold request. */
double ttft_cold_ttft_ms(const struct ttft_repeat *rr);
/* Launch to ready (ms); NAN when not reached or url mode. */
double ttft_ready_ms(const struct ttft_repeat *rr);
/* t - t0 in ms; NAN when either is 0 or t < t0. */
double ttft_rel_ms(mono_ns t, mono_ns t0);
double ttft_rec_ttft_ms(const struct request_record *r); /* NAN unknown */
double ttft_rec_e2e_ms(const struct request_record *r);  /* NAN unknown */
double ttft_mib(int64_t bytes);                          /* NAN for < 0 */

#endif
