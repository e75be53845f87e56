/* batch_report: the document of a batch run (batching_benchmark.md/.html) built from a struct
 * batch_result: configuration, definitions, sequential vs concurrent, the sweep (tables of at
 * most 10 columns for the page; the full column set in the CSV-only table "sweep"), charts, knee
 * and rules, open loop, errors with the servers' messages, the server's lifecycle; and the
 * summary on stdout. Every number in prose is formatted from the result here; nothing is
 * measured. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "batch/batch.h"
#include "report/report.h"
#include "util/buf.h"
#include "util/log.h"

#define MOD "batch"

static double ms_to_s(double ms)
{
    return ms / 1000.0;
}

static void sweep_notes(const struct batch_result *res, int row, char *out, size_t n)
{
    const struct batch_level *ls = &res->sweep[row];
    size_t len = 0;
    out[0] = '\0';
#define NOTE(...)                                                                                  \
    do {                                                                                           \
        if (len < n) {                                                                             \
            int w_ = snprintf(out + len, n - len, "%s", len ? "; " : "");                          \
            if (w_ > 0)                                                                            \
                len += (size_t)w_;                                                                 \
            if (len < n) {                                                                         \
                w_ = snprintf(out + len, n - len, __VA_ARGS__);                                    \
                if (w_ > 0)                                                                        \
                    len += (size_t)w_;                                                             \
            }                                                                                      \
        }                                                                                          \
    } while (0)
    if (!ls->complete)
        NOTE("incomplete: run cut short");
    if (ls->complete && ls->n_repeats_cut)
        NOTE("%d repeat%s cut short and left out", ls->n_repeats_cut,
             ls->n_repeats_cut == 1 ? "" : "s");
    for (int k = 0; k < res->n_kl; k++) {
        if (res->kl_row[k] != row)
            continue;
        if (k == res->kr.i_knee && res->kr.knee_reached)
            NOTE("knee");
        if (k == res->kr.i_sweet)
            NOTE("sweet spot");
        if (k == res->kr.i_peak)
            NOTE("peak throughput");
        if (k == res->kr.i_slo_max)
            NOTE("highest level meeting the SLO");
    }
    if (ls->sw.has_waiting && ls->sw.waiting_mean >= 0.5)
        NOTE("server queue: mean %.1f, max %.0f waiting", ls->sw.waiting_mean, ls->sw.waiting_max);
    if (ls->n_err) {
        char e[160];
        batch_errors_str(ls, e, sizeof e);
        NOTE("errors %s", e);
    }
    if (ls->n_no_usage)
        NOTE("%d responses without usage", ls->n_no_usage);
#undef NOTE
}

static void report_config(const struct batch_result *res, struct report *r)
{
    const struct batch_opts *o = &res->opts;
    struct report_section *s = report_section_add(r, "config", "Configuration and workload");
    report_paragraph(s, "%s", res->workload_desc);

    report_bullet(s,
                  "Output: max_tokens = %d with ignore_eos and min_tokens = %d, temperature 0, "
                  "streaming (stream_options.include_usage).",
                  o->output_len, o->output_len);
    if (o->do_sweep) {
        char lv[256] = "", count[96], warm[128];
        size_t len = 0;
        for (int i = 0; i < o->n_conc && len < sizeof lv; i++)
            len += (size_t)snprintf(lv + len, sizeof lv - len, "%s%d", i ? "," : "", o->conc[i]);
        if (o->duration_s > 0)
            snprintf(count, sizeof count, "each level run for %.1f s", o->duration_s);
        else if (o->requests)
            snprintf(count, sizeof count, "%d measured requests per level", o->requests);
        else
            snprintf(count, sizeof count, "max(8, %d x concurrency) measured requests per level",
                     o->rounds);
        if (o->warmup < 0)
            snprintf(warm, sizeof warm, "as many requests as the concurrency");
        else
            snprintf(warm, sizeof warm, "%d requests", o->warmup);
        report_bullet(s,
                      "Sweep: concurrency %s, %s, each level after a warm-up at its concurrency "
                      "(%s, answers of at most %d tokens, left out of the statistics); %d "
                      "sweep%s, levels interleaved, every number the median over them (min/max "
                      "of tok/s and p95 e2e given).",
                      lv, count, warm, BATCH_WARMUP_TOKENS, o->repeat, o->repeat == 1 ? "" : "s");
    }
    if (o->do_seqconc)
        report_bullet(s,
                      "Sequential vs concurrent: %d requests one after another, then all %d "
                      "at once.",
                      o->num_requests, o->num_requests);
    if (o->do_open) {
        report_bullet(s,
                      "Open loop: %s arrivals (gamma-distributed gaps, shape %g), intended send "
                      "times precomputed from seed %llu%s.",
                      o->burstiness == 1.0 ? "Poisson" : "bursty", o->burstiness,
                      (unsigned long long)o->seed,
                      o->max_concurrency ? ", at most --max-concurrency in flight" : "");
    }
    if (res->slo_desc[0])
        report_bullet(s,
                      "SLO: %s; a level meets it when at least %.0f%% of its requests do "
                      "(goodput).",
                      res->slo_desc, 100.0 * o->slo_attainment);
    report_bullet(s, "Knee threshold: doubling concurrency must add at least %.0f%% throughput.",
                  100.0 * o->knee_threshold);
    /* Real prompt lengths from the server's usage. */
    double pmean = 0, pmin = NAN, pmax = NAN, pn = 0;
    for (int i = 0; i < res->n_sweep; i++) {
        const struct batch_level *ls = &res->sweep[i];
        if (isnan(ls->prompt_tok_mean))
            continue;
        pmean += ls->prompt_tok_mean * ls->n_ok;
        pn += ls->n_ok;
        if (isnan(pmin) || ls->prompt_tok_min < pmin)
            pmin = ls->prompt_tok_min;
        if (isnan(pmax) || ls->prompt_tok_max > pmax)
            pmax = ls->prompt_tok_max;
    }
    if (pn > 0)
        report_bullet(s,
                      "Prompt tokens reported by the server's usage over the sweep: mean %.1f, "
                      "min %.0f, max %.0f.",
                      pmean / pn, pmin, pmax);

}

static void report_definitions(struct report *r)
{
    struct report_section *s = report_section_add(r, "definitions", "Metric definitions");
    report_bullet(s, "e2e: end-to-end latency, from handing the request to the socket to the end "
                     "of the stream.");
    report_bullet(s, "TTFT: time to first token, from sending to the first SSE event carrying "
                     "text.");
    report_bullet(s, "ITL: inter-token latency, the gap between consecutive content events "
                     "(pooled over all requests of a level).");
    report_bullet(s, "TPOT: time per output token, (e2e - TTFT) / (output tokens - 1), per "
                     "request; output tokens from the server's usage.");
    report_bullet(s, "QPS: successful requests per second over the level's window (first send to "
                     "last completion). tok_s: output tokens per second over the same window; "
                     "total_tok_s adds prompt tokens.");
    report_bullet(s, "inflight_mean: achieved concurrency, the time-weighted mean number of "
                     "requests in flight over the window.");
    report_bullet(s, "waiting/running: the server's own queue and batch (vllm:num_requests_waiting "
                     "/ running or the equivalent), sampled from /metrics during the level.");
    report_bullet(s, "gpu_util_pct: mean GPU utilisation from the telemetry sampler over the "
                     "level's window; cpu_mean_pct: the server process tree's CPU (100 = one "
                     "core).");
    report_bullet(s, "goodput: the fraction (and rate) of requests that succeeded and met every "
                     "SLO bound.");
    report_bullet(s, "Open loop: latencies are given from the actual send time and from the "
                     "intended (scheduled) send time; queue_delay = actual - intended is the "
                     "client-side wait, so coordinated omission stays visible.");

}

static void report_seqconc(const struct batch_result *res, struct report *r)
{
    if (!res->have_seqconc)
        return;
    if (res->have_seqconc) {
        struct report_section *s = report_section_add(r, "seqconc", "Sequential vs concurrent");
        struct report_table *tb = report_table_add(s, "seqconc", NULL);
        report_table_col(tb, "mode", "Mode", NULL, REPORT_COL_TEXT, 0);
        report_table_col(tb, "n_requests", "Requests", NULL, REPORT_COL_NUMBER, 0);
        report_table_col(tb, "n_ok", "Succeeded", NULL, REPORT_COL_NUMBER, 0);
        report_table_col(tb, "wall_s", "Wall time", "s", REPORT_COL_NUMBER, 3);
        report_table_col(tb, "qps", "QPS", "req/s", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "tok_s", "Output tok/s", "tok/s", REPORT_COL_NUMBER, 1);
        report_table_col(tb, "p95_e2e_s", "p95 e2e", "s", REPORT_COL_NUMBER, 3);
        report_table_col(tb, "inflight_mean", "In flight (mean)", NULL, REPORT_COL_NUMBER, 2);
        const struct batch_level *rows[2] = {&res->seq, &res->conc};
        const char *names[2] = {"sequential", "concurrent"};
        for (int i = 0; i < 2; i++) {
            if (!rows[i]->n_sent)
                continue;
            report_table_row_add(tb);
            report_row_text(tb, "%s", names[i]);
            report_row_num(tb, rows[i]->n_sent);
            report_row_num(tb, rows[i]->n_ok);
            report_row_num(tb, rows[i]->duration_s);
            report_row_num(tb, rows[i]->qps);
            report_row_num(tb, rows[i]->tok_s);
            report_row_num(tb, ms_to_s(rows[i]->e2e_ms.p95));
            report_row_num(tb, rows[i]->inflight_mean);
        }
        if (res->seq.n_sent && res->conc.n_sent)
            report_paragraph(s,
                             "sequential_s = %.3f, concurrent_s = %.3f: running the %d requests "
                             "at once was %.2fx faster (QPS %.2f -> %.2f, output tok/s %.1f -> "
                             "%.1f).",
                             res->seq.duration_s, res->conc.duration_s, res->seq.n_sent,
                             res->seq.duration_s / res->conc.duration_s, res->seq.qps,
                             res->conc.qps, res->seq.tok_s, res->conc.tok_s);
    }

}

/* ---- level tables: one column catalog serves the page tables and the full CSV tables ---- */

enum lcol {
    LC_CONC, LC_RATE, LC_SCHED_RATE, LC_SEND_RATE, LC_MEAN_E2E, LC_P50_E2E, LC_P95_E2E, LC_P99_E2E,
    LC_P50_E2E_INT, LC_P95_E2E_INT, LC_QPS, LC_TOK_S, LC_GPU_UTIL, LC_NOTES, LC_MEAN_TTFT,
    LC_P50_TTFT, LC_P95_TTFT, LC_P99_TTFT, LC_MEAN_ITL, LC_P50_ITL, LC_P95_ITL, LC_P99_ITL,
    LC_MEAN_TPOT, LC_P50_TPOT, LC_P95_TPOT, LC_P99_TPOT, LC_P95_TTFT_INT, LC_P50_QD, LC_P95_QD,
    LC_MAX_QD, LC_TOTAL_TOK_S, LC_INFLIGHT, LC_N_REQ, LC_N_OK, LC_N_ERR, LC_ERRORS, LC_GPU_MAX,
    LC_GPU_MEM, LC_CPU_MEAN, LC_CPU_MAX, LC_WAIT_MEAN, LC_WAIT_MAX, LC_RUN_MEAN, LC_RUN_MAX,
    LC_KV_MAX, LC_GOODPUT_PCT, LC_GOODPUT_RPS, LC_REPEATS, LC_TOK_MIN, LC_TOK_MAX, LC_P95_E2E_MIN,
    LC_P95_E2E_MAX, LC_PROMPT_MEAN, LC_OUT_MEAN, LC_DURATION, LC__COUNT
};

static const struct {
    const char *key, *label, *unit;
    int prec, text;
} lcols[LC__COUNT] = {
    [LC_CONC] = {"concurrency", "Concurrency", NULL, 0, 0},
    [LC_RATE] = {"rate_rps", "Offered rate", "req/s", 2, 0},
    [LC_SCHED_RATE] = {"scheduled_rate_rps", "Scheduled rate", "req/s", 2, 0},
    [LC_SEND_RATE] = {"send_rate_rps", "Achieved send rate", "req/s", 2, 0},
    [LC_MEAN_E2E] = {"mean_e2e_s", "mean e2e", "s", 3, 0},
    [LC_P50_E2E] = {"p50_e2e_s", "p50 e2e", "s", 3, 0},
    [LC_P95_E2E] = {"p95_e2e_s", "p95 e2e", "s", 3, 0},
    [LC_P99_E2E] = {"p99_e2e_s", "p99 e2e", "s", 3, 0},
    [LC_P50_E2E_INT] = {"p50_e2e_intended_s", "p50 e2e (from intended)", "s", 3, 0},
    [LC_P95_E2E_INT] = {"p95_e2e_intended_s", "p95 e2e (from intended)", "s", 3, 0},
    [LC_QPS] = {"qps", "QPS", "req/s", 2, 0},
    [LC_TOK_S] = {"tok_s", "Output tok/s", "tok/s", 1, 0},
    [LC_GPU_UTIL] = {"gpu_util_pct", "GPU util", "%", 0, 0},
    [LC_NOTES] = {"notes", "Notes", NULL, 0, 1},
    [LC_MEAN_TTFT] = {"mean_ttft_ms", "mean TTFT", "ms", 1, 0},
    [LC_P50_TTFT] = {"p50_ttft_ms", "p50 TTFT", "ms", 1, 0},
    [LC_P95_TTFT] = {"p95_ttft_ms", "p95 TTFT", "ms", 1, 0},
    [LC_P99_TTFT] = {"p99_ttft_ms", "p99 TTFT", "ms", 1, 0},
    [LC_MEAN_ITL] = {"mean_itl_ms", "mean ITL", "ms", 2, 0},
    [LC_P50_ITL] = {"p50_itl_ms", "p50 ITL", "ms", 2, 0},
    [LC_P95_ITL] = {"p95_itl_ms", "p95 ITL", "ms", 2, 0},
    [LC_P99_ITL] = {"p99_itl_ms", "p99 ITL", "ms", 2, 0},
    [LC_MEAN_TPOT] = {"mean_tpot_ms", "mean TPOT", "ms", 2, 0},
    [LC_P50_TPOT] = {"p50_tpot_ms", "p50 TPOT", "ms", 2, 0},
    [LC_P95_TPOT] = {"p95_tpot_ms", "p95 TPOT", "ms", 2, 0},
    [LC_P99_TPOT] = {"p99_tpot_ms", "p99 TPOT", "ms", 2, 0},
    [LC_P95_TTFT_INT] = {"p95_ttft_intended_ms", "p95 TTFT (from intended)", "ms", 1, 0},
    [LC_P50_QD] = {"p50_queue_delay_ms", "p50 queue delay", "ms", 2, 0},
    [LC_P95_QD] = {"p95_queue_delay_ms", "p95 queue delay", "ms", 2, 0},
    [LC_MAX_QD] = {"max_queue_delay_ms", "max queue delay", "ms", 2, 0},
    [LC_TOTAL_TOK_S] = {"total_tok_s", "Total tok/s", "tok/s", 1, 0},
    [LC_INFLIGHT] = {"inflight_mean", "In flight (mean)", NULL, 2, 0},
    [LC_N_REQ] = {"n_requests", "Requests", NULL, 0, 0},
    [LC_N_OK] = {"n_ok", "Succeeded", NULL, 0, 0},
    [LC_N_ERR] = {"n_errors", "Errors", NULL, 0, 0},
    [LC_ERRORS] = {"errors", "Errors by class", NULL, 0, 1},
    [LC_GPU_MAX] = {"gpu_util_max_pct", "GPU util max", "%", 0, 0},
    [LC_GPU_MEM] = {"gpu_mem_max_gib", "GPU memory max", "GiB", 2, 0},
    [LC_CPU_MEAN] = {"cpu_mean_pct", "Server CPU", "%", 0, 0},
    [LC_CPU_MAX] = {"cpu_max_pct", "Server CPU max", "%", 0, 0},
    [LC_WAIT_MEAN] = {"waiting_mean", "Waiting (mean)", NULL, 2, 0},
    [LC_WAIT_MAX] = {"waiting_max", "Waiting (max)", NULL, 0, 0},
    [LC_RUN_MEAN] = {"running_mean", "Running (mean)", NULL, 2, 0},
    [LC_RUN_MAX] = {"running_max", "Running (max)", NULL, 0, 0},
    [LC_KV_MAX] = {"kv_usage_max_pct", "KV cache max", "%", 1, 0},
    [LC_GOODPUT_PCT] = {"goodput_pct", "Goodput", "%", 1, 0},
    [LC_GOODPUT_RPS] = {"goodput_rps", "Goodput rate", "req/s", 2, 0},
    [LC_REPEATS] = {"repeats", "Repeats", NULL, 0, 0},
    [LC_TOK_MIN] = {"tok_s_min", "tok/s min", "tok/s", 1, 0},
    [LC_TOK_MAX] = {"tok_s_max", "tok/s max", "tok/s", 1, 0},
    [LC_P95_E2E_MIN] = {"p95_e2e_min_s", "p95 e2e min", "s", 3, 0},
    [LC_P95_E2E_MAX] = {"p95_e2e_max_s", "p95 e2e max", "s", 3, 0},
    [LC_PROMPT_MEAN] = {"prompt_tokens_mean", "Prompt tokens (mean)", NULL, 1, 0},
    [LC_OUT_MEAN] = {"output_tokens_mean", "Output tokens (mean)", NULL, 1, 0},
    [LC_DURATION] = {"duration_s", "Window", "s", 3, 0},
};

/* A number column's value; *na gets the reason when the number cannot exist ("no GPU"). */
static double lcol_num(const struct batch_level *ls, enum lcol c, const char **na)
{
    const char *no_gpu = ls->gpu_available ? NULL : "no GPU";
    const char *no_wait = ls->sw.has_waiting ? NULL : "no /metrics";
    const char *no_run = ls->sw.has_running ? NULL : "no /metrics";
    const char *no_slo = isnan(ls->goodput_frac) ? "no SLO" : NULL;
    *na = NULL;
    switch (c) {
    case LC_CONC: case LC_RATE: return ls->load;
    case LC_SCHED_RATE: return ls->offered_rate_rps;
    case LC_SEND_RATE: return ls->send_rate_rps;
    case LC_MEAN_E2E: return ms_to_s(ls->e2e_ms.mean);
    case LC_P50_E2E: return ms_to_s(ls->e2e_ms.p50);
    case LC_P95_E2E: return ms_to_s(ls->e2e_ms.p95);
    case LC_P99_E2E: return ms_to_s(ls->e2e_ms.p99);
    case LC_P50_E2E_INT: return ms_to_s(ls->e2e_int_ms.p50);
    case LC_P95_E2E_INT: return ms_to_s(ls->e2e_int_ms.p95);
    case LC_QPS: return ls->qps;
    case LC_TOK_S: return ls->tok_s;
    case LC_MEAN_TTFT: return ls->ttft_ms.mean;
    case LC_P50_TTFT: return ls->ttft_ms.p50;
    case LC_P95_TTFT: return ls->ttft_ms.p95;
    case LC_P99_TTFT: return ls->ttft_ms.p99;
    case LC_MEAN_ITL: return ls->itl_ms.mean;
    case LC_P50_ITL: return ls->itl_ms.p50;
    case LC_P95_ITL: return ls->itl_ms.p95;
    case LC_P99_ITL: return ls->itl_ms.p99;
    case LC_MEAN_TPOT: return ls->tpot_ms.mean;
    case LC_P50_TPOT: return ls->tpot_ms.p50;
    case LC_P95_TPOT: return ls->tpot_ms.p95;
    case LC_P99_TPOT: return ls->tpot_ms.p99;
    case LC_P95_TTFT_INT: return ls->ttft_int_ms.p95;
    case LC_P50_QD: return ls->qdelay_ms.p50;
    case LC_P95_QD: return ls->qdelay_ms.p95;
    case LC_MAX_QD: return ls->qdelay_ms.max;
    case LC_TOTAL_TOK_S: return ls->total_tok_s;
    case LC_INFLIGHT: return ls->inflight_mean;
    case LC_N_REQ: return ls->n_sent;
    case LC_N_OK: return ls->n_ok;
    case LC_N_ERR: return ls->n_err;
    case LC_GPU_UTIL: *na = no_gpu; return ls->gpu_util_mean_pct;
    case LC_GPU_MAX: *na = no_gpu; return ls->gpu_util_max_pct;
    case LC_GPU_MEM: *na = no_gpu; return ls->gpu_mem_max_gib;
    case LC_CPU_MEAN: return ls->cpu_mean_pct;
    case LC_CPU_MAX: return ls->cpu_max_pct;
    case LC_WAIT_MEAN: *na = no_wait; return ls->sw.waiting_mean;
    case LC_WAIT_MAX: *na = no_wait; return ls->sw.waiting_max;
    case LC_RUN_MEAN: *na = no_run; return ls->sw.running_mean;
    case LC_RUN_MAX: *na = no_run; return ls->sw.running_max;
    case LC_KV_MAX:
        *na = ls->sw.has_kv_usage ? NULL : "no /metrics";
        return 100.0 * ls->sw.kv_usage_max;
    case LC_GOODPUT_PCT: *na = no_slo; return 100.0 * ls->goodput_frac;
    case LC_GOODPUT_RPS: *na = no_slo; return ls->goodput_rps;
    case LC_REPEATS: return ls->n_repeats;
    case LC_TOK_MIN: return ls->tok_s_min;
    case LC_TOK_MAX: return ls->tok_s_max;
    case LC_P95_E2E_MIN: return ls->p95_e2e_min_s;
    case LC_P95_E2E_MAX: return ls->p95_e2e_max_s;
    case LC_PROMPT_MEAN: return ls->prompt_tok_mean;
    case LC_OUT_MEAN: return ls->out_tok_mean;
    case LC_DURATION: return ls->duration_s;
    case LC_NOTES: case LC_ERRORS: case LC__COUNT: break;
    }
    return NAN;
}

/* A table of levels with the given columns; sweep rows get notes (knee, sweet spot, ...). */
static struct report_table *level_table(const struct batch_result *res, struct report_section *s,
                                        const char *key, const char *caption,
                                        const enum lcol *cols, int n_cols,
                                        const struct batch_level *lv, int n_lv, int sweep)
{
    struct report_table *tb = report_table_add(s, key, caption);
    for (int j = 0; j < n_cols; j++)
        report_table_col(tb, lcols[cols[j]].key, lcols[cols[j]].label, lcols[cols[j]].unit,
                         lcols[cols[j]].text ? REPORT_COL_TEXT : REPORT_COL_NUMBER,
                         lcols[cols[j]].prec);
    for (int i = 0; i < n_lv; i++) {
        size_t row = report_table_row_add(tb);
        for (int j = 0; j < n_cols; j++) {
            char text[512];
            const char *na;
            if (cols[j] == LC_NOTES) {
                text[0] = '\0';
                if (sweep)
                    sweep_notes(res, i, text, sizeof text);
                report_cell_text(tb, row, j, "%s", text);
            } else if (cols[j] == LC_ERRORS) {
                batch_errors_str(&lv[i], text, sizeof text);
                report_cell_text(tb, row, j, "%s", text[0] ? text : "none");
            } else {
                double v = lcol_num(&lv[i], cols[j], &na);
                if (na)
                    report_cell_na(tb, row, j, na);
                else
                    report_cell_num(tb, row, j, v);
            }
        }
    }
    return tb;
}

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* concurrency_sweep.csv: the seed's columns first, then everything else. */
static const enum lcol sweep_csv_cols[] = {
    LC_CONC, LC_MEAN_E2E, LC_P95_E2E, LC_QPS, LC_TOK_S, LC_GPU_UTIL, LC_NOTES, LC_P50_E2E,
    LC_P99_E2E, LC_MEAN_TTFT, LC_P50_TTFT, LC_P95_TTFT, LC_P99_TTFT, LC_MEAN_ITL, LC_P50_ITL,
    LC_P95_ITL, LC_P99_ITL, LC_MEAN_TPOT, LC_P50_TPOT, LC_P95_TPOT, LC_P99_TPOT, LC_TOTAL_TOK_S,
    LC_INFLIGHT, LC_N_REQ, LC_N_OK, LC_N_ERR, LC_ERRORS, LC_GPU_MAX, LC_GPU_MEM, LC_CPU_MEAN,
    LC_CPU_MAX, LC_WAIT_MEAN, LC_WAIT_MAX, LC_RUN_MEAN, LC_RUN_MAX, LC_KV_MAX, LC_GOODPUT_PCT,
    LC_GOODPUT_RPS, LC_REPEATS, LC_TOK_MIN, LC_TOK_MAX, LC_P95_E2E_MIN, LC_P95_E2E_MAX,
    LC_PROMPT_MEAN, LC_OUT_MEAN, LC_DURATION};
static const enum lcol sweep_lat_cols[] = {LC_CONC,     LC_MEAN_E2E, LC_P50_E2E,  LC_P95_E2E,
                                           LC_P99_E2E,  LC_P50_TTFT, LC_P95_TTFT, LC_P95_ITL,
                                           LC_P95_TPOT, LC_NOTES};
static const enum lcol sweep_tput_cols[] = {LC_CONC,  LC_QPS,   LC_TOK_S, LC_TOTAL_TOK_S,
                                            LC_INFLIGHT, LC_N_REQ, LC_N_OK, LC_ERRORS,
                                            LC_TOK_MIN, LC_TOK_MAX};
static const enum lcol sweep_srv_cols[] = {LC_CONC,      LC_GPU_UTIL,  LC_GPU_MEM,  LC_CPU_MEAN,
                                           LC_WAIT_MEAN, LC_WAIT_MAX,  LC_RUN_MEAN, LC_RUN_MAX,
                                           LC_KV_MAX,    LC_GOODPUT_PCT};
/* open_loop.csv */
static const enum lcol open_csv_cols[] = {
    LC_RATE, LC_SCHED_RATE, LC_SEND_RATE, LC_N_REQ, LC_N_OK, LC_QPS, LC_TOK_S, LC_P50_E2E,
    LC_P95_E2E, LC_P50_E2E_INT, LC_P95_E2E_INT, LC_P95_TTFT, LC_P95_TTFT_INT, LC_P95_TPOT,
    LC_P95_ITL, LC_P50_QD, LC_P95_QD, LC_MAX_QD, LC_INFLIGHT, LC_ERRORS, LC_GPU_UTIL, LC_CPU_MEAN,
    LC_WAIT_MEAN, LC_WAIT_MAX, LC_GOODPUT_PCT, LC_GOODPUT_RPS};
static const enum lcol open_lat_cols[] = {LC_RATE,        LC_P50_E2E,  LC_P95_E2E, LC_P50_E2E_INT,
                                          LC_P95_E2E_INT, LC_P95_TTFT, LC_P95_TTFT_INT,
                                          LC_P95_TPOT,    LC_P50_QD,   LC_P95_QD};
static const enum lcol open_tput_cols[] = {LC_RATE, LC_SCHED_RATE, LC_SEND_RATE, LC_N_REQ,
                                           LC_N_OK, LC_QPS,        LC_TOK_S,     LC_INFLIGHT,
                                           LC_MAX_QD, LC_ERRORS};
static const enum lcol open_srv_cols[] = {LC_RATE,      LC_GPU_UTIL,    LC_CPU_MEAN,
                                          LC_WAIT_MEAN, LC_WAIT_MAX,    LC_GOODPUT_PCT,
                                          LC_GOODPUT_RPS};

/* Marks the knee and the sweet spot on the throughput-latency chart. */
static void chart_marks(const struct batch_result *res, struct report_chart *ch)
{
    struct {
        int i;
        const char *what;
    } m[2] = {{res->kr.knee_reached ? res->kr.i_knee : -1, "knee"},
              {res->kr.i_sweet, "sweet spot"}};
    for (int k = 0; k < 2; k++) {
        if (m[k].i < 0 || m[k].i >= res->n_kl)
            continue;
        const struct knee_level *kl = &res->kl[m[k].i];
        char label[64];
        snprintf(label, sizeof label, "%s (concurrency %g)", m[k].what, kl->load);
        report_chart_mark(ch, kl->p95_e2e_s, kl->tok_s, label);
    }
}

/* Charts of the sweep over complete levels with a success. */
static void sweep_charts(const struct batch_result *res, struct report_section *s)
{
    double xs[BATCH_MAX_LEVELS], tput[BATCH_MAX_LEVELS], lat[BATCH_MAX_LEVELS],
        ttft[BATCH_MAX_LEVELS];
    size_t nc = 0;
    for (int i = 0; i < res->n_sweep; i++) {
        const struct batch_level *ls = &res->sweep[i];
        if (!ls->complete || ls->n_ok <= 0)
            continue;
        xs[nc] = ls->load;
        tput[nc] = ls->tok_s;
        lat[nc] = ms_to_s(ls->e2e_ms.p95);
        ttft[nc] = ls->ttft_ms.p95;
        nc++;
    }
    struct report_chart *ch =
        report_chart_add(s, REPORT_CHART_LINE, "throughput", "Throughput vs concurrency",
                         "concurrency", NULL, "output throughput", "tok/s");
    report_chart_log_x(ch, 1);
    report_chart_series(ch, "output tok/s (median)", xs, tput, nc);
    ch = report_chart_add(s, REPORT_CHART_LINE, "p95_e2e", "p95 e2e latency vs concurrency",
                          "concurrency", NULL, "p95 e2e", "s");
    report_chart_log_x(ch, 1);
    report_chart_series(ch, "p95 e2e (median)", xs, lat, nc);
    ch = report_chart_add(s, REPORT_CHART_LINE, "p95_ttft", "p95 TTFT vs concurrency",
                          "concurrency", NULL, "p95 TTFT", "ms");
    report_chart_log_x(ch, 1);
    report_chart_series(ch, "p95 TTFT (median)", xs, ttft, nc);
    /* Throughput against latency: each point a level; the knee and the sweet spot marked. */
    ch = report_chart_add(s, REPORT_CHART_LINE, "throughput_latency",
                          "Throughput vs p95 e2e latency (one point per concurrency level)",
                          "p95 e2e", "s", "output throughput", "tok/s");
    report_chart_series(ch, "levels", lat, tput, nc);
    chart_marks(res, ch);
}

static void report_sweep(const struct batch_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "sweep", "Concurrency sweep");
    /* concurrency_sweep.csv: every column; too wide for a page, so the documents show it split. */
    report_table_hide_in_doc(level_table(res, s, "sweep", NULL, sweep_csv_cols,
                                         N_OF(sweep_csv_cols), res->sweep, res->n_sweep, 1),
                             1);
    level_table(res, s, "sweep_latency", "Latency (median over the sweeps)", sweep_lat_cols,
                N_OF(sweep_lat_cols), res->sweep, res->n_sweep, 1);
    level_table(res, s, "sweep_throughput", "Throughput and counts", sweep_tput_cols,
                N_OF(sweep_tput_cols), res->sweep, res->n_sweep, 1);
    level_table(res, s, "sweep_server", "Server side and telemetry", sweep_srv_cols,
                N_OF(sweep_srv_cols), res->sweep, res->n_sweep, 1);
    report_paragraph(s, "Every column of every level is in concurrency_sweep.csv.");
    if (!res->sweep[0].gpu_available && res->sweep[0].gpu_reason[0])
        report_paragraph(s, "GPU columns: no GPU (%s).", res->sweep[0].gpu_reason);
    if (res->metrics_note[0])
        report_paragraph(s, "Queue columns: %s.", res->metrics_note);
    sweep_charts(res, s);
}

static void report_open(const struct batch_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "open", "Open-loop load");
    report_table_hide_in_doc(level_table(res, s, "open", NULL, open_csv_cols, N_OF(open_csv_cols),
                                         res->open, res->n_open, 0),
                             1);
    for (int i = 0; i < res->n_open; i++)
        if (res->open_warn[i][0])
            report_bullet(s, "%s", res->open_warn[i]);
    level_table(res, s, "open_latency", "Latency from the actual and the intended send time",
                open_lat_cols, N_OF(open_lat_cols), res->open, res->n_open, 0);
    level_table(res, s, "open_throughput", "Rates and counts", open_tput_cols,
                N_OF(open_tput_cols), res->open, res->n_open, 0);
    level_table(res, s, "open_server", "Server side, telemetry and goodput", open_srv_cols,
                N_OF(open_srv_cols), res->open, res->n_open, 0);
    double xs[BATCH_MAX_LEVELS], ys_s[BATCH_MAX_LEVELS], ys_i[BATCH_MAX_LEVELS];
    size_t nc = 0;
    for (int i = 0; i < res->n_open; i++) {
        const struct batch_level *ls = &res->open[i];
        if (!ls->complete || !ls->n_ok)
            continue;
        xs[nc] = ls->load;
        ys_s[nc] = ms_to_s(ls->e2e_ms.p95);
        ys_i[nc] = ms_to_s(ls->e2e_int_ms.p95);
        nc++;
    }
    struct report_chart *ch =
        report_chart_add(s, REPORT_CHART_LINE, "open_p95_e2e", "p95 e2e vs offered rate",
                         "offered rate", "req/s", "p95 e2e", "s");
    report_chart_series(ch, "from actual send", xs, ys_s, nc);
    report_chart_series(ch, "from intended send", xs, ys_i, nc);
    if (res->n_okl >= 2) {
        report_paragraph(s, "%s", res->okr.summary);
        for (int i = 0; i < res->orules.n; i++)
            report_bullet(s, "%s", res->orules.text[i]);
    }
}


static void report_knee(const struct batch_result *res, struct report *r)
{
    const struct batch_opts *o = &res->opts;
    struct report_section *s;
        s = report_section_add(r, "knee", "Knee, sweet spot and SLO");
        report_paragraph(s, "%s", res->kr.summary);
        if (res->kr.i_sweet >= 0)
            report_bullet(s,
                          "Sweet spot (highest output tok/s per second of p95 e2e%s): "
                          "concurrency %g.",
                          res->slo_desc[0] && res->kr.i_slo_max >= 0 ? ", among levels meeting "
                                                                       "the SLO"
                                                                     : "",
                          res->kl[res->kr.i_sweet].load);
        if (res->kr.i_peak >= 0)
            report_bullet(s, "Peak throughput: %.1f tok/s at concurrency %g.",
                          res->kl[res->kr.i_peak].tok_s, res->kl[res->kr.i_peak].load);
        if (res->slo_desc[0]) {
            if (res->kr.i_slo_max >= 0)
                report_bullet(s,
                              "Highest concurrency meeting the SLO (%s) for %.0f%% of "
                              "requests: %g.",
                              res->slo_desc, 100.0 * o->slo_attainment,
                              res->kl[res->kr.i_slo_max].load);
            else
                report_bullet(s, "No level met the SLO (%s) for %.0f%% of requests.", res->slo_desc,
                              100.0 * o->slo_attainment);
        }
        s = report_section_add(r, "rules", "Rules of thumb (computed from this run)");
        for (int i = 0; i < res->rules.n; i++)
            report_bullet(s, "%s", res->rules.text[i]);
}

static void report_errors(const struct batch_result *res, struct report *r)
{
    int any_err = res->seq.n_err || res->conc.n_err;
    for (int i = 0; i < res->n_sweep; i++)
        any_err |= res->sweep[i].n_err;
    for (int i = 0; i < res->n_open; i++)
        any_err |= res->open[i].n_err;
    if (any_err) {
        struct report_section *s = report_section_add(r, "errors", "Errors");
        const struct batch_level *all[2 + 2 * BATCH_MAX_LEVELS];
        char names[2 + 2 * BATCH_MAX_LEVELS][48];
        int na = 0;
        if (res->have_seqconc) {
            all[na] = &res->seq;
            snprintf(names[na++], sizeof names[0], "sequential");
            all[na] = &res->conc;
            snprintf(names[na++], sizeof names[0], "concurrent");
        }
        for (int i = 0; i < res->n_sweep; i++) {
            all[na] = &res->sweep[i];
            snprintf(names[na++], sizeof names[0], "concurrency %g", res->sweep[i].load);
        }
        for (int i = 0; i < res->n_open; i++) {
            all[na] = &res->open[i];
            snprintf(names[na++], sizeof names[0], "rate %g req/s", res->open[i].load);
        }
        for (int i = 0; i < na; i++)
            for (int e = 1; e < REQ_ERROR__COUNT; e++)
                if (all[i]->n_err_class[e])
                    report_bullet(s, "%s: %d x %s: %s", names[i], all[i]->n_err_class[e],
                                  req_error_str(e),
                                  all[i]->err_msg[e][0] ? all[i]->err_msg[e] : "(no message)");
    }
}

static void report_server(const struct batch_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "server", "Server");
    const struct batch_server *sv = &res->server;
    if (sv->launched)
        report_paragraph(s, "Launched by slmprobe (pid %d); log: %s. %s.", sv->pid, sv->log_path,
                         sv->end);
    else
        report_paragraph(s, "Already running at %s; slmprobe neither launched nor stopped it.",
                         sv->base_url);
}

void batch_report(const struct batch_result *res, struct report *r)
{
    const struct batch_server *sv = &res->server;
    report_meta(r, "date", "%s", res->started_at);
    report_meta(r, "slmprobe", "%s", SLMPROBE_VERSION);
    report_meta(r, "server", "%s%s", sv->kind,
                sv->launched ? " (launched by slmprobe)" : " (already running; not launched)");
    report_meta(r, "url", "%s", sv->base_url);
    report_meta(r, "model", "%s", res->model[0] ? res->model : "?");
    if (sv->version[0])
        report_meta(r, "server_version", "%s", sv->version);
    if (sv->max_model_len > 0)
        report_meta(r, "max_model_len", "%d", sv->max_model_len);
    report_meta(r, "command", "%s", res->command_line);
    report_meta(r, "client_calibration", "%s", res->client_calibration);
    report_set_html_name(r, "batching_benchmark.html");
    if (res->failure[0]) {
        struct report_section *s = report_section_add(r, "failure", "Run failure");
        report_paragraph(s, "%s", res->failure);
    }
    report_config(res, r);
    report_definitions(r);
    report_seqconc(res, r);
    if (res->n_sweep) {
        report_sweep(res, r);
        report_knee(res, r);
    }
    if (res->n_open)
        report_open(res, r);
    report_errors(res, r);
    report_server(res, r);
}

void batch_print_summary(const struct batch_result *res, FILE *f, const char *out_dir)
{
    if (res->have_seqconc && res->seq.n_sent && res->conc.n_sent) {
        fprintf(f, "sequential: %d requests, sequential_s %.3f, QPS %.2f, output tok/s %.1f\n",
               res->seq.n_sent, res->seq.duration_s, res->seq.qps, res->seq.tok_s);
        fprintf(f, "concurrent: %d requests, concurrent_s %.3f, QPS %.2f, output tok/s %.1f\n",
               res->conc.n_sent, res->conc.duration_s, res->conc.qps, res->conc.tok_s);
        fprintf(f, "speed-up: %.2fx\n\n", res->seq.duration_s / res->conc.duration_s);
    }
    if (res->n_sweep) {
        fprintf(f, "%-11s %10s %10s %8s %10s %10s %10s %8s %7s %7s\n", "concurrency", "mean_e2e_s",
               "p95_e2e_s", "qps", "tok_s", "p95_ttft", "p95_tpot", "inflight", "waiting",
               "errors");
        for (int i = 0; i < res->n_sweep; i++) {
            const struct batch_level *ls = &res->sweep[i];
            fprintf(f, "%-11g %10.3f %10.3f %8.2f %10.1f %10.1f %10.2f %8.2f %7.1f %7d%s\n",
                    ls->load,
                   ms_to_s(ls->e2e_ms.mean), ms_to_s(ls->e2e_ms.p95), ls->qps, ls->tok_s,
                   ls->ttft_ms.p95, ls->tpot_ms.p95, ls->inflight_mean,
                   ls->sw.has_waiting ? ls->sw.waiting_max : NAN, ls->n_err,
                   ls->complete ? "" : "  (incomplete)");
        }
        fprintf(f, "\n%s\n", res->kr.summary);
        for (int i = 0; i < res->rules.n; i++)
            fprintf(f, "- %s\n", res->rules.text[i]);
        fprintf(f, "\n");
    }
    for (int i = 0; i < res->n_open; i++) {
        const struct batch_level *ls = &res->open[i];
        fprintf(f, "rate %g req/s: sent at %.2f req/s, QPS %.2f, tok/s %.1f, p95 e2e %.3f s (from "
               "intended %.3f s), p95 queue delay %.1f ms, errors %d\n",
               ls->load, ls->send_rate_rps, ls->qps, ls->tok_s, ms_to_s(ls->e2e_ms.p95),
               ms_to_s(ls->e2e_int_ms.p95), ls->qdelay_ms.p95, ls->n_err);
    }
    if (res->failure[0])
        fprintf(f, "FAILED: %s\n", res->failure);
    fprintf(f, "report: %s/batching_benchmark.md\n", out_dir);
}

int batch_write_outputs(const struct batch_result *res, const struct session *s)
{
    int rc = 0;
    char path[1200], err[1024];
    struct report *doc = report_new("Batching benchmark");
    batch_report(res, doc);
    const struct {
        enum report_format f;
        const char *name;
    } outs[] = {{REPORT_FORMAT_MARKDOWN, "batching_benchmark.md"},
                {REPORT_FORMAT_HTML, "batching_benchmark.html"}};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        session_path(s, outs[i].name, path, sizeof path);
        if (report_write_file(doc, outs[i].f, path, err, sizeof err) != REPORT_OK) {
            log_error(MOD, "%s", err);
            rc = 1;
        }
    }
    const struct {
        int have;
        const char *table, *name;
    } csvs[] = {{res->n_sweep > 0, "sweep", "concurrency_sweep.csv"},
                {res->n_open > 0, "open", "open_loop.csv"}};
    for (size_t i = 0; i < sizeof csvs / sizeof csvs[0]; i++) {
        session_path(s, csvs[i].name, path, sizeof path);
        if (csvs[i].have && report_write_csv(doc, csvs[i].table, path, err, sizeof err) != 0) {
            log_error(MOD, "%s", err);
            rc = 1;
        }
    }
    session_path(s, "batch.json", path, sizeof path);
    if (batch_json_write(res, path, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        rc = 1;
    }
    report_free(doc);
    return rc;
}
