/* lab: `slmprobe lab`, the whole day of the seeds in one process: Tier 1 (ttft), Tier 2
 * (prefix), Tier 3A (kv) and Tier 3B (batch) run as library calls on one session against one
 * server configuration, every artifact in one folder under the seed's names, then the day's
 * write-up (DAY.md, in the seed's template, every field filled from the tiers' result files),
 * presets for an interactive and a throughput service with launch scripts, lab.json and one
 * report page (report.html). --resume reuses tiers whose result file says they finished. It
 * measures nothing itself: each tier does (src/<tier>/), and the write-up reads their JSON.
 *
 *   struct lab_opts o; lab_opts_defaults(&o);  o.quick = 1;
 *   struct lab_result r;
 *   lab_run(&o, &session, &r);       // runs the tiers asked for, writes their artifacts
 *   lab_write(&o, &session, &r);     // DAY.md, presets, lab.json, report.html */
#ifndef SLM_LAB_LAB_H
#define SLM_LAB_LAB_H

#include <stddef.h>

#include "run/session.h"
#include "util/json.h"

enum lab_tier { LAB_TIER_TTFT = 0, LAB_TIER_PREFIX, LAB_TIER_KV, LAB_TIER_BATCH, LAB_TIER__COUNT };
const char *lab_tier_str(enum lab_tier t);   /* "1", "2", "3a", "3b" */
const char *lab_tier_name(enum lab_tier t);  /* "ttft", "prefix", "kv", "batch" */
const char *lab_tier_title(enum lab_tier t); /* "Tier 1: first token latency", ... */
const char *lab_tier_json(enum lab_tier t);  /* "ttft.json", "prefix.json", ... */
const char *lab_tier_html(enum lab_tier t);  /* "first_token_latency.html", ... */

enum lab_tier_state {
    LAB_TIER_STATE_SKIPPED = 0, /* not asked for (--tiers) */
    LAB_TIER_STATE_OK,
    LAB_TIER_STATE_FAILED,      /* ran, its result says failed (artifacts still written) */
    LAB_TIER_STATE_INTERRUPTED,
    LAB_TIER_STATE_REUSED,      /* --resume: an earlier run's finished result */
};
const char *lab_tier_state_str(enum lab_tier_state s);

struct lab_opts {
    int tiers[LAB_TIER__COUNT]; /* 1: run it */
    int quick;                  /* minutes instead of the full day */
    int resume;
    int concurrency_wanted;     /* for the KV headroom answer and presets [8] */
};
void lab_opts_defaults(struct lab_opts *o); /* every tier, full day, no resume */
/* "1,2,3a,3b" (any subset, any order) into o->tiers. 0, or -1 with err naming the bad part. */
int lab_tiers_parse(const char *list, struct lab_opts *o, char *err, size_t err_len);

struct lab_result {
    enum lab_tier_state state[LAB_TIER__COUNT];
    double tier_s[LAB_TIER__COUNT]; /* wall time of each tier run now (0 reused/skipped) */
    int failed, interrupted;
    char fail_msg[512];
};

/* Runs the tiers asked for, in order 1, 2, 3a, 3b, each writing its own artifacts into the
 * session's out_dir; stops after an interrupt (what is done stays written). 0, or -1 (a tier
 * failed or was interrupted: r says which). */
int lab_run(const struct lab_opts *o, struct session *s, struct lab_result *r);

/* The write-up from the tiers' JSON files in out_dir: DAY.md, serve_slm.sh, the presets and their
 * scripts, lab.json, report.html. 0, or -1 with err. */
int lab_write(const struct lab_opts *o, struct session *s, const struct lab_result *r,
              char *err, size_t err_len);

/* ---- pieces, exposed for tests ---- */

/* The tier results as parsed JSON (NULL where absent). */
struct lab_inputs {
    struct json *tier[LAB_TIER__COUNT];
};
void lab_inputs_load(const char *out_dir, struct lab_inputs *in);
void lab_inputs_free(struct lab_inputs *in);
/* 1 when the tier's result file says it finished (ok: not failed, not interrupted). */
int lab_tier_finished(const struct lab_inputs *in, enum lab_tier t);

/* One server configuration derived from the measurements, with the evidence it rests on. */
struct lab_preset {
    const char *name;           /* "interactive", "throughput" */
    int max_num_seqs;           /* -1 unknown */
    int max_num_batched_tokens; /* -1 unknown */
    int max_model_len;          /* -1 unknown */
    double gpu_memory_utilization; /* NAN: keep the server's default */
    int chunked_prefill;        /* 1 on */
    char evidence[4][300];      /* sentences, computed */
    int n_evidence;
    int usable;                 /* 0: not enough data (evidence[0] says what is missing) */
};
/* Derives both presets from batch.json and kv.json (either may be NULL). */
void lab_presets_derive(const struct lab_inputs *in, int concurrency_wanted,
                        struct lab_preset *interactive, struct lab_preset *throughput);

/* DAY.md into out (Markdown). artifacts: names of files present in out_dir. */
void lab_day_render(const struct lab_inputs *in, const struct session *s,
                    const struct lab_result *r, const struct lab_preset *presets, int n_presets,
                    const char *const *artifacts, int n_artifacts, struct buf *out);

#endif
