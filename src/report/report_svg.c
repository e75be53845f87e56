/* report_svg: draws one chart as an inline SVG element for the HTML renderer: axes with nice
 * ticks (linear or log x), grid, legend, line series with point markers, horizontal and floating
 * bars, hover titles on every point and bar. Static markup only: no script, no external font or
 * style. It computes only axis ranges and pixel positions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_impl.h"

/* ---------------------------------------------------------------- chart geometry */

#define AXIS_MAX_TICKS 64

struct axis {
    double lo, hi; /* drawn range (log axes: the values, not their logs) */
    int log;
    double ticks[AXIS_MAX_TICKS];
    int n_ticks;
    double step; /* linear axes */
};

static double nice_num(double x, int round_it)
{
    double e = floor(log10(x));
    double f = x / pow(10, e), nf;
    if (round_it)
        nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
    else
        nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
    return nf * pow(10, e);
}

/* Pads [*lo, *hi] by 5% of its span on each side, never across 0 (data on one side of 0 stays on
 * that side). A range of one value gets a span of its own; no data (not finite) becomes 0..1. */
static void range_pad(double *lo, double *hi)
{
    double a = *lo, b = *hi;
    if (!isfinite(a) || !isfinite(b)) {
        a = 0;
        b = 1;
    }
    if (!(b > a)) {
        double d = a == 0 ? 1 : fabs(a) * 0.1;
        a = a == 0 ? 0 : a - d;
        b += d;
    }
    double pad = (b - a) * 0.05;
    *lo = a >= 0 && a - pad < 0 ? 0 : a - pad;
    *hi = b <= 0 && b + pad > 0 ? 0 : b + pad;
}

/* The y rule of line charts: 0 joins the range when forced or when that at most doubles it. */
static void range_zero(double *lo, double *hi, int force)
{
    if (*lo > 0 && (force || *lo <= *hi / 2))
        *lo = 0;
    else if (*hi < 0 && (force || *hi >= *lo / 2))
        *hi = 0;
}

/* A linear axis over exactly [lo, hi] (already padded) with ticks at round steps inside it. */
static void axis_linear(struct axis *a, double lo, double hi)
{
    memset(a, 0, sizeof *a);
    if (!(hi > lo)) {
        lo = 0;
        hi = 1;
    }
    a->lo = lo;
    a->hi = hi;
    a->step = nice_num((hi - lo) / 5, 1);
    double eps = a->step * 1e-6;
    for (double v = ceil((lo - eps) / a->step) * a->step;
         v <= hi + eps && a->n_ticks < AXIS_MAX_TICKS; v += a->step)
        a->ticks[a->n_ticks++] = fabs(v) < a->step * 1e-9 ? 0 : v;
}

static void axis_log_tick(struct axis *a, double v)
{
    if (v >= a->lo * (1 - 1e-9) && v <= a->hi * (1 + 1e-9) && a->n_ticks < AXIS_MAX_TICKS)
        a->ticks[a->n_ticks++] = v;
}

/* A log axis over the data range padded by 5% of its decades (at least one decade in all), with
 * ticks at powers of ten inside it (at most ~10), plus 2x and 5x when it spans under two decades.
 */
static void axis_log(struct axis *a, double lo, double hi)
{
    memset(a, 0, sizeof *a);
    a->log = 1;
    if (!(lo > 0) || !isfinite(lo) || !isfinite(hi) || hi < lo) {
        lo = 1;
        hi = 10;
    }
    double l0 = log10(lo), l1 = log10(hi);
    if (l1 - l0 < 1) {
        double m = (l0 + l1) / 2;
        l0 = fmin(l0, m - 0.5);
        l1 = fmax(l1, m + 0.5);
    }
    double pad = (l1 - l0) * 0.05;
    a->lo = pow(10, l0 - pad);
    a->hi = pow(10, l1 + pad);
    int e0 = (int)floor(l0 - pad), e1 = (int)ceil(l1 + pad);
    int de = (e1 - e0 + 9) / 10;
    for (int e = e0; e <= e1; e += de < 1 ? 1 : de) {
        double p = pow(10, e);
        axis_log_tick(a, p);
        if (e1 - e0 <= 3) {
            axis_log_tick(a, 2 * p);
            axis_log_tick(a, 5 * p);
        }
    }
}

static double axis_frac(const struct axis *a, double v)
{
    if (a->log) {
        double l0 = log10(a->lo), l1 = log10(a->hi);
        return (log10(v) - l0) / (l1 - l0);
    }
    return (v - a->lo) / (a->hi - a->lo);
}

/* Tick label: enough decimals for the step, k/M/G suffix for large values. */
static void fmt_tick(const struct axis *a, double v, char *out, size_t len)
{
    double amax = fmax(fabs(a->lo), fabs(a->hi));
    double div = 1;
    const char *suf = "";
    if (amax >= 1e10) {
        div = 1e9;
        suf = "G";
    } else if (amax >= 1e7) {
        div = 1e6;
        suf = "M";
    } else if (amax >= 1e4) {
        div = 1e3;
        suf = "k";
    }
    if (a->log) {
        char tmp[48];
        double x = v / div;
        int prec = 0;
        while (prec < 12 && fabs(x * pow(10, prec) - round(x * pow(10, prec))) > 1e-6)
            prec++;
        rpt_fmt_fixed(x, prec, tmp, sizeof tmp);
        snprintf(out, len, "%s%s", tmp, suf);
        return;
    }
    double step = a->step / div;
    int prec = 0;
    while (prec < 12 && fabs(step * pow(10, prec) - round(step * pow(10, prec))) >
                            1e-6 * fmax(1, step * pow(10, prec)))
        prec++;
    char tmp[48];
    rpt_fmt_fixed(v / div, prec, tmp, sizeof tmp);
    snprintf(out, len, "%s%s", tmp, suf);
}

static const char *const chart_palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                            "#9467bd", "#8c564b", "#e377c2", "#17becf"};
#define CHART_PALETTE_N (sizeof chart_palette / sizeof chart_palette[0])

#define SVG_W 720.0
#define SVG_FONT "font-family=\"system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif\""

static int chart_has_legend(const struct report_chart *c)
{
    return c->n_series > 1 || (c->n_series == 1 && c->series[0].name[0]);
}

/* Legend rows laid out left to right, wrapping; returns the number of rows (draws if o). */
static int svg_legend(struct rpt_out *o, const struct report_chart *c, double y0)
{
    if (!chart_has_legend(c))
        return 0;
    double x = 12, y = y0;
    int rows = 1;
    for (size_t i = 0; i < c->n_series; i++) {
        char *name = rpt_u8_trunc(c->series[i].name, 40);
        double w = 16 + (double)rpt_u8_width(name) * 6.5 + 14;
        if (x + w > SVG_W - 12 && x > 12) {
            x = 12;
            y += 18;
            rows++;
        }
        if (o) {
            rpt_putf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>", x,
                     y - 9, chart_palette[i % CHART_PALETTE_N]);
            rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">", x + 14, y);
            rpt_put_html(o, name);
            rpt_put(o, "</text>");
        }
        x += w;
        free(name);
    }
    return rows;
}

static void svg_open(struct rpt_out *o, const struct report_chart *c, double h)
{
    rpt_putf(o,
             "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
             "viewBox=\"0 0 %.0f %.0f\" role=\"img\" " SVG_FONT " aria-label=\"",
             SVG_W, h, SVG_W, h);
    rpt_put_html(o, c->title);
    rpt_put(o, "\">");
    rpt_put(o, "<title>");
    rpt_put_html(o, c->title);
    rpt_put(o, "</title>");
    rpt_putf(o, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>", SVG_W,
             h);
    rpt_put(o, "<text x=\"12\" y=\"18\" font-size=\"13\" font-weight=\"bold\">");
    rpt_put_html(o, c->title);
    rpt_put(o, "</text>");
}

/* The plot area of a chart in SVG pixels and its axes (ay unused by bar charts). */
struct plot {
    double left, top, w, h;
    struct axis ax, ay;
};

static double plot_x(const struct plot *p, double v)
{
    return p->left + axis_frac(&p->ax, v) * p->w;
}

static double plot_y(const struct plot *p, double v)
{
    return p->top + p->h - axis_frac(&p->ay, v) * p->h;
}

static void svg_line(struct rpt_out *o, double x1, double y1, double x2, double y2)
{
    rpt_putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x1, y1, x2, y2);
}

/* Grid, axis lines, tick marks and tick labels. The vertical axis line is drawn at x_axis_at
 * (a pixel x); with_y: the y axis has ticks too (line charts). */
static void svg_axes(struct rpt_out *o, const struct plot *p, int with_y, double x_axis_at)
{
    const struct axis *ax = &p->ax, *ay = &p->ay;
    double bottom = p->top + p->h;
    rpt_put(o, "<g class=\"grid\" stroke=\"#e5e5e5\" stroke-width=\"1\">");
    for (int i = 0; with_y && i < ay->n_ticks; i++)
        svg_line(o, p->left, plot_y(p, ay->ticks[i]), p->left + p->w, plot_y(p, ay->ticks[i]));
    for (int i = 0; i < ax->n_ticks; i++)
        svg_line(o, plot_x(p, ax->ticks[i]), p->top, plot_x(p, ax->ticks[i]), bottom);
    rpt_put(o, "</g><g class=\"axes\" stroke=\"#333333\" stroke-width=\"1\">");
    svg_line(o, x_axis_at, p->top, x_axis_at, bottom);
    svg_line(o, p->left, bottom, p->left + p->w, bottom);
    for (int i = 0; with_y && i < ay->n_ticks; i++)
        svg_line(o, p->left - 4, plot_y(p, ay->ticks[i]), p->left, plot_y(p, ay->ticks[i]));
    for (int i = 0; i < ax->n_ticks; i++)
        svg_line(o, plot_x(p, ax->ticks[i]), bottom, plot_x(p, ax->ticks[i]), bottom + 4);
    rpt_put(o, "</g><g class=\"tick-labels\" font-size=\"10\" fill=\"#333333\">");
    char lab[64];
    for (int i = 0; with_y && i < ay->n_ticks; i++) {
        fmt_tick(ay, ay->ticks[i], lab, sizeof lab);
        rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>", p->left - 7,
                 plot_y(p, ay->ticks[i]) + 3.5, lab);
    }
    for (int i = 0; i < ax->n_ticks; i++) {
        fmt_tick(ax, ax->ticks[i], lab, sizeof lab);
        rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>",
                 plot_x(p, ax->ticks[i]), bottom + 16, lab);
    }
    rpt_put(o, "</g>");
}

static int line_point_ok(const struct report_chart *c, double x, double y)
{
    return isfinite(x) && isfinite(y) && !(c->log_x && x <= 0);
}

/* Data range of a line chart over its series and marks; returns the number of drawable series
 * points and counts in *n_skipped those a log x axis cannot show. */
static size_t line_data_range(const struct report_chart *c, double *x_lo, double *x_hi,
                              double *y_lo, double *y_hi, size_t *n_skipped)
{
    size_t n_points = 0;
    *x_lo = *y_lo = INFINITY;
    *x_hi = *y_hi = -INFINITY;
    *n_skipped = 0;
    for (size_t k = 0; k <= c->n_series; k++) {
        size_t n = k < c->n_series ? c->series[k].n : c->n_marks;
        for (size_t i = 0; i < n; i++) {
            const struct series *s = k < c->n_series ? &c->series[k] : NULL;
            double x = s ? (s->x ? s->x[i] : (double)(i + 1)) : c->marks[i].x;
            double y = s ? s->y[i] : c->marks[i].y;
            if (!line_point_ok(c, x, y)) {
                *n_skipped += s && isfinite(x) && isfinite(y);
                continue;
            }
            *x_lo = fmin(*x_lo, x);
            *x_hi = fmax(*x_hi, x);
            *y_lo = fmin(*y_lo, y);
            *y_hi = fmax(*y_hi, y);
            n_points += s != NULL;
        }
    }
    return n_points;
}

static void svg_line_series(struct rpt_out *o, const struct report_chart *c, const struct plot *p)
{
    for (size_t k = 0; k < c->n_series; k++) {
        const struct series *s = &c->series[k];
        const char *color = chart_palette[k % CHART_PALETTE_N];
        rpt_putf(o, "<g class=\"series\" stroke=\"%s\" fill=\"%s\">", color, color);
        int open = 0;
        for (size_t i = 0; i < s->n; i++) {
            double x = s->x ? s->x[i] : (double)(i + 1), y = s->y[i];
            if (!line_point_ok(c, x, y)) {
                if (open)
                    rpt_put(o, "\"/>");
                open = 0;
                continue;
            }
            rpt_put(o, open ? " " : "<polyline fill=\"none\" stroke-width=\"1.8\" points=\"");
            open = 1;
            rpt_putf(o, "%.1f,%.1f", plot_x(p, x), plot_y(p, y));
        }
        if (open)
            rpt_put(o, "\"/>");
        for (size_t i = 0; i < s->n; i++) {
            double x = s->x ? s->x[i] : (double)(i + 1), y = s->y[i];
            if (!line_point_ok(c, x, y))
                continue;
            char xs[48], ys[48];
            rpt_fmt_sig(x, xs, sizeof xs);
            rpt_fmt_sig(y, ys, sizeof ys);
            rpt_putf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\"><title>", plot_x(p, x),
                     plot_y(p, y));
            rpt_put_html(o, s->name);
            rpt_putf(o, "%s%s, %s", s->name[0] ? ": " : "", xs, ys);
            if (c->y_unit) {
                rpt_put(o, " ");
                rpt_put_html(o, c->y_unit);
            }
            rpt_put(o, "</title></circle>");
        }
        rpt_put(o, "</g>");
    }
}

/* Marks: a black-edged diamond, a dashed drop line to the x axis, and the label beside it
 * (to the left when the point is in the right third of the plot). */
static void svg_marks(struct rpt_out *o, const struct report_chart *c, const struct plot *p)
{
    if (!c->n_marks)
        return;
    rpt_put(o, "<g class=\"marks\" font-size=\"11\" font-weight=\"bold\" fill=\"#000000\">");
    for (size_t i = 0; i < c->n_marks; i++) {
        const struct mark *m = &c->marks[i];
        if (!line_point_ok(c, m->x, m->y))
            continue;
        double px = plot_x(p, m->x), py = plot_y(p, m->y);
        rpt_putf(o,
                 "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000000\" "
                 "stroke-width=\"1\" stroke-dasharray=\"3,3\"/>",
                 px, py + 6, px, p->top + p->h);
        rpt_putf(o,
                 "<path d=\"M%.1f,%.1f L%.1f,%.1f L%.1f,%.1f L%.1f,%.1f Z\" fill=\"#ffd400\" "
                 "stroke=\"#000000\" stroke-width=\"1.5\"><title>",
                 px, py - 6, px + 6, py, px, py + 6, px - 6, py);
        char xs[48], ys[48];
        rpt_fmt_sig(m->x, xs, sizeof xs);
        rpt_fmt_sig(m->y, ys, sizeof ys);
        rpt_put_html(o, m->label);
        rpt_putf(o, ": %s, %s", xs, ys);
        if (c->y_unit) {
            rpt_put(o, " ");
            rpt_put_html(o, c->y_unit);
        }
        int left = px > p->left + p->w * 2 / 3;
        rpt_putf(o, "</title></path><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">",
                 left ? px - 9 : px + 9, py - 7, left ? "end" : "start");
        rpt_put_html(o, m->label);
        rpt_put(o, "</text>");
    }
    rpt_put(o, "</g>");
}

static void svg_line_titles(struct rpt_out *o, const struct report_chart *c, const struct plot *p)
{
    char title[320];
    rpt_axis_title(c->x_label, c->x_unit, title, sizeof title);
    rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">",
             p->left + p->w / 2, p->top + p->h + 38);
    rpt_put_html(o, title);
    rpt_put(o, c->log_x ? " [log scale]</text>" : "</text>");
    rpt_axis_title(c->y_label, c->y_unit, title, sizeof title);
    double yc = p->top + p->h / 2;
    rpt_putf(o,
             "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" "
             "transform=\"rotate(-90 %.1f %.1f)\">",
             16.0, yc, 16.0, yc);
    rpt_put_html(o, title);
    rpt_put(o, "</text>");
}

static void svg_line_chart(struct rpt_out *o, const struct report_chart *c)
{
    double x_lo, x_hi, y_lo, y_hi;
    size_t n_skipped;
    size_t n_points = line_data_range(c, &x_lo, &x_hi, &y_lo, &y_hi, &n_skipped);
    int legend_rows = svg_legend(NULL, c, 0);
    struct plot p = {.left = 72, .top = 30 + legend_rows * 18 + 8, .h = 240};
    p.w = SVG_W - p.left - 24;
    double h = p.top + p.h + 52 + (n_skipped ? 14 : 0);
    if (c->log_x) {
        axis_log(&p.ax, x_lo, x_hi);
    } else {
        range_pad(&x_lo, &x_hi);
        axis_linear(&p.ax, x_lo, x_hi);
    }
    if (isfinite(y_lo))
        range_zero(&y_lo, &y_hi, c->y_from_zero);
    range_pad(&y_lo, &y_hi);
    axis_linear(&p.ay, y_lo, y_hi);

    svg_open(o, c, h);
    svg_legend(o, c, 30 + 10);
    svg_axes(o, &p, 1, p.left);
    svg_line_titles(o, c, &p);
    svg_line_series(o, c, &p);
    svg_marks(o, c, &p);
    if (n_points == 0)
        rpt_putf(o,
                 "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
                 "fill=\"#888888\">no data</text>",
                 p.left + p.w / 2, p.top + p.h / 2);
    if (n_skipped)
        rpt_putf(o,
                 "<text x=\"12\" y=\"%.1f\" font-size=\"10\" fill=\"#888888\">%zu point(s) with x "
                 "&lt;= 0 not drawn on the log axis</text>",
                 h - 6, n_skipped);
    rpt_put(o, "</svg>");
}

static void svg_bar_chart(struct rpt_out *o, const struct report_chart *c)
{
    size_t nc = rpt_bar_n_cats(c), ns = c->n_series ? c->n_series : 1;
    char tmp[64];
    double label_w = 60;
    for (size_t i = 0; i < nc; i++) {
        char *l = rpt_u8_trunc(rpt_bar_cat_label(c, i, tmp, sizeof tmp), 30);
        double w = (double)rpt_u8_width(l) * 6.5 + 16;
        if (w > label_w)
            label_w = w;
        free(l);
    }
    if (label_w > 220)
        label_w = 220;
    double vmin = 0, vmax = 0;
    int any = 0;
    for (size_t k = 0; k < c->n_series; k++)
        for (size_t i = 0; i < nc; i++) {
            double a, b;
            if (!rpt_bar_span(&c->series[k], i, &a, &b))
                continue;
            vmin = fmin(vmin, fmin(a, b));
            vmax = fmax(vmax, fmax(a, b));
            any = 1;
        }
    if (!any)
        vmax = 1;
    range_pad(&vmin, &vmax);
    int legend_rows = svg_legend(NULL, c, 0);
    double bar_h = 14, gap = 8, group_h = (double)ns * bar_h + gap;
    double top = 30 + legend_rows * 18 + 16, left = label_w, right = 80, bottom = 46;
    double plot_h = (double)(nc ? nc : 1) * group_h + gap;
    double plot_w = SVG_W - left - right;
    double h = top + plot_h + bottom;
    struct plot p = {.left = left, .top = top, .w = plot_w, .h = plot_h};
    axis_linear(&p.ax, vmin, vmax);
    const struct axis av = p.ax;

    svg_open(o, c, h);
    svg_legend(o, c, 30 + 10);
    if (c->x_label[0]) {
        char title[320];
        rpt_axis_title(c->x_label, c->x_unit, title, sizeof title);
        rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">", left - 6,
                 top - 4);
        rpt_put_html(o, title);
        rpt_put(o, "</text>");
    }
    double x0 = plot_x(&p, 0);
    svg_axes(o, &p, 0, x0);
    char title[320];
    rpt_axis_title(c->y_label, c->y_unit, title, sizeof title);
    rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">",
             left + plot_w / 2, top + plot_h + 36);
    rpt_put_html(o, title);
    rpt_put(o, "</text>");

    rpt_put(o, "<g class=\"categories\" font-size=\"11\" fill=\"#222222\">");
    for (size_t i = 0; i < nc; i++) {
        double yc = top + gap + (double)i * group_h + ((double)ns * bar_h) / 2;
        char *l = rpt_u8_trunc(rpt_bar_cat_label(c, i, tmp, sizeof tmp), 30);
        rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", left - 6, yc + 4);
        rpt_put_html(o, l);
        rpt_put(o, "</text>");
        free(l);
    }
    rpt_put(o, "</g>");

    for (size_t k = 0; k < c->n_series; k++) {
        const struct series *s = &c->series[k];
        const char *color = chart_palette[k % CHART_PALETTE_N];
        rpt_putf(o, "<g class=\"series\" fill=\"%s\">", color);
        for (size_t i = 0; i < nc; i++) {
            double y = top + gap + (double)i * group_h + (double)k * bar_h;
            double a, b;
            char *cat = xstrdup(rpt_bar_cat_label(c, i, tmp, sizeof tmp));
            if (!rpt_bar_span(s, i, &a, &b)) {
                if (i < s->n)
                    rpt_putf(o,
                             "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#888888\">n/a"
                             "</text>",
                             x0 + 4, y + bar_h - 3);
                free(cat);
                continue;
            }
            double pa = left + axis_frac(&av, fmin(a, b)) * plot_w;
            double pb = left + axis_frac(&av, fmax(a, b)) * plot_w;
            double w = pb - pa;
            if (w < 1 && b != a)
                w = 1;
            char va[48], vb[48], vd[48];
            rpt_fmt_sig(a, va, sizeof va);
            rpt_fmt_sig(b, vb, sizeof vb);
            rpt_fmt_sig(b - a, vd, sizeof vd);
            rpt_putf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>", pa,
                     y + 1, w, bar_h - 2);
            rpt_put_html(o, cat);
            if (s->name[0]) {
                rpt_put(o, " / ");
                rpt_put_html(o, s->name);
            }
            if (s->lo)
                rpt_putf(o, ": %s to %s (%s)", va, vb, vd);
            else
                rpt_putf(o, ": %s", vb);
            if (c->y_unit) {
                rpt_put(o, " ");
                rpt_put_html(o, c->y_unit);
            }
            rpt_put(o, "</title></rect>");
            rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#333333\">%s", pb + 4,
                     y + bar_h - 3, s->lo ? vd : vb);
            if (c->y_unit) {
                rpt_put(o, " ");
                rpt_put_html(o, c->y_unit);
            }
            rpt_put(o, "</text>");
            free(cat);
        }
        rpt_put(o, "</g>");
    }
    if (!any)
        rpt_putf(o,
                 "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
                 "fill=\"#888888\">no data</text>",
                 left + plot_w / 2, top + plot_h / 2 + 4);
    rpt_put(o, "</svg>");
}

void rpt_svg_chart(struct rpt_out *o, const struct report_chart *c)
{
    if (c->kind == REPORT_CHART_LINE)
        svg_line_chart(o, c);
    else
        svg_bar_chart(o, c);
}
