/* forward: one batched forward pass of a Llama/Qwen2 decoder over the paged KV cache.
 * A batch is parallel arrays (token, position, sequence slot, wants-logits) plus each sequence's
 * block table; tokens of several sequences (prefill chunks and single decode tokens, in any mix)
 * go through every weight matrix together as one matrix product (OpenBLAS sgemm, or sgemv when
 * the batch has one token; the output columns are split into slices shared out among the
 * threads, so OpenBLAS itself runs single-threaded and OpenMP is the only thread pool).
 * Attention reads each token's own sequence through its block table: a prefill run (>= 16
 * consecutive positions of one sequence) in tiles of queries x one KV head, as sgemms over
 * chunks of keys with an online softmax; decode tokens one (token, head) pair at a time with a
 * vectorised loop (AVX-512, AVX2 or baseline, chosen from the CPU's features).
 * Activations (struct run_state) are allocated once by forward_new for the largest batch; the hot
 * path never allocates. This module does no scheduling, no block allocation and no sampling; it
 * is the only file that includes <cblas.h>.
 *
 *   struct forward *f = forward_new(model, max_tokens, max_logits, max_model_len, n_threads);
 *   struct forward_batch b = {n, token, pos, seq, wants_logits, n_seqs, seqs};
 *   int n_logits;
 *   if (forward_run(f, &kv, &b, &n_logits) == FORWARD_OK)
 *       row r (r-th token with wants_logits) = forward_logits(f, r)   // [n_vocab] floats
 *   forward_free(f);
 *
 * Weights stored as F16, Q8_0 or Q4_0 are used as stored (struct weight_mat): one-token products
 * through quant.h's fused dequantise-and-dot kernel, larger ones on dequantised 64-row tiles.
 *
 * Numerics (f32 throughout). Guarantees:
 *  - Run to run, the same batch (same tokens, positions, sequences, chunking, and the same
 *    thread count) gives bit-identical logits on a given machine; nothing depends on thread
 *    timing (parallel loops only split independent work, there are no parallel reductions).
 *  - RMSNorm, RoPE and SwiGLU are computed per token, independent of the rest of the batch.
 *  - NOT guaranteed: bit-identity across batch compositions. OpenBLAS chooses kernels by matrix
 *    shape (and a one-token batch uses sgemv), so a row of x W^T may be summed in another order
 *    when the number of tokens in the step changes; likewise a token's attention is summed
 *    differently in a prefill tile (online softmax over key chunks) than in the per-token loop.
 *    Such differences are float rounding (relative ~1e-6); they can change a greedy pick only
 *    where the two best logits are that close.
 *  - Against a naive f64-accumulating reference, logits agree within
 *    1e-4 x max(1, max |logit|) (tests/test_forward.c).
 *
 * Threads: each step synchronises the OpenMP team a few times per layer, so on a machine whose
 * cores are busy with other work, n_threads above the number of idle cores makes steps slower.
 * Built with -fsanitize=thread, the forward always runs on one thread (TSan cannot see libgomp's
 * barriers).
 */
#ifndef SLM_FORWARD_H
#define SLM_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "engine/kv.h"
#include "engine/model.h"

/* One step's tokens. token/pos/seq/wants_logits have n_tokens entries; seq[i] indexes seqs[].
 * Each token at position p must see K/V for positions 0..p-1 of its sequence: either computed
 * in an earlier step (p' < seqs[s]->n_computed) or present in this batch. seqs[s]'s block table
 * must already cover every position in the batch (kv_seq_reserve), and positions in the batch
 * must not lie in blocks shared with other sequences (kv.h guarantees this for prefix hits). */
struct forward_batch {
    int n_tokens;
    const int32_t *token;        /* token ids */
    const int32_t *pos;          /* positions within their sequence */
    const int32_t *seq;          /* index into seqs */
    const uint8_t *wants_logits; /* 1: compute logits for this token */
    int n_seqs;
    struct kv_seq *const *seqs;  /* block tables */
};

/* Preallocated activations for up to max_tokens tokens and max_logits logits rows. Shapes are
 * [tokens][dim], row-major. */
struct run_state {
    float *x;        /* [max_tokens][n_embd] residual stream */
    float *xb;       /* [max_tokens][n_embd] normed input of a sublayer */
    float *q;        /* [max_tokens][n_head*head_dim] */
    float *k;        /* [max_tokens][n_head_kv*head_dim] (copied into the KV blocks) */
    float *v;        /* [max_tokens][n_head_kv*head_dim] */
    float *att_out;  /* [max_tokens][n_head*head_dim] attention output before wo */
    float *hb;       /* [max_tokens][n_ff] gate, then silu(gate) * up */
    float *hb2;      /* [max_tokens][n_ff] up */
    float *rope_cos; /* [max_tokens][head_dim/2] */
    float *rope_sin; /* [max_tokens][head_dim/2] */
    float *att;      /* [n_threads][max_ctx] attention scores, one row per thread */
    float *xl;       /* [max_logits][n_embd] final-normed rows that want logits */
    float *logits;   /* [max_logits][n_vocab] */
    int32_t *logit_rows; /* [max_logits] batch index of each logits row */
    float *tile_scratch; /* [n_threads][tile_scratch_floats] tiled attention (Q, O, S, K, V) */
    int32_t *short_tok;  /* [max_tokens] tokens attended one (token, head) at a time */
    int32_t *tile_i0, *tile_n, *tile_g; /* [max_tiles] prefill attention tiles */
};

/* Kernel paths a step can take (counted per forward_run, for the warm-up and its tests). */
enum forward_path {
    FORWARD_PATH_GEMV = 0,   /* one-row products (cblas_sgemv) */
    FORWARD_PATH_SMALL,      /* 2..32-row products, the AVX-512 small-batch kernel */
    FORWARD_PATH_GEMM,       /* larger products (cblas_sgemm; every m > 1 without AVX-512) */
    FORWARD_PATH_ATT_TILE,   /* prefill attention tiles (sgemm, online softmax) */
    FORWARD_PATH_ATT_SHORT,  /* per-(token, head) attention (decode, short runs) */
    FORWARD_PATH_COUNT
};
const char *forward_path_str(enum forward_path p); /* "gemv", "small", "gemm", ... */

struct dev_forward; /* forward_dev.h */

struct forward {
    const struct model *model;
    struct dev_forward *dev;   /* forward_new_dev: runs and logits go to the GPU (forward_dev.h);
                                  the host workspace below is then not allocated */
    struct run_state s;
    int max_tokens;
    int max_logits;
    int max_ctx;
    int n_threads;
    double *rope_inv_freq; /* [head_dim/2] theta^(-2i/head_dim) */
    size_t tile_scratch_floats;
    int max_tiles;
    uint64_t workspace_bytes;  /* forward_workspace_bytes: all of the above, dequant scratch too */
    float *deq_scratch;        /* [n_threads][deq_scratch_floats], or NULL (all-f32 model) */
    size_t deq_scratch_floats; /* LIN_QTILE rows of the widest matrix input */
    int n_layers_run;                         /* 0: all layers (forward_limit_layers) */
    uint64_t n_runs;                          /* successful forward_run calls */
    uint64_t path_runs[FORWARD_PATH_COUNT];   /* calls that used each path at least once */
};

enum forward_status {
    FORWARD_OK = 0,
    FORWARD_ERR_BATCH, /* batch larger than the workspace, bad index, or position out of range */
};
const char *forward_status_str(enum forward_status st);

/* Allocates the workspace for batches of up to max_tokens tokens, max_logits logits rows and
 * positions < max_ctx. Sets OpenMP to n_threads threads and OpenBLAS to 1 (process-wide; 0 = the
 * number of CPUs). The model must outlive the forward. Aborts on OOM (with the size). Caller frees
 * with forward_free. */
struct forward *forward_new(const struct model *model, int max_tokens, int max_logits,
                            int max_ctx, int n_threads);
void forward_free(struct forward *f); /* NULL-safe */

/* --device cuda: a forward whose forward_run and forward_logits go to d (dev_forward_run,
 * dev_forward_logits) after the same batch checks, with no host workspace. Takes ownership of d
 * (forward_free frees it). forward_limit_layers has no effect on it. */
struct forward *forward_new_dev(const struct model *model, struct dev_forward *d, int max_tokens,
                                int max_logits, int max_ctx);

/* Bytes of the workspace forward_new allocates for this model and these limits (without
 * allocating): activations, attention scratch, and for a model with matrices in F16 or a block
 * type the per-thread dequantisation tiles (LIN_QTILE rows of the widest matrix input). */
uint64_t forward_workspace_bytes(const struct model *m, int max_tokens, int max_logits,
                                 int max_ctx, int n_threads);

/* Runs the batch: writes each token's K/V into its sequence's block at its position in every
 * layer, and computes logits for the tokens with wants_logits, in batch order. Does not change
 * the kv_seq structs (the caller commits). *n_logits_out = number of logits rows.
 * FORWARD_ERR_BATCH (and nothing computed) if the batch breaks the limits above.
 * One call at a time per struct forward (it uses the process-wide BLAS/OpenMP pools). */
enum forward_status forward_run(struct forward *f, struct kv_cache *kv,
                                const struct forward_batch *b, int *n_logits_out);

/* Logits row r of the last forward_run (r < *n_logits_out): [n_vocab] floats, writable (the
 * sampler may mask entries). Valid until the next forward_run. */
float *forward_logits(struct forward *f, int r);

/* Warm-up hook: later runs compute only the first n_layer layers (then the final norm and the
 * output projection); 0 restores all. The other layers' K/V are not written, so the logits
 * are meaningless: only for steps whose blocks are released uncommitted (engine_warmup). */
void forward_limit_layers(struct forward *f, int n_layer);
/* Threads used by forward_new (after resolving 0). */
int forward_n_threads(const struct forward *f);
/* The threads forward_new(..., n_threads) will use: n_threads, 0 = the online CPUs; 1 under
 * ThreadSanitizer. Lets a caller size what runs beside the forward before creating it. */
int forward_threads_for(int n_threads);

#endif
