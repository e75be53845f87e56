/* report_md: renders a report as GitHub Markdown: headings, escaped paragraphs and lists, fenced
 * blocks, pipe tables, and charts as text (sparklines for line charts, block bars for bar charts)
 * with a link to the HTML rendering that draws them. It does not wrap lines or draw images. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_impl.h"

static void md_fence(const char *text, char *fence, size_t len)
{
    size_t run = 0, best = 0;
    for (const char *p = text; *p; p++) {
        run = *p == '`' ? run + 1 : 0;
        if (run > best)
            best = run;
    }
    size_t n = best >= 3 ? best + 1 : 3;
    if (n >= len)
        n = len - 1;
    memset(fence, '`', n);
    fence[n] = 0;
}

static void md_pad(struct rpt_out *o, const char *s, size_t width)
{
    rpt_put(o, s);
    for (size_t w = rpt_u8_width(s); w < width; w++)
        rpt_put(o, " ");
}

static const char *const spark_levels[] = {"\xE2\x96\x81", "\xE2\x96\x82", "\xE2\x96\x83",
                                           "\xE2\x96\x84", "\xE2\x96\x85", "\xE2\x96\x86",
                                           "\xE2\x96\x87", "\xE2\x96\x88"};
static const char *const eighths[] = {"",
                                      "\xE2\x96\x8F",
                                      "\xE2\x96\x8E",
                                      "\xE2\x96\x8D",
                                      "\xE2\x96\x8C",
                                      "\xE2\x96\x8B",
                                      "\xE2\x96\x8A",
                                      "\xE2\x96\x89"};
#define MD_SPARK_MAX 60
#define MD_BAR_COLS 40

static void md_chart_line(struct rpt_out *o, const struct report_chart *c)
{
    size_t name_w = 0;
    for (size_t k = 0; k < c->n_series; k++) {
        char *nm = rpt_u8_trunc(c->series[k].name[0] ? c->series[k].name : "series", 24);
        if (rpt_u8_width(nm) > name_w)
            name_w = rpt_u8_width(nm);
        free(nm);
    }
    for (size_t k = 0; k < c->n_series; k++) {
        const struct series *s = &c->series[k];
        double ymin = INFINITY, ymax = -INFINITY, xmin = INFINITY, xmax = -INFINITY;
        for (size_t i = 0; i < s->n; i++) {
            double x = s->x ? s->x[i] : (double)(i + 1);
            if (!isfinite(s->y[i]) || !isfinite(x))
                continue;
            ymin = fmin(ymin, s->y[i]);
            ymax = fmax(ymax, s->y[i]);
            xmin = fmin(xmin, x);
            xmax = fmax(xmax, x);
        }
        char *nm = rpt_u8_trunc(s->name[0] ? s->name : "series", 24);
        md_pad(o, nm, name_w);
        free(nm);
        rpt_put(o, "  ");
        if (!isfinite(ymin)) {
            rpt_put(o, "no data\n");
            continue;
        }
        /* bucket points (averaging) so a long series fits one line */
        size_t nb = s->n < MD_SPARK_MAX ? s->n : MD_SPARK_MAX;
        for (size_t b = 0; b < nb; b++) {
            size_t i0 = b * s->n / nb, i1 = (b + 1) * s->n / nb;
            double sum = 0;
            size_t cnt = 0;
            for (size_t i = i0; i < i1; i++)
                if (isfinite(s->y[i])) {
                    sum += s->y[i];
                    cnt++;
                }
            if (!cnt) {
                rpt_put(o, " ");
                continue;
            }
            double v = sum / (double)cnt;
            int lvl = ymax > ymin ? (int)floor((v - ymin) / (ymax - ymin) * 7.999) : 3;
            lvl = lvl < 0 ? 0 : lvl > 7 ? 7 : lvl;
            rpt_put(o, spark_levels[lvl]);
        }
        char a[48], b2[48], xa[48], xb[48];
        rpt_fmt_sig(ymin, a, sizeof a);
        rpt_fmt_sig(ymax, b2, sizeof b2);
        rpt_fmt_sig(xmin, xa, sizeof xa);
        rpt_fmt_sig(xmax, xb, sizeof xb);
        rpt_putf(o, "  %s: %s .. %s%s%s; %s: %s .. %s%s%s\n", c->y_label[0] ? c->y_label : "y", a,
                 b2, c->y_unit ? " " : "", c->y_unit ? c->y_unit : "",
                 c->x_label[0] ? c->x_label : "x", xa, xb, c->x_unit ? " " : "",
                 c->x_unit ? c->x_unit : "");
    }
}

static void md_chart_bar(struct rpt_out *o, const struct report_chart *c)
{
    size_t nc = rpt_bar_n_cats(c);
    char tmp[64];
    double vmax = 0, vmin = 0;
    for (size_t k = 0; k < c->n_series; k++)
        for (size_t i = 0; i < nc; i++) {
            double a, b;
            if (rpt_bar_span(&c->series[k], i, &a, &b)) {
                vmax = fmax(vmax, fmax(a, b));
                vmin = fmin(vmin, fmin(a, b));
            }
        }
    double span = vmax - vmin;
    size_t label_w = 0;
    for (size_t i = 0; i < nc; i++) {
        char *l = rpt_u8_trunc(rpt_bar_cat_label(c, i, tmp, sizeof tmp), 28);
        size_t w = rpt_u8_width(l);
        free(l);
        if (c->n_series > 1) {
            for (size_t k = 0; k < c->n_series; k++) {
                char *sn = rpt_u8_trunc(c->series[k].name, 16);
                size_t ws = w + 3 + rpt_u8_width(sn);
                free(sn);
                if (ws > label_w)
                    label_w = ws;
            }
        } else if (w > label_w) {
            label_w = w;
        }
    }
    for (size_t i = 0; i < nc; i++) {
        for (size_t k = 0; k < c->n_series; k++) {
            const struct series *s = &c->series[k];
            char *l = rpt_u8_trunc(rpt_bar_cat_label(c, i, tmp, sizeof tmp), 28);
            char label[160];
            if (c->n_series > 1) {
                char *sn = rpt_u8_trunc(s->name, 16);
                snprintf(label, sizeof label, "%s / %s", l, sn);
                free(sn);
            } else {
                snprintf(label, sizeof label, "%s", l);
            }
            free(l);
            md_pad(o, label, label_w);
            rpt_put(o, "  ");
            double a, b;
            if (!rpt_bar_span(s, i, &a, &b)) {
                rpt_put(o, "n/a\n");
                continue;
            }
            double lo = fmin(a, b), hi = fmax(a, b);
            double f0 = span > 0 ? (lo - vmin) / span * MD_BAR_COLS : 0;
            double f1 = span > 0 ? (hi - vmin) / span * MD_BAR_COLS : 0;
            int c0 = (int)floor(f0 + 0.5);
            long eighth_total = (long)floor((f1 - c0) * 8 + 0.5);
            if (eighth_total < 1 && hi > lo)
                eighth_total = 1;
            for (int j = 0; j < c0; j++)
                rpt_put(o, " ");
            for (long j = 0; j < eighth_total / 8; j++)
                rpt_put(o, "\xE2\x96\x88");
            rpt_put(o, eighths[eighth_total % 8]);
            char va[48], vb[48], vd[48];
            rpt_fmt_sig(a, va, sizeof va);
            rpt_fmt_sig(b, vb, sizeof vb);
            rpt_fmt_sig(b - a, vd, sizeof vd);
            if (s->lo)
                rpt_putf(o, " %s%s%s (%s .. %s)\n", vd, c->y_unit ? " " : "",
                         c->y_unit ? c->y_unit : "", va, vb);
            else
                rpt_putf(o, " %s%s%s\n", vb, c->y_unit ? " " : "", c->y_unit ? c->y_unit : "");
        }
    }
}

/* One value with its axis name and unit: "concurrency = 8", "TTFT = 120 ms". */
static void md_mark_value(struct rpt_out *o, const char *label, const char *dflt, double v,
                          const char *unit)
{
    char tmp[48];
    rpt_fmt_sig(v, tmp, sizeof tmp);
    rpt_putf(o, "%s = %s%s%s", label[0] ? label : dflt, isfinite(v) ? tmp : "n/a",
             unit && isfinite(v) ? " " : "", unit && isfinite(v) ? unit : "");
}

/* Marks listed under the chart lines: "◆ knee: concurrency = 8, TTFT = 120 ms". */
static void md_chart_marks(struct rpt_out *o, const struct report_chart *c)
{
    for (size_t i = 0; i < c->n_marks; i++) {
        const struct mark *m = &c->marks[i];
        rpt_put(o, "\xE2\x97\x86 ");
        rpt_put(o, m->label);
        rpt_put(o, ": ");
        md_mark_value(o, c->x_label, "x", m->x, c->x_unit);
        rpt_put(o, ", ");
        md_mark_value(o, c->y_label, "y", m->y, c->y_unit);
        rpt_put(o, "\n");
    }
}

static void md_chart(struct rpt_out *o, const struct report *r, const struct report_chart *c)
{
    rpt_put(o, "**Chart: ");
    rpt_put_md_inline(o, c->title);
    rpt_put(o, "**");
    if (r->html_name) {
        rpt_put(o, " (drawn in [");
        rpt_put_md_inline(o, r->html_name);
        rpt_put(o, "](");
        /* link destination: percent-encode the few characters that would end or break it */
        for (const char *p = r->html_name; *p; p++) {
            unsigned char ch = (unsigned char)*p;
            if (ch <= 0x20 || ch == '(' || ch == ')' || ch == '<' || ch == '>' || ch >= 0x7F)
                rpt_putf(o, "%%%02X", ch);
            else
                rpt_put_n(o, p, 1);
        }
        rpt_put(o, "))");
    }
    rpt_put(o, "\n\n```text\n");
    if (c->n_series == 0)
        rpt_put(o, "no data\n");
    else if (c->kind == REPORT_CHART_LINE)
        md_chart_line(o, c);
    else
        md_chart_bar(o, c);
    md_chart_marks(o, c);
    rpt_put(o, "```\n\n");
}

static void md_table(struct rpt_out *o, const struct report_table *t)
{
    if (t->caption) {
        rpt_put(o, "*");
        rpt_put_md_inline(o, t->caption);
        rpt_put(o, "*\n\n");
    }
    if (t->n_cols == 0)
        return;
    char h[512];
    rpt_put(o, "|");
    for (int j = 0; j < t->n_cols; j++) {
        rpt_col_header(&t->cols[j], h, sizeof h);
        rpt_put(o, " ");
        rpt_put_md_inline(o, h);
        rpt_put(o, " |");
    }
    rpt_put(o, "\n|");
    for (int j = 0; j < t->n_cols; j++)
        rpt_put(o, t->cols[j].kind == REPORT_COL_NUMBER ? "---:|" : "---|");
    rpt_put(o, "\n");
    for (size_t i = 0; i < t->n_rows; i++) {
        rpt_put(o, "|");
        for (int j = 0; j < t->n_cols; j++) {
            char tmp[64];
            int na;
            const char *s = rpt_cell_show(t, i, j, tmp, sizeof tmp, &na);
            rpt_put(o, " ");
            rpt_put_md_inline(o, s);
            rpt_put(o, " |");
        }
        rpt_put(o, "\n");
    }
    rpt_put(o, "\n");
}

void rpt_render_md(struct rpt_out *o, const struct report *r)
{
    rpt_put(o, "# ");
    rpt_put_md_inline(o, r->title);
    rpt_put(o, "\n\n");
    for (size_t i = 0; i < r->n_meta; i++) {
        rpt_put(o, "- **");
        rpt_put_md_inline(o, r->meta[i].key);
        rpt_put(o, "**: ");
        rpt_put_md_inline(o, r->meta[i].value);
        rpt_put(o, "\n");
    }
    if (r->n_meta)
        rpt_put(o, "\n");
    for (size_t i = 0; i < r->n_sections; i++) {
        const struct report_section *s = r->sections[i];
        rpt_put(o, "## ");
        rpt_put_md_inline(o, s->title);
        rpt_put(o, "\n\n");
        for (size_t j = 0; j < s->n_items; j++) {
            const struct item *it = &s->items[j];
            switch (it->kind) {
            case ITEM_PARAGRAPH:
                rpt_put_md_block(o, it->text);
                rpt_put(o, "\n\n");
                break;
            case ITEM_BULLET:
                rpt_put(o, "- ");
                rpt_put_md_block(o, it->text);
                rpt_put(o, "\n");
                if (j + 1 >= s->n_items || s->items[j + 1].kind != ITEM_BULLET)
                    rpt_put(o, "\n");
                break;
            case ITEM_PRE: {
                char fence[64];
                md_fence(it->text, fence, sizeof fence);
                rpt_put(o, fence);
                rpt_put(o, "\n");
                rpt_put(o, it->text);
                if (!*it->text || it->text[strlen(it->text) - 1] != '\n')
                    rpt_put(o, "\n");
                rpt_put(o, fence);
                rpt_put(o, "\n\n");
                break;
            }
            case ITEM_TABLE:
                if (rpt_table_in_doc(it->table))
                    md_table(o, it->table);
                break;
            case ITEM_CHART:
                md_chart(o, r, it->chart);
                break;
            }
        }
    }
}
