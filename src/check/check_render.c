/* check_render: the three outputs of `slmprobe check` from a judged struct check_result: a line
 * for humans, JSON (schema slmprobe.check/1, keys in docs/schema.md) and Prometheus text
 * exposition (format 0.0.4) for node_exporter's textfile collector. Latencies are exposed in
 * seconds, as Prometheus conventions want; everything else is plain counts and ratios. No I/O. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check/check.h"

static int is_latency(const struct check_bound *b)
{
    return b->metric != CHECK_METRIC_ERROR_RATE;
}

static void fmt_value(const struct check_bound *b, double v, char *out, size_t n)
{
    if (!isfinite(v))
        snprintf(out, n, "n/a");
    else if (is_latency(b))
        snprintf(out, n, "%.1f ms", v);
    else
        snprintf(out, n, "%.2f%%", v * 100);
}

void check_render_line(const struct check_result *r, struct buf *out)
{
    int n_bad = 0;
    for (int i = 0; i < r->n_verdicts; i++)
        n_bad += !r->v[i].ok;
    buf_printf(out, "%s: %d/%d requests ok against %s in %.1f s", r->all_ok ? "OK" : "FAIL",
               r->n_ok, r->n_sent, r->target, r->duration_s);
    if (r->n_verdicts)
        buf_printf(out, ", %d of %d bounds held", r->n_verdicts - n_bad, r->n_verdicts);
    buf_puts(out, "\n");
    if (r->fail_reason[0])
        buf_printf(out, "  %s\n", r->fail_reason);
    if (r->timed_out)
        buf_puts(out, "  the check hit its --timeout before every request finished\n");
    for (int i = 0; i < r->n_verdicts; i++) {
        const struct check_verdict *v = &r->v[i];
        char m[32], l[32];
        fmt_value(&v->bound, v->measured, m, sizeof m);
        fmt_value(&v->bound, v->bound.limit, l, sizeof l);
        if (!v->ok && isfinite(v->measured))
            buf_printf(out, "  %s %s > %s (over by %.0f%%)\n", v->bound.name, m, l,
                       v->bound.limit > 0 ? (v->measured / v->bound.limit - 1) * 100 : INFINITY);
        else if (!v->ok)
            buf_printf(out, "  %s not measured (no successful request)\n", v->bound.name);
        else
            buf_printf(out, "  %s %s <= %s\n", v->bound.name, m, l);
    }
}

static void json_summary(struct buf *out, const char *key, const struct hist *h)
{
    struct summary s;
    hist_summary(h, &s);
    buf_printf(out, "\"%s\":{\"n\":%llu,\"mean\":", key, (unsigned long long)s.n);
    buf_json_double(out, s.mean);
    const struct {
        const char *k;
        double v;
    } f[] = {{"p50", s.p50}, {"p90", s.p90}, {"p95", s.p95}, {"p99", s.p99}, {"max", s.max}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        buf_printf(out, ",\"%s\":", f[i].k);
        buf_json_double(out, f[i].v);
    }
    buf_puts(out, "}");
}

void check_render_json(const struct check_opts *o, const struct check_result *r, struct buf *out)
{
    buf_puts(out, "{\"schema\":\"slmprobe.check/1\",\"ok\":");
    buf_puts(out, r->all_ok ? "true" : "false");
    buf_puts(out, ",\"target\":");
    buf_json_str(out, r->target);
    buf_printf(out, ",\"config\":{\"n_requests\":%d,\"n_warmup\":%d,\"concurrency\":%d,"
                    "\"prompt_len_tokens\":%d,\"max_tokens\":%d,\"timeout_s\":",
               o->n_requests, o->n_warmup, o->concurrency, o->prompt_len, o->max_tokens);
    buf_json_double(out, o->timeout_s);
    buf_puts(out, ",\"slo\":");
    buf_json_str(out, o->slo_spec ? o->slo_spec : "");
    buf_printf(out, "},\"requests\":{\"sent\":%d,\"ok\":%d,\"failed\":%d},\"errors\":{", r->n_sent,
               r->n_ok, r->n_failed);
    for (int e = 1; e < REQ_ERROR__COUNT; e++)
        buf_printf(out, "%s\"%s\":%d", e > 1 ? "," : "", req_error_str((enum req_error)e),
                   r->n_err_class[e]);
    buf_puts(out, "},");
    json_summary(out, "ttft_ms", &r->ttft_ms);
    buf_puts(out, ",");
    json_summary(out, "tpot_ms", &r->tpot_ms);
    buf_puts(out, ",");
    json_summary(out, "itl_ms", &r->itl_ms);
    buf_puts(out, ",");
    json_summary(out, "e2e_ms", &r->e2e_ms);
    buf_puts(out, ",\"bounds\":[");
    for (int i = 0; i < r->n_verdicts; i++) {
        const struct check_verdict *v = &r->v[i];
        buf_printf(out, "%s{\"name\":\"%s\",\"unit\":\"%s\",\"limit\":", i ? "," : "",
                   v->bound.name, is_latency(&v->bound) ? "ms" : "fraction");
        buf_json_double(out, v->bound.limit);
        buf_puts(out, ",\"measured\":");
        buf_json_double(out, v->measured);
        buf_printf(out, ",\"ok\":%s}", v->ok ? "true" : "false");
    }
    buf_puts(out, "],\"timed_out\":");
    buf_puts(out, r->timed_out ? "true" : "false");
    buf_puts(out, ",\"fail_reason\":");
    buf_json_str(out, r->fail_reason);
    buf_puts(out, ",\"duration_s\":");
    buf_json_double(out, r->duration_s);
    buf_puts(out, "}\n");
}

/* Prometheus label values escape \, " and newline. */
static void prom_label(struct buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            buf_putc(out, '\\');
        if (*s == '\n') {
            buf_puts(out, "\\n");
            continue;
        }
        buf_putc(out, *s);
    }
}

static void prom_head(struct buf *out, const char *name, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

static void prom_num(struct buf *out, double v)
{
    if (isnan(v))
        buf_puts(out, "NaN\n");
    else
        buf_printf(out, "%.9g\n", v);
}

static void prom_latencies(const struct check_result *r, struct buf *out)
{
    prom_head(out, "slmprobe_check_latency_seconds", "Latency of the check's requests.");
    const struct {
        const char *name;
        const struct hist *h;
    } m[] = {{"ttft", &r->ttft_ms}, {"tpot", &r->tpot_ms}, {"itl", &r->itl_ms},
             {"e2e", &r->e2e_ms}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        struct summary s;
        hist_summary(m[i].h, &s);
        const struct {
            const char *stat;
            double v;
        } st[] = {{"p50", s.p50}, {"p95", s.p95}, {"p99", s.p99}, {"mean", s.mean}, {"max", s.max}};
        for (size_t k = 0; k < sizeof st / sizeof st[0]; k++) {
            buf_printf(out, "slmprobe_check_latency_seconds{metric=\"%s\",stat=\"%s\"} ",
                       m[i].name, st[k].stat);
            prom_num(out, st[k].v / 1000);
        }
    }
}

void check_render_prom(const struct check_result *r, struct buf *out)
{
    prom_head(out, "slmprobe_check_success", "1 when the check measured and every SLO bound held.");
    buf_printf(out, "slmprobe_check_success{target=\"");
    prom_label(out, r->target);
    buf_printf(out, "\"} %d\n", r->all_ok);
    prom_head(out, "slmprobe_check_requests", "Requests of the last check, by outcome.");
    buf_printf(out, "slmprobe_check_requests{outcome=\"ok\"} %d\n", r->n_ok);
    buf_printf(out, "slmprobe_check_requests{outcome=\"failed\"} %d\n", r->n_failed);
    prom_head(out, "slmprobe_check_errors", "Failed requests of the last check, by class.");
    for (int e = 1; e < REQ_ERROR__COUNT; e++)
        buf_printf(out, "slmprobe_check_errors{class=\"%s\"} %d\n",
                   req_error_str((enum req_error)e), r->n_err_class[e]);
    prom_latencies(r, out);
    prom_head(out, "slmprobe_check_slo_ok", "1 when the bound held.");
    for (int i = 0; i < r->n_verdicts; i++)
        buf_printf(out, "slmprobe_check_slo_ok{bound=\"%s\"} %d\n", r->v[i].bound.name,
                   r->v[i].ok);
    prom_head(out, "slmprobe_check_slo_limit", "The bound: seconds for latencies, a ratio for "
                                               "error_rate.");
    for (int i = 0; i < r->n_verdicts; i++) {
        buf_printf(out, "slmprobe_check_slo_limit{bound=\"%s\"} ", r->v[i].bound.name);
        prom_num(out, r->v[i].bound.limit / (is_latency(&r->v[i].bound) ? 1000 : 1));
    }
    prom_head(out, "slmprobe_check_slo_measured", "What the check measured for the bound (same "
                                                  "units as slmprobe_check_slo_limit).");
    for (int i = 0; i < r->n_verdicts; i++) {
        buf_printf(out, "slmprobe_check_slo_measured{bound=\"%s\"} ", r->v[i].bound.name);
        prom_num(out, r->v[i].measured / (is_latency(&r->v[i].bound) ? 1000 : 1));
    }
    prom_head(out, "slmprobe_check_duration_seconds", "Wall time of the check, launch included.");
    buf_printf(out, "slmprobe_check_duration_seconds %.6f\n", r->duration_s);
    prom_head(out, "slmprobe_check_last_run_timestamp_seconds", "When the check finished.");
    buf_printf(out, "slmprobe_check_last_run_timestamp_seconds %.3f\n", r->finished_unix_s);
}
