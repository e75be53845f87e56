/* fuzz_chunk_scan: libFuzzer target for the client's allocation-free SSE data scanner
 * (net/chunk_scan.h client_chunk_scan), through its public function only, for both APIs. Checks its
 * contract against the full JSON parser: whenever the scanner accepts a payload, the payload
 * must be a JSON object (util/json.h agrees), the text length must not exceed the payload and
 * finish_reason must be NUL-terminated within its 16 bytes. Rejecting is always allowed (the
 * caller falls back to the full parser).
 * fuzz-sources: src/net/chunk_scan.c src/util/json.c src/util/buf.c src/util/log.c */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "net/chunk_scan.h"
#include "util/json.h"

static void fuzz_chunk_scan_one(const char *data, size_t size, enum client_api api)
{
    struct client_chunk_fast f;
    memset(&f, 0xa5, sizeof f);
    if (!client_chunk_scan(data, size, api, &f))
        return;
    if (f.text_bytes > size || memchr(f.finish_reason, 0, sizeof f.finish_reason) == NULL)
        __builtin_trap();
    char err[128];
    struct json *root = json_parse(data, size, err, sizeof err);
    if (!root || json_type_of(root) != JSON_TYPE_OBJECT)
        __builtin_trap(); /* the fast path accepted what the full parser rejects */
    json_free(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_chunk_scan_one((const char *)data, size, CLIENT_API_COMPLETIONS);
    fuzz_chunk_scan_one((const char *)data, size, CLIENT_API_CHAT);
    return 0;
}
