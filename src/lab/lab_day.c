/* lab_day: DAY.md, the end-of-day write-up in the seed's template (Environment, Commands Run, Key
 * Numbers, Artifacts, Observations / Surprises), plus the cold-start equation with measured terms
 * and "How I'd explain TTFT to an SRE". Every number comes from the tiers' result files (read by
 * key, lab_json.h) or the session; a field the day could not measure says so and why. It runs
 * nothing and judges nothing beyond comparing the numbers it prints. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "lab/lab.h"
#include "lab/lab_json.h"
#include "util/buf.h"

#define TTFT(in) ((in)->tier[LAB_TIER_TTFT])
#define PREFIX(in) ((in)->tier[LAB_TIER_PREFIX])
#define KV(in) ((in)->tier[LAB_TIER_KV])
#define BATCH(in) ((in)->tier[LAB_TIER_BATCH])

static const char *ms(double v, char *out, size_t n)
{
    if (!isfinite(v))
        snprintf(out, n, "n/a");
    else if (v >= 10000)
        snprintf(out, n, "%.2f s", v / 1000);
    else
        snprintf(out, n, "%.1f ms", v);
    return out;
}

static const char *num(double v, const char *fmt, char *out, size_t n)
{
    if (!isfinite(v))
        snprintf(out, n, "n/a");
    else
        snprintf(out, n, fmt, v);
    return out;
}

static void section_environment(const struct lab_inputs *in, const struct session *s,
                                struct buf *o)
{
    struct utsname u;
    int have_u = uname(&u) == 0;
    const struct json *t = TTFT(in), *b = BATCH(in);
    buf_puts(o, "## Environment\n");
    if (s->gpus.available && s->gpus.n_gpus > 0)
        buf_printf(o, "- GPU: %d x %s (%.1f GiB each)\n", s->gpus.n_gpus, s->gpus.gpu[0].name,
                   (double)s->gpus.gpu[0].mem_total_bytes / (1 << 30));
    else
        buf_printf(o, "- GPU: none seen (%s); CPU: %s, %d cores, %.1f GiB memory\n",
                   s->gpus.reason[0] ? s->gpus.reason : "no NVIDIA device",
                   s->have_host ? s->host.cpu_model : "unknown", s->have_host ? s->host.n_cpus : 0,
                   s->have_host ? (double)s->host.mem_total_bytes / (1 << 30) : NAN);
    buf_printf(o, "- OS / kernel: %s %s (%s)\n", have_u ? u.sysname : "unknown",
               have_u ? u.release : "", have_u ? u.machine : "");
    const char *kind = lab_jstr(t, "config.server_kind", lab_jstr(b, "environment.server_kind",
                                                                   "unknown"));
    const char *ver = lab_jstr(t, "repeats[0].server_version",
                               lab_jstr(b, "environment.server_version", ""));
    buf_printf(o, "- Server and version: %s %s\n", kind, ver[0] ? ver : "(version not reported)");
    buf_printf(o, "- Model (SLM): %s\n",
               lab_jstr(t, "config.model", lab_jstr(b, "environment.model", "unknown")));
    const char *cmd = lab_jstr(t, "repeats[0].server_cmdline", NULL);
    buf_printf(o, "- Key server flags: `%s`\n", cmd ? cmd : "(no launch recorded)");
    buf_printf(o, "- slmprobe: %s, started %s\n\n", SLMPROBE_VERSION, s->started_at);
}

static void section_commands(const struct lab_inputs *in, const struct session *s, struct buf *o)
{
    buf_puts(o, "## Commands Run\n- Server launch commands (each also a runnable script here):\n");
    const char *c = lab_jstr(TTFT(in), "repeats[0].server_cmdline", NULL);
    if (c)
        buf_printf(o, "  - Tier 1 and 3B (`serve_slm.sh`): `%s`\n", c);
    const char *off = lab_jstr(PREFIX(in), "modes[0].command", NULL);
    const char *on = lab_jstr(PREFIX(in), "modes[1].command", NULL);
    if (off && on)
        buf_printf(o, "  - Tier 2, caching off (`serve_slm_no_prefix_cache.sh`): `%s`\n"
                      "  - Tier 2, caching on (`serve_slm_prefix_cache.sh`): `%s`\n",
                   off, on);
    size_t n = lab_jlen(KV(in), "rows");
    if (n) {
        char p[64];
        snprintf(p, sizeof p, "rows[%zu].command", n - 1);
        buf_printf(o, "  - Tier 3A (`kv_scaling.sh`, one launch per length), e.g. `%s`\n",
                   lab_jstr(KV(in), p, lab_jstr(KV(in), "rows[0].command", "")));
    }
    buf_printf(o, "- Probe command: `%s`\n\n", s->command_line);
}

static void key_ttft(const struct json *t, struct buf *o)
{
    char a[32], b[32], c[32], f[32];
    if (!t) {
        buf_puts(o, "- Cold TTFT / Warm TTFT: not measured (Tier 1 was not run)\n");
        return;
    }
    buf_printf(o, "- Cold TTFT / Warm TTFT: %s cold (first request the moment the server was "
                  "ready) / %s warm median, p95 %s over %.0f runs; cold/warm factor %s\n",
               ms(lab_jnum(t, "summary.cold_ttft_ms"), a, sizeof a),
               ms(lab_jnum(t, "summary.warm_ttft_p50_ms"), b, sizeof b),
               ms(lab_jnum(t, "summary.warm_ttft_p95_ms"), c, sizeof c),
               lab_jnum(t, "summary.n_warm"),
               num(lab_jnum(t, "summary.cold_warm_factor"), "%.2fx", f, sizeof f));
    buf_printf(o, "- Restart to ready: %s; restart to first token: %s\n",
               ms(lab_jnum(t, "summary.launch_to_ready_ms"), a, sizeof a),
               ms(lab_jnum(t, "repeats[0].launch_to_first_token_ms"), b, sizeof b));
}

static void key_batch(const struct json *b, struct buf *o)
{
    char x[32], y[32], z[32];
    if (!b) {
        buf_puts(o, "- Throughput tok/s (1 vs N concurrent): not measured (Tier 3B was not run)\n");
        return;
    }
    if (lab_jget(b, "seqconc.sequential.tok_s"))
        buf_printf(o, "- Throughput tok/s (1 vs N concurrent): %s one at a time vs %s with all %.0f "
                      "at once (%s faster end to end)\n",
                   num(lab_jnum(b, "seqconc.sequential.tok_s"), "%.1f", x, sizeof x),
                   num(lab_jnum(b, "seqconc.concurrent.tok_s"), "%.1f", y, sizeof y),
                   lab_jnum(b, "config.num_requests"),
                   num(lab_jnum(b, "seqconc.speedup"), "%.2fx", z, sizeof z));
    size_t n = lab_jlen(b, "sweep");
    if (n) {
        char p[64];
        snprintf(p, sizeof p, "sweep[%zu]", n - 1);
        buf_printf(o, "- Concurrency sweep: %s tok/s at concurrency %.0f, peak %s tok/s at %.0f; "
                      "knee: %s\n",
                   num(lab_jnum(b, "sweep[0].tok_s"), "%.1f", x, sizeof x),
                   lab_jnum(b, "sweep[0].concurrency"),
                   num(lab_jnum(b, "peak.tok_s"), "%.1f", y, sizeof y),
                   lab_jnum(b, "peak.concurrency"),
                   isfinite(lab_jnum(b, "knee.concurrency"))
                       ? num(lab_jnum(b, "knee.concurrency"), "concurrency %.0f", z, sizeof z)
                       : "not reached in the sweep");
    }
}

static void key_kv(const struct json *k, struct buf *o)
{
    if (!k) {
        buf_puts(o, "- KV scaling table: not measured (Tier 3A was not run)\n\n");
        return;
    }
    const char *src = lab_jstr(k, "mem_source", "none");
    buf_printf(o, "- KV scaling table (%s; regime: %s):\n\n", !strcmp(src, "gpu") ? "GPU memory "
               "from NVML" : !strcmp(src, "rss") ? "no GPU: server RSS" : "no memory reading",
               lab_jstr(k, "regime", "unknown"));
    buf_puts(o, "| max-model-len | memory used (MiB) | KV capacity (tokens) | max concurrency | "
                "status |\n|---:|---:|---:|---:|---|\n");
    size_t n = lab_jlen(k, "rows");
    for (size_t i = 0; i < n; i++) {
        char p[96], a[32], b[32], c[32];
        snprintf(p, sizeof p, "rows[%zu].", i);
        char q[128];
#define KP(field) (snprintf(q, sizeof q, "%s%s", p, field), q)
        double mem = lab_jnum(k, KP(!strcmp(src, "gpu") ? "gpu_mem_used_mb" : "server_rss_mb"));
        buf_printf(o, "| %.0f | %s | %s | %s | %s |\n", lab_jnum(k, KP("max_model_len")),
                   num(mem, "%.1f", a, sizeof a),
                   num(lab_jnum(k, KP("kv_capacity_tokens")), "%.0f", b, sizeof b),
                   num(lab_jnum(k, KP("max_concurrency")), "%.2fx", c, sizeof c),
                   lab_jstr(k, KP("status"), "?"));
#undef KP
    }
    buf_puts(o, "\n");
}

/* Index of the prefix cell (mode, regime, concurrency, hit mix), or -1. */
static int prefix_cell(const struct json *p, const char *mode, const char *regime, double conc,
                       double hit)
{
    size_t n = lab_jlen(p, "cells");
    for (size_t i = 0; i < n; i++) {
        const struct json *c = json_at(lab_jget(p, "cells"), i);
        if (!strcmp(lab_jstr(c, "mode", ""), mode) && !strcmp(lab_jstr(c, "regime", ""), regime) &&
            lab_jnum(c, "concurrency") == conc && fabs(lab_jnum(c, "hit_mix") - hit) < 1e-9 &&
            lab_jbool(c, "done", 0))
            return (int)i;
    }
    return -1;
}

static double cell_num(const struct json *p, int i, const char *key)
{
    char path[96];
    snprintf(path, sizeof path, "cells[%d].%s", i, key);
    return i < 0 ? NAN : lab_jnum(p, path);
}

/* Off vs on for one regime at concurrency conc and hit mix hit: "TTFT X -> Y (-Z%)". 0 if absent. */
static int prefix_pair(const struct json *p, const char *regime, double conc, double hit,
                       const char *key, double *off, double *on)
{
    int i = prefix_cell(p, "no_prefix_cache", regime, conc, hit);
    int k = prefix_cell(p, "with_prefix_cache", regime, conc, hit);
    *off = cell_num(p, i, key);
    *on = cell_num(p, k, key);
    return isfinite(*off) && isfinite(*on);
}

static void key_prefix(const struct json *p, struct buf *o)
{
    if (!p) {
        buf_puts(o, "- Prefix caching impact: not measured (Tier 2 was not run)\n");
        return;
    }
    double c1 = lab_jnum(p, "cells[0].concurrency");
    size_t n = lab_jlen(p, "cells");
    double cmax = c1;
    for (size_t i = 0; i < n; i++) {
        char q[64];
        snprintf(q, sizeof q, "cells[%zu].concurrency", i);
        if (lab_jnum(p, q) > cmax)
            cmax = lab_jnum(p, q);
    }
    buf_puts(o, "- Prefix caching impact (100% reuse, caching off -> on):");
    const char *regimes[] = {"medium", "large"};
    int any = 0;
    for (int r = 0; r < 2; r++) {
        double off, on, toff, ton;
        if (!prefix_pair(p, regimes[r], c1, 1.0, "mean_ttft_s", &off, &on))
            continue;
        char a[32], b[32];
        int have_tok = prefix_pair(p, regimes[r], cmax, 1.0, "tok_s", &toff, &ton);
        buf_printf(o, "%s %s prefix (%.0f tokens): TTFT %s -> %s (%+.0f%%) at concurrency %.0f",
                   any ? ";" : "", regimes[r],
                   cell_num(p, prefix_cell(p, "with_prefix_cache", regimes[r], c1, 1.0),
                            "prefix_len_tokens"),
                   ms(off * 1000, a, sizeof a), ms(on * 1000, b, sizeof b),
                   off > 0 ? (on / off - 1) * 100 : NAN, c1);
        if (have_tok)
            buf_printf(o, ", throughput %.1f -> %.1f tok/s at concurrency %.0f", toff, ton, cmax);
        any = 1;
    }
    double m_off = lab_jnum(p, "modes[0].rss_max_bytes"), m_on = lab_jnum(p, "modes[1].rss_max_bytes");
    if (isfinite(lab_jnum(p, "modes[0].gpu_mem_max_bytes"))) {
        m_off = lab_jnum(p, "modes[0].gpu_mem_max_bytes");
        m_on = lab_jnum(p, "modes[1].gpu_mem_max_bytes");
    }
    if (isfinite(m_off) && isfinite(m_on))
        buf_printf(o, "; memory peak %.1f -> %.1f MiB", m_off / 1048576, m_on / 1048576);
    buf_puts(o, any ? "\n" : " no finished off/on pair of cells\n");
}

/* "Did prefix caching help? When did it not?" from the 100% and 0% reuse cells. */
static void observe_prefix(const struct json *p, struct buf *o)
{
    buf_puts(o, "- Did prefix caching help? When did it not? ");
    if (!p) {
        buf_puts(o, "Tier 2 was not run.\n");
        return;
    }
    const char *finding = lab_jstr(p, "finding", "");
    if (finding[0]) {
        buf_printf(o, "%s.\n", finding);
        return;
    }
    double c1 = lab_jnum(p, "cells[0].concurrency"), off, on;
    const char *regime = prefix_cell(p, "with_prefix_cache", "large", c1, 1.0) >= 0 ? "large"
                                                                                   : "medium";
    char a[32], b[32];
    if (prefix_pair(p, regime, c1, 1.0, "mean_ttft_s", &off, &on))
        buf_printf(o, "With every request reusing a %s prefix it cut mean TTFT from %s to %s. ",
                   regime, ms(off * 1000, a, sizeof a), ms(on * 1000, b, sizeof b));
    if (prefix_pair(p, regime, c1, 0.0, "mean_ttft_s", &off, &on))
        buf_printf(o, "With no reuse (every prefix fresh) there was nothing to hit: %s off vs %s "
                      "on (%+.0f%%), the cost of the lookups and of caching blocks no one reuses.",
                   ms(off * 1000, a, sizeof a), ms(on * 1000, b, sizeof b),
                   off > 0 ? (on / off - 1) * 100 : NAN);
    buf_puts(o, "\n");
}

static void section_key_numbers(const struct lab_inputs *in, struct buf *o)
{
    buf_puts(o, "## Key Numbers\n");
    key_ttft(TTFT(in), o);
    key_batch(BATCH(in), o);
    key_prefix(PREFIX(in), o);
    key_kv(KV(in), o);
}

/* The equation's terms. Tier 1's own latency stack (ttft.json latency_stack_ms: load_weights =
 * model_load, else weights_load; runtime_warmup = engine_init, else its parts), so DAY.md and
 * first_token_latency.md say the same; from the phases for a ttft.json without it. */
struct eq_terms {
    double total, ready, cold, load, warm, other, queue;
    const char *load_src, *warm_src;
};

static void equation_terms(const struct json *t, struct eq_terms *q)
{
    q->ready = lab_jnum(t, "repeats[0].launch_to_ready_ms");
    q->total = lab_jnum(t, "repeats[0].launch_to_first_token_ms");
    q->cold = lab_jnum(t, "repeats[0].cold_ttft_ms");
    q->load = lab_jnum(t, "repeats[0].latency_stack_ms.load_weights");
    q->warm = lab_jnum(t, "repeats[0].latency_stack_ms.runtime_warmup");
    q->other = lab_jnum(t, "repeats[0].latency_stack_ms.other_startup");
    q->queue = lab_jnum(t, "repeats[0].latency_stack_ms.queueing");
    int have_ml = isfinite(lab_jnum(t, "repeats[0].phases_s.model_load"));
    int have_ei = isfinite(lab_jnum(t, "repeats[0].phases_s.engine_init"));
    q->load_src = lab_jstr(t, have_ml ? "repeats[0].phase_sources.model_load"
                                      : "repeats[0].phase_sources.weights_load", "none");
    q->warm_src = lab_jstr(t, have_ei ? "repeats[0].phase_sources.engine_init"
                                      : "repeats[0].phase_sources.warmup_graph_capture", "none");
    if (isfinite(q->load) || isfinite(q->warm))
        return;
    q->load = lab_jnum(t, "repeats[0].phases_s.weights_load") * 1000;
    if (!isfinite(q->load))
        q->load = lab_jnum(t, "repeats[0].phases_s.model_load") * 1000;
    double warm = 0;
    int n_warm = 0;
    const char *warm_parts[] = {"torch_compile", "kv_cache_alloc", "warmup_graph_capture"};
    for (int i = 0; i < 3; i++) {
        char p[96];
        snprintf(p, sizeof p, "repeats[0].phases_s.%s", warm_parts[i]);
        double v = lab_jnum(t, p);
        if (isfinite(v)) {
            warm += v * 1000;
            n_warm++;
        }
    }
    q->warm = n_warm ? warm : NAN;
    q->queue = 0;
    /* everything else up to the first token: process start, API server, readiness polling and
     * the probe's reaction to ready */
    q->other = q->total - q->cold - (isfinite(q->load) ? q->load : 0) -
               (isfinite(q->warm) ? q->warm : 0);
}

/* TTFT_cold = load_weights + runtime_warmup + other start-up + first prefill + queueing. */
static void section_equation(const struct json *t, struct buf *o)
{
    buf_puts(o, "## The cold-start equation, measured\n");
    if (!t) {
        buf_puts(o, "Tier 1 was not run: no terms to fill.\n\n");
        return;
    }
    struct eq_terms q;
    equation_terms(t, &q);
    char a[32], b[32], c[32], d[32], e[32], f[32], g[32];
    buf_printf(o, "TTFT_cold (restart to first token) = %s ≈ load_weights %s + runtime_warmup %s "
                  "+ other start-up %s + first_prefill %s + queueing %s (ready to the cold "
                  "request sent; one request, nothing ahead of it)\n\n",
               ms(q.total, a, sizeof a), ms(q.load, b, sizeof b), ms(q.warm, c, sizeof c),
               ms(q.other, d, sizeof d), ms(q.cold, e, sizeof e), ms(q.queue, g, sizeof g));
    buf_printf(o, "TTFT_warm ≈ first_prefill + small scheduling overhead + queueing = %s (median "
                  "of the warm runs, one request at a time)\n\n",
               ms(lab_jnum(t, "summary.warm_ttft_p50_ms"), f, sizeof f));
    buf_printf(o, "Where the terms come from: load_weights (%s; on a GPU it includes the copy to "
                  "device memory) and runtime_warmup (%s: profiling, KV allocation, compilation, "
                  "warm-up or graph capture) are the server's start-up phases (\"logged\": "
                  "durations it printed; \"arrival\": differences of log-line arrival times; see "
                  "first_token_latency.md); first_prefill is the cold request's TTFT measured by "
                  "the probe; other start-up is the rest of restart to ready (%s of the %s): "
                  "process start, HTTP start-up, readiness polling.\n\n",
               q.load_src, q.warm_src, ms(q.ready, e, sizeof e), ms(q.total, d, sizeof d));
}

static void observe_spikes(const struct json *t, struct buf *o)
{
    char a[32], b[32];
    double p50 = lab_jnum(t, "repeats[0].warm.ttft_p50_ms");
    double mx = lab_jnum(t, "repeats[0].warm.ttft_max_ms");
    if (!t || !isfinite(p50) || !isfinite(mx)) {
        buf_puts(o, "- What caused TTFT spikes? No warm runs were measured.\n");
        return;
    }
    double r = p50 > 0 ? mx / p50 : NAN;
    buf_printf(o, "- What caused TTFT spikes? The slowest warm run took %s against a %s median "
                  "(%.2fx). %s The cold request was %.2fx the warm median: that gap is the "
                  "first-request cost after a restart, not a spike.\n",
               ms(mx, a, sizeof a), ms(p50, b, sizeof b), r,
               r > 1.5 ? "That is beyond the 1.5x-the-median spread rule: first_token_latency.md "
                         "lists the server CPU and telemetry around it."
                       : "No warm run went beyond 1.5x the median: no spike in this run.",
               lab_jnum(t, "summary.cold_warm_factor"));
}

static void observe_kv(const struct json *k, struct buf *o)
{
    if (!k) {
        buf_puts(o, "- What `max-model-len` feels safe? Tier 3A was not run.\n");
        return;
    }
    double safe = lab_jnum(k, "safe_max_model_len");
    double want = lab_jnum(k, "concurrency_wanted");
    if (isfinite(safe))
        buf_printf(o, "- What `max-model-len` feels safe here? %.0f: the largest length tested at "
                      "which the server still holds %.0f concurrent requests of that length "
                      "(regime: %s; %s).\n",
                   safe, want, lab_jstr(k, "regime", "unknown"), lab_jstr(k, "regime_why", ""));
    else
        buf_printf(o, "- What `max-model-len` feels safe here? None of the tested lengths holds "
                      "%.0f concurrent requests of that length (see kv_cache_scaling_notes.md).\n",
                   want);
}

static void section_observations(const struct lab_inputs *in, struct buf *o)
{
    buf_puts(o, "## Observations / Surprises\n");
    observe_spikes(TTFT(in), o);
    observe_prefix(PREFIX(in), o);
    observe_kv(KV(in), o);
    const struct json *b = BATCH(in);
    const char *knee = lab_jstr(b, "knee_summary", NULL);
    if (knee)
        buf_printf(o, "- Batching: %s\n", knee);
    buf_puts(o, "\n");
}

static void section_sre(const struct lab_inputs *in, struct buf *o)
{
    const struct json *t = TTFT(in), *b = BATCH(in);
    char a[32], c[32], d[32];
    buf_puts(o, "## How I'd explain TTFT to an SRE\n");
    if (!t) {
        buf_puts(o, "Tier 1 was not run.\n\n");
        return;
    }
    buf_printf(o, "TTFT is how long a user stares at an empty reply before the first word "
                  "appears. On this setup a warm server answers in about %s. Right after a "
                  "restart the first user waits %s from the restart (%s of it before the server "
                  "even accepts requests), so a rolling restart or a crash loop shows up as TTFT "
                  "incidents even when steady-state latency is fine: keep a warm replica or "
                  "gate traffic on readiness.",
               ms(lab_jnum(t, "summary.warm_ttft_p50_ms"), a, sizeof a),
               ms(lab_jnum(t, "repeats[0].launch_to_first_token_ms"), c, sizeof c),
               ms(lab_jnum(t, "summary.launch_to_ready_ms"), d, sizeof d));
    if (b && lab_jget(b, "peak.concurrency"))
        buf_printf(o, " Under load TTFT grows with queueing: at concurrency %.0f the p95 "
                      "end-to-end latency was %s against %s at concurrency %.0f; that is the "
                      "price of the extra throughput.",
                   lab_jnum(b, "peak.concurrency"),
                   ms(lab_jnum(b, "peak.p95_e2e_s") * 1000, a, sizeof a),
                   ms(lab_jnum(b, "sweep[0].e2e_ms.p95"), c, sizeof c),
                   lab_jnum(b, "sweep[0].concurrency"));
    buf_puts(o, " Knobs: prefix caching cuts TTFT for repeated prompts; a smaller "
                "`max-num-seqs` keeps TTFT low at the cost of throughput; chunked prefill keeps "
                "long prompts from stalling everyone else's tokens.\n\n");
}

static void section_presets(const struct lab_preset *p, int n, struct buf *o)
{
    buf_puts(o, "## Presets derived from the measurements\n");
    for (int i = 0; i < n; i++) {
        buf_printf(o, "- **%s** (`serve_slm_%s.sh`)", p[i].name, p[i].name);
        if (!p[i].usable) {
            buf_printf(o, ": not derived: %s\n", p[i].evidence[0]);
            continue;
        }
        buf_printf(o, ": max-num-seqs %d, max-num-batched-tokens %d, max-model-len %d%s\n",
                   p[i].max_num_seqs, p[i].max_num_batched_tokens, p[i].max_model_len,
                   p[i].chunked_prefill ? ", chunked prefill on" : "");
        for (int k = 0; k < p[i].n_evidence; k++)
            buf_printf(o, "  - %s\n", p[i].evidence[k]);
    }
    buf_puts(o, "\n");
}

void lab_day_render(const struct lab_inputs *in, const struct session *s,
                    const struct lab_result *r, const struct lab_preset *presets, int n_presets,
                    const char *const *artifacts, int n_artifacts, struct buf *out)
{
    buf_printf(out, "# Day write-up: TTFT, Prefix Caching, KV Scaling, Micro-Batching\n\n");
    int any_fail = 0;
    for (int t = 0; t < LAB_TIER__COUNT; t++)
        any_fail |= r->state[t] == LAB_TIER_STATE_FAILED || r->state[t] == LAB_TIER_STATE_INTERRUPTED;
    buf_puts(out, "Tiers: ");
    for (int t = 0; t < LAB_TIER__COUNT; t++)
        buf_printf(out, "%s%s %s", t ? ", " : "", lab_tier_title((enum lab_tier)t),
                   r->state[t] == LAB_TIER_STATE_SKIPPED && in->tier[t]
                       ? "not run now (an earlier run's result file is used)"
                       : lab_tier_state_str(r->state[t]));
    buf_printf(out, ".%s\n\n", any_fail ? " Numbers of a failed tier are what it measured before "
                                          "it stopped." : "");
    section_environment(in, s, out);
    section_commands(in, s, out);
    section_key_numbers(in, out);
    buf_puts(out, "## Artifacts Created/Updated\n");
    for (int i = 0; i < n_artifacts; i++)
        buf_printf(out, "- %s\n", artifacts[i]);
    buf_puts(out, "\n");
    section_observations(in, out);
    section_equation(TTFT(in), out);
    section_sre(in, out);
    section_presets(presets, n_presets, out);
}
