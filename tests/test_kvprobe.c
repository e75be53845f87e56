/* test_kvprobe: `slmprobe kv`. Unit tests of the pure parts (lists, theory from a GGUF header and
 * from config.json, the least-squares fit, steps, regime, envelope) and end-to-end sweeps: the
 * embedded server (capacity and max concurrency equal to its own sizing formula and log lines,
 * theory equal to `slmprobe model info`, "pre-allocating"), and a fake per-context server that
 * this binary becomes when run as `test_kvprobe --fake-kv-server` (it maps and touches
 * -c x --slope bytes, prints llama.cpp's KV lines, answers GET /health and /v1/models), which
 * must be recognised as per-context with its slope within 2%; plus bad input, a server that
 * dies mid-sweep, no GPU and no RSS (--url), and --resume. */
#include <inttypes.h>
#include <poll.h>
#include <sys/mman.h>

#include "engine/model.h"
#include "kv/kv_probe.h"
#include "server/logparse.h"
/* this test uses the process and file helpers, not the HTTP client */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "schema_check.h"
#include "serve_harness.h"
#pragma GCC diagnostic pop
#include "test.h"

#define FAKE_SLOPE 16384 /* bytes per token: 2 x 8 layers x 8 KV heads x 64 x 2 (f16) */

static char g_self[1024];

/* ---------------------------------------------------------------------------------------- */
/* the fake per-context server */

static void fake_reply(int fd, int code, const char *body)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     code, strlen(body));
    if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
        return;
}

__attribute__((no_sanitize("address"))) static void fake_touch(volatile char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 4096)
        p[i] = 1;
}

static int fake_main(int argc, char **argv)
{
    int port = 0, n_ctx = 0, die_at = 0, fail_above = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-c"))
            n_ctx = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--die-at"))
            die_at = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--fail-above"))
            fail_above = atoi(argv[i + 1]);
    }
    signal(SIGPIPE, SIG_IGN); /* readiness polls connect and close without reading */
    printf("srv    load_model: loading model 'fake'\n");
    if (fail_above && n_ctx > fail_above) {
        printf("llama_init_from_model: failed to allocate %d cells\n"
               "main: failed to load model 'fake'\n", n_ctx);
        fflush(stdout);
        return 1;
    }
    size_t bytes = (size_t)n_ctx * FAKE_SLOPE;
    char *kv = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                    -1, 0);
    if (kv == MAP_FAILED)
        return 1;
    fake_touch(kv, bytes);
    double mib = (double)bytes / 1048576.0;
    printf("llama_kv_cache:        CPU KV buffer size = %8.2f MiB\n", mib);
    printf("llama_kv_cache: size = %7.2f MiB (%6d cells,   8 layers,  1/1 seqs), K (f16): "
           "%7.2f MiB, V (f16): %7.2f MiB\n", mib, n_ctx, mib / 2, mib / 2);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 16) != 0)
        return 1;
    printf("main: model loaded\nmain: server is listening on http://127.0.0.1:%d - starting the "
           "main loop\n", port);
    fflush(stdout);
    double t_ready = 0;
    for (;;) {
        struct pollfd pf = {ls, POLLIN, 0};
        if (poll(&pf, 1, 20) <= 0) {
            if (die_at == n_ctx && t_ready > 0 && now_s() - t_ready > 0.05) {
                printf("fake: crashing on purpose\n");
                fflush(stdout);
                _exit(3);
            }
            continue;
        }
        int fd = accept(ls, NULL, NULL);
        if (fd < 0)
            continue;
        char req[2048];
        ssize_t n = read(fd, req, sizeof req - 1);
        req[n > 0 ? n : 0] = 0;
        char body[256];
        if (!strncmp(req, "GET /health", 11)) {
            fake_reply(fd, 200, "{\"status\":\"ok\"}");
        } else if (!strncmp(req, "GET /v1/models", 14)) {
            snprintf(body, sizeof body,
                     "{\"object\":\"list\",\"data\":[{\"id\":\"fake\",\"object\":\"model\","
                     "\"meta\":{\"n_ctx\":%d}}]}", n_ctx);
            fake_reply(fd, 200, body);
            if (t_ready == 0)
                t_ready = now_s();
        } else {
            fake_reply(fd, 404, "{\"error\":{\"code\":404,\"message\":\"not found\"}}");
        }
        close(fd);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* helpers */

static int run_kv(char **args, const char *log)
{
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)bin_path();
    argv[n++] = "kv";
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return run_wait(argv, log);
}

static char *out_file(const char *dir, const char *name)
{
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return slurp(p);
}

/* CSV field `col` (0-based) of data row `row` (0-based); simple fields only. */
static int csv_field(const char *csv, int row, int col, char *out, size_t out_len)
{
    const char *p = strchr(csv, '\n');
    for (int r = 0; p && r < row; r++)
        p = strchr(p + 1, '\n');
    if (!p)
        return -1;
    p++;
    int c = 0, q = 0;
    size_t k = 0;
    for (; *p && *p != '\n'; p++) {
        if (*p == '"') {
            q = !q;
            continue;
        }
        if (*p == ',' && !q) {
            if (c++ == col)
                break;
            continue;
        }
        if (c == col && k + 1 < out_len)
            out[k++] = *p;
    }
    out[k] = 0;
    return c >= col ? 0 : -1;
}

static double csv_num_at(const char *csv, int row, int col)
{
    char f[256];
    if (csv_field(csv, row, col, f, sizeof f) != 0 || !strcmp(f, "n/a") || !*f)
        return NAN;
    return atof(f);
}

static const char *k_header = "max_model_len,gpu_mem_used_mb,delta_mb_from_prev,"
                              "bytes_per_token_est,notes,kv_capacity_tokens,max_concurrency,"
                              "theory_bytes_per_token,server_rss_mb,start_s";

/* ---------------------------------------------------------------------------------------- */
/* unit tests */

static void test_lists(void)
{
    int v[KV_MAX_LENGTHS], n;
    char err[256];
    CHECK(kv_lengths_parse("2048,512,1024", v, KV_MAX_LENGTHS, &n, err, sizeof err) == 0);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(v[0], 512);
    CHECK_EQ_INT(v[2], 2048);
    CHECK(kv_lengths_parse("512,512", v, KV_MAX_LENGTHS, &n, err, sizeof err) != 0);
    CHECK(strstr(err, "twice") != NULL);
    CHECK(kv_lengths_parse("512,abc", v, KV_MAX_LENGTHS, &n, err, sizeof err) != 0);
    CHECK(strstr(err, "abc") != NULL);
    CHECK(kv_lengths_parse("512,,1024", v, KV_MAX_LENGTHS, &n, err, sizeof err) != 0);
    CHECK(kv_lengths_parse("0", v, KV_MAX_LENGTHS, &n, err, sizeof err) != 0);
    CHECK(kv_lengths_parse("-5", v, KV_MAX_LENGTHS, &n, err, sizeof err) != 0);
    double u[KV_MAX_UTILS];
    CHECK(kv_utils_parse("0.5,0.9", u, KV_MAX_UTILS, &n, err, sizeof err) == 0 && n == 2);
    CHECK(kv_utils_parse("0.5,1.5", u, KV_MAX_UTILS, &n, err, sizeof err) != 0);
    CHECK(kv_utils_parse("0.5,0.5", u, KV_MAX_UTILS, &n, err, sizeof err) != 0);
    CHECK_EQ_INT(kv_lengths_default(512, 2048, v, KV_MAX_LENGTHS), 3);
    CHECK_EQ_INT(kv_lengths_default(512, 3000, v, KV_MAX_LENGTHS), 4);
    CHECK_EQ_INT(v[3], 3000);
    CHECK_EQ_INT(kv_lengths_default(512, 100, v, KV_MAX_LENGTHS), 0);
}

static void test_fit(void)
{
    double x[5] = {512, 1024, 2048, 4096, 8192}, y[5], res[5];
    for (int i = 0; i < 5; i++)
        y[i] = 100 + x[i] * 4096.0 / 1048576.0;
    struct kv_fit f;
    CHECK(kv_fit_linear(x, y, 5, &f, res) == 0);
    CHECK_NEAR(f.slope_bytes_per_token, 4096, 1e-6);
    CHECK_NEAR(f.fixed_mb, 100, 1e-9);
    CHECK_NEAR(f.r2, 1.0, 1e-12);
    y[3] += 3.0; /* noise lowers R² */
    CHECK(kv_fit_linear(x, y, 5, &f, res) == 0);
    CHECK(f.r2 < 0.9999 && f.r2 > 0.9);
    double same[2] = {512, 512};
    CHECK(kv_fit_linear(same, y, 2, &f, NULL) != 0);
    /* a step: flat, then +64 MiB from 4096 on */
    double xs[6] = {1024, 2048, 3072, 4096, 5120, 6144}, ys[6] = {10, 10, 10, 74, 74, 74};
    double rs[6];
    int flags[6];
    CHECK(kv_fit_linear(xs, ys, 6, &f, rs) == 0);
    CHECK_EQ_INT(kv_steps_detect(xs, ys, 6, rs, flags), 1);
    CHECK_EQ_INT(flags[3], 1);
    double yl[6];
    for (int i = 0; i < 6; i++)
        yl[i] = 5 + xs[i] * 0.01;
    CHECK(kv_fit_linear(xs, yl, 6, &f, rs) == 0);
    CHECK_EQ_INT(kv_steps_detect(xs, yl, 6, rs, flags), 0);
}

static void test_theory(void)
{
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", g_dir);
    const char *cj = "{\"num_hidden_layers\": 36, \"num_attention_heads\": 32, "
                     "\"num_key_value_heads\": 8, \"hidden_size\": 4096, \"head_dim\": 128, "
                     "\"torch_dtype\": \"bfloat16\", \"max_position_embeddings\": 40960}";
    CHECK(file_write_all(p, cj, strlen(cj)) == 0);
    struct kv_theory t;
    CHECK(kv_theory_from_config_json(p, NULL, &t) == 0);
    CHECK_NEAR(t.bytes_per_token, 147456, 0); /* Qwen3-8B, server-formats.md */
    CHECK_EQ_INT(t.n_ctx_train, 40960);
    CHECK(kv_theory_from_config_json(p, "fp8", &t) == 0);
    CHECK_NEAR(t.bytes_per_token, 73728, 0);
    CHECK(kv_theory_from_config_json("/nonexistent/config.json", NULL, &t) != 0);
    CHECK(t.reason[0] != 0);
    /* GGUF: equals `slmprobe model info`'s f32 figure */
    CHECK(kv_theory_from_gguf(g_model, 0, &t) == 0);
    char log[600];
    snprintf(log, sizeof log, "%s/info.log", g_dir);
    char *info[] = {(char *)bin_path(), "model", "info", g_model, NULL};
    CHECK_EQ_INT(run_wait(info, log), 0);
    char *text = slurp(log);
    const char *k = strstr(text, "kv bytes/token");
    long long shown = k ? atoll(k + strlen("kv bytes/token")) : -1;
    CHECK_MSG(shown > 0 && (double)shown == t.bytes_per_token, "model info %lld vs %.0f", shown,
              t.bytes_per_token);
    free(text);
}

static struct kv_row *row(struct kv_result *r, int len, double mem_mb, int64_t cap)
{
    struct kv_row *w = kv_result_add_row(r);
    w->max_model_len = len;
    w->status = KV_ROW_OK;
    w->server_rss_mb = mem_mb;
    w->kv_capacity_tokens = cap;
    w->max_concurrency = cap >= 0 ? (double)cap / len : NAN;
    return w;
}

static void test_regime(void)
{
    struct kv_result r;
    kv_result_init(&r);
    r.theory.known = 1;
    r.theory.bytes_per_token = 4096;
    r.concurrency_wanted = 4;
    row(&r, 512, 300.0, 32768);
    row(&r, 1024, 300.1, 32768);
    row(&r, 2048, 300.3, 32768);
    row(&r, 8192, 301.0, 32768);
    kv_analyse(&r);
    CHECK_EQ_INT(r.regime, KV_REGIME_PRE_ALLOCATING);
    CHECK_EQ_INT(r.mem_source, KV_MEM_RSS);
    CHECK(isnan(r.rows[0].delta_mb_from_prev));
    CHECK_NEAR(r.rows[1].delta_mb_from_prev, 0.1, 1e-9);
    CHECK_EQ_INT(r.safe_max_model_len, 8192); /* 32768 / 8192 = 4 >= 4 */
    CHECK_EQ_INT(r.pick_throughput.max_model_len, 512);
    /* envelope: 8 x 4096 = 32768 fits at 8192; 16 x 4096 does not */
    CHECK_EQ_INT(r.env_len[1], 4096);
    CHECK(r.env[2][1].fits && r.env[2][1].max_model_len == 8192);
    CHECK(!r.env[3][1].fits);
    CHECK(r.env[0][0].fits && r.env[0][0].max_model_len == 2048);
    kv_result_free(&r);

    kv_result_init(&r);
    r.theory.known = 1;
    r.theory.bytes_per_token = 4096;
    for (int len = 1024; len <= 8192; len *= 2)
        row(&r, len, 50 + len * 4096.0 / 1048576.0, len);
    kv_analyse(&r);
    CHECK_EQ_INT(r.regime, KV_REGIME_PER_CONTEXT);
    CHECK_NEAR(r.slope_vs_theory, 1.0, 1e-9);
    CHECK(!isnan(r.env[4][2].predicted_mb));
    kv_result_free(&r);

    /* no memory at all: no fit, regime from the capacity alone */
    kv_result_init(&r);
    row(&r, 512, NAN, 1000)->gpu_mem_used_mb = NAN;
    row(&r, 1024, NAN, 1000);
    kv_analyse(&r);
    CHECK_EQ_INT(r.mem_source, KV_MEM_NONE);
    CHECK(!r.fit.ok);
    CHECK_EQ_INT(r.regime, KV_REGIME_PRE_ALLOCATING);
    kv_result_free(&r);
}

/* ---------------------------------------------------------------------------------------- */
/* end to end */

static void test_embedded_sweep(void)
{
    char out[600], log[700];
    snprintf(out, sizeof out, "%s/emb", g_dir);
    snprintf(log, sizeof log, "%s/emb.log", g_dir);
    char *args[] = {"--model", g_model, "--lengths", "256,512,1024,4096", "--out", out, "--",
                    "--kv-cache-memory-bytes", "8MiB", "--threads", "1", "--enforce-eager",
                    NULL};
    int rc = run_kv(args, log);
    char *text = slurp(log);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, text);
    free(text);
    char *csv = out_file(out, "kv_cache_scaling.csv");
    CHECK_MSG(strncmp(csv, k_header, strlen(k_header)) == 0, "header: %.200s", csv);
    /* the engine's sizing: 8 MiB / (4096 B x 16) = 128 blocks = 2048 tokens;
     * max concurrency = blocks / ceil(len / 16) */
    struct kv_theory t;
    CHECK(kv_theory_from_gguf(g_model, 0, &t) == 0);
    uint64_t page = (uint64_t)t.bytes_per_token * 16, blocks = (8u << 20) / page;
    int lens[3] = {256, 512, 1024};
    for (int i = 0; i < 3; i++) {
        CHECK_NEAR(csv_num_at(csv, i, 0), lens[i], 0);
        CHECK_NEAR(csv_num_at(csv, i, 5), (double)(blocks * 16), 0);
        CHECK_NEAR(csv_num_at(csv, i, 6), (double)blocks / ((lens[i] + 15) / 16), 0.005);
        CHECK_NEAR(csv_num_at(csv, i, 7), t.bytes_per_token, 0);
        CHECK(csv_num_at(csv, i, 8) > 0);
        CHECK(csv_num_at(csv, i, 9) > 0);
        /* the same numbers as the server's own log lines */
        char name[64];
        snprintf(name, sizeof name, "server_len%d.log", lens[i]);
        char *slog = out_file(out, name);
        struct startup_info si;
        startup_info_init(&si);
        for (char *l = strtok(slog, "\n"); l; l = strtok(NULL, "\n"))
            logparse_line(&si, l, strlen(l));
        CHECK_EQ_INT(si.kv_cache_tokens, (long long)csv_num_at(csv, i, 5));
        CHECK_NEAR(si.max_concurrency, csv_num_at(csv, i, 6), 0.005);
        free(slog);
    }
    char f[512];
    CHECK(csv_field(csv, 0, 4, f, sizeof f) == 0 && strstr(f, "baseline"));
    /* 4096 > the model's context (2048): a row with the server's error */
    CHECK_NEAR(csv_num_at(csv, 3, 0), 4096, 0);
    CHECK(csv_field(csv, 3, 4, f, sizeof f) == 0 && strstr(f, "did not start"));
    CHECK_MSG(strstr(f, "2048") != NULL, "notes: %s", f);
    free(csv);
    char *md = out_file(out, "kv_cache_scaling_notes.md");
    CHECK(strstr(md, "pre-allocating") != NULL);
    CHECK(strstr(md, "R²") != NULL);
    CHECK(strstr(md, "Headroom envelope") != NULL);
    free(md);
    char *html = out_file(out, "kv_cache_scaling_notes.html");
    CHECK(strstr(html, "<svg") != NULL);
    free(html);
    char *js = out_file(out, "kv.json");
    char js_path[1200];
    snprintf(js_path, sizeof js_path, "%s/kv.json", out);
    CHECK_EQ_INT(schema_validate_file("slmprobe.kv/1", js_path), 0);
    struct json *root = json_parse(js, strlen(js), f, sizeof f);
    CHECK_MSG(root != NULL, "kv.json: %s", f);
    CHECK_EQ_STR(json_str(json_get(root, "schema"), NULL), "slmprobe.kv/1");
    CHECK_EQ_STR(json_str(json_get(root, "regime"), NULL), "pre-allocating");
    CHECK_EQ_INT(json_len(json_get(root, "rows")), 4);
    json_free(root);
    free(js);
    char *sh = out_file(out, "kv_scaling.sh");
    CHECK(strstr(sh, "--max-model-len 512") != NULL && strstr(sh, " serve ") != NULL);
    CHECK(strstr(sh, "/proc/self/exe") == NULL);
    free(sh);
}

static void fake_args(char *buf, size_t n, const char *extra, int port)
{
    snprintf(buf, n, "%s --fake-kv-server --port %d -c {max_model_len}%s", g_self, port, extra);
}

static void write_fake_config(char *path, size_t n)
{
    snprintf(path, n, "%s/fake_config.json", g_dir);
    const char *cj = "{\"num_hidden_layers\": 8, \"num_attention_heads\": 8, "
                     "\"num_key_value_heads\": 8, \"head_dim\": 64, \"torch_dtype\": \"float16\","
                     " \"max_position_embeddings\": 8192}";
    file_write_all(path, cj, strlen(cj));
}

static void test_fake_per_context(void)
{
    char out[600], log[700], cmd[1600], cfgp[600], port_s[16];
    int port = free_port();
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(out, sizeof out, "%s/fake", g_dir);
    snprintf(log, sizeof log, "%s/fake.log", g_dir);
    fake_args(cmd, sizeof cmd, "", port);
    write_fake_config(cfgp, sizeof cfgp);
    char *args[] = {"--server", "llamacpp", "--serve-cmd", cmd, "--port", port_s,
                    "--model-config", cfgp, "--lengths", "1024,2048,4096,8192", "--out", out,
                    NULL};
    int rc = run_kv(args, log);
    char *text = slurp(log);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, text);
    free(text);
    char *js = out_file(out, "kv.json");
    char err[256];
    struct json *root = json_parse(js, strlen(js), err, sizeof err);
    CHECK_MSG(root != NULL, "kv.json: %s", err);
    CHECK_EQ_STR(json_str(json_get(root, "regime"), NULL), "per-context");
    double slope = NAN, theory = NAN;
    json_num(json_get(json_get(root, "fit"), "slope_bytes_per_token"), &slope);
    json_num(json_get(json_get(root, "theory"), "bytes_per_token"), &theory);
    CHECK_NEAR(theory, FAKE_SLOPE, 0);
    CHECK_MSG(fabs(slope - FAKE_SLOPE) <= 0.02 * FAKE_SLOPE, "slope %.1f vs %d", slope,
              FAKE_SLOPE);
    json_free(root);
    free(js);
    char *csv = out_file(out, "kv_cache_scaling.csv");
    CHECK_NEAR(csv_num_at(csv, 3, 5), 8192, 0); /* cells from the llama.cpp line */
    free(csv);
    char *md = out_file(out, "kv_cache_scaling_notes.md");
    CHECK(strstr(md, "per-context") != NULL);
    free(md);

    /* --resume: the four rows are kept, only 16384 is launched */
    char *args2[] = {"--server", "llamacpp", "--serve-cmd", cmd, "--port", port_s,
                     "--model-config", cfgp, "--lengths", "1024,2048,4096,8192,16384", "--out",
                     out, "--resume", NULL};
    rc = run_kv(args2, log);
    CHECK_EQ_INT(rc, 0);
    csv = out_file(out, "kv_cache_scaling.csv");
    char f[256];
    CHECK(csv_field(csv, 0, 11, f, sizeof f) == 0 && !strcmp(f, "resumed"));
    CHECK(csv_field(csv, 4, 11, f, sizeof f) == 0 && !strcmp(f, "ok"));
    CHECK_NEAR(csv_num_at(csv, 4, 0), 16384, 0);
    free(csv);
    text = slurp(log);
    CHECK(strstr(text, "[1/5]") != NULL && strstr(text, "[2/5]") == NULL);
    free(text);
}

static void test_fake_dies_and_fails(void)
{
    char out[600], log[700], cmd[1600], cfgp[600], port_s[16];
    int port = free_port();
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(out, sizeof out, "%s/die", g_dir);
    snprintf(log, sizeof log, "%s/die.log", g_dir);
    fake_args(cmd, sizeof cmd, " --die-at 2048 --fail-above 4096", port);
    write_fake_config(cfgp, sizeof cfgp);
    char *args[] = {"--server", "llamacpp", "--serve-cmd", cmd, "--port", port_s,
                    "--model-config", cfgp, "--lengths", "1024,2048,4096,8192", "--out", out,
                    NULL};
    int rc = run_kv(args, log);
    CHECK_EQ_INT(rc, 1);
    char *csv = out_file(out, "kv_cache_scaling.csv");
    char f[512];
    CHECK(csv_field(csv, 0, 11, f, sizeof f) == 0 && !strcmp(f, "ok"));
    CHECK(csv_field(csv, 1, 11, f, sizeof f) == 0 && !strcmp(f, "died"));
    CHECK(csv_field(csv, 2, 11, f, sizeof f) == 0 && !strcmp(f, "ok"));
    CHECK(csv_field(csv, 3, 11, f, sizeof f) == 0 && !strcmp(f, "start_failed"));
    CHECK(csv_field(csv, 3, 4, f, sizeof f) == 0 && strstr(f, "failed to load model"));
    free(csv);
    char *md = out_file(out, "kv_cache_scaling_notes.md");
    CHECK(strstr(md, "died at max-model-len 2048") != NULL);
    free(md);
}

static void test_bad_lists(void)
{
    char log[700];
    snprintf(log, sizeof log, "%s/bad.log", g_dir);
    char *a1[] = {"--model", g_model, "--lengths", "512,512", NULL};
    CHECK_EQ_INT(run_kv(a1, log), 2);
    char *text = slurp(log);
    CHECK(strstr(text, "twice") != NULL);
    free(text);
    char *a2[] = {"--model", g_model, "--lengths", "512,x1", NULL};
    CHECK_EQ_INT(run_kv(a2, log), 2);
    char *a3[] = {"--model", g_model, "--gpu-memory-utilization", "0.5,abc", NULL};
    CHECK_EQ_INT(run_kv(a3, log), 2);
    char *a4[] = {"--help", NULL};
    CHECK_EQ_INT(run_kv(a4, log), 0);
    text = slurp(log);
    CHECK(strstr(text, "--lengths") && strstr(text, "--verify") && strstr(text, "--resume"));
    free(text);
}

/* --url: nothing of ours runs, and here there is no GPU: both memory columns n/a, reasons. */
static void test_no_gpu_no_rss(void)
{
    int port = free_port();
    char port_s[16], url[64], n_s[] = "1024", flog[700];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    snprintf(flog, sizeof flog, "%s/fake_url.log", g_dir);
    struct srv s = {0};
    s.pid = fork();
    if (s.pid == 0) {
        int fd = open(flog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        execl(g_self, g_self, "--fake-kv-server", "--port", port_s, "-c", n_s, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        char *t = slurp(flog);
        int up = strstr(t, "listening") != NULL;
        free(t);
        if (up)
            break;
        sleep_ms(25);
    }
    char out[600], log[700];
    snprintf(out, sizeof out, "%s/url", g_dir);
    snprintf(log, sizeof log, "%s/url.log", g_dir);
    char *args[] = {"--server", "llamacpp", "--url", url, "--lengths", "1024", "--out", out,
                    NULL};
    int rc = run_kv(args, log);
    srv_stop(&s, 5);
    char *text = slurp(log);
    CHECK_MSG(rc == 0, "exit %d: %s", rc, text);
    free(text);
    char *csv = out_file(out, "kv_cache_scaling.csv");
    char f[512];
    CHECK(csv_field(csv, 0, 1, f, sizeof f) == 0 && !strcmp(f, "n/a"));
    CHECK(csv_field(csv, 0, 8, f, sizeof f) == 0 && !strcmp(f, "n/a"));
    CHECK(csv_field(csv, 0, 4, f, sizeof f) == 0 && strstr(f, "no GPU") && strstr(f, "RSS"));
    free(csv);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--fake-kv-server"))
        return fake_main(argc, argv);
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (n <= 0)
        return 1;
    g_self[n] = 0;
    if (harness_setup("kvprobe") != 0)
        return 1;
    TEST_RUN(test_lists);
    TEST_RUN(test_fit);
    TEST_RUN(test_theory);
    TEST_RUN(test_regime);
    TEST_RUN(test_bad_lists);
    TEST_RUN(test_embedded_sweep);
    TEST_RUN(test_fake_per_context);
    TEST_RUN(test_fake_dies_and_fails);
    TEST_RUN(test_no_gpu_no_rss);
    return TEST_DONE();
}
