/* report_out: the capped output sink the renderers write through, the per-format escaping (HTML,
 * Markdown, JSON strings), number formatting and the bar-chart model helpers shared by the
 * Markdown and SVG renderers. It lays out nothing itself. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_impl.h"
#include "util/log.h"

void rpt_put_n(struct rpt_out *o, const char *s, size_t n)
{
    if (!o->err && buf_append(o->b, s, n) != BUF_OK)
        o->err = 1;
}

void rpt_put(struct rpt_out *o, const char *s)
{
    rpt_put_n(o, s, strlen(s));
}

void rpt_putf(struct rpt_out *o, const char *fmt, ...)
{
    if (o->err)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *s = rpt_vformat(fmt, ap);
    va_end(ap);
    rpt_put(o, s);
    free(s);
}

/* Number of code points (invalid bytes count one each). */
size_t rpt_u8_width(const char *s)
{
    size_t n = strlen(s), i = 0, w = 0;
    while (i < n) {
        size_t l = utf8_valid_len((const unsigned char *)s + i, n - i);
        i += l ? l : 1;
        w++;
    }
    return w;
}

/* Copies at most max_cp code points of s (adding "…" when cut) into a new string. */
char *rpt_u8_trunc(const char *s, size_t max_cp)
{
    size_t n = strlen(s), i = 0, w = 0;
    while (i < n && w < max_cp) {
        size_t l = utf8_valid_len((const unsigned char *)s + i, n - i);
        i += l ? l : 1;
        w++;
    }
    if (i >= n)
        return xstrdup(s);
    /* cut one more to make room for the ellipsis */
    size_t j = 0, keep = 0;
    w = 0;
    while (j < n && w + 1 < max_cp) {
        size_t l = utf8_valid_len((const unsigned char *)s + j, n - j);
        j += l ? l : 1;
        w++;
        keep = j;
    }
    char *t = xmalloc(keep + 4);
    memcpy(t, s, keep);
    memcpy(t + keep, "\xE2\x80\xA6", 4);
    return t;
}

/* Writes the UTF-8 character at s (n bytes left), or U+FFFD for an invalid byte; returns the
 * bytes consumed (at least 1). */
static size_t put_u8_char(struct rpt_out *o, const char *s, size_t n)
{
    size_t l = utf8_valid_len((const unsigned char *)s, n);
    if (!l) {
        rpt_put(o, "\xEF\xBF\xBD");
        return 1;
    }
    rpt_put_n(o, s, l);
    return l;
}

/* HTML/XML text and attribute escaping; control characters become spaces, invalid UTF-8 U+FFFD. */
void rpt_put_html(struct rpt_out *o, const char *s)
{
    if (!s)
        return;
    size_t n = strlen(s), i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '&':
            rpt_put(o, "&amp;");
            i++;
            continue;
        case '<':
            rpt_put(o, "&lt;");
            i++;
            continue;
        case '>':
            rpt_put(o, "&gt;");
            i++;
            continue;
        case '"':
            rpt_put(o, "&quot;");
            i++;
            continue;
        case '\'':
            rpt_put(o, "&#39;");
            i++;
            continue;
        default:
            break;
        }
        if (c < 0x20 && c != '\n' && c != '\t') {
            rpt_put(o, c == '\r' ? "" : " ");
            i++;
            continue;
        }
        i += put_u8_char(o, s + i, n - i);
    }
}

/* Markdown inline text: punctuation with a Markdown meaning is backslash-escaped, line breaks
 * become spaces (a paragraph or cell stays one line). At the start of a block (block != 0) the
 * markers of headings, lists and setext underlines are neutralised too. */
static void md_text(struct rpt_out *o, const char *s, int block)
{
    if (!s)
        return;
    size_t n = strlen(s), i = 0;
    if (block && n && strchr("#-+=", s[0])) {
        rpt_put(o, "\\");
    } else if (block && n && s[0] >= '0' && s[0] <= '9') {
        size_t d = 0; /* "1. item" / "1) item": digits, '.' or ')', then space or end */
        while (d < n && s[d] >= '0' && s[d] <= '9')
            d++;
        if (d < n && (s[d] == '.' || s[d] == ')') &&
            (d + 1 == n || s[d + 1] == ' ' || s[d + 1] == '\t' || s[d + 1] == '\n')) {
            rpt_put_n(o, s, d);
            rpt_put(o, "\\");
            i = d;
        }
    }
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n' || c == '\t') {
            if (!(c == '\n' && i > 0 && s[i - 1] == '\r'))
                rpt_put(o, " ");
            i++;
            continue;
        }
        if (c < 0x20) {
            rpt_put(o, " ");
            i++;
            continue;
        }
        if (strchr("\\`*_[]<>|~&", c)) {
            char e[3] = {'\\', (char)c, 0};
            rpt_put(o, e);
            i++;
            continue;
        }
        i += put_u8_char(o, s + i, n - i);
    }
}

void rpt_put_md_inline(struct rpt_out *o, const char *s)
{
    md_text(o, s, 0);
}

void rpt_put_md_block(struct rpt_out *o, const char *s)
{
    md_text(o, s, 1);
}

void rpt_put_json_str(struct rpt_out *o, const char *s)
{
    if (!o->err && buf_json_str(o->b, s ? s : "") != BUF_OK)
        o->err = 1;
}

void rpt_put_json_num(struct rpt_out *o, double v)
{
    if (!o->err && buf_json_double(o->b, v) != BUF_OK)
        o->err = 1;
}

/* Number with a fixed count of decimals; never "-0". */
void rpt_fmt_fixed(double v, int prec, char *out, size_t len)
{
    snprintf(out, len, "%.*f", prec, v);
    if (out[0] == '-') {
        int all_zero = 1;
        for (const char *p = out + 1; *p; p++)
            if (*p != '0' && *p != '.')
                all_zero = 0;
        if (all_zero)
            memmove(out, out + 1, strlen(out));
    }
}

/* Value label with about three significant digits. */
void rpt_fmt_sig(double v, char *out, size_t len)
{
    double a = fabs(v);
    int prec = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : a >= 0.01 ? 3 : 4;
    if (a == 0)
        prec = 0;
    if (a >= 1e9) {
        snprintf(out, len, "%.3g", v);
        return;
    }
    rpt_fmt_fixed(v, prec, out, len);
}

/* Cell text as shown in Markdown/HTML: a formatted number, the NA text, or the text. */
const char *rpt_cell_show(const struct report_table *t, size_t row, int col, char *tmp,
                          size_t tmp_len, int *is_na)
{
    const struct cell *c = &t->rows[row][col];
    const struct col *k = &t->cols[col];
    *is_na = 0;
    if (k->kind == REPORT_COL_TEXT)
        return c->text ? c->text : "";
    if (!isfinite(c->num)) {
        *is_na = 1;
        return c->text ? c->text : k->na_text ? k->na_text : REPORT_NA_DEFAULT;
    }
    rpt_fmt_fixed(c->num, k->precision, tmp, tmp_len);
    return tmp;
}

void rpt_col_header(const struct col *k, char *out, size_t len)
{
    if (k->unit)
        snprintf(out, len, "%s (%s)", k->label, k->unit);
    else
        snprintf(out, len, "%s", k->label);
}

void rpt_axis_title(const char *label, const char *unit, char *out, size_t len)
{
    if (unit && label && *label)
        snprintf(out, len, "%s (%s)", label, unit);
    else if (unit)
        snprintf(out, len, "(%s)", unit);
    else
        snprintf(out, len, "%s", label ? label : "");
}

/* Number of categories of a bar chart and the label of category i (into tmp). */
size_t rpt_bar_n_cats(const struct report_chart *c)
{
    if (c->n_cats)
        return c->n_cats;
    size_t n = 0;
    for (size_t k = 0; k < c->n_series; k++)
        if (c->series[k].n > n)
            n = c->series[k].n;
    return n;
}

const char *rpt_bar_cat_label(const struct report_chart *c, size_t i, char *tmp, size_t len)
{
    if (c->n_cats)
        return i < c->n_cats ? c->cats[i] : "";
    for (size_t k = 0; k < c->n_series; k++) {
        const struct series *s = &c->series[k];
        if (s->x && i < s->n && isfinite(s->x[i])) {
            snprintf(tmp, len, "%g", s->x[i]);
            return tmp;
        }
    }
    snprintf(tmp, len, "%zu", i + 1);
    return tmp;
}

/* Bar i of series s: start and end on the value axis; 0 if missing. */
int rpt_bar_span(const struct series *s, size_t i, double *a, double *b)
{
    if (i >= s->n || !isfinite(s->y[i]))
        return 0;
    if (s->lo) {
        if (!isfinite(s->lo[i]))
            return 0;
        *a = s->lo[i];
        *b = s->y[i];
    } else {
        *a = 0;
        *b = s->y[i];
    }
    return 1;
}

int rpt_table_in_doc(const struct report_table *t)
{
    if (t->hide_in_doc)
        return 0;
    if (t->n_cols > REPORT_DOC_MAX_COLS)
        log_warn("report",
                 "table %s: %d columns shown in a document (at most %d read well; "
                 "see report_table_hide_in_doc)",
                 t->key, t->n_cols, REPORT_DOC_MAX_COLS);
    return 1;
}
