/* launch: one server launch for a probe (run/launch.h), as cmd_ttft.c's run_repeat did it: the
 * sampler starts before the launch (so the server's whole tree is followed from its first
 * moment), the page cache is dropped (root) or the model's files are evicted just before the
 * launch, GPU memory, page cache and the model's residency are read before and at ready, the
 * tree's storage reads and major faults are taken at ready, the /metrics scraper starts
 * once ready, and launch_stop gathers the outcome (died, exit, stop, start-up log, log tail). It
 * sends no completions and keeps no per-request data. */
#include "run/launch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/redact.h"

#define MOD "launch"
#define LAUNCH_TAIL_LINES 20

/* Where a launch's log goes. Default: log_name ("server.log", "server_r2.log", ...) in the
 * session's directory. With --log FILE (cfg->log_path set and not the default OUT/server.log):
 * "server.log" becomes FILE itself, and "server<rest>" becomes FILE's stem (FILE without a
 * trailing ".log") followed by <rest> ("--log /tmp/a.log": /tmp/a_r2.log, /tmp/a_len2048.log);
 * any other name goes into FILE's directory. */
static void launch_log_path(const struct session *s, const char *user, const char *log_name,
                            char *out, size_t out_len)
{
    char def[1100];
    session_path(s, "server.log", def, sizeof def);
    if (!user || !user[0] || strcmp(user, def) == 0) {
        session_path(s, log_name, out, out_len);
        return;
    }
    size_t n = strlen(user);
    int stem = (int)(n > 4 && strcmp(user + n - 4, ".log") == 0 ? n - 4 : n);
    if (strcmp(log_name, "server.log") == 0) {
        snprintf(out, out_len, "%s", user);
    } else if (strncmp(log_name, "server", 6) == 0) {
        snprintf(out, out_len, "%.*s%s", stem, user, log_name + 6);
    } else {
        const char *slash = strrchr(user, '/');
        int dir = slash ? (int)(slash - user) + 1 : 0;
        snprintf(out, out_len, "%.*s%s", dir, user, log_name);
    }
}

void launch_init_opts(struct launch *L, struct session *s, const struct target_config *cfg,
                      const char *log_name, const struct launch_opts *o)
{
    memset(L, 0, sizeof *L);
    L->s = s;
    L->cfg = *cfg;
    L->url_mode = cfg->url != NULL && cfg->url[0];
    launch_log_path(s, cfg->log_path, log_name ? log_name : "server.log", L->log_path,
                    sizeof L->log_path);
    L->cfg.log_path = L->log_path;
    /* the embedded server is this binary: its real path, so a printed command can be pasted */
    ssize_t n_self = readlink("/proc/self/exe", L->self_exe_, sizeof L->self_exe_ - 1);
    if (L->cfg.kind == TARGET_KIND_EMBEDDED && !L->cfg.self_exe && n_self > 0) {
        L->self_exe_[n_self] = 0;
        L->cfg.self_exe = L->self_exe_;
    }
    L->status = TARGET_ERR_CONFIG;
    L->gpu_mem_before_bytes = L->gpu_mem_ready_bytes = -1;
    L->page_cache_before_bytes = L->page_cache_ready_bytes = -1;
    L->rss_ready_bytes = -1;
    L->ready_s = L->logged_sum_s = NAN;
    L->model_bytes = L->model_resident_before_bytes = L->model_resident_launch_bytes = -1;
    L->model_resident_ready_bytes = L->read_bytes_ready = L->majflt_ready = -1;
    startup_info_init(&L->startup);
    if (o) {
        L->no_scraper_ = o->no_scraper;
        L->metrics_interval_ms_ = o->metrics_interval_ms;
    }
}

void launch_init(struct launch *L, struct session *s, const struct target_config *cfg,
                 const char *log_name)
{
    launch_init_opts(L, s, cfg, log_name, NULL);
}

/* Sum of used memory over every GPU now, or -1. */
static int64_t gpu_mem_used_now(const struct session *s)
{
    if (!s->gpus.available)
        return -1;
    struct telemetry_gpus g;
    if (telemetry_gpu_read(&g) != 0)
        return -1;
    int64_t sum = 0;
    for (int i = 0; i < g.n_gpus; i++)
        if (g.gpu[i].mem_used_bytes >= 0)
            sum += g.gpu[i].mem_used_bytes;
    return sum;
}

static void launch_cmdline(struct launch *L)
{
    char **argv = NULL;
    int argc = 0;
    if (target_argv_build(&L->cfg, L->t->port, &argv, &argc, NULL, 0) == TARGET_OK)
        redact_argv_join(argc, argv, L->cmdline, sizeof L->cmdline);
    target_argv_free(argv);
}

/* The model's files in the page cache now (-1 when the model is not a local path). */
static int64_t model_resident_now(const struct launch *L)
{
    int64_t res, total;
    return telemetry_file_residency(L->cfg.model, &res, &total) == 0 ? res : -1;
}

/* Before the fork: residency, then --cold-storage eviction and --drop-caches, then residency
 * again. TARGET_OK, or TARGET_ERR_DROP_CACHES (err says why); an eviction that fails or does
 * not take is no error: cold_storage_err says so and the report tells. */
static enum target_status launch_prepare_storage(struct launch *L, char *err, size_t err_len)
{
    if (L->url_mode)
        return TARGET_OK;
    int64_t total = -1;
    if (L->cfg.model && telemetry_file_residency(L->cfg.model, &L->model_resident_before_bytes,
                                                 &total) == 0)
        L->model_bytes = total;
    if (L->cfg.cold_storage) {
        if (L->model_bytes < 0)
            snprintf(L->cold_storage_err, sizeof L->cold_storage_err,
                     "--cold-storage: model '%s' is not a local file or directory",
                     L->cfg.model ? L->cfg.model : "(none)");
        else if (telemetry_file_evict(L->cfg.model, L->cold_storage_err,
                                      sizeof L->cold_storage_err) == 0)
            L->cold_storage_done = 1;
    }
    if (L->cfg.drop_caches) {
        enum target_status st = target_drop_caches(err, err_len);
        if (st != TARGET_OK)
            return st;
    }
    L->model_resident_launch_bytes = L->model_bytes < 0 ? -1 : model_resident_now(L);
    double frac = telemetry_resident_frac(L->model_resident_launch_bytes, L->model_bytes);
    if (L->cold_storage_done) {
        L->cold_storage_effective = frac <= LAUNCH_COLD_MAX_RESIDENT_FRAC;
        if (!L->cold_storage_effective)
            snprintf(L->cold_storage_err, sizeof L->cold_storage_err,
                     "--cold-storage: %.0f%% of the model stayed in the page cache after "
                     "eviction (a filesystem such as tmpfs or overlay that ignores it?)",
                     100.0 * frac);
    }
    if (L->cold_storage_err[0])
        log_warn(MOD, "%s", L->cold_storage_err);
    return TARGET_OK;
}

/* At ready: readings and the scraper. */
static void launch_ready(struct launch *L)
{
    L->ready = 1;
    L->page_cache_ready_bytes = telemetry_page_cache_bytes();
    L->gpu_mem_ready_bytes = gpu_mem_used_now(L->s);
    if (!L->url_mode) {
        telemetry_sampler_tick(L->smp);
        struct telemetry_window w;
        if (telemetry_sampler_window(L->smp, L->tl.t_launch_ns, clock_now_ns(), &w) == 0) {
            L->rss_ready_bytes = w.rss_max_bytes;
            L->read_bytes_ready = w.read_bytes_max;
            L->majflt_ready = w.majflt_max;
        }
        if (L->model_bytes >= 0)
            L->model_resident_ready_bytes = model_resident_now(L);
    }
    if (!L->no_scraper_ && (L->url_mode || target_kind_caps(L->cfg.kind)->has_metrics)) {
        int ms = L->metrics_interval_ms_ > 0 ? L->metrics_interval_ms_
                                             : SESSION_METRICS_INTERVAL_MS;
        L->scr = scraper_new(L->t->base_url, L->cfg.api_key, ms);
    }
}

enum target_status launch_start(struct launch *L)
{
    if (L->t)
        return L->status; /* once per struct launch */
    L->smp = telemetry_sampler_new(&(struct telemetry_sampler_config){
        .root_pid = 0, .interval_ms = L->s->sample_interval_ms, .cap_samples = 36000,
        .with_gpu = L->s->gpus.available});
    if (telemetry_sampler_start(L->smp) != 0)
        log_warn(MOD, "telemetry sampler thread did not start; CPU/RSS/GPU figures will be n/a");
    L->gpu_mem_before_bytes = gpu_mem_used_now(L->s);
    struct target_config tc = L->cfg;
    tc.drop_caches = 0; /* done here, before the page cache is read */
    L->t = target_new(&tc);
    char err[sizeof L->err] = "";
    L->status = launch_prepare_storage(L, err, sizeof err);
    L->page_cache_before_bytes = telemetry_page_cache_bytes();
    if (L->status == TARGET_OK)
        L->status = target_launch(L->t, err, sizeof err);
    if (L->status == TARGET_OK) {
        if (!L->url_mode) {
            telemetry_sampler_set_root(L->smp, L->t->pid);
            launch_cmdline(L);
        }
        L->status = target_wait_ready(L->t, err, sizeof err);
    }
    L->tl = L->t->tl;
    if (L->status == TARGET_OK) {
        launch_ready(L);
        return L->status;
    }
    /* first line only: the log tail is its own field */
    snprintf(L->err, sizeof L->err, "%.*s", (int)strcspn(err, "\n"), err);
    if (L->status == TARGET_ERR_EXITED) {
        L->died = 1;
        L->exit = L->t->exit;
    }
    log_error(MOD, "server did not become ready: %s: %s", target_status_str(L->status), L->err);
    launch_stop(L);
    return L->status;
}

int launch_alive(struct launch *L)
{
    if (!L->t || L->stopped)
        return 0;
    return L->url_mode || target_alive(L->t);
}

static void launch_read_log(struct launch *L)
{
    /* The live parse carries each line's arrival time (phases of servers that print no
     * durations); a re-read of the finished file has none, so it is only the fallback. */
    char lerr[256];
    target_follow_log(L->t);
    if (L->t->startup.n_lines > 0) {
        L->startup = L->t->startup;
        L->have_startup = 1;
    } else if (logparse_file(L->log_path, &L->startup, lerr, sizeof lerr) == 0) {
        L->have_startup = 1;
    }
    if (L->died || L->status != TARGET_OK) {
        struct buf tail;
        buf_init(&tail, 1024, sizeof L->log_tail - 1);
        if (target_log_tail(L->log_path, LAUNCH_TAIL_LINES, &tail) == 0 && tail.data)
            snprintf(L->log_tail, sizeof L->log_tail, "%s", tail.data);
        buf_free(&tail);
    }
}

void launch_stop(struct launch *L)
{
    if (L->stopped)
        return;
    L->stopped = 1;
    scraper_free(L->scr);
    L->scr = NULL;
    if (!L->t)
        return;
    struct target *t = L->t;
    if (!L->url_mode && L->ready && !L->died && !target_alive(t)) {
        L->died = 1; /* died during the run */
        L->exit = t->exit;
    }
    if (!t->version[0] && L->ready && !L->died)
        target_fetch_version(t);
    target_stop(t, &L->stop);
    if (!L->died && L->ready && t->launched && L->stop.exit.exited && !L->stop.was_running) {
        L->died = 1;
        L->exit = L->stop.exit;
    }
    L->tl = t->tl;
    telemetry_sampler_stop(L->smp);
    if (!L->url_mode)
        launch_read_log(L);
    if (L->ready && L->tl.t_models_ok_ns > L->tl.t_launch_ns)
        L->ready_s = ns_to_s(L->tl.t_models_ok_ns - L->tl.t_launch_ns);
    if (L->have_startup) {
        L->logged_sum_s = startup_logged_sum_s(&L->startup);
        L->logged_exceeds_measured = startup_logged_exceeds(&L->startup, L->ready_s);
    }
}

int launch_window(struct launch *L, mono_ns t0, mono_ns t1, struct telemetry_window *out)
{
    if (!L->smp)
        return -1;
    return telemetry_sampler_window(L->smp, t0, t1, out);
}

void launch_free(struct launch *L)
{
    if (!L)
        return;
    launch_stop(L);
    target_free(L->t);
    L->t = NULL;
    telemetry_sampler_free(L->smp);
    L->smp = NULL;
}
