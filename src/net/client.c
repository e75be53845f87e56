/* client: libcurl multi driver for streaming completions, the only file that includes
 * <curl/curl.h>. One struct xfer per in-flight request, taken from a pool that keeps its easy
 * handle, SSE parser and buffers between requests; the multi handle keeps connections alive.
 * Timestamps are taken with clock_now_ns() inside curl's header and write callbacks, so they are
 * the moment this thread read the bytes from the socket (see docs/client.md). No pacing, no
 * aggregation.
 *
 * Retries (docs/client.md, "Dead kept-alive connections"): a request is sent again only when the
 * connection it went out on was a kept-alive one and died before a single response byte came
 * back. libcurl itself does that up to 5 times (its own rule, which 7.88 cannot turn off); each
 * attempt shows up here as a CURLOPT_PREREQFUNCTION call, so they are counted. When curl gives up
 * (or does not retry, e.g. a send error while the body is still going out), the client re-adds
 * the handle once with CURLOPT_FRESH_CONNECT. Nothing is retried after a response byte arrived, or
 * after a failure on a fresh connection. libcurl (7.72 on, 7.88 included) never resets its
 * per-handle retry counter between transfers (only curl_easy_reset does; curl/curl#19066), so a
 * pooled handle that saw curl retry is reset before its next request: otherwise every sixth dead
 * connection in its life fails at once with "Connection died, tried 5 times before giving up". */
#include "net/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "net/chunk_scan.h"
#include "net/sse.h"
#include "util/json.h"

#define CLIENT_SSE_CAP_BYTES (4u << 20)       /* one SSE line / event */
#define CLIENT_ERR_BODY_CAP_BYTES (64u << 10) /* error bodies kept for the message */
#define CLIENT_BODY_CAP_BYTES (256u << 20)    /* request JSON (prompt included) */
#define CLIENT_MAX_IDLE_CONNECTIONS 4096      /* kept-alive pool when max_connections is 0 */

struct xfer {
    struct client *c;
    CURL *easy;
    struct xfer *next, *prev; /* active list, or free list (next only) */
    struct request_record rec;
    uint32_t content_cap;   /* hard cap on rec.t_content_ns entries */
    uint32_t content_alloc; /* entries allocated */
    struct sse_parser sse;
    struct buf body;     /* request JSON, alive until the transfer ends */
    struct buf err_body; /* non-2xx response body (capped; the rest is discarded) */
    mono_ns t_chunk_ns;  /* receive time of the chunk being parsed */
    int saw_done;        /* "data: [DONE]" seen */
    int stream_ok;       /* 2xx: body is SSE */
    int headers_done;
    uint64_t n_rx_bytes;         /* response bytes (header lines and body) of this curl transfer */
    unsigned n_attempts;         /* CURLOPT_PREREQFUNCTION calls in this curl transfer */
    long n_connects_seen;        /* CURLINFO_NUM_CONNECTS at the latest attempt */
    int attempt_reused;          /* the latest attempt went out on a kept-alive connection */
    int fresh_retry;             /* this curl transfer is the client's own retry (FRESH_CONNECT) */
    int accounted;               /* this curl transfer's connects and resends are counted */
    int needs_reset;             /* curl_easy_reset before the next request (see the top) */
    char retry_cause[160];       /* why the client retried (curl's message), for error_msg */
    enum req_error stream_error; /* first error found in the stream (protocol) */
    char stream_error_msg[256];
    long long timings_prompt_n;
    int have_cache_n;
    char curl_err[CURL_ERROR_SIZE];
};

struct client {
    CURLM *multi;
    char *url; /* full endpoint URL */
    char *base_url;
    char *api_key;
    char *model;
    enum client_api api;
    long timeout_ms;
    struct curl_slist *headers;
    client_done_cb cb;
    void *ud;
    struct xfer *active;
    struct xfer *free_list;
    int n_in_flight;
    long n_connects;
    int closing;      /* client_free running: submits are refused */
    int epfd;         /* curl's sockets, registered by client_socket_cb */
    mono_ns timer_ns; /* when curl wants CURL_SOCKET_TIMEOUT; 0 = no timer */
};

static pthread_once_t client_curl_once = PTHREAD_ONCE_INIT;
static void client_curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

const char *client_api_str(enum client_api api)
{
    return api == CLIENT_API_CHAT ? "chat" : "completions";
}

static void client_copy_str(char *dst, size_t dst_len, const char *src, size_t n)
{
    if (!dst_len)
        return;
    if (n >= dst_len)
        n = dst_len - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

void client_error_message(const char *body, size_t len, char *out, size_t out_len)
{
    if (!out_len)
        return;
    out[0] = 0;
    if (!body || !len)
        return;
    char jerr[64];
    struct json *root = json_parse(body, len, jerr, sizeof jerr);
    const char *msg = NULL;
    size_t msg_len = 0;
    if (root) {
        const struct json *e = json_get(root, "error");
        if (json_type_of(e) == JSON_TYPE_OBJECT)
            msg = json_str(json_get(e, "message"), &msg_len); /* vLLM new, llama.cpp */
        else if (json_type_of(e) == JSON_TYPE_STRING)
            msg = json_str(e, &msg_len);
        if (!msg)
            msg = json_str(json_get(root, "message"), &msg_len); /* vLLM old, SGLang */
        if (!msg)
            msg = json_str(json_get(root, "detail"), &msg_len); /* FastAPI */
    }
    if (msg) {
        client_copy_str(out, out_len, msg, msg_len);
    } else {
        /* Not a known shape: the body's first bytes, control characters flattened. */
        size_t n = len < out_len - 1 ? len : out_len - 1;
        for (size_t i = 0; i < n; i++)
            out[i] = (unsigned char)body[i] < 0x20 ? ' ' : body[i];
        out[n] = 0;
    }
    json_free(root);
}

/* ---- blocking helpers ---- */

struct client_sink {
    struct buf *b;
    int overflow;
};

static size_t client_sink_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct client_sink *s = ud;
    size_t n = size * nmemb;
    /* Keep what fits under the caller's cap; read and drop the rest. */
    if (s->b && !s->overflow) {
        size_t room = s->b->cap_bytes > s->b->len ? s->b->cap_bytes - s->b->len : 0;
        if (n > room)
            s->overflow = 1;
        buf_append(s->b, ptr, n < room ? n : room);
    }
    return n;
}

static int client_http_blocking(const char *url, const char *api_key, const char *json,
                                long timeout_ms, struct buf *body_out, int *status_out, char *err,
                                size_t err_len)
{
    pthread_once(&client_curl_once, client_curl_init);
    if (status_out)
        *status_out = 0;
    if (err_len)
        err[0] = 0;
    CURL *e = curl_easy_init();
    if (!e) {
        snprintf(err, err_len, "curl_easy_init failed");
        return -1;
    }
    struct curl_slist *h = NULL;
    char auth[512];
    if (api_key && api_key[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", api_key);
        h = curl_slist_append(h, auth);
    }
    if (json) {
        h = curl_slist_append(h, "Content-Type: application/json");
        h = curl_slist_append(h, "Expect:");
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, json);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(json));
    }
    char cerr[CURL_ERROR_SIZE] = "";
    struct client_sink sink = {body_out, 0};
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : 0L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, client_sink_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, cerr);
    CURLcode rc = curl_easy_perform(e);
    int ret = 0;
    if (rc != CURLE_OK) {
        snprintf(err, err_len, "%s: %s",
                 rc == CURLE_OPERATION_TIMEDOUT ? "timeout"
                 : rc == CURLE_COULDNT_CONNECT  ? "connection refused"
                                                : "error",
                 cerr[0] ? cerr : curl_easy_strerror(rc));
        ret = -1;
    } else if (status_out) {
        long code = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        *status_out = (int)code;
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return ret;
}

int http_get(const char *url, const char *api_key, long timeout_ms, struct buf *body_out,
             int *status_out, char *err, size_t err_len)
{
    return client_http_blocking(url, api_key, NULL, timeout_ms, body_out, status_out, err, err_len);
}

int http_post_json(const char *url, const char *api_key, const char *json, long timeout_ms,
                   struct buf *body_out, int *status_out, char *err, size_t err_len)
{
    return client_http_blocking(url, api_key, json ? json : "{}", timeout_ms, body_out, status_out,
                                err, err_len);
}

/* ---- streaming ---- */

static void xfer_set_stream_error(struct xfer *x, enum req_error e, const char *msg, size_t n)
{
    if (x->stream_error != REQ_ERROR_NONE)
        return; /* the first error is the cause; later ones are consequences */
    x->stream_error = e;
    client_copy_str(x->stream_error_msg, sizeof x->stream_error_msg, msg, n);
}

static void xfer_content(struct xfer *x, size_t text_len)
{
    struct request_record *r = &x->rec;
    if (!r->t_first_token_ns)
        r->t_first_token_ns = x->t_chunk_ns;
    r->n_text_bytes += text_len;
    if (r->n_content_events >= x->content_cap) {
        r->n_content_dropped++;
        return;
    }
    if (r->n_content_events >= x->content_alloc) {
        uint32_t n = x->content_alloc * 2;
        if (n > x->content_cap)
            n = x->content_cap;
        mono_ns *t = xmalloc((size_t)n * sizeof *t);
        memcpy(t, r->t_content_ns, (size_t)r->n_content_events * sizeof *t);
        free(r->t_content_ns);
        r->t_content_ns = t;
        x->content_alloc = n;
    }
    r->t_content_ns[r->n_content_events++] = x->t_chunk_ns;
}

static void xfer_error_object(struct xfer *x, const struct json *e)
{
    size_t n = 0;
    const char *msg = NULL;
    if (json_type_of(e) == JSON_TYPE_OBJECT)
        msg = json_str(json_get(e, "message"), &n);
    else if (json_type_of(e) == JSON_TYPE_STRING)
        msg = json_str(e, &n);
    char text[256];
    snprintf(text, sizeof text, "stream error: %.*s", (int)(msg ? n : 7), msg ? msg : "unknown");
    xfer_set_stream_error(x, REQ_ERROR_PROTOCOL, text, strlen(text));
}

static void xfer_on_event(void *ud, const struct sse_event *ev)
{
    struct xfer *x = ud;
    struct request_record *r = &x->rec;
    if (!r->t_first_event_ns)
        r->t_first_event_ns = x->t_chunk_ns;
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
        x->saw_done = 1;
        return;
    }
    r->n_events++;
    if (ev->event_len == 5 && memcmp(ev->event, "error", 5) == 0) {
        char text[256];
        snprintf(text, sizeof text, "stream error event: %.*s",
                 (int)(ev->data_len < 200 ? ev->data_len : 200), ev->data);
        xfer_set_stream_error(x, REQ_ERROR_PROTOCOL, text, strlen(text));
        return;
    }
    struct client_chunk_fast fast;
    if (client_chunk_scan(ev->data, ev->data_len, x->c->api, &fast)) {
        if (fast.text_bytes > 0)
            xfer_content(x, fast.text_bytes);
        if (fast.finish_reason[0])
            memcpy(r->finish_reason, fast.finish_reason, sizeof r->finish_reason);
        return;
    }
    char jerr[96];
    struct json *root = json_parse(ev->data, ev->data_len, jerr, sizeof jerr);
    if (!root || json_type_of(root) != JSON_TYPE_OBJECT) {
        char text[160];
        snprintf(text, sizeof text, "malformed SSE data: %s", root ? "not an object" : jerr);
        xfer_set_stream_error(x, REQ_ERROR_PROTOCOL, text, strlen(text));
        json_free(root);
        return;
    }
    const struct json *err = json_get(root, "error");
    if (err && json_type_of(err) != JSON_TYPE_NULL) {
        xfer_error_object(x, err);
        json_free(root);
        return;
    }
    const struct json *ch = json_at(json_get(root, "choices"), 0);
    if (ch) {
        size_t n = 0;
        const char *text = x->c->api == CLIENT_API_CHAT
                               ? json_str(json_get(json_get(ch, "delta"), "content"), &n)
                               : json_str(json_get(ch, "text"), &n);
        if (text && n > 0)
            xfer_content(x, n);
        const char *fin = json_str(json_get(ch, "finish_reason"), &n);
        if (fin && n > 0)
            client_copy_str(r->finish_reason, sizeof r->finish_reason, fin, n);
    }
    const struct json *usage = json_get(root, "usage");
    if (json_type_of(usage) == JSON_TYPE_OBJECT) {
        long long v;
        if (json_int(json_get(usage, "prompt_tokens"), &v) == 0 && v >= 0 && v <= INT32_MAX)
            r->n_prompt_tokens = (int)v;
        if (json_int(json_get(usage, "completion_tokens"), &v) == 0 && v >= 0 && v <= INT32_MAX)
            r->n_completion_tokens = (int)v;
        const struct json *det = json_get(usage, "prompt_tokens_details");
        if (json_int(json_get(det, "cached_tokens"), &v) == 0 && v >= 0 && v <= INT32_MAX &&
            !x->have_cache_n)
            r->n_cached_tokens = (int)v;
        else if (json_type_of(det) == JSON_TYPE_OBJECT && r->n_cached_tokens < 0)
            r->n_cached_tokens = 0; /* details present without cached_tokens: none cached */
    }
    const struct json *tm = json_get(root, "timings"); /* llama.cpp */
    if (json_type_of(tm) == JSON_TYPE_OBJECT) {
        long long v;
        if (json_int(json_get(tm, "cache_n"), &v) == 0 && v >= 0 && v <= INT32_MAX) {
            r->n_cached_tokens = (int)v;
            x->have_cache_n = 1;
        } else if (json_int(json_get(tm, "prompt_n"), &v) == 0 && v >= 0) {
            x->timings_prompt_n = v;
        }
    }
    json_free(root);
}

static void xfer_on_unknown_field(void *ud, const char *field, size_t field_len, const char *value,
                                  size_t value_len)
{
    struct xfer *x = ud;
    if (field_len == 5 && memcmp(field, "error", 5) == 0) {
        /* Old llama.cpp: "error: {json}" line. */
        char jerr[64];
        struct json *root = json_parse(value, value_len, jerr, sizeof jerr);
        const struct json *e = root ? json_get(root, "error") : NULL;
        if (e) {
            xfer_error_object(x, e);
        } else if (root) {
            xfer_error_object(x, root);
        } else {
            char text[256];
            snprintf(text, sizeof text, "stream error: %.*s",
                     (int)(value_len < 200 ? value_len : 200), value);
            xfer_set_stream_error(x, REQ_ERROR_PROTOCOL, text, strlen(text));
        }
        json_free(root);
    }
}

static size_t xfer_header_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    x->n_rx_bytes += n;
    /* The blank line ends a header block; a 1xx block is followed by the real one. */
    if ((n == 2 && ptr[0] == '\r' && ptr[1] == '\n') || (n == 1 && ptr[0] == '\n')) {
        long code = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200) {
            x->rec.t_headers_ns = clock_now_ns();
            x->rec.http_status = (int)code;
            x->headers_done = 1;
            x->stream_ok = code >= 200 && code < 300;
        }
    }
    return n;
}

static size_t xfer_write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct xfer *x = ud;
    size_t n = size * nmemb;
    x->t_chunk_ns = clock_now_ns();
    x->n_rx_bytes += n;
    if (!x->headers_done) {
        /* Body without a header block we saw (HTTP/0.9-like): treat by status now. */
        long code = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
        x->rec.http_status = (int)code;
        x->rec.t_headers_ns = x->t_chunk_ns;
        x->headers_done = 1;
        x->stream_ok = code >= 200 && code < 300;
    }
    if (!x->stream_ok) {
        if (x->err_body.len < CLIENT_ERR_BODY_CAP_BYTES) {
            size_t room = CLIENT_ERR_BODY_CAP_BYTES - x->err_body.len;
            buf_append(&x->err_body, ptr, n < room ? n : room);
        }
        return n;
    }
    enum sse_status st = sse_feed(&x->sse, ptr, n, xfer_on_event, x);
    if (st != SSE_STATUS_OK) {
        char text[96];
        snprintf(text, sizeof text, "SSE: %s (cap %u bytes)", sse_status_str(st),
                 CLIENT_SSE_CAP_BYTES);
        xfer_set_stream_error(x, REQ_ERROR_PROTOCOL, text, strlen(text));
        return 0; /* abort this transfer: CURLE_WRITE_ERROR */
    }
    return n;
}

static void xfer_setopts(struct xfer *x);

static struct xfer *xfer_new(struct client *c)
{
    struct xfer *x = xcalloc(1, sizeof *x);
    x->c = c;
    x->easy = curl_easy_init();
    if (!x->easy) {
        free(x);
        return NULL;
    }
    sse_init(&x->sse, CLIENT_SSE_CAP_BYTES);
    x->sse.on_unknown_field = xfer_on_unknown_field;
    buf_init(&x->body, 1024, CLIENT_BODY_CAP_BYTES);
    buf_init(&x->err_body, 1024, CLIENT_ERR_BODY_CAP_BYTES);
    xfer_setopts(x);
    return x;
}

#if LIBCURL_VERSION_NUM >= 0x075000 /* 7.80.0: CURLOPT_PREREQFUNCTION */
#define CLIENT_HAVE_PREREQ 1
/* Called by curl once per attempt, when the connection is ready and before the request goes
 * out: a second call within one transfer is curl re-sending it on another connection. */
static int xfer_prereq_cb(void *ud, char *conn_primary_ip, char *conn_local_ip,
                          int conn_primary_port, int conn_local_port)
{
    struct xfer *x = ud;
    (void)conn_primary_ip;
    (void)conn_local_ip;
    (void)conn_primary_port;
    (void)conn_local_port;
    long nconn = 0;
    curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &nconn);
    /* curl counts a connection when it creates one; none since the last look: a reused one. */
    x->attempt_reused = nconn == x->n_connects_seen;
    x->n_connects_seen = nconn;
    x->n_attempts++;
    return CURL_PREREQFUNC_OK;
}
#else
#define CLIENT_HAVE_PREREQ 0
#endif

/* Every option of a streaming handle; again after curl_easy_reset. */
static void xfer_setopts(struct xfer *x)
{
    struct client *c = x->c;
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms > 0 ? c->timeout_ms : 0L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, xfer_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, xfer_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->curl_err);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
#if CLIENT_HAVE_PREREQ
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, xfer_prereq_cb);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
#endif
}

static void xfer_destroy(struct xfer *x)
{
    if (!x)
        return;
    curl_easy_cleanup(x->easy);
    sse_free(&x->sse);
    buf_free(&x->body);
    buf_free(&x->err_body);
    record_free(&x->rec);
    free(x);
}

static enum buf_status client_body(struct client *c, const struct client_request *q, struct buf *b)
{
    enum buf_status st = BUF_OK;
    buf_reset(b);
    st |= buf_puts(b, "{\"model\":");
    st |= buf_json_str(b, c->model);
    if (c->api == CLIENT_API_CHAT) {
        st |= buf_puts(b, ",\"messages\":[{\"role\":\"user\",\"content\":");
        st |= buf_json_strn(b, q->prompt, q->prompt_len);
        st |= buf_puts(b, "}]");
    } else {
        st |= buf_puts(b, ",\"prompt\":");
        st |= buf_json_strn(b, q->prompt, q->prompt_len);
    }
    st |= buf_printf(b, ",\"max_tokens\":%d,\"temperature\":", q->max_tokens);
    st |= buf_json_double(b, q->temperature);
    st |= buf_printf(b,
                     ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"
                     ",\"ignore_eos\":%s",
                     q->ignore_eos ? "true" : "false");
    if (q->min_tokens > 0)
        st |= buf_printf(b, ",\"min_tokens\":%d", q->min_tokens);
    if (q->extra_json && q->extra_json[0]) {
        st |= buf_putc(b, ',');
        st |= buf_puts(b, q->extra_json);
    }
    st |= buf_putc(b, '}');
    return st ? BUF_ERR_CAP : BUF_OK;
}

static int client_fetch_model(struct client *c, char *err, size_t err_len)
{
    char url[2048];
    snprintf(url, sizeof url, "%s/v1/models", c->base_url);
    struct buf body;
    buf_init(&body, 4096, 4u << 20);
    int status = 0, ret = -1;
    char herr[256];
    struct json *root = NULL;
    if (http_get(url, c->api_key, c->timeout_ms > 0 ? c->timeout_ms : 30000, &body, &status, herr,
                 sizeof herr) != 0) {
        snprintf(err, err_len, "GET %s: %s", url, herr);
        goto fail;
    }
    if (status != 200) {
        char msg[256];
        client_error_message(body.data, body.len, msg, sizeof msg);
        snprintf(err, err_len, "GET %s: HTTP %d: %s", url, status, msg);
        goto fail;
    }
    char jerr[128];
    root = json_parse(body.data, body.len, jerr, sizeof jerr);
    size_t n = 0;
    const char *id = json_str(json_get(json_at(json_get(root, "data"), 0), "id"), &n);
    if (!id || n == 0) {
        snprintf(err, err_len, "GET %s: no data[0].id in the response", url);
        goto fail;
    }
    c->model = xstrndup(id, n);
    ret = 0;
fail:
    json_free(root);
    buf_free(&body);
    return ret;
}

static int client_socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct client *c = userp;
    (void)e;
    (void)socketp;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(c->epfd, EPOLL_CTL_DEL, fd, NULL); /* may already be gone: ignored */
        return 0;
    }
    struct epoll_event ev = {.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) |
                                       ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u),
                             .data.fd = fd};
    if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT)
        epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

static int client_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    struct client *c = userp;
    (void)m;
    if (timeout_ms < 0)
        c->timer_ns = 0;
    else
        c->timer_ns = clock_now_ns() + (uint64_t)timeout_ms * 1000000u + 1;
    return 0;
}

struct client *client_new(const struct client_config *cfg, client_done_cb cb, void *ud, char *err,
                          size_t err_len)
{
    pthread_once(&client_curl_once, client_curl_init);
    if (!cfg || !cfg->base_url || !cfg->base_url[0]) {
        snprintf(err, err_len, "client: no base_url");
        return NULL;
    }
    struct client *c = xcalloc(1, sizeof *c);
    c->epfd = -1;
    size_t bl = strlen(cfg->base_url);
    while (bl > 0 && cfg->base_url[bl - 1] == '/')
        bl--;
    c->base_url = xstrndup(cfg->base_url, bl);
    c->api_key = cfg->api_key ? xstrdup(cfg->api_key) : NULL;
    c->api = cfg->api;
    c->timeout_ms = cfg->timeout_ms;
    c->cb = cb;
    c->ud = ud;
    size_t ul = bl + 32;
    c->url = xmalloc(ul);
    snprintf(c->url, ul, "%s%s", c->base_url,
             c->api == CLIENT_API_CHAT ? "/v1/chat/completions" : "/v1/completions");
    c->headers = curl_slist_append(c->headers, "Content-Type: application/json");
    c->headers = curl_slist_append(c->headers, "Accept: text/event-stream");
    c->headers = curl_slist_append(c->headers, "Expect:"); /* no 100-continue round trip */
    if (c->api_key && c->api_key[0]) {
        size_t al = strlen(c->api_key) + 32;
        char *auth = xmalloc(al);
        snprintf(auth, al, "Authorization: Bearer %s", c->api_key);
        c->headers = curl_slist_append(c->headers, auth);
        free(auth);
    }
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    c->multi = curl_multi_init();
    if (!c->multi || !c->headers || c->epfd < 0) {
        snprintf(err, err_len, "client: curl initialisation failed");
        goto fail;
    }
    /* The multi_socket API: curl tells us its sockets and one timer, we wait on them with epoll
     * and hand back only the ready ones. (curl_multi_perform/curl_multi_poll visit every transfer
     * on each wake-up, which at hundreds of streams delays reads by hundreds of microseconds.) */
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, client_socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, client_timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* The idle-connection cache is always sized explicitly: curl's default (4 x the transfers
     * currently added) shrinks as a burst of requests finishes, and then closes kept-alive
     * connections that the next burst would have reused. */
    if (cfg->max_connections > 0) {
        curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)cfg->max_connections);
        curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)cfg->max_connections);
        curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)cfg->max_connections);
    } else {
        curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long)CLIENT_MAX_IDLE_CONNECTIONS);
    }
    if (cfg->model && cfg->model[0]) {
        c->model = xstrdup(cfg->model);
    } else if (client_fetch_model(c, err, err_len) != 0) {
        goto fail;
    }
    return c;
fail:
    client_free(c);
    return NULL;
}

const char *client_model(const struct client *c)
{
    return c->model;
}

long client_n_connects(const struct client *c)
{
    return c->n_connects;
}

int client_in_flight(const struct client *c)
{
    return c->n_in_flight;
}

/* Per-curl-transfer state: before a request's first attempt and before the client's retry. */
static void xfer_attempt_reset(struct xfer *x)
{
    sse_reset(&x->sse);
    buf_reset(&x->err_body);
    x->saw_done = x->stream_ok = x->headers_done = 0;
    x->n_rx_bytes = 0;
    x->n_attempts = 0;
    x->n_connects_seen = 0;
    x->attempt_reused = 0;
    x->accounted = 0;
    x->stream_error = REQ_ERROR_NONE;
    x->stream_error_msg[0] = 0;
    x->curl_err[0] = 0;
}

int client_submit(struct client *c, const struct client_request *q)
{
    if (!q || !q->prompt || q->max_tokens <= 0 || c->closing)
        return -1;
    struct xfer *x = c->free_list;
    if (x) {
        c->free_list = x->next;
    } else if (!(x = xfer_new(c))) {
        return -1;
    }
    if (client_body(c, q, &x->body) != BUF_OK) {
        x->next = c->free_list;
        c->free_list = x;
        return -1;
    }
    record_init(&x->rec);
    struct request_record *r = &x->rec;
    r->id = q->id;
    if (q->tag)
        client_copy_str(r->tag, sizeof r->tag, q->tag, strlen(q->tag));
    r->level = q->level;
    r->n_prompt_chars = q->prompt_len > INT32_MAX ? INT32_MAX : (int)q->prompt_len;
    /* The array is the caller's after delivery, so it is allocated per request: a first slab
     * now, doubled up to the cap on demand. */
    uint64_t cap = (uint64_t)q->max_tokens * 2 + 64;
    x->content_cap = cap > (1u << 24) ? (1u << 24) : (uint32_t)cap;
    x->content_alloc = x->content_cap < 1024 ? x->content_cap : 1024;
    r->t_content_ns = xmalloc((size_t)x->content_alloc * sizeof(mono_ns));
    if (x->needs_reset) {
        /* Clears curl's per-handle retry counter (and the retry's FRESH_CONNECT/timeout). */
        curl_easy_reset(x->easy);
        xfer_setopts(x);
        x->needs_reset = 0;
    }
    xfer_attempt_reset(x);
    x->fresh_retry = 0;
    x->retry_cause[0] = 0;
    x->have_cache_n = 0;
    x->timings_prompt_n = -1;
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body.data);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body.len);
    /* t_sent_ns: taken right before the transfer is handed to the multi handle. curl connects
     * (or takes a kept-alive connection) and writes the request on the next client_poll. */
    r->t_sent_ns = clock_now_ns();
    r->t_intended_ns = q->t_intended_ns ? q->t_intended_ns : r->t_sent_ns;
    if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK) {
        record_free(r);
        x->next = c->free_list;
        c->free_list = x;
        return -1;
    }
    x->prev = NULL;
    x->next = c->active;
    if (c->active)
        c->active->prev = x;
    c->active = x;
    c->n_in_flight++;
    return 0;
}

static void client_classify(struct xfer *x, CURLcode rc, int aborted)
{
    struct request_record *r = &x->rec;
    if (aborted) {
        r->error = REQ_ERROR_ABORTED;
        snprintf(r->error_msg, sizeof r->error_msg, "aborted by the caller");
        return;
    }
    if (rc == CURLE_OK) {
        if (r->http_status >= 400) {
            r->error = r->http_status >= 500 ? REQ_ERROR_HTTP_5XX : REQ_ERROR_HTTP_4XX;
            client_error_message(x->err_body.data, x->err_body.len, r->error_msg,
                                 sizeof r->error_msg);
            if (!r->error_msg[0])
                snprintf(r->error_msg, sizeof r->error_msg, "HTTP %d", r->http_status);
        } else if (!x->stream_ok) {
            r->error = REQ_ERROR_PROTOCOL;
            snprintf(r->error_msg, sizeof r->error_msg, "unexpected HTTP status %d",
                     r->http_status);
        } else if (x->stream_error != REQ_ERROR_NONE) {
            r->error = x->stream_error;
            memcpy(r->error_msg, x->stream_error_msg, sizeof r->error_msg);
        } else if (!x->saw_done && (sse_pending(&x->sse) || !r->finish_reason[0])) {
            r->error = REQ_ERROR_PROTOCOL;
            snprintf(r->error_msg, sizeof r->error_msg,
                     "stream ended without [DONE] or a finish_reason (%u events)", r->n_events);
        }
        return;
    }
    const char *cmsg = x->curl_err[0] ? x->curl_err : curl_easy_strerror(rc);
    if (x->stream_error != REQ_ERROR_NONE) {
        /* We aborted the transfer ourselves (SSE cap): the stream error is the cause. */
        r->error = x->stream_error;
        memcpy(r->error_msg, x->stream_error_msg, sizeof r->error_msg);
        return;
    }
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        r->error = REQ_ERROR_TIMEOUT;
        break;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        r->error = REQ_ERROR_CONNECT;
        break;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        /* Reset or closed: before the response headers it is a connection failure; after them
         * the stream was cut short (a protocol error of this request). */
        r->error = x->headers_done ? REQ_ERROR_PROTOCOL : REQ_ERROR_CONNECT;
        break;
    default:
        r->error = REQ_ERROR_PROTOCOL;
        break;
    }
    snprintf(r->error_msg, sizeof r->error_msg, "%s%.200s",
             x->headers_done && r->error == REQ_ERROR_PROTOCOL ? "connection closed mid-stream: "
                                                               : "",
             cmsg);
    if (x->fresh_retry && x->retry_cause[0]) {
        size_t n = strlen(r->error_msg);
        snprintf(r->error_msg + n, sizeof r->error_msg - n, " (on the retry after: %s)",
                 x->retry_cause);
    }
}

static void record_add_retries(struct request_record *r, unsigned n)
{
    unsigned v = r->n_retries + n;
    r->n_retries = (uint8_t)(v > 255 ? 255 : v);
}

/* Once per curl transfer, when it ends: the connections it opened, and curl's own re-sends. */
static void xfer_account(struct client *c, struct xfer *x, CURLcode rc, int aborted)
{
    if (x->accounted)
        return;
    x->accounted = 1;
    long nconn = 0;
    if (curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK && nconn > 0)
        c->n_connects += nconn;
    if (x->n_attempts > 1)
        record_add_retries(&x->rec, x->n_attempts - 1);
    /* curl's retry counter grew (or may have: a failed or cut transfer can end in an attempt we
     * did not see): clear it before the handle's next request. */
    if (x->n_attempts > 1 || rc != CURLE_OK || aborted)
        x->needs_reset = 1;
}

/* 1 when a failed transfer may be sent again on a fresh connection: it failed before a single
 * response byte (nothing we could have shown the caller, nothing the server can have answered),
 * with a connection error, on a connection that was a kept-alive one, and it is not already the
 * client's retry. *timeout_ms: the retry's timeout, what is left of the request's (0 = none). */
static int xfer_should_retry(const struct client *c, const struct xfer *x, CURLcode rc,
                             long *timeout_ms)
{
    if (x->fresh_retry || c->closing || x->n_rx_bytes > 0 || x->stream_error != REQ_ERROR_NONE)
        return 0;
    if (rc != CURLE_GOT_NOTHING && rc != CURLE_SEND_ERROR && rc != CURLE_RECV_ERROR)
        return 0;
#if CLIENT_HAVE_PREREQ
    if (x->n_attempts == 0 || !x->attempt_reused)
        return 0;
#else
    long nconn = 0;
    if (curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &nconn) != CURLE_OK || nconn != 0)
        return 0; /* it opened a connection: the last attempt was on a fresh one */
#endif
    *timeout_ms = 0;
    if (c->timeout_ms > 0) {
        /* The timeout is the request's, from its original send: the retry gets what is left. */
        uint64_t spent_ms = (clock_now_ns() - x->rec.t_sent_ns) / 1000000u;
        if (spent_ms + 1 >= (uint64_t)c->timeout_ms)
            return 0;
        *timeout_ms = c->timeout_ms - (long)spent_ms;
    }
    return 1;
}

/* Re-adds x's easy handle on a fresh connection (no waiting: it starts on the next socket
 * action). 0, or -1 (curl refused; x is then out of the multi handle and finishes as it was). */
static int client_retry(struct client *c, struct xfer *x, CURLcode rc, long timeout_ms)
{
    char cause[sizeof x->retry_cause];
    const char *cmsg = x->curl_err[0] ? x->curl_err : curl_easy_strerror(rc);
    client_copy_str(cause, sizeof cause, cmsg, strlen(cmsg));
    curl_multi_remove_handle(c->multi, x->easy);
    xfer_attempt_reset(x);
    memcpy(x->retry_cause, cause, sizeof cause);
    x->fresh_retry = 1;
    x->needs_reset = 1; /* FRESH_CONNECT and the shortened timeout are this transfer's only */
    curl_easy_setopt(x->easy, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK) {
        x->accounted = 1;
        client_copy_str(x->curl_err, sizeof x->curl_err, cause, strlen(cause));
        x->retry_cause[0] = 0;
        return -1;
    }
    record_add_retries(&x->rec, 1);
    return 0;
}

/* Removes x from the multi handle, finishes its record and hands it to the callback. */
static void client_finish(struct client *c, struct xfer *x, CURLcode rc, int aborted)
{
    mono_ns now = clock_now_ns();
    xfer_account(c, x, rc, aborted);
    curl_multi_remove_handle(c->multi, x->easy);
    if (x->prev)
        x->prev->next = x->next;
    else
        c->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
    c->n_in_flight--;

    struct request_record *r = &x->rec;
    r->t_done_ns = now;
    if (!x->have_cache_n && r->n_cached_tokens < 0 && x->timings_prompt_n >= 0 &&
        r->n_prompt_tokens >= 0 && r->n_prompt_tokens >= x->timings_prompt_n)
        r->n_cached_tokens = (int)(r->n_prompt_tokens - x->timings_prompt_n); /* old llama.cpp */
    client_classify(x, rc, aborted);
    if (r->n_content_events == 0) {
        free(r->t_content_ns);
        r->t_content_ns = NULL;
    }
    if (c->cb)
        c->cb(c->ud, r);
    else
        record_free(r);
    /* The caller owns the contents now; forget them here, then recycle x (only now: the callback
     * may submit, and must not get x while r is still being delivered). */
    r->t_content_ns = NULL;
    r->n_content_events = 0;
    x->next = c->free_list;
    x->prev = NULL;
    c->free_list = x;
}

static int client_drain(struct client *c)
{
    int n_done = 0, left = 0;
    CURLMsg *m;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode rc = m->data.result; /* m is invalid after remove_handle */
        xfer_account(c, x, rc, 0);
        long retry_timeout_ms = 0;
        if (rc != CURLE_OK && xfer_should_retry(c, x, rc, &retry_timeout_ms) &&
            client_retry(c, x, rc, retry_timeout_ms) == 0)
            continue; /* still in flight, on a fresh connection */
        client_finish(c, x, rc, 0);
        n_done++;
    }
    return n_done;
}

/* Runs curl's timer if it is due. */
static void client_run_timer(struct client *c)
{
    if (c->timer_ns && clock_now_ns() >= c->timer_ns) {
        int running = 0;
        c->timer_ns = 0;
        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
}

int client_poll(struct client *c, int timeout_ms)
{
    mono_ns deadline = clock_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    struct epoll_event evs[256];
    for (;;) {
        client_run_timer(c);
        int n_done = client_drain(c);
        if (c->n_in_flight == 0)
            return 0;
        /* Always look at the sockets once, without blocking if something already finished:
         * otherwise transfers that curl drives from its timer could starve the others. */
        mono_ns now = clock_now_ns();
        uint64_t wait_ns = n_done == 0 && now < deadline ? deadline - now : 0;
        if (c->timer_ns && wait_ns > 0)
            wait_ns = c->timer_ns <= now            ? 0
                      : c->timer_ns - now < wait_ns ? c->timer_ns - now
                                                    : wait_ns;
        uint64_t wait_ms = (wait_ns + 999999u) / 1000000u;
        int n = epoll_wait(c->epfd, evs, (int)(sizeof evs / sizeof evs[0]),
                           (int)(wait_ms > 1000000 ? 1000000 : wait_ms));
        for (int i = 0; i < n; i++) {
            int bits = 0, running = 0;
            if (evs[i].events & EPOLLIN)
                bits |= CURL_CSELECT_IN;
            if (evs[i].events & EPOLLOUT)
                bits |= CURL_CSELECT_OUT;
            if (evs[i].events & (EPOLLERR | EPOLLHUP))
                bits |= CURL_CSELECT_ERR;
            curl_multi_socket_action(c->multi, evs[i].data.fd, bits, &running);
        }
        n_done += client_drain(c);
        if (n_done > 0 || clock_now_ns() >= deadline)
            return c->n_in_flight;
    }
}

void client_abort_all(struct client *c)
{
    /* Bounded by the count at entry: callbacks that submit again do not keep this going. */
    int n = c->n_in_flight;
    while (n-- > 0 && c->active)
        client_finish(c, c->active, CURLE_OK, 1);
}

void client_free(struct client *c)
{
    if (!c)
        return;
    c->closing = 1;
    if (c->multi)
        client_abort_all(c);
    while (c->free_list) {
        struct xfer *x = c->free_list;
        c->free_list = x->next;
        xfer_destroy(x);
    }
    if (c->multi)
        curl_multi_cleanup(c->multi);
    if (c->epfd >= 0)
        close(c->epfd);
    curl_slist_free_all(c->headers);
    free(c->url);
    free(c->base_url);
    free(c->api_key);
    free(c->model);
    free(c);
}
