/* tok_hf: tokenizer.json (+ tokenizer_config.json) -> struct tokenizer, through util/json. Ids
 * missing from both the vocabulary and the added tokens become "[PAD<id>]" tokens of type UNUSED,
 * as llama.cpp's convert script writes them. */
#include "engine/tok_hf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/json.h"
#include "util/log.h"

#define HF_MAX_FILE_BYTES ((size_t)512 << 20)
#define HF_MAX_VOCAB (1 << 22)

static const char re_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct hf {
    const struct json *vocab;
    int n_vocab;
    char **text;
    int32_t *type;
    float *score;
    char **merges;
    size_t n_merges;
    char err[256];
};

static int vocab_max_id(void *ctx, const char *key, const struct json *v)
{
    struct hf *h = ctx;
    long long id;
    if (json_int(v, &id) || id < 0 || id >= HF_MAX_VOCAB) {
        snprintf(h->err, sizeof h->err, "model.vocab['%.40s'] is not an id in [0, %d)", key,
                 HF_MAX_VOCAB);
        return -1;
    }
    if (id + 1 > h->n_vocab)
        h->n_vocab = (int)id + 1;
    return 0;
}

static int vocab_fill(void *ctx, const char *key, const struct json *v)
{
    struct hf *h = ctx;
    long long id = 0;
    json_int(v, &id);
    free(h->text[id]);
    h->text[id] = xstrdup(key);
    return 0;
}

/* Id of a token named in tokenizer_config.json (a string or {"content": ...}), or -1. */
static int config_token(const struct json *cfg, const char *key, const struct tokenizer *t)
{
    const struct json *v = json_get(cfg, key);
    const char *s = json_str(v, NULL);
    if (!s)
        s = json_str(json_get(v, "content"), NULL);
    if (!s)
        return -1;
    for (int id = 0; id < t->n_vocab; id++)
        if (!strcmp(t->text[id], s))
            return id;
    return -1;
}

static int text_id(const struct hf *h, const char *s)
{
    for (int id = 0; id < h->n_vocab; id++)
        if (h->text[id] && !strcmp(h->text[id], s))
            return id;
    return -1;
}

/* "gpt2" pre-tokenizer name from pre_tokenizer, or NULL. */
static const char *pre_name_of(const struct json *pre)
{
    const char *type = json_str(json_get(pre, "type"), NULL);
    if (!type)
        return NULL;
    if (!strcmp(type, "Sequence")) {
        const struct json *list = json_get(pre, "pretokenizers");
        for (size_t i = 0; i < json_len(list); i++) {
            const char *n = pre_name_of(json_at(list, i));
            if (n)
                return n;
        }
        return NULL;
    }
    if (!strcmp(type, "Split")) {
        const char *re = json_str(json_get(json_get(pre, "pattern"), "Regex"), NULL);
        if (re && !strcmp(re, re_qwen2))
            return "qwen2";
        if (re && !strcmp(re, re_llama3))
            return "llama-bpe";
        return NULL;
    }
    int use_regex = 1;
    if (!strcmp(type, "ByteLevel") && (json_bool(json_get(pre, "use_regex"), &use_regex) ||
                                       use_regex))
        return "default";
    return NULL;
}

/* Merges as "A B" strings (either ["A", "B"] pairs or "A B" strings in the file). */
static int read_merges(struct hf *h, const struct json *arr)
{
    h->n_merges = json_len(arr);
    if (h->n_merges > (size_t)h->n_vocab * 4) {
        snprintf(h->err, sizeof h->err, "%zu merges for %d tokens", h->n_merges, h->n_vocab);
        return -1;
    }
    h->merges = xcalloc(h->n_merges ? h->n_merges : 1, sizeof *h->merges);
    for (size_t i = 0; i < h->n_merges; i++) {
        const struct json *m = json_at(arr, i);
        const char *s = json_str(m, NULL);
        if (s) {
            h->merges[i] = xstrdup(s);
            continue;
        }
        const char *a = json_str(json_at(m, 0), NULL), *b = json_str(json_at(m, 1), NULL);
        if (!a || !b || json_len(m) != 2) {
            snprintf(h->err, sizeof h->err, "model.merges[%zu] is not \"A B\" or [A, B]", i);
            return -1;
        }
        size_t la = strlen(a), lb = strlen(b);
        h->merges[i] = xmalloc(la + lb + 2);
        memcpy(h->merges[i], a, la);
        h->merges[i][la] = ' ';
        memcpy(h->merges[i] + la + 1, b, lb + 1);
    }
    return 0;
}

/* SPM scores from merge ranks: the token made by merge r scores -r; the others -1e9. */
static void spm_scores(struct hf *h)
{
    for (int id = 0; id < h->n_vocab; id++)
        h->score[id] = -1e9f;
    for (size_t r = 0; r < h->n_merges; r++) {
        const char *m = h->merges[r], *sp = strchr(m + (m[0] != 0), ' ');
        if (!sp)
            continue;
        size_t la = (size_t)(sp - m), lb = strlen(sp + 1);
        char *cat = xmalloc(la + lb + 1);
        memcpy(cat, m, la);
        memcpy(cat + la, sp + 1, lb + 1);
        long long id;
        if (!json_int(json_get(h->vocab, cat), &id) && id >= 0 && id < h->n_vocab &&
            h->score[id] < -(float)r)
            h->score[id] = -(float)r;
        free(cat);
    }
}

static int load_added(struct hf *h, const struct json *added, int pass)
{
    for (size_t i = 0; i < json_len(added); i++) {
        const struct json *a = json_at(added, i);
        long long id;
        const char *content = json_str(json_get(a, "content"), NULL);
        if (json_int(json_get(a, "id"), &id) || id < 0 || id >= HF_MAX_VOCAB || !content) {
            snprintf(h->err, sizeof h->err, "added_tokens[%zu] needs an id and a content", i);
            return -1;
        }
        if (pass == 0) {
            if (id + 1 > h->n_vocab)
                h->n_vocab = (int)id + 1;
            continue;
        }
        int special = 0;
        json_bool(json_get(a, "special"), &special);
        free(h->text[id]);
        h->text[id] = xstrdup(content);
        h->type[id] = special ? TOK_TYPE_CONTROL : TOK_TYPE_USER_DEFINED;
    }
    return 0;
}

static char *sibling_path(const char *path, const char *name)
{
    const char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
    char *p = xmalloc(dir + strlen(name) + 1);
    memcpy(p, path, dir);
    strcpy(p + dir, name);
    return p;
}

static int hf_build(struct hf *h, const struct json *root, const struct json *cfg,
                    struct tokenizer *out)
{
    const struct json *model = json_get(root, "model");
    const char *mtype = json_str(json_get(model, "type"), NULL);
    if (!mtype || strcmp(mtype, "BPE")) {
        snprintf(h->err, sizeof h->err, "model.type is '%s'; only BPE is supported",
                 mtype ? mtype : "(none)");
        return -1;
    }
    h->vocab = json_get(model, "vocab");
    const struct json *added = json_get(root, "added_tokens");
    if (json_member_each(h->vocab, vocab_max_id, h) || load_added(h, added, 0))
        return -1;
    int byte_fallback = 0;
    json_bool(json_get(model, "byte_fallback"), &byte_fallback);
    const char *pre = byte_fallback ? NULL : pre_name_of(json_get(root, "pre_tokenizer"));
    if (!byte_fallback && !pre) {
        snprintf(h->err, sizeof h->err, "unsupported pre_tokenizer (supported: ByteLevel with "
                 "the qwen2, llama-bpe or GPT-2 regex; or BPE with byte_fallback)");
        return -1;
    }
    h->text = xcalloc((size_t)h->n_vocab, sizeof *h->text);
    h->type = xcalloc((size_t)h->n_vocab, sizeof *h->type);
    h->score = xcalloc((size_t)h->n_vocab, sizeof *h->score);
    json_member_each(h->vocab, vocab_fill, h);
    const char *unk = json_str(json_get(model, "unk_token"), NULL);
    for (int id = 0; id < h->n_vocab; id++) {
        char pad[32];
        snprintf(pad, sizeof pad, "[PAD%d]", id);
        h->type[id] = h->text[id] ? TOK_TYPE_NORMAL : TOK_TYPE_UNUSED;
        if (!h->text[id])
            h->text[id] = xstrdup(pad);
        const char *s = h->text[id];
        if (byte_fallback && strlen(s) == 6 && !strncmp(s, "<0x", 3) && s[5] == '>')
            h->type[id] = TOK_TYPE_BYTE;
        if (unk && !strcmp(s, unk))
            h->type[id] = TOK_TYPE_UNKNOWN;
    }
    if (load_added(h, added, 1) || read_merges(h, json_get(model, "merges")))
        return -1;
    if (byte_fallback)
        spm_scores(h);
    int add_bos = -1;
    json_bool(json_get(cfg, "add_bos_token"), &add_bos);
    const char *tmpl = json_str(json_get(cfg, "chat_template"), NULL);
    const char *end_name = byte_fallback ? "</s>" : "<|endoftext|>";
    struct tok_vocab v = {.kind_name = byte_fallback ? "llama" : "gpt2", .pre_name = pre,
                          .n_vocab = h->n_vocab, .text = (const char *const *)h->text,
                          .score = byte_fallback ? h->score : NULL, .type = h->type,
                          .merges = byte_fallback ? NULL : (const char *const *)h->merges,
                          .n_merges = h->n_merges,
                          .bos_id = text_id(h, byte_fallback ? "<s>" : end_name),
                          .eos_id = text_id(h, end_name), .eot_id = -1, .add_bos = add_bos,
                          .chat_template = tmpl};
    if (tokenizer_init_vocab(out, &v, h->err, sizeof h->err))
        return -1;
    /* tokenizer_config.json names the real BOS/EOS (Qwen2.5: EOS <|im_end|>, no BOS). */
    int bos = config_token(cfg, "bos_token", out), eos = config_token(cfg, "eos_token", out);
    if (bos < 0)
        bos = config_token(cfg, "pad_token", out);
    if (eos >= 0 && eos != out->eos_id) {
        int listed = 0; /* the vocabulary's own end token keeps ending generation */
        for (int i = 0; i < out->n_eog; i++)
            listed |= out->eog[i] == out->eos_id;
        if (!listed && out->n_eog < 8 && out->eos_id >= 0)
            out->eog[out->n_eog++] = out->eos_id;
        out->eos_id = eos;
    }
    if (bos >= 0)
        out->bos_id = bos;
    if (out->bos_id < 0)
        out->bos_id = out->eos_id;
    if (out->eos_id < 0) {
        snprintf(h->err, sizeof h->err, "no EOS token (neither %s nor eos_token in "
                 "tokenizer_config.json)", end_name);
        tokenizer_free(out);
        return -1;
    }
    return 0;
}

int tok_hf_load(const char *json_path, struct tokenizer *out, char *err, size_t err_len)
{
    struct hf h = {0};
    size_t len = 0, clen = 0;
    int rc = -1;
    struct json *root = NULL, *cfg = NULL;
    char *cfg_path = sibling_path(json_path, "tokenizer_config.json");
    char *text = file_read_all(json_path, HF_MAX_FILE_BYTES, &len);
    char *ctext = file_read_all(cfg_path, HF_MAX_FILE_BYTES, &clen);
    memset(out, 0, sizeof *out);
    if (!text) {
        snprintf(err, err_len, "cannot read %s: %s", json_path, strerror(errno));
        goto done;
    }
    if (!(root = json_parse(text, len, h.err, sizeof h.err))) {
        snprintf(err, err_len, "%s: %s", json_path, h.err);
        goto done;
    }
    if (ctext && !(cfg = json_parse(ctext, clen, h.err, sizeof h.err)))
        log_warn("model", "%s: %s; ignored (defaults for BOS/EOS, no chat template)", cfg_path,
                 h.err); /* e.g. Llama-2's model_max_length 1e30 written as an integer */
    if (hf_build(&h, root, cfg, out)) {
        snprintf(err, err_len, "%s: %s", json_path, h.err);
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; h.text && i < h.n_vocab; i++)
        free(h.text[i]);
    for (size_t i = 0; h.merges && i < h.n_merges; i++)
        free(h.merges[i]);
    free(h.text);
    free(h.type);
    free(h.score);
    free(h.merges);
    json_free(root);
    json_free(cfg);
    free(text);
    free(ctext);
    free(cfg_path);
    return rc;
}
