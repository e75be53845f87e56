/* calibrate: a short client-ceiling measurement against a loopback streamer, its per-user cache
 * file and the loader every session uses (see calibrate.h). The streamer is the fast mode of
 * bench/bench_client.c's, cut down: each request gets its whole response (all events in one chunk,
 * then the finish/usage/[DONE] chunk) queued at once and sent as the socket takes it. It keeps no
 * send stamps and has no gap mode; it is not a test server (tests use the real embedded one). */
#include "calibrate/calibrate.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "measure/stats.h"
#include "server/telemetry.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/json.h"
#include "util/log.h"

#define MOD "calibrate"
#define S_MAX_FD 1024
#define S_IN_CAP 16384
#define S_OUT_CAP (1u << 20)
#define EVENTS_PER_STREAM 256 /* max_tokens of the events/s phases */

const char *calibrate_status_str(enum calibrate_status s)
{
    switch (s) {
    case CALIBRATE_OK: return "ok";
    case CALIBRATE_NO_HOME: return "no cache directory";
    case CALIBRATE_STREAMER: return "cannot start the loopback streamer";
    case CALIBRATE_CLIENT: return "cannot create the client";
    case CALIBRATE_ERRORS: return "requests failed";
    case CALIBRATE_WRITE: return "cannot write the calibration";
    }
    return "?";
}

/* ---- streamer (child process) ---- */

struct sconn {
    int used;
    size_t in_len;
    char in[S_IN_CAP];
    struct buf out; /* pending response bytes, sent from out_off */
    size_t out_off;
};

static const char s_event[] =
    "data: {\"id\":\"cmpl-cal\",\"object\":\"text_completion\",\"created\":1700000000,"
    "\"model\":\"cal\",\"choices\":[{\"index\":0,\"text\":\" tok\",\"logprobs\":null,"
    "\"finish_reason\":null,\"stop_reason\":null}],\"usage\":null}\n\n";

/* Queues the whole response for a request asking for n_tokens events. */
static void s_respond(struct sconn *c, long n_tokens)
{
    buf_puts(&c->out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
    buf_printf(&c->out, "%zx\r\n", (size_t)n_tokens * (sizeof s_event - 1));
    for (long i = 0; i < n_tokens; i++)
        buf_append(&c->out, s_event, sizeof s_event - 1);
    char tail[768];
    int n = snprintf(tail, sizeof tail,
                     "data: {\"id\":\"cmpl-cal\",\"object\":\"text_completion\",\"created\":"
                     "1700000000,\"model\":\"cal\",\"choices\":[{\"index\":0,\"text\":\"\","
                     "\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}],"
                     "\"usage\":null}\n\n"
                     "data: {\"id\":\"cmpl-cal\",\"object\":\"text_completion\",\"created\":"
                     "1700000000,\"model\":\"cal\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
                     "\"total_tokens\":%ld,\"completion_tokens\":%ld}}\n\ndata: [DONE]\n\n",
                     4 + n_tokens, n_tokens);
    buf_printf(&c->out, "\r\n%x\r\n%s\r\n0\r\n\r\n", n, tail);
}

/* Answers every whole request in c->in. */
static void s_parse(struct sconn *c)
{
    for (;;) {
        c->in[c->in_len] = 0;
        char *end = strstr(c->in, "\r\n\r\n");
        if (!end)
            return;
        size_t hdr = (size_t)(end - c->in) + 4, body_len = 0;
        const char *cl = strcasestr(c->in, "\r\nContent-Length:");
        if (cl && cl < end)
            body_len = strtoul(cl + 17, NULL, 10);
        if (hdr + body_len > c->in_len)
            return;
        const char *mt = memmem(c->in + hdr, body_len, "\"max_tokens\":", 13);
        long n_tokens = mt ? strtol(mt + 13, NULL, 10) : 16;
        s_respond(c, n_tokens < 1 ? 1 : n_tokens > 4096 ? 4096 : n_tokens);
        memmove(c->in, c->in + hdr + body_len, c->in_len - hdr - body_len);
        c->in_len -= hdr + body_len;
    }
}

/* Reads and sends what it can on fd; returns -1 when the connection is done. */
static int s_service(struct sconn *c, int fd)
{
    for (;;) {
        if (c->in_len >= S_IN_CAP - 1)
            return -1;
        ssize_t n = recv(fd, c->in + c->in_len, S_IN_CAP - 1 - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            return -1;
        if (errno == EAGAIN)
            break;
    }
    s_parse(c);
    while (c->out_off < c->out.len) {
        ssize_t n = send(fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        c->out_off += (size_t)n;
    }
    buf_reset(&c->out);
    c->out_off = 0;
    return 0;
}

static void streamer_main(int lfd)
{
    struct sconn *conns = xcalloc(S_MAX_FD, sizeof *conns);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(epfd, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (cfd >= S_MAX_FD) {
                        close(cfd);
                        continue;
                    }
                    int one = 1;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct sconn *c = &conns[cfd];
                    if (!c->out.data)
                        buf_init(&c->out, 65536, S_OUT_CAP);
                    c->used = 1;
                    c->in_len = c->out_off = 0;
                    buf_reset(&c->out);
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLET,
                                              .data.fd = cfd};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &cev);
                }
                continue;
            }
            if (conns[fd].used && s_service(&conns[fd], fd) != 0) {
                epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
                conns[fd].used = 0;
            }
        }
    }
}

/* Listens on a free loopback port and forks the streamer. *pid and *port, or -1. */
static int streamer_start(pid_t *pid, int *port)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1024) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0) {
        if (lfd >= 0)
            close(lfd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    *pid = fork();
    if (*pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGINT, SIG_IGN); /* the parent ends it */
        streamer_main(lfd);
        _exit(0);
    }
    close(lfd);
    return *pid > 0 ? 0 : -1;
}

/* ---- client phases (this process) ---- */

struct phase_run {
    struct client *c;
    struct client_request q;
    int keep_going;
    uint64_t n_done, n_err, n_win_events;
    mono_ns win_t0, win_t1;
    char first_err[320];
};

struct phase {
    double req_per_s, events_per_s, cpu_frac;
    uint64_t n_err, n_done;
};

static double cpu_self_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void phase_done(void *ud, struct request_record *r)
{
    struct phase_run *run = ud;
    run->n_done++;
    for (uint32_t i = 0; i < r->n_content_events; i++)
        if (r->t_content_ns[i] >= run->win_t0 && r->t_content_ns[i] < run->win_t1)
            run->n_win_events++;
    if (r->error != REQ_ERROR_NONE && r->error != REQ_ERROR_ABORTED && !run->n_err++)
        snprintf(run->first_err, sizeof run->first_err, "%.40s %.255s", req_error_str(r->error),
                 r->error_msg);
    record_free(r);
    if (run->keep_going)
        client_submit(run->c, &run->q);
}

/* Closed loop of conc requests for max_tokens each over seconds, after a warm-up of a quarter
 * of that. -1 with err when the client cannot be made. */
static int phase_run(int port, int conc, int max_tokens, double seconds, struct phase *ph,
                     char *err, size_t err_len)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    struct client_config cfg = {.base_url = url, .model = "cal", .timeout_ms = 30000};
    struct phase_run run = {.keep_going = 1, .win_t0 = UINT64_MAX, .win_t1 = UINT64_MAX};
    run.c = client_new(&cfg, phase_done, &run, err, err_len);
    if (!run.c)
        return -1;
    run.q = (struct client_request){
        .prompt = "calibrate", .prompt_len = 9, .max_tokens = max_tokens, .level = -1};
    for (int i = 0; i < conc; i++)
        client_submit(run.c, &run.q);
    mono_ns t_warm = clock_now_ns() + (uint64_t)(seconds * 0.25e9);
    while (clock_now_ns() < t_warm)
        client_poll(run.c, 10);
    uint64_t d0 = run.n_done;
    double cpu0 = cpu_self_s();
    mono_ns t0 = run.win_t0 = clock_now_ns();
    mono_ns t_end = t0 + (uint64_t)(seconds * 1e9);
    while (clock_now_ns() < t_end)
        client_poll(run.c, 10);
    mono_ns t1 = run.win_t1 = clock_now_ns();
    double dt_s = ns_to_s(t1 - t0), cpu_s = cpu_self_s() - cpu0;
    uint64_t d1 = run.n_done;
    run.keep_going = 0;
    client_abort_all(run.c);
    client_free(run.c);
    *ph = (struct phase){
        .req_per_s = stats_rate((double)(d1 - d0), dt_s),
        .events_per_s = stats_rate((double)run.n_win_events, dt_s),
        .cpu_frac = dt_s > 0 ? cpu_s / dt_s : NAN,
        .n_err = run.n_err,
        .n_done = d1 - d0,
    };
    log_info(MOD, "concurrency %d, %d tokens/request: %.0f req/s, %.0f events/s, client CPU %.0f%%",
             conc, max_tokens, ph->req_per_s, ph->events_per_s, 100 * ph->cpu_frac);
    if (run.n_err)
        log_warn(MOD, "%llu errors, first: %s", (unsigned long long)run.n_err, run.first_err);
    return 0;
}

enum calibrate_status calibrate_run(double total_s, struct calibrate_result *out, char *err,
                                    size_t err_len)
{
    memset(out, 0, sizeof *out);
    total_s = total_s < 1 ? 1 : total_s > 60 ? 60 : total_s;
    /* Three phases, each 1.25 x its window (warm-up), about total_s in all. */
    double win_s = total_s / 3 / 1.25;
    pid_t pid;
    int port;
    if (streamer_start(&pid, &port) != 0) {
        snprintf(err, err_len, "loopback streamer: %s", strerror(errno));
        return CALIBRATE_STREAMER;
    }
    mono_ns t0 = clock_now_ns();
    struct phase req, c1, c64;
    enum calibrate_status st = CALIBRATE_OK;
    if (phase_run(port, 64, 1, win_s, &req, err, err_len) != 0 ||
        phase_run(port, 1, EVENTS_PER_STREAM, win_s, &c1, err, err_len) != 0 ||
        phase_run(port, 64, EVENTS_PER_STREAM, win_s, &c64, err, err_len) != 0)
        st = CALIBRATE_CLIENT;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (st != CALIBRATE_OK)
        return st;
    if (req.n_err || c1.n_err || c64.n_err || !req.n_done || !c1.n_done || !c64.n_done) {
        snprintf(err, err_len, "%llu requests failed, %llu completed: no figure to trust",
                 (unsigned long long)(req.n_err + c1.n_err + c64.n_err),
                 (unsigned long long)(req.n_done + c1.n_done + c64.n_done));
        return CALIBRATE_ERRORS;
    }
    out->ceiling = (struct client_ceiling){
        .valid = 1,
        .req_per_s = req.req_per_s,
        .events_per_s_c1 = c1.events_per_s,
        .events_per_s_c64 = c64.events_per_s,
        .events_per_s_c1024 = NAN,
        .ts_err_p50_us = NAN,
        .ts_err_p99_us = NAN,
    };
    out->client_cpu_frac_c64 = c64.cpu_frac;
    out->duration_s = ns_to_s(clock_now_ns() - t0);
    out->measured_at_unix_s = (int64_t)time(NULL);
    clock_wall_iso(out->measured_at, sizeof out->measured_at);
    calibrate_machine_read(&out->machine);
    return CALIBRATE_OK;
}

/* ---- the machine, the cache file ---- */

void calibrate_machine_read(struct calibrate_machine *out)
{
    memset(out, 0, sizeof *out);
    if (gethostname(out->hostname, sizeof out->hostname - 1) != 0)
        out->hostname[0] = 0;
    struct telemetry_host h;
    telemetry_host_read(&h); /* cpu_model and n_cpus are filled even when meminfo is not */
    snprintf(out->cpu_model, sizeof out->cpu_model, "%s", h.cpu_model);
    out->n_cpus = h.n_cpus;
}

enum calibrate_status calibrate_cache_path(char *out, size_t out_len)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    int n;
    if (xdg && xdg[0] == '/') {
        n = snprintf(out, out_len, "%s/slmprobe/client.json", xdg);
    } else {
        const char *home = getenv("HOME");
        if (!home || home[0] != '/') {
            struct passwd *pw = getpwuid(getuid());
            home = pw && pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : NULL;
        }
        if (!home)
            return CALIBRATE_NO_HOME;
        n = snprintf(out, out_len, "%s/.cache/slmprobe/client.json", home);
    }
    return n < 0 || (size_t)n >= out_len ? CALIBRATE_NO_HOME : CALIBRATE_OK;
}

enum calibrate_status calibrate_write(const char *path, const struct calibrate_result *r,
                                      char *err, size_t err_len)
{
    struct buf j;
    buf_init(&j, 1024, 65536);
    const struct client_ceiling *c = &r->ceiling;
    buf_puts(&j, "{\n  \"source\": \"slmprobe calibrate\",\n  \"hostname\": ");
    buf_json_str(&j, r->machine.hostname);
    buf_puts(&j, ",\n  \"cpu_model\": ");
    buf_json_str(&j, r->machine.cpu_model);
    buf_printf(&j, ",\n  \"n_cpus\": %d,\n  \"measured_at\": ", r->machine.n_cpus);
    buf_json_str(&j, r->measured_at);
    buf_printf(&j, ",\n  \"measured_at_unix_s\": %lld,\n  \"duration_s\": ",
               (long long)r->measured_at_unix_s);
    buf_json_double(&j, r->duration_s);
    const struct {
        const char *key;
        double v;
    } f[] = {{"req_per_s", c->req_per_s}, {"events_per_s_c1", c->events_per_s_c1},
             {"events_per_s_c64", c->events_per_s_c64},
             {"client_cpu_frac_c64", r->client_cpu_frac_c64}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        buf_printf(&j, ",\n  \"%s\": ", f[i].key);
        buf_json_double(&j, f[i].v);
    }
    buf_puts(&j, "\n}\n");
    enum calibrate_status st = CALIBRATE_OK;
    char *dir = xstrdup(path), *slash = strrchr(dir, '/');
    if (slash && slash != dir)
        *slash = 0;
    if ((slash && slash != dir && dir_make_all(dir) != 0) ||
        file_write_all(path, j.data, j.len) != 0) {
        snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
        st = CALIBRATE_WRITE;
    }
    free(dir);
    buf_free(&j);
    return st;
}

/* Why the calibration at path cannot be used on this machine now, into why ("" when it can). */
static void cache_check(const char *path, char *why, size_t why_len, char *when, size_t when_len)
{
    why[0] = when[0] = 0;
    size_t len;
    char *text = file_read_all(path, 1u << 20, &len), jerr[64];
    struct json *root = text ? json_parse(text, len, jerr, sizeof jerr) : NULL;
    free(text);
    if (!root) {
        snprintf(why, why_len, "unreadable");
        return;
    }
    struct calibrate_machine here;
    calibrate_machine_read(&here);
    const char *host = json_str(json_get(root, "hostname"), NULL);
    const char *cpu = json_str(json_get(root, "cpu_model"), NULL);
    const char *at = json_str(json_get(root, "measured_at"), NULL);
    long long n_cpus = -1, at_s = 0;
    json_int(json_get(root, "n_cpus"), &n_cpus);
    json_int(json_get(root, "measured_at_unix_s"), &at_s);
    snprintf(when, when_len, "%s", at ? at : "?");
    long long age_s = (long long)time(NULL) - at_s;
    if (!host || strcmp(host, here.hostname) || !cpu || strcmp(cpu, here.cpu_model) ||
        n_cpus != here.n_cpus)
        snprintf(why, why_len, "measured on another machine (%s, %lld CPUs; this is %s, %d CPUs)",
                 host ? host : "?", n_cpus, here.hostname, here.n_cpus);
    else if (age_s > CALIBRATE_MAX_AGE_S || age_s < 0)
        snprintf(why, why_len, "stale (measured %s, %lld days ago)", when, age_s / 86400);
    json_free(root);
}

void calibrate_ceiling_load(struct client_ceiling *out, char *note, size_t note_len)
{
    char path[4096], why[384] = "", when[32] = "", ignored[640] = "";
    memset(out, 0, sizeof *out);
    if (calibrate_cache_path(path, sizeof path) == CALIBRATE_OK && access(path, F_OK) == 0) {
        cache_check(path, why, sizeof why, when, sizeof when);
        if (!why[0]) {
            client_ceiling_load(path, out);
            if (out->valid) {
                snprintf(note, note_len, "calibrated %s on this machine (%s)", when, path);
                return;
            }
            snprintf(why, sizeof why, "no figures in it");
        }
        snprintf(ignored, sizeof ignored, "%.300s ignored: %.300s; ", path, why);
        log_warn(MOD, "%s ignored: %s (run slmprobe calibrate)", path, why);
    }
    client_ceiling_load(CALIBRATE_BENCH_PATH, out);
    if (out->valid)
        snprintf(note, note_len, "%sfrom %s (make bench)", ignored, CALIBRATE_BENCH_PATH);
    else
        snprintf(note, note_len, "%snot calibrated (run slmprobe calibrate)", ignored);
}
