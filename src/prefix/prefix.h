/* prefix: the Tier 2 prefix-caching probe. What cross-request KV reuse buys, measured A/B: two
 * server launches (or two running servers) that differ only in prefix caching, the same prompts
 * sent to both, per cell (prefix regime x concurrency x hit mix) TTFT, e2e, throughput, the
 * server's own hit counters and memory, a fitted line TTFT ~ a + b x uncached prompt tokens that
 * predicts mixed traffic, and an optional working-set sweep that finds the cache's capacity cliff.
 * This header holds the prompt set (prefix_gen.c: `slmprobe prefix gen`, --prompts validation,
 * lengths measured with the server's tokenizer), the options and the result struct (prefix_run.c
 * measures, prefix_report.c renders). It does not parse argv (cmd_prefix.c does).
 *
 *   struct prefix_set set;
 *   prefix_set_generate(&set, &gen_opts);          // or prefix_set_load(&set, path, err, n)
 *   prefix_set_measure(&set, prefix_tokenize_http, &tk, block_size, 1, err, n); // lengths, pad
 *   prefix_set_write_jsonl(&set, "prefix_prompts.jsonl", err, n);
 *   struct prefix_result res;
 *   prefix_run(&opts, &session, &res);             // launches, measures, writes nothing
 *   struct report *r = report_new("Prefix caching"); prefix_report(&res, r);
 *   prefix_write_outputs(&res, session.out_dir, err, n); // csv, md, html, json, the scripts
 *   prefix_result_free(&res); prefix_set_free(&set);
 *
 * Threads: everything on the caller's thread (the driver's client runs there too). */
#ifndef SLM_PREFIX_PREFIX_H
#define SLM_PREFIX_PREFIX_H

#include <stddef.h>
#include <stdint.h>

#include "measure/record.h"
#include "run/session.h"
#include "server/target.h"

#define PREFIX_MAX_LEVELS 8           /* --concurrency, --hit-mix, --working-set list lengths */
#define PREFIX_MAX_VARIANTS 200       /* question variants per prefix */
#define PREFIX_MAX_PROMPTS 100000     /* lines in a --prompts file */
#define PREFIX_LARGE_MIN_TOKENS 1000  /* a prefix this long or longer is in the "large" regime */
#define PREFIX_QUESTION_SEP "\nQ: "   /* the prefix is the text before the last separator */

enum prefix_status {
    PREFIX_OK = 0,
    PREFIX_ERR_IO,       /* a file could not be read or written */
    PREFIX_ERR_INPUT,    /* a bad --prompts line (the message names the line) */
    PREFIX_ERR_ARG,      /* options out of bounds */
    PREFIX_ERR_TOKENIZE, /* the server could not count tokens */
};
const char *prefix_status_str(enum prefix_status st);

enum prefix_regime { PREFIX_REGIME_MEDIUM = 0, PREFIX_REGIME_LARGE, PREFIX_REGIME__COUNT };
const char *prefix_regime_str(enum prefix_regime r); /* "medium", "large" */

enum prefix_mode { PREFIX_MODE_OFF = 0, PREFIX_MODE_ON, PREFIX_MODE__COUNT };
/* "no_prefix_cache", "with_prefix_cache" (the CSV's mode column) */
const char *prefix_mode_str(enum prefix_mode m);

/* ---- the prompt set ---- */

struct prefix_gen_opts {
    int len_tokens[PREFIX_REGIME__COUNT]; /* target prefix lengths [384, 1280] */
    int n_variants;                       /* questions per prefix [32], 1..PREFIX_MAX_VARIANTS */
    uint64_t seed;                        /* ticket numbers in the questions [1] */
};
void prefix_gen_opts_defaults(struct prefix_gen_opts *g);

struct prefix_shared {
    char *text;            /* the shared prefix, owned */
    size_t len;
    char workload[32];     /* "chat_policy", "chat_history", "rag_prefix", or the file's label */
    int len_tokens;        /* measured (prefix_set_measure); -1 unknown */
    int len_tokens_given;  /* the file's prefix_len_tokens, -1 none */
    int n_blocks;          /* len_tokens / block_size; -1 unknown */
    int n_pad_tokens;      /* tokens of filler added to reach a whole block */
    enum prefix_regime regime;
};

struct prefix_prompt {
    char *text;            /* "<PREFIX>\nQ: <variant>\nA:", owned; rebuilt when the prefix is */
    size_t len;
    char *suffix;          /* "\nQ: <variant>\nA:" (from the separator on), owned */
    size_t suffix_len;
    size_t i_prefix;       /* index into set->prefixes */
};

struct prefix_set {
    struct prefix_shared *prefixes;
    size_t n_prefixes;
    struct prefix_prompt *prompts; /* grouped by prefix, in order */
    size_t n_prompts;
    int generated;         /* 1: prefix_set_generate; 0: a file */
    char source[512];      /* "generated" or the file path */
    int block_size;        /* tokens per KV block used for padding/expectations; 0 unknown */
    char warnings[1024];   /* "; "-joined (a prefix shorter than one block, padding failed, ...) */
};

/* Builds the three kinds (support policy, chat history, RAG preamble) x two regimes, each with
 * g->n_variants questions. Lengths are unknown until prefix_set_measure (the text is sized for
 * ~4 characters a token). PREFIX_OK or PREFIX_ERR_ARG (set empty, safe to free). */
enum prefix_status prefix_set_generate(struct prefix_set *set, const struct prefix_gen_opts *g);
/* Reads a JSONL file: {"prompt": "...", "prefix_len_tokens": N (optional), "workload": "..."
 * (optional)}; the prefix is the text before the last "\nQ: ". Errors name the 1-based line
 * ("p.jsonl:3: malformed JSON: ...", "p.jsonl:4: \"prompt\" is missing", "... has no \"\\nQ: \"
 * separator", "... prefix_len_tokens is not a non-negative integer"). PREFIX_OK, PREFIX_ERR_IO or
 * PREFIX_ERR_INPUT (set empty, safe to free). */
enum prefix_status prefix_set_load(struct prefix_set *set, const char *path, char *err,
                                   size_t err_len);
void prefix_set_free(struct prefix_set *set); /* NULL-safe */

/* Counts the tokens of text with the server's tokenizer: >= 0, or -1 with err. */
typedef int (*prefix_count_cb)(void *ud, const char *text, size_t len, char *err, size_t err_len);
/* Measures every shared prefix; when block_size > 0 and pad is 1 (generated sets), appends filler
 * until the prefix is a whole number of blocks (measured again each time; a failure to land on a
 * block edge is a warning). A prefix shorter than one block is warned about (it can never hit).
 * A file's prefix_len_tokens that differs from the measurement is a warning. Regimes are set from
 * the measured lengths (>= PREFIX_LARGE_MIN_TOKENS: large). PREFIX_OK or PREFIX_ERR_TOKENIZE. */
enum prefix_status prefix_set_measure(struct prefix_set *set, prefix_count_cb count, void *ud,
                                      int block_size, int pad, char *err, size_t err_len);
/* One JSON object per prompt line: prompt, prefix_len_tokens (when known), workload, regime.
 * Written atomically. PREFIX_OK or PREFIX_ERR_IO. */
enum prefix_status prefix_set_write_jsonl(const struct prefix_set *set, const char *path,
                                          char *err, size_t err_len);

/* The server tokenizer over HTTP: POST base_url/tokenize {"prompt": text} and read "count"
 * (vLLM, SGLang, the embedded server) or the length of "tokens" (llama.cpp, {"content": text}). */
struct prefix_tokenizer {
    const char *base_url;  /* borrowed */
    const char *api_key;   /* borrowed, may be NULL */
    enum target_kind kind;
    int n_calls;
};
int prefix_tokenize_http(void *ud, const char *text, size_t len, char *err, size_t err_len);
/* Tokens per KV block and KV capacity from GET base_url/metrics (vllm:cache_config_info labels
 * block_size and kv_cache_size_tokens). 0 with *block_size_out (and *kv_tokens_out, -1 unknown),
 * or -1 (no such metric). */
int prefix_fetch_cache_config(const char *base_url, const char *api_key, int *block_size_out,
                              int64_t *kv_tokens_out);

/* ---- the A/B run ---- */

struct prefix_opts {
    const char *prompts_path;      /* --prompts FILE; NULL: generated */
    struct prefix_gen_opts gen;
    int regimes[PREFIX_REGIME__COUNT]; /* --regimes medium,large: 1 = run it [both] */
    int concurrency[PREFIX_MAX_LEVELS]; /* --concurrency [1,16] */
    int n_concurrency;
    double hit_mix[PREFIX_MAX_LEVELS];  /* --hit-mix in percent [100,50,0]; stored as fraction */
    int n_hit_mix;
    int n_requests;                /* --requests per cell [32] */
    int max_tokens;                /* --max-tokens [16] */
    const char *url_off, *url_on;  /* --url-off/--url-on: two running servers */
    int working_set[PREFIX_MAX_LEVELS]; /* --working-set N1,N2,...: prefixes in rotation */
    int n_working_set;
    int progress;                  /* live progress line (TTY only) [1] */
};
void prefix_opts_defaults(struct prefix_opts *o);

struct prefix_cell {
    enum prefix_mode mode;
    enum prefix_regime regime;
    int concurrency;
    double hit_mix;                /* fraction of requests that reuse a shared prefix */
    int done;                      /* 1 once measured (an interrupted run keeps finished cells) */
    int prefix_len_tokens;         /* mean measured length of the regime's shared prefixes */
    int n_requests, n_ok, n_failed, n_shared;
    int n_err_class[REQ_ERROR__COUNT];
    char first_error[256];
    double mean_ttft_s, p50_ttft_s, p95_ttft_s, mean_e2e_s, p95_e2e_s, tok_s, duration_s;
    uint64_t prompt_tokens, completion_tokens;
    double mean_prompt_tokens, mean_uncached_tokens; /* per ok request */
    int has_server_counters;       /* the /metrics delta below is known */
    double hits_tokens, queries_tokens, hit_rate; /* vllm:prefix_cache_* over the measure phase */
    double prime_hits_tokens;      /* over the priming requests */
    uint64_t usage_cached_tokens;  /* usage.prompt_tokens_details.cached_tokens summed */
    int n_cached_known;
    double expected_hit_tokens;    /* shared requests x their prefix's whole blocks (on only) */
    int n_prime;                   /* "first request per prefix" */
    double prime_mean_ttft_s;
    double kv_usage_max;           /* NAN unknown */
    int reset_ok;                  /* /reset_prefix_cache answered 200 */
    char notes[512];
};

struct prefix_mode_run {
    int ran, ready;
    char cmdline[4096];            /* the exact launch command (or "--url URL") */
    char script_name[64];          /* serve_slm_[no_]prefix_cache.sh */
    char err[2560];
    int64_t rss_ready_bytes, rss_max_bytes, gpu_mem_ready_bytes, gpu_mem_max_bytes; /* -1 unknown */
    double kv_usage_max;           /* NAN unknown */
    int64_t kv_capacity_tokens;    /* from the log or cache_config_info; -1 unknown */
    int block_size;                /* 0 unknown */
    char how[256];                 /* what differs: the flag, or llama.cpp's per-request field */
};

struct prefix_fit {
    int ok;                        /* 0: fewer than two distinct x values */
    int n_points;
    double a_s, b_s_per_token, r2;
    int n_predicted;               /* mixed-traffic cells predicted by the line (not fitted) */
    double max_pred_err_pct;       /* largest |measured - predicted| / measured over those */
    int concurrency;               /* the points are the cells at this concurrency */
};

struct prefix_ws_point {
    int n_prefixes;
    int64_t tokens;                /* sum of the rotated prefixes' lengths */
    int n_requests;
    double hit_rate;               /* server counters over the second round; NAN unknown */
    double mean_ttft_s;
};

struct prefix_result {
    struct prefix_opts opts;       /* copy (strings borrowed) */
    const struct prefix_set *set;  /* borrowed */
    enum target_kind kind;
    char model[256];
    char client_calibration[512]; /* session ceiling_note: which calibration was used */
    struct prefix_mode_run modes[PREFIX_MODE__COUNT];
    struct prefix_cell *cells;     /* owned, in run order: mode, regime, concurrency, mix */
    size_t n_cells;
    struct prefix_fit fit;
    struct prefix_ws_point ws[PREFIX_MAX_LEVELS];
    int n_ws;
    int interrupted;
    int failed;
    char stop_reason[3072];
    /* private */
    struct record_sink *sink_;     /* prefix_requests.jsonl while running */
};

/* Runs the whole A/B; finished cells are kept when it stops early (interrupted, server died).
 * set must be loaded; it is measured here with the first server's tokenizer (lengths, padding for
 * generated sets). Returns PROBE_EXIT_* (session.h). res must be freed. */
int prefix_run(const struct prefix_opts *o, struct prefix_set *set, struct session *s,
               struct prefix_result *res);
void prefix_result_free(struct prefix_result *res); /* NULL-safe */

/* Least squares over the done cells at the lowest concurrency: fits on hit mix 0 and 1 cells
 * (both modes) and predicts the others; with no such cells, fits on all. Pure. */
void prefix_fit_cells(const struct prefix_cell *cells, size_t n, struct prefix_fit *out);
/* "caching appears inactive: 0 hits in N requests" when a done with_prefix_cache cell expected
 * hits and the server counted none; 0 and "" otherwise. Pure. */
int prefix_inactive_finding(const struct prefix_result *res, char *out, size_t out_len);

/* ---- reporting ---- */

struct report;
/* Adds the strategy, commands, table, interpretation, hit-rate model, working set and
 * conclusions. Every number in prose is computed from res. */
void prefix_report(const struct prefix_result *res, struct report *r);
/* Writes prefix_caching_results.{csv,md,html}, prefix.json, prefix_prompts.jsonl and the two
 * launch scripts (when known) into dir. 0, or -1 with err. Safe to call after every cell. */
int prefix_write_outputs(const struct prefix_result *res, const char *dir, char *err,
                         size_t err_len);
/* The prefix.json document ("schema": "slmprobe.prefix/1") appended to out. */
void prefix_json(const struct prefix_result *res, struct buf *out);

#endif
