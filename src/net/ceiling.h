/* ceiling: the client's own measured ceiling (net/ceiling.c), read from the file bench/bench_client
 * writes, and the warning probes print when a run comes near it. No libcurl, no measuring. */
#ifndef SLM_CEILING_H
#define SLM_CEILING_H

#include <stddef.h>

/* The client's own measured ceiling (bench/bench_client writes bench/out/client.json), so that
 * probes can warn when a run approaches what the client itself can sustain. */
struct client_ceiling {
    int valid;                 /* 0: no file or unreadable: never warn */
    double req_per_s;          /* 1-token requests per second */
    double events_per_s_c1;    /* SSE events/s at concurrency 1, 64, 1024 */
    double events_per_s_c64;
    double events_per_s_c1024;
    double ts_err_p50_us;      /* receive minus send stamp at 256 streams */
    double ts_err_p99_us;
};
/* Reads path (NULL: "bench/out/client.json"); a missing or bad file gives valid = 0. */
void client_ceiling_load(const char *path, struct client_ceiling *out);
/* 1 and a message in msg when events_per_s or req_per_s (either may be 0 or NAN: ignored) exceeds
 * 50% of the ceiling (max of the events/s levels; req_per_s); else 0 (msg = ""). */
int client_ceiling_warn(const struct client_ceiling *c, double events_per_s, double req_per_s, char *msg, size_t n);

#endif
