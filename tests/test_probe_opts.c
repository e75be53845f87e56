/* test_probe_opts: the shared probe options: defaults per server kind, pass-through of command
 * options in order, "--opt=value", extra server args after `--`, --serve-cmd splitting and
 * quoting, errors for bad values and missing --model, client config. */
#include <stdlib.h>
#include <unistd.h>

#include "engine/model.h"
#include "run/probe_opts.h"
#include "test.h"
#include "util/buf.h"

static int parse(int argc, char **argv, struct probe_opts *o, int *n_rest, char ***rest, char *err,
                 size_t err_len)
{
    *rest = xcalloc((size_t)argc + 1, sizeof **rest);
    return probe_opts_parse(argc, argv, o, n_rest, *rest, err, err_len);
}

/* Byte-exact prompt lengths only where one byte is one token: the embedded runtime with
 * slmprobe's own vocabulary (a file written without --tokenizer, or the default model). */
static void test_tokens_are_bytes(void)
{
    struct model_config mc;
    char err[256], path[] = "/tmp/test_probe_opts_XXXXXX";
    CHECK_EQ_INT(model_preset("tiny", &mc), 0);
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_MSG(model_write_gguf(&mc, 1, MODEL_DTYPE_F16, path, err, sizeof err) == 0, "%s", err);
    struct target_config t = {0};
    t.kind = TARGET_KIND_EMBEDDED;
    t.model = path;
    CHECK_EQ_INT(probe_tokens_are_bytes(&t), 1);
    t.model = NULL; /* the default model */
    CHECK_EQ_INT(probe_tokens_are_bytes(&t), 1);
    t.model = "/nonexistent/x.gguf";
    CHECK_EQ_INT(probe_tokens_are_bytes(&t), 1);
    t.kind = TARGET_KIND_VLLM;
    t.model = path;
    CHECK_EQ_INT(probe_tokens_are_bytes(&t), 0);
    unlink(path);
}

static void test_defaults_embedded(void)
{
    char *argv[] = {"ttft", "--cold", "3", "--warm=5", NULL};
    struct probe_opts o;
    char **rest, err[256];
    int n;
    CHECK_EQ_INT(parse(4, argv, &o, &n, &rest, err, sizeof err), 0);
    CHECK_EQ_INT(o.target.kind, TARGET_KIND_EMBEDDED);
    CHECK_EQ_STR(o.target.model, "models/default.gguf");
    CHECK_EQ_STR(o.target.host, "127.0.0.1");
    CHECK_EQ_INT(o.target.port, 0); /* embedded: a free port */
    CHECK(!o.port_given);
    CHECK_EQ_INT(o.target.ready_timeout_ms, 120000);
    CHECK_EQ_INT(o.target.stop_grace_ms, 10000);
    CHECK_EQ_STR(o.target.log_path, "results/server.log");
    CHECK_EQ_STR(o.out_dir, "results");
    CHECK_EQ_INT(o.timeout_ms, 600000);
    CHECK_EQ_INT(o.api, CLIENT_API_COMPLETIONS);
    CHECK(o.model_name == NULL);
    CHECK(o.target.url == NULL);
    CHECK_EQ_INT(o.target.n_extra_args, 0);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_STR(rest[0], "ttft");
    CHECK_EQ_STR(rest[1], "--cold");
    CHECK_EQ_STR(rest[2], "3");
    CHECK_EQ_STR(rest[3], "--warm=5");
    CHECK(rest[4] == NULL);
    probe_opts_free(&o);
    free(rest);
}

static void test_vllm_full(void)
{
    char *argv[] = {"batch", "--server", "vllm", "--levels", "1,2,4", "--model=Qwen/Qwen3-0.6B",
                    "--host", "0.0.0.0", "--max-model-len", "4096", "--gpu-memory-utilization",
                    "0.85", "--prefix-caching=off", "--api-key", "k1", "--endpoint", "chat",
                    "--timeout", "30", "--ready-timeout", "900", "--stop-grace", "2.5", "--out",
                    "res/x", "--served-model-name", "qwen", "--max-tokens", "64", "--",
                    "--enforce-eager", "--max-num-seqs", "8", NULL};
    int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
    struct probe_opts o;
    char **rest, err[256];
    int n;
    CHECK_MSG(parse(argc, argv, &o, &n, &rest, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(o.target.kind, TARGET_KIND_VLLM);
    CHECK_EQ_STR(o.target.model, "Qwen/Qwen3-0.6B");
    CHECK_EQ_STR(o.target.host, "0.0.0.0");
    CHECK_EQ_INT(o.target.port, 8000);
    CHECK_EQ_INT(o.target.max_model_len, 4096);
    CHECK_NEAR(o.target.gpu_memory_utilization, 0.85, 1e-12);
    CHECK_EQ_INT(o.target.prefix_cache, TARGET_PREFIX_CACHE_OFF);
    CHECK_EQ_STR(o.target.api_key, "k1");
    CHECK_EQ_STR(o.target.served_name, "qwen");
    CHECK_EQ_STR(o.model_name, "qwen");
    CHECK_EQ_INT(o.api, CLIENT_API_CHAT);
    CHECK_EQ_INT(o.timeout_ms, 30000);
    CHECK_EQ_INT(o.target.ready_timeout_ms, 900000);
    CHECK_EQ_INT(o.target.stop_grace_ms, 2500);
    CHECK_EQ_STR(o.target.log_path, "res/x/server.log");
    CHECK_EQ_INT(o.target.n_extra_args, 3);
    CHECK_EQ_STR(o.target.extra_args[0], "--enforce-eager");
    CHECK_EQ_STR(o.target.extra_args[2], "8");
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_STR(rest[1], "--levels");
    CHECK_EQ_STR(rest[2], "1,2,4");
    CHECK_EQ_STR(rest[3], "--max-tokens");
    CHECK_EQ_STR(rest[4], "64");

    /* the same options give the launch argv target.h builds */
    char **av;
    int ac;
    CHECK_EQ_INT(target_argv_build(&o.target, 8000, &av, &ac, err, sizeof err), TARGET_OK);
    CHECK_EQ_INT(ac, 20); /* --enable-prompt-tokens-details included */
    CHECK_EQ_STR(av[0], "vllm");
    CHECK_EQ_STR(av[11], "--enable-prompt-tokens-details");
    CHECK_EQ_STR(av[12], "--no-enable-prefix-caching");
    CHECK_EQ_STR(av[19], "8");
    target_argv_free(av);

    struct client_config cc;
    probe_opts_client_config(&o, "http://127.0.0.1:8000", &cc);
    CHECK_EQ_STR(cc.base_url, "http://127.0.0.1:8000");
    CHECK_EQ_STR(cc.api_key, "k1");
    CHECK_EQ_STR(cc.model, "qwen");
    CHECK_EQ_INT(cc.api, CLIENT_API_CHAT);
    CHECK_EQ_INT(cc.timeout_ms, 30000);
    probe_opts_free(&o);
    probe_opts_free(&o); /* idempotent */
    free(rest);
}

static void test_kind_defaults(void)
{
    struct probe_opts o;
    char **rest, err[256];
    int n;
    char *a1[] = {"x", "--server", "sglang", "--model", "m", NULL};
    CHECK_EQ_INT(parse(5, a1, &o, &n, &rest, err, sizeof err), 0);
    CHECK_EQ_INT(o.target.ready_timeout_ms, 600000);
    CHECK_EQ_INT(o.target.port, 8000);
    probe_opts_free(&o);
    free(rest);
    char *a2[] = {"x", "--server", "llama.cpp", "--model", "m.gguf", "--port", "8080", NULL};
    CHECK_EQ_INT(parse(7, a2, &o, &n, &rest, err, sizeof err), 0);
    CHECK_EQ_INT(o.target.kind, TARGET_KIND_LLAMACPP);
    CHECK_EQ_INT(o.target.ready_timeout_ms, 120000);
    CHECK_EQ_INT(o.target.port, 8080);
    CHECK(o.port_given);
    probe_opts_free(&o);
    free(rest);
    /* --port given for embedded wins over "a free port" */
    char *a3[] = {"x", "--port", "8001", "--log", "/tmp/s.log", "--drop-caches", NULL};
    CHECK_EQ_INT(parse(6, a3, &o, &n, &rest, err, sizeof err), 0);
    CHECK_EQ_INT(o.target.port, 8001);
    CHECK_EQ_STR(o.target.log_path, "/tmp/s.log");
    CHECK_EQ_INT(o.target.drop_caches, 1);
    probe_opts_free(&o);
    free(rest);
}

static void test_url_and_serve_cmd(void)
{
    struct probe_opts o;
    char **rest, err[256];
    int n;
    char *a1[] = {"ttft", "--url", "http://10.0.0.5:8000", "--model", "served-name", NULL};
    CHECK_EQ_INT(parse(5, a1, &o, &n, &rest, err, sizeof err), 0);
    CHECK_EQ_STR(o.target.url, "http://10.0.0.5:8000");
    CHECK(o.target.model == NULL);
    CHECK_EQ_STR(o.model_name, "served-name"); /* with --url, --model names the model to ask for */
    probe_opts_free(&o);
    free(rest);

    char *a2[] = {"ttft", "--server", "vllm", "--serve-cmd",
                  "python3 -m vllm.entrypoints.openai.api_server --model 'my model' "
                  "--chat-template \"{{ \\\"x\\\" }}\" a\\ b",
                  "--port", "9000", NULL};
    CHECK_MSG(parse(7, a2, &o, &n, &rest, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(o.target.n_serve_cmd, 8);
    if (o.target.n_serve_cmd == 8) {
        CHECK_EQ_STR(o.target.serve_cmd[0], "python3");
        CHECK_EQ_STR(o.target.serve_cmd[4], "my model");
        CHECK_EQ_STR(o.target.serve_cmd[6], "{{ \"x\" }}");
        CHECK_EQ_STR(o.target.serve_cmd[7], "a b");
    }
    CHECK(o.target.model == NULL);
    CHECK_EQ_INT(o.target.port, 9000);
    probe_opts_free(&o);
    free(rest);

    char **av;
    int ac;
    CHECK_EQ_INT(probe_opts_split("  a  ''  \"\"b'c d'  ", &av, &ac, err, sizeof err), 0);
    CHECK_EQ_INT(ac, 3);
    CHECK_EQ_STR(av[0], "a");
    CHECK_EQ_STR(av[1], "");
    CHECK_EQ_STR(av[2], "bc d");
    CHECK(av[3] == NULL);
    probe_opts_split_free(av);
    CHECK_EQ_INT(probe_opts_split("a 'b", &av, &ac, err, sizeof err), -1);
    CHECK(strstr(err, "unbalanced") != NULL);
    CHECK_EQ_INT(probe_opts_split("   ", &av, &ac, err, sizeof err), -1);
}

static void test_errors(void)
{
    struct probe_opts o;
    char **rest, err[256];
    int n;
    static char *bad[][6] = {
        {"x", "--server", "tgi", NULL},
        {"x", "--server", "vllm", NULL}, /* no model */
        {"x", "--port", "70000", NULL},
        {"x", "--port", "80a", NULL},
        {"x", "--max-model-len", "0", NULL},
        {"x", "--gpu-memory-utilization", "1.5", NULL},
        {"x", "--prefix-caching", "maybe", NULL},
        {"x", "--endpoint", "embeddings", NULL},
        {"x", "--timeout", "-1", NULL},
        {"x", "--timeout", NULL},
        {"x", "--url", "http://h:1", "--serve-cmd", "srv", NULL},
        {"x", "--url", "h:1", NULL},
        {"x", "--url", "http://h:1", "--drop-caches", NULL},
        {"x", "--serve-cmd", "a \"b", NULL},
        {"x", "--drop-caches=yes", NULL},
    };
    static const char *want[] = {
        "--server",  "--model is required", "--port", "--port", "--max-model-len",
        "--gpu-memory-utilization", "--prefix-caching", "--endpoint", "--timeout",
        "--timeout needs a value", "exclude", "--url", "--drop-caches", "--serve-cmd: unbalanced",
        "takes no value",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int argc = 0;
        while (bad[i][argc])
            argc++;
        CHECK_MSG(parse(argc, bad[i], &o, &n, &rest, err, sizeof err) == -1, "case %zu", i);
        CHECK_MSG(strstr(err, want[i]) != NULL, "case %zu: %s", i, err);
        probe_opts_free(&o);
        free(rest);
    }
}

static void test_help(void)
{
    char path[] = "/tmp/slm_opts_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w+");
    CHECK(f != NULL);
    if (!f)
        return;
    probe_opts_help(f);
    long len = ftell(f);
    rewind(f);
    char *text = xcalloc((size_t)len + 1, 1);
    CHECK(fread(text, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    unlink(path);
    static const char *const names[] = {"--server", "--model", "--url", "--serve-cmd", "--host",
                                        "--port", "--max-model-len", "--gpu-memory-utilization",
                                        "--prefix-caching", "--served-model-name", "--api-key",
                                        "--endpoint", "--timeout", "--ready-timeout",
                                        "--stop-grace", "--log", "--out", "--drop-caches", "-- "};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECK_MSG(strstr(text, names[i]) != NULL, "%s not documented", names[i]);
    free(text);
}

int main(void)
{
    /* The default model comes from SLMPROBE_MODEL when set (run/model_default.h): no generation. */
    setenv("SLMPROBE_MODEL", "models/default.gguf", 1);
    TEST_RUN(test_defaults_embedded);
    TEST_RUN(test_tokens_are_bytes);
    TEST_RUN(test_vllm_full);
    TEST_RUN(test_kind_defaults);
    TEST_RUN(test_url_and_serve_cmd);
    TEST_RUN(test_errors);
    TEST_RUN(test_help);
    return TEST_DONE();
}
