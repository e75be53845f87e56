/* ceiling: reads the client's own measured ceiling (bench/out/client.json, written by
 * bench/bench_client) and says when a run's event or request rate comes near it, so that probes
 * can warn that client-side delays may show in their latencies. Declared in net/ceiling.h (which
 * net/client.h includes for its callers). It does not measure anything and does not touch
 * libcurl: the file is read with util/buf.h and parsed with util/json.h. */
#include "net/ceiling.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/json.h"

void client_ceiling_load(const char *path, struct client_ceiling *out)
{
    memset(out, 0, sizeof *out);
    size_t len = 0;
    char *text = file_read_all(path ? path : "bench/out/client.json", 1u << 20, &len);
    if (!text)
        return;
    char jerr[64];
    struct json *root = json_parse(text, len, jerr, sizeof jerr);
    free(text);
    if (!root)
        return;
    struct {
        const char *key;
        double *dst;
    } f[] = {
        {"req_per_s", &out->req_per_s},
        {"events_per_s_c1", &out->events_per_s_c1},
        {"events_per_s_c64", &out->events_per_s_c64},
        {"events_per_s_c1024", &out->events_per_s_c1024},
        {"ts_err_p50_us", &out->ts_err_p50_us},
        {"ts_err_p99_us", &out->ts_err_p99_us},
    };
    int n_ok = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        *f[i].dst = NAN;
        if (json_num(json_get(root, f[i].key), f[i].dst) == 0)
            n_ok++;
    }
    out->valid = n_ok > 0;
    json_free(root);
}

int client_ceiling_warn(const struct client_ceiling *c, double events_per_s, double req_per_s,
                        char *msg, size_t n)
{
    if (n)
        msg[0] = 0;
    if (!c || !c->valid)
        return 0;
    double ev_ceiling = NAN;
    double levels[] = {c->events_per_s_c1, c->events_per_s_c64, c->events_per_s_c1024};
    for (size_t i = 0; i < 3; i++)
        if (levels[i] > 0 && (isnan(ev_ceiling) || levels[i] > ev_ceiling))
            ev_ceiling = levels[i];
    double ev_frac = events_per_s > 0 && ev_ceiling > 0 ? events_per_s / ev_ceiling : NAN;
    double rq_frac = req_per_s > 0 && c->req_per_s > 0 ? req_per_s / c->req_per_s : NAN;
    int ev_warn = ev_frac > 0.5, rq_warn = rq_frac > 0.5;
    if (!ev_warn && !rq_warn)
        return 0;
    if (ev_warn && rq_warn)
        snprintf(msg, n,
                 "client near its own ceiling: %.0f events/s is %.0f%% of %.0f, %.0f req/s is "
                 "%.0f%% of %.0f; client-side delays may show in the latencies",
                 events_per_s, ev_frac * 100, ev_ceiling, req_per_s, rq_frac * 100, c->req_per_s);
    else if (ev_warn)
        snprintf(msg, n,
                 "client near its own ceiling: %.0f events/s is %.0f%% of the measured %.0f; "
                 "client-side delays may show in the latencies",
                 events_per_s, ev_frac * 100, ev_ceiling);
    else
        snprintf(msg, n,
                 "client near its own ceiling: %.0f req/s is %.0f%% of the measured %.0f; "
                 "client-side delays may show in the latencies",
                 req_per_s, rq_frac * 100, c->req_per_s);
    return 1;
}
