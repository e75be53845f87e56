/* lab_page: the lab's one page from the tiers' HTML files (see lab_page.h). A small, strict
 * rewriter of the renderer's own output: it knows the tags our renderer writes (h1..h3, id="...")
 * and leaves every other byte alone. */
#include "lab/lab_page.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAB_PAGE_MAX_BYTES (64u << 20)

const char *lab_page_status_str(enum lab_page_status st)
{
    switch (st) {
    case LAB_PAGE_OK: return "ok";
    case LAB_PAGE_ERR_IO: return "i/o error";
    case LAB_PAGE_ERR_CAP: return "page too large";
    }
    return "unknown";
}

static const char *find(const char *s, const char *end, const char *needle)
{
    size_t n = strlen(needle);
    for (; s + n <= end; s++)
        if (*s == *needle && !memcmp(s, needle, n))
            return s;
    return NULL;
}

const char *lab_page_style(const char *html, size_t len, size_t *n_out)
{
    const char *end = html + len;
    const char *a = find(html, end, "<style>");
    const char *b = a ? find(a, end, "</style>") : NULL;
    if (!a || !b)
        return NULL;
    a += strlen("<style>");
    *n_out = (size_t)(b - a);
    return a;
}

/* At p: "<hN" or "</hN" with N in 1..5 -> writes the demoted tag start, returns bytes consumed. */
static size_t demote_heading(const char *p, const char *end, struct buf *out)
{
    int close = p + 1 < end && p[1] == '/';
    const char *h = p + 1 + close;
    if (h + 2 >= end || h[0] != 'h' || h[1] < '1' || h[1] > '5' || (h[2] != '>' && h[2] != ' '))
        return 0;
    buf_printf(out, "<%sh%c", close ? "/" : "", h[1] + 1);
    return (size_t)(h + 2 - p);
}

int lab_page_body(const char *html, size_t len, const char *key, struct buf *out)
{
    const char *end = html + len;
    const char *b = find(html, end, "<body");
    if (!b)
        return -1;
    b = memchr(b, '>', (size_t)(end - b));
    if (!b)
        return -1;
    b++;
    const char *e = find(b, end, "</body>");
    if (!e)
        e = end;
    for (const char *p = b; p < e;) {
        size_t used;
        if (*p == '<' && (used = demote_heading(p, e, out)) > 0) {
            p += used;
        } else if (*p == ' ' && p + 5 <= e && !memcmp(p, " id=\"", 5)) {
            buf_printf(out, " id=\"%s-", key);
            p += 5;
        } else if (*p == 'h' && p + 7 <= e && !memcmp(p, "href=\"#", 7)) {
            buf_printf(out, "href=\"#%s-", key);
            p += 7;
        } else {
            buf_putc(out, *p++);
        }
    }
    return 0;
}

static void put_escaped(struct buf *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': buf_puts(out, "&lt;"); break;
        case '>': buf_puts(out, "&gt;"); break;
        case '&': buf_puts(out, "&amp;"); break;
        case '"': buf_puts(out, "&quot;"); break;
        default: buf_putc(out, *s);
        }
    }
}

static void put_part(struct buf *out, const struct lab_page_part *p, const char *html, size_t len)
{
    buf_puts(out, "<section class=\"tier\" id=\"tier-");
    put_escaped(out, p->key);
    buf_puts(out, "\">\n<h1>");
    put_escaped(out, p->title);
    buf_puts(out, "</h1>\n");
    if (!html || lab_page_body(html, len, p->key, out) != 0) {
        buf_puts(out, "<p class=\"na\">Not run: ");
        put_escaped(out, p->path);
        buf_puts(out, html ? " has no HTML body.</p>\n" : " does not exist.</p>\n");
    }
    buf_puts(out, "</section>\n");
}

enum lab_page_status lab_page_write(const char *title, const char *summary_html,
                                    const struct lab_page_part *parts, int n_parts,
                                    const char *out_path, char *err, size_t err_len)
{
    char **html = calloc((size_t)n_parts + 1, sizeof *html);
    size_t *lens = calloc((size_t)n_parts + 1, sizeof *lens);
    if (!html || !lens)
        abort();
    struct buf out;
    buf_init(&out, 1 << 16, LAB_PAGE_MAX_BYTES);
    const char *style = NULL;
    size_t n_style = 0;
    for (int i = 0; i < n_parts; i++) {
        html[i] = file_read_all(parts[i].path, LAB_PAGE_MAX_BYTES, &lens[i]);
        if (html[i] && !style)
            style = lab_page_style(html[i], lens[i], &n_style);
    }
    buf_puts(&out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                   "<title>");
    put_escaped(&out, title);
    buf_puts(&out, "</title>\n<style>");
    if (style)
        buf_append(&out, style, n_style);
    buf_puts(&out, "section.tier{border-top:3px solid #444;margin-top:2.5em}"
                   "nav.toc li{margin:.2em 0}</style>\n</head>\n<body>\n<h1>");
    put_escaped(&out, title);
    buf_puts(&out, "</h1>\n<nav class=\"toc\"><ul>\n");
    for (int i = 0; i < n_parts; i++) {
        buf_puts(&out, "<li><a href=\"#tier-");
        put_escaped(&out, parts[i].key);
        buf_puts(&out, "\">");
        put_escaped(&out, parts[i].title);
        buf_puts(&out, "</a></li>\n");
    }
    buf_puts(&out, "</ul></nav>\n");
    if (summary_html)
        buf_puts(&out, summary_html);
    for (int i = 0; i < n_parts; i++)
        put_part(&out, &parts[i], html[i], lens[i]);
    enum buf_status bst = buf_puts(&out, "</body>\n</html>\n");
    enum lab_page_status st = LAB_PAGE_OK;
    if (bst != BUF_OK) {
        snprintf(err, err_len, "%s: the page would exceed %u MiB", out_path,
                 LAB_PAGE_MAX_BYTES >> 20);
        st = LAB_PAGE_ERR_CAP;
    } else if (file_write_all(out_path, out.data, out.len) != 0) {
        snprintf(err, err_len, "%s: %s", out_path, strerror(errno));
        st = LAB_PAGE_ERR_IO;
    }
    for (int i = 0; i < n_parts; i++)
        free(html[i]);
    free(html);
    free(lens);
    buf_free(&out);
    return st;
}

/* Inline spans of our own Markdown: `code` and **bold**; everything else escaped. */
static void md_inline(struct buf *out, const char *s, size_t n)
{
    int code = 0, bold = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '`') {
            buf_puts(out, code ? "</code>" : "<code>");
            code = !code;
        } else if (!code && s[i] == '*' && i + 1 < n && s[i + 1] == '*') {
            buf_puts(out, bold ? "</strong>" : "<strong>");
            bold = !bold;
            i++;
        } else {
            char c[2] = {s[i], 0};
            put_escaped(out, c);
        }
    }
    if (code)
        buf_puts(out, "</code>");
    if (bold)
        buf_puts(out, "</strong>");
}

/* One table row "| a | b |" as <tr>; header rows use th. */
static void md_row(struct buf *out, const char *l, size_t n, int head)
{
    buf_puts(out, "<tr>");
    const char *p = l + 1, *end = l + n;
    while (p < end) {
        const char *q = memchr(p, '|', (size_t)(end - p));
        if (!q)
            break;
        while (p < q && *p == ' ')
            p++;
        const char *e = q;
        while (e > p && e[-1] == ' ')
            e--;
        buf_puts(out, head ? "<th>" : "<td>");
        md_inline(out, p, (size_t)(e - p));
        buf_puts(out, head ? "</th>" : "</td>");
        p = q + 1;
    }
    buf_puts(out, "</tr>\n");
}

void lab_page_md_html(const char *md, struct buf *out)
{
    int in_list = 0, in_sub = 0, in_table = 0;
    for (const char *l = md; *l;) {
        size_t n = strcspn(l, "\n");
        int item = n >= 2 && !strncmp(l, "- ", 2), sub = n >= 4 && !strncmp(l, "  - ", 4);
        int row = n && l[0] == '|', sep = row && n > 2 && l[1] == '-';
        if (in_sub && !sub) {
            buf_puts(out, "</ul>\n");
            in_sub = 0;
        }
        if (in_list && !item && !sub) {
            buf_puts(out, "</ul>\n");
            in_list = 0;
        }
        if (in_table && !row) {
            buf_puts(out, "</tbody></table>\n");
            in_table = 0;
        }
        if (n > 3 && !strncmp(l, "## ", 3)) {
            buf_puts(out, "<h3>");
            md_inline(out, l + 3, n - 3);
            buf_puts(out, "</h3>\n");
        } else if (n > 2 && !strncmp(l, "# ", 2)) {
            buf_puts(out, "<h2>");
            md_inline(out, l + 2, n - 2);
            buf_puts(out, "</h2>\n");
        } else if (item || sub) {
            if (!in_list && item) {
                buf_puts(out, "<ul>\n");
                in_list = 1;
            }
            if (sub && !in_sub) {
                buf_puts(out, "<ul>\n");
                in_sub = 1;
            }
            buf_puts(out, "<li>");
            md_inline(out, l + (sub ? 4 : 2), n - (sub ? 4 : 2));
            buf_puts(out, "</li>\n");
        } else if (row && !sep) {
            if (!in_table)
                buf_puts(out, "<table><tbody>\n");
            md_row(out, l, n, !in_table);
            in_table = 1;
        } else if (n && !sep) {
            buf_puts(out, "<p>");
            md_inline(out, l, n);
            buf_puts(out, "</p>\n");
        }
        l += n + (l[n] == '\n');
    }
    buf_puts(out, in_sub ? "</ul>\n" : "");
    buf_puts(out, in_list ? "</ul>\n" : "");
    buf_puts(out, in_table ? "</tbody></table>\n" : "");
}
