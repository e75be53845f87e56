/* batch: `slmprobe batch`, Tier 3B, as a library: what batching buys on a server. N requests one
 * after another versus all at once (seqconc), a closed-loop concurrency sweep with repeats, the
 * knee, sweet spot, SLO limit and rules of thumb (measure/knee.h), and open-loop load at fixed
 * rates. batch_run measures and fills a struct batch_result that holds everything the outputs
 * need (no pointer into the run); batch_report turns it into report sections, batch_json_write
 * into batch.json (schema slmprobe.batch/1). cmd_batch.c only parses argv and writes files, so
 * that `slmprobe lab` can call the same functions. Nothing here prints to stdout except
 * batch_print_summary.
 *
 *   struct batch_opts o;
 *   batch_opts_defaults(&o);
 *   batch_opts_parse(n_rest, rest, &o, err, sizeof err);     // 0 ok, 1 help, -1 usage error
 *   struct session s;
 *   session_init(&s, &po, argc, argv, err, sizeof err);      // po: the shared probe options
 *   struct batch_result *res = xcalloc(1, sizeof *res);
 *   int rc = batch_run(&o, &s, res);                         // 2: usage, nothing launched
 *   struct report *r = report_new("Batching benchmark");
 *   batch_report(res, r);
 *   batch_json_write(res, "results/batch.json", err, sizeof err);
 *   free(res);
 *   session_free(&s);
 */
#ifndef SLM_BATCH_BATCH_H
#define SLM_BATCH_BATCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "measure/knee.h"
#include "measure/record.h"
#include "measure/stats.h"
#include "run/probe_opts.h"
#include "run/session.h"
#include "server/scraper.h"

struct report;

#define BATCH_MAX_LEVELS 64
#define BATCH_MAX_REQUESTS 1000000
#define BATCH_WARMUP_TOKENS 16 /* max_tokens of warm-up requests (at most --output-len) */
#define BATCH_SCHEMA "slmprobe.batch/1"

struct batch_opts {
    int num_requests;           /* sequential vs concurrent: N */
    int conc[BATCH_MAX_LEVELS]; /* sweep levels */
    int n_conc;
    int requests;      /* per level; 0: max(8, rounds x level) */
    int rounds;        /* requests per in-flight slot when --requests is not given */
    double duration_s; /* per level / rate instead of a count; 0: by count */
    int warmup;        /* warm-up requests per level; -1: the level's concurrency */
    int repeat;
    double rates[BATCH_MAX_LEVELS];
    int n_rates;
    double burstiness;   /* gamma shape; 1 = Poisson */
    int max_concurrency; /* open-loop cap; 0 none */
    int input_len;
    double input_len_range;
    int output_len;
    const char *prompt_file; /* borrowed from argv */
    struct knee_slo slo;
    double knee_threshold;
    double slo_attainment;
    uint64_t seed;
    int do_seqconc, do_sweep, do_open;
    int modes_given;
    int metrics_interval_ms;
    int progress; /* -1 auto (stderr is a TTY), 0, 1 */
    int unit;     /* -1 auto: byte for the embedded runtime, word otherwise (workload.h) */
    const char *log_name; /* the launch's log in OUT; NULL: "server.log" (lab: server_batch.log,
                             so Tier 1's server.log is kept) */
};

void batch_opts_defaults(struct batch_opts *o);
/* Parses the command's own options (argv[0] is the command name). 0 ok, 1 help asked, -1 usage
 * error (message in err). Strings in *o borrow from argv. */
int batch_opts_parse(int argc, char **argv, struct batch_opts *o, char *err, size_t err_len);
void batch_usage(FILE *f); /* --help text, the shared probe options included */
/* Measured requests of a sweep level of concurrency conc. */
int batch_level_requests(const struct batch_opts *o, int conc);

/* Statistics of one level (one phase, or the aggregate of a sweep level's repeats). */
struct batch_level {
    double load;  /* concurrency, or offered rate (req/s) */
    int complete; /* 0: cut short (server exit, interrupt) */
    int n_sent, n_ok, n_err, n_good;
    int n_err_class[REQ_ERROR__COUNT];
    char err_msg[REQ_ERROR__COUNT][200]; /* first message of each class */
    int n_no_usage;                      /* successful requests without usage (tokens unknown) */
    double duration_s;                   /* window: first send (open: intended) to last done */
    struct summary e2e_ms, ttft_ms, itl_ms, tpot_ms;
    struct summary e2e_int_ms, ttft_int_ms, qdelay_ms; /* open loop: from the intended time */
    double qps, tok_s, total_tok_s, inflight_mean;
    double prompt_tok_mean, prompt_tok_min, prompt_tok_max, out_tok_mean;
    double goodput_frac, goodput_rps; /* NAN without an SLO */
    double send_rate_rps, offered_rate_rps;
    int gpu_available;
    double gpu_util_mean_pct, gpu_util_max_pct, gpu_mem_max_gib, cpu_mean_pct, cpu_max_pct;
    char gpu_reason[256];
    struct scrape_window sw; /* the server's queue and batch from /metrics */
    /* spread over repeats (aggregates only) */
    int n_repeats;
    int n_repeats_cut; /* repeats cut short and left out */
    double tok_s_min, tok_s_max, p95_e2e_min_s, p95_e2e_max_s;
};

/* The server as the report shows it (copied out of the launch). */
struct batch_server {
    int launched;
    int pid;
    char kind[32];
    char base_url[256];
    char version[128];
    int max_model_len; /* 0 unknown */
    char log_path[1024];
    char end[256]; /* "Stopped at the end: exit status 0", "Exited: killed by signal 9 (Killed)" */
};

struct batch_result {
    struct batch_opts opts; /* copy of what ran */
    char command_line[4096]; /* redacted (--api-key ***) */
    char client_calibration[512]; /* session ceiling_note: which calibration was used */
    char started_at[32];
    char model[256];
    char workload_desc[2048];
    struct batch_server server;
    struct batch_level seq, conc;
    int have_seqconc;
    struct batch_level sweep[BATCH_MAX_LEVELS];
    int n_sweep;
    struct batch_level open[BATCH_MAX_LEVELS];
    int n_open;
    char open_warn[BATCH_MAX_LEVELS][256];
    /* analysis (batch_analyze) */
    struct knee_level kl[BATCH_MAX_LEVELS];
    int kl_row[BATCH_MAX_LEVELS]; /* sweep row of each knee level */
    int n_kl;
    struct knee_result kr;
    struct knee_rules rules;
    struct knee_level okl[BATCH_MAX_LEVELS];
    int n_okl;
    struct knee_result okr;
    struct knee_rules orules;
    char slo_desc[160];
    /* outcome */
    int failed;          /* server start/exit, client failure */
    int interrupted;     /* Ctrl-C / SIGTERM */
    char failure[1024];  /* "" when the run went through */
    char metrics_note[320]; /* why there are no /metrics numbers, "" when there are */
};

/* Runs the modes of o against one launch of the session's server (s->po: launched, or --url)
 * through the probe core's driver and fills *res (zeroed by the caller; large: allocate it).
 * Per-request records go to out_dir/batch_requests.jsonl through the session's sink; level
 * percentiles come from the driver's histograms (measure/hist.h, within 1%). Returns
 * session_exit_code: 0 ok, 1 failed (res->failure says why; partial results are in res), 130
 * interrupted; or 2, a usage error (bad prompt file or lengths: nothing launched, res->failure
 * says why, nothing to report). Main thread; s must outlive the call. */
int batch_run(const struct batch_opts *o, struct session *s, struct batch_result *res);

/* ---- batch_stats.c ---- */
/* One sweep row from R repeats: medians of every metric, sums of counts, min/max spreads. */
void batch_level_aggregate(const struct batch_level *rep, int R, struct batch_level *out);
/* Folds a level's repeats into one row: repeats cut short are left out when complete ones exist. */
void batch_level_fold(struct batch_level *rep, int n_rep, struct batch_level *out);
/* "http_4xx:2 server_exit:1" ("" without errors). */
void batch_errors_str(const struct batch_level *ls, char *out, size_t n);
/* Knee, sweet spot, SLO limit and rules over the sweep (and over the rates, with 2+ rates). */
void batch_analyze(struct batch_result *res);

/* ---- batch_report.c ---- */
/* Adds the meta and every section of batching_benchmark.md/.html, and the full-width tables
 * "sweep" (concurrency_sweep.csv: the seed's columns first) and "open" (open_loop.csv), hidden
 * from the documents (report_table_hide_in_doc), which show them split into narrow tables. */
void batch_report(const struct batch_result *res, struct report *r);
/* batching_benchmark.md/.html, concurrency_sweep.csv (and open_loop.csv), batch.json into
 * s->out_dir, as `slmprobe batch` and `slmprobe lab` both write them. 0, or 1 when a file could
 * not be written (logged). */
int batch_write_outputs(const struct batch_result *res, const struct session *s);
/* The short summary on stdout (seqconc, the sweep, knee, rules, open loop, failure). */
void batch_print_summary(const struct batch_result *res, FILE *f, const char *out_dir);

/* ---- batch_json.c ---- */
/* Writes batch.json (schema slmprobe.batch/1, docs/schema.md) atomically. 0, or -1 with err. */
int batch_json_write(const struct batch_result *res, const char *path, char *err, size_t err_len);

#endif
