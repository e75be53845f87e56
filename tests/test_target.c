/* test_target: server lifecycle. Exact argv for every kind; launching a scripted HTTP server (this
 * very binary re-executed with --fake-server: real sockets, 503 while "loading", vLLM-worded log
 * lines) and the real embedded runtime ($SLMPROBE_BIN serve, tiny model) up to ready with an
 * ordered timeline; stop leaves no process in the group; port already taken; a server that never
 * becomes ready (deadline + log tail, killed); one that exits at once; one killed mid-run;
 * SIGKILL escalation; url mode; Ctrl-C in a child that launched a server (first and second Ctrl-C,
 * and the launcher itself SIGKILLed): no orphans. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/client.h"
#include "server/promscrape.h"
#include "server/target.h"
#include "test.h"
#include "util/buf.h"
#include "util/clock.h"

static char g_self[1024];
static char g_tmp[256];

/* ---- the scripted server (runs in a child process, exec'd from this binary) ---- */

static int fake_server_main(int argc, char **argv)
{
    int port = atoi(argv[2]);
    long load_ms = 0;
    int n_503 = 0, ignore_term = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--load-ms") && i + 1 < argc)
            load_ms = atol(argv[++i]);
        else if (!strcmp(argv[i], "--health-503") && i + 1 < argc)
            n_503 = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ignore-term"))
            ignore_term = 1;
    }
    if (ignore_term)
        signal(SIGTERM, SIG_IGN);
    signal(SIGPIPE, SIG_IGN); /* the probe's TCP connect test closes without a request */
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("INFO 01-01 00:00:00 fake: Starting to load model fake-model...\n");
    clock_sleep_ns((uint64_t)load_ms * 1000000ull); /* stands in for the load: the probe must wait */
    printf("INFO 01-01 00:00:00 fake: Loading weights took %.2f seconds\n", load_ms / 1000.0);
    printf("INFO 01-01 00:00:00 fake: GPU KV cache size: 12,345 tokens\n");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0) {
        printf("fake: cannot listen on %d: %s\n", port, strerror(errno));
        return 1;
    }
    printf("INFO 01-01 00:00:00 fake: Starting vLLM API server 0 on http://127.0.0.1:%d\n", port);
    int n_health = 0;
    for (;;) {
        int c = accept(fd, NULL, NULL);
        if (c < 0)
            continue;
        char req[4096];
        size_t got = 0;
        req[0] = 0;
        while (got < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
            ssize_t n = read(c, req + got, sizeof req - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            req[got] = 0;
        }
        if (got == 0) {
            close(c);
            continue;
        }
        int status = 404;
        const char *body = "{\"error\":\"not found\"}";
        if (!strncmp(req, "GET /health ", 12)) {
            if (n_health++ < n_503) {
                status = 503;
                body = "{\"error\":{\"code\":503,\"message\":\"Loading model\"}}";
            } else {
                status = 200;
                body = "";
            }
        } else if (!strncmp(req, "GET /v1/models ", 15)) {
            status = 200;
            body = "{\"object\":\"list\",\"data\":[{\"id\":\"fake-model\",\"object\":\"model\","
                   "\"max_model_len\":2048}]}";
        } else if (!strncmp(req, "GET /version ", 13)) {
            status = 200;
            body = "{\"version\":\"9.9.9\"}";
        }
        char head[256];
        int hn = snprintf(head, sizeof head,
                          "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: "
                          "%zu\r\nConnection: close\r\n\r\n",
                          status, strlen(body));
        if (write(c, head, (size_t)hn) < 0 || write(c, body, strlen(body)) < 0)
            printf("fake: write failed\n");
        close(c);
    }
}

/* ---- helpers ---- */

/* Reaps what is ours in the group and waits (up to ms) until nothing is left in it. */
static int group_gone(pid_t pgid, int ms)
{
    for (int i = 0; i <= ms / 10; i++) {
        while (waitpid(-pgid, NULL, WNOHANG) > 0)
            ;
        if (kill(-pgid, 0) != 0 && errno == ESRCH)
            return 1;
        clock_sleep_ns(10 * 1000 * 1000);
    }
    return 0;
}

static void fake_cfg(struct target_config *cfg, char **cmd, int port, const char *log,
                     const char *load_ms, const char *n_503)
{
    static char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    int n = 0;
    cmd[n++] = g_self;
    cmd[n++] = "--fake-server";
    cmd[n++] = portbuf;
    cmd[n++] = "--load-ms";
    cmd[n++] = (char *)load_ms;
    cmd[n++] = "--health-503";
    cmd[n++] = (char *)n_503;
    cmd[n] = NULL;
    target_config_defaults(cfg, TARGET_KIND_VLLM);
    cfg->serve_cmd = cmd;
    cfg->n_serve_cmd = n;
    cfg->port = port;
    cfg->log_path = log;
    cfg->ready_timeout_ms = 20000;
    cfg->stop_grace_ms = 3000;
}

static void check_argv(char **got, int n_got, const char *const *want)
{
    int n_want = 0;
    while (want[n_want])
        n_want++;
    CHECK_EQ_INT(n_got, n_want);
    for (int i = 0; i < n_want && i < n_got; i++)
        CHECK_EQ_STR(got[i], want[i]);
    if (n_got >= 0)
        CHECK(got[n_got] == NULL);
}

/* ---- tests ---- */

static void test_argv(void)
{
    struct target_config c;
    char **av;
    int ac;
    char err[256];
    char *extra[] = {"--kv-cache-memory-bytes", "1048576"};

    target_config_defaults(&c, TARGET_KIND_EMBEDDED);
    c.model = "models/tiny.gguf";
    c.self_exe = "/usr/bin/slmprobe";
    c.max_model_len = 1024;
    c.gpu_memory_utilization = 0.5;
    c.prefix_cache = TARGET_PREFIX_CACHE_OFF;
    c.extra_args = extra;
    c.n_extra_args = 2;
    CHECK_EQ_INT(target_argv_build(&c, 8123, &av, &ac, err, sizeof err), TARGET_OK);
    check_argv(av, ac, (const char *const[]){"/usr/bin/slmprobe", "serve", "--model",
                                             "models/tiny.gguf", "--host", "127.0.0.1", "--port",
                                             "8123", "--max-model-len", "1024",
                                             "--gpu-memory-utilization", "0.5",
                                             "--enable-prompt-tokens-details",
                                             "--no-enable-prefix-caching",
                                             "--kv-cache-memory-bytes", "1048576", NULL});
    target_argv_free(av);

    target_config_defaults(&c, TARGET_KIND_VLLM);
    c.model = "Qwen/Qwen3-0.6B";
    c.host = "0.0.0.0";
    c.max_model_len = 4096;
    c.gpu_memory_utilization = 0.9;
    c.prefix_cache = TARGET_PREFIX_CACHE_ON;
    c.api_key = "sekrit";
    c.served_name = "qwen";
    CHECK_EQ_INT(target_argv_build(&c, 8000, &av, &ac, err, sizeof err), TARGET_OK);
    check_argv(av, ac, (const char *const[]){"vllm", "serve", "Qwen/Qwen3-0.6B", "--host",
                                             "0.0.0.0", "--port", "8000", "--max-model-len",
                                             "4096", "--gpu-memory-utilization", "0.9",
                                             "--enable-prompt-tokens-details",
                                             "--enable-prefix-caching", "--api-key", "sekrit",
                                             "--served-model-name", "qwen", NULL});
    target_argv_free(av);

    target_config_defaults(&c, TARGET_KIND_VLLM); /* defaults: no optional flags */
    c.model = "m";
    CHECK_EQ_INT(target_argv_build(&c, 8000, &av, &ac, err, sizeof err), TARGET_OK);
    check_argv(av, ac, (const char *const[]){"vllm", "serve", "m", "--host", "127.0.0.1",
                                             "--port", "8000", "--enable-prompt-tokens-details",
                                             NULL});
    target_argv_free(av);

    target_config_defaults(&c, TARGET_KIND_LLAMACPP);
    c.model = "models/q.gguf";
    c.max_model_len = 8192;
    c.prefix_cache = TARGET_PREFIX_CACHE_OFF;
    c.served_name = "q";
    c.extra_args = (char *[]){"-np", "4"};
    c.n_extra_args = 2;
    CHECK_EQ_INT(target_argv_build(&c, 8080, &av, &ac, err, sizeof err), TARGET_OK);
    check_argv(av, ac, (const char *const[]){"llama-server", "-m", "models/q.gguf", "--host",
                                             "127.0.0.1", "--port", "8080", "-c", "8192",
                                             "--metrics", "--no-cache-prompt", "--alias", "q",
                                             "-np", "4", NULL});
    target_argv_free(av);
    c.gpu_memory_utilization = 0.5; /* no llama.cpp equivalent: said, not dropped */
    CHECK_EQ_INT(target_argv_build(&c, 8080, &av, &ac, err, sizeof err), TARGET_ERR_CONFIG);
    CHECK(strstr(err, "llama.cpp") != NULL);
    CHECK(av == NULL);

    target_config_defaults(&c, TARGET_KIND_SGLANG);
    c.model = "Qwen/Qwen2.5-1.5B-Instruct";
    c.max_model_len = 4096;
    c.gpu_memory_utilization = 0.8;
    c.prefix_cache = TARGET_PREFIX_CACHE_OFF;
    CHECK_EQ_INT(target_argv_build(&c, 30000, &av, &ac, err, sizeof err), TARGET_OK);
    check_argv(av, ac, (const char *const[]){"python3", "-m", "sglang.launch_server",
                                             "--model-path", "Qwen/Qwen2.5-1.5B-Instruct",
                                             "--host", "127.0.0.1", "--port", "30000",
                                             "--context-length", "4096", "--mem-fraction-static",
                                             "0.8", "--enable-metrics", "--disable-radix-cache",
                                             NULL});
    target_argv_free(av);

    /* serve_cmd overrides, extra args still appended */
    target_config_defaults(&c, TARGET_KIND_VLLM);
    c.serve_cmd = (char *[]){"/opt/bin/my-server", "--flag"};
    c.n_serve_cmd = 2;
    c.extra_args = (char *[]){"--x"};
    c.n_extra_args = 1;
    CHECK_EQ_INT(target_argv_build(&c, 9999, &av, &ac, err, sizeof err), TARGET_OK);
    check_argv(av, ac, (const char *const[]){"/opt/bin/my-server", "--flag", "--x", NULL});
    target_argv_free(av);

    target_config_defaults(&c, TARGET_KIND_VLLM); /* no model */
    CHECK_EQ_INT(target_argv_build(&c, 8000, &av, &ac, err, sizeof err), TARGET_ERR_CONFIG);
    CHECK(strstr(err, "--model") != NULL);

    target_config_defaults(&c, TARGET_KIND_EMBEDDED); /* no self_exe: literal /proc/self/exe */
    c.model = "m.gguf";
    CHECK_EQ_INT(target_argv_build(&c, 1, &av, &ac, err, sizeof err), TARGET_OK);
    CHECK_EQ_STR(av[0], "/proc/self/exe");
    target_argv_free(av);

    /* capabilities */
    CHECK(target_kind_caps(TARGET_KIND_LLAMACPP)->has_metrics);
    CHECK_EQ_STR(target_kind_caps(TARGET_KIND_LLAMACPP)->metrics_flag, "--metrics");
    CHECK_EQ_STR(target_kind_caps(TARGET_KIND_LLAMACPP)->prefix_cache_off_json,
                 "\"cache_prompt\":false");
    CHECK_EQ_STR(target_kind_caps(TARGET_KIND_SGLANG)->prefix_cache_off_flag,
                 "--disable-radix-cache");
    CHECK_EQ_STR(target_kind_caps(TARGET_KIND_VLLM)->prefix_cache_off_flag,
                 "--no-enable-prefix-caching");
    CHECK(target_kind_caps(TARGET_KIND_VLLM)->metrics_flag == NULL);
    enum target_kind k;
    CHECK(target_kind_parse("llama.cpp", &k) == 0 && k == TARGET_KIND_LLAMACPP);
    CHECK(target_kind_parse("tgi", &k) == -1);
    CHECK_EQ_STR(target_state_str(TARGET_STATE_DRAINING), "draining");
    CHECK_EQ_STR(target_kind_str(TARGET_KIND_SGLANG), "sglang");
}

/* Printed commands: shell-quoted, the key masked wherever it is. */
static void test_cmdline(void)
{
    struct target_config c;
    char line[1024];
    target_config_defaults(&c, TARGET_KIND_VLLM);
    c.model = "my models/q";
    c.api_key = "sekrit-123";
    CHECK_EQ_STR(target_cmdline(&c, 8000, line, sizeof line),
                 "vllm serve 'my models/q' --host 127.0.0.1 --port 8000 "
                 "--enable-prompt-tokens-details --api-key ***");

    /* serve_cmd: --api-key=K, and the key inside another argument */
    c.serve_cmd = (char *[]){"/opt/srv", "--api-key=sekrit-123", "--header", "Bearer sekrit-123"};
    c.n_serve_cmd = 4;
    target_cmdline(&c, 8000, line, sizeof line);
    CHECK_MSG(strstr(line, "sekrit-123") == NULL, "%s", line);
    CHECK_MSG(strstr(line, "--api-key=***") != NULL, "%s", line);
    CHECK_MSG(strstr(line, "'Bearer ***'") != NULL, "%s", line);

    target_config_defaults(&c, TARGET_KIND_VLLM); /* config error: said, in parentheses */
    target_cmdline(&c, 8000, line, sizeof line);
    CHECK_MSG(line[0] == '(' && strstr(line, "--model") != NULL, "%s", line);
    char tiny[8];
    c.model = "m";
    CHECK_EQ_STR(target_cmdline(&c, 8000, tiny, sizeof tiny), "vllm se"); /* cut, terminated */
}

/* A server that echoes its key and dies: the key is in no message; the log's lines were stamped
 * on arrival, so llama.cpp-style phases are inferred from them. */
static void test_secret_and_arrival(void)
{
    char log[512], err[8192];
    snprintf(log, sizeof log, "%s/secret.log", g_tmp);
    struct target_config cfg;
    target_config_defaults(&cfg, TARGET_KIND_LLAMACPP);
    char *cmd[] = {"/bin/sh", "-c",
                   "echo 'args: --api-key topsecret-key-42'; echo 'main: loading model'; "
                   "sleep 0.4; echo 'llama_context: n_ctx = 512'; sleep 0.4; "
                   "echo 'common_init_from_params: warming up the model'; sleep 0.4; "
                   "echo 'main: model loaded'; "
                   "echo 'failed to load model (key topsecret-key-42)' >&2; exit 3",
                   NULL};
    cfg.serve_cmd = cmd;
    cfg.n_serve_cmd = 3;
    cfg.log_path = log;
    cfg.api_key = "topsecret-key-42";
    cfg.ready_timeout_ms = 20000;
    struct target *t = target_new(&cfg);
    CHECK_EQ_INT(target_start(t, err, sizeof err), TARGET_ERR_EXITED);
    CHECK_MSG(strstr(err, "topsecret-key-42") == NULL, "%s", err);
    CHECK_MSG(strstr(err, "args: --api-key ***") != NULL, "%s", err); /* the tail, masked */
    CHECK(t->startup.error_message[0] != 0);
    CHECK_MSG(strstr(t->startup.error_message, "topsecret") == NULL, "%s",
              t->startup.error_message);
    const struct startup_info *si = &t->startup;
    CHECK(si->n_timeline >= 5);
    for (int i = 0; i < si->n_timeline; i++) {
        CHECK(strstr(si->timeline[i].text, "topsecret") == NULL);
        CHECK(si->timeline[i].t_first_s >= 0 && si->timeline[i].t_first_s < 20);
    }
    CHECK_EQ_INT(si->server, LOGPARSE_SERVER_LLAMACPP); /* detected from the lines */
    CHECK_EQ_INT(si->n_ctx_tokens, 512);
    /* 0.4 s apart as printed; the reads are 20-50 ms apart (generous margins for ASan) */
    const enum startup_phase ph[] = {STARTUP_PHASE_WEIGHTS_LOAD, STARTUP_PHASE_KV_CACHE_ALLOC,
                                     STARTUP_PHASE_WARMUP_GRAPH_CAPTURE};
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(si->phase_source[ph[i]], STARTUP_PHASE_SOURCE_ARRIVAL);
        CHECK_MSG(si->phase_s[ph[i]] > 0.2 && si->phase_s[ph[i]] < 3.0, "%s %.3f",
                  startup_phase_str(ph[i]), si->phase_s[ph[i]]);
    }
    target_free(t);
}

static void test_fake_server_ready_and_stop(void)
{
    struct target_config cfg;
    char *cmd[16], log[512], err[8192];
    int port = target_find_free_port("127.0.0.1");
    snprintf(log, sizeof log, "%s/fake/server.log", g_tmp); /* directory created on launch */
    fake_cfg(&cfg, cmd, port, log, "300", "3");
    struct target *t = target_new(&cfg);
    CHECK_EQ_INT(t->state, TARGET_STATE_STOPPED);
    enum target_status st = target_start(t, err, sizeof err);
    CHECK_MSG(st == TARGET_OK, "%s: %s", target_status_str(st), err);
    CHECK_EQ_INT(t->state, TARGET_STATE_READY);
    CHECK(t->launched && t->pid > 0);
    CHECK(t->tl.t_launch_ns > 0);
    CHECK(t->tl.t_port_open_ns > t->tl.t_launch_ns);
    CHECK(t->tl.t_health_ok_ns > t->tl.t_port_open_ns);
    CHECK(t->tl.t_models_ok_ns > t->tl.t_health_ok_ns);
    /* the port opened only after the 300 ms "load" */
    CHECK(t->tl.t_port_open_ns - t->tl.t_launch_ns >= 300ull * 1000000ull);
    /* three 503 answers at >= 20 ms intervals before the 200 */
    CHECK(t->tl.t_health_ok_ns - t->tl.t_port_open_ns >= 3 * 20ull * 1000000ull);
    CHECK_EQ_STR(t->model_id, "fake-model");
    CHECK_EQ_INT(t->max_model_len, 2048);
    CHECK_EQ_STR(t->version, "9.9.9");
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    CHECK_EQ_STR(t->base_url, url);
    CHECK_EQ_INT(t->startup.kv_cache_tokens, 12345);
    CHECK_NEAR(t->startup.phase_s[STARTUP_PHASE_WEIGHTS_LOAD], 0.3, 1e-9);
    CHECK(t->startup.saw_listening);
    CHECK(target_alive(t));

    pid_t pg = t->pid;
    struct target_stop_result sr;
    CHECK_EQ_INT(target_stop(t, &sr), TARGET_OK);
    CHECK(sr.was_running);
    CHECK(!sr.killed);
    CHECK(sr.exit.exited);
    CHECK_EQ_INT(sr.exit.exit_signal, SIGTERM);
    CHECK(sr.stop_ns > 0 && sr.stop_ns < 3000ull * 1000000ull);
    CHECK_EQ_INT(t->state, TARGET_STATE_STOPPED);
    CHECK(kill(-pg, 0) == -1 && errno == ESRCH);
    CHECK(!target_alive(t));
    CHECK_EQ_INT(target_stop(t, &sr), TARGET_OK); /* idempotent */
    CHECK(!sr.was_running);
    char ex[96];
    CHECK_EQ_STR(target_exit_str(&t->exit, ex, sizeof ex), "killed by signal 15 (Terminated)");
    target_free(t);
}

static void test_port_in_use(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0 &&
          getsockname(fd, (struct sockaddr *)&a, &al) == 0);
    int port = ntohs(a.sin_port);
    char msg[128], err[1024];
    CHECK_EQ_INT(target_port_free("127.0.0.1", port, err, sizeof err), -1);
    snprintf(msg, sizeof msg, "port %d is already in use", port);
    CHECK_MSG(strstr(err, msg) != NULL, "%s", err);

    struct target_config cfg;
    char *cmd[16], log[512];
    snprintf(log, sizeof log, "%s/inuse.log", g_tmp);
    fake_cfg(&cfg, cmd, port, log, "0", "0");
    struct target *t = target_new(&cfg);
    CHECK_EQ_INT(target_start(t, err, sizeof err), TARGET_ERR_PORT_IN_USE);
    CHECK_MSG(strstr(err, msg) != NULL, "%s", err);
    CHECK_EQ_INT(t->pid, 0); /* nothing launched */
    CHECK(!t->launched);
    struct stat sb;
    CHECK(stat(log, &sb) != 0); /* checked before the log was even created */
    target_free(t);
    close(fd);
    CHECK_EQ_INT(target_port_free("127.0.0.1", port, err, sizeof err), 0);
}

static void write_script(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
    chmod(path, 0755);
}

static void test_never_ready(void)
{
    char script[512], log[512], err[8192];
    snprintf(script, sizeof script, "%s/never.sh", g_tmp);
    snprintf(log, sizeof log, "%s/never.log", g_tmp);
    write_script(script, "#!/bin/sh\n"
                         "i=1\n"
                         "while [ $i -le 30 ]; do echo \"loading step $i\"; i=$((i+1)); done\n"
                         "echo 'INFO engine: Available KV cache memory: 1.25 GiB'\n"
                         "exec sleep 60\n");
    struct target_config cfg;
    target_config_defaults(&cfg, TARGET_KIND_VLLM);
    char *cmd[] = {script, NULL};
    cfg.serve_cmd = cmd;
    cfg.n_serve_cmd = 1;
    cfg.log_path = log;
    cfg.ready_timeout_ms = 1500;
    cfg.stop_grace_ms = 2000;
    struct target *t = target_new(&cfg);
    mono_ns t0 = clock_now_ns();
    enum target_status st = target_start(t, err, sizeof err);
    mono_ns dt = clock_now_ns() - t0;
    CHECK_EQ_INT(st, TARGET_ERR_TIMEOUT);
    CHECK(dt >= 1500ull * 1000000ull && dt < 6000ull * 1000000ull);
    CHECK_MSG(strstr(err, "not ready after 1.5 s") != NULL, "%s", err);
    CHECK_MSG(strstr(err, "last 20 lines") != NULL, "%s", err);
    CHECK(strstr(err, "loading step 30") != NULL);
    CHECK(strstr(err, "loading step 12") != NULL);
    CHECK(strstr(err, "loading step 11\n") == NULL); /* only the last 20 lines */
    CHECK_NEAR(t->startup.available_kv_gib, 1.25, 1e-9);
    CHECK_EQ_INT(t->state, TARGET_STATE_STOPPED);
    CHECK(t->exit.exited);
    CHECK(group_gone(t->pid, 1000));
    target_free(t);
}

static void test_exits_at_once(void)
{
    char log[512], err[8192];
    snprintf(log, sizeof log, "%s/exit.log", g_tmp);
    struct target_config cfg;
    target_config_defaults(&cfg, TARGET_KIND_VLLM);
    char *cmd[] = {"/bin/sh", "-c",
                   "echo 'starting the server'; echo '(EngineCore_DP0 pid=1) ValueError: No "
                   "available memory for the cache blocks. Try increasing it.' >&2; exit 3",
                   NULL};
    cfg.serve_cmd = cmd;
    cfg.n_serve_cmd = 3;
    cfg.log_path = log;
    cfg.ready_timeout_ms = 20000;
    struct target *t = target_new(&cfg);
    mono_ns t0 = clock_now_ns();
    enum target_status st = target_start(t, err, sizeof err);
    CHECK_EQ_INT(st, TARGET_ERR_EXITED);
    CHECK(clock_now_ns() - t0 < 5000ull * 1000000ull); /* not the 20 s deadline */
    CHECK_MSG(strstr(err, "exit status 3") != NULL, "%s", err);
    CHECK(strstr(err, "starting the server") != NULL);
    CHECK(strstr(err, "No available memory for the cache blocks") != NULL);
    CHECK_EQ_INT(t->exit.exit_code, 3);
    CHECK(t->startup.error_message[0] != 0);
    target_free(t);

    /* a command that does not exist */
    char *bad[] = {"/nonexistent/llm-server", NULL};
    cfg.serve_cmd = bad;
    cfg.n_serve_cmd = 1;
    t = target_new(&cfg);
    CHECK_EQ_INT(target_start(t, err, sizeof err), TARGET_ERR_SPAWN);
    CHECK_MSG(strstr(err, "cannot run '/nonexistent/llm-server'") != NULL, "%s", err);
    CHECK(strstr(err, "No such file") != NULL);
    target_free(t);
}

static void test_killed_mid_run(void)
{
    struct target_config cfg;
    char *cmd[16], log[512], err[8192];
    snprintf(log, sizeof log, "%s/killed.log", g_tmp);
    fake_cfg(&cfg, cmd, target_find_free_port("127.0.0.1"), log, "0", "0");
    struct target *t = target_new(&cfg);
    CHECK_MSG(target_start(t, err, sizeof err) == TARGET_OK, "%s", err);
    CHECK(target_alive(t));
    kill(t->pid, SIGKILL);
    int alive = 1;
    for (int i = 0; i < 200 && alive; i++) {
        alive = target_alive(t);
        if (alive)
            clock_sleep_ns(10 * 1000 * 1000);
    }
    CHECK(!alive);
    CHECK(t->exit.exited);
    CHECK_EQ_INT(t->exit.exit_signal, SIGKILL);
    CHECK_EQ_INT(t->state, TARGET_STATE_STOPPED);
    struct target_stop_result sr;
    target_stop(t, &sr);
    CHECK(!sr.was_running);
    CHECK_EQ_INT(sr.exit.exit_signal, SIGKILL);
    target_free(t);
}

static void test_sigkill_escalation(void)
{
    struct target_config cfg;
    char *cmd[16], log[512], err[8192];
    snprintf(log, sizeof log, "%s/stubborn.log", g_tmp);
    fake_cfg(&cfg, cmd, target_find_free_port("127.0.0.1"), log, "0", "0");
    cmd[cfg.n_serve_cmd++] = "--ignore-term";
    cmd[cfg.n_serve_cmd] = NULL;
    cfg.stop_grace_ms = 400;
    struct target *t = target_new(&cfg);
    CHECK_MSG(target_start(t, err, sizeof err) == TARGET_OK, "%s", err);
    pid_t pg = t->pid;
    struct target_stop_result sr;
    target_stop(t, &sr);
    CHECK(sr.was_running);
    CHECK(sr.killed);
    CHECK_EQ_INT(sr.exit.exit_signal, SIGKILL);
    CHECK(sr.stop_ns >= 400ull * 1000000ull);
    CHECK(group_gone(pg, 1000));
    target_free(t);
}

static void test_url_mode(void)
{
    struct target_config cfg;
    char *cmd[16], log[512], err[8192];
    snprintf(log, sizeof log, "%s/url.log", g_tmp);
    fake_cfg(&cfg, cmd, target_find_free_port("127.0.0.1"), log, "0", "0");
    struct target *srv = target_new(&cfg);
    CHECK_MSG(target_start(srv, err, sizeof err) == TARGET_OK, "%s", err);

    struct target_config uc;
    char url[300];
    snprintf(url, sizeof url, "%s/", srv->base_url);
    target_config_defaults(&uc, TARGET_KIND_VLLM);
    uc.url = url;
    struct target *t = target_new(&uc);
    CHECK_MSG(target_start(t, err, sizeof err) == TARGET_OK, "%s", err);
    CHECK(!t->launched);
    CHECK_EQ_STR(t->base_url, srv->base_url); /* trailing slash dropped */
    CHECK_EQ_STR(t->model_id, "fake-model");
    CHECK_EQ_INT(t->state, TARGET_STATE_READY);
    CHECK(target_alive(t));
    struct target_stop_result sr;
    target_stop(t, &sr);
    CHECK(!sr.was_running);
    CHECK(target_alive(srv)); /* url mode never touches the server */
    target_free(t);
    target_free(srv);

    /* nobody there: a quick, clear error */
    uc.url = "http://127.0.0.1:1";
    uc.ready_timeout_ms = 600;
    t = target_new(&uc);
    CHECK_EQ_INT(target_start(t, err, sizeof err), TARGET_ERR_HTTP);
    CHECK_MSG(strstr(err, "not ready") != NULL, "%s", err);
    target_free(t);
}

static void test_drop_caches_needs_root(void)
{
    if (geteuid() == 0) {
        /* as root this would really drop the shared machine's page cache: not in a unit test */
        fprintf(stderr, "  (running as root: drop_caches not exercised)\n");
        return;
    }
    struct target_config cfg;
    char *cmd[16], log[512], err[1024];
    snprintf(log, sizeof log, "%s/dc.log", g_tmp);
    fake_cfg(&cfg, cmd, target_find_free_port("127.0.0.1"), log, "0", "0");
    cfg.drop_caches = 1;
    struct target *t = target_new(&cfg);
    CHECK_EQ_INT(target_start(t, err, sizeof err), TARGET_ERR_DROP_CACHES);
    CHECK(strstr(err, "root") != NULL);
    CHECK(!t->launched);
    target_free(t);
}

/* A child process launches a server, then gets SIGINT (like Ctrl-C). mode 0: one SIGINT while it
 * waits for readiness; 1: two SIGINTs while it is busy elsewhere (second one kills at once);
 * 2: the launcher is SIGKILLed (no handler can run: the death signal must take the server). */
static void ctrl_c_case(int mode)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    char script[512], log[512];
    snprintf(script, sizeof script, "%s/slow.sh", g_tmp);
    snprintf(log, sizeof log, "%s/ctrlc%d.log", g_tmp, mode);
    write_script(script, "#!/bin/sh\necho 'loading forever'\nsleep 60 &\nexec sleep 61\n");
    pid_t child = fork();
    if (child == 0) {
        close(pfd[0]);
        target_install_signal_handlers();
        struct target_config cfg;
        target_config_defaults(&cfg, TARGET_KIND_VLLM);
        char *cmd[] = {script, NULL};
        cfg.serve_cmd = cmd;
        cfg.n_serve_cmd = 1;
        cfg.log_path = log;
        cfg.ready_timeout_ms = 60000;
        cfg.stop_grace_ms = 2000;
        struct target *t = target_new(&cfg);
        char err[4096];
        if (target_launch(t, err, sizeof err) != TARGET_OK)
            _exit(10);
        if (write(pfd[1], &t->pid, sizeof t->pid) != sizeof t->pid)
            _exit(11);
        if (mode == 0) {
            enum target_status st = target_wait_ready(t, err, sizeof err);
            target_free(t);
            _exit(st == TARGET_ERR_INTERRUPTED ? 42 : 12);
        }
        for (;;)
            pause(); /* busy elsewhere, never polling target_interrupted() */
    }
    close(pfd[1]);
    pid_t pg = 0;
    CHECK(read(pfd[0], &pg, sizeof pg) == (ssize_t)sizeof pg);
    close(pfd[0]);
    CHECK(pg > 0);
    clock_sleep_ns(200 * 1000 * 1000); /* let the server start its sleeps */
    CHECK(kill(-pg, 0) == 0);
    int status = 0;
    if (mode == 0) {
        kill(child, SIGINT);
        waitpid(child, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42);
    } else if (mode == 1) {
        kill(child, SIGINT);
        clock_sleep_ns(100 * 1000 * 1000);
        CHECK(kill(-pg, 0) == 0); /* the first one only sets the flag */
        kill(child, SIGINT);
        waitpid(child, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 130);
    } else {
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        CHECK(WIFSIGNALED(status));
    }
    if (mode == 2) {
        /* Only the group leader gets the parent-death signal; its own children are the server's
         * business (a real server takes its workers down with it; `sleep` does not). */
        int leader_gone = 0;
        for (int i = 0; i < 200 && !leader_gone; i++) {
            while (waitpid(-pg, NULL, WNOHANG) > 0)
                ;
            leader_gone = kill(pg, 0) != 0 && errno == ESRCH;
            if (!leader_gone)
                clock_sleep_ns(10 * 1000 * 1000);
        }
        CHECK(leader_gone);
        kill(-pg, SIGKILL); /* the test cleans up the leader's orphaned `sleep 60` */
    }
    CHECK_MSG(group_gone(pg, 3000), "mode %d: processes left in group %d", mode, (int)pg);
}

static void test_ctrl_c_no_orphans(void)
{
    ctrl_c_case(0);
    ctrl_c_case(1);
    ctrl_c_case(2);
}

static const char *slmprobe_bin(void)
{
    const char *b = getenv("SLMPROBE_BIN");
    return b && b[0] ? b : "./slmprobe";
}

static void test_embedded(void)
{
    const char *bin = slmprobe_bin();
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "  SKIP: %s not built yet (embedded launch not tested)\n", bin);
        return;
    }
    char model[512], cmdline[1200], log[512], err[8192];
    snprintf(model, sizeof model, "%s/tiny.gguf", g_tmp);
    snprintf(cmdline, sizeof cmdline, "'%s' model init --preset tiny -o '%s' >/dev/null 2>&1", bin,
             model);
    int rc = system(cmdline);
    CHECK_MSG(rc == 0, "model init failed: %s", cmdline);
    if (rc != 0)
        return;
    snprintf(log, sizeof log, "%s/embedded.log", g_tmp);
    struct target_config cfg;
    target_config_defaults(&cfg, TARGET_KIND_EMBEDDED);
    cfg.self_exe = bin;
    cfg.model = model;
    cfg.port = 0; /* a free one */
    cfg.max_model_len = 512;
    cfg.log_path = log;
    cfg.ready_timeout_ms = 120000;
    char *extra[] = {"--kv-cache-memory-bytes", "8388608", "--max-num-batched-tokens", "256"};
    cfg.extra_args = extra;
    cfg.n_extra_args = 4;
    struct target *t = target_new(&cfg);
    enum target_status st = target_start(t, err, sizeof err);
    CHECK_MSG(st == TARGET_OK, "%s: %s", target_status_str(st), err);
    if (st == TARGET_OK) {
        CHECK_EQ_INT(t->state, TARGET_STATE_READY);
        CHECK(t->port > 0);
        CHECK(t->tl.t_port_open_ns >= t->tl.t_launch_ns);
        CHECK(t->tl.t_health_ok_ns >= t->tl.t_port_open_ns);
        CHECK(t->tl.t_models_ok_ns >= t->tl.t_health_ok_ns);
        CHECK(t->model_id[0] != 0);
        CHECK_EQ_INT(t->max_model_len, 512);
        CHECK_MSG(t->startup.kv_cache_tokens > 0, "kv tokens %lld",
                  (long long)t->startup.kv_cache_tokens);
        CHECK(!isnan(t->startup.phase_s[STARTUP_PHASE_WEIGHTS_LOAD]));
        CHECK(!isnan(t->startup.phase_s[STARTUP_PHASE_KV_CACHE_ALLOC]));
        CHECK(!isnan(t->startup.phase_s[STARTUP_PHASE_ENGINE_INIT]));
        CHECK_EQ_INT(t->startup.max_concurrency_len, 512);
        CHECK(t->startup.saw_startup_complete);

        /* the real /metrics through promscrape, and one real completion moving its counters */
        char url[300];
        struct prom_set before, after;
        int status;
        snprintf(url, sizeof url, "%s/metrics", t->base_url);
        CHECK_MSG(prom_fetch(url, NULL, 10000, &before, &status, err, sizeof err) == PROM_OK, "%s",
                  err);
        struct buf body;
        buf_init(&body, 4096, 1 << 20);
        snprintf(url, sizeof url, "%s/v1/completions", t->base_url);
        CHECK(http_post_json(url, NULL,
                             "{\"prompt\":\"hello there\",\"max_tokens\":5,\"ignore_eos\":true,"
                             "\"temperature\":0}",
                             30000, &body, &status, err, sizeof err) == 0);
        CHECK_MSG(status == 200, "HTTP %d: %s", status, body.data);
        buf_free(&body);
        snprintf(url, sizeof url, "%s/metrics", t->base_url);
        struct server_metrics m0, m1, d;
        server_metrics_from_prom(&before, &m0);
        /* the server's counters may lag the response by a scheduler step (vLLM's too): poll */
        for (int i = 0; i < 100; i++) {
            CHECK(prom_fetch(url, NULL, 10000, &after, &status, err, sizeof err) == PROM_OK);
            server_metrics_from_prom(&after, &m1);
            server_metrics_delta(&m0, &m1, &d);
            if (d.generation_tokens >= 5 && d.requests_success >= 1)
                break;
            prom_set_free(&after);
            clock_sleep_ns(20 * 1000 * 1000);
        }
        CHECK_EQ_INT(m1.source, SERVER_METRICS_SOURCE_VLLM);
        CHECK_MSG(d.has_generation_tokens && d.generation_tokens == 5, "gen %g -> %g",
                  m0.generation_tokens, m1.generation_tokens);
        CHECK(d.has_prompt_tokens && d.prompt_tokens >= 1);
        CHECK(d.has_requests_success && d.requests_success == 1);
        CHECK(m1.has_running && m1.has_waiting && m1.has_kv_usage);
        struct prom_histogram h;
        CHECK(prom_histogram_get(&after, "vllm:time_to_first_token_seconds", NULL, &h) == 0);
        CHECK_NEAR(h.count, 1, 0);
        prom_histogram_free(&h);
        prom_set_free(&before);
        prom_set_free(&after);
        fprintf(stderr, "  embedded ready in %.3f s (port %.3f, health %.3f), %lld KV tokens, "
                        "version '%s'\n",
                ns_to_s(t->tl.t_models_ok_ns - t->tl.t_launch_ns),
                ns_to_s(t->tl.t_port_open_ns - t->tl.t_launch_ns),
                ns_to_s(t->tl.t_health_ok_ns - t->tl.t_launch_ns),
                (long long)t->startup.kv_cache_tokens, t->version);
    }
    pid_t pg = t->pid;
    struct target_stop_result sr;
    target_stop(t, &sr);
    if (pg > 0) {
        CHECK(kill(-pg, 0) == -1 && errno == ESRCH);
        CHECK(sr.exit.exited);
    }
    target_free(t);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "--fake-server"))
        return fake_server_main(argc, argv);
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (n <= 0)
        return 1;
    g_self[n] = 0;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/slm_target_XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    TEST_RUN(test_argv);
    TEST_RUN(test_cmdline);
    TEST_RUN(test_secret_and_arrival);
    TEST_RUN(test_fake_server_ready_and_stop);
    TEST_RUN(test_port_in_use);
    TEST_RUN(test_never_ready);
    TEST_RUN(test_exits_at_once);
    TEST_RUN(test_killed_mid_run);
    TEST_RUN(test_sigkill_escalation);
    TEST_RUN(test_url_mode);
    TEST_RUN(test_drop_caches_needs_root);
    TEST_RUN(test_ctrl_c_no_orphans);
    TEST_RUN(test_embedded);
    char rm[512];
    snprintf(rm, sizeof rm, "rm -rf '%s'", g_tmp);
    if (system(rm) != 0)
        fprintf(stderr, "cleanup of %s failed\n", g_tmp);
    return TEST_DONE();
}
