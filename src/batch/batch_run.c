/* batch_run: runs the modes of `slmprobe batch` against one server: sequential vs concurrent,
 * the closed-loop sweep with repeats (levels interleaved), open loop at precomputed send times,
 * and fills the per-level statistics of a struct batch_result. It renders nothing (batch_report,
 * batch_json) and parses no argv (batch_opts). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch/batch.h"
#include "measure/workload.h"
#include "net/client.h"
#include "server/promscrape.h"
#include "server/target.h"
#include "server/telemetry.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/redact.h"

#define MOD "batch"

/* ------------------------------------------------------------------------------------------ */
/* /metrics scraper thread                                                                    */
/* ------------------------------------------------------------------------------------------ */

struct scrape_sample {
    mono_ns t_ns;
    double running, waiting;
    int has_running, has_waiting;
};

struct bscr {
    pthread_t thread;
    int started;
    atomic_int stop;
    pthread_mutex_t mu;
    char url[320];
    const char *api_key;
    int interval_ms;
    struct scrape_sample *s; /* ring of cap samples, guarded by mu */
    size_t n, cap;
    int n_ok, n_fail;
    int gave_up;
    char reason[256];
};

static void *bscr_main(void *arg)
{
    struct bscr *sc = arg;
    int fails_in_row = 0;
    while (!atomic_load(&sc->stop)) {
        struct prom_set set = {0};
        int status = 0;
        char err[256] = "";
        mono_ns t = clock_now_ns();
        enum prom_status st =
            prom_fetch(sc->url, sc->api_key, 2000, &set, &status, err, sizeof err);
        if (st == PROM_OK) {
            struct server_metrics m;
            server_metrics_from_prom(&set, &m);
            pthread_mutex_lock(&sc->mu);
            struct scrape_sample *d = &sc->s[sc->n % sc->cap];
            d->t_ns = t;
            d->running = m.running;
            d->waiting = m.waiting;
            d->has_running = m.has_running;
            d->has_waiting = m.has_waiting;
            sc->n++;
            sc->n_ok++;
            pthread_mutex_unlock(&sc->mu);
            fails_in_row = 0;
        } else {
            pthread_mutex_lock(&sc->mu);
            sc->n_fail++;
            if (!sc->reason[0] || st == PROM_ERR_HTTP)
                snprintf(sc->reason, sizeof sc->reason, "%.60s: %s%s%.150s", sc->url,
                         prom_status_str(st), err[0] ? ": " : "", err);
            pthread_mutex_unlock(&sc->mu);
            /* A server without /metrics (404/501) will not grow one: stop asking. */
            if (st == PROM_ERR_HTTP && ++fails_in_row >= 3) {
                sc->gave_up = 1;
                break;
            }
        }
        prom_set_free(&set);
        for (int slept = 0; slept < sc->interval_ms && !atomic_load(&sc->stop); slept += 10)
            clock_sleep_ns(10 * 1000000ull);
    }
    return NULL;
}

static struct bscr *bscr_new(const char *base_url, const char *api_key, int interval_ms)
{
    struct bscr *sc = xcalloc(1, sizeof *sc);
    snprintf(sc->url, sizeof sc->url, "%s/metrics", base_url);
    sc->api_key = api_key;
    sc->interval_ms = interval_ms;
    sc->cap = 200000;
    sc->s = xcalloc(sc->cap, sizeof *sc->s);
    pthread_mutex_init(&sc->mu, NULL);
    atomic_init(&sc->stop, 0);
    if (pthread_create(&sc->thread, NULL, bscr_main, sc) == 0)
        sc->started = 1;
    else
        snprintf(sc->reason, sizeof sc->reason, "could not start the scraper thread");
    return sc;
}

static void bscr_free(struct bscr *sc)
{
    if (!sc)
        return;
    atomic_store(&sc->stop, 1);
    if (sc->started)
        pthread_join(sc->thread, NULL);
    pthread_mutex_destroy(&sc->mu);
    free(sc->s);
    free(sc);
}

static void bscr_window(struct bscr *sc, mono_ns t0, mono_ns t1, struct scrape_window *w)
{
    memset(w, 0, sizeof *w);
    w->waiting_mean = w->waiting_max = w->running_mean = w->running_max = NAN;
    w->kv_usage_max = NAN;
    if (!sc)
        return;
    double ws = 0, rs = 0, wmax = -1, rmax = -1;
    int nw = 0, nr = 0;
    pthread_mutex_lock(&sc->mu);
    size_t first = sc->n > sc->cap ? sc->n - sc->cap : 0;
    for (size_t i = first; i < sc->n; i++) {
        const struct scrape_sample *s = &sc->s[i % sc->cap];
        if (s->t_ns < t0 || s->t_ns > t1)
            continue;
        w->n++;
        if (s->has_waiting) {
            ws += s->waiting;
            wmax = s->waiting > wmax ? s->waiting : wmax;
            nw++;
        }
        if (s->has_running) {
            rs += s->running;
            rmax = s->running > rmax ? s->running : rmax;
            nr++;
        }
    }
    pthread_mutex_unlock(&sc->mu);
    if (nw) {
        w->has_waiting = 1;
        w->waiting_mean = ws / nw;
        w->waiting_max = wmax;
    }
    if (nr) {
        w->has_running = 1;
        w->running_mean = rs / nr;
        w->running_max = rmax;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Run context and phases                                                                     */
/* ------------------------------------------------------------------------------------------ */

enum phase_status { PHASE_STATUS_OK = 0, PHASE_STATUS_SERVER_EXIT, PHASE_STATUS_INTERRUPTED };

struct run_ctx {
    const struct batch_opts *o;
    struct probe_opts *po;
    struct target *t;
    struct client *c;
    struct workload *w;
    struct record_writer *jsonl;
    struct telemetry_sampler *tel;
    struct bscr *scr;
    struct buf prompt;
    uint64_t next_id;
    uint64_t next_prompt;
    int jsonl_failed;
    int progress;
    /* the phase being run */
    const char *tag;
    int level;
    int collect;         /* keep records for statistics (0: warm-up) */
    int closed;          /* closed loop: top up from the callback */
    int to_submit;       /* closed loop: submissions left */
    mono_ns deadline_ns; /* closed loop with --duration: no submissions after */
    int in_flight;
    int n_done;
    mono_ns t_last_ns;
    double inflight_area_ns; /* integral of in-flight count over time */
    struct request_record *recs;
    size_t n_recs, cap_recs;
    /* server health */
    int server_dead;
    int suspect; /* url mode: a connect error asks for a health check */
    char death_msg[768];
    int interrupted;
    int aborted; /* client_abort_all done after a death or interrupt */
    int n_submit_fail;
    struct client_ceiling ceiling; /* the client's measured limits (make bench), if any */
};

static void inflight_account(struct run_ctx *x, mono_ns now)
{
    if (x->t_last_ns && now > x->t_last_ns)
        x->inflight_area_ns += (double)(now - x->t_last_ns) * x->in_flight;
    x->t_last_ns = now;
}

static void note_death(struct run_ctx *x)
{
    if (x->server_dead)
        return;
    x->server_dead = 1;
    if (x->t->launched) {
        char ex[128];
        target_exit_str(&x->t->exit, ex, sizeof ex);
        snprintf(x->death_msg, sizeof x->death_msg, "The server (pid %d) exited during the run: %s",
                 (int)x->t->pid, ex);
    } else {
        snprintf(x->death_msg, sizeof x->death_msg,
                 "The server at %s stopped answering during the run", x->t->base_url);
    }
    log_error(MOD, "%s", x->death_msg);
}

/* Launched server: 1 if it has exited. A connection reset can be seen a moment before the exit is
 * visible to waitpid, so a failing request waits up to ~100 ms for it. */
static int server_exited(struct run_ctx *x, int wait_a_moment)
{
    if (!x->t->launched)
        return 0;
    for (int i = 0; i < (wait_a_moment ? 20 : 1); i++) {
        if (!target_alive(x->t))
            return 1;
        if (wait_a_moment)
            clock_sleep_ns(5 * 1000000ull);
    }
    return 0;
}

static int submit_one(struct run_ctx *x, mono_ns t_intended_ns);

static void on_done(void *ud, struct request_record *rec)
{
    struct run_ctx *x = ud;
    mono_ns now = clock_now_ns();
    inflight_account(x, now);
    x->in_flight--;
    x->n_done++;
    enum req_error e = rec->error;
    if (e == REQ_ERROR_CONNECT || e == REQ_ERROR_PROTOCOL || e == REQ_ERROR_ABORTED ||
        e == REQ_ERROR_TIMEOUT) {
        if (!x->server_dead && server_exited(x, e != REQ_ERROR_ABORTED))
            note_death(x);
        if (x->server_dead)
            rec->error = REQ_ERROR_SERVER_EXIT;
        else if (e == REQ_ERROR_CONNECT && !x->t->launched)
            x->suspect = 1;
    }
    if (x->jsonl && record_writer_append(x->jsonl, rec) != 0 && !x->jsonl_failed) {
        x->jsonl_failed = 1;
        log_error(MOD, "cannot append to the request log: %s", strerror(errno));
    }
    if (x->collect) {
        if (x->n_recs == x->cap_recs) {
            size_t cap = x->cap_recs ? x->cap_recs * 2 : 256;
            struct request_record *p = xrealloc(x->recs, cap * sizeof *p);
            x->recs = p;
            x->cap_recs = cap;
        }
        x->recs[x->n_recs++] = *rec; /* takes t_content_ns */
    } else {
        record_free(rec);
    }
    if (x->closed && x->to_submit > 0 && !x->server_dead && !x->interrupted &&
        !target_interrupted() && (!x->deadline_ns || now < x->deadline_ns)) {
        x->to_submit--;
        submit_one(x, 0);
    }
}

static int submit_one(struct run_ctx *x, mono_ns t_intended_ns)
{
    buf_reset(&x->prompt);
    if (workload_prompt(x->w, x->next_prompt++, &x->prompt, NULL) != WORKLOAD_OK) {
        log_error(MOD, "prompt %llu does not fit the prompt buffer",
                  (unsigned long long)(x->next_prompt - 1));
        x->n_submit_fail++;
        return -1;
    }
    const struct batch_opts *o = x->o;
    /* Warm-ups only need to open connections and run every batch shape: short answers. */
    int n_out =
        x->collect || o->output_len < BATCH_WARMUP_TOKENS ? o->output_len : BATCH_WARMUP_TOKENS;
    struct client_request rq = {
        .id = x->next_id++,
        .tag = x->tag,
        .level = x->level,
        .prompt = x->prompt.data,
        .prompt_len = x->prompt.len,
        .max_tokens = n_out,
        .ignore_eos = 1,
        .min_tokens = n_out,
        .temperature = 0.0,
        .extra_json = NULL,
        .t_intended_ns = t_intended_ns,
    };
    inflight_account(x, clock_now_ns());
    x->in_flight++;
    if (client_submit(x->c, &rq) != 0) {
        x->in_flight--;
        x->n_submit_fail++;
        log_error(MOD, "the client refused request %llu", (unsigned long long)rq.id);
        return -1;
    }
    return 0;
}

static void phase_reset(struct run_ctx *x, const char *tag, int level, int collect)
{
    x->tag = tag;
    x->level = level;
    x->collect = collect;
    x->closed = 0;
    x->to_submit = 0;
    x->deadline_ns = 0;
    x->n_done = 0;
    x->t_last_ns = 0;
    x->inflight_area_ns = 0;
    for (size_t i = 0; i < x->n_recs; i++)
        record_free(&x->recs[i]);
    x->n_recs = 0;
}

static void progress_line(struct run_ctx *x, const char *what, int total, mono_ns t_start)
{
    static mono_ns last;
    mono_ns now = clock_now_ns();
    if (!x->progress || now - last < 250 * 1000000ull)
        return;
    last = now;
    char tot[32] = "";
    if (total > 0)
        snprintf(tot, sizeof tot, "/%d", total);
    fprintf(stderr, "\r\033[K%s: %d%s done, %d in flight, %.1f s", what, x->n_done, tot,
            x->in_flight, ns_to_s(now - t_start));
    fflush(stderr);
}

static void progress_end(struct run_ctx *x)
{
    if (x->progress) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}

/* Polls until every request of the phase finished; for open loop also sends on schedule. */
static enum phase_status phase_drive(struct run_ctx *x, const char *what, int total,
                                     const mono_ns *sched, int n_sched, int max_conc)
{
    mono_ns t_start = clock_now_ns();
    int i_next = 0;
    while (1) {
        if (target_interrupted() && !x->interrupted) {
            x->interrupted = 1;
            log_warn(MOD, "interrupted: ending the requests in flight");
            client_abort_all(x->c);
        }
        if (!x->server_dead && server_exited(x, 0)) {
            note_death(x);
            client_abort_all(x->c);
        }
        if (x->suspect && !x->server_dead) {
            x->suspect = 0;
            struct buf body;
            buf_init(&body, 256, 4096);
            int status = 0;
            char err[256], url[320];
            snprintf(url, sizeof url, "%s/health", x->t->base_url);
            if (http_get(url, x->po->target.api_key, 2000, &body, &status, err, sizeof err) != 0) {
                note_death(x);
                client_abort_all(x->c);
            }
            buf_free(&body);
        }
        int stopping = x->server_dead || x->interrupted;
        /* A death noticed inside a callback: end what is still in flight (once). */
        if (stopping && !x->aborted && client_in_flight(x->c) > 0) {
            x->aborted = 1;
            client_abort_all(x->c);
        }
        mono_ns now = clock_now_ns();
        long timeout_ms = 50;
        if (sched && !stopping) {
            while (i_next < n_sched && sched[i_next] <= now &&
                   (max_conc <= 0 || x->in_flight < max_conc)) {
                submit_one(x, sched[i_next]);
                i_next++;
                now = clock_now_ns();
            }
            if (i_next < n_sched && (max_conc <= 0 || x->in_flight < max_conc)) {
                mono_ns due = sched[i_next];
                timeout_ms = due > now ? (long)((due - now) / 1000000ull) : 0;
                if (timeout_ms > 50)
                    timeout_ms = 50;
            }
        }
        int pending = sched && !stopping && i_next < n_sched;
        if (!pending && x->in_flight <= 0 && client_in_flight(x->c) == 0)
            break;
        client_poll(x->c, (int)timeout_ms);
        progress_line(x, what, total, t_start);
    }
    progress_end(x);
    if (x->server_dead)
        return PHASE_STATUS_SERVER_EXIT;
    if (x->interrupted)
        return PHASE_STATUS_INTERRUPTED;
    return PHASE_STATUS_OK;
}

/* Closed loop: keeps `concurrency` requests in flight until n_total were sent (or duration_s is
 * over, when > 0). */
static enum phase_status run_closed(struct run_ctx *x, const char *tag, int level, int collect,
                                    int concurrency, int n_total, double duration_s)
{
    phase_reset(x, tag, level, collect);
    x->closed = 1;
    if (duration_s > 0) {
        n_total = BATCH_MAX_REQUESTS;
        x->deadline_ns = clock_now_ns() + (mono_ns)(duration_s * 1e9);
    }
    int first = concurrency < n_total ? concurrency : n_total;
    x->to_submit = n_total - first;
    for (int i = 0; i < first && !x->server_dead; i++)
        submit_one(x, 0);
    return phase_drive(x, tag, duration_s > 0 ? 0 : n_total, NULL, 0, 0);
}

/* Open loop: sends at the precomputed intended times. */
static enum phase_status run_open(struct run_ctx *x, const char *tag, int level,
                                  const mono_ns *sched, int n, int max_conc)
{
    phase_reset(x, tag, level, 1);
    return phase_drive(x, tag, n, sched, n, max_conc);
}

/* ------------------------------------------------------------------------------------------ */
/* Statistics over a phase's records                                                          */
/* ------------------------------------------------------------------------------------------ */

static void compute_stats(struct run_ctx *x, double load, int open_loop, struct batch_level *ls)
{
    memset(ls, 0, sizeof *ls);
    ls->load = load;
    ls->complete = !x->server_dead && !x->interrupted;
    ls->n_repeats = 1;
    size_t n = x->n_recs;
    const struct request_record *r = x->recs;
    double *e2e = xcalloc(n + 1, sizeof(double)), *ttft = xcalloc(n + 1, sizeof(double));
    double *tpot = xcalloc(n + 1, sizeof(double)), *e2e_i = xcalloc(n + 1, sizeof(double));
    double *ttft_i = xcalloc(n + 1, sizeof(double)), *qd = xcalloc(n + 1, sizeof(double));
    size_t n_itl = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].error == REQ_ERROR_NONE && r[i].n_content_events > 1)
            n_itl += r[i].n_content_events - 1;
    double *itl = xcalloc(n_itl + 1, sizeof(double));
    size_t n_e2e = 0, n_ttft = 0, n_tpot = 0, n_e2e_i = 0, n_ttft_i = 0, n_qd = 0, k_itl = 0;
    mono_ns t0 = 0, t1 = 0, s0 = 0, s1 = 0, i0 = 0, i1 = 0;
    double out_tok = 0, prompt_tok = 0, n_prompt_known = 0;
    double pmin = NAN, pmax = NAN;
    for (size_t i = 0; i < n; i++) {
        const struct request_record *q = &r[i];
        ls->n_sent++;
        mono_ns start = open_loop && q->t_intended_ns ? q->t_intended_ns : q->t_sent_ns;
        if (q->t_sent_ns && (!t0 || start < t0))
            t0 = start;
        if (q->t_done_ns > t1)
            t1 = q->t_done_ns;
        if (q->t_sent_ns && (!s0 || q->t_sent_ns < s0))
            s0 = q->t_sent_ns;
        if (q->t_sent_ns > s1)
            s1 = q->t_sent_ns;
        if (q->t_intended_ns && (!i0 || q->t_intended_ns < i0))
            i0 = q->t_intended_ns;
        if (q->t_intended_ns > i1)
            i1 = q->t_intended_ns;
        if (q->t_sent_ns && q->t_intended_ns && q->t_sent_ns >= q->t_intended_ns)
            qd[n_qd++] = ns_to_ms(q->t_sent_ns - q->t_intended_ns);
        if (q->error != REQ_ERROR_NONE) {
            ls->n_err++;
            if ((unsigned)q->error < REQ_ERROR__COUNT) {
                if (!ls->n_err_class[q->error]++)
                    snprintf(ls->err_msg[q->error], sizeof ls->err_msg[q->error], "%.*s",
                             (int)sizeof ls->err_msg[0] - 1, q->error_msg);
            }
            continue;
        }
        ls->n_ok++;
        int64_t v;
        double e2e_v = NAN, ttft_v = NAN, tpot_v = record_tpot_ms(q);
        if ((v = record_e2e_ns(q)) >= 0)
            e2e[n_e2e++] = e2e_v = ns_to_ms((uint64_t)v);
        if ((v = record_ttft_ns(q)) >= 0)
            ttft[n_ttft++] = ttft_v = ns_to_ms((uint64_t)v);
        if (!isnan(tpot_v))
            tpot[n_tpot++] = tpot_v;
        if ((v = record_e2e_intended_ns(q)) >= 0)
            e2e_i[n_e2e_i++] = ns_to_ms((uint64_t)v);
        if ((v = record_ttft_intended_ns(q)) >= 0)
            ttft_i[n_ttft_i++] = ns_to_ms((uint64_t)v);
        k_itl += record_itl_ms(q, itl + k_itl, n_itl - k_itl);
        if (q->n_completion_tokens >= 0)
            out_tok += q->n_completion_tokens;
        else
            ls->n_no_usage++;
        if (q->n_prompt_tokens >= 0) {
            prompt_tok += q->n_prompt_tokens;
            n_prompt_known++;
            if (isnan(pmin) || q->n_prompt_tokens < pmin)
                pmin = q->n_prompt_tokens;
            if (isnan(pmax) || q->n_prompt_tokens > pmax)
                pmax = q->n_prompt_tokens;
        }
        /* Goodput: latency measured from the intended send time in open loop (what a user sees). */
        double slo_e2e = e2e_v, slo_ttft = ttft_v;
        if (open_loop) {
            int64_t a = record_e2e_intended_ns(q), b = record_ttft_intended_ns(q);
            slo_e2e = a >= 0 ? ns_to_ms((uint64_t)a) : NAN;
            slo_ttft = b >= 0 ? ns_to_ms((uint64_t)b) : NAN;
        }
        if (knee_slo_met(&x->o->slo, slo_ttft, tpot_v, slo_e2e))
            ls->n_good++;
    }
    if (k_itl > n_itl)
        k_itl = n_itl;
    summary_of(e2e, n_e2e, &ls->e2e_ms);
    summary_of(ttft, n_ttft, &ls->ttft_ms);
    summary_of(tpot, n_tpot, &ls->tpot_ms);
    summary_of(itl, k_itl, &ls->itl_ms);
    summary_of(e2e_i, n_e2e_i, &ls->e2e_int_ms);
    summary_of(ttft_i, n_ttft_i, &ls->ttft_int_ms);
    summary_of(qd, n_qd, &ls->qdelay_ms);
    ls->duration_s = t1 > t0 ? ns_to_s(t1 - t0) : NAN;
    ls->qps = stats_rate(ls->n_ok, ls->duration_s);
    ls->tok_s = ls->n_ok > ls->n_no_usage ? stats_rate(out_tok, ls->duration_s) : NAN;
    ls->total_tok_s = n_prompt_known ? stats_rate(out_tok + prompt_tok, ls->duration_s) : NAN;
    ls->inflight_mean = t1 > t0 ? x->inflight_area_ns / (double)(t1 - t0) : NAN;
    ls->prompt_tok_mean = n_prompt_known ? prompt_tok / n_prompt_known : NAN;
    ls->prompt_tok_min = pmin;
    ls->prompt_tok_max = pmax;
    ls->out_tok_mean = ls->n_ok > ls->n_no_usage ? out_tok / (ls->n_ok - ls->n_no_usage) : NAN;
    if (knee_slo_is_set(&x->o->slo)) {
        ls->goodput_frac = ls->n_sent ? (double)ls->n_good / ls->n_sent : NAN;
        ls->goodput_rps = stats_rate(ls->n_good, ls->duration_s);
    } else {
        ls->goodput_frac = ls->goodput_rps = NAN;
    }
    ls->send_rate_rps = s1 > s0 && ls->n_sent > 1 ? (ls->n_sent - 1) / ns_to_s(s1 - s0) : NAN;
    ls->offered_rate_rps = i1 > i0 && ls->n_sent > 1 ? (ls->n_sent - 1) / ns_to_s(i1 - i0) : NAN;
    /* One content event carries about one token: tok/s stands for the client's event rate. */
    char ceiling_msg[256];
    if (x->ceiling.valid &&
        client_ceiling_warn(&x->ceiling, ls->tok_s, ls->qps, ceiling_msg, sizeof ceiling_msg))
        log_warn(MOD, "%s %g: %s", x->tag ? x->tag : "level", ls->load, ceiling_msg);
    /* Telemetry and /metrics over the same window. */
    ls->gpu_util_mean_pct = ls->gpu_util_max_pct = ls->gpu_mem_max_gib = NAN;
    ls->cpu_mean_pct = ls->cpu_max_pct = NAN;
    if (x->tel && t1 > t0) {
        struct telemetry_window tw;
        if (telemetry_sampler_window(x->tel, t0, t1 + 1000000, &tw) == 0) {
            ls->cpu_mean_pct = tw.cpu_mean_pct;
            ls->cpu_max_pct = tw.cpu_max_pct;
            ls->gpu_available = tw.gpu_available;
            if (tw.gpu_available) {
                ls->gpu_util_mean_pct = tw.gpu_util_mean_pct;
                ls->gpu_util_max_pct = tw.gpu_util_max_pct;
                ls->gpu_mem_max_gib =
                    tw.gpu_mem_used_max_bytes >= 0
                        ? (double)tw.gpu_mem_used_max_bytes / (1024.0 * 1024 * 1024)
                        : NAN;
            } else {
                snprintf(ls->gpu_reason, sizeof ls->gpu_reason, "%s", tw.gpu_reason);
            }
        }
    }
    bscr_window(x->scr, t0, t1, &ls->sw);
    free(e2e);
    free(ttft);
    free(tpot);
    free(e2e_i);
    free(ttft_i);
    free(qd);
    free(itl);
}

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
static enum phase_status warmup(struct run_ctx *x, int conc, const char *what)
{
    int n = x->o->warmup < 0 ? conc : x->o->warmup;
    if (n <= 0)
        return PHASE_STATUS_OK;
    char tag[32];
    snprintf(tag, sizeof tag, "warmup %s", what);
    return run_closed(x, tag, -1, 0, conc, n, 0);
}

static enum phase_status run_seqconc(struct run_ctx *x, struct batch_result *res)
{
    const struct batch_opts *o = x->o;
    int n = o->num_requests;
    log_info(MOD, "sequential vs concurrent: %d requests", n);
    enum phase_status st = warmup(x, 1, "seq");
    if (st)
        return st;
    st = run_closed(x, "seq", -1, 1, 1, n, 0);
    compute_stats(x, 1, 0, &res->seq);
    res->have_seqconc = 1;
    if (st)
        return st;
    st = warmup(x, n, "conc");
    if (st)
        return st;
    st = run_closed(x, "conc", -1, 1, n, n, 0);
    compute_stats(x, n, 0, &res->conc);
    return st;
}

static enum phase_status run_sweep(struct run_ctx *x, struct batch_result *res)
{
    const struct batch_opts *o = x->o;
    enum phase_status st = PHASE_STATUS_OK;
    int L = o->n_conc, R = o->repeat;
    /* Repeats are whole sweeps (1..32, then 1..32 again), so a slow drift of the machine spreads
     * over every level instead of biasing one. */
    struct batch_level *rep = xcalloc((size_t)L * (size_t)R, sizeof *rep);
    int *n_rep = xcalloc((size_t)L, sizeof *n_rep);
    for (int k = 0; k < R && !st; k++) {
        for (int i = 0; i < L && !st; i++) {
            int conc = o->conc[i];
            char what[32], tag[32];
            snprintf(what, sizeof what, "c=%d", conc);
            log_info(MOD, "sweep %d/%d: concurrency %d", k + 1, R, conc);
            st = warmup(x, conc, what);
            if (st)
                break;
            snprintf(tag, sizeof tag, "c=%d r%d", conc, k + 1);
            st = run_closed(x, tag, i, 1, conc, batch_level_requests(o, conc), o->duration_s);
            struct batch_level *ls = &rep[(size_t)i * R + (size_t)n_rep[i]++];
            compute_stats(x, conc, 0, ls);
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

static enum phase_status run_open_rates(struct run_ctx *x, struct batch_result *res)
{
    const struct batch_opts *o = x->o;
    enum phase_status st = PHASE_STATUS_OK;
    for (int i = 0; i < o->n_rates && !st; i++) {
        double rate = o->rates[i];
        long n = o->requests     ? o->requests
                 : o->duration_s ? lround(rate * o->duration_s)
                                 : lround(10.0 * rate);
        if (n < (o->requests ? 1 : 8))
            n = o->requests ? 1 : 8;
        if (n > BATCH_MAX_REQUESTS)
            n = BATCH_MAX_REQUESTS;
        char what[48];
        snprintf(what, sizeof what, "rate=%g", rate);
        int wn = o->warmup < 0 ? 4 : o->warmup;
        if (wn > 0) {
            char tag[64];
            snprintf(tag, sizeof tag, "warmup %s", what);
            st = run_closed(x, tag, -1, 0, wn, wn, 0);
            if (st)
                break;
        }
        log_info(MOD, "open loop: %g req/s, %ld requests%s", rate, n,
                 o->burstiness != 1.0 ? " (bursty)" : "");
        mono_ns *sched = xcalloc((size_t)n, sizeof *sched);
        make_schedule(sched, (int)n, clock_now_ns() + 1000000ull, rate, o->burstiness,
                      o->seed + (uint64_t)i);
        char tag[32];
        snprintf(tag, sizeof tag, "rate=%g", rate);
        st = run_open(x, tag, i, sched, (int)n, o->max_concurrency);
        free(sched);
        struct batch_level *ls = &res->open[res->n_open++];
        compute_stats(x, rate, 1, ls);
        /* Could the client keep the schedule? */
        if (ls->n_sent > 2 && ((!isnan(ls->send_rate_rps) && !isnan(ls->offered_rate_rps) &&
                                ls->send_rate_rps < 0.95 * ls->offered_rate_rps) ||
                               ls->qdelay_ms.p95 > 50.0)) {
            snprintf(res->open_warn[res->n_open - 1], sizeof res->open_warn[0],
                     "rate %g req/s was not sustained: the schedule asked for %.2f req/s, requests "
                     "went out at %.2f req/s, with client-side queueing delay p95 %.1f ms (max "
                     "%.1f ms)%s.",
                     rate, ls->offered_rate_rps, ls->send_rate_rps, ls->qdelay_ms.p95,
                     ls->qdelay_ms.max,
                     o->max_concurrency ? " (--max-concurrency holds requests back)" : "");
            log_warn(MOD, "%s", res->open_warn[res->n_open - 1]);
        }
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
            : (po->target.kind == TARGET_KIND_EMBEDDED ? WORKLOAD_UNIT_BYTE : WORKLOAD_UNIT_WORD);
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

static void server_facts(const struct probe_opts *po, const struct target *t,
                         struct batch_server *sv)
{
    sv->launched = t->launched;
    sv->pid = (int)t->pid;
    snprintf(sv->kind, sizeof sv->kind, "%s", target_kind_str(po->target.kind));
    snprintf(sv->base_url, sizeof sv->base_url, "%s", t->base_url);
    snprintf(sv->version, sizeof sv->version, "%s", t->version);
    sv->max_model_len = t->max_model_len;
    snprintf(sv->log_path, sizeof sv->log_path, "%s", t->log_path);
}

static void run_phases(struct run_ctx *x, struct batch_result *res)
{
    const struct batch_opts *o = x->o;
    enum phase_status st = PHASE_STATUS_OK;
    if (o->do_seqconc)
        st = run_seqconc(x, res);
    if (!st && o->do_sweep)
        st = run_sweep(x, res);
    if (!st && o->do_open)
        st = run_open_rates(x, res);
    if (x->scr && x->scr->gave_up)
        snprintf(res->metrics_note, sizeof res->metrics_note, "no /metrics from the server (%s)",
                 x->scr->reason);
    if (st == PHASE_STATUS_SERVER_EXIT) {
        res->failed = 1;
        snprintf(res->failure, sizeof res->failure,
                 "%s. Levels finished before the failure are reported; the level that was running "
                 "is marked incomplete and left out of the knee.",
                 x->death_msg);
    } else if (st == PHASE_STATUS_INTERRUPTED) {
        res->interrupted = 1;
        snprintf(res->failure, sizeof res->failure,
                 "Interrupted (signal) during the run: levels finished before are reported; the "
                 "level that was running is marked incomplete.");
    }
}

int batch_run(const struct batch_opts *o, const struct probe_opts *po, struct batch_result *res)
{
    char err[1024] = "";
    struct workload w;
    memset(&w, 0, sizeof w);
    res->opts = *o;
    clock_wall_iso(res->started_at, sizeof res->started_at);
    if (workload_make(o, po, &w, err, sizeof err) != 0) {
        snprintf(res->failure, sizeof res->failure, "%s", err);
        workload_free(&w);
        return 2;
    }
    struct buf d;
    buf_init(&d, 512, 8192);
    workload_describe(&w, &d);
    snprintf(res->workload_desc, sizeof res->workload_desc, "%s", d.data ? d.data : "");
    buf_free(&d);
    struct run_ctx x;
    memset(&x, 0, sizeof x);
    x.o = o;
    x.po = (struct probe_opts *)po;
    x.w = &w;
    x.progress = o->progress < 0 ? isatty(2) : o->progress;
    client_ceiling_load(NULL, &x.ceiling);
    buf_init(&x.prompt, 4096, (size_t)1 << 28);
    target_install_signal_handlers();
    struct target *t = target_new(&po->target);
    x.t = t;
    log_info(MOD, "starting the %s server", target_kind_str(po->target.kind));
    if (target_start(t, err, sizeof err) != TARGET_OK) {
        log_error(MOD, "server start failed: %s", err);
        res->failed = 1;
        snprintf(res->failure, sizeof res->failure, "The server did not start: %s", err);
        goto stop;
    }
    log_info(MOD, "server ready at %s", t->base_url);
    struct client_config cc;
    probe_opts_client_config(po, t->base_url, &cc);
    x.c = client_new(&cc, on_done, &x, err, sizeof err);
    if (!x.c) {
        res->failed = 1;
        snprintf(res->failure, sizeof res->failure, "The client could not start: %s", err);
        goto stop;
    }
    snprintf(res->model, sizeof res->model, "%s", client_model(x.c));
    char path[1200];
    snprintf(path, sizeof path, "%s/batch_requests.jsonl", po->out_dir);
    FILE *trunc = fopen(path, "w"); /* one run per file: start it empty */
    if (trunc)
        fclose(trunc);
    x.jsonl = record_writer_open(path, err, sizeof err);
    if (!x.jsonl)
        log_warn(MOD, "no per-request log: %s", err);
    x.tel = telemetry_sampler_new(
        &(struct telemetry_sampler_config){.root_pid = t->launched ? t->pid : 0,
                                           .interval_ms = 200,
                                           .cap_samples = 36000,
                                           .with_gpu = 1});
    if (telemetry_sampler_start(x.tel) != 0)
        log_warn(MOD, "telemetry sampler did not start");
    x.scr = bscr_new(t->base_url, po->target.api_key, o->metrics_interval_ms);
    run_phases(&x, res);
stop:
    client_free(x.c); /* aborts anything still in flight (delivered to on_done first) */
    bscr_free(x.scr);
    telemetry_sampler_free(x.tel);
    server_facts(po, t, &res->server);
    if (t->launched) {
        struct target_stop_result sr;
        target_stop(t, &sr);
        char ex[128];
        target_exit_str(&sr.exit, ex, sizeof ex);
        snprintf(res->server.end, sizeof res->server.end, "%s%s",
                 sr.was_running ? "Stopped at the end: " : "Exited: ", ex);
    }
    batch_analyze(res);
    for (size_t i = 0; i < x.n_recs; i++)
        record_free(&x.recs[i]);
    free(x.recs);
    record_writer_close(x.jsonl);
    buf_free(&x.prompt);
    target_free(t);
    workload_free(&w);
    if (target_interrupted())
        res->interrupted = 1;
    return res->interrupted ? 130 : res->failed ? 1 : 0;
}
