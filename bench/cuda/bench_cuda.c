/* bench_cuda: the CUDA forward pass on the qwen2.5-1.5b preset (random weights in memory, bf16 on
 * the device) against the device's measured HBM bandwidth. Decode steps at batch 1 and 64
 * (eager and with CUDA graphs) and prefill steps of 512 and 2048 tokens; each time is the wall
 * time of dev_forward_run (inputs up, logits back, synchronised), median of the timed steps.
 * The bound for a decode step is the bytes it must read (every weight once, plus the K/V of the
 * context) over the read bandwidth. Markdown on stdout, progress on stderr.
 *
 *   make CUDA=1 bench-cuda        [BENCH_CUDA_PRESET=name to run another preset]
 *                                 [BENCH_CUDA_GEMV_SWEEP=1: batch 1..16, GEMV vs cuBLAS] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/dev_test.h"
#include "engine/forward_dev.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "util/buf.h"
#include "util/clock.h"

#define BS 16
#define CTX 4096
#define MAX_TOKENS 2048
#define N_SEQS 64
#define PROMPT 512
#define N_TIMED 32

struct bench {
    struct model *m;
    struct dev_forward *d;
    struct kv_cache kv; /* block bookkeeping only: pool NULL */
    struct kv_seq seqs[N_SEQS];
    struct kv_seq *sp[N_SEQS];
    int32_t *tok, *pos, *seq;
    uint8_t *want;
    int len[N_SEQS]; /* tokens with K/V */
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One step: count tokens of each of seqs [s0, s0 + n_seq) from their current lengths, logits
 * for the last token of each. Seconds. */
static double step(struct bench *B, int s0, int n_seq, int count)
{
    int n = 0;
    for (int s = s0; s < s0 + n_seq; s++)
        for (int i = 0; i < count; i++, n++) {
            B->tok[n] = (B->len[s] + i * 7 + s) % B->m->cfg.n_vocab;
            B->pos[n] = B->len[s] + i;
            B->seq[n] = s;
            B->want[n] = i == count - 1;
        }
    struct forward_batch b = {n, B->tok, B->pos, B->seq, B->want, N_SEQS, B->sp};
    int nl = 0;
    mono_ns t0 = clock_now_ns();
    if (dev_forward_run(B->d, &B->kv, &b, &nl) != FORWARD_OK) {
        fprintf(stderr, "bench_cuda: step failed: %s\n", dev_forward_last_error(B->d));
        exit(1);
    }
    double secs = (double)(clock_now_ns() - t0) / 1e9;
    for (int s = s0; s < s0 + n_seq; s++)
        B->len[s] += count;
    return secs;
}

/* Median of N_TIMED decode steps of n_seq sequences (after 2 untimed); lengths restored. */
static double decode_median(struct bench *B, int n_seq)
{
    double t[N_TIMED];
    int saved[N_SEQS];
    memcpy(saved, B->len, sizeof saved);
    step(B, 0, n_seq, 1);
    step(B, 0, n_seq, 1);
    for (int i = 0; i < N_TIMED; i++)
        t[i] = step(B, 0, n_seq, 1);
    memcpy(B->len, saved, sizeof saved);
    qsort(t, N_TIMED, sizeof t[0], cmp_double);
    return t[N_TIMED / 2];
}

static int setup(struct bench *B, const char *preset, struct dev_load_stats *ls, double *gen_s)
{
    struct model_config c;
    char err[512];
    if (model_preset(preset, &c) != 0) {
        fprintf(stderr, "bench_cuda: unknown preset %s (%s)\n", preset, model_preset_names());
        return -1;
    }
    mono_ns t0 = clock_now_ns();
    B->m = model_new_random(&c, 1, err, sizeof err);
    *gen_s = (double)(clock_now_ns() - t0) / 1e9;
    if (!B->m) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return -1;
    }
    struct dev_forward_config cfg = {0, MAX_TOKENS, N_SEQS, CTX, N_SEQS, BS};
    B->d = dev_forward_new(B->m, &cfg, ls, err, sizeof err);
    if (!B->d) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return -1;
    }
    uint64_t peak = dev_forward_profile(B->d, err, sizeof err);
    if (peak == 0) {
        fprintf(stderr, "bench_cuda: profile: %s\n", err);
        return -1;
    }
    fprintf(stderr, "profile run: %.1f MB beyond the weights\n", peak / 1e6);
    int per_seq = CTX / BS, n_blocks = N_SEQS * per_seq;
    if (dev_forward_kv_alloc(B->d, n_blocks, err, sizeof err) != 0) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return -1;
    }
    B->kv.n_layer = c.n_layer;
    B->kv.kv_dim = c.n_head_kv * c.head_dim;
    B->kv.block_size = BS;
    B->kv.n_blocks = n_blocks;
    for (int s = 0; s < N_SEQS; s++) {
        kv_seq_init(&B->seqs[s], per_seq);
        B->seqs[s].n_blocks = per_seq;
        for (int k = 0; k < per_seq; k++) /* interleaved: no two neighbours share a region */
            B->seqs[s].blocks[k] = k * N_SEQS + s;
        B->sp[s] = &B->seqs[s];
    }
    B->tok = xcalloc(MAX_TOKENS, sizeof(int32_t));
    B->pos = xcalloc(MAX_TOKENS, sizeof(int32_t));
    B->seq = xcalloc(MAX_TOKENS, sizeof(int32_t));
    B->want = xcalloc(MAX_TOKENS, 1);
    return 0;
}

/* Decode bound: every weight byte plus the context's K/V, over the read bandwidth. */
static double bound_tok_s(const struct bench *B, const struct dev_load_stats *ls, int n_seq,
                          double read_gbps)
{
    double kv = (double)n_seq * PROMPT * (double)dev_forward_kv_bytes_per_token(B->d);
    double bytes = (double)ls->weight_bytes + kv;
    return n_seq / (bytes / (read_gbps * 1e9));
}

/* Prefill of count tokens on sequence s from position 0: one untimed run, then the timed one. */
static double prefill(struct bench *B, int s0, int n_seq, int count)
{
    for (int s = s0; s < s0 + n_seq; s++)
        B->len[s] = 0;
    step(B, s0, n_seq, count);
    for (int s = s0; s < s0 + n_seq; s++)
        B->len[s] = 0;
    return step(B, s0, n_seq, count);
}

static void row(const char *what, int tokens, double secs, double bound)
{
    double tps = tokens / secs;
    if (bound > 0)
        printf("| %s | %d | %.3f | %.0f | %.0f | %.0f%% |\n", what, tokens, secs * 1e3, tps, bound,
               100.0 * tps / bound);
    else
        printf("| %s | %d | %.3f | %.0f | | |\n", what, tokens, secs * 1e3, tps);
}

/* Device time per op of one eager step (CUDA events between the ops): decode at batch 1 and
 * 64, and a 2048-token prefill. */
static void op_breakdown(struct bench *B)
{
    double ms[3][DEV_TEST_OP_COUNT];
    const int shapes[3][2] = {{1, 1}, {N_SEQS, 1}, {1, MAX_TOKENS}}; /* sequences, tokens each */
    char err[512];
    for (int k = 0; k < 3; k++) {
        int n = 0, n_seq = shapes[k][0], count = shapes[k][1];
        for (int s = 0; s < n_seq; s++)
            for (int i = 0; i < count; i++, n++) {
                B->tok[n] = (i + s) % B->m->cfg.n_vocab;
                B->pos[n] = count > 1 ? i : B->len[s];
                B->seq[n] = s;
                B->want[n] = i == count - 1;
            }
        struct forward_batch b = {n, B->tok, B->pos, B->seq, B->want, N_SEQS, B->sp};
        if (dev_test_op_times(B->d, &B->kv, &b, ms[k], err, sizeof err) != 0) {
            fprintf(stderr, "bench_cuda: op times: %s\n", err);
            return;
        }
    }
    printf("\nDevice time per op, one eager step (ms, CUDA events between ops):\n\n");
    printf("| op | decode batch 1 | decode batch 64 | prefill 2048 |\n|---|---|---|---|\n");
    double tot[3] = {0, 0, 0};
    for (int o = 0; o < DEV_TEST_OP_COUNT; o++) {
        printf("| %s | %.3f | %.3f | %.3f |\n", dev_test_op_name(o), ms[0][o], ms[1][o], ms[2][o]);
        for (int k = 0; k < 3; k++)
            tot[k] += ms[k][o];
    }
    printf("| total | %.3f | %.3f | %.3f |\n", tot[0], tot[1], tot[2]);
}

/* Decode at batch 1..16 with the products of up to OPS_GEMV_MAX_M rows on the streaming GEMV
 * (the engine's choice) and with every product on cuBLAS, eagerly, alternating: where the two
 * cross. */
static void gemv_sweep(struct bench *B, FILE *out)
{
    static const int ms[] = {1, 2, 3, 4, 5, 6, 8, 16};
    fprintf(out, "\n### Small-batch products: streaming GEMV vs cuBLAS (eager decode steps, ms)\n\n");
    fprintf(out, "| sequences | GEMV for <= %d rows, cuBLAS above | cuBLAS only | ratio |\n"
                 "|---|---|---|---|\n", dev_test_set_gemv_max_rows(B->d, 1 << 20));
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        double g[3], c[3];
        for (int rep = 0; rep < 3; rep++) { /* alternate, so drift hits both */
            dev_test_set_gemv_max_rows(B->d, 1 << 20); /* capped: OPS_GEMV_MAX_M */
            g[rep] = decode_median(B, ms[i]);
            dev_test_set_gemv_max_rows(B->d, 0);
            c[rep] = decode_median(B, ms[i]);
        }
        qsort(g, 3, sizeof g[0], cmp_double);
        qsort(c, 3, sizeof c[0], cmp_double);
        fprintf(out, "| %d | %.3f | %.3f | %.2fx |\n", ms[i], g[1] * 1e3, c[1] * 1e3, c[1] / g[1]);
        fprintf(stderr, "gemv sweep: %d sequences\n", ms[i]);
    }
    dev_test_set_gemv_max_rows(B->d, 1 << 20);
}

int main(void)
{
    const char *preset = getenv("BENCH_CUDA_PRESET") ? getenv("BENCH_CUDA_PRESET") : "qwen2.5-1.5b";
    struct dev_props p;
    char err[512];
    if (dev_probe(0, &p, err, sizeof err) != 0) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return 1;
    }
    double rd = 0, cp = 0;
    if (dev_test_bandwidth((size_t)4 << 30, 5, &rd, &cp, err, sizeof err) != 0) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return 1;
    }
    struct bench B;
    memset(&B, 0, sizeof B);
    struct dev_load_stats ls;
    double gen_s = 0;
    if (setup(&B, preset, &ls, &gen_s) != 0)
        return 1;
    fprintf(stderr, "prefill steps\n");
    double t512 = prefill(&B, 0, 1, PROMPT);
    double t2048 = prefill(&B, 0, 1, MAX_TOKENS);
    double t4x512 = prefill(&B, 0, 4, PROMPT);
    for (int s = 4; s < N_SEQS; s += 4) /* every sequence gets PROMPT tokens of context */
        step(&B, s, 4, PROMPT);
    fprintf(stderr, "decode steps (eager)\n");
    double e1 = decode_median(&B, 1), e64 = decode_median(&B, N_SEQS);
    char *sweep = NULL; /* printed at the end: the steps must run before the graphs exist */
    size_t sweep_len = 0;
    if (getenv("BENCH_CUDA_GEMV_SWEEP")) {
        FILE *f = open_memstream(&sweep, &sweep_len);
        gemv_sweep(&B, f);
        fclose(f);
    }
    const int sizes[] = {1, 2, 4, 8, 16, 32, 64};
    double cap_s = 0;
    if (dev_forward_capture_graphs(B.d, sizes, 7, &cap_s, err, sizeof err) != 0) {
        fprintf(stderr, "bench_cuda: %s\n", err);
        return 1;
    }
    fprintf(stderr, "decode steps (graphs)\n");
    double g1 = decode_median(&B, 1), g64 = decode_median(&B, N_SEQS);
    uint64_t n_eager, n_graph;
    dev_forward_counts(B.d, &n_eager, &n_graph);

    printf("## CUDA forward pass: %s on %s\n\n", preset, p.name);
    printf("- device: %s, compute capability %d.%d, %.1f GiB\n", p.name, p.cc_major, p.cc_minor,
           p.total_bytes / 1073741824.0);
    printf("- HBM read bandwidth (read-only kernel, 4 GiB, best of 5): **%.0f GB/s**; "
           "device-to-device copy %.0f GB/s (read + written)\n",
           rd, cp);
    printf("- weights: %.2f GB bf16 on the device (random weights generated in %.1f s); upload "
           "%.2f GB read from the host in %.2f s (%.1f GB/s, f32 converted on the GPU)\n",
           ls.weight_bytes / 1e9, gen_s, ls.host_bytes / 1e9, ls.upload_ns / 1e9, ls.upload_gbps);
    printf("- graphs: 7 sizes (1..64) captured in %.2f s, %.1f MB; steps run eagerly %llu, by "
           "graph replay %llu\n",
           cap_s, dev_forward_graph_bytes(B.d) / 1e6, (unsigned long long)n_eager,
           (unsigned long long)n_graph);
    printf("- decode: context %d tokens per sequence; median of %d steps; bound = (weight bytes "
           "+ context K/V bytes) / read bandwidth\n\n",
           PROMPT, N_TIMED);
    printf("| step | tokens | ms | tok/s | bound tok/s | of bound |\n|---|---|---|---|---|---|\n");
    double b1 = bound_tok_s(&B, &ls, 1, rd), b64 = bound_tok_s(&B, &ls, N_SEQS, rd);
    row("decode, batch 1, eager", 1, e1, b1);
    row("decode, batch 1, graph", 1, g1, b1);
    row("decode, batch 64, eager", N_SEQS, e64, b64);
    row("decode, batch 64, graph", N_SEQS, g64, b64);
    row("prefill 512 (1 sequence)", PROMPT, t512, 0);
    row("prefill 2048 (1 sequence)", MAX_TOKENS, t2048, 0);
    row("prefill 4 x 512", 4 * PROMPT, t4x512, 0);
    printf("\nbatch 64 / batch 1 decode throughput: %.1fx (graphs), %.1fx (eager)\n",
           (N_SEQS / g64) / (1 / g1), (N_SEQS / e64) / (1 / e1));
    op_breakdown(&B);
    if (sweep)
        fputs(sweep, stdout);
    free(sweep);
    dev_forward_free(B.d);
    model_free(B.m);
    return 0;
}
