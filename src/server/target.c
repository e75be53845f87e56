/* target: launches, watches and stops the server under test (see target.h). Process groups,
 * a self-pipe for signals, a registry of launched groups for orphan protection, readiness polling
 * over real sockets (TCP connect, then /health and /v1/models through client.h's http_get).
 * It never goes through a shell and never sleeps to imitate anything: each wait is a poll of the
 * real server with a deadline. */
#include "server/target.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/client.h"
#include "util/json.h"
#include "util/log.h"
#include "util/redact.h"

#define TARGET_MAX_GROUPS 64
#define TARGET_LOG_TAIL_LINES 20

/* ---- names ---- */

const char *target_kind_str(enum target_kind k)
{
    switch (k) {
    case TARGET_KIND_EMBEDDED:
        return "embedded";
    case TARGET_KIND_VLLM:
        return "vllm";
    case TARGET_KIND_LLAMACPP:
        return "llamacpp";
    case TARGET_KIND_SGLANG:
        return "sglang";
    case TARGET_KIND__COUNT:
        break;
    }
    return "unknown";
}

int target_kind_parse(const char *s, enum target_kind *out)
{
    if (!s)
        return -1;
    if (!strcmp(s, "embedded"))
        *out = TARGET_KIND_EMBEDDED;
    else if (!strcmp(s, "vllm"))
        *out = TARGET_KIND_VLLM;
    else if (!strcmp(s, "llamacpp") || !strcmp(s, "llama.cpp") || !strcmp(s, "llama-server"))
        *out = TARGET_KIND_LLAMACPP;
    else if (!strcmp(s, "sglang"))
        *out = TARGET_KIND_SGLANG;
    else
        return -1;
    return 0;
}

const char *target_state_str(enum target_state s)
{
    switch (s) {
    case TARGET_STATE_STARTING:
        return "starting";
    case TARGET_STATE_LOADING:
        return "loading";
    case TARGET_STATE_READY:
        return "ready";
    case TARGET_STATE_DRAINING:
        return "draining";
    case TARGET_STATE_STOPPED:
        return "stopped";
    }
    return "unknown";
}

const char *target_status_str(enum target_status st)
{
    switch (st) {
    case TARGET_OK:
        return "ok";
    case TARGET_ERR_CONFIG:
        return "bad configuration";
    case TARGET_ERR_PORT_IN_USE:
        return "port in use";
    case TARGET_ERR_LOG:
        return "cannot open log";
    case TARGET_ERR_SPAWN:
        return "cannot start server";
    case TARGET_ERR_EXITED:
        return "server exited";
    case TARGET_ERR_TIMEOUT:
        return "not ready before the deadline";
    case TARGET_ERR_INTERRUPTED:
        return "interrupted";
    case TARGET_ERR_DROP_CACHES:
        return "cannot drop caches";
    case TARGET_ERR_HTTP:
        return "server unreachable";
    case TARGET_ERR__COUNT:
        break;
    }
    return "unknown";
}

static const struct target_kind_caps kind_caps[TARGET_KIND__COUNT] = {
    [TARGET_KIND_EMBEDDED] = {1, NULL, "--enable-prefix-caching", "--no-enable-prefix-caching",
                              NULL, 0, "/version"},
    [TARGET_KIND_VLLM] = {1, NULL, "--enable-prefix-caching", "--no-enable-prefix-caching", NULL,
                          0, "/version"},
    [TARGET_KIND_LLAMACPP] = {1, "--metrics", NULL, "--no-cache-prompt",
                              "\"cache_prompt\":false", 1, "/props"},
    [TARGET_KIND_SGLANG] = {1, "--enable-metrics", NULL, "--disable-radix-cache", NULL, 1,
                            "/version"},
};

const struct target_kind_caps *target_kind_caps(enum target_kind k)
{
    if ((unsigned)k >= TARGET_KIND__COUNT)
        k = TARGET_KIND_EMBEDDED;
    return &kind_caps[k];
}

void target_config_defaults(struct target_config *cfg, enum target_kind kind)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->host = "127.0.0.1";
    cfg->ready_timeout_ms =
        (kind == TARGET_KIND_VLLM || kind == TARGET_KIND_SGLANG) ? 600000 : 120000;
    cfg->stop_grace_ms = 10000;
    cfg->poll_interval_ms = 25;
}

const char *target_exit_str(const struct target_exit *ex, char *out, size_t out_len)
{
    if (!ex->exited)
        snprintf(out, out_len, "running");
    else if (ex->exit_signal)
        snprintf(out, out_len, "killed by signal %d (%s)", ex->exit_signal,
                 strsignal(ex->exit_signal));
    else
        snprintf(out, out_len, "exit status %d", ex->exit_code);
    return out;
}

/* ---- argv ---- */

struct argv_b {
    char **v;
    int n, cap;
};

static void av_push(struct argv_b *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        int cap = a->cap ? a->cap * 2 : 32;
        char **v = xcalloc((size_t)cap, sizeof *v);
        if (a->n)
            memcpy(v, a->v, (size_t)a->n * sizeof *v);
        free(a->v);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = xstrdup(s);
    a->v[a->n] = NULL;
}

static void av_pushf(struct argv_b *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void av_pushf(struct argv_b *a, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    av_push(a, tmp);
}

/* The flags every server kind takes in this order: --host, --port, then the context length under
 * ctx_flag and the GPU memory fraction under mem_flag (NULL: the kind has none), each when set. */
static void av_push_serve_common(struct argv_b *a, const struct target_config *cfg,
                                 const char *host, int port, const char *ctx_flag,
                                 const char *mem_flag)
{
    av_push(a, "--host");
    av_push(a, host);
    av_push(a, "--port");
    av_pushf(a, "%d", port);
    if (cfg->max_model_len > 0) {
        av_push(a, ctx_flag);
        av_pushf(a, "%d", cfg->max_model_len);
    }
    if (mem_flag && cfg->gpu_memory_utilization > 0) {
        av_push(a, mem_flag);
        av_pushf(a, "%g", cfg->gpu_memory_utilization);
    }
}

const char *target_cmdline(const struct target_config *cfg, int port, char *out, size_t out_len)
{
    char **argv = NULL;
    int argc = 0;
    char err[256];
    if (!out_len)
        return out;
    if (target_argv_build(cfg, port, &argv, &argc, err, sizeof err) != TARGET_OK) {
        snprintf(out, out_len, "(%s)", err);
    } else {
        redact_argv_join(argc, argv, out, out_len);
        target_argv_free(argv);
    }
    redact_secret_in(out, cfg->api_key);
    return out;
}

void target_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}

enum target_status target_argv_build(const struct target_config *cfg, int port, char ***argv_out,
                                     int *argc_out, char *err, size_t err_len)
{
    struct argv_b a = {0};
    const char *host = cfg->host ? cfg->host : "127.0.0.1";
    enum target_kind k = cfg->kind;
    *argv_out = NULL;
    *argc_out = 0;
    if ((unsigned)k >= TARGET_KIND__COUNT) {
        snprintf(err, err_len, "unknown server kind %d", (int)k);
        return TARGET_ERR_CONFIG;
    }
    if (cfg->n_serve_cmd > 0) {
        for (int i = 0; i < cfg->n_serve_cmd; i++)
            av_push(&a, cfg->serve_cmd[i]);
        goto extra;
    }
    if (!cfg->model || !cfg->model[0]) {
        snprintf(err, err_len, "no model given for --server %s (--model PATH|ID)",
                 target_kind_str(k));
        return TARGET_ERR_CONFIG;
    }
    if (port <= 0 || port > 65535) {
        snprintf(err, err_len, "bad port %d", port);
        return TARGET_ERR_CONFIG;
    }
    if (cfg->max_model_len < 0 || cfg->gpu_memory_utilization < 0 ||
        cfg->gpu_memory_utilization > 1) {
        snprintf(err, err_len, "bad max_model_len %d or gpu_memory_utilization %g",
                 cfg->max_model_len, cfg->gpu_memory_utilization);
        return TARGET_ERR_CONFIG;
    }
    const struct target_kind_caps *caps = target_kind_caps(k);
    switch (k) {
    case TARGET_KIND_EMBEDDED:
    case TARGET_KIND_VLLM:
        if (k == TARGET_KIND_EMBEDDED) {
            av_push(&a, cfg->self_exe ? cfg->self_exe : "/proc/self/exe");
            av_push(&a, "serve");
            av_push(&a, "--model");
        } else {
            av_push(&a, "vllm");
            av_push(&a, "serve");
        }
        av_push(&a, cfg->model);
        av_push_serve_common(&a, cfg, host, port, "--max-model-len", "--gpu-memory-utilization");
        av_push(&a, "--enable-prompt-tokens-details"); /* usage reports cached tokens */
        break;
    case TARGET_KIND_LLAMACPP:
        if (cfg->gpu_memory_utilization > 0) {
            snprintf(err, err_len,
                     "--gpu-memory-utilization has no llama.cpp equivalent (llama.cpp sizes KV "
                     "from -c; pass -ngl/-fit after --)");
            return TARGET_ERR_CONFIG;
        }
        av_push(&a, "llama-server");
        av_push(&a, "-m");
        av_push(&a, cfg->model);
        av_push_serve_common(&a, cfg, host, port, "-c", NULL);
        av_push(&a, caps->metrics_flag);
        break;
    case TARGET_KIND_SGLANG:
        av_push(&a, "python3");
        av_push(&a, "-m");
        av_push(&a, "sglang.launch_server");
        av_push(&a, "--model-path");
        av_push(&a, cfg->model);
        av_push_serve_common(&a, cfg, host, port, "--context-length", "--mem-fraction-static");
        av_push(&a, caps->metrics_flag);
        break;
    case TARGET_KIND__COUNT:
        break;
    }
    if (cfg->prefix_cache == TARGET_PREFIX_CACHE_OFF && caps->prefix_cache_off_flag)
        av_push(&a, caps->prefix_cache_off_flag);
    if (cfg->prefix_cache == TARGET_PREFIX_CACHE_ON && caps->prefix_cache_on_flag)
        av_push(&a, caps->prefix_cache_on_flag);
    if (cfg->api_key && cfg->api_key[0]) {
        av_push(&a, "--api-key");
        av_push(&a, cfg->api_key);
    }
    if (cfg->served_name && cfg->served_name[0]) {
        av_push(&a, k == TARGET_KIND_LLAMACPP ? "--alias" : "--served-model-name");
        av_push(&a, cfg->served_name);
    }
extra:
    for (int i = 0; i < cfg->n_extra_args; i++)
        av_push(&a, cfg->extra_args[i]);
    if (a.n == 0) {
        snprintf(err, err_len, "empty server command");
        free(a.v);
        return TARGET_ERR_CONFIG;
    }
    *argv_out = a.v;
    *argc_out = a.n;
    return TARGET_OK;
}

/* ---- registry and signals ---- */

static volatile sig_atomic_t g_groups[TARGET_MAX_GROUPS]; /* pgids; 0 = free slot */
static pthread_mutex_t g_reg_mu = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t g_interrupted;
static int g_sig_pipe[2] = {-1, -1};
static int g_handlers_installed;

static int registry_add(pid_t pgid)
{
    int rc = -1;
    pthread_mutex_lock(&g_reg_mu);
    for (int i = 0; i < TARGET_MAX_GROUPS; i++)
        if (g_groups[i] == 0) {
            g_groups[i] = (sig_atomic_t)pgid;
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&g_reg_mu);
    return rc;
}

static void registry_remove(pid_t pgid)
{
    pthread_mutex_lock(&g_reg_mu);
    for (int i = 0; i < TARGET_MAX_GROUPS; i++)
        if (g_groups[i] == (sig_atomic_t)pgid)
            g_groups[i] = 0;
    pthread_mutex_unlock(&g_reg_mu);
}

void target_kill_all(void)
{
    for (int i = 0; i < TARGET_MAX_GROUPS; i++) {
        pid_t pg = (pid_t)g_groups[i];
        if (pg > 1)
            kill(-pg, SIGKILL);
    }
}

static void on_signal(int sig)
{
    int saved = errno;
    if (g_interrupted) {
        static const char msg[] = "\nslmprobe: second interrupt: killing the server, exiting\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        target_kill_all();
        _exit(130);
    }
    g_interrupted = sig;
    if (g_sig_pipe[1] >= 0) {
        ssize_t w = write(g_sig_pipe[1], "!", 1);
        (void)w;
    }
    errno = saved;
}

static void at_exit_stop_all(void)
{
    /* Graceful first (1 s), then SIGKILL; reap what is ours. */
    int any = 0;
    for (int i = 0; i < TARGET_MAX_GROUPS; i++) {
        pid_t pg = (pid_t)g_groups[i];
        if (pg > 1 && kill(-pg, SIGTERM) == 0)
            any = 1;
    }
    for (int t = 0; any && t < 100; t++) {
        any = 0;
        for (int i = 0; i < TARGET_MAX_GROUPS; i++) {
            pid_t pg = (pid_t)g_groups[i];
            if (pg <= 1)
                continue;
            while (waitpid(-pg, NULL, WNOHANG) > 0)
                ;
            if (kill(-pg, 0) == 0)
                any = 1;
        }
        if (any)
            clock_sleep_ns(10 * 1000 * 1000);
    }
    target_kill_all();
    for (int i = 0; i < TARGET_MAX_GROUPS; i++) {
        pid_t pg = (pid_t)g_groups[i];
        if (pg > 1)
            while (waitpid(-pg, NULL, WNOHANG) > 0)
                ;
        g_groups[i] = 0;
    }
}

static pthread_once_t g_atexit_once = PTHREAD_ONCE_INIT;
static void install_atexit(void)
{
    atexit(at_exit_stop_all);
}

/* atexit once per process image; the subreaper flag is not inherited by fork, so set it every
 * time: orphaned members of a server's group (vLLM's engine core, say) are reparented to us, so
 * stop can reap them. */
static void process_setup(void)
{
    pthread_once(&g_atexit_once, install_atexit);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

void target_install_signal_handlers(void)
{
    process_setup();
    if (g_handlers_installed)
        return;
    if (pipe2(g_sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        g_sig_pipe[0] = g_sig_pipe[1] = -1;
        log_warn("target", "self-pipe: %s", strerror(errno));
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    g_handlers_installed = 1;
}

int target_interrupted(void)
{
    return g_interrupted != 0;
}

int target_signal_fd(void)
{
    return g_sig_pipe[0];
}

/* ---- sockets ---- */

static int resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints, *res = NULL;
    char ports[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(ports, sizeof ports, "%d", port);
    int rc = getaddrinfo(host, ports, &hints, &res);
    if (rc != 0 || !res)
        return -1;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int target_port_free(const char *host, int port, char *err, size_t err_len)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (!host)
        host = "127.0.0.1";
    if (resolve(host, port, &ss, &sl) != 0) {
        snprintf(err, err_len, "cannot resolve host '%s'", host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc = bind(fd, (struct sockaddr *)&ss, sl);
    int saved = errno;
    close(fd);
    if (rc != 0) {
        if (saved == EADDRINUSE)
            snprintf(err, err_len, "port %d is already in use (on %s)", port, host);
        else
            snprintf(err, err_len, "cannot bind %s:%d: %s", host, port, strerror(saved));
        return -1;
    }
    return 0;
}

int target_find_free_port(const char *host)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (resolve(host ? host : "127.0.0.1", 0, &ss, &sl) != 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&ss, sl) == 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    close(fd);
    return port;
}

/* Non-blocking connect with a short timeout: 1 if something accepts on host:port. */
static int tcp_probe(const char *host, int port, int timeout_ms)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (resolve(host, port, &ss, &sl) != 0)
        return 0;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return 0;
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&ss, sl) == 0) {
        ok = 1;
    } else if (errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, timeout_ms) == 1) {
            int e = 0;
            socklen_t el = sizeof e;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0)
                ok = 1;
        }
    }
    close(fd);
    return ok;
}

/* The address to connect to for a bind host: wildcard binds are reached over loopback. */
static const char *connect_host(const char *host)
{
    if (!host || !host[0] || !strcmp(host, "0.0.0.0"))
        return "127.0.0.1";
    if (!strcmp(host, "::") || !strcmp(host, "[::]"))
        return "::1";
    return host;
}

/* ---- log tail ---- */

int target_log_tail(const char *path, int n_lines, struct buf *out)
{
    buf_reset(out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    size_t want = 64 * 1024;
    off_t off = st.st_size > (off_t)want ? st.st_size - (off_t)want : 0;
    size_t len = (size_t)(st.st_size - off);
    char *data = xmalloc(len + 1);
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, data + got, len - got, off + (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    size_t end = got;
    while (end > 0 && (data[end - 1] == '\n' || data[end - 1] == '\r'))
        end--;
    size_t start = end;
    int lines = 0;
    while (start > 0) {
        if (data[start - 1] == '\n' && ++lines >= n_lines)
            break;
        start--;
    }
    buf_append(out, data + start, end - start);
    free(data);
    return 0;
}

/* ---- the target ---- */

struct target *target_new(const struct target_config *cfg)
{
    struct target *t = xcalloc(1, sizeof *t);
    t->cfg = *cfg;
    if (!t->cfg.host || !t->cfg.host[0])
        t->cfg.host = "127.0.0.1";
    if (t->cfg.ready_timeout_ms <= 0)
        t->cfg.ready_timeout_ms =
            (cfg->kind == TARGET_KIND_VLLM || cfg->kind == TARGET_KIND_SGLANG) ? 600000 : 120000;
    if (t->cfg.stop_grace_ms <= 0)
        t->cfg.stop_grace_ms = 10000;
    if (t->cfg.poll_interval_ms <= 0)
        t->cfg.poll_interval_ms = 25;
    if (t->cfg.poll_interval_ms < 20)
        t->cfg.poll_interval_ms = 20;
    if (t->cfg.poll_interval_ms > 50)
        t->cfg.poll_interval_ms = 50;
    t->state = TARGET_STATE_STOPPED;
    t->max_model_len = -1;
    t->log_fd_ = -1;
    logparse_init(&t->lp_);
    t->startup = t->lp_.info;
    return t;
}

void target_free(struct target *t)
{
    if (!t)
        return;
    target_stop(t, NULL);
    if (t->log_fd_ >= 0)
        close(t->log_fd_);
    target_argv_free(t->argv_);
    free(t);
}

void target_follow_log(struct target *t)
{
    if (t->log_fd_ < 0)
        return;
    if (logparse_follow_at(&t->lp_, t->log_fd_, clock_now_ns()) >= 0) {
        /* Present what is known so far, pending partial line included, without consuming it. */
        struct logparse snap = t->lp_;
        logparse_finish(&snap);
        t->startup = snap.info;
        redact_secret_in(t->startup.error_message, t->cfg.api_key);
        for (int i = 0; i < t->startup.n_timeline; i++)
            redact_secret_in(t->startup.timeline[i].text, t->cfg.api_key);
    }
}

enum target_status target_drop_caches(char *err, size_t err_len)
{
    if (geteuid() != 0) {
        snprintf(err, err_len,
                 "--drop-caches needs root (euid %d): it writes /proc/sys/vm/drop_caches",
                 (int)geteuid());
        return TARGET_ERR_DROP_CACHES;
    }
    sync();
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "3", 1) != 1) {
        snprintf(err, err_len, "cannot write /proc/sys/vm/drop_caches: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return TARGET_ERR_DROP_CACHES;
    }
    close(fd);
    return TARGET_OK;
}

static void set_base_url(struct target *t, const char *host, int port)
{
    const char *h = connect_host(host);
    if (strchr(h, ':'))
        snprintf(t->base_url, sizeof t->base_url, "http://[%s]:%d", h, port);
    else
        snprintf(t->base_url, sizeof t->base_url, "http://%s:%d", h, port);
}

static enum target_status launch(struct target *t, char *err, size_t err_len);

/* Every message handed out passes here: the API key never leaves in an error text (a server may
 * echo its argv in the log tail). */
static enum target_status redacted(const struct target *t, enum target_status st, char *err,
                                   size_t err_len)
{
    if (err_len)
        redact_secret_in(err, t->cfg.api_key);
    return st;
}

enum target_status target_launch(struct target *t, char *err, size_t err_len)
{
    return redacted(t, launch(t, err, err_len), err, err_len);
}

static void record_exit(struct target *t, int status)
{
    t->exit.exited = 1;
    t->exit.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    t->exit.exit_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    t->tl.t_stopped_ns = clock_now_ns();
    t->state = TARGET_STATE_STOPPED;
}

/* Forgets what the previous launch learnt: timeline, exit, model facts, the log parser. */
static void launch_reset(struct target *t)
{
    memset(&t->tl, 0, sizeof t->tl);
    memset(&t->exit, 0, sizeof t->exit);
    t->model_id[0] = 0;
    t->version[0] = 0;
    t->max_model_len = -1;
    logparse_init(&t->lp_);
    t->startup = t->lp_.info;
}

/* --url: nothing to launch; the base URL is the given one without trailing slashes. */
static enum target_status attach_url(struct target *t, char *err, size_t err_len)
{
    size_t n = strlen(t->cfg.url);
    while (n > 0 && t->cfg.url[n - 1] == '/')
        n--;
    if (n >= sizeof t->base_url || n == 0) {
        snprintf(err, err_len, "bad --url '%s'", t->cfg.url);
        return TARGET_ERR_CONFIG;
    }
    memcpy(t->base_url, t->cfg.url, n);
    t->base_url[n] = 0;
    t->launched = 0;
    t->state = TARGET_STATE_STARTING;
    t->tl.t_launch_ns = clock_now_ns();
    t->lp_.t_launch_ns = t->tl.t_launch_ns;
    return TARGET_OK;
}

/* The checks before anything is created: caches dropped if asked, a port chosen and still free,
 * the argv built. On success *argv is the caller's (target_argv_free); on failure it is freed. */
static enum target_status launch_prepare(struct target *t, int *port, char ***argv, int *argc,
                                         char *err, size_t err_len)
{
    enum target_status st;
    char self[1024];

    if (t->cfg.drop_caches && (st = target_drop_caches(err, err_len)) != TARGET_OK)
        return st;
    *port = t->cfg.port;
    if (*port == 0 && (*port = target_find_free_port(t->cfg.host)) <= 0) {
        snprintf(err, err_len, "cannot find a free port on %s", t->cfg.host);
        return TARGET_ERR_PORT_IN_USE;
    }
    struct target_config c = t->cfg;
    if (c.kind == TARGET_KIND_EMBEDDED && !c.self_exe) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
            self[n] = 0;
            c.self_exe = self;
        }
    }
    if ((st = target_argv_build(&c, *port, argv, argc, err, err_len)) != TARGET_OK)
        return st;
    if (target_port_free(t->cfg.host, *port, err, err_len) != 0) {
        target_argv_free(*argv);
        *argv = NULL;
        return TARGET_ERR_PORT_IN_USE;
    }
    return TARGET_OK;
}

/* Creates the server log (and its directory), truncated, and reopens it read-only into
 * t->log_fd_ for the log parser. Returns the write end for the child, or -1 with err set. */
static int open_server_log(struct target *t, char *err, size_t err_len)
{
    snprintf(t->log_path, sizeof t->log_path, "%s",
             t->cfg.log_path ? t->cfg.log_path : "server.log");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", t->log_path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        dir_make_all(dir);
    }
    int log_fd = open(t->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        snprintf(err, err_len, "cannot open server log %s: %s", t->log_path, strerror(errno));
        return -1;
    }
    if (t->log_fd_ >= 0)
        close(t->log_fd_);
    t->log_fd_ = open(t->log_path, O_RDONLY | O_CLOEXEC);
    return log_fd;
}

static void log_launch_command(const struct target *t, int argc, char **argv)
{
    char cmd[4096];
    redact_argv_join(argc, argv, cmd, sizeof cmd);
    redact_secret_in(cmd, t->cfg.api_key); /* a key inside a serve_cmd argument too */
    log_info("target", "launching %s server: %s (log %s)", target_kind_str(t->cfg.kind), cmd,
             t->log_path);
}

/* The forked child: its own process group, killed with the parent, default signal handling,
 * stdin from /dev/null, stdout/stderr to the log. Only async-signal-safe calls until exec; if exec
 * fails, its errno goes down exec_pipe_w (close-on-exec, so a successful exec sends nothing). */
static _Noreturn void exec_child(char **argv, int log_fd, int exec_pipe_w, pid_t parent)
{
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent)
        _exit(127);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    sigaction(SIGPIPE, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, 0);
        if (devnull != 0)
            close(devnull);
    }
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execvp(argv[0], argv);
    int e = errno;
    ssize_t w = write(exec_pipe_w, &e, sizeof e);
    (void)w;
    _exit(127);
}

/* Parent side right after fork: the group, the orphan registry, the target's launch state. The
 * target takes argv. */
static void register_child(struct target *t, pid_t pid, int port, char **argv)
{
    setpgid(pid, pid); /* both sides, so the group exists before either proceeds */
    registry_add(pid);
    t->pid = pid;
    t->port = port;
    t->launched = 1;
    t->state = TARGET_STATE_STARTING;
    set_base_url(t, t->cfg.host, port);
    target_argv_free(t->argv_);
    t->argv_ = argv;
}

/* 1 with the child's exec errno in *e when exec failed; 0 when the pipe closed empty (exec ran). */
static int read_exec_errno(int exec_pipe_r, int *e)
{
    ssize_t n;
    do
        n = read(exec_pipe_r, e, sizeof *e);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof *e;
}

static enum target_status launch(struct target *t, char *err, size_t err_len)
{
    enum target_status st;
    int log_fd = -1, exec_pipe[2] = {-1, -1};
    char **argv = NULL;
    int argc = 0, port = 0;

    if (err_len)
        err[0] = 0;
    if (t->launched && !t->exit.exited) {
        snprintf(err, err_len, "server already launched (pid %d)", (int)t->pid);
        return TARGET_ERR_CONFIG;
    }
    process_setup();
    launch_reset(t);
    if (t->cfg.url && t->cfg.url[0])
        return attach_url(t, err, err_len);
    if ((st = launch_prepare(t, &port, &argv, &argc, err, err_len)) != TARGET_OK)
        return st;
    if ((log_fd = open_server_log(t, err, err_len)) < 0) {
        st = TARGET_ERR_LOG;
        goto fail;
    }
    if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
        snprintf(err, err_len, "pipe: %s", strerror(errno));
        st = TARGET_ERR_SPAWN;
        goto fail;
    }
    log_launch_command(t, argc, argv);

    pid_t parent = getpid();
    t->tl.t_launch_ns = clock_now_ns();
    t->lp_.t_launch_ns = t->tl.t_launch_ns; /* log arrival offsets are from the fork */
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, err_len, "fork: %s", strerror(errno));
        st = TARGET_ERR_SPAWN;
        goto fail;
    }
    if (pid == 0)
        exec_child(argv, log_fd, exec_pipe[1], parent);
    register_child(t, pid, port, argv);
    argv = NULL;
    close(exec_pipe[1]);
    exec_pipe[1] = -1;
    int e = 0;
    int exec_failed = read_exec_errno(exec_pipe[0], &e);
    close(exec_pipe[0]);
    exec_pipe[0] = -1;
    close(log_fd);
    log_fd = -1;
    if (exec_failed) {
        int status = 0;
        waitpid(pid, &status, 0);
        registry_remove(pid);
        record_exit(t, status);
        snprintf(err, err_len, "cannot run '%s': %s", t->argv_[0], strerror(e));
        return TARGET_ERR_SPAWN;
    }
    return TARGET_OK;
fail:
    if (log_fd >= 0)
        close(log_fd);
    if (exec_pipe[0] >= 0)
        close(exec_pipe[0]);
    if (exec_pipe[1] >= 0)
        close(exec_pipe[1]);
    target_argv_free(argv);
    return st;
}

/* Reaps every member of the group that is our child (the leader, and orphans reparented to us). */
static void reap_group(pid_t pgid)
{
    while (waitpid(-pgid, NULL, WNOHANG) > 0)
        ;
}

/* 1 while a process of the group is alive (zombies waiting for someone else's wait() do not
 * count: they run nothing). Reads /proc/PID/stat; falls back to kill(-pgid, 0). */
static int group_has_live_members(pid_t pgid)
{
    if (kill(-pgid, 0) != 0 && errno == ESRCH)
        return 0;
    DIR *d = opendir("/proc");
    if (!d)
        return 1;
    int live = 0;
    struct dirent *de;
    while (!live && (de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        buf[n] = 0;
        char *rp = strrchr(buf, ')'); /* comm may contain spaces and parentheses */
        char state;
        int ppid, pgrp;
        if (rp && sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == pgid &&
            state != 'Z' && state != 'X')
            live = 1;
    }
    closedir(d);
    return live;
}

int target_alive(struct target *t)
{
    if (!t->launched)
        return t->cfg.url ? 1 : 0;
    if (t->exit.exited)
        return 0;
    int status;
    pid_t r = waitpid(t->pid, &status, WNOHANG);
    if (r == 0)
        return 1;
    if (r == t->pid) {
        record_exit(t, status);
    } else {
        /* not our child any more (already reaped elsewhere): report an unknown end */
        t->exit.exited = 1;
        t->exit.exit_code = -1;
        t->tl.t_stopped_ns = clock_now_ns();
        t->state = TARGET_STATE_STOPPED;
    }
    /* The leader is gone; what is left of its group would be orphans. */
    kill(-t->pid, SIGKILL);
    reap_group(t->pid);
    registry_remove(t->pid);
    target_follow_log(t);
    return 0;
}

enum target_status target_stop(struct target *t, struct target_stop_result *out)
{
    struct target_stop_result r;
    memset(&r, 0, sizeof r);
    if (!t->launched) {
        if (t->cfg.url && t->state != TARGET_STATE_STOPPED)
            t->state = TARGET_STATE_STOPPED;
        if (out)
            *out = r;
        return TARGET_OK;
    }
    if (t->exit.exited || !target_alive(t)) {
        r.exit = t->exit;
        if (out)
            *out = r;
        return TARGET_OK;
    }
    r.was_running = 1;
    t->state = TARGET_STATE_DRAINING;
    t->tl.t_stop_ns = clock_now_ns();
    kill(-t->pid, SIGTERM);
    mono_ns deadline = t->tl.t_stop_ns + (mono_ns)t->cfg.stop_grace_ms * 1000000ull;
    int status = 0, reaped = 0;
    for (;;) {
        if (!reaped) {
            pid_t w = waitpid(t->pid, &status, WNOHANG);
            if (w == t->pid || (w < 0 && errno == ECHILD))
                reaped = 1;
        }
        if (reaped) { /* never before: waitpid(-pgid) could take the leader's status */
            reap_group(t->pid);
            if (!group_has_live_members(t->pid))
                break;
        }
        if (clock_now_ns() >= deadline) {
            r.killed = 1;
            kill(-t->pid, SIGKILL);
            if (!reaped) {
                while (waitpid(t->pid, &status, 0) < 0 && errno == EINTR)
                    ;
                reaped = 1;
            }
            /* group members die with SIGKILL; reap those that are ours (up to 2 s) */
            for (int i = 0; i < 200; i++) {
                reap_group(t->pid);
                if (!group_has_live_members(t->pid))
                    break;
                clock_sleep_ns(10 * 1000 * 1000);
            }
            break;
        }
        clock_sleep_ns(10 * 1000 * 1000);
    }
    record_exit(t, status);
    registry_remove(t->pid);
    r.exit = t->exit;
    r.stop_ns = t->tl.t_stopped_ns - t->tl.t_stop_ns;
    target_follow_log(t);
    char ex[96];
    log_info("target", "server stopped in %.3f s (%s%s)", ns_to_s(r.stop_ns),
             target_exit_str(&t->exit, ex, sizeof ex), r.killed ? ", after SIGKILL" : "");
    if (out)
        *out = r;
    return TARGET_OK;
}

/* ---- readiness ---- */

static void append_tail(struct target *t, char *err, size_t err_len)
{
    struct buf tail;
    buf_init(&tail, 4096, 64 * 1024);
    size_t n = strlen(err);
    if (t->log_path[0] && target_log_tail(t->log_path, TARGET_LOG_TAIL_LINES, &tail) == 0 &&
        n < err_len) {
        if (tail.len)
            snprintf(err + n, err_len - n, "\nlast %d lines of %s:\n%s", TARGET_LOG_TAIL_LINES,
                     t->log_path, tail.data);
        else
            snprintf(err + n, err_len - n, "\n(%s is empty)", t->log_path);
    }
    buf_free(&tail);
}

static void read_models(struct target *t, const char *body, size_t len)
{
    char jerr[128];
    struct json *root = json_parse(body, len, jerr, sizeof jerr);
    if (!root)
        return;
    const struct json *m0 = json_at(json_get(root, "data"), 0);
    size_t n;
    const char *id = json_str(json_get(m0, "id"), &n);
    if (id) {
        if (n >= sizeof t->model_id)
            n = sizeof t->model_id - 1;
        memcpy(t->model_id, id, n);
        t->model_id[n] = 0;
    }
    long long v;
    if (json_int(json_get(m0, "max_model_len"), &v) == 0 && v > 0)
        t->max_model_len = (int)v;
    else if (json_int(json_get(json_get(m0, "meta"), "n_ctx"), &v) == 0 && v > 0)
        t->max_model_len = (int)v; /* llama.cpp */
    json_free(root);
}

int target_fetch_version(struct target *t)
{
    const char *paths[2];
    const struct target_kind_caps *caps = target_kind_caps(t->cfg.kind);
    paths[0] = caps->version_path;
    paths[1] = strcmp(caps->version_path, "/props") ? "/props" : "/version";
    struct buf b;
    buf_init(&b, 4096, 1 << 20);
    int rc = -1;
    for (int i = 0; i < 2 && rc != 0; i++) {
        char url[512], err[256];
        int status = 0;
        snprintf(url, sizeof url, "%s%s", t->base_url, paths[i]);
        buf_reset(&b);
        if (http_get(url, t->cfg.api_key, 5000, &b, &status, err, sizeof err) != 0 || status != 200)
            continue;
        char jerr[128];
        struct json *root = json_parse(b.data, b.len, jerr, sizeof jerr);
        size_t n = 0;
        const char *v = json_str(json_get(root, "version"), &n);
        if (!v)
            v = json_str(json_get(root, "build_info"), &n);
        if (v) {
            if (n >= sizeof t->version)
                n = sizeof t->version - 1;
            memcpy(t->version, v, n);
            t->version[n] = 0;
            rc = 0;
        }
        json_free(root);
    }
    buf_free(&b);
    return rc;
}

/* Waits up to ms for the signal pipe (so Ctrl-C wakes us at once). */
static void wait_tick(long ms)
{
    int fd = target_signal_fd();
    if (fd >= 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        poll(&p, 1, (int)ms);
    } else {
        clock_sleep_ns((uint64_t)ms * 1000000ull);
    }
}

static enum target_status wait_ready(struct target *t, char *err, size_t err_len);

enum target_status target_wait_ready(struct target *t, char *err, size_t err_len)
{
    return redacted(t, wait_ready(t, err, err_len), err, err_len);
}

static enum target_status wait_ready(struct target *t, char *err, size_t err_len)
{
    int url_mode = !t->launched;
    if (err_len)
        err[0] = 0;
    if (url_mode && !t->base_url[0]) {
        snprintf(err, err_len, "target not launched");
        return TARGET_ERR_CONFIG;
    }
    long timeout_ms = t->cfg.ready_timeout_ms;
    if (url_mode && timeout_ms > 15000)
        timeout_ms = 15000; /* a running server answers at once; a typo should not hang */
    mono_ns deadline = t->tl.t_launch_ns + (mono_ns)timeout_ms * 1000000ull;
    char url_health[512], url_models[512], last_err[512] = "no answer yet";
    snprintf(url_health, sizeof url_health, "%s/health", t->base_url);
    snprintf(url_models, sizeof url_models, "%s/v1/models", t->base_url);
    struct buf body;
    buf_init(&body, 4096, 4 << 20);
    enum target_status st = TARGET_OK;
    const char *probe_host = connect_host(t->cfg.host);

    for (;;) {
        target_follow_log(t);
        if (target_interrupted()) {
            snprintf(err, err_len, "interrupted while waiting for the server to become ready");
            target_stop(t, NULL);
            st = TARGET_ERR_INTERRUPTED;
            break;
        }
        if (!url_mode && !target_alive(t)) {
            char ex[96];
            target_follow_log(t); /* what it printed between the last read and its exit */
            snprintf(err, err_len, "server exited before ready (%s, after %.2f s)",
                     target_exit_str(&t->exit, ex, sizeof ex),
                     ns_to_s(t->tl.t_stopped_ns - t->tl.t_launch_ns));
            if (t->startup.error_message[0]) {
                size_t n = strlen(err);
                snprintf(err + n, err_len - n, ": %s", t->startup.error_message);
            }
            append_tail(t, err, err_len);
            st = TARGET_ERR_EXITED;
            break;
        }
        mono_ns now = clock_now_ns();
        if (now >= deadline) {
            snprintf(err, err_len, "server not ready after %.1f s (state %s; last: %s)",
                     timeout_ms / 1000.0, target_state_str(t->state), last_err);
            if (url_mode) {
                st = TARGET_ERR_HTTP;
                break;
            }
            append_tail(t, err, err_len); /* before the stop: the tail as it was */
            target_stop(t, NULL);
            st = TARGET_ERR_TIMEOUT;
            break;
        }
        long left_ms = (long)((deadline - now) / 1000000ull) + 1;
        long http_timeout = left_ms < 3000 ? left_ms : 3000;

        if (!t->tl.t_port_open_ns) {
            int port = t->port;
            if (url_mode) {
                /* url mode: let http_get do the connecting */
                port = 0;
            }
            if (port == 0 || tcp_probe(probe_host, port, 200)) {
                if (!url_mode) {
                    t->tl.t_port_open_ns = clock_now_ns();
                    t->state = TARGET_STATE_LOADING;
                }
            } else {
                snprintf(last_err, sizeof last_err, "port %d not open", port);
            }
        }
        if ((t->tl.t_port_open_ns || url_mode) && !t->tl.t_health_ok_ns) {
            int status = 0;
            buf_reset(&body);
            if (http_get(url_health, t->cfg.api_key, http_timeout, &body, &status, last_err,
                         sizeof last_err) == 0) {
                if (url_mode && !t->tl.t_port_open_ns) {
                    t->tl.t_port_open_ns = clock_now_ns();
                    t->state = TARGET_STATE_LOADING;
                }
                if (status == 200)
                    t->tl.t_health_ok_ns = clock_now_ns();
                else
                    snprintf(last_err, sizeof last_err, "GET /health: HTTP %d", status);
            }
        }
        if (t->tl.t_health_ok_ns && !t->tl.t_models_ok_ns) {
            int status = 0;
            buf_reset(&body);
            if (http_get(url_models, t->cfg.api_key, http_timeout, &body, &status, last_err,
                         sizeof last_err) == 0) {
                if (status == 200) {
                    t->tl.t_models_ok_ns = clock_now_ns();
                    read_models(t, body.data, body.len);
                    t->state = TARGET_STATE_READY;
                    target_fetch_version(t);
                    target_follow_log(t);
                    log_info("target", "server ready in %.3f s (port open %.3f s, health %.3f s; "
                             "model %s, max_model_len %d%s%s)",
                             ns_to_s(t->tl.t_models_ok_ns - t->tl.t_launch_ns),
                             t->tl.t_port_open_ns ? ns_to_s(t->tl.t_port_open_ns - t->tl.t_launch_ns) : NAN,
                             ns_to_s(t->tl.t_health_ok_ns - t->tl.t_launch_ns),
                             t->model_id[0] ? t->model_id : "?", t->max_model_len,
                             t->version[0] ? ", version " : "", t->version);
                    break;
                }
                snprintf(last_err, sizeof last_err, "GET /v1/models: HTTP %d", status);
            }
        }
        wait_tick(t->cfg.poll_interval_ms);
    }
    buf_free(&body);
    return st;
}

enum target_status target_start(struct target *t, char *err, size_t err_len)
{
    enum target_status st = target_launch(t, err, err_len);
    if (st != TARGET_OK)
        return st;
    return target_wait_ready(t, err, err_len);
}
