/* tok_pretok: the pre-tokenizers of byte-level BPE vocabularies (the regexes llama.cpp and Hugging
 * Face use, implemented by hand over code points) and NFC normalization. The only file that
 * includes ICU (libicu), which supplies the Unicode general categories (\p{L}, \p{N}), White_Space
 * (\s) and NFC. It does not do BPE: it only cuts text into words.
 *
 *   size_t n = tok_pretok_split(TOK_PRE_QWEN2, s, len, ends, max_ends);  // ends[i]: word end */
#ifndef SLM_TOK_PRETOK_H
#define SLM_TOK_PRETOK_H

#include <stddef.h>

enum tok_pre {
    TOK_PRE_DEFAULT = 0, /* "default"/"gpt2": 's|'t|...| ?\p{L}+| ?\p{N}+|... (GPT-2) */
    TOK_PRE_LLAMA3,      /* "llama-bpe": (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|... */
    TOK_PRE_QWEN2,       /* "qwen2": as llama-bpe with \p{N} (one digit per word), input NFC */
};

/* "default", "gpt2", "llama-bpe", "llama3", "qwen2" -> 0 and *out; -1 for other names. */
int tok_pre_from_name(const char *name, enum tok_pre *out);
const char *tok_pre_str(enum tok_pre p); /* the GGUF name: "default", "llama-bpe", "qwen2" */

/* Cuts s[0..len) into words; writes the end offset (bytes) of each of the first max_ends words to
 * ends and returns the number of words (at most len). Invalid UTF-8 bytes are one code point each,
 * of no category (punctuation-like). Any thread. */
size_t tok_pretok_split(enum tok_pre p, const char *s, size_t len, size_t *ends, size_t max_ends);

/* NFC of s[0..len): a malloc'd copy (caller frees) with its length in *out_len, or NULL when s is
 * already NFC or is not valid UTF-8 (then use s as it is). */
char *tok_nfc(const char *s, size_t len, size_t *out_len);

#endif
