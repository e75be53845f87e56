/* lab_presets: an "interactive" and a "throughput" server configuration derived from the day's
 * measurements (the batching sweep's sweet spot, SLO limit, knee and peak from batch.json; the
 * latency- and throughput-focused max-model-len picks from kv.json), each with the evidence it
 * rests on, and the launch script for it in the server's own flag names (vLLM and the embedded
 * server: --max-num-seqs/--max-num-batched-tokens/--max-model-len; llama.cpp: -np/-c/-b;
 * SGLang: --max-running-requests/--chunked-prefill-size/--context-length). It measures nothing. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lab/lab.h"
#include "lab/lab_json.h"

static int pow2_at_least(double v, int lo, int hi)
{
    int p = lo;
    while (p < hi && p < v)
        p *= 2;
    return p;
}

static void evidence(struct lab_preset *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void evidence(struct lab_preset *p, const char *fmt, ...)
{
    if (p->n_evidence >= 4)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->evidence[p->n_evidence++], sizeof p->evidence[0], fmt, ap);
    va_end(ap);
}

static void preset_init(struct lab_preset *p, const char *name)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    p->max_num_seqs = p->max_num_batched_tokens = p->max_model_len = -1;
    p->gpu_memory_utilization = NAN;
    p->chunked_prefill = 1;
}

/* max-model-len from kv.json's pick, else the batch run's server limit. */
static void pick_len(struct lab_preset *p, const struct json *kv, const struct json *b,
                     const char *kv_key, const char *why)
{
    double len = lab_jnum(kv, kv_key);
    if (isfinite(len) && len > 0) {
        p->max_model_len = (int)len;
        evidence(p, "max-model-len %d: %s (kv_cache_scaling_notes.md).", p->max_model_len, why);
        return;
    }
    len = lab_jnum(b, "environment.max_model_len_tokens");
    if (isfinite(len) && len > 0) {
        p->max_model_len = (int)len;
        evidence(p, "max-model-len %d: the length the batching tier ran with (Tier 3A gave no "
                    "pick).", p->max_model_len);
    }
}

static void derive_interactive(const struct json *b, const struct json *kv, struct lab_preset *p)
{
    const char *src = lab_jget(b, "slo_limit.concurrency") ? "slo_limit" : "sweet_spot";
    char key[64];
    snprintf(key, sizeof key, "%s.concurrency", src);
    double c = lab_jnum(b, key);
    if (!isfinite(c)) {
        snprintf(p->evidence[0], sizeof p->evidence[0],
                 "the batching sweep (Tier 3B) found no sweet spot to size it from");
        p->n_evidence = 1;
        return;
    }
    p->usable = 1;
    p->max_num_seqs = (int)c;
    char k2[64], k3[64];
    snprintf(k2, sizeof k2, "%s.tok_s", src);
    snprintf(k3, sizeof k3, "%s.p95_e2e_s", src);
    evidence(p, "max-num-seqs %d: the sweep's %s (%.1f tok/s at p95 end-to-end %.2f s), where "
                "throughput per second of p95 latency was best.",
             p->max_num_seqs, !strcmp(src, "slo_limit") ? "highest level that met the SLO"
                                                       : "sweet spot",
             lab_jnum(b, k2), lab_jnum(b, k3));
    double in_len = lab_jnum(b, "config.input_len_tokens");
    p->max_num_batched_tokens = pow2_at_least(isfinite(in_len) ? 2 * in_len : 512, 512, 2048);
    evidence(p, "max-num-batched-tokens %d with chunked prefill: steps stay short, so a long "
                "prompt (the sweep's were %.0f tokens) cannot stall the decodes already running.",
             p->max_num_batched_tokens, in_len);
    pick_len(p, kv, b, "pick_latency_max_model_len", "the latency-focused pick");
}

static void derive_throughput(const struct json *b, const struct json *kv, struct lab_preset *p)
{
    int knee = isfinite(lab_jnum(b, "knee.concurrency"));
    double c = lab_jnum(b, knee ? "knee.concurrency" : "peak.concurrency");
    if (!isfinite(c)) {
        snprintf(p->evidence[0], sizeof p->evidence[0],
                 "the batching sweep (Tier 3B) found no knee or peak to size it from");
        p->n_evidence = 1;
        return;
    }
    p->usable = 1;
    p->max_num_seqs = (int)c;
    if (knee)
        evidence(p, "max-num-seqs %d, the knee of the sweep: %s", p->max_num_seqs,
                 lab_jstr(b, "knee_summary", lab_jstr(b, "knee.reason", "")));
    else
        evidence(p, "max-num-seqs %d: the sweep's peak (%.1f tok/s); no knee within the levels "
                    "tried, so a larger value may still pay (extend --concurrency).",
                 p->max_num_seqs, lab_jnum(b, "peak.tok_s"));
    double in_len = lab_jnum(b, "config.input_len_tokens");
    p->max_num_batched_tokens =
        pow2_at_least(isfinite(in_len) ? in_len * p->max_num_seqs : 8192, 2048, 16384);
    evidence(p, "max-num-batched-tokens %d: room for every running sequence's prompt (%d x %.0f "
                "tokens) in few steps.",
             p->max_num_batched_tokens, p->max_num_seqs, in_len);
    pick_len(p, kv, b, "pick_throughput_max_model_len", "the throughput-focused pick");
}

void lab_presets_derive(const struct lab_inputs *in, int concurrency_wanted,
                        struct lab_preset *interactive, struct lab_preset *throughput)
{
    (void)concurrency_wanted;
    preset_init(interactive, "interactive");
    preset_init(throughput, "throughput");
    const struct json *b = in->tier[LAB_TIER_BATCH], *kv = in->tier[LAB_TIER_KV];
    derive_interactive(b, kv, interactive);
    derive_throughput(b, kv, throughput);
}
