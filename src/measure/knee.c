/* knee: SLO parsing and checking, the knee / sweet spot / peak / SLO-limit of a load sweep, and
 * rules of thumb written from the measured numbers. Pure: no I/O, no allocation (levels beyond
 * KNEE_MAX_LEVELS are ignored). */
#include "measure/knee.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KNEE_MAX_LEVELS 256
/* Throughput that still gains this many thresholds per doubling is scaling: a flat step followed
 * by such gains is a dip, not the knee; and latency outgrowing throughput only ends scaling
 * below it. */
#define KNEE_RESUME_FACTOR 2.0

const char *knee_status_str(enum knee_status st)
{
    switch (st) {
    case KNEE_OK:
        return "ok";
    case KNEE_ERR_SYNTAX:
        return "syntax error";
    case KNEE_ERR_RANGE:
        return "out of range";
    }
    return "unknown";
}

const char *knee_reason_str(enum knee_reason r)
{
    switch (r) {
    case KNEE_REASON_NONE:
        return "no usable level";
    case KNEE_REASON_SINGLE:
        return "single level";
    case KNEE_REASON_THROUGHPUT_FLAT:
        return "throughput flat";
    case KNEE_REASON_LATENCY:
        return "latency outgrows throughput";
    case KNEE_REASON_NOT_REACHED:
        return "not reached";
    }
    return "unknown";
}

/* ---- SLOs ---- */

void knee_slo_none(struct knee_slo *slo)
{
    slo->ttft_ms = slo->tpot_ms = slo->e2e_ms = NAN;
}

int knee_slo_is_set(const struct knee_slo *slo)
{
    return !isnan(slo->ttft_ms) || !isnan(slo->tpot_ms) || !isnan(slo->e2e_ms);
}

enum knee_status knee_parse_duration_ms(const char *s, double *ms_out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return KNEE_ERR_SYNTAX;
    char *end;
    double v = strtod(s, &end);
    if (end == s)
        return KNEE_ERR_SYNTAX;
    double scale;
    if (!strcmp(end, "ms"))
        scale = 1.0;
    else if (!strcmp(end, "s"))
        scale = 1000.0;
    else if (!strcmp(end, "us"))
        scale = 0.001;
    else
        return KNEE_ERR_SYNTAX;
    v *= scale;
    if (!isfinite(v) || !(v > 0.0))
        return KNEE_ERR_RANGE;
    *ms_out = v;
    return KNEE_OK;
}

enum knee_status knee_slo_parse(const char *spec, struct knee_slo *out, char *err, size_t err_len)
{
    struct knee_slo slo;
    knee_slo_none(&slo);
    if (!spec || !*spec) {
        snprintf(err, err_len, "empty SLO (expected e.g. ttft:500ms,tpot:50ms)");
        return KNEE_ERR_SYNTAX;
    }
    const char *p = spec;
    while (1) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[64];
        if (len == 0 || len >= sizeof item) {
            snprintf(err, err_len, "SLO item \"%.*s\": expected KEY:VALUE, e.g. ttft:500ms",
                     (int)(len < 40 ? len : 40), p);
            return KNEE_ERR_SYNTAX;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        char *colon = strchr(item, ':');
        if (!colon) {
            snprintf(err, err_len, "SLO item \"%s\": expected KEY:VALUE, e.g. ttft:500ms", item);
            return KNEE_ERR_SYNTAX;
        }
        *colon = '\0';
        double *dst = NULL;
        if (!strcmp(item, "ttft"))
            dst = &slo.ttft_ms;
        else if (!strcmp(item, "tpot"))
            dst = &slo.tpot_ms;
        else if (!strcmp(item, "e2e"))
            dst = &slo.e2e_ms;
        if (!dst) {
            snprintf(err, err_len, "SLO item \"%s:%s\": unknown key \"%s\" (ttft, tpot, e2e)", item,
                     colon + 1, item);
            return KNEE_ERR_SYNTAX;
        }
        enum knee_status st = knee_parse_duration_ms(colon + 1, dst);
        if (st != KNEE_OK) {
            snprintf(err, err_len, "SLO item \"%s:%s\": %s", item, colon + 1,
                     st == KNEE_ERR_RANGE ? "the value must be finite and > 0"
                                          : "expected a number with a unit us, ms or s");
            return st;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    *out = slo;
    return KNEE_OK;
}

int knee_slo_met(const struct knee_slo *slo, double ttft_ms, double tpot_ms, double e2e_ms)
{
    if (!isnan(slo->ttft_ms) && !(ttft_ms <= slo->ttft_ms))
        return 0;
    if (!isnan(slo->tpot_ms) && !isnan(tpot_ms) && !(tpot_ms <= slo->tpot_ms))
        return 0;
    if (!isnan(slo->e2e_ms) && !(e2e_ms <= slo->e2e_ms))
        return 0;
    return 1;
}

const char *knee_slo_str(const struct knee_slo *slo, char *out, size_t out_len)
{
    size_t n = 0;
    out[0] = '\0';
    const char *names[3] = {"TTFT", "TPOT", "e2e"};
    double v[3] = {slo->ttft_ms, slo->tpot_ms, slo->e2e_ms};
    for (int i = 0; i < 3; i++) {
        if (isnan(v[i]))
            continue;
        int w = snprintf(out + n, n < out_len ? out_len - n : 0, "%s%s <= %g ms", n ? ", " : "",
                         names[i], v[i]);
        if (w > 0)
            n += (size_t)w;
        if (n >= out_len)
            break;
    }
    if (!n)
        snprintf(out, out_len, "none");
    return out;
}

/* ---- analysis ---- */

void knee_config_defaults(struct knee_config *cfg)
{
    cfg->threshold = 0.10;
    cfg->slo_attainment = 0.95;
    cfg->load_name = "concurrency";
    cfg->load_unit = "";
    cfg->slo_desc = NULL;
}

static int usable(const struct knee_level *l)
{
    return l->n_ok > 0 && l->load > 0.0 && isfinite(l->load) && l->tok_s > 0.0 &&
           isfinite(l->tok_s) && l->p95_e2e_s > 0.0 && isfinite(l->p95_e2e_s);
}

/* Indices of usable levels ranked by load (ties keep input order). Returns the count. */
static int rank_usable(const struct knee_level *lv, size_t n, int *u)
{
    int nu = 0;
    if (n > KNEE_MAX_LEVELS)
        n = KNEE_MAX_LEVELS;
    for (size_t i = 0; i < n; i++) {
        if (!usable(&lv[i]))
            continue;
        int k = nu++;
        while (k > 0 && lv[u[k - 1]].load > lv[i].load) {
            u[k] = u[k - 1];
            k--;
        }
        u[k] = (int)i;
    }
    return nu;
}

static double gain_per_doubling(const struct knee_level *a, const struct knee_level *b)
{
    double d = log2(b->load / a->load);
    if (!(d > 0.0))
        return NAN;
    return pow(b->tok_s / a->tok_s, 1.0 / d) - 1.0;
}

/* 1 when a stops scaling towards b (see the header), 0 when it still scales or the loads are
 * equal. *why gets the reason when 1. */
static int stops_scaling(const struct knee_level *a, const struct knee_level *b, double threshold,
                         enum knee_reason *why)
{
    double g = gain_per_doubling(a, b);
    if (isnan(g))
        return 0;
    double rT = b->tok_s / a->tok_s, rL = b->p95_e2e_s / a->p95_e2e_s;
    if (g < threshold) {
        *why = KNEE_REASON_THROUGHPUT_FLAT;
        return 1;
    }
    if (g < KNEE_RESUME_FACTOR * threshold && rL > rT) {
        *why = KNEE_REASON_LATENCY;
        return 1;
    }
    return 0;
}

/* Compact numbers for sentences. */
static const char *fmt_num(double v, char *out, size_t n)
{
    double a = fabs(v);
    if (isnan(v))
        snprintf(out, n, "n/a");
    else if (a >= 100.0)
        snprintf(out, n, "%.0f", v);
    else if (a >= 10.0)
        snprintf(out, n, "%.1f", v);
    else
        snprintf(out, n, "%.2f", v);
    return out;
}

static const char *fmt_ms(double ms, char *out, size_t n)
{
    char t[32];
    if (isnan(ms))
        snprintf(out, n, "n/a");
    else if (ms >= 1000.0)
        snprintf(out, n, "%s s", fmt_num(ms / 1000.0, t, sizeof t));
    else
        snprintf(out, n, "%s ms", fmt_num(ms, t, sizeof t));
    return out;
}

/* A ratio: "1.91x", "3.7x", "32x". */
static const char *fmt_ratio(double r, char *out, size_t n)
{
    if (isnan(r))
        snprintf(out, n, "n/a");
    else if (r >= 10.0)
        snprintf(out, n, "%.0fx", r);
    else if (r >= 2.0)
        snprintf(out, n, "%.1fx", r);
    else
        snprintf(out, n, "%.2fx", r);
    return out;
}

static const char *fmt_load(const struct knee_config *c, double x, char *out, size_t n)
{
    snprintf(out, n, "%g%s", x, c->load_unit ? c->load_unit : "");
    return out;
}

static const char *fmt_pct_signed(double frac, char *out, size_t n)
{
    snprintf(out, n, "%+.*f%%", fabs(frac) < 0.1 ? 1 : 0, frac * 100.0);
    return out;
}

void knee_analyze(const struct knee_level *lv, size_t n, const struct knee_config *cfg,
                  struct knee_result *out)
{
    memset(out, 0, sizeof *out);
    out->i_knee = out->i_next = out->i_peak = out->i_sweet = out->i_slo_max = -1;
    out->gain_per_doubling = out->tput_ratio = out->e2e_ratio = NAN;
    int u[KNEE_MAX_LEVELS];
    int nu = rank_usable(lv, n, u);
    out->n_usable = nu;
    const char *name = cfg->load_name ? cfg->load_name : "concurrency";
    char a[48], b[48], c[48];
    if (nu == 0) {
        out->reason = KNEE_REASON_NONE;
        snprintf(out->summary, sizeof out->summary,
                 "No usable level (none had a successful request): no knee.");
        return;
    }
    /* Peak, SLO limit, sweet spot. */
    double best_power = -1.0, best_power_slo = -1.0;
    int i_sweet_all = -1, i_sweet_slo = -1;
    for (int k = 0; k < nu; k++) {
        const struct knee_level *l = &lv[u[k]];
        if (out->i_peak < 0 || l->tok_s > lv[out->i_peak].tok_s)
            out->i_peak = u[k];
        double power = l->tok_s / l->p95_e2e_s;
        int meets = cfg->slo_desc && l->goodput_frac >= cfg->slo_attainment;
        if (power > best_power) {
            best_power = power;
            i_sweet_all = u[k];
        }
        if (meets && power > best_power_slo) {
            best_power_slo = power;
            i_sweet_slo = u[k];
        }
        if (meets)
            out->i_slo_max = u[k];
    }
    out->i_sweet = i_sweet_slo >= 0 ? i_sweet_slo : i_sweet_all;
    if (nu == 1) {
        out->i_knee = u[0];
        out->reason = KNEE_REASON_SINGLE;
        snprintf(out->summary, sizeof out->summary,
                 "Only one usable level (%s %s): no knee can be computed from one point.", name,
                 fmt_load(cfg, lv[u[0]].load, a, sizeof a));
        return;
    }
    int k_knee = -1;
    enum knee_reason why = KNEE_REASON_NONE;
    for (int k = 0; k + 1 < nu && k_knee < 0; k++) {
        enum knee_reason w = KNEE_REASON_NONE;
        if (!stops_scaling(&lv[u[k]], &lv[u[k + 1]], cfg->threshold, &w))
            continue;
        /* Not a knee if throughput scales again further on (a dip, e.g. a batch shape the
         * kernels handle badly, or noise). */
        int confirmed = 1;
        for (int j = k + 2; j < nu && confirmed; j++)
            confirmed =
                gain_per_doubling(&lv[u[k]], &lv[u[j]]) < KNEE_RESUME_FACTOR * cfg->threshold;
        if (confirmed) {
            k_knee = k;
            why = w;
        }
    }
    if (k_knee < 0) {
        const struct knee_level *p = &lv[u[nu - 2]], *q = &lv[u[nu - 1]];
        out->i_knee = u[nu - 1];
        out->reason = KNEE_REASON_NOT_REACHED;
        double g = gain_per_doubling(p, q);
        double rT = q->tok_s / p->tok_s, rL = q->p95_e2e_s / p->p95_e2e_s;
        int w =
            snprintf(out->summary, sizeof out->summary,
                     "No knee within the sweep: from %s %s to %s throughput still changed %s "
                     "per doubling (threshold %.0f%%) and ",
                     name, fmt_load(cfg, p->load, a, sizeof a), fmt_load(cfg, q->load, b, sizeof b),
                     fmt_pct_signed(g, c, sizeof c), cfg->threshold * 100.0);
        size_t off = w > 0 && (size_t)w < sizeof out->summary ? (size_t)w : 0;
        /* still scaling either way (stops_scaling): say which way latency went */
        if (!(rL > rT))
            snprintf(out->summary + off, sizeof out->summary - off,
                     "p95 e2e grew less than throughput.");
        else
            snprintf(out->summary + off, sizeof out->summary - off,
                     "p95 e2e grew more than throughput (%.2fx against %.2fx), but the gain is "
                     "above %.0f%% per doubling.",
                     rL, rT, KNEE_RESUME_FACTOR * cfg->threshold * 100.0);
        out->gain_per_doubling = g;
        return;
    }
    const struct knee_level *K = &lv[u[k_knee]], *N = &lv[u[k_knee + 1]];
    out->i_knee = u[k_knee];
    out->i_next = u[k_knee + 1];
    out->knee_reached = 1;
    out->reason = why;
    out->gain_per_doubling = gain_per_doubling(K, N);
    out->tput_ratio = N->tok_s / K->tok_s;
    out->e2e_ratio = N->p95_e2e_s / K->p95_e2e_s;
    if (why == KNEE_REASON_THROUGHPUT_FLAT)
        snprintf(out->summary, sizeof out->summary,
                 "Knee at %s %s: going to %s changed throughput by %s per doubling (below the "
                 "%.0f%% threshold) while p95 e2e grew %.2fx.",
                 name, fmt_load(cfg, K->load, a, sizeof a), fmt_load(cfg, N->load, b, sizeof b),
                 fmt_pct_signed(out->gain_per_doubling, c, sizeof c), cfg->threshold * 100.0,
                 out->e2e_ratio);
    else
        snprintf(out->summary, sizeof out->summary,
                 "Knee at %s %s: going to %s, p95 e2e grew %.2fx while throughput grew only "
                 "%.2fx (latency outgrows throughput).",
                 name, fmt_load(cfg, K->load, a, sizeof a), fmt_load(cfg, N->load, b, sizeof b),
                 out->e2e_ratio, out->tput_ratio);
}

/* ---- rules of thumb ---- */

static void rule_add(struct knee_rules *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void rule_add(struct knee_rules *r, const char *fmt, ...)
{
    if (r->n >= KNEE_MAX_RULES)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->text[r->n], sizeof r->text[r->n], fmt, ap);
    va_end(ap);
    r->n++;
}

/* Capitalised copy of a word ("concurrency" -> "Concurrency"). */
static const char *cap_word(const char *s, char *out, size_t n)
{
    snprintf(out, n, "%s", s);
    if (out[0])
        out[0] = (char)toupper((unsigned char)out[0]);
    return out;
}

static void rule_errors(const struct knee_level *lv, size_t n, const struct knee_config *cfg,
                        struct knee_rules *out)
{
    char text[400] = "", a[48], cname[32];
    size_t len = 0;
    int n_listed = 0, n_err_levels = 0, n_dead = 0;
    long tot_err = 0, tot = 0;
    for (size_t i = 0; i < n && i < KNEE_MAX_LEVELS; i++) {
        if (lv[i].n_err <= 0)
            continue;
        n_err_levels++;
        tot_err += lv[i].n_err;
        tot += lv[i].n_err + lv[i].n_ok;
        n_dead += lv[i].n_ok == 0;
        if (n_listed < 4) {
            int w = snprintf(
                text + len, sizeof text - len, "%s%s %s: %d of %d failed%s", n_listed ? "; " : "",
                n_listed ? cfg->load_name : cap_word(cfg->load_name, cname, sizeof cname),
                fmt_load(cfg, lv[i].load, a, sizeof a), lv[i].n_err, lv[i].n_err + lv[i].n_ok,
                lv[i].n_ok == 0 ? " (all)" : "");
            if (w > 0 && (size_t)w < sizeof text - len)
                len += (size_t)w;
            n_listed++;
        }
    }
    if (!n_err_levels)
        return;
    rule_add(out,
             "%s%s. %ld of %ld requests failed at these %d level%s; latency and throughput there "
             "cover successful requests only%s.",
             text, n_err_levels > n_listed ? "; ..." : "", tot_err, tot, n_err_levels,
             n_err_levels == 1 ? "" : "s",
             n_dead ? ", and levels without any success are left out of the knee" : "");
}

/* 1 if a level above load gave no usable numbers (all its requests failed). */
static int failed_above(const struct knee_level *lv, size_t n, double load)
{
    for (size_t i = 0; i < n && i < KNEE_MAX_LEVELS; i++)
        if (lv[i].load > load && !usable(&lv[i]))
            return 1;
    return 0;
}

/* What every rule section reads: the usable levels in load order and the knee among them. */
struct rules_ctx {
    const struct knee_level *lv;
    size_t n;
    const struct knee_config *cfg;
    const struct knee_result *kr;
    const char *name;                          /* the load's name: "concurrency", "rate", ... */
    int u[KNEE_MAX_LEVELS], nu;                /* usable levels, lowest load first */
    int k_knee;                                /* index into u of the knee (0 when none) */
    const struct knee_level *first, *last, *K; /* lowest, highest usable level; the knee or last */
};

/* Rule: the scaling region: lowest level up to the knee. */
static void rules_scaling(const struct rules_ctx *x, struct knee_rules *out)
{
    const struct knee_config *cfg = x->cfg;
    const char *name = x->name;
    int k_knee = x->k_knee;
    const struct knee_level *first = x->first;
    const struct knee_level *K = x->K;
    char a[48], b[48], c[48], d[48], e[48], f[48];
    if (k_knee > 0) {
        double rT = K->tok_s / first->tok_s, rL = K->p95_e2e_s / first->p95_e2e_s;
        rule_add(out,
                 "From %s %s to %s, throughput rose %.1fx (%s -> %s tok/s) while p95 e2e changed "
                 "%.2fx (%s -> %s): %s.",
                 name, fmt_load(cfg, first->load, a, sizeof a), fmt_load(cfg, K->load, b, sizeof b),
                 rT, fmt_num(first->tok_s, c, sizeof c), fmt_num(K->tok_s, d, sizeof d), rL,
                 fmt_ms(first->p95_e2e_s * 1000.0, e, sizeof e),
                 fmt_ms(K->p95_e2e_s * 1000.0, f, sizeof f),
                 rL < 0.5 * rT ? "in this range more load is served almost for free"
                               : "batching helps, but latency pays for part of it");
    }
}

/* Rule: beyond the knee, or why the knee was not placed. */
static void rules_beyond(const struct rules_ctx *x, struct knee_rules *out)
{
    const struct knee_level *lv = x->lv;
    size_t n = x->n;
    const struct knee_config *cfg = x->cfg;
    const struct knee_result *kr = x->kr;
    const char *name = x->name;
    const int *u = x->u;
    int nu = x->nu;
    int k_knee = x->k_knee;
    const struct knee_level *last = x->last;
    const struct knee_level *K = x->K;
    char a[48], b[48], c[48], d[48], e[48], f[48], cname[32];
    if (kr->knee_reached && k_knee < nu - 1) {
        double dT = last->tok_s / K->tok_s - 1.0, rL = last->p95_e2e_s / K->p95_e2e_s;
        rule_add(out,
                 "Beyond %s %s, p95 e2e grows %.1fx (%s -> %s at %s) for %s throughput (%s -> %s "
                 "tok/s): extra load there mostly waits.",
                 name, fmt_load(cfg, K->load, a, sizeof a), rL,
                 fmt_ms(K->p95_e2e_s * 1000.0, b, sizeof b),
                 fmt_ms(last->p95_e2e_s * 1000.0, c, sizeof c),
                 fmt_load(cfg, last->load, d, sizeof d), fmt_pct_signed(dT, e, sizeof e),
                 fmt_num(K->tok_s, f, sizeof f), fmt_num(last->tok_s, cname, sizeof cname));
    } else if (kr->reason == KNEE_REASON_NOT_REACHED && failed_above(lv, n, last->load)) {
        rule_add(out,
                 "Throughput still changed %s per doubling between %s %s and %s, the highest level "
                 "with usable numbers; the levels above it failed, so the knee cannot be placed.",
                 fmt_pct_signed(kr->gain_per_doubling, a, sizeof a), name,
                 fmt_load(cfg, lv[u[nu - 2]].load, b, sizeof b),
                 fmt_load(cfg, last->load, c, sizeof c));
    } else if (kr->reason == KNEE_REASON_NOT_REACHED) {
        rule_add(out,
                 "Throughput still changed %s per doubling between %s %s and %s: the knee lies "
                 "beyond this sweep, so extend it to higher %s.",
                 fmt_pct_signed(kr->gain_per_doubling, a, sizeof a), name,
                 fmt_load(cfg, lv[u[nu - 2]].load, b, sizeof b),
                 fmt_load(cfg, last->load, c, sizeof c), name);
    }
}

/* Rule: peak throughput and the sweet spot. */
static void rules_peak(const struct rules_ctx *x, struct knee_rules *out)
{
    const struct knee_level *lv = x->lv;
    const struct knee_config *cfg = x->cfg;
    const struct knee_result *kr = x->kr;
    const char *name = x->name;
    const struct knee_level *K = x->K;
    char a[48], b[48], c[48], d[48], e[48];
    if (kr->i_peak >= 0) {
        const struct knee_level *P = &lv[kr->i_peak], *S = kr->i_sweet >= 0 ? &lv[kr->i_sweet] : P;
        if (kr->knee_reached && kr->i_peak != kr->i_knee)
            rule_add(out,
                     "Peak throughput was %s tok/s at %s %s; %s %s already gives %.0f%% of it at "
                     "%.1fx lower p95 e2e (%s vs %s).",
                     fmt_num(P->tok_s, a, sizeof a), name, fmt_load(cfg, P->load, b, sizeof b),
                     name, fmt_load(cfg, K->load, c, sizeof c), 100.0 * K->tok_s / P->tok_s,
                     P->p95_e2e_s / K->p95_e2e_s, fmt_ms(K->p95_e2e_s * 1000.0, d, sizeof d),
                     fmt_ms(P->p95_e2e_s * 1000.0, e, sizeof e));
        else
            rule_add(out,
                     "Best throughput per second of p95 latency (the sweet spot) at %s %s: %s "
                     "tok/s with p95 e2e %s; peak throughput %s tok/s at %s %s.",
                     name, fmt_load(cfg, S->load, a, sizeof a), fmt_num(S->tok_s, b, sizeof b),
                     fmt_ms(S->p95_e2e_s * 1000.0, c, sizeof c), fmt_num(P->tok_s, d, sizeof d),
                     name, fmt_load(cfg, P->load, e, sizeof e));
    }
}

/* Rule: the highest level meeting the SLO, or the closest one. */
static void rules_slo(const struct rules_ctx *x, struct knee_rules *out)
{
    const struct knee_level *lv = x->lv;
    const struct knee_config *cfg = x->cfg;
    const struct knee_result *kr = x->kr;
    const char *name = x->name;
    const int *u = x->u;
    int nu = x->nu;
    char a[48], b[48], c[48];
    if (cfg->slo_desc) {
        if (kr->i_slo_max >= 0) {
            const struct knee_level *M = &lv[kr->i_slo_max];
            const struct knee_level *above = NULL;
            for (int k = 0; k < nu; k++)
                if (lv[u[k]].load > M->load) {
                    above = &lv[u[k]];
                    break;
                }
            char tail[160] = "";
            if (above)
                snprintf(tail, sizeof tail, "; at %s %s only %.0f%% of requests met it", name,
                         fmt_load(cfg, above->load, a, sizeof a), 100.0 * above->goodput_frac);
            rule_add(out,
                     "Highest %s meeting %s for at least %.0f%% of requests: %s, with %s req/s of "
                     "goodput%s.",
                     name, cfg->slo_desc, 100.0 * cfg->slo_attainment,
                     fmt_load(cfg, M->load, b, sizeof b), fmt_num(M->goodput_rps, c, sizeof c),
                     tail);
        } else {
            int ib = -1;
            for (int k = 0; k < nu; k++)
                if (!isnan(lv[u[k]].goodput_frac) &&
                    (ib < 0 || lv[u[k]].goodput_frac > lv[ib].goodput_frac))
                    ib = u[k];
            if (ib >= 0)
                rule_add(out,
                         "No %s tested met %s for %.0f%% of requests; the closest was %s %s with "
                         "%.0f%%.",
                         name, cfg->slo_desc, 100.0 * cfg->slo_attainment, name,
                         fmt_load(cfg, lv[ib].load, a, sizeof a), 100.0 * lv[ib].goodput_frac);
        }
    }
}

/* Rule: where the server starts queueing. */
static void rules_queue(const struct rules_ctx *x, struct knee_rules *out)
{
    const struct knee_level *lv = x->lv;
    const struct knee_config *cfg = x->cfg;
    const char *name = x->name;
    const int *u = x->u;
    int nu = x->nu;
    const struct knee_level *last = x->last;
    char a[48], b[48], c[48], d[48];
    int any_w = 0, k_q = -1;
    double wmax_all = 0;
    for (int k = 0; k < nu; k++) {
        const struct knee_level *l = &lv[u[k]];
        if (isnan(l->waiting_max) && isnan(l->waiting_mean))
            continue;
        any_w = 1;
        double wm = isnan(l->waiting_max) ? l->waiting_mean : l->waiting_max;
        if (wm > wmax_all)
            wmax_all = wm;
        /* A queue is a mean of at least half a request waiting (a momentary 1 between a
         * request's arrival and the next step is not a queue). */
        int queued = isnan(l->waiting_mean) ? wm >= 1.0 : l->waiting_mean >= 0.5;
        if (k_q < 0 && queued)
            k_q = k;
    }
    if (k_q >= 0) {
        const struct knee_level *Q = &lv[u[k_q]];
        if (k_q > 0 && !isnan(Q->p95_ttft_ms) && !isnan(lv[u[k_q - 1]].p95_ttft_ms) &&
            lv[u[k_q - 1]].p95_ttft_ms > 0) {
            const struct knee_level *B = &lv[u[k_q - 1]];
            rule_add(out,
                     "The server starts queueing at %s %s (mean %.1f, max %.0f requests waiting): "
                     "requests beyond its running batch wait for a slot, and p95 TTFT there is "
                     "%.1fx that of %s %s (%s -> %s).",
                     name, fmt_load(cfg, Q->load, a, sizeof a), Q->waiting_mean, Q->waiting_max,
                     Q->p95_ttft_ms / B->p95_ttft_ms, name, fmt_load(cfg, B->load, b, sizeof b),
                     fmt_ms(B->p95_ttft_ms, c, sizeof c), fmt_ms(Q->p95_ttft_ms, d, sizeof d));
        } else {
            rule_add(out,
                     "The server queues requests from %s %s on (mean %.1f, max %.0f waiting): "
                     "that level already exceeds its running batch.",
                     name, fmt_load(cfg, Q->load, a, sizeof a), Q->waiting_mean, Q->waiting_max);
        }
    } else if (any_w) {
        rule_add(
            out,
            "The server never built a queue (mean waiting below 0.5 at every level): it ran up "
            "to %s %s at once, so its batch limit was not reached.",
            name, fmt_load(cfg, last->load, a, sizeof a));
    }
}

/* Rule: where the added latency comes from (TTFT or TPOT). */
static void rules_latency_source(const struct rules_ctx *x, struct knee_rules *out)
{
    const struct knee_config *cfg = x->cfg;
    const char *name = x->name;
    const struct knee_level *first = x->first;
    const struct knee_level *last = x->last;
    char a[48], b[48], c[48], d[48], e[48], f[48], cname[32];
    if (!isnan(first->p95_ttft_ms) && !isnan(last->p95_ttft_ms) && !isnan(first->p95_tpot_ms) &&
        !isnan(last->p95_tpot_ms) && first->p95_ttft_ms > 0 && first->p95_tpot_ms > 0) {
        double rt = last->p95_ttft_ms / first->p95_ttft_ms;
        double rp = last->p95_tpot_ms / first->p95_tpot_ms;
        /* by the milliseconds each adds to e2e, not by their ratios: a TPOT that grows less
         * than TTFT still adds more when it is paid for every output token */
        double d_e2e_ms = (last->p95_e2e_s - first->p95_e2e_s) * 1000.0;
        double d_ttft_ms = last->p95_ttft_ms - first->p95_ttft_ms;
        char g[24], h[24];
        const char *why;
        if (rt < 1.25 && rp < 1.25)
            why = "per-request latency stayed nearly flat across the sweep";
        else if (d_e2e_ms > 0 ? d_ttft_ms >= 0.5 * d_e2e_ms : rt > rp)
            why = "waiting before the first token (queueing and prefill) drives most of the "
                  "added latency";
        else
            why = "slower decoding of each token drives most of the added latency";
        rule_add(out, "%s %s -> %s: p95 TTFT grew %s (%s -> %s) and p95 TPOT %s (%s -> %s), so %s.",
                 cap_word(name, cname, sizeof cname), fmt_load(cfg, first->load, a, sizeof a),
                 fmt_load(cfg, last->load, b, sizeof b), fmt_ratio(rt, g, sizeof g),
                 fmt_ms(first->p95_ttft_ms, c, sizeof c), fmt_ms(last->p95_ttft_ms, d, sizeof d),
                 fmt_ratio(rp, h, sizeof h), fmt_ms(first->p95_tpot_ms, e, sizeof e),
                 fmt_ms(last->p95_tpot_ms, f, sizeof f), why);
    }
}

void knee_rules_make(const struct knee_level *lv, size_t n, const struct knee_config *cfg,
                     const struct knee_result *kr, struct knee_rules *out)
{
    memset(out, 0, sizeof *out);
    struct rules_ctx x = {.lv = lv, .n = n, .cfg = cfg, .kr = kr};
    x.name = cfg->load_name ? cfg->load_name : "concurrency";
    x.nu = rank_usable(lv, n, x.u);

    rule_errors(lv, n, cfg, out);
    if (x.nu == 0)
        return;
    if (x.nu == 1) {
        char a[48], b[48], c[48];
        const struct knee_level *l = &lv[x.u[0]];
        rule_add(out,
                 "Only %s %s gave usable numbers (%s tok/s, p95 e2e %s): sweep at least two levels "
                 "to see where throughput stops scaling.",
                 x.name, fmt_load(cfg, l->load, a, sizeof a), fmt_num(l->tok_s, b, sizeof b),
                 fmt_ms(l->p95_e2e_s * 1000.0, c, sizeof c));
        return;
    }
    for (int k = 0; k < x.nu; k++)
        if (x.u[k] == kr->i_knee)
            x.k_knee = k;
    x.first = &lv[x.u[0]];
    x.last = &lv[x.u[x.nu - 1]];
    x.K = kr->i_knee >= 0 ? &lv[kr->i_knee] : x.last;
    rules_scaling(&x, out);
    rules_beyond(&x, out);
    rules_peak(&x, out);
    rules_slo(&x, out);
    rules_queue(&x, out);
    rules_latency_source(&x, out);
}
