/* test_ttft: `slmprobe ttft` end to end against the real embedded server (tiny preset, small KV
 * pool): a normal run (files, JSON content, timeline order, phases, JSONL line count, no server
 * left behind), --repeat, --url (warm only, against a server started here), a server that dies
 * mid-run (records kept, non-zero exit, report says so), a server of unknown log wording (log
 * timeline with arrival times), SIGINT (server stopped, partial results, exit 130), and bad
 * options (exit 2); every ttft.json is checked against docs/schema.md (tests/schema_check.h).
 * The binary comes from SLMPROBE_BIN (default ./slmprobe). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/client.h"
#include "schema_check.h"
#include "test.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "ttft/ttft.h"
#include "serve_harness.h"

/* Small engine for tests: little KV memory, one compute thread, few sequences. */
#define SERVER_FLAGS                                                                               \
    "--kv-cache-memory-bytes", "8MiB", "--threads", "1", "--max-num-seqs", "4", "--max-model-len", \
        "512"
/* The same without the engine's warm-up (seconds under ASan): for tests not about phases. */
#define FAST_FLAGS SERVER_FLAGS, "--enforce-eager"

static const char *bin;
static char dir[256];
static char model[512];

/* The file, or NULL when it cannot be read (the harness's slurp gives "" instead). */
static char *slurp_or_null(const char *path)
{
    return file_read_all(path, 1 << 26, NULL);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

static int count_lines(const char *path)
{
    char *s = slurp_or_null(path);
    if (!s)
        return -1;
    int n = 0;
    for (char *p = s; *p; p++)
        n += *p == '\n';
    free(s);
    return n;
}

/* Processes whose command line mentions our temp dir (every server we launch has the model
 * path, inside it, in its argv), other than except_pid. */
static int count_our_processes(pid_t except_pid)
{
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == getpid() || pid == except_pid)
            continue;
        char path[64], buf[4096];
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r <= 0)
            continue;
        for (ssize_t i = 0; i < r; i++)
            if (!buf[i])
                buf[i] = ' ';
        buf[r] = 0;
        /* zombies have an empty cmdline; "sh -c" wrappers of ours do not exist */
        if (strstr(buf, dir) && strstr(buf, "serve")) {
            fprintf(stderr, "  left over: pid %ld: %s\n", pid, buf);
            n++;
        }
    }
    if (d)
        closedir(d);
    return n;
}

/* Waits until no process of ours is left (stop is asynchronous only in the SIGKILL case). */
static int none_left(void)
{
    for (int i = 0; i < 50; i++) {
        if (count_our_processes(0) == 0)
            return 1;
        usleep(100000);
    }
    return count_our_processes(0) == 0;
}

static struct json *load_json(const char *path)
{
    size_t len = 0;
    char *s = file_read_all(path, 1 << 26, &len);
    if (!s)
        return NULL;
    char err[128];
    struct json *j = json_parse(s, len, err, sizeof err);
    if (!j)
        fprintf(stderr, "  %s: %s\n", path, err);
    free(s);
    return j;
}

/* ttft.json (slmprobe.ttft/1): the i-th repeat and its requests. */
static const struct json *repeat_at(const struct json *root, size_t i)
{
    return json_at(json_get(root, "repeats"), i);
}

static const struct json *requests_of(const struct json *root, size_t i)
{
    return json_get(repeat_at(root, i), "requests");
}

/* ttft.json at json_path against the slmprobe.ttft/1 key table of docs/schema.md (every key
 * documented, types as documented, required keys present). */
static void check_schema(const char *json_path)
{
    struct schema sc;
    char err[256];
    int loaded = schema_load(NULL, "slmprobe.ttft/1", &sc, err, sizeof err) == 0;
    CHECK_MSG(loaded, "%s (run from the repository root)", err);
    if (!loaded)
        return;
    CHECK_MSG(sc.n_keys > 100, "only %zu keys in the schema table", sc.n_keys);
    struct schema_problems pr = {0};
    size_t n = schema_check_file(&sc, json_path, &pr);
    CHECK_MSG(n == 0, "%s: %zu schema problems", json_path, n);
    schema_problems_print(&pr, stderr);
    schema_problems_free(&pr);
    schema_free(&sc);
}

static double num(const struct json *row, const char *key)
{
    double v = NAN;
    json_num(json_get(row, key), &v);
    return v;
}

static const char *str(const struct json *row, const char *key)
{
    const char *s = json_str(json_get(row, key), NULL);
    return s ? s : "";
}

static void path_in(char *out, size_t n, const char *sub, const char *name)
{
    snprintf(out, n, "%s/%s/%s", dir, sub, name);
}

static void test_model_init(void)
{
    snprintf(model, sizeof model, "%s/tiny.gguf", dir);
    char log[512];
    snprintf(log, sizeof log, "%s/model_init.log", dir);
    char *argv[] = {(char *)bin, "model", "init", "--preset", "tiny", "-o", model, NULL};
    CHECK_EQ_INT(run_logged(argv, log), 0);
    CHECK(file_exists(model));
}

static void test_bad_options(void)
{
    char log[512];
    snprintf(log, sizeof log, "%s/bad.log", dir);
    struct {
        const char *a, *b;
        const char *msg;
    } cases[] = {
        {"--warm-runs", "abc", "--warm-runs"}, {"--repeat", "0", "--repeat"},
        {"--idle-gap", "-1", "--idle-gap"},    {"--bogus-option", NULL, "--bogus-option"},
        {"--max-tokens", "0", "--max-tokens"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[] = {(char *)bin,        "ttft", "--model", model, (char *)cases[i].a,
                        (char *)cases[i].b, NULL};
        CHECK_EQ_INT(run_logged(argv, log), 2);
        char *out = slurp_or_null(log);
        CHECK_MSG(out && strstr(out, cases[i].msg), "%s: %s", cases[i].a, out ? out : "");
        free(out);
    }
    char *argv[] = {(char *)bin, "ttft", "--help", NULL};
    CHECK_EQ_INT(run_logged(argv, log), 0);
    char *out = slurp_or_null(log);
    const char *opts[] = {"--warm-runs",  "--idle-gap",    "--repeat", "--prompt-len",
                          "--max-tokens", "--drop-caches", "--url",    "--out"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        CHECK_MSG(out && strstr(out, opts[i]), "--help lacks %s", opts[i]);
    free(out);
}

static void check_common_outputs(const char *sub)
{
    const char *files[] = {"first_token_latency.md", "first_token_latency.html", "ttft.json",
                           "ttft_requests.jsonl", "ttft_runs.csv"};
    char p[768];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        path_in(p, sizeof p, sub, files[i]);
        CHECK_MSG(file_exists(p), "%s missing", p);
    }
    path_in(p, sizeof p, sub, "first_token_latency.html");
    char *html = slurp_or_null(p);
    CHECK(html && strstr(html, "<svg ") && !strstr(html, "<script"));
    free(html);
}

static void test_end_to_end(void)
{
    char out[512], log[512], p[768];
    snprintf(out, sizeof out, "%s/e2e", dir);
    snprintf(log, sizeof log, "%s/e2e.log", dir);
    char *argv[] = {
        (char *)bin,    "ttft", "--model",      model, "--out", out,          "--warm-runs", "3",
        "--prompt-len", "64",   "--max-tokens", "8",   "--",    SERVER_FLAGS, NULL};
    int rc = run_logged(argv, log);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        char *s = slurp_or_null(log);
        fprintf(stderr, "%s\n", s ? s : "");
        free(s);
    }
    check_common_outputs("e2e");
    CHECK(none_left());
    path_in(p, sizeof p, "e2e", "ttft_requests.jsonl");
    CHECK_EQ_INT(count_lines(p), 1 + 1 + 3);

    path_in(p, sizeof p, "e2e", "ttft.json");
    struct json *j = load_json(p);
    CHECK(j != NULL);
    if (!j)
        return;
    CHECK_EQ_STR(str(j, "schema"), "slmprobe.ttft/1");
    check_schema(p);
    CHECK_EQ_STR(str(j, "status"), "ok");
    const struct json *runs = requests_of(j, 0);
    int n_cold = 0, n_warm = 0, n_imm = 0;
    for (size_t i = 0; i < json_len(runs); i++) {
        const struct json *row = json_at(runs, i);
        const char *kind = str(row, "kind");
        double ttft = num(row, "ttft_ms"), e2e = num(row, "e2e_ms");
        CHECK_MSG(ttft > 0 && e2e >= ttft, "%s: ttft %g e2e %g", str(row, "run"), ttft, e2e);
        CHECK_EQ_STR(str(row, "status"), "ok");
        CHECK_EQ_INT((int)num(row, "prompt_tokens"), 64);
        CHECK_EQ_INT((int)num(row, "completion_tokens"), 8);
        if (!strcmp(kind, "cold")) {
            n_cold++;
            CHECK_EQ_STR(str(row, "run"), "cold_1");
        } else if (!strcmp(kind, "warm_immediate")) {
            CHECK_EQ_STR(str(row, "run"), "warm_1");
            n_imm++;
        } else if (!strcmp(kind, "warm")) {
            n_warm++;
        } else if (!strcmp(kind, "warm_immediate")) {
            n_imm++;
        }
    }
    CHECK_EQ_INT(n_cold, 1);
    CHECK_EQ_INT(n_imm, 1);
    CHECK_EQ_INT(n_warm, 3);
    CHECK_EQ_INT(json_len(json_get(j, "repeats")), 1);
    CHECK_EQ_INT((int)num(json_get(repeat_at(j, 0), "warm"), "n"), 3);
    CHECK(num(repeat_at(j, 0), "cold_warm_factor") > 0);
    CHECK(num(json_get(j, "summary"), "warm_ttft_p95_ms") > 0);
    CHECK(num(json_get(j, "summary"), "launch_to_ready_ms") > 0);

    /* phases the embedded server logs */
    const struct json *ph = json_get(repeat_at(j, 0), "phases_s");
    const char *want[] = {"weights_load", "model_load", "kv_cache_alloc", "warmup_graph_capture",
                          "engine_init"};
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++)
        CHECK_MSG(num(ph, want[w]) >= 0, "phase %s not parsed", want[w]);

    /* timeline ordered */
    const struct json *tl = json_get(repeat_at(j, 0), "timeline_ms");
    const char *order[] = {"launch",           "port_open", "health_ok", "ready",  "cold_sent",
                           "cold_first_token", "cold_done", "stop_sent", "stopped"};
    double prev = -1;
    for (size_t o = 0; o < sizeof order / sizeof order[0]; o++) {
        double v = num(tl, order[o]);
        CHECK_MSG(v >= prev, "%s at %g ms before the previous event (%g ms)", order[o], v, prev);
        prev = v;
    }
    /* the report speaks about what was measured */
    const struct json *tel = json_get(repeat_at(j, 0), "telemetry");
    CHECK(json_type_of(tel) == JSON_TYPE_OBJECT);
    CHECK(num(tel, "page_cache_before_mib") > 0);
    json_free(j);
    path_in(p, sizeof p, "e2e", "first_token_latency.md");
    char *md = slurp_or_null(p);
    CHECK(md && strstr(md, "## Observations") && strstr(md, "## Launch timeline") &&
          strstr(md, "## Warm-run variance (steady state)") && strstr(md, "cold\\_1") &&
          strstr(md, "## Quick TTFT mental model") && strstr(md, "How I'd explain TTFT to an SRE") &&
          strstr(md, "## Latency stack"));
    CHECK(md && strstr(md, "first-request penalty"));
    free(md);
}

static void test_repeat(void)
{
    char out[512], log[512], p[768];
    snprintf(out, sizeof out, "%s/rep", dir);
    snprintf(log, sizeof log, "%s/rep.log", dir);
    char *argv[] = {
        (char *)bin,   "ttft", "--model",      model, "--out",        out, "--repeat", "2",
        "--warm-runs", "1",    "--prompt-len", "32",  "--max-tokens", "4", "--",       FAST_FLAGS,
        NULL};
    CHECK_EQ_INT(run_logged(argv, log), 0);
    CHECK(none_left());
    path_in(p, sizeof p, "rep", "ttft_requests.jsonl");
    CHECK_EQ_INT(count_lines(p), 2 * (1 + 1 + 1));
    path_in(p, sizeof p, "rep", "server_r2.log");
    CHECK(file_exists(p));
    path_in(p, sizeof p, "rep", "first_token_latency.md");
    char *md = slurp_or_null(p);
    CHECK(md && strstr(md, "## Cold start across launches") && strstr(md, "Spread over launches"));
    free(md);
    path_in(p, sizeof p, "rep", "ttft.json");
    struct json *j = load_json(p);
    CHECK(j != NULL);
    if (!j)
        return;
    const struct json *reps = json_get(j, "repeats");
    CHECK_EQ_INT(json_len(reps), 2);
    for (size_t i = 0; i < json_len(reps); i++) {
        CHECK(num(json_at(reps, i), "cold_ttft_ms") > 0 &&
              num(json_at(reps, i), "launch_to_ready_ms") > 0);
        CHECK((int)num(json_at(reps, i), "repeat") == (int)i + 1);
    }
    CHECK(strstr(str(json_at(reps, 1), "log_path"), "server_r2.log") != NULL);
    json_free(j);
}

/* --log FILE: the first launch logs to FILE, the second to FILE's stem + "_r2.log"; nothing
 * goes to the default OUT/server.log, and ttft.json names the files used. */
static void test_log_option(void)
{
    char out[512], log[512], user[512], p[768];
    snprintf(out, sizeof out, "%s/logopt", dir);
    snprintf(log, sizeof log, "%s/logopt.log", dir);
    snprintf(user, sizeof user, "%s/custom.log", dir);
    char *argv[] = {
        (char *)bin,   "ttft", "--model",      model, "--out",        out, "--repeat", "2",
        "--warm-runs", "1",    "--prompt-len", "32",  "--max-tokens", "4", "--log",    user,
        "--",          FAST_FLAGS, NULL};
    CHECK_EQ_INT(run_logged(argv, log), 0);
    CHECK(none_left());
    char *first = slurp_or_null(user);
    snprintf(p, sizeof p, "%s/custom_r2.log", dir);
    char *second = slurp_or_null(p);
    CHECK(first && strstr(first, "Application startup complete"));
    CHECK(second && strstr(second, "Application startup complete"));
    free(first);
    free(second);
    path_in(p, sizeof p, "logopt", "server.log");
    CHECK(!file_exists(p));
    path_in(p, sizeof p, "logopt", "ttft.json");
    struct json *j = load_json(p);
    CHECK(j != NULL);
    if (!j)
        return;
    const struct json *reps = json_get(j, "repeats");
    CHECK_EQ_INT(json_len(reps), 2);
    if (json_len(reps) == 2) {
        CHECK(strcmp(str(json_at(reps, 0), "log_path"), user) == 0);
        CHECK(strstr(str(json_at(reps, 1), "log_path"), "/custom_r2.log") != NULL);
    }
    json_free(j);
}

static void test_url_mode(void)
{
    int port = free_port();
    CHECK(port > 0);
    char ps[16], out[512], log[512], slog[512], url[64], p[768];
    snprintf(ps, sizeof ps, "%d", port);
    snprintf(out, sizeof out, "%s/url", dir);
    snprintf(log, sizeof log, "%s/url.log", dir);
    snprintf(slog, sizeof slog, "%s/url_server.log", dir);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    char *sargv[] = {(char *)bin, "serve", "--model", model, "--port", ps, FAST_FLAGS, NULL};
    pid_t srv = spawn_logged(sargv, slog);
    CHECK(srv > 0);
    /* wait for /health */
    char health[96], err[128];
    snprintf(health, sizeof health, "%s/health", url);
    int ok = 0;
    for (int i = 0; i < 600 && !ok; i++) {
        struct buf b;
        buf_init(&b, 256, 1 << 16);
        int status = 0;
        if (http_get(health, NULL, 1000, &b, &status, err, sizeof err) == 0 && status == 200)
            ok = 1;
        buf_free(&b);
        if (!ok)
            usleep(100000);
    }
    CHECK(ok);
    char *argv[] = {(char *)bin,    "ttft", "--url",        url, "--out", out, "--warm-runs", "2",
                    "--prompt-len", "32",   "--max-tokens", "4", NULL};
    CHECK_EQ_INT(run_logged(argv, log), 0);
    check_common_outputs("url");
    path_in(p, sizeof p, "url", "ttft_requests.jsonl");
    CHECK_EQ_INT(count_lines(p), 1 + 2);
    /* the server we started is still running (url mode never stops it) */
    CHECK(kill(srv, 0) == 0);
    path_in(p, sizeof p, "url", "ttft.json");
    struct json *j = load_json(p);
    CHECK(j != NULL);
    if (j) {
        const struct json *runs = requests_of(j, 0);
        CHECK_EQ_INT(json_len(runs), 3);
        for (size_t i = 0; i < json_len(runs); i++)
            CHECK(strcmp(str(json_at(runs, i), "kind"), "cold") != 0);
        int url_mode = 0;
        CHECK(json_bool(json_get(json_get(j, "config"), "url_mode"), &url_mode) == 0 && url_mode);
        CHECK(json_type_of(json_get(repeat_at(j, 0), "launch_to_ready_ms")) == JSON_TYPE_NULL);
        json_free(j);
        check_schema(p);
    }
    path_in(p, sizeof p, "url", "first_token_latency.md");
    char *md = slurp_or_null(p);
    CHECK(md && strstr(md, "Warm-only run"));
    free(md);
    kill(srv, SIGTERM);
    int st;
    waitpid(srv, &st, 0);
}

static void test_server_dies(void)
{
    int port = free_port();
    char ps[16], out[512], log[512], script[512], cmd[1024], p[768];
    snprintf(ps, sizeof ps, "%d", port);
    snprintf(out, sizeof out, "%s/die", dir);
    snprintf(log, sizeof log, "%s/die.log", dir);
    snprintf(script, sizeof script, "%s/die.sh", dir);
    /* starts the real server, then kills it once the cold request and warm_1 are recorded */
    FILE *f = fopen(script, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f,
            "#!/bin/sh\n"
            "\"%s\" serve --model \"%s\" --port %d --kv-cache-memory-bytes 8MiB --threads 1 "
            "--max-num-seqs 4 --max-model-len 512 --enforce-eager &\n"
            "pid=$!\n"
            "j=\"%s/ttft_requests.jsonl\"\n"
            "while :; do\n"
            "  n=0; [ -f \"$j\" ] && n=$(wc -l < \"$j\")\n"
            "  [ \"$n\" -ge 2 ] && break\n"
            "  sleep 0.05\n"
            "done\n"
            "kill -9 $pid\n"
            "wait $pid\n"
            "exit 3\n",
            bin, model, port, out);
    fclose(f);
    snprintf(cmd, sizeof cmd, "sh %s", script);
    char *argv[] = {(char *)bin,    "ttft", "--serve-cmd",  cmd,  "--port",     ps,
                    "--out",        out,    "--warm-runs",  "50", "--idle-gap", "0.2",
                    "--prompt-len", "32",   "--max-tokens", "4",  NULL};
    int rc = run_logged(argv, log);
    CHECK_MSG(rc == 1, "exit %d", rc);
    CHECK(none_left());
    check_common_outputs("die");
    path_in(p, sizeof p, "die", "ttft_requests.jsonl");
    int n = count_lines(p);
    CHECK_MSG(n >= 2 && n < 52, "%d lines", n);
    path_in(p, sizeof p, "die", "ttft.json");
    struct json *j = load_json(p);
    CHECK(j != NULL);
    if (j) {
        CHECK_EQ_STR(str(j, "status"), "failed");
        check_schema(p);
        CHECK_EQ_STR(str(repeat_at(j, 0), "exit"), "exit status 3");
        const struct json *runs = requests_of(j, 0);
        CHECK((int)json_len(runs) >= 2);
        CHECK_EQ_STR(str(json_at(runs, 0), "kind"), "cold");
        CHECK(num(json_at(runs, 0), "ttft_ms") > 0);
        json_free(j);
    }
    path_in(p, sizeof p, "die", "first_token_latency.md");
    char *md = slurp_or_null(p);
    CHECK(md && strstr(md, "FAILED") && strstr(md, "exited on its own (exit status 3)"));
    free(md);
}

/* A server whose log matches no known dialect: a --serve-cmd script prints its own progress lines
 * (one of them three times), then execs the embedded server with its output silenced. The report
 * shows the log timeline, with arrival times from the live parse (a re-read of the finished file
 * has none). */
static void test_unknown_dialect(void)
{
    int port = free_port();
    char ps[16], out[512], log[512], script[512], cmd[1024], p[768];
    snprintf(ps, sizeof ps, "%d", port);
    snprintf(out, sizeof out, "%s/unk", dir);
    snprintf(log, sizeof log, "%s/unk.log", dir);
    snprintf(script, sizeof script, "%s/unk.sh", dir);
    FILE *f = fopen(script, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f,
            "#!/bin/sh\n"
            "echo 'acme-infer: reading shard 1 of 3'\n"
            "sleep 0.3\n"
            "echo 'acme-infer: reading shard 2 of 3'\n"
            "sleep 0.3\n"
            "echo 'acme-infer: reading shard 3 of 3'\n"
            "sleep 0.3\n"
            "echo 'acme-infer: serving'\n"
            "exec \"%s\" serve --model \"%s\" --port %d --kv-cache-memory-bytes 8MiB --threads 1 "
            "--max-num-seqs 4 --max-model-len 512 --enforce-eager >/dev/null 2>&1\n",
            bin, model, port);
    fclose(f);
    snprintf(cmd, sizeof cmd, "sh %s", script);
    char *argv[] = {(char *)bin,   "ttft", "--serve-cmd",  cmd,  "--port",       ps,  "--out", out,
                    "--warm-runs", "1",    "--prompt-len", "32", "--max-tokens", "4", NULL};
    int rc = run_logged(argv, log);
    CHECK_MSG(rc == 0, "exit %d", rc);
    CHECK(none_left());
    path_in(p, sizeof p, "unk", "ttft.json");
    struct json *j = load_json(p);
    CHECK(j != NULL);
    if (j) {
        check_schema(p);
        const struct json *rr = repeat_at(j, 0);
        CHECK_EQ_STR(str(rr, "log_dialect"), "unknown");
        const struct json *tl = json_get(rr, "log_timeline");
        CHECK_MSG(json_len(tl) == 2, "%zu distinct lines", json_len(tl));
        const struct json *shard = json_at(tl, 0), *serving = json_at(tl, 1);
        CHECK(strstr(str(shard, "line"), "reading shard") != NULL);
        CHECK_EQ_INT((int)num(shard, "n_seen"), 3);
        /* arrival times: the shards came over 0.6 s, "serving" after them */
        double t0 = num(shard, "t_first_s"), t1 = num(shard, "t_last_s");
        CHECK_MSG(t0 >= 0 && t1 - t0 >= 0.4, "shard lines at %g .. %g s", t0, t1);
        CHECK(num(serving, "t_first_s") >= t1);
        json_free(j);
    }
    path_in(p, sizeof p, "unk", "first_token_latency.md");
    char *md = slurp_or_null(p);
    CHECK(md && strstr(md, "No known log wording matched") && strstr(md, "reading shard"));
    free(md);
}

static void test_sigint(void)
{
    char out[512], log[512], p[768];
    snprintf(out, sizeof out, "%s/int", dir);
    snprintf(log, sizeof log, "%s/int.log", dir);
    char *argv[] = {
        (char *)bin,  "ttft", "--model",      model, "--out",        out, "--warm-runs", "100",
        "--idle-gap", "0.2",  "--prompt-len", "32",  "--max-tokens", "4", "--",          FAST_FLAGS,
        NULL};
    pid_t pid = spawn_logged(argv, log);
    CHECK(pid > 0);
    path_in(p, sizeof p, "int", "ttft_requests.jsonl");
    mono_ns deadline = clock_now_ns() + 120ull * 1000000000ull;
    while (clock_now_ns() < deadline && count_lines(p) < 3)
        usleep(50000);
    CHECK(count_lines(p) >= 3);
    kill(pid, SIGINT);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 130, "status %d", st);
    CHECK(none_left());
    check_common_outputs("int");
    int n = count_lines(p);
    CHECK_MSG(n >= 3 && n < 102, "%d lines", n);
    path_in(p, sizeof p, "int", "ttft.json");
    struct json *j = load_json(p);
    CHECK(j != NULL);
    if (j) {
        CHECK_EQ_STR(str(j, "status"), "interrupted");
        json_free(j);
        check_schema(p);
    }
}

/* The spread rule and the matching of an outlier against synthetic telemetry samples. */
static void test_outlier_match(void)
{
    double v[] = {10, 11, 10.5, 12, 40};
    double thr = ttft_outlier_threshold_ms(v, 5);
    CHECK_MSG(thr > 12 && thr < 40, "threshold %g", thr);
    double tight[] = {10, 10.1, 10.2, 10.3, 10.9}; /* IQR fence 10.6, but 1.5x median is 15.3 */
    CHECK(ttft_outlier_threshold_ms(tight, 5) > 15);
    CHECK(isnan(ttft_outlier_threshold_ms(v, 2)));
    struct telemetry_sample s[10];
    memset(s, 0, sizeof s);
    for (int i = 0; i < 10; i++) {
        s[i].t_ns = (mono_ns)(i + 1) * 100000000ull; /* every 100 ms */
        s[i].cpu_pct = i >= 5 && i <= 6 ? 190 : 50;
        s[i].n_procs = 2;
        s[i].read_bytes = 1000;
        s[i].majflt = i >= 6 ? 7 : 4;
        s[i].gpu_util_pct = NAN;
    }
    struct ttft_outlier o = {.run = 3, .ttft_ms = 40, .median_ms = 10.5, .cpu_baseline_pct = 50,
                             .gpu_util_baseline_pct = NAN};
    ttft_outlier_match(s, 10, 500000000ull, 700000000ull, 50000000ull, &o);
    CHECK_MSG(strstr(o.coincided, "coincided with server CPU 190%") != NULL, "%s", o.coincided);
    CHECK_MSG(strstr(o.coincided, "3 major page fault") != NULL, "%s", o.coincided);
    CHECK_EQ_INT((int)o.read_bytes_delta, 0);
    /* a quiet window: nothing coincided */
    struct ttft_outlier q = {.run = 1, .ttft_ms = 40, .median_ms = 10.5, .cpu_baseline_pct = 50,
                             .gpu_util_baseline_pct = NAN};
    ttft_outlier_match(s, 10, 100000000ull, 300000000ull, 50000000ull, &q);
    CHECK_MSG(strstr(q.coincided, "nothing coincided") != NULL, "%s", q.coincided);
    /* no sample in the window */
    struct ttft_outlier e = {.cpu_baseline_pct = 50, .gpu_util_baseline_pct = NAN};
    ttft_outlier_match(s, 10, 5000000000ull, 5001000000ull, 1000000ull, &e);
    CHECK_MSG(strstr(e.coincided, "no telemetry sample") != NULL, "%s", e.coincided);
}

/* One ttft run of a fresh model into sub; its ttft.json's launch 1 storage object and its report
 * text. Returns the parsed JSON (caller frees) and *md (caller frees). */
static struct json *storage_run(const char *mdl, const char *sub, int cold, char **md)
{
    char out[512], log[512], p[512];
    path_in(out, sizeof out, sub, "");
    path_in(log, sizeof log, sub, "log");
    mkdir(out, 0755);
    char *av_cold[] = {(char *)bin, "ttft", "--model", (char *)mdl, "--warm-runs", "3", "--out",
                       out, "--cold-storage", "--", FAST_FLAGS, NULL};
    char *av_warm[] = {(char *)bin, "ttft", "--model", (char *)mdl, "--warm-runs", "3", "--out",
                       out, "--", FAST_FLAGS, NULL};
    CHECK_EQ_INT(run_logged(cold ? av_cold : av_warm, log), 0);
    path_in(p, sizeof p, sub, "ttft.json");
    check_schema(p);
    path_in(p, sizeof p, sub, "first_token_latency.md");
    *md = slurp_or_null(p);
    path_in(p, sizeof p, sub, "ttft.json");
    return load_json(p);
}

/* --cold-storage on a freshly generated model reads the weights from storage and says so; a run
 * right after finds them resident and says that; neither says the page cache "grew by only". */
static void test_cold_storage(void)
{
    char mdl[512], log[512];
    snprintf(mdl, sizeof mdl, "%s/fresh.gguf", dir);
    snprintf(log, sizeof log, "%s/fresh_init.log", dir);
    char *init[] = {(char *)bin, "model", "init", "--preset", "tiny", "-o", mdl, NULL};
    CHECK_EQ_INT(run_logged(init, log), 0);
    char *md_cold = NULL, *md_warm = NULL;
    struct json *jc = storage_run(mdl, "cold_storage", 1, &md_cold);
    const struct json *st = json_get(repeat_at(jc, 0), "storage");
    int effective = 0;
    if (!jc || json_bool(json_get(st, "cold_storage_effective"), &effective) != 0 || !effective) {
        fprintf(stderr, "  SKIP test_cold_storage: eviction did not take effect here (%s)\n",
                str(st, "cold_storage_error"));
        json_free(jc);
        free(md_cold);
        return;
    }
    double model_b = num(st, "model_bytes");
    CHECK_MSG(num(st, "model_resident_launch_bytes") <= 0.05 * model_b, "resident at launch %g of %g",
              num(st, "model_resident_launch_bytes"), model_b);
    CHECK(num(st, "read_bytes_ready") > 0 || num(st, "majflt_ready") > 0);
    CHECK_EQ_STR(str(st, "verdict"), "storage_cold");
    CHECK(md_cold && strstr(md_cold, "Storage-cold start") && strstr(md_cold, "storage-cold"));
    struct json *jw = storage_run(mdl, "warm_cache", 0, &md_warm);
    const struct json *sw = json_get(repeat_at(jw, 0), "storage");
    CHECK_EQ_STR(str(sw, "verdict"), "warm_cache");
    CHECK(num(sw, "model_resident_launch_bytes") >= 0.95 * model_b);
    CHECK(md_warm && strstr(md_warm, "The weights were already resident"));
    CHECK(md_warm && !strstr(md_warm, "Storage-cold start"));
    CHECK(md_cold && !strstr(md_cold, "already resident"));
    CHECK(md_cold && !strstr(md_cold, "grew by only") && md_warm && !strstr(md_warm, "grew by"));
    json_free(jc);
    json_free(jw);
    free(md_cold);
    free(md_warm);
}

int main(void)
{
    bin = getenv("SLMPROBE_BIN");
    if (!bin || !*bin)
        bin = "./slmprobe";
    snprintf(dir, sizeof dir, "/tmp/test_ttft_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_model_init);
    TEST_RUN(test_bad_options);
    TEST_RUN(test_outlier_match);
    TEST_RUN(test_end_to_end);
    TEST_RUN(test_cold_storage);
    TEST_RUN(test_repeat);
    TEST_RUN(test_log_option);
    TEST_RUN(test_url_mode);
    TEST_RUN(test_server_dies);
    TEST_RUN(test_unknown_dialect);
    TEST_RUN(test_sigint);
    harness_cleanup(dir, test_n_fail);
    return TEST_DONE();
}
