/* test_check: `slmprobe check`. The SLO grammar (good specs, and bad ones whose error names the
 * bad part), the judgement, the three renderings (the Prometheus text is read back with the
 * project's own /metrics parser, the JSON with util/json.h), and end to end against the real
 * embedded server: exit 0 with bounds above what it measures, 1 with a bound below, 2 for a bad
 * SLO, 1 with the reason when nothing listens at --url, and --prom/--json files written. */
#include <math.h>
#include <string.h>

#include "check/check.h"
#include "schema_check.h"
#include "serve_harness.h"
#include "server/promscrape.h"
#include "test.h"

static void test_slo_parse(void)
{
    struct check_slo s;
    char err[256];
    CHECK_EQ_INT(check_slo_parse("ttft_p95:500ms,tpot_p95:50ms,error_rate:1%", &s, err, sizeof err),
                 CHECK_OK);
    CHECK_EQ_INT(s.n, 3);
    CHECK_EQ_STR(s.b[0].name, "ttft_p95");
    CHECK_NEAR(s.b[0].limit, 500, 1e-9);
    CHECK_EQ_INT(s.b[1].metric, CHECK_METRIC_TPOT);
    CHECK_NEAR(s.b[2].limit, 0.01, 1e-12);
    CHECK_EQ_INT(check_slo_parse("e2e:2s,itl_max:200us,ttft_p99:1s,e2e_p95:3s", &s, err, sizeof err),
                 CHECK_OK);
    CHECK_EQ_INT(s.n, 3); /* e2e and e2e_p95 are the same bound: the last wins */
    CHECK_EQ_STR(s.b[0].name, "e2e_p95");
    CHECK_NEAR(s.b[0].limit, 3000, 1e-9);
    CHECK_NEAR(s.b[1].limit, 0.2, 1e-12);
    CHECK_EQ_INT(check_slo_parse("error_rate:0.05", &s, err, sizeof err), CHECK_OK);
    CHECK_NEAR(s.b[0].limit, 0.05, 1e-12);

    struct {
        const char *spec, *needle;
    } bad[] = {{"ttft_p95:500", "'500'"},          {"ttfb_p95:1s", "ttfb_p95"},
               {"ttft_p42:1s", "ttft_p42"},        {"error_rate:150%", "error_rate:150%"},
               {"ttft_p95", "NAME:VALUE"},         {"ttft_p95:1s,,tpot:1ms", "empty item"},
               {"ttft_p95:-5ms", "-5ms"},          {"", "empty"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct check_slo keep = {.n = 7};
        err[0] = 0;
        CHECK(check_slo_parse(bad[i].spec, &keep, err, sizeof err) != CHECK_OK);
        CHECK_MSG(strstr(err, bad[i].needle) != NULL, "'%s': %s", bad[i].spec, err);
        CHECK_EQ_INT(keep.n, 7); /* untouched */
    }
}

static void fill_result(struct check_result *r)
{
    memset(r, 0, sizeof *r);
    hist_init(&r->ttft_ms);
    hist_init(&r->tpot_ms);
    hist_init(&r->itl_ms);
    hist_init(&r->e2e_ms);
    for (int i = 1; i <= 10; i++) {
        hist_add(&r->ttft_ms, 10.0 * i); /* 10..100 ms */
        hist_add(&r->e2e_ms, 100.0 * i);
    }
    r->measured = 1;
    r->n_sent = 10;
    r->n_ok = 9;
    r->n_failed = 1;
    r->n_err_class[REQ_ERROR_HTTP_5XX] = 1;
    snprintf(r->target, sizeof r->target, "http://127.0.0.1:1/\"x\"");
}

static void test_judge_and_render(void)
{
    struct check_slo s;
    char err[256];
    CHECK_EQ_INT(check_slo_parse("ttft_max:150ms,ttft_p50:20ms,error_rate:20%,tpot:1s", &s, err,
                                 sizeof err),
                 CHECK_OK);
    struct check_result *r = xcalloc(1, sizeof *r);
    fill_result(r);
    check_judge(&s, r);
    CHECK_EQ_INT(r->n_verdicts, 4);
    CHECK_EQ_INT(r->v[0].ok, 1);               /* max 100 ms <= 150 */
    CHECK_EQ_INT(r->v[1].ok, 0);               /* median ~55 ms > 20 */
    CHECK(r->v[1].measured > 50 && r->v[1].measured < 60);
    CHECK_EQ_INT(r->v[2].ok, 1);               /* 10% <= 20% */
    CHECK_NEAR(r->v[2].measured, 0.1, 1e-12);
    CHECK_EQ_INT(r->v[3].ok, 0);               /* no TPOT measured: fails, never passes silently */
    CHECK(isnan(r->v[3].measured));
    CHECK_EQ_INT(r->all_ok, 0);

    struct buf b;
    buf_init(&b, 1024, 1 << 20);
    check_render_line(r, &b);
    CHECK(!strncmp(b.data, "FAIL: 9/10", 10));
    CHECK(strstr(b.data, "ttft_p50") && strstr(b.data, "> 20.0 ms"));
    CHECK(strstr(b.data, "tpot_p95 not measured"));

    buf_reset(&b);
    check_render_prom(r, &b);
    struct prom_set ps = {0};
    CHECK_EQ_INT(prom_parse(b.data, b.len, &ps, err, sizeof err), PROM_OK);
    double v = -1;
    const char *m_ok[] = {"bound=ttft_max", NULL}, *m_p50[] = {"bound=ttft_p50", NULL};
    CHECK(prom_sum(&ps, "slmprobe_check_slo_ok", m_ok, &v) > 0 && v == 1);
    CHECK(prom_sum(&ps, "slmprobe_check_slo_ok", m_p50, &v) > 0 && v == 0);
    CHECK(prom_sum(&ps, "slmprobe_check_slo_limit", m_p50, &v) > 0 && fabs(v - 0.02) < 1e-12);
    CHECK(prom_sum(&ps, "slmprobe_check_success", NULL, &v) > 0 && v == 0);
    const char *m_5xx[] = {"class=http_5xx", NULL};
    CHECK(prom_sum(&ps, "slmprobe_check_errors", m_5xx, &v) > 0 && v == 1);
    prom_set_free(&ps);

    buf_reset(&b);
    struct check_opts o = {.n_requests = 10, .slo_spec = "x"};
    check_render_json(&o, r, &b);
    struct json *j = json_parse(b.data, b.len, err, sizeof err);
    CHECK_MSG(j != NULL, "%s", err);
    CHECK_EQ_STR(json_str(json_get(j, "schema"), NULL), "slmprobe.check/1");
    CHECK_EQ_INT(json_len(json_get(j, "bounds")), 4);
    CHECK_EQ_INT(json_type_of(json_get(json_at(json_get(j, "bounds"), 3), "measured")),
                 JSON_TYPE_NULL);
    json_free(j);
    buf_free(&b);
    free(r);
}

/* Runs slmprobe check with the given extra args; returns its exit status, output in *out. */
static int run_check(char **extra, int n_extra, char **out)
{
    char *argv[48];
    int n = 0;
    char outdir[512], log[600];
    snprintf(outdir, sizeof outdir, "%s/out", g_dir);
    snprintf(log, sizeof log, "%s/check.out", g_dir);
    argv[n++] = (char *)bin_path();
    argv[n++] = "check";
    argv[n++] = "--model";
    argv[n++] = g_model;
    argv[n++] = "--out";
    argv[n++] = outdir;
    argv[n++] = "--requests";
    argv[n++] = "4";
    argv[n++] = "--max-tokens";
    argv[n++] = "4";
    argv[n++] = "--prompt-len";
    argv[n++] = "16";
    argv[n++] = "--timeout"; /* the ASan server can take a minute to get ready on a busy machine */
    argv[n++] = "300";
    for (int i = 0; i < n_extra; i++)
        argv[n++] = extra[i];
    argv[n++] = "--";
    argv[n++] = "--threads";
    argv[n++] = "1";
    argv[n++] = "--kv-cache-memory-bytes"; /* a small pool and no warm-up shapes: a quick launch */
    argv[n++] = "8MiB";
    argv[n++] = "--enforce-eager";
    argv[n] = NULL;
    int rc = run_wait(argv, log);
    *out = slurp(log);
    return rc;
}

static void test_end_to_end(void)
{
    char prom[600], js[600];
    snprintf(prom, sizeof prom, "%s/slmprobe.prom", g_dir);
    snprintf(js, sizeof js, "%s/check.json", g_dir);
    char *out;
    char *pass[] = {"--slo", "ttft_p95:120s,e2e_p99:120s,error_rate:0%", "--prom", prom, "--json",
                    js};
    int rc = run_check(pass, 6, &out);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, out);
    CHECK_MSG(strstr(out, "OK: 4/4 requests ok") != NULL, "%s", out);
    free(out);
    char *p = slurp(prom);
    CHECK(strstr(p, "slmprobe_check_success{target=") != NULL);
    CHECK(strstr(p, "slmprobe_check_requests{outcome=\"ok\"} 4") != NULL);
    free(p);
    char *jtext = slurp(js);
    CHECK(strstr(jtext, "\"ok\":true") != NULL);
    CHECK_EQ_INT(schema_validate_file("slmprobe.check/1", js), 0);
    free(jtext);

    char *fail[] = {"--slo", "ttft_p95:1us,error_rate:0%"};
    rc = run_check(fail, 2, &out);
    CHECK_MSG(rc == 1, "rc %d: %s", rc, out);
    CHECK_MSG(strstr(out, "FAIL") && strstr(out, "ttft_p95") && strstr(out, "over by"), "%s", out);
    free(out);

    char *bad[] = {"--slo", "ttft_p95:fast"};
    rc = run_check(bad, 2, &out);
    CHECK_MSG(rc == 2, "rc %d: %s", rc, out);
    CHECK_MSG(strstr(out, "'fast'") != NULL, "%s", out);
    free(out);
}

static void test_url_nothing_listens(void)
{
    char url[64], log[600], outdir[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", free_port());
    snprintf(log, sizeof log, "%s/check-url.out", g_dir);
    snprintf(outdir, sizeof outdir, "%s/out-url", g_dir);
    char *argv[] = {(char *)bin_path(), "check", "--url", url, "--timeout", "5", "--out", outdir,
                    "--format", "json", NULL};
    double t0 = now_s();
    int rc = run_wait(argv, log);
    char *out = slurp(log);
    CHECK_MSG(rc == 1, "rc %d: %s", rc, out);
    CHECK(now_s() - t0 < 30);
    CHECK_MSG(strstr(out, "\"ok\":false") && strstr(out, "\"fail_reason\":\"server not ready"),
              "%s", out);
    free(out);
}

int main(void)
{
    if (harness_setup("check") != 0)
        return 1;
    TEST_RUN(test_slo_parse);
    TEST_RUN(test_judge_and_render);
    TEST_RUN(test_end_to_end);
    TEST_RUN(test_url_nothing_listens);
    return TEST_DONE();
}
