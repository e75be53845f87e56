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

static void axis_linear(struct axis *a, double lo, double hi)
{
    memset(a, 0, sizeof *a);
    if (!isfinite(lo) || !isfinite(hi)) {
        lo = 0;
        hi = 1;
    }
    if (!(hi > lo)) {
        if (lo == 0) {
            hi = 1;
        } else {
            double d = fabs(lo) * 0.1;
            lo -= d;
            hi += d;
        }
    }
    double range = nice_num(hi - lo, 0);
    double step = nice_num(range / 4, 1);
    double glo = floor(lo / step) * step, ghi = ceil(hi / step) * step;
    if (ghi <= glo)
        ghi = glo + step;
    a->lo = glo;
    a->hi = ghi;
    a->step = step;
    for (int i = 0; i < AXIS_MAX_TICKS; i++) {
        double v = glo + i * step;
        if (v > ghi + step * 1e-6)
            break;
        if (fabs(v) < step * 1e-9)
            v = 0;
        a->ticks[a->n_ticks++] = v;
    }
}

static void axis_log(struct axis *a, double lo, double hi)
{
    memset(a, 0, sizeof *a);
    a->log = 1;
    if (!(lo > 0) || !isfinite(lo) || !isfinite(hi) || hi < lo) {
        lo = 1;
        hi = 10;
    }
    int e0 = (int)floor(log10(lo)), e1 = (int)ceil(log10(hi));
    if (e1 <= e0)
        e1 = e0 + 1;
    int de = (e1 - e0 + 9) / 10; /* at most ~10 decade ticks */
    if (de < 1)
        de = 1;
    a->lo = pow(10, e0);
    a->hi = pow(10, e1);
    for (int e = e0; e <= e1 && a->n_ticks < AXIS_MAX_TICKS; e += de) {
        double p = pow(10, e);
        a->ticks[a->n_ticks++] = p;
        if (e1 - e0 <= 2 && e < e1 && a->n_ticks + 2 <= AXIS_MAX_TICKS) {
            a->ticks[a->n_ticks++] = 2 * p;
            a->ticks[a->n_ticks++] = 5 * p;
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
    rpt_putf(o, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>", SVG_W, h);
    rpt_put(o, "<text x=\"12\" y=\"18\" font-size=\"13\" font-weight=\"bold\">");
    rpt_put_html(o, c->title);
    rpt_put(o, "</text>");
}

static void svg_line_chart(struct rpt_out *o, const struct report_chart *c)
{
    /* data ranges */
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    size_t n_skipped = 0, n_points = 0;
    for (size_t k = 0; k < c->n_series; k++) {
        const struct series *s = &c->series[k];
        for (size_t i = 0; i < s->n; i++) {
            double x = s->x ? s->x[i] : (double)(i + 1), y = s->y[i];
            if (!isfinite(x) || !isfinite(y))
                continue;
            if (c->log_x && x <= 0) {
                n_skipped++;
                continue;
            }
            xmin = fmin(xmin, x);
            xmax = fmax(xmax, x);
            ymin = fmin(ymin, y);
            ymax = fmax(ymax, y);
            n_points++;
        }
    }
    int legend_rows = svg_legend(NULL, c, 0);
    double top = 30 + legend_rows * 18 + 8, plot_h = 240, bottom = 52, left = 72, right = 24;
    double h = top + plot_h + bottom + (n_skipped ? 14 : 0);
    double plot_w = SVG_W - left - right;
    struct axis ax, ay;
    if (n_points == 0) {
        xmin = c->log_x ? 1 : 0;
        xmax = c->log_x ? 10 : 1;
        ymin = 0;
        ymax = 1;
    }
    if (c->log_x)
        axis_log(&ax, xmin, xmax);
    else
        axis_linear(&ax, xmin, xmax);
    if (ymin > 0)
        ymin = 0; /* honest axis: positive data starts at zero */
    if (ymax < 0)
        ymax = 0;
    axis_linear(&ay, ymin, ymax);

    svg_open(o, c, h);
    svg_legend(o, c, 30 + 10);
    /* grid and ticks */
    rpt_put(o, "<g class=\"grid\" stroke=\"#e5e5e5\" stroke-width=\"1\">");
    for (int i = 0; i < ay.n_ticks; i++) {
        double y = top + plot_h - axis_frac(&ay, ay.ticks[i]) * plot_h;
        rpt_putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, y, left + plot_w,
             y);
    }
    for (int i = 0; i < ax.n_ticks; i++) {
        double x = left + axis_frac(&ax, ax.ticks[i]) * plot_w;
        rpt_putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x, top, x, top + plot_h);
    }
    rpt_put(o, "</g>");
    rpt_put(o, "<g class=\"axes\" stroke=\"#333333\" stroke-width=\"1\">");
    rpt_putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, top, left,
         top + plot_h);
    rpt_putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, top + plot_h,
         left + plot_w, top + plot_h);
    for (int i = 0; i < ay.n_ticks; i++) {
        double y = top + plot_h - axis_frac(&ay, ay.ticks[i]) * plot_h;
        rpt_putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left - 4, y, left, y);
    }
    for (int i = 0; i < ax.n_ticks; i++) {
        double x = left + axis_frac(&ax, ax.ticks[i]) * plot_w;
        rpt_putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x, top + plot_h, x,
             top + plot_h + 4);
    }
    rpt_put(o, "</g>");
    rpt_put(o, "<g class=\"tick-labels\" font-size=\"10\" fill=\"#333333\">");
    char lab[64];
    for (int i = 0; i < ay.n_ticks; i++) {
        double y = top + plot_h - axis_frac(&ay, ay.ticks[i]) * plot_h;
        fmt_tick(&ay, ay.ticks[i], lab, sizeof lab);
        rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>", left - 7, y + 3.5,
             lab);
    }
    for (int i = 0; i < ax.n_ticks; i++) {
        double x = left + axis_frac(&ax, ax.ticks[i]) * plot_w;
        fmt_tick(&ax, ax.ticks[i], lab, sizeof lab);
        rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>", x,
             top + plot_h + 16, lab);
    }
    rpt_put(o, "</g>");
    char title[320];
    rpt_axis_title(c->x_label, c->x_unit, title, sizeof title);
    rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">",
         left + plot_w / 2, top + plot_h + 38);
    rpt_put_html(o, title);
    rpt_put(o, c->log_x ? " [log scale]</text>" : "</text>");
    rpt_axis_title(c->y_label, c->y_unit, title, sizeof title);
    rpt_putf(o,
         "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" "
         "transform=\"rotate(-90 %.1f %.1f)\">",
         16.0, top + plot_h / 2, 16.0, top + plot_h / 2);
    rpt_put_html(o, title);
    rpt_put(o, "</text>");

    /* series */
    for (size_t k = 0; k < c->n_series; k++) {
        const struct series *s = &c->series[k];
        const char *color = chart_palette[k % CHART_PALETTE_N];
        rpt_putf(o, "<g class=\"series\" stroke=\"%s\" fill=\"%s\">", color, color);
        int open = 0;
        for (size_t i = 0; i < s->n; i++) {
            double x = s->x ? s->x[i] : (double)(i + 1), y = s->y[i];
            int ok = isfinite(x) && isfinite(y) && !(c->log_x && x <= 0);
            if (!ok) {
                if (open)
                    rpt_put(o, "\"/>");
                open = 0;
                continue;
            }
            double px = left + axis_frac(&ax, x) * plot_w;
            double py = top + plot_h - axis_frac(&ay, y) * plot_h;
            if (!open) {
                rpt_put(o, "<polyline fill=\"none\" stroke-width=\"1.8\" points=\"");
                open = 1;
            } else {
                rpt_put(o, " ");
            }
            rpt_putf(o, "%.1f,%.1f", px, py);
        }
        if (open)
            rpt_put(o, "\"/>");
        for (size_t i = 0; i < s->n; i++) {
            double x = s->x ? s->x[i] : (double)(i + 1), y = s->y[i];
            if (!isfinite(x) || !isfinite(y) || (c->log_x && x <= 0))
                continue;
            double px = left + axis_frac(&ax, x) * plot_w;
            double py = top + plot_h - axis_frac(&ay, y) * plot_h;
            char xs[48], ys[48];
            rpt_fmt_sig(x, xs, sizeof xs);
            rpt_fmt_sig(y, ys, sizeof ys);
            rpt_putf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\"><title>", px, py);
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
    if (n_points == 0)
        rpt_putf(o,
             "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
             "fill=\"#888888\">no data</text>",
             left + plot_w / 2, top + plot_h / 2);
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
    struct axis av;
    axis_linear(&av, vmin, any ? vmax : 1);
    int legend_rows = svg_legend(NULL, c, 0);
    double bar_h = 14, gap = 8, group_h = (double)ns * bar_h + gap;
    double top = 30 + legend_rows * 18 + 16, left = label_w, right = 80, bottom = 46;
    double plot_h = (double)(nc ? nc : 1) * group_h + gap;
    double plot_w = SVG_W - left - right;
    double h = top + plot_h + bottom;

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
    rpt_put(o, "<g class=\"grid\" stroke=\"#e5e5e5\" stroke-width=\"1\">");
    for (int i = 0; i < av.n_ticks; i++) {
        double x = left + axis_frac(&av, av.ticks[i]) * plot_w;
        rpt_putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x, top, x, top + plot_h);
    }
    rpt_put(o, "</g>");
    rpt_put(o, "<g class=\"axes\" stroke=\"#333333\" stroke-width=\"1\">");
    double x0 = left + axis_frac(&av, 0) * plot_w;
    rpt_putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x0, top, x0, top + plot_h);
    rpt_putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, top + plot_h,
         left + plot_w, top + plot_h);
    for (int i = 0; i < av.n_ticks; i++) {
        double x = left + axis_frac(&av, av.ticks[i]) * plot_w;
        rpt_putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x, top + plot_h, x,
             top + plot_h + 4);
    }
    rpt_put(o, "</g>");
    rpt_put(o, "<g class=\"tick-labels\" font-size=\"10\" fill=\"#333333\">");
    for (int i = 0; i < av.n_ticks; i++) {
        double x = left + axis_frac(&av, av.ticks[i]) * plot_w;
        char lab[64];
        fmt_tick(&av, av.ticks[i], lab, sizeof lab);
        rpt_putf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>", x,
             top + plot_h + 16, lab);
    }
    rpt_put(o, "</g>");
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
            rpt_putf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>", pa, y + 1,
                 w, bar_h - 2);
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
