/* forward_dev_none: forward_dev.h in a build without the CUDA backend (plain `make`). Every
 * entry point fails with the line that says how to get the backend; `make CUDA=1` replaces this
 * file with src/engine/cuda/. */
#include <stdio.h>

#include "engine/forward_dev.h"

#define NO_CUDA "this slmprobe was built without the CUDA backend: rebuild with `make CUDA=1` " \
                "(needs nvcc and cuBLAS)"

int dev_probe(int ordinal, struct dev_props *p, char *err, size_t err_len)
{
    (void)ordinal;
    (void)p;
    snprintf(err, err_len, "%s", NO_CUDA);
    return -1;
}

struct dev_forward *dev_forward_new(const struct model *m, const struct dev_forward_config *cfg,
                                    struct dev_load_stats *st, char *err, size_t err_len)
{
    (void)m;
    (void)cfg;
    (void)st;
    snprintf(err, err_len, "%s", NO_CUDA);
    return NULL;
}

void dev_forward_free(struct dev_forward *d) { (void)d; }

uint64_t dev_forward_profile(struct dev_forward *d, char *err, size_t err_len)
{
    (void)d;
    snprintf(err, err_len, "%s", NO_CUDA);
    return 0;
}

uint64_t dev_forward_kv_bytes_per_token(const struct dev_forward *d)
{
    (void)d;
    return 0;
}

int dev_forward_kv_alloc(struct dev_forward *d, int n_blocks, char *err, size_t err_len)
{
    (void)d;
    (void)n_blocks;
    snprintf(err, err_len, "%s", NO_CUDA);
    return -1;
}

int dev_forward_capture_graphs(struct dev_forward *d, const int *sizes, int n_sizes, double *secs,
                               char *err, size_t err_len)
{
    (void)d;
    (void)sizes;
    (void)n_sizes;
    *secs = 0;
    snprintf(err, err_len, "%s", NO_CUDA);
    return -1;
}

uint64_t dev_forward_graph_bytes(const struct dev_forward *d)
{
    (void)d;
    return 0;
}

enum forward_status dev_forward_run(struct dev_forward *d, const struct kv_cache *kv,
                                    const struct forward_batch *b, int *n_logits_out)
{
    (void)d;
    (void)kv;
    (void)b;
    *n_logits_out = 0;
    return FORWARD_ERR_BATCH;
}

float *dev_forward_logits(struct dev_forward *d, int r)
{
    (void)d;
    (void)r;
    return NULL;
}

const char *dev_forward_last_error(const struct dev_forward *d)
{
    (void)d;
    return NO_CUDA;
}

void dev_forward_counts(const struct dev_forward *d, uint64_t *eager_steps, uint64_t *graph_steps)
{
    (void)d;
    *eager_steps = 0;
    *graph_steps = 0;
}
