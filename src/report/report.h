/* report: a report is one struct rendered several ways. A caller builds a struct report (title,
 * metadata key/values, sections holding paragraphs, preformatted blocks, tables and charts) and
 * renders it as Markdown (GitHub tables, charts as text sparklines/bars plus a pointer to the
 * HTML), HTML (one self-contained file: inline CSS, inline SVG charts, no JavaScript, no external
 * resources), JSON (unit-suffixed keys, written with the buf JSON emitter) or CSV (one table,
 * RFC 4180). It does not measure or compute anything: numbers in prose are computed by the caller
 * and formatted into the text; the report only escapes and lays out what it is given.
 *
 *   struct report *r = report_new("First token latency");
 *   report_meta(r, "model", "%s", model_path);
 *   struct report_section *s = report_section_add(r, "runs", "Cold vs warm");
 *   report_paragraph(s, "Cold TTFT was %.1f ms, %.1fx the warm median.", cold_ms, factor);
 *   struct report_table *t = report_table_add(s, "runs", "Requests");
 *   report_table_col(t, "run", "Run", NULL, REPORT_COL_TEXT, 0);
 *   report_table_col(t, "ttft_ms", "TTFT", "ms", REPORT_COL_NUMBER, 1);
 *   report_table_row_add(t);
 *   report_row_text(t, "cold_1");
 *   report_row_num(t, ttft_ms);     // NAN prints "n/a"; report_row_na(t, "no GPU") gives a reason
 *   struct report_chart *c = report_chart_add(s, REPORT_CHART_LINE, "ttft", "TTFT per run",
 *                                             "run", NULL, "TTFT", "ms");
 *   report_chart_series(c, "warm", xs, ys, n);
 *   report_write_file(r, REPORT_FORMAT_HTML, "out/report.html", err, sizeof err);
 *   report_free(r);
 *
 * Tables for people: a table shown in the documents (Markdown, HTML) should have at most
 * REPORT_DOC_MAX_COLS columns; wider ones do not fit a page or a terminal. A probe that has a wider
 * table keeps it whole for the machines (CSV, JSON) and hides it from the documents with
 * report_table_hide_in_doc, then adds two or more narrow tables (the key columns repeated in each)
 * that the documents show. The renderers log a warning for a shown table wider than the limit.
 *
 * Builders never fail (strings are copied; out-of-memory aborts like xmalloc). Everything a
 * builder returns (sections, tables, charts) is owned by the report and lives until report_free.
 * A report is used by one thread at a time. Text given to builders is plain UTF-8 text (not
 * Markdown, not HTML): each renderer escapes it for its format. */
#ifndef SLM_REPORT_H
#define SLM_REPORT_H

#include <stddef.h>

#include "util/buf.h"

enum report_status {
    REPORT_OK = 0,
    REPORT_ERR_CAP,       /* output buffer cap reached */
    REPORT_ERR_IO,        /* file could not be written (err says why) */
    REPORT_ERR_NOT_FOUND, /* no table with that key */
};
const char *report_status_str(enum report_status st);

enum report_format { REPORT_FORMAT_MARKDOWN = 0, REPORT_FORMAT_HTML, REPORT_FORMAT_JSON };
const char *report_format_str(enum report_format f); /* "markdown", "html", "json" */

enum report_col_kind { REPORT_COL_NUMBER = 0, REPORT_COL_TEXT };

/* Most columns a table shown in Markdown/HTML should have (see "Tables for people" above). */
#define REPORT_DOC_MAX_COLS 10

enum report_chart_kind {
    REPORT_CHART_LINE = 0, /* x/y points joined per series, markers at points */
    REPORT_CHART_BAR,      /* horizontal bars, one group per category (or per x value) */
};

struct report;
struct report_section;
struct report_table;
struct report_chart;

/* ---- report ---- */
struct report *report_new(const char *title);
void report_free(struct report *r); /* NULL-safe */
/* Sets a metadata key/value shown under the title (and in JSON "meta"). Keys keep the order of
 * their first setting; setting a key again replaces its value. */
void report_meta(struct report *r, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Name of the HTML rendering of the same report ("first_token_latency.html"); the Markdown
 * renderer points readers there for the drawn charts. NULL: no pointer. */
void report_set_html_name(struct report *r, const char *file_name);

/* ---- sections ---- */
/* key: a short identifier used in JSON ("config", "runs"); title: the heading. */
struct report_section *report_section_add(struct report *r, const char *key, const char *title);
/* A paragraph of plain text (escaped by each renderer). */
void report_paragraph(struct report_section *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A bulleted item (consecutive items render as one list). */
void report_bullet(struct report_section *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A preformatted block (command lines, log excerpts): code block in Markdown, <pre> in HTML. */
void report_pre(struct report_section *s, const char *text);

/* ---- tables ---- */
/* key: identifier for JSON and report_write_csv ("runs"); caption may be NULL. */
struct report_table *report_table_add(struct report_section *s, const char *key,
                                      const char *caption);
/* Adds a column; returns its index. key: JSON/CSV name carrying the unit ("ttft_ms"); label: the
 * header text ("TTFT"); unit: shown as "TTFT (ms)" (NULL: none); precision: decimals for numbers.
 * Columns must all be added before the first row. */
int report_table_col(struct report_table *t, const char *key, const char *label, const char *unit,
                     enum report_col_kind kind, int precision);
/* on: the table is left out of the Markdown and HTML renderings (it stays in JSON, and
 * report_render_csv/report_write_csv write it with every column). Default off. */
void report_table_hide_in_doc(struct report_table *t, int on);
/* Default text for NAN cells of a column without their own reason (default "n/a"). */
void report_table_col_na_text(struct report_table *t, int col, const char *text);
/* Appends an empty row (every cell "missing": NAN / empty text); returns its index. */
size_t report_table_row_add(struct report_table *t);
size_t report_table_n_rows(const struct report_table *t);
int report_table_n_cols(const struct report_table *t);
/* Set one cell of an existing row. Out-of-range row/col or a kind mismatch (text into a number
 * column) is a programming error: logged and ignored. */
void report_cell_num(struct report_table *t, size_t row, int col, double v);
void report_cell_text(struct report_table *t, size_t row, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A missing number with a reason shown instead of the value ("no GPU"); JSON gets null. */
void report_cell_na(struct report_table *t, size_t row, int col, const char *reason);
/* Sequential fill of the last row: each call sets the next column not yet set by these calls. */
void report_row_num(struct report_table *t, double v);
void report_row_text(struct report_table *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void report_row_na(struct report_table *t, const char *reason);

/* ---- charts ---- */
/* key: JSON identifier; units may be NULL. Axis titles render as "label (unit)". */
struct report_chart *report_chart_add(struct report_section *s, enum report_chart_kind kind,
                                      const char *key, const char *title, const char *x_label,
                                      const char *x_unit, const char *y_label, const char *y_unit);
/* Axes keep to the data (series and marks): the range is the data's, padded by 5% of its span on
 * each side, with ticks at round steps inside it. A line chart's y axis includes 0 only when that
 * at most doubles the span (data from 3 to 97 is drawn from 0; data from 900 to 1000 is not), or
 * always after report_chart_y_from_zero(c, 1). Bar charts always start their bars at 0. */
/* Log-scale x axis (line charts; points with x <= 0 are skipped and counted in a note). */
void report_chart_log_x(struct report_chart *c, int on);
void report_chart_y_from_zero(struct report_chart *c, int on);
/* A marked point (the knee, the sweet spot): drawn in the SVG of a line chart as a distinct
 * symbol with its label; listed under the chart in Markdown; in JSON under "marks". label is
 * copied. Non-finite x or y: listed, not drawn. */
void report_chart_mark(struct report_chart *c, double x, double y, const char *label);
/* Adds a series; x and y are copied (n points). Line charts: x may be NULL (x = 1..n).
 * Bar charts: y[i] is the bar length of category i (x is ignored when categories are set, else
 * x[i] labels the category); NAN values draw no bar/point and print "n/a". */
void report_chart_series(struct report_chart *c, const char *name, const double *x, const double *y,
                         size_t n);
/* Bar charts: floating bars from lo[i] to hi[i] (a timeline: phase start..end). */
void report_chart_series_range(struct report_chart *c, const char *name, const double *lo,
                               const double *hi, size_t n);
/* Bar charts: category names, copied (bars are drawn in this order, top to bottom). */
void report_chart_categories(struct report_chart *c, const char *const *names, size_t n);

/* ---- lookup ---- */
struct report_table *report_find_table(const struct report *r, const char *key); /* NULL if none */

/* ---- rendering ---- */
/* Appends the rendering to out (capped by out's cap). REPORT_OK or REPORT_ERR_CAP (out then holds
 * a truncated rendering). */
enum report_status report_render(const struct report *r, enum report_format f, struct buf *out);
/* One table as CSV: a header row of column keys, then rows; RFC 4180 quoting (fields with comma,
 * quote, CR or LF are quoted, quotes doubled), CRLF line ends; missing numbers are empty fields. */
enum report_status report_render_csv(const struct report *r, const char *table_key,
                                     struct buf *out);
/* Render and write atomically (tmp + rename) to path. On REPORT_ERR_IO err says why. */
enum report_status report_write_file(const struct report *r, enum report_format f, const char *path,
                                     char *err, size_t err_len);
enum report_status report_write_csv(const struct report *r, const char *table_key, const char *path,
                                    char *err, size_t err_len);

#endif
