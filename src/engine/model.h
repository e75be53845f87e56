/* model: hyperparameters (struct model_config), presets with the real models' shapes, and the
 * weights (struct model_weights: f32 views, row-major, one shape comment per tensor).
 * Weights come from a GGUF file (model_load, in model_file.c) or are generated in memory from a
 * seed (model_new_random, for tests). This module does no arithmetic on activations (forward.c)
 * and no tokenization (tokenizer.c).
 *
 * Layout convention: a linear layer with n_in inputs and n_out outputs is stored row-major as
 * [n_out][n_in] (GGUF/ggml ne = {n_in, n_out}); y = x W^T.
 *
 * Random weights are deterministic: tensor i (in model_tensor order) is filled by
 * model_fill_tensor(seed, i, ...), so a file written with a seed and model_new_random with the same
 * seed hold the same f32 values. */
#ifndef SLM_MODEL_H
#define SLM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/tokenizer.h"
#include "util/clock.h"

enum model_arch { MODEL_ARCH_LLAMA = 0, MODEL_ARCH_QWEN2 };

/* How RoPE pairs dimensions: llama.cpp's NORM (adjacent pairs, llama) or NEOX (halves, qwen2). */
enum rope_mode { ROPE_MODE_NORM = 0, ROPE_MODE_NEOX };

/* Storage type of a file's 2-D weight matrices; the values are llama.cpp's general.file_type
 * (LLAMA_FTYPE_ALL_F32, MOSTLY_F16, MOSTLY_Q4_0, MOSTLY_Q8_0, MOSTLY_Q4_K_M, MOSTLY_Q6_K,
 * MOSTLY_BF16). */
enum model_dtype {
    MODEL_DTYPE_F32 = 0,
    MODEL_DTYPE_F16 = 1,
    MODEL_DTYPE_Q4_0 = 2,
    MODEL_DTYPE_Q8_0 = 7,
    MODEL_DTYPE_Q4_K_M = 15,
    MODEL_DTYPE_Q6_K = 18,
    MODEL_DTYPE_BF16 = 32,
};
/* "f32", "f16", "q4_0", "q8_0", "q4_k_m", "q6_k", "bf16"; "?" otherwise. Static string. */
const char *model_dtype_str(enum model_dtype d);
/* The name above -> *out. 0, or -1 if unknown. */
int model_dtype_parse(const char *name, enum model_dtype *out);
/* llama.cpp's name of a general.file_type value (its llama_ftype, lower case: 17 -> "q5_k_m",
 * 30 -> "iq4_xs"), the names model_dtype_str gives for the dtypes it shares; NULL for a value
 * llama.cpp does not define. Names the files users download, including mixes this runtime
 * cannot compute on. Static string. */
const char *model_file_type_name(int file_type);
/* "f32|f16|bf16|q8_0|q4_0|q4_k_m|q6_k", for usage and errors. Static string. */
const char *model_dtype_names(void);
/* ggml type of a 2-D matrix of dtype whose rows hold n_in values, for the single-type dtypes
 * (f16, bf16, q8_0, q4_0, q6_k): a block type whose block does not divide n_in falls back as
 * llama.cpp does (Q8_0/Q4_0 -> F16 like convert_hf_to_gguf.py; Q6_K -> Q8_0 -> F16 like
 * llama-quantize). q4_k_m: Q4_K with the same fallbacks; use model_tensor_type for the mix. */
uint32_t model_dtype_matrix_type(enum model_dtype d, uint64_t n_in);

/* A weight matrix as stored, for the forward pass: type F32 (data is const float *, 4-byte
 * aligned) or F16, BF16, Q8_0, Q5_0, Q4_0, Q6_K, Q5_K, Q4_K (quant.h; data points into the
 * mmap'd file, rows of quant_row_bytes(type, n_in) bytes). */
struct weight_mat {
    const void *data;
    uint32_t type;   /* enum ggml_type */
};

struct model_config {
    enum model_arch arch;
    char name[64];      /* general.name */
    int n_vocab;
    int n_embd;         /* hidden size */
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;       /* n_head * head_dim may differ from n_embd (phi-3: equal; fine either way) */
    int n_ff;           /* SwiGLU intermediate size */
    int n_ctx_train;    /* context length */
    float rope_theta;
    float norm_eps;     /* RMSNorm epsilon */
    int qkv_bias;       /* 1: q/k/v projections have biases (qwen2) */
    int tied_embeddings; /* 1: no output.weight, logits use token_embd */
    int bos_id;
    int eos_id;
};

struct layer_weights {
    const float *attn_norm; /* [n_embd] */
    const float *wq;        /* [n_head*head_dim][n_embd] */
    const float *wk;        /* [n_head_kv*head_dim][n_embd] */
    const float *wv;        /* [n_head_kv*head_dim][n_embd] */
    const float *bq;        /* [n_head*head_dim] or NULL */
    const float *bk;        /* [n_head_kv*head_dim] or NULL */
    const float *bv;        /* [n_head_kv*head_dim] or NULL */
    const float *wo;        /* [n_embd][n_head*head_dim] */
    const float *ffn_norm;  /* [n_embd] */
    const float *w_gate;    /* [n_ff][n_embd] */
    const float *w_up;      /* [n_ff][n_embd] */
    const float *w_down;    /* [n_embd][n_ff] */
    /* The seven matrices as stored (f32 ones point at the same floats as above; a quantised
     * one has its float pointer NULL): */
    struct weight_mat mq, mk, mv, mo, m_gate, m_up, m_down;
};

struct model_weights {
    const float *token_embd;    /* [n_vocab][n_embd] */
    struct layer_weights *layers; /* [n_layer], owned by struct model */
    const float *output_norm;   /* [n_embd] */
    const float *output;        /* [n_vocab][n_embd]; == token_embd when tied */
    struct weight_mat m_embd;   /* token_embd as stored (rows looked up, dequantised) */
    struct weight_mat m_output; /* output as stored (== m_embd when tied) */
};

/* Cold-start parts of loading, for the start-up log. */
struct model_load_stats {
    mono_ns open_ns;    /* open + validate header + mmap or read() */
    mono_ns touch_ns;   /* first touch of every weight page (mmap) */
    mono_ns convert_ns; /* tensors not used as stored -> f32 (f16: OpenMP team; huge pages) */
    uint64_t convert_bytes;  /* f32 bytes written by the conversion */
    int convert_threads;
    uint64_t file_bytes;
};

struct model {
    struct model_config cfg;
    struct model_weights w;
    struct tokenizer tok;
    enum model_dtype file_dtype;
    uint64_t weight_bytes;  /* bytes of f32 weights resident for compute */
    struct model_load_stats load;
    /* storage (private) */
    void *map;              /* mmap of the file, or NULL */
    size_t map_bytes;
    float *owned;           /* f32 storage (random, converted f16, or read()); bigmem.h */
    size_t owned_floats;
};

/* One tensor of the model, in file order. */
struct model_tensor_desc {
    char name[64];       /* "blk.3.attn_q.weight" */
    int n_dims;          /* 1 or 2 */
    uint64_t ne[2];      /* ggml order: ne[0] = contiguous (n_in), ne[1] = rows (n_out) */
    int is_norm;         /* filled with 1.0 + noise rather than scaled uniform */
};

/* Presets: "tiny", "small", "qwen2.5-0.5b", "qwen2.5-1.5b", "phi-3-mini". 0 or -1 if unknown. */
int model_preset(const char *name, struct model_config *out);
/* Comma-separated list of preset names, for --help and errors. Static string. */
const char *model_preset_names(void);

/* Checks a config's numbers (positive, divisible, sane sizes). 0, or -1 with a message. */
int model_config_validate(const struct model_config *cfg, char *err, size_t err_len);

/* Number of tensors and their descriptions in file order. descs may be NULL to count. */
int model_tensors(const struct model_config *cfg, struct model_tensor_desc *descs);

/* ggml type of tensor t in a file of dtype: 1-D tensors F32; q4_k_m follows llama-quantize's
 * llama_tensor_get_type for LLAMA_FTYPE_MOSTLY_Q4_K_M on a dense (non-MoE, non-Falcon) model:
 * Q4_K, except Q6_K for output.weight (token_embd.weight when tied) and for attn_v / ffn_down
 * of the layers use_more_bits picks (the first and last eighth, and every third between);
 * then rows not a multiple of 256 fall back Q4_K -> Q5_0, Q6_K -> Q8_0 (output.weight: Q8_0),
 * and to F16 where 32 does not divide them either. Other dtypes: model_dtype_matrix_type. */
uint32_t model_tensor_type(const struct model_config *cfg, const struct model_tensor_desc *t,
                           enum model_dtype d);

uint64_t model_n_params(const struct model_config *cfg);
/* 2 x layers x KV heads x head_dim x dtype_bytes. */
uint64_t model_kv_bytes_per_token(const struct model_config *cfg, int dtype_bytes);

/* Fills n floats of tensor index i_tensor (model_tensors order) deterministically from seed.
 * fan_in scales the uniform range (1/sqrt(fan_in)); norms get values near 1. */
void model_fill_tensor(uint64_t seed, int i_tensor, const struct model_tensor_desc *d, float *out);

/* In-memory model with random weights and the default byte tokenizer. Caller frees with
 * model_free. Returns NULL with err on an invalid config. */
struct model *model_new_random(const struct model_config *cfg, uint64_t seed, char *err,
                               size_t err_len);

/* Points w.* at consecutive tensors of a flat f32 array laid out in model_tensors order.
 * Used by model_new_random and by loaders. The layers array is allocated here. */
void model_bind_weights(struct model *m, float *const *tensor_ptrs);
/* After model_bind_weights: tensor i (model_tensors order) is stored as types[i] at data[i]
 * (a quantised matrix: its float view becomes NULL, its weight_mat points at data[i]). */
void model_bind_types(struct model *m, const void *const *data, const uint32_t *types);

void model_free(struct model *m); /* NULL-safe */

/* ---- model_file.c: GGUF files ---- */

enum model_load_format { MODEL_LOAD_MMAP = 0, MODEL_LOAD_READ };

/* Writes a GGUF v3 file: llama.cpp metadata for cfg->arch, the default vocabulary, and random
 * weights from seed (model_fill_tensor) in dtype. Same arguments give byte-identical files.
 * 0, or -1 with err. */
int model_write_gguf(const struct model_config *cfg, uint64_t seed, enum model_dtype dtype,
                     const char *path, char *err, size_t err_len);
/* The same with a given vocabulary (tokenizer.ggml.* keys as llama.cpp writes them, chat template
 * included); vocab->n_vocab must equal cfg->n_vocab. vocab NULL: slmprobe's own. */
int model_write_gguf_tok(const struct model_config *cfg, uint64_t seed, enum model_dtype dtype,
                         const struct tokenizer *vocab, const char *path, char *err,
                         size_t err_len);

/* Loads a GGUF file (ours, or one written by llama.cpp's tools with tensors of a supported type:
 * quant_supported_list(); arch llama or qwen2). Validates magic, version, counts, tensor offsets
 * and sizes against the file size in 64-bit arithmetic before trusting anything. MMAP: f32
 * tensors and F16/BF16/block-type matrices are used in place (struct weight_mat) and every page
 * is touched once (load.touch_ns); other tensors (1-D f16/bf16/quantised) are converted to
 * f32. READ: the file is read() into memory, every tensor as f32. NULL with err on failure (an
 * unsupported type names the tensor, its type and the supported list). Caller frees with
 * model_free. */
struct model *model_load(const char *path, enum model_load_format fmt, char *err,
                         size_t err_len);

#define MODEL_N_GGML_TYPES 40 /* ggml type ids are below this */

/* What `slmprobe model info` shows: a GGUF file's header checked exactly as model_load checks it
 * (config, every expected tensor with the right shape and type, tokenizer) without reading the
 * weights. */
struct model_file_info {
    struct model_config cfg;
    enum model_dtype file_dtype;
    int file_type;             /* general.file_type (llama.cpp's llama_ftype), -1 when absent */
    enum tok_kind tok_kind;
    char tok_model[16];        /* tokenizer.ggml.model as written in the file */
    uint32_t gguf_version;
    uint64_t file_bytes;
    uint64_t n_tensors;        /* in the file */
    uint64_t n_tensors_unused; /* in the file but not used (e.g. rope_freqs.weight) */
    uint64_t weight_bytes;     /* bytes resident for compute once loaded (f32, or as stored) */
    /* Type mix of the model's tensors: per ggml type id, tensors and bytes as stored. */
    uint32_t type_tensors[MODEL_N_GGML_TYPES];
    uint64_t type_bytes[MODEL_N_GGML_TYPES];
};
/* 0, or -1 with err (the validator's message). Any thread. */
int model_file_info(const char *path, struct model_file_info *out, char *err, size_t err_len);

/* "llama" / "qwen2" (GGUF general.architecture). Static string. */
const char *model_arch_name(enum model_arch arch);

#endif
