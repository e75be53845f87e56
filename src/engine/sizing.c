/* sizing: start-up sizing arithmetic and vLLM's error messages (see sizing.h). Pure functions:
 * no allocation, no logging, no device calls. */
#include "engine/sizing.h"

#include <inttypes.h>
#include <stdio.h>

#define GIB (1024.0 * 1024.0 * 1024.0)

int sizing_check_free(uint64_t total_bytes, uint64_t free_bytes, double util, char *err,
                      size_t err_len)
{
    double want = util * (double)total_bytes;
    if ((double)free_bytes >= want)
        return 0;
    snprintf(err, err_len,
             "Free memory on device (%.2f/%.2f GiB) on startup is less than desired GPU memory "
             "utilization (%g, %.2f GiB). Decrease GPU memory utilization or reduce GPU memory "
             "used by other processes.",
             (double)free_bytes / GIB, (double)total_bytes / GIB, util, want / GIB);
    return -1;
}

double sizing_dev_kv_budget(const struct sizing_dev *d)
{
    if (d->kv_cache_memory_bytes > 0)
        return (double)d->kv_cache_memory_bytes;
    return d->gpu_memory_utilization * (double)d->total_bytes - (double)d->used_at_start_bytes -
           (double)d->weight_bytes - (double)d->load_other_bytes -
           (double)d->activation_peak_bytes;
}

int sizing_kv_blocks(double budget_bytes, uint64_t page_bytes, int block_size, int max_model_len,
                     const char *detail, int *n_blocks, char *err, size_t err_len)
{
    if (budget_bytes <= 0 || page_bytes == 0 || block_size < 1) {
        snprintf(err, err_len,
                 "No available memory for the cache blocks. Try increasing "
                 "`gpu_memory_utilization` when initializing the engine.%s%s%s",
                 detail ? " (" : "", detail ? detail : "", detail ? ")" : "");
        return -1;
    }
    uint64_t n = (uint64_t)budget_bytes / page_bytes;
    if (n > SIZING_MAX_BLOCKS)
        n = SIZING_MAX_BLOCKS;
    uint64_t bs = (uint64_t)block_size;
    uint64_t need_blocks = ((uint64_t)(max_model_len > 0 ? max_model_len : 1) + bs - 1) / bs;
    if (n < need_blocks) {
        uint64_t need_bytes = need_blocks * page_bytes;
        snprintf(err, err_len,
                 "To serve at least one request with the model's max seq len (%d), (%.2f GiB KV "
                 "cache is needed, which is larger than the available KV cache memory (%.2f GiB). "
                 "Based on the available memory, the estimated maximum model length is %" PRIu64
                 ". Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
                 "initializing the engine. (needed %" PRIu64 " bytes, available %" PRIu64
                 " bytes)",
                 max_model_len, (double)need_bytes / GIB, budget_bytes / GIB, n * bs, need_bytes,
                 (uint64_t)budget_bytes);
        return -1;
    }
    *n_blocks = (int)n;
    return 0;
}

int sizing_graph_sizes(int max_size, int *out, int out_cap)
{
    if (max_size > SIZING_GRAPH_MAX)
        max_size = SIZING_GRAPH_MAX;
    int n = 0;
    for (int s = 1; s <= max_size && n < out_cap;) {
        out[n++] = s;
        s = s < 8 ? (s == 4 ? 8 : s * 2) : s < 256 ? s + 8 : s + 16;
    }
    return n;
}
