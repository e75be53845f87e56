/* fuzz_logparse: libFuzzer target for the server start-up log parser (server/logparse.c): the
 * input fed whole and split at an input-derived point, then finished. Checks that both
 * chunkings give a byte-identical struct startup_info (line splitting must not depend on read
 * boundaries) and that its JSON renders within a bounded buffer. Inputs are a few log lines
 * (-max_len in the Makefile's FUZZ_MAX_LEN_logparse).
 * fuzz-sources: src/server/logparse.c src/util/buf.c src/util/clock.c src/util/log.c */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/logparse.h"

static struct logparse fuzz_lp_a, fuzz_lp_b; /* large (line buffers): static, reused */

static void fuzz_logparse_run(struct logparse *lp, const uint8_t *data, size_t size, size_t cut)
{
    logparse_init(lp);
    logparse_feed(lp, (const char *)data, cut);
    logparse_feed(lp, (const char *)data + cut, size - cut);
    logparse_finish(lp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_logparse_run(&fuzz_lp_a, data, size, size);
    size_t cut = size ? (data[0] * 131u + size) % (size + 1) : 0;
    fuzz_logparse_run(&fuzz_lp_b, data, size, cut);
    /* Both start from a zeroed struct and make the same writes if and only if line splitting
     * does not depend on read boundaries, so the whole result must be byte-identical
     * (timeline texts, numbers, NAN patterns); the JSON of one is rendered within a bound. */
    if (memcmp(&fuzz_lp_a.info, &fuzz_lp_b.info, sizeof fuzz_lp_a.info) != 0)
        __builtin_trap();
    static struct buf json; /* reused: growing a new one each run was a third of the time */
    if (!json.cap_bytes)
        buf_init(&json, 1u << 16, 1u << 22);
    buf_reset(&json);
    if (startup_info_to_json(&fuzz_lp_a.info, &json) != BUF_OK)
        __builtin_trap();
    return 0;
}
