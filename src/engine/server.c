/* server: the embedded server's lifecycle (bind, loop thread, signals, graceful drain, stats),
 * its connections (accept, read into the HTTP parser of http.h, lingering close) and the response
 * writers. Routes are in routes.c, streaming in stream.c, request parsing in http.c and
 * openai_request.c; server.h is the contract. Threads: the event loop owns every connection,
 * request and metric; the engine thread only pushes events into s->q (under q_mu) and activates
 * s->ev_wake. */
#include "engine/server_impl.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "engine/api_metrics.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"

/* ------------------------------------------------------------------------------------------ */
/* small helpers */

const char *server_state_str(enum server_state st)
{
    switch (st) {
    case SERVER_STATE_STARTING:
        return "starting";
    case SERVER_STATE_LOADING:
        return "loading";
    case SERVER_STATE_READY:
        return "ready";
    case SERVER_STATE_DRAINING:
        return "draining";
    case SERVER_STATE_STOPPED:
        return "stopped";
    }
    return "unknown";
}

void server_config_defaults(struct server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->host = "127.0.0.1";
    cfg->port = 8000;
    cfg->max_body_bytes = 8u << 20;
    cfg->drain_grace_s = 30.0;
    cfg->log_stats = 1;
}

uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void o_puts(struct out *o, const char *s)
{
    if (o->st == BUF_OK)
        o->st = buf_puts(o->b, s);
}

void o_putn(struct out *o, const char *s, size_t n)
{
    if (o->st == BUF_OK)
        o->st = buf_append(o->b, s, n);
}

void o_printf(struct out *o, const char *fmt, ...)
{
    if (o->st != BUF_OK)
        return;
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        o->st = buf_append(o->b, tmp, (size_t)n);
        return;
    }
    /* rare: long formatted text */
    char *big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->st = buf_append(o->b, big, (size_t)n);
    free(big);
}

void o_jstr(struct out *o, const char *s, size_t n)
{
    if (o->st == BUF_OK)
        o->st = buf_json_strn(o->b, s, n);
}

static const char *error_type(int status)
{
    switch (status) {
    case 400:
        return "BadRequestError";
    case 401:
        return "AuthenticationError";
    case 404:
        return "NotFoundError";
    case 405:
        return "MethodNotAllowedError";
    case 413:
        return "RequestEntityTooLargeError";
    case 414:
        return "URITooLongError";
    case 431:
        return "RequestHeaderFieldsTooLargeError";
    case 501:
        return "NotImplementedError";
    case 503:
        return "ServiceUnavailableError";
    case 505:
        return "HTTPVersionNotSupportedError";
    }
    return "InternalServerError";
}

enum server_state st_get(const struct server *s)
{
    return (enum server_state)atomic_load(&((struct server *)s)->state);
}
/* ------------------------------------------------------------------------------------------ */
/* connections: writing responses */

void conn_set_timeouts(struct conn *c)
{
    struct timeval idle = {IDLE_TIMEOUT_S, 0}, closing = {CLOSE_TIMEOUT_S, 0};
    if (c->state == CONN_STATE_BUSY)
        bufferevent_set_timeouts(c->bev, NULL, NULL);
    else if (c->state == CONN_STATE_CLOSING)
        bufferevent_set_timeouts(c->bev, NULL, &closing);
    else if (c->state == CONN_STATE_LINGER)
        bufferevent_set_timeouts(c->bev, &(struct timeval){LINGER_S, 0}, NULL);
    else
        bufferevent_set_timeouts(c->bev, &idle, NULL);
}

void conn_write(struct conn *c, const void *data, size_t n)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->overflow)
        return;
    /* a stream whose reader stalls must not grow without bound; a single response (bounded by
     * the scratch buffer's cap) is always written whole */
    if (c->gen && c->gen->stream && evbuffer_get_length(out) + n > OUT_CAP_BYTES) {
        log_warn("serve", "client is not reading its response (%zu bytes pending); closing",
                 evbuffer_get_length(out));
        c->overflow = 1;
        return;
    }
    evbuffer_add(out, data, n);
}

void conn_write_head(struct conn *c, int status, const char *content_type, long long content_length,
                     const char *extra_headers)
{
    struct server *s = c->srv;
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (st_get(s) == SERVER_STATE_DRAINING)
        c->hp.req.keep_alive = 0;
    c->resp_chunked = 0;
    if (content_length < 0) {
        if (c->hp.req.version_minor >= 1)
            c->resp_chunked = 1;
        else
            c->hp.req.keep_alive = 0; /* HTTP/1.0: the end of the body is the close */
    }
    char head[1024];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\ndate: %s\r\nserver: slmprobe\r\n",
                     status, http_reason_phrase(status), date);
    if (content_type)
        n += snprintf(head + n, sizeof head - (size_t)n, "content-type: %s\r\n", content_type);
    if (content_length >= 0)
        n +=
            snprintf(head + n, sizeof head - (size_t)n, "content-length: %lld\r\n", content_length);
    else if (c->resp_chunked)
        n += snprintf(head + n, sizeof head - (size_t)n, "transfer-encoding: chunked\r\n");
    if (!c->hp.req.keep_alive)
        n += snprintf(head + n, sizeof head - (size_t)n, "connection: close\r\n");
    if (extra_headers)
        n += snprintf(head + n, sizeof head - (size_t)n, "%s", extra_headers);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    conn_write(c, head, (size_t)n < sizeof head ? (size_t)n : sizeof head - 1);
}

/* One piece of a streamed body (a chunk when chunked). */
void conn_write_chunk(struct conn *c, const void *data, size_t n)
{
    if (n == 0)
        return;
    if (c->resp_chunked) {
        char sz[32];
        int k = snprintf(sz, sizeof sz, "%zx\r\n", n);
        conn_write(c, sz, (size_t)k);
        conn_write(c, data, n);
        conn_write(c, "\r\n", 2);
    } else {
        conn_write(c, data, n);
    }
}

/* The response is complete: keep-alive -> read the next request, else flush and close.
 * Never frees c (the write callback does, once the output is flushed). */
void conn_response_done(struct conn *c)
{
    struct server *s = c->srv;
    c->gen = NULL;
    if (!c->hp.req.keep_alive || c->overflow || st_get(s) == SERVER_STATE_DRAINING) {
        c->state = CONN_STATE_CLOSING;
        bufferevent_disable(c->bev, EV_READ);
        conn_set_timeouts(c);
        /* the write callback closes once the output is empty (it is not empty here) */
        bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    c->state = CONN_STATE_READING;
    http_reader_reset(&c->hp); /* keeps the body buffer unless it grew large */
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    conn_set_timeouts(c);
    /* pipelined requests already buffered: handle them from the loop, not recursively */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS | BEV_TRIG_IGNORE_WATERMARKS);
}

void conn_send(struct conn *c, int status, const char *content_type, const char *body, size_t len,
               const char *extra_headers)
{
    conn_write_head(c, status, content_type, (long long)len, extra_headers);
    if (!c->hp.req.is_head && len > 0)
        conn_write(c, body, len);
    conn_response_done(c);
}

/* {"error": {"message", "type", "param", "code"}} */
void conn_send_error(struct conn *c, int status, const char *param, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct buf b;
    buf_init(&b, 256, 8192);
    struct out o = {&b, BUF_OK};
    o_puts(&o, "{\"error\":{\"message\":");
    o_jstr(&o, msg, strlen(msg));
    o_printf(&o, ",\"type\":\"%s\",\"param\":", error_type(status));
    if (param)
        o_jstr(&o, param, strlen(param));
    else
        o_puts(&o, "null");
    o_printf(&o, ",\"code\":%d}}", status);
    const char *extra = NULL;
    if (status == 405) {
        extra = !strcmp(c->hp.req.path, "/v1/completions") ||
                        !strcmp(c->hp.req.path, "/v1/chat/completions") ||
                        !strcmp(c->hp.req.path, "/tokenize") ||
                        !strcmp(c->hp.req.path, "/detokenize") ||
                        !strcmp(c->hp.req.path, "/reset_prefix_cache")
                    ? "allow: POST\r\n"
                    : "allow: GET, HEAD\r\n";
    }
    if (status == 401)
        extra = "www-authenticate: Bearer\r\n";
    conn_send(c, status, "application/json", b.data, b.len, extra);
    buf_free(&b);
}

/* Protocol-level failure: answer and close (the stream position is unknown). */
static void conn_fail(struct conn *c, int status, const char *msg)
{
    c->hp.req.keep_alive = 0;
    c->state = CONN_STATE_BUSY;
    bufferevent_disable(c->bev, EV_READ);
    conn_send_error(c, status, NULL, "%s", msg);
}
/* ------------------------------------------------------------------------------------------ */
/* reading requests (http.h parses) */

/* A parse error: answer and close (the stream position is unknown). */
static void conn_parse_error(struct conn *c, enum http_parse_status st)
{
    const struct http_req *r = &c->hp.req;
    size_t cap = c->srv->cfg.max_body_bytes;
    char msg[256];
    if (st == HTTP_PARSE_ERR_CONTENT_LENGTH_TOO_LARGE) {
        log_warn("serve", "request body of %llu bytes over the %zu-byte cap (413)",
                 (unsigned long long)r->content_length, cap);
        snprintf(msg, sizeof msg, "%s: %llu bytes (limit %zu bytes)", http_parse_status_message(st),
                 (unsigned long long)r->content_length, cap);
    } else if (st == HTTP_PARSE_ERR_BODY_TOO_LARGE) {
        snprintf(msg, sizeof msg, "%s (limit %zu bytes)", http_parse_status_message(st), cap);
    } else {
        snprintf(msg, sizeof msg, "%s", http_parse_status_message(st));
    }
    conn_fail(c, http_parse_status_code(st), msg);
}

static void conn_process_input(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (c->state == CONN_STATE_READING) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            return;
        size_t used = 0;
        enum http_parse_status st = http_reader_feed(&c->hp, v.iov_base, v.iov_len, &used);
        evbuffer_drain(in, used);
        if (st == HTTP_PARSE_REQUEST_DONE) {
            conn_dispatch(c);
        } else if (st == HTTP_PARSE_HEAD_DONE) {
            if (c->hp.req.expect_continue && c->hp.req.version_minor >= 1) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                conn_write(c, cont, sizeof cont - 1);
            }
        } else if (st != HTTP_PARSE_OK) {
            conn_parse_error(c, st);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* connection callbacks */

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state == CONN_STATE_LINGER) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (clock_now_ns() - c->t_linger_ns > (mono_ns)LINGER_S * 1000000000ull)
            conn_free(c);
        return;
    }
    conn_process_input(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state != CONN_STATE_CLOSING || evbuffer_get_length(bufferevent_get_output(bev)) != 0)
        return;
    /* lingering close: stop writing, read and discard until the client closes (or a timeout) */
    c->state = CONN_STATE_LINGER;
    c->t_linger_ns = clock_now_ns();
    if (shutdown(bufferevent_getfd(bev), SHUT_WR) != 0) {
        conn_free(c);
        return;
    }
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    conn_set_timeouts(c);
    bufferevent_enable(bev, EV_READ);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (c->gen && (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        log_info("serve", "client disconnected; aborting request %s", c->gen->id);
    conn_free(c);
}

void conn_free(struct conn *c)
{
    if (!c)
        return;
    struct server *s = c->srv;
    struct gen *g = c->gen;
    if (g) {
        c->gen = NULL;
        g->conn = NULL;
        g->client_done = 1;
        if (!g->engine_done)
            engine_abort(s->engine, g->req_id); /* its final event frees g */
    }
    if (c->prev)
        c->prev->next = c->next;
    else if (s->conns == c)
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    bufferevent_free(c->bev);
    http_reader_free(&c->hp);
    free(c);
    s->n_conns--;
    drain_check(s);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct server *s = arg;
    if (s->n_conns >= MAX_CONNS || st_get(s) == SERVER_STATE_DRAINING) {
        evutil_closesocket(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    struct conn *c = xcalloc(1, sizeof *c);
    c->srv = s;
    c->bev = bev;
    c->state = CONN_STATE_READING;
    http_reader_init(&c->hp, s->cfg.max_body_bytes);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    conn_set_timeouts(c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* ------------------------------------------------------------------------------------------ */
/* shutdown, stats */

void drain_check(struct server *s)
{
    if (st_get(s) != SERVER_STATE_DRAINING)
        return;
    if (s->n_in_flight == 0 && s->n_conns == 0) {
        log_info("serve", "Shutting down: all requests finished");
        event_base_loopexit(s->base, NULL);
    }
}

static void abort_all(struct server *s)
{
    for (struct gen *g = s->gens; g; g = g->next)
        engine_abort(s->engine, g->req_id);
}

static void on_hard_stop(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    log_warn("serve",
             "Shutting down: %d requests and %d connections still open after the grace "
             "period; exiting anyway",
             s->n_in_flight, s->n_conns);
    event_base_loopexit(s->base, NULL);
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    log_warn("serve", "Shutting down: grace period of %.0f s over, aborting %d requests",
             s->cfg.drain_grace_s, s->n_in_flight);
    abort_all(s);
    struct timeval tv = {(time_t)HARD_STOP_S, 0};
    evtimer_add(s->ev_hard, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    s->signals_seen++;
    atomic_store(&s->stop_requested, 1);
    if (s->signals_seen > 1) {
        log_warn("serve", "Shutting down now (second signal): aborting %d requests",
                 s->n_in_flight);
        if (st_get(s) == SERVER_STATE_READY || st_get(s) == SERVER_STATE_DRAINING)
            abort_all(s);
        if (!evtimer_pending(s->ev_hard, NULL)) {
            struct timeval tv = {(time_t)HARD_STOP_S, 0};
            evtimer_add(s->ev_hard, &tv);
        }
        return;
    }
    enum server_state prev = st_get(s);
    atomic_store(&s->state, SERVER_STATE_DRAINING);
    log_info("serve",
             "Shutting down (%s): no longer accepting connections; draining %d in-flight "
             "requests (grace period %.0f s)",
             sig == SIGINT ? "SIGINT" : "SIGTERM", s->n_in_flight, s->cfg.drain_grace_s);
    if (s->listener) {
        evconnlistener_free(s->listener);
        s->listener = NULL;
    }
    if (s->ev_stats)
        evtimer_del(s->ev_stats);
    /* idle and half-read connections hold no request: close them now */
    struct conn *next;
    for (struct conn *c = s->conns; c; c = next) {
        next = c->next;
        if (c->state != CONN_STATE_BUSY && c->state != CONN_STATE_CLOSING)
            conn_free(c);
        else
            c->hp.req.keep_alive = 0;
    }
    if (prev != SERVER_STATE_READY) {
        /* still loading: nothing to drain. The loader stops after its current phase; giving the
         * signals back to their default action lets a second one end the process at once. */
        log_info("serve", "Shutting down during start-up: stopping after the current phase (a "
                          "second signal ends the process now)");
        evsignal_del(s->ev_sigterm);
        evsignal_del(s->ev_sigint);
        event_base_loopexit(s->base, NULL);
        return;
    }
    struct timeval tv = {
        (time_t)s->cfg.drain_grace_s,
        (suseconds_t)((s->cfg.drain_grace_s - (time_t)s->cfg.drain_grace_s) * 1e6)};
    evtimer_add(s->ev_grace, &tv);
    drain_check(s);
}

/* vLLM's periodic "Engine 000: Avg prompt throughput ..." line, only while there is work. */
static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    if (st_get(s) != SERVER_STATE_READY)
        return;
    struct engine_stats st;
    engine_get_stats(s->engine, &st);
    mono_ns now = clock_now_ns();
    double dt = s->t_last_stats_ns ? ns_to_s(now - s->t_last_stats_ns) : STATS_INTERVAL_S;
    if (dt <= 0)
        dt = STATS_INTERVAL_S;
    uint64_t d_prompt = st.prompt_tokens_total - s->last_stats.prompt_tokens_total;
    uint64_t d_gen = st.generation_tokens_total - s->last_stats.generation_tokens_total;
    uint64_t d_q = st.prefix_cache_queries_total - s->last_stats.prefix_cache_queries_total;
    uint64_t d_h = st.prefix_cache_hits_total - s->last_stats.prefix_cache_hits_total;
    int busy = d_prompt || d_gen || st.n_running || st.n_waiting;
    if (busy || s->last_stats_busy)
        log_info("serve",
                 "Engine 000: Avg prompt throughput: %.1f tokens/s, Avg generation throughput: "
                 "%.1f tokens/s, Running: %d reqs, Waiting: %d reqs, GPU KV cache usage: %.1f%%, "
                 "Prefix cache hit rate: %.1f%%",
                 (double)d_prompt / dt, (double)d_gen / dt, st.n_running, st.n_waiting,
                 st.kv_usage * 100.0, d_q ? 100.0 * (double)d_h / (double)d_q : 0.0);
    s->last_stats_busy = busy;
    s->last_stats = st;
    s->t_last_stats_ns = now;
}

/* ------------------------------------------------------------------------------------------ */
/* public API */

static int bind_listen(struct server *s, char *err, size_t err_len)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port[16];
    snprintf(port, sizeof port, "%d", s->cfg.port);
    int rc = getaddrinfo(s->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "cannot resolve host '%s': %s", s->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (saved == EADDRINUSE)
            snprintf(err, err_len, "cannot bind %s:%d: [Errno %d] address already in use", s->host,
                     s->cfg.port, saved);
        else
            snprintf(err, err_len, "cannot bind %s:%d: [Errno %d] %s", s->host, s->cfg.port, saved,
                     strerror(saved));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    s->port = s->cfg.port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    evutil_make_socket_nonblocking(fd);
    s->listener = evconnlistener_new(s->base, on_accept, s,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!s->listener) {
        close(fd);
        snprintf(err, err_len, "cannot create the listener on %s:%d", s->host, s->port);
        return -1;
    }
    return 0;
}

struct server *server_new(const struct server_config *cfg, char *err, size_t err_len)
{
    static int threads_on;
    if (!threads_on) {
        if (evthread_use_pthreads() != 0) {
            snprintf(err, err_len, "libevent: evthread_use_pthreads failed");
            return NULL;
        }
        threads_on = 1;
    }
    signal(SIGPIPE, SIG_IGN);
    struct server *s = xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    s->host = xstrdup(cfg->host ? cfg->host : "127.0.0.1");
    s->api_key = cfg->api_key && *cfg->api_key ? xstrdup(cfg->api_key) : NULL;
    s->served_model_name = xstrdup(cfg->served_model_name ? cfg->served_model_name : "model");
    s->model_path = cfg->model_path ? xstrdup(cfg->model_path) : NULL;
    s->cfg.host = s->host;
    s->cfg.api_key = s->api_key;
    s->cfg.served_model_name = s->served_model_name;
    s->cfg.model_path = s->model_path;
    if (s->cfg.max_body_bytes == 0)
        s->cfg.max_body_bytes = 8u << 20;
    if (s->cfg.drain_grace_s < 0)
        s->cfg.drain_grace_s = 0;
    atomic_store(&s->state, SERVER_STATE_STARTING);
    pthread_mutex_init(&s->q_mu, NULL);
    s->q_cap = 4096;
    s->q = xmalloc(s->q_cap * sizeof *s->q);
    size_t scratch_cap = s->cfg.max_body_bytes * 8 + (64u << 20);
    buf_init(&s->scratch, 64 * 1024, scratch_cap);
    s->rng = (uint64_t)clock_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)s;
    s->created = (long long)clock_wall_s();

    s->base = event_base_new();
    if (!s->base) {
        snprintf(err, err_len, "libevent: event_base_new failed");
        goto fail;
    }
    s->ev_wake = event_new(s->base, -1, 0, on_wake, s);
    s->ev_sigterm = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->ev_sigint = evsignal_new(s->base, SIGINT, on_signal, s);
    s->ev_grace = evtimer_new(s->base, on_grace_over, s);
    s->ev_hard = evtimer_new(s->base, on_hard_stop, s);
    s->ev_stats = event_new(s->base, -1, EV_PERSIST, on_stats, s);
    if (!s->ev_wake || !s->ev_sigterm || !s->ev_sigint || !s->ev_grace || !s->ev_hard ||
        !s->ev_stats) {
        snprintf(err, err_len, "libevent: cannot create events");
        goto fail;
    }
    if (evsignal_add(s->ev_sigterm, NULL) != 0 || evsignal_add(s->ev_sigint, NULL) != 0) {
        snprintf(err, err_len, "libevent: cannot register signal handlers");
        goto fail;
    }
    if (bind_listen(s, err, err_len) != 0)
        goto fail;
    return s;

fail:
    server_free(s);
    return NULL;
}

int server_port(const struct server *s)
{
    return s->port;
}

static void *loop_main(void *arg)
{
    struct server *s = arg;
    event_base_dispatch(s->base);
    atomic_store(&s->state, SERVER_STATE_STOPPED);
    return NULL;
}

int server_start(struct server *s)
{
    atomic_store(&s->state, SERVER_STATE_LOADING);
    if (pthread_create(&s->thread, NULL, loop_main, s) != 0) {
        atomic_store(&s->state, SERVER_STATE_STARTING);
        return -1;
    }
    s->thread_started = 1;
    return 0;
}

int server_set_ready(struct server *s, struct engine *e, struct model *m)
{
    s->engine = e;
    s->model = m;
    engine_get_info(e, &s->info);
    int max_piece = 1;
    for (int i = 0; i < m->tok.n_vocab; i++)
        if (m->tok.piece_len && (int)m->tok.piece_len[i] > max_piece)
            max_piece = (int)m->tok.piece_len[i];
    s->max_piece_len = max_piece;
    int known;
    s->chat_fmt = chat_format_detect(m->tok.chat_template, &known);
    if (!known)
        log_warn("serve", "chat template not recognised; /v1/chat/completions uses the default "
                 "format (docs/serve.md)");
    api_metrics_init(&s->metrics, s->info.max_model_len);
    s->metrics_ready = 1;
    engine_get_stats(e, &s->last_stats);
    s->t_last_stats_ns = clock_now_ns();
    if (s->cfg.log_stats) {
        struct timeval tv = {STATS_INTERVAL_S, 0};
        event_add(s->ev_stats, &tv); /* event_add is thread-safe with evthread_use_pthreads */
    }
    int expected = SERVER_STATE_LOADING;
    if (!atomic_compare_exchange_strong(&s->state, &expected, SERVER_STATE_READY))
        return -1;
    return 0;
}

int server_stop_requested(const struct server *s)
{
    return atomic_load(&((struct server *)s)->stop_requested);
}

enum server_state server_get_state(const struct server *s)
{
    return st_get(s);
}

void server_wait(struct server *s)
{
    if (s && s->thread_started) {
        pthread_join(s->thread, NULL);
        s->thread_started = 0;
    }
}

void server_free(struct server *s)
{
    if (!s)
        return;
    if (s->thread_started) {
        event_base_loopexit(s->base, NULL);
        pthread_join(s->thread, NULL);
        s->thread_started = 0;
    }
    /* events still queued (the engine was stopped after the loop exited) */
    struct q_item it;
    while (s->q && q_pop(s, &it))
        if (it.ev.finish != ENGINE_FINISH_NONE && !it.g->engine_done) {
            it.g->engine_done = 1;
            gen_list_remove(s, it.g);
            s->n_in_flight--;
            if (it.g->conn)
                it.g->conn->gen = NULL;
            gen_free(it.g);
        }
    while (s->conns) {
        struct conn *c = s->conns;
        s->conns = c->next;
        if (c->gen) {
            c->gen->conn = NULL;
            c->gen = NULL;
        }
        bufferevent_free(c->bev);
        http_reader_free(&c->hp);
        free(c);
    }
    while (s->gens) {
        struct gen *g = s->gens;
        s->gens = g->next;
        gen_free(g);
    }
    if (s->listener)
        evconnlistener_free(s->listener);
    struct event *evs[] = {s->ev_wake,  s->ev_sigterm, s->ev_sigint,
                           s->ev_grace, s->ev_hard,    s->ev_stats};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
        if (evs[i])
            event_free(evs[i]);
    if (s->base)
        event_base_free(s->base);
    if (s->metrics_ready)
        api_metrics_free(&s->metrics);
    buf_free(&s->scratch);
    free(s->q);
    pthread_mutex_destroy(&s->q_mu);
    free(s->host);
    free(s->api_key);
    free(s->served_model_name);
    free(s->model_path);
    free(s);
}
