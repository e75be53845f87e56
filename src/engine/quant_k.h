/* quant_k: the k-quant super-block formats Q4_K, Q5_K, Q6_K and the 5-bit Q5_0 (the type
 * llama-quantize falls back to for Q4_K where rows do not divide into 256), per row:
 * quantisation (min/max scales, see quant_k.c), dequantisation, and fused dequantise-and-dot
 * kernels in three variants (portable C, AVX2+FMA+F16C, AVX-512F). Internal to quant.c, which
 * dispatches on the type and the chosen variant; n is always a whole number of blocks
 * (quant_row_bytes checked it). Block data needs no alignment. No state, no allocation.
 * Any thread. */
#ifndef SLM_QUANT_K_H
#define SLM_QUANT_K_H

#include <stddef.h>

/* x[n] f32 -> blocks at dst. */
void quantk_quantize_q4_k(const float *x, unsigned char *dst, size_t n);
void quantk_quantize_q5_k(const float *x, unsigned char *dst, size_t n);
void quantk_quantize_q6_k(const float *x, unsigned char *dst, size_t n);
void quantk_quantize_q5_0(const float *x, unsigned char *dst, size_t n);

/* blocks at src -> y[n] f32. */
void quantk_dequantize_q4_k(const unsigned char *src, float *y, size_t n);
void quantk_dequantize_q5_k(const unsigned char *src, float *y, size_t n);
void quantk_dequantize_q6_k(const unsigned char *src, float *y, size_t n);
void quantk_dequantize_q5_0(const unsigned char *src, float *y, size_t n);

/* The same with AVX-512F (identical results; only on a CPU that has it). */
void quantk_dequantize_q4_k_avx512(const unsigned char *src, float *y, size_t n);
void quantk_dequantize_q5_k_avx512(const unsigned char *src, float *y, size_t n);
void quantk_dequantize_q6_k_avx512(const unsigned char *src, float *y, size_t n);
void quantk_dequantize_q5_0_avx512(const unsigned char *src, float *y, size_t n);
/* And with AVX2, 8 values a vector (identical results; only on a CPU that has it). */
void quantk_dequantize_q4_k_avx2(const unsigned char *src, float *y, size_t n);
void quantk_dequantize_q5_k_avx2(const unsigned char *src, float *y, size_t n);
void quantk_dequantize_q6_k_avx2(const unsigned char *src, float *y, size_t n);
void quantk_dequantize_q5_0_avx2(const unsigned char *src, float *y, size_t n);

/* dot(row of n values at w, x), f32 accumulation in a fixed order per variant. The _avx2 and
 * _avx512 ones may only run on a CPU with those features (quant.c checks). */
float quantk_dot_q4_k_port(const unsigned char *w, const float *x, size_t n);
float quantk_dot_q5_k_port(const unsigned char *w, const float *x, size_t n);
float quantk_dot_q6_k_port(const unsigned char *w, const float *x, size_t n);
float quantk_dot_q5_0_port(const unsigned char *w, const float *x, size_t n);
float quantk_dot_q4_k_avx2(const unsigned char *w, const float *x, size_t n);
float quantk_dot_q5_k_avx2(const unsigned char *w, const float *x, size_t n);
float quantk_dot_q6_k_avx2(const unsigned char *w, const float *x, size_t n);
float quantk_dot_q5_0_avx2(const unsigned char *w, const float *x, size_t n);
float quantk_dot_q4_k_avx512(const unsigned char *w, const float *x, size_t n);
float quantk_dot_q5_k_avx512(const unsigned char *w, const float *x, size_t n);
float quantk_dot_q6_k_avx512(const unsigned char *w, const float *x, size_t n);
float quantk_dot_q5_0_avx512(const unsigned char *w, const float *x, size_t n);

#endif
