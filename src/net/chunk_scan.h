/* chunk_scan: the client's per-event fast path (net/chunk_scan.c), split from net/client.c, which
 * calls it for every SSE data payload; exposed for tests and the fuzz target. A validating scan
 * that never allocates and never calls libcurl; it does not build a JSON tree, it only says "this
 * is a plain content chunk" or "use the full parser". */
#ifndef SLM_CHUNK_SCAN_H
#define SLM_CHUNK_SCAN_H

#include <stddef.h>

#include "net/client.h" /* enum client_api */

/* The per-event fast path (exposed for tests): a validating, allocation-free scan of one SSE data
 * payload. Returns 1 and fills out when data is a well-formed JSON object with no non-null
 * "usage", "timings" or "error" member; text_bytes is the decoded UTF-8 length of
 * choices[0].text (completions) or choices[0].delta.content (chat), finish_reason that of
 * choices[0].finish_reason ("" when null or absent; cut to 15 bytes). Returns 0 when the caller
 * must use the full JSON parser (those members, invalid JSON, escapes in keys, numbers longer
 * than 18 characters, ...). Any thread. */
struct client_chunk_fast {
    size_t text_bytes;
    char finish_reason[16];
};
int client_chunk_scan(const char *data, size_t len, enum client_api api,
                      struct client_chunk_fast *out);

#endif
