/* sse: incremental server-sent events parser (WHATWG "event stream interpretation"). Whole lines
 * inside a chunk are parsed in place; only a line split across chunks is copied into p->line.
 * It does not interpret the data; see net/client.c for the OpenAI chunk handling. */
#include "net/sse.h"

#include <stdlib.h>
#include <string.h>

const char *sse_status_str(enum sse_status st)
{
    switch (st) {
    case SSE_STATUS_OK:
        return "ok";
    case SSE_STATUS_ERR_CAP:
        return "event too large";
    }
    return "unknown";
}

void sse_init(struct sse_parser *p, size_t cap_bytes)
{
    memset(p, 0, sizeof *p);
    if (cap_bytes < 16)
        cap_bytes = 16;
    p->cap_bytes = cap_bytes;
    buf_init(&p->line, 256, cap_bytes);
    /* data holds each line's value plus "\n": one event's data is at most cap_bytes + 1 here. */
    buf_init(&p->data, 1024, cap_bytes + 1);
    buf_init(&p->event, 32, cap_bytes);
    buf_init(&p->id, 32, cap_bytes);
    p->retry_ms = -1;
}

void sse_free(struct sse_parser *p)
{
    if (!p)
        return;
    buf_free(&p->line);
    buf_free(&p->data);
    buf_free(&p->event);
    buf_free(&p->id);
}

void sse_reset(struct sse_parser *p)
{
    buf_reset(&p->line);
    buf_reset(&p->data);
    buf_reset(&p->event);
    buf_reset(&p->id);
    p->retry_ms = -1;
    p->bom_checked = 0;
    p->cr_pending = 0;
    p->status = SSE_STATUS_OK;
}

int sse_pending(const struct sse_parser *p)
{
    return p->line.len > 0 || p->data.len > 0;
}

static void sse_dispatch(struct sse_parser *p, sse_event_cb on_event, void *ud)
{
    if (p->data.len == 0) {
        buf_reset(&p->event);
        return;
    }
    /* Remove the last "\n" of the data buffer (every data line appended one). */
    p->data.len--;
    p->data.data[p->data.len] = 0;
    struct sse_event ev = {
        .event = p->event.len ? p->event.data : "message",
        .event_len = p->event.len ? p->event.len : 7,
        .data = p->data.data,
        .data_len = p->data.len,
        .id = p->id.data,
        .id_len = p->id.len,
    };
    p->n_events++;
    if (on_event)
        on_event(ud, &ev);
    buf_reset(&p->data);
    buf_reset(&p->event);
}

static int sse_field_is(const char *f, size_t n, const char *name, size_t name_len)
{
    return n == name_len && memcmp(f, name, n) == 0;
}

/* One complete line, without its terminator. Returns the parser's status. */
static enum sse_status sse_line(struct sse_parser *p, const char *line, size_t len,
                                sse_event_cb on_event, void *ud)
{
    if (!p->bom_checked) {
        p->bom_checked = 1;
        if (len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
            line += 3;
            len -= 3;
        }
    }
    if (len == 0) {
        sse_dispatch(p, on_event, ud);
        return SSE_STATUS_OK;
    }
    if (line[0] == ':') {
        p->n_comments++;
        return SSE_STATUS_OK;
    }
    const char *colon = memchr(line, ':', len);
    size_t field_len = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t value_len = colon ? len - field_len - 1 : 0;
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (sse_field_is(line, field_len, "data", 4)) {
        if (buf_append(&p->data, value, value_len) != BUF_OK || buf_putc(&p->data, '\n') != BUF_OK)
            return p->status = SSE_STATUS_ERR_CAP;
    } else if (sse_field_is(line, field_len, "event", 5)) {
        buf_reset(&p->event);
        if (buf_append(&p->event, value, value_len) != BUF_OK)
            return p->status = SSE_STATUS_ERR_CAP;
    } else if (sse_field_is(line, field_len, "id", 2)) {
        if (!memchr(value, 0, value_len)) {
            buf_reset(&p->id);
            if (buf_append(&p->id, value, value_len) != BUF_OK)
                return p->status = SSE_STATUS_ERR_CAP;
        }
    } else if (sse_field_is(line, field_len, "retry", 5)) {
        int64_t v = 0;
        size_t i;
        for (i = 0; i < value_len; i++) {
            if (value[i] < '0' || value[i] > '9' || v > (INT64_MAX - 9) / 10)
                break;
            v = v * 10 + (value[i] - '0');
        }
        if (value_len > 0 && i == value_len)
            p->retry_ms = v;
    } else if (p->on_unknown_field) {
        /* Views into the caller's chunk or p->line: make both NUL-terminated copies cheaply by
         * going through the line buffer when needed. */
        char field_copy[64];
        if (field_len < sizeof field_copy) {
            memcpy(field_copy, line, field_len);
            field_copy[field_len] = 0;
            char value_copy[256]; /* short values (the usual) need no allocation */
            char *val = value_len < sizeof value_copy ? value_copy : xmalloc(value_len + 1);
            memcpy(val, value, value_len);
            val[value_len] = 0;
            p->on_unknown_field(ud, field_copy, field_len, val, value_len);
            if (val != value_copy)
                free(val);
        }
    }
    return SSE_STATUS_OK;
}

enum sse_status sse_feed(struct sse_parser *p, const char *data, size_t len, sse_event_cb on_event,
                         void *ud)
{
    if (p->status != SSE_STATUS_OK)
        return p->status;
    size_t i = 0;
    /* The next '\n' at or after data + i (NULL: none left), searched again only once i has
     * passed it: a chunk of many CR-ended lines is scanned once, not once per line. */
    const char *nl = NULL;
    int nl_known = 0;
    while (i < len) {
        if (p->cr_pending) {
            p->cr_pending = 0;
            if (data[i] == '\n') {
                i++;
                continue;
            }
        }
        const char *s = data + i;
        size_t rem = len - i;
        if (!nl_known || (nl && nl < s)) {
            nl = memchr(s, '\n', rem);
            nl_known = 1;
        }
        size_t lim = nl ? (size_t)(nl - s) : rem;
        const char *cr = memchr(s, '\r', lim);
        const char *end = cr ? cr : nl;
        if (!end) {
            /* Partial line: keep it for the next chunk. Over the cap means the line is too. */
            if (buf_append(&p->line, s, rem) != BUF_OK)
                return p->status = SSE_STATUS_ERR_CAP;
            return SSE_STATUS_OK;
        }
        size_t n = (size_t)(end - s);
        const char *line = s;
        size_t line_len = n;
        if (p->line.len) {
            if (buf_append(&p->line, s, n) != BUF_OK)
                return p->status = SSE_STATUS_ERR_CAP;
            line = p->line.data;
            line_len = p->line.len;
        } else if (n > p->cap_bytes) {
            return p->status = SSE_STATUS_ERR_CAP;
        }
        i += n + 1;
        if (*end == '\r') {
            if (i < len) {
                if (data[i] == '\n')
                    i++;
            } else {
                p->cr_pending = 1;
            }
        }
        enum sse_status st = sse_line(p, line, line_len, on_event, ud);
        buf_reset(&p->line);
        if (st != SSE_STATUS_OK)
            return st;
    }
    return SSE_STATUS_OK;
}
