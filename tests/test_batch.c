/* test_batch: `slmprobe batch` end to end against the real embedded server on loopback (tiny
 * preset; mini for the knee). The knee test sweeps 1..32 against a server capped at
 * --max-num-seqs 8 and checks that throughput flattens after 8, that the server queues beyond 8,
 * and that the knee lands at 8; other cases cover open-loop load (intended vs actual send times,
 * an unsustainable rate), a prompt longer than max-model-len (the server's 400 message, the run
 * goes on), a server killed mid-sweep, prompt-file and option errors (exit 2 before launching
 * anything) and --help. Every batch.json is validated against docs/schema.md (schema_check.h).
 * The binary comes from SLMPROBE_BIN (default ./slmprobe). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "schema_check.h"
#include "test.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"

static const char *bin;
static char dir[256];
static char model[512];

/* Starts argv with stdout/stderr to files; returns the pid. */
static pid_t spawn(char *const argv[], const char *out_path, const char *err_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fe = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0)
            _exit(126);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Waits for pid up to timeout_s; kills it (SIGTERM, then SIGKILL) when late. Exit status, or
 * 128 + signal, or -1 on timeout. */
static int wait_for(pid_t pid, int timeout_s)
{
    mono_ns end = clock_now_ns() + (mono_ns)timeout_s * 1000000000ull;
    int st;
    while (1) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0)
            return -2;
        if (clock_now_ns() > end) {
            kill(pid, SIGTERM);
            clock_sleep_ns(3000000000ull);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        clock_sleep_ns(20000000ull);
    }
}

static int run(char *const argv[], const char *tag, int timeout_s)
{
    char out[400], err[400];
    snprintf(out, sizeof out, "%s/%s.stdout", dir, tag);
    snprintf(err, sizeof err, "%s/%s.stderr", dir, tag);
    pid_t pid = spawn(argv, out, err);
    return wait_for(pid, timeout_s);
}

static char *slurp(const char *path)
{
    size_t len;
    char *s = file_read_all(path, 64u << 20, &len);
    return s ? s : xstrdup("");
}

static char *slurp2(const char *a, const char *b)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", a, b);
    return slurp(p);
}

static int file_exists(const char *a, const char *b)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", a, b);
    struct stat st;
    return stat(p, &st) == 0;
}

static void dump_tail(const char *tag, const char *what)
{
    char p[400];
    snprintf(p, sizeof p, "%s/%s.%s", dir, tag, what);
    char *s = slurp(p);
    size_t n = strlen(s);
    fprintf(stderr, "    --- %s %s (tail) ---\n%s\n", tag, what, n > 3000 ? s + n - 3000 : s);
    free(s);
}

/* ---- a minimal CSV reader (RFC 4180 quoting) ---- */

#define CSV_MAX_COLS 96
#define CSV_MAX_ROWS 64
struct csv {
    int n_rows, n_cols;
    char *cell[CSV_MAX_ROWS][CSV_MAX_COLS]; /* row 0: header */
};

static void csv_parse(const char *text, struct csv *c)
{
    memset(c, 0, sizeof *c);
    const char *p = text;
    while (*p && c->n_rows < CSV_MAX_ROWS) {
        int col = 0;
        while (1) {
            struct buf f;
            buf_init(&f, 32, 1 << 16);
            if (*p == '"') {
                p++;
                while (*p && !(*p == '"' && p[1] != '"')) {
                    if (*p == '"')
                        p++;
                    buf_putc(&f, *p++);
                }
                if (*p == '"')
                    p++;
            } else {
                while (*p && *p != ',' && *p != '\r' && *p != '\n')
                    buf_putc(&f, *p++);
            }
            if (col < CSV_MAX_COLS)
                c->cell[c->n_rows][col++] = buf_steal(&f);
            else
                buf_free(&f);
            if (*p == ',') {
                p++;
                continue;
            }
            break;
        }
        if (*p == '\r')
            p++;
        if (*p == '\n')
            p++;
        if (c->n_rows == 0)
            c->n_cols = col;
        c->n_rows++;
    }
}

static void csv_free(struct csv *c)
{
    for (int r = 0; r < CSV_MAX_ROWS; r++)
        for (int k = 0; k < CSV_MAX_COLS; k++)
            free(c->cell[r][k]);
}

static int csv_col(const struct csv *c, const char *name)
{
    for (int k = 0; k < c->n_cols; k++)
        if (c->cell[0][k] && !strcmp(c->cell[0][k], name))
            return k;
    return -1;
}

/* Value of column name in the data row whose first column equals key; NAN if absent/empty. */
static double csv_num(const struct csv *c, const char *key, const char *name)
{
    int k = csv_col(c, name);
    for (int r = 1; r < c->n_rows && k >= 0; r++)
        if (c->cell[r][0] && !strcmp(c->cell[r][0], key) && c->cell[r][k] && c->cell[r][k][0])
            return strtod(c->cell[r][k], NULL);
    return NAN;
}

static const char *csv_text(const struct csv *c, const char *key, const char *name)
{
    int k = csv_col(c, name);
    for (int r = 1; r < c->n_rows && k >= 0; r++)
        if (c->cell[r][0] && !strcmp(c->cell[r][0], key))
            return c->cell[r][k] ? c->cell[r][k] : "";
    return "";
}

static int count_lines(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len && (!needle || memmem(p, len, needle, strlen(needle))))
            n++;
        p += len + (e ? 1 : 0);
    }
    return n;
}


/* ---- batch.json against the key table of docs/schema.md ---- */

/* Validates a batch.json with tests/schema_check.h; returns the number of problems (printed). */
static size_t batch_schema_check(const char *json_path_file)
{
    struct schema sc;
    char err[256];
    int loaded = schema_load(NULL, "slmprobe.batch/1", &sc, err, sizeof err) == 0;
    CHECK_MSG(loaded, "%s", err);
    if (!loaded)
        return 1;
    CHECK(sc.n_keys > 100);
    struct schema_problems pr = {0};
    size_t n = schema_check_file(&sc, json_path_file, &pr);
    CHECK_MSG(n == 0, "%s: %zu schema problems", json_path_file, n);
    schema_problems_print(&pr, stderr);
    schema_problems_free(&pr);
    schema_free(&sc);
    return n;
}

/* ---- tests ---- */

static void test_help(void)
{
    char *argv[] = {(char *)bin, "batch", "--help", NULL};
    CHECK_EQ_INT(run(argv, "help", 30), 0);
    char p[400];
    snprintf(p, sizeof p, "%s/help.stdout", dir);
    char *s = slurp(p);
    const char *opts[] = {"--modes",
                          "--num-requests",
                          "--concurrency",
                          "--requests",
                          "--duration",
                          "--warmup",
                          "--repeat",
                          "--knee-threshold",
                          "--rate",
                          "--burstiness",
                          "--max-concurrency",
                          "--input-len",
                          "--input-len-range",
                          "--output-len",
                          "--prompt-file",
                          "--token-unit",
                          "--seed",
                          "--slo",
                          "--slo-attainment",
                          "--metrics-interval",
                          "--progress",
                          "--no-progress",
                          "--help",
                          "--server",
                          "--url",
                          "--model",
                          "--out",
                          "--max-model-len",
                          "--timeout",
                          "--endpoint"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        CHECK_MSG(strstr(s, opts[i]) != NULL, "--help lacks %s", opts[i]);
    CHECK(strstr(s, "batching_benchmark.md") != NULL);
    free(s);
}

static void test_usage_errors(void)
{
    char out[400];
    snprintf(out, sizeof out, "%s/usage_err", dir);
    struct {
        const char *tag, *a, *b, *needle;
    } cases[] = {
        {"bad_json", "--prompt-file", "tests/data/prompts_bad_json.jsonl",
         "prompts_bad_json.jsonl:3: malformed JSON"},
        {"missing", "--prompt-file", "tests/data/prompts_missing.jsonl",
         "prompts_missing.jsonl:5: \"prompt\" is missing"},
        {"nonstring", "--prompt-file", "tests/data/prompts_nonstring.jsonl",
         "prompts_nonstring.jsonl:2: \"prompt\" is an integer"},
        {"unreadable", "--prompt-file", "tests/data/does_not_exist.jsonl",
         "cannot read prompt file"},
        {"slo", "--slo", "ttft:500", "--slo"},
        {"conc", "--concurrency", "1,0,4", "--concurrency"},
        {"unknown", "--frobnicate", "3", "unknown option"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[] = {(char *)bin, "batch", "--model",          model,
                        "--out",     out,     (char *)cases[i].a, (char *)cases[i].b,
                        NULL};
        int rc = run(argv, cases[i].tag, 30);
        CHECK_MSG(rc == 2, "%s: exit %d", cases[i].tag, rc);
        char p[400];
        snprintf(p, sizeof p, "%s/%s.stderr", dir, cases[i].tag);
        char *s = slurp(p);
        CHECK_MSG(strstr(s, cases[i].needle) != NULL, "%s: stderr \"%s\" lacks \"%s\"",
                  cases[i].tag, s, cases[i].needle);
        free(s);
    }
    /* Nothing was launched: no server log, no report. */
    CHECK(!file_exists(out, "server.log"));
    CHECK(!file_exists(out, "batching_benchmark.md"));
}

/* Performance expectations of one sweep; each failed expectation is appended to why. */
static int knee_expectations(const char *out, struct buf *why)
{
    char *text = slurp2(out, "concurrency_sweep.csv");
    struct csv c;
    csv_parse(text, &c);
    const char *lv[6] = {"1", "2", "4", "8", "16", "32"};
    double T[6], W[6], ttft[6];
    for (int i = 0; i < 6; i++) {
        T[i] = csv_num(&c, lv[i], "tok_s");
        W[i] = csv_num(&c, lv[i], "waiting_mean");
        ttft[i] = csv_num(&c, lv[i], "p95_ttft_ms");
        fprintf(stderr,
                "    c=%-2s tok/s %7.1f  p95 e2e %.3f s  p95 TTFT %7.1f ms  p95 TPOT %5.2f ms  "
                "waiting mean %5.2f  running max %.0f  inflight %5.2f  cpu %3.0f%%  notes: %s\n",
                lv[i], T[i], csv_num(&c, lv[i], "p95_e2e_s"), ttft[i],
                csv_num(&c, lv[i], "p95_tpot_ms"), W[i], csv_num(&c, lv[i], "running_max"),
                csv_num(&c, lv[i], "inflight_mean"), csv_num(&c, lv[i], "cpu_mean_pct"),
                csv_text(&c, lv[i], "notes"));
    }
    size_t len0 = why->len;
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            buf_printf(why, "      " __VA_ARGS__);                                                 \
            buf_putc(why, '\n');                                                                   \
        }                                                                                          \
    } while (0)
    /* Batching pays up to 8 ... */
    EXPECT(T[3] > 1.5 * T[0], "tok/s at 8 (%.1f) not above 1.5 x tok/s at 1 (%.1f)", T[3], T[0]);
    /* ... and flattens after 8: under +20% per doubling from 8 to 16 and to 32 (the gain that
     * ends scaling in knee.h; before 8 it is well above). */
    EXPECT(T[4] < 1.20 * T[3], "tok/s at 16 (%.1f) vs 8 (%.1f): not flat", T[4], T[3]);
    EXPECT(T[5] < 1.44 * T[3], "tok/s at 32 (%.1f) vs 8 (%.1f): not flat", T[5], T[3]);
    /* The server queues beyond 8 (its /metrics), not at 4. */
    EXPECT(W[4] >= 1 && W[5] >= 4, "waiting mean at 16: %.2f, at 32: %.2f", W[4], W[5]);
    EXPECT(W[2] < 0.5, "waiting mean at 4: %.2f", W[2]);
    EXPECT(ttft[5] > 2.0 * ttft[3], "p95 TTFT at 32 (%.1f ms) vs 8 (%.1f ms)", ttft[5], ttft[3]);
    /* The knee lands at 8 (aimed for) or at 4 (tolerated: on this CPU runtime a step of 8
     * sequences costs about 1.7x a step of 4 under ASan, so 4 -> 8 adds little throughput while
     * p95 e2e grows; see docs/batch.md), and at no other level. */
    int k_at = -1, n_knee = 0;
    for (int i = 0; i < 6; i++)
        if (strstr(csv_text(&c, lv[i], "notes"), "knee")) {
            k_at = i;
            n_knee++;
        }
    EXPECT(n_knee == 1 && (k_at == 3 || k_at == 2), "knee at %s (%d levels marked)",
           k_at >= 0 ? lv[k_at] : "none", n_knee);
    if (n_knee == 1 && k_at == 2)
        fprintf(stderr, "    knee at 4 (tolerated; 8 is the aim)\n");
#undef EXPECT
    csv_free(&c);
    free(text);
    return why->len == len0;
}

static void test_knee_embedded(void)
{
    /* The knee is a timing result on a machine shared with other work: a burst of foreign load
     * during one level can bend a sweep. Each attempt runs 3 interleaved sweeps (medians per
     * level) and is held to every expectation; up to 3 attempts, every failed one is printed. */
    /* The `mini` preset (111 MB of f32 weights, more than the CPU caches hold): decode streams the
     * weights from memory, so a step of 8 sequences costs far less than 8 steps of one, as on
     * real models. With `tiny` (13 MB, cache-resident) the gain from 4 to 8 sequences measured
     * between -12% and +56% across runs under ASan; with `mini` it measured +48% and 1 -> 8
     * 2.8x. */
    char mini[600];
    snprintf(mini, sizeof mini, "%s/mini.gguf", dir);
    char *init_argv[] = {(char *)bin, "model", "init", "--preset", "mini", "-o", mini, NULL};
    if (run(init_argv, "model_mini", 120) != 0) {
        CHECK_MSG(0, "cannot create the mini model with %s", bin);
        return;
    }
    char out[400];
    struct buf why;
    buf_init(&why, 1024, 1 << 16);
    int ok = 0, rc = -1;
    for (int attempt = 1; attempt <= 3 && !ok; attempt++) {
        snprintf(out, sizeof out, "%s/knee%d", dir, attempt);
        /* clang-format off */
        char *argv[] = {(char *)bin, "batch", "--model", mini, "--out", out, "--modes", "sweep",
                        "--concurrency", "1,2,4,8,16,32", "--input-len", "16", "--output-len", "32",
                        "--rounds", "2", "--repeat", "3", "--slo", "ttft:60s,tpot:10s",
                        "--metrics-interval", "100",
                        "--", "--max-num-seqs", "8", "--kv-cache-memory-bytes", "64MiB",
                        "--enforce-eager", "--threads", "1", NULL};
        /* clang-format on */
        mono_ns t0 = clock_now_ns();
        rc = run(argv, "knee", 300);
        fprintf(stderr, "    attempt %d: exit %d, %.1f s\n", attempt, rc,
                ns_to_s(clock_now_ns() - t0));
        if (rc != 0)
            break;
        buf_printf(&why, "    attempt %d:\n", attempt);
        ok = knee_expectations(out, &why);
    }
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        dump_tail("knee", "stderr");
        buf_free(&why);
        return;
    }
    CHECK_MSG(ok, "no attempt met every expectation:\n%s", why.data);
    buf_free(&why);

    /* Shapes and contents of the outputs (last attempt). */
    char *csv_all = slurp2(out, "concurrency_sweep.csv");
    CHECK(strncmp(csv_all, "concurrency,mean_e2e_s,p95_e2e_s,qps,tok_s,gpu_util_pct,notes,", 62) ==
          0);
    struct csv c;
    csv_parse(csv_all, &c);
    CHECK_EQ_INT(c.n_rows, 7);
    const char *lv[6] = {"1", "2", "4", "8", "16", "32"};
    for (int i = 0; i < 6; i++) {
        CHECK(csv_num(&c, lv[i], "tok_s") > 0);
        CHECK_EQ_INT(csv_num(&c, lv[i], "n_errors"), 0);
        CHECK(csv_num(&c, lv[i], "running_max") <= 8);
        /* GPU columns are a number or empty ("no GPU" in the report). */
        const char *g = csv_text(&c, lv[i], "gpu_util_pct");
        CHECK(!g[0] || strtod(g, NULL) >= 0);
    }
    /* The SLO is generous enough that every request meets it. */
    CHECK_NEAR(csv_num(&c, "32", "goodput_pct"), 100.0, 1e-9);
    csv_free(&c);
    free(csv_all);

    char *md = slurp2(out, "batching_benchmark.md");
    if (ok) {
        CHECK(strstr(md, "Knee at concurrency 8") || strstr(md, "Knee at concurrency 4"));
        CHECK(strstr(md, "Beyond concurrency 8") || strstr(md, "Beyond concurrency 4"));
    }
    CHECK(strstr(md, "Rules of thumb") != NULL);
    CHECK(strstr(md, "unique to its request") != NULL);
    CHECK(strstr(md, "TPOT: time per output token") != NULL);
    free(md);
    char *html = slurp2(out, "batching_benchmark.html");
    CHECK(strstr(html, "<svg") != NULL);
    CHECK(strstr(html, "Throughput vs concurrency") != NULL);
    free(html);
    char *json = slurp2(out, "batch.json");
    CHECK(strstr(json, "\"p95_e2e_s\"") != NULL);
    if (ok) {
        char err[160];
        struct json *root = json_parse(json, strlen(json), err, sizeof err);
        long long knee = -1;
        CHECK(json_int(json_get(json_get(root, "knee"), "concurrency"), &knee) == 0);
        CHECK_MSG(knee == 8 || knee == 4, "batch.json knee.concurrency %lld", knee);
        json_free(root);
    }
    free(json);
    char jp[500];
    snprintf(jp, sizeof jp, "%s/batch.json", out);
    CHECK(batch_schema_check(jp) == 0);
    /* One JSONL line per request, warm-ups included, 3 sweeps of: warm-ups 1+2+4+8+16+32,
     * measured max(8, 2 x level) = 8+8+8+16+32+64. */
    char *jl = slurp2(out, "batch_requests.jsonl");
    CHECK_EQ_INT(count_lines(jl, NULL), 3 * (63 + 136));
    CHECK_EQ_INT(count_lines(jl, "\"tag\":\"c=32 r2\""), 64);
    CHECK_EQ_INT(count_lines(jl, "\"tag\":\"warmup c=16\""), 3 * 16);
    free(jl);
}

static void test_open_loop(void)
{
    char out[400];
    snprintf(out, sizeof out, "%s/open", dir);
    /* clang-format off */
    char *argv[] = {(char *)bin, "batch", "--model", model, "--out", out,
                    "--modes", "seqconc,open", "--num-requests", "8",
                    "--rate", "4,400", "--requests", "16", "--max-concurrency", "4",
                    "--input-len", "16", "--output-len", "16", "--warmup", "2",
                    "--api-key", "sekrit",
                    "--", "--max-num-seqs", "8", "--kv-cache-memory-bytes", "64MiB",
                    "--enforce-eager", "--threads", "1", NULL};
    /* clang-format on */
    int rc = run(argv, "open", 120);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        dump_tail("open", "stderr");
        return;
    }
    char *text = slurp2(out, "open_loop.csv");
    struct csv c;
    csv_parse(text, &c);
    CHECK_EQ_INT(c.n_rows, 3);
    CHECK(csv_col(&c, "p95_e2e_intended_s") >= 0 && csv_col(&c, "p95_queue_delay_ms") >= 0);
    /* At 400 req/s with at most 4 in flight the client must hold requests back: latency from the
     * intended send time exceeds latency from the actual send, by the queueing delay. */
    double e_s = csv_num(&c, "400.00", "p95_e2e_s"),
           e_i = csv_num(&c, "400.00", "p95_e2e_intended_s");
    double qd = csv_num(&c, "400.00", "p95_queue_delay_ms");
    fprintf(stderr,
            "    rate 400: p95 e2e %.3f s from send, %.3f s from intended, queue p95 %.1f ms, "
            "send rate %.1f req/s\n",
            e_s, e_i, qd, csv_num(&c, "400.00", "send_rate_rps"));
    CHECK(e_i > e_s);
    CHECK(qd > 50);
    CHECK(csv_num(&c, "400.00", "send_rate_rps") <
          0.95 * csv_num(&c, "400.00", "scheduled_rate_rps"));
    CHECK(csv_num(&c, "400.00", "inflight_mean") <= 4.0 + 1e-9);
    CHECK_EQ_INT(csv_num(&c, "4.00", "n_ok"), 16);
    CHECK_EQ_INT(csv_num(&c, "400.00", "n_ok"), 16);
    csv_free(&c);
    free(text);
    char *md = slurp2(out, "batching_benchmark.md");
    CHECK(strstr(md, "rate 400 req/s was not sustained") != NULL);
    CHECK(strstr(md, "sekrit") == NULL);
    free(md);
    /* The HTML keeps the text unescaped where Markdown escapes _ and *. */
    md = slurp2(out, "batching_benchmark.html");
    CHECK(strstr(md, "sequential_s = ") != NULL);
    CHECK(strstr(md, "--api-key ***") != NULL && strstr(md, "sekrit") == NULL);
    free(md);
    char *js = slurp2(out, "batch.json");
    CHECK(strstr(js, "\"schema\": \"slmprobe.batch/1\"") != NULL);
    CHECK(strstr(js, "\"sequential_s\": ") != NULL);
    CHECK(strstr(js, "\"rate_rps\": 400") != NULL);
    CHECK(strstr(js, "sekrit") == NULL);
    free(js);
    char jp[500];
    snprintf(jp, sizeof jp, "%s/batch.json", out);
    CHECK(batch_schema_check(jp) == 0);
    char *err = slurp2(dir, "open.stderr");
    CHECK(strstr(err, "was not sustained") != NULL);
    free(err);
    /* Sequential vs concurrent on stdout. */
    char *so = slurp2(dir, "open.stdout");
    const char *sp = strstr(so, "speed-up: ");
    CHECK(sp != NULL && strtod(sp + 10, NULL) > 0);
    CHECK(strstr(so, "sequential: 8 requests, sequential_s ") != NULL);
    free(so);
}

static void test_prompt_too_long(void)
{
    char out[400], pf[400];
    snprintf(out, sizeof out, "%s/toolong", dir);
    snprintf(pf, sizeof pf, "%s/prompts_long.jsonl", dir);
    FILE *f = fopen(pf, "w");
    fprintf(f, "{\"prompt\": \"a short prompt\"}\n{\"prompt\": \"");
    for (int i = 0; i < 600; i++)
        fputc('x', f);
    fprintf(f, "\"}\n{\"prompt\": \"another short one\"}\n");
    fclose(f);
    /* clang-format off */
    char *argv[] = {(char *)bin, "batch", "--model", model, "--out", out, "--modes", "seqconc",
                    "--num-requests", "6", "--prompt-file", pf, "--output-len", "8",
                    "--max-model-len", "256", "--warmup", "0",
                    "--", "--kv-cache-memory-bytes", "64MiB", "--enforce-eager", "--threads", "1",
                    NULL};
    /* clang-format on */
    int rc = run(argv, "toolong", 120);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        dump_tail("toolong", "stderr");
        return;
    }
    char *md = slurp2(out, "batching_benchmark.md");
    CHECK(strstr(md, "maximum context length is 256 tokens") != NULL);
    free(md);
    md = slurp2(out, "batching_benchmark.html");
    CHECK(strstr(md, "2 x http_4xx: This model&#39;s maximum context length is 256 tokens") ||
          strstr(md, "2 x http_4xx: This model's maximum context length is 256 tokens"));
    free(md);
    char *js = slurp2(out, "batch.json");
    CHECK(strstr(js, "\"http_4xx\": 2") != NULL);
    CHECK(strstr(js, "\"http_4xx\": \"This model's maximum context length is 256 tokens") != NULL);
    free(js);
    /* 6 requests cycle 3 prompts: the long one is requests 2 and 5 of each run. */
    char *jl = slurp2(out, "batch_requests.jsonl");
    CHECK_EQ_INT(count_lines(jl, "\"http_4xx\""), 4);
    CHECK_EQ_INT(count_lines(jl, NULL), 12);
    free(jl);
}

/* Pid of a child of parent whose command line mentions "serve", or 0. */
static pid_t find_server_child(pid_t parent)
{
    DIR *d = opendir("/proc");
    pid_t found = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && !found) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char p[300];
        snprintf(p, sizeof p, "/proc/%s/stat", e->d_name);
        char *s = slurp(p);
        const char *rp = strrchr(s, ')');
        int ppid = 0;
        if (rp)
            sscanf(rp + 2, "%*c %d", &ppid);
        free(s);
        if (ppid != parent)
            continue;
        snprintf(p, sizeof p, "/proc/%s/cmdline", e->d_name);
        size_t len = 0;
        char *cl = file_read_all(p, 1 << 16, &len);
        if (cl && memmem(cl, len, "serve", 5))
            found = (pid_t)atoi(e->d_name);
        free(cl);
    }
    if (d)
        closedir(d);
    return found;
}

static void test_server_dies(void)
{
    char out[400], o[400], e[400];
    snprintf(out, sizeof out, "%s/dies", dir);
    snprintf(o, sizeof o, "%s/dies.stdout", dir);
    snprintf(e, sizeof e, "%s/dies.stderr", dir);
    /* clang-format off */
    char *argv[] = {(char *)bin, "batch", "--model", model, "--out", out, "--modes", "sweep",
                    "--concurrency", "1,2,4", "--requests", "12", "--repeat", "1",
                    "--input-len", "16", "--output-len", "48",
                    "--", "--max-num-seqs", "8", "--kv-cache-memory-bytes", "64MiB",
                    "--enforce-eager", "--threads", "1", NULL};
    /* clang-format on */
    pid_t pid = spawn(argv, o, e);
    /* Wait until level 2 is under way (its first measured request finished), then kill -9. */
    char jl[500];
    snprintf(jl, sizeof jl, "%s/batch_requests.jsonl", out);
    pid_t srv = 0;
    mono_ns end = clock_now_ns() + 90000000000ull;
    while (clock_now_ns() < end) {
        char *s = slurp(jl);
        int started = strstr(s, "\"tag\":\"c=2 r1\"") != NULL;
        free(s);
        if (started) {
            srv = find_server_child(pid);
            break;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            pid = 0;
            break;
        }
        clock_sleep_ns(20000000ull);
    }
    CHECK(srv > 0);
    if (srv > 0)
        kill(srv, SIGKILL);
    int rc = pid ? wait_for(pid, 60) : -3;
    CHECK_MSG(rc == 1, "exit %d", rc);
    char *md = slurp2(out, "batching_benchmark.md");
    CHECK(strstr(md, "exited during the run") != NULL);
    CHECK(strstr(md, "killed by signal 9") != NULL);
    CHECK(strstr(md, "Levels finished before the failure are reported") != NULL);
    free(md);
    char *text = slurp2(out, "concurrency_sweep.csv");
    struct csv c;
    csv_parse(text, &c);
    CHECK_EQ_INT(c.n_rows, 3); /* c=1 complete, c=2 incomplete, c=4 never ran */
    CHECK_EQ_INT(csv_num(&c, "1", "n_ok"), 12);
    CHECK(strstr(csv_text(&c, "1", "notes"), "incomplete") == NULL);
    CHECK(strstr(csv_text(&c, "2", "notes"), "incomplete") != NULL);
    CHECK(strstr(csv_text(&c, "2", "errors"), "server_exit") != NULL);
    csv_free(&c);
    free(text);
    char jp[500];
    snprintf(jp, sizeof jp, "%s/batch.json", out);
    CHECK(batch_schema_check(jp) == 0);
    char *js = slurp(jp);
    CHECK(strstr(js, "\"status\": \"failed\"") != NULL);
    char err[160];
    struct json *root = json_parse(js, strlen(js), err, sizeof err);
    long long n_exit = -1;
    const struct json *lv = json_at(json_get(root, "sweep"), 1);
    CHECK(json_int(json_get(json_get(lv, "errors"), "server_exit"), &n_exit) == 0 && n_exit > 0);
    json_free(root);
    free(js);
    char *so = slurp(o);
    CHECK(strstr(so, "FAILED: ") != NULL);
    free(so);
    if (rc != 1)
        dump_tail("dies", "stderr");
}

static int rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            rm_rf(p);
        }
        closedir(d);
        return rmdir(path);
    }
    return unlink(path);
}

int main(void)
{
    bin = getenv("SLMPROBE_BIN");
    if (!bin || !*bin)
        bin = "./slmprobe";
    snprintf(dir, sizeof dir, "/tmp/slm_test_batch_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(model, sizeof model, "%s/tiny.gguf", dir);
    char *argv[] = {(char *)bin, "model", "init", "--preset", "tiny", "-o", model, NULL};
    if (run(argv, "model", 60) != 0) {
        fprintf(stderr, "cannot create the tiny model with %s\n", bin);
        dump_tail("model", "stderr");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    TEST_RUN(test_help);
    TEST_RUN(test_usage_errors);
    if (!getenv("SLMPROBE_SKIP_KNEE")) /* timing-dependent and slow: skip while iterating */
        TEST_RUN(test_knee_embedded);
    TEST_RUN(test_open_loop);
    TEST_RUN(test_prompt_too_long);
    TEST_RUN(test_server_dies);
    if (!getenv("SLMPROBE_KEEP_TEST_DIR"))
        rm_rf(dir);
    else
        fprintf(stderr, "kept %s\n", dir);
    return TEST_DONE();
}
