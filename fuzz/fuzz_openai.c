/* fuzz_openai: libFuzzer target for the OpenAI request body parser (engine/openai_request.c):
 * the same bytes as a completions, a chat, a /tokenize and a /detokenize body, against a
 * 512-token byte-level vocabulary and a 256-token context. Checks the parser's promises: an
 * error has an HTTP status of 400/404/413 and a message; a success has 1 <= n_prompt <
 * max_model_len, prompt + max_tokens within the context, min_tokens <= max_tokens, token ids in
 * the vocabulary and at most OPENAI_STOP_MAX non-empty stop strings.
 * fuzz-sources: src/engine/openai_request.c src/engine/tokenizer.c src/util/json.c
 * fuzz-sources: src/util/buf.c src/engine/tok_pretok.c src/engine/chat_format.c src/util/log.c
 * fuzz-libs: icu-uc */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "engine/openai_request.h"

static void fuzz_openai_check_error(enum openai_status st, const struct openai_error *e)
{
    int code = openai_status_code(st);
    if ((code != 400 && code != 404 && code != 413) || !e->msg[0] || e->status != st)
        __builtin_trap();
}

static void fuzz_openai_check_ids(const int32_t *ids, int n, int n_vocab)
{
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab)
            __builtin_trap();
}

static void fuzz_openai_generate(const struct openai_limits *lim, enum openai_kind kind,
                                 const char *body, size_t len)
{
    struct openai_request r;
    struct openai_error e;
    enum openai_status st = openai_request_parse(lim, kind, body, len, &r, &e);
    if (st != OPENAI_STATUS_OK) {
        fuzz_openai_check_error(st, &e);
    } else {
        if (r.n_prompt < 1 || r.n_prompt >= lim->max_model_len || r.sp.max_tokens < 1 ||
            (long long)r.n_prompt + r.sp.max_tokens > lim->max_model_len ||
            r.sp.min_tokens > r.sp.max_tokens || r.n_stop > OPENAI_STOP_MAX)
            __builtin_trap();
        for (int i = 0; i < r.n_stop; i++)
            if (r.stop_len[i] == 0 || r.stop_len[i] > OPENAI_STOP_LEN_MAX)
                __builtin_trap();
        fuzz_openai_check_ids(r.prompt, r.n_prompt, lim->tok->n_vocab);
    }
    openai_request_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct tokenizer tok;
    static int tok_ready;
    if (!tok_ready) {
        if (tokenizer_init_default(&tok, 512) != 0)
            __builtin_trap();
        tok_ready = 1;
    }
    struct openai_limits lim = {.served_model_name = "tiny",
                                .tok = &tok,
                                .max_model_len = 256,
                                .max_chat_prompt_bytes = 2 * size + 4096,
                                .has_default_seed = 1,
                                .default_seed = 42};
    const char *body = (const char *)data;
    fuzz_openai_generate(&lim, OPENAI_KIND_COMPLETION, body, size);
    fuzz_openai_generate(&lim, OPENAI_KIND_CHAT, body, size);
    int32_t *ids;
    int n;
    struct openai_error e;
    enum openai_status st = openai_tokenize_parse(&lim, body, size, &ids, &n, &e);
    if (st != OPENAI_STATUS_OK)
        fuzz_openai_check_error(st, &e);
    fuzz_openai_check_ids(ids, n, 256); /* byte tokens only */
    free(ids);
    st = openai_detokenize_parse(&lim, body, size, &ids, &n, &e);
    if (st != OPENAI_STATUS_OK)
        fuzz_openai_check_error(st, &e);
    fuzz_openai_check_ids(ids, n, tok.n_vocab);
    free(ids);
    return 0;
}
