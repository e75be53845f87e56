/* test_launch: one launch of the real embedded server through run/launch.h (ready, redacted
 * command line, readings, scraper, parsed log, idempotent stop) and a server that exits at once
 * (died, exit status, log tail), and --cold-storage: the model's files evicted before the launch
 * and read back from storage by the server. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"
#include "serve_harness.h"
#pragma GCC diagnostic pop

#include "run/launch.h"
#include "test.h"

static struct probe_opts g_po;
static struct session g_s;

static void test_launch_ready(void)
{
    struct target_config cfg;
    target_config_defaults(&cfg, TARGET_KIND_EMBEDDED);
    cfg.model = g_model;
    cfg.self_exe = bin_path();
    cfg.api_key = "sekrit-key-123";
    cfg.stop_grace_ms = 5000;
    struct launch L;
    launch_init(&L, &g_s, &cfg, "srv_ready.log");
    CHECK(strstr(L.log_path, g_s.out_dir) == L.log_path);
    enum target_status st = launch_start(&L);
    CHECK_MSG(st == TARGET_OK, "%s: %s", target_status_str(st), L.err);
    CHECK(L.ready);
    CHECK_EQ_STR(L.err, "");
    CHECK(launch_alive(&L));
    CHECK(strstr(L.cmdline, " serve ") != NULL);
    CHECK(strstr(L.cmdline, "--api-key ***") != NULL);
    CHECK(strstr(L.cmdline, "sekrit") == NULL);
    CHECK_MSG(L.rss_ready_bytes > 0, "%lld", (long long)L.rss_ready_bytes);
    CHECK(L.page_cache_before_bytes >= 0 && L.page_cache_ready_bytes >= 0);
    CHECK(L.tl.t_models_ok_ns > L.tl.t_launch_ns);
    CHECK(L.scr != NULL);
    struct server_metrics m;
    CHECK(scraper_scrape_now(L.scr, &m) == 0);
    CHECK(m.has_running);
    launch_stop(&L);
    CHECK(L.stopped && !L.died);
    CHECK(L.stop.was_running);
    CHECK(L.scr == NULL);
    CHECK(L.have_startup && L.startup.n_lines > 0);
    CHECK(L.startup.saw_startup_complete);
    /* the embedded server's logged durations happen inside fork -> ready */
    CHECK(L.ready_s > 0);
    CHECK_MSG(!L.logged_exceeds_measured, "logged %.3f s > measured %.3f s", L.logged_sum_s,
              L.ready_s);
    CHECK_EQ_STR(L.log_tail, "");
    struct telemetry_window w;
    CHECK(launch_window(&L, L.tl.t_launch_ns, clock_now_ns(), &w) == 0);
    CHECK(w.rss_max_bytes > 0);
    launch_stop(&L); /* idempotent */
    CHECK(!launch_alive(&L));
    launch_free(&L);
}

static void test_launch_exits_at_once(void)
{
    struct target_config cfg;
    target_config_defaults(&cfg, TARGET_KIND_EMBEDDED);
    char *cmd[] = {"/bin/sh", "-c", "echo boom-marker >&2; exit 3", NULL};
    cfg.serve_cmd = cmd;
    cfg.n_serve_cmd = 3;
    cfg.ready_timeout_ms = 20000;
    struct launch L;
    launch_init(&L, &g_s, &cfg, "srv_dies.log");
    enum target_status st = launch_start(&L);
    CHECK_EQ_INT(st, TARGET_ERR_EXITED);
    CHECK(!L.ready && L.died);
    CHECK_EQ_INT(L.exit.exit_code, 3);
    CHECK(L.err[0] != '\0' && strchr(L.err, '\n') == NULL);
    CHECK_MSG(strstr(L.log_tail, "boom-marker") != NULL, "tail: %s", L.log_tail);
    CHECK(strstr(L.cmdline, "/bin/sh -c") == L.cmdline);
    CHECK(L.stopped);
    launch_free(&L);
}

/* --cold-storage on a freshly generated model: the eviction leaves ~nothing resident, and the
 * server's start-up brings the weights back from storage (read_bytes, major faults or residency
 * at ready). Then a warm launch: the files are resident before it and nothing is evicted. */
static void test_launch_cold_storage(void)
{
    char *argv[] = {"x", "--model", g_model, "--cold-storage", NULL};
    struct probe_opts po;
    int n_rest;
    char *rest[8];
    char err[256];
    CHECK_EQ_INT(probe_opts_parse(4, argv, &po, &n_rest, rest, err, sizeof err), 0);
    CHECK_EQ_INT(po.target.cold_storage, 1);
    struct target_config cfg = po.target;
    cfg.self_exe = bin_path();
    cfg.stop_grace_ms = 5000;
    char *extra[] = {"--kv-cache-memory-bytes", "8MiB", "--enforce-eager"};
    cfg.extra_args = extra;
    cfg.n_extra_args = 3;
    struct launch L;
    launch_init(&L, &g_s, &cfg, "srv_cold.log");
    enum target_status st = launch_start(&L);
    CHECK_MSG(st == TARGET_OK, "%s: %s", target_status_str(st), L.err);
    fprintf(stderr, "  model %lld B; resident before %lld, after eviction %lld, at ready %lld; "
            "read_bytes %lld, majflt %lld; %s\n", (long long)L.model_bytes,
            (long long)L.model_resident_before_bytes, (long long)L.model_resident_launch_bytes,
            (long long)L.model_resident_ready_bytes, (long long)L.read_bytes_ready,
            (long long)L.majflt_ready, L.cold_storage_err[0] ? L.cold_storage_err : "evicted");
    CHECK(L.model_bytes > 0);
    CHECK(L.model_resident_before_bytes >= 0 && L.model_resident_ready_bytes >= 0);
    CHECK(L.cold_storage_done);
    if (!L.cold_storage_effective) {
        fprintf(stderr, "  SKIP storage-read checks: %s\n", L.cold_storage_err);
    } else {
        CHECK(telemetry_resident_frac(L.model_resident_launch_bytes, L.model_bytes) <= 0.05);
        CHECK_EQ_STR(L.cold_storage_err, "");
        /* the weights came from storage: any one of the direct signals shows it */
        CHECK_MSG(L.model_resident_ready_bytes > L.model_resident_launch_bytes ||
                      L.read_bytes_ready > 0 || L.majflt_ready > 0,
                  "no storage read seen");
    }
    CHECK(L.read_bytes_ready >= 0 && L.majflt_ready >= 0);
    int effective = L.cold_storage_effective;
    launch_free(&L);

    /* warm: what the cold launch read is still cached, nothing is evicted */
    cfg.cold_storage = 0;
    launch_init(&L, &g_s, &cfg, "srv_warm.log");
    st = launch_start(&L);
    CHECK_MSG(st == TARGET_OK, "%s: %s", target_status_str(st), L.err);
    CHECK(!L.cold_storage_done && L.cold_storage_err[0] == 0);
    CHECK_EQ_INT(L.model_resident_launch_bytes, L.model_resident_before_bytes);
    fprintf(stderr, "  warm: resident at launch %lld of %lld\n",
            (long long)L.model_resident_launch_bytes, (long long)L.model_bytes);
    if (effective) /* the signal tells the two apart: a warm start reads (almost) nothing */
        CHECK_MSG(L.read_bytes_ready < L.model_bytes / 2, "warm read %lld of %lld",
                  (long long)L.read_bytes_ready, (long long)L.model_bytes);
    launch_free(&L);

    /* a model that is no local path: unknown residency, the reason said (cfg still borrows
     * po's strings, so po is freed last) */
    cfg.cold_storage = 1;
    cfg.model = "Org/not-a-local-model";
    cfg.serve_cmd = (char *[]){"/bin/sh", "-c", "exit 3", NULL};
    cfg.n_serve_cmd = 3;
    launch_init(&L, &g_s, &cfg, "srv_cold_id.log");
    launch_start(&L);
    CHECK_EQ_INT(L.model_bytes, -1);
    CHECK_EQ_INT(L.model_resident_before_bytes, -1);
    CHECK(!L.cold_storage_done);
    CHECK_MSG(strstr(L.cold_storage_err, "not a local file") != NULL, "%s", L.cold_storage_err);
    launch_free(&L);
    probe_opts_free(&po);
}

int main(void)
{
    if (harness_session_setup("launch", "test_launch", &g_po, &g_s) != 0)
        return 1;
    TEST_RUN(test_launch_ready);
    TEST_RUN(test_launch_exits_at_once);
    TEST_RUN(test_launch_cold_storage);
    session_free(&g_s);
    return TEST_DONE();
}
