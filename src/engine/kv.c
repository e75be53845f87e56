/* kv: the paged KV block pool, block tables and automatic prefix caching (see kv.h for the
 * contract). Block metadata lives in three disjoint sets: the free list (no hash), the LRU
 * evictable list (ref 0, registered hash) and the used set (ref > 0, unlinked). The hash map is
 * open addressing with linear probing; deletion shifts later entries of the cluster back
 * (Knuth's algorithm R), so no tombstones are ever stored and probe lengths stay short no matter
 * how many registrations come and go. Everything is allocated in kv_init; no operation
 * allocates afterwards (except kv_check_invariants, a test hook). It computes no attention. */
#include "engine/kv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "engine/bigmem.h"
#include "util/buf.h"
#include "util/log.h"

#define KV_MAP_EMPTY (-1)
#define KV_MAP_TOMBSTONE (-2) /* reserved by kv.h; this implementation never stores it */

/* ---- lists ------------------------------------------------------------------------------- */

static void list_push_tail(struct kv_cache *kv, int32_t *head, int32_t *tail, int32_t b)
{
    struct kv_block_meta *m = &kv->meta[b];
    m->prev = *tail;
    m->next = -1;
    if (*tail >= 0)
        kv->meta[*tail].next = b;
    else
        *head = b;
    *tail = b;
}

static void list_remove(struct kv_cache *kv, int32_t *head, int32_t *tail, int32_t b)
{
    struct kv_block_meta *m = &kv->meta[b];
    if (m->prev >= 0)
        kv->meta[m->prev].next = m->next;
    else
        *head = m->next;
    if (m->next >= 0)
        kv->meta[m->next].prev = m->prev;
    else
        *tail = m->prev;
    m->prev = m->next = -1;
}

/* ---- hash map ------------------------------------------------------------------------------ */

static size_t map_home(const struct kv_cache *kv, uint64_t key)
{
    /* XXH3 output is well mixed; fold the high half in anyway for small tables */
    return (size_t)(key ^ (key >> 32)) & (kv->map_cap - 1);
}

/* Slot holding key, or the empty slot where it would go; *found says which. */
static size_t map_probe(const struct kv_cache *kv, uint64_t key, int *found)
{
    size_t mask = kv->map_cap - 1;
    size_t i = map_home(kv, key);
    for (;;) {
        int32_t v = kv->map_vals[i];
        if (v == KV_MAP_EMPTY) {
            *found = 0;
            return i;
        }
        if (v >= 0 && kv->map_keys[i] == key) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static int32_t map_get(const struct kv_cache *kv, uint64_t key)
{
    int found;
    size_t i = map_probe(kv, key, &found);
    return found ? kv->map_vals[i] : -1;
}

/* The map has at least n_blocks empty slots (capacity >= 2 x n_blocks, at most one entry per
 * block), so the probe always ends. Returns 0, or -1 if key is already present. */
static int map_put(struct kv_cache *kv, uint64_t key, int32_t block)
{
    int found;
    size_t i = map_probe(kv, key, &found);
    if (found)
        return -1;
    kv->map_keys[i] = key;
    kv->map_vals[i] = block;
    return 0;
}

/* Removes key (must be present) and closes the gap: each later entry of the cluster whose home
 * slot does not lie cyclically in (gap, entry] moves into the gap. */
static void map_del(struct kv_cache *kv, uint64_t key)
{
    size_t mask = kv->map_cap - 1;
    int found;
    size_t gap = map_probe(kv, key, &found);
    if (!found)
        return;
    size_t j = gap;
    for (;;) {
        j = (j + 1) & mask;
        if (kv->map_vals[j] == KV_MAP_EMPTY)
            break;
        size_t home = map_home(kv, kv->map_keys[j]);
        /* entry at j may move to gap iff home is not in the cyclic range (gap, j] */
        int in_range = gap <= j ? (home > gap && home <= j) : (home > gap || home <= j);
        if (!in_range) {
            kv->map_keys[gap] = kv->map_keys[j];
            kv->map_vals[gap] = kv->map_vals[j];
            gap = j;
        }
    }
    kv->map_vals[gap] = KV_MAP_EMPTY;
    kv->map_keys[gap] = 0;
}

static void unregister_block(struct kv_cache *kv, int32_t b)
{
    struct kv_block_meta *m = &kv->meta[b];
    if (!m->has_hash)
        return;
    map_del(kv, m->hash);
    m->has_hash = 0;
    m->hash = 0;
}

/* ---- pool ---------------------------------------------------------------------------------- */

/* Validates the shape and sets up everything but the pool: fields, block metadata (all free),
 * the prefix map. kv_init adds the pool. */
int kv_init_meta(struct kv_cache *kv, int n_layer, int kv_dim, int block_size, int n_blocks,
                 int enable_prefix_caching, char *err, size_t err_len)
{
    memset(kv, 0, sizeof *kv);
    kv->free_head = kv->free_tail = kv->lru_head = kv->lru_tail = -1;
    if (n_layer < 1 || kv_dim < 1 || block_size < 1 || n_blocks < 1 || n_blocks > (1 << 29)) {
        snprintf(err, err_len,
                 "kv: invalid shape (n_layer %d, kv_dim %d, block_size %d, n_blocks %d)", n_layer,
                 kv_dim, block_size, n_blocks);
        return -1;
    }
    kv->n_layer = n_layer;
    kv->kv_dim = kv_dim;
    kv->block_size = block_size;
    kv->n_blocks = n_blocks;
    kv->enable_prefix_caching = enable_prefix_caching ? 1 : 0;
    kv->meta = xcalloc((size_t)n_blocks, sizeof *kv->meta);
    for (int32_t b = 0; b < n_blocks; b++) {
        kv->meta[b].where = KV_WHERE_FREE;
        list_push_tail(kv, &kv->free_head, &kv->free_tail, b);
    }
    kv->n_free = n_blocks;
    size_t cap = 16;
    while (cap < (size_t)n_blocks * 2)
        cap <<= 1;
    kv->map_cap = cap;
    kv->map_keys = xcalloc(cap, sizeof *kv->map_keys);
    kv->map_vals = xmalloc(cap * sizeof *kv->map_vals);
    for (size_t i = 0; i < cap; i++)
        kv->map_vals[i] = KV_MAP_EMPTY;
    return 0;
}

int kv_init(struct kv_cache *kv, int n_layer, int kv_dim, int block_size, int n_blocks,
            int enable_prefix_caching, char *err, size_t err_len)
{
    if (kv_init_meta(kv, n_layer, kv_dim, block_size, n_blocks, enable_prefix_caching, err,
                     err_len) != 0)
        return -1;
    size_t n_floats = 0, bytes = 0;
    if (size_mul_ok((size_t)n_layer * 2, (size_t)n_blocks, &n_floats) != 0 ||
        size_mul_ok(n_floats, (size_t)block_size, &n_floats) != 0 ||
        size_mul_ok(n_floats, (size_t)kv_dim, &n_floats) != 0 ||
        size_mul_ok(n_floats, sizeof(float), &bytes) != 0) {
        snprintf(err, err_len,
                 "kv: pool size overflows (n_layer %d x 2 x n_blocks %d x block_size %d x "
                 "kv_dim %d floats)",
                 n_layer, n_blocks, block_size, kv_dim);
        kv_free(kv);
        return -1;
    }
    struct bigmem_info bi;
    float *pool = bigmem_alloc(bytes, 1, &bi);
    if (!pool) {
        snprintf(err, err_len, "kv: cannot allocate the KV pool: %zu bytes (%.3f GiB): %s", bytes,
                 (double)bytes / (1024.0 * 1024.0 * 1024.0), strerror(errno));
        kv_free(kv);
        return -1;
    }
    kv->pool_info = bi; /* committed (every page written once, in parallel) and zero */
    kv->pool = pool;
    kv->pool_bytes = bytes;
    return 0;
}

void kv_free(struct kv_cache *kv)
{
    if (!kv)
        return;
    bigmem_free(kv->pool, kv->pool_bytes);
    free(kv->meta);
    free(kv->map_keys);
    free(kv->map_vals);
    memset(kv, 0, sizeof *kv);
    kv->free_head = kv->free_tail = kv->lru_head = kv->lru_tail = -1;
}

/* ---- sequences ----------------------------------------------------------------------------- */

void kv_seq_init(struct kv_seq *s, int max_blocks)
{
    memset(s, 0, sizeof *s);
    if (max_blocks < 1)
        max_blocks = 1;
    s->max_blocks = max_blocks;
    s->blocks = xcalloc((size_t)max_blocks, sizeof *s->blocks);
    s->hashes = xcalloc((size_t)max_blocks, sizeof *s->hashes);
}

void kv_seq_free(struct kv_seq *s)
{
    if (!s)
        return;
    if (s->n_blocks != 0)
        log_error("kv", "kv_seq_free: sequence still holds %d blocks (not released)",
                  s->n_blocks);
    free(s->blocks);
    free(s->hashes);
    memset(s, 0, sizeof *s);
}

uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int n)
{
    /* XXH3 over the bytes of (parent, tokens[0..n)): one call over a stack buffer for usual
     * block sizes, else the streaming API (same digest) with an on-stack state. */
    if (n < 0)
        n = 0;
    unsigned char buf[8 + 4 * 256];
    if (n <= 256) {
        memcpy(buf, &parent, 8);
        if (n > 0)
            memcpy(buf + 8, tokens, (size_t)n * sizeof *tokens);
        return XXH3_64bits(buf, 8 + (size_t)n * sizeof *tokens);
    }
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, &parent, 8);
    XXH3_64bits_update(&st, tokens, (size_t)n * sizeof *tokens);
    return XXH3_64bits_digest(&st);
}

int kv_seq_match_prefix(struct kv_cache *kv, struct kv_seq *s, const int32_t *tokens,
                        int n_tokens)
{
    if (s->n_blocks != 0 || s->n_computed != 0) {
        log_error("kv", "kv_seq_match_prefix: sequence is not empty (%d blocks)", s->n_blocks);
        return -1;
    }
    s->n_hashed = 0;
    if (!kv->enable_prefix_caching || n_tokens < 1)
        return 0;
    kv->prefix_queries_tokens += (uint64_t)n_tokens;
    int bs = kv->block_size;
    int n_full = (n_tokens - 1) / bs; /* whole blocks within the first n_tokens - 1 tokens */
    if (n_full > s->max_blocks)
        n_full = s->max_blocks;
    uint64_t parent = 0;
    int n_hit = 0;
    for (int i = 0; i < n_full; i++) {
        uint64_t h = kv_block_hash(parent, tokens + (size_t)i * bs, bs);
        int32_t b = map_get(kv, h);
        if (b < 0)
            break;
        struct kv_block_meta *m = &kv->meta[b];
        if (m->ref == 0) { /* registered and unreferenced: on the LRU list; revive */
            list_remove(kv, &kv->lru_head, &kv->lru_tail, b);
            m->where = KV_WHERE_USED;
            kv->n_evictable--;
            kv->n_used++;
        }
        m->ref++;
        s->blocks[i] = b;
        s->hashes[i] = h;
        parent = h;
        n_hit++;
    }
    s->n_blocks = n_hit;
    s->n_hashed = n_hit;
    s->n_computed = n_hit * bs;
    kv->prefix_hits_tokens += (uint64_t)n_hit * (uint64_t)bs;
    return n_hit * bs;
}

static int blocks_for_tokens(const struct kv_cache *kv, int n_tokens)
{
    if (n_tokens <= 0)
        return 0;
    return (int)(((int64_t)n_tokens + kv->block_size - 1) / kv->block_size);
}

int kv_seq_blocks_needed(const struct kv_cache *kv, const struct kv_seq *s, int n_tokens)
{
    int need = blocks_for_tokens(kv, n_tokens) - s->n_blocks;
    return need > 0 ? need : 0;
}

int kv_available_blocks(const struct kv_cache *kv)
{
    return kv->n_free + kv->n_evictable;
}

int kv_seq_reserve(struct kv_cache *kv, struct kv_seq *s, int n_tokens)
{
    int total = blocks_for_tokens(kv, n_tokens);
    if (total <= s->n_blocks)
        return 0;
    if (total > s->max_blocks)
        return -1;
    int need = total - s->n_blocks;
    if (need > kv->n_free + kv->n_evictable)
        return -1;
    for (int k = 0; k < need; k++) {
        int32_t b;
        if (kv->n_free > 0) {
            b = kv->free_head;
            list_remove(kv, &kv->free_head, &kv->free_tail, b);
            kv->n_free--;
        } else {
            b = kv->lru_head;
            list_remove(kv, &kv->lru_head, &kv->lru_tail, b);
            kv->n_evictable--;
            unregister_block(kv, b);
            kv->n_evictions++;
        }
        struct kv_block_meta *m = &kv->meta[b];
        m->where = KV_WHERE_USED;
        m->ref = 1;
        kv->n_used++;
        s->blocks[s->n_blocks++] = b;
    }
    return 0;
}

void kv_seq_commit(struct kv_cache *kv, struct kv_seq *s, const int32_t *tokens, int n_computed)
{
    int bs = kv->block_size;
    if (n_computed > s->n_blocks * bs) {
        log_error("kv", "kv_seq_commit: %d tokens computed but only %d blocks reserved",
                  n_computed, s->n_blocks);
        n_computed = s->n_blocks * bs;
    }
    if (n_computed < s->n_computed) {
        log_error("kv", "kv_seq_commit: n_computed went back from %d to %d", s->n_computed,
                  n_computed);
        return;
    }
    s->n_computed = n_computed;
    int n_full = n_computed / bs;
    for (int i = s->n_hashed; i < n_full; i++) {
        uint64_t parent = i > 0 ? s->hashes[i - 1] : 0;
        uint64_t h = kv_block_hash(parent, tokens + (size_t)i * bs, bs);
        s->hashes[i] = h;
        if (!kv->enable_prefix_caching)
            continue;
        struct kv_block_meta *m = &kv->meta[s->blocks[i]];
        if (m->has_hash)
            continue; /* cannot happen for a block this sequence filled; be safe */
        if (map_put(kv, h, s->blocks[i]) == 0) {
            m->has_hash = 1;
            m->hash = h;
        }
        /* else another block holds this content: this one stays unregistered and goes to the
         * free list when released */
    }
    if (n_full > s->n_hashed)
        s->n_hashed = n_full;
}

void kv_seq_release(struct kv_cache *kv, struct kv_seq *s)
{
    for (int i = s->n_blocks - 1; i >= 0; i--) {
        int32_t b = s->blocks[i];
        struct kv_block_meta *m = &kv->meta[b];
        if (--m->ref > 0)
            continue;
        kv->n_used--;
        if (m->has_hash) {
            m->where = KV_WHERE_EVICTABLE;
            list_push_tail(kv, &kv->lru_head, &kv->lru_tail, b);
            kv->n_evictable++;
        } else {
            m->where = KV_WHERE_FREE;
            list_push_tail(kv, &kv->free_head, &kv->free_tail, b);
            kv->n_free++;
        }
    }
    s->n_blocks = 0;
    s->n_computed = 0;
    s->n_hashed = 0;
}

void kv_reset_prefix_cache(struct kv_cache *kv)
{
    for (size_t i = 0; i < kv->map_cap; i++) {
        kv->map_vals[i] = KV_MAP_EMPTY;
        kv->map_keys[i] = 0;
    }
    for (int32_t b = 0; b < kv->n_blocks; b++) {
        kv->meta[b].has_hash = 0;
        kv->meta[b].hash = 0;
    }
    /* evictable blocks, oldest first, join the free list */
    while (kv->lru_head >= 0) {
        int32_t b = kv->lru_head;
        list_remove(kv, &kv->lru_head, &kv->lru_tail, b);
        kv->meta[b].where = KV_WHERE_FREE;
        list_push_tail(kv, &kv->free_head, &kv->free_tail, b);
        kv->n_evictable--;
        kv->n_free++;
    }
}

/* ---- invariants ---------------------------------------------------------------------------- */

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        snprintf(err, err_len, __VA_ARGS__);                                                       \
        goto fail;                                                                                 \
    } while (0)

static int check_list(const struct kv_cache *kv, int32_t head, int32_t tail, int n_expect,
                      uint8_t where, const char *name, char *err, size_t err_len)
{
    int n = 0;
    int32_t prev = -1;
    for (int32_t b = head; b >= 0; b = kv->meta[b].next) {
        if (b >= kv->n_blocks) {
            snprintf(err, err_len, "%s list: block id %d out of range", name, b);
            return -1;
        }
        const struct kv_block_meta *m = &kv->meta[b];
        if (++n > kv->n_blocks) {
            snprintf(err, err_len, "%s list: cycle", name);
            return -1;
        }
        if (m->prev != prev) {
            snprintf(err, err_len, "%s list: block %d prev %d, expected %d", name, b, m->prev,
                     prev);
            return -1;
        }
        if (m->where != where) {
            snprintf(err, err_len, "%s list: block %d has where %d", name, b, m->where);
            return -1;
        }
        if (m->ref != 0) {
            snprintf(err, err_len, "%s list: block %d has ref %d", name, b, m->ref);
            return -1;
        }
        if (where == KV_WHERE_FREE && m->has_hash) {
            snprintf(err, err_len, "free list: block %d has a hash", b);
            return -1;
        }
        if (where == KV_WHERE_EVICTABLE && !m->has_hash) {
            snprintf(err, err_len, "evictable list: block %d has no hash", b);
            return -1;
        }
        prev = b;
    }
    if (prev != tail) {
        snprintf(err, err_len, "%s list: tail %d, last walked %d", name, tail, prev);
        return -1;
    }
    if (n != n_expect) {
        snprintf(err, err_len, "%s list: %d blocks walked, counter says %d", name, n, n_expect);
        return -1;
    }
    return 0;
}

int kv_check_invariants(const struct kv_cache *kv, const struct kv_seq *const *seqs, int n_seqs,
                        char *err, size_t err_len)
{
    int32_t *refs = NULL, *stamp = NULL;
    if (kv->n_free < 0 || kv->n_evictable < 0 || kv->n_used < 0 ||
        kv->n_free + kv->n_evictable + kv->n_used != kv->n_blocks)
        FAIL("counts: free %d + evictable %d + used %d != %d blocks", kv->n_free, kv->n_evictable,
             kv->n_used, kv->n_blocks);
    if (check_list(kv, kv->free_head, kv->free_tail, kv->n_free, KV_WHERE_FREE, "free", err,
                   err_len) != 0)
        goto fail;
    if (check_list(kv, kv->lru_head, kv->lru_tail, kv->n_evictable, KV_WHERE_EVICTABLE,
                   "evictable", err, err_len) != 0)
        goto fail;

    int n_used = 0, n_hashed_blocks = 0;
    for (int32_t b = 0; b < kv->n_blocks; b++) {
        const struct kv_block_meta *m = &kv->meta[b];
        if (m->where > KV_WHERE_USED)
            FAIL("block %d: bad where %d", b, m->where);
        if ((m->where == KV_WHERE_USED) != (m->ref > 0))
            FAIL("block %d: where %d with ref %d", b, m->where, m->ref);
        if (m->ref < 0)
            FAIL("block %d: negative ref %d", b, m->ref);
        if (m->where == KV_WHERE_USED) {
            n_used++;
            if (m->prev != -1 || m->next != -1)
                FAIL("block %d: used but linked (prev %d, next %d)", b, m->prev, m->next);
        }
        if (m->has_hash) {
            n_hashed_blocks++;
            if (!kv->enable_prefix_caching)
                FAIL("block %d: registered with prefix caching off", b);
            if (map_get(kv, m->hash) != b)
                FAIL("block %d: hash %016" PRIx64 " maps to %d", b, m->hash, map_get(kv, m->hash));
        }
    }
    if (n_used != kv->n_used)
        FAIL("%d blocks used, counter says %d", n_used, kv->n_used);

    int n_entries = 0;
    for (size_t i = 0; i < kv->map_cap; i++) {
        int32_t v = kv->map_vals[i];
        if (v == KV_MAP_EMPTY)
            continue;
        if (v < 0 || v >= kv->n_blocks)
            FAIL("map slot %zu: bad value %d", i, v);
        n_entries++;
        const struct kv_block_meta *m = &kv->meta[v];
        if (!m->has_hash || m->hash != kv->map_keys[i])
            FAIL("map slot %zu: block %d (has_hash %d) does not carry hash %016" PRIx64, i, v,
                 m->has_hash, kv->map_keys[i]);
        if (map_get(kv, kv->map_keys[i]) != v)
            FAIL("map slot %zu: key unreachable from its home slot", i);
    }
    if (n_entries != n_hashed_blocks)
        FAIL("map holds %d entries, %d blocks are registered", n_entries, n_hashed_blocks);

    if (seqs) {
        refs = xcalloc((size_t)kv->n_blocks, sizeof *refs);
        stamp = xmalloc((size_t)kv->n_blocks * sizeof *stamp);
        for (int32_t b = 0; b < kv->n_blocks; b++)
            stamp[b] = -1;
        for (int j = 0; j < n_seqs; j++) {
            const struct kv_seq *s = seqs[j];
            if (!s)
                continue;
            int bs = kv->block_size;
            if (s->n_blocks < 0 || s->n_blocks > s->max_blocks)
                FAIL("seq %d: n_blocks %d (max %d)", j, s->n_blocks, s->max_blocks);
            if (s->n_computed < 0 || s->n_computed > s->n_blocks * bs)
                FAIL("seq %d: n_computed %d with %d blocks", j, s->n_computed, s->n_blocks);
            if (s->n_hashed < 0 || s->n_hashed > s->n_blocks ||
                s->n_hashed * bs > s->n_computed)
                FAIL("seq %d: n_hashed %d (n_blocks %d, n_computed %d)", j, s->n_hashed,
                     s->n_blocks, s->n_computed);
            for (int i = 0; i < s->n_blocks; i++) {
                int32_t b = s->blocks[i];
                if (b < 0 || b >= kv->n_blocks)
                    FAIL("seq %d: table entry %d is block %d", j, i, b);
                if (stamp[b] == j)
                    FAIL("seq %d: block %d twice in the table", j, b);
                stamp[b] = j;
                refs[b]++;
                const struct kv_block_meta *m = &kv->meta[b];
                if (m->has_hash && (i >= s->n_hashed || m->hash != s->hashes[i]))
                    FAIL("seq %d: block %d at %d registered under another hash", j, b, i);
            }
        }
        for (int32_t b = 0; b < kv->n_blocks; b++)
            if (refs[b] != kv->meta[b].ref)
                FAIL("block %d: ref %d, held by %d tables", b, kv->meta[b].ref, refs[b]);
    }
    free(refs);
    free(stamp);
    return 0;
fail:
    free(refs);
    free(stamp);
    return -1;
}
