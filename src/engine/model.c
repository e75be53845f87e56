/* model: presets, tensor list in file order, deterministic random weights, weight binding.
 * File I/O lives in model_file.c (GGUF through gguf.c); compute lives in forward.c. */
#include "engine/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/bigmem.h"
#include "engine/gguf.h"
#include "engine/quant.h"
#include "util/buf.h"

struct preset {
    const char *name;
    struct model_config cfg;
};

/* Shapes of the real models (config.json of each), plus two for tests and benchmarks. */
static const struct preset presets[] = {
    {"tiny",
     {MODEL_ARCH_LLAMA, "slmprobe-tiny", 1024, 256, 4, 4, 2, 64, 688, 2048, 10000.0f, 1e-5f, 0, 0,
      256, 257}},
    /* ~28M params (111 MB f32): larger than the CPU caches, so decode is bandwidth-bound and
     * batching pays as on real models, yet quick enough for tests under ASan. */
    {"mini",
     {MODEL_ARCH_LLAMA, "slmprobe-mini", 4096, 512, 8, 8, 4, 64, 1408, 2048, 10000.0f, 1e-5f, 0, 0,
      256, 257}},
    {"small",
     {MODEL_ARCH_LLAMA, "slmprobe-small", 32000, 1024, 12, 16, 4, 64, 2816, 4096, 10000.0f, 1e-5f,
      0, 0, 256, 257}},
    {"qwen2.5-0.5b",
     {MODEL_ARCH_QWEN2, "Qwen2.5-0.5B (random weights)", 151936, 896, 24, 14, 2, 64, 4864, 32768,
      1000000.0f, 1e-6f, 1, 1, 256, 257}},
    {"qwen2.5-1.5b",
     {MODEL_ARCH_QWEN2, "Qwen2.5-1.5B (random weights)", 151936, 1536, 28, 12, 2, 128, 8960, 32768,
      1000000.0f, 1e-6f, 1, 1, 256, 257}},
    {"phi-3-mini",
     {MODEL_ARCH_LLAMA, "Phi-3-mini-4k (random weights)", 32064, 3072, 32, 32, 32, 96, 8192, 4096,
      10000.0f, 1e-5f, 0, 0, 256, 257}},
};

int model_preset(const char *name, struct model_config *out)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (!strcmp(presets[i].name, name)) {
            *out = presets[i].cfg;
            return 0;
        }
    }
    return -1;
}

const char *model_preset_names(void)
{
    return "tiny, mini, small, qwen2.5-0.5b, qwen2.5-1.5b, phi-3-mini";
}

int model_config_validate(const struct model_config *c, char *err, size_t err_len)
{
    const char *why = NULL;
    if (c->n_vocab < 258 || c->n_vocab > 1 << 22)
        why = "vocabulary size must be in [258, 4194304]";
    else if (c->n_embd < 1 || c->n_embd > 65536 || c->n_layer < 1 || c->n_layer > 1024)
        why = "hidden size or layer count out of range";
    else if (c->n_head < 1 || c->n_head_kv < 1 || c->n_head % c->n_head_kv)
        why = "head count must be a positive multiple of the KV head count";
    else if (c->head_dim < 2 || c->head_dim % 2 || c->head_dim > 1024)
        why = "head dim must be even and in [2, 1024]";
    else if (c->n_ff < 1 || c->n_ff > 1 << 20)
        why = "FFN size out of range";
    else if (c->n_ctx_train < 1 || c->n_ctx_train > 1 << 24)
        why = "context length out of range";
    else if (!(c->rope_theta > 0) || !(c->norm_eps > 0))
        why = "rope theta and norm epsilon must be positive";
    else if (c->bos_id < 0 || c->bos_id >= c->n_vocab || c->eos_id < 0 || c->eos_id >= c->n_vocab)
        why = "BOS/EOS ids out of the vocabulary";
    if (why) {
        snprintf(err, err_len, "invalid model config: %s", why);
        return -1;
    }
    return 0;
}

static void desc_set(struct model_tensor_desc *d, const char *name, int n_dims, uint64_t ne0,
                     uint64_t ne1, int is_norm)
{
    snprintf(d->name, sizeof d->name, "%s", name);
    d->n_dims = n_dims;
    d->ne[0] = ne0;
    d->ne[1] = n_dims == 2 ? ne1 : 1;
    d->is_norm = is_norm;
}

int model_tensors(const struct model_config *c, struct model_tensor_desc *d)
{
    int n = 0;
    uint64_t q_dim = (uint64_t)c->n_head * c->head_dim;
    uint64_t kv_dim = (uint64_t)c->n_head_kv * c->head_dim;
    char name[64];
#define ADD(nm, nd, a, b, norm)                                                                    \
    do {                                                                                           \
        if (d)                                                                                     \
            desc_set(&d[n], nm, nd, a, b, norm);                                                   \
        n++;                                                                                       \
    } while (0)
    ADD("token_embd.weight", 2, c->n_embd, c->n_vocab, 0);
    for (int l = 0; l < c->n_layer; l++) {
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        ADD(name, 1, c->n_embd, 1, 1);
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
        ADD(name, 2, c->n_embd, q_dim, 0);
        snprintf(name, sizeof name, "blk.%d.attn_k.weight", l);
        ADD(name, 2, c->n_embd, kv_dim, 0);
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
        ADD(name, 2, c->n_embd, kv_dim, 0);
        if (c->qkv_bias) {
            snprintf(name, sizeof name, "blk.%d.attn_q.bias", l);
            ADD(name, 1, q_dim, 1, 0);
            snprintf(name, sizeof name, "blk.%d.attn_k.bias", l);
            ADD(name, 1, kv_dim, 1, 0);
            snprintf(name, sizeof name, "blk.%d.attn_v.bias", l);
            ADD(name, 1, kv_dim, 1, 0);
        }
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", l);
        ADD(name, 2, q_dim, c->n_embd, 0);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        ADD(name, 1, c->n_embd, 1, 1);
        snprintf(name, sizeof name, "blk.%d.ffn_gate.weight", l);
        ADD(name, 2, c->n_embd, c->n_ff, 0);
        snprintf(name, sizeof name, "blk.%d.ffn_up.weight", l);
        ADD(name, 2, c->n_embd, c->n_ff, 0);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        ADD(name, 2, c->n_ff, c->n_embd, 0);
    }
    ADD("output_norm.weight", 1, c->n_embd, 1, 1);
    if (!c->tied_embeddings)
        ADD("output.weight", 2, c->n_embd, c->n_vocab, 0);
#undef ADD
    return n;
}

uint64_t model_n_params(const struct model_config *c)
{
    int n = model_tensors(c, NULL);
    struct model_tensor_desc *d = xcalloc((size_t)n, sizeof *d);
    model_tensors(c, d);
    uint64_t total = 0;
    for (int i = 0; i < n; i++)
        total += d[i].ne[0] * d[i].ne[1];
    free(d);
    return total;
}

uint64_t model_kv_bytes_per_token(const struct model_config *c, int dtype_bytes)
{
    return 2ull * (uint64_t)c->n_layer * (uint64_t)c->n_head_kv * (uint64_t)c->head_dim *
           (uint64_t)dtype_bytes;
}

/* splitmix64: a fast, well-mixed stream per tensor. */
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void model_fill_tensor(uint64_t seed, int i_tensor, const struct model_tensor_desc *d, float *out)
{
    uint64_t s = seed * 0x100000001B3ull + (uint64_t)i_tensor * 0x9E3779B97F4A7C15ull + 1;
    uint64_t n = d->ne[0] * d->ne[1];
    /* Uniform in [-a, a] with variance 1/fan_in (a = sqrt(3/fan_in)); embeddings get unit-ish
     * scale so hidden states are not tiny; norms are 1 +- 0.1. Values are exact in f16's range. */
    float a;
    float base = 0.0f;
    if (d->is_norm) {
        a = 0.1f;
        base = 1.0f;
    } else if (!strcmp(d->name, "token_embd.weight")) {
        a = 1.0f;
    } else if (d->n_dims == 1) {
        a = 0.02f; /* biases */
    } else {
        a = sqrtf(3.0f / (float)d->ne[0]);
    }
    for (uint64_t i = 0; i < n; i++) {
        double u = (double)(splitmix64(&s) >> 11) * (1.0 / 9007199254740992.0); /* [0,1) */
        out[i] = base + a * (float)(2.0 * u - 1.0);
    }
}

void model_bind_weights(struct model *m, float *const *p)
{
    const struct model_config *c = &m->cfg;
    free(m->w.layers);
    m->w.layers = xcalloc((size_t)c->n_layer, sizeof *m->w.layers);
    int i = 0;
    m->w.token_embd = p[i++];
    for (int l = 0; l < c->n_layer; l++) {
        struct layer_weights *L = &m->w.layers[l];
        L->attn_norm = p[i++];
        L->wq = p[i++];
        L->wk = p[i++];
        L->wv = p[i++];
        if (c->qkv_bias) {
            L->bq = p[i++];
            L->bk = p[i++];
            L->bv = p[i++];
        }
        L->wo = p[i++];
        L->ffn_norm = p[i++];
        L->w_gate = p[i++];
        L->w_up = p[i++];
        L->w_down = p[i++];
    }
    m->w.output_norm = p[i++];
    m->w.output = c->tied_embeddings ? m->w.token_embd : p[i++];
    m->w.m_embd = (struct weight_mat){m->w.token_embd, GGML_TYPE_F32};
    m->w.m_output = (struct weight_mat){m->w.output, GGML_TYPE_F32};
    for (int l = 0; l < c->n_layer; l++) {
        struct layer_weights *L = &m->w.layers[l];
        L->mq = (struct weight_mat){L->wq, GGML_TYPE_F32};
        L->mk = (struct weight_mat){L->wk, GGML_TYPE_F32};
        L->mv = (struct weight_mat){L->wv, GGML_TYPE_F32};
        L->mo = (struct weight_mat){L->wo, GGML_TYPE_F32};
        L->m_gate = (struct weight_mat){L->w_gate, GGML_TYPE_F32};
        L->m_up = (struct weight_mat){L->w_up, GGML_TYPE_F32};
        L->m_down = (struct weight_mat){L->w_down, GGML_TYPE_F32};
    }
}

/* Points mat (and its float view fv) at tensor data stored as type. */
static void bind_mat(struct weight_mat *mat, const float **fv, const void *data, uint32_t type)
{
    mat->data = data;
    mat->type = type;
    *fv = type == GGML_TYPE_F32 ? data : NULL;
}

void model_bind_types(struct model *m, const void *const *data, const uint32_t *types)
{
    const struct model_config *c = &m->cfg;
    int i = 0;
    bind_mat(&m->w.m_embd, &m->w.token_embd, data[i], types[i]);
    i++;
    for (int l = 0; l < c->n_layer; l++) {
        struct layer_weights *L = &m->w.layers[l];
        i++; /* attn_norm */
        bind_mat(&L->mq, &L->wq, data[i], types[i]);
        i++;
        bind_mat(&L->mk, &L->wk, data[i], types[i]);
        i++;
        bind_mat(&L->mv, &L->wv, data[i], types[i]);
        i++;
        if (c->qkv_bias)
            i += 3;
        bind_mat(&L->mo, &L->wo, data[i], types[i]);
        i++;
        i++; /* ffn_norm */
        bind_mat(&L->m_gate, &L->w_gate, data[i], types[i]);
        i++;
        bind_mat(&L->m_up, &L->w_up, data[i], types[i]);
        i++;
        bind_mat(&L->m_down, &L->w_down, data[i], types[i]);
        i++;
    }
    i++; /* output_norm */
    if (c->tied_embeddings) {
        m->w.m_output = m->w.m_embd;
        m->w.output = m->w.token_embd;
    } else {
        bind_mat(&m->w.m_output, &m->w.output, data[i], types[i]);
    }
}

const char *model_dtype_str(enum model_dtype d)
{
    switch (d) {
    case MODEL_DTYPE_F32:
        return "f32";
    case MODEL_DTYPE_F16:
        return "f16";
    case MODEL_DTYPE_Q4_0:
        return "q4_0";
    case MODEL_DTYPE_Q8_0:
        return "q8_0";
    case MODEL_DTYPE_BF16:
        return "bf16";
    case MODEL_DTYPE_Q4_K_M:
        return "q4_k_m";
    case MODEL_DTYPE_Q6_K:
        return "q6_k";
    }
    return "?";
}

const char *model_file_type_name(int file_type)
{
    /* llama.h's enum llama_ftype. 33-35 (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) were removed from
     * llama.cpp and are named as it last named them; 5 and 6 (the old Q4_2, Q4_3) are not. */
    static const char *const names[] = {
        [0] = "f32",           [1] = "f16",       [2] = "q4_0",    [3] = "q4_1",
        [4] = "q4_1_some_f16", [7] = "q8_0",      [8] = "q5_0",    [9] = "q5_1",
        [10] = "q2_k",         [11] = "q3_k_s",   [12] = "q3_k_m", [13] = "q3_k_l",
        [14] = "q4_k_s",       [15] = "q4_k_m",   [16] = "q5_k_s", [17] = "q5_k_m",
        [18] = "q6_k",         [19] = "iq2_xxs",  [20] = "iq2_xs", [21] = "q2_k_s",
        [22] = "iq3_xs",       [23] = "iq3_xxs",  [24] = "iq1_s",  [25] = "iq4_nl",
        [26] = "iq3_s",        [27] = "iq3_m",    [28] = "iq2_s",  [29] = "iq2_m",
        [30] = "iq4_xs",       [31] = "iq1_m",    [32] = "bf16",   [33] = "q4_0_4_4",
        [34] = "q4_0_4_8",     [35] = "q4_0_8_8", [36] = "tq1_0",  [37] = "tq2_0",
        [38] = "mxfp4_moe",
    };
    if (file_type < 0 || file_type >= (int)(sizeof names / sizeof names[0]))
        return NULL;
    return names[file_type];
}

int model_dtype_parse(const char *name, enum model_dtype *out)
{
    static const enum model_dtype all[] = {MODEL_DTYPE_F32,  MODEL_DTYPE_F16,  MODEL_DTYPE_BF16,
                                           MODEL_DTYPE_Q8_0, MODEL_DTYPE_Q4_0, MODEL_DTYPE_Q4_K_M,
                                           MODEL_DTYPE_Q6_K};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(name, model_dtype_str(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

const char *model_dtype_names(void)
{
    return "f32|f16|bf16|q8_0|q4_0|q4_k_m|q6_k";
}

/* llama-quantize's fallback for a type whose block does not divide a row of n_in values. */
static uint32_t kquant_fallback(uint32_t type, uint64_t n_in)
{
    if (n_in % QUANT_QK_K == 0)
        return type;
    type = type == GGML_TYPE_Q4_K ? GGML_TYPE_Q5_0 : GGML_TYPE_Q8_0;
    return n_in % QUANT_QK8_0 ? GGML_TYPE_F16 : type;
}

uint32_t model_dtype_matrix_type(enum model_dtype d, uint64_t n_in)
{
    switch (d) {
    case MODEL_DTYPE_F16:
        return GGML_TYPE_F16;
    case MODEL_DTYPE_BF16:
        return GGML_TYPE_BF16;
    case MODEL_DTYPE_Q8_0:
        return n_in % QUANT_QK8_0 ? GGML_TYPE_F16 : GGML_TYPE_Q8_0;
    case MODEL_DTYPE_Q4_0:
        return n_in % QUANT_QK4_0 ? GGML_TYPE_F16 : GGML_TYPE_Q4_0;
    case MODEL_DTYPE_Q4_K_M:
        return kquant_fallback(GGML_TYPE_Q4_K, n_in);
    case MODEL_DTYPE_Q6_K:
        return kquant_fallback(GGML_TYPE_Q6_K, n_in);
    default:
        return GGML_TYPE_F32;
    }
}

/* llama-quant.cpp's use_more_bits. */
static int use_more_bits(int i_layer, int n_layer)
{
    return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2;
}

uint32_t model_tensor_type(const struct model_config *cfg, const struct model_tensor_desc *t,
                           enum model_dtype d)
{
    if (t->n_dims != 2)
        return GGML_TYPE_F32;
    if (d != MODEL_DTYPE_Q4_K_M)
        return model_dtype_matrix_type(d, t->ne[0]);
    uint64_t n_in = t->ne[0];
    int is_output = !strcmp(t->name, "output.weight") ||
                    (cfg->tied_embeddings && !strcmp(t->name, "token_embd.weight"));
    if (is_output) {
        if (n_in % QUANT_QK_K == 0)
            return GGML_TYPE_Q6_K;
        return n_in % QUANT_QK8_0 ? GGML_TYPE_F16 : GGML_TYPE_Q8_0;
    }
    int i_layer = -1;
    uint32_t type = GGML_TYPE_Q4_K;
    if (sscanf(t->name, "blk.%d.", &i_layer) == 1 &&
        (strstr(t->name, ".attn_v.weight") || strstr(t->name, ".ffn_down.weight")) &&
        use_more_bits(i_layer, cfg->n_layer))
        type = GGML_TYPE_Q6_K;
    return kquant_fallback(type, n_in);
}

struct model *model_new_random(const struct model_config *cfg, uint64_t seed, char *err,
                               size_t err_len)
{
    if (model_config_validate(cfg, err, err_len))
        return NULL;
    struct model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    int n = model_tensors(cfg, NULL);
    struct model_tensor_desc *d = xcalloc((size_t)n, sizeof *d);
    model_tensors(cfg, d);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)(d[i].ne[0] * d[i].ne[1]);
    m->owned = bigmem_alloc(total * sizeof(float), 0, NULL);
    if (!m->owned) {
        snprintf(err, err_len, "cannot allocate %zu bytes of weights: %s", total * sizeof(float),
                 strerror(errno));
        free(d);
        free(m);
        return NULL;
    }
    m->owned_floats = total;
    float **ptrs = xcalloc((size_t)n, sizeof *ptrs);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        ptrs[i] = m->owned + off;
        model_fill_tensor(seed, i, &d[i], ptrs[i]);
        off += (size_t)(d[i].ne[0] * d[i].ne[1]);
    }
    model_bind_weights(m, ptrs);
    m->weight_bytes = total * sizeof(float);
    m->file_dtype = MODEL_DTYPE_F32;
    free(ptrs);
    free(d);
    if (tokenizer_init_default(&m->tok, cfg->n_vocab) != 0) {
        snprintf(err, err_len, "cannot build the default vocabulary");
        model_free(m);
        return NULL;
    }
    return m;
}

void model_free(struct model *m)
{
    if (!m)
        return;
    if (m->map)
        munmap(m->map, m->map_bytes);
    bigmem_free(m->owned, m->owned_floats * sizeof(float));
    free(m->w.layers);
    tokenizer_free(&m->tok);
    free(m);
}
