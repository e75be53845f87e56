/* model_cli: `slmprobe model init|info|presets`, creating GGUF model files with random weights
 * from a preset and describing model files. Results go to stdout, errors to stderr; exit 0 ok,
 * 1 failure, 2 usage. It does not load weights for `info` (header only) and never calls exit(). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/tok_hf.h"
#include "util/buf.h"
#include "util/clock.h"

static void usage_model(FILE *f)
{
    fprintf(f, "usage: slmprobe model <subcommand> [options]\n"
               "\n"
               "subcommands:\n"
               "  init      write a GGUF model file with random weights from a preset\n"
               "  info      describe a GGUF model file (shape, sizes, tokenizer)\n"
               "  presets   list the presets and their shapes\n"
               "\n"
               "Run 'slmprobe model <subcommand> --help' for its options.\n");
}

static void usage_init(FILE *f)
{
    fprintf(f,
            "usage: slmprobe model init --preset NAME -o FILE.gguf [--seed N]\n"
            "                           [--dtype f32|f16|bf16|q8_0|q4_0|q4_k_m|q6_k]\n"
            "                           [--tokenizer FILE]\n"
            "\n"
            "Writes a GGUF v3 file in llama.cpp's conventions (arch llama or qwen2) holding the\n"
            "preset's shape, slmprobe's byte-level vocabulary and deterministic random weights.\n"
            "The same preset, seed and dtype always give a byte-identical file.\n"
            "\n"
            "options:\n"
            "  --preset NAME     model shape, one of: %s\n"
            "  -o, --output FILE where to write (parent directories are created; the file is\n"
            "                    written to FILE.tmp.PID and renamed when complete)\n"
            "  --seed N          random seed for the weights (unsigned 64-bit, default 0)\n"
            "  --dtype TYPE      storage type of 2-D weight matrices: f32 (default), f16, bf16,\n"
            "                    q8_0, q4_0 (matrices whose rows do not divide into 32-value\n"
            "                    blocks fall back to f16, as llama.cpp's converter does);\n"
            "                    q4_k_m: llama-quantize's Q4_K_M mix (Q4_K; Q6_K for\n"
            "                    output.weight and for attn_v/ffn_down of the layers its\n"
            "                    use_more_bits rule picks; rows not a multiple of 256 fall back\n"
            "                    to Q5_0/Q8_0, then f16), general.file_type 15; q6_k: every\n"
            "                    matrix Q6_K (same fallbacks). k-quant scales by min/max, not\n"
            "                    llama.cpp's search. Norms and biases stay f32 as llama.cpp does\n"
            "  --tokenizer FILE  a Hugging Face tokenizer.json (byte-level BPE, or BPE with byte\n"
            "                    fallback): the model carries that vocabulary (its size replaces\n"
            "                    the preset's) as llama.cpp's tokenizer.ggml.* keys; BOS/EOS,\n"
            "                    add_bos_token and chat_template come from tokenizer_config.json\n"
            "                    beside it when present\n"
            "  -h, --help        this help\n"
            "\n"
            "Prints the path, bytes written, parameter count and time taken.\n",
            model_preset_names());
}

static void usage_info(FILE *f)
{
    fprintf(f,
            "usage: slmprobe model info [--json] FILE.gguf\n"
            "\n"
            "Validates a GGUF model file (ours, or a llama.cpp file of arch llama or qwen2 with\n"
            "tensors of type F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q6_K, Q5_K, Q4_K) without loading\n"
            "its weights, and prints: architecture, name, shape (hidden,\n"
            "layers, heads, KV heads, head dim, FFN, vocab, RoPE theta, context length),\n"
            "parameter count, file bytes, weight bytes resident once loaded (F16, BF16 and block\n"
            "type matrices as stored, others f32), KV cache bytes per token for f32 and f16 KV,\n"
            "the file's dtype (llama.cpp's name of general.file_type: q4_k_m, q5_k_m, ...),\n"
            "its type mix (tensors and bytes per ggml type) and the tokenizer kind.\n"
            "\n"
            "options:\n"
            "  --json       one JSON object instead: the same model fields under \"model\", and\n"
            "               the file's GGUF header as read: version, alignment, header and data\n"
            "               offsets, every metadata key with its type and value (arrays whole)\n"
            "               and every tensor's name, type, dims, offset and bytes\n"
            "               (docs/model-format.md lists the keys)\n"
            "  -h, --help   this help\n");
}

static void usage_presets(FILE *f)
{
    fprintf(f,
            "usage: slmprobe model presets\n"
            "\n"
            "Lists the presets accepted by 'model init --preset' with their shapes and parameter\n"
            "counts.\n"
            "\n"
            "options:\n"
            "  -h, --help   this help\n");
}

static int is_help(const char *a)
{
    return !strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "help");
}

/* "--name value" or "--name=value". Returns 1 if argv[*i] is this option (value set, *i advanced
 * past it), 0 if not, -1 if the value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char *short_name,
                     const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (!strncmp(a, name, n) && a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (strcmp(a, name) && (!short_name || strcmp(a, short_name)))
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

/* 1234567 -> "1.23 M" (decimal units, for counts) */
static const char *fmt_count(uint64_t v, char *out, size_t out_len)
{
    if (v >= 1000000000ull)
        snprintf(out, out_len, "%.2f B", (double)v / 1e9);
    else if (v >= 1000000ull)
        snprintf(out, out_len, "%.2f M", (double)v / 1e6);
    else if (v >= 1000ull)
        snprintf(out, out_len, "%.2f K", (double)v / 1e3);
    else
        snprintf(out, out_len, "%" PRIu64, v);
    return out;
}

/* bytes -> "12.3 MiB" */
static const char *fmt_bytes(uint64_t v, char *out, size_t out_len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = (double)v;
    int u = 0;
    while (x >= 1024.0 && u < 4) {
        x /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(out, out_len, "%" PRIu64 " B", v);
    else
        snprintf(out, out_len, "%.2f %s", x, units[u]);
    return out;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s || *s == '-' || *s == '+')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int parent_dir_make(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return 0;
    char *dir = xstrndup(path, (size_t)(slash - path));
    int rc = dir_make_all(dir);
    free(dir);
    return rc;
}

static int cmd_init(int argc, char **argv)
{
    const char *preset = NULL, *out = NULL, *seed_s = NULL, *dtype_s = NULL, *tok_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (is_help(a)) {
            usage_init(stdout);
            return 0;
        }
        if ((r = opt_value(argc, argv, &i, "--preset", NULL, &preset)) ||
            (r = opt_value(argc, argv, &i, "--output", "-o", &out)) ||
            (r = opt_value(argc, argv, &i, "--seed", NULL, &seed_s)) ||
            (r = opt_value(argc, argv, &i, "--dtype", NULL, &dtype_s)) ||
            (r = opt_value(argc, argv, &i, "--tokenizer", NULL, &tok_path))) {
            if (r < 0) {
                fprintf(stderr, "slmprobe model init: option %s needs a value\n", a);
                return 2;
            }
            continue;
        }
        fprintf(stderr, "slmprobe model init: unknown argument '%s' (see --help)\n", a);
        return 2;
    }
    struct model_config cfg;
    if (!preset) {
        fprintf(stderr, "slmprobe model init: --preset is required (one of: %s)\n",
                model_preset_names());
        return 2;
    }
    if (model_preset(preset, &cfg) != 0) {
        fprintf(stderr, "slmprobe model init: unknown preset '%s' (valid presets: %s)\n", preset,
                model_preset_names());
        return 2;
    }
    if (!out || !*out) {
        fprintf(stderr, "slmprobe model init: -o FILE.gguf is required\n");
        return 2;
    }
    uint64_t seed = 0;
    if (seed_s && parse_u64(seed_s, &seed)) {
        fprintf(stderr, "slmprobe model init: --seed must be an unsigned integer, got '%s'\n",
                seed_s);
        return 2;
    }
    enum model_dtype dtype = MODEL_DTYPE_F32;
    if (dtype_s && model_dtype_parse(dtype_s, &dtype)) {
        fprintf(stderr, "slmprobe model init: --dtype must be one of %s, got '%s'\n",
                model_dtype_names(), dtype_s);
        return 2;
    }
    if (parent_dir_make(out) != 0) {
        fprintf(stderr, "slmprobe model init: cannot write %s: cannot create its directory: %s\n",
                out, strerror(errno));
        return 1;
    }
    char err[512];
    mono_ns t0 = clock_now_ns();
    struct tokenizer vocab = {0};
    if (tok_path) {
        if (tok_hf_load(tok_path, &vocab, err, sizeof err)) {
            fprintf(stderr, "slmprobe model init: --tokenizer: %s\n", err);
            return 1;
        }
        cfg.n_vocab = vocab.n_vocab;
        cfg.bos_id = vocab.bos_id;
        cfg.eos_id = vocab.eos_id;
    }
    int wrc =
        model_write_gguf_tok(&cfg, seed, dtype, tok_path ? &vocab : NULL, out, err, sizeof err);
    tokenizer_free(&vocab);
    if (wrc != 0) {
        fprintf(stderr, "slmprobe model init: %s\n", err);
        return 1;
    }
    mono_ns dt = clock_now_ns() - t0;
    struct model_file_info info;
    if (model_file_info(out, &info, err, sizeof err) != 0) {
        fprintf(stderr, "slmprobe model init: wrote %s but cannot read it back: %s\n", out, err);
        return 1;
    }
    char b1[32], b2[32];
    uint64_t n_params = model_n_params(&cfg);
    printf("wrote %s\n", out);
    printf("  preset      %s (%s, arch %s)\n", preset, cfg.name, model_arch_name(cfg.arch));
    printf("  dtype       %s\n", model_dtype_str(dtype));
    printf("  seed        %" PRIu64 "\n", seed);
    printf("  params      %" PRIu64 " (%s)\n", n_params, fmt_count(n_params, b1, sizeof b1));
    printf("  bytes       %" PRIu64 " (%s)\n", info.file_bytes,
           fmt_bytes(info.file_bytes, b2, sizeof b2));
    printf("  time        %.3f s\n", ns_to_s(dt));
    return 0;
}

static const char *tok_kind_str(enum tok_kind k)
{
    switch (k) {
    case TOK_KIND_SLM:
        return "slmprobe byte-level (ids 0..255 are bytes)";
    case TOK_KIND_LLAMA_SPM:
        return "llama SentencePiece BPE (scores, byte fallback)";
    case TOK_KIND_GPT2:
        return "gpt2 byte-level BPE (merges, pre-tokenizer)";
    }
    return "?";
}

/* ---- model info --json ---- */

/* A header (metadata + tensor infos) over 1 GiB is refused rather than read into memory. */
#define INFO_JSON_MAX_HEADER_BYTES (1ull << 30)
/* The JSON goes to stdout in pieces of about INFO_JSON_FLUSH_BYTES; the buffer holds at most
 * one piece plus one value, and the largest value, a string of the header as hex, is under
 * 2 * INFO_JSON_MAX_HEADER_BYTES + 16, so the cap below is never reached. */
#define INFO_JSON_FLUSH_BYTES (64u << 10)
#define INFO_JSON_BUF_CAP_BYTES (4ull * INFO_JSON_MAX_HEADER_BYTES + (1u << 20))

/* Writes out b's bytes when there are enough of them (all of them with force). 0, or -1 on a
 * write error. */
static int info_flush(struct buf *b, int force)
{
    if (!force && b->len < INFO_JSON_FLUSH_BYTES)
        return 0;
    int rc = fwrite(b->data, 1, b->len, stdout) == b->len ? 0 : -1;
    buf_reset(b);
    return rc;
}

static uint64_t le_u64(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A GGUF string as JSON: a string when it is valid UTF-8, else {"hex": "..."} (JSON strings
 * cannot carry other bytes). */
static void json_gguf_str(struct buf *b, const char *p, uint64_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    uint64_t i = 0;
    while (i < n) {
        size_t l = utf8_valid_len(u + i, (size_t)(n - i));
        if (!l)
            break;
        i += l;
    }
    if (i == n) {
        buf_json_strn(b, p, (size_t)n);
        return;
    }
    buf_puts(b, "{\"hex\": \"");
    for (uint64_t k = 0; k < n; k++)
        buf_printf(b, "%02x", u[k]);
    buf_puts(b, "\"}");
}

static void json_float(struct buf *b, double v, int digits)
{
    if (isfinite(v))
        buf_printf(b, "%.*g", digits, v);
    else
        buf_puts(b, "null"); /* NaN and infinities have no JSON number */
}

/* One value of type t at p (at least the bytes gguf_parse validated); returns its size. */
static uint64_t json_gguf_value(struct buf *b, enum gguf_type t, const unsigned char *p)
{
    switch (t) {
    case GGUF_TYPE_UINT8:
        buf_printf(b, "%u", p[0]);
        return 1;
    case GGUF_TYPE_INT8:
        buf_printf(b, "%d", (int8_t)p[0]);
        return 1;
    case GGUF_TYPE_UINT16:
        buf_printf(b, "%u", (unsigned)le_u64(p, 2));
        return 2;
    case GGUF_TYPE_INT16:
        buf_printf(b, "%d", (int16_t)le_u64(p, 2));
        return 2;
    case GGUF_TYPE_UINT32:
        buf_printf(b, "%" PRIu32, (uint32_t)le_u64(p, 4));
        return 4;
    case GGUF_TYPE_INT32:
        buf_printf(b, "%" PRId32, (int32_t)(uint32_t)le_u64(p, 4));
        return 4;
    case GGUF_TYPE_UINT64:
        buf_printf(b, "%" PRIu64, le_u64(p, 8));
        return 8;
    case GGUF_TYPE_INT64:
        buf_printf(b, "%" PRId64, (int64_t)le_u64(p, 8));
        return 8;
    case GGUF_TYPE_BOOL:
        buf_puts(b, p[0] ? "true" : "false");
        return 1;
    case GGUF_TYPE_FLOAT32: {
        uint32_t u = (uint32_t)le_u64(p, 4);
        float f;
        memcpy(&f, &u, sizeof f);
        json_float(b, f, 9); /* 9 significant digits give the float back exactly */
        return 4;
    }
    case GGUF_TYPE_FLOAT64: {
        uint64_t u = le_u64(p, 8);
        double d;
        memcpy(&d, &u, sizeof d);
        json_float(b, d, 17);
        return 8;
    }
    case GGUF_TYPE_STRING: {
        uint64_t n = le_u64(p, 8);
        json_gguf_str(b, (const char *)p + 8, n);
        return 8 + n;
    }
    case GGUF_TYPE_ARRAY: /* gguf_parse refuses nested arrays */
    case GGUF_TYPE_COUNT:
        break;
    }
    buf_puts(b, "null");
    return 0;
}

static void json_gguf_kv(struct buf *b, const struct gguf_kv *kv, int *write_failed)
{
    buf_puts(b, "{\"key\": ");
    json_gguf_str(b, kv->key.ptr, kv->key.len);
    buf_printf(b, ", \"type\": \"%s\"", gguf_type_str(kv->type));
    if (kv->type != GGUF_TYPE_ARRAY) {
        buf_puts(b, ", \"value\": ");
        json_gguf_value(b, kv->type, kv->value);
        buf_putc(b, '}');
        return;
    }
    buf_printf(b, ", \"arr_type\": \"%s\", \"arr_n\": %" PRIu64 ", \"value\": [",
               gguf_type_str(kv->arr_type), kv->arr_n);
    const unsigned char *p = kv->value;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        if (i)
            buf_puts(b, ", ");
        p += json_gguf_value(b, kv->arr_type, p);
        if (info_flush(b, 0) != 0)
            *write_failed = 1;
    }
    buf_puts(b, "]}");
}

/* Reads the file's first bytes until gguf_parse has the whole header. 0 with g and *buf_out
 * (free it after g), or -1 with err. */
static int info_read_gguf(const char *path, struct gguf_file *g, unsigned char **buf_out, char *err,
                          size_t err_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    uint64_t file_bytes = (uint64_t)sb.st_size;
    uint64_t want = file_bytes < (1u << 20) ? file_bytes : (1u << 20);
    unsigned char *b = NULL;
    for (;;) {
        free(b);
        b = xmalloc(want ? (size_t)want : 1);
        uint64_t got = 0;
        while (got < want) {
            ssize_t n = pread(fd, b + got, (size_t)(want - got), (off_t)got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                snprintf(err, err_len, "%s: read: %s", path, n < 0 ? strerror(errno) : "short");
                goto fail;
            }
            got += (uint64_t)n;
        }
        uint64_t need = 0;
        enum gguf_status st = gguf_parse(g, b, want, file_bytes, &need, err, err_len);
        if (st == GGUF_OK)
            break;
        if (st != GGUF_ERR_INCOMPLETE || want == file_bytes)
            goto fail;
        if (need > INFO_JSON_MAX_HEADER_BYTES) {
            snprintf(err, err_len, "%s: header of %" PRIu64 " bytes or more (limit %llu)", path,
                     need, INFO_JSON_MAX_HEADER_BYTES);
            goto fail;
        }
        want = need > 2 * want ? need : 2 * want;
        if (want > file_bytes)
            want = file_bytes;
    }
    close(fd);
    *buf_out = b;
    return 0;
fail:
    free(b);
    close(fd);
    return -1;
}

/* The file's type label: llama.cpp's name of general.file_type (q5_k_m, iq4_xs, ...), or,
 * without the key, the type holding most of the weight bytes (f32 norms and all). buf holds
 * the label when it is not a static string; *why says where it came from. */
static const char *file_type_label(const struct model_file_info *info, char *buf, size_t n,
                                   char *why, size_t why_len)
{
    if (info->file_type >= 0) {
        const char *name = model_file_type_name(info->file_type);
        snprintf(why, why_len, "general.file_type %d%s", info->file_type,
                 name ? "" : ", not a llama.cpp file type");
        return name ? name : "unknown";
    }
    uint32_t best = 0;
    for (uint32_t t = 1; t < MODEL_N_GGML_TYPES; t++)
        if (info->type_bytes[t] > info->type_bytes[best])
            best = t;
    snprintf(buf, n, "%s", ggml_type_name(best));
    for (char *c = buf; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    snprintf(why, why_len, "no general.file_type: the type of most weight bytes");
    return buf;
}

static int info_print_json(const char *path, const struct model_file_info *info)
{
    struct gguf_file g;
    unsigned char *hdr = NULL;
    char err[512];
    if (info_read_gguf(path, &g, &hdr, err, sizeof err) != 0) {
        fprintf(stderr, "slmprobe model info: %s\n", err);
        return 1;
    }
    const struct model_config *c = &info->cfg;
    char label[32], why[96];
    struct buf b;
    buf_init(&b, 2 * INFO_JSON_FLUSH_BYTES, INFO_JSON_BUF_CAP_BYTES);
    int write_failed = 0;
    buf_puts(&b, "{\"file\": ");
    buf_json_str(&b, path);
    buf_puts(&b, ",\n \"model\": {\"arch\": ");
    buf_json_str(&b, model_arch_name(c->arch));
    buf_puts(&b, ", \"name\": ");
    buf_json_str(&b, c->name);
    buf_printf(&b,
               ", \"hidden\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, "
               "\"head_dim\": %d, \"ffn\": %d, \"vocab\": %d, \"context_length\": %d, "
               "\"rope_theta\": ",
               c->n_embd, c->n_layer, c->n_head, c->n_head_kv, c->head_dim, c->n_ff, c->n_vocab,
               c->n_ctx_train);
    json_float(&b, c->rope_theta, 9);
    buf_puts(&b, ", \"rms_norm_eps\": ");
    json_float(&b, c->norm_eps, 9);
    buf_printf(&b,
               ", \"qkv_bias\": %s, \"tied_embeddings\": %s, \"params\": %" PRIu64
               ", \"file_bytes\": %" PRIu64 ", \"weight_bytes\": %" PRIu64
               ", \"kv_bytes_per_token_f32\": %" PRIu64 ", \"kv_bytes_per_token_f16\": %" PRIu64
               ", \"file_dtype\": \"%s\", \"tokenizer_kind\": \"%s\", \"tokenizer_model\": ",
               c->qkv_bias ? "true" : "false", c->tied_embeddings ? "true" : "false",
               model_n_params(c), info->file_bytes, info->weight_bytes,
               model_kv_bytes_per_token(c, 4), model_kv_bytes_per_token(c, 2),
               file_type_label(info, label, sizeof label, why, sizeof why),
               info->tok_kind == TOK_KIND_SLM         ? "slm"
               : info->tok_kind == TOK_KIND_LLAMA_SPM ? "llama"
                                                      : "gpt2");
    buf_json_str(&b, info->tok_model);
    if (info->file_type >= 0)
        buf_printf(&b, ", \"file_type\": %d", info->file_type);
    else
        buf_puts(&b, ", \"file_type\": null");
    buf_printf(&b,
               ", \"bos_id\": %d, \"eos_id\": %d, \"n_tensors\": %" PRIu64
               ", \"n_tensors_unused\": %" PRIu64 ", \"types\": {",
               c->bos_id, c->eos_id, info->n_tensors, info->n_tensors_unused);
    int first = 1;
    for (uint32_t t = 0; t < MODEL_N_GGML_TYPES; t++) {
        if (!info->type_tensors[t])
            continue;
        buf_printf(&b, "%s\"%s\": {\"tensors\": %" PRIu32 ", \"bytes\": %" PRIu64 "}",
                   first ? "" : ", ", ggml_type_name(t), info->type_tensors[t],
                   info->type_bytes[t]);
        first = 0;
    }
    buf_printf(&b,
               "}},\n \"gguf\": {\"version\": %" PRIu32 ", \"alignment\": %" PRIu32
               ", \"n_kv\": %" PRIu64 ", \"n_tensors\": %" PRIu64 ", \"header_bytes\": %" PRIu64
               ", \"data_offset\": %" PRIu64 ", \"file_bytes\": %" PRIu64 ",\n  \"kv\": [",
               g.version, g.alignment, g.n_kv, g.n_tensors, g.header_bytes, g.data_offset,
               g.file_bytes);
    for (uint64_t i = 0; i < g.n_kv; i++) {
        buf_puts(&b, i ? ",\n   " : "\n   ");
        json_gguf_kv(&b, &g.kv[i], &write_failed);
    }
    buf_puts(&b, "],\n  \"tensors\": [");
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const struct gguf_tensor_info *t = &g.tensors[i];
        const char *tn = ggml_type_name(t->type);
        buf_puts(&b, i ? ",\n   {\"name\": " : "\n   {\"name\": ");
        json_gguf_str(&b, t->name.ptr, t->name.len);
        buf_printf(&b, ", \"type\": \"%s\", \"type_id\": %" PRIu32 ", \"dims\": [", tn ? tn : "?",
                   t->type);
        for (uint32_t d = 0; d < t->n_dims; d++)
            buf_printf(&b, "%s%" PRIu64, d ? ", " : "", t->ne[d]);
        buf_printf(&b,
                   "], \"offset\": %" PRIu64 ", \"file_offset\": %" PRIu64 ", \"n_elems\": %" PRIu64
                   ", \"n_bytes\": %" PRIu64 "}",
                   t->offset, t->file_offset, t->n_elems, t->n_bytes);
        if (info_flush(&b, 0) != 0)
            write_failed = 1;
    }
    buf_puts(&b, "]}}\n");
    if (info_flush(&b, 1) != 0 || fflush(stdout) != 0)
        write_failed = 1;
    gguf_file_free(&g);
    free(hdr);
    buf_free(&b);
    if (write_failed) {
        fprintf(stderr, "slmprobe model info: writing to stdout: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            usage_info(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--json")) {
            as_json = 1;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "slmprobe model info: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        }
        if (path) {
            fprintf(stderr, "slmprobe model info: one file at a time ('%s' and '%s')\n", path,
                    argv[i]);
            return 2;
        }
        path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "slmprobe model info: a model file is required (usage: slmprobe model "
                        "info [--json] FILE.gguf)\n");
        return 2;
    }
    struct model_file_info info;
    char err[512];
    if (model_file_info(path, &info, err, sizeof err) != 0) {
        fprintf(stderr, "slmprobe model info: %s\n", err);
        return 1;
    }
    if (as_json)
        return info_print_json(path, &info);
    const struct model_config *c = &info.cfg;
    char b[32];
    uint64_t n_params = model_n_params(c);
    uint64_t kv32 = model_kv_bytes_per_token(c, 4), kv16 = model_kv_bytes_per_token(c, 2);
    printf("file              %s\n", path);
    printf("gguf version      %" PRIu32 "\n", info.gguf_version);
    printf("arch              %s\n", model_arch_name(c->arch));
    printf("name              %s\n", c->name);
    printf("hidden            %d\n", c->n_embd);
    printf("layers            %d\n", c->n_layer);
    printf("heads             %d\n", c->n_head);
    printf("kv heads          %d\n", c->n_head_kv);
    printf("head dim          %d\n", c->head_dim);
    printf("ffn               %d\n", c->n_ff);
    printf("vocab             %d\n", c->n_vocab);
    printf("rope theta        %g\n", (double)c->rope_theta);
    printf("context length    %d\n", c->n_ctx_train);
    printf("rms norm eps      %g\n", (double)c->norm_eps);
    printf("qkv bias          %s\n", c->qkv_bias ? "yes" : "no");
    printf("tied embeddings   %s\n", c->tied_embeddings ? "yes" : "no");
    printf("params            %" PRIu64 " (%s)\n", n_params, fmt_count(n_params, b, sizeof b));
    printf("file bytes        %" PRIu64 " (%s)\n", info.file_bytes,
           fmt_bytes(info.file_bytes, b, sizeof b));
    printf("weight bytes      %" PRIu64
           " (%s resident: F16, BF16, block-type matrices as stored, others f32)\n",
           info.weight_bytes, fmt_bytes(info.weight_bytes, b, sizeof b));
    printf("kv bytes/token    %" PRIu64 " (f32 KV), %" PRIu64 " (f16 KV)\n", kv32, kv16);
    char label[32], why[96];
    const char *ft = file_type_label(&info, label, sizeof label, why, sizeof why);
    printf("file dtype        %s (%s)\n", ft, why);
    for (uint32_t t = 0; t < MODEL_N_GGML_TYPES; t++) {
        if (!info.type_tensors[t])
            continue;
        printf("  %-15s %" PRIu32 " tensors, %" PRIu64 " bytes (%s)\n", ggml_type_name(t),
               info.type_tensors[t], info.type_bytes[t],
               fmt_bytes(info.type_bytes[t], b, sizeof b));
    }
    printf("tokenizer         %s [tokenizer.ggml.model %s, bos %d, eos %d]\n",
           tok_kind_str(info.tok_kind), info.tok_model, c->bos_id, c->eos_id);
    printf("tensors           %" PRIu64 " (%" PRIu64 " unused)\n", info.n_tensors,
           info.n_tensors_unused);
    return 0;
}

static int cmd_presets(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            usage_presets(stdout);
            return 0;
        }
        fprintf(stderr, "slmprobe model presets: unknown argument '%s'\n", argv[i]);
        return 2;
    }
    printf("%-14s %-6s %6s %6s %5s %5s %5s %6s %7s %7s %10s %7s  %s\n", "preset", "arch", "hidden",
           "layers", "heads", "kv", "hdim", "ffn", "vocab", "ctx", "rope_theta", "params",
           "f32 size");
    char names[256];
    snprintf(names, sizeof names, "%s", model_preset_names());
    char *save = NULL;
    for (char *nm = strtok_r(names, ", ", &save); nm; nm = strtok_r(NULL, ", ", &save)) {
        struct model_config c;
        if (model_preset(nm, &c) != 0)
            continue;
        uint64_t np = model_n_params(&c);
        char b1[32], b2[32];
        printf("%-14s %-6s %6d %6d %5d %5d %5d %6d %7d %7d %10g %7s  %s\n", nm,
               model_arch_name(c.arch), c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim,
               c.n_ff, c.n_vocab, c.n_ctx_train, (double)c.rope_theta, fmt_count(np, b1, sizeof b1),
               fmt_bytes(np * 4, b2, sizeof b2));
    }
    return 0;
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2) {
        usage_model(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (is_help(sub)) {
        usage_model(stdout);
        return 0;
    }
    if (!strcmp(sub, "init"))
        return cmd_init(argc - 1, argv + 1);
    if (!strcmp(sub, "info"))
        return cmd_info(argc - 1, argv + 1);
    if (!strcmp(sub, "presets"))
        return cmd_presets(argc - 1, argv + 1);
    fprintf(stderr, "slmprobe model: unknown subcommand '%s'\n\n", sub);
    usage_model(stderr);
    return 2;
}
