/* workload: synthetic prompts, prompt files (JSONL, ShareGPT) and the prefix-sharing generator.
 * Everything is derived from (seed, index) through splitmix64, so prompts are reproducible and
 * need no state beyond the loaded file. It does not tokenise and does not send anything. */
#include "measure/workload.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"

/* 256 common English words; with a leading space each is a single token in the GPT-2, Llama 3
 * and Qwen BPE vocabularies, so WORKLOAD_UNIT_WORD lengths are close to token counts. */
static const char *const words[] = {
    "the",      "of",      "and",    "to",       "in",      "is",      "was",     "for",
    "on",       "that",    "with",   "as",       "by",      "at",      "from",    "it",
    "his",      "an",      "are",    "were",     "be",      "this",    "which",   "or",
    "had",      "not",     "but",    "have",     "first",   "also",    "one",     "their",
    "after",    "two",     "new",    "been",     "its",     "has",     "who",     "other",
    "year",     "time",    "up",     "more",     "all",     "over",    "her",     "into",
    "she",      "he",      "can",    "only",     "may",     "some",    "most",    "city",
    "made",     "such",    "world",  "many",     "between", "three",   "state",   "during",
    "later",    "than",    "used",   "known",    "would",   "then",    "when",    "where",
    "while",    "about",   "there",  "under",    "school",  "people",  "they",    "both",
    "through",  "well",    "before", "part",     "second",  "these",   "since",   "series",
    "work",     "life",    "north",  "south",    "film",    "team",    "game",    "war",
    "music",    "name",    "four",   "five",     "house",   "album",   "family",  "group",
    "area",     "number",  "same",   "until",    "found",   "each",    "high",    "church",
    "season",   "best",    "early",  "played",   "line",    "place",   "end",     "based",
    "public",   "against", "show",   "river",    "around",  "became",  "own",     "party",
    "national", "several", "long",   "day",      "side",    "great",   "main",    "home",
    "did",      "began",   "out",    "old",      "any",     "even",    "way",     "back",
    "last",     "left",    "put",    "set",      "small",   "large",   "water",   "light",
    "road",     "power",   "book",   "story",    "point",   "board",   "open",    "field",
    "order",    "level",   "market", "money",    "data",    "model",   "system",  "test",
    "value",    "price",   "color",  "green",    "blue",    "red",     "black",   "white",
    "table",    "door",    "window", "paper",    "letter",  "word",    "text",    "page",
    "news",     "sound",   "voice",  "song",     "art",     "food",    "bread",   "fish",
    "tree",     "stone",   "wood",   "glass",    "metal",   "fire",    "air",     "earth",
    "sun",      "moon",    "star",   "sky",      "rain",    "snow",    "wind",    "sea",
    "lake",     "hill",    "town",   "village",  "street",  "bridge",  "tower",   "garden",
    "farm",     "horse",   "dog",    "cat",      "bird",    "king",    "queen",   "army",
    "ship",     "train",   "car",    "plane",    "center",  "office",  "court",   "law",
    "rule",     "plan",    "idea",   "mind",     "heart",   "hand",    "head",    "face",
    "eye",      "body",    "child",  "woman",    "man",     "friend",  "father",  "mother",
    "brother",  "sister",  "son",    "daughter", "doctor",  "teacher", "student", "class",
};
_Static_assert(sizeof words / sizeof words[0] == 256, "the word list must hold 256 words");

const char *workload_status_str(enum workload_status st)
{
    switch (st) {
    case WORKLOAD_OK:
        return "ok";
    case WORKLOAD_ERR_IO:
        return "unreadable file";
    case WORKLOAD_ERR_JSON:
        return "malformed JSON";
    case WORKLOAD_ERR_FIELD:
        return "bad prompt field";
    case WORKLOAD_ERR_EMPTY:
        return "no prompts";
    case WORKLOAD_ERR_ARG:
        return "invalid argument";
    case WORKLOAD_ERR_CAP:
        return "buffer cap reached";
    }
    return "unknown";
}

const char *workload_unit_str(enum workload_unit u)
{
    return u == WORKLOAD_UNIT_WORD ? "word" : "byte";
}

const char *workload_source_str(enum workload_source s)
{
    switch (s) {
    case WORKLOAD_SOURCE_SYNTH:
        return "synthetic";
    case WORKLOAD_SOURCE_JSONL:
        return "jsonl";
    case WORKLOAD_SOURCE_SHAREGPT:
        return "sharegpt";
    }
    return "unknown";
}

/* ---- deterministic randomness ---- */

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Domains keep the streams of one seed apart (header, filler, length, prefix, ...). */
enum { DOM_HEADER = 1, DOM_FILL, DOM_LEN, DOM_VARIANT, DOM_OWN_PREFIX, DOM_SUFFIX, DOM_FILE };

/* A bijection of i for a fixed (seed, domain): distinct indices give distinct values. */
static uint64_t stream_key(uint64_t seed, int domain, uint64_t i)
{
    return mix64(mix64(seed ^ ((uint64_t)domain * 0xd1b54a32d192ed03ull)) + i);
}

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- text generation ---- */

/* Appends the unique header of key, at most max_tokens tokens; returns tokens written. */
static int put_header(struct buf *out, enum workload_unit unit, uint64_t key, int max_tokens,
                      int *cap_hit)
{
    if (max_tokens <= 0)
        return 0;
    if (unit == WORKLOAD_UNIT_BYTE) {
        char hdr[32];
        snprintf(hdr, sizeof hdr, "%016llx ", (unsigned long long)key);
        size_t n = WORKLOAD_HEADER_BYTES;
        if ((size_t)max_tokens < n)
            n = (size_t)max_tokens;
        if (buf_append(out, hdr, n))
            *cap_hit = 1;
        return (int)n;
    }
    int n = max_tokens < WORKLOAD_HEADER_WORDS ? max_tokens : WORKLOAD_HEADER_WORDS;
    for (int k = 0; k < n; k++) {
        const char *w = words[(key >> (8 * k)) & 0xff];
        if (buf_putc(out, ' ') || buf_puts(out, w))
            *cap_hit = 1;
    }
    return n;
}

/* Appends n_tokens tokens of filler text drawn from the stream key. */
static void put_filler(struct buf *out, enum workload_unit unit, uint64_t key, int n_tokens,
                       int *cap_hit)
{
    uint64_t s = key;
    if (unit == WORKLOAD_UNIT_WORD) {
        for (int k = 0; k < n_tokens; k++)
            if (buf_putc(out, ' ') || buf_puts(out, words[rng_next(&s) & 0xff]))
                *cap_hit = 1;
        return;
    }
    /* Byte mode: words separated by single spaces, exactly n_tokens bytes. */
    int left = n_tokens;
    while (left > 0) {
        const char *w = words[rng_next(&s) & 0xff];
        size_t len = strlen(w);
        if ((int)len > left)
            len = (size_t)left;
        if (buf_append(out, w, len))
            *cap_hit = 1;
        left -= (int)len;
        if (left > 0) {
            if (buf_putc(out, ' '))
                *cap_hit = 1;
            left--;
        }
    }
}

/* [header of hkey][filler of fkey], n_tokens in all. */
static void put_segment(struct buf *out, enum workload_unit unit, uint64_t hkey, uint64_t fkey,
                        int n_tokens, int *cap_hit)
{
    int h = put_header(out, unit, hkey, n_tokens, cap_hit);
    put_filler(out, unit, fkey, n_tokens - h, cap_hit);
}

/* ---- synthetic ---- */

static int synth_valid(const struct workload_synth *c)
{
    return c->input_len_tokens >= 1 && c->input_len_tokens <= WORKLOAD_MAX_LEN_TOKENS &&
           c->input_len_range >= 0.0 && c->input_len_range < 1.0 &&
           (c->unit == WORKLOAD_UNIT_BYTE || c->unit == WORKLOAD_UNIT_WORD);
}

int workload_synth_len(const struct workload_synth *cfg, uint64_t i)
{
    double len = cfg->input_len_tokens;
    double r = cfg->input_len_range;
    if (!(r > 0.0))
        return cfg->input_len_tokens < 1 ? 1 : cfg->input_len_tokens;
    long lo = lround(len * (1.0 - r)), hi = lround(len * (1.0 + r));
    if (lo < 1)
        lo = 1;
    if (hi < lo)
        hi = lo;
    uint64_t span = (uint64_t)(hi - lo) + 1;
    return (int)(lo + (long)(stream_key(cfg->seed, DOM_LEN, i) % span));
}

static void workload_zero(struct workload *w)
{
    memset(w, 0, sizeof *w);
    w->unique_header = 1;
}

enum workload_status workload_init_synth(struct workload *w, const struct workload_synth *cfg)
{
    workload_zero(w);
    if (!cfg || !synth_valid(cfg))
        return WORKLOAD_ERR_ARG;
    w->source = WORKLOAD_SOURCE_SYNTH;
    w->synth = *cfg;
    return WORKLOAD_OK;
}

void workload_free(struct workload *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_prompts; i++)
        free(w->prompts[i]);
    free(w->prompts);
    free(w->prompt_lens);
    workload_zero(w);
}

enum workload_status workload_prompt(const struct workload *w, uint64_t i, struct buf *out,
                                     int *n_tokens_target_out)
{
    size_t len0 = out->len;
    int cap_hit = 0, n_target = -1;
    uint64_t hkey = stream_key(w->synth.seed, DOM_HEADER, i);
    if (w->source == WORKLOAD_SOURCE_SYNTH) {
        n_target = workload_synth_len(&w->synth, i);
        put_segment(out, w->synth.unit, hkey, stream_key(w->synth.seed, DOM_FILL, i), n_target,
                    &cap_hit);
    } else if (w->n_prompts > 0) {
        size_t k = (size_t)(i % w->n_prompts);
        int h = 0;
        if (w->unique_header)
            h = put_header(out, w->synth.unit, hkey,
                           w->synth.unit == WORKLOAD_UNIT_BYTE ? WORKLOAD_HEADER_BYTES
                                                               : WORKLOAD_HEADER_WORDS,
                           &cap_hit);
        if (buf_append(out, w->prompts[k], w->prompt_lens[k]))
            cap_hit = 1;
        if (w->synth.unit == WORKLOAD_UNIT_BYTE && w->prompt_lens[k] < (size_t)INT32_MAX - 64)
            n_target = h + (int)w->prompt_lens[k];
    }
    if (cap_hit) {
        out->len = len0;
        out->data[len0] = '\0';
        return WORKLOAD_ERR_CAP;
    }
    if (n_tokens_target_out)
        *n_tokens_target_out = n_target;
    return WORKLOAD_OK;
}

void workload_describe(const struct workload *w, struct buf *out)
{
    const char *unit_note = w->synth.unit == WORKLOAD_UNIT_BYTE
                                ? "one token = one byte, exact on the embedded runtime"
                                : "one token ~ one common English word: approximate, the real "
                                  "counts come from the server's usage";
    if (w->source == WORKLOAD_SOURCE_SYNTH) {
        buf_printf(out, "Synthetic prompts of %d tokens", w->synth.input_len_tokens);
        if (w->synth.input_len_range > 0.0) {
            struct workload_synth s = w->synth;
            long lo = lround(s.input_len_tokens * (1.0 - s.input_len_range));
            long hi = lround(s.input_len_tokens * (1.0 + s.input_len_range));
            buf_printf(out, " (uniform in [%ld, %ld])", lo < 1 ? 1 : lo, hi);
        }
        buf_printf(out,
                   " (%s), seed %llu; each prompt starts with a header unique to its request, "
                   "so no two requests share a prefix and nothing is prefix-cached by accident.",
                   unit_note, (unsigned long long)w->synth.seed);
        return;
    }
    buf_printf(out, "Prompts from %s (%s, %zu prompts", w->path, workload_source_str(w->source),
               w->n_prompts);
    if (w->n_skipped)
        buf_printf(out, ", %zu entries without a human turn skipped", w->n_skipped);
    buf_printf(out, ", %zu..%zu bytes, mean %.1f), used in order and cycled (%s)",
               w->prompt_bytes_min, w->prompt_bytes_max, w->prompt_bytes_mean, unit_note);
    if (w->unique_header)
        buf_printf(out, "; each prompt is preceded by a header unique to its request, so repeated "
                        "prompts share no prefix and nothing is prefix-cached by accident.");
    else
        buf_printf(out, "; prompts are sent as they are (repeats may hit the prefix cache).");
}

/* ---- prompt files ---- */

struct loader {
    struct workload *w;
    size_t cap;
};

static void loader_add(struct loader *L, const char *s, size_t len)
{
    struct workload *w = L->w;
    if (w->n_prompts == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 64;
        char **p = xrealloc(w->prompts, cap * sizeof *p);
        w->prompts = p;
        size_t *l = xrealloc(w->prompt_lens, cap * sizeof *l);
        w->prompt_lens = l;
        L->cap = cap;
    }
    w->prompts[w->n_prompts] = xstrndup(s, len);
    w->prompt_lens[w->n_prompts] = len;
    w->n_prompts++;
}

static enum workload_status load_jsonl(struct loader *L, const char *path, const char *text,
                                       size_t len, char *err, size_t err_len)
{
    size_t pos = 0, line_no = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n')
            end++;
        line_no++;
        size_t a = pos, b = end;
        pos = end + 1;
        while (a < b && (text[a] == ' ' || text[a] == '\t' || text[a] == '\r'))
            a++;
        while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\r'))
            b--;
        if (a == b)
            continue;
        char jerr[160];
        struct json *root = json_parse(text + a, b - a, jerr, sizeof jerr);
        if (!root) {
            snprintf(err, err_len, "%s:%zu: malformed JSON: %s", path, line_no, jerr);
            return WORKLOAD_ERR_JSON;
        }
        enum workload_status st = WORKLOAD_OK;
        if (json_type_of(root) != JSON_TYPE_OBJECT) {
            snprintf(err, err_len, "%s:%zu: expected an object {\"prompt\": ...}, found %s", path,
                     line_no, json_type_str(json_type_of(root)));
            st = WORKLOAD_ERR_FIELD;
        } else {
            const struct json *p = json_get(root, "prompt");
            size_t plen = 0;
            const char *s = json_str(p, &plen);
            if (!p) {
                snprintf(err, err_len, "%s:%zu: \"prompt\" is missing", path, line_no);
                st = WORKLOAD_ERR_FIELD;
            } else if (!s) {
                snprintf(err, err_len, "%s:%zu: \"prompt\" is %s %s, not a string", path, line_no,
                         json_type_of(p) == JSON_TYPE_INT || json_type_of(p) == JSON_TYPE_ARRAY ||
                                 json_type_of(p) == JSON_TYPE_OBJECT
                             ? "an"
                             : "a",
                         json_type_str(json_type_of(p)));
                st = WORKLOAD_ERR_FIELD;
            } else if (plen == 0) {
                snprintf(err, err_len, "%s:%zu: \"prompt\" is empty", path, line_no);
                st = WORKLOAD_ERR_FIELD;
            } else {
                loader_add(L, s, plen);
            }
        }
        json_free(root);
        if (st != WORKLOAD_OK)
            return st;
    }
    return WORKLOAD_OK;
}

static int is_human(const char *from)
{
    return from && (!strcmp(from, "human") || !strcmp(from, "user"));
}

static enum workload_status load_sharegpt(struct loader *L, const char *path, const char *text,
                                          size_t len, char *err, size_t err_len)
{
    char jerr[160];
    struct json *root = json_parse(text, len, jerr, sizeof jerr);
    if (!root) {
        snprintf(err, err_len, "%s: malformed JSON: %s", path, jerr);
        return WORKLOAD_ERR_JSON;
    }
    enum workload_status st = WORKLOAD_OK;
    if (json_type_of(root) != JSON_TYPE_ARRAY) {
        snprintf(err, err_len, "%s: expected a ShareGPT array", path);
        st = WORKLOAD_ERR_FIELD;
        goto done;
    }
    size_t n = json_len(root);
    for (size_t i = 0; i < n; i++) {
        const struct json *conv = json_get(json_at(root, i), "conversations");
        size_t nt = json_len(conv);
        int found = 0;
        for (size_t t = 0; t < nt && !found; t++) {
            const struct json *turn = json_at(conv, t);
            if (!is_human(json_str(json_get(turn, "from"), NULL)))
                continue;
            const struct json *v = json_get(turn, "value");
            size_t vlen = 0;
            const char *s = json_str(v, &vlen);
            if (!s) {
                snprintf(err, err_len,
                         "%s: entry %zu, turn %zu: human \"value\" is %s, not a string", path, i, t,
                         json_type_str(json_type_of(v)));
                st = WORKLOAD_ERR_FIELD;
                goto done;
            }
            if (vlen == 0)
                break; /* an empty first human turn: skipped like a missing one */
            loader_add(L, s, vlen);
            found = 1;
        }
        if (!found)
            L->w->n_skipped++;
    }
done:
    json_free(root);
    return st;
}

enum workload_status workload_init_file(struct workload *w, const char *path, size_t max_bytes,
                                        enum workload_unit unit, uint64_t seed, char *err,
                                        size_t err_len)
{
    workload_zero(w);
    if (!max_bytes)
        max_bytes = (size_t)256 << 20;
    size_t len = 0;
    char *text = file_read_all(path, max_bytes, &len);
    if (!text) {
        snprintf(err, err_len, "%s: cannot read prompt file: %s", path,
                 errno == EFBIG ? "larger than the cap" : strerror(errno));
        return WORKLOAD_ERR_IO;
    }
    struct loader L = {w, 0};
    size_t a = 0;
    if (len >= 3 && (unsigned char)text[0] == 0xef && (unsigned char)text[1] == 0xbb &&
        (unsigned char)text[2] == 0xbf)
        a = 3;
    size_t b = a;
    while (b < len && (text[b] == ' ' || text[b] == '\t' || text[b] == '\r' || text[b] == '\n'))
        b++;
    enum workload_status st;
    if (b < len && text[b] == '[') {
        w->source = WORKLOAD_SOURCE_SHAREGPT;
        st = load_sharegpt(&L, path, text + a, len - a, err, err_len);
    } else {
        w->source = WORKLOAD_SOURCE_JSONL;
        st = load_jsonl(&L, path, text + a, len - a, err, err_len);
    }
    free(text);
    if (st == WORKLOAD_OK && w->n_prompts == 0) {
        snprintf(err, err_len, "%s: no prompts found%s", path,
                 w->n_skipped ? " (no entry has a human turn)" : "");
        st = WORKLOAD_ERR_EMPTY;
    }
    if (st != WORKLOAD_OK) {
        workload_free(w);
        return st;
    }
    w->synth.unit = unit;
    w->synth.seed = seed;
    snprintf(w->path, sizeof w->path, "%s", path);
    double sum = 0;
    w->prompt_bytes_min = (size_t)-1;
    for (size_t i = 0; i < w->n_prompts; i++) {
        size_t l = w->prompt_lens[i];
        sum += (double)l;
        if (l < w->prompt_bytes_min)
            w->prompt_bytes_min = l;
        if (l > w->prompt_bytes_max)
            w->prompt_bytes_max = l;
    }
    w->prompt_bytes_mean = sum / (double)w->n_prompts;
    return WORKLOAD_OK;
}

/* ---- prefix-sharing generator ---- */

enum workload_status workload_prefix_init(struct workload_prefix *g,
                                          const struct workload_prefix_config *cfg)
{
    memset(g, 0, sizeof *g);
    if (!cfg || cfg->prefix_len_tokens < 0 || cfg->prefix_len_tokens > WORKLOAD_MAX_LEN_TOKENS ||
        cfg->suffix_len_tokens < 1 || cfg->suffix_len_tokens > WORKLOAD_MAX_LEN_TOKENS ||
        cfg->n_variants < 1 || cfg->n_variants > 1 << 20 || !(cfg->hit_rate >= 0.0) ||
        cfg->hit_rate > 1.0 || (cfg->unit != WORKLOAD_UNIT_BYTE && cfg->unit != WORKLOAD_UNIT_WORD))
        return WORKLOAD_ERR_ARG;
    g->cfg = *cfg;
    g->variant_used = xcalloc((size_t)cfg->n_variants, 1);
    return WORKLOAD_OK;
}

void workload_prefix_free(struct workload_prefix *g)
{
    if (!g)
        return;
    free(g->variant_used);
    memset(g, 0, sizeof *g);
}

enum workload_status workload_prefix_variant(const struct workload_prefix *g, int v,
                                             struct buf *out)
{
    if (!g->variant_used || v < 0 || v >= g->cfg.n_variants)
        return WORKLOAD_ERR_ARG;
    size_t len0 = out->len;
    int cap_hit = 0;
    put_segment(out, g->cfg.unit, stream_key(g->cfg.seed, DOM_VARIANT, (uint64_t)v),
                stream_key(g->cfg.seed, DOM_VARIANT, (uint64_t)v + (1ull << 40)),
                g->cfg.prefix_len_tokens, &cap_hit);
    if (cap_hit) {
        out->len = len0;
        out->data[len0] = '\0';
        return WORKLOAD_ERR_CAP;
    }
    return WORKLOAD_OK;
}

enum workload_status workload_prefix_next(struct workload_prefix *g, struct buf *out,
                                          struct workload_prefix_info *info)
{
    if (!g->variant_used)
        return WORKLOAD_ERR_ARG;
    const struct workload_prefix_config *c = &g->cfg;
    uint64_t i = g->n_made;
    /* Exact running mix: after i+1 requests, round((i+1) * hit_rate) of them shared a prefix. */
    uint64_t target = (uint64_t)llround((double)(i + 1) * c->hit_rate);
    int shared = target > g->n_shared;
    int variant = shared ? (int)(g->n_shared % (uint64_t)c->n_variants) : -1;
    size_t len0 = out->len;
    int cap_hit = 0;
    if (shared) {
        if (workload_prefix_variant(g, variant, out) == WORKLOAD_ERR_CAP)
            cap_hit = 1;
    } else {
        put_segment(out, c->unit, stream_key(c->seed, DOM_OWN_PREFIX, i),
                    stream_key(c->seed, DOM_OWN_PREFIX, i + (1ull << 40)), c->prefix_len_tokens,
                    &cap_hit);
    }
    if (!cap_hit)
        put_segment(out, c->unit, stream_key(c->seed, DOM_SUFFIX, i),
                    stream_key(c->seed, DOM_SUFFIX, i + (1ull << 40)), c->suffix_len_tokens,
                    &cap_hit);
    if (cap_hit) {
        out->len = len0;
        out->data[len0] = '\0';
        return WORKLOAD_ERR_CAP;
    }
    int expect_hit = shared && c->prefix_len_tokens > 0 && g->variant_used[variant];
    if (shared)
        g->variant_used[variant] = 1;
    if (info) {
        info->i_request = i;
        info->variant = variant;
        info->expect_hit = expect_hit;
        info->n_prefix_tokens = c->prefix_len_tokens;
        info->n_suffix_tokens = c->suffix_len_tokens;
    }
    g->n_made++;
    g->n_shared += (uint64_t)shared;
    g->n_expect_hit += (uint64_t)expect_hit;
    return WORKLOAD_OK;
}
