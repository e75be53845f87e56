/* sse: an incremental parser for server-sent events per the WHATWG HTML "event stream
 * interpretation" rules: LF, CR or CRLF line ends (a CR at the end of one chunk and LF at the start
 * of the next are one line end), a leading UTF-8 BOM, comment lines (":..."), multi-line "data:"
 * joined with "\n", "event:", "id:" (kept across events, ignored if it contains NUL), "retry:".
 * Correct for any chunking. It does not parse the data (JSON is the caller's) and does not
 * reconnect. A line or an event's data longer than cap_bytes is an error (SSE_STATUS_ERR_CAP); the
 * parser then stays in error, ignoring input, until sse_reset. Events still incomplete at end of
 * stream are discarded (WHATWG); sse_pending() tells whether any were.
 *
 *   struct sse_parser p;
 *   sse_init(&p, 1 << 20);
 *   while (chunk) if (sse_feed(&p, data, len, on_event, ud) != SSE_STATUS_OK) ...;
 *   sse_free(&p);
 *
 * One thread per parser. Buffers are allocated in sse_init and grow only up to cap_bytes. */
#ifndef SLM_SSE_H
#define SLM_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum sse_status {
    SSE_STATUS_OK = 0,
    SSE_STATUS_ERR_CAP, /* a line or an event's data exceeded cap_bytes */
};
const char *sse_status_str(enum sse_status st); /* "ok", "event too large" */

/* Views valid only during the callback. data has no trailing "\n"; event is "message" when the
 * stream named none; id is the last event ID (may be empty). Strings are also NUL-terminated. */
struct sse_event {
    const char *event;
    size_t event_len;
    const char *data;
    size_t data_len;
    const char *id;
    size_t id_len;
};
typedef void (*sse_event_cb)(void *ud, const struct sse_event *ev);

struct sse_parser {
    struct buf line;      /* a partial line carried between chunks */
    struct buf data;      /* data buffer of the event being built */
    struct buf event;     /* event type buffer */
    struct buf id;        /* last event ID buffer */
    size_t cap_bytes;
    int64_t retry_ms;     /* last valid "retry:" value, -1 if none */
    uint64_t n_events;    /* events dispatched */
    uint64_t n_comments;  /* comment lines seen */
    int bom_checked;      /* the first bytes were checked for a BOM */
    int cr_pending;       /* last byte seen was CR: a leading LF in the next chunk is skipped */
    enum sse_status status;
    /* Optional (set after sse_init, NULL by default): called with sse_feed's ud for every field
     * the WHATWG rules ignore (e.g. llama.cpp's old "error: {...}" lines). Views, NUL-terminated. */
    void (*on_unknown_field)(void *ud, const char *field, size_t field_len, const char *value,
                             size_t value_len);
};

/* cap_bytes: limit on one line and on one event's joined data (>= 16). */
void sse_init(struct sse_parser *p, size_t cap_bytes);
void sse_free(struct sse_parser *p); /* NULL-safe */
/* Back to the start-of-stream state (clears the error, the last event ID and retry). */
void sse_reset(struct sse_parser *p);
/* Feeds len bytes; on_event is called for each complete event in order. Returns SSE_STATUS_OK, or
 * the sticky error (events before the offending line were delivered). */
enum sse_status sse_feed(struct sse_parser *p, const char *data, size_t len, sse_event_cb on_event,
                         void *ud);
/* 1 when bytes of an undispatched event (or a partial line) are buffered: at end of stream this
 * means the stream was cut short. */
int sse_pending(const struct sse_parser *p);

#endif
