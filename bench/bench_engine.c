/* bench_engine: the embedded runtime's speed against this machine's own limits.
 * Measures, in one process and one run:
 *   - memory bandwidth (STREAM-style copy, all threads) -> the batch-1 decode bound
 *     (bytes of f32 weights read per token / bandwidth);
 *   - OpenBLAS sgemm FLOP/s at prefill-like shapes -> the prefill bound;
 *   - engine prefill tokens/s at 512- and 2048-token prompts (TTFT of a max_tokens=1 request);
 *   - engine decode tokens/s at 1, 4, 16, 64 concurrent sequences;
 *   - prefix caching: a ~1,024-token shared prefix + ~32-token suffix, 32 variants, caching off vs
 *     on, sequential and at concurrency 8 (TTFT and e2e medians);
 *   - weights as stored: `model init`-style files in f16, bf16, q8_0 and q4_k_m (written to
 *     bench/out/, loaded by mmap), each: batch-1 decode against the read-bandwidth bound (bytes
 *     of weights as stored / bandwidth), prefill of 512 tokens against the sgemm bound, and 16
 *     concurrent sequences against min(sgemm bound, 16 x the bandwidth bound); medians of 3.
 * BENCH_QUICK=1 shortens everything; BENCH_STORED_ONLY=1 runs only the last part; BENCH_KERNEL=
 * portable|avx2|avx512 forces the quantised kernels (dots and tile dequantisers) of that set.
 * It talks to the engine through engine.h only (no HTTP), so the numbers are the engine's.
 * Writes a Markdown section to stdout and JSON to bench/out/engine.json. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/blas_env.h"
#include "engine/engine.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "measure/stats.h"
#include "util/buf.h"
#include "util/clock.h"

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n_done;
    int n_tokens;
};

struct req_ctx {
    struct waiter *w;
    mono_ns t_submit_ns;
    mono_ns t_first_ns;
    mono_ns t_done_ns;
    int n_tokens;
    int n_cached;
};

static void on_event(void *ud, const struct engine_event *ev)
{
    struct req_ctx *r = ud;
    if (ev->token >= 0) {
        if (!r->t_first_ns)
            r->t_first_ns = ev->t_event_ns;
        r->n_tokens++;
    }
    if (ev->finish != ENGINE_FINISH_NONE) {
        r->n_cached = ev->n_cached;
        r->t_done_ns = ev->t_event_ns;
        pthread_mutex_lock(&r->w->mu);
        r->w->n_done++;
        r->w->n_tokens += r->n_tokens;
        pthread_cond_signal(&r->w->cv);
        pthread_mutex_unlock(&r->w->mu);
    }
}

static void fill_prompt(int32_t *p, int n, uint64_t seed)
{
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (int i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = 'a' + (int)((s >> 33) % 26);
    }
}

/* Runs n requests with at most conc in flight; fills ctx[]. Returns wall seconds. */
static double run_batch(struct engine *e, int32_t **prompts, const int *n_prompt, int n, int conc,
                        int max_tokens, struct req_ctx *ctx)
{
    struct waiter w = {.n_done = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    mono_ns t0 = clock_now_ns();
    int next = 0;
    pthread_mutex_lock(&w.mu);
    while (w.n_done < n) {
        while (next < n && next - w.n_done < conc) {
            memset(&ctx[next], 0, sizeof ctx[next]);
            ctx[next].w = &w;
            ctx[next].t_submit_ns = clock_now_ns();
            struct engine_request rq = {.prompt = prompts[next], .n_prompt = n_prompt[next]};
            rq.sp.max_tokens = max_tokens;
            rq.sp.temperature = 0;
            rq.sp.top_p = 1;
            rq.sp.ignore_eos = 1;
            uint64_t id;
            pthread_mutex_unlock(&w.mu);
            enum engine_status st = engine_submit(e, &rq, on_event, &ctx[next], &id);
            pthread_mutex_lock(&w.mu);
            if (st != ENGINE_OK) {
                fprintf(stderr, "bench: submit failed: %s\n", engine_status_str(st));
                exit(1);
            }
            next++;
        }
        pthread_cond_wait(&w.cv, &w.mu);
    }
    pthread_mutex_unlock(&w.mu);
    double s = ns_to_s(clock_now_ns() - t0);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return s;
}

static double stream_copy_gbs(size_t bytes)
{
    size_t n = bytes / sizeof(float);
    float *a = xmalloc(n * sizeof(float)), *b = xmalloc(n * sizeof(float));
#pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)i;
        b[i] = 0;
    }
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        mono_ns t0 = clock_now_ns();
#pragma omp parallel for
        for (size_t i = 0; i < n; i++)
            b[i] = a[i];
        double s = ns_to_s(clock_now_ns() - t0);
        double gbs = 2.0 * (double)n * sizeof(float) / s / 1e9; /* read + write */
        if (gbs > best)
            best = gbs;
    }
    volatile float sink = b[n / 2];
    (void)sink;
    free(a);
    free(b);
    return best;
}

/* Read-only bandwidth: what batch-1 decode needs (it streams the weights, writes little). */
static double stream_read_gbs(size_t bytes)
{
    size_t n = bytes / sizeof(float);
    float *a = xmalloc(n * sizeof(float));
#pragma omp parallel for
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(i & 1023);
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        mono_ns t0 = clock_now_ns();
        float sum = 0;
#pragma omp parallel for simd reduction(+ : sum)
        for (size_t i = 0; i < n; i++)
            sum += a[i];
        double s = ns_to_s(clock_now_ns() - t0);
        volatile float sink = sum;
        (void)sink;
        double gbs = (double)n * sizeof(float) / s / 1e9;
        if (gbs > best)
            best = gbs;
    }
    free(a);
    return best;
}

static double sgemm_gflops(int m, int nn, int k)
{
    float *x = xcalloc((size_t)m * k, sizeof(float));
    float *w = xcalloc((size_t)nn * k, sizeof(float));
    float *y = xcalloc((size_t)m * nn, sizeof(float));
    for (size_t i = 0; i < (size_t)m * k; i++)
        x[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)nn * k; i++)
        w[i] = (float)(i % 5) * 0.1f;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        mono_ns t0 = clock_now_ns();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, nn, k, 1.0f, x, k, w, k, 0.0f, y,
                    nn);
        double s = ns_to_s(clock_now_ns() - t0);
        double g = 2.0 * m * nn * k / s / 1e9;
        if (g > best)
            best = g;
    }
    free(x);
    free(w);
    free(y);
    return best;
}

static double median_of(double *v, size_t n)
{
    struct summary s;
    summary_of(v, n, &s);
    return s.p50;
}

/* Decode tokens/s of k sequences (16-token prompts, out_tokens each) over the span from the
 * first first-token to the last finish. */
static double decode_rate(struct engine *e, int k, int out_tokens, uint64_t seed)
{
    int32_t **ps = xcalloc((size_t)k, sizeof *ps);
    int *ns = xcalloc((size_t)k, sizeof *ns);
    for (int j = 0; j < k; j++) {
        ns[j] = 16;
        ps[j] = xmalloc(16 * sizeof(int32_t));
        fill_prompt(ps[j], 16, seed + (uint64_t)j);
    }
    struct req_ctx *ctx = xcalloc((size_t)k, sizeof *ctx);
    run_batch(e, ps, ns, k, k, out_tokens, ctx);
    mono_ns first = UINT64_MAX, last = 0;
    for (int j = 0; j < k; j++) {
        if (ctx[j].t_first_ns < first)
            first = ctx[j].t_first_ns;
        if (ctx[j].t_done_ns > last)
            last = ctx[j].t_done_ns;
    }
    double tps = (double)k * (out_tokens - 1) / ns_to_s(last - first);
    for (int j = 0; j < k; j++)
        free(ps[j]);
    free(ps);
    free(ns);
    free(ctx);
    return tps;
}

/* Prefill tokens/s of one n-token prompt (TTFT of a max_tokens=1 request). */
static double prefill_rate(struct engine *e, int n, uint64_t seed)
{
    int32_t *p = xmalloc((size_t)n * sizeof *p);
    fill_prompt(p, n, seed);
    struct req_ctx ctx;
    run_batch(e, &p, &n, 1, 1, 1, &ctx);
    free(p);
    return n / ns_to_s(ctx.t_first_ns - ctx.t_submit_ns);
}

struct stored_result {
    enum model_dtype dtype;
    uint64_t weight_bytes;                /* as loaded: block types and f16 as stored, norms f32 */
    double decode1, prefill512, decode16; /* medians, tokens/s */
    double kernel_bound; /* tokens/s the fused kernels allow with every thread busy */
};

/* Values per second one thread's fused dequantise-and-dot kernel gets through on a
 * cache-resident 64 x n_in matrix of type (best of 50): the compute ceiling of decode. */
static double kernel_rate(uint32_t type, size_t n_in)
{
    enum { ROWS = 64 };
    size_t rb = quant_row_bytes(type, n_in);
    float *w = xmalloc(n_in * ROWS * sizeof *w), *x = xmalloc(n_in * sizeof *x), y[ROWS];
    unsigned char *q = xmalloc(rb * ROWS);
    for (size_t i = 0; i < n_in * ROWS; i++)
        w[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < n_in; i++)
        x[i] = (float)(i % 13) * 0.01f;
    for (int r = 0; r < ROWS; r++)
        quant_quantize_row(type, w + (size_t)r * n_in, q + (size_t)r * rb, n_in);
    double best = 1e30;
    for (int rep = 0; rep < 50; rep++) {
        mono_ns t0 = clock_now_ns();
        quant_dot_rows(type, q, rb, x, y, ROWS, n_in);
        double t = ns_to_s(clock_now_ns() - t0);
        best = t < best ? t : best;
    }
    free(w), free(x), free(q);
    return (double)(n_in * ROWS) / best;
}

/* Decode tokens/s if every matrix product ran at its type's kernel_rate on n_threads threads
 * (the output projection included, the embedding lookup not). */
static double kernel_bound_of(const struct model_config *cfg, enum model_dtype d, int n_threads)
{
    int n = model_tensors(cfg, NULL);
    struct model_tensor_desc *t = xcalloc((size_t)n, sizeof *t);
    model_tensors(cfg, t);
    double rates[MODEL_N_GGML_TYPES] = {0}, s_per_token = 0;
    for (int i = 0; i < n; i++) {
        uint32_t type = model_tensor_type(cfg, &t[i], d);
        if (t[i].n_dims != 2 || !strcmp(t[i].name, "token_embd.weight"))
            continue;
        if (!rates[type])
            rates[type] = kernel_rate(type, (size_t)t[i].ne[0]);
        s_per_token += (double)(t[i].ne[0] * t[i].ne[1]) / rates[type];
    }
    free(t);
    return n_threads / s_per_token;
}

/* One file of cfg in dtype: written, loaded by mmap, measured. 0 or -1. */
static int bench_stored(const struct model_config *cfg, enum model_dtype d, int n_threads,
                        int quick, struct stored_result *r)
{
    char path[256], err[512];
    snprintf(path, sizeof path, "bench/out/bench-%s.gguf", model_dtype_str(d));
    dir_make_all("bench/out");
    if (model_write_gguf(cfg, 1, d, path, err, sizeof err)) {
        fprintf(stderr, "bench: %s\n", err);
        return -1;
    }
    struct model *m = model_load(path, MODEL_LOAD_MMAP, err, sizeof err);
    if (!m) {
        fprintf(stderr, "bench: %s\n", err);
        return -1;
    }
    struct engine_config ec;
    engine_config_defaults(&ec);
    ec.max_model_len = 1024;
    ec.max_num_batched_tokens = 1024;
    ec.kv_cache_memory_bytes = (uint64_t)model_kv_bytes_per_token(cfg, 4) * 20000;
    ec.n_threads = n_threads;
    struct engine *e = engine_new(&ec, m, err, sizeof err);
    if (!e) {
        fprintf(stderr, "bench: %s\n", err);
        model_free(m);
        return -1;
    }
    engine_warmup(e);
    engine_start(e);
    double v1[3], vp[3], v16[3];
    int reps = quick ? 1 : 3, out = quick ? 24 : 48;
    for (int k = 0; k < reps; k++) {
        v1[k] = decode_rate(e, 1, out, 7000 + (uint64_t)k);
        vp[k] = prefill_rate(e, 512, 7100 + (uint64_t)k);
        v16[k] = decode_rate(e, 16, out, 7200 + 100 * (uint64_t)k);
    }
    r->dtype = d;
    r->weight_bytes = m->weight_bytes;
    r->decode1 = median_of(v1, (size_t)reps);
    r->prefill512 = median_of(vp, (size_t)reps);
    r->decode16 = median_of(v16, (size_t)reps);
    r->kernel_bound = kernel_bound_of(cfg, d, n_threads);
    fprintf(stderr, "bench: %s: decode %.1f, prefill %.0f, 16 seqs %.1f tokens/s\n",
            model_dtype_str(d), r->decode1, r->prefill512, r->decode16);
    engine_stop(e);
    engine_free(e);
    model_free(m);
    unlink(path);
    return 0;
}

static void print_stored(const char *preset, const struct model_config *cfg,
                         const struct stored_result *r, int n, double bw, double gf)
{
    double prefill_bound = gf * 1e9 / (2.0 * (double)model_n_params(cfg));
    printf("## Weights as stored (`%s` files, mmap, medians of 3, %s quantised kernels)\n\n",
           preset, quant_kernel_name());
    printf("Bounds from this run: batch-1 decode = %.1f GB/s read bandwidth / weight bytes as "
           "stored; prefill and compute = %.1f GFLOP/s sgemm / 2 x params = %.0f tokens/s; 16 "
           "sequences = min(compute bound, 16 x decode bound). Kernel bound: decode tokens/s if "
           "every "
           "matrix product ran at its type's fused-kernel speed on a cache-resident matrix (one "
           "thread, x threads), the compute ceiling of batch-1 decode.\n\n",
           bw, gf, prefill_bound);
    printf("| file | weight MiB | decode 1, tok/s | of bound | kernel bound | prefill 512, tok/s "
           "| of sgemm | 16 seqs, tok/s | of bound |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        double db = bw * 1e9 / (double)r[i].weight_bytes;
        double b16 = 16 * db < prefill_bound ? 16 * db : prefill_bound;
        printf("| %s | %.1f | %.1f | %.0f%% (bound %.1f) | %.1f | %.0f | %.0f%% | %.1f | %.0f%% "
               "(bound %.0f) |\n",
               model_dtype_str(r[i].dtype), (double)r[i].weight_bytes / 1048576.0, r[i].decode1,
               100 * r[i].decode1 / db, db, r[i].kernel_bound, r[i].prefill512,
               100 * r[i].prefill512 / prefill_bound, r[i].decode16, 100 * r[i].decode16 / b16,
               b16);
    }
    printf("\n");
}

/* The f32 engine's numbers, and this machine's limits they are set against. */
struct engine_bench {
    double bw, bw_copy, gf, gf_ffn, gf_attn; /* GB/s read and copy; sgemm GFLOP/s */
    double decode_bound, prefill_bound;      /* tokens/s */
    int prefill_lens[2];
    double prefill_tps[2];
    int conc[4];
    double decode_tps[4];
    double pc_ttft[2][2], pc_e2e[2][2], pc_hit_frac[2][2]; /* [caching][sequential, conc 8] */
};

enum { PC_VARIANTS = 32, PC_PREFIX = 1024, PC_SUFFIX = 32, PC_OUT = 16 };

static struct engine *engine_for_bench(const struct model_config *cfg, struct model *m,
                                       int n_threads, int prefix_caching)
{
    struct engine_config ec;
    char err[512];
    engine_config_defaults(&ec);
    ec.max_model_len = 2304;
    ec.max_num_batched_tokens = 2048;
    ec.kv_cache_memory_bytes = (uint64_t)model_kv_bytes_per_token(cfg, 4) * 40000;
    ec.n_threads = n_threads;
    ec.enable_prefix_caching = prefix_caching;
    struct engine *e = engine_new(&ec, m, err, sizeof err);
    if (!e) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    engine_warmup(e);
    engine_start(e);
    return e;
}

/* Prefill (TTFT of single requests, median of 3) and decode at 1, 4, 16 and 64 sequences. */
static void bench_throughput(const struct model_config *cfg, struct model *m, int n_threads,
                             int quick, struct engine_bench *b)
{
    struct engine *e = engine_for_bench(cfg, m, n_threads, 0);
    for (int i = 0; i < 2; i++) {
        int reps = quick ? 1 : 3;
        double v[3];
        for (int r = 0; r < reps; r++)
            v[r] = prefill_rate(e, b->prefill_lens[i], 1000 + (uint64_t)i * 10 + (uint64_t)r);
        b->prefill_tps[i] = median_of(v, (size_t)reps);
    }
    for (int i = 0; i < 4; i++)
        b->decode_tps[i] = decode_rate(e, b->conc[i], quick ? 32 : 64, 5000 + (uint64_t)i * 100);
    engine_stop(e);
    engine_free(e);
}

/* Prefix caching off vs on, the same workload: a shared prefix with a suffix per variant,
 * sequential and at concurrency 8, each after one priming request. */
static void bench_prefix(const struct model_config *cfg, struct model *m, int n_threads, int quick,
                         struct engine_bench *b)
{
    int32_t *ps[PC_VARIANTS];
    int ns[PC_VARIANTS];
    for (int j = 0; j < PC_VARIANTS; j++) {
        ns[j] = PC_PREFIX + PC_SUFFIX;
        ps[j] = xmalloc((size_t)ns[j] * sizeof(int32_t));
        fill_prompt(ps[j], PC_PREFIX, 42); /* shared */
        fill_prompt(ps[j] + PC_PREFIX, PC_SUFFIX, 9000 + (uint64_t)j);
    }
    int n_run = quick ? 8 : PC_VARIANTS;
    for (int on = 0; on < 2; on++) {
        struct engine *e = engine_for_bench(cfg, m, n_threads, on);
        for (int mode = 0; mode < 2; mode++) {
            engine_reset_prefix_cache(e);
            /* One priming request with the shared prefix (and its own suffix) fills the cache;
             * then every variant is measured, so all of them meet a warm cache (when on). */
            int32_t *prime = xmalloc((size_t)(PC_PREFIX + PC_SUFFIX) * sizeof *prime);
            int n_prime = PC_PREFIX + PC_SUFFIX;
            fill_prompt(prime, PC_PREFIX, 42);
            fill_prompt(prime + PC_PREFIX, PC_SUFFIX, 8999);
            struct req_ctx prime_ctx;
            run_batch(e, &prime, &n_prime, 1, 1, PC_OUT, &prime_ctx);
            free(prime);
            struct req_ctx ctx[PC_VARIANTS];
            run_batch(e, ps, ns, n_run, mode ? 8 : 1, PC_OUT, ctx);
            double t[PC_VARIANTS], e2[PC_VARIANTS];
            long cached = 0, total = 0;
            for (int j = 0; j < n_run; j++) {
                t[j] = ns_to_ms(ctx[j].t_first_ns - ctx[j].t_submit_ns);
                e2[j] = ns_to_ms(ctx[j].t_done_ns - ctx[j].t_submit_ns);
                cached += ctx[j].n_cached;
                total += ns[j];
            }
            b->pc_ttft[on][mode] = median_of(t, (size_t)n_run);
            b->pc_e2e[on][mode] = median_of(e2, (size_t)n_run);
            b->pc_hit_frac[on][mode] = total ? (double)cached / (double)total : 0;
        }
        engine_stop(e);
        engine_free(e);
    }
    for (int j = 0; j < PC_VARIANTS; j++)
        free(ps[j]);
}

static void print_engine(const char *preset, const struct model_config *cfg, uint64_t weight_bytes,
                         int n_threads, const struct engine_bench *b)
{
    printf("## Engine (`%s`, f32, %d threads, OpenBLAS %s kernels)\n\n", preset, n_threads,
           blas_env_core());
    printf("Machine limits: read bandwidth %.1f GB/s (sum over 1 GiB; STREAM-style copy %.1f GB/s "
           "counting read + write); OpenBLAS sgemm %.1f GFLOP/s (512x%dx%d: %.1f, 512x%dx%d: "
           "%.1f). Bounds: prefill = sgemm FLOP/s / (2 x %.0fM params) = %.0f tokens/s; batch-1 "
           "decode = read bandwidth / %.0f MiB of weights = %.1f tokens/s.\n\n",
           b->bw, b->bw_copy, b->gf, cfg->n_ff, cfg->n_embd, b->gf_ffn, cfg->n_embd, cfg->n_embd,
           b->gf_attn, (double)model_n_params(cfg) / 1e6, b->prefill_bound,
           (double)weight_bytes / 1048576.0, b->decode_bound);
    printf("| measure | tokens/s | vs bound or batch 1 |\n|---|---:|---:|\n");
    for (int i = 0; i < 2; i++)
        printf("| prefill, %d-token prompt | %.0f | %.0f%% of the sgemm bound |\n",
               b->prefill_lens[i], b->prefill_tps[i], 100 * b->prefill_tps[i] / b->prefill_bound);
    printf("| decode, 1 sequence | %.1f | %.0f%% of the bandwidth bound |\n", b->decode_tps[0],
           100 * b->decode_tps[0] / b->decode_bound);
    for (int i = 1; i < 4; i++)
        printf("| decode, %d sequences | %.1f | %.1fx batch 1 |\n", b->conc[i], b->decode_tps[i],
               b->decode_tps[i] / b->decode_tps[0]);
    printf("\n16 sequences give %.1fx the batch-1 decode tokens/s (target >= 8x).\n\n",
           b->decode_tps[2] / b->decode_tps[0]);
    printf("## Prefix caching (`%s`, %d-token shared prefix + %d-token suffix, %d variants, "
           "max_tokens %d)\n\n",
           preset, PC_PREFIX, PC_SUFFIX, PC_VARIANTS, PC_OUT);
    printf("| mode | caching | median TTFT ms | median e2e ms | cached share of prompt |\n"
           "|---|---|---:|---:|---:|\n");
    for (int mode = 0; mode < 2; mode++)
        for (int on = 0; on < 2; on++)
            printf("| %s | %s | %.1f | %.1f | %.0f%% |\n", mode ? "concurrency 8" : "sequential",
                   on ? "on" : "off", b->pc_ttft[on][mode], b->pc_e2e[on][mode],
                   100 * b->pc_hit_frac[on][mode]);
    printf("\nWarm TTFT, caching off / on: sequential %.1fx, concurrency 8 %.1fx (target >= 5x).\n",
           b->pc_ttft[0][0] / b->pc_ttft[1][0], b->pc_ttft[0][1] / b->pc_ttft[1][1]);
}

static void write_engine_json(const char *preset, uint64_t weight_bytes, int n_threads,
                              const struct engine_bench *b)
{
    FILE *f = fopen("bench/out/engine.json", "w");
    if (!f)
        return;
    fprintf(f,
            "{\"preset\":\"%s\",\"threads\":%d,\"stream_read_gbs\":%.3f,\"sgemm_gflops\":%.3f,"
            "\"weight_bytes\":%llu,\"prefill_tps\":{\"512\":%.1f,\"2048\":%.1f},"
            "\"decode_bound_tps\":%.2f,\"prefill_bound_tps\":%.1f,"
            "\"decode_tps\":{\"1\":%.2f,\"4\":%.2f,\"16\":%.2f,\"64\":%.2f},"
            "\"prefix\":{\"seq_ttft_ms_off\":%.2f,\"seq_ttft_ms_on\":%.2f,"
            "\"c8_ttft_ms_off\":%.2f,\"c8_ttft_ms_on\":%.2f,\"seq_e2e_ms_off\":%.2f,"
            "\"seq_e2e_ms_on\":%.2f,\"c8_e2e_ms_off\":%.2f,\"c8_e2e_ms_on\":%.2f}}\n",
            preset, n_threads, b->bw, b->gf, (unsigned long long)weight_bytes, b->prefill_tps[0],
            b->prefill_tps[1], b->decode_bound, b->prefill_bound, b->decode_tps[0],
            b->decode_tps[1], b->decode_tps[2], b->decode_tps[3], b->pc_ttft[0][0],
            b->pc_ttft[1][0], b->pc_ttft[0][1], b->pc_ttft[1][1], b->pc_e2e[0][0], b->pc_e2e[1][0],
            b->pc_e2e[0][1], b->pc_e2e[1][1]);
    fclose(f);
}

static void write_stored_json(const char *preset, const struct engine_bench *b,
                              const struct stored_result *sr, int n_sr)
{
    FILE *f = fopen("bench/out/engine_stored.json", "w");
    if (!f)
        return;
    fprintf(f, "{\"preset\":\"%s\",\"stream_read_gbs\":%.3f,\"sgemm_gflops\":%.3f,\"files\":[",
            preset, b->bw, b->gf);
    for (int i = 0; i < n_sr; i++)
        fprintf(f,
                "%s{\"dtype\":\"%s\",\"weight_bytes\":%llu,\"decode1_tps\":%.2f,"
                "\"prefill512_tps\":%.1f,\"decode16_tps\":%.2f,\"kernel_bound_tps\":%.2f}",
                i ? "," : "", model_dtype_str(sr[i].dtype), (unsigned long long)sr[i].weight_bytes,
                sr[i].decode1, sr[i].prefill512, sr[i].decode16, sr[i].kernel_bound);
    fprintf(f, "]}\n");
    fclose(f);
}

int main(int argc, char **argv)
{
    blas_env_reexec_if_needed(argv);
    const char *preset = argc > 1 ? argv[1] : "small";
    int quick = getenv("BENCH_QUICK") != NULL;
    const char *kernel = getenv("BENCH_KERNEL"); /* portable|avx2|avx512: an older CPU's kernels */
    if (kernel && quant_kernel_force(kernel) != 0) {
        fprintf(stderr, "bench: BENCH_KERNEL=%s: not a kernel set this CPU has\n", kernel);
        return 2;
    }
    struct model_config cfg;
    if (model_preset(preset, &cfg)) {
        fprintf(stderr, "bench: unknown preset %s\n", preset);
        return 2;
    }
    char err[512];
    mono_ns t0 = clock_now_ns();
    struct model *m = model_new_random(&cfg, 1, err, sizeof err);
    if (!m) {
        fprintf(stderr, "bench: %s\n", err);
        return 1;
    }
    fprintf(stderr, "bench: model %s generated in %.1f s (%.1f MiB f32 weights)\n", preset,
            ns_to_s(clock_now_ns() - t0), (double)m->weight_bytes / 1048576.0);
    int n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);

    struct engine_bench b = {.prefill_lens = {512, 2048}, .conc = {1, 4, 16, 64}};
    b.bw_copy = stream_copy_gbs((size_t)512 << 20);
    b.bw = stream_read_gbs((size_t)1 << 30);
    b.gf_ffn = sgemm_gflops(512, cfg.n_ff, cfg.n_embd);
    b.gf_attn = sgemm_gflops(512, cfg.n_embd, cfg.n_embd);
    b.gf = b.gf_ffn > b.gf_attn ? b.gf_ffn : b.gf_attn;

    static const enum model_dtype stored[4] = {MODEL_DTYPE_F16, MODEL_DTYPE_BF16, MODEL_DTYPE_Q8_0,
                                               MODEL_DTYPE_Q4_K_M};
    struct stored_result sr[4];
    int n_sr = 0;
    for (int i = 0; i < 4; i++)
        if (bench_stored(&cfg, stored[i], n_threads, quick, &sr[n_sr]) == 0)
            n_sr++;
    if (!getenv("BENCH_STORED_ONLY")) {
        b.decode_bound = b.bw * 1e9 / (double)m->weight_bytes;
        b.prefill_bound = b.gf * 1e9 / (2.0 * (double)model_n_params(&cfg));
        bench_throughput(&cfg, m, n_threads, quick, &b);
        bench_prefix(&cfg, m, n_threads, quick, &b);
        print_engine(preset, &cfg, m->weight_bytes, n_threads, &b);
    }
    print_stored(preset, &cfg, sr, n_sr, b.bw, b.gf);
    if (!getenv("BENCH_STORED_ONLY")) {
        dir_make_all("bench/out");
        write_engine_json(preset, m->weight_bytes, n_threads, &b);
        write_stored_json(preset, &b, sr, n_sr);
    }
    model_free(m);
    return 0;
}
