/* forward: the batched decoder forward pass (llama2.c's structure, over a batch of tokens from
 * several sequences and a paged KV cache). Matrix products go through OpenBLAS; attention,
 * norms, RoPE and SwiGLU are plain loops parallelised with OpenMP over tokens (x heads).
 * It does not schedule, allocate KV blocks or sample. */
#include "engine/forward.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "engine/blas_env.h"
#include "engine/forward_dev.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "util/buf.h"
#include "util/log.h"

/* Below this much work (multiply-adds, roughly) a loop runs on the calling thread: waking the
 * OpenMP team costs more than it saves, and idle workers would only spin. */
#define PAR_MIN_WORK (1 << 16)

/* Weight slices per thread in linear() (see there). */
#ifndef LINEAR_SLICES_PER_THREAD
#define LINEAR_SLICES_PER_THREAD 4
#endif

/* Attention of runs of consecutive positions of one sequence (prefill chunks) of at least
 * ATT_RUN_MIN tokens goes through sgemm in tiles of ATT_TILE_Q queries x one KV head (all its
 * query heads), over keys in chunks of ATT_CHUNK_K with an online softmax. Shorter runs (decode)
 * use the per-(token, head) loop. */
#define ATT_RUN_MIN 16
#define ATT_TILE_Q 32
#define ATT_CHUNK_K 128

/* The per-token attention loop, compiled for several instruction sets; forward_new sets it from
 * the CPU's features (the same value for every forward in the process). */
typedef void (*attend_fn)(float *, const float *, float *, const struct kv_cache *,
                          const struct kv_seq *, int, int, int, int, float);
static void attend_base(float *out, const float *qh, float *att, const struct kv_cache *kv,
                        const struct kv_seq *sq, int layer, int kv_off, int pos, int head_dim,
                        float scale);
static attend_fn attend_pick(void);
static attend_fn attend = attend_base;

/* The small-batch product kernel (see lin_slice), or NULL; set by forward_new like attend. */
typedef void (*lin_small_fn)(float *, const float *, const float *, int, int, int, float, int,
                             int);
static lin_small_fn lin_small_pick(void);
static int model_has_block_types(const struct model *m);
static int resolve_threads(int n_threads);
#define LIN_QTILE 64 /* weight rows dequantised at a time (lin_slice_q) */
static lin_small_fn lin_small;

const char *forward_status_str(enum forward_status st)
{
    switch (st) {
    case FORWARD_OK:
        return "ok";
    case FORWARD_ERR_BATCH:
        return "invalid batch";
    }
    return "unknown";
}

/* Sizes (in floats) of every run_state array, in one place for allocation and accounting. */
struct ws_sizes {
    size_t x, xb, q, k, v, att_out, hb, hb2, rope, att, xl, logits, logit_rows;
    size_t tile_scratch; /* floats per thread for attend_tile */
    size_t max_tiles;
};

static struct ws_sizes ws_sizes_of(const struct model_config *c, int max_tokens, int max_logits,
                                   int max_ctx, int n_threads)
{
    size_t t = (size_t)max_tokens, l = (size_t)max_logits;
    size_t q_dim = (size_t)c->n_head * (size_t)c->head_dim;
    size_t kv_dim = (size_t)c->n_head_kv * (size_t)c->head_dim;
    struct ws_sizes s;
    s.x = t * (size_t)c->n_embd;
    s.xb = t * (size_t)c->n_embd;
    s.q = t * q_dim;
    s.k = t * kv_dim;
    s.v = t * kv_dim;
    s.att_out = t * q_dim;
    s.hb = t * (size_t)c->n_ff;
    s.hb2 = t * (size_t)c->n_ff;
    s.rope = t * (size_t)(c->head_dim / 2);
    s.att = (size_t)n_threads * (size_t)max_ctx;
    s.xl = l * (size_t)c->n_embd;
    s.logits = l * (size_t)c->n_vocab;
    s.logit_rows = l;
    size_t hd = (size_t)c->head_dim, rows = (size_t)ATT_TILE_Q * (size_t)(c->n_head / c->n_head_kv);
    s.tile_scratch = 2 * rows * hd + rows * ATT_CHUNK_K + 2 * (size_t)ATT_CHUNK_K * hd + 2 * rows;
    /* runs of >= ATT_RUN_MIN tokens, each cut into tiles of ATT_TILE_Q, per KV head */
    s.max_tiles = (t / ATT_TILE_Q + t / ATT_RUN_MIN + 1) * (size_t)c->n_head_kv;
    return s;
}

static int resolve_threads(int n_threads)
{
#if defined(__SANITIZE_THREAD__)
    /* ThreadSanitizer cannot see libgomp's (uninstrumented) barriers and reports every parallel
     * loop as a race; under TSan the forward runs on the calling thread only. */
    (void)n_threads;
    return 1;
#else
    if (n_threads > 0)
        return n_threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
#endif
}

/* Floats per thread of the dequantisation scratch: LIN_QTILE rows of the widest matrix input;
 * 0 for a model whose matrices are all f32. */
static size_t deq_scratch_floats_of(const struct model *m)
{
    const struct model_config *c = &m->cfg;
    if (!model_has_block_types(m))
        return 0;
    size_t max_in = (size_t)c->n_embd;
    if ((size_t)c->n_ff > max_in)
        max_in = (size_t)c->n_ff;
    if ((size_t)c->n_head * (size_t)c->head_dim > max_in)
        max_in = (size_t)c->n_head * (size_t)c->head_dim;
    return (size_t)LIN_QTILE * max_in;
}

uint64_t forward_workspace_bytes(const struct model *m, int max_tokens, int max_logits,
                                 int max_ctx, int n_threads)
{
    const struct model_config *c = &m->cfg;
    int nt = resolve_threads(n_threads);
    struct ws_sizes s = ws_sizes_of(c, max_tokens, max_logits, max_ctx, nt);
    uint64_t floats = (uint64_t)s.x + s.xb + s.q + s.k + s.v + s.att_out + s.hb + s.hb2 +
                      2 * (uint64_t)s.rope + s.att + s.xl + s.logits +
                      (uint64_t)nt * s.tile_scratch + (uint64_t)nt * deq_scratch_floats_of(m);
    uint64_t ints = (uint64_t)s.logit_rows + (uint64_t)max_tokens /* short_tok */ +
                    3 * (uint64_t)s.max_tiles;
    return floats * sizeof(float) + ints * sizeof(int32_t) +
           (uint64_t)(c->head_dim / 2) * sizeof(double);
}

/* OpenBLAS may have picked kernels older than the CPU can run (blas_env.h); `serve` re-executes
 * itself to fix that, other callers (tests, benchmarks) are told once. */
static void check_blas_core(void)
{
    static int checked;
    if (checked)
        return;
    checked = 1;
    const char *want = blas_env_better_core();
    if (want)
        log_warn("forward",
                 "OpenBLAS uses its %s kernels where this CPU runs %s ones: matrix products run "
                 "several times slower than they could; set OPENBLAS_CORETYPE=%s before starting",
                 blas_env_core(), want, want);
}

struct forward *forward_new(const struct model *model, int max_tokens, int max_logits,
                            int max_ctx, int n_threads)
{
    const struct model_config *c = &model->cfg;
    struct forward *f = xcalloc(1, sizeof *f);
    f->model = model;
    f->max_tokens = max_tokens < 1 ? 1 : max_tokens;
    f->max_logits = max_logits < 1 ? 1 : max_logits;
    f->max_ctx = max_ctx < 1 ? 1 : max_ctx;
    f->n_threads = resolve_threads(n_threads);

    struct ws_sizes z = ws_sizes_of(c, f->max_tokens, f->max_logits, f->max_ctx, f->n_threads);
    struct run_state *s = &f->s;
    /* calloc: the pages are touched by the first real step anyway; zeroed memory keeps BLAS
     * beta = 0 paths and sanitizers quiet about uninitialised reads. */
    s->x = xcalloc(z.x, sizeof(float));
    s->xb = xcalloc(z.xb, sizeof(float));
    s->q = xcalloc(z.q, sizeof(float));
    s->k = xcalloc(z.k, sizeof(float));
    s->v = xcalloc(z.v, sizeof(float));
    s->att_out = xcalloc(z.att_out, sizeof(float));
    s->hb = xcalloc(z.hb, sizeof(float));
    s->hb2 = xcalloc(z.hb2, sizeof(float));
    s->rope_cos = xcalloc(z.rope, sizeof(float));
    s->rope_sin = xcalloc(z.rope, sizeof(float));
    s->att = xcalloc(z.att, sizeof(float));
    s->xl = xcalloc(z.xl, sizeof(float));
    s->logits = xcalloc(z.logits, sizeof(float));
    s->logit_rows = xcalloc(z.logit_rows, sizeof(int32_t));
    s->tile_scratch = xcalloc((size_t)f->n_threads * z.tile_scratch, sizeof(float));
    f->tile_scratch_floats = z.tile_scratch;
    s->short_tok = xcalloc((size_t)f->max_tokens, sizeof(int32_t));
    s->tile_i0 = xcalloc(z.max_tiles, sizeof(int32_t));
    s->tile_n = xcalloc(z.max_tiles, sizeof(int32_t));
    s->tile_g = xcalloc(z.max_tiles, sizeof(int32_t));
    f->max_tiles = (int)z.max_tiles;

    int half = c->head_dim / 2;
    f->rope_inv_freq = xcalloc((size_t)half, sizeof(double));
    for (int j = 0; j < half; j++)
        f->rope_inv_freq[j] = pow((double)c->rope_theta, -2.0 * j / (double)c->head_dim);

    f->workspace_bytes =
        forward_workspace_bytes(model, f->max_tokens, f->max_logits, f->max_ctx, f->n_threads);

    /* Dequantisation scratch, only for a model with matrices in a block type (counted in
     * forward_workspace_bytes). */
    f->deq_scratch_floats = deq_scratch_floats_of(model);
    if (f->deq_scratch_floats) {
        f->deq_scratch = xcalloc((size_t)f->n_threads * f->deq_scratch_floats, sizeof(float));
        (void)quant_kernel_name(); /* picks the kernel before threads use it */
    }

    check_blas_core();
    attend = attend_pick();
    lin_small = lin_small_pick();
    openblas_set_num_threads(1); /* see linear() */
    omp_set_num_threads(f->n_threads);
    return f;
}

struct forward *forward_new_dev(const struct model *model, struct dev_forward *d, int max_tokens,
                                int max_logits, int max_ctx)
{
    struct forward *f = xcalloc(1, sizeof *f);
    f->model = model;
    f->dev = d;
    f->max_tokens = max_tokens < 1 ? 1 : max_tokens;
    f->max_logits = max_logits < 1 ? 1 : max_logits;
    f->max_ctx = max_ctx < 1 ? 1 : max_ctx;
    f->n_threads = 1;
    return f;
}

void forward_free(struct forward *f)
{
    if (!f)
        return;
    dev_forward_free(f->dev);
    struct run_state *s = &f->s;
    free(s->x);
    free(s->xb);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att_out);
    free(s->hb);
    free(s->hb2);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s->att);
    free(s->xl);
    free(s->logits);
    free(s->logit_rows);
    free(s->tile_scratch);
    free(s->short_tok);
    free(s->tile_i0);
    free(s->tile_n);
    free(s->tile_g);
    free(f->deq_scratch);
    free(f->rope_inv_freq);
    free(f);
}

void forward_limit_layers(struct forward *f, int n_layer)
{
    f->n_layers_run = n_layer > 0 ? n_layer : 0;
}

int forward_threads_for(int n_threads)
{
    return resolve_threads(n_threads);
}

int forward_n_threads(const struct forward *f)
{
    return f->n_threads;
}

float *forward_logits(struct forward *f, int r)
{
    if (f->dev)
        return dev_forward_logits(f->dev, r);
    return f->s.logits + (size_t)r * (size_t)f->model->cfg.n_vocab;
}

/* Matrix products: y[m][n_out] = x[m][n_in] W^T + beta y, W row-major [n_out][n_in], the whole
 * batch at once. OpenBLAS runs single-threaded; the OpenMP team shares out slices of the output
 * columns (weight rows), each one sgemm (sgemv for a single row). One thread pool for
 * everything: OpenBLAS's own pthreads and OpenMP's spinning workers fight over the cores (a 10x
 * slowdown measured on 2 cores). There are up to LINEAR_SLICES_PER_THREAD slices per thread,
 * handed out dynamically, so a thread the OS descheduled (a shared machine) delays the step by
 * one slice, not by a whole share; products of the same input (q/k/v, gate/up) share one
 * parallel loop, so the team meets once for them. Slices depend only on the shapes and the
 * thread count, so the results do too. */
struct lin {
    float *y;
    struct weight_mat w;
    int n_out;
    float beta;
};

/* Slices for one product: at least 64 rows (whole 16-row groups) and PAR_MIN_WORK each. */
static int lin_slices(const struct forward *f, int m, int n_out, int n_in)
{
    int64_t work = (int64_t)m * n_out * n_in;
    int64_t n = f->n_threads > 1 ? LINEAR_SLICES_PER_THREAD * (int64_t)f->n_threads : 1;
    if (n > n_out / 64)
        n = n_out / 64;
    if (n > work / PAR_MIN_WORK)
        n = work / PAR_MIN_WORK;
    return n < 1 ? 1 : (int)n;
}

static void lin_bounds(int n_out, int n_slices, int t, int *lo, int *hi)
{
    *lo = (int)((int64_t)n_out * t / n_slices) & ~15;
    *hi = t == n_slices - 1 ? n_out : (int)((int64_t)n_out * (t + 1) / n_slices) & ~15;
}

/* Small batches (decode): OpenBLAS's sgemm packs the weight panel on every call, so for a few
 * input rows it moves the weights several times over. For 1 <= m <= LIN_SMALL_MAX rows the
 * lin_small kernel instead streams each weight row once and takes its dot products with every
 * input row while it is in cache: a register tile of 4 weight rows x 4 input rows, one 16-lane
 * accumulator per (weight row, input row) pair, k in chunks of 16 (a masked last chunk), then a
 * fixed horizontal sum. Every output element goes through exactly that sequence whichever tile
 * it falls in, so a sequence's results do not depend on which other sequences share its batch
 * or on the batch size within the range (reproducible greedy decoding). AVX-512 only; other
 * CPUs (lin_small NULL) use BLAS for every m. */
#ifndef LIN_SMALL_MIN
#define LIN_SMALL_MIN 2
#endif
#ifndef LIN_SMALL_MAX
#define LIN_SMALL_MAX 32
#endif

/* y[r][n] (+)= x[r] . w[n] for nw weight rows from n0 and nx input rows from r0 (nw, nx <= 4,
 * constants after inlining).
 * Not instrumented by ASan (like the OpenBLAS code it stands beside): instrumented, the 4x4
 * accumulator tile leaves the registers and batch-2 decode became slower than batch 1, which the
 * batching tests (run under ASan) would measure instead of the engine. Its loads stay within the
 * rows [lo, hi) x [0, n_in) that the sgemm path reads; test_forward checks it against the
 * reference. */
static inline __attribute__((always_inline, target("avx512f"), no_sanitize_address)) void
lin_tile512(float *restrict y, const float *restrict x, const float *restrict w, int n_out,
            int n_in, float beta, int r0, const int nx, int n0, const int nw)
{
    __m512 acc[4][4];
    const float *wr[4], *xr[4];
#pragma GCC unroll 4
    for (int i = 0; i < nw; i++) {
        wr[i] = w + (size_t)(n0 + i) * (size_t)n_in;
#pragma GCC unroll 4
        for (int j = 0; j < nx; j++)
            acc[i][j] = _mm512_setzero_ps();
    }
#pragma GCC unroll 4
    for (int j = 0; j < nx; j++)
        xr[j] = x + (size_t)(r0 + j) * (size_t)n_in;
    int k = 0;
    for (; k + 16 <= n_in; k += 16) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int i = 0; i < nw; i++)
            wv[i] = _mm512_loadu_ps(wr[i] + k);
#pragma GCC unroll 4
        for (int j = 0; j < nx; j++) {
            __m512 xv = _mm512_loadu_ps(xr[j] + k);
#pragma GCC unroll 4
            for (int i = 0; i < nw; i++)
                acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
        }
    }
    if (k < n_in) {
        __mmask16 mk = (__mmask16)((1u << (n_in - k)) - 1u);
        __m512 wv[4];
#pragma GCC unroll 4
        for (int i = 0; i < nw; i++)
            wv[i] = _mm512_maskz_loadu_ps(mk, wr[i] + k);
#pragma GCC unroll 4
        for (int j = 0; j < nx; j++) {
            __m512 xv = _mm512_maskz_loadu_ps(mk, xr[j] + k);
#pragma GCC unroll 4
            for (int i = 0; i < nw; i++)
                acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < nx; j++) {
        float *yr = y + (size_t)(r0 + j) * (size_t)n_out + n0;
#pragma GCC unroll 4
        for (int i = 0; i < nw; i++) {
            float v = _mm512_reduce_add_ps(acc[i][j]);
            yr[i] = beta == 0.0f ? v : v + beta * yr[i];
        }
    }
}

__attribute__((target("avx512f"), no_sanitize_address)) static void
lin_small_avx512(float *y, const float *x, const float *w, int m, int n_out, int n_in,
                 float beta, int lo, int hi)
{
    int n = lo;
    for (; n + 4 <= hi; n += 4) {
        int r = 0;
        for (; r + 4 <= m; r += 4)
            lin_tile512(y, x, w, n_out, n_in, beta, r, 4, n, 4);
        for (; r < m; r++)
            lin_tile512(y, x, w, n_out, n_in, beta, r, 1, n, 4);
    }
    for (; n < hi; n++) {
        int r = 0;
        for (; r + 4 <= m; r += 4)
            lin_tile512(y, x, w, n_out, n_in, beta, r, 4, n, 1);
        for (; r < m; r++)
            lin_tile512(y, x, w, n_out, n_in, beta, r, 1, n, 1);
    }
}

static lin_small_fn lin_small_pick(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return lin_small_avx512;
    return NULL;
}

/* The model has a matrix stored in a block type. */
static int model_has_block_types(const struct model *m)
{
    const struct model_weights *w = &m->w;
    int any = w->m_embd.type != GGML_TYPE_F32 || w->m_output.type != GGML_TYPE_F32;
    for (int l = 0; l < m->cfg.n_layer && !any; l++) {
        const struct layer_weights *L = &w->layers[l];
        any = L->mq.type || L->mk.type || L->mv.type || L->mo.type || L->m_gate.type ||
              L->m_up.type || L->m_down.type;
    }
    return any;
}

/* Output columns [lo, hi) of one product. */
static void lin_slice(float *y, const float *x, const float *w, int m, int n_out, int n_in,
                      float beta, int lo, int hi)
{
    if (hi <= lo)
        return;
    if (lin_small && m >= LIN_SMALL_MIN && m <= LIN_SMALL_MAX) {
        lin_small(y, x, w, m, n_out, n_in, beta, lo, hi);
        return;
    }
    const float *ws = w + (size_t)lo * (size_t)n_in;
    if (m == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, n_in, 1.0f, ws, n_in, x, 1, beta,
                    y + lo, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, hi - lo, n_in, 1.0f, x, n_in, ws,
                    n_in, beta, y + lo, n_out);
}

/* Weights as stored in F16, BF16 or a block type (Q8_0, Q4_0, ...; quant.h), columns [lo, hi):
 *  - one input row (decode): the fused dequantise-and-dot kernel streams each weight row once,
 *    so the bytes read per token are the file's weight bytes;
 *  - more rows: tiles of LIN_QTILE weight rows are dequantised into this thread's scratch and
 *    go through the f32 code above (the small-batch kernel or sgemm) with y's row stride.
 * Both are deterministic; like sgemv against sgemm for f32, the two differ in rounding. */
static void lin_slice_q(const struct forward *f, float *y, const float *x, struct weight_mat w,
                        int m, int n_out, int n_in, float beta, int lo, int hi)
{
    size_t rb = quant_row_bytes(w.type, (size_t)n_in);
    const unsigned char *wb = w.data;
    float *scratch = f->deq_scratch + (size_t)omp_get_thread_num() * f->deq_scratch_floats;
    if (m == 1) {
        if (beta == 0.0f) {
            quant_dot_rows(w.type, wb + (size_t)lo * rb, rb, x, y + lo, hi - lo, (size_t)n_in);
            return;
        }
        for (int n0 = lo; n0 < hi; n0 += LIN_QTILE) {
            int k = hi - n0 < LIN_QTILE ? hi - n0 : LIN_QTILE;
            quant_dot_rows(w.type, wb + (size_t)n0 * rb, rb, x, scratch, k, (size_t)n_in);
            for (int j = 0; j < k; j++)
                y[n0 + j] = scratch[j] + beta * y[n0 + j];
        }
        return;
    }
    for (int n0 = lo; n0 < hi; n0 += LIN_QTILE) {
        int k = hi - n0 < LIN_QTILE ? hi - n0 : LIN_QTILE;
        for (int j = 0; j < k; j++)
            quant_dequantize_row(w.type, wb + (size_t)(n0 + j) * rb, scratch + (size_t)j * n_in,
                                 (size_t)n_in);
        lin_slice(y + n0, x, scratch, m, n_out, n_in, beta, 0, k);
    }
}

static void lin_slice_w(const struct forward *f, float *y, const float *x, struct weight_mat w,
                        int m, int n_out, int n_in, float beta, int lo, int hi)
{
    if (hi <= lo)
        return;
    if (w.type == GGML_TYPE_F32)
        lin_slice(y, x, w.data, m, n_out, n_in, beta, lo, hi);
    else
        lin_slice_q(f, y, x, w, m, n_out, n_in, beta, lo, hi);
}

/* Up to 3 products of the same x[m][n_in] in one parallel loop. */
static void linear_multi(const struct forward *f, const float *x, int m, int n_in,
                         const struct lin *ls, int n_ls)
{
    int ns[3], total = 0;
    int64_t work = 0;
    for (int i = 0; i < n_ls; i++) {
        ns[i] = lin_slices(f, m, ls[i].n_out, n_in);
        total += ns[i];
        work += (int64_t)m * ls[i].n_out * n_in;
    }
    int n_team = total < f->n_threads ? total : f->n_threads;
    if (work < 2 * PAR_MIN_WORK)
        n_team = 1;
#pragma omp parallel for num_threads(n_team) schedule(dynamic, 1) if (n_team > 1)
    for (int t = 0; t < total; t++) {
        int i = 0, k = t, lo, hi;
        while (k >= ns[i])
            k -= ns[i++];
        lin_bounds(ls[i].n_out, ns[i], k, &lo, &hi);
        lin_slice_w(f, ls[i].y, x, ls[i].w, m, ls[i].n_out, n_in, ls[i].beta, lo, hi);
    }
}

static void linear(const struct forward *f, float *y, const float *x, struct weight_mat w, int m,
                   int n_out, int n_in, float beta)
{
    struct lin l = {y, w, n_out, beta};
    linear_multi(f, x, m, n_in, &l, 1);
}

/* hb = silu(x W_gate^T) * (x W_up^T), [m][n_ff]: both products and the SwiGLU for each slice of
 * n_ff columns in one task (hb2 holds the up projection). */
static void ffn_gate_up(const struct forward *f, float *hb, float *hb2, const float *x,
                        struct weight_mat w_gate, struct weight_mat w_up, int m, int n_ff,
                        int n_in)
{
    int n_slices = lin_slices(f, m, n_ff, n_in);
    int n_team = n_slices < f->n_threads ? n_slices : f->n_threads;
#pragma omp parallel for num_threads(n_team) schedule(dynamic, 1) if (n_team > 1)
    for (int t = 0; t < n_slices; t++) {
        int lo, hi;
        lin_bounds(n_ff, n_slices, t, &lo, &hi);
        lin_slice_w(f, hb, x, w_gate, m, n_ff, n_in, 0.0f, lo, hi);
        lin_slice_w(f, hb2, x, w_up, m, n_ff, n_in, 0.0f, lo, hi);
        for (int r = 0; r < m; r++) {
            float *restrict g = hb + (size_t)r * n_ff;
            const float *restrict u = hb2 + (size_t)r * n_ff;
            for (int j = lo; j < hi; j++)
                g[j] = g[j] / (1.0f + expf(-g[j])) * u[j];
        }
    }
}

static void rmsnorm(float *restrict out, const float *restrict x, const float *restrict w, int n,
                    float eps)
{
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int j = 0; j < n; j++)
        ss += x[j] * x[j];
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
#pragma omp simd
    for (int j = 0; j < n; j++)
        out[j] = x[j] * scale * w[j];
}

/* Rotates one head vector in place. NORM pairs (2j, 2j+1) as llama.cpp does for llama; NEOX
 * pairs (j, j + head_dim/2) as for qwen2. */
static void rope_apply(float *restrict v, const float *restrict cs, const float *restrict sn,
                       int head_dim, enum rope_mode mode)
{
    int half = head_dim / 2;
    if (mode == ROPE_MODE_NEOX) {
        for (int j = 0; j < half; j++) {
            float x0 = v[j], x1 = v[j + half];
            v[j] = x0 * cs[j] - x1 * sn[j];
            v[j + half] = x0 * sn[j] + x1 * cs[j];
        }
    } else {
        for (int j = 0; j < half; j++) {
            float x0 = v[2 * j], x1 = v[2 * j + 1];
            v[2 * j] = x0 * cs[j] - x1 * sn[j];
            v[2 * j + 1] = x0 * sn[j] + x1 * cs[j];
        }
    }
}

static inline __attribute__((always_inline)) float dot(const float *restrict a,
                                                       const float *restrict b, int n)
{
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int j = 0; j < n; j++)
        acc += a[j] * b[j];
    return acc;
}

/* Attention of one query head of one token over positions 0..pos of its sequence.
 * att: scratch of at least pos + 1 floats. out: [head_dim]. Inlined into one function per
 * instruction set below; forward_new picks one from the CPU's features (no ifunc: resolvers
 * run before the sanitizer runtimes start). */
static inline __attribute__((always_inline)) void
attend_body(float *restrict out, const float *restrict qh, float *restrict att,
            const struct kv_cache *kv, const struct kv_seq *sq, int layer, int kv_off, int pos,
            int head_dim, float scale)
{
    const int bs = kv->block_size, kv_dim = kv->kv_dim, n_ctx = pos + 1;
    float maxv = -INFINITY;
    for (int t0 = 0, bi = 0; t0 < n_ctx; t0 += bs, bi++) {
        const float *kb = kv_k(kv, layer, sq->blocks[bi]) + kv_off;
        int nt = n_ctx - t0 < bs ? n_ctx - t0 : bs;
        for (int t = 0; t < nt; t++) {
            float d = dot(qh, kb + (size_t)t * kv_dim, head_dim) * scale;
            att[t0 + t] = d;
            if (d > maxv)
                maxv = d;
        }
    }
    float sum = 0.0f;
    for (int t = 0; t < n_ctx; t++) {
        float e = expf(att[t] - maxv);
        att[t] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < head_dim; j++)
        out[j] = 0.0f;
    for (int t0 = 0, bi = 0; t0 < n_ctx; t0 += bs, bi++) {
        const float *vb = kv_v(kv, layer, sq->blocks[bi]) + kv_off;
        int nt = n_ctx - t0 < bs ? n_ctx - t0 : bs;
        for (int t = 0; t < nt; t++) {
            const float *restrict vt = vb + (size_t)t * kv_dim;
            float w = att[t0 + t] * inv;
#pragma omp simd
            for (int j = 0; j < head_dim; j++)
                out[j] += w * vt[j];
        }
    }
}

static void attend_base(float *out, const float *qh, float *att, const struct kv_cache *kv,
                        const struct kv_seq *sq, int layer, int kv_off, int pos, int head_dim,
                        float scale)
{
    attend_body(out, qh, att, kv, sq, layer, kv_off, pos, head_dim, scale);
}

__attribute__((target("avx2,fma"))) static void
attend_avx2(float *out, const float *qh, float *att, const struct kv_cache *kv,
            const struct kv_seq *sq, int layer, int kv_off, int pos, int head_dim, float scale)
{
    attend_body(out, qh, att, kv, sq, layer, kv_off, pos, head_dim, scale);
}

__attribute__((target("avx512f"))) static void
attend_avx512(float *out, const float *qh, float *att, const struct kv_cache *kv,
              const struct kv_seq *sq, int layer, int kv_off, int pos, int head_dim, float scale)
{
    attend_body(out, qh, att, kv, sq, layer, kv_off, pos, head_dim, scale);
}

static attend_fn attend_pick(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return attend_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return attend_avx2;
    return attend_base;
}

/* Attention of nq consecutive queries (batch rows i0.., consecutive positions of one sequence)
 * for every query head of KV head g: S = Q K^T and O = P V as sgemms over chunks of keys, with
 * an online softmax (running max and sum per row, earlier output rescaled when the max grows).
 * Rows r = hh * nq + qi (hh: head within the group). scr: the calling thread's scratch. */
static void attend_tile(const struct forward *f, const struct kv_cache *kv,
                        const struct forward_batch *b, int layer, int i0, int nq, int g,
                        float *scr)
{
    const struct model_config *c = &f->model->cfg;
    const struct run_state *s = &f->s;
    const int hd = c->head_dim, group = c->n_head / c->n_head_kv, q_dim = c->n_head * hd;
    const int kv_dim = kv->kv_dim, bs = kv->block_size, rows = nq * group;
    const int rows_max = ATT_TILE_Q * group;
    float *qs = scr, *o = qs + (size_t)rows_max * hd, *sc = o + (size_t)rows_max * hd;
    float *kc = sc + (size_t)rows_max * ATT_CHUNK_K, *vc = kc + (size_t)ATT_CHUNK_K * hd;
    float *mrow = vc + (size_t)ATT_CHUNK_K * hd, *lrow = mrow + rows_max;
    const float scale = 1.0f / sqrtf((float)hd);
    const struct kv_seq *sq = b->seqs[b->seq[i0]];
    const int p_first = b->pos[i0], ctx = b->pos[i0 + nq - 1] + 1;

    for (int hh = 0; hh < group; hh++) {
        for (int qi = 0; qi < nq; qi++) {
            int r = hh * nq + qi;
            const float *src = s->q + (size_t)(i0 + qi) * q_dim + (size_t)(g * group + hh) * hd;
            memcpy(qs + (size_t)r * hd, src, (size_t)hd * sizeof(float));
            memset(o + (size_t)r * hd, 0, (size_t)hd * sizeof(float));
            mrow[r] = -INFINITY;
            lrow[r] = 0.0f;
        }
    }
    for (int k0 = 0; k0 < ctx; k0 += ATT_CHUNK_K) {
        int n_k = ctx - k0 < ATT_CHUNK_K ? ctx - k0 : ATT_CHUNK_K;
        for (int t = 0; t < n_k;) { /* gather this KV head's rows, one block at a time */
            int p = k0 + t, blk = sq->blocks[p / bs], off = p % bs;
            int run = bs - off < n_k - t ? bs - off : n_k - t;
            const float *ks = kv_k(kv, layer, blk) + (size_t)off * kv_dim + (size_t)g * hd;
            const float *vs = kv_v(kv, layer, blk) + (size_t)off * kv_dim + (size_t)g * hd;
            const size_t row_bytes = (size_t)hd * sizeof(float);
            for (int u = 0; u < run; u++) {
                memcpy(kc + (size_t)(t + u) * hd, ks + (size_t)u * kv_dim, row_bytes);
                memcpy(vc + (size_t)(t + u) * hd, vs + (size_t)u * kv_dim, row_bytes);
            }
            t += run;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_k, hd, scale, qs, hd, kc, hd,
                    0.0f, sc, ATT_CHUNK_K);
        for (int r = 0; r < rows; r++) {
            float *row = sc + (size_t)r * ATT_CHUNK_K;
            int n_valid = p_first + r % nq - k0 + 1; /* causal: keys <= this query's position */
            if (n_valid > n_k)
                n_valid = n_k;
            if (n_valid <= 0) {
                memset(row, 0, (size_t)n_k * sizeof(float));
                continue;
            }
            float mx = row[0];
            for (int t = 1; t < n_valid; t++)
                mx = row[t] > mx ? row[t] : mx;
            float m_new = mx > mrow[r] ? mx : mrow[r];
            float corr = expf(mrow[r] - m_new), sum = 0.0f;
            for (int t = 0; t < n_valid; t++) {
                float e = expf(row[t] - m_new);
                row[t] = e;
                sum += e;
            }
            for (int t = n_valid; t < n_k; t++)
                row[t] = 0.0f;
            lrow[r] = lrow[r] * corr + sum;
            mrow[r] = m_new;
            if (corr != 1.0f) {
                float *orow = o + (size_t)r * hd;
                for (int j = 0; j < hd; j++)
                    orow[j] *= corr;
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n_k, 1.0f, sc,
                    ATT_CHUNK_K, vc, hd, 1.0f, o, hd);
    }
    for (int hh = 0; hh < group; hh++) {
        for (int qi = 0; qi < nq; qi++) {
            int r = hh * nq + qi;
            float inv = 1.0f / lrow[r];
            float *dst = s->att_out + (size_t)(i0 + qi) * q_dim + (size_t)(g * group + hh) * hd;
            const float *src = o + (size_t)r * hd;
            for (int j = 0; j < hd; j++)
                dst[j] = src[j] * inv;
        }
    }
}

const char *forward_path_str(enum forward_path p)
{
    switch (p) {
    case FORWARD_PATH_GEMV:
        return "gemv";
    case FORWARD_PATH_SMALL:
        return "small";
    case FORWARD_PATH_GEMM:
        return "gemm";
    case FORWARD_PATH_ATT_TILE:
        return "attention-tile";
    case FORWARD_PATH_ATT_SHORT:
        return "attention-short";
    case FORWARD_PATH_COUNT:
        break;
    }
    return "unknown";
}

/* The path lin_slice takes for m input rows. */
static enum forward_path lin_path(int m)
{
    if (lin_small && m >= LIN_SMALL_MIN && m <= LIN_SMALL_MAX)
        return FORWARD_PATH_SMALL;
    return m == 1 ? FORWARD_PATH_GEMV : FORWARD_PATH_GEMM;
}

/* Counts the paths one step takes (layer products over n rows, the output projection over
 * n_logits rows, the attention kinds). */
static void count_paths(struct forward *f, int n, int n_logits, int n_tiles, int n_short)
{
    int used[FORWARD_PATH_COUNT] = {0};
    used[lin_path(n)] = 1;
    if (n_logits > 0)
        used[lin_path(n_logits)] = 1;
    used[FORWARD_PATH_ATT_TILE] = n_tiles > 0;
    used[FORWARD_PATH_ATT_SHORT] = n_short > 0;
    for (int p = 0; p < FORWARD_PATH_COUNT; p++)
        f->path_runs[p] += (uint64_t)used[p];
    f->n_runs++;
}

/* Sorts the batch's tokens for attention: runs of >= ATT_RUN_MIN consecutive positions of one
 * sequence become tiles (attend_tile), the rest go to the per-(token, head) loop. */
static void plan_attention(struct forward *f, const struct forward_batch *b, int *n_short,
                           int *n_tiles)
{
    struct run_state *s = &f->s;
    const int n_kv = f->model->cfg.n_head_kv;
    int ns = 0, nt = 0;
    for (int i = 0; i < b->n_tokens;) {
        int j = i + 1;
        while (j < b->n_tokens && b->seq[j] == b->seq[i] && b->pos[j] == b->pos[j - 1] + 1)
            j++;
        if (j - i >= ATT_RUN_MIN) {
            for (int q = i; q < j; q += ATT_TILE_Q) {
                for (int g = 0; g < n_kv && nt < f->max_tiles; g++) {
                    s->tile_i0[nt] = q;
                    s->tile_n[nt] = j - q < ATT_TILE_Q ? j - q : ATT_TILE_Q;
                    s->tile_g[nt] = g;
                    nt++;
                }
            }
        } else {
            for (int k = i; k < j; k++)
                s->short_tok[ns++] = k;
        }
        i = j;
    }
    *n_short = ns;
    *n_tiles = nt;
}

static int batch_valid(const struct forward *f, const struct kv_cache *kv,
                       const struct forward_batch *b, int *n_logits, int64_t *n_ctx_sum)
{
    const struct model_config *c = &f->model->cfg;
    if (b->n_tokens < 1 || b->n_tokens > f->max_tokens || b->n_seqs < 1 || !b->seqs)
        return 0;
    if (kv->kv_dim != c->n_head_kv * c->head_dim || kv->n_layer != c->n_layer)
        return 0;
    int nl = 0;
    int64_t ctx = 0;
    for (int i = 0; i < b->n_tokens; i++) {
        int sidx = b->seq[i], p = b->pos[i];
        if (sidx < 0 || sidx >= b->n_seqs || !b->seqs[sidx])
            return 0;
        if (b->token[i] < 0 || b->token[i] >= c->n_vocab || p < 0 || p >= f->max_ctx)
            return 0;
        const struct kv_seq *sq = b->seqs[sidx];
        int bi = p / kv->block_size;
        if (bi >= sq->n_blocks || sq->blocks[bi] < 0 || sq->blocks[bi] >= kv->n_blocks)
            return 0;
        nl += b->wants_logits[i] ? 1 : 0;
        ctx += p + 1;
    }
    if (nl > f->max_logits)
        return 0;
    *n_logits = nl;
    *n_ctx_sum = ctx;
    return 1;
}

enum forward_status forward_run(struct forward *f, struct kv_cache *kv,
                                const struct forward_batch *b, int *n_logits_out)
{
    const struct model *m = f->model;
    const struct model_config *c = &m->cfg;
    struct run_state *s = &f->s;
    int n_logits = 0;
    int64_t n_ctx_sum = 0;
    *n_logits_out = 0;
    if (!batch_valid(f, kv, b, &n_logits, &n_ctx_sum))
        return FORWARD_ERR_BATCH;
    if (f->dev) {
        enum forward_status st = dev_forward_run(f->dev, kv, b, n_logits_out);
        f->n_runs += st == FORWARD_OK;
        return st;
    }

    const int n = b->n_tokens, E = c->n_embd, hd = c->head_dim, half = hd / 2;
    const int q_dim = c->n_head * hd, kv_dim = c->n_head_kv * hd, F = c->n_ff;
    const int group = c->n_head / c->n_head_kv, nt = f->n_threads;
    const float scale = 1.0f / sqrtf((float)hd);
    const enum rope_mode mode = c->arch == MODEL_ARCH_QWEN2 ? ROPE_MODE_NEOX : ROPE_MODE_NORM;
    /* Which loops are worth the team (see PAR_MIN_WORK). */
    const int par_embd = (int64_t)n * (E + 40 * half) >= PAR_MIN_WORK;
    const int par_norm = (int64_t)n * E * 3 >= PAR_MIN_WORK;
    const int par_rope = (int64_t)n * (q_dim + 2 * kv_dim) * 3 >= PAR_MIN_WORK;
    const int par_att = n_ctx_sum * c->n_head * hd * 2 >= PAR_MIN_WORK;

    int n_short = 0, n_tiles = 0;
    plan_attention(f, b, &n_short, &n_tiles);

    /* Embeddings and this step's RoPE angles (shared by every layer and head). */
#pragma omp parallel for num_threads(nt) schedule(static) if (par_embd)
    for (int i = 0; i < n; i++) {
        if (m->w.m_embd.type == GGML_TYPE_F32)
            memcpy(s->x + (size_t)i * E, m->w.token_embd + (size_t)b->token[i] * E,
                   (size_t)E * sizeof(float));
        else
            quant_dequantize_row(m->w.m_embd.type,
                                 (const unsigned char *)m->w.m_embd.data +
                                     (size_t)b->token[i] * quant_row_bytes(m->w.m_embd.type, E),
                                 s->x + (size_t)i * E, (size_t)E);
        float *cs = s->rope_cos + (size_t)i * half, *sn = s->rope_sin + (size_t)i * half;
        for (int j = 0; j < half; j++) {
            double a = (double)b->pos[i] * f->rope_inv_freq[j];
            cs[j] = (float)cos(a);
            sn[j] = (float)sin(a);
        }
    }

    const int n_layer = f->n_layers_run > 0 && f->n_layers_run < c->n_layer ? f->n_layers_run
                                                                              : c->n_layer;
    for (int l = 0; l < n_layer; l++) {
        const struct layer_weights *L = &m->w.layers[l];

#pragma omp parallel for num_threads(nt) schedule(static) if (par_norm)
        for (int i = 0; i < n; i++)
            rmsnorm(s->xb + (size_t)i * E, s->x + (size_t)i * E, L->attn_norm, E, c->norm_eps);

        const struct lin qkv[3] = {
            {s->q, L->mq, q_dim, 0.0f}, {s->k, L->mk, kv_dim, 0.0f}, {s->v, L->mv, kv_dim, 0.0f}};
        linear_multi(f, s->xb, n, E, qkv, 3);

        /* Biases, RoPE, and K/V into each token's block at its position. */
#pragma omp parallel for num_threads(nt) schedule(static) if (par_rope)
        for (int i = 0; i < n; i++) {
            float *qi = s->q + (size_t)i * q_dim, *ki = s->k + (size_t)i * kv_dim;
            float *vi = s->v + (size_t)i * kv_dim;
            if (L->bq) {
                for (int j = 0; j < q_dim; j++)
                    qi[j] += L->bq[j];
                for (int j = 0; j < kv_dim; j++) {
                    ki[j] += L->bk[j];
                    vi[j] += L->bv[j];
                }
            }
            const float *cs = s->rope_cos + (size_t)i * half, *sn = s->rope_sin + (size_t)i * half;
            for (int h = 0; h < c->n_head; h++)
                rope_apply(qi + (size_t)h * hd, cs, sn, hd, mode);
            for (int h = 0; h < c->n_head_kv; h++)
                rope_apply(ki + (size_t)h * hd, cs, sn, hd, mode);
            const struct kv_seq *sq = b->seqs[b->seq[i]];
            int p = b->pos[i], blk = sq->blocks[p / kv->block_size];
            size_t off = (size_t)(p % kv->block_size) * (size_t)kv_dim;
            memcpy(kv_k(kv, l, blk) + off, ki, (size_t)kv_dim * sizeof(float));
            memcpy(kv_v(kv, l, blk) + off, vi, (size_t)kv_dim * sizeof(float));
        }

        /* Attention. Prefill runs: tiles through sgemm, heaviest (latest positions) first.
         * Decode and short runs: every (token, head) pair on its own; contexts differ in
         * length, so both loops hand out work dynamically. */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (par_att && n_tiles > 1)
        for (int t = n_tiles - 1; t >= 0; t--)
            attend_tile(f, kv, b, l, s->tile_i0[t], s->tile_n[t], s->tile_g[t],
                        s->tile_scratch + (size_t)omp_get_thread_num() * f->tile_scratch_floats);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (par_att && n_short > 0)
        for (int task = 0; task < n_short * c->n_head; task++) {
            int i = s->short_tok[task / c->n_head], h = task % c->n_head;
            float *att = s->att + (size_t)omp_get_thread_num() * (size_t)f->max_ctx;
            attend(s->att_out + (size_t)i * q_dim + (size_t)h * hd,
                   s->q + (size_t)i * q_dim + (size_t)h * hd, att, kv, b->seqs[b->seq[i]], l,
                   (h / group) * hd, b->pos[i], hd, scale);
        }

        /* x += att_out wo^T (the residual is BLAS's beta = 1). */
        linear(f, s->x, s->att_out, L->mo, n, E, q_dim, 1.0f);

#pragma omp parallel for num_threads(nt) schedule(static) if (par_norm)
        for (int i = 0; i < n; i++)
            rmsnorm(s->xb + (size_t)i * E, s->x + (size_t)i * E, L->ffn_norm, E, c->norm_eps);

        ffn_gate_up(f, s->hb, s->hb2, s->xb, L->m_gate, L->m_up, n, F, E);
        linear(f, s->x, s->hb, L->m_down, n, E, F, 1.0f);
    }

    /* Final norm and the output projection, only for rows that want logits. */
    int r = 0;
    for (int i = 0; i < n; i++)
        if (b->wants_logits[i])
            s->logit_rows[r++] = i;
#pragma omp parallel for num_threads(nt) schedule(static) if (par_norm)
    for (int k = 0; k < n_logits; k++)
        rmsnorm(s->xl + (size_t)k * E, s->x + (size_t)s->logit_rows[k] * E, m->w.output_norm, E,
                c->norm_eps);
    if (n_logits > 0)
        linear(f, s->logits, s->xl, m->w.m_output, n_logits, c->n_vocab, E, 0.0f);
    count_paths(f, n, n_logits, n_tiles, n_short);
    *n_logits_out = n_logits;
    return FORWARD_OK;
}
