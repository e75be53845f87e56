/* report: the document model and its builders (metadata, sections, paragraphs, typed tables,
 * charts), lookup, and the entry points that dispatch to one renderer per format (report_md.c,
 * report_html.c with report_svg.c, report_json.c, report_csv.c) and write files. It computes
 * nothing about the measurements and formats nothing itself. */
#include "report/report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_impl.h"
#include "util/log.h"

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

char *rpt_vformat(const char *fmt, va_list ap)
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
    for (size_t i = 0; i < c->n_marks; i++)
        free(c->marks[i].label);
    free(c->marks);
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
    char *v = rpt_vformat(fmt, ap);
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
    section_item_add(s, ITEM_PARAGRAPH)->text = rpt_vformat(fmt, ap);
    va_end(ap);
}

void report_bullet(struct report_section *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    section_item_add(s, ITEM_BULLET)->text = rpt_vformat(fmt, ap);
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

void report_table_hide_in_doc(struct report_table *t, int on)
{
    t->hide_in_doc = on != 0;
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
    char *s = rpt_vformat(fmt, ap);
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
    char *s = rpt_vformat(fmt, ap);
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

void report_chart_y_from_zero(struct report_chart *c, int on)
{
    c->y_from_zero = on != 0;
}

void report_chart_mark(struct report_chart *c, double x, double y, const char *label)
{
    grow((void **)&c->marks, &c->cap_marks, c->n_marks + 1, sizeof *c->marks);
    struct mark *m = &c->marks[c->n_marks++];
    m->x = x;
    m->y = y;
    m->label = xstrdup(label ? label : "");
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

/* ---------------------------------------------------------------- entry points */

enum report_status report_render(const struct report *r, enum report_format f, struct buf *out)
{
    struct rpt_out o = {out, 0};
    switch (f) {
    case REPORT_FORMAT_MARKDOWN:
        rpt_render_md(&o, r);
        break;
    case REPORT_FORMAT_HTML:
        rpt_render_html(&o, r);
        break;
    case REPORT_FORMAT_JSON:
        rpt_render_json(&o, r);
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
