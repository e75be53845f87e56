/* report_json: renders a whole report as JSON: title, meta, and per section its text items,
 * tables (columns with units, rows keyed by column key at full precision, NA reasons) and chart
 * data. Non-finite numbers are null. It is a dump of the document, not a probe's results schema
 * (those are written with report/jsonw.h and described in docs/schema.md). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report/report_impl.h"

static void json_doubles(struct rpt_out *o, const double *v, size_t n)
{
    rpt_put(o, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            rpt_put(o, ",");
        rpt_put_json_num(o, v[i]);
    }
    rpt_put(o, "]");
}

static void json_table(struct rpt_out *o, const struct report_table *t)
{
    rpt_put(o, "{\"key\":");
    rpt_put_json_str(o, t->key);
    rpt_put(o, ",\"caption\":");
    if (t->caption)
        rpt_put_json_str(o, t->caption);
    else
        rpt_put(o, "null");
    rpt_putf(o, ",\"in_doc\":%s,\"columns\":[", t->hide_in_doc ? "false" : "true");
    for (int j = 0; j < t->n_cols; j++) {
        const struct col *k = &t->cols[j];
        if (j)
            rpt_put(o, ",");
        rpt_put(o, "{\"key\":");
        rpt_put_json_str(o, k->key);
        rpt_put(o, ",\"label\":");
        rpt_put_json_str(o, k->label);
        rpt_put(o, ",\"unit\":");
        if (k->unit)
            rpt_put_json_str(o, k->unit);
        else
            rpt_put(o, "null");
        rpt_putf(o, ",\"type\":\"%s\",\"precision\":%d}",
                 k->kind == REPORT_COL_NUMBER ? "number" : "text", k->precision);
    }
    rpt_put(o, "],\"rows\":[");
    for (size_t i = 0; i < t->n_rows; i++) {
        if (i)
            rpt_put(o, ",");
        rpt_put(o, "{");
        int n_reasons = 0;
        for (int j = 0; j < t->n_cols; j++) {
            const struct cell *c = &t->rows[i][j];
            if (j)
                rpt_put(o, ",");
            rpt_put_json_str(o, t->cols[j].key);
            rpt_put(o, ":");
            if (t->cols[j].kind == REPORT_COL_TEXT) {
                rpt_put_json_str(o, c->text ? c->text : "");
            } else {
                rpt_put_json_num(o, c->num);
                if (!isfinite(c->num) && c->text)
                    n_reasons++;
            }
        }
        if (n_reasons) {
            rpt_put(o, ",\"na_reasons\":{");
            int first = 1;
            for (int j = 0; j < t->n_cols; j++) {
                const struct cell *c = &t->rows[i][j];
                if (t->cols[j].kind != REPORT_COL_NUMBER || isfinite(c->num) || !c->text)
                    continue;
                if (!first)
                    rpt_put(o, ",");
                first = 0;
                rpt_put_json_str(o, t->cols[j].key);
                rpt_put(o, ":");
                rpt_put_json_str(o, c->text);
            }
            rpt_put(o, "}");
        }
        rpt_put(o, "}");
    }
    rpt_put(o, "]}");
}

static void json_chart(struct rpt_out *o, const struct report_chart *c)
{
    rpt_put(o, "{\"key\":");
    rpt_put_json_str(o, c->key);
    rpt_putf(o, ",\"kind\":\"%s\",\"title\":", c->kind == REPORT_CHART_LINE ? "line" : "bar");
    rpt_put_json_str(o, c->title);
    rpt_put(o, ",\"x_label\":");
    rpt_put_json_str(o, c->x_label);
    rpt_put(o, ",\"x_unit\":");
    if (c->x_unit)
        rpt_put_json_str(o, c->x_unit);
    else
        rpt_put(o, "null");
    rpt_put(o, ",\"y_label\":");
    rpt_put_json_str(o, c->y_label);
    rpt_put(o, ",\"y_unit\":");
    if (c->y_unit)
        rpt_put_json_str(o, c->y_unit);
    else
        rpt_put(o, "null");
    rpt_putf(o, ",\"log_x\":%s,\"y_from_zero\":%s,\"marks\":[", c->log_x ? "true" : "false",
             c->y_from_zero ? "true" : "false");
    for (size_t i = 0; i < c->n_marks; i++) {
        rpt_put(o, i ? ",{\"label\":" : "{\"label\":");
        rpt_put_json_str(o, c->marks[i].label);
        rpt_put(o, ",\"x\":");
        rpt_put_json_num(o, c->marks[i].x);
        rpt_put(o, ",\"y\":");
        rpt_put_json_num(o, c->marks[i].y);
        rpt_put(o, "}");
    }
    rpt_put(o, "]");
    if (c->n_cats) {
        rpt_put(o, ",\"categories\":[");
        for (size_t i = 0; i < c->n_cats; i++) {
            if (i)
                rpt_put(o, ",");
            rpt_put_json_str(o, c->cats[i]);
        }
        rpt_put(o, "]");
    }
    rpt_put(o, ",\"series\":[");
    for (size_t k = 0; k < c->n_series; k++) {
        const struct series *s = &c->series[k];
        if (k)
            rpt_put(o, ",");
        rpt_put(o, "{\"name\":");
        rpt_put_json_str(o, s->name);
        if (s->lo) {
            rpt_put(o, ",\"lo\":");
            json_doubles(o, s->lo, s->n);
            rpt_put(o, ",\"hi\":");
            json_doubles(o, s->y, s->n);
        } else {
            if (s->x) {
                rpt_put(o, ",\"x\":");
                json_doubles(o, s->x, s->n);
            }
            rpt_put(o, ",\"y\":");
            json_doubles(o, s->y, s->n);
        }
        rpt_put(o, "}");
    }
    rpt_put(o, "]}");
}

void rpt_render_json(struct rpt_out *o, const struct report *r)
{
    rpt_put(o, "{\"title\":");
    rpt_put_json_str(o, r->title);
    rpt_put(o, ",\n\"meta\":{");
    for (size_t i = 0; i < r->n_meta; i++) {
        if (i)
            rpt_put(o, ",");
        rpt_put_json_str(o, r->meta[i].key);
        rpt_put(o, ":");
        rpt_put_json_str(o, r->meta[i].value);
    }
    rpt_put(o, "},\n\"sections\":[");
    for (size_t i = 0; i < r->n_sections; i++) {
        const struct report_section *s = r->sections[i];
        rpt_put(o, i ? ",\n{" : "\n{");
        rpt_put(o, "\"key\":");
        rpt_put_json_str(o, s->key);
        rpt_put(o, ",\"title\":");
        rpt_put_json_str(o, s->title);
        rpt_put(o, ",\"text\":[");
        int first = 1;
        for (size_t j = 0; j < s->n_items; j++) {
            const struct item *it = &s->items[j];
            if (it->kind != ITEM_PARAGRAPH && it->kind != ITEM_BULLET && it->kind != ITEM_PRE)
                continue;
            if (!first)
                rpt_put(o, ",");
            first = 0;
            rpt_putf(o, "{\"kind\":\"%s\",\"text\":",
                     it->kind == ITEM_PARAGRAPH ? "paragraph"
                     : it->kind == ITEM_BULLET  ? "bullet"
                                                : "pre");
            rpt_put_json_str(o, it->text);
            rpt_put(o, "}");
        }
        rpt_put(o, "],\"tables\":[");
        first = 1;
        for (size_t j = 0; j < s->n_items; j++) {
            if (s->items[j].kind != ITEM_TABLE)
                continue;
            if (!first)
                rpt_put(o, ",");
            first = 0;
            json_table(o, s->items[j].table);
        }
        rpt_put(o, "],\"charts\":[");
        first = 1;
        for (size_t j = 0; j < s->n_items; j++) {
            if (s->items[j].kind != ITEM_CHART)
                continue;
            if (!first)
                rpt_put(o, ",");
            first = 0;
            json_chart(o, s->items[j].chart);
        }
        rpt_put(o, "]}");
    }
    rpt_put(o, "\n]}\n");
}
