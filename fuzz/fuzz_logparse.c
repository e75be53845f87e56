/* fuzz_logparse: libFuzzer target for the server start-up log parser (server/logparse.c): the
 * input fed whole and split at an input-derived point with arrival stamps, then finished and
 * rendered as JSON. Checks that both chunkings give the same JSON (line splitting must not
 * depend on read boundaries) and that the JSON renders within a bounded buffer.
 * fuzz-sources: src/server/logparse.c src/util/buf.c src/util/clock.c src/util/log.c */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/logparse.h"

static void fuzz_logparse_run(const uint8_t *data, size_t size, size_t cut, struct buf *json)
{
    static struct logparse lp; /* large (line buffers); one at a time */
    logparse_init(&lp);
    logparse_feed(&lp, (const char *)data, cut);
    logparse_feed(&lp, (const char *)data + cut, size - cut);
    logparse_finish(&lp);
    if (startup_info_to_json(&lp.info, json) != BUF_OK)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf a, b;
    buf_init(&a, 0, 1u << 22);
    buf_init(&b, 0, 1u << 22);
    fuzz_logparse_run(data, size, size, &a);
    size_t cut = size ? (data[0] * 131u + size) % (size + 1) : 0;
    fuzz_logparse_run(data, size, cut, &b);
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        __builtin_trap();
    buf_free(&a);
    buf_free(&b);
    return 0;
}
