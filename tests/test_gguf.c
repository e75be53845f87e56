/* test_gguf: f16 conversion, the GGUF writer/reader, model_write_gguf + model_load (mmap and
 * read) against model_new_random, metadata keys and types, a llama.cpp-style file (gpt2 vocab,
 * qwen2, f16, extra tensor), every class of corrupted file, and `slmprobe model` in-process. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "test.h"

static char g_dir[256];

static const char *tpath(const char *name)
{
    static char p[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", g_dir, name);
    return p[k];
}

static unsigned char *slurp(const char *path, size_t *len)
{
    return (unsigned char *)file_read_all(path, (size_t)1 << 31, len);
}

static void spit(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fwrite(data, 1, len, f) == len);
    fclose(f);
}

static struct model_config micro_cfg(void)
{
    /* n_embd 256 so that a Q4_K tensor (256-element blocks) is structurally valid */
    struct model_config c = {MODEL_ARCH_LLAMA, "micro", 260, 256, 1,   4,  2, 64, 256, 128,
                             10000.0f,         1e-5f,   0,   0,   256, 257};
    return c;
}

static int weight_ptrs(const struct model *m, const float **p)
{
    int i = 0;
    p[i++] = m->w.token_embd;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const struct layer_weights *L = &m->w.layers[l];
        p[i++] = L->attn_norm;
        p[i++] = L->wq;
        p[i++] = L->wk;
        p[i++] = L->wv;
        if (m->cfg.qkv_bias) {
            p[i++] = L->bq;
            p[i++] = L->bk;
            p[i++] = L->bv;
        }
        p[i++] = L->wo;
        p[i++] = L->ffn_norm;
        p[i++] = L->w_gate;
        p[i++] = L->w_up;
        p[i++] = L->w_down;
    }
    p[i++] = m->w.output_norm;
    if (!m->cfg.tied_embeddings)
        p[i++] = m->w.output;
    return i;
}

/* The matrices as stored, in the same order (NULL for 1-D tensors). */
static int weight_mats(const struct model *m, const struct weight_mat **p)
{
    int i = 0;
    p[i++] = &m->w.m_embd;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const struct layer_weights *L = &m->w.layers[l];
        p[i++] = NULL;
        p[i++] = &L->mq;
        p[i++] = &L->mk;
        p[i++] = &L->mv;
        if (m->cfg.qkv_bias) {
            p[i++] = NULL;
            p[i++] = NULL;
            p[i++] = NULL;
        }
        p[i++] = &L->mo;
        p[i++] = NULL;
        p[i++] = &L->m_gate;
        p[i++] = &L->m_up;
        p[i++] = &L->m_down;
    }
    p[i++] = NULL;
    if (!m->cfg.tied_embeddings)
        p[i++] = &m->w.m_output;
    return i;
}

static void check_cfg_equal(const struct model_config *a, const struct model_config *b)
{
    CHECK_EQ_INT(a->arch, b->arch);
    CHECK_EQ_STR(a->name, b->name);
    CHECK_EQ_INT(a->n_vocab, b->n_vocab);
    CHECK_EQ_INT(a->n_embd, b->n_embd);
    CHECK_EQ_INT(a->n_layer, b->n_layer);
    CHECK_EQ_INT(a->n_head, b->n_head);
    CHECK_EQ_INT(a->n_head_kv, b->n_head_kv);
    CHECK_EQ_INT(a->head_dim, b->head_dim);
    CHECK_EQ_INT(a->n_ff, b->n_ff);
    CHECK_EQ_INT(a->n_ctx_train, b->n_ctx_train);
    CHECK(a->rope_theta == b->rope_theta);
    CHECK(a->norm_eps == b->norm_eps);
    CHECK_EQ_INT(a->qkv_bias, b->qkv_bias);
    CHECK_EQ_INT(a->tied_embeddings, b->tied_embeddings);
    CHECK_EQ_INT(a->bos_id, b->bos_id);
    CHECK_EQ_INT(a->eos_id, b->eos_id);
}

/* Every weight of m equals ref's: exactly for f32 tensors, as f16(ref) for 2-D ones when f16. */
/* half: 0 all f32; 1 matrices F16; 2 matrices BF16 (values rounded as the writer rounds). */
static void check_weights(const struct model *m, const struct model *ref, int half)
{
    const uint32_t half_type = half == 2 ? GGML_TYPE_BF16 : GGML_TYPE_F16;
    int n = model_tensors(&ref->cfg, NULL);
    struct model_tensor_desc *d = calloc((size_t)n, sizeof *d);
    model_tensors(&ref->cfg, d);
    const float **pa = calloc((size_t)n, sizeof *pa), **pb = calloc((size_t)n, sizeof *pb);
    const struct weight_mat **qa = calloc((size_t)n, sizeof *qa);
    float **tmp = calloc((size_t)n, sizeof *tmp);
    CHECK_EQ_INT(weight_ptrs(m, pa), n);
    CHECK_EQ_INT(weight_ptrs(ref, pb), n);
    CHECK_EQ_INT(weight_mats(m, qa), n);
    for (int i = 0; i < n; i++) {
        size_t ne = (size_t)(d[i].ne[0] * d[i].ne[1]);
        if (!pa[i] && qa[i]) { /* used as stored (F16/BF16 in the map): compare its values */
            CHECK(qa[i]->type == half_type && qa[i]->data != NULL);
            tmp[i] = malloc(ne * sizeof(float));
            CHECK(quant_dequantize_row(qa[i]->type, qa[i]->data, tmp[i], ne) == 0);
            pa[i] = tmp[i];
        }
        if (!half || d[i].n_dims == 1) {
            CHECK_MSG(memcmp(pa[i], pb[i], ne * sizeof(float)) == 0, "tensor %s differs",
                      d[i].name);
            continue;
        }
        size_t bad = 0;
        for (size_t k = 0; k < ne; k++) {
            float want = half == 2 ? quant_bf16_to_f32(quant_f32_to_bf16(pb[i][k]))
                                   : gguf_f16_to_f32(gguf_f32_to_f16(pb[i][k]));
            float tol =
                half == 2 ? fabsf(pb[i][k]) * 0x1p-8f : fabsf(pb[i][k]) * 0x1p-11f + 0x1p-25f;
            if (pa[i][k] != want || fabsf(pa[i][k] - pb[i][k]) > tol)
                bad++;
        }
        CHECK_MSG(bad == 0, "tensor %s: %zu values off", d[i].name, bad);
    }
    if (m->cfg.tied_embeddings)
        CHECK(m->w.output == m->w.token_embd && m->w.m_output.data == m->w.m_embd.data);
    for (int i = 0; i < n; i++)
        free(tmp[i]);
    free(tmp);
    free(qa);
    free(pa);
    free(pb);
    free(d);
}

static int files_equal(const char *a, const char *b)
{
    size_t la, lb;
    unsigned char *x = slurp(a, &la), *y = slurp(b, &lb);
    int eq = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return eq;
}

/* ---- f16 ---- */

static void test_f16_exhaustive(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = gguf_f16_to_f32((uint16_t)h);
        uint16_t back = gguf_f32_to_f16(f);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) { /* NaN stays NaN, sign kept */
            if (!(f != f) || (back & 0x7c00) != 0x7c00 || !(back & 0x3ff) ||
                (back & 0x8000) != (h & 0x8000))
                bad++;
        } else if (back != h) {
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(gguf_f16_to_f32(0x3c00) == 1.0f);
    CHECK(gguf_f16_to_f32(0xc000) == -2.0f);
    CHECK(gguf_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(gguf_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(gguf_f16_to_f32(0x03ff) == 0x3ffp-24f);
    CHECK(gguf_f16_to_f32(0x0400) == 0x1p-14f);
    CHECK(gguf_f16_to_f32(0x7c00) == INFINITY);
    CHECK(gguf_f16_to_f32(0xfc00) == -INFINITY);
    CHECK(signbit(gguf_f16_to_f32(0x8000)) && gguf_f16_to_f32(0x8000) == 0.0f);
}

static void test_f16_rounding(void)
{
    /* nearest-even ties, overflow, subnormals */
    CHECK_EQ_INT(gguf_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);            /* tie -> even */
    CHECK_EQ_INT(gguf_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);        /* tie -> even up */
    CHECK_EQ_INT(gguf_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01); /* above tie */
    CHECK_EQ_INT(gguf_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ_INT(gguf_f32_to_f16(65519.99f), 0x7bff);
    CHECK_EQ_INT(gguf_f32_to_f16(65520.0f), 0x7c00); /* rounds to inf */
    CHECK_EQ_INT(gguf_f32_to_f16(1e10f), 0x7c00);
    CHECK_EQ_INT(gguf_f32_to_f16(-1e10f), 0xfc00);
    CHECK_EQ_INT(gguf_f32_to_f16(INFINITY), 0x7c00);
    CHECK_EQ_INT(gguf_f32_to_f16(-INFINITY), 0xfc00);
    CHECK((gguf_f32_to_f16(NAN) & 0x7e00) == 0x7e00);
    CHECK_EQ_INT(gguf_f32_to_f16(0x1p-24f), 0x0001);
    CHECK_EQ_INT(gguf_f32_to_f16(0x1p-25f), 0x0000); /* tie -> even (0) */
    CHECK_EQ_INT(gguf_f32_to_f16(3 * 0x1p-26f), 0x0001);
    CHECK_EQ_INT(gguf_f32_to_f16(3 * 0x1p-25f), 0x0002); /* 1.5 ulp -> 2 */
    CHECK_EQ_INT(gguf_f32_to_f16(-0x1p-24f), 0x8001);
    CHECK_EQ_INT(gguf_f32_to_f16(0x1p-14f - 0x1p-30f), 0x0400); /* up to min normal */
    CHECK_EQ_INT(gguf_f32_to_f16(1e-30f), 0x0000);
    CHECK_EQ_INT(gguf_f32_to_f16(-0.0f), 0x8000);
#ifdef __FLT16_MAX__
    /* Against the compiler's own conversion on random bit patterns and around every f16 value. */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    int bad = 0;
    for (int i = 0; i < 2000000; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        uint32_t bits = (uint32_t)s;
        if (i & 1) /* concentrate on the f16 range */
            bits = (bits & 0x80000000u) | (0x33000000u + (bits & 0x0fffffffu) % 0x14800000u);
        float f;
        memcpy(&f, &bits, 4);
        if (f != f)
            continue;
        _Float16 h = (_Float16)f;
        uint16_t want;
        memcpy(&want, &h, 2);
        if (gguf_f32_to_f16(f) != want && bad++ < 5)
            fprintf(stderr, "  0x%08x -> 0x%04x, want 0x%04x\n", bits, gguf_f32_to_f16(f), want);
    }
    CHECK_EQ_INT(bad, 0);
#endif
}

/* The row functions (F16C where the CPU has it) agree with the scalar ones bit for bit. */
static void test_f16_rows(void)
{
    size_t n = 65536 + 5; /* not a multiple of 8: the scalar tail runs too */
    uint16_t *h = malloc(n * sizeof *h), *h2 = malloc(n * sizeof *h2);
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++)
        h[i] = (uint16_t)i;
    gguf_f16_to_f32_row(h, f, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float want = gguf_f16_to_f32(h[i]);
        if (want != want ? f[i] == f[i] : memcmp(&want, &f[i], 4) != 0)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t bits = (s & 0x8fffffffu) | ((s & 1) ? 0x30000000u : 0);
        memcpy(&f[i], &bits, 4);
    }
    gguf_f32_to_f16_row(f, h2, n);
    bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += f[i] == f[i] && h2[i] != gguf_f32_to_f16(f[i]);
    CHECK_EQ_INT(bad, 0);
    free(h);
    free(h2);
    free(f);
}

/* ---- writer / reader ---- */

static void test_kv_types_roundtrip(void)
{
    const char *path = tpath("kv.gguf");
    struct gguf_writer w;
    gguf_writer_init(&w, 64);
    gguf_writer_add_u32(&w, "general.alignment", 64);
    gguf_writer_add_u32(&w, "a.u32", 4000000000u);
    gguf_writer_add_i32(&w, "a.i32", -5);
    gguf_writer_add_u64(&w, "a.u64", 1ull << 40);
    gguf_writer_add_f32(&w, "a.f32", 0.25f);
    gguf_writer_add_bool(&w, "a.bool", 1);
    gguf_writer_add_str(&w, "a.str", "h\xc3\xa9llo");
    const char *strs[] = {"", "x", "yz"};
    gguf_writer_add_arr_str(&w, "a.astr", strs, 3);
    float fs[] = {1.5f, -2.0f};
    gguf_writer_add_arr_f32(&w, "a.af32", fs, 2);
    int32_t is[] = {7, -8, 9};
    gguf_writer_add_arr_i32(&w, "a.ai32", is, 3);
    uint64_t ne1[1] = {3}, ne2[2] = {2, 5}, ne3[3] = {32, 1, 2};
    gguf_writer_add_tensor(&w, "t.one", 1, ne1, GGML_TYPE_F32);
    gguf_writer_add_tensor(&w, "t.two", 2, ne2, GGML_TYPE_F16);
    gguf_writer_add_tensor(&w, "t.q8", 3, ne3, GGML_TYPE_Q8_0);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char err[256];
    CHECK(gguf_writer_begin(&w, fd, err, sizeof err) == GGUF_OK);
    float one[3] = {1, 2, 3};
    uint16_t two[10];
    for (int i = 0; i < 10; i++)
        two[i] = gguf_f32_to_f16((float)i);
    unsigned char q8[68];
    memset(q8, 0xab, sizeof q8);
    /* odd chunking across tensor boundaries */
    unsigned char all[12 + 20 + 68];
    memcpy(all, one, 12);
    memcpy(all + 12, two, 20);
    memcpy(all + 32, q8, 68);
    CHECK(gguf_writer_data(&w, all, 5, err, sizeof err) == GGUF_OK);
    CHECK(gguf_writer_data(&w, all + 5, 30, err, sizeof err) == GGUF_OK);
    CHECK(gguf_writer_data(&w, all + 35, sizeof all - 35, err, sizeof err) == GGUF_OK);
    CHECK(gguf_writer_end(&w, err, sizeof err) == GGUF_OK);
    gguf_writer_free(&w);
    close(fd);

    size_t len;
    unsigned char *buf = slurp(path, &len);
    struct gguf_file g;
    CHECK(gguf_parse(&g, buf, len, len, NULL, err, sizeof err) == GGUF_OK);
    CHECK_EQ_INT(g.version, 3);
    CHECK_EQ_INT(g.alignment, 64);
    CHECK_EQ_INT(g.n_kv, 10);
    CHECK_EQ_INT(g.n_tensors, 3);
    CHECK_EQ_INT(g.data_offset % 64, 0);
    int64_t i64;
    double f64;
    int bv;
    struct gguf_str s;
    CHECK(gguf_kv_get_i64(gguf_find_kv(&g, "a.u32"), &i64) == 0 && i64 == 4000000000ll);
    CHECK(gguf_kv_get_i64(gguf_find_kv(&g, "a.i32"), &i64) == 0 && i64 == -5);
    CHECK(gguf_kv_get_i64(gguf_find_kv(&g, "a.u64"), &i64) == 0 && i64 == 1ll << 40);
    CHECK(gguf_kv_get_f64(gguf_find_kv(&g, "a.f32"), &f64) == 0 && f64 == 0.25);
    CHECK(gguf_kv_get_i64(gguf_find_kv(&g, "a.f32"), &i64) == -1);
    CHECK(gguf_kv_get_bool(gguf_find_kv(&g, "a.bool"), &bv) == 0 && bv == 1);
    CHECK(gguf_kv_get_str(gguf_find_kv(&g, "a.str"), &s) == 0 && s.len == 6 &&
          !memcmp(s.ptr, "h\xc3\xa9llo", 6));
    CHECK(gguf_kv_get_str(gguf_find_kv(&g, "a.u32"), &s) == -1);
    CHECK(gguf_find_kv(&g, "a.nope") == NULL);
    CHECK(gguf_kv_get_i64(NULL, &i64) == -1);
    const struct gguf_kv *as = gguf_find_kv(&g, "a.astr");
    CHECK(as && as->type == GGUF_TYPE_ARRAY && as->arr_type == GGUF_TYPE_STRING && as->arr_n == 3);
    struct gguf_str v[3];
    CHECK(gguf_kv_arr_strs(as, v) == 0);
    CHECK(v[0].len == 0 && v[1].len == 1 && v[2].len == 2 && !memcmp(v[2].ptr, "yz", 2));
    CHECK(gguf_kv_arr_str(as, 2, &s) == 0 && s.len == 2 && !memcmp(s.ptr, "yz", 2));
    CHECK(gguf_kv_arr_str(as, 3, &s) == -1);
    CHECK(gguf_kv_arr_f64(gguf_find_kv(&g, "a.af32"), 1, &f64) == 0 && f64 == -2.0);
    CHECK(gguf_kv_arr_i64(gguf_find_kv(&g, "a.ai32"), 1, &i64) == 0 && i64 == -8);
    CHECK(gguf_kv_arr_i64(gguf_find_kv(&g, "a.ai32"), 3, &i64) == -1);
    const struct gguf_tensor_info *t = gguf_find_tensor(&g, "t.two");
    CHECK(t && t->type == GGML_TYPE_F16 && t->n_dims == 2 && t->ne[0] == 2 && t->ne[1] == 5 &&
          t->ne[2] == 1 && t->n_bytes == 20 && t->offset == 64);
    CHECK(t && t->data && !memcmp(t->data, two, 20));
    t = gguf_find_tensor(&g, "t.q8");
    CHECK(t && t->n_elems == 64 && t->n_bytes == 68 && t->offset == 128 && t->data &&
          !memcmp(t->data, q8, 68));
    t = gguf_find_tensor(&g, "t.one");
    CHECK(t && t->offset == 0 && t->data && !memcmp(t->data, one, 12));
    CHECK(gguf_find_tensor(&g, "t.on") == NULL && gguf_find_tensor(&g, "t.onee") == NULL);
    CHECK_EQ_INT(len, g.data_offset + 128 + 128); /* last tensor padded too */
    gguf_file_free(&g);
    gguf_file_free(&g);
    free(buf);
}

static void test_writer_misuse(void)
{
    char err[256];
    uint64_t ne[1] = {4};
    int fd = open(tpath("misuse.gguf"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    struct gguf_writer w;

    gguf_writer_init(&w, 32);
    gguf_writer_add_tensor(&w, "x", 1, ne, GGML_TYPE_F32);
    gguf_writer_add_tensor(&w, "x", 1, ne, GGML_TYPE_F32);
    CHECK(gguf_writer_begin(&w, fd, err, sizeof err) == GGUF_ERR_DUPLICATE);
    CHECK_MSG(strstr(err, "duplicate tensor name 'x'") != NULL, "%s", err);
    gguf_writer_free(&w);

    gguf_writer_init(&w, 32);
    gguf_writer_add_u32(&w, "k", 1);
    gguf_writer_add_str(&w, "k", "v");
    CHECK(gguf_writer_begin(&w, fd, err, sizeof err) == GGUF_ERR_DUPLICATE);
    gguf_writer_free(&w);

    gguf_writer_init(&w, 32);
    gguf_writer_add_u32(&w, "general.alignment", 64); /* disagrees with the writer's 32 */
    CHECK(gguf_writer_begin(&w, fd, err, sizeof err) == GGUF_ERR_ALIGNMENT);
    gguf_writer_free(&w);

    gguf_writer_init(&w, 32);
    uint64_t bad_ne[1] = {33};
    gguf_writer_add_tensor(&w, "q", 1, bad_ne, GGML_TYPE_Q4_0); /* not a multiple of 32 */
    CHECK(gguf_writer_begin(&w, fd, err, sizeof err) == GGUF_ERR_SHAPE);
    gguf_writer_free(&w);

    gguf_writer_init(&w, 32);
    float data[5] = {0};
    gguf_writer_add_tensor(&w, "x", 1, ne, GGML_TYPE_F32);
    CHECK(gguf_writer_data(&w, data, 4, err, sizeof err) == GGUF_ERR_USAGE); /* before begin */
    gguf_writer_free(&w);

    gguf_writer_init(&w, 32);
    gguf_writer_add_tensor(&w, "x", 1, ne, GGML_TYPE_F32);
    CHECK(gguf_writer_begin(&w, fd, err, sizeof err) == GGUF_OK);
    CHECK(gguf_writer_data(&w, data, 20, err, sizeof err) == GGUF_ERR_USAGE); /* too much */
    gguf_writer_free(&w);

    gguf_writer_init(&w, 32);
    gguf_writer_add_tensor(&w, "x", 1, ne, GGML_TYPE_F32);
    CHECK(gguf_writer_begin(&w, fd, err, sizeof err) == GGUF_OK);
    CHECK(gguf_writer_data(&w, data, 8, err, sizeof err) == GGUF_OK);
    CHECK(gguf_writer_end(&w, err, sizeof err) == GGUF_ERR_USAGE); /* too little */
    CHECK_MSG(strstr(err, "'x' got 8 of 16 bytes") != NULL, "%s", err);
    gguf_writer_free(&w);
    gguf_writer_free(NULL);

    /* write errors: a read-only fd */
    int rfd = open(tpath("misuse.gguf"), O_RDONLY);
    gguf_writer_init(&w, 32);
    gguf_writer_add_str(&w, "k", "v");
    enum gguf_status st = gguf_writer_begin(&w, rfd, err, sizeof err);
    if (st == GGUF_OK)
        st = gguf_writer_end(&w, err, sizeof err);
    CHECK(st == GGUF_ERR_IO);
    CHECK_MSG(strstr(err, "write failed") != NULL, "%s", err);
    gguf_writer_free(&w);
    close(rfd);
    close(fd);
}

static void test_parse_prefix_incomplete(void)
{
    struct model_config c = micro_cfg();
    char err[512];
    const char *path = tpath("prefix.gguf");
    CHECK(model_write_gguf(&c, 1, MODEL_DTYPE_F32, path, err, sizeof err) == 0);
    size_t len;
    unsigned char *buf = slurp(path, &len);
    struct gguf_file g;
    CHECK(gguf_parse(&g, buf, len, len, NULL, err, sizeof err) == GGUF_OK);
    uint64_t header = g.header_bytes;
    gguf_file_free(&g);
    /* every prefix shorter than the header asks for more, never claims the file is bad */
    int bad = 0;
    for (uint64_t n = 0; n < header; n += (n < 64 ? 1 : 7)) {
        uint64_t need = 0;
        enum gguf_status st = gguf_parse(&g, buf, n, len, &need, err, sizeof err);
        if (st != GGUF_ERR_INCOMPLETE || need <= n || need > header)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* growing to what it asks for converges */
    uint64_t have = 16, need = 0;
    int rounds = 0;
    while (gguf_parse(&g, buf, have, len, &need, err, sizeof err) == GGUF_ERR_INCOMPLETE &&
           rounds++ < 100000)
        have = need;
    CHECK(g.n_tensors == (uint64_t)model_tensors(&c, NULL));
    /* a tensor's data outside the prefix is NULL, inside it is a view */
    const struct gguf_tensor_info *t = gguf_find_tensor(&g, "output.weight");
    CHECK(t && t->data == NULL);
    gguf_file_free(&g);
    CHECK(gguf_parse(&g, buf, len, len, NULL, err, sizeof err) == GGUF_OK);
    t = gguf_find_tensor(&g, "output.weight");
    CHECK(t && t->data == buf + t->file_offset);
    gguf_file_free(&g);
    free(buf);
}

/* ---- model files ---- */

static void test_write_deterministic(void)
{
    struct model_config c;
    CHECK(model_preset("tiny", &c) == 0);
    char err[512];
    CHECK(model_write_gguf(&c, 1, MODEL_DTYPE_F32, tpath("d1.gguf"), err, sizeof err) == 0);
    CHECK(model_write_gguf(&c, 1, MODEL_DTYPE_F32, tpath("d1b.gguf"), err, sizeof err) == 0);
    CHECK(model_write_gguf(&c, 2, MODEL_DTYPE_F32, tpath("d2.gguf"), err, sizeof err) == 0);
    CHECK(model_write_gguf(&c, 1, MODEL_DTYPE_F16, tpath("h1.gguf"), err, sizeof err) == 0);
    CHECK(model_write_gguf(&c, 1, MODEL_DTYPE_F16, tpath("h1b.gguf"), err, sizeof err) == 0);
    CHECK(files_equal(tpath("d1.gguf"), tpath("d1b.gguf")));
    CHECK(!files_equal(tpath("d1.gguf"), tpath("d2.gguf")));
    CHECK(files_equal(tpath("h1.gguf"), tpath("h1b.gguf")));
    CHECK(!files_equal(tpath("d1.gguf"), tpath("h1.gguf")));
    /* rewriting over an existing file gives the same bytes, and no temp file is left */
    CHECK(model_write_gguf(&c, 1, MODEL_DTYPE_F32, tpath("d2.gguf"), err, sizeof err) == 0);
    CHECK(files_equal(tpath("d1.gguf"), tpath("d2.gguf")));
    DIR *dir = opendir(g_dir);
    struct dirent *e;
    int tmp_left = 0;
    while (dir && (e = readdir(dir)) != NULL)
        tmp_left += strstr(e->d_name, ".tmp.") != NULL;
    if (dir)
        closedir(dir);
    CHECK_EQ_INT(tmp_left, 0);
    /* sizes: f16 roughly halves the file */
    struct stat s32, s16;
    CHECK(stat(tpath("d1.gguf"), &s32) == 0 && stat(tpath("h1.gguf"), &s16) == 0);
    CHECK((uint64_t)s32.st_size > model_n_params(&c) * 4);
    CHECK((uint64_t)s16.st_size < model_n_params(&c) * 2 + 64 * 1024 + 1024 * 64);
}

static uint64_t f16_matrix_elems(const struct model_config *c)
{
    int n = model_tensors(c, NULL);
    struct model_tensor_desc *d = calloc((size_t)n, sizeof *d);
    model_tensors(c, d);
    uint64_t e = 0;
    for (int i = 0; i < n; i++)
        e += d[i].n_dims == 2 ? d[i].ne[0] * d[i].ne[1] : 0;
    free(d);
    return e;
}

/* f16: 0 f32 file, 1 f16 file, 2 bf16 file (check_weights' half). */
static void check_load_both(const char *path, const struct model *ref, int f16)
{
    const enum model_dtype want_dtype = f16 == 2 ? MODEL_DTYPE_BF16
                                        : f16    ? MODEL_DTYPE_F16
                                                 : MODEL_DTYPE_F32;
    char err[512];
    enum model_load_format fmts[2] = {MODEL_LOAD_MMAP, MODEL_LOAD_READ};
    struct stat st;
    CHECK(stat(path, &st) == 0);
    for (int k = 0; k < 2; k++) {
        struct model *m = model_load(path, fmts[k], err, sizeof err);
        CHECK_MSG(m != NULL, "%s", err);
        if (!m)
            continue;
        check_cfg_equal(&m->cfg, &ref->cfg);
        check_weights(m, ref, f16);
        CHECK_EQ_INT(m->file_dtype, want_dtype);
        /* mmap'd f16/bf16 matrices are used as stored (2 bytes a value), everything else f32 */
        uint64_t want_bytes = model_n_params(&ref->cfg) * 4;
        if (f16 && fmts[k] == MODEL_LOAD_MMAP)
            want_bytes -= 2 * f16_matrix_elems(&ref->cfg);
        CHECK_EQ_INT(m->weight_bytes, want_bytes);
        CHECK_EQ_INT(m->load.file_bytes, st.st_size);
        CHECK(m->load.open_ns > 0);
        if (fmts[k] == MODEL_LOAD_MMAP && !f16) {
            CHECK(m->map != NULL && m->owned == NULL); /* used in place */
            CHECK(m->load.touch_ns > 0);
            CHECK((const unsigned char *)m->w.token_embd > (const unsigned char *)m->map &&
                  (const unsigned char *)m->w.token_embd <
                      (const unsigned char *)m->map + m->map_bytes);
        } else if (fmts[k] == MODEL_LOAD_MMAP) {
            /* f16/bf16 matrices and f32 norms all used in place: nothing converted or owned */
            uint32_t ht = f16 == 2 ? GGML_TYPE_BF16 : GGML_TYPE_F16;
            CHECK(m->map != NULL && m->owned == NULL && m->owned_floats == 0);
            CHECK_EQ_INT(m->load.convert_bytes, 0);
            CHECK(m->w.layers[0].wq == NULL && m->w.layers[0].mq.type == ht);
            CHECK(m->w.token_embd == NULL && m->w.m_embd.type == ht);
            CHECK((const unsigned char *)m->w.m_embd.data > (const unsigned char *)m->map &&
                  (const unsigned char *)m->w.m_embd.data <
                      (const unsigned char *)m->map + m->map_bytes);
        } else {
            CHECK(m->map == NULL && m->owned != NULL &&
                  m->owned_floats == model_n_params(&ref->cfg));
        }
        if (f16 && fmts[k] == MODEL_LOAD_READ)
            CHECK(m->load.convert_ns > 0);
        CHECK_EQ_INT(m->tok.kind, TOK_KIND_SLM);
        CHECK_EQ_INT(m->tok.n_vocab, ref->tok.n_vocab);
        int same_vocab = 1;
        for (int i = 0; i < ref->tok.n_vocab; i++)
            same_vocab &= !strcmp(m->tok.text[i], ref->tok.text[i]) &&
                          m->tok.piece_len[i] == ref->tok.piece_len[i] &&
                          m->tok.type[i] == ref->tok.type[i];
        CHECK(same_vocab);
        model_free(m);
    }
}

static void test_load_f32_matches_random(void)
{
    struct model_config c;
    CHECK(model_preset("tiny", &c) == 0);
    char err[512];
    const char *path = tpath("l32.gguf");
    CHECK(model_write_gguf(&c, 7, MODEL_DTYPE_F32, path, err, sizeof err) == 0);
    struct model *ref = model_new_random(&c, 7, err, sizeof err);
    CHECK(ref != NULL);
    if (ref)
        check_load_both(path, ref, 0);
    model_free(ref);
    model_free(NULL);
}

static void test_load_f16_matches_random(void)
{
    struct model_config c;
    CHECK(model_preset("tiny", &c) == 0);
    char err[512];
    const char *path = tpath("l16.gguf");
    CHECK(model_write_gguf(&c, 7, MODEL_DTYPE_F16, path, err, sizeof err) == 0);
    struct model *ref = model_new_random(&c, 7, err, sizeof err);
    CHECK(ref != NULL);
    if (ref)
        check_load_both(path, ref, 1);
    model_free(ref);
}

/* A bf16 file (--dtype bf16: matrices BF16, norms F32): mmap computes on the matrices in the
 * map (nothing owned or converted; weight bytes 2 a value), read() converts all to f32; both
 * equal the random model rounded to bf16; model info counts the same weight bytes. */
static void test_load_bf16_as_stored(void)
{
    struct model_config c;
    CHECK(model_preset("tiny", &c) == 0);
    char err[512];
    const char *path = tpath("lb16.gguf");
    CHECK(model_write_gguf(&c, 7, MODEL_DTYPE_BF16, path, err, sizeof err) == 0);
    struct model *ref = model_new_random(&c, 7, err, sizeof err);
    CHECK(ref != NULL);
    if (ref)
        check_load_both(path, ref, 2);
    model_free(ref);
    struct model_file_info info;
    CHECK(model_file_info(path, &info, err, sizeof err) == 0);
    CHECK(info.file_dtype == MODEL_DTYPE_BF16);
    CHECK_EQ_INT(info.weight_bytes, model_n_params(&c) * 4 - 2 * f16_matrix_elems(&c));
}

/* --dtype q8_0 / q4_0 / bf16: the matrices in that type (ffn_down's 688-value rows in F16, as
 * llama.cpp's converter falls back), norms F32, general.file_type 7 / 2 / 32; each matrix's
 * bytes are exactly quant_quantize_row of model_fill_tensor's values; bytes and type mix in
 * model_file_info; the same arguments give the same file. */
static void check_block_file(enum model_dtype dtype, uint32_t mat_type)
{
    struct model_config c;
    CHECK(model_preset("tiny", &c) == 0);
    char err[512];
    const char *path = tpath("lq.gguf"), *path2 = tpath("lq2.gguf");
    CHECK(model_write_gguf(&c, 7, dtype, path, err, sizeof err) == 0);
    CHECK(model_write_gguf(&c, 7, dtype, path2, err, sizeof err) == 0);
    size_t len = 0, len2 = 0;
    unsigned char *buf = slurp(path, &len), *buf2 = slurp(path2, &len2);
    CHECK(buf && buf2 && len == len2 && memcmp(buf, buf2, len) == 0);
    struct gguf_file g;
    CHECK(gguf_parse(&g, buf, len, len, NULL, err, sizeof err) == GGUF_OK);
    int64_t ft = -1;
    CHECK(gguf_kv_get_i64(gguf_find_kv(&g, "general.file_type"), &ft) == 0);
    CHECK_EQ_INT(ft, (int64_t)dtype);
    int n = model_tensors(&c, NULL);
    struct model_tensor_desc *d = calloc((size_t)n, sizeof *d);
    model_tensors(&c, d);
    uint64_t n_mat = 0, n_f16 = 0;
    for (int i = 0; i < n; i++) {
        const struct gguf_tensor_info *t = gguf_find_tensor(&g, d[i].name);
        CHECK(t != NULL);
        if (!t)
            continue;
        int block = mat_type == GGML_TYPE_Q8_0 || mat_type == GGML_TYPE_Q4_0 ||
                    mat_type == GGML_TYPE_Q6_K; /* Q6_K -> Q8_0 -> F16 for 688 */
        uint32_t want = d[i].n_dims == 1           ? GGML_TYPE_F32
                        : block && d[i].ne[0] % 32 ? GGML_TYPE_F16
                                                   : mat_type;
        CHECK_MSG(t->type == want, "%s: %s", d[i].name, ggml_type_name(t->type));
        n_mat += want == mat_type;
        n_f16 += want == GGML_TYPE_F16 && mat_type != GGML_TYPE_F16;
        if (t->type != mat_type)
            continue;
        size_t ne = (size_t)(d[i].ne[0] * d[i].ne[1]);
        float *v = malloc(ne * sizeof *v);
        unsigned char *q = malloc(quant_row_bytes(mat_type, ne));
        model_fill_tensor(7, i, &d[i], v);
        CHECK(quant_quantize_row(mat_type, v, q, ne) == 0);
        CHECK_MSG(t->n_bytes == quant_row_bytes(mat_type, ne) &&
                      memcmp(t->data, q, (size_t)t->n_bytes) == 0,
                  "%s bytes differ", d[i].name);
        free(v), free(q);
    }
    struct model_file_info info;
    CHECK(model_file_info(path, &info, err, sizeof err) == 0);
    CHECK_EQ_INT(info.file_dtype, dtype);
    CHECK_EQ_INT(info.type_tensors[mat_type], n_mat);
    CHECK_EQ_INT(info.type_tensors[GGML_TYPE_F16], n_f16);
    CHECK(info.type_tensors[GGML_TYPE_F32] == (uint32_t)(n - n_mat - n_f16));
    uint64_t sum = 0;
    for (int t = 0; t < MODEL_N_GGML_TYPES; t++)
        sum += info.type_bytes[t];
    CHECK(sum > 0 && sum < info.file_bytes);
    gguf_file_free(&g);
    free(d);
    free(buf), free(buf2);
}

static void test_write_block_types(void)
{
    check_block_file(MODEL_DTYPE_Q8_0, GGML_TYPE_Q8_0);
    check_block_file(MODEL_DTYPE_Q4_0, GGML_TYPE_Q4_0);
    check_block_file(MODEL_DTYPE_BF16, GGML_TYPE_BF16);
    check_block_file(MODEL_DTYPE_Q6_K, GGML_TYPE_Q6_K);
    enum model_dtype dt;
    CHECK(model_dtype_parse("q8_0", &dt) == 0 && dt == MODEL_DTYPE_Q8_0);
    CHECK(model_dtype_parse("q4", &dt) == -1);
}

static void test_qwen2_bias_tied_roundtrip(void)
{
    struct model_config c = {MODEL_ARCH_QWEN2, "small qwen", 300, 64, 2,   4,  2, 16, 96, 512,
                             1000000.0f,       1e-6f,        1,   1,  256, 257};
    char err[512];
    const char *path = tpath("qwen.gguf");
    CHECK(model_write_gguf(&c, 3, MODEL_DTYPE_F16, path, err, sizeof err) == 0);
    struct model *ref = model_new_random(&c, 3, err, sizeof err);
    CHECK(ref != NULL);
    if (ref)
        check_load_both(path, ref, 1);
    model_free(ref);
    struct model_file_info info;
    CHECK(model_file_info(path, &info, err, sizeof err) == 0);
    CHECK(info.cfg.qkv_bias == 1 && info.cfg.tied_embeddings == 1);
    CHECK(info.cfg.arch == MODEL_ARCH_QWEN2);
    CHECK(info.file_dtype == MODEL_DTYPE_F16);
    CHECK(info.weight_bytes == model_n_params(&c) * 4 - 2 * f16_matrix_elems(&c));
    CHECK(info.n_tensors == (uint64_t)model_tensors(&c, NULL) && info.n_tensors_unused == 0);
    CHECK_EQ_STR(info.tok_model, "llama");
}

static void test_read_large_header(void)
{
    /* A 200k vocabulary makes the header several MB: read() must grow its header buffer. */
    struct model_config c = {MODEL_ARCH_LLAMA, "big vocab", 200000, 8, 1,   2,  1, 4, 16, 64,
                             10000.0f,         1e-5f,       0,      0, 256, 257};
    char err[512];
    const char *path = tpath("bigvocab.gguf");
    CHECK(model_write_gguf(&c, 5, MODEL_DTYPE_F32, path, err, sizeof err) == 0);
    struct model *ref = model_new_random(&c, 5, err, sizeof err);
    struct model *m = model_load(path, MODEL_LOAD_READ, err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    if (m && ref) {
        check_weights(m, ref, 0);
        CHECK_EQ_INT(m->tok.n_vocab, 200000);
        CHECK_EQ_STR(m->tok.text[199999], ref->tok.text[199999]);
    }
    model_free(m);
    model_free(ref);
}

static void test_metadata_keys(void)
{
    struct model_config c;
    CHECK(model_preset("tiny", &c) == 0);
    char err[512];
    const char *path = tpath("meta.gguf");
    CHECK(model_write_gguf(&c, 0, MODEL_DTYPE_F16, path, err, sizeof err) == 0);
    size_t len;
    unsigned char *buf = slurp(path, &len);
    struct gguf_file g;
    CHECK(gguf_parse(&g, buf, len, len, NULL, err, sizeof err) == GGUF_OK);
    struct {
        const char *key;
        enum gguf_type type;
        int64_t ival; /* for integers; -1: not checked */
    } want[] = {
        {"general.architecture", GGUF_TYPE_STRING, -1},
        {"general.name", GGUF_TYPE_STRING, -1},
        {"general.alignment", GGUF_TYPE_UINT32, 32},
        {"general.file_type", GGUF_TYPE_UINT32, 1},
        {"llama.context_length", GGUF_TYPE_UINT32, c.n_ctx_train},
        {"llama.embedding_length", GGUF_TYPE_UINT32, c.n_embd},
        {"llama.block_count", GGUF_TYPE_UINT32, c.n_layer},
        {"llama.feed_forward_length", GGUF_TYPE_UINT32, c.n_ff},
        {"llama.attention.head_count", GGUF_TYPE_UINT32, c.n_head},
        {"llama.attention.head_count_kv", GGUF_TYPE_UINT32, c.n_head_kv},
        {"llama.rope.freq_base", GGUF_TYPE_FLOAT32, -1},
        {"llama.attention.layer_norm_rms_epsilon", GGUF_TYPE_FLOAT32, -1},
        {"llama.rope.dimension_count", GGUF_TYPE_UINT32, c.head_dim},
        {"llama.attention.key_length", GGUF_TYPE_UINT32, c.head_dim},
        {"llama.attention.value_length", GGUF_TYPE_UINT32, c.head_dim},
        {"tokenizer.ggml.model", GGUF_TYPE_STRING, -1},
        {"tokenizer.ggml.tokens", GGUF_TYPE_ARRAY, -1},
        {"tokenizer.ggml.scores", GGUF_TYPE_ARRAY, -1},
        {"tokenizer.ggml.token_type", GGUF_TYPE_ARRAY, -1},
        {"tokenizer.ggml.bos_token_id", GGUF_TYPE_UINT32, 256},
        {"tokenizer.ggml.eos_token_id", GGUF_TYPE_UINT32, 257},
        {"tokenizer.ggml.add_bos_token", GGUF_TYPE_BOOL, -1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct gguf_kv *kv = gguf_find_kv(&g, want[i].key);
        CHECK_MSG(kv != NULL, "%s missing", want[i].key);
        if (!kv)
            continue;
        CHECK_MSG(kv->type == want[i].type, "%s is %s", want[i].key, gguf_type_str(kv->type));
        int64_t v;
        if (want[i].ival >= 0)
            CHECK_MSG(gguf_kv_get_i64(kv, &v) == 0 && v == want[i].ival, "%s", want[i].key);
    }
    CHECK(g.kv[0].key.len == 20 && !memcmp(g.kv[0].key.ptr, "general.architecture", 20));
    struct gguf_str s;
    CHECK(gguf_kv_get_str(gguf_find_kv(&g, "general.architecture"), &s) == 0 && s.len == 5 &&
          !memcmp(s.ptr, "llama", 5));
    CHECK(gguf_kv_get_str(gguf_find_kv(&g, "tokenizer.ggml.model"), &s) == 0 && s.len == 5 &&
          !memcmp(s.ptr, "llama", 5));
    double f;
    CHECK(gguf_kv_get_f64(gguf_find_kv(&g, "llama.rope.freq_base"), &f) == 0 && f == 10000.0);
    CHECK(gguf_kv_get_f64(gguf_find_kv(&g, "llama.attention.layer_norm_rms_epsilon"), &f) == 0 &&
          (float)f == 1e-5f);
    int b = 1;
    CHECK(gguf_kv_get_bool(gguf_find_kv(&g, "tokenizer.ggml.add_bos_token"), &b) == 0 && b == 0);
    const struct gguf_kv *kt = gguf_find_kv(&g, "tokenizer.ggml.tokens");
    CHECK(kt && kt->arr_type == GGUF_TYPE_STRING && kt->arr_n == (uint64_t)c.n_vocab);
    CHECK(gguf_kv_arr_str(kt, 0, &s) == 0 && s.len == 6 && !memcmp(s.ptr, "<0x00>", 6));
    CHECK(gguf_kv_arr_str(kt, 256, &s) == 0 && s.len == 3 && !memcmp(s.ptr, "<s>", 3));
    const struct gguf_kv *ks = gguf_find_kv(&g, "tokenizer.ggml.scores");
    CHECK(ks && ks->arr_type == GGUF_TYPE_FLOAT32 && ks->arr_n == (uint64_t)c.n_vocab);
    const struct gguf_kv *ky = gguf_find_kv(&g, "tokenizer.ggml.token_type");
    CHECK(ky && ky->arr_type == GGUF_TYPE_INT32 && ky->arr_n == (uint64_t)c.n_vocab);
    int64_t v;
    CHECK(gguf_kv_arr_i64(ky, 0, &v) == 0 && v == TOK_TYPE_BYTE);
    CHECK(gguf_kv_arr_i64(ky, 257, &v) == 0 && v == TOK_TYPE_CONTROL);
    CHECK(gguf_kv_arr_i64(ky, 300, &v) == 0 && v == TOK_TYPE_NORMAL);
    /* tensors: model_tensors order and names, 2-D F16, 1-D F32, aligned offsets */
    int n = model_tensors(&c, NULL);
    struct model_tensor_desc *d = calloc((size_t)n, sizeof *d);
    model_tensors(&c, d);
    CHECK_EQ_INT(g.n_tensors, n);
    for (int i = 0; i < n && (uint64_t)i < g.n_tensors; i++) {
        const struct gguf_tensor_info *t = &g.tensors[i];
        CHECK(t->name.len == strlen(d[i].name) && !memcmp(t->name.ptr, d[i].name, t->name.len));
        CHECK_EQ_INT(t->n_dims, d[i].n_dims);
        CHECK(t->ne[0] == d[i].ne[0] && t->ne[1] == d[i].ne[1]);
        CHECK_EQ_INT(t->type, d[i].n_dims == 2 ? GGML_TYPE_F16 : GGML_TYPE_F32);
        CHECK_EQ_INT(t->offset % 32, 0);
    }
    CHECK(gguf_find_tensor(&g, "token_embd.weight") == &g.tensors[0]);
    CHECK(gguf_find_tensor(&g, "output.weight") != NULL);
    CHECK(gguf_find_tensor(&g, "blk.3.ffn_down.weight") != NULL);
    CHECK(gguf_find_tensor(&g, "blk.4.ffn_down.weight") == NULL);
    free(d);
    gguf_file_free(&g);
    free(buf);
}

/* A file shaped like llama.cpp's convert of a Qwen2 model: gpt2 tokenizer with merges, extra
 * metadata, F16 matrices, an extra tensor, qwen2 biases, tied embeddings. */
static void test_llamacpp_style_file(void)
{
    struct model_config c = {MODEL_ARCH_QWEN2, "Qwen-ish", 300, 32, 1, 2, 1, 16, 48, 1024,
                             1000000.0f,       1e-6f,      1,   1,  0, 0};
    /* vocabulary: 256 byte characters (bytes_to_unicode), "Ġhi", then control tokens */
    static char texts[300][16];
    const char *tok[300];
    int32_t type[300];
    float score[300];
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        uint32_t cp = keep ? (uint32_t)b : (uint32_t)next++;
        if (cp < 0x80) {
            texts[b][0] = (char)cp;
            texts[b][1] = 0;
        } else {
            texts[b][0] = (char)(0xc0 | (cp >> 6));
            texts[b][1] = (char)(0x80 | (cp & 0x3f));
            texts[b][2] = 0;
        }
        type[b] = TOK_TYPE_NORMAL;
    }
    snprintf(texts[256], sizeof texts[256], "\xc4\xa0hi");
    type[256] = TOK_TYPE_NORMAL;
    for (int i = 257; i < 300; i++) {
        snprintf(texts[i], sizeof texts[i], "<|extra_%d|>", i);
        type[i] = TOK_TYPE_CONTROL;
    }
    for (int i = 0; i < 300; i++) {
        tok[i] = texts[i];
        score[i] = 0;
    }
    struct gguf_writer w;
    gguf_writer_init(&w, 32);
    gguf_writer_add_str(&w, "general.architecture", "qwen2");
    gguf_writer_add_str(&w, "general.type", "model");
    gguf_writer_add_str(&w, "general.name", "Qwen-ish");
    gguf_writer_add_u32(&w, "qwen2.block_count", 1);
    gguf_writer_add_u32(&w, "qwen2.context_length", 1024);
    gguf_writer_add_u32(&w, "qwen2.embedding_length", 32);
    gguf_writer_add_u32(&w, "qwen2.feed_forward_length", 48);
    gguf_writer_add_u32(&w, "qwen2.attention.head_count", 2);
    gguf_writer_add_u32(&w, "qwen2.attention.head_count_kv", 1);
    gguf_writer_add_f32(&w, "qwen2.rope.freq_base", 1000000.0f);
    gguf_writer_add_f32(&w, "qwen2.attention.layer_norm_rms_epsilon", 1e-6f);
    gguf_writer_add_u32(&w, "general.file_type", 1);
    gguf_writer_add_str(&w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_add_str(&w, "tokenizer.ggml.pre", "qwen2");
    gguf_writer_add_arr_str(&w, "tokenizer.ggml.tokens", tok, 300);
    gguf_writer_add_arr_i32(&w, "tokenizer.ggml.token_type", type, 300);
    const char *merges[] = {"\xc4\xa0 h", "\xc4\xa0h i"};
    gguf_writer_add_arr_str(&w, "tokenizer.ggml.merges", merges, 2);
    gguf_writer_add_u32(&w, "tokenizer.ggml.eos_token_id", 257);
    gguf_writer_add_u32(&w, "tokenizer.ggml.padding_token_id", 257);
    gguf_writer_add_u32(&w, "tokenizer.ggml.bos_token_id", 257);
    gguf_writer_add_bool(&w, "tokenizer.ggml.add_bos_token", 0);
    gguf_writer_add_str(&w, "tokenizer.chat_template", "{{ messages }}");
    gguf_writer_add_u32(&w, "general.quantization_version", 2);
    (void)score;
    c.bos_id = c.eos_id = 257;
    strcpy(c.name, "Qwen-ish");
    int n = model_tensors(&c, NULL);
    struct model_tensor_desc *d = calloc((size_t)n, sizeof *d);
    model_tensors(&c, d);
    uint64_t rope_ne[1] = {8};
    gguf_writer_add_tensor(&w, "rope_freqs.weight", 1, rope_ne, GGML_TYPE_F32);
    /* llama.cpp writes tensors in its own order; ours is reversed to show order does not matter */
    for (int i = n - 1; i >= 0; i--)
        gguf_writer_add_tensor(&w, d[i].name, (uint32_t)d[i].n_dims, d[i].ne,
                               d[i].n_dims == 2 ? GGML_TYPE_F16 : GGML_TYPE_F32);
    const char *path = tpath("llamacpp.gguf");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char err[512];
    CHECK(gguf_writer_begin(&w, fd, err, sizeof err) == GGUF_OK);
    float rope[8] = {1, 1, 1, 1, 2, 2, 2, 2};
    CHECK(gguf_writer_data(&w, rope, sizeof rope, err, sizeof err) == GGUF_OK);
    for (int i = n - 1; i >= 0; i--) {
        size_t ne = (size_t)(d[i].ne[0] * d[i].ne[1]);
        float *f = malloc(ne * sizeof *f);
        model_fill_tensor(11, i, &d[i], f);
        if (d[i].n_dims == 2) {
            uint16_t *h = malloc(ne * sizeof *h);
            gguf_f32_to_f16_row(f, h, ne);
            CHECK(gguf_writer_data(&w, h, ne * 2, err, sizeof err) == GGUF_OK);
            free(h);
        } else {
            CHECK(gguf_writer_data(&w, f, ne * 4, err, sizeof err) == GGUF_OK);
        }
        free(f);
    }
    CHECK(gguf_writer_end(&w, err, sizeof err) == GGUF_OK);
    gguf_writer_free(&w);
    close(fd);
    free(d);

    struct model *ref = model_new_random(&c, 11, err, sizeof err);
    CHECK(ref != NULL);
    for (int k = 0; k < 2 && ref; k++) {
        struct model *m = model_load(path, k ? MODEL_LOAD_READ : MODEL_LOAD_MMAP, err, sizeof err);
        CHECK_MSG(m != NULL, "%s", err);
        if (!m)
            continue;
        check_cfg_equal(&m->cfg, &c);
        check_weights(m, ref, 1);
        CHECK_EQ_INT(m->tok.kind, TOK_KIND_GPT2);
        int32_t ids[8];
        CHECK_EQ_INT(tokenizer_encode(&m->tok, "hi \xc3\xa9", 5, ids, 8), 5);
        CHECK(ids[0] == 'h' && ids[1] == 'i' && ids[2] == ' ' && ids[3] == 0xc3);
        int32_t out_ids[] = {256, 'x', 257, 0xc3, 0xa9};
        struct buf b;
        buf_init(&b, 32, 1024);
        CHECK(tokenizer_decode(&m->tok, out_ids, 5, &b) == BUF_OK);
        CHECK_EQ_STR(b.data, " hix\xc3\xa9");
        buf_free(&b);
        model_free(m);
    }
    model_free(ref);
    struct model_file_info info;
    CHECK(model_file_info(path, &info, err, sizeof err) == 0);
    CHECK_EQ_INT(info.n_tensors_unused, 1);
    CHECK_EQ_INT(info.tok_kind, TOK_KIND_GPT2);
    CHECK_EQ_STR(info.tok_model, "gpt2");
    CHECK_EQ_INT(info.cfg.head_dim, 16); /* from embedding_length / head_count */
}

/* ---- corrupted files ---- */

static unsigned char *g_good;
static size_t g_good_len;

static void make_good(void)
{
    struct model_config c = micro_cfg();
    char err[512];
    CHECK(model_write_gguf(&c, 9, MODEL_DTYPE_F32, tpath("good.gguf"), err, sizeof err) == 0);
    g_good = slurp(tpath("good.gguf"), &g_good_len);
    CHECK(g_good != NULL);
}

static unsigned char *good_copy(void)
{
    unsigned char *p = malloc(g_good_len);
    memcpy(p, g_good, g_good_len);
    return p;
}

/* Position of a string "len + bytes" equal to s in buf. */
static size_t find_gguf_str(const unsigned char *buf, size_t len, const char *s)
{
    uint64_t n = strlen(s);
    for (size_t i = 0; i + 8 + n <= len; i++)
        if (!memcmp(buf + i, &n, 8) && !memcmp(buf + i + 8, s, n))
            return i;
    return 0;
}

/* Field positions of a tensor info. */
struct ti_pos {
    size_t name, n_dims, ne, type, offset;
};

static struct ti_pos find_tensor_info(const unsigned char *buf, size_t len, const char *name)
{
    struct ti_pos p = {0};
    p.name = find_gguf_str(buf, len, name);
    CHECK_MSG(p.name != 0, "tensor info %s not found", name);
    p.n_dims = p.name + 8 + strlen(name);
    uint32_t nd;
    memcpy(&nd, buf + p.n_dims, 4);
    p.ne = p.n_dims + 4;
    p.type = p.ne + 8 * nd;
    p.offset = p.type + 4;
    return p;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void put_u64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* The mutated file must be rejected by both load formats and by model_file_info, with a message
 * containing want. */
static void expect_reject(const unsigned char *buf, size_t len, const char *want)
{
    const char *path = tpath("bad.gguf");
    spit(path, buf, len);
    char err[512];
    enum model_load_format fmts[2] = {MODEL_LOAD_MMAP, MODEL_LOAD_READ};
    for (int k = 0; k < 2; k++) {
        err[0] = 0;
        struct model *m = model_load(path, fmts[k], err, sizeof err);
        CHECK_MSG(m == NULL, "accepted (%s)", k ? "read" : "mmap");
        CHECK_MSG(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
        model_free(m);
    }
    struct model_file_info info;
    err[0] = 0;
    CHECK(model_file_info(path, &info, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, want) != NULL, "info error \"%s\" lacks \"%s\"", err, want);
}

/* --dtype q4_k_m on a shape that exercises every rule: 8 layers (use_more_bits picks 0, 3, 6,
 * 7), ffn_down rows of 288 values (not a multiple of 256: Q4_K -> Q5_0, Q6_K -> Q8_0), the rest
 * 256 (Q4_K; output.weight Q6_K). general.file_type 15; the bytes of each tensor are
 * quant_quantize_row of model_fill_tensor's values; the loader computes on them as stored. Then
 * the corrupt variants: truncated inside a K-quant tensor, a NaN block scale, a type we lack. */
static void test_kquant_file(void)
{
    struct model_config c = {MODEL_ARCH_LLAMA, "kq",  300, 256, 8,   4,  2, 64, 288, 512,
                             10000.0f,         1e-5f, 0,   0,   256, 257};
    char err[512];
    const char *path = tpath("kq.gguf");
    CHECK(model_write_gguf(&c, 3, MODEL_DTYPE_Q4_K_M, path, err, sizeof err) == 0);
    size_t len = 0;
    unsigned char *buf = slurp(path, &len);
    struct gguf_file g;
    CHECK(buf && gguf_parse(&g, buf, len, len, NULL, err, sizeof err) == GGUF_OK);
    int64_t ft = -1;
    CHECK(gguf_kv_get_i64(gguf_find_kv(&g, "general.file_type"), &ft) == 0 && ft == 15);
    int n = model_tensors(&c, NULL);
    struct model_tensor_desc *d = calloc((size_t)n, sizeof *d);
    model_tensors(&c, d);
    int counts[MODEL_N_GGML_TYPES] = {0};
    for (int i = 0; i < n; i++) {
        const struct gguf_tensor_info *t = gguf_find_tensor(&g, d[i].name);
        CHECK(t != NULL);
        if (!t)
            continue;
        int layer = -1, more = 0;
        if (sscanf(d[i].name, "blk.%d.", &layer) == 1)
            more = layer == 0 || layer == 3 || layer == 6 || layer == 7;
        uint32_t want = GGML_TYPE_Q4_K;
        if (d[i].n_dims == 1)
            want = GGML_TYPE_F32;
        else if (!strcmp(d[i].name, "output.weight"))
            want = GGML_TYPE_Q6_K;
        else if (strstr(d[i].name, "ffn_down"))
            want = more ? GGML_TYPE_Q8_0 : GGML_TYPE_Q5_0;
        else if (strstr(d[i].name, "attn_v") && more)
            want = GGML_TYPE_Q6_K;
        CHECK_MSG(t->type == want, "%s: %s, expected %s", d[i].name, ggml_type_name(t->type),
                  ggml_type_name(want));
        counts[t->type]++;
        if (t->type == GGML_TYPE_F32)
            continue;
        size_t ne = (size_t)(d[i].ne[0] * d[i].ne[1]);
        float *v = malloc(ne * sizeof *v);
        unsigned char *q = malloc(quant_row_bytes(t->type, ne));
        model_fill_tensor(3, i, &d[i], v);
        CHECK(quant_quantize_row(t->type, v, q, ne) == 0);
        CHECK_MSG(t->n_bytes == quant_row_bytes(t->type, ne) &&
                      memcmp(t->data, q, (size_t)t->n_bytes) == 0,
                  "%s bytes differ", d[i].name);
        free(v), free(q);
    }
    CHECK_EQ_INT(counts[GGML_TYPE_Q6_K], 4 + 1);
    CHECK_EQ_INT(counts[GGML_TYPE_Q8_0], 4);
    CHECK_EQ_INT(counts[GGML_TYPE_Q5_0], 4);
    struct model_file_info info;
    CHECK(model_file_info(path, &info, err, sizeof err) == 0);
    CHECK_EQ_INT(info.file_dtype, MODEL_DTYPE_Q4_K_M);
    CHECK_EQ_INT(info.type_tensors[GGML_TYPE_Q4_K], 8 * 6 + 1 - 4);
    struct model *m = model_load(path, MODEL_LOAD_MMAP, err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    if (m) {
        CHECK_EQ_INT(m->w.layers[1].m_down.type, GGML_TYPE_Q5_0);
        CHECK_EQ_INT(m->w.layers[3].m_down.type, GGML_TYPE_Q8_0);
        CHECK_EQ_INT(m->w.layers[3].mv.type, GGML_TYPE_Q6_K);
        CHECK_EQ_INT(m->w.m_output.type, GGML_TYPE_Q6_K);
        CHECK(m->w.layers[1].w_down == NULL);
        CHECK_EQ_INT(m->file_dtype, MODEL_DTYPE_Q4_K_M);
    }
    model_free(m);

    /* Truncated inside the last Q4_K tensor's data. */
    const struct gguf_tensor_info *tq = gguf_find_tensor(&g, "blk.7.ffn_up.weight");
    CHECK(tq != NULL && tq->type == GGML_TYPE_Q4_K);
    if (tq)
        expect_reject(buf, (size_t)(tq->file_offset + tq->n_bytes / 2),
                      "runs past the end of the file");
    /* A NaN super-block scale (d of block 5 of blk.2.attn_q.weight): both loaders refuse it,
     * naming the tensor, its type and the block. */
    const struct gguf_tensor_info *tn = gguf_find_tensor(&g, "blk.2.attn_q.weight");
    CHECK(tn != NULL && tn->type == GGML_TYPE_Q4_K);
    if (tn) {
        unsigned char *bad = malloc(len);
        memcpy(bad, buf, len);
        bad[tn->file_offset + 5 * 144] = 0x00, bad[tn->file_offset + 5 * 144 + 1] = 0x7e;
        spit(tpath("kq_nan.gguf"), bad, len);
        enum model_load_format fmts[2] = {MODEL_LOAD_MMAP, MODEL_LOAD_READ};
        for (int k = 0; k < 2; k++) {
            err[0] = 0;
            struct model *mb = model_load(tpath("kq_nan.gguf"), fmts[k], err, sizeof err);
            CHECK_MSG(mb == NULL, "NaN scale accepted (%s)", k ? "read" : "mmap");
            CHECK_MSG(strstr(err, "tensor 'blk.2.attn_q.weight' (Q4_K): block 5 of") &&
                          strstr(err, "non-finite fp16 scale"),
                      "error \"%s\"", err);
            model_free(mb);
        }
        /* A type the runtime lacks (Q3_K: 110-byte blocks, so the data still fits). */
        memcpy(bad, buf, len);
        struct ti_pos p = find_tensor_info(bad, len, "blk.2.attn_q.weight");
        put_u32(bad + p.type, GGML_TYPE_Q3_K);
        expect_reject(bad, len,
                      "tensor 'blk.2.attn_q.weight' has type Q3_K, which is not "
                      "supported (supported: F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q6_K, "
                      "Q5_K, Q4_K)");
        free(bad);
    }
    gguf_file_free(&g);
    free(d);
    free(buf);
}

static void test_good_file_loads(void)
{
    struct model_config c = micro_cfg();
    char err[512];
    struct model *m = model_load(tpath("good.gguf"), MODEL_LOAD_MMAP, err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    if (m)
        check_cfg_equal(&m->cfg, &c);
    model_free(m);
}

static void test_reject_bad_magic(void)
{
    unsigned char *b = good_copy();
    memcpy(b, "GGML", 4);
    expect_reject(b, g_good_len, "not a GGUF file");
    memcpy(b, "\0\0\0\0", 4);
    expect_reject(b, g_good_len, "magic");
    free(b);
}

static void test_reject_bad_version(void)
{
    unsigned char *b = good_copy();
    put_u32(b + 4, 4);
    expect_reject(b, g_good_len, "version 4 is not supported");
    put_u32(b + 4, 1);
    expect_reject(b, g_good_len, "version 1 is not supported");
    put_u32(b + 4, 0x03000000u);
    expect_reject(b, g_good_len, "big-endian");
    put_u32(b + 4, 2); /* v2 has the same layout and is accepted */
    spit(tpath("v2.gguf"), b, g_good_len);
    char err[512];
    struct model *m = model_load(tpath("v2.gguf"), MODEL_LOAD_READ, err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    model_free(m);
    free(b);
}

static void test_reject_truncated(void)
{
    struct gguf_file g;
    char err[512];
    CHECK(gguf_parse(&g, g_good, g_good_len, g_good_len, NULL, err, sizeof err) == GGUF_OK);
    size_t header = (size_t)g.header_bytes, data = (size_t)g.data_offset;
    gguf_file_free(&g);
    /* In memory: every length through the header and a stride through the data. */
    int bad = 0;
    for (size_t n = 0; n < g_good_len; n += n < header + 64 ? 1 : 4093) {
        enum gguf_status st = gguf_parse(&g, g_good, n, n, NULL, err, sizeof err);
        if (st != GGUF_ERR_TRUNCATED && st != GGUF_ERR_LIMIT && st != GGUF_ERR_OFFSET) {
            if (bad++ < 3)
                fprintf(stderr, "  length %zu: %s (%s)\n", n, gguf_status_str(st), err);
        }
        gguf_file_free(&g);
    }
    CHECK_EQ_INT(bad, 0);
    /* As files through both loaders: a few dozen lengths, with the messages. */
    size_t cuts[] = {0,
                     1,
                     3,
                     4,
                     7,
                     8,
                     12,
                     23,
                     24,
                     31,
                     40,
                     100,
                     1000,
                     header / 3,
                     header / 2,
                     header - 200,
                     header - 9,
                     header - 1,
                     header,
                     data - 1,
                     data,
                     data + 1,
                     data + 4096,
                     g_good_len / 3,
                     g_good_len / 2,
                     g_good_len - 4096,
                     g_good_len - 33,
                     g_good_len - 32,
                     g_good_len - 4,
                     g_good_len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        const char *want = cuts[i] < header ? "" : "runs past the end of the file";
        if (cuts[i] < 4)
            want = "truncated file: the magic needs 4 bytes";
        expect_reject(g_good, cuts[i], want);
    }
    /* header fields name themselves */
    expect_reject(g_good, 6, "truncated file: the version");
    expect_reject(g_good, 20, "truncated file: the tensor and metadata counts");
}

static void test_reject_offset_past_end(void)
{
    unsigned char *b = good_copy();
    struct ti_pos p = find_tensor_info(b, g_good_len, "output.weight");
    put_u64(b + p.offset, ((uint64_t)g_good_len + 31) / 32 * 32);
    expect_reject(b, g_good_len, "tensor 'output.weight' data");
    expect_reject(b, g_good_len, "runs past the end of the file");
    put_u64(b + p.offset, UINT64_MAX - 31); /* aligned, and overflows offset + size */
    expect_reject(b, g_good_len, "runs past the end of the file");
    free(b);
}

static void test_reject_misaligned_offset(void)
{
    unsigned char *b = good_copy();
    struct ti_pos p = find_tensor_info(b, g_good_len, "blk.0.attn_v.weight");
    uint64_t off;
    memcpy(&off, b + p.offset, 8);
    put_u64(b + p.offset, off + 4);
    expect_reject(b, g_good_len, "is not a multiple of the alignment 32");
    free(b);
}

static void test_reject_huge_tensor_count(void)
{
    unsigned char *b = good_copy();
    put_u64(b + 8, 1ull << 62);
    expect_reject(b, g_good_len, "tensor count 4611686018427387904 is impossible");
    put_u64(b + 8, UINT64_MAX);
    expect_reject(b, g_good_len, "tensor count");
    put_u64(b + 8, 1000000); /* under the cap, still more than the file holds */
    expect_reject(b, g_good_len, "is impossible");
    free(b);
}

static void test_reject_huge_kv_count(void)
{
    unsigned char *b = good_copy();
    put_u64(b + 16, 1ull << 60);
    expect_reject(b, g_good_len, "metadata count");
    free(b);
}

static void test_reject_huge_string_length(void)
{
    unsigned char *b = good_copy();
    /* the first key's length */
    put_u64(b + 24, 1ull << 63);
    expect_reject(b, g_good_len, "metadata key 0 has length 9223372036854775808");
    free(b);
    /* a string value */
    b = good_copy();
    size_t k = find_gguf_str(b, g_good_len, "general.name");
    put_u64(b + k + 8 + 12 + 4, UINT64_MAX - 3);
    expect_reject(b, g_good_len, "past the end of the file");
    free(b);
    /* a tensor name */
    b = good_copy();
    struct ti_pos p = find_tensor_info(b, g_good_len, "blk.0.ffn_up.weight");
    put_u64(b + p.name, (uint64_t)g_good_len);
    expect_reject(b, g_good_len, "tensor name");
    free(b);
}

static void test_reject_huge_array_count(void)
{
    unsigned char *b = good_copy();
    size_t k = find_gguf_str(b, g_good_len, "tokenizer.ggml.tokens");
    size_t count_at = k + 8 + strlen("tokenizer.ggml.tokens") + 4 + 4;
    put_u64(b + count_at, 1ull << 61);
    expect_reject(b, g_good_len, "array 'tokenizer.ggml.tokens' claims 2305843009213693952");
    free(b);
    b = good_copy();
    k = find_gguf_str(b, g_good_len, "tokenizer.ggml.scores");
    count_at = k + 8 + strlen("tokenizer.ggml.scores") + 4 + 4;
    put_u64(b + count_at, UINT64_MAX / 2);
    expect_reject(b, g_good_len, "claims");
    free(b);
    /* a string element inside the array with a huge length */
    b = good_copy();
    k = find_gguf_str(b, g_good_len, "tokenizer.ggml.tokens");
    size_t first = k + 8 + strlen("tokenizer.ggml.tokens") + 4 + 4 + 8;
    put_u64(b + first, 1ull << 40);
    expect_reject(b, g_good_len, "string element 0 of 'tokenizer.ggml.tokens'");
    free(b);
}

static void test_reject_duplicate_tensor(void)
{
    unsigned char *b = good_copy();
    struct ti_pos p = find_tensor_info(b, g_good_len, "blk.0.attn_k.weight");
    memcpy(b + p.name + 8, "blk.0.attn_q.weight", 19);
    expect_reject(b, g_good_len, "duplicate tensor name 'blk.0.attn_q.weight'");
    free(b);
}

static void test_reject_duplicate_key(void)
{
    unsigned char *b = good_copy();
    size_t k = find_gguf_str(b, g_good_len, "general.file_type");
    memcpy(b + k + 8, "general.alignment", 17);
    expect_reject(b, g_good_len, "duplicate metadata key 'general.alignment'");
    free(b);
}

static void test_reject_missing_tensor(void)
{
    unsigned char *b = good_copy();
    struct ti_pos p = find_tensor_info(b, g_good_len, "blk.0.attn_k.weight");
    memcpy(b + p.name + 8, "blk.0.attn_x.weight", 19);
    expect_reject(b, g_good_len, "missing tensor 'blk.0.attn_k.weight'");
    free(b);
}

static void test_reject_wrong_shape(void)
{
    unsigned char *b = good_copy();
    struct ti_pos p = find_tensor_info(b, g_good_len, "blk.0.attn_q.weight");
    put_u64(b + p.ne, 128);
    expect_reject(b, g_good_len,
                  "tensor 'blk.0.attn_q.weight' has shape [128, 256], expected [256, 256]");
    free(b);
    b = good_copy();
    p = find_tensor_info(b, g_good_len, "output_norm.weight");
    put_u64(b + p.ne, 255);
    expect_reject(b, g_good_len, "tensor 'output_norm.weight' has shape [255], expected [256]");
    free(b);
}

/* A type the engine cannot compute on: an error naming the tensor, its type and the list. Types
 * it can (Q8_0, BF16 here on f32 bytes: the values are garbage, the file is valid) load. */
static void test_reject_quantized_type(void)
{
    unsigned char *b = good_copy();
    struct ti_pos p = find_tensor_info(b, g_good_len, "blk.0.attn_q.weight");
    put_u32(b + p.type, GGML_TYPE_Q3_K);
    expect_reject(b, g_good_len,
                  "tensor 'blk.0.attn_q.weight' has type Q3_K, which is not supported "
                  "(supported: F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q6_K, Q5_K, Q4_K)");
    put_u32(b + p.type, GGML_TYPE_Q2_K);
    expect_reject(b, g_good_len, "has type Q2_K, which is not supported (supported: F32");
    put_u32(b + p.type, GGML_TYPE_IQ4_NL);
    expect_reject(b, g_good_len, "has type IQ4_NL, which is not supported");
    static const uint32_t ok[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_BF16, GGML_TYPE_Q5_0,
                                  GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    for (int k = 0; k < 7; k++) {
        put_u32(b + p.type, ok[k]);
        const char *path = tpath("ok_type.gguf");
        spit(path, b, g_good_len);
        struct model_file_info info;
        char err[512];
        CHECK_MSG(model_file_info(path, &info, err, sizeof err) == 0, "%s", err);
        CHECK_EQ_INT(info.type_tensors[ok[k]], 1);
    }
    free(b);
}

/* A llama.cpp-style mix: a BF16 matrix is computed on in the map (not owned, weight bytes 2 a
 * value) while a 1-D BF16 norm is converted to f32 at load (owned, exactly the shifted bits), as
 * for F16. The values are f32 bytes read as bf16: garbage, but a valid file. */
static void test_load_bf16_mix(void)
{
    unsigned char *b = good_copy();
    struct ti_pos pq = find_tensor_info(b, g_good_len, "blk.0.attn_q.weight");
    struct ti_pos pn = find_tensor_info(b, g_good_len, "output_norm.weight");
    put_u32(b + pq.type, GGML_TYPE_BF16);
    put_u32(b + pn.type, GGML_TYPE_BF16);
    const char *path = tpath("bf16_mix.gguf");
    spit(path, b, g_good_len);
    char err[512];
    struct model *m = model_load(path, MODEL_LOAD_MMAP, err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    struct gguf_file g;
    CHECK(gguf_parse(&g, b, g_good_len, g_good_len, NULL, err, sizeof err) == GGUF_OK);
    if (m) {
        const struct gguf_tensor_info *tq = gguf_find_tensor(&g, "blk.0.attn_q.weight");
        const struct gguf_tensor_info *tn = gguf_find_tensor(&g, "output_norm.weight");
        const int E = m->cfg.n_embd;
        CHECK(m->w.layers[0].wq == NULL && m->w.layers[0].mq.type == GGML_TYPE_BF16);
        CHECK((const unsigned char *)m->w.layers[0].mq.data >= (const unsigned char *)m->map &&
              (const unsigned char *)m->w.layers[0].mq.data <
                  (const unsigned char *)m->map + m->map_bytes);
        CHECK_EQ_INT(m->owned_floats, E); /* only the norm */
        CHECK_EQ_INT(m->load.convert_bytes, (uint64_t)E * 4);
        CHECK_EQ_INT(m->load.convert_threads, 1);
        CHECK_EQ_INT(m->weight_bytes, model_n_params(&m->cfg) * 4 - tq->n_elems * 2);
        int bad = 0;
        for (int i = 0; i < E; i++) {
            uint16_t h;
            memcpy(&h, (const unsigned char *)tn->data + 2 * i, 2);
            uint32_t want = (uint32_t)h << 16, got;
            memcpy(&got, &m->w.output_norm[i], 4);
            bad += got != want;
        }
        CHECK_MSG(bad == 0, "%d norm values differ", bad);
        float row[256], ref[256];
        CHECK(E <= 256);
        quant_dequantize_row(GGML_TYPE_BF16, m->w.layers[0].mq.data, row, (size_t)E);
        quant_dequantize_row(GGML_TYPE_BF16, tq->data, ref, (size_t)E);
        CHECK(memcmp(row, ref, (size_t)E * 4) == 0);
    }
    gguf_file_free(&g);
    model_free(m);
    free(b);
}

static void test_reject_unknown_type(void)
{
    unsigned char *b = good_copy();
    struct ti_pos p = find_tensor_info(b, g_good_len, "blk.0.attn_q.weight");
    put_u32(b + p.type, 99);
    expect_reject(b, g_good_len, "tensor 'blk.0.attn_q.weight' has unknown ggml type 99");
    free(b);
    b = good_copy();
    size_t k = find_gguf_str(b, g_good_len, "general.name");
    put_u32(b + k + 8 + 12, 13);
    expect_reject(b, g_good_len, "key 'general.name' has unknown value type 13");
    free(b);
}

static void test_reject_bad_dims(void)
{
    unsigned char *b = good_copy();
    struct ti_pos p = find_tensor_info(b, g_good_len, "blk.0.attn_q.weight");
    put_u32(b + p.n_dims, 5);
    expect_reject(b, g_good_len, "has n_dims 5");
    put_u32(b + p.n_dims, 0);
    expect_reject(b, g_good_len, "has n_dims 0");
    free(b);
    b = good_copy();
    p = find_tensor_info(b, g_good_len, "blk.0.attn_q.weight");
    put_u64(b + p.ne, 1ull << 62);
    expect_reject(b, g_good_len, "element count overflows");
    put_u64(b + p.ne, UINT64_MAX);
    expect_reject(b, g_good_len, "is negative");
    free(b);
}

static void test_reject_bad_alignment(void)
{
    unsigned char *b = good_copy();
    size_t k = find_gguf_str(b, g_good_len, "general.alignment");
    put_u32(b + k + 8 + 17 + 4, 48);
    expect_reject(b, g_good_len, "general.alignment must be a power-of-two");
    put_u32(b + k + 8 + 17 + 4, 0);
    expect_reject(b, g_good_len, "general.alignment must be a power-of-two");
    free(b);
}

static void test_reject_bad_metadata(void)
{
    unsigned char *b = good_copy();
    size_t k = find_gguf_str(b, g_good_len, "llama.block_count");
    memcpy(b + k + 8, "llama.block_xxxxx", 17);
    expect_reject(b, g_good_len, "missing metadata key 'llama.block_count'");
    free(b);
    b = good_copy();
    k = find_gguf_str(b, g_good_len, "general.architecture");
    memcpy(b + k + 8 + 20 + 4 + 8, "gpt2x", 5);
    expect_reject(b, g_good_len, "unsupported architecture 'gpt2x' (supported: llama, qwen2)");
    free(b);
    b = good_copy();
    k = find_gguf_str(b, g_good_len, "llama.attention.head_count");
    put_u32(b + k + 8 + 26 + 4, 3); /* 256 % 3 != 0 and key_length 64 -> 3*64 != q rows */
    expect_reject(b, g_good_len, "head count must be a positive multiple of the KV head count");
    free(b);
    b = good_copy();
    k = find_gguf_str(b, g_good_len, "tokenizer.ggml.model");
    memcpy(b + k + 8 + 20 + 4 + 8, "bert!", 5);
    expect_reject(b, g_good_len, "unsupported tokenizer model 'bert!'");
    free(b);
    b = good_copy();
    k = find_gguf_str(b, g_good_len, "<0x41>");
    memcpy(b + k + 8, "<0yy1>", 6);
    expect_reject(b, g_good_len, "no byte token <0x41>");
    free(b);
}

static void test_reject_not_a_file(void)
{
    char err[512];
    CHECK(model_load(tpath("does-not-exist.gguf"), MODEL_LOAD_MMAP, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "cannot open") && strstr(err, "No such file"), "%s", err);
    CHECK(model_load(g_dir, MODEL_LOAD_READ, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "not a regular file") != NULL, "%s", err);
    spit(tpath("empty.gguf"), "", 0);
    expect_reject((const unsigned char *)"", 0, "truncated file");
}

/* ---- `slmprobe model` in-process, output captured ---- */

static int run_cli(char **argv, int argc, struct buf *out, struct buf *errb)
{
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fo = open(tpath("cli.out"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fe = open(tpath("cli.err"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fo, 1);
    dup2(fe, 2);
    int rc = cmd_model(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    close(fo);
    close(fe);
    size_t n;
    char *s = file_read_all(tpath("cli.out"), 1 << 20, &n);
    buf_reset(out);
    buf_append(out, s ? s : "", s ? n : 0);
    free(s);
    s = file_read_all(tpath("cli.err"), 1 << 20, &n);
    buf_reset(errb);
    buf_append(errb, s ? s : "", s ? n : 0);
    free(s);
    return rc;
}

#define CLI(...)                                                                                   \
    do {                                                                                           \
        char *cli_argv_[] = {"model", __VA_ARGS__};                                                \
        rc = run_cli(cli_argv_, (int)(sizeof cli_argv_ / sizeof cli_argv_[0]), &o, &e);            \
    } while (0)

static void test_cli(void)
{
    struct buf o, e;
    buf_init(&o, 256, 1 << 20);
    buf_init(&e, 256, 1 << 20);
    int rc;
    const char *model = tpath("cli/sub/tiny.gguf"); /* parent directories are created */
    char mpath[512];
    snprintf(mpath, sizeof mpath, "%s", model);

    CLI("init", "--preset", "tiny", "-o", mpath, "--seed", "4", "--dtype", "f16");
    CHECK_EQ_INT(rc, 0);
    CHECK(strstr(o.data, "wrote ") && strstr(o.data, "params      3426560") &&
          strstr(o.data, "bytes") && strstr(o.data, "time"));
    CLI("info", mpath);
    CHECK_EQ_INT(rc, 0);
    CHECK(strstr(o.data, "arch              llama") && strstr(o.data, "hidden            256") &&
          strstr(o.data, "kv heads          2") && strstr(o.data, "vocab             1024") &&
          strstr(o.data, "rope theta        10000") && strstr(o.data, "context length    2048") &&
          strstr(o.data, "file dtype        f16") &&
          strstr(o.data, "kv bytes/token    4096 (f32 KV), 2048 (f16 KV)") &&
          strstr(o.data, "weight bytes      6857728") && strstr(o.data, "tokenizer"));
    char qpath[600];
    snprintf(qpath, sizeof qpath, "%s.q8_0", mpath);
    CLI("init", "--preset", "tiny", "-o", qpath, "--dtype", "q8_0");
    CHECK_EQ_INT(rc, 0);
    CHECK(strstr(o.data, "dtype       q8_0") != NULL);
    CLI("info", qpath);
    CHECK_EQ_INT(rc, 0);
    CHECK_MSG(strstr(o.data, "file dtype        q8_0") &&
                  strstr(o.data, "  Q8_0            26 tensors, 2889728 bytes") &&
                  strstr(o.data, "  F16             4 tensors") &&
                  strstr(o.data, "  F32             9 tensors"),
              "%s", o.data);
    CLI("presets");
    CHECK_EQ_INT(rc, 0);
    CHECK(strstr(o.data, "qwen2.5-0.5b") && strstr(o.data, "phi-3-mini") &&
          strstr(o.data, "494.03 M"));
    CLI("--help");
    CHECK(rc == 0 && strstr(o.data, "init") && strstr(o.data, "info"));
    CLI("init", "--help");
    CHECK(rc == 0 && strstr(o.data, "--preset") && strstr(o.data, "--seed") &&
          strstr(o.data, "--dtype") && strstr(o.data, "-o"));
    CLI("info", "-h");
    CHECK(rc == 0 && strstr(o.data, "usage: slmprobe model info"));
    CLI("presets", "--help");
    CHECK(rc == 0 && strstr(o.data, "usage: slmprobe model presets"));

    /* errors */
    CLI("init", "--preset", "huge", "-o", mpath);
    CHECK_EQ_INT(rc, 2);
    CHECK_MSG(strstr(e.data, "unknown preset 'huge'") && strstr(e.data, "tiny, mini, small"), "%s",
              e.data);
    CLI("init", "--preset", "tiny");
    CHECK_EQ_INT(rc, 2);
    CHECK_MSG(strstr(e.data, "-o FILE.gguf is required") != NULL, "%s", e.data);
    CLI("init", "-o", mpath);
    CHECK_EQ_INT(rc, 2);
    CHECK(strstr(e.data, "--preset is required") != NULL);
    CLI("init", "--preset", "tiny", "-o", mpath, "--dtype", "q4");
    CHECK_EQ_INT(rc, 2);
    CLI("init", "--preset", "tiny", "-o", mpath, "--seed", "-1");
    CHECK_EQ_INT(rc, 2);
    CLI("init", "--preset", "tiny", "-o");
    CHECK_EQ_INT(rc, 2);
    CLI("init", "--preset", "tiny", "-o", mpath, "--bogus");
    CHECK_EQ_INT(rc, 2);
    char unwritable[600];
    snprintf(unwritable, sizeof unwritable, "%s/x.gguf", mpath); /* under a regular file */
    CLI("init", "--preset", "tiny", "-o", unwritable);
    CHECK_EQ_INT(rc, 1);
    CHECK_MSG(strstr(e.data, "cannot write") != NULL, "%s", e.data);
    char nope[512];
    snprintf(nope, sizeof nope, "%s", tpath("nope.gguf"));
    CLI("info", nope);
    CHECK_EQ_INT(rc, 1);
    CHECK(strstr(e.data, "cannot open") != NULL);
    unsigned char *b = good_copy();
    put_u32(b + 4, 9);
    spit(tpath("badv.gguf"), b, g_good_len);
    free(b);
    char bad[512];
    snprintf(bad, sizeof bad, "%s", tpath("badv.gguf"));
    CLI("info", bad);
    CHECK_EQ_INT(rc, 1);
    CHECK_MSG(strstr(e.data, "version 9 is not supported") != NULL, "%s", e.data);
    CLI("info");
    CHECK_EQ_INT(rc, 2);
    CLI("frobnicate");
    CHECK_EQ_INT(rc, 2);
    {
        char *only[] = {"model"};
        rc = run_cli(only, 1, &o, &e);
        CHECK_EQ_INT(rc, 2);
    }
    /* the file written by the CLI equals the library's for the same arguments */
    struct model_config c;
    model_preset("tiny", &c);
    char err[512];
    CHECK(model_write_gguf(&c, 4, MODEL_DTYPE_F16, tpath("cli_ref.gguf"), err, sizeof err) == 0);
    CHECK(files_equal(mpath, tpath("cli_ref.gguf")));
    buf_free(&o);
    buf_free(&e);
}

/* model info names the file type by general.file_type, as llama.cpp does, including mixes this
 * runtime has no writer for (17: q5_k_m); a value llama.cpp does not define is "unknown"; a file
 * without the key is named by the type holding most of its bytes. */
static void test_cli_file_type(void)
{
    struct buf o, e;
    buf_init(&o, 256, 1 << 20);
    buf_init(&e, 256, 1 << 20);
    int rc;
    unsigned char *b = good_copy();
    size_t k = find_gguf_str(b, g_good_len, "general.file_type");
    size_t v = k + 8 + strlen("general.file_type") + 4; /* past the name and the type tag */
    char path[512]; /* tpath's buffer is reused by run_cli */
    snprintf(path, sizeof path, "%s", tpath("file_type.gguf"));
    static const struct {
        uint32_t ft;
        const char *text, *json;
    } cases[] = {
        {17, "file dtype        q5_k_m (general.file_type 17)", "\"file_type\": 17"},
        {30, "file dtype        iq4_xs (general.file_type 30)", "\"file_dtype\": \"iq4_xs\""},
        {99, "file dtype        unknown (general.file_type 99, not a llama.cpp file type)",
         "\"file_dtype\": \"unknown\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        put_u32(b + v, cases[i].ft);
        spit(path, b, g_good_len);
        CLI("info", path);
        CHECK_MSG(rc == 0 && strstr(o.data, cases[i].text), "%s%s", o.data, e.data);
        CLI("info", "--json", path);
        CHECK_MSG(rc == 0 && strstr(o.data, cases[i].json), "%s%s", o.data, e.data);
    }
    memcpy(b + k + 8, "general.file_typX", 17); /* the key is gone */
    spit(path, b, g_good_len);
    CLI("info", path);
    CHECK_MSG(rc == 0 && strstr(o.data, "file dtype        f32 (no general.file_type: the type "
                                        "of most weight bytes)"),
              "%s%s", o.data, e.data);
    CLI("info", "--json", path);
    CHECK_MSG(rc == 0 && strstr(o.data, "\"file_type\": null"), "%s", o.data);
    CHECK(model_file_type_name(15) && !strcmp(model_file_type_name(15), "q4_k_m"));
    CHECK(model_file_type_name(5) == NULL && model_file_type_name(-1) == NULL &&
          model_file_type_name(39) == NULL);
    /* the names it shares with model_dtype_str are the same names */
    static const enum model_dtype mine[] = {MODEL_DTYPE_F32,  MODEL_DTYPE_F16,    MODEL_DTYPE_Q4_0,
                                            MODEL_DTYPE_Q8_0, MODEL_DTYPE_Q4_K_M, MODEL_DTYPE_Q6_K,
                                            MODEL_DTYPE_BF16};
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
        CHECK_EQ_STR(model_file_type_name((int)mine[i]), model_dtype_str(mine[i]));
    free(b);
    buf_free(&o);
    buf_free(&e);
}

static void rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        rm_tree(p);
    }
    closedir(d);
    rmdir(path);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/slm_gguf_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_f16_exhaustive);
    TEST_RUN(test_f16_rounding);
    TEST_RUN(test_f16_rows);
    TEST_RUN(test_kv_types_roundtrip);
    TEST_RUN(test_writer_misuse);
    TEST_RUN(test_parse_prefix_incomplete);
    TEST_RUN(test_write_deterministic);
    TEST_RUN(test_load_f32_matches_random);
    TEST_RUN(test_load_f16_matches_random);
    TEST_RUN(test_load_bf16_as_stored);
    TEST_RUN(test_write_block_types);
    TEST_RUN(test_kquant_file);
    TEST_RUN(test_qwen2_bias_tied_roundtrip);
    TEST_RUN(test_read_large_header);
    TEST_RUN(test_metadata_keys);
    TEST_RUN(test_llamacpp_style_file);
    make_good();
    TEST_RUN(test_good_file_loads);
    TEST_RUN(test_reject_bad_magic);
    TEST_RUN(test_reject_bad_version);
    TEST_RUN(test_reject_truncated);
    TEST_RUN(test_reject_offset_past_end);
    TEST_RUN(test_reject_misaligned_offset);
    TEST_RUN(test_reject_huge_tensor_count);
    TEST_RUN(test_reject_huge_kv_count);
    TEST_RUN(test_reject_huge_string_length);
    TEST_RUN(test_reject_huge_array_count);
    TEST_RUN(test_reject_duplicate_tensor);
    TEST_RUN(test_reject_duplicate_key);
    TEST_RUN(test_reject_missing_tensor);
    TEST_RUN(test_reject_wrong_shape);
    TEST_RUN(test_reject_quantized_type);
    TEST_RUN(test_load_bf16_mix);
    TEST_RUN(test_reject_unknown_type);
    TEST_RUN(test_reject_bad_dims);
    TEST_RUN(test_reject_bad_alignment);
    TEST_RUN(test_reject_bad_metadata);
    TEST_RUN(test_reject_not_a_file);
    TEST_RUN(test_cli);
    TEST_RUN(test_cli_file_type);
    free(g_good);
    rm_tree(g_dir);
    return TEST_DONE();
}
