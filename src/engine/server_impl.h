/* server_impl: the embedded server's internal types and the functions its files share:
 * server.c (lifecycle, connections, response writers), stream.c (engine events -> responses and
 * SSE), routes.c (dispatch and handlers). Not a public header: only those three include it. The
 * event loop thread owns everything here except the queue (q_mu). */
#ifndef SLM_SERVER_IMPL_H
#define SLM_SERVER_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "engine/api_metrics.h"
#include "engine/http.h"
#include "engine/openai_request.h"
#include "engine/server.h"
#include "engine/tokenizer.h"
#include "util/buf.h"
#include "util/clock.h"

#define BUSY_READ_CAP (64 * 1024) /* pipelined bytes buffered while a request runs */
#define OUT_CAP_BYTES (16u << 20) /* unsent response bytes per connection (slow reader) */
#define IDLE_TIMEOUT_S 60         /* keep-alive idle / partial request */
#define CLOSE_TIMEOUT_S 30        /* flushing the last response before closing */
#define LINGER_S 3                /* discarding input after the last response */
#define MAX_CONNS 8192
#define WAKE_BATCH 4096  /* engine events handled per wake-up before yielding to I/O */
#define HARD_STOP_S 10.0 /* after the grace period: abort, then exit after this */
#define STATS_INTERVAL_S 10

struct server;
struct gen;

enum conn_state {
    CONN_STATE_READING = 0, /* reading a request (http.h parses it) */
    CONN_STATE_BUSY,        /* request dispatched; response (maybe streaming) in progress */
    CONN_STATE_CLOSING,     /* flushing the last response, then close */
    CONN_STATE_LINGER,      /* response sent, write side shut: discard input until EOF, so that a
                               client still sending its request reads our answer, not a reset */
};

struct conn {
    struct server *srv;
    struct bufferevent *bev;
    enum conn_state state;
    struct http_reader hp; /* hp.req: the request being read or answered */
    struct gen *gen;       /* generation in flight on this connection */
    int resp_chunked;      /* current response uses chunked transfer encoding */
    int overflow;          /* client stopped reading: close at the next safe point */
    mono_ns t_linger_ns;   /* CONN_STATE_LINGER since */
    struct conn *prev, *next;
};

struct gen {
    struct server *srv;
    struct conn *conn; /* NULL once the client is gone or its response is complete */
    uint64_t req_id;
    enum openai_kind kind;
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
    char *stop[OPENAI_STOP_MAX];
    size_t stop_len[OPENAI_STOP_MAX];
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

/* Output with a sticky status: a response is either complete or replaced by a 500. */
struct out {
    struct buf *b;
    enum buf_status st;
};

void o_puts(struct out *o, const char *s);
void o_putn(struct out *o, const char *s, size_t n);
void o_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void o_jstr(struct out *o, const char *s, size_t n);

/* server.c */
uint64_t rng_next(uint64_t *state);
enum server_state st_get(const struct server *s);
void conn_set_timeouts(struct conn *c);
void conn_write(struct conn *c, const void *data, size_t n);
/* content_length < 0: streamed (chunked on HTTP/1.1, close-delimited on 1.0). */
void conn_write_head(struct conn *c, int status, const char *content_type, long long content_length,
                     const char *extra_headers);
void conn_write_chunk(struct conn *c, const void *data, size_t n);
void conn_response_done(struct conn *c);
void conn_send(struct conn *c, int status, const char *content_type, const char *body, size_t len,
               const char *extra_headers);
void conn_send_error(struct conn *c, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void conn_free(struct conn *c);
void drain_check(struct server *s);

/* stream.c */
void gen_free(struct gen *g);
void gen_list_remove(struct server *s, struct gen *g);
void gen_emit_chunk(struct gen *g, size_t from, size_t to, const char *finish, int with_role);
void server_on_engine_event(void *ud, const struct engine_event *ev);
int q_pop(struct server *s, struct q_item *out);
void on_wake(evutil_socket_t fd, short what, void *arg);

/* routes.c */
void conn_dispatch(struct conn *c);

#endif
