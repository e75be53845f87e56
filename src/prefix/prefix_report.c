/* prefix_report: renders a struct prefix_result: the shared-prefix strategy, the two launch
 * commands, the results table (CSV columns of the spec plus hit-rate columns), an interpretation
 * computed from the cells, the hit-rate mental model with the fitted line, the working-set sweep
 * and the conclusions; writes prefix_caching_results.{csv,md,html}, prefix.json
 * ("schema": "slmprobe.prefix/1") and the two launch scripts; also the pure analysis (the fit, the
 * inactive-caching finding). It measures nothing: every number in
 * the prose comes from the result struct. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "prefix/prefix.h"
#include "report/report.h"
#include "util/buf.h"

#define PREFIX_TABLE_KEY "prefix_caching_results"

/* The done cell of (mode, regime, concurrency, mix), or NULL. */
static const struct prefix_cell *cell_find(const struct prefix_result *res, enum prefix_mode m,
                                           enum prefix_regime r, int conc, double mix)
{
    for (size_t i = 0; i < res->n_cells; i++) {
        const struct prefix_cell *c = &res->cells[i];
        if (c->done && c->mode == m && c->regime == r && c->concurrency == conc &&
            fabs(c->hit_mix - mix) < 1e-9)
            return c;
    }
    return NULL;
}

static double pct_change(double from, double to)
{
    return from > 0 && !isnan(to) ? (to - from) / from * 100.0 : NAN;
}

/* ---- analysis (pure) ---- */

void prefix_fit_cells(const struct prefix_cell *cells, size_t n, struct prefix_fit *out)
{
    memset(out, 0, sizeof *out);
    int cmin = 0;
    for (size_t i = 0; i < n; i++)
        if (cells[i].done && (!cmin || cells[i].concurrency < cmin))
            cmin = cells[i].concurrency;
    out->concurrency = cmin;
    int have_ends = 0, have_mid = 0;
    for (size_t i = 0; i < n; i++)
        if (cells[i].done && cells[i].concurrency == cmin &&
            !isnan(cells[i].mean_uncached_tokens)) {
            int end = cells[i].hit_mix <= 0.0 || cells[i].hit_mix >= 1.0;
            have_ends += end;
            have_mid += !end;
        }
    int ends_only = have_ends >= 2 && have_mid > 0;
    double sx = 0, sy = 0, sxx = 0, sxy = 0, syy = 0;
    int k = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            const struct prefix_cell *c = &cells[i];
            if (!c->done || c->concurrency != cmin || isnan(c->mean_uncached_tokens) ||
                isnan(c->mean_ttft_s))
                continue;
            int end = c->hit_mix <= 0.0 || c->hit_mix >= 1.0;
            double x = c->mean_uncached_tokens, y = c->mean_ttft_s;
            if (pass == 0 && (!ends_only || end)) {
                sx += x, sy += y, sxx += x * x, sxy += x * y, syy += y * y, k++;
            } else if (pass == 1 && ends_only && !end && out->ok) {
                double pred = out->a_s + out->b_s_per_token * x;
                double e = y > 0 ? fabs(y - pred) / y * 100 : NAN;
                if (!isnan(e) && e > out->max_pred_err_pct)
                    out->max_pred_err_pct = e;
                out->n_predicted++;
            }
        }
        if (pass == 0) {
            double den = k * sxx - sx * sx;
            out->n_points = k;
            if (k >= 2 && fabs(den) > 1e-12 * (k * sxx + 1)) {
                out->ok = 1;
                out->b_s_per_token = (k * sxy - sx * sy) / den;
                out->a_s = (sy - out->b_s_per_token * sx) / k;
                double ss_tot = syy - sy * sy / k, ss_res = 0;
                ss_res = syy - out->a_s * sy - out->b_s_per_token * sxy;
                out->r2 = ss_tot > 0 ? 1 - ss_res / ss_tot : NAN;
            }
        }
    }
}

int prefix_inactive_finding(const struct prefix_result *res, char *out, size_t out_len)
{
    int n_req = 0, any = 0;
    double hits = 0;
    for (size_t i = 0; i < res->n_cells; i++) {
        const struct prefix_cell *c = &res->cells[i];
        if (!c->done || c->mode != PREFIX_MODE_ON || c->expected_hit_tokens <= 0)
            continue;
        any = 1;
        n_req += c->n_requests;
        hits += c->has_server_counters ? c->hits_tokens : (double)c->usage_cached_tokens;
    }
    out[0] = '\0';
    if (!any || hits > 0)
        return 0;
    snprintf(out, out_len,
             "caching appears inactive: 0 hits in %d requests that reused a "
             "cached prefix",
             n_req);
    return 1;
}

static void add_strategy(const struct prefix_result *res, struct report *r)
{
    const struct prefix_set *set = res->set;
    if (!set)
        return;
    struct report_section *s = report_section_add(r, "strategy", "Shared-prefix strategy");
    report_paragraph(s,
                     "Prompts: %s, %zu prompts over %zu shared prefixes, each "
                     "\"<PREFIX>\\nQ: <variant>\\nA:\". Lengths are the server's own token "
                     "counts (POST /tokenize)%s.",
                     set->source, set->n_prompts, set->n_prefixes,
                     set->block_size ? "" : "; the KV block size is unknown, so no padding");
    if (set->block_size)
        report_paragraph(s, "KV block size %d tokens (vllm:cache_config_info): %s", set->block_size,
                         set->generated ? "generated prefixes are padded to whole blocks, so "
                                          "every prefix token can hit."
                                        : "a file's prefixes are used as they are.");
    struct report_table *t = report_table_add(s, "prefixes", "Shared prefixes");
    report_table_col(t, "workload", "Workload", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "regime", "Regime", NULL, REPORT_COL_TEXT, 0);
    report_table_col(t, "prefix_len_tokens", "Prefix", "tokens", REPORT_COL_NUMBER, 0);
    report_table_col(t, "n_blocks", "Whole blocks", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "pad_tokens", "Padding", "tokens", REPORT_COL_NUMBER, 0);
    report_table_col(t, "n_variants", "Variants", NULL, REPORT_COL_NUMBER, 0);
    for (size_t i = 0; i < set->n_prefixes; i++) {
        const struct prefix_shared *sh = &set->prefixes[i];
        size_t nv = 0;
        for (size_t j = 0; j < set->n_prompts; j++)
            nv += set->prompts[j].i_prefix == i;
        report_table_row_add(t);
        report_row_text(t, "%s", sh->workload);
        report_row_text(t, "%s", prefix_regime_str(sh->regime));
        report_row_num(t, sh->len_tokens >= 0 ? sh->len_tokens : NAN);
        report_row_num(t, sh->n_blocks >= 0 ? sh->n_blocks : NAN);
        report_row_num(t, sh->n_pad_tokens);
        report_row_num(t, (double)nv);
    }
    report_paragraph(s,
                     "Per cell: the cache is reset (POST /reset_prefix_cache), each shared "
                     "prefix of the regime is sent once to prime it (\"first request per "
                     "prefix\", reported apart), then %d requests of %d output tokens run at the "
                     "cell's concurrency. A hit mix below 100%% interleaves requests whose prefix "
                     "is fresh and unique (the same text behind a header unique to the request), "
                     "as an exact running mix. The same prompts go to both servers.",
                     res->opts.n_requests, res->opts.max_tokens);
    if (set->warnings[0])
        report_paragraph(s, "Warnings: %s", set->warnings);
}

static void add_commands(const struct prefix_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "commands", "The two servers");
    for (int m = 0; m < PREFIX_MODE__COUNT; m++) {
        const struct prefix_mode_run *mr = &res->modes[m];
        if (!mr->ran)
            continue;
        report_paragraph(s, "%s (%s):", prefix_mode_str((enum prefix_mode)m),
                         mr->cmdline[0] ? mr->script_name : "not started");
        if (mr->cmdline[0])
            report_pre(s, mr->cmdline);
        if (mr->err[0])
            report_paragraph(s, "Error: %s", mr->err);
    }
    if (res->modes[PREFIX_MODE_OFF].how[0])
        report_paragraph(s, "What differs: %s.", res->modes[PREFIX_MODE_OFF].how);
}

/* Every per-cell column: the CSV has them all, the documents show two narrow tables of them. */
enum cell_col {
    COL_MODE,
    COL_PREFIX_LEN,
    COL_CONC,
    COL_TTFT,
    COL_E2E,
    COL_P95_E2E,
    COL_TOK_S,
    COL_NOTES,
    COL_HIT_MIX,
    COL_HIT_RATE,
    COL_HITS,
    COL_EXPECTED,
    COL_USAGE_CACHED,
    COL_UNCACHED,
    COL_FIRST_TTFT,
    COL_N_OK,
    COL_N_FAILED,
    COL__COUNT
};
static const struct {
    const char *key;
    int decimals;
} cell_cols[COL__COUNT] = {{"mode", 0},
                           {"prefix_len_tokens", 0},
                           {"concurrency", 0},
                           {"mean_ttft_s", 4},
                           {"mean_e2e_s", 4},
                           {"p95_e2e_s", 4},
                           {"tok_s", 1},
                           {"notes", 0},
                           {"hit_mix_pct", 0},
                           {"server_hit_rate", 3},
                           {"hits_tokens", 0},
                           {"expected_hit_tokens", 0},
                           {"usage_cached_tokens", 0},
                           {"mean_uncached_tokens", 1},
                           {"first_request_ttft_s", 4},
                           {"n_ok", 0},
                           {"n_failed", 0}};

static double cell_value(const struct prefix_cell *c, enum cell_col k)
{
    switch (k) {
    case COL_PREFIX_LEN:
        return c->prefix_len_tokens;
    case COL_CONC:
        return c->concurrency;
    case COL_TTFT:
        return c->mean_ttft_s;
    case COL_E2E:
        return c->mean_e2e_s;
    case COL_P95_E2E:
        return c->p95_e2e_s;
    case COL_TOK_S:
        return c->tok_s;
    case COL_HIT_MIX:
        return c->hit_mix * 100;
    case COL_HIT_RATE:
        return c->has_server_counters ? c->hit_rate : NAN;
    case COL_HITS:
        return c->has_server_counters ? c->hits_tokens : NAN;
    case COL_EXPECTED:
        return c->mode == PREFIX_MODE_ON ? c->expected_hit_tokens : 0;
    case COL_USAGE_CACHED:
        return (double)c->usage_cached_tokens;
    case COL_UNCACHED:
        return c->mean_uncached_tokens;
    case COL_FIRST_TTFT:
        return c->prime_mean_ttft_s;
    case COL_N_OK:
        return c->n_ok;
    case COL_N_FAILED:
        return c->n_failed;
    default:
        return NAN;
    }
}

static void cells_table(const struct prefix_result *res, struct report_section *s, const char *key,
                        const char *title, const enum cell_col *cols, int n_cols, int doc)
{
    struct report_table *t = report_table_add(s, key, title);
    for (int i = 0; i < n_cols; i++)
        report_table_col(t, cell_cols[cols[i]].key, cell_cols[cols[i]].key, NULL,
                         cols[i] == COL_MODE || cols[i] == COL_NOTES ? REPORT_COL_TEXT
                                                                     : REPORT_COL_NUMBER,
                         cell_cols[cols[i]].decimals);
    report_table_hide_in_doc(t, !doc);
    for (size_t r = 0; r < res->n_cells; r++) {
        const struct prefix_cell *c = &res->cells[r];
        if (!c->done)
            continue;
        report_table_row_add(t);
        for (int i = 0; i < n_cols; i++) {
            if (cols[i] == COL_MODE)
                report_row_text(t, "%s", prefix_mode_str(c->mode));
            else if (cols[i] == COL_NOTES)
                report_row_text(t, "%s", c->notes);
            else
                report_row_num(t, cell_value(c, cols[i]));
        }
    }
}

/* The seed's table (plus the hit mix), the server-side hits, and the full CSV-only table. */
static void add_table(const struct prefix_result *res, struct report_section *s)
{
    static const enum cell_col seed[] = {COL_MODE,    COL_PREFIX_LEN, COL_CONC,  COL_TTFT,
                                         COL_E2E,     COL_P95_E2E,    COL_TOK_S, COL_NOTES,
                                         COL_HIT_MIX, COL_HIT_RATE};
    static const enum cell_col hits[] = {COL_MODE,         COL_PREFIX_LEN, COL_CONC,
                                         COL_HIT_MIX,      COL_HITS,       COL_EXPECTED,
                                         COL_USAGE_CACHED, COL_UNCACHED,   COL_FIRST_TTFT};
    static const enum cell_col all[] = {
        COL_MODE,         COL_PREFIX_LEN, COL_CONC,       COL_TTFT,     COL_E2E,     COL_P95_E2E,
        COL_TOK_S,        COL_NOTES,      COL_HIT_MIX,    COL_HIT_RATE, COL_HITS,    COL_EXPECTED,
        COL_USAGE_CACHED, COL_UNCACHED,   COL_FIRST_TTFT, COL_N_OK,     COL_N_FAILED};
    cells_table(res, s, "cells", "Per cell (the seed's columns, then the hit rate)", seed,
                (int)(sizeof seed / sizeof seed[0]), 1);
    cells_table(res, s, "cells_hits", "Server-side hits per cell", hits,
                (int)(sizeof hits / sizeof hits[0]), 1);
    cells_table(res, s, PREFIX_TABLE_KEY, "Per cell, every column (prefix_caching_results.csv)",
                all, (int)(sizeof all / sizeof all[0]), 0);
}

/* TTFT off vs on per cell (bar chart). */
static void add_ttft_chart(const struct prefix_result *res, struct report_section *s)
{
    size_t n = 0;
    const char **names = xcalloc(res->n_cells + 1, sizeof *names);
    char(*lab)[48] = xcalloc(res->n_cells + 1, sizeof *lab);
    double *off = xcalloc(res->n_cells + 1, sizeof *off),
           *on = xcalloc(res->n_cells + 1, sizeof *on);
    for (size_t i = 0; i < res->n_cells; i++) {
        const struct prefix_cell *c = &res->cells[i];
        if (c->mode != PREFIX_MODE_OFF)
            continue;
        const struct prefix_cell *a =
            cell_find(res, PREFIX_MODE_OFF, c->regime, c->concurrency, c->hit_mix);
        const struct prefix_cell *b =
            cell_find(res, PREFIX_MODE_ON, c->regime, c->concurrency, c->hit_mix);
        if (!a && !b)
            continue;
        snprintf(lab[n], sizeof lab[n], "%s c=%d hit %.0f%%", prefix_regime_str(c->regime),
                 c->concurrency, c->hit_mix * 100);
        names[n] = lab[n];
        off[n] = a ? a->mean_ttft_s * 1e3 : NAN;
        on[n] = b ? b->mean_ttft_s * 1e3 : NAN;
        n++;
    }
    if (n) {
        struct report_chart *ch =
            report_chart_add(s, REPORT_CHART_BAR, "ttft_off_on", "Mean TTFT, caching off vs on",
                             "cell", NULL, "TTFT", "ms");
        report_chart_categories(ch, names, n);
        report_chart_series(ch, prefix_mode_str(PREFIX_MODE_OFF), NULL, off, n);
        report_chart_series(ch, prefix_mode_str(PREFIX_MODE_ON), NULL, on, n);
    }
    free(names);
    free(lab);
    free(off);
    free(on);
}

static void add_interpretation(const struct prefix_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "interpretation", "What caching bought");
    char finding[256];
    if (prefix_inactive_finding(res, finding, sizeof finding))
        report_paragraph(s,
                         "Finding: %s. The server was launched with caching on, but its "
                         "counters saw no reuse: this run is not evidence that caching helps.",
                         finding);
    double gain_at[PREFIX_REGIME__COUNT] = {NAN, NAN};
    for (int rg = 0; rg < PREFIX_REGIME__COUNT; rg++)
        for (int ic = 0; ic < res->opts.n_concurrency; ic++) {
            int conc = res->opts.concurrency[ic];
            const struct prefix_cell *a = cell_find(res, PREFIX_MODE_OFF, rg, conc, 1.0);
            const struct prefix_cell *b = cell_find(res, PREFIX_MODE_ON, rg, conc, 1.0);
            if (!a || !b)
                continue;
            double d = pct_change(a->mean_ttft_s, b->mean_ttft_s);
            double dt = pct_change(a->tok_s, b->tok_s), dp = pct_change(a->p95_e2e_s, b->p95_e2e_s);
            if (ic == 0)
                gain_at[rg] = -d;
            report_bullet(s,
                          "%s prefix (%d tokens), concurrency %d, 100%% reuse: mean TTFT %.1f ms "
                          "off vs %.1f ms on (%+.0f%%); throughput %.1f vs %.1f tok/s (%+.0f%%) "
                          "with p95 e2e %.3f vs %.3f s (%+.0f%%); server hit rate %.1f%%.",
                          prefix_regime_str(rg), b->prefix_len_tokens, conc, a->mean_ttft_s * 1e3,
                          b->mean_ttft_s * 1e3, d, a->tok_s, b->tok_s, dt, a->p95_e2e_s,
                          b->p95_e2e_s, dp, b->has_server_counters ? b->hit_rate * 100 : NAN);
        }
    if (!isnan(gain_at[0]) && !isnan(gain_at[1]))
        report_paragraph(s,
                         "With prefix length the relative TTFT saving %s: %.0f%% for the "
                         "medium prefix and %.0f%% for the large one at concurrency %d.",
                         gain_at[1] > gain_at[0] ? "grows" : "does not grow here", gain_at[0],
                         gain_at[1], res->opts.concurrency[0]);
    const struct prefix_mode_run *mo = &res->modes[PREFIX_MODE_OFF],
                                 *mn = &res->modes[PREFIX_MODE_ON];
    if (mo->rss_max_bytes > 0 && mn->rss_max_bytes > 0)
        report_paragraph(s,
                         "Memory: server RSS peaked at %.1f MiB with caching off and %.1f MiB "
                         "on (%+.1f MiB); KV usage peaked at %.1f%% off and %.1f%% on. The KV pool "
                         "is preallocated, so cached blocks reuse it rather than add to it.",
                         mo->rss_max_bytes / 1048576.0, mn->rss_max_bytes / 1048576.0,
                         (mn->rss_max_bytes - mo->rss_max_bytes) / 1048576.0,
                         mo->kv_usage_max * 100, mn->kv_usage_max * 100);
    if (mo->gpu_mem_max_bytes > 0 && mn->gpu_mem_max_bytes > 0)
        report_paragraph(s, "GPU memory peaked at %.0f MiB off and %.0f MiB on.",
                         mo->gpu_mem_max_bytes / 1048576.0, mn->gpu_mem_max_bytes / 1048576.0);
    add_ttft_chart(res, s);
}

static void add_hit_model(const struct prefix_result *res, struct report *r)
{
    const struct prefix_fit *f = &res->fit;
    struct report_section *s = report_section_add(r, "hit_rate_model", "Hit rate mental model");
    double xs[2][64], ys[2][64];
    size_t n[2] = {0, 0};
    double xmax = 0;
    for (size_t i = 0; i < res->n_cells; i++) {
        const struct prefix_cell *c = &res->cells[i];
        if (!c->done || c->concurrency != f->concurrency || n[c->mode] >= 64)
            continue;
        char hr[32] = "n/a";
        if (c->has_server_counters && !isnan(c->hit_rate))
            snprintf(hr, sizeof hr, "%.1f%%", c->hit_rate * 100);
        report_bullet(s,
                      "%s, %s prefix, hit mix %.0f%%: server hit rate %s, %.0f uncached prompt "
                      "tokens per request, mean TTFT %.1f ms.",
                      prefix_mode_str(c->mode), prefix_regime_str(c->regime), c->hit_mix * 100, hr,
                      c->mean_uncached_tokens, c->mean_ttft_s * 1e3);
        xs[c->mode][n[c->mode]] = c->mean_uncached_tokens;
        ys[c->mode][n[c->mode]++] = c->mean_ttft_s * 1e3;
        if (c->mean_uncached_tokens > xmax)
            xmax = c->mean_uncached_tokens;
    }
    if (!f->ok) {
        report_paragraph(s,
                         "Too few cells with distinct uncached lengths at concurrency %d to "
                         "fit a line (%d points).",
                         f->concurrency, f->n_points);
        return;
    }
    report_paragraph(s,
                     "Fitted over %d cells at concurrency %d: TTFT ~ %.2f ms + %.4f ms x "
                     "uncached prompt tokens (R^2 %.3f). Prefill of what the cache does not hold "
                     "is what costs: a hit rate h on a prompt of P tokens leaves about (1 - h) x P "
                     "to compute.",
                     f->n_points, f->concurrency, f->a_s * 1e3, f->b_s_per_token * 1e3, f->r2);
    if (f->n_predicted)
        report_paragraph(s,
                         "Fitted on the 0%% and 100%% cells only, the line predicts the %d "
                         "mixed-traffic cells within %.0f%% of their measured TTFT.",
                         f->n_predicted, f->max_pred_err_pct);
    struct report_chart *ch = report_chart_add(s, REPORT_CHART_LINE, "ttft_vs_uncached",
                                               "TTFT vs uncached prompt tokens, with the fit",
                                               "uncached prompt tokens", "tokens", "TTFT", "ms");
    for (int m = 0; m < PREFIX_MODE__COUNT; m++)
        if (n[m])
            report_chart_series(ch, prefix_mode_str((enum prefix_mode)m), xs[m], ys[m], n[m]);
    double fx[2] = {0, xmax}, fy[2] = {f->a_s * 1e3, (f->a_s + f->b_s_per_token * xmax) * 1e3};
    report_chart_series(ch, "fit", fx, fy, 2);
}

static void add_working_set(const struct prefix_result *res, struct report *r)
{
    if (!res->n_ws)
        return;
    struct report_section *s =
        report_section_add(r, "working_set", "Working set: the capacity cliff");
    int64_t kv = res->modes[PREFIX_MODE_ON].kv_capacity_tokens;
    struct report_table *t = report_table_add(s, "working_set", NULL);
    report_table_col(t, "n_prefixes", "Prefixes in rotation", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "tokens", "Their tokens", NULL, REPORT_COL_NUMBER, 0);
    report_table_col(t, "kv_fraction", "Of KV capacity", NULL, REPORT_COL_NUMBER, 2);
    report_table_col(t, "hit_rate", "Hit rate on reuse", NULL, REPORT_COL_NUMBER, 3);
    report_table_col(t, "mean_ttft_s", "Mean TTFT", "s", REPORT_COL_NUMBER, 4);
    int cliff = -1;
    double best = NAN;
    for (int i = 0; i < res->n_ws; i++) {
        const struct prefix_ws_point *p = &res->ws[i];
        report_table_row_add(t);
        report_row_num(t, p->n_prefixes);
        report_row_num(t, (double)p->tokens);
        report_row_num(t, kv > 0 ? (double)p->tokens / kv : NAN);
        report_row_num(t, p->hit_rate);
        report_row_num(t, p->mean_ttft_s);
        if (isnan(best) || p->hit_rate > best)
            best = p->hit_rate;
        if (cliff < 0 && !isnan(best) && p->hit_rate < best / 2)
            cliff = i;
    }
    if (cliff >= 0)
        report_paragraph(s,
                         "The hit rate collapses at %d prefixes in rotation (%lld tokens, %.2f "
                         "of the %lld-token KV capacity): past that, LRU eviction throws each "
                         "prefix out before it is reused.",
                         res->ws[cliff].n_prefixes, (long long)res->ws[cliff].tokens,
                         kv > 0 ? (double)res->ws[cliff].tokens / kv : NAN, (long long)kv);
    else
        report_paragraph(s,
                         "No collapse within the swept sizes (best hit rate %.1f%%; KV "
                         "capacity %lld tokens).",
                         best * 100, (long long)kv);
}

static void add_conclusions(const struct prefix_result *res, struct report *r)
{
    struct report_section *s = report_section_add(r, "conclusions", "Conclusions");
    const struct prefix_fit *f = &res->fit;
    const struct prefix_cell *a = NULL, *b = NULL;
    for (int rg = PREFIX_REGIME__COUNT - 1; rg >= 0 && !b; rg--) {
        a = cell_find(res, PREFIX_MODE_OFF, rg, res->opts.concurrency[0], 1.0);
        b = cell_find(res, PREFIX_MODE_ON, rg, res->opts.concurrency[0], 1.0);
        if (!a)
            b = NULL;
    }
    char finding[256];
    int inactive = prefix_inactive_finding(res, finding, sizeof finding);
    if (a && b && !inactive)
        report_bullet(s,
                      "Enable it when requests repeat a long prefix (system prompt, policy, "
                      "chat history, RAG preamble): here a %d-token shared prefix cut mean TTFT "
                      "from %.1f to %.1f ms (%.0f%% less).",
                      b->prefix_len_tokens, a->mean_ttft_s * 1e3, b->mean_ttft_s * 1e3,
                      -pct_change(a->mean_ttft_s, b->mean_ttft_s));
    else if (inactive)
        report_bullet(s, "Do not assume it works: %s.", finding);
    report_bullet(s, "To see that it works, watch vllm:prefix_cache_hits_total / "
                     "vllm:prefix_cache_queries_total (SGLang: sglang:cache_hit_rate; llama.cpp: "
                     "prompt tokens processed vs sent) and usage.prompt_tokens_details."
                     "cached_tokens; a rate near 0 with repeated prefixes means it is off or "
                     "evicted.");
    if (f->ok)
        report_bullet(s,
                      "It only pays for the reused part: each uncached prompt token costs "
                      "%.3f ms of TTFT here, so at hit rate h the saving is about h x prefix x "
                      "%.3f ms; fresh or unique prefixes gain nothing.",
                      f->b_s_per_token * 1e3, f->b_s_per_token * 1e3);
    report_bullet(s,
                  "Caveat: only whole KV blocks%s can hit, and a working set of prefixes "
                  "larger than the KV pool is evicted before reuse (see --working-set).",
                  res->set && res->set->block_size ? "" : " (block size unknown here)");
    report_bullet(s, "For an SRE or product owner: the server remembers the work it did on text "
                     "it has seen before, so requests that start the same way answer sooner and "
                     "leave more capacity for everyone else.");
}

void prefix_report(const struct prefix_result *res, struct report *r)
{
    report_meta(r, "server", "%s", target_kind_str(res->kind));
    report_meta(r, "model", "%s", res->model[0] ? res->model : "?");
    report_meta(r, "client_calibration", "%s", res->client_calibration);
    report_meta(r, "status", "%s",
                res->interrupted ? "interrupted (finished cells shown)"
                : res->failed    ? "failed (finished cells shown)"
                                 : "complete");
    if (res->stop_reason[0])
        report_meta(r, "stopped", "%s", res->stop_reason);
    add_strategy(res, r);
    add_commands(res, r);
    struct report_section *s = report_section_add(r, "results", "Results");
    add_table(res, s);
    add_interpretation(res, r);
    add_hit_model(res, r);
    add_working_set(res, r);
    add_conclusions(res, r);
}

/* ---- prefix.json ---- */

static void json_num_key(struct buf *b, const char *key, double v)
{
    buf_printf(b, ",\"%s\":", key);
    buf_json_double(b, v);
}

static void json_cell(struct buf *b, const struct prefix_cell *c)
{
    buf_printf(b, "{\"mode\":\"%s\",\"regime\":\"%s\",\"concurrency\":%d,\"done\":%s",
               prefix_mode_str(c->mode), prefix_regime_str(c->regime), c->concurrency,
               c->done ? "true" : "false");
    json_num_key(b, "hit_mix", c->hit_mix);
    buf_printf(b, ",\"prefix_len_tokens\":%d,\"n_requests\":%d,\"n_ok\":%d,\"n_failed\":%d",
               c->prefix_len_tokens, c->n_requests, c->n_ok, c->n_failed);
    json_num_key(b, "mean_ttft_s", c->mean_ttft_s);
    json_num_key(b, "p50_ttft_s", c->p50_ttft_s);
    json_num_key(b, "p95_ttft_s", c->p95_ttft_s);
    json_num_key(b, "mean_e2e_s", c->mean_e2e_s);
    json_num_key(b, "p95_e2e_s", c->p95_e2e_s);
    json_num_key(b, "tok_s", c->tok_s);
    json_num_key(b, "duration_s", c->duration_s);
    buf_printf(b, ",\"prompt_tokens\":%llu,\"completion_tokens\":%llu",
               (unsigned long long)c->prompt_tokens, (unsigned long long)c->completion_tokens);
    json_num_key(b, "mean_uncached_tokens", c->mean_uncached_tokens);
    json_num_key(b, "hits_tokens", c->has_server_counters ? c->hits_tokens : NAN);
    json_num_key(b, "queries_tokens", c->has_server_counters ? c->queries_tokens : NAN);
    json_num_key(b, "server_hit_rate", c->has_server_counters ? c->hit_rate : NAN);
    json_num_key(b, "prime_hits_tokens", c->has_server_counters ? c->prime_hits_tokens : NAN);
    json_num_key(b, "expected_hit_tokens", c->expected_hit_tokens);
    buf_printf(b, ",\"usage_cached_tokens\":%llu,\"n_prime\":%d",
               (unsigned long long)c->usage_cached_tokens, c->n_prime);
    json_num_key(b, "first_request_mean_ttft_s", c->prime_mean_ttft_s);
    json_num_key(b, "kv_usage_max", c->kv_usage_max);
    buf_puts(b, ",\"errors\":{");
    for (int e = 1, first = 1; e < REQ_ERROR__COUNT; e++)
        if (c->n_err_class[e]) {
            buf_printf(b, "%s\"%s\":%d", first ? "" : ",", req_error_str(e), c->n_err_class[e]);
            first = 0;
        }
    buf_puts(b, "},\"notes\":");
    buf_json_str(b, c->notes);
    buf_puts(b, "}");
}

static void json_bytes_key(struct buf *b, const char *key, int64_t v)
{
    if (v >= 0)
        buf_printf(b, ",\"%s\":%lld", key, (long long)v);
    else
        buf_printf(b, ",\"%s\":null", key);
}

void prefix_json(const struct prefix_result *res, struct buf *b)
{
    buf_puts(b, "{\"schema\":\"slmprobe.prefix/1\",\"server\":");
    buf_json_str(b, target_kind_str(res->kind));
    buf_puts(b, ",\"model\":");
    buf_json_str(b, res->model);
    buf_printf(b, ",\"status\":\"%s\",\"stop_reason\":",
               res->interrupted ? "interrupted"
               : res->failed    ? "failed"
                                : "ok");
    buf_json_str(b, res->stop_reason);
    const struct prefix_set *set = res->set;
    buf_printf(b, ",\"block_size_tokens\":%d,\"prompts\":{\"source\":", set ? set->block_size : 0);
    buf_json_str(b, set ? set->source : "");
    buf_printf(b, ",\"n_prompts\":%zu,\"prefixes\":[", set ? set->n_prompts : 0);
    for (size_t i = 0; set && i < set->n_prefixes; i++) {
        const struct prefix_shared *sh = &set->prefixes[i];
        buf_printf(b, "%s{\"workload\":", i ? "," : "");
        buf_json_str(b, sh->workload);
        buf_printf(b, ",\"regime\":\"%s\",\"len_tokens\":%d,\"n_blocks\":%d,\"pad_tokens\":%d}",
                   prefix_regime_str(sh->regime), sh->len_tokens, sh->n_blocks, sh->n_pad_tokens);
    }
    buf_puts(b, "],\"warnings\":");
    buf_json_str(b, set ? set->warnings : "");
    buf_puts(b, "},\"modes\":[");
    for (int m = 0, first = 1; m < PREFIX_MODE__COUNT; m++) {
        const struct prefix_mode_run *mr = &res->modes[m];
        if (!mr->ran)
            continue;
        buf_printf(b, "%s{\"mode\":\"%s\",\"ready\":%s,\"command\":", first ? "" : ",",
                   prefix_mode_str((enum prefix_mode)m), mr->ready ? "true" : "false");
        buf_json_str(b, mr->cmdline);
        buf_puts(b, ",\"script\":");
        buf_json_str(b, mr->script_name);
        buf_puts(b, ",\"differs_by\":");
        buf_json_str(b, mr->how);
        buf_puts(b, ",\"error\":");
        buf_json_str(b, mr->err);
        json_bytes_key(b, "rss_ready_bytes", mr->rss_ready_bytes);
        json_bytes_key(b, "rss_max_bytes", mr->rss_max_bytes);
        json_bytes_key(b, "gpu_mem_ready_bytes", mr->gpu_mem_ready_bytes);
        json_bytes_key(b, "gpu_mem_max_bytes", mr->gpu_mem_max_bytes);
        json_num_key(b, "kv_usage_max", mr->kv_usage_max);
        json_bytes_key(b, "kv_capacity_tokens", mr->kv_capacity_tokens);
        buf_printf(b, ",\"block_size_tokens\":%d}", mr->block_size);
        first = 0;
    }
    buf_puts(b, "],\"cells\":[");
    for (size_t i = 0, first = 1; i < res->n_cells; i++) {
        if (!res->cells[i].done)
            continue;
        if (!first)
            buf_putc(b, ',');
        json_cell(b, &res->cells[i]);
        first = 0;
    }
    const struct prefix_fit *f = &res->fit;
    buf_printf(b, "],\"fit\":{\"ok\":%s,\"n_points\":%d,\"concurrency\":%d",
               f->ok ? "true" : "false", f->n_points, f->concurrency);
    json_num_key(b, "a_s", f->ok ? f->a_s : NAN);
    json_num_key(b, "b_s_per_token", f->ok ? f->b_s_per_token : NAN);
    json_num_key(b, "r2", f->ok ? f->r2 : NAN);
    buf_printf(b, ",\"n_predicted\":%d", f->n_predicted);
    json_num_key(b, "max_pred_err_pct", f->n_predicted ? f->max_pred_err_pct : NAN);
    buf_puts(b, "},\"working_set\":[");
    for (int i = 0; i < res->n_ws; i++) {
        const struct prefix_ws_point *p = &res->ws[i];
        buf_printf(b, "%s{\"n_prefixes\":%d,\"tokens\":%lld,\"n_requests\":%d", i ? "," : "",
                   p->n_prefixes, (long long)p->tokens, p->n_requests);
        json_num_key(b, "hit_rate", p->hit_rate);
        json_num_key(b, "mean_ttft_s", p->mean_ttft_s);
        buf_puts(b, "}");
    }
    char finding[256];
    prefix_inactive_finding(res, finding, sizeof finding);
    buf_puts(b, "],\"finding\":");
    buf_json_str(b, finding);
    buf_puts(b, "}\n");
}

/* ---- files ---- */

static const char *out_path(const char *dir, const char *name, char *out, size_t out_len)
{
    snprintf(out, out_len, "%s/%s", dir, name);
    return out;
}

static int write_script(const char *dir, const struct prefix_mode_run *mr, char *err,
                        size_t err_len)
{
    char path[1200];
    out_path(dir, mr->script_name, path, sizeof path);
    struct buf b;
    buf_init(&b, 4096, 1 << 16);
    buf_printf(&b,
               "#!/usr/bin/env bash\n# %s: written by slmprobe prefix (%s).\nset -euo pipefail\n"
               "exec %s \"$@\"\n",
               mr->script_name, mr->how, mr->cmdline);
    int rc = file_write_all(path, b.data, b.len);
    if (rc == 0)
        chmod(path, 0755);
    else
        snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
    buf_free(&b);
    return rc;
}

int prefix_write_outputs(const struct prefix_result *res, const char *dir, char *err,
                         size_t err_len)
{
    struct report *r = report_new("Prefix caching: measured A/B");
    report_set_html_name(r, "prefix_caching_results.html");
    prefix_report(res, r);
    char path[1200];
    int rc = 0;
    if (report_write_csv(r, PREFIX_TABLE_KEY,
                         out_path(dir, "prefix_caching_results.csv", path, sizeof path), err,
                         err_len) != REPORT_OK ||
        report_write_file(r, REPORT_FORMAT_MARKDOWN,
                          out_path(dir, "prefix_caching_results.md", path, sizeof path), err,
                          err_len) != REPORT_OK ||
        report_write_file(r, REPORT_FORMAT_HTML,
                          out_path(dir, "prefix_caching_results.html", path, sizeof path), err,
                          err_len) != REPORT_OK)
        rc = -1;
    report_free(r);
    struct buf j;
    buf_init(&j, 1 << 16, (size_t)64 << 20);
    prefix_json(res, &j);
    if (rc == 0 &&
        file_write_all(out_path(dir, "prefix.json", path, sizeof path), j.data, j.len) != 0) {
        snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
        rc = -1;
    }
    buf_free(&j);
    if (rc == 0 && res->set && res->set->n_prompts &&
        prefix_set_write_jsonl(res->set, out_path(dir, "prefix_prompts.jsonl", path, sizeof path),
                               err, err_len) != PREFIX_OK)
        rc = -1;
    for (int m = 0; m < PREFIX_MODE__COUNT && rc == 0; m++)
        if (res->modes[m].ready && res->modes[m].cmdline[0] && !res->opts.url_off)
            rc = write_script(dir, &res->modes[m], err, err_len);
    return rc;
}
