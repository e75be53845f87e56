/* fuzz_tokenizer: libFuzzer target for the tokenizer (engine/tokenizer.c). The input's first
 * part is a vocabulary as a GGUF file would carry it (token texts separated by '\n', the kind
 * "llama" or "gpt2" picked by the first byte, types and BOS/EOS from the next bytes); the rest
 * is text to encode, ids to decode and pieces to stream through the UTF-8 hold-back. Checks
 * the contracts: encode gives at most one id per byte plus one per text fragment (SPM's space
 * prefix; tokenizer.h) and only ids in the vocabulary, decode and the stream give valid UTF-8.
 * fuzz-sources: src/engine/tokenizer.c src/engine/tok_pretok.c src/util/buf.c src/util/log.c
 * fuzz-libs: icu-uc */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"

#define FUZZ_TOK_MAX_VOCAB 1024

static void fuzz_tok_check_utf8(const struct buf *b)
{
    for (size_t i = 0; i < b->len;) {
        size_t n = utf8_valid_len((const unsigned char *)b->data + i, b->len - i);
        if (n == 0)
            __builtin_trap();
        i += n;
    }
}

static void fuzz_tok_use(const struct tokenizer *t, const uint8_t *data, size_t size)
{
    size_t cap = 2 * size + 1;
    int32_t *ids = malloc(cap * sizeof *ids);
    size_t n_enc = tokenizer_encode(t, (const char *)data, size, ids, cap);
    if (n_enc > cap || (t->kind == TOK_KIND_SLM && n_enc != size))
        __builtin_trap();
    for (size_t i = 0; i < n_enc; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            __builtin_trap();
    /* ids from the raw bytes, pairs read as little-endian 16-bit values, kept in range */
    size_t n = size / 2;
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)((data[2 * i] | data[2 * i + 1] << 8) % (unsigned)t->n_vocab);
    struct buf out;
    buf_init(&out, 0, 1u << 22);
    if (tokenizer_decode(t, ids, n, &out) == BUF_OK)
        fuzz_tok_check_utf8(&out);
    buf_reset(&out);
    struct utf8_stream u = {0};
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *piece = tokenizer_piece(t, ids[i], &len);
        if (!piece)
            __builtin_trap(); /* every id in range has a piece */
        (void)utf8_stream_feed(&u, piece, len, &out);
    }
    (void)utf8_stream_flush(&u, &out);
    fuzz_tok_check_utf8(&out);
    buf_free(&out);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    const char *kind = data[0] & 1 ? "gpt2" : "llama";
    int use_types = data[1] & 1, bos = data[2] % 8 == 0 ? -1 : data[2], eos = data[3];
    data += 4;
    size -= 4;
    /* vocabulary: up to the first "\n\n" (or everything) */
    const uint8_t *end = memmem(data, size, "\n\n", 2);
    size_t vocab_bytes = end ? (size_t)(end - data) : size;
    char *copy = malloc(vocab_bytes + 1);
    memcpy(copy, data, vocab_bytes);
    copy[vocab_bytes] = 0;
    const char **text = malloc(FUZZ_TOK_MAX_VOCAB * sizeof *text);
    int32_t *type = malloc(FUZZ_TOK_MAX_VOCAB * sizeof *type);
    int n_vocab = 0;
    for (char *p = copy; p && n_vocab < FUZZ_TOK_MAX_VOCAB;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = 0;
        type[n_vocab] = 1 + (int32_t)((unsigned char)p[0] % 6);
        text[n_vocab++] = p;
        p = nl ? nl + 1 : NULL;
    }
    struct tokenizer t;
    char err[256];
    if (tokenizer_init_from_vocab(&t, kind, n_vocab, text, NULL, use_types ? type : NULL,
                                  bos < n_vocab ? bos : -1, eos < n_vocab ? eos : -1, err,
                                  sizeof err) == 0) {
        size_t rest = end ? size - vocab_bytes - 2 : 0;
        fuzz_tok_use(&t, end ? end + 2 : data, rest);
        tokenizer_free(&t);
    } else if (!err[0]) {
        __builtin_trap();
    }
    free(type);
    free(text);
    free(copy);
    return 0;
}
