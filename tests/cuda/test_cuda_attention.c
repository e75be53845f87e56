/* test_cuda_attention: the paged attention kernels (src/engine/cuda/attention.cu) against a naive
 * f64 reference written here, on ragged batches: prefill runs (through the tile kernel: a run
 * from position 0, one with earlier context, one cut into a full tile and a partial one), short
 * runs and single decode tokens with long contexts (through the decode kernel, one key range
 * and several), block tables scattered through the pool; GQA groups 1, 2, 6, 8; head sizes 64,
 * 96, 128, 256; bf16 and f16. Tolerance: the output is rounded to the 16-bit type, so
 * |d| <= 2^-7 (bf16) or 2^-9 (f16) x max(1, max |ref|), 2-4 ulp of the output type (measured
 * errors are printed). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/dev_test.h"
#include "engine/forward_dev.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "test.h"
#include "util/buf.h"

#define BS 16
#define N_ROWS 4
#define BLOCKS_PER_ROW 20
#define N_BLOCKS (N_ROWS * BLOCKS_PER_ROW)
#define MAX_TOK 160

struct batch {
    int n;
    int32_t pos[MAX_TOK], row[MAX_TOK];
};

static void add_run(struct batch *b, int row, int p0, int count)
{
    for (int i = 0; i < count; i++) {
        b->pos[b->n] = p0 + i;
        b->row[b->n] = row;
        b->n++;
    }
}

static uint32_t rng = 12345;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static uint16_t to16(float f, int f16)
{
    uint16_t h;
    if (!f16)
        return quant_f32_to_bf16(f);
    quant_quantize_row(GGML_TYPE_F16, &f, &h, 1);
    return h;
}
static float from16(uint16_t h, int f16)
{
    if (!f16)
        return quant_bf16_to_f32(h);
    float f;
    quant_dequantize_row(GGML_TYPE_F16, &h, &f, 1);
    return f;
}

static void reference(const struct dev_test_attn *a, const struct batch *b, double *ref)
{
    const int D = a->head_dim, G = a->n_head / a->n_head_kv, q_dim = a->n_head * D;
    const int kv_dim = a->n_head_kv * D;
    double *sc = xcalloc(BLOCKS_PER_ROW * BS, sizeof(double));
    for (int i = 0; i < b->n; i++) {
        for (int h = 0; h < a->n_head; h++) {
            int kvh = h / G, n_keys = b->pos[i] + 1;
            double mx = -INFINITY;
            for (int t = 0; t < n_keys; t++) {
                int slot = a->bt[b->row[i] * a->bt_stride + t / BS] * BS + t % BS;
                double s = 0;
                for (int d = 0; d < D; d++)
                    s += (double)from16(a->q[(size_t)i * q_dim + h * D + d], a->f16) *
                         from16(a->k_pool[(size_t)slot * kv_dim + kvh * D + d], a->f16);
                sc[t] = s / sqrt((double)D);
                mx = fmax(mx, sc[t]);
            }
            double sum = 0;
            for (int t = 0; t < n_keys; t++)
                sum += sc[t] = exp(sc[t] - mx);
            for (int d = 0; d < D; d++) {
                double o = 0;
                for (int t = 0; t < n_keys; t++) {
                    int slot = a->bt[b->row[i] * a->bt_stride + t / BS] * BS + t % BS;
                    o += sc[t] * from16(a->v_pool[(size_t)slot * kv_dim + kvh * D + d], a->f16);
                }
                ref[(size_t)i * q_dim + h * D + d] = o / sum;
            }
        }
    }
    free(sc);
}

/* One configuration, run as planned (tiles + decode) and all-decode with 1, 3 and 7 ranges. */
static void check_config(int f16, int n_head, int n_kv, int D)
{
    struct batch b = {0};
    add_run(&b, 0, 0, 45);   /* tiles 32 + 13 from position 0 */
    add_run(&b, 1, 300, 1);  /* decode, 301 keys: three chunks of the decode kernel */
    add_run(&b, 2, 60, 5);   /* short run */
    add_run(&b, 3, 100, 20); /* tile with 100 keys of earlier context */
    add_run(&b, 1, 17, 1);   /* a second token of row 1 (a past position), alone */
    const int q_dim = n_head * D, kv_dim = n_kv * D;
    size_t nq = (size_t)b.n * q_dim, npool = (size_t)N_BLOCKS * BS * kv_dim;
    uint16_t *q = xcalloc(nq, 2), *k = xcalloc(npool, 2), *v = xcalloc(npool, 2);
    uint16_t *out = xcalloc(nq, 2);
    double *ref = xcalloc(nq, sizeof(double));
    for (size_t i = 0; i < nq; i++)
        q[i] = to16(3.0f * frand(), f16);
    for (size_t i = 0; i < npool; i++) {
        k[i] = to16(frand(), f16);
        v[i] = to16(frand(), f16);
    }
    int32_t bt[N_ROWS * BLOCKS_PER_ROW];
    for (int i = 0; i < N_ROWS * BLOCKS_PER_ROW; i++)
        bt[i] = (int32_t)((i * 29 + 7) % N_BLOCKS); /* 29 coprime with 80 */
    struct dev_test_attn a = {f16, n_head, n_kv, D, BS, N_BLOCKS, b.n, b.pos, b.row,
                              N_ROWS, BLOCKS_PER_ROW, bt, q, k, v, 0, 0};
    reference(&a, &b, ref);
    double mref = 0;
    for (size_t i = 0; i < nq; i++)
        mref = fmax(mref, fabs(ref[i]));
    const double tol = (f16 ? 1.0 / 512 : 1.0 / 128) * fmax(1.0, mref);
    const int modes[4][2] = {{0, 3}, {1, 1}, {1, 3}, {1, 7}};
    for (int mi = 0; mi < 4; mi++) {
        a.all_decode = modes[mi][0];
        a.n_split = modes[mi][1];
        int n_tiles = 0, n_short = 0;
        char err[256];
        int rc = dev_test_attention(&a, out, &n_tiles, &n_short, err, sizeof err);
        CHECK_MSG(rc == 0, "%s", err);
        if (rc != 0)
            break;
        double md = 0;
        for (size_t i = 0; i < nq; i++)
            md = fmax(md, fabs(from16(out[i], f16) - ref[i]));
        fprintf(stderr, "  %s heads %2d/%d D %3d %s split %d: tiles %d, decode %2d, max|d| %.2e "
                "(tol %.2e)\n", f16 ? "f16 " : "bf16", n_head, n_kv, D,
                a.all_decode ? "all-decode" : "planned   ", a.n_split, n_tiles, n_short, md, tol);
        CHECK_MSG(md <= tol, "max|d| %.3g > %.3g", md, tol);
        if (!a.all_decode)
            CHECK(n_tiles == 3 && n_short == 7);
    }
    free(q);
    free(k);
    free(v);
    free(out);
    free(ref);
}

static void test_bf16(void)
{
    check_config(0, 4, 2, 64);   /* tiny's shape */
    check_config(0, 12, 2, 128); /* qwen2.5-1.5b's */
    check_config(0, 8, 8, 96);   /* no GQA, phi-3's head size */
    check_config(0, 16, 2, 256); /* group 8, head 256 */
}

static void test_f16(void)
{
    check_config(1, 4, 2, 64);
    check_config(1, 12, 2, 128);
}

static void test_refused(void)
{
    struct dev_test_attn a;
    memset(&a, 0, sizeof a);
    a.n_head = 4;
    a.n_head_kv = 2;
    a.head_dim = 80;
    char err[256] = "";
    int nt, ns;
    CHECK(dev_test_attention(&a, NULL, &nt, &ns, err, sizeof err) == -1);
    CHECK(strstr(err, "head_dim") != NULL);
    a.head_dim = 64;
    a.n_head = 36;
    CHECK(dev_test_attention(&a, NULL, &nt, &ns, err, sizeof err) == -1);
    CHECK(strstr(err, "query heads per KV head") != NULL);
}

int main(void)
{
    struct dev_props p;
    char err[256];
    if (dev_probe(0, &p, err, sizeof err) != 0) {
        fprintf(stderr, "test_cuda_attention: %s\n", err);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    TEST_RUN(test_bf16);
    TEST_RUN(test_f16);
    TEST_RUN(test_refused);
    return TEST_DONE();
}
