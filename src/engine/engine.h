/* engine: the runtime's public face. Owns the model, the KV cache (kv.h), the scheduler
 * (sched.h) and the engine thread that runs scheduler steps (continuous batching). The HTTP layer
 * (server.c) submits requests and receives token events through a callback; it never touches the
 * scheduler or the KV cache directly. This module knows nothing about HTTP or JSON.
 *
 *   struct engine_config cfg;
 *   engine_config_defaults(&cfg);
 *   cfg.max_model_len = 2048;
 *   struct engine *e = engine_new(&cfg, model, err, sizeof err); // sizes + allocates the KV pool,
 *                                                               // logs the KV capacity lines
 *   engine_warmup(e);                  // cfg.warmup: each kernel path once (default), one step
 *                                      // per batch shape, or none; on cuda: CUDA graph capture
 *                                      // (none = --enforce-eager: no graphs)
 *   engine_start(e);                   // engine thread
 *   engine_submit(e, &req, on_event, ctx);   // from any thread
 *   ...
 *   engine_stop(e);                    // finishes in-flight work? no: aborts, joins the thread
 *   engine_free(e);                    // model is not freed (caller owns it)
 *
 * Start-up log lines (stderr, module "engine"); the probe's log parser relies on this wording:
 *   "Available KV cache memory: %.2f GiB"                 (may be negative, before a failure)
 *   "KV cache allocation took %.3f seconds (%.2f GiB, %d blocks of %d tokens)"
 *   "KV cache pool committed at %.2f GB/s (%d threads, transparent huge pages: %s)"
 *   "GPU KV cache size: %s tokens"                        (%s with thousands separators)
 *   "Maximum concurrency for %s tokens per request: %.2fx"
 *   "Warm-up took %.3f seconds (%d batch shapes, --warmup %s)"  (N = forward steps run)
 *   or  "Warm-up skipped (--enforce-eager)"                (--warmup none)
 * With --device cuda (forward_dev.h; sizing in docs/serve.md) instead of the pool lines:
 *   "Using device cuda:%d (%s, compute capability %d.%d): %.2f GiB total, %.2f GiB free"
 *   "Model loading took %.4f GiB and %.6f seconds"         (device weights; host read + the
 *                                                           device load, upload included)
 *   "Weights uploaded at %.2f GB/s (%.2f GB in %.3f s; device memory in use %.2f -> %.2f GiB)"
 *   "Memory profiling takes %.2f seconds. ..."             (the budget's terms, in GiB)
 *   "KV cache allocation took %.3f seconds (%.2f GiB, %d blocks of %d tokens, device memory)"
 *   and from engine_warmup:
 *   "Capturing CUDA graphs (decode, FULL): %d sizes (%d..%d)"
 *   "Graph capturing finished in %.2f secs, took %.2f GiB" (vLLM prints %.0f secs)
 *   or  "Warm-up skipped (--enforce-eager)"                (no graphs: every step eager)
 */
#ifndef SLM_ENGINE_H
#define SLM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/model.h"
#include "util/clock.h"

/* What engine_warmup runs before the server is ready. */
enum engine_warmup_mode {
    ENGINE_WARMUP_KERNELS = 0, /* each kernel path once: a prefill (sgemm, tiled attention), one
                                  decode token (sgemv, per-token attention), one small decode
                                  batch (the 2..32-row kernel); the default */
    ENGINE_WARMUP_SHAPES,      /* one step per batch shape: prefill 1, 2, 4, ... tokens up to
                                  max_num_batched_tokens, decode 2, 4, ... up to max_num_seqs
                                  (the analogue of CUDA graph capture) */
    ENGINE_WARMUP_NONE,        /* no warm-up (vLLM's --enforce-eager) */
};
const char *engine_warmup_mode_str(enum engine_warmup_mode m); /* "kernels", "shapes", "none" */
/* "kernels" / "shapes" / "none" -> *out. 0, or -1 if s is none of them. */
int engine_warmup_mode_parse(const char *s, enum engine_warmup_mode *out);

/* Where the forward pass runs. */
enum engine_device {
    ENGINE_DEVICE_CPU = 0, /* forward.h, KV pool in host memory sized from device_memory_bytes */
    ENGINE_DEVICE_CUDA,    /* forward_dev.h: weights, activations and KV pool in GPU memory,
                              sized from the device's real memory (cudaMemGetInfo) */
};
const char *engine_device_str(enum engine_device d); /* "cpu", "cuda" */
/* "cpu" / "cuda" -> *out. 0, or -1 if s is neither. */
int engine_device_parse(const char *s, enum engine_device *out);

struct engine_config {
    enum engine_device device;      /* default ENGINE_DEVICE_CPU */
    int device_ordinal;             /* CUDA device; default 0 */
    mono_ns host_load_ns;           /* cuda: time the caller spent loading the file into host
                                       memory; the "Model loading took" line includes it */
    int block_size;                 /* tokens per KV block; default 16 */
    uint64_t device_memory_bytes;   /* simulated device size; default 4 GiB (cpu only: on cuda
                                       the device's total memory is used) */
    double gpu_memory_utilization;  /* fraction of device_memory_bytes; default 0.9 */
    uint64_t kv_cache_memory_bytes; /* if > 0: the KV pool size, utilization ignored */
    int max_model_len;              /* 0: the model's n_ctx_train */
    int max_num_seqs;               /* default 256 */
    int max_num_batched_tokens;     /* default 2048 */
    int enable_chunked_prefill;     /* default 1 */
    int enable_prefix_caching;      /* default 1 */
    enum engine_warmup_mode warmup; /* default ENGINE_WARMUP_KERNELS */
    int n_threads;                  /* compute threads; 0 = number of CPUs */
    int debug_check_invariants;     /* 1: check KV + scheduler invariants after every step on the
                                       engine thread; abort() with the message on failure */
};

void engine_config_defaults(struct engine_config *cfg);

struct sampling_params {
    int max_tokens;     /* >= 1 */
    float temperature;  /* 0 = greedy */
    float top_p;        /* (0, 1] */
    uint64_t seed;      /* used when has_seed; else a per-request seed from the engine's RNG */
    int has_seed;
    int ignore_eos;
    int min_tokens;     /* EOS is suppressed until this many tokens were generated */
};

enum engine_finish {
    ENGINE_FINISH_NONE = 0, /* not finished: a token event */
    ENGINE_FINISH_LENGTH,   /* max_tokens reached (or max_model_len) */
    ENGINE_FINISH_EOS,      /* EOS sampled (reported to clients as "stop") */
    ENGINE_FINISH_ABORT,    /* engine_abort() or engine_stop() */
};
const char *engine_finish_str(enum engine_finish f); /* "length", "stop", "abort" */

/* One event per generated token; the last event of a request has finish != NONE (and may carry
 * the last token, or token = -1). After the last event the callback is never called again for
 * that request. Timestamps are clock_now_ns(). */
struct engine_event {
    uint64_t req_id;
    int32_t token;          /* -1: none */
    enum engine_finish finish;
    int n_prompt;           /* prompt tokens */
    int n_cached;           /* prompt tokens served from the prefix cache (last admission) */
    int n_generated;        /* tokens generated so far, this one included */
    int n_preempted;        /* times this request was preempted */
    mono_ns t_arrival_ns;   /* engine_submit */
    mono_ns t_scheduled_ns; /* first scheduled (end of queue time) */
    mono_ns t_first_token_ns;
    mono_ns t_event_ns;
};

/* Called on the engine thread. Must be quick and must not call back into the engine except
 * engine_abort. ud is the submit's ud. */
typedef void (*engine_event_cb)(void *ud, const struct engine_event *ev);

struct engine_request {
    const int32_t *prompt;  /* copied by engine_submit */
    int n_prompt;           /* >= 1 */
    struct sampling_params sp;
};

enum engine_status {
    ENGINE_OK = 0,
    ENGINE_ERR_INVALID,   /* bad argument (n_prompt < 1, tokens out of range, ...) */
    ENGINE_ERR_TOO_LONG,  /* n_prompt + max_tokens > max_model_len */
    ENGINE_ERR_STOPPED,   /* engine stopping: no new requests */
    ENGINE_ERR_NOMEM,     /* KV pool cannot hold one max_model_len sequence (engine_new) */
};
const char *engine_status_str(enum engine_status st);

/* Sizes the KV pool (vLLM semantics, see docs/serve.md), allocates and touches it, allocates the
 * step workspace. On cuda (cfg.device): probes the device, checks its free memory, uploads the
 * weights, runs the profile step, sizes the pool from the device's memory and allocates it there
 * (forward_dev.h); fails with the reason when the build has no CUDA backend or no device. NULL with a message in err when it cannot (e.g. one max_model_len sequence does
 * not fit: the message gives needed and available bytes and the largest length that fits).
 * The model must outlive the engine. Main thread. */
struct engine *engine_new(const struct engine_config *cfg, struct model *model, char *err,
                          size_t err_len);
/* Runs the dummy steps cfg.warmup asks for (see enum engine_warmup_mode); leaves the KV cache and
 * its counters as they were. Before engine_start. Returns the number of forward steps run. On
 * cuda: captures the decode CUDA graphs (vLLM's sizes up to min(max_num_seqs,
 * max_num_batched_tokens, 512), sizing.h) unless cfg.warmup is none, and returns how many. */
int engine_warmup(struct engine *e);
int engine_start(struct engine *e);    /* starts the engine thread; 0 or -1 */
/* Any thread. On success *req_id_out is set and events will follow via cb(ud, ...). */
enum engine_status engine_submit(struct engine *e, const struct engine_request *req,
                                 engine_event_cb cb, void *ud, uint64_t *req_id_out);
/* Any thread. Asynchronous: the request's blocks are freed on the engine thread, which then sends
 * a final ABORT event. Unknown or finished ids are ignored. */
void engine_abort(struct engine *e, uint64_t req_id);
/* Stops accepting requests, aborts everything in flight (final events are sent), joins. */
void engine_stop(struct engine *e);
void engine_free(struct engine *e); /* NULL-safe; after engine_stop */

/* A consistent snapshot for /metrics and tests. Any thread. */
struct engine_stats {
    int n_running;
    int n_waiting;
    int n_blocks_total;       /* num_gpu_blocks */
    int n_blocks_free;        /* never used or evicted */
    int n_blocks_evictable;   /* cached, refcount 0 (prefix cache) */
    int n_blocks_in_use;      /* refcount > 0 */
    double kv_usage;          /* in_use / total, 0..1 */
    uint64_t prompt_tokens_total;
    uint64_t generation_tokens_total;
    uint64_t preemptions_total;
    uint64_t finished_length_total;
    uint64_t finished_stop_total;
    uint64_t finished_abort_total;
    uint64_t prefix_cache_queries_total; /* tokens */
    uint64_t prefix_cache_hits_total;    /* tokens */
    uint64_t steps_total;
    uint64_t step_tokens_total;
    int n_running_peak;       /* most sequences running at once since start */
    int n_step_tokens_peak;   /* most tokens computed in one step */
};
void engine_get_stats(struct engine *e, struct engine_stats *out);

/* Effective configuration after sizing (max_model_len resolved, n_blocks, bytes). */
struct engine_info {
    int max_model_len;
    int block_size;
    int n_blocks;
    uint64_t kv_bytes;            /* pool bytes */
    uint64_t kv_bytes_per_token;
    uint64_t workspace_bytes;     /* cpu: forward + scheduler + samplers; cuda: load + profile */
    uint64_t kv_capacity_tokens;  /* n_blocks * block_size */
    double max_concurrency;       /* n_blocks / cdiv(max_model_len, block_size) */
    int enable_prefix_caching;
    int max_num_seqs;
    int max_num_batched_tokens;
    double gpu_memory_utilization;
    uint64_t device_memory_bytes;
    mono_ns kv_alloc_ns;
    mono_ns warmup_ns;
    int n_warmup_shapes;          /* forward steps the warm-up ran */
    enum engine_warmup_mode warmup_mode;
    unsigned warmup_paths;        /* bit p set: the warm-up ran forward path p (forward.h) */
    uint64_t kv_touch_ns;         /* the pool's parallel first touch (part of kv_alloc_ns) */
    int kv_touch_threads;
    uint64_t kv_thp_bytes;        /* pool bytes backed by transparent huge pages (approx.) */
    /* --device cuda only (zero on cpu): */
    enum engine_device device;
    char device_name[96];
    uint64_t dev_total_bytes;          /* == device_memory_bytes */
    uint64_t dev_used_at_start_bytes;  /* total - free when engine_new started */
    uint64_t dev_weight_bytes;
    uint64_t dev_load_other_bytes;     /* allocated by the load besides the weights */
    uint64_t dev_activation_peak_bytes;
    double dev_upload_gbps;
    mono_ns dev_upload_ns;             /* host -> HBM copy (dev_load_stats) */
    mono_ns dev_load_ns;               /* all of dev_forward_new: context, cuBLAS, upload; in the
                                          "Model loading took" line, not in engine init */
    int n_graphs;                      /* decode batch sizes captured as CUDA graphs */
    uint64_t dev_graph_bytes;
};
void engine_get_info(struct engine *e, struct engine_info *out);

/* Empties the prefix cache (evictable blocks become free; blocks in use are kept but no longer
 * findable). Any thread; takes effect before the next step. Returns 0. */
int engine_reset_prefix_cache(struct engine *e);

/* Test hook: checks the KV block invariants (free + evictable + in use = pool; refcounts equal
 * the block tables holding each block) and the scheduler's (queues, states, running <=
 * max_num_seqs). Runs on the engine thread between steps (the caller waits), or directly when
 * no engine thread runs or when called from the event callback. 0 if they hold, -1 with a
 * message. Any thread. */
int engine_check_invariants(struct engine *e, char *err, size_t err_len);

#endif
