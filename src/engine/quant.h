/* quant: the ggml block types a GGUF weight tensor may be stored in, laid out exactly as
 * llama.cpp's ggml-common.h defines them (Q8_0: fp16 scale d + 32 int8, value = d * q;
 * Q4_0: fp16 scale d + 16 bytes, value j = d * ((qs[j] & 15) - 8), value j + 16 =
 * d * ((qs[j] >> 4) - 8)), the 2-byte float types F16 and BF16, and per row: quantisation (the
 * reference rounding of ggml's quantize_row_*_ref), dequantisation, a plain f64 reference dot
 * product, and the fused dequantise-and-dot kernels the forward pass runs on weights as stored
 * (AVX-512, AVX2+FMA+F16C, or portable C, chosen once from the CPU's features).
 * Q5_0 and the k-quants Q4_K, Q5_K, Q6_K (super-blocks of 256 values) live in quant_k.c, which
 * describes their bit layouts and how their scales are chosen.
 * It does not own memory, read files (gguf.c) or multiply matrices (forward.c).
 *
 *   size_t rb = quant_row_bytes(GGML_TYPE_Q8_0, n);          // 0: type unsupported or n % 32
 *   quant_quantize_row(GGML_TYPE_Q8_0, src, row, n);
 *   quant_dequantize_row(GGML_TYPE_Q8_0, row, out, n);
 *   quant_dot_rows(GGML_TYPE_Q8_0, w, rb, x, y, n_rows, n);  // y[i] = row i . x
 */
#ifndef SLM_QUANT_H
#define SLM_QUANT_H

#include <stddef.h>
#include <stdint.h>

#define QUANT_QK8_0 32
#define QUANT_QK4_0 32

/* ggml-common.h block_q8_0: 34 bytes. */
struct quant_block_q8_0 {
    uint16_t d;      /* fp16 scale */
    int8_t qs[QUANT_QK8_0];
};

/* ggml-common.h block_q4_0: 18 bytes. */
struct quant_block_q4_0 {
    uint16_t d;      /* fp16 scale */
    uint8_t qs[QUANT_QK4_0 / 2]; /* low nibbles: values 0..15, high nibbles: values 16..31 */
};

/* ggml-common.h block_q5_0: 22 bytes. */
#define QUANT_QK5_0 32
struct quant_block_q5_0 {
    uint16_t d;         /* fp16 scale */
    uint8_t qh[4];      /* fifth bits, value j at bit j (little-endian uint32) */
    uint8_t qs[QUANT_QK5_0 / 2];
};

/* The k-quants: super-blocks of QUANT_QK_K values (ggml-common.h; layouts in quant_k.c). */
#define QUANT_QK_K 256
struct quant_block_q4_k { /* 144 bytes */
    uint16_t d, dmin;     /* fp16 super-block scales of the 6-bit scales and mins */
    uint8_t scales[12];   /* 8 x (6-bit scale, 6-bit min) */
    uint8_t qs[QUANT_QK_K / 2];
};
struct quant_block_q5_k { /* 176 bytes */
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QUANT_QK_K / 8]; /* fifth bits */
    uint8_t qs[QUANT_QK_K / 2];
};
struct quant_block_q6_k { /* 210 bytes */
    uint8_t ql[QUANT_QK_K / 2]; /* low 4 bits */
    uint8_t qh[QUANT_QK_K / 4]; /* high 2 bits */
    int8_t scales[QUANT_QK_K / 16];
    uint16_t d;
};

/* 1 if the forward pass can compute on this ggml type as stored (F32, F16, BF16, Q8_0, Q5_0,
 * Q4_0, Q6_K, Q5_K, Q4_K). */
int quant_type_supported(uint32_t type);
/* "F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q6_K, Q5_K, Q4_K": the list for error messages. Static
 * string. */
const char *quant_supported_list(void);

/* Bytes of one row of n values of type; 0 if the type is unsupported or n is not a multiple of
 * its block size. */
size_t quant_row_bytes(uint32_t type, size_t n);

/* Checks n_blocks blocks of a block type at data as ggml_validate_row_data does: every fp16 scale
 * (d; dmin for Q4_K/Q5_K) finite. 0, or -1 with *bad_block = the first bad block's index.
 * Types without block scales (F32, F16, BF16): 0. */
int quant_validate_blocks(uint32_t type, const void *data, uint64_t n_blocks, uint64_t *bad_block);

/* bf16 <-> f32 as ggml converts them (round to nearest even; NaN stays a quiet NaN). */
uint16_t quant_f32_to_bf16(float f);
float quant_bf16_to_f32(uint16_t h);

/* src[n] f32 -> one row of type at dst (quant_row_bytes(type, n) bytes), any supported type.
 * 0, or -1 (nothing written) if unsupported or n does not fit the block size. */
int quant_quantize_row(uint32_t type, const float *src, void *dst, size_t n);
/* One row of type -> dst[n] f32. 0 or -1 as above. src needs no alignment. */
int quant_dequantize_row(uint32_t type, const void *src, float *dst, size_t n);

/* Reference: sum over j of dequantised w[j] * x[j], accumulated in f64. */
double quant_dot_ref(uint32_t type, const void *w, const float *x, size_t n);

/* The fused kernel: y[i] = dot(row i, x) for n_rows rows of n values, row i at
 * w + i * row_bytes (f32 accumulation in a fixed order per variant: the result of one row does
 * not depend on n_rows or on the other rows). Type must be supported (checked by the loader);
 * any thread. */
void quant_dot_rows(uint32_t type, const void *w, size_t row_bytes, const float *x, float *y,
                    int n_rows, size_t n);

/* Which variant quant_dot_rows uses on this CPU: "avx512", "avx2" or "portable". */
const char *quant_kernel_name(void);
/* Tests: force a variant ("avx512", "avx2", "portable"; one the CPU lacks is refused). 0 or -1. */
int quant_kernel_force(const char *name);

#endif
