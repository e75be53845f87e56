/* server: HTTP/1.1 over libevent bufferevents, the vLLM-compatible routes, SSE streaming, the
 * engine-event hand-off between threads, graceful drain on SIGTERM. See server.h for the
 * contract. Threads: the event loop owns every connection, request and metric; the engine thread
 * only pushes events into s->q (under q_mu) and activates s->ev_wake. */
#include "engine/server.h"

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
#include "engine/chat_format.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"

#define HEAD_LINE_CAP 8192         /* one request or header line */
#define HEAD_TOTAL_CAP (64 * 1024) /* request line + headers (+ chunked trailers) */
#define HEAD_MAX_HEADERS 128
#define BUSY_READ_CAP (64 * 1024) /* pipelined bytes buffered while a request runs */
#define OUT_CAP_BYTES (16u << 20) /* unsent response bytes per connection (slow reader) */
#define IDLE_TIMEOUT_S 60         /* keep-alive idle / partial request */
#define CLOSE_TIMEOUT_S 30        /* flushing the last response before closing */
#define LINGER_S 3                /* discarding input after the last response */
#define MAX_CONNS 8192
#define STOP_MAX 16
#define STOP_LEN_MAX 256
#define WAKE_BATCH 4096  /* engine events handled per wake-up before yielding to I/O */
#define HARD_STOP_S 10.0 /* after the grace period: abort, then exit after this */
#define STATS_INTERVAL_S 10

struct server;
struct gen;

enum conn_state {
    CONN_STATE_HEAD = 0,   /* reading request line and headers */
    CONN_STATE_BODY,       /* Content-Length body */
    CONN_STATE_CHUNK_SIZE, /* chunked body: size line */
    CONN_STATE_CHUNK_DATA,
    CONN_STATE_CHUNK_CRLF,
    CONN_STATE_TRAILER,
    CONN_STATE_BUSY,    /* request dispatched; response (maybe streaming) in progress */
    CONN_STATE_CLOSING, /* flushing the last response, then close */
    CONN_STATE_LINGER,  /* response sent, write side shut: discard input until EOF, so that a
                           client still sending its request reads our answer, not a reset */
};

struct http_req {
    char method[16];
    char path[2048]; /* target without the query string */
    int version_minor;
    int is_head;
    int keep_alive;
    int has_content_length;
    uint64_t content_length;
    int chunked;
    int expect_continue;
    int has_auth;
    char auth[512];
    int got_request_line;
    size_t n_head_bytes;
    int n_headers;
    struct buf body;
};

struct conn {
    struct server *srv;
    struct bufferevent *bev;
    enum conn_state state;
    struct http_req req;
    uint64_t body_left;  /* Content-Length bytes still to read, or bytes left in a chunk */
    struct gen *gen;     /* generation in flight on this connection */
    int resp_chunked;    /* current response uses chunked transfer encoding */
    int overflow;        /* client stopped reading: close at the next safe point */
    mono_ns t_linger_ns; /* CONN_STATE_LINGER since */
    char line[HEAD_LINE_CAP + 1];
    struct conn *prev, *next;
};

enum gen_kind { GEN_KIND_COMPLETION = 0, GEN_KIND_CHAT };

struct gen {
    struct server *srv;
    struct conn *conn; /* NULL once the client is gone or its response is complete */
    uint64_t req_id;
    enum gen_kind kind;
    int stream;
    int include_usage;
    int max_tokens;
    char id[48];
    long long created;
    /* from engine events */
    int n_prompt;
    int n_cached;
    int n_generated;  /* engine's count, latest event */
    int n_completion; /* tokens reported to the client (frozen at a stop string) */
    int n_token_events;
    mono_ns t_arrival_ns, t_scheduled_ns, t_first_token_ns, t_last_token_ns;
    /* text */
    struct utf8_stream u8;
    struct buf text;    /* detokenized output, cut before a matched stop string */
    size_t n_text_sent; /* bytes of text already streamed */
    char *stop[STOP_MAX];
    size_t stop_len[STOP_MAX];
    int n_stop;
    size_t max_stop_len;
    int i_stop_hit; /* -1: none */
    /* lifecycle */
    int client_done;
    int engine_done;
    int metrics_done;
    struct gen *prev, *next; /* in-flight list (until engine_done) */
};

struct q_item {
    struct gen *g;
    struct engine_event ev;
};

struct server {
    struct server_config cfg; /* strings below are owned copies */
    enum chat_format chat_fmt; /* from the model's tokenizer.chat_template (server_set_ready) */
    char *host;
    char *api_key;
    char *served_model_name;
    char *model_path;
    int port;

    struct event_base *base;
    struct evconnlistener *listener;
    struct event *ev_wake, *ev_sigterm, *ev_sigint, *ev_grace, *ev_hard, *ev_stats;
    pthread_t thread;
    int thread_started;
    _Atomic int state;
    _Atomic int stop_requested;
    int signals_seen;

    /* published by server_set_ready before state becomes READY */
    struct engine *engine;
    struct model *model;
    struct engine_info info;
    int max_piece_len;
    long long created;

    /* engine thread -> loop thread */
    pthread_mutex_t q_mu;
    struct q_item *q;
    size_t q_cap, q_head, q_len;
    int q_wake_pending;

    /* loop thread only */
    struct conn *conns;
    int n_conns;
    struct gen *gens;
    int n_in_flight;
    struct api_metrics metrics;
    int metrics_ready;
    struct buf scratch; /* response bodies and SSE events */
    uint64_t rng;
    uint64_t n_requests;
    struct engine_stats last_stats;
    mono_ns t_last_stats_ns;
    int last_stats_busy;
};

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

static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Output with a sticky status: a response is either complete or replaced by a 500. */
struct out {
    struct buf *b;
    enum buf_status st;
};

static void o_puts(struct out *o, const char *s)
{
    if (o->st == BUF_OK)
        o->st = buf_puts(o->b, s);
}

static void o_putn(struct out *o, const char *s, size_t n)
{
    if (o->st == BUF_OK)
        o->st = buf_append(o->b, s, n);
}

static void o_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void o_printf(struct out *o, const char *fmt, ...)
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

static void o_jstr(struct out *o, const char *s, size_t n)
{
    if (o->st == BUF_OK)
        o->st = buf_json_strn(o->b, s, n);
}

static const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Request Entity Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    }
    return "Unknown";
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

static enum server_state st_get(const struct server *s)
{
    return (enum server_state)atomic_load(&((struct server *)s)->state);
}

/* ------------------------------------------------------------------------------------------ */
/* connections: writing responses */

static void conn_free(struct conn *c);
static void conn_process_input(struct conn *c);
static void drain_check(struct server *s);
static void gen_free(struct gen *g);

static void conn_set_timeouts(struct conn *c)
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

static void conn_write(struct conn *c, const void *data, size_t n)
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

static void conn_write_head(struct conn *c, int status, const char *content_type,
                            long long content_length, const char *extra_headers)
{
    struct server *s = c->srv;
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (st_get(s) == SERVER_STATE_DRAINING)
        c->req.keep_alive = 0;
    c->resp_chunked = 0;
    if (content_length < 0) {
        if (c->req.version_minor >= 1)
            c->resp_chunked = 1;
        else
            c->req.keep_alive = 0; /* HTTP/1.0: the end of the body is the close */
    }
    char head[1024];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\ndate: %s\r\nserver: slmprobe\r\n",
                     status, http_reason(status), date);
    if (content_type)
        n += snprintf(head + n, sizeof head - (size_t)n, "content-type: %s\r\n", content_type);
    if (content_length >= 0)
        n +=
            snprintf(head + n, sizeof head - (size_t)n, "content-length: %lld\r\n", content_length);
    else if (c->resp_chunked)
        n += snprintf(head + n, sizeof head - (size_t)n, "transfer-encoding: chunked\r\n");
    if (!c->req.keep_alive)
        n += snprintf(head + n, sizeof head - (size_t)n, "connection: close\r\n");
    if (extra_headers)
        n += snprintf(head + n, sizeof head - (size_t)n, "%s", extra_headers);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    conn_write(c, head, (size_t)n < sizeof head ? (size_t)n : sizeof head - 1);
}

/* One piece of a streamed body (a chunk when chunked). */
static void conn_write_chunk(struct conn *c, const void *data, size_t n)
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
static void conn_response_done(struct conn *c)
{
    struct server *s = c->srv;
    c->gen = NULL;
    if (c->req.body.size > (1u << 20)) { /* do not keep a large body buffer per idle conn */
        buf_free(&c->req.body);
        buf_init(&c->req.body, 0, s->cfg.max_body_bytes);
    }
    buf_reset(&c->req.body);
    if (!c->req.keep_alive || c->overflow || st_get(s) == SERVER_STATE_DRAINING) {
        c->state = CONN_STATE_CLOSING;
        bufferevent_disable(c->bev, EV_READ);
        conn_set_timeouts(c);
        /* the write callback closes once the output is empty (it is not empty here) */
        bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
        return;
    }
    c->state = CONN_STATE_HEAD;
    struct buf body = c->req.body;
    memset(&c->req, 0, sizeof c->req);
    c->req.body = body;
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    conn_set_timeouts(c);
    /* pipelined requests already buffered: handle them from the loop, not recursively */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        bufferevent_trigger(c->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS | BEV_TRIG_IGNORE_WATERMARKS);
}

static void conn_send(struct conn *c, int status, const char *content_type, const char *body,
                      size_t len, const char *extra_headers)
{
    conn_write_head(c, status, content_type, (long long)len, extra_headers);
    if (!c->req.is_head && len > 0)
        conn_write(c, body, len);
    conn_response_done(c);
}

/* {"error": {"message", "type", "param", "code"}} */
static void conn_send_error(struct conn *c, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void conn_send_error(struct conn *c, int status, const char *param, const char *fmt, ...)
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
        extra = !strcmp(c->req.path, "/v1/completions") ||
                        !strcmp(c->req.path, "/v1/chat/completions") ||
                        !strcmp(c->req.path, "/tokenize") || !strcmp(c->req.path, "/detokenize") ||
                        !strcmp(c->req.path, "/reset_prefix_cache")
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
    c->req.keep_alive = 0;
    c->state = CONN_STATE_BUSY;
    bufferevent_disable(c->bev, EV_READ);
    conn_send_error(c, status, NULL, "%s", msg);
}

/* ------------------------------------------------------------------------------------------ */
/* generations: engine events -> responses */

static void gen_list_remove(struct server *s, struct gen *g)
{
    if (g->prev)
        g->prev->next = g->next;
    else if (s->gens == g)
        s->gens = g->next;
    if (g->next)
        g->next->prev = g->prev;
    g->prev = g->next = NULL;
}

static void gen_free(struct gen *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_stop; i++)
        free(g->stop[i]);
    buf_free(&g->text);
    free(g);
}

static enum api_finish finish_of(enum engine_finish f)
{
    switch (f) {
    case ENGINE_FINISH_LENGTH:
        return API_FINISH_LENGTH;
    case ENGINE_FINISH_EOS:
        return API_FINISH_STOP;
    default:
        return API_FINISH_ABORT;
    }
}

static void gen_record_metrics(struct gen *g, enum api_finish fin, mono_ns t_finish_ns)
{
    struct server *s = g->srv;
    if (g->metrics_done)
        return;
    g->metrics_done = 1;
    struct api_request_obs o = {
        .t_arrival_ns = g->t_arrival_ns,
        .t_scheduled_ns = g->t_scheduled_ns,
        .t_first_token_ns = g->t_first_token_ns,
        .t_finish_ns = t_finish_ns,
        .n_prompt = g->n_prompt,
        .n_generated = fin == API_FINISH_ABORT ? g->n_generated : g->n_completion,
        .max_tokens = g->max_tokens,
        .finish = fin,
    };
    api_metrics_observe_finished(&s->metrics, &o);
    if (s->cfg.log_requests)
        log_info("serve", "Finished request %s: %s, prompt %d tokens (%d cached), %d generated",
                 g->id, api_finish_str(fin), g->n_prompt, g->n_cached, o.n_generated);
}

static void put_usage(struct out *o, const struct gen *g)
{
    const struct server *s = g->srv;
    o_printf(o, "{\"prompt_tokens\":%d,\"total_tokens\":%d,\"completion_tokens\":%d", g->n_prompt,
             g->n_prompt + g->n_completion, g->n_completion);
    if (s->cfg.enable_prompt_tokens_details) /* 0 included: a miss is a figure too */
        o_printf(o, ",\"prompt_tokens_details\":{\"cached_tokens\":%d}", g->n_cached);
    o_puts(o, "}");
}

static void put_chunk_head(struct out *o, const struct gen *g)
{
    const struct server *s = g->srv;
    o_puts(o, "data: {\"id\":");
    o_jstr(o, g->id, strlen(g->id));
    o_printf(o, ",\"object\":\"%s\",\"created\":%lld,\"model\":",
             g->kind == GEN_KIND_CHAT ? "chat.completion.chunk" : "text_completion", g->created);
    o_jstr(o, s->served_model_name, strlen(s->served_model_name));
}

static void put_stop_reason(struct out *o, const struct gen *g)
{
    o_puts(o, ",\"stop_reason\":");
    if (g->i_stop_hit >= 0)
        o_jstr(o, g->stop[g->i_stop_hit], g->stop_len[g->i_stop_hit]);
    else
        o_puts(o, "null");
}

/* One SSE event with text[from, to) and, when finish is set, the finish reason. */
static void gen_emit_chunk(struct gen *g, size_t from, size_t to, const char *finish, int with_role)
{
    struct server *s = g->srv;
    struct conn *c = g->conn;
    buf_reset(&s->scratch);
    struct out o = {&s->scratch, BUF_OK};
    put_chunk_head(&o, g);
    if (g->kind == GEN_KIND_CHAT) {
        o_puts(&o, ",\"choices\":[{\"index\":0,\"delta\":{");
        if (with_role)
            o_puts(&o, "\"role\":\"assistant\",");
        o_puts(&o, "\"content\":");
        o_jstr(&o, g->text.data + from, to - from);
        o_puts(&o, "},\"logprobs\":null,\"finish_reason\":");
        if (finish) {
            o_printf(&o, "\"%s\"", finish);
            put_stop_reason(&o, g);
        } else {
            o_puts(&o, "null");
        }
        o_puts(&o, "}]}\n\n");
    } else {
        o_puts(&o, ",\"choices\":[{\"index\":0,\"text\":");
        o_jstr(&o, g->text.data + from, to - from);
        o_puts(&o, ",\"logprobs\":null,\"finish_reason\":");
        if (finish)
            o_printf(&o, "\"%s\"", finish);
        else
            o_puts(&o, "null");
        if (finish)
            put_stop_reason(&o, g);
        else
            o_puts(&o, ",\"stop_reason\":null");
        o_puts(&o, "}],\"usage\":null}\n\n");
    }
    if (o.st != BUF_OK) {
        log_error("serve", "%s: SSE event over the buffer cap", g->id);
        c->overflow = 1;
        return;
    }
    conn_write_chunk(c, s->scratch.data, s->scratch.len);
}

/* Bytes of text that may be streamed now: all but the last max_stop_len-1 (a stop string may
 * still be completing there), never splitting a UTF-8 character. */
static size_t gen_sendable(const struct gen *g)
{
    size_t hold = g->max_stop_len > 0 ? g->max_stop_len - 1 : 0;
    if (g->text.len <= hold)
        return g->n_text_sent;
    size_t end = g->text.len - hold;
    while (end > g->n_text_sent && ((unsigned char)g->text.data[end] & 0xC0) == 0x80)
        end--;
    return end > g->n_text_sent ? end : g->n_text_sent;
}

/* Complete the client's response. The engine request may still be running (stop string). */
static void gen_finish_client(struct gen *g, enum api_finish fin, mono_ns t_finish_ns)
{
    struct server *s = g->srv;
    struct conn *c = g->conn;
    if (g->client_done)
        return;
    g->client_done = 1;
    if (g->i_stop_hit < 0)
        utf8_stream_flush(&g->u8, &g->text);
    const char *finish = api_finish_str(fin);
    gen_record_metrics(g, fin, t_finish_ns);
    if (!c)
        return;
    if (g->stream) {
        gen_emit_chunk(g, g->n_text_sent, g->text.len, finish, 0);
        g->n_text_sent = g->text.len;
        if (g->include_usage) {
            buf_reset(&s->scratch);
            struct out o = {&s->scratch, BUF_OK};
            put_chunk_head(&o, g);
            o_puts(&o, ",\"choices\":[],\"usage\":");
            put_usage(&o, g);
            o_puts(&o, "}\n\n");
            if (o.st == BUF_OK)
                conn_write_chunk(c, s->scratch.data, s->scratch.len);
        }
        static const char done[] = "data: [DONE]\n\n";
        conn_write_chunk(c, done, sizeof done - 1);
        if (c->resp_chunked)
            conn_write(c, "0\r\n\r\n", 5);
        g->conn = NULL;
        conn_response_done(c);
        return;
    }
    g->conn = NULL;
    buf_reset(&s->scratch);
    struct out o = {&s->scratch, BUF_OK};
    o_puts(&o, "{\"id\":");
    o_jstr(&o, g->id, strlen(g->id));
    o_printf(&o, ",\"object\":\"%s\",\"created\":%lld,\"model\":",
             g->kind == GEN_KIND_CHAT ? "chat.completion" : "text_completion", g->created);
    o_jstr(&o, s->served_model_name, strlen(s->served_model_name));
    if (g->kind == GEN_KIND_CHAT) {
        o_puts(&o, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        o_jstr(&o, g->text.data, g->text.len);
        o_puts(&o, ",\"tool_calls\":[]},\"logprobs\":null,\"finish_reason\":");
    } else {
        o_puts(&o, ",\"choices\":[{\"index\":0,\"text\":");
        o_jstr(&o, g->text.data, g->text.len);
        o_puts(&o, ",\"logprobs\":null,\"finish_reason\":");
    }
    o_printf(&o, "\"%s\"", finish);
    put_stop_reason(&o, g);
    o_puts(&o, "}],\"usage\":");
    put_usage(&o, g);
    o_puts(&o, "}");
    if (o.st != BUF_OK) {
        conn_send_error(c, 500, NULL, "response larger than the server's buffer cap");
        return;
    }
    conn_send(c, 200, "application/json", s->scratch.data, s->scratch.len, NULL);
}

/* Appends a token's text and looks for stop strings in the new tail. */
static void gen_add_token(struct gen *g, int32_t token)
{
    const struct tokenizer *tok = &g->srv->model->tok;
    if (tokenizer_is_eog(tok, token) || token == tok->bos_id)
        return;
    size_t n = 0;
    const char *piece = tokenizer_piece(tok, token, &n);
    if (!piece || n == 0)
        return;
    size_t old = g->text.len;
    if (utf8_stream_feed(&g->u8, piece, n, &g->text) != BUF_OK) {
        log_error("serve", "%s: output text over its cap (%zu bytes)", g->id, g->text.cap_bytes);
        return;
    }
    size_t best = (size_t)-1;
    for (int i = 0; i < g->n_stop; i++) {
        size_t L = g->stop_len[i];
        if (g->text.len < L)
            continue;
        size_t from = old >= L - 1 ? old - (L - 1) : 0;
        const char *hit = memmem(g->text.data + from, g->text.len - from, g->stop[i], L);
        if (hit && (size_t)(hit - g->text.data) < best) {
            best = (size_t)(hit - g->text.data);
            g->i_stop_hit = i;
        }
    }
    if (g->i_stop_hit >= 0) {
        g->text.len = best;
        g->text.data[best] = 0;
    }
}

static void gen_on_event(struct gen *g, const struct engine_event *ev)
{
    struct server *s = g->srv;
    if (g->engine_done)
        return;
    g->n_prompt = ev->n_prompt;
    g->n_cached = ev->n_cached;
    g->n_generated = ev->n_generated;
    g->t_arrival_ns = ev->t_arrival_ns;
    if (ev->t_scheduled_ns)
        g->t_scheduled_ns = ev->t_scheduled_ns;
    if (ev->token >= 0) {
        if (g->n_token_events == 0) {
            g->t_first_token_ns = ev->t_first_token_ns ? ev->t_first_token_ns : ev->t_event_ns;
            api_metrics_observe_ttft(&s->metrics,
                                     g->t_first_token_ns >= g->t_arrival_ns
                                         ? ns_to_s(g->t_first_token_ns - g->t_arrival_ns)
                                         : 0.0);
        } else if (!g->client_done) {
            api_metrics_observe_itl(&s->metrics, ev->t_event_ns >= g->t_last_token_ns
                                                     ? ns_to_s(ev->t_event_ns - g->t_last_token_ns)
                                                     : 0.0);
        }
        g->t_last_token_ns = ev->t_event_ns;
        g->n_token_events++;
        if (!g->client_done) {
            g->n_completion = ev->n_generated;
            gen_add_token(g, ev->token);
        }
    }

    struct conn *c = g->conn;
    if (ev->finish != ENGINE_FINISH_NONE) {
        g->engine_done = 1;
        gen_list_remove(s, g);
        s->n_in_flight--;
        if (!g->client_done) {
            enum api_finish fin = g->i_stop_hit >= 0 ? API_FINISH_STOP : finish_of(ev->finish);
            gen_finish_client(g, fin, ev->t_event_ns);
        } else {
            gen_record_metrics(g, API_FINISH_ABORT, ev->t_event_ns);
        }
        if (c && c->overflow)
            conn_free(c);
        gen_free(g);
        drain_check(s);
        return;
    }
    if (g->client_done)
        return;
    if (g->i_stop_hit >= 0) {
        /* stop string: answer now, and stop generating */
        gen_finish_client(g, API_FINISH_STOP, ev->t_event_ns);
        engine_abort(s->engine, g->req_id);
    } else if (g->stream && c && ev->token >= 0) {
        size_t end = gen_sendable(g);
        gen_emit_chunk(g, g->n_text_sent, end, NULL, 0);
        g->n_text_sent = end;
    }
    if (c && c->overflow)
        conn_free(c); /* aborts the request; g stays until the engine's final event */
}

/* Engine thread. */
static void server_on_engine_event(void *ud, const struct engine_event *ev)
{
    struct gen *g = ud;
    struct server *s = g->srv;
    int wake = 0;
    pthread_mutex_lock(&s->q_mu);
    if (s->q_len == s->q_cap) {
        /* grow (rare): never drop an event, never block the engine thread */
        size_t cap = s->q_cap * 2;
        struct q_item *q = xmalloc(cap * sizeof *q);
        for (size_t i = 0; i < s->q_len; i++)
            q[i] = s->q[(s->q_head + i) % s->q_cap];
        free(s->q);
        s->q = q;
        s->q_cap = cap;
        s->q_head = 0;
    }
    struct q_item *it = &s->q[(s->q_head + s->q_len) % s->q_cap];
    it->g = g;
    it->ev = *ev;
    s->q_len++;
    if (!s->q_wake_pending) {
        s->q_wake_pending = 1;
        wake = 1;
    }
    pthread_mutex_unlock(&s->q_mu);
    if (wake)
        event_active(s->ev_wake, EV_READ, 0);
}

static int q_pop(struct server *s, struct q_item *out)
{
    int got = 0;
    pthread_mutex_lock(&s->q_mu);
    if (s->q_len > 0) {
        *out = s->q[s->q_head];
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
        got = 1;
    } else {
        s->q_wake_pending = 0;
    }
    pthread_mutex_unlock(&s->q_mu);
    return got;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    struct q_item it;
    for (int i = 0; i < WAKE_BATCH; i++) {
        if (!q_pop(s, &it))
            return;
        gen_on_event(it.g, &it.ev);
    }
    event_active(s->ev_wake, EV_READ, 0); /* more queued: let I/O run first */
}

/* ------------------------------------------------------------------------------------------ */
/* request parsing helpers */

struct perr {
    int status;
    const char *param;
    char msg[512];
};

static int perr_set(struct perr *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int perr_set(struct perr *e, int status, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = status;
    e->param = param;
    return -1;
}

static int is_absent(const struct json *v)
{
    enum json_type t = json_type_of(v);
    return t == JSON_TYPE_NONE || t == JSON_TYPE_NULL;
}

/* Integer field (integral reals accepted, as pydantic does). 0 absent, 1 present, -1 error. */
static int get_int(const struct json *obj, const char *key, long long *out, struct perr *e)
{
    const struct json *v = json_get(obj, key);
    if (is_absent(v))
        return 0;
    if (json_int(v, out) == 0)
        return 1;
    double d;
    if (json_type_of(v) == JSON_TYPE_REAL && json_num(v, &d) == 0 && d == (double)(long long)d) {
        *out = (long long)d;
        return 1;
    }
    return perr_set(e, 400, key, "'%s' must be an integer, got %s", key,
                    json_type_str(json_type_of(v)));
}

static int get_num(const struct json *obj, const char *key, double *out, struct perr *e)
{
    const struct json *v = json_get(obj, key);
    if (is_absent(v))
        return 0;
    if (json_num(v, out) == 0 && *out == *out)
        return 1;
    return perr_set(e, 400, key, "'%s' must be a number, got %s", key,
                    json_type_str(json_type_of(v)));
}

static int get_bool(const struct json *obj, const char *key, int *out, struct perr *e)
{
    const struct json *v = json_get(obj, key);
    if (is_absent(v))
        return 0;
    if (json_bool(v, out) == 0)
        return 1;
    return perr_set(e, 400, key, "'%s' must be a boolean, got %s", key,
                    json_type_str(json_type_of(v)));
}

struct gen_params {
    int32_t *prompt;
    int n_prompt;
    struct sampling_params sp;
    int has_max_tokens;
    int stream;
    int include_usage;
    const char *stop[STOP_MAX];
    size_t stop_len[STOP_MAX];
    int n_stop;
};

/* Fields we cannot honour are refused rather than ignored (they would change the output). */
static int check_unsupported(const struct json *root, struct perr *e)
{
    long long n;
    double d;
    int b, r;
    if ((r = get_int(root, "n", &n, e)) < 0)
        return -1;
    if (r && n != 1)
        return perr_set(e, 400, "n", "n=%lld is not supported by slmprobe serve (only n=1)", n);
    if ((r = get_int(root, "best_of", &n, e)) < 0)
        return -1;
    if (r && n != 1)
        return perr_set(e, 400, "best_of", "best_of=%lld is not supported by slmprobe serve", n);
    if ((r = get_bool(root, "echo", &b, e)) < 0)
        return -1;
    if (r && b)
        return perr_set(e, 400, "echo", "echo is not supported by slmprobe serve");
    const struct json *lp = json_get(root, "logprobs");
    if (!is_absent(lp) && !(json_bool(lp, &b) == 0 && !b))
        return perr_set(e, 400, "logprobs", "logprobs are not supported by slmprobe serve");
    if ((r = get_int(root, "top_k", &n, e)) < 0)
        return -1;
    if (r && n != -1 && n != 0)
        return perr_set(e, 400, "top_k", "top_k is not supported by slmprobe serve");
    static const char *zero_keys[] = {"presence_penalty", "frequency_penalty", "min_p"};
    for (size_t i = 0; i < sizeof zero_keys / sizeof zero_keys[0]; i++) {
        if ((r = get_num(root, zero_keys[i], &d, e)) < 0)
            return -1;
        if (r && d != 0)
            return perr_set(e, 400, zero_keys[i], "%s is not supported by slmprobe serve",
                            zero_keys[i]);
    }
    if ((r = get_num(root, "repetition_penalty", &d, e)) < 0)
        return -1;
    if (r && d != 1.0)
        return perr_set(e, 400, "repetition_penalty",
                        "repetition_penalty is not supported by slmprobe serve");
    return 0;
}

static int check_model(struct server *s, const struct json *root, struct perr *e)
{
    const struct json *m = json_get(root, "model");
    if (is_absent(m))
        return 0;
    size_t n;
    const char *name = json_str(m, &n);
    if (!name)
        return perr_set(e, 400, "model", "'model' must be a string, got %s",
                        json_type_str(json_type_of(m)));
    if (strlen(s->served_model_name) != n || memcmp(name, s->served_model_name, n) != 0)
        return perr_set(e, 404, "model", "The model `%.*s` does not exist.",
                        (int)(n > 200 ? 200 : n), name);
    return 0;
}

/* Token ids from a JSON array of integers. */
static int parse_token_array(struct server *s, const struct json *arr, const char *param,
                             int32_t **out, int *n_out, struct perr *e)
{
    size_t n = json_len(arr);
    if (n > (size_t)INT32_MAX / 2)
        return perr_set(e, 400, param, "too many tokens");
    int32_t *ids = xmalloc((n ? n : 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        long long v;
        if (json_int(json_at(arr, i), &v) != 0) {
            free(ids);
            return perr_set(e, 400, param, "'%s' must be a list of integers (item %zu is %s)",
                            param, i, json_type_str(json_type_of(json_at(arr, i))));
        }
        if (v < 0 || v >= s->model->tok.n_vocab) {
            free(ids);
            return perr_set(e, 400, param, "Token id %lld is out of vocabulary (size %d)", v,
                            s->model->tok.n_vocab);
        }
        ids[i] = (int32_t)v;
    }
    *out = ids;
    *n_out = (int)n;
    return 0;
}

static int encode_text(struct server *s, const char *text, size_t len, int32_t **out, int *n_out,
                       struct perr *e, const char *param)
{
    if (len > (size_t)INT32_MAX / 2)
        return perr_set(e, 400, param, "prompt too long");
    const struct tokenizer *tok = &s->model->tok;
    size_t bos = tok->add_bos && tok->bos_id >= 0; /* tokenizer.ggml.add_bos_token */
    int32_t *ids = xmalloc((len + bos + 1) * sizeof *ids);
    size_t n = tokenizer_encode(tok, text, len, ids + bos, len);
    if (n > len) { /* SPM's space prefix can add a token; never trust a count blindly */
        free(ids);
        ids = xmalloc((n + bos) * sizeof *ids);
        tokenizer_encode(tok, text, len, ids + bos, n);
    }
    if (bos)
        ids[0] = tok->bos_id;
    *out = ids;
    *n_out = (int)(n + bos);
    return 0;
}

/* "prompt": string | [int] | [string] | [[int]] */
static int parse_prompt(struct server *s, const struct json *root, int32_t **out, int *n_out,
                        struct perr *e)
{
    const struct json *p = json_get(root, "prompt");
    if (is_absent(p))
        return perr_set(e, 400, "prompt", "'prompt' is required");
    size_t len;
    const char *text = json_str(p, &len);
    if (text)
        return encode_text(s, text, len, out, n_out, e, "prompt");
    if (json_type_of(p) != JSON_TYPE_ARRAY)
        return perr_set(e, 400, "prompt",
                        "'prompt' must be a string, a list of token ids or a list of one string, "
                        "got %s",
                        json_type_str(json_type_of(p)));
    const struct json *first = json_at(p, 0);
    enum json_type t0 = json_type_of(first);
    if (t0 == JSON_TYPE_STRING || t0 == JSON_TYPE_ARRAY) {
        if (json_len(p) != 1)
            return perr_set(e, 400, "prompt",
                            "batched prompts (%zu) are not supported by slmprobe serve; send one "
                            "prompt per request",
                            json_len(p));
        if (t0 == JSON_TYPE_STRING) {
            text = json_str(first, &len);
            return encode_text(s, text, len, out, n_out, e, "prompt");
        }
        return parse_token_array(s, first, "prompt", out, n_out, e);
    }
    return parse_token_array(s, p, "prompt", out, n_out, e);
}

/* Chat format (docs/serve.md, chat_format.h) chosen from the model's tokenizer.chat_template. */
static int build_chat_prompt(const struct json *root, int add_generation_prompt, struct buf *b,
                             struct perr *e, enum chat_format fmt)
{
    const struct json *msgs = json_get(root, "messages");
    if (is_absent(msgs))
        return perr_set(e, 400, "messages", "'messages' is required");
    if (json_type_of(msgs) != JSON_TYPE_ARRAY || json_len(msgs) == 0)
        return perr_set(e, 400, "messages", "'messages' must be a non-empty list of messages");
    struct out o = {b, BUF_OK};
    for (size_t i = 0; i < json_len(msgs); i++) {
        const struct json *m = json_at(msgs, i);
        if (json_type_of(m) != JSON_TYPE_OBJECT)
            return perr_set(e, 400, "messages", "message %zu must be an object", i);
        size_t rlen;
        const char *role = json_str(json_get(m, "role"), &rlen);
        if (!role || rlen == 0 || rlen > 64 || memchr(role, '\n', rlen) || memchr(role, '|', rlen))
            return perr_set(e, 400, "messages",
                            "message %zu needs a 'role' string (1-64 bytes, no '|' or newline)", i);
        o.st = o.st ? o.st : chat_format_open(fmt, role, rlen, b);
        const struct json *content = json_get(m, "content");
        size_t clen;
        const char *ctext = json_str(content, &clen);
        if (ctext) {
            o_putn(&o, ctext, clen);
        } else if (json_type_of(content) == JSON_TYPE_ARRAY) {
            for (size_t k = 0; k < json_len(content); k++) {
                const struct json *part = json_at(content, k);
                const char *type = json_str(json_get(part, "type"), NULL);
                const char *ptext = json_str(json_get(part, "text"), &clen);
                if (!type || strcmp(type, "text") != 0 || !ptext)
                    return perr_set(e, 400, "messages",
                                    "message %zu: only {\"type\": \"text\", \"text\": ...} content "
                                    "parts are supported",
                                    i);
                o_putn(&o, ptext, clen);
            }
        } else if (!is_absent(content)) {
            return perr_set(e, 400, "messages",
                            "message %zu: 'content' must be a string or a list of text parts", i);
        }
        o.st = o.st ? o.st : chat_format_close(fmt, b);
    }
    if (add_generation_prompt)
        o.st = o.st ? o.st : chat_format_generation_prompt(fmt, b);
    if (o.st != BUF_OK)
        return perr_set(e, 413, "messages", "chat prompt larger than %zu bytes", b->cap_bytes);
    return 0;
}

static int parse_stop(const struct json *root, struct gen_params *p, struct perr *e)
{
    const struct json *v = json_get(root, "stop");
    if (is_absent(v))
        return 0;
    size_t n = 1;
    int is_list = json_type_of(v) == JSON_TYPE_ARRAY;
    if (is_list)
        n = json_len(v);
    else if (json_type_of(v) != JSON_TYPE_STRING)
        return perr_set(e, 400, "stop", "'stop' must be a string or a list of strings, got %s",
                        json_type_str(json_type_of(v)));
    if (n > STOP_MAX)
        return perr_set(e, 400, "stop", "at most %d stop strings are supported, got %zu", STOP_MAX,
                        n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *str = json_str(is_list ? json_at(v, i) : v, &len);
        if (!str)
            return perr_set(e, 400, "stop", "'stop' must be a string or a list of strings");
        if (len == 0)
            return perr_set(e, 400, "stop", "stop cannot contain an empty string.");
        if (len > STOP_LEN_MAX)
            return perr_set(e, 400, "stop", "stop strings are limited to %d bytes", STOP_LEN_MAX);
        p->stop[p->n_stop] = str;
        p->stop_len[p->n_stop] = len;
        p->n_stop++;
    }
    return 0;
}

/* Sampling fields shared by completions and chat. */
static int parse_sampling(struct server *s, const struct json *root, enum gen_kind kind,
                          struct gen_params *p, struct perr *e)
{
    long long n;
    double d;
    int b, r;
    p->sp.max_tokens = 16;
    p->sp.temperature = 1.0f;
    p->sp.top_p = 1.0f;
    if (kind == GEN_KIND_CHAT) {
        if ((r = get_int(root, "max_completion_tokens", &n, e)) < 0)
            return -1;
        if (r) {
            p->has_max_tokens = 1;
            if (n < 1)
                return perr_set(e, 400, "max_completion_tokens",
                                "max_completion_tokens must be at least 1, got %lld.", n);
            p->sp.max_tokens = n > INT32_MAX ? INT32_MAX : (int)n;
        }
    }
    if (!p->has_max_tokens) {
        if ((r = get_int(root, "max_tokens", &n, e)) < 0)
            return -1;
        if (r) {
            p->has_max_tokens = 1;
            if (n < 1)
                return perr_set(e, 400, "max_tokens", "max_tokens must be at least 1, got %lld.",
                                n);
            p->sp.max_tokens = n > INT32_MAX ? INT32_MAX : (int)n;
        }
    }
    if ((r = get_num(root, "temperature", &d, e)) < 0)
        return -1;
    if (r) {
        if (d < 0)
            return perr_set(e, 400, "temperature", "temperature must be non-negative, got %g.", d);
        p->sp.temperature = (float)d;
    }
    if ((r = get_num(root, "top_p", &d, e)) < 0)
        return -1;
    if (r) {
        if (!(d > 0 && d <= 1))
            return perr_set(e, 400, "top_p", "top_p must be in (0, 1], got %g.", d);
        p->sp.top_p = (float)d;
    }
    if ((r = get_int(root, "seed", &n, e)) < 0)
        return -1;
    if (r) {
        p->sp.seed = (uint64_t)n;
        p->sp.has_seed = 1;
    } else if (s->cfg.has_seed) {
        uint64_t st = s->cfg.seed + s->n_requests;
        p->sp.seed = rng_next(&st);
        p->sp.has_seed = 1;
    }
    if ((r = get_bool(root, "ignore_eos", &b, e)) < 0)
        return -1;
    if (r)
        p->sp.ignore_eos = b;
    if ((r = get_int(root, "min_tokens", &n, e)) < 0)
        return -1;
    if (r) {
        if (n < 0)
            return perr_set(e, 400, "min_tokens",
                            "min_tokens must be greater than or equal to 0, got %lld.", n);
        p->sp.min_tokens = n > INT32_MAX ? INT32_MAX : (int)n;
    }
    if (parse_stop(root, p, e) < 0)
        return -1;
    if ((r = get_bool(root, "stream", &b, e)) < 0)
        return -1;
    p->stream = r ? b : 0;
    const struct json *so = json_get(root, "stream_options");
    if (!is_absent(so)) {
        if (json_type_of(so) != JSON_TYPE_OBJECT)
            return perr_set(e, 400, "stream_options", "'stream_options' must be an object, got %s",
                            json_type_str(json_type_of(so)));
        if (!p->stream)
            return perr_set(e, 400, "stream_options",
                            "Stream options can only be defined when `stream=True`.");
        if ((r = get_bool(so, "include_usage", &b, e)) < 0)
            return perr_set(e, 400, "stream_options",
                            "'stream_options.include_usage' must be a boolean");
        p->include_usage = r ? b : 0;
    }
    return check_unsupported(root, e);
}

/* Length checks with vLLM's messages. */
static int check_lengths(struct server *s, struct gen_params *p, enum gen_kind kind, struct perr *e)
{
    int max_len = s->info.max_model_len;
    if (p->n_prompt < 1)
        return perr_set(e, 400, "prompt", "The prompt cannot be empty.");
    if (p->n_prompt >= max_len)
        return perr_set(e, 400, "input_tokens",
                        "This model's maximum context length is %d tokens. However, your request "
                        "has %d input tokens. Please reduce the length of the input messages.",
                        max_len, p->n_prompt);
    if (kind == GEN_KIND_CHAT && !p->has_max_tokens)
        p->sp.max_tokens = max_len - p->n_prompt; /* vLLM: the rest of the context */
    if ((long long)p->n_prompt + p->sp.max_tokens > max_len)
        return perr_set(e, 400, "max_tokens",
                        "This model's maximum context length is %d tokens. However, you requested "
                        "%d output tokens and your prompt contains %d input tokens, for a total of "
                        "%lld tokens. Please reduce the length of the input prompt or the number "
                        "of requested output tokens.",
                        max_len, p->sp.max_tokens, p->n_prompt,
                        (long long)p->n_prompt + p->sp.max_tokens);
    if (p->sp.min_tokens > p->sp.max_tokens)
        return perr_set(e, 400, "min_tokens",
                        "min_tokens must be less than or equal to max_tokens=%d, got %d.",
                        p->sp.max_tokens, p->sp.min_tokens);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* route handlers */

static struct json *parse_body(struct conn *c, struct perr *e)
{
    char jerr[200];
    struct json *root =
        json_parse(c->req.body.data ? c->req.body.data : "", c->req.body.len, jerr, sizeof jerr);
    if (!root) {
        perr_set(e, 400, NULL, "JSON decode error: %s", jerr);
        return NULL;
    }
    if (json_type_of(root) != JSON_TYPE_OBJECT) {
        json_free(root);
        perr_set(e, 400, NULL, "The request body must be a JSON object");
        return NULL;
    }
    return root;
}

static void handle_generate(struct conn *c, enum gen_kind kind)
{
    struct server *s = c->srv;
    struct perr e = {0};
    struct gen_params p = {0};
    struct gen *g = NULL;
    struct buf chat;
    buf_init(&chat, 0, s->cfg.max_body_bytes * 2 + 4096);
    struct json *root = parse_body(c, &e);
    if (!root)
        goto fail;
    if (check_model(s, root, &e) < 0)
        goto fail;
    if (kind == GEN_KIND_CHAT) {
        int add_gen = 1, r;
        if ((r = get_bool(root, "add_generation_prompt", &add_gen, &e)) < 0)
            goto fail;
        if (!r)
            add_gen = 1;
        if (build_chat_prompt(root, add_gen, &chat, &e, s->chat_fmt) < 0)
            goto fail;
        if (encode_text(s, chat.data ? chat.data : "", chat.len, &p.prompt, &p.n_prompt, &e,
                        "messages") < 0)
            goto fail;
    } else if (parse_prompt(s, root, &p.prompt, &p.n_prompt, &e) < 0) {
        goto fail;
    }
    if (parse_sampling(s, root, kind, &p, &e) < 0)
        goto fail;
    if (check_lengths(s, &p, kind, &e) < 0)
        goto fail;

    g = xcalloc(1, sizeof *g);
    g->srv = s;
    g->kind = kind;
    g->stream = p.stream;
    g->include_usage = p.include_usage;
    g->max_tokens = p.sp.max_tokens;
    g->n_prompt = p.n_prompt;
    g->i_stop_hit = -1;
    g->created = (long long)clock_wall_s();
    uint64_t r1 = rng_next(&s->rng), r2 = rng_next(&s->rng);
    snprintf(g->id, sizeof g->id, "%s-%016llx%016llx", kind == GEN_KIND_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)r1, (unsigned long long)r2);
    for (int i = 0; i < p.n_stop; i++) {
        g->stop[i] = xstrndup(p.stop[i], p.stop_len[i]);
        g->stop_len[i] = p.stop_len[i];
        if (p.stop_len[i] > g->max_stop_len)
            g->max_stop_len = p.stop_len[i];
    }
    g->n_stop = p.n_stop;
    size_t text_cap = ((size_t)p.sp.max_tokens + 2) * ((size_t)s->max_piece_len + 4) + 64;
    buf_init(&g->text, 256, text_cap);

    struct engine_request req = {.prompt = p.prompt, .n_prompt = p.n_prompt, .sp = p.sp};
    enum engine_status est = engine_submit(s->engine, &req, server_on_engine_event, g, &g->req_id);
    if (est != ENGINE_OK) {
        if (est == ENGINE_ERR_STOPPED)
            perr_set(&e, 503, NULL, "The server is shutting down");
        else
            perr_set(&e, 400, NULL, "The engine refused the request: %s", engine_status_str(est));
        goto fail;
    }
    s->n_requests++;
    g->next = s->gens;
    if (s->gens)
        s->gens->prev = g;
    s->gens = g;
    s->n_in_flight++;
    g->conn = c;
    c->gen = g;
    c->state = CONN_STATE_BUSY;
    bufferevent_setwatermark(c->bev, EV_READ, 0, BUSY_READ_CAP);
    conn_set_timeouts(c);
    if (s->cfg.log_requests)
        log_info("serve",
                 "Received request %s: prompt %d tokens, max_tokens %d, temperature %g, "
                 "stream %s",
                 g->id, p.n_prompt, p.sp.max_tokens, (double)p.sp.temperature,
                 p.stream ? "true" : "false");
    if (g->stream) {
        conn_write_head(c, 200, "text/event-stream; charset=utf-8", -1, NULL);
        if (kind == GEN_KIND_CHAT)
            gen_emit_chunk(g, 0, 0, NULL, 1);
    }
    free(p.prompt);
    json_free(root);
    buf_free(&chat);
    return;

fail:
    gen_free(g);
    free(p.prompt);
    json_free(root);
    buf_free(&chat);
    conn_send_error(c, e.status ? e.status : 400, e.param, "%s", e.msg);
}

static void handle_models(struct conn *c)
{
    struct server *s = c->srv;
    buf_reset(&s->scratch);
    struct out o = {&s->scratch, BUF_OK};
    uint64_t r = rng_next(&s->rng);
    o_puts(&o, "{\"object\":\"list\",\"data\":[{\"id\":");
    o_jstr(&o, s->served_model_name, strlen(s->served_model_name));
    o_printf(&o, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"slmprobe\",\"root\":",
             s->created);
    const char *root = s->model_path ? s->model_path : s->served_model_name;
    o_jstr(&o, root, strlen(root));
    o_printf(&o,
             ",\"parent\":null,\"max_model_len\":%d,\"permission\":[{\"id\":\"modelperm-%016llx\","
             "\"object\":\"model_permission\",\"created\":%lld,\"allow_create_engine\":false,"
             "\"allow_sampling\":true,\"allow_logprobs\":false,\"allow_search_indices\":false,"
             "\"allow_view\":true,\"allow_fine_tuning\":false,\"organization\":\"*\","
             "\"group\":null,\"is_blocking\":false}]}]}",
             s->info.max_model_len, (unsigned long long)r, s->created);
    conn_send(c, 200, "application/json", s->scratch.data, s->scratch.len, NULL);
}

static void handle_tokenize(struct conn *c)
{
    struct server *s = c->srv;
    struct perr e = {0};
    int32_t *ids = NULL;
    int n = 0;
    struct buf chat;
    buf_init(&chat, 0, s->cfg.max_body_bytes * 2 + 4096);
    struct json *root = parse_body(c, &e);
    if (!root || check_model(s, root, &e) < 0)
        goto fail;
    int add_special, r;
    if ((r = get_bool(root, "add_special_tokens", &add_special, &e)) < 0)
        goto fail;
    if (!is_absent(json_get(root, "messages"))) {
        int add_gen = 1;
        if ((r = get_bool(root, "add_generation_prompt", &add_gen, &e)) < 0)
            goto fail;
        if (!r)
            add_gen = 1;
        if (build_chat_prompt(root, add_gen, &chat, &e, s->chat_fmt) < 0 ||
            encode_text(s, chat.data ? chat.data : "", chat.len, &ids, &n, &e, "messages") < 0)
            goto fail;
    } else {
        const struct json *p = json_get(root, "prompt");
        size_t len;
        const char *text = json_str(p, &len);
        if (!text)
            goto bad_prompt;
        if (encode_text(s, text, len, &ids, &n, &e, "prompt") < 0)
            goto fail;
    }
    buf_reset(&s->scratch);
    struct out o = {&s->scratch, BUF_OK};
    o_printf(&o, "{\"count\":%d,\"max_model_len\":%d,\"tokens\":[", n, s->info.max_model_len);
    for (int i = 0; i < n; i++)
        o_printf(&o, i ? ",%d" : "%d", (int)ids[i]);
    o_puts(&o, "],\"token_strs\":null}");
    free(ids);
    json_free(root);
    buf_free(&chat);
    if (o.st != BUF_OK) {
        conn_send_error(c, 500, NULL, "response larger than the server's buffer cap");
        return;
    }
    conn_send(c, 200, "application/json", s->scratch.data, s->scratch.len, NULL);
    return;

bad_prompt:
    perr_set(&e, 400, "prompt", "'prompt' (a string) or 'messages' is required");
fail:
    free(ids);
    json_free(root);
    buf_free(&chat);
    conn_send_error(c, e.status ? e.status : 400, e.param, "%s", e.msg);
}

static void handle_detokenize(struct conn *c)
{
    struct server *s = c->srv;
    struct perr e = {0};
    int32_t *ids = NULL;
    int n = 0;
    struct buf text;
    buf_init(&text, 0, s->scratch.cap_bytes / 2);
    struct json *root = parse_body(c, &e);
    if (!root || check_model(s, root, &e) < 0)
        goto fail;
    const struct json *t = json_get(root, "tokens");
    if (json_type_of(t) != JSON_TYPE_ARRAY) {
        perr_set(&e, 400, "tokens", "'tokens' (a list of token ids) is required");
        goto fail;
    }
    if (parse_token_array(s, t, "tokens", &ids, &n, &e) < 0)
        goto fail;
    if (tokenizer_decode(&s->model->tok, ids, (size_t)n, &text) != BUF_OK) {
        perr_set(&e, 413, "tokens", "detokenized text larger than %zu bytes", text.cap_bytes);
        goto fail;
    }
    buf_reset(&s->scratch);
    struct out o = {&s->scratch, BUF_OK};
    o_puts(&o, "{\"prompt\":");
    o_jstr(&o, text.data ? text.data : "", text.len);
    o_puts(&o, "}");
    free(ids);
    json_free(root);
    buf_free(&text);
    if (o.st != BUF_OK) {
        conn_send_error(c, 500, NULL, "response larger than the server's buffer cap");
        return;
    }
    conn_send(c, 200, "application/json", s->scratch.data, s->scratch.len, NULL);
    return;

fail:
    free(ids);
    json_free(root);
    buf_free(&text);
    conn_send_error(c, e.status ? e.status : 400, e.param, "%s", e.msg);
}

static void handle_metrics(struct conn *c)
{
    struct server *s = c->srv;
    struct engine_stats st;
    engine_get_stats(s->engine, &st);
    buf_reset(&s->scratch);
    if (api_metrics_render(&s->metrics, s->served_model_name, &st, &s->info, &s->scratch) !=
        BUF_OK) {
        conn_send_error(c, 500, NULL, "metrics page larger than the server's buffer cap");
        return;
    }
    conn_send(c, 200, "text/plain; version=0.0.4; charset=utf-8", s->scratch.data, s->scratch.len,
              NULL);
}

/* Constant-time comparison of the Authorization header with "Bearer KEY". */
static int auth_ok(const struct server *s, const struct http_req *r)
{
    if (!s->api_key)
        return 1;
    if (!r->has_auth)
        return 0;
    char want[600];
    int n = snprintf(want, sizeof want, "Bearer %s", s->api_key);
    size_t got_len = strlen(r->auth);
    unsigned diff = (size_t)n != got_len;
    for (size_t i = 0; i < got_len && i < (size_t)n; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)r->auth[i];
    return diff == 0;
}

enum route_id {
    ROUTE_NONE = 0,
    ROUTE_HEALTH,
    ROUTE_VERSION,
    ROUTE_MODELS,
    ROUTE_METRICS,
    ROUTE_COMPLETIONS,
    ROUTE_CHAT,
    ROUTE_TOKENIZE,
    ROUTE_DETOKENIZE,
    ROUTE_RESET_PREFIX_CACHE,
};

static const struct {
    const char *path;
    int is_post;
    enum route_id id;
} routes[] = {
    {"/health", 0, ROUTE_HEALTH},
    {"/version", 0, ROUTE_VERSION},
    {"/v1/models", 0, ROUTE_MODELS},
    {"/metrics", 0, ROUTE_METRICS},
    {"/v1/completions", 1, ROUTE_COMPLETIONS},
    {"/v1/chat/completions", 1, ROUTE_CHAT},
    {"/tokenize", 1, ROUTE_TOKENIZE},
    {"/detokenize", 1, ROUTE_DETOKENIZE},
    {"/reset_prefix_cache", 1, ROUTE_RESET_PREFIX_CACHE},
};

static void conn_dispatch(struct conn *c)
{
    struct server *s = c->srv;
    struct http_req *r = &c->req;
    c->state = CONN_STATE_BUSY;
    if (!strncmp(r->path, "/v1/", 4) && !auth_ok(s, r)) {
        conn_send_error(c, 401, NULL, "Unauthorized: a valid API key is required");
        return;
    }
    enum route_id id = ROUTE_NONE;
    int is_post = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!strcmp(r->path, routes[i].path)) {
            id = routes[i].id;
            is_post = routes[i].is_post;
        }
    }
    if (id == ROUTE_NONE) {
        conn_send_error(c, 404, NULL, "Not Found: %.200s", r->path);
        return;
    }
    int method_ok = is_post ? !strcmp(r->method, "POST")
                            : (!strcmp(r->method, "GET") || !strcmp(r->method, "HEAD"));
    if (!method_ok) {
        conn_send_error(c, 405, NULL, "Method Not Allowed: %s %.200s", r->method, r->path);
        return;
    }
    enum server_state st = st_get(s);
    int ready = st == SERVER_STATE_READY;
    if (id == ROUTE_VERSION) {
        char body[128];
        int n = snprintf(body, sizeof body, "{\"version\":\"%s\"}", SLMPROBE_VERSION);
        conn_send(c, 200, "application/json", body, (size_t)n, NULL);
        return;
    }
    if (id == ROUTE_HEALTH) {
        conn_send(c, ready ? 200 : 503, NULL, "", 0, NULL);
        return;
    }
    if (!ready) {
        conn_send_error(c, 503, NULL,
                        st == SERVER_STATE_DRAINING ? "The server is shutting down"
                                                    : "The model is loading");
        return;
    }
    switch (id) {
    case ROUTE_MODELS:
        handle_models(c);
        break;
    case ROUTE_METRICS:
        handle_metrics(c);
        break;
    case ROUTE_COMPLETIONS:
        handle_generate(c, GEN_KIND_COMPLETION);
        break;
    case ROUTE_CHAT:
        handle_generate(c, GEN_KIND_CHAT);
        break;
    case ROUTE_TOKENIZE:
        handle_tokenize(c);
        break;
    case ROUTE_DETOKENIZE:
        handle_detokenize(c);
        break;
    case ROUTE_RESET_PREFIX_CACHE:
        engine_reset_prefix_cache(s->engine);
        log_info("serve", "Resetting the prefix cache");
        conn_send(c, 200, NULL, "", 0, NULL);
        break;
    default:
        conn_send_error(c, 404, NULL, "Not Found");
        break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP/1.1 request parsing */

enum parse_result { PARSE_NEED_MORE = 0, PARSE_PROGRESS, PARSE_STOP };

/* Takes one line (without its CRLF or LF) into c->line. */
static enum parse_result take_line(struct conn *c, struct evbuffer *in, size_t *len_out)
{
    size_t eol_len = 0;
    struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
    if (p.pos < 0) {
        if (evbuffer_get_length(in) > HEAD_LINE_CAP) {
            if (c->req.got_request_line)
                conn_fail(c, 431, "Request header line too long");
            else
                conn_fail(c, 414, "Request line too long");
            return PARSE_STOP;
        }
        return PARSE_NEED_MORE;
    }
    if ((size_t)p.pos > HEAD_LINE_CAP) {
        conn_fail(c, 431, "Request header line too long");
        return PARSE_STOP;
    }
    evbuffer_remove(in, c->line, (size_t)p.pos);
    c->line[p.pos] = 0;
    evbuffer_drain(in, eol_len);
    if (c->state == CONN_STATE_HEAD || c->state == CONN_STATE_TRAILER)
        c->req.n_head_bytes += (size_t)p.pos + eol_len; /* chunk-size lines do not count */
    if (c->req.n_head_bytes > HEAD_TOTAL_CAP) {
        conn_fail(c, 431, "Request headers too large");
        return PARSE_STOP;
    }
    *len_out = (size_t)p.pos;
    return PARSE_PROGRESS;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

static int parse_request_line(struct conn *c, char *line)
{
    char *sp1 = strchr(line, ' ');
    if (!sp1)
        return -1;
    char *sp2 = strchr(sp1 + 1, ' ');
    if (!sp2 || strchr(sp2 + 1, ' '))
        return -1;
    *sp1 = 0;
    *sp2 = 0;
    const char *method = line, *target = sp1 + 1, *version = sp2 + 1;
    size_t mlen = strlen(method);
    if (mlen == 0 || mlen >= sizeof c->req.method)
        return -1;
    for (size_t i = 0; i < mlen; i++)
        if (method[i] < 'A' || method[i] > 'Z')
            return -1;
    memcpy(c->req.method, method, mlen + 1);
    if (strncmp(version, "HTTP/1.", 7) != 0 || (version[7] != '0' && version[7] != '1') ||
        version[8])
        return -2;
    c->req.version_minor = version[7] - '0';
    c->req.keep_alive = c->req.version_minor >= 1;
    c->req.is_head = !strcmp(method, "HEAD");
    /* absolute-form: http://host/path -> /path */
    if (!strncmp(target, "http://", 7)) {
        const char *slash = strchr(target + 7, '/');
        target = slash ? slash : "/";
    }
    if (target[0] != '/')
        return -1;
    size_t tlen = strcspn(target, "?#");
    if (tlen >= sizeof c->req.path)
        return -3;
    memcpy(c->req.path, target, tlen);
    c->req.path[tlen] = 0;
    c->req.got_request_line = 1;
    return 0;
}

static int has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = value; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        if (m == tl && !strncasecmp(p, token, tl))
            return 1;
        p += n;
    }
    return 0;
}

static int parse_header(struct conn *c, char *line)
{
    struct http_req *r = &c->req;
    if (line[0] == ' ' || line[0] == '\t')
        return -1; /* obsolete line folding */
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return -1;
    *colon = 0;
    for (char *p = line; *p; p++)
        if (*p == ' ' || *p == '\t')
            return -1;
    const char *name = line;
    char *value = trim(colon + 1);
    if (++r->n_headers > HEAD_MAX_HEADERS)
        return -4;
    if (!strcasecmp(name, "content-length")) {
        if (!*value)
            return -1;
        uint64_t v = 0;
        for (const char *p = value; *p; p++) {
            if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
                return -1;
            v = v * 10 + (uint64_t)(*p - '0');
        }
        if (r->has_content_length && r->content_length != v)
            return -1;
        r->has_content_length = 1;
        r->content_length = v;
    } else if (!strcasecmp(name, "transfer-encoding")) {
        if (!has_token(value, "chunked"))
            return -5;
        size_t n = strlen(value);
        if (n < 7 || strcasecmp(value + n - 7, "chunked") != 0)
            return -5; /* chunked must be the last coding */
        if (strcasecmp(value, "chunked") != 0)
            return -5; /* no other codings supported */
        r->chunked = 1;
    } else if (!strcasecmp(name, "connection")) {
        if (has_token(value, "close"))
            r->keep_alive = 0;
        else if (has_token(value, "keep-alive"))
            r->keep_alive = 1;
    } else if (!strcasecmp(name, "authorization")) {
        size_t n = strlen(value);
        r->has_auth = 1;
        if (n >= sizeof r->auth)
            n = sizeof r->auth - 1; /* too long to match any key we accept */
        memcpy(r->auth, value, n);
        r->auth[n] = 0;
    } else if (!strcasecmp(name, "expect")) {
        if (!strcasecmp(value, "100-continue"))
            r->expect_continue = 1;
    }
    return 0;
}

/* Headers done: decide how the body is framed. */
static enum parse_result head_done(struct conn *c)
{
    struct server *s = c->srv;
    struct http_req *r = &c->req;
    if (r->chunked && r->has_content_length) {
        conn_fail(c, 400, "Both Content-Length and Transfer-Encoding given");
        return PARSE_STOP;
    }
    if (r->has_content_length && r->content_length > s->cfg.max_body_bytes) {
        log_warn("serve", "request body of %llu bytes over the %zu-byte cap (413)",
                 (unsigned long long)r->content_length, s->cfg.max_body_bytes);
        c->req.keep_alive = 0;
        c->state = CONN_STATE_BUSY;
        bufferevent_disable(c->bev, EV_READ);
        conn_send_error(c, 413, NULL, "Request body too large: %llu bytes (limit %zu bytes)",
                        (unsigned long long)r->content_length, s->cfg.max_body_bytes);
        return PARSE_STOP;
    }
    buf_reset(&r->body);
    int has_body = r->chunked || (r->has_content_length && r->content_length > 0);
    if (has_body && r->expect_continue && r->version_minor >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write(c, cont, sizeof cont - 1);
    }
    if (r->chunked) {
        c->state = CONN_STATE_CHUNK_SIZE;
    } else if (has_body) {
        c->state = CONN_STATE_BODY;
        c->body_left = r->content_length;
    } else {
        conn_dispatch(c);
        return PARSE_PROGRESS;
    }
    return PARSE_PROGRESS;
}

/* Moves up to want bytes of input into the body buffer. */
static size_t take_body(struct conn *c, struct evbuffer *in, uint64_t want)
{
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < want ? avail : (size_t)want;
    size_t done = 0;
    while (done < n) {
        struct evbuffer_iovec v[8];
        int k = evbuffer_peek(in, (ev_ssize_t)(n - done), NULL, v, 8);
        if (k <= 0)
            break;
        size_t taken = 0;
        for (int i = 0; i < k && i < 8 && done + taken < n; i++) {
            size_t m = v[i].iov_len;
            if (m > n - done - taken)
                m = n - done - taken;
            if (buf_append(&c->req.body, v[i].iov_base, m) != BUF_OK)
                return (size_t)-1;
            taken += m;
        }
        evbuffer_drain(in, taken);
        done += taken;
    }
    return done;
}

static void body_too_large(struct conn *c)
{
    char msg[128];
    snprintf(msg, sizeof msg, "Request body too large (limit %zu bytes)",
             c->srv->cfg.max_body_bytes);
    conn_fail(c, 413, msg);
}

static enum parse_result parse_step(struct conn *c, struct evbuffer *in)
{
    struct http_req *r = &c->req;
    size_t len;
    enum parse_result pr;
    int rc;
    switch (c->state) {
    case CONN_STATE_HEAD:
        if ((pr = take_line(c, in, &len)) != PARSE_PROGRESS)
            return pr;
        if (!r->got_request_line) {
            if (len == 0) {
                r->n_head_bytes = 0; /* tolerate empty lines between requests */
                return PARSE_PROGRESS;
            }
            rc = parse_request_line(c, c->line);
            if (rc == -2) {
                conn_fail(c, 505, "HTTP version not supported");
                return PARSE_STOP;
            }
            if (rc == -3) {
                conn_fail(c, 414, "Request target too long");
                return PARSE_STOP;
            }
            if (rc < 0) {
                conn_fail(c, 400, "Malformed request line");
                return PARSE_STOP;
            }
            return PARSE_PROGRESS;
        }
        if (len == 0)
            return head_done(c);
        rc = parse_header(c, c->line);
        if (rc == -4) {
            conn_fail(c, 431, "Too many request headers");
            return PARSE_STOP;
        }
        if (rc == -5) {
            conn_fail(c, 501, "Unsupported Transfer-Encoding");
            return PARSE_STOP;
        }
        if (rc < 0) {
            conn_fail(c, 400, "Malformed request header");
            return PARSE_STOP;
        }
        return PARSE_PROGRESS;
    case CONN_STATE_BODY: {
        size_t got = take_body(c, in, c->body_left);
        if (got == (size_t)-1) {
            body_too_large(c);
            return PARSE_STOP;
        }
        c->body_left -= got;
        if (c->body_left > 0)
            return PARSE_NEED_MORE;
        conn_dispatch(c);
        return PARSE_PROGRESS;
    }
    case CONN_STATE_CHUNK_SIZE: {
        if ((pr = take_line(c, in, &len)) != PARSE_PROGRESS)
            return pr;
        uint64_t size = 0;
        size_t i = 0;
        for (; i < len; i++) {
            char ch = c->line[i];
            int d = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
            if (d < 0)
                break;
            if (size > (UINT64_MAX >> 4)) {
                conn_fail(c, 400, "Malformed chunk size");
                return PARSE_STOP;
            }
            size = size * 16 + (uint64_t)d;
        }
        if (i == 0 || (i < len && c->line[i] != ';' && c->line[i] != ' ')) {
            conn_fail(c, 400, "Malformed chunk size");
            return PARSE_STOP;
        }
        if (size == 0) {
            c->state = CONN_STATE_TRAILER;
            return PARSE_PROGRESS;
        }
        if (size > c->srv->cfg.max_body_bytes - c->req.body.len) {
            body_too_large(c);
            return PARSE_STOP;
        }
        c->body_left = size;
        c->state = CONN_STATE_CHUNK_DATA;
        return PARSE_PROGRESS;
    }
    case CONN_STATE_CHUNK_DATA: {
        size_t got = take_body(c, in, c->body_left);
        if (got == (size_t)-1) {
            body_too_large(c);
            return PARSE_STOP;
        }
        c->body_left -= got;
        if (c->body_left > 0)
            return PARSE_NEED_MORE;
        c->state = CONN_STATE_CHUNK_CRLF;
        return PARSE_PROGRESS;
    }
    case CONN_STATE_CHUNK_CRLF:
        if ((pr = take_line(c, in, &len)) != PARSE_PROGRESS)
            return pr;
        if (len != 0) {
            conn_fail(c, 400, "Malformed chunked body");
            return PARSE_STOP;
        }
        c->state = CONN_STATE_CHUNK_SIZE;
        return PARSE_PROGRESS;
    case CONN_STATE_TRAILER:
        if ((pr = take_line(c, in, &len)) != PARSE_PROGRESS)
            return pr;
        if (len == 0)
            conn_dispatch(c);
        return PARSE_PROGRESS;
    case CONN_STATE_BUSY:
    case CONN_STATE_CLOSING:
    case CONN_STATE_LINGER:
        return PARSE_STOP;
    }
    return PARSE_STOP;
}

static void conn_process_input(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (c->state < CONN_STATE_BUSY) {
        if (parse_step(c, in) != PARSE_PROGRESS)
            return;
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

static void conn_free(struct conn *c)
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
    buf_free(&c->req.body);
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
    c->state = CONN_STATE_HEAD;
    buf_init(&c->req.body, 0, s->cfg.max_body_bytes);
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

static void drain_check(struct server *s)
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
            c->req.keep_alive = 0;
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
        buf_free(&c->req.body);
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
