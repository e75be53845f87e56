/* record: derived per-request metrics and the JSONL sink. Each line is rendered into a buffer and
 * handed to the kernel with one write(2) on an O_APPEND descriptor, so nothing waits in a stdio
 * buffer: every line appended before a crash is in the file. (A kill during the write itself can
 * leave the last line cut short; readers drop a final line without its newline.) No aggregation. */
#include "measure/record.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const req_error_names[REQ_ERROR__COUNT] = {
    [REQ_ERROR_NONE] = "none",
    [REQ_ERROR_CONNECT] = "connect",
    [REQ_ERROR_TIMEOUT] = "timeout",
    [REQ_ERROR_HTTP_4XX] = "http_4xx",
    [REQ_ERROR_HTTP_5XX] = "http_5xx",
    [REQ_ERROR_PROTOCOL] = "protocol",
    [REQ_ERROR_SERVER_EXIT] = "server_exit",
    [REQ_ERROR_ABORTED] = "aborted",
};

const char *req_error_str(enum req_error e)
{
    if ((unsigned)e >= REQ_ERROR__COUNT)
        return "unknown";
    return req_error_names[e];
}

void record_init(struct request_record *r)
{
    memset(r, 0, sizeof *r);
    r->level = -1;
    r->n_prompt_tokens = -1;
    r->n_completion_tokens = -1;
    r->n_cached_tokens = -1;
}

int64_t record_ttft_ns(const struct request_record *r)
{
    if (!r->t_first_token_ns || !r->t_sent_ns || r->t_first_token_ns < r->t_sent_ns)
        return -1;
    return (int64_t)(r->t_first_token_ns - r->t_sent_ns);
}

int64_t record_e2e_ns(const struct request_record *r)
{
    if (!r->t_done_ns || !r->t_sent_ns || r->t_done_ns < r->t_sent_ns)
        return -1;
    return (int64_t)(r->t_done_ns - r->t_sent_ns);
}

int64_t record_ttft_intended_ns(const struct request_record *r)
{
    if (!r->t_first_token_ns || !r->t_intended_ns || r->t_first_token_ns < r->t_intended_ns)
        return -1;
    return (int64_t)(r->t_first_token_ns - r->t_intended_ns);
}

int64_t record_e2e_intended_ns(const struct request_record *r)
{
    if (!r->t_done_ns || !r->t_intended_ns || r->t_done_ns < r->t_intended_ns)
        return -1;
    return (int64_t)(r->t_done_ns - r->t_intended_ns);
}

double record_tpot_ms(const struct request_record *r)
{
    int64_t ttft = record_ttft_ns(r), e2e = record_e2e_ns(r);
    if (ttft < 0 || e2e < 0 || e2e < ttft || r->n_completion_tokens < 2)
        return NAN;
    return ns_to_ms((uint64_t)(e2e - ttft)) / (double)(r->n_completion_tokens - 1);
}

size_t record_itl_ms(const struct request_record *r, double *out, size_t cap)
{
    if (!r->t_content_ns || r->n_content_events < 2)
        return 0;
    size_t n = (size_t)r->n_content_events - 1;
    for (size_t i = 0; i < n && i < cap; i++) {
        mono_ns a = r->t_content_ns[i], b = r->t_content_ns[i + 1];
        out[i] = b >= a ? ns_to_ms(b - a) : NAN;
    }
    return n;
}

void record_free(struct request_record *r)
{
    if (!r)
        return;
    free(r->t_content_ns);
    r->t_content_ns = NULL;
    r->n_content_events = 0;
}

static enum buf_status record_put_ms(struct buf *b, const char *key, int64_t ns)
{
    enum buf_status st = buf_printf(b, ",\"%s\":", key);
    if (ns < 0)
        return st | buf_puts(b, "null");
    return st | buf_json_double(b, ns_to_ms((uint64_t)ns));
}

static enum buf_status record_put_int(struct buf *b, const char *key, long long v)
{
    /* -1 means "unknown" in the record: null in JSON. */
    if (v < 0)
        return buf_printf(b, ",\"%s\":null", key);
    return buf_printf(b, ",\"%s\":%lld", key, v);
}

enum buf_status record_to_json(const struct request_record *r, struct buf *b)
{
    enum buf_status st = BUF_OK;
    char tag[sizeof r->tag + 1], msg[sizeof r->error_msg + 1], fin[sizeof r->finish_reason + 1];
    /* The fixed arrays may be unterminated if a caller filled them to the brim. */
    memcpy(tag, r->tag, sizeof r->tag);
    tag[sizeof r->tag] = 0;
    memcpy(msg, r->error_msg, sizeof r->error_msg);
    msg[sizeof r->error_msg] = 0;
    memcpy(fin, r->finish_reason, sizeof r->finish_reason);
    fin[sizeof r->finish_reason] = 0;

    st |= buf_printf(b, "{\"id\":%llu,\"tag\":", (unsigned long long)r->id);
    st |= buf_json_str(b, tag);
    st |= buf_printf(b, ",\"level\":%d", r->level);
    st |= buf_printf(b, ",\"t_intended_ns\":%llu,\"t_sent_ns\":%llu,\"t_headers_ns\":%llu",
                     (unsigned long long)r->t_intended_ns, (unsigned long long)r->t_sent_ns,
                     (unsigned long long)r->t_headers_ns);
    st |= buf_printf(b, ",\"t_first_event_ns\":%llu,\"t_first_token_ns\":%llu,\"t_done_ns\":%llu",
                     (unsigned long long)r->t_first_event_ns,
                     (unsigned long long)r->t_first_token_ns, (unsigned long long)r->t_done_ns);
    int64_t headers_ns = r->t_headers_ns && r->t_sent_ns && r->t_headers_ns >= r->t_sent_ns
                             ? (int64_t)(r->t_headers_ns - r->t_sent_ns)
                             : -1;
    st |= record_put_ms(b, "headers_ms", headers_ns);
    st |= record_put_ms(b, "ttft_ms", record_ttft_ns(r));
    st |= record_put_ms(b, "e2e_ms", record_e2e_ns(r));
    st |= record_put_ms(b, "ttft_intended_ms", record_ttft_intended_ns(r));
    st |= record_put_ms(b, "e2e_intended_ms", record_e2e_intended_ns(r));
    st |= buf_puts(b, ",\"tpot_ms\":");
    st |= buf_json_double(b, record_tpot_ms(r));
    st |= buf_printf(b, ",\"http_status\":%d,\"error\":\"%s\",\"error_msg\":", r->http_status,
                     req_error_str(r->error));
    st |= buf_json_str(b, msg);
    st |= record_put_int(b, "n_prompt_tokens", r->n_prompt_tokens);
    st |= record_put_int(b, "n_completion_tokens", r->n_completion_tokens);
    st |= record_put_int(b, "n_cached_tokens", r->n_cached_tokens);
    st |= buf_puts(b, ",\"finish_reason\":");
    if (fin[0])
        st |= buf_json_str(b, fin);
    else
        st |= buf_puts(b, "null");
    st |= buf_printf(b, ",\"n_text_bytes\":%llu,\"n_prompt_chars\":%d,\"n_events\":%u",
                     (unsigned long long)r->n_text_bytes, r->n_prompt_chars, r->n_events);
    st |= buf_printf(b, ",\"n_content_events\":%u,\"n_content_dropped\":%u,\"retried\":%u",
                     r->n_content_events, r->n_content_dropped, (unsigned)r->n_retries);
    st |= buf_puts(b, ",\"itl_ms\":[");
    if (r->t_content_ns) {
        for (uint32_t i = 1; i < r->n_content_events; i++) {
            mono_ns a = r->t_content_ns[i - 1], c = r->t_content_ns[i];
            if (i > 1)
                st |= buf_putc(b, ',');
            /* 3 decimals in ms = microsecond resolution, which is what the clock path gives. */
            st |= buf_printf(b, "%.3f", c >= a ? ns_to_ms(c - a) : 0.0);
        }
    }
    st |= buf_puts(b, "]}");
    return st ? BUF_ERR_CAP : BUF_OK;
}

struct record_writer {
    int fd;
    struct buf line;
    char *path;
};

struct record_writer *record_writer_open(const char *path, char *err, size_t err_len)
{
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    /* A crash can cut the last line of an earlier run short (a write(2) of a line is not atomic
     * against SIGKILL once it spans pages): end that fragment first so that it stays a line of its
     * own instead of swallowing the next record. */
    off_t size = lseek(fd, 0, SEEK_END);
    char last = '\n';
    if (size > 0 && pread(fd, &last, 1, size - 1) == 1 && last != '\n' && write(fd, "\n", 1) != 1) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    struct record_writer *w = xcalloc(1, sizeof *w);
    w->fd = fd;
    w->path = xstrdup(path);
    /* A record with a 2*max_tokens+64 ITL array at ~10 bytes each fits comfortably. */
    buf_init(&w->line, 4096, 64u << 20);
    return w;
}

int record_writer_append(struct record_writer *w, const struct request_record *r)
{
    buf_reset(&w->line);
    if (record_to_json(r, &w->line) != BUF_OK || buf_putc(&w->line, '\n') != BUF_OK) {
        errno = EFBIG;
        return -1;
    }
    /* One write(2) per line on O_APPEND: no stdio buffer to lose; loop on short writes. */
    size_t off = 0;
    while (off < w->line.len) {
        ssize_t n = write(w->fd, w->line.data + off, w->line.len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}

void record_writer_close(struct record_writer *w)
{
    if (!w)
        return;
    close(w->fd);
    buf_free(&w->line);
    free(w->path);
    free(w);
}
