/* driver: the one load driver of every probe. Sends requests through the shared client (one
 * thread: the one that calls driver_run) in three modes: sequential (one at a time, optional
 * think time between), closed loop (keep C in flight until N were sent or a duration is over)
 * and open loop (send at precomputed intended times, optional cap on requests in flight). Each
 * finished request is classified with the one server-death policy, pushed to the session's
 * JSONL sink (written by the sink's thread), folded into fixed-memory histograms (measure/hist.h)
 * and, when the probe asks, kept (up to a stated cap). It never blocks the socket/timestamp
 * thread: no sleeps and no blocking HTTP in callbacks or in the loop (the --url health check
 * runs on a thread of its own). It does not compute level statistics beyond the histograms and
 * counters below, and does not know which probe runs it.
 *
 * Server-death policy: a request that fails with a connect, protocol or timeout error is held
 * for up to DRIVER_EXIT_GRACE_MS (the loop keeps running other streams): if the launched server
 * is seen to have exited (or, with --url, GET /health fails) within that time, the request is
 * counted as REQ_ERROR_SERVER_EXIT and the phase stops with DRIVER_STATUS_SERVER_EXIT; else it
 * keeps its own class. Once the server is gone, requests still in flight are aborted and counted
 * as server_exit too.
 *
 *   struct driver *d = driver_new(&s, &L, &cc, sink, err, sizeof err); // client made here
 *   struct driver_phase ph = { .mode = DRIVER_MODE_CLOSED, .tag = "c=8", .level = 8,
 *                              .concurrency = 8, .n_requests = 64, .make = my_make, .ud = me };
 *   struct driver_result res;
 *   driver_run(d, &ph, &res);     // returns res.status
 *   ... hist_summary(&res.e2e_ms, &sum) ...
 *   driver_result_free(&res);
 *   driver_free(d);
 */
#ifndef SLM_RUN_DRIVER_H
#define SLM_RUN_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "measure/hist.h"
#include "measure/record.h"
#include "net/client.h"
#include "run/launch.h"
#include "run/session.h"
#include "util/buf.h"
#include "util/clock.h"

#define DRIVER_EXIT_GRACE_MS 1000 /* how long a failed request waits to see the server's exit */
#define DRIVER_MAX_REQUESTS 1000000 /* a phase with a duration sends at most this many */

enum driver_mode {
    DRIVER_MODE_SEQUENTIAL = 0, /* one at a time; think_s between */
    DRIVER_MODE_CLOSED,         /* keep `concurrency` in flight */
    DRIVER_MODE_OPEN,           /* send at schedule[i] */
};
const char *driver_mode_str(enum driver_mode m); /* "sequential", "closed", "open" */

enum driver_status {
    DRIVER_STATUS_OK = 0,
    DRIVER_STATUS_SERVER_EXIT, /* the server died (or stopped answering, url mode) */
    DRIVER_STATUS_CANCELLED,   /* Ctrl-C, or session_cancel */
    DRIVER_STATUS_ERR_MAKE,    /* the make callback failed (message in stop_reason) */
};
const char *driver_status_str(enum driver_status st); /* "ok", "server_exit", ... */

/* Fills the i-th request of the phase (0-based). The prompt goes into *prompt (reset by the
 * driver; the client copies it); set rq->prompt/prompt_len from it, or point at your own text.
 * id, tag, level and t_intended_ns are filled by the driver afterwards. 0, or -1 to stop the
 * phase (DRIVER_STATUS_ERR_MAKE; put a reason in the driver with driver_set_reason). */
typedef int (*driver_make_cb)(void *ud, uint64_t i, struct client_request *rq, struct buf *prompt);
/* Called once per finished, classified request, after it went to the sink; rec is valid only
 * during the call (copy what you keep). Runs on the driver's thread: do no I/O here. */
typedef void (*driver_record_cb)(void *ud, const struct request_record *rec);

struct driver_phase {
    enum driver_mode mode;
    const char *tag;          /* record tag, e.g. "warm_3", "c=8"; copied per record */
    int level;                /* record level */
    int concurrency;          /* closed loop; ignored otherwise */
    int n_requests;           /* sequential/closed: how many; 0 with duration_s > 0 */
    double duration_s;        /* closed: no new request after this; 0 none */
    const mono_ns *schedule;  /* open loop: intended send times (borrowed), n_requests of them */
    int max_concurrency;      /* open loop: 0 no cap */
    double think_s;           /* sequential: idle time between requests (Ctrl-C wakes it) */
    driver_make_cb make;      /* required */
    driver_record_cb on_record; /* optional */
    void *ud;
    size_t keep_records;      /* keep up to this many records in the result (0: none) */
    int no_sink;              /* 1: do not write this phase's records to the sink */
    int progress;             /* 1: a live progress line on stderr (only if it is a TTY) */
    const char *progress_what; /* progress label; NULL: tag */
};

struct driver_result {
    enum driver_status status;
    char stop_reason[768];   /* "" when ok */
    mono_ns t_start_ns;      /* first send */
    mono_ns t_end_ns;        /* last record done */
    int n_sent, n_done, n_ok;
    int n_retried;           /* requests the client re-sent (record n_retries > 0, net/client.h) */
    int n_err_class[REQ_ERROR__COUNT];
    char err_msg[REQ_ERROR__COUNT][200]; /* first message of each class */
    int n_no_usage;          /* ok requests without usage (tokens unknown) */
    /* histograms over ok requests (ms); *_int_ from the intended send time (open loop) */
    struct hist e2e_ms, ttft_ms, itl_ms, tpot_ms, e2e_int_ms, ttft_int_ms, qdelay_ms;
    uint64_t prompt_tokens, completion_tokens; /* sums over ok requests with usage */
    uint64_t cached_tokens;  /* sum over ok requests that reported cached tokens */
    int n_cached_known;      /* how many did */
    int prompt_tok_min, prompt_tok_max; /* -1 unknown */
    uint64_t n_events;       /* SSE events over ok requests */
    double max_events_per_s; /* fastest single stream (client-ceiling check) */
    double inflight_mean;    /* time-weighted requests in flight over [t_start, t_end] */
    struct request_record *recs; /* kept records in completion order (owned) */
    size_t n_recs;
    size_t n_recs_dropped;   /* finished beyond keep_records (counted, not kept) */
};

/* Makes the client for L's server (cc->model NULL: L's model id, else /v1/models). sink may be
 * NULL (no JSONL). NULL with err on failure. L and sink must outlive the driver. */
struct driver *driver_new(struct session *s, struct launch *L, const struct client_config *cc,
                          struct record_sink *sink, char *err, size_t err_len);
void driver_free(struct driver *d); /* NULL-safe */
/* Runs one phase to its end (every request finished or aborted); fills *out (initialised here;
 * free with driver_result_free). Returns out->status. */
enum driver_status driver_run(struct driver *d, const struct driver_phase *ph,
                              struct driver_result *out);
void driver_result_free(struct driver_result *r); /* frees kept records; NULL-safe */
/* For make callbacks: the reason reported with DRIVER_STATUS_ERR_MAKE. */
void driver_set_reason(struct driver *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The model name the client sends. Lives as long as d. */
const char *driver_model(const struct driver *d);
/* Connections opened so far (keep-alive check). */
long driver_n_connects(const struct driver *d);

#endif
