/* check_slo: the SLO grammar of `slmprobe check` and the judgement of measurements against it.
 * Pure functions: no I/O. Durations reuse measure/knee.h's parser so every probe reads "500ms"
 * the same way. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check/check.h"
#include "measure/knee.h"

static const char *const metric_names[CHECK_METRIC__COUNT] = {"ttft", "tpot", "itl", "e2e",
                                                              "error_rate"};
static const char *const stat_names[CHECK_STAT__COUNT] = {"p50", "p90", "p95",
                                                          "p99", "mean", "max"};

const char *check_metric_str(enum check_metric m)
{
    return m >= 0 && m < CHECK_METRIC__COUNT ? metric_names[m] : "unknown";
}

const char *check_stat_str(enum check_stat s)
{
    return s >= 0 && s < CHECK_STAT__COUNT ? stat_names[s] : "unknown";
}

const char *check_status_str(enum check_status st)
{
    switch (st) {
    case CHECK_OK: return "ok";
    case CHECK_ERR_SYNTAX: return "syntax error";
    case CHECK_ERR_RANGE: return "out of range";
    }
    return "unknown";
}

/* "ttft_p95" -> metric, stat. 0 or -1. */
static int parse_key(const char *key, struct check_bound *b)
{
    if (!strcmp(key, "error_rate") || !strcmp(key, "errors")) {
        b->metric = CHECK_METRIC_ERROR_RATE;
        b->stat = CHECK_STAT_MEAN;
        snprintf(b->name, sizeof b->name, "error_rate");
        return 0;
    }
    for (int m = 0; m < CHECK_METRIC_ERROR_RATE; m++) {
        size_t n = strlen(metric_names[m]);
        if (strncmp(key, metric_names[m], n))
            continue;
        b->metric = (enum check_metric)m;
        if (key[n] == 0) {
            b->stat = CHECK_STAT_P95;
        } else if (key[n] == '_') {
            int s;
            for (s = 0; s < CHECK_STAT__COUNT && strcmp(key + n + 1, stat_names[s]); s++)
                ;
            if (s == CHECK_STAT__COUNT)
                return -1;
            b->stat = (enum check_stat)s;
        } else {
            return -1;
        }
        snprintf(b->name, sizeof b->name, "%s_%s", metric_names[m], stat_names[b->stat]);
        return 0;
    }
    return -1;
}

/* "1%", "0.01" -> fraction in [0, 1]. 0 or -1. */
static int parse_fraction(const char *v, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || !isfinite(x))
        return -1;
    if (*end == '%') {
        x /= 100;
        end++;
    }
    if (*end || x < 0 || x > 1)
        return -1;
    *out = x;
    return 0;
}

static enum check_status parse_item(const char *item, struct check_bound *b, char *err,
                                    size_t err_len)
{
    const char *colon = strchr(item, ':');
    if (!colon || colon == item || !colon[1]) {
        snprintf(err, err_len, "'%s': expected NAME:VALUE (e.g. ttft_p95:500ms)", item);
        return CHECK_ERR_SYNTAX;
    }
    char key[48];
    snprintf(key, sizeof key, "%.*s", (int)(colon - item), item);
    if ((size_t)(colon - item) >= sizeof key || parse_key(key, b) != 0) {
        snprintf(err, err_len,
                 "'%s': unknown bound '%s' (ttft, tpot, itl, e2e with _p50|_p90|_p95|_p99|_mean|"
                 "_max, or error_rate)",
                 item, key);
        return CHECK_ERR_SYNTAX;
    }
    const char *v = colon + 1;
    if (b->metric == CHECK_METRIC_ERROR_RATE) {
        if (parse_fraction(v, &b->limit) != 0) {
            snprintf(err, err_len, "'%s': error_rate wants a percentage (1%%) or a fraction", item);
            return CHECK_ERR_RANGE;
        }
        return CHECK_OK;
    }
    if (knee_parse_duration_ms(v, &b->limit) != KNEE_OK) {
        snprintf(err, err_len, "'%s': '%s' is not a duration > 0 with a unit (us, ms, s)", item, v);
        return CHECK_ERR_RANGE;
    }
    return CHECK_OK;
}

enum check_status check_slo_parse(const char *spec, struct check_slo *out, char *err,
                                  size_t err_len)
{
    struct check_slo slo = {.n = 0};
    if (!spec || !*spec) {
        snprintf(err, err_len, "empty SLO");
        return CHECK_ERR_SYNTAX;
    }
    const char *p = spec;
    while (*p) {
        size_t n = strcspn(p, ",");
        char item[128];
        if (n == 0 || n >= sizeof item) {
            snprintf(err, err_len, n ? "'%.40s...': item too long" : "empty item in '%s'",
                     n ? p : spec);
            return CHECK_ERR_SYNTAX;
        }
        snprintf(item, sizeof item, "%.*s", (int)n, p);
        struct check_bound b = {0};
        enum check_status st = parse_item(item, &b, err, err_len);
        if (st != CHECK_OK)
            return st;
        int i;
        for (i = 0; i < slo.n && strcmp(slo.b[i].name, b.name); i++)
            ;
        if (i == slo.n && slo.n == CHECK_MAX_BOUNDS) {
            snprintf(err, err_len, "more than %d bounds", CHECK_MAX_BOUNDS);
            return CHECK_ERR_RANGE;
        }
        slo.b[i] = b;
        if (i == slo.n)
            slo.n++;
        p += n;
        if (*p == ',')
            p++;
    }
    *out = slo;
    return CHECK_OK;
}

static const struct hist *metric_hist(const struct check_result *r, enum check_metric m)
{
    switch (m) {
    case CHECK_METRIC_TTFT: return &r->ttft_ms;
    case CHECK_METRIC_TPOT: return &r->tpot_ms;
    case CHECK_METRIC_ITL: return &r->itl_ms;
    case CHECK_METRIC_E2E: return &r->e2e_ms;
    default: return NULL;
    }
}

double check_measured(const struct check_result *r, const struct check_bound *b)
{
    if (!r->measured)
        return NAN;
    if (b->metric == CHECK_METRIC_ERROR_RATE)
        return r->n_sent > 0 ? (double)r->n_failed / r->n_sent : NAN;
    const struct hist *h = metric_hist(r, b->metric);
    if (!h || h->n == 0)
        return NAN;
    struct summary s;
    hist_summary(h, &s);
    switch (b->stat) {
    case CHECK_STAT_P50: return s.p50;
    case CHECK_STAT_P90: return s.p90;
    case CHECK_STAT_P95: return s.p95;
    case CHECK_STAT_P99: return s.p99;
    case CHECK_STAT_MEAN: return s.mean;
    case CHECK_STAT_MAX: return s.max;
    default: return NAN;
    }
}

void check_judge(const struct check_slo *slo, struct check_result *r)
{
    r->n_verdicts = slo->n;
    r->all_ok = r->measured && !r->fail_reason[0];
    for (int i = 0; i < slo->n; i++) {
        struct check_verdict *v = &r->v[i];
        v->bound = slo->b[i];
        v->measured = check_measured(r, &slo->b[i]);
        /* an unmeasurable latency (every request failed) fails its bound */
        v->ok = isfinite(v->measured) && v->measured <= slo->b[i].limit;
        if (!v->ok)
            r->all_ok = 0;
    }
}
