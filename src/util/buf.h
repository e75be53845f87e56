/* buf: a growable byte buffer with a hard cap, plus the allocation helpers the whole project uses.
 * Exceeding the cap is its own error (BUF_ERR_CAP), never OOM; real OOM prints the size and aborts.
 * Also a tiny JSON emitter over a buf (escaping, numbers) so that hot paths (SSE events, records)
 * need no JSON library object. It does not parse; see util/json.h for that.
 *
 *   struct buf b;
 *   buf_init(&b, 4096, 1 << 20);      // initial size, cap
 *   buf_printf(&b, "{\"n\":%d}", 3);
 *   ... b.data, b.len ...
 *   buf_free(&b);
 */
#ifndef SLM_BUF_H
#define SLM_BUF_H

#include <stddef.h>
#include <stdint.h>

enum buf_status { BUF_OK = 0, BUF_ERR_CAP };

struct buf {
    char *data;     /* always NUL-terminated after len */
    size_t len;
    size_t size;    /* allocated bytes */
    size_t cap_bytes;
};

/* Never fail: OOM aborts with the size. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n); /* caller keeps p valid on its own; aborts on failure */
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* Size arithmetic on untrusted numbers: returns 0 and sets *out on success, -1 on overflow. */
int size_mul_ok(size_t a, size_t b, size_t *out);
int size_add_ok(size_t a, size_t b, size_t *out);

void buf_init(struct buf *b, size_t initial_bytes, size_t cap_bytes);
void buf_free(struct buf *b); /* NULL-safe; leaves an empty buffer */
void buf_reset(struct buf *b); /* len = 0, keeps memory */
enum buf_status buf_append(struct buf *b, const void *data, size_t n);
enum buf_status buf_puts(struct buf *b, const char *s);
enum buf_status buf_putc(struct buf *b, char c);
enum buf_status buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Removes the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Detaches the data (caller frees with free()); b becomes empty. */
char *buf_steal(struct buf *b);
const char *buf_status_str(enum buf_status st);

/* JSON emitting. Strings are escaped per RFC 8259; invalid UTF-8 bytes become U+FFFD.
 * Doubles that are not finite are written as null. */
enum buf_status buf_json_str(struct buf *b, const char *s);
enum buf_status buf_json_strn(struct buf *b, const char *s, size_t n);
enum buf_status buf_json_double(struct buf *b, double v);
/* Length in bytes (1-4) of the valid UTF-8 sequence at s, reading at most n bytes (n >= 1);
 * 0 if invalid: truncated, bad continuation byte, overlong form, surrogate (U+D800-U+DFFF)
 * or above U+10FFFF. */
size_t utf8_valid_len(const unsigned char *s, size_t n);

/* Reads a whole file into a NUL-terminated heap string; returns NULL (errno set) on failure or
 * when the file is larger than max_bytes (errno = EFBIG). Caller frees. */
char *file_read_all(const char *path, size_t max_bytes, size_t *len_out);
/* Writes data to path atomically (tmp + rename). Returns 0 or -1 with errno. */
int file_write_all(const char *path, const void *data, size_t len);
/* mkdir -p; returns 0 or -1 with errno. */
int dir_make_all(const char *path);

#endif
