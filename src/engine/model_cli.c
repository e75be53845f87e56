/* model_cli: `slmprobe model init|info|presets`, creating GGUF model files with random weights
 * from a preset and describing model files. Results go to stdout, errors to stderr; exit 0 ok,
 * 1 failure, 2 usage. It does not load weights for `info` (header only) and never calls exit(). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/tok_hf.h"
#include "util/buf.h"
#include "util/clock.h"

static void usage_model(FILE *f)
{
    fprintf(f,
            "usage: slmprobe model <subcommand> [options]\n"
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
            "usage: slmprobe model info FILE.gguf\n"
            "\n"
            "Validates a GGUF model file (ours, or a llama.cpp file of arch llama or qwen2 with\n"
            "tensors of type F32, F16, BF16, Q8_0, Q5_0, Q4_0, Q6_K, Q5_K, Q4_K) without loading\n"
            "its weights, and prints: architecture, name, shape (hidden,\n"
            "layers, heads, KV heads, head dim, FFN, vocab, RoPE theta, context length),\n"
            "parameter count, file bytes, weight bytes resident once loaded (F16 and block types\n"
            "as stored, others f32), KV cache bytes per token for f32 and f16 KV, the file's dtype,\n"
            "its type mix (tensors and bytes per ggml type) and the tokenizer kind.\n"
            "\n"
            "options:\n"
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
    int wrc = model_write_gguf_tok(&cfg, seed, dtype, tok_path ? &vocab : NULL, out, err,
                                   sizeof err);
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
    case TOK_KIND_SLM: return "slmprobe byte-level (ids 0..255 are bytes)";
    case TOK_KIND_LLAMA_SPM: return "llama SentencePiece BPE (scores, byte fallback)";
    case TOK_KIND_GPT2: return "gpt2 byte-level BPE (merges, pre-tokenizer)";
    }
    return "?";
}

static int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) {
            usage_info(stdout);
            return 0;
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
                        "info FILE.gguf)\n");
        return 2;
    }
    struct model_file_info info;
    char err[512];
    if (model_file_info(path, &info, err, sizeof err) != 0) {
        fprintf(stderr, "slmprobe model info: %s\n", err);
        return 1;
    }
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
    printf("weight bytes      %" PRIu64 " (%s resident: block types as stored, others f32)\n",
           info.weight_bytes, fmt_bytes(info.weight_bytes, b, sizeof b));
    printf("kv bytes/token    %" PRIu64 " (f32 KV), %" PRIu64 " (f16 KV)\n", kv32, kv16);
    printf("file dtype        %s\n", model_dtype_str(info.file_dtype));
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
    printf("%-14s %-6s %6s %6s %5s %5s %5s %6s %7s %7s %10s %7s  %s\n", "preset", "arch",
           "hidden", "layers", "heads", "kv", "hdim", "ffn", "vocab", "ctx", "rope_theta",
           "params", "f32 size");
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
               c.n_ff, c.n_vocab, c.n_ctx_train, (double)c.rope_theta,
               fmt_count(np, b1, sizeof b1), fmt_bytes(np * 4, b2, sizeof b2));
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
