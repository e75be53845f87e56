/* jsonw: a streaming JSON writer for the probes' machine-readable results (<probe>.json, schemas in
 * docs/schema.md). It writes into its own capped buffer (util/buf.h), tracks nesting (objects,
 * arrays, keys), escapes strings, writes non-finite numbers as null, and goes into a sticky error
 * state when the calls do not make well-formed JSON or the cap is hit; later calls then do
 * nothing. Output is pretty-printed (two-space indent) or compact. It does not parse (util/json.h
 * does) and does not check a schema.
 *
 *   struct jsonw w;
 *   jsonw_init(&w, 1 << 20, 1);            // cap, pretty
 *   jsonw_object_begin(&w);
 *   jsonw_key_str(&w, "schema", "slmprobe.ttft/1");
 *   jsonw_key(&w, "levels");
 *   jsonw_array_begin(&w);
 *   ... jsonw_object_begin / jsonw_key_num(&w, "p95_ms", v) / jsonw_object_end ...
 *   jsonw_array_end(&w);
 *   jsonw_object_end(&w);
 *   if (jsonw_write_file(&w, "out/ttft.json", err, sizeof err) != JSONW_OK) ...
 *   jsonw_free(&w);
 *
 * One thread at a time per writer. */
#ifndef SLM_JSONW_H
#define SLM_JSONW_H

#include <stddef.h>

#include "util/buf.h"

#define JSONW_MAX_DEPTH 32

enum jsonw_status {
    JSONW_OK = 0,
    JSONW_ERR_CAP,        /* the buffer cap was reached */
    JSONW_ERR_NESTING,    /* a call out of place: value without key in an object, key outside
                             an object, end of the wrong container, a second top-level value */
    JSONW_ERR_DEPTH,      /* more than JSONW_MAX_DEPTH open containers */
    JSONW_ERR_INCOMPLETE, /* jsonw_finish/jsonw_write_file before the top-level value is closed */
    JSONW_ERR_IO,         /* jsonw_write_file could not write (err says why) */
};
const char *jsonw_status_str(enum jsonw_status st);

struct jsonw {
    struct buf out;
    enum jsonw_status status;
    int pretty;
    int depth;
    char stack[JSONW_MAX_DEPTH];  /* 'o' object, 'a' array */
    int n_items[JSONW_MAX_DEPTH]; /* values (objects: members) written at each level */
    int have_key;                 /* in an object: a key was written, its value is due */
    int done;                     /* the top-level value is complete */
};

/* cap_bytes: hard cap of the output; pretty: newlines and two-space indentation. Never fails. */
void jsonw_init(struct jsonw *w, size_t cap_bytes, int pretty);
void jsonw_free(struct jsonw *w); /* NULL-safe */

void jsonw_object_begin(struct jsonw *w);
void jsonw_object_end(struct jsonw *w);
void jsonw_array_begin(struct jsonw *w);
void jsonw_array_end(struct jsonw *w);
/* A member key (escaped); the next call writes its value. */
void jsonw_key(struct jsonw *w, const char *key);
void jsonw_str(struct jsonw *w, const char *s); /* NULL writes null; invalid UTF-8 -> U+FFFD */
void jsonw_num(struct jsonw *w, double v);      /* NAN/inf write null; shortest exact digits */
void jsonw_int(struct jsonw *w, long long v);
void jsonw_bool(struct jsonw *w, int v);
void jsonw_null(struct jsonw *w);
/* key + value in one call. */
void jsonw_key_str(struct jsonw *w, const char *key, const char *s);
void jsonw_key_num(struct jsonw *w, const char *key, double v);
void jsonw_key_int(struct jsonw *w, const char *key, long long v);
void jsonw_key_bool(struct jsonw *w, const char *key, int v);
void jsonw_key_null(struct jsonw *w, const char *key);

/* The first error, or JSONW_OK (the document may still be incomplete). */
enum jsonw_status jsonw_status(const struct jsonw *w);
/* JSONW_OK when the top-level value is complete and no error happened (else the status, or
 * JSONW_ERR_INCOMPLETE); then *len (if given) is the length of the text, which is valid until the
 * next call on w. On error returns the status and the text (if asked) is NULL. */
enum jsonw_status jsonw_finish(const struct jsonw *w, const char **text, size_t *len);
/* jsonw_finish, then writes the text plus a final newline atomically (tmp + rename) to path. On
 * JSONW_ERR_IO err says why; other errors are described there too. */
enum jsonw_status jsonw_write_file(struct jsonw *w, const char *path, char *err, size_t err_len);

#endif
