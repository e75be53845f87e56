/* fake_server.h: a small loopback HTTP/1.1 server that streams completions the way vLLM's
 * /v1/completions does, and misbehaves with its connections the way real servers do (llama.cpp's
 * keep-alive limits, idle timeouts, proxies that close after each response, resets). For any test;
 * everything is static. One accept thread, one thread per connection; fake_stop() joins them all.
 *
 *   struct fake_server *s = fake_start(&(struct fake_config){ .mode = FAKE_CLOSE_EACH });
 *   ... client on s->base_url ...
 *   fake_stop(s);
 *
 * Routes: GET /health -> 200 {"status":"ok"}; GET /v1/models -> {"object":"list","data":[{"id":
 * "fake-model",..}]}; POST /v1/completions (JSON body, Content-Length) -> an SSE stream of
 * max_tokens events
 *   data: {"id":"cmpl-K","object":"text_completion",...,"choices":[{"index":0,"text":"tok",
 *          "logprobs":null,"finish_reason":null}]}
 * then one final chunk with "text":"", "finish_reason":"length" and
 * "usage":{"prompt_tokens":P,"completion_tokens":N,"total_tokens":P+N}, then data: [DONE].
 * The fake tokeniser counts one prompt token per prompt byte (P = strlen(prompt)) and always
 * generates exactly max_tokens (N). HTTP/1.1 streams use chunked transfer encoding, one chunk per
 * event. Anything else: 404 with a JSON error.
 *
 * "Closes gracefully" below means shutdown(SHUT_WR), wait up to 1 s for the client's FIN, close:
 * the client reads everything that was sent. */
#ifndef SLM_FAKE_SERVER_H
#define SLM_FAKE_SERVER_H

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"

enum fake_mode {
    FAKE_NORMAL = 0,    /* keep-alive, never closes first */
    FAKE_CLOSE_EACH,    /* (a) closes after each streamed response, WITHOUT Connection: close */
    FAKE_CLOSE_AFTER_N, /* (b) closes after max_requests requests on one connection (no header) */
    FAKE_IDLE_CLOSE,    /* (c) closes a connection that was idle for idle_ms */
    FAKE_CONN_CLOSE,    /* (d) every response says Connection: close, then it closes */
    FAKE_HTTP10,        /* (e) HTTP/1.0 responses, no chunked encoding: the body ends at close */
    FAKE_RESET_MID,     /* (f) every reset_every-th completion: reset_after_events events, RST */
    FAKE_STALL,         /* (g) completions get their headers, then nothing, until the client goes */
    FAKE_DROP,          /* every drop_every-th completion is read, never answered, and the
                         * connection closed gracefully (a crashing worker, a proxy without an
                         * upstream): the client gets an empty reply */
};

/* How a close decided by (a), (b) or (c) reaches the client. */
enum fake_late {
    FAKE_LATE_NONE = 0, /* at once (a, b: right after the response; c: when the idle timer fires):
                         * graceful; on loopback the FIN usually arrives before the client reuses
                         * the connection, so it may notice */
    FAKE_LATE_RST,      /* only when the next request arrives (a, b: as its first bytes come in;
                         * c: once it is read), closed with SO_LINGER 0: a RST. The worst case of
                         * the race where the server's close and the client's next request cross
                         * on the wire: every reuse then fails before a response byte. */
    FAKE_LATE_FIN,      /* only when the next request arrives: it is read, left unanswered, and
                         * the connection closed gracefully (the client gets an empty reply) */
};

struct fake_config {
    enum fake_mode mode;
    enum fake_late late;    /* (a), (b), (c) */
    int max_requests;       /* (b): requests per connection; 0 = 5 */
    int idle_ms;            /* (c): 0 = 1000 */
    int reset_every;        /* (f): completions number k with k % reset_every == 0; 0 = 10 */
    int reset_after_events; /* (f): events sent before the RST; 0 = 3 */
    int drop_every;         /* FAKE_DROP: completions k with k % drop_every == 0; 0 = 1 */
    int event_gap_us;       /* pause between events; 0 = none */
};

struct fake_conn {
    struct fake_server *s;
    int fd;
    pthread_t thr;
    struct fake_conn *next;
};

struct fake_server {
    struct fake_config cfg;
    int lfd;
    int port;
    char base_url[64];
    pthread_t accept_thr;
    atomic_int stop;
    pthread_mutex_t mu;
    struct fake_conn *conns; /* every connection ever accepted; joined by fake_stop */
    /* Counters, readable at any time: */
    atomic_int n_accepts;      /* connections accepted */
    atomic_int n_requests;     /* requests parsed (any route) */
    atomic_int n_completions;  /* POST /v1/completions received (numbering for reset_every) */
    atomic_int n_streams_done; /* completion streams sent to the end (counted just before
                                * the final usage chunk, [DONE] and the last chunk go out) */
    atomic_int n_resets;       /* streams cut by a RST (f) */
    atomic_int n_unanswered;   /* requests that met a late close (read or not) or were dropped
                                * (FAKE_DROP): never answered */
    atomic_int n_closes;       /* connections the server closed first (a, b, c, d, e) */
};

/* ---- small socket helpers ---- */

static int fake_send(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Waits up to ms for fd to become readable, waking every 50 ms to look at the stop flag.
 * 1 readable (or EOF/error pending), 0 timeout, -1 stopping. ms < 0: no timeout. */
static int fake_wait_readable(struct fake_server *s, int fd, int ms)
{
    mono_ns end = ms >= 0 ? clock_now_ns() + (uint64_t)ms * 1000000u : 0;
    for (;;) {
        if (atomic_load(&s->stop))
            return -1;
        int slice = 50;
        if (ms >= 0) {
            mono_ns now = clock_now_ns();
            if (now >= end)
                return 0;
            uint64_t left = (end - now + 999999u) / 1000000u;
            if (left < (uint64_t)slice)
                slice = (int)left;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, slice);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return 1; /* let the read report it */
    }
}

/* shutdown(SHUT_WR), then wait (<= 1 s) for the peer's FIN so that nothing we sent is lost to a
 * RST, then close. */
static void fake_close_graceful(struct fake_server *s, int fd)
{
    shutdown(fd, SHUT_WR);
    char junk[4096];
    mono_ns end = clock_now_ns() + 1000000000u;
    while (clock_now_ns() < end && fake_wait_readable(s, fd, 100) == 1) {
        ssize_t n = recv(fd, junk, sizeof junk, 0);
        if (n <= 0)
            break;
    }
    close(fd);
}

static void fake_close_rst(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* ---- requests ---- */

struct fake_req {
    char method[8];
    char path[128];
    int body_off;
    size_t len; /* header + body bytes consumed */
};

/* Reads one request (headers and a Content-Length body) into b, which may already hold bytes of
 * it. 1 got one, 0 EOF/error/stop before a complete request, -2 idle timeout (nothing read). */
static int fake_read_request(struct fake_server *s, int fd, struct buf *b, int idle_ms,
                             struct fake_req *rq)
{
    for (;;) {
        const char *end = b->len ? memmem(b->data, b->len, "\r\n\r\n", 4) : NULL;
        if (end) {
            size_t hdr = (size_t)(end - b->data) + 4;
            size_t clen = 0;
            for (const char *line = b->data; line < end;) {
                const char *nl = memchr(line, '\n', (size_t)(end + 2 - line));
                if (!nl)
                    break;
                if (nl - line > 15 && strncasecmp(line, "Content-Length:", 15) == 0)
                    clen = strtoul(line + 15, NULL, 10);
                line = nl + 1;
            }
            if (b->len >= hdr + clen) {
                memset(rq, 0, sizeof *rq);
                sscanf(b->data, "%7s %127s", rq->method, rq->path);
                rq->body_off = (int)hdr;
                rq->len = hdr + clen;
                return 1;
            }
        }
        int w = fake_wait_readable(s, fd, b->len == 0 ? idle_ms : 10000);
        if (w < 0)
            return 0;
        if (w == 0)
            return b->len == 0 ? -2 : 0;
        char tmp[16384];
        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0)
            return 0;
        if (buf_append(b, tmp, (size_t)n) != BUF_OK)
            return 0;
    }
}

/* ---- responses ---- */

static int fake_http10(const struct fake_server *s)
{
    return s->cfg.mode == FAKE_HTTP10;
}

static int fake_json_reply(struct fake_server *s, int fd, int status, const char *reason,
                           const char *body)
{
    char head[512];
    snprintf(head, sizeof head,
             "HTTP/1.%d %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
             fake_http10(s) ? 0 : 1, status, reason, strlen(body),
             s->cfg.mode == FAKE_CONN_CLOSE ? "Connection: close\r\n" : "");
    return fake_send(fd, head, strlen(head)) || fake_send(fd, body, strlen(body)) ? -1 : 0;
}

/* One SSE event: a chunk of its own on HTTP/1.1, raw bytes on HTTP/1.0. */
static int fake_event(struct fake_server *s, int fd, const char *json)
{
    char ev[1024];
    int n = snprintf(ev, sizeof ev, "data: %s\n\n", json);
    char out[1100];
    int m = fake_http10(s) ? snprintf(out, sizeof out, "%s", ev)
                           : snprintf(out, sizeof out, "%x\r\n%s\r\n", n, ev);
    if (s->cfg.event_gap_us > 0)
        clock_sleep_ns((uint64_t)s->cfg.event_gap_us * 1000u);
    return fake_send(fd, out, (size_t)m);
}

enum fake_after { FAKE_KEEP, FAKE_CLOSE, FAKE_GONE /* fd already closed */ };

/* Streams one completion. */
static enum fake_after fake_completion(struct fake_server *s, int fd, const char *body,
                                       size_t body_len)
{
    int k = atomic_fetch_add(&s->n_completions, 1) + 1;
    char jerr[64];
    struct json *root = json_parse(body, body_len, jerr, sizeof jerr);
    long long max_tokens = 0;
    size_t plen = 0;
    const char *prompt = json_str(json_get(root, "prompt"), &plen);
    if (!root || !prompt || json_int(json_get(root, "max_tokens"), &max_tokens) != 0 ||
        max_tokens <= 0 || max_tokens > 100000) {
        json_free(root);
        return fake_json_reply(s, fd, 400, "Bad Request",
                               "{\"error\":{\"message\":\"need prompt and max_tokens >= 1\","
                               "\"type\":\"BadRequestError\",\"code\":400}}")
                   ? FAKE_CLOSE
                   : FAKE_KEEP;
    }
    json_free(root);
    if (s->cfg.mode == FAKE_DROP && k % (s->cfg.drop_every > 0 ? s->cfg.drop_every : 1) == 0) {
        atomic_fetch_add(&s->n_unanswered, 1);
        atomic_fetch_add(&s->n_closes, 1);
        fake_close_graceful(s, fd);
        return FAKE_GONE;
    }
    char head[256];
    snprintf(head, sizeof head,
             "HTTP/1.%d 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
             "%s%s\r\n",
             fake_http10(s) ? 0 : 1, fake_http10(s) ? "" : "Transfer-Encoding: chunked\r\n",
             s->cfg.mode == FAKE_CONN_CLOSE ? "Connection: close\r\n" : "");
    if (fake_send(fd, head, strlen(head)))
        return FAKE_CLOSE;
    if (s->cfg.mode == FAKE_STALL) {
        /* Nothing more, ever: wait for the client to give up (or the server to stop). */
        char junk[4096];
        while (fake_wait_readable(s, fd, -1) == 1 && recv(fd, junk, sizeof junk, 0) > 0)
            ;
        return FAKE_CLOSE;
    }
    int every = s->cfg.reset_every > 0 ? s->cfg.reset_every : 10;
    int cut_at = s->cfg.mode == FAKE_RESET_MID && k % every == 0
                     ? (s->cfg.reset_after_events > 0 ? s->cfg.reset_after_events : 3)
                     : -1;
    char ev[512];
    for (long long i = 0; i < max_tokens; i++) {
        if (i == cut_at) {
            /* Let the client read what was sent, then reset. */
            clock_sleep_ns(20 * 1000000u);
            atomic_fetch_add(&s->n_resets, 1);
            fake_close_rst(fd);
            return FAKE_GONE;
        }
        snprintf(ev, sizeof ev,
                 "{\"id\":\"cmpl-%d\",\"object\":\"text_completion\",\"created\":1700000000,"
                 "\"model\":\"fake-model\",\"choices\":[{\"index\":0,\"text\":\"tok\","
                 "\"logprobs\":null,\"finish_reason\":null}]}",
                 k);
        if (fake_event(s, fd, ev))
            return FAKE_CLOSE;
    }
    snprintf(ev, sizeof ev,
             "{\"id\":\"cmpl-%d\",\"object\":\"text_completion\",\"created\":1700000000,"
             "\"model\":\"fake-model\",\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,"
             "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":%zu,"
             "\"completion_tokens\":%lld,\"total_tokens\":%lld}}",
             k, plen, max_tokens, (long long)plen + max_tokens);
    /* Counted before the last bytes go out: a client that has its record sees the count. */
    atomic_fetch_add(&s->n_streams_done, 1);
    if (fake_event(s, fd, ev) || fake_event(s, fd, "[DONE]"))
        return FAKE_CLOSE;
    if (!fake_http10(s) && fake_send(fd, "0\r\n\r\n", 5))
        return FAKE_CLOSE;
    return FAKE_KEEP;
}

/* ---- connection loop ---- */

static void *fake_conn_main(void *arg)
{
    struct fake_conn *fc = arg;
    struct fake_server *s = fc->s;
    int fd = fc->fd;
    const struct fake_config *cfg = &s->cfg;
    int max_req = cfg->max_requests > 0 ? cfg->max_requests : 5;
    int idle_ms = cfg->idle_ms > 0 ? cfg->idle_ms : 1000;
    struct buf b;
    buf_init(&b, 4096, 8u << 20);
    int n_served = 0;
    int doomed = 0; /* a late close is pending: the next request meets it */
    mono_ns t_idle_since = clock_now_ns();
    for (;;) {
        /* (c) eager: the idle timer closes the connection. Late: the next request finds it. */
        int wait_ms = cfg->mode == FAKE_IDLE_CLOSE && cfg->late == FAKE_LATE_NONE ? idle_ms : -1;
        if (doomed && cfg->late == FAKE_LATE_RST) {
            /* Close the moment the next request's first bytes arrive, unread: RST. */
            char c1;
            if (b.len > 0 || (fake_wait_readable(s, fd, -1) == 1 &&
                              recv(fd, &c1, 1, MSG_PEEK | MSG_DONTWAIT) == 1))
                atomic_fetch_add(&s->n_unanswered, 1);
            atomic_fetch_add(&s->n_closes, 1);
            fake_close_rst(fd);
            fd = -1;
            break;
        }
        struct fake_req rq;
        int got = fake_read_request(s, fd, &b, wait_ms, &rq);
        if (got == -2) {
            atomic_fetch_add(&s->n_closes, 1);
            fake_close_graceful(s, fd);
            fd = -1;
            break;
        }
        if (got != 1)
            break;
        if (cfg->mode == FAKE_IDLE_CLOSE && cfg->late != FAKE_LATE_NONE && n_served > 0 &&
            clock_now_ns() - t_idle_since >= (uint64_t)idle_ms * 1000000u) {
            /* It has been idle too long: this request meets the close. */
            atomic_fetch_add(&s->n_unanswered, 1);
            atomic_fetch_add(&s->n_closes, 1);
            if (cfg->late == FAKE_LATE_RST) {
                fake_close_rst(fd);
            } else {
                fake_close_graceful(s, fd);
            }
            fd = -1;
            break;
        }
        if (doomed) { /* FAKE_LATE_FIN: read, never answered */
            atomic_fetch_add(&s->n_unanswered, 1);
            atomic_fetch_add(&s->n_closes, 1);
            fake_close_graceful(s, fd);
            fd = -1;
            break;
        }
        atomic_fetch_add(&s->n_requests, 1);
        n_served++;
        enum fake_after after = FAKE_KEEP;
        int streamed = 0;
        if (!strcmp(rq.method, "GET") && !strcmp(rq.path, "/health")) {
            after =
                fake_json_reply(s, fd, 200, "OK", "{\"status\":\"ok\"}") ? FAKE_CLOSE : FAKE_KEEP;
        } else if (!strcmp(rq.method, "GET") && !strcmp(rq.path, "/v1/models")) {
            after = fake_json_reply(s, fd, 200, "OK",
                                    "{\"object\":\"list\",\"data\":[{\"id\":\"fake-model\","
                                    "\"object\":\"model\",\"owned_by\":\"fake\","
                                    "\"max_model_len\":4096}]}")
                        ? FAKE_CLOSE
                        : FAKE_KEEP;
        } else if (!strcmp(rq.method, "POST") && !strcmp(rq.path, "/v1/completions")) {
            streamed = 1;
            after = fake_completion(s, fd, b.data + rq.body_off, rq.len - (size_t)rq.body_off);
        } else {
            after = fake_json_reply(s, fd, 404, "Not Found",
                                    "{\"error\":{\"message\":\"no such route\",\"code\":404}}")
                        ? FAKE_CLOSE
                        : FAKE_KEEP;
        }
        buf_consume(&b, rq.len);
        t_idle_since = clock_now_ns();
        if (after == FAKE_GONE) {
            fd = -1;
            break;
        }
        if (after == FAKE_CLOSE)
            break;
        int close_now = cfg->mode == FAKE_CONN_CLOSE || cfg->mode == FAKE_HTTP10 ||
                        (cfg->mode == FAKE_CLOSE_EACH && streamed) ||
                        (cfg->mode == FAKE_CLOSE_AFTER_N && n_served >= max_req);
        if (close_now) {
            int late = cfg->late != FAKE_LATE_NONE &&
                       (cfg->mode == FAKE_CLOSE_EACH || cfg->mode == FAKE_CLOSE_AFTER_N);
            if (late) {
                doomed = 1;
                continue;
            }
            atomic_fetch_add(&s->n_closes, 1);
            fake_close_graceful(s, fd);
            fd = -1;
            break;
        }
    }
    if (fd >= 0)
        close(fd);
    buf_free(&b);
    return NULL;
}

static void *fake_accept_main(void *arg)
{
    struct fake_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {s->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        atomic_fetch_add(&s->n_accepts, 1);
        struct fake_conn *fc = calloc(1, sizeof *fc);
        if (!fc) {
            close(fd);
            continue;
        }
        fc->s = s;
        fc->fd = fd;
        if (pthread_create(&fc->thr, NULL, fake_conn_main, fc) != 0) {
            close(fd);
            free(fc);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        fc->next = s->conns;
        s->conns = fc;
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* Listens on 127.0.0.1 at a free port (the kernel picks it). NULL on failure. */
static struct fake_server *fake_start(const struct fake_config *cfg)
{
    struct fake_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (cfg)
        s->cfg = *cfg;
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s->lfd, 1024) != 0 || getsockname(s->lfd, (struct sockaddr *)&a, &al) != 0) {
        if (s->lfd >= 0)
            close(s->lfd);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    s->port = ntohs(a.sin_port);
    snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%d", s->port);
    if (pthread_create(&s->accept_thr, NULL, fake_accept_main, s) != 0) {
        close(s->lfd);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    return s;
}

/* Stops accepting, ends every connection (each thread notices within ~50 ms) and joins them. */
static void fake_stop(struct fake_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, 1);
    pthread_join(s->accept_thr, NULL);
    close(s->lfd);
    struct fake_conn *fc = s->conns;
    while (fc) {
        struct fake_conn *next = fc->next;
        pthread_join(fc->thr, NULL);
        free(fc);
        fc = next;
    }
    pthread_mutex_destroy(&s->mu);
    free(s);
}

#endif
