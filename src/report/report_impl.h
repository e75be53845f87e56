/* report_impl: private to src/report/. The report's data structures (shared by the builders in
 * report.c and the renderers report_md.c, report_html.c, report_svg.c, report_json.c and
 * report_csv.c), the capped output sink every renderer writes through, and the escaping and
 * number-formatting helpers they share (report_out.c). Nothing outside src/report/ includes this;
 * the public contract is report.h. Internal names carry the prefix rpt_. */
#ifndef SLM_REPORT_IMPL_H
#define SLM_REPORT_IMPL_H

#include <stdarg.h>
#include <stddef.h>

#include "report/report.h"
#include "util/buf.h"

#define REPORT_NA_DEFAULT "n/a"

/* ---- data ---- */

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
    int next_col;    /* sequential fill position in the last row */
    int hide_in_doc; /* not rendered in Markdown/HTML; still in JSON and CSV */
};

struct series {
    char *name;
    double *x;  /* NULL: none given */
    double *y;  /* values, or range ends (hi) */
    double *lo; /* range starts; NULL unless a range series */
    size_t n;
};

struct mark {
    double x, y;
    char *label;
};

struct report_chart {
    enum report_chart_kind kind;
    char *key, *title, *x_label, *x_unit, *y_label, *y_unit;
    int log_x;
    int y_from_zero; /* line charts: always include 0 on the y axis */
    struct mark *marks;
    size_t n_marks, cap_marks;
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

/* A heap string formatted from fmt/ap (never NULL; caller frees). In report.c. */
char *rpt_vformat(const char *fmt, va_list ap);

/* ---- output sink (report_out.c) ---- */

struct rpt_out {
    struct buf *b;
    int err; /* sticky: cap reached; later writes are dropped */
};

void rpt_put_n(struct rpt_out *o, const char *s, size_t n);
void rpt_put(struct rpt_out *o, const char *s);
void rpt_putf(struct rpt_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* HTML/XML text and attribute escaping; control characters become spaces, invalid UTF-8 U+FFFD. */
void rpt_put_html(struct rpt_out *o, const char *s);
/* Markdown text on one line (inline: in a cell or heading; block: at the start of a block, where
 * heading and list markers are neutralised too). */
void rpt_put_md_inline(struct rpt_out *o, const char *s);
void rpt_put_md_block(struct rpt_out *o, const char *s);
void rpt_put_json_str(struct rpt_out *o, const char *s); /* NULL writes "" */
void rpt_put_json_num(struct rpt_out *o, double v);      /* not finite: null */

/* ---- text and number formatting (report_out.c) ---- */

size_t rpt_u8_width(const char *s);               /* code points; invalid bytes count one each */
char *rpt_u8_trunc(const char *s, size_t max_cp); /* heap copy, "…" when cut; caller frees */
void rpt_fmt_fixed(double v, int prec, char *out, size_t len); /* fixed decimals, never "-0" */
void rpt_fmt_sig(double v, char *out, size_t len);             /* about three significant digits */
/* Cell text as shown in Markdown/HTML: a formatted number (into tmp), the NA text, or the text;
 * *is_na says which. The result lives as long as tmp and the table. */
const char *rpt_cell_show(const struct report_table *t, size_t row, int col, char *tmp,
                          size_t tmp_len, int *is_na);
void rpt_col_header(const struct col *k, char *out, size_t len);                 /* "TTFT (ms)" */
void rpt_axis_title(const char *label, const char *unit, char *out, size_t len); /* same */

/* ---- bar chart model (report_out.c) ---- */

size_t rpt_bar_n_cats(const struct report_chart *c);
/* Label of category i: its name, else the x value of a series, else i+1 (formatted into tmp). */
const char *rpt_bar_cat_label(const struct report_chart *c, size_t i, char *tmp, size_t len);
/* Bar i of series s: start and end on the value axis; 0 if missing. */
int rpt_bar_span(const struct series *s, size_t i, double *a, double *b);

/* 0 when the table is hidden from Markdown/HTML; else 1, after a warning when it is wider than
 * REPORT_DOC_MAX_COLS. */
int rpt_table_in_doc(const struct report_table *t);

/* ---- renderers ---- */

void rpt_render_md(struct rpt_out *o, const struct report *r);       /* report_md.c */
void rpt_render_html(struct rpt_out *o, const struct report *r);     /* report_html.c */
void rpt_render_json(struct rpt_out *o, const struct report *r);     /* report_json.c */
void rpt_svg_chart(struct rpt_out *o, const struct report_chart *c); /* report_svg.c: one <svg> */

#endif
