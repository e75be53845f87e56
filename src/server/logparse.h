/* logparse: start-up phases and capacity figures read from a server's log: vLLM (0.10-era and
 * newer wordings), the embedded runtime (`slmprobe serve`, which logs in vLLM's wording),
 * llama.cpp's llama-server and SGLang. Lines may carry prefixes ("(EngineCore_DP0 pid=268) ",
 * "INFO 11-22 21:30:16 [core.py:90] ", "serve: "), so nothing is anchored at the line start;
 * numbers may have thousands separators. Works on a whole file or incrementally (any chunking,
 * so a live log can be followed). Every dialect is tried on every line (a `--serve-cmd` server
 * is detected per line). Durations come from what the server printed; only when bytes are fed
 * with their arrival time (logparse_feed_at / logparse_follow_at, as target.c does while it
 * follows the log) are phases of a server that prints none (llama.cpp) inferred from when their
 * marking lines arrived, and each phase says which it is (phase_source). Without arrival times
 * nothing is inferred (unseen values stay NAN / -1). A bounded timeline keeps the distinct lines
 * with their arrival offsets from launch, so an unknown server still shows its progress. It
 * does not judge readiness (target.h polls /health for that).
 *
 *   struct logparse lp;
 *   logparse_init(&lp);
 *   lp.t_launch_ns = t_fork_ns;   // offsets are from it (0: from the first stamped byte)
 *   while ((n = read(fd, chunk, sizeof chunk)) > 0)
 *       logparse_feed_at(&lp, chunk, n, clock_now_ns());
 *   logparse_finish(&lp);         // a last line without '\n'
 *   if (!isnan(lp.info.phase_s[STARTUP_PHASE_WEIGHTS_LOAD])) ...
 *
 * Recognised (substring match; first is the phase/field set):
 *   vLLM / embedded:
 *     "Starting to load model %s..."                          -> saw_load_start
 *     "Loading weights took %.2f seconds"                     -> weights_load
 *     "Model loading took X GiB[ memory] and Y seconds"       -> weights_gib, model_load
 *     "Dynamo bytecode transform time: X s"                   -> dynamo_s
 *     "torch.compile takes|took X s in total"                 -> torch_compile
 *     "Available KV cache memory: X GiB"  (may be negative)   -> available_kv_gib
 *     "KV cache allocation took X seconds (Y GiB, ...)"       -> kv_cache_alloc (embedded)
 *     "GPU KV cache size: N tokens"                           -> kv_cache_tokens
 *     "Maximum concurrency for N tokens per request: Xx"      -> max_concurrency(_len)
 *        (two-line form and one-line form after "GPU KV cache size: N tokens, ")
 *     "Graph capturing finished in N secs, took X GiB"        -> warmup_graph_capture, graph_gib
 *     "Weights uploaded at X GB/s (Y GB in Z s"  (embedded cuda) -> upload_gbps, upload_s
 *     "Warm-up took X seconds (N batch shapes)"               -> warmup_graph_capture (embedded)
 *     "init engine (profile, create kv cache, warmup model) took X s[econds][ (compilation: Y s)]"
 *                                                             -> engine_init, compilation_s
 *     older and newer releases (tests/data/vllm_v*.log, vllm_2026_*.log, each with its source):
 *     "Loading model weights took X GB" (0.6-0.7)             -> weights_gib
 *     "# GPU blocks: N" (0.6-0.7)                             -> kv_gpu_blocks
 *     "Memory profiling results: duration=X seconds" (0.6) and
 *     "Initial profiling/warmup run took X s" (2026)          -> profile_s
 *     "EngineCore failed to start."                           -> error_message
 *     Any prefix in front is fine: "(EngineCore_DP0 pid=N) ", "(EngineCore_0 pid=N) (VllmWorker
 *     TP0 pid=M) ", Ray Serve's "(ServeReplica:app:LLMServer:name pid=N) (EngineCore pid=M)
 *     (RayWorkerProc pid=K) (Worker pid=K) ", "[Stage-0] ", a container's "2024-10-07T22:54:54,595
 *     [INFO ] W-9000-model_1.0-stdout MODEL_LOG - ". A line none of this knows is kept in the
 *     timeline (recognised 0), or counted in n_timeline_dropped when the timeline is full.
 *     "Starting vLLM API server N on URL"                     -> api_url
 *     "Application startup complete."                         -> saw_startup_complete
 *     failures: "Free memory on device", "No available memory for the cache blocks",
 *       "estimated maximum model length is N", "max_model_len (N) is greater than the derived"
 *       -> error_message (+ estimated_max_model_len)
 *   llama.cpp: ": loading model" (saw_load_start, t_load_start_s), "model loaded" (also the JSON
 *     log's "message":"model loaded"; t_model_loaded_s), "server is listening on" (t_listening_s),
 *     "llama_kv_cache[_unified]: size = X MiB (N cells" (kv_cache_tokens = N, kv_cache_mib),
 *     "KV self size = X MiB" (older builds: kv_cache_mib), "KV buffer size = X MiB" (summed into
 *     kv_buffer_mib), "model buffer size = X MiB" (summed into weights_mib), ": n_ctx = N"
 *     (n_ctx_tokens), ": n_ctx_per_seq = N" / ": n_ctx_seq = N" (n_ctx_per_seq_tokens), the first
 *     "llama_context:" / "llama_new_context_with_model:" / "llama_init_from_model:" /
 *     "llama_kv_cache" line (t_context_start_s), "warming up the model" (t_warmup_start_s),
 *     "failed to load model" (error). Inferred from arrival times (source ARRIVAL):
 *       weights_load          load start -> context start (else model loaded)
 *       kv_cache_alloc        context start -> warming up (else model loaded)
 *       warmup_graph_capture  warming up -> model loaded (else listening)
 *       engine_init           context start -> model loaded (else listening)
 *   SGLang: "Load weight end. elapsed=X s" (weights_load), "KV Cache is allocated. #tokens: N"
 *     (kv_cache_tokens), "Capture cuda graph end. Time elapsed: X s" (warmup_graph_capture),
 *     "max_total_num_tokens=N" (kv_cache_tokens), "context_len=N", "The server is fired up and
 *     ready to roll!" (saw_startup_complete), Python "Traceback"/"Error:" after it stays unparsed.
 *
 * Threads: a struct logparse is used by one thread at a time. */
#ifndef SLM_PROBE_LOGPARSE_H
#define SLM_PROBE_LOGPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum startup_phase {
    STARTUP_PHASE_WEIGHTS_LOAD = 0,     /* reading weights */
    STARTUP_PHASE_MODEL_LOAD,           /* whole model load (weights included) */
    STARTUP_PHASE_TORCH_COMPILE,
    STARTUP_PHASE_KV_CACHE_ALLOC,
    STARTUP_PHASE_WARMUP_GRAPH_CAPTURE, /* CUDA graphs (vLLM/SGLang) or warm-up (embedded) */
    STARTUP_PHASE_ENGINE_INIT,          /* profile + KV cache + warm-up total */
    STARTUP_PHASE__COUNT
};
/* "weights_load", "model_load", "torch_compile", "kv_cache_alloc", "warmup_graph_capture",
 * "engine_init". */
const char *startup_phase_str(enum startup_phase p);

/* Where a phase's figure comes from. */
enum startup_phase_source {
    STARTUP_PHASE_SOURCE_NONE = 0, /* not known (phase_s is NAN) */
    STARTUP_PHASE_SOURCE_LOGGED,   /* a duration the server printed */
    STARTUP_PHASE_SOURCE_ARRIVAL,  /* difference of two lines' arrival times (resolution: how often
                                      the log was read; target.c: every poll, 20-50 ms) */
};
const char *startup_phase_source_str(enum startup_phase_source s); /* "none", "logged", "arrival" */

/* One distinct log line of the timeline. Lines that differ only in digits (a progress bar, a
 * repeated per-layer line) count as the same line. */
#define STARTUP_TIMELINE_MAX 48
#define STARTUP_LINE_TEXT_BYTES 160
struct startup_line {
    double t_first_s;  /* arrival offset from launch of its first occurrence; NAN unstamped */
    double t_last_s;   /* of its last occurrence */
    uint32_t n_seen;
    int recognised;    /* a known dialect matched it */
    uint64_t key;      /* hash of the line, digits folded */
    char text[STARTUP_LINE_TEXT_BYTES]; /* first occurrence, cut at a UTF-8 boundary */
};

enum logparse_server {
    LOGPARSE_SERVER_UNKNOWN = 0,
    LOGPARSE_SERVER_VLLM,     /* vLLM wording (the embedded runtime too) */
    LOGPARSE_SERVER_LLAMACPP,
    LOGPARSE_SERVER_SGLANG,
};
const char *logparse_server_str(enum logparse_server s); /* "unknown", "vllm", "llamacpp", ... */

/* Unseen doubles are NAN, unseen integers -1, unseen strings "". With several ranks (TP > 1)
 * a repeated per-rank line keeps the first value, except kv_buffer_mib which sums. */
struct startup_info {
    enum logparse_server server;      /* guessed from the wording */
    double phase_s[STARTUP_PHASE__COUNT];
    enum startup_phase_source phase_source[STARTUP_PHASE__COUNT];
    double dynamo_s;                  /* vLLM: Dynamo bytecode transform */
    double compilation_s;             /* vLLM: "(compilation: X s)" of engine init */
    double profile_s;                 /* vLLM: memory profiling / "Initial profiling/warmup run"
                                         (inside engine_init; not a phase of its own) */
    int64_t kv_gpu_blocks;            /* vLLM up to early 2025: "# GPU blocks: N" (tokens = N x
                                         block size, which the log does not print) */
    int64_t kv_cache_tokens;          /* GPU KV cache size / llama.cpp cells / SGLang #tokens */
    double max_concurrency;           /* "Maximum concurrency ...: Xx" */
    int64_t max_concurrency_len;      /* its "for N tokens per request" */
    double available_kv_gib;          /* may be negative (just before a failure) */
    double kv_cache_gib;              /* embedded: KV pool size in the allocation line */
    double weights_gib;               /* "Model loading took X GiB" */
    double graph_gib;                 /* "Graph capturing finished ..., took X GiB" */
    double upload_s;                  /* embedded --device cuda: "Weights uploaded at X GB/s (Y GB
                                         in Z s; ...)" (inside model_load) */
    double upload_gbps;               /* its X */
    double kv_cache_mib;              /* llama.cpp "llama_kv_cache: size = X MiB" */
    double kv_buffer_mib;             /* llama.cpp "KV buffer size = X MiB" (sum over buffers) */
    int64_t context_len;              /* SGLang context_len=N */
    int n_warmup_shapes;              /* embedded: "(N batch shapes)" */
    int warmup_skipped;               /* embedded: "Warm-up skipped" */
    int saw_load_start;               /* "Starting to load model" / "loading model" */
    int saw_model_loaded;             /* llama.cpp "model loaded" */
    int saw_listening;                /* API server line / llama.cpp "server is listening" */
    int saw_startup_complete;         /* "Application startup complete." / SGLang "fired up" */
    char api_url[128];                /* "http://0.0.0.0:8000" from the API server line */
    char error_message[512];          /* first recognised start-up failure, line text trimmed */
    int error_is_generic;             /* it is vLLM's "EngineCore failed to start." (a specific
                                         failure line seen later replaces it) */
    int64_t estimated_max_model_len;  /* from the max-seq-len failure */
    double weights_mib;               /* llama.cpp "model buffer size = X MiB" (sum over buffers) */
    int64_t n_ctx_tokens;             /* llama.cpp ": n_ctx = N" (the whole context, all slots) */
    int64_t n_ctx_per_seq_tokens;     /* llama.cpp "n_ctx_per_seq" / "n_ctx_seq" */
    /* arrival offsets (s from launch) of milestones; NAN unseen or fed without arrival times */
    double t_load_start_s;
    double t_context_start_s;         /* llama.cpp: first context/KV line */
    double t_warmup_start_s;          /* llama.cpp: "warming up the model" */
    double t_model_loaded_s;          /* llama.cpp: "model loaded" */
    double t_listening_s;             /* "server is listening on" / vLLM API server line */
    double t_last_line_s;             /* the latest stamped line */
    /* distinct lines in arrival order; when full, a recognised line evicts the oldest
     * unrecognised one and an unrecognised line replaces the newest unrecognised one (or is
     * dropped), so the end of start-up stays visible. */
    struct startup_line timeline[STARTUP_TIMELINE_MAX];
    int n_timeline;
    uint64_t n_timeline_dropped;      /* distinct lines that found no slot */
    uint64_t n_lines;                 /* lines seen */
};

void startup_info_init(struct startup_info *si); /* all unseen */

/* The start-up time the server's log accounts for with durations it printed (source LOGGED),
 * nested phases counted once: max(model_load, weights_load) + max(engine_init, torch_compile +
 * kv_cache_alloc + warmup_graph_capture). NAN when no logged phase was seen. */
double startup_logged_sum_s(const struct startup_info *si);
/* 1 when the logged durations (startup_logged_sum_s) exceed the measured launch-to-ready time measured_s by more than STARTUP_LOGGED_SLACK_S: shares of the
 * measured time would go above 100% (a log replayed from another run, a server clock that
 * disagrees, time before our fork). 0 otherwise, also when either is unknown. */
#define STARTUP_LOGGED_SLACK_S 0.05
int startup_logged_exceeds(const struct startup_info *si, double measured_s);

/* Parses one complete line (no terminator needed; a trailing '\r' or '\n' is ignored) into si.
 * Lines longer than 64 KiB are looked at in their first 64 KiB only. */
void logparse_line(struct startup_info *si, const char *line, size_t len);
/* The same, with the line's arrival offset from launch in seconds (NAN: unknown; nothing is
 * inferred from it then). */
void logparse_line_at(struct startup_info *si, const char *line, size_t len, double t_arrival_s);

/* Incremental parser: splits on '\n' (and a lone '\r', as progress bars print) across chunks. */
struct logparse {
    struct startup_info info;
    char line[8192];   /* current partial line; longer lines are truncated (still parsed) */
    size_t line_len;
    int line_truncated;
    int prev_cr;
    uint64_t offset;   /* bytes fed so far (logparse_follow uses it as the file offset) */
    uint64_t t_launch_ns; /* set by the caller after init: arrival offsets are from it; 0: from
                             the first stamped byte */
    uint64_t t_line_ns;   /* arrival of the current line's first byte (0: unstamped) */
};
void logparse_init(struct logparse *lp);
/* Feeds bytes without arrival times (nothing is inferred from them). */
void logparse_feed(struct logparse *lp, const char *data, size_t len);
/* Feeds bytes that arrived at t_ns (clock_now_ns(); 0 = unknown). A line is stamped with the
 * arrival of its first byte. */
void logparse_feed_at(struct logparse *lp, const char *data, size_t len, uint64_t t_ns);
void logparse_finish(struct logparse *lp); /* parses a pending unterminated line */
/* Reads fd from lp->offset (pread) to its current end and feeds the bytes; a live log can be
 * followed by calling it repeatedly. Returns bytes read (0 at end), or -1 on a read error.
 * logparse_follow_at stamps the bytes with t_ns (the time of the read). */
long logparse_follow(struct logparse *lp, int fd);
long logparse_follow_at(struct logparse *lp, int fd, uint64_t t_ns);

/* Whole file: init + feed + finish. 0, or -1 with a message in err (cannot open). */
int logparse_file(const char *path, struct startup_info *out, char *err, size_t err_len);

/* Appends si as one JSON object with unit-suffixed keys ("phases_s": {"weights_load": 1.2, ...},
 * "phase_sources": {"weights_load": "arrival", ...}, "kv_cache_tokens", "weights_mib", ...,
 * "timeline": [{"t_s": 0.41, "t_last_s": 0.41, "n": 1, "recognised": true, "line": "..."}]);
 * unseen values are null. */
enum buf_status startup_info_to_json(const struct startup_info *si, struct buf *out);

#endif
