/* fuzz_sse: libFuzzer target for the SSE parser. For each input it checks that parsing the whole
 * buffer, parsing it split at two input-derived points and parsing it byte by byte give the same
 * events, the same unknown fields, the same status and the same pending state (a hash of all of
 * them), with a small cap so the cap paths are hit too; ASan/UBSan catch memory errors.
 * fuzz-sources: src/net/sse.c src/util/buf.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/sse.h"

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static void on_event(void *ud, const struct sse_event *ev)
{
    uint64_t *h = ud;
    if (ev->event[ev->event_len] || ev->data[ev->data_len] || ev->id[ev->id_len])
        __builtin_trap(); /* views must be NUL-terminated */
    *h = fnv(*h, "E", 1);
    *h = fnv(*h, ev->event, ev->event_len + 1);
    *h = fnv(*h, ev->data, ev->data_len + 1);
    *h = fnv(*h, ev->id, ev->id_len + 1);
}

static void on_unknown(void *ud, const char *f, size_t fn, const char *v, size_t vn)
{
    uint64_t *h = ud;
    *h = fnv(*h, "U", 1);
    *h = fnv(*h, f, fn + 1);
    *h = fnv(*h, v, vn + 1);
}

static uint64_t replay(const uint8_t *data, size_t len, size_t a, size_t b, int bytewise)
{
    struct sse_parser p;
    sse_init(&p, 256);
    p.on_unknown_field = on_unknown;
    uint64_t h = 1469598103934665603ull;
    enum sse_status st = SSE_STATUS_OK;
    if (bytewise) {
        for (size_t i = 0; i < len; i++)
            st = sse_feed(&p, (const char *)data + i, 1, on_event, &h);
    } else {
        st = sse_feed(&p, (const char *)data, a, on_event, &h);
        st = sse_feed(&p, (const char *)data + a, b - a, on_event, &h);
        st = sse_feed(&p, (const char *)data + b, len - b, on_event, &h);
    }
    int pending = st == SSE_STATUS_OK ? sse_pending(&p) : -1;
    h = fnv(h, &st, sizeof st);
    h = fnv(h, &pending, sizeof pending);
    h = fnv(h, &p.retry_ms, sizeof p.retry_ms);
    h = fnv(h, &p.n_comments, sizeof p.n_comments);
    sse_free(&p);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t whole = replay(data, size, size, size, 0);
    size_t a = 0, b = 0;
    if (size > 0) {
        a = (data[0] * 131u + size) % (size + 1);
        b = a + (data[size - 1] * 257u) % (size - a + 1);
    }
    if (replay(data, size, a, b, 0) != whole)
        __builtin_trap();
    if (size <= 4096 && replay(data, size, 0, 0, 1) != whole)
        __builtin_trap();
    return 0;
}
