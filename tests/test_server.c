/* test_server: the embedded server end to end. Starts the real `slmprobe serve` (SLMPROBE_BIN,
 * default ./slmprobe) with the tiny preset on free loopback ports and talks plain HTTP/1.1 over
 * sockets with a small blocking client written here: every endpoint's shape, SSE framing of
 * streamed completions and chat, usage, greedy reproducibility, stop strings, 16 concurrent
 * streams, every bad-input case (status, error shape, server still serving), keep-alive,
 * pipelining and chunked request bodies, /metrics movement, prefix caching seen through
 * /metrics and usage. Also unit tests of api_metrics (float format, histograms, page). */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/api_metrics.h"
#include "test.h"
#include "util/buf.h"
#include "util/json.h"
#include "serve_harness.h"

/* ---------------------------------------------------------------------------------------- */
/* starting the server */

/* Starts serve with the common test flags plus extra (NULL-terminated); waits for /health 200. */
static int srv_start(struct srv *s, const char *name, const char *const *extra)
{
    memset(s, 0, sizeof *s);
    s->port = free_port();
    snprintf(s->log, sizeof s->log, "%s/%s.log", g_dir, name);
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    const char *argv[64];
    int n = 0;
    argv[n++] = bin_path();
    argv[n++] = "serve";
    argv[n++] = "--model";
    argv[n++] = g_model;
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--max-model-len";
    argv[n++] = "512";
    argv[n++] = "--kv-cache-memory-bytes";
    argv[n++] = "16MiB";
    argv[n++] = "--threads"; /* 1: no OpenMP spinning on a shared 2-core machine */
    argv[n++] = "1";
    argv[n++] = "--max-num-batched-tokens";
    argv[n++] = "512";
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    s->pid = fork();
    if (s->pid == 0) {
        setpgid(0, 0);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    double t0 = now_s();
    while (now_s() - t0 < 120) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            fprintf(stderr, "  server %s exited during start-up; log:\n%s\n", name, slurp(s->log));
            s->pid = 0;
            return -1;
        }
        if (http_status_only(s->port, "/health") == 200)
            return 0;
        sleep_ms(50);
    }
    fprintf(stderr, "  server %s not ready after 120 s\n", name);
    return -1;
}


/* The engine publishes its counters after each step, a moment after the step's events (and so
 * the responses) went out. A settled page: nothing running or waiting and the token counters
 * unchanged over 150 ms (or 10 s passed). */
static char *get_settled_metrics(int port)
{
    const char *keys[] = {"vllm:num_requests_running" LBL, "vllm:num_requests_waiting" LBL,
                          "vllm:prompt_tokens_total" LBL, "vllm:generation_tokens_total" LBL};
    char *a = get_metrics(port);
    for (int i = 0; i < 60; i++) {
        sleep_ms(150);
        char *b = get_metrics(port);
        int same = metric(b, keys[0]) == 0 && metric(b, keys[1]) == 0;
        for (int k = 2; k < 4; k++)
            same = same && metric(a, keys[k]) == metric(b, keys[k]);
        free(a);
        a = b;
        if (same)
            break;
    }
    return a;
}

/* ---------------------------------------------------------------------------------------- */
/* api_metrics unit tests */

static void test_fmt_double(void)
{
    char b[40];
    struct {
        double v;
        const char *want;
    } cases[] = {
        {0, "0.0"},
        {5, "5.0"},
        {0.001, "0.001"},
        {2560, "2560.0"},
        {0.3, "0.3"},
        {1e-05, "1e-05"},
        {1.5e-7, "1.5e-07"},
        {0.0001, "0.0001"},
        {123.456, "123.456"},
        {1e16, "1e+16"},
        {12345678.0, "12345678.0"},
        {-2.5, "-2.5"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
        {0.1 + 0.2, "0.30000000000000004"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        api_fmt_double(cases[i].v, b, sizeof b);
        CHECK_EQ_STR(b, cases[i].want);
    }
    api_fmt_double(NAN, b, sizeof b);
    CHECK_EQ_STR(b, "NaN");
}

static void test_hist(void)
{
    static const double le[] = {0.1, 1.0, 10.0};
    struct api_hist h;
    api_hist_init(&h, "x", "help", le, 3);
    api_hist_observe(&h, 0.05);
    api_hist_observe(&h, 0.1); /* le is inclusive */
    api_hist_observe(&h, 0.5);
    api_hist_observe(&h, 100);
    CHECK_EQ_INT(api_hist_cumulative(&h, 0), 2);
    CHECK_EQ_INT(api_hist_cumulative(&h, 1), 3);
    CHECK_EQ_INT(api_hist_cumulative(&h, 2), 3);
    CHECK_EQ_INT(api_hist_cumulative(&h, 3), 4);
    CHECK_EQ_INT(h.n_count, 4);
    CHECK_NEAR(h.sum, 100.65, 1e-9);
    api_hist_free(&h);
    api_hist_free(NULL);
}

static void test_metrics_page(void)
{
    struct api_metrics m;
    api_metrics_init(&m, 512);
    CHECK_EQ_INT(m.n_le_tokens, 9); /* 1 2 5 10 20 50 100 200 500 */
    api_metrics_observe_ttft(&m, 0.003);
    api_metrics_observe_itl(&m, 0.02);
    struct api_request_obs o = {.t_arrival_ns = 1000000000ull,
                                .t_scheduled_ns = 1100000000ull,
                                .t_first_token_ns = 1200000000ull,
                                .t_finish_ns = 2200000000ull,
                                .n_prompt = 12,
                                .n_generated = 11,
                                .max_tokens = 16,
                                .finish = API_FINISH_LENGTH};
    api_metrics_observe_finished(&m, &o);
    struct engine_stats st = {0};
    st.n_running = 3;
    st.kv_usage = 0.25;
    st.prompt_tokens_total = 12;
    struct engine_info info = {0};
    info.block_size = 16;
    info.n_blocks = 256;
    info.kv_capacity_tokens = 4096;
    info.max_concurrency = 8;
    info.gpu_memory_utilization = 0.9;
    info.enable_prefix_caching = 1;
    struct buf b;
    buf_init(&b, 1024, 1 << 20);
    CHECK(api_metrics_render(&m, "my\"model", &st, &info, &b) == BUF_OK);
    const char *p = b.data;
#define L2 "{model_name=\"my\\\"model\",engine=\"0\"}"
    CHECK(
        strstr(p, "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running" L2 " 3.0\n"));
    CHECK(strstr(p, "vllm:kv_cache_usage_perc" L2 " 0.25\n"));
    CHECK(strstr(p,
                 "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total" L2 " 12.0\n"));
    CHECK(strstr(p, "vllm:request_success_total{model_name=\"my\\\"model\",engine=\"0\","
                    "finished_reason=\"length\"} 1.0\n"));
    CHECK(strstr(p, "vllm:time_to_first_token_seconds_bucket{model_name=\"my\\\"model\","
                    "engine=\"0\",le=\"0.001\"} 0.0\n"));
    CHECK(strstr(p, "vllm:time_to_first_token_seconds_bucket{model_name=\"my\\\"model\","
                    "engine=\"0\",le=\"0.005\"} 1.0\n"));
    CHECK(strstr(p, "vllm:time_to_first_token_seconds_bucket{model_name=\"my\\\"model\","
                    "engine=\"0\",le=\"+Inf\"} 1.0\n"));
    CHECK(strstr(p, "vllm:time_to_first_token_seconds_count" L2 " 1.0\n"));
    CHECK(strstr(p, "vllm:time_to_first_token_seconds_sum" L2 " 0.003\n"));
    CHECK(strstr(p, "vllm:e2e_request_latency_seconds_sum" L2 " 1.2\n"));
    CHECK(strstr(p, "vllm:request_queue_time_seconds_sum" L2 " 0.1\n"));
    CHECK(strstr(p, "vllm:request_decode_time_seconds_sum" L2 " 1.0\n"));
    CHECK(strstr(p, "vllm:request_time_per_output_token_seconds_sum" L2 " 0.1\n"));
    CHECK(strstr(p, "vllm:request_prompt_tokens_bucket{model_name=\"my\\\"model\",engine=\"0\","
                    "le=\"500.0\"} 1.0\n"));
    CHECK(strstr(p, "vllm:cache_config_info{model_name=\"my\\\"model\",block_size=\"16\","
                    "gpu_memory_utilization=\"0.9\",cache_dtype=\"auto\","
                    "enable_prefix_caching=\"True\",num_gpu_blocks=\"256\","
                    "kv_cache_size_tokens=\"4096\",kv_cache_max_concurrency=\"8.0\","
                    "engine=\"0\"} 1.0\n"));
    /* a cap too small is its own error */
    struct buf small;
    buf_init(&small, 16, 100);
    CHECK(api_metrics_render(&m, "x", &st, &info, &small) == BUF_ERR_CAP);
    buf_free(&small);
    buf_free(&b);
    api_metrics_free(&m);
}

/* ---------------------------------------------------------------------------------------- */
/* end to end */

static struct srv A; /* main server: api key, prompt tokens details, small body cap */
static int a_up;

static void test_start(void)
{
    static const char *const extra[] = {"--api-key",
                                        "sekret",
                                        "--enable-prompt-tokens-details",
                                        "--max-body-bytes",
                                        "65536",
                                        "--debug-check-invariants",
                                        NULL};
    g_auth = "Authorization: Bearer sekret\r\n";
    a_up = srv_start(&A, "a", extra) == 0;
    CHECK(a_up);
    char *log = slurp(A.log);
    /* cold-start lines, in order */
    const char *want[] = {"Starting to load model",
                          "Loading weights took",
                          "Model loading took",
                          "init engine (profile, create kv cache, warmup model) took",
                          "Starting vLLM API server 0 on http://127.0.0.1:",
                          "Application startup complete."};
    const char *p = log;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *q = strstr(p, want[i]);
        CHECK_MSG(q != NULL, "log line '%s' missing or out of order", want[i]);
        if (q)
            p = q;
    }
    CHECK(strstr(log, "INFO ") != NULL); /* vLLM-style timestamps */
    free(log);
}

static void test_health_version_models(void)
{
    if (!a_up)
        return;
    struct resp r;
    CHECK(http_do(A.port, "GET", "/health", "", NULL, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.body.len, 0);
    resp_free(&r);
    CHECK(http_do(A.port, "HEAD", "/health", "", NULL, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);

    CHECK(http_do(A.port, "GET", "/version", "", NULL, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    struct json *j = jparse(&r.body);
    CHECK(j && jstr(j, "version") && strlen(jstr(j, "version")) > 0);
    json_free(j);
    resp_free(&r);

    CHECK(http_do(A.port, "GET", "/v1/models", NULL, NULL, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    char v[128];
    CHECK(resp_header(&r, "content-type", v, sizeof v) && !strcmp(v, "application/json"));
    j = jparse(&r.body);
    CHECK_EQ_STR(jstr(j, "object"), "list");
    CHECK_EQ_INT(json_len(jpath(j, "data")), 1);
    CHECK_EQ_STR(jstr(j, "data.0.id"), "tiny");
    CHECK_EQ_STR(jstr(j, "data.0.object"), "model");
    CHECK_EQ_STR(jstr(j, "data.0.owned_by"), "slmprobe");
    CHECK(jstr(j, "data.0.root") && strstr(jstr(j, "data.0.root"), "tiny.gguf"));
    CHECK(json_type_of(jpath(j, "data.0.parent")) == JSON_TYPE_NULL);
    CHECK_EQ_INT(jint(j, "data.0.max_model_len"), 512);
    CHECK(jint(j, "data.0.created") > 1600000000LL);
    json_free(j);
    resp_free(&r);
}

static void test_tokenize_detokenize(void)
{
    if (!a_up)
        return;
    struct resp r;
    CHECK(post(A.port, "/tokenize", "{\"prompt\": \"h\\u00e9llo\"}", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    struct json *j = jparse(&r.body);
    CHECK_EQ_INT(jint(j, "count"), 6); /* one token per byte */
    CHECK_EQ_INT(jint(j, "max_model_len"), 512);
    CHECK_EQ_INT(json_len(jpath(j, "tokens")), 6);
    CHECK(json_type_of(jpath(j, "token_strs")) == JSON_TYPE_NULL);
    /* round trip */
    struct buf body;
    buf_init(&body, 256, 1 << 20);
    buf_puts(&body, "{\"tokens\": [");
    for (size_t i = 0; i < json_len(jpath(j, "tokens")); i++) {
        long long t = -1;
        json_int(json_at(jpath(j, "tokens"), i), &t);
        buf_printf(&body, "%s%lld", i ? "," : "", t);
    }
    buf_puts(&body, "]}");
    json_free(j);
    resp_free(&r);
    CHECK(post(A.port, "/detokenize", body.data, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    j = jparse(&r.body);
    CHECK_EQ_STR(jstr(j, "prompt"), "h\xc3\xa9llo");
    json_free(j);
    resp_free(&r);
    buf_free(&body);

    /* chat template counted through /tokenize */
    CHECK(post(A.port, "/tokenize", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
               &r) == 0);
    j = jparse(&r.body);
    CHECK_EQ_INT(jint(j, "count"), (long long)strlen("<|user|>\nhi\n<|assistant|>\n"));
    json_free(j);
    resp_free(&r);

    CHECK(post(A.port, "/detokenize", "{\"tokens\": [1, 99999]}", &r) == 0);
    CHECK_EQ_INT(r.status, 400);
    resp_free(&r);
}

/* Non-streaming completion; returns the text (caller frees) and fills usage. */
static char *complete(int port, const char *body, int *status, long long *prompt_tokens,
                      long long *completion_tokens, char *finish, size_t finish_cap)
{
    struct resp r;
    char *text = NULL;
    *status = -1;
    if (post(port, "/v1/completions", body, &r) != 0) {
        resp_free(&r);
        return NULL;
    }
    *status = r.status;
    struct json *j = jparse(&r.body);
    if (j && r.status == 200) {
        text = xstrdup(jstr(j, "choices.0.text") ? jstr(j, "choices.0.text") : "");
        if (prompt_tokens)
            *prompt_tokens = jint(j, "usage.prompt_tokens");
        if (completion_tokens)
            *completion_tokens = jint(j, "usage.completion_tokens");
        if (finish)
            snprintf(finish, finish_cap, "%s",
                     jstr(j, "choices.0.finish_reason") ? jstr(j, "choices.0.finish_reason") : "");
    }
    json_free(j);
    resp_free(&r);
    return text;
}

static void test_completion_shape(void)
{
    if (!a_up)
        return;
    struct resp r;
    CHECK(post(A.port, "/v1/completions",
               "{\"model\": \"tiny\", \"prompt\": \"Hello, world\", \"max_tokens\": 8, "
               "\"temperature\": 0, \"ignore_eos\": true}",
               &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    struct json *j = jparse(&r.body);
    CHECK(jstr(j, "id") && !strncmp(jstr(j, "id"), "cmpl-", 5));
    CHECK_EQ_STR(jstr(j, "object"), "text_completion");
    CHECK_EQ_STR(jstr(j, "model"), "tiny");
    CHECK(jint(j, "created") > 1600000000LL);
    CHECK_EQ_INT(json_len(jpath(j, "choices")), 1);
    CHECK_EQ_INT(jint(j, "choices.0.index"), 0);
    CHECK(jstr(j, "choices.0.text") != NULL);
    CHECK(json_type_of(jpath(j, "choices.0.logprobs")) == JSON_TYPE_NULL);
    CHECK_EQ_STR(jstr(j, "choices.0.finish_reason"), "length");
    CHECK(json_type_of(jpath(j, "choices.0.stop_reason")) == JSON_TYPE_NULL);
    CHECK_EQ_INT(jint(j, "usage.prompt_tokens"), 12);
    CHECK_EQ_INT(jint(j, "usage.completion_tokens"), 8);
    CHECK_EQ_INT(jint(j, "usage.total_tokens"), 20);
    /* --enable-prompt-tokens-details: a miss says 0 rather than leaving the key out */
    CHECK(json_type_of(jpath(j, "usage.prompt_tokens_details.cached_tokens")) != JSON_TYPE_NULL);
    CHECK_EQ_INT(jint(j, "usage.prompt_tokens_details.cached_tokens"), 0);
    json_free(j);
    resp_free(&r);

    /* prompt as token ids, and as a list of one string */
    int st;
    long long pt, ct;
    char fin[32];
    char *t = complete(A.port,
                       "{\"prompt\": [72, 101, 108, 108, 111], \"max_tokens\": 3, "
                       "\"ignore_eos\": true}",
                       &st, &pt, &ct, fin, sizeof fin);
    CHECK_EQ_INT(st, 200);
    CHECK_EQ_INT(pt, 5);
    CHECK_EQ_INT(ct, 3);
    free(t);
    t = complete(A.port, "{\"prompt\": [\"Hello\"], \"max_tokens\": 2, \"ignore_eos\": true}", &st,
                 &pt, &ct, fin, sizeof fin);
    CHECK_EQ_INT(st, 200);
    CHECK_EQ_INT(pt, 5);
    CHECK_EQ_INT(ct, 2);
    free(t);
    /* default max_tokens is 16 */
    t = complete(A.port, "{\"prompt\": \"abc\", \"ignore_eos\": true}", &st, &pt, &ct, fin,
                 sizeof fin);
    CHECK_EQ_INT(ct, 16);
    free(t);
}

static void test_greedy_identical(void)
{
    if (!a_up)
        return;
    const char *body = "{\"prompt\": \"The quick brown fox\", \"max_tokens\": 24, "
                       "\"temperature\": 0, \"ignore_eos\": true}";
    int st1, st2;
    char *a = complete(A.port, body, &st1, NULL, NULL, NULL, 0);
    char *b = complete(A.port, body, &st2, NULL, NULL, NULL, 0);
    CHECK_EQ_INT(st1, 200);
    CHECK_EQ_INT(st2, 200);
    CHECK(a && b && !strcmp(a, b));
    CHECK(a && strlen(a) > 0);
    /* the same request streamed gives the same text */
    struct resp r;
    CHECK(post(A.port, "/v1/completions",
               "{\"prompt\": \"The quick brown fox\", \"max_tokens\": 24, \"temperature\": 0, "
               "\"ignore_eos\": true, \"stream\": true}",
               &r) == 0);
    char *ev[64], *store;
    int n = sse_split(&r.body, ev, 64, &store);
    struct buf joined;
    buf_init(&joined, 256, 1 << 20);
    for (int i = 0; i < n; i++) {
        struct buf tmp = {ev[i], strlen(ev[i]), 0, 0};
        if (!strcmp(ev[i], "[DONE]"))
            continue;
        struct json *j = jparse(&tmp);
        if (jstr(j, "choices.0.text"))
            buf_puts(&joined, jstr(j, "choices.0.text"));
        json_free(j);
    }
    CHECK(a && !strcmp(joined.data, a));
    buf_free(&joined);
    free(store);
    resp_free(&r);
    free(a);
    free(b);
}

/* Checks a streamed completion's exact framing; returns the number of token events. */
static int check_stream(const struct resp *r, int include_usage, int want_tokens,
                        const char *want_finish, int is_chat)
{
    char v[128];
    CHECK_EQ_INT(r->status, 200);
    CHECK(resp_header(r, "content-type", v, sizeof v) && !strncmp(v, "text/event-stream", 17));
    CHECK(resp_header(r, "transfer-encoding", v, sizeof v) && !strcmp(v, "chunked"));
    char *ev[1024], *store;
    int n = sse_split(&r->body, ev, 1024, &store);
    CHECK_MSG(n >= 2, "bad SSE framing: %.300s", r->body.data);
    if (n < 2) {
        free(store);
        return -1;
    }
    CHECK_EQ_STR(ev[n - 1], "[DONE]");
    CHECK_EQ_INT(r->n_chunks, n); /* one HTTP chunk per SSE event, flushed as it is made */
    int i_last = n - 2, n_tok = 0;
    if (include_usage) {
        struct buf tmp = {ev[n - 2], strlen(ev[n - 2]), 0, 0};
        struct json *u = jparse(&tmp);
        CHECK(json_type_of(jpath(u, "choices")) == JSON_TYPE_ARRAY &&
              json_len(jpath(u, "choices")) == 0);
        CHECK_EQ_INT(jint(u, "usage.completion_tokens"), want_tokens);
        CHECK_EQ_INT(jint(u, "usage.total_tokens"),
                     jint(u, "usage.prompt_tokens") + jint(u, "usage.completion_tokens"));
        CHECK_EQ_STR(jstr(u, "object"), is_chat ? "chat.completion.chunk" : "text_completion");
        json_free(u);
        i_last = n - 3;
    }
    for (int i = 0; i <= i_last; i++) {
        struct buf tmp = {ev[i], strlen(ev[i]), 0, 0};
        struct json *j = jparse(&tmp);
        CHECK(j != NULL);
        CHECK_EQ_INT(json_len(jpath(j, "choices")), 1);
        CHECK_EQ_STR(jstr(j, "object"), is_chat ? "chat.completion.chunk" : "text_completion");
        CHECK(!strncmp(jstr(j, "id") ? jstr(j, "id") : "", is_chat ? "chatcmpl-" : "cmpl-",
                       is_chat ? 9 : 5));
        const struct json *fr = jpath(j, "choices.0.finish_reason");
        if (i == i_last)
            CHECK_EQ_STR(json_str(fr, NULL), want_finish);
        else
            CHECK(json_type_of(fr) == JSON_TYPE_NULL);
        if (!is_chat) {
            CHECK(json_type_of(jpath(j, "usage")) == JSON_TYPE_NULL);
            CHECK(jstr(j, "choices.0.text") != NULL);
        } else {
            CHECK(jpath(j, "usage") == NULL);
            if (i == 0)
                CHECK_EQ_STR(jstr(j, "choices.0.delta.role"), "assistant");
            CHECK(jstr(j, "choices.0.delta.content") != NULL);
        }
        if (!include_usage)
            CHECK(strstr(ev[i], "\"choices\":[]") == NULL);
        json_free(j);
        n_tok++;
    }
    free(store);
    return is_chat ? n_tok - 1 : n_tok; /* chat: the first event carries only the role */
}

static void test_stream_completion(void)
{
    if (!a_up)
        return;
    struct resp r;
    CHECK(post(A.port, "/v1/completions",
               "{\"prompt\": \"Once upon a time\", \"max_tokens\": 12, \"stream\": true, "
               "\"stream_options\": {\"include_usage\": true}, \"ignore_eos\": true}",
               &r) == 0);
    int n = check_stream(&r, 1, 12, "length", 0);
    CHECK_EQ_INT(n, 12); /* one event per token */
    CHECK(r.n_chunks >= 14);
    CHECK(strstr(r.body.data, "\"usage\":{\"prompt_tokens\":16,\"total_tokens\":28,"
                              "\"completion_tokens\":12,"
                              "\"prompt_tokens_details\":{\"cached_tokens\":0}}"));
    resp_free(&r);
    /* without include_usage: no usage chunk */
    CHECK(post(A.port, "/v1/completions",
               "{\"prompt\": \"Once upon a time\", \"max_tokens\": 5, \"stream\": true, "
               "\"ignore_eos\": true}",
               &r) == 0);
    CHECK_EQ_INT(check_stream(&r, 0, 5, "length", 0), 5);
    CHECK(strstr(r.body.data, "\"choices\":[]") == NULL);
    resp_free(&r);
    /* stream_options with include_usage false */
    CHECK(post(A.port, "/v1/completions",
               "{\"prompt\": \"x\", \"max_tokens\": 3, \"stream\": true, \"ignore_eos\": true, "
               "\"stream_options\": {\"include_usage\": false}}",
               &r) == 0);
    CHECK_EQ_INT(check_stream(&r, 0, 3, "length", 0), 3);
    resp_free(&r);
}

static void test_chat(void)
{
    if (!a_up)
        return;
    struct resp r;
    const char *msgs = "\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
                       "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": "
                       "\"Hi\"}]}]";
    char body[1024];
    snprintf(body, sizeof body, "{%s, \"max_tokens\": 6, \"ignore_eos\": true}", msgs);
    CHECK(post(A.port, "/v1/chat/completions", body, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    struct json *j = jparse(&r.body);
    CHECK(jstr(j, "id") && !strncmp(jstr(j, "id"), "chatcmpl-", 9));
    CHECK_EQ_STR(jstr(j, "object"), "chat.completion");
    CHECK_EQ_STR(jstr(j, "choices.0.message.role"), "assistant");
    CHECK(jstr(j, "choices.0.message.content") != NULL);
    CHECK_EQ_STR(jstr(j, "choices.0.finish_reason"), "length");
    size_t want_prompt = strlen("<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n");
    CHECK_EQ_INT(jint(j, "usage.prompt_tokens"), (long long)want_prompt);
    CHECK_EQ_INT(jint(j, "usage.completion_tokens"), 6);
    json_free(j);
    resp_free(&r);

    snprintf(body, sizeof body,
             "{%s, \"max_completion_tokens\": 7, \"ignore_eos\": true, \"stream\": true, "
             "\"stream_options\": {\"include_usage\": true}}",
             msgs);
    CHECK(post(A.port, "/v1/chat/completions", body, &r) == 0);
    CHECK_EQ_INT(check_stream(&r, 1, 7, "length", 1), 7);
    resp_free(&r);

    /* chat default max_tokens: the rest of the context (bounded here by EOS or 512) */
    CHECK(post(A.port, "/v1/chat/completions",
               "{\"messages\": [{\"role\": \"user\", \"content\": \"hello\"}], \"min_tokens\": 2, "
               "\"max_tokens\": 400, \"temperature\": 0}",
               &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
}

/* Picks a stop string inside the greedy output and checks the cut, in both modes. */
static void test_stop_strings(void)
{
    if (!a_up)
        return;
    const char *base = "{\"prompt\": \"Stop strings are cut\", \"max_tokens\": 40, "
                       "\"temperature\": 0, \"ignore_eos\": true";
    char body[1024];
    snprintf(body, sizeof body, "%s}", base);
    int st;
    long long ct_full;
    char *full = complete(A.port, body, &st, NULL, &ct_full, NULL, 0);
    CHECK(full != NULL);
    if (!full)
        return;
    size_t n = strlen(full);
    /* a 2-character stop string at a character boundary, well inside the text */
    size_t from = n / 3;
    while (from < n && ((unsigned char)full[from] & 0xC0) == 0x80)
        from++;
    size_t to = from;
    for (int k = 0; k < 2 && to < n; k++) {
        to++;
        while (to < n && ((unsigned char)full[to] & 0xC0) == 0x80)
            to++;
    }
    if (n < 6 || to >= n || to - from < 2 || memchr(full + from, '"', to - from) ||
        memchr(full + from, '\\', to - from)) {
        fprintf(stderr, "  (greedy text unsuitable for the stop test: %zu bytes)\n", n);
        free(full);
        return;
    }
    char stop[64];
    memcpy(stop, full + from, to - from);
    stop[to - from] = 0;
    /* escape control characters for JSON */
    struct buf esc;
    buf_init(&esc, 64, 4096);
    buf_json_str(&esc, stop);
    size_t cut = (size_t)(strstr(full, stop) - full);

    snprintf(body, sizeof body, "%s, \"stop\": [\"zzzz-never\", %s]}", base, esc.data);
    struct resp r;
    CHECK(post(A.port, "/v1/completions", body, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    struct json *j = jparse(&r.body);
    const char *text = jstr(j, "choices.0.text");
    CHECK(text && strlen(text) == cut && !strncmp(text, full, cut));
    CHECK_EQ_STR(jstr(j, "choices.0.finish_reason"), "stop");
    CHECK_EQ_STR(jstr(j, "choices.0.stop_reason"), stop);
    CHECK(jint(j, "usage.completion_tokens") < ct_full);
    json_free(j);
    resp_free(&r);

    /* streamed: the concatenated text is the same cut; the last event says stop */
    snprintf(body, sizeof body, "%s, \"stop\": %s, \"stream\": true}", base, esc.data);
    CHECK(post(A.port, "/v1/completions", body, &r) == 0);
    char *ev[128], *store;
    int ne = sse_split(&r.body, ev, 128, &store);
    CHECK(ne >= 2);
    struct buf joined;
    buf_init(&joined, 256, 1 << 20);
    for (int i = 0; i + 1 < ne; i++) {
        struct buf tmp = {ev[i], strlen(ev[i]), 0, 0};
        struct json *e = jparse(&tmp);
        if (jstr(e, "choices.0.text"))
            buf_puts(&joined, jstr(e, "choices.0.text"));
        if (i == ne - 2) {
            CHECK_EQ_STR(jstr(e, "choices.0.finish_reason"), "stop");
            CHECK_EQ_STR(jstr(e, "choices.0.stop_reason"), stop);
        }
        json_free(e);
    }
    CHECK(joined.len == cut && !strncmp(joined.data, full, cut));
    buf_free(&joined);
    free(store);
    resp_free(&r);
    buf_free(&esc);
    free(full);
}

static void test_concurrent_streams(void)
{
    if (!a_up)
        return;
    enum { N = 16 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = http_open(A.port);
        CHECK(fds[i] >= 0);
        char body[256], req[1024];
        snprintf(body, sizeof body,
                 "{\"prompt\": \"stream number %d says\", \"max_tokens\": %d, \"stream\": true, "
                 "\"ignore_eos\": true, \"stream_options\": {\"include_usage\": true}}",
                 i, 10 + i);
        int n = snprintf(req, sizeof req,
                         "POST /v1/completions HTTP/1.1\r\nHost: x\r\n%sContent-Length: %zu\r\n"
                         "Content-Type: application/json\r\n\r\n%s",
                         g_auth, strlen(body), body);
        CHECK(send_all(fds[i], req, (size_t)n) == 0);
    }
    for (int i = 0; i < N; i++) {
        struct reader rd;
        rd_init(&rd, fds[i]);
        struct resp r;
        CHECK(http_read_resp(&rd, &r, 0) == 0);
        CHECK_EQ_INT(check_stream(&r, 1, 10 + i, "length", 0), 10 + i);
        resp_free(&r);
        buf_free(&rd.b);
        close(fds[i]);
    }
}

struct bad_case {
    const char *method;
    const char *path;
    const char *body;
    int status;
    const char *param; /* NULL: null */
    const char *msg;   /* substring */
};

static void check_error(const struct resp *r, const struct bad_case *c)
{
    CHECK_MSG(r->status == c->status, "%s %s %.80s: status %d, want %d", c->method, c->path,
              c->body ? c->body : "", r->status, c->status);
    struct json *j = jparse(&r->body);
    CHECK_MSG(j != NULL, "%s: body not JSON", c->path);
    const char *type = jstr(j, "error.type");
    CHECK(type != NULL);
    CHECK_EQ_INT(jint(j, "error.code"), c->status);
    const char *want_type = c->status == 400   ? "BadRequestError"
                            : c->status == 401 ? "AuthenticationError"
                            : c->status == 404 ? "NotFoundError"
                            : c->status == 405 ? "MethodNotAllowedError"
                            : c->status == 413 ? "RequestEntityTooLargeError"
                                               : "?";
    CHECK_EQ_STR(type, want_type);
    const struct json *param = jpath(j, "error.param");
    if (c->param)
        CHECK_EQ_STR(json_str(param, NULL), c->param);
    else
        CHECK(json_type_of(param) == JSON_TYPE_NULL);
    const char *msg = jstr(j, "error.message");
    CHECK_MSG(msg && strstr(msg, c->msg), "message '%s' lacks '%s'", msg ? msg : "(null)", c->msg);
    json_free(j);
}

static void test_bad_inputs(void)
{
    if (!a_up)
        return;
    char long_prompt[2048], exact_prompt[2048], big_body[80000];
    memset(long_prompt, 'a', 500);
    long_prompt[500] = 0;
    memset(exact_prompt, 'b', 512);
    exact_prompt[512] = 0;
    char body_long[4096], body_exact[4096];
    snprintf(body_long, sizeof body_long, "{\"prompt\": \"%s\", \"max_tokens\": 100}", long_prompt);
    snprintf(body_exact, sizeof body_exact, "{\"prompt\": \"%s\", \"max_tokens\": 1}",
             exact_prompt);
    int k = snprintf(big_body, sizeof big_body, "{\"prompt\": \"");
    memset(big_body + k, 'c', 70000);
    snprintf(big_body + k + 70000, sizeof big_body - (size_t)k - 70000, "\"}");

    const struct bad_case cases[] = {
        {"POST", "/v1/completions", "{", 400, NULL, "JSON"},
        {"POST", "/v1/completions", "[1, 2]", 400, NULL, "JSON object"},
        {"POST", "/v1/completions", "{}", 400, "prompt", "prompt"},
        {"POST", "/v1/completions", "{\"prompt\": 5}", 400, "prompt", "prompt"},
        {"POST", "/v1/completions", "{\"prompt\": \"\"}", 400, "prompt", "empty"},
        {"POST", "/v1/completions", "{\"prompt\": [\"a\", \"b\"]}", 400, "prompt", "batched"},
        {"POST", "/v1/completions", "{\"prompt\": [1, 2, 99999]}", 400, "prompt", "vocabulary"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 0}", 400, "max_tokens",
         "max_tokens must be at least 1, got 0."},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": \"5\"}", 400, "max_tokens",
         "integer"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 6.6e113}", 400,
         "max_tokens", "out of range"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"seed\": -1e30}", 400, "seed",
         "out of range"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"temperature\": \"hot\"}", 400,
         "temperature", "number"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"temperature\": -1}", 400, "temperature",
         "non-negative"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"top_p\": 0}", 400, "top_p", "top_p"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"seed\": \"s\"}", 400, "seed", "integer"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"ignore_eos\": \"yes\"}", 400,
         "ignore_eos", "boolean"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"min_tokens\": -1}", 400, "min_tokens",
         "min_tokens"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 4, \"min_tokens\": 5}",
         400, "min_tokens", "max_tokens=4"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"stop\": 5}", 400, "stop", "stop"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"stop\": [\"\"]}", 400, "stop",
         "empty string"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"stream\": 1}", 400, "stream", "boolean"},
        {"POST", "/v1/completions",
         "{\"prompt\": \"x\", \"stream\": false, \"stream_options\": {\"include_usage\": true}}",
         400, "stream_options", "Stream options can only be defined when `stream=True`."},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"n\": 2}", 400, "n", "n=2"},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"model\": \"nope\"}", 404, "model",
         "The model `nope` does not exist."},
        {"POST", "/v1/completions", "{\"prompt\": \"x\", \"model\": 7}", 400, "model", "string"},
        {"POST", "/v1/completions", body_long, 400, "max_tokens",
         "This model's maximum context length is 512 tokens. However, you requested 100 output "
         "tokens and your prompt contains 500 input tokens, for a total of 600 tokens. Please "
         "reduce the length of the input prompt or the number of requested output tokens."},
        {"POST", "/v1/completions", body_exact, 400, "input_tokens",
         "maximum context length is 512 tokens"},
        {"POST", "/v1/completions", big_body, 413, NULL, "too large"},
        {"POST", "/v1/chat/completions", "{\"messages\": \"hi\"}", 400, "messages", "messages"},
        {"POST", "/v1/chat/completions", "{}", 400, "messages", "required"},
        {"POST", "/v1/chat/completions", "{\"messages\": [{\"content\": \"x\"}]}", 400, "messages",
         "role"},
        {"POST", "/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": -3}", 400,
         "max_tokens", "at least 1"},
        {"POST", "/tokenize", "{\"prompt\": 3}", 400, "prompt", "prompt"},
        {"POST", "/detokenize", "{\"tokens\": \"abc\"}", 400, "tokens", "tokens"},
        {"GET", "/v1/nope", NULL, 404, NULL, "Not Found"},
        {"GET", "/nope", NULL, 404, NULL, "Not Found"},
        {"GET", "/v1/completions", NULL, 405, NULL, "Method Not Allowed"},
        {"POST", "/health", "{}", 405, NULL, "Method Not Allowed"},
        {"DELETE", "/v1/models", NULL, 405, NULL, "Method Not Allowed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct resp r;
        CHECK(http_do(A.port, cases[i].method, cases[i].path, NULL, cases[i].body, &r) == 0);
        check_error(&r, &cases[i]);
        if (cases[i].status == 405) {
            char v[64];
            CHECK(resp_header(&r, "allow", v, sizeof v) != NULL);
        }
        resp_free(&r);
        CHECK_EQ_INT(http_status_only(A.port, "/health"), 200); /* still serving */
    }
    /* authentication: missing and wrong keys on /v1; other routes need none */
    const struct bad_case no_key = {"GET", "/v1/models", NULL, 401, NULL, "Unauthorized"};
    struct resp r;
    CHECK(http_do(A.port, "GET", "/v1/models", "", NULL, &r) == 0);
    check_error(&r, &no_key);
    resp_free(&r);
    CHECK(http_do(A.port, "POST", "/v1/completions", "Authorization: Bearer wrong\r\n",
                  "{\"prompt\": \"x\"}", &r) == 0);
    check_error(&r, &no_key);
    resp_free(&r);
    CHECK(http_do(A.port, "GET", "/v1/models", "Authorization: sekret\r\n", NULL, &r) == 0);
    CHECK_EQ_INT(r.status, 401);
    resp_free(&r);
    CHECK(http_do(A.port, "POST", "/tokenize", "", "{\"prompt\": \"ab\"}", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    /* and a valid request still works */
    int st;
    char *t = complete(A.port, "{\"prompt\": \"ok\", \"max_tokens\": 2}", &st, NULL, NULL, NULL, 0);
    CHECK_EQ_INT(st, 200);
    free(t);
}

/* Raw HTTP: keep-alive, pipelining, chunked request body, 100-continue, malformed requests. */
static void test_http_protocol(void)
{
    if (!a_up)
        return;
    int fd = http_open(A.port);
    CHECK(fd >= 0);
    const char *body = "{\"prompt\": \"pipe\", \"max_tokens\": 2}";
    char reqs[4096];
    int n = snprintf(reqs, sizeof reqs,
                     "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                     "POST /v1/completions HTTP/1.1\r\nHost: x\r\n%sTransfer-Encoding: chunked\r\n"
                     "\r\n%zx\r\n%.*s\r\n%zx\r\n%s\r\n0\r\n\r\n"
                     "GET /version HTTP/1.1\r\nHost: x\r\n\r\n",
                     g_auth, (size_t)10, 10, body, strlen(body + 10), body + 10);
    CHECK(send_all(fd, reqs, (size_t)n) == 0);
    struct reader rd;
    rd_init(&rd, fd);
    struct resp r;
    CHECK(http_read_resp(&rd, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    CHECK(http_read_resp(&rd, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    struct json *j = jparse(&r.body);
    CHECK_EQ_INT(jint(j, "usage.prompt_tokens"), 4);
    json_free(j);
    resp_free(&r);
    CHECK(http_read_resp(&rd, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body.data, "version") != NULL);
    resp_free(&r);
    /* Expect: 100-continue on the same kept-alive connection */
    n = snprintf(reqs, sizeof reqs, "%s",
                 "POST /tokenize HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                 "Content-Length: 17\r\n\r\n");
    CHECK(send_all(fd, reqs, (size_t)n) == 0);
    char line[256];
    CHECK(rd_line(&rd, line, sizeof line) == 0 && !strcmp(line, "HTTP/1.1 100 Continue"));
    CHECK(rd_line(&rd, line, sizeof line) == 0 && line[0] == 0);
    CHECK(send_all(fd, "{\"prompt\": \"abc\"}", 17) == 0);
    CHECK(http_read_resp(&rd, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(strstr(r.body.data, "\"count\":3") != NULL);
    resp_free(&r);
    buf_free(&rd.b);
    close(fd);

    /* malformed request line: 400 and the connection closes */
    fd = http_open(A.port);
    CHECK(send_all(fd, "BLAH\r\n\r\n", 8) == 0);
    rd_init(&rd, fd);
    CHECK(http_read_resp(&rd, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 400);
    resp_free(&r);
    buf_free(&rd.b);
    close(fd);
    /* HTTP/2 preface or unknown version: 505 */
    fd = http_open(A.port);
    CHECK(send_all(fd, "GET /health HTTP/2.0\r\n\r\n", 24) == 0);
    rd_init(&rd, fd);
    CHECK(http_read_resp(&rd, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 505);
    resp_free(&r);
    buf_free(&rd.b);
    close(fd);
    /* huge header: 431 */
    fd = http_open(A.port);
    static char huge[20000];
    memset(huge, 'h', sizeof huge);
    memcpy(huge, "GET /health HTTP/1.1\r\nX-Big: ", 29);
    CHECK(send_all(fd, huge, sizeof huge) == 0);
    rd_init(&rd, fd);
    CHECK(http_read_resp(&rd, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 431);
    resp_free(&r);
    buf_free(&rd.b);
    close(fd);
    CHECK_EQ_INT(http_status_only(A.port, "/health"), 200);
}

/* The request parser is incremental: the same pipelined requests split at every byte position
 * (two writes with a pause between) give the same answers. */
static void test_http_split_everywhere(void)
{
    if (!a_up)
        return;
    char req[1024];
    int n =
        snprintf(req, sizeof req,
                 "POST /tokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "7\r\n{\"promp\r\n9;ext=1\r\nt\": \"abcd\r\n2\r\n\"}\r\n0\r\nX-Trailer: 1\r\n\r\n"
                 "POST /v1/completions HTTP/1.1\r\nHost: x\r\n%sContent-Length: 37\r\n\r\n"
                 "{\"prompt\": \"abcdef\", \"max_tokens\": 1}",
                 g_auth);
    int n_ok = 0;
    for (int k = 1; k < n; k++) {
        int fd = http_open(A.port);
        if (fd < 0)
            break;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        CHECK(send_all(fd, req, (size_t)k) == 0);
        sleep_ms(1);
        CHECK(send_all(fd, req + k, (size_t)(n - k)) == 0);
        struct reader rd;
        rd_init(&rd, fd);
        struct resp r1, r2;
        memset(&r1, 0, sizeof r1);
        memset(&r2, 0, sizeof r2);
        int ok = http_read_resp(&rd, &r1, 0) == 0 && r1.status == 200 &&
                 strstr(r1.body.data, "\"count\":4") != NULL;
        ok = ok && http_read_resp(&rd, &r2, 0) == 0 && r2.status == 200 &&
             strstr(r2.body.data, "\"prompt_tokens\":6") != NULL;
        CHECK_MSG(ok, "split at byte %d: %d %.200s / %d %.200s", k, r1.status, r1.body.data,
                  r2.status, r2.body.data);
        n_ok += ok;
        resp_free(&r1);
        resp_free(&r2);
        buf_free(&rd.b);
        close(fd);
    }
    CHECK_EQ_INT(n_ok, n - 1);
}

static void test_metrics_move(void)
{
    if (!a_up)
        return;
    char *m0 = get_settled_metrics(A.port);
    const char *must[] = {
        "# HELP vllm:num_requests_running ",
        "# TYPE vllm:num_requests_running gauge",
        "# TYPE vllm:num_requests_waiting gauge",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        "# TYPE vllm:prompt_tokens_total counter",
        "# TYPE vllm:generation_tokens_total counter",
        "# TYPE vllm:num_preemptions_total counter",
        "# TYPE vllm:request_success_total counter",
        "# TYPE vllm:prefix_cache_queries_total counter",
        "# TYPE vllm:prefix_cache_hits_total counter",
        "# TYPE vllm:time_to_first_token_seconds histogram",
        "# TYPE vllm:inter_token_latency_seconds histogram",
        "# TYPE vllm:e2e_request_latency_seconds histogram",
        "# TYPE vllm:request_queue_time_seconds histogram",
        "# TYPE vllm:cache_config_info gauge",
        "vllm:num_requests_running" LBL " ",
        "vllm:time_to_first_token_seconds_bucket{model_name=\"tiny\",engine=\"0\",le=\"2560.0\"}",
        "vllm:e2e_request_latency_seconds_bucket{model_name=\"tiny\",engine=\"0\",le=\"7680.0\"}",
        "vllm:inter_token_latency_seconds_bucket{model_name=\"tiny\",engine=\"0\",le=\"80.0\"}",
        "block_size=\"16\"",
        "enable_prefix_caching=\"True\"",
        "num_gpu_blocks=\"256\"", /* 16 MiB / (16 tokens x 4096 B) */
        "kv_cache_size_tokens=\"4096\"",
        "kv_cache_max_concurrency=\"8.0\"",
    };
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        CHECK_MSG(strstr(m0, must[i]) != NULL, "/metrics lacks %s", must[i]);
    /* every sample line carries the two labels */
    for (const char *p = m0; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len && p[0] != '#')
            CHECK_MSG(memmem(p, len, "model_name=\"tiny\"", 17) &&
                          memmem(p, len, "engine=\"0\"", 10),
                      "%.*s", (int)len, p);
        p += len + (e ? 1 : 0);
    }
    int st;
    char *t = complete(A.port,
                       "{\"prompt\": \"metrics move by exactly this much\", \"max_tokens\": 9, "
                       "\"ignore_eos\": true}",
                       &st, NULL, NULL, NULL, 0);
    free(t);
    char *m1 = get_settled_metrics(A.port);
    CHECK_NEAR(metric(m1, "vllm:prompt_tokens_total" LBL) -
                   metric(m0, "vllm:prompt_tokens_total" LBL),
               strlen("metrics move by exactly this much"), 0);
    CHECK_NEAR(metric(m1, "vllm:generation_tokens_total" LBL) -
                   metric(m0, "vllm:generation_tokens_total" LBL),
               9, 0);
    const char *h[] = {"vllm:time_to_first_token_seconds_count" LBL,
                       "vllm:e2e_request_latency_seconds_count" LBL,
                       "vllm:request_queue_time_seconds_count" LBL};
    for (size_t i = 0; i < 3; i++)
        CHECK_NEAR(metric(m1, h[i]) - metric(m0, h[i]), 1, 0);
    CHECK_NEAR(metric(m1, "vllm:inter_token_latency_seconds_count" LBL) -
                   metric(m0, "vllm:inter_token_latency_seconds_count" LBL),
               8, 0);
    const char *succ = "vllm:request_success_total{model_name=\"tiny\",engine=\"0\","
                       "finished_reason=\"length\"}";
    CHECK_NEAR(metric(m1, succ) - metric(m0, succ), 1, 0);
    CHECK(metric(m1, "vllm:e2e_request_latency_seconds_sum" LBL) >
          metric(m0, "vllm:e2e_request_latency_seconds_sum" LBL));
    double running = metric(m1, "vllm:num_requests_running" LBL);
    double usage = metric(m1, "vllm:kv_cache_usage_perc" LBL);
    CHECK_NEAR(running, 0, 0);
    CHECK_NEAR(usage, 0, 0);
    /* buckets are cumulative and end at _count */
    double prev = -1;
    const char *pfx = "vllm:time_to_first_token_seconds_bucket{";
    for (const char *p = strstr(m1, pfx); p; p = strstr(p + 1, pfx)) {
        double v = strtod(strchr(p, ' ') + 1, NULL);
        CHECK(v >= prev);
        prev = v;
    }
    CHECK_NEAR(prev, metric(m1, "vllm:time_to_first_token_seconds_count" LBL), 0);
    free(m0);
    free(m1);
}

static void make_prefix_body(char *out, size_t cap, const char *tail, int stream)
{
    char prefix[300];
    for (int i = 0; i < 256; i++)
        prefix[i] = (char)('a' + (i * 7) % 26);
    prefix[256] = 0;
    snprintf(
        out, cap,
        "{\"prompt\": \"%s%s\", \"max_tokens\": 6, \"temperature\": 0, \"ignore_eos\": true%s}",
        prefix, tail,
        stream ? ", \"stream\": true, \"stream_options\": {\"include_usage\": true}" : "");
}

/* Chat reports cached tokens the same way: 0 on a miss, > 0 on a repeated long prompt, in the
 * response and in the final usage chunk of a stream. */
static void test_prefix_cache_chat(void)
{
    char body[1024], content[300];
    for (int i = 0; i < 256; i++)
        content[i] = (char)('a' + (i * 5) % 26);
    content[256] = 0;
    struct resp r;
    CHECK(http_do(A.port, "POST", "/reset_prefix_cache", "", "", &r) == 0);
    resp_free(&r);
    for (int round = 0; round < 2; round++) {
        snprintf(body, sizeof body,
                 "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}], "
                 "\"max_tokens\": 2, \"temperature\": 0, \"ignore_eos\": true}",
                 content);
        CHECK(post(A.port, "/v1/chat/completions", body, &r) == 0);
        CHECK_EQ_INT(r.status, 200);
        struct json *j = jparse(&r.body);
        CHECK(jpath(j, "usage.prompt_tokens_details.cached_tokens") != NULL);
        long long cached = jint(j, "usage.prompt_tokens_details.cached_tokens");
        if (round == 0)
            CHECK_EQ_INT(cached, 0);
        else
            CHECK(cached >= 16 && cached < jint(j, "usage.prompt_tokens"));
        json_free(j);
        resp_free(&r);
    }
    snprintf(body, sizeof body,
             "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}], "
             "\"max_tokens\": 2, \"temperature\": 0, \"ignore_eos\": true, \"stream\": true, "
             "\"stream_options\": {\"include_usage\": true}}",
             content);
    CHECK(post(A.port, "/v1/chat/completions", body, &r) == 0);
    const char *p = strstr(r.body.data ? r.body.data : "", "\"cached_tokens\":");
    CHECK(p != NULL);
    CHECK(p && atoi(p + strlen("\"cached_tokens\":")) >= 16);
    resp_free(&r);
}

static void test_prefix_cache(void)
{
    if (!a_up)
        return;
    const char *hits = "vllm:prefix_cache_hits_total" LBL;
    const char *queries = "vllm:prefix_cache_queries_total" LBL;
    char body[1024];
    /* make the first request a miss even if earlier tests left blocks around */
    struct resp r;
    CHECK(http_do(A.port, "POST", "/reset_prefix_cache", "", "", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    char *m0 = get_metrics(A.port);
    make_prefix_body(body, sizeof body, "first", 0);
    CHECK(post(A.port, "/v1/completions", body, &r) == 0);
    struct json *j = jparse(&r.body);
    CHECK(jpath(j, "usage.prompt_tokens_details.cached_tokens") != NULL);
    CHECK_EQ_INT(jint(j, "usage.prompt_tokens_details.cached_tokens"), 0);
    json_free(j);
    resp_free(&r);
    char *m1 = get_metrics(A.port);
    CHECK_NEAR(metric(m1, hits) - metric(m0, hits), 0, 0);
    CHECK_NEAR(metric(m1, queries) - metric(m0, queries), 261, 0);

    make_prefix_body(body, sizeof body, "second", 0);
    CHECK(post(A.port, "/v1/completions", body, &r) == 0);
    j = jparse(&r.body);
    long long cached = jint(j, "usage.prompt_tokens_details.cached_tokens");
    char *text_cached = xstrdup(jstr(j, "choices.0.text") ? jstr(j, "choices.0.text") : "");
    json_free(j);
    resp_free(&r);
    char *m2 = get_metrics(A.port);
    double d_hits = metric(m2, hits) - metric(m1, hits);
    CHECK_NEAR(d_hits, 256, 0); /* 16 full blocks of the shared prefix */
    CHECK_EQ_INT(cached, 256);

    /* streamed: usage chunk carries cached_tokens too */
    make_prefix_body(body, sizeof body, "second", 1);
    CHECK(post(A.port, "/v1/completions", body, &r) == 0);
    CHECK(strstr(r.body.data, "\"prompt_tokens_details\":{\"cached_tokens\":256}") != NULL);
    resp_free(&r);

    /* after a reset the same prompt misses, and greedy output does not change */
    CHECK(http_do(A.port, "POST", "/reset_prefix_cache", "", "", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    char *m3 = get_metrics(A.port);
    make_prefix_body(body, sizeof body, "second", 0);
    CHECK(post(A.port, "/v1/completions", body, &r) == 0);
    j = jparse(&r.body);
    CHECK(jpath(j, "usage.prompt_tokens_details.cached_tokens") != NULL);
    CHECK_EQ_INT(jint(j, "usage.prompt_tokens_details.cached_tokens"), 0);
    CHECK_EQ_STR(jstr(j, "choices.0.text"), text_cached);
    json_free(j);
    resp_free(&r);
    char *m4 = get_metrics(A.port);
    CHECK_NEAR(metric(m4, hits) - metric(m3, hits), 0, 0);
    free(text_cached);
    test_prefix_cache_chat();
    free(m0);
    free(m1);
    free(m2);
    free(m3);
    free(m4);
}

static void test_no_prefix_caching_server(void)
{
    struct srv b;
    static const char *const extra[] = {"--no-enable-prefix-caching", "--enforce-eager",
                                        "--served-model-name", "other", NULL};
    const char *saved = g_auth;
    g_auth = "";
    CHECK(srv_start(&b, "b", extra) == 0);
    if (b.pid <= 0) {
        g_auth = saved;
        return;
    }
    struct resp r;
    CHECK(http_do(b.port, "GET", "/v1/models", NULL, NULL, &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    struct json *j = jparse(&r.body);
    CHECK_EQ_STR(jstr(j, "data.0.id"), "other");
    json_free(j);
    resp_free(&r);
    CHECK(post(b.port, "/v1/completions", "{\"prompt\": \"x\", \"model\": \"tiny\"}", &r) == 0);
    CHECK_EQ_INT(r.status, 404);
    resp_free(&r);
    char body[1024];
    for (int i = 0; i < 3; i++) {
        make_prefix_body(body, sizeof body, i ? "again" : "once", 0);
        CHECK(post(b.port, "/v1/completions", body, &r) == 0);
        CHECK_EQ_INT(r.status, 200);
        resp_free(&r);
    }
    char *m = get_metrics(b.port);
    const char *hits = "vllm:prefix_cache_hits_total{model_name=\"other\",engine=\"0\"}";
    CHECK_NEAR(metric(m, hits), 0, 0);
    CHECK(strstr(m, "enable_prefix_caching=\"False\"") != NULL);
    free(m);
    CHECK_EQ_INT(srv_stop(&b, 60), 0);
    g_auth = saved;
}

static void test_stop_a(void)
{
    if (!a_up)
        return;
    CHECK_EQ_INT(srv_stop(&A, 60), 0);
    char *log = slurp(A.log);
    CHECK(strstr(log, "Shutting down") != NULL);
    CHECK(strstr(log, "ERROR") == NULL);
    CHECK(strstr(log, "AddressSanitizer") == NULL);
    CHECK(strstr(log, "runtime error") == NULL);
    CHECK(strstr(log, "ThreadSanitizer") == NULL);
    free(log);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    TEST_RUN(test_fmt_double);
    TEST_RUN(test_hist);
    TEST_RUN(test_metrics_page);

    if (harness_setup("server") != 0) {
        test_n_fail++;
        return TEST_DONE();
    }
    TEST_RUN(test_start);
    TEST_RUN(test_health_version_models);
    TEST_RUN(test_tokenize_detokenize);
    TEST_RUN(test_completion_shape);
    TEST_RUN(test_greedy_identical);
    TEST_RUN(test_stream_completion);
    TEST_RUN(test_chat);
    TEST_RUN(test_stop_strings);
    TEST_RUN(test_concurrent_streams);
    TEST_RUN(test_bad_inputs);
    TEST_RUN(test_http_protocol);
    TEST_RUN(test_http_split_everywhere);
    TEST_RUN(test_metrics_move);
    TEST_RUN(test_prefix_cache);
    TEST_RUN(test_stop_a);
    TEST_RUN(test_no_prefix_caching_server);
    if (A.pid > 0)
        srv_stop(&A, 10);
    if (!test_n_fail) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cleanup of %s failed\n", g_dir);
    } else {
        fprintf(stderr, "logs kept in %s\n", g_dir);
    }
    return TEST_DONE();
}
