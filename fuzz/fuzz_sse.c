/* fuzz_sse: libFuzzer target for the SSE parser. For each input it checks that parsing the whole
 * buffer, parsing it split at two input-derived points and parsing it byte by byte (inputs over
 * FUZZ_SSE_BYTEWISE_MAX: in small input-derived pieces) give the same
 * events, the same unknown fields, the same status and the same pending state (a hash of all of
 * them), with a small cap so the cap paths are hit too; ASan/UBSan catch memory errors.
 * fuzz-sources: src/net/sse.c src/util/buf.c */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/sse.h"

static uint64_t fuzz_sse_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static void fuzz_sse_on_event(void *ud, const struct sse_event *ev)
{
    uint64_t *h = ud;
    if (ev->event[ev->event_len] || ev->data[ev->data_len] || ev->id[ev->id_len])
        __builtin_trap(); /* views must be NUL-terminated */
    *h = fuzz_sse_fnv(*h, "E", 1);
    *h = fuzz_sse_fnv(*h, ev->event, ev->event_len + 1);
    *h = fuzz_sse_fnv(*h, ev->data, ev->data_len + 1);
    *h = fuzz_sse_fnv(*h, ev->id, ev->id_len + 1);
}

static void fuzz_sse_on_unknown(void *ud, const char *f, size_t fn, const char *v, size_t vn)
{
    uint64_t *h = ud;
    *h = fuzz_sse_fnv(*h, "U", 1);
    *h = fuzz_sse_fnv(*h, f, fn + 1);
    *h = fuzz_sse_fnv(*h, v, vn + 1);
}

/* Inputs up to this size are also fed byte by byte; longer ones in pieces of 1 to 16 bytes whose
 * sizes come from the input (every kind of split still occurs, in linear time). */
#define FUZZ_SSE_BYTEWISE_MAX 1024

static uint64_t fuzz_sse_replay(const uint8_t *data, size_t len, size_t a, size_t b, int bytewise)
{
    struct sse_parser p;
    sse_init(&p, 256);
    p.on_unknown_field = fuzz_sse_on_unknown;
    uint64_t h = 1469598103934665603ull;
    enum sse_status st = SSE_STATUS_OK;
    if (bytewise) {
        for (size_t i = 0, n; i < len; i += n) {
            n = len <= FUZZ_SSE_BYTEWISE_MAX ? 1 : 1 + data[i] % 16u;
            if (n > len - i)
                n = len - i;
            st = sse_feed(&p, (const char *)data + i, n, fuzz_sse_on_event, &h);
        }
    } else {
        st = sse_feed(&p, (const char *)data, a, fuzz_sse_on_event, &h);
        st = sse_feed(&p, (const char *)data + a, b - a, fuzz_sse_on_event, &h);
        st = sse_feed(&p, (const char *)data + b, len - b, fuzz_sse_on_event, &h);
    }
    int pending = st == SSE_STATUS_OK ? sse_pending(&p) : -1;
    h = fuzz_sse_fnv(h, &st, sizeof st);
    h = fuzz_sse_fnv(h, &pending, sizeof pending);
    h = fuzz_sse_fnv(h, &p.retry_ms, sizeof p.retry_ms);
    h = fuzz_sse_fnv(h, &p.n_comments, sizeof p.n_comments);
    sse_free(&p);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t whole = fuzz_sse_replay(data, size, size, size, 0);
    size_t a = 0, b = 0;
    if (size > 0) {
        a = (data[0] * 131u + size) % (size + 1);
        b = a + (data[size - 1] * 257u) % (size - a + 1);
    }
    if (fuzz_sse_replay(data, size, a, b, 0) != whole)
        __builtin_trap();
    if (fuzz_sse_replay(data, size, 0, 0, 1) != whole)
        __builtin_trap();
    return 0;
}
