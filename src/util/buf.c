/* buf: capped growable buffers, aborting allocators, JSON string escaping, small file helpers. */
#include "util/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void oom(size_t n)
{
    fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

int size_mul_ok(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

int size_add_ok(size_t a, size_t b, size_t *out)
{
    if (a > SIZE_MAX - b)
        return -1;
    *out = a + b;
    return 0;
}

void buf_init(struct buf *b, size_t initial_bytes, size_t cap_bytes)
{
    if (initial_bytes < 16)
        initial_bytes = 16;
    if (initial_bytes > cap_bytes + 1)
        initial_bytes = cap_bytes + 1;
    b->data = xmalloc(initial_bytes);
    b->data[0] = 0;
    b->len = 0;
    b->size = initial_bytes;
    b->cap_bytes = cap_bytes;
}

void buf_free(struct buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->size = 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

static enum buf_status buf_reserve(struct buf *b, size_t extra)
{
    if (extra > b->cap_bytes || b->len > b->cap_bytes - extra)
        return BUF_ERR_CAP;
    size_t need = b->len + extra + 1;
    if (need <= b->size)
        return BUF_OK;
    size_t n = b->size ? b->size : 16;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    if (n > b->cap_bytes + 1)
        n = b->cap_bytes + 1;
    b->data = xrealloc(b->data, n);
    b->size = n;
    return BUF_OK;
}

enum buf_status buf_append(struct buf *b, const void *data, size_t n)
{
    if (buf_reserve(b, n) != BUF_OK)
        return BUF_ERR_CAP;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = 0;
    return BUF_OK;
}

enum buf_status buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

enum buf_status buf_putc(struct buf *b, char c)
{
    return buf_append(b, &c, 1);
}

enum buf_status buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return BUF_ERR_CAP;
    if (buf_reserve(b, (size_t)n) != BUF_OK)
        return BUF_ERR_CAP;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, b->size - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return BUF_OK;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = 0;
}

char *buf_steal(struct buf *b)
{
    char *p = b->data;
    b->data = NULL;
    b->len = b->size = 0;
    return p;
}

const char *buf_status_str(enum buf_status st)
{
    return st == BUF_OK ? "ok" : "buffer cap exceeded";
}

size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* 1 for the bytes a JSON string holds as they are: printable ASCII but '"' and '\\'. */
static const unsigned char json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x10 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x20 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,  /* 0x50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* 0x70 */
    /* 0x80..0xff: 0 (UTF-8, checked one sequence at a time) */
};

enum buf_status buf_json_strn(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    if (buf_putc(b, '"'))
        return BUF_ERR_CAP;
    size_t i = 0;
    while (i < n) {
        size_t run = i;
        while (run < n && json_plain[u[run]])
            run++;
        if (run > i && buf_append(b, s + i, run - i))
            return BUF_ERR_CAP;
        i = run;
        if (i >= n)
            break;
        unsigned char c = u[i];
        enum buf_status st = BUF_OK;
        if (c == '"') {
            st = buf_append(b, "\\\"", 2);
            i++;
        } else if (c == '\\') {
            st = buf_append(b, "\\\\", 2);
            i++;
        } else if (c == '\n') {
            st = buf_append(b, "\\n", 2);
            i++;
        } else if (c == '\r') {
            st = buf_append(b, "\\r", 2);
            i++;
        } else if (c == '\t') {
            st = buf_append(b, "\\t", 2);
            i++;
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            st = buf_append(b, e, 6);
            i++;
        } else {
            size_t l = utf8_valid_len(u + i, n - i);
            if (l) {
                st = buf_append(b, s + i, l);
                i += l;
            } else {
                st = buf_append(b, "\xEF\xBF\xBD", 3);
                i++;
            }
        }
        if (st)
            return st;
    }
    return buf_putc(b, '"');
}

enum buf_status buf_json_str(struct buf *b, const char *s)
{
    return buf_json_strn(b, s ? s : "", s ? strlen(s) : 0);
}

enum buf_status buf_json_double(struct buf *b, double v)
{
    if (!isfinite(v))
        return buf_puts(b, "null");
    if (fabs(v) < 1e15 && v == (double)(long long)v) /* range first: the cast of a larger
                                                        value is undefined */
        return buf_printf(b, "%lld", (long long)v);
    return buf_printf(b, "%.9g", v);
}

char *file_read_all(const char *path, size_t max_bytes, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct buf b;
    buf_init(&b, 4096, max_bytes);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (buf_append(&b, tmp, n)) {
            fclose(f);
            buf_free(&b);
            errno = EFBIG;
            return NULL;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        buf_free(&b);
        errno = EIO;
        return NULL;
    }
    if (len_out)
        *len_out = b.len;
    return buf_steal(&b);
}

int file_write_all(const char *path, const void *data, size_t len)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            errno = e;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

int dir_make_all(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}
