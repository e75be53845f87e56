/* batch_run: runs the modes of `slmprobe batch` against one server launch (run/launch.h) through
 * the probe core's driver (run/driver.h): sequential vs concurrent, the closed-loop sweep with
 * repeats (levels interleaved), open loop at precomputed send times; and turns each phase's
 * driver result (histograms and counters, no kept records) plus the launch's telemetry and
 * /metrics windows into a struct batch_level. It sends nothing itself, keeps no records, renders
 * nothing (batch_report, batch_json) and parses no argv (batch_opts). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"
#include "measure/hist.h"
#include "measure/workload.h"
#include "run/driver.h"
#include "run/launch.h"
#include "run/probe_opts.h"
#include "run/session.h"
#include "server/target.h"
#include "server/telemetry.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

#define MOD "batch"

/* ------------------------------------------------------------------------------------------ */
/* Run context and the driver's callbacks                                                     */
/* ------------------------------------------------------------------------------------------ */

struct run_ctx {
    const struct batch_opts *o;
    struct session *s;
    struct launch *L;
    struct driver *d;
    struct workload *w;
    uint64_t next_prompt;
    int progress;
    /* the phase being run (reset by run_phase) */
    int warm;      /* warm-up: short answers */
    int open_loop; /* SLO on latency from the intended send time */
    int n_good;
    mono_ns sent_min_ns, sent_max_ns;
    char stop_reason[768]; /* of the phase that stopped the run */
};

static int make_request(void *ud, uint64_t i, struct client_request *rq, struct buf *prompt)
{
    struct run_ctx *x = ud;
    (void)i;
    uint64_t k = x->next_prompt++;
    if (workload_prompt(x->w, k, prompt, NULL) != WORKLOAD_OK) {
        driver_set_reason(x->d, "prompt %llu does not fit the prompt buffer",
                          (unsigned long long)k);
        return -1;
    }
    const struct batch_opts *o = x->o;
    /* Warm-ups only need to open connections and run every batch shape: short answers. */
    int n_out = !x->warm || o->output_len < BATCH_WARMUP_TOKENS ? o->output_len
                                                                 : BATCH_WARMUP_TOKENS;
    rq->prompt = prompt->data;
    rq->prompt_len = prompt->len;
    rq->max_tokens = n_out;
    rq->min_tokens = n_out;
    rq->ignore_eos = 1;
    rq->temperature = 0.0;
    return 0;
}

/* What the histograms do not give: goodput (every SLO bound met) and the range of send times. */
static void on_record(void *ud, const struct request_record *q)
{
    struct run_ctx *x = ud;
    if (q->t_sent_ns) {
        if (!x->sent_min_ns || q->t_sent_ns < x->sent_min_ns)
            x->sent_min_ns = q->t_sent_ns;
        if (q->t_sent_ns > x->sent_max_ns)
            x->sent_max_ns = q->t_sent_ns;
    }
    if (q->error != REQ_ERROR_NONE || !knee_slo_is_set(&x->o->slo))
        return;
    /* Open loop: latency from the intended send time (what a user sees). */
    int64_t e2e = x->open_loop ? record_e2e_intended_ns(q) : record_e2e_ns(q);
    int64_t ttft = x->open_loop ? record_ttft_intended_ns(q) : record_ttft_ns(q);
    if (knee_slo_met(&x->o->slo, ttft >= 0 ? ns_to_ms((uint64_t)ttft) : NAN, record_tpot_ms(q),
                     e2e >= 0 ? ns_to_ms((uint64_t)e2e) : NAN))
        x->n_good++;
}

/* ------------------------------------------------------------------------------------------ */
/* A level from a driver result                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Telemetry and /metrics over the level's window (before launch_stop: the scraper stops then). */
static void level_server_window(struct run_ctx *x, mono_ns t0, mono_ns t1, struct batch_level *ls)
{
    ls->gpu_util_mean_pct = ls->gpu_util_max_pct = ls->gpu_mem_max_gib = NAN;
    ls->cpu_mean_pct = ls->cpu_max_pct = NAN;
    struct telemetry_window tw;
    if (t1 > t0 && launch_window(x->L, t0, t1 + 1000000, &tw) == 0) {
        ls->cpu_mean_pct = tw.cpu_mean_pct;
        ls->cpu_max_pct = tw.cpu_max_pct;
        ls->gpu_available = tw.gpu_available;
        if (tw.gpu_available) {
            ls->gpu_util_mean_pct = tw.gpu_util_mean_pct;
            ls->gpu_util_max_pct = tw.gpu_util_max_pct;
            ls->gpu_mem_max_gib = tw.gpu_mem_used_max_bytes >= 0
                                      ? (double)tw.gpu_mem_used_max_bytes / (1024.0 * 1024 * 1024)
                                      : NAN;
        } else {
            snprintf(ls->gpu_reason, sizeof ls->gpu_reason, "%s", tw.gpu_reason);
        }
    }
    if (x->L->scr) {
        scraper_window(x->L->scr, t0, t1, &ls->sw);
    } else {
        memset(&ls->sw, 0, sizeof ls->sw);
        ls->sw.waiting_mean = ls->sw.waiting_max = ls->sw.running_mean = NAN;
        ls->sw.running_max = ls->sw.kv_usage_max = NAN;
    }
}

/* Fills *ls from one phase. sched: the open-loop schedule (NULL closed loop): the window then
 * starts at the first intended send. */
static void level_fill(struct run_ctx *x, const struct driver_result *r, double load,
                       const mono_ns *sched, const char *what, struct batch_level *ls)
{
    memset(ls, 0, sizeof *ls);
    ls->load = load;
    ls->complete = r->status == DRIVER_STATUS_OK;
    ls->n_repeats = 1;
    ls->n_sent = r->n_done;
    ls->n_ok = r->n_ok;
    ls->n_err = r->n_done - r->n_ok;
    memcpy(ls->n_err_class, r->n_err_class, sizeof ls->n_err_class);
    memcpy(ls->err_msg, r->err_msg, sizeof ls->err_msg);
    ls->n_no_usage = r->n_no_usage;
    ls->n_good = x->n_good;
    mono_ns t0 = sched && r->n_sent ? sched[0] : r->t_start_ns, t1 = r->t_end_ns;
    ls->duration_s = r->n_done && t1 > t0 ? ns_to_s(t1 - t0) : NAN;
    hist_summary(&r->e2e_ms, &ls->e2e_ms);
    hist_summary(&r->ttft_ms, &ls->ttft_ms);
    hist_summary(&r->itl_ms, &ls->itl_ms);
    hist_summary(&r->tpot_ms, &ls->tpot_ms);
    hist_summary(&r->e2e_int_ms, &ls->e2e_int_ms);
    hist_summary(&r->ttft_int_ms, &ls->ttft_int_ms);
    hist_summary(&r->qdelay_ms, &ls->qdelay_ms);
    int n_usage = r->n_ok - r->n_no_usage;
    double out_tok = (double)r->completion_tokens, in_tok = (double)r->prompt_tokens;
    ls->qps = stats_rate(ls->n_ok, ls->duration_s);
    ls->tok_s = n_usage > 0 ? stats_rate(out_tok, ls->duration_s) : NAN;
    ls->total_tok_s = n_usage > 0 ? stats_rate(out_tok + in_tok, ls->duration_s) : NAN;
    ls->inflight_mean = r->inflight_mean;
    ls->prompt_tok_mean = n_usage > 0 ? in_tok / n_usage : NAN;
    ls->prompt_tok_min = r->prompt_tok_min >= 0 ? r->prompt_tok_min : NAN;
    ls->prompt_tok_max = r->prompt_tok_max >= 0 ? r->prompt_tok_max : NAN;
    ls->out_tok_mean = n_usage > 0 ? out_tok / n_usage : NAN;
    ls->goodput_frac = ls->goodput_rps = NAN;
    if (knee_slo_is_set(&x->o->slo)) {
        ls->goodput_frac = ls->n_sent ? (double)ls->n_good / ls->n_sent : NAN;
        ls->goodput_rps = stats_rate(ls->n_good, ls->duration_s);
    }
    ls->send_rate_rps = ls->offered_rate_rps = NAN;
    if (r->n_sent > 1 && x->sent_max_ns > x->sent_min_ns)
        ls->send_rate_rps = (r->n_sent - 1) / ns_to_s(x->sent_max_ns - x->sent_min_ns);
    if (sched && r->n_sent > 1 && sched[r->n_sent - 1] > sched[0])
        ls->offered_rate_rps = (r->n_sent - 1) / ns_to_s(sched[r->n_sent - 1] - sched[0]);
    /* One content event carries about one token: tok/s stands for the client's event rate. */
    char msg[256];
    if (x->s->ceiling.valid && client_ceiling_warn(&x->s->ceiling, ls->tok_s, ls->qps, msg,
                                                   sizeof msg))
        log_warn(MOD, "%s: %s", what, msg);
    level_server_window(x, t0, t1, ls);
}

/* Runs one phase through the driver; fills *ls (unless NULL: a warm-up). */
static enum driver_status run_phase(struct run_ctx *x, struct driver_phase *ph, double load,
                                    struct batch_level *ls)
{
    x->warm = ls == NULL;
    x->open_loop = ph->mode == DRIVER_MODE_OPEN;
    x->n_good = 0;
    x->sent_min_ns = x->sent_max_ns = 0;
    ph->make = make_request;
    ph->on_record = on_record;
    ph->ud = x;
    ph->progress = x->progress;
    struct driver_result r;
    enum driver_status st = driver_run(x->d, ph, &r);
    if (ls)
        level_fill(x, &r, load, ph->schedule, ph->tag, ls);
    if (st != DRIVER_STATUS_OK)
        snprintf(x->stop_reason, sizeof x->stop_reason, "%s", r.stop_reason);
    driver_result_free(&r);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* ------------------------------------------------------------------------------------------ */
/* Open-loop schedules                                                                        */
/* ------------------------------------------------------------------------------------------ */

static uint64_t rng_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) /* (0, 1] */
{
    return ((double)(rng_u64(s) >> 11) + 1.0) / 9007199254740992.0;
}

static double rng_normal(uint64_t *s)
{
    double u1 = rng_unit(s), u2 = rng_unit(s);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Gamma(shape k, scale 1): Marsaglia-Tsang; k < 1 via Gamma(k+1) * U^(1/k). */
static double rng_gamma(uint64_t *s, double k)
{
    if (k < 1.0)
        return rng_gamma(s, k + 1.0) * pow(rng_unit(s), 1.0 / k);
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    while (1) {
        double z = rng_normal(s), v = 1.0 + c * z;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = rng_unit(s);
        if (log(u) < 0.5 * z * z + d - d * v + d * log(v))
            return d * v;
    }
}

/* n intended send times from t0: gaps Gamma(B, 1/(rate B)) (B = 1: exponential, Poisson). The
 * first request goes at t0. */
static void make_schedule(mono_ns *out, int n, mono_ns t0, double rate, double burstiness,
                          uint64_t seed)
{
    uint64_t s = seed ^ 0x5eed5eed5eedull;
    double t = 0;
    for (int i = 0; i < n; i++) {
        out[i] = t0 + (mono_ns)(t * 1e9);
        double gap = burstiness == 1.0 ? -log(rng_unit(&s)) / rate
                                       : rng_gamma(&s, burstiness) / (rate * burstiness);
        t += gap;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The modes                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Closed-loop warm-up of n requests at concurrency conc (n <= 0: none). */
static enum driver_status warmup(struct run_ctx *x, int conc, int n, const char *what)
{
    if (n <= 0)
        return DRIVER_STATUS_OK;
    char tag[64];
    snprintf(tag, sizeof tag, "warmup %s", what);
    struct driver_phase ph = {.mode = DRIVER_MODE_CLOSED, .tag = tag, .level = -1,
                              .concurrency = conc, .n_requests = n};
    return run_phase(x, &ph, conc, NULL);
}

static enum driver_status run_seqconc(struct run_ctx *x, struct batch_result *res)
{
    const struct batch_opts *o = x->o;
    int n = o->num_requests;
    log_info(MOD, "sequential vs concurrent: %d requests", n);
    enum driver_status st = warmup(x, 1, o->warmup < 0 ? 1 : o->warmup, "seq");
    if (st)
        return st;
    struct driver_phase ph = {.mode = DRIVER_MODE_SEQUENTIAL, .tag = "seq", .level = -1,
                              .n_requests = n};
    st = run_phase(x, &ph, 1, &res->seq);
    res->have_seqconc = 1;
    if (st)
        return st;
    st = warmup(x, n, o->warmup < 0 ? n : o->warmup, "conc");
    if (st)
        return st;
    ph = (struct driver_phase){.mode = DRIVER_MODE_CLOSED, .tag = "conc", .level = -1,
                               .concurrency = n, .n_requests = n};
    return run_phase(x, &ph, n, &res->conc);
}

static enum driver_status run_sweep(struct run_ctx *x, struct batch_result *res)
{
    const struct batch_opts *o = x->o;
    enum driver_status st = DRIVER_STATUS_OK;
    int L = o->n_conc, R = o->repeat;
    /* Repeats are whole sweeps (1..32, then 1..32 again), so a slow drift of the machine spreads
     * over every level instead of biasing one. */
    struct batch_level *rep = xcalloc((size_t)L * (size_t)R, sizeof *rep);
    int *n_rep = xcalloc((size_t)L, sizeof *n_rep);
    for (int k = 0; k < R && !st; k++) {
        for (int i = 0; i < L && !st; i++) {
            int conc = o->conc[i];
            char what[32], tag[48];
            snprintf(what, sizeof what, "c=%d", conc);
            log_info(MOD, "sweep %d/%d: concurrency %d", k + 1, R, conc);
            st = warmup(x, conc, o->warmup < 0 ? conc : o->warmup, what);
            if (st)
                break;
            snprintf(tag, sizeof tag, "c=%d r%d", conc, k + 1);
            struct driver_phase ph = {.mode = DRIVER_MODE_CLOSED, .tag = tag, .level = i,
                                      .concurrency = conc, .duration_s = o->duration_s};
            ph.n_requests = o->duration_s > 0 ? 0 : batch_level_requests(o, conc);
            struct batch_level *ls = &rep[(size_t)i * R + (size_t)n_rep[i]++];
            st = run_phase(x, &ph, conc, ls);
            log_info(MOD, "concurrency %d: %.1f tok/s, p95 e2e %.3f s, %d/%d ok", conc, ls->tok_s,
                     ls->e2e_ms.p95 / 1000.0, ls->n_ok, ls->n_sent);
        }
    }
    for (int i = 0; i < L; i++) {
        if (!n_rep[i])
            continue;
        /* Repeats cut short (server exit, interrupt) are left out when complete ones exist. */
        batch_level_fold(&rep[(size_t)i * R], n_rep[i], &res->sweep[res->n_sweep++]);
    }
    free(n_rep);
    free(rep);
    return st;
}

/* Requests at one open-loop rate: --requests, else rate x --duration, else 10 s worth (>= 8). */
static int open_n_requests(const struct batch_opts *o, double rate)
{
    long n = o->requests     ? o->requests
             : o->duration_s ? lround(rate * o->duration_s)
                             : lround(10.0 * rate);
    if (n < (o->requests ? 1 : 8))
        n = o->requests ? 1 : 8;
    return n > BATCH_MAX_REQUESTS ? BATCH_MAX_REQUESTS : (int)n;
}

/* Could the client keep the schedule? The warning, or "" when it did. */
static void open_check_sustained(const struct batch_opts *o, double rate,
                                 const struct batch_level *ls, char *out, size_t out_len)
{
    out[0] = 0;
    if (ls->n_sent > 2 && ((!isnan(ls->send_rate_rps) && !isnan(ls->offered_rate_rps) &&
                            ls->send_rate_rps < 0.95 * ls->offered_rate_rps) ||
                           ls->qdelay_ms.p95 > 50.0)) {
        snprintf(out, out_len,
                 "rate %g req/s was not sustained: the schedule asked for %.2f req/s, requests "
                 "went out at %.2f req/s, with client-side queueing delay p95 %.1f ms (max "
                 "%.1f ms)%s.",
                 rate, ls->offered_rate_rps, ls->send_rate_rps, ls->qdelay_ms.p95,
                 ls->qdelay_ms.max,
                 o->max_concurrency ? " (--max-concurrency holds requests back)" : "");
        log_warn(MOD, "%s", out);
    }
}

static enum driver_status run_open_rates(struct run_ctx *x, struct batch_result *res)
{
    const struct batch_opts *o = x->o;
    enum driver_status st = DRIVER_STATUS_OK;
    for (int i = 0; i < o->n_rates && !st; i++) {
        double rate = o->rates[i];
        int n = open_n_requests(o, rate);
        char tag[48];
        snprintf(tag, sizeof tag, "rate=%g", rate);
        int wn = o->warmup < 0 ? 4 : o->warmup;
        st = warmup(x, wn, wn, tag);
        if (st)
            break;
        log_info(MOD, "open loop: %g req/s, %d requests%s", rate, n,
                 o->burstiness != 1.0 ? " (bursty)" : "");
        mono_ns *sched = xcalloc((size_t)n, sizeof *sched);
        make_schedule(sched, n, clock_now_ns() + 1000000ull, rate, o->burstiness,
                      o->seed + (uint64_t)i);
        struct driver_phase ph = {.mode = DRIVER_MODE_OPEN, .tag = tag, .level = i,
                                  .n_requests = n, .schedule = sched,
                                  .max_concurrency = o->max_concurrency};
        struct batch_level *ls = &res->open[res->n_open++];
        st = run_phase(x, &ph, rate, ls);
        free(sched);
        open_check_sustained(o, rate, ls, res->open_warn[res->n_open - 1],
                             sizeof res->open_warn[0]);
    }
    return st;
}

/* The workload, fully validated before anything is launched. 0, or -1 with err. */
static int workload_make(const struct batch_opts *o, const struct probe_opts *po,
                         struct workload *w, char *err, size_t err_len)
{
    enum workload_unit unit =
        o->unit >= 0
            ? (enum workload_unit)o->unit
            : (probe_tokens_are_bytes(&po->target) ? WORKLOAD_UNIT_BYTE : WORKLOAD_UNIT_WORD);
    if (o->prompt_file)
        return workload_init_file(w, o->prompt_file, 0, unit, o->seed, err, err_len) == WORKLOAD_OK
                   ? 0
                   : -1;
    struct workload_synth ws = {.input_len_tokens = o->input_len,
                                .input_len_range = o->input_len_range,
                                .unit = unit,
                                .seed = o->seed};
    if (workload_init_synth(w, &ws) != WORKLOAD_OK) {
        snprintf(err, err_len, "invalid --input-len / --input-len-range");
        return -1;
    }
    return 0;
}

static void server_facts(struct launch *L, struct batch_server *sv)
{
    const struct target *t = L->t;
    sv->launched = !L->url_mode;
    snprintf(sv->kind, sizeof sv->kind, "%s", target_kind_str(L->cfg.kind));
    snprintf(sv->log_path, sizeof sv->log_path, "%s", L->log_path);
    if (!t)
        return;
    sv->pid = (int)t->pid;
    snprintf(sv->base_url, sizeof sv->base_url, "%s", t->base_url);
    snprintf(sv->version, sizeof sv->version, "%s", t->version);
    sv->max_model_len = t->max_model_len > 0 ? t->max_model_len : 0;
    if (!L->url_mode && L->stopped) {
        char ex[128];
        const struct target_exit *e = L->stop.was_running ? &L->stop.exit : &L->exit;
        target_exit_str(e, ex, sizeof ex);
        snprintf(sv->end, sizeof sv->end, "%s%s",
                 L->stop.was_running ? "Stopped at the end: " : "Exited: ", ex);
    }
}

/* The modes, then the run's outcome from the status that ended it. */
static void run_phases(struct run_ctx *x, struct batch_result *res)
{
    const struct batch_opts *o = x->o;
    enum driver_status st = DRIVER_STATUS_OK;
    if (o->do_seqconc)
        st = run_seqconc(x, res);
    if (!st && o->do_sweep)
        st = run_sweep(x, res);
    if (!st && o->do_open)
        st = run_open_rates(x, res);
    struct scraper_status ss;
    if (!x->L->scr)
        snprintf(res->metrics_note, sizeof res->metrics_note, "no /metrics scraper for this "
                 "server kind");
    else if (scraper_status(x->L->scr, &ss), ss.gave_up)
        snprintf(res->metrics_note, sizeof res->metrics_note, "no /metrics from the server (%s)",
                 ss.reason);
    if (st == DRIVER_STATUS_CANCELLED && session_interrupted(x->s)) {
        res->interrupted = 1;
        snprintf(res->failure, sizeof res->failure,
                 "Interrupted (signal) during the run: levels finished before are reported; the "
                 "level that was running is marked incomplete.");
    } else if (st != DRIVER_STATUS_OK) {
        res->failed = 1;
        snprintf(res->failure, sizeof res->failure,
                 "%.700s. Levels finished before the failure are reported; the level that was "
                 "running is marked incomplete and left out of the knee.",
                 x->stop_reason[0] ? x->stop_reason : driver_status_str(st));
    }
}

/* Client and JSONL sink on a ready server, then the modes. */
static void run_ready(struct run_ctx *x, struct batch_result *res)
{
    char err[1024];
    struct record_sink *sink = session_sink_open(x->s, "batch_requests.jsonl", err, sizeof err);
    if (!sink)
        log_warn(MOD, "no per-request log: %s", err);
    struct client_config cc;
    probe_opts_client_config(x->s->po, x->L->t->base_url, &cc);
    x->d = driver_new(x->s, x->L, &cc, sink, err, sizeof err);
    if (!x->d) {
        res->failed = 1;
        snprintf(res->failure, sizeof res->failure, "The client could not start: %.900s", err);
    } else {
        snprintf(res->model, sizeof res->model, "%s", driver_model(x->d));
        run_phases(x, res);
    }
    driver_free(x->d);
    x->d = NULL;
    record_sink_close(sink);
}

int batch_run(const struct batch_opts *o, struct session *s, struct batch_result *res)
{
    char err[1024] = "";
    const struct probe_opts *po = s->po;
    struct workload w;
    memset(&w, 0, sizeof w);
    res->opts = *o;
    snprintf(res->started_at, sizeof res->started_at, "%s", s->started_at);
    snprintf(res->command_line, sizeof res->command_line, "%s", s->command_line);
    snprintf(res->client_calibration, sizeof res->client_calibration, "%s", s->ceiling_note);
    if (workload_make(o, po, &w, err, sizeof err) != 0) {
        snprintf(res->failure, sizeof res->failure, "%s", err);
        workload_free(&w);
        return PROBE_EXIT_USAGE;
    }
    struct buf d;
    buf_init(&d, 512, 8192);
    workload_describe(&w, &d);
    snprintf(res->workload_desc, sizeof res->workload_desc, "%s", d.data ? d.data : "");
    buf_free(&d);
    struct launch L;
    launch_init_opts(&L, s, &po->target, o->log_name ? o->log_name : "server.log",
                     &(struct launch_opts){.metrics_interval_ms = o->metrics_interval_ms});
    struct run_ctx x = {.o = o, .s = s, .L = &L, .w = &w};
    x.progress = o->progress != 0;
    if (launch_start(&L) != TARGET_OK) {
        log_error(MOD, "server start failed: %s", L.err);
        res->failed = 1;
        snprintf(res->failure, sizeof res->failure, "The server did not start: %.900s", L.err);
    } else {
        log_info(MOD, "server ready at %s", L.t->base_url);
        run_ready(&x, res);
    }
    launch_stop(&L);
    server_facts(&L, &res->server);
    launch_free(&L);
    batch_analyze(res);
    workload_free(&w);
    if (session_interrupted(s))
        res->interrupted = 1;
    return session_exit_code(s, res->failed);
}
