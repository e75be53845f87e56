/* session: what every probe of one slmprobe process shares: the output directory, the host
 * facts and GPUs seen at start, the client's measured ceiling, the redacted command line, the
 * telemetry interval, JSONL sinks for per-request records, cancellation, and the one exit-code
 * policy. `slmprobe lab` runs several probes on one session; each probe command (cmd_X.c) makes
 * its own. It launches nothing (run/launch.h) and sends no request (run/driver.h).
 *
 *   struct session s;
 *   if (session_init(&s, &po, argc, argv, err, sizeof err) != 0) -> exit 1 (err says why)
 *   struct record_sink *sink = session_sink_open(&s, "ttft_requests.jsonl", err, sizeof err);
 *   ... probe runs; polls session_cancelled(&s) ...
 *   rc = session_exit_code(&s, failed);
 *   record_sink_close(sink);
 *   session_free(&s);
 *
 * Threads: the main thread owns the session. session_cancelled() may be called from any thread.
 * Signal handlers are installed by session_init (target_install_signal_handlers). */
#ifndef SLM_RUN_SESSION_H
#define SLM_RUN_SESSION_H

#include <stdatomic.h>
#include <stddef.h>

#include "measure/record.h"
#include "net/client.h"
#include "run/probe_opts.h"
#include "server/telemetry.h"

/* The one exit-code policy of every probe: partial results are always written first. */
enum probe_exit {
    PROBE_EXIT_OK = 0,
    PROBE_EXIT_FAILED = 1,       /* the run failed (server died, requests failed, ...) */
    PROBE_EXIT_USAGE = 2,        /* bad options or input files */
    PROBE_EXIT_INTERRUPTED = 130 /* Ctrl-C / SIGTERM */
};

#define SESSION_SAMPLE_INTERVAL_MS 50      /* telemetry sampler, /proc and NVML */
#define SESSION_SAMPLE_INTERVAL_SMI_MS 500 /* when GPUs are read by forking nvidia-smi */
#define SESSION_METRICS_INTERVAL_MS 200    /* /metrics scraper default */

struct session {
    const struct probe_opts *po; /* borrowed: must outlive the session */
    char out_dir[1024];          /* created by session_init */
    char started_at[32];         /* wall clock, ISO 8601 (a label only) */
    char command_line[4096];     /* "slmprobe ttft --api-key *** ..." (secrets redacted) */
    struct telemetry_host host;
    int have_host;
    struct telemetry_gpus gpus;  /* as seen at start; gpus.available 0 with a reason if none */
    int sample_interval_ms;      /* SESSION_SAMPLE_INTERVAL_MS or _SMI_MS */
    struct client_ceiling ceiling; /* valid 0 when no calibration file */
    /* Which calibration the ceiling came from, for the report, one line, never empty:
     * "calibrated <when> on this machine (<path>)", "from bench/out/client.json (make bench)" or
     * "not calibrated (run slmprobe calibrate)", prefixed by "<path> ignored: <why>; " when the
     * per-user file is stale or from another machine (calibrate/calibrate.h). */
    char ceiling_note[512];
    /* private */
    atomic_int cancel_;
    char cancel_reason_[256];
};

/* Fills s: creates po->out_dir (default "results"), installs signal handlers, reads host and GPU
 * facts and the client ceiling (calibrate_ceiling_load: per-user calibration, else
 * bench/out/client.json; ceiling_note says which), redacts argv into command_line. 0, or -1 with
 * err (cannot create the output directory). Call session_free also after an error. */
int session_init(struct session *s, const struct probe_opts *po, int argc, char **argv, char *err,
                 size_t err_len);
void session_free(struct session *s); /* NULL-safe; closes nothing the probe still owns */

/* out_dir + "/" + name into out. Returns out. */
const char *session_path(const struct session *s, const char *name, char *out, size_t out_len);

/* 1 once Ctrl-C/SIGTERM arrived (target_interrupted) or session_cancel was called. Any thread. */
int session_cancelled(const struct session *s);
int session_interrupted(const struct session *s); /* Ctrl-C/SIGTERM only */
/* Cancels the current probe (e.g. its server died): the driver stops, the probe writes what it
 * has. `lab` calls session_cancel_reset before the next probe; an interrupt cannot be reset. */
void session_cancel(struct session *s, const char *reason);
void session_cancel_reset(struct session *s);
const char *session_cancel_reason(const struct session *s); /* "" when not cancelled */

/* PROBE_EXIT_INTERRUPTED if interrupted, else PROBE_EXIT_FAILED if failed, else PROBE_EXIT_OK. */
int session_exit_code(const struct session *s, int failed);

/* Opens (truncates) out_dir/name as a JSONL sink whose lines are written by a thread of its own
 * (record_sink_push never does I/O on the caller's thread). NULL with err on failure. */
struct record_sink *session_sink_open(struct session *s, const char *name, char *err,
                                      size_t err_len);

/* ---- the asynchronous JSONL sink (used through session_sink_open) ---- */

/* Copies *rec (its t_content_ns too) into a bounded queue; the writer thread renders and writes
 * it (record_writer_append semantics: one line, one write). When the queue is full (the disk
 * cannot keep up) the caller waits: records are never dropped. Returns 0, or -1 once a write
 * failed (the error is logged once). Thread that owns the sink only. */
int record_sink_push(struct record_sink *k, const struct request_record *rec);
/* Records written to the file so far (those still queued are not counted). Any thread. */
size_t record_sink_n_written(struct record_sink *k);
/* Drains the queue, joins the thread, closes the file. NULL-safe. */
void record_sink_close(struct record_sink *k);

#endif
