/* model_file: GGUF model files <-> struct model. Writes llama.cpp-convention files (arch llama or
 * qwen2; all F32, or mostly F16/BF16/Q8_0/Q4_0) with the default vocabulary and seeded random
 * weights, streamed tensor by tensor; loads ours or llama.cpp's files of the supported types by
 * mmap (f32 tensors and F16/BF16/block-type matrices used in place) or read() (all f32).
 * Everything read from the file is validated (gguf.c for the container; here the metadata, every
 * expected tensor's presence, shape and type) before a single weight is touched.
 * It does not implement block formats (quant.c), apply RoPE scaling, or tokenize (tokenizer.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <omp.h>
#include <unistd.h>

#include "engine/bigmem.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/quant.h"
#include "util/log.h"

#define MF_ALIGNMENT 32
#define MF_HEADER_CAP_BYTES ((uint64_t)256 << 20) /* read(): largest header we buffer */
#define MF_HEADER_FIRST_BYTES ((uint64_t)1 << 20)
#define MF_CHUNK_ELEMS ((size_t)1 << 20) /* f16 conversion / read chunk */

const char *model_arch_name(enum model_arch arch)
{
    return arch == MODEL_ARCH_QWEN2 ? "qwen2" : "llama";
}

/* ---- writing ---- */

static void add_arch_u32(struct gguf_writer *w, const char *arch, const char *suffix, uint32_t v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    gguf_writer_add_u32(w, key, v);
}

static void add_arch_f32(struct gguf_writer *w, const char *arch, const char *suffix, float v)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    gguf_writer_add_f32(w, key, v);
}

static uint32_t tensor_type_for(const struct model_config *cfg, const struct model_tensor_desc *d,
                                enum model_dtype dtype)
{
    return model_tensor_type(cfg, d, dtype);
}

/* The tokenizer keys as llama.cpp's convert script writes them. */
static void write_tokenizer(struct gguf_writer *w, const struct tokenizer *tok)
{
    int real = tok->kind != TOK_KIND_SLM;
    gguf_writer_add_str(w, "tokenizer.ggml.model", tok->kind == TOK_KIND_GPT2 ? "gpt2" : "llama");
    if (tok->kind == TOK_KIND_GPT2)
        gguf_writer_add_str(w, "tokenizer.ggml.pre", tok_pre_str(tok->pre));
    gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok->text,
                            (uint64_t)tok->n_vocab);
    if (tok->kind != TOK_KIND_GPT2)
        gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", tok->score, (uint64_t)tok->n_vocab);
    gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", tok->type, (uint64_t)tok->n_vocab);
    if (tok->n_merges) {
        char **m = xcalloc((size_t)tok->n_merges, sizeof *m);
        for (int i = 0; i < tok->n_merges; i++) {
            const char *a = tok->text[tok->merge_a[i]], *b = tok->text[tok->merge_b[i]];
            size_t la = strlen(a), lb = strlen(b);
            m[i] = xmalloc(la + lb + 2);
            memcpy(m[i], a, la);
            m[i][la] = ' ';
            memcpy(m[i] + la + 1, b, lb + 1);
        }
        gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", (const char *const *)m,
                                (uint64_t)tok->n_merges);
        for (int i = 0; i < tok->n_merges; i++)
            free(m[i]);
        free(m);
    }
    gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)tok->bos_id);
    gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)tok->eos_id);
    gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", real && tok->add_bos);
    if (tok->chat_template)
        gguf_writer_add_str(w, "tokenizer.chat_template", tok->chat_template);
}

int model_write_gguf(const struct model_config *cfg, uint64_t seed, enum model_dtype dtype,
                     const char *path, char *err, size_t err_len)
{
    return model_write_gguf_tok(cfg, seed, dtype, NULL, path, err, err_len);
}

int model_write_gguf_tok(const struct model_config *cfg, uint64_t seed, enum model_dtype dtype,
                         const struct tokenizer *vocab, const char *path, char *err,
                         size_t err_len)
{
    int rc = -1, fd = -1;
    struct tokenizer tok = {0};
    struct gguf_writer w;
    struct model_tensor_desc *d = NULL;
    float *fbuf = NULL;
    unsigned char *hbuf = NULL;
    char *tmp_path = NULL;
    char gerr[256];

    gguf_writer_init(&w, MF_ALIGNMENT);
    if (model_config_validate(cfg, err, err_len))
        goto fail;
    enum model_dtype dchk;
    if (model_dtype_parse(model_dtype_str(dtype), &dchk)) {
        snprintf(err, err_len, "unknown dtype %d", (int)dtype);
        goto fail;
    }
    if (vocab && vocab->n_vocab != cfg->n_vocab) {
        snprintf(err, err_len, "vocabulary of %d tokens for a model of %d", vocab->n_vocab,
                 cfg->n_vocab);
        goto fail;
    }
    if (!vocab && tokenizer_init_default(&tok, cfg->n_vocab)) {
        snprintf(err, err_len, "cannot build the default vocabulary of %d tokens", cfg->n_vocab);
        goto fail;
    }
    const char *arch = model_arch_name(cfg->arch);
    gguf_writer_add_str(&w, "general.architecture", arch);
    gguf_writer_add_str(&w, "general.name", cfg->name);
    gguf_writer_add_u32(&w, "general.alignment", MF_ALIGNMENT);
    gguf_writer_add_u32(&w, "general.file_type", (uint32_t)dtype);
    add_arch_u32(&w, arch, "vocab_size", (uint32_t)cfg->n_vocab);
    add_arch_u32(&w, arch, "context_length", (uint32_t)cfg->n_ctx_train);
    add_arch_u32(&w, arch, "embedding_length", (uint32_t)cfg->n_embd);
    add_arch_u32(&w, arch, "block_count", (uint32_t)cfg->n_layer);
    add_arch_u32(&w, arch, "feed_forward_length", (uint32_t)cfg->n_ff);
    add_arch_u32(&w, arch, "attention.head_count", (uint32_t)cfg->n_head);
    add_arch_u32(&w, arch, "attention.head_count_kv", (uint32_t)cfg->n_head_kv);
    add_arch_f32(&w, arch, "rope.freq_base", cfg->rope_theta);
    add_arch_f32(&w, arch, "attention.layer_norm_rms_epsilon", cfg->norm_eps);
    add_arch_u32(&w, arch, "rope.dimension_count", (uint32_t)cfg->head_dim);
    add_arch_u32(&w, arch, "attention.key_length", (uint32_t)cfg->head_dim);
    add_arch_u32(&w, arch, "attention.value_length", (uint32_t)cfg->head_dim);
    write_tokenizer(&w, vocab ? vocab : &tok);

    int n = model_tensors(cfg, NULL);
    d = xcalloc((size_t)n, sizeof *d);
    model_tensors(cfg, d);
    uint64_t max_elems = 0;
    for (int i = 0; i < n; i++) {
        uint64_t ne = d[i].ne[0] * d[i].ne[1];
        if (ne > max_elems)
            max_elems = ne;
        gguf_writer_add_tensor(&w, d[i].name, (uint32_t)d[i].n_dims, d[i].ne,
                               tensor_type_for(cfg, &d[i], dtype));
    }

    size_t plen = strlen(path) + 32;
    tmp_path = xmalloc(plen);
    snprintf(tmp_path, plen, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
        goto fail;
    }
    if (gguf_writer_begin(&w, fd, gerr, sizeof gerr)) {
        snprintf(err, err_len, "cannot write %s: %s", path, gerr);
        goto fail;
    }
    /* One tensor at a time: the largest tensor is the only one ever in memory. */
    fbuf = xmalloc((size_t)max_elems * sizeof *fbuf);
    if (dtype != MODEL_DTYPE_F32)
        hbuf = xmalloc(MF_CHUNK_ELEMS * sizeof(uint16_t));
    for (int i = 0; i < n; i++) {
        size_t ne = (size_t)(d[i].ne[0] * d[i].ne[1]);
        model_fill_tensor(seed, i, &d[i], fbuf);
        enum gguf_status st = GGUF_OK;
        uint32_t type = tensor_type_for(cfg, &d[i], dtype);
        if (type == GGML_TYPE_F32) {
            st = gguf_writer_data(&w, fbuf, ne * sizeof *fbuf, gerr, sizeof gerr);
        } else if (type == GGML_TYPE_F16) {
            for (size_t off = 0; off < ne && !st; off += MF_CHUNK_ELEMS) {
                size_t k = ne - off < MF_CHUNK_ELEMS ? ne - off : MF_CHUNK_ELEMS;
                gguf_f32_to_f16_row(fbuf + off, (uint16_t *)(void *)hbuf, k);
                st = gguf_writer_data(&w, hbuf, k * sizeof(uint16_t), gerr, sizeof gerr);
            }
        } else {
            /* Whole rows per chunk (MF_CHUNK_ELEMS f32 -> at most 2 bytes a value). */
            size_t row = (size_t)d[i].ne[0], rows_per = MF_CHUNK_ELEMS / row;
            size_t rb = quant_row_bytes(type, row);
            for (size_t r = 0; r < (size_t)d[i].ne[1] && !st; r += rows_per) {
                size_t k = (size_t)d[i].ne[1] - r < rows_per ? (size_t)d[i].ne[1] - r : rows_per;
                for (size_t j = 0; j < k; j++)
                    quant_quantize_row(type, fbuf + (r + j) * row, hbuf + j * rb, row);
                st = gguf_writer_data(&w, hbuf, k * rb, gerr, sizeof gerr);
            }
        }
        if (st) {
            snprintf(err, err_len, "cannot write %s: %s", path, gerr);
            goto fail;
        }
    }
    if (gguf_writer_end(&w, gerr, sizeof gerr)) {
        snprintf(err, err_len, "cannot write %s: %s", path, gerr);
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        snprintf(err, err_len, "cannot write %s: close: %s", path, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp_path, path) != 0) {
        snprintf(err, err_len, "cannot write %s: rename: %s", path, strerror(errno));
        goto fail;
    }
    rc = 0;

fail:
    if (fd >= 0)
        close(fd);
    if (rc && tmp_path)
        unlink(tmp_path);
    free(tmp_path);
    free(fbuf);
    free(hbuf);
    free(d);
    gguf_writer_free(&w);
    tokenizer_free(&tok);
    return rc;
}

/* ---- reading ---- */

/* A validated header: the parsed container, the config, and each expected tensor's info. */
struct mf_header {
    int fd;
    uint64_t file_bytes;
    void *map;              /* MMAP: the whole file */
    unsigned char *head;    /* READ: the first bytes of the file (header), owned */
    struct gguf_file g;
    struct model_config cfg;
    struct tokenizer tok;
    char tok_model[16];
    int n_desc;
    struct model_tensor_desc *desc;           /* [n_desc] model_tensors order */
    const struct gguf_tensor_info **ti;       /* [n_desc] */
    enum model_dtype file_dtype;
    int file_type; /* general.file_type, -1 when absent */
    uint64_t n_unused;
    char first_unused[64];
};

static void mf_header_free(struct mf_header *h)
{
    if (h->fd >= 0)
        close(h->fd);
    if (h->map)
        munmap(h->map, (size_t)h->file_bytes);
    free(h->head);
    gguf_file_free(&h->g);
    tokenizer_free(&h->tok);
    free(h->desc);
    free(h->ti);
    memset(h, 0, sizeof *h);
    h->fd = -1;
}

static void str_copy(char *out, size_t out_len, struct gguf_str s)
{
    size_t n = s.len < out_len - 1 ? (size_t)s.len : out_len - 1;
    memcpy(out, s.ptr, n);
    out[n] = 0;
}

/* Integer metadata "{arch}.{suffix}" in [lo, hi]; absent: dflt, or an error when required. */
static int meta_int(const struct gguf_file *g, const char *arch, const char *suffix, int required,
                    int64_t dflt, int64_t lo, int64_t hi, int *out, char *err, size_t err_len)
{
    char key[128];
    snprintf(key, sizeof key, "%s%s%s", arch ? arch : "", arch ? "." : "", suffix);
    const struct gguf_kv *kv = gguf_find_kv(g, key);
    int64_t v = dflt;
    if (!kv) {
        if (required) {
            snprintf(err, err_len, "missing metadata key '%s'", key);
            return -1;
        }
    } else if (gguf_kv_get_i64(kv, &v)) {
        snprintf(err, err_len, "metadata key '%s' has type %s%s%s, expected an integer", key,
                 gguf_type_str(kv->type), kv->type == GGUF_TYPE_ARRAY ? " of " : "",
                 kv->type == GGUF_TYPE_ARRAY ? gguf_type_str(kv->arr_type) : "");
        return -1;
    }
    if (v < lo || v > hi) {
        snprintf(err, err_len, "metadata key '%s' = %" PRId64 " is out of range [%" PRId64
                 ", %" PRId64 "]", key, v, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int meta_float(const struct gguf_file *g, const char *arch, const char *suffix,
                      double dflt, float *out, char *err, size_t err_len)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const struct gguf_kv *kv = gguf_find_kv(g, key);
    double v = dflt;
    int64_t iv;
    if (kv && gguf_kv_get_f64(kv, &v)) {
        if (gguf_kv_get_i64(kv, &iv) == 0) {
            v = (double)iv;
        } else {
            snprintf(err, err_len, "metadata key '%s' has type %s, expected a float", key,
                     gguf_type_str(kv->type));
            return -1;
        }
    }
    if (!(v > 0) || v > 1e30) {
        snprintf(err, err_len, "metadata key '%s' = %g must be positive and finite", key, v);
        return -1;
    }
    *out = (float)v;
    return 0;
}

/* NUL-terminated copies of a string array's items (one arena, caller frees both). */
static const char **str_array_copy(const struct gguf_kv *k, char **arena_out)
{
    size_t n = (size_t)k->arr_n;
    struct gguf_str *views = xcalloc(n ? n : 1, sizeof *views);
    gguf_kv_arr_strs(k, views);
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += (size_t)views[i].len + 1; /* bounded by the file size */
    char *arena = xmalloc(total);
    const char **items = xcalloc(n ? n : 1, sizeof *items);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(arena + off, views[i].ptr, (size_t)views[i].len);
        arena[off + views[i].len] = 0;
        items[i] = arena + off;
        off += (size_t)views[i].len + 1;
    }
    free(views);
    *arena_out = arena;
    return items;
}

/* The real-tokenizer keys: merges, pre, EOT, add_bos_token, chat template (all optional). */
static int header_tokenizer_extra(const struct gguf_file *g, int n, struct tok_vocab *v,
                                  char **pre, char **tmpl, char **merge_arena, char *err,
                                  size_t err_len)
{
    struct gguf_str s;
    const struct gguf_kv *k = gguf_find_kv(g, "tokenizer.ggml.merges");
    if (k) {
        if (k->type != GGUF_TYPE_ARRAY || k->arr_type != GGUF_TYPE_STRING ||
            k->arr_n > (uint64_t)n * 4) {
            snprintf(err, err_len, "tokenizer.ggml.merges must be a string array of at most "
                     "%d entries", n * 4);
            return -1;
        }
        v->merges = str_array_copy(k, merge_arena);
        v->n_merges = (size_t)k->arr_n;
    }
    if ((k = gguf_find_kv(g, "tokenizer.ggml.pre")) && !gguf_kv_get_str(k, &s))
        *pre = xstrndup(s.ptr, (size_t)s.len);
    if ((k = gguf_find_kv(g, "tokenizer.chat_template")) && !gguf_kv_get_str(k, &s))
        *tmpl = xstrndup(s.ptr, (size_t)s.len);
    int b;
    if ((k = gguf_find_kv(g, "tokenizer.ggml.add_bos_token")) && !gguf_kv_get_bool(k, &b))
        v->add_bos = b;
    if (gguf_find_kv(g, "tokenizer.ggml.eot_token_id") &&
        meta_int(g, NULL, "tokenizer.ggml.eot_token_id", 1, -1, 0, n - 1, &v->eot_id, err,
                 err_len))
        return -1;
    v->pre_name = *pre;
    v->chat_template = *tmpl;
    return 0;
}

static int header_tokenizer(struct mf_header *h, char *err, size_t err_len)
{
    const struct gguf_file *g = &h->g;
    int rc = -1;
    char *arena = NULL;
    const char **text = NULL;
    float *score = NULL;
    int32_t *type = NULL;
    char *pre = NULL, *tmpl = NULL, *merge_arena = NULL;
    const char **merges = NULL;
    struct gguf_str s;

    const struct gguf_kv *km = gguf_find_kv(g, "tokenizer.ggml.model");
    if (!km || gguf_kv_get_str(km, &s)) {
        snprintf(err, err_len, "missing string metadata key 'tokenizer.ggml.model'");
        goto fail;
    }
    str_copy(h->tok_model, sizeof h->tok_model, s);
    const struct gguf_kv *kt = gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (!kt || kt->type != GGUF_TYPE_ARRAY || kt->arr_type != GGUF_TYPE_STRING) {
        snprintf(err, err_len, "missing string array 'tokenizer.ggml.tokens'");
        goto fail;
    }
    if (kt->arr_n < 1 || kt->arr_n > (1u << 22)) {
        snprintf(err, err_len, "tokenizer.ggml.tokens has %" PRIu64 " tokens (1..4194304 allowed)",
                 kt->arr_n);
        goto fail;
    }
    int n = (int)kt->arr_n;
    text = str_array_copy(kt, &arena);
    const struct gguf_kv *ks = gguf_find_kv(g, "tokenizer.ggml.scores");
    if (ks) {
        if (ks->type != GGUF_TYPE_ARRAY || ks->arr_n != (uint64_t)n ||
            (ks->arr_type != GGUF_TYPE_FLOAT32 && ks->arr_type != GGUF_TYPE_FLOAT64)) {
            snprintf(err, err_len, "tokenizer.ggml.scores must be a float array of %d entries", n);
            goto fail;
        }
        score = xcalloc((size_t)n, sizeof *score);
        for (int i = 0; i < n; i++) {
            double v = 0;
            gguf_kv_arr_f64(ks, (uint64_t)i, &v);
            score[i] = (float)v;
        }
    }
    const struct gguf_kv *ky = gguf_find_kv(g, "tokenizer.ggml.token_type");
    if (ky) {
        int64_t v;
        if (ky->type != GGUF_TYPE_ARRAY || ky->arr_n != (uint64_t)n ||
            gguf_kv_arr_i64(ky, 0, &v)) {
            snprintf(err, err_len, "tokenizer.ggml.token_type must be an integer array of %d "
                     "entries", n);
            goto fail;
        }
        type = xcalloc((size_t)n, sizeof *type);
        for (int i = 0; i < n; i++) {
            v = 0;
            gguf_kv_arr_i64(ky, (uint64_t)i, &v);
            type[i] = (int32_t)v;
        }
    }
    int bos = -1, eos = -1;
    if (gguf_find_kv(g, "tokenizer.ggml.bos_token_id") &&
        meta_int(g, NULL, "tokenizer.ggml.bos_token_id", 1, -1, 0, n - 1, &bos, err, err_len))
        goto fail;
    if (gguf_find_kv(g, "tokenizer.ggml.eos_token_id") &&
        meta_int(g, NULL, "tokenizer.ggml.eos_token_id", 1, -1, 0, n - 1, &eos, err, err_len))
        goto fail;
    if (eos < 0 && bos < 0) {
        snprintf(err, err_len, "missing metadata key 'tokenizer.ggml.eos_token_id'");
        goto fail;
    }
    if (eos < 0)
        eos = bos;
    if (bos < 0)
        bos = eos;
    char terr[200];
    struct tok_vocab v = {.kind_name = h->tok_model, .n_vocab = n, .text = text, .score = score,
                          .type = type, .bos_id = bos, .eos_id = eos, .eot_id = -1,
                          .add_bos = -1};
    int xr = header_tokenizer_extra(g, n, &v, &pre, &tmpl, &merge_arena, err, err_len);
    merges = (const char **)v.merges;
    if (xr)
        goto fail;
    if (tokenizer_init_vocab(&h->tok, &v, terr, sizeof terr)) {
        snprintf(err, err_len, "tokenizer: %s", terr);
        goto fail;
    }
    h->cfg.n_vocab = n;
    h->cfg.bos_id = bos;
    h->cfg.eos_id = eos;
    rc = 0;
fail:
    free(arena);
    free(text);
    free(score);
    free(type);
    free(pre);
    free(tmpl);
    free((void *)merges);
    free(merge_arena);
    return rc;
}

static int header_config(struct mf_header *h, const char *path, char *err, size_t err_len)
{
    const struct gguf_file *g = &h->g;
    struct model_config *c = &h->cfg;
    struct gguf_str s;
    char archbuf[32];
    const struct gguf_kv *ka = gguf_find_kv(g, "general.architecture");
    if (!ka || gguf_kv_get_str(ka, &s)) {
        snprintf(err, err_len, "missing string metadata key 'general.architecture'");
        return -1;
    }
    str_copy(archbuf, sizeof archbuf, s);
    if (!strcmp(archbuf, "llama") && s.len == 5) {
        c->arch = MODEL_ARCH_LLAMA;
    } else if (!strcmp(archbuf, "qwen2") && s.len == 5) {
        c->arch = MODEL_ARCH_QWEN2;
    } else {
        snprintf(err, err_len, "unsupported architecture '%s' (supported: llama, qwen2)",
                 archbuf);
        return -1;
    }
    const char *arch = model_arch_name(c->arch);
    const struct gguf_kv *kn = gguf_find_kv(g, "general.name");
    if (kn && gguf_kv_get_str(kn, &s) == 0 && s.len) {
        str_copy(c->name, sizeof c->name, s);
    } else {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        snprintf(c->name, sizeof c->name, "%s", base);
        char *dot = strstr(c->name, ".gguf");
        if (dot && dot != c->name)
            *dot = 0;
    }
    const int64_t big = 1 << 30;
    if (meta_int(g, arch, "context_length", 1, 0, 1, big, &c->n_ctx_train, err, err_len) ||
        meta_int(g, arch, "embedding_length", 1, 0, 1, big, &c->n_embd, err, err_len) ||
        meta_int(g, arch, "block_count", 1, 0, 1, big, &c->n_layer, err, err_len) ||
        meta_int(g, arch, "feed_forward_length", 1, 0, 1, big, &c->n_ff, err, err_len) ||
        meta_int(g, arch, "attention.head_count", 1, 0, 1, big, &c->n_head, err, err_len) ||
        meta_int(g, arch, "attention.head_count_kv", 0, c->n_head, 1, big, &c->n_head_kv, err,
                 err_len))
        return -1;
    char klkey[96];
    snprintf(klkey, sizeof klkey, "%s.attention.key_length", arch);
    if (c->n_embd % c->n_head && !gguf_find_kv(g, klkey)) {
        snprintf(err, err_len, "embedding_length %d is not a multiple of head_count %d and no "
                 "%s is given", c->n_embd, c->n_head, klkey);
        return -1;
    }
    int vlen = 0, rdim = 0;
    if (meta_int(g, arch, "attention.key_length", 0, c->n_embd / c->n_head, 1, big, &c->head_dim,
                 err, err_len) ||
        meta_int(g, arch, "attention.value_length", 0, c->head_dim, 1, big, &vlen, err,
                 err_len) ||
        meta_int(g, arch, "rope.dimension_count", 0, c->head_dim, 1, big, &rdim, err, err_len))
        return -1;
    if (vlen != c->head_dim) {
        snprintf(err, err_len, "attention.value_length %d differs from key_length %d "
                 "(unsupported)", vlen, c->head_dim);
        return -1;
    }
    if (rdim != c->head_dim) {
        snprintf(err, err_len, "partial RoPE (rope.dimension_count %d, head dim %d) is not "
                 "supported", rdim, c->head_dim);
        return -1;
    }
    if (meta_float(g, arch, "rope.freq_base", 10000.0, &c->rope_theta, err, err_len) ||
        meta_float(g, arch, "attention.layer_norm_rms_epsilon", 1e-5, &c->norm_eps, err,
                   err_len))
        return -1;
    c->qkv_bias = gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    c->tied_embeddings = gguf_find_tensor(g, "output.weight") == NULL;
    if (header_tokenizer(h, err, err_len))
        return -1;
    char verr[200];
    if (model_config_validate(c, verr, sizeof verr)) {
        snprintf(err, err_len, "%s", verr);
        return -1;
    }
    return 0;
}

/* The file's dtype is its "largest" matrix type: Q8_0 > Q4_0 > BF16 > F16 > F32 (a q8_0 file
 * whose ffn_down rows do not divide into blocks holds F16 there; it is still q8_0). */
static int dtype_rank(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_F16: return 1;
    case GGML_TYPE_BF16: return 2;
    case GGML_TYPE_Q4_0: return 3;
    case GGML_TYPE_Q8_0: return 4;
    default: return 0;
    }
}

static enum model_dtype dtype_of(uint32_t type)
{
    switch (type) {
    case GGML_TYPE_F16: return MODEL_DTYPE_F16;
    case GGML_TYPE_BF16: return MODEL_DTYPE_BF16;
    case GGML_TYPE_Q4_0: return MODEL_DTYPE_Q4_0;
    case GGML_TYPE_Q8_0: return MODEL_DTYPE_Q8_0;
    default: return MODEL_DTYPE_F32;
    }
}

static int dtype_rank_of(enum model_dtype d)
{
    return dtype_rank(model_dtype_matrix_type(d, QUANT_QK8_0));
}

/* A tensor the forward pass computes on as stored (mmap): a 2-D matrix of type F16, BF16 or a
 * block type (Q8_0, Q5_0, Q4_0, Q6_K, Q5_K, Q4_K). Other non-f32 tensors (1-D f16/bf16 norms
 * and biases, 1-D quantised ones) are converted to f32 at load. */
static int tensor_native(const struct model_tensor_desc *d, uint32_t type)
{
    return d->n_dims == 2 && type != GGML_TYPE_F32 && quant_type_supported(type);
}

static int header_tensors(struct mf_header *h, char *err, size_t err_len)
{
    h->n_desc = model_tensors(&h->cfg, NULL);
    h->desc = xcalloc((size_t)h->n_desc, sizeof *h->desc);
    model_tensors(&h->cfg, h->desc);
    h->ti = xcalloc((size_t)h->n_desc, sizeof *h->ti);
    h->file_dtype = MODEL_DTYPE_F32;
    for (int i = 0; i < h->n_desc; i++) {
        const struct model_tensor_desc *d = &h->desc[i];
        const struct gguf_tensor_info *t = gguf_find_tensor(&h->g, d->name);
        if (!t) {
            snprintf(err, err_len, "missing tensor '%s'", d->name);
            return -1;
        }
        if (!quant_type_supported(t->type)) {
            snprintf(err, err_len,
                     "tensor '%s' has type %s, which is not supported (supported: %s)", d->name,
                     ggml_type_name(t->type), quant_supported_list());
            return -1;
        }
        int same = t->ne[0] == d->ne[0] && t->ne[1] == d->ne[1] && t->ne[2] == 1 &&
                   t->ne[3] == 1;
        if (!same) {
            char got[128];
            int k = snprintf(got, sizeof got, "[%" PRIu64, t->ne[0]);
            for (uint32_t j = 1; j < t->n_dims && k > 0 && (size_t)k < sizeof got; j++)
                k += snprintf(got + k, sizeof got - (size_t)k, ", %" PRIu64, t->ne[j]);
            if (k > 0 && (size_t)k < sizeof got)
                snprintf(got + k, sizeof got - (size_t)k, "]");
            if (d->n_dims == 1)
                snprintf(err, err_len, "tensor '%s' has shape %s, expected [%" PRIu64 "]",
                         d->name, got, d->ne[0]);
            else
                snprintf(err, err_len,
                         "tensor '%s' has shape %s, expected [%" PRIu64 ", %" PRIu64 "]",
                         d->name, got, d->ne[0], d->ne[1]);
            return -1;
        }
        h->file_dtype = dtype_rank(t->type) > dtype_rank_of(h->file_dtype) ? dtype_of(t->type)
                                                                             : h->file_dtype;
        h->ti[i] = t;
    }
    /* general.file_type names the mix (q4_k_m holds Q4_K, Q6_K and fallbacks) where it is one
     * we know; otherwise the largest matrix type above stands. */
    int ft;
    enum model_dtype fd;
    h->file_type = -1;
    if (gguf_find_kv(&h->g, "general.file_type") &&
        meta_int(&h->g, NULL, "general.file_type", 0, -1, 0, 1 << 16, &ft, err, err_len) == 0) {
        h->file_type = ft;
        if (model_dtype_parse(model_dtype_str((enum model_dtype)ft), &fd) == 0)
            h->file_dtype = fd;
    }
    /* Tensors we do not use (names are unique, every expected one was found). */
    h->n_unused = h->g.n_tensors - (uint64_t)h->n_desc;
    if (h->n_unused) {
        for (uint64_t i = 0; i < h->g.n_tensors; i++) {
            const struct gguf_tensor_info *t = &h->g.tensors[i];
            int used = 0;
            for (int j = 0; j < h->n_desc && !used; j++)
                used = h->ti[j] == t;
            if (!used) {
                str_copy(h->first_unused, sizeof h->first_unused, t->name);
                break;
            }
        }
    }
    return 0;
}

static int read_full(int fd, void *buf, size_t n, uint64_t off)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO; /* file shrank under us */
            return -1;
        }
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Opens, maps or reads the header, validates everything. h is usable on 0; freed on -1. */
static int header_open(struct mf_header *h, const char *path, enum model_load_format fmt,
                       char *err, size_t err_len)
{
    char gerr[512];
    memset(h, 0, sizeof *h);
    h->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (h->fd < 0) {
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(h->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, err_len, "%s: not a regular file", path);
        goto fail;
    }
    h->file_bytes = (uint64_t)sb.st_size;
    enum gguf_status st;
    if (fmt == MODEL_LOAD_MMAP) {
        static const unsigned char empty[1];
        const void *base = empty;
        if (h->file_bytes) {
            h->map = mmap(NULL, (size_t)h->file_bytes, PROT_READ, MAP_PRIVATE, h->fd, 0);
            if (h->map == MAP_FAILED) {
                h->map = NULL;
                snprintf(err, err_len, "cannot mmap %s: %s", path, strerror(errno));
                goto fail;
            }
            base = h->map;
        }
        st = gguf_parse(&h->g, base, h->file_bytes, h->file_bytes, NULL, gerr, sizeof gerr);
    } else {
        uint64_t cap = h->file_bytes < MF_HEADER_CAP_BYTES ? h->file_bytes : MF_HEADER_CAP_BYTES;
        uint64_t have = h->file_bytes < MF_HEADER_FIRST_BYTES ? h->file_bytes
                                                                : MF_HEADER_FIRST_BYTES;
        for (;;) {
            free(h->head);
            h->head = xmalloc((size_t)have + 1);
            if (read_full(h->fd, h->head, (size_t)have, 0)) {
                snprintf(err, err_len, "cannot read %s: %s", path, strerror(errno));
                goto fail;
            }
            uint64_t need_bytes = 0;
            st = gguf_parse(&h->g, h->head, have, h->file_bytes, &need_bytes, gerr, sizeof gerr);
            if (st != GGUF_ERR_INCOMPLETE)
                break;
            if (have >= cap || need_bytes > cap) {
                snprintf(err, err_len, "%s: GGUF header larger than %" PRIu64 " MiB (%s)", path,
                         MF_HEADER_CAP_BYTES >> 20, gerr);
                goto fail;
            }
            uint64_t next = have * 2 > need_bytes ? have * 2 : need_bytes;
            have = next < cap ? next : cap;
        }
    }
    if (st != GGUF_OK) {
        snprintf(err, err_len, "invalid GGUF file %s: %s", path, gerr);
        goto fail;
    }
    if (header_config(h, path, gerr, sizeof gerr) || header_tensors(h, gerr, sizeof gerr)) {
        snprintf(err, err_len, "unusable model file %s: %s", path, gerr);
        goto fail;
    }
    h->cfg.bos_id = h->tok.bos_id;
    h->cfg.eos_id = h->tok.eos_id;
    return 0;
fail:
    mf_header_free(h);
    return -1;
}

int model_file_info(const char *path, struct model_file_info *out, char *err, size_t err_len)
{
    struct mf_header h;
    memset(out, 0, sizeof *out);
    if (header_open(&h, path, MODEL_LOAD_MMAP, err, err_len))
        return -1;
    out->cfg = h.cfg;
    out->file_dtype = h.file_dtype;
    out->file_type = h.file_type;
    out->tok_kind = h.tok.kind;
    snprintf(out->tok_model, sizeof out->tok_model, "%s", h.tok_model);
    out->gguf_version = h.g.version;
    out->file_bytes = h.file_bytes;
    out->n_tensors = h.g.n_tensors;
    out->n_tensors_unused = h.n_unused;
    for (int i = 0; i < h.n_desc; i++) {
        const struct gguf_tensor_info *t = h.ti[i];
        out->weight_bytes += tensor_native(&h.desc[i], t->type) ? t->n_bytes
                                                                : t->n_elems * sizeof(float);
        if (t->type < MODEL_N_GGML_TYPES) {
            out->type_tensors[t->type]++;
            out->type_bytes[t->type] += t->n_bytes;
        }
    }
    mf_header_free(&h);
    return 0;
}

static int convert_threads(void)
{
#if defined(__SANITIZE_THREAD__)
    return 1; /* TSan cannot see libgomp's barriers (forward.c, bigmem.c) */
#else
    return omp_get_max_threads();
#endif
}

/* n f16 values at src -> dst, chunks shared out among the OpenMP team. The destination is a
 * bigmem region (2 MiB pages where the kernel allows), so the parallel writers fault a huge page
 * at a time instead of contending on the mm lock for every 4 KiB (which made a parallel
 * conversion into malloc'd memory slower than a serial one). Returns the threads used. */
static int convert_f16(const unsigned char *src, float *dst, size_t n)
{
    size_t n_chunks = (n + MF_CHUNK_ELEMS - 1) / MF_CHUNK_ELEMS;
    int aligned = ((uintptr_t)src % sizeof(uint16_t)) == 0; /* a file may use alignment 1 */
    int nt = convert_threads();
    if ((size_t)nt > n_chunks)
        nt = (int)n_chunks;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (size_t c = 0; c < n_chunks; c++) {
        size_t off = c * MF_CHUNK_ELEMS;
        size_t k = n - off < MF_CHUNK_ELEMS ? n - off : MF_CHUNK_ELEMS;
        if (aligned) {
            gguf_f16_to_f32_row((const uint16_t *)(const void *)(src + off * 2), dst + off, k);
        } else {
            for (size_t i = 0; i < k; i++) {
                uint16_t h;
                memcpy(&h, src + (off + i) * 2, 2);
                dst[off + i] = gguf_f16_to_f32(h);
            }
        }
    }
    return nt;
}

/* MMAP: first touch of every page the weights used in place occupy (the cold start cost; they
 * are resident afterwards). Returns the time taken. */
static mono_ns touch_pages(const struct mf_header *h, float *const *ptrs, const uint8_t *native)
{
    mono_ns t1 = clock_now_ns();
    long page = sysconf(_SC_PAGESIZE);
    size_t pg = page > 0 ? (size_t)page : 4096;
    volatile unsigned char sink = 0;
    for (int i = 0; i < h->n_desc; i++) {
        if (!ptrs[i] && !native[i])
            continue;
        const unsigned char *p = h->ti[i]->data;
        size_t n = (size_t)h->ti[i]->n_bytes;
        unsigned char acc = 0;
        for (size_t k = 0; k < n; k += pg)
            acc ^= p[k];
        if (n)
            acc ^= p[n - 1];
        sink ^= acc;
    }
    (void)sink;
    return clock_now_ns() - t1;
}

/* MMAP: the tensors not used in place (unaligned f32 copied; 1-D F16/BF16/block-type norms and
 * biases converted to f32) into m->owned, in order, ptrs[i] set. Logs what was converted, by
 * which types and how many threads (1: serial). Returns the time taken. */
static mono_ns convert_owned(const struct mf_header *h, struct model *m, float **ptrs,
                             const uint8_t *native)
{
    char types[64] = "";
    size_t off = 0, tl = 0;
    uint64_t seen = 0; /* ggml type ids named in types */
    mono_ns t2 = clock_now_ns();
    for (int i = 0; i < h->n_desc; i++) {
        const struct gguf_tensor_info *t = h->ti[i];
        if (ptrs[i] || native[i])
            continue;
        ptrs[i] = m->owned + off;
        off += (size_t)t->n_elems;
        int nt = 1;
        if (t->type == GGML_TYPE_F32) {
            memcpy(ptrs[i], t->data, (size_t)t->n_bytes);
            continue;
        }
        if (t->type == GGML_TYPE_F16)
            nt = convert_f16(t->data, ptrs[i], (size_t)t->n_elems);
        else
            quant_dequantize_row(t->type, t->data, ptrs[i], (size_t)t->n_elems);
        m->load.convert_threads = nt > m->load.convert_threads ? nt : m->load.convert_threads;
        m->load.convert_bytes += (uint64_t)t->n_elems * sizeof(float);
        const char *tn = ggml_type_name(t->type);
        if (t->type < 64 && !(seen >> t->type & 1) && tl + strlen(tn) + 3 < sizeof types) {
            seen |= (uint64_t)1 << t->type;
            tl += (size_t)snprintf(types + tl, sizeof types - tl, "%s%s", tl ? ", " : "", tn);
        }
    }
    mono_ns ns = clock_now_ns() - t2;
    if (m->load.convert_bytes > 0)
        log_info("model", "%s -> f32 conversion of tensors not used as stored took %.3f seconds "
                          "(%.2f GiB at %.2f GB/s, %d thread%s)",
                 types, ns_to_s(ns), (double)m->load.convert_bytes / 1073741824.0,
                 ns > 0 ? (double)m->load.convert_bytes / (double)ns : 0.0,
                 m->load.convert_threads, m->load.convert_threads == 1 ? "" : "s");
    return ns;
}

/* Tensor i's blocks (at data) have finite scales; else -1 with err naming the tensor and block. */
static int check_blocks(const struct mf_header *h, int i, const void *data, const char *path,
                        char *err, size_t err_len)
{
    const struct gguf_tensor_info *t = h->ti[i];
    uint32_t be, bb;
    uint64_t bad;
    if (!ggml_type_block(t->type, &be, &bb) || be == 1)
        return 0;
    if (quant_validate_blocks(t->type, data, t->n_bytes / bb, &bad) == 0)
        return 0;
    snprintf(err, err_len, "corrupt model file %s: tensor '%s' (%s): block %" PRIu64 " of %" PRIu64
             " has a non-finite fp16 scale", path, h->desc[i].name, ggml_type_name(t->type), bad,
             t->n_bytes / bb);
    return -1;
}

/* READ: every tensor pread() into m->owned as f32 (f16 converted chunk by chunk, bf16 and block
 * types read whole, then dequantised); ptrs[i] set. 0, or -1 with errno. *convert_ns += the
 * conversion time. */
static int load_read(const struct mf_header *h, struct model *m, float **ptrs, mono_ns *convert_ns,
                     int *corrupt, const char *path, char *err, size_t err_len)
{
    uint16_t *hbuf = xmalloc(MF_CHUNK_ELEMS * sizeof *hbuf);
    size_t off = 0;
    int rc = -1;
    for (int i = 0; i < h->n_desc; i++) {
        const struct gguf_tensor_info *t = h->ti[i];
        ptrs[i] = m->owned + off;
        if (t->type == GGML_TYPE_F32) {
            if (read_full(h->fd, ptrs[i], (size_t)t->n_bytes, t->file_offset))
                goto out;
        } else if (t->type != GGML_TYPE_F16) {
            unsigned char *raw = xmalloc((size_t)t->n_bytes);
            int rrc = read_full(h->fd, raw, (size_t)t->n_bytes, t->file_offset);
            if (!rrc && check_blocks(h, i, raw, path, err, err_len)) {
                *corrupt = 1;
                free(raw);
                goto out;
            }
            mono_ns tc = clock_now_ns();
            if (!rrc)
                quant_dequantize_row(t->type, raw, ptrs[i], (size_t)t->n_elems);
            *convert_ns += clock_now_ns() - tc;
            free(raw);
            if (rrc)
                goto out;
        } else {
            for (size_t e = 0; e < t->n_elems; e += MF_CHUNK_ELEMS) {
                size_t k = (size_t)t->n_elems - e < MF_CHUNK_ELEMS ? (size_t)t->n_elems - e
                                                                   : MF_CHUNK_ELEMS;
                if (read_full(h->fd, hbuf, k * 2, t->file_offset + e * 2))
                    goto out;
                mono_ns tc = clock_now_ns();
                gguf_f16_to_f32_row(hbuf, ptrs[i] + e, k);
                *convert_ns += clock_now_ns() - tc;
            }
        }
        off += (size_t)t->n_elems;
    }
    rc = 0;
out:
    free(hbuf);
    return rc;
}

struct model *model_load(const char *path, enum model_load_format fmt, char *err,
                         size_t err_len)
{
    struct mf_header h;
    struct model *m = NULL;
    float **ptrs = NULL;
    uint8_t *native = NULL;  /* [n_desc] 1: computed on as stored in the map */
    uint32_t *types = NULL;
    const void **datas = NULL;
    mono_ns t0 = clock_now_ns();
    if (fmt != MODEL_LOAD_MMAP && fmt != MODEL_LOAD_READ) {
        snprintf(err, err_len, "unknown load format %d", (int)fmt);
        return NULL;
    }
    if (header_open(&h, path, fmt, err, err_len))
        return NULL;
    m = xcalloc(1, sizeof *m);
    m->cfg = h.cfg;
    m->file_dtype = h.file_dtype;
    m->load.file_bytes = h.file_bytes;
    ptrs = xcalloc((size_t)h.n_desc, sizeof *ptrs);
    native = xcalloc((size_t)h.n_desc, sizeof *native);
    types = xcalloc((size_t)h.n_desc, sizeof *types);
    datas = xcalloc((size_t)h.n_desc, sizeof *datas);

    /* Which tensors live in owned memory: everything for READ; for MMAP the ones not computed on
     * as stored (1-D non-f32 ones) and any f32 tensor that is not 4-byte aligned in the map. */
    uint64_t total_elems = 0, owned_elems = 0, native_elems = 0;
    for (int i = 0; i < h.n_desc; i++) {
        const struct gguf_tensor_info *t = h.ti[i];
        total_elems += t->n_elems;
        if (fmt == MODEL_LOAD_MMAP && tensor_native(&h.desc[i], t->type)) {
            m->weight_bytes += t->n_bytes;
            native_elems += t->n_elems;
            continue;
        }
        m->weight_bytes += t->n_elems * sizeof(float);
        int in_place = fmt == MODEL_LOAD_MMAP && t->type == GGML_TYPE_F32 &&
                       ((uintptr_t)t->data % sizeof(float)) == 0;
        if (!in_place)
            owned_elems += t->n_elems;
    }
    size_t owned_bytes;
    if (owned_elems > SIZE_MAX / sizeof(float) ||
        size_mul_ok((size_t)owned_elems, sizeof(float), &owned_bytes)) {
        snprintf(err, err_len, "%s: weights too large for this machine", path);
        goto fail;
    }
    if (owned_elems) {
        m->owned = bigmem_alloc(owned_bytes, 0, NULL); /* faulted in by the conversion */
        if (!m->owned) {
            snprintf(err, err_len, "%s: cannot allocate %zu bytes of weights: %s", path,
                     owned_bytes, strerror(errno));
            goto fail;
        }
        m->owned_floats = (size_t)owned_elems;
    }
    mono_ns convert_ns = 0, touch_ns = 0;
    if (fmt == MODEL_LOAD_MMAP) {
        for (int i = 0; i < h.n_desc; i++) {
            const struct gguf_tensor_info *t = h.ti[i];
            if (t->type == GGML_TYPE_F32 && ((uintptr_t)t->data % sizeof(float)) == 0)
                ptrs[i] = (float *)(uintptr_t)t->data;
            if (tensor_native(&h.desc[i], t->type))
                native[i] = 1;
        }
        /* Start reading the whole file ahead, as llama.cpp does for its mmap (the faults below
         * then wait on I/O already under way instead of issuing it page by page). */
        madvise(h.map, (size_t)h.file_bytes, MADV_WILLNEED);
        m->load.open_ns = clock_now_ns() - t0;
        touch_ns = touch_pages(&h, ptrs, native);
        for (int i = 0; i < h.n_desc; i++)
            if (check_blocks(&h, i, h.ti[i]->data, path, err, err_len))
                goto fail;
        convert_ns = convert_owned(&h, m, ptrs, native);
    } else {
        int corrupt = 0;
        if (load_read(&h, m, ptrs, &convert_ns, &corrupt, path, err, err_len)) {
            if (corrupt)
                goto fail;
            goto read_fail;
        }
        /* open_ns covers open + header + read() of the data, as model.h defines it. */
        m->load.open_ns = clock_now_ns() - t0 - convert_ns;
    }
    m->load.touch_ns = touch_ns;
    m->load.convert_ns = convert_ns;
    model_bind_weights(m, ptrs);
    if (native_elems) {
        for (int i = 0; i < h.n_desc; i++) {
            types[i] = native[i] ? h.ti[i]->type : GGML_TYPE_F32;
            datas[i] = native[i] ? (const void *)h.ti[i]->data : (const void *)ptrs[i];
        }
        model_bind_types(m, datas, types);
    }
    m->tok = h.tok; /* moved */
    memset(&h.tok, 0, sizeof h.tok);
    /* Keep the map only if weights point into it. */
    int any_in_place = owned_elems < total_elems;
    if (any_in_place) {
        m->map = h.map;
        m->map_bytes = (size_t)h.file_bytes;
        h.map = NULL;
    }
    if (h.n_unused)
        log_warn("model", "%s: ignoring %" PRIu64 " tensor(s) not used by %s (first: %s)", path,
                 h.n_unused, model_arch_name(h.cfg.arch), h.first_unused);
    free(ptrs);
    free(native);
    free(types);
    free(datas);
    mf_header_free(&h);
    return m;

read_fail:
    snprintf(err, err_len, "cannot read %s: %s", path, strerror(errno));
fail:
    free(ptrs);
    free(native);
    free(types);
    free(datas);
    model_free(m);
    mf_header_free(&h);
    return NULL;
}
