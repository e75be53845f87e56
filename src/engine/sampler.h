/* sampler: picks the next token from a row of logits. Greedy (argmax, lowest id wins ties, so
 * greedy decoding is bit-reproducible) when temperature == 0; otherwise softmax with temperature,
 * then top-p (nucleus) over a partial selection of the largest probabilities, drawing from a
 * per-sequence RNG state (splitmix64-seeded xoshiro256**-style generator folded into one u64:
 * the state is a plain uint64_t the caller keeps with the sequence). EOS and the other
 * end-of-generation tokens can be masked (min_tokens, ignore_eos). It does no top-k, penalties
 * or logit bias, and never allocates after sampler_init. One struct sampler per thread (scratch
 * is not shared); sampler_sample_rows samples a step's rows over several threads.
 *
 *   struct sampler s;
 *   sampler_init(&s, n_vocab);
 *   uint64_t rng = sampler_seed_state(sp.seed);
 *   int32_t tok = sampler_sample(&s, logits, n_vocab, &sp, n_generated, eos_id, &rng);
 *   sampler_free(&s);
 */
#ifndef SLM_SAMPLER_H
#define SLM_SAMPLER_H

#include <stdint.h>

#include "engine/engine.h"

struct sampler {
    int n_vocab;    /* capacity of the scratch arrays */
    int32_t *idx;   /* [n_vocab] candidate token ids (top-p partial selection) */
    float *prob;    /* [n_vocab] probabilities (softmax scratch) */
    double *cum;    /* [ceil(n_vocab / SAMPLER_BLOCK)] running sum of prob at each block's end */
};

#define SAMPLER_BLOCK 1024 /* tokens per checkpoint of the running probability sum */

/* Allocates the scratch once (aborts on OOM with the size). n_vocab >= 1. */
void sampler_init(struct sampler *s, int n_vocab);
/* NULL-safe; leaves s zeroed. */
void sampler_free(struct sampler *s);
/* Bytes sampler_init allocates for n_vocab (counted in the engine's workspace). */
uint64_t sampler_scratch_bytes(int n_vocab);

/* Picks the next token from logits[n_vocab] (may be modified in place: EOS masking).
 * n_vocab must be <= the n_vocab given to sampler_init. Greedy when sp->temperature == 0
 * (argmax, lowest id wins ties: bit-reproducible). Otherwise softmax with temperature, then
 * top-p nucleus (the smallest set of most likely tokens whose mass reaches top_p; top_p >= 1
 * samples from the full distribution without sorting), drawing from *rng_state (advanced).
 * EOS (eos_id; ignored when < 0 or >= n_vocab) is masked while n_generated < sp->min_tokens or
 * when sp->ignore_eos. Non-finite logits (NaN) never win. Returns a token id in [0, n_vocab). */
int32_t sampler_sample(struct sampler *s, float *logits, int n_vocab,
                       const struct sampling_params *sp, int n_generated, int eos_id,
                       uint64_t *rng_state);

/* sampler_sample with every end-of-generation id masked the same way as eos_id: eog[0..n_eog)
 * (the tokenizer's EOG set: <|im_end|>, <|end|>, <|endoftext|>, <|eot_id|>, ...; ids outside
 * [0, n_vocab) ignored) as well as eos_id. */
int32_t sampler_sample_eog(struct sampler *s, float *logits, int n_vocab,
                           const struct sampling_params *sp, int n_generated, int eos_id,
                           const int32_t *eog, int n_eog, uint64_t *rng_state);

/* One row of a step for sampler_sample_rows. */
struct sampler_row {
    float *logits;                    /* [n_vocab]; may be modified in place (EOS masking) */
    const struct sampling_params *sp;
    int n_generated;
    uint64_t *rng_state;              /* the row's own RNG word (advanced) */
};

/* Samples every row of a step: tokens[i] = sampler_sample_eog(rows[i]...), on up to n_samplers
 * OpenMP threads (thread t uses samplers[t]; n_samplers >= 1 initialised samplers, n_vocab within
 * each). Rows must not share logits or rng_state. The token of a row depends only on that row
 * (not on n_samplers, nor on the other rows). Call from one thread at a time per samplers array. */
void sampler_sample_rows(struct sampler *samplers, int n_samplers, const struct sampler_row *rows,
                         int n_rows, int n_vocab, int eos_id, const int32_t *eog, int n_eog,
                         int32_t *tokens);

/* RNG state from a user seed (splitmix64 mixing: nearby seeds give unrelated streams). */
uint64_t sampler_seed_state(uint64_t seed);

/* The next uniform double in [0, 1) from *rng_state (advanced). Exposed for tests and for the
 * engine's per-request seed generator. */
double sampler_next_uniform(uint64_t *rng_state);

#endif
