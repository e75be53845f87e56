/* sched: the sequence state machine and one continuous-batching step (see sched.h for the order
 * of the step and the preemption rules). Engine thread only; no locks, no allocation in a step.
 * It does not compute (forward.c), manage blocks (kv.c) or know about threads (engine.c); the
 * sampler's OpenMP threads for a step's rows start and end inside sampler_sample_rows. */
#include "engine/sched.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/log.h"

const char *seq_state_str(enum seq_state st)
{
    switch (st) {
    case SEQ_STATE_WAITING:
        return "waiting";
    case SEQ_STATE_PREFILL:
        return "prefill";
    case SEQ_STATE_DECODE:
        return "decode";
    case SEQ_STATE_FINISHED:
        return "finished";
    case SEQ_STATE_ABORTED:
        return "aborted";
    }
    return "unknown";
}

struct seq *seq_new(uint64_t id, const int32_t *prompt, int n_prompt,
                    const struct sampling_params *sp, uint64_t rng_state, int block_size,
                    engine_event_cb cb, void *ud, mono_ns t_arrival_ns)
{
    struct seq *q = xcalloc(1, sizeof *q);
    q->id = id;
    q->state = SEQ_STATE_WAITING;
    q->cap = n_prompt + sp->max_tokens;
    q->tokens = xmalloc((size_t)q->cap * sizeof *q->tokens);
    memcpy(q->tokens, prompt, (size_t)n_prompt * sizeof *q->tokens);
    q->n_prompt = n_prompt;
    q->n_tokens = n_prompt;
    q->sp = *sp;
    q->rng_state = rng_state;
    kv_seq_init(&q->kv, (q->cap + block_size - 1) / block_size);
    q->finish = ENGINE_FINISH_NONE;
    q->cb = cb;
    q->ud = ud;
    q->t_arrival_ns = t_arrival_ns;
    return q;
}

void seq_free(struct seq *q)
{
    if (!q)
        return;
    kv_seq_free(&q->kv);
    free(q->tokens);
    free(q);
}

int sched_init(struct sched *s, const struct sched_config *cfg, struct kv_cache *kv,
               struct forward *fwd, const struct model *model)
{
    memset(s, 0, sizeof *s);
    if (cfg->max_num_seqs < 1 || cfg->max_num_batched_tokens < 1 || cfg->max_model_len < 2)
        return -1;
    s->cfg = *cfg;
    s->kv = kv;
    s->fwd = fwd;
    s->model = model;
    s->n_samplers = cfg->n_sample_threads > 1 ? cfg->n_sample_threads : 1;
    s->samplers = xcalloc((size_t)s->n_samplers, sizeof *s->samplers);
    for (int t = 0; t < s->n_samplers; t++)
        sampler_init(&s->samplers[t], model->cfg.n_vocab);
    size_t ns = (size_t)cfg->max_num_seqs, nt = (size_t)cfg->max_num_batched_tokens;
    s->running = xcalloc(ns, sizeof *s->running);
    s->step = xcalloc(ns, sizeof *s->step);
    s->b_seqs = xcalloc(ns, sizeof *s->b_seqs);
    s->rows = xcalloc(ns, sizeof *s->rows);
    s->row_seq = xcalloc(ns, sizeof *s->row_seq);
    s->row_tok = xcalloc(ns, sizeof *s->row_tok);
    s->b_token = xcalloc(nt, sizeof *s->b_token);
    s->b_pos = xcalloc(nt, sizeof *s->b_pos);
    s->b_seq = xcalloc(nt, sizeof *s->b_seq);
    s->b_wants = xcalloc(nt, sizeof *s->b_wants);
    return 0;
}

uint64_t sched_scratch_bytes(const struct sched_config *cfg, int n_vocab)
{
    uint64_t ns = (uint64_t)cfg->max_num_seqs, nt = (uint64_t)cfg->max_num_batched_tokens;
    uint64_t n_samplers = cfg->n_sample_threads > 1 ? (uint64_t)cfg->n_sample_threads : 1;
    const struct sched *s = NULL; /* sizeof only: the element types of sched_init's arrays */
    return n_samplers * (sizeof *s->samplers + sampler_scratch_bytes(n_vocab)) +
           ns * (sizeof *s->running + sizeof *s->step + sizeof *s->b_seqs + sizeof *s->rows +
                 sizeof *s->row_seq + sizeof *s->row_tok) +
           nt * (sizeof *s->b_token + sizeof *s->b_pos + sizeof *s->b_seq + sizeof *s->b_wants);
}

static void free_list(struct sched *s, struct seq *q)
{
    while (q) {
        struct seq *next = q->next;
        kv_seq_release(s->kv, &q->kv);
        seq_free(q);
        q = next;
    }
}

void sched_free(struct sched *s)
{
    if (!s || !s->running)
        return;
    for (int i = 0; i < s->n_running; i++) {
        kv_seq_release(s->kv, &s->running[i]->kv);
        seq_free(s->running[i]);
    }
    free_list(s, s->wait_head);
    free_list(s, s->done_head);
    for (int t = 0; t < s->n_samplers; t++)
        sampler_free(&s->samplers[t]);
    free(s->samplers);
    free(s->rows);
    free(s->row_seq);
    free(s->row_tok);
    free(s->running);
    free(s->step);
    free(s->b_seqs);
    free(s->b_token);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_wants);
    memset(s, 0, sizeof *s);
}

/* ---- queues ---- */

static void wait_push_back(struct sched *s, struct seq *q)
{
    q->prev = s->wait_tail;
    q->next = NULL;
    if (s->wait_tail)
        s->wait_tail->next = q;
    else
        s->wait_head = q;
    s->wait_tail = q;
    s->n_waiting++;
}

static void wait_push_front(struct sched *s, struct seq *q)
{
    q->prev = NULL;
    q->next = s->wait_head;
    if (s->wait_head)
        s->wait_head->prev = q;
    else
        s->wait_tail = q;
    s->wait_head = q;
    s->n_waiting++;
}

static void wait_remove(struct sched *s, struct seq *q)
{
    if (q->prev)
        q->prev->next = q->next;
    else
        s->wait_head = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        s->wait_tail = q->prev;
    q->prev = q->next = NULL;
    s->n_waiting--;
}

static void running_remove(struct sched *s, struct seq *q)
{
    for (int i = 0; i < s->n_running; i++) {
        if (s->running[i] == q) {
            memmove(&s->running[i], &s->running[i + 1],
                    (size_t)(s->n_running - i - 1) * sizeof *s->running);
            s->n_running--;
            return;
        }
    }
}

static void step_remove(struct sched *s, struct seq *q)
{
    for (int i = 0; i < s->n_step; i++) {
        if (s->step[i] == q) {
            memmove(&s->step[i], &s->step[i + 1], (size_t)(s->n_step - i - 1) * sizeof *s->step);
            s->n_step--;
            return;
        }
    }
}

static void done_push(struct sched *s, struct seq *q)
{
    q->prev = NULL;
    q->next = s->done_head;
    s->done_head = q;
}

void sched_add(struct sched *s, struct seq *q)
{
    q->state = SEQ_STATE_WAITING;
    wait_push_back(s, q);
}

int sched_has_work(const struct sched *s)
{
    return s->n_running > 0 || s->n_waiting > 0;
}

struct seq *sched_take_done(struct sched *s)
{
    struct seq *d = s->done_head;
    s->done_head = NULL;
    return d;
}

/* ---- events ---- */

static void emit(struct seq *q, int32_t token, enum engine_finish fin)
{
    if (!q->cb)
        return;
    struct engine_event ev = {
        .req_id = q->id,
        .token = token,
        .finish = fin,
        .n_prompt = q->n_prompt,
        .n_cached = q->n_cached,
        .n_generated = q->n_generated,
        .n_preempted = q->n_preempted,
        .t_arrival_ns = q->t_arrival_ns,
        .t_scheduled_ns = q->t_scheduled_ns,
        .t_first_token_ns = q->t_first_token_ns,
        .t_event_ns = clock_now_ns(),
    };
    q->cb(q->ud, &ev);
}

/* ---- preemption ---- */

/* Recompute-style preemption (vLLM V1): drop the blocks, go back to the front of the waiting
 * queue; prompt + generated tokens are recomputed on re-admission (the prefix cache usually
 * still holds the full blocks). */
static void preempt(struct sched *s, struct seq *v)
{
    if (v->n_sched > 0) { /* scheduled earlier in this step: give its tokens back */
        s->budget += v->n_sched;
        v->n_sched = 0;
        step_remove(s, v);
    }
    running_remove(s, v);
    kv_seq_release(s->kv, &v->kv);
    v->state = SEQ_STATE_WAITING;
    v->n_preempted++;
    s->c.preemptions++;
    s->preempted_this_step = 1;
    wait_push_front(s, v);
    log_debug("sched", "preempted request %" PRIu64 " (%d tokens to recompute)", v->id,
              v->n_tokens);
}

/* Reserves blocks so q holds n_tokens, preempting the most recently admitted running sequence
 * while blocks are short. 0: reserved. -1: q itself was the victim. */
static int reserve_or_preempt(struct sched *s, struct seq *q, int n_tokens)
{
    while (kv_seq_reserve(s->kv, &q->kv, n_tokens) != 0) {
        struct seq *victim = s->running[s->n_running - 1];
        preempt(s, victim);
        if (victim == q)
            return -1;
    }
    return 0;
}

static void step_add(struct sched *s, struct seq *q, int n)
{
    q->n_sched = n;
    s->budget -= n;
    s->step[s->n_step++] = q;
}

/* ---- scheduling (phases 1-3) ---- */

static void schedule_running(struct sched *s, enum seq_state which)
{
    for (int i = 0; i < s->n_running && s->budget > 0; i++) {
        struct seq *q = s->running[i];
        if (q->state != which)
            continue;
        int todo = q->n_tokens - q->kv.n_computed;
        int n = todo < s->budget ? todo : s->budget;
        if (which == SEQ_STATE_PREFILL && !s->cfg.enable_chunked_prefill && n < todo)
            continue;
        if (reserve_or_preempt(s, q, q->kv.n_computed + n) != 0)
            break; /* q preempted itself: it was the last running sequence */
        step_add(s, q, n);
    }
}

static void schedule_waiting(struct sched *s, mono_ns now)
{
    struct kv_cache *kv = s->kv;
    while (s->wait_head && s->budget > 0 && s->n_running < s->cfg.max_num_seqs) {
        struct seq *q = s->wait_head;
        uint64_t queries0 = kv->prefix_queries_tokens, hits0 = kv->prefix_hits_tokens;
        int hit = kv_seq_match_prefix(kv, &q->kv, q->tokens, q->n_tokens);
        if (hit < 0) { /* table not empty: a bug; never schedule it */
            log_error("sched", "request %" PRIu64 ": block table not empty while waiting", q->id);
            break;
        }
        int todo = q->n_tokens - hit;
        int n = todo < s->budget ? todo : s->budget;
        if ((n < todo && !s->cfg.enable_chunked_prefill) ||
            kv_seq_reserve(kv, &q->kv, hit + n) != 0) {
            /* Does not fit now: give the prefix hits back and wait (FCFS: nobody overtakes).
             * The lookup is not counted; it is repeated (and counted) when it is admitted. */
            kv_seq_release(kv, &q->kv);
            kv->prefix_queries_tokens = queries0;
            kv->prefix_hits_tokens = hits0;
            break;
        }
        wait_remove(s, q);
        s->running[s->n_running++] = q;
        q->state = SEQ_STATE_PREFILL;
        q->admit_order = ++s->admit_counter;
        q->n_cached = hit < q->n_prompt ? hit : q->n_prompt;
        if (!q->t_scheduled_ns)
            q->t_scheduled_ns = now;
        if (!q->prompt_counted) {
            s->c.prompt_tokens += (uint64_t)q->n_prompt;
            q->prompt_counted = 1;
        }
        step_add(s, q, n);
    }
}

/* ---- phases 5-7 ---- */

static void finish(struct sched *s, struct seq *q, enum engine_finish why)
{
    q->finish = why;
    q->state = why == ENGINE_FINISH_ABORT ? SEQ_STATE_ABORTED : SEQ_STATE_FINISHED;
    if (why == ENGINE_FINISH_LENGTH)
        s->c.finished_length++;
    else if (why == ENGINE_FINISH_EOS)
        s->c.finished_stop++;
    else
        s->c.finished_abort++;
}

/* 5. samples the step's rows s->rows[0..n_rows) at once, then appends each token and decides
 * finishes in batch order (the order the rows were collected in). */
static void sample_rows(struct sched *s, int n_rows)
{
    mono_ns t_sample = clock_now_ns();
    sampler_sample_rows(s->samplers, s->n_samplers, s->rows, n_rows, s->model->cfg.n_vocab,
                        s->model->cfg.eos_id, s->model->tok.eog, s->model->tok.n_eog,
                        s->row_tok);
    for (int k = 0; k < n_rows; k++) {
        struct seq *q = s->row_seq[k];
        int32_t tok = s->row_tok[k];
        q->tokens[q->n_tokens++] = tok;
        q->n_generated++;
        q->sampled = 1;
        s->c.generation_tokens++;
        if (!q->t_first_token_ns)
            q->t_first_token_ns = t_sample;
        q->state = SEQ_STATE_DECODE;
        if (tokenizer_is_eog(&s->model->tok, tok) && !q->sp.ignore_eos)
            finish(s, q, ENGINE_FINISH_EOS);
        else if (q->n_generated >= q->sp.max_tokens || q->n_tokens >= q->cap ||
                 q->n_tokens >= s->cfg.max_model_len)
            finish(s, q, ENGINE_FINISH_LENGTH);
    }
}

int sched_step(struct sched *s)
{
    mono_ns now = clock_now_ns();
    s->n_step = 0;
    s->budget = s->cfg.max_num_batched_tokens;
    s->preempted_this_step = 0;

    schedule_running(s, SEQ_STATE_DECODE);
    schedule_running(s, SEQ_STATE_PREFILL);
    if (!s->preempted_this_step)
        schedule_waiting(s, now);
    if (s->n_running > s->c.n_running_peak)
        s->c.n_running_peak = s->n_running;
    if (s->n_step == 0)
        return 0;

    /* 4. the batch: each sequence's scheduled tokens, contiguous; the last token of a sequence
     * wants logits when it completes the sequence's known tokens. */
    int n = 0;
    for (int j = 0; j < s->n_step; j++) {
        struct seq *q = s->step[j];
        int p0 = q->kv.n_computed;
        for (int p = p0; p < p0 + q->n_sched; p++) {
            s->b_token[n] = q->tokens[p];
            s->b_pos[n] = p;
            s->b_seq[n] = j;
            s->b_wants[n] = p == q->n_tokens - 1;
            n++;
        }
        s->b_seqs[j] = &q->kv;
    }
    struct forward_batch fb = {n, s->b_token, s->b_pos, s->b_seq, s->b_wants, s->n_step, s->b_seqs};
    int n_logits = 0;
    enum forward_status fst = forward_run(s->fwd, s->kv, &fb, &n_logits);
    if (fst != FORWARD_OK) {
        /* The scheduler built a batch the workspace cannot take: a bug, not a runtime
         * condition. Stop loudly rather than emit wrong tokens. */
        log_error("sched", "forward: %s (%d tokens, %d sequences)", forward_status_str(fst), n,
                  s->n_step);
        abort();
    }
    s->c.steps++;
    s->c.step_tokens += (uint64_t)n;
    if (n > s->c.n_step_tokens_peak)
        s->c.n_step_tokens_peak = n;
    if (s->n_step > s->c.n_step_seqs_peak)
        s->c.n_step_seqs_peak = s->n_step;

    /* 4b. commit new K/V (registers newly full blocks); collect the rows to sample. */
    int r = 0;
    for (int j = 0; j < s->n_step; j++) {
        struct seq *q = s->step[j];
        int computed = q->kv.n_computed + q->n_sched;
        kv_seq_commit(s->kv, &q->kv, q->tokens, computed);
        q->n_sched = 0;
        if (computed < q->n_tokens)
            continue; /* prefill chunk: more to come */
        if (r < n_logits && r < s->cfg.max_num_seqs) {
            s->rows[r] = (struct sampler_row){forward_logits(s->fwd, r), &q->sp, q->n_generated,
                                              &q->rng_state};
            s->row_seq[r] = q;
        }
        r++;
    }
    if (r != n_logits) { /* one logits row per completed sequence, by construction */
        log_error("sched", "%d logits rows for %d sampled sequences", n_logits, r);
        abort();
    }

    sample_rows(s, r);

    /* 6. events, in batch order: one per sampled token (the last one carries the finish). */
    if (s->before_events)
        s->before_events(s->before_events_ud);
    for (int j = 0; j < s->n_step; j++) {
        struct seq *q = s->step[j];
        if (!q->sampled)
            continue;
        q->sampled = 0;
        emit(q, q->tokens[q->n_tokens - 1], q->finish);
    }

    /* 7. finished sequences leave. */
    for (int j = 0; j < s->n_step; j++) {
        struct seq *q = s->step[j];
        if (q->state != SEQ_STATE_FINISHED)
            continue;
        running_remove(s, q);
        kv_seq_release(s->kv, &q->kv);
        done_push(s, q);
    }
    s->n_step = 0;
    return n;
}

void sched_abort(struct sched *s, struct seq *q)
{
    if (q->state == SEQ_STATE_FINISHED || q->state == SEQ_STATE_ABORTED)
        return;
    if (q->state == SEQ_STATE_WAITING)
        wait_remove(s, q);
    else
        running_remove(s, q);
    kv_seq_release(s->kv, &q->kv);
    finish(s, q, ENGINE_FINISH_ABORT);
    emit(q, -1, ENGINE_FINISH_ABORT);
    done_push(s, q);
}

void sched_abort_all(struct sched *s)
{
    while (s->n_running > 0)
        sched_abort(s, s->running[s->n_running - 1]);
    while (s->wait_head)
        sched_abort(s, s->wait_head);
}

#define CHECK_FAIL(...)                                                                            \
    do {                                                                                           \
        snprintf(err, err_len, __VA_ARGS__);                                                       \
        goto fail;                                                                                 \
    } while (0)

int sched_check(const struct sched *s, char *err, size_t err_len)
{
    int n_all = s->n_running + s->n_waiting;
    const struct kv_seq **tables = xcalloc((size_t)(n_all > 0 ? n_all : 1), sizeof *tables);
    int k = 0;
    if (s->n_running < 0 || s->n_running > s->cfg.max_num_seqs)
        CHECK_FAIL("sched: %d running, max_num_seqs %d", s->n_running, s->cfg.max_num_seqs);
    for (int i = 0; i < s->n_running; i++) {
        const struct seq *q = s->running[i];
        if (q->state != SEQ_STATE_PREFILL && q->state != SEQ_STATE_DECODE)
            CHECK_FAIL("sched: running request %" PRIu64 " in state %s", q->id,
                       seq_state_str(q->state));
        if (i > 0 && s->running[i - 1]->admit_order >= q->admit_order)
            CHECK_FAIL("sched: running queue out of admission order at %d", i);
        if (q->kv.n_computed >= q->n_tokens)
            CHECK_FAIL("sched: request %" PRIu64 " computed %d of %d tokens", q->id,
                       q->kv.n_computed, q->n_tokens);
        if (q->n_tokens > q->cap || q->n_generated != q->n_tokens - q->n_prompt)
            CHECK_FAIL("sched: request %" PRIu64 " has %d tokens (cap %d, %d generated)", q->id,
                       q->n_tokens, q->cap, q->n_generated);
        if (q->state == SEQ_STATE_DECODE && q->kv.n_computed != q->n_tokens - 1)
            CHECK_FAIL("sched: request %" PRIu64 " decoding with %d of %d tokens computed",
                       q->id, q->kv.n_computed, q->n_tokens);
        tables[k++] = &q->kv;
    }
    int n_w = 0;
    for (const struct seq *q = s->wait_head; q; q = q->next) {
        if (q->state != SEQ_STATE_WAITING)
            CHECK_FAIL("sched: waiting request %" PRIu64 " in state %s", q->id,
                       seq_state_str(q->state));
        if (q->kv.n_blocks != 0 || q->kv.n_computed != 0)
            CHECK_FAIL("sched: waiting request %" PRIu64 " holds %d blocks", q->id,
                       q->kv.n_blocks);
        if (q->next && q->next->prev != q)
            CHECK_FAIL("sched: waiting queue links broken at request %" PRIu64, q->id);
        if (++n_w > s->n_waiting)
            break;
        tables[k++] = &q->kv;
    }
    if (n_w != s->n_waiting)
        CHECK_FAIL("sched: %d waiting in the queue, counter says %d", n_w, s->n_waiting);
    if (kv_check_invariants(s->kv, tables, k, err, err_len) != 0)
        goto fail;
    free(tables);
    return 0;
fail:
    free(tables);
    return -1;
}
