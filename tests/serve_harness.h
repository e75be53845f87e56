/* serve_harness.h: the blocking HTTP/1.1 client and server-spawning helpers shared by the serve
 * tests (test_server.c, test_serve_faults.c) and the tests that launch slmprobe or a server
 * (test_secrets.c, test_ttft.c, test_driver.c, test_launch.c). Included once by each test binary,
 * so everything is static. Provides: process helpers (bin_path from SLMPROBE_BIN, default
 * ./slmprobe; sleep_ms, now_s, run_wait, spawn_logged, run_logged, free_port, slurp), struct srv,
 * srv_wait_exit and srv_stop (SIGTERM, then SIGKILL after a timeout), a one-request-per-connection
 * HTTP/1.1 client over loopback sockets (http_open, send_all, struct reader + rd_*, struct resp +
 * resp_*, http_read_resp, http_do, post, http_status_only; g_auth is the extra header line sent on
 * /v1 routes), SSE splitting, JSON path look-ups (jpath, jstr, jint, jparse) and /metrics reading
 * (metric, get_metrics, LBL: the label set of the tiny model's series). harness_setup() makes the
 * scratch directory g_dir and the tiny model g_model for each test's main();
 * harness_session_setup() adds a session writing under g_dir/out. srv_start stays in each test
 * because the two start the server with different flags. */
#ifndef SLM_SERVE_HARNESS_H
#define SLM_SERVE_HARNESS_H

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "run/session.h"
#include "util/buf.h"
#include "util/json.h"

/* Each test uses some of these helpers: unused ones are not warnings (-Werror in CI). */
#define SH_FN static __attribute__((unused))


/* ---------------------------------------------------------------------------------------- */
/* processes */

static char g_dir[256];
static char g_model[512];

SH_FN const char *bin_path(void)
{
    const char *b = getenv("SLMPROBE_BIN");
    return b && *b ? b : "./slmprobe";
}

SH_FN void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

SH_FN double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs argv with output to log_path; returns the exit status, or -1. */
SH_FN int run_wait(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Starts argv (searched on PATH) with stdout and stderr to out_path; returns the pid, or -1. */
SH_FN pid_t spawn_logged(char *const argv[], const char *out_path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Exit status (or 128 + signal) of argv, stdout and stderr to out_path; -1 if it cannot start. */
SH_FN int run_logged(char *const argv[], const char *out_path)
{
    pid_t pid = spawn_logged(argv, out_path);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* End of a test binary: removes its scratch directory when every test passed, else keeps it and
 * says where. */
SH_FN void harness_cleanup(const char *dir, int n_failed)
{
    if (n_failed) {
        fprintf(stderr, "outputs kept in %s\n", dir);
        return;
    }
    char *argv[] = {"rm", "-rf", (char *)dir, NULL};
    run_logged(argv, "/dev/null");
}

SH_FN int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t l = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) != 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

SH_FN char *slurp(const char *path)
{
    size_t n;
    char *s = file_read_all(path, 64u << 20, &n);
    return s ? s : xstrdup("");
}

/* mkdtemp /tmp/slmprobe-test-NAME-XXXXXX into g_dir and `slmprobe model init --preset tiny`
 * into g_model. 0, or -1 after printing why. */
SH_FN int harness_setup(const char *name)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/slmprobe-test-%s-XXXXXX", name);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return -1;
    }
    snprintf(g_model, sizeof g_model, "%s/tiny.gguf", g_dir);
    char log[600];
    snprintf(log, sizeof log, "%s/model-init.log", g_dir);
    char *init[] = {(char *)bin_path(), "model", "init", "--preset", "tiny", "-o", g_model, NULL};
    int rc = run_wait(init, log);
    if (rc != 0) {
        char *text = slurp(log);
        fprintf(stderr, "model init failed (%d): %s\n", rc, text);
        free(text);
        return -1;
    }
    return 0;
}

/* harness_setup(name), then session_init(s) over po with po->out_dir set to g_dir/out and the
 * command line {argv0}: the session of the launch and driver tests. po must outlive s. 0, or -1
 * after printing why. */
SH_FN int harness_session_setup(const char *name, const char *argv0, struct probe_opts *po,
                                struct session *s)
{
    static char out[512];
    if (harness_setup(name) != 0)
        return -1;
    snprintf(out, sizeof out, "%s/out", g_dir);
    po->out_dir = out;
    char *argv[] = {(char *)argv0, NULL};
    char err[256];
    if (session_init(s, po, 1, argv, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

struct srv {
    pid_t pid;
    int port;
    char log[512];
};

/* Waits for the process to exit; returns its exit status, -1 on a signal, -2 on timeout. */
SH_FN int srv_wait_exit(struct srv *s, double timeout_s)
{
    double t0 = now_s();
    int st;
    while (now_s() - t0 < timeout_s) {
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        sleep_ms(20);
    }
    return -2;
}

/* SIGTERM, wait up to timeout_s; returns the exit status (-1 killed or timeout). */
SH_FN int srv_stop(struct srv *s, double timeout_s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    int rc = srv_wait_exit(s, timeout_s);
    if (rc != -2)
        return rc;
    int st;
    kill(-s->pid, SIGKILL);
    waitpid(s->pid, &st, 0);
    s->pid = 0;
    return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* a blocking HTTP/1.1 client */

SH_FN int http_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {120, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

SH_FN int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k <= 0) {
            if (k < 0 && errno == EINTR)
                continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

struct reader {
    int fd;
    struct buf b;
    size_t pos;
};

SH_FN void rd_init(struct reader *r, int fd)
{
    r->fd = fd;
    buf_init(&r->b, 65536, 256u << 20);
    r->pos = 0;
}

SH_FN int rd_more(struct reader *r)
{
    char tmp[65536];
    ssize_t k;
    do
        k = recv(r->fd, tmp, sizeof tmp, 0);
    while (k < 0 && errno == EINTR);
    if (k <= 0)
        return (int)k;
    if (buf_append(&r->b, tmp, (size_t)k) != BUF_OK)
        return -1;
    return (int)k;
}

/* A line ending in CRLF (returned without it) into out. 0 or -1. */
SH_FN int rd_line(struct reader *r, char *out, size_t cap)
{
    for (;;) {
        char *nl = memmem(r->b.data + r->pos, r->b.len - r->pos, "\r\n", 2);
        if (nl) {
            size_t n = (size_t)(nl - (r->b.data + r->pos));
            if (n >= cap)
                return -1;
            memcpy(out, r->b.data + r->pos, n);
            out[n] = 0;
            r->pos += n + 2;
            return 0;
        }
        if (rd_more(r) <= 0)
            return -1;
    }
}

SH_FN int rd_bytes(struct reader *r, struct buf *out, size_t n)
{
    while (r->b.len - r->pos < n)
        if (rd_more(r) <= 0)
            return -1;
    buf_append(out, r->b.data + r->pos, n);
    r->pos += n;
    return 0;
}

struct resp {
    int status;
    char head[16384];
    struct buf body;
    int n_chunks;
};

SH_FN void resp_free(struct resp *r)
{
    buf_free(&r->body);
}

SH_FN const char *resp_header(const struct resp *r, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *p = r->head; *p;) {
        const char *e = strstr(p, "\r\n");
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > nl && p[nl] == ':' && !strncasecmp(p, name, nl)) {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = len - (size_t)(v - p);
            if (vl >= cap)
                vl = cap - 1;
            memcpy(out, v, vl);
            out[vl] = 0;
            return out;
        }
        p += len + (e ? 2 : 0);
        if (!e)
            break;
    }
    return NULL;
}

/* Reads one response (status, headers, body by content-length, chunked, or close). */
SH_FN int http_read_resp(struct reader *r, struct resp *out, int is_head)
{
    char line[16384];
    memset(out, 0, sizeof *out);
    buf_init(&out->body, 4096, 256u << 20);
    do {
        if (rd_line(r, line, sizeof line) != 0)
            return -1;
        if (sscanf(line, "HTTP/1.%*d %d", &out->status) != 1)
            return -1;
    } while (out->status == 100 && rd_line(r, line, sizeof line) == 0 && line[0] == 0);
    size_t hl = 0;
    for (;;) {
        if (rd_line(r, line, sizeof line) != 0)
            return -1;
        if (!line[0])
            break;
        hl += (size_t)snprintf(out->head + hl, sizeof out->head - hl, "%s\r\n", line);
        if (hl >= sizeof out->head)
            return -1;
    }
    char v[256];
    if (is_head)
        return 0;
    if (resp_header(out, "transfer-encoding", v, sizeof v) && !strcasecmp(v, "chunked")) {
        for (;;) {
            if (rd_line(r, line, sizeof line) != 0)
                return -1;
            unsigned long n = strtoul(line, NULL, 16);
            if (n == 0) {
                if (rd_line(r, line, sizeof line) != 0 || line[0])
                    return -1;
                return 0;
            }
            out->n_chunks++;
            if (rd_bytes(r, &out->body, n) != 0 || rd_line(r, line, sizeof line) != 0 || line[0])
                return -1;
        }
    }
    if (resp_header(out, "content-length", v, sizeof v))
        return rd_bytes(r, &out->body, strtoul(v, NULL, 10));
    while (rd_more(r) > 0)
        ;
    buf_append(&out->body, r->b.data + r->pos, r->b.len - r->pos);
    r->pos = r->b.len;
    return 0;
}

static const char *g_auth = ""; /* extra header line for /v1 routes */

/* One request on its own connection. */
SH_FN int http_do(int port, const char *method, const char *path, const char *extra_headers,
                   const char *body, struct resp *out)
{
    memset(out, 0, sizeof *out);
    int fd = http_open(port);
    if (fd < 0)
        return -1;
    size_t blen = body ? strlen(body) : 0;
    struct buf req;
    buf_init(&req, 1024 + blen, 512u << 20);
    buf_printf(&req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%s", method, path, port,
               extra_headers ? extra_headers : g_auth, "Connection: close\r\n");
    if (body)
        buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    buf_puts(&req, "\r\n");
    if (body)
        buf_append(&req, body, blen);
    int rc = send_all(fd, req.data, req.len);
    buf_free(&req);
    struct reader r;
    rd_init(&r, fd);
    if (rc == 0)
        rc = http_read_resp(&r, out, !strcmp(method, "HEAD"));
    buf_free(&r.b);
    close(fd);
    return rc;
}

SH_FN int http_status_only(int port, const char *path)
{
    struct resp r;
    int st = http_do(port, "GET", path, "", NULL, &r) == 0 ? r.status : -1;
    resp_free(&r);
    return st;
}

SH_FN int post(int port, const char *path, const char *body, struct resp *out)
{
    return http_do(port, "POST", path, NULL, body, out);
}

/* SSE: "data: X\n\n" events, nothing else. Returns the number of events or -1 if the framing is
 * not exact. Payloads are written into ev[] (pointers into a copy the caller frees: *store). */
SH_FN int sse_split(const struct buf *body, char **ev, int max_ev, char **store)
{
    char *s = xstrndup(body->data, body->len);
    *store = s;
    int n = 0;
    char *p = s, *end = s + body->len;
    while (p < end) {
        if (strncmp(p, "data: ", 6) != 0)
            return -1;
        char *e = strstr(p, "\n\n");
        if (!e)
            return -1;
        *e = 0;
        if (memchr(p, '\n', (size_t)(e - p)) || memchr(p, '\r', (size_t)(e - p)))
            return -1;
        if (n >= max_ev)
            return -1;
        ev[n++] = p + 6;
        p = e + 2;
    }
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* JSON helpers */

SH_FN const struct json *jpath(const struct json *v, const char *path)
{
    char key[64];
    while (*path && v) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof key)
            return NULL;
        memcpy(key, path, n);
        key[n] = 0;
        if (isdigit((unsigned char)key[0]))
            v = json_at(v, strtoul(key, NULL, 10));
        else
            v = json_get(v, key);
        path += n;
        if (*path == '.')
            path++;
    }
    return v;
}

SH_FN const char *jstr(const struct json *root, const char *path)
{
    return json_str(jpath(root, path), NULL);
}

SH_FN long long jint(const struct json *root, const char *path)
{
    long long v = -999999;
    json_int(jpath(root, path), &v);
    return v;
}

SH_FN struct json *jparse(const struct buf *b)
{
    char err[128];
    struct json *j = json_parse(b->data, b->len, err, sizeof err);
    if (!j)
        fprintf(stderr, "  JSON parse error: %s in: %.300s\n", err, b->data);
    return j;
}

/* ---------------------------------------------------------------------------------------- */
/* metrics text */

SH_FN double metric(const char *page, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = page; p && *p;) {
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NAN;
}

SH_FN char *get_metrics(int port)
{
    struct resp r;
    if (http_do(port, "GET", "/metrics", "", NULL, &r) != 0 || r.status != 200) {
        resp_free(&r);
        return xstrdup("");
    }
    char *s = xstrndup(r.body.data, r.body.len);
    resp_free(&r);
    return s;
}

#define LBL "{model_name=\"tiny\",engine=\"0\"}"

#endif
