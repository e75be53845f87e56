/* knee: reading a load sweep. Given one summary per load level (concurrency, or offered rate for
 * open-loop sweeps) it finds the knee (where more load stops buying throughput), the sweet spot
 * (best throughput per second of p95 latency), the peak, the highest level meeting an SLO, and
 * writes 3-5 rules of thumb as sentences computed from the measured numbers. Also parses and
 * checks SLOs ("ttft:500ms,tpot:50ms"). Pure functions: no I/O, no allocation, no globals; it does
 * not measure or aggregate requests (the caller fills struct knee_level from its records).
 *
 * Knee rule (threshold t, default 0.10): between two usable levels a < b, the throughput gain per
 * doubling of load is g = (T_b/T_a)^(1/log2(x_b/x_a)) - 1. Level a "stops scaling" towards b when
 * g < t, or when g < 2t and p95 e2e grows by a larger factor than throughput (L_b/L_a > T_b/T_a).
 * The knee is the first usable level that stops scaling towards the next usable level and from
 * which no later level gains 2t or more per doubling (so a flat step followed by renewed scaling,
 * e.g. a batch size the kernels handle badly or a noisy level, is not a knee). If no level
 * qualifies, the knee is not reached within the sweep (knee_reached = 0, i_knee = the last usable
 * level).
 * A level is usable when it has at least one successful request, throughput > 0 and a finite
 * p95 e2e; errors-only levels are skipped (and mentioned in the rules).
 *
 *   struct knee_config kc; knee_config_defaults(&kc);
 *   struct knee_result kr; knee_analyze(levels, n, &kc, &kr);
 *   struct knee_rules rules; knee_rules_make(levels, n, &kc, &kr, &rules);
 *   for (int i = 0; i < rules.n; i++) puts(rules.text[i]);
 */
#ifndef SLM_KNEE_H
#define SLM_KNEE_H

#include <stddef.h>

enum knee_status { KNEE_OK = 0, KNEE_ERR_SYNTAX, KNEE_ERR_RANGE };
const char *knee_status_str(enum knee_status st); /* "ok", "syntax error", "out of range" */

/* ---- SLOs ---- */

/* Each bound in ms; NAN = not set. A request meets the SLO when it succeeded and every set bound
 * holds (TPOT is undefined for one-token answers: such a request passes the TPOT bound). */
struct knee_slo {
    double ttft_ms;
    double tpot_ms;
    double e2e_ms;
};
void knee_slo_none(struct knee_slo *slo);        /* every bound NAN */
int knee_slo_is_set(const struct knee_slo *slo); /* 1 if any bound is set */
/* Parses "ttft:500ms,tpot:50ms,e2e:2s" (keys ttft|tpot|e2e; values > 0 with unit us|ms|s; order
 * free; a key given twice: the last wins). KNEE_OK, or KNEE_ERR_SYNTAX / KNEE_ERR_RANGE with a
 * message naming the offending item in err; *out is untouched on error. */
enum knee_status knee_slo_parse(const char *spec, struct knee_slo *out, char *err, size_t err_len);
/* Parses one duration "500ms", "0.5s", "250us" into ms (> 0, finite). KNEE_OK or an error. */
enum knee_status knee_parse_duration_ms(const char *s, double *ms_out);
/* 1 if a successful request with these latencies meets every set bound (NAN tpot passes; NAN
 * ttft or e2e fails a set bound). */
int knee_slo_met(const struct knee_slo *slo, double ttft_ms, double tpot_ms, double e2e_ms);
/* "TTFT <= 500 ms, TPOT <= 50 ms" (or "none") into out; returns out. */
const char *knee_slo_str(const struct knee_slo *slo, char *out, size_t out_len);

/* ---- sweep analysis ---- */

struct knee_level {
    double load;  /* concurrency, or offered rate (req/s); > 0 */
    double tok_s; /* output tokens per second: the throughput the knee is judged on */
    double qps;   /* successful requests per second */
    double p95_e2e_s;
    double p95_ttft_ms;  /* NAN unknown */
    double p95_tpot_ms;  /* NAN unknown */
    double goodput_frac; /* requests meeting every SLO / requests sent; NAN without an SLO */
    double goodput_rps;  /* requests meeting every SLO per second; NAN without an SLO */
    double waiting_mean; /* server queue (e.g. vllm:num_requests_waiting) during the level; NAN */
    double waiting_max;  /* NAN unknown */
    int n_ok;            /* successful requests */
    int n_err;           /* failed requests (all classes) */
};

struct knee_config {
    double threshold;      /* per-doubling throughput gain below which scaling stopped; 0.10 */
    double slo_attainment; /* a level meets the SLO when goodput_frac >= this; 0.95 */
    const char *load_name; /* "concurrency" (default) or "rate" */
    const char *load_unit; /* appended to load values in sentences: "" or " req/s" */
    const char *slo_desc;  /* "TTFT <= 500 ms, TPOT <= 50 ms", or NULL when no SLO was given */
};
void knee_config_defaults(struct knee_config *cfg);

enum knee_reason {
    KNEE_REASON_NONE = 0,        /* no usable level */
    KNEE_REASON_SINGLE,          /* one usable level: nothing to compare */
    KNEE_REASON_THROUGHPUT_FLAT, /* the gain per doubling after the knee is below the threshold */
    KNEE_REASON_LATENCY,         /* p95 e2e grew faster than throughput after the knee */
    KNEE_REASON_NOT_REACHED,     /* still scaling at the last level */
};
const char *knee_reason_str(enum knee_reason r); /* "no usable level", "throughput flat", ... */

struct knee_result {
    int n_usable;
    int i_knee;       /* index into the caller's array; -1 with no usable level */
    int knee_reached; /* 1: scaling stopped within the sweep */
    enum knee_reason reason;
    int i_next;               /* usable level after the knee, -1 if none */
    double gain_per_doubling; /* knee -> i_next, fraction (0.04 = +4%); NAN if no i_next */
    double tput_ratio;        /* T_next / T_knee; NAN if no i_next */
    double e2e_ratio;         /* L_next / L_knee; NAN if no i_next */
    int i_peak;               /* highest tok_s; -1 */
    int i_sweet;              /* highest tok_s / p95_e2e_s, among SLO-meeting levels when an SLO was
                                 given and some level met it, else among usable levels; -1 */
    int i_slo_max;     /* highest load with goodput_frac >= slo_attainment; -1 none / no SLO */
    char summary[320]; /* one computed sentence about the knee */
};

/* Levels in any order (they are ranked by load). Never fails; see knee_result for the outcomes. */
void knee_analyze(const struct knee_level *lv, size_t n, const struct knee_config *cfg,
                  struct knee_result *out);

#define KNEE_MAX_RULES 5
struct knee_rules {
    int n;
    char text[KNEE_MAX_RULES][400];
};
/* Up to KNEE_MAX_RULES sentences, each built from the numbers in lv and kr (errors first, then
 * scaling, beyond the knee, peak/sweet spot, SLO, server queue, TTFT vs TPOT growth). */
void knee_rules_make(const struct knee_level *lv, size_t n, const struct knee_config *cfg,
                     const struct knee_result *kr, struct knee_rules *out);

#endif
