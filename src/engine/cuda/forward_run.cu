/* forward_run: one step of the CUDA forward pass. Checks the batch as forward.c does, packs its
 * metadata into the pinned input buffer (one host-to-device copy), enqueues every layer's ops,
 * and copies the logits rows back. Decode-only steps replay a captured CUDA graph when one is
 * large enough; the profile run and the graph capture live here too, since they are steps. */
#include "engine/cuda/internal.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "util/clock.h"
#include "util/log.h"
}

/* The ops_step view of a packed buffer at dev. */
static struct ops_step step_view(const struct step_layout *L, const int32_t *dev, int n,
                                 int n_short, int n_tiles, int stride, int n_split)
{
    struct ops_step s;
    s.n_tokens = n;
    s.token = dev + L->token;
    s.pos = dev + L->pos;
    s.slot = dev + L->slot;
    s.tok_row = dev + L->tok_row;
    s.ctx_len = dev + L->ctx;
    s.bt = dev + L->bt;
    s.bt_stride = stride;
    s.n_short = n_short;
    s.short_tok = dev + L->short_tok;
    s.n_split = n_split;
    s.n_tiles = n_tiles;
    s.tile_i0 = dev + L->tile_i0;
    s.tile_n = dev + L->tile_n;
    return s;
}

/* Key ranges per (token, KV head) for the decode kernel: enough CTAs to fill the device twice,
 * within the partials buffer. A function of the token count only, so that an eager decode step
 * and the graph captured for the same size sum in the same order (bit-identical logits). */
static int pick_split(const struct dev_forward *d, int n_short)
{
    if (n_short <= 0)
        return 1;
    int per_tok = n_short * d->shape.n_head_kv;
    int ns = (2 * d->n_sm + per_tok - 1) / per_tok;
    if (ns > OPS_MAX_SPLIT)
        ns = OPS_MAX_SPLIT;
    if (ns * n_short > DEV_PART_ROWS)
        ns = DEV_PART_ROWS / n_short;
    return ns < 1 ? 1 : ns;
}

static void *kv_layer(const struct dev_forward *d, int l, int which)
{
    size_t per = (size_t)d->kv_blocks * d->cfg.block_size * d->shape.kv_dim * 2;
    return (unsigned char *)d->kv_pool + ((size_t)l * 2 + which) * per;
}

/* Every op of one step on d->st (eagerly, or into a graph being captured). */
static int enqueue_step(struct dev_forward *d, const struct ops_step *b, int n_logits,
                        const int32_t *logit_rows, char *err, size_t err_len)
{
    const struct model_config *c = &d->m->cfg;
    const struct ops_shape *s = &d->shape;
    const struct ops_ctx cx = {d->blas, d->st, d->n_sm, s, d->gemv_max_m};
    const int n = b->n_tokens, E = c->n_embd, qkv = s->q_dim + 2 * s->kv_dim;
    dev_mark(d, -1);
    ops_embed(s, d->w.embd, b->token, d->x, n, d->st);
    dev_mark(d, DEV_TEST_OP_EMBED);
    for (int l = 0; l < c->n_layer; l++) {
        const struct dev_layer *L = &d->w.layers[l];
        void *kp = kv_layer(d, l, 0), *vp = kv_layer(d, l, 1);
        if (ops_norm_gemm(&cx, d->x, NULL, L->attn_norm, d->a16, L->wqkv, d->f32s, n, qkv, err,
                          err_len) != 0)
            return -1;
        dev_mark(d, DEV_TEST_OP_QKV);
        ops_qkv_rope_store(s, d->f32s, L->bqkv, d->rope, b, d->q16, kp, vp, d->st);
        dev_mark(d, DEV_TEST_OP_ROPE);
        ops_attention(s, b, d->q16, kp, vp, d->att16, d->part_o, d->part_ml, d->part_cnt, d->st);
        dev_mark(d, DEV_TEST_OP_ATTN);
        if (ops_gemm(&cx, L->wo, d->att16, d->x, n, E, s->q_dim, 1.0f, err, err_len) != 0)
            return -1;
        dev_mark(d, DEV_TEST_OP_WO);
        if (ops_norm_gemm_swiglu(&cx, d->x, L->ffn_norm, d->a16, L->wgu, d->f32s, d->a16, n, err,
                                 err_len) != 0)
            return -1;
        dev_mark(d, DEV_TEST_OP_GATE_UP);
        if (ops_gemm(&cx, L->wdown, d->a16, d->x, n, E, c->n_ff, 1.0f, err, err_len) != 0)
            return -1;
        dev_mark(d, DEV_TEST_OP_DOWN);
    }
    if (n_logits > 0) {
        if (ops_norm_gemm(&cx, d->x, logit_rows, d->w.output_norm, d->xl, d->w.output, d->logits,
                          n_logits, c->n_vocab, err, err_len) != 0)
            return -1;
        dev_mark(d, DEV_TEST_OP_LOGITS);
    }
    return cu_ok(cudaGetLastError(), "forward step: kernel launch", err, err_len);
}

/* forward.c's batch_valid, plus the pool, the block size and the step tables' capacity. 1 if
 * the batch can run (*n_logits set), else 0 with the reason in d->err. */
static int batch_check(struct dev_forward *d, const struct kv_cache *kv,
                       const struct forward_batch *b, int *n_logits)
{
    const struct model_config *c = &d->m->cfg;
    char *err = d->err;
    const size_t n_err = sizeof d->err;
    if (!d->kv_pool) {
        snprintf(err, n_err, "no KV pool: dev_forward_kv_alloc first");
        return 0;
    }
    if (b->n_tokens < 1 || b->n_tokens > d->cfg.max_tokens || b->n_seqs < 1 || !b->seqs ||
        b->n_seqs > d->seq_cap) {
        snprintf(err, n_err, "batch of %d tokens, %d sequences (limits %d, %d)", b->n_tokens,
                 b->n_seqs, d->cfg.max_tokens, d->seq_cap);
        return 0;
    }
    if (kv->kv_dim != d->shape.kv_dim || kv->n_layer != c->n_layer ||
        kv->block_size != d->cfg.block_size || kv->n_blocks > d->kv_blocks) {
        snprintf(err, n_err,
                 "KV cache shape (%d layers, kv_dim %d, block %d, %d blocks) does not "
                 "match the device pool (%d, %d, %d, %d)",
                 kv->n_layer, kv->kv_dim, kv->block_size, kv->n_blocks, c->n_layer, d->shape.kv_dim,
                 d->cfg.block_size, d->kv_blocks);
        return 0;
    }
    int nl = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        int si = b->seq[i], p = b->pos[i];
        if (si < 0 || si >= b->n_seqs || !b->seqs[si] || b->token[i] < 0 ||
            b->token[i] >= c->n_vocab || p < 0 || p >= d->cfg.max_ctx ||
            p / kv->block_size >= b->seqs[si]->n_blocks) {
            snprintf(err, n_err, "batch token %d: sequence %d, token %d, position %d invalid", i,
                     si, b->token[i], p);
            return 0;
        }
        nl += b->wants_logits[i] ? 1 : 0;
    }
    if (nl > d->cfg.max_logits) {
        snprintf(err, n_err, "%d logits rows (limit %d)", nl, d->cfg.max_logits);
        return 0;
    }
    *n_logits = nl;
    return 1;
}

/* Block-table rows: batch sequence -> row (first appearance order). -1 if more than bt_rows. */
static int assign_rows(struct dev_forward *d, const struct forward_batch *b)
{
    for (int s = 0; s < b->n_seqs; s++)
        d->seq_row[s] = -1;
    int rows = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        int s = b->seq[i];
        if (d->seq_row[s] >= 0)
            continue;
        if (rows == d->bt_rows)
            return -1;
        d->seq_row[s] = rows;
        d->row_seq[rows++] = s;
    }
    return rows;
}

/* Copies n_cols entries of each row's block table (the rest untouched: never read). 0, or -1
 * if a block id lies outside the pool. */
static int fill_tables(struct dev_forward *d, const struct forward_batch *b, int32_t *bt, int rows,
                       int stride)
{
    for (int r = 0; r < rows; r++) {
        const struct kv_seq *sq = b->seqs[d->row_seq[r]];
        int nb = sq->n_blocks < stride ? sq->n_blocks : stride;
        for (int k = 0; k < nb; k++) {
            int32_t id = sq->blocks[k];
            if (id < 0 || id >= d->kv_blocks) {
                snprintf(d->err, sizeof d->err,
                         "block table entry %d = %d outside the pool of "
                         "%d blocks",
                         k, id, d->kv_blocks);
                return -1;
            }
            bt[(size_t)r * stride + k] = id;
        }
    }
    return 0;
}

/* Per-token columns common to both paths. */
static void fill_tokens(struct dev_forward *d, const struct forward_batch *b,
                        const struct step_layout *L, int stride)
{
    int32_t *h = d->in_host;
    const int bs = d->cfg.block_size;
    for (int i = 0; i < b->n_tokens; i++) {
        int row = d->seq_row[b->seq[i]], p = b->pos[i];
        h[L->token + i] = b->token[i];
        h[L->pos + i] = p;
        h[L->tok_row + i] = row;
        h[L->ctx + i] = p + 1;
        h[L->slot + i] = h[L->bt + (size_t)row * stride + p / bs] * bs + p % bs;
    }
}

/* Prefill runs (>= OPS_ATT_RUN_MIN consecutive positions of one sequence) become tiles, the
 * rest decode-kernel tokens. With fill, writes the lists into the layout's sections. */
static void plan_attention(const struct forward_batch *b, int32_t *h, const struct step_layout *L,
                           int *n_short, int *n_tiles)
{
    int ns = 0, nt = 0;
    for (int i = 0; i < b->n_tokens;) {
        int j = i + 1;
        while (j < b->n_tokens && b->seq[j] == b->seq[i] && b->pos[j] == b->pos[j - 1] + 1)
            j++;
        if (j - i >= OPS_ATT_RUN_MIN) {
            for (int q = i; q < j; q += OPS_ATT_TILE_Q, nt++) {
                if (L) {
                    h[L->tile_i0 + nt] = q;
                    h[L->tile_n + nt] = j - q < OPS_ATT_TILE_Q ? j - q : OPS_ATT_TILE_Q;
                }
            }
        } else {
            for (int k = i; k < j; k++, ns++)
                if (L)
                    h[L->short_tok + ns] = k;
        }
        i = j;
    }
    *n_short = ns;
    *n_tiles = nt;
}

static int copy_back(struct dev_forward *d, int n_logits)
{
    size_t bytes = (size_t)n_logits * d->m->cfg.n_vocab * sizeof(float);
    if (bytes &&
        cu_ok(cudaMemcpyAsync(d->logits_host, d->logits, bytes, cudaMemcpyDeviceToHost, d->st),
              "cudaMemcpyAsync (logits)", d->err, sizeof d->err) != 0)
        return -1;
    dev_mark(d, DEV_TEST_OP_COPY);
    return cu_ok(cudaStreamSynchronize(d->st), "forward step", d->err, sizeof d->err);
}

static int run_eager(struct dev_forward *d, const struct forward_batch *b, int n_logits)
{
    const int n = b->n_tokens, bs = d->cfg.block_size;
    int rows = assign_rows(d, b);
    if (rows < 0) {
        snprintf(d->err, sizeof d->err, "more than %d sequences in one step", d->bt_rows);
        return -1;
    }
    int stride = 1;
    for (int i = 0; i < n; i++)
        stride = b->pos[i] / bs + 1 > stride ? b->pos[i] / bs + 1 : stride;
    int n_short, n_tiles;
    plan_attention(b, NULL, NULL, &n_short, &n_tiles);
    struct step_layout L = layout_of(n, n_short, n_tiles, n_logits, rows, stride);
    int32_t *h = d->in_host;
    if (fill_tables(d, b, h + L.bt, rows, stride) != 0)
        return -1;
    fill_tokens(d, b, &L, stride);
    plan_attention(b, h, &L, &n_short, &n_tiles);
    for (int i = 0, r = 0; i < n; i++)
        if (b->wants_logits[i])
            h[L.logit_rows + r++] = i;
    if (cu_ok(cudaMemcpyAsync(d->in_dev, h, L.total * 4, cudaMemcpyHostToDevice, d->st),
              "cudaMemcpyAsync (step inputs)", d->err, sizeof d->err) != 0)
        return -1;
    struct ops_step v =
        step_view(&L, d->in_dev, n, n_short, n_tiles, stride, pick_split(d, n_short));
    if (enqueue_step(d, &v, n_logits, d->in_dev + L.logit_rows, d->err, sizeof d->err) != 0)
        return -1;
    d->n_eager++;
    return copy_back(d, n_logits);
}

/* The layout a graph of size S was captured with: every row a decode token of its own. */
static struct step_layout graph_layout(const struct dev_forward *d, int S)
{
    return layout_of(S, S, 0, S, S, d->max_blocks);
}

/* Pads rows [n, S): token 0, no KV write, no keys. */
static void fill_padding(struct dev_forward *d, const struct step_layout *L, int n, int S)
{
    int32_t *h = d->in_host;
    for (int i = 0; i < S; i++) {
        h[L->short_tok + i] = i;
        h[L->logit_rows + i] = i;
        if (i < n)
            continue;
        h[L->token + i] = 0;
        h[L->pos + i] = 0;
        h[L->slot + i] = -1;
        h[L->tok_row + i] = i;
        h[L->ctx + i] = 0;
    }
}

/* The graph for this decode-only step, or NULL (then the step runs eagerly). */
static const struct dev_graph *graph_for(struct dev_forward *d, const struct forward_batch *b,
                                         int n_logits)
{
    const int n = b->n_tokens;
    if (d->n_graphs == 0 || d->timer || n_logits != n || n > d->graphs[d->n_graphs - 1].size)
        return NULL;
    for (int s = 0; s < b->n_seqs; s++)
        d->seq_row[s] = -1;
    for (int i = 0; i < n; i++) {
        if (d->seq_row[b->seq[i]] >= 0)
            return NULL; /* two tokens of one sequence: not a decode-only step */
        d->seq_row[b->seq[i]] = i;
        d->row_seq[i] = b->seq[i];
    }
    for (int g = 0; g < d->n_graphs; g++)
        if (d->graphs[g].size >= n)
            return &d->graphs[g];
    return NULL;
}

static int run_graph(struct dev_forward *d, const struct dev_graph *g,
                     const struct forward_batch *b)
{
    const int n = b->n_tokens, S = g->size;
    struct step_layout L = graph_layout(d, S);
    if (fill_tables(d, b, d->in_host + L.bt, n, d->max_blocks) != 0)
        return -1;
    fill_tokens(d, b, &L, d->max_blocks);
    fill_padding(d, &L, n, S);
    /* rows >= n of the block tables are never read: copy up to the last real row */
    size_t ints = L.bt + (size_t)n * d->max_blocks;
    if (cu_ok(cudaMemcpyAsync(d->in_dev, d->in_host, ints * 4, cudaMemcpyHostToDevice, d->st),
              "cudaMemcpyAsync (graph inputs)", d->err, sizeof d->err) != 0 ||
        cu_ok(cudaGraphLaunch(g->exec, d->st), "cudaGraphLaunch", d->err, sizeof d->err) != 0)
        return -1;
    d->n_graph++;
    return copy_back(d, n);
}

enum forward_status dev_forward_run(struct dev_forward *d, const struct kv_cache *kv,
                                    const struct forward_batch *b, int *n_logits_out)
{
    int n_logits = 0;
    *n_logits_out = 0;
    d->err[0] = '\0';
    if (!batch_check(d, kv, b, &n_logits))
        return FORWARD_ERR_BATCH;
    const struct dev_graph *g = graph_for(d, b, n_logits);
    int rc = g ? run_graph(d, g, b) : run_eager(d, b, n_logits);
    if (rc != 0) {
        log_error("cuda", "forward step failed: %s", d->err);
        return FORWARD_ERR_BATCH;
    }
    *n_logits_out = n_logits;
    return FORWARD_OK;
}

/* ---- graphs ---- */

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Captures one decode step of size S (inputs all padding; replays fill them). */
static int capture_one(struct dev_forward *d, int S, struct dev_graph *g, char *err, size_t err_len)
{
    struct step_layout L = graph_layout(d, S);
    memset(d->in_host, 0, L.total * 4);
    fill_padding(d, &L, 0, S);
    int ns = pick_split(d, S);
    struct ops_step v = step_view(&L, d->in_dev, S, S, 0, d->max_blocks, ns);
    const int32_t *rows = d->in_dev + L.logit_rows;
    if (cu_ok(cudaMemcpyAsync(d->in_dev, d->in_host, L.total * 4, cudaMemcpyHostToDevice, d->st),
              "cudaMemcpyAsync (graph inputs)", err, err_len) != 0 ||
        enqueue_step(d, &v, S, rows, err, err_len) != 0 || /* warm-up: cuBLAS picks kernels */
        cu_ok(cudaStreamSynchronize(d->st), "graph warm-up step", err, err_len) != 0)
        return -1;
    g->size = S;
    g->n_split = ns;
    if (cu_ok(cudaStreamBeginCapture(d->st, cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture", err, err_len) != 0)
        return -1;
    int rc = enqueue_step(d, &v, S, rows, err, err_len);
    cudaError_t e = cudaStreamEndCapture(d->st, &g->graph);
    if (rc != 0)
        return -1;
    if (cu_ok(e, "cudaStreamEndCapture", err, err_len) != 0 ||
        cu_ok(cudaGraphInstantiate(&g->exec, g->graph, 0), "cudaGraphInstantiate", err, err_len) !=
            0 ||
        cu_ok(cudaGraphUpload(g->exec, d->st), "cudaGraphUpload", err, err_len) != 0)
        return -1;
    return 0;
}

int dev_forward_capture_graphs(struct dev_forward *d, const int *sizes, int n_sizes, double *secs,
                               char *err, size_t err_len)
{
    *secs = 0;
    dev_graphs_free(d);
    if (n_sizes == 0)
        return 0;
    if (!d->kv_pool) {
        snprintf(err, err_len, "capture graphs: no KV pool (dev_forward_kv_alloc first)");
        return -1;
    }
    int sorted[DEV_MAX_GRAPHS], n = 0;
    int limit = d->cfg.max_tokens < d->cfg.max_logits ? d->cfg.max_tokens : d->cfg.max_logits;
    limit = limit < d->bt_rows ? limit : d->bt_rows;
    for (int i = 0; i < n_sizes; i++) {
        if (sizes[i] < 1 || sizes[i] > limit || n == DEV_MAX_GRAPHS) {
            snprintf(err, err_len,
                     "capture graphs: size %d outside 1..%d (max_tokens, "
                     "max_logits, max_seqs) or more than %d sizes",
                     sizes[i], limit, DEV_MAX_GRAPHS);
            return -1;
        }
        sorted[n++] = sizes[i];
    }
    qsort(sorted, (size_t)n, sizeof(int), cmp_int);
    mono_ns t0 = clock_now_ns();
    uint64_t used0 = cu_used_bytes();
    for (int i = 0; i < n; i++) {
        if (d->n_graphs > 0 && d->graphs[d->n_graphs - 1].size == sorted[i])
            continue;
        struct dev_graph *g = &d->graphs[d->n_graphs];
        memset(g, 0, sizeof *g);
        d->n_graphs++; /* counted at once, so dev_graphs_free releases a half-made one */
        if (capture_one(d, sorted[i], g, err, err_len) != 0) {
            dev_graphs_free(d);
            return -1;
        }
    }
    uint64_t used1 = cu_used_bytes();
    d->graph_bytes = used1 > used0 ? used1 - used0 : 0;
    *secs = (double)(clock_now_ns() - t0) / 1e9;
    return 0;
}

/* ---- the profile run ---- */

uint64_t dev_forward_profile(struct dev_forward *d, char *err, size_t err_len)
{
    const int n = d->cfg.max_tokens, bs = d->cfg.block_size, mc = d->cfg.max_ctx;
    const int n_seq = (n + mc - 1) / mc, per_seq = (mc + bs - 1) / bs;
    const int n_blocks = n_seq * per_seq;
    void *saved_pool = d->kv_pool;
    int saved_blocks = d->kv_blocks;
    uint64_t peak = 0;
    int32_t *ints = (int32_t *)calloc((size_t)n * 3 + (size_t)n_blocks, sizeof(int32_t));
    uint8_t *wants = (uint8_t *)calloc((size_t)n, 1);
    struct kv_seq *seqs = (struct kv_seq *)calloc((size_t)n_seq, sizeof *seqs);
    struct kv_seq **sp = (struct kv_seq **)calloc((size_t)n_seq, sizeof *sp);
    void *pool = NULL;
    if (!ints || !wants || !seqs || !sp) {
        snprintf(err, err_len, "profile: out of host memory");
        goto done;
    }
    {
        int32_t *tok = ints, *pos = ints + n, *seq = ints + 2 * n, *blocks = ints + 3 * n;
        for (int k = 0; k < n_blocks; k++)
            blocks[k] = k;
        for (int s = 0; s < n_seq; s++) {
            seqs[s].blocks = blocks + (size_t)s * per_seq;
            seqs[s].n_blocks = seqs[s].max_blocks = per_seq;
            sp[s] = &seqs[s];
        }
        for (int i = 0; i < n; i++) {
            tok[i] = i % d->m->cfg.n_vocab;
            pos[i] = i % mc;
            seq[i] = i / mc;
            wants[i] = i >= n - d->cfg.max_logits;
        }
        size_t bytes = (size_t)n_blocks * bs * dev_forward_kv_bytes_per_token(d);
        if (cu_alloc(&pool, bytes, "the profile run's scratch KV blocks", err, err_len) != 0)
            goto done;
        d->kv_pool = pool;
        d->kv_blocks = n_blocks;
        struct forward_batch b = {n, tok, pos, seq, wants, n_seq, sp};
        int nl = 0;
        for (int i = 0; i < n; i++)
            nl += wants[i];
        if (run_eager(d, &b, nl) != 0) {
            snprintf(err, err_len, "profile run: %s", d->err);
            goto done;
        }
        d->n_eager--; /* not a served step */
        uint64_t used = cu_used_bytes();
        uint64_t base = d->used_after_weights + bytes;
        peak = used > base ? used - base : 1;
    }
done:
    d->kv_pool = saved_pool;
    d->kv_blocks = saved_blocks;
    if (pool)
        cudaFree(pool);
    free(ints);
    free(wants);
    free(seqs);
    free(sp);
    return peak;
}

/* ---- dev_test_op_times (dev_test.h) ---- */

const char *dev_test_op_name(int kind)
{
    static const char *const names[DEV_TEST_OP_COUNT] = {"embedding",
                                                         "rmsnorm + q/k/v product",
                                                         "bias + rope + kv store",
                                                         "attention",
                                                         "o product + residual",
                                                         "rmsnorm + gate/up product + swiglu",
                                                         "down product + residual",
                                                         "final norm + logits",
                                                         "logits to host"};
    return kind >= 0 && kind < DEV_TEST_OP_COUNT ? names[kind] : "?";
}

int dev_test_op_times(struct dev_forward *d, const struct kv_cache *kv,
                      const struct forward_batch *b, double *ms, char *err, size_t err_len)
{
    struct dev_op_timer t;
    t.cap = d->m->cfg.n_layer * 10 + 8;
    t.n = 0;
    t.ev = (cudaEvent_t *)calloc((size_t)t.cap, sizeof *t.ev);
    t.kind = (int *)calloc((size_t)t.cap, sizeof *t.kind);
    int rc = -1, made = 0;
    for (int k = 0; k < DEV_TEST_OP_COUNT; k++)
        ms[k] = 0;
    if (!t.ev || !t.kind) {
        snprintf(err, err_len, "out of host memory");
        goto done;
    }
    for (; made < t.cap; made++)
        if (cu_ok(cudaEventCreate(&t.ev[made]), "cudaEventCreate", err, err_len) != 0)
            goto done;
    d->timer = &t;
    {
        int nl = 0;
        enum forward_status fs = dev_forward_run(d, kv, b, &nl);
        d->timer = NULL;
        if (fs != FORWARD_OK) {
            snprintf(err, err_len, "%s", d->err);
            goto done;
        }
    }
    for (int i = 1; i < t.n; i++) {
        float e = 0;
        if (cu_ok(cudaEventElapsedTime(&e, t.ev[i - 1], t.ev[i]), "cudaEventElapsedTime", err,
                  err_len) != 0)
            goto done;
        ms[t.kind[i]] += e;
    }
    rc = 0;
done:
    d->timer = NULL;
    for (int k = 0; k < made; k++)
        cudaEventDestroy(t.ev[k]);
    free(t.ev);
    free(t.kind);
    return rc;
}

int dev_test_set_gemv_max_rows(struct dev_forward *d, int m)
{
    int old = d->gemv_max_m;
    d->gemv_max_m = m < 0 ? 0 : m > OPS_GEMV_MAX_M ? OPS_GEMV_MAX_M : m;
    return old;
}
