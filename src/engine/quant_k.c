/* quant_k: Q4_K, Q5_K, Q6_K (super-blocks of 256 values) and Q5_0 (blocks of 32), laid out as
 * llama.cpp's ggml-common.h defines them:
 *
 *   Q4_K (144 B): fp16 d, fp16 dmin, scales[12], qs[128]. Eight sub-blocks of 32 values, each
 *     with a 6-bit scale sc and 6-bit min m (get_scale_min_k4 packing: sub-blocks 0..3 in the
 *     low 6 bits of scales[j] / scales[j+4]; 4..7 in the nibbles of scales[j+4] with their top
 *     2 bits in the top bits of scales[j-4] / scales[j]); value = d*sc*q - dmin*m, q 4 bits.
 *     Bytes qs[32p + l] hold value 64p + l (low nibble) and 64p + 32 + l (high nibble).
 *   Q5_K (176 B): as Q4_K plus qh[32]: bit 2p of qh[l] is the fifth bit of value 64p + l,
 *     bit 2p + 1 that of value 64p + 32 + l.
 *   Q6_K (210 B): ql[128], qh[64], int8 scales[16], fp16 d. Sixteen sub-blocks of 16 values;
 *     value = d * scales[v / 16] * (q - 32), q 6 bits. For half h of the block (128 values,
 *     ql + 64h, qh + 32h): value l (l < 32) = ql[l] low | qh[l] bits 0-1, l + 32 = ql[l+32] low |
 *     bits 2-3, l + 64 = ql[l] high | bits 4-5, l + 96 = ql[l+32] high | bits 6-7.
 *   Q5_0 (22 B): fp16 d, qh (32 bits, little-endian), qs[16]; value j = d * (q - 16) with
 *     q = qs[j] low | bit j of qh << 4, value j + 16 = qs[j] high | bit j + 16 << 4.
 *
 * Quantisation is reference quality, not llama.cpp's: k-quant scales come from each sub-block's
 * min and max (Q4_K/Q5_K: step (max - min) / (2^bits - 1), min clamped to <= 0 as llama.cpp
 * does; Q6_K: the value of largest magnitude / -32), then the super-block scales d, dmin from
 * the largest sub-block scale / 63 (Q6_K: / -128, int8), with no iterative search
 * (make_qkx2_quants) and no importance matrix. Q5_0 is ggml's quantize_row_q5_0_ref exactly.
 * This module dequantises and multiplies; it does not know about tensors or files. */
#include "engine/quant_k.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine/gguf.h"

#define QK 256

static uint16_t ld16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static void st16(unsigned char *p, uint16_t v)
{
    memcpy(p, &v, 2);
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The 12 scale bytes -> 8 scales and 8 mins (6 bits each). */
static void k4_scales(const unsigned char *s, uint8_t sc[8], uint8_t mn[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (uint8_t)((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4));
        mn[j] = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static void k4_pack(unsigned char *s, const uint8_t sc[8], const uint8_t mn[8])
{
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = sc[j];
            s[j + 4] = mn[j];
        } else {
            s[j + 4] = (unsigned char)((sc[j] & 15) | ((mn[j] & 15) << 4));
            s[j - 4] |= (unsigned char)((sc[j] >> 4) << 6);
            s[j] |= (unsigned char)((mn[j] >> 4) << 6);
        }
    }
}

/* One super-block of Q4_K (nmax 15) or Q5_K (nmax 31): codes q[256], header at blk. */
static void kq_block(const float *x, int nmax, unsigned char *hdr, uint8_t *q)
{
    float scale[8], minv[8], max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        float lo = 0.0f, hi = x[32 * j];
        for (int l = 0; l < 32; l++) {
            lo = fminf(lo, x[32 * j + l]);
            hi = fmaxf(hi, x[32 * j + l]);
        }
        hi = fmaxf(hi, lo);
        scale[j] = (hi - lo) / (float)nmax;
        minv[j] = -lo;
        max_scale = fmaxf(max_scale, scale[j]);
        max_min = fmaxf(max_min, minv[j]);
    }
    uint16_t dh = gguf_f32_to_f16(max_scale / 63.0f), mh = gguf_f32_to_f16(max_min / 63.0f);
    float d = gguf_f16_to_f32(dh), dmin = gguf_f16_to_f32(mh);
    uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; j++) {
        sc[j] = (uint8_t)(d > 0.0f ? clampi((int)lrintf(scale[j] / d), 0, 63) : 0);
        mn[j] = (uint8_t)(dmin > 0.0f ? clampi((int)lrintf(minv[j] / dmin), 0, 63) : 0);
        float step = d * (float)sc[j], off = dmin * (float)mn[j];
        for (int l = 0; l < 32; l++) {
            int c = step > 0.0f ? (int)lrintf((x[32 * j + l] + off) / step) : 0;
            q[32 * j + l] = (uint8_t)clampi(c, 0, nmax);
        }
    }
    st16(hdr, dh);
    st16(hdr + 2, mh);
    k4_pack(hdr + 4, sc, mn);
}

void quantk_quantize_q4_k(const float *x, unsigned char *dst, size_t n)
{
    for (size_t b = 0; b < n / QK; b++, x += QK, dst += 144) {
        uint8_t q[QK];
        kq_block(x, 15, dst, q);
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++)
            for (int l = 0; l < 32; l++)
                dst[16 + 32 * p + l] = (unsigned char)(q[64 * p + l] | (q[64 * p + 32 + l] << 4));
    }
}

void quantk_quantize_q5_k(const float *x, unsigned char *dst, size_t n)
{
    for (size_t b = 0; b < n / QK; b++, x += QK, dst += 176) {
        uint8_t q[QK];
        kq_block(x, 31, dst, q);
        unsigned char *qh = dst + 16, *qs = dst + 48;
        memset(qh, 0, 32);
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            for (int l = 0; l < 32; l++) {
                int a = q[64 * p + l], c = q[64 * p + 32 + l];
                qs[32 * p + l] = (unsigned char)((a & 15) | ((c & 15) << 4));
                qh[l] |= (unsigned char)(((a >> 4) << (2 * p)) | ((c >> 4) << (2 * p + 1)));
            }
        }
    }
}

void quantk_quantize_q6_k(const float *x, unsigned char *dst, size_t n)
{
    for (size_t b = 0; b < n / QK; b++, x += QK, dst += 210) {
        float scale[16], max_scale = 0.0f;
        for (int j = 0; j < 16; j++) {
            float amax = 0.0f, mx = 0.0f;
            for (int l = 0; l < 16; l++) {
                float v = x[16 * j + l];
                if (fabsf(v) > amax) {
                    amax = fabsf(v);
                    mx = v;
                }
            }
            scale[j] = mx / -32.0f;
            if (fabsf(scale[j]) > fabsf(max_scale))
                max_scale = scale[j];
        }
        uint16_t dh = gguf_f32_to_f16(max_scale / -128.0f);
        float d = gguf_f16_to_f32(dh);
        int8_t sc[16];
        uint8_t q[QK];
        for (int j = 0; j < 16; j++) {
            sc[j] = (int8_t)(d != 0.0f ? clampi((int)lrintf(scale[j] / d), -128, 127) : 0);
            float step = d * (float)sc[j];
            for (int l = 0; l < 16; l++) {
                int c = step != 0.0f ? (int)lrintf(x[16 * j + l] / step) : 0;
                q[16 * j + l] = (uint8_t)(clampi(c, -32, 31) + 32);
            }
        }
        unsigned char *ql = dst, *qh = dst + 128;
        memset(qh, 0, 64);
        for (int h = 0; h < 2; h++) {
            const uint8_t *qq = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[64 * h + l] = (unsigned char)((qq[l] & 15) | ((qq[l + 64] & 15) << 4));
                ql[64 * h + l + 32] = (unsigned char)((qq[l + 32] & 15) | ((qq[l + 96] & 15) << 4));
                qh[32 * h + l] =
                    (unsigned char)((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) |
                                    ((qq[l + 64] >> 4) << 4) | ((qq[l + 96] >> 4) << 6));
            }
        }
        memcpy(dst + 192, sc, 16);
        st16(dst + 208, dh);
    }
}

void quantk_quantize_q5_0(const float *x, unsigned char *dst, size_t n)
{
    for (size_t b = 0; b < n / 32; b++, x += 32, dst += 22) {
        float amax = 0.0f, mx = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                mx = x[j];
            }
        }
        float d = mx / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        st16(dst, gguf_f32_to_f16(d));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (int8_t)(x[j] * id + 16.5f), q1 = (int8_t)(x[j + 16] * id + 16.5f);
            q0 = q0 < 31 ? q0 : 31;
            q1 = q1 < 31 ? q1 : 31;
            dst[6 + j] = (unsigned char)((q0 & 15) | ((q1 & 15) << 4));
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + 16);
        }
        memcpy(dst + 2, &qh, 4);
    }
}

/* ---- dequantisation ---- */

void quantk_dequantize_q4_k(const unsigned char *src, float *y, size_t n)
{
    for (size_t b = 0; b < n / QK; b++, src += 144) {
        float d = gguf_f16_to_f32(ld16(src)), dmin = gguf_f16_to_f32(ld16(src + 2));
        uint8_t sc[8], mn[8];
        k4_scales(src + 4, sc, mn);
        const unsigned char *qs = src + 16;
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            float d1 = d * sc[2 * p], m1 = dmin * mn[2 * p];
            float d2 = d * sc[2 * p + 1], m2 = dmin * mn[2 * p + 1];
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(qs[32 * p + l] & 15) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)(qs[32 * p + l] >> 4) - m2;
        }
    }
}

void quantk_dequantize_q5_k(const unsigned char *src, float *y, size_t n)
{
    for (size_t b = 0; b < n / QK; b++, src += 176) {
        float d = gguf_f16_to_f32(ld16(src)), dmin = gguf_f16_to_f32(ld16(src + 2));
        uint8_t sc[8], mn[8];
        k4_scales(src + 4, sc, mn);
        const unsigned char *qh = src + 16, *qs = src + 48;
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            float d1 = d * sc[2 * p], m1 = dmin * mn[2 * p];
            float d2 = d * sc[2 * p + 1], m2 = dmin * mn[2 * p + 1];
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((qs[32 * p + l] & 15) | (((qh[l] >> (2 * p)) & 1) << 4)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ =
                    d2 * (float)((qs[32 * p + l] >> 4) | (((qh[l] >> (2 * p + 1)) & 1) << 4)) - m2;
        }
    }
}

void quantk_dequantize_q6_k(const unsigned char *src, float *y, size_t n)
{
    for (size_t b = 0; b < n / QK; b++, src += 210, y += QK) {
        float d = gguf_f16_to_f32(ld16(src + 208));
        const int8_t *sc = (const int8_t *)(const void *)(src + 192);
        for (int h = 0; h < 2; h++) {
            const unsigned char *ql = src + 64 * h, *qh = src + 128 + 32 * h;
            float *o = y + 128 * h;
            const int8_t *s = sc + 8 * h;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                o[l] = d * (float)s[is] * (float)(((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32);
                o[l + 32] = d * (float)s[is + 2] *
                            (float)(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
                o[l + 64] =
                    d * (float)s[is + 4] * (float)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                o[l + 96] = d * (float)s[is + 6] *
                            (float)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
    }
}

void quantk_dequantize_q5_0(const unsigned char *src, float *y, size_t n)
{
    for (size_t b = 0; b < n / 32; b++, src += 22, y += 32) {
        float d = gguf_f16_to_f32(ld16(src));
        uint32_t qh;
        memcpy(&qh, src + 2, 4);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(((src[6 + j] & 15) | ((int)((qh >> j) & 1) << 4)) - 16);
            y[j + 16] = d * (float)(((src[6 + j] >> 4) | ((int)((qh >> (j + 16)) & 1) << 4)) - 16);
        }
    }
}

/* ---- portable fused dots: per sub-block sums, scaled ---- */

float quantk_dot_q4_k_port(const unsigned char *w, const float *x, size_t n)
{
    float s = 0.0f;
    for (size_t b = 0; b < n / QK; b++, w += 144, x += QK) {
        float d = gguf_f16_to_f32(ld16(w)), dmin = gguf_f16_to_f32(ld16(w + 2));
        uint8_t sc[8], mn[8];
        k4_scales(w + 4, sc, mn);
        for (int j = 0; j < 8; j++) {
            const unsigned char *qs = w + 16 + 32 * (j / 2);
            const float *xs = x + 32 * j;
            int sh = 4 * (j & 1);
            float qx = 0.0f, sx = 0.0f;
            for (int l = 0; l < 32; l++) {
                qx += (float)((qs[l] >> sh) & 15) * xs[l];
                sx += xs[l];
            }
            s += d * (float)sc[j] * qx - dmin * (float)mn[j] * sx;
        }
    }
    return s;
}

float quantk_dot_q5_k_port(const unsigned char *w, const float *x, size_t n)
{
    float s = 0.0f;
    for (size_t b = 0; b < n / QK; b++, w += 176, x += QK) {
        float d = gguf_f16_to_f32(ld16(w)), dmin = gguf_f16_to_f32(ld16(w + 2));
        uint8_t sc[8], mn[8];
        k4_scales(w + 4, sc, mn);
        for (int j = 0; j < 8; j++) {
            const unsigned char *qs = w + 48 + 32 * (j / 2), *qh = w + 16;
            const float *xs = x + 32 * j;
            int sh = 4 * (j & 1);
            float qx = 0.0f, sx = 0.0f;
            for (int l = 0; l < 32; l++) {
                int q = ((qs[l] >> sh) & 15) | (((qh[l] >> j) & 1) << 4);
                qx += (float)q * xs[l];
                sx += xs[l];
            }
            s += d * (float)sc[j] * qx - dmin * (float)mn[j] * sx;
        }
    }
    return s;
}

float quantk_dot_q6_k_port(const unsigned char *w, const float *x, size_t n)
{
    float s = 0.0f, tmp[QK];
    for (size_t b = 0; b < n / QK; b++, w += 210, x += QK) {
        quantk_dequantize_q6_k(w, tmp, QK);
        for (int j = 0; j < 16; j++) {
            float bs = 0.0f;
            for (int l = 0; l < 16; l++)
                bs += tmp[16 * j + l] * x[16 * j + l];
            s += bs;
        }
    }
    return s;
}

float quantk_dot_q5_0_port(const unsigned char *w, const float *x, size_t n)
{
    float s = 0.0f;
    for (size_t b = 0; b < n / 32; b++, w += 22, x += 32) {
        uint32_t qh;
        memcpy(&qh, w + 2, 4);
        float bs = 0.0f;
        for (int j = 0; j < 16; j++)
            bs += (float)(((w[6 + j] & 15) | ((int)((qh >> j) & 1) << 4)) - 16) * x[j] +
                  (float)(((w[6 + j] >> 4) | ((int)((qh >> (j + 16)) & 1) << 4)) - 16) * x[j + 16];
        s += gguf_f16_to_f32(ld16(w)) * bs;
    }
    return s;
}

/* ---- AVX-512: 16 values a vector, scales broadcast per sub-block ---- */

#define T512 __attribute__((target("avx512f,f16c,fma")))
#define T256 __attribute__((target("avx2,f16c,fma")))

T512 static inline __attribute__((always_inline)) __m512i u8x16_512(const unsigned char *p)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)p));
}

T512 static inline __attribute__((always_inline)) void
k45_unpack_avx512(const unsigned char *qs, const unsigned char *qh, int p, int hb, __m512i q[4])
{
    const __m512i m15 = _mm512_set1_epi32(15), one = _mm512_set1_epi32(1);
    __m512i q0 = u8x16_512(qs + 32 * p), q1 = u8x16_512(qs + 32 * p + 16);
    q[0] = _mm512_and_si512(q0, m15), q[1] = _mm512_and_si512(q1, m15);
    q[2] = _mm512_srli_epi32(q0, 4), q[3] = _mm512_srli_epi32(q1, 4);
    if (hb) {
        __m512i h0 = u8x16_512(qh), h1 = u8x16_512(qh + 16);
        __m128i s0 = _mm_cvtsi32_si128(2 * p), s1 = _mm_cvtsi32_si128(2 * p + 1);
        q[0] = _mm512_or_si512(
            q[0], _mm512_slli_epi32(_mm512_and_si512(_mm512_srl_epi32(h0, s0), one), 4));
        q[1] = _mm512_or_si512(
            q[1], _mm512_slli_epi32(_mm512_and_si512(_mm512_srl_epi32(h1, s0), one), 4));
        q[2] = _mm512_or_si512(
            q[2], _mm512_slli_epi32(_mm512_and_si512(_mm512_srl_epi32(h0, s1), one), 4));
        q[3] = _mm512_or_si512(
            q[3], _mm512_slli_epi32(_mm512_and_si512(_mm512_srl_epi32(h1, s1), one), 4));
    }
}

/* Q4_K and Q5_K share the loop; hb: 1 for Q5_K (qh at w + 16, qs at w + 48). Each sub-block's
 * 16 (Q5_K: 32) possible values d*sc*q - dmin*m are computed once into a table of lanes and the
 * codes index it (vpermps), which replaces a convert and a multiply per 16 values; four
 * independent accumulators keep the loop off the FMA latency chain. */
T512 static inline __attribute__((always_inline)) float
dot_k45_avx512(const unsigned char *w, const float *x, size_t n, int hb)
{
    const size_t bb = hb ? 176 : 144;
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 sixteen = _mm512_set1_ps(16.0f);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t b = 0; b < n / QK; b++, w += bb, x += QK) {
        float d = _cvtsh_ss(ld16(w)), dmin = _cvtsh_ss(ld16(w + 2));
        uint8_t sc[8], mn[8];
        k4_scales(w + 4, sc, mn);
        const unsigned char *qs = w + (hb ? 48 : 16), *qh = w + 16;
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            const float *xp = x + 64 * p;
            __m512i q[4];
            k45_unpack_avx512(qs, qh, p, hb, q);
            __m512 tl[2], th[2];
            for (int k = 0; k < 2; k++) {
                __m512 dd = _mm512_set1_ps(d * (float)sc[2 * p + k]);
                __m512 mm = _mm512_set1_ps(dmin * (float)mn[2 * p + k]);
                tl[k] = _mm512_sub_ps(_mm512_mul_ps(dd, iota), mm);
                th[k] =
                    hb ? _mm512_sub_ps(_mm512_mul_ps(dd, _mm512_add_ps(iota, sixteen)), mm) : tl[k];
            }
            __m512 v[4];
            for (int k = 0; k < 4; k++)
                v[k] = hb ? _mm512_permutex2var_ps(tl[k / 2], q[k], th[k / 2])
                          : _mm512_permutexvar_ps(q[k], tl[k / 2]);
            a0 = _mm512_fmadd_ps(v[0], _mm512_loadu_ps(xp), a0);
            a1 = _mm512_fmadd_ps(v[1], _mm512_loadu_ps(xp + 16), a1);
            a2 = _mm512_fmadd_ps(v[2], _mm512_loadu_ps(xp + 32), a2);
            a3 = _mm512_fmadd_ps(v[3], _mm512_loadu_ps(xp + 48), a3);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

T512 float quantk_dot_q4_k_avx512(const unsigned char *w, const float *x, size_t n)
{
    return dot_k45_avx512(w, x, n, 0);
}

T512 float quantk_dot_q5_k_avx512(const unsigned char *w, const float *x, size_t n)
{
    return dot_k45_avx512(w, x, n, 1);
}

T512 static inline __attribute__((always_inline)) void
q6_unpack_avx512(const unsigned char *ql, const unsigned char *qh, int c, __m512i q[4])
{
    const __m512i m15 = _mm512_set1_epi32(15), m3 = _mm512_set1_epi32(3);
    const __m512i m32 = _mm512_set1_epi32(32);
    __m512i a = u8x16_512(ql + 16 * c), bq = u8x16_512(ql + 32 + 16 * c);
    __m512i hv = u8x16_512(qh + 16 * c);
    q[0] =
        _mm512_or_si512(_mm512_and_si512(a, m15), _mm512_slli_epi32(_mm512_and_si512(hv, m3), 4));
    q[1] = _mm512_or_si512(_mm512_and_si512(bq, m15),
                           _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hv, 2), m3), 4));
    q[2] = _mm512_or_si512(_mm512_srli_epi32(a, 4),
                           _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hv, 4), m3), 4));
    q[3] =
        _mm512_or_si512(_mm512_srli_epi32(bq, 4), _mm512_slli_epi32(_mm512_srli_epi32(hv, 6), 4));
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        q[k] = _mm512_sub_epi32(q[k], m32);
}

/* Four accumulators, one per quarter (values l, l + 32, l + 64, l + 96 of a half). */
T512 float quantk_dot_q6_k_avx512(const unsigned char *w, const float *x, size_t n)
{
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (size_t b = 0; b < n / QK; b++, w += 210, x += QK) {
        float d = _cvtsh_ss(ld16(w + 208));
        const int8_t *sc = (const int8_t *)(const void *)(w + 192);
        for (int h = 0; h < 2; h++) {
            const unsigned char *ql = w + 64 * h, *qh = w + 128 + 32 * h;
            const float *xh = x + 128 * h;
            const int8_t *s = sc + 8 * h;
#pragma GCC unroll 4
            for (int c = 0; c < 2; c++) {
                __m512i q[4];
                q6_unpack_avx512(ql, qh, c, q);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++)
                    acc[k] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(d * (float)s[c + 2 * k]),
                                                           _mm512_cvtepi32_ps(q[k])),
                                             _mm512_loadu_ps(xh + 16 * c + 32 * k), acc[k]);
            }
        }
    }
    return _mm512_reduce_add_ps(
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
}

T512 float quantk_dot_q5_0_avx512(const unsigned char *w, const float *x, size_t n)
{
    const __m512i m15 = _mm512_set1_epi32(15), one = _mm512_set1_epi32(1);
    const __m512i m16 = _mm512_set1_epi32(16);
    const __m512i sh = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 acc = _mm512_setzero_ps();
    for (size_t b = 0; b < n / 32; b++, w += 22, x += 32) {
        uint32_t qh;
        memcpy(&qh, w + 2, 4);
        __m512i q = u8x16_512(w + 6);
        __m512i hl =
            _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)(qh & 0xffff)), sh), one);
        __m512i hh =
            _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)(qh >> 16)), sh), one);
        __m512i lo = _mm512_sub_epi32(
            _mm512_or_si512(_mm512_and_si512(q, m15), _mm512_slli_epi32(hl, 4)), m16);
        __m512i hi = _mm512_sub_epi32(
            _mm512_or_si512(_mm512_srli_epi32(q, 4), _mm512_slli_epi32(hh, 4)), m16);
        __m512 s = _mm512_mul_ps(_mm512_cvtepi32_ps(lo), _mm512_loadu_ps(x));
        s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), _mm512_loadu_ps(x + 16), s);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(ld16(w))), s, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* AVX-512 dequantisation for the batch path's tiles: the same arithmetic as the scalar
 * functions above (separate multiply and subtract, no FMA), so the results are identical. */
/* Q4_K (block_bytes 144, quants at 16, no high bits) and Q5_K (176, quants at 48, high bits at
 * 16) share the scale layout and the arithmetic. */
T512 static inline __attribute__((always_inline)) void
k45_dequantize_avx512(const unsigned char *src, float *y, size_t n, size_t block_bytes,
                      size_t qs_off, int hb)
{
    for (size_t b = 0; b < n / QK; b++, src += block_bytes, y += QK) {
        float d = _cvtsh_ss(ld16(src)), dmin = _cvtsh_ss(ld16(src + 2));
        uint8_t sc[8], mn[8];
        k4_scales(src + 4, sc, mn);
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            __m512i q[4];
            k45_unpack_avx512(src + qs_off, hb ? src + 16 : src, p, hb, q);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                int j = 2 * p + k / 2;
                __m512 v = _mm512_sub_ps(
                    _mm512_mul_ps(_mm512_set1_ps(d * (float)sc[j]), _mm512_cvtepi32_ps(q[k])),
                    _mm512_set1_ps(dmin * (float)mn[j]));
                _mm512_storeu_ps(y + 64 * p + 16 * k, v);
            }
        }
    }
}

T512 void quantk_dequantize_q4_k_avx512(const unsigned char *src, float *y, size_t n)
{
    k45_dequantize_avx512(src, y, n, 144, 16, 0);
}

T512 void quantk_dequantize_q5_k_avx512(const unsigned char *src, float *y, size_t n)
{
    k45_dequantize_avx512(src, y, n, 176, 48, 1);
}

T512 void quantk_dequantize_q6_k_avx512(const unsigned char *src, float *y, size_t n)
{
    for (size_t b = 0; b < n / QK; b++, src += 210, y += QK) {
        float d = _cvtsh_ss(ld16(src + 208));
        const int8_t *sc = (const int8_t *)(const void *)(src + 192);
        for (int h = 0; h < 2; h++) {
#pragma GCC unroll 4
            for (int c = 0; c < 2; c++) {
                __m512i q[4];
                q6_unpack_avx512(src + 64 * h, src + 128 + 32 * h, c, q);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++)
                    _mm512_storeu_ps(y + 128 * h + 16 * c + 32 * k,
                                     _mm512_mul_ps(_mm512_set1_ps(d * (float)sc[8 * h + c + 2 * k]),
                                                   _mm512_cvtepi32_ps(q[k])));
            }
        }
    }
}

T512 void quantk_dequantize_q5_0_avx512(const unsigned char *src, float *y, size_t n)
{
    const __m512i m15 = _mm512_set1_epi32(15), one = _mm512_set1_epi32(1);
    const __m512i m16 = _mm512_set1_epi32(16);
    const __m512i sh = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (size_t b = 0; b < n / 32; b++, src += 22, y += 32) {
        uint32_t qh;
        memcpy(&qh, src + 2, 4);
        __m512i q = u8x16_512(src + 6);
        __m512i hl =
            _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)(qh & 0xffff)), sh), one);
        __m512i hh =
            _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)(qh >> 16)), sh), one);
        __m512i lo = _mm512_sub_epi32(
            _mm512_or_si512(_mm512_and_si512(q, m15), _mm512_slli_epi32(hl, 4)), m16);
        __m512i hi = _mm512_sub_epi32(
            _mm512_or_si512(_mm512_srli_epi32(q, 4), _mm512_slli_epi32(hh, 4)), m16);
        __m512 d = _mm512_set1_ps(_cvtsh_ss(ld16(src)));
        _mm512_storeu_ps(y, _mm512_mul_ps(d, _mm512_cvtepi32_ps(lo)));
        _mm512_storeu_ps(y + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(hi)));
    }
}

/* ---- AVX2: 8 values a vector ---- */

T256 static inline __attribute__((always_inline)) __m256i u8x8_256(const unsigned char *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const void *)p));
}

T256 static float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Q4_K/Q5_K: the 8 low-nibble (scale 2p) and 8 high-nibble (scale 2p + 1) codes of values
 * 64p + 8k.. and 64p + 32 + 8k.. as int32 lanes, the fifth bit from qh when hb (Q5_K). */
T256 static inline __attribute__((always_inline)) void k45_unpack_avx2(const unsigned char *qs,
                                                                       const unsigned char *qh,
                                                                       int p, int k, int hb,
                                                                       __m256i *lo, __m256i *hi)
{
    const __m256i m15 = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
    __m256i q = u8x8_256(qs + 32 * p + 8 * k);
    *lo = _mm256_and_si256(q, m15);
    *hi = _mm256_srli_epi32(q, 4);
    if (hb) {
        __m256i hv = u8x8_256(qh + 8 * k);
        __m128i s0 = _mm_cvtsi32_si128(2 * p), s1 = _mm_cvtsi32_si128(2 * p + 1);
        *lo = _mm256_or_si256(
            *lo, _mm256_slli_epi32(_mm256_and_si256(_mm256_srl_epi32(hv, s0), one), 4));
        *hi = _mm256_or_si256(
            *hi, _mm256_slli_epi32(_mm256_and_si256(_mm256_srl_epi32(hv, s1), one), 4));
    }
}

/* Q6_K: the codes (0..63) of values 8k.. of each quarter of one 128-value half: q[0] at 0,
 * q[1] at 32, q[2] at 64, q[3] at 96. */
T256 static inline __attribute__((always_inline)) void
q6_unpack_avx2(const unsigned char *ql, const unsigned char *qh, int k, __m256i q[4])
{
    const __m256i m15 = _mm256_set1_epi32(15), m3 = _mm256_set1_epi32(3);
    __m256i a = u8x8_256(ql + 8 * k), bq = u8x8_256(ql + 32 + 8 * k), hv = u8x8_256(qh + 8 * k);
    q[0] =
        _mm256_or_si256(_mm256_and_si256(a, m15), _mm256_slli_epi32(_mm256_and_si256(hv, m3), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(bq, m15),
                           _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hv, 2), m3), 4));
    q[2] = _mm256_or_si256(_mm256_srli_epi32(a, 4),
                           _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hv, 4), m3), 4));
    q[3] =
        _mm256_or_si256(_mm256_srli_epi32(bq, 4), _mm256_slli_epi32(_mm256_srli_epi32(hv, 6), 4));
}

/* Q5_0: the signed codes (-16..15) of values 8k.. (lo) and 16 + 8k.. (hi) of one block. */
T256 static inline __attribute__((always_inline)) void
q5_0_unpack_avx2(const unsigned char *blk, uint32_t qh, int k, __m256i *lo, __m256i *hi)
{
    const __m256i m15 = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
    const __m256i m16 = _mm256_set1_epi32(16);
    const __m256i sh = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i q = u8x8_256(blk + 6 + 8 * k);
    __m256i hl = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32((int)((qh >> (8 * k)) & 0xff)), sh), one);
    __m256i hh = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32((int)((qh >> (16 + 8 * k)) & 0xff)), sh), one);
    *lo =
        _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(q, m15), _mm256_slli_epi32(hl, 4)), m16);
    *hi = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(q, 4), _mm256_slli_epi32(hh, 4)), m16);
}

T256 static inline __attribute__((always_inline)) float
dot_k45_avx2(const unsigned char *w, const float *x, size_t n, int hb)
{
    const size_t bb = hb ? 176 : 144;
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < n / QK; b++, w += bb, x += QK) {
        float d = _cvtsh_ss(ld16(w)), dmin = _cvtsh_ss(ld16(w + 2));
        uint8_t sc[8], mn[8];
        k4_scales(w + 4, sc, mn);
        const unsigned char *qs = w + (hb ? 48 : 16), *qh = w + 16;
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            const float *xp = x + 64 * p;
            __m256 vlo = _mm256_setzero_ps(), vhi = _mm256_setzero_ps();
            __m256 slo = _mm256_setzero_ps(), shi = _mm256_setzero_ps();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i lo, hi;
                k45_unpack_avx2(qs, qh, p, k, hb, &lo, &hi);
                __m256 xa = _mm256_loadu_ps(xp + 8 * k), xb = _mm256_loadu_ps(xp + 32 + 8 * k);
                vlo = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), xa, vlo);
                vhi = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), xb, vhi);
                slo = _mm256_add_ps(slo, xa);
                shi = _mm256_add_ps(shi, xb);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[2 * p]), vlo, acc);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)sc[2 * p + 1]), vhi, acc);
            acc = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * (float)mn[2 * p]), slo, acc);
            acc = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * (float)mn[2 * p + 1]), shi, acc);
        }
    }
    return hsum256(acc);
}

T256 float quantk_dot_q4_k_avx2(const unsigned char *w, const float *x, size_t n)
{
    return dot_k45_avx2(w, x, n, 0);
}

T256 float quantk_dot_q5_k_avx2(const unsigned char *w, const float *x, size_t n)
{
    return dot_k45_avx2(w, x, n, 1);
}

T256 float quantk_dot_q6_k_avx2(const unsigned char *w, const float *x, size_t n)
{
    const __m256i m32 = _mm256_set1_epi32(32);
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < n / QK; b++, w += 210, x += QK) {
        float d = _cvtsh_ss(ld16(w + 208));
        const int8_t *sc = (const int8_t *)(const void *)(w + 192);
        for (int h = 0; h < 2; h++) {
            const unsigned char *ql = w + 64 * h, *qh = w + 128 + 32 * h;
            const float *xh = x + 128 * h;
            const int8_t *s = sc + 8 * h;
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) { /* 8 values of each quarter, scale index k / 2 */
                __m256i q[4];
                q6_unpack_avx2(ql, qh, k, q);
                const float *xc = xh + 8 * k;
                int c = k / 2;
                __m256 t1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q[0], m32)),
                                          _mm256_loadu_ps(xc));
                __m256 t2 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q[1], m32)),
                                          _mm256_loadu_ps(xc + 32));
                __m256 t3 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q[2], m32)),
                                          _mm256_loadu_ps(xc + 64));
                __m256 t4 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q[3], m32)),
                                          _mm256_loadu_ps(xc + 96));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)s[c]), t1, acc);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)s[c + 2]), t2, acc);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)s[c + 4]), t3, acc);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * (float)s[c + 6]), t4, acc);
            }
        }
    }
    return hsum256(acc);
}

T256 float quantk_dot_q5_0_avx2(const unsigned char *w, const float *x, size_t n)
{
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < n / 32; b++, w += 22, x += 32) {
        uint32_t qh;
        memcpy(&qh, w + 2, 4);
        __m256 s = _mm256_setzero_ps();
        for (int k = 0; k < 2; k++) {
            __m256i lo, hi;
            q5_0_unpack_avx2(w, qh, k, &lo, &hi);
            s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_loadu_ps(x + 8 * k), s);
            s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_loadu_ps(x + 16 + 8 * k), s);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(ld16(w))), s, acc);
    }
    return hsum256(acc);
}

/* AVX2 dequantisation for the batch path's tiles, as the AVX-512 one: the scalar arithmetic
 * (multiply, then subtract; no FMA), so the values are identical. */
T256 static inline __attribute__((always_inline)) void k45_dequantize_avx2(const unsigned char *src,
                                                                           float *y, size_t n,
                                                                           size_t block_bytes,
                                                                           size_t qs_off, int hb)
{
    for (size_t b = 0; b < n / QK; b++, src += block_bytes, y += QK) {
        float d = _cvtsh_ss(ld16(src)), dmin = _cvtsh_ss(ld16(src + 2));
        uint8_t sc[8], mn[8];
        k4_scales(src + 4, sc, mn);
        const unsigned char *qs = src + qs_off, *qh = src + 16;
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            __m256 d1 = _mm256_set1_ps(d * (float)sc[2 * p]);
            __m256 m1 = _mm256_set1_ps(dmin * (float)mn[2 * p]);
            __m256 d2 = _mm256_set1_ps(d * (float)sc[2 * p + 1]);
            __m256 m2 = _mm256_set1_ps(dmin * (float)mn[2 * p + 1]);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i lo, hi;
                k45_unpack_avx2(qs, qh, p, k, hb, &lo, &hi);
                _mm256_storeu_ps(y + 64 * p + 8 * k,
                                 _mm256_sub_ps(_mm256_mul_ps(d1, _mm256_cvtepi32_ps(lo)), m1));
                _mm256_storeu_ps(y + 64 * p + 32 + 8 * k,
                                 _mm256_sub_ps(_mm256_mul_ps(d2, _mm256_cvtepi32_ps(hi)), m2));
            }
        }
    }
}

T256 void quantk_dequantize_q4_k_avx2(const unsigned char *src, float *y, size_t n)
{
    k45_dequantize_avx2(src, y, n, 144, 16, 0);
}

T256 void quantk_dequantize_q5_k_avx2(const unsigned char *src, float *y, size_t n)
{
    k45_dequantize_avx2(src, y, n, 176, 48, 1);
}

T256 void quantk_dequantize_q6_k_avx2(const unsigned char *src, float *y, size_t n)
{
    const __m256i m32 = _mm256_set1_epi32(32);
    for (size_t b = 0; b < n / QK; b++, src += 210, y += QK) {
        float d = _cvtsh_ss(ld16(src + 208));
        const int8_t *sc = (const int8_t *)(const void *)(src + 192);
        for (int h = 0; h < 2; h++) {
            const unsigned char *ql = src + 64 * h, *qh = src + 128 + 32 * h;
            const int8_t *s = sc + 8 * h;
            float *o = y + 128 * h;
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) { /* values 8k..8k+7 of each quarter, scale k / 2 */
                __m256i q[4];
                q6_unpack_avx2(ql, qh, k, q);
                int c = k / 2;
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++)
                    _mm256_storeu_ps(
                        o + 32 * r + 8 * k,
                        _mm256_mul_ps(_mm256_set1_ps(d * (float)s[c + 2 * r]),
                                      _mm256_cvtepi32_ps(_mm256_sub_epi32(q[r], m32))));
            }
        }
    }
}

T256 void quantk_dequantize_q5_0_avx2(const unsigned char *src, float *y, size_t n)
{
    for (size_t b = 0; b < n / 32; b++, src += 22, y += 32) {
        uint32_t qh;
        memcpy(&qh, src + 2, 4);
        __m256 d = _mm256_set1_ps(_cvtsh_ss(ld16(src)));
        for (int k = 0; k < 2; k++) {
            __m256i lo, hi;
            q5_0_unpack_avx2(src, qh, k, &lo, &hi);
            _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(lo)));
            _mm256_storeu_ps(y + 16 + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(hi)));
        }
    }
}
