/* scraper: a thread that GETs a server's /metrics every interval and keeps the scrapes as
 * struct server_metrics (promscrape.h) in a bounded ring, so that probes can read queue depth,
 * running requests, KV usage and counters over any time window without a blocking HTTP call on
 * the thread that takes request timestamps. A server without /metrics (three 404/501 in a row)
 * is given up on and says so. It does not parse anything itself (promscrape.h does).
 *
 *   struct scraper *sc = scraper_new(t->base_url, api_key, 200);   // thread starts at once
 *   ... load ...
 *   struct scrape_window w;
 *   scraper_window(sc, t0, t1, &w);          // gauges over [t0, t1]
 *   struct server_metrics first, last;
 *   scraper_edges(sc, t0, t1, &first, &last); // counters: last - first via server_metrics_delta
 *   scraper_free(sc);                        // stops and joins
 *
 * Threads: scraper_* may be called from any thread; the struct is owned by its creator. */
#ifndef SLM_SERVER_SCRAPER_H
#define SLM_SERVER_SCRAPER_H

#include <stddef.h>

#include "server/promscrape.h"
#include "util/clock.h"

struct scrape_window {
    int n; /* scrapes in the window */
    int has_waiting, has_running, has_kv_usage;
    double waiting_mean, waiting_max, running_mean, running_max, kv_usage_max; /* NAN unless has_ */
};

/* Starts the thread (interval_ms >= 10; the first scrape is immediate). api_key may be NULL and
 * is borrowed (must outlive the scraper). Never NULL; a failed thread start shows in
 * scraper_status. */
struct scraper *scraper_new(const char *base_url, const char *api_key, int interval_ms);
void scraper_free(struct scraper *sc); /* stops, joins; NULL-safe */

/* Takes one scrape now on the caller's thread (blocking GET, at most timeout 2 s) and stores it;
 * fills *out when out is not NULL. 0, or -1 (no /metrics; reason via scraper_status). */
int scraper_scrape_now(struct scraper *sc, struct server_metrics *out);

/* Gauges over scrapes with t0 <= t <= t1 (all fields NAN and n = 0 when none). */
void scraper_window(struct scraper *sc, mono_ns t0, mono_ns t1, struct scrape_window *out);
/* The first scrape at or after t0 and the last at or before t1 (0), or -1 when the window holds
 * fewer than one scrape. For counter deltas use server_metrics_delta(first, last). */
int scraper_edges(struct scraper *sc, mono_ns t0, mono_ns t1, struct server_metrics *first,
                  struct server_metrics *last);

/* Counts and the reason of the last failure ("" none). gave_up = 1 once the server showed it has
 * no /metrics. Returns reason (a copy in the caller's buffer). */
struct scraper_status {
    int n_ok, n_fail, gave_up;
    char reason[256];
};
void scraper_status(struct scraper *sc, struct scraper_status *out);

#endif
