/* forward_cuda: forward_dev.h on one CUDA device. A step packs the batch's metadata (tokens,
 * positions, KV slots, block tables, attention plan) into one pinned int32 buffer, copies it to
 * the device in one transfer, enqueues the layers' ops (ops.cuh) on one stream, and copies the
 * logits rows back into pinned memory. Decode-only steps can instead replay a CUDA graph captured
 * for a padded batch size (static input buffer: the same packed layout for that size; padding
 * rows have slot -1 and context length 0, so they neither write nor read the KV pool).
 * It does no scheduling, block allocation or sampling (kv.c and sched.c on the host). */
#include "engine/cuda/internal.cuh"

#include <math.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "util/clock.h"
#include "util/log.h"
}

#define BLAS_WS_BYTES ((size_t)32 << 20)

int dev_probe(int ordinal, struct dev_props *p, char *err, size_t err_len)
{
    memset(p, 0, sizeof *p);
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(err, err_len, "no CUDA device: %s",
                 e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
        (void)cudaGetLastError();
        return -1;
    }
    if (ordinal < 0 || ordinal >= n) {
        snprintf(err, err_len, "no CUDA device %d (this machine has %d)", ordinal, n);
        return -1;
    }
    struct cudaDeviceProp prop;
    if (cu_ok(cudaGetDeviceProperties(&prop, ordinal), "cudaGetDeviceProperties", err, err_len) ||
        cu_ok(cudaSetDevice(ordinal), "cudaSetDevice", err, err_len) != 0)
        return -1;
    size_t free_b = 0, total_b = 0;
    if (cu_ok(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo", err, err_len) != 0)
        return -1;
    snprintf(p->name, sizeof p->name, "%s", prop.name);
    p->total_bytes = total_b;
    p->free_bytes = free_b;
    p->cc_major = prop.major;
    p->cc_minor = prop.minor;
    p->ordinal = ordinal;
    return 0;
}

/* ---- creation ---- */

static enum dev_dtype compute_type(const struct model *m)
{
    if (m->file_dtype == MODEL_DTYPE_F16)
        return DEV_DTYPE_F16;
    if (m->file_dtype == MODEL_DTYPE_F32 && m->cfg.n_layer > 0 &&
        m->w.layers[0].mq.type == 1 /* GGML_TYPE_F16 */ && m->w.m_embd.type == 1)
        return DEV_DTYPE_F16;
    return DEV_DTYPE_BF16;
}

/* cos and sin of pos * theta^(-2j/head_dim) for every position, in f64 as forward.c computes
 * them, rounded to f32. */
static int upload_rope(struct dev_forward *d, char *err, size_t err_len)
{
    const struct model_config *c = &d->m->cfg;
    const int hd = c->head_dim, half = hd / 2;
    float *t = (float *)malloc((size_t)d->cfg.max_ctx * hd * sizeof(float));
    double *f = (double *)malloc((size_t)half * sizeof(double));
    int rc = -1;
    if (!t || !f) {
        snprintf(err, err_len, "out of host memory for the RoPE table");
        goto done;
    }
    for (int j = 0; j < half; j++)
        f[j] = pow((double)c->rope_theta, -2.0 * j / (double)hd);
    for (int p = 0; p < d->cfg.max_ctx; p++)
        for (int j = 0; j < half; j++) {
            double a = (double)p * f[j];
            t[(size_t)p * hd + j] = (float)cos(a);
            t[(size_t)p * hd + half + j] = (float)sin(a);
        }
    rc = cu_ok(
        cudaMemcpy(d->rope, t, (size_t)d->cfg.max_ctx * hd * sizeof(float), cudaMemcpyHostToDevice),
        "cudaMemcpy (RoPE table)", err, err_len);
done:
    free(t);
    free(f);
    return rc;
}

static int alloc_workspace(struct dev_forward *d, char *err, size_t err_len)
{
    const struct model_config *c = &d->m->cfg;
    const struct ops_shape *s = &d->shape;
    const size_t T = (size_t)d->cfg.max_tokens, L = (size_t)d->cfg.max_logits;
    size_t wide = (size_t)s->q_dim + 2 * (size_t)s->kv_dim;
    if (wide < 2 * (size_t)c->n_ff)
        wide = 2 * (size_t)c->n_ff;
    size_t a16 = (size_t)(c->n_embd > c->n_ff ? c->n_embd : c->n_ff);
    d->max_blocks = (d->cfg.max_ctx + d->cfg.block_size - 1) / d->cfg.block_size;
    int prof_rows = (d->cfg.max_tokens + d->cfg.max_ctx - 1) / d->cfg.max_ctx;
    d->bt_rows = d->cfg.max_seqs > prof_rows ? d->cfg.max_seqs : prof_rows;
    d->max_tiles = d->cfg.max_tokens / 8 + 1;
    struct step_layout lay = layout_of(d->cfg.max_tokens, d->cfg.max_tokens, d->max_tiles,
                                       d->cfg.max_logits, d->bt_rows, d->max_blocks);
    d->in_cap = lay.total;
    d->seq_cap = d->bt_rows > d->cfg.max_tokens ? d->bt_rows : d->cfg.max_tokens;
    d->seq_row = (int32_t *)calloc((size_t)d->seq_cap, sizeof(int32_t));
    d->row_seq = (int32_t *)calloc((size_t)d->bt_rows, sizeof(int32_t));
    if (!d->seq_row || !d->row_seq) {
        snprintf(err, err_len, "out of host memory for the step tables");
        return -1;
    }
    if (cu_alloc((void **)&d->x, T * c->n_embd * 4, "the residual stream", err, err_len) ||
        cu_alloc((void **)&d->f32s, T * wide * 4, "the f32 activations", err, err_len) ||
        cu_alloc(&d->a16, T * a16 * 2, "the 16-bit activations", err, err_len) ||
        cu_alloc(&d->q16, T * s->q_dim * 2, "the queries", err, err_len) ||
        cu_alloc(&d->att16, T * s->q_dim * 2, "the attention output", err, err_len) ||
        cu_alloc(&d->xl, L * c->n_embd * 2, "the logits inputs", err, err_len) ||
        cu_alloc((void **)&d->logits, L * c->n_vocab * 4, "the logits", err, err_len) ||
        cu_alloc((void **)&d->rope, (size_t)d->cfg.max_ctx * c->head_dim * 4, "the RoPE table", err,
                 err_len) ||
        cu_alloc((void **)&d->part_o, (size_t)DEV_PART_ROWS * s->q_dim * 4,
                 "the split-attention partials", err, err_len) ||
        cu_alloc((void **)&d->part_ml, (size_t)DEV_PART_ROWS * c->n_head * 2 * 4,
                 "the split-attention partials", err, err_len) ||
        cu_alloc((void **)&d->part_cnt, (size_t)DEV_PART_ROWS * c->n_head_kv * 4,
                 "the split-attention counters", err, err_len) ||
        cu_alloc((void **)&d->in_dev, d->in_cap * 4, "the step inputs", err, err_len) ||
        cu_alloc(&d->blas_ws, BLAS_WS_BYTES, "the cuBLAS workspace", err, err_len) ||
        cu_alloc_host((void **)&d->in_host, d->in_cap * 4, "the step inputs", err, err_len) ||
        cu_alloc_host((void **)&d->logits_host, L * c->n_vocab * 4, "the host logits", err,
                      err_len) != 0)
        return -1;
    d->blas_ws_bytes = BLAS_WS_BYTES;
    if (cu_ok(cudaMemset(d->part_cnt, 0, (size_t)DEV_PART_ROWS * c->n_head_kv * 4),
              "cudaMemset (split-attention counters)", err, err_len) != 0)
        return -1;
    return upload_rope(d, err, err_len);
}

static int setup_context(struct dev_forward *d, char *err, size_t err_len)
{
    struct cudaDeviceProp prop;
    if (cu_ok(cudaSetDevice(d->cfg.ordinal), "cudaSetDevice", err, err_len) ||
        cu_ok(cudaGetDeviceProperties(&prop, d->cfg.ordinal), "cudaGetDeviceProperties", err,
              err_len) ||
        cu_ok(cudaStreamCreateWithFlags(&d->st, cudaStreamNonBlocking), "cudaStreamCreate", err,
              err_len) ||
        cublas_ok(cublasCreate(&d->blas), "cublasCreate", err, err_len) ||
        cublas_ok(cublasSetStream(d->blas, d->st), "cublasSetStream", err, err_len))
        return -1;
    d->n_sm = prop.multiProcessorCount;
    d->gemv_max_m = OPS_GEMV_MAX_M;
    return 0;
}

struct dev_forward *dev_forward_new(const struct model *m, const struct dev_forward_config *cfg,
                                    struct dev_load_stats *st, char *err, size_t err_len)
{
    const struct model_config *c = &m->cfg;
    struct dev_load_stats st_local;
    if (!st)
        st = &st_local;
    memset(st, 0, sizeof *st);
    if (ops_supported(c->head_dim, c->n_head, c->n_head_kv, err, err_len) != 0)
        return NULL;
    if (cfg->max_tokens < 1 || cfg->max_logits < 1 || cfg->max_ctx < 1 || cfg->block_size < 1 ||
        cfg->max_seqs < 1) {
        snprintf(err, err_len,
                 "dev_forward_new: max_tokens %d, max_logits %d, max_ctx %d, "
                 "max_seqs %d, block_size %d must all be positive",
                 cfg->max_tokens, cfg->max_logits, cfg->max_ctx, cfg->max_seqs, cfg->block_size);
        return NULL;
    }
    struct dev_forward *d = (struct dev_forward *)calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, err_len, "out of host memory");
        return NULL;
    }
    d->m = m;
    d->cfg = *cfg;
    struct ops_shape *s = &d->shape;
    s->dtype = compute_type(m);
    s->n_embd = c->n_embd;
    s->n_head = c->n_head;
    s->n_head_kv = c->n_head_kv;
    s->head_dim = c->head_dim;
    s->n_ff = c->n_ff;
    s->q_dim = c->n_head * c->head_dim;
    s->kv_dim = c->n_head_kv * c->head_dim;
    s->block_size = cfg->block_size;
    s->norm_eps = c->norm_eps;
    s->rope_neox = c->arch == MODEL_ARCH_QWEN2;
    if (setup_context(d, err, err_len) != 0 || dev_weights_upload(d, st, err, err_len) != 0)
        goto fail;
    d->used_after_weights = cu_used_bytes();
    if (alloc_workspace(d, err, err_len) != 0 ||
        cublas_ok(cublasSetWorkspace(d->blas, d->blas_ws, d->blas_ws_bytes), "cublasSetWorkspace",
                  err, err_len) != 0)
        goto fail;
    return d;
fail:
    dev_forward_free(d);
    return NULL;
}

void dev_graphs_free(struct dev_forward *d)
{
    for (int i = 0; i < d->n_graphs; i++) {
        if (d->graphs[i].exec)
            cudaGraphExecDestroy(d->graphs[i].exec);
        if (d->graphs[i].graph)
            cudaGraphDestroy(d->graphs[i].graph);
    }
    d->n_graphs = 0;
    d->graph_bytes = 0;
}

void dev_forward_free(struct dev_forward *d)
{
    if (!d)
        return;
    if (d->st)
        (void)cudaStreamSynchronize(d->st);
    dev_graphs_free(d);
    void *dev[] = {d->x,    d->f32s,   d->a16,     d->q16,      d->att16,  d->xl,      d->logits,
                   d->rope, d->part_o, d->part_ml, d->part_cnt, d->in_dev, d->blas_ws, d->kv_pool};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i])
            cudaFree(dev[i]);
    if (d->in_host)
        cudaFreeHost(d->in_host);
    if (d->logits_host)
        cudaFreeHost(d->logits_host);
    dev_weights_free(&d->w);
    if (d->blas)
        cublasDestroy(d->blas);
    if (d->st)
        cudaStreamDestroy(d->st);
    free(d->seq_row);
    free(d->row_seq);
    free(d);
}

uint64_t dev_forward_kv_bytes_per_token(const struct dev_forward *d)
{
    return 2ull * (uint64_t)d->m->cfg.n_layer * (uint64_t)d->shape.kv_dim * 2ull;
}

int dev_forward_kv_alloc(struct dev_forward *d, int n_blocks, char *err, size_t err_len)
{
    if (n_blocks < 1) {
        snprintf(err, err_len, "dev_forward_kv_alloc: %d blocks", n_blocks);
        return -1;
    }
    if (d->kv_pool) { /* graphs hold the old pool's address */
        (void)cudaStreamSynchronize(d->st);
        dev_graphs_free(d);
        cudaFree(d->kv_pool);
        d->kv_pool = NULL;
        d->kv_blocks = 0;
        d->kv_bytes = 0;
    }
    uint64_t bytes =
        (uint64_t)n_blocks * (uint64_t)d->cfg.block_size * dev_forward_kv_bytes_per_token(d);
    char what[160];
    snprintf(what, sizeof what, "the KV pool (%d blocks x %d tokens x %llu bytes per token)",
             n_blocks, d->cfg.block_size, (unsigned long long)dev_forward_kv_bytes_per_token(d));
    if (cu_alloc(&d->kv_pool, (size_t)bytes, what, err, err_len) != 0)
        return -1;
    if (cu_ok(cudaMemsetAsync(d->kv_pool, 0, (size_t)bytes, d->st), "cudaMemset (KV pool)", err,
              err_len) != 0 ||
        cu_ok(cudaStreamSynchronize(d->st), "cudaStreamSynchronize", err, err_len) != 0) {
        cudaFree(d->kv_pool);
        d->kv_pool = NULL;
        return -1;
    }
    d->kv_blocks = n_blocks;
    d->kv_bytes = (size_t)bytes;
    return 0;
}

void dev_forward_counts(const struct dev_forward *d, uint64_t *eager_steps, uint64_t *graph_steps)
{
    *eager_steps = d->n_eager;
    *graph_steps = d->n_graph;
}

float *dev_forward_logits(struct dev_forward *d, int r)
{
    return d->logits_host + (size_t)r * (size_t)d->m->cfg.n_vocab;
}

uint64_t dev_forward_graph_bytes(const struct dev_forward *d)
{
    return d->graph_bytes;
}

const char *dev_forward_last_error(const struct dev_forward *d)
{
    return d->err;
}
