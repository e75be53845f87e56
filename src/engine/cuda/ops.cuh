/* ops: the per-op launchers the CUDA forward pass calls (forward_cuda.cu), one per step of a
 * decoder layer. Every launcher enqueues on the given stream and returns at once; none allocates,
 * synchronises or calls anything a CUDA graph capture forbids, so a whole step can be captured.
 * Shapes are row-major [rows][cols]; "T" is the model's 16-bit type (enum dev_dtype), activations
 * between ops are f32 where they feed a residual or a non-linearity and T where they feed a
 * matrix product or attention. Launch errors are read by the caller (cudaGetLastError once per
 * step); a launcher returns -1 only for shapes it cannot run (checked up front by ops_supported).
 *
 * Attention reads K/V from the paged pool (kv.h's layout: per layer a K and a V array of
 * [n_blocks][block_size][kv_dim]) through each token's block-table row. */
#ifndef SLM_CUDA_OPS_CUH
#define SLM_CUDA_OPS_CUH

#include "engine/cuda/common.cuh"

/* Query heads per KV head and head sizes the attention kernels are compiled for. */
#define OPS_MAX_GROUP 8
#define OPS_ATT_TILE_Q 32  /* queries per prefill attention tile */
#define OPS_ATT_RUN_MIN 16 /* consecutive positions of one sequence that go through tiles */

/* 0 if the kernels run this shape; else -1 with the reason. */
int ops_supported(int head_dim, int n_head, int n_head_kv, char *err, size_t err_len);

/* One step's token metadata in device memory (forward_cuda.cu packs and uploads it). */
struct ops_step {
    int n_tokens;
    const int32_t *token;     /* [n_tokens] */
    const int32_t *pos;       /* [n_tokens] */
    const int32_t *slot;      /* [n_tokens] block * block_size + offset, -1: no KV write */
    const int32_t *tok_row;   /* [n_tokens] row of bt for the token's sequence */
    const int32_t *ctx_len;   /* [n_tokens] keys the token attends to (pos + 1; 0: padding) */
    const int32_t *bt;        /* [rows][bt_stride] block tables */
    int bt_stride;
    int n_short;              /* tokens attended one at a time (decode kernel) */
    const int32_t *short_tok; /* [n_short] their batch indices */
    int n_split;              /* decode: key ranges per (token, KV head), 1..OPS_MAX_SPLIT */
    int n_tiles;              /* prefill tiles */
    const int32_t *tile_i0;   /* [n_tiles] first batch index (consecutive positions follow) */
    const int32_t *tile_n;    /* [n_tiles] queries in the tile (<= OPS_ATT_TILE_Q) */
};
#define OPS_MAX_SPLIT 32

/* The model's shape as the kernels need it. */
struct ops_shape {
    enum dev_dtype dtype;
    int n_embd, n_head, n_head_kv, head_dim, n_ff;
    int q_dim, kv_dim, block_size;
    float norm_eps;
    int rope_neox;            /* 1: NEOX pairs (j, j + head_dim/2), 0: NORM pairs (2j, 2j+1) */
};

/* x[i] = embd[token[i]] as f32, [n][n_embd]. */
void ops_embed(const struct ops_shape *s, const void *embd, const int32_t *token, float *x,
               int n, cudaStream_t st);

/* out[r] = T(rmsnorm(x[rows ? rows[r] : r]) * w), n rows of n_embd; w f32. */
void ops_rmsnorm(const struct ops_shape *s, const float *x, const int32_t *rows, const float *w,
                 void *out, int n, cudaStream_t st);

/* The fused q/k/v epilogue: qkv[n][q_dim + 2 kv_dim] f32 (q, k, v side by side) plus the bias
 * (f32, same width, or NULL), RoPE at each token's position on q and k (rope [max_ctx][head_dim]:
 * per position head_dim/2 cosines then head_dim/2 sines, computed in f64 as forward.c computes
 * them), q -> q_out[n][q_dim] as T, k and v -> the
 * pool arrays k_pool/v_pool ([n_slots][kv_dim] T) at slot[i] unless it is negative. */
void ops_qkv_rope_store(const struct ops_shape *s, const float *qkv, const float *bias,
                        const float *rope, const struct ops_step *b, void *q_out,
                        void *k_pool, void *v_pool, cudaStream_t st);

/* out[i][j] = T(silu(gu[i][j]) * gu[i][n_ff + j]), gu [n][2 n_ff] f32 (gate, then up). */
void ops_swiglu(const struct ops_shape *s, const float *gu, void *out, int n, cudaStream_t st);

/* Attention of every token of the step: q [n][q_dim] T -> out [n][q_dim] T. Prefill tiles
 * (b->n_tiles) and the decode kernel over b->short_tok (b->n_split key ranges each, combined
 * through part_o [OPS part rows][n_head][head_dim] f32 and part_ml [..][n_head][2] f32 when
 * n_split > 1; part rows = n_short * n_split must fit part_rows). */
void ops_attention(const struct ops_shape *s, const struct ops_step *b, const void *q,
                   const void *k_pool, const void *v_pool, void *out, float *part_o,
                   float *part_ml, cudaStream_t st);

/* dst[i] = T(src[i]), n values. */
void ops_f32_to_dtype(enum dev_dtype t, const float *src, void *dst, size_t n, cudaStream_t st);

/* y[m][n_out] = x[m][n_in] W^T + beta y (W [n_out][n_in] T, x T, y f32, f32 accumulation):
 * up to OPS_GEMV_MAX_M rows (n_in a multiple of 8) through the streaming kernel in ops.cu, larger
 * batches through cuBLAS (tensor ops; h bound to st). n_sm: the device's multiprocessors (0: always
 * cuBLAS). 0, or -1 with the cuBLAS status in err. */
#define OPS_GEMV_MAX_M 8
int ops_gemm(cublasHandle_t h, enum dev_dtype t, const void *w, const void *x, float *y, int m,
             int n_out, int n_in, float beta, int n_sm, cudaStream_t st, char *err,
             size_t err_len);

#endif
