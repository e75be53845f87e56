/* calibrate: the client's own ceiling on this machine, measured in a few seconds and cached per
 * user, so that probes run from any directory can warn when a run nears what the client itself
 * can sustain. A short form of bench/bench_client.c: a loopback SSE streamer in a forked child
 * (fast mode only: every response as fast as the socket takes it; no timestamp-error run, no
 * real-time scheduling), and the real client (net/client.h) in this process measuring requests/s
 * with 1-token requests and SSE events/s at concurrency 1 and 64. The result goes to
 * $XDG_CACHE_HOME/slmprobe/client.json (XDG_CACHE_HOME absolute), else ~/.cache/slmprobe/, in the
 * keys client_ceiling_load() reads plus the machine it ran on (hostname, CPU model, nproc) and
 * when. bench/bench_client remains the full benchmark (bench/out/client.json).
 *
 *   struct calibrate_result r;
 *   if (calibrate_run(8.0, &r, err, sizeof err) == CALIBRATE_OK)
 *       calibrate_write(path, &r, err, sizeof err);
 *   ...
 *   calibrate_ceiling_load(&session->ceiling, session->ceiling_note, sizeof session->ceiling_note);
 *
 * Threads: everything on the calling thread (the streamer is a child process). */
#ifndef SLM_CALIBRATE_H
#define SLM_CALIBRATE_H

#include <stddef.h>
#include <stdint.h>

#include "net/client.h"

#define CALIBRATE_MAX_AGE_S (30 * 86400) /* an older calibration is ignored (with a note) */
#define CALIBRATE_DEFAULT_S 8.0          /* total measuring time of `slmprobe calibrate` */
#define CALIBRATE_BENCH_PATH "bench/out/client.json" /* the fallback: make bench's full run */

enum calibrate_status {
    CALIBRATE_OK = 0,
    CALIBRATE_NO_HOME,  /* no XDG_CACHE_HOME and no home directory */
    CALIBRATE_STREAMER, /* cannot listen on loopback or fork the streamer */
    CALIBRATE_CLIENT,   /* client_new failed */
    CALIBRATE_ERRORS,   /* requests failed or nothing completed: no figure to trust */
    CALIBRATE_WRITE,    /* cannot create the cache directory or write the file */
};
const char *calibrate_status_str(enum calibrate_status s); /* static string */

struct calibrate_machine {
    char hostname[256];
    char cpu_model[128]; /* /proc/cpuinfo "model name"; "" unknown */
    int n_cpus;          /* online CPUs */
};
void calibrate_machine_read(struct calibrate_machine *out); /* never fails: unknowns stay "" */

struct calibrate_result {
    struct client_ceiling ceiling;   /* events_per_s_c1024 and ts_err_* are NAN (not measured) */
    struct calibrate_machine machine;
    int64_t measured_at_unix_s;      /* wall clock, for the age check */
    char measured_at[32];            /* ISO 8601 label */
    double duration_s;               /* the whole measurement */
    double client_cpu_frac_c64;      /* client CPU seconds per wall second at concurrency 64 */
};

/* $XDG_CACHE_HOME/slmprobe/client.json, else $HOME/.cache/slmprobe/client.json, into out.
 * CALIBRATE_OK or CALIBRATE_NO_HOME (also when it does not fit). Reads the environment only. */
enum calibrate_status calibrate_cache_path(char *out, size_t out_len);

/* Measures for about total_s seconds (clamped to 1..60), printing one progress line per phase to
 * stderr. CALIBRATE_OK with *out filled, or a status with err. Starts and reaps its child. */
enum calibrate_status calibrate_run(double total_s, struct calibrate_result *out, char *err,
                                    size_t err_len);

/* Writes r as JSON to path (parent directories made; atomically: file_write_all). */
enum calibrate_status calibrate_write(const char *path, const struct calibrate_result *r,
                                      char *err, size_t err_len);

/* What every probe's session loads: the calibration in the cache path when it was measured on
 * this machine (same hostname, CPU model and nproc) within CALIBRATE_MAX_AGE_S; else
 * bench/out/client.json (relative to the current directory); else none (out->valid 0). note
 * always says which, or why a calibration file was ignored (also logged as a warning), in one
 * line: "calibrated 2025-01-02T03:04:05Z on this machine (~/.cache/slmprobe/client.json)". */
void calibrate_ceiling_load(struct client_ceiling *out, char *note, size_t note_len);

#endif
