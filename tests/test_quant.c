/* test_quant: the ggml block layouts against hand-built blocks, dequantisation against a plain
 * reference on random blocks, quantise -> dequantise round trips within each format's bound
 * (Q8_0: |err| <= d/2 per value plus 127 x the fp16 rounding of d; Q4_0: d + 8 x that),
 * bf16 conversion, and every fused dot variant this CPU has against the f64 reference
 * (relative 1e-5 of sum |w x|). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/quant.h"
#include "test.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static float frand(float a)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return a * (2.0f * (float)((g_rng >> 11) * (1.0 / 9007199254740992.0)) - 1.0f);
}

static void test_layouts(void)
{
    CHECK_EQ_INT(sizeof(struct quant_block_q8_0), 34);
    CHECK_EQ_INT(sizeof(struct quant_block_q4_0), 18);
    CHECK_EQ_INT(quant_row_bytes(GGML_TYPE_Q8_0, 64), 68);
    CHECK_EQ_INT(quant_row_bytes(GGML_TYPE_Q4_0, 64), 36);
    CHECK_EQ_INT(quant_row_bytes(GGML_TYPE_Q8_0, 33), 0);
    CHECK_EQ_INT(quant_row_bytes(GGML_TYPE_Q4_K, 256), 0);
    uint32_t be, bb;
    CHECK(ggml_type_block(GGML_TYPE_Q8_0, &be, &bb) && be == 32 && bb == 34);
    CHECK(ggml_type_block(GGML_TYPE_Q4_0, &be, &bb) && be == 32 && bb == 18);
    CHECK(ggml_type_block(GGML_TYPE_BF16, &be, &bb) && be == 1 && bb == 2);
    /* A hand-built Q8_0 block: d = 0.5 (fp16 0x3800), q = j - 16. */
    unsigned char b8[34];
    b8[0] = 0x00, b8[1] = 0x38;
    for (int j = 0; j < 32; j++)
        b8[2 + j] = (unsigned char)(int8_t)(j - 16);
    float out[32];
    CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_Q8_0, b8, out, 32), 0);
    for (int j = 0; j < 32; j++)
        CHECK(out[j] == 0.5f * (float)(j - 16));
    /* Q4_0: d = 2, byte j holds value j (low nibble) and value j + 16 (high nibble). */
    unsigned char b4[18];
    b4[0] = 0x00, b4[1] = 0x40;
    for (int j = 0; j < 16; j++)
        b4[2 + j] = (unsigned char)((j & 15) | ((15 - j) << 4));
    CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_Q4_0, b4, out, 32), 0);
    for (int j = 0; j < 16; j++) {
        CHECK(out[j] == 2.0f * (float)(j - 8));
        CHECK(out[j + 16] == 2.0f * (float)(15 - j - 8));
    }
    CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_Q4_K, b4, out, 256), -1);
}

static void test_bf16(void)
{
    CHECK_EQ_INT(quant_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(quant_f32_to_bf16(-2.0f), 0xc000);
    CHECK(quant_bf16_to_f32(0x3f80) == 1.0f);
    /* 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties to even (1). */
    CHECK_EQ_INT(quant_f32_to_bf16(1.0f + 1.0f / 256.0f), 0x3f80);
    CHECK_EQ_INT(quant_f32_to_bf16(1.0f + 3.0f / 256.0f), 0x3f82);
    float nan = __builtin_nanf("");
    CHECK(quant_bf16_to_f32(quant_f32_to_bf16(nan)) != quant_bf16_to_f32(quant_f32_to_bf16(nan)));
    for (int i = 0; i < 10000; i++) {
        float v = frand(100.0f);
        float r = quant_bf16_to_f32(quant_f32_to_bf16(v));
        CHECK(fabsf(r - v) <= fabsf(v) / 256.0f);
    }
}

/* Random blocks (random scales and codes) dequantised against the formula written out. */
static void test_dequant_random(void)
{
    enum { NB = 64 };
    unsigned char w8[NB * 34], w4[NB * 18];
    float out[NB * 32];
    for (int b = 0; b < NB; b++) {
        uint16_t d = gguf_f32_to_f16(frand(0.1f));
        memcpy(w8 + b * 34, &d, 2);
        memcpy(w4 + b * 18, &d, 2);
        for (int j = 0; j < 32; j++)
            w8[b * 34 + 2 + j] = (unsigned char)(frand(1.0f), g_rng >> 40);
        for (int j = 0; j < 16; j++)
            w4[b * 18 + 2 + j] = (unsigned char)(frand(1.0f), g_rng >> 40);
    }
    CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_Q8_0, w8, out, NB * 32), 0);
    for (int b = 0; b < NB; b++) {
        uint16_t dh;
        memcpy(&dh, w8 + b * 34, 2);
        for (int j = 0; j < 32; j++)
            CHECK(out[b * 32 + j] == gguf_f16_to_f32(dh) * (float)(int8_t)w8[b * 34 + 2 + j]);
    }
    CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_Q4_0, w4, out, NB * 32), 0);
    for (int b = 0; b < NB; b++) {
        uint16_t dh;
        memcpy(&dh, w4 + b * 18, 2);
        float d = gguf_f16_to_f32(dh);
        for (int j = 0; j < 32; j++) {
            int byte = w4[b * 18 + 2 + (j % 16)];
            int q = j < 16 ? (byte & 15) : (byte >> 4);
            CHECK(out[b * 32 + j] == d * (float)(q - 8));
        }
    }
}

/* quantise -> dequantise: each value within half a step (d/2; Q4_0: one step, the clamp at +7)
 * of the input, plus what the fp16 rounding of d moves the largest code (|q| <= 127 or 8). */
static void check_roundtrip(uint32_t type, float amp)
{
    enum { N = 32 * 128 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    unsigned char *q = malloc(quant_row_bytes(type, N));
    for (int i = 0; i < N; i++)
        x[i] = frand(amp);
    for (int i = 0; i < 32; i++)
        x[i] = 0.0f; /* an all-zero block gives d = 0 and zeros */
    CHECK_EQ_INT(quant_quantize_row(type, x, q, N), 0);
    CHECK_EQ_INT(quant_dequantize_row(type, q, y, N), 0);
    double worst = 0.0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        float d = type == GGML_TYPE_Q8_0 ? amax / 127.0f : amax / 8.0f;
        float dq = gguf_f16_to_f32(gguf_f32_to_f16(d));
        float max_code = type == GGML_TYPE_Q8_0 ? 127.0f : 8.0f;
        /* Q4_0: values of the sign opposite to the largest reach +8 steps, clamped to +7. */
        float steps = type == GGML_TYPE_Q8_0 ? 0.5f : 1.0f;
        float bound = (d * steps + fabsf(dq - d) * max_code) * 1.0001f + 1e-30f;
        for (int j = 0; j < 32; j++) {
            double e = fabs((double)y[b * 32 + j] - (double)x[b * 32 + j]);
            CHECK_MSG(e <= bound, "block %d value %d: %g vs %g (bound %g)", b, j,
                      (double)y[b * 32 + j], (double)x[b * 32 + j], (double)bound);
            if (e / (amax + 1e-30) > worst)
                worst = e / (amax + 1e-30);
        }
    }
    for (int j = 0; j < 32; j++)
        CHECK(y[j] == 0.0f);
    fprintf(stderr, "  %s round trip: worst |err| / max|block| = %.4g\n", ggml_type_name(type),
            worst);
    free(x), free(y), free(q);
}

static void test_roundtrip(void)
{
    check_roundtrip(GGML_TYPE_Q8_0, 1.0f);
    check_roundtrip(GGML_TYPE_Q8_0, 0.001f);
    check_roundtrip(GGML_TYPE_Q4_0, 1.0f);
    /* Q8_0 on a block whose values are exact codes: exact round trip. */
    float x[32], y[32];
    unsigned char q[34];
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j * 8 - 127) * 0.25f / 127.0f;
    x[0] = -0.25f;
    quant_quantize_row(GGML_TYPE_Q8_0, x, q, 32);
    CHECK_EQ_INT((int8_t)q[2], -127);
    quant_dequantize_row(GGML_TYPE_Q8_0, q, y, 32);
    CHECK(fabsf(y[0] - x[0]) <= 0.25f / 1024.0f);
}

/* Every kernel variant the CPU has, every supported type, against the f64 reference. */
static void test_dot_kernels(void)
{
    static const uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16,
                                     GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};
    static const char *variants[] = {"portable", "avx2", "avx512"};
    enum { N = 32 * 37, ROWS = 5 };
    float *w = malloc(N * ROWS * sizeof *w), x[N], y[ROWS];
    unsigned char *wq = malloc(N * ROWS * 4);
    for (int i = 0; i < N * ROWS; i++)
        w[i] = frand(0.05f);
    for (int i = 0; i < N; i++)
        x[i] = frand(2.0f);
    const char *orig = quant_kernel_name();
    int n_variants = 0;
    for (int v = 0; v < 3; v++) {
        if (quant_kernel_force(variants[v]) != 0)
            continue;
        n_variants++;
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            size_t rb = quant_row_bytes(types[t], N);
            for (int r = 0; r < ROWS; r++)
                quant_quantize_row(types[t], w + r * N, wq + r * rb, N);
            quant_dot_rows(types[t], wq, rb, x, y, ROWS, N);
            for (int r = 0; r < ROWS; r++) {
                double ref = quant_dot_ref(types[t], wq + r * rb, x, N);
                double mag = 0.0;
                float row[N];
                quant_dequantize_row(types[t], wq + r * rb, row, N);
                for (int i = 0; i < N; i++)
                    mag += fabs((double)row[i] * x[i]);
                CHECK_MSG(fabs(y[r] - ref) <= 1e-5 * mag + 1e-30, "%s %s row %d: %g vs %g",
                          variants[v], ggml_type_name(types[t]), r, (double)y[r], ref);
            }
        }
    }
    fprintf(stderr, "  %d kernel variant(s) on this CPU, default %s\n", n_variants, orig);
    CHECK(n_variants >= 1);
    CHECK_EQ_INT(quant_kernel_force("nope"), -1);
    quant_kernel_force(orig);
    free(w), free(wq);
}

int main(void)
{
    TEST_RUN(test_layouts);
    TEST_RUN(test_bf16);
    TEST_RUN(test_dequant_random);
    TEST_RUN(test_roundtrip);
    TEST_RUN(test_dot_kernels);
    return TEST_DONE();
}
