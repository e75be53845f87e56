/* logparse: start-up phases and capacity figures from a server log (see logparse.h for the list of
 * recognised lines). Substring search (memmem) on each line, never anchored at the line start, and
 * a number reader that skips thousands separators. It does not interpret timestamps printed in
 * the lines: durations are what the server printed, or differences of the arrival times the
 * caller stamped the bytes with (llama.cpp milestones), and each phase records which. */
#include "server/logparse.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOGPARSE_MAX_LINE_BYTES (64u * 1024u)

static const char *const phase_names[STARTUP_PHASE__COUNT] = {
    "weights_load", "model_load", "torch_compile", "kv_cache_alloc", "warmup_graph_capture",
    "engine_init",
};

const char *startup_phase_str(enum startup_phase p)
{
    if ((unsigned)p >= STARTUP_PHASE__COUNT)
        return "unknown";
    return phase_names[p];
}

const char *startup_phase_source_str(enum startup_phase_source s)
{
    switch (s) {
    case STARTUP_PHASE_SOURCE_LOGGED:
        return "logged";
    case STARTUP_PHASE_SOURCE_ARRIVAL:
        return "arrival";
    case STARTUP_PHASE_SOURCE_NONE:
        break;
    }
    return "none";
}

const char *logparse_server_str(enum logparse_server s)
{
    switch (s) {
    case LOGPARSE_SERVER_VLLM:
        return "vllm";
    case LOGPARSE_SERVER_LLAMACPP:
        return "llamacpp";
    case LOGPARSE_SERVER_SGLANG:
        return "sglang";
    case LOGPARSE_SERVER_UNKNOWN:
        break;
    }
    return "unknown";
}

void startup_info_init(struct startup_info *si)
{
    memset(si, 0, sizeof *si);
    for (int i = 0; i < STARTUP_PHASE__COUNT; i++)
        si->phase_s[i] = NAN;
    si->dynamo_s = NAN;
    si->compilation_s = NAN;
    si->profile_s = NAN;
    si->kv_gpu_blocks = -1;
    si->kv_cache_tokens = -1;
    si->max_concurrency = NAN;
    si->max_concurrency_len = -1;
    si->available_kv_gib = NAN;
    si->kv_cache_gib = NAN;
    si->weights_gib = NAN;
    si->graph_gib = NAN;
    si->upload_s = NAN;
    si->upload_gbps = NAN;
    si->kv_cache_mib = NAN;
    si->kv_buffer_mib = NAN;
    si->context_len = -1;
    si->n_warmup_shapes = -1;
    si->estimated_max_model_len = -1;
    si->weights_mib = NAN;
    si->n_ctx_tokens = -1;
    si->n_ctx_per_seq_tokens = -1;
    si->t_load_start_s = NAN;
    si->t_context_start_s = NAN;
    si->t_warmup_start_s = NAN;
    si->t_model_loaded_s = NAN;
    si->t_listening_s = NAN;
    si->t_last_line_s = NAN;
}

/* A logged phase's seconds, 0 when unseen or not logged (for sums); *seen set when logged. */
static double logged_phase(const struct startup_info *si, enum startup_phase p, int *seen)
{
    if (si->phase_source[p] != STARTUP_PHASE_SOURCE_LOGGED || isnan(si->phase_s[p]))
        return 0;
    *seen = 1;
    return si->phase_s[p];
}

double startup_logged_sum_s(const struct startup_info *si)
{
    int seen = 0;
    double load = fmax(logged_phase(si, STARTUP_PHASE_MODEL_LOAD, &seen),
                       logged_phase(si, STARTUP_PHASE_WEIGHTS_LOAD, &seen));
    double parts = logged_phase(si, STARTUP_PHASE_TORCH_COMPILE, &seen) +
                   logged_phase(si, STARTUP_PHASE_KV_CACHE_ALLOC, &seen) +
                   logged_phase(si, STARTUP_PHASE_WARMUP_GRAPH_CAPTURE, &seen);
    double engine = fmax(logged_phase(si, STARTUP_PHASE_ENGINE_INIT, &seen), parts);
    return seen ? load + engine : NAN;
}

int startup_logged_exceeds(const struct startup_info *si, double measured_s)
{
    double sum = startup_logged_sum_s(si);
    if (isnan(sum) || isnan(measured_s) || measured_s < 0)
        return 0;
    return sum > measured_s + STARTUP_LOGGED_SLACK_S;
}

/* ---- small scanning helpers over [p, end) ---- */

struct span {
    const char *p;
    const char *end;
};

/* Position just after needle in s, or NULL. */
static const char *after(struct span s, const char *needle)
{
    size_t n = strlen(needle);
    if (s.p >= s.end)
        return NULL;
    const char *q = memmem(s.p, (size_t)(s.end - s.p), needle, n);
    return q ? q + n : NULL;
}

static const char *find(struct span s, const char *needle)
{
    if (s.p >= s.end)
        return NULL;
    return memmem(s.p, (size_t)(s.end - s.p), needle, strlen(needle));
}

/* Reads a number at p (leading spaces skipped; optional '-'; digits with ',' separators; one '.').
 * Returns the position after it, or NULL if there is no digit. */
static const char *read_num(const char *p, const char *end, double *out)
{
    char tmp[64];
    size_t n = 0;
    int digits = 0, dot = 0;
    if (!p)
        return NULL;
    while (p < end && *p == ' ')
        p++;
    if (p < end && (*p == '-' || *p == '+')) {
        tmp[n++] = *p;
        p++;
    }
    while (p < end && n < sizeof tmp - 1) {
        char c = *p;
        if (c >= '0' && c <= '9') {
            tmp[n++] = c;
            digits++;
        } else if (c == ',' && digits > 0 && !dot && p + 1 < end && p[1] >= '0' && p[1] <= '9') {
            /* thousands separator: skip */
        } else if (c == '.' && !dot && p + 1 < end && p[1] >= '0' && p[1] <= '9') {
            tmp[n++] = c;
            dot = 1;
        } else {
            break;
        }
        p++;
    }
    if (!digits)
        return NULL;
    tmp[n] = 0;
    *out = strtod(tmp, NULL);
    return p;
}

static const char *read_int(const char *p, const char *end, int64_t *out)
{
    double v;
    const char *q = read_num(p, end, &v);
    if (q && isfinite(v))
        *out = (int64_t)llround(v);
    return q && isfinite(v) ? q : NULL;
}

/* Skips spaces then expects the literal s; returns the position after it or NULL. */
static const char *expect(const char *p, const char *end, const char *s)
{
    size_t n = strlen(s);
    if (!p)
        return NULL;
    while (p < end && *p == ' ')
        p++;
    if ((size_t)(end - p) < n || memcmp(p, s, n) != 0)
        return NULL;
    return p + n;
}

/* A logged duration: the first one wins, and it replaces an inferred one. */
static void set_phase(struct startup_info *si, enum startup_phase ph, double v)
{
    if (si->phase_source[ph] != STARTUP_PHASE_SOURCE_LOGGED) {
        si->phase_s[ph] = v;
        si->phase_source[ph] = STARTUP_PHASE_SOURCE_LOGGED;
    }
}

/* An inferred duration from two arrival offsets (the end falls back to end2 when end is NAN). */
static void infer_phase(struct startup_info *si, enum startup_phase ph, double from, double end,
                        double end2)
{
    double to = isnan(end) ? end2 : end;
    if (si->phase_source[ph] != STARTUP_PHASE_SOURCE_NONE || isnan(from) || isnan(to) || to < from)
        return;
    si->phase_s[ph] = to - from;
    si->phase_source[ph] = STARTUP_PHASE_SOURCE_ARRIVAL;
}

static void infer_phases(struct startup_info *si)
{
    infer_phase(si, STARTUP_PHASE_WEIGHTS_LOAD, si->t_load_start_s, si->t_context_start_s,
                si->t_model_loaded_s);
    infer_phase(si, STARTUP_PHASE_KV_CACHE_ALLOC, si->t_context_start_s, si->t_warmup_start_s,
                si->t_model_loaded_s);
    infer_phase(si, STARTUP_PHASE_WARMUP_GRAPH_CAPTURE, si->t_warmup_start_s,
                si->t_model_loaded_s, si->t_listening_s);
    infer_phase(si, STARTUP_PHASE_ENGINE_INIT, si->t_context_start_s, si->t_model_loaded_s,
                si->t_listening_s);
}

/* First arrival of a milestone. */
static void mark(double *dst, double t_s)
{
    if (isnan(*dst))
        *dst = t_s;
}

static void set_first_d(double *dst, double v)
{
    if (isnan(*dst))
        *dst = v;
}

static void set_server(struct startup_info *si, enum logparse_server s)
{
    if (si->server == LOGPARSE_SERVER_UNKNOWN)
        si->server = s;
}

/* Copies [from, end) trimmed into the error message, if none yet (a generic one is replaced). */
static void set_error(struct startup_info *si, const char *from, const char *end)
{
    if (si->error_message[0] && !si->error_is_generic)
        return;
    si->error_is_generic = 0;
    while (from < end && (*from == ' ' || *from == '\t'))
        from++;
    while (end > from && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    size_t n = (size_t)(end - from);
    if (n >= sizeof si->error_message)
        n = sizeof si->error_message - 1;
    memcpy(si->error_message, from, n);
    si->error_message[n] = 0;
}

static void copy_token(char *dst, size_t dst_len, const char *p, const char *end)
{
    size_t n = 0;
    while (p < end && *p == ' ')
        p++;
    while (p < end && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && n + 1 < dst_len)
        dst[n++] = *p++;
    dst[n] = 0;
}

/* ---- vLLM and the embedded runtime ---- */

/* vLLM wordings of other releases than parse_vllm's: V0 and early V1 (0.6-0.7: "Loading model
 * weights took X GB", "# GPU blocks: N", "Memory profiling results: duration=X seconds"), 2026
 * ("Initial profiling/warmup run took X s"), and the engine core's failure line. */
static int parse_vllm_versions(struct startup_info *si, struct span s)
{
    const char *p;
    double v;
    int64_t k;
    int hit = 0;
    if ((p = after(s, "Loading model weights took ")) && (p = read_num(p, s.end, &v)) &&
        (expect(p, s.end, "GB") || expect(p, s.end, "GiB"))) {
        set_first_d(&si->weights_gib, v); /* "GB" there is GiB: vLLM divides by 2**30 */
        hit = 1;
    }
    if ((p = after(s, "# GPU blocks: ")) && read_int(p, s.end, &k)) {
        if (si->kv_gpu_blocks < 0)
            si->kv_gpu_blocks = k;
        hit = 1;
    }
    if (((p = after(s, "Memory profiling results: duration=")) ||
         (p = after(s, "Initial profiling/warmup run took "))) &&
        read_num(p, s.end, &v)) {
        set_first_d(&si->profile_s, v);
        hit = 1;
    }
    if ((p = find(s, "EngineCore failed to start."))) {
        if (!si->error_message[0]) {
            set_error(si, p, s.end);
            si->error_is_generic = 1; /* the line that says why usually follows */
        }
        hit = 1;
    }
    return hit;
}


static int parse_vllm(struct startup_info *si, struct span s, double t_s)
{
    const char *p;
    double v, w;
    int64_t k;
    int hit = 0;

    if (find(s, "Starting to load model ")) {
        si->saw_load_start = 1;
        mark(&si->t_load_start_s, t_s);
        hit = 1;
    }
    if ((p = after(s, "Loading weights took ")) && read_num(p, s.end, &v)) {
        set_phase(si, STARTUP_PHASE_WEIGHTS_LOAD, v);
        hit = 1;
    }
    if ((p = after(s, "Model loading took ")) && (p = read_num(p, s.end, &v)) &&
        (p = expect(p, s.end, "GiB"))) {
        const char *q = expect(p, s.end, "memory");
        if (q)
            p = q;
        if ((p = expect(p, s.end, "and")) && read_num(p, s.end, &w)) {
            set_first_d(&si->weights_gib, v);
            set_phase(si, STARTUP_PHASE_MODEL_LOAD, w);
            hit = 1;
        }
    }
    if ((p = after(s, "Dynamo bytecode transform time: ")) && read_num(p, s.end, &v)) {
        set_first_d(&si->dynamo_s, v);
        hit = 1;
    }
    if (((p = after(s, "torch.compile takes ")) || (p = after(s, "torch.compile took "))) &&
        (p = read_num(p, s.end, &v)) && expect(p, s.end, "s in total")) {
        set_phase(si, STARTUP_PHASE_TORCH_COMPILE, v);
        hit = 1;
    }
    if ((p = after(s, "Available KV cache memory: ")) && (p = read_num(p, s.end, &v)) &&
        expect(p, s.end, "GiB")) {
        set_first_d(&si->available_kv_gib, v);
        hit = 1;
    }
    if ((p = after(s, "KV cache allocation took ")) && (p = read_num(p, s.end, &v))) {
        set_phase(si, STARTUP_PHASE_KV_CACHE_ALLOC, v);
        if ((p = expect(p, s.end, "seconds")) && (p = expect(p, s.end, "(")) &&
            (p = read_num(p, s.end, &w)) && expect(p, s.end, "GiB"))
            set_first_d(&si->kv_cache_gib, w);
        hit = 1;
    }
    if ((p = after(s, "GPU KV cache size: ")) && (p = read_int(p, s.end, &k)) &&
        expect(p, s.end, "tokens")) {
        if (si->kv_cache_tokens < 0)
            si->kv_cache_tokens = k;
        hit = 1;
    }
    if ((p = after(s, "Maximum concurrency for ")) && (p = read_int(p, s.end, &k)) &&
        (p = expect(p, s.end, "tokens per request:")) && (p = read_num(p, s.end, &v)) &&
        expect(p, s.end, "x")) {
        if (si->max_concurrency_len < 0) {
            si->max_concurrency_len = k;
            si->max_concurrency = v;
        }
        hit = 1;
    }
    if ((p = after(s, "Graph capturing finished in ")) && (p = read_num(p, s.end, &v)) &&
        (p = expect(p, s.end, "secs, took")) && (p = read_num(p, s.end, &w)) &&
        expect(p, s.end, "GiB")) {
        set_phase(si, STARTUP_PHASE_WARMUP_GRAPH_CAPTURE, v);
        set_first_d(&si->graph_gib, w);
        hit = 1;
    }
    if ((p = after(s, "Weights uploaded at ")) && (p = read_num(p, s.end, &v)) &&
        (p = expect(p, s.end, "GB/s (")) && (p = read_num(p, s.end, &w)) &&
        (p = expect(p, s.end, "GB in")) && read_num(p, s.end, &w)) {
        set_first_d(&si->upload_gbps, v);
        set_first_d(&si->upload_s, w);
        hit = 1;
    }
    if ((p = after(s, "Warm-up took ")) && (p = read_num(p, s.end, &v)) &&
        (p = expect(p, s.end, "seconds"))) {
        set_phase(si, STARTUP_PHASE_WARMUP_GRAPH_CAPTURE, v);
        if ((p = expect(p, s.end, "(")) && read_int(p, s.end, &k) && si->n_warmup_shapes < 0)
            si->n_warmup_shapes = (int)k;
        hit = 1;
    }
    if (find(s, "Warm-up skipped")) {
        si->warmup_skipped = 1;
        hit = 1;
    }
    if ((p = after(s, "init engine (profile, create kv cache, warmup model) took ")) &&
        (p = read_num(p, s.end, &v))) {
        set_phase(si, STARTUP_PHASE_ENGINE_INIT, v);
        if ((p = after((struct span){p, s.end}, "(compilation: ")) && read_num(p, s.end, &w))
            set_first_d(&si->compilation_s, w);
        hit = 1;
    }
    if ((p = after(s, "Starting vLLM API server ")) && (p = read_int(p, s.end, &k)) &&
        (p = expect(p, s.end, "on"))) {
        si->saw_listening = 1;
        mark(&si->t_listening_s, t_s);
        if (!si->api_url[0])
            copy_token(si->api_url, sizeof si->api_url, p, s.end);
        hit = 1;
    }
    if (find(s, "Application startup complete.")) {
        si->saw_startup_complete = 1;
        hit = 1;
    }

    /* start-up failures */
    if ((p = find(s, "Free memory on device"))) {
        set_error(si, p, s.end);
        hit = 1;
    }
    if ((p = find(s, "No available memory for the cache blocks"))) {
        set_error(si, p, s.end);
        hit = 1;
    }
    if ((p = after(s, "estimated maximum model length is ")) && read_int(p, s.end, &k)) {
        const char *from = find(s, "To serve at least one request");
        if (si->estimated_max_model_len < 0)
            si->estimated_max_model_len = k;
        set_error(si, from ? from : s.p, s.end);
        hit = 1;
    }
    if ((p = find(s, "is greater than the derived max_model_len"))) {
        const char *from = find(s, "User-specified max_model_len");
        set_error(si, from ? from : s.p, s.end);
        hit = 1;
    }
    return hit;
}

/* ---- llama.cpp ---- */

/* "<key>   = N" at p (after the key): N, or -1. */
static int64_t read_assign_int(const char *p, const char *end)
{
    int64_t k = -1;
    if ((p = expect(p, end, "=")))
        read_int(p, end, &k);
    return k;
}

/* Milestones (no figures): load start, context start, warm-up, model loaded, listening. */
static int llamacpp_milestones(struct startup_info *si, struct span s, double t_s)
{
    const char *p;
    int hit = 0;
    if (find(s, ": loading model")) {
        si->saw_load_start = 1;
        mark(&si->t_load_start_s, t_s);
        hit = 1;
    }
    if (find(s, "llama_context:") || find(s, "llama_new_context_with_model:") ||
        find(s, "llama_init_from_model:") || find(s, "llama_kv_cache")) {
        mark(&si->t_context_start_s, t_s);
        hit = 1;
    }
    if (find(s, "warming up the model")) {
        mark(&si->t_warmup_start_s, t_s);
        hit = 1;
    }
    if (find(s, ": model loaded") || find(s, "\"message\":\"model loaded\"")) {
        si->saw_model_loaded = 1;
        mark(&si->t_model_loaded_s, t_s);
        hit = 1;
    }
    if ((p = after(s, "server is listening on "))) {
        si->saw_listening = 1;
        mark(&si->t_listening_s, t_s);
        if (!si->api_url[0])
            copy_token(si->api_url, sizeof si->api_url, p, s.end);
        hit = 1;
    }
    if (find(s, "HTTP server is listening"))
        hit = 1; /* the port opens before the model loads: progress, no figure */
    return hit;
}

static void add_first_d(double *dst, double v)
{
    *dst = isnan(*dst) ? v : *dst + v;
}

static int parse_llamacpp(struct startup_info *si, struct span s, double t_s)
{
    const char *p;
    double v;
    int64_t k;
    int hit = llamacpp_milestones(si, s, t_s);

    if (find(s, "llama_kv_cache") && (p = after(s, ": size = ")) && (p = read_num(p, s.end, &v)) &&
        (p = expect(p, s.end, "MiB")) && (p = expect(p, s.end, "(")) &&
        (p = read_int(p, s.end, &k)) && expect(p, s.end, "cells")) {
        set_first_d(&si->kv_cache_mib, v);
        if (si->kv_cache_tokens < 0)
            si->kv_cache_tokens = k;
        hit = 1;
    }
    if ((p = after(s, "KV self size")) && (p = expect(p, s.end, "=")) &&
        (p = read_num(p, s.end, &v)) && expect(p, s.end, "MiB")) {
        set_first_d(&si->kv_cache_mib, v);
        hit = 1;
    }
    if ((p = after(s, "KV buffer size = ")) && (p = read_num(p, s.end, &v)) &&
        expect(p, s.end, "MiB")) {
        add_first_d(&si->kv_buffer_mib, v);
        hit = 1;
    }
    if ((p = after(s, "model buffer size = ")) && (p = read_num(p, s.end, &v)) &&
        expect(p, s.end, "MiB")) {
        add_first_d(&si->weights_mib, v);
        hit = 1;
    }
    if ((p = after(s, ": n_ctx ")) && (k = read_assign_int(p, s.end)) >= 0) {
        if (si->n_ctx_tokens < 0)
            si->n_ctx_tokens = k;
        hit = 1;
    }
    if (((p = after(s, ": n_ctx_per_seq ")) || (p = after(s, ": n_ctx_seq "))) &&
        (k = read_assign_int(p, s.end)) >= 0) {
        if (si->n_ctx_per_seq_tokens < 0)
            si->n_ctx_per_seq_tokens = k;
        hit = 1;
    }
    if ((p = find(s, "failed to load model"))) {
        set_error(si, p, s.end);
        hit = 1;
    }
    return hit;
}

/* ---- SGLang ---- */

static int parse_sglang(struct startup_info *si, struct span s, double t_s)
{
    const char *p;
    double v, w;
    int64_t k;
    int hit = 0;

    if (find(s, "Load weight begin")) {
        si->saw_load_start = 1;
        mark(&si->t_load_start_s, t_s);
        hit = 1;
    }
    if ((p = after(s, "Load weight end. "))) {
        const char *q;
        if ((q = after((struct span){p, s.end}, "elapsed=")) && read_num(q, s.end, &v))
            set_phase(si, STARTUP_PHASE_WEIGHTS_LOAD, v);
        if ((q = after((struct span){p, s.end}, "mem usage=")) && read_num(q, s.end, &v))
            set_first_d(&si->weights_gib, v);
        hit = 1;
    }
    if ((p = after(s, "KV Cache is allocated. #tokens: ")) && (p = read_int(p, s.end, &k))) {
        if (si->kv_cache_tokens < 0)
            si->kv_cache_tokens = k;
        const char *q;
        if ((q = after((struct span){p, s.end}, "K size: ")) && read_num(q, s.end, &v) &&
            (q = after((struct span){q, s.end}, "V size: ")) && read_num(q, s.end, &w))
            set_first_d(&si->kv_cache_gib, v + w);
        hit = 1;
    }
    if ((p = after(s, "Capture cuda graph end. Time elapsed: ")) && (p = read_num(p, s.end, &v))) {
        set_phase(si, STARTUP_PHASE_WARMUP_GRAPH_CAPTURE, v);
        const char *q;
        if ((q = after((struct span){p, s.end}, "mem usage=")) && read_num(q, s.end, &w))
            set_first_d(&si->graph_gib, w);
        hit = 1;
    }
    if ((p = after(s, "max_total_num_tokens=")) && read_int(p, s.end, &k)) {
        if (si->kv_cache_tokens < 0)
            si->kv_cache_tokens = k;
        if ((p = after(s, "context_len=")) && read_int(p, s.end, &k) && si->context_len < 0)
            si->context_len = k;
        hit = 1;
    }
    if (find(s, "The server is fired up and ready to roll!")) {
        si->saw_startup_complete = 1;
        mark(&si->t_listening_s, t_s);
        hit = 1;
    }
    if ((p = find(s, "Not enough memory. Please try to increase --mem-fraction-static"))) {
        set_error(si, p, s.end);
        hit = 1;
    }
    return hit;
}

/* ---- timeline ---- */

/* FNV-1a over the line with digit runs folded to one '#' and runs of '.' or ' ' to one. */
static uint64_t line_key(struct span s)
{
    uint64_t h = 1469598103934665603ull;
    char prev = 0;
    for (const char *p = s.p; p < s.end; p++) {
        char c = (*p >= '0' && *p <= '9') ? '#' : *p;
        if (c == prev && (c == '#' || c == '.' || c == ' '))
            continue;
        prev = c;
        h = (h ^ (unsigned char)c) * 1099511628211ull;
    }
    return h;
}

static void line_set(struct startup_line *e, struct span s, uint64_t key, int recognised,
                     double t_s)
{
    size_t n = (size_t)(s.end - s.p);
    if (n >= sizeof e->text) {
        n = sizeof e->text - 1;
        while (n > 0 && ((unsigned char)s.p[n] & 0xC0) == 0x80)
            n--; /* do not cut a UTF-8 sequence */
    }
    memcpy(e->text, s.p, n);
    e->text[n] = 0;
    e->key = key;
    e->recognised = recognised;
    e->n_seen = 1;
    e->t_first_s = e->t_last_s = t_s;
}

static void timeline_remove(struct startup_info *si, int i)
{
    memmove(&si->timeline[i], &si->timeline[i + 1],
            (size_t)(si->n_timeline - i - 1) * sizeof si->timeline[0]);
    si->n_timeline--;
}

static void timeline_add(struct startup_info *si, struct span s, int recognised, double t_s)
{
    uint64_t key = line_key(s);
    for (int i = 0; i < si->n_timeline; i++) {
        struct startup_line *e = &si->timeline[i];
        if (e->key == key) {
            e->n_seen++;
            if (!isnan(t_s))
                e->t_last_s = t_s;
            e->recognised |= recognised;
            return;
        }
    }
    if (si->n_timeline == STARTUP_TIMELINE_MAX) {
        int victim = -1;
        if (recognised) {
            for (int i = 0; i < si->n_timeline && victim < 0; i++)
                if (!si->timeline[i].recognised)
                    victim = i;
        } else if (!si->timeline[si->n_timeline - 1].recognised) {
            victim = si->n_timeline - 1;
        }
        si->n_timeline_dropped++;
        if (victim < 0)
            return;
        timeline_remove(si, victim);
    }
    line_set(&si->timeline[si->n_timeline++], s, key, recognised, t_s);
}

void logparse_line_at(struct startup_info *si, const char *line, size_t len, double t_arrival_s)
{
    if (len > LOGPARSE_MAX_LINE_BYTES)
        len = LOGPARSE_MAX_LINE_BYTES;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    si->n_lines++;
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    if (len == 0)
        return;
    struct span s = {line, line + len};
    int hit = 0;
    if (parse_vllm(si, s, t_arrival_s) | parse_vllm_versions(si, s)) {
        set_server(si, LOGPARSE_SERVER_VLLM);
        hit = 1;
    }
    if (parse_llamacpp(si, s, t_arrival_s)) {
        set_server(si, LOGPARSE_SERVER_LLAMACPP);
        hit = 1;
    }
    if (parse_sglang(si, s, t_arrival_s)) {
        set_server(si, LOGPARSE_SERVER_SGLANG);
        hit = 1;
    }
    /* vLLM's port error comes from uvicorn/asyncio before any of the above */
    const char *p;
    if ((p = find(s, "[Errno 98]"))) {
        set_error(si, p, s.end);
        hit = 1;
    }
    if (!isnan(t_arrival_s))
        si->t_last_line_s = t_arrival_s;
    timeline_add(si, s, hit, t_arrival_s);
    infer_phases(si);
}

void logparse_line(struct startup_info *si, const char *line, size_t len)
{
    logparse_line_at(si, line, len, NAN);
}

/* ---- incremental ---- */

void logparse_init(struct logparse *lp)
{
    memset(lp, 0, sizeof *lp);
    startup_info_init(&lp->info);
}

static void flush_line(struct logparse *lp)
{
    double t_s = NAN;
    if (lp->t_line_ns) {
        uint64_t origin = lp->t_launch_ns;
        if (!origin)
            origin = lp->t_launch_ns = lp->t_line_ns; /* offsets from the first stamped line */
        t_s = ((double)lp->t_line_ns - (double)origin) / 1e9;
    }
    logparse_line_at(&lp->info, lp->line, lp->line_len, t_s);
    lp->line_len = 0;
    lp->line_truncated = 0;
    lp->t_line_ns = 0;
}

void logparse_feed(struct logparse *lp, const char *data, size_t len)
{
    logparse_feed_at(lp, data, len, 0);
}

/* Line ends are found with memchr, each terminator's position kept until the scan passes it, so
 * a chunk is read once however its lines end; the bytes between go into lp->line in one copy. */
void logparse_feed_at(struct logparse *lp, const char *data, size_t len, uint64_t t_ns)
{
    const char *end = data + len, *nl = NULL, *cr = NULL;
    const char *p = data;
    while (p < end) {
        if (*p == '\n') {
            if (lp->prev_cr)
                lp->prev_cr = 0; /* CRLF: the CR already ended the line */
            else
                flush_line(lp);
            p++;
            continue;
        }
        if (*p == '\r') {
            flush_line(lp);
            lp->prev_cr = 1;
            p++;
            continue;
        }
        if (!lp->t_line_ns)
            lp->t_line_ns = t_ns; /* the line's first byte */
        if (nl != end && (!nl || nl < p)) {
            nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl)
                nl = end;
        }
        if (cr != end && (!cr || cr < p)) {
            cr = memchr(p, '\r', (size_t)(end - p));
            if (!cr)
                cr = end;
        }
        const char *stop = nl < cr ? nl : cr;
        size_t n = (size_t)(stop - p), room = sizeof lp->line - lp->line_len;
        if (n > room) {
            lp->line_truncated = 1;
            n = room;
        }
        memcpy(lp->line + lp->line_len, p, n);
        lp->line_len += n;
        lp->prev_cr = 0;
        p = stop;
    }
    lp->offset += len;
}

void logparse_finish(struct logparse *lp)
{
    if (lp->line_len > 0)
        flush_line(lp);
    lp->prev_cr = 0;
}

long logparse_follow(struct logparse *lp, int fd)
{
    return logparse_follow_at(lp, fd, 0);
}

long logparse_follow_at(struct logparse *lp, int fd, uint64_t t_ns)
{
    char chunk[16384];
    long total = 0;
    for (;;) {
        ssize_t n = pread(fd, chunk, sizeof chunk, (off_t)lp->offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0)
            break;
        logparse_feed_at(lp, chunk, (size_t)n, t_ns);
        total += n;
    }
    return total;
}

int logparse_file(const char *path, struct startup_info *out, char *err, size_t err_len)
{
    struct logparse *lp = xmalloc(sizeof *lp);
    logparse_init(lp);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
        *out = lp->info;
        free(lp);
        return -1;
    }
    long n = logparse_follow(lp, fd);
    int saved = errno;
    close(fd);
    logparse_finish(lp);
    *out = lp->info;
    free(lp);
    if (n < 0) {
        snprintf(err, err_len, "cannot read %s: %s", path, strerror(saved));
        return -1;
    }
    return 0;
}

/* ---- JSON ---- */

static void json_key(struct buf *b, int *first, const char *k)
{
    if (!*first)
        buf_putc(b, ',');
    *first = 0;
    buf_json_str(b, k);
    buf_putc(b, ':');
}

static void json_i64(struct buf *b, int *first, const char *k, int64_t v)
{
    json_key(b, first, k);
    if (v < 0)
        buf_puts(b, "null");
    else
        buf_printf(b, "%lld", (long long)v);
}

static void json_d(struct buf *b, int *first, const char *k, double v)
{
    json_key(b, first, k);
    buf_json_double(b, v); /* NAN -> null */
}

static void json_bool(struct buf *b, int *first, const char *k, int v)
{
    json_key(b, first, k);
    buf_puts(b, v ? "true" : "false");
}

static void json_str_or_null(struct buf *b, int *first, const char *k, const char *v)
{
    json_key(b, first, k);
    if (v[0])
        buf_json_str(b, v);
    else
        buf_puts(b, "null");
}

static void json_timeline(struct buf *b, int *first, const struct startup_info *si)
{
    json_key(b, first, "timeline");
    buf_putc(b, '[');
    for (int i = 0; i < si->n_timeline; i++) {
        const struct startup_line *e = &si->timeline[i];
        int f = 1;
        if (i)
            buf_putc(b, ',');
        buf_putc(b, '{');
        json_d(b, &f, "t_s", e->t_first_s);
        json_d(b, &f, "t_last_s", e->t_last_s);
        json_i64(b, &f, "n", (int64_t)e->n_seen);
        json_bool(b, &f, "recognised", e->recognised);
        json_key(b, &f, "line");
        buf_json_str(b, e->text);
        buf_putc(b, '}');
    }
    buf_putc(b, ']');
    json_i64(b, first, "n_timeline_dropped", (int64_t)si->n_timeline_dropped);
}

enum buf_status startup_info_to_json(const struct startup_info *si, struct buf *out)
{
    int first = 1, pf = 1;
    size_t len0 = out->len;
    buf_putc(out, '{');
    json_key(out, &first, "server");
    buf_json_str(out, logparse_server_str(si->server));
    json_key(out, &first, "phases_s");
    buf_putc(out, '{');
    for (int i = 0; i < STARTUP_PHASE__COUNT; i++)
        json_d(out, &pf, phase_names[i], si->phase_s[i]);
    buf_putc(out, '}');
    json_key(out, &first, "phase_sources");
    buf_putc(out, '{');
    pf = 1;
    for (int i = 0; i < STARTUP_PHASE__COUNT; i++) {
        json_key(out, &pf, phase_names[i]);
        buf_json_str(out, startup_phase_source_str(si->phase_source[i]));
    }
    buf_putc(out, '}');
    json_d(out, &first, "dynamo_s", si->dynamo_s);
    json_d(out, &first, "compilation_s", si->compilation_s);
    json_d(out, &first, "profile_s", si->profile_s);
    json_i64(out, &first, "kv_gpu_blocks", si->kv_gpu_blocks);
    json_i64(out, &first, "kv_cache_tokens", si->kv_cache_tokens);
    json_d(out, &first, "max_concurrency", si->max_concurrency);
    json_i64(out, &first, "max_concurrency_len_tokens", si->max_concurrency_len);
    json_d(out, &first, "available_kv_gib", si->available_kv_gib);
    json_d(out, &first, "kv_cache_gib", si->kv_cache_gib);
    json_d(out, &first, "weights_gib", si->weights_gib);
    json_d(out, &first, "graph_gib", si->graph_gib);
    json_d(out, &first, "upload_s", si->upload_s);
    json_d(out, &first, "upload_gbps", si->upload_gbps);
    json_d(out, &first, "kv_cache_mib", si->kv_cache_mib);
    json_d(out, &first, "kv_buffer_mib", si->kv_buffer_mib);
    json_i64(out, &first, "context_len_tokens", si->context_len);
    json_d(out, &first, "weights_mib", si->weights_mib);
    json_i64(out, &first, "n_ctx_tokens", si->n_ctx_tokens);
    json_i64(out, &first, "n_ctx_per_seq_tokens", si->n_ctx_per_seq_tokens);
    json_d(out, &first, "t_load_start_s", si->t_load_start_s);
    json_d(out, &first, "t_context_start_s", si->t_context_start_s);
    json_d(out, &first, "t_warmup_start_s", si->t_warmup_start_s);
    json_d(out, &first, "t_model_loaded_s", si->t_model_loaded_s);
    json_d(out, &first, "t_listening_s", si->t_listening_s);
    json_i64(out, &first, "n_warmup_shapes", si->n_warmup_shapes);
    json_bool(out, &first, "warmup_skipped", si->warmup_skipped);
    json_bool(out, &first, "saw_load_start", si->saw_load_start);
    json_bool(out, &first, "saw_listening", si->saw_listening);
    json_bool(out, &first, "saw_startup_complete", si->saw_startup_complete);
    json_str_or_null(out, &first, "api_url", si->api_url);
    json_str_or_null(out, &first, "error_message", si->error_message);
    json_i64(out, &first, "estimated_max_model_len_tokens", si->estimated_max_model_len);
    json_timeline(out, &first, si);
    enum buf_status st = buf_putc(out, '}');
    if (st != BUF_OK && out->data) {
        out->len = len0; /* cap hit somewhere: leave nothing half-written */
        out->data[len0] = 0;
    }
    return st;
}
