/* fuzz_gguf: libFuzzer target for the GGUF reader (engine/gguf.c): parses the input as a whole
 * file and as the prefix of a larger one, then reads every metadata value through the typed
 * getters and looks every tensor up by name. Checks that a parse that succeeds gives tensor views
 * inside the buffer. The structure-aware mutator keeps a valid header (magic "GGUF", version 3,
 * small tensor and metadata counts) and lets libFuzzer mutate the tables behind it, so that
 * inputs get past the magic and count checks into the key/value and tensor-info parsers.
 * fuzz-sources: src/engine/gguf.c src/util/buf.c */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/gguf.h"

#define FUZZ_GGUF_HEAD_BYTES 24 /* magic, version, n_tensors (u64), n_kv (u64) */

static void fuzz_gguf_read(const struct gguf_file *g, const uint8_t *data, size_t size)
{
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct gguf_kv *kv = &g->kv[i];
        int64_t v;
        double d;
        int b;
        struct gguf_str s;
        (void)gguf_kv_get_i64(kv, &v);
        (void)gguf_kv_get_f64(kv, &d);
        (void)gguf_kv_get_bool(kv, &b);
        (void)gguf_kv_get_str(kv, &s);
        for (uint64_t k = 0; k < kv->arr_n && k < 4; k++) {
            (void)gguf_kv_arr_i64(kv, k, &v);
            (void)gguf_kv_arr_f64(kv, k, &d);
            (void)gguf_kv_arr_str(kv, k, &s);
        }
        if (kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_STRING && kv->arr_n <= 4096) {
            static struct gguf_str strs[4096];
            (void)gguf_kv_arr_strs(kv, strs);
        }
        char key[256];
        size_t n = kv->key.len < sizeof key - 1 ? (size_t)kv->key.len : sizeof key - 1;
        memcpy(key, kv->key.ptr, n);
        key[n] = 0;
        (void)gguf_find_kv(g, key);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct gguf_tensor_info *t = &g->tensors[i];
        if (t->data && ((const uint8_t *)t->data < data || t->n_bytes > size ||
                        (const uint8_t *)t->data + t->n_bytes > data + size))
            __builtin_trap(); /* a view outside the buffer */
        char name[256];
        size_t n = t->name.len < sizeof name - 1 ? (size_t)t->name.len : sizeof name - 1;
        memcpy(name, t->name.ptr, n);
        name[n] = 0;
        (void)gguf_find_tensor(g, name);
        (void)ggml_type_name(t->type);
    }
}

static void fuzz_gguf_parse(const uint8_t *data, size_t size, uint64_t file_bytes)
{
    struct gguf_file g;
    memset(&g, 0, sizeof g);
    char err[256] = "";
    uint64_t need = 0;
    enum gguf_status st = gguf_parse(&g, data, size, file_bytes, &need, err, sizeof err);
    if (st == GGUF_OK)
        fuzz_gguf_read(&g, data, size);
    else if (!err[0] || !gguf_status_str(st))
        __builtin_trap();
    gguf_file_free(&g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_gguf_parse(data, size, size);
    fuzz_gguf_parse(data, size, (uint64_t)size + (1ull << 32)); /* a prefix of a larger file */
    return 0;
}

#ifndef FUZZ_REPLAY
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

static void fuzz_gguf_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Mutates the tables; keeps magic and version valid and the counts small most of the time. */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    if (max_size < FUZZ_GGUF_HEAD_BYTES)
        return LLVMFuzzerMutate(data, size, max_size);
    if (size < FUZZ_GGUF_HEAD_BYTES) {
        memset(data + size, 0, FUZZ_GGUF_HEAD_BYTES - size);
        size = FUZZ_GGUF_HEAD_BYTES;
    }
    uint8_t head[FUZZ_GGUF_HEAD_BYTES];
    memcpy(head, data, sizeof head);
    size_t n = LLVMFuzzerMutate(data + FUZZ_GGUF_HEAD_BYTES, size - FUZZ_GGUF_HEAD_BYTES,
                                max_size - FUZZ_GGUF_HEAD_BYTES);
    memcpy(data, head, sizeof head);
    memcpy(data, "GGUF\3\0\0\0", 8);
    switch (seed % 8) {
    case 0: /* a tensor count near the real one */
        fuzz_gguf_put_u64(data + 8, (seed >> 3) % 64);
        break;
    case 1: /* a metadata count near the real one */
        fuzz_gguf_put_u64(data + 16, (seed >> 3) % 64);
        break;
    case 2: /* version 2 (32-bit counts in v1 are not read; v2 is) */
        data[4] = 2;
        break;
    default: /* keep the seed's counts */
        break;
    }
    return FUZZ_GGUF_HEAD_BYTES + n;
}
#endif
