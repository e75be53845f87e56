/* fuzz_http: libFuzzer target for the embedded server's HTTP/1.1 request parser (engine/http.c).
 * Parses the input as a stream of pipelined requests three ways (whole, split at two
 * input-derived points, byte by byte) and checks that each gives the same requests (status,
 * method, path, flags, body) and the same final state; also that consumed bytes never exceed
 * the input and that after an error the parser stays in error. The body cap is small so the 413
 * paths are reached. ASan/UBSan catch memory errors.
 * fuzz-sources: src/engine/http.c src/util/buf.c */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/http.h"

#define FUZZ_HTTP_BODY_CAP 4096
#define FUZZ_HTTP_MAX_REQUESTS 64

static uint64_t fuzz_http_fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t fuzz_http_req_hash(uint64_t h, const struct http_req *r, enum http_parse_status st)
{
    h = fuzz_http_fnv(h, &st, sizeof st);
    if (st != HTTP_PARSE_REQUEST_DONE)
        return h;
    if (r->body.len && r->body.data[r->body.len] != 0)
        __builtin_trap(); /* the body is NUL-terminated */
    int flags[] = {r->version_minor, r->is_head,         r->keep_alive, r->has_content_length,
                   r->chunked,       r->expect_continue, r->has_auth,   r->n_headers};
    h = fuzz_http_fnv(h, r->method, strlen(r->method));
    h = fuzz_http_fnv(h, r->path, strlen(r->path) + 1);
    h = fuzz_http_fnv(h, flags, sizeof flags);
    h = fuzz_http_fnv(h, r->auth, strlen(r->auth) + 1);
    return fuzz_http_fnv(h, r->body.data ? r->body.data : "", r->body.len);
}

/* Feeds data in pieces ending at cut[0] and cut[1] (or byte by byte); returns a hash of every
 * request and of the final status. */
static uint64_t fuzz_http_replay(const uint8_t *data, size_t len, size_t a, size_t b, int bytewise)
{
    struct http_reader p;
    http_reader_init(&p, FUZZ_HTTP_BODY_CAP);
    uint64_t h = 1469598103934665603ull;
    size_t pos = 0;
    int n_requests = 0;
    enum http_parse_status st = HTTP_PARSE_OK;
    while (pos < len && n_requests < FUZZ_HTTP_MAX_REQUESTS) {
        size_t end = bytewise ? pos + 1 : pos < a ? a : pos < b ? b : len;
        size_t used = 0, given = end - pos;
        st = http_reader_feed(&p, (const char *)data + pos, given, &used);
        if (used > given || (st == HTTP_PARSE_OK && used != given))
            __builtin_trap(); /* OK consumes everything it was given */
        pos += used;
        if (st == HTTP_PARSE_REQUEST_DONE) {
            h = fuzz_http_req_hash(h, &p.req, st);
            size_t again = 1;
            if (http_reader_feed(&p, "x", 1, &again) != st || again != 0)
                __builtin_trap(); /* done is sticky until reset */
            http_reader_reset(&p);
            n_requests++;
        } else if (http_parse_status_is_error(st)) {
            size_t again = 1;
            if (http_reader_feed(&p, "x", 1, &again) != st || again != 0)
                __builtin_trap(); /* errors are sticky */
            if (http_parse_status_code(st) < 400 || !*http_parse_status_message(st))
                __builtin_trap();
            break;
        }
    }
    h = fuzz_http_fnv(h, &st, sizeof st);
    h = fuzz_http_fnv(h, &n_requests, sizeof n_requests);
    http_reader_free(&p);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t whole = fuzz_http_replay(data, size, size, size, 0);
    size_t a = 0, b = 0;
    if (size > 0) {
        a = (data[0] * 131u + size) % (size + 1);
        b = a + (data[size - 1] * 257u) % (size - a + 1);
    }
    if (fuzz_http_replay(data, size, a, b, 0) != whole)
        __builtin_trap();
    if (size <= 4096 && fuzz_http_replay(data, size, 0, 0, 1) != whole)
        __builtin_trap();
    return 0;
}
