/* test_prefix: the prefix probe. Unit tests of the prompt set (generation, --prompts validation
 * naming the line, measuring with a byte-counting tokenizer, padding to whole blocks, the
 * short-prefix warning), the fit and the inactive-caching finding, and the report/JSON/CSV from
 * a hand-made result. End to end (the real binary against the embedded server, tiny model): the
 * known answers of docs/prefix.md: hits grow by (N - 1) x B x block_size with caching on, stay 0
 * with it off, TTFT on well below off for the large regime; a prompt longer than max-model-len is
 * counted and the run goes on; a malformed file fails before any launch, naming the line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prefix/prefix.h"
#include "report/report.h"
/* Only the process and file helpers of the harness are used here. */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "schema_check.h"
#include "serve_harness.h"
#include "test.h"
#include "util/buf.h"
#include "util/json.h"

/* A tokenizer of one token per byte, as the embedded server's. */
static int count_bytes(void *ud, const char *text, size_t len, char *err, size_t err_len)
{
    (*(int *)ud)++;
    return (int)len;
}

static int write_text(const char *path, const char *text)
{
    return file_write_all(path, text, strlen(text));
}

static void test_generate_and_pad(void)
{
    struct prefix_gen_opts g;
    prefix_gen_opts_defaults(&g);
    g.len_tokens[0] = 300;
    g.len_tokens[1] = 1100;
    g.n_variants = 20;
    struct prefix_set set;
    CHECK_EQ_INT(prefix_set_generate(&set, &g), PREFIX_OK);
    CHECK_EQ_INT(set.n_prefixes, 6);
    CHECK_EQ_INT(set.n_prompts, 6 * 20);
    int calls = 0;
    char err[256];
    CHECK_EQ_INT(prefix_set_measure(&set, count_bytes, &calls, 16, 1, err, sizeof err), PREFIX_OK);
    CHECK(calls >= 6);
    for (size_t i = 0; i < set.n_prefixes; i++) {
        const struct prefix_shared *sh = &set.prefixes[i];
        CHECK_EQ_INT(sh->len_tokens % 16, 0);
        CHECK_EQ_INT((size_t)sh->len_tokens, sh->len);
        CHECK_EQ_INT(sh->n_blocks, sh->len_tokens / 16);
        int target = sh->regime == PREFIX_REGIME_LARGE ? 1100 : 300;
        CHECK_MSG(sh->len_tokens >= target - 40 && sh->len_tokens <= target + 16, "%d vs %d",
                  sh->len_tokens, target);
    }
    /* Each prompt is the prefix, then "\nQ: Ticket N: ...\nA:"; no two share a block after it. */
    for (size_t i = 0; i + 1 < set.n_prompts; i++) {
        const struct prefix_prompt *p = &set.prompts[i], *q = &set.prompts[i + 1];
        const struct prefix_shared *sh = &set.prefixes[p->i_prefix];
        CHECK(!memcmp(p->text, sh->text, sh->len));
        CHECK(!strncmp(p->text + sh->len, "\nQ: Ticket ", 11));
        CHECK(!strcmp(p->text + p->len - 3, "\nA:"));
        if (p->i_prefix == q->i_prefix)
            CHECK(memcmp(p->suffix, q->suffix, 16) != 0);
    }
    CHECK_EQ_STR(set.warnings, "");
    char path[600];
    snprintf(path, sizeof path, "%s/gen.jsonl", g_dir);
    CHECK_EQ_INT(prefix_set_write_jsonl(&set, path, err, sizeof err), PREFIX_OK);
    /* What gen writes, --prompts reads back: same prompts, same prefixes. */
    struct prefix_set back;
    CHECK_EQ_INT(prefix_set_load(&back, path, err, sizeof err), PREFIX_OK);
    CHECK_EQ_INT(back.n_prompts, set.n_prompts);
    CHECK_EQ_INT(back.n_prefixes, set.n_prefixes);
    CHECK_EQ_INT(back.prefixes[3].len_tokens_given, set.prefixes[3].len_tokens);
    CHECK_EQ_STR(back.prefixes[1].workload, "chat_history");
    CHECK_EQ_INT(prefix_set_measure(&back, count_bytes, &calls, 16, 0, err, sizeof err), PREFIX_OK);
    CHECK_EQ_STR(back.warnings, "");
    prefix_set_free(&back);
    prefix_set_free(&set);
    g.n_variants = 0;
    CHECK_EQ_INT(prefix_set_generate(&set, &g), PREFIX_ERR_ARG);
    prefix_set_free(&set);
}

static void check_load_error(const char *text, const char *want)
{
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/bad.jsonl", g_dir);
    write_text(path, text);
    struct prefix_set set;
    CHECK_EQ_INT(prefix_set_load(&set, path, err, sizeof err), PREFIX_ERR_INPUT);
    CHECK_MSG(strstr(err, want) != NULL, "'%s' lacks '%s'", err, want);
    CHECK_EQ_INT(set.n_prompts, 0);
    prefix_set_free(&set);
}

static void test_load_errors(void)
{
    check_load_error("{\"prompt\": \"P\\nQ: a\\nA:\"}\n{\"prompt\": \"P\\nQ: b\n",
                     "bad.jsonl:2: malformed JSON");
    check_load_error("\n\n{\"text\": \"x\"}\n", "bad.jsonl:3: \"prompt\" is missing");
    check_load_error("{\"prompt\": 7}\n", "bad.jsonl:1: \"prompt\" is a integer, not a string");
    check_load_error("{\"prompt\": \"no separator here\"}\n", "bad.jsonl:1: \"prompt\" has no "
                     "shared prefix");
    check_load_error("{\"prompt\": \"P\\nQ: a\\nA:\", \"prefix_len_tokens\": -3}\n",
                     "bad.jsonl:1: \"prefix_len_tokens\" is not a non-negative integer");
    check_load_error("[1, 2]\n", "bad.jsonl:1: not a JSON object");
    check_load_error("\n   \n", "no prompts");
    char err[256];
    struct prefix_set set;
    CHECK_EQ_INT(prefix_set_load(&set, "/nonexistent/p.jsonl", err, sizeof err), PREFIX_ERR_IO);
    CHECK(strstr(err, "/nonexistent/p.jsonl") != NULL);
    prefix_set_free(&set);
}

static void test_short_prefix_warning(void)
{
    char path[600], err[256];
    snprintf(path, sizeof path, "%s/short.jsonl", g_dir);
    write_text(path, "{\"prompt\": \"Be nice.\\nQ: hi\\nA:\", \"prefix_len_tokens\": 5}\n"
                     "{\"prompt\": \"Be nice.\\nQ: yo\\nA:\", \"workload\": \"tiny\"}\n");
    struct prefix_set set;
    CHECK_EQ_INT(prefix_set_load(&set, path, err, sizeof err), PREFIX_OK);
    CHECK_EQ_INT(set.n_prefixes, 1);
    CHECK_EQ_INT(set.n_prompts, 2);
    int calls = 0;
    CHECK_EQ_INT(prefix_set_measure(&set, count_bytes, &calls, 16, 0, err, sizeof err), PREFIX_OK);
    CHECK_EQ_INT(set.prefixes[0].len_tokens, 8);
    CHECK_MSG(strstr(set.warnings, "shorter than one KV block of 16: it can never hit") != NULL,
              "%s", set.warnings);
    CHECK_MSG(strstr(set.warnings, "the file says 5 tokens, the server counts 8") != NULL, "%s",
              set.warnings);
    prefix_set_free(&set);
}

static void cell_set(struct prefix_cell *c, enum prefix_mode m, double mix, double uncached,
                     double ttft_s)
{
    memset(c, 0, sizeof *c);
    c->mode = m;
    c->regime = PREFIX_REGIME_LARGE;
    c->concurrency = 1;
    c->hit_mix = mix;
    c->done = 1;
    c->mean_uncached_tokens = uncached;
    c->mean_ttft_s = ttft_s;
    c->n_requests = c->n_ok = 10;
    c->hit_rate = c->kv_usage_max = NAN;
}

static void test_fit(void)
{
    /* TTFT = 0.02 s + 0.0001 s/token: the fit on the 0/100% cells finds it, the 50% cell is
     * predicted exactly; a 50% cell 10% off shows as a 10% prediction error. */
    struct prefix_cell c[5];
    cell_set(&c[0], PREFIX_MODE_OFF, 1.0, 1300, 0.02 + 0.13);
    cell_set(&c[1], PREFIX_MODE_ON, 1.0, 20, 0.02 + 0.002);
    cell_set(&c[2], PREFIX_MODE_ON, 0.0, 1300, 0.02 + 0.13);
    cell_set(&c[3], PREFIX_MODE_ON, 0.5, 660, (0.02 + 0.066) * 1.1);
    cell_set(&c[4], PREFIX_MODE_ON, 1.0, 20, 9.0);
    c[4].concurrency = 16; /* not at the lowest concurrency: not a point */
    struct prefix_fit f;
    prefix_fit_cells(c, 5, &f);
    CHECK(f.ok);
    CHECK_EQ_INT(f.n_points, 3);
    CHECK_EQ_INT(f.concurrency, 1);
    CHECK_NEAR(f.a_s, 0.02, 1e-9);
    CHECK_NEAR(f.b_s_per_token, 0.0001, 1e-12);
    CHECK_NEAR(f.r2, 1.0, 1e-9);
    CHECK_EQ_INT(f.n_predicted, 1);
    CHECK_NEAR(f.max_pred_err_pct, 100.0 * 0.1 / 1.1, 1e-6);
    /* One distinct x: no line. */
    prefix_fit_cells(c + 1, 1, &f);
    CHECK(!f.ok);
}

static void test_inactive_finding(void)
{
    struct prefix_cell c[2];
    cell_set(&c[0], PREFIX_MODE_ON, 1.0, 1300, 0.15);
    cell_set(&c[1], PREFIX_MODE_OFF, 1.0, 1300, 0.15);
    c[0].expected_hit_tokens = 12800;
    c[0].has_server_counters = 1;
    c[0].hits_tokens = 0;
    struct prefix_result res;
    memset(&res, 0, sizeof res);
    res.cells = c;
    res.n_cells = 2;
    char msg[256];
    CHECK_EQ_INT(prefix_inactive_finding(&res, msg, sizeof msg), 1);
    CHECK_EQ_STR(msg, "caching appears inactive: 0 hits in 10 requests that reused a cached "
                      "prefix");
    /* The report says so as a finding, not as a success. */
    prefix_opts_defaults(&res.opts);
    struct report *r = report_new("t");
    prefix_report(&res, r);
    struct buf md;
    buf_init(&md, 1 << 16, 1 << 24);
    report_render(r, REPORT_FORMAT_MARKDOWN, &md);
    CHECK(strstr(md.data, "Finding: caching appears inactive: 0 hits in 10 requests") != NULL);
    CHECK(strstr(md.data, "Do not assume it works") != NULL);
    CHECK(strstr(md.data, "Enable it when") == NULL);
    buf_free(&md);
    report_free(r);
    c[0].hits_tokens = 160;
    CHECK_EQ_INT(prefix_inactive_finding(&res, msg, sizeof msg), 0);
}

static void test_report_json_csv(void)
{
    struct prefix_gen_opts g;
    prefix_gen_opts_defaults(&g);
    struct prefix_set set;
    prefix_set_generate(&set, &g);
    int calls = 0;
    char err[256];
    prefix_set_measure(&set, count_bytes, &calls, 16, 1, err, sizeof err);
    struct prefix_cell c[4];
    cell_set(&c[0], PREFIX_MODE_OFF, 1.0, 1300, 0.200);
    cell_set(&c[1], PREFIX_MODE_ON, 1.0, 20, 0.050);
    cell_set(&c[2], PREFIX_MODE_OFF, 0.0, 1300, 0.200);
    cell_set(&c[3], PREFIX_MODE_ON, 0.0, 1300, 0.201);
    c[1].has_server_counters = 1;
    c[1].hits_tokens = 4096;
    c[1].queries_tokens = 4200;
    c[1].hit_rate = 4096.0 / 4200;
    c[1].expected_hit_tokens = 4096;
    struct prefix_result res;
    memset(&res, 0, sizeof res);
    prefix_opts_defaults(&res.opts);
    res.set = &set;
    res.cells = c;
    res.n_cells = 4;
    prefix_fit_cells(c, 4, &res.fit);
    struct report *r = report_new("t");
    prefix_report(&res, r);
    struct buf b;
    buf_init(&b, 1 << 16, 1 << 24);
    CHECK_EQ_INT(report_render_csv(r, "prefix_caching_results", &b), REPORT_OK);
    CHECK_MSG(!strncmp(b.data, "mode,prefix_len_tokens,concurrency,mean_ttft_s,mean_e2e_s,"
                                "p95_e2e_s,tok_s,notes,hit_mix_pct,server_hit_rate", 82), "%.120s",
              b.data);
    CHECK(strstr(b.data, "\r\nwith_prefix_cache,") != NULL);
    buf_reset(&b);
    report_render(r, REPORT_FORMAT_MARKDOWN, &b);
    /* Numbers in prose come from the cells: 200.0 -> 50.0 ms is -75%. */
    CHECK_MSG(strstr(b.data, "mean TTFT 200.0 ms off vs 50.0 ms on (-75%)") != NULL, "%s", b.data);
    CHECK(strstr(b.data, "Hit rate mental model") != NULL);
    CHECK(strstr(b.data, "server hit rate 97.5%") != NULL);
    report_free(r);
    buf_reset(&b);
    prefix_json(&res, &b);
    struct json *root = json_parse(b.data, b.len, err, sizeof err);
    CHECK_MSG(root != NULL, "%s", err);
    CHECK_EQ_STR(json_str(json_get(root, "schema"), NULL), "slmprobe.prefix/1");
    CHECK_EQ_INT(json_len(json_get(root, "cells")), 4);
    double v;
    CHECK(json_num(json_get(json_at(json_get(root, "cells"), 1), "mean_ttft_s"), &v) == 0);
    CHECK_NEAR(v, 0.05, 1e-12);
    CHECK_EQ_INT(json_len(json_get(json_get(root, "prompts"), "prefixes")), 6);
    json_free(root);
    buf_free(&b);
    prefix_set_free(&set);
}

/* ---- end to end: the real binary and the embedded server ---- */

static int run_prefix(const char *out, const char *extra, char *log_path, size_t log_len)
{
    char cmd[4096];
    snprintf(log_path, log_len, "%s/%s.log", g_dir, strrchr(out, '/') + 1);
    /* No warm-up shapes and a 32 MiB KV pool (8192 tokens of the tiny model) instead of 3.56 GiB
     * (35 s to allocate under ASan), in both launches alike. */
    snprintf(cmd, sizeof cmd, "%s prefix --model %s --out %s --no-progress %s -- --enforce-eager "
             "--kv-cache-memory-bytes 32MiB > %s 2>&1", bin_path(), g_model, out, extra, log_path);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static struct json *load_json(const char *path)
{
    char *text = slurp(path), err[256];
    struct json *root = json_parse(text, strlen(text), err, sizeof err);
    free(text);
    return root;
}

static const struct json *find_cell(const struct json *root, const char *mode, const char *regime,
                                    double mix)
{
    const struct json *cells = json_get(root, "cells");
    for (size_t i = 0; i < json_len(cells); i++) {
        const struct json *c = json_at(cells, i);
        double m;
        if (!strcmp(json_str(json_get(c, "mode"), NULL), mode) &&
            !strcmp(json_str(json_get(c, "regime"), NULL), regime) &&
            json_num(json_get(c, "hit_mix"), &m) == 0 && fabs(m - mix) < 1e-9)
            return c;
    }
    return NULL;
}

static double jnum(const struct json *c, const char *key)
{
    double v = NAN;
    json_num(json_get(c, key), &v);
    return v;
}

static void test_e2e_known_answers(void)
{
    /* One large prefix of B = 64 blocks (1024 tokens, block 16), N = 1 + 4 requests over it. */
    char out[600], log[700], path[800];
    snprintf(out, sizeof out, "%s/ab", g_dir);
    int rc = run_prefix(out, "--regimes large --large-tokens 1024 --variants 8 --requests 4 "
                             "--concurrency 1 --hit-mix 100,0 --max-tokens 1 --max-model-len 2048",
                        log, sizeof log);
    CHECK_MSG(rc == 0, "exit %d, see %s", rc, log);
    snprintf(path, sizeof path, "%s/prefix.json", out);
    CHECK_EQ_INT(schema_validate_file("slmprobe.prefix/1", path), 0);
    struct json *root = load_json(path);
    CHECK_MSG(root != NULL, "no %s", path);
    if (!root)
        return;
    const struct json *on = find_cell(root, "with_prefix_cache", "large", 1.0);
    const struct json *off = find_cell(root, "no_prefix_cache", "large", 1.0);
    const struct json *on0 = find_cell(root, "with_prefix_cache", "large", 0.0);
    CHECK(on && off && on0);
    if (on && off && on0) {
        double b = 1024.0 / 16, bs = 16, n = 1 + 4;
        /* Priming sends the prefix once (0 hits), then each of the 4 measured requests hits all
         * B blocks: (N - 1) x B x block_size over priming + measurement. */
        CHECK_NEAR(jnum(on, "hits_tokens") + jnum(on, "prime_hits_tokens"), (n - 1) * b * bs, 0);
        CHECK_NEAR(jnum(on, "prime_hits_tokens"), 0, 0);
        CHECK_NEAR(jnum(on, "expected_hit_tokens"), (n - 1) * b * bs, 0);
        CHECK_NEAR(jnum(off, "hits_tokens"), 0, 0);
        CHECK_NEAR(jnum(on0, "hits_tokens"), 0, 0);
        CHECK_MSG(jnum(on, "mean_ttft_s") < 0.5 * jnum(off, "mean_ttft_s"), "on %g off %g",
                  jnum(on, "mean_ttft_s"), jnum(off, "mean_ttft_s"));
    }
    json_free(root);
    static const char *const files[] = {"prefix_caching_results.csv", "prefix_caching_results.md",
                                        "prefix_caching_results.html", "prefix_prompts.jsonl",
                                        "prefix_requests.jsonl", "serve_slm_no_prefix_cache.sh",
                                        "serve_slm_prefix_cache.sh"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", out, files[i]);
        char *t = slurp(path);
        CHECK_MSG(t[0] != '\0', "%s is missing or empty", files[i]);
        const char *exec_line = strstr(t, "\nexec ");
        if (!strcmp(files[i], "serve_slm_no_prefix_cache.sh"))
            CHECK(exec_line && strstr(exec_line, " --no-enable-prefix-caching") != NULL);
        if (!strcmp(files[i], "serve_slm_prefix_cache.sh"))
            CHECK(exec_line && strstr(exec_line, " --enable-prefix-caching") != NULL &&
                  strstr(exec_line, "--no-enable-prefix-caching") == NULL &&
                  strstr(exec_line, "/proc/self/exe") == NULL);
        free(t);
    }
}

static void test_e2e_bad_input(void)
{
    char out[600], log[700], path[800];
    /* Malformed file: usage error naming the line, before any launch. */
    snprintf(path, sizeof path, "%s/broken.jsonl", g_dir);
    write_text(path, "{\"prompt\": \"P\\nQ: a\\nA:\"}\n{oops\n");
    snprintf(out, sizeof out, "%s/broken", g_dir);
    char extra[1200];
    snprintf(extra, sizeof extra, "--prompts %s", path);
    CHECK_EQ_INT(run_prefix(out, extra, log, sizeof log), 2);
    char *t = slurp(log);
    CHECK_MSG(strstr(t, "broken.jsonl:2: malformed JSON") != NULL, "%s", t);
    free(t);
    /* --url cannot switch caching: a clear message. */
    snprintf(out, sizeof out, "%s/url", g_dir);
    CHECK_EQ_INT(run_prefix(out, "--url http://127.0.0.1:9 --requests 1", log, sizeof log) != 0, 1);
    t = slurp(log);
    CHECK_MSG(strstr(t, "prefix caching cannot be switched") != NULL, "%s", t);
    free(t);
    /* One prompt longer than max-model-len: the server's error, counted; the run goes on. */
    struct buf b;
    buf_init(&b, 1 << 16, 1 << 24);
    buf_puts(&b, "{\"prompt\": \"");
    for (int i = 0; i < 40; i++)
        buf_puts(&b, "Policy line. ");
    buf_puts(&b, "\\nQ: Ticket 1: ok?\\nA:\"}\n{\"prompt\": \"");
    for (int i = 0; i < 100; i++)
        buf_puts(&b, "Longer policy line. ");
    buf_puts(&b, "\\nQ: Ticket 2: too long?\\nA:\"}\n");
    snprintf(path, sizeof path, "%s/long.jsonl", g_dir);
    file_write_all(path, b.data, b.len);
    buf_free(&b);
    snprintf(out, sizeof out, "%s/long", g_dir);
    snprintf(extra, sizeof extra, "--prompts %s --requests 2 --concurrency 1 --hit-mix 100 "
             "--max-tokens 1 --max-model-len 1024", path);
    int rc = run_prefix(out, extra, log, sizeof log);
    snprintf(path, sizeof path, "%s/prefix.json", out);
    struct json *root = load_json(path);
    /* medium and large regimes x one concurrency x one mix x two modes */
    CHECK_MSG(root && json_len(json_get(root, "cells")) == 4, "exit %d, see %s", rc, log);
    const struct json *on = root ? find_cell(root, "with_prefix_cache", "medium", 1.0) : NULL;
    CHECK(on != NULL);
    if (on)
        CHECK_NEAR(jnum(on, "n_ok"), 2, 0);
    const struct json *on_l = root ? find_cell(root, "with_prefix_cache", "large", 1.0) : NULL;
    CHECK(on_l != NULL);
    if (on_l) {
        CHECK_NEAR(jnum(on_l, "n_failed"), 2, 0);
        CHECK_MSG(strstr(json_str(json_get(on_l, "notes"), NULL), "maximum context length") != NULL,
                  "%s", json_str(json_get(on_l, "notes"), NULL));
    }
    json_free(root);
}

int main(void)
{
    if (harness_setup("prefix") != 0)
        return 1;
    TEST_RUN(test_generate_and_pad);
    TEST_RUN(test_load_errors);
    TEST_RUN(test_short_prefix_warning);
    TEST_RUN(test_fit);
    TEST_RUN(test_inactive_finding);
    TEST_RUN(test_report_json_csv);
    TEST_RUN(test_e2e_known_answers);
    TEST_RUN(test_e2e_bad_input);
    return TEST_DONE();
}
