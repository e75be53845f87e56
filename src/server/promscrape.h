/* promscrape: the Prometheus text exposition format (0.0.4) read into samples, fetched from a
 * server's /metrics through http_get (client.h), plus the few helpers a probe needs: the sum of a
 * metric over matching labels, histograms (from _bucket/_sum/_count, differences between two
 * scrapes, quantile and mean), and one server-agnostic view (struct server_metrics) mapped from
 * vllm:* (the deprecated gpu_* names too; the embedded runtime uses these), llamacpp:* and
 * sglang:* names. It does not speak OpenMetrics' protobuf or exemplars and does not keep history.
 *
 *   struct prom_set before, after;
 *   prom_fetch("http://127.0.0.1:8000/metrics", NULL, 5000, &before, &status, err, sizeof err);
 *   ... run load ...
 *   prom_fetch(..., &after, ...);
 *   struct server_metrics m0, m1, d;
 *   server_metrics_from_prom(&before, &m0); server_metrics_from_prom(&after, &m1);
 *   server_metrics_delta(&m0, &m1, &d);            // counters: after - before
 *   struct prom_histogram h0, h1, hd;
 *   prom_histogram_get(&before, "vllm:time_to_first_token_seconds", NULL, &h0); (same for h1)
 *   prom_histogram_sub(&h1, &h0, &hd);  double p50_s = prom_histogram_quantile(&hd, 0.5);
 *   prom_histogram_free(&h0); ... prom_set_free(&before); prom_set_free(&after);
 *
 * Label matchers are NULL-terminated arrays of "name=value" strings (exact match); NULL matches
 * every series. Any thread; a prom_set is not shared between threads while being parsed. */
#ifndef SLM_PROBE_PROMSCRAPE_H
#define SLM_PROBE_PROMSCRAPE_H

#include <stddef.h>
#include <stdint.h>

enum prom_status {
    PROM_OK = 0,
    PROM_ERR_SYNTAX,  /* a line that is not valid 0.0.4 text (err says line and why) */
    PROM_ERR_CAP,     /* more than PROM_MAX_SAMPLES samples, or the body over the fetch cap */
    PROM_ERR_CONNECT, /* fetch: connection refused / timeout */
    PROM_ERR_HTTP,    /* fetch: status other than 200 (llama.cpp without --metrics: 501) */
};
const char *prom_status_str(enum prom_status st);

#define PROM_MAX_SAMPLES 200000
#define PROM_MAX_BODY_BYTES (64u << 20)

enum prom_type { PROM_TYPE_UNTYPED = 0, PROM_TYPE_COUNTER, PROM_TYPE_GAUGE, PROM_TYPE_HISTOGRAM,
                 PROM_TYPE_SUMMARY };

struct prom_label {
    const char *name;   /* NUL-terminated views into the set's own copy of the text */
    const char *value;  /* unescaped (\\, \", \n) */
};

struct prom_sample {
    const char *name;           /* full name as exposed ("vllm:prompt_tokens_total") */
    struct prom_label *labels;  /* into the set's label pool */
    int n_labels;
    double value;               /* +Inf, -Inf, NaN accepted */
    int64_t timestamp_ms;       /* optional; 0 when absent */
    int has_timestamp;
    enum prom_type type;        /* from "# TYPE" of its family, UNTYPED if none */
};

/* Owns a modified copy of the text; every view in samples lives until prom_set_free. */
struct prom_set {
    char *text_;
    struct prom_sample *samples;
    size_t n_samples;
    struct prom_label *labels_;
    size_t n_labels_;
};

/* Parses len bytes (comments, HELP/TYPE, blank lines, LF or CRLF). On error the set is empty
 * and err says "line N: ...". Always call prom_set_free afterwards (also after errors). */
enum prom_status prom_parse(const char *text, size_t len, struct prom_set *out, char *err,
                            size_t err_len);
/* GET url with http_get (api_key may be NULL) and parses it. *http_status_out gets the status
 * (0 if none; may be NULL). */
enum prom_status prom_fetch(const char *url, const char *api_key, long timeout_ms,
                            struct prom_set *out, int *http_status_out, char *err, size_t err_len);
void prom_set_free(struct prom_set *s); /* NULL-safe; leaves an empty set */

/* Value of a label of a sample, or NULL. */
const char *prom_label_get(const struct prom_sample *s, const char *name);
/* 1 if the sample carries every "name=value" in matchers (NULL matches all). */
int prom_sample_matches(const struct prom_sample *s, const char *const *matchers);
/* Sum of the values of samples named `name` that match; returns how many matched (0: *sum_out
 * = 0 and the caller should treat the metric as absent). */
int prom_sum(const struct prom_set *s, const char *name, const char *const *matchers,
             double *sum_out);

/* A histogram summed over all matching series (e.g. every engine): cumulative bucket counts by
 * upper bound ascending, last bound +Inf. */
struct prom_histogram {
    double *le;        /* [n_buckets] upper bounds */
    double *count_le;  /* [n_buckets] cumulative counts */
    int n_buckets;
    double sum;
    double count;
};
/* Collects base_bucket{le=...}, base_sum and base_count. 0, or -1 if no bucket matched (then h is
 * empty but still safe to free). */
int prom_histogram_get(const struct prom_set *s, const char *base, const char *const *matchers,
                       struct prom_histogram *h);
/* out = a - b (same bucket bounds required: -1 otherwise). For "during this window". */
int prom_histogram_sub(const struct prom_histogram *a, const struct prom_histogram *b,
                       struct prom_histogram *out);
/* Quantile q in [0,1] by linear interpolation inside the bucket (Prometheus'
 * histogram_quantile rules; a result in the +Inf bucket returns the highest finite bound).
 * NAN if the histogram is empty. */
double prom_histogram_quantile(const struct prom_histogram *h, double q);
double prom_histogram_mean(const struct prom_histogram *h); /* sum / count; NAN if count == 0 */
void prom_histogram_free(struct prom_histogram *h);          /* NULL-safe */

/* A server-agnostic view. Gauges are current values; counters are totals since server start
 * (use server_metrics_delta between two scrapes). has_* says whether the server exposed it.
 * Meanings differ where the servers differ, and are not papered over:
 *   prompt_tokens: vLLM/SGLang count every prompt token (cached ones included); llama.cpp's
 *     llamacpp:prompt_tokens_total excludes cache hits.
 *   prefix_queries/prefix_hits: vLLM token counters (vllm:prefix_cache_*, deprecated
 *     vllm:gpu_prefix_cache_*); llama.cpp and SGLang have no such counters.
 *   cached_tokens: vllm:prompt_tokens_cached (newest) else vllm:prefix_cache_hits;
 *     llamacpp:prompt_tokens_cached_total (2026 builds); sglang:cached_tokens_total.
 *   prefix_hit_rate: SGLang's sglang:cache_hit_rate gauge only.
 *   kv_usage: vllm:kv_cache_usage_perc (deprecated vllm:gpu_cache_usage_perc), fraction 0..1;
 *     sglang:token_usage; old llama.cpp llamacpp:kv_cache_usage_ratio. */
enum server_metrics_source { SERVER_METRICS_SOURCE_NONE = 0, SERVER_METRICS_SOURCE_VLLM,
                             SERVER_METRICS_SOURCE_LLAMACPP, SERVER_METRICS_SOURCE_SGLANG };
const char *server_metrics_source_str(enum server_metrics_source s); /* "none", "vllm", ... */

struct server_metrics {
    enum server_metrics_source source;
    double running, waiting, kv_usage;                         /* gauges */
    double prompt_tokens, generation_tokens;                   /* counters */
    double prefix_queries, prefix_hits, cached_tokens, preemptions; /* counters */
    double prefix_hit_rate;                                    /* gauge (SGLang) */
    double requests_success;                                   /* counter, all finish reasons */
    int has_running, has_waiting, has_kv_usage, has_prompt_tokens, has_generation_tokens,
        has_prefix_queries, has_prefix_hits, has_cached_tokens, has_preemptions,
        has_prefix_hit_rate, has_requests_success;
};
/* Maps a scrape (sums over every series of a name, e.g. all engines/models). Fields not exposed
 * are 0 with has_* = 0. */
void server_metrics_from_prom(const struct prom_set *s, struct server_metrics *out);
/* out = after - before for counters (has_* = both had it); gauges are after's. */
void server_metrics_delta(const struct server_metrics *before, const struct server_metrics *after,
                          struct server_metrics *out);

#endif
