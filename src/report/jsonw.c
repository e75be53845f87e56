/* jsonw: the streaming JSON writer of jsonw.h. Every call checks its place against the nesting
 * stack before writing; the first error sticks and later calls write nothing. Numbers use the
 * shortest of %.15g/%.17g that reads back exactly. No parsing, no schema checks. */
#include "report/jsonw.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *jsonw_status_str(enum jsonw_status st)
{
    switch (st) {
    case JSONW_OK:
        return "ok";
    case JSONW_ERR_CAP:
        return "output cap reached";
    case JSONW_ERR_NESTING:
        return "call out of place (nesting)";
    case JSONW_ERR_DEPTH:
        return "nesting too deep";
    case JSONW_ERR_INCOMPLETE:
        return "document incomplete";
    case JSONW_ERR_IO:
        return "i/o error";
    }
    return "unknown";
}

void jsonw_init(struct jsonw *w, size_t cap_bytes, int pretty)
{
    memset(w, 0, sizeof *w);
    buf_init(&w->out, cap_bytes < 4096 ? cap_bytes : 4096, cap_bytes);
    w->pretty = pretty != 0;
}

void jsonw_free(struct jsonw *w)
{
    if (!w)
        return;
    buf_free(&w->out);
}

static void fail(struct jsonw *w, enum jsonw_status st)
{
    if (w->status == JSONW_OK)
        w->status = st;
}

static void emit(struct jsonw *w, enum buf_status bst)
{
    if (bst != BUF_OK)
        fail(w, JSONW_ERR_CAP);
}

static void newline_indent(struct jsonw *w, int depth)
{
    if (!w->pretty)
        return;
    emit(w, buf_putc(&w->out, '\n'));
    for (int i = 0; i < depth && w->status == JSONW_OK; i++)
        emit(w, buf_puts(&w->out, "  "));
}

/* Before any value: checks the place, writes the separator. 0 when the value may be written. */
static int value_begin(struct jsonw *w)
{
    if (w->status != JSONW_OK)
        return -1;
    if (w->depth == 0) {
        if (w->done) {
            fail(w, JSONW_ERR_NESTING);
            return -1;
        }
        return 0;
    }
    int top = w->depth - 1;
    if (w->stack[top] == 'o') {
        if (!w->have_key) {
            fail(w, JSONW_ERR_NESTING);
            return -1;
        }
        w->have_key = 0;
        return 0;
    }
    if (w->n_items[top]++)
        emit(w, buf_putc(&w->out, ','));
    newline_indent(w, w->depth);
    return w->status == JSONW_OK ? 0 : -1;
}

/* After a scalar or a closed container. */
static void value_end(struct jsonw *w)
{
    if (w->depth == 0)
        w->done = 1;
}

static void container_begin(struct jsonw *w, char kind)
{
    if (value_begin(w) != 0)
        return;
    if (w->depth == JSONW_MAX_DEPTH) {
        fail(w, JSONW_ERR_DEPTH);
        return;
    }
    emit(w, buf_putc(&w->out, kind == 'o' ? '{' : '['));
    w->stack[w->depth] = kind;
    w->n_items[w->depth] = 0;
    w->depth++;
}

static void container_end(struct jsonw *w, char kind)
{
    if (w->status != JSONW_OK)
        return;
    if (w->depth == 0 || w->stack[w->depth - 1] != kind || w->have_key) {
        fail(w, JSONW_ERR_NESTING);
        return;
    }
    w->depth--;
    if (w->n_items[w->depth])
        newline_indent(w, w->depth);
    emit(w, buf_putc(&w->out, kind == 'o' ? '}' : ']'));
    value_end(w);
}

void jsonw_object_begin(struct jsonw *w)
{
    container_begin(w, 'o');
}

void jsonw_object_end(struct jsonw *w)
{
    container_end(w, 'o');
}

void jsonw_array_begin(struct jsonw *w)
{
    container_begin(w, 'a');
}

void jsonw_array_end(struct jsonw *w)
{
    container_end(w, 'a');
}

void jsonw_key(struct jsonw *w, const char *key)
{
    if (w->status != JSONW_OK)
        return;
    if (w->depth == 0 || w->stack[w->depth - 1] != 'o' || w->have_key || !key) {
        fail(w, JSONW_ERR_NESTING);
        return;
    }
    if (w->n_items[w->depth - 1]++)
        emit(w, buf_putc(&w->out, ','));
    newline_indent(w, w->depth);
    emit(w, buf_json_str(&w->out, key));
    emit(w, buf_puts(&w->out, w->pretty ? ": " : ":"));
    w->have_key = 1;
}

static void scalar(struct jsonw *w, const char *text)
{
    if (value_begin(w) != 0)
        return;
    emit(w, buf_puts(&w->out, text));
    value_end(w);
}

void jsonw_str(struct jsonw *w, const char *s)
{
    if (!s) {
        scalar(w, "null");
        return;
    }
    if (value_begin(w) != 0)
        return;
    emit(w, buf_json_str(&w->out, s));
    value_end(w);
}

void jsonw_num(struct jsonw *w, double v)
{
    char tmp[40];
    if (!isfinite(v)) {
        scalar(w, "null");
        return;
    }
    snprintf(tmp, sizeof tmp, "%.15g", v);
    if (strtod(tmp, NULL) != v)
        snprintf(tmp, sizeof tmp, "%.17g", v);
    scalar(w, tmp);
}

void jsonw_int(struct jsonw *w, long long v)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", v);
    scalar(w, tmp);
}

void jsonw_bool(struct jsonw *w, int v)
{
    scalar(w, v ? "true" : "false");
}

void jsonw_null(struct jsonw *w)
{
    scalar(w, "null");
}

void jsonw_key_str(struct jsonw *w, const char *key, const char *s)
{
    jsonw_key(w, key);
    jsonw_str(w, s);
}

void jsonw_key_num(struct jsonw *w, const char *key, double v)
{
    jsonw_key(w, key);
    jsonw_num(w, v);
}

void jsonw_key_int(struct jsonw *w, const char *key, long long v)
{
    jsonw_key(w, key);
    jsonw_int(w, v);
}

void jsonw_key_bool(struct jsonw *w, const char *key, int v)
{
    jsonw_key(w, key);
    jsonw_bool(w, v);
}

void jsonw_key_null(struct jsonw *w, const char *key)
{
    jsonw_key(w, key);
    jsonw_null(w);
}

enum jsonw_status jsonw_status(const struct jsonw *w)
{
    return w->status;
}

enum jsonw_status jsonw_finish(const struct jsonw *w, const char **text, size_t *len)
{
    enum jsonw_status st = w->status;
    if (st == JSONW_OK && (!w->done || w->depth))
        st = JSONW_ERR_INCOMPLETE;
    if (text)
        *text = st == JSONW_OK ? w->out.data : NULL;
    if (len)
        *len = st == JSONW_OK ? w->out.len : 0;
    return st;
}

enum jsonw_status jsonw_write_file(struct jsonw *w, const char *path, char *err, size_t err_len)
{
    enum jsonw_status st = jsonw_finish(w, NULL, NULL);
    if (st == JSONW_OK && buf_putc(&w->out, '\n') != BUF_OK)
        st = JSONW_ERR_CAP;
    if (st != JSONW_OK) {
        if (err && err_len)
            snprintf(err, err_len, "%s: %s", path, jsonw_status_str(st));
        return st;
    }
    int rc = file_write_all(path, w->out.data, w->out.len);
    int saved = errno;
    w->out.len--; /* drop the newline again: the text stays as jsonw_finish gives it */
    w->out.data[w->out.len] = 0;
    if (rc != 0) {
        if (err && err_len)
            snprintf(err, err_len, "%s: %s", path, strerror(saved));
        return JSONW_ERR_IO;
    }
    return JSONW_OK;
}
