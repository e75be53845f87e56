/* record: one measured request (timestamps, tokens from the server's usage, error class) and the
 * JSONL sink that writes each finished request as one flushed line. It derives TTFT/e2e/TPOT/ITL
 * from stored timestamps; it does not aggregate (see measure/stats.h) and never talks to a server.
 *
 *   struct record_writer *w = record_writer_open("results/req.jsonl", err, sizeof err);
 *   ... for each finished record: record_writer_append(w, rec); record_free(rec); ...
 *   record_writer_close(w);
 *
 * Timestamps are clock_now_ns() values (CLOCK_MONOTONIC); 0 means "never happened".
 * Records are plain data: any thread may read one it owns; a writer is used by one thread. */
#ifndef SLM_RECORD_H
#define SLM_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/clock.h"

enum req_error {
    REQ_ERROR_NONE = 0,
    REQ_ERROR_CONNECT,     /* refused, reset before a response, DNS, TLS handshake */
    REQ_ERROR_TIMEOUT,     /* the per-request timeout fired */
    REQ_ERROR_HTTP_4XX,
    REQ_ERROR_HTTP_5XX,
    REQ_ERROR_PROTOCOL,    /* malformed SSE/JSON, mid-stream error event, stream cut short */
    REQ_ERROR_SERVER_EXIT, /* set by the caller when the server process died under the request */
    REQ_ERROR_ABORTED,     /* the caller ended it (client_abort_all, client_free) */
    REQ_ERROR__COUNT
};
/* "none", "connect", "timeout", "http_4xx", "http_5xx", "protocol", "server_exit", "aborted";
 * "unknown" out of range. */
const char *req_error_str(enum req_error e);

struct request_record {
    uint64_t id;
    char tag[32];                 /* caller's label: "cold_1", "warm_3", "c=8", ... */
    int level;                    /* caller's grouping index (sweep level), -1 if none */
    mono_ns t_intended_ns;        /* open-loop: when it should have been sent (else = t_sent_ns) */
    mono_ns t_sent_ns;            /* handed to the socket (curl: request started) */
    mono_ns t_headers_ns;         /* response headers received (0 if never) */
    mono_ns t_first_event_ns;     /* first SSE event (0 if none) */
    mono_ns t_first_token_ns;     /* first event with non-empty text (TTFT) */
    mono_ns t_done_ns;            /* end of stream or error */
    uint32_t n_content_events;    /* events with non-empty text */
    mono_ns *t_content_ns;        /* [n_content_events] timestamps, owned (ITL source) */
    int http_status;              /* 0 if none */
    enum req_error error;
    char error_msg[256];          /* server's error message or curl's */
    int n_prompt_tokens;          /* from the server's usage; -1 unknown */
    int n_completion_tokens;      /* from usage; -1 unknown */
    int n_cached_tokens;          /* usage.prompt_tokens_details.cached_tokens or llama.cpp timings.cache_n; -1 unknown */
    char finish_reason[16];
    uint64_t n_text_bytes;        /* bytes of generated text received */
    int n_prompt_chars;           /* what was sent */
    /* Added beyond the shared contract: */
    uint32_t n_events;            /* SSE events received, content or not ("[DONE]" not counted) */
    uint32_t n_content_dropped;   /* content events past the t_content_ns cap (counted, not stored) */
    uint8_t n_retries;            /* times the request was sent again because the kept-alive
                                   * connection it went out on died before any response byte
                                   * (libcurl's own re-sends and the client's one on a fresh
                                   * connection; saturates at 255); t_sent_ns stays the first
                                   * send. JSON "retried". See docs/client.md. */
};

/* Zeroes r and sets the "unknown" markers (level, token counts = -1). */
void record_init(struct request_record *r);

/* Derived metrics, 0/-1 guarded: ttft = first_token - sent; e2e = done - sent;
 * tpot = (e2e - ttft) / (completion_tokens - 1) (needs >= 2 tokens); itl gaps between content events. */
int64_t record_ttft_ns(const struct request_record *r);     /* -1 if no token */
int64_t record_e2e_ns(const struct request_record *r);      /* -1 if not done */
double  record_tpot_ms(const struct request_record *r);     /* NAN if undefined */
/* Added: latency from the intended send time (open loop); -1 if undefined. */
int64_t record_ttft_intended_ns(const struct request_record *r);
int64_t record_e2e_intended_ns(const struct request_record *r);
/* Added: writes up to cap ITL gaps in ms (t_content_ns[i+1] - t_content_ns[i]) into out and
 * returns how many exist (n_content_events - 1, or 0). out may be NULL with cap 0. */
size_t record_itl_ms(const struct request_record *r, double *out, size_t cap);
void record_free(struct request_record *r);                 /* frees t_content_ns; NULL-safe */

/* Added: renders r as one JSON object (no newline) appended to out. Returns buf's status. */
enum buf_status record_to_json(const struct request_record *r, struct buf *out);

/* JSONL sink: one line per finished request, flushed at once, so a crash or Ctrl-C loses nothing
 * already measured. Keys carry units (t_sent_ns, ttft_ms, e2e_ms, itl_ms [...], ...).
 * Each line is one write(2): a kill in the middle of it can leave only the final line cut short
 * (no newline); readers drop such a line, and open() ends it so the next record starts clean.
 * open: NULL with a message in err on failure (appends to an existing file). append: 0, or -1
 * (write error; errno set). close: NULL-safe. One thread per writer. */
struct record_writer *record_writer_open(const char *path, char *err, size_t err_len);
int record_writer_append(struct record_writer *w, const struct request_record *r);
void record_writer_close(struct record_writer *w);          /* NULL-safe */

#endif
