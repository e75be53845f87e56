/* lab_page: `slmprobe lab`'s one report page, composed from the tiers' own HTML reports (which
 * the report renderer writes as self-contained pages: inline CSS and SVG, no script, no network).
 * Each tier's <body> is taken whole, its headings moved one level down and its element ids
 * prefixed with the tier's key (so the anchors of two tiers never collide), under a contents list
 * and a summary the caller gives as HTML. Composing from files (not from result structs) lets a
 * resumed lab reuse tiers finished by an earlier run. It renders nothing of its own beyond the
 * contents and the wrapper. */
#ifndef SLM_LAB_LAB_PAGE_H
#define SLM_LAB_LAB_PAGE_H

#include <stddef.h>

#include "util/buf.h"

struct lab_page_part {
    const char *key;   /* "ttft": id prefix and anchor */
    const char *title; /* "Tier 1: first token latency" */
    const char *path;  /* the tier's HTML file; a missing file gives a "not run" part */
};

enum lab_page_status { LAB_PAGE_OK = 0, LAB_PAGE_ERR_IO, LAB_PAGE_ERR_CAP };
const char *lab_page_status_str(enum lab_page_status st);

/* Writes the page to out_path (atomically). summary_html is inserted as is after the title (the
 * caller escapes it). Parts whose file is missing or has no <body> show a one-line note. */
enum lab_page_status lab_page_write(const char *title, const char *summary_html,
                                    const struct lab_page_part *parts, int n_parts,
                                    const char *out_path, char *err, size_t err_len);

/* Pure, for tests: appends the tier's body from html (len bytes) with headings demoted and ids
 * prefixed by key to out. Returns 0, or -1 when html has no <body>. */
int lab_page_body(const char *html, size_t len, const char *key, struct buf *out);
/* Pure: the content of the first <style>...</style> in html (without the tags), or NULL; *n_out
 * its length. Points into html. */
const char *lab_page_style(const char *html, size_t len, size_t *n_out);
/* The Markdown that lab_day writes (headings, "- " and "  - " lists, pipe tables, `code`,
 * **bold**, paragraphs) as HTML appended to out, every text escaped. Not a general Markdown
 * renderer: it knows only what DAY.md uses. */
void lab_page_md_html(const char *md, struct buf *out);

#endif
