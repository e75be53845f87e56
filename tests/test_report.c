/* test_report: every renderer (Markdown, HTML+SVG, JSON, CSV) on a report using every feature;
 * escaping per format; NAN cells with and without reasons; SVG well-formedness (balanced tags,
 * valid entities, key elements); nice tick values; CSV quoting; caps and file output; axes that
 * keep to the data; chart marks; tables hidden from the documents. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report/report.h"
#include "test.h"
#include "util/buf.h"
#include "util/json.h"

#define NASTY "a|b <tag> & \"q\" 's' *x* _y_ `z` [l](u)\nline2\\"

static struct report *full_report(void)
{
    struct report *r = report_new("Report <one> & \"two\"");
    report_meta(r, "model", "%s", "tiny.gguf");
    report_meta(r, "argv", "%s", "serve --port 0 | tee");
    report_meta(r, "model", "%s", "tiny2.gguf"); /* replaces */
    report_set_html_name(r, "my report.html");

    struct report_section *s = report_section_add(r, "runs", "Runs & results");
    report_paragraph(s, "Cold TTFT was %.1f ms.", 123.456);
    report_paragraph(s, "%s", NASTY);
    report_paragraph(s, "# not a heading");
    report_paragraph(s, "1. not a list");
    report_paragraph(s, "2.5 ms is plain text");
    report_bullet(s, "first %d", 1);
    report_bullet(s, "- second");
    report_pre(s, "cmd --flag ```x``` <raw>");

    struct report_table *t = report_table_add(s, "runs", "Requests | all");
    CHECK_EQ_INT(report_table_col(t, "run", "Run", NULL, REPORT_COL_TEXT, 0), 0);
    CHECK_EQ_INT(report_table_col(t, "ttft_ms", "TTFT", "ms", REPORT_COL_NUMBER, 2), 1);
    CHECK_EQ_INT(report_table_col(t, "gpu_mem_mib", "GPU memory", "MiB", REPORT_COL_NUMBER, 0), 2);
    report_table_col_na_text(t, 2, "none");
    report_table_row_add(t);
    report_row_text(t, "cold_1");
    report_row_num(t, 12.345);
    report_row_na(t, "no GPU");
    report_table_row_add(t);
    report_row_text(t, "%s", "w,a\"r|m\n2");
    report_row_num(t, NAN);
    report_row_num(t, NAN); /* column default "none" */
    size_t row = report_table_row_add(t);
    report_cell_text(t, row, 0, "warm_%d", 3);
    report_cell_num(t, row, 1, -0.0001);
    report_cell_num(t, row, 2, 2048);
    CHECK_EQ_INT(report_table_n_rows(t), 3);
    CHECK_EQ_INT(report_table_n_cols(t), 3);

    struct report_section *s2 = report_section_add(r, "charts", "Charts");
    struct report_chart *c = report_chart_add(s2, REPORT_CHART_LINE, "ttft_line", "TTFT <per> run",
                                              "run", NULL, "TTFT", "ms");
    double x[] = {1, 2, 3, 4, 5}, y[] = {3, 97, NAN, 40, 12}, y2[] = {5, 6, 7, 8, 9};
    report_chart_series(c, "warm & cold", x, y, 5);
    report_chart_series(c, "other", NULL, y2, 5);

    struct report_chart *b = report_chart_add(s2, REPORT_CHART_BAR, "timeline", "Launch timeline",
                                              "phase", NULL, "time since launch", "s");
    const char *cats[] = {"weights load", "kv <alloc>", "missing"};
    double lo[] = {0.0, 1.5, NAN}, hi[] = {1.5, 2.25, NAN};
    report_chart_categories(b, cats, 3);
    report_chart_series_range(b, "", lo, hi, 3);

    struct report_chart *b2 = report_chart_add(s2, REPORT_CHART_BAR, "bars", "Plain bars", "level",
                                               NULL, "rate", "tok/s");
    double bx[] = {1, 8}, by1[] = {10, 80}, by2[] = {20, 60};
    report_chart_series(b2, "a", bx, by1, 2);
    report_chart_series(b2, "b", bx, by2, 2);

    struct report_chart *lg =
        report_chart_add(s2, REPORT_CHART_LINE, "logx", "Log x", "conc", NULL, "lat", "ms");
    report_chart_log_x(lg, 1);
    double lx[] = {0, 1, 10, 1000}, ly[] = {1, 2, 3, 4};
    report_chart_series(lg, "s", lx, ly, 4);

    report_chart_add(s2, REPORT_CHART_LINE, "empty", "Empty chart", "x", NULL, "y", NULL);
    return r;
}

static char *render(const struct report *r, enum report_format f)
{
    struct buf b;
    buf_init(&b, 1024, 1 << 24);
    CHECK_EQ_INT(report_render(r, f, &b), REPORT_OK);
    return buf_steal(&b);
}

static void test_markdown(void)
{
    struct report *r = full_report();
    char *md = render(r, REPORT_FORMAT_MARKDOWN);
    CHECK(strncmp(md, "# Report \\<one\\> \\& \"two\"\n", 26) == 0);
    CHECK(strstr(md, "- **model**: tiny2.gguf\n"));
    CHECK(!strstr(md, "tiny.gguf"));
    CHECK(strstr(md, "- **argv**: serve --port 0 \\| tee\n"));
    CHECK(strstr(md, "## Runs \\& results\n"));
    CHECK(strstr(md, "Cold TTFT was 123.5 ms.\n"));
    CHECK(
        strstr(md, "a\\|b \\<tag\\> \\& \"q\" 's' \\*x\\* \\_y\\_ \\`z\\` \\[l\\](u) line2\\\\\n"));
    CHECK(strstr(md, "\n\\# not a heading\n"));
    CHECK(strstr(md, "\n1\\. not a list\n"));
    CHECK(strstr(md, "\n2.5 ms is plain text\n"));
    CHECK(strstr(md, "- first 1\n- \\- second\n\n"));
    /* pre block: fence longer than any backtick run inside */
    CHECK(strstr(md, "\n````\ncmd --flag ```x``` <raw>\n````\n"));
    /* table */
    CHECK(strstr(md, "*Requests \\| all*\n"));
    CHECK(strstr(md, "| Run | TTFT (ms) | GPU memory (MiB) |\n|---|---:|---:|\n"));
    CHECK(strstr(md, "| cold\\_1 | 12.35 | no GPU |\n"));
    CHECK(strstr(md, "| w,a\"r\\|m 2 | n/a | none |\n"));
    CHECK(strstr(md, "| warm\\_3 | 0.00 | 2048 |\n")); /* no "-0.00" */
    /* charts as text */
    CHECK(
        strstr(md, "**Chart: TTFT \\<per\\> run** (drawn in [my report.html](my%20report.html))"));
    CHECK(strstr(md, "```text\n"));
    CHECK(strstr(md, "\xE2\x96\x81")); /* sparkline lowest level */
    CHECK(strstr(md, "\xE2\x96\x88")); /* full block */
    CHECK(strstr(md, "TTFT: 3.00 .. 97.0 ms"));
    CHECK(strstr(md, "weights load  "));
    CHECK(strstr(md, "1.50 s (0 .. 1.50)"));
    CHECK(strstr(md, "0.750 s (1.50 .. 2.25)"));
    CHECK(strstr(md, "missing       n/a\n"));
    CHECK(strstr(md, "1 / a  "));
    CHECK(strstr(md, "80.0 tok/s"));
    CHECK(strstr(md, "**Chart: Empty chart**"));
    CHECK(strstr(md, "no data\n"));
    free(md);
    report_free(r);
}

/* Checks that s[0..n) is well-formed XML-ish markup: balanced tags, quoted attributes,
 * only known entities. Returns 0 when fine, else prints why. */
static int xml_check(const char *s, size_t n)
{
    const char *stack[256];
    size_t lens[256];
    int depth = 0;
    size_t i = 0;
    while (i < n) {
        if (s[i] == '&') {
            const char *ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};
            int ok = 0;
            for (size_t k = 0; k < 5; k++)
                if (!strncmp(s + i, ents[k], strlen(ents[k])))
                    ok = 1;
            if (!ok) {
                fprintf(stderr, "bad entity at %zu: %.12s\n", i, s + i);
                return -1;
            }
            i++;
            continue;
        }
        if (s[i] == '>') {
            fprintf(stderr, "stray > at %zu\n", i);
            return -1;
        }
        if (s[i] != '<') {
            i++;
            continue;
        }
        size_t j = i + 1;
        int closing = 0;
        if (j < n && s[j] == '/') {
            closing = 1;
            j++;
        }
        size_t name0 = j;
        while (j < n && (s[j] == '-' || s[j] == ':' || (s[j] >= 'a' && s[j] <= 'z') ||
                         (s[j] >= 'A' && s[j] <= 'Z') || (s[j] >= '0' && s[j] <= '9')))
            j++;
        size_t name_len = j - name0;
        if (!name_len) {
            fprintf(stderr, "bad tag at %zu\n", i);
            return -1;
        }
        int in_quote = 0;
        while (j < n && (in_quote || s[j] != '>')) {
            if (s[j] == '"')
                in_quote = !in_quote;
            if (s[j] == '<') {
                fprintf(stderr, "< inside tag at %zu\n", j);
                return -1;
            }
            j++;
        }
        if (j >= n) {
            fprintf(stderr, "unterminated tag at %zu\n", i);
            return -1;
        }
        int self = s[j - 1] == '/';
        if (closing) {
            if (depth == 0 || lens[depth - 1] != name_len ||
                strncmp(stack[depth - 1], s + name0, name_len)) {
                fprintf(stderr, "mismatched </%.*s> at %zu\n", (int)name_len, s + name0, i);
                return -1;
            }
            depth--;
        } else if (!self) {
            if (depth == 256)
                return -1;
            stack[depth] = s + name0;
            lens[depth] = name_len;
            depth++;
        }
        i = j + 1;
    }
    if (depth) {
        fprintf(stderr, "%d unclosed tags (innermost %.*s)\n", depth, (int)lens[depth - 1],
                stack[depth - 1]);
        return -1;
    }
    return 0;
}

static size_t count_str(const char *h, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(h, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_html(void)
{
    struct report *r = full_report();
    char *html = render(r, REPORT_FORMAT_HTML);
    CHECK(strncmp(html, "<!DOCTYPE html>", 15) == 0);
    CHECK(strstr(html, "<meta charset=\"utf-8\">"));
    CHECK(strstr(html, "<title>Report &lt;one&gt; &amp; &quot;two&quot;</title>"));
    CHECK(strstr(html, "<style>"));
    /* self-contained: no scripts, no external resources */
    CHECK(!strstr(html, "<script"));
    CHECK(!strstr(html, "src="));
    CHECK(!strstr(html, "href="));
    CHECK(!strstr(html, "<link"));
    CHECK(!strstr(html, "url("));
    CHECK_EQ_INT(count_str(html, "http"), count_str(html, "xmlns=\"http://www.w3.org/2000/svg\""));
    CHECK(strstr(html, "<th>model</th><td>tiny2.gguf</td>"));
    CHECK(strstr(html, "<p>a|b &lt;tag&gt; &amp; &quot;q&quot; &#39;s&#39; *x* _y_ `z` [l](u)\n"
                       "line2\\</p>"));
    CHECK(strstr(html, "<ul>\n<li>first 1</li>\n<li>- second</li>\n</ul>"));
    CHECK(strstr(html, "<pre>cmd --flag ```x``` &lt;raw&gt;</pre>"));
    CHECK(strstr(html, "<caption>Requests | all</caption>"));
    CHECK(strstr(html, "<th>TTFT (ms)</th>"));
    CHECK(strstr(html,
                 "<td>cold_1</td><td class=\"num\">12.35</td><td class=\"num na\">no GPU</td>"));
    CHECK(strstr(html, "<td class=\"num na\">n/a</td><td class=\"num na\">none</td>"));
    /* whole body (after the head) is well-formed markup once void <meta> tags are skipped */
    const char *body = strstr(html, "<body>");
    const char *end = strstr(html, "</body>");
    CHECK(body && end);
    if (body && end)
        CHECK(xml_check(body, (size_t)(end - body) + 7) == 0);
    /* each SVG on its own */
    size_t n_svg = 0;
    for (const char *p = strstr(html, "<svg "); p; p = strstr(p + 1, "<svg ")) {
        const char *q = strstr(p, "</svg>");
        CHECK(q != NULL);
        if (!q)
            break;
        CHECK(xml_check(p, (size_t)(q - p) + 6) == 0);
        n_svg++;
    }
    CHECK_EQ_INT(n_svg, 5);
    /* key elements */
    CHECK(strstr(html, "<polyline"));
    CHECK(count_str(html, "<circle") == 4 + 5 + 3); /* NAN point skipped; x<=0 skipped on log */
    CHECK(strstr(html, "<title>TTFT &lt;per&gt; run</title>"));
    CHECK(strstr(html, ">TTFT (ms)</text>"));
    CHECK(strstr(html, ">warm &amp; cold</text>")); /* legend */
    CHECK(strstr(html, ">weights load</text>"));
    CHECK(strstr(html, ">kv &lt;alloc&gt;</text>"));
    CHECK(strstr(html, "<title>kv &lt;alloc&gt;: 1.50 to 2.25 (0.750) s</title>"));
    CHECK(strstr(html, ">time since launch (s)</text>"));
    CHECK(strstr(html, "no data</text>"));
    CHECK(strstr(html, "1 point(s) with x &lt;= 0 not drawn"));
    CHECK(strstr(html, "[log scale]"));
    free(html);
    report_free(r);
}

/* Tick labels: the y axis of 3..97 runs 0..100 in steps of 20; log ticks are powers of ten. */
static void test_ticks(void)
{
    struct report *r = report_new("ticks");
    struct report_section *s = report_section_add(r, "s", "S");
    struct report_chart *c = report_chart_add(s, REPORT_CHART_LINE, "c", "c", "x", NULL, "y", NULL);
    double y[] = {3, 97};
    report_chart_series(c, "", NULL, y, 2);
    struct report_chart *l = report_chart_add(s, REPORT_CHART_LINE, "l", "l", "x", NULL, "y", NULL);
    report_chart_log_x(l, 1);
    double lx[] = {1, 1000}, ly[] = {0.25, 0.5};
    report_chart_series(l, "", lx, ly, 2);
    struct report_chart *k = report_chart_add(s, REPORT_CHART_LINE, "k", "k", "x", NULL, "y", NULL);
    double ky[] = {0, 45000};
    report_chart_series(k, "", NULL, ky, 2);
    char *html = render(r, REPORT_FORMAT_HTML);
    const char *c1 = strstr(html, "<svg ");
    const char *c2 = c1 ? strstr(c1 + 1, "<svg ") : NULL;
    const char *c3 = c2 ? strstr(c2 + 1, "<svg ") : NULL;
    CHECK(c1 && c2 && c3);
    if (c1 && c2 && c3) {
        char *a = xstrndup(c1, (size_t)(c2 - c1));
        const char *yt[] = {">0</text>",  ">20</text>", ">40</text>",
                            ">60</text>", ">80</text>", ">100</text>"};
        for (size_t i = 0; i < 6; i++)
            CHECK_MSG(strstr(a, yt[i]), "%s", yt[i]);
        CHECK(!strstr(a, ">120</text>"));
        free(a);
        char *b = xstrndup(c2, (size_t)(c3 - c2));
        const char *xt[] = {">1</text>",    ">10</text>",  ">100</text>",
                            ">1000</text>", ">0.1</text>", ">0.5</text>"};
        for (size_t i = 0; i < 6; i++)
            CHECK_MSG(strstr(b, xt[i]), "%s", xt[i]);
        free(b);
        CHECK(strstr(c3, ">40k</text>"));
        CHECK(strstr(c3, ">0k</text>") || strstr(c3, ">0</text>"));
    }
    free(html);
    report_free(r);
}

static void test_json(void)
{
    struct report *r = full_report();
    char *js = render(r, REPORT_FORMAT_JSON);
    char err[128];
    struct json *root = json_parse(js, strlen(js), err, sizeof err);
    CHECK_MSG(root != NULL, "%s", err);
    if (!root) {
        free(js);
        report_free(r);
        return;
    }
    CHECK_EQ_STR(json_str(json_get(root, "title"), NULL), "Report <one> & \"two\"");
    CHECK_EQ_STR(json_str(json_get(json_get(root, "meta"), "model"), NULL), "tiny2.gguf");
    const struct json *secs = json_get(root, "sections");
    CHECK_EQ_INT(json_len(secs), 2);
    const struct json *s0 = json_at(secs, 0);
    CHECK_EQ_STR(json_str(json_get(s0, "key"), NULL), "runs");
    const struct json *text = json_get(s0, "text");
    CHECK_EQ_INT(json_len(text), 8);
    CHECK_EQ_STR(json_str(json_get(json_at(text, 1), "text"), NULL), NASTY);
    CHECK_EQ_STR(json_str(json_get(json_at(text, 5), "kind"), NULL), "bullet");
    CHECK_EQ_STR(json_str(json_get(json_at(text, 7), "kind"), NULL), "pre");
    const struct json *t = json_at(json_get(s0, "tables"), 0);
    CHECK_EQ_STR(json_str(json_get(t, "key"), NULL), "runs");
    const struct json *cols = json_get(t, "columns");
    CHECK_EQ_INT(json_len(cols), 3);
    CHECK_EQ_STR(json_str(json_get(json_at(cols, 1), "unit"), NULL), "ms");
    CHECK_EQ_STR(json_str(json_get(json_at(cols, 1), "type"), NULL), "number");
    CHECK(json_type_of(json_get(json_at(cols, 0), "unit")) == JSON_TYPE_NULL);
    const struct json *rows = json_get(t, "rows");
    CHECK_EQ_INT(json_len(rows), 3);
    double v = 0;
    CHECK(json_num(json_get(json_at(rows, 0), "ttft_ms"), &v) == 0);
    CHECK_NEAR(v, 12.345, 1e-9); /* full precision, not the display precision */
    CHECK(json_type_of(json_get(json_at(rows, 0), "gpu_mem_mib")) == JSON_TYPE_NULL);
    CHECK_EQ_STR(json_str(json_get(json_get(json_at(rows, 0), "na_reasons"), "gpu_mem_mib"), NULL),
                 "no GPU");
    CHECK_EQ_STR(json_str(json_get(json_at(rows, 1), "run"), NULL), "w,a\"r|m\n2");
    CHECK(json_type_of(json_get(json_at(rows, 1), "ttft_ms")) == JSON_TYPE_NULL);
    CHECK(json_get(json_at(rows, 1), "na_reasons") == NULL);
    const struct json *charts = json_get(json_at(secs, 1), "charts");
    CHECK_EQ_INT(json_len(charts), 5);
    const struct json *c0 = json_at(charts, 0);
    CHECK_EQ_STR(json_str(json_get(c0, "kind"), NULL), "line");
    CHECK_EQ_STR(json_str(json_get(c0, "y_unit"), NULL), "ms");
    const struct json *ser = json_get(c0, "series");
    CHECK_EQ_INT(json_len(ser), 2);
    CHECK(json_type_of(json_at(json_get(json_at(ser, 0), "y"), 2)) == JSON_TYPE_NULL);
    CHECK(json_get(json_at(ser, 1), "x") == NULL);
    const struct json *c1 = json_at(charts, 1);
    CHECK_EQ_STR(json_str(json_get(c1, "kind"), NULL), "bar");
    CHECK_EQ_STR(json_str(json_at(json_get(c1, "categories"), 1), NULL), "kv <alloc>");
    CHECK(json_num(json_at(json_get(json_at(json_get(c1, "series"), 0), "hi"), 1), &v) == 0);
    CHECK_NEAR(v, 2.25, 1e-12);
    int lb = 0;
    CHECK(json_bool(json_get(json_at(charts, 3), "log_x"), &lb) == 0 && lb == 1);
    json_free(root);
    free(js);
    report_free(r);
}

static void test_csv(void)
{
    struct report *r = full_report();
    struct buf b;
    buf_init(&b, 64, 1 << 20);
    CHECK_EQ_INT(report_render_csv(r, "runs", &b), REPORT_OK);
    CHECK_EQ_STR(b.data, "run,ttft_ms,gpu_mem_mib\r\n"
                         "cold_1,12.35,\r\n"
                         "\"w,a\"\"r|m\n2\",,\r\n"
                         "warm_3,0.00,2048\r\n");
    buf_reset(&b);
    CHECK_EQ_INT(report_render_csv(r, "nope", &b), REPORT_ERR_NOT_FOUND);
    CHECK(report_find_table(r, "runs") != NULL);
    CHECK(report_find_table(r, "nope") == NULL);
    buf_free(&b);

    /* quoting cases one by one */
    struct report *q = report_new("q");
    struct report_table *t = report_table_add(report_section_add(q, "s", "S"), "t", NULL);
    report_table_col(t, "text,col", "T", NULL, REPORT_COL_TEXT, 0);
    const char *in[] = {"plain", "has,comma", "has\"quote", "cr\rhere", "", " spaced "};
    const char *want[] = {"plain", "\"has,comma\"", "\"has\"\"quote\"", "\"cr\rhere\"",
                          "",      " spaced "};
    for (size_t i = 0; i < 6; i++) {
        report_table_row_add(t);
        report_row_text(t, "%s", in[i]);
    }
    buf_init(&b, 64, 1 << 20);
    CHECK_EQ_INT(report_render_csv(q, "t", &b), REPORT_OK);
    struct buf w;
    buf_init(&w, 64, 1 << 20);
    buf_puts(&w, "\"text,col\"\r\n");
    for (size_t i = 0; i < 6; i++)
        buf_printf(&w, "%s\r\n", want[i]);
    CHECK_EQ_STR(b.data, w.data);
    buf_free(&w);
    buf_free(&b);
    report_free(q);
    report_free(r);
}

static void test_escaping_edge(void)
{
    struct report *r = report_new("t");
    struct report_section *s = report_section_add(r, "s", "S");
    report_paragraph(s, "bad utf8 \xff\xfe end, ctl \x01 x, ok \xC3\xA9");
    report_pre(s, "");
    struct report_table *t = report_table_add(s, "t", NULL);
    report_table_col(t, "v", "V", NULL, REPORT_COL_NUMBER, 1);
    report_table_row_add(t);
    report_row_num(t, INFINITY);
    report_table_row_add(t); /* never filled: missing */
    char *html = render(r, REPORT_FORMAT_HTML);
    CHECK(strstr(html, "bad utf8 \xEF\xBF\xBD\xEF\xBF\xBD end, ctl   x, ok \xC3\xA9"));
    CHECK(count_str(html, "<td class=\"num na\">n/a</td>") == 2);
    char *md = render(r, REPORT_FORMAT_MARKDOWN);
    CHECK(strstr(md, "bad utf8 \xEF\xBF\xBD\xEF\xBF\xBD end"));
    CHECK(strstr(md, "```\n\n```\n")); /* empty pre still a closed block */
    char *js = render(r, REPORT_FORMAT_JSON);
    char err[128];
    struct json *root = json_parse(js, strlen(js), err, sizeof err);
    CHECK_MSG(root != NULL, "%s", err);
    json_free(root);
    free(js);
    free(md);
    free(html);
    report_free(r);
}

static void test_cap_and_files(void)
{
    struct report *r = full_report();
    struct buf b;
    buf_init(&b, 16, 200);
    CHECK_EQ_INT(report_render(r, REPORT_FORMAT_HTML, &b), REPORT_ERR_CAP);
    CHECK(b.len <= 200);
    buf_free(&b);
    buf_init(&b, 16, 10);
    CHECK_EQ_INT(report_render_csv(r, "runs", &b), REPORT_ERR_CAP);
    buf_free(&b);

    char dir[] = "/tmp/test_report_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], err[256] = "";
    snprintf(path, sizeof path, "%s/r.md", dir);
    CHECK_EQ_INT(report_write_file(r, REPORT_FORMAT_MARKDOWN, path, err, sizeof err), REPORT_OK);
    size_t len = 0;
    char *got = file_read_all(path, 1 << 24, &len);
    char *want = render(r, REPORT_FORMAT_MARKDOWN);
    CHECK(got && want && len == strlen(want) && !memcmp(got, want, len));
    free(got);
    free(want);
    unlink(path);
    snprintf(path, sizeof path, "%s/r.csv", dir);
    CHECK_EQ_INT(report_write_csv(r, "runs", path, err, sizeof err), REPORT_OK);
    got = file_read_all(path, 1 << 20, &len);
    CHECK(got && !strncmp(got, "run,ttft_ms,gpu_mem_mib\r\n", 25));
    free(got);
    unlink(path);
    CHECK_EQ_INT(report_write_csv(r, "nope", path, err, sizeof err), REPORT_ERR_NOT_FOUND);
    snprintf(path, sizeof path, "%s/no/such/dir/r.html", dir);
    CHECK_EQ_INT(report_write_file(r, REPORT_FORMAT_HTML, path, err, sizeof err), REPORT_ERR_IO);
    CHECK(strstr(err, "No such file"));
    rmdir(dir);
    CHECK_EQ_STR(report_status_str(REPORT_ERR_CAP), "output cap reached");
    CHECK_EQ_STR(report_format_str(REPORT_FORMAT_JSON), "json");
    report_free(r);
    report_free(NULL);
}

static void test_misuse_ignored(void)
{
    struct report *r = report_new("m");
    struct report_table *t = report_table_add(report_section_add(r, "s", "S"), "t", NULL);
    report_table_col(t, "a", "A", NULL, REPORT_COL_TEXT, 0);
    report_row_text(t, "no row yet"); /* logged, ignored */
    report_table_row_add(t);
    CHECK_EQ_INT(report_table_col(t, "late", "L", NULL, REPORT_COL_NUMBER, 0), -1);
    report_row_num(t, 1.0);        /* wrong kind: ignored */
    report_row_text(t, "x");       /* consumed slot above? no: kind mismatch still advances */
    report_cell_num(t, 9, 0, 1.0); /* out of range */
    report_cell_text(t, 0, 0, "ok");
    struct buf b;
    buf_init(&b, 64, 1 << 20);
    CHECK_EQ_INT(report_render_csv(r, "t", &b), REPORT_OK);
    CHECK_EQ_STR(b.data, "a\r\nok\r\n");
    buf_free(&b);
    report_free(r);
}

/* Numbers of the tick labels in the SVG's tick-labels group; anchor "end" selects the y axis,
 * "middle" the x axis. Returns how many were found (at most max). */
static size_t tick_values(const char *svg, const char *anchor, double *out, size_t max)
{
    const char *g = strstr(svg, "<g class=\"tick-labels\"");
    const char *end = g ? strstr(g, "</g>") : NULL;
    char pat[64];
    snprintf(pat, sizeof pat, "text-anchor=\"%s\">", anchor);
    size_t n = 0;
    for (const char *p = g ? strstr(g, pat) : NULL; p && p < end && n < max; p = strstr(p + 1, pat))
        out[n++] = strtod(p + strlen(pat), NULL);
    return n;
}

/* Axes keep to the data: y data 900..1000 is not drawn from 0, and every tick lies within the
 * data's range padded by 5% of its span; report_chart_y_from_zero brings 0 back. */
static void test_axis_range(void)
{
    struct report *r = report_new("axes");
    struct report_section *s = report_section_add(r, "s", "S");
    double x[] = {100, 150, 200}, y[] = {900, 1000, 950};
    struct report_chart *c = report_chart_add(s, REPORT_CHART_LINE, "c", "c", "x", NULL, "y", NULL);
    report_chart_series(c, "", x, y, 3);
    struct report_chart *z = report_chart_add(s, REPORT_CHART_LINE, "z", "z", "x", NULL, "y", NULL);
    report_chart_series(z, "", x, y, 3);
    report_chart_y_from_zero(z, 1);
    char *html = render(r, REPORT_FORMAT_HTML);
    const char *c1 = strstr(html, "<svg ");
    const char *c2 = c1 ? strstr(c1 + 1, "<svg ") : NULL;
    CHECK(c1 && c2);
    if (c1 && c2) {
        char *a = xstrndup(c1, (size_t)(c2 - c1));
        double v[64];
        size_t ny = tick_values(a, "end", v, 64);
        CHECK_MSG(ny >= 3, "%zu y ticks", ny);
        for (size_t i = 0; i < ny; i++)
            CHECK_MSG(v[i] >= 895 && v[i] <= 1005, "y tick %g outside 895..1005", v[i]);
        CHECK(!strstr(a, ">0</text>"));
        size_t nx = tick_values(a, "middle", v, 64);
        CHECK_MSG(nx >= 3, "%zu x ticks", nx);
        for (size_t i = 0; i < nx; i++)
            CHECK_MSG(v[i] >= 95 && v[i] <= 205, "x tick %g outside 95..205", v[i]);
        free(a);
        size_t nz = tick_values(c2, "end", v, 64);
        CHECK(nz >= 3 && v[0] == 0);
        CHECK_MSG(nz >= 1 && v[nz - 1] >= 1000 && v[nz - 1] <= 1050, "top tick %g",
                  nz ? v[nz - 1] : NAN);
    }
    free(html);
    report_free(r);
}

/* Marks: drawn in SVG as a distinct symbol with the label, listed in Markdown, kept in JSON;
 * a mark outside the series' range widens the axes so it stays on the plot. */
static void test_chart_marks(void)
{
    struct report *r = report_new("marks");
    struct report_section *s = report_section_add(r, "s", "S");
    struct report_chart *c = report_chart_add(s, REPORT_CHART_LINE, "tl", "Throughput vs latency",
                                              "throughput", "tok/s", "p95 latency", "ms");
    double x[] = {10, 20, 40, 60}, y[] = {110, 120, 180, 400};
    report_chart_series(c, "levels", x, y, 4);
    report_chart_mark(c, 40, 180, "knee");
    report_chart_mark(c, 20, 120, "sweet <spot>");
    report_chart_mark(c, 80, 500, "beyond");
    report_chart_mark(c, NAN, 1, "undrawn");
    char *html = render(r, REPORT_FORMAT_HTML);
    const char *svg = strstr(html, "<svg ");
    CHECK(svg && xml_check(svg, (size_t)(strstr(svg, "</svg>") + 6 - svg)) == 0);
    CHECK(strstr(html, "<g class=\"marks\""));
    CHECK_EQ_INT(count_str(html, "<path d="), 3); /* NAN mark not drawn */
    CHECK_EQ_INT(count_str(html, "<circle"), 4);  /* marks are not series points */
    CHECK(strstr(html, ">knee</text>"));
    CHECK(strstr(html, ">sweet &lt;spot&gt;</text>"));
    CHECK(strstr(html, "<title>knee: 40.0, 180 ms</title>"));
    CHECK(!strstr(html, ">undrawn</text>"));
    double v[64];
    size_t nx = tick_values(svg, "middle", v, 64);
    CHECK(nx >= 2 && v[nx - 1] >= 80); /* the mark at x=80 is inside the axis */
    char *md = render(r, REPORT_FORMAT_MARKDOWN);
    CHECK(strstr(md, "\xE2\x97\x86 knee: throughput = 40.0 tok/s, p95 latency = 180 ms\n"));
    CHECK(strstr(md, "\xE2\x97\x86 sweet <spot>: throughput = 20.0 tok/s"));
    CHECK(strstr(md, "\xE2\x97\x86 undrawn: throughput = n/a, p95 latency = 1.00 ms\n"));
    char *js = render(r, REPORT_FORMAT_JSON);
    char err[128];
    struct json *root = json_parse(js, strlen(js), err, sizeof err);
    CHECK_MSG(root != NULL, "%s", err);
    const struct json *marks =
        json_get(json_at(json_get(json_at(json_get(root, "sections"), 0), "charts"), 0), "marks");
    CHECK_EQ_INT(json_len(marks), 4);
    CHECK_EQ_STR(json_str(json_get(json_at(marks, 0), "label"), NULL), "knee");
    double mx = 0;
    CHECK(json_num(json_get(json_at(marks, 0), "x"), &mx) == 0 && mx == 40);
    CHECK(json_type_of(json_get(json_at(marks, 3), "x")) == JSON_TYPE_NULL);
    json_free(root);
    free(js);
    free(md);
    free(html);
    report_free(r);
}

/* A wide table hidden from the documents stays whole in CSV and JSON; its narrow splits show. */
static void test_table_hide_in_doc(void)
{
    struct report *r = report_new("wide");
    struct report_section *s = report_section_add(r, "s", "S");
    struct report_table *w = report_table_add(s, "wide", "All columns");
    struct report_table *n = report_table_add(s, "narrow", "Some columns");
    char key[32], label[32];
    for (int j = 0; j < 12; j++) {
        snprintf(key, sizeof key, "c%d_ms", j);
        snprintf(label, sizeof label, "C%d", j);
        report_table_col(w, key, label, "ms", REPORT_COL_NUMBER, 0);
        if (j < 3)
            report_table_col(n, key, label, "ms", REPORT_COL_NUMBER, 0);
    }
    report_table_hide_in_doc(w, 1);
    report_table_row_add(w);
    report_table_row_add(n);
    for (int j = 0; j < 12; j++) {
        report_row_num(w, j);
        if (j < 3)
            report_row_num(n, j);
    }
    char *md = render(r, REPORT_FORMAT_MARKDOWN);
    char *html = render(r, REPORT_FORMAT_HTML);
    CHECK(!strstr(md, "All columns") && !strstr(md, "C11"));
    CHECK(strstr(md, "*Some columns*\n\n| C0 (ms) | C1 (ms) | C2 (ms) |\n"));
    CHECK(!strstr(html, "table-wide") && !strstr(html, "C11"));
    CHECK(strstr(html, "<table id=\"table-narrow\">"));
    struct buf b;
    buf_init(&b, 64, 1 << 20);
    CHECK_EQ_INT(report_render_csv(r, "wide", &b), REPORT_OK);
    CHECK_EQ_STR(b.data, "c0_ms,c1_ms,c2_ms,c3_ms,c4_ms,c5_ms,c6_ms,c7_ms,c8_ms,c9_ms,c10_ms,c11_ms"
                         "\r\n0,1,2,3,4,5,6,7,8,9,10,11\r\n");
    buf_free(&b);
    char *js = render(r, REPORT_FORMAT_JSON);
    char err[128];
    struct json *root = json_parse(js, strlen(js), err, sizeof err);
    const struct json *tables = json_get(json_at(json_get(root, "sections"), 0), "tables");
    int in_doc = 1;
    CHECK(json_bool(json_get(json_at(tables, 0), "in_doc"), &in_doc) == 0 && in_doc == 0);
    CHECK(json_bool(json_get(json_at(tables, 1), "in_doc"), &in_doc) == 0 && in_doc == 1);
    CHECK_EQ_INT(json_len(json_get(json_at(tables, 0), "columns")), 12);
    report_table_hide_in_doc(w, 0); /* shown again (with a warning: wider than the limit) */
    char *md2 = render(r, REPORT_FORMAT_MARKDOWN);
    CHECK(strstr(md2, "| C11 (ms) |\n"));
    CHECK_EQ_INT(REPORT_DOC_MAX_COLS, 10);
    free(md2);
    json_free(root);
    free(js);
    free(html);
    free(md);
    report_free(r);
}

int main(void)
{
    TEST_RUN(test_markdown);
    TEST_RUN(test_html);
    TEST_RUN(test_ticks);
    TEST_RUN(test_json);
    TEST_RUN(test_csv);
    TEST_RUN(test_escaping_edge);
    TEST_RUN(test_cap_and_files);
    TEST_RUN(test_misuse_ignored);
    TEST_RUN(test_axis_range);
    TEST_RUN(test_chart_marks);
    TEST_RUN(test_table_hide_in_doc);
    return TEST_DONE();
}
