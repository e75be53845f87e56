/* driver: the one load driver (run/driver.h). One loop per phase on the caller's thread: check
 * for the server's death and for cancellation, release held failures whose grace is over, submit
 * what is due (sequential: after the think time; closed: while a slot is free; open: at the
 * schedule), then poll the client for at most the time to the next event. A failed request is
 * held, not slept on, so other streams keep their timestamps; in --url mode a thread of its own
 * does GET /health when asked. Records go to the session's sink (its thread writes them), into
 * the histograms of struct driver_result, and are kept up to keep_records. It computes no level
 * statistics beyond those and knows no probe. */
#include "run/driver.h"

#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

#define MOD "driver"
#define DRIVER_POLL_MAX_MS 50
#define DRIVER_HEALTH_TIMEOUT_MS (DRIVER_EXIT_GRACE_MS * 4 / 5)
#define DRIVER_PROGRESS_NS (250 * 1000000ull)

struct held {
    struct request_record rec; /* owned */
    mono_ns deadline_ns;
};

struct driver {
    struct session *s;
    struct launch *L;
    struct client *c;
    struct record_sink *sink;
    struct buf prompt;
    char reason[512];
    uint64_t next_id;
    int sink_failed;
    /* --url health checks */
    pthread_t health_thread;
    int health_started;
    pthread_mutex_t health_mu;
    pthread_cond_t health_cv;
    int health_want, health_stop; /* guarded by health_mu */
    atomic_int health_dead;
    char health_url[320];
    const char *api_key;
    /* the phase being run */
    const struct driver_phase *ph;
    struct driver_result *res;
    uint64_t i_next, n_total;
    mono_ns deadline_ns;  /* closed loop with a duration */
    mono_ns not_before_ns; /* sequential: end of the think time */
    int in_client;        /* submitted, not delivered yet */
    struct held *held;
    size_t n_held, cap_held;
    double *itl;
    size_t cap_itl;
    size_t cap_recs;
    mono_ns t_last_ns;
    double inflight_area_ns;
    int dead, cancelled, aborted, stop_submit;
    int progress;
    mono_ns t_progress_ns;
};

const char *driver_mode_str(enum driver_mode m)
{
    switch (m) {
    case DRIVER_MODE_SEQUENTIAL: return "sequential";
    case DRIVER_MODE_CLOSED: return "closed";
    case DRIVER_MODE_OPEN: return "open";
    }
    return "unknown";
}

const char *driver_status_str(enum driver_status st)
{
    switch (st) {
    case DRIVER_STATUS_OK: return "ok";
    case DRIVER_STATUS_SERVER_EXIT: return "server_exit";
    case DRIVER_STATUS_CANCELLED: return "cancelled";
    case DRIVER_STATUS_ERR_MAKE: return "err_make";
    }
    return "unknown";
}

/* ---- the --url health thread ---- */

static void *health_main(void *arg)
{
    struct driver *d = arg;
    struct buf body;
    buf_init(&body, 256, 4096);
    pthread_mutex_lock(&d->health_mu);
    for (;;) {
        while (!d->health_want && !d->health_stop)
            pthread_cond_wait(&d->health_cv, &d->health_mu);
        if (d->health_stop)
            break;
        d->health_want = 0;
        pthread_mutex_unlock(&d->health_mu);
        int status = 0;
        char err[256];
        buf_reset(&body);
        if (http_get(d->health_url, d->api_key, DRIVER_HEALTH_TIMEOUT_MS, &body, &status, err,
                     sizeof err) != 0)
            atomic_store(&d->health_dead, 1);
        pthread_mutex_lock(&d->health_mu);
    }
    pthread_mutex_unlock(&d->health_mu);
    buf_free(&body);
    return NULL;
}

static void health_ask(struct driver *d)
{
    if (!d->health_started)
        return;
    pthread_mutex_lock(&d->health_mu);
    d->health_want = 1;
    pthread_cond_signal(&d->health_cv);
    pthread_mutex_unlock(&d->health_mu);
}

/* ---- server death ---- */

static int server_gone(struct driver *d)
{
    if (d->L->url_mode)
        return atomic_load(&d->health_dead) != 0;
    return d->L->t && d->L->t->launched && !target_alive(d->L->t);
}

static void note_death(struct driver *d)
{
    if (d->dead)
        return;
    d->dead = 1;
    struct driver_result *r = d->res;
    if (d->L->url_mode) {
        snprintf(r->stop_reason, sizeof r->stop_reason,
                 "The server at %s stopped answering during the run", d->L->t->base_url);
    } else {
        char ex[128];
        target_exit_str(&d->L->t->exit, ex, sizeof ex);
        snprintf(r->stop_reason, sizeof r->stop_reason,
                 "The server (pid %d) exited during the run: %s", (int)d->L->t->pid, ex);
    }
    log_error(MOD, "%s", r->stop_reason);
}

/* ---- finished requests ---- */

static void inflight_account(struct driver *d, mono_ns now)
{
    if (d->t_last_ns && now > d->t_last_ns)
        d->inflight_area_ns += (double)(now - d->t_last_ns) * d->in_client;
    d->t_last_ns = now;
}

static void add_ok_stats(struct driver *d, const struct request_record *rec)
{
    struct driver_result *r = d->res;
    r->n_ok++;
    int64_t e2e = record_e2e_ns(rec), ttft = record_ttft_ns(rec);
    if (e2e >= 0)
        hist_add(&r->e2e_ms, ns_to_ms((uint64_t)e2e));
    if (ttft >= 0)
        hist_add(&r->ttft_ms, ns_to_ms((uint64_t)ttft));
    double tpot = record_tpot_ms(rec);
    if (isfinite(tpot))
        hist_add(&r->tpot_ms, tpot);
    if (rec->n_content_events > d->cap_itl) {
        free(d->itl);
        d->cap_itl = (size_t)rec->n_content_events * 2;
        d->itl = xmalloc(d->cap_itl * sizeof *d->itl);
    }
    size_t n_itl = record_itl_ms(rec, d->itl, d->cap_itl);
    for (size_t i = 0; i < n_itl && i < d->cap_itl; i++)
        hist_add(&r->itl_ms, d->itl[i]);
    if (d->ph->mode == DRIVER_MODE_OPEN) {
        int64_t e2e_i = record_e2e_intended_ns(rec), ttft_i = record_ttft_intended_ns(rec);
        if (e2e_i >= 0)
            hist_add(&r->e2e_int_ms, ns_to_ms((uint64_t)e2e_i));
        if (ttft_i >= 0)
            hist_add(&r->ttft_int_ms, ns_to_ms((uint64_t)ttft_i));
        if (rec->t_sent_ns >= rec->t_intended_ns)
            hist_add(&r->qdelay_ms, ns_to_ms(rec->t_sent_ns - rec->t_intended_ns));
    }
    if (rec->n_completion_tokens < 0 || rec->n_prompt_tokens < 0) {
        r->n_no_usage++;
    } else {
        r->prompt_tokens += (uint64_t)rec->n_prompt_tokens;
        r->completion_tokens += (uint64_t)rec->n_completion_tokens;
        if (r->prompt_tok_min < 0 || rec->n_prompt_tokens < r->prompt_tok_min)
            r->prompt_tok_min = rec->n_prompt_tokens;
        if (rec->n_prompt_tokens > r->prompt_tok_max)
            r->prompt_tok_max = rec->n_prompt_tokens;
    }
    if (rec->n_cached_tokens >= 0) {
        r->cached_tokens += (uint64_t)rec->n_cached_tokens;
        r->n_cached_known++;
    }
    r->n_events += rec->n_events;
    if (rec->n_events >= 2 && rec->t_first_event_ns && rec->t_done_ns > rec->t_first_event_ns) {
        double eps = (double)(rec->n_events - 1) / ns_to_s(rec->t_done_ns - rec->t_first_event_ns);
        if (eps > r->max_events_per_s)
            r->max_events_per_s = eps;
    }
}

/* A classified record: statistics, sink, callback, kept or freed. Takes rec's contents. */
static void finish_record(struct driver *d, struct request_record *rec)
{
    struct driver_result *r = d->res;
    const struct driver_phase *ph = d->ph;
    r->n_done++;
    if (rec->t_done_ns > r->t_end_ns)
        r->t_end_ns = rec->t_done_ns;
    r->n_retried += rec->n_retries > 0;
    if (rec->error == REQ_ERROR_NONE) {
        add_ok_stats(d, rec);
    } else if ((int)rec->error > 0 && rec->error < REQ_ERROR__COUNT) {
        if (r->n_err_class[rec->error]++ == 0)
            snprintf(r->err_msg[rec->error], sizeof r->err_msg[rec->error], "%.199s",
                     rec->error_msg);
    }
    if (d->sink && !ph->no_sink && record_sink_push(d->sink, rec) != 0)
        d->sink_failed = 1;
    if (ph->on_record)
        ph->on_record(ph->ud, rec);
    if (r->n_recs < ph->keep_records) {
        if (r->n_recs == d->cap_recs) {
            size_t cap = d->cap_recs ? d->cap_recs * 2 : 64;
            if (cap > ph->keep_records)
                cap = ph->keep_records;
            r->recs = xrealloc(r->recs, cap * sizeof *r->recs);
            d->cap_recs = cap;
        }
        r->recs[r->n_recs++] = *rec;
    } else {
        r->n_recs_dropped++;
        record_free(rec);
    }
    if (ph->mode == DRIVER_MODE_SEQUENTIAL && ph->think_s > 0)
        d->not_before_ns = clock_now_ns() + (mono_ns)(ph->think_s * 1e9);
}

static void hold_record(struct driver *d, struct request_record *rec, mono_ns now)
{
    if (d->n_held == d->cap_held) {
        size_t cap = d->cap_held ? d->cap_held * 2 : 16;
        d->held = xrealloc(d->held, cap * sizeof *d->held);
        d->cap_held = cap;
    }
    d->held[d->n_held].rec = *rec;
    d->held[d->n_held].deadline_ns = now + (mono_ns)DRIVER_EXIT_GRACE_MS * 1000000ull;
    d->n_held++;
    if (d->L->url_mode)
        health_ask(d);
}

static void on_done(void *ud, struct request_record *rec)
{
    struct driver *d = ud;
    if (!d->res) { /* client_free after the phases: nothing to count */
        record_free(rec);
        return;
    }
    mono_ns now = clock_now_ns();
    inflight_account(d, now);
    d->in_client--;
    enum req_error e = rec->error;
    if (e == REQ_ERROR_NONE) {
        finish_record(d, rec);
        return;
    }
    if (!d->dead && server_gone(d))
        note_death(d);
    if (d->dead)
        rec->error = REQ_ERROR_SERVER_EXIT;
    else if (e == REQ_ERROR_CONNECT || e == REQ_ERROR_PROTOCOL || e == REQ_ERROR_TIMEOUT) {
        hold_record(d, rec, now); /* the loop keeps running the other streams */
        return;
    }
    finish_record(d, rec);
}

/* Held failures: server_exit once the server is gone, their own class after the grace. */
static void release_held(struct driver *d, mono_ns now)
{
    size_t kept = 0;
    for (size_t i = 0; i < d->n_held; i++) {
        struct held *h = &d->held[i];
        if (d->dead)
            h->rec.error = REQ_ERROR_SERVER_EXIT;
        if (d->dead || d->cancelled || now >= h->deadline_ns)
            finish_record(d, &h->rec);
        else
            d->held[kept++] = *h;
    }
    d->n_held = kept;
}

/* ---- submitting ---- */

static int submit_one(struct driver *d, mono_ns t_intended_ns)
{
    const struct driver_phase *ph = d->ph;
    struct driver_result *r = d->res;
    struct client_request rq;
    memset(&rq, 0, sizeof rq);
    buf_reset(&d->prompt);
    uint64_t i = d->i_next++;
    if (ph->make(ph->ud, i, &rq, &d->prompt) != 0) {
        r->status = DRIVER_STATUS_ERR_MAKE;
        snprintf(r->stop_reason, sizeof r->stop_reason, "%s",
                 d->reason[0] ? d->reason : "the request could not be made");
        d->stop_submit = 1;
        return -1;
    }
    if (!rq.prompt) {
        rq.prompt = d->prompt.data ? d->prompt.data : "";
        rq.prompt_len = d->prompt.len;
    }
    rq.id = d->next_id++;
    rq.tag = ph->tag;
    rq.level = ph->level;
    rq.t_intended_ns = t_intended_ns;
    mono_ns now = clock_now_ns();
    inflight_account(d, now);
    if (client_submit(d->c, &rq) != 0) {
        r->status = DRIVER_STATUS_ERR_MAKE;
        snprintf(r->stop_reason, sizeof r->stop_reason, "the client refused request %llu",
                 (unsigned long long)rq.id);
        d->stop_submit = 1;
        return -1;
    }
    if (!r->t_start_ns)
        r->t_start_ns = now;
    d->in_client++;
    r->n_sent++;
    return 0;
}

static int more_to_submit(const struct driver *d, mono_ns now)
{
    if (d->stop_submit || d->dead || d->cancelled || d->i_next >= d->n_total)
        return 0;
    return !d->deadline_ns || now < d->deadline_ns;
}

/* Sends what is due; returns how long until the next send may be due (ms, capped). */
static long submit_due(struct driver *d)
{
    const struct driver_phase *ph = d->ph;
    long wait_ms = DRIVER_POLL_MAX_MS;
    mono_ns now = clock_now_ns();
    while (more_to_submit(d, now)) {
        int active = d->in_client + (int)d->n_held;
        if (ph->mode == DRIVER_MODE_OPEN) {
            if (ph->max_concurrency > 0 && active >= ph->max_concurrency)
                break;
            mono_ns due = ph->schedule[d->i_next];
            if (due > now) {
                uint64_t ms = (due - now + 999999u) / 1000000u;
                wait_ms = ms < (uint64_t)wait_ms ? (long)ms : wait_ms;
                break;
            }
            submit_one(d, due);
        } else {
            int cap = ph->mode == DRIVER_MODE_CLOSED && ph->concurrency > 0 ? ph->concurrency : 1;
            if (active >= cap)
                break;
            if (ph->mode == DRIVER_MODE_SEQUENTIAL && d->not_before_ns > now) {
                uint64_t ms = (d->not_before_ns - now + 999999u) / 1000000u;
                wait_ms = ms < (uint64_t)wait_ms ? (long)ms : wait_ms;
                break;
            }
            submit_one(d, 0);
        }
        now = clock_now_ns();
    }
    return wait_ms;
}

/* ---- the loop ---- */

static void progress_line(struct driver *d, mono_ns t0)
{
    mono_ns now = clock_now_ns();
    if (!d->progress || now - d->t_progress_ns < DRIVER_PROGRESS_NS)
        return;
    d->t_progress_ns = now;
    const struct driver_phase *ph = d->ph;
    char tot[32] = "";
    if (d->n_total < DRIVER_MAX_REQUESTS)
        snprintf(tot, sizeof tot, "/%llu", (unsigned long long)d->n_total);
    fprintf(stderr, "\r\033[K%s: %d%s done, %d in flight, %.1f s",
            ph->progress_what ? ph->progress_what : ph->tag ? ph->tag : "", d->res->n_done, tot,
            d->in_client + (int)d->n_held, ns_to_s(now - t0));
    fflush(stderr);
}

/* Server death, cancellation, and ending what is in flight once either happened. */
static void check_stop(struct driver *d)
{
    if (!d->dead && server_gone(d))
        note_death(d);
    if (!d->cancelled && session_cancelled(d->s)) {
        d->cancelled = 1;
        log_warn(MOD, "%s: ending the requests in flight",
                 session_interrupted(d->s) ? "interrupted" : "cancelled");
    }
    if ((d->dead || d->cancelled) && !d->aborted && client_in_flight(d->c) > 0) {
        d->aborted = 1;
        client_abort_all(d->c);
    }
}

/* Nothing in flight: wait for the next due time; Ctrl-C wakes it. */
static void wait_idle(long wait_ms)
{
    int fd = target_signal_fd();
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    poll(fd >= 0 ? &pfd : NULL, fd >= 0 ? 1 : 0, (int)wait_ms);
}

static void drive(struct driver *d)
{
    mono_ns t0 = clock_now_ns();
    for (;;) {
        check_stop(d);
        mono_ns now = clock_now_ns();
        release_held(d, now);
        long wait_ms = submit_due(d);
        now = clock_now_ns();
        if (!more_to_submit(d, now) && d->in_client == 0 && d->n_held == 0 &&
            client_in_flight(d->c) == 0)
            break;
        for (size_t i = 0; i < d->n_held; i++) {
            mono_ns dl = d->held[i].deadline_ns;
            long ms = dl > now ? (long)((dl - now + 999999u) / 1000000u) : 0;
            if (ms < wait_ms)
                wait_ms = ms;
        }
        if (client_in_flight(d->c) > 0)
            client_poll(d->c, (int)wait_ms);
        else if (wait_ms > 0)
            wait_idle(wait_ms);
        progress_line(d, t0);
    }
    if (d->progress) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}

static void result_init(struct driver_result *r)
{
    memset(r, 0, sizeof *r);
    hist_init(&r->e2e_ms);
    hist_init(&r->ttft_ms);
    hist_init(&r->itl_ms);
    hist_init(&r->tpot_ms);
    hist_init(&r->e2e_int_ms);
    hist_init(&r->ttft_int_ms);
    hist_init(&r->qdelay_ms);
    r->prompt_tok_min = r->prompt_tok_max = -1;
}

static void phase_begin(struct driver *d, const struct driver_phase *ph, struct driver_result *r)
{
    d->ph = ph;
    d->res = r;
    d->i_next = 0;
    d->n_total = ph->n_requests > 0 ? (uint64_t)ph->n_requests : 0;
    d->deadline_ns = 0;
    d->not_before_ns = 0;
    d->in_client = 0;
    d->cap_recs = 0;
    d->t_last_ns = 0;
    d->inflight_area_ns = 0;
    d->dead = d->cancelled = d->aborted = d->stop_submit = 0;
    d->reason[0] = '\0';
    d->progress = ph->progress && isatty(STDERR_FILENO);
    d->t_progress_ns = 0;
    if (ph->mode == DRIVER_MODE_CLOSED && ph->duration_s > 0) {
        if (ph->n_requests <= 0)
            d->n_total = DRIVER_MAX_REQUESTS;
        d->deadline_ns = clock_now_ns() + (mono_ns)(ph->duration_s * 1e9);
    }
    if (ph->mode == DRIVER_MODE_OPEN && !ph->schedule)
        d->n_total = 0;
}

enum driver_status driver_run(struct driver *d, const struct driver_phase *ph,
                              struct driver_result *out)
{
    result_init(out);
    if (!ph->make) {
        out->status = DRIVER_STATUS_ERR_MAKE;
        snprintf(out->stop_reason, sizeof out->stop_reason, "no make callback");
        return out->status;
    }
    phase_begin(d, ph, out);
    if (server_gone(d))
        note_death(d);
    drive(d);
    if (out->t_start_ns && out->t_end_ns > out->t_start_ns)
        out->inflight_mean = d->inflight_area_ns / (double)(out->t_end_ns - out->t_start_ns);
    if (d->dead) {
        out->status = DRIVER_STATUS_SERVER_EXIT;
    } else if (d->cancelled) {
        out->status = DRIVER_STATUS_CANCELLED;
        snprintf(out->stop_reason, sizeof out->stop_reason, "%s", session_cancel_reason(d->s));
    }
    d->res = NULL;
    d->ph = NULL;
    return out->status;
}

void driver_result_free(struct driver_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_recs; i++)
        record_free(&r->recs[i]);
    free(r->recs);
    r->recs = NULL;
    r->n_recs = 0;
}

struct driver *driver_new(struct session *s, struct launch *L, const struct client_config *cc,
                          struct record_sink *sink, char *err, size_t err_len)
{
    if (!L->t) {
        snprintf(err, err_len, "the server was not started");
        return NULL;
    }
    struct driver *d = xcalloc(1, sizeof *d);
    d->s = s;
    d->L = L;
    d->sink = sink;
    d->api_key = cc->api_key;
    buf_init(&d->prompt, 4096, 64u << 20);
    atomic_init(&d->health_dead, 0);
    struct client_config c = *cc;
    c.base_url = L->t->base_url;
    if (!c.model && L->t->model_id[0])
        c.model = L->t->model_id;
    d->c = client_new(&c, on_done, d, err, err_len);
    if (!d->c) {
        buf_free(&d->prompt);
        free(d);
        return NULL;
    }
    if (L->url_mode) {
        snprintf(d->health_url, sizeof d->health_url, "%s/health", L->t->base_url);
        pthread_mutex_init(&d->health_mu, NULL);
        pthread_cond_init(&d->health_cv, NULL);
        d->health_started = pthread_create(&d->health_thread, NULL, health_main, d) == 0;
        if (!d->health_started)
            log_warn(MOD, "health-check thread did not start: a dead --url server shows as errors");
    }
    return d;
}

void driver_free(struct driver *d)
{
    if (!d)
        return;
    client_free(d->c);
    if (d->health_started) {
        pthread_mutex_lock(&d->health_mu);
        d->health_stop = 1;
        pthread_cond_signal(&d->health_cv);
        pthread_mutex_unlock(&d->health_mu);
        pthread_join(d->health_thread, NULL);
    }
    if (d->L->url_mode) {
        pthread_cond_destroy(&d->health_cv);
        pthread_mutex_destroy(&d->health_mu);
    }
    for (size_t i = 0; i < d->n_held; i++)
        record_free(&d->held[i].rec);
    free(d->held);
    free(d->itl);
    buf_free(&d->prompt);
    free(d);
}

void driver_set_reason(struct driver *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof d->reason, fmt, ap);
    va_end(ap);
}

const char *driver_model(const struct driver *d)
{
    return client_model(d->c);
}

long driver_n_connects(const struct driver *d)
{
    return client_n_connects(d->c);
}
