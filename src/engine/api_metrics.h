/* api_metrics: the embedded server's Prometheus side. Histograms with vLLM's names and bucket
 * boundaries (TTFT, inter-token latency, e2e, queue, inference, prefill, decode, per-request
 * TPOT, prompt/generation token counts), the request_success counters by finish reason, and the
 * renderer of the whole /metrics page (text format 0.0.4, prometheus_client's spelling: counters
 * end in _total, numbers as Python floats, every series labelled {model_name="...",engine="0"}).
 * Gauges and engine counters come from an engine_stats snapshot passed to the renderer; this
 * module observes nothing by itself and takes no locks: one thread (the server's event loop)
 * owns a struct api_metrics.
 *
 *   struct api_metrics m;
 *   api_metrics_init(&m, max_model_len);
 *   api_metrics_observe_ttft(&m, 0.012);
 *   api_metrics_observe_itl(&m, 0.004);
 *   api_metrics_observe_finished(&m, &obs);          // once per request
 *   api_metrics_render(&m, "tiny", &stats, &info, &page);
 *   api_metrics_free(&m);
 */
#ifndef SLM_API_METRICS_H
#define SLM_API_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "util/buf.h"
#include "util/clock.h"

/* One Prometheus histogram. n_bucket[i] counts observations v with le[i-1] < v <= le[i]
 * (n_bucket[n_le]: above the last bound, the +Inf bucket); rendering makes them cumulative. */
struct api_hist {
    const char *name; /* "vllm:time_to_first_token_seconds" (static) */
    const char *help; /* static */
    const double *le; /* ascending upper bounds, +Inf implicit */
    int n_le;
    uint64_t *n_bucket; /* [n_le + 1], owned */
    uint64_t n_count;
    double sum;
};

/* bounds must outlive h. Allocates the bucket array. */
void api_hist_init(struct api_hist *h, const char *name, const char *help, const double *le,
                   int n_le);
void api_hist_free(struct api_hist *h); /* NULL-safe */
/* NaN and negative values are counted in the first bucket (they cannot occur from monotonic
 * timestamps, but are never dropped). */
void api_hist_observe(struct api_hist *h, double v);
/* Observations <= le[i_le]; i_le == n_le gives the total count (+Inf). */
uint64_t api_hist_cumulative(const struct api_hist *h, int i_le);

enum api_hist_id {
    API_HIST_TTFT = 0,      /* vllm:time_to_first_token_seconds */
    API_HIST_ITL,           /* vllm:inter_token_latency_seconds */
    API_HIST_TPOT,          /* vllm:request_time_per_output_token_seconds */
    API_HIST_E2E,           /* vllm:e2e_request_latency_seconds */
    API_HIST_QUEUE,         /* vllm:request_queue_time_seconds */
    API_HIST_INFERENCE,     /* vllm:request_inference_time_seconds */
    API_HIST_PREFILL,       /* vllm:request_prefill_time_seconds */
    API_HIST_DECODE,        /* vllm:request_decode_time_seconds */
    API_HIST_PROMPT_TOKENS, /* vllm:request_prompt_tokens (1-2-5 buckets up to max_model_len) */
    API_HIST_GEN_TOKENS,    /* vllm:request_generation_tokens */
    API_HIST_MAX_TOKENS,    /* vllm:request_params_max_tokens */
    API_HIST_COUNT
};

/* How a request ended, as clients and vLLM's request_success counter see it. */
enum api_finish {
    API_FINISH_STOP = 0, /* EOS or a stop string */
    API_FINISH_LENGTH,   /* max_tokens or max_model_len */
    API_FINISH_ABORT,    /* client gone, shutdown */
    API_FINISH_COUNT
};
const char *api_finish_str(enum api_finish f); /* "stop", "length", "abort" */

/* One finished request's timeline (clock_now_ns values; 0 = did not happen). */
struct api_request_obs {
    mono_ns t_arrival_ns;
    mono_ns t_scheduled_ns;
    mono_ns t_first_token_ns;
    mono_ns t_finish_ns;
    int n_prompt;
    int n_generated;
    int max_tokens;
    enum api_finish finish;
};

struct api_metrics {
    struct api_hist hist[API_HIST_COUNT];
    double *le_tokens; /* 1-2-5 bounds up to max_model_len, owned */
    int n_le_tokens;
    uint64_t n_success[API_FINISH_COUNT];
};

/* max_model_len sets the token-count histograms' buckets (vLLM's build_1_2_5_buckets). */
void api_metrics_init(struct api_metrics *m, int max_model_len);
void api_metrics_free(struct api_metrics *m); /* NULL-safe; leaves a zeroed struct */

void api_metrics_observe_ttft(struct api_metrics *m, double seconds);
void api_metrics_observe_itl(struct api_metrics *m, double seconds);
/* Counts request_success{finished_reason} and observes e2e, queue, inference, prefill, decode,
 * TPOT (when n_generated > 1) and the token-count histograms. Phases whose timestamps are 0
 * (never scheduled, no token) are not observed. */
void api_metrics_observe_finished(struct api_metrics *m, const struct api_request_obs *o);

/* Appends the whole /metrics page: engine gauges and counters from st, cache_config_info from
 * info, the histograms and request_success from m. Labels are escaped (\\, \", \n). BUF_ERR_CAP
 * when out's cap is too small. */
enum buf_status api_metrics_render(const struct api_metrics *m, const char *model_name,
                                   const struct engine_stats *st, const struct engine_info *info,
                                   struct buf *out);

/* Formats v as Python's repr(float) does (what prometheus_client writes): "5.0", "0.001",
 * "1e-05", "2560.0", "+Inf", "-Inf", "NaN". out_len >= 32. */
void api_fmt_double(double v, char *out, size_t out_len);

#endif
