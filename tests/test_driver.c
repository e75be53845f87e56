/* test_driver: the load driver against the real embedded server (sequential with think time,
 * closed loop, open loop, keep cap, JSONL sink, cancel, server killed mid-run) and against a
 * fake SSE server inside the test: a request whose connection is reset at once is held for the
 * exit grace while 64 other streams keep their event timestamps. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"
#include "serve_harness.h"
#pragma GCC diagnostic pop

#include <pthread.h>

#include "run/driver.h"
#include "test.h"

static struct probe_opts g_po;
static struct session g_s;
static struct launch g_L;
static int g_ready;

struct maker {
    int max_tokens;
    const char *fail_prompt; /* request fail_at gets this prompt */
    uint64_t fail_at;
    int n_cancel_after;      /* session_cancel after this many records (0: never) */
    pid_t kill_pid;          /* SIGKILL it after n_kill_after ok records */
    int n_kill_after;
    int n_seen, n_ok_seen;
    mono_ns fail_classified_ns, fail_done_ns;
    enum req_error fail_error;
};

static int make_cb(void *ud, uint64_t i, struct client_request *rq, struct buf *prompt)
{
    struct maker *m = ud;
    const char *text = m->fail_prompt && i == m->fail_at ? m->fail_prompt : "Hello there world";
    buf_puts(prompt, text);
    rq->max_tokens = m->max_tokens;
    rq->ignore_eos = 1;
    rq->temperature = 0;
    return 0;
}

static void record_cb(void *ud, const struct request_record *rec)
{
    struct maker *m = ud;
    m->n_seen++;
    if (rec->error == REQ_ERROR_NONE)
        m->n_ok_seen++;
    else {
        m->fail_classified_ns = clock_now_ns();
        m->fail_done_ns = rec->t_done_ns;
        m->fail_error = rec->error;
    }
    if (m->n_cancel_after && m->n_seen == m->n_cancel_after)
        session_cancel(&g_s, "test cancel");
    if (m->kill_pid && m->n_ok_seen == m->n_kill_after)
        kill(m->kill_pid, SIGKILL);
}

static struct driver *new_driver(struct launch *L, struct record_sink *sink)
{
    struct client_config cc = {.api = CLIENT_API_COMPLETIONS, .timeout_ms = 60000};
    char err[512] = "";
    struct driver *d = driver_new(&g_s, L, &cc, sink, err, sizeof err);
    CHECK_MSG(d != NULL, "%s", err);
    return d;
}

static void test_sequential_think(void)
{
    struct driver *d = new_driver(&g_L, NULL);
    if (!d)
        return;
    struct maker m = {.max_tokens = 4};
    struct driver_phase ph = {.mode = DRIVER_MODE_SEQUENTIAL, .tag = "seq", .level = 1,
                              .n_requests = 3, .think_s = 0.3, .make = make_cb,
                              .on_record = record_cb, .ud = &m, .keep_records = 10};
    struct driver_result r;
    CHECK_EQ_INT(driver_run(d, &ph, &r), DRIVER_STATUS_OK);
    CHECK_EQ_INT(r.n_sent, 3);
    CHECK_EQ_INT(r.n_ok, 3);
    CHECK_EQ_INT(r.n_recs, 3);
    CHECK_EQ_INT(m.n_seen, 3);
    CHECK_EQ_INT(r.ttft_ms.n, 3);
    for (size_t i = 0; i + 1 < r.n_recs; i++) {
        double gap_ms = ns_to_ms(r.recs[i + 1].t_sent_ns - r.recs[i].t_done_ns);
        CHECK_MSG(gap_ms >= 295 && gap_ms < 2000, "think gap %.1f ms", gap_ms);
        CHECK_EQ_STR(r.recs[i].tag, "seq");
        CHECK_EQ_INT(r.recs[i].level, 1);
    }
    CHECK(r.inflight_mean > 0 && r.inflight_mean < 1.01);
    CHECK(r.completion_tokens == 12 && r.n_no_usage == 0);
    driver_result_free(&r);
    driver_free(d);
}

static void test_closed_loop(void)
{
    struct driver *d = new_driver(&g_L, NULL);
    if (!d)
        return;
    struct maker m = {.max_tokens = 32};
    struct driver_phase ph = {.mode = DRIVER_MODE_CLOSED, .tag = "c=4", .level = 4,
                              .concurrency = 4, .n_requests = 16, .make = make_cb, .ud = &m,
                              .keep_records = 100};
    struct driver_result r;
    CHECK_EQ_INT(driver_run(d, &ph, &r), DRIVER_STATUS_OK);
    CHECK_EQ_INT(r.n_sent, 16);
    CHECK_EQ_INT(r.n_done, 16);
    CHECK_EQ_INT(r.n_ok, 16);
    CHECK_EQ_INT(r.n_recs, 16);
    /* the most requests in flight at once, from the records themselves */
    int max_overlap = 0;
    for (size_t i = 0; i < r.n_recs; i++) {
        int n = 0;
        for (size_t j = 0; j < r.n_recs; j++)
            n += r.recs[j].t_sent_ns <= r.recs[i].t_sent_ns &&
                 r.recs[j].t_done_ns > r.recs[i].t_sent_ns;
        max_overlap = n > max_overlap ? n : max_overlap;
    }
    CHECK_EQ_INT(max_overlap, 4);
    CHECK_MSG(r.inflight_mean > 2 && r.inflight_mean <= 4.01, "%g", r.inflight_mean);
    CHECK(r.itl_ms.n > 0 && r.tpot_ms.n == 16 && r.e2e_ms.n == 16);
    CHECK(r.e2e_int_ms.n == 0); /* open loop only */
    CHECK(driver_n_connects(d) <= 8);
    CHECK(driver_model(d)[0] != '\0');
    driver_result_free(&r);
    driver_free(d);
}

static void test_open_loop(void)
{
    struct driver *d = new_driver(&g_L, NULL);
    if (!d)
        return;
    struct maker m = {.max_tokens = 4};
    enum { N = 8 };
    mono_ns sched[N];
    mono_ns t0 = clock_now_ns() + 200000000ull;
    for (int i = 0; i < N; i++)
        sched[i] = t0 + (mono_ns)i * 150000000ull;
    struct driver_phase ph = {.mode = DRIVER_MODE_OPEN, .tag = "open", .n_requests = N,
                              .schedule = sched, .make = make_cb, .ud = &m, .keep_records = N};
    struct driver_result r;
    CHECK_EQ_INT(driver_run(d, &ph, &r), DRIVER_STATUS_OK);
    CHECK_EQ_INT(r.n_ok, N);
    CHECK_EQ_INT(r.qdelay_ms.n, N);
    CHECK_EQ_INT(r.e2e_int_ms.n, N);
    int n_matched = 0;
    for (size_t i = 0; i < r.n_recs; i++) {
        const struct request_record *rec = &r.recs[i];
        for (int k = 0; k < N; k++)
            n_matched += rec->t_intended_ns == sched[k];
        CHECK(rec->t_sent_ns >= rec->t_intended_ns);
        CHECK_MSG(rec->t_sent_ns - rec->t_intended_ns < 100000000ull, "late by %.1f ms",
                  ns_to_ms(rec->t_sent_ns - rec->t_intended_ns));
    }
    CHECK_EQ_INT(n_matched, N);
    CHECK(hist_percentile(&r.qdelay_ms, 100) < 100);
    driver_result_free(&r);
    driver_free(d);
}

static void test_keep_cap_and_sink(void)
{
    char err[256] = "", path[1200];
    struct record_sink *sink = session_sink_open(&g_s, "drv.jsonl", err, sizeof err);
    CHECK_MSG(sink != NULL, "%s", err);
    struct driver *d = new_driver(&g_L, sink);
    if (!d || !sink)
        return;
    struct maker m = {.max_tokens = 4};
    struct driver_phase ph = {.mode = DRIVER_MODE_CLOSED, .tag = "keep", .concurrency = 3,
                              .n_requests = 10, .make = make_cb, .ud = &m, .keep_records = 3};
    struct driver_result r;
    CHECK_EQ_INT(driver_run(d, &ph, &r), DRIVER_STATUS_OK);
    CHECK_EQ_INT(r.n_done, 10);
    CHECK_EQ_INT(r.n_recs, 3);
    CHECK_EQ_INT(r.n_recs_dropped, 7);
    driver_result_free(&r);
    ph.no_sink = 1; /* a phase that writes nothing */
    ph.n_requests = 2;
    CHECK_EQ_INT(driver_run(d, &ph, &r), DRIVER_STATUS_OK);
    driver_result_free(&r);
    driver_free(d);
    record_sink_close(sink);
    size_t len = 0;
    char *text = file_read_all(session_path(&g_s, "drv.jsonl", path, sizeof path), 1u << 24, &len);
    CHECK(text != NULL);
    int n_lines = 0, n_bad = 0;
    for (char *p = text, *nl; text && (nl = memchr(p, '\n', (size_t)(text + len - p))); p = nl + 1) {
        struct json *j = json_parse(p, (size_t)(nl - p), err, sizeof err);
        n_bad += j == NULL || json_get(j, "ttft_ms") == NULL;
        json_free(j);
        n_lines++;
    }
    CHECK_EQ_INT(n_lines, 10);
    CHECK_EQ_INT(n_bad, 0);
    free(text);
}

static void test_cancel(void)
{
    struct driver *d = new_driver(&g_L, NULL);
    if (!d)
        return;
    struct maker m = {.max_tokens = 16, .n_cancel_after = 3};
    struct driver_phase ph = {.mode = DRIVER_MODE_CLOSED, .tag = "cancel", .concurrency = 2,
                              .n_requests = 60, .make = make_cb, .on_record = record_cb,
                              .ud = &m, .keep_records = 100};
    struct driver_result r;
    CHECK_EQ_INT(driver_run(d, &ph, &r), DRIVER_STATUS_CANCELLED);
    CHECK(strstr(r.stop_reason, "test cancel") != NULL);
    CHECK(r.n_ok >= 3);
    CHECK(r.n_sent < 60);
    CHECK_EQ_INT(r.n_done, r.n_sent);
    CHECK_EQ_INT((int)r.n_recs, r.n_done); /* finished ones kept, aborted ones counted */
    CHECK_EQ_INT(r.n_ok + r.n_err_class[REQ_ERROR_ABORTED], r.n_done);
    driver_result_free(&r);
    session_cancel_reset(&g_s);
    CHECK(!session_cancelled(&g_s));
    driver_free(d);
}

static void test_server_killed(void)
{
    struct target_config cfg;
    target_config_defaults(&cfg, TARGET_KIND_EMBEDDED);
    cfg.model = g_model;
    cfg.self_exe = bin_path();
    struct launch L;
    launch_init(&L, &g_s, &cfg, "srv_killed.log");
    CHECK_MSG(launch_start(&L) == TARGET_OK, "%s", L.err);
    struct driver *d = L.ready ? new_driver(&L, NULL) : NULL;
    if (d) {
        struct maker m = {.max_tokens = 64, .kill_pid = L.t->pid, .n_kill_after = 3};
        struct driver_phase ph = {.mode = DRIVER_MODE_CLOSED, .tag = "kill", .concurrency = 4,
                                  .n_requests = 400, .make = make_cb, .on_record = record_cb,
                                  .ud = &m, .keep_records = 1000};
        struct driver_result r;
        CHECK_EQ_INT(driver_run(d, &ph, &r), DRIVER_STATUS_SERVER_EXIT);
        CHECK(strstr(r.stop_reason, "exited during the run") != NULL);
        CHECK(r.n_ok >= 3);
        CHECK(r.n_err_class[REQ_ERROR_SERVER_EXIT] >= 1);
        CHECK_EQ_INT(r.n_ok + r.n_err_class[REQ_ERROR_SERVER_EXIT], r.n_done);
        CHECK_EQ_INT(r.n_done, r.n_sent);
        CHECK(r.n_sent < 400);
        CHECK_EQ_INT((int)r.n_recs, r.n_done);
        driver_result_free(&r);
        driver_free(d);
    }
    launch_stop(&L);
    CHECK(L.died);
    CHECK_EQ_INT(L.exit.exit_signal, SIGKILL);
    CHECK(L.log_tail[0] != '\0');
    launch_free(&L);
}

/* ---- a fake SSE server: 64 healthy streams and one reset ---- */

#define FAKE_EVENTS 200
#define FAKE_EVENT_MS 10

static void fake_send(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void *fake_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char req[8192];
    size_t n = 0;
    char *hdr_end = NULL;
    while (n < sizeof req - 1 && !hdr_end) {
        ssize_t r = recv(fd, req + n, sizeof req - 1 - n, 0);
        if (r <= 0)
            goto out;
        n += (size_t)r;
        req[n] = '\0';
        hdr_end = strstr(req, "\r\n\r\n");
    }
    if (!hdr_end)
        goto out;
    const char *cl = strcasestr(req, "content-length:");
    size_t body_len = cl ? (size_t)atol(cl + 15) : 0;
    size_t have = n - (size_t)(hdr_end + 4 - req);
    while (have < body_len && n < sizeof req - 1) {
        ssize_t r = recv(fd, req + n, sizeof req - 1 - n, 0);
        if (r <= 0)
            goto out;
        n += (size_t)r;
        have += (size_t)r;
        req[n] = '\0';
    }
    if (!strncmp(req, "GET /health", 11)) {
        fake_send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    } else if (!strncmp(req, "GET /v1/models", 14)) {
        const char *b = "{\"object\":\"list\",\"data\":[{\"id\":\"fake\",\"object\":\"model\"}]}";
        char h[256];
        snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n", strlen(b));
        fake_send(fd, h);
        fake_send(fd, b);
    } else if (strstr(req, "FAIL-NOW")) {
        struct linger lg = {1, 0}; /* close with RST */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    } else if (!strncmp(req, "POST /v1/completions", 20)) {
        fake_send(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      "Connection: close\r\n\r\n");
        for (int i = 0; i < FAKE_EVENTS; i++) {
            fake_send(fd, "data: {\"choices\":[{\"index\":0,\"text\":\"x\","
                          "\"finish_reason\":null}]}\n\n");
            sleep_ms(FAKE_EVENT_MS);
        }
        fake_send(fd, "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":"
                      "\"length\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":200,"
                      "\"total_tokens\":203}}\n\ndata: [DONE]\n\n");
    } else {
        fake_send(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
out:
    close(fd);
    return NULL;
}

static void *fake_accept(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            return NULL; /* listener closed */
        pthread_t th;
        if (pthread_create(&th, NULL, fake_conn, (void *)(intptr_t)fd) == 0)
            pthread_detach(th);
        else
            close(fd);
    }
}

static void test_failure_does_not_delay_other_streams(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    CHECK(bind(lfd, (struct sockaddr *)&a, sizeof a) == 0 && listen(lfd, 256) == 0 &&
          getsockname(lfd, (struct sockaddr *)&a, &al) == 0);
    pthread_t acc;
    CHECK(pthread_create(&acc, NULL, fake_accept, (void *)(intptr_t)lfd) == 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    struct target_config cfg;
    target_config_defaults(&cfg, TARGET_KIND_VLLM);
    cfg.url = url;
    struct launch L;
    launch_init_opts(&L, &g_s, &cfg, "fake.log", &(struct launch_opts){.no_scraper = 1});
    CHECK_MSG(launch_start(&L) == TARGET_OK, "%s", L.err);
    CHECK(L.url_mode && L.cmdline[0] == '\0' && L.scr == NULL);
    struct driver *d = L.ready ? new_driver(&L, NULL) : NULL;
    if (d) {
        struct maker m = {.max_tokens = 200, .fail_prompt = "FAIL-NOW", .fail_at = 64};
        struct driver_phase ph = {.mode = DRIVER_MODE_CLOSED, .tag = "fake", .concurrency = 65,
                                  .n_requests = 65, .make = make_cb, .on_record = record_cb,
                                  .ud = &m, .keep_records = 100};
        struct driver_result r;
        CHECK_EQ_INT(driver_run(d, &ph, &r), DRIVER_STATUS_OK);
        CHECK_EQ_INT(r.n_ok, 64);
        CHECK_EQ_INT(r.n_done, 65);
        CHECK_MSG(m.fail_error == REQ_ERROR_CONNECT || m.fail_error == REQ_ERROR_PROTOCOL,
                  "%s", req_error_str(m.fail_error));
        /* held for the grace, then classified with its own class (the server answers /health) */
        double held_ms = ns_to_ms(m.fail_classified_ns - m.fail_done_ns);
        CHECK_MSG(held_ms >= DRIVER_EXIT_GRACE_MS * 0.95, "held %.1f ms", held_ms);
        double max_gap_ms = 0;
        mono_ns t_last_event = 0;
        for (size_t i = 0; i < r.n_recs; i++) {
            const struct request_record *rec = &r.recs[i];
            if (rec->error != REQ_ERROR_NONE)
                continue;
            CHECK_EQ_INT(rec->n_content_events, FAKE_EVENTS);
            for (uint32_t k = 1; k < rec->n_content_events; k++) {
                double g = ns_to_ms(rec->t_content_ns[k] - rec->t_content_ns[k - 1]);
                max_gap_ms = g > max_gap_ms ? g : max_gap_ms;
            }
            if (rec->n_content_events && rec->t_content_ns[rec->n_content_events - 1] > t_last_event)
                t_last_event = rec->t_content_ns[rec->n_content_events - 1];
        }
        /* the failure was held while the streams ran */
        CHECK(m.fail_done_ns + (mono_ns)DRIVER_EXIT_GRACE_MS * 1000000ull < t_last_event);
        CHECK_MSG(max_gap_ms < 400, "largest gap between events %.1f ms", max_gap_ms);
        fprintf(stderr, "  largest event gap on 64 streams: %.1f ms; failure held %.1f ms\n",
                max_gap_ms, held_ms);
        driver_result_free(&r);
        driver_free(d);
    }
    launch_stop(&L);
    CHECK(!L.died);
    launch_free(&L);
    shutdown(lfd, SHUT_RDWR);
    close(lfd);
    pthread_join(acc, NULL);
}

int main(void)
{
    if (harness_session_setup("driver", "test_driver", &g_po, &g_s) != 0)
        return 1;
    TEST_RUN(test_failure_does_not_delay_other_streams);
    struct target_config cfg;
    target_config_defaults(&cfg, TARGET_KIND_EMBEDDED);
    cfg.model = g_model;
    cfg.self_exe = bin_path();
    launch_init(&g_L, &g_s, &cfg, "srv.log");
    g_ready = launch_start(&g_L) == TARGET_OK;
    if (!g_ready)
        fprintf(stderr, "embedded server did not start: %s\n%s\n", g_L.err, g_L.log_tail);
    if (g_ready) {
        TEST_RUN(test_sequential_think);
        TEST_RUN(test_closed_loop);
        TEST_RUN(test_open_loop);
        TEST_RUN(test_keep_cap_and_sink);
        TEST_RUN(test_cancel);
    }
    launch_free(&g_L);
    if (g_ready)
        TEST_RUN(test_server_killed);
    session_free(&g_s);
    if (!g_ready)
        test_n_fail++;
    return TEST_DONE();
}
