/* tokenizer: tokenization and detokenization, and the UTF-8 hold-back used when streaming.
 * slmprobe's own vocabulary (generated models) is byte-level: each byte of a prompt is one token
 * (ids 0..255), which the probes rely on. Vocabularies read from llama.cpp-style GGUF files are
 * real tokenizers: "gpt2" byte-level BPE (tokenizer.ggml.merges, pre-tokenizer tokenizer.ggml.pre:
 * default, llama-bpe, qwen2) and "llama" SentencePiece BPE (scores, <0xNN> byte fallback, a space
 * prefix). Control and user-defined tokens found in the text are encoded as themselves.
 * It does not apply chat templates (chat_format does) nor read files (model_file does). */
#ifndef SLM_TOKENIZER_H
#define SLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/tok_pretok.h"
#include "util/buf.h"

enum tok_kind { TOK_KIND_SLM = 0, TOK_KIND_LLAMA_SPM, TOK_KIND_GPT2 };

/* Token types as stored in GGUF tokenizer.ggml.token_type (llama.cpp's values). */
enum tok_type { TOK_TYPE_NORMAL = 1, TOK_TYPE_UNKNOWN = 2, TOK_TYPE_CONTROL = 3,
                TOK_TYPE_USER_DEFINED = 4, TOK_TYPE_UNUSED = 5, TOK_TYPE_BYTE = 6 };

struct tokenizer {
    enum tok_kind kind;
    int n_vocab;
    int bos_id;
    int eos_id;
    int byte_to_id[256];  /* token id of each byte */
    /* Decoded bytes of each token (what it contributes to output text); owned. */
    char **piece;
    uint32_t *piece_len;
    /* As stored in GGUF (tokenizer.ggml.tokens / scores / token_type); owned. */
    char **text;
    float *score;
    int32_t *type;
    /* Real tokenizers (kind GPT2 / LLAMA_SPM); all owned, all NULL/0 for TOK_KIND_SLM. */
    enum tok_pre pre;
    int add_bos;          /* tokenizer.ggml.add_bos_token */
    int add_space_prefix; /* SPM: a ' ' before the text and after each special token */
    int n_merges;         /* BPE merge i (rank i): merge_a[i] + merge_b[i] -> merge_res[i] */
    int32_t *merge_a, *merge_b, *merge_res;
    uint32_t *merge_hash; size_t merge_hash_cap; /* (a, b) -> merge index + 1; 0 = empty */
    uint32_t *piece_hash; size_t piece_hash_cap; /* piece bytes -> id + 1 (normal tokens) */
    int32_t *special; int n_special; /* control/user-defined/unknown ids, longest text first */
    uint8_t special_first[32];       /* bitmap of the specials' first bytes */
    int32_t eog[8]; int n_eog;       /* ids that end generation (EOS, EOT, <|im_end|>, ...) */
    char *chat_template;             /* tokenizer.chat_template, or NULL */
};

/* A vocabulary as GGUF stores it (arrays are read, not kept). kind_name is tokenizer.ggml.model
 * ("llama" or "gpt2"); pre_name tokenizer.ggml.pre (NULL: "default"); merges "A B" strings in
 * rank order (gpt2; NULL/0 for none); score/type may be NULL; ids -1 for none; add_bos -1 for the
 * kind's default (llama 1, gpt2 0); chat_template may be NULL. */
struct tok_vocab {
    const char *kind_name;
    const char *pre_name;
    int n_vocab;
    const char *const *text;
    const float *score;
    const int32_t *type;
    const char *const *merges;
    size_t n_merges;
    int bos_id, eos_id, eot_id;
    int add_bos;
    const char *chat_template;
};

/* slmprobe's own vocabulary: 256 byte tokens ("<0x00>".."<0xFF>", type BYTE), "<s>" (BOS, 256),
 * "</s>" (EOS, 257), then printable word pieces up to n_vocab (n_vocab >= 258). 0 or -1. */
int tokenizer_init_default(struct tokenizer *t, int n_vocab);

/* From GGUF arrays (copied). kind_name is tokenizer.ggml.model ("llama" or "gpt2").
 * 0, or -1 with err (e.g. no token for some byte). score and type may be NULL (0 and NORMAL; for
 * "llama" with type NULL, "<0xXX>" texts count as BYTE). bos_id/eos_id may be -1 (none). A "llama"
 * vocabulary laid out like tokenizer_init_default's gets kind TOK_KIND_SLM. */
int tokenizer_init_from_vocab(struct tokenizer *t, const char *kind_name, int n_vocab,
                              const char *const *text, const float *score, const int32_t *type,
                              int bos_id, int eos_id, char *err, size_t err_len);

/* The full form: 0, or -1 with err (unknown kind or pre-tokenizer, a merge not "A B", ids out of
 * range, a byte with no token). Merges naming tokens not in the vocabulary are ignored with a
 * warning (llama.cpp loads such files too). tokenizer_init_from_vocab is this without merges. */
int tokenizer_init_vocab(struct tokenizer *t, const struct tok_vocab *v, char *err,
                         size_t err_len);

void tokenizer_free(struct tokenizer *t); /* NULL-safe */

/* 1 if generating id ends a sequence (EOS, EOT, and control tokens named <|im_end|>, <|end|>,
 * <|endoftext|>, <|eot_id|>, </s>). */
int tokenizer_is_eog(const struct tokenizer *t, int id);

/* Encodes text (no BOS added; callers add t->bos_id when t->add_bos). TOK_KIND_SLM: one token per
 * byte. Others: special tokens split out, then BPE/SPM. Writes min(n, max_out) ids and returns
 * n, the exact count (at most len, except that SPM's space prefix may add one token per text
 * fragment). Any thread (t is read only). */
size_t tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, int32_t *out,
                        size_t max_out);

/* Raw bytes of one token (may be a partial UTF-8 sequence), or NULL for an id out of range. */
const char *tokenizer_piece(const struct tokenizer *t, int id, size_t *len_out);

/* Detokenizes ids into out (raw bytes, then made valid UTF-8: invalid sequences become U+FFFD).
 * Returns BUF_OK or BUF_ERR_CAP. Control tokens (BOS/EOS, <|im_end|>) contribute nothing; so do
 * ids outside [0, n_vocab) (callers validate ids first). SPM: the leading space the encoder
 * added is dropped (as Hugging Face's Strip decoder does). */
enum buf_status tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n,
                                 struct buf *out);

/* Streaming UTF-8 hold-back: feed raw token bytes, get only complete valid UTF-8 out. A sequence
 * split across tokens is held until complete; an invalid byte becomes U+FFFD (as vLLM does).
 *
 *   struct utf8_stream u = {0};
 *   utf8_stream_feed(&u, piece, n, &text);   // appends 0 or more complete characters
 *   utf8_stream_flush(&u, &text);            // at end: pending bytes -> U+FFFD */
struct utf8_stream {
    unsigned char pending[4];
    int n_pending;
    int n_need; /* total length of the pending sequence */
};
enum buf_status utf8_stream_feed(struct utf8_stream *u, const char *in, size_t n, struct buf *out);
enum buf_status utf8_stream_flush(struct utf8_stream *u, struct buf *out);

#endif
