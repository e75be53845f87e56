/* server: the embedded runtime's HTTP API (vLLM-compatible), over libevent bufferevents with a
 * small HTTP/1.1 parser of its own (keep-alive, pipelining, Content-Length and chunked request
 * bodies, 100-continue, capped header and body sizes). Routes: /v1/completions,
 * /v1/chat/completions (streaming as SSE in chunked transfer encoding), /v1/models, /health,
 * /version, /tokenize, /detokenize, /reset_prefix_cache, /metrics (api_metrics.h).
 * Its files (server.c, routes.c, stream.c, through server_impl.h) are the only ones that include
 * libevent headers. It does no inference: requests go to the engine
 * (engine.h) and token events come back on the engine thread, are queued under a mutex and
 * handed to the event-loop thread by one event_active() wake-up; libevent objects are touched by
 * the loop thread only. It parses no command line (serve_cli.c does).
 *
 * The socket is bound and listening before the model loads: until server_set_ready(), /health
 * answers 503 and every other route except /version a 503 JSON error.
 *
 *   struct server_config sc;
 *   server_config_defaults(&sc);
 *   sc.port = 8000;
 *   struct server *s = server_new(&sc, err, sizeof err);   // binds; SIGTERM/SIGINT handled
 *   server_start(s);                                       // loop thread: 503s while loading
 *   ... load model, engine_new, engine_warmup, engine_start; poll server_stop_requested() ...
 *   server_set_ready(s, engine, model);
 *   server_wait(s);          // returns after a signal: drained (or grace over), sockets closed
 *   engine_stop(engine);     // before server_free: the engine may still call back until then
 *   server_free(s);
 *   engine_free(engine); model_free(model);
 */
#ifndef SLM_SERVER_H
#define SLM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine/model.h"

struct server_config {
    const char *host;                 /* default "127.0.0.1"; copied */
    int port;                         /* default 8000; 0 = any free port (see server_port) */
    const char *api_key;              /* NULL: none; else "Authorization: Bearer KEY" on /v1 */
    const char *served_model_name;    /* required by server_set_ready; copied */
    const char *model_path;           /* /v1/models "root"; copied; may be NULL */
    size_t max_body_bytes;            /* request body cap (413 above); default 8 MiB */
    int enable_prompt_tokens_details; /* usage.prompt_tokens_details.cached_tokens, 0 included */
    double drain_grace_s;             /* after SIGTERM: wait this long for in-flight requests,
                                         then abort them; default 30 */
    int log_requests;                 /* 1: one INFO line per request; default 0 */
    int log_stats;                    /* 1: vLLM-style throughput line every 10 s; default 1 */
    uint64_t seed;                    /* with has_seed: requests without "seed" get seeds derived
                                         from this (reproducible runs); else the engine's RNG */
    int has_seed;
};

void server_config_defaults(struct server_config *cfg);

enum server_state {
    SERVER_STATE_STARTING = 0, /* server_new done, loop not running */
    SERVER_STATE_LOADING,      /* loop running, 503s */
    SERVER_STATE_READY,
    SERVER_STATE_DRAINING, /* signal received: no new connections or requests */
    SERVER_STATE_STOPPED,  /* loop exited */
};
const char *server_state_str(enum server_state st);

/* Creates the event base (with pthreads locking), resolves host, binds and listens, registers
 * SIGTERM/SIGINT (and ignores SIGPIPE). NULL with a message in err (e.g. "cannot bind
 * 127.0.0.1:8000: address already in use"). Main thread. */
struct server *server_new(const struct server_config *cfg, char *err, size_t err_len);
/* The port actually bound (useful with port 0). */
int server_port(const struct server *s);
/* Starts the event-loop thread. 0 or -1. */
int server_start(struct server *s);
/* Publishes the engine and model (both must outlive the server's loop, i.e. until server_wait
 * returns) and switches /health to 200. Main thread, after engine_start. Returns 0, or -1 when a
 * stop was requested meanwhile (the server stays not ready). */
int server_set_ready(struct server *s, struct engine *e, struct model *m);
/* 1 once SIGTERM/SIGINT arrived. Any thread (the loader polls it between phases). */
int server_stop_requested(const struct server *s);
enum server_state server_get_state(const struct server *s); /* any thread */
/* Joins the loop thread: returns after a signal, once every in-flight request finished (or was
 * aborted after the grace period) and every connection was closed. Main thread. */
void server_wait(struct server *s);
/* NULL-safe. After server_wait and after engine_stop (no more engine callbacks). Frees requests
 * whose final events were still queued. Does not free the engine or the model. */
void server_free(struct server *s);

#endif
