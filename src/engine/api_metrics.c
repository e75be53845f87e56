/* api_metrics: histograms with vLLM's bucket boundaries and the /metrics page renderer.
 * It reads engine counters from a snapshot handed in; it never calls into the engine. */
#include "engine/api_metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* vllm/v1/metrics/loggers.py */
static const double le_ttft[] = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                 0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                 20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
static const double le_itl[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
static const double le_request[] = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                    5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                    60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *api_finish_str(enum api_finish f)
{
    switch (f) {
    case API_FINISH_STOP:
        return "stop";
    case API_FINISH_LENGTH:
        return "length";
    case API_FINISH_ABORT:
        return "abort";
    default:
        return "unknown";
    }
}

void api_hist_init(struct api_hist *h, const char *name, const char *help, const double *le,
                   int n_le)
{
    h->name = name;
    h->help = help;
    h->le = le;
    h->n_le = n_le;
    h->n_bucket = xcalloc((size_t)n_le + 1, sizeof h->n_bucket[0]);
    h->n_count = 0;
    h->sum = 0;
}

void api_hist_free(struct api_hist *h)
{
    if (!h)
        return;
    free(h->n_bucket);
    h->n_bucket = NULL;
    h->n_le = 0;
}

void api_hist_observe(struct api_hist *h, double v)
{
    int i = 0;
    if (v == v) /* not NaN */
        while (i < h->n_le && v > h->le[i])
            i++;
    h->n_bucket[i]++;
    h->n_count++;
    if (v == v)
        h->sum += v;
}

uint64_t api_hist_cumulative(const struct api_hist *h, int i_le)
{
    uint64_t n = 0;
    for (int i = 0; i <= i_le && i <= h->n_le; i++)
        n += h->n_bucket[i];
    return n;
}

/* build_1_2_5_buckets(max): 1, 2, 5, 10, 20, 50, ... while <= max. */
static int build_1_2_5(double max_value, double *out, int max_out)
{
    static const int mant[] = {1, 2, 5};
    int n = 0;
    for (double p = 1; n < max_out; p *= 10) {
        for (int i = 0; i < 3; i++) {
            double v = mant[i] * p;
            if (v > max_value || n >= max_out)
                return n;
            out[n++] = v;
        }
    }
    return n;
}

void api_metrics_init(struct api_metrics *m, int max_model_len)
{
    memset(m, 0, sizeof *m);
    m->le_tokens = xcalloc(64, sizeof(double));
    m->n_le_tokens = build_1_2_5(max_model_len > 0 ? max_model_len : 1, m->le_tokens, 64);
    api_hist_init(&m->hist[API_HIST_TTFT], "vllm:time_to_first_token_seconds",
                  "Histogram of time to first token in seconds.", le_ttft, N_OF(le_ttft));
    api_hist_init(&m->hist[API_HIST_ITL], "vllm:inter_token_latency_seconds",
                  "Histogram of inter-token latency in seconds.", le_itl, N_OF(le_itl));
    api_hist_init(&m->hist[API_HIST_TPOT], "vllm:request_time_per_output_token_seconds",
                  "Histogram of time_per_output_token_seconds per request.", le_itl, N_OF(le_itl));
    api_hist_init(&m->hist[API_HIST_E2E], "vllm:e2e_request_latency_seconds",
                  "Histogram of e2e request latency in seconds.", le_request, N_OF(le_request));
    api_hist_init(&m->hist[API_HIST_QUEUE], "vllm:request_queue_time_seconds",
                  "Histogram of time spent in WAITING phase for request.", le_request,
                  N_OF(le_request));
    api_hist_init(&m->hist[API_HIST_INFERENCE], "vllm:request_inference_time_seconds",
                  "Histogram of time spent in RUNNING phase for request.", le_request,
                  N_OF(le_request));
    api_hist_init(&m->hist[API_HIST_PREFILL], "vllm:request_prefill_time_seconds",
                  "Histogram of time spent in PREFILL phase for request.", le_request,
                  N_OF(le_request));
    api_hist_init(&m->hist[API_HIST_DECODE], "vllm:request_decode_time_seconds",
                  "Histogram of time spent in DECODE phase for request.", le_request,
                  N_OF(le_request));
    api_hist_init(&m->hist[API_HIST_PROMPT_TOKENS], "vllm:request_prompt_tokens",
                  "Number of prefill tokens processed.", m->le_tokens, m->n_le_tokens);
    api_hist_init(&m->hist[API_HIST_GEN_TOKENS], "vllm:request_generation_tokens",
                  "Number of generation tokens processed.", m->le_tokens, m->n_le_tokens);
    api_hist_init(&m->hist[API_HIST_MAX_TOKENS], "vllm:request_params_max_tokens",
                  "Histogram of the max_tokens request parameter.", m->le_tokens, m->n_le_tokens);
}

void api_metrics_free(struct api_metrics *m)
{
    if (!m)
        return;
    for (int i = 0; i < API_HIST_COUNT; i++)
        api_hist_free(&m->hist[i]);
    free(m->le_tokens);
    memset(m, 0, sizeof *m);
}

void api_metrics_observe_ttft(struct api_metrics *m, double seconds)
{
    api_hist_observe(&m->hist[API_HIST_TTFT], seconds);
}

void api_metrics_observe_itl(struct api_metrics *m, double seconds)
{
    api_hist_observe(&m->hist[API_HIST_ITL], seconds);
}

static double span_s(mono_ns a, mono_ns b)
{
    return b >= a ? ns_to_s(b - a) : 0.0;
}

void api_metrics_observe_finished(struct api_metrics *m, const struct api_request_obs *o)
{
    if (o->finish >= 0 && o->finish < API_FINISH_COUNT)
        m->n_success[o->finish]++;
    if (o->t_arrival_ns && o->t_finish_ns)
        api_hist_observe(&m->hist[API_HIST_E2E], span_s(o->t_arrival_ns, o->t_finish_ns));
    if (o->t_arrival_ns && o->t_scheduled_ns)
        api_hist_observe(&m->hist[API_HIST_QUEUE], span_s(o->t_arrival_ns, o->t_scheduled_ns));
    if (o->t_scheduled_ns && o->t_finish_ns)
        api_hist_observe(&m->hist[API_HIST_INFERENCE], span_s(o->t_scheduled_ns, o->t_finish_ns));
    if (o->t_scheduled_ns && o->t_first_token_ns)
        api_hist_observe(&m->hist[API_HIST_PREFILL],
                         span_s(o->t_scheduled_ns, o->t_first_token_ns));
    if (o->t_first_token_ns && o->t_finish_ns) {
        double decode_s = span_s(o->t_first_token_ns, o->t_finish_ns);
        api_hist_observe(&m->hist[API_HIST_DECODE], decode_s);
        if (o->n_generated > 1)
            api_hist_observe(&m->hist[API_HIST_TPOT], decode_s / (o->n_generated - 1));
    }
    api_hist_observe(&m->hist[API_HIST_PROMPT_TOKENS], o->n_prompt);
    api_hist_observe(&m->hist[API_HIST_GEN_TOKENS], o->n_generated);
    if (o->max_tokens > 0)
        api_hist_observe(&m->hist[API_HIST_MAX_TOKENS], o->max_tokens);
}

void api_fmt_double(double v, char *out, size_t out_len)
{
    if (v != v) {
        snprintf(out, out_len, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, out_len, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) {
        snprintf(out, out_len, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    /* Shortest round-tripping significand, like Python's repr. */
    char tmp[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    const char *p = tmp;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    char digits[24];
    int n_digits = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && n_digits < (int)sizeof digits - 1)
            digits[n_digits++] = *p;
    digits[n_digits] = 0;
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    while (n_digits > 1 && digits[n_digits - 1] == '0')
        digits[--n_digits] = 0;

    char res[64];
    size_t n = 0;
    if (neg)
        res[n++] = '-';
    if (exp10 < -4 || exp10 >= 16) {
        res[n++] = digits[0];
        if (n_digits > 1) {
            res[n++] = '.';
            for (int i = 1; i < n_digits; i++)
                res[n++] = digits[i];
        }
        n += (size_t)snprintf(res + n, sizeof res - n, "e%c%02d", exp10 < 0 ? '-' : '+',
                              exp10 < 0 ? -exp10 : exp10);
    } else if (exp10 < 0) {
        res[n++] = '0';
        res[n++] = '.';
        for (int i = 0; i < -exp10 - 1; i++)
            res[n++] = '0';
        for (int i = 0; i < n_digits; i++)
            res[n++] = digits[i];
    } else {
        for (int i = 0; i <= exp10; i++)
            res[n++] = i < n_digits ? digits[i] : '0';
        res[n++] = '.';
        if (n_digits > exp10 + 1)
            for (int i = exp10 + 1; i < n_digits; i++)
                res[n++] = digits[i];
        else
            res[n++] = '0';
    }
    res[n] = 0;
    snprintf(out, out_len, "%s", res);
}

/* Prometheus label value escaping. */
static enum buf_status put_label_value(struct buf *b, const char *s)
{
    enum buf_status st = BUF_OK;
    for (; *s && st == BUF_OK; s++) {
        if (*s == '\\')
            st = buf_puts(b, "\\\\");
        else if (*s == '"')
            st = buf_puts(b, "\\\"");
        else if (*s == '\n')
            st = buf_puts(b, "\\n");
        else
            st = buf_putc(b, *s);
    }
    return st;
}

struct render {
    struct buf *b;
    const char *model;
    enum buf_status st;
};

static void r_puts(struct render *r, const char *s)
{
    if (r->st == BUF_OK)
        r->st = buf_puts(r->b, s);
}

static void r_head(struct render *r, const char *name, const char *help, const char *type)
{
    if (r->st == BUF_OK)
        r->st = buf_printf(r->b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{model_name="..",engine="0"[,extra]} value */
static void r_sample(struct render *r, const char *name, const char *suffix, const char *extra_k,
                     const char *extra_v, double v)
{
    char num[40];
    api_fmt_double(v, num, sizeof num);
    if (r->st == BUF_OK)
        r->st = buf_printf(r->b, "%s%s{model_name=\"", name, suffix);
    if (r->st == BUF_OK)
        r->st = put_label_value(r->b, r->model);
    r_puts(r, "\",engine=\"0\"");
    if (extra_k) {
        if (r->st == BUF_OK)
            r->st = buf_printf(r->b, ",%s=\"", extra_k);
        if (r->st == BUF_OK)
            r->st = put_label_value(r->b, extra_v);
        r_puts(r, "\"");
    }
    if (r->st == BUF_OK)
        r->st = buf_printf(r->b, "} %s\n", num);
}

static void r_gauge(struct render *r, const char *name, const char *help, double v)
{
    r_head(r, name, help, "gauge");
    r_sample(r, name, "", NULL, NULL, v);
}

static void r_counter(struct render *r, const char *name_total, const char *help, double v)
{
    r_head(r, name_total, help, "counter");
    r_sample(r, name_total, "", NULL, NULL, v);
}

static void r_hist(struct render *r, const struct api_hist *h)
{
    char le[40];
    r_head(r, h->name, h->help, "histogram");
    for (int i = 0; i <= h->n_le; i++) {
        if (i < h->n_le)
            api_fmt_double(h->le[i], le, sizeof le);
        else
            snprintf(le, sizeof le, "+Inf");
        r_sample(r, h->name, "_bucket", "le", le, (double)api_hist_cumulative(h, i));
    }
    r_sample(r, h->name, "_count", NULL, NULL, (double)h->n_count);
    r_sample(r, h->name, "_sum", NULL, NULL, h->sum);
}

enum buf_status api_metrics_render(const struct api_metrics *m, const char *model_name,
                                   const struct engine_stats *st, const struct engine_info *info,
                                   struct buf *out)
{
    struct render r = {out, model_name ? model_name : "", BUF_OK};

    r_gauge(&r, "vllm:num_requests_running", "Number of requests in model execution batches.",
            st->n_running);
    r_gauge(&r, "vllm:num_requests_waiting", "Number of requests waiting to be processed.",
            st->n_waiting);
    r_gauge(&r, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
            st->kv_usage);
    r_counter(&r, "vllm:prefix_cache_queries_total",
              "Prefix cache queries, in terms of number of queried tokens.",
              (double)st->prefix_cache_queries_total);
    r_counter(&r, "vllm:prefix_cache_hits_total",
              "Prefix cache hits, in terms of number of cached tokens.",
              (double)st->prefix_cache_hits_total);
    r_counter(&r, "vllm:num_preemptions_total", "Cumulative number of preemption from the engine.",
              (double)st->preemptions_total);
    r_counter(&r, "vllm:prompt_tokens_total", "Number of prefill tokens processed.",
              (double)st->prompt_tokens_total);
    r_counter(&r, "vllm:generation_tokens_total", "Number of generation tokens processed.",
              (double)st->generation_tokens_total);

    r_head(&r, "vllm:request_success_total", "Count of successfully processed requests.",
           "counter");
    for (int f = 0; f < API_FINISH_COUNT; f++)
        r_sample(&r, "vllm:request_success_total", "", "finished_reason",
                 api_finish_str((enum api_finish)f), (double)m->n_success[f]);

    for (int i = 0; i < API_HIST_COUNT; i++)
        if (m->hist[i].n_bucket)
            r_hist(&r, &m->hist[i]);

    /* cache_config_info: a gauge set to 1, the configuration in its labels (str() of values). */
    char util[40], conc[40];
    api_fmt_double(info->gpu_memory_utilization, util, sizeof util);
    api_fmt_double(info->max_concurrency, conc, sizeof conc);
    r_head(&r, "vllm:cache_config_info", "Information of the LLMEngine CacheConfig", "gauge");
    if (r.st == BUF_OK)
        r.st = buf_puts(out, "vllm:cache_config_info{model_name=\"");
    if (r.st == BUF_OK)
        r.st = put_label_value(out, r.model);
    if (r.st == BUF_OK)
        r.st = buf_printf(out,
                          "\",block_size=\"%d\",gpu_memory_utilization=\"%s\",cache_dtype=\"auto\","
                          "enable_prefix_caching=\"%s\",num_gpu_blocks=\"%d\","
                          "kv_cache_size_tokens=\"%llu\",kv_cache_max_concurrency=\"%s\","
                          "engine=\"0\"} 1.0\n",
                          info->block_size, util, info->enable_prefix_caching ? "True" : "False",
                          info->n_blocks, (unsigned long long)info->kv_capacity_tokens, conc);
    return r.st;
}
