/* openai_request: parses and validates the JSON body of /v1/completions and /v1/chat/completions
 * (vLLM's field set and error messages) into token ids and sampling parameters. It renders the
 * chat template, tokenizes the prompt and checks lengths against the context; it does not submit
 * anything, touch a connection or write a response. Any thread; no shared state.
 *
 *   struct openai_request r;
 *   struct openai_error e;
 *   if (openai_request_parse(&lim, OPENAI_KIND_CHAT, body, len, &r, &e) != OPENAI_STATUS_OK)
 *       answer openai_status_code(st) with e.param, e.msg;
 *   ... r.prompt, r.n_prompt, r.sp, r.stop[] ...
 *   openai_request_free(&r);    // always, also after an error
 */
#ifndef SLM_OPENAI_REQUEST_H
#define SLM_OPENAI_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h" /* struct sampling_params */
#include "engine/chat_format.h"
#include "engine/tokenizer.h"

#define OPENAI_STOP_MAX 16
#define OPENAI_STOP_LEN_MAX 256

enum openai_kind { OPENAI_KIND_COMPLETION = 0, OPENAI_KIND_CHAT };

enum openai_status {
    OPENAI_STATUS_OK = 0,
    OPENAI_STATUS_ERR_INVALID,         /* malformed or unsupported field: 400 */
    OPENAI_STATUS_ERR_MODEL_NOT_FOUND, /* "model" names another model: 404 */
    OPENAI_STATUS_ERR_TOO_LARGE,       /* rendered chat prompt over its cap: 413 */
    OPENAI_STATUS_COUNT
};

const char *openai_status_str(enum openai_status st); /* never NULL */
int openai_status_code(enum openai_status st);        /* HTTP status; 200 for OK */

/* What the request is checked against; strings and the tokenizer outlive the call. */
struct openai_limits {
    const char *served_model_name;
    const struct tokenizer *tok;
    enum chat_format chat_fmt; /* from the model's tokenizer.chat_template */
    int max_model_len;
    size_t max_chat_prompt_bytes;
    int has_default_seed; /* requests without "seed" get default_seed */
    uint64_t default_seed;
};

struct openai_error {
    enum openai_status status;
    const char *param; /* static string or NULL */
    char msg[512];
};

struct openai_request {
    int32_t *prompt; /* owned */
    int n_prompt;
    struct sampling_params sp;
    int has_max_tokens;
    int stream;
    int include_usage;
    const char *stop[OPENAI_STOP_MAX]; /* views into the parsed body: live until _free */
    size_t stop_len[OPENAI_STOP_MAX];
    int n_stop;
    struct json *root;
};

/* Parses len bytes of body (need not be NUL-terminated). OPENAI_STATUS_OK with *out filled, or an
 * error with *err filled. In both cases call openai_request_free(out). */
enum openai_status openai_request_parse(const struct openai_limits *lim, enum openai_kind kind,
                                        const char *body, size_t len, struct openai_request *out,
                                        struct openai_error *err);
void openai_request_free(struct openai_request *r); /* NULL-safe */

/* /tokenize body: {"prompt": string} or {"messages": [...]}. OK with *ids_out (caller frees) and
 * *n_out, or an error with *err (and *ids_out NULL). */
enum openai_status openai_tokenize_parse(const struct openai_limits *lim, const char *body,
                                         size_t len, int32_t **ids_out, int *n_out,
                                         struct openai_error *err);
/* /detokenize body: {"tokens": [ids]} checked against the vocabulary; as above. */
enum openai_status openai_detokenize_parse(const struct openai_limits *lim, const char *body,
                                           size_t len, int32_t **ids_out, int *n_out,
                                           struct openai_error *err);

#endif
