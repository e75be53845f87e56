/* check: `slmprobe check`, the day's numbers as a health check. A handful of warm requests
 * against a running server (--url) or a launched one, judged against SLO bounds such as
 * "ttft_p95:500ms,tpot_p95:50ms,error_rate:1%", with the outcome as one line for humans, JSON
 * (schema slmprobe.check/1) and Prometheus text exposition for node_exporter's textfile
 * collector. Bounded in time (--timeout), suitable for cron and CI: exit 0 when every bound holds,
 * 1 when one fails (or the run could not measure), 2 on usage errors. It does no sweeps (batch)
 * and no cold starts (ttft).
 *
 *   struct check_slo slo;
 *   check_slo_parse("ttft_p95:500ms,error_rate:1%", &slo, err, sizeof err);
 *   struct check_opts o = ...; struct check_result r;
 *   check_run(&o, &session, &r);            // measures
 *   check_judge(&slo, &r);                  // fills r.verdicts
 *   check_render_line/json/prom(&r, &buf);  // outputs */
#ifndef SLM_CHECK_CHECK_H
#define SLM_CHECK_CHECK_H

#include <stddef.h>

#include "measure/hist.h"
#include "measure/record.h"
#include "run/session.h"
#include "util/buf.h"

#define CHECK_MAX_BOUNDS 16

enum check_metric {
    CHECK_METRIC_TTFT = 0, /* ms */
    CHECK_METRIC_TPOT,     /* ms */
    CHECK_METRIC_ITL,      /* ms */
    CHECK_METRIC_E2E,      /* ms */
    CHECK_METRIC_ERROR_RATE, /* fraction of requests that failed */
    CHECK_METRIC__COUNT
};
const char *check_metric_str(enum check_metric m); /* "ttft", "tpot", "itl", "e2e", "error_rate" */

enum check_stat { CHECK_STAT_P50 = 0, CHECK_STAT_P90, CHECK_STAT_P95, CHECK_STAT_P99,
                  CHECK_STAT_MEAN, CHECK_STAT_MAX, CHECK_STAT__COUNT };
const char *check_stat_str(enum check_stat s); /* "p50", ..., "mean", "max" */

struct check_bound {
    enum check_metric metric;
    enum check_stat stat;   /* ignored for error_rate */
    double limit;           /* ms for latencies, fraction for error_rate */
    char name[32];          /* as written canonically: "ttft_p95", "error_rate" */
};

struct check_slo {
    struct check_bound b[CHECK_MAX_BOUNDS];
    int n;
};

enum check_status { CHECK_OK = 0, CHECK_ERR_SYNTAX, CHECK_ERR_RANGE };
const char *check_status_str(enum check_status st);

/* Parses "ttft_p95:500ms,tpot_p95:50ms,e2e_p99:2s,itl_max:200ms,error_rate:1%". Metric ttft,
 * tpot, itl or e2e with an optional _p50|_p90|_p95|_p99|_mean|_max (default p95); durations with
 * us|ms|s; error_rate as N% or a fraction in [0, 1]. A bound given twice: the last wins.
 * CHECK_OK, or an error whose message names the bad part; *out untouched on error. */
enum check_status check_slo_parse(const char *spec, struct check_slo *out, char *err,
                                  size_t err_len);

struct check_opts {
    int n_requests;      /* measured requests [8] */
    int n_warmup;        /* not judged [1] */
    int concurrency;     /* [1] */
    int prompt_len;      /* tokens [128] */
    int max_tokens;      /* [32] */
    double timeout_s;    /* whole check, launch included [60] */
    struct check_slo slo;
    const char *slo_spec; /* as given */
};

struct check_verdict {
    struct check_bound bound;
    double measured; /* NAN when nothing could be measured */
    int ok;          /* measured within the limit */
};

struct check_result {
    int measured;           /* 1 once the requests ran (even with errors) */
    char fail_reason[512];  /* why nothing could be measured, or the server died; "" */
    int timed_out;          /* --timeout hit */
    int n_sent, n_ok, n_failed;
    int n_err_class[REQ_ERROR__COUNT];
    struct hist ttft_ms, tpot_ms, itl_ms, e2e_ms;
    double duration_s;      /* the check's wall time, launch included */
    double finished_unix_s; /* wall clock at the end (a label, for Prometheus) */
    char target[512];       /* URL or launched server */
    struct check_verdict v[CHECK_MAX_BOUNDS];
    int n_verdicts;
    int all_ok;             /* every bound held and the run measured */
};

/* Measures into *r (zeroed here). 0, or -1 when the run could not measure (r->fail_reason). */
int check_run(const struct check_opts *o, struct session *s, struct check_result *r);
/* Fills r->v / r->all_ok from the slo and the measurements. Pure. */
void check_judge(const struct check_slo *slo, struct check_result *r);
/* The measured value a bound talks about (NAN when unknown). Pure. */
double check_measured(const struct check_result *r, const struct check_bound *b);

/* Renderers, appended to out: one human line (plus one line per failed bound), JSON
 * (slmprobe.check/1), Prometheus text exposition (slmprobe_check_* metrics). */
void check_render_line(const struct check_result *r, struct buf *out);
void check_render_json(const struct check_opts *o, const struct check_result *r, struct buf *out);
void check_render_prom(const struct check_result *r, struct buf *out);

#endif
