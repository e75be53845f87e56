/* test_session: the session's output directory, redacted command line, cancellation, exit-code
 * policy, and the asynchronous JSONL sink: every pushed record becomes one valid JSON line, in
 * push order, also when the queue fills up; close drains what is queued. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/session.h"
#include "util/buf.h"
#include "util/json.h"
#include "test.h"

static char g_tmp[256];

static void session_for(struct session *s, struct probe_opts *po, const char *sub)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s/deeper", g_tmp, sub);
    memset(po, 0, sizeof *po);
    po->out_dir = dir;
    char *argv[] = {"slmprobe", "ttft", "--api-key", "sekrit-key", "--out", dir, NULL};
    char err[256] = "";
    CHECK_MSG(session_init(s, po, 6, argv, err, sizeof err) == 0, "%s", err);
}

static void test_init(void)
{
    struct probe_opts po;
    struct session s;
    session_for(&s, &po, "init");
    CHECK(access(s.out_dir, W_OK) == 0);
    CHECK(strstr(s.command_line, "slmprobe ttft") == s.command_line);
    CHECK(strstr(s.command_line, "sekrit") == NULL);
    CHECK(strstr(s.command_line, "***") != NULL);
    CHECK(strlen(s.started_at) >= 19);
    CHECK(s.sample_interval_ms == SESSION_SAMPLE_INTERVAL_MS ||
          s.sample_interval_ms == SESSION_SAMPLE_INTERVAL_SMI_MS);
    CHECK(s.gpus.available || s.gpus.reason[0]);
    char p[1200];
    CHECK(strcmp(session_path(&s, "x.jsonl", p, sizeof p), s.out_dir) > 0);
    CHECK(strstr(p, "/x.jsonl") != NULL);
    session_free(&s);

    /* an output directory that cannot be made */
    po.out_dir = "/proc/nope/results";
    char *argv[] = {"slmprobe", NULL};
    char err[256] = "";
    CHECK(session_init(&s, &po, 1, argv, err, sizeof err) == -1);
    CHECK(strstr(err, "/proc/nope") != NULL);
    session_free(&s);
}

static void test_cancel_and_exit_codes(void)
{
    struct probe_opts po;
    struct session s;
    session_for(&s, &po, "cancel");
    CHECK(!session_cancelled(&s));
    CHECK_EQ_STR(session_cancel_reason(&s), "");
    CHECK_EQ_INT(session_exit_code(&s, 0), PROBE_EXIT_OK);
    CHECK_EQ_INT(session_exit_code(&s, 1), PROBE_EXIT_FAILED);
    session_cancel(&s, "server died");
    session_cancel(&s, "second reason is ignored");
    CHECK(session_cancelled(&s));
    CHECK(!session_interrupted(&s));
    CHECK_EQ_STR(session_cancel_reason(&s), "server died");
    CHECK_EQ_INT(session_exit_code(&s, 1), PROBE_EXIT_FAILED); /* cancel is not an interrupt */
    session_cancel_reset(&s);
    CHECK(!session_cancelled(&s));
    CHECK_EQ_STR(session_cancel_reason(&s), "");
    session_free(&s);
}

#define N_SINK 5000

static void test_sink(void)
{
    struct probe_opts po;
    struct session s;
    session_for(&s, &po, "sink");
    char err[256] = "", path[1200];
    /* a stale file is truncated */
    session_path(&s, "req.jsonl", path, sizeof path);
    CHECK(file_write_all(path, "old line\n", 9) == 0);
    struct record_sink *k = session_sink_open(&s, "req.jsonl", err, sizeof err);
    CHECK_MSG(k != NULL, "%s", err);
    if (!k)
        return;
    for (uint64_t i = 0; i < N_SINK; i++) {
        struct request_record r;
        record_init(&r);
        r.id = i;
        snprintf(r.tag, sizeof r.tag, "t%llu", (unsigned long long)i);
        r.t_sent_ns = 1000;
        r.t_first_token_ns = 2000;
        r.t_done_ns = 5000;
        r.n_content_events = 3;
        r.t_content_ns = xmalloc(3 * sizeof *r.t_content_ns);
        r.t_content_ns[0] = 2000, r.t_content_ns[1] = 3000, r.t_content_ns[2] = 5000;
        CHECK(record_sink_push(k, &r) == 0);
        record_free(&r); /* the sink copied it */
    }
    CHECK(record_sink_n_written(k) <= N_SINK);
    record_sink_close(k); /* drains */
    size_t len = 0;
    char *text = file_read_all(path, 64u << 20, &len);
    CHECK(text != NULL);
    if (!text)
        return;
    size_t n_lines = 0, n_bad = 0, n_out_of_order = 0;
    char *line = text;
    while (line < text + len) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl)
            break;
        struct json *j = json_parse(line, (size_t)(nl - line), err, sizeof err);
        long long id = -1;
        if (!j || json_int(json_get(j, "id"), &id) != 0)
            n_bad++;
        else if (id != (long long)n_lines)
            n_out_of_order++;
        json_free(j);
        n_lines++;
        line = nl + 1;
    }
    CHECK_EQ_INT(n_lines, N_SINK);
    CHECK_EQ_INT(n_bad, 0);
    CHECK_EQ_INT(n_out_of_order, 0);
    CHECK(strstr(text, "old line") == NULL);
    CHECK(strstr(text, "\"itl_ms\"") != NULL);
    free(text);
    record_sink_close(NULL);
    session_free(&s);
}

int main(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/slmprobe-test-session-XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_init);
    TEST_RUN(test_cancel_and_exit_codes);
    TEST_RUN(test_sink);
    return TEST_DONE();
}
