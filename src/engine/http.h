/* http: the embedded server's incremental HTTP/1.1 request parser (request line, headers,
 * Content-Length and chunked bodies, trailers, keep-alive and 100-continue flags), and the one
 * table mapping each parse error to the HTTP status and message the server answers with. It does
 * no I/O and writes no responses (server.c does); it knows nothing about routes or JSON. Input may
 * arrive in any chunking: partial lines are kept in the parser, the body is copied into req.body
 * (capped at max_body_bytes). Not thread-safe; one parser per connection.
 *
 *   struct http_reader p;
 *   http_reader_init(&p, max_body_bytes);
 *   size_t used; enum http_parse_status st = http_reader_feed(&p, data, len, &used);
 *   // consume `used` bytes; HEAD_DONE: maybe send "100 Continue", feed the rest;
 *   // REQUEST_DONE: p.req is complete, handle it, then http_reader_reset(&p) for the next one;
 *   // an error: answer http_parse_status_code(st) and close (the parser stays in error)
 *   http_reader_free(&p);
 */
#ifndef SLM_HTTP_H
#define SLM_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define HTTP_LINE_CAP_BYTES 8192        /* one request, header or chunk-size line */
#define HTTP_HEAD_CAP_BYTES (64 * 1024) /* request line + headers (+ chunked trailers) */
#define HTTP_MAX_HEADERS 128

enum http_parse_status {
    HTTP_PARSE_OK = 0,       /* all input consumed, request not complete yet */
    HTTP_PARSE_HEAD_DONE,    /* headers complete and a body follows; feed the rest */
    HTTP_PARSE_REQUEST_DONE, /* p->req complete; bytes after it are not consumed */
    HTTP_PARSE_ERR_REQUEST_LINE,
    HTTP_PARSE_ERR_REQUEST_LINE_TOO_LONG,
    HTTP_PARSE_ERR_VERSION,
    HTTP_PARSE_ERR_TARGET_TOO_LONG,
    HTTP_PARSE_ERR_HEADER,
    HTTP_PARSE_ERR_HEADER_LINE_TOO_LONG,
    HTTP_PARSE_ERR_HEAD_TOO_LARGE,
    HTTP_PARSE_ERR_TOO_MANY_HEADERS,
    HTTP_PARSE_ERR_TRANSFER_ENCODING,
    HTTP_PARSE_ERR_LENGTH_AND_CHUNKED,
    HTTP_PARSE_ERR_CONTENT_LENGTH_TOO_LARGE, /* declared Content-Length over max_body_bytes */
    HTTP_PARSE_ERR_BODY_TOO_LARGE,           /* chunked body grew over max_body_bytes */
    HTTP_PARSE_ERR_CHUNK_SIZE,
    HTTP_PARSE_ERR_CHUNKED_BODY,
    HTTP_PARSE_STATUS_COUNT
};

/* Name of the status ("ok", "err_version", ...); never NULL. */
const char *http_parse_status_str(enum http_parse_status st);
/* True for the error statuses. */
int http_parse_status_is_error(enum http_parse_status st);
/* HTTP status the server answers an error with (400, 413, 414, 431, 501, 505); 0 for non-errors. */
int http_parse_status_code(enum http_parse_status st);
/* Client-facing message for an error ("Malformed request line", ...); "" for non-errors. */
const char *http_parse_status_message(enum http_parse_status st);

/* Reason phrase for an HTTP status code ("Not Found"); "Unknown" for codes we never send. */
const char *http_reason_phrase(int status);

struct http_req {
    char method[16];
    char path[2048]; /* target without the query string; absolute-form reduced to its path */
    int version_minor;
    int is_head;
    int keep_alive;
    int has_content_length;
    uint64_t content_length;
    int chunked;
    int expect_continue;
    int has_auth;
    char auth[512]; /* Authorization value, truncated (then it matches no key we accept) */
    int n_headers;
    struct buf body; /* the decoded body; NUL-terminated */
};

enum http_parse_state {
    HTTP_PARSE_STATE_REQUEST_LINE = 0,
    HTTP_PARSE_STATE_HEADERS,
    HTTP_PARSE_STATE_BODY, /* Content-Length body */
    HTTP_PARSE_STATE_CHUNK_SIZE,
    HTTP_PARSE_STATE_CHUNK_DATA,
    HTTP_PARSE_STATE_CHUNK_CRLF,
    HTTP_PARSE_STATE_TRAILER,
    HTTP_PARSE_STATE_DONE, /* a status other than OK/HEAD_DONE is sticky until reset */
};

/* Called for every header (not trailers) with NUL-terminated views valid during the call;
 * optional (tests compare header boundaries with a reference parser). */
typedef void (*http_header_cb)(void *ud, const char *name, size_t name_len, const char *value,
                               size_t value_len);

struct http_reader {
    struct http_req req;
    enum http_parse_state state;
    enum http_parse_status status; /* REQUEST_DONE or an error once state is DONE */
    size_t max_body_bytes;
    uint64_t body_left;  /* Content-Length bytes still to read, or bytes left in a chunk */
    size_t n_head_bytes; /* request line + headers (+ trailers) so far */
    size_t line_len;
    char line[HTTP_LINE_CAP_BYTES + 2]; /* partial line, CR included until its LF */
    http_header_cb on_header;
    void *ud;
};

/* Ready for the first request; the body buffer is capped at max_body_bytes. */
void http_reader_init(struct http_reader *p, size_t max_body_bytes);
/* Ready for the next request on the same connection (keeps the body buffer's memory unless it
 * grew over 1 MiB). */
void http_reader_reset(struct http_reader *p);
/* NULL-safe. */
void http_reader_free(struct http_reader *p);

/* Parses up to len bytes; *used_out says how many were consumed (all of them with OK; the
 * request's last byte with REQUEST_DONE; the headers' end with HEAD_DONE). After REQUEST_DONE or
 * an error every call returns the same status and consumes nothing until http_reader_reset(). */
enum http_parse_status http_reader_feed(struct http_reader *p, const char *data, size_t len,
                                       size_t *used_out);

#endif
