/* test_forward: the batched, paged forward pass against a naive reference written here (plain
 * loops, f64 accumulation, contiguous per-sequence K/V, no BLAS), for the tiny preset (llama:
 * NORM RoPE, untied output) and a qwen2-style variant (q/k/v biases, NEOX RoPE, tied output).
 * Checked: one prefill of a whole prompt, token-by-token decode, the same sequence inside batches
 * with other sequences (mixed prefill chunks and decodes, blocks scattered through the pool),
 * chunked prefill vs one prefill, all within 1e-4 x max(1, max |logit|) of the reference; greedy
 * decoding bit-identical run to run and identical across batch compositions; bad batches refused.
 * Quantised files (Q8_0, Q4_0 matrices as stored) against the reference on their dequantised
 * weights, within the same tolerance; `slmprobe serve` on a q8_0 file end to end. The KV pool
 * is built by hand here so this test depends on kv.h's layout only, not on kv.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/forward.h"
#include "engine/gguf.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "serve_harness.h"
#include "test.h"
#include "util/buf.h"

#define BS 16
#define MAX_POS 320
#define MAX_T 320
#define N_BLOCKS 70

/* ---- naive reference ---- */

struct ref {
    const struct model *m;
    double *k, *v; /* [n_layer][MAX_POS][kv_dim] */
};

static void ref_init(struct ref *r, const struct model *m)
{
    const struct model_config *c = &m->cfg;
    size_t n = (size_t)c->n_layer * MAX_POS * (size_t)(c->n_head_kv * c->head_dim);
    r->m = m;
    r->k = xcalloc(n, sizeof(double));
    r->v = xcalloc(n, sizeof(double));
}

static void ref_free(struct ref *r)
{
    free(r->k);
    free(r->v);
}

static void ref_matvec(double *y, const double *x, const float *w, const float *bias, int n_out,
                       int n_in)
{
    for (int o = 0; o < n_out; o++) {
        double acc = bias ? bias[o] : 0.0;
        for (int i = 0; i < n_in; i++)
            acc += (double)w[(size_t)o * n_in + i] * x[i];
        y[o] = acc;
    }
}

static void ref_rmsnorm(double *y, const double *x, const float *w, int n, double eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++)
        ss += x[i] * x[i];
    double sc = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++)
        y[i] = x[i] * sc * w[i];
}

static void ref_rope(double *v, int pos, int hd, double theta, int neox)
{
    for (int j = 0; j < hd / 2; j++) {
        double a = pos * pow(theta, -2.0 * j / hd);
        int i0 = neox ? j : 2 * j, i1 = neox ? j + hd / 2 : 2 * j + 1;
        double x0 = v[i0], x1 = v[i1];
        v[i0] = x0 * cos(a) - x1 * sin(a);
        v[i1] = x0 * sin(a) + x1 * cos(a);
    }
}

/* Processes one token at pos (all earlier positions must have been processed). */
static void ref_token(struct ref *r, int token, int pos, float *logits)
{
    const struct model *m = r->m;
    const struct model_config *c = &m->cfg;
    int E = c->n_embd, hd = c->head_dim, qd = c->n_head * hd, kvd = c->n_head_kv * hd;
    int F = c->n_ff, neox = c->arch == MODEL_ARCH_QWEN2;
    double *x = xcalloc((size_t)E, sizeof(double)), *xb = xcalloc((size_t)E, sizeof(double));
    double *q = xcalloc((size_t)qd, sizeof(double)), *o = xcalloc((size_t)qd, sizeof(double));
    double *k = xcalloc((size_t)kvd, sizeof(double)), *v = xcalloc((size_t)kvd, sizeof(double));
    double *g = xcalloc((size_t)F, sizeof(double)), *u = xcalloc((size_t)F, sizeof(double));
    double *t = xcalloc((size_t)E, sizeof(double)), *sc = xcalloc(MAX_POS, sizeof(double));
    for (int i = 0; i < E; i++)
        x[i] = m->w.token_embd[(size_t)token * E + i];
    for (int l = 0; l < c->n_layer; l++) {
        const struct layer_weights *L = &m->w.layers[l];
        ref_rmsnorm(xb, x, L->attn_norm, E, c->norm_eps);
        ref_matvec(q, xb, L->wq, L->bq, qd, E);
        ref_matvec(k, xb, L->wk, L->bk, kvd, E);
        ref_matvec(v, xb, L->wv, L->bv, kvd, E);
        for (int h = 0; h < c->n_head; h++)
            ref_rope(q + h * hd, pos, hd, c->rope_theta, neox);
        for (int h = 0; h < c->n_head_kv; h++)
            ref_rope(k + h * hd, pos, hd, c->rope_theta, neox);
        double *kl = r->k + ((size_t)l * MAX_POS) * kvd, *vl = r->v + ((size_t)l * MAX_POS) * kvd;
        memcpy(kl + (size_t)pos * kvd, k, sizeof(double) * kvd);
        memcpy(vl + (size_t)pos * kvd, v, sizeof(double) * kvd);
        for (int h = 0; h < c->n_head; h++) {
            int kh = h / (c->n_head / c->n_head_kv);
            double mx = -1e300, sum = 0;
            for (int p = 0; p <= pos; p++) {
                double d = 0;
                for (int j = 0; j < hd; j++)
                    d += q[h * hd + j] * kl[(size_t)p * kvd + kh * hd + j];
                sc[p] = d / sqrt((double)hd);
                if (sc[p] > mx)
                    mx = sc[p];
            }
            for (int p = 0; p <= pos; p++) {
                sc[p] = exp(sc[p] - mx);
                sum += sc[p];
            }
            for (int j = 0; j < hd; j++) {
                double acc = 0;
                for (int p = 0; p <= pos; p++)
                    acc += sc[p] / sum * vl[(size_t)p * kvd + kh * hd + j];
                o[h * hd + j] = acc;
            }
        }
        ref_matvec(t, o, L->wo, NULL, E, qd);
        for (int i = 0; i < E; i++)
            x[i] += t[i];
        ref_rmsnorm(xb, x, L->ffn_norm, E, c->norm_eps);
        ref_matvec(g, xb, L->w_gate, NULL, F, E);
        ref_matvec(u, xb, L->w_up, NULL, F, E);
        for (int i = 0; i < F; i++)
            g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
        ref_matvec(t, g, L->w_down, NULL, E, F);
        for (int i = 0; i < E; i++)
            x[i] += t[i];
    }
    ref_rmsnorm(xb, x, m->w.output_norm, E, c->norm_eps);
    double *lg = xcalloc((size_t)c->n_vocab, sizeof(double));
    ref_matvec(lg, xb, m->w.output, NULL, c->n_vocab, E);
    for (int i = 0; i < c->n_vocab; i++)
        logits[i] = (float)lg[i];
    free(lg);
    free(x);
    free(xb);
    free(q);
    free(o);
    free(k);
    free(v);
    free(g);
    free(u);
    free(t);
    free(sc);
}

/* ---- hand-built paged pool ---- */

static void pool_init(struct kv_cache *kv, const struct model_config *c)
{
    memset(kv, 0, sizeof *kv);
    kv->n_layer = c->n_layer;
    kv->kv_dim = c->n_head_kv * c->head_dim;
    kv->block_size = BS;
    kv->n_blocks = N_BLOCKS;
    size_t n = (size_t)c->n_layer * 2 * N_BLOCKS * BS * (size_t)kv->kv_dim;
    kv->pool = xmalloc(n * sizeof(float));
    /* Garbage, not zeros: a read of a position never written shows up as a mismatch. */
    for (size_t i = 0; i < n; i++)
        kv->pool[i] = (float)((i * 2654435761u) % 1000) * 1e3f;
    kv->pool_bytes = n * sizeof(float);
}

/* A sequence whose table holds the given block ids (MAX_POS / BS of them). */
static void seq_make(struct kv_seq *s, const int32_t *ids)
{
    memset(s, 0, sizeof *s);
    s->max_blocks = MAX_POS / BS;
    s->blocks = xcalloc((size_t)s->max_blocks, sizeof(int32_t));
    s->hashes = xcalloc((size_t)s->max_blocks, sizeof(uint64_t));
    memcpy(s->blocks, ids, sizeof(int32_t) * (size_t)s->max_blocks);
    s->n_blocks = s->max_blocks;
}

static void seq_drop(struct kv_seq *s)
{
    free(s->blocks);
    free(s->hashes);
}

/* ---- batch builder: every token wants logits; results land in out[seq][pos][vocab] ---- */

struct tb {
    int n;
    int32_t tok[MAX_T], pos[MAX_T], seq[MAX_T];
    uint8_t wl[MAX_T];
};

static void tb_add(struct tb *b, int seq, const int32_t *toks, int from, int count)
{
    for (int i = 0; i < count; i++) {
        b->tok[b->n] = toks[from + i];
        b->pos[b->n] = from + i;
        b->seq[b->n] = seq;
        b->wl[b->n] = 1;
        b->n++;
    }
}

static int tb_run(struct forward *f, struct kv_cache *kv, struct tb *b, struct kv_seq **seqs,
                  int n_seqs, float *const *out, int n_vocab)
{
    struct forward_batch fb = {b->n, b->tok, b->pos, b->seq, b->wl, n_seqs, seqs};
    int nl = -1;
    if (forward_run(f, kv, &fb, &nl) != FORWARD_OK || nl != b->n)
        return -1;
    for (int i = 0; i < b->n; i++)
        if (out[b->seq[i]])
            memcpy(out[b->seq[i]] + (size_t)b->pos[i] * n_vocab, forward_logits(f, i),
                   sizeof(float) * (size_t)n_vocab);
    b->n = 0;
    return 0;
}

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i]) > m)
            m = fabs(a[i]);
    return m;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m))
            m = d; /* NaN propagates as a failure */
    }
    return m;
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

/* ---- the checks, run for one model ---- */

#define N_PROMPT 45 /* 2 full blocks + 13 */

static struct model *make_model(int qwen)
{
    struct model_config c;
    char err[256];
    if (model_preset("tiny", &c) != 0)
        return NULL;
    if (qwen) {
        c.arch = MODEL_ARCH_QWEN2;
        c.qkv_bias = 1;
        c.tied_embeddings = 1;
        c.rope_theta = 1000000.0f;
        c.norm_eps = 1e-6f;
    }
    struct model *m = model_new_random(&c, qwen ? 7 : 3, err, sizeof err);
    if (!m)
        fprintf(stderr, "model: %s\n", err);
    return m;
}

static void fill_tokens(int32_t *t, int n, uint32_t seed, int n_vocab)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = (int32_t)((seed >> 8) % (uint32_t)n_vocab);
    }
}

/* One model under test: its pool, forward pass, three sequences on scattered blocks, the
 * prompts A, B, C and A's reference logits. */
struct fixture {
    struct model *m;
    int V;
    size_t rowsz;
    struct kv_cache kv;
    struct forward *f;
    struct kv_seq sa, sb, sc;
    struct kv_seq *seqs[3];
    int32_t ta[MAX_POS], tbk[MAX_POS], tc[MAX_POS];
    float *ref; /* A's reference logits at every prompt position */
    double tol;
    float *out_a, *out_b, *out_c;
    struct tb b;
};

static int fixture_init(struct fixture *x, int qwen)
{
    memset(x, 0, sizeof *x);
    x->m = make_model(qwen);
    CHECK(x->m != NULL);
    if (!x->m)
        return -1;
    const struct model_config *c = &x->m->cfg;
    x->V = c->n_vocab;
    x->rowsz = (size_t)MAX_POS * x->V;
    fill_tokens(x->ta, MAX_POS, 11, x->V);
    fill_tokens(x->tbk, MAX_POS, 22, x->V);
    fill_tokens(x->tc, MAX_POS, 33, x->V);

    x->ref = xcalloc(x->rowsz, sizeof(float));
    struct ref r;
    ref_init(&r, x->m);
    for (int p = 0; p < N_PROMPT; p++)
        ref_token(&r, x->ta[p], p, x->ref + (size_t)p * x->V);
    ref_free(&r);
    x->tol = 1e-4 * fmax(1.0, max_abs(x->ref, (size_t)N_PROMPT * x->V));

    pool_init(&x->kv, c);
    /* The qwen2 run uses 2 threads (parallel loops, per-thread scratch), the llama run 1: idle
     * OpenMP workers spin, which on a busy 2-core test machine costs more than it tests. */
    int n_threads = qwen ? 2 : 1;
    x->f = forward_new(x->m, MAX_T, MAX_T, MAX_POS, n_threads);
    CHECK(x->f->workspace_bytes > 0);
    CHECK(x->f->workspace_bytes == forward_workspace_bytes(x->m, MAX_T, MAX_T, MAX_POS, n_threads));

    /* Block ids: a fixed scattered permutation, interleaved between sequences. */
    int32_t perm[N_BLOCKS];
    for (int i = 0; i < N_BLOCKS; i++)
        perm[i] = (int32_t)((i * 17 + 5) % N_BLOCKS); /* 17 coprime with 70 */
    /* Each sequence gets MAX_POS / BS distinct blocks spread over the pool. */
    int32_t ids[3][MAX_POS / BS];
    memset(ids, 0, sizeof ids);
    for (int s = 0; s < 3; s++)
        for (int j = 0; j < MAX_POS / BS; j++)
            ids[s][j] = perm[(j * 3 + (2 - s)) % 60];
    seq_make(&x->sa, ids[0]);
    seq_make(&x->sb, ids[1]);
    seq_make(&x->sc, ids[2]);
    x->seqs[0] = &x->sa;
    x->seqs[1] = &x->sb;
    x->seqs[2] = &x->sc;
    x->out_a = xcalloc(x->rowsz, sizeof(float));
    x->out_b = xcalloc(x->rowsz, sizeof(float));
    x->out_c = xcalloc(x->rowsz, sizeof(float));
    return 0;
}

static void fixture_free(struct fixture *x)
{
    free(x->ref);
    free(x->out_a);
    free(x->out_b);
    free(x->out_c);
    seq_drop(&x->sa);
    seq_drop(&x->sb);
    seq_drop(&x->sc);
    free(x->kv.pool);
    forward_free(x->f);
    model_free(x->m);
}

/* (a) one prefill, (b) token-by-token decode, and chunked prefill (chunks 7, 16, 9, 13: some
 * end inside blocks, one on a boundary), each against the reference; d[] gets the three
 * maximum differences. */
static void check_alone(struct fixture *x, double d[3])
{
    const int V = x->V;
    const size_t n = (size_t)N_PROMPT * V;
    float *outs[3] = {x->out_a, NULL, NULL};
    tb_add(&x->b, 0, x->ta, 0, N_PROMPT);
    CHECK(tb_run(x->f, &x->kv, &x->b, x->seqs, 1, outs, V) == 0);
    d[0] = max_diff(x->out_a, x->ref, n);
    CHECK_MSG(d[0] <= x->tol, "prefill vs reference: %g > %g", d[0], x->tol);
    float *prefill = xmalloc(x->rowsz * sizeof(float));
    memcpy(prefill, x->out_a, x->rowsz * sizeof(float));

    memset(x->out_a, 0, x->rowsz * sizeof(float));
    for (int p = 0; p < N_PROMPT; p++) {
        tb_add(&x->b, 0, x->ta, p, 1);
        CHECK(tb_run(x->f, &x->kv, &x->b, x->seqs, 1, outs, V) == 0);
    }
    d[1] = max_diff(x->out_a, x->ref, n);
    CHECK_MSG(d[1] <= x->tol, "decode vs reference: %g > %g", d[1], x->tol);

    memset(x->out_a, 0, x->rowsz * sizeof(float));
    static const int chunks[] = {7, 16, 9, 13};
    for (int k = 0, p = 0; k < 4; p += chunks[k], k++) {
        tb_add(&x->b, 0, x->ta, p, chunks[k]);
        CHECK(tb_run(x->f, &x->kv, &x->b, x->seqs, 1, outs, V) == 0);
    }
    d[2] = max_diff(x->out_a, prefill, n);
    CHECK_MSG(d[2] <= x->tol, "chunked vs one prefill: %g > %g", d[2], x->tol);
    CHECK(max_diff(x->out_a, x->ref, n) <= x->tol);
    free(prefill);
}

/* (c) A inside batches with B and C: B is a longer prompt in chunks, then decodes; C starts
 * later; A's prefill is split across steps and ends in decodes. Sequence slots are given in a
 * different order than the table array to exercise the seq[] indirection. */
static double check_batched(struct fixture *x)
{
    const int V = x->V;
    struct tb *b = &x->b;
    memset(x->out_a, 0, x->rowsz * sizeof(float));
    float *outs3[3] = {x->out_a, x->out_b, x->out_c};
    tb_add(b, 1, x->tbk, 0, 30);
    tb_add(b, 0, x->ta, 0, 10);
    CHECK(tb_run(x->f, &x->kv, b, x->seqs, 3, outs3, V) == 0);
    tb_add(b, 2, x->tc, 0, 5);
    tb_add(b, 0, x->ta, 10, 20);
    tb_add(b, 1, x->tbk, 30, 20);
    CHECK(tb_run(x->f, &x->kv, b, x->seqs, 3, outs3, V) == 0);
    tb_add(b, 1, x->tbk, 50, 1);
    tb_add(b, 0, x->ta, 30, 12);
    tb_add(b, 2, x->tc, 5, 1);
    CHECK(tb_run(x->f, &x->kv, b, x->seqs, 3, outs3, V) == 0);
    for (int p = 42; p < N_PROMPT; p++) {
        tb_add(b, 2, x->tc, 6 + (p - 42), 1);
        tb_add(b, 0, x->ta, p, 1);
        tb_add(b, 1, x->tbk, 51 + (p - 42), 1);
        CHECK(tb_run(x->f, &x->kv, b, x->seqs, 3, outs3, V) == 0);
    }
    double d = max_diff(x->out_a, x->ref, (size_t)N_PROMPT * V);
    CHECK_MSG(d <= x->tol, "batched vs reference: %g > %g", d, x->tol);
    /* C too, against its own reference (first positions are enough). */
    float *rc = xcalloc((size_t)8 * V, sizeof(float));
    struct ref r2;
    ref_init(&r2, x->m);
    for (int p = 0; p < 8; p++)
        ref_token(&r2, x->tc[p], p, rc + (size_t)p * V);
    ref_free(&r2);
    CHECK(max_diff(x->out_c, rc, (size_t)8 * V) <= x->tol);
    free(rc);
    return d;
}

/* Greedy: run to run bit-identical logits and tokens; same tokens in another batch composition.
 * Each run prefills A's prompt (the third alongside B), then decodes 20 tokens. */
static void check_greedy(struct fixture *x)
{
    const int V = x->V;
    int32_t gen[3][MAX_POS];
    float *last[3];
    for (int run = 0; run < 3; run++) {
        int with_b = run == 2;
        int32_t toks[MAX_POS], btoks[MAX_POS];
        memcpy(toks, x->ta, sizeof toks);
        memcpy(btoks, x->tbk, sizeof btoks);
        last[run] = xcalloc(x->rowsz, sizeof(float));
        float *o3[3] = {last[run], x->out_b, NULL};
        if (with_b)
            tb_add(&x->b, 1, btoks, 0, 20);
        tb_add(&x->b, 0, toks, 0, N_PROMPT);
        CHECK(tb_run(x->f, &x->kv, &x->b, x->seqs, 3, o3, V) == 0);
        int nb = 20;
        for (int k = 0; k < 20; k++) {
            int p = N_PROMPT + k;
            toks[p] = argmax(last[run] + (size_t)(p - 1) * V, V);
            gen[run][k] = toks[p];
            if (with_b) {
                btoks[nb] = argmax(x->out_b + (size_t)(nb - 1) * V, V);
                tb_add(&x->b, 1, btoks, nb, 1);
                nb++;
            }
            tb_add(&x->b, 0, toks, p, 1);
            CHECK(tb_run(x->f, &x->kv, &x->b, x->seqs, 3, o3, V) == 0);
        }
    }
    CHECK(memcmp(gen[0], gen[1], sizeof(int32_t) * 20) == 0);
    CHECK(memcmp(last[0], last[1], x->rowsz * sizeof(float)) == 0);
    CHECK_MSG(memcmp(gen[0], gen[2], sizeof(int32_t) * 20) == 0,
              "greedy tokens differ alone vs batched");
    for (int run = 0; run < 3; run++)
        free(last[run]);
}

/* Bad batches are refused: position beyond the block table, token out of range, too many
 * tokens, bad sequence index, a position past the blocks a sequence holds. */
static void check_bad_batches(struct fixture *x)
{
    struct kv_seq **seqs = x->seqs;
    int32_t one_tok = 1, bad_pos = MAX_POS, zero = 0, bad_seq = 3, bad_tok = x->V;
    uint8_t wl1 = 1;
    int nl = -1;
    struct forward_batch bb = {1, &one_tok, &bad_pos, &zero, &wl1, 1, seqs};
    CHECK(forward_run(x->f, &x->kv, &bb, &nl) == FORWARD_ERR_BATCH);
    int32_t p0 = 0;
    struct forward_batch bt = {1, &bad_tok, &p0, &zero, &wl1, 1, seqs};
    CHECK(forward_run(x->f, &x->kv, &bt, &nl) == FORWARD_ERR_BATCH);
    struct forward_batch bs_ = {1, &one_tok, &p0, &bad_seq, &wl1, 3, seqs};
    CHECK(forward_run(x->f, &x->kv, &bs_, &nl) == FORWARD_ERR_BATCH);
    struct forward_batch bn = {MAX_T + 1, &one_tok, &p0, &zero, &wl1, 1, seqs};
    CHECK(forward_run(x->f, &x->kv, &bn, &nl) == FORWARD_ERR_BATCH);
    x->sa.n_blocks = 1; /* position 16 needs a second block */
    int32_t p16 = 16;
    struct forward_batch bsh = {1, &one_tok, &p16, &zero, &wl1, 1, seqs};
    CHECK(forward_run(x->f, &x->kv, &bsh, &nl) == FORWARD_ERR_BATCH);
    x->sa.n_blocks = x->sa.max_blocks;
    CHECK_EQ_STR(forward_status_str(FORWARD_ERR_BATCH), "invalid batch");
}

/* A batch's logits do not depend on the forward's thread count (its slices depend on it): the
 * same decode batch of A, B and C through x->f and through a one-thread forward, bit for bit.
 * Runs last: it rewrites K/V the batches above wrote. */
static void check_thread_count(struct fixture *x)
{
    const int V = x->V;
    struct forward *f1 = forward_new(x->m, MAX_T, MAX_T, MAX_POS, 1);
    float *o[2];
    for (int k = 0; k < 2; k++) {
        struct forward *f = k ? f1 : x->f;
        struct tb b = {0};
        tb_add(&b, 0, x->ta, N_PROMPT - 1, 1);
        tb_add(&b, 1, x->tbk, 40, 1);
        tb_add(&b, 2, x->tc, 5, 1);
        struct forward_batch fb = {b.n, b.tok, b.pos, b.seq, b.wl, 3, x->seqs};
        int nl = -1;
        CHECK(forward_run(f, &x->kv, &fb, &nl) == FORWARD_OK && nl == 3);
        o[k] = xmalloc((size_t)3 * V * sizeof(float));
        for (int i = 0; i < 3; i++)
            memcpy(o[k] + (size_t)i * V, forward_logits(f, i), sizeof(float) * (size_t)V);
    }
    CHECK_MSG(memcmp(o[0], o[1], (size_t)3 * V * sizeof(float)) == 0,
              "%d threads vs 1: decode logits differ (max %g)", forward_n_threads(x->f),
              max_diff(o[0], o[1], (size_t)3 * V));
    free(o[0]);
    free(o[1]);
    forward_free(f1);
}

static void check_model(int qwen)
{
    struct fixture x;
    if (fixture_init(&x, qwen) != 0)
        return;
    double d[3];
    check_alone(&x, d);
    double d_c = check_batched(&x);
    check_greedy(&x);
    check_bad_batches(&x);
    check_thread_count(&x);
    fprintf(stderr, "  %s: tol %.3g, prefill %.3g, decode %.3g, chunked %.3g, batched %.3g\n",
            qwen ? "qwen2" : "llama", x.tol, d[0], d[1], d[2], d_c);
    fixture_free(&x);
}

static void test_forward_llama(void)
{
    check_model(0);
}

static void test_forward_qwen2(void)
{
    check_model(1);
}

/* The same batch with 1 and 2 threads: the same logits up to BLAS summation order (threads split
 * weight rows, which may change OpenBLAS's kernel choice but no per-token sum in our code). */
static void test_forward_threads(void)
{
    struct model *m = make_model(0);
    CHECK(m != NULL);
    if (!m)
        return;
    int V = m->cfg.n_vocab;
    int32_t toks[MAX_POS];
    fill_tokens(toks, MAX_POS, 5, V);
    float *out[2];
    for (int t = 0; t < 2; t++) {
        struct kv_cache kv;
        pool_init(&kv, &m->cfg);
        int32_t ids[MAX_POS / BS];
        for (int j = 0; j < MAX_POS / BS; j++)
            ids[j] = (int32_t)(N_BLOCKS - 1 - j);
        struct kv_seq s;
        seq_make(&s, ids);
        struct kv_seq *seqs[1] = {&s};
        struct forward *f = forward_new(m, MAX_T, MAX_T, MAX_POS, t + 1);
#if defined(__SANITIZE_THREAD__)
        CHECK_EQ_INT(forward_n_threads(f), 1); /* see forward.h */
#else
        CHECK_EQ_INT(forward_n_threads(f), t + 1);
#endif
        out[t] = xcalloc((size_t)MAX_POS * V, sizeof(float));
        float *o[1] = {out[t]};
        struct tb b = {0};
        tb_add(&b, 0, toks, 0, 40);
        CHECK(tb_run(f, &kv, &b, seqs, 1, o, V) == 0);
        tb_add(&b, 0, toks, 40, 1);
        CHECK(tb_run(f, &kv, &b, seqs, 1, o, V) == 0);
        forward_free(f);
        seq_drop(&s);
        free(kv.pool);
    }
    double d = max_diff(out[0], out[1], (size_t)41 * V);
    CHECK_MSG(d <= 1e-5 * fmax(1.0, max_abs(out[0], (size_t)41 * V)), "1 vs 2 threads: %g", d);
    free(out[0]);
    free(out[1]);
    model_free(m);
}

/* A 300-token context: prefill attention tiles span several key chunks (online softmax with
 * rescaling), in one prefill, in chunks, and with decode at the end, against the reference. */
static void test_forward_long(void)
{
    struct model *m = make_model(0);
    CHECK(m != NULL);
    if (!m)
        return;
    const int V = m->cfg.n_vocab, N = 300;
    int32_t toks[MAX_POS];
    fill_tokens(toks, MAX_POS, 99, V);
    float *ref = xcalloc((size_t)N * V, sizeof(float));
    struct ref r;
    ref_init(&r, m);
    for (int p = 0; p < N; p++)
        ref_token(&r, toks[p], p, ref + (size_t)p * V);
    ref_free(&r);
    double tol = 1e-4 * fmax(1.0, max_abs(ref, (size_t)N * V));

    struct kv_cache kv;
    pool_init(&kv, &m->cfg);
    int32_t ids[MAX_POS / BS];
    for (int j = 0; j < MAX_POS / BS; j++)
        ids[j] = (int32_t)((j * 37 + 11) % N_BLOCKS);
    struct kv_seq sq;
    seq_make(&sq, ids);
    struct kv_seq *seqs[1] = {&sq};
    struct forward *f = forward_new(m, MAX_T, MAX_T, MAX_POS, 1);
    float *out = xcalloc((size_t)MAX_POS * V, sizeof(float));
    float *o[1] = {out};
    struct tb b = {0};
    static const int plans[3][4] = {{300, 0}, {100, 150, 50, 0}, {280, 0}};
    for (int k = 0; k < 3; k++) {
        memset(out, 0, (size_t)MAX_POS * V * sizeof(float));
        int p = 0;
        for (int c = 0; plans[k][c]; c++) {
            tb_add(&b, 0, toks, p, plans[k][c]);
            CHECK(tb_run(f, &kv, &b, seqs, 1, o, V) == 0);
            p += plans[k][c];
        }
        for (; p < N; p++) { /* decode the rest */
            tb_add(&b, 0, toks, p, 1);
            CHECK(tb_run(f, &kv, &b, seqs, 1, o, V) == 0);
        }
        double d = max_diff(out, ref, (size_t)N * V);
        CHECK_MSG(d <= tol, "plan %d: %g > %g", k, d, tol);
        fprintf(stderr, "  plan %d: max diff %.3g (tol %.3g)\n", k, d, tol);
    }
    free(out);
    free(ref);
    seq_drop(&sq);
    free(kv.pool);
    forward_free(f);
    model_free(m);
}

/* Weights as stored: a tiny file written with Q8_0 (or Q4_0, F16, BF16, ...) matrices, loaded by
 * mmap (the matrices stay in the map; ffn_down's 688-value rows do not divide into blocks and are
 * F16 for the block types, BF16 in a bf16 file, also used as stored), against the naive
 * reference on the same weights dequantised (the file loaded with read(), which converts every
 * tensor to f32): within 1e-4 x max(1, max |logit|) for a prefill
 * (dequantised tiles + sgemm / the small kernel) and decode (the fused kernel), on 2 threads.
 * Greedy decoding from the quantised model is bit-identical run to run. */
static void check_quantised(enum model_dtype dtype, uint32_t want_type)
{
    struct model_config c;
    char err[256], path[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/slm_fwd_q_%d_%ld.gguf", tmp && *tmp ? tmp : "/tmp", (int)dtype,
             (long)getpid());
    CHECK(model_preset("tiny", &c) == 0);
    CHECK(model_write_gguf(&c, 5, dtype, path, err, sizeof err) == 0);
    struct model *mq = model_load(path, MODEL_LOAD_MMAP, err, sizeof err);
    struct model *mf = model_load(path, MODEL_LOAD_READ, err, sizeof err);
    unlink(path);
    CHECK(mq && mf);
    if (!mq || !mf) {
        model_free(mq), model_free(mf);
        return;
    }
    CHECK_EQ_INT(mq->file_dtype, dtype);
    CHECK_EQ_INT(mq->w.layers[0].mq.type, want_type);
    CHECK(mq->w.layers[0].wq == NULL);
    CHECK_EQ_INT(mq->w.m_embd.type, want_type);
    /* 688-value ffn_down rows: the converter's F16 fallback for block types; BF16 has none */
    CHECK_EQ_INT(mq->w.layers[0].m_down.type,
                 dtype == MODEL_DTYPE_BF16 ? GGML_TYPE_BF16 : GGML_TYPE_F16);
    CHECK(mq->weight_bytes < mf->weight_bytes);
    const int V = c.n_vocab, N = 60, NP = 40;
    int32_t toks[MAX_POS];
    fill_tokens(toks, MAX_POS, 5, V);
    float *ref = xcalloc((size_t)N * V, sizeof(float));
    struct ref r;
    ref_init(&r, mf);
    for (int p = 0; p < N; p++)
        ref_token(&r, toks[p], p, ref + (size_t)p * V);
    ref_free(&r);
    double tol = 1e-4 * fmax(1.0, max_abs(ref, (size_t)N * V));

    struct kv_cache kv;
    pool_init(&kv, &c);
    int32_t ids[MAX_POS / BS];
    for (int j = 0; j < MAX_POS / BS; j++)
        ids[j] = (int32_t)((j * 13 + 5) % N_BLOCKS);
    struct kv_seq sq;
    seq_make(&sq, ids);
    struct kv_seq *seqs[1] = {&sq};
    struct forward *f = forward_new(mq, MAX_T, MAX_T, MAX_POS, 2);
    CHECK(f->deq_scratch != NULL);
    float *out = xcalloc((size_t)MAX_POS * V, sizeof(float));
    float *o[1] = {out};
    struct tb b = {0};
    tb_add(&b, 0, toks, 0, NP);
    CHECK(tb_run(f, &kv, &b, seqs, 1, o, V) == 0);
    for (int p = NP; p < N; p++) {
        tb_add(&b, 0, toks, p, 1);
        CHECK(tb_run(f, &kv, &b, seqs, 1, o, V) == 0);
    }
    double dp = max_diff(out, ref, (size_t)NP * V);
    double dd = max_diff(out + (size_t)NP * V, ref + (size_t)NP * V, (size_t)(N - NP) * V);
    CHECK_MSG(dp <= tol, "prefill %g > %g", dp, tol);
    CHECK_MSG(dd <= tol, "decode %g > %g", dd, tol);
    fprintf(stderr, "  %s: prefill max diff %.3g, decode %.3g (tol %.3g)\n", model_dtype_str(dtype),
            dp, dd, tol);
    {
        /* q4_k_m: the mix as llama-quantize makes it. Every dtype: the logits against the
         * original f32 weights (the same seed, never quantised), i.e. quantisation error, not
         * kernel error, within a fraction of max |logit| per dtype: f16 0.5%, bf16 2%, q8_0 3%,
         * q6_k 10%, q4_0 and q4_k_m 30% (measured on this model: 0.08%, 0.65%, 1.4%, 5.8%, 25%,
         * 22%). Argmax agreement is printed, not checked: the random model's logits are nearly
         * flat. */
        if (dtype == MODEL_DTYPE_Q4_K_M) {
            /* use_more_bits(i, 4): layers 2 ((i - 0) % 3 == 2) and 3 (>= 7 * 4 / 8) */
            CHECK_EQ_INT(mq->w.layers[0].mv.type, GGML_TYPE_Q4_K);
            CHECK_EQ_INT(mq->w.layers[1].mv.type, GGML_TYPE_Q4_K);
            CHECK_EQ_INT(mq->w.layers[2].mv.type, GGML_TYPE_Q6_K);
            CHECK_EQ_INT(mq->w.layers[3].mv.type, GGML_TYPE_Q6_K);
            CHECK_EQ_INT(mq->w.m_output.type, GGML_TYPE_Q6_K);
        }
        struct model *m32 = model_new_random(&c, 5, err, sizeof err);
        float *ref32 = xcalloc((size_t)N * V, sizeof(float));
        struct ref r32;
        ref_init(&r32, m32);
        for (int p = 0; p < N; p++)
            ref_token(&r32, toks[p], p, ref32 + (size_t)p * V);
        ref_free(&r32);
        double frac = dtype == MODEL_DTYPE_F16    ? 0.005
                      : dtype == MODEL_DTYPE_BF16 ? 0.02
                      : dtype == MODEL_DTYPE_Q8_0 ? 0.03
                      : dtype == MODEL_DTYPE_Q6_K ? 0.1
                                                  : 0.3;
        double tol32 = frac * max_abs(ref32, (size_t)N * V);
        double d32 = max_diff(out, ref32, (size_t)N * V);
        CHECK_MSG(d32 <= tol32, "%s against the f32 weights: %g > %g", model_dtype_str(dtype), d32,
                  tol32);
        int same = 0;
        for (int p = 0; p < N; p++)
            same += argmax(out + (size_t)p * V, V) == argmax(ref32 + (size_t)p * V, V);
        fprintf(stderr,
                "  %s against the f32 weights: max diff %.3g (max |logit| %.3g), "
                "argmax equal at %d/%d\n",
                model_dtype_str(dtype), d32, max_abs(ref32, (size_t)N * V), same, N);
        free(ref32);
        model_free(m32);
    }

    /* Greedy, twice: bit-identical tokens and logits. */
    int32_t gen[2][MAX_POS];
    float *last[2];
    for (int run = 0; run < 2; run++) {
        memcpy(gen[run], toks, sizeof(int32_t) * 8);
        tb_add(&b, 0, gen[run], 0, 8);
        CHECK(tb_run(f, &kv, &b, seqs, 1, o, V) == 0);
        for (int p = 8; p < 40; p++) {
            gen[run][p] = argmax(out + (size_t)(p - 1) * V, V);
            tb_add(&b, 0, gen[run], p, 1);
            CHECK(tb_run(f, &kv, &b, seqs, 1, o, V) == 0);
        }
        last[run] = xmalloc(sizeof(float) * (size_t)V);
        memcpy(last[run], out + (size_t)39 * V, sizeof(float) * (size_t)V);
    }
    CHECK(memcmp(gen[0], gen[1], sizeof(int32_t) * 40) == 0);
    CHECK(memcmp(last[0], last[1], sizeof(float) * (size_t)V) == 0);
    free(last[0]), free(last[1]);
    free(out);
    free(ref);
    seq_drop(&sq);
    free(kv.pool);
    forward_free(f);
    model_free(mq);
    model_free(mf);
}

static void test_forward_q8_0(void)
{
    check_quantised(MODEL_DTYPE_Q8_0, GGML_TYPE_Q8_0);
}

static void test_forward_q4_0(void)
{
    check_quantised(MODEL_DTYPE_Q4_0, GGML_TYPE_Q4_0);
}

static void test_forward_q4_k_m(void)
{
    check_quantised(MODEL_DTYPE_Q4_K_M, GGML_TYPE_Q4_K);
}

static void test_forward_q6_k(void)
{
    check_quantised(MODEL_DTYPE_Q6_K, GGML_TYPE_Q6_K);
}

static void test_forward_f16(void)
{
    check_quantised(MODEL_DTYPE_F16, GGML_TYPE_F16);
}

static void test_forward_bf16(void)
{
    check_quantised(MODEL_DTYPE_BF16, GGML_TYPE_BF16);
}

/* End to end: `slmprobe serve` on a q8_0 file (SLMPROBE_BIN) answers POST /v1/completions with
 * the tokens asked for, and greedy decoding gives the same text twice. */
static void test_serve_q8_0(void)
{
    if (harness_setup("fwdq8") != 0) {
        CHECK(0);
        return;
    }
    snprintf(g_model, sizeof g_model, "%s/tiny.gguf", g_dir);
    char log[600];
    snprintf(log, sizeof log, "%s/init.log", g_dir);
    char *init[] = {(char *)bin_path(), "model", "init", "--preset", "tiny",
                    "--dtype",          "q8_0",  "-o",   g_model,    NULL};
    CHECK_EQ_INT(run_wait(init, log), 0);
    struct srv sv = {0};
    sv.port = free_port();
    snprintf(sv.log, sizeof sv.log, "%s/serve.log", g_dir);
    char port[16];
    snprintf(port, sizeof port, "%d", sv.port);
    const char *argv[] = {bin_path(),
                          "serve",
                          "--model",
                          g_model,
                          "--port",
                          port,
                          "--max-model-len",
                          "256",
                          "--kv-cache-memory-bytes",
                          "8MiB",
                          "--threads",
                          "1",
                          NULL};
    sv.pid = fork();
    if (sv.pid == 0) {
        setpgid(0, 0);
        int fd = open(sv.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int up = 0;
    for (double t0 = now_s(); !up && now_s() - t0 < 120; sleep_ms(50))
        up = http_status_only(sv.port, "/health") == 200;
    CHECK_MSG(up, "server not ready; log:\n%s", slurp(sv.log));
    char *text[2] = {NULL, NULL};
    for (int k = 0; up && k < 2; k++) {
        struct resp r;
        CHECK(post(sv.port, "/v1/completions",
                   "{\"model\": \"tiny\", \"prompt\": \"Hello, world\", \"max_tokens\": 12, "
                   "\"temperature\": 0, \"ignore_eos\": true}",
                   &r) == 0);
        CHECK_EQ_INT(r.status, 200);
        struct json *j = jparse(&r.body);
        CHECK_EQ_INT(jint(j, "usage.completion_tokens"), 12);
        const char *t = jstr(j, "choices.0.text");
        CHECK(t != NULL);
        text[k] = xstrdup(t ? t : "");
        json_free(j);
        resp_free(&r);
    }
    if (up)
        CHECK_EQ_STR(text[0], text[1]);
    free(text[0]), free(text[1]);
    CHECK_EQ_INT(srv_stop(&sv, 10), 0);
    unlink(g_model);
    unlink(log);
    unlink(sv.log);
    rmdir(g_dir);
}

int main(void)
{
    TEST_RUN(test_forward_llama);
    TEST_RUN(test_forward_qwen2);
    TEST_RUN(test_forward_threads);
    TEST_RUN(test_forward_long);
    TEST_RUN(test_forward_q8_0);
    TEST_RUN(test_forward_q4_0);
    TEST_RUN(test_forward_q4_k_m);
    TEST_RUN(test_forward_q6_k);
    TEST_RUN(test_forward_f16);
    TEST_RUN(test_forward_bf16);
    TEST_RUN(test_serve_q8_0);
    return TEST_DONE();
}
