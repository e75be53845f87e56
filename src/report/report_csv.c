/* report_csv: renders one table of a report as RFC 4180 CSV: a header of column keys, CRLF line
 * ends, quoting only where needed, missing numbers as empty fields. Every column, whether or not
 * the table is shown in the documents. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report/report_impl.h"

static void csv_field(struct rpt_out *o, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        rpt_put(o, s);
        return;
    }
    rpt_put(o, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            rpt_put(o, "\"\"");
        else
            rpt_put_n(o, p, 1);
    }
    rpt_put(o, "\"");
}

enum report_status report_render_csv(const struct report *r, const char *table_key, struct buf *out)
{
    const struct report_table *t = report_find_table(r, table_key);
    if (!t)
        return REPORT_ERR_NOT_FOUND;
    struct rpt_out o = {out, 0};
    for (int j = 0; j < t->n_cols; j++) {
        if (j)
            rpt_put(&o, ",");
        csv_field(&o, t->cols[j].key);
    }
    rpt_put(&o, "\r\n");
    for (size_t i = 0; i < t->n_rows; i++) {
        for (int j = 0; j < t->n_cols; j++) {
            const struct cell *c = &t->rows[i][j];
            if (j)
                rpt_put(&o, ",");
            if (t->cols[j].kind == REPORT_COL_TEXT) {
                csv_field(&o, c->text ? c->text : "");
            } else if (isfinite(c->num)) {
                char tmp[64];
                rpt_fmt_fixed(c->num, t->cols[j].precision, tmp, sizeof tmp);
                rpt_put(&o, tmp);
            }
        }
        rpt_put(&o, "\r\n");
    }
    return o.err ? REPORT_ERR_CAP : REPORT_OK;
}
