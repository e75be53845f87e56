/* report_html: renders a report as one self-contained HTML file: inline CSS, tables, and charts as
 * inline SVG (report_svg.c). No JavaScript, no external resources, no links out. */
#include <stdio.h>
#include <string.h>

#include "report/report_impl.h"

static const char html_css[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;"
    "max-width:980px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}"
    "h1{font-size:1.6em;border-bottom:1px solid #ddd;padding-bottom:.3em}"
    "h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #eee;padding-bottom:.2em}"
    "table{border-collapse:collapse;margin:.8em 0 1.2em;font-size:.92em}"
    ".tw{overflow-x:auto;max-width:100%}"
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

/* A column header, escaped, with a line-break opportunity after each '_' so that a table of
 * snake_case columns (the seeds' CSV names) wraps its headers instead of widening the page. */
static void put_header(struct rpt_out *o, const char *h)
{
    char seg[512]; /* headers come from a 512-byte buffer */
    for (const char *p = h; *p;) {
        size_t n = strcspn(p, "_");
        n += p[n] == '_';
        snprintf(seg, sizeof seg, "%.*s", (int)n, p);
        rpt_put_html(o, seg);
        p += n;
        if (p[-1] == '_' && *p)
            rpt_put(o, "<wbr>");
    }
}

/* In a scrolling box: a table wider than the page scrolls by itself, the page does not. */
static void html_table(struct rpt_out *o, const struct report_table *t)
{
    rpt_put(o, "<div class=\"tw\"><table id=\"table-");
    rpt_put_html(o, t->key);
    rpt_put(o, "\">");
    if (t->caption) {
        rpt_put(o, "<caption>");
        rpt_put_html(o, t->caption);
        rpt_put(o, "</caption>");
    }
    rpt_put(o, "<thead><tr>");
    char h[512];
    for (int j = 0; j < t->n_cols; j++) {
        rpt_col_header(&t->cols[j], h, sizeof h);
        rpt_put(o, "<th>");
        put_header(o, h);
        rpt_put(o, "</th>");
    }
    rpt_put(o, "</tr></thead><tbody>");
    for (size_t i = 0; i < t->n_rows; i++) {
        rpt_put(o, "<tr>");
        for (int j = 0; j < t->n_cols; j++) {
            char tmp[64];
            int na;
            const char *s = rpt_cell_show(t, i, j, tmp, sizeof tmp, &na);
            if (na)
                rpt_put(o, "<td class=\"num na\">");
            else if (t->cols[j].kind == REPORT_COL_NUMBER)
                rpt_put(o, "<td class=\"num\">");
            else
                rpt_put(o, "<td>");
            rpt_put_html(o, s);
            rpt_put(o, "</td>");
        }
        rpt_put(o, "</tr>");
    }
    rpt_put(o, "</tbody></table></div>\n");
}

void rpt_render_html(struct rpt_out *o, const struct report *r)
{
    rpt_put(o, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    rpt_put_html(o, r->title);
    rpt_put(o, "</title>\n<style>");
    rpt_put(o, html_css);
    rpt_put(o, "</style>\n</head>\n<body>\n<h1>");
    rpt_put_html(o, r->title);
    rpt_put(o, "</h1>\n");
    if (r->n_meta) {
        rpt_put(o, "<table class=\"meta\"><tbody>");
        for (size_t i = 0; i < r->n_meta; i++) {
            rpt_put(o, "<tr><th>");
            rpt_put_html(o, r->meta[i].key);
            rpt_put(o, "</th><td>");
            rpt_put_html(o, r->meta[i].value);
            rpt_put(o, "</td></tr>");
        }
        rpt_put(o, "</tbody></table>\n");
    }
    for (size_t i = 0; i < r->n_sections; i++) {
        const struct report_section *s = r->sections[i];
        rpt_put(o, "<section id=\"");
        rpt_put_html(o, s->key);
        rpt_put(o, "\">\n<h2>");
        rpt_put_html(o, s->title);
        rpt_put(o, "</h2>\n");
        for (size_t j = 0; j < s->n_items; j++) {
            const struct item *it = &s->items[j];
            switch (it->kind) {
            case ITEM_PARAGRAPH:
                rpt_put(o, "<p>");
                rpt_put_html(o, it->text);
                rpt_put(o, "</p>\n");
                break;
            case ITEM_BULLET:
                if (j == 0 || s->items[j - 1].kind != ITEM_BULLET)
                    rpt_put(o, "<ul>\n");
                rpt_put(o, "<li>");
                rpt_put_html(o, it->text);
                rpt_put(o, "</li>\n");
                if (j + 1 >= s->n_items || s->items[j + 1].kind != ITEM_BULLET)
                    rpt_put(o, "</ul>\n");
                break;
            case ITEM_PRE:
                rpt_put(o, "<pre>");
                rpt_put_html(o, it->text);
                rpt_put(o, "</pre>\n");
                break;
            case ITEM_TABLE:
                if (rpt_table_in_doc(it->table))
                    html_table(o, it->table);
                break;
            case ITEM_CHART:
                rpt_put(o, "<figure id=\"chart-");
                rpt_put_html(o, it->chart->key);
                rpt_put(o, "\">");
                rpt_svg_chart(o, it->chart);
                rpt_put(o, "<figcaption>");
                rpt_put_html(o, it->chart->title);
                rpt_put(o, "</figcaption></figure>\n");
                break;
            }
        }
        rpt_put(o, "</section>\n");
    }
    rpt_put(o, "</body>\n</html>\n");
}
