/* sched: sequences and the continuous-batching scheduler (vLLM V1 semantics). Each request is a
 * struct seq with an explicit state machine and its own KV block table; sched_step() runs one
 * engine step in a fixed order:
 *   1. one decode token for every running sequence in DECODE (admission order);
 *   2. the rest of the token budget (max_num_batched_tokens) goes to prefill chunks: first the
 *      running sequences still in PREFILL, then waiting sequences in FCFS order (admission looks
 *      up the prefix cache first, so only the rest is computed; never more than max_num_seqs
 *      running; with chunked prefill off a prompt is scheduled whole or not at all);
 *   3. KV blocks are reserved per sequence as it is scheduled; when blocks run out for a running
 *      sequence, the most recently admitted running sequence is preempted (blocks released, put
 *      back at the FRONT of the waiting queue to recompute prompt + generated tokens) until the
 *      reservation succeeds or the sequence preempted itself. A waiting sequence that does not
 *      fit just waits; no waiting sequence is admitted in a step that preempted;
 *   4. one forward pass over the whole batch; newly full blocks are committed (prefix cache);
 *   5. a token is sampled for each sequence whose scheduled tokens complete it (end of a prompt
 *      or a decode): all such rows at once, over cfg.n_sample_threads OpenMP threads (each row
 *      draws from its own RNG word, so the tokens do not depend on the thread count or on the
 *      other rows); then, in batch order, the tokens are appended and finishes decided;
 *   6. events go to each request's callback;
 *   7. finished sequences release their blocks and move to the done list.
 *
 * States: WAITING -> PREFILL -> DECODE -> FINISHED, any -> ABORTED, PREFILL/DECODE -> WAITING on
 * preemption. PREFILL means running with tokens still to compute beyond the last one; DECODE
 * means all tokens but the last sampled one have K/V.
 *
 * Engine thread only: nothing here locks. It knows nothing about threads (beyond the sampling
 * thread count it hands to sampler_sample_rows), HTTP or ids handed to clients; engine.c owns
 * those (and the fields marked "engine.c" below).
 *
 *   struct sched sc;
 *   sched_init(&sc, &cfg, &kv, fwd, model);
 *   sched_add(&sc, seq_new(...));       // to the back of the waiting queue
 *   while (sched_has_work(&sc)) sched_step(&sc);
 *   for (struct seq *d = sched_take_done(&sc); d; ) { next = d->next; seq_free(d); d = next; }
 *   sched_free(&sc);
 */
#ifndef SLM_SCHED_H
#define SLM_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine/forward.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "util/clock.h"

enum seq_state {
    SEQ_STATE_WAITING = 0, /* queued (new, or preempted: recomputes everything it has) */
    SEQ_STATE_PREFILL,     /* running, prompt (or recompute) not done */
    SEQ_STATE_DECODE,      /* running, one token per step */
    SEQ_STATE_FINISHED,    /* length or EOS; blocks released */
    SEQ_STATE_ABORTED,     /* engine_abort / engine_stop; blocks released */
};
const char *seq_state_str(enum seq_state st);

struct seq {
    uint64_t id;
    enum seq_state state;
    int32_t *tokens;        /* [cap]: prompt, then generated tokens */
    int cap;                /* n_prompt + max_tokens (<= max_model_len) */
    int n_prompt;
    int n_tokens;           /* prompt + generated */
    int n_generated;
    int n_cached;           /* prompt tokens found in the prefix cache at the last admission */
    int n_preempted;
    int n_sched;            /* tokens scheduled in the current step */
    int sampled;            /* a token was sampled in the current step (event pending) */
    struct sampling_params sp;
    uint64_t rng_state;     /* sampler RNG (advanced per sampled token) */
    struct kv_seq kv;       /* block table; kv.n_computed tokens have K/V */
    enum engine_finish finish;
    engine_event_cb cb;
    void *ud;
    mono_ns t_arrival_ns;
    mono_ns t_scheduled_ns;   /* first admission */
    mono_ns t_first_token_ns;
    uint64_t admit_order;     /* larger = admitted more recently (preemption victim order) */
    int prompt_counted;       /* prompt tokens added to the counters (once per request) */
    struct seq *prev, *next;  /* waiting queue, then done list (scheduler) */
    /* engine.c, under its mutex */
    struct seq *live_prev, *live_next; /* every seq not yet freed */
    struct seq *in_next;               /* submitted, not yet handed to the scheduler */
    struct seq *abort_next;            /* taken for abort by the engine thread */
    int abort_requested;
    int abort_taken;
};

/* Allocates a sequence in state WAITING holding a copy of the prompt, with room for
 * n_prompt + sp->max_tokens tokens and a block table for them. Caller checked the arguments
 * (n_prompt >= 1, sp->max_tokens >= 1). Freed with seq_free (after its blocks were released). */
struct seq *seq_new(uint64_t id, const int32_t *prompt, int n_prompt,
                    const struct sampling_params *sp, uint64_t rng_state, int block_size,
                    engine_event_cb cb, void *ud, mono_ns t_arrival_ns);
void seq_free(struct seq *q); /* NULL-safe */

struct sched_config {
    int max_num_seqs;
    int max_num_batched_tokens;
    int max_model_len;
    int enable_chunked_prefill;
    int n_sample_threads; /* OpenMP threads sampling a step's rows (< 1: one, the caller's) */
};

struct sched_counters {
    uint64_t prompt_tokens;     /* per request, at first admission, cached ones included */
    uint64_t generation_tokens; /* sampled tokens */
    uint64_t preemptions;
    uint64_t finished_length;
    uint64_t finished_stop;
    uint64_t finished_abort;
    uint64_t steps;             /* steps that ran a forward pass */
    uint64_t step_tokens;       /* tokens computed, summed over steps */
    int n_running_peak;         /* most sequences running at once (after scheduling) */
    int n_step_tokens_peak;     /* most tokens in one step */
    int n_step_seqs_peak;       /* most sequences in one step */
};

struct sched {
    struct sched_config cfg;
    struct kv_cache *kv;
    struct forward *fwd;
    const struct model *model;
    struct sampler *samplers;   /* [n_samplers], one scratch per sampling thread */
    int n_samplers;
    struct seq **running;       /* [max_num_seqs], admission order */
    int n_running;
    struct seq *wait_head, *wait_tail;
    int n_waiting;
    struct seq *done_head;      /* finished/aborted, linked by next, for the owner to free */
    /* step scratch, sized at init */
    struct seq **step;          /* [max_num_seqs] sequences scheduled this step, batch order */
    int n_step;
    int budget;                 /* tokens left in the current step */
    int preempted_this_step;
    int32_t *b_token, *b_pos, *b_seq; /* [max_num_batched_tokens] */
    uint8_t *b_wants;
    struct kv_seq **b_seqs;     /* [max_num_seqs] */
    struct sampler_row *rows;   /* [max_num_seqs] rows to sample this step */
    struct seq **row_seq;       /* [max_num_seqs] the sequence of each row */
    int32_t *row_tok;           /* [max_num_seqs] the sampled tokens */
    uint64_t admit_counter;
    struct sched_counters c;
    /* Called once per step right before its token events go out (NULL: none), so that counters
     * published elsewhere (the engine's /metrics copy) are never older than a response. */
    void (*before_events)(void *ud);
    void *before_events_ud;
};

/* The KV cache, forward workspace and model must outlive the scheduler. The forward workspace
 * must hold max_num_batched_tokens tokens and min(max_num_seqs, max_num_batched_tokens) logits
 * rows. Allocates the step scratch. 0, or -1 on a bad config. */
int sched_init(struct sched *s, const struct sched_config *cfg, struct kv_cache *kv,
               struct forward *fwd, const struct model *model);
/* Frees the scratch. Sequences still queued are released and freed without events. NULL-safe. */
void sched_free(struct sched *s);
/* Bytes sched_init allocates for cfg and a vocabulary of n_vocab: the step arrays and one
 * sampler's scratch per sampling thread (counted in the engine's workspace). */
uint64_t sched_scratch_bytes(const struct sched_config *cfg, int n_vocab);

/* Appends a WAITING sequence to the back of the waiting queue. */
void sched_add(struct sched *s, struct seq *q);
/* 1 if any sequence is waiting or running. */
int sched_has_work(const struct sched *s);

/* One step (see the top of this file). Returns the number of tokens computed (0: nothing could
 * be scheduled this step, e.g. the only running sequence preempted itself; the next step
 * re-admits it). Events are emitted from here, on the calling thread. */
int sched_step(struct sched *s);

/* Aborts q wherever it is (waiting or running): releases its blocks, sends the final ABORT
 * event, moves it to the done list. A sequence already finished or aborted is left alone.
 * Between steps only. */
void sched_abort(struct sched *s, struct seq *q);
/* Aborts every waiting and running sequence (engine_stop). */
void sched_abort_all(struct sched *s);

/* Detaches the done list (linked by ->next); the caller frees each with seq_free. */
struct seq *sched_take_done(struct sched *s);

/* Checks the scheduler's own invariants (queue counts and links, states, running <=
 * max_num_seqs, token counts) and the KV invariants with every queued sequence's table.
 * Between steps. 0, or -1 with a message. */
int sched_check(const struct sched *s, char *err, size_t err_len);

#endif
