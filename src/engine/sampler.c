/* sampler: greedy / temperature / top-p token selection over one row of logits (see sampler.h).
 * Greedy is a lane-parallel max and a search for its first index. Temperature sampling is one
 * pass (exp, the running sum with a checkpoint every SAMPLER_BLOCK tokens, and the top-p
 * candidates above a sum-free bound), then a draw by inverse CDF that scans one block. Top-p
 * finds the nucleus with an expected-linear quickselect over the candidates (no sort of the
 * vocabulary). Every path returns exactly what the plain one-pass-each code did
 * (tests/sampler_ref.h): the same expf, the same index-order double sum. It does not allocate
 * after sampler_init and keeps no state between calls besides the caller's RNG word. */
#include "engine/sampler.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

void sampler_init(struct sampler *s, int n_vocab)
{
    memset(s, 0, sizeof *s);
    if (n_vocab < 1)
        n_vocab = 1;
    s->n_vocab = n_vocab;
    s->idx = xcalloc((size_t)n_vocab, sizeof *s->idx);
    s->prob = xcalloc((size_t)n_vocab, sizeof *s->prob);
    s->cum = xcalloc((size_t)(n_vocab + SAMPLER_BLOCK - 1) / SAMPLER_BLOCK, sizeof *s->cum);
}

uint64_t sampler_scratch_bytes(int n_vocab)
{
    uint64_t n = n_vocab < 1 ? 1 : (uint64_t)n_vocab;
    return n * (sizeof(int32_t) + sizeof(float)) +
           (n + SAMPLER_BLOCK - 1) / SAMPLER_BLOCK * sizeof(double);
}

void sampler_free(struct sampler *s)
{
    if (!s)
        return;
    free(s->idx);
    free(s->prob);
    free(s->cum);
    memset(s, 0, sizeof *s);
}

/* splitmix64 (Steele, Lea, Flood 2014): the state advances by the golden gamma; the output is a
 * strong 64-bit mix of it. */
static uint64_t splitmix64_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rng_next_u64(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    return splitmix64_mix(*state);
}

double sampler_next_uniform(uint64_t *rng_state)
{
    return (double)(rng_next_u64(rng_state) >> 11) * 0x1.0p-53;
}

uint64_t sampler_seed_state(uint64_t seed)
{
    return splitmix64_mix(seed ^ 0x5851f42d4c957f2dULL);
}

/* The largest non-NaN value of logits[0..n), -inf when there is none. Eight independent
 * lanes (v > m ? v : m is maxps, NaN-ignoring): the maximum of a set does not depend on the
 * order it is taken in, so this is exact. */
static float max_value(const float *logits, int n)
{
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                  -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            m[l] = logits[i + l] > m[l] ? logits[i + l] : m[l];
    for (; i < n; i++)
        m[0] = logits[i] > m[0] ? logits[i] : m[0];
    float best = m[0];
    for (int l = 1; l < 8; l++)
        best = m[l] > best ? m[l] : best;
    return best;
}

/* argmax; the lowest id wins ties; NaN never wins. All NaN: 0. The same answer as one strict-">"
 * scan: that scan ends on the first index holding the maximum value (-0 == +0, so the first of
 * either zero), which is what the second pass looks for. */
static int32_t argmax(const float *logits, int n)
{
    float best = max_value(logits, n);
    for (int i = 0; i < n; i++)
        if (logits[i] == best)
            return i;
    return 0; /* every value NaN */
}

/* Draws an index from idx[0..n) with weights prob[idx[i]] (total mass `total`). */
static int32_t draw_weighted(const int32_t *idx, const float *prob, int n, double total,
                             uint64_t *rng)
{
    double r = sampler_next_uniform(rng) * total;
    double cum = 0.0;
    int32_t last_pos = idx[0];
    for (int i = 0; i < n; i++) {
        float p = prob[idx[i]];
        if (p <= 0.0f)
            continue;
        cum += p;
        last_pos = idx[i];
        if (r < cum)
            return idx[i];
    }
    return last_pos; /* rounding: r landed at the very end */
}

static void swap_i32(int32_t *a, int32_t *b)
{
    int32_t t = *a;
    *a = *b;
    *b = t;
}

/* Nucleus selection. idx[0..m) holds candidate ids; reorders it so that idx[0..k) is the smallest
 * set of most probable candidates whose mass reaches `need`, and returns k (>= 1).
 * Expected O(m): three-way quickselect with a median-of-three pivot, descending order. */
static int nucleus_select(int32_t *idx, const float *prob, int m, double need)
{
    int lo = 0, hi = m; /* [0, lo) accepted; [lo, hi) undecided; [hi, m) rejected */
    while (lo < hi && need > 0.0) {
        if (hi - lo <= 16) {
            /* insertion sort [lo, hi) by descending probability, then take a prefix */
            for (int i = lo + 1; i < hi; i++) {
                int32_t x = idx[i];
                int j = i;
                while (j > lo && prob[idx[j - 1]] < prob[x]) {
                    idx[j] = idx[j - 1];
                    j--;
                }
                idx[j] = x;
            }
            while (lo < hi && need > 0.0) {
                need -= prob[idx[lo]];
                lo++;
            }
            break;
        }
        float a = prob[idx[lo]], b = prob[idx[lo + (hi - lo) / 2]], c = prob[idx[hi - 1]];
        float pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        /* three-way partition: [lo, gt) > pivot, [gt, lt) == pivot, [lt, hi) < pivot */
        int gt = lo, i = lo, lt = hi;
        double mass_gt = 0.0;
        while (i < lt) {
            float p = prob[idx[i]];
            if (p > pivot) {
                mass_gt += p;
                swap_i32(&idx[i], &idx[gt]);
                gt++;
                i++;
            } else if (p < pivot) {
                lt--;
                swap_i32(&idx[i], &idx[lt]);
            } else {
                i++;
            }
        }
        if (mass_gt >= need) {
            hi = gt; /* the nucleus lies within the strictly larger part */
            continue;
        }
        need -= mass_gt;
        lo = gt;
        while (lo < lt && need > 0.0) { /* equal probabilities: any order */
            need -= prob[idx[lo]];
            lo++;
        }
    }
    return lo < 1 ? 1 : lo;
}

/* prob[i] = exp((logits[i] - max_v) * inv_t) (0 for NaN) and their running sum in index order,
 * one double accumulator as always (the sum's rounding is part of the result). The running sum
 * at the end of every SAMPLER_BLOCK-wide block goes to s->cum, so that draw_blocks can find the
 * drawn block without a second scan. The ids with prob >= keep_min go to s->idx in index order,
 * their count to *n_kept (keep_min = +inf: none). Returns the sum. */
static double softmax_blocks(struct sampler *s, const float *logits, int n_vocab, float max_v,
                             float inv_t, float keep_min, int *n_kept)
{
    float *prob = s->prob;
    int32_t *idx = s->idx;
    double sum = 0.0;
    int m = 0;
    for (int b0 = 0, k = 0; b0 < n_vocab; b0 += SAMPLER_BLOCK, k++) {
        int b1 = b0 + SAMPLER_BLOCK < n_vocab ? b0 + SAMPLER_BLOCK : n_vocab;
        for (int i = b0; i < b1; i++) {
            float v = logits[i];
            float p = (v == v) ? expf((v - max_v) * inv_t) : 0.0f;
            prob[i] = p;
            sum += p;
            idx[m] = i; /* branch-free compaction: m <= i */
            m += p >= keep_min;
        }
        s->cum[k] = sum;
    }
    *n_kept = m;
    return sum;
}

/* Inverse CDF over prob[0..n_vocab): the first i whose running sum exceeds r, the running sum
 * being the one softmax_blocks took (adding a zero leaves a non-negative double unchanged, so
 * skipping p == 0 changes nothing). The block comes from the checkpoints, then one block is
 * scanned. r at or past the total (rounding, or a NaN total): the last token with p not <= 0. */
static int32_t draw_blocks(const struct sampler *s, int n_vocab, double r, int32_t i_max)
{
    int n_blocks = (n_vocab + SAMPLER_BLOCK - 1) / SAMPLER_BLOCK;
    int k = 0;
    while (k < n_blocks && !(r < s->cum[k]))
        k++;
    if (k == n_blocks) {
        for (int i = n_vocab - 1; i >= 0; i--)
            if (!(s->prob[i] <= 0.0f)) /* NaN counts, as in the scan (0 * inf: 1 / 1e-40) */
                return i;
        return i_max;
    }
    double cum = k > 0 ? s->cum[k - 1] : 0.0;
    int b0 = k * SAMPLER_BLOCK, b1 = b0 + SAMPLER_BLOCK < n_vocab ? b0 + SAMPLER_BLOCK : n_vocab;
    for (int i = b0; i < b1; i++) {
        float p = s->prob[i];
        if (p <= 0.0f)
            continue;
        cum += p;
        if (r < cum)
            return i;
    }
    return b1 - 1; /* unreachable: the block's running sum exceeds r */
}

int32_t sampler_sample(struct sampler *s, float *logits, int n_vocab,
                       const struct sampling_params *sp, int n_generated, int eos_id,
                       uint64_t *rng_state)
{
    return sampler_sample_eog(s, logits, n_vocab, sp, n_generated, eos_id, NULL, 0, rng_state);
}

int32_t sampler_sample_eog(struct sampler *s, float *logits, int n_vocab,
                           const struct sampling_params *sp, int n_generated, int eos_id,
                           const int32_t *eog, int n_eog, uint64_t *rng_state)
{
    if (n_vocab > s->n_vocab)
        n_vocab = s->n_vocab;
    if (n_vocab < 1)
        return 0;
    if (sp->ignore_eos || n_generated < sp->min_tokens) {
        if (eos_id >= 0 && eos_id < n_vocab)
            logits[eos_id] = -INFINITY;
        for (int i = 0; i < n_eog; i++)
            if (eog[i] >= 0 && eog[i] < n_vocab)
                logits[eog[i]] = -INFINITY;
    }

    if (!(sp->temperature > 0.0f))
        return argmax(logits, n_vocab);

    int32_t i_max = argmax(logits, n_vocab);
    float max_v = logits[i_max];
    if (!isfinite(max_v))
        return i_max; /* +inf dominates; all -inf/NaN: nothing to weigh */

    /* Every token of the nucleus has p >= (1 - top_p) * sum / n_vocab: the tokens left outside
     * the nucleus are fewer than n_vocab and their mass exceeds (1 - top_p) * sum, and the
     * nucleus's smallest member is at least as likely as the largest of them. Prefilter with
     * half that bound (rounding margin), then quickselect. The bound needs the sum, so the
     * softmax pass keeps the superset that passes it with sum = 1 (sum >= 1, and rounding is
     * monotone), as a float threshold (the smallest float >= the double bound: p >= it exactly
     * when (double)p >= the bound); the exact filter then runs over those few. */
    const int nucleus = sp->top_p < 1.0f && sp->top_p > 0.0f;
    double top_p = sp->top_p;
    float keep_min = INFINITY;
    if (nucleus) {
        double thr1 = 0.5 * (1.0 - top_p) * 1.0 / (double)n_vocab;
        keep_min = (float)thr1;
        if ((double)keep_min < thr1)
            keep_min = nextafterf(keep_min, INFINITY);
    }
    int m0 = 0;
    double sum = softmax_blocks(s, logits, n_vocab, max_v, 1.0f / sp->temperature, keep_min, &m0);
    /* sum >= 1: the maximum contributes exp(0) */
    if (!(sp->top_p < 1.0f))
        return draw_blocks(s, n_vocab, sampler_next_uniform(rng_state) * sum, i_max);
    if (!nucleus)
        return i_max; /* an empty nucleus is meaningless: the most likely token */
    const float *prob = s->prob;
    double thr = 0.5 * (1.0 - top_p) * sum / (double)n_vocab;
    int m = 0;
    for (int j = 0; j < m0; j++) { /* in index order, as a full scan would keep them */
        int32_t i = s->idx[j];
        if (prob[i] > 0.0f && prob[i] >= thr)
            s->idx[m++] = i;
    }
    if (m == 0)
        return i_max;
    int k = nucleus_select(s->idx, prob, m, top_p * sum);
    double total = 0.0;
    for (int i = 0; i < k; i++)
        total += prob[s->idx[i]];
    return draw_weighted(s->idx, prob, k, total, rng_state);
}

void sampler_sample_rows(struct sampler *samplers, int n_samplers, const struct sampler_row *rows,
                         int n_rows, int n_vocab, int eos_id, const int32_t *eog, int n_eog,
                         int32_t *tokens)
{
    int n_threads = n_samplers < n_rows ? n_samplers : n_rows;
    if (n_threads <= 1) {
        for (int i = 0; i < n_rows; i++)
            tokens[i] =
                sampler_sample_eog(&samplers[0], rows[i].logits, n_vocab, rows[i].sp,
                                   rows[i].n_generated, eos_id, eog, n_eog, rows[i].rng_state);
        return;
    }
    /* Rows cost differently (greedy vs nucleus): dynamic. Which thread takes a row changes
     * nothing in its result: the scratch carries nothing between calls. */
#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 1)
    for (int i = 0; i < n_rows; i++) {
        struct sampler *s = &samplers[omp_get_thread_num()];
        tokens[i] = sampler_sample_eog(s, rows[i].logits, n_vocab, rows[i].sp, rows[i].n_generated,
                                       eos_id, eog, n_eog, rows[i].rng_state);
    }
}
