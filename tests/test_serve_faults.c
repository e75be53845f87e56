/* test_serve_faults: lifecycle and fault cases of `slmprobe serve` (SLMPROBE_BIN, default
 * ./slmprobe), over real loopback sockets: 100 streams disconnected mid-way (blocks and running
 * count back to their starting values, abort counted, server still serving), SIGTERM while
 * streaming (the stream completes, exit 0), SIGTERM with a zero grace period (streams end with
 * finish_reason "abort"), SIGTERM when idle, 503 while loading, a taken port, a KV cache too
 * small for max-model-len, a bad model file, bad flags. The HTTP client and process helpers
 * come from serve_harness.h, shared with test_server.c. */

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

/* Spawns serve with the common test flags (unless bare) plus extra (NULL-terminated); does not
 * wait. The port is a free one unless *port_inout > 0. */
static int srv_spawn(struct srv *s, const char *name, const char *const *extra, int bare, int port)
{
    memset(s, 0, sizeof *s);
    s->port = port > 0 ? port : free_port();
    snprintf(s->log, sizeof s->log, "%s/%s.log", g_dir, name);
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", s->port);
    const char *argv[64];
    int n = 0;
    argv[n++] = bin_path();
    argv[n++] = "serve";
    if (!bare) {
        argv[n++] = "--model";
        argv[n++] = g_model;
        argv[n++] = "--port";
        argv[n++] = port_s;
        argv[n++] = "--max-model-len";
        argv[n++] = "512";
        argv[n++] = "--threads"; /* 1: no OpenMP spinning on a shared machine */
        argv[n++] = "1";
    }
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
    return s->pid > 0 ? 0 : -1;
}

static int srv_wait_ready(struct srv *s, const char *name)
{
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

static int srv_start(struct srv *s, const char *name, const char *const *extra)
{
    if (srv_spawn(s, name, extra, 0, 0) != 0)
        return -1;
    return srv_wait_ready(s, name);
}

/* ---------------------------------------------------------------------------------------- */
/* fault and lifecycle tests */

static int log_has(const struct srv *s, const char *needle)
{
    char *log = slurp(s->log);
    int r = strstr(log, needle) != NULL;
    free(log);
    return r;
}

static void check_clean_log(const struct srv *s)
{
    char *log = slurp(s->log);
    CHECK_MSG(strstr(log, "AddressSanitizer") == NULL && strstr(log, "runtime error") == NULL &&
                  strstr(log, "LeakSanitizer") == NULL && strstr(log, "ThreadSanitizer") == NULL,
              "sanitizer report in %s", s->log);
    free(log);
}

/* Sends a request on a new connection; returns the fd. */
static int send_request(int port, const char *path, const char *body)
{
    int fd = http_open(port);
    if (fd < 0)
        return -1;
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     path, strlen(body));
    if (send_all(fd, head, (size_t)n) != 0 || send_all(fd, body, strlen(body)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static size_t count_str(const char *hay, size_t len, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    for (const char *p = hay; (p = memmem(p, len - (size_t)(p - hay), needle, nl)); p += nl)
        n++;
    return n;
}

/* Reads until at least n_events SSE events arrived. 0 or -1. */
static int read_events(struct reader *rd, size_t n_events)
{
    while (count_str(rd->b.data, rd->b.len, "data: ") < n_events)
        if (rd_more(rd) <= 0)
            return -1;
    return 0;
}

struct gauges {
    double running, waiting, usage, aborts, lengths, gen_tokens;
};

static void read_gauges(int port, struct gauges *g)
{
    char *m = get_metrics(port);
    g->running = metric(m, "vllm:num_requests_running" LBL);
    g->waiting = metric(m, "vllm:num_requests_waiting" LBL);
    g->usage = metric(m, "vllm:kv_cache_usage_perc" LBL);
    g->aborts = metric(m, "vllm:request_success_total{model_name=\"tiny\",engine=\"0\","
                          "finished_reason=\"abort\"}");
    g->lengths = metric(m, "vllm:request_success_total{model_name=\"tiny\",engine=\"0\","
                           "finished_reason=\"length\"}");
    g->gen_tokens = metric(m, "vllm:generation_tokens_total" LBL);
    free(m);
}

static void test_disconnect_100_streams(void)
{
    static const char *const extra[] = {"--kv-cache-memory-bytes",
                                        "16MiB",
                                        "--max-num-batched-tokens",
                                        "512",
                                        "--debug-check-invariants",
                                        "--enforce-eager",
                                        NULL};
    struct srv s;
    CHECK(srv_start(&s, "disconnect", extra) == 0);
    if (s.pid <= 0)
        return;
    struct gauges g0, g1;
    read_gauges(s.port, &g0);
    CHECK_NEAR(g0.running, 0, 0);
    CHECK_NEAR(g0.usage, 0, 0);
    enum { N = 100, MAX_TOKENS = 400 };
    for (int i = 0; i < N; i++) {
        char body[512];
        int stream = i % 10 != 9; /* every tenth one is a non-streaming request */
        snprintf(body, sizeof body,
                 "{\"prompt\": \"request %d is going to be cut off by its client\", "
                 "\"max_tokens\": %d, \"ignore_eos\": true, \"stream\": %s}",
                 i, MAX_TOKENS, stream ? "true" : "false");
        int fd = send_request(s.port, "/v1/completions", body);
        CHECK(fd >= 0);
        if (fd < 0)
            break;
        int wait_events = stream ? i % 4 : 0; /* 0: close right after sending */
        if (wait_events > 0) {
            struct reader rd;
            rd_init(&rd, fd);
            CHECK(read_events(&rd, (size_t)wait_events) == 0);
            buf_free(&rd.b);
        } else if (!stream) {
            sleep_ms(5);
        }
        if (wait_events > 0 && i % 2) {
            /* some reset the connection instead of closing it (only once the request is surely
             * in: a reset can discard request bytes the server has not read yet) */
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(fd);
    }
    /* every request is aborted and its blocks freed */
    double t0 = now_s();
    do {
        read_gauges(s.port, &g1);
        if (g1.running == g0.running && g1.waiting == 0 && g1.usage == g0.usage &&
            g1.aborts - g0.aborts == N)
            break;
        sleep_ms(50);
    } while (now_s() - t0 < 60);
    CHECK_NEAR(g1.running, g0.running, 0);
    CHECK_NEAR(g1.waiting, 0, 0);
    CHECK_NEAR(g1.usage, g0.usage, 0);
    CHECK_NEAR(g1.aborts - g0.aborts, N, 0);
    CHECK_NEAR(g1.lengths - g0.lengths, 0, 0);
    CHECK(g1.gen_tokens - g0.gen_tokens < (double)N * MAX_TOKENS);
    CHECK(log_has(&s, "client disconnected; aborting request"));
    /* still serving */
    struct resp r;
    CHECK(post(s.port, "/v1/completions", "{\"prompt\": \"after\", \"max_tokens\": 3}", &r) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    CHECK_EQ_INT(srv_stop(&s, 60), 0);
    check_clean_log(&s);
}

/* Starts a 480-token stream and reads its first event. */
static int start_long_stream(int port, struct reader *rd)
{
    int fd = send_request(port, "/v1/completions",
                          "{\"prompt\": \"a long stream during shutdown\", \"max_tokens\": 480, "
                          "\"ignore_eos\": true, \"stream\": true, "
                          "\"stream_options\": {\"include_usage\": true}}");
    if (fd < 0)
        return -1;
    rd_init(rd, fd);
    if (read_events(rd, 1) != 0) {
        close(fd);
        buf_free(&rd->b);
        return -1;
    }
    return fd;
}

/* The last two SSE payloads before [DONE] of a streamed response with include_usage. */
static void check_stream_end(const struct resp *r, const char *want_finish, long long want_tokens)
{
    char *ev[1024], *store;
    int n = sse_split(&r->body, ev, 1024, &store);
    CHECK_MSG(n >= 3, "bad SSE framing (%d): %.200s", n, r->body.data);
    if (n >= 3) {
        CHECK_EQ_STR(ev[n - 1], "[DONE]");
        struct buf u = {ev[n - 2], strlen(ev[n - 2]), 0, 0};
        struct json *j = jparse(&u);
        CHECK_EQ_INT(json_len(jpath(j, "choices")), 0);
        if (want_tokens >= 0)
            CHECK_EQ_INT(jint(j, "usage.completion_tokens"), want_tokens);
        json_free(j);
        struct buf f = {ev[n - 3], strlen(ev[n - 3]), 0, 0};
        j = jparse(&f);
        CHECK_EQ_STR(jstr(j, "choices.0.finish_reason"), want_finish);
        json_free(j);
    }
    free(store);
}

static int connect_refused_within(int port, double timeout_s)
{
    double t0 = now_s();
    while (now_s() - t0 < timeout_s) {
        int fd = http_open(port);
        if (fd < 0)
            return 1;
        close(fd);
        sleep_ms(20);
    }
    return 0;
}

static void test_sigterm_drains_stream(void)
{
    static const char *const extra[] = {"--kv-cache-memory-bytes", "16MiB", "--enforce-eager",
                                        "--drain-timeout",         "300",   NULL};
    struct srv s;
    CHECK(srv_start(&s, "drain", extra) == 0);
    if (s.pid <= 0)
        return;
    struct reader rd;
    int fd = start_long_stream(s.port, &rd);
    CHECK(fd >= 0);
    if (fd < 0) {
        srv_stop(&s, 10);
        return;
    }
    kill(s.pid, SIGTERM);
    CHECK(connect_refused_within(s.port, 10)); /* no new connections while draining */
    struct resp r;
    CHECK(http_read_resp(&rd, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    check_stream_end(&r, "length", 480);
    resp_free(&r);
    buf_free(&rd.b);
    close(fd);
    CHECK_EQ_INT(srv_wait_exit(&s, 60), 0);
    CHECK(log_has(&s, "Shutting down (SIGTERM)"));
    CHECK(log_has(&s, "draining 1 in-flight requests"));
    CHECK(log_has(&s, "Application shutdown complete."));
    check_clean_log(&s);
}

static void test_sigterm_grace_zero_aborts(void)
{
    static const char *const extra[] = {"--kv-cache-memory-bytes", "16MiB", "--enforce-eager",
                                        "--drain-timeout",         "0",     NULL};
    struct srv s;
    CHECK(srv_start(&s, "grace0", extra) == 0);
    if (s.pid <= 0)
        return;
    struct reader rd;
    int fd = start_long_stream(s.port, &rd);
    CHECK(fd >= 0);
    if (fd < 0) {
        srv_stop(&s, 10);
        return;
    }
    kill(s.pid, SIGTERM);
    struct resp r;
    CHECK(http_read_resp(&rd, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    check_stream_end(&r, "abort", -1);
    resp_free(&r);
    buf_free(&rd.b);
    close(fd);
    CHECK_EQ_INT(srv_wait_exit(&s, 60), 0);
    CHECK(log_has(&s, "grace period of 0 s over, aborting 1 requests"));
    check_clean_log(&s);
}

static void test_sigint_idle(void)
{
    static const char *const extra[] = {"--kv-cache-memory-bytes", "16MiB", "--enforce-eager",
                                        NULL};
    struct srv s;
    CHECK(srv_start(&s, "idle", extra) == 0);
    if (s.pid <= 0)
        return;
    /* an idle kept-alive connection does not hold the shutdown up */
    int fd = http_open(s.port);
    CHECK(send_all(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 34) == 0);
    struct reader rd;
    rd_init(&rd, fd);
    struct resp r;
    CHECK(http_read_resp(&rd, &r, 0) == 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    kill(s.pid, SIGINT);
    CHECK_EQ_INT(srv_wait_exit(&s, 30), 0);
    CHECK(rd_more(&rd) <= 0); /* the server closed the idle connection */
    buf_free(&rd.b);
    close(fd);
    CHECK(log_has(&s, "Shutting down (SIGINT)"));
    check_clean_log(&s);
}

/* The port is bound before loading: /health answers 503 (and API routes a 503 JSON error) until
 * the engine is ready; a signal during start-up exits 0. Needs a start-up slow enough to be seen
 * (the warm-up over 1..2048-token shapes); on a machine too fast for that it only notes it. */
static void test_loading_503_and_stop_during_startup(void)
{
    static const char *const extra[] = {"--kv-cache-memory-bytes", "16MiB",
                                        "--max-num-batched-tokens", "2048", NULL};
    struct srv s;
    CHECK(srv_spawn(&s, "loading", extra, 0, 0) == 0);
    int saw_503 = 0, saw_api_503 = 0, saw_200 = 0;
    double t0 = now_s();
    while (now_s() - t0 < 120 && !saw_200 && !saw_503) {
        int st = http_status_only(s.port, "/health");
        if (st == 503) {
            saw_503 = 1;
            struct resp r;
            if (http_do(s.port, "GET", "/v1/models", "", NULL, &r) == 0 && r.status == 503) {
                struct json *j = jparse(&r.body);
                saw_api_503 = j && jint(j, "error.code") == 503 && jstr(j, "error.type") &&
                              !strcmp(jstr(j, "error.type"), "ServiceUnavailableError");
                json_free(j);
            }
            resp_free(&r);
        } else if (st == 200) {
            saw_200 = 1;
        }
        int wst;
        if (waitpid(s.pid, &wst, WNOHANG) == s.pid) {
            s.pid = 0;
            break;
        }
        sleep_ms(2);
    }
    CHECK(s.pid > 0);
    if (saw_503) {
        CHECK(saw_api_503 || log_has(&s, "Application startup complete."));
        kill(s.pid, SIGTERM);
        CHECK_EQ_INT(srv_wait_exit(&s, 120), 0);
        CHECK(log_has(&s, "stop requested during start-up") ||
              log_has(&s, "Application startup complete."));
    } else {
        fprintf(stderr, "  (start-up too fast to observe the loading state; not checked)\n");
        CHECK_EQ_INT(srv_stop(&s, 60), 0);
    }
    check_clean_log(&s);
}

static void test_port_taken(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    CHECK(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(lfd, 4) == 0 &&
          getsockname(lfd, (struct sockaddr *)&a, &l) == 0);
    struct srv s;
    CHECK(srv_spawn(&s, "port-taken", NULL, 0, ntohs(a.sin_port)) == 0);
    CHECK_EQ_INT(srv_wait_exit(&s, 30), 1);
    CHECK(log_has(&s, "address already in use"));
    CHECK(!log_has(&s, "Starting to load model")); /* failed before loading anything */
    close(lfd);
}

static void test_kv_too_small(void)
{
    static const char *const extra[] = {"--kv-cache-memory-bytes", "64KiB", NULL};
    struct srv s;
    CHECK(srv_spawn(&s, "kv-small", extra, 0, 0) == 0);
    CHECK_EQ_INT(srv_wait_exit(&s, 60), 1);
    /* tiny: 4096 bytes per token; 64 KiB hold 16 tokens; 512 need 2 MiB */
    CHECK(log_has(&s, "estimated maximum model length is 16"));
    CHECK(log_has(&s, "needed 2097152 bytes, available 65536 bytes"));
    check_clean_log(&s);
}

static void test_bad_model_file(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/garbage.gguf", g_dir);
    CHECK(file_write_all(path, "this is not a GGUF file\n", 24) == 0);
    const char *extra[] = {"--model", path, "--port", "0", NULL};
    struct srv s;
    CHECK(srv_spawn(&s, "bad-model", extra, 1, 0) == 0);
    CHECK_EQ_INT(srv_wait_exit(&s, 30), 1);
    CHECK(log_has(&s, "cannot load model"));
    snprintf(path, sizeof path, "%s/missing.gguf", g_dir);
    CHECK(srv_spawn(&s, "missing-model", extra, 1, 0) == 0);
    CHECK_EQ_INT(srv_wait_exit(&s, 30), 1);
    check_clean_log(&s);
}

static int run_serve(const char *name, const char *const *args, char **log_out)
{
    char log[600];
    snprintf(log, sizeof log, "%s/%s.log", g_dir, name);
    const char *argv[32];
    int n = 0;
    argv[n++] = bin_path();
    argv[n++] = "serve";
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = run_wait((char *const *)argv, log);
    *log_out = slurp(log);
    return rc;
}

static void test_flags(void)
{
    char *log;
    const char *unknown[] = {"--model", g_model, "--bogus", NULL};
    CHECK_EQ_INT(run_serve("flag-unknown", unknown, &log), 2);
    CHECK(strstr(log, "unknown option '--bogus'") && strstr(log, "usage: slmprobe serve"));
    free(log);
    const char *bad_port[] = {"--model", g_model, "--port", "abc", NULL};
    CHECK_EQ_INT(run_serve("flag-port", bad_port, &log), 2);
    CHECK(strstr(log, "invalid value 'abc' for --port") != NULL);
    free(log);
    const char *bad_size[] = {"--model", g_model, "--device-memory=2XB", NULL};
    CHECK_EQ_INT(run_serve("flag-size", bad_size, &log), 2);
    CHECK(strstr(log, "invalid value '2XB' for --device-memory") != NULL);
    free(log);
    const char *bad_util[] = {"--model", g_model, "--gpu-memory-utilization", "1.5", NULL};
    CHECK_EQ_INT(run_serve("flag-util", bad_util, &log), 2);
    free(log);
    const char *bad_fmt[] = {"--model", g_model, "--load-format", "tar", NULL};
    CHECK_EQ_INT(run_serve("flag-fmt", bad_fmt, &log), 2);
    free(log);
    const char *missing_val[] = {"--model", g_model, "--max-model-len", NULL};
    CHECK_EQ_INT(run_serve("flag-missing", missing_val, &log), 2);
    CHECK(strstr(log, "needs a value") != NULL);
    free(log);
    const char *no_model[] = {NULL};
    CHECK_EQ_INT(run_serve("flag-nomodel", no_model, &log), 2);
    CHECK(strstr(log, "--model") != NULL);
    free(log);
    const char *help[] = {"--help", NULL};
    CHECK_EQ_INT(run_serve("flag-help", help, &log), 0);
    const char *documented[] = {"--host",
                                "--port",
                                "--api-key",
                                "--served-model-name",
                                "--block-size",
                                "--gpu-memory-utilization",
                                "--device-memory",
                                "--kv-cache-memory-bytes",
                                "--max-model-len",
                                "--max-num-seqs",
                                "--max-num-batched-tokens",
                                "--enable-chunked-prefill",
                                "--no-enable-chunked-prefill",
                                "--enable-prefix-caching",
                                "--no-enable-prefix-caching",
                                "--enable-prompt-tokens-details",
                                "--enforce-eager",
                                "--load-format",
                                "--threads",
                                "--max-body-bytes",
                                "--seed",
                                "--drain-timeout",
                                "--device"};
    for (size_t i = 0; i < sizeof documented / sizeof documented[0]; i++)
        CHECK_MSG(strstr(log, documented[i]) != NULL, "--help lacks %s", documented[i]);
    free(log);
    /* suffixed values are accepted: 2K context is over the tiny model's 2048 -> engine error */
    const char *k_len[] = {
        "--model", g_model, "--port", "0", "--max-model-len", "4K", "--kv-cache-memory-bytes",
        "1MiB",    NULL};
    CHECK_EQ_INT(run_serve("flag-4k", k_len, &log), 1);
    CHECK(strstr(log, "max_model_len (4096)") != NULL);
    free(log);
}

/* --device: a bad value is a usage error; cuda in a build without the backend fails at once
 * with the one line that says how to build it, before binding or loading anything. */
static void test_device_flag(void)
{
    char *log;
    const char *bad[] = {"--model", g_model, "--device", "gpu", NULL};
    CHECK_EQ_INT(run_serve("device-bad", bad, &log), 2);
    CHECK(strstr(log, "invalid value 'gpu' for --device: expected cpu or cuda") != NULL);
    free(log);
#ifndef SLM_CUDA
    const char *cuda[] = {"--model", g_model, "--port", "0", "--device", "cuda", NULL};
    CHECK_EQ_INT(run_serve("device-cuda", cuda, &log), 1);
    CHECK(strstr(log, "--device cuda: this slmprobe was built without the CUDA backend: rebuild "
                      "with `make CUDA=1`") != NULL);
    CHECK(strstr(log, "Starting to load model") == NULL);
    CHECK(strstr(log, "Starting vLLM API server") == NULL);
    free(log);
#endif
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (harness_setup("faults") != 0) {
        test_n_fail++;
        return TEST_DONE();
    }
    TEST_RUN(test_flags);
    TEST_RUN(test_device_flag);
    TEST_RUN(test_port_taken);
    TEST_RUN(test_kv_too_small);
    TEST_RUN(test_bad_model_file);
    TEST_RUN(test_sigint_idle);
    TEST_RUN(test_sigterm_drains_stream);
    TEST_RUN(test_sigterm_grace_zero_aborts);
    TEST_RUN(test_disconnect_100_streams);
    TEST_RUN(test_loading_503_and_stop_during_startup);
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
