/* test_sampler: greedy, EOS masking, seeding, top-p nucleus and empirical softmax frequencies;
 * the fast per-row paths against the sampler as it was (sampler_ref.h) on random rows; the
 * parallel step path (sampler_sample_rows) against one row at a time, across thread counts and
 * batch compositions. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"
#include "sampler_ref.h"
#include "test.h"

static struct sampling_params params(float temperature, float top_p)
{
    struct sampling_params sp;
    memset(&sp, 0, sizeof sp);
    sp.max_tokens = 16;
    sp.temperature = temperature;
    sp.top_p = top_p;
    return sp;
}

static void test_greedy_argmax_ties(void)
{
    struct sampler s;
    sampler_init(&s, 16);
    float logits[16];
    for (int i = 0; i < 16; i++)
        logits[i] = (float)(i % 5) * 0.25f; /* max 1.0 at ids 4, 9, 14 */
    struct sampling_params sp = params(0.0f, 1.0f);
    uint64_t rng = sampler_seed_state(7), rng0 = rng;
    for (int k = 0; k < 10; k++)
        CHECK_EQ_INT(sampler_sample(&s, logits, 16, &sp, 0, -1, &rng), 4);
    CHECK(rng == rng0); /* greedy does not consume randomness */
    logits[11] = 3.5f;
    CHECK_EQ_INT(sampler_sample(&s, logits, 16, &sp, 0, -1, &rng), 11);
    logits[2] = NAN;
    CHECK_EQ_INT(sampler_sample(&s, logits, 16, &sp, 0, -1, &rng), 11);
    logits[11] = -INFINITY;
    CHECK_EQ_INT(sampler_sample(&s, logits, 16, &sp, 0, -1, &rng), 4);
    sampler_free(&s);
    sampler_free(&s); /* idempotent */
    sampler_free(NULL);
}

static void test_eos_masking(void)
{
    enum { V = 8, EOS = 5 };
    struct sampler s;
    sampler_init(&s, V);
    float logits[V];
    struct sampling_params sp = params(0.0f, 1.0f);
    sp.min_tokens = 3;
    uint64_t rng = sampler_seed_state(1);
    for (int n_gen = 0; n_gen < 6; n_gen++) {
        for (int i = 0; i < V; i++)
            logits[i] = (float)i * 0.1f;
        logits[EOS] = 10.0f;
        int32_t t = sampler_sample(&s, logits, V, &sp, n_gen, EOS, &rng);
        CHECK_EQ_INT(t, n_gen < 3 ? 7 : EOS);
    }
    sp.min_tokens = 0;
    sp.ignore_eos = 1;
    for (int n_gen = 0; n_gen < 6; n_gen++) {
        for (int i = 0; i < V; i++)
            logits[i] = (float)i * 0.1f;
        logits[EOS] = 10.0f;
        CHECK_EQ_INT(sampler_sample(&s, logits, V, &sp, n_gen, EOS, &rng), 7);
    }
    /* Random sampling: EOS would be drawn ~99.9% of the time, never while masked. */
    struct sampling_params sr = params(1.0f, 1.0f);
    sr.min_tokens = 1000;
    int n_eos = 0;
    for (int k = 0; k < 2000; k++) {
        for (int i = 0; i < V; i++)
            logits[i] = 0.0f;
        logits[EOS] = 10.0f;
        n_eos += sampler_sample(&s, logits, V, &sr, k % 1000, EOS, &rng) == EOS;
    }
    CHECK_EQ_INT(n_eos, 0);
    sr.min_tokens = 0;
    for (int k = 0; k < 200; k++) {
        for (int i = 0; i < V; i++)
            logits[i] = 0.0f;
        logits[EOS] = 10.0f;
        n_eos += sampler_sample(&s, logits, V, &sr, k, EOS, &rng) == EOS;
    }
    CHECK(n_eos >= 195);
    /* Out-of-range eos ids are ignored */
    for (int i = 0; i < V; i++)
        logits[i] = (float)i;
    CHECK_EQ_INT(sampler_sample(&s, logits, V, &sp, 0, V + 3, &rng), 7);
    CHECK_EQ_INT(sampler_sample(&s, logits, V, &sp, 0, -1, &rng), 7);
    /* The tokenizer's other end-of-generation ids are masked like EOS (min_tokens, ignore_eos);
     * ids out of range are ignored. */
    const int32_t eog[3] = {2, 6, V + 9};
    sp.min_tokens = 3;
    sp.ignore_eos = 0;
    for (int n_gen = 0; n_gen < 5; n_gen++) {
        for (int i = 0; i < V; i++)
            logits[i] = (float)i * 0.1f;
        logits[2] = 9.0f, logits[6] = 10.0f, logits[EOS] = 11.0f;
        int32_t t = sampler_sample_eog(&s, logits, V, &sp, n_gen, EOS, eog, 3, &rng);
        CHECK_EQ_INT(t, n_gen < 3 ? 7 : EOS);
    }
    sp.min_tokens = 0;
    sp.ignore_eos = 1;
    logits[2] = 9.0f, logits[6] = 10.0f, logits[EOS] = 11.0f;
    CHECK_EQ_INT(sampler_sample_eog(&s, logits, V, &sp, 0, EOS, eog, 3, &rng), 7);
    sp.ignore_eos = 0;
    logits[2] = 9.0f, logits[6] = 10.0f, logits[EOS] = 1.0f;
    CHECK_EQ_INT(sampler_sample_eog(&s, logits, V, &sp, 0, EOS, eog, 3, &rng), 6);
    sampler_free(&s);
}

static void draw_many(struct sampler *s, const float *base, int v, const struct sampling_params *sp,
                      uint64_t seed, int n, int32_t *out)
{
    float *logits = malloc((size_t)v * sizeof *logits);
    uint64_t rng = sampler_seed_state(seed);
    for (int k = 0; k < n; k++) {
        memcpy(logits, base, (size_t)v * sizeof *logits);
        out[k] = sampler_sample(s, logits, v, sp, k, -1, &rng);
    }
    free(logits);
}

static void test_seed_reproducible(void)
{
    enum { V = 1000, N = 200 };
    struct sampler s;
    sampler_init(&s, V);
    float base[V];
    for (int i = 0; i < V; i++)
        base[i] = (float)((i * 37) % 101) / 50.0f;
    int32_t a[N], b[N], c[N];
    struct sampling_params sps[2] = {params(1.0f, 1.0f), params(0.8f, 0.9f)};
    for (int j = 0; j < 2; j++) {
        draw_many(&s, base, V, &sps[j], 42, N, a);
        draw_many(&s, base, V, &sps[j], 42, N, b);
        draw_many(&s, base, V, &sps[j], 43, N, c);
        CHECK(memcmp(a, b, sizeof a) == 0);
        int n_diff = 0;
        for (int k = 0; k < N; k++)
            n_diff += a[k] != c[k];
        CHECK_MSG(n_diff > N / 2, "only %d of %d draws differ", n_diff, N);
    }
    CHECK(sampler_seed_state(0) != sampler_seed_state(1));
    uint64_t r = sampler_seed_state(5);
    double mean = 0.0;
    for (int k = 0; k < 10000; k++) {
        double u = sampler_next_uniform(&r);
        CHECK(u >= 0.0 && u < 1.0);
        mean += u;
    }
    CHECK_NEAR(mean / 10000.0, 0.5, 0.02);
    sampler_free(&s);
}

static void test_top_p_peaked(void)
{
    enum { V = 151936 };
    struct sampler s;
    sampler_init(&s, V);
    float *base = malloc(V * sizeof *base);
    float *logits = malloc(V * sizeof *logits);
    uint64_t g = sampler_seed_state(99);
    for (int i = 0; i < V; i++)
        base[i] = (float)sampler_next_uniform(&g) * 2.0f;
    base[12345] = 15.0f; /* p ~ 0.5 of the mass: e^15 vs ~151936 * e^1 */
    struct sampling_params sp = params(1.0f, 0.1f);
    uint64_t rng = sampler_seed_state(3);
    int n_top = 0;
    for (int k = 0; k < 200; k++) {
        memcpy(logits, base, V * sizeof *logits);
        n_top += sampler_sample(&s, logits, V, &sp, 0, -1, &rng) == 12345;
    }
    CHECK_EQ_INT(n_top, 200);
    /* top_p = 1 on the same logits does draw other tokens */
    sp.top_p = 1.0f;
    n_top = 0;
    for (int k = 0; k < 200; k++) {
        memcpy(logits, base, V * sizeof *logits);
        n_top += sampler_sample(&s, logits, V, &sp, 0, -1, &rng) == 12345;
    }
    CHECK(n_top > 40 && n_top < 200);
    /* tiny temperature is greedy in effect */
    sp.temperature = 1e-6f;
    memcpy(logits, base, V * sizeof *logits);
    CHECK_EQ_INT(sampler_sample(&s, logits, V, &sp, 0, -1, &rng), 12345);
    free(base);
    free(logits);
    sampler_free(&s);
}

static const double *g_cmp_prob; /* qsort has no context argument */
static int cmp_desc(const void *a, const void *b)
{
    double x = g_cmp_prob[*(const int *)a], y = g_cmp_prob[*(const int *)b];
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Reference nucleus by full sort; the sampler's draws must stay inside it, cover it, and follow
 * the renormalised probabilities. */
static void test_top_p_nucleus_matches_reference(void)
{
    enum { V = 3000, N = 60000 };
    struct sampler s;
    sampler_init(&s, V);
    static float base[V];
    static double prob[V];
    static int order[V];
    static int count[V];
    uint64_t g = sampler_seed_state(2024);
    for (int i = 0; i < V; i++)
        base[i] = (float)sampler_next_uniform(&g) * 0.5f;
    for (int i = 0; i < 60; i++) /* 60 likely tokens scattered over the vocabulary */
        base[(i * 7919) % V] = 6.0f + (float)sampler_next_uniform(&g) * 2.0f;
    const float temp = 0.9f, top_p = 0.6f;
    double max_v = -INFINITY, sum = 0.0;
    for (int i = 0; i < V; i++)
        max_v = base[i] > max_v ? base[i] : max_v;
    for (int i = 0; i < V; i++) {
        prob[i] = exp(((double)base[i] - max_v) / temp);
        sum += prob[i];
        order[i] = i;
    }
    g_cmp_prob = prob;
    qsort(order, V, sizeof order[0], cmp_desc);
    int k = 0;
    double cum = 0.0;
    while (k < V && cum < top_p * sum)
        cum += prob[order[k++]];
    CHECK_MSG(k > 16 && k < 60, "reference nucleus %d", k); /* exercises the quickselect path */
    static int in_nucleus[V];
    for (int i = 0; i < k; i++)
        in_nucleus[order[i]] = 1;

    struct sampling_params sp = params(temp, top_p);
    static int32_t draws[N];
    draw_many(&s, base, V, &sp, 11, N, draws);
    int n_outside = 0;
    for (int j = 0; j < N; j++) {
        n_outside += !in_nucleus[draws[j]];
        count[draws[j]]++;
    }
    CHECK_EQ_INT(n_outside, 0);
    double max_err = 0.0;
    int n_missing = 0;
    for (int i = 0; i < k; i++) {
        int t = order[i];
        n_missing += count[t] == 0;
        double err = fabs((double)count[t] / N - prob[t] / cum);
        max_err = err > max_err ? err : max_err;
    }
    CHECK_EQ_INT(n_missing, 0);
    CHECK_MSG(max_err < 0.01, "max frequency error %g", max_err);
    sampler_free(&s);
}

/* Small vocabulary: empirical frequencies match softmax(logits / T). */
static void test_empirical_softmax(void)
{
    enum { V = 6, N = 200000 };
    const float base[V] = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.0f};
    const float temps[2] = {0.7f, 1.5f};
    struct sampler s;
    sampler_init(&s, V);
    for (int j = 0; j < 2; j++) {
        double p[V], sum = 0.0;
        for (int i = 0; i < V; i++)
            sum += p[i] = exp(base[i] / temps[j]);
        struct sampling_params sp = params(temps[j], 1.0f);
        int count[V] = {0};
        float logits[V];
        uint64_t rng = sampler_seed_state(1000 + (uint64_t)j);
        for (int k = 0; k < N; k++) {
            memcpy(logits, base, sizeof logits);
            int32_t t = sampler_sample(&s, logits, V, &sp, 0, -1, &rng);
            CHECK(t >= 0 && t < V);
            count[t]++;
        }
        for (int i = 0; i < V; i++) {
            /* 5 standard deviations of a binomial proportion */
            double q = p[i] / sum, tol = 5.0 * sqrt(q * (1 - q) / N) + 1e-4;
            CHECK_NEAR((double)count[i] / N, q, tol);
        }
    }
    /* top_p = 0.8 on probabilities .4 .3 .2 .1: nucleus {0,1,2}, renormalised 4/9 3/9 2/9 */
    const float lp[4] = {logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f)};
    struct sampling_params sp = params(1.0f, 0.8f);
    int count[4] = {0};
    uint64_t rng = sampler_seed_state(77);
    for (int k = 0; k < N; k++) {
        float logits[4];
        memcpy(logits, lp, sizeof logits);
        count[sampler_sample(&s, logits, 4, &sp, 0, -1, &rng)]++;
    }
    CHECK_EQ_INT(count[3], 0);
    CHECK_NEAR((double)count[0] / N, 4.0 / 9, 0.006);
    CHECK_NEAR((double)count[1] / N, 3.0 / 9, 0.006);
    CHECK_NEAR((double)count[2] / N, 2.0 / 9, 0.006);
    sampler_free(&s);
}

static void test_degenerate_rows(void)
{
    struct sampler s;
    sampler_init(&s, 4);
    struct sampling_params sp = params(1.0f, 0.5f);
    uint64_t rng = sampler_seed_state(5);
    float all_nan[4] = {NAN, NAN, NAN, NAN};
    int32_t t = sampler_sample(&s, all_nan, 4, &sp, 0, -1, &rng);
    CHECK(t >= 0 && t < 4);
    float one_live[4] = {-INFINITY, NAN, 0.0f, -INFINITY};
    for (int k = 0; k < 50; k++) {
        float l[4];
        memcpy(l, one_live, sizeof l);
        CHECK_EQ_INT(sampler_sample(&s, l, 4, &sp, 0, -1, &rng), 2);
    }
    float eq[4] = {1.0f, 1.0f, 1.0f, 1.0f}; /* ties: top_p 0.5 keeps two of four */
    int seen[4] = {0};
    for (int k = 0; k < 400; k++) {
        float l[4];
        memcpy(l, eq, sizeof l);
        seen[sampler_sample(&s, l, 4, &sp, 0, -1, &rng)] = 1;
    }
    CHECK_EQ_INT(seen[0] + seen[1] + seen[2] + seen[3], 2);
    sp.top_p = 0.0f; /* invalid, treated as the most likely token */
    float l2[4] = {0.1f, 0.9f, 0.3f, 0.2f};
    CHECK_EQ_INT(sampler_sample(&s, l2, 4, &sp, 0, -1, &rng), 1);
    sampler_free(&s);
}

/* ---- fast paths == reference ---- */

static uint64_t t_next(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double t_unif(uint64_t *st)
{
    return (double)(t_next(st) >> 11) * 0x1.0p-53;
}

/* A random row: spread, ties (values on a coarse grid), -inf masks, NaN, rare +inf, peaks. */
static void random_row(float *l, int n, uint64_t *st)
{
    int kind = (int)(t_next(st) % 6);
    double spread = 0.5 + 10.0 * t_unif(st);
    for (int i = 0; i < n; i++) {
        double u = t_unif(st) * 2.0 - 1.0;
        float v = (float)(spread * u * u * u);
        if (kind == 1)
            v = (float)(int)(v * 2.0f) * 0.5f; /* many exact ties */
        if (kind == 2 && t_next(st) % 4 == 0)
            v = -INFINITY;
        if (kind == 3 && t_next(st) % 50 == 0)
            v = NAN;
        l[i] = v;
    }
    if (kind == 4)
        for (int k = 0; k < 3; k++)
            l[t_next(st) % (uint64_t)n] += (float)(5.0 + 10.0 * t_unif(st));
    if (kind == 5 && t_next(st) % 8 == 0)
        l[t_next(st) % (uint64_t)n] = INFINITY;
    if (kind == 5 && t_next(st) % 8 == 0)
        for (int i = 0; i < n; i++)
            l[i] = t_next(st) % 2 ? -INFINITY : NAN;
}

static struct sampling_params random_params(uint64_t *st)
{
    static const float temps[] = {0.0f, 0.05f, 0.3f, 0.7f, 1.0f, 1e-40f, 1.7f, 4.0f};
    static const float tops[] = {1.0f, 1.0f, 0.99f, 0.95f, 0.9f, 0.5f, 0.1f, 1e-4f};
    struct sampling_params sp = params(temps[t_next(st) % 8], tops[t_next(st) % 8]);
    sp.min_tokens = (int)(t_next(st) % 3);
    sp.ignore_eos = t_next(st) % 10 == 0;
    return sp;
}

static void test_fast_equals_reference(void)
{
    enum { V_MAX = 151936, N_ROWS = 1500 };
    static const int sizes[] = {1, 2, 3, 7, 8, 9, 1023, 1024, 1025, 2049, 5000, 20000};
    struct sampler fast, ref;
    sampler_init(&fast, V_MAX);
    sampler_init(&ref, V_MAX);
    float *a = malloc(V_MAX * sizeof *a), *b = malloc(V_MAX * sizeof *b);
    uint64_t st = 12345;
    int n_diff = 0;
    for (int row = 0; row < N_ROWS; row++) {
        int n = row % 100 == 0 ? V_MAX : sizes[t_next(&st) % (sizeof sizes / sizeof sizes[0])];
        random_row(a, n, &st);
        memcpy(b, a, (size_t)n * sizeof *a);
        struct sampling_params sp = random_params(&st);
        int32_t eog[3] = {(int32_t)(t_next(&st) % (uint64_t)n), n + 5, -1};
        int eos = n > 1 ? n - 1 : -1, n_gen = (int)(t_next(&st) % 3);
        uint64_t r1 = sampler_seed_state((uint64_t)row), r2 = r1;
        memset(fast.prob, 0, (size_t)n * sizeof *fast.prob);
        memset(ref.prob, 0, (size_t)n * sizeof *ref.prob);
        for (int k = 0; k < 3; k++) { /* three draws from one row: the RNG stays in step */
            int32_t tf = sampler_sample_eog(&fast, a, n, &sp, n_gen, eos, eog, 3, &r1);
            int32_t tr = ref_sample_eog(&ref, b, n, &sp, n_gen, eos, eog, 3, &r2);
            int same_prob = 1;
            if (k == 0) {
                /* the same probabilities, and the fast path's total is the plain index-order
                 * double sum of them, bit for bit (NaN from 1 / 1e-40 included; prob zeroed
                 * before: rows that were not softmaxed) */
                double sum = 0.0;
                for (int i = 0; i < n; i++)
                    sum += ref.prob[i];
                int i_last = (n + SAMPLER_BLOCK - 1) / SAMPLER_BLOCK - 1;
                same_prob = memcmp(fast.prob, ref.prob, (size_t)n * sizeof *ref.prob) == 0 &&
                            (sum == 0.0 || memcmp(&fast.cum[i_last], &sum, sizeof sum) == 0);
            }
            if (tf != tr || r1 != r2 || !same_prob) {
                if (n_diff++ < 5)
                    CHECK_MSG(0, "row %d (n %d, t %g, top_p %g): fast %d, reference %d", row, n,
                              (double)sp.temperature, (double)sp.top_p, tf, tr);
            }
        }
    }
    CHECK_EQ_INT(n_diff, 0);
    free(a);
    free(b);
    sampler_free(&fast);
    sampler_free(&ref);
}

/* ---- the step path: sampler_sample_rows == one row at a time ---- */

enum { REQ_N = 24, REQ_V = 3000 };

struct req_fixture {
    float pristine[REQ_N][REQ_V];
    float work[REQ_N][REQ_V];
    struct sampling_params sp[REQ_N];
    uint64_t rng0[REQ_N], rng[REQ_N];
    int n_gen[REQ_N];
    int32_t want[REQ_N]; /* reference, each request alone */
    uint64_t want_rng[REQ_N];
};

static void run_rows(struct req_fixture *f, struct sampler *smp, int n_threads, const int *ids,
                     int n_ids, const int32_t *eog, int n_eog)
{
    struct sampler_row rows[REQ_N];
    int32_t tok[REQ_N];
    for (int k = 0; k < n_ids; k++) {
        int i = ids[k];
        memcpy(f->work[i], f->pristine[i], sizeof f->work[i]);
        f->rng[i] = f->rng0[i];
        rows[k] = (struct sampler_row){f->work[i], &f->sp[i], f->n_gen[i], &f->rng[i]};
    }
    sampler_sample_rows(smp, n_threads, rows, n_ids, REQ_V, 7, eog, n_eog, tok);
    for (int k = 0; k < n_ids; k++) {
        int i = ids[k];
        CHECK_MSG(tok[k] == f->want[i] && f->rng[i] == f->want_rng[i],
                  "%d threads, %d rows: request %d got %d, alone %d", n_threads, n_ids, i, tok[k],
                  f->want[i]);
    }
}

static void test_rows_parallel_equals_sequential(void)
{
    struct req_fixture *f = calloc(1, sizeof *f);
    struct sampler smp[3], ref;
    for (int t = 0; t < 3; t++)
        sampler_init(&smp[t], REQ_V);
    sampler_init(&ref, REQ_V);
    const int32_t eog[2] = {11, 12};
    uint64_t st = 99;
    for (int i = 0; i < REQ_N; i++) {
        random_row(f->pristine[i], REQ_V, &st);
        f->sp[i] = random_params(&st);
        f->n_gen[i] = (int)(t_next(&st) % 3);
        f->rng0[i] = sampler_seed_state(1000 + (uint64_t)i);
        memcpy(f->work[i], f->pristine[i], sizeof f->work[i]);
        f->want_rng[i] = f->rng0[i];
        f->want[i] = ref_sample_eog(&ref, f->work[i], REQ_V, &f->sp[i], f->n_gen[i], 7, eog, 2,
                                    &f->want_rng[i]);
    }
    int all[REQ_N], odd[REQ_N / 2], rev[REQ_N], one[1] = {5};
    for (int i = 0; i < REQ_N; i++) {
        all[i] = i;
        rev[i] = REQ_N - 1 - i;
    }
    for (int i = 0; i < REQ_N / 2; i++)
        odd[i] = 2 * i + 1;
    for (int nt = 1; nt <= 3; nt++) {
        run_rows(f, smp, nt, all, REQ_N, eog, 2);
        run_rows(f, smp, nt, odd, REQ_N / 2, eog, 2);
        run_rows(f, smp, nt, rev, REQ_N, eog, 2);
        run_rows(f, smp, nt, one, 1, eog, 2);
        run_rows(f, smp, nt, all, 2, eog, 2);
    }
    for (int t = 0; t < 3; t++)
        sampler_free(&smp[t]);
    sampler_free(&ref);
    free(f);
}

int main(void)
{
    TEST_RUN(test_greedy_argmax_ties);
    TEST_RUN(test_eos_masking);
    TEST_RUN(test_seed_reproducible);
    TEST_RUN(test_top_p_peaked);
    TEST_RUN(test_top_p_nucleus_matches_reference);
    TEST_RUN(test_empirical_softmax);
    TEST_RUN(test_degenerate_rows);
    TEST_RUN(test_fast_equals_reference);
    TEST_RUN(test_rows_parallel_equals_sequential);
    return TEST_DONE();
}
