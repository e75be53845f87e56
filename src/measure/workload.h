/* workload: the prompts a probe sends. Synthetic prompts of a target length in tokens (optionally
 * uniform in [len*(1-R), len*(1+R)]), prompts read from a file (JSONL {"prompt": ...} per line, or
 * a ShareGPT JSON array: the first human turn of each conversation), and a prefix-sharing generator
 * (shared prefix of P tokens + distinct suffix of S tokens, V variants, a hit-rate mix) for the
 * prefix-caching probe. Every prompt is a pure function of (seed, request index), so a run can be
 * repeated exactly. Each request's prompt starts with a header unique to that request, so no two
 * requests share a prefix and nothing is prefix-cached by accident (the prefix generator shares
 * exactly the prefix it says it shares, nothing more).
 *
 * Token counts: on the embedded runtime with slmprobe's own vocabulary one token is one byte
 * (tokenizer.h), so WORKLOAD_UNIT_BYTE lengths are exact (probe_tokens_are_bytes decides). For
 * other servers, and an embedded model with a real vocabulary, WORKLOAD_UNIT_WORD writes common English words that BPE
 * vocabularies hold as one token each (with the leading space): lengths are approximations, and
 * the real counts must come from the server's usage (probes report those). This module never
 * tokenises and never talks to a server.
 *
 *   struct workload w;
 *   workload_init_synth(&w, &(struct workload_synth){ .input_len_tokens = 128, .seed = 1 });
 *   // or: workload_init_file(&w, "prompts.jsonl", WORKLOAD_UNIT_BYTE, 1, err, sizeof err)
 *   struct buf b; buf_init(&b, 4096, 1 << 26);
 *   for (i...) { buf_reset(&b); workload_prompt(&w, i, &b, &n_target); ... send b.data, b.len }
 *   workload_free(&w);
 *
 * All functions are pure or touch only the objects passed in; any thread, one object per thread. */
#ifndef SLM_WORKLOAD_H
#define SLM_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum workload_status {
    WORKLOAD_OK = 0,
    WORKLOAD_ERR_IO,    /* the prompt file could not be read */
    WORKLOAD_ERR_JSON,  /* malformed JSON (the message names the line) */
    WORKLOAD_ERR_FIELD, /* a missing, non-string or empty prompt (the message names the line) */
    WORKLOAD_ERR_EMPTY, /* the file holds no usable prompt */
    WORKLOAD_ERR_ARG,   /* a length, range, variant count or rate out of bounds */
    WORKLOAD_ERR_CAP,   /* the output buffer's cap was reached */
};
const char *workload_status_str(enum workload_status st); /* "ok", "unreadable file", ... */

enum workload_unit {
    WORKLOAD_UNIT_BYTE = 0, /* one token = one byte (embedded runtime): exact lengths */
    WORKLOAD_UNIT_WORD,     /* one token ~ one common English word (other servers): approximate */
};
const char *workload_unit_str(enum workload_unit u); /* "byte", "word" */

/* Bounds on a requested length (tokens). */
#define WORKLOAD_MAX_LEN_TOKENS (1 << 24)
/* Bytes of the unique per-request header in byte mode ("%016llx " = 17); in word mode the header
 * is WORKLOAD_HEADER_WORDS words. A prompt shorter than the header gets a truncated header. */
#define WORKLOAD_HEADER_BYTES 17
#define WORKLOAD_HEADER_WORDS 6

struct workload_synth {
    int input_len_tokens;   /* >= 1 */
    double input_len_range; /* R in [0, 1): length uniform in [len*(1-R), len*(1+R)], >= 1 */
    enum workload_unit unit;
    uint64_t seed;
};

enum workload_source { WORKLOAD_SOURCE_SYNTH = 0, WORKLOAD_SOURCE_JSONL, WORKLOAD_SOURCE_SHAREGPT };
const char *workload_source_str(enum workload_source s); /* "synthetic", "jsonl", "sharegpt" */

struct workload {
    enum workload_source source;
    struct workload_synth synth; /* SYNTH; unit and seed are used by every source */
    int unique_header;           /* file prompts: prepend the unique header (default 1) */
    char **prompts;              /* file prompts, owned */
    size_t *prompt_lens;
    size_t n_prompts;
    size_t n_skipped;                          /* ShareGPT entries without a human turn */
    size_t prompt_bytes_min, prompt_bytes_max; /* over the file's prompts (header excluded) */
    double prompt_bytes_mean;
    char path[512];
};

/* Synthetic workload. WORKLOAD_OK, or WORKLOAD_ERR_ARG (w is then empty but safe to free). */
enum workload_status workload_init_synth(struct workload *w, const struct workload_synth *cfg);

/* Loads a prompt file. Format by the first non-blank byte after an optional BOM: '[' ShareGPT,
 * anything else JSONL (blank lines skipped). Errors leave w empty (safe to free) and write a
 * message naming the file and, for JSONL, the 1-based line: "p.jsonl:3: malformed JSON: ...",
 * "p.jsonl:5: \"prompt\" is missing", "... is a number, not a string", "... is empty".
 * ShareGPT: entries with no human turn are skipped (counted in n_skipped); a human turn whose value
 * is not a string is an error naming the entry index. max_bytes caps the file (0: 256 MiB). */
enum workload_status workload_init_file(struct workload *w, const char *path, size_t max_bytes,
                                        enum workload_unit unit, uint64_t seed, char *err,
                                        size_t err_len);

void workload_free(struct workload *w); /* NULL-safe; leaves w empty */

/* Appends prompt i (any index; file prompts cycle) to out. *n_tokens_target_out (may be NULL) is
 * the intended token count: exact in byte mode, approximate in word mode, -1 when unknown (file
 * prompts in word mode). WORKLOAD_OK or WORKLOAD_ERR_CAP (out's cap). */
enum workload_status workload_prompt(const struct workload *w, uint64_t i, struct buf *out,
                                     int *n_tokens_target_out);

/* Target length of synthetic prompt i (tokens), from the seed; the same value workload_prompt
 * reports. Always >= 1. */
int workload_synth_len(const struct workload_synth *cfg, uint64_t i);

/* One sentence for reports: source, lengths, unit, and that each prompt starts with a unique
 * header (no accidental prefix caching). Appends to out. */
void workload_describe(const struct workload *w, struct buf *out);

/* Prefix-sharing workload: each request is [prefix][suffix]. A fraction hit_rate of requests (an
 * exact running mix, not a coin flip: after n requests round(n * hit_rate) used a shared prefix)
 * use one of n_variants shared prefixes, round robin; the others get a prefix of their own. Every
 * suffix starts with the request's unique header. Shared-prefix requests whose variant was already
 * sent are expected cache hits (expect_hit); the first use of each variant is a cold miss.
 *
 *   struct workload_prefix g;
 *   workload_prefix_init(&g, &(struct workload_prefix_config){ .prefix_len_tokens = 512,
 *                        .suffix_len_tokens = 64, .n_variants = 4, .hit_rate = 0.75, .seed = 7 });
 *   workload_prefix_next(&g, &b, &info) ... workload_prefix_free(&g); */
struct workload_prefix_config {
    int prefix_len_tokens; /* P >= 0 */
    int suffix_len_tokens; /* S >= 1 */
    int n_variants;        /* V >= 1 */
    double hit_rate;       /* [0, 1] */
    enum workload_unit unit;
    uint64_t seed;
};
struct workload_prefix_info {
    uint64_t i_request;  /* 0, 1, 2, ... in generation order */
    int variant;         /* shared prefix used, or -1 (a prefix of this request's own) */
    int expect_hit;      /* 1: variant was used by an earlier request */
    int n_prefix_tokens; /* P (exact in byte mode) */
    int n_suffix_tokens; /* S */
};
struct workload_prefix {
    struct workload_prefix_config cfg;
    uint64_t n_made;
    uint64_t n_shared; /* requests that used a shared prefix so far */
    uint64_t n_expect_hit;
    unsigned char *variant_used; /* [n_variants], owned */
};
/* WORKLOAD_OK, or WORKLOAD_ERR_ARG (g is then empty but safe to free). */
enum workload_status workload_prefix_init(struct workload_prefix *g,
                                          const struct workload_prefix_config *cfg);
void workload_prefix_free(struct workload_prefix *g); /* NULL-safe */
/* Appends the next prompt to out and describes it in *info (may be NULL). WORKLOAD_OK or
 * WORKLOAD_ERR_CAP (then nothing was counted: calling again retries the same request). */
enum workload_status workload_prefix_next(struct workload_prefix *g, struct buf *out,
                                          struct workload_prefix_info *info);
/* Appends shared prefix v (0 <= v < n_variants) alone, e.g. to pre-warm the cache. */
enum workload_status workload_prefix_variant(const struct workload_prefix *g, int v,
                                             struct buf *out);

#endif
