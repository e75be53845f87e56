/* dev_test: test hooks into the CUDA backend's kernels, callable from C (tests/cuda/). Only in
 * `make CUDA=1` builds. Not for the engine. */
#ifndef SLM_CUDA_DEV_TEST_H
#define SLM_CUDA_DEV_TEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One attention call on host data: q [n_tokens][n_head * head_dim] and the pool arrays
 * k_pool, v_pool [n_blocks * block_size][n_head_kv * head_dim], 16-bit (bf16, or f16 when f16
 * is set), block tables bt [n_rows][bt_stride]; token i is at position pos[i] of the sequence
 * of row tok_row[i] and attends to keys 0..pos[i]. Tokens are planned as the forward pass plans
 * them (runs of >= 16 consecutive positions of one row through the prefill tiles, the rest
 * through the decode kernel with n_split key ranges, 0 = the forward's choice) unless
 * all_decode is set. */
struct dev_test_attn {
    int f16;
    int n_head, n_head_kv, head_dim, block_size, n_blocks;
    int n_tokens;
    const int32_t *pos, *tok_row;
    int n_rows, bt_stride;
    const int32_t *bt;
    const uint16_t *q, *k_pool, *v_pool;
    int all_decode;
    int n_split;
};

/* Runs it on device 0; out [n_tokens][n_head * head_dim] 16-bit. *n_tiles_out / *n_short_out:
 * how the tokens were planned. 0, or -1 with err. Allocates and frees its device memory. */
int dev_test_attention(const struct dev_test_attn *a, uint16_t *out, int *n_tiles_out,
                       int *n_short_out, char *err, size_t err_len);

/* HBM bandwidth of device 0 over a buffer of bytes (a few GB): a read-only kernel (16-byte loads,
 * every byte once per pass) and cudaMemcpy device to device (counting bytes read + written),
 * best of iters passes each, in GB/s (1e9 bytes). 0, or -1 with err. */
int dev_test_bandwidth(size_t bytes, int iters, double *read_gbps, double *copy_gbps, char *err,
                       size_t err_len);

/* Where an eager step's time goes: runs b like dev_forward_run (never by graph) with CUDA events
 * between its ops and adds each op's device time into ms[kind] (DEV_TEST_OP_COUNT entries,
 * zeroed first). 0, or -1 with err. */
enum dev_test_op {
    DEV_TEST_OP_EMBED = 0,
    DEV_TEST_OP_QKV, /* RMSNorm + q/k/v product */
    DEV_TEST_OP_ROPE,
    DEV_TEST_OP_ATTN,
    DEV_TEST_OP_WO,
    DEV_TEST_OP_GATE_UP, /* RMSNorm + gate/up product + SwiGLU */
    DEV_TEST_OP_DOWN,
    DEV_TEST_OP_LOGITS,
    DEV_TEST_OP_COPY,
    DEV_TEST_OP_COUNT
};
const char *dev_test_op_name(int kind);
struct dev_forward;
struct kv_cache;
struct forward_batch;
int dev_test_op_times(struct dev_forward *d, const struct kv_cache *kv,
                      const struct forward_batch *b, double *ms, char *err, size_t err_len);

/* Products of up to m rows go to the streaming GEMV from now on, larger ones to cuBLAS (0: all
 * to cuBLAS; capped at OPS_GEMV_MAX_M); for measuring where the two cross. Graphs captured
 * before keep the choice they were captured with. Returns the previous value. */
int dev_test_set_gemv_max_rows(struct dev_forward *d, int m);

#ifdef __cplusplus
}
#endif

#endif
