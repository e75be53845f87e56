/* tok_pretok: hand-written matchers for the three pre-tokenizer regexes (the same control flow as
 * llama.cpp's unicode_regex_split_custom_gpt2/_llama3, which mirror the regexes' leftmost
 * alternatives), over code points classified by ICU; and NFC through ICU's unorm2. Nothing here
 * allocates per word: one code point array per call. */
#include "engine/tok_pretok.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "util/buf.h"

enum { CF_LETTER = 1, CF_NUMBER = 2, CF_SPACE = 4, CF_VALID = 8 };
#define CP_NONE 0xffffffffu /* out of range / invalid byte */

struct cps {
    uint32_t *cp;  /* code point, or CP_NONE for an invalid byte */
    uint8_t *fl;   /* CF_* */
    size_t *off;   /* byte offset of each code point; off[n] = len */
    size_t n;
};

int tok_pre_from_name(const char *name, enum tok_pre *out)
{
    if (!strcmp(name, "default") || !strcmp(name, "gpt2") || !strcmp(name, "gpt-2"))
        *out = TOK_PRE_DEFAULT;
    else if (!strcmp(name, "llama-bpe") || !strcmp(name, "llama3"))
        *out = TOK_PRE_LLAMA3;
    else if (!strcmp(name, "qwen2"))
        *out = TOK_PRE_QWEN2;
    else
        return -1;
    return 0;
}

const char *tok_pre_str(enum tok_pre p)
{
    switch (p) {
    case TOK_PRE_DEFAULT: return "default";
    case TOK_PRE_LLAMA3: return "llama-bpe";
    case TOK_PRE_QWEN2: return "qwen2";
    }
    return "?";
}

/* Strict UTF-8 decode of one code point; 0 when s does not start with a valid sequence. */
static size_t utf8_strict(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (!len || n < len)
        return 0;
    uint32_t v = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    static const uint32_t min_of[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_of[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static uint8_t cp_flags(uint32_t cp)
{
    if (cp == CP_NONE)
        return CF_VALID;
    uint32_t gc = U_MASK(u_charType((UChar32)cp));
    uint8_t f = CF_VALID;
    if (gc & U_GC_L_MASK)
        f |= CF_LETTER;
    if (gc & U_GC_N_MASK)
        f |= CF_NUMBER;
    if (u_isUWhiteSpace((UChar32)cp))
        f |= CF_SPACE;
    return f;
}

static void cps_decode(struct cps *c, const char *s, size_t len)
{
    c->cp = xmalloc((len + 1) * sizeof *c->cp);
    c->fl = xmalloc(len + 1);
    c->off = xmalloc((len + 1) * sizeof *c->off);
    const unsigned char *u = (const unsigned char *)s;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = utf8_strict(u + i, len - i, &cp);
        if (!k) {
            cp = CP_NONE;
            k = 1;
        }
        c->cp[n] = cp;
        c->fl[n] = cp_flags(cp);
        c->off[n] = i;
        n++;
        i += k;
    }
    c->off[n] = len;
    c->n = n;
}

static void cps_free(struct cps *c)
{
    free(c->cp);
    free(c->fl);
    free(c->off);
}

/* Accessors that read past the end as "nothing" (flags 0, CP_NONE). */
static uint8_t F(const struct cps *c, size_t i) { return i < c->n ? c->fl[i] : 0; }
static uint32_t C(const struct cps *c, size_t i) { return i < c->n ? c->cp[i] : CP_NONE; }
static uint32_t lower_ascii(uint32_t cp) { return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp; }
static int is_rn(uint32_t cp) { return cp == '\r' || cp == '\n'; }
static int is_other(uint8_t f) /* [^\s\p{L}\p{N}] */
{
    return (f & CF_VALID) && !(f & (CF_LETTER | CF_NUMBER | CF_SPACE));
}

/* Length (in code points) of a contraction 's 't 're 've 'm 'll 'd at i, or 0. */
static size_t contraction(const struct cps *c, size_t i, int fold)
{
    if (C(c, i) != '\'' || i + 1 >= c->n)
        return 0;
    uint32_t a = C(c, i + 1), b = C(c, i + 2);
    if (fold) {
        a = lower_ascii(a);
        b = lower_ascii(b);
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* (\s*[\r\n]+ when rn, llama-bpe/qwen2 only) | \s+(?!\S) | \s+ at i; returns the match end,
 * or i when no whitespace is there. */
static size_t whitespace_run(const struct cps *c, size_t i, int rn)
{
    size_t n = 0, last_rn = 0;
    while (F(c, i + n) & CF_SPACE) {
        if (is_rn(C(c, i + n)))
            last_rn = i + n + 1;
        n++;
    }
    if (rn && last_rn)
        return last_rn;
    if (n > 1 && i + n < c->n)
        return i + n - 1;
    return i + n;
}

/* One word of the llama-bpe / qwen2 regex starting at i; returns its end. */
static size_t next_llama3(const struct cps *c, size_t i, size_t max_digits)
{
    size_t k = contraction(c, i, 1);
    if (k)
        return i + k;
    uint32_t cp = C(c, i);
    uint8_t f = F(c, i);
    if (!is_rn(cp) && !(f & CF_NUMBER) && ((f & CF_LETTER) || (F(c, i + 1) & CF_LETTER))) {
        size_t j = i + 1;
        while (F(c, j) & CF_LETTER)
            j++;
        return j;
    }
    if (f & CF_NUMBER) {
        size_t j = i;
        while ((F(c, j) & CF_NUMBER) && j - i < max_digits)
            j++;
        return j;
    }
    size_t j = i + (cp == ' ');
    if (is_other(F(c, j))) {
        while (is_other(F(c, j)))
            j++;
        while (is_rn(C(c, j)))
            j++;
        return j;
    }
    size_t e = whitespace_run(c, i, 1);
    return e > i ? e : i + 1;
}

/* One word of GPT-2's regex starting at i; returns its end. */
static size_t next_gpt2(const struct cps *c, size_t i)
{
    size_t k = contraction(c, i, 0);
    if (k)
        return i + k;
    size_t j = i + (C(c, i) == ' ');
    uint8_t f2 = F(c, j);
    uint8_t cls = f2 & CF_LETTER ? CF_LETTER : f2 & CF_NUMBER ? CF_NUMBER : 0;
    if (cls) {
        while (F(c, j) & cls)
            j++;
        return j;
    }
    if (is_other(f2)) {
        while (is_other(F(c, j)))
            j++;
        return j;
    }
    size_t e = whitespace_run(c, i, 0);
    return e > i ? e : i + 1;
}

size_t tok_pretok_split(enum tok_pre p, const char *s, size_t len, size_t *ends, size_t max_ends)
{
    struct cps c;
    cps_decode(&c, s, len);
    size_t n_words = 0;
    for (size_t i = 0; i < c.n;) {
        size_t e = p == TOK_PRE_DEFAULT ? next_gpt2(&c, i)
                 : next_llama3(&c, i, p == TOK_PRE_QWEN2 ? 1 : 3);
        if (n_words < max_ends)
            ends[n_words] = c.off[e];
        n_words++;
        i = e;
    }
    cps_free(&c);
    return n_words;
}

char *tok_nfc(const char *s, size_t len, size_t *out_len)
{
    int all_ascii = 1;
    for (size_t i = 0; i < len && all_ascii; i++)
        all_ascii = (unsigned char)s[i] < 0x80;
    if (all_ascii || len > (size_t)INT32_MAX / 4)
        return NULL;
    UErrorCode st = U_ZERO_ERROR;
    const UNormalizer2 *nfc = unorm2_getNFCInstance(&st);
    if (U_FAILURE(st))
        return NULL;
    int32_t n16 = 0;
    st = U_ZERO_ERROR;
    u_strFromUTF8(NULL, 0, &n16, s, (int32_t)len, &st); /* preflight; fails on invalid UTF-8 */
    if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st))
        return NULL;
    UChar *u16 = xmalloc(((size_t)n16 + 1) * sizeof *u16);
    UChar *n16buf = NULL;
    char *out = NULL;
    st = U_ZERO_ERROR;
    u_strFromUTF8(u16, n16 + 1, NULL, s, (int32_t)len, &st);
    if (U_FAILURE(st) || unorm2_isNormalized(nfc, u16, n16, &st) || U_FAILURE(st))
        goto done;
    size_t cap16 = (size_t)n16 * 3 + 1; /* NFC grows a string at most 3x */
    n16buf = xmalloc(cap16 * sizeof *n16buf);
    int32_t m16 = unorm2_normalize(nfc, u16, n16, n16buf, (int32_t)cap16, &st);
    if (U_FAILURE(st))
        goto done;
    int32_t n8 = 0;
    u_strToUTF8(NULL, 0, &n8, n16buf, m16, &st);
    if (st != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(st))
        goto done;
    st = U_ZERO_ERROR;
    out = xmalloc((size_t)n8 + 1);
    u_strToUTF8(out, n8 + 1, NULL, n16buf, m16, &st);
    if (U_FAILURE(st)) {
        free(out);
        out = NULL;
        goto done;
    }
    *out_len = (size_t)n8;
done:
    free(u16);
    free(n16buf);
    return out;
}
