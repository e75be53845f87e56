/* bench_client: the probe client's own ceiling, measured against a loopback SSE streamer.
 *
 * The streamer (in this file, run in a forked child pinned to its own core) is a single-threaded
 * epoll HTTP/1.1 server that answers POST /v1/completions with OpenAI-shaped text_completion
 * chunks in chunked transfer encoding, either as fast as the socket takes them or one event per
 * fixed gap. Every event carries its CLOCK_MONOTONIC send time ("t_send_ns"), stamped right before
 * the send(2) that carries it, and the streamer also stores that stamp in shared memory by
 * (request, event) so the parent can compare it with the client's receive stamp.
 *
 * The parent runs the real client (net/client.h) on one core and reports:
 *   - requests/s at 1-token outputs (closed loop, 64 in flight, keep-alive);
 *   - SSE events/s at concurrency 1, 64 and 1,024 (as-fast-as-possible streams);
 *   - timestamp error = client receive stamp - streamer send stamp, p50/p99, at 256 streams
 *     with a fixed inter-token gap.
 * Each figure comes with the client's CPU use over the same window, and the rate per client
 * CPU-second: on a shared, loaded machine the wall-clock rate is bounded by the CPU time the
 * scheduler gave the client, not by the client.
 * Prints a Markdown section (make bench collects it) with one machine-readable line per number
 * ("client_ceiling key=value"), and writes bench/out/client.json, which client_ceiling_load()
 * reads so probes can warn near the ceiling. Both processes run SCHED_FIFO when permitted (so
 * that on a shared machine each really has its core; the output says which). Flags: --quick
 * (shorter runs), --out PATH, --no-rt (normal scheduling), --only req|events|ts (diagnostics). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/client.h"
#include "measure/stats.h"
#include "util/buf.h"
#include "util/clock.h"

/* Shared send stamps for the timestamp-error run: [TS_MAX_REQ][TS_MAX_EV]. */
#define TS_MAX_REQ 256
#define TS_MAX_EV 256
#define TS_SKIP_EVENTS 4 /* per stream, excluded from the timestamp error (connection set-up) */

/* ------------------------------------------------------------------------------------------ */
/* Streamer (child process)                                                                     */

#define S_MAX_CONNS 4096
#define S_IN_CAP 65536
#define S_OUT_CAP (256 * 1024)
#define S_BATCH_BYTES (32 * 1024)

struct sconn {
    int fd;
    int used;
    char *in;
    size_t in_len;
    char *out;
    size_t out_len, out_off;
    int streaming; /* a response is in progress */
    int n_total;   /* content events to send */
    int n_sent;
    uint64_t gap_ns; /* 0: as fast as possible */
    mono_ns next_ns; /* gap mode: when the next event is due */
    long req_id;     /* index into the shared stamps, -1 none */
    int blocked;     /* last send hit EAGAIN: wait for EPOLLOUT */
    int in_ready;    /* on the ready list */
};

struct streamer {
    int epfd;
    int lfd;
    struct sconn *conns; /* indexed by fd */
    mono_ns *stamps;
    int *ready; /* fds with work that does not wait for the socket */
    int n_ready;
    int *gap; /* fds streaming in gap mode (may hold finished ones until pruned) */
    int n_gap;
};

static const char s_event_head[] =
    "data: {\"id\":\"cmpl-bench\",\"object\":\"text_completion\",\"created\":1700000000,"
    "\"model\":\"bench\",\"choices\":[{\"index\":0,\"text\":\" tok\",\"logprobs\":null,"
    "\"finish_reason\":null,\"stop_reason\":null}],\"usage\":null,\"t_send_ns\":";

static long s_json_num(const char *body, size_t len, const char *key, long dflt)
{
    /* The bench's own request shapes only: "key":123 somewhere in the body. */
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = memmem(body, len, pat, strlen(pat));
    if (!p)
        return dflt;
    return strtol(p + strlen(pat), NULL, 10);
}

static void s_mark_ready(struct streamer *s, struct sconn *c)
{
    if (!c->in_ready) {
        c->in_ready = 1;
        s->ready[s->n_ready++] = c->fd;
    }
}

static void s_close(struct streamer *s, struct sconn *c)
{
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->used = 0;
    c->streaming = 0;
    c->in_len = c->out_len = c->out_off = 0;
}

/* Sends pending output; returns -1 if the connection died. */
static int s_flush(struct sconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                c->blocked = 1;
                return 0;
            }
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    c->blocked = 0;
    return 0;
}

static void s_put(struct sconn *c, const char *data, size_t n)
{
    if (c->out_len + n > S_OUT_CAP) {
        fprintf(stderr, "streamer: output buffer overflow\n");
        abort();
    }
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
}

/* Appends a chunk holding `count` content events, each stamped now; records stamps. */
static void s_put_events(struct streamer *s, struct sconn *c, int count)
{
    char body[S_BATCH_BYTES + 1024];
    size_t blen = 0;
    mono_ns now = clock_now_ns();
    for (int i = 0; i < count; i++) {
        memcpy(body + blen, s_event_head, sizeof s_event_head - 1);
        blen += sizeof s_event_head - 1;
        blen += (size_t)sprintf(body + blen, "%llu}\n\n", (unsigned long long)now);
        if (c->req_id >= 0 && c->req_id < TS_MAX_REQ && c->n_sent < TS_MAX_EV)
            s->stamps[c->req_id * TS_MAX_EV + c->n_sent] = now;
        c->n_sent++;
    }
    char head[16];
    int hl = sprintf(head, "%zx\r\n", blen);
    s_put(c, head, (size_t)hl);
    s_put(c, body, blen);
    s_put(c, "\r\n", 2);
}

static void s_put_trailer(struct sconn *c)
{
    char body[1024];
    int n = snprintf(body, sizeof body,
                     "data: {\"id\":\"cmpl-bench\",\"object\":\"text_completion\",\"created\":"
                     "1700000000,\"model\":\"bench\",\"choices\":[{\"index\":0,\"text\":\"\","
                     "\"logprobs\":null,\"finish_reason\":\"length\",\"stop_reason\":null}],"
                     "\"usage\":null}\n\n"
                     "data: {\"id\":\"cmpl-bench\",\"object\":\"text_completion\",\"created\":"
                     "1700000000,\"model\":\"bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":"
                     "4,\"total_tokens\":%d,\"completion_tokens\":%d}}\n\n"
                     "data: [DONE]\n\n",
                     4 + c->n_total, c->n_total);
    char head[16];
    int hl = sprintf(head, "%x\r\n", n);
    s_put(c, head, (size_t)hl);
    s_put(c, body, (size_t)n);
    s_put(c, "\r\n0\r\n\r\n", 7);
}

/* Starts the next request in c->in if a whole one is there. */
static void s_try_request(struct streamer *s, struct sconn *c)
{
    if (c->streaming)
        return;
    c->in[c->in_len] = 0;
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end)
        return;
    size_t hdr = (size_t)(end - c->in) + 4;
    size_t clen = 0;
    const char *cl = strcasestr(c->in, "\r\nContent-Length:");
    if (cl && cl < end)
        clen = strtoul(cl + 17, NULL, 10);
    if (hdr + clen > c->in_len)
        return;
    const char *body = c->in + hdr;
    c->n_total = (int)s_json_num(body, clen, "max_tokens", 16);
    c->gap_ns = (uint64_t)s_json_num(body, clen, "bench_gap_us", 0) * 1000u;
    c->req_id = s_json_num(body, clen, "bench_req", -1);
    long offset_us = s_json_num(body, clen, "bench_offset_us", 0);
    c->n_sent = 0;
    c->streaming = 1;
    memmove(c->in, c->in + hdr + clen, c->in_len - hdr - clen);
    c->in_len -= hdr + clen;
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    s_put(c, head, sizeof head - 1);
    c->next_ns = clock_now_ns() + (uint64_t)offset_us * 1000u;
    if (c->gap_ns)
        s->gap[s->n_gap++] = c->fd; /* at most one entry per fd: pruned when it stops */
    else
        s_mark_ready(s, c);
}

/* Does the work due on c now. Returns 1 if c still has immediate work (fast mode). */
static int s_pump(struct streamer *s, struct sconn *c, mono_ns now)
{
    if (!c->used)
        return 0;
    if (c->out_len && s_flush(c) != 0) {
        s_close(s, c);
        return 0;
    }
    if (c->blocked || !c->streaming)
        return 0;
    if (c->gap_ns) {
        if (c->n_sent < c->n_total) {
            if (now < c->next_ns)
                return 0;
            s_put_events(s, c, 1);
            c->next_ns += c->gap_ns;
            if (c->next_ns < now)
                c->next_ns = now + c->gap_ns; /* fell behind: do not burst */
        }
    } else {
        /* One batch per turn so that no connection starves the others. */
        int per = (int)(S_BATCH_BYTES / (sizeof s_event_head + 24));
        int left = c->n_total - c->n_sent;
        if (left > 0)
            s_put_events(s, c, left < per ? left : per);
    }
    if (c->n_sent >= c->n_total) {
        s_put_trailer(c);
        c->streaming = 0;
    }
    if (s_flush(c) != 0) {
        s_close(s, c);
        return 0;
    }
    if (!c->streaming) {
        s_try_request(s, c); /* pipelined or already-read next request */
        return c->streaming && !c->blocked && !c->gap_ns;
    }
    return !c->blocked && !c->gap_ns;
}

static void s_read(struct streamer *s, struct sconn *c)
{
    for (;;) {
        if (c->in_len >= S_IN_CAP - 1) {
            s_close(s, c);
            return;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, S_IN_CAP - 1 - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        s_close(s, c);
        return;
    }
    s_try_request(s, c);
}

static void streamer_run(int lfd, mono_ns *stamps)
{
    struct streamer s = {0};
    s.lfd = lfd;
    s.stamps = stamps;
    s.epfd = epoll_create1(EPOLL_CLOEXEC);
    s.conns = xcalloc(S_MAX_CONNS, sizeof *s.conns);
    s.ready = xmalloc(S_MAX_CONNS * sizeof *s.ready);
    s.gap = xmalloc(S_MAX_CONNS * sizeof *s.gap);
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(s.epfd, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[512];
    for (;;) {
        /* Prune finished gap-mode streams and find the next due event. */
        mono_ns now = clock_now_ns();
        mono_ns next = 0;
        int keep_gap = 0;
        for (int i = 0; i < s.n_gap; i++) {
            struct sconn *c = &s.conns[s.gap[i]];
            if (!c->used || !c->streaming || !c->gap_ns)
                continue;
            s.gap[keep_gap++] = s.gap[i];
            if (!c->blocked && (!next || c->next_ns < next))
                next = c->next_ns;
        }
        s.n_gap = keep_gap;
        /* Wait: not at all with ready work, else until the next gap-mode event is due (ns
         * precision, no spinning), else until a socket wakes us. */
        struct timespec ts = {0, 0};
        const struct timespec *tsp = &ts;
        if (s.n_ready == 0) {
            if (next > now) {
                ts.tv_sec = (time_t)((next - now) / 1000000000u);
                ts.tv_nsec = (long)((next - now) % 1000000000u);
            } else if (!next) {
                tsp = NULL;
            }
        }
        int n = epoll_pwait2(s.epfd, evs, 512, tsp, NULL);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (;;) {
                    int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (cfd < 0)
                        break;
                    if (cfd >= S_MAX_CONNS) {
                        close(cfd);
                        continue;
                    }
                    int one = 1;
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct sconn *c = &s.conns[cfd];
                    if (!c->in) {
                        c->in = xmalloc(S_IN_CAP);
                        c->out = xmalloc(S_OUT_CAP);
                    }
                    c->fd = cfd;
                    c->used = 1;
                    c->in_len = c->out_len = c->out_off = 0;
                    c->streaming = c->blocked = c->in_ready = 0;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLET,
                                              .data.fd = cfd};
                    epoll_ctl(s.epfd, EPOLL_CTL_ADD, cfd, &cev);
                }
                continue;
            }
            struct sconn *c = &s.conns[fd];
            if (!c->used)
                continue;
            if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                s_close(&s, c);
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                c->blocked = 0;
                s_mark_ready(&s, c);
            }
            if (evs[i].events & EPOLLIN)
                s_read(&s, c);
        }
        /* Gap-mode streams that are due. */
        now = clock_now_ns();
        int n_gap_now = s.n_gap; /* s_pump may start a new request that appends */
        for (int i = 0; i < n_gap_now; i++) {
            struct sconn *c = &s.conns[s.gap[i]];
            if (c->used && c->streaming && c->gap_ns && !c->blocked && c->next_ns <= now) {
                s_pump(&s, c, now);
                now = clock_now_ns();
            }
        }
        /* Ready list: one turn each; keep those that still have work. */
        int n_old = s.n_ready;
        int keep = 0;
        for (int i = 0; i < n_old; i++) {
            int fd = s.ready[i];
            struct sconn *c = &s.conns[fd];
            c->in_ready = 0;
            if (s_pump(&s, c, clock_now_ns()) && !c->in_ready) {
                c->in_ready = 1;
                s.ready[keep++] = fd;
            }
        }
        /* Entries added during this pass (new requests) sit after n_old: move them down. */
        for (int i = n_old; i < s.n_ready; i++)
            s.ready[keep++] = s.ready[i];
        s.n_ready = keep;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Client side (parent)                                                                         */

struct run {
    struct client *c;
    uint64_t n_done, n_err;
    int keep_going; /* closed loop: resubmit from the callback */
    struct client_request q;
    mono_ns *ts_recv[TS_MAX_REQ]; /* timestamp run: the records' content stamps */
    uint32_t ts_n[TS_MAX_REQ];
    enum req_error first_err;
    char first_err_msg[256];
    mono_ns win_t0, win_t1; /* content events stamped inside this window are counted */
    uint64_t n_win_events;
};

/* One measured phase. */
struct phase {
    double req_per_s;
    double events_per_s;
    double cpu_frac; /* client CPU seconds per wall second during the window */
    uint64_t n_err;
};

static double cpu_self_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void on_done(void *ud, struct request_record *r)
{
    struct run *run = ud;
    run->n_done++;
    for (uint32_t i = 0; i < r->n_content_events; i++)
        if (r->t_content_ns[i] >= run->win_t0 && r->t_content_ns[i] < run->win_t1)
            run->n_win_events++;
    if (r->error != REQ_ERROR_NONE && r->error != REQ_ERROR_ABORTED) {
        if (!run->n_err) {
            run->first_err = r->error;
            snprintf(run->first_err_msg, sizeof run->first_err_msg, "%s", r->error_msg);
        }
        run->n_err++;
    }
    if (r->id < TS_MAX_REQ && r->level == 256) {
        run->ts_recv[r->id] = r->t_content_ns; /* keep: freed after the comparison */
        run->ts_n[r->id] = r->n_content_events;
        r->t_content_ns = NULL;
    }
    record_free(r);
    if (run->keep_going)
        client_submit(run->c, &run->q);
}

static struct client *mk_client(int port, struct run *run)
{
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    struct client_config cfg = {.base_url = url, .model = "bench", .timeout_ms = 60000};
    struct client *c = client_new(&cfg, on_done, run, err, sizeof err);
    if (!c) {
        fprintf(stderr, "bench_client: %s\n", err);
        exit(1);
    }
    run->c = c;
    return c;
}

/* Closed loop: `conc` requests of max_tokens each, resubmitted as each finishes, measured over
 * `seconds` after a warm-up of a quarter of that. Completions and the content events whose
 * receive stamps fall in the window are counted (streams cut at the end are delivered as aborted,
 * with their stamps). */
static struct phase closed_loop(int port, int conc, int max_tokens, double seconds)
{
    struct run run = {0};
    struct client *c = mk_client(port, &run);
    run.q = (struct client_request){
        .prompt = "bench", .prompt_len = 5, .max_tokens = max_tokens, .level = -1};
    run.keep_going = 1;
    run.win_t0 = run.win_t1 = UINT64_MAX;
    for (int i = 0; i < conc; i++)
        client_submit(c, &run.q);
    mono_ns t_warm = clock_now_ns() + (uint64_t)(seconds * 0.25 * 1e9);
    while (clock_now_ns() < t_warm)
        client_poll(c, 10);
    uint64_t d0 = run.n_done;
    double cpu0 = cpu_self_s();
    mono_ns t0 = clock_now_ns();
    run.win_t0 = t0;
    mono_ns t_end = t0 + (uint64_t)(seconds * 1e9);
    while (clock_now_ns() < t_end)
        client_poll(c, 10);
    mono_ns t1 = clock_now_ns();
    double cpu1 = cpu_self_s();
    run.win_t1 = t1;
    uint64_t d1 = run.n_done;
    run.keep_going = 0;
    client_abort_all(c);
    client_free(c);
    struct phase ph = {
        .req_per_s = stats_rate((double)(d1 - d0), ns_to_s(t1 - t0)),
        .events_per_s = stats_rate((double)run.n_win_events, ns_to_s(t1 - t0)),
        .cpu_frac = (cpu1 - cpu0) / ns_to_s(t1 - t0),
        .n_err = run.n_err,
    };
    fprintf(stderr,
            "bench_client: c=%d max_tokens=%d: %.0f req/s, %.0f events/s, client CPU %.0f%%\n",
            conc, max_tokens, ph.req_per_s, ph.events_per_s, 100 * ph.cpu_frac);
    if (run.n_err)
        fprintf(stderr, "bench_client: %llu errors, first: %s %s\n", (unsigned long long)run.n_err,
                req_error_str(run.first_err), run.first_err_msg);
    return ph;
}

static struct phase ts_error(int port, mono_ns *stamps, int n_streams, int n_events, int gap_us,
                             struct summary *out)
{
    struct run run = {0};
    struct client *c = mk_client(port, &run);
    memset(stamps, 0, sizeof(mono_ns) * TS_MAX_REQ * TS_MAX_EV);
    double cpu0 = cpu_self_s();
    mono_ns t0 = clock_now_ns();
    for (int i = 0; i < n_streams; i++) {
        struct client_request q = {.id = (uint64_t)i,
                                   .level = 256,
                                   .prompt = "bench",
                                   .prompt_len = 5,
                                   .max_tokens = n_events};
        char extra[128];
        /* Spread the streams' phases over one gap so sends do not all coincide. */
        snprintf(extra, sizeof extra, "\"bench_gap_us\":%d,\"bench_req\":%d,\"bench_offset_us\":%d",
                 gap_us, i, (int)((long)gap_us * i / n_streams));
        q.extra_json = extra;
        client_submit(c, &q);
    }
    while (client_in_flight(c) > 0)
        client_poll(c, 100);
    mono_ns t1 = clock_now_ns();
    double cpu1 = cpu_self_s();
    size_t cap = (size_t)n_streams * (size_t)n_events, n = 0;
    double *err_us = xmalloc(cap * sizeof *err_us);
    for (int i = 0; i < n_streams; i++) {
        for (uint32_t k = 0; k < run.ts_n[i] && k < TS_MAX_EV; k++) {
            mono_ns sent = stamps[i * TS_MAX_EV + k];
            mono_ns got = run.ts_recv[i][k];
            /* The first TS_SKIP_EVENTS of each stream overlap the set-up of the 256 connections
             * (the client is busy connecting): steady state only. */
            if (k >= TS_SKIP_EVENTS && sent && got >= sent && n < cap)
                err_us[n++] = (double)(got - sent) / 1e3;
        }
        free(run.ts_recv[i]);
    }
    summary_of(err_us, n, out);
    struct phase ph = {
        .req_per_s = NAN,
        .events_per_s = stats_rate((double)n, ns_to_s(t1 - t0)),
        .cpu_frac = (cpu1 - cpu0) / ns_to_s(t1 - t0),
        .n_err = run.n_err,
    };
    free(err_us);
    fprintf(stderr,
            "bench_client: timestamps, %d streams, %d us gap: %zu events, p50 %.1f us, "
            "p99 %.1f us, client CPU %.0f%%\n",
            n_streams, gap_us, n, out->p50, out->p99, 100 * ph.cpu_frac);
    if (run.n_err)
        fprintf(stderr, "bench_client: timestamp run: %llu errors, first: %s %s\n",
                (unsigned long long)run.n_err, req_error_str(run.first_err), run.first_err_msg);
    client_free(c);
    return ph;
}

static void pin_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        fprintf(stderr, "bench_client: cannot pin to CPU %d: %s\n", cpu, strerror(errno));
}

/* SCHED_FIFO (default; --no-rt turns it off) so that other load on a shared machine does not
 * preempt the measurement: each process really has its core. Returns 1 if it took effect. */
static int set_rt(void)
{
    struct sched_param sp = {.sched_priority = 10};
    if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) {
        fprintf(stderr, "bench_client: SCHED_FIFO: %s (measuring with normal scheduling)\n",
                strerror(errno));
        return 0;
    }
    return 1;
}

static double loadavg_1m(void)
{
    double l = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = NAN;
        fclose(f);
    }
    return l;
}

static void json_num(struct buf *j, const char *key, double v)
{
    buf_printf(j, ",\"%s\":", key);
    buf_json_double(j, v);
}

/* What one run measured, and the conditions it ran under. */
struct client_bench {
    int quick, rt_on, ts_gap_us;
    long n_cpus;
    double load_before, load_after;
    struct phase rq, e1, e64, e1024, tsp;
    struct summary ts;
    double rq_core, e1_core, e64_core, e1024_core; /* per client CPU-second */
};

/* A loopback listener and the streamer child on it (pinned to CPU 1 when there are two);
 * the port, the child's pid and the shared stamp table come back. -1 when one is missing. */
static int streamer_start(int rt, int *port, pid_t *pid, mono_ns **stamps, size_t stamps_bytes)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 4096) != 0) {
        fprintf(stderr, "bench_client: cannot listen: %s\n", strerror(errno));
        return -1;
    }
    socklen_t al = sizeof a;
    getsockname(lfd, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    *stamps = mmap(NULL, stamps_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (*stamps == MAP_FAILED) {
        fprintf(stderr, "bench_client: mmap: %s\n", strerror(errno));
        return -1;
    }
    *pid = fork();
    if (*pid < 0) {
        fprintf(stderr, "bench_client: fork: %s\n", strerror(errno));
        return -1;
    }
    if (*pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (sysconf(_SC_NPROCESSORS_ONLN) >= 2)
            pin_cpu(1);
        if (rt)
            set_rt();
        streamer_run(lfd, *stamps);
        _exit(0);
    }
    close(lfd);
    return 0;
}

static void print_client(const struct client_bench *b)
{
    const struct phase rq = b->rq, e1 = b->e1, e64 = b->e64, e1024 = b->e1024, tsp = b->tsp;
    const struct summary ts = b->ts;
    double rq_core = b->rq_core, e1_core = b->e1_core, e64_core = b->e64_core,
           e1024_core = b->e1024_core, load_before = b->load_before, load_after = b->load_after;
    int rt_on = b->rt_on, ts_gap_us = b->ts_gap_us;
    long n_cpus = b->n_cpus;
    printf("## Client ceiling (loopback SSE streamer, client on one core)\n\n");
    printf("Machine load average %.2f before, %.2f after; %ld CPUs; %s scheduling.\n\n",
           load_before, load_after, n_cpus, rt_on ? "SCHED_FIFO" : "normal");
    printf("| measure | measured | client CPU | per client CPU-second | target |\n"
           "|---|---:|---:|---:|---:|\n");
    printf("| requests/s, 1-token outputs, 64 in flight | %.0f | %.0f%% | %.0f | >= 20,000 |\n",
           rq.req_per_s, 100 * rq.cpu_frac, rq_core);
    printf("| SSE events/s, concurrency 1 | %.0f | %.0f%% | %.0f | >= 500,000 |\n", e1.events_per_s,
           100 * e1.cpu_frac, e1_core);
    printf("| SSE events/s, concurrency 64 | %.0f | %.0f%% | %.0f | >= 500,000 |\n",
           e64.events_per_s, 100 * e64.cpu_frac, e64_core);
    printf("| SSE events/s, concurrency 1,024 | %.0f | %.0f%% | %.0f | >= 500,000 |\n",
           e1024.events_per_s, 100 * e1024.cpu_frac, e1024_core);
    printf("| timestamp error p50, 256 streams, %d ms gap (us) | %.1f | %.0f%% | | |\n",
           ts_gap_us / 1000, ts.p50, 100 * tsp.cpu_frac);
    printf("| timestamp error p99, 256 streams, %d ms gap (us) | %.1f | | | < 100 |\n",
           ts_gap_us / 1000, ts.p99);
    printf(
        "\n\"Measured\" is wall-clock throughput; \"client CPU\" is the client process's CPU "
        "time over the same window (below 100%% means the client was waiting: for the "
        "streamer, or for a CPU on a loaded machine). Timestamp error = client receive stamp "
        "(clock_now_ns() in curl's write callback) minus the streamer's stamp taken right "
        "before send(2), over %zu events (each stream's first %d left out: connection set-up), max "
        "%.1f us, %.0f events/s during that run. "
        "Request errors: %llu/%llu/%llu/%llu/%llu.\n\n",
        ts.n, TS_SKIP_EVENTS, ts.max, tsp.events_per_s, (unsigned long long)rq.n_err,
        (unsigned long long)e1.n_err, (unsigned long long)e64.n_err,
        (unsigned long long)e1024.n_err, (unsigned long long)tsp.n_err);
    printf("```\n");
    printf("client_ceiling req_per_s=%.0f\n", rq.req_per_s);
    printf("client_ceiling events_per_s_c1=%.0f\n", e1.events_per_s);
    printf("client_ceiling events_per_s_c64=%.0f\n", e64.events_per_s);
    printf("client_ceiling events_per_s_c1024=%.0f\n", e1024.events_per_s);
    printf("client_ceiling ts_err_p50_us=%.1f\n", ts.p50);
    printf("client_ceiling ts_err_p99_us=%.1f\n", ts.p99);
    printf("client_ceiling req_per_cpu_s=%.0f\n", rq_core);
    printf("client_ceiling events_per_cpu_s_c1=%.0f\n", e1_core);
    printf("client_ceiling events_per_cpu_s_c64=%.0f\n", e64_core);
    printf("client_ceiling events_per_cpu_s_c1024=%.0f\n", e1024_core);
    printf("```\n");
}

static void write_client_json(const struct client_bench *b, const char *out_path, const char *only)
{
    const struct phase rq = b->rq, e1 = b->e1, e64 = b->e64, e1024 = b->e1024;
    const struct summary ts = b->ts;
    double rq_core = b->rq_core, e1_core = b->e1_core, e64_core = b->e64_core,
           e1024_core = b->e1024_core, load_before = b->load_before, load_after = b->load_after;
    int quick = b->quick, rt_on = b->rt_on, ts_gap_us = b->ts_gap_us;
    long n_cpus = b->n_cpus;
    struct buf j;
    buf_init(&j, 1024, 1 << 16);
    char wall[32];
    clock_wall_iso(wall, sizeof wall);
    buf_printf(&j, "{\"measured_at\":\"%s\",\"quick\":%s,\"rt\":%s,\"n_cpus\":%ld", wall,
               quick ? "true" : "false", rt_on ? "true" : "false", n_cpus);
    json_num(&j, "loadavg_before", load_before);
    json_num(&j, "loadavg_after", load_after);
    json_num(&j, "req_per_s", rq.req_per_s);
    json_num(&j, "events_per_s_c1", e1.events_per_s);
    json_num(&j, "events_per_s_c64", e64.events_per_s);
    json_num(&j, "events_per_s_c1024", e1024.events_per_s);
    json_num(&j, "ts_err_p50_us", ts.p50);
    json_num(&j, "ts_err_p99_us", ts.p99);
    json_num(&j, "ts_err_max_us", ts.max);
    json_num(&j, "req_cpu_frac", rq.cpu_frac);
    json_num(&j, "events_cpu_frac_c1", e1.cpu_frac);
    json_num(&j, "events_cpu_frac_c64", e64.cpu_frac);
    json_num(&j, "events_cpu_frac_c1024", e1024.cpu_frac);
    json_num(&j, "req_per_cpu_s", rq_core);
    json_num(&j, "events_per_cpu_s_c1", e1_core);
    json_num(&j, "events_per_cpu_s_c64", e64_core);
    json_num(&j, "events_per_cpu_s_c1024", e1024_core);
    buf_printf(&j, ",\"ts_streams\":256,\"ts_gap_us\":%d,\"ts_events\":%zu}\n", ts_gap_us, ts.n);
    dir_make_all("bench/out");
    if (only)
        fprintf(stderr, "bench_client: --only %s: %s not written\n", only, out_path);
    else if (file_write_all(out_path, j.data, j.len) != 0)
        fprintf(stderr, "bench_client: cannot write %s: %s\n", out_path, strerror(errno));
    buf_free(&j);
}

int main(int argc, char **argv)
{
    int quick = 0, rt = 1;
    const char *out_path = "bench/out/client.json";
    const char *only = NULL; /* diagnostics: run one part ("req", "events", "ts"), write no file */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--no-rt"))
            rt = 0;
        else if (!strcmp(argv[i], "--out") && i + 1 < argc)
            out_path = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr, "usage: bench_client [--quick] [--no-rt] [--out PATH] "
                            "[--only req|events|ts]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct client_bench b = {.quick = quick, .ts_gap_us = 5000};
    b.n_cpus = sysconf(_SC_NPROCESSORS_ONLN);
    b.load_before = loadavg_1m();
    size_t stamps_bytes = sizeof(mono_ns) * TS_MAX_REQ * TS_MAX_EV;
    mono_ns *stamps;
    int port;
    pid_t pid;
    if (streamer_start(rt, &port, &pid, &stamps, stamps_bytes) != 0)
        return 1;
    if (b.n_cpus >= 2)
        pin_cpu(0);
    b.rt_on = rt ? set_rt() : 0;

    double secs = quick ? 0.6 : 2.0;
    struct phase nan_phase = {NAN, NAN, NAN, 0};
    b.rq = b.e1 = b.e64 = b.e1024 = b.tsp = nan_phase;
    if (!only || !strcmp(only, "req"))
        b.rq = closed_loop(port, 64, 1, secs);
    if (!only || !strcmp(only, "events")) {
        b.e1 = closed_loop(port, 1, 20000, secs);
        b.e64 = closed_loop(port, 64, 2000, secs);
        b.e1024 = closed_loop(port, 1024, 500, secs);
    }
    summary_of(NULL, 0, &b.ts);
    if (!only || !strcmp(only, "ts"))
        b.tsp = ts_error(port, stamps, 256, quick ? 50 : 200, b.ts_gap_us, &b.ts);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    b.load_after = loadavg_1m();

    /* Per client CPU-second: what one fully available core would sustain at this cost. */
    b.rq_core = b.rq.req_per_s / b.rq.cpu_frac;
    b.e1_core = b.e1.events_per_s / b.e1.cpu_frac;
    b.e64_core = b.e64.events_per_s / b.e64.cpu_frac;
    b.e1024_core = b.e1024.events_per_s / b.e1024.cpu_frac;
    print_client(&b);
    write_client_json(&b, out_path, only);
    munmap(stamps, stamps_bytes);
    return 0;
}
