/* test_quant: the ggml block layouts against hand-built blocks, dequantisation against a plain
 * reference on random blocks, quantise -> dequantise round trips within each format's bound
 * (Q8_0: |err| <= d/2 per value plus 127 x the fp16 rounding of d; Q4_0: d + 8 x that; the
 * k-quants and Q5_0: see check_roundtrip_k), hand-built k-quant blocks, random raw blocks (extreme
 * and negative scales) against a value-by-value reference,
 * bf16 conversion, and every fused dot variant this CPU has against the f64 reference
 * (relative 1e-5 of sum |w x|); BF16 rows as stored in detail (test_bf16_rows, test_bf16_dot). */
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
    CHECK_EQ_INT(quant_row_bytes(GGML_TYPE_Q4_K, 512), 288);
    CHECK_EQ_INT(quant_row_bytes(GGML_TYPE_Q5_K, 256), 176);
    CHECK_EQ_INT(quant_row_bytes(GGML_TYPE_Q6_K, 256), 210);
    CHECK_EQ_INT(quant_row_bytes(GGML_TYPE_Q5_0, 64), 44);
    CHECK_EQ_INT(quant_row_bytes(GGML_TYPE_Q4_K, 288), 0); /* rows must be multiples of 256 */
    CHECK_EQ_INT(quant_row_bytes(GGML_TYPE_Q6_K, 32), 0);
    CHECK_EQ_INT(quant_row_bytes(GGML_TYPE_Q2_K, 256), 0); /* unsupported */
    CHECK(!quant_type_supported(GGML_TYPE_Q3_K) && quant_type_supported(GGML_TYPE_Q6_K));
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
    CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_Q4_K, b4, out, 100), -1);
    CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_Q3_K, b4, out, 256), -1);
}

/* Hand-built k-quant blocks: the scale packing of get_scale_min_k4 and the value order. */
static void test_kquant_layouts(void)
{
    CHECK_EQ_INT(sizeof(struct quant_block_q4_k), 144);
    CHECK_EQ_INT(sizeof(struct quant_block_q5_k), 176);
    CHECK_EQ_INT(sizeof(struct quant_block_q6_k), 210);
    CHECK_EQ_INT(sizeof(struct quant_block_q5_0), 22);
    uint32_t be, bb;
    CHECK(ggml_type_block(GGML_TYPE_Q4_K, &be, &bb) && be == 256 && bb == 144);
    float out[256];
    /* Q4_K: d = 1, dmin = 0.5; sub-block 1: scale 3, min 2 (low 6 bits of bytes 1 and 5);
     * sub-block 5: scale 0x25 = 37 (low nibble of byte 9, top 2 bits from byte 1's bits 6-7),
     * min 0x1a = 26 (high nibble of byte 9, top bits from byte 5). */
    struct quant_block_q4_k k4;
    memset(&k4, 0, sizeof k4);
    k4.d = 0x3c00, k4.dmin = 0x3800;
    k4.scales[1] = 3 | (2 << 6);  /* sc1 = 3, sc5 top bits = 2 */
    k4.scales[5] = 2 | (1 << 6);  /* m1 = 2, m5 top bits = 1 */
    k4.scales[9] = 5 | (10 << 4); /* sc5 = 5 | 2 << 4 = 37, m5 = 10 | 1 << 4 = 26 */
    k4.qs[0] = 0x70;              /* value 0: 0, value 32 (sub-block 1): 7 */
    k4.qs[64 + 3] = 0x9c;         /* value 131: 12 (sub-block 4), value 163 (5): 9 */
    CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_Q4_K, &k4, out, 256), 0);
    CHECK(out[0] == 0.0f);
    CHECK(out[32] == 3.0f * 7.0f - 0.5f * 2.0f);
    CHECK(out[33] == -1.0f);
    CHECK(out[131] == 0.0f); /* sub-block 4 has scale 0, min 0 */
    CHECK(out[163] == 37.0f * 9.0f - 0.5f * 26.0f);
    CHECK(out[164] == -13.0f);
    /* Q5_K: the same header; qh bit 2 of byte 3 is the fifth bit of value 64*1 + 3. */
    struct quant_block_q5_k k5;
    memset(&k5, 0, sizeof k5);
    k5.d = 0x3c00, k5.dmin = 0x3800;
    memcpy(k5.scales, k4.scales, 12);
    k5.scales[2] = 1;     /* sc2 = 1 */
    k5.qs[32 + 3] = 0x01; /* value 67: low 4 bits 1 */
    k5.qh[3] = 1 << 2;    /* value 67: fifth bit */
    k5.qh[4] = 1 << 3;    /* value 64 + 32 + 4 = 100 (sub-block 3): fifth bit */
    CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_Q5_K, &k5, out, 256), 0);
    CHECK(out[67] == 17.0f);
    CHECK(out[100] == 0.0f); /* sub-block 3 scale 0 */
    CHECK(out[32] == -1.0f); /* sub-block 1, code 0: -dmin * m */
    /* Q6_K: d = 0.5; value 128 + 64 + 5 (half 1, ql high nibble, qh bits 4-5, scale 8 + 4). */
    struct quant_block_q6_k k6;
    memset(&k6, 0, sizeof k6);
    k6.d = 0x3800;
    k6.scales[12] = -3;
    k6.ql[64 + 5] = 0xa0;   /* high nibble 10 */
    k6.qh[32 + 5] = 3 << 4; /* high bits 3: q = 10 | 48 = 58 -> 26 */
    CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_Q6_K, &k6, out, 256), 0);
    CHECK(out[128 + 64 + 5] == 0.5f * -3.0f * 26.0f);
    CHECK(out[0] == 0.0f); /* scale 0 */
    /* Q5_0: d = 2; value 20 = high nibble of qs[4] | bit 20 of qh. */
    unsigned char b5[22] = {0x00, 0x40};
    uint32_t qh = 1u << 20 | 1u << 1;
    memcpy(b5 + 2, &qh, 4);
    b5[6 + 4] = 0x30;
    b5[6 + 1] = 0x0f;
    CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_Q5_0, b5, out, 32), 0);
    CHECK(out[20] == 2.0f * (float)((3 | 16) - 16));
    CHECK(out[1] == 2.0f * (float)((15 | 16) - 16));
    CHECK(out[0] == -32.0f);
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
    static const char *variants[] = {"portable", "avx2", "avx512"};
    const char *orig = quant_kernel_name();
    for (int var = 0; var < 3; var++) {
        if (quant_kernel_force(variants[var]) != 0)
            continue;
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
    quant_kernel_force(orig);
}

/* The block formats value by value, written from the ggml-common.h description (value v of the
 * block at blk), in f64. */
static double ref_value(uint32_t type, const unsigned char *blk, int v, double *mag)
{
    uint16_t h;
    if (type == GGML_TYPE_Q5_0) {
        uint32_t qh;
        memcpy(&h, blk, 2);
        memcpy(&qh, blk + 2, 4);
        int byte = blk[6 + v % 16];
        int q = (v < 16 ? byte & 15 : byte >> 4) | (int)((qh >> v) & 1) << 4;
        *mag = fabs((double)gguf_f16_to_f32(h) * (q - 16));
        return (double)gguf_f16_to_f32(h) * (q - 16);
    }
    if (type == GGML_TYPE_Q6_K) {
        memcpy(&h, blk + 208, 2);
        int half = v / 128, r = v % 128, quarter = r / 32, l = r % 32;
        int byte = blk[64 * half + l + (quarter & 1) * 32];
        int lo = quarter < 2 ? byte & 15 : byte >> 4;
        int hi = (blk[128 + 32 * half + l] >> (2 * quarter)) & 3;
        int sc = (int8_t)blk[192 + v / 16];
        *mag = fabs((double)gguf_f16_to_f32(h) * sc * ((lo | hi << 4) - 32));
        return (double)gguf_f16_to_f32(h) * sc * ((lo | hi << 4) - 32);
    }
    /* Q4_K / Q5_K */
    uint16_t hm;
    memcpy(&h, blk, 2);
    memcpy(&hm, blk + 2, 2);
    const unsigned char *s = blk + 4;
    int j = v / 32, sc, m;
    if (j < 4) {
        sc = s[j] & 63, m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
    int k5 = type == GGML_TYPE_Q5_K;
    int byte = blk[(k5 ? 48 : 16) + 32 * (v / 64) + v % 32];
    int q = (v % 64) < 32 ? byte & 15 : byte >> 4;
    if (k5)
        q |= ((blk[16 + v % 32] >> j) & 1) << 4;
    *mag = fabs((double)gguf_f16_to_f32(h) * sc * q) + fabs((double)gguf_f16_to_f32(hm) * m);
    return (double)gguf_f16_to_f32(h) * sc * q - (double)gguf_f16_to_f32(hm) * m;
}

static const uint32_t new_types[] = {GGML_TYPE_Q5_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
                                     GGML_TYPE_Q6_K};

/* Random bytes as blocks (every scale/min/code pattern), fp16 scales random including extreme
 * magnitudes (65504, subnormals) and negative values (dmin < 0 too). */
static void fill_random_blocks(uint32_t type, unsigned char *w, int n_blocks, int extreme)
{
    uint32_t be, bb;
    ggml_type_block(type, &be, &bb);
    for (size_t i = 0; i < (size_t)n_blocks * bb; i++)
        w[i] = (unsigned char)(frand(1.0f), g_rng >> 40);
    static const float ext[] = {65504.0f, -65504.0f, 6.0e-8f, -1.0e-5f, 0.0f, 1.0f};
    for (int b = 0; b < n_blocks; b++) {
        unsigned char *blk = w + (size_t)b * bb;
        float d = extreme ? ext[b % 6] : frand(0.01f);
        float dm = extreme ? ext[(b + 3) % 6] : frand(0.01f); /* either sign */
        uint16_t hd = gguf_f32_to_f16(d), hm = gguf_f32_to_f16(dm);
        if (type == GGML_TYPE_Q6_K) {
            memcpy(blk + 208, &hd, 2);
        } else {
            memcpy(blk, &hd, 2);
            if (type != GGML_TYPE_Q5_0)
                memcpy(blk + 2, &hm, 2);
        }
    }
}

static void test_kquant_dequant_random(void)
{
    enum { NB = 24 };
    unsigned char *w = malloc(NB * 210);
    float *out = malloc(NB * 256 * sizeof *out);
    static const char *variants[] = {"portable", "avx2", "avx512"}; /* the dequantisers there are */
    float *port = malloc(NB * 256 * sizeof *port);
    const char *orig = quant_kernel_name();
    for (int var = 0; var < 3; var++) {
        if (quant_kernel_force(variants[var]) != 0)
            continue;
        for (size_t t = 0; t < sizeof new_types / sizeof new_types[0]; t++) {
            uint32_t type = new_types[t], be, bb;
            ggml_type_block(type, &be, &bb);
            for (int extreme = 0; extreme < 2; extreme++) {
                fill_random_blocks(type, w, NB, extreme);
                CHECK_EQ_INT(quant_dequantize_row(type, w, out, NB * be), 0);
                /* the SIMD tiles hold the scalar code's values bit for bit (same operations in
                 * the same order: multiply, then subtract) */
                quant_kernel_force("portable");
                quant_dequantize_row(type, w, port, NB * be);
                quant_kernel_force(variants[var]);
                CHECK_MSG(memcmp(out, port, (size_t)NB * be * sizeof *out) == 0,
                          "%s %s: not the portable values bit for bit", variants[var],
                          ggml_type_name(type));
                int bad = 0;
                for (int b = 0; b < NB; b++) {
                    for (uint32_t v = 0; v < be; v++) {
                        double mag, r = ref_value(type, w + (size_t)b * bb, (int)v, &mag);
                        double got = out[(size_t)b * be + v];
                        /* f32 arithmetic (d * sc, * q, - dmin * m) against f64: a few roundings
                         * of the terms' magnitude */
                        if (!(fabs(got - r) <= 4e-7 * mag) && bad++ < 3)
                            CHECK_MSG(0, "%s block %d value %u: %.9g vs %.9g", ggml_type_name(type),
                                      b, v, got, r);
                    }
                }
                CHECK_MSG(bad == 0, "%s %s: %d values off", variants[var], ggml_type_name(type),
                          bad);
            }
        }
    }
    quant_kernel_force(orig);
    free(w), free(out), free(port);
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

/* k-quants and Q5_0: each value within the bound its stored scales give (quant_k.c's min/max
 * method): Q4_K/Q5_K half a step d*sc plus what rounding the 6-bit scale and min moves the range
 * (nmax * d / 2 + dmin / 2); Q6_K one step (the clamp at +31) plus 32 |d| (the 8-bit scale);
 * Q5_0 one step plus 16 x the fp16 rounding of d. */
static void check_roundtrip_k(uint32_t type, float amp, float shift)
{
    enum { N = 256 * 16 };
    uint32_t be, bb;
    ggml_type_block(type, &be, &bb);
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    unsigned char *q = malloc(quant_row_bytes(type, N));
    for (int i = 0; i < N; i++)
        x[i] = frand(amp) + shift;
    for (int i = 0; i < 256; i++)
        x[i] = 0.0f; /* all-zero blocks dequantise to zeros */
    for (int i = 256; i < 512; i++)
        x[i] = (i % 32 < 16) ? frand(amp * 1e-4f) : frand(amp); /* scales of mixed sizes */
    CHECK_EQ_INT(quant_quantize_row(type, x, q, N), 0);
    CHECK_EQ_INT(quant_dequantize_row(type, q, y, N), 0);
    double worst = 0.0;
    int bad = 0;
    for (int i = 0; i < N; i++) {
        const unsigned char *blk = q + (size_t)(i / be) * bb;
        int v = i % (int)be;
        uint16_t h, hm;
        double bound;
        if (type == GGML_TYPE_Q5_0) {
            memcpy(&h, blk, 2);
            float amax = 0.0f;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[i - v + j]));
            double d = amax / 16.0, dq = fabs((double)gguf_f16_to_f32(h));
            bound = d + fabs(dq - d) * 16.0;
        } else if (type == GGML_TYPE_Q6_K) {
            memcpy(&h, blk + 208, 2);
            double d = fabs((double)gguf_f16_to_f32(h));
            double step = d * abs((int8_t)blk[192 + v / 16]);
            bound = step + 32.0 * d;
        } else {
            memcpy(&h, blk, 2);
            memcpy(&hm, blk + 2, 2);
            double d = gguf_f16_to_f32(h), dmin = gguf_f16_to_f32(hm);
            double mag, r = ref_value(type, blk, v, &mag);
            (void)r;
            int j = v / 32;
            const unsigned char *sc = blk + 4;
            int scj = j < 4 ? sc[j] & 63 : (sc[j + 4] & 15) | (sc[j - 4] >> 6) << 4;
            int nmax = type == GGML_TYPE_Q4_K ? 15 : 31;
            bound = d * scj / 2.0 + nmax * d / 2.0 + dmin / 2.0;
        }
        bound = bound * 1.0001 + 1e-30;
        double e = fabs((double)y[i] - (double)x[i]);
        if (!(e <= bound) && bad++ < 3)
            CHECK_MSG(0, "%s value %d: %g vs %g (bound %g)", ggml_type_name(type), i, (double)y[i],
                      (double)x[i], bound);
        if (i >= 512 && e / amp > worst)
            worst = e / amp;
    }
    CHECK_MSG(bad == 0, "%s: %d values outside the bound", ggml_type_name(type), bad);
    for (int i = 0; i < 256; i++)
        CHECK(y[i] == 0.0f);
    fprintf(stderr, "  %s round trip (amp %g, shift %g): worst |err| / amp = %.4g\n",
            ggml_type_name(type), (double)amp, (double)shift, worst);
    free(x), free(y), free(q);
}

static void test_roundtrip_k(void)
{
    for (size_t t = 0; t < sizeof new_types / sizeof new_types[0]; t++) {
        check_roundtrip_k(new_types[t], 1.0f, 0.0f);
        check_roundtrip_k(new_types[t], 0.01f, 0.0f);
        check_roundtrip_k(new_types[t], 0.5f, 0.6f);  /* all positive: min clamped to 0 */
        check_roundtrip_k(new_types[t], 0.5f, -0.7f); /* all negative */
    }
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
    static const uint32_t types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16,
                                     GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0,
                                     GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    static const char *variants[] = {"portable", "avx2", "avx512"};
    enum { N = 256 * 5, ROWS = 5 };
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
            uint32_t be, bb;
            ggml_type_block(types[t], &be, &bb);
            int new_type = types[t] == GGML_TYPE_Q5_0 ||
                           (types[t] >= GGML_TYPE_Q4_K && types[t] <= GGML_TYPE_Q6_K);
            if (new_type) /* the last row: raw random blocks, not the quantiser's */
                fill_random_blocks(types[t], wq + (ROWS - 1) * rb, (int)(N / be), 0);
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

/* BF16 rows as stored: the dequantiser (portable, AVX2 and AVX-512 tile variants) against the bit shift
 * written out, over special bit patterns (±0, ±Inf, quiet and signalling NaNs with payloads,
 * denormals, the largest finite) and random halves, at odd lengths and an odd address; then every
 * dot variant against dequantise-then-dot (f64, relative 1e-5 of sum |w x|; NaN/Inf rows give
 * NaN/Inf), and bit for bit against the same variant's F16 kernel on values both types hold
 * exactly (the two kernels differ only in the conversion). */
static void test_bf16_rows(void)
{
    enum { N = 16 * 9 + 7 };
    static const uint16_t special[] = {0x0000, 0x8000, 0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x7f81,
                                       0x7fff, 0x0001, 0x8001, 0x007f, 0x0080, 0x7f7f, 0xff7f,
                                       0x3f80, 0xbf80};
    unsigned char *buf = malloc(N * 2 + 1), *raw = buf + 1; /* odd address */
    float out[N], x[N];
    for (int i = 0; i < N; i++) {
        uint16_t h = i < (int)(sizeof special / sizeof special[0])
                         ? special[i]
                         : (uint16_t)(frand(1.0f), g_rng >> 48);
        memcpy(raw + 2 * i, &h, 2);
        x[i] = frand(1.0f);
    }
    static const char *variants[] = {"portable", "avx2", "avx512"};
    const char *orig = quant_kernel_name();
    for (int v = 0; v < 3; v++) {
        if (quant_kernel_force(variants[v]) != 0)
            continue;
        for (int n = 0; n <= N; n += (n < 40 ? 1 : 37)) {
            memset(out, 0xa5, sizeof out);
            CHECK_EQ_INT(quant_dequantize_row(GGML_TYPE_BF16, raw, out, (size_t)n), 0);
            int bad = 0;
            for (int i = 0; i < n; i++) {
                uint16_t h;
                uint32_t want, got;
                memcpy(&h, raw + 2 * i, 2);
                want = (uint32_t)h << 16;
                memcpy(&got, &out[i], 4);
                if (got != want && bad++ < 3)
                    CHECK_MSG(0, "%s n %d value %d: %08x vs %08x", variants[v], n, i,
                              (unsigned)got, (unsigned)want);
            }
            CHECK_MSG(bad == 0, "%s n %d: %d values differ", variants[v], n, bad);
        }
        /* Specials in the dot: a row with an Inf (and no NaN) is Inf or NaN; with a NaN, NaN. */
        float y;
        quant_dot_rows(GGML_TYPE_BF16, raw, 0, x, &y, 1, N);
        CHECK_MSG(isnan(y), "%s: dot over a NaN weight = %g", variants[v], (double)y);
    }
    quant_kernel_force(orig);
    free(buf);
}

static void test_bf16_dot(void)
{
    enum { N = 16 * 11 + 5, ROWS = 4 };
    static const char *variants[] = {"portable", "avx2", "avx512"};
    unsigned char wb[ROWS * N * 2 + 1], wh[ROWS * N * 2];
    float x[N], row[N], y[ROWS], yh[ROWS];
    for (int i = 0; i < ROWS * N; i++) {
        /* bf16 values with exponents f16 also covers: |v| in [2^-10, 2) or 0, 8-bit mantissas */
        float f = frand(1.0f);
        if (fabsf(f) < 1.0f / 1024.0f)
            f = 0.0f;
        uint16_t b = quant_f32_to_bf16(f), h = gguf_f32_to_f16(quant_bf16_to_f32(b));
        CHECK(gguf_f16_to_f32(h) == quant_bf16_to_f32(b));
        memcpy(wb + 1 + 2 * i, &b, 2);
        memcpy(wh + 2 * i, &h, 2);
    }
    for (int i = 0; i < N; i++)
        x[i] = frand(3.0f);
    x[0] = 1e-38f; /* a denormal-adjacent input */
    const char *orig = quant_kernel_name();
    for (int v = 0; v < 3; v++) {
        if (quant_kernel_force(variants[v]) != 0)
            continue;
        quant_dot_rows(GGML_TYPE_BF16, wb + 1, N * 2, x, y, ROWS, N);
        quant_dot_rows(GGML_TYPE_F16, wh, N * 2, x, yh, ROWS, N);
        for (int r = 0; r < ROWS; r++) {
            quant_dequantize_row(GGML_TYPE_BF16, wb + 1 + (size_t)r * N * 2, row, N);
            double ref = 0.0, mag = 0.0;
            for (int i = 0; i < N; i++) {
                ref += (double)row[i] * x[i];
                mag += fabs((double)row[i] * x[i]);
            }
            CHECK_MSG(fabs(y[r] - ref) <= 1e-5 * mag + 1e-30, "%s row %d: %g vs %g", variants[v],
                      r, (double)y[r], ref);
            CHECK_MSG(memcmp(&y[r], &yh[r], 4) == 0, "%s row %d: bf16 %a vs f16 %a", variants[v],
                      r, (double)y[r], (double)yh[r]);
            float one;
            quant_dot_rows(GGML_TYPE_BF16, wb + 1 + (size_t)r * N * 2, 0, x, &one, 1, N);
            CHECK(memcmp(&one, &y[r], 4) == 0); /* a row's result does not depend on n_rows */
        }
    }
    quant_kernel_force(orig);
}

int main(void)
{
    TEST_RUN(test_layouts);
    TEST_RUN(test_bf16);
    TEST_RUN(test_dequant_random);
    TEST_RUN(test_kquant_layouts);
    TEST_RUN(test_kquant_dequant_random);
    TEST_RUN(test_roundtrip);
    TEST_RUN(test_roundtrip_k);
    TEST_RUN(test_dot_kernels);
    TEST_RUN(test_bf16_rows);
    TEST_RUN(test_bf16_dot);
    return TEST_DONE();
}
