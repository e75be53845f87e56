/* gguf: validating GGUF v2/v3 reader (views into a caller's buffer), deterministic streaming
 * writer, f16 conversions. Layout (all little-endian):
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x { string key | u32 type | value }         string = u64 len + bytes (no NUL)
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to general.alignment | data section (each tensor at an aligned offset, padded)
 * Nothing here interprets keys beyond general.alignment. */
#include "engine/gguf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c assumes a little-endian host"
#endif

const char *gguf_status_str(enum gguf_status st)
{
    switch (st) {
    case GGUF_OK: return "ok";
    case GGUF_ERR_IO: return "I/O error";
    case GGUF_ERR_MAGIC: return "bad magic";
    case GGUF_ERR_VERSION: return "unsupported version";
    case GGUF_ERR_TRUNCATED: return "truncated file";
    case GGUF_ERR_LIMIT: return "count or length out of bounds";
    case GGUF_ERR_TYPE: return "unknown type";
    case GGUF_ERR_SHAPE: return "bad tensor shape";
    case GGUF_ERR_OFFSET: return "bad tensor offset";
    case GGUF_ERR_DUPLICATE: return "duplicate name";
    case GGUF_ERR_ALIGNMENT: return "bad alignment";
    case GGUF_ERR_INCOMPLETE: return "header incomplete in buffer";
    case GGUF_ERR_USAGE: return "writer misuse";
    }
    return "?";
}

static const char *const type_names[GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool",  "string", "array", "uint64", "int64", "float64",
};

const char *gguf_type_str(enum gguf_type t)
{
    return (unsigned)t < GGUF_TYPE_COUNT ? type_names[t] : "?";
}

/* Encoded size of a fixed-size value type; 0 for string/array/unknown. */
static uint64_t type_fixed_bytes(uint32_t t)
{
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

struct ggml_type_desc {
    uint32_t type;
    const char *name;
    uint32_t blck_elems;
    uint32_t blck_bytes;
};

/* ggml's type traits (block size, bytes per block) for every type a GGUF file may hold. */
static const struct ggml_type_desc ggml_types[] = {
    {GGML_TYPE_F32, "F32", 1, 4},         {GGML_TYPE_F16, "F16", 1, 2},
    {GGML_TYPE_Q4_0, "Q4_0", 32, 18},     {GGML_TYPE_Q4_1, "Q4_1", 32, 20},
    {GGML_TYPE_Q5_0, "Q5_0", 32, 22},     {GGML_TYPE_Q5_1, "Q5_1", 32, 24},
    {GGML_TYPE_Q8_0, "Q8_0", 32, 34},     {GGML_TYPE_Q8_1, "Q8_1", 32, 36},
    {GGML_TYPE_Q2_K, "Q2_K", 256, 84},    {GGML_TYPE_Q3_K, "Q3_K", 256, 110},
    {GGML_TYPE_Q4_K, "Q4_K", 256, 144},   {GGML_TYPE_Q5_K, "Q5_K", 256, 176},
    {GGML_TYPE_Q6_K, "Q6_K", 256, 210},   {GGML_TYPE_Q8_K, "Q8_K", 256, 292},
    {GGML_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66}, {GGML_TYPE_IQ2_XS, "IQ2_XS", 256, 74},
    {GGML_TYPE_IQ3_XXS, "IQ3_XXS", 256, 98}, {GGML_TYPE_IQ1_S, "IQ1_S", 256, 50},
    {GGML_TYPE_IQ4_NL, "IQ4_NL", 32, 18}, {GGML_TYPE_IQ3_S, "IQ3_S", 256, 110},
    {GGML_TYPE_IQ2_S, "IQ2_S", 256, 82},  {GGML_TYPE_IQ4_XS, "IQ4_XS", 256, 136},
    {GGML_TYPE_I8, "I8", 1, 1},           {GGML_TYPE_I16, "I16", 1, 2},
    {GGML_TYPE_I32, "I32", 1, 4},         {GGML_TYPE_I64, "I64", 1, 8},
    {GGML_TYPE_F64, "F64", 1, 8},         {GGML_TYPE_IQ1_M, "IQ1_M", 256, 56},
    {GGML_TYPE_BF16, "BF16", 1, 2},       {GGML_TYPE_TQ1_0, "TQ1_0", 256, 54},
    {GGML_TYPE_TQ2_0, "TQ2_0", 256, 66},  {GGML_TYPE_MXFP4, "MXFP4", 32, 17},
};

static const struct ggml_type_desc *ggml_type_find(uint32_t type)
{
    for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
        if (ggml_types[i].type == type)
            return &ggml_types[i];
    return NULL;
}

const char *ggml_type_name(uint32_t type)
{
    const struct ggml_type_desc *d = ggml_type_find(type);
    return d ? d->name : NULL;
}

int ggml_type_block(uint32_t type, uint32_t *blck_elems, uint32_t *blck_bytes)
{
    const struct ggml_type_desc *d = ggml_type_find(type);
    *blck_elems = d ? d->blck_elems : 0;
    *blck_bytes = d ? d->blck_bytes : 0;
    return d ? 1 : 0;
}

/* ---- reader ---- */

struct cur {
    const unsigned char *base;
    uint64_t buf_bytes;
    uint64_t file_bytes;
    uint64_t pos;
    uint64_t need_bytes; /* set on GGUF_ERR_INCOMPLETE */
    char *err;
    size_t err_len;
};

static enum gguf_status fail(struct cur *c, enum gguf_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum gguf_status fail(struct cur *c, enum gguf_status st, const char *fmt, ...)
{
    if (c->err && c->err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->err_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* A printable, bounded copy of a name from the file, for messages. */
static const char *safe_name(struct gguf_str s, char *out, size_t out_len)
{
    size_t n = 0;
    for (uint64_t i = 0; i < s.len && n + 4 < out_len; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        out[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    if (s.len > n && n + 4 <= out_len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = 0;
    return out;
}

/* Checks that n bytes at the cursor exist in the file, and in the buffer. what: printf-style
 * description of the field, formatted only on failure. */
static enum gguf_status need(struct cur *c, uint64_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum gguf_status need(struct cur *c, uint64_t n, const char *fmt, ...)
{
    if (n <= c->buf_bytes - c->pos)
        return GGUF_OK;
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (n > c->file_bytes - c->pos)
        return fail(c, GGUF_ERR_TRUNCATED,
                    "truncated file: %s needs %" PRIu64 " bytes at offset %" PRIu64
                    ", but the file has %" PRIu64 " bytes",
                    what, n, c->pos, c->file_bytes);
    c->need_bytes = c->pos + n;
    return fail(c, GGUF_ERR_INCOMPLETE,
                "header continues past the %" PRIu64 " bytes given (%s needs bytes up to %" PRIu64
                ")",
                c->buf_bytes, what, c->pos + n);
}

static uint32_t rd_u32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd_u64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Reads a string (u64 length + bytes) into out. what/idx/owner describe it for messages
 * ("string element 17 of 'tokenizer.ggml.tokens'"); owner may be NULL. */
static enum gguf_status rd_str(struct cur *c, struct gguf_str *out, const char *what, uint64_t idx,
                               const char *owner)
{
    const char *of = owner ? " of '" : "";
    const char *q = owner ? "'" : "";
    owner = owner ? owner : "";
    enum gguf_status st = need(c, 8, "the length of %s %" PRIu64 "%s%s%s", what, idx, of, owner, q);
    if (st)
        return st;
    uint64_t len = rd_u64(c->base + c->pos);
    c->pos += 8;
    if (len > c->file_bytes - c->pos)
        return fail(c, GGUF_ERR_LIMIT,
                    "%s %" PRIu64 "%s%s%s has length %" PRIu64 " at offset %" PRIu64
                    ", past the end of the file (%" PRIu64 " bytes; truncated or corrupt)",
                    what, idx, of, owner, q, len, c->pos - 8, c->file_bytes);
    st = need(c, len, "%s %" PRIu64 "%s%s%s", what, idx, of, owner, q);
    if (st)
        return st;
    out->ptr = (const char *)c->base + c->pos;
    out->len = len;
    c->pos += len;
    return GGUF_OK;
}

static enum gguf_status rd_kv(struct cur *c, uint64_t i, struct gguf_kv *kv)
{
    char nm[80];
    enum gguf_status st = rd_str(c, &kv->key, "metadata key", i, NULL);
    if (st)
        return st;
    safe_name(kv->key, nm, sizeof nm);
    if ((st = need(c, 4, "the type of key '%s'", nm)))
        return st;
    uint32_t type = rd_u32(c->base + c->pos);
    c->pos += 4;
    if (type >= GGUF_TYPE_COUNT)
        return fail(c, GGUF_ERR_TYPE, "key '%s' has unknown value type %" PRIu32, nm, type);
    kv->type = (enum gguf_type)type;
    uint64_t start = c->pos;
    if (type == GGUF_TYPE_STRING) {
        struct gguf_str s;
        if ((st = rd_str(c, &s, "string value of metadata entry", i, nm)))
            return st;
    } else if (type == GGUF_TYPE_ARRAY) {
        if ((st = need(c, 12, "the array header of key '%s'", nm)))
            return st;
        uint32_t at = rd_u32(c->base + c->pos);
        uint64_t n = rd_u64(c->base + c->pos + 4);
        c->pos += 12;
        if (at >= GGUF_TYPE_COUNT)
            return fail(c, GGUF_ERR_TYPE, "array '%s' has unknown element type %" PRIu32, nm, at);
        if (at == GGUF_TYPE_ARRAY)
            return fail(c, GGUF_ERR_TYPE, "array '%s' holds arrays (nested arrays unsupported)",
                        nm);
        kv->arr_type = (enum gguf_type)at;
        kv->arr_n = n;
        start = c->pos;
        uint64_t elem = at == GGUF_TYPE_STRING ? 8 : type_fixed_bytes(at);
        /* Every element takes at least elem bytes: bound the count by the file first. */
        if (n > (c->file_bytes - c->pos) / elem)
            return fail(c, GGUF_ERR_LIMIT,
                        "array '%s' claims %" PRIu64 " elements of %" PRIu64
                        "+ bytes at offset %" PRIu64 ", more than the file (%" PRIu64 " bytes) holds: "
                        "truncated or corrupt",
                        nm, n, elem, c->pos, c->file_bytes);
        if (at == GGUF_TYPE_STRING) {
            for (uint64_t j = 0; j < n; j++) {
                struct gguf_str s;
                if ((st = rd_str(c, &s, "string element", j, nm)))
                    return st;
            }
        } else {
            if ((st = need(c, n * elem, "the %" PRIu64 " elements of array '%s'", n, nm)))
                return st;
            c->pos += n * elem;
        }
    } else {
        uint64_t sz = type_fixed_bytes(type);
        if ((st = need(c, sz, "the value of key '%s'", nm)))
            return st;
        c->pos += sz;
    }
    kv->value = c->base + start;
    kv->value_bytes = c->pos - start;
    return GGUF_OK;
}

static int str_cmp(struct gguf_str a, struct gguf_str b)
{
    uint64_t n = a.len < b.len ? a.len : b.len;
    int r = n ? memcmp(a.ptr, b.ptr, (size_t)n) : 0;
    if (r)
        return r;
    return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

static int str_eq_cstr(struct gguf_str a, const char *s)
{
    size_t n = strlen(s);
    return a.len == n && (n == 0 || memcmp(a.ptr, s, n) == 0);
}

/* qsort has no context argument: sort arrays of pointers to the names. */
static int cmp_str_ptr(const void *a, const void *b)
{
    const struct gguf_str *x = *(const struct gguf_str *const *)a;
    const struct gguf_str *y = *(const struct gguf_str *const *)b;
    int r = str_cmp(*x, *y);
    if (r)
        return r;
    return x < y ? -1 : x > y ? 1 : 0; /* stable: file order */
}

static enum gguf_status rd_tensor(struct cur *c, uint64_t i, struct gguf_tensor_info *t)
{
    char nm[80];
    enum gguf_status st = rd_str(c, &t->name, "tensor name", i, NULL);
    if (st)
        return st;
    safe_name(t->name, nm, sizeof nm);
    if ((st = need(c, 4, "n_dims of tensor '%s'", nm)))
        return st;
    t->n_dims = rd_u32(c->base + c->pos);
    c->pos += 4;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(c, GGUF_ERR_SHAPE, "tensor '%s' has n_dims %" PRIu32 " (must be 1..%d)", nm,
                    t->n_dims, GGUF_MAX_DIMS);
    if ((st = need(c, 8ull * t->n_dims, "the dims of tensor '%s'", nm)))
        return st;
    uint64_t n_elems = 1;
    int overflow = 0;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims) {
            ne = rd_u64(c->base + c->pos);
            c->pos += 8;
        }
        if (ne > (uint64_t)INT64_MAX)
            return fail(c, GGUF_ERR_SHAPE, "tensor '%s' dim %" PRIu32 " is negative (%" PRId64 ")",
                        nm, d, (int64_t)ne);
        t->ne[d] = ne;
        if (ne && n_elems > (uint64_t)INT64_MAX / ne)
            overflow = 1;
        else
            n_elems *= ne;
    }
    if (overflow)
        return fail(c, GGUF_ERR_SHAPE,
                    "tensor '%s' element count overflows ([%" PRIu64 ", %" PRIu64 ", %" PRIu64
                    ", %" PRIu64 "])",
                    nm, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
    t->n_elems = n_elems;
    if ((st = need(c, 12, "the type and offset of tensor '%s'", nm)))
        return st;
    t->type = rd_u32(c->base + c->pos);
    t->offset = rd_u64(c->base + c->pos + 4);
    c->pos += 12;
    uint32_t be, bb;
    if (!ggml_type_block(t->type, &be, &bb))
        return fail(c, GGUF_ERR_TYPE, "tensor '%s' has unknown ggml type %" PRIu32, nm, t->type);
    if (t->ne[0] % be)
        return fail(c, GGUF_ERR_SHAPE,
                    "tensor '%s' row of %" PRIu64 " elements is not a multiple of the %s block "
                    "size %" PRIu32,
                    nm, t->ne[0], ggml_type_name(t->type), be);
    uint64_t n_blocks = n_elems / be;
    if (n_blocks > UINT64_MAX / bb || n_blocks * bb > (uint64_t)INT64_MAX)
        return fail(c, GGUF_ERR_SHAPE, "tensor '%s' byte size overflows", nm);
    t->n_bytes = n_blocks * bb;
    return GGUF_OK;
}

void gguf_file_free(struct gguf_file *g)
{
    if (!g)
        return;
    free(g->kv);
    free(g->tensors);
    free(g->tensor_sorted);
    memset(g, 0, sizeof *g);
}

enum gguf_status gguf_parse(struct gguf_file *g, const void *buf, uint64_t buf_bytes,
                            uint64_t file_bytes, uint64_t *need_bytes, char *err, size_t err_len)
{
    memset(g, 0, sizeof *g);
    if (err && err_len)
        err[0] = 0;
    struct cur c = {.base = buf, .buf_bytes = buf_bytes, .file_bytes = file_bytes, .err = err,
                    .err_len = err_len};
    enum gguf_status st;
    const struct gguf_str **sorted = NULL;
    char nm[80];
    if (buf_bytes > file_bytes)
        return fail(&c, GGUF_ERR_USAGE, "buffer (%" PRIu64 " bytes) larger than the file (%" PRIu64
                    " bytes)", buf_bytes, file_bytes);
    g->base = buf;
    g->buf_bytes = buf_bytes;
    g->file_bytes = file_bytes;

    if ((st = need(&c, 4, "the magic")))
        goto fail;
    if (memcmp(c.base, GGUF_MAGIC, 4) != 0) {
        st = fail(&c, GGUF_ERR_MAGIC,
                  "not a GGUF file: magic is %02x %02x %02x %02x, expected 47 47 55 46 (\"GGUF\")",
                  c.base[0], c.base[1], c.base[2], c.base[3]);
        goto fail;
    }
    c.pos = 4;
    if ((st = need(&c, 4, "the version")))
        goto fail;
    g->version = rd_u32(c.base + c.pos);
    c.pos += 4;
    if (g->version != 2 && g->version != 3) {
        if (g->version == 1)
            st = fail(&c, GGUF_ERR_VERSION, "GGUF version 1 is not supported (only 2 and 3)");
        else if ((g->version & 0xffff) == 0)
            st = fail(&c, GGUF_ERR_VERSION,
                      "GGUF version %" PRIu32 " (a big-endian file?) is not supported (only 2 "
                      "and 3, little-endian)",
                      g->version);
        else
            st = fail(&c, GGUF_ERR_VERSION, "GGUF version %" PRIu32 " is not supported (only 2 "
                      "and 3)", g->version);
        goto fail;
    }
    if ((st = need(&c, 16, "the tensor and metadata counts")))
        goto fail;
    g->n_tensors = rd_u64(c.base + c.pos);
    g->n_kv = rd_u64(c.base + c.pos + 8);
    c.pos += 16;
    /* Smallest encodings: a KV is key length (8) + type (4) + a 1-byte value; a tensor info is
     * name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8). */
    uint64_t left = file_bytes - c.pos;
    if (g->n_kv > GGUF_MAX_KV || g->n_kv > left / 13) {
        st = fail(&c, GGUF_ERR_LIMIT,
                  "metadata count %" PRIu64 " is impossible (limit %u, and the %" PRIu64
                  " bytes left in the file hold at most %" PRIu64 "; truncated or corrupt)",
                  g->n_kv, GGUF_MAX_KV, left, left / 13);
        goto fail;
    }
    if (g->n_tensors > GGUF_MAX_TENSORS || g->n_tensors > (left - g->n_kv * 13) / 32) {
        st = fail(&c, GGUF_ERR_LIMIT,
                  "tensor count %" PRIu64 " is impossible (limit %u, and the %" PRIu64
                  " bytes left in the file hold at most %" PRIu64 "; truncated or corrupt)",
                  g->n_tensors, GGUF_MAX_TENSORS, left, (left - g->n_kv * 13) / 32);
        goto fail;
    }
    g->kv = xcalloc((size_t)g->n_kv, sizeof *g->kv);
    g->tensors = xcalloc((size_t)g->n_tensors, sizeof *g->tensors);
    g->tensor_sorted = xcalloc((size_t)g->n_tensors, sizeof *g->tensor_sorted);

    for (uint64_t i = 0; i < g->n_kv; i++)
        if ((st = rd_kv(&c, i, &g->kv[i])))
            goto fail;

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (g->n_kv) {
        sorted = xcalloc((size_t)g->n_kv, sizeof *sorted);
        for (uint64_t i = 0; i < g->n_kv; i++)
            sorted[i] = &g->kv[i].key;
        qsort(sorted, (size_t)g->n_kv, sizeof *sorted, cmp_str_ptr);
        for (uint64_t i = 1; i < g->n_kv; i++) {
            if (str_cmp(*sorted[i - 1], *sorted[i]) == 0) {
                st = fail(&c, GGUF_ERR_DUPLICATE, "duplicate metadata key '%s'",
                          safe_name(*sorted[i], nm, sizeof nm));
                goto fail;
            }
        }
        free(sorted);
        sorted = NULL;
    }
    const struct gguf_kv *al = gguf_find_kv(g, "general.alignment");
    if (al) {
        uint32_t a = al->type == GGUF_TYPE_UINT32 ? rd_u32(al->value) : 0;
        if (al->type != GGUF_TYPE_UINT32 || a == 0 || (a & (a - 1))) {
            st = fail(&c, GGUF_ERR_ALIGNMENT,
                      "general.alignment must be a power-of-two uint32 (got %s %" PRIu32 ")",
                      gguf_type_str(al->type), a);
            goto fail;
        }
        g->alignment = a;
    }

    for (uint64_t i = 0; i < g->n_tensors; i++)
        if ((st = rd_tensor(&c, i, &g->tensors[i])))
            goto fail;
    g->header_bytes = c.pos;
    uint64_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    g->data_offset = c.pos + pad; /* c.pos <= file_bytes < 2^64 - 2^32: no overflow */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct gguf_tensor_info *t = &g->tensors[i];
        safe_name(t->name, nm, sizeof nm);
        if (t->offset % g->alignment) {
            st = fail(&c, GGUF_ERR_OFFSET,
                      "tensor '%s' offset %" PRIu64 " is not a multiple of the alignment %" PRIu32,
                      nm, t->offset, g->alignment);
            goto fail;
        }
        uint64_t room = file_bytes >= g->data_offset ? file_bytes - g->data_offset : 0;
        if (g->data_offset > file_bytes || t->offset > room || t->n_bytes > room - t->offset) {
            st = fail(&c, GGUF_ERR_OFFSET,
                      "tensor '%s' data (%" PRIu64 " bytes at data offset %" PRIu64
                      ", file offset %" PRIu64 ") runs past the end of the file (%" PRIu64
                      " bytes; truncated or corrupt)",
                      nm, t->n_bytes, t->offset, g->data_offset + (t->offset <= UINT64_MAX -
                      g->data_offset ? t->offset : 0), file_bytes);
            goto fail;
        }
        t->file_offset = g->data_offset + t->offset;
        t->data = t->file_offset + t->n_bytes <= buf_bytes ? c.base + t->file_offset : NULL;
    }
    if (g->n_tensors) {
        sorted = xcalloc((size_t)g->n_tensors, sizeof *sorted);
        for (uint64_t i = 0; i < g->n_tensors; i++)
            sorted[i] = &g->tensors[i].name;
        qsort(sorted, (size_t)g->n_tensors, sizeof *sorted, cmp_str_ptr);
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            /* name is the first member: the pointer is the tensor info's address */
            g->tensor_sorted[i] = (uint64_t)((const struct gguf_tensor_info *)(const void *)
                                                 sorted[i] - g->tensors);
            if (i && str_cmp(*sorted[i - 1], *sorted[i]) == 0) {
                st = fail(&c, GGUF_ERR_DUPLICATE, "duplicate tensor name '%s'",
                          safe_name(*sorted[i], nm, sizeof nm));
                goto fail;
            }
        }
        free(sorted);
        sorted = NULL;
    }
    return GGUF_OK;

fail:
    if (st == GGUF_ERR_INCOMPLETE && need_bytes)
        *need_bytes = c.need_bytes;
    free(sorted);
    gguf_file_free(g);
    return st;
}

const struct gguf_kv *gguf_find_kv(const struct gguf_file *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (str_eq_cstr(g->kv[i].key, key))
            return &g->kv[i];
    return NULL;
}

const struct gguf_tensor_info *gguf_find_tensor(const struct gguf_file *g, const char *name)
{
    struct gguf_str want = {name, strlen(name)};
    uint64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const struct gguf_tensor_info *t = &g->tensors[g->tensor_sorted[mid]];
        int r = str_cmp(t->name, want);
        if (r == 0)
            return t;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Decodes one fixed-size numeric value of type t at p. 0 ok, -1 not numeric. */
static int num_at(uint32_t t, const unsigned char *p, int64_t *i_out, double *f_out, int *is_int)
{
    int64_t i = 0;
    double f = 0;
    *is_int = 1;
    switch (t) {
    case GGUF_TYPE_UINT8: i = p[0]; break;
    case GGUF_TYPE_INT8: i = (int8_t)p[0]; break;
    case GGUF_TYPE_BOOL: i = p[0]; break;
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); i = v; break; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); i = v; break; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); i = v; break; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); i = v; break; }
    case GGUF_TYPE_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX)
            return -1;
        i = (int64_t)v;
        break;
    }
    case GGUF_TYPE_INT64: memcpy(&i, p, 8); break;
    case GGUF_TYPE_FLOAT32: { float v; memcpy(&v, p, 4); f = v; *is_int = 0; break; }
    case GGUF_TYPE_FLOAT64: memcpy(&f, p, 8); *is_int = 0; break;
    default: return -1;
    }
    *i_out = i;
    *f_out = f;
    return 0;
}

int gguf_kv_get_i64(const struct gguf_kv *kv, int64_t *out)
{
    int64_t i;
    double f;
    int is_int;
    if (!kv || kv->type == GGUF_TYPE_BOOL || num_at(kv->type, kv->value, &i, &f, &is_int) ||
        !is_int)
        return -1;
    *out = i;
    return 0;
}

int gguf_kv_get_f64(const struct gguf_kv *kv, double *out)
{
    int64_t i;
    double f;
    int is_int;
    if (!kv || num_at(kv->type, kv->value, &i, &f, &is_int) || is_int)
        return -1;
    *out = f;
    return 0;
}

int gguf_kv_get_bool(const struct gguf_kv *kv, int *out)
{
    if (!kv || kv->type != GGUF_TYPE_BOOL)
        return -1;
    *out = kv->value[0] != 0;
    return 0;
}

int gguf_kv_get_str(const struct gguf_kv *kv, struct gguf_str *out)
{
    if (!kv || kv->type != GGUF_TYPE_STRING)
        return -1;
    out->len = rd_u64(kv->value);
    out->ptr = (const char *)kv->value + 8;
    return 0;
}

int gguf_kv_arr_i64(const struct gguf_kv *kv, uint64_t i, int64_t *out)
{
    int64_t v;
    double f;
    int is_int;
    if (!kv || kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n || kv->arr_type == GGUF_TYPE_BOOL ||
        !type_fixed_bytes(kv->arr_type))
        return -1;
    if (num_at(kv->arr_type, kv->value + i * type_fixed_bytes(kv->arr_type), &v, &f, &is_int) ||
        !is_int)
        return -1;
    *out = v;
    return 0;
}

int gguf_kv_arr_f64(const struct gguf_kv *kv, uint64_t i, double *out)
{
    int64_t v;
    double f;
    int is_int;
    if (!kv || kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n || !type_fixed_bytes(kv->arr_type))
        return -1;
    if (num_at(kv->arr_type, kv->value + i * type_fixed_bytes(kv->arr_type), &v, &f, &is_int) ||
        is_int)
        return -1;
    *out = f;
    return 0;
}

int gguf_kv_arr_str(const struct gguf_kv *kv, uint64_t i, struct gguf_str *out)
{
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING || i >= kv->arr_n)
        return -1;
    const unsigned char *p = kv->value; /* validated by gguf_parse */
    for (uint64_t j = 0; j < i; j++)
        p += 8 + rd_u64(p);
    out->len = rd_u64(p);
    out->ptr = (const char *)p + 8;
    return 0;
}

int gguf_kv_arr_strs(const struct gguf_kv *kv, struct gguf_str *out)
{
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING)
        return -1;
    const unsigned char *p = kv->value;
    for (uint64_t j = 0; j < kv->arr_n; j++) {
        out[j].len = rd_u64(p);
        out[j].ptr = (const char *)p + 8;
        p += 8 + out[j].len;
    }
    return 0;
}

/* ---- writer ---- */

#define WRITER_META_CAP ((size_t)1 << 32)
#define WRITER_OUT_BYTES ((size_t)8 << 20)

void gguf_writer_init(struct gguf_writer *w, uint32_t alignment)
{
    memset(w, 0, sizeof *w);
    w->alignment = alignment ? alignment : GGUF_DEFAULT_ALIGNMENT;
    if (w->alignment & (w->alignment - 1))
        w->st = GGUF_ERR_ALIGNMENT;
    buf_init(&w->meta, 4096, WRITER_META_CAP);
    buf_init(&w->infos, 4096, WRITER_META_CAP);
    w->fd = -1;
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w)
        return;
    buf_free(&w->meta);
    buf_free(&w->infos);
    for (uint64_t i = 0; i < w->n_tensors; i++)
        free(w->tensor_names[i]);
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->kv_keys[i]);
    free(w->tensor_names);
    free(w->kv_keys);
    free(w->tensor_bytes);
    free(w->out);
    memset(w, 0, sizeof *w);
    w->fd = -1;
}

static void w_put(struct gguf_writer *w, struct buf *b, const void *p, size_t n)
{
    if (buf_append(b, p, n) != BUF_OK && !w->st)
        w->st = GGUF_ERR_LIMIT;
}

static void w_u32(struct gguf_writer *w, struct buf *b, uint32_t v)
{
    w_put(w, b, &v, 4);
}

static void w_u64(struct gguf_writer *w, struct buf *b, uint64_t v)
{
    w_put(w, b, &v, 8);
}

static void w_str(struct gguf_writer *w, struct buf *b, const char *s)
{
    size_t n = strlen(s);
    w_u64(w, b, n);
    w_put(w, b, s, n);
}

static void w_key(struct gguf_writer *w, const char *key, enum gguf_type type)
{
    if (w->n_kv == w->cap_keys) {
        size_t cap = w->cap_keys ? w->cap_keys * 2 : 32;
        char **k = xcalloc(cap, sizeof *k);
        if (w->n_kv)
            memcpy(k, w->kv_keys, (size_t)w->n_kv * sizeof *k);
        free(w->kv_keys);
        w->kv_keys = k;
        w->cap_keys = cap;
    }
    w->kv_keys[w->n_kv++] = xstrdup(key);
    w_str(w, &w->meta, key);
    w_u32(w, &w->meta, (uint32_t)type);
}

void gguf_writer_add_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
    if (!strcmp(key, "general.alignment") && v != w->alignment && !w->st)
        w->st = GGUF_ERR_ALIGNMENT;
    w_key(w, key, GGUF_TYPE_UINT32);
    w_u32(w, &w->meta, v);
}

void gguf_writer_add_i32(struct gguf_writer *w, const char *key, int32_t v)
{
    w_key(w, key, GGUF_TYPE_INT32);
    w_put(w, &w->meta, &v, 4);
}

void gguf_writer_add_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
    w_key(w, key, GGUF_TYPE_UINT64);
    w_u64(w, &w->meta, v);
}

void gguf_writer_add_f32(struct gguf_writer *w, const char *key, float v)
{
    w_key(w, key, GGUF_TYPE_FLOAT32);
    w_put(w, &w->meta, &v, 4);
}

void gguf_writer_add_bool(struct gguf_writer *w, const char *key, int v)
{
    unsigned char b = v ? 1 : 0;
    w_key(w, key, GGUF_TYPE_BOOL);
    w_put(w, &w->meta, &b, 1);
}

void gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *v)
{
    w_key(w, key, GGUF_TYPE_STRING);
    w_str(w, &w->meta, v);
}

static void w_arr_head(struct gguf_writer *w, const char *key, enum gguf_type at, uint64_t n)
{
    w_key(w, key, GGUF_TYPE_ARRAY);
    w_u32(w, &w->meta, (uint32_t)at);
    w_u64(w, &w->meta, n);
}

void gguf_writer_add_arr_str(struct gguf_writer *w, const char *key, const char *const *v,
                             uint64_t n)
{
    w_arr_head(w, key, GGUF_TYPE_STRING, n);
    for (uint64_t i = 0; i < n; i++)
        w_str(w, &w->meta, v[i]);
}

void gguf_writer_add_arr_f32(struct gguf_writer *w, const char *key, const float *v, uint64_t n)
{
    w_arr_head(w, key, GGUF_TYPE_FLOAT32, n);
    if (n > SIZE_MAX / 4) {
        w->st = GGUF_ERR_LIMIT;
        return;
    }
    w_put(w, &w->meta, v, (size_t)n * 4);
}

void gguf_writer_add_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, uint64_t n)
{
    w_arr_head(w, key, GGUF_TYPE_INT32, n);
    if (n > SIZE_MAX / 4) {
        w->st = GGUF_ERR_LIMIT;
        return;
    }
    w_put(w, &w->meta, v, (size_t)n * 4);
}

void gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t n_dims,
                            const uint64_t *ne, uint32_t type)
{
    if (w->n_tensors == w->cap_names) {
        size_t cap = w->cap_names ? w->cap_names * 2 : 64;
        char **nm = xcalloc(cap, sizeof *nm);
        uint64_t *tb = xcalloc(cap, sizeof *tb);
        if (w->n_tensors) {
            memcpy(nm, w->tensor_names, (size_t)w->n_tensors * sizeof *nm);
            memcpy(tb, w->tensor_bytes, (size_t)w->n_tensors * sizeof *tb);
        }
        free(w->tensor_names);
        free(w->tensor_bytes);
        w->tensor_names = nm;
        w->tensor_bytes = tb;
        w->cap_names = cap;
    }
    uint64_t i = w->n_tensors++;
    w->tensor_names[i] = xstrdup(name);
    uint32_t be, bb;
    uint64_t n = 1;
    int bad = n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ggml_type_block(type, &be, &bb);
    for (uint32_t d = 0; !bad && d < n_dims; d++) {
        if (ne[d] > (uint64_t)INT64_MAX || (ne[d] && n > (uint64_t)INT64_MAX / ne[d]))
            bad = 1;
        else
            n *= ne[d];
    }
    if (!bad && (ne[0] % be || (n / be) > (uint64_t)INT64_MAX / bb))
        bad = 1;
    if (bad) {
        if (!w->st)
            w->st = GGUF_ERR_SHAPE;
        return;
    }
    uint64_t bytes = n / be * bb;
    w->tensor_bytes[i] = bytes;
    w_str(w, &w->infos, name);
    w_u32(w, &w->infos, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        w_u64(w, &w->infos, ne[d]);
    w_u32(w, &w->infos, type);
    w_u64(w, &w->infos, w->data_bytes);
    uint64_t padded = bytes + (w->alignment - bytes % w->alignment) % w->alignment;
    w->data_bytes += padded;
}

static int cmp_cstr_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *first_dup(char **names, uint64_t n)
{
    if (n < 2)
        return NULL;
    char **s = xcalloc((size_t)n, sizeof *s);
    memcpy(s, names, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_cstr_ptr);
    const char *dup = NULL;
    for (uint64_t i = 1; i < n && !dup; i++)
        if (!strcmp(s[i - 1], s[i]))
            dup = s[i];
    free(s);
    return dup;
}

static enum gguf_status w_flush(struct gguf_writer *w)
{
    size_t off = 0;
    while (off < w->out_len) {
        ssize_t r = write(w->fd, w->out + off, w->out_len - off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            w->st = GGUF_ERR_IO;
            return w->st;
        }
        off += (size_t)r;
    }
    w->out_len = 0;
    return GGUF_OK;
}

static enum gguf_status w_emit(struct gguf_writer *w, const void *p, size_t n)
{
    const unsigned char *s = p;
    while (n) {
        if (w->out_len == 0 && n >= w->out_cap) {
            /* Large chunk: write straight from the caller's memory. */
            ssize_t r = write(w->fd, s, n);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                w->st = GGUF_ERR_IO;
                return w->st;
            }
            s += r;
            n -= (size_t)r;
            w->file_bytes += (uint64_t)r;
            continue;
        }
        size_t take = w->out_cap - w->out_len;
        if (take > n)
            take = n;
        memcpy(w->out + w->out_len, s, take);
        w->out_len += take;
        w->file_bytes += take;
        s += take;
        n -= take;
        if (w->out_len == w->out_cap && w_flush(w))
            return w->st;
    }
    return GGUF_OK;
}

static enum gguf_status w_pad(struct gguf_writer *w)
{
    static const unsigned char zeros[256];
    uint64_t pad = (w->alignment - w->file_bytes % w->alignment) % w->alignment;
    while (pad) {
        size_t n = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        if (w_emit(w, zeros, n))
            return w->st;
        pad -= n;
    }
    return GGUF_OK;
}

static void w_errmsg(struct gguf_writer *w, int errno_saved, char *err, size_t err_len)
{
    if (!err || !err_len)
        return;
    if (w->st == GGUF_ERR_IO)
        snprintf(err, err_len, "write failed after %" PRIu64 " bytes: %s", w->file_bytes,
                 strerror(errno_saved));
    else
        snprintf(err, err_len, "gguf writer: %s", gguf_status_str(w->st));
}

/* Moves past completed tensors (writing their padding). */
static enum gguf_status w_advance(struct gguf_writer *w)
{
    while (w->i_tensor < w->n_tensors && w->tensor_written == w->tensor_bytes[w->i_tensor]) {
        if (w_pad(w))
            return w->st;
        w->i_tensor++;
        w->tensor_written = 0;
    }
    return GGUF_OK;
}

enum gguf_status gguf_writer_begin(struct gguf_writer *w, int fd, char *err, size_t err_len)
{
    const char *dup;
    if (w->st) {
        w_errmsg(w, 0, err, err_len);
        return w->st;
    }
    if ((dup = first_dup(w->kv_keys, w->n_kv)) != NULL) {
        w->st = GGUF_ERR_DUPLICATE;
        snprintf(err, err_len, "duplicate metadata key '%s'", dup);
        return w->st;
    }
    if ((dup = first_dup(w->tensor_names, w->n_tensors)) != NULL) {
        w->st = GGUF_ERR_DUPLICATE;
        snprintf(err, err_len, "duplicate tensor name '%s'", dup);
        return w->st;
    }
    w->fd = fd;
    w->out_cap = WRITER_OUT_BYTES;
    w->out = xmalloc(w->out_cap);
    uint32_t version = GGUF_VERSION;
    w_emit(w, GGUF_MAGIC, 4);
    w_emit(w, &version, 4);
    w_emit(w, &w->n_tensors, 8);
    w_emit(w, &w->n_kv, 8);
    w_emit(w, w->meta.data, w->meta.len);
    w_emit(w, w->infos.data, w->infos.len);
    w_pad(w);
    w_advance(w);
    if (w->st)
        w_errmsg(w, errno, err, err_len);
    return w->st;
}

enum gguf_status gguf_writer_data(struct gguf_writer *w, const void *data, size_t n, char *err,
                                  size_t err_len)
{
    const unsigned char *p = data;
    if (w->st) {
        w_errmsg(w, 0, err, err_len);
        return w->st;
    }
    if (w->fd < 0) {
        w->st = GGUF_ERR_USAGE;
        snprintf(err, err_len, "gguf writer: data before begin");
        return w->st;
    }
    while (n) {
        if (w->i_tensor >= w->n_tensors) {
            w->st = GGUF_ERR_USAGE;
            snprintf(err, err_len, "gguf writer: %zu bytes of data past the last tensor", n);
            return w->st;
        }
        uint64_t left = w->tensor_bytes[w->i_tensor] - w->tensor_written;
        size_t take = left < n ? (size_t)left : n;
        if (w_emit(w, p, take))
            break;
        w->tensor_written += take;
        p += take;
        n -= take;
        if (w_advance(w))
            break;
    }
    if (w->st)
        w_errmsg(w, errno, err, err_len);
    return w->st;
}

enum gguf_status gguf_writer_end(struct gguf_writer *w, char *err, size_t err_len)
{
    if (w->st) {
        w_errmsg(w, 0, err, err_len);
        return w->st;
    }
    if (w->fd < 0) {
        w->st = GGUF_ERR_USAGE;
        snprintf(err, err_len, "gguf writer: end before begin");
        return w->st;
    }
    if (w->i_tensor < w->n_tensors) {
        w->st = GGUF_ERR_USAGE;
        snprintf(err, err_len, "gguf writer: tensor '%s' got %" PRIu64 " of %" PRIu64 " bytes",
                 w->tensor_names[w->i_tensor], w->tensor_written, w->tensor_bytes[w->i_tensor]);
        return w->st;
    }
    if (w_flush(w))
        w_errmsg(w, errno, err, err_len);
    return w->st;
}

/* ---- f16 ---- */

uint16_t gguf_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) /* inf or NaN: NaN keeps its top payload bits, forced quiet */
        return (uint16_t)(sign | 0x7c00u | (x > 0x7f800000u ? 0x200u | ((x >> 13) & 0x3ffu) : 0));
    if (x >= 0x47800000u) /* >= 65536: overflow */
        return (uint16_t)(sign | 0x7c00u);
    if (x < 0x38800000u) {
        /* Below the smallest normal f16 (2^-14): the result is subnormal or zero. Adding 0.5
         * aligns the f16 subnormal's LSB (2^-24) with the f32 LSB, so the FPU's own
         * round-to-nearest-even does the rounding. */
        float a;
        memcpy(&a, &x, 4);
        a += 0.5f;
        uint32_t y;
        memcpy(&y, &a, 4);
        return (uint16_t)(sign | (y - 0x3f000000u));
    }
    /* Normal: rebias the exponent (127 -> 15), round the 13 dropped bits to nearest even. A carry
     * out of the mantissa bumps the exponent, up to inf for values >= 65520. */
    uint32_t odd = (x >> 13) & 1u;
    x += 0xc8000fffu + odd; /* (15 - 127) << 23, wrapped, + rounding bias */
    return (uint16_t)(sign | (x >> 13));
}

float gguf_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t x;
    if (e == 0x1f) {
        x = sign | 0x7f800000u | (m << 13);
    } else if (e) {
        x = sign | ((e + 112u) << 23) | (m << 13);
    } else {
        float v = (float)m * 0x1p-24f; /* subnormal (or zero): exact in f32 */
        memcpy(&x, &v, 4);
        x |= sign;
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* Rows use the F16C instructions where the CPU has them (exactly the same results as the scalar
 * code: both are IEEE conversions with round-to-nearest-even), else the scalar code. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#ifdef __clang__
#include <cpuid.h>
#endif

static int cpu_has_f16c(void)
{
    static int cached = -1; /* benign race: every thread computes the same value */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
#ifdef __clang__ /* clang 14 knows no "f16c" feature string (the fuzz targets build with it) */
        unsigned a, b, c, d;
        v = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_AVX) && (c & bit_F16C);
#else
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
#endif
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}

__attribute__((target("avx,f16c"))) static size_t f32_to_f16_f16c(const float *in, uint16_t *out,
                                                                    size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(void *)(out + i), h);
    }
    return i;
}

__attribute__((target("avx,f16c"))) static size_t f16_to_f32_f16c(const uint16_t *in, float *out,
                                                                    size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
    }
    return i;
}
#else
static int cpu_has_f16c(void)
{
    return 0;
}
static size_t f32_to_f16_f16c(const float *in, uint16_t *out, size_t n)
{
    return 0;
}
static size_t f16_to_f32_f16c(const uint16_t *in, float *out, size_t n)
{
    return 0;
}
#endif

void gguf_f32_to_f16_row(const float *in, uint16_t *out, size_t n)
{
    size_t i = cpu_has_f16c() ? f32_to_f16_f16c(in, out, n) : 0;
    for (; i < n; i++)
        out[i] = gguf_f32_to_f16(in[i]);
}

void gguf_f16_to_f32_row(const uint16_t *in, float *out, size_t n)
{
    size_t i = cpu_has_f16c() ? f16_to_f32_f16c(in, out, n) : 0;
    for (; i < n; i++)
        out[i] = gguf_f16_to_f32(in[i]);
}
