/* engine: sizing and allocation of the KV pool (vLLM's rules), warm-up, and the engine thread
 * that runs scheduler steps (sched.c) while other threads submit and abort requests. The engine
 * thread sleeps on a condition variable when there is nothing to do. One mutex guards what other
 * threads touch (the incoming queue, the registry of live requests, abort/reset/check requests,
 * the stats snapshot); the scheduler, the KV cache and the forward workspace belong to the engine
 * thread alone, and callbacks run with no lock held. It knows nothing about HTTP or JSON. */
#include "engine/engine.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/forward.h"
#include "engine/forward_dev.h"
#include "engine/kv.h"
#include "engine/sampler.h"
#include "engine/sched.h"
#include "engine/sizing.h"
#include "util/buf.h"
#include "util/log.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

struct engine {
    struct engine_config cfg;
    struct model *model;
    struct engine_info info;
    struct kv_cache kv;
    struct forward *fwd;
    struct sched sched;

    pthread_mutex_t mu;
    pthread_cond_t wake;     /* the engine thread waits here */
    pthread_cond_t check_cv; /* engine_check_invariants callers wait here */
    pthread_t thread;
    /* under mu */
    int thread_started, thread_exited, stopping, stopped;
    struct seq *in_head, *in_tail; /* submitted, not yet given to the scheduler */
    int n_in;
    struct seq *live_head; /* every request not yet freed */
    int n_abort_pending;
    int reset_requested;
    uint64_t check_req_gen, check_done_gen;
    int check_rc;
    char check_err[512];
    uint64_t next_id;
    uint64_t rng;
    struct engine_stats stats;
};

void engine_config_defaults(struct engine_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->block_size = 16;
    cfg->device_memory_bytes = 4ull << 30;
    cfg->gpu_memory_utilization = 0.9;
    cfg->kv_cache_memory_bytes = 0;
    cfg->max_model_len = 0;
    cfg->max_num_seqs = 256;
    cfg->max_num_batched_tokens = 2048;
    cfg->enable_chunked_prefill = 1;
    cfg->enable_prefix_caching = 1;
    cfg->warmup = ENGINE_WARMUP_KERNELS;
    cfg->n_threads = 0;
    cfg->debug_check_invariants = 0;
}

const char *engine_finish_str(enum engine_finish f)
{
    switch (f) {
    case ENGINE_FINISH_NONE:
        return "none";
    case ENGINE_FINISH_LENGTH:
        return "length";
    case ENGINE_FINISH_EOS:
        return "stop";
    case ENGINE_FINISH_ABORT:
        return "abort";
    }
    return "unknown";
}

const char *engine_device_str(enum engine_device d)
{
    return d == ENGINE_DEVICE_CUDA ? "cuda" : d == ENGINE_DEVICE_CPU ? "cpu" : "unknown";
}

int engine_device_parse(const char *s, enum engine_device *out)
{
    if (s && !strcmp(s, "cpu"))
        *out = ENGINE_DEVICE_CPU;
    else if (s && !strcmp(s, "cuda"))
        *out = ENGINE_DEVICE_CUDA;
    else
        return -1;
    return 0;
}

const char *engine_warmup_mode_str(enum engine_warmup_mode m)
{
    switch (m) {
    case ENGINE_WARMUP_KERNELS:
        return "kernels";
    case ENGINE_WARMUP_SHAPES:
        return "shapes";
    case ENGINE_WARMUP_NONE:
        return "none";
    }
    return "unknown";
}

int engine_warmup_mode_parse(const char *s, enum engine_warmup_mode *out)
{
    static const enum engine_warmup_mode all[] = {ENGINE_WARMUP_KERNELS, ENGINE_WARMUP_SHAPES,
                                                  ENGINE_WARMUP_NONE};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (s && !strcmp(s, engine_warmup_mode_str(all[i]))) {
            *out = all[i];
            return 0;
        }
    }
    return -1;
}

const char *engine_status_str(enum engine_status st)
{
    switch (st) {
    case ENGINE_OK:
        return "ok";
    case ENGINE_ERR_INVALID:
        return "invalid request";
    case ENGINE_ERR_TOO_LONG:
        return "request longer than max_model_len";
    case ENGINE_ERR_STOPPED:
        return "engine stopped";
    case ENGINE_ERR_NOMEM:
        return "KV cache too small";
    }
    return "unknown";
}

/* "447088" -> "447,088" (vLLM prints f"{n:,}"). */
static void fmt_thousands(uint64_t v, char *out, size_t out_len)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v);
    size_t o = 0;
    for (int i = 0; i < n && o + 1 < out_len; i++) {
        if (i > 0 && (n - i) % 3 == 0 && o + 2 < out_len)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int resolve_threads(int n)
{
    if (n > 0)
        return n;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

/* Publishes the stats snapshot. Under mu, on the engine thread (or with no engine thread). */
static void publish_stats_locked(struct engine *e)
{
    struct engine_stats *st = &e->stats;
    const struct sched *s = &e->sched;
    const struct kv_cache *kv = &e->kv;
    st->n_running = s->n_running;
    st->n_waiting = s->n_waiting;
    st->n_blocks_total = kv->n_blocks;
    st->n_blocks_free = kv->n_free;
    st->n_blocks_evictable = kv->n_evictable;
    st->n_blocks_in_use = kv->n_used;
    st->kv_usage = kv->n_blocks > 0 ? (double)kv->n_used / (double)kv->n_blocks : 0.0;
    st->prompt_tokens_total = s->c.prompt_tokens;
    st->generation_tokens_total = s->c.generation_tokens;
    st->preemptions_total = s->c.preemptions;
    st->finished_length_total = s->c.finished_length;
    st->finished_stop_total = s->c.finished_stop;
    st->finished_abort_total = s->c.finished_abort;
    st->prefix_cache_queries_total = kv->prefix_queries_tokens;
    st->prefix_cache_hits_total = kv->prefix_hits_tokens;
    st->steps_total = s->c.steps;
    st->step_tokens_total = s->c.step_tokens;
    st->n_running_peak = s->c.n_running_peak;
    st->n_step_tokens_peak = s->c.n_step_tokens_peak;
}

/* The scheduler's hook before a step's events: the published copy catches up first. */
static void publish_before_events(void *ud)
{
    struct engine *e = ud;
    pthread_mutex_lock(&e->mu);
    publish_stats_locked(e);
    pthread_mutex_unlock(&e->mu);
}

/* How the pool was committed: bandwidth, threads, whether huge pages backed it. */
static void log_kv_commit(const struct kv_cache *kv)
{
    const struct bigmem_info *bi = &kv->pool_info;
    double s = ns_to_s(bi->touch_ns);
    char thp[96];
    if (bi->thp_bytes > 0)
        snprintf(thp, sizeof thp, "yes, %.2f GiB", (double)bi->thp_bytes / GIB);
    else
        snprintf(thp, sizeof thp, "%s",
                 bi->thp_requested ? "requested, none granted" : "not available");
    log_info("engine",
             "KV cache pool committed at %.2f GB/s (%.3f s, %d threads, transparent "
             "huge pages: %s)",
             s > 0 ? (double)kv->pool_bytes / s / 1e9 : 0.0, s, bi->n_threads, thp);
}

/* Checks the configuration; resolves max_model_len and the thread count. 0, or -1 with err. */
static int config_resolve(struct engine_config *cfg, const struct model_config *mc, char *err,
                          size_t err_len)
{
    if (cfg->block_size < 1 || cfg->block_size > 4096) {
        snprintf(err, err_len, "block_size must be in [1, 4096], got %d", cfg->block_size);
        return -1;
    }
    if (cfg->max_model_len <= 0)
        cfg->max_model_len = mc->n_ctx_train;
    if (cfg->max_model_len > mc->n_ctx_train) {
        snprintf(err, err_len,
                 "User-specified max_model_len (%d) is greater than the derived max_model_len "
                 "(n_ctx_train=%d in the model's metadata)",
                 cfg->max_model_len, mc->n_ctx_train);
        return -1;
    }
    if (cfg->max_model_len < 2) {
        snprintf(err, err_len, "max_model_len must be at least 2, got %d", cfg->max_model_len);
        return -1;
    }
    if (cfg->max_num_seqs < 1 || cfg->max_num_batched_tokens < 1) {
        snprintf(err, err_len, "max_num_seqs (%d) and max_num_batched_tokens (%d) must be >= 1",
                 cfg->max_num_seqs, cfg->max_num_batched_tokens);
        return -1;
    }
    if ((cfg->kv_cache_memory_bytes == 0 || cfg->device == ENGINE_DEVICE_CUDA) &&
        !(cfg->gpu_memory_utilization > 0.0 && cfg->gpu_memory_utilization <= 1.0)) {
        snprintf(err, err_len, "gpu_memory_utilization must be in (0, 1], got %g",
                 cfg->gpu_memory_utilization);
        return -1;
    }
    if (!cfg->enable_chunked_prefill && cfg->max_num_batched_tokens < cfg->max_model_len) {
        snprintf(err, err_len,
                 "max_num_batched_tokens (%d) is smaller than max_model_len (%d). This "
                 "effectively limits the maximum sequence length to max_num_batched_tokens and "
                 "makes the engine reject longer sequences. Please increase "
                 "max_num_batched_tokens, decrease max_model_len or enable chunked prefill.",
                 cfg->max_num_batched_tokens, cfg->max_model_len);
        return -1;
    }
    cfg->n_threads = cfg->device == ENGINE_DEVICE_CUDA ? 1 : resolve_threads(cfg->n_threads);
    return 0;
}

/* --device cpu: the KV budget from the simulated device, the host workspace (the forward's and
 * the scheduler's for sc), the pool in host memory (committed before ready). 0, or -1 with err. */
static int setup_cpu(struct engine *e, int max_logits, const struct sched_config *sc, char *err,
                     size_t err_len)
{
    const struct engine_config *cfg = &e->cfg;
    const struct model_config *mc = &e->model->cfg;
    struct engine_info *in = &e->info;
    const int bs = cfg->block_size;
    uint64_t ws = forward_workspace_bytes(e->model, cfg->max_num_batched_tokens, max_logits,
                                          cfg->max_model_len, cfg->n_threads) +
                  sched_scratch_bytes(sc, mc->n_vocab);
    uint64_t per_token = model_kv_bytes_per_token(mc, 4);
    double budget;
    if (cfg->kv_cache_memory_bytes > 0)
        budget = (double)cfg->kv_cache_memory_bytes;
    else
        budget = cfg->gpu_memory_utilization * (double)cfg->device_memory_bytes -
                 (double)e->model->weight_bytes - (double)ws;
    log_info("engine", "Available KV cache memory: %.2f GiB", budget / GIB);
    char detail[256];
    snprintf(detail, sizeof detail,
             "%.2f GiB x %.2f = %.2f GiB, of which weights take %.2f GiB and the step workspace "
             "%.2f GiB",
             (double)cfg->device_memory_bytes / GIB, cfg->gpu_memory_utilization,
             cfg->gpu_memory_utilization * (double)cfg->device_memory_bytes / GIB,
             (double)e->model->weight_bytes / GIB, (double)ws / GIB);
    int n_blocks;
    if (sizing_kv_blocks(budget, per_token * (uint64_t)bs, bs, cfg->max_model_len, detail,
                         &n_blocks, err, err_len) != 0)
        return -1;

    /* The forward first: it sets the OpenMP team size, which the pool's parallel touch uses. */
    e->fwd = forward_new(e->model, cfg->max_num_batched_tokens, max_logits, cfg->max_model_len,
                         cfg->n_threads);
    mono_ns t0 = clock_now_ns();
    if (kv_init(&e->kv, mc->n_layer, mc->n_head_kv * mc->head_dim, bs, n_blocks,
                cfg->enable_prefix_caching, err, err_len) != 0)
        return -1;
    mono_ns kv_ns = clock_now_ns() - t0;
    log_info("engine", "KV cache allocation took %.3f seconds (%.2f GiB, %d blocks of %d tokens)",
             ns_to_s(kv_ns), (double)e->kv.pool_bytes / GIB, n_blocks, bs);
    log_kv_commit(&e->kv);
    in->n_blocks = n_blocks;
    in->kv_bytes = e->kv.pool_bytes;
    in->kv_bytes_per_token = per_token;
    in->workspace_bytes = ws;
    in->device_memory_bytes = cfg->device_memory_bytes;
    in->kv_alloc_ns = kv_ns;
    in->kv_touch_ns = e->kv.pool_info.touch_ns;
    in->kv_touch_threads = e->kv.pool_info.n_threads;
    in->kv_thp_bytes = e->kv.pool_info.thp_bytes;
    return 0;
}

/* --device cuda, first half: the device, vLLM's free-memory check, the weights uploaded, the
 * profile step. Fills the sizing terms; e->fwd owns the device forward. 0, or -1 with err. */
static int dev_load_and_profile(struct engine *e, int max_logits, struct sizing_dev *sd, char *err,
                                size_t err_len)
{
    const struct engine_config *cfg = &e->cfg;
    struct engine_info *in = &e->info;
    struct dev_props p;
    memset(&p, 0, sizeof p);
    if (dev_probe(cfg->device_ordinal, &p, err, err_len) != 0)
        return -1;
    log_info("engine",
             "Using device cuda:%d (%s, compute capability %d.%d): %.2f GiB total, %.2f GiB free",
             p.ordinal, p.name, p.cc_major, p.cc_minor, (double)p.total_bytes / GIB,
             (double)p.free_bytes / GIB);
    if (sizing_check_free(p.total_bytes, p.free_bytes, cfg->gpu_memory_utilization, err, err_len) !=
        0)
        return -1;
    struct dev_forward_config dc = {cfg->device_ordinal, cfg->max_num_batched_tokens,
                                    max_logits,          cfg->max_model_len,
                                    cfg->max_num_seqs,   cfg->block_size};
    struct dev_load_stats ls;
    memset(&ls, 0, sizeof ls);
    mono_ns t_load = clock_now_ns();
    struct dev_forward *d = dev_forward_new(e->model, &dc, &ls, err, err_len);
    if (!d)
        return -1;
    in->dev_load_ns = clock_now_ns() - t_load;
    e->fwd =
        forward_new_dev(e->model, d, cfg->max_num_batched_tokens, max_logits, cfg->max_model_len);
    /* besides the weights, from the probe (context made) to the load's end: the cuBLAS handle,
     * the stream, whatever stayed of the upload; the step workspace comes after and is in the
     * profile's peak (forward_dev.h) */
    const uint64_t used_at_start = p.total_bytes - p.free_bytes;
    uint64_t other = ls.used_after > used_at_start + ls.weight_bytes
                         ? ls.used_after - used_at_start - ls.weight_bytes
                         : 0;
    log_info("engine", "Model loading took %.4f GiB and %.6f seconds",
             (double)ls.weight_bytes / GIB, ns_to_s(cfg->host_load_ns + in->dev_load_ns));
    log_info("engine",
             "Weights uploaded at %.2f GB/s (%.2f GB in %.3f s; device memory in use %.2f -> "
             "%.2f GiB)",
             ls.upload_gbps, (double)ls.host_bytes / 1e9, ns_to_s(ls.upload_ns),
             (double)ls.used_before / GIB, (double)ls.used_after / GIB);
    mono_ns t0 = clock_now_ns();
    err[0] = '\0';
    uint64_t peak = dev_forward_profile(d, err, err_len);
    if (peak == 0 && err[0])
        return -1;
    *sd = (struct sizing_dev){p.total_bytes,
                              used_at_start,
                              ls.weight_bytes,
                              other,
                              peak,
                              cfg->gpu_memory_utilization,
                              cfg->kv_cache_memory_bytes};
    log_info("engine",
             "Memory profiling takes %.2f seconds. total_gpu_memory (%.2fGiB) x "
             "gpu_memory_utilization (%.2f) = %.2fGiB; in use at start-up (other processes, CUDA "
             "context) %.2fGiB; model weights take %.2fGiB; other load allocations %.2fGiB; "
             "activation peak memory takes %.2fGiB; the rest of the memory reserved for KV Cache "
             "is %.2fGiB.",
             ns_to_s(clock_now_ns() - t0), (double)p.total_bytes / GIB, cfg->gpu_memory_utilization,
             cfg->gpu_memory_utilization * (double)p.total_bytes / GIB,
             (double)sd->used_at_start_bytes / GIB, (double)ls.weight_bytes / GIB,
             (double)other / GIB, (double)peak / GIB, sizing_dev_kv_budget(sd) / GIB);
    snprintf(in->device_name, sizeof in->device_name, "%s", p.name);
    in->dev_total_bytes = p.total_bytes;
    in->dev_used_at_start_bytes = sd->used_at_start_bytes;
    in->dev_weight_bytes = ls.weight_bytes;
    in->dev_load_other_bytes = other;
    in->dev_activation_peak_bytes = peak;
    in->dev_upload_gbps = ls.upload_gbps;
    in->dev_upload_ns = ls.upload_ns;
    return 0;
}

/* --device cuda: sized exactly like vLLM (docs/serve.md): the budget left after the weights,
 * the profile's peak and what was in use at start-up; the block metadata on the host, the pool
 * in device memory. 0, or -1 with err. */
static int setup_dev(struct engine *e, int max_logits, char *err, size_t err_len)
{
    const struct engine_config *cfg = &e->cfg;
    const struct model_config *mc = &e->model->cfg;
    struct engine_info *in = &e->info;
    const int bs = cfg->block_size;
    struct sizing_dev sd;
    if (dev_load_and_profile(e, max_logits, &sd, err, err_len) != 0)
        return -1;
    double budget = sizing_dev_kv_budget(&sd);
    log_info("engine", "Available KV cache memory: %.2f GiB", budget / GIB);
    uint64_t per_token = dev_forward_kv_bytes_per_token(e->fwd->dev);
    char detail[320];
    snprintf(detail, sizeof detail,
             "%.2f GiB x %.2f = %.2f GiB, of which in use at start-up %.2f GiB, weights %.2f GiB, "
             "other load allocations %.2f GiB, activation peak %.2f GiB",
             (double)sd.total_bytes / GIB, sd.gpu_memory_utilization,
             sd.gpu_memory_utilization * (double)sd.total_bytes / GIB,
             (double)sd.used_at_start_bytes / GIB, (double)sd.weight_bytes / GIB,
             (double)sd.load_other_bytes / GIB, (double)sd.activation_peak_bytes / GIB);
    int n_blocks;
    if (sizing_kv_blocks(budget, per_token * (uint64_t)bs, bs, cfg->max_model_len, detail,
                         &n_blocks, err, err_len) != 0)
        return -1;
    mono_ns t0 = clock_now_ns();
    if (kv_init_meta(&e->kv, mc->n_layer, mc->n_head_kv * mc->head_dim, bs, n_blocks,
                     cfg->enable_prefix_caching, err, err_len) != 0 ||
        dev_forward_kv_alloc(e->fwd->dev, n_blocks, err, err_len) != 0)
        return -1;
    mono_ns kv_ns = clock_now_ns() - t0;
    uint64_t pool = per_token * (uint64_t)bs * (uint64_t)n_blocks;
    log_info("engine",
             "KV cache allocation took %.3f seconds (%.2f GiB, %d blocks of %d tokens, device "
             "memory)",
             ns_to_s(kv_ns), (double)pool / GIB, n_blocks, bs);
    in->device = ENGINE_DEVICE_CUDA;
    in->n_blocks = n_blocks;
    in->kv_bytes = pool;
    in->kv_bytes_per_token = per_token;
    in->workspace_bytes = sd.load_other_bytes + sd.activation_peak_bytes;
    in->device_memory_bytes = sd.total_bytes;
    in->kv_alloc_ns = kv_ns;
    return 0;
}

struct engine *engine_new(const struct engine_config *cfg_in, struct model *model, char *err,
                          size_t err_len)
{
    struct engine_config cfg = *cfg_in;
    char a[32], b[32];
    if (config_resolve(&cfg, &model->cfg, err, err_len) != 0)
        return NULL;
    const int bs = cfg.block_size;
    const int max_logits = cfg.max_num_seqs < cfg.max_num_batched_tokens
                               ? cfg.max_num_seqs
                               : cfg.max_num_batched_tokens;

    struct engine *e = xcalloc(1, sizeof *e);
    e->cfg = cfg;
    e->model = model;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    pthread_cond_init(&e->check_cv, NULL);
    /* Sampling threads: on cpu the size of the forward's OpenMP team (no oversubscription; one
     * under TSan, which cannot see libgomp's barriers); on cuda the forward runs on the device,
     * so every online core; at most one per logits row. */
    int n_sample =
        cfg.device == ENGINE_DEVICE_CUDA ? resolve_threads(0) : forward_threads_for(cfg.n_threads);
    if (n_sample > max_logits)
        n_sample = max_logits;
    struct sched_config sc = {cfg.max_num_seqs, cfg.max_num_batched_tokens, cfg.max_model_len,
                              cfg.enable_chunked_prefill, n_sample};
    if ((cfg.device == ENGINE_DEVICE_CUDA ? setup_dev(e, max_logits, err, err_len)
                                          : setup_cpu(e, max_logits, &sc, err, err_len)) != 0)
        goto fail;
    if (sched_init(&e->sched, &sc, &e->kv, e->fwd, model) != 0) {
        snprintf(err, err_len, "scheduler: invalid limits");
        goto fail;
    }
    e->sched.before_events = publish_before_events; /* /metrics never behind a response */
    e->sched.before_events_ud = e;

    struct engine_info *in = &e->info;
    uint64_t need_blocks = ((uint64_t)cfg.max_model_len + (uint64_t)bs - 1) / (uint64_t)bs;
    in->max_model_len = cfg.max_model_len;
    in->block_size = bs;
    in->kv_capacity_tokens = (uint64_t)in->n_blocks * (uint64_t)bs;
    in->max_concurrency = (double)in->n_blocks / (double)need_blocks;
    in->enable_prefix_caching = cfg.enable_prefix_caching;
    in->max_num_seqs = cfg.max_num_seqs;
    in->max_num_batched_tokens = cfg.max_num_batched_tokens;
    in->gpu_memory_utilization = cfg.gpu_memory_utilization;
    in->warmup_mode = cfg.warmup;

    fmt_thousands(in->kv_capacity_tokens, a, sizeof a);
    log_info("engine", "GPU KV cache size: %s tokens", a);
    fmt_thousands((uint64_t)cfg.max_model_len, b, sizeof b);
    log_info("engine", "Maximum concurrency for %s tokens per request: %.2fx", b,
             in->max_concurrency);

    e->rng = (uint64_t)clock_now_ns() ^ ((uint64_t)(uintptr_t)e << 16) ^ (uint64_t)getpid();
    publish_stats_locked(e);
    return e;
fail:
    forward_free(e->fwd);
    kv_free(&e->kv);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->wake);
    pthread_cond_destroy(&e->check_cv);
    free(e);
    return NULL;
}

/* ---- warm-up ---- */

/* Scratch for the warm-up's dummy batches. */
struct warm {
    struct engine *e;
    struct kv_seq *seqs;
    struct kv_seq **tables;
    int *lens;
    int32_t *tok, *pos, *sq;
    uint8_t *wants;
    int n_tab;
};

static void warm_init(struct warm *w, struct engine *e, int n_tab, int max_tokens)
{
    const int bs = e->cfg.block_size, mml = e->cfg.max_model_len;
    w->e = e;
    w->n_tab = n_tab;
    w->seqs = xcalloc((size_t)n_tab, sizeof *w->seqs);
    w->tables = xcalloc((size_t)n_tab, sizeof *w->tables);
    w->lens = xcalloc((size_t)n_tab, sizeof *w->lens);
    w->tok = xcalloc((size_t)max_tokens, sizeof *w->tok);
    w->pos = xcalloc((size_t)max_tokens, sizeof *w->pos);
    w->sq = xcalloc((size_t)max_tokens, sizeof *w->sq);
    w->wants = xcalloc((size_t)max_tokens, 1);
    for (int j = 0; j < n_tab; j++)
        kv_seq_init(&w->seqs[j], (mml + bs - 1) / bs);
}

static void warm_free(struct warm *w)
{
    for (int j = 0; j < w->n_tab; j++)
        kv_seq_free(&w->seqs[j]);
    free(w->seqs);
    free(w->tables);
    free(w->lens);
    free(w->tok);
    free(w->pos);
    free(w->sq);
    free(w->wants);
}

/* Runs one forward over n_seqs dummy sequences of w->lens[j] tokens each (the last token of the
 * batch wants logits, or every token when decode). 1 if it ran, 0 if the pool could not hold it
 * or the forward refused it. */
static int warm_step(struct warm *w, int n_seqs, int decode)
{
    struct engine *e = w->e;
    int ok = 1, n = 0;
    for (int j = 0; j < n_seqs && ok; j++)
        ok = kv_seq_reserve(&e->kv, &w->seqs[j], w->lens[j]) == 0;
    if (ok) {
        for (int j = 0; j < n_seqs; j++) {
            w->tables[j] = &w->seqs[j];
            for (int p = 0; p < w->lens[j]; p++) {
                w->tok[n] = (int32_t)((p * 31 + j * 7 + 1) % e->model->cfg.n_vocab);
                w->pos[n] = p;
                w->sq[n] = j;
                w->wants[n] = (uint8_t)decode;
                n++;
            }
        }
        if (!decode)
            w->wants[n - 1] = 1;
        struct forward_batch fb = {n, w->tok, w->pos, w->sq, w->wants, n_seqs, w->tables};
        int n_logits;
        ok = forward_run(e->fwd, &e->kv, &fb, &n_logits) == FORWARD_OK;
        if (!ok)
            log_warn("engine", "warm-up batch of %d tokens refused by the forward pass", n);
    }
    for (int j = 0; j < n_seqs; j++)
        kv_seq_release(&e->kv, &w->seqs[j]);
    return ok;
}

static int max_decode_batch(const struct engine *e)
{
    const int mnbt = e->cfg.max_num_batched_tokens;
    return e->cfg.max_num_seqs < mnbt ? e->cfg.max_num_seqs : mnbt;
}

/* One step per batch shape: prefill 1, 2, 4, ... tokens up to max_num_batched_tokens (split
 * into sequences of at most 64 tokens: the matrix products see the full n-token shape while
 * attention stays cheap; one 2048-token sequence would spend most of the warm-up in O(n^2)
 * attention, which warms nothing), then decode 2, 4, ... sequences up to max_num_seqs. */
static int warmup_shapes(struct engine *e)
{
    const int mnbt = e->cfg.max_num_batched_tokens, mml = e->cfg.max_model_len;
    const int max_dec = max_decode_batch(e);
    const int seq_len = mml < 64 ? mml : 64;
    int max_pref = (mnbt + seq_len - 1) / seq_len;
    struct warm w;
    warm_init(&w, e, max_pref > max_dec ? max_pref : max_dec, mnbt);
    int n_steps = 0;
    for (int n = 1;; n = n * 2 < mnbt ? n * 2 : mnbt) {
        int k = 0;
        for (int left = n; left > 0; left -= seq_len)
            w.lens[k++] = left < seq_len ? left : seq_len;
        if (!warm_step(&w, k, 0)) {
            log_warn("engine",
                     "warm-up: the KV pool cannot hold a %d-token batch; larger "
                     "shapes skipped",
                     n);
            break;
        }
        n_steps++;
        if (n == mnbt)
            break;
    }
    for (int k = 2; k <= max_dec; k = k * 2 < max_dec ? k * 2 : max_dec) {
        for (int j = 0; j < k; j++)
            w.lens[j] = 1;
        if (!warm_step(&w, k, 1))
            break;
        n_steps++;
        if (k == max_dec)
            break;
    }
    warm_free(&w);
    return n_steps;
}

/* Decode batch of the kernels warm-up: within the small-batch kernel's 2..32 rows and not a
 * multiple of 4, so both its 4-row and its 1-row tiles run (forward.c). */
#define WARM_SMALL_BATCH 31
/* Prefill of the kernels warm-up: above 32 tokens (sgemm, not the small kernel) and at least
 * ATT_RUN_MIN consecutive positions (tiled attention), two attention tiles. */
#define WARM_PREFILL_TOKENS 64

/* Each kernel path once: a prefill (sgemm products, tiled attention, a one-row output
 * projection), one decode token (sgemv, per-token attention), one small decode batch (the
 * small-batch kernel for the layers and the output projection). What a CPU needs warmed is
 * code, the OpenMP team and OpenBLAS's buffers, not one step per shape. */
static int warmup_kernels(struct engine *e)
{
    const int mnbt = e->cfg.max_num_batched_tokens, mml = e->cfg.max_model_len;
    int n_pref = WARM_PREFILL_TOKENS;
    n_pref = n_pref < mnbt ? n_pref : mnbt;
    n_pref = n_pref < mml ? n_pref : mml;
    int n_dec = max_decode_batch(e);
    n_dec = n_dec < WARM_SMALL_BATCH ? n_dec : WARM_SMALL_BATCH;
    struct warm w;
    warm_init(&w, e, n_dec, n_pref > n_dec ? n_pref : n_dec);
    /* Every layer has the same shapes, so one layer runs the same kernels as all of them: the
     * steps cost a layer and the output projection instead of a full pass each. */
    forward_limit_layers(e->fwd, 1);
    int n_steps = 0;
    w.lens[0] = n_pref;
    if (warm_step(&w, 1, 0))
        n_steps++;
    w.lens[0] = 1;
    if (warm_step(&w, 1, 1))
        n_steps++;
    for (int j = 0; j < n_dec; j++)
        w.lens[j] = 1;
    if (n_dec >= 2 && warm_step(&w, n_dec, 1))
        n_steps++;
    forward_limit_layers(e->fwd, 0);
    warm_free(&w);
    return n_steps;
}

/* --device cuda: the warm-up is CUDA graph capture of decode steps at vLLM's batch sizes
 * (sizing_graph_sizes) up to the largest decode batch (max_num_seqs, at most
 * max_num_batched_tokens, capped at SIZING_GRAPH_MAX); larger decode batches and every step
 * with a prefill run eagerly. A failed capture is logged and leaves every step eager. Returns the
 * number of graphs captured. */
static int warmup_graphs(struct engine *e)
{
    int sizes[SIZING_GRAPH_MAX];
    int n = sizing_graph_sizes(max_decode_batch(e), sizes, SIZING_GRAPH_MAX);
    if (n < 1)
        return 0;
    log_info("engine", "Capturing CUDA graphs (decode, FULL): %d sizes (%d..%d)", n, sizes[0],
             sizes[n - 1]);
    double secs = 0;
    char err[512];
    mono_ns t0 = clock_now_ns();
    if (dev_forward_capture_graphs(e->fwd->dev, sizes, n, &secs, err, sizeof err) != 0) {
        log_warn("engine", "CUDA graph capture failed: %s; every step runs eagerly", err);
        return 0;
    }
    mono_ns dt = clock_now_ns() - t0;
    uint64_t bytes = dev_forward_graph_bytes(e->fwd->dev);
    log_info("engine", "Graph capturing finished in %.2f secs, took %.2f GiB", secs,
             (double)bytes / GIB);
    pthread_mutex_lock(&e->mu);
    e->info.warmup_ns = dt;
    e->info.n_warmup_shapes = n;
    e->info.n_graphs = n;
    e->info.dev_graph_bytes = bytes;
    publish_stats_locked(e);
    pthread_mutex_unlock(&e->mu);
    return n;
}

int engine_warmup(struct engine *e)
{
    if (e->cfg.warmup == ENGINE_WARMUP_NONE) {
        log_info("engine", "Warm-up skipped (--enforce-eager)");
        return 0;
    }
    if (e->cfg.device == ENGINE_DEVICE_CUDA)
        return warmup_graphs(e);
    mono_ns t0 = clock_now_ns();
    uint64_t q0 = e->kv.prefix_queries_tokens, h0 = e->kv.prefix_hits_tokens;
    uint64_t ev0 = e->kv.n_evictions;
    uint64_t runs0[FORWARD_PATH_COUNT];
    memcpy(runs0, e->fwd->path_runs, sizeof runs0);

    int n_steps = e->cfg.warmup == ENGINE_WARMUP_SHAPES ? warmup_shapes(e) : warmup_kernels(e);

    /* Leave no trace: nothing was committed (no hashes), counters restored. */
    e->kv.prefix_queries_tokens = q0;
    e->kv.prefix_hits_tokens = h0;
    e->kv.n_evictions = ev0;
    unsigned paths = 0;
    for (int p = 0; p < FORWARD_PATH_COUNT; p++)
        if (e->fwd->path_runs[p] > runs0[p])
            paths |= 1u << p;

    mono_ns dt = clock_now_ns() - t0;
    pthread_mutex_lock(&e->mu);
    e->info.warmup_ns = dt;
    e->info.n_warmup_shapes = n_steps;
    e->info.warmup_paths = paths;
    publish_stats_locked(e);
    pthread_mutex_unlock(&e->mu);
    log_info("engine", "Warm-up took %.3f seconds (%d batch shapes, --warmup %s)", ns_to_s(dt),
             n_steps, engine_warmup_mode_str(e->cfg.warmup));
    return n_steps;
}

/* ---- the engine thread ---- */

/* What one loop iteration takes from the shared state. */
struct work {
    struct seq *incoming;
    struct seq *aborts; /* linked by abort_next */
    int reset;
    uint64_t check_gen; /* > 0: run the invariant check */
    int check_rc;
    char check_err[512];
    int stop;
};

static void take_work_locked(struct engine *e, struct work *w)
{
    memset(w, 0, sizeof *w);
    w->incoming = e->in_head;
    e->in_head = e->in_tail = NULL;
    e->n_in = 0;
    if (e->n_abort_pending > 0) {
        for (struct seq *q = e->live_head; q; q = q->live_next) {
            if (q->abort_requested && !q->abort_taken) {
                q->abort_taken = 1;
                q->abort_next = w->aborts;
                w->aborts = q;
            }
        }
        e->n_abort_pending = 0;
    }
    w->reset = e->reset_requested;
    e->reset_requested = 0;
    if (e->check_req_gen > e->check_done_gen)
        w->check_gen = e->check_req_gen;
    w->stop = e->stopping;
}

/* Scheduler work of one iteration. No lock held: callbacks run from here. */
static void run_work(struct engine *e, struct work *w)
{
    for (struct seq *q = w->incoming, *next; q; q = next) {
        next = q->in_next;
        q->in_next = NULL;
        sched_add(&e->sched, q);
    }
    for (struct seq *q = w->aborts; q; q = q->abort_next)
        sched_abort(&e->sched, q);
    if (w->reset)
        kv_reset_prefix_cache(&e->kv);
    if (w->check_gen)
        w->check_rc = sched_check(&e->sched, w->check_err, sizeof w->check_err);
    if (w->stop) {
        sched_abort_all(&e->sched);
        return;
    }
    if (sched_has_work(&e->sched)) {
        sched_step(&e->sched);
        if (e->cfg.debug_check_invariants) {
            char err[512];
            if (sched_check(&e->sched, err, sizeof err) != 0) {
                log_error("engine", "invariant violated after step %" PRIu64 ": %s",
                          e->sched.c.steps, err);
                abort();
            }
        }
    }
}

/* Frees finished requests (unlinked from the registry first, so engine_abort never sees a freed
 * one), publishes stats and the check result. Under mu. */
static void finish_work_locked(struct engine *e, struct work *w)
{
    for (struct seq *q = sched_take_done(&e->sched), *next; q; q = next) {
        next = q->next;
        if (q->live_prev)
            q->live_prev->live_next = q->live_next;
        else
            e->live_head = q->live_next;
        if (q->live_next)
            q->live_next->live_prev = q->live_prev;
        seq_free(q);
    }
    publish_stats_locked(e);
    if (w->check_gen) {
        e->check_rc = w->check_rc;
        memcpy(e->check_err, w->check_err, sizeof e->check_err);
        e->check_done_gen = w->check_gen;
        pthread_cond_broadcast(&e->check_cv);
    }
}

static int idle_locked(struct engine *e)
{
    return !e->stopping && !e->in_head && !e->n_abort_pending && !e->reset_requested &&
           e->check_req_gen == e->check_done_gen && !sched_has_work(&e->sched);
}

static void *engine_thread_main(void *arg)
{
    struct engine *e = arg;
    struct work w;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (idle_locked(e))
            pthread_cond_wait(&e->wake, &e->mu);
        take_work_locked(e, &w);
        pthread_mutex_unlock(&e->mu);
        run_work(e, &w);
        pthread_mutex_lock(&e->mu);
        finish_work_locked(e, &w);
        if (w.stop)
            break;
    }
    e->thread_exited = 1;
    pthread_cond_broadcast(&e->check_cv);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

int engine_start(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    if (e->thread_started || e->stopping) {
        pthread_mutex_unlock(&e->mu);
        return -1;
    }
    int rc = pthread_create(&e->thread, NULL, engine_thread_main, e);
    if (rc == 0)
        e->thread_started = 1;
    pthread_mutex_unlock(&e->mu);
    if (rc != 0) {
        log_error("engine", "cannot start the engine thread: %s", strerror(rc));
        return -1;
    }
    return 0;
}

enum engine_status engine_submit(struct engine *e, const struct engine_request *req,
                                 engine_event_cb cb, void *ud, uint64_t *req_id_out)
{
    const struct model_config *mc = &e->model->cfg;
    const struct sampling_params *sp = &req->sp;
    if (!req->prompt || req->n_prompt < 1 || sp->max_tokens < 1 || sp->min_tokens < 0 ||
        !(sp->temperature >= 0.0f) || !(sp->top_p > 0.0f && sp->top_p <= 1.0f))
        return ENGINE_ERR_INVALID;
    for (int i = 0; i < req->n_prompt; i++)
        if (req->prompt[i] < 0 || req->prompt[i] >= mc->n_vocab)
            return ENGINE_ERR_INVALID;
    if (req->n_prompt >= e->cfg.max_model_len ||
        (int64_t)req->n_prompt + sp->max_tokens > (int64_t)e->cfg.max_model_len)
        return ENGINE_ERR_TOO_LONG;

    mono_ns now = clock_now_ns();
    struct seq *q = seq_new(0, req->prompt, req->n_prompt, sp, 0, e->cfg.block_size, cb, ud, now);
    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        seq_free(q);
        return ENGINE_ERR_STOPPED;
    }
    q->id = ++e->next_id;
    q->rng_state = sampler_seed_state(sp->has_seed ? sp->seed : splitmix64(&e->rng));
    q->live_next = e->live_head;
    if (e->live_head)
        e->live_head->live_prev = q;
    e->live_head = q;
    if (e->in_tail)
        e->in_tail->in_next = q;
    else
        e->in_head = q;
    e->in_tail = q;
    e->n_in++;
    if (req_id_out)
        *req_id_out = q->id;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    return ENGINE_OK;
}

void engine_abort(struct engine *e, uint64_t req_id)
{
    pthread_mutex_lock(&e->mu);
    for (struct seq *q = e->live_head; q; q = q->live_next) {
        if (q->id != req_id)
            continue;
        if (!q->abort_requested) {
            q->abort_requested = 1;
            e->n_abort_pending++;
            pthread_cond_signal(&e->wake);
        }
        break;
    }
    pthread_mutex_unlock(&e->mu);
}

void engine_stop(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    if (e->stopped) {
        pthread_mutex_unlock(&e->mu);
        return;
    }
    e->stopping = 1;
    int threaded = e->thread_started;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    if (threaded) {
        pthread_join(e->thread, NULL);
    } else {
        /* No engine thread: do its last iteration here (abort everything, send the events). */
        struct work w;
        pthread_mutex_lock(&e->mu);
        take_work_locked(e, &w);
        pthread_mutex_unlock(&e->mu);
        run_work(e, &w);
        pthread_mutex_lock(&e->mu);
        finish_work_locked(e, &w);
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_lock(&e->mu);
    e->stopped = 1;
    pthread_mutex_unlock(&e->mu);
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    engine_stop(e);
    sched_free(&e->sched);
    forward_free(e->fwd);
    kv_free(&e->kv);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->wake);
    pthread_cond_destroy(&e->check_cv);
    free(e);
}

void engine_get_stats(struct engine *e, struct engine_stats *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->stats;
    out->n_waiting += e->n_in;
    pthread_mutex_unlock(&e->mu);
}

void engine_get_info(struct engine *e, struct engine_info *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->info;
    pthread_mutex_unlock(&e->mu);
}

int engine_reset_prefix_cache(struct engine *e)
{
    pthread_mutex_lock(&e->mu);
    if (e->thread_started && !e->thread_exited) {
        e->reset_requested = 1;
        pthread_cond_signal(&e->wake);
    } else {
        kv_reset_prefix_cache(&e->kv);
        publish_stats_locked(e);
    }
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int engine_check_invariants(struct engine *e, char *err, size_t err_len)
{
    int rc;
    pthread_mutex_lock(&e->mu);
    int on_thread = e->thread_started && pthread_equal(pthread_self(), e->thread);
    if (!e->thread_started || e->thread_exited || on_thread) {
        rc = sched_check(&e->sched, err, err_len);
        pthread_mutex_unlock(&e->mu);
        return rc;
    }
    uint64_t my = ++e->check_req_gen;
    pthread_cond_signal(&e->wake);
    while (e->check_done_gen < my && !e->thread_exited)
        pthread_cond_wait(&e->check_cv, &e->mu);
    if (e->check_done_gen >= my) {
        rc = e->check_rc;
        if (rc != 0)
            snprintf(err, err_len, "%s", e->check_err);
    } else {
        rc = sched_check(&e->sched, err, err_len); /* the thread exited meanwhile */
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}
