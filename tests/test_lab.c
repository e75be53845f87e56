/* test_lab: `slmprobe lab`. Pieces first: the tier list parser, key-path reads, the page
 * composer (headings demoted, ids prefixed, a missing tier shown as not run), the presets from
 * synthetic batch/kv results (and what happens without them), DAY.md's sections with numbers in
 * them. Then end to end on the real embedded server with a tiny model: `lab --quick` writes every
 * artifact of the seed's set, DAY.md has every template section with numbers, lab.json and the
 * tier results validate against docs/schema.md, report.html has every tier; a run interrupted
 * mid-tier and resumed finishes with the same artifact set, reusing the finished tiers. */
#include <math.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <string.h>

#include "lab/lab.h"
#include "lab/lab_json.h"
#include "lab/lab_page.h"
#include "schema_check.h"
#include "serve_harness.h"
#include "test.h"

static void test_tiers_parse(void)
{
    struct lab_opts o;
    char err[256];
    lab_opts_defaults(&o);
    CHECK_EQ_INT(lab_tiers_parse("1,3b", &o, err, sizeof err), 0);
    CHECK(o.tiers[LAB_TIER_TTFT] && !o.tiers[LAB_TIER_PREFIX] && !o.tiers[LAB_TIER_KV] &&
          o.tiers[LAB_TIER_BATCH]);
    CHECK_EQ_INT(lab_tiers_parse("kv,prefix", &o, err, sizeof err), 0);
    CHECK(!o.tiers[LAB_TIER_TTFT] && o.tiers[LAB_TIER_PREFIX] && o.tiers[LAB_TIER_KV]);
    CHECK(lab_tiers_parse("1,4", &o, err, sizeof err) != 0);
    CHECK_MSG(strstr(err, "'4'") != NULL, "%s", err);
    CHECK(o.tiers[LAB_TIER_KV]); /* untouched on error */
    CHECK(lab_tiers_parse("", &o, err, sizeof err) != 0);
}

static void test_jpath(void)
{
    const char *t = "{\"a\":{\"b\":[{\"c\":1.5},{\"c\":null,\"s\":\"x\"}]},\"ok\":true}";
    char err[128];
    struct json *j = json_parse(t, strlen(t), err, sizeof err);
    CHECK_NEAR(lab_jnum(j, "a.b[0].c"), 1.5, 0);
    CHECK(isnan(lab_jnum(j, "a.b[1].c")));
    CHECK(isnan(lab_jnum(j, "a.b[2].c")));
    CHECK_EQ_STR(lab_jstr(j, "a.b[1].s", "d"), "x");
    CHECK_EQ_STR(lab_jstr(j, "a.x", "d"), "d");
    CHECK_EQ_INT((int)lab_jlen(j, "a.b"), 2);
    CHECK_EQ_INT(lab_jbool(j, "ok", 0), 1);
    CHECK(lab_jget(j, "a.b[x]") == NULL);
    json_free(j);
}

static void test_page(void)
{
    const char *html = "<html><head><style>p{x:1}</style></head><body>\n<h1>T</h1><section "
                       "id=\"runs\"><h2>Runs</h2><a href=\"#runs\">r</a></section></body></html>";
    struct buf b;
    buf_init(&b, 256, 1 << 20);
    CHECK_EQ_INT(lab_page_body(html, strlen(html), "ttft", &b), 0);
    CHECK(strstr(b.data, "<h2>T</h2>") && strstr(b.data, "<h3>Runs</h3>"));
    CHECK(strstr(b.data, "id=\"ttft-runs\"") && strstr(b.data, "href=\"#ttft-runs\""));
    CHECK(strstr(b.data, "<body") == NULL && strstr(b.data, "</body>") == NULL);
    CHECK(lab_page_body("no body here", 12, "x", &b) != 0);
    size_t n = 0;
    const char *st = lab_page_style(html, strlen(html), &n);
    CHECK(st && n == 6 && !strncmp(st, "p{x:1}", 6));
    char path[600], out[600], err[256];
    snprintf(path, sizeof path, "%s/t1.html", g_dir);
    snprintf(out, sizeof out, "%s/page.html", g_dir);
    file_write_all(path, html, strlen(html));
    struct lab_page_part parts[] = {{"ttft", "Tier 1", path}, {"kv", "Tier 3A", "/nonexistent"}};
    CHECK_EQ_INT(lab_page_write("Day", "<p>sum</p>", parts, 2, out, err, sizeof err), LAB_PAGE_OK);
    char *page = slurp(out);
    CHECK(strstr(page, "<style>p{x:1}") && strstr(page, "<p>sum</p>"));
    CHECK(strstr(page, "href=\"#tier-kv\"") && strstr(page, "Not run: /nonexistent"));
    CHECK(strstr(page, "id=\"ttft-runs\""));
    free(page);
    buf_free(&b);
}

static const char *batch_json =
    "{\"schema\":\"slmprobe.batch/1\",\"config\":{\"input_len_tokens\":128,\"num_requests\":8},"
    "\"environment\":{\"max_model_len_tokens\":2048},\"outcome\":{\"status\":\"ok\"},"
    "\"seqconc\":{\"sequential\":{\"tok_s\":20},\"concurrent\":{\"tok_s\":80},\"speedup\":4},"
    "\"sweep\":[{\"concurrency\":1,\"tok_s\":20,\"e2e_ms\":{\"p95\":900}},"
    "{\"concurrency\":8,\"tok_s\":90,\"e2e_ms\":{\"p95\":2500}}],"
    "\"knee\":{\"concurrency\":8,\"reason\":\"gain below 10%\",\"tok_s\":90,\"p95_e2e_s\":2.5},"
    "\"sweet_spot\":{\"concurrency\":4,\"tok_s\":70,\"p95_e2e_s\":1.2},"
    "\"peak\":{\"concurrency\":8,\"tok_s\":90,\"p95_e2e_s\":2.5},\"slo_limit\":null,"
    "\"knee_summary\":\"throughput stops scaling at 8\"}";
static const char *kv_json =
    "{\"schema\":\"slmprobe.kv/1\",\"regime\":\"pre-allocating\",\"mem_source\":\"rss\","
    "\"failed\":false,\"interrupted\":false,\"concurrency_wanted\":8,\"safe_max_model_len\":1024,"
    "\"pick_latency_max_model_len\":1024,\"pick_throughput_max_model_len\":2048,"
    "\"regime_why\":\"memory flat\",\"rows\":[{\"max_model_len\":512,\"server_rss_mb\":100,"
    "\"kv_capacity_tokens\":8192,\"max_concurrency\":16,\"status\":\"ok\"}]}";

static void test_presets_and_day(void)
{
    struct lab_inputs in = {{0}};
    char err[128];
    struct lab_preset p[2];
    lab_presets_derive(&in, 8, &p[0], &p[1]);
    CHECK(!p[0].usable && !p[1].usable); /* no data: not derived, and says so */
    CHECK(strstr(p[0].evidence[0], "Tier 3B") != NULL);
    in.tier[LAB_TIER_BATCH] = json_parse(batch_json, strlen(batch_json), err, sizeof err);
    in.tier[LAB_TIER_KV] = json_parse(kv_json, strlen(kv_json), err, sizeof err);
    CHECK(in.tier[LAB_TIER_BATCH] && in.tier[LAB_TIER_KV]);
    lab_presets_derive(&in, 8, &p[0], &p[1]);
    CHECK(p[0].usable && p[1].usable);
    CHECK_EQ_INT(p[0].max_num_seqs, 4); /* the sweet spot */
    CHECK_EQ_INT(p[1].max_num_seqs, 8); /* the knee */
    CHECK_EQ_INT(p[0].max_model_len, 1024);
    CHECK_EQ_INT(p[1].max_model_len, 2048);
    CHECK(p[0].max_num_batched_tokens < p[1].max_num_batched_tokens);
    CHECK(strstr(p[1].evidence[0], "knee") != NULL);

    struct session s;
    memset(&s, 0, sizeof s);
    snprintf(s.command_line, sizeof s.command_line, "slmprobe lab --quick");
    struct lab_result r;
    memset(&r, 0, sizeof r);
    r.state[LAB_TIER_KV] = r.state[LAB_TIER_BATCH] = LAB_TIER_STATE_OK;
    const char *arts[] = {"DAY.md", "batch.json"};
    struct buf b;
    buf_init(&b, 4096, 1 << 20);
    lab_day_render(&in, &s, &r, p, 2, arts, 2, &b);
    const char *sections[] = {"## Environment",
                              "## Commands Run",
                              "## Key Numbers",
                              "## Artifacts Created/Updated",
                              "## Observations / Surprises",
                              "## The cold-start equation",
                              "## How I'd explain TTFT to an SRE"};
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
        CHECK_MSG(strstr(b.data, sections[i]) != NULL, "missing %s", sections[i]);
    CHECK(strstr(b.data, "20.0 one at a time vs 80.0") != NULL);
    CHECK(strstr(b.data, "| 512 | 100.0 | 8192 | 16.00x | ok |") != NULL);
    CHECK(strstr(b.data, "not measured (Tier 1 was not run)") != NULL);
    CHECK(strstr(b.data, "max-num-seqs 4") != NULL);
    buf_free(&b);
    lab_inputs_free(&in);
}

static const char *const seed_artifacts[] = {
    "first_token_latency.md", "prefix_prompts.jsonl", "prefix_caching_results.md",
    "kv_cache_scaling.csv", "kv_cache_scaling_notes.md", "batching_benchmark.md",
    "concurrency_sweep.csv", "serve_slm.sh", "serve_slm_no_prefix_cache.sh",
    "serve_slm_prefix_cache.sh", "kv_scaling.sh", "lab.json", "DAY.md", "report.html",
    "first_token_latency.html", "prefix_caching_results.html", "kv_cache_scaling_notes.html",
    "batching_benchmark.html", "ttft.json", "prefix.json", "kv.json", "batch.json",
    /* Tier 1 and Tier 3B launch alike: each keeps its own log */
    "server.log", "server_batch.log"};

/* Starts `slmprobe lab --quick` on the tiny model into out; returns the pid (output to log). */
static pid_t lab_start(const char *out, const char *log, int resume)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        char *argv[] = {(char *)bin_path(),
                        "lab",
                        "--quick",
                        "--model",
                        g_model,
                        "--out",
                        (char *)out,
                        resume ? "--resume" : "--quick",
                        "--",
                        "--kv-cache-memory-bytes",
                        "16MiB",
                        "--warmup",
                        "none",
                        "--threads",
                        "1",
                        NULL};
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int wait_rc(pid_t pid, double timeout_s)
{
    double t0 = now_s();
    int st;
    while (now_s() - t0 < timeout_s) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        sleep_ms(100);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static int exists(const char *dir, const char *name)
{
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* Headless Chromium: the page loads with no console error, renders every chart, and the
 * screenshot is not blank. */
/* The page does not scroll sideways in a 1280-pixel window: a copy of it with a script (the
 * report itself has none) that writes the document's width into the DOM. A wide table scrolls in
 * its own box instead. */
static void check_no_page_scroll(const char *br, const char *flags, const char *html)
{
    char copy[600], dom[600], cmd[4000];
    snprintf(copy, sizeof copy, "%s/report_width.html", g_dir);
    snprintf(dom, sizeof dom, "%s/report_width.dom", g_dir);
    char *page = slurp(html);
    FILE *f = fopen(copy, "w");
    CHECK(page != NULL && f != NULL);
    if (!page || !f) {
        free(page);
        if (f)
            fclose(f);
        return;
    }
    fprintf(f,
            "%s<script>var d=document.documentElement,p=document.createElement('pre');"
            "p.id='width';p.textContent='scroll '+d.scrollWidth+' client '+d.clientWidth;"
            "document.body.appendChild(p);</script>\n",
            page);
    fclose(f);
    free(page);
    snprintf(cmd, sizeof cmd,
             "timeout 120 %s %s --window-size=1280,1000 --dump-dom file://%s >%s 2>/dev/null", br,
             flags, copy, dom);
    CHECK(system(cmd) == 0);
    char *d = slurp(dom);
    const char *w = d ? strstr(d, "<pre id=\"width\">scroll ") : NULL;
    int scroll = -1, client = -1;
    CHECK_MSG(w && sscanf(w, "<pre id=\"width\">scroll %d client %d", &scroll, &client) == 2,
              "no width in %s", dom);
    CHECK_MSG(client > 0 && scroll <= client, "the page scrolls sideways: %d px wide in %d", scroll,
              client);
    free(d);
}

static void check_in_chromium(const char *html)
{
    const char *browsers[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser", NULL};
    const char *br = NULL;
    for (int i = 0; browsers[i]; i++)
        if (access(browsers[i], X_OK) == 0)
            br = browsers[i];
    CHECK_MSG(br != NULL, "no chromium (scripts/deps.sh installs Debian's chromium)");
    if (!br)
        return;
    char png[600], dom[600], errlog[600], url[1300], cmd[8000];
    snprintf(png, sizeof png, "%s/report.png", g_dir);
    snprintf(dom, sizeof dom, "%s/report.dom", g_dir);
    snprintf(errlog, sizeof errlog, "%s/chromium.log", g_dir);
    snprintf(url, sizeof url, "file://%s", html);
    /* every host unresolvable: a page that tried to fetch anything would log a failed load */
    const char *flags = "--headless --no-sandbox --disable-gpu --hide-scrollbars "
                        "--enable-logging=stderr --v=0 --host-resolver-rules='MAP * ~NOTFOUND' "
                        "--user-data-dir=%s/chromium-profile";
    char f[1000];
    snprintf(f, sizeof f, flags, g_dir);
    snprintf(cmd, sizeof cmd,
             "timeout 120 %s %s --window-size=1280,6000 --screenshot=%s %s "
             ">/dev/null 2>%s && timeout 120 %s %s --dump-dom %s >%s 2>>%s",
             br, f, png, url, errlog, br, f, url, dom, errlog);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "chromium failed (%d), see %s", rc, errlog);
    char *log = slurp(errlog);
    CHECK_MSG(strstr(log, "CONSOLE") == NULL && strstr(log, "Uncaught") == NULL &&
                  strstr(log, "ERR_NAME_NOT_RESOLVED") == NULL,
              "console errors or network fetches: %s", errlog);
    free(log);
    char *d = slurp(dom);
    int n_svg = 0, n_points = 0;
    for (const char *q = d; (q = strstr(q, "<svg")); q++)
        n_svg++;
    for (const char *q = d; (q = strstr(q, "<circle")); q++)
        n_points++;
    CHECK_MSG(n_svg >= 6, "only %d charts rendered", n_svg);
    CHECK_MSG(n_points >= 10, "only %d data points drawn", n_points);
    const char *tiers[] = {"id=\"tier-ttft\"", "id=\"tier-prefix\"", "id=\"tier-kv\"",
                           "id=\"tier-batch\""};
    for (int i = 0; i < 4; i++)
        CHECK_MSG(strstr(d, tiers[i]) != NULL, "%s missing in the rendered page", tiers[i]);
    CHECK(strstr(d, "Not run:") == NULL);
    free(d);
    struct stat st;
    CHECK_MSG(stat(png, &st) == 0 && st.st_size > 50000, "screenshot missing or blank (%lld bytes)",
              (long long)(stat(png, &st) == 0 ? st.st_size : 0));
    check_no_page_scroll(br, f, html);
}

/* Interrupted in the middle of Tier 2, then resumed: the finished tier is reused, the rest run,
 * and the artifact set is the seed's whole set. */
static void test_lab_interrupt_resume(void)
{
    char out[600], log1[600], log2[600], p[1200];
    snprintf(out, sizeof out, "%s/day", g_dir);
    snprintf(log1, sizeof log1, "%s/lab1.log", g_dir);
    snprintf(log2, sizeof log2, "%s/lab2.log", g_dir);
    pid_t pid = lab_start(out, log1, 0);
    /* Tier 1 done, Tier 2 running: its prompt set is written at the start of the tier */
    double t0 = now_s();
    snprintf(p, sizeof p, "%s/ttft.json", out);
    while (now_s() - t0 < 600 && (access(p, F_OK) != 0 || !exists(out, "prefix_requests.jsonl")))
        sleep_ms(100);
    sleep_ms(1500);
    kill(pid, SIGINT);
    int rc = wait_rc(pid, 120);
    CHECK_MSG(rc == 130, "interrupted lab exit %d (see %s)", rc, log1);
    CHECK(exists(out, "ttft.json") && exists(out, "DAY.md") && exists(out, "lab.json"));
    char err[256];
    struct json *j = lab_json_load(strcat(strcpy(p, out), "/lab.json"), err, sizeof err);
    CHECK_MSG(j != NULL, "%s", err);
    CHECK_EQ_STR(lab_jstr(j, "status", ""), "interrupted");
    CHECK_EQ_STR(lab_jstr(j, "tiers.ttft.state", ""), "ok");
    CHECK_EQ_STR(lab_jstr(j, "tiers.prefix.state", ""), "interrupted");
    json_free(j);

    rc = wait_rc(lab_start(out, log2, 1), 900);
    CHECK_MSG(rc == 0, "resumed lab exit %d (see %s)", rc, log2);
    for (size_t i = 0; i < sizeof seed_artifacts / sizeof seed_artifacts[0]; i++)
        CHECK_MSG(exists(out, seed_artifacts[i]), "%s missing", seed_artifacts[i]);
    j = lab_json_load(strcat(strcpy(p, out), "/lab.json"), err, sizeof err);
    CHECK_EQ_STR(lab_jstr(j, "status", ""), "ok");
    CHECK_EQ_STR(lab_jstr(j, "tiers.ttft.state", ""), "reused");
    CHECK_EQ_STR(lab_jstr(j, "tiers.prefix.state", ""), "ok");
    CHECK_EQ_STR(lab_jstr(j, "tiers.batch.result.schema", ""), "slmprobe.batch/1");
    json_free(j);
    const struct {
        const char *id, *file;
    } schemas[] = {{"slmprobe.lab/1", "lab.json"},
                   {"slmprobe.ttft/1", "ttft.json"},
                   {"slmprobe.prefix/1", "prefix.json"},
                   {"slmprobe.kv/1", "kv.json"},
                   {"slmprobe.batch/1", "batch.json"}};
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", out, schemas[i].file);
        CHECK_MSG(schema_validate_file(schemas[i].id, p) == 0, "%s", schemas[i].file);
    }
    snprintf(p, sizeof p, "%s/DAY.md", out);
    char *day = slurp(p);
    const char *must[] = {"## Environment",
                          "## Commands Run",
                          "## Key Numbers",
                          "## Artifacts Created/Updated",
                          "## Observations / Surprises",
                          "## The cold-start equation, measured",
                          "## How I'd explain TTFT to an SRE",
                          "ms cold",
                          "tok/s",
                          "| max-model-len |",
                          "TTFT_cold (restart to first token) = "};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        CHECK_MSG(strstr(day, must[i]) != NULL, "DAY.md lacks '%s'", must[i]);
    CHECK_MSG(strstr(day, "n/a ms") == NULL && strstr(day, "nan") == NULL, "DAY.md: %s", p);
    free(day);
    snprintf(p, sizeof p, "%s/report.html", out);
    check_in_chromium(p);
}

int main(void)
{
    if (harness_setup("lab") != 0)
        return 1;
    TEST_RUN(test_tiers_parse);
    TEST_RUN(test_jpath);
    TEST_RUN(test_page);
    TEST_RUN(test_presets_and_day);
    TEST_RUN(test_lab_interrupt_resume);
    return TEST_DONE();
}
