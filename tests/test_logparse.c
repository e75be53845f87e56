/* test_logparse: start-up log parsing on recorded-shape logs in tests/data (vLLM 0.10-era and newer,
 * failures, llama.cpp old and new, SGLang, the embedded runtime), whole-file and fed at every chunk
 * size so a live log followed in pieces gives the same result. */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "server/logparse.h"
#include "test.h"
#include "util/buf.h"
#include "util/json.h"

#define DATA "tests/data/"

static struct startup_info parse(const char *name)
{
    struct startup_info si;
    char err[256], path[256];
    snprintf(path, sizeof path, DATA "%s", name);
    int rc = logparse_file(path, &si, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    return si;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int same_d(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static int same_info(const struct startup_info *a, const struct startup_info *b)
{
    for (int i = 0; i < STARTUP_PHASE__COUNT; i++)
        if (!same_d(a->phase_s[i], b->phase_s[i]))
            return 0;
    return a->server == b->server && same_d(a->dynamo_s, b->dynamo_s) &&
           same_d(a->compilation_s, b->compilation_s) && same_d(a->profile_s, b->profile_s) &&
           a->kv_gpu_blocks == b->kv_gpu_blocks && a->kv_cache_tokens == b->kv_cache_tokens &&
           same_d(a->max_concurrency, b->max_concurrency) &&
           a->max_concurrency_len == b->max_concurrency_len &&
           same_d(a->available_kv_gib, b->available_kv_gib) &&
           same_d(a->kv_cache_gib, b->kv_cache_gib) && same_d(a->weights_gib, b->weights_gib) &&
           same_d(a->graph_gib, b->graph_gib) && same_d(a->upload_s, b->upload_s) &&
           same_d(a->upload_gbps, b->upload_gbps) && same_d(a->kv_cache_mib, b->kv_cache_mib) &&
           same_d(a->kv_buffer_mib, b->kv_buffer_mib) && a->context_len == b->context_len &&
           a->n_warmup_shapes == b->n_warmup_shapes && a->warmup_skipped == b->warmup_skipped &&
           a->saw_load_start == b->saw_load_start && a->saw_model_loaded == b->saw_model_loaded &&
           a->saw_listening == b->saw_listening &&
           a->saw_startup_complete == b->saw_startup_complete &&
           strcmp(a->api_url, b->api_url) == 0 && strcmp(a->error_message, b->error_message) == 0 &&
           a->estimated_max_model_len == b->estimated_max_model_len && a->n_lines == b->n_lines &&
           same_d(a->weights_mib, b->weights_mib) && a->n_ctx_tokens == b->n_ctx_tokens &&
           a->n_ctx_per_seq_tokens == b->n_ctx_per_seq_tokens && a->n_timeline == b->n_timeline &&
           a->n_timeline_dropped == b->n_timeline_dropped;
}

/* Every chunk size from 1 to 97, then a few larger ones: same result as the whole file. */
static void check_chunked(const char *name)
{
    struct startup_info whole = parse(name);
    char path[256];
    size_t len;
    snprintf(path, sizeof path, DATA "%s", name);
    char *text = file_read_all(path, 1 << 20, &len);
    CHECK(text != NULL);
    if (!text)
        return;
    static const size_t big[] = {128, 333, 1000, 4096};
    for (size_t k = 1; k < 97 + sizeof big / sizeof big[0]; k++) {
        size_t chunk = k < 97 ? k : big[k - 97];
        struct logparse lp;
        logparse_init(&lp);
        for (size_t off = 0; off < len; off += chunk)
            logparse_feed(&lp, text + off, off + chunk <= len ? chunk : len - off);
        logparse_finish(&lp);
        CHECK_MSG(same_info(&lp.info, &whole), "%s chunk %zu differs", name, chunk);
        if (!same_info(&lp.info, &whole))
            break;
    }
    free(text);
}

static void test_vllm_010(void)
{
    struct startup_info si = parse("vllm_0.10.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_VLLM);
    CHECK(si.saw_load_start);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 0.41, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_MODEL_LOAD], 1.632581, 1e-9);
    CHECK_NEAR(si.weights_gib, 0.9277, 1e-9);
    CHECK_NEAR(si.dynamo_s, 4.37, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_TORCH_COMPILE], 20.21, 1e-9);
    CHECK_NEAR(si.available_kv_gib, 36.78, 1e-9);
    CHECK_EQ_INT(si.kv_cache_tokens, 3213648);
    CHECK_EQ_INT(si.max_concurrency_len, 4096);
    CHECK_NEAR(si.max_concurrency, 784.58, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WARMUP_GRAPH_CAPTURE], 3, 1e-9);
    CHECK_NEAR(si.graph_gib, 0.48, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_ENGINE_INIT], 26.93, 1e-9);
    CHECK(isnan(si.compilation_s));
    CHECK(isnan(si.phase_s[STARTUP_PHASE_KV_CACHE_ALLOC]));
    CHECK_EQ_STR(si.api_url, "http://127.0.0.1:8000");
    CHECK(si.saw_listening);
    CHECK(si.saw_startup_complete);
    CHECK_EQ_STR(si.error_message, "");
    CHECK_EQ_INT(si.estimated_max_model_len, -1);
    check_chunked("vllm_0.10.log");
}

static void test_vllm_new_one_line_kv(void)
{
    struct startup_info si = parse("vllm_new.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_VLLM);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 6.38, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_MODEL_LOAD], 9.104352, 1e-9);
    CHECK_NEAR(si.weights_gib, 15.27, 1e-9);
    CHECK_NEAR(si.dynamo_s, 7.91, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_TORCH_COMPILE], 15.08, 1e-9);
    CHECK_NEAR(si.available_kv_gib, 61.44, 1e-9);
    CHECK_EQ_INT(si.kv_cache_tokens, 447088);
    CHECK_EQ_INT(si.max_concurrency_len, 8192);
    CHECK_NEAR(si.max_concurrency, 54.58, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WARMUP_GRAPH_CAPTURE], 7, 1e-9);
    CHECK_NEAR(si.graph_gib, 0.61, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_ENGINE_INIT], 26.44, 1e-9);
    CHECK_NEAR(si.compilation_s, 15.08, 1e-9);
    CHECK_EQ_STR(si.api_url, "http://0.0.0.0:8000");
    CHECK(si.saw_startup_complete);
    CHECK_EQ_STR(si.error_message, "");
    check_chunked("vllm_new.log");
}

static void test_vllm_failures(void)
{
    struct startup_info si = parse("vllm_fail_maxlen.log");
    CHECK_EQ_INT(si.estimated_max_model_len, 11120);
    CHECK(starts_with(si.error_message,
                      "To serve at least one request with the models's max seq len (131072)"));
    CHECK_NEAR(si.available_kv_gib, 1.36, 1e-9);
    CHECK(!si.saw_startup_complete);
    CHECK(isnan(si.phase_s[STARTUP_PHASE_ENGINE_INIT]));
    check_chunked("vllm_fail_maxlen.log");

    si = parse("vllm_fail_nomem.log");
    CHECK_NEAR(si.available_kv_gib, -1.95, 1e-9);
    CHECK(starts_with(si.error_message, "No available memory for the cache blocks."));
    CHECK_NEAR(si.weights_gib, 14.2474, 1e-9);
    CHECK_EQ_INT(si.estimated_max_model_len, -1);
    check_chunked("vllm_fail_nomem.log");

    si = parse("vllm_fail_freemem.log");
    CHECK(starts_with(si.error_message, "Free memory on device cuda:0 (30.12/79.19 GiB)"));
    CHECK(strstr(si.error_message, "other processes.") != NULL);
}

static void test_llamacpp(void)
{
    struct startup_info si = parse("llamacpp.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_LLAMACPP);
    CHECK(si.saw_load_start);
    CHECK(si.saw_model_loaded);
    CHECK(si.saw_listening);
    CHECK_EQ_STR(si.api_url, "http://127.0.0.1:8080");
    CHECK_EQ_INT(si.kv_cache_tokens, 8192);
    CHECK_NEAR(si.kv_cache_mib, 96.0, 1e-9);
    CHECK_NEAR(si.kv_buffer_mib, 96.0, 1e-9);
    CHECK_EQ_STR(si.error_message, "");
    for (int i = 0; i < STARTUP_PHASE__COUNT; i++)
        CHECK(isnan(si.phase_s[i])); /* llama.cpp prints no durations: none invented */
    check_chunked("llamacpp.log");

    si = parse("llamacpp_old.log");
    CHECK_EQ_INT(si.kv_cache_tokens, 4096);
    CHECK_NEAR(si.kv_cache_mib, 128.0, 1e-9);
    CHECK_NEAR(si.kv_buffer_mib, 128.0, 1e-9); /* CPU + CUDA0 buffers summed */
    CHECK_EQ_STR(si.api_url, "http://127.0.0.1:8081");

    si = parse("llamacpp_fail.log");
    CHECK(si.saw_load_start);
    CHECK(!si.saw_model_loaded);
    CHECK(starts_with(si.error_message, "failed to load model"));
    check_chunked("llamacpp_fail.log");
}

/* Real llama.cpp logs pasted in public issues (source in each file's first line). */
static void test_llamacpp_real(void)
{
    struct startup_info si = parse("llamacpp.log");
    CHECK_NEAR(si.weights_mib, 506.47, 1e-9);
    CHECK_EQ_INT(si.n_ctx_tokens, 8192);
    CHECK_EQ_INT(si.n_ctx_per_seq_tokens, 8192); /* "n_ctx_seq = 8192", not the "(8192) <" line */

    si = parse("llamacpp_issue15946.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_LLAMACPP);
    CHECK_NEAR(si.weights_mib, 14526.27, 1e-9);
    CHECK_EQ_INT(si.n_ctx_tokens, 128000);
    CHECK_EQ_INT(si.n_ctx_per_seq_tokens, 128000);
    CHECK_NEAR(si.kv_cache_mib, 7000.0, 1e-9);
    CHECK_NEAR(si.kv_buffer_mib, 7000.0, 1e-9);
    CHECK_EQ_INT(si.kv_cache_tokens, 128000);
    CHECK(!si.saw_model_loaded);
    check_chunked("llamacpp_issue15946.log");

    si = parse("llamacpp_pr5104.log"); /* older wording: KV self size, JSON "model loaded" */
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_LLAMACPP);
    CHECK_EQ_INT(si.n_ctx_tokens, 512);
    CHECK_NEAR(si.kv_cache_mib, 160.0, 1e-9);
    CHECK_NEAR(si.kv_buffer_mib, 160.0, 1e-9);
    CHECK(isnan(si.weights_mib));
    CHECK(si.saw_model_loaded);
    for (int i = 0; i < STARTUP_PHASE__COUNT; i++)
        CHECK_EQ_INT(si.phase_source[i], STARTUP_PHASE_SOURCE_NONE); /* no stamps: none */
    check_chunked("llamacpp_pr5104.log");
}

/* Feeds a file one line per chunk, line i arriving (i + 1) * 100 ms after launch. */
static void feed_stamped(struct logparse *lp, const char *name)
{
    char path[256];
    snprintf(path, sizeof path, DATA "%s", name);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f)
        return;
    const uint64_t launch_ns = 5000000000ull;
    logparse_init(lp);
    lp->t_launch_ns = launch_ns;
    char line[4096];
    for (uint64_t i = 0; fgets(line, sizeof line, f); i++)
        logparse_feed_at(lp, line, strlen(line), launch_ns + (i + 1) * 100000000ull);
    logparse_finish(lp);
    fclose(f);
}

static void test_llamacpp_arrival(void)
{
    struct logparse *lp = xmalloc(sizeof *lp);
    feed_stamped(lp, "llamacpp.log");
    const struct startup_info *si = &lp->info;
    /* lines 5 (loading model), 14 (context), 23 (warming up), 27 (model loaded), 29 (listening) */
    CHECK_NEAR(si->t_load_start_s, 0.5, 1e-9);
    CHECK_NEAR(si->t_context_start_s, 1.4, 1e-9);
    CHECK_NEAR(si->t_warmup_start_s, 2.3, 1e-9);
    CHECK_NEAR(si->t_model_loaded_s, 2.7, 1e-9);
    CHECK_NEAR(si->t_listening_s, 2.9, 1e-9);
    CHECK_NEAR(si->phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 0.9, 1e-9);
    CHECK_NEAR(si->phase_s[STARTUP_PHASE_KV_CACHE_ALLOC], 0.9, 1e-9);
    CHECK_NEAR(si->phase_s[STARTUP_PHASE_WARMUP_GRAPH_CAPTURE], 0.4, 1e-9);
    CHECK_NEAR(si->phase_s[STARTUP_PHASE_ENGINE_INIT], 1.3, 1e-9);
    CHECK_EQ_INT(si->phase_source[STARTUP_PHASE_WEIGHTS_LOAD], STARTUP_PHASE_SOURCE_ARRIVAL);
    CHECK_EQ_INT(si->phase_source[STARTUP_PHASE_ENGINE_INIT], STARTUP_PHASE_SOURCE_ARRIVAL);
    CHECK_EQ_INT(si->phase_source[STARTUP_PHASE_MODEL_LOAD], STARTUP_PHASE_SOURCE_NONE);
    CHECK(isnan(si->phase_s[STARTUP_PHASE_TORCH_COMPILE]));
    CHECK_EQ_STR(startup_phase_source_str(si->phase_source[STARTUP_PHASE_KV_CACHE_ALLOC]),
                 "arrival");
    /* the timeline: every line is distinct here, the first at 0.1 s, the listening one marked */
    CHECK_EQ_INT(si->n_timeline, 30);
    CHECK_NEAR(si->timeline[0].t_first_s, 0.1, 1e-9);
    CHECK(starts_with(si->timeline[0].text, "build: 6850"));
    CHECK(!si->timeline[0].recognised);
    CHECK(starts_with(si->timeline[28].text, "main: server is listening on"));
    CHECK(si->timeline[28].recognised);
    CHECK_NEAR(si->timeline[28].t_first_s, 2.9, 1e-9);

    /* a server that logs durations keeps them as logged even when stamped */
    feed_stamped(lp, "vllm_new.log");
    CHECK_NEAR(si->phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 6.38, 1e-9);
    CHECK_EQ_INT(si->phase_source[STARTUP_PHASE_WEIGHTS_LOAD], STARTUP_PHASE_SOURCE_LOGGED);
    CHECK(isnan(si->t_context_start_s));
    free(lp);
}

/* An unknown server (a --serve-cmd wrapper): no dialect matches, the timeline is what shows. */
static void test_unknown_timeline(void)
{
    struct logparse *lp = xmalloc(sizeof *lp);
    logparse_init(lp);
    lp->t_launch_ns = 1000000000ull;
    char line[128];
    for (int pct = 0; pct <= 100; pct += 25) { /* a progress bar: one distinct line */
        snprintf(line, sizeof line, "mysrv: reading weights %3d%% (%d/4)\n", pct, pct / 25);
        logparse_feed_at(lp, line, strlen(line), 1000000000ull + (uint64_t)pct * 10000000ull);
    }
    const char *ready = "mysrv: accepting requests on :9000\n";
    logparse_feed_at(lp, ready, strlen(ready), 3500000000ull);
    logparse_finish(lp);
    const struct startup_info *si = &lp->info;
    CHECK_EQ_INT(si->server, LOGPARSE_SERVER_UNKNOWN);
    CHECK_EQ_INT(si->n_timeline, 2);
    CHECK_EQ_INT(si->timeline[0].n_seen, 5);
    CHECK_NEAR(si->timeline[0].t_first_s, 0.0, 1e-9);
    CHECK_NEAR(si->timeline[0].t_last_s, 1.0, 1e-9);
    CHECK(starts_with(si->timeline[0].text, "mysrv: reading weights   0%"));
    CHECK_NEAR(si->timeline[1].t_first_s, 2.5, 1e-9);
    CHECK_EQ_STR(si->timeline[1].text, "mysrv: accepting requests on :9000");
    for (int i = 0; i < STARTUP_PHASE__COUNT; i++)
        CHECK(isnan(si->phase_s[i]));

    /* bounded: more distinct lines than slots; a recognised line still gets in at the end */
    logparse_init(lp);
    for (int i = 0; i < 3 * STARTUP_TIMELINE_MAX; i++) {
        snprintf(line, sizeof line, "line %c%c\n", 'a' + i % 26, 'a' + i / 26);
        logparse_feed_at(lp, line, strlen(line), 1);
    }
    const char *loaded = "main: model loaded\n";
    logparse_feed_at(lp, loaded, strlen(loaded), 2);
    CHECK_EQ_INT(si->n_timeline, STARTUP_TIMELINE_MAX);
    CHECK_EQ_STR(si->timeline[0].text, "line ba"); /* "line aa" made room for it */
    CHECK_EQ_STR(si->timeline[STARTUP_TIMELINE_MAX - 1].text, "main: model loaded");
    CHECK_EQ_STR(si->timeline[STARTUP_TIMELINE_MAX - 2].text, "line nf"); /* the newest other */
    CHECK_EQ_INT(si->n_timeline_dropped, 2 * STARTUP_TIMELINE_MAX + 1);
    free(lp);
}

static void test_sglang(void)
{
    struct startup_info si = parse("sglang.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_SGLANG);
    CHECK(si.saw_load_start);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 2.87, 1e-9);
    CHECK_NEAR(si.weights_gib, 3.11, 1e-9);
    CHECK_EQ_INT(si.kv_cache_tokens, 2290430);
    CHECK_NEAR(si.kv_cache_gib, 61.16, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WARMUP_GRAPH_CAPTURE], 6.12, 1e-9);
    CHECK_NEAR(si.graph_gib, 0.41, 1e-9);
    CHECK_EQ_INT(si.context_len, 4096);
    CHECK(si.saw_startup_complete);
    CHECK_EQ_STR(si.error_message, "");
    check_chunked("sglang.log");

    si = parse("sglang_fail.log");
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 41.77, 1e-9);
    CHECK(starts_with(si.error_message,
                      "Not enough memory. Please try to increase --mem-fraction-static"));
    CHECK(!si.saw_startup_complete);
}

static void test_embedded(void)
{
    struct startup_info si = parse("embedded.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_VLLM);
    CHECK(si.saw_load_start);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 0.01, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_MODEL_LOAD], 0.012417, 1e-9);
    CHECK_NEAR(si.weights_gib, 0.0021, 1e-9);
    CHECK_NEAR(si.available_kv_gib, 0.01, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_KV_CACHE_ALLOC], 0.003, 1e-9);
    CHECK_NEAR(si.kv_cache_gib, 0.01, 1e-9);
    CHECK_EQ_INT(si.kv_cache_tokens, 8192);
    CHECK_EQ_INT(si.max_concurrency_len, 1024);
    CHECK_NEAR(si.max_concurrency, 8.0, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WARMUP_GRAPH_CAPTURE], 0.412, 1e-9);
    CHECK_EQ_INT(si.n_warmup_shapes, 8);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_ENGINE_INIT], 0.42, 1e-9);
    CHECK(isnan(si.phase_s[STARTUP_PHASE_TORCH_COMPILE]));
    CHECK_EQ_STR(si.api_url, "http://127.0.0.1:41733");
    CHECK(si.saw_startup_complete);
    check_chunked("embedded.log");

    struct startup_info s2;
    startup_info_init(&s2);
    const char *l = "INFO 11-22 21:30:15 engine: Warm-up skipped (--enforce-eager)";
    logparse_line(&s2, l, strlen(l));
    CHECK(s2.warmup_skipped);
    CHECK(isnan(s2.phase_s[STARTUP_PHASE_WARMUP_GRAPH_CAPTURE]));
}

/* The embedded runtime on a GPU (serve --device cuda): its exact lines parse as vLLM's phases,
 * weights (host read + upload) as model_load, graph capture with its GiB, and the free-memory
 * failure as the error. */
static void test_embedded_cuda(void)
{
    struct startup_info si = parse("embedded_cuda.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_VLLM);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 2.87, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_MODEL_LOAD], 4.512345, 1e-9);
    CHECK_NEAR(si.weights_gib, 2.8767, 1e-9);
    CHECK_NEAR(si.available_kv_gib, 120.79, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_KV_CACHE_ALLOC], 0.012, 1e-9);
    CHECK_NEAR(si.kv_cache_gib, 120.79, 1e-9);
    CHECK_EQ_INT(si.kv_cache_tokens, 4527616);
    CHECK_EQ_INT(si.max_concurrency_len, 32768);
    CHECK_NEAR(si.max_concurrency, 138.17, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WARMUP_GRAPH_CAPTURE], 1.73, 1e-9);
    CHECK_NEAR(si.graph_gib, 0.35, 1e-9);
    CHECK_NEAR(si.upload_gbps, 11.52, 1e-9);
    CHECK_NEAR(si.upload_s, 0.536, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_ENGINE_INIT], 1.98, 1e-9);
    CHECK(!si.warmup_skipped);
    CHECK(si.saw_startup_complete);
    CHECK(!si.error_message[0]);
    check_chunked("embedded_cuda.log");

    struct startup_info s2;
    startup_info_init(&s2);
    const char *l = "ERROR 12-02 07:20:04 engine: Free memory on device (100.40/140.40 GiB) on "
                    "startup is less than desired GPU memory utilization (0.9, 126.36 GiB). "
                    "Decrease GPU memory utilization or reduce GPU memory used by other "
                    "processes.";
    logparse_line(&s2, l, strlen(l));
    CHECK(starts_with(s2.error_message, "Free memory on device (100.40/140.40 GiB)"));
}

/* Single lines: prefixes, CRLF, a progress-bar CR, first value kept for per-rank repeats,
 * near-misses that must not match. */
static void test_lines(void)
{
    struct logparse lp;
    logparse_init(&lp);
    const char *txt =
        "(Worker_TP0 pid=11) INFO 01-02 03:04:05 [kv_cache_utils.py:1] GPU KV cache size: 1,234 tokens\r\n"
        "(Worker_TP1 pid=12) INFO 01-02 03:04:05 [kv_cache_utils.py:1] GPU KV cache size: 9,999 tokens\r\n"
        "progress 10%\rprogress 100%\r"
        "Available KV cache memory: 12.5 GiB (process-scoped)\n"
        "GPU KV cache size: lots of tokens\n"
        "Loading weights took seconds\n"
        "Maximum concurrency for 2,048 tokens per request: 3.5x";
    logparse_feed(&lp, txt, strlen(txt));
    CHECK_EQ_INT(lp.info.n_lines, 7); /* 2 CRLF, 2 CR, 3 LF; the last one is pending */
    logparse_finish(&lp);
    CHECK_EQ_INT(lp.info.n_lines, 8);
    CHECK_EQ_INT(lp.info.kv_cache_tokens, 1234);
    CHECK_NEAR(lp.info.available_kv_gib, 12.5, 1e-9);
    CHECK(isnan(lp.info.phase_s[STARTUP_PHASE_WEIGHTS_LOAD]));
    CHECK_EQ_INT(lp.info.max_concurrency_len, 2048);
    CHECK_NEAR(lp.info.max_concurrency, 3.5, 1e-9);

    /* a very long line is truncated but does not break the following ones */
    logparse_init(&lp);
    size_t n = 100000;
    char *big = xmalloc(n);
    memset(big, 'x', n);
    logparse_feed(&lp, big, n);
    const char *tail = "\nApplication startup complete.\n";
    logparse_feed(&lp, tail, strlen(tail));
    CHECK_EQ_INT(lp.info.n_lines, 2);
    CHECK(lp.info.saw_startup_complete);
    free(big);
}

static void test_follow_live(void)
{
    char path[] = "/tmp/slm_logparse_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    struct logparse lp;
    logparse_init(&lp);
    const char *a = "INFO serve: Loading weights took 1.50 sec";
    const char *b = "onds (open+map 0.1 s)\nINFO serve: GPU KV cache size: 4,096 tokens\n";
    CHECK(write(fd, a, strlen(a)) == (ssize_t)strlen(a));
    CHECK_EQ_INT(logparse_follow(&lp, fd), (long)strlen(a));
    CHECK(isnan(lp.info.phase_s[STARTUP_PHASE_WEIGHTS_LOAD])); /* line not finished yet */
    CHECK_EQ_INT(logparse_follow(&lp, fd), 0);
    CHECK(write(fd, b, strlen(b)) == (ssize_t)strlen(b));
    CHECK_EQ_INT(logparse_follow(&lp, fd), (long)strlen(b));
    CHECK_NEAR(lp.info.phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 1.5, 1e-9);
    CHECK_EQ_INT(lp.info.kv_cache_tokens, 4096);
    close(fd);
    unlink(path);

    struct startup_info si;
    char err[256];
    CHECK(logparse_file("/nonexistent/x.log", &si, err, sizeof err) == -1);
    CHECK(strstr(err, "/nonexistent/x.log") != NULL);
}

static void test_json(void)
{
    struct startup_info si = parse("vllm_new.log");
    struct buf b;
    buf_init(&b, 256, 1 << 16);
    CHECK(startup_info_to_json(&si, &b) == BUF_OK);
    CHECK(strstr(b.data, "\"weights_load\":6.38") != NULL);
    CHECK(strstr(b.data, "\"kv_cache_alloc\":null") != NULL);
    CHECK(strstr(b.data, "\"kv_cache_tokens\":447088") != NULL);
    CHECK(strstr(b.data, "\"error_message\":null") != NULL);
    CHECK(strstr(b.data, "\"phase_sources\":{\"weights_load\":\"logged\"") != NULL);
    CHECK(strstr(b.data, "\"timeline\":[{\"t_s\":null") != NULL);
    char err[128];
    struct json *j = json_parse(b.data, b.len, err, sizeof err);
    CHECK_MSG(j != NULL, "%s", err);
    json_free(j);
    buf_free(&b);

    buf_init(&b, 16, 64); /* too small: nothing half-written */
    CHECK(startup_info_to_json(&si, &b) == BUF_ERR_CAP);
    CHECK_EQ_INT(b.len, 0);
    buf_free(&b);
}

/* 1 if the timeline holds a line containing text, with the given recognised flag. */
static int in_timeline(const struct startup_info *si, const char *text, int recognised)
{
    for (int i = 0; i < si->n_timeline; i++)
        if (strstr(si->timeline[i].text, text) && si->timeline[i].recognised == recognised)
            return 1;
    return 0;
}

/* vLLM across releases (tests/data/vllm_v*.log, vllm_2026_*.log, vllm_rayserve_*.log,
 * vllm_torchserve_*.log: real start-up lines from public issue threads, the source on line 1). */
static void test_vllm_v06_v0(void)
{
    struct startup_info si = parse("vllm_v0.6_pr10909.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_VLLM);
    CHECK_NEAR(si.weights_gib, 18.4902, 1e-9);
    CHECK_NEAR(si.profile_s, 71.88, 1e-9); /* the first rank's */
    CHECK_EQ_INT(si.kv_gpu_blocks, 189945);
    CHECK_EQ_INT(si.max_concurrency_len, 1024);
    CHECK_NEAR(si.max_concurrency, 2967.89, 1e-9);
    CHECK(isnan(si.phase_s[STARTUP_PHASE_WEIGHTS_LOAD])); /* V0 printed no seconds */
    CHECK_EQ_INT(si.kv_cache_tokens, -1);
    CHECK(in_timeline(&si, "Capturing cudagraphs for decoding", 0));
    check_chunked("vllm_v0.6_pr10909.log");
}

static void test_vllm_v07_v1(void)
{
    struct startup_info si = parse("vllm_v0.7_v1_pr12569.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_VLLM);
    CHECK_NEAR(si.weights_gib, 67.7229, 1e-9);
    CHECK_NEAR(si.dynamo_s, 12.88, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_TORCH_COMPILE], 54.73, 1e-9);
    CHECK_EQ_INT(si.phase_source[STARTUP_PHASE_TORCH_COMPILE], STARTUP_PHASE_SOURCE_LOGGED);
    CHECK_EQ_INT(si.kv_gpu_blocks, 1381);
    CHECK_EQ_INT(si.max_concurrency_len, 2048);
    CHECK_NEAR(si.max_concurrency, 10.79, 1e-9);
    CHECK(in_timeline(&si, "Compiling a graph for general shape takes", 0));
    check_chunked("vllm_v0.7_v1_pr12569.log");
}

static void test_vllm_v08(void)
{
    struct startup_info si = parse("vllm_v0.8_issue18730.log");
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 38.52, 1e-9);
    CHECK_NEAR(si.weights_gib, 18.1450, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_MODEL_LOAD], 40.766484, 1e-9);
    CHECK_NEAR(si.dynamo_s, 19.00, 1e-9);
    CHECK(starts_with(si.error_message, "EngineCore failed to start."));
    CHECK(in_timeline(&si, "Using cache directory", 0));
    CHECK_NEAR(startup_logged_sum_s(&si), 40.766484, 1e-9); /* model load holds weights load */
    check_chunked("vllm_v0.8_issue18730.log");
}

static void test_vllm_v010_nested(void)
{
    struct startup_info si = parse("vllm_v0.10_pr23066.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_VLLM);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 2.63, 1e-9); /* TP0, the first */
    CHECK_NEAR(si.weights_gib, 11.0802, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_MODEL_LOAD], 3.106979, 1e-9);
    CHECK(in_timeline(&si, "Loading model from scratch", 0));
    check_chunked("vllm_v0.10_pr23066.log");
}

static void test_vllm_v011(void)
{
    struct startup_info si = parse("vllm_v0.11_issue28228.log");
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_TORCH_COMPILE], 11.68, 1e-9);
    CHECK_NEAR(si.available_kv_gib, 2.30, 1e-9);
    CHECK_EQ_INT(si.kv_cache_tokens, 75840);
    CHECK_EQ_INT(si.max_concurrency_len, 120000);
    CHECK_NEAR(si.max_concurrency, 2.48, 1e-9);
    CHECK(in_timeline(&si, "Directly load the compiled graph", 0));
    check_chunked("vllm_v0.11_issue28228.log");
}

static void test_vllm_2026(void)
{
    struct startup_info si = parse("vllm_2026_omni_pr1160.log");
    CHECK_NEAR(si.available_kv_gib, 100.43, 1e-9);
    CHECK_EQ_INT(si.kv_cache_tokens, 2925232);
    CHECK_EQ_INT(si.max_concurrency_len, 32768);
    CHECK_NEAR(si.max_concurrency, 89.27, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_ENGINE_INIT], 2.60, 1e-9);
    CHECK(in_timeline(&si, "Autotuning process starts", 0));
    check_chunked("vllm_2026_omni_pr1160.log");

    si = parse("vllm_2026_xpu_cookbook4.log");
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_TORCH_COMPILE], 0.06, 1e-9);
    CHECK_NEAR(si.profile_s, 0.0, 1e-12);
    CHECK(!isnan(si.profile_s));
    CHECK(starts_with(si.error_message, "EngineCore failed to start."));
    CHECK(in_timeline(&si, "Add 3 padding layers", 0));
    check_chunked("vllm_2026_xpu_cookbook4.log");
}

static void test_vllm_wrapped(void)
{
    struct startup_info si = parse("vllm_rayserve_pr66230.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_VLLM);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 4.62, 1e-9);
    CHECK(in_timeline(&si, "(ServeReplica:anthropic-direct", 0));
    check_chunked("vllm_rayserve_pr66230.log");

    si = parse("vllm_torchserve_pr3343.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_VLLM);
    CHECK(si.saw_load_start);
    CHECK(in_timeline(&si, "Initializing an LLM engine", 0));
    CHECK(in_timeline(&si, "Starting to load model", 1));
    check_chunked("vllm_torchserve_pr3343.log");
}

static void test_sglang_pr11830(void)
{
    struct startup_info si = parse("sglang_pr11830.log");
    CHECK_EQ_INT(si.server, LOGPARSE_SERVER_SGLANG);
    CHECK_EQ_INT(si.kv_cache_tokens, 2243474);
    CHECK_NEAR(si.kv_cache_gib, 119.82, 1e-9);
    CHECK_NEAR(si.phase_s[STARTUP_PHASE_WARMUP_GRAPH_CAPTURE], 5.37, 1e-9);
    CHECK_NEAR(si.graph_gib, 1.44, 1e-9);
    CHECK(in_timeline(&si, "Memory pool end", 0));
    check_chunked("sglang_pr11830.log");
}

/* Logged durations against the measured launch-to-ready time. */
static void test_logged_vs_measured(void)
{
    struct startup_info si = parse("vllm_0.10.log");
    double sum = startup_logged_sum_s(&si);
    /* model load 1.632581 + engine init 26.93 (torch.compile 20.21 + graphs 3 fit inside it) */
    CHECK_NEAR(sum, 1.632581 + 26.93, 1e-9);
    CHECK(!startup_logged_exceeds(&si, 40.0));
    CHECK(startup_logged_exceeds(&si, 20.0)); /* a log replayed from a slower run */
    CHECK(!startup_logged_exceeds(&si, sum)); /* within the slack */
    CHECK(!startup_logged_exceeds(&si, NAN));
    struct startup_info none;
    startup_info_init(&none);
    CHECK(isnan(startup_logged_sum_s(&none)));
    CHECK(!startup_logged_exceeds(&none, 1.0));
    /* arrival-inferred phases are not logged durations */
    struct startup_info ll = parse("llamacpp.log");
    CHECK(isnan(startup_logged_sum_s(&ll)));
}

int main(void)
{
    TEST_RUN(test_vllm_010);
    TEST_RUN(test_vllm_v06_v0);
    TEST_RUN(test_vllm_v07_v1);
    TEST_RUN(test_vllm_v08);
    TEST_RUN(test_vllm_v010_nested);
    TEST_RUN(test_vllm_v011);
    TEST_RUN(test_vllm_2026);
    TEST_RUN(test_vllm_wrapped);
    TEST_RUN(test_sglang_pr11830);
    TEST_RUN(test_logged_vs_measured);
    TEST_RUN(test_vllm_new_one_line_kv);
    TEST_RUN(test_vllm_failures);
    TEST_RUN(test_llamacpp);
    TEST_RUN(test_llamacpp_real);
    TEST_RUN(test_llamacpp_arrival);
    TEST_RUN(test_unknown_timeline);
    TEST_RUN(test_sglang);
    TEST_RUN(test_embedded);
    TEST_RUN(test_embedded_cuda);
    TEST_RUN(test_lines);
    TEST_RUN(test_follow_live);
    TEST_RUN(test_json);
    return TEST_DONE();
}
