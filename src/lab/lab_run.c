/* lab_run: runs the lab's tiers in order (1, 2, 3a, 3b) as library calls on one session, each
 * writing its own artifacts under the seed's names into the one output folder, with a progress
 * line (tier, elapsed, an ETA for the day from the tiers' expected shares) and --resume (a tier
 * whose result file says it finished is reused, not rerun; an unfinished kv sweep resumes at the
 * lengths it had not done). --quick scales every tier down to minutes. The tiers measure; this
 * file only chooses their options and sequences them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"
#include "kv/kv_probe.h"
#include "lab/lab.h"
#include "prefix/prefix.h"
#include "ttft/ttft.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

#define MOD "lab"

/* Expected share of the day's time per tier (quick and full), for the ETA only. */
static const double tier_weight[2][LAB_TIER__COUNT] = {{1, 3, 2, 3}, {1, 4, 3, 4}};

static enum lab_tier_state state_of(int failed, const struct session *s)
{
    return session_interrupted(s) ? LAB_TIER_STATE_INTERRUPTED
           : failed               ? LAB_TIER_STATE_FAILED
                                  : LAB_TIER_STATE_OK;
}

static enum lab_tier_state run_ttft(const struct lab_opts *o, struct session *s)
{
    struct ttft_opts to;
    ttft_opts_defaults(&to);
    if (o->quick) {
        to.warm_runs = 5;
        to.max_tokens = 16;
    }
    struct ttft_result res;
    ttft_run(&to, s, &res);
    int failed = res.failed || ttft_write_outputs(&res, s) != 0;
    ttft_result_free(&res);
    return state_of(failed, s);
}

static enum lab_tier_state run_prefix(const struct lab_opts *o, struct session *s)
{
    struct prefix_opts po;
    prefix_opts_defaults(&po);
    if (o->quick) {
        /* both regimes (the 1K+ one shorter), 100% and 0% reuse: the fit's two ends */
        po.gen.len_tokens[PREFIX_REGIME_LARGE] = 1024;
        po.gen.n_variants = 6;
        po.n_requests = 6;
        po.concurrency[0] = 1;
        po.concurrency[1] = 4;
        po.n_concurrency = 2;
        po.hit_mix[0] = 1.0;
        po.hit_mix[1] = 0.0;
        po.n_hit_mix = 2;
        po.max_tokens = 8;
    }
    po.progress = 1;
    struct prefix_set set;
    char err[1024];
    int failed = 1;
    if (prefix_set_generate(&set, &po.gen) != PREFIX_OK) {
        log_error(MOD, "Tier 2: could not generate the prefix workload");
        return LAB_TIER_STATE_FAILED;
    }
    struct prefix_result res;
    int rc = prefix_run(&po, &set, s, &res);
    failed = rc != PROBE_EXIT_OK;
    if (prefix_write_outputs(&res, s->out_dir, err, sizeof err) != 0) {
        log_error(MOD, "Tier 2: %s", err);
        failed = 1;
    }
    prefix_result_free(&res);
    prefix_set_free(&set);
    return state_of(failed, s);
}

static enum lab_tier_state run_kv(const struct lab_opts *o, struct session *s)
{
    struct kv_opts ko;
    kv_opts_defaults(&ko);
    ko.concurrency = o->concurrency_wanted;
    ko.resume = o->resume; /* an interrupted sweep goes on where it stopped */
    if (o->quick) {
        static const int quick_lengths[] = {512, 1024, 2048};
        memcpy(ko.lengths, quick_lengths, sizeof quick_lengths);
        ko.n_lengths = 3;
    }
    struct kv_result res;
    kv_result_init(&res);
    if (ko.resume) {
        char path[1200], err[512];
        if (kv_csv_load(session_path(s, "kv_cache_scaling.csv", path, sizeof path), &res, err,
                        sizeof err) < 0)
            log_warn(MOD, "Tier 3A: not resuming the sweep: %s", err);
    }
    int failed = kv_run_and_write(&ko, s, &res);
    kv_result_free(&res);
    return state_of(failed, s);
}

static enum lab_tier_state run_batch(const struct lab_opts *o, struct session *s)
{
    struct batch_opts bo;
    batch_opts_defaults(&bo);
    bo.log_name = "server_batch.log"; /* Tier 1 logs to server.log in the same directory */
    if (o->quick) {
        static const int quick_conc[] = {1, 2, 4, 8};
        memcpy(bo.conc, quick_conc, sizeof quick_conc);
        bo.n_conc = 4;
        bo.rounds = 2;
        bo.num_requests = 8;
        bo.output_len = 32;
        bo.repeat = 1;
    }
    struct batch_result *res = xcalloc(1, sizeof *res);
    int rc = batch_run(&bo, s, res);
    int failed = rc != PROBE_EXIT_OK;
    if (batch_write_outputs(res, s) != 0)
        failed = 1;
    free(res);
    return state_of(failed, s);
}

static enum lab_tier_state (*const tier_run[LAB_TIER__COUNT])(const struct lab_opts *,
                                                             struct session *) = {
    run_ttft, run_prefix, run_kv, run_batch};

static void progress(const struct lab_opts *o, enum lab_tier t, double elapsed_s, double done_w,
                     double total_w)
{
    char eta[48] = "ETA unknown until the first tier ends";
    if (done_w > 0)
        snprintf(eta, sizeof eta, "ETA %.0f s for the rest of the day",
                 elapsed_s / done_w * (total_w - done_w));
    log_info(MOD, "%s (tier %s) starting: %.0f s into the day, %s", lab_tier_title(t),
             lab_tier_str(t), elapsed_s, eta);
    (void)o;
}

int lab_run(const struct lab_opts *o, struct session *s, struct lab_result *r)
{
    memset(r, 0, sizeof *r);
    struct lab_inputs prev;
    lab_inputs_load(s->out_dir, &prev);
    double total_w = 0, done_w = 0;
    for (int t = 0; t < LAB_TIER__COUNT; t++)
        if (o->tiers[t])
            total_w += tier_weight[!o->quick][t];
    mono_ns t0 = clock_now_ns();
    for (int t = 0; t < LAB_TIER__COUNT && !session_interrupted(s); t++) {
        if (!o->tiers[t])
            continue;
        if (o->resume && lab_tier_finished(&prev, (enum lab_tier)t)) {
            r->state[t] = LAB_TIER_STATE_REUSED;
            log_info(MOD, "%s: reusing the finished %s (--resume)",
                     lab_tier_title((enum lab_tier)t), lab_tier_json((enum lab_tier)t));
            total_w -= tier_weight[!o->quick][t];
            continue;
        }
        progress(o, (enum lab_tier)t, ns_to_s(clock_now_ns() - t0), done_w, total_w);
        session_cancel_reset(s); /* a tier's server death must not stop the next tier */
        mono_ns ts = clock_now_ns();
        r->state[t] = tier_run[t](o, s);
        r->tier_s[t] = ns_to_s(clock_now_ns() - ts);
        done_w += tier_weight[!o->quick][t];
        log_info(MOD, "%s: %s in %.1f s", lab_tier_title((enum lab_tier)t),
                 lab_tier_state_str(r->state[t]), r->tier_s[t]);
        if (r->state[t] == LAB_TIER_STATE_FAILED && !r->failed) {
            r->failed = 1;
            snprintf(r->fail_msg, sizeof r->fail_msg, "%s failed (see its report)",
                     lab_tier_title((enum lab_tier)t));
        }
    }
    r->interrupted = session_interrupted(s);
    lab_inputs_free(&prev);
    return r->failed || r->interrupted ? -1 : 0;
}
