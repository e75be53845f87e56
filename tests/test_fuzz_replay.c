/* test_fuzz_replay: replays every seed and regression input in tests/data/fuzz-<target>/ (and the
 * SSE goldens in tests/data/) through the fuzz targets' own LLVMFuzzerTestOneInput functions,
 * without libFuzzer, so `make test` catches a parser regression that the fuzzers once found
 * (a crash aborts this binary; ASan/UBSan report memory errors). Also a differential check of the
 * embedded server's HTTP request parser (engine/http.h) against the nodejs http-parser
 * (Debian's libhttp-parser-dev, linked into this test only, never into slmprobe): the same
 * accept/reject decision, method, target, headers and body of each request of the HTTP corpus,
 * except for inputs where we are deliberately stricter (listed with the reason). */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "test.h"
#include "util/buf.h"

#define FUZZ_REPLAY 1
#define LLVMFuzzerTestOneInput fuzz_http_one
#include "../fuzz/fuzz_http.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_openai_one
#include "../fuzz/fuzz_openai.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_prom_one
#include "../fuzz/fuzz_prom.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_chunk_scan_one_input
#include "../fuzz/fuzz_chunk_scan.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_gguf_one
#include "../fuzz/fuzz_gguf.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_tokenizer_one
#include "../fuzz/fuzz_tokenizer.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_logparse_one
#include "../fuzz/fuzz_logparse.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_sse_one
#include "../fuzz/fuzz_sse.c"
#undef LLVMFuzzerTestOneInput

#define DATA "tests/data/"
#define REPLAY_MAX_FILE_BYTES (16u << 20)

typedef int (*fuzz_entry)(const uint8_t *data, size_t size);
typedef void (*file_cb)(void *ud, const char *name, const uint8_t *data, size_t size);

/* Calls cb for every regular file in dir whose name starts with prefix; returns how many. */
static int for_each_file(const char *dir, const char *prefix, file_cb cb, void *ud)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len = 0;
        char *data = file_read_all(path, REPLAY_MAX_FILE_BYTES, &len);
        if (!data)
            continue; /* a directory */
        cb(ud, e->d_name, (const uint8_t *)data, len);
        free(data);
        n++;
    }
    closedir(d);
    return n;
}

static void replay_one(void *ud, const char *name, const uint8_t *data, size_t size)
{
    fuzz_entry fn = *(fuzz_entry *)ud;
    CHECK_MSG(fn(data, size) == 0, "%s", name);
}

static void replay_dir(const char *target, fuzz_entry fn)
{
    char dir[256];
    snprintf(dir, sizeof dir, DATA "fuzz-%s", target);
    int n = for_each_file(dir, "", replay_one, &fn);
    CHECK_MSG(n >= 2, "%s: %d inputs", dir, n);
}

static void test_replay_http(void)
{
    replay_dir("http", fuzz_http_one);
}
static void test_replay_openai(void)
{
    replay_dir("openai", fuzz_openai_one);
}
static void test_replay_prom(void)
{
    replay_dir("prom", fuzz_prom_one);
}
static void test_replay_chunk_scan(void)
{
    replay_dir("chunk_scan", fuzz_chunk_scan_one_input);
}
static void test_replay_gguf(void)
{
    replay_dir("gguf", fuzz_gguf_one);
}
static void test_replay_tokenizer(void)
{
    replay_dir("tokenizer", fuzz_tokenizer_one);
}
static void test_replay_logparse(void)
{
    replay_dir("logparse", fuzz_logparse_one);
}

static void test_replay_sse(void)
{
    fuzz_entry fn = fuzz_sse_one;
    int n = for_each_file(DATA, "sse_", replay_one, &fn);
    CHECK_MSG(n >= 2, "%d SSE inputs", n);
}

/* ---- differential check against the nodejs http-parser ---- */

#define DIFF_MAX_REQS 16
#define DIFF_MAX_HEADERS 32

struct diff_req {
    char method[16];
    struct buf target;  /* ours: path; reference: the URL reduced the same way */
    struct buf headers; /* "name\0value\0" pairs */
    struct buf body;
    int last_was_value;
    int in_trailers; /* reference: header callbacks after the head are trailers */
};

struct diff_result {
    struct diff_req reqs[DIFF_MAX_REQS];
    int n_done;
    int error;
};

static void diff_result_init(struct diff_result *r)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < DIFF_MAX_REQS; i++) {
        buf_init(&r->reqs[i].target, 0, 1u << 16);
        buf_init(&r->reqs[i].headers, 0, 1u << 20);
        buf_init(&r->reqs[i].body, 0, 1u << 24);
    }
}

static void diff_result_free(struct diff_result *r)
{
    for (int i = 0; i < DIFF_MAX_REQS; i++) {
        buf_free(&r->reqs[i].target);
        buf_free(&r->reqs[i].headers);
        buf_free(&r->reqs[i].body);
    }
}

static void ours_on_header(void *ud, const char *name, size_t name_len, const char *value,
                           size_t value_len)
{
    struct diff_result *r = ud;
    if (r->n_done >= DIFF_MAX_REQS)
        return;
    struct buf *h = &r->reqs[r->n_done].headers;
    buf_append(h, name, name_len);
    buf_putc(h, 0);
    buf_append(h, value, value_len);
    buf_putc(h, 0);
}

static void diff_ours(const uint8_t *data, size_t size, struct diff_result *r)
{
    struct http_reader p;
    http_reader_init(&p, 8u << 20);
    p.on_header = ours_on_header;
    p.ud = r;
    size_t pos = 0;
    while (pos < size && r->n_done < DIFF_MAX_REQS) {
        size_t used = 0;
        enum http_parse_status st =
            http_reader_feed(&p, (const char *)data + pos, size - pos, &used);
        pos += used;
        if (st == HTTP_PARSE_REQUEST_DONE) {
            struct diff_req *q = &r->reqs[r->n_done++];
            snprintf(q->method, sizeof q->method, "%s", p.req.method);
            buf_puts(&q->target, p.req.path);
            buf_append(&q->body, p.req.body.data ? p.req.body.data : "", p.req.body.len);
            http_reader_reset(&p);
        } else if (http_parse_status_is_error(st)) {
            r->error = 1;
            break;
        }
    }
    http_reader_free(&p);
}

static struct diff_req *ref_cur(http_parser *p)
{
    struct diff_result *r = p->data;
    return r->n_done < DIFF_MAX_REQS ? &r->reqs[r->n_done] : NULL;
}

static int ref_on_url(http_parser *p, const char *at, size_t n)
{
    struct diff_req *q = ref_cur(p);
    if (q)
        buf_append(&q->target, at, n);
    return 0;
}

static int ref_on_field(http_parser *p, const char *at, size_t n)
{
    struct diff_req *q = ref_cur(p);
    if (q && !q->in_trailers) {
        if (q->last_was_value || q->headers.len == 0) {
            if (q->headers.len)
                buf_putc(&q->headers, 0);
        }
        buf_append(&q->headers, at, n);
        q->last_was_value = 0;
    }
    return 0;
}

static int ref_on_value(http_parser *p, const char *at, size_t n)
{
    struct diff_req *q = ref_cur(p);
    if (q && !q->in_trailers) {
        if (!q->last_was_value)
            buf_putc(&q->headers, 0);
        buf_append(&q->headers, at, n);
        q->last_was_value = 1;
    }
    return 0;
}

static int ref_on_headers_complete(http_parser *p)
{
    struct diff_req *q = ref_cur(p);
    if (q) {
        if (q->headers.len)
            buf_putc(&q->headers, 0);
        q->in_trailers = 1;
        snprintf(q->method, sizeof q->method, "%s", http_method_str((enum http_method)p->method));
    }
    return 0;
}

static int ref_on_body(http_parser *p, const char *at, size_t n)
{
    struct diff_req *q = ref_cur(p);
    if (q)
        buf_append(&q->body, at, n);
    return 0;
}

/* The reference's URL reduced as ours reduces the target: absolute-form to its path, then cut
 * before '?' or '#'. */
static void ref_reduce_target(struct buf *t)
{
    char *s = xstrndup(t->data ? t->data : "", t->len);
    const char *path = s;
    if (!strncmp(s, "http://", 7)) {
        const char *slash = strchr(s + 7, '/');
        path = slash ? slash : "/";
    }
    size_t n = strcspn(path, "?#");
    buf_reset(t);
    buf_append(t, path, n);
    free(s);
}

static int ref_on_message_complete(http_parser *p)
{
    struct diff_result *r = p->data;
    if (r->n_done < DIFF_MAX_REQS)
        ref_reduce_target(&r->reqs[r->n_done++].target);
    return 0;
}

static void diff_ref(const uint8_t *data, size_t size, struct diff_result *r)
{
    http_parser_settings s;
    http_parser_settings_init(&s);
    s.on_url = ref_on_url;
    s.on_header_field = ref_on_field;
    s.on_header_value = ref_on_value;
    s.on_headers_complete = ref_on_headers_complete;
    s.on_body = ref_on_body;
    s.on_message_complete = ref_on_message_complete;
    http_parser p;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = r;
    size_t n = http_parser_execute(&p, &s, (const char *)data, size);
    if (n != size || HTTP_PARSER_ERRNO(&p) != HPE_OK)
        r->error = 1;
}

static int buf_eq(const struct buf *a, const struct buf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* Inputs on which we deliberately differ from http-parser, and why. */
static const struct {
    const char *name;
    const char *why;
} diff_expected[] = {
    {"bad_version", "only HTTP/1.0 and 1.1 are accepted (505); http-parser takes any digit"},
    {"folding", "obsolete line folding is rejected (RFC 9112 5.2); http-parser joins it"},
    {"too_large", "Content-Length over the body cap is answered 413 at once"},
    {"te_gzip", "codings other than chunked are refused (501); http-parser only frames them"},
};

static void diff_one(void *ud, const char *name, const uint8_t *data, size_t size)
{
    int *n_compared = ud;
    struct diff_result ours, ref;
    diff_result_init(&ours);
    diff_result_init(&ref);
    diff_ours(data, size, &ours);
    diff_ref(data, size, &ref);
    int expected_diff = 0;
    for (size_t i = 0; i < sizeof diff_expected / sizeof diff_expected[0]; i++)
        expected_diff |= !strcmp(name, diff_expected[i].name);
    int same_decision = ours.error == ref.error && ours.n_done == ref.n_done;
    if (expected_diff) {
        CHECK_MSG(!same_decision, "%s: listed as a deliberate difference but both agree", name);
    } else {
        CHECK_MSG(same_decision, "%s: ours %d requests%s, http-parser %d%s", name, ours.n_done,
                  ours.error ? " then error" : "", ref.n_done, ref.error ? " then error" : "");
    }
    int n = ours.n_done < ref.n_done ? ours.n_done : ref.n_done;
    for (int i = 0; i < n; i++) {
        const struct diff_req *a = &ours.reqs[i], *b = &ref.reqs[i];
        CHECK_MSG(!strcmp(a->method, b->method), "%s #%d: method %s vs %s", name, i, a->method,
                  b->method);
        CHECK_MSG(buf_eq(&a->target, &b->target), "%s #%d: target %s vs %s", name, i,
                  a->target.data, b->target.data);
        CHECK_MSG(buf_eq(&a->headers, &b->headers), "%s #%d: headers differ", name, i);
        CHECK_MSG(buf_eq(&a->body, &b->body), "%s #%d: body %zu vs %zu bytes", name, i, a->body.len,
                  b->body.len);
        (*n_compared)++;
    }
    diff_result_free(&ours);
    diff_result_free(&ref);
}

static void test_http_differential(void)
{
    int n_compared = 0;
    int n_files = for_each_file(DATA "fuzz-http", "", diff_one, &n_compared);
    CHECK_MSG(n_files >= 10, "%d HTTP inputs", n_files);
    CHECK_MSG(n_compared >= 8, "%d requests compared", n_compared);
}

int main(void)
{
    TEST_RUN(test_replay_http);
    TEST_RUN(test_replay_openai);
    TEST_RUN(test_replay_prom);
    TEST_RUN(test_replay_chunk_scan);
    TEST_RUN(test_replay_gguf);
    TEST_RUN(test_replay_tokenizer);
    TEST_RUN(test_replay_logparse);
    TEST_RUN(test_replay_sse);
    TEST_RUN(test_http_differential);
    return TEST_DONE();
}
