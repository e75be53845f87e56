/* tokenizer: encoding, detokenization, and streaming UTF-8 hold-back. slmprobe's own vocabulary
 * is one token per byte. "gpt2" vocabularies are byte-level BPE as llama.cpp and Hugging Face do
 * it: special tokens split out, the pre-tokenizer cuts words (tok_pretok), each word's bytes (as
 * their bytes_to_unicode tokens) merged by rank. "llama" vocabularies are SentencePiece BPE as
 * llama.cpp's llm_tokenizer_spm: a space prefix, characters merged by the score of the merged
 * token, characters without a token as <0xNN> byte tokens. Pieces (the bytes a token stands for)
 * are what both the merges and the decoder work on; one heap-driven merge loop serves both. */
#include "engine/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define TOK_MAX_VOCAB (1 << 22)

static const char spm_space[] = "\xe2\x96\x81"; /* U+2581 LOWER ONE EIGHTH BLOCK */

/* ---- default vocabulary ---- */

static const char syl_cons[] = "bcdfghjklmnprstvwz"; /* 18 */
static const char syl_vow[] = "aeiou";                /* 5 */
#define N_SYL 90

/* Word k (k >= 0) in bijective base-90 over consonant-vowel syllables: distinct k give distinct
 * words, and every word is letters only. Writes at most 2 * 6 + 1 bytes for k < 90^6. */
static size_t syl_word(uint64_t k, char *out)
{
    char tmp[32];
    size_t n = 0;
    uint64_t x = k + 1;
    while (x && n + 2 < sizeof tmp) {
        x -= 1;
        unsigned s = (unsigned)(x % N_SYL);
        tmp[n++] = syl_vow[s % 5];
        tmp[n++] = syl_cons[s / 5];
        x /= N_SYL;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
    return n;
}

/* Piece of default token id >= 258: j = id - 258; every 8th is a word with punctuation
 * ("kato," / "mer."), the others alternate " word" and "word". All distinct, printable ASCII. */
static size_t default_piece(int id, char *out)
{
    uint64_t j = (uint64_t)(id - 258);
    size_t n = 0;
    if (j % 8 == 7) {
        uint64_t a = j / 8;
        n = syl_word(a, out);
        out[n++] = (a % 2) ? '.' : ',';
        out[n] = 0;
        return n;
    }
    uint64_t m = j / 8 * 7 + j % 8;
    if (m % 2 == 0)
        out[n++] = ' ';
    n += syl_word(m / 2, out + n);
    return n;
}

/* GGUF text of a piece: ' ' written as U+2581 (SPM convention). */
static char *spm_text_of(const char *piece, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += piece[i] == ' ' ? 3 : 1;
    char *s = xmalloc(n + 1);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (piece[i] == ' ') {
            memcpy(s + k, spm_space, 3);
            k += 3;
        } else {
            s[k++] = piece[i];
        }
    }
    s[k] = 0;
    return s;
}

static void tok_alloc(struct tokenizer *t, int n_vocab)
{
    memset(t, 0, sizeof *t);
    t->n_vocab = n_vocab;
    t->piece = xcalloc((size_t)n_vocab, sizeof *t->piece);
    t->piece_len = xcalloc((size_t)n_vocab, sizeof *t->piece_len);
    t->text = xcalloc((size_t)n_vocab, sizeof *t->text);
    t->score = xcalloc((size_t)n_vocab, sizeof *t->score);
    t->type = xcalloc((size_t)n_vocab, sizeof *t->type);
    for (int b = 0; b < 256; b++)
        t->byte_to_id[b] = -1;
}

static void set_piece(struct tokenizer *t, int id, const char *p, size_t len)
{
    free(t->piece[id]);
    t->piece[id] = xstrndup(p, len);
    t->piece_len[id] = (uint32_t)len;
}

int tokenizer_init_default(struct tokenizer *t, int n_vocab)
{
    if (n_vocab < 258 || n_vocab > TOK_MAX_VOCAB) {
        memset(t, 0, sizeof *t);
        return -1;
    }
    tok_alloc(t, n_vocab);
    t->kind = TOK_KIND_SLM;
    t->bos_id = 256;
    t->eos_id = 257;
    char tmp[32];
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        snprintf(tmp, sizeof tmp, "<0x%02X>", b);
        t->text[b] = xstrdup(tmp);
        set_piece(t, b, &c, 1);
        t->type[b] = TOK_TYPE_BYTE;
        t->byte_to_id[b] = b;
    }
    t->text[256] = xstrdup("<s>");
    t->text[257] = xstrdup("</s>");
    for (int id = 256; id < 258; id++) {
        set_piece(t, id, "", 0);
        t->type[id] = TOK_TYPE_CONTROL;
    }
    for (int id = 258; id < n_vocab; id++) {
        size_t n = default_piece(id, tmp);
        set_piece(t, id, tmp, n);
        t->text[id] = spm_text_of(tmp, n);
        t->type[id] = TOK_TYPE_NORMAL;
        t->score[id] = -(float)id;
    }
    return 0;
}

/* ---- vocabularies from files ---- */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100.. in byte order. */
static void gpt2_byte_to_cp(uint32_t cp_of[256])
{
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        cp_of[b] = keep ? (uint32_t)b : next++;
    }
}

/* Decodes one UTF-8 code point from s[0..n) (leniently: structure only). Returns its length, or
 * 0 if s does not start with a well-formed sequence. */
static size_t utf8_decode1(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (!n)
        return 0;
    unsigned char c = s[0];
    size_t len;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

/* "<0xAB>" -> 0xAB, or -1. */
static int spm_byte_of(const char *s)
{
    if (strlen(s) != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static void spm_piece(struct tokenizer *t, int id, const char *text)
{
    size_t len = strlen(text);
    char *p = xmalloc(len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && !memcmp(text + i, spm_space, 3)) {
            p[n++] = ' ';
            i += 3;
        } else {
            p[n++] = text[i++];
        }
    }
    p[n] = 0;
    free(t->piece[id]);
    t->piece[id] = p;
    t->piece_len[id] = (uint32_t)n;
}

static void gpt2_piece(struct tokenizer *t, int id, const char *text, const int16_t *byte_of_cp)
{
    size_t len = strlen(text);
    char *p = xmalloc(len + 1);
    size_t n = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = utf8_decode1(s + i, len - i, &cp);
        if (k && cp < 512 && byte_of_cp[cp] >= 0) {
            p[n++] = (char)byte_of_cp[cp];
            i += k;
        } else if (k) { /* not a byte character: keep its UTF-8 as is */
            memcpy(p + n, s + i, k);
            n += k;
            i += k;
        } else {
            p[n++] = (char)s[i++];
        }
    }
    p[n] = 0;
    free(t->piece[id]);
    t->piece[id] = p;
    t->piece_len[id] = (uint32_t)n;
}

/* ---- hash tables (open addressing, power-of-two capacity, value id + 1, 0 = empty) ---- */

static uint32_t fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    return h;
}

static size_t hash_cap_for(size_t n)
{
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    return cap;
}

/* Key bytes of id in a string table: pieces (decoded bytes) or texts (as stored). */
struct str_keys {
    char **s;
    const uint32_t *len; /* NULL: strlen */
};

static size_t key_len(const struct str_keys *k, int id)
{
    return k->len ? k->len[id] : strlen(k->s[id]);
}

static int str_find(const uint32_t *h, size_t cap, const struct str_keys *k, const void *p,
                    size_t n)
{
    if (!h)
        return -1;
    for (size_t i = fnv1a(p, n) & (cap - 1);; i = (i + 1) & (cap - 1)) {
        if (!h[i])
            return -1;
        int id = (int)h[i] - 1;
        if (key_len(k, id) == n && !memcmp(k->s[id], p, n))
            return id;
    }
}

/* Inserts id unless its key is present (the first insert of a key wins). */
static void str_insert(uint32_t *h, size_t cap, const struct str_keys *k, int id)
{
    size_t n = key_len(k, id);
    if (str_find(h, cap, k, k->s[id], n) >= 0)
        return;
    size_t i = fnv1a(k->s[id], n) & (cap - 1);
    while (h[i])
        i = (i + 1) & (cap - 1);
    h[i] = (uint32_t)id + 1;
}

static int piece_find(const struct tokenizer *t, const void *p, size_t n)
{
    struct str_keys k = {t->piece, t->piece_len};
    return str_find(t->piece_hash, t->piece_hash_cap, &k, p, n);
}

static uint32_t pair_hash(int32_t a, int32_t b)
{
    uint32_t x[2] = {(uint32_t)a, (uint32_t)b};
    return fnv1a(x, sizeof x);
}

static int merge_find(const struct tokenizer *t, int32_t a, int32_t b)
{
    if (!t->merge_hash)
        return -1;
    size_t m = t->merge_hash_cap - 1;
    for (size_t i = pair_hash(a, b) & m;; i = (i + 1) & m) {
        uint32_t v = t->merge_hash[i];
        if (!v)
            return -1;
        if (t->merge_a[v - 1] == a && t->merge_b[v - 1] == b)
            return (int)v - 1;
    }
}

/* ---- building ---- */

static int is_special_type(int32_t ty)
{
    return ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED || ty == TOK_TYPE_UNKNOWN;
}

static void build_piece_hash(struct tokenizer *t)
{
    t->piece_hash_cap = hash_cap_for((size_t)t->n_vocab);
    t->piece_hash = xcalloc(t->piece_hash_cap, sizeof *t->piece_hash);
    struct str_keys k = {t->piece, t->piece_len};
    for (int pass = 0; pass < 2; pass++) /* normal tokens first, byte tokens only where free */
        for (int id = 0; id < t->n_vocab; id++)
            if (t->piece_len[id] && !is_special_type(t->type[id]) &&
                (t->type[id] == TOK_TYPE_BYTE) == pass)
                str_insert(t->piece_hash, t->piece_hash_cap, &k, id);
}

static void build_specials(struct tokenizer *t)
{
    static const char *const eog_names[] = {"<|im_end|>", "<|end|>", "<|endoftext|>",
                                            "<|eot_id|>", "<|eom_id|>", "</s>", "<end_of_turn>"};
    t->special = xcalloc((size_t)t->n_vocab, sizeof *t->special);
    for (int id = 0; id < t->n_vocab; id++) {
        if (!is_special_type(t->type[id]) || !t->text[id][0])
            continue;
        t->special[t->n_special++] = id;
        unsigned char c0 = (unsigned char)t->text[id][0];
        t->special_first[c0 >> 3] |= (uint8_t)(1u << (c0 & 7));
        for (size_t k = 0; k < sizeof eog_names / sizeof *eog_names; k++)
            if (t->type[id] != TOK_TYPE_UNKNOWN && !strcmp(t->text[id], eog_names[k]) &&
                t->n_eog < 8 && !tokenizer_is_eog(t, id))
                t->eog[t->n_eog++] = id;
    }
    for (int i = 1; i < t->n_special; i++) { /* insertion sort: longest text first, then id */
        int32_t id = t->special[i];
        size_t n = strlen(t->text[id]);
        int j = i;
        for (; j > 0 && strlen(t->text[t->special[j - 1]]) < n; j--)
            t->special[j] = t->special[j - 1];
        t->special[j] = id;
    }
}

static int build_merges(struct tokenizer *t, const char *const *merges, size_t n, char *err,
                        size_t err_len)
{
    if (n > (size_t)TOK_MAX_VOCAB * 4) {
        snprintf(err, err_len, "%zu merges: too many", n);
        return -1;
    }
    struct str_keys k = {t->text, NULL};
    size_t tcap = hash_cap_for((size_t)t->n_vocab);
    uint32_t *th = xcalloc(tcap, sizeof *th);
    for (int id = 0; id < t->n_vocab; id++)
        str_insert(th, tcap, &k, id);
    t->merge_a = xcalloc(n ? n : 1, sizeof *t->merge_a);
    t->merge_b = xcalloc(n ? n : 1, sizeof *t->merge_b);
    t->merge_res = xcalloc(n ? n : 1, sizeof *t->merge_res);
    t->merge_hash_cap = hash_cap_for(n);
    t->merge_hash = xcalloc(t->merge_hash_cap, sizeof *t->merge_hash);
    char *cat = NULL;
    int rc = -1;
    size_t n_skipped = 0;
    for (size_t i = 0; i < n; i++) {
        const char *m = merges[i] ? merges[i] : "";
        const char *sp = m[0] ? strchr(m + 1, ' ') : NULL;
        if (!sp) {
            snprintf(err, err_len, "merge %zu ('%.40s') is not 'A B'", i, m);
            goto done;
        }
        size_t la = (size_t)(sp - m), lb = strlen(sp + 1);
        cat = xrealloc(cat, la + lb + 1);
        memcpy(cat, m, la);
        memcpy(cat + la, sp + 1, lb + 1);
        int a = str_find(th, tcap, &k, m, la), b = str_find(th, tcap, &k, sp + 1, lb);
        int r = str_find(th, tcap, &k, cat, la + lb);
        if (a < 0 || b < 0 || r < 0) { /* unusable, as in llama.cpp: counted, then warned */
            n_skipped++;
            continue;
        }
        if (merge_find(t, a, b) >= 0)
            continue; /* a repeated pair keeps its first (lowest) rank */
        int j = t->n_merges++;
        t->merge_a[j] = a;
        t->merge_b[j] = b;
        t->merge_res[j] = r;
        size_t mask = t->merge_hash_cap - 1, h = pair_hash(a, b) & mask;
        while (t->merge_hash[h])
            h = (h + 1) & mask;
        t->merge_hash[h] = (uint32_t)j + 1;
    }
    if (n_skipped)
        log_warn("tokenizer", "%zu of %zu merges name tokens not in the vocabulary; ignored",
                 n_skipped, n);
    rc = 0;
done:
    free(cat);
    free(th);
    return rc;
}

static int vocab_fail(struct tokenizer *t, int allocated)
{
    if (allocated)
        tokenizer_free(t);
    else
        memset(t, 0, sizeof *t);
    return -1;
}

/* Pieces, types and byte_to_id of every token; 0 or -1 with err (a byte with no token). */
static int build_pieces(struct tokenizer *t, const struct tok_vocab *v, char *err,
                        size_t err_len)
{
    uint32_t cp_of[256];
    int16_t byte_of_cp[512];
    gpt2_byte_to_cp(cp_of);
    for (int i = 0; i < 512; i++)
        byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++)
        byte_of_cp[cp_of[b]] = (int16_t)b;
    enum tok_kind kind = t->kind;
    for (int id = 0; id < t->n_vocab; id++) {
        const char *tx = v->text[id] ? v->text[id] : "";
        t->text[id] = xstrdup(tx);
        t->score[id] = v->score ? v->score[id] : 0.0f;
        int32_t ty = v->type ? v->type[id] : TOK_TYPE_NORMAL;
        if (!v->type && kind == TOK_KIND_LLAMA_SPM && spm_byte_of(tx) >= 0)
            ty = TOK_TYPE_BYTE;
        t->type[id] = ty;
        if (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNUSED) {
            set_piece(t, id, "", 0);
            continue;
        }
        if (kind == TOK_KIND_LLAMA_SPM) {
            int b = ty == TOK_TYPE_BYTE ? spm_byte_of(tx) : -1;
            if (b >= 0) {
                char c = (char)b;
                set_piece(t, id, &c, 1);
                if (t->byte_to_id[b] < 0)
                    t->byte_to_id[b] = id;
            } else {
                spm_piece(t, id, tx);
            }
        } else if (ty == TOK_TYPE_USER_DEFINED) {
            set_piece(t, id, tx, strlen(tx));
        } else {
            gpt2_piece(t, id, tx, byte_of_cp);
            uint32_t cp;
            size_t k = utf8_decode1((const unsigned char *)tx, strlen(tx), &cp);
            if (k && k == strlen(tx) && cp < 512 && byte_of_cp[cp] >= 0 &&
                t->byte_to_id[byte_of_cp[cp]] < 0)
                t->byte_to_id[byte_of_cp[cp]] = id;
        }
    }
    /* BOS/EOS contribute no text even when a file marks them NORMAL. */
    int ids[2] = {v->bos_id, v->eos_id};
    for (int k = 0; k < 2; k++)
        if (ids[k] >= 0 && t->type[ids[k]] != TOK_TYPE_BYTE)
            set_piece(t, ids[k], "", 0);
    for (int b = 0; b < 256; b++) {
        if (t->byte_to_id[b] >= 0)
            continue;
        if (kind == TOK_KIND_LLAMA_SPM)
            snprintf(err, err_len,
                     "vocabulary has no byte token <0x%02X> (SPM vocabularies need byte fallback "
                     "tokens)", b);
        else
            snprintf(err, err_len,
                     "gpt2 vocabulary has no token for byte 0x%02X (U+%04X in bytes_to_unicode)",
                     b, (unsigned)cp_of[b]);
        return -1;
    }
    return 0;
}

/* slmprobe's own layout: bytes at ids 0..255 in order, then <s>, </s>. */
static int is_slm_layout(const struct tokenizer *t)
{
    if (t->kind != TOK_KIND_LLAMA_SPM || t->n_vocab < 258 || t->bos_id != 256 ||
        t->eos_id != 257 || strcmp(t->text[256], "<s>") || strcmp(t->text[257], "</s>"))
        return 0;
    for (int b = 0; b < 256; b++)
        if (t->byte_to_id[b] != b)
            return 0;
    return 1;
}

int tokenizer_init_vocab(struct tokenizer *t, const struct tok_vocab *v, char *err,
                         size_t err_len)
{
    enum tok_kind kind;
    enum tok_pre pre = TOK_PRE_DEFAULT;
    int n_vocab = v->n_vocab;
    if (!strcmp(v->kind_name, "llama")) {
        kind = TOK_KIND_LLAMA_SPM;
    } else if (!strcmp(v->kind_name, "gpt2")) {
        kind = TOK_KIND_GPT2;
    } else {
        snprintf(err, err_len, "unsupported tokenizer model '%s' (supported: llama, gpt2)",
                 v->kind_name);
        return vocab_fail(t, 0);
    }
    if (kind == TOK_KIND_GPT2 && v->pre_name && tok_pre_from_name(v->pre_name, &pre)) {
        snprintf(err, err_len,
                 "unsupported pre-tokenizer '%s' (supported: default, llama-bpe, qwen2)",
                 v->pre_name);
        return vocab_fail(t, 0);
    }
    if (n_vocab < 1 || n_vocab > TOK_MAX_VOCAB) {
        snprintf(err, err_len, "vocabulary size %d out of range [1, %d]", n_vocab, TOK_MAX_VOCAB);
        return vocab_fail(t, 0);
    }
    int ids[3] = {v->bos_id, v->eos_id, v->eot_id};
    for (int k = 0; k < 3; k++) {
        if (ids[k] < -1 || ids[k] >= n_vocab) {
            snprintf(err, err_len, "BOS/EOS/EOT id (%d/%d/%d) outside the vocabulary of %d tokens",
                     v->bos_id, v->eos_id, v->eot_id, n_vocab);
            return vocab_fail(t, 0);
        }
    }
    tok_alloc(t, n_vocab);
    t->kind = kind;
    t->pre = pre;
    t->bos_id = v->bos_id;
    t->eos_id = v->eos_id;
    if (build_pieces(t, v, err, err_len))
        return vocab_fail(t, 1);
    if (is_slm_layout(t)) {
        t->kind = TOK_KIND_SLM;
        return 0;
    }
    t->add_bos = v->add_bos >= 0 ? v->add_bos : kind == TOK_KIND_LLAMA_SPM;
    t->add_space_prefix = kind == TOK_KIND_LLAMA_SPM;
    if (v->chat_template)
        t->chat_template = xstrdup(v->chat_template);
    for (int k = 1; k < 3; k++)
        if (ids[k] >= 0 && !tokenizer_is_eog(t, ids[k]))
            t->eog[t->n_eog++] = ids[k];
    build_piece_hash(t);
    build_specials(t);
    if (kind == TOK_KIND_GPT2 && build_merges(t, v->merges, v->merges ? v->n_merges : 0, err,
                                              err_len))
        return vocab_fail(t, 1);
    return 0;
}

int tokenizer_init_from_vocab(struct tokenizer *t, const char *kind_name, int n_vocab,
                              const char *const *text, const float *score, const int32_t *type,
                              int bos_id, int eos_id, char *err, size_t err_len)
{
    struct tok_vocab v = {.kind_name = kind_name, .n_vocab = n_vocab, .text = text,
                          .score = score, .type = type, .bos_id = bos_id, .eos_id = eos_id,
                          .eot_id = -1, .add_bos = -1};
    return tokenizer_init_vocab(t, &v, err, err_len);
}

void tokenizer_free(struct tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_vocab; i++) {
        if (t->piece)
            free(t->piece[i]);
        if (t->text)
            free(t->text[i]);
    }
    free(t->piece);
    free(t->piece_len);
    free(t->text);
    free(t->score);
    free(t->type);
    free(t->merge_a);
    free(t->merge_b);
    free(t->merge_res);
    free(t->merge_hash);
    free(t->piece_hash);
    free(t->special);
    free(t->chat_template);
    memset(t, 0, sizeof *t);
}

int tokenizer_is_eog(const struct tokenizer *t, int id)
{
    if (id < 0)
        return 0;
    if (id == t->eos_id)
        return 1;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return 1;
    return 0;
}

/* ---- encoding ---- */

struct tok_sym {
    uint32_t off, len; /* bytes of the word */
    int32_t id;        /* token, or -1 (SPM: a character with no token; bytes at the end) */
    int32_t prev, next;
};

struct tok_cand { /* a possible merge of sym[left] and its right neighbour */
    double prio;  /* BPE: -rank; SPM: the merged token's score */
    int32_t left, right, result;
    uint32_t left_len, size;
};

struct enc {
    const struct tokenizer *t;
    struct tok_sym *sym;
    struct tok_cand *heap;
    size_t n_heap;
    int32_t *ids;
    size_t n_ids, cap_ids;
};

static void emit(struct enc *e, int32_t id)
{
    if (e->n_ids == e->cap_ids) {
        e->cap_ids = e->cap_ids ? e->cap_ids * 2 : 64;
        e->ids = xrealloc(e->ids, e->cap_ids * sizeof *e->ids);
    }
    e->ids[e->n_ids++] = id;
}

static int cand_before(const struct tok_cand *a, const struct tok_cand *b)
{
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

static void heap_push(struct enc *e, const struct tok_cand *c)
{
    size_t i = e->n_heap++;
    e->heap[i] = *c;
    while (i && cand_before(&e->heap[i], &e->heap[(i - 1) / 2])) {
        struct tok_cand tmp = e->heap[i];
        e->heap[i] = e->heap[(i - 1) / 2];
        e->heap[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

static struct tok_cand heap_pop(struct enc *e)
{
    struct tok_cand top = e->heap[0];
    e->heap[0] = e->heap[--e->n_heap];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->n_heap && cand_before(&e->heap[l], &e->heap[m]))
            m = l;
        if (r < e->n_heap && cand_before(&e->heap[r], &e->heap[m]))
            m = r;
        if (m == i)
            break;
        struct tok_cand tmp = e->heap[i];
        e->heap[i] = e->heap[m];
        e->heap[m] = tmp;
        i = m;
    }
    return top;
}

/* Queues the merge of sym[l] with sym[r] if the vocabulary has one. */
static void try_pair(struct enc *e, const unsigned char *w, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    const struct tokenizer *t = e->t;
    const struct tok_sym *a = &e->sym[l], *b = &e->sym[r];
    struct tok_cand c = {0, l, r, -1, a->len, a->len + b->len};
    if (t->kind == TOK_KIND_GPT2) {
        int m = a->id >= 0 && b->id >= 0 ? merge_find(t, a->id, b->id) : -1;
        if (m < 0)
            return;
        c.prio = -(double)m;
        c.result = t->merge_res[m];
    } else {
        c.result = piece_find(t, w + a->off, c.size);
        if (c.result < 0)
            return;
        c.prio = t->score[c.result];
    }
    heap_push(e, &c);
}

/* BPE (gpt2: bytes as initial symbols, merges by rank) or SPM (characters, merges by score) over
 * w[0..n), then emits the symbols (SPM characters without a token as byte tokens). */
static void merge_run(struct enc *e, const unsigned char *w, size_t n)
{
    const struct tokenizer *t = e->t;
    int32_t n_sym = 0;
    for (size_t i = 0; i < n;) {
        size_t k = 1;
        if (t->kind == TOK_KIND_LLAMA_SPM) {
            unsigned char c = w[i];
            k = c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
            if (k > n - i)
                k = n - i;
        }
        struct tok_sym *s = &e->sym[n_sym];
        s->off = (uint32_t)i;
        s->len = (uint32_t)k;
        s->id = t->kind == TOK_KIND_GPT2 ? t->byte_to_id[w[i]] : piece_find(t, w + i, k);
        s->prev = n_sym - 1;
        s->next = i + k < n ? n_sym + 1 : -1;
        n_sym++;
        i += k;
    }
    e->n_heap = 0;
    for (int32_t i = 0; i + 1 < n_sym; i++)
        try_pair(e, w, i, i + 1);
    while (e->n_heap) {
        struct tok_cand c = heap_pop(e);
        struct tok_sym *a = &e->sym[c.left], *b = &e->sym[c.right];
        if (a->len != c.left_len || a->next != c.right || a->len + b->len != c.size)
            continue; /* stale: one side has merged since */
        a->len += b->len;
        a->id = c.result;
        a->next = b->next;
        if (b->next >= 0)
            e->sym[b->next].prev = c.left;
        b->len = 0;
        try_pair(e, w, a->prev, c.left);
        try_pair(e, w, c.left, a->next);
    }
    for (int32_t i = n_sym ? 0 : -1; i >= 0; i = e->sym[i].next) {
        const struct tok_sym *s = &e->sym[i];
        if (s->id >= 0) {
            emit(e, s->id);
        } else {
            for (uint32_t j = 0; j < s->len; j++)
                emit(e, t->byte_to_id[w[s->off + j]]);
        }
    }
}

static void gpt2_fragment(struct enc *e, const char *s, size_t len, size_t *ends)
{
    const struct tokenizer *t = e->t;
    size_t n_nfc = 0;
    char *nfc = t->pre == TOK_PRE_QWEN2 ? tok_nfc(s, len, &n_nfc) : NULL;
    struct tok_sym *sym0 = e->sym;
    struct tok_cand *heap0 = e->heap;
    if (nfc) { /* the caller's arrays were sized for the original text: own ones for this one */
        s = nfc;
        len = n_nfc;
        ends = xmalloc((len + 1) * sizeof *ends);
        e->sym = xmalloc((len + 1) * sizeof *e->sym);
        e->heap = xmalloc((3 * len + 4) * sizeof *e->heap);
    }
    size_t n_words = tok_pretok_split(t->pre, s, len, ends, len);
    for (size_t i = 0, from = 0; i < n_words; from = ends[i++]) {
        const unsigned char *w = (const unsigned char *)s + from;
        size_t n = ends[i] - from;
        int whole = t->pre == TOK_PRE_LLAMA3 ? piece_find(t, w, n) : -1; /* ignore_merges */
        if (whole >= 0)
            emit(e, whole);
        else
            merge_run(e, w, n);
    }
    if (nfc) {
        free(ends);
        free(e->sym);
        free(e->heap);
        e->sym = sym0;
        e->heap = heap0;
    }
    free(nfc);
}

/* Id of the longest special token at s (its length in *n_out), or -1. */
static int special_at(const struct tokenizer *t, const char *s, size_t len, size_t *n_out)
{
    unsigned char c0 = (unsigned char)s[0];
    if (!(t->special_first[c0 >> 3] & (1u << (c0 & 7))))
        return -1;
    for (int i = 0; i < t->n_special; i++) {
        const char *tx = t->text[t->special[i]];
        size_t n = strlen(tx);
        if (n <= len && !memcmp(s, tx, n)) {
            *n_out = n;
            return t->special[i];
        }
    }
    return -1;
}

size_t tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, int32_t *out,
                        size_t max_out)
{
    if (t->kind == TOK_KIND_SLM) {
        size_t n = len < max_out ? len : max_out;
        const unsigned char *s = (const unsigned char *)text;
        for (size_t i = 0; i < n; i++)
            out[i] = t->byte_to_id[s[i]];
        return len;
    }
    struct enc e = {t, NULL, NULL, 0, NULL, 0, 0};
    e.sym = xmalloc((len + 2) * sizeof *e.sym);
    e.heap = xmalloc((3 * len + 7) * sizeof *e.heap);
    size_t *ends = xmalloc((len + 1) * sizeof *ends);
    char *spm = t->kind == TOK_KIND_LLAMA_SPM ? xmalloc(len + 2) : NULL;
    int prev_special = 1;
    for (size_t i = 0, seg = 0; i <= len;) {
        size_t n_sp = 0;
        int sid = i < len ? special_at(t, text + i, len - i, &n_sp) : -1;
        if (sid < 0 && i < len) {
            i++;
            continue;
        }
        if (i > seg && spm) {
            size_t k = 0;
            if (t->add_space_prefix && prev_special)
                spm[k++] = ' ';
            memcpy(spm + k, text + seg, i - seg);
            merge_run(&e, (const unsigned char *)spm, k + i - seg);
        } else if (i > seg) {
            gpt2_fragment(&e, text + seg, i - seg, ends);
        }
        prev_special = i > seg ? 0 : prev_special;
        if (sid < 0)
            break;
        emit(&e, sid);
        prev_special = 1;
        i += n_sp;
        seg = i;
    }
    size_t n = e.n_ids;
    if (n && max_out)
        memcpy(out, e.ids, (n < max_out ? n : max_out) * sizeof *out);
    free(e.ids);
    free(e.sym);
    free(e.heap);
    free(ends);
    free(spm);
    return n;
}

const char *tokenizer_piece(const struct tokenizer *t, int id, size_t *len_out)
{
    if (id < 0 || id >= t->n_vocab) {
        if (len_out)
            *len_out = 0;
        return NULL;
    }
    if (len_out)
        *len_out = t->piece_len[id];
    return t->piece[id];
}

enum buf_status tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n,
                                 struct buf *out)
{
    struct utf8_stream u = {0};
    int strip = t->kind == TOK_KIND_LLAMA_SPM && t->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *p = tokenizer_piece(t, ids[i], &len);
        if (!p) /* out of range: contributes nothing (callers validate ids first) */
            continue;
        if (strip && len) { /* the space the encoder put before the text */
            strip = 0;
            if (p[0] == ' ') {
                p++;
                len--;
            }
        }
        enum buf_status st = utf8_stream_feed(&u, p, len, out);
        if (st)
            return st;
    }
    return utf8_stream_flush(&u, out);
}

/* ---- streaming UTF-8 ---- */

static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

/* Valid range of the second byte given the lead (Unicode Table 3-7): excludes overlongs,
 * surrogates (ED A0..BF) and code points above U+10FFFF. */
static int second_ok(unsigned char lead, unsigned char b)
{
    switch (lead) {
    case 0xe0: return b >= 0xa0 && b <= 0xbf;
    case 0xed: return b >= 0x80 && b <= 0x9f;
    case 0xf0: return b >= 0x90 && b <= 0xbf;
    case 0xf4: return b >= 0x80 && b <= 0x8f;
    default: return b >= 0x80 && b <= 0xbf;
    }
}

enum buf_status utf8_stream_feed(struct utf8_stream *u, const char *in, size_t n, struct buf *out)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        if (u->n_pending == 0) {
            if (b < 0x80) {
                size_t j = i + 1; /* emit the whole ASCII run at once */
                while (j < n && s[j] < 0x80)
                    j++;
                if (buf_append(out, s + i, j - i))
                    return BUF_ERR_CAP;
                i = j;
                continue;
            }
            int need = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3
                     : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
            if (!need) { /* continuation byte out of place, C0/C1, F5..FF */
                if (buf_append(out, replacement, 3))
                    return BUF_ERR_CAP;
            } else {
                u->pending[0] = b;
                u->n_pending = 1;
                u->n_need = need;
            }
            i++;
            continue;
        }
        int ok = u->n_pending == 1 ? second_ok(u->pending[0], b) : (b >= 0x80 && b <= 0xbf);
        if (!ok) {
            /* The pending bytes are a maximal invalid subpart: one U+FFFD, then b starts over. */
            u->n_pending = 0;
            u->n_need = 0;
            if (buf_append(out, replacement, 3))
                return BUF_ERR_CAP;
            continue;
        }
        u->pending[u->n_pending++] = b;
        i++;
        if (u->n_pending == u->n_need) {
            int len = u->n_pending;
            u->n_pending = 0;
            u->n_need = 0;
            if (buf_append(out, u->pending, (size_t)len))
                return BUF_ERR_CAP;
        }
    }
    return BUF_OK;
}

enum buf_status utf8_stream_flush(struct utf8_stream *u, struct buf *out)
{
    if (!u->n_pending)
        return BUF_OK;
    u->n_pending = 0;
    u->n_need = 0;
    return buf_append(out, replacement, 3);
}
