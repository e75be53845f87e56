/* report: builds a report struct (metadata, sections, paragraphs, typed tables, charts) and renders
 * it as Markdown, self-contained HTML with inline SVG charts, JSON and CSV. Pure formatting: it
 * computes nothing about the measurements (only axis ranges and tick positions for drawing), reads
 * no files and writes only through report_write_file/report_write_csv. */
#include "report/report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define REPORT_NA_DEFAULT "n/a"

/* ---------------------------------------------------------------- data */

enum item_kind { ITEM_PARAGRAPH, ITEM_BULLET, ITEM_PRE, ITEM_TABLE, ITEM_CHART };

struct item {
    enum item_kind kind;
    char *text;
    struct report_table *table;
    struct report_chart *chart;
};

struct report_section {
    char *key;
    char *title;
    struct item *items;
    size_t n_items, cap_items;
};

struct col {
    char *key;
    char *label;
    char *unit;
    char *na_text;
    enum report_col_kind kind;
    int precision;
};

struct cell {
    double num; /* number columns; NAN when missing */
    char *text; /* text columns: the text; number columns: the NA reason (or NULL) */
};

struct report_table {
    char *key;
    char *caption;
    struct col *cols;
    int n_cols, cap_cols;
    struct cell **rows; /* [n_rows][n_cols] */
    size_t n_rows, cap_rows;
    int next_col; /* sequential fill position in the last row */
};

struct series {
    char *name;
    double *x;  /* NULL: none given */
    double *y;  /* values, or range ends (hi) */
    double *lo; /* range starts; NULL unless a range series */
    size_t n;
};

struct report_chart {
    enum report_chart_kind kind;
    char *key, *title, *x_label, *x_unit, *y_label, *y_unit;
    int log_x;
    struct series *series;
    size_t n_series, cap_series;
    char **cats;
    size_t n_cats;
};

struct meta {
    char *key;
    char *value;
};

struct report {
    char *title;
    char *html_name;
    struct meta *meta;
    size_t n_meta, cap_meta;
    struct report_section **sections;
    size_t n_sections, cap_sections;
};

static void grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return;
    size_t n = *cap ? *cap * 2 : 8;
    while (n < need)
        n *= 2;
    size_t bytes;
    if (size_mul_ok(n, elem, &bytes) != 0) {
        fprintf(stderr, "fatal: report: array too large (%zu elements)\n", n);
        abort();
    }
    *p = xrealloc(*p, bytes);
    *cap = n;
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return xstrdup("");
    char *s = xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

const char *report_status_str(enum report_status st)
{
    switch (st) {
    case REPORT_OK:
        return "ok";
    case REPORT_ERR_CAP:
        return "output cap reached";
    case REPORT_ERR_IO:
        return "i/o error";
    case REPORT_ERR_NOT_FOUND:
        return "table not found";
    }
    return "unknown";
}

const char *report_format_str(enum report_format f)
{
    switch (f) {
    case REPORT_FORMAT_MARKDOWN:
        return "markdown";
    case REPORT_FORMAT_HTML:
        return "html";
    case REPORT_FORMAT_JSON:
        return "json";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- builders */

struct report *report_new(const char *title)
{
    struct report *r = xcalloc(1, sizeof *r);
    r->title = xstrdup(title ? title : "");
    return r;
}

static void table_free(struct report_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_rows; i++) {
        for (int j = 0; j < t->n_cols; j++)
            free(t->rows[i][j].text);
        free(t->rows[i]);
    }
    free(t->rows);
    for (int j = 0; j < t->n_cols; j++) {
        free(t->cols[j].key);
        free(t->cols[j].label);
        free(t->cols[j].unit);
        free(t->cols[j].na_text);
    }
    free(t->cols);
    free(t->key);
    free(t->caption);
    free(t);
}

static void chart_free(struct report_chart *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_series; i++) {
        free(c->series[i].name);
        free(c->series[i].x);
        free(c->series[i].y);
        free(c->series[i].lo);
    }
    free(c->series);
    for (size_t i = 0; i < c->n_cats; i++)
        free(c->cats[i]);
    free(c->cats);
    free(c->key);
    free(c->title);
    free(c->x_label);
    free(c->x_unit);
    free(c->y_label);
    free(c->y_unit);
    free(c);
}

void report_free(struct report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_sections; i++) {
        struct report_section *s = r->sections[i];
        for (size_t j = 0; j < s->n_items; j++) {
            free(s->items[j].text);
            table_free(s->items[j].table);
            chart_free(s->items[j].chart);
        }
        free(s->items);
        free(s->key);
        free(s->title);
        free(s);
    }
    free(r->sections);
    for (size_t i = 0; i < r->n_meta; i++) {
        free(r->meta[i].key);
        free(r->meta[i].value);
    }
    free(r->meta);
    free(r->title);
    free(r->html_name);
    free(r);
}

void report_meta(struct report *r, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *v = vformat(fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < r->n_meta; i++) {
        if (!strcmp(r->meta[i].key, key)) {
            free(r->meta[i].value);
            r->meta[i].value = v;
            return;
        }
    }
    grow((void **)&r->meta, &r->cap_meta, r->n_meta + 1, sizeof *r->meta);
    r->meta[r->n_meta].key = xstrdup(key);
    r->meta[r->n_meta].value = v;
    r->n_meta++;
}

void report_set_html_name(struct report *r, const char *file_name)
{
    free(r->html_name);
    r->html_name = dup_or_null(file_name);
}

struct report_section *report_section_add(struct report *r, const char *key, const char *title)
{
    struct report_section *s = xcalloc(1, sizeof *s);
    s->key = xstrdup(key ? key : "");
    s->title = xstrdup(title ? title : "");
    grow((void **)&r->sections, &r->cap_sections, r->n_sections + 1, sizeof *r->sections);
    r->sections[r->n_sections++] = s;
    return s;
}

static struct item *section_item_add(struct report_section *s, enum item_kind kind)
{
    grow((void **)&s->items, &s->cap_items, s->n_items + 1, sizeof *s->items);
    struct item *it = &s->items[s->n_items++];
    memset(it, 0, sizeof *it);
    it->kind = kind;
    return it;
}

void report_paragraph(struct report_section *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    section_item_add(s, ITEM_PARAGRAPH)->text = vformat(fmt, ap);
    va_end(ap);
}

void report_bullet(struct report_section *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    section_item_add(s, ITEM_BULLET)->text = vformat(fmt, ap);
    va_end(ap);
}

void report_pre(struct report_section *s, const char *text)
{
    section_item_add(s, ITEM_PRE)->text = xstrdup(text ? text : "");
}

struct report_table *report_table_add(struct report_section *s, const char *key,
                                      const char *caption)
{
    struct report_table *t = xcalloc(1, sizeof *t);
    t->key = xstrdup(key ? key : "");
    t->caption = dup_or_null(caption);
    section_item_add(s, ITEM_TABLE)->table = t;
    return t;
}

int report_table_col(struct report_table *t, const char *key, const char *label, const char *unit,
                     enum report_col_kind kind, int precision)
{
    if (t->n_rows > 0) {
        log_error("report", "table %s: column %s added after rows (ignored)", t->key, key);
        return -1;
    }
    size_t cap = (size_t)t->cap_cols;
    grow((void **)&t->cols, &cap, (size_t)t->n_cols + 1, sizeof *t->cols);
    t->cap_cols = (int)cap;
    struct col *c = &t->cols[t->n_cols];
    c->key = xstrdup(key ? key : "");
    c->label = xstrdup(label ? label : (key ? key : ""));
    c->unit = unit && *unit ? xstrdup(unit) : NULL;
    c->na_text = NULL;
    c->kind = kind;
    c->precision = precision < 0 ? 0 : precision > 12 ? 12 : precision;
    return t->n_cols++;
}

void report_table_col_na_text(struct report_table *t, int col, const char *text)
{
    if (col < 0 || col >= t->n_cols)
        return;
    free(t->cols[col].na_text);
    t->cols[col].na_text = dup_or_null(text);
}

size_t report_table_row_add(struct report_table *t)
{
    grow((void **)&t->rows, &t->cap_rows, t->n_rows + 1, sizeof *t->rows);
    struct cell *row = xcalloc((size_t)(t->n_cols ? t->n_cols : 1), sizeof *row);
    for (int j = 0; j < t->n_cols; j++)
        row[j].num = NAN;
    t->rows[t->n_rows] = row;
    t->next_col = 0;
    return t->n_rows++;
}

size_t report_table_n_rows(const struct report_table *t)
{
    return t->n_rows;
}

int report_table_n_cols(const struct report_table *t)
{
    return t->n_cols;
}

static struct cell *cell_at(struct report_table *t, size_t row, int col, enum report_col_kind kind)
{
    if (row >= t->n_rows || col < 0 || col >= t->n_cols) {
        log_error("report", "table %s: cell (%zu, %d) out of range", t->key, row, col);
        return NULL;
    }
    if (t->cols[col].kind != kind) {
        log_error("report", "table %s: column %s: wrong cell kind", t->key, t->cols[col].key);
        return NULL;
    }
    return &t->rows[row][col];
}

void report_cell_num(struct report_table *t, size_t row, int col, double v)
{
    struct cell *c = cell_at(t, row, col, REPORT_COL_NUMBER);
    if (!c)
        return;
    c->num = v;
    free(c->text);
    c->text = NULL;
}

static void cell_text_set(struct report_table *t, size_t row, int col, char *s)
{
    struct cell *c = cell_at(t, row, col, REPORT_COL_TEXT);
    if (!c) {
        free(s);
        return;
    }
    free(c->text);
    c->text = s;
}

void report_cell_text(struct report_table *t, size_t row, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    cell_text_set(t, row, col, s);
}

void report_cell_na(struct report_table *t, size_t row, int col, const char *reason)
{
    if (row >= t->n_rows || col < 0 || col >= t->n_cols) {
        log_error("report", "table %s: cell (%zu, %d) out of range", t->key, row, col);
        return;
    }
    struct cell *c = &t->rows[row][col];
    c->num = NAN;
    free(c->text);
    c->text = t->cols[col].kind == REPORT_COL_NUMBER ? dup_or_null(reason) : NULL;
}

static int next_col(struct report_table *t)
{
    if (t->n_rows == 0) {
        log_error("report", "table %s: row fill before report_table_row_add", t->key);
        return -1;
    }
    if (t->next_col >= t->n_cols) {
        log_error("report", "table %s: too many cells in row %zu", t->key, t->n_rows - 1);
        return -1;
    }
    return t->next_col++;
}

void report_row_num(struct report_table *t, double v)
{
    int col = next_col(t);
    if (col >= 0)
        report_cell_num(t, t->n_rows - 1, col, v);
}

void report_row_text(struct report_table *t, const char *fmt, ...)
{
    int col = next_col(t);
    if (col < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    cell_text_set(t, t->n_rows - 1, col, s);
}

void report_row_na(struct report_table *t, const char *reason)
{
    int col = next_col(t);
    if (col >= 0)
        report_cell_na(t, t->n_rows - 1, col, reason);
}

struct report_chart *report_chart_add(struct report_section *s, enum report_chart_kind kind,
                                      const char *key, const char *title, const char *x_label,
                                      const char *x_unit, const char *y_label, const char *y_unit)
{
    struct report_chart *c = xcalloc(1, sizeof *c);
    c->kind = kind;
    c->key = xstrdup(key ? key : "");
    c->title = xstrdup(title ? title : "");
    c->x_label = xstrdup(x_label ? x_label : "");
    c->x_unit = x_unit && *x_unit ? xstrdup(x_unit) : NULL;
    c->y_label = xstrdup(y_label ? y_label : "");
    c->y_unit = y_unit && *y_unit ? xstrdup(y_unit) : NULL;
    section_item_add(s, ITEM_CHART)->chart = c;
    return c;
}

void report_chart_log_x(struct report_chart *c, int on)
{
    c->log_x = on != 0;
}

static double *dup_doubles(const double *v, size_t n)
{
    if (!v)
        return NULL;
    size_t bytes;
    if (size_mul_ok(n, sizeof *v, &bytes) != 0) {
        fprintf(stderr, "fatal: report: series too long (%zu points)\n", n);
        abort();
    }
    double *p = xmalloc(bytes);
    if (n)
        memcpy(p, v, bytes);
    return p;
}

static struct series *series_add(struct report_chart *c, const char *name, size_t n)
{
    grow((void **)&c->series, &c->cap_series, c->n_series + 1, sizeof *c->series);
    struct series *s = &c->series[c->n_series++];
    memset(s, 0, sizeof *s);
    s->name = xstrdup(name ? name : "");
    s->n = n;
    return s;
}

void report_chart_series(struct report_chart *c, const char *name, const double *x, const double *y,
                         size_t n)
{
    struct series *s = series_add(c, name, y ? n : 0);
    s->x = dup_doubles(x, s->n);
    s->y = dup_doubles(y, s->n);
}

void report_chart_series_range(struct report_chart *c, const char *name, const double *lo,
                               const double *hi, size_t n)
{
    struct series *s = series_add(c, name, lo && hi ? n : 0);
    s->lo = dup_doubles(lo, s->n);
    s->y = dup_doubles(hi, s->n);
}

void report_chart_categories(struct report_chart *c, const char *const *names, size_t n)
{
    for (size_t i = 0; i < c->n_cats; i++)
        free(c->cats[i]);
    free(c->cats);
    c->cats = NULL;
    c->n_cats = 0;
    if (!names || !n)
        return;
    c->cats = xcalloc(n, sizeof *c->cats);
    for (size_t i = 0; i < n; i++)
        c->cats[i] = xstrdup(names[i] ? names[i] : "");
    c->n_cats = n;
}

struct report_table *report_find_table(const struct report *r, const char *key)
{
    for (size_t i = 0; i < r->n_sections; i++) {
        const struct report_section *s = r->sections[i];
        for (size_t j = 0; j < s->n_items; j++)
            if (s->items[j].kind == ITEM_TABLE && !strcmp(s->items[j].table->key, key))
                return s->items[j].table;
    }
    return NULL;
}

/* ---------------------------------------------------------------- output helpers */

struct out {
    struct buf *b;
    int err; /* sticky: cap reached */
};

static void put_n(struct out *o, const char *s, size_t n)
{
    if (!o->err && buf_append(o->b, s, n) != BUF_OK)
        o->err = 1;
}

static void put(struct out *o, const char *s)
{
    put_n(o, s, strlen(s));
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
    if (o->err)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    put(o, s);
    free(s);
}

/* Number of code points (invalid bytes count one each). */
static size_t u8_width(const char *s)
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
static char *u8_trunc(const char *s, size_t max_cp)
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

/* HTML/XML text and attribute escaping; control characters become spaces, invalid UTF-8 U+FFFD. */
static void put_html(struct out *o, const char *s)
{
    if (!s)
        return;
    size_t n = strlen(s), i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '&':
            put(o, "&amp;");
            i++;
            continue;
        case '<':
            put(o, "&lt;");
            i++;
            continue;
        case '>':
            put(o, "&gt;");
            i++;
            continue;
        case '"':
            put(o, "&quot;");
            i++;
            continue;
        case '\'':
            put(o, "&#39;");
            i++;
            continue;
        default:
            break;
        }
        if (c < 0x20 && c != '\n' && c != '\t') {
            put(o, c == '\r' ? "" : " ");
            i++;
            continue;
        }
        size_t l = utf8_valid_len((const unsigned char *)s + i, n - i);
        if (l) {
            put_n(o, s + i, l);
            i += l;
        } else {
            put(o, "\xEF\xBF\xBD");
            i++;
        }
    }
}

/* Markdown inline text: punctuation with a Markdown meaning is backslash-escaped, line breaks
 * become spaces (a paragraph or cell stays one line). At the start of a block (block != 0) the
 * markers of headings, lists and setext underlines are neutralised too. */
static void put_md_text(struct out *o, const char *s, int block)
{
    if (!s)
        return;
    size_t n = strlen(s), i = 0;
    if (block && n && strchr("#-+=", s[0])) {
        put(o, "\\");
    } else if (block && n && s[0] >= '0' && s[0] <= '9') {
        size_t d = 0; /* "1. item" / "1) item": digits, '.' or ')', then space or end */
        while (d < n && s[d] >= '0' && s[d] <= '9')
            d++;
        if (d < n && (s[d] == '.' || s[d] == ')') &&
            (d + 1 == n || s[d + 1] == ' ' || s[d + 1] == '\t' || s[d + 1] == '\n')) {
            put_n(o, s, d);
            put(o, "\\");
            i = d;
        }
    }
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n' || c == '\t') {
            if (!(c == '\n' && i > 0 && s[i - 1] == '\r'))
                put(o, " ");
            i++;
            continue;
        }
        if (c < 0x20) {
            put(o, " ");
            i++;
            continue;
        }
        if (strchr("\\`*_[]<>|~&", c)) {
            char e[3] = {'\\', (char)c, 0};
            put(o, e);
            i++;
            continue;
        }
        size_t l = utf8_valid_len((const unsigned char *)s + i, n - i);
        if (l) {
            put_n(o, s + i, l);
            i += l;
        } else {
            put(o, "\xEF\xBF\xBD");
            i++;
        }
    }
}

static void put_md_inline(struct out *o, const char *s)
{
    put_md_text(o, s, 0);
}

static void put_md_block(struct out *o, const char *s)
{
    put_md_text(o, s, 1);
}

static void put_json_str(struct out *o, const char *s)
{
    if (!o->err && buf_json_str(o->b, s ? s : "") != BUF_OK)
        o->err = 1;
}

static void put_json_num(struct out *o, double v)
{
    if (!o->err && buf_json_double(o->b, v) != BUF_OK)
        o->err = 1;
}

/* Number with a fixed count of decimals; never "-0". */
static void fmt_fixed(double v, int prec, char *out, size_t len)
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
static void fmt_sig(double v, char *out, size_t len)
{
    double a = fabs(v);
    int prec = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : a >= 0.01 ? 3 : 4;
    if (a == 0)
        prec = 0;
    if (a >= 1e9) {
        snprintf(out, len, "%.3g", v);
        return;
    }
    fmt_fixed(v, prec, out, len);
}

/* Cell text as shown in Markdown/HTML: a formatted number, the NA text, or the text. */
static const char *cell_show(const struct report_table *t, size_t row, int col, char *tmp,
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
    fmt_fixed(c->num, k->precision, tmp, tmp_len);
    return tmp;
}

static void col_header(const struct col *k, char *out, size_t len)
{
    if (k->unit)
        snprintf(out, len, "%s (%s)", k->label, k->unit);
    else
        snprintf(out, len, "%s", k->label);
}

static void axis_title(const char *label, const char *unit, char *out, size_t len)
{
    if (unit && label && *label)
        snprintf(out, len, "%s (%s)", label, unit);
    else if (unit)
        snprintf(out, len, "(%s)", unit);
    else
        snprintf(out, len, "%s", label ? label : "");
}

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
        fmt_fixed(x, prec, tmp, sizeof tmp);
        snprintf(out, len, "%s%s", tmp, suf);
        return;
    }
    double step = a->step / div;
    int prec = 0;
    while (prec < 12 && fabs(step * pow(10, prec) - round(step * pow(10, prec))) >
                            1e-6 * fmax(1, step * pow(10, prec)))
        prec++;
    char tmp[48];
    fmt_fixed(v / div, prec, tmp, sizeof tmp);
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
static int svg_legend(struct out *o, const struct report_chart *c, double y0)
{
    if (!chart_has_legend(c))
        return 0;
    double x = 12, y = y0;
    int rows = 1;
    for (size_t i = 0; i < c->n_series; i++) {
        char *name = u8_trunc(c->series[i].name, 40);
        double w = 16 + (double)u8_width(name) * 6.5 + 14;
        if (x + w > SVG_W - 12 && x > 12) {
            x = 12;
            y += 18;
            rows++;
        }
        if (o) {
            putf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"10\" height=\"10\" fill=\"%s\"/>", x,
                 y - 9, chart_palette[i % CHART_PALETTE_N]);
            putf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">", x + 14, y);
            put_html(o, name);
            put(o, "</text>");
        }
        x += w;
        free(name);
    }
    return rows;
}

static void svg_open(struct out *o, const struct report_chart *c, double h)
{
    putf(o,
         "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
         "viewBox=\"0 0 %.0f %.0f\" role=\"img\" " SVG_FONT " aria-label=\"",
         SVG_W, h, SVG_W, h);
    put_html(o, c->title);
    put(o, "\">");
    put(o, "<title>");
    put_html(o, c->title);
    put(o, "</title>");
    putf(o, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>", SVG_W, h);
    put(o, "<text x=\"12\" y=\"18\" font-size=\"13\" font-weight=\"bold\">");
    put_html(o, c->title);
    put(o, "</text>");
}

static void svg_line_chart(struct out *o, const struct report_chart *c)
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
    put(o, "<g class=\"grid\" stroke=\"#e5e5e5\" stroke-width=\"1\">");
    for (int i = 0; i < ay.n_ticks; i++) {
        double y = top + plot_h - axis_frac(&ay, ay.ticks[i]) * plot_h;
        putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, y, left + plot_w,
             y);
    }
    for (int i = 0; i < ax.n_ticks; i++) {
        double x = left + axis_frac(&ax, ax.ticks[i]) * plot_w;
        putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x, top, x, top + plot_h);
    }
    put(o, "</g>");
    put(o, "<g class=\"axes\" stroke=\"#333333\" stroke-width=\"1\">");
    putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, top, left,
         top + plot_h);
    putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, top + plot_h,
         left + plot_w, top + plot_h);
    for (int i = 0; i < ay.n_ticks; i++) {
        double y = top + plot_h - axis_frac(&ay, ay.ticks[i]) * plot_h;
        putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left - 4, y, left, y);
    }
    for (int i = 0; i < ax.n_ticks; i++) {
        double x = left + axis_frac(&ax, ax.ticks[i]) * plot_w;
        putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x, top + plot_h, x,
             top + plot_h + 4);
    }
    put(o, "</g>");
    put(o, "<g class=\"tick-labels\" font-size=\"10\" fill=\"#333333\">");
    char lab[64];
    for (int i = 0; i < ay.n_ticks; i++) {
        double y = top + plot_h - axis_frac(&ay, ay.ticks[i]) * plot_h;
        fmt_tick(&ay, ay.ticks[i], lab, sizeof lab);
        putf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>", left - 7, y + 3.5,
             lab);
    }
    for (int i = 0; i < ax.n_ticks; i++) {
        double x = left + axis_frac(&ax, ax.ticks[i]) * plot_w;
        fmt_tick(&ax, ax.ticks[i], lab, sizeof lab);
        putf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>", x,
             top + plot_h + 16, lab);
    }
    put(o, "</g>");
    char title[320];
    axis_title(c->x_label, c->x_unit, title, sizeof title);
    putf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">",
         left + plot_w / 2, top + plot_h + 38);
    put_html(o, title);
    put(o, c->log_x ? " [log scale]</text>" : "</text>");
    axis_title(c->y_label, c->y_unit, title, sizeof title);
    putf(o,
         "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" "
         "transform=\"rotate(-90 %.1f %.1f)\">",
         16.0, top + plot_h / 2, 16.0, top + plot_h / 2);
    put_html(o, title);
    put(o, "</text>");

    /* series */
    for (size_t k = 0; k < c->n_series; k++) {
        const struct series *s = &c->series[k];
        const char *color = chart_palette[k % CHART_PALETTE_N];
        putf(o, "<g class=\"series\" stroke=\"%s\" fill=\"%s\">", color, color);
        int open = 0;
        for (size_t i = 0; i < s->n; i++) {
            double x = s->x ? s->x[i] : (double)(i + 1), y = s->y[i];
            int ok = isfinite(x) && isfinite(y) && !(c->log_x && x <= 0);
            if (!ok) {
                if (open)
                    put(o, "\"/>");
                open = 0;
                continue;
            }
            double px = left + axis_frac(&ax, x) * plot_w;
            double py = top + plot_h - axis_frac(&ay, y) * plot_h;
            if (!open) {
                put(o, "<polyline fill=\"none\" stroke-width=\"1.8\" points=\"");
                open = 1;
            } else {
                put(o, " ");
            }
            putf(o, "%.1f,%.1f", px, py);
        }
        if (open)
            put(o, "\"/>");
        for (size_t i = 0; i < s->n; i++) {
            double x = s->x ? s->x[i] : (double)(i + 1), y = s->y[i];
            if (!isfinite(x) || !isfinite(y) || (c->log_x && x <= 0))
                continue;
            double px = left + axis_frac(&ax, x) * plot_w;
            double py = top + plot_h - axis_frac(&ay, y) * plot_h;
            char xs[48], ys[48];
            fmt_sig(x, xs, sizeof xs);
            fmt_sig(y, ys, sizeof ys);
            putf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\"><title>", px, py);
            put_html(o, s->name);
            putf(o, "%s%s, %s", s->name[0] ? ": " : "", xs, ys);
            if (c->y_unit) {
                put(o, " ");
                put_html(o, c->y_unit);
            }
            put(o, "</title></circle>");
        }
        put(o, "</g>");
    }
    if (n_points == 0)
        putf(o,
             "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
             "fill=\"#888888\">no data</text>",
             left + plot_w / 2, top + plot_h / 2);
    if (n_skipped)
        putf(o,
             "<text x=\"12\" y=\"%.1f\" font-size=\"10\" fill=\"#888888\">%zu point(s) with x "
             "&lt;= 0 not drawn on the log axis</text>",
             h - 6, n_skipped);
    put(o, "</svg>");
}

/* Number of categories of a bar chart and the label of category i (into tmp). */
static size_t bar_n_cats(const struct report_chart *c)
{
    if (c->n_cats)
        return c->n_cats;
    size_t n = 0;
    for (size_t k = 0; k < c->n_series; k++)
        if (c->series[k].n > n)
            n = c->series[k].n;
    return n;
}

static const char *bar_cat_label(const struct report_chart *c, size_t i, char *tmp, size_t len)
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
static int bar_span(const struct series *s, size_t i, double *a, double *b)
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

static void svg_bar_chart(struct out *o, const struct report_chart *c)
{
    size_t nc = bar_n_cats(c), ns = c->n_series ? c->n_series : 1;
    char tmp[64];
    double label_w = 60;
    for (size_t i = 0; i < nc; i++) {
        char *l = u8_trunc(bar_cat_label(c, i, tmp, sizeof tmp), 30);
        double w = (double)u8_width(l) * 6.5 + 16;
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
            if (!bar_span(&c->series[k], i, &a, &b))
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
        axis_title(c->x_label, c->x_unit, title, sizeof title);
        putf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">", left - 6,
             top - 4);
        put_html(o, title);
        put(o, "</text>");
    }
    put(o, "<g class=\"grid\" stroke=\"#e5e5e5\" stroke-width=\"1\">");
    for (int i = 0; i < av.n_ticks; i++) {
        double x = left + axis_frac(&av, av.ticks[i]) * plot_w;
        putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x, top, x, top + plot_h);
    }
    put(o, "</g>");
    put(o, "<g class=\"axes\" stroke=\"#333333\" stroke-width=\"1\">");
    double x0 = left + axis_frac(&av, 0) * plot_w;
    putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x0, top, x0, top + plot_h);
    putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", left, top + plot_h,
         left + plot_w, top + plot_h);
    for (int i = 0; i < av.n_ticks; i++) {
        double x = left + axis_frac(&av, av.ticks[i]) * plot_w;
        putf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", x, top + plot_h, x,
             top + plot_h + 4);
    }
    put(o, "</g>");
    put(o, "<g class=\"tick-labels\" font-size=\"10\" fill=\"#333333\">");
    for (int i = 0; i < av.n_ticks; i++) {
        double x = left + axis_frac(&av, av.ticks[i]) * plot_w;
        char lab[64];
        fmt_tick(&av, av.ticks[i], lab, sizeof lab);
        putf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>", x,
             top + plot_h + 16, lab);
    }
    put(o, "</g>");
    char title[320];
    axis_title(c->y_label, c->y_unit, title, sizeof title);
    putf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">",
         left + plot_w / 2, top + plot_h + 36);
    put_html(o, title);
    put(o, "</text>");

    put(o, "<g class=\"categories\" font-size=\"11\" fill=\"#222222\">");
    for (size_t i = 0; i < nc; i++) {
        double yc = top + gap + (double)i * group_h + ((double)ns * bar_h) / 2;
        char *l = u8_trunc(bar_cat_label(c, i, tmp, sizeof tmp), 30);
        putf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", left - 6, yc + 4);
        put_html(o, l);
        put(o, "</text>");
        free(l);
    }
    put(o, "</g>");

    for (size_t k = 0; k < c->n_series; k++) {
        const struct series *s = &c->series[k];
        const char *color = chart_palette[k % CHART_PALETTE_N];
        putf(o, "<g class=\"series\" fill=\"%s\">", color);
        for (size_t i = 0; i < nc; i++) {
            double y = top + gap + (double)i * group_h + (double)k * bar_h;
            double a, b;
            char *cat = xstrdup(bar_cat_label(c, i, tmp, sizeof tmp));
            if (!bar_span(s, i, &a, &b)) {
                if (i < s->n)
                    putf(o,
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
            fmt_sig(a, va, sizeof va);
            fmt_sig(b, vb, sizeof vb);
            fmt_sig(b - a, vd, sizeof vd);
            putf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>", pa, y + 1,
                 w, bar_h - 2);
            put_html(o, cat);
            if (s->name[0]) {
                put(o, " / ");
                put_html(o, s->name);
            }
            if (s->lo)
                putf(o, ": %s to %s (%s)", va, vb, vd);
            else
                putf(o, ": %s", vb);
            if (c->y_unit) {
                put(o, " ");
                put_html(o, c->y_unit);
            }
            put(o, "</title></rect>");
            putf(o, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#333333\">%s", pb + 4,
                 y + bar_h - 3, s->lo ? vd : vb);
            if (c->y_unit) {
                put(o, " ");
                put_html(o, c->y_unit);
            }
            put(o, "</text>");
            free(cat);
        }
        put(o, "</g>");
    }
    if (!any)
        putf(o,
             "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
             "fill=\"#888888\">no data</text>",
             left + plot_w / 2, top + plot_h / 2 + 4);
    put(o, "</svg>");
}

/* ---------------------------------------------------------------- Markdown */

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

static void md_pad(struct out *o, const char *s, size_t width)
{
    put(o, s);
    for (size_t w = u8_width(s); w < width; w++)
        put(o, " ");
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

static void md_chart_line(struct out *o, const struct report_chart *c)
{
    size_t name_w = 0;
    for (size_t k = 0; k < c->n_series; k++) {
        char *nm = u8_trunc(c->series[k].name[0] ? c->series[k].name : "series", 24);
        if (u8_width(nm) > name_w)
            name_w = u8_width(nm);
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
        char *nm = u8_trunc(s->name[0] ? s->name : "series", 24);
        md_pad(o, nm, name_w);
        free(nm);
        put(o, "  ");
        if (!isfinite(ymin)) {
            put(o, "no data\n");
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
                put(o, " ");
                continue;
            }
            double v = sum / (double)cnt;
            int lvl = ymax > ymin ? (int)floor((v - ymin) / (ymax - ymin) * 7.999) : 3;
            lvl = lvl < 0 ? 0 : lvl > 7 ? 7 : lvl;
            put(o, spark_levels[lvl]);
        }
        char a[48], b2[48], xa[48], xb[48];
        fmt_sig(ymin, a, sizeof a);
        fmt_sig(ymax, b2, sizeof b2);
        fmt_sig(xmin, xa, sizeof xa);
        fmt_sig(xmax, xb, sizeof xb);
        putf(o, "  %s: %s .. %s%s%s; %s: %s .. %s%s%s\n", c->y_label[0] ? c->y_label : "y", a, b2,
             c->y_unit ? " " : "", c->y_unit ? c->y_unit : "", c->x_label[0] ? c->x_label : "x", xa,
             xb, c->x_unit ? " " : "", c->x_unit ? c->x_unit : "");
    }
}

static void md_chart_bar(struct out *o, const struct report_chart *c)
{
    size_t nc = bar_n_cats(c);
    char tmp[64];
    double vmax = 0, vmin = 0;
    for (size_t k = 0; k < c->n_series; k++)
        for (size_t i = 0; i < nc; i++) {
            double a, b;
            if (bar_span(&c->series[k], i, &a, &b)) {
                vmax = fmax(vmax, fmax(a, b));
                vmin = fmin(vmin, fmin(a, b));
            }
        }
    double span = vmax - vmin;
    size_t label_w = 0;
    for (size_t i = 0; i < nc; i++) {
        char *l = u8_trunc(bar_cat_label(c, i, tmp, sizeof tmp), 28);
        size_t w = u8_width(l);
        free(l);
        if (c->n_series > 1) {
            for (size_t k = 0; k < c->n_series; k++) {
                char *sn = u8_trunc(c->series[k].name, 16);
                size_t ws = w + 3 + u8_width(sn);
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
            char *l = u8_trunc(bar_cat_label(c, i, tmp, sizeof tmp), 28);
            char label[160];
            if (c->n_series > 1) {
                char *sn = u8_trunc(s->name, 16);
                snprintf(label, sizeof label, "%s / %s", l, sn);
                free(sn);
            } else {
                snprintf(label, sizeof label, "%s", l);
            }
            free(l);
            md_pad(o, label, label_w);
            put(o, "  ");
            double a, b;
            if (!bar_span(s, i, &a, &b)) {
                put(o, "n/a\n");
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
                put(o, " ");
            for (long j = 0; j < eighth_total / 8; j++)
                put(o, "\xE2\x96\x88");
            put(o, eighths[eighth_total % 8]);
            char va[48], vb[48], vd[48];
            fmt_sig(a, va, sizeof va);
            fmt_sig(b, vb, sizeof vb);
            fmt_sig(b - a, vd, sizeof vd);
            if (s->lo)
                putf(o, " %s%s%s (%s .. %s)\n", vd, c->y_unit ? " " : "",
                     c->y_unit ? c->y_unit : "", va, vb);
            else
                putf(o, " %s%s%s\n", vb, c->y_unit ? " " : "", c->y_unit ? c->y_unit : "");
        }
    }
}

static void md_chart(struct out *o, const struct report *r, const struct report_chart *c)
{
    put(o, "**Chart: ");
    put_md_inline(o, c->title);
    put(o, "**");
    if (r->html_name) {
        put(o, " (drawn in [");
        put_md_inline(o, r->html_name);
        put(o, "](");
        /* link destination: percent-encode the few characters that would end or break it */
        for (const char *p = r->html_name; *p; p++) {
            unsigned char ch = (unsigned char)*p;
            if (ch <= 0x20 || ch == '(' || ch == ')' || ch == '<' || ch == '>' || ch >= 0x7F)
                putf(o, "%%%02X", ch);
            else
                put_n(o, p, 1);
        }
        put(o, "))");
    }
    put(o, "\n\n```text\n");
    if (c->n_series == 0)
        put(o, "no data\n");
    else if (c->kind == REPORT_CHART_LINE)
        md_chart_line(o, c);
    else
        md_chart_bar(o, c);
    put(o, "```\n\n");
}

static void md_table(struct out *o, const struct report_table *t)
{
    if (t->caption) {
        put(o, "*");
        put_md_inline(o, t->caption);
        put(o, "*\n\n");
    }
    if (t->n_cols == 0)
        return;
    char h[512];
    put(o, "|");
    for (int j = 0; j < t->n_cols; j++) {
        col_header(&t->cols[j], h, sizeof h);
        put(o, " ");
        put_md_inline(o, h);
        put(o, " |");
    }
    put(o, "\n|");
    for (int j = 0; j < t->n_cols; j++)
        put(o, t->cols[j].kind == REPORT_COL_NUMBER ? "---:|" : "---|");
    put(o, "\n");
    for (size_t i = 0; i < t->n_rows; i++) {
        put(o, "|");
        for (int j = 0; j < t->n_cols; j++) {
            char tmp[64];
            int na;
            const char *s = cell_show(t, i, j, tmp, sizeof tmp, &na);
            put(o, " ");
            put_md_inline(o, s);
            put(o, " |");
        }
        put(o, "\n");
    }
    put(o, "\n");
}

static void render_md(struct out *o, const struct report *r)
{
    put(o, "# ");
    put_md_inline(o, r->title);
    put(o, "\n\n");
    for (size_t i = 0; i < r->n_meta; i++) {
        put(o, "- **");
        put_md_inline(o, r->meta[i].key);
        put(o, "**: ");
        put_md_inline(o, r->meta[i].value);
        put(o, "\n");
    }
    if (r->n_meta)
        put(o, "\n");
    for (size_t i = 0; i < r->n_sections; i++) {
        const struct report_section *s = r->sections[i];
        put(o, "## ");
        put_md_inline(o, s->title);
        put(o, "\n\n");
        for (size_t j = 0; j < s->n_items; j++) {
            const struct item *it = &s->items[j];
            switch (it->kind) {
            case ITEM_PARAGRAPH:
                put_md_block(o, it->text);
                put(o, "\n\n");
                break;
            case ITEM_BULLET:
                put(o, "- ");
                put_md_block(o, it->text);
                put(o, "\n");
                if (j + 1 >= s->n_items || s->items[j + 1].kind != ITEM_BULLET)
                    put(o, "\n");
                break;
            case ITEM_PRE: {
                char fence[64];
                md_fence(it->text, fence, sizeof fence);
                put(o, fence);
                put(o, "\n");
                put(o, it->text);
                if (!*it->text || it->text[strlen(it->text) - 1] != '\n')
                    put(o, "\n");
                put(o, fence);
                put(o, "\n\n");
                break;
            }
            case ITEM_TABLE:
                md_table(o, it->table);
                break;
            case ITEM_CHART:
                md_chart(o, r, it->chart);
                break;
            }
        }
    }
}

/* ---------------------------------------------------------------- HTML */

static const char html_css[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;"
    "max-width:980px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}"
    "h1{font-size:1.6em;border-bottom:1px solid #ddd;padding-bottom:.3em}"
    "h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #eee;padding-bottom:.2em}"
    "table{border-collapse:collapse;margin:.8em 0 1.2em;font-size:.92em}"
    "caption{caption-side:top;text-align:left;font-style:italic;padding-bottom:.3em}"
    "th,td{border:1px solid #ddd;padding:.3em .6em;vertical-align:top}"
    "th{background:#f6f8fa;text-align:left}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    "td.na{color:#888;font-style:italic}"
    "table.meta th{width:14em}"
    "pre{background:#f6f8fa;padding:.7em;overflow-x:auto;white-space:pre-wrap;"
    "word-break:break-all;font-size:.85em}"
    "figure{margin:1em 0}figcaption{font-size:.85em;color:#555}"
    "svg{max-width:100%;height:auto}";

static void html_table(struct out *o, const struct report_table *t)
{
    put(o, "<table id=\"table-");
    put_html(o, t->key);
    put(o, "\">");
    if (t->caption) {
        put(o, "<caption>");
        put_html(o, t->caption);
        put(o, "</caption>");
    }
    put(o, "<thead><tr>");
    char h[512];
    for (int j = 0; j < t->n_cols; j++) {
        col_header(&t->cols[j], h, sizeof h);
        put(o, "<th>");
        put_html(o, h);
        put(o, "</th>");
    }
    put(o, "</tr></thead><tbody>");
    for (size_t i = 0; i < t->n_rows; i++) {
        put(o, "<tr>");
        for (int j = 0; j < t->n_cols; j++) {
            char tmp[64];
            int na;
            const char *s = cell_show(t, i, j, tmp, sizeof tmp, &na);
            if (na)
                put(o, "<td class=\"num na\">");
            else if (t->cols[j].kind == REPORT_COL_NUMBER)
                put(o, "<td class=\"num\">");
            else
                put(o, "<td>");
            put_html(o, s);
            put(o, "</td>");
        }
        put(o, "</tr>");
    }
    put(o, "</tbody></table>\n");
}

static void render_html(struct out *o, const struct report *r)
{
    put(o, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    put_html(o, r->title);
    put(o, "</title>\n<style>");
    put(o, html_css);
    put(o, "</style>\n</head>\n<body>\n<h1>");
    put_html(o, r->title);
    put(o, "</h1>\n");
    if (r->n_meta) {
        put(o, "<table class=\"meta\"><tbody>");
        for (size_t i = 0; i < r->n_meta; i++) {
            put(o, "<tr><th>");
            put_html(o, r->meta[i].key);
            put(o, "</th><td>");
            put_html(o, r->meta[i].value);
            put(o, "</td></tr>");
        }
        put(o, "</tbody></table>\n");
    }
    for (size_t i = 0; i < r->n_sections; i++) {
        const struct report_section *s = r->sections[i];
        put(o, "<section id=\"");
        put_html(o, s->key);
        put(o, "\">\n<h2>");
        put_html(o, s->title);
        put(o, "</h2>\n");
        for (size_t j = 0; j < s->n_items; j++) {
            const struct item *it = &s->items[j];
            switch (it->kind) {
            case ITEM_PARAGRAPH:
                put(o, "<p>");
                put_html(o, it->text);
                put(o, "</p>\n");
                break;
            case ITEM_BULLET:
                if (j == 0 || s->items[j - 1].kind != ITEM_BULLET)
                    put(o, "<ul>\n");
                put(o, "<li>");
                put_html(o, it->text);
                put(o, "</li>\n");
                if (j + 1 >= s->n_items || s->items[j + 1].kind != ITEM_BULLET)
                    put(o, "</ul>\n");
                break;
            case ITEM_PRE:
                put(o, "<pre>");
                put_html(o, it->text);
                put(o, "</pre>\n");
                break;
            case ITEM_TABLE:
                html_table(o, it->table);
                break;
            case ITEM_CHART:
                put(o, "<figure id=\"chart-");
                put_html(o, it->chart->key);
                put(o, "\">");
                if (it->chart->kind == REPORT_CHART_LINE)
                    svg_line_chart(o, it->chart);
                else
                    svg_bar_chart(o, it->chart);
                put(o, "<figcaption>");
                put_html(o, it->chart->title);
                put(o, "</figcaption></figure>\n");
                break;
            }
        }
        put(o, "</section>\n");
    }
    put(o, "</body>\n</html>\n");
}

/* ---------------------------------------------------------------- JSON */

static void json_doubles(struct out *o, const double *v, size_t n)
{
    put(o, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            put(o, ",");
        put_json_num(o, v[i]);
    }
    put(o, "]");
}

static void json_table(struct out *o, const struct report_table *t)
{
    put(o, "{\"key\":");
    put_json_str(o, t->key);
    put(o, ",\"caption\":");
    if (t->caption)
        put_json_str(o, t->caption);
    else
        put(o, "null");
    put(o, ",\"columns\":[");
    for (int j = 0; j < t->n_cols; j++) {
        const struct col *k = &t->cols[j];
        if (j)
            put(o, ",");
        put(o, "{\"key\":");
        put_json_str(o, k->key);
        put(o, ",\"label\":");
        put_json_str(o, k->label);
        put(o, ",\"unit\":");
        if (k->unit)
            put_json_str(o, k->unit);
        else
            put(o, "null");
        putf(o, ",\"type\":\"%s\",\"precision\":%d}",
             k->kind == REPORT_COL_NUMBER ? "number" : "text", k->precision);
    }
    put(o, "],\"rows\":[");
    for (size_t i = 0; i < t->n_rows; i++) {
        if (i)
            put(o, ",");
        put(o, "{");
        int n_reasons = 0;
        for (int j = 0; j < t->n_cols; j++) {
            const struct cell *c = &t->rows[i][j];
            if (j)
                put(o, ",");
            put_json_str(o, t->cols[j].key);
            put(o, ":");
            if (t->cols[j].kind == REPORT_COL_TEXT) {
                put_json_str(o, c->text ? c->text : "");
            } else {
                put_json_num(o, c->num);
                if (!isfinite(c->num) && c->text)
                    n_reasons++;
            }
        }
        if (n_reasons) {
            put(o, ",\"na_reasons\":{");
            int first = 1;
            for (int j = 0; j < t->n_cols; j++) {
                const struct cell *c = &t->rows[i][j];
                if (t->cols[j].kind != REPORT_COL_NUMBER || isfinite(c->num) || !c->text)
                    continue;
                if (!first)
                    put(o, ",");
                first = 0;
                put_json_str(o, t->cols[j].key);
                put(o, ":");
                put_json_str(o, c->text);
            }
            put(o, "}");
        }
        put(o, "}");
    }
    put(o, "]}");
}

static void json_chart(struct out *o, const struct report_chart *c)
{
    put(o, "{\"key\":");
    put_json_str(o, c->key);
    putf(o, ",\"kind\":\"%s\",\"title\":", c->kind == REPORT_CHART_LINE ? "line" : "bar");
    put_json_str(o, c->title);
    put(o, ",\"x_label\":");
    put_json_str(o, c->x_label);
    put(o, ",\"x_unit\":");
    if (c->x_unit)
        put_json_str(o, c->x_unit);
    else
        put(o, "null");
    put(o, ",\"y_label\":");
    put_json_str(o, c->y_label);
    put(o, ",\"y_unit\":");
    if (c->y_unit)
        put_json_str(o, c->y_unit);
    else
        put(o, "null");
    putf(o, ",\"log_x\":%s", c->log_x ? "true" : "false");
    if (c->n_cats) {
        put(o, ",\"categories\":[");
        for (size_t i = 0; i < c->n_cats; i++) {
            if (i)
                put(o, ",");
            put_json_str(o, c->cats[i]);
        }
        put(o, "]");
    }
    put(o, ",\"series\":[");
    for (size_t k = 0; k < c->n_series; k++) {
        const struct series *s = &c->series[k];
        if (k)
            put(o, ",");
        put(o, "{\"name\":");
        put_json_str(o, s->name);
        if (s->lo) {
            put(o, ",\"lo\":");
            json_doubles(o, s->lo, s->n);
            put(o, ",\"hi\":");
            json_doubles(o, s->y, s->n);
        } else {
            if (s->x) {
                put(o, ",\"x\":");
                json_doubles(o, s->x, s->n);
            }
            put(o, ",\"y\":");
            json_doubles(o, s->y, s->n);
        }
        put(o, "}");
    }
    put(o, "]}");
}

static void render_json(struct out *o, const struct report *r)
{
    put(o, "{\"title\":");
    put_json_str(o, r->title);
    put(o, ",\n\"meta\":{");
    for (size_t i = 0; i < r->n_meta; i++) {
        if (i)
            put(o, ",");
        put_json_str(o, r->meta[i].key);
        put(o, ":");
        put_json_str(o, r->meta[i].value);
    }
    put(o, "},\n\"sections\":[");
    for (size_t i = 0; i < r->n_sections; i++) {
        const struct report_section *s = r->sections[i];
        put(o, i ? ",\n{" : "\n{");
        put(o, "\"key\":");
        put_json_str(o, s->key);
        put(o, ",\"title\":");
        put_json_str(o, s->title);
        put(o, ",\"text\":[");
        int first = 1;
        for (size_t j = 0; j < s->n_items; j++) {
            const struct item *it = &s->items[j];
            if (it->kind != ITEM_PARAGRAPH && it->kind != ITEM_BULLET && it->kind != ITEM_PRE)
                continue;
            if (!first)
                put(o, ",");
            first = 0;
            putf(o, "{\"kind\":\"%s\",\"text\":",
                 it->kind == ITEM_PARAGRAPH ? "paragraph"
                 : it->kind == ITEM_BULLET  ? "bullet"
                                            : "pre");
            put_json_str(o, it->text);
            put(o, "}");
        }
        put(o, "],\"tables\":[");
        first = 1;
        for (size_t j = 0; j < s->n_items; j++) {
            if (s->items[j].kind != ITEM_TABLE)
                continue;
            if (!first)
                put(o, ",");
            first = 0;
            json_table(o, s->items[j].table);
        }
        put(o, "],\"charts\":[");
        first = 1;
        for (size_t j = 0; j < s->n_items; j++) {
            if (s->items[j].kind != ITEM_CHART)
                continue;
            if (!first)
                put(o, ",");
            first = 0;
            json_chart(o, s->items[j].chart);
        }
        put(o, "]}");
    }
    put(o, "\n]}\n");
}

/* ---------------------------------------------------------------- CSV */

static void csv_field(struct out *o, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        put(o, s);
        return;
    }
    put(o, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            put(o, "\"\"");
        else
            put_n(o, p, 1);
    }
    put(o, "\"");
}

enum report_status report_render_csv(const struct report *r, const char *table_key, struct buf *out)
{
    const struct report_table *t = report_find_table(r, table_key);
    if (!t)
        return REPORT_ERR_NOT_FOUND;
    struct out o = {out, 0};
    for (int j = 0; j < t->n_cols; j++) {
        if (j)
            put(&o, ",");
        csv_field(&o, t->cols[j].key);
    }
    put(&o, "\r\n");
    for (size_t i = 0; i < t->n_rows; i++) {
        for (int j = 0; j < t->n_cols; j++) {
            const struct cell *c = &t->rows[i][j];
            if (j)
                put(&o, ",");
            if (t->cols[j].kind == REPORT_COL_TEXT) {
                csv_field(&o, c->text ? c->text : "");
            } else if (isfinite(c->num)) {
                char tmp[64];
                fmt_fixed(c->num, t->cols[j].precision, tmp, sizeof tmp);
                put(&o, tmp);
            }
        }
        put(&o, "\r\n");
    }
    return o.err ? REPORT_ERR_CAP : REPORT_OK;
}

/* ---------------------------------------------------------------- entry points */

enum report_status report_render(const struct report *r, enum report_format f, struct buf *out)
{
    struct out o = {out, 0};
    switch (f) {
    case REPORT_FORMAT_MARKDOWN:
        render_md(&o, r);
        break;
    case REPORT_FORMAT_HTML:
        render_html(&o, r);
        break;
    case REPORT_FORMAT_JSON:
        render_json(&o, r);
        break;
    }
    return o.err ? REPORT_ERR_CAP : REPORT_OK;
}

#define REPORT_FILE_CAP_BYTES ((size_t)256 << 20)

static enum report_status write_buf(const struct buf *b, const char *path, char *err,
                                    size_t err_len)
{
    if (file_write_all(path, b->data, b->len) != 0) {
        if (err && err_len)
            snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return REPORT_ERR_IO;
    }
    return REPORT_OK;
}

enum report_status report_write_file(const struct report *r, enum report_format f, const char *path,
                                     char *err, size_t err_len)
{
    struct buf b;
    buf_init(&b, 1 << 16, REPORT_FILE_CAP_BYTES);
    enum report_status st = report_render(r, f, &b);
    if (st == REPORT_OK)
        st = write_buf(&b, path, err, err_len);
    else if (err && err_len)
        snprintf(err, err_len, "%s: %s rendering: %s", path, report_format_str(f),
                 report_status_str(st));
    buf_free(&b);
    return st;
}

enum report_status report_write_csv(const struct report *r, const char *table_key, const char *path,
                                    char *err, size_t err_len)
{
    struct buf b;
    buf_init(&b, 1 << 14, REPORT_FILE_CAP_BYTES);
    enum report_status st = report_render_csv(r, table_key, &b);
    if (st == REPORT_OK)
        st = write_buf(&b, path, err, err_len);
    else if (err && err_len)
        snprintf(err, err_len, "%s: table %s: %s", path, table_key, report_status_str(st));
    buf_free(&b);
    return st;
}
