/* kv_probe: `slmprobe kv`, Tier 3A. What `max-model-len` costs in memory: one server launch per
 * length (and per --gpu-memory-utilization value), memory (GPU through NVML, the server tree's
 * RSS) and KV capacity / maximum concurrency (start-up log, /metrics) read at ready, then a
 * least-squares fit memory = fixed + slope x length with R² and residuals, the slope compared
 * with the theory (2 x layers x KV heads x head dim x KV dtype bytes), the regime (pre-allocating
 * like vLLM, SGLang and the embedded server, or per-context like llama.cpp), step changes, and a
 * headroom envelope (N concurrent requests of L tokens: which max-model-len fits). kv_run
 * measures (through run/launch.h, one struct launch per length; no lifecycle code here), kv_fit.c
 * holds the pure arithmetic, kv_report.c turns a struct kv_result into the report, the CSV,
 * kv.json and kv_scaling.sh. It sends completions only with --verify (run/driver.h).
 *
 *   struct kv_opts o;  kv_opts_defaults(&o);  ... kv_lengths_parse("512,1024", &o, err, n) ...
 *   struct kv_result res;
 *   int failed = kv_run(&o, &session, &res);  // rows kept even when a launch fails
 *   kv_analyse(&res);                         // fit, regime, steps, envelope, picks
 *   struct report *r = report_new("KV cache vs max-model-len");
 *   kv_report(&res, r);
 *   kv_write_outputs(&res, r, &session, err, sizeof err);
 *   kv_result_free(&res);
 */
#ifndef SLM_KV_PROBE_H
#define SLM_KV_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "report/report.h"
#include "run/session.h"

#define KV_MAX_LENGTHS 64
#define KV_MAX_UTILS 8
#define KV_MAX_ROWS (KV_MAX_LENGTHS * KV_MAX_UTILS)
#define KV_ENV_N 5             /* envelope concurrencies: 1, 4, 8, 16, 32 */
#define KV_ENV_L 3             /* envelope request lengths: 2K, 4K, 8K (or the model's range) */
#define KV_DEFAULT_MIN_LEN 512 /* default sweep: powers of two from here to the context length */

struct kv_opts {
    int lengths[KV_MAX_LENGTHS]; /* ascending, distinct; n_lengths 0: the default sweep */
    int n_lengths;
    double utils[KV_MAX_UTILS];  /* --gpu-memory-utilization axis; n_utils 0: the target's own */
    int n_utils;
    const char *model_config;    /* --model-config config.json; NULL: GGUF or MODEL/config.json */
    const char *kv_cache_dtype;  /* --kv-cache-dtype (passed to vLLM/SGLang); NULL: auto */
    int concurrency;             /* --concurrency: concurrent requests wanted [8] */
    int verify;                  /* --verify: load at the claimed capacity, then one more wave */
    int verify_max;              /* --verify-max: cap on concurrent verify requests [32] */
    int verify_output_tokens;    /* max_tokens of verify requests [4] */
    int resume;                  /* --resume: skip lengths already in kv_cache_scaling.csv */
};
void kv_opts_defaults(struct kv_opts *o);

/* Parses a comma list of positive integers ("512,1024,2k" is not allowed: digits only), sorted
 * ascending into out. 0, or -1 with err (empty item, non-number, zero, duplicate, too many). */
int kv_lengths_parse(const char *list, int *out, int cap, int *n_out, char *err, size_t err_len);
/* Comma list of fractions in (0, 1], distinct. 0, or -1 with err. */
int kv_utils_parse(const char *list, double *out, int cap, int *n_out, char *err, size_t err_len);
/* Powers of two from lo up to and including ctx (ctx itself added when not a power of two).
 * Returns the count (0 when ctx < lo). */
int kv_lengths_default(int lo, int ctx, int *out, int cap);

/* ---- theory ---- */

/* KV dtype bytes: "f16"/"float16"/"half"/"bf16"/"bfloat16"/"auto16" -> 2, "fp8*"/"f8*" -> 1,
 * "f32"/"float32"/"float" -> 4; -1 unknown. */
int kv_dtype_bytes(const char *name);

struct kv_theory {
    int known;
    char source[1100];    /* "GGUF models/tiny.gguf" or "config.json path" */
    char reason[256];     /* why not known */
    int n_layer, n_head_kv, head_dim;
    int dtype_bytes;
    char dtype[24];       /* "f32", "f16", "bf16", "fp8" */
    int n_ctx_train;      /* model context length; 0 unknown */
    double bytes_per_token; /* 2 x layers x KV heads x head dim x dtype bytes; NAN unknown */
};
/* From a GGUF file's header (engine model_file_info; no weights read). dtype_bytes 0: f32, the
 * embedded runtime's KV dtype. 0, or -1 with out->reason. */
int kv_theory_from_gguf(const char *path, int dtype_bytes, struct kv_theory *out);
/* From a Hugging Face config.json (num_hidden_layers, num_key_value_heads or
 * num_attention_heads, head_dim or hidden_size / num_attention_heads, torch_dtype,
 * max_position_embeddings). dtype NULL or "auto": torch_dtype (bf16 when absent). 0, or -1. */
int kv_theory_from_config_json(const char *path, const char *dtype, struct kv_theory *out);

/* ---- rows ---- */

enum kv_row_status {
    KV_ROW_OK = 0,        /* started, readings taken */
    KV_ROW_START_FAILED,  /* the server did not start at this length: reason in error */
    KV_ROW_DIED,          /* started, then died before the readings were complete */
    KV_ROW_SKIPPED,       /* not run: the sweep stopped earlier (interrupt, dead server) */
    KV_ROW_RESUMED,       /* taken from an earlier kv_cache_scaling.csv (--resume) */
};
const char *kv_row_status_str(enum kv_row_status st); /* "ok", "start_failed", ... */

enum kv_verify_verdict {
    KV_VERIFY_NOT_RUN = 0,
    KV_VERIFY_CONCURRENT, /* the claimed wave ran with nothing waiting or preempted */
    KV_VERIFY_QUEUED,     /* waiting > 0 or preemptions during the claimed wave */
    KV_VERIFY_FAILED,     /* requests failed */
};
const char *kv_verify_verdict_str(enum kv_verify_verdict v);

struct kv_verify {
    enum kv_verify_verdict claimed, above; /* the wave at the claim, the wave above it */
    int n_claimed, n_above;                /* requests in each wave */
    int ok_claimed, ok_above;
    double waiting_max_claimed, waiting_max_above;  /* NAN unknown */
    double running_max_claimed, running_max_above;  /* NAN unknown */
    double preemptions_claimed, preemptions_above;  /* counter deltas; NAN unknown */
    char note[600];
};

struct kv_row {
    int max_model_len;
    double gpu_util;              /* the utilisation asked for; 0: server default */
    enum kv_row_status status;
    char error[2048];             /* server's reason (start_failed / died) */
    int64_t estimated_max_model_len; /* from the failure line; -1 */
    double gpu_mem_used_mb;       /* at ready: sum over GPUs minus before launch; NAN unknown */
    double gpu_mem_total_used_mb; /* at ready: sum over GPUs; NAN */
    double server_rss_mb;         /* server tree RSS at ready; NAN */
    char mem_reason[600];         /* why gpu/rss are n/a */
    int64_t kv_capacity_tokens;   /* log or /metrics; -1 */
    double max_concurrency;       /* log, or capacity / length; NAN */
    const char *capacity_source;  /* "log", "metrics", "derived" or "" (static) */
    double start_s;               /* launch to ready; NAN */
    char log_name[128];           /* per-launch log, relative to the output directory */
    char cmdline[4096];           /* exact launch command (secrets as ***) */
    struct kv_verify verify;
    /* filled by kv_analyse */
    double delta_mb_from_prev;    /* NAN for the baseline or unknown */
    double bytes_per_token_est;   /* delta bytes / delta length; NAN */
    double resid_mb;              /* fit residual; NAN */
    int step;                     /* 1: a step change flagged here */
};

enum kv_regime {
    KV_REGIME_UNKNOWN = 0,
    KV_REGIME_PRE_ALLOCATING, /* memory flat at the budget, capacity fixed */
    KV_REGIME_PER_CONTEXT,    /* memory grows with the length at about the KV slope */
};
const char *kv_regime_str(enum kv_regime r); /* "unknown", "pre-allocating", "per-context" */

enum kv_mem_source { KV_MEM_NONE = 0, KV_MEM_GPU, KV_MEM_RSS };
const char *kv_mem_source_str(enum kv_mem_source m); /* "none", "gpu", "rss" */

struct kv_fit {
    int ok;          /* 1 with >= 2 distinct lengths */
    int n;
    double fixed_mb; /* intercept */
    double slope_bytes_per_token;
    double r2;       /* 1 when every point lies on the line (also a flat line) */
    double max_abs_resid_mb;
};

struct kv_envelope_cell {
    int n_conc, req_len;
    int fits;             /* 1 fits at a measured row, 0 no measured row holds it */
    int max_model_len;    /* the smallest measured max-model-len that holds it; 0 none */
    double gpu_util;      /* with this utilisation (0: default) */
    double predicted_mb;  /* per-context: fixed + slope x N x L; NAN otherwise */
};

struct kv_pick {
    int found;
    int max_model_len;
    double gpu_util;
    double max_concurrency;
    int64_t kv_capacity_tokens;
};

struct kv_result {
    char server[32];       /* target kind, or "serve-cmd" / "url" */
    char model[1024];
    struct kv_theory theory;
    int concurrency_wanted;
    struct kv_row *rows;   /* n_rows, in sweep order (utilisation, then length) */
    size_t n_rows;
    int failed;            /* a launch failed or the server died */
    int interrupted;
    char failure[512];     /* what stopped or broke the sweep ("" none) */
    char out_dir[1024];
    /* analysis (kv_analyse) */
    enum kv_mem_source mem_source;
    struct kv_fit fit;     /* over the first utilisation's ok rows */
    double slope_vs_theory; /* fit slope / theory; NAN */
    enum kv_regime regime;
    char regime_why[256];
    int n_steps;
    int env_len[KV_ENV_L];
    struct kv_envelope_cell env[KV_ENV_N][KV_ENV_L];
    int safe_max_model_len; /* largest measured length with max concurrency >= wanted; 0 none */
    double safe_gpu_util;
    struct kv_pick pick_latency, pick_throughput;
};

void kv_result_init(struct kv_result *r);
void kv_result_free(struct kv_result *r); /* NULL-safe */
struct kv_row *kv_result_add_row(struct kv_result *r); /* zeroed row with unknowns set */

/* ---- analysis (kv_fit.c; pure) ---- */

/* Least squares y = a + b x over n points. 0, or -1 (fewer than 2 distinct x). resid may be
 * NULL; else resid[i] = y[i] - (a + b x[i]). */
int kv_fit_linear(const double *x, const double *y, size_t n, struct kv_fit *out, double *resid);
/* Flags (flags[i] = 1) each interval x[i-1]..x[i] whose slope departs from the median interval
 * slope by more than the noise floor (5% of the range, at least 1 MiB) while the residuals jump
 * by as much. Returns the count (0 with fewer than 4 points). */
int kv_steps_detect(const double *x, const double *y, size_t n, const double *resid,
                    int *flags);
/* Fit, regime, deltas, steps, envelope, safe length and picks from r->rows. */
void kv_analyse(struct kv_result *r);

/* ---- measuring and reporting ---- */

/* Runs the sweep. Rows are kept for every length (failed ones with the server's reason).
 * Returns 1 when a launch failed, the server died or the run was interrupted, else 0. */
int kv_run(const struct kv_opts *o, struct session *s, struct kv_result *out);
/* Adds the sections of the notes (computed text only) and the charts. */
void kv_report(const struct kv_result *res, struct report *r);
/* Writes kv_cache_scaling.csv, kv_cache_scaling_notes.md/.html, kv.json, kv_scaling.sh into
 * out_dir. 0, or -1 with err. */
int kv_write_outputs(const struct kv_result *res, const struct report *r, const char *out_dir,
                     char *err, size_t err_len);
/* Reads the rows of an earlier kv_cache_scaling.csv (--resume) as KV_ROW_RESUMED rows. Returns
 * rows added (0 when the file is absent), or -1 with err (unreadable header). */
int kv_csv_load(const char *path, struct kv_result *r, char *err, size_t err_len);

#endif
