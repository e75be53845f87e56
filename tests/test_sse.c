/* test_sse: the SSE parser against golden inputs (tests/data/sse_*.txt with hand-written
 * tests/data/sse_*.expected), replayed whole, at every split point, byte by byte and in random
 * chunkings; plus the size cap, its sticky error and reset. */
#include <stdlib.h>

#include "net/sse.h"
#include "test.h"
#include "util/buf.h"

static const char *const golden[] = {
    "vllm_completions", "vllm_chat", "llamacpp", "crlf",      "cr",
    "comments",         "multiline", "error",    "malformed", "bom",
};

static void esc_append(struct buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\')
            buf_puts(b, "\\\\");
        else if (s[i] == '\n')
            buf_puts(b, "\\n");
        else if (s[i] == '\r')
            buf_puts(b, "\\r");
        else
            buf_putc(b, s[i]);
    }
}

struct collect {
    struct buf events;
    struct buf unknown;
};

static void on_event(void *ud, const struct sse_event *ev)
{
    struct collect *c = ud;
    /* Views must be NUL-terminated as the header promises. */
    CHECK(ev->event[ev->event_len] == 0 && ev->data[ev->data_len] == 0 && ev->id[ev->id_len] == 0);
    buf_puts(&c->events, "event ");
    buf_append(&c->events, ev->event, ev->event_len);
    buf_puts(&c->events, "\nid ");
    esc_append(&c->events, ev->id, ev->id_len);
    buf_puts(&c->events, "\ndata ");
    esc_append(&c->events, ev->data, ev->data_len);
    buf_putc(&c->events, '\n');
}

static void on_unknown(void *ud, const char *f, size_t fn, const char *v, size_t vn)
{
    struct collect *c = ud;
    CHECK(f[fn] == 0 && v[vn] == 0);
    buf_puts(&c->unknown, "unknown ");
    buf_append(&c->unknown, f, fn);
    buf_putc(&c->unknown, ' ');
    esc_append(&c->unknown, v, vn);
    buf_putc(&c->unknown, '\n');
}

/* Feeds data cut at the given offsets (ascending, within len) and renders what came out. */
static char *replay(const char *data, size_t len, const size_t *cuts, size_t n_cuts)
{
    struct sse_parser p;
    sse_init(&p, 1 << 16);
    p.on_unknown_field = on_unknown;
    struct collect c;
    buf_init(&c.events, 1024, 1 << 20);
    buf_init(&c.unknown, 256, 1 << 20);
    size_t at = 0;
    enum sse_status st = SSE_STATUS_OK;
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        st = sse_feed(&p, data + at, end - at, on_event, &c);
        at = end;
    }
    buf_append(&c.events, c.unknown.data, c.unknown.len);
    buf_printf(&c.events, "comments %llu\nretry %lld\npending %d\nstatus %s\n",
               (unsigned long long)p.n_comments, (long long)p.retry_ms, sse_pending(&p),
               st == SSE_STATUS_OK ? "ok" : sse_status_str(st));
    sse_free(&p);
    buf_free(&c.unknown);
    return buf_steal(&c.events);
}

static char *read_data(const char *name, const char *ext, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "tests/data/sse_%s.%s", name, ext);
    char *s = file_read_all(path, 1 << 20, len);
    CHECK_MSG(s != NULL, "cannot read %s", path);
    return s;
}

static void test_golden_whole(void)
{
    for (size_t g = 0; g < sizeof golden / sizeof golden[0]; g++) {
        size_t len, elen;
        char *in = read_data(golden[g], "txt", &len);
        char *exp = read_data(golden[g], "expected", &elen);
        if (!in || !exp) {
            free(in);
            free(exp);
            continue;
        }
        char *got = replay(in, len, NULL, 0);
        CHECK_MSG(strcmp(got, exp) == 0, "%s:\n--- got\n%s--- expected\n%s", golden[g], got, exp);
        free(got);
        free(in);
        free(exp);
    }
}

static void test_golden_every_split(void)
{
    size_t n_replays = 0;
    for (size_t g = 0; g < sizeof golden / sizeof golden[0]; g++) {
        size_t len, elen;
        char *in = read_data(golden[g], "txt", &len);
        char *exp = read_data(golden[g], "expected", &elen);
        if (!in || !exp) {
            free(in);
            free(exp);
            continue;
        }
        int bad = 0;
        for (size_t k = 0; k <= len && !bad; k++) {
            char *got = replay(in, len, &k, 1);
            if (strcmp(got, exp) != 0) {
                CHECK_MSG(0, "%s split at %zu:\n--- got\n%s--- expected\n%s", golden[g], k, got,
                          exp);
                bad = 1;
            }
            free(got);
            n_replays++;
        }
        /* Byte by byte. */
        size_t *cuts = xmalloc((len + 1) * sizeof *cuts);
        for (size_t k = 0; k < len; k++)
            cuts[k] = k;
        char *got = replay(in, len, cuts, len);
        CHECK_MSG(strcmp(got, exp) == 0, "%s byte by byte:\n--- got\n%s", golden[g], got);
        free(got);
        /* Every pair of split points on the short inputs, seeded random chunkings on all. */
        if (len <= 400) {
            for (size_t a = 0; a <= len && !bad; a++)
                for (size_t b = a; b <= len && !bad; b += 3) {
                    size_t two[2] = {a, b};
                    got = replay(in, len, two, 2);
                    if (strcmp(got, exp) != 0) {
                        CHECK_MSG(0, "%s split at %zu,%zu:\n%s", golden[g], a, b, got);
                        bad = 1;
                    }
                    free(got);
                    n_replays++;
                }
        }
        unsigned seed = 12345u + (unsigned)g;
        for (int trial = 0; trial < 200 && !bad; trial++) {
            size_t n = 0, at = 0;
            while (at < len) {
                seed = seed * 1103515245u + 12345u;
                at += 1 + (seed >> 16) % 17;
                if (at < len)
                    cuts[n++] = at;
            }
            got = replay(in, len, cuts, n);
            if (strcmp(got, exp) != 0) {
                CHECK_MSG(0, "%s random chunking %d:\n%s", golden[g], trial, got);
                bad = 1;
            }
            free(got);
        }
        free(cuts);
        free(in);
        free(exp);
    }
    fprintf(stderr, "  %zu split replays\n", n_replays);
}

static void count_cb(void *ud, const struct sse_event *ev)
{
    (void)ev;
    (*(int *)ud)++;
}

static void test_cap_sticky_reset(void)
{
    struct sse_parser p;
    sse_init(&p, 64);
    int n = 0;
    const char *ok = "data: short\n\n";
    CHECK_EQ_INT(sse_feed(&p, ok, strlen(ok), count_cb, &n), SSE_STATUS_OK);
    CHECK_EQ_INT(n, 1);
    /* A 100-byte line in one chunk. */
    char big[160];
    memset(big, 'x', sizeof big);
    memcpy(big, "data: ", 6);
    big[100] = '\n';
    big[101] = '\n';
    CHECK_EQ_INT(sse_feed(&p, big, 102, count_cb, &n), SSE_STATUS_ERR_CAP);
    CHECK_EQ_INT(n, 1);
    /* Sticky: valid input is ignored until reset. */
    CHECK_EQ_INT(sse_feed(&p, ok, strlen(ok), count_cb, &n), SSE_STATUS_ERR_CAP);
    CHECK_EQ_INT(n, 1);
    sse_reset(&p);
    CHECK_EQ_INT(sse_feed(&p, ok, strlen(ok), count_cb, &n), SSE_STATUS_OK);
    CHECK_EQ_INT(n, 2);
    /* The same long line in 7-byte chunks fails the same way. */
    sse_reset(&p);
    enum sse_status st = SSE_STATUS_OK;
    for (size_t i = 0; i < 102; i += 7)
        st = sse_feed(&p, big + i, i + 7 <= 102 ? 7 : 102 - i, count_cb, &n);
    CHECK_EQ_INT(st, SSE_STATUS_ERR_CAP);
    CHECK_EQ_INT(n, 2);
    /* Many short data lines that add up past the cap: the event's data is capped too. */
    sse_reset(&p);
    st = SSE_STATUS_OK;
    for (int i = 0; i < 20; i++)
        st = sse_feed(&p, "data: 0123456789\n", 17, count_cb, &n);
    CHECK_EQ_INT(st, SSE_STATUS_ERR_CAP);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(sse_status_str(SSE_STATUS_ERR_CAP), "event too large");
    sse_free(&p);
    sse_free(NULL);
}

static void test_cr_then_lf_across_chunks(void)
{
    struct sse_parser p;
    sse_init(&p, 1024);
    int n = 0;
    /* "data: a\r" | "\n" | "\r\n": CR LF is one line end, then the blank line. */
    CHECK_EQ_INT(sse_feed(&p, "data: a\r", 8, count_cb, &n), SSE_STATUS_OK);
    CHECK_EQ_INT(sse_feed(&p, "", 0, count_cb, &n), SSE_STATUS_OK);
    CHECK_EQ_INT(sse_feed(&p, "\n", 1, count_cb, &n), SSE_STATUS_OK);
    CHECK_EQ_INT(n, 0);
    CHECK(sse_pending(&p));
    CHECK_EQ_INT(sse_feed(&p, "\r\n", 2, count_cb, &n), SSE_STATUS_OK);
    CHECK_EQ_INT(n, 1);
    CHECK(!sse_pending(&p));
    /* "\r" | "\r": two line ends (CR CR), so a dispatch. */
    CHECK_EQ_INT(sse_feed(&p, "data: b\r", 8, count_cb, &n), SSE_STATUS_OK);
    CHECK_EQ_INT(sse_feed(&p, "\r", 1, count_cb, &n), SSE_STATUS_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(p.n_events, 2);
    sse_free(&p);
}

int main(void)
{
    TEST_RUN(test_golden_whole);
    TEST_RUN(test_golden_every_split);
    TEST_RUN(test_cap_sticky_reset);
    TEST_RUN(test_cr_then_lf_across_chunks);
    return TEST_DONE();
}
