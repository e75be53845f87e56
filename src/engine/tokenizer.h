/* tokenizer: byte-level tokenization and detokenization, and the UTF-8 hold-back used when
 * streaming. Each byte of a prompt is one token (ids 0..255 in slmprobe's own vocabulary). The
 * vocabulary also has BOS/EOS and further printable tokens up to n_vocab, which the model may
 * generate. Vocabularies read from llama.cpp files ("llama" SPM with <0xXX> byte tokens, or "gpt2"
 * byte-level BPE) are mapped so that encoding is still one token per byte.
 * It does not implement BPE merges: token counts are bytes, which the probes rely on. */
#ifndef SLM_TOKENIZER_H
#define SLM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

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

void tokenizer_free(struct tokenizer *t); /* NULL-safe */

/* One token per byte. Writes min(len, max_out) ids; returns len (the exact count). */
size_t tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, int32_t *out,
                        size_t max_out);

/* Raw bytes of one token (may be a partial UTF-8 sequence), or NULL for an id out of range. */
const char *tokenizer_piece(const struct tokenizer *t, int id, size_t *len_out);

/* Detokenizes ids into out (raw bytes, then made valid UTF-8: invalid sequences become U+FFFD).
 * Returns BUF_OK or BUF_ERR_CAP. Special tokens (BOS/EOS) contribute nothing; so do ids outside
 * [0, n_vocab) (callers validate ids first). */
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
