/* tokenizer: one token per byte, detokenization, and streaming UTF-8 hold-back.
 * Three vocabularies map onto the same byte-level scheme: slmprobe's own (ids 0..255 are the
 * bytes), llama.cpp "llama" SPM vocabularies (byte-fallback tokens "<0xXX>", U+2581 for space),
 * and "gpt2" byte-level BPE vocabularies (each byte is the token whose text is that byte's
 * character in GPT-2's bytes_to_unicode table). No merges are applied, ever: the prompt's token
 * count is its byte count. */
#include "engine/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int tokenizer_init_from_vocab(struct tokenizer *t, const char *kind_name, int n_vocab,
                              const char *const *text, const float *score, const int32_t *type,
                              int bos_id, int eos_id, char *err, size_t err_len)
{
    enum tok_kind kind;
    if (!strcmp(kind_name, "llama")) {
        kind = TOK_KIND_LLAMA_SPM;
    } else if (!strcmp(kind_name, "gpt2")) {
        kind = TOK_KIND_GPT2;
    } else {
        memset(t, 0, sizeof *t);
        snprintf(err, err_len, "unsupported tokenizer model '%s' (supported: llama, gpt2)",
                 kind_name);
        return -1;
    }
    if (n_vocab < 1 || n_vocab > TOK_MAX_VOCAB) {
        memset(t, 0, sizeof *t);
        snprintf(err, err_len, "vocabulary size %d out of range [1, %d]", n_vocab, TOK_MAX_VOCAB);
        return -1;
    }
    if (bos_id < -1 || bos_id >= n_vocab || eos_id < -1 || eos_id >= n_vocab) {
        memset(t, 0, sizeof *t);
        snprintf(err, err_len, "BOS/EOS id (%d/%d) outside the vocabulary of %d tokens", bos_id,
                 eos_id, n_vocab);
        return -1;
    }
    tok_alloc(t, n_vocab);
    t->kind = kind;
    t->bos_id = bos_id;
    t->eos_id = eos_id;
    uint32_t cp_of[256];
    int16_t byte_of_cp[512];
    gpt2_byte_to_cp(cp_of);
    for (int i = 0; i < 512; i++)
        byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++)
        byte_of_cp[cp_of[b]] = (int16_t)b;

    for (int id = 0; id < n_vocab; id++) {
        const char *tx = text[id] ? text[id] : "";
        t->text[id] = xstrdup(tx);
        t->score[id] = score ? score[id] : 0.0f;
        int32_t ty = type ? type[id] : TOK_TYPE_NORMAL;
        if (!type && kind == TOK_KIND_LLAMA_SPM && spm_byte_of(tx) >= 0)
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
    int ids[2] = {bos_id, eos_id};
    for (int k = 0; k < 2; k++)
        if (ids[k] >= 0 && t->type[ids[k]] != TOK_TYPE_BYTE)
            set_piece(t, ids[k], "", 0);
    for (int b = 0; b < 256; b++) {
        if (t->byte_to_id[b] < 0) {
            if (kind == TOK_KIND_LLAMA_SPM)
                snprintf(err, err_len,
                         "vocabulary has no byte token <0x%02X> (SPM vocabularies need byte "
                         "fallback tokens)",
                         b);
            else
                snprintf(err, err_len,
                         "gpt2 vocabulary has no token for byte 0x%02X (U+%04X in "
                         "bytes_to_unicode)",
                         b, (unsigned)cp_of[b]);
            tokenizer_free(t);
            return -1;
        }
    }
    /* slmprobe's own layout: bytes at ids 0..255 in order, then <s>, </s>. */
    if (kind == TOK_KIND_LLAMA_SPM && n_vocab >= 258 && bos_id == 256 && eos_id == 257 &&
        !strcmp(t->text[256], "<s>") && !strcmp(t->text[257], "</s>")) {
        int same = 1;
        for (int b = 0; b < 256 && same; b++)
            same = t->byte_to_id[b] == b;
        if (same)
            t->kind = TOK_KIND_SLM;
    }
    return 0;
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
    memset(t, 0, sizeof *t);
}

size_t tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, int32_t *out,
                        size_t max_out)
{
    size_t n = len < max_out ? len : max_out;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n; i++)
        out[i] = t->byte_to_id[s[i]];
    return len;
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
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *p = tokenizer_piece(t, ids[i], &len);
        if (!p) /* out of range: contributes nothing (callers validate ids first) */
            continue;
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
