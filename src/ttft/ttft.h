/* ttft: the Tier 1 probe of cold versus warm time to first token as library calls, so that
 * `slmprobe ttft` (cmd_ttft.c) and `slmprobe lab` run the same code. ttft_run makes one launch
 * (run/launch.h) per repeat and sends, through the driver (run/driver.h), the cold request the
 * moment it is ready (cold_N), warm_1 right after it and N warm runs (warm_2 .. warm_N+1, runs 1..N
 * of the warm statistics), and keeps every request with the launch's timeline, start-up phases,
 * storage signals and telemetry readings; ttft_report turns that into report sections (the
 * latency stack, the mental model, warm outliers and what coincided with them); ttft_json_write
 * writes ttft.json in schema slmprobe.ttft/1. It parses no argv (cmd_ttft.c) and writes no
 * report file itself.
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
#include "server/telemetry.h"

#define TTFT_REPORT_TITLE "First token latency: cold vs warm"
#define TTFT_JSON_SCHEMA "slmprobe.ttft/1"

/* Judgement thresholds used by the observations (documented in docs/ttft.md). */
#define TTFT_SPREAD_TIGHT_RATIO 1.25 /* warm max/min at or below: tight */
#define TTFT_SPREAD_WIDE_RATIO 2.0   /* above: wide */
#define TTFT_STORAGE_RESIDENT_FRAC 0.95 /* model files resident at launch at or above: warm
                                           cache (the weights were already in memory) */
#define TTFT_STORAGE_COLD_FRAC 0.05     /* at or below: storage-cold (the weights were not) */
#define TTFT_STORAGE_READ_FRAC 0.5      /* tree read >= this share of the model up to ready: the
                                           weights came from storage */
#define TTFT_OUTLIER_MEDIAN_RATIO 1.5   /* a warm run is an outlier above this x the warm
                                           median and above the IQR fence Q3 + 1.5 IQR */
#define TTFT_OUTLIER_IQR_K 1.5
#define TTFT_OUTLIERS_MAX 8             /* outliers kept per launch (the slowest) */

struct ttft_opts {
    int warm_runs;     /* warm runs after warm_1 [5] */
    double idle_gap_s; /* idle time before each warm run [0] */
    int repeat;        /* launches [1]; forced to 1 with --url */
    int prompt_len;    /* synthetic prompt tokens [128] */
    int max_tokens;    /* generated per request (ignore_eos) [32] */
};

void ttft_opts_defaults(struct ttft_opts *o);

/* One request as the report sees it: the record plus what kind of run it was. */
enum ttft_kind {
    TTFT_KIND_COLD = 0,       /* cold_N: first request after launch N */
    TTFT_KIND_WARM_IMMEDIATE, /* warm_1: right after the cold one */
    TTFT_KIND_WARM,           /* warm_2 .. warm_N+1 (runs 1..N): the statistics use these */
};
const char *ttft_kind_str(enum ttft_kind k); /* "cold", "warm_immediate", "warm" */

struct ttft_req {
    struct request_record rec; /* owned (t_content_ns) */
    enum ttft_kind kind;
    int i_in_repeat;           /* 1 = first request of the repeat */
    int i_warm_run;            /* TTFT_KIND_WARM: 1..N (the variance table's run); else 0 */
};

/* What the storage signals say about where the weights were at launch (ttft_storage_verdict). */
enum ttft_storage {
    TTFT_STORAGE_UNKNOWN = 0,  /* residency or reads not measured */
    TTFT_STORAGE_COLD,         /* not resident at launch, and read (bytes or faults) up to ready */
    TTFT_STORAGE_WARM,         /* resident at launch, and (almost) nothing read */
    TTFT_STORAGE_PARTIAL,      /* partly resident at launch */
    TTFT_STORAGE_DISAGREE,     /* residency and reads contradict each other */
};
const char *ttft_storage_str(enum ttft_storage s); /* "unknown", "storage_cold", ... */

/* A warm run beyond the spread rule and what the telemetry in its window showed. */
struct ttft_outlier {
    int run;                 /* 1..N */
    char tag[32];            /* warm_K */
    double ttft_ms, median_ms;
    size_t n_samples;        /* telemetry samples in its window */
    double cpu_pct;          /* server tree over the window; NAN none */
    double cpu_baseline_pct; /* over all warm runs */
    double gpu_util_pct, gpu_util_baseline_pct; /* NAN no GPU */
    int64_t majflt_delta;    /* major faults in the window; -1 unknown */
    int64_t read_bytes_delta; /* storage reads of the tree in the window; -1 unknown */
    char coincided[512];     /* one sentence: what coincided, or that nothing did */
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
    /* storage signals (run/launch.h; -1 / NAN unknown) */
    int64_t model_bytes;
    int64_t model_resident_before_bytes, model_resident_launch_bytes, model_resident_ready_bytes;
    int cold_storage_done, cold_storage_effective;
    char cold_storage_err[256];
    int64_t majflt_ready;
    double ready_s, logged_sum_s;
    int logged_exceeds_measured;
    /* warm runs beyond the spread rule */
    struct ttft_outlier outliers[TTFT_OUTLIERS_MAX];
    int n_outliers;
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
/* Writes first_token_latency.md/.html, ttft.json and ttft_runs.csv into s->out_dir (a line
 * "wrote PATH" on stdout for each). Returns the number of files that could not be written. */
int ttft_write_outputs(const struct ttft_result *res, const struct session *s);
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
void ttft_fmt_ms(double ms, char *out, size_t n);        /* "12.34 ms", "123 ms", "12.34 s", "n/a" */

/* The seed's latency stack of one launch, each term with where it came from. */
struct ttft_stack {
    double load_weights_ms;    /* model_load, else weights_load (the server's log); NAN none */
    const char *load_weights_src; /* "logged", "arrival" or "not logged" (static strings) */
    double runtime_warmup_ms;  /* engine_init, else torch_compile + kv_cache_alloc +
                                  warmup_graph_capture; NAN none */
    const char *runtime_warmup_src;
    double other_startup_ms;   /* launch to ready minus the two above (process start, imports,
                                  HTTP, readiness polling); NAN when the logged sum exceeds it */
    double ready_ms;           /* launch to ready (probe) */
    double queueing_ms;        /* ready to the cold request sent (probe) */
    double first_prefill_ms;   /* the cold request's TTFT (probe) */
    double cold_total_ms;      /* launch to the cold request's first token (probe) */
    double warm_median_ms;     /* warm runs 1..N (probe) */
    double warm_immediate_ms;  /* warm_1 (probe) */
    int logged_exceeds;        /* the logged durations exceed the measured launch-to-ready */
};
/* Fills st from rr (url mode: only the warm terms). */
void ttft_stack_of(const struct ttft_repeat *rr, int url_mode, struct ttft_stack *st);

/* ---- report parts (ttft_story.c) ---- */

/* The storage sentences (residency, reads, faults; page cache as corroboration). Returns how
 * many sentences. */
int ttft_obs_storage(const struct ttft_result *res, const struct ttft_repeat *rr,
                     struct report_section *s);
/* The spread rule and each outlier with what coincided. Returns how many sentences. */
int ttft_obs_outliers(const struct ttft_result *res, const struct ttft_repeat *rr,
                      struct report_section *s);
/* Sections "Latency stack", "Quick TTFT mental model", "How I'd explain TTFT to an SRE". */
void ttft_section_stack(const struct ttft_result *res, struct report *r);
void ttft_section_model(const struct ttft_result *res, struct report *r);
void ttft_section_sre(const struct ttft_result *res, struct report *r);
/* Where the weights were at launch, from residency (launch, ready) and the tree's reads and major
 * faults up to ready; page cache is not used (corroboration only). */
enum ttft_storage ttft_storage_verdict(const struct ttft_repeat *rr);

/* ---- outliers (ttft_outlier.c) ---- */

/* The spread rule's threshold over n warm TTFTs (NAN skipped): the larger of
 * TTFT_OUTLIER_MEDIAN_RATIO x median and Q3 + TTFT_OUTLIER_IQR_K x IQR. NAN when n < 3. */
double ttft_outlier_threshold_ms(const double *ttft_ms, size_t n);
/* ttft_outlier_threshold_ms over rr's warm requests that succeeded. */
double ttft_warm_outlier_threshold_ms(const struct ttft_repeat *rr);
/* CPU % of the server tree over [t0, t1] from samples s[0..n) (each sample's cpu_pct covers the
 * interval since the previous one, weighted by overlap). NAN if none overlaps. */
double ttft_cpu_over_window(const struct telemetry_sample *s, size_t n, mono_ns t0, mono_ns t1);
/* Fills o's telemetry fields from the samples over [t0, t1] widened by slack_ns on each side and
 * writes o->coincided: what differed from the baselines (server CPU, GPU utilisation, major
 * faults, storage reads), or that nothing did, or that no sample fell in the window. o->run,
 * tag, ttft_ms, median_ms, cpu_baseline_pct and gpu_util_baseline_pct must be set. */
void ttft_outlier_match(const struct telemetry_sample *s, size_t n, mono_ns t0, mono_ns t1,
                        mono_ns slack_ns, struct ttft_outlier *o);
/* Finds the outliers among rr's ok warm runs and matches each (ttft_outlier_match) against
 * samples s[0..n); fills rr->outliers / n_outliers. */
void ttft_outliers_find(struct ttft_repeat *rr, const struct telemetry_sample *s, size_t n,
                        mono_ns slack_ns);

#endif
