/* test_workload: synthetic prompts (exact lengths, ranges, distinct headers, determinism), prompt
 * files (JSONL and ShareGPT, every error with its line), and the prefix-sharing generator. */
#include <stdlib.h>
#include <unistd.h>

#include "measure/workload.h"
#include "test.h"

#define DATA "tests/data/"

static size_t count_words(const char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ' ' && i + 1 < n && s[i + 1] != ' ')
            w++;
    return w;
}

static void test_synth_byte_exact(void)
{
    struct workload w;
    CHECK_EQ_INT(
        workload_init_synth(&w, &(struct workload_synth){.input_len_tokens = 128, .seed = 1}),
        WORKLOAD_OK);
    struct buf a, b;
    buf_init(&a, 256, 1 << 20);
    buf_init(&b, 256, 1 << 20);
    for (uint64_t i = 0; i < 200; i++) {
        buf_reset(&a);
        int n = 0;
        CHECK_EQ_INT(workload_prompt(&w, i, &a, &n), WORKLOAD_OK);
        CHECK_EQ_INT(n, 128);
        CHECK_EQ_INT(a.len, 128);
        CHECK_EQ_INT(strlen(a.data), 128); /* no NUL bytes inside */
        for (size_t k = 0; k < a.len; k++)
            CHECK(a.data[k] >= 0x20 && a.data[k] < 0x7f);
        /* Distinct first 16 bytes (one KV block) against the previous request. */
        if (i > 0)
            CHECK(memcmp(a.data, b.data, 16) != 0);
        buf_reset(&b);
        buf_append(&b, a.data, a.len);
    }
    /* Deterministic: same seed and index, same bytes; another seed differs. */
    buf_reset(&a);
    buf_reset(&b);
    workload_prompt(&w, 7, &a, NULL);
    workload_prompt(&w, 7, &b, NULL);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    struct workload w2;
    workload_init_synth(&w2, &(struct workload_synth){.input_len_tokens = 128, .seed = 2});
    buf_reset(&b);
    workload_prompt(&w2, 7, &b, NULL);
    CHECK(memcmp(a.data, b.data, 16) != 0);
    workload_free(&w);
    workload_free(&w2);
    buf_free(&a);
    buf_free(&b);
}

static void test_synth_headers_distinct(void)
{
    /* 2000 prompts: all 16-byte headers distinct (a bijection of the index). */
    struct workload w;
    workload_init_synth(&w, &(struct workload_synth){.input_len_tokens = 32, .seed = 99});
    enum { N = 2000 };
    char(*hdr)[17] = calloc(N, 17);
    struct buf b;
    buf_init(&b, 64, 4096);
    for (int i = 0; i < N; i++) {
        buf_reset(&b);
        workload_prompt(&w, (uint64_t)i, &b, NULL);
        memcpy(hdr[i], b.data, 16);
    }
    int dup = 0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            dup += memcmp(hdr[i], hdr[j], 16) == 0;
    CHECK_EQ_INT(dup, 0);
    free(hdr);
    buf_free(&b);
    workload_free(&w);
}

static void test_synth_short_lengths(void)
{
    struct buf b;
    buf_init(&b, 64, 4096);
    for (int len = 1; len <= 40; len++) {
        struct workload w;
        CHECK_EQ_INT(workload_init_synth(&w, &(struct workload_synth){.input_len_tokens = len}),
                     WORKLOAD_OK);
        buf_reset(&b);
        int n = 0;
        workload_prompt(&w, 3, &b, &n);
        CHECK_EQ_INT(b.len, len);
        CHECK_EQ_INT(n, len);
        workload_free(&w);
    }
    buf_free(&b);
}

static void test_synth_range(void)
{
    struct workload_synth s = {.input_len_tokens = 100, .input_len_range = 0.5, .seed = 5};
    struct workload w;
    CHECK_EQ_INT(workload_init_synth(&w, &s), WORKLOAD_OK);
    struct buf b;
    buf_init(&b, 256, 1 << 16);
    int lo = 1 << 30, hi = 0;
    double sum = 0;
    for (uint64_t i = 0; i < 4000; i++) {
        int n = workload_synth_len(&s, i);
        buf_reset(&b);
        int m = 0;
        workload_prompt(&w, i, &b, &m);
        CHECK_EQ_INT(m, n);
        CHECK_EQ_INT(b.len, n);
        lo = n < lo ? n : lo;
        hi = n > hi ? n : hi;
        sum += n;
    }
    CHECK_EQ_INT(lo, 50);
    CHECK_EQ_INT(hi, 150);
    CHECK_NEAR(sum / 4000, 100.0, 2.5);
    struct buf d;
    buf_init(&d, 256, 4096);
    workload_describe(&w, &d);
    CHECK(strstr(d.data, "[50, 150]") != NULL);
    CHECK(strstr(d.data, "unique") != NULL);
    buf_free(&d);
    buf_free(&b);
    workload_free(&w);
}

static void test_synth_word_mode(void)
{
    struct workload w;
    workload_init_synth(&w, &(struct workload_synth){
                                .input_len_tokens = 64, .unit = WORKLOAD_UNIT_WORD, .seed = 3});
    struct buf b;
    buf_init(&b, 256, 1 << 16);
    int n = 0;
    CHECK_EQ_INT(workload_prompt(&w, 0, &b, &n), WORKLOAD_OK);
    CHECK_EQ_INT(n, 64);
    CHECK_EQ_INT(count_words(b.data, b.len), 64);
    CHECK(b.data[0] == ' ');
    struct buf c;
    buf_init(&c, 256, 1 << 16);
    workload_prompt(&w, 1, &c, NULL);
    CHECK(strcmp(b.data, c.data) != 0);
    buf_free(&b);
    buf_free(&c);
    workload_free(&w);
}

static void test_synth_invalid(void)
{
    struct workload w;
    CHECK_EQ_INT(workload_init_synth(&w, &(struct workload_synth){.input_len_tokens = 0}),
                 WORKLOAD_ERR_ARG);
    workload_free(&w);
    CHECK_EQ_INT(workload_init_synth(
                     &w, &(struct workload_synth){.input_len_tokens = 10, .input_len_range = 1.0}),
                 WORKLOAD_ERR_ARG);
    CHECK_EQ_INT(workload_init_synth(
                     &w, &(struct workload_synth){.input_len_tokens = 10, .input_len_range = -0.1}),
                 WORKLOAD_ERR_ARG);
    CHECK_EQ_STR(workload_status_str(WORKLOAD_ERR_ARG), "invalid argument");
}

static void test_cap(void)
{
    struct workload w;
    workload_init_synth(&w, &(struct workload_synth){.input_len_tokens = 5000});
    struct buf b;
    buf_init(&b, 16, 1000);
    buf_puts(&b, "keep");
    CHECK_EQ_INT(workload_prompt(&w, 0, &b, NULL), WORKLOAD_ERR_CAP);
    CHECK_EQ_INT(b.len, 4);
    CHECK_EQ_STR(b.data, "keep");
    buf_free(&b);
    workload_free(&w);
}

static void test_jsonl_ok(void)
{
    struct workload w;
    char err[512] = "";
    CHECK_EQ_INT(
        workload_init_file(&w, DATA "prompts_ok.jsonl", 0, WORKLOAD_UNIT_BYTE, 1, err, sizeof err),
        WORKLOAD_OK);
    CHECK_EQ_INT(w.source, WORKLOAD_SOURCE_JSONL);
    CHECK_EQ_INT(w.n_prompts, 3);
    if (w.n_prompts == 3) {
        CHECK_EQ_STR(w.prompts[0], "Hello there, how are you?");
        CHECK_EQ_STR(w.prompts[1], "Caf\xc3\xa9 au lait \xe2\x98\x95");
        CHECK_EQ_STR(w.prompts[2], "third line");
    }
    CHECK_EQ_INT(w.prompt_bytes_min, 10);
    CHECK_EQ_INT(w.prompt_bytes_max, 25);
    struct buf b;
    buf_init(&b, 64, 4096);
    int n = 0;
    CHECK_EQ_INT(workload_prompt(&w, 5, &b, &n), WORKLOAD_OK); /* cycles: 5 % 3 = 2 */
    CHECK_EQ_INT(b.len, WORKLOAD_HEADER_BYTES + 10);
    CHECK_EQ_INT(n, WORKLOAD_HEADER_BYTES + 10);
    CHECK(strcmp(b.data + WORKLOAD_HEADER_BYTES, "third line") == 0);
    struct buf c;
    buf_init(&c, 64, 4096);
    workload_prompt(&w, 2, &c, NULL); /* same file prompt, different header */
    CHECK(strcmp(c.data + WORKLOAD_HEADER_BYTES, "third line") == 0);
    CHECK(memcmp(b.data, c.data, 16) != 0);
    /* Without the header, prompts go out as they are. */
    w.unique_header = 0;
    buf_reset(&b);
    workload_prompt(&w, 0, &b, &n);
    CHECK_EQ_STR(b.data, "Hello there, how are you?");
    w.unique_header = 1;
    /* Word mode: token counts unknown. */
    w.synth.unit = WORKLOAD_UNIT_WORD;
    buf_reset(&b);
    workload_prompt(&w, 0, &b, &n);
    CHECK_EQ_INT(n, -1);
    buf_reset(&b);
    workload_describe(&w, &b);
    CHECK(strstr(b.data, "3 prompts") != NULL);
    buf_free(&b);
    buf_free(&c);
    workload_free(&w);
    CHECK_EQ_INT(w.n_prompts, 0);
}

static void expect_file_error(const char *path, enum workload_status want, const char *needle)
{
    struct workload w;
    char err[512] = "";
    enum workload_status st =
        workload_init_file(&w, path, 0, WORKLOAD_UNIT_BYTE, 1, err, sizeof err);
    CHECK_MSG(st == want, "%s: got %s (%s)", path, workload_status_str(st), err);
    CHECK_MSG(strstr(err, needle) != NULL, "%s: \"%s\" lacks \"%s\"", path, err, needle);
    CHECK_EQ_INT(w.n_prompts, 0);
    CHECK(w.prompts == NULL);
    workload_free(&w);
}

static void test_jsonl_errors(void)
{
    expect_file_error(DATA "prompts_bad_json.jsonl", WORKLOAD_ERR_JSON,
                      "prompts_bad_json.jsonl:3: malformed JSON");
    expect_file_error(DATA "prompts_missing.jsonl", WORKLOAD_ERR_FIELD,
                      "prompts_missing.jsonl:5: \"prompt\" is missing");
    expect_file_error(DATA "prompts_nonstring.jsonl", WORKLOAD_ERR_FIELD,
                      "prompts_nonstring.jsonl:2: \"prompt\" is an integer, not a string");
    expect_file_error(DATA "prompts_empty_prompt.jsonl", WORKLOAD_ERR_FIELD,
                      "prompts_empty_prompt.jsonl:2: \"prompt\" is empty");
    expect_file_error(DATA "no_such_prompts.jsonl", WORKLOAD_ERR_IO,
                      "no_such_prompts.jsonl: cannot read prompt file: No such file");
    expect_file_error(DATA, WORKLOAD_ERR_IO, "cannot read prompt file");
    /* Empty and blank files, and a file that is not an object per line. */
    char path[] = "/tmp/slm_test_workload_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, "\n  \n", 4) == 4);
        close(fd);
        expect_file_error(path, WORKLOAD_ERR_EMPTY, "no prompts found");
        FILE *f = fopen(path, "w");
        fputs("{\"prompt\":\"a\"}\n[1,2]\n", f);
        fclose(f);
        expect_file_error(path, WORKLOAD_ERR_FIELD, ":2: expected an object");
        /* The cap: a file larger than max_bytes is refused. */
        struct workload w;
        char err[256];
        CHECK_EQ_INT(workload_init_file(&w, path, 4, WORKLOAD_UNIT_BYTE, 1, err, sizeof err),
                     WORKLOAD_ERR_IO);
        CHECK(strstr(err, "larger than the cap") != NULL);
        unlink(path);
    }
}

static void test_sharegpt(void)
{
    struct workload w;
    char err[512] = "";
    CHECK_EQ_INT(workload_init_file(&w, DATA "prompts_sharegpt.json", 0, WORKLOAD_UNIT_BYTE, 1, err,
                                    sizeof err),
                 WORKLOAD_OK);
    CHECK_EQ_INT(w.source, WORKLOAD_SOURCE_SHAREGPT);
    CHECK_EQ_INT(w.n_prompts, 3);
    CHECK_EQ_INT(w.n_skipped, 3);
    if (w.n_prompts == 3) {
        CHECK_EQ_STR(w.prompts[0], "What is the capital of France?");
        CHECK_EQ_STR(w.prompts[1], "Tell me a story about a dragon.");
        CHECK_EQ_STR(w.prompts[2], "Summarise:\nline one\nline two");
    }
    struct buf b;
    buf_init(&b, 64, 4096);
    workload_describe(&w, &b);
    CHECK(strstr(b.data, "sharegpt") != NULL);
    CHECK(strstr(b.data, "3 entries without a human turn skipped") != NULL);
    buf_free(&b);
    workload_free(&w);
    expect_file_error(DATA "prompts_sharegpt_bad.json", WORKLOAD_ERR_JSON, "malformed JSON: line ");
    expect_file_error(DATA "prompts_sharegpt_nonstring.json", WORKLOAD_ERR_FIELD,
                      "entry 1, turn 0: human \"value\" is array, not a string");
}

static void test_prefix_mix(void)
{
    struct workload_prefix g;
    struct workload_prefix_config cfg = {.prefix_len_tokens = 100,
                                         .suffix_len_tokens = 20,
                                         .n_variants = 3,
                                         .hit_rate = 0.75,
                                         .seed = 11};
    CHECK_EQ_INT(workload_prefix_init(&g, &cfg), WORKLOAD_OK);
    struct buf b, v[3];
    buf_init(&b, 256, 1 << 16);
    for (int k = 0; k < 3; k++) {
        buf_init(&v[k], 256, 1 << 16);
        CHECK_EQ_INT(workload_prefix_variant(&g, k, &v[k]), WORKLOAD_OK);
        CHECK_EQ_INT(v[k].len, 100);
    }
    CHECK(memcmp(v[0].data, v[1].data, 16) != 0 && memcmp(v[1].data, v[2].data, 16) != 0);
    int n_shared = 0, n_hit = 0, seen[3] = {0};
    char prev_suffix[17] = "";
    for (int i = 0; i < 400; i++) {
        struct workload_prefix_info info;
        buf_reset(&b);
        CHECK_EQ_INT(workload_prefix_next(&g, &b, &info), WORKLOAD_OK);
        CHECK_EQ_INT(info.i_request, i);
        CHECK_EQ_INT(b.len, 120);
        CHECK_EQ_INT(info.n_prefix_tokens, 100);
        CHECK_EQ_INT(info.n_suffix_tokens, 20);
        if (info.variant >= 0) {
            n_shared++;
            CHECK(memcmp(b.data, v[info.variant].data, 100) == 0);
            CHECK_EQ_INT(info.expect_hit, seen[info.variant]);
            n_hit += info.expect_hit;
            seen[info.variant] = 1;
        } else {
            for (int k = 0; k < 3; k++)
                CHECK(memcmp(b.data, v[k].data, 16) != 0);
            CHECK_EQ_INT(info.expect_hit, 0);
        }
        /* Suffixes start with distinct headers. */
        CHECK(memcmp(b.data + 100, prev_suffix, 16) != 0);
        memcpy(prev_suffix, b.data + 100, 16);
        /* The running mix is exact. */
        CHECK(abs(n_shared - (int)lround((i + 1) * 0.75)) == 0);
    }
    CHECK_EQ_INT(n_shared, 300);
    CHECK_EQ_INT(n_hit, 297); /* first use of each of 3 variants is cold */
    CHECK_EQ_INT(g.n_expect_hit, 297);
    workload_prefix_free(&g);
    workload_prefix_free(&g); /* idempotent */
    for (int k = 0; k < 3; k++)
        buf_free(&v[k]);
    buf_free(&b);
}

static void test_prefix_edges(void)
{
    struct workload_prefix g;
    struct buf b;
    buf_init(&b, 256, 1 << 16);
    /* hit_rate 0: every prefix is the request's own. */
    CHECK_EQ_INT(workload_prefix_init(&g, &(struct workload_prefix_config){.prefix_len_tokens = 32,
                                                                           .suffix_len_tokens = 8,
                                                                           .n_variants = 1}),
                 WORKLOAD_OK);
    struct buf first;
    buf_init(&first, 64, 4096);
    for (int i = 0; i < 10; i++) {
        struct workload_prefix_info info;
        buf_reset(&b);
        workload_prefix_next(&g, &b, &info);
        CHECK_EQ_INT(info.variant, -1);
        if (i == 0)
            buf_append(&first, b.data, b.len);
        else
            CHECK(memcmp(first.data, b.data, 16) != 0);
    }
    workload_prefix_free(&g);
    /* hit_rate 1, one variant, word mode. */
    CHECK_EQ_INT(
        workload_prefix_init(&g, &(struct workload_prefix_config){.prefix_len_tokens = 40,
                                                                  .suffix_len_tokens = 10,
                                                                  .n_variants = 1,
                                                                  .hit_rate = 1.0,
                                                                  .unit = WORKLOAD_UNIT_WORD,
                                                                  .seed = 4}),
        WORKLOAD_OK);
    for (int i = 0; i < 5; i++) {
        struct workload_prefix_info info;
        buf_reset(&b);
        workload_prefix_next(&g, &b, &info);
        CHECK_EQ_INT(info.variant, 0);
        CHECK_EQ_INT(info.expect_hit, i > 0);
        CHECK_EQ_INT(count_words(b.data, b.len), 50);
    }
    workload_prefix_free(&g);
    /* Invalid configurations. */
    CHECK_EQ_INT(workload_prefix_init(
                     &g, &(struct workload_prefix_config){.suffix_len_tokens = 0, .n_variants = 1}),
                 WORKLOAD_ERR_ARG);
    CHECK_EQ_INT(workload_prefix_init(
                     &g, &(struct workload_prefix_config){.suffix_len_tokens = 1, .n_variants = 0}),
                 WORKLOAD_ERR_ARG);
    CHECK_EQ_INT(workload_prefix_init(&g, &(struct workload_prefix_config){.suffix_len_tokens = 1,
                                                                           .n_variants = 1,
                                                                           .hit_rate = 1.5}),
                 WORKLOAD_ERR_ARG);
    CHECK_EQ_INT(workload_prefix_next(&g, &b, NULL), WORKLOAD_ERR_ARG);
    workload_prefix_free(&g);
    /* Cap: nothing counted, the retry gives the same request. */
    CHECK_EQ_INT(workload_prefix_init(&g, &(struct workload_prefix_config){.prefix_len_tokens = 500,
                                                                           .suffix_len_tokens = 10,
                                                                           .n_variants = 1,
                                                                           .hit_rate = 1.0}),
                 WORKLOAD_OK);
    struct buf small;
    buf_init(&small, 16, 100);
    CHECK_EQ_INT(workload_prefix_next(&g, &small, NULL), WORKLOAD_ERR_CAP);
    CHECK_EQ_INT(small.len, 0);
    CHECK_EQ_INT(g.n_made, 0);
    struct workload_prefix_info info;
    buf_reset(&b);
    CHECK_EQ_INT(workload_prefix_next(&g, &b, &info), WORKLOAD_OK);
    CHECK_EQ_INT(info.i_request, 0);
    CHECK_EQ_INT(info.expect_hit, 0);
    workload_prefix_free(&g);
    buf_free(&small);
    buf_free(&first);
    buf_free(&b);
}

int main(void)
{
    TEST_RUN(test_synth_byte_exact);
    TEST_RUN(test_synth_headers_distinct);
    TEST_RUN(test_synth_short_lengths);
    TEST_RUN(test_synth_range);
    TEST_RUN(test_synth_word_mode);
    TEST_RUN(test_synth_invalid);
    TEST_RUN(test_cap);
    TEST_RUN(test_jsonl_ok);
    TEST_RUN(test_jsonl_errors);
    TEST_RUN(test_sharegpt);
    TEST_RUN(test_prefix_mix);
    TEST_RUN(test_prefix_edges);
    return TEST_DONE();
}
