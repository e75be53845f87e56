/* gguf: reader and writer for GGUF files (llama.cpp's model format, versions 2 and 3), plus the
 * f16 <-> f32 conversions the model loader needs. The reader validates the whole header before
 * handing anything out: magic, version, counts against the file size and hard caps, every string
 * length and array count, n_dims <= 4, element counts and byte sizes in checked 64-bit arithmetic,
 * each tensor's data inside the file and aligned, no duplicate keys or tensor names. It then hands
 * out views (pointer + length) into the caller's buffer; nothing is copied and nothing outlives
 * that buffer. The writer produces deterministic bytes and streams tensor data through one
 * buffered fd, so a multi-GB model never has to be in memory at once.
 * It does not interpret metadata (model_file.c does), dequantize quantized types, or handle
 * big-endian files or hosts.
 *
 * Reading (the buffer may be a prefix of the file, e.g. for read()-based loading):
 *
 *   struct gguf_file g;
 *   char err[256];
 *   if (gguf_parse(&g, map, map_len, file_bytes, err, sizeof err) != GGUF_OK) ...
 *   const struct gguf_kv *kv = gguf_find_kv(&g, "general.architecture");
 *   const struct gguf_tensor_info *t = gguf_find_tensor(&g, "token_embd.weight");
 *   ... t->data (NULL when outside the buffer), t->n_bytes ...
 *   gguf_file_free(&g);
 *
 * Writing:
 *
 *   struct gguf_writer w;
 *   gguf_writer_init(&w, 32);
 *   gguf_writer_add_str(&w, "general.architecture", "llama");   // ... metadata
 *   gguf_writer_add_tensor(&w, "token_embd.weight", 2, ne, GGML_TYPE_F32);  // ... every tensor
 *   gguf_writer_begin(&w, fd, err, sizeof err);        // writes header + tensor infos
 *   gguf_writer_data(&w, bytes, n, err, sizeof err);   // tensor data in order, any chunking
 *   gguf_writer_end(&w, err, sizeof err);              // checks every byte was written, flushes
 *   gguf_writer_free(&w);
 */
#ifndef SLM_GGUF_H
#define SLM_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
/* Hard caps on counts read from a file (real models have tens of KVs and < 10^4 tensors). */
#define GGUF_MAX_KV 1048576u
#define GGUF_MAX_TENSORS 1048576u

enum gguf_status {
    GGUF_OK = 0,
    GGUF_ERR_IO,         /* read/write failed (errno in the message) */
    GGUF_ERR_MAGIC,      /* not a GGUF file */
    GGUF_ERR_VERSION,    /* version other than 2 or 3 */
    GGUF_ERR_TRUNCATED,  /* a field runs past the end of the file */
    GGUF_ERR_LIMIT,      /* a count or length larger than the file or a hard cap */
    GGUF_ERR_TYPE,       /* unknown metadata value type or ggml tensor type */
    GGUF_ERR_SHAPE,      /* n_dims > 4, negative/overflowing dims, row not a multiple of block */
    GGUF_ERR_OFFSET,     /* tensor data outside the file or misaligned */
    GGUF_ERR_DUPLICATE,  /* duplicate key or tensor name */
    GGUF_ERR_ALIGNMENT,  /* general.alignment not a power-of-two uint32 */
    GGUF_ERR_INCOMPLETE, /* header continues past the buffer given (not an error of the file:
                            parse again with more of it) */
    GGUF_ERR_USAGE,      /* writer called out of order or with inconsistent sizes */
};
const char *gguf_status_str(enum gguf_status st);

/* Metadata value types (GGUF spec numbering). */
enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};
/* "uint8", ..., "array"; "?" for an unknown value. Static string. */
const char *gguf_type_str(enum gguf_type t);

/* ggml tensor types (ggml.h numbering; gaps are removed types). */
enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_MXFP4 = 39,
};
/* "F32", "Q4_K", ...; NULL for a type this module does not know. Static string. */
const char *ggml_type_name(uint32_t type);
/* Elements per block and bytes per block; 0 for an unknown type. */
int ggml_type_block(uint32_t type, uint32_t *blck_elems, uint32_t *blck_bytes);

/* A string inside the buffer: not NUL-terminated. */
struct gguf_str {
    const char *ptr;
    uint64_t len;
};

struct gguf_kv {
    struct gguf_str key;
    enum gguf_type type;
    /* Scalars and strings: value points at the encoded value (strings: at the uint64 length).
     * Arrays: arr_type, arr_n, and value points at the first element. */
    enum gguf_type arr_type;
    uint64_t arr_n;
    const unsigned char *value;
    uint64_t value_bytes; /* encoded size of the value (for arrays, of all elements) */
};

struct gguf_tensor_info {
    struct gguf_str name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* unused dims are 1 */
    uint32_t type;              /* enum ggml_type */
    uint64_t offset;            /* relative to the data section */
    uint64_t n_elems;
    uint64_t n_bytes;
    uint64_t file_offset;       /* absolute: data_offset + offset */
    const unsigned char *data;  /* view, or NULL when the buffer given does not reach it */
};

struct gguf_file {
    const unsigned char *base;
    uint64_t buf_bytes;  /* bytes of the file present at base */
    uint64_t file_bytes;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv;
    struct gguf_kv *kv;              /* [n_kv], owned */
    uint64_t n_tensors;
    struct gguf_tensor_info *tensors; /* [n_tensors] in file order, owned */
    uint64_t *tensor_sorted;         /* tensor indices sorted by name (lookup), owned */
    uint64_t header_bytes;           /* end of the tensor infos */
    uint64_t data_offset;            /* start of the data section (aligned) */
};

/* Parses and validates buf[0..buf_bytes), the first buf_bytes of a file of file_bytes bytes
 * (buf_bytes <= file_bytes). On GGUF_OK g holds views into buf (keep buf alive while using g).
 * GGUF_ERR_INCOMPLETE: the header runs past buf_bytes; call again with a longer prefix
 * (err says how many bytes are needed at least, *need_bytes too when not NULL). Any other status:
 * the file is invalid, err names what is wrong and where. g is left empty on failure.
 * need_bytes may be NULL. Any thread (no shared state). */
enum gguf_status gguf_parse(struct gguf_file *g, const void *buf, uint64_t buf_bytes,
                            uint64_t file_bytes, uint64_t *need_bytes, char *err, size_t err_len);
void gguf_file_free(struct gguf_file *g); /* NULL-safe; leaves g empty */

/* Lookups: NULL if absent. key/name are NUL-terminated. Tensor lookup is O(log n). */
const struct gguf_kv *gguf_find_kv(const struct gguf_file *g, const char *key);
const struct gguf_tensor_info *gguf_find_tensor(const struct gguf_file *g, const char *name);

/* Typed getters. Integers accept any integer type whose value fits; floats accept f32 and f64.
 * Return 0 on success, -1 if kv is NULL, of another type, or out of range. */
int gguf_kv_get_i64(const struct gguf_kv *kv, int64_t *out);
int gguf_kv_get_f64(const struct gguf_kv *kv, double *out);
int gguf_kv_get_bool(const struct gguf_kv *kv, int *out);
int gguf_kv_get_str(const struct gguf_kv *kv, struct gguf_str *out);
/* Array elements: -1 if kv is not an array of a compatible type or i >= arr_n.
 * _arr_str walks the array (O(i)); to read all strings use gguf_kv_arr_strs. */
int gguf_kv_arr_i64(const struct gguf_kv *kv, uint64_t i, int64_t *out);
int gguf_kv_arr_f64(const struct gguf_kv *kv, uint64_t i, double *out);
int gguf_kv_arr_str(const struct gguf_kv *kv, uint64_t i, struct gguf_str *out);
/* Fills out[0..arr_n) with views of a string array's elements in one pass. 0 or -1. */
int gguf_kv_arr_strs(const struct gguf_kv *kv, struct gguf_str *out);

/* ---- writer ---- */

struct gguf_writer {
    uint32_t alignment;
    struct buf meta;      /* serialized KV pairs */
    uint64_t n_kv;
    struct buf infos;     /* serialized tensor infos */
    uint64_t n_tensors;
    uint64_t *tensor_bytes;  /* [n_tensors] */
    char **tensor_names;     /* [n_tensors], owned (duplicate check) */
    char **kv_keys;          /* [n_kv], owned (duplicate check) */
    size_t cap_names;
    size_t cap_keys;
    uint64_t data_bytes;  /* size of the data section so far (aligned ends) */
    /* streaming state */
    int fd;
    unsigned char *out;
    size_t out_len, out_cap;
    uint64_t i_tensor;       /* tensor being written */
    uint64_t tensor_written; /* its bytes written so far */
    uint64_t file_bytes;     /* bytes handed to write() or buffered */
    enum gguf_status st;     /* first error; sticky */
};

/* alignment: power of two (0 = GGUF_DEFAULT_ALIGNMENT); written as general.alignment only if the
 * caller adds that key (add it with the same value). Never fails. */
void gguf_writer_init(struct gguf_writer *w, uint32_t alignment);
void gguf_writer_free(struct gguf_writer *w); /* NULL-safe; does not close fd */

/* Metadata, in the order given (keys must be unique; a duplicate makes begin fail with
 * GGUF_ERR_DUPLICATE). Strings are copied. */
void gguf_writer_add_u32(struct gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_add_i32(struct gguf_writer *w, const char *key, int32_t v);
void gguf_writer_add_u64(struct gguf_writer *w, const char *key, uint64_t v);
void gguf_writer_add_f32(struct gguf_writer *w, const char *key, float v);
void gguf_writer_add_bool(struct gguf_writer *w, const char *key, int v);
void gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *v);
void gguf_writer_add_arr_str(struct gguf_writer *w, const char *key, const char *const *v,
                             uint64_t n);
void gguf_writer_add_arr_f32(struct gguf_writer *w, const char *key, const float *v, uint64_t n);
void gguf_writer_add_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, uint64_t n);

/* Declares the next tensor (data must later come in this order). ne has n_dims entries (1..4).
 * Errors (duplicate name, bad shape, unknown type) are reported by begin. */
void gguf_writer_add_tensor(struct gguf_writer *w, const char *name, uint32_t n_dims,
                            const uint64_t *ne, uint32_t type);

/* Writes the header and tensor infos to fd (at its current position, expected 0) and padding to
 * the data section. GGUF_OK or the first error with err. */
enum gguf_status gguf_writer_begin(struct gguf_writer *w, int fd, char *err, size_t err_len);
/* Appends tensor data: the bytes of tensor 0, then tensor 1, ... in any chunking; padding
 * between tensors is written automatically. More bytes than declared -> GGUF_ERR_USAGE. */
enum gguf_status gguf_writer_data(struct gguf_writer *w, const void *data, size_t n, char *err,
                                  size_t err_len);
/* Checks every declared byte arrived, flushes. GGUF_OK or the first error. Does not fsync/close. */
enum gguf_status gguf_writer_end(struct gguf_writer *w, char *err, size_t err_len);

/* ---- f16 ---- */

/* IEEE binary16 <-> binary32. f32_to_f16 rounds to nearest even; overflow gives +-inf, NaN stays
 * NaN (quiet, top payload bits kept), subnormals are exact both ways. */
uint16_t gguf_f32_to_f16(float f);
float gguf_f16_to_f32(uint16_t h);
void gguf_f32_to_f16_row(const float *in, uint16_t *out, size_t n);
void gguf_f16_to_f32_row(const uint16_t *in, float *out, size_t n);

#endif
