/* forward_dev: the forward pass on a GPU (the CUDA backend, src/engine/cuda/). Same batch contract
 * as forward.h (struct forward_batch: tokens of several sequences, prefill chunks and decode
 * tokens in any mix, each reading its sequence's block table), but the weights, the activations
 * and the KV pool live in device memory. The block tables, hashing and allocation stay in kv.c
 * on the host (a struct kv_cache whose pool pointer is NULL); this module only holds the pool's
 * bytes, laid out like kv.h's (layer, K/V, block, slot, kv_dim) in the model's 16-bit type.
 *
 *   struct dev_props p;
 *   if (dev_probe(0, &p, err, sizeof err) != 0) -> "built without CUDA ..." / "no CUDA device ..."
 *   struct dev_load_stats ls;
 *   struct dev_forward *d = dev_forward_new(model, &cfg, &ls, err, sizeof err); // uploads weights
 *   uint64_t peak = dev_forward_profile(d, err, sizeof err);   // one max_tokens step, measured
 *   dev_forward_kv_alloc(d, n_blocks, err, sizeof err);        // the KV pool in HBM
 *   dev_forward_capture_graphs(d, sizes, n_sizes, &cs, err, sizeof err); // decode CUDA graphs
 *   dev_forward_run(d, &kv, &batch, &n_logits);                 // as forward_run
 *   float *row = dev_forward_logits(d, r);                      // host copy, [n_vocab]
 *   dev_forward_free(d);
 *
 * Built without CUDA (plain `make`), dev_probe fails with the line telling how to build it, and
 * the other functions are never reached (dev_forward_new fails the same way).
 */
#ifndef SLM_FORWARD_DEV_H
#define SLM_FORWARD_DEV_H

#include <stddef.h>
#include <stdint.h>

#include "engine/forward.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "util/clock.h"

struct dev_props {
    char name[96];        /* "NVIDIA H200" */
    uint64_t total_bytes; /* cudaMemGetInfo */
    uint64_t free_bytes;
    int cc_major, cc_minor;
    int ordinal;
};

/* 0 and *p filled, or -1 with the reason in err. */
int dev_probe(int ordinal, struct dev_props *p, char *err, size_t err_len);

struct dev_forward_config {
    int ordinal;        /* CUDA device */
    int max_tokens;     /* tokens per step (max_num_batched_tokens) */
    int max_logits;     /* logits rows per step */
    int max_ctx;        /* positions per sequence (max_model_len) */
    int max_seqs;       /* sequences per step (max_num_seqs) */
    int block_size;     /* tokens per KV block */
};

struct dev_load_stats {
    uint64_t weight_bytes;   /* device bytes the weights occupy */
    uint64_t host_bytes;     /* bytes read from the host copy (as stored in the file) */
    mono_ns upload_ns;       /* host -> HBM, including any dequantisation */
    double upload_gbps;      /* host_bytes / upload time */
    uint64_t used_before;    /* device bytes in use (cudaMemGetInfo) before the load */
    uint64_t used_after;     /* ... after it */
};

struct dev_forward;

/* Creates the CUDA context, cuBLAS handle and stream, uploads every weight (F16/BF16 as
 * stored; F32 and block types converted to the model's 16-bit compute type) and allocates the
 * step workspace for cfg's limits. NULL with the reason in err (no device, out of memory with
 * the sizes). */
struct dev_forward *dev_forward_new(const struct model *m, const struct dev_forward_config *cfg,
                                    struct dev_load_stats *st, char *err, size_t err_len);
void dev_forward_free(struct dev_forward *d); /* NULL-safe */

/* The profile run: one step of cfg.max_tokens prefill tokens through every layer (K/V into a
 * scratch block table, nothing kept), synchronised. Returns the peak device bytes the step
 * needed beyond the weights (workspace, cuBLAS workspace, logits), measured with cudaMemGetInfo
 * around it, or 0 with err set on failure. */
uint64_t dev_forward_profile(struct dev_forward *d, char *err, size_t err_len);

/* Device bytes of one token's K and V over all layers (2 x n_layer x kv_dim x 2 bytes). */
uint64_t dev_forward_kv_bytes_per_token(const struct dev_forward *d);

/* Allocates the KV pool: n_blocks blocks of cfg.block_size tokens. 0, or -1 (out of memory,
 * with the sizes in err). */
int dev_forward_kv_alloc(struct dev_forward *d, int n_blocks, char *err, size_t err_len);

/* Captures decode steps (every token a single decode token of its own sequence) for batch sizes
 * sizes[0..n_sizes) as CUDA graphs; later decode-only steps of n tokens replay the smallest graph
 * of size >= n, padded. *secs = capture time. n_sizes == 0: eager only. 0, or -1 with err. */
int dev_forward_capture_graphs(struct dev_forward *d, const int *sizes, int n_sizes, double *secs,
                               char *err, size_t err_len);
/* Device bytes the captured graphs hold (cudaMemGetInfo before/after capture). */
uint64_t dev_forward_graph_bytes(const struct dev_forward *d);

/* As forward_run (forward.h), with kv->pool == NULL: the K/V live in this module's pool, indexed
 * by kv's block tables. The logits rows are copied back to the host before it returns. */
enum forward_status dev_forward_run(struct dev_forward *d, const struct kv_cache *kv,
                                    const struct forward_batch *b, int *n_logits_out);
/* Logits row r of the last run, host memory, writable, [n_vocab] floats. */
float *dev_forward_logits(struct dev_forward *d, int r);

/* Why the last dev_forward_run returned FORWARD_ERR_BATCH (a bad batch, or the CUDA error that
 * stopped the step, which is also logged); "" after a successful run. Valid until the next run.
 * (Added after the first version of this contract; callers that ignore it lose nothing.) */
const char *dev_forward_last_error(const struct dev_forward *d);

/* Counters since creation: steps run eagerly and by graph replay. */
void dev_forward_counts(const struct dev_forward *d, uint64_t *eager_steps,
                        uint64_t *graph_steps);

#endif
