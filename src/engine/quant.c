/* quant: ggml block layouts (Q8_0, Q4_0 here; Q5_0 and the k-quants Q4_K, Q5_K, Q6_K in
 * quant_k.c) and the 2-byte float types (F16, BF16): row quantisation, dequantisation, an f64
 * reference dot, and the fused dequantise-and-dot kernels (AVX-512, AVX2 or portable, picked once
 * from the CPU's features).
 * Block data is read with memcpy/unaligned loads: GGUF only aligns tensors, not blocks. It keeps
 * no state besides the chosen kernel and allocates nothing. */
#include "engine/quant.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/quant_k.h"

int quant_type_supported(uint32_t type)
{
    return type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16 ||
           type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q5_0 ||
           type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K || type == GGML_TYPE_Q6_K;
}

const char *quant_supported_list(void)
{
    return "F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q6_K, Q5_K, Q4_K";
}

size_t quant_row_bytes(uint32_t type, size_t n)
{
    switch (type) {
    case GGML_TYPE_F32:
        return n * 4;
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
        return n * 2;
    case GGML_TYPE_Q8_0:
        return n % QUANT_QK8_0 ? 0 : n / QUANT_QK8_0 * sizeof(struct quant_block_q8_0);
    case GGML_TYPE_Q4_0:
        return n % QUANT_QK4_0 ? 0 : n / QUANT_QK4_0 * sizeof(struct quant_block_q4_0);
    case GGML_TYPE_Q5_0:
        return n % QUANT_QK5_0 ? 0 : n / QUANT_QK5_0 * sizeof(struct quant_block_q5_0);
    case GGML_TYPE_Q4_K:
        return n % QUANT_QK_K ? 0 : n / QUANT_QK_K * sizeof(struct quant_block_q4_k);
    case GGML_TYPE_Q5_K:
        return n % QUANT_QK_K ? 0 : n / QUANT_QK_K * sizeof(struct quant_block_q5_k);
    case GGML_TYPE_Q6_K:
        return n % QUANT_QK_K ? 0 : n / QUANT_QK_K * sizeof(struct quant_block_q6_k);
    default:
        return 0;
    }
}

uint16_t quant_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 64); /* quiet NaN */
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

float quant_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t ld16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

int quant_validate_blocks(uint32_t type, const void *data, uint64_t n_blocks, uint64_t *bad_block)
{
    size_t off0, off1;
    uint32_t be, bb;
    if (!ggml_type_block(type, &be, &bb))
        return 0;
    switch (type) {
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q5_0:
        off0 = off1 = 0;
        break;
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K:
        off0 = 0, off1 = 2;
        break;
    case GGML_TYPE_Q6_K:
        off0 = off1 = 208;
        break;
    default:
        return 0;
    }
    const unsigned char *p = data;
    for (uint64_t b = 0; b < n_blocks; b++, p += bb) {
        /* fp16 exponent all ones: inf or NaN */
        if ((ld16(p + off0) & 0x7c00) == 0x7c00 || (ld16(p + off1) & 0x7c00) == 0x7c00) {
            *bad_block = b;
            return -1;
        }
    }
    return 0;
}

/* ggml's quantize_row_q8_0_ref: d = max|x| / 127, q = round(x / d). */
static void quantize_q8_0(const float *x, unsigned char *dst, size_t n)
{
    for (size_t b = 0; b < n / QUANT_QK8_0; b++) {
        struct quant_block_q8_0 blk;
        const float *xb = x + b * QUANT_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < QUANT_QK8_0; j++)
            amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        blk.d = gguf_f32_to_f16(d);
        for (int j = 0; j < QUANT_QK8_0; j++)
            blk.qs[j] = (int8_t)roundf(xb[j] * id);
        memcpy(dst + b * sizeof blk, &blk, sizeof blk);
    }
}

/* ggml's quantize_row_q4_0_ref: d = (the value of largest magnitude) / -8, q = x / d + 8. */
static void quantize_q4_0(const float *x, unsigned char *dst, size_t n)
{
    for (size_t b = 0; b < n / QUANT_QK4_0; b++) {
        struct quant_block_q4_0 blk;
        const float *xb = x + b * QUANT_QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QUANT_QK4_0; j++) {
            if (amax < fabsf(xb[j])) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        blk.d = gguf_f32_to_f16(d);
        for (int j = 0; j < QUANT_QK4_0 / 2; j++) {
            int q0 = (int8_t)(xb[j] * id + 8.5f);
            int q1 = (int8_t)(xb[j + QUANT_QK4_0 / 2] * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            blk.qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
        memcpy(dst + b * sizeof blk, &blk, sizeof blk);
    }
}

int quant_quantize_row(uint32_t type, const float *src, void *dst, size_t n)
{
    unsigned char *o = dst;
    if (!quant_row_bytes(type, n) && n)
        return -1;
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(o, src, n * 4);
        return 0;
    case GGML_TYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = gguf_f32_to_f16(src[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        return 0;
    case GGML_TYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = quant_f32_to_bf16(src[i]);
            memcpy(o + 2 * i, &h, 2);
        }
        return 0;
    case GGML_TYPE_Q8_0:
        quantize_q8_0(src, o, n);
        return 0;
    case GGML_TYPE_Q4_0:
        quantize_q4_0(src, o, n);
        return 0;
    case GGML_TYPE_Q5_0:
        quantk_quantize_q5_0(src, o, n);
        return 0;
    case GGML_TYPE_Q4_K:
        quantk_quantize_q4_k(src, o, n);
        return 0;
    case GGML_TYPE_Q5_K:
        quantk_quantize_q5_k(src, o, n);
        return 0;
    case GGML_TYPE_Q6_K:
        quantk_quantize_q6_k(src, o, n);
        return 0;
    default:
        return -1;
    }
}

typedef float (*dot_fn)(const unsigned char *, const float *, size_t);
typedef void (*deq_fn)(const unsigned char *, float *, size_t);
static void kernels_for(uint32_t type, dot_fn *dot, deq_fn *deq);

int quant_dequantize_row(uint32_t type, const void *src, float *dst, size_t n)
{
    const unsigned char *p = src;
    if (!quant_row_bytes(type, n) && n)
        return -1;
    dot_fn unused;
    deq_fn f; /* the batch path's tiles: identical values, 8 or 16 at a time, where the CPU's
                 kernel set has a dequantiser */
    kernels_for(type, &unused, &f);
    if (f) {
        f(p, dst, n);
        return 0;
    }
    switch (type) {
    case GGML_TYPE_F32:
        memcpy(dst, p, n * 4);
        return 0;
    case GGML_TYPE_F16:
        if ((uintptr_t)p % 2 == 0) { /* F16C where the CPU has it */
            gguf_f16_to_f32_row((const uint16_t *)(const void *)p, dst, n);
            return 0;
        }
        for (size_t i = 0; i < n; i++)
            dst[i] = gguf_f16_to_f32(ld16(p + 2 * i));
        return 0;
    case GGML_TYPE_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = quant_bf16_to_f32(ld16(p + 2 * i));
        return 0;
    case GGML_TYPE_Q8_0:
        for (size_t b = 0; b < n / QUANT_QK8_0; b++) {
            const unsigned char *blk = p + b * sizeof(struct quant_block_q8_0);
            float d = gguf_f16_to_f32(ld16(blk));
            for (int j = 0; j < QUANT_QK8_0; j++)
                dst[b * QUANT_QK8_0 + (size_t)j] = d * (float)(int8_t)blk[2 + j];
        }
        return 0;
    case GGML_TYPE_Q4_0:
        for (size_t b = 0; b < n / QUANT_QK4_0; b++) {
            const unsigned char *blk = p + b * sizeof(struct quant_block_q4_0);
            float d = gguf_f16_to_f32(ld16(blk));
            float *o = dst + b * QUANT_QK4_0;
            for (int j = 0; j < QUANT_QK4_0 / 2; j++) {
                o[j] = d * (float)((blk[2 + j] & 15) - 8);
                o[j + QUANT_QK4_0 / 2] = d * (float)((blk[2 + j] >> 4) - 8);
            }
        }
        return 0;
    case GGML_TYPE_Q5_0:
        quantk_dequantize_q5_0(p, dst, n);
        return 0;
    case GGML_TYPE_Q4_K:
        quantk_dequantize_q4_k(p, dst, n);
        return 0;
    case GGML_TYPE_Q5_K:
        quantk_dequantize_q5_k(p, dst, n);
        return 0;
    case GGML_TYPE_Q6_K:
        quantk_dequantize_q6_k(p, dst, n);
        return 0;
    default:
        return -1;
    }
}

double quant_dot_ref(uint32_t type, const void *w, const float *x, size_t n)
{
    double s = 0.0;
    float tmp[QUANT_QK_K];
    uint32_t be = 1, bb;
    ggml_type_block(type, &be, &bb);
    size_t step = be;
    size_t bytes = quant_row_bytes(type, step);
    for (size_t i = 0; i + step <= n; i += step) {
        quant_dequantize_row(type, (const unsigned char *)w + i / step * bytes, tmp, step);
        for (size_t j = 0; j < step; j++)
            s += (double)tmp[j] * (double)x[i + j];
    }
    return s;
}

/* ---- fused kernels: one row . x, f32 accumulation, block sums scaled by d ---- */

static float dot_f32_port(const unsigned char *w, const float *x, size_t n)
{
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float v;
        memcpy(&v, w + 4 * i, 4);
        s += v * x[i];
    }
    return s;
}

static float dot_f16_port(const unsigned char *w, const float *x, size_t n)
{
    float s = 0.0f;
    for (size_t i = 0; i < n; i++)
        s += gguf_f16_to_f32(ld16(w + 2 * i)) * x[i];
    return s;
}

static float dot_bf16_port(const unsigned char *w, const float *x, size_t n)
{
    float s = 0.0f;
    for (size_t i = 0; i < n; i++)
        s += quant_bf16_to_f32(ld16(w + 2 * i)) * x[i];
    return s;
}

static float dot_q8_0_port(const unsigned char *w, const float *x, size_t n)
{
    float s = 0.0f;
    for (size_t b = 0; b < n / QUANT_QK8_0; b++, w += 34, x += QUANT_QK8_0) {
        float bs = 0.0f;
        for (int j = 0; j < QUANT_QK8_0; j++)
            bs += (float)(int8_t)w[2 + j] * x[j];
        s += gguf_f16_to_f32(ld16(w)) * bs;
    }
    return s;
}

static float dot_q4_0_port(const unsigned char *w, const float *x, size_t n)
{
    float s = 0.0f;
    for (size_t b = 0; b < n / QUANT_QK4_0; b++, w += 18, x += QUANT_QK4_0) {
        float bs = 0.0f;
        for (int j = 0; j < QUANT_QK4_0 / 2; j++)
            bs += (float)((w[2 + j] & 15) - 8) * x[j] +
                  (float)((w[2 + j] >> 4) - 8) * x[j + QUANT_QK4_0 / 2];
        s += gguf_f16_to_f32(ld16(w)) * bs;
    }
    return s;
}

#define T512 __attribute__((target("avx512f,f16c,fma")))
#define T256 __attribute__((target("avx2,f16c,fma")))

T512 static float dot_q8_0_avx512(const unsigned char *w, const float *x, size_t n)
{
    __m512 acc = _mm512_setzero_ps();
    for (size_t b = 0; b < n / QUANT_QK8_0; b++, w += 34, x += QUANT_QK8_0) {
        __m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(w + 2)));
        __m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(w + 18)));
        __m512 w0 = _mm512_cvtepi32_ps(q0), w1 = _mm512_cvtepi32_ps(q1);
        __m512 s = _mm512_mul_ps(w0, _mm512_loadu_ps(x));
        s = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16), s);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(ld16(w))), s, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

T512 static float dot_q4_0_avx512(const unsigned char *w, const float *x, size_t n)
{
    __m512 acc = _mm512_setzero_ps();
    const __m512i m15 = _mm512_set1_epi32(15), m8 = _mm512_set1_epi32(8);
    for (size_t b = 0; b < n / QUANT_QK4_0; b++, w += 18, x += QUANT_QK4_0) {
        __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)(w + 2)));
        __m512 lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(q, m15), m8));
        __m512 hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(q, 4), m8));
        __m512 s = _mm512_mul_ps(lo, _mm512_loadu_ps(x));
        s = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + 16), s);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(_cvtsh_ss(ld16(w))), s, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

T512 static void dequant_q8_0_avx512(const unsigned char *p, float *dst, size_t n)
{
    for (size_t b = 0; b < n / QUANT_QK8_0; b++, p += 34, dst += QUANT_QK8_0) {
        __m512 d = _mm512_set1_ps(_cvtsh_ss(ld16(p)));
        for (int k = 0; k < 2; k++) {
            __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(p + 2 + 16 * k)));
            _mm512_storeu_ps(dst + 16 * k, _mm512_mul_ps(d, _mm512_cvtepi32_ps(q)));
        }
    }
}

T512 static void dequant_q4_0_avx512(const unsigned char *p, float *dst, size_t n)
{
    const __m512i m15 = _mm512_set1_epi32(15), m8 = _mm512_set1_epi32(8);
    for (size_t b = 0; b < n / QUANT_QK4_0; b++, p += 18, dst += QUANT_QK4_0) {
        __m512 d = _mm512_set1_ps(_cvtsh_ss(ld16(p)));
        __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const void *)(p + 2)));
        __m512i lo = _mm512_sub_epi32(_mm512_and_si512(q, m15), m8);
        __m512i hi = _mm512_sub_epi32(_mm512_srli_epi32(q, 4), m8);
        _mm512_storeu_ps(dst, _mm512_mul_ps(d, _mm512_cvtepi32_ps(lo)));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(hi)));
    }
}

T512 static float dot_f16_avx512(const unsigned char *w, const float *x, size_t n)
{
    __m512 acc = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const void *)(w + 2 * i))),
                              _mm512_loadu_ps(x + i), acc);
    float s = _mm512_reduce_add_ps(acc);
    for (; i < n; i++)
        s += _cvtsh_ss(ld16(w + 2 * i)) * x[i];
    return s;
}

/* bf16 -> f32 is the 16 bits moved to the top of the word (exact: NaN payloads, infinities and
 * denormals come through bit for bit, as quant_bf16_to_f32 does), 16 values per step. */
T512 static __m512 bf16x16_avx512(const unsigned char *p)
{
    __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}

T512 static float dot_bf16_avx512(const unsigned char *w, const float *x, size_t n)
{
    __m512 acc = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        acc = _mm512_fmadd_ps(bf16x16_avx512(w + 2 * i), _mm512_loadu_ps(x + i), acc);
    float s = _mm512_reduce_add_ps(acc);
    for (; i < n; i++)
        s += quant_bf16_to_f32(ld16(w + 2 * i)) * x[i];
    return s;
}

T512 static void dequant_bf16_avx512(const unsigned char *p, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, bf16x16_avx512(p + 2 * i));
    for (; i < n; i++)
        dst[i] = quant_bf16_to_f32(ld16(p + 2 * i));
}

T256 static float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

T256 static float dot_q8_0_avx2(const unsigned char *w, const float *x, size_t n)
{
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < n / QUANT_QK8_0; b++, w += 34, x += QUANT_QK8_0) {
        __m256 s = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            __m128i q = _mm_loadl_epi64((const void *)(w + 2 + 8 * k));
            s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)),
                                _mm256_loadu_ps(x + 8 * k), s);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(ld16(w))), s, acc);
    }
    return hsum256(acc);
}

T256 static float dot_q4_0_avx2(const unsigned char *w, const float *x, size_t n)
{
    __m256 acc = _mm256_setzero_ps();
    const __m256i m15 = _mm256_set1_epi32(15), m8 = _mm256_set1_epi32(8);
    for (size_t b = 0; b < n / QUANT_QK4_0; b++, w += 18, x += QUANT_QK4_0) {
        __m256 s = _mm256_setzero_ps();
        for (int k = 0; k < 2; k++) {
            __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const void *)(w + 2 + 8 * k)));
            __m256 lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(q, m15), m8));
            __m256 hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(q, 4), m8));
            s = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x + 8 * k), s);
            s = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + 16 + 8 * k), s);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(ld16(w))), s, acc);
    }
    return hsum256(acc);
}

T256 static float dot_f16_avx2(const unsigned char *w, const float *x, size_t n)
{
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const void *)(w + 2 * i))),
                              _mm256_loadu_ps(x + i), acc);
    float s = hsum256(acc);
    for (; i < n; i++)
        s += _cvtsh_ss(ld16(w + 2 * i)) * x[i];
    return s;
}

T256 static float dot_bf16_avx2(const unsigned char *w, const float *x, size_t n)
{
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const void *)(w + 2 * i)));
        acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(h, 16)), _mm256_loadu_ps(x + i),
                              acc);
    }
    float s = hsum256(acc);
    for (; i < n; i++)
        s += quant_bf16_to_f32(ld16(w + 2 * i)) * x[i];
    return s;
}

T256 static void dequant_q8_0_avx2(const unsigned char *p, float *dst, size_t n)
{
    for (size_t b = 0; b < n / QUANT_QK8_0; b++, p += 34, dst += QUANT_QK8_0) {
        __m256 d = _mm256_set1_ps(_cvtsh_ss(ld16(p)));
        for (int k = 0; k < 4; k++) {
            __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const void *)(p + 2 + 8 * k)));
            _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
        }
    }
}

T256 static void dequant_q4_0_avx2(const unsigned char *p, float *dst, size_t n)
{
    const __m256i m15 = _mm256_set1_epi32(15), m8 = _mm256_set1_epi32(8);
    for (size_t b = 0; b < n / QUANT_QK4_0; b++, p += 18, dst += QUANT_QK4_0) {
        __m256 d = _mm256_set1_ps(_cvtsh_ss(ld16(p)));
        for (int k = 0; k < 2; k++) {
            __m256i q = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const void *)(p + 2 + 8 * k)));
            __m256i lo = _mm256_sub_epi32(_mm256_and_si256(q, m15), m8);
            __m256i hi = _mm256_sub_epi32(_mm256_srli_epi32(q, 4), m8);
            _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(lo)));
            _mm256_storeu_ps(dst + 16 + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(hi)));
        }
    }
}

T256 static void dequant_bf16_avx2(const unsigned char *p, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const void *)(p + 2 * i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
    }
    for (; i < n; i++)
        dst[i] = quant_bf16_to_f32(ld16(p + 2 * i));
}

enum quant_kernel { QUANT_KERNEL_PORTABLE = 0, QUANT_KERNEL_AVX2, QUANT_KERNEL_AVX512 };

/* The fused dots and the row dequantisers of one instruction set. The portable set has no
 * dequantisers of its own: quant_dequantize_row's scalar code is theirs. */
struct kernel_set {
    const char *name;
    dot_fn q8_0, q4_0, f16, q5_0, q4_k, q5_k, q6_k, bf16;
    deq_fn deq_q8_0, deq_q4_0, deq_q5_0, deq_q4_k, deq_q5_k, deq_q6_k, deq_bf16;
};

static const struct kernel_set kernel_sets[] = {
    {"portable", dot_q8_0_port, dot_q4_0_port, dot_f16_port, quantk_dot_q5_0_port,
     quantk_dot_q4_k_port, quantk_dot_q5_k_port, quantk_dot_q6_k_port, dot_bf16_port, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL},
    {"avx2", dot_q8_0_avx2, dot_q4_0_avx2, dot_f16_avx2, quantk_dot_q5_0_avx2, quantk_dot_q4_k_avx2,
     quantk_dot_q5_k_avx2, quantk_dot_q6_k_avx2, dot_bf16_avx2, dequant_q8_0_avx2,
     dequant_q4_0_avx2, quantk_dequantize_q5_0_avx2, quantk_dequantize_q4_k_avx2,
     quantk_dequantize_q5_k_avx2, quantk_dequantize_q6_k_avx2, dequant_bf16_avx2},
    {"avx512", dot_q8_0_avx512, dot_q4_0_avx512, dot_f16_avx512, quantk_dot_q5_0_avx512,
     quantk_dot_q4_k_avx512, quantk_dot_q5_k_avx512, quantk_dot_q6_k_avx512, dot_bf16_avx512,
     dequant_q8_0_avx512, dequant_q4_0_avx512, quantk_dequantize_q5_0_avx512,
     quantk_dequantize_q4_k_avx512, quantk_dequantize_q5_k_avx512, quantk_dequantize_q6_k_avx512,
     dequant_bf16_avx512},
};

static int kernel_available(enum quant_kernel k)
{
    __builtin_cpu_init();
    int f16 = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
    if (k == QUANT_KERNEL_AVX512)
        return f16 && __builtin_cpu_supports("avx512f");
    if (k == QUANT_KERNEL_AVX2)
        return f16 && __builtin_cpu_supports("avx2");
    return 1;
}

static int kernel_chosen = -1; /* set once (first use or a test's force), then read-only */

static const struct kernel_set *kernels(void)
{
    if (kernel_chosen < 0) {
        int k = QUANT_KERNEL_AVX512;
        while (!kernel_available((enum quant_kernel)k))
            k--;
        kernel_chosen = k;
    }
    return &kernel_sets[kernel_chosen];
}

/* The current kernel set's dot and tile dequantiser for type: dot_f32_port for a type without
 * a dot of its own, NULL where the set has no dequantiser (the scalar code then). */
static void kernels_for(uint32_t type, dot_fn *dot, deq_fn *deq)
{
    const struct kernel_set *k = kernels();
    *dot = dot_f32_port;
    *deq = NULL;
    switch (type) {
    case GGML_TYPE_Q8_0:
        *dot = k->q8_0;
        *deq = k->deq_q8_0;
        break;
    case GGML_TYPE_Q4_0:
        *dot = k->q4_0;
        *deq = k->deq_q4_0;
        break;
    case GGML_TYPE_Q5_0:
        *dot = k->q5_0;
        *deq = k->deq_q5_0;
        break;
    case GGML_TYPE_Q4_K:
        *dot = k->q4_k;
        *deq = k->deq_q4_k;
        break;
    case GGML_TYPE_Q5_K:
        *dot = k->q5_k;
        *deq = k->deq_q5_k;
        break;
    case GGML_TYPE_Q6_K:
        *dot = k->q6_k;
        *deq = k->deq_q6_k;
        break;
    case GGML_TYPE_BF16:
        *dot = k->bf16;
        *deq = k->deq_bf16;
        break;
    case GGML_TYPE_F16:
        *dot = k->f16;
        break;
    default:
        break;
    }
}

const char *quant_kernel_name(void)
{
    return kernels()->name;
}

int quant_kernel_force(const char *name)
{
    for (int k = 0; k < 3; k++) {
        if (strcmp(name, kernel_sets[k].name) == 0) {
            if (!kernel_available((enum quant_kernel)k))
                return -1;
            kernel_chosen = k;
            return 0;
        }
    }
    return -1;
}

void quant_dot_rows(uint32_t type, const void *w, size_t row_bytes, const float *x, float *y,
                    int n_rows, size_t n)
{
    dot_fn fn;
    deq_fn unused;
    kernels_for(type, &fn, &unused);
    const unsigned char *p = w;
    for (int i = 0; i < n_rows; i++)
        y[i] = fn(p + (size_t)i * row_bytes, x, n);
}

_Static_assert(sizeof(struct quant_block_q5_0) == 22, "block_q5_0 is 22 bytes");
_Static_assert(sizeof(struct quant_block_q4_k) == 144, "block_q4_K is 144 bytes");
_Static_assert(sizeof(struct quant_block_q5_k) == 176, "block_q5_K is 176 bytes");
_Static_assert(sizeof(struct quant_block_q6_k) == 210, "block_q6_K is 210 bytes");
