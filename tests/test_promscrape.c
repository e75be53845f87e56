/* test_promscrape: Prometheus text parsing (fixtures for vLLM new and deprecated names, llama.cpp,
 * SGLang; escapes, timestamps, +Inf/NaN, CRLF, errors), histogram quantiles against hand-computed
 * values, deltas between scrapes, the server view, and prom_fetch over a real loopback socket
 * (200 and llama.cpp's 501 without --metrics). */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/promscrape.h"
#include "test.h"
#include "util/buf.h"

#define DATA "tests/data/"

static int load(const char *name, struct prom_set *s)
{
    char path[256], err[256];
    size_t len;
    snprintf(path, sizeof path, DATA "%s", name);
    char *text = file_read_all(path, 1 << 20, &len);
    CHECK_MSG(text != NULL, "%s", path);
    if (!text)
        return -1;
    enum prom_status st = prom_parse(text, len, s, err, sizeof err);
    free(text);
    CHECK_MSG(st == PROM_OK, "%s: %s", name, err);
    return st == PROM_OK ? 0 : -1;
}

static void test_vllm(void)
{
    struct prom_set s;
    if (load("vllm_metrics.prom", &s) != 0)
        return;
    double v;
    CHECK_EQ_INT(prom_sum(&s, "vllm:prompt_tokens_total", NULL, &v), 1);
    CHECK_NEAR(v, 184320, 0);
    CHECK_EQ_INT(prom_sum(&s, "vllm:request_success_total", NULL, &v), 3);
    CHECK_NEAR(v, 100, 0);
    const char *length_only[] = {"finished_reason=length", NULL};
    CHECK_EQ_INT(prom_sum(&s, "vllm:request_success_total", length_only, &v), 1);
    CHECK_NEAR(v, 88, 0);
    const char *nobody[] = {"finished_reason=length", "engine=7", NULL};
    CHECK_EQ_INT(prom_sum(&s, "vllm:request_success_total", nobody, &v), 0);
    CHECK_EQ_INT(prom_sum(&s, "process_resident_memory_bytes", NULL, &v), 1);
    CHECK_NEAR(v, 3.2145408e9, 1);

    /* cache_config_info labels read the effective config */
    int found = 0;
    for (size_t i = 0; i < s.n_samples; i++)
        if (!strcmp(s.samples[i].name, "vllm:cache_config_info")) {
            found = 1;
            CHECK_EQ_STR(prom_label_get(&s.samples[i], "enable_prefix_caching"), "True");
            CHECK_EQ_STR(prom_label_get(&s.samples[i], "kv_cache_size_tokens"), "447088");
            CHECK(prom_label_get(&s.samples[i], "nope") == NULL);
            CHECK_EQ_INT(s.samples[i].type, PROM_TYPE_GAUGE);
        } else if (!strcmp(s.samples[i].name, "vllm:time_to_first_token_seconds_bucket")) {
            CHECK_EQ_INT(s.samples[i].type, PROM_TYPE_HISTOGRAM);
        } else if (!strcmp(s.samples[i].name, "vllm:prompt_tokens_total")) {
            CHECK_EQ_INT(s.samples[i].type, PROM_TYPE_COUNTER);
        }
    CHECK(found);

    struct server_metrics m;
    server_metrics_from_prom(&s, &m);
    CHECK_EQ_INT(m.source, SERVER_METRICS_SOURCE_VLLM);
    CHECK_EQ_STR(server_metrics_source_str(m.source), "vllm");
    CHECK(m.has_running && m.running == 7);
    CHECK(m.has_waiting && m.waiting == 2);
    CHECK(m.has_kv_usage);
    CHECK_NEAR(m.kv_usage, 0.4215, 1e-12);
    CHECK(m.has_prompt_tokens && m.prompt_tokens == 184320);
    CHECK(m.has_generation_tokens && m.generation_tokens == 51200);
    CHECK(m.has_prefix_queries && m.prefix_queries == 184320);
    CHECK(m.has_prefix_hits && m.prefix_hits == 122880);
    CHECK(m.has_cached_tokens && m.cached_tokens == 122880);
    CHECK(m.has_preemptions && m.preemptions == 3);
    CHECK(m.has_requests_success && m.requests_success == 100);
    CHECK(!m.has_prefix_hit_rate);

    struct prom_histogram h;
    CHECK_EQ_INT(prom_histogram_get(&s, "vllm:time_to_first_token_seconds", NULL, &h), 0);
    CHECK_EQ_INT(h.n_buckets, 11);
    CHECK(isinf(h.le[10]));
    CHECK_NEAR(h.count, 100, 0);
    CHECK_NEAR(prom_histogram_mean(&h), 0.095, 1e-12);
    CHECK_NEAR(prom_histogram_quantile(&h, 0.5), 0.06, 1e-12);
    CHECK_NEAR(prom_histogram_quantile(&h, 0.9), 0.1, 1e-12);
    CHECK_NEAR(prom_histogram_quantile(&h, 0.95), 0.1 + 0.15 * 5.0 / 9.0, 1e-12);
    CHECK_NEAR(prom_histogram_quantile(&h, 0.995), 0.375, 1e-12);
    CHECK_NEAR(prom_histogram_quantile(&h, 0.05), 0.015, 1e-12);
    CHECK(isnan(prom_histogram_quantile(&h, 1.5)));
    prom_histogram_free(&h);

    CHECK_EQ_INT(prom_histogram_get(&s, "vllm:e2e_request_latency_seconds", NULL, &h), 0);
    CHECK_NEAR(prom_histogram_quantile(&h, 0.99), 5.0, 0); /* in +Inf: highest finite bound */
    prom_histogram_free(&h);
    CHECK_EQ_INT(prom_histogram_get(&s, "vllm:nope", NULL, &h), -1);
    CHECK(isnan(prom_histogram_quantile(&h, 0.5)));
    CHECK(isnan(prom_histogram_mean(&h)));
    prom_histogram_free(&h);
    prom_set_free(&s);
    prom_set_free(&s); /* idempotent */
}

static void test_vllm_deprecated_names(void)
{
    struct prom_set s;
    if (load("vllm_old_metrics.prom", &s) != 0)
        return;
    struct server_metrics m;
    server_metrics_from_prom(&s, &m);
    CHECK_EQ_INT(m.source, SERVER_METRICS_SOURCE_VLLM);
    CHECK(m.has_kv_usage);
    CHECK_NEAR(m.kv_usage, 0.125, 0);
    CHECK(m.has_prefix_queries && m.prefix_queries == 4096);
    CHECK(m.has_prefix_hits && m.prefix_hits == 1024);
    CHECK(m.has_cached_tokens && m.cached_tokens == 1024);
    CHECK(m.has_prompt_tokens && m.prompt_tokens == 4096); /* _created not summed in */
    CHECK(!m.has_requests_success);
    prom_set_free(&s);
}

static void test_llamacpp(void)
{
    struct prom_set s;
    if (load("llamacpp_metrics.prom", &s) != 0)
        return;
    CHECK_EQ_INT(s.n_samples, 12);
    struct server_metrics m;
    server_metrics_from_prom(&s, &m);
    CHECK_EQ_INT(m.source, SERVER_METRICS_SOURCE_LLAMACPP);
    CHECK(m.has_running && m.running == 2);
    CHECK(m.has_waiting && m.waiting == 1);
    CHECK(!m.has_kv_usage); /* removed from llama.cpp: not reported as 0 */
    CHECK(m.has_prompt_tokens && m.prompt_tokens == 3605);
    CHECK(m.has_generation_tokens && m.generation_tokens == 640);
    CHECK(m.has_cached_tokens && m.cached_tokens == 1800);
    CHECK(!m.has_prefix_queries && !m.has_prefix_hits && !m.has_preemptions);
    prom_set_free(&s);
}

static void test_sglang(void)
{
    struct prom_set s;
    if (load("sglang_metrics.prom", &s) != 0)
        return;
    struct server_metrics m;
    server_metrics_from_prom(&s, &m);
    CHECK_EQ_INT(m.source, SERVER_METRICS_SOURCE_SGLANG);
    CHECK(m.has_running && m.running == 5);
    CHECK(m.has_waiting && m.waiting == 0);
    CHECK(m.has_kv_usage && m.kv_usage == 0.01);
    CHECK(m.has_prompt_tokens && m.prompt_tokens == 81920);
    CHECK(m.has_cached_tokens && m.cached_tokens == 50790);
    CHECK(m.has_prefix_hit_rate);
    CHECK_NEAR(m.prefix_hit_rate, 0.62, 1e-12);
    struct prom_histogram h;
    CHECK_EQ_INT(prom_histogram_get(&s, "sglang:time_to_first_token_seconds", NULL, &h), 0);
    CHECK_NEAR(prom_histogram_quantile(&h, 0.75), 0.15, 1e-12);
    prom_histogram_free(&h);
    prom_set_free(&s);
}

static void test_syntax(void)
{
    const char *txt =
        "# a comment\r\n"
        "\n"
        "   # TYPE odd:name_x untyped\n"
        "odd:name_x{path=\"C:\\\\dir\",msg=\"say \\\"hi\\\"\\nbye\",} 1.5e3 1700000000123\r\n"
        "no_labels +Inf\n"
        "neg_inf -Inf\n"
        "not_a_number NaN\n"
        "spaced { a = \"1\" , b=\"2\" }  -0.25\n"
        "empty_labels{} 4\n"
        "# HELP x anything { goes \" here\n";
    struct prom_set s;
    char err[256];
    CHECK_EQ_INT(prom_parse(txt, strlen(txt), &s, err, sizeof err), PROM_OK);
    CHECK_EQ_INT(s.n_samples, 6);
    if (s.n_samples == 6) {
        CHECK_EQ_STR(s.samples[0].name, "odd:name_x");
        CHECK_EQ_STR(prom_label_get(&s.samples[0], "path"), "C:\\dir");
        CHECK_EQ_STR(prom_label_get(&s.samples[0], "msg"), "say \"hi\"\nbye");
        CHECK_NEAR(s.samples[0].value, 1500, 0);
        CHECK(s.samples[0].has_timestamp && s.samples[0].timestamp_ms == 1700000000123LL);
        CHECK(isinf(s.samples[1].value) && s.samples[1].value > 0 && !s.samples[1].has_timestamp);
        CHECK(isinf(s.samples[2].value) && s.samples[2].value < 0);
        CHECK(isnan(s.samples[3].value));
        CHECK_EQ_STR(s.samples[4].name, "spaced");
        CHECK_EQ_STR(prom_label_get(&s.samples[4], "b"), "2");
        CHECK_NEAR(s.samples[4].value, -0.25, 0);
        CHECK_EQ_INT(s.samples[5].n_labels, 0);
        const char *m[] = {"a=1", "b=2", NULL};
        CHECK(prom_sample_matches(&s.samples[4], m));
    }
    prom_set_free(&s);

    static const char *const bad[] = {
        "x{a=\"1\" 2\n",        /* unterminated label set */
        "x{a=\"1} 2\n",         /* unterminated value */
        "x{a=1} 2\n",           /* unquoted value */
        "x 12abc\n",            /* bad value */
        "x 1 2 3\n",            /* trailing text */
        "x\n",                  /* no value */
        "9x 1\n",               /* bad name */
        "x{a=\"\\q\"} 1\n",     /* bad escape */
        "ok 1\nx{9=\"1\"} 1\n", /* bad label name on line 2 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(prom_parse(bad[i], strlen(bad[i]), &s, err, sizeof err) == PROM_ERR_SYNTAX,
                  "accepted: %s", bad[i]);
        CHECK(s.n_samples == 0 && s.samples == NULL);
        prom_set_free(&s);
    }
    CHECK(prom_parse(bad[8], strlen(bad[8]), &s, err, sizeof err) == PROM_ERR_SYNTAX);
    CHECK_MSG(strncmp(err, "line 2:", 7) == 0, "%s", err);
    prom_set_free(&s);
    const char nul[] = "x 1\ny\0 2\n";
    CHECK(prom_parse(nul, sizeof nul - 1, &s, err, sizeof err) == PROM_ERR_SYNTAX);
    prom_set_free(&s);
    CHECK_EQ_INT(prom_parse("", 0, &s, err, sizeof err), PROM_OK);
    CHECK_EQ_INT(s.n_samples, 0);
    prom_set_free(&s);
}

static void test_delta(void)
{
    const char *a = "# TYPE h histogram\n"
                    "h_bucket{le=\"1\",e=\"0\"} 1\nh_bucket{le=\"2\",e=\"0\"} 2\n"
                    "h_bucket{le=\"+Inf\",e=\"0\"} 2\nh_sum{e=\"0\"} 2.5\nh_count{e=\"0\"} 2\n"
                    "h_bucket{le=\"1\",e=\"1\"} 0\nh_bucket{le=\"2\",e=\"1\"} 0\n"
                    "h_bucket{le=\"+Inf\",e=\"1\"} 1\nh_sum{e=\"1\"} 7\nh_count{e=\"1\"} 1\n"
                    "vllm:prompt_tokens_total 100\nvllm:num_requests_running 3\n";
    const char *b = "# TYPE h histogram\n"
                    "h_bucket{le=\"1\",e=\"0\"} 1\nh_bucket{le=\"2\",e=\"0\"} 12\n"
                    "h_bucket{le=\"+Inf\",e=\"0\"} 12\nh_sum{e=\"0\"} 17.5\nh_count{e=\"0\"} 12\n"
                    "h_bucket{le=\"1\",e=\"1\"} 0\nh_bucket{le=\"2\",e=\"1\"} 0\n"
                    "h_bucket{le=\"+Inf\",e=\"1\"} 1\nh_sum{e=\"1\"} 7\nh_count{e=\"1\"} 1\n"
                    "vllm:prompt_tokens_total 160\nvllm:num_requests_running 1\n";
    struct prom_set sa, sb;
    char err[128];
    CHECK(prom_parse(a, strlen(a), &sa, err, sizeof err) == PROM_OK);
    CHECK(prom_parse(b, strlen(b), &sb, err, sizeof err) == PROM_OK);
    struct prom_histogram ha, hb, hd, h1;
    CHECK(prom_histogram_get(&sa, "h", NULL, &ha) == 0);
    CHECK(prom_histogram_get(&sb, "h", NULL, &hb) == 0);
    CHECK_NEAR(ha.count, 3, 0); /* two series summed */
    CHECK_NEAR(ha.count_le[2], 3, 0);
    CHECK(prom_histogram_sub(&hb, &ha, &hd) == 0);
    CHECK_NEAR(hd.count, 10, 0);
    CHECK_NEAR(prom_histogram_mean(&hd), 1.5, 1e-12);
    CHECK_NEAR(prom_histogram_quantile(&hd, 0.5), 1.5, 1e-12); /* all 10 in (1,2] */
    const char *e1[] = {"e=1", NULL};
    CHECK(prom_histogram_get(&sa, "h", e1, &h1) == 0);
    prom_histogram_free(&hd);
    CHECK_NEAR(prom_histogram_quantile(&h1, 0.5), 2, 0);
    const char *x1 = "h_bucket{le=\"5\"} 1\nh_bucket{le=\"+Inf\"} 1\n";
    struct prom_set sx;
    struct prom_histogram hx;
    CHECK(prom_parse(x1, strlen(x1), &sx, err, sizeof err) == PROM_OK);
    CHECK(prom_histogram_get(&sx, "h", NULL, &hx) == 0);
    CHECK(prom_histogram_sub(&hb, &hx, &hd) == -1); /* different bounds */
    prom_histogram_free(&hd);
    prom_histogram_free(&hx);
    prom_set_free(&sx);
    prom_histogram_free(&ha);
    prom_histogram_free(&hb);
    prom_histogram_free(&h1);

    struct server_metrics m0, m1, d;
    server_metrics_from_prom(&sa, &m0);
    server_metrics_from_prom(&sb, &m1);
    server_metrics_delta(&m0, &m1, &d);
    CHECK(d.has_prompt_tokens && d.prompt_tokens == 60);
    CHECK(d.has_running && d.running == 1);
    CHECK(!d.has_generation_tokens);
    prom_set_free(&sa);
    prom_set_free(&sb);
}

/* ---- a one-shot loopback HTTP responder ---- */

struct responder {
    int fd;
    const char *status_line;
    const char *body;
};

static void *responder_run(void *arg)
{
    struct responder *r = arg;
    int c = accept(r->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    char req[4096];
    size_t got = 0;
    while (got < sizeof req - 1) {
        ssize_t n = read(c, req + got, sizeof req - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        req[got] = 0;
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    char head[256];
    int hn = snprintf(head, sizeof head,
                      "%s\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      r->status_line, strlen(r->body));
    if (write(c, head, (size_t)hn) < 0 || write(c, r->body, strlen(r->body)) < 0)
        perror("write");
    close(c);
    return NULL;
}

static int listen_any(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_fetch(void)
{
    size_t len;
    char *body = file_read_all(DATA "llamacpp_metrics.prom", 1 << 20, &len);
    CHECK(body != NULL);
    int port;
    int fd = listen_any(&port);
    CHECK(fd >= 0);
    if (fd < 0 || !body) {
        free(body);
        return;
    }
    struct responder r = {fd, "HTTP/1.1 200 OK", body};
    pthread_t th;
    pthread_create(&th, NULL, responder_run, &r);
    char url[128], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", port);
    struct prom_set s;
    int status = -1;
    enum prom_status st = prom_fetch(url, NULL, 5000, &s, &status, err, sizeof err);
    pthread_join(th, NULL);
    CHECK_MSG(st == PROM_OK, "%s", err);
    CHECK_EQ_INT(status, 200);
    CHECK_EQ_INT(s.n_samples, 12);
    prom_set_free(&s);

    struct responder r2 = {fd, "HTTP/1.1 501 Not Implemented",
                           "{\"error\":{\"code\":501,\"message\":\"This server does not support "
                           "metrics endpoint. Start it with `--metrics`\",\"type\":"
                           "\"not_supported_error\"}}"};
    pthread_create(&th, NULL, responder_run, &r2);
    st = prom_fetch(url, NULL, 5000, &s, &status, err, sizeof err);
    pthread_join(th, NULL);
    CHECK_EQ_INT(st, PROM_ERR_HTTP);
    CHECK_EQ_INT(status, 501);
    CHECK_MSG(strstr(err, "--metrics") != NULL, "%s", err);
    prom_set_free(&s);
    close(fd);

    /* nobody listening */
    st = prom_fetch(url, NULL, 2000, &s, &status, err, sizeof err);
    CHECK_EQ_INT(st, PROM_ERR_CONNECT);
    CHECK_EQ_INT(status, 0);
    prom_set_free(&s);
    free(body);
}

int main(void)
{
    TEST_RUN(test_vllm);
    TEST_RUN(test_vllm_deprecated_names);
    TEST_RUN(test_llamacpp);
    TEST_RUN(test_sglang);
    TEST_RUN(test_syntax);
    TEST_RUN(test_delta);
    TEST_RUN(test_fetch);
    return TEST_DONE();
}
