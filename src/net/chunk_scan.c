/* chunk_scan: the client's per-event fast path, a validating, allocation-free scan of one SSE
 * data payload (see net/chunk_scan.h). Every SSE event used to go through util/json.h (a full tree
 * per event); at hundreds of thousands of events per second that tree building was over half of
 * the client's CPU. This scan validates the whole payload with the JSON grammar (RFC 8259, UTF-8
 * checked) without allocating, and extracts only what a content chunk carries. It does not decide
 * anything it is not sure about (usage, timings, error members, escapes in keys, long numbers,
 * invalid input): it returns 0 and the caller (net/client.c) falls back to util/json.h. So it can
 * only accept payloads the full parser accepts, with the same field values (tested differentially
 * in tests/test_client.c). No libcurl, no I/O, no state between calls. */
#include "net/chunk_scan.h"

#include <stddef.h>
#include <string.h>

struct jscan {
    const char *p, *end;
    int depth;
};

#define JSCAN_MAX_DEPTH 64

static void jscan_ws(struct jscan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int jscan_hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (unsigned)(ch - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* At an opening quote. Sets the raw span (between the quotes), the decoded UTF-8 byte count and
 * whether it had escapes. 0, or -1 (fall back). */
static int jscan_string(struct jscan *s, const char **raw, size_t *raw_len, size_t *decoded,
                        int *escaped)
{
    if (s->p >= s->end || *s->p != '"')
        return -1;
    const char *p = ++s->p, *end = s->end;
    size_t n = 0;
    int esc = 0;
    while (p < end) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"') {
            *raw = s->p;
            *raw_len = (size_t)(p - s->p);
            *decoded = n;
            *escaped = esc;
            s->p = p + 1;
            return 0;
        }
        if (ch < 0x20)
            return -1;
        if (ch == '\\') {
            esc = 1;
            if (p + 1 >= end)
                return -1;
            char e = p[1];
            if (e == 'u') {
                unsigned u;
                if (p + 6 > end || jscan_hex4(p + 2, &u) != 0)
                    return -1;
                p += 6;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    unsigned lo;
                    if (p + 6 > end || p[0] != '\\' || p[1] != 'u' || jscan_hex4(p + 2, &lo) != 0 ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return -1;
                    p += 6;
                    n += 4;
                } else if (u >= 0xDC00 && u <= 0xDFFF) {
                    return -1;
                } else {
                    n += u < 0x80 ? 1 : u < 0x800 ? 2 : 3;
                }
                continue;
            }
            if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' &&
                e != 't')
                return -1;
            p += 2;
            n++;
            continue;
        }
        if (ch < 0x80) {
            p++;
            n++;
            continue;
        }
        /* UTF-8: shortest form, no surrogates, <= U+10FFFF. */
        size_t k;
        unsigned cp;
        if (ch >= 0xC2 && ch <= 0xDF) {
            k = 2;
            cp = ch & 0x1F;
        } else if (ch >= 0xE0 && ch <= 0xEF) {
            k = 3;
            cp = ch & 0x0F;
        } else if (ch >= 0xF0 && ch <= 0xF4) {
            k = 4;
            cp = ch & 0x07;
        } else {
            return -1;
        }
        if ((size_t)(end - p) < k)
            return -1;
        for (size_t i = 1; i < k; i++) {
            unsigned char cc = (unsigned char)p[i];
            if ((cc & 0xC0) != 0x80)
                return -1;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return -1;
        p += k;
        n += k;
    }
    return -1;
}

static int jscan_value(struct jscan *s);

static int jscan_number(struct jscan *s)
{
    const char *p = s->p, *end = s->end, *start = p;
    if (p < end && *p == '-')
        p++;
    if (p >= end)
        return -1;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    } else {
        return -1;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *exp = p;
        if (p >= end || *p < '0' || *p > '9')
            return -1;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
        if (p - exp > 2)
            return -1; /* |exponent| >= 100 may overflow a double: the full parser decides */
    }
    /* Long numbers may overflow the full parser's integer or double: let it decide. */
    if (p - start > 18)
        return -1;
    s->p = p;
    return 0;
}

static int jscan_literal(struct jscan *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

/* Iterates an object's members: call with s->p at '{'; on_member sees each key (raw, no escapes)
 * with s->p at the value and must consume it. */
typedef int (*jscan_member_fn)(struct jscan *s, const char *key, size_t key_len, void *ud);

static int jscan_object(struct jscan *s, jscan_member_fn on_member, void *ud)
{
    if (s->p >= s->end || *s->p != '{' || ++s->depth > JSCAN_MAX_DEPTH)
        return -1;
    s->p++;
    jscan_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        s->depth--;
        return 0;
    }
    for (;;) {
        const char *key;
        size_t key_len, dec;
        int esc;
        jscan_ws(s);
        if (jscan_string(s, &key, &key_len, &dec, &esc) != 0 || esc)
            return -1;
        jscan_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return -1;
        s->p++;
        jscan_ws(s);
        if ((on_member ? on_member(s, key, key_len, ud) : jscan_value(s)) != 0)
            return -1;
        jscan_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            s->depth--;
            return 0;
        }
        return -1;
    }
}

/* Array: on_first (if any) consumes element 0, the rest are skipped. */
static int jscan_array(struct jscan *s, int (*on_first)(struct jscan *, void *), void *ud)
{
    if (s->p >= s->end || *s->p != '[' || ++s->depth > JSCAN_MAX_DEPTH)
        return -1;
    s->p++;
    jscan_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        s->depth--;
        return 0;
    }
    for (int i = 0;; i++) {
        jscan_ws(s);
        if ((i == 0 && on_first ? on_first(s, ud) : jscan_value(s)) != 0)
            return -1;
        jscan_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == ']') {
            s->p++;
            s->depth--;
            return 0;
        }
        return -1;
    }
}

static int jscan_value(struct jscan *s)
{
    if (s->p >= s->end)
        return -1;
    const char *raw;
    size_t raw_len, dec;
    int esc;
    switch (*s->p) {
    case '{':
        return jscan_object(s, NULL, NULL);
    case '[':
        return jscan_array(s, NULL, NULL);
    case '"':
        return jscan_string(s, &raw, &raw_len, &dec, &esc);
    case 't':
        return jscan_literal(s, "true", 4);
    case 'f':
        return jscan_literal(s, "false", 5);
    case 'n':
        return jscan_literal(s, "null", 4);
    default:
        return jscan_number(s);
    }
}

struct chunk_scan {
    struct client_chunk_fast *out;
    enum client_api api;
    int bail; /* a member that needs the full parser */
};

static int key_is(const char *k, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(k, lit, l) == 0;
}

/* A string or null member: string sets *text/bytes (last one wins, as in the full parser). */
static int chunk_text_member(struct jscan *s, struct chunk_scan *cs, int is_finish)
{
    if (s->p < s->end && *s->p == 'n') {
        if (jscan_literal(s, "null", 4) != 0)
            return -1;
        if (is_finish)
            cs->out->finish_reason[0] = 0;
        else
            cs->out->text_bytes = 0;
        return 0;
    }
    if (s->p >= s->end || *s->p != '"') {
        /* Another type: the full parser treats it as "not a string", as the reset below does. */
        if (is_finish)
            cs->out->finish_reason[0] = 0;
        else
            cs->out->text_bytes = 0;
        return jscan_value(s);
    }
    const char *raw;
    size_t raw_len, dec;
    int esc;
    if (jscan_string(s, &raw, &raw_len, &dec, &esc) != 0)
        return -1;
    if (is_finish) {
        if (esc) {
            cs->bail = 1; /* decoding escapes is the full parser's job */
        } else {
            size_t n = raw_len < sizeof cs->out->finish_reason - 1
                           ? raw_len
                           : sizeof cs->out->finish_reason - 1;
            memcpy(cs->out->finish_reason, raw, n);
            cs->out->finish_reason[n] = 0;
        }
    } else {
        cs->out->text_bytes = dec;
    }
    return 0;
}

static int chunk_delta_member(struct jscan *s, const char *key, size_t n, void *ud)
{
    struct chunk_scan *cs = ud;
    if (key_is(key, n, "content"))
        return chunk_text_member(s, cs, 0);
    return jscan_value(s);
}

static int chunk_choice_member(struct jscan *s, const char *key, size_t n, void *ud)
{
    struct chunk_scan *cs = ud;
    if (cs->api == CLIENT_API_COMPLETIONS && key_is(key, n, "text"))
        return chunk_text_member(s, cs, 0);
    if (key_is(key, n, "finish_reason"))
        return chunk_text_member(s, cs, 1);
    if (cs->api == CLIENT_API_CHAT && key_is(key, n, "delta")) {
        cs->out->text_bytes = 0;
        if (s->p < s->end && *s->p == '{')
            return jscan_object(s, chunk_delta_member, cs);
        return jscan_value(s);
    }
    return jscan_value(s);
}

static int chunk_first_choice(struct jscan *s, void *ud)
{
    struct chunk_scan *cs = ud;
    if (s->p < s->end && *s->p == '{')
        return jscan_object(s, chunk_choice_member, cs);
    return jscan_value(s);
}

static int chunk_top_member(struct jscan *s, const char *key, size_t n, void *ud)
{
    struct chunk_scan *cs = ud;
    if (key_is(key, n, "choices")) {
        /* Last "choices" wins: forget what an earlier one set. */
        cs->out->text_bytes = 0;
        cs->out->finish_reason[0] = 0;
        if (s->p < s->end && *s->p == '[')
            return jscan_array(s, chunk_first_choice, cs);
        return jscan_value(s);
    }
    if (key_is(key, n, "usage") || key_is(key, n, "error") || key_is(key, n, "timings")) {
        if (s->p < s->end && *s->p == 'n')
            return jscan_literal(s, "null", 4);
        cs->bail = 1;
    }
    return jscan_value(s);
}

int client_chunk_scan(const char *data, size_t len, enum client_api api,
                      struct client_chunk_fast *out)
{
    memset(out, 0, sizeof *out);
    struct jscan s = {data, data + len, 0};
    struct chunk_scan cs = {out, api, 0};
    jscan_ws(&s);
    if (s.p >= s.end || *s.p != '{' || jscan_object(&s, chunk_top_member, &cs) != 0)
        return 0;
    jscan_ws(&s);
    if (s.p != s.end || cs.bail)
        return 0;
    return 1;
}
