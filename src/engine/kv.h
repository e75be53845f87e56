/* kv: the paged KV cache. A fixed pool of blocks (block_size tokens each, for every layer, K and
 * V in f32), per-sequence block tables, and automatic prefix caching with vLLM's semantics: each
 * FULL block is identified by a hash of (parent block's hash, the block's token ids) (xxhash);
 * a map from hash to block; reference counts; a block whose last user releases it keeps its
 * contents and goes onto an LRU evictable list, from which it is either hit again (revived) or
 * evicted when a fresh block is needed. Partial blocks are never shared.
 * It does no attention arithmetic (forward.c) and no scheduling (sched.c). Engine thread only,
 * except kv_count (read under the engine's stats lock by the caller).
 *
 *   struct kv_cache kv;
 *   kv_init(&kv, n_layer, kv_dim, 16, n_blocks, 1);     // allocates + commits the pool
 *   (or kv_init_meta: the same bookkeeping, the pool lives elsewhere, e.g. in GPU memory)
 *   struct kv_seq s;
 *   kv_seq_init(&s, max_blocks_per_seq);
 *   int n_cached = kv_seq_match_prefix(&kv, &s, prompt, n_prompt);   // admission: takes refs
 *   if (kv_seq_reserve(&kv, &s, n_cached + chunk) != 0) -> preempt someone, retry
 *   ... forward writes K/V of positions [s.n_computed, +chunk) via kv_k()/kv_v() ...
 *   kv_seq_commit(&kv, &s, tokens, s.n_computed + chunk);   // registers newly full blocks
 *   kv_seq_release(&kv, &s);                               // finished, aborted or preempted
 *   kv_seq_free(&s); kv_free(&kv);
 */
#ifndef SLM_KV_H
#define SLM_KV_H

#include <stddef.h>
#include <stdint.h>

#include "engine/bigmem.h"

struct kv_block_meta {
    int32_t ref;        /* sequences holding the block */
    int32_t prev, next; /* links in the free list or the LRU evictable list (-1 = none) */
    uint64_t hash;      /* valid when has_hash */
    uint8_t has_hash;   /* registered in the prefix map (full block) */
    uint8_t where;      /* KV_WHERE_FREE, KV_WHERE_EVICTABLE, KV_WHERE_USED */
};

enum kv_where { KV_WHERE_FREE = 0, KV_WHERE_EVICTABLE = 1, KV_WHERE_USED = 2 };

struct kv_cache {
    int n_layer;
    int kv_dim;           /* n_head_kv * head_dim */
    int block_size;
    int n_blocks;
    int enable_prefix_caching;
    float *pool;          /* n_layer x 2 x n_blocks x block_size x kv_dim floats; NULL after
                             kv_init_meta (the pool is in device memory) */
    size_t pool_bytes;
    struct bigmem_info pool_info; /* how the pool was committed: THP, touch time, threads */
    struct kv_block_meta *meta; /* [n_blocks] */
    int32_t free_head, free_tail;   /* blocks never used or evicted (no hash) */
    int32_t lru_head, lru_tail;     /* evictable: head = least recently used */
    int n_free, n_evictable, n_used;
    /* hash -> block: open addressing, capacity a power of two >= 2 x n_blocks */
    uint64_t *map_keys;
    int32_t *map_vals;    /* -1 empty; -2 tombstone (never stored: deletion shifts back) */
    size_t map_cap;
    /* counters (tokens, as vLLM counts them) */
    uint64_t prefix_queries_tokens;
    uint64_t prefix_hits_tokens;
    uint64_t n_evictions;
};

/* One sequence's block table and hash chain. */
struct kv_seq {
    int32_t *blocks;      /* [max_blocks] block ids, first n_blocks valid */
    uint64_t *hashes;     /* hash of each full, committed block, [max_blocks] */
    int n_blocks;
    int max_blocks;
    int n_computed;       /* tokens whose K/V are in the blocks (cached or computed) */
    int n_hashed;         /* leading full blocks whose hash is known (registered or hit) */
};

/* Allocates the pool (bigmem.h: a 2 MiB-aligned map with transparent huge pages where the
 * kernel allows, every page written once by the OpenMP team, so resident memory shows the whole
 * pool before the engine is ready) and leaves it zero. 0, or -1 if the allocation failed
 * (message in err). */
int kv_init(struct kv_cache *kv, int n_layer, int kv_dim, int block_size, int n_blocks,
            int enable_prefix_caching, char *err, size_t err_len);
/* The same without a host pool (the CUDA backend holds the K/V in device memory, forward_dev.h):
 * pool NULL, pool_bytes 0; block metadata, block tables and the prefix map as above (kv_k and
 * kv_v must not be called). 0, or -1 (invalid shape, message in err). */
int kv_init_meta(struct kv_cache *kv, int n_layer, int kv_dim, int block_size, int n_blocks,
                 int enable_prefix_caching, char *err, size_t err_len);
void kv_free(struct kv_cache *kv); /* NULL-safe */

/* Views of one block's K or V for one layer: [block_size][kv_dim] floats. */
static inline float *kv_k(const struct kv_cache *kv, int layer, int block)
{
    return kv->pool + (((size_t)layer * 2 + 0) * (size_t)kv->n_blocks + (size_t)block) *
                          (size_t)kv->block_size * (size_t)kv->kv_dim;
}
static inline float *kv_v(const struct kv_cache *kv, int layer, int block)
{
    return kv->pool + (((size_t)layer * 2 + 1) * (size_t)kv->n_blocks + (size_t)block) *
                          (size_t)kv->block_size * (size_t)kv->kv_dim;
}

void kv_seq_init(struct kv_seq *s, int max_blocks);
void kv_seq_free(struct kv_seq *s); /* NULL-safe; the seq must have been released */

/* Admission. s must be empty. Finds the longest run of cached full blocks matching tokens and
 * takes a reference on each (reviving evictable ones). As in vLLM V1, only whole blocks lying
 * within the first n_tokens - 1 tokens can hit, so at least the last token is recomputed and new
 * K/V are never written into a shared block. Sets s->n_computed (and n_hashed) to the hit.
 * Counts n_tokens queried and the hit tokens. With prefix caching off: returns 0 and counts
 * nothing. Returns the number of cached tokens (a multiple of block_size); -1 (nothing changed)
 * if s was not empty. */
int kv_seq_match_prefix(struct kv_cache *kv, struct kv_seq *s, const int32_t *tokens,
                        int n_tokens);

/* Makes the table hold blocks for n_tokens tokens, taking fresh blocks from the free list, else
 * evicting the least recently used evictable block. 0, or -1 when not enough blocks are
 * available: then NOTHING changed (all or nothing). */
int kv_seq_reserve(struct kv_cache *kv, struct kv_seq *s, int n_tokens);

/* Number of blocks kv_seq_reserve would need to take for n_tokens. */
int kv_seq_blocks_needed(const struct kv_cache *kv, const struct kv_seq *s, int n_tokens);
/* Blocks available for reservation (free + evictable). */
int kv_available_blocks(const struct kv_cache *kv);

/* After a forward step: n_computed tokens of tokens[] now have K/V. Every block that became
 * full gets its hash (chain from the parent) and, with caching on, is registered in the map
 * (if another block already holds that hash, this block stays unregistered). */
void kv_seq_commit(struct kv_cache *kv, struct kv_seq *s, const int32_t *tokens, int n_computed);

/* Drops the sequence's references (tail blocks first, as vLLM does, so they are evicted first).
 * Blocks reaching ref 0 go to the evictable LRU if registered, else to the free list.
 * s becomes empty (n_blocks = n_computed = n_hashed = 0). */
void kv_seq_release(struct kv_cache *kv, struct kv_seq *s);

/* Empties the prefix map: evictable blocks become free, used blocks lose their registration. */
void kv_reset_prefix_cache(struct kv_cache *kv);

/* Invariants: n_free + n_evictable + n_used == n_blocks, lists consistent with where[], map
 * consistent with has_hash, and each block's ref equals the number of tables among seqs[] that
 * hold it (seqs == NULL skips the per-sequence checks; pass every live sequence otherwise).
 * Allocates scratch: a test/debug hook, not for the hot path. 0, or -1 with a message. */
int kv_check_invariants(const struct kv_cache *kv, const struct kv_seq *const *seqs, int n_seqs,
                        char *err, size_t err_len);

/* Hash of a full block given its parent's hash (0 for the first block). xxhash (XXH3 64). */
uint64_t kv_block_hash(uint64_t parent, const int32_t *tokens, int n);

#endif
