/* sizing: the arithmetic of the engine's start-up sizing, with vLLM's rules and error wording,
 * apart from any allocation so that it can be tested without a device: the free-memory check at
 * start-up, the KV budget on a CUDA device (what is subtracted from
 * gpu_memory_utilization x total), the number of KV blocks a budget buys (with the two errors
 * vLLM raises: no memory for the cache blocks, one max_model_len sequence does not fit) and the
 * batch sizes captured as CUDA graphs. It allocates nothing and logs nothing (engine.c does). */
#ifndef SLM_SIZING_H
#define SLM_SIZING_H

#include <stddef.h>
#include <stdint.h>

/* Largest decode batch captured as a CUDA graph (vLLM's default max_cudagraph_capture_size). */
#define SIZING_GRAPH_MAX 512
/* Most KV blocks one pool may have (kv.h's limit). */
#define SIZING_MAX_BLOCKS (1 << 29)

/* vLLM's start-up check: the device must have gpu_memory_utilization x total free. 0 if
 * free_bytes >= util x total, else -1 with vLLM's message ("Free memory on device (X/Y GiB) on
 * startup is less than desired GPU memory utilization (U, Z GiB). ...") in err. */
int sizing_check_free(uint64_t total_bytes, uint64_t free_bytes, double util, char *err,
                      size_t err_len);

/* What the KV budget on a CUDA device is computed from (docs/serve.md, "Sizing on a GPU"). */
struct sizing_dev {
    uint64_t total_bytes;           /* cudaMemGetInfo total */
    uint64_t used_at_start_bytes;   /* total - free when the engine started: other processes and
                                       this process's CUDA context (vLLM V0's non-torch memory) */
    uint64_t weight_bytes;          /* the weights in device memory */
    uint64_t load_other_bytes;      /* what the load allocated besides the weights (cuBLAS
                                       handle, stream, what stayed of the upload) */
    uint64_t activation_peak_bytes; /* the profile step's peak beyond the weights: the step
                                       workspace, cuBLAS workspace, logits, activations */
    double gpu_memory_utilization;
    uint64_t kv_cache_memory_bytes; /* > 0: this is the budget, the rest is ignored (vLLM) */
};

/* util x total - used_at_start - weights - load_other - activation_peak, in bytes (negative when
 * nothing is left), or kv_cache_memory_bytes when that is set. */
double sizing_dev_kv_budget(const struct sizing_dev *d);

/* Blocks of page_bytes (one block's K and V over all layers) that budget_bytes holds, capped at
 * SIZING_MAX_BLOCKS. 0 and *n_blocks, or -1 with vLLM's message in err: "No available memory for
 * the cache blocks. ..." when the budget is <= 0 (detail, if not NULL, is appended in
 * parentheses), or "To serve at least one request with the model's max seq len (N), ..." with
 * the estimated maximum model length when one max_model_len sequence does not fit. */
int sizing_kv_blocks(double budget_bytes, uint64_t page_bytes, int block_size, int max_model_len,
                     const char *detail, int *n_blocks, char *err, size_t err_len);

/* vLLM's CUDA graph capture sizes up to max_size (at most SIZING_GRAPH_MAX): 1, 2, 4, then 8 to
 * 248 in steps of 8, then 256 upwards in steps of 16. Writes at most out_cap of them in
 * ascending order; returns how many it wrote (0 when max_size < 1). */
int sizing_graph_sizes(int max_size, int *out, int out_cap);

#endif
