/* test_tokenizer: default vocabulary layout, one-token-per-byte encoding, decoding, streaming
 * UTF-8 hold-back at every split, U+FFFD for invalid input (maximal subparts, as Python/WHATWG),
 * and "llama" SPM / "gpt2" byte-level vocabularies built here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"
#include "test.h"

#define FFFD "\xef\xbf\xbd"

static uint64_t rng_state = 0x1234567;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* Appends the UTF-8 encoding of cp (valid scalar value) to out; returns bytes. */
static size_t put_utf8(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static uint32_t random_cp(void)
{
    for (;;) {
        uint32_t r = rng();
        uint32_t cp;
        switch (r % 4) {
        case 0: cp = r % 0x80; break;
        case 1: cp = 0x80 + r % (0x800 - 0x80); break;
        case 2: cp = 0x800 + r % (0x10000 - 0x800); break;
        default: cp = 0x10000 + r % (0x110000 - 0x10000); break;
        }
        if (cp >= 0xd800 && cp <= 0xdfff)
            continue;
        return cp;
    }
}

/* Decodes bytes through utf8_stream in one go (reference for the split tests). */
static void stream_all(const char *s, size_t n, struct buf *out)
{
    struct utf8_stream u = {0};
    CHECK(utf8_stream_feed(&u, s, n, out) == BUF_OK);
    CHECK(utf8_stream_flush(&u, out) == BUF_OK);
}

static void check_stream(const char *in, size_t n, const char *want, size_t want_len)
{
    struct buf b;
    buf_init(&b, 64, 1 << 20);
    stream_all(in, n, &b);
    CHECK_MSG(b.len == want_len && memcmp(b.data, want, want_len) == 0,
              "input of %zu bytes gave %zu bytes, want %zu", n, b.len, want_len);
    buf_free(&b);
}

static void test_default_layout(void)
{
    struct tokenizer t;
    CHECK(tokenizer_init_default(&t, 257) == -1);
    tokenizer_free(&t);
    CHECK_EQ_INT(tokenizer_init_default(&t, 1024), 0);
    CHECK_EQ_INT(t.kind, TOK_KIND_SLM);
    CHECK_EQ_INT(t.n_vocab, 1024);
    CHECK_EQ_INT(t.bos_id, 256);
    CHECK_EQ_INT(t.eos_id, 257);
    for (int b = 0; b < 256; b++) {
        char want[8];
        snprintf(want, sizeof want, "<0x%02X>", b);
        CHECK_EQ_STR(t.text[b], want);
        CHECK_EQ_INT(t.type[b], TOK_TYPE_BYTE);
        CHECK_EQ_INT(t.byte_to_id[b], b);
        size_t len;
        const char *p = tokenizer_piece(&t, b, &len);
        CHECK(p && len == 1 && (unsigned char)p[0] == b);
    }
    CHECK_EQ_STR(t.text[256], "<s>");
    CHECK_EQ_STR(t.text[257], "</s>");
    CHECK_EQ_INT(t.type[256], TOK_TYPE_CONTROL);
    CHECK_EQ_INT(t.type[257], TOK_TYPE_CONTROL);
    CHECK_EQ_INT(t.piece_len[256], 0);
    CHECK_EQ_INT(t.piece_len[257], 0);
    CHECK(tokenizer_piece(&t, -1, NULL) == NULL);
    CHECK(tokenizer_piece(&t, 1024, NULL) == NULL);
    int n_space = 0;
    for (int id = 258; id < 1024; id++) {
        CHECK_EQ_INT(t.type[id], TOK_TYPE_NORMAL);
        CHECK(t.score[id] == -(float)id);
        n_space += t.piece[id][0] == ' ';
        /* GGUF text: spaces written as U+2581, nothing else changed */
        char want[64];
        size_t k = 0;
        for (uint32_t i = 0; i < t.piece_len[id]; i++) {
            if (t.piece[id][i] == ' ') {
                memcpy(want + k, "\xe2\x96\x81", 3);
                k += 3;
            } else {
                want[k++] = t.piece[id][i];
            }
        }
        want[k] = 0;
        CHECK_EQ_STR(t.text[id], want);
    }
    CHECK(n_space > 200 && n_space < 600); /* some, not all, start with a space */
    tokenizer_free(&t);
    tokenizer_free(&t); /* idempotent */
    tokenizer_free(NULL);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_default_tokens_printable_distinct(void)
{
    struct tokenizer t;
    int n_vocab = 151936; /* the largest preset vocabulary */
    CHECK_EQ_INT(tokenizer_init_default(&t, n_vocab), 0);
    int bad = 0;
    struct buf b;
    buf_init(&b, 64, 1024);
    for (int id = 258; id < n_vocab && bad < 5; id++) {
        int32_t ids[3] = {256, id, 257};
        buf_reset(&b);
        CHECK(tokenizer_decode(&t, ids, 3, &b) == BUF_OK);
        int ok = b.len > 0 && b.len == t.piece_len[id];
        for (size_t i = 0; i < b.len; i++)
            ok &= b.data[i] >= 0x20 && b.data[i] <= 0x7e;
        if (!ok) {
            bad++;
            CHECK_MSG(0, "token %d decodes to \"%s\"", id, b.data);
        }
    }
    buf_free(&b);
    char **p = malloc(sizeof *p * (size_t)(n_vocab - 258));
    for (int id = 258; id < n_vocab; id++)
        p[id - 258] = t.piece[id];
    qsort(p, (size_t)(n_vocab - 258), sizeof *p, cmp_str);
    int dups = 0;
    for (int i = 1; i < n_vocab - 258; i++)
        dups += strcmp(p[i - 1], p[i]) == 0;
    CHECK_EQ_INT(dups, 0);
    free(p);
    tokenizer_free(&t);
}

static void test_encode_counts(void)
{
    struct tokenizer t;
    CHECK_EQ_INT(tokenizer_init_default(&t, 1024), 0);
    const char *s = "Hello, w\xc3\xb6rld \xe2\x82\xac \xf0\x9f\x98\x80!";
    size_t n = strlen(s);
    int32_t ids[64];
    CHECK_EQ_INT(tokenizer_encode(&t, s, n, ids, 64), n);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(ids[i], (unsigned char)s[i]);
    /* capped output still returns the exact count and writes only max_out */
    int32_t few[4] = {-7, -7, -7, -7};
    CHECK_EQ_INT(tokenizer_encode(&t, s, n, few, 3), n);
    CHECK(few[2] == 'l' && few[3] == -7);
    CHECK_EQ_INT(tokenizer_encode(&t, "", 0, few, 4), 0);
    /* every byte value, including NUL */
    char all[256];
    int32_t out[256];
    for (int i = 0; i < 256; i++)
        all[i] = (char)i;
    CHECK_EQ_INT(tokenizer_encode(&t, all, 256, out, 256), 256);
    for (int i = 0; i < 256; i++)
        CHECK_EQ_INT(out[i], i);
    tokenizer_free(&t);
}

static void test_decode_roundtrip(void)
{
    struct tokenizer t;
    CHECK_EQ_INT(tokenizer_init_default(&t, 1024), 0);
    struct buf b;
    buf_init(&b, 64, 1 << 20);
    char s[4096];
    int32_t ids[4096];
    for (int iter = 0; iter < 300; iter++) {
        size_t n = 0;
        int n_cp = (int)(rng() % 200);
        for (int k = 0; k < n_cp; k++)
            n += put_utf8(random_cp(), s + n);
        size_t m = tokenizer_encode(&t, s, n, ids, 4096);
        CHECK_EQ_INT(m, n);
        buf_reset(&b);
        CHECK(tokenizer_decode(&t, ids, m, &b) == BUF_OK);
        CHECK(b.len == n && memcmp(b.data, s, n) == 0);
    }
    /* BOS/EOS contribute nothing; out-of-range ids are skipped */
    int32_t sp[] = {256, 'h', 'i', 257, 5000, -1};
    buf_reset(&b);
    CHECK(tokenizer_decode(&t, sp, 6, &b) == BUF_OK);
    CHECK_EQ_STR(b.data, "hi");
    /* capped output */
    struct buf small;
    buf_init(&small, 16, 4);
    int32_t many[] = {'a', 'b', 'c', 'd', 'e', 'f'};
    CHECK(tokenizer_decode(&t, many, 6, &small) == BUF_ERR_CAP);
    buf_free(&small);
    buf_free(&b);
    tokenizer_free(&t);
}

static void test_stream_every_split(void)
{
    const char *samples[] = {
        "\xc3\xa9",                 /* é: 2 bytes */
        "\xe2\x82\xac",             /* €: 3 bytes */
        "\xf0\x9f\x98\x80",         /* 😀: 4 bytes */
        "a\xc3\xa9" "b\xe2\x82\xac" "c\xf0\x9f\x98\x80" "d",
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xe2\x82\xac\xc3\xa9",
        "x\x80y\xe2\x82z",          /* invalid pieces mixed in */
    };
    struct buf whole, parts;
    buf_init(&whole, 64, 1 << 16);
    buf_init(&parts, 64, 1 << 16);
    for (size_t s = 0; s < sizeof samples / sizeof samples[0]; s++) {
        const char *in = samples[s];
        size_t n = strlen(in);
        buf_reset(&whole);
        stream_all(in, n, &whole);
        /* every pair of split points: three chunks */
        for (size_t i = 0; i <= n; i++) {
            for (size_t j = i; j <= n; j++) {
                struct utf8_stream u = {0};
                buf_reset(&parts);
                CHECK(utf8_stream_feed(&u, in, i, &parts) == BUF_OK);
                CHECK(utf8_stream_feed(&u, in + i, j - i, &parts) == BUF_OK);
                CHECK(utf8_stream_feed(&u, in + j, n - j, &parts) == BUF_OK);
                CHECK(utf8_stream_flush(&u, &parts) == BUF_OK);
                CHECK_MSG(parts.len == whole.len && !memcmp(parts.data, whole.data, whole.len),
                          "sample %zu split at %zu,%zu", s, i, j);
            }
        }
        /* byte by byte */
        struct utf8_stream u = {0};
        buf_reset(&parts);
        for (size_t i = 0; i < n; i++)
            CHECK(utf8_stream_feed(&u, in + i, 1, &parts) == BUF_OK);
        CHECK(utf8_stream_flush(&u, &parts) == BUF_OK);
        CHECK(parts.len == whole.len && !memcmp(parts.data, whole.data, whole.len));
    }
    /* valid input comes out unchanged */
    buf_reset(&whole);
    stream_all(samples[3], strlen(samples[3]), &whole);
    CHECK_EQ_STR(whole.data, samples[3]);
    /* hold-back: nothing is emitted until the character is complete */
    struct utf8_stream u = {0};
    buf_reset(&parts);
    CHECK(utf8_stream_feed(&u, "\xf0\x9f", 2, &parts) == BUF_OK);
    CHECK_EQ_INT(parts.len, 0);
    CHECK(utf8_stream_feed(&u, "\x98", 1, &parts) == BUF_OK);
    CHECK_EQ_INT(parts.len, 0);
    CHECK(utf8_stream_feed(&u, "\x80", 1, &parts) == BUF_OK);
    CHECK_EQ_STR(parts.data, "\xf0\x9f\x98\x80");
    CHECK(utf8_stream_flush(&u, &parts) == BUF_OK);
    CHECK_EQ_STR(parts.data, "\xf0\x9f\x98\x80");
    buf_free(&whole);
    buf_free(&parts);
}

static void test_stream_invalid(void)
{
    /* Expected outputs are Python's bytes.decode("utf-8", "replace") (maximal subparts). */
    check_stream("\x80", 1, FFFD, 3);
    check_stream("a\xff" "b", 3, "a" FFFD "b", 5);
    check_stream("\xc0\xaf", 2, FFFD FFFD, 6);                   /* overlong lead C0 */
    check_stream("\xe0\x80\x80", 3, FFFD FFFD FFFD, 9);          /* overlong 3-byte */
    check_stream("\xed\xa0\x80", 3, FFFD FFFD FFFD, 9);          /* surrogate U+D800 */
    check_stream("\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD, 12); /* > U+10FFFF */
    check_stream("\xf5\x80", 2, FFFD FFFD, 6);
    check_stream("\xe2\x82" "A", 3, FFFD "A", 4);                /* broken by ASCII */
    check_stream("\xf1\x80\x80\xe1\x80\xc2\x41", 7, FFFD FFFD FFFD "A", 10);
    check_stream("\xf0\x9f\x98", 3, FFFD, 3);                    /* flush of a partial */
    check_stream("\xc3", 1, FFFD, 3);
    check_stream("\xe0\xa0", 2, FFFD, 3);
    /* boundaries that are valid */
    check_stream("\xed\x9f\xbf", 3, "\xed\x9f\xbf", 3);           /* U+D7FF */
    check_stream("\xee\x80\x80", 3, "\xee\x80\x80", 3);           /* U+E000 */
    check_stream("\xf4\x8f\xbf\xbf", 4, "\xf4\x8f\xbf\xbf", 4);   /* U+10FFFF */
    check_stream("\xc2\x80", 2, "\xc2\x80", 2);                   /* U+0080 */
    /* decode applies the same rules across token boundaries */
    struct tokenizer t;
    CHECK_EQ_INT(tokenizer_init_default(&t, 300), 0);
    int32_t ids[] = {0xe2, 0x82, 'A', 0xe2, 0x82, 0xac, 0xf0};
    struct buf b;
    buf_init(&b, 16, 1024);
    CHECK(tokenizer_decode(&t, ids, 7, &b) == BUF_OK);
    CHECK(b.len == 10 && !memcmp(b.data, FFFD "A\xe2\x82\xac" FFFD, 10));
    buf_free(&b);
    tokenizer_free(&t);
}

/* GPT-2 bytes_to_unicode, written out independently of tokenizer.c. */
static uint32_t b2u(int b)
{
    static uint32_t map[256];
    static int init;
    if (!init) {
        int n = 0;
        for (int i = 0; i < 256; i++) {
            if ((i >= '!' && i <= '~') || (i >= 0xa1 && i <= 0xac) || (i >= 0xae && i <= 0xff))
                map[i] = (uint32_t)i;
            else
                map[i] = 256u + (uint32_t)n++;
        }
        init = 1;
    }
    return map[b];
}

static void test_gpt2_vocab(void)
{
    /* Like a Qwen vocabulary: "!" .. first, the bytes in a scrambled order, multi-byte merges
     * ("Ġthe" = " the"), a user-defined token, a control token at the end. */
    enum { N = 256 + 5 };
    char *text[N];
    int32_t type[N];
    float score[N];
    int order[256];
    for (int i = 0; i < 256; i++)
        order[i] = (i * 97 + 13) % 256; /* a permutation (97 odd) */
    int id = 0;
    char tmp[16];
    text[id] = strdup("\xc4\xa0the"); /* Ġthe */
    type[id++] = TOK_TYPE_NORMAL;
    text[id] = strdup("\xc3\xa2\xc4\xa4\xc2\xac"); /* "€" in byte-level chars: â Ĥ ¬ */
    type[id++] = TOK_TYPE_NORMAL;
    for (int i = 0; i < 256; i++) {
        size_t k = put_utf8(b2u(order[i]), tmp);
        tmp[k] = 0;
        text[id] = strdup(tmp);
        type[id++] = TOK_TYPE_NORMAL;
    }
    text[id] = strdup("<tool_call>");
    type[id++] = TOK_TYPE_USER_DEFINED;
    text[id] = strdup("<|endoftext|>");
    type[id++] = TOK_TYPE_CONTROL;
    text[id] = strdup("<|im_end|>");
    type[id++] = TOK_TYPE_CONTROL;
    CHECK_EQ_INT(id, N);
    for (int i = 0; i < N; i++)
        score[i] = 0;
    struct tokenizer t;
    char err[256];
    int rc = tokenizer_init_from_vocab(&t, "gpt2", N, (const char *const *)text, score, type,
                                       N - 2, N - 1, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK_EQ_INT(t.kind, TOK_KIND_GPT2);
        for (int i = 0; i < 256; i++)
            CHECK_EQ_INT(t.byte_to_id[order[i]], 2 + i);
        size_t len;
        const char *p = tokenizer_piece(&t, 0, &len);
        CHECK(p && len == 4 && !memcmp(p, " the", 4));
        p = tokenizer_piece(&t, 1, &len);
        CHECK(p && len == 3 && !memcmp(p, "\xe2\x82\xac", 3));
        p = tokenizer_piece(&t, N - 3, &len);
        CHECK(p && len == 11 && !memcmp(p, "<tool_call>", 11));
        CHECK(tokenizer_piece(&t, N - 1, &len) && len == 0);
        CHECK(tokenizer_piece(&t, N - 2, &len) && len == 0);
        /* one token per byte, and back, for random valid UTF-8 */
        struct buf b;
        buf_init(&b, 64, 1 << 20);
        char s[1024];
        int32_t ids[1024];
        for (int iter = 0; iter < 100; iter++) {
            size_t n = 0;
            int n_cp = (int)(rng() % 60);
            for (int k = 0; k < n_cp; k++)
                n += put_utf8(random_cp(), s + n);
            CHECK_EQ_INT(tokenizer_encode(&t, s, n, ids, 1024), n);
            for (size_t i = 0; i < n; i++) {
                int want = 0;
                while (order[want] != (unsigned char)s[i])
                    want++;
                CHECK_EQ_INT(ids[i], 2 + want);
            }
            buf_reset(&b);
            CHECK(tokenizer_decode(&t, ids, n, &b) == BUF_OK);
            CHECK(b.len == n && !memcmp(b.data, s, n));
        }
        int32_t mixed[] = {0, 1, N - 1};
        buf_reset(&b);
        CHECK(tokenizer_decode(&t, mixed, 3, &b) == BUF_OK);
        CHECK_EQ_STR(b.data, " the\xe2\x82\xac");
        buf_free(&b);
        tokenizer_free(&t);
    }
    /* a byte without a token is an error naming it */
    free(text[2 + 5]);
    text[2 + 5] = strdup("zz");
    rc = tokenizer_init_from_vocab(&t, "gpt2", N, (const char *const *)text, score, type, N - 2,
                                   N - 1, err, sizeof err);
    CHECK(rc == -1);
    char want[32];
    snprintf(want, sizeof want, "byte 0x%02X", order[5]);
    CHECK_MSG(strstr(err, want) != NULL, "%s", err);
    for (int i = 0; i < N; i++)
        free(text[i]);
}

static void test_spm_vocab(void)
{
    /* A llama/SPM vocabulary: <unk> <s> </s>, then <0x00>..<0xFF>, then "▁the", "ing". */
    enum { N = 3 + 256 + 2 };
    char *text[N];
    int32_t type[N];
    text[0] = strdup("<unk>");
    type[0] = TOK_TYPE_UNKNOWN;
    text[1] = strdup("<s>");
    type[1] = TOK_TYPE_CONTROL;
    text[2] = strdup("</s>");
    type[2] = TOK_TYPE_CONTROL;
    for (int b = 0; b < 256; b++) {
        char tmp[8];
        snprintf(tmp, sizeof tmp, "<0x%02X>", b);
        text[3 + b] = strdup(tmp);
        type[3 + b] = TOK_TYPE_BYTE;
    }
    text[259] = strdup("\xe2\x96\x81the");
    type[259] = TOK_TYPE_NORMAL;
    text[260] = strdup("ing");
    type[260] = TOK_TYPE_NORMAL;
    struct tokenizer t;
    char err[256];
    int rc = tokenizer_init_from_vocab(&t, "llama", N, (const char *const *)text, NULL, type, 1,
                                       2, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK_EQ_INT(t.kind, TOK_KIND_LLAMA_SPM);
        for (int b = 0; b < 256; b++)
            CHECK_EQ_INT(t.byte_to_id[b], 3 + b);
        int32_t ids[] = {1, 259, 260, 3 + 'x', 3 + 0xc3, 3 + 0xa9, 2};
        struct buf b;
        buf_init(&b, 64, 1024);
        CHECK(tokenizer_decode(&t, ids, 7, &b) == BUF_OK);
        CHECK_EQ_STR(b.data, "theingx\xc3\xa9"); /* the space prefix is dropped again */
        buf_free(&b);
        int32_t enc[4];
        /* " A\n" (the space prefix): no "▁" token, so three byte tokens */
        CHECK_EQ_INT(tokenizer_encode(&t, "A\n", 2, enc, 4), 3);
        CHECK(enc[0] == 3 + ' ' && enc[1] == 3 + 'A' && enc[2] == 3 + '\n');
        tokenizer_free(&t);
    }
    /* our own layout read back from a file is recognised as such */
    struct tokenizer d;
    CHECK_EQ_INT(tokenizer_init_default(&d, 400), 0);
    rc = tokenizer_init_from_vocab(&t, "llama", 400, (const char *const *)d.text, d.score, d.type,
                                   256, 257, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    if (rc == 0) {
        CHECK_EQ_INT(t.kind, TOK_KIND_SLM);
        for (int id = 0; id < 400; id++)
            CHECK(t.piece_len[id] == d.piece_len[id] &&
                  !memcmp(t.piece[id], d.piece[id], d.piece_len[id]));
        tokenizer_free(&t);
    }
    tokenizer_free(&d);
    /* missing byte token; unknown model; ids out of range */
    free(text[3 + 0x41]);
    text[3 + 0x41] = strdup("A");
    CHECK(tokenizer_init_from_vocab(&t, "llama", N, (const char *const *)text, NULL, type, 1, 2,
                                    err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "<0x41>") != NULL, "%s", err);
    CHECK(tokenizer_init_from_vocab(&t, "bert", N, (const char *const *)text, NULL, type, 1, 2,
                                    err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "unsupported tokenizer model 'bert'") != NULL, "%s", err);
    CHECK(tokenizer_init_from_vocab(&t, "llama", N, (const char *const *)text, NULL, type, 1, N,
                                    err, sizeof err) == -1);
    tokenizer_free(&t);
    for (int i = 0; i < N; i++)
        free(text[i]);
}

/* 256 byte tokens (type BYTE for "llama", the bytes_to_unicode characters for "gpt2" where
 * printable ASCII is itself) then extra[]. Returns the vocabulary size. */
static int small_vocab(const char *kind, char **text, int32_t *type, float *score,
                       const char *const *extra, const float *extra_score, int n_extra)
{
    for (int b = 0; b < 256; b++) {
        char tmp[8];
        if (!strcmp(kind, "llama")) {
            snprintf(tmp, sizeof tmp, "<0x%02X>", b);
        } else {
            uint32_t next = 256, cp = (uint32_t)b;
            for (int k = 0; k <= b; k++) { /* GPT-2's bytes_to_unicode */
                int keep = (k >= 0x21 && k <= 0x7e) || (k >= 0xa1 && k <= 0xac) || k >= 0xae;
                if (k == b)
                    cp = keep ? (uint32_t)b : next;
                else if (!keep)
                    next++;
            }
            tmp[put_utf8(cp, tmp)] = 0;
        }
        text[b] = strdup(tmp);
        type[b] = !strcmp(kind, "llama") ? TOK_TYPE_BYTE : TOK_TYPE_NORMAL;
        score[b] = 0;
    }
    for (int i = 0; i < n_extra; i++) {
        text[256 + i] = strdup(extra[i]);
        type[256 + i] = extra[i][0] == '<' ? TOK_TYPE_CONTROL : TOK_TYPE_NORMAL;
        score[256 + i] = extra_score ? extra_score[i] : 0;
    }
    return 256 + n_extra;
}

static void test_bpe_merges(void)
{
    static const char *const extra[] = {"he", "ll", "llo", "hello", "<|end|>", "\xc4\xa0w"};
    static const char *const merges[] = {"h e", "l l", "ll o", "he llo", "\xc4\xa0 w"};
    char *text[262];
    int32_t type[262];
    float score[262];
    int n = small_vocab("gpt2", text, type, score, extra, NULL, 6);
    struct tok_vocab v = {.kind_name = "gpt2", .pre_name = "qwen2", .n_vocab = n,
                          .text = (const char *const *)text, .type = type, .merges = merges,
                          .n_merges = 5, .bos_id = -1, .eos_id = 260, .eot_id = -1,
                          .add_bos = -1};
    struct tokenizer t;
    char err[256];
    CHECK_MSG(tokenizer_init_vocab(&t, &v, err, sizeof err) == 0, "%s", err);
    int32_t ids[32];
    /* "hello" -> one token; " wx" -> "Ġw" + "x"; "<|end|>" is itself and ends generation */
    CHECK_EQ_INT(tokenizer_encode(&t, "hellohe wx<|end|>", 17, ids, 32), 5);
    CHECK(ids[0] == 259 && ids[1] == 256 && ids[2] == 261 && ids[3] == 'x' && ids[4] == 260);
    CHECK(tokenizer_is_eog(&t, 260) && !tokenizer_is_eog(&t, 259));
    CHECK_EQ_INT(t.n_merges, 5);
    tokenizer_free(&t);
    const char *skip[] = {"h q", "h e"}; /* "hq" is not a token: that merge is ignored */
    v.merges = skip;
    v.n_merges = 2;
    CHECK(tokenizer_init_vocab(&t, &v, err, sizeof err) == 0);
    CHECK_EQ_INT(t.n_merges, 1);
    tokenizer_free(&t);
    const char *bad[] = {"hq"}; /* not "A B" */
    v.merges = bad;
    v.n_merges = 1;
    CHECK(tokenizer_init_vocab(&t, &v, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "is not 'A B'") != NULL, "%s", err);
    v.pre_name = "falcon";
    CHECK(tokenizer_init_vocab(&t, &v, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "falcon") != NULL, "%s", err);
    for (int i = 0; i < n; i++)
        free(text[i]);
}

static void test_spm_scores(void)
{
    /* " the" -> ▁t (score -1), then he (-2), then ▁the (-0.5): one token */
    static const char *const extra[] = {"\xe2\x96\x81t", "he", "\xe2\x96\x81the", "<s>", "</s>"};
    static const float sc[] = {-1, -2, -0.5f, 0, 0};
    char *text[261];
    int32_t type[261];
    float score[261];
    int n = small_vocab("llama", text, type, score, extra, sc, 5);
    struct tokenizer t;
    char err[256];
    CHECK_MSG(tokenizer_init_from_vocab(&t, "llama", n, (const char *const *)text, score, type,
                                        259, 260, err, sizeof err) == 0, "%s", err);
    int32_t ids[16];
    CHECK_EQ_INT(tokenizer_encode(&t, "the", 3, ids, 16), 1);
    CHECK_EQ_INT(ids[0], 258);
    /* after a special token the prefix comes again; é has no token: its two bytes */
    CHECK_EQ_INT(tokenizer_encode(&t, "<s>the\xc3\xa9", 8, ids, 16), 4);
    CHECK(ids[0] == 259 && ids[1] == 258 && ids[2] == 0xc3 && ids[3] == 0xa9);
    struct buf b;
    buf_init(&b, 64, 1024);
    CHECK(tokenizer_decode(&t, ids, 4, &b) == BUF_OK);
    CHECK_EQ_STR(b.data, "the\xc3\xa9");
    buf_free(&b);
    CHECK(t.add_bos == 1);
    tokenizer_free(&t);
    for (int i = 0; i < n; i++)
        free(text[i]);
}

static void test_pretok(void)
{
    size_t ends[32];
    const char *s = "Hello world  123456\n\nI'M";
    size_t len = strlen(s);
    /* qwen2: one digit per word; llama-bpe: three; default: " ?\p{N}+" and case-sensitive 's */
    /* [Hello][ world][ ][ ][1]..[6][\n\n][I]['M] */
    CHECK_EQ_INT(tok_pretok_split(TOK_PRE_QWEN2, s, len, ends, 32), 13);
    CHECK_EQ_INT(ends[0], 5);   /* "Hello" */
    CHECK_EQ_INT(ends[1], 11);  /* " world" */
    CHECK_EQ_INT(ends[2], 12);  /* " " (\s+(?!\S)) */
    CHECK_EQ_INT(ends[3], 13);  /* " " (\s+: a digit is not " ?[^\s\p{L}\p{N}]") */
    CHECK_EQ_INT(ends[10], 21); /* "\n\n" (\s*[\r\n]+) */
    CHECK_EQ_INT(ends[12], len); /* "'M" (case-insensitive contraction) */
    /* [Hello][ world][ ][ ][123][456][\n\n][I]['M] */
    CHECK_EQ_INT(tok_pretok_split(TOK_PRE_LLAMA3, s, len, ends, 32), 9);
    /* [Hello][ world][ ][ 123456][\n][\n][I]['][M] */
    CHECK_EQ_INT(tok_pretok_split(TOK_PRE_DEFAULT, s, len, ends, 32), 9);
    CHECK_EQ_INT(ends[3], 19);
    const char *cjk = "\xe6\x97\xa5\xe6\x9c\xac 42"; /* 日本 42 */
    CHECK_EQ_INT(tok_pretok_split(TOK_PRE_DEFAULT, cjk, strlen(cjk), ends, 32), 2);
    CHECK_EQ_INT(ends[0], 6);
    size_t n = 0;
    char *nfc = tok_nfc("e\xcc\x81", 3, &n); /* e + U+0301 -> é */
    CHECK(nfc && n == 2 && !memcmp(nfc, "\xc3\xa9", 2));
    free(nfc);
    CHECK(tok_nfc("\xc3\xa9", 2, &n) == NULL); /* already NFC */
    CHECK(tok_nfc("\xff", 1, &n) == NULL);      /* invalid: left as it is */
}

int main(void)
{
    TEST_RUN(test_default_layout);
    TEST_RUN(test_default_tokens_printable_distinct);
    TEST_RUN(test_encode_counts);
    TEST_RUN(test_decode_roundtrip);
    TEST_RUN(test_stream_every_split);
    TEST_RUN(test_stream_invalid);
    TEST_RUN(test_gpt2_vocab);
    TEST_RUN(test_spm_vocab);
    TEST_RUN(test_bpe_merges);
    TEST_RUN(test_spm_scores);
    TEST_RUN(test_pretok);
    return TEST_DONE();
}
