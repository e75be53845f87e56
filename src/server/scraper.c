/* scraper: the /metrics thread of server/scraper.h. One scrape is prom_fetch + server_metrics_from_prom,
 * stored with its monotonic time in a ring of SCRAPER_CAP entries under a mutex (the oldest is
 * overwritten: at the default 200 ms the ring holds two hours). Three HTTP errors in a row
 * (404/501: the server has no /metrics) stop the thread. It parses nothing itself. */
#include "server/scraper.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

#define SCRAPER_CAP 36000
#define SCRAPER_TIMEOUT_MS 2000
#define SCRAPER_GIVE_UP_AFTER 3

struct scrape {
    mono_ns t_ns;
    struct server_metrics m;
};

struct scraper {
    pthread_t thread;
    int started;
    atomic_int stop;
    pthread_mutex_t mu;   /* guards everything below */
    pthread_cond_t wake;  /* scraper_free wakes the sleeping thread */
    char url[320];
    const char *api_key;
    int interval_ms;
    struct scrape *ring;  /* [SCRAPER_CAP] */
    size_t n;             /* scrapes stored ever (ring index n % cap) */
    int n_ok, n_fail, fails_in_row, gave_up;
    char reason[256];
};

/* One GET and store; 0 or -1. Any thread. */
static int scrape_once(struct scraper *sc, struct server_metrics *out)
{
    struct prom_set set = {0};
    int status = 0;
    char err[256] = "";
    mono_ns t = clock_now_ns();
    enum prom_status st =
        prom_fetch(sc->url, sc->api_key, SCRAPER_TIMEOUT_MS, &set, &status, err, sizeof err);
    struct server_metrics m;
    if (st == PROM_OK)
        server_metrics_from_prom(&set, &m);
    prom_set_free(&set);
    pthread_mutex_lock(&sc->mu);
    if (st == PROM_OK) {
        struct scrape *d = &sc->ring[sc->n % SCRAPER_CAP];
        d->t_ns = t;
        d->m = m;
        sc->n++;
        sc->n_ok++;
        sc->fails_in_row = 0;
    } else {
        sc->n_fail++;
        if (!sc->reason[0] || st == PROM_ERR_HTTP)
            snprintf(sc->reason, sizeof sc->reason, "%.60s: %s%s%.150s", sc->url,
                     prom_status_str(st), err[0] ? ": " : "", err);
        /* A server without /metrics (404/501) will not grow one: stop asking. */
        if (st == PROM_ERR_HTTP && ++sc->fails_in_row >= SCRAPER_GIVE_UP_AFTER)
            sc->gave_up = 1;
        else if (st != PROM_ERR_HTTP)
            sc->fails_in_row = 0;
    }
    pthread_mutex_unlock(&sc->mu);
    if (st == PROM_OK && out)
        *out = m;
    return st == PROM_OK ? 0 : -1;
}

static void *scraper_main(void *arg)
{
    struct scraper *sc = arg;
    while (!atomic_load(&sc->stop)) {
        scrape_once(sc, NULL);
        pthread_mutex_lock(&sc->mu);
        if (sc->gave_up) {
            pthread_mutex_unlock(&sc->mu);
            break;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)sc->interval_ms * 1000000ull;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        while (!atomic_load(&sc->stop) &&
               pthread_cond_timedwait(&sc->wake, &sc->mu, &until) == 0) {
        }
        pthread_mutex_unlock(&sc->mu);
    }
    return NULL;
}

struct scraper *scraper_new(const char *base_url, const char *api_key, int interval_ms)
{
    struct scraper *sc = xcalloc(1, sizeof *sc);
    snprintf(sc->url, sizeof sc->url, "%s/metrics", base_url);
    sc->api_key = api_key;
    sc->interval_ms = interval_ms < 10 ? 10 : interval_ms;
    sc->ring = xcalloc(SCRAPER_CAP, sizeof *sc->ring);
    pthread_mutex_init(&sc->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sc->wake, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&sc->stop, 0);
    if (pthread_create(&sc->thread, NULL, scraper_main, sc) == 0)
        sc->started = 1;
    else
        snprintf(sc->reason, sizeof sc->reason, "could not start the scraper thread");
    return sc;
}

void scraper_free(struct scraper *sc)
{
    if (!sc)
        return;
    pthread_mutex_lock(&sc->mu);
    atomic_store(&sc->stop, 1);
    pthread_cond_broadcast(&sc->wake);
    pthread_mutex_unlock(&sc->mu);
    if (sc->started)
        pthread_join(sc->thread, NULL);
    pthread_cond_destroy(&sc->wake);
    pthread_mutex_destroy(&sc->mu);
    free(sc->ring);
    free(sc);
}

int scraper_scrape_now(struct scraper *sc, struct server_metrics *out)
{
    if (!sc)
        return -1;
    return scrape_once(sc, out);
}

/* Index range [*first, n) of the stored scrapes; caller holds mu. */
static size_t ring_first(const struct scraper *sc)
{
    return sc->n > SCRAPER_CAP ? sc->n - SCRAPER_CAP : 0;
}

/* Folds one gauge into sum/max/count. */
static void gauge_add(int has, double v, double *sum, double *max, int *n)
{
    if (!has || isnan(v))
        return;
    *sum += v;
    if (*n == 0 || v > *max)
        *max = v;
    (*n)++;
}

void scraper_window(struct scraper *sc, mono_ns t0, mono_ns t1, struct scrape_window *w)
{
    memset(w, 0, sizeof *w);
    w->waiting_mean = w->waiting_max = w->running_mean = w->running_max = w->kv_usage_max = NAN;
    if (!sc)
        return;
    double ws = 0, rs = 0, ks = 0, wmax = 0, rmax = 0, kmax = 0;
    int nw = 0, nr = 0, nk = 0;
    pthread_mutex_lock(&sc->mu);
    for (size_t i = ring_first(sc); i < sc->n; i++) {
        const struct scrape *s = &sc->ring[i % SCRAPER_CAP];
        if (s->t_ns < t0 || s->t_ns > t1)
            continue;
        w->n++;
        gauge_add(s->m.has_waiting, s->m.waiting, &ws, &wmax, &nw);
        gauge_add(s->m.has_running, s->m.running, &rs, &rmax, &nr);
        gauge_add(s->m.has_kv_usage, s->m.kv_usage, &ks, &kmax, &nk);
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
    if (nk) {
        w->has_kv_usage = 1;
        w->kv_usage_max = kmax;
    }
}

int scraper_edges(struct scraper *sc, mono_ns t0, mono_ns t1, struct server_metrics *first,
                  struct server_metrics *last)
{
    if (!sc)
        return -1;
    int found = 0;
    pthread_mutex_lock(&sc->mu);
    for (size_t i = ring_first(sc); i < sc->n; i++) {
        const struct scrape *s = &sc->ring[i % SCRAPER_CAP];
        if (s->t_ns < t0 || s->t_ns > t1)
            continue;
        if (!found && first)
            *first = s->m;
        if (last)
            *last = s->m;
        found = 1;
    }
    pthread_mutex_unlock(&sc->mu);
    return found ? 0 : -1;
}

void scraper_status(struct scraper *sc, struct scraper_status *out)
{
    memset(out, 0, sizeof *out);
    if (!sc)
        return;
    pthread_mutex_lock(&sc->mu);
    out->n_ok = sc->n_ok;
    out->n_fail = sc->n_fail;
    out->gave_up = sc->gave_up;
    snprintf(out->reason, sizeof out->reason, "%s", sc->reason);
    pthread_mutex_unlock(&sc->mu);
}
