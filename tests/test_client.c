/* test_client: the streaming client against (1) a scripted loopback HTTP server written here (a
 * listening thread on 127.0.0.1:0, one thread per connection, responses chosen by the prompt) and
 * (2) the real embedded server ($SLMPROBE_BIN serve with a tiny model), plus the record helpers and
 * the JSONL writer surviving a SIGKILL mid-run, and the client ceiling file. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/chunk_scan.h"
#include "net/client.h"
#include "measure/record.h"
#include "measure/stats.h"
#include "test.h"
#include "util/json.h"

/* ------------------------------------------------------------------------------------------ */
/* Scripted test server                                                                         */

struct tsrv {
    int lfd;
    int port;
    pthread_t thr;
    atomic_int stop;
    atomic_int n_accepts;
    atomic_int n_conns_live;
    pthread_mutex_t mu;
    char last_req[65536];
    size_t last_req_len;
    int n_requests;
};

struct tconn {
    struct tsrv *s;
    int fd;
};

static void ts_sleep_ms(int ms)
{
    clock_sleep_ns((uint64_t)ms * 1000000u);
}

static int ts_send(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

static int ts_sendf(int fd, const char *s)
{
    return ts_send(fd, s, strlen(s));
}

/* One chunk of a chunked body. */
static int ts_chunk(int fd, const char *s)
{
    char head[32];
    size_t n = strlen(s);
    snprintf(head, sizeof head, "%zx\r\n", n);
    if (ts_sendf(fd, head) || ts_send(fd, s, n) || ts_sendf(fd, "\r\n"))
        return -1;
    return 0;
}

static int ts_event(int fd, const char *json)
{
    char ev[4096];
    snprintf(ev, sizeof ev, "data: %s\n\n", json);
    return ts_chunk(fd, ev);
}

static int ts_sse_headers(int fd)
{
    return ts_sendf(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
}

static int ts_json_reply(int fd, int status, const char *reason, const char *body)
{
    char head[256];
    snprintf(head, sizeof head,
             "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
             status, reason, strlen(body));
    return ts_sendf(fd, head) || ts_sendf(fd, body);
}

static int ts_text_event(int fd, const char *text, const char *finish)
{
    char ev[512];
    snprintf(ev, sizeof ev,
             "{\"id\":\"cmpl-t\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m1\","
             "\"choices\":[{\"index\":0,\"text\":\"%s\",\"logprobs\":null,\"finish_reason\":%s%s%s"
             ",\"stop_reason\":null}],\"usage\":null}",
             text, finish ? "\"" : "", finish ? finish : "null", finish ? "\"" : "");
    return ts_event(fd, ev);
}

static int ts_end(int fd)
{
    return ts_sendf(fd, "0\r\n\r\n");
}

/* Sleeps up to ms, checking for shutdown; returns 1 if the server is stopping. */
static int ts_wait(struct tsrv *s, int ms)
{
    for (int i = 0; i < ms; i += 10) {
        if (atomic_load(&s->stop))
            return 1;
        ts_sleep_ms(10);
    }
    return 0;
}

/* Runs one scripted response. Returns 0 to keep the connection, -1 to close it. */
static int ts_script(struct tsrv *s, int fd, const char *scenario)
{
    if (!strcmp(scenario, "normal") || !strcmp(scenario, "fast")) {
        int gaps = !strcmp(scenario, "normal");
        if (ts_sse_headers(fd))
            return -1;
        if (gaps)
            ts_sleep_ms(50);
        for (int i = 0; i < 5; i++) {
            char t[16];
            snprintf(t, sizeof t, "tok%d", i);
            if (i > 0 && gaps)
                ts_sleep_ms(30);
            if (ts_text_event(fd, t, NULL))
                return -1;
        }
        if (ts_text_event(fd, "", "length") ||
            ts_event(fd, "{\"id\":\"cmpl-t\",\"object\":\"text_completion\",\"created\":1,"
                         "\"model\":\"m1\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,"
                         "\"total_tokens\":12,\"completion_tokens\":5,"
                         "\"prompt_tokens_details\":{\"cached_tokens\":3}}}") ||
            ts_event(fd, "[DONE]") || ts_end(fd))
            return -1;
        return 0;
    }
    if (!strcmp(scenario, "chat")) {
        if (ts_sse_headers(fd) ||
            ts_event(fd, "{\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                         "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                         "\"finish_reason\":null}]}") ||
            ts_event(fd, "{\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                         "\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}") ||
            ts_event(fd, "{\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                         "\"delta\":{\"content\":\" \\u00e9\"},\"finish_reason\":null}]}") ||
            ts_event(fd, "{\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                         "\"delta\":{},\"finish_reason\":\"stop\"}]}") ||
            ts_event(fd, "{\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":"
                         "{\"prompt_tokens\":9,\"total_tokens\":11,\"completion_tokens\":2}}") ||
            ts_event(fd, "[DONE]") || ts_end(fd))
            return -1;
        return 0;
    }
    if (!strcmp(scenario, "err400"))
        return ts_json_reply(fd, 400, "Bad Request",
                             "{\"error\":{\"message\":\"max_tokens must be at least 1, got 0.\","
                             "\"type\":\"BadRequestError\",\"param\":\"max_tokens\",\"code\":400}}")
                   ? -1
                   : 0;
    if (!strcmp(scenario, "err500"))
        return ts_json_reply(fd, 500, "Internal Server Error",
                             "{\"object\":\"error\",\"message\":\"boom in the engine\","
                             "\"type\":\"InternalServerError\",\"param\":null,\"code\":500}")
                   ? -1
                   : 0;
    if (!strcmp(scenario, "err503"))
        return ts_json_reply(fd, 503, "Service Unavailable",
                             "{\"error\":{\"code\":503,\"message\":\"Loading model\","
                             "\"type\":\"unavailable_error\"}}")
                   ? -1
                   : 0;
    if (!strcmp(scenario, "close_mid")) {
        ts_sse_headers(fd);
        ts_text_event(fd, "a", NULL);
        ts_text_event(fd, "b", NULL);
        ts_sleep_ms(20);
        return -1;
    }
    if (!strcmp(scenario, "malformed")) {
        if (ts_sse_headers(fd) || ts_text_event(fd, "ok", NULL) ||
            ts_chunk(fd, "data: {not json\n\n") || ts_event(fd, "[DONE]") || ts_end(fd))
            return -1;
        return 0;
    }
    if (!strcmp(scenario, "midstream_error")) {
        if (ts_sse_headers(fd) || ts_text_event(fd, "x", NULL) ||
            ts_event(fd, "{\"error\":{\"object\":\"error\",\"message\":\"engine died\","
                         "\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}") ||
            ts_event(fd, "[DONE]") || ts_end(fd))
            return -1;
        return 0;
    }
    if (!strcmp(scenario, "llama_old_error")) {
        if (ts_sse_headers(fd) || ts_text_event(fd, "x", NULL) ||
            ts_chunk(fd, "error: {\"code\":500,\"message\":\"slot failed\","
                         "\"type\":\"server_error\"}\n\n") ||
            ts_end(fd))
            return -1;
        return 0;
    }
    if (!strcmp(scenario, "llama_timings") || !strcmp(scenario, "llama_old_timings")) {
        int old = !strcmp(scenario, "llama_old_timings");
        char last[1024];
        snprintf(last, sizeof last,
                 "{\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":"
                 "\"length\"}],\"object\":\"text_completion\",\"usage\":{\"completion_tokens\":2,"
                 "\"prompt_tokens\":20,\"total_tokens\":22},\"timings\":{%s\"prompt_n\":4,"
                 "\"prompt_ms\":3.1,\"predicted_n\":2,\"predicted_ms\":20.5}}",
                 old ? "" : "\"cache_n\":15,");
        if (ts_sse_headers(fd) || ts_text_event(fd, " the", NULL) ||
            ts_text_event(fd, " cat", NULL) || ts_event(fd, last) || ts_event(fd, "[DONE]") ||
            ts_end(fd))
            return -1;
        return 0;
    }
    if (!strcmp(scenario, "no_done")) {
        if (ts_sse_headers(fd) || ts_text_event(fd, "x", NULL) || ts_end(fd))
            return -1;
        return 0;
    }
    if (!strcmp(scenario, "crlf")) {
        if (ts_sse_headers(fd) ||
            ts_chunk(fd, "data: {\"choices\":[{\"index\":0,\"text\":\"a\"}]}\r\n\r\n") ||
            ts_chunk(fd, "data: {\"choices\":[{\"index\":0,\"text\":\"b\",\"finish_reason\":"
                         "\"stop\"}]}\r") ||
            ts_chunk(fd, "\n\r\ndata: [DONE]\r\n\r\n") || ts_end(fd))
            return -1;
        return 0;
    }
    if (!strcmp(scenario, "many_tokens")) {
        if (ts_sse_headers(fd))
            return -1;
        for (int i = 0; i < 200; i++)
            if (ts_text_event(fd, "z", NULL))
                return -1;
        if (ts_text_event(fd, "", "length") || ts_event(fd, "[DONE]") || ts_end(fd))
            return -1;
        return 0;
    }
    if (!strcmp(scenario, "slow")) {
        /* Headers, then silence: the client's timeout must fire. */
        ts_sse_headers(fd);
        ts_text_event(fd, "first", NULL);
        ts_wait(s, 3000);
        return -1;
    }
    if (!strcmp(scenario, "slow_headers")) {
        ts_wait(s, 3000);
        return -1;
    }
    return ts_json_reply(fd, 404, "Not Found", "{\"error\":\"unknown scenario\"}") ? -1 : 0;
}

/* Reads one request (headers + Content-Length body) into req; returns its length, 0 on EOF. */
static size_t ts_read_request(struct tsrv *s, int fd, char *req, size_t cap, size_t *body_off)
{
    size_t len = 0;
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, 100);
        if (atomic_load(&s->stop))
            return 0;
        if (pr <= 0)
            continue;
        ssize_t n = recv(fd, req + len, cap - 1 - len, 0);
        if (n <= 0)
            return 0;
        len += (size_t)n;
        req[len] = 0;
        char *end = strstr(req, "\r\n\r\n");
        if (!end) {
            if (len >= cap - 1)
                return 0;
            continue;
        }
        size_t hdr_len = (size_t)(end - req) + 4;
        size_t clen = 0;
        const char *cl = strcasestr(req, "\r\nContent-Length:");
        if (cl && cl < end)
            clen = strtoul(cl + 17, NULL, 10);
        if (hdr_len + clen > cap - 1)
            return 0;
        if (len >= hdr_len + clen) {
            *body_off = hdr_len;
            return hdr_len + clen;
        }
    }
}

static void *ts_conn_main(void *arg)
{
    struct tconn *tc = arg;
    struct tsrv *s = tc->s;
    int fd = tc->fd;
    free(tc);
    char *req = xmalloc(65536);
    for (;;) {
        size_t body_off = 0;
        size_t n = ts_read_request(s, fd, req, 65536, &body_off);
        if (n == 0)
            break;
        pthread_mutex_lock(&s->mu);
        memcpy(s->last_req, req, n);
        s->last_req[n] = 0;
        s->last_req_len = n;
        s->n_requests++;
        pthread_mutex_unlock(&s->mu);
        int keep;
        if (!strncmp(req, "GET /v1/models ", 15)) {
            keep = ts_json_reply(fd, 200, "OK",
                                 "{\"object\":\"list\",\"data\":[{\"id\":\"discovered-model\","
                                 "\"object\":\"model\",\"max_model_len\":2048}]}")
                       ? -1
                       : 0;
        } else {
            char jerr[64];
            struct json *root = json_parse(req + body_off, n - body_off, jerr, sizeof jerr);
            const char *scen = json_str(json_get(root, "prompt"), NULL);
            if (!scen)
                scen = json_str(json_get(json_at(json_get(root, "messages"), 0), "content"), NULL);
            keep = ts_script(s, fd, scen ? scen : "");
            json_free(root);
        }
        if (keep != 0)
            break;
    }
    free(req);
    close(fd);
    atomic_fetch_sub(&s->n_conns_live, 1);
    return NULL;
}

static void *ts_accept_main(void *arg)
{
    struct tsrv *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd pfd = {s->lfd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        atomic_fetch_add(&s->n_accepts, 1);
        atomic_fetch_add(&s->n_conns_live, 1);
        struct tconn *tc = xmalloc(sizeof *tc);
        tc->s = s;
        tc->fd = fd;
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, ts_conn_main, tc) != 0) {
            close(fd);
            free(tc);
            atomic_fetch_sub(&s->n_conns_live, 1);
        }
        pthread_attr_destroy(&a);
    }
    return NULL;
}

static int ts_listen(int *port_out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1024) != 0) {
        close(fd);
        return -1;
    }
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    *port_out = ntohs(a.sin_port);
    return fd;
}

static struct tsrv *ts_start(void)
{
    struct tsrv *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = ts_listen(&s->port);
    if (s->lfd < 0) {
        free(s);
        return NULL;
    }
    pthread_create(&s->thr, NULL, ts_accept_main, s);
    return s;
}

static void ts_stop(struct tsrv *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    pthread_join(s->thr, NULL);
    for (int i = 0; i < 500 && atomic_load(&s->n_conns_live) > 0; i++)
        ts_sleep_ms(10);
    close(s->lfd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* A free port with nothing listening on it (bound, then closed). */
static int closed_port(void)
{
    int port = 0;
    int fd = ts_listen(&port);
    close(fd);
    return port;
}

/* ------------------------------------------------------------------------------------------ */
/* Client helpers                                                                               */

struct got {
    struct request_record recs[256];
    int n;
};

static void on_done(void *ud, struct request_record *rec)
{
    struct got *g = ud;
    if (g->n < (int)(sizeof g->recs / sizeof g->recs[0]))
        g->recs[g->n++] = *rec; /* keep a copy: the contents are ours now */
    else
        record_free(rec);
}

static void got_free(struct got *g)
{
    for (int i = 0; i < g->n; i++)
        record_free(&g->recs[i]);
    g->n = 0;
}

static void wait_all(struct client *c, int max_ms)
{
    mono_ns end = clock_now_ns() + (uint64_t)max_ms * 1000000u;
    while (client_in_flight(c) > 0 && clock_now_ns() < end)
        client_poll(c, 100);
}

static struct client *mk_client(int port, const char *key, const char *model, enum client_api api,
                                long timeout_ms, int max_conn, struct got *g)
{
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    struct client_config cfg = {.base_url = url,
                                .api_key = key,
                                .model = model,
                                .api = api,
                                .timeout_ms = timeout_ms,
                                .max_connections = max_conn};
    struct client *c = client_new(&cfg, on_done, g, err, sizeof err);
    CHECK_MSG(c != NULL, "client_new: %s", err);
    return c;
}

/* Runs one request for a scenario and returns its record in *out (caller record_free()s). */
static void run_one(struct client *c, struct got *g, const char *scenario, int max_tokens,
                    struct request_record *out)
{
    int before = g->n;
    struct client_request q = {.id = 42,
                               .tag = "t",
                               .level = 3,
                               .prompt = scenario,
                               .prompt_len = strlen(scenario),
                               .max_tokens = max_tokens};
    CHECK_EQ_INT(client_submit(c, &q), 0);
    wait_all(c, 10000);
    CHECK_EQ_INT(g->n, before + 1);
    if (g->n == before + 1) {
        *out = g->recs[--g->n];
    } else {
        record_init(out);
    }
}

static void check_ordered(const struct request_record *r)
{
    CHECK(r->t_sent_ns > 0);
    CHECK(r->t_intended_ns <= r->t_sent_ns);
    CHECK(r->t_headers_ns >= r->t_sent_ns);
    CHECK(r->t_first_event_ns >= r->t_headers_ns);
    CHECK(r->t_first_token_ns >= r->t_first_event_ns);
    CHECK(r->t_done_ns >= r->t_first_token_ns);
    for (uint32_t i = 1; i < r->n_content_events; i++)
        CHECK(r->t_content_ns[i] >= r->t_content_ns[i - 1]);
    if (r->n_content_events > 0) {
        CHECK(r->t_content_ns[0] == r->t_first_token_ns);
        CHECK(r->t_content_ns[r->n_content_events - 1] <= r->t_done_ns);
    }
    CHECK(record_ttft_ns(r) >= 0 && record_ttft_ns(r) <= record_e2e_ns(r));
}

/* ------------------------------------------------------------------------------------------ */
/* Tests against the scripted server                                                            */

static struct tsrv *srv;

static void test_request_bytes(void)
{
    struct got g = {0};
    struct client *c = mk_client(srv->port, "sekrit", "m1", CLIENT_API_COMPLETIONS, 5000, 0, &g);
    if (!c)
        return;
    struct client_request q = {.id = 1,
                               .tag = "bytes",
                               .prompt = "fast",
                               .prompt_len = 4,
                               .max_tokens = 5,
                               .ignore_eos = 1,
                               .min_tokens = 3,
                               .temperature = 0,
                               .extra_json = "\"cache_prompt\":false"};
    CHECK_EQ_INT(client_submit(c, &q), 0);
    wait_all(c, 5000);
    CHECK_EQ_INT(g.n, 1);
    pthread_mutex_lock(&srv->mu);
    char *req = xstrndup(srv->last_req, srv->last_req_len);
    pthread_mutex_unlock(&srv->mu);
    CHECK_MSG(!strncmp(req, "POST /v1/completions HTTP/1.1\r\n", 31), "%s", req);
    CHECK(strstr(req, "\r\nAuthorization: Bearer sekrit\r\n"));
    CHECK(strstr(req, "\r\nContent-Type: application/json\r\n"));
    CHECK(strstr(req, "\r\nAccept: text/event-stream\r\n"));
    CHECK(strstr(req, "\r\nHost: 127.0.0.1:"));
    CHECK(!strcasestr(req, "\r\nExpect:"));
    const char *body = strstr(req, "\r\n\r\n");
    CHECK(body);
    if (body) {
        body += 4;
        CHECK_EQ_STR(body,
                     "{\"model\":\"m1\",\"prompt\":\"fast\",\"max_tokens\":5,\"temperature\":0,"
                     "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                     "\"ignore_eos\":true,\"min_tokens\":3,\"cache_prompt\":false}");
        const char *cl = strcasestr(req, "\r\nContent-Length: ");
        CHECK(cl && strtoul(cl + 18, NULL, 10) == strlen(body));
    }
    free(req);
    /* Chat: messages instead of prompt, no min_tokens when 0, no Authorization without a key. */
    got_free(&g);
    client_free(c);
    c = mk_client(srv->port, NULL, "m1", CLIENT_API_CHAT, 5000, 0, &g);
    if (!c)
        return;
    struct client_request q2 = {
        .prompt = "chat\"q", .prompt_len = 4, .max_tokens = 2, .temperature = 0.5};
    CHECK_EQ_INT(client_submit(c, &q2), 0);
    wait_all(c, 5000);
    pthread_mutex_lock(&srv->mu);
    req = xstrndup(srv->last_req, srv->last_req_len);
    pthread_mutex_unlock(&srv->mu);
    CHECK_MSG(!strncmp(req, "POST /v1/chat/completions HTTP/1.1\r\n", 36), "%s", req);
    CHECK(!strstr(req, "Authorization"));
    body = strstr(req, "\r\n\r\n");
    if (body)
        CHECK_EQ_STR(body + 4,
                     "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"chat\"}],"
                     "\"max_tokens\":2,\"temperature\":0.5,\"stream\":true,\"stream_options\":"
                     "{\"include_usage\":true},\"ignore_eos\":false}");
    free(req);
    CHECK_EQ_INT(g.n, 1);
    if (g.n == 1) {
        struct request_record *r = &g.recs[0];
        CHECK_EQ_INT(r->error, REQ_ERROR_NONE);
        CHECK_EQ_INT(r->n_content_events, 2); /* role-only delta is not content */
        CHECK_EQ_INT(r->n_text_bytes, 2 + 3); /* "Hi" + " é" (é is 2 bytes) */
        CHECK_EQ_STR(r->finish_reason, "stop");
        CHECK_EQ_INT(r->n_completion_tokens, 2);
        CHECK_EQ_INT(r->n_prompt_tokens, 9);
        CHECK_EQ_INT(r->n_cached_tokens, -1);
        CHECK_EQ_INT(r->n_prompt_chars, 4);
        CHECK_EQ_INT(r->n_events, 5); /* 4 chunks + usage; [DONE] is not counted */
        check_ordered(r);
    }
    got_free(&g);
    client_free(c);
    /* Bad requests are refused without delivering anything. */
    c = mk_client(srv->port, NULL, "m1", CLIENT_API_COMPLETIONS, 5000, 0, &g);
    struct client_request bad = {.prompt = NULL, .max_tokens = 4};
    CHECK_EQ_INT(client_submit(c, &bad), -1);
    bad.prompt = "x";
    bad.prompt_len = 1;
    bad.max_tokens = 0;
    CHECK_EQ_INT(client_submit(c, &bad), -1);
    CHECK_EQ_INT(client_in_flight(c), 0);
    CHECK_EQ_INT(g.n, 0);
    client_free(c);
}

static void test_normal_stream_gaps(void)
{
    struct got g = {0};
    struct client *c = mk_client(srv->port, NULL, "m1", CLIENT_API_COMPLETIONS, 5000, 0, &g);
    if (!c)
        return;
    struct request_record r;
    run_one(c, &g, "normal", 5, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_NONE);
    CHECK_EQ_INT(r.http_status, 200);
    CHECK_EQ_INT(r.id, 42);
    CHECK_EQ_STR(r.tag, "t");
    CHECK_EQ_INT(r.level, 3);
    CHECK_EQ_INT(r.n_content_events, 5);
    CHECK_EQ_INT(r.n_events, 7);
    CHECK_EQ_INT(r.n_text_bytes, 20);
    CHECK_EQ_INT(r.n_prompt_tokens, 7);
    CHECK_EQ_INT(r.n_completion_tokens, 5);
    CHECK_EQ_INT(r.n_cached_tokens, 3);
    CHECK_EQ_STR(r.finish_reason, "length");
    check_ordered(&r);
    /* The server waits 50 ms before the first token and 30 ms between tokens. */
    CHECK_MSG(record_ttft_ns(&r) >= 50000000, "ttft %lld", (long long)record_ttft_ns(&r));
    double itl[8];
    size_t n_itl = record_itl_ms(&r, itl, 8);
    CHECK_EQ_INT(n_itl, 4);
    double sum = 0;
    for (size_t i = 0; i < n_itl; i++)
        sum += itl[i];
    /* The server sleeps 4 x 30 ms between the first and last token; a late first read on a busy
     * machine shortens the measured span, so allow 20 ms of delivery jitter. */
    CHECK_MSG(sum >= 100.0 && sum < 600.0, "itl sum %.3f ms", sum);
    struct summary s;
    summary_of(itl, n_itl, &s);
    CHECK_MSG(s.p50 >= 15.0 && s.p50 < 150.0, "itl p50 %.3f", s.p50);
    double tpot = record_tpot_ms(&r);
    CHECK_MSG(tpot >= 25.0 && tpot < 200.0, "tpot %.3f", tpot);
    /* t_headers: before the first event by about the 50 ms pause. */
    CHECK(r.t_first_event_ns - r.t_headers_ns >= 30000000); /* 50 ms pause, 20 ms jitter allowed */
    record_free(&r);
    client_free(c);
}

static void test_error_classes(void)
{
    struct got g = {0};
    struct client *c = mk_client(srv->port, NULL, "m1", CLIENT_API_COMPLETIONS, 400, 0, &g);
    if (!c)
        return;
    struct request_record r;

    run_one(c, &g, "err400", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_HTTP_4XX);
    CHECK_EQ_INT(r.http_status, 400);
    CHECK_EQ_STR(r.error_msg, "max_tokens must be at least 1, got 0.");
    CHECK(r.t_headers_ns > 0 && r.t_first_token_ns == 0 && r.t_content_ns == NULL);
    CHECK_EQ_INT(record_ttft_ns(&r), -1);
    CHECK(record_e2e_ns(&r) > 0);
    record_free(&r);

    run_one(c, &g, "err500", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_HTTP_5XX);
    CHECK_EQ_INT(r.http_status, 500);
    CHECK_EQ_STR(r.error_msg, "boom in the engine");
    record_free(&r);

    run_one(c, &g, "err503", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_HTTP_5XX);
    CHECK_EQ_STR(r.error_msg, "Loading model");
    record_free(&r);

    run_one(c, &g, "close_mid", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_PROTOCOL);
    CHECK_EQ_INT(r.n_content_events, 2);
    CHECK_MSG(strstr(r.error_msg, "mid-stream") != NULL, "%s", r.error_msg);
    record_free(&r);

    run_one(c, &g, "malformed", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_PROTOCOL);
    CHECK_MSG(strstr(r.error_msg, "malformed SSE data") != NULL, "%s", r.error_msg);
    CHECK_EQ_INT(r.n_content_events, 1);
    record_free(&r);

    run_one(c, &g, "midstream_error", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_PROTOCOL);
    CHECK_EQ_STR(r.error_msg, "stream error: engine died");
    CHECK_EQ_INT(r.http_status, 200);
    record_free(&r);

    run_one(c, &g, "llama_old_error", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_PROTOCOL);
    CHECK_EQ_STR(r.error_msg, "stream error: slot failed");
    record_free(&r);

    run_one(c, &g, "no_done", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_PROTOCOL);
    CHECK_MSG(strstr(r.error_msg, "without [DONE]") != NULL, "%s", r.error_msg);
    record_free(&r);

    mono_ns t0 = clock_now_ns();
    run_one(c, &g, "slow", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_TIMEOUT);
    CHECK_EQ_INT(r.n_content_events, 1);
    int64_t e2e = record_e2e_ns(&r);
    CHECK_MSG(e2e >= 380000000 && e2e < 2500000000, "e2e %lld", (long long)e2e);
    CHECK(clock_now_ns() - t0 < 2500000000u);
    record_free(&r);

    run_one(c, &g, "slow_headers", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_TIMEOUT);
    CHECK_EQ_INT(r.http_status, 0);
    CHECK_EQ_INT(r.t_headers_ns, 0);
    record_free(&r);
    client_free(c);

    /* Connection refused. */
    c = mk_client(closed_port(), NULL, "m1", CLIENT_API_COMPLETIONS, 2000, 0, &g);
    run_one(c, &g, "fast", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_CONNECT);
    CHECK_EQ_INT(r.http_status, 0);
    CHECK(r.error_msg[0] != 0);
    record_free(&r);
    client_free(c);
}

static void test_llama_shapes_and_cap(void)
{
    struct got g = {0};
    struct client *c = mk_client(srv->port, NULL, "m1", CLIENT_API_COMPLETIONS, 5000, 0, &g);
    if (!c)
        return;
    struct request_record r;
    run_one(c, &g, "llama_timings", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_NONE);
    CHECK_EQ_INT(r.n_cached_tokens, 15);
    CHECK_EQ_INT(r.n_prompt_tokens, 20);
    CHECK_EQ_INT(r.n_completion_tokens, 2);
    CHECK_EQ_INT(r.n_content_events, 2);
    record_free(&r);
    run_one(c, &g, "llama_old_timings", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_NONE);
    CHECK_EQ_INT(r.n_cached_tokens, 16); /* prompt_tokens 20 - prompt_n 4 */
    record_free(&r);
    run_one(c, &g, "crlf", 4, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_NONE);
    CHECK_EQ_INT(r.n_content_events, 2);
    CHECK_EQ_STR(r.finish_reason, "stop");
    record_free(&r);
    /* 200 content events with max_tokens 10: timestamps capped at 10*2+64, the rest counted. */
    run_one(c, &g, "many_tokens", 10, &r);
    CHECK_EQ_INT(r.error, REQ_ERROR_NONE);
    CHECK_EQ_INT(r.n_content_events, 84);
    CHECK_EQ_INT(r.n_content_dropped, 116);
    CHECK_EQ_INT(r.n_text_bytes, 200);
    record_free(&r);
    client_free(c);
}

static void test_keepalive_and_model_discovery(void)
{
    struct got g = {0};
    int acc0 = atomic_load(&srv->n_accepts);
    /* model NULL: one GET /v1/models (its own connection), then the streams reuse one. */
    struct client *c = mk_client(srv->port, NULL, NULL, CLIENT_API_COMPLETIONS, 5000, 1, &g);
    if (!c)
        return;
    CHECK_EQ_STR(client_model(c), "discovered-model");
    int acc1 = atomic_load(&srv->n_accepts);
    CHECK_EQ_INT(acc1 - acc0, 1);
    for (int i = 0; i < 20; i++) {
        struct client_request q = {
            .id = (uint64_t)i, .prompt = "fast", .prompt_len = 4, .max_tokens = 5};
        CHECK_EQ_INT(client_submit(c, &q), 0);
    }
    wait_all(c, 20000);
    CHECK_EQ_INT(g.n, 20);
    int n_ok = 0;
    for (int i = 0; i < g.n; i++)
        n_ok += g.recs[i].error == REQ_ERROR_NONE && g.recs[i].n_completion_tokens == 5 &&
                g.recs[i].n_retries == 0; /* a server that keeps its connections: no retry */
    CHECK_EQ_INT(n_ok, 20);
    CHECK_EQ_INT(atomic_load(&srv->n_accepts) - acc1, 1);
    CHECK_EQ_INT(client_n_connects(c), 1);
    got_free(&g);
    client_free(c);

    /* Concurrency 16 without a limit: 16 connections, then reused for 16 more. */
    c = mk_client(srv->port, NULL, "m1", CLIENT_API_COMPLETIONS, 5000, 0, &g);
    int acc2 = atomic_load(&srv->n_accepts);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 16; i++) {
            struct client_request q = {.prompt = "fast", .prompt_len = 4, .max_tokens = 5};
            CHECK_EQ_INT(client_submit(c, &q), 0);
        }
        wait_all(c, 20000);
    }
    CHECK_EQ_INT(g.n, 32);
    CHECK_MSG(atomic_load(&srv->n_accepts) - acc2 <= 16, "%d accepts",
              atomic_load(&srv->n_accepts) - acc2);
    CHECK(client_n_connects(c) <= 16);
    got_free(&g);
    client_free(c);

    /* Discovery failure is an error of client_new. */
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    struct client_config cfg = {.base_url = url};
    CHECK(client_new(&cfg, on_done, &g, err, sizeof err) == NULL);
    CHECK(strstr(err, "/v1/models") != NULL);
}

static void test_abort(void)
{
    struct got g = {0};
    struct client *c = mk_client(srv->port, NULL, "m1", CLIENT_API_COMPLETIONS, 0, 0, &g);
    if (!c)
        return;
    struct client_request q = {.prompt = "slow", .prompt_len = 4, .max_tokens = 5};
    CHECK_EQ_INT(client_submit(c, &q), 0);
    CHECK_EQ_INT(client_submit(c, &q), 0);
    /* Let both streams start (headers and a first event arrive), then abort them. */
    mono_ns end = clock_now_ns() + 300000000u;
    while (clock_now_ns() < end)
        client_poll(c, 50);
    CHECK_EQ_INT(client_in_flight(c), 2);
    client_abort_all(c);
    CHECK_EQ_INT(client_in_flight(c), 0);
    CHECK_EQ_INT(g.n, 2);
    for (int i = 0; i < g.n; i++) {
        CHECK_EQ_INT(g.recs[i].error, REQ_ERROR_ABORTED);
        CHECK(g.recs[i].t_done_ns > 0);
    }
    got_free(&g);
    /* client_free delivers in-flight requests as aborted too. */
    CHECK_EQ_INT(client_submit(c, &q), 0);
    client_poll(c, 100);
    client_free(c);
    CHECK_EQ_INT(g.n, 1);
    if (g.n == 1)
        CHECK_EQ_INT(g.recs[0].error, REQ_ERROR_ABORTED);
    got_free(&g);
}

static void test_blocking_helpers(void)
{
    char url[96], err[256];
    struct buf b;
    buf_init(&b, 256, 1 << 16);
    int status = 0;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/models", srv->port);
    CHECK_EQ_INT(http_get(url, "k", 2000, &b, &status, err, sizeof err), 0);
    CHECK_EQ_INT(status, 200);
    CHECK(strstr(b.data, "discovered-model") != NULL);
    pthread_mutex_lock(&srv->mu);
    CHECK(strstr(srv->last_req, "\r\nAuthorization: Bearer k\r\n") != NULL);
    pthread_mutex_unlock(&srv->mu);
    buf_reset(&b);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/completions", srv->port);
    CHECK_EQ_INT(
        http_post_json(url, NULL, "{\"prompt\":\"err400\"}", 2000, &b, &status, err, sizeof err),
        0);
    CHECK_EQ_INT(status, 400);
    char msg[128];
    client_error_message(b.data, b.len, msg, sizeof msg);
    CHECK_EQ_STR(msg, "max_tokens must be at least 1, got 0.");
    /* A capped buffer keeps what fits. */
    struct buf small;
    buf_init(&small, 16, 10);
    CHECK_EQ_INT(http_post_json(url, NULL, "{\"prompt\":\"err400\"}", 2000, &small, &status, err,
                                sizeof err),
                 0);
    CHECK_EQ_INT(small.len, 10); /* what fits under the cap */
    CHECK(!strncmp(small.data, "{\"error\":{", 10));
    buf_free(&small);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", closed_port());
    CHECK_EQ_INT(http_get(url, NULL, 2000, &b, &status, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "refused") != NULL, "%s", err);
    CHECK_EQ_INT(status, 0);
    buf_free(&b);
}

static void test_error_message_shapes(void)
{
    char m[64];
    const char *a = "{\"error\":{\"message\":\"new shape\",\"type\":\"BadRequestError\"}}";
    client_error_message(a, strlen(a), m, sizeof m);
    CHECK_EQ_STR(m, "new shape");
    const char *b = "{\"object\":\"error\",\"message\":\"old shape\",\"code\":400}";
    client_error_message(b, strlen(b), m, sizeof m);
    CHECK_EQ_STR(m, "old shape");
    const char *c = "{\"error\":{\"code\":501,\"message\":\"llama\",\"type\":\"x\"}}";
    client_error_message(c, strlen(c), m, sizeof m);
    CHECK_EQ_STR(m, "llama");
    const char *d = "{\"error\":\"plain\"}";
    client_error_message(d, strlen(d), m, sizeof m);
    CHECK_EQ_STR(m, "plain");
    const char *e = "<html>\nBad Gateway</html>";
    client_error_message(e, strlen(e), m, sizeof m);
    CHECK_EQ_STR(m, "<html> Bad Gateway</html>");
    client_error_message(NULL, 0, m, sizeof m);
    CHECK_EQ_STR(m, "");
    char tiny[4];
    client_error_message(a, strlen(a), tiny, sizeof tiny);
    CHECK_EQ_STR(tiny, "new");
}

/* ------------------------------------------------------------------------------------------ */
/* Records, writer, ceiling                                                                     */

static void fill_record(struct request_record *r, uint64_t id)
{
    record_init(r);
    r->id = id;
    snprintf(r->tag, sizeof r->tag, "warm_%llu", (unsigned long long)id);
    r->t_intended_ns = 1000000000;
    r->t_sent_ns = 1001000000;
    r->t_headers_ns = 1002000000;
    r->t_first_event_ns = 1010000000;
    r->t_first_token_ns = 1011000000;
    r->t_done_ns = 1041000000;
    r->n_content_events = 4;
    r->t_content_ns = xmalloc(4 * sizeof(mono_ns));
    for (int i = 0; i < 4; i++)
        r->t_content_ns[i] = 1011000000 + (mono_ns)i * 10000000;
    r->http_status = 200;
    r->n_prompt_tokens = 12;
    r->n_completion_tokens = 4;
    snprintf(r->finish_reason, sizeof r->finish_reason, "length");
    r->n_text_bytes = 9;
    r->n_prompt_chars = 40;
}

static void test_record_metrics_json(void)
{
    struct request_record r;
    fill_record(&r, 7);
    CHECK_EQ_INT(record_ttft_ns(&r), 10000000);
    CHECK_EQ_INT(record_e2e_ns(&r), 40000000);
    CHECK_EQ_INT(record_ttft_intended_ns(&r), 11000000);
    CHECK_EQ_INT(record_e2e_intended_ns(&r), 41000000);
    CHECK_NEAR(record_tpot_ms(&r), 10.0, 1e-9); /* (40 - 10) / (4 - 1) */
    double itl[3];
    CHECK_EQ_INT(record_itl_ms(&r, itl, 3), 3);
    CHECK_NEAR(itl[0], 10.0, 1e-9);
    CHECK_NEAR(itl[2], 10.0, 1e-9);
    CHECK_EQ_INT(record_itl_ms(&r, NULL, 0), 3);
    struct buf b;
    buf_init(&b, 256, 1 << 16);
    CHECK_EQ_INT(record_to_json(&r, &b), BUF_OK);
    char err[64];
    struct json *root = json_parse(b.data, b.len, err, sizeof err);
    CHECK_MSG(root != NULL, "%s: %s", err, b.data);
    double v;
    long long n;
    CHECK(json_num(json_get(root, "ttft_ms"), &v) == 0 && fabs(v - 10.0) < 1e-9);
    CHECK(json_num(json_get(root, "e2e_ms"), &v) == 0 && fabs(v - 40.0) < 1e-9);
    CHECK(json_num(json_get(root, "tpot_ms"), &v) == 0 && fabs(v - 10.0) < 1e-9);
    CHECK(json_int(json_get(root, "t_sent_ns"), &n) == 0 && n == 1001000000);
    CHECK_EQ_INT(json_len(json_get(root, "itl_ms")), 3);
    CHECK_EQ_STR(json_str(json_get(root, "error"), NULL), "none");
    CHECK_EQ_STR(json_str(json_get(root, "tag"), NULL), "warm_7");
    CHECK_EQ_INT(json_type_of(json_get(root, "n_cached_tokens")), JSON_TYPE_NULL);
    CHECK(json_int(json_get(root, "retried"), &n) == 0 && n == 0);
    json_free(root);
    /* "retried": the record's n_retries (re-sends after a dead kept-alive connection). */
    r.n_retries = 2;
    buf_reset(&b);
    CHECK_EQ_INT(record_to_json(&r, &b), BUF_OK);
    root = json_parse(b.data, b.len, err, sizeof err);
    CHECK(root && json_int(json_get(root, "retried"), &n) == 0 && n == 2);
    json_free(root);
    r.n_retries = 0;
    /* Undefined metrics: no token, one token, not done. */
    struct request_record e;
    record_init(&e);
    e.t_sent_ns = 5;
    CHECK_EQ_INT(record_ttft_ns(&e), -1);
    CHECK_EQ_INT(record_e2e_ns(&e), -1);
    CHECK(isnan(record_tpot_ms(&e)));
    CHECK_EQ_INT(record_itl_ms(&e, itl, 3), 0);
    e.error = REQ_ERROR_TIMEOUT;
    buf_reset(&b);
    CHECK_EQ_INT(record_to_json(&e, &b), BUF_OK);
    root = json_parse(b.data, b.len, err, sizeof err);
    CHECK(root && json_type_of(json_get(root, "ttft_ms")) == JSON_TYPE_NULL);
    CHECK(root && json_type_of(json_get(root, "tpot_ms")) == JSON_TYPE_NULL);
    CHECK_EQ_STR(json_str(json_get(root, "error"), NULL), "timeout");
    json_free(root);
    buf_free(&b);
    record_free(&r);
    record_free(&r); /* idempotent */
    record_free(NULL);
    CHECK_EQ_STR(req_error_str(REQ_ERROR_HTTP_4XX), "http_4xx");
    CHECK_EQ_STR(req_error_str(REQ_ERROR_SERVER_EXIT), "server_exit");
    CHECK_EQ_STR(req_error_str(REQ_ERROR__COUNT), "unknown");
}

static void test_writer_survives_kill(void)
{
    char path[] = "/tmp/test_client_XXXXXX";
    int tfd = mkstemp(path);
    CHECK(tfd >= 0);
    close(tfd);
    pid_t pid = fork();
    if (pid == 0) {
        char err[128];
        struct record_writer *w = record_writer_open(path, err, sizeof err);
        if (!w)
            _exit(3);
        for (uint64_t i = 0;; i++) {
            struct request_record r;
            fill_record(&r, i);
            record_writer_append(w, &r);
            record_free(&r);
        }
    }
    CHECK(pid > 0);
    /* Let it write a good number of lines, then kill it mid-run. */
    struct stat st;
    mono_ns end = clock_now_ns() + 10000000000u;
    while (clock_now_ns() < end && (stat(path, &st) != 0 || st.st_size < 2000000))
        ts_sleep_ms(5);
    kill(pid, SIGKILL);
    int wst = 0;
    waitpid(pid, &wst, 0);
    CHECK(WIFSIGNALED(wst));
    size_t len = 0;
    char *text = file_read_all(path, 256u << 20, &len);
    CHECK(text != NULL && len > 0);
    size_t n_lines = 0, n_bad = 0, n_cut = 0;
    const char *p = text;
    while (text && p < text + len) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) {
            n_cut++; /* SIGKILL inside the last write(2): only the final line may be cut */
            break;
        }
        char err[64];
        struct json *root = json_parse(p, (size_t)(nl - p), err, sizeof err);
        long long id;
        if (!root || json_int(json_get(root, "id"), &id) != 0 || id != (long long)n_lines)
            n_bad++;
        json_free(root);
        n_lines++;
        p = nl + 1;
    }
    fprintf(stderr, "  %zu complete lines after SIGKILL, %zu cut short\n", n_lines, n_cut);
    CHECK(n_lines > 100);
    CHECK_EQ_INT(n_bad, 0);
    free(text);
    /* Reopening after a crash that cut a line: the fragment is ended, the next record is whole. */
    char err0[128];
    int afd = open(path, O_WRONLY | O_APPEND);
    CHECK(afd >= 0 && write(afd, "{\"id\":12", 8) == 8);
    close(afd);
    struct record_writer *w = record_writer_open(path, err0, sizeof err0);
    CHECK(w != NULL);
    struct request_record r;
    fill_record(&r, 99);
    CHECK_EQ_INT(record_writer_append(w, &r), 0);
    record_free(&r);
    record_writer_close(w);
    text = file_read_all(path, 256u << 20, &len);
    CHECK(text && len > 0 && text[len - 1] == '\n');
    if (text && len > 1) {
        const char *last = memrchr(text, '\n', len - 1);
        last = last ? last + 1 : text;
        char jerr[64];
        struct json *root = json_parse(last, (size_t)(text + len - 1 - last), jerr, sizeof jerr);
        long long id = -1;
        CHECK(root && json_int(json_get(root, "id"), &id) == 0 && id == 99);
        json_free(root);
        CHECK(last - 9 >= text && memcmp(last - 9, "{\"id\":12\n", 9) == 0);
    }
    free(text);
    unlink(path);
    char err[128];
    CHECK(record_writer_open("/nonexistent-dir/x.jsonl", err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent-dir/x.jsonl") != NULL);
    record_writer_close(NULL);
}

static void test_ceiling(void)
{
    struct client_ceiling cc;
    client_ceiling_load("/nonexistent/client.json", &cc);
    CHECK_EQ_INT(cc.valid, 0);
    char msg[256];
    CHECK_EQ_INT(client_ceiling_warn(&cc, 1e9, 1e9, msg, sizeof msg), 0);
    char path[] = "/tmp/test_ceiling_XXXXXX";
    int fd = mkstemp(path);
    const char *j = "{\"req_per_s\":20000,\"events_per_s_c1\":300000,\"events_per_s_c64\":600000,"
                    "\"events_per_s_c1024\":500000,\"ts_err_p50_us\":5,\"ts_err_p99_us\":40}";
    CHECK(write(fd, j, strlen(j)) == (ssize_t)strlen(j));
    close(fd);
    client_ceiling_load(path, &cc);
    unlink(path);
    CHECK_EQ_INT(cc.valid, 1);
    CHECK_NEAR(cc.events_per_s_c64, 600000, 0);
    CHECK_NEAR(cc.ts_err_p99_us, 40, 0);
    CHECK_EQ_INT(client_ceiling_warn(&cc, 100000, 1000, msg, sizeof msg), 0);
    CHECK_EQ_STR(msg, "");
    CHECK_EQ_INT(client_ceiling_warn(&cc, 400000, NAN, msg, sizeof msg), 1);
    CHECK_MSG(strstr(msg, "67%") != NULL, "%s", msg);
    CHECK_EQ_INT(client_ceiling_warn(&cc, 0, 15000, msg, sizeof msg), 1);
    CHECK_MSG(strstr(msg, "75%") != NULL, "%s", msg);
}

/* ------------------------------------------------------------------------------------------ */
/* The content-chunk fast path against the full parser                                          */

/* What the client's util/json.h path extracts. 0 ok, -1 not an object / invalid, -2 has a
 * member the fast path must leave to the full parser. */
static int ref_chunk(const char *d, size_t len, enum client_api api, size_t *text_bytes,
                     char fin[16])
{
    char err[64];
    struct json *root = json_parse(d, len, err, sizeof err);
    if (!root || json_type_of(root) != JSON_TYPE_OBJECT) {
        json_free(root);
        return -1;
    }
    const char *bail_keys[] = {"usage", "timings", "error"};
    for (int i = 0; i < 3; i++) {
        const struct json *v = json_get(root, bail_keys[i]);
        if (v && json_type_of(v) != JSON_TYPE_NULL) {
            json_free(root);
            return -2;
        }
    }
    const struct json *ch = json_at(json_get(root, "choices"), 0);
    size_t n = 0;
    const char *text = api == CLIENT_API_CHAT
                           ? json_str(json_get(json_get(ch, "delta"), "content"), &n)
                           : json_str(json_get(ch, "text"), &n);
    *text_bytes = text ? n : 0;
    const char *f = json_str(json_get(ch, "finish_reason"), &n);
    fin[0] = 0;
    if (f) {
        if (n > 15)
            n = 15;
        memcpy(fin, f, n);
        fin[n] = 0;
    }
    json_free(root);
    return 0;
}

static const char *const chunk_samples[] = {
    "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"text\":\"Hel\",\"logprobs\":null,\"finish_reason\":null,"
    "\"stop_reason\":null}],\"usage\":null}",
    "{\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}]}",
    "{\"choices\":[{\"text\":\" caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ \\/ "
    "\\n\\t\",\"index\":0}]}",
    "{\"choices\":[{\"text\":\"caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac\"}],\"created\":-1.5e3}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"logprobs\":null,\"finish_reason\":null}],\"object\":\"chat.completion.chunk\"}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi "
    "\\u4e16\"},\"finish_reason\":\"stop\"}]}",
    "{\"choices\":[{\"text\":\"a\",\"logprobs\":{\"tokens\":[\"a\"],\"token_logprobs\":[-0.25],"
    "\"top_logprobs\":[{\"a\":-0.25,\"b\":-2}],\"text_offset\":[0]}}]}",
    " \r\n\t{ \"choices\" : [ { \"text\" : \"sp\" , \"finish_reason\" : \"stop\" } ] } \n",
    "{\"choices\":[{\"text\":\"a\",\"text\":\"bcd\"}]}",
    "{\"choices\":[{\"text\":\"a\"}],\"choices\":[{\"text\":\"xy\"}]}",
    "{\"choices\":[{\"text\":\"first\"},{\"text\":\"second\",\"bogus\":[1,2,{}]}]}",
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}",
    "{\"choices\":[{\"text\":\"x\"}],\"error\":{\"message\":\"m\"}}",
    "{\"choices\":[{\"text\":\"x\"}],\"timings\":{\"cache_n\":1}}",
    "{\"choices\":[{\"text\":\"x\",\"finish_reason\":\"a_very_long_finish_reason\"}]}",
    "{\"choices\":[{\"text\":\"nul\\u0000in\"}]}",
    "{\"choices\":[{\"text\":5,\"finish_reason\":7}]}",
    "{\"choices\":{\"text\":\"not an array\"}}",
    "{\"choices\":[\"not an object\"]}",
    "{\"a\":true,\"b\":false,\"c\":null,\"d\":[[[]]],\"e\":{},\"choices\":[{\"text\":\"t\"}]}",
    "{\"n\":123456789012345678901234,\"choices\":[{\"text\":\"big\"}]}",
    "{\"n\":1e999,\"choices\":[{\"text\":\"huge\"}]}",
};

static void test_chunk_scan_matches_full_parser(void)
{
    /* Plain content chunks must take the fast path. */
    struct client_chunk_fast f;
    CHECK_EQ_INT(
        client_chunk_scan(chunk_samples[0], strlen(chunk_samples[0]), CLIENT_API_COMPLETIONS, &f),
        1);
    CHECK_EQ_INT(f.text_bytes, 3);
    CHECK_EQ_STR(f.finish_reason, "");
    CHECK_EQ_INT(
        client_chunk_scan(chunk_samples[2], strlen(chunk_samples[2]), CLIENT_API_COMPLETIONS, &f),
        1);
    /* ' ' "caf" "é"(2) ' ' U+1F600(4) ' ' '"' 'q' '"' ' ' '\\' ' ' '/' ' ' '\n' '\t' */
    CHECK_EQ_INT(f.text_bytes, 1 + 3 + 2 + 1 + 4 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1);
    CHECK_EQ_INT(client_chunk_scan(chunk_samples[5], strlen(chunk_samples[5]), CLIENT_API_CHAT, &f),
                 1);
    CHECK_EQ_INT(f.text_bytes, 6);
    CHECK_EQ_STR(f.finish_reason, "stop");
    CHECK_EQ_INT(
        client_chunk_scan(chunk_samples[11], strlen(chunk_samples[11]), CLIENT_API_COMPLETIONS, &f),
        0); /* usage: full parser */

    /* Differential: samples and seeded mutations of them, both APIs. Whenever the fast path
     * accepts, the full parser must accept too and agree on every field. */
    const char inserts[][8] = {"\"",
                               "\\",
                               "\\u00e9",
                               "\\ud83d",
                               "\xc3\xa9",
                               "\xff",
                               "\xc3",
                               "{",
                               "}",
                               "[",
                               "]",
                               ",",
                               ":",
                               "0",
                               "-",
                               "e",
                               " ",
                               "\n",
                               "\x01",
                               "null",
                               "\"text\"",
                               "\xed\xa0\x80",
                               "\xf4\x90\x80\x80"};
    unsigned seed = 7;
    size_t n_fast = 0, n_checked = 0, n_bad = 0;
    char *m = xmalloc(4096);
    for (size_t si = 0; si < sizeof chunk_samples / sizeof chunk_samples[0]; si++) {
        const char *base = chunk_samples[si];
        size_t blen = strlen(base);
        for (int trial = 0; trial < 1500; trial++) {
            size_t len = blen;
            memcpy(m, base, blen);
            int n_mut = trial == 0 ? 0 : 1 + (int)((seed >> 8) % 3);
            for (int k = 0; k < n_mut; k++) {
                seed = seed * 1103515245u + 12345u;
                size_t pos = len ? (seed >> 4) % len : 0;
                unsigned op = (seed >> 20) % 4;
                if (op == 0 && len > 0) { /* delete a byte */
                    memmove(m + pos, m + pos + 1, len - pos - 1);
                    len--;
                } else if (op == 1) { /* truncate */
                    len = pos;
                } else { /* insert a token */
                    const char *ins = inserts[(seed >> 12) % (sizeof inserts / sizeof inserts[0])];
                    size_t il = strlen(ins);
                    if (len + il < 4096) {
                        memmove(m + pos + il, m + pos, len - pos);
                        memcpy(m + pos, ins, il);
                        len += il;
                    }
                }
            }
            for (int api = 0; api < 2; api++) {
                size_t tb = 0;
                char fin[16];
                int ref = ref_chunk(m, len, (enum client_api)api, &tb, fin);
                int fast = client_chunk_scan(m, len, (enum client_api)api, &f);
                n_checked++;
                if (!fast)
                    continue;
                n_fast++;
                if (ref != 0 || tb != f.text_bytes || strcmp(fin, f.finish_reason) != 0) {
                    if (n_bad++ < 5)
                        CHECK_MSG(0,
                                  "fast path disagrees (ref %d, bytes %zu vs %zu, fin '%s' vs "
                                  "'%s') on: %.*s",
                                  ref, tb, f.text_bytes, fin, f.finish_reason, (int)len, m);
                }
            }
        }
    }
    free(m);
    fprintf(stderr, "  %zu payloads checked, %zu took the fast path, %zu disagreements\n",
            n_checked, n_fast, n_bad);
    CHECK_EQ_INT(n_bad, 0);
    CHECK(n_fast > n_checked / 10);
}

/* ------------------------------------------------------------------------------------------ */
/* Against the real embedded server                                                             */

struct real {
    pid_t pid;
    int port;
    char dir[64];
    char model_path[128];
};

static int run_wait(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void real_stop(struct real *rs)
{
    if (rs->pid > 0) {
        kill(-rs->pid, SIGTERM);
        int st;
        for (int i = 0; i < 100; i++) {
            if (waitpid(rs->pid, &st, WNOHANG) == rs->pid) {
                rs->pid = 0;
                break;
            }
            ts_sleep_ms(50);
        }
        if (rs->pid > 0) {
            kill(-rs->pid, SIGKILL);
            waitpid(rs->pid, &st, 0);
        }
        rs->pid = 0;
    }
}

static void real_dump_log(const struct real *rs)
{
    char path[128];
    snprintf(path, sizeof path, "%s/serve.log", rs->dir);
    size_t len = 0;
    char *t = file_read_all(path, 1 << 20, &len);
    if (t) {
        fprintf(stderr, "  --- serve.log (last 2000 bytes)\n%s\n  ---\n",
                len > 2000 ? t + len - 2000 : t);
        free(t);
    }
}

/* 0: server ready on rs->port; -1: could not start (reason printed). */
static int real_start(struct real *rs)
{
    memset(rs, 0, sizeof *rs);
    const char *bin = getenv("SLMPROBE_BIN");
    if (!bin || !bin[0])
        bin = "./slmprobe";
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "  note: %s not executable: real-server tests skipped\n", bin);
        return -1;
    }
    snprintf(rs->dir, sizeof rs->dir, "/tmp/test_client_real_XXXXXX");
    if (!mkdtemp(rs->dir))
        return -1;
    snprintf(rs->model_path, sizeof rs->model_path, "%s/tiny.gguf", rs->dir);
    char log_path[128];
    snprintf(log_path, sizeof log_path, "%s/init.log", rs->dir);
    char *init_argv[] = {(char *)bin, "model",        "init",   "--preset", "tiny",
                         "-o",        rs->model_path, "--seed", "0",        NULL};
    int rc = run_wait(init_argv, log_path);
    if (rc != 0) {
        fprintf(stderr,
                "  note: '%s model init --preset tiny' exited %d: real-server tests skipped\n", bin,
                rc);
        return -1;
    }
    rs->port = closed_port();
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", rs->port);
    snprintf(log_path, sizeof log_path, "%s/serve.log", rs->dir);
    /* Small KV pool and no warm-up: start-up stays quick under the sanitizers. */
    char *serve_argv[] = {(char *)bin,
                          "serve",
                          "--model",
                          rs->model_path,
                          "--host",
                          "127.0.0.1",
                          "--port",
                          port_s,
                          "--served-model-name",
                          "tiny",
                          "--enforce-eager",
                          "--kv-cache-memory-bytes",
                          "32MiB",
                          NULL};
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(bin, serve_argv);
        _exit(127);
    }
    rs->pid = pid;
    char url[96], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/health", rs->port);
    mono_ns end = clock_now_ns() + 90000000000u;
    while (clock_now_ns() < end) {
        int st = 0;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            rs->pid = 0;
            fprintf(stderr, "  note: '%s serve' exited before ready: real-server tests skipped\n",
                    bin);
            real_dump_log(rs);
            return -1;
        }
        struct buf b;
        buf_init(&b, 64, 4096);
        int status = 0;
        int ok = http_get(url, NULL, 1000, &b, &status, err, sizeof err) == 0 && status == 200;
        buf_free(&b);
        if (ok)
            return 0;
        ts_sleep_ms(100);
    }
    fprintf(stderr, "  note: server not ready in 90 s: real-server tests skipped\n");
    real_dump_log(rs);
    real_stop(rs);
    return -1;
}

static void test_real_server(void)
{
    struct real rs;
    mono_ns t_start = clock_now_ns();
    if (real_start(&rs) != 0)
        return;
    fprintf(stderr, "  real: server ready in %.1f s\n", ns_to_s(clock_now_ns() - t_start));
    struct got g = {0};
    /* Model discovery from the real /v1/models. */
    struct client *c = mk_client(rs.port, NULL, NULL, CLIENT_API_COMPLETIONS, 60000, 0, &g);
    if (!c) {
        real_stop(&rs);
        return;
    }
    CHECK_EQ_STR(client_model(c), "tiny");
    /* One stream: exact token counts from usage, ordered timestamps. */
    struct client_request q = {.id = 1,
                               .prompt = "Hello world, this is a test.",
                               .prompt_len = 28,
                               .max_tokens = 16,
                               .ignore_eos = 1,
                               .temperature = 0};
    CHECK_EQ_INT(client_submit(c, &q), 0);
    wait_all(c, 60000);
    CHECK_EQ_INT(g.n, 1);
    if (g.n == 1) {
        struct request_record *r = &g.recs[0];
        CHECK_MSG(r->error == REQ_ERROR_NONE, "%s: %s", req_error_str(r->error), r->error_msg);
        CHECK_EQ_INT(r->http_status, 200);
        CHECK_EQ_INT(r->n_completion_tokens, 16);
        CHECK(r->n_prompt_tokens > 0);
        CHECK_EQ_STR(r->finish_reason, "length");
        CHECK(r->n_content_events >= 1 && r->n_content_events <= 16);
        CHECK(r->n_text_bytes > 0);
        check_ordered(r);
        fprintf(stderr, "  real: ttft %.3f ms, e2e %.3f ms, %u content events, %d prompt tokens\n",
                record_ttft_ns(r) / 1e6, record_e2e_ns(r) / 1e6, r->n_content_events,
                r->n_prompt_tokens);
    }
    got_free(&g);
    /* 32 concurrent streams. */
    for (int i = 0; i < 32; i++) {
        char prompt[64];
        int n = snprintf(prompt, sizeof prompt, "Stream number %d says", i);
        struct client_request q2 = {.id = (uint64_t)i,
                                    .prompt = prompt,
                                    .prompt_len = (size_t)n,
                                    .max_tokens = 8,
                                    .ignore_eos = 1};
        CHECK_EQ_INT(client_submit(c, &q2), 0);
    }
    CHECK_EQ_INT(client_in_flight(c), 32);
    wait_all(c, 120000);
    CHECK_EQ_INT(g.n, 32);
    int n_ok = 0;
    for (int i = 0; i < g.n; i++) {
        struct request_record *r = &g.recs[i];
        if (r->error == REQ_ERROR_NONE && r->n_completion_tokens == 8)
            n_ok++;
        else
            fprintf(stderr, "  stream %llu: %s %s (%d tokens)\n", (unsigned long long)r->id,
                    req_error_str(r->error), r->error_msg, r->n_completion_tokens);
        check_ordered(r);
    }
    CHECK_EQ_INT(n_ok, 32);
    fprintf(stderr, "  real: 32 streams done at %.1f s\n", ns_to_s(clock_now_ns() - t_start));
    long conns_after_32 = client_n_connects(c);
    CHECK_MSG(conns_after_32 <= 32, "%ld", conns_after_32);
    got_free(&g);
    /* Keep-alive: 10 more sequential requests open no new connection. */
    for (int i = 0; i < 10; i++) {
        struct client_request q3 = {
            .prompt = "again", .prompt_len = 5, .max_tokens = 2, .ignore_eos = 1};
        CHECK_EQ_INT(client_submit(c, &q3), 0);
        wait_all(c, 30000);
    }
    CHECK_EQ_INT(g.n, 10);
    CHECK_MSG(client_n_connects(c) == conns_after_32, "%ld -> %ld", conns_after_32,
              client_n_connects(c));
    got_free(&g);
    client_free(c);
    /* Chat API and an error from the real server (unknown model). */
    c = mk_client(rs.port, NULL, "tiny", CLIENT_API_CHAT, 60000, 0, &g);
    struct client_request q4 = {
        .prompt = "Say hi", .prompt_len = 6, .max_tokens = 4, .ignore_eos = 1};
    CHECK_EQ_INT(client_submit(c, &q4), 0);
    wait_all(c, 60000);
    CHECK_EQ_INT(g.n, 1);
    if (g.n == 1) {
        CHECK_MSG(g.recs[0].error == REQ_ERROR_NONE, "%s", g.recs[0].error_msg);
        CHECK_EQ_INT(g.recs[0].n_completion_tokens, 4);
        check_ordered(&g.recs[0]);
    }
    got_free(&g);
    client_free(c);
    c = mk_client(rs.port, NULL, "no-such-model", CLIENT_API_COMPLETIONS, 60000, 0, &g);
    CHECK_EQ_INT(client_submit(c, &q4), 0);
    wait_all(c, 60000);
    CHECK_EQ_INT(g.n, 1);
    if (g.n == 1) {
        CHECK_MSG(g.recs[0].error == REQ_ERROR_HTTP_4XX, "%s %d", req_error_str(g.recs[0].error),
                  g.recs[0].http_status);
        CHECK(g.recs[0].error_msg[0] != 0);
        fprintf(stderr, "  real: unknown model -> %d \"%s\"\n", g.recs[0].http_status,
                g.recs[0].error_msg);
    }
    got_free(&g);
    client_free(c);
    real_stop(&rs);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", rs.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "  could not remove %s\n", rs.dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* Before any thread exists: the writer test forks. */
    TEST_RUN(test_record_metrics_json);
    TEST_RUN(test_writer_survives_kill);
    TEST_RUN(test_ceiling);
    TEST_RUN(test_chunk_scan_matches_full_parser);
    srv = ts_start();
    if (!srv) {
        fprintf(stderr, "cannot start the test server\n");
        return 1;
    }
    TEST_RUN(test_request_bytes);
    TEST_RUN(test_normal_stream_gaps);
    TEST_RUN(test_error_classes);
    TEST_RUN(test_llama_shapes_and_cap);
    TEST_RUN(test_keepalive_and_model_discovery);
    TEST_RUN(test_abort);
    TEST_RUN(test_blocking_helpers);
    TEST_RUN(test_error_message_shapes);
    ts_stop(srv);
    TEST_RUN(test_real_server);
    return TEST_DONE();
}
