/* internal: struct dev_forward, shared by the files of the CUDA backend (weights.cu uploads into
 * it, forward_cuda.cu runs it). Not part of the contract (forward_dev.h). */
#ifndef SLM_CUDA_INTERNAL_CUH
#define SLM_CUDA_INTERNAL_CUH

extern "C" {
#include "engine/forward_dev.h"
}
#include "engine/cuda/dev_test.h"

#include "engine/cuda/ops.cuh"

#define DEV_MAX_GRAPHS 64
#define DEV_PART_ROWS 1024 /* (token, key range) pairs of split decode attention per step */

/* One layer's weights on the device. The q, k, v projections are one [q_dim + 2 kv_dim][n_embd]
 * matrix (one product), gate and up one [n_ff][2][n_embd] (gate row j, then up row j: the fused
 * SwiGLU epilogue finds each pair in one block). */
struct dev_layer {
    void *wqkv;       /* T */
    float *bqkv;      /* [q_dim + 2 kv_dim] f32, or NULL */
    void *wo;         /* [n_embd][q_dim] T */
    void *wgu;        /* [n_ff][2][n_embd] T */
    void *wdown;      /* [n_embd][n_ff] T */
    float *attn_norm; /* [n_embd] f32 */
    float *ffn_norm;
};

struct dev_weights {
    void *arena; /* one cudaMalloc holding every tensor */
    size_t arena_bytes;
    void *embd;               /* [n_vocab][n_embd] T */
    void *output;             /* [n_vocab][n_embd] T (== embd when tied) */
    float *output_norm;       /* [n_embd] */
    struct dev_layer *layers; /* [n_layer], host array */
};

struct dev_graph {
    int size;    /* decode tokens (padded) */
    int n_split; /* decode attention key ranges it was captured with */
    cudaGraph_t graph;
    cudaGraphExec_t exec;
};

/* Per-op timing of eager steps (dev_test_op_times): events recorded between the ops. */
struct dev_op_timer {
    cudaEvent_t *ev;
    int *kind; /* enum dev_test_op of the op that ends at ev[i]; -1 for the start */
    int n, cap;
};

struct dev_forward {
    const struct model *m;
    struct dev_forward_config cfg;
    struct ops_shape shape;
    int n_sm;
    int gemv_max_m; /* products of up to this many rows use the streaming GEMV (OPS_GEMV_MAX_M) */
    cudaStream_t st;
    cublasHandle_t blas;
    void *blas_ws;
    size_t blas_ws_bytes;
    struct dev_weights w;
    uint64_t used_after_weights;

    /* step workspace (device) */
    float *x;           /* [max_tokens][n_embd] residual */
    float *f32s;        /* [max_tokens][max(q_dim + 2 kv_dim, 2 n_ff)] q|k|v, then gate|up */
    void *a16;          /* [max_tokens][max(n_embd, n_ff)] T: normed input, then SwiGLU output */
    void *q16;          /* [max_tokens][q_dim] T */
    void *att16;        /* [max_tokens][q_dim] T */
    void *xl;           /* [max_logits][n_embd] T */
    float *logits;      /* [max_logits][n_vocab] */
    float *rope;        /* [max_ctx][head_dim]: cos then sin of each position's angles */
    float *part_o;      /* [DEV_PART_ROWS][n_head][head_dim] */
    float *part_ml;     /* [DEV_PART_ROWS][n_head][2] */
    int *part_cnt;      /* [DEV_PART_ROWS][n_head_kv] merge counters, zero between steps */
    float *logits_host; /* pinned [max_logits][n_vocab] */

    /* step inputs: one int32 buffer on each side (layout in forward_cuda.cu) */
    int32_t *in_host; /* pinned */
    int32_t *in_dev;
    size_t in_cap;  /* int32s */
    int max_blocks; /* block-table columns: ceil(max_ctx / block_size) */
    int bt_rows;    /* block-table rows: sequences per step */
    int max_tiles;
    int32_t *seq_row; /* host [seq_cap] batch sequence -> block-table row */
    int32_t *row_seq; /* host [bt_rows] */
    int seq_cap;

    /* KV pool: n_layer x {K, V} x kv_blocks x block_size x kv_dim T */
    void *kv_pool;
    int kv_blocks;
    size_t kv_bytes;

    struct dev_graph graphs[DEV_MAX_GRAPHS];
    int n_graphs;
    uint64_t graph_bytes;

    uint64_t n_eager, n_graph;
    struct dev_op_timer *timer; /* NULL except inside dev_test_op_times */
    char err[512];              /* the last failure of dev_forward_run */
};

/* ---- step inputs: one packed int32 buffer ---- */

/* Offsets (int32s) of the sections for a step of these counts. */
struct step_layout {
    size_t token, pos, slot, tok_row, ctx, short_tok, tile_i0, tile_n, logit_rows, bt, total;
};

static inline size_t up4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

static inline struct step_layout layout_of(int n, int n_short, int n_tiles, int n_logits, int rows,
                                           int stride)
{
    struct step_layout L;
    size_t o = 0;
    L.token = o, o += up4((size_t)n);
    L.pos = o, o += up4((size_t)n);
    L.slot = o, o += up4((size_t)n);
    L.tok_row = o, o += up4((size_t)n);
    L.ctx = o, o += up4((size_t)n);
    L.short_tok = o, o += up4((size_t)n_short);
    L.tile_i0 = o, o += up4((size_t)n_tiles);
    L.tile_n = o, o += up4((size_t)n_tiles);
    L.logit_rows = o, o += up4((size_t)n_logits);
    L.bt = o, o += up4((size_t)rows * (size_t)stride);
    L.total = o;
    return L;
}

void dev_graphs_free(struct dev_forward *d);

/* Records the end of an op of this kind when a timer is on (eager steps only). */
static inline void dev_mark(struct dev_forward *d, int kind)
{
    struct dev_op_timer *t = d->timer;
    if (t && t->n < t->cap) {
        cudaEventRecord(t->ev[t->n], d->st);
        t->kind[t->n++] = kind;
    }
}

/* weights.cu: uploads every tensor of d->m (d->shape set). Fills st. 0, or -1 with err. */
int dev_weights_upload(struct dev_forward *d, struct dev_load_stats *st, char *err, size_t err_len);
void dev_weights_free(struct dev_weights *w);

#endif
