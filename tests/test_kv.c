/* test_kv: paged KV pool, block tables and automatic prefix caching: hit accounting, block
 * boundaries, sharing and lifetimes, LRU eviction, all-or-nothing reservation, caching off,
 * reset, and a seeded randomized workload checking the invariants (and the cached K contents)
 * after every operation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/kv.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
/* Let the huge-allocation test see malloc return NULL instead of an ASan abort. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif

enum { KV_DIM = 2 };

static char g_err[256];

static void init_kv(struct kv_cache *kv, int block_size, int n_blocks, int caching)
{
    int rc = kv_init(kv, 2, KV_DIM, block_size, n_blocks, caching, g_err, sizeof g_err);
    CHECK_MSG(rc == 0, "%s", g_err);
}

/* Checks the invariants over the given sequences; reports the message. */
static int check_inv(const struct kv_cache *kv, struct kv_seq **seqs, int n)
{
    char err[256];
    int rc = kv_check_invariants(kv, (const struct kv_seq *const *)seqs, n, err, sizeof err);
    CHECK_MSG(rc == 0, "%s", err);
    return rc;
}

/* "Forward": writes the token id of each position [from, to) into K (layer 0 and 1, dim 0) and
 * its negation into V, the way a real forward pass fills the blocks it computed. */
static void fake_forward(struct kv_cache *kv, const struct kv_seq *s, const int32_t *tokens,
                         int from, int to)
{
    for (int p = from; p < to; p++) {
        int b = s->blocks[p / kv->block_size], off = p % kv->block_size;
        for (int l = 0; l < kv->n_layer; l++) {
            kv_k(kv, l, b)[(size_t)off * KV_DIM] = (float)tokens[p];
            kv_v(kv, l, b)[(size_t)off * KV_DIM] = -(float)tokens[p];
        }
    }
}

/* 1 if K/V of positions [0, n) of s hold tokens[0, n). */
static int contents_match(const struct kv_cache *kv, const struct kv_seq *s,
                          const int32_t *tokens, int n)
{
    for (int p = 0; p < n; p++) {
        int b = s->blocks[p / kv->block_size], off = p % kv->block_size;
        for (int l = 0; l < kv->n_layer; l++)
            if (kv_k(kv, l, b)[(size_t)off * KV_DIM] != (float)tokens[p] ||
                kv_v(kv, l, b)[(size_t)off * KV_DIM] != -(float)tokens[p])
                return 0;
    }
    return 1;
}

/* Admission + whole-prompt prefill + commit, as the scheduler does it. Returns cached tokens,
 * or -1 if the reservation failed (then the sequence is released). */
static int admit(struct kv_cache *kv, struct kv_seq *s, const int32_t *tokens, int n)
{
    int cached = kv_seq_match_prefix(kv, s, tokens, n);
    CHECK(cached >= 0 && cached % kv->block_size == 0 && cached < n);
    CHECK(contents_match(kv, s, tokens, cached));
    if (kv_seq_reserve(kv, s, n) != 0) {
        kv_seq_release(kv, s);
        return -1;
    }
    fake_forward(kv, s, tokens, s->n_computed, n);
    kv_seq_commit(kv, s, tokens, n);
    CHECK_EQ_INT(s->n_computed, n);
    CHECK_EQ_INT(s->n_hashed, n / kv->block_size);
    return cached;
}

/* tokens: prefix of n_prefix from base `family`, then a suffix unique to `uniq` */
static void make_prompt(int32_t *out, int n, int n_prefix, int family, int uniq)
{
    for (int i = 0; i < n; i++)
        out[i] = i < n_prefix ? family * 1000 + i : 100000 + uniq * 1000 + i;
}

/* The pool is committed before kv_init returns (every page resident: the vLLM-style
 * pre-allocation shows in RSS), zero, and huge-page aligned (bigmem.h); the touch is timed. */
static void test_pool_committed(void)
{
    struct kv_cache kv;
    CHECK_EQ_INT(kv_init(&kv, 4, 64, 16, 300, 1, g_err, sizeof g_err), 0); /* 9.4 MiB */
    CHECK_EQ_INT(kv.pool_bytes, (size_t)4 * 2 * 300 * 16 * 64 * sizeof(float));
    CHECK_EQ_INT((uintptr_t)kv.pool % (2u << 20), 0);
    long pg = sysconf(_SC_PAGESIZE);
    size_t n_pages = (kv.pool_bytes + (size_t)pg - 1) / (size_t)pg;
    unsigned char *vec = calloc(n_pages, 1);
    CHECK(mincore(kv.pool, kv.pool_bytes, vec) == 0);
    size_t resident = 0;
    for (size_t i = 0; i < n_pages; i++)
        resident += vec[i] & 1;
    CHECK_EQ_INT(resident, n_pages);
    free(vec);
    size_t n_nonzero = 0;
    for (size_t i = 0; i < kv.pool_bytes / sizeof(float); i++)
        n_nonzero += kv.pool[i] != 0.0f;
    CHECK_EQ_INT(n_nonzero, 0);
    CHECK(kv.pool_info.n_threads >= 1);
    CHECK(kv.pool_info.touch_ns > 0);
    /* THP granted only where the kernel allows, and never more than the pool */
    CHECK(kv.pool_info.thp_bytes == 0 || kv.pool_info.thp_requested);
    CHECK(kv.pool_info.thp_bytes <= (kv.pool_bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20));
    kv_free(&kv);
}

static void test_init_and_views(void)
{
    struct kv_cache kv;
    CHECK_EQ_INT(kv_init(&kv, 3, 8, 16, 10, 1, g_err, sizeof g_err), 0);
    CHECK_EQ_INT(kv.pool_bytes, (size_t)3 * 2 * 10 * 16 * 8 * sizeof(float));
    CHECK_EQ_INT(kv.n_free, 10);
    CHECK_EQ_INT(kv.n_used + kv.n_evictable, 0);
    CHECK(kv.map_cap >= 20 && (kv.map_cap & (kv.map_cap - 1)) == 0);
    CHECK_EQ_INT(kv_available_blocks(&kv), 10);
    size_t per_block = (size_t)16 * 8;
    int zero = 1;
    for (size_t i = 0; i < kv.pool_bytes / sizeof(float); i++)
        zero &= kv.pool[i] == 0.0f;
    CHECK(zero);
    /* views: distinct, in bounds, covering the pool exactly once */
    char *seen = calloc(kv.pool_bytes / sizeof(float) / per_block, 1);
    for (int l = 0; l < 3; l++)
        for (int b = 0; b < 10; b++) {
            size_t ik = (size_t)(kv_k(&kv, l, b) - kv.pool);
            size_t iv = (size_t)(kv_v(&kv, l, b) - kv.pool);
            CHECK(ik % per_block == 0 && iv % per_block == 0);
            CHECK(ik + per_block <= kv.pool_bytes / sizeof(float));
            CHECK(iv + per_block <= kv.pool_bytes / sizeof(float));
            seen[ik / per_block]++;
            seen[iv / per_block]++;
        }
    int all_once = 1;
    for (size_t i = 0; i < kv.pool_bytes / sizeof(float) / per_block; i++)
        all_once &= seen[i] == 1;
    CHECK(all_once);
    free(seen);
    check_inv(&kv, NULL, 0);
    kv_free(&kv);
    kv_free(&kv);
    kv_free(NULL);

    /* size arithmetic overflow and a failed allocation: clean -1 with a message */
    g_err[0] = 0;
    CHECK_EQ_INT(kv_init(&kv, 1 << 30, 1 << 30, 1 << 30, 1 << 20, 1, g_err, sizeof g_err), -1);
    CHECK(strstr(g_err, "overflow") != NULL);
    kv_free(&kv);
    g_err[0] = 0;
    CHECK_EQ_INT(kv_init(&kv, 1 << 20, 1 << 4, 1 << 10, 1 << 20, 1, g_err, sizeof g_err), -1);
    CHECK_MSG(strstr(g_err, "144115188075855872 bytes") != NULL, "%s", g_err);
    kv_free(&kv);
    CHECK_EQ_INT(kv_init(&kv, 0, 8, 16, 10, 1, g_err, sizeof g_err), -1);
    kv_free(&kv);

    /* hash: chained, order- and content-sensitive, deterministic, long blocks supported */
    int32_t t[300];
    for (int i = 0; i < 300; i++)
        t[i] = i;
    CHECK(kv_block_hash(0, t, 16) == kv_block_hash(0, t, 16));
    CHECK(kv_block_hash(0, t, 16) != kv_block_hash(1, t, 16));
    CHECK(kv_block_hash(0, t, 16) != kv_block_hash(0, t + 1, 16));
    CHECK(kv_block_hash(0, t, 300) == kv_block_hash(0, t, 300));
    CHECK(kv_block_hash(0, t, 300) != kv_block_hash(0, t, 299));
    t[299] = 7;
    CHECK(kv_block_hash(5, t, 300) != kv_block_hash(5, t + 0, 299));
}

/* N sequences sharing P whole blocks, distinct suffixes, admitted one after another, some
 * released along the way: hits = (N - 1) x P x block_size. */
static void test_hit_accounting_shared_prefix(void)
{
    enum { BS = 16, P = 3, N = 6 };
    struct kv_cache kv;
    init_kv(&kv, BS, 64, 1);
    struct kv_seq seqs[N];
    struct kv_seq *live[N];
    int32_t tok[128];
    uint64_t queries = 0;
    for (int i = 0; i < N; i++) {
        kv_seq_init(&seqs[i], 16);
        live[i] = &seqs[i];
    }
    for (int i = 0; i < N; i++) {
        int n = P * BS + 5 + 7 * i;
        make_prompt(tok, n, P * BS, 1, i);
        int cached = admit(&kv, &seqs[i], tok, n);
        queries += (uint64_t)n;
        CHECK_EQ_INT(cached, i == 0 ? 0 : P * BS);
        if (i > 0)
            for (int b = 0; b < P; b++)
                CHECK_EQ_INT(seqs[i].blocks[b], seqs[0].blocks[b]);
        if (i == 1 || i == 3)
            kv_seq_release(&kv, &seqs[i]);
        check_inv(&kv, live, N);
    }
    CHECK_EQ_INT(kv.prefix_hits_tokens, (uint64_t)(N - 1) * P * BS);
    CHECK_EQ_INT(kv.prefix_queries_tokens, queries);
    /* the shared blocks are held by the 4 still-running sequences */
    for (int b = 0; b < P; b++)
        CHECK_EQ_INT(kv.meta[seqs[0].blocks[b]].ref, N - 2);
    for (int i = 0; i < N; i++) {
        kv_seq_release(&kv, &seqs[i]);
        check_inv(&kv, live, N);
        kv_seq_free(&seqs[i]);
    }
    CHECK_EQ_INT(kv.n_used, 0);
    kv_free(&kv);
}

/* 20 requests, half sharing a 4-block prefix, half unique. */
static void test_reuse_mix(void)
{
    enum { BS = 8, NREQ = 20 };
    struct kv_cache kv;
    init_kv(&kv, BS, 256, 1);
    struct kv_seq s;
    kv_seq_init(&s, 32);
    int32_t tok[128];
    uint64_t queries = 0;
    int n_hit_req = 0;
    for (int r = 0; r < NREQ; r++) {
        int n = 4 * BS + 3 + r % 5;
        make_prompt(tok, n, (r % 2 == 0) ? 4 * BS : 0, 7, r);
        int cached = admit(&kv, &s, tok, n);
        queries += (uint64_t)n;
        if (r % 2 == 0 && r > 0) {
            CHECK_EQ_INT(cached, 4 * BS);
            n_hit_req++;
        } else {
            CHECK_EQ_INT(cached, 0);
        }
        kv_seq_release(&kv, &s);
        check_inv(&kv, NULL, 0);
    }
    CHECK_EQ_INT(n_hit_req, NREQ / 2 - 1);
    CHECK_EQ_INT(kv.prefix_hits_tokens, (uint64_t)(NREQ / 2 - 1) * 4 * BS);
    CHECK_EQ_INT(kv.prefix_queries_tokens, queries);
    /* every request's 4 full blocks stay cached: shared prefix once + 10 unique x 4 */
    CHECK_EQ_INT(kv.n_evictable, 4 + (NREQ / 2) * 4);
    CHECK_EQ_INT(kv.n_evictions, 0);
    kv_seq_free(&s);
    kv_free(&kv);
}

/* Runs prompt A then B (B sharing the first n_shared tokens of A) and returns B's hit. */
static int hit_after(int len_a, int len_b, int n_shared)
{
    enum { BS = 16 };
    struct kv_cache kv;
    init_kv(&kv, BS, 64, 1);
    struct kv_seq a, b;
    kv_seq_init(&a, 16);
    kv_seq_init(&b, 16);
    int32_t ta[256], tb[256];
    make_prompt(ta, len_a, len_a, 3, 0);
    make_prompt(tb, len_b, n_shared, 3, 1);
    CHECK_EQ_INT(admit(&kv, &a, ta, len_a), 0);
    int hit = admit(&kv, &b, tb, len_b);
    struct kv_seq *live[2] = {&a, &b};
    check_inv(&kv, live, 2);
    kv_seq_release(&kv, &a);
    kv_seq_release(&kv, &b);
    check_inv(&kv, NULL, 0);
    kv_seq_free(&a);
    kv_seq_free(&b);
    kv_free(&kv);
    return hit;
}

static void test_block_boundaries(void)
{
    enum { BS = 16 };
    /* shorter than one block: never */
    CHECK_EQ_INT(hit_after(10, 10, 10), 0);
    CHECK_EQ_INT(hit_after(40, 15, 15), 0);
    /* exactly k full blocks: at most k - 1 (the last token is recomputed) */
    CHECK_EQ_INT(hit_after(BS, BS, BS), 0);
    CHECK_EQ_INT(hit_after(3 * BS, 3 * BS, 3 * BS), 2 * BS);
    CHECK_EQ_INT(hit_after(5 * BS, 3 * BS, 3 * BS), 2 * BS);
    CHECK_EQ_INT(hit_after(3 * BS + 1, 3 * BS + 1, 3 * BS + 1), 3 * BS);
    /* shared prefix ending exactly on, just before and just after a block boundary */
    CHECK_EQ_INT(hit_after(3 * BS + 5, 3 * BS + 5, 2 * BS), 2 * BS);
    CHECK_EQ_INT(hit_after(3 * BS + 5, 3 * BS + 5, 2 * BS - 1), BS);
    CHECK_EQ_INT(hit_after(3 * BS + 5, 3 * BS + 5, 2 * BS + 1), 2 * BS);
    /* A's partial last block is never registered */
    CHECK_EQ_INT(hit_after(2 * BS + 8, 3 * BS, 2 * BS + 8), 2 * BS);
}

/* Shared blocks live while anyone holds them; released registered blocks are evictable and
 * are revived by a later hit; unregistered (partial) blocks go to the free list. */
static void test_sharing_and_revival(void)
{
    enum { BS = 4 };
    struct kv_cache kv;
    init_kv(&kv, BS, 32, 1);
    struct kv_seq a, b, c;
    kv_seq_init(&a, 16);
    kv_seq_init(&b, 16);
    kv_seq_init(&c, 16);
    struct kv_seq *live[3] = {&a, &b, &c};
    int32_t ta[64], tb[64];
    make_prompt(ta, 4 * BS + 2, 4 * BS + 2, 1, 0); /* 4 full + 1 partial block */
    make_prompt(tb, 3 * BS + 1, 2 * BS, 1, 9);     /* shares 2 blocks */
    CHECK_EQ_INT(admit(&kv, &a, ta, 4 * BS + 2), 0);
    CHECK_EQ_INT(admit(&kv, &b, tb, 3 * BS + 1), 2 * BS);
    check_inv(&kv, live, 3);
    int32_t a_blocks[5];
    memcpy(a_blocks, a.blocks, sizeof a_blocks);
    kv_seq_release(&kv, &a);
    check_inv(&kv, live, 3);
    CHECK_EQ_INT(kv.meta[a_blocks[0]].where, KV_WHERE_USED); /* B still holds them */
    CHECK_EQ_INT(kv.meta[a_blocks[1]].where, KV_WHERE_USED);
    CHECK_EQ_INT(kv.meta[a_blocks[0]].ref, 1);
    CHECK_EQ_INT(kv.meta[a_blocks[2]].where, KV_WHERE_EVICTABLE);
    CHECK_EQ_INT(kv.meta[a_blocks[3]].where, KV_WHERE_EVICTABLE);
    CHECK_EQ_INT(kv.meta[a_blocks[4]].where, KV_WHERE_FREE); /* partial: no hash */
    CHECK_EQ_INT(kv.n_evictable, 2);
    /* tail first: A's block 3 was released before block 2, so it is older in the LRU */
    CHECK_EQ_INT(kv.lru_head, a_blocks[3]);
    CHECK_EQ_INT(kv.lru_tail, a_blocks[2]);
    /* C = A's prompt + more: revives A's 4 full blocks */
    int32_t tc[64];
    memcpy(tc, ta, sizeof ta);
    tc[4 * BS + 2] = 555;
    int n_c = 4 * BS + 3;
    CHECK_EQ_INT(admit(&kv, &c, tc, n_c), 4 * BS);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(c.blocks[i], a_blocks[i]);
    CHECK_EQ_INT(kv.n_evictable, 0);
    CHECK_EQ_INT(kv.meta[a_blocks[0]].ref, 2);
    CHECK_EQ_INT(kv.meta[a_blocks[2]].ref, 1);
    check_inv(&kv, live, 3);
    /* Exhaust the pool: the revived blocks must never be handed out as fresh */
    struct kv_seq d;
    kv_seq_init(&d, 64);
    struct kv_seq *live4[4] = {&a, &b, &c, &d};
    int avail = kv_available_blocks(&kv);
    CHECK_EQ_INT(kv_seq_blocks_needed(&kv, &d, avail * BS), avail);
    CHECK_EQ_INT(kv_seq_reserve(&kv, &d, avail * BS), 0);
    CHECK_EQ_INT(kv_available_blocks(&kv), 0);
    check_inv(&kv, live4, 4);
    CHECK(contents_match(&kv, &c, tc, n_c));
    CHECK(contents_match(&kv, &b, tb, 3 * BS + 1));
    CHECK_EQ_INT(kv_seq_reserve(&kv, &d, avail * BS + 1), -1);
    kv_seq_release(&kv, &d);
    kv_seq_release(&kv, &b);
    kv_seq_release(&kv, &c);
    check_inv(&kv, live4, 4);
    CHECK_EQ_INT(kv.n_used, 0);
    kv_seq_free(&a);
    kv_seq_free(&b);
    kv_seq_free(&c);
    kv_seq_free(&d);
    kv_free(&kv);
}

/* Pool for exactly two long prompts: a third evicts the least recently used. */
static void test_lru_eviction(void)
{
    enum { BS = 4, LEN = 8 * BS + 1 }; /* 8 full blocks + 1 partial = 9 blocks */
    for (int touch_a = 0; touch_a < 2; touch_a++) {
        struct kv_cache kv;
        init_kv(&kv, BS, 18, 1);
        struct kv_seq s;
        kv_seq_init(&s, 16);
        int32_t ta[64], tb[64], tc[64];
        make_prompt(ta, LEN, LEN, 1, 0);
        make_prompt(tb, LEN, LEN, 2, 0);
        make_prompt(tc, 10 * BS + 1, 0, 0, 3); /* unique, 11 blocks */
        CHECK_EQ_INT(admit(&kv, &s, ta, LEN), 0);
        kv_seq_release(&kv, &s);
        CHECK_EQ_INT(admit(&kv, &s, tb, LEN), 0);
        kv_seq_release(&kv, &s);
        CHECK_EQ_INT(kv.n_evictable, 16);
        CHECK_EQ_INT(kv.n_free, 2);
        CHECK_EQ_INT(kv.n_evictions, 0);
        if (touch_a) { /* A used again: now B is the least recently used */
            CHECK_EQ_INT(admit(&kv, &s, ta, LEN), 8 * BS);
            kv_seq_release(&kv, &s);
        }
        check_inv(&kv, NULL, 0);
        /* C needs 11: 2 free + 9 evicted (8 of the LRU prompt, then 1 of the other's tail) */
        CHECK_EQ_INT(admit(&kv, &s, tc, 10 * BS + 1), 0);
        CHECK_EQ_INT(kv.n_evictions, 9);
        kv_seq_release(&kv, &s);
        check_inv(&kv, NULL, 0);
        uint64_t hits0 = kv.prefix_hits_tokens;
        /* query the survivor first: re-admitting the evicted prompt evicts more */
        int hit_a, hit_b;
        if (!touch_a) {
            hit_b = admit(&kv, &s, tb, LEN);
            kv_seq_release(&kv, &s);
            hit_a = admit(&kv, &s, ta, LEN);
            kv_seq_release(&kv, &s);
        } else {
            hit_a = admit(&kv, &s, ta, LEN);
            kv_seq_release(&kv, &s);
            hit_b = admit(&kv, &s, tb, LEN);
            kv_seq_release(&kv, &s);
        }
        if (!touch_a) {
            CHECK_EQ_INT(hit_a, 0);      /* A was least recently used: fully evicted */
            CHECK_EQ_INT(hit_b, 7 * BS); /* B lost its last full block (released first) */
        } else {
            CHECK_EQ_INT(hit_a, 7 * BS);
            CHECK_EQ_INT(hit_b, 0);
        }
        CHECK_EQ_INT(kv.prefix_hits_tokens - hits0, (uint64_t)(hit_a + hit_b));
        check_inv(&kv, NULL, 0);
        kv_seq_free(&s);
        kv_free(&kv);
    }
}

struct snapshot {
    int32_t free_head, free_tail, lru_head, lru_tail;
    int n_free, n_evictable, n_used;
    uint64_t q, h, ev;
    struct kv_block_meta meta[16];
    uint64_t keys[64];
    int32_t vals[64];
    int32_t seq_blocks[16];
    int seq_n_blocks, seq_n_computed, seq_n_hashed;
};

static void take_snapshot(const struct kv_cache *kv, const struct kv_seq *s, struct snapshot *o)
{
    memset(o, 0, sizeof *o);
    o->free_head = kv->free_head;
    o->free_tail = kv->free_tail;
    o->lru_head = kv->lru_head;
    o->lru_tail = kv->lru_tail;
    o->n_free = kv->n_free;
    o->n_evictable = kv->n_evictable;
    o->n_used = kv->n_used;
    o->q = kv->prefix_queries_tokens;
    o->h = kv->prefix_hits_tokens;
    o->ev = kv->n_evictions;
    memcpy(o->meta, kv->meta, (size_t)kv->n_blocks * sizeof *kv->meta);
    memcpy(o->keys, kv->map_keys, kv->map_cap * sizeof *kv->map_keys);
    memcpy(o->vals, kv->map_vals, kv->map_cap * sizeof *kv->map_vals);
    memcpy(o->seq_blocks, s->blocks, (size_t)s->max_blocks * sizeof *s->blocks);
    o->seq_n_blocks = s->n_blocks;
    o->seq_n_computed = s->n_computed;
    o->seq_n_hashed = s->n_hashed;
}

static void test_reserve_all_or_nothing(void)
{
    enum { BS = 4, NB = 16 };
    struct kv_cache kv;
    init_kv(&kv, BS, NB, 1);
    CHECK(kv.map_cap <= 64);
    struct kv_seq a, b, c;
    kv_seq_init(&a, 16);
    kv_seq_init(&b, 16);
    kv_seq_init(&c, 12);
    struct kv_seq *live[3] = {&a, &b, &c};
    int32_t ta[64], tb[64];
    make_prompt(ta, 6 * BS, 6 * BS, 1, 0);
    make_prompt(tb, 5 * BS + 2, 0, 0, 1);
    CHECK_EQ_INT(admit(&kv, &a, ta, 6 * BS), 0);
    kv_seq_release(&kv, &a); /* 6 evictable */
    CHECK_EQ_INT(admit(&kv, &b, tb, 5 * BS + 2), 0); /* 6 used, 4 free, 6 evictable */
    CHECK_EQ_INT(kv.n_free, 4);
    CHECK_EQ_INT(kv.n_evictable, 6);
    check_inv(&kv, live, 3);
    struct snapshot before, after;
    take_snapshot(&kv, &c, &before);
    /* 11 blocks needed, 10 available: fails without evicting anything */
    CHECK_EQ_INT(kv_seq_blocks_needed(&kv, &c, 11 * BS), 11);
    CHECK_EQ_INT(kv_seq_reserve(&kv, &c, 11 * BS), -1);
    take_snapshot(&kv, &c, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    /* more than the table holds (max_blocks 12) */
    CHECK_EQ_INT(kv_seq_reserve(&kv, &c, 12 * BS + 1), -1);
    take_snapshot(&kv, &c, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    check_inv(&kv, live, 3);
    /* growing an existing table: partial success is not allowed either */
    CHECK_EQ_INT(kv_seq_reserve(&kv, &c, 3 * BS), 0);
    CHECK_EQ_INT(c.n_blocks, 3);
    take_snapshot(&kv, &c, &before);
    CHECK_EQ_INT(kv_seq_reserve(&kv, &c, 3 * BS), 0); /* nothing to do */
    CHECK_EQ_INT(kv_seq_reserve(&kv, &c, 2 * BS), 0);
    take_snapshot(&kv, &c, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    struct kv_seq d;
    kv_seq_init(&d, 16);
    struct kv_seq *live4[4] = {&a, &b, &c, &d};
    take_snapshot(&kv, &d, &before);
    CHECK_EQ_INT(kv_seq_reserve(&kv, &d, 8 * BS), -1); /* 7 available */
    take_snapshot(&kv, &d, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    CHECK_EQ_INT(kv_seq_reserve(&kv, &d, 7 * BS), 0); /* 1 free + 6 evicted */
    CHECK_EQ_INT(kv.n_evictions, 6);
    CHECK_EQ_INT(kv_available_blocks(&kv), 0);
    check_inv(&kv, live4, 4);
    kv_seq_release(&kv, &b);
    kv_seq_release(&kv, &c);
    kv_seq_release(&kv, &d);
    check_inv(&kv, live4, 4);
    CHECK_EQ_INT(kv.n_evictable, 5); /* B's full blocks stay cached */
    CHECK_EQ_INT(kv.n_free, NB - 5);
    kv_seq_free(&a);
    kv_seq_free(&b);
    kv_seq_free(&c);
    kv_seq_free(&d);
    kv_free(&kv);
}

static void test_caching_off(void)
{
    enum { BS = 4 };
    struct kv_cache kv;
    init_kv(&kv, BS, 32, 0);
    struct kv_seq a, b;
    kv_seq_init(&a, 16);
    kv_seq_init(&b, 16);
    struct kv_seq *live[2] = {&a, &b};
    int32_t t[64];
    make_prompt(t, 5 * BS + 1, 5 * BS + 1, 1, 0);
    CHECK_EQ_INT(admit(&kv, &a, t, 5 * BS + 1), 0);
    CHECK_EQ_INT(admit(&kv, &b, t, 5 * BS + 1), 0);
    check_inv(&kv, live, 2);
    CHECK_EQ_INT(kv.prefix_queries_tokens, 0);
    CHECK_EQ_INT(kv.prefix_hits_tokens, 0);
    for (int i = 0; i < 6; i++)
        CHECK(a.blocks[i] != b.blocks[i]);
    /* hashes are still computed (the chain), nothing is registered */
    CHECK(a.hashes[0] == b.hashes[0] && a.hashes[4] == b.hashes[4]);
    for (int i = 0; i < kv.n_blocks; i++)
        CHECK(!kv.meta[i].has_hash);
    kv_seq_release(&kv, &a);
    kv_seq_release(&kv, &b);
    check_inv(&kv, live, 2);
    CHECK_EQ_INT(kv.n_free, 32);
    CHECK_EQ_INT(kv.n_evictable, 0);
    CHECK_EQ_INT(admit(&kv, &a, t, 5 * BS + 1), 0);
    kv_seq_release(&kv, &a);
    CHECK_EQ_INT(kv.prefix_hits_tokens + kv.prefix_queries_tokens + kv.n_evictions, 0);
    kv_seq_free(&a);
    kv_seq_free(&b);
    kv_free(&kv);
}

/* Concurrent identical prompts: the second copy of each block stays unregistered and goes to
 * the free list on release. */
static void test_duplicate_content(void)
{
    enum { BS = 4 };
    struct kv_cache kv;
    init_kv(&kv, BS, 32, 1);
    struct kv_seq a, b;
    kv_seq_init(&a, 16);
    kv_seq_init(&b, 16);
    struct kv_seq *live[2] = {&a, &b};
    int32_t t[64];
    make_prompt(t, 3 * BS + 2, 3 * BS + 2, 4, 0);
    int n = 3 * BS + 2;
    CHECK_EQ_INT(kv_seq_match_prefix(&kv, &a, t, n), 0);
    CHECK_EQ_INT(kv_seq_match_prefix(&kv, &b, t, n), 0);
    CHECK_EQ_INT(kv_seq_reserve(&kv, &a, n), 0);
    CHECK_EQ_INT(kv_seq_reserve(&kv, &b, n), 0);
    fake_forward(&kv, &a, t, 0, n);
    fake_forward(&kv, &b, t, 0, n);
    /* chunked: A commits in two steps, B in one */
    kv_seq_commit(&kv, &a, t, BS + 1);
    CHECK_EQ_INT(a.n_hashed, 1);
    kv_seq_commit(&kv, &a, t, n);
    kv_seq_commit(&kv, &b, t, n);
    check_inv(&kv, live, 2);
    for (int i = 0; i < 3; i++) {
        CHECK(kv.meta[a.blocks[i]].has_hash);
        CHECK(!kv.meta[b.blocks[i]].has_hash);
        CHECK(a.hashes[i] == b.hashes[i]);
    }
    int32_t bb[4];
    memcpy(bb, b.blocks, sizeof bb);
    kv_seq_release(&kv, &b);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(kv.meta[bb[i]].where, KV_WHERE_FREE);
    kv_seq_release(&kv, &a);
    CHECK_EQ_INT(kv.n_evictable, 3);
    check_inv(&kv, live, 2);
    /* not-empty sequence: match refuses and changes nothing */
    CHECK_EQ_INT(admit(&kv, &a, t, n), 3 * BS);
    CHECK_EQ_INT(kv_seq_match_prefix(&kv, &a, t, n), -1);
    check_inv(&kv, live, 2);
    kv_seq_release(&kv, &a);
    kv_seq_free(&a);
    kv_seq_free(&b);
    kv_free(&kv);
}

static void test_reset_prefix_cache(void)
{
    enum { BS = 4 };
    struct kv_cache kv;
    init_kv(&kv, BS, 32, 1);
    struct kv_seq a, b;
    kv_seq_init(&a, 16);
    kv_seq_init(&b, 16);
    struct kv_seq *live[2] = {&a, &b};
    int32_t ta[64], tb[64];
    make_prompt(ta, 3 * BS + 1, 3 * BS + 1, 1, 0);
    make_prompt(tb, 3 * BS + 1, 3 * BS + 1, 2, 0);
    admit(&kv, &a, ta, 3 * BS + 1);
    kv_seq_release(&kv, &a); /* 3 evictable */
    admit(&kv, &b, tb, 3 * BS + 1); /* running, 3 registered */
    CHECK_EQ_INT(kv.n_evictable, 3);
    kv_reset_prefix_cache(&kv);
    check_inv(&kv, live, 2);
    CHECK_EQ_INT(kv.n_evictable, 0);
    CHECK_EQ_INT(kv.n_used, 4);
    CHECK_EQ_INT(kv.n_free, 28);
    for (int i = 0; i < kv.n_blocks; i++)
        CHECK(!kv.meta[i].has_hash);
    for (size_t i = 0; i < kv.map_cap; i++)
        CHECK_EQ_INT(kv.map_vals[i], -1);
    CHECK_EQ_INT(admit(&kv, &a, ta, 3 * BS + 1), 0); /* A's blocks are gone */
    kv_seq_release(&kv, &a);
    /* B still runs; its next full block registers (its chain continues) */
    int32_t tb2[64];
    memcpy(tb2, tb, sizeof tb);
    for (int i = 3 * BS + 1; i < 4 * BS + 1; i++)
        tb2[i] = 900 + i;
    CHECK_EQ_INT(kv_seq_reserve(&kv, &b, 4 * BS + 1), 0);
    fake_forward(&kv, &b, tb2, 3 * BS + 1, 4 * BS + 1);
    kv_seq_commit(&kv, &b, tb2, 4 * BS + 1);
    CHECK(kv.meta[b.blocks[3]].has_hash);
    CHECK(!kv.meta[b.blocks[0]].has_hash);
    check_inv(&kv, live, 2);
    int32_t b0 = b.blocks[0];
    kv_seq_release(&kv, &b);
    CHECK_EQ_INT(kv.meta[b0].where, KV_WHERE_FREE);
    check_inv(&kv, live, 2);
    kv_seq_free(&a);
    kv_seq_free(&b);
    kv_free(&kv);
}

/* ---- randomized workload --------------------------------------------------------------- */

static uint64_t rng_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static int rng_below(uint64_t *s, int n)
{
    return (int)(rng_u64(s) % (uint64_t)n);
}

enum { ST_SLOTS = 10, ST_MAX_TOK = 60, ST_FAMILIES = 4 };

struct st_seq {
    int active;
    int32_t tok[ST_MAX_TOK];
    int n_tok;
    struct kv_seq kv;
};

static void stress_run(uint64_t seed, int block_size, int n_blocks, int caching, int n_ops)
{
    struct kv_cache kv;
    init_kv(&kv, block_size, n_blocks, caching);
    struct st_seq *sq = calloc(ST_SLOTS, sizeof *sq);
    struct kv_seq *live[ST_SLOTS];
    int32_t family[ST_FAMILIES][ST_MAX_TOK];
    uint64_t rng = seed;
    for (int f = 0; f < ST_FAMILIES; f++)
        for (int i = 0; i < ST_MAX_TOK; i++)
            family[f][i] = (int32_t)(f * 10000 + rng_below(&rng, 50));
    int max_blocks = (ST_MAX_TOK + block_size - 1) / block_size;
    for (int i = 0; i < ST_SLOTS; i++) {
        kv_seq_init(&sq[i].kv, max_blocks);
        live[i] = &sq[i].kv;
    }
    uint64_t exp_queries = 0, exp_hits = 0;
    int n_admit = 0, n_hit_admit = 0, n_preempt = 0, n_fail = 0, n_bad = 0;
    for (int op = 0; op < n_ops && !n_bad; op++) {
        int i = rng_below(&rng, ST_SLOTS);
        struct st_seq *q = &sq[i];
        int what = rng_below(&rng, 100);
        if (!q->active) {
            if (what >= 60)
                continue;
            /* admit: a prefix of one family (often) then fresh tokens */
            int n = 1 + rng_below(&rng, ST_MAX_TOK - 10);
            int f = rng_below(&rng, ST_FAMILIES);
            int n_pre = rng_below(&rng, 3) ? rng_below(&rng, n + 1) : 0;
            for (int t = 0; t < n; t++)
                q->tok[t] = t < n_pre ? family[f][t] : (int32_t)(50000 + rng_below(&rng, 1000));
            q->n_tok = n;
            int cached = kv_seq_match_prefix(&kv, &q->kv, q->tok, n);
            if (caching)
                exp_queries += (uint64_t)n;
            exp_hits += (uint64_t)cached;
            n_admit++;
            n_hit_admit += cached > 0;
            if (cached < 0 || cached % block_size || cached >= n || (!caching && cached) ||
                !contents_match(&kv, &q->kv, q->tok, cached)) {
                CHECK_MSG(0, "op %d: bad hit %d for %d tokens", op, cached, n);
                n_bad++;
            }
            q->active = 1;
        } else if (what < 55) {
            /* one step: prefill chunk, or (prompt done) decode one new token */
            if (q->kv.n_computed == q->n_tok) {
                if (q->n_tok == ST_MAX_TOK)
                    continue;
                q->tok[q->n_tok++] = (int32_t)(60000 + rng_below(&rng, 1000));
            }
            int remain = q->n_tok - q->kv.n_computed;
            int chunk = 1 + rng_below(&rng, remain);
            int from = q->kv.n_computed;
            if (kv_seq_reserve(&kv, &q->kv, from + chunk) != 0) {
                n_fail++;
                /* preempt this one: release, then re-admit from scratch */
                kv_seq_release(&kv, &q->kv);
                int cached = kv_seq_match_prefix(&kv, &q->kv, q->tok, q->n_tok);
                if (caching)
                    exp_queries += (uint64_t)q->n_tok;
                exp_hits += (uint64_t)cached;
                n_preempt++;
            } else {
                fake_forward(&kv, &q->kv, q->tok, from, from + chunk);
                kv_seq_commit(&kv, &q->kv, q->tok, from + chunk);
                if (q->kv.n_hashed != (from + chunk) / block_size) {
                    CHECK_MSG(0, "op %d: n_hashed %d", op, q->kv.n_hashed);
                    n_bad++;
                }
            }
        } else if (what < 70) {
            /* finish or abort */
            kv_seq_release(&kv, &q->kv);
            q->active = 0;
        } else if (what < 80) {
            /* preemption: release and re-admit */
            kv_seq_release(&kv, &q->kv);
            int cached = kv_seq_match_prefix(&kv, &q->kv, q->tok, q->n_tok);
            if (caching)
                exp_queries += (uint64_t)q->n_tok;
            exp_hits += (uint64_t)cached;
            n_preempt++;
        } else if (what < 81) {
            kv_reset_prefix_cache(&kv);
        } else {
            continue;
        }
        char err[256];
        if (kv_check_invariants(&kv, (const struct kv_seq *const *)live, ST_SLOTS, err,
                                sizeof err) != 0) {
            CHECK_MSG(0, "op %d: %s", op, err);
            n_bad++;
        }
        for (int j = 0; j < ST_SLOTS && !n_bad; j++)
            if (sq[j].active && !contents_match(&kv, &sq[j].kv, sq[j].tok, sq[j].kv.n_computed)) {
                CHECK_MSG(0, "op %d: seq %d lost its K/V contents", op, j);
                n_bad++;
            }
    }
    CHECK_EQ_INT(kv.prefix_queries_tokens, exp_queries);
    CHECK_EQ_INT(kv.prefix_hits_tokens, exp_hits);
    fprintf(stderr,
            "  seed %llu bs %d blocks %d caching %d: %d admissions (%d hit), %d preemptions, "
            "%d failed reservations, %llu evictions, hit rate %.3f\n",
            (unsigned long long)seed, block_size, n_blocks, caching, n_admit, n_hit_admit,
            n_preempt, n_fail, (unsigned long long)kv.n_evictions,
            exp_queries ? (double)exp_hits / (double)exp_queries : 0.0);
    if (caching) {
        CHECK(n_hit_admit > n_admit / 10);
        CHECK(kv.n_evictions > 0);
    } else {
        CHECK_EQ_INT(exp_hits, 0);
        CHECK_EQ_INT(kv.n_evictions, 0);
    }
    CHECK(n_fail > 0); /* the pool was tight enough to refuse */
    for (int i = 0; i < ST_SLOTS; i++) {
        kv_seq_release(&kv, &sq[i].kv);
        kv_seq_free(&sq[i].kv);
    }
    check_inv(&kv, NULL, 0);
    CHECK_EQ_INT(kv.n_used, 0);
    free(sq);
    kv_free(&kv);
}

/* kv_init_meta: no host pool (the K/V live in device memory), the same bookkeeping: a shared
 * prefix hits, released blocks come back, an invalid shape is refused. */
static void test_meta_only(void)
{
    struct kv_cache kv;
    CHECK_EQ_INT(kv_init_meta(&kv, 2, KV_DIM, 4, 6, 1, g_err, sizeof g_err), 0);
    CHECK(kv.pool == NULL);
    CHECK_EQ_INT(kv.pool_bytes, 0);
    CHECK_EQ_INT(kv_available_blocks(&kv), 6);
    int32_t a[10], b[10];
    make_prompt(a, 10, 8, 1, 1);
    make_prompt(b, 10, 8, 1, 2);
    struct kv_seq s1, s2;
    kv_seq_init(&s1, 4);
    kv_seq_init(&s2, 4);
    CHECK_EQ_INT(kv_seq_match_prefix(&kv, &s1, a, 10), 0);
    CHECK_EQ_INT(kv_seq_reserve(&kv, &s1, 10), 0);
    kv_seq_commit(&kv, &s1, a, 10);
    CHECK_EQ_INT(kv_seq_match_prefix(&kv, &s2, b, 10), 8); /* two full blocks shared */
    CHECK_EQ_INT(kv_seq_reserve(&kv, &s2, 10), 0);
    kv_seq_commit(&kv, &s2, b, 10);
    struct kv_seq *all[2] = {&s1, &s2};
    check_inv(&kv, all, 2);
    CHECK_EQ_INT(kv.n_used, 4); /* 2 shared + 1 tail each */
    kv_seq_release(&kv, &s1);
    kv_seq_release(&kv, &s2);
    check_inv(&kv, NULL, 0);
    CHECK_EQ_INT(kv_available_blocks(&kv), 6);
    kv_seq_free(&s1);
    kv_seq_free(&s2);
    kv_free(&kv);
    struct kv_cache bad;
    CHECK_EQ_INT(kv_init_meta(&bad, 0, KV_DIM, 4, 6, 1, g_err, sizeof g_err), -1);
    CHECK(strstr(g_err, "invalid shape") != NULL);
    kv_free(&bad);
}

static void test_stress(void)
{
    stress_run(1, 4, 40, 1, 6000);
    stress_run(2, 4, 24, 1, 6000);
    stress_run(3, 8, 30, 1, 6000);
    stress_run(4, 1, 120, 1, 4000);
    stress_run(5, 4, 40, 0, 4000);
}

int main(void)
{
    TEST_RUN(test_pool_committed);
    TEST_RUN(test_init_and_views);
    TEST_RUN(test_hit_accounting_shared_prefix);
    TEST_RUN(test_reuse_mix);
    TEST_RUN(test_block_boundaries);
    TEST_RUN(test_sharing_and_revival);
    TEST_RUN(test_lru_eviction);
    TEST_RUN(test_reserve_all_or_nothing);
    TEST_RUN(test_caching_off);
    TEST_RUN(test_duplicate_content);
    TEST_RUN(test_reset_prefix_cache);
    TEST_RUN(test_meta_only);
    TEST_RUN(test_stress);
    return TEST_DONE();
}
