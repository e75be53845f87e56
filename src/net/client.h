/* client: the probe's streaming HTTP client. Drives many concurrent OpenAI-style streaming
 * requests (/v1/completions or /v1/chat/completions, "stream": true) from ONE thread with the
 * libcurl multi interface, and turns each into a struct request_record timed with clock_now_ns()
 * inside curl's callbacks. It is the only module that includes <curl/curl.h>. It does not pace,
 * schedule or aggregate (probes do); it never re-tokenises (token counts come from the server's
 * usage).
 *
 * Retries, the whole rule (docs/client.md, "Dead kept-alive connections"): a request is sent again
 * only when the kept-alive connection it went out on died before a single response byte arrived
 * (curl's CURLE_GOT_NOTHING, CURLE_SEND_ERROR, CURLE_RECV_ERROR, "Connection died ..."): libcurl
 * re-sends such a request itself (at most 5 times), and when it gives up or cannot, the client
 * re-adds it once with CURLOPT_FRESH_CONNECT, from the poll loop (no sleep). Never after a
 * response byte arrived (a partial stream stays the request's error); never after a failure on a
 * fresh connection (refused, reset, empty reply: that is the server's answer); never after a
 * timeout. The retry gets what is left of timeout_ms. Every re-send is counted in the record's
 * n_retries ("retried" in JSONL); t_sent_ns stays the ORIGINAL send, so TTFT and e2e include the
 * failed attempt, as a user would wait through it. The request's callback runs once, at the end.
 *
 *   struct client_config cfg = { .base_url = "http://127.0.0.1:8000", .api = CLIENT_API_COMPLETIONS };
 *   struct client *c = client_new(&cfg, on_done, ud, err, sizeof err);
 *   client_submit(c, &(struct client_request){ .prompt = "Hi", .prompt_len = 2, .max_tokens = 16 });
 *   while (client_poll(c, 100) > 0) ;
 *   client_free(c);
 *
 * Where each timestamp is taken is documented in docs/client.md. All calls on one struct client
 * from one thread (the one that polls); the callbacks run on that thread, inside client_poll,
 * client_abort_all or client_free, and may call client_submit. */
#ifndef SLM_CLIENT_H
#define SLM_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "measure/record.h"
#include "util/buf.h"
#include "util/clock.h"

/* The measured ceiling (struct client_ceiling, client_ceiling_load/warn) lives in net/ceiling.h;
 * included here because every probe that drives a client also checks it. */
#include "net/ceiling.h"

enum client_api { CLIENT_API_COMPLETIONS = 0, CLIENT_API_CHAT };
const char *client_api_str(enum client_api api); /* "completions", "chat" */

struct client_config {
    const char *base_url;      /* "http://127.0.0.1:8000" (https works) */
    const char *api_key;       /* NULL: none; else "Authorization: Bearer ..." */
    const char *model;         /* "model" field; NULL: ask /v1/models for the first id */
    enum client_api api;
    long timeout_ms;           /* per request, whole transfer; 0 = none */
    int max_connections;       /* keep-alive pool size; 0 = unlimited */
                               /* (0: no cap on open connections; up to 4096 idle ones are kept) */
};

struct client_request {
    uint64_t id;
    const char *tag;
    int level;
    const char *prompt;        /* text, copied */
    size_t prompt_len;
    int max_tokens;
    int ignore_eos;            /* sent as "ignore_eos": true (vLLM, llama.cpp accept it) */
    int min_tokens;            /* 0: not sent */
    double temperature;        /* sent as given (0 for fixed greedy output) */
    const char *extra_json;    /* NULL, or extra members "\"cache_prompt\":false" added to the body */
    mono_ns t_intended_ns;     /* 0: now */
};

typedef void (*client_done_cb)(void *ud, struct request_record *rec); /* rec is the caller's to keep: it must record_free() it */
/* Ownership, precisely: the struct *rec itself is client storage valid only during the callback;
 * its contents (t_content_ns) belong to the caller. Keep a record by copying the struct
 * (struct request_record mine = *rec;) and record_free(&mine) later, or record_free(rec) inside
 * the callback. Exactly one record_free per delivered record. */

/* Copies cfg's strings. When cfg->model is NULL, GETs <base_url>/v1/models once (blocking) and uses
 * data[0].id; fails if that is impossible. Returns NULL with a message in err on failure. */
struct client *client_new(const struct client_config *cfg, client_done_cb cb, void *ud, char *err, size_t err_len);
void client_free(struct client *c);               /* aborts transfers still in flight (records with REQ_ERROR_ABORTED delivered first) */
/* Builds the body and adds the transfer; t_sent_ns is taken here, right before the transfer is
 * added to the multi handle, and is kept when the request is retried (see the top). 0, or -1
 * (bad request: NULL prompt, or curl refused; nothing delivered). */
int client_submit(struct client *c, const struct client_request *req); /* starts now; 0 or -1 */
/* Drives all transfers for at most timeout_ms (returns earlier when a request completes);
 * calls cb for each finished request on this thread. Returns the number still in flight. */
int client_poll(struct client *c, int timeout_ms);
int client_in_flight(const struct client *c);
void client_abort_all(struct client *c);          /* ends every transfer now (REQ_ERROR_ABORTED) */
/* Added: the model name in use (cfg's, or the one /v1/models gave). Lives as long as c. */
const char *client_model(const struct client *c);
/* Added: connections this client opened so far (sum of CURLINFO_NUM_CONNECTS over finished
 * transfers, retries' included): with keep-alive it stays near the concurrency, not the request
 * count. */
long client_n_connects(const struct client *c);

/* Blocking helpers for the rest of the probe (health polls, /metrics, /version, /v1/models): */
int http_get(const char *url, const char *api_key, long timeout_ms, struct buf *body_out, int *status_out, char *err, size_t err_len);
    /* 0 when an HTTP response arrived (any status; body in body_out, capped by its buf), -1 on connect/timeout error (err says which; errno-like: refused vs timeout) */
int http_post_json(const char *url, const char *api_key, const char *json, long timeout_ms, struct buf *body_out, int *status_out, char *err, size_t err_len);

/* Extracts a server's error message from an error body: vLLM {"error":{"message":...}} and
 * {"object":"error","message":...}, llama.cpp {"error":{"code":..,"message":..}}, or
 * {"error":"text"}. Falls back to the body's first bytes. Writes a NUL-terminated string. */
void client_error_message(const char *body, size_t len, char *out, size_t out_len);

#endif
