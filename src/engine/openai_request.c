/* openai_request: the completions / chat request body -> token ids and sampling parameters, with
 * vLLM's validation messages (see openai_request.h). The JSON goes through util/json.h only; the
 * tree is kept in the request because stop strings are views into it. */
#include "engine/openai_request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/json.h"

static const struct {
    const char *name;
    int code;
} openai_status_table[OPENAI_STATUS_COUNT] = {
    [OPENAI_STATUS_OK] = {"ok", 200},
    [OPENAI_STATUS_ERR_INVALID] = {"err_invalid", 400},
    [OPENAI_STATUS_ERR_MODEL_NOT_FOUND] = {"err_model_not_found", 404},
    [OPENAI_STATUS_ERR_TOO_LARGE] = {"err_too_large", 413},
};

const char *openai_status_str(enum openai_status st)
{
    return (unsigned)st < OPENAI_STATUS_COUNT ? openai_status_table[st].name : "unknown";
}

int openai_status_code(enum openai_status st)
{
    return (unsigned)st < OPENAI_STATUS_COUNT ? openai_status_table[st].code : 500;
}

static void put(struct buf *b, enum buf_status *st, const char *s, size_t n)
{
    if (*st == BUF_OK)
        *st = buf_append(b, s, n);
}

static int perr_set(struct openai_error *e, enum openai_status status, const char *param,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int perr_set(struct openai_error *e, enum openai_status status, const char *param,
                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = status;
    e->param = param;
    return -1;
}

static int is_absent(const struct json *v)
{
    enum json_type t = json_type_of(v);
    return t == JSON_TYPE_NONE || t == JSON_TYPE_NULL;
}

/* Integer field (integral reals accepted, as pydantic does). 0 absent, 1 present, -1 error. */
static int get_int(const struct json *obj, const char *key, long long *out, struct openai_error *e)
{
    const struct json *v = json_get(obj, key);
    if (is_absent(v))
        return 0;
    if (json_int(v, out) == 0)
        return 1;
    double d;
    if (json_type_of(v) == JSON_TYPE_REAL && json_num(v, &d) == 0 && d == floor(d)) {
        /* the range check comes before the cast: casting 1e300 to long long is undefined */
        if (!(d >= -9.0e18 && d <= 9.0e18))
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, key, "'%s' is out of range: %g", key,
                            d);
        *out = (long long)d;
        return 1;
    }
    return perr_set(e, OPENAI_STATUS_ERR_INVALID, key, "'%s' must be an integer, got %s", key,
                    json_type_str(json_type_of(v)));
}

static int get_num(const struct json *obj, const char *key, double *out, struct openai_error *e)
{
    const struct json *v = json_get(obj, key);
    if (is_absent(v))
        return 0;
    if (json_num(v, out) == 0 && *out == *out)
        return 1;
    return perr_set(e, OPENAI_STATUS_ERR_INVALID, key, "'%s' must be a number, got %s", key,
                    json_type_str(json_type_of(v)));
}

static int get_bool(const struct json *obj, const char *key, int *out, struct openai_error *e)
{
    const struct json *v = json_get(obj, key);
    if (is_absent(v))
        return 0;
    if (json_bool(v, out) == 0)
        return 1;
    return perr_set(e, OPENAI_STATUS_ERR_INVALID, key, "'%s' must be a boolean, got %s", key,
                    json_type_str(json_type_of(v)));
}

/* Fields we cannot honour are refused rather than ignored (they would change the output). */
static int check_unsupported(const struct json *root, struct openai_error *e)
{
    long long n;
    double d;
    int b, r;
    if ((r = get_int(root, "n", &n, e)) < 0)
        return -1;
    if (r && n != 1)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "n",
                        "n=%lld is not supported by slmprobe serve (only n=1)", n);
    if ((r = get_int(root, "best_of", &n, e)) < 0)
        return -1;
    if (r && n != 1)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "best_of",
                        "best_of=%lld is not supported by slmprobe serve", n);
    if ((r = get_bool(root, "echo", &b, e)) < 0)
        return -1;
    if (r && b)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "echo",
                        "echo is not supported by slmprobe serve");
    const struct json *lp = json_get(root, "logprobs");
    if (!is_absent(lp) && !(json_bool(lp, &b) == 0 && !b))
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "logprobs",
                        "logprobs are not supported by slmprobe serve");
    if ((r = get_int(root, "top_k", &n, e)) < 0)
        return -1;
    if (r && n != -1 && n != 0)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "top_k",
                        "top_k is not supported by slmprobe serve");
    static const char *zero_keys[] = {"presence_penalty", "frequency_penalty", "min_p"};
    for (size_t i = 0; i < sizeof zero_keys / sizeof zero_keys[0]; i++) {
        if ((r = get_num(root, zero_keys[i], &d, e)) < 0)
            return -1;
        if (r && d != 0)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, zero_keys[i],
                            "%s is not supported by slmprobe serve", zero_keys[i]);
    }
    if ((r = get_num(root, "repetition_penalty", &d, e)) < 0)
        return -1;
    if (r && d != 1.0)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "repetition_penalty",
                        "repetition_penalty is not supported by slmprobe serve");
    return 0;
}

static int check_model(const struct openai_limits *lim, const struct json *root,
                       struct openai_error *e)
{
    const struct json *m = json_get(root, "model");
    if (is_absent(m))
        return 0;
    size_t n;
    const char *name = json_str(m, &n);
    if (!name)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "model", "'model' must be a string, got %s",
                        json_type_str(json_type_of(m)));
    if (strlen(lim->served_model_name) != n || memcmp(name, lim->served_model_name, n) != 0)
        return perr_set(e, OPENAI_STATUS_ERR_MODEL_NOT_FOUND, "model",
                        "The model `%.*s` does not exist.", (int)(n > 200 ? 200 : n), name);
    return 0;
}

/* Token ids from a JSON array of integers. */
static int parse_token_array(const struct openai_limits *lim, const struct json *arr,
                             const char *param, int32_t **out, int *n_out, struct openai_error *e)
{
    size_t n = json_len(arr);
    if (n > (size_t)INT32_MAX / 2)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, param, "too many tokens");
    int32_t *ids = xmalloc((n ? n : 1) * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        long long v;
        if (json_int(json_at(arr, i), &v) != 0) {
            free(ids);
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, param,
                            "'%s' must be a list of integers (item %zu is %s)", param, i,
                            json_type_str(json_type_of(json_at(arr, i))));
        }
        if (v < 0 || v >= lim->tok->n_vocab) {
            free(ids);
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, param,
                            "Token id %lld is out of vocabulary (size %d)", v, lim->tok->n_vocab);
        }
        ids[i] = (int32_t)v;
    }
    *out = ids;
    *n_out = (int)n;
    return 0;
}

static int encode_text(const struct openai_limits *lim, const char *text, size_t len, int32_t **out,
                       int *n_out, struct openai_error *e, const char *param)
{
    if (len > (size_t)INT32_MAX / 2)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, param, "prompt too long");
    const struct tokenizer *tok = lim->tok;
    size_t bos = tok->add_bos && tok->bos_id >= 0; /* tokenizer.ggml.add_bos_token */
    int32_t *ids = xmalloc((len + bos + 1) * sizeof *ids);
    size_t n = tokenizer_encode(tok, text, len, ids + bos, len);
    if (n > len) { /* SPM's space prefix can add a token; never trust a count blindly */
        free(ids);
        ids = xmalloc((n + bos) * sizeof *ids);
        tokenizer_encode(tok, text, len, ids + bos, n);
    }
    if (bos)
        ids[0] = tok->bos_id;
    *out = ids;
    *n_out = (int)(n + bos);
    return 0;
}

/* "prompt": string | [int] | [string] | [[int]] */
static int parse_prompt(const struct openai_limits *lim, const struct json *root, int32_t **out,
                        int *n_out, struct openai_error *e)
{
    const struct json *p = json_get(root, "prompt");
    if (is_absent(p))
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "prompt", "'prompt' is required");
    size_t len;
    const char *text = json_str(p, &len);
    if (text)
        return encode_text(lim, text, len, out, n_out, e, "prompt");
    if (json_type_of(p) != JSON_TYPE_ARRAY)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "prompt",
                        "'prompt' must be a string, a list of token ids or a list of one string, "
                        "got %s",
                        json_type_str(json_type_of(p)));
    const struct json *first = json_at(p, 0);
    enum json_type t0 = json_type_of(first);
    if (t0 == JSON_TYPE_STRING || t0 == JSON_TYPE_ARRAY) {
        if (json_len(p) != 1)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "prompt",
                            "batched prompts (%zu) are not supported by slmprobe serve; send one "
                            "prompt per request",
                            json_len(p));
        if (t0 == JSON_TYPE_STRING) {
            text = json_str(first, &len);
            return encode_text(lim, text, len, out, n_out, e, "prompt");
        }
        return parse_token_array(lim, first, "prompt", out, n_out, e);
    }
    return parse_token_array(lim, p, "prompt", out, n_out, e);
}

/* Chat format (docs/serve.md, chat_format.h) chosen from the model's tokenizer.chat_template. */
static int build_chat_prompt(const struct json *root, int add_generation_prompt, struct buf *b,
                             struct openai_error *e, enum chat_format fmt)
{
    const struct json *msgs = json_get(root, "messages");
    if (is_absent(msgs))
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "messages", "'messages' is required");
    if (json_type_of(msgs) != JSON_TYPE_ARRAY || json_len(msgs) == 0)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "messages",
                        "'messages' must be a non-empty list of messages");
    enum buf_status bst = BUF_OK;
    for (size_t i = 0; i < json_len(msgs); i++) {
        const struct json *m = json_at(msgs, i);
        if (json_type_of(m) != JSON_TYPE_OBJECT)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "messages",
                            "message %zu must be an object", i);
        size_t rlen;
        const char *role = json_str(json_get(m, "role"), &rlen);
        if (!role || rlen == 0 || rlen > 64 || memchr(role, '\n', rlen) || memchr(role, '|', rlen))
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "messages",
                            "message %zu needs a 'role' string (1-64 bytes, no '|' or newline)", i);
        bst = bst ? bst : chat_format_open(fmt, role, rlen, b);
        const struct json *content = json_get(m, "content");
        size_t clen;
        const char *ctext = json_str(content, &clen);
        if (ctext) {
            put(b, &bst, ctext, clen);
        } else if (json_type_of(content) == JSON_TYPE_ARRAY) {
            for (size_t k = 0; k < json_len(content); k++) {
                const struct json *part = json_at(content, k);
                const char *type = json_str(json_get(part, "type"), NULL);
                const char *ptext = json_str(json_get(part, "text"), &clen);
                if (!type || strcmp(type, "text") != 0 || !ptext)
                    return perr_set(e, OPENAI_STATUS_ERR_INVALID, "messages",
                                    "message %zu: only {\"type\": \"text\", \"text\": ...} content "
                                    "parts are supported",
                                    i);
                put(b, &bst, ptext, clen);
            }
        } else if (!is_absent(content)) {
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "messages",
                            "message %zu: 'content' must be a string or a list of text parts", i);
        }
        bst = bst ? bst : chat_format_close(fmt, b);
    }
    if (add_generation_prompt)
        bst = bst ? bst : chat_format_generation_prompt(fmt, b);
    if (bst != BUF_OK)
        return perr_set(e, OPENAI_STATUS_ERR_TOO_LARGE, "messages",
                        "chat prompt larger than %zu bytes", b->cap_bytes);
    return 0;
}

static int parse_stop(const struct json *root, struct openai_request *p, struct openai_error *e)
{
    const struct json *v = json_get(root, "stop");
    if (is_absent(v))
        return 0;
    size_t n = 1;
    int is_list = json_type_of(v) == JSON_TYPE_ARRAY;
    if (is_list)
        n = json_len(v);
    else if (json_type_of(v) != JSON_TYPE_STRING)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "stop",
                        "'stop' must be a string or a list of strings, got %s",
                        json_type_str(json_type_of(v)));
    if (n > OPENAI_STOP_MAX)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "stop",
                        "at most %d stop strings are supported, got %zu", OPENAI_STOP_MAX, n);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *str = json_str(is_list ? json_at(v, i) : v, &len);
        if (!str)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "stop",
                            "'stop' must be a string or a list of strings");
        if (len == 0)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "stop",
                            "stop cannot contain an empty string.");
        if (len > OPENAI_STOP_LEN_MAX)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "stop",
                            "stop strings are limited to %d bytes", OPENAI_STOP_LEN_MAX);
        p->stop[p->n_stop] = str;
        p->stop_len[p->n_stop] = len;
        p->n_stop++;
    }
    return 0;
}

/* Sampling fields shared by completions and chat. */
static int parse_sampling(const struct openai_limits *lim, const struct json *root,
                          enum openai_kind kind, struct openai_request *p, struct openai_error *e)
{
    long long n;
    double d;
    int b, r;
    p->sp.max_tokens = 16;
    p->sp.temperature = 1.0f;
    p->sp.top_p = 1.0f;
    if (kind == OPENAI_KIND_CHAT) {
        if ((r = get_int(root, "max_completion_tokens", &n, e)) < 0)
            return -1;
        if (r) {
            p->has_max_tokens = 1;
            if (n < 1)
                return perr_set(e, OPENAI_STATUS_ERR_INVALID, "max_completion_tokens",
                                "max_completion_tokens must be at least 1, got %lld.", n);
            p->sp.max_tokens = n > INT32_MAX ? INT32_MAX : (int)n;
        }
    }
    if (!p->has_max_tokens) {
        if ((r = get_int(root, "max_tokens", &n, e)) < 0)
            return -1;
        if (r) {
            p->has_max_tokens = 1;
            if (n < 1)
                return perr_set(e, OPENAI_STATUS_ERR_INVALID, "max_tokens",
                                "max_tokens must be at least 1, got %lld.", n);
            p->sp.max_tokens = n > INT32_MAX ? INT32_MAX : (int)n;
        }
    }
    if ((r = get_num(root, "temperature", &d, e)) < 0)
        return -1;
    if (r) {
        if (d < 0)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "temperature",
                            "temperature must be non-negative, got %g.", d);
        p->sp.temperature = (float)d;
    }
    if ((r = get_num(root, "top_p", &d, e)) < 0)
        return -1;
    if (r) {
        if (!(d > 0 && d <= 1))
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "top_p",
                            "top_p must be in (0, 1], got %g.", d);
        p->sp.top_p = (float)d;
    }
    if ((r = get_int(root, "seed", &n, e)) < 0)
        return -1;
    if (r) {
        p->sp.seed = (uint64_t)n;
        p->sp.has_seed = 1;
    } else if (lim->has_default_seed) {
        p->sp.seed = lim->default_seed;
        p->sp.has_seed = 1;
    }
    if ((r = get_bool(root, "ignore_eos", &b, e)) < 0)
        return -1;
    if (r)
        p->sp.ignore_eos = b;
    if ((r = get_int(root, "min_tokens", &n, e)) < 0)
        return -1;
    if (r) {
        if (n < 0)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "min_tokens",
                            "min_tokens must be greater than or equal to 0, got %lld.", n);
        p->sp.min_tokens = n > INT32_MAX ? INT32_MAX : (int)n;
    }
    if (parse_stop(root, p, e) < 0)
        return -1;
    if ((r = get_bool(root, "stream", &b, e)) < 0)
        return -1;
    p->stream = r ? b : 0;
    const struct json *so = json_get(root, "stream_options");
    if (!is_absent(so)) {
        if (json_type_of(so) != JSON_TYPE_OBJECT)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "stream_options",
                            "'stream_options' must be an object, got %s",
                            json_type_str(json_type_of(so)));
        if (!p->stream)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "stream_options",
                            "Stream options can only be defined when `stream=True`.");
        if ((r = get_bool(so, "include_usage", &b, e)) < 0)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "stream_options",
                            "'stream_options.include_usage' must be a boolean");
        p->include_usage = r ? b : 0;
    }
    return check_unsupported(root, e);
}

/* Length checks with vLLM's messages. */
static int check_lengths(const struct openai_limits *lim, struct openai_request *p,
                         enum openai_kind kind, struct openai_error *e)
{
    int max_len = lim->max_model_len;
    if (p->n_prompt < 1)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "prompt", "The prompt cannot be empty.");
    if (p->n_prompt >= max_len)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "input_tokens",
                        "This model's maximum context length is %d tokens. However, your request "
                        "has %d input tokens. Please reduce the length of the input messages.",
                        max_len, p->n_prompt);
    if (kind == OPENAI_KIND_CHAT && !p->has_max_tokens)
        p->sp.max_tokens = max_len - p->n_prompt; /* vLLM: the rest of the context */
    if ((long long)p->n_prompt + p->sp.max_tokens > max_len)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "max_tokens",
                        "This model's maximum context length is %d tokens. However, you requested "
                        "%d output tokens and your prompt contains %d input tokens, for a total of "
                        "%lld tokens. Please reduce the length of the input prompt or the number "
                        "of requested output tokens.",
                        max_len, p->sp.max_tokens, p->n_prompt,
                        (long long)p->n_prompt + p->sp.max_tokens);
    if (p->sp.min_tokens > p->sp.max_tokens)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "min_tokens",
                        "min_tokens must be less than or equal to max_tokens=%d, got %d.",
                        p->sp.max_tokens, p->sp.min_tokens);
    return 0;
}

static struct json *parse_body(const char *body, size_t len, struct openai_error *e)
{
    char jerr[200];
    struct json *root = json_parse(body ? body : "", len, jerr, sizeof jerr);
    if (!root) {
        perr_set(e, OPENAI_STATUS_ERR_INVALID, NULL, "JSON decode error: %s", jerr);
        return NULL;
    }
    if (json_type_of(root) != JSON_TYPE_OBJECT) {
        json_free(root);
        perr_set(e, OPENAI_STATUS_ERR_INVALID, NULL, "The request body must be a JSON object");
        return NULL;
    }
    return root;
}

/* "messages" rendered with the chat template, then tokenized. */
static int encode_chat(const struct openai_limits *lim, const struct json *root, int32_t **ids,
                       int *n, struct openai_error *e)
{
    int add_gen = 1, r;
    if ((r = get_bool(root, "add_generation_prompt", &add_gen, e)) < 0)
        return -1;
    if (!r)
        add_gen = 1;
    struct buf chat;
    buf_init(&chat, 0, lim->max_chat_prompt_bytes);
    r = build_chat_prompt(root, add_gen, &chat, e, lim->chat_fmt);
    if (r == 0)
        r = encode_text(lim, chat.data ? chat.data : "", chat.len, ids, n, e, "messages");
    buf_free(&chat);
    return r;
}

enum openai_status openai_request_parse(const struct openai_limits *lim, enum openai_kind kind,
                                        const char *body, size_t len, struct openai_request *out,
                                        struct openai_error *err)
{
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    err->status = OPENAI_STATUS_ERR_INVALID;
    if (!(out->root = parse_body(body, len, err)))
        return err->status;
    if (check_model(lim, out->root, err) < 0)
        return err->status;
    if (kind == OPENAI_KIND_CHAT) {
        if (encode_chat(lim, out->root, &out->prompt, &out->n_prompt, err) < 0)
            return err->status;
    } else if (parse_prompt(lim, out->root, &out->prompt, &out->n_prompt, err) < 0) {
        return err->status;
    }
    if (parse_sampling(lim, out->root, kind, out, err) < 0)
        return err->status;
    if (check_lengths(lim, out, kind, err) < 0)
        return err->status;
    err->status = OPENAI_STATUS_OK;
    return OPENAI_STATUS_OK;
}

/* /tokenize: {"prompt": string} or {"messages": [...]} (chat template applied). */
static int tokenize_fields(const struct openai_limits *lim, const struct json *root, int32_t **ids,
                           int *n, struct openai_error *e)
{
    int add_special;
    if (get_bool(root, "add_special_tokens", &add_special, e) < 0)
        return -1;
    if (is_absent(json_get(root, "messages"))) {
        size_t len;
        const char *text = json_str(json_get(root, "prompt"), &len);
        if (!text)
            return perr_set(e, OPENAI_STATUS_ERR_INVALID, "prompt",
                            "'prompt' (a string) or 'messages' is required");
        return encode_text(lim, text, len, ids, n, e, "prompt");
    }
    return encode_chat(lim, root, ids, n, e);
}

/* /detokenize: {"tokens": [ids]}. */
static int detokenize_fields(const struct openai_limits *lim, const struct json *root,
                             int32_t **ids, int *n, struct openai_error *e)
{
    const struct json *t = json_get(root, "tokens");
    if (json_type_of(t) != JSON_TYPE_ARRAY)
        return perr_set(e, OPENAI_STATUS_ERR_INVALID, "tokens",
                        "'tokens' (a list of token ids) is required");
    return parse_token_array(lim, t, "tokens", ids, n, e);
}

/* The body of /tokenize and /detokenize: parse, check "model", then fields() for the ids. On an
 * error *ids_out is NULL and *n_out 0. */
static enum openai_status parse_ids_body(const struct openai_limits *lim, const char *body,
                                         size_t len,
                                         int (*fields)(const struct openai_limits *,
                                                       const struct json *, int32_t **, int *,
                                                       struct openai_error *),
                                         int32_t **ids_out, int *n_out, struct openai_error *err)
{
    memset(err, 0, sizeof *err);
    err->status = OPENAI_STATUS_ERR_INVALID;
    *ids_out = NULL;
    *n_out = 0;
    struct json *root = parse_body(body, len, err);
    int r = root ? check_model(lim, root, err) : -1;
    if (r == 0)
        r = fields(lim, root, ids_out, n_out, err);
    json_free(root);
    if (r < 0) {
        free(*ids_out);
        *ids_out = NULL;
        *n_out = 0;
        return err->status;
    }
    err->status = OPENAI_STATUS_OK;
    return OPENAI_STATUS_OK;
}

enum openai_status openai_tokenize_parse(const struct openai_limits *lim, const char *body,
                                         size_t len, int32_t **ids_out, int *n_out,
                                         struct openai_error *err)
{
    return parse_ids_body(lim, body, len, tokenize_fields, ids_out, n_out, err);
}

enum openai_status openai_detokenize_parse(const struct openai_limits *lim, const char *body,
                                           size_t len, int32_t **ids_out, int *n_out,
                                           struct openai_error *err)
{
    return parse_ids_body(lim, body, len, detokenize_fields, ids_out, n_out, err);
}

void openai_request_free(struct openai_request *r)
{
    if (!r)
        return;
    free(r->prompt);
    json_free(r->root);
    r->prompt = NULL;
    r->root = NULL;
}
