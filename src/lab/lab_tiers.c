/* lab_tiers: the names of the lab's tiers, their result files, the --tiers list parser, and the
 * "did this tier finish?" test --resume uses (read from each tier's own result file). No I/O
 * beyond what lab_inputs_load already read. */
#include <stdio.h>
#include <string.h>

#include "lab/lab.h"
#include "lab/lab_json.h"

static const struct {
    const char *id, *name, *title, *json, *html;
} tiers[LAB_TIER__COUNT] = {
    {"1", "ttft", "Tier 1: first token latency", "ttft.json", "first_token_latency.html"},
    {"2", "prefix", "Tier 2: prefix caching", "prefix.json", "prefix_caching_results.html"},
    {"3a", "kv", "Tier 3A: KV cache vs max-model-len", "kv.json", "kv_cache_scaling_notes.html"},
    {"3b", "batch", "Tier 3B: micro-batching", "batch.json", "batching_benchmark.html"},
};

#define TIER_FIELD(t, f) ((t) >= 0 && (t) < LAB_TIER__COUNT ? tiers[t].f : "unknown")

const char *lab_tier_str(enum lab_tier t) { return TIER_FIELD(t, id); }
const char *lab_tier_name(enum lab_tier t) { return TIER_FIELD(t, name); }
const char *lab_tier_title(enum lab_tier t) { return TIER_FIELD(t, title); }
const char *lab_tier_json(enum lab_tier t) { return TIER_FIELD(t, json); }
const char *lab_tier_html(enum lab_tier t) { return TIER_FIELD(t, html); }

const char *lab_tier_state_str(enum lab_tier_state s)
{
    switch (s) {
    case LAB_TIER_STATE_SKIPPED: return "skipped";
    case LAB_TIER_STATE_OK: return "ok";
    case LAB_TIER_STATE_FAILED: return "failed";
    case LAB_TIER_STATE_INTERRUPTED: return "interrupted";
    case LAB_TIER_STATE_REUSED: return "reused";
    }
    return "unknown";
}

void lab_opts_defaults(struct lab_opts *o)
{
    memset(o, 0, sizeof *o);
    for (int t = 0; t < LAB_TIER__COUNT; t++)
        o->tiers[t] = 1;
    o->concurrency_wanted = 8;
}

int lab_tiers_parse(const char *list, struct lab_opts *o, char *err, size_t err_len)
{
    int want[LAB_TIER__COUNT] = {0}, n = 0;
    const char *p = list;
    while (p && *p) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int t = 0; t < LAB_TIER__COUNT; t++)
            if ((strlen(tiers[t].id) == len && !strncmp(p, tiers[t].id, len)) ||
                (strlen(tiers[t].name) == len && !strncmp(p, tiers[t].name, len)))
                found = t;
        if (found < 0) {
            snprintf(err, err_len, "--tiers: unknown tier '%.*s' (1, 2, 3a, 3b or ttft, prefix, "
                                   "kv, batch)", (int)len, p);
            return -1;
        }
        want[found] = 1;
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (!n) {
        snprintf(err, err_len, "--tiers: empty list");
        return -1;
    }
    memcpy(o->tiers, want, sizeof want);
    return 0;
}

/* 1 when the tier's result file says it finished (not failed, not interrupted). */
int lab_tier_finished(const struct lab_inputs *in, enum lab_tier t)
{
    const struct json *j = in->tier[t];
    if (!j)
        return 0;
    switch (t) {
    case LAB_TIER_TTFT: return !strcmp(lab_jstr(j, "status", ""), "ok");
    case LAB_TIER_PREFIX: return !strcmp(lab_jstr(j, "status", ""), "ok");
    case LAB_TIER_KV: return !lab_jbool(j, "failed", 1) && !lab_jbool(j, "interrupted", 1);
    case LAB_TIER_BATCH: return !strcmp(lab_jstr(j, "outcome.status", ""), "ok");
    default: return 0;
    }
}
