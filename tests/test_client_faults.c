/* test_client_faults: the streaming client against servers that misbehave with their connections
 * the way real ones do (tests/fake_server.h): closing a kept-alive connection after each streamed
 * response or after N requests without saying so, closing idle connections, Connection: close,
 * HTTP/1.0, resets mid-stream, stalls, dropped requests, nothing listening. The rule under test
 * (docs/client.md, "Dead kept-alive connections"): a request whose kept-alive connection died
 * before any response byte is sent again (counted in n_retries, t_sent_ns kept); nothing else is
 * retried, and every request yields exactly one record. */
#include <stdlib.h>

#include "fake_server.h"
#include "measure/record.h"
#include "net/client.h"
#include "test.h"

#define N_REQ 200
#define CONC 4
#define MAX_TOKENS 8

/* ------------------------------------------------------------------------------------------ */
/* A closed loop like src/batch/cmd_batch.c's: a new request from the done-callback.            */

struct loop {
    struct client *c;
    int target;    /* requests in all */
    int phase_end; /* submit no further than this (phases with idle pauses between them) */
    int submitted;
    struct request_record recs[N_REQ];
    int n;
    int n_submit_fail;
};

static int prompt_len_of(uint64_t id)
{
    return (int)(id % 13) + 1;
}

static void loop_submit(struct loop *l)
{
    static const char a[] = "aaaaaaaaaaaaaaaa";
    uint64_t id = (uint64_t)l->submitted;
    struct client_request q = {.id = id,
                               .tag = "fault",
                               .level = 0,
                               .prompt = a,
                               .prompt_len = (size_t)prompt_len_of(id),
                               .max_tokens = MAX_TOKENS};
    if (client_submit(l->c, &q) == 0)
        l->submitted++;
    else
        l->n_submit_fail++;
}

static void loop_done(void *ud, struct request_record *rec)
{
    struct loop *l = ud;
    if (l->n < N_REQ)
        l->recs[l->n++] = *rec; /* the contents are ours now */
    else
        record_free(rec);
    if (l->submitted < l->phase_end && l->n_submit_fail == 0)
        loop_submit(l);
}

static void loop_free(struct loop *l)
{
    for (int i = 0; i < l->n; i++)
        record_free(&l->recs[i]);
    l->n = 0;
}

static struct client *mk_client(const char *base_url, long timeout_ms, client_done_cb cb, void *ud)
{
    char err[256];
    struct client_config cfg = {
        .base_url = base_url, .model = "fake-model", .timeout_ms = timeout_ms};
    struct client *c = client_new(&cfg, cb, ud, err, sizeof err);
    CHECK_MSG(c != NULL, "client_new: %s", err);
    return c;
}

static void drain(struct client *c, int max_ms)
{
    mono_ns end = clock_now_ns() + (uint64_t)max_ms * 1000000u;
    while (client_in_flight(c) > 0 && clock_now_ns() < end)
        client_poll(c, 100);
}

/* N_REQ requests at concurrency CONC, in n_phases equal phases with pause_ms of idleness between
 * them (the connections then sit unused in the client's pool). */
static void loop_run(struct loop *l, const char *base_url, int n_phases, int pause_ms)
{
    memset(l, 0, sizeof *l);
    l->c = mk_client(base_url, 10000, loop_done, l);
    if (!l->c)
        return;
    l->target = N_REQ;
    for (int p = 1; p <= n_phases; p++) {
        l->phase_end = p == n_phases ? N_REQ : N_REQ * p / n_phases;
        for (int i = 0; i < CONC && l->submitted < l->phase_end; i++)
            loop_submit(l);
        drain(l->c, 60000);
        if (p < n_phases)
            clock_sleep_ns((uint64_t)pause_ms * 1000000u);
    }
}

/* Every request exactly once, all ok, with the server's usage; returns the sum of n_retries. */
static int check_all_ok(const struct loop *l, const char *what)
{
    CHECK_MSG(l->n == N_REQ, "%s: %d records", what, l->n);
    CHECK_EQ_INT(l->n_submit_fail, 0);
    int seen[N_REQ] = {0};
    int sum_retries = 0, n_bad = 0;
    for (int i = 0; i < l->n; i++) {
        const struct request_record *r = &l->recs[i];
        if (r->id < N_REQ)
            seen[r->id]++;
        sum_retries += r->n_retries;
        int ok = r->error == REQ_ERROR_NONE && r->http_status == 200 &&
                 r->n_completion_tokens == MAX_TOKENS &&
                 r->n_prompt_tokens == prompt_len_of(r->id) && r->n_content_events == MAX_TOKENS &&
                 !strcmp(r->finish_reason, "length") && r->t_sent_ns > 0 &&
                 r->t_headers_ns >= r->t_sent_ns && r->t_first_token_ns >= r->t_headers_ns &&
                 r->t_done_ns >= r->t_first_token_ns;
        if (!ok && n_bad++ < 3)
            CHECK_MSG(ok, "%s: request %llu: %s (%s) status %d tokens %d/%d events %u retried %u",
                      what, (unsigned long long)r->id, req_error_str(r->error), r->error_msg,
                      r->http_status, r->n_prompt_tokens, r->n_completion_tokens,
                      r->n_content_events, r->n_retries);
    }
    CHECK_MSG(n_bad == 0, "%s: %d of %d requests not ok", what, n_bad, l->n);
    for (int i = 0; i < N_REQ; i++)
        if (seen[i] != 1) {
            CHECK_MSG(seen[i] == 1, "%s: request %d delivered %d times", what, i, seen[i]);
            break;
        }
    return sum_retries;
}

static void report(const char *what, const struct loop *l, const struct fake_server *s, int sum)
{
    int n_retried = 0;
    for (int i = 0; i < l->n; i++)
        n_retried += l->recs[i].n_retries > 0;
    fprintf(stderr,
            "  %s: %d requests ok, %d retried (%d re-sends), client connects %ld, server accepts "
            "%d, unanswered %d\n",
            what, l->n, n_retried, sum, l->c ? client_n_connects(l->c) : -1L,
            atomic_load(&s->n_accepts), atomic_load(&s->n_unanswered));
}

/* One closed-loop run against a fake server. expect_retries: 1 the mode forces reuse failures
 * (every unanswered request must have been sent again exactly once), 0 it forbids reuse (no
 * retries), -1 either (an eager close may or may not be noticed before reuse). */
static void closed_loop(const char *what, const struct fake_config *cfg, int n_phases, int pause_ms,
                        int expect_retries)
{
    struct fake_server *s = fake_start(cfg);
    CHECK(s != NULL);
    if (!s)
        return;
    static struct loop l;
    loop_run(&l, s->base_url, n_phases, pause_ms);
    if (l.c) {
        int sum = check_all_ok(&l, what);
        report(what, &l, s, sum);
        /* The server streamed each request once: a retried one had no answer the first time. */
        CHECK_EQ_INT(atomic_load(&s->n_streams_done), N_REQ);
        if (expect_retries == 1) {
            CHECK_MSG(sum > 0, "%s: no retries", what);
            CHECK_EQ_INT(sum, atomic_load(&s->n_unanswered));
        } else if (expect_retries == 0) {
            CHECK_EQ_INT(sum, 0);
        }
        /* Every connection the client opened is one the server accepted. */
        CHECK_EQ_INT(client_n_connects(l.c), atomic_load(&s->n_accepts));
        client_free(l.c);
    }
    loop_free(&l);
    fake_stop(s);
}

/* ------------------------------------------------------------------------------------------ */
/* (a)-(e): nothing is lost                                                                     */

static void test_normal_keepalive(void)
{
    closed_loop("normal", &(struct fake_config){.mode = FAKE_NORMAL}, 1, 0, 0);
}

static void test_close_each(void)
{
    /* (a) The nasty one: closed after every streamed response without Connection: close. */
    closed_loop("(a) close each, at once", &(struct fake_config){.mode = FAKE_CLOSE_EACH}, 1, 0,
                -1);
    closed_loop("(a) close each, RST on reuse",
                &(struct fake_config){.mode = FAKE_CLOSE_EACH, .late = FAKE_LATE_RST}, 1, 0, 1);
    closed_loop("(a) close each, empty reply on reuse",
                &(struct fake_config){.mode = FAKE_CLOSE_EACH, .late = FAKE_LATE_FIN}, 1, 0, 1);
}

static void test_close_after_n(void)
{
    /* (b) A keep-alive limit of 5 requests (llama.cpp's cpp-httplib has one) not announced. */
    closed_loop("(b) close after 5, at once", &(struct fake_config){.mode = FAKE_CLOSE_AFTER_N}, 1,
                0, -1);
    closed_loop("(b) close after 5, RST on reuse",
                &(struct fake_config){.mode = FAKE_CLOSE_AFTER_N, .late = FAKE_LATE_RST}, 1, 0, 1);
    closed_loop("(b) close after 5, empty reply on reuse",
                &(struct fake_config){.mode = FAKE_CLOSE_AFTER_N, .late = FAKE_LATE_FIN}, 1, 0, 1);
}

static void test_idle_close(void)
{
    /* (c) Idle connections closed after 1 s: three phases with 1.2 s pauses, so the pool's
     * connections go idle twice. */
    closed_loop("(c) idle close, at once", &(struct fake_config){.mode = FAKE_IDLE_CLOSE}, 3, 1200,
                -1);
    closed_loop("(c) idle close, RST on reuse",
                &(struct fake_config){.mode = FAKE_IDLE_CLOSE, .late = FAKE_LATE_RST}, 3, 1200, 1);
}

static void test_connection_close_header(void)
{
    /* (d) Announced: curl never reuses such a connection, so nothing can need a retry. */
    closed_loop("(d) Connection: close", &(struct fake_config){.mode = FAKE_CONN_CLOSE}, 1, 0, 0);
}

static void test_http10(void)
{
    /* (e) HTTP/1.0, the body delimited by the close. */
    closed_loop("(e) HTTP/1.0", &(struct fake_config){.mode = FAKE_HTTP10}, 1, 0, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* The idle-close race, one request at a time                                                   */

struct one {
    struct request_record rec;
    int n;
};

static void one_done(void *ud, struct request_record *rec)
{
    struct one *o = ud;
    if (o->n++ == 0)
        o->rec = *rec;
    else
        record_free(rec);
}

/* Sends one request and waits for its record; t_before/t_after bracket client_submit. */
static int send_one(struct client *c, struct one *o, int max_tokens, mono_ns *t_before,
                    mono_ns *t_after)
{
    record_free(&o->rec);
    record_init(&o->rec);
    o->n = 0;
    struct client_request q = {
        .id = 1, .prompt = "hello", .prompt_len = 5, .max_tokens = max_tokens};
    *t_before = clock_now_ns();
    int rc = client_submit(c, &q);
    *t_after = clock_now_ns();
    CHECK_EQ_INT(rc, 0);
    drain(c, 20000);
    CHECK_EQ_INT(o->n, 1);
    return o->n == 1;
}

static void check_one_ok(const struct request_record *r, mono_ns t0, mono_ns t1)
{
    CHECK_MSG(r->error == REQ_ERROR_NONE, "%s: %s", req_error_str(r->error), r->error_msg);
    CHECK_EQ_INT(r->n_completion_tokens, 4);
    CHECK_EQ_INT(r->n_prompt_tokens, 5);
    CHECK_EQ_INT(r->n_content_events, 4);
    /* t_sent_ns is the original send, taken inside client_submit, not the retry's. */
    CHECK(r->t_sent_ns >= t0 && r->t_sent_ns <= t1);
    CHECK(r->t_headers_ns >= r->t_sent_ns && r->t_done_ns >= r->t_headers_ns);
}

/* send, wait > 1 s, send again on the same client. */
static void idle_race(enum fake_late late, const char *what)
{
    struct fake_server *s =
        fake_start(&(struct fake_config){.mode = FAKE_IDLE_CLOSE, .late = late, .idle_ms = 1000});
    CHECK(s != NULL);
    if (!s)
        return;
    struct one o = {0};
    struct client *c = mk_client(s->base_url, 10000, one_done, &o);
    mono_ns t0, t1;
    if (c && send_one(c, &o, 4, &t0, &t1)) {
        check_one_ok(&o.rec, t0, t1);
        CHECK_EQ_INT(o.rec.n_retries, 0); /* a fresh connection */
        CHECK_EQ_INT(client_n_connects(c), 1);
    }
    clock_sleep_ns(1300 * 1000000ull);
    if (c && send_one(c, &o, 4, &t0, &t1)) {
        const struct request_record *r = &o.rec;
        check_one_ok(r, t0, t1);
        int died = atomic_load(&s->n_unanswered);
        fprintf(stderr, "  %s: second request ok, retried %u, server saw %d request(s) die\n", what,
                r->n_retries, died);
        if (late == FAKE_LATE_NONE) {
            /* The server's FIN came 300 ms before the request: curl usually notices and opens a
             * new connection (retried 0); if it reused the dead one, that cost one re-send. */
            CHECK(r->n_retries <= 1);
        } else {
            /* The close crossed the request: the reused connection died with nothing received,
             * and the request went again on a new connection, exactly once. */
            CHECK_EQ_INT(r->n_retries, 1);
            CHECK_EQ_INT(died, 1);
        }
        CHECK_EQ_INT(client_n_connects(c), 2);
        /* The JSONL line says so. */
        struct buf b;
        buf_init(&b, 1024, 1 << 16);
        CHECK_EQ_INT(record_to_json(r, &b), BUF_OK);
        char want[32];
        snprintf(want, sizeof want, "\"retried\":%u", r->n_retries);
        CHECK_MSG(strstr(b.data, want) != NULL, "%s", b.data);
        buf_free(&b);
    }
    CHECK_EQ_INT(atomic_load(&s->n_streams_done), 2);
    record_free(&o.rec);
    client_free(c);
    fake_stop(s);
}

static void test_idle_race(void)
{
    idle_race(FAKE_LATE_NONE, "idle close at 1 s");
    idle_race(FAKE_LATE_RST, "idle close crossing the request (RST)");
    idle_race(FAKE_LATE_FIN, "idle close crossing the request (empty reply)");
}

/* A pool of 16 dead kept-alive connections: libcurl re-sends on the next cached one each time a
 * reused connection dies, and gives up after 6 attempts ("Connection died, tried 5 times before
 * giving up", libcurl 7.88 to 8.x); the client then retries once on a fresh connection. Before
 * the fix this request was lost, which is what `slmprobe ttft --server llamacpp` hit. */
static void test_pool_of_dead_connections(void)
{
    struct fake_server *s = fake_start(
        &(struct fake_config){.mode = FAKE_IDLE_CLOSE, .late = FAKE_LATE_RST, .idle_ms = 300});
    CHECK(s != NULL);
    if (!s)
        return;
    struct one o = {0};
    struct client *c = mk_client(s->base_url, 10000, one_done, &o);
    if (!c) {
        fake_stop(s);
        return;
    }
    struct client_request q = {.prompt = "hello", .prompt_len = 5, .max_tokens = 4};
    for (int i = 0; i < 16; i++)
        CHECK_EQ_INT(client_submit(c, &q), 0);
    drain(c, 20000);
    CHECK_EQ_INT(o.n, 16);
    CHECK_EQ_INT(client_n_connects(c), 16);
    clock_sleep_ns(500 * 1000000ull);
    mono_ns t0, t1;
    if (send_one(c, &o, 4, &t0, &t1)) {
        const struct request_record *r = &o.rec;
        check_one_ok(r, t0, t1);
        int died = atomic_load(&s->n_unanswered);
        fprintf(stderr, "  retried %u times (%d dead connections tried), %ld connects\n",
                r->n_retries, died, client_n_connects(c));
        /* Every dead connection tried cost one re-send; not all 16 were tried: someone went to a
         * fresh connection early (libcurl 7.88: 6 dead ones, then the client's own retry). */
        CHECK_EQ_INT(r->n_retries, died);
        CHECK(died >= 1 && died < 16);
        CHECK_EQ_INT(client_n_connects(c), 17);
    }
    /* The next request still finds dead connections in the pool (curl may pick one): each costs
     * one re-send again, and the request gets through. */
    int died_before = atomic_load(&s->n_unanswered);
    if (send_one(c, &o, 4, &t0, &t1)) {
        check_one_ok(&o.rec, t0, t1);
        CHECK_EQ_INT(o.rec.n_retries, atomic_load(&s->n_unanswered) - died_before);
    }
    record_free(&o.rec);
    client_free(c);
    fake_stop(s);
}

/* A large body (1 MiB prompt) on a kept-alive connection that dies under it: the failure can come
 * while the body is still being written (a send error curl does not retry itself) or on the read;
 * either way exactly one re-send. */
static void test_large_body_on_dead_connection(void)
{
    struct fake_server *s =
        fake_start(&(struct fake_config){.mode = FAKE_CLOSE_EACH, .late = FAKE_LATE_RST});
    CHECK(s != NULL);
    if (!s)
        return;
    struct one o = {0};
    struct client *c = mk_client(s->base_url, 10000, one_done, &o);
    size_t n = 1u << 20;
    char *big = xmalloc(n);
    memset(big, 'b', n);
    for (int i = 0; c && i < 3; i++) {
        record_free(&o.rec);
        record_init(&o.rec);
        o.n = 0;
        struct client_request q = {.prompt = big, .prompt_len = n, .max_tokens = 2};
        CHECK_EQ_INT(client_submit(c, &q), 0);
        drain(c, 20000);
        CHECK_EQ_INT(o.n, 1);
        CHECK_MSG(o.rec.error == REQ_ERROR_NONE, "%d: %s: %s", i, req_error_str(o.rec.error),
                  o.rec.error_msg);
        CHECK_EQ_INT(o.rec.n_prompt_tokens, (long long)n);
        CHECK_EQ_INT(o.rec.n_retries, i == 0 ? 0 : 1);
    }
    free(big);
    record_free(&o.rec);
    client_free(c);
    fake_stop(s);
}

/* ------------------------------------------------------------------------------------------ */
/* (f), (g), dropped requests, nothing listening: failures stay failures                        */

static void test_reset_mid_stream(void)
{
    /* (f) Every 10th completion: 3 events, then a RST. Those are REQ_ERROR_PROTOCOL: the response
     * headers and 3 events had arrived, so the stream was cut short (the client's rule: reset or
     * close before the response headers is `connect`, after them `protocol`). A response byte had
     * arrived: never retried. */
    struct fake_server *s = fake_start(
        &(struct fake_config){.mode = FAKE_RESET_MID, .reset_every = 10, .reset_after_events = 3});
    CHECK(s != NULL);
    if (!s)
        return;
    static struct loop l;
    loop_run(&l, s->base_url, 1, 0);
    if (!l.c) {
        fake_stop(s);
        return;
    }
    CHECK_EQ_INT(l.n, N_REQ);
    int n_reset = 0, n_ok = 0, n_other = 0, seen[N_REQ] = {0};
    for (int i = 0; i < l.n; i++) {
        const struct request_record *r = &l.recs[i];
        if (r->id < N_REQ)
            seen[r->id]++;
        CHECK_EQ_INT(r->n_retries, 0);
        if (r->error == REQ_ERROR_NONE && r->n_content_events == MAX_TOKENS &&
            r->n_completion_tokens == MAX_TOKENS) {
            n_ok++;
        } else if (r->error == REQ_ERROR_PROTOCOL) {
            n_reset++;
            CHECK_EQ_INT(r->http_status, 200);
            CHECK_EQ_INT(r->n_content_events, 3); /* the partial stream is kept */
            CHECK(r->t_content_ns != NULL && r->t_first_token_ns == r->t_content_ns[0]);
            CHECK_EQ_INT(r->n_completion_tokens, -1); /* no usage arrived */
            CHECK_MSG(strstr(r->error_msg, "mid-stream") != NULL, "%s", r->error_msg);
        } else {
            n_other++;
            CHECK_MSG(0, "request %llu: %s (%s), %u events", (unsigned long long)r->id,
                      req_error_str(r->error), r->error_msg, r->n_content_events);
        }
    }
    for (int i = 0; i < N_REQ; i++)
        CHECK_EQ_INT(seen[i], 1);
    fprintf(stderr, "  %d ok, %d reset mid-stream, %d other; server resets %d\n", n_ok, n_reset,
            n_other, atomic_load(&s->n_resets));
    CHECK_EQ_INT(n_reset, N_REQ / 10);
    CHECK_EQ_INT(atomic_load(&s->n_resets), N_REQ / 10);
    CHECK_EQ_INT(n_ok, N_REQ - N_REQ / 10);
    client_free(l.c);
    loop_free(&l);
    fake_stop(s);
}

static void test_stall_times_out(void)
{
    /* (g) Headers, then nothing: the per-request timeout ends it. */
    struct fake_server *s = fake_start(&(struct fake_config){.mode = FAKE_STALL});
    CHECK(s != NULL);
    if (!s)
        return;
    static struct loop l;
    memset(&l, 0, sizeof l);
    l.c = mk_client(s->base_url, 300, loop_done, &l);
    if (l.c) {
        l.phase_end = CONC;
        for (int i = 0; i < CONC; i++)
            loop_submit(&l);
        drain(l.c, 10000);
        CHECK_EQ_INT(l.n, CONC);
        for (int i = 0; i < l.n; i++) {
            const struct request_record *r = &l.recs[i];
            CHECK_MSG(r->error == REQ_ERROR_TIMEOUT, "%s: %s", req_error_str(r->error),
                      r->error_msg);
            CHECK_EQ_INT(r->n_retries, 0);
            CHECK_EQ_INT(r->http_status, 200);
            CHECK(r->t_headers_ns > 0 && r->t_first_event_ns == 0);
            CHECK(record_e2e_ns(r) >= 290 * 1000000ll);
        }
        client_free(l.c);
    }
    loop_free(&l);
    fake_stop(s);
}

static void test_dropped_requests(void)
{
    /* Every request read and dropped: the first goes out on a fresh connection, so its empty
     * reply is not retried (a fresh connection that fails is the server's answer). */
    struct fake_server *s = fake_start(&(struct fake_config){.mode = FAKE_DROP, .drop_every = 1});
    CHECK(s != NULL);
    if (!s)
        return;
    struct one o = {0};
    struct client *c = mk_client(s->base_url, 5000, one_done, &o);
    mono_ns t0, t1;
    if (c && send_one(c, &o, 4, &t0, &t1)) {
        CHECK_MSG(o.rec.error == REQ_ERROR_CONNECT, "%s: %s", req_error_str(o.rec.error),
                  o.rec.error_msg);
        CHECK_EQ_INT(o.rec.n_retries, 0);
        CHECK_EQ_INT(atomic_load(&s->n_unanswered), 1);
    }
    record_free(&o.rec);
    client_free(c);
    fake_stop(s);

    /* Every second one dropped, one at a time: an odd request is answered and leaves its
     * connection kept alive; the next (even) one is dropped on that reused connection, so it is
     * sent again on a fresh one, where it is the server's next (odd) request and is answered.
     * (The server did see it twice: a retry is only safe for requests one may repeat.) */
    s = fake_start(&(struct fake_config){.mode = FAKE_DROP, .drop_every = 2});
    CHECK(s != NULL);
    if (!s)
        return;
    memset(&o, 0, sizeof o);
    c = mk_client(s->base_url, 5000, one_done, &o);
    for (int i = 0; c && i < 6; i++) {
        if (!send_one(c, &o, 4, &t0, &t1))
            break;
        check_one_ok(&o.rec, t0, t1);
        CHECK_EQ_INT(o.rec.n_retries, i == 0 ? 0 : 1);
    }
    CHECK_EQ_INT(atomic_load(&s->n_unanswered), 5);
    record_free(&o.rec);
    client_free(c);
    fake_stop(s);
}

static void test_nothing_listening(void)
{
    /* A free port, bound and closed again: connection refused, on a fresh connection: no retry. */
    struct fake_server *s = fake_start(NULL);
    CHECK(s != NULL);
    if (!s)
        return;
    char url[64];
    snprintf(url, sizeof url, "%s", s->base_url);
    fake_stop(s);
    struct one o = {0};
    struct client *c = mk_client(url, 5000, one_done, &o);
    mono_ns t0, t1;
    for (int i = 0; c && i < 2; i++) {
        if (!send_one(c, &o, 4, &t0, &t1))
            break;
        CHECK_MSG(o.rec.error == REQ_ERROR_CONNECT, "%s: %s", req_error_str(o.rec.error),
                  o.rec.error_msg);
        CHECK_EQ_INT(o.rec.n_retries, 0);
        CHECK_EQ_INT(o.rec.t_headers_ns, 0);
    }
    record_free(&o.rec);
    client_free(c);
}

static void test_health_and_models(void)
{
    /* The fake answers what a probe asks before streaming: /health and /v1/models (the model
     * name is discovered when none is configured). */
    struct fake_server *s = fake_start(&(struct fake_config){.mode = FAKE_CLOSE_AFTER_N});
    CHECK(s != NULL);
    if (!s)
        return;
    char url[128], err[256];
    snprintf(url, sizeof url, "%s/health", s->base_url);
    struct buf b;
    buf_init(&b, 256, 1 << 16);
    int status = 0;
    CHECK_EQ_INT(http_get(url, NULL, 2000, &b, &status, err, sizeof err), 0);
    CHECK_EQ_INT(status, 200);
    CHECK_EQ_STR(b.data, "{\"status\":\"ok\"}");
    buf_free(&b);
    struct one o = {0};
    struct client_config cfg = {.base_url = s->base_url, .timeout_ms = 5000};
    struct client *c = client_new(&cfg, one_done, &o, err, sizeof err);
    CHECK_MSG(c != NULL, "%s", err);
    if (c) {
        CHECK_EQ_STR(client_model(c), "fake-model");
        mono_ns t0, t1;
        if (send_one(c, &o, 4, &t0, &t1))
            check_one_ok(&o.rec, t0, t1);
        client_free(c);
    }
    record_free(&o.rec);
    fake_stop(s);
}

int main(void)
{
    TEST_RUN(test_health_and_models);
    TEST_RUN(test_normal_keepalive);
    TEST_RUN(test_close_each);
    TEST_RUN(test_close_after_n);
    TEST_RUN(test_idle_close);
    TEST_RUN(test_connection_close_header);
    TEST_RUN(test_http10);
    TEST_RUN(test_idle_race);
    TEST_RUN(test_pool_of_dead_connections);
    TEST_RUN(test_large_body_on_dead_connection);
    TEST_RUN(test_reset_mid_stream);
    TEST_RUN(test_stall_times_out);
    TEST_RUN(test_dropped_requests);
    TEST_RUN(test_nothing_listening);
    return TEST_DONE();
}
