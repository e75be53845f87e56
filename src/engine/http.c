/* http: incremental HTTP/1.1 request parser and the parse-error table (see http.h). It copies
 * partial lines into the parser and the body into req.body; it never reads past the end of a
 * request, so pipelined requests stay in the caller's buffer. No I/O, no allocation besides the
 * capped body buffer. */
#include "engine/http.h"

#include <string.h>
#include <strings.h>

/* The one mapping from parse status to the answer: HTTP status code and message. */
static const struct {
    const char *name;
    int code;
    const char *message;
} http_parse_table[HTTP_PARSE_STATUS_COUNT] = {
    [HTTP_PARSE_OK] = {"ok", 0, ""},
    [HTTP_PARSE_HEAD_DONE] = {"head_done", 0, ""},
    [HTTP_PARSE_REQUEST_DONE] = {"request_done", 0, ""},
    [HTTP_PARSE_ERR_REQUEST_LINE] = {"err_request_line", 400, "Malformed request line"},
    [HTTP_PARSE_ERR_REQUEST_LINE_TOO_LONG] = {"err_request_line_too_long", 414,
                                              "Request line too long"},
    [HTTP_PARSE_ERR_VERSION] = {"err_version", 505, "HTTP version not supported"},
    [HTTP_PARSE_ERR_TARGET_TOO_LONG] = {"err_target_too_long", 414, "Request target too long"},
    [HTTP_PARSE_ERR_HEADER] = {"err_header", 400, "Malformed request header"},
    [HTTP_PARSE_ERR_HEADER_LINE_TOO_LONG] = {"err_header_line_too_long", 431,
                                             "Request header line too long"},
    [HTTP_PARSE_ERR_HEAD_TOO_LARGE] = {"err_head_too_large", 431, "Request headers too large"},
    [HTTP_PARSE_ERR_TOO_MANY_HEADERS] = {"err_too_many_headers", 431, "Too many request headers"},
    [HTTP_PARSE_ERR_TRANSFER_ENCODING] = {"err_transfer_encoding", 501,
                                          "Unsupported Transfer-Encoding"},
    [HTTP_PARSE_ERR_LENGTH_AND_CHUNKED] = {"err_length_and_chunked", 400,
                                           "Both Content-Length and Transfer-Encoding given"},
    [HTTP_PARSE_ERR_CONTENT_LENGTH_TOO_LARGE] = {"err_content_length_too_large", 413,
                                                 "Request body too large"},
    [HTTP_PARSE_ERR_BODY_TOO_LARGE] = {"err_body_too_large", 413, "Request body too large"},
    [HTTP_PARSE_ERR_CHUNK_SIZE] = {"err_chunk_size", 400, "Malformed chunk size"},
    [HTTP_PARSE_ERR_CHUNKED_BODY] = {"err_chunked_body", 400, "Malformed chunked body"},
};

const char *http_parse_status_str(enum http_parse_status st)
{
    return (unsigned)st < HTTP_PARSE_STATUS_COUNT ? http_parse_table[st].name : "unknown";
}

int http_parse_status_is_error(enum http_parse_status st)
{
    return st >= HTTP_PARSE_ERR_REQUEST_LINE && st < HTTP_PARSE_STATUS_COUNT;
}

int http_parse_status_code(enum http_parse_status st)
{
    return (unsigned)st < HTTP_PARSE_STATUS_COUNT ? http_parse_table[st].code : 500;
}

const char *http_parse_status_message(enum http_parse_status st)
{
    return (unsigned)st < HTTP_PARSE_STATUS_COUNT ? http_parse_table[st].message : "";
}

const char *http_reason_phrase(int status)
{
    static const struct {
        int code;
        const char *reason;
    } reasons[] = {
        {100, "Continue"},
        {200, "OK"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {413, "Request Entity Too Large"},
        {414, "URI Too Long"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].code == status)
            return reasons[i].reason;
    return "Unknown";
}

void http_reader_init(struct http_reader *p, size_t max_body_bytes)
{
    memset(p, 0, sizeof *p);
    p->max_body_bytes = max_body_bytes;
    buf_init(&p->req.body, 0, max_body_bytes);
}

void http_reader_reset(struct http_reader *p)
{
    struct buf body = p->req.body;
    if (body.size > (1u << 20)) { /* do not keep a large body buffer per idle connection */
        buf_free(&body);
        buf_init(&body, 0, p->max_body_bytes);
    }
    buf_reset(&body);
    memset(&p->req, 0, sizeof p->req);
    p->req.body = body;
    p->state = HTTP_PARSE_STATE_REQUEST_LINE;
    p->status = HTTP_PARSE_OK;
    p->body_left = 0;
    p->n_head_bytes = 0;
    p->line_len = 0;
}

void http_reader_free(struct http_reader *p)
{
    if (p)
        buf_free(&p->req.body);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

static enum http_parse_status parse_request_line(struct http_req *r, char *line)
{
    char *sp1 = strchr(line, ' ');
    if (!sp1)
        return HTTP_PARSE_ERR_REQUEST_LINE;
    char *sp2 = strchr(sp1 + 1, ' ');
    if (!sp2 || strchr(sp2 + 1, ' '))
        return HTTP_PARSE_ERR_REQUEST_LINE;
    *sp1 = 0;
    *sp2 = 0;
    const char *method = line, *target = sp1 + 1, *version = sp2 + 1;
    size_t mlen = strlen(method);
    if (mlen == 0 || mlen >= sizeof r->method)
        return HTTP_PARSE_ERR_REQUEST_LINE;
    for (size_t i = 0; i < mlen; i++)
        if (method[i] < 'A' || method[i] > 'Z')
            return HTTP_PARSE_ERR_REQUEST_LINE;
    memcpy(r->method, method, mlen + 1);
    if (strncmp(version, "HTTP/1.", 7) != 0 || (version[7] != '0' && version[7] != '1') ||
        version[8])
        return HTTP_PARSE_ERR_VERSION;
    r->version_minor = version[7] - '0';
    r->keep_alive = r->version_minor >= 1;
    r->is_head = !strcmp(method, "HEAD");
    /* absolute-form: http://host/path -> /path */
    if (!strncmp(target, "http://", 7)) {
        const char *slash = strchr(target + 7, '/');
        target = slash ? slash : "/";
    }
    if (target[0] != '/')
        return HTTP_PARSE_ERR_REQUEST_LINE;
    size_t tlen = strcspn(target, "?#");
    if (tlen >= sizeof r->path)
        return HTTP_PARSE_ERR_TARGET_TOO_LONG;
    memcpy(r->path, target, tlen);
    r->path[tlen] = 0;
    return HTTP_PARSE_OK;
}

static int has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = value; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        if (m == tl && !strncasecmp(p, token, tl))
            return 1;
        p += n;
    }
    return 0;
}

static enum http_parse_status parse_content_length(struct http_req *r, const char *value)
{
    if (!*value)
        return HTTP_PARSE_ERR_HEADER;
    uint64_t v = 0;
    for (const char *p = value; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return HTTP_PARSE_ERR_HEADER;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (r->has_content_length && r->content_length != v)
        return HTTP_PARSE_ERR_HEADER;
    r->has_content_length = 1;
    r->content_length = v;
    return HTTP_PARSE_OK;
}

static enum http_parse_status parse_header(struct http_reader *p, char *line)
{
    struct http_req *r = &p->req;
    if (line[0] == ' ' || line[0] == '\t')
        return HTTP_PARSE_ERR_HEADER; /* obsolete line folding */
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
        return HTTP_PARSE_ERR_HEADER;
    *colon = 0;
    for (char *c = line; *c; c++)
        if (*c == ' ' || *c == '\t')
            return HTTP_PARSE_ERR_HEADER;
    const char *name = line;
    char *value = trim(colon + 1);
    if (++r->n_headers > HTTP_MAX_HEADERS)
        return HTTP_PARSE_ERR_TOO_MANY_HEADERS;
    if (p->on_header)
        p->on_header(p->ud, name, (size_t)(colon - line), value, strlen(value));
    if (!strcasecmp(name, "content-length"))
        return parse_content_length(r, value);
    if (!strcasecmp(name, "transfer-encoding")) {
        if (strcasecmp(value, "chunked") != 0)
            return HTTP_PARSE_ERR_TRANSFER_ENCODING; /* no other codings supported */
        r->chunked = 1;
    } else if (!strcasecmp(name, "connection")) {
        if (has_token(value, "close"))
            r->keep_alive = 0;
        else if (has_token(value, "keep-alive"))
            r->keep_alive = 1;
    } else if (!strcasecmp(name, "authorization")) {
        size_t n = strlen(value);
        r->has_auth = 1;
        if (n >= sizeof r->auth)
            n = sizeof r->auth - 1; /* too long to match any key we accept */
        memcpy(r->auth, value, n);
        r->auth[n] = 0;
    } else if (!strcasecmp(name, "expect")) {
        if (!strcasecmp(value, "100-continue"))
            r->expect_continue = 1;
    }
    return HTTP_PARSE_OK;
}

/* Headers done: decide how the body is framed. */
static enum http_parse_status head_done(struct http_reader *p)
{
    struct http_req *r = &p->req;
    if (r->chunked && r->has_content_length)
        return HTTP_PARSE_ERR_LENGTH_AND_CHUNKED;
    if (r->has_content_length && r->content_length > p->max_body_bytes)
        return HTTP_PARSE_ERR_CONTENT_LENGTH_TOO_LARGE;
    buf_reset(&r->body);
    if (r->chunked) {
        p->state = HTTP_PARSE_STATE_CHUNK_SIZE;
        return HTTP_PARSE_HEAD_DONE;
    }
    if (r->has_content_length && r->content_length > 0) {
        p->state = HTTP_PARSE_STATE_BODY;
        p->body_left = r->content_length;
        return HTTP_PARSE_HEAD_DONE;
    }
    return HTTP_PARSE_REQUEST_DONE;
}

static enum http_parse_status chunk_size_line(struct http_reader *p, const char *line, size_t len)
{
    uint64_t size = 0;
    size_t i = 0;
    for (; i < len; i++) {
        char ch = line[i];
        int d = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (d < 0)
            break;
        if (size > (UINT64_MAX >> 4))
            return HTTP_PARSE_ERR_CHUNK_SIZE;
        size = size * 16 + (uint64_t)d;
    }
    if (i == 0 || (i < len && line[i] != ';' && line[i] != ' '))
        return HTTP_PARSE_ERR_CHUNK_SIZE;
    if (size == 0) {
        p->state = HTTP_PARSE_STATE_TRAILER;
        return HTTP_PARSE_OK;
    }
    if (size > p->max_body_bytes - p->req.body.len)
        return HTTP_PARSE_ERR_BODY_TOO_LARGE;
    p->body_left = size;
    p->state = HTTP_PARSE_STATE_CHUNK_DATA;
    return HTTP_PARSE_OK;
}

/* One complete line (NUL-terminated, CRLF or LF removed) in the current state. */
static enum http_parse_status on_line(struct http_reader *p, size_t len, size_t eol_len)
{
    enum http_parse_state s = p->state;
    if (s == HTTP_PARSE_STATE_REQUEST_LINE || s == HTTP_PARSE_STATE_HEADERS ||
        s == HTTP_PARSE_STATE_TRAILER) {
        p->n_head_bytes += len + eol_len; /* chunk-size lines do not count */
        if (p->n_head_bytes > HTTP_HEAD_CAP_BYTES)
            return HTTP_PARSE_ERR_HEAD_TOO_LARGE;
    }
    /* a NUL or bare CR inside the head would let two parsers disagree on where it ends */
    int bad_bytes = memchr(p->line, 0, len) || memchr(p->line, '\r', len);
    enum http_parse_status st;
    switch (s) {
    case HTTP_PARSE_STATE_REQUEST_LINE:
        if (len == 0) {
            p->n_head_bytes = 0; /* tolerate empty lines between requests */
            return HTTP_PARSE_OK;
        }
        if (bad_bytes)
            return HTTP_PARSE_ERR_REQUEST_LINE;
        if ((st = parse_request_line(&p->req, p->line)) == HTTP_PARSE_OK)
            p->state = HTTP_PARSE_STATE_HEADERS;
        return st;
    case HTTP_PARSE_STATE_HEADERS:
        if (len == 0)
            return head_done(p);
        return bad_bytes ? HTTP_PARSE_ERR_HEADER : parse_header(p, p->line);
    case HTTP_PARSE_STATE_CHUNK_SIZE:
        return chunk_size_line(p, p->line, len);
    case HTTP_PARSE_STATE_CHUNK_CRLF:
        if (len != 0)
            return HTTP_PARSE_ERR_CHUNKED_BODY;
        p->state = HTTP_PARSE_STATE_CHUNK_SIZE;
        return HTTP_PARSE_OK;
    case HTTP_PARSE_STATE_TRAILER:
        return len == 0 ? HTTP_PARSE_REQUEST_DONE : HTTP_PARSE_OK; /* trailers are ignored */
    default:
        return HTTP_PARSE_ERR_REQUEST_LINE;
    }
}

/* Appends bytes up to the next LF to the line; a complete line goes to on_line(). */
static enum http_parse_status take_line(struct http_reader *p, const char *data, size_t len,
                                        size_t *used)
{
    const char *lf = memchr(data, '\n', len);
    size_t n = lf ? (size_t)(lf - data) : len;
    int too_long = p->line_len + n > HTTP_LINE_CAP_BYTES + 1;
    if (!too_long) {
        memcpy(p->line + p->line_len, data, n);
        p->line_len += n;
    }
    size_t eol_len = 1;
    if (!too_long && lf && p->line_len > 0 && p->line[p->line_len - 1] == '\r') {
        p->line_len--;
        eol_len = 2;
    }
    if (too_long || p->line_len > HTTP_LINE_CAP_BYTES)
        return p->state == HTTP_PARSE_STATE_REQUEST_LINE ? HTTP_PARSE_ERR_REQUEST_LINE_TOO_LONG
                                                         : HTTP_PARSE_ERR_HEADER_LINE_TOO_LONG;
    *used = lf ? n + 1 : n;
    if (!lf)
        return HTTP_PARSE_OK;
    size_t line_len = p->line_len;
    p->line[line_len] = 0;
    p->line_len = 0;
    return on_line(p, line_len, eol_len);
}

/* Copies up to body_left bytes into the body. */
static enum http_parse_status take_body(struct http_reader *p, const char *data, size_t len,
                                        size_t *used)
{
    size_t n = len < p->body_left ? len : (size_t)p->body_left;
    if (buf_append(&p->req.body, data, n) != BUF_OK)
        return HTTP_PARSE_ERR_BODY_TOO_LARGE;
    *used = n;
    p->body_left -= n;
    if (p->body_left > 0)
        return HTTP_PARSE_OK;
    if (p->state == HTTP_PARSE_STATE_BODY)
        return HTTP_PARSE_REQUEST_DONE;
    p->state = HTTP_PARSE_STATE_CHUNK_CRLF;
    return HTTP_PARSE_OK;
}

enum http_parse_status http_reader_feed(struct http_reader *p, const char *data, size_t len,
                                       size_t *used_out)
{
    size_t i = 0;
    enum http_parse_status st = HTTP_PARSE_OK;
    if (p->state == HTTP_PARSE_STATE_DONE) {
        *used_out = 0;
        return p->status;
    }
    while (i < len && st == HTTP_PARSE_OK) {
        size_t used = 0;
        if (p->state == HTTP_PARSE_STATE_BODY || p->state == HTTP_PARSE_STATE_CHUNK_DATA)
            st = take_body(p, data + i, len - i, &used);
        else
            st = take_line(p, data + i, len - i, &used);
        i += used;
    }
    if (st != HTTP_PARSE_OK && st != HTTP_PARSE_HEAD_DONE) {
        p->state = HTTP_PARSE_STATE_DONE;
        p->status = st;
    }
    *used_out = i;
    return st;
}
