/* attention_test: dev_test.h, the kernels of attention.cu on host data, for tests/cuda. Plans
 * tokens as forward_run.cu does (tiles for runs of consecutive positions of one sequence, the
 * decode kernel for the rest), uploads, runs ops_attention, downloads. */
#include "engine/cuda/dev_test.h"
#include "engine/cuda/internal.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void plan(const struct dev_test_attn *a, int32_t *h, const struct step_layout *L,
                 int *n_short, int *n_tiles)
{
    int ns = 0, nt = 0;
    for (int i = 0; i < a->n_tokens;) {
        int j = i + 1;
        while (j < a->n_tokens && a->tok_row[j] == a->tok_row[i] && a->pos[j] == a->pos[j - 1] + 1)
            j++;
        if (!a->all_decode && j - i >= OPS_ATT_RUN_MIN) {
            for (int q = i; q < j; q += OPS_ATT_TILE_Q, nt++)
                if (L) {
                    h[L->tile_i0 + nt] = q;
                    h[L->tile_n + nt] = j - q < OPS_ATT_TILE_Q ? j - q : OPS_ATT_TILE_Q;
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

int dev_test_attention(const struct dev_test_attn *a, uint16_t *out, int *n_tiles_out,
                       int *n_short_out, char *err, size_t err_len)
{
    if (ops_supported(a->head_dim, a->n_head, a->n_head_kv, err, err_len) != 0)
        return -1;
    struct ops_shape s;
    memset(&s, 0, sizeof s);
    s.dtype = a->f16 ? DEV_DTYPE_F16 : DEV_DTYPE_BF16;
    s.n_head = a->n_head;
    s.n_head_kv = a->n_head_kv;
    s.head_dim = a->head_dim;
    s.q_dim = a->n_head * a->head_dim;
    s.kv_dim = a->n_head_kv * a->head_dim;
    s.block_size = a->block_size;
    int n_short, n_tiles, rc = -1;
    plan(a, NULL, NULL, &n_short, &n_tiles);
    struct step_layout L = layout_of(a->n_tokens, n_short, n_tiles, 0, a->n_rows, a->bt_stride);
    int32_t *h = (int32_t *)calloc(L.total, sizeof(int32_t));
    size_t q_bytes = (size_t)a->n_tokens * s.q_dim * 2;
    size_t pool_bytes = (size_t)a->n_blocks * a->block_size * s.kv_dim * 2;
    void *dq = NULL, *dk = NULL, *dv = NULL, *dout = NULL;
    int32_t *din = NULL;
    float *po = NULL, *pml = NULL;
    if (!h) {
        snprintf(err, err_len, "out of host memory");
        return -1;
    }
    plan(a, h, &L, &n_short, &n_tiles);
    for (int i = 0; i < a->n_tokens; i++) {
        h[L.pos + i] = a->pos[i];
        h[L.tok_row + i] = a->tok_row[i];
        h[L.ctx + i] = a->pos[i] + 1;
        h[L.slot + i] = -1;
    }
    memcpy(h + L.bt, a->bt, (size_t)a->n_rows * a->bt_stride * sizeof(int32_t));
    int n_split = a->n_split > 0 ? a->n_split : 1;
    if (n_split * (n_short > 0 ? n_short : 1) > DEV_PART_ROWS || n_split > OPS_MAX_SPLIT) {
        snprintf(err, err_len, "n_split %d too large for %d tokens", n_split, n_short);
        goto fail;
    }
    if (cu_alloc(&dq, q_bytes, "q", err, err_len) || cu_alloc(&dout, q_bytes, "out", err, err_len) ||
        cu_alloc(&dk, pool_bytes, "k", err, err_len) ||
        cu_alloc(&dv, pool_bytes, "v", err, err_len) ||
        cu_alloc((void **)&din, L.total * 4, "inputs", err, err_len) ||
        cu_alloc((void **)&po, (size_t)DEV_PART_ROWS * s.q_dim * 4, "partials", err, err_len) ||
        cu_alloc((void **)&pml, (size_t)DEV_PART_ROWS * s.n_head * 8, "partials", err, err_len))
        goto fail;
    if (cu_ok(cudaMemcpy(dq, a->q, q_bytes, cudaMemcpyHostToDevice), "cudaMemcpy", err, err_len) ||
        cu_ok(cudaMemcpy(dk, a->k_pool, pool_bytes, cudaMemcpyHostToDevice), "cudaMemcpy", err,
              err_len) ||
        cu_ok(cudaMemcpy(dv, a->v_pool, pool_bytes, cudaMemcpyHostToDevice), "cudaMemcpy", err,
              err_len) ||
        cu_ok(cudaMemcpy(din, h, L.total * 4, cudaMemcpyHostToDevice), "cudaMemcpy", err,
              err_len) ||
        cu_ok(cudaMemset(dout, 0xff, q_bytes), "cudaMemset", err, err_len))
        goto fail;
    {
        struct ops_step b;
        memset(&b, 0, sizeof b);
        b.n_tokens = a->n_tokens;
        b.pos = din + L.pos;
        b.slot = din + L.slot;
        b.tok_row = din + L.tok_row;
        b.ctx_len = din + L.ctx;
        b.bt = din + L.bt;
        b.bt_stride = a->bt_stride;
        b.n_short = n_short;
        b.short_tok = din + L.short_tok;
        b.n_split = n_split;
        b.n_tiles = n_tiles;
        b.tile_i0 = din + L.tile_i0;
        b.tile_n = din + L.tile_n;
        ops_attention(&s, &b, dq, dk, dv, dout, po, pml, 0);
    }
    if (cu_ok(cudaGetLastError(), "attention launch", err, err_len) ||
        cu_ok(cudaDeviceSynchronize(), "attention", err, err_len) ||
        cu_ok(cudaMemcpy(out, dout, q_bytes, cudaMemcpyDeviceToHost), "cudaMemcpy", err, err_len))
        goto fail;
    *n_tiles_out = n_tiles;
    *n_short_out = n_short;
    rc = 0;
fail:
    cudaFree(dq);
    cudaFree(dk);
    cudaFree(dv);
    cudaFree(dout);
    cudaFree(din);
    cudaFree(po);
    cudaFree(pml);
    free(h);
    return rc;
}
