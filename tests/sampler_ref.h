/* sampler_ref: the per-row sampler as it was before the fast paths (commit f9da041), kept
 * verbatim as the reference that tests/test_sampler.c and bench/bench_sampler.c compare the
 * fast paths against. Header-only, every function static; it uses struct sampler's idx and prob
 * scratch only. Not part of the engine. */
#ifndef SLM_SAMPLER_REF_H
#define SLM_SAMPLER_REF_H

#include <math.h>
#include <stdint.h>

#include "engine/sampler.h"

/* argmax; strict > so the lowest id wins ties; NaN never wins. All NaN: 0. */
static int32_t ref_argmax(const float *logits, int n)
{
    int32_t best = -1;
    float best_v = 0.0f;
    for (int i = 0; i < n; i++) {
        float v = logits[i];
        if (v != v)
            continue;
        if (best < 0 || v > best_v) {
            best = i;
            best_v = v;
        }
    }
    return best < 0 ? 0 : best;
}

/* Draws an index from idx[0..n) with weights prob[idx[i]] (total mass `total`). */
static int32_t ref_draw_weighted(const int32_t *idx, const float *prob, int n, double total,
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

static void ref_swap_i32(int32_t *a, int32_t *b)
{
    int32_t t = *a;
    *a = *b;
    *b = t;
}

/* Nucleus selection. idx[0..m) holds candidate ids; reorders it so that idx[0..k) is the smallest
 * set of most probable candidates whose mass reaches `need`, and returns k (>= 1).
 * Expected O(m): three-way quickselect with a median-of-three pivot, descending order. */
static int ref_nucleus_select(int32_t *idx, const float *prob, int m, double need)
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
                ref_swap_i32(&idx[i], &idx[gt]);
                gt++;
                i++;
            } else if (p < pivot) {
                lt--;
                ref_swap_i32(&idx[i], &idx[lt]);
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

static int32_t ref_sample_eog(struct sampler *s, float *logits, int n_vocab,
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
        return ref_argmax(logits, n_vocab);

    int32_t i_max = ref_argmax(logits, n_vocab);
    float max_v = logits[i_max];
    if (!isfinite(max_v))
        return i_max; /* +inf dominates; all -inf/NaN: nothing to weigh */

    float inv_t = 1.0f / sp->temperature;
    float *prob = s->prob;
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) {
        float v = logits[i];
        float p = (v == v) ? expf((v - max_v) * inv_t) : 0.0f;
        prob[i] = p;
        sum += p;
    }
    /* sum >= 1: the maximum contributes exp(0) */

    if (!(sp->top_p < 1.0f)) {
        double r = sampler_next_uniform(rng_state) * sum;
        double cum = 0.0;
        int32_t last = i_max;
        for (int i = 0; i < n_vocab; i++) {
            if (prob[i] <= 0.0f)
                continue;
            cum += prob[i];
            last = i;
            if (r < cum)
                return i;
        }
        return last;
    }

    /* Every token of the nucleus has p >= (1 - top_p) * sum / n_vocab: the tokens left outside
     * the nucleus are fewer than n_vocab and their mass exceeds (1 - top_p) * sum, and the
     * nucleus's smallest member is at least as likely as the largest of them. Prefilter with
     * half that bound (rounding margin), then quickselect. */
    if (!(sp->top_p > 0.0f))
        return i_max; /* an empty nucleus is meaningless: the most likely token */
    double top_p = sp->top_p;
    double thr = 0.5 * (1.0 - top_p) * sum / (double)n_vocab;
    int m = 0;
    for (int i = 0; i < n_vocab; i++)
        if (prob[i] > 0.0f && prob[i] >= thr)
            s->idx[m++] = i;
    if (m == 0)
        return i_max;
    int k = ref_nucleus_select(s->idx, prob, m, top_p * sum);
    double total = 0.0;
    for (int i = 0; i < k; i++)
        total += prob[s->idx[i]];
    return ref_draw_weighted(s->idx, prob, k, total, rng_state);
}

#endif
