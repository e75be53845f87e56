/* ttft_story: the parts of the ttft report that tell the cold-start story in the seed's form: the
 * storage sentences (the model files' residency before launch and at ready, the bytes the server's
 * tree read and its major faults up to ready, the page cache as corroboration only, and a plain
 * statement when the signals disagree), the latency stack with each term's number and source,
 * the "Quick TTFT mental model", "How I'd explain TTFT to an SRE" and the warm outliers with what
 * coincided. Every number is formatted from the result; it measures and decides nothing that
 * ttft_result.c and ttft_outlier.c do not. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ttft/ttft.h"
#include "util/buf.h"

static double pct_of(int64_t part, int64_t whole)
{
    return part >= 0 && whole > 0 ? 100.0 * (double)part / (double)whole : NAN;
}

/* "12.3 MiB (4%)" of the model, or "unknown". */
static void fmt_resident(int64_t bytes, int64_t model_bytes, char *out, size_t n)
{
    if (bytes < 0)
        snprintf(out, n, "unknown");
    else
        snprintf(out, n, "%.1f MiB (%.0f%%)", ttft_mib(bytes), pct_of(bytes, model_bytes));
}

/* The direct signals as one clause: reads and faults up to ready. */
static void fmt_reads(const struct ttft_repeat *rr, char *out, size_t n)
{
    char rd[64], mf[64];
    if (rr->read_bytes_ready >= 0)
        snprintf(rd, sizeof rd, "read %.1f MiB from storage", ttft_mib(rr->read_bytes_ready));
    else
        snprintf(rd, sizeof rd, "read an unknown amount from storage (/proc/PID/io unreadable)");
    if (rr->majflt_ready >= 0)
        snprintf(mf, sizeof mf, "%lld major page fault(s)", (long long)rr->majflt_ready);
    else
        snprintf(mf, sizeof mf, "an unknown number of major page faults");
    snprintf(out, n, "the server's processes %s and took %s up to ready", rd, mf);
}

/* The page cache sentence: corroboration only, and whether it matches the direct signals. */
static void obs_page_cache(const struct ttft_repeat *rr, enum ttft_storage v,
                           struct report_section *s)
{
    if (rr->page_cache_before_bytes < 0 || rr->page_cache_ready_bytes < 0)
        return;
    double d_mib = ttft_mib(rr->page_cache_ready_bytes) - ttft_mib(rr->page_cache_before_bytes);
    double read_mib = ttft_mib(rr->read_bytes_ready), model_mib = ttft_mib(rr->model_bytes);
    const char *match = "the direct signals above decide";
    if (v == TTFT_STORAGE_COLD && isfinite(read_mib) && read_mib > 0)
        match = d_mib >= TTFT_STORAGE_READ_FRAC * read_mib
                    ? "consistent with the reads above"
                    : "less than the reads above (other processes' files and reclaim move it "
                      "too); the direct signals above decide";
    else if (v == TTFT_STORAGE_WARM && isfinite(model_mib))
        match = fabs(d_mib) < TTFT_STORAGE_READ_FRAC * model_mib
                    ? "consistent with weights that were already cached"
                    : "not explained by the model's files (other processes and reclaim move it); "
                      "the direct signals above decide";
    report_bullet(s,
                  "Corroboration only: the machine's page cache (Cached - Shmem, every process's "
                  "files) changed by %+.1f MiB from launch to ready, %s.",
                  d_mib, match);
}

int ttft_obs_storage(const struct ttft_result *res, const struct ttft_repeat *rr,
                     struct report_section *s)
{
    if (res->url_mode)
        return 0;
    const struct target_config *tc = &res->s->po->target;
    char before[64], launch[64], ready[64], reads[192];
    fmt_resident(rr->model_resident_before_bytes, rr->model_bytes, before, sizeof before);
    fmt_resident(rr->model_resident_launch_bytes, rr->model_bytes, launch, sizeof launch);
    fmt_resident(rr->model_resident_ready_bytes, rr->model_bytes, ready, sizeof ready);
    fmt_reads(rr, reads, sizeof reads);
    double model_mib = ttft_mib(rr->model_bytes);
    int n_said = 0;
    if (tc->cold_storage && !rr->cold_storage_effective) {
        report_bullet(s, "--cold-storage was asked for but did not take effect%s%s.",
                      rr->cold_storage_err[0] ? ": " : "", rr->cold_storage_err);
        n_said++;
    }
    enum ttft_storage v = ttft_storage_verdict(rr);
    switch (v) {
    case TTFT_STORAGE_UNKNOWN:
        report_bullet(s,
                      "Where the weights were at launch is not known: the model's files are not "
                      "a local path this probe can check (residency unknown); %s.",
                      reads);
        return n_said + 1;
    case TTFT_STORAGE_COLD:
        report_bullet(s,
                      "Storage-cold start: of the %.1f MiB model files, %s were in the page cache "
                      "at launch%s%s%s and %s at ready; %s, so the weights came from storage.",
                      model_mib, launch, rr->cold_storage_done ? " (--cold-storage evicted them; " : "",
                      rr->cold_storage_done ? before : "",
                      rr->cold_storage_done ? " before eviction)" : "", ready, reads);
        break;
    case TTFT_STORAGE_WARM:
        report_bullet(s,
                      "The weights were already resident: %s of the %.1f MiB model files were in "
                      "the page cache at launch; %s, so this cold start did not pay for storage "
                      "reads (--cold-storage evicts the model's files for a storage-cold start).",
                      launch, model_mib, reads);
        break;
    case TTFT_STORAGE_PARTIAL:
        report_bullet(s,
                      "The weights were partly resident: %s of the %.1f MiB model files were in "
                      "the page cache at launch and %s at ready; %s.",
                      launch, model_mib, ready, reads);
        break;
    case TTFT_STORAGE_DISAGREE:
        report_bullet(s,
                      "The storage signals disagree, so no conclusion about storage is drawn: "
                      "the model files (%.1f MiB) were %s resident at launch and %s at ready, "
                      "while %s.",
                      model_mib, launch, ready, reads);
        break;
    }
    obs_page_cache(rr, v, s);
    return n_said + 2;
}

int ttft_obs_outliers(const struct ttft_result *res, const struct ttft_repeat *rr,
                      struct report_section *s)
{
    struct summary sm;
    ttft_warm_summary(rr, &sm);
    if (sm.n < 3)
        return 0;
    double thr = ttft_warm_outlier_threshold_ms(rr);
    if (!rr->n_outliers) {
        report_bullet(s,
                      "No warm outlier: no run of the %zu was above %.2f ms (the spread rule: "
                      "above both %.1fx the warm median of %.2f ms and the IQR fence Q3 + %.1f "
                      "IQR).",
                      sm.n, thr, TTFT_OUTLIER_MEDIAN_RATIO, sm.p50, TTFT_OUTLIER_IQR_K);
        return 1;
    }
    for (int i = 0; i < rr->n_outliers; i++) {
        const struct ttft_outlier *o = &rr->outliers[i];
        report_bullet(s,
                      "Outlier: run %d (%s) took %.2f ms, %.2fx the warm median of %.2f ms and "
                      "above the spread rule's %.2f ms: %s.",
                      o->run, o->tag, o->ttft_ms, o->median_ms > 0 ? o->ttft_ms / o->median_ms : NAN,
                      o->median_ms, thr, o->coincided);
    }
    (void)res;
    return rr->n_outliers;
}

/* "a + b" terms of the stack as "1.23 s (logged)" etc. */
static void fmt_term(double ms, const char *src, char *out, size_t n)
{
    char a[32];
    ttft_fmt_ms(ms, a, sizeof a);
    snprintf(out, n, "%s (%s)", a, src);
}

/* One row of the stack table. */
static void stack_row(struct report_table *t, const char *layer, const char *term, double ms,
                      const char *src, const char *what)
{
    report_table_row_add(t);
    report_row_text(t, "%s", layer);
    report_row_text(t, "%s", term);
    if (isfinite(ms))
        report_row_num(t, ms);
    else
        report_row_na(t, "not measured");
    report_row_text(t, "%s", src);
    report_row_text(t, "%s", what);
}

/* Which of load_weights and runtime_warmup dominated, both named with their numbers. */
static void stack_dominated(const struct ttft_stack *st, const struct ttft_repeat *rr,
                            struct report_section *s)
{
    if (!isfinite(st->load_weights_ms) || !isfinite(st->runtime_warmup_ms))
        return;
    char l[64], w[64];
    fmt_term(st->load_weights_ms, st->load_weights_src, l, sizeof l);
    fmt_term(st->runtime_warmup_ms, st->runtime_warmup_src, w, sizeof w);
    enum ttft_storage v = ttft_storage_verdict(rr);
    if (st->load_weights_ms >= st->runtime_warmup_ms)
        report_paragraph(s, "Of the two start-up terms, load_weights %s dominated runtime_warmup %s%s.",
                         l, w,
                         v == TTFT_STORAGE_COLD ? ": page-cache fill (storage-cold) dominated"
                         : v == TTFT_STORAGE_WARM
                             ? "; the weights were already resident, so this is the server's "
                               "own load work (mapping, first touch, type conversion, any copy "
                               "to device memory), not storage"
                             : "");
    else
        report_paragraph(s, "Of the two start-up terms, runtime_warmup %s dominated load_weights %s.",
                         w, l);
}

void ttft_section_stack(const struct ttft_result *res, struct report *r)
{
    if (!res->n_reps)
        return;
    const struct ttft_repeat *rr = &res->reps[0];
    struct ttft_stack st;
    ttft_stack_of(rr, res->url_mode, &st);
    struct report_section *s = report_section_add(r, "latency_stack", "Latency stack (launch 1)");
    char rd[128], gpu[384];
    if (rr->read_bytes_ready >= 0)
        snprintf(rd, sizeof rd, "%.1f MiB read by the server up to ready; %s",
                 ttft_mib(rr->read_bytes_ready), ttft_storage_str(ttft_storage_verdict(rr)));
    else
        snprintf(rd, sizeof rd, "bytes read unknown; %s", ttft_storage_str(ttft_storage_verdict(rr)));
    if (!res->s->gpus.available)
        snprintf(gpu, sizeof gpu, "no GPU (%s): the weights stay in host memory",
                 res->s->gpus.reason);
    else
        snprintf(gpu, sizeof gpu, "GPU memory %.0f MiB before launch, %.0f MiB after cold_1",
                 ttft_mib(rr->gpu_mem_before_bytes), ttft_mib(rr->gpu_mem_after_cold_bytes));
    struct report_table *t = report_table_add(s, "latency_stack", NULL);
    report_table_col(t, "layer", "Layer", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "term", "Term", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "ms", "Time", "ms", REPORT_COL_NUMBER, 1);
    report_table_col(t, "source", "Source", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "what", "Measured", NULL, REPORT_COL_TEXT, 0);
    stack_row(t, "storage -> DRAM (page-cache fill)", "load_weights", st.load_weights_ms,
              st.load_weights_src, rd);
    if (isfinite(rr->startup.upload_s)) { /* the embedded runtime on a GPU logs its upload */
        size_t k = strlen(gpu);
        snprintf(gpu + k, sizeof gpu - k, "; logged upload at %.2f GB/s",
                 rr->startup.upload_gbps);
        stack_row(t, "DRAM -> device memory (HBM copy)", "(inside load_weights)",
                  rr->startup.upload_s * 1000.0, "logged", gpu);
    } else {
        stack_row(t, "DRAM -> device memory (HBM copy)", "(inside load_weights)", NAN, "probe",
                  gpu);
    }
    stack_row(t, "runtime warm-up (graph capture, kernel selection)", "runtime_warmup",
              st.runtime_warmup_ms, st.runtime_warmup_src, "engine init / warm-up phases");
    stack_row(t, "process start, HTTP, readiness polling", "other_startup", st.other_startup_ms,
              "measured remainder", "launch to ready minus the logged terms");
    stack_row(t, "queueing", "queueing", st.queueing_ms, "arrival-time difference",
              "ready to cold_1 sent (one request at a time)");
    stack_row(t, "first prefill", "first_prefill", st.first_prefill_ms, "probe measurement",
              "cold_1 TTFT");
    stack_row(t, "steady state", "TTFT_warm", st.warm_median_ms, "probe measurement",
              "median of warm runs 1..N");
    char l[64], w[64], o[64], q[64], p[64], tot[32], wm[32];
    fmt_term(st.load_weights_ms, st.load_weights_src, l, sizeof l);
    fmt_term(st.runtime_warmup_ms, st.runtime_warmup_src, w, sizeof w);
    fmt_term(st.other_startup_ms, "measured remainder", o, sizeof o);
    fmt_term(st.queueing_ms, "arrival-time difference", q, sizeof q);
    fmt_term(st.first_prefill_ms, "probe measurement", p, sizeof p);
    ttft_fmt_ms(st.cold_total_ms, tot, sizeof tot);
    ttft_fmt_ms(st.warm_median_ms, wm, sizeof wm);
    if (!res->url_mode)
        report_paragraph(s,
                         "TTFT_cold (launch to cold_1's first token, probe) = %s ~ load_weights "
                         "%s + runtime_warmup %s + other start-up %s + first_prefill %s + "
                         "queueing %s.",
                         tot, l, w, o, p, q);
    report_paragraph(s,
                     "TTFT_warm (median of warm runs 1..N, probe) = %s ~ first_prefill + "
                     "small_scheduling_overhead + queueing (one request at a time: no request "
                     "ahead; the three are not separable from the client).",
                     wm);
    if (st.logged_exceeds)
        report_paragraph(s,
                         "The logged durations add up to %.3f s, more than the measured "
                         "launch-to-ready of %.3f s (a log replayed from another run, or clocks "
                         "that disagree): the terms are shown as logged, and no remainder or "
                         "share of launch-to-ready is computed from them.",
                         isfinite(rr->logged_sum_s) ? rr->logged_sum_s
                                                    : (st.load_weights_ms + st.runtime_warmup_ms) / 1000,
                         st.ready_ms / 1000);
    else if (!res->url_mode)
        stack_dominated(&st, rr, s);
}

/* "a% load_weights, b% runtime warm-up, ..." of the cold total, or why there are no shares. */
static void fmt_split(const struct ttft_stack *st, char *out, size_t n)
{
    double t = st->cold_total_ms;
    if (st->logged_exceeds || !isfinite(t) || t <= 0) {
        snprintf(out, n, "cannot be split into shares (%s)",
                 st->logged_exceeds ? "the logged durations exceed the measured launch-to-ready"
                                    : "no cold first token");
        return;
    }
    double lw = isfinite(st->load_weights_ms) ? st->load_weights_ms : 0;
    double rw = isfinite(st->runtime_warmup_ms) ? st->runtime_warmup_ms : 0;
    double ot = isfinite(st->other_startup_ms) ? st->other_startup_ms : 0;
    double qu = isfinite(st->queueing_ms) ? st->queueing_ms : 0;
    snprintf(out, n,
             "splits into load_weights %.0f%%, runtime warm-up %.0f%%, process start and "
             "readiness %.0f%%, queueing %.0f%% and the first prefill %.0f%%",
             100 * lw / t, 100 * rw / t, 100 * ot / t, 100 * qu / t,
             100 * st->first_prefill_ms / t);
}

void ttft_section_model(const struct ttft_result *res, struct report *r)
{
    if (!res->n_reps || res->url_mode)
        return;
    const struct ttft_repeat *rr = &res->reps[0];
    struct ttft_stack st;
    ttft_stack_of(rr, 0, &st);
    struct report_section *s = report_section_add(r, "mental_model", "Quick TTFT mental model");
    if (!isfinite(st.first_prefill_ms) || !isfinite(st.warm_median_ms) || st.warm_median_ms <= 0) {
        report_paragraph(s, "Too little was measured (no ok cold_1 or no ok warm run).");
        return;
    }
    char p[32], wm[32], tot[32], split[256], rd[160];
    ttft_fmt_ms(st.first_prefill_ms, p, sizeof p);
    ttft_fmt_ms(st.warm_median_ms, wm, sizeof wm);
    ttft_fmt_ms(st.cold_total_ms, tot, sizeof tot);
    fmt_split(&st, split, sizeof split);
    enum ttft_storage v = ttft_storage_verdict(rr);
    if (v == TTFT_STORAGE_COLD)
        snprintf(rd, sizeof rd, "this start was storage-cold and read %.1f MiB before ready",
                 ttft_mib(rr->read_bytes_ready));
    else if (v == TTFT_STORAGE_WARM)
        snprintf(rd, sizeof rd,
                 "this start found the weights in the page cache; after a reboot it would "
                 "first read the %.1f MiB model files from storage",
                 ttft_mib(rr->model_bytes));
    else
        snprintf(rd, sizeof rd, "where the weights were at launch: %s", ttft_storage_str(v));
    report_paragraph(s,
                     "Cold is %.1fx warm: cold_1's TTFT was %s against a warm median of %s; "
                     "counted from launch, the first token came after %s, %.0fx the warm median. "
                     "That time %s. After a restart, expect the first token about %s after the "
                     "process starts (%s), then TTFT near %s from the second request on.",
                     st.first_prefill_ms / st.warm_median_ms, p, wm, tot,
                     st.cold_total_ms / st.warm_median_ms, split, tot, rd, wm);
}

void ttft_section_sre(const struct ttft_result *res, struct report *r)
{
    if (!res->n_reps)
        return;
    const struct ttft_repeat *rr = &res->reps[0];
    struct ttft_stack st;
    ttft_stack_of(rr, res->url_mode, &st);
    struct summary sm;
    ttft_warm_summary(rr, &sm);
    struct report_section *s =
        report_section_add(r, "sre", "How I'd explain TTFT to an SRE");
    char wm[32], p95[32], tot[32], rdy[32], w[32], lw[32], q[32], rd[64];
    snprintf(rd, sizeof rd, rr->read_bytes_ready >= 0 ? "%.1f MiB" : "an unknown amount",
             ttft_mib(rr->read_bytes_ready));
    ttft_fmt_ms(sm.p50, wm, sizeof wm);
    ttft_fmt_ms(sm.p95, p95, sizeof p95);
    ttft_fmt_ms(st.cold_total_ms, tot, sizeof tot);
    ttft_fmt_ms(st.ready_ms, rdy, sizeof rdy);
    ttft_fmt_ms(st.runtime_warmup_ms, w, sizeof w);
    ttft_fmt_ms(st.load_weights_ms, lw, sizeof lw);
    ttft_fmt_ms(st.queueing_ms, q, sizeof q);
    report_bullet(s,
                  "What it means to a user: TTFT is how long someone looks at an empty reply "
                  "before the first word appears. On this server that is %s in steady state "
                  "(median of %zu warm runs, p95 %s) for a %d-token prompt.",
                  wm, sm.n, p95, res->opt.prompt_len);
    if (!res->url_mode)
        report_bullet(s,
                      "Why cold vs warm matters in an incident: the first request after a deploy, "
                      "restart or scale-up waited %s from process start (readiness alone took "
                      "%s), against %s once warm. A TTFT alert right after a restart is start-up, "
                      "not a regression; keep a new replica out of rotation until a warm-up "
                      "request has been answered.",
                      tot, rdy, wm);
    else
        report_bullet(s, "Why cold vs warm matters in an incident: not measured here (--url: the "
                         "server was already running); run without --url to see the restart cost.");
    report_bullet(s,
                  "Knobs and what they trade: model size sets the bytes to load (load_weights "
                  "took %s here; %s read from storage up to ready) and the prefill per "
                  "token; --max-model-len sets the KV cache sized at start-up and the longest "
                  "prefill a request may ask for; the batching policy (max-num-seqs, chunked "
                  "prefill) raises throughput but adds queueing to TTFT under load (queueing "
                  "here, one request at a time: %s); skipping the warm-up (--enforce-eager) "
                  "saves part of runtime_warmup (%s here) at start-up and slows every later step.",
                  lw, rd, q, w);
}
