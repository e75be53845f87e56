/* weights: the upload of a model's tensors into one device arena. A matrix already stored in
 * the compute type (F16 for an f16 model, BF16 for a bf16 one) is copied as stored; any other
 * type (F32, F16 into a bf16 model, the block types of quant.h) is turned into f32 rows on the
 * host (quant_dequantize_row) and converted to the 16-bit type on the device. Norms and biases
 * stay f32. Transfers go through two pinned staging buffers so that the host's conversion of one
 * chunk overlaps the copy of the previous one. It does not touch the KV pool or the workspace. */
#include "engine/cuda/internal.cuh"

#include <stdio.h>
#include <string.h>

extern "C" {
#include "engine/gguf.h"
#include "engine/quant.h"
#include "util/clock.h"
}

#define STAGE_BYTES ((size_t)64 << 20)
#define ARENA_ALIGN 256

struct uploader {
    struct dev_forward *d;
    void *host[2];   /* pinned */
    float *dev[2];   /* f32 rows before conversion */
    cudaEvent_t done[2];
    int k;           /* staging buffer of the next chunk */
    uint64_t host_bytes;
    char *err;
    size_t err_len;
};

static size_t align_up(size_t n) { return (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1); }

/* Takes the next staging buffer, waiting until its previous copy has left it. */
static int stage_next(struct uploader *u, int *k)
{
    *k = u->k;
    u->k ^= 1;
    return cu_ok(cudaEventSynchronize(u->done[*k]), "upload: waiting for a staging buffer",
                 u->err, u->err_len);
}

/* rows x n_in values of type at src -> T at dst (device). */
static int upload_matrix(struct uploader *u, const void *src, uint32_t type, int rows, int n_in,
                         void *dst)
{
    const enum dev_dtype dt = u->d->shape.dtype;
    const int as_stored = (type == GGML_TYPE_F16 && dt == DEV_DTYPE_F16) ||
                          (type == GGML_TYPE_BF16 && dt == DEV_DTYPE_BF16);
    const size_t rb = quant_row_bytes(type, (size_t)n_in);
    if (rb == 0) {
        snprintf(u->err, u->err_len, "upload: tensor type %u with rows of %d values is not "
                 "supported (%s)", type, n_in, quant_supported_list());
        return -1;
    }
    const size_t out_row = as_stored ? 2 * (size_t)n_in : 4 * (size_t)n_in;
    int per = (int)(STAGE_BYTES / out_row);
    per = per < 1 ? 1 : per;
    for (int r0 = 0; r0 < rows; r0 += per) {
        int nr = rows - r0 < per ? rows - r0 : per, k;
        if (stage_next(u, &k) != 0)
            return -1;
        const unsigned char *s = (const unsigned char *)src + (size_t)r0 * rb;
        unsigned char *dst_rows = (unsigned char *)dst + (size_t)r0 * n_in * 2;
        if (as_stored || type == GGML_TYPE_F32) {
            memcpy(u->host[k], s, (size_t)nr * rb);
        } else {
            for (int r = 0; r < nr; r++)
                quant_dequantize_row(type, s + (size_t)r * rb,
                                     (float *)u->host[k] + (size_t)r * n_in, (size_t)n_in);
        }
        size_t bytes = (size_t)nr * out_row;
        void *target = as_stored ? (void *)dst_rows : (void *)u->dev[k];
        if (cu_ok(cudaMemcpyAsync(target, u->host[k], bytes, cudaMemcpyHostToDevice, u->d->st),
                  "upload: cudaMemcpyAsync", u->err, u->err_len) != 0)
            return -1;
        if (!as_stored)
            ops_f32_to_dtype(dt, u->dev[k], dst_rows, (size_t)nr * n_in, u->d->st);
        if (cu_ok(cudaEventRecord(u->done[k], u->d->st), "upload: cudaEventRecord", u->err,
                  u->err_len) != 0)
            return -1;
        u->host_bytes += (uint64_t)nr * rb;
    }
    return 0;
}

/* n f32 values -> dst (device, f32). */
static int upload_f32(struct uploader *u, const float *src, size_t n, float *dst)
{
    int k;
    if (stage_next(u, &k) != 0)
        return -1;
    memcpy(u->host[k], src, n * sizeof(float));
    if (cu_ok(cudaMemcpyAsync(dst, u->host[k], n * sizeof(float), cudaMemcpyHostToDevice,
                              u->d->st), "upload: cudaMemcpyAsync", u->err, u->err_len) != 0 ||
        cu_ok(cudaEventRecord(u->done[k], u->d->st), "upload: cudaEventRecord", u->err,
              u->err_len) != 0)
        return -1;
    u->host_bytes += n * sizeof(float);
    return 0;
}

/* Bytes of the arena and each tensor's offset, in upload order (the same walk as upload_all). */
struct arena_plan {
    size_t off;
};
static size_t plan_take(struct arena_plan *p, size_t bytes)
{
    size_t o = p->off;
    p->off += align_up(bytes);
    return o;
}

static void assign_layout(struct dev_forward *d, unsigned char *base, size_t *total)
{
    const struct model_config *c = &d->m->cfg;
    const struct ops_shape *s = &d->shape;
    const size_t E = (size_t)c->n_embd, qkv = (size_t)s->q_dim + 2 * (size_t)s->kv_dim;
    struct arena_plan p = {0};
    struct dev_weights *w = &d->w;
    w->embd = base + plan_take(&p, (size_t)c->n_vocab * E * 2);
    w->output = c->tied_embeddings ? w->embd : base + plan_take(&p, (size_t)c->n_vocab * E * 2);
    w->output_norm = (float *)(base + plan_take(&p, E * 4));
    for (int l = 0; l < c->n_layer; l++) {
        struct dev_layer *L = &w->layers[l];
        L->wqkv = base + plan_take(&p, qkv * E * 2);
        L->bqkv = c->qkv_bias ? (float *)(base + plan_take(&p, qkv * 4)) : NULL;
        L->wo = base + plan_take(&p, E * (size_t)s->q_dim * 2);
        L->wgu = base + plan_take(&p, 2 * (size_t)c->n_ff * E * 2);
        L->wdown = base + plan_take(&p, E * (size_t)c->n_ff * 2);
        L->attn_norm = (float *)(base + plan_take(&p, E * 4));
        L->ffn_norm = (float *)(base + plan_take(&p, E * 4));
    }
    *total = p.off;
}

static int upload_layer(struct uploader *u, int l)
{
    const struct model *m = u->d->m;
    const struct model_config *c = &m->cfg;
    const struct ops_shape *s = &u->d->shape;
    const struct layer_weights *H = &m->w.layers[l];
    const struct dev_layer *L = &u->d->w.layers[l];
    const int E = c->n_embd, F = c->n_ff;
    unsigned char *qkv = (unsigned char *)L->wqkv;
    if (upload_matrix(u, H->mq.data, H->mq.type, s->q_dim, E, qkv) != 0 ||
        upload_matrix(u, H->mk.data, H->mk.type, s->kv_dim, E, qkv + (size_t)s->q_dim * E * 2) ||
        upload_matrix(u, H->mv.data, H->mv.type, s->kv_dim, E,
                      qkv + ((size_t)s->q_dim + s->kv_dim) * E * 2) != 0)
        return -1;
    if (L->bqkv && (upload_f32(u, H->bq, (size_t)s->q_dim, L->bqkv) != 0 ||
                    upload_f32(u, H->bk, (size_t)s->kv_dim, L->bqkv + s->q_dim) != 0 ||
                    upload_f32(u, H->bv, (size_t)s->kv_dim, L->bqkv + s->q_dim + s->kv_dim)))
        return -1;
    unsigned char *gu = (unsigned char *)L->wgu;
    if (upload_matrix(u, H->mo.data, H->mo.type, E, s->q_dim, L->wo) != 0 ||
        upload_matrix(u, H->m_gate.data, H->m_gate.type, F, E, gu) != 0 ||
        upload_matrix(u, H->m_up.data, H->m_up.type, F, E, gu + (size_t)F * E * 2) != 0 ||
        upload_matrix(u, H->m_down.data, H->m_down.type, E, F, L->wdown) != 0 ||
        upload_f32(u, H->attn_norm, (size_t)E, L->attn_norm) != 0 ||
        upload_f32(u, H->ffn_norm, (size_t)E, L->ffn_norm) != 0)
        return -1;
    return 0;
}

static int upload_all(struct uploader *u)
{
    const struct model *m = u->d->m;
    const struct model_config *c = &m->cfg;
    const struct dev_weights *w = &u->d->w;
    if (upload_matrix(u, m->w.m_embd.data, m->w.m_embd.type, c->n_vocab, c->n_embd, w->embd))
        return -1;
    if (!c->tied_embeddings && upload_matrix(u, m->w.m_output.data, m->w.m_output.type,
                                             c->n_vocab, c->n_embd, w->output) != 0)
        return -1;
    if (upload_f32(u, m->w.output_norm, (size_t)c->n_embd, w->output_norm) != 0)
        return -1;
    for (int l = 0; l < c->n_layer; l++)
        if (upload_layer(u, l) != 0)
            return -1;
    return cu_ok(cudaStreamSynchronize(u->d->st), "upload: cudaStreamSynchronize", u->err,
                 u->err_len);
}

int dev_weights_upload(struct dev_forward *d, struct dev_load_stats *st, char *err,
                       size_t err_len)
{
    struct dev_weights *w = &d->w;
    struct uploader u;
    memset(&u, 0, sizeof u);
    u.d = d;
    u.err = err;
    u.err_len = err_len;
    int rc = -1;
    w->layers = (struct dev_layer *)calloc((size_t)d->m->cfg.n_layer, sizeof *w->layers);
    if (!w->layers) {
        snprintf(err, err_len, "upload: out of host memory");
        return -1;
    }
    size_t total = 0;
    assign_layout(d, NULL, &total);
    mono_ns t0 = clock_now_ns();
    st->used_before = cu_used_bytes();
    if (cu_alloc(&w->arena, total, "the model weights", err, err_len) != 0)
        return -1;
    w->arena_bytes = total;
    assign_layout(d, (unsigned char *)w->arena, &total);
    for (int k = 0; k < 2; k++) {
        if (cu_alloc_host(&u.host[k], STAGE_BYTES, "the upload staging buffer", err, err_len) ||
            cu_alloc((void **)&u.dev[k], STAGE_BYTES, "the upload staging buffer", err,
                     err_len) != 0 ||
            cu_ok(cudaEventCreateWithFlags(&u.done[k], cudaEventDisableTiming),
                  "upload: cudaEventCreate", err, err_len) != 0)
            goto fail;
        if (cu_ok(cudaEventRecord(u.done[k], d->st), "upload: cudaEventRecord", err, err_len))
            goto fail;
    }
    if (upload_all(&u) != 0)
        goto fail;
    st->used_after = cu_used_bytes();
    st->weight_bytes = total;
    st->host_bytes = u.host_bytes;
    st->upload_ns = clock_now_ns() - t0;
    st->upload_gbps = st->upload_ns > 0 ? (double)u.host_bytes / (double)st->upload_ns : 0.0;
    rc = 0;
fail:
    (void)cudaStreamSynchronize(d->st);
    for (int k = 0; k < 2; k++) {
        if (u.host[k])
            cudaFreeHost(u.host[k]);
        if (u.dev[k])
            cudaFree(u.dev[k]);
        if (u.done[k])
            cudaEventDestroy(u.done[k]);
    }
    /* used_after is read with the staging buffers gone */
    if (rc == 0)
        st->used_after = cu_used_bytes();
    return rc;
}

void dev_weights_free(struct dev_weights *w)
{
    if (w->arena)
        cudaFree(w->arena);
    free(w->layers);
    memset(w, 0, sizeof *w);
}
