/* test_engine: the real engine (scheduler, paged KV cache, prefix cache, forward pass, engine
 * thread) on the tiny preset with random weights and small KV pools. Covers: many concurrent
 * requests, continuous batching, the max_num_seqs cap, greedy output independent of batch
 * composition, preemption under a tight pool (with output identical to an unpreempted run),
 * abort, prefix-cache hits at block boundaries, LRU eviction, chunked prefill off, seeded
 * sampling, start-up sizing errors and log lines, warm-up, stop with requests in flight, and a
 * randomized multi-threaded stress run with the invariant check after every step. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/forward.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/sched.h"
#include "test.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

#define MAX_OUT 512
#define KV_BLOCK_BYTES (64 * 1024) /* tiny: 4 layers x 2 x 128 x 4 bytes x 16 tokens */

static struct model *g_model;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

struct out {
    uint64_t id;
    int32_t toks[MAX_OUT];
    int n;
    int done;
    enum engine_finish fin;
    int last_token;
    int n_cached;
    int n_preempted;
    int n_prompt;
    int bad; /* protocol violations seen by the callback */
    int abort_after; /* test_stress: abort once this many tokens arrived (0: never) */
    struct engine *e;
};

static void on_event(void *ud, const struct engine_event *ev)
{
    struct out *o = ud;
    pthread_mutex_lock(&g_mu);
    if (o->done)
        o->bad++; /* nothing may follow the final event */
    if (ev->token >= 0) {
        if (o->n < MAX_OUT)
            o->toks[o->n] = ev->token;
        o->n++;
        if (ev->n_generated != o->n)
            o->bad++;
    } else if (ev->finish == ENGINE_FINISH_NONE) {
        o->bad++; /* a token event must carry a token */
    }
    if (ev->t_event_ns < ev->t_arrival_ns)
        o->bad++;
    o->last_token = ev->token;
    o->n_cached = ev->n_cached;
    o->n_preempted = ev->n_preempted;
    o->n_prompt = ev->n_prompt;
    int abort_now = o->abort_after > 0 && o->n == o->abort_after && ev->finish == 0;
    if (ev->finish != ENGINE_FINISH_NONE) {
        o->fin = ev->finish;
        o->done = 1;
    }
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    if (abort_now)
        engine_abort(o->e, o->id); /* allowed from the callback */
}

/* Waits until every out is done (or 120 s pass). 0 when all done. */
static int wait_all(struct out *o, int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 120;
    pthread_mutex_lock(&g_mu);
    for (;;) {
        int all = 1;
        for (int i = 0; i < n; i++)
            all &= o[i].done;
        if (all)
            break;
        if (pthread_cond_timedwait(&g_cv, &g_mu, &dl) != 0) {
            pthread_mutex_unlock(&g_mu);
            return -1;
        }
    }
    pthread_mutex_unlock(&g_mu);
    return 0;
}

/* Waits until o has at least n tokens (or is done). */
static void wait_tokens(struct out *o, int n)
{
    pthread_mutex_lock(&g_mu);
    while (o->n < n && !o->done)
        pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
}

#ifdef __SANITIZE_ADDRESS__
size_t __sanitizer_get_current_allocated_bytes(void); /* libasan: live user bytes */
#endif

/* sched_scratch_bytes against what sched_init really allocates (ASan's count of live bytes),
 * with several sampling threads and a real vocabulary size. Without ASan there is no exact
 * count to compare with, and the check says so. */
static void check_sched_scratch_measured(void)
{
#ifdef __SANITIZE_ADDRESS__
    struct sched_config sc = {24, 96, 256, 1, 3};
    struct model_config mc = g_model->cfg;
    mc.n_vocab = 151669;
    const struct model fake = {.cfg = mc}; /* sched_init reads only the vocabulary size */
    struct sched s;
    size_t before = __sanitizer_get_current_allocated_bytes();
    CHECK(sched_init(&s, &sc, NULL, NULL, &fake) == 0);
    size_t grew = __sanitizer_get_current_allocated_bytes() - before;
    CHECK_EQ_INT((uint64_t)grew, sched_scratch_bytes(&sc, mc.n_vocab));
    sched_free(&s);
#else
    fprintf(stderr, "  (sched_scratch_bytes vs allocations: needs ASan, skipped)\n");
#endif
}

static void base_config(struct engine_config *c, int n_blocks)
{
    engine_config_defaults(c);
    c->max_model_len = 256;
    c->kv_cache_memory_bytes = (uint64_t)n_blocks * KV_BLOCK_BYTES;
    c->max_num_seqs = 16;
    c->max_num_batched_tokens = 128;
    c->warmup = ENGINE_WARMUP_NONE;
    c->n_threads = 1; /* compute threads: tests/test_forward.c covers them; here idle OpenMP
                         workers would only spin on a busy test machine */
    c->debug_check_invariants = 1;
}

static void fill_tokens(int32_t *t, int n, uint32_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = (int32_t)((seed >> 8) % 256u); /* byte tokens */
    }
}

static struct sampling_params greedy(int max_tokens)
{
    struct sampling_params sp = {0};
    sp.max_tokens = max_tokens;
    sp.temperature = 0.0f;
    sp.top_p = 1.0f;
    sp.ignore_eos = 1;
    return sp;
}

struct job {
    const int32_t *prompt;
    int n_prompt;
    struct sampling_params sp;
};

/* Runs jobs on a fresh engine: all submitted before the engine thread starts when together,
 * else one after another (each waits for the previous). Fills outs and the final stats. */
static int run_jobs(const struct engine_config *cfg, const struct job *jobs, int n, int together,
                    struct out *outs, struct engine_stats *st)
{
    char err[512];
    struct engine *e = engine_new(cfg, g_model, err, sizeof err);
    if (!e) {
        fprintf(stderr, "engine_new: %s\n", err);
        return -1;
    }
    memset(outs, 0, sizeof *outs * (size_t)n);
    int rc = 0;
    if (!together && engine_start(e) != 0)
        rc = -1;
    for (int i = 0; i < n && rc == 0; i++) {
        struct engine_request rq = {jobs[i].prompt, jobs[i].n_prompt, jobs[i].sp};
        outs[i].e = e;
        if (engine_submit(e, &rq, on_event, &outs[i], &outs[i].id) != ENGINE_OK)
            rc = -1;
        else if (!together && wait_all(&outs[i], 1) != 0)
            rc = -1;
    }
    if (rc == 0 && together && engine_start(e) != 0)
        rc = -1;
    if (rc == 0 && wait_all(outs, n) != 0)
        rc = -1;
    char cerr[512];
    if (engine_check_invariants(e, cerr, sizeof cerr) != 0) {
        fprintf(stderr, "invariants: %s\n", cerr);
        rc = -1;
    }
    engine_stop(e);
    if (st)
        engine_get_stats(e, st);
    engine_free(e);
    return rc;
}

/* ---- tests ---- */

static void test_engine_many(void)
{
    enum { N = 16 };
    int32_t prompts[N][80];
    struct job jobs[N];
    uint64_t total_gen = 0, total_prompt = 0;
    for (int i = 0; i < N; i++) {
        fill_tokens(prompts[i], 80, 100 + i);
        jobs[i].prompt = prompts[i];
        jobs[i].n_prompt = 10 + 4 * i;
        jobs[i].sp = greedy(8 + i);
        total_gen += (uint64_t)(8 + i);
        total_prompt += (uint64_t)(10 + 4 * i);
    }
    struct engine_config cfg;
    base_config(&cfg, 256);
    cfg.max_num_seqs = 8;
    struct out outs[N];
    struct engine_stats st;
    CHECK(run_jobs(&cfg, jobs, N, 1, outs, &st) == 0);
    for (int i = 0; i < N; i++) {
        CHECK_EQ_INT(outs[i].n, 8 + i);
        CHECK_EQ_INT(outs[i].fin, ENGINE_FINISH_LENGTH);
        CHECK_EQ_INT(outs[i].bad, 0);
        CHECK_EQ_INT(outs[i].n_prompt, 10 + 4 * i);
    }
    CHECK_EQ_INT(st.generation_tokens_total, total_gen);
    CHECK_EQ_INT(st.prompt_tokens_total, total_prompt);
    CHECK_EQ_INT(st.finished_length_total, N);
    /* Continuous batching: far fewer steps than tokens generated. */
    CHECK_MSG(st.steps_total * 3 < total_gen, "%llu steps for %llu tokens",
              (unsigned long long)st.steps_total, (unsigned long long)total_gen);
    /* max_num_seqs is a hard cap, and it is reached with 16 requests queued. */
    CHECK_EQ_INT(st.n_running_peak, 8);
    CHECK(st.n_step_tokens_peak <= cfg.max_num_batched_tokens);
    CHECK_EQ_INT(st.n_running, 0);
    CHECK_EQ_INT(st.n_waiting, 0);
    CHECK_EQ_INT(st.n_blocks_in_use, 0);
    CHECK_EQ_INT(st.n_blocks_free + st.n_blocks_evictable, st.n_blocks_total);
    CHECK(st.kv_usage == 0.0);
    fprintf(stderr, "  %llu steps, %llu tokens computed, %llu generated\n",
            (unsigned long long)st.steps_total, (unsigned long long)st.step_tokens_total,
            (unsigned long long)st.generation_tokens_total);
}

/* The reference outputs for the batch-composition and preemption tests: 8 prompts. */
enum { NB = 8, NB_GEN = 40 };
static int32_t g_bprompts[NB][64];
static struct job g_bjobs[NB];

static void bjobs_init(void)
{
    for (int i = 0; i < NB; i++) {
        fill_tokens(g_bprompts[i], 64, 500 + i);
        g_bjobs[i].prompt = g_bprompts[i];
        g_bjobs[i].n_prompt = 20 + 5 * i;
        g_bjobs[i].sp = greedy(NB_GEN);
    }
}

static void test_engine_batch_invariance(void)
{
    bjobs_init();
    struct engine_config cfg;
    base_config(&cfg, 256);
    struct out alone[NB], batched[NB];
    for (int i = 0; i < NB; i++)
        CHECK(run_jobs(&cfg, &g_bjobs[i], 1, 1, &alone[i], NULL) == 0);
    CHECK(run_jobs(&cfg, g_bjobs, NB, 1, batched, NULL) == 0);
    for (int i = 0; i < NB; i++) {
        CHECK_EQ_INT(batched[i].n, NB_GEN);
        CHECK_MSG(memcmp(alone[i].toks, batched[i].toks, sizeof(int32_t) * NB_GEN) == 0,
                  "request %d: greedy output alone differs from inside a batch", i);
    }
}

static void test_engine_preemption(void)
{
    struct engine_config cfg;
    base_config(&cfg, 256);
    struct out ref[NB], tight[NB];
    struct engine_stats st;
    CHECK(run_jobs(&cfg, g_bjobs, NB, 1, ref, &st) == 0);
    CHECK_EQ_INT(st.preemptions_total, 0);
    /* Each request needs 4-5 blocks at the end; 8 of them need ~36; give 18 (one
     * max_model_len sequence needs 16). */
    for (int caching = 0; caching < 2; caching++) {
        base_config(&cfg, 18);
        cfg.enable_prefix_caching = caching;
        CHECK(run_jobs(&cfg, g_bjobs, NB, 1, tight, &st) == 0);
        CHECK_MSG(st.preemptions_total > 0, "caching %d: no preemption", caching);
        int n_pre = 0;
        for (int i = 0; i < NB; i++) {
            CHECK_EQ_INT(tight[i].n, NB_GEN);
            CHECK_EQ_INT(tight[i].bad, 0);
            n_pre += tight[i].n_preempted;
            CHECK_MSG(memcmp(ref[i].toks, tight[i].toks, sizeof(int32_t) * NB_GEN) == 0,
                      "caching %d, request %d: output differs after preemption", caching, i);
        }
        CHECK_EQ_INT(n_pre, st.preemptions_total);
        /* Prompt tokens are counted once per request, not again on recompute. */
        uint64_t total_prompt = 0;
        for (int i = 0; i < NB; i++)
            total_prompt += (uint64_t)g_bjobs[i].n_prompt;
        CHECK_EQ_INT(st.prompt_tokens_total, total_prompt);
        CHECK_EQ_INT(st.generation_tokens_total, NB * NB_GEN);
        CHECK_EQ_INT(st.n_blocks_in_use, 0);
        fprintf(stderr, "  caching %d: %llu preemptions, %llu steps\n", caching,
                (unsigned long long)st.preemptions_total, (unsigned long long)st.steps_total);
    }
}

/* The pool holds exactly one max_model_len sequence (16 blocks): a request that needs all of it
 * runs alongside others and must still finish (others are preempted, nothing deadlocks). */
static void test_engine_whole_pool(void)
{
    struct engine_config cfg;
    base_config(&cfg, 16);
    int32_t big[256], small[4][64];
    fill_tokens(big, 256, 61);
    struct job jobs[5];
    jobs[0] = (struct job){big, 200, greedy(56)}; /* 256 tokens: every block */
    for (int i = 0; i < 4; i++) {
        fill_tokens(small[i], 64, 70 + (uint32_t)i);
        jobs[i + 1] = (struct job){small[i], 30 + 5 * i, greedy(30)};
    }
    struct out outs[5], ref[5];
    struct engine_stats st;
    CHECK(run_jobs(&cfg, jobs, 5, 1, outs, &st) == 0);
    CHECK(st.preemptions_total > 0);
    CHECK_EQ_INT(outs[0].n, 56);
    for (int i = 1; i < 5; i++)
        CHECK_EQ_INT(outs[i].n, 30);
    /* Same outputs with a roomy pool. */
    base_config(&cfg, 128);
    CHECK(run_jobs(&cfg, jobs, 5, 1, ref, NULL) == 0);
    for (int i = 0; i < 5; i++)
        CHECK(memcmp(ref[i].toks, outs[i].toks, sizeof(int32_t) * (size_t)outs[i].n) == 0);
    fprintf(stderr, "  %llu preemptions\n", (unsigned long long)st.preemptions_total);
}

static void test_engine_abort(void)
{
    struct engine_config cfg;
    base_config(&cfg, 64);
    char err[512];
    struct engine *e = engine_new(&cfg, g_model, err, sizeof err);
    CHECK(e != NULL);
    if (!e)
        return;
    struct engine_stats st0, st;
    engine_get_stats(e, &st0);
    CHECK(engine_start(e) == 0);
    int32_t prompt[40];
    fill_tokens(prompt, 40, 77);
    struct out o[2];
    memset(o, 0, sizeof o);
    struct engine_request rq = {prompt, 40, greedy(200)};
    CHECK(engine_submit(e, &rq, on_event, &o[0], &o[0].id) == ENGINE_OK);
    wait_tokens(&o[0], 3);
    engine_get_stats(e, &st);
    CHECK(st.n_blocks_in_use > 0);
    engine_abort(e, o[0].id);
    engine_abort(e, o[0].id);      /* twice: still one final event */
    engine_abort(e, 999999);       /* unknown: ignored */
    CHECK(wait_all(&o[0], 1) == 0);
    CHECK_EQ_INT(o[0].fin, ENGINE_FINISH_ABORT);
    CHECK_EQ_INT(o[0].last_token, -1);
    CHECK(o[0].n >= 3 && o[0].n < 200);
    CHECK_EQ_INT(o[0].bad, 0);
    /* Aborted from inside the callback after 5 tokens. */
    o[1].abort_after = 5;
    o[1].e = e;
    CHECK(engine_submit(e, &rq, on_event, &o[1], &o[1].id) == ENGINE_OK);
    CHECK(wait_all(&o[1], 1) == 0);
    CHECK_EQ_INT(o[1].fin, ENGINE_FINISH_ABORT);
    CHECK(o[1].n >= 5 && o[1].n < 200);
    engine_abort(e, o[0].id); /* finished id: ignored */
    char cerr[512];
    CHECK(engine_check_invariants(e, cerr, sizeof cerr) == 0);
    engine_get_stats(e, &st);
    CHECK_EQ_INT(st.n_blocks_free + st.n_blocks_evictable,
                 st0.n_blocks_free + st0.n_blocks_evictable);
    CHECK_EQ_INT(st.n_blocks_in_use, 0);
    CHECK_EQ_INT(st.finished_abort_total, 2);
    CHECK_EQ_INT(st.n_running, 0);
    engine_stop(e);
    engine_free(e);
}

/* Runs prompt p1 then p2 (one after the other) with caching on or off; returns p2's output. */
static void prefix_pair(int caching, const int32_t *p1, int n1, const int32_t *p2, int n2,
                        struct out *o2, struct engine_stats *st)
{
    struct engine_config cfg;
    base_config(&cfg, 64);
    cfg.enable_prefix_caching = caching;
    struct job jobs[2] = {{p1, n1, greedy(12)}, {p2, n2, greedy(12)}};
    struct out outs[2];
    CHECK(run_jobs(&cfg, jobs, 2, 0, outs, st) == 0);
    *o2 = outs[1];
    CHECK_EQ_INT(outs[0].n_cached, 0);
}

static void test_engine_prefix_cache(void)
{
    /* shared = tokens p1 and p2 have in common. Block size 16. */
    static const struct {
        int shared, n1, n2, want_cached;
    } cases[] = {
        {32, 50, 45, 32}, /* shared prefix ends exactly on a block boundary */
        {31, 50, 45, 16}, /* just before: the second block differs */
        {33, 50, 45, 32}, /* just after */
        {48, 48, 48, 32}, /* identical 48-token prompts: the last token is always recomputed */
        {49, 49, 49, 48}, /* identical 49-token prompts */
        {40, 40, 60, 32}, /* p2 extends p1 */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int32_t p1[64], p2[64];
        fill_tokens(p1, 64, 900 + (uint32_t)k);
        fill_tokens(p2, 64, 1900 + (uint32_t)k);
        memcpy(p2, p1, sizeof(int32_t) * (size_t)cases[k].shared);
        if (cases[k].shared < 64 && p2[cases[k].shared] == p1[cases[k].shared])
            p2[cases[k].shared] ^= 1;
        struct out on, off;
        struct engine_stats st_on, st_off;
        prefix_pair(1, p1, cases[k].n1, p2, cases[k].n2, &on, &st_on);
        prefix_pair(0, p1, cases[k].n1, p2, cases[k].n2, &off, &st_off);
        CHECK_MSG(on.n_cached == cases[k].want_cached, "case %zu: n_cached %d, want %d", k,
                  on.n_cached, cases[k].want_cached);
        CHECK_EQ_INT(off.n_cached, 0);
        CHECK_EQ_INT(on.n, 12);
        CHECK_MSG(memcmp(on.toks, off.toks, sizeof(int32_t) * 12) == 0,
                  "case %zu: output differs with caching on and off", k);
        CHECK_EQ_INT(st_on.prefix_cache_queries_total, cases[k].n1 + cases[k].n2);
        CHECK_EQ_INT(st_on.prefix_cache_hits_total, cases[k].want_cached);
        CHECK_EQ_INT(st_off.prefix_cache_queries_total, 0);
    }
}

static void test_engine_eviction(void)
{
    /* 12 blocks; max_model_len 128 needs 8. A and B (80 tokens = 5 blocks each) fill 10 blocks
     * and stay cached; C (112 tokens = 7 blocks) takes the 2 free ones and evicts 5, all of A's
     * (least recently used); then B still hits and A misses. */
    struct engine_config cfg;
    base_config(&cfg, 12);
    cfg.max_model_len = 128;
    int32_t a[112], b[112], c[112];
    fill_tokens(a, 112, 1);
    fill_tokens(b, 112, 2);
    fill_tokens(c, 112, 3);
    struct job jobs[5] = {{a, 80, greedy(1)}, {b, 80, greedy(1)}, {c, 112, greedy(1)},
                          {b, 80, greedy(1)}, {a, 80, greedy(1)}};
    struct out outs[5];
    struct engine_stats st;
    CHECK(run_jobs(&cfg, jobs, 5, 0, outs, &st) == 0);
    CHECK_EQ_INT(outs[2].n_cached, 0);
    CHECK_EQ_INT(outs[3].n_cached, 64); /* B: 4 whole blocks within the first 79 tokens */
    CHECK_EQ_INT(outs[4].n_cached, 0);  /* A: evicted */
    CHECK_EQ_INT(st.n_blocks_in_use, 0);
}

static void test_engine_chunked_off(void)
{
    struct engine_config cfg;
    base_config(&cfg, 256);
    struct out ref[NB], off[NB];
    CHECK(run_jobs(&cfg, g_bjobs, NB, 1, ref, NULL) == 0);
    cfg.enable_chunked_prefill = 0;
    cfg.max_num_batched_tokens = 256; /* must be >= max_model_len */
    struct engine_stats st;
    CHECK(run_jobs(&cfg, g_bjobs, NB, 1, off, &st) == 0);
    for (int i = 0; i < NB; i++)
        CHECK(memcmp(ref[i].toks, off[i].toks, sizeof(int32_t) * NB_GEN) == 0);
    /* And chunked on with budgets smaller than a prompt (16) and than the number of decoding
     * sequences (4): chunks really split prompts, decodes take turns. */
    for (int budget = 16; budget >= 4; budget -= 12) {
        base_config(&cfg, 256);
        cfg.max_num_batched_tokens = budget;
        CHECK(run_jobs(&cfg, g_bjobs, NB, 1, off, &st) == 0);
        CHECK_EQ_INT(st.n_step_tokens_peak, budget);
        for (int i = 0; i < NB; i++)
            CHECK(memcmp(ref[i].toks, off[i].toks, sizeof(int32_t) * NB_GEN) == 0);
    }
}

/* Seeded sampled requests (several temperatures, top_p, min_tokens) give the same tokens alone
 * on one thread as batched on 2 and 3 threads, where the step's rows are sampled in parallel. */
static void test_engine_sampled_batch_threads(void)
{
    static const float temps[NB] = {0.0f, 0.7f, 1.0f, 1.3f, 0.9f, 1.0f, 0.5f, 2.0f};
    static const float tops[NB] = {1.0f, 0.9f, 1.0f, 0.95f, 0.5f, 0.99f, 1.0f, 0.8f};
    bjobs_init();
    struct job jobs[NB];
    for (int i = 0; i < NB; i++) {
        jobs[i] = g_bjobs[i];
        jobs[i].sp.temperature = temps[i];
        jobs[i].sp.top_p = tops[i];
        jobs[i].sp.seed = 77 + (uint64_t)i;
        jobs[i].sp.has_seed = 1;
        jobs[i].sp.min_tokens = i % 3 == 0 ? 5 : 0;
        jobs[i].sp.ignore_eos = i % 2;
    }
    struct engine_config cfg;
    base_config(&cfg, 256);
    struct out alone[NB], batched[NB];
    for (int i = 0; i < NB; i++)
        CHECK(run_jobs(&cfg, &jobs[i], 1, 1, &alone[i], NULL) == 0);
    for (int nt = 2; nt <= 3; nt++) {
        cfg.n_threads = nt;
        CHECK(run_jobs(&cfg, jobs, NB, 1, batched, NULL) == 0);
        for (int i = 0; i < NB; i++)
            CHECK_MSG(batched[i].n == alone[i].n &&
                          memcmp(alone[i].toks, batched[i].toks,
                                 sizeof(int32_t) * (size_t)alone[i].n) == 0,
                      "%d threads: request %d sampled alone differs from inside a batch", nt, i);
    }
}

static void test_engine_seeded_sampling(void)
{
    struct engine_config cfg;
    base_config(&cfg, 64);
    int32_t p[30];
    fill_tokens(p, 30, 4242);
    struct sampling_params sp = greedy(24);
    sp.temperature = 0.9f;
    sp.top_p = 0.95f;
    sp.seed = 1234;
    sp.has_seed = 1;
    struct job j = {p, 30, sp};
    struct out a, b, c;
    CHECK(run_jobs(&cfg, &j, 1, 1, &a, NULL) == 0);
    CHECK(run_jobs(&cfg, &j, 1, 1, &b, NULL) == 0);
    CHECK_EQ_INT(a.n, 24);
    CHECK(memcmp(a.toks, b.toks, sizeof(int32_t) * 24) == 0);
    j.sp.seed = 99;
    CHECK(run_jobs(&cfg, &j, 1, 1, &c, NULL) == 0);
    CHECK(memcmp(a.toks, c.toks, sizeof(int32_t) * 24) != 0);
    /* EOS is honoured when not ignored: stop or length, consistent counters. */
    j.sp.ignore_eos = 0;
    j.sp.has_seed = 0;
    struct engine_stats st;
    CHECK(run_jobs(&cfg, &j, 1, 1, &c, &st) == 0);
    CHECK(c.fin == ENGINE_FINISH_LENGTH || c.fin == ENGINE_FINISH_EOS);
    CHECK_EQ_INT(st.finished_length_total + st.finished_stop_total, 1);
    if (c.fin == ENGINE_FINISH_EOS)
        CHECK_EQ_INT(c.toks[c.n - 1], g_model->cfg.eos_id);
}

static void test_engine_submit_errors(void)
{
    struct engine_config cfg;
    base_config(&cfg, 64);
    char err[512];
    struct engine *e = engine_new(&cfg, g_model, err, sizeof err);
    CHECK(e != NULL);
    if (!e)
        return;
    int32_t p[300];
    fill_tokens(p, 300, 5);
    uint64_t id;
    struct engine_request rq = {p, 0, greedy(4)};
    CHECK_EQ_INT(engine_submit(e, &rq, on_event, NULL, &id), ENGINE_ERR_INVALID);
    rq.n_prompt = 10;
    rq.sp.max_tokens = 0;
    CHECK_EQ_INT(engine_submit(e, &rq, on_event, NULL, &id), ENGINE_ERR_INVALID);
    rq.sp.max_tokens = 4;
    p[3] = g_model->cfg.n_vocab;
    CHECK_EQ_INT(engine_submit(e, &rq, on_event, NULL, &id), ENGINE_ERR_INVALID);
    p[3] = 1;
    rq.n_prompt = 256; /* == max_model_len */
    rq.sp.max_tokens = 1;
    CHECK_EQ_INT(engine_submit(e, &rq, on_event, NULL, &id), ENGINE_ERR_TOO_LONG);
    rq.n_prompt = 250;
    rq.sp.max_tokens = 7;
    CHECK_EQ_INT(engine_submit(e, &rq, on_event, NULL, &id), ENGINE_ERR_TOO_LONG);
    rq.sp.max_tokens = 6; /* exactly max_model_len */
    struct out o;
    memset(&o, 0, sizeof o);
    CHECK_EQ_INT(engine_submit(e, &rq, on_event, &o, &o.id), ENGINE_OK);
    CHECK(engine_start(e) == 0);
    CHECK(wait_all(&o, 1) == 0);
    CHECK_EQ_INT(o.n, 6);
    CHECK_EQ_INT(o.fin, ENGINE_FINISH_LENGTH);
    engine_stop(e);
    rq.sp.max_tokens = 1;
    CHECK_EQ_INT(engine_submit(e, &rq, on_event, NULL, &id), ENGINE_ERR_STOPPED);
    CHECK_EQ_STR(engine_finish_str(ENGINE_FINISH_EOS), "stop");
    CHECK_EQ_STR(engine_finish_str(ENGINE_FINISH_LENGTH), "length");
    CHECK_EQ_STR(engine_finish_str(ENGINE_FINISH_ABORT), "abort");
    engine_free(e);
}

/* Captures stderr (the log) while fn runs. Returns a heap string. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    enum log_level saved_level = log_get_level();
    log_set_level(LOG_LEVEL_INFO);
    char path[] = "/tmp/test_engine_logXXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return xstrdup("");
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    log_set_level(saved_level);
    close(fd);
    size_t len;
    char *s = file_read_all(path, 1 << 20, &len);
    unlink(path);
    return s ? s : xstrdup("");
}

struct new_args {
    struct engine_config cfg;
    struct engine *e;
    char err[1024];
    int warm;
};

static void do_new(void *p)
{
    struct new_args *a = p;
    a->e = engine_new(&a->cfg, g_model, a->err, sizeof a->err);
    if (a->e)
        a->warm = engine_warmup(a->e);
}

/* --device cuda in a build without the CUDA backend: engine_new fails at once with the line that
 * says how to build it, before sizing anything (no KV line is logged). With the backend (make
 * CUDA=1) on a machine without a GPU it fails the same way with the driver's reason. */
static void test_engine_cuda_unavailable(void)
{
    struct new_args a;
    base_config(&a.cfg, 64);
    a.cfg.device = ENGINE_DEVICE_CUDA;
    char *log = capture_stderr(do_new, &a);
#ifndef SLM_CUDA
    CHECK(a.e == NULL);
    CHECK_MSG(strstr(a.err, "built without the CUDA backend: rebuild with `make CUDA=1`") != NULL,
              "%s", a.err);
    CHECK(strstr(log, "Available KV cache memory") == NULL);
#else
    if (a.e) /* a GPU is present: the CUDA backend's own tests cover that case */
        engine_free(a.e);
#endif
    free(log);
    enum engine_device d = ENGINE_DEVICE_CPU;
    CHECK_EQ_INT(engine_device_parse("cuda", &d), 0);
    CHECK_EQ_INT(d, ENGINE_DEVICE_CUDA);
    CHECK_EQ_INT(engine_device_parse("cpu", &d), 0);
    CHECK_EQ_INT(d, ENGINE_DEVICE_CPU);
    CHECK_EQ_INT(engine_device_parse("gpu", &d), -1);
    CHECK_EQ_STR(engine_device_str(ENGINE_DEVICE_CUDA), "cuda");
}

static void test_engine_sizing(void)
{
    /* Not enough KV for one max_model_len sequence: 10 blocks hold 160 tokens. */
    struct new_args a;
    base_config(&a.cfg, 10);
    char *log = capture_stderr(do_new, &a);
    CHECK(a.e == NULL);
    CHECK_MSG(strstr(a.err, "estimated maximum model length is 160") != NULL, "%s", a.err);
    CHECK(strstr(a.err, "max seq len (256)") != NULL);
    CHECK(strstr(a.err, "needed 1048576 bytes, available 655360 bytes") != NULL);
    CHECK(strstr(log, "Available KV cache memory: 0.00 GiB") != NULL);
    free(log);

    /* Nothing left after the weights. */
    base_config(&a.cfg, 10);
    a.cfg.kv_cache_memory_bytes = 0;
    a.cfg.device_memory_bytes = g_model->weight_bytes;
    a.cfg.gpu_memory_utilization = 0.5;
    log = capture_stderr(do_new, &a);
    CHECK(a.e == NULL);
    CHECK_MSG(strstr(a.err, "No available memory for the cache blocks") != NULL, "%s", a.err);
    CHECK(strstr(log, "Available KV cache memory: -") != NULL);
    free(log);

    /* Chunked prefill off needs max_num_batched_tokens >= max_model_len. */
    base_config(&a.cfg, 64);
    a.cfg.enable_chunked_prefill = 0;
    log = capture_stderr(do_new, &a);
    CHECK(a.e == NULL);
    CHECK(strstr(a.err, "max_num_batched_tokens (128) is smaller than max_model_len (256)") !=
          NULL);
    free(log);

    /* Utilization sizing: 0.9 x device - weights - workspace, in whole blocks; the log lines
     * the probe parses; warm-up shapes 1..64 tokens (7) and 2..8 sequences (3). */
    base_config(&a.cfg, 0);
    a.cfg.kv_cache_memory_bytes = 0;
    a.cfg.device_memory_bytes = g_model->weight_bytes + (300ull << 20);
    a.cfg.gpu_memory_utilization = 0.9;
    a.cfg.warmup = ENGINE_WARMUP_SHAPES;
    a.cfg.max_num_batched_tokens = 64;
    a.cfg.max_num_seqs = 8;
    log = capture_stderr(do_new, &a);
    CHECK(a.e != NULL);
    if (a.e) {
        struct engine_info in;
        engine_get_info(a.e, &in);
        double budget = 0.9 * (double)a.cfg.device_memory_bytes - (double)g_model->weight_bytes -
                        (double)in.workspace_bytes;
        CHECK_EQ_INT(in.n_blocks, (int)(budget / KV_BLOCK_BYTES));
        CHECK_EQ_INT(in.kv_bytes, (uint64_t)in.n_blocks * KV_BLOCK_BYTES);
        CHECK_EQ_INT(in.kv_capacity_tokens, (uint64_t)in.n_blocks * 16);
        CHECK_EQ_INT(in.kv_bytes_per_token, 4096);
        CHECK_EQ_INT(in.n_warmup_shapes, 10);
        CHECK_EQ_INT(a.warm, 10);
        /* The workspace is the forward's plus everything the scheduler allocates: its step
         * arrays and one sampler per sampling thread (one here: n_threads 1). */
        struct sched_config sc = {8, 64, 256, 1, 1};
        uint64_t ws = forward_workspace_bytes(g_model, 64, 8, 256, 1) +
                      sched_scratch_bytes(&sc, g_model->cfg.n_vocab);
        CHECK_EQ_INT(in.workspace_bytes, ws);
        CHECK(sched_scratch_bytes(&sc, g_model->cfg.n_vocab) >
              sampler_scratch_bytes(g_model->cfg.n_vocab));
        check_sched_scratch_measured();
        char want[128];
        snprintf(want, sizeof want, "GPU KV cache size: %d,%03d tokens", in.n_blocks * 16 / 1000,
                 in.n_blocks * 16 % 1000);
        CHECK_MSG(strstr(log, want) != NULL, "no \"%s\" in:\n%s", want, log);
        snprintf(want, sizeof want, "Maximum concurrency for 256 tokens per request: %.2fx",
                 in.n_blocks / 16.0);
        CHECK_MSG(strstr(log, want) != NULL, "no \"%s\"", want);
        CHECK(strstr(log, "KV cache allocation took ") != NULL);
        snprintf(want, sizeof want, "blocks of 16 tokens)");
        CHECK(strstr(log, want) != NULL);
        CHECK(strstr(log, "Warm-up took ") != NULL && strstr(log, "(10 batch shapes, --warmup shapes)") != NULL);
        /* Warm-up leaves nothing behind. */
        struct engine_stats st;
        engine_get_stats(a.e, &st);
        CHECK_EQ_INT(st.n_blocks_free, in.n_blocks);
        CHECK_EQ_INT(st.prefix_cache_queries_total, 0);
        CHECK_EQ_INT(st.steps_total, 0);
        char cerr[512];
        CHECK(engine_check_invariants(a.e, cerr, sizeof cerr) == 0);
        engine_stop(a.e);
        engine_free(a.e);
    }
    free(log);

    /* --warmup none (--enforce-eager): warm-up skipped, with its own line. */
    base_config(&a.cfg, 64);
    log = capture_stderr(do_new, &a);
    CHECK(a.e != NULL && a.warm == 0);
    CHECK(strstr(log, "Warm-up skipped (--enforce-eager)") != NULL);
    engine_free(a.e);
    free(log);
}

/* One engine per warm-up mode: the forward steps and kernel paths each mode claims (counted by
 * the forward itself), nothing left behind, and the same greedy output afterwards. */
static void test_engine_warmup_modes(void)
{
    static const enum engine_warmup_mode modes[] = {ENGINE_WARMUP_NONE, ENGINE_WARMUP_KERNELS,
                                                    ENGINE_WARMUP_SHAPES};
    int32_t prompt[40];
    fill_tokens(prompt, 40, 77);
    struct out outs[3][2];
    struct engine_info infos[3];
    for (int m = 0; m < 3; m++) {
        struct new_args a;
        base_config(&a.cfg, 64);
        a.cfg.warmup = modes[m];
        char *log = capture_stderr(do_new, &a);
        CHECK_MSG(a.e != NULL, "%s", a.err);
        if (!a.e) {
            free(log);
            return;
        }
        engine_get_info(a.e, &infos[m]);
        CHECK_EQ_INT(infos[m].n_warmup_shapes, a.warm);
        CHECK_EQ_INT(infos[m].warmup_mode, modes[m]);
        if (modes[m] != ENGINE_WARMUP_NONE) {
            char want[96];
            snprintf(want, sizeof want, "(%d batch shapes, --warmup %s)", a.warm,
                     engine_warmup_mode_str(modes[m]));
            CHECK_MSG(strstr(log, want) != NULL, "no \"%s\" in:\n%s", want, log);
        }
        free(log);
        struct engine_stats st;
        engine_get_stats(a.e, &st);
        CHECK_EQ_INT(st.n_blocks_free, infos[m].n_blocks);
        CHECK_EQ_INT(st.steps_total, 0);
        CHECK(engine_start(a.e) == 0);
        for (int r = 0; r < 2; r++) { /* one prompt alone, then again (a prefix hit) */
            memset(&outs[m][r], 0, sizeof outs[m][r]);
            struct engine_request rq = {prompt, 40, greedy(12)};
            CHECK(engine_submit(a.e, &rq, on_event, &outs[m][r], &outs[m][r].id) == ENGINE_OK);
            CHECK(wait_all(&outs[m][r], 1) == 0);
            CHECK_EQ_INT(outs[m][r].n, 12);
            CHECK_EQ_INT(outs[m][r].bad, 0);
        }
        engine_stop(a.e);
        engine_free(a.e);
    }
    const unsigned all_paths = (1u << FORWARD_PATH_COUNT) - 1u;
    const unsigned small = 1u << FORWARD_PATH_SMALL;
    /* none: nothing ran */
    CHECK_EQ_INT(infos[0].n_warmup_shapes, 0);
    CHECK_EQ_INT(infos[0].warmup_paths, 0);
    /* kernels: 3 steps (prefill, one decode token, a 31-sequence decode batch; max_num_seqs 16
     * here, so 16) covering every path; the small-batch kernel exists only with AVX-512 */
    CHECK_EQ_INT(infos[1].n_warmup_shapes, 3);
    CHECK_EQ_INT(infos[1].warmup_paths | small, all_paths);
    /* shapes: prefill 1..128 tokens (8 shapes) + decode 2..16 sequences (4), same paths */
    CHECK_EQ_INT(infos[2].n_warmup_shapes, 12);
    CHECK_EQ_INT(infos[2].warmup_paths, infos[1].warmup_paths);
    /* greedy output identical whichever warm-up ran */
    for (int m = 1; m < 3; m++)
        for (int r = 0; r < 2; r++)
            CHECK(memcmp(outs[m][r].toks, outs[0][r].toks, 12 * sizeof(int32_t)) == 0);
    /* the mode names round-trip, unknown ones are refused */
    for (int m = 0; m < 3; m++) {
        enum engine_warmup_mode got = ENGINE_WARMUP_NONE;
        CHECK_EQ_INT(engine_warmup_mode_parse(engine_warmup_mode_str(modes[m]), &got), 0);
        CHECK_EQ_INT(got, modes[m]);
    }
    enum engine_warmup_mode unused;
    CHECK_EQ_INT(engine_warmup_mode_parse("eager", &unused), -1);
}

static void test_engine_stop_inflight(void)
{
    struct engine_config cfg;
    base_config(&cfg, 64);
    cfg.max_num_seqs = 4;
    char err[512];
    struct engine *e = engine_new(&cfg, g_model, err, sizeof err);
    CHECK(e != NULL);
    if (!e)
        return;
    CHECK(engine_start(e) == 0);
    enum { N = 8 };
    struct out o[N];
    memset(o, 0, sizeof o);
    int32_t p[40];
    fill_tokens(p, 40, 31);
    for (int i = 0; i < N; i++) {
        struct engine_request rq = {p, 20 + i, greedy(200)};
        CHECK(engine_submit(e, &rq, on_event, &o[i], &o[i].id) == ENGINE_OK);
    }
    wait_tokens(&o[0], 2);
    engine_stop(e); /* 4 running, 4 waiting */
    for (int i = 0; i < N; i++) {
        CHECK(o[i].done);
        CHECK_EQ_INT(o[i].fin, ENGINE_FINISH_ABORT);
        CHECK_EQ_INT(o[i].bad, 0);
    }
    struct engine_stats st;
    engine_get_stats(e, &st);
    CHECK_EQ_INT(st.finished_abort_total, N);
    CHECK_EQ_INT(st.n_blocks_in_use, 0);
    CHECK_EQ_INT(st.n_running + st.n_waiting, 0);
    engine_free(e);

    /* Stop without ever starting the thread: queued requests still get their ABORT. */
    e = engine_new(&cfg, g_model, err, sizeof err);
    CHECK(e != NULL);
    if (!e)
        return;
    memset(o, 0, sizeof o);
    struct engine_request rq = {p, 20, greedy(5)};
    CHECK(engine_submit(e, &rq, on_event, &o[0], &o[0].id) == ENGINE_OK);
    engine_stop(e);
    CHECK(o[0].done && o[0].fin == ENGINE_FINISH_ABORT && o[0].n == 0);
    engine_free(e);
}

/* ---- randomized stress ---- */

enum { ST_PER_THREAD = 40, ST_THREADS = 2 };

struct stress {
    struct engine *e;
    struct out outs[ST_THREADS][ST_PER_THREAD];
    struct job jobs[ST_THREADS][ST_PER_THREAD];
    int32_t prompts[ST_THREADS][ST_PER_THREAD][120];
    int32_t bases[3][120];
    int thread_no;
    int submit_fail;
};

static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

struct stress_arg {
    struct stress *st;
    int t;
};

static void *stress_submitter(void *p)
{
    struct stress_arg *a = p;
    struct stress *st = a->st;
    uint32_t s = 12345u + 777u * (uint32_t)a->t;
    for (int i = 0; i < ST_PER_THREAD; i++) {
        struct job *j = &st->jobs[a->t][i];
        struct out *o = &st->outs[a->t][i];
        int32_t *pr = st->prompts[a->t][i];
        int n = 8 + (int)(rnd(&s) % 100);
        int shared = rnd(&s) % 3 ? (int)(rnd(&s) % (unsigned)n) : 0;
        memcpy(pr, st->bases[rnd(&s) % 3], sizeof(int32_t) * (size_t)shared);
        fill_tokens(pr + shared, n - shared, rnd(&s));
        j->prompt = pr;
        j->n_prompt = n;
        j->sp = greedy(1 + (int)(rnd(&s) % 24));
        if (rnd(&s) % 3 == 0) {
            j->sp.temperature = 0.8f;
            j->sp.top_p = 0.9f;
        }
        if (rnd(&s) % 4 == 0)
            o->abort_after = 1 + (int)(rnd(&s) % 4);
        o->e = st->e;
        struct engine_request rq = {j->prompt, j->n_prompt, j->sp};
        if (engine_submit(st->e, &rq, on_event, o, &o->id) != ENGINE_OK)
            __atomic_add_fetch(&st->submit_fail, 1, __ATOMIC_SEQ_CST);
        if (rnd(&s) % 8 == 0) {
            engine_abort(st->e, o->id); /* possibly still waiting */
        }
        if (rnd(&s) % 4 == 0)
            clock_sleep_ns((uint64_t)(rnd(&s) % 3000000));
    }
    return NULL;
}

static void test_engine_stress(void)
{
    struct stress *st = xcalloc(1, sizeof *st);
    for (int b = 0; b < 3; b++)
        fill_tokens(st->bases[b], 120, 4000 + (uint32_t)b);
    struct engine_config cfg;
    base_config(&cfg, 20); /* tight: 320 tokens for up to 16 sequences of <= 131 */
    cfg.max_num_batched_tokens = 64;
    cfg.debug_check_invariants = 1;
    char err[512];
    st->e = engine_new(&cfg, g_model, err, sizeof err);
    CHECK(st->e != NULL);
    if (!st->e) {
        free(st);
        return;
    }
    CHECK(engine_start(st->e) == 0);
    pthread_t th[ST_THREADS];
    struct stress_arg args[ST_THREADS];
    for (int t = 0; t < ST_THREADS; t++) {
        args[t].st = st;
        args[t].t = t;
        pthread_create(&th[t], NULL, stress_submitter, &args[t]);
    }
    char cerr[512];
    int inv_fail = 0;
    for (int k = 0; k < 20; k++) {
        if (engine_check_invariants(st->e, cerr, sizeof cerr) != 0) {
            fprintf(stderr, "  invariants: %s\n", cerr);
            inv_fail++;
        }
        if (k == 10)
            engine_reset_prefix_cache(st->e);
        clock_sleep_ns(5000000);
    }
    for (int t = 0; t < ST_THREADS; t++)
        pthread_join(th[t], NULL);
    CHECK_EQ_INT(st->submit_fail, 0);
    CHECK(wait_all(&st->outs[0][0], ST_THREADS * ST_PER_THREAD) == 0);
    CHECK_EQ_INT(inv_fail, 0);
    CHECK(engine_check_invariants(st->e, cerr, sizeof cerr) == 0);
    int n_abort = 0, n_bad = 0, n_len = 0;
    uint64_t gen = 0;
    for (int t = 0; t < ST_THREADS; t++) {
        for (int i = 0; i < ST_PER_THREAD; i++) {
            struct out *o = &st->outs[t][i];
            n_bad += o->bad;
            gen += (uint64_t)o->n;
            if (o->fin == ENGINE_FINISH_ABORT) {
                n_abort++;
                CHECK(o->n <= st->jobs[t][i].sp.max_tokens);
            } else {
                CHECK_EQ_INT(o->fin, ENGINE_FINISH_LENGTH);
                CHECK_EQ_INT(o->n, st->jobs[t][i].sp.max_tokens);
                n_len++;
            }
        }
    }
    CHECK_EQ_INT(n_bad, 0);
    struct engine_stats s;
    engine_get_stats(st->e, &s);
    CHECK_EQ_INT(s.finished_abort_total, n_abort);
    CHECK_EQ_INT(s.finished_length_total, n_len);
    CHECK_EQ_INT(s.generation_tokens_total, gen);
    CHECK_EQ_INT(s.n_blocks_in_use, 0);
    CHECK(s.n_running_peak <= cfg.max_num_seqs);
    CHECK(s.preemptions_total > 0);
    CHECK(s.prefix_cache_hits_total > 0);
    fprintf(stderr, "  %d requests: %d aborted, %llu preemptions, %llu steps, hits %llu/%llu\n",
            ST_THREADS * ST_PER_THREAD, n_abort, (unsigned long long)s.preemptions_total,
            (unsigned long long)s.steps_total, (unsigned long long)s.prefix_cache_hits_total,
            (unsigned long long)s.prefix_cache_queries_total);
    engine_stop(st->e);
    engine_free(st->e);
    free(st);
}

int main(void)
{
    struct model_config c;
    char err[256];
    if (model_preset("tiny", &c) != 0)
        return 1;
    g_model = model_new_random(&c, 1, err, sizeof err);
    if (!g_model) {
        fprintf(stderr, "model: %s\n", err);
        return 1;
    }
    log_set_level(LOG_LEVEL_WARN);
    TEST_RUN(test_engine_many);
    TEST_RUN(test_engine_batch_invariance);
    TEST_RUN(test_engine_preemption);
    TEST_RUN(test_engine_whole_pool);
    TEST_RUN(test_engine_abort);
    TEST_RUN(test_engine_prefix_cache);
    TEST_RUN(test_engine_eviction);
    TEST_RUN(test_engine_chunked_off);
    TEST_RUN(test_engine_seeded_sampling);
    TEST_RUN(test_engine_sampled_batch_threads);
    TEST_RUN(test_engine_submit_errors);
    TEST_RUN(test_engine_sizing);
    TEST_RUN(test_engine_cuda_unavailable);
    TEST_RUN(test_engine_warmup_modes);
    TEST_RUN(test_engine_stop_inflight);
    TEST_RUN(test_engine_stress);
    model_free(g_model);
    return TEST_DONE();
}
