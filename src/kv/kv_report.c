/* kv_report: a struct kv_result (measured by kv_run, analysed by kv_analyse) turned into what
 * `slmprobe kv` writes: the notes (report sections with computed text only, charts of memory and
 * maximum concurrency against max-model-len), kv_cache_scaling.csv with its fixed leading
 * columns ("n/a" for unknown numbers, the reason in notes), kv.json ("slmprobe.kv/1"), and
 * kv_scaling.sh with the exact launch command of every length. It also reads an earlier CSV back
 * for --resume. It measures nothing and computes no statistic beyond formatting. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kv/kv_probe.h"
#include "util/log.h"
#include "util/buf.h"

#define KV_OUT_CAP (64u << 20)

static const char *const csv_cols[] = {
    "max_model_len", "gpu_mem_used_mb", "delta_mb_from_prev", "bytes_per_token_est", "notes",
    "kv_capacity_tokens", "max_concurrency", "theory_bytes_per_token", "server_rss_mb", "start_s",
    "gpu_memory_utilization", "status", "capacity_source", "gpu_mem_total_used_mb", "resid_mb",
    "estimated_max_model_len", "verify_claimed", "verify_above", "log"};
#define N_CSV_COLS (sizeof csv_cols / sizeof csv_cols[0])

static int row_measured(const struct kv_row *w)
{
    return w->status == KV_ROW_OK || w->status == KV_ROW_RESUMED;
}

static int is_baseline(const struct kv_result *res, size_t i)
{
    for (size_t k = 0; k < i; k++)
        if (row_measured(&res->rows[k]) && res->rows[k].gpu_util == res->rows[i].gpu_util)
            return 0;
    return row_measured(&res->rows[i]);
}

/* The notes cell: status and reason, baseline, step, why memory is n/a, verify verdicts. */
static void row_notes(const struct kv_result *res, size_t i, struct buf *b)
{
    const struct kv_row *w = &res->rows[i];
    const char *sep = "";
    if (w->status == KV_ROW_START_FAILED || w->status == KV_ROW_DIED) {
        buf_printf(b, "%s: %s", w->status == KV_ROW_DIED ? "server died" : "did not start",
                   w->error);
        sep = "; ";
    } else if (w->status == KV_ROW_SKIPPED) {
        buf_printf(b, "not run: %s", w->error);
        sep = "; ";
    }
    if (is_baseline(res, i)) {
        buf_printf(b, "%sbaseline", sep);
        sep = "; ";
    }
    if (w->status == KV_ROW_RESUMED) {
        buf_printf(b, "%sresumed", sep);
        sep = "; ";
    }
    if (w->step) {
        buf_printf(b, "%sstep change", sep);
        sep = "; ";
    }
    if (row_measured(w) && w->mem_reason[0] &&
        (isnan(w->gpu_mem_used_mb) || isnan(w->server_rss_mb))) {
        buf_printf(b, "%s%s", sep, w->mem_reason);
        sep = "; ";
    }
    if (w->verify.claimed != KV_VERIFY_NOT_RUN)
        buf_printf(b, "%sverify: %s at %d, %s at %d", sep,
                   kv_verify_verdict_str(w->verify.claimed), w->verify.n_claimed,
                   kv_verify_verdict_str(w->verify.above), w->verify.n_above);
}

/* ---- CSV ---- */

static void csv_num(struct buf *b, double v, int prec)
{
    if (isnan(v))
        buf_puts(b, "n/a");
    else
        buf_printf(b, "%.*f", prec, v);
}

static void csv_text(struct buf *b, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        buf_puts(b, s);
        return;
    }
    buf_putc(b, '"');
    for (; *s; s++) {
        if (*s == '"')
            buf_putc(b, '"');
        buf_putc(b, *s);
    }
    buf_putc(b, '"');
}

static void csv_row(const struct kv_result *res, size_t i, struct buf *b)
{
    const struct kv_row *w = &res->rows[i];
    struct buf notes;
    buf_init(&notes, 256, 8192);
    row_notes(res, i, &notes);
    buf_printf(b, "%d,", w->max_model_len);
    csv_num(b, w->gpu_mem_used_mb, 1);
    buf_putc(b, ',');
    csv_num(b, w->delta_mb_from_prev, 1);
    buf_putc(b, ',');
    csv_num(b, w->bytes_per_token_est, 0);
    buf_putc(b, ',');
    csv_text(b, notes.len ? notes.data : "");
    buf_putc(b, ',');
    csv_num(b, w->kv_capacity_tokens >= 0 ? (double)w->kv_capacity_tokens : NAN, 0);
    buf_putc(b, ',');
    csv_num(b, w->max_concurrency, 2);
    buf_putc(b, ',');
    csv_num(b, res->theory.bytes_per_token, 0);
    buf_putc(b, ',');
    csv_num(b, w->server_rss_mb, 1);
    buf_putc(b, ',');
    csv_num(b, w->start_s, 2);
    buf_putc(b, ',');
    csv_num(b, w->gpu_util > 0 ? w->gpu_util : NAN, 2);
    buf_printf(b, ",%s,%s,", kv_row_status_str(w->status), w->capacity_source);
    csv_num(b, w->gpu_mem_total_used_mb, 1);
    buf_putc(b, ',');
    csv_num(b, w->resid_mb, 2);
    buf_putc(b, ',');
    csv_num(b, w->estimated_max_model_len >= 0 ? (double)w->estimated_max_model_len : NAN, 0);
    buf_printf(b, ",%s,%s,", kv_verify_verdict_str(w->verify.claimed),
               kv_verify_verdict_str(w->verify.above));
    csv_text(b, w->log_name);
    buf_putc(b, '\n');
    buf_free(&notes);
}

static void csv_render(const struct kv_result *res, struct buf *b)
{
    for (size_t c = 0; c < N_CSV_COLS; c++)
        buf_printf(b, "%s%s", c ? "," : "", csv_cols[c]);
    buf_putc(b, '\n');
    for (size_t i = 0; i < res->n_rows; i++)
        csv_row(res, i, b);
}

/* Splits one CSV line into fields (RFC 4180 quotes), in place. Returns the field count. */
static int csv_split(char *line, char **f, int cap)
{
    int n = 0;
    char *p = line;
    while (n < cap) {
        char *w = p;
        f[n++] = w;
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p)
                    break;
                if (*p == '"' && p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *w++ = *p++;
                }
            }
            while (*p && *p != ',')
                p++;
        } else {
            while (*p && *p != ',')
                *w++ = *p++;
        }
        int more = *p == ',';
        *w = 0;
        if (!more)
            break;
        p++;
    }
    return n;
}

static double csv_value(const char *s)
{
    if (!s || !*s || strcmp(s, "n/a") == 0)
        return NAN;
    return strtod(s, NULL);
}

static void csv_load_row(char **f, int nf, const int *col, struct kv_result *r)
{
    const char *status = col[11] >= 0 && col[11] < nf ? f[col[11]] : "";
    if (strcmp(status, "ok") != 0 && strcmp(status, "resumed") != 0)
        return; /* failed lengths are launched again */
    struct kv_row *w = kv_result_add_row(r);
    w->status = KV_ROW_RESUMED;
#define COLV(k) (col[k] >= 0 && col[k] < nf ? csv_value(f[col[k]]) : NAN)
    w->max_model_len = (int)COLV(0);
    w->gpu_mem_used_mb = COLV(1);
    double cap = COLV(5);
    w->kv_capacity_tokens = isnan(cap) ? -1 : (int64_t)cap;
    w->max_concurrency = COLV(6);
    w->server_rss_mb = COLV(8);
    w->start_s = COLV(9);
    double u = COLV(10);
    w->gpu_util = isnan(u) ? 0 : u;
    w->gpu_mem_total_used_mb = COLV(13);
#undef COLV
    w->capacity_source = "csv";
    if (col[18] >= 0 && col[18] < nf)
        snprintf(w->log_name, sizeof w->log_name, "%s", f[col[18]]);
}

int kv_csv_load(const char *path, struct kv_result *r, char *err, size_t err_len)
{
    size_t len;
    char *text = file_read_all(path, 16u << 20, &len);
    if (!text)
        return errno == ENOENT ? 0 : (snprintf(err, err_len, "cannot read %s: %s", path,
                                               strerror(errno)),
                                      -1);
    int col[N_CSV_COLS], n_added = 0;
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    char *f[64];
    int nf = line ? csv_split(line, f, 64) : 0;
    for (size_t c = 0; c < N_CSV_COLS; c++) {
        col[c] = -1;
        for (int k = 0; k < nf; k++)
            if (strcmp(f[k], csv_cols[c]) == 0)
                col[c] = k;
    }
    if (col[0] != 0) {
        snprintf(err, err_len, "%s: not a kv_cache_scaling.csv (no max_model_len column)", path);
        free(text);
        return -1;
    }
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        nf = csv_split(line, f, 64);
        size_t before = r->n_rows;
        csv_load_row(f, nf, col, r);
        n_added += r->n_rows > before;
    }
    free(text);
    return n_added;
}

/* ---- report ---- */

static void report_summary(const struct kv_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "summary", "Summary");
    const struct kv_theory *t = &res->theory;
    size_t n_ok = 0, n_fail = 0;
    for (size_t i = 0; i < res->n_rows; i++) {
        n_ok += row_measured(&res->rows[i]);
        n_fail += res->rows[i].status == KV_ROW_START_FAILED || res->rows[i].status == KV_ROW_DIED;
    }
    report_paragraph(s, "%zu launches of %s measured, %zu failed to start or died.", n_ok,
                     res->server, n_fail);
    if (t->known)
        report_paragraph(s,
                         "Theory: 2 x %d layers x %d KV heads x %d head dim x %d bytes (%s) = "
                         "%.0f bytes per KV token (%s).",
                         t->n_layer, t->n_head_kv, t->head_dim, t->dtype_bytes, t->dtype,
                         t->bytes_per_token, t->source);
    else
        report_paragraph(s, "Theory: unknown (%s).", t->reason);
    report_paragraph(s, "Regime: %s: %s.", kv_regime_str(res->regime), res->regime_why);
    if (res->failure[0])
        report_paragraph(s, "The sweep %s: %s.", res->interrupted ? "was interrupted" : "failed",
                         res->failure);
}

static void report_fit(const struct kv_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "fit", "Memory vs max-model-len");
    const struct kv_fit *f = &res->fit;
    if (!f->ok) {
        report_paragraph(s, "No fit: fewer than two launches with a %s memory reading (%s).",
                         res->mem_source == KV_MEM_NONE ? "GPU or RSS"
                                                        : kv_mem_source_str(res->mem_source),
                         res->n_rows && res->rows[0].mem_reason[0] ? res->rows[0].mem_reason
                                                                   : "no readings");
        return;
    }
    const char *shape = f->r2 >= 0.99 ? "linear" : f->r2 >= 0.9 ? "nearly linear" : "not linear";
    if (res->regime == KV_REGIME_PRE_ALLOCATING && f->max_abs_resid_mb < 1.0)
        shape = "flat: every point within 1 MiB of the line, so R² measures noise";
    report_paragraph(s,
                     "Memory (%s) = fixed %.1f MiB + slope %.1f bytes per token x max-model-len, "
                     "over %d launches; R² = %.4f (%s), largest residual %.2f MiB.",
                     kv_mem_source_str(res->mem_source), f->fixed_mb, f->slope_bytes_per_token,
                     f->n, f->r2, shape, f->max_abs_resid_mb);
    if (!isnan(res->slope_vs_theory))
        report_paragraph(s, "Measured slope %.1f bytes per token vs theory %.0f: %.1f%% of it.",
                         f->slope_bytes_per_token, res->theory.bytes_per_token,
                         100 * res->slope_vs_theory);
    if (res->n_steps == 0)
        report_paragraph(s, "No step changes in the residuals.");
    for (size_t i = 0; i < res->n_rows; i++)
        if (res->rows[i].step)
            report_bullet(s, "Step change at max-model-len %d: %+.1f MiB from the previous "
                             "length, residual %+.2f MiB.",
                          res->rows[i].max_model_len, res->rows[i].delta_mb_from_prev,
                          res->rows[i].resid_mb);
}

static void report_rows(const struct kv_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "rows", "Launches");
    struct report_table *t = report_table_add(s, "kv_cache_scaling", NULL);
    report_table_col(t, "max_model_len", "max-model-len", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "gpu_memory_utilization", "util", NULL, REPORT_COL_NUMBER, 2);
    report_table_col(t, "gpu_mem_used_mb", "GPU mem", "MiB", REPORT_COL_NUMBER, 1);
    report_table_col(t, "server_rss_mb", "RSS", "MiB", REPORT_COL_NUMBER, 1);
    report_table_col(t, "delta_mb_from_prev", "delta", "MiB", REPORT_COL_NUMBER, 1);
    report_table_col(t, "bytes_per_token_est", "bytes/token", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "kv_capacity_tokens", "KV capacity", "tokens", REPORT_COL_NUMBER, 0);
    report_table_col(t, "max_concurrency", "max conc.", "x", REPORT_COL_NUMBER, 2);
    report_table_col(t, "start_s", "start", "s", REPORT_COL_NUMBER, 2);
    report_table_col(t, "notes", "notes", NULL, REPORT_COL_TEXT, 0);
    struct buf notes;
    buf_init(&notes, 256, 8192);
    for (size_t i = 0; i < res->n_rows; i++) {
        const struct kv_row *w = &res->rows[i];
        report_table_row_add(t);
        report_row_num(t, w->max_model_len);
        if (w->gpu_util > 0)
            report_row_num(t, w->gpu_util);
        else
            report_row_na(t, "default");
        const char *why = w->mem_reason[0] ? w->mem_reason : kv_row_status_str(w->status);
        if (isnan(w->gpu_mem_used_mb))
            report_row_na(t, why);
        else
            report_row_num(t, w->gpu_mem_used_mb);
        if (isnan(w->server_rss_mb))
            report_row_na(t, why);
        else
            report_row_num(t, w->server_rss_mb);
        report_row_num(t, w->delta_mb_from_prev);
        report_row_num(t, w->bytes_per_token_est);
        report_row_num(t, w->kv_capacity_tokens >= 0 ? (double)w->kv_capacity_tokens : NAN);
        report_row_num(t, w->max_concurrency);
        report_row_num(t, w->start_s);
        buf_reset(&notes);
        row_notes(res, i, &notes);
        report_row_text(t, "%s", notes.len ? notes.data : "");
    }
    buf_free(&notes);
}

static void report_envelope(const struct kv_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "envelope", "Headroom envelope");
    report_paragraph(s, "For N concurrent requests of L tokens: the smallest measured "
                        "max-model-len (and gpu-memory-utilization) whose KV capacity holds "
                        "N x L tokens.");
    struct report_table *t = report_table_add(s, "envelope", NULL);
    report_table_col(t, "n_concurrent", "N", NULL, REPORT_COL_NUMBER, 0);
    char key[32], label[32];
    for (int j = 0; j < KV_ENV_L; j++) {
        snprintf(key, sizeof key, "len_%d", res->env_len[j]);
        snprintf(label, sizeof label, "L = %d", res->env_len[j]);
        report_table_col(t, key, label, NULL, REPORT_COL_TEXT, 0);
    }
    for (int a = 0; a < KV_ENV_N; a++) {
        report_table_row_add(t);
        report_row_num(t, res->env[a][0].n_conc);
        for (int j = 0; j < KV_ENV_L; j++) {
            const struct kv_envelope_cell *c = &res->env[a][j];
            if (c->fits && c->gpu_util > 0)
                report_row_text(t, "fits: max-model-len %d, util %.2f", c->max_model_len,
                                c->gpu_util);
            else if (c->fits)
                report_row_text(t, "fits: max-model-len %d", c->max_model_len);
            else if (!isnan(c->predicted_mb))
                report_row_text(t, "no measured launch; about %.0f MiB at -c %d",
                                c->predicted_mb, c->n_conc * c->req_len);
            else
                report_row_text(t, "does not fit");
        }
    }
}

static void report_picks(const struct kv_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "picks", "Which max-model-len");
    if (res->safe_max_model_len > 0)
        report_paragraph(s, "Safe on this machine for %d concurrent requests of the full "
                            "length: max-model-len %d%s.",
                         res->concurrency_wanted, res->safe_max_model_len,
                         res->safe_gpu_util > 0 ? " at the utilisation measured" : "");
    else
        report_paragraph(s, "No measured max-model-len holds %d concurrent full-length "
                            "requests.",
                         res->concurrency_wanted);
    const struct kv_pick *l = &res->pick_latency, *p = &res->pick_throughput;
    if (l->found)
        report_bullet(s, "Latency-focused service (long requests, %d at a time, none queued): "
                         "max-model-len %d, %.2fx max concurrency, %lld KV tokens.",
                      res->concurrency_wanted, l->max_model_len, l->max_concurrency,
                      (long long)l->kv_capacity_tokens);
    else
        report_bullet(s, "Latency-focused service: no measured length gives %d concurrent "
                         "full-length requests.",
                      res->concurrency_wanted);
    if (p->found)
        report_bullet(s, "Throughput-focused service (most requests in flight): max-model-len "
                         "%d, %.2fx max concurrency, %lld KV tokens.",
                      p->max_model_len, p->max_concurrency, (long long)p->kv_capacity_tokens);
}

static void report_verify(const struct kv_result *res, struct report *r)
{
    int any = 0;
    for (size_t i = 0; i < res->n_rows; i++)
        any |= res->rows[i].verify.claimed != KV_VERIFY_NOT_RUN;
    if (!any)
        return;
    struct report_section *s = report_section_add(r, "verify", "Claimed capacity under load");
    for (size_t i = 0; i < res->n_rows; i++) {
        const struct kv_verify *v = &res->rows[i].verify;
        if (v->claimed == KV_VERIFY_NOT_RUN)
            continue;
        report_bullet(s, "max-model-len %d: %d requests at the claim ran %s (%d ok, waiting max "
                         "%.0f, preemptions %.0f); %d above it: %s (%d ok, waiting max %.0f, "
                         "preemptions %.0f)%s%s.",
                      res->rows[i].max_model_len, v->n_claimed,
                      kv_verify_verdict_str(v->claimed), v->ok_claimed, v->waiting_max_claimed,
                      v->preemptions_claimed, v->n_above, kv_verify_verdict_str(v->above),
                      v->ok_above, v->waiting_max_above, v->preemptions_above,
                      v->note[0] ? "; " : "", v->note);
    }
}

static void report_charts(const struct kv_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "charts", "Charts");
    size_t n = res->n_rows, k = 0;
    double *x = xcalloc(n + 1, sizeof *x), *y = xcalloc(n + 1, sizeof *y);
    double *yf = xcalloc(n + 1, sizeof *yf), *yt = xcalloc(n + 1, sizeof *yt);
    double *yc = xcalloc(n + 1, sizeof *yc);
    double x0 = NAN, y0 = NAN;
    for (size_t i = 0; i < n; i++) {
        const struct kv_row *w = &res->rows[i];
        if (!row_measured(w) || w->gpu_util != res->rows[0].gpu_util)
            continue;
        double m = res->mem_source == KV_MEM_GPU ? w->gpu_mem_used_mb : w->server_rss_mb;
        if (isnan(x0) && !isnan(m)) {
            x0 = w->max_model_len;
            y0 = m;
        }
        x[k] = w->max_model_len;
        y[k] = m;
        yf[k] = res->fit.ok ? res->fit.fixed_mb + res->fit.slope_bytes_per_token * x[k] / 1048576.0
                            : NAN;
        yt[k] = res->theory.known && !isnan(x0)
                    ? y0 + res->theory.bytes_per_token * (x[k] - x0) / 1048576.0
                    : NAN;
        yc[k] = w->max_concurrency;
        k++;
    }
    struct report_chart *c = report_chart_add(s, REPORT_CHART_LINE, "memory",
                                              "Memory vs max-model-len", "max-model-len",
                                              "tokens", "memory", "MiB");
    report_chart_series(c, kv_mem_source_str(res->mem_source), x, y, k);
    report_chart_series(c, "fit", x, yf, k);
    report_chart_series(c, "theory (from the first length)", x, yt, k);
    c = report_chart_add(s, REPORT_CHART_LINE, "max_concurrency",
                         "Max concurrency vs max-model-len", "max-model-len", "tokens",
                         "max concurrency", "x");
    report_chart_series(c, "max concurrency", x, yc, k);
    free(x);
    free(y);
    free(yf);
    free(yt);
    free(yc);
}

static void report_launches(const struct kv_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "launches", "Launch commands and logs");
    report_paragraph(s, "kv_scaling.sh holds these commands; each server log is next to it.");
    struct buf b;
    buf_init(&b, 1024, 1u << 20);
    for (size_t i = 0; i < res->n_rows; i++)
        if (res->rows[i].cmdline[0])
            buf_printf(&b, "%s    # %s\n", res->rows[i].cmdline, res->rows[i].log_name);
    if (b.len)
        report_pre(s, b.data);
    buf_free(&b);
}

void kv_report(const struct kv_result *res, struct report *r)
{
    report_meta(r, "server", "%s", res->server);
    report_meta(r, "model", "%s", res->model);
    report_meta(r, "regime", "%s", kv_regime_str(res->regime));
    report_set_html_name(r, "kv_cache_scaling_notes.html");
    report_summary(res, r);
    report_fit(res, r);
    report_rows(res, r);
    report_picks(res, r);
    report_envelope(res, r);
    report_verify(res, r);
    report_charts(res, r);
    report_launches(res, r);
}

/* ---- kv.json ---- */

static void json_key_num(struct buf *b, const char *key, double v, int comma)
{
    buf_printf(b, "%s\"%s\":", comma ? "," : "", key);
    buf_json_double(b, v);
}

static void json_key_str(struct buf *b, const char *key, const char *v)
{
    buf_printf(b, ",\"%s\":", key);
    buf_json_str(b, v);
}

static void json_row(const struct kv_result *res, size_t i, struct buf *b)
{
    const struct kv_row *w = &res->rows[i];
    struct buf notes;
    buf_init(&notes, 256, 8192);
    row_notes(res, i, &notes);
    json_key_num(b, "max_model_len", w->max_model_len, 0);
    json_key_num(b, "gpu_memory_utilization", w->gpu_util > 0 ? w->gpu_util : NAN, 1);
    json_key_str(b, "status", kv_row_status_str(w->status));
    json_key_str(b, "error", w->error);
    json_key_num(b, "gpu_mem_used_mb", w->gpu_mem_used_mb, 1);
    json_key_num(b, "gpu_mem_total_used_mb", w->gpu_mem_total_used_mb, 1);
    json_key_num(b, "server_rss_mb", w->server_rss_mb, 1);
    json_key_str(b, "mem_reason", w->mem_reason);
    json_key_num(b, "delta_mb_from_prev", w->delta_mb_from_prev, 1);
    json_key_num(b, "bytes_per_token_est", w->bytes_per_token_est, 1);
    json_key_num(b, "kv_capacity_tokens",
                 w->kv_capacity_tokens >= 0 ? (double)w->kv_capacity_tokens : NAN, 1);
    json_key_num(b, "max_concurrency", w->max_concurrency, 1);
    json_key_str(b, "capacity_source", w->capacity_source);
    json_key_num(b, "estimated_max_model_len",
                 w->estimated_max_model_len >= 0 ? (double)w->estimated_max_model_len : NAN, 1);
    json_key_num(b, "start_s", w->start_s, 1);
    json_key_num(b, "resid_mb", w->resid_mb, 1);
    buf_printf(b, ",\"step\":%s", w->step ? "true" : "false");
    json_key_str(b, "verify_claimed", kv_verify_verdict_str(w->verify.claimed));
    json_key_str(b, "verify_above", kv_verify_verdict_str(w->verify.above));
    json_key_num(b, "verify_n_claimed", w->verify.n_claimed, 1);
    json_key_num(b, "verify_n_above", w->verify.n_above, 1);
    json_key_str(b, "notes", notes.len ? notes.data : "");
    json_key_str(b, "log", w->log_name);
    json_key_str(b, "command", w->cmdline);
    buf_free(&notes);
}

static void json_render(const struct kv_result *res, struct buf *b)
{
    const struct kv_theory *t = &res->theory;
    buf_puts(b, "{\"schema\":\"slmprobe.kv/1\"");
    json_key_str(b, "server", res->server);
    json_key_str(b, "model", res->model);
    buf_printf(b, ",\"theory\":{\"known\":%s", t->known ? "true" : "false");
    json_key_str(b, "source", t->known ? t->source : t->reason);
    json_key_num(b, "n_layer", t->known ? t->n_layer : NAN, 1);
    json_key_num(b, "n_head_kv", t->known ? t->n_head_kv : NAN, 1);
    json_key_num(b, "head_dim", t->known ? t->head_dim : NAN, 1);
    json_key_num(b, "dtype_bytes", t->known ? t->dtype_bytes : NAN, 1);
    json_key_num(b, "bytes_per_token", t->bytes_per_token, 1);
    buf_puts(b, "}");
    json_key_str(b, "mem_source", kv_mem_source_str(res->mem_source));
    buf_printf(b, ",\"fit\":{\"ok\":%s", res->fit.ok ? "true" : "false");
    json_key_num(b, "n", res->fit.n, 1);
    json_key_num(b, "fixed_mb", res->fit.fixed_mb, 1);
    json_key_num(b, "slope_bytes_per_token", res->fit.slope_bytes_per_token, 1);
    json_key_num(b, "r2", res->fit.r2, 1);
    json_key_num(b, "max_abs_resid_mb", res->fit.max_abs_resid_mb, 1);
    json_key_num(b, "slope_vs_theory", res->slope_vs_theory, 1);
    json_key_num(b, "n_steps", res->n_steps, 1);
    buf_puts(b, "}");
    json_key_str(b, "regime", kv_regime_str(res->regime));
    json_key_str(b, "regime_why", res->regime_why);
    json_key_num(b, "concurrency_wanted", res->concurrency_wanted, 1);
    json_key_num(b, "safe_max_model_len", res->safe_max_model_len ? res->safe_max_model_len : NAN,
                 1);
    json_key_num(b, "pick_latency_max_model_len",
                 res->pick_latency.found ? res->pick_latency.max_model_len : NAN, 1);
    json_key_num(b, "pick_throughput_max_model_len",
                 res->pick_throughput.found ? res->pick_throughput.max_model_len : NAN, 1);
    buf_printf(b, ",\"failed\":%s,\"interrupted\":%s", res->failed ? "true" : "false",
               res->interrupted ? "true" : "false");
    json_key_str(b, "failure", res->failure);
    buf_puts(b, ",\"rows\":[");
    for (size_t i = 0; i < res->n_rows; i++) {
        buf_puts(b, i ? ",{" : "{");
        json_row(res, i, b);
        buf_putc(b, '}');
    }
    buf_puts(b, "],\"envelope\":[");
    for (int a = 0; a < KV_ENV_N; a++) {
        for (int j = 0; j < KV_ENV_L; j++) {
            const struct kv_envelope_cell *c = &res->env[a][j];
            buf_printf(b, "%s{\"n_concurrent\":%d,\"request_len\":%d,\"fits\":%s",
                       a || j ? "," : "", c->n_conc, c->req_len, c->fits ? "true" : "false");
            json_key_num(b, "max_model_len", c->fits ? c->max_model_len : NAN, 1);
            json_key_num(b, "gpu_memory_utilization", c->gpu_util > 0 ? c->gpu_util : NAN, 1);
            json_key_num(b, "predicted_mb", c->predicted_mb, 1);
            buf_putc(b, '}');
        }
    }
    buf_puts(b, "]}\n");
}

/* ---- kv_scaling.sh ---- */

static void script_render(const struct kv_result *res, struct buf *b)
{
    buf_puts(b, "#!/bin/sh\n# The exact server launches of `slmprobe kv`, one per length.\n"
                "# Usage: sh kv_scaling.sh LENGTH[@UTIL]   (each runs in the foreground)\n"
                "case \"$1\" in\n");
    struct buf keys;
    buf_init(&keys, 256, 1u << 16);
    for (size_t i = 0; i < res->n_rows; i++) {
        const struct kv_row *w = &res->rows[i];
        if (!w->cmdline[0])
            continue;
        char key[64];
        if (w->gpu_util > 0)
            snprintf(key, sizeof key, "%d@%g", w->max_model_len, w->gpu_util);
        else
            snprintf(key, sizeof key, "%d", w->max_model_len);
        buf_printf(b, "%s)\n    exec %s\n    ;;\n", key, w->cmdline);
        buf_printf(&keys, " %s", key);
    }
    buf_printf(b, "*)\n    echo \"usage: $0 LENGTH (one of:%s)\" >&2\n    exit 2\n    ;;\nesac\n",
               keys.len ? keys.data : " none");
    buf_free(&keys);
}

static int write_buf(const char *dir, const char *name, const struct buf *b, char *err,
                     size_t err_len)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (file_write_all(path, b->data ? b->data : "", b->len) != 0) {
        snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int kv_write_outputs(const struct kv_result *res, const struct report *r, const char *out_dir,
                     char *err, size_t err_len)
{
    struct buf b;
    buf_init(&b, 4096, KV_OUT_CAP);
    int rc = 0;
    csv_render(res, &b);
    rc |= write_buf(out_dir, "kv_cache_scaling.csv", &b, err, err_len);
    buf_reset(&b);
    json_render(res, &b);
    rc |= write_buf(out_dir, "kv.json", &b, err, err_len);
    buf_reset(&b);
    script_render(res, &b);
    rc |= write_buf(out_dir, "kv_scaling.sh", &b, err, err_len);
    buf_free(&b);
    char path[1200];
    snprintf(path, sizeof path, "%s/kv_scaling.sh", out_dir);
    chmod(path, 0755);
    snprintf(path, sizeof path, "%s/kv_cache_scaling_notes.md", out_dir);
    if (report_write_file(r, REPORT_FORMAT_MARKDOWN, path, err, err_len) != REPORT_OK)
        rc = -1;
    snprintf(path, sizeof path, "%s/kv_cache_scaling_notes.html", out_dir);
    if (report_write_file(r, REPORT_FORMAT_HTML, path, err, err_len) != REPORT_OK)
        rc = -1;
    return rc ? -1 : 0;
}

int kv_run_and_write(const struct kv_opts *o, struct session *s, struct kv_result *res)
{
    char err[1024];
    int failed = kv_run(o, s, res);
    kv_analyse(res);
    struct report *r = report_new("KV cache capacity and memory vs max-model-len");
    report_meta(r, "command", "%s", s->command_line);
    report_meta(r, "client_calibration", "%s", s->ceiling_note);
    report_meta(r, "started", "%s", s->started_at);
    kv_report(res, r);
    if (kv_write_outputs(res, r, s->out_dir, err, sizeof err) != 0) {
        log_error("kv", "%s", err);
        failed = 1;
    } else {
        log_info("kv", "wrote %s/kv_cache_scaling.csv, kv_cache_scaling_notes.md/.html, kv.json, "
                       "kv_scaling.sh; regime %s",
                 s->out_dir, kv_regime_str(res->regime));
    }
    if (res->failure[0])
        log_error("kv", "%s", res->failure);
    report_free(r);
    return failed;
}
