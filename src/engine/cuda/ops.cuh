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
    const int32_t *token;   /* [n_tokens] */
    const int32_t *pos;     /* [n_tokens] */
    const int32_t *slot;    /* [n_tokens] block * block_size + offset, -1: no KV write */
    const int32_t *tok_row; /* [n_tokens] row of bt for the token's sequence */
    const int32_t *ctx_len; /* [n_tokens] keys the token attends to (pos + 1; 0: padding) */
    const int32_t *bt;      /* [rows][bt_stride] block tables */
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
    int rope_neox; /* 1: NEOX pairs (j, j + head_dim/2), 0: NORM pairs (2j, 2j+1) */
};

/* x[i] = embd[token[i]] as f32, [n][n_embd]. */
void ops_embed(const struct ops_shape *s, const void *embd, const int32_t *token, float *x, int n,
               cudaStream_t st);

/* out[r] = T(rmsnorm(x[rows ? rows[r] : r]) * w), n rows of n_embd; w f32. */
void ops_rmsnorm(const struct ops_shape *s, const float *x, const int32_t *rows, const float *w,
                 void *out, int n, cudaStream_t st);

/* The fused q/k/v epilogue: qkv[n][q_dim + 2 kv_dim] f32 (q, k, v side by side) plus the bias
 * (f32, same width, or NULL), RoPE at each token's position on q and k (rope [max_ctx][head_dim]:
 * per position head_dim/2 cosines then head_dim/2 sines, computed in f64 as forward.c computes
 * them), q -> q_out[n][q_dim] as T, k and v -> the
 * pool arrays k_pool/v_pool ([n_slots][kv_dim] T) at slot[i] unless it is negative. */
void ops_qkv_rope_store(const struct ops_shape *s, const float *qkv, const float *bias,
                        const float *rope, const struct ops_step *b, void *q_out, void *k_pool,
                        void *v_pool, cudaStream_t st);

/* out[i][j] = T(silu(gu[i][2j]) * gu[i][2j + 1]), gu [n][2 n_ff] f32 (gate and up interleaved). */
void ops_swiglu(const struct ops_shape *s, const float *gu, void *out, int n, cudaStream_t st);

/* Attention of every token of the step: q [n][q_dim] T -> out [n][q_dim] T. Prefill tiles
 * (b->n_tiles) and the decode kernel over b->short_tok (b->n_split key ranges each, merged
 * through part_o [part rows][n_head][head_dim] f32 and part_ml [..][n_head][2] f32 when
 * n_split > 1, part rows = n_short * n_split; part_cnt [n_short][n_head_kv] int counters, zero
 * before the call and left zero after it). */
void ops_attention(const struct ops_shape *s, const struct ops_step *b, const void *q,
                   const void *k_pool, const void *v_pool, void *out, float *part_o, float *part_ml,
                   int *part_cnt, cudaStream_t st);

/* dst row r = T(src row r): rows x cols f32 (contiguous) into rows dst_pitch elements apart. */
void ops_f32_to_dtype(enum dev_dtype t, const float *src, void *dst, size_t rows, int cols,
                      size_t dst_pitch, cudaStream_t st);

/* What the matrix-product launchers need: cuBLAS bound to st, the device's multiprocessors. */
struct ops_ctx {
    cublasHandle_t blas;
    cudaStream_t st;
    int n_sm; /* 0: always cuBLAS */
    const struct ops_shape *s;
    int gemv_max_m; /* the streaming GEMV for m <= this (<= OPS_GEMV_MAX_M), cuBLAS above */
};

/* y[m][n_out] = x[m][n_in] W^T + beta y (W [n_out][n_in] T, x T, y f32, f32 accumulation): up
 * to OPS_GEMV_MAX_M rows (n_in a multiple of 8) through the streaming kernel of ops.cu, larger
 * batches through cuBLAS (tensor ops). 0, or -1 with the cuBLAS status in err. 4: on an H200 the
 * streaming kernel's FP32 FMAs (m per weight) overtake cuBLAS's tensor ops from 5 rows on
 * (docs/cuda.md, "Small-batch products"). */
#define OPS_GEMV_MAX_M 4
int ops_gemm(const struct ops_ctx *cx, const void *w, const void *x, float *y, int m, int n_out,
             int n_in, float beta, char *err, size_t err_len);

/* y[m][n_out] = T(rmsnorm(x[rows ? rows[r] : r]) * nw) W^T (x f32 [.][n_embd], beta 0): fused for
 * small m; else ops_rmsnorm into a16 ([m][n_embd] T) and cuBLAS. */
int ops_norm_gemm(const struct ops_ctx *cx, const float *x, const int32_t *rows, const float *nw,
                  void *a16, const void *w, float *y, int m, int n_out, char *err, size_t err_len);

/* out[m][n_ff] = T(silu(g) * u) where g|u = T(rmsnorm(x) * nw) Wgu^T, Wgu [n_ff][2][n_embd]
 * (gate row j, then up row j): fused for small m; else through a16 and gu (f32 [m][2 n_ff],
 * interleaved like Wgu's rows) and ops_swiglu. */
int ops_norm_gemm_swiglu(const struct ops_ctx *cx, const float *x, const float *nw, void *a16,
                         const void *wgu, float *gu, void *out, int m, char *err, size_t err_len);

#endif
