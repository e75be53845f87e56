/* prefix_run: the prefix-caching A/B. Launches the server twice through run/launch.h, with
 * caching off, then on, every other flag identical (or uses --url-off/--url-on), measures the
 * prompt set with the first server's tokenizer, and per cell (regime x concurrency x hit mix)
 * resets the cache, primes each shared prefix once, then drives the cell through run/driver.h
 * while reading the server's prefix-cache counters before and after. Per-request records go to
 * prefix_requests.jsonl; outputs are rewritten after every cell so an interrupted run keeps its
 * finished cells. It renders nothing itself (prefix_report.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net/client.h"
#include "prefix/prefix.h"
#include "run/driver.h"
#include "run/launch.h"
#include "server/promscrape.h"
#include "server/scraper.h"
#include "util/log.h"

#define MOD "prefix"
#define PREFIX_TAG_PRIME "prime"

/* The prompts of one phase, built before it starts (the make callback only points at them). */
struct phase_prompts {
    char **text;
    size_t *len;
    int *i_prefix; /* shared prefix, or -1 (fresh and unique) */
    int n;
    int max_tokens;
    const char *extra_json;
};

static void phase_prompts_free(struct phase_prompts *pp)
{
    for (int i = 0; i < pp->n; i++)
        free(pp->text[i]);
    free(pp->text);
    free(pp->len);
    free(pp->i_prefix);
    memset(pp, 0, sizeof *pp);
}

static void phase_prompts_alloc(struct phase_prompts *pp, int n, int max_tokens, const char *xj)
{
    pp->text = xcalloc((size_t)n, sizeof *pp->text);
    pp->len = xcalloc((size_t)n, sizeof *pp->len);
    pp->i_prefix = xcalloc((size_t)n, sizeof *pp->i_prefix);
    pp->n = n;
    pp->max_tokens = max_tokens;
    pp->extra_json = xj;
}

/* head (may be NULL) + prefix + tail into slot i. */
static void phase_prompt_set(struct phase_prompts *pp, int i, const char *head,
                             const struct prefix_shared *sh, const char *tail, size_t tail_len,
                             int i_prefix)
{
    struct buf b;
    buf_init(&b, sh->len + tail_len + 64, (size_t)1 << 30);
    if (head)
        buf_puts(&b, head);
    buf_append(&b, sh->text, sh->len);
    buf_append(&b, tail, tail_len);
    pp->len[i] = b.len;
    pp->text[i] = buf_steal(&b);
    pp->i_prefix[i] = i_prefix;
}

static int make_prompt(void *ud, uint64_t i, struct client_request *rq, struct buf *prompt)
{
    const struct phase_prompts *pp = ud;
    size_t k = (size_t)(i % (uint64_t)pp->n);
    rq->prompt = pp->text[k];
    rq->prompt_len = pp->len[k];
    rq->max_tokens = pp->max_tokens;
    rq->ignore_eos = 1;
    rq->temperature = 0;
    rq->extra_json = pp->extra_json;
    return 0;
}

/* The regime's prompts, round robin over its prefixes (indices into set->prompts). */
static size_t regime_prompts(const struct prefix_set *set, enum prefix_regime r, size_t *out)
{
    size_t n = 0, round = 0, added = 1;
    while (added) {
        added = 0;
        for (size_t ip = 0; ip < set->n_prefixes; ip++) {
            if (set->prefixes[ip].regime != r)
                continue;
            size_t seen = 0;
            for (size_t j = 0; j < set->n_prompts; j++)
                if (set->prompts[j].i_prefix == ip && seen++ == round) {
                    out[n++] = j;
                    added = 1;
                    break;
                }
        }
        round++;
    }
    return n;
}

/* Metrics now, through the launch's scraper or directly. 0, or -1 (none). */
static int scrape_now(struct launch *L, struct server_metrics *m)
{
    memset(m, 0, sizeof *m);
    if (L->scr)
        return scraper_scrape_now(L->scr, m);
    char url[512], err[256];
    snprintf(url, sizeof url, "%s/metrics", L->t->base_url);
    struct prom_set ps;
    int rc = prom_fetch(url, L->cfg.api_key, 5000, &ps, NULL, err, sizeof err) == PROM_OK ? 0 : -1;
    if (rc == 0)
        server_metrics_from_prom(&ps, m);
    prom_set_free(&ps);
    return rc;
}

/* Metrics once the server's counters have settled: the embedded engine publishes its counters
 * at the end of the step that finished the last request, which can be just after that request's
 * response reached us. Re-reads every 25 ms until two reads agree (at most 1 s). Between phases
 * only (never while the driver runs). */
static int scrape_settled(struct launch *L, struct server_metrics *m)
{
    int rc = scrape_now(L, m);
    for (int i = 0; i < 40 && rc == 0; i++) {
        struct server_metrics again;
        struct timespec ts = {0, 25 * 1000000L};
        nanosleep(&ts, NULL);
        if (scrape_now(L, &again) != 0)
            break;
        int same = again.prefix_queries == m->prefix_queries &&
                   again.prefix_hits == m->prefix_hits &&
                   again.prompt_tokens == m->prompt_tokens;
        *m = again;
        if (same)
            break;
    }
    return rc;
}

/* Hits and queries between two scrapes; 0, or -1 when the counters are not exposed. */
static int counters_delta(int ok0, const struct server_metrics *m0, int ok1,
                          const struct server_metrics *m1, double *hits, double *queries)
{
    struct server_metrics d;
    if (ok0 != 0 || ok1 != 0)
        return -1;
    server_metrics_delta(m0, m1, &d);
    if (!d.has_prefix_hits || !d.has_prefix_queries)
        return -1;
    *hits = d.prefix_hits;
    *queries = d.prefix_queries;
    return 0;
}

static void cell_note(struct prefix_cell *c, const char *fmt, const char *a)
{
    size_t used = strlen(c->notes);
    char msg[300];
    snprintf(msg, sizeof msg, fmt, a);
    snprintf(c->notes + used, sizeof c->notes - used, "%s%s", used ? "; " : "", msg);
}

struct run_ctx {
    const struct prefix_opts *o;
    struct prefix_set *set;
    struct session *s;
    struct launch *L;
    struct driver *d;
    struct prefix_result *res;
    const char *extra_json;
};

/* Runs one phase; copies the error classes into the cell. Returns the driver status. */
static enum driver_status run_phase(struct run_ctx *x, struct prefix_cell *c,
                                    struct phase_prompts *pp, enum driver_mode mode,
                                    const char *tag, struct driver_result *out)
{
    struct driver_phase ph = {.mode = mode,
                              .tag = tag,
                              .level = c->concurrency,
                              .concurrency = c->concurrency,
                              .n_requests = pp->n,
                              .make = make_prompt,
                              .ud = pp,
                              .progress = x->o->progress,
                              .progress_what = tag};
    return driver_run(x->d, &ph, out);
}

static void cell_fill(struct prefix_cell *c, const struct driver_result *r)
{
    struct summary st, se;
    hist_summary(&r->ttft_ms, &st);
    hist_summary(&r->e2e_ms, &se);
    c->n_ok = r->n_ok;
    c->n_failed = r->n_done - r->n_ok;
    for (int e = 0; e < REQ_ERROR__COUNT; e++) {
        c->n_err_class[e] = r->n_err_class[e];
        if (r->n_err_class[e] && e != REQ_ERROR_NONE && !c->first_error[0])
            snprintf(c->first_error, sizeof c->first_error, "%s: %s", req_error_str(e),
                     r->err_msg[e]);
    }
    c->mean_ttft_s = st.mean / 1e3;
    c->p50_ttft_s = st.p50 / 1e3;
    c->p95_ttft_s = st.p95 / 1e3;
    c->mean_e2e_s = se.mean / 1e3;
    c->p95_e2e_s = se.p95 / 1e3;
    c->duration_s = r->t_end_ns > r->t_start_ns ? (double)(r->t_end_ns - r->t_start_ns) / 1e9 : 0;
    c->tok_s = stats_rate((double)r->completion_tokens, c->duration_s);
    c->prompt_tokens = r->prompt_tokens;
    c->completion_tokens = r->completion_tokens;
    c->usage_cached_tokens = r->cached_tokens;
    c->n_cached_known = r->n_cached_known;
    int n_usage = r->n_ok - r->n_no_usage;
    c->mean_prompt_tokens = n_usage > 0 ? (double)r->prompt_tokens / n_usage : NAN;
}

/* The cell's prompts: an exact running mix of shared-prefix and fresh-prefix requests. */
static void cell_prompts(struct run_ctx *x, struct prefix_cell *c, size_t *list, size_t n_list,
                         size_t i_cell, struct phase_prompts *pp)
{
    phase_prompts_alloc(pp, x->o->n_requests, x->o->max_tokens, x->extra_json);
    int n_shared = 0, n_fresh = 0;
    for (int j = 0; j < pp->n; j++) {
        int shared = (int)floor((j + 1) * c->hit_mix + 1e-9) > (int)floor(j * c->hit_mix + 1e-9);
        const struct prefix_prompt *p =
            &x->set->prompts[list[(size_t)(shared ? n_shared : n_fresh) % n_list]];
        const struct prefix_shared *sh = &x->set->prefixes[p->i_prefix];
        char head[64];
        /* A fresh prefix: the same text behind a header unique to (cell, request), so its first
         * block already differs and nothing in it can hit. Identical in both modes. */
        snprintf(head, sizeof head, "Session %zu-%d.\n", i_cell % (x->res->n_cells / 2), j);
        phase_prompt_set(pp, j, shared ? NULL : head, sh, p->suffix, p->suffix_len,
                         shared ? (int)p->i_prefix : -1);
        if (shared) {
            n_shared++;
            if (c->mode == PREFIX_MODE_ON && sh->n_blocks > 0)
                c->expected_hit_tokens += (double)sh->n_blocks * x->set->block_size;
        } else {
            n_fresh++;
        }
    }
    c->n_shared = n_shared;
}

static int reset_cache(struct launch *L)
{
    char url[512], err[256];
    snprintf(url, sizeof url, "%s/reset_prefix_cache", L->t->base_url);
    struct buf body;
    buf_init(&body, 256, 1 << 16);
    int status = 0;
    int rc = http_post_json(url, L->cfg.api_key, "{}", 10000, &body, &status, err, sizeof err);
    buf_free(&body);
    return rc == 0 && status == 200 ? 0 : -1;
}

/* Reset, prime each shared prefix of the regime once, measure. Returns the driver status. */
static enum driver_status cell_run(struct run_ctx *x, struct prefix_cell *c, size_t i_cell)
{
    size_t *list = xcalloc(x->set->n_prompts + 1, sizeof *list);
    size_t n_list = regime_prompts(x->set, c->regime, list);
    struct phase_prompts prime = {0}, meas = {0};
    struct driver_result rp, rm;
    memset(&rp, 0, sizeof rp);
    memset(&rm, 0, sizeof rm);
    c->reset_ok = reset_cache(x->L) == 0;
    if (!c->reset_ok)
        cell_note(c, "%s", "no /reset_prefix_cache: the cache was not reset before this cell");
    int n_pre = 0;
    double len_sum = 0;
    for (size_t ip = 0; ip < x->set->n_prefixes; ip++)
        if (x->set->prefixes[ip].regime == c->regime) {
            n_pre++;
            len_sum += x->set->prefixes[ip].len_tokens;
        }
    c->prefix_len_tokens = n_pre ? (int)lround(len_sum / n_pre) : -1;
    phase_prompts_alloc(&prime, n_pre, x->o->max_tokens, x->extra_json);
    static const char prime_q[] = PREFIX_QUESTION_SEP "Ticket 0: (warm-up) Summarise the above.\nA:";
    for (size_t ip = 0, k = 0; ip < x->set->n_prefixes; ip++)
        if (x->set->prefixes[ip].regime == c->regime)
            phase_prompt_set(&prime, (int)k++, NULL, &x->set->prefixes[ip], prime_q,
                             sizeof prime_q - 1, (int)ip);
    cell_prompts(x, c, list, n_list, i_cell, &meas);
    c->n_requests = meas.n;
    char tag[32];
    snprintf(tag, sizeof tag, "%s/%s/c%d/h%.0f", c->mode == PREFIX_MODE_ON ? "on" : "off",
             prefix_regime_str(c->regime), c->concurrency, c->hit_mix * 100);

    struct server_metrics m0, m1, m2;
    int ok0 = scrape_now(x->L, &m0);
    enum driver_status st = run_phase(x, c, &prime, DRIVER_MODE_SEQUENTIAL, PREFIX_TAG_PRIME, &rp);
    struct summary sp;
    hist_summary(&rp.ttft_ms, &sp);
    c->n_prime = rp.n_ok;
    c->prime_mean_ttft_s = sp.mean / 1e3;
    int ok1 = scrape_settled(x->L, &m1);
    if (st == DRIVER_STATUS_OK) {
        st = run_phase(x, c, &meas, DRIVER_MODE_CLOSED, tag, &rm);
        int ok2 = scrape_settled(x->L, &m2);
        cell_fill(c, &rm);
        double q = 0, h = 0, hp = 0, qp = 0;
        if (counters_delta(ok1, &m1, ok2, &m2, &h, &q) == 0) {
            c->has_server_counters = 1;
            c->hits_tokens = h;
            c->queries_tokens = q;
            c->hit_rate = q > 0 ? h / q : NAN;
            if (counters_delta(ok0, &m0, ok1, &m1, &hp, &qp) == 0)
                c->prime_hits_tokens = hp;
        }
        double hits = c->has_server_counters ? c->hits_tokens
                      : c->n_cached_known      ? (double)c->usage_cached_tokens
                                               : c->expected_hit_tokens;
        int n_usage = rm.n_ok - rm.n_no_usage;
        c->mean_uncached_tokens = n_usage > 0 ? ((double)c->prompt_tokens - hits) / n_usage : NAN;
        c->kv_usage_max = NAN;
        if (x->L->scr) {
            struct scrape_window w;
            scraper_window(x->L->scr, rm.t_start_ns, rm.t_end_ns, &w);
            if (w.has_kv_usage)
                c->kv_usage_max = w.kv_usage_max;
        }
        if (c->n_failed)
            cell_note(c, "%s", c->first_error);
        if ((size_t)c->n_shared > n_list && c->mode == PREFIX_MODE_ON)
            cell_note(c, "%s", "questions repeat within the cell (more requests than variants): "
                               "their blocks may hit too");
        c->done = st == DRIVER_STATUS_OK;
    }
    if (st != DRIVER_STATUS_OK)
        snprintf(x->res->stop_reason, sizeof x->res->stop_reason, "%s: %s",
                 driver_status_str(st), rp.stop_reason[0] ? rp.stop_reason : rm.stop_reason);
    driver_result_free(&rp);
    driver_result_free(&rm);
    phase_prompts_free(&prime);
    phase_prompts_free(&meas);
    free(list);
    return st;
}

/* ---- working set: distinct prefixes in rotation until the hit rate collapses ---- */

static void working_set_run(struct run_ctx *x)
{
    const struct prefix_shared *base = NULL;
    for (size_t ip = 0; ip < x->set->n_prefixes; ip++)
        if (!base || x->set->prefixes[ip].len_tokens > base->len_tokens)
            base = &x->set->prefixes[ip];
    static const char q1[] = PREFIX_QUESTION_SEP "Ticket 1: What is this about?\nA:";
    static const char q2[] = PREFIX_QUESTION_SEP "Ticket 2: Summarise it in one line.\nA:";
    for (int w = 0; w < x->o->n_working_set && !session_cancelled(x->s); w++) {
        int n = x->o->working_set[w];
        struct prefix_ws_point *pt = &x->res->ws[x->res->n_ws];
        struct prefix_cell c = {.mode = PREFIX_MODE_ON, .concurrency = 1};
        struct phase_prompts r1 = {0}, r2 = {0};
        phase_prompts_alloc(&r1, n, x->o->max_tokens, x->extra_json);
        phase_prompts_alloc(&r2, n, x->o->max_tokens, x->extra_json);
        for (int i = 0; i < n; i++) {
            char head[64];
            snprintf(head, sizeof head, "Set %d of %d, document %d.\n", w, n, i);
            phase_prompt_set(&r1, i, head, base, q1, sizeof q1 - 1, -1);
            phase_prompt_set(&r2, i, head, base, q2, sizeof q2 - 1, -1);
        }
        reset_cache(x->L);
        struct driver_result a, b;
        memset(&b, 0, sizeof b);
        struct server_metrics m1, m2;
        enum driver_status st = run_phase(x, &c, &r1, DRIVER_MODE_SEQUENTIAL, "ws_fill", &a);
        int ok1 = scrape_settled(x->L, &m1);
        if (st == DRIVER_STATUS_OK)
            st = run_phase(x, &c, &r2, DRIVER_MODE_SEQUENTIAL, "ws_reuse", &b);
        int ok2 = scrape_settled(x->L, &m2);
        double h = 0, q = 0;
        if (st == DRIVER_STATUS_OK) {
            struct summary sm;
            hist_summary(&b.ttft_ms, &sm);
            pt->n_prefixes = n;
            pt->tokens = (int64_t)n * (base->len_tokens > 0 ? base->len_tokens : 0);
            pt->n_requests = b.n_ok;
            pt->mean_ttft_s = sm.mean / 1e3;
            pt->hit_rate = counters_delta(ok1, &m1, ok2, &m2, &h, &q) == 0 && q > 0 ? h / q : NAN;
            x->res->n_ws++;
        }
        driver_result_free(&a);
        driver_result_free(&b);
        phase_prompts_free(&r1);
        phase_prompts_free(&r2);
        if (st != DRIVER_STATUS_OK)
            break;
    }
}

/* ---- the two launches ---- */

/* The config of one mode: the user's, with only the prefix-caching switch changed. -1 with err
 * when the server cannot be switched. */
static int mode_config(const struct prefix_opts *o, const struct probe_opts *po,
                       enum prefix_mode m, struct target_config *cfg,
                       const char **extra_json, char *how, size_t how_len, char *err,
                       size_t err_len)
{
    *cfg = po->target;
    *extra_json = NULL;
    const struct target_kind_caps *caps = target_kind_caps(cfg->kind);
    if (o->url_off && o->url_on) { /* cmd_prefix requires both or neither */
        cfg->url = m == PREFIX_MODE_ON ? o->url_on : o->url_off;
        snprintf(how, how_len, "two running servers: --url-off %s, --url-on %s", o->url_off,
                 o->url_on);
        return 0;
    }
    if (cfg->url) {
        snprintf(err, err_len, "--url probes one running server: prefix caching cannot be "
                 "switched there; give --url-off URL --url-on URL (two servers) instead");
        return -1;
    }
    if (cfg->serve_cmd) {
        snprintf(err, err_len, "--serve-cmd gives one fixed command: prefix caching cannot be "
                 "switched; use --server with its flags, or --url-off/--url-on");
        return -1;
    }
    if (cfg->kind == TARGET_KIND_LLAMACPP && caps->prefix_cache_off_json) {
        /* llama.cpp: the same launch; caching off is the per-request field. */
        *extra_json = m == PREFIX_MODE_OFF ? caps->prefix_cache_off_json : NULL;
        snprintf(how, how_len, "llama.cpp: identical launches; the off run sends %s in every "
                 "request", caps->prefix_cache_off_json);
    } else if (!caps->prefix_cache_off_flag) {
        snprintf(err, err_len, "the %s server has no prefix-cache switch slmprobe knows",
                 target_kind_str(cfg->kind));
        return -1;
    } else {
        cfg->prefix_cache = m == PREFIX_MODE_ON ? TARGET_PREFIX_CACHE_ON : TARGET_PREFIX_CACHE_OFF;
        snprintf(how, how_len, "%s vs %s, every other flag identical",
                 caps->prefix_cache_off_flag,
                 caps->prefix_cache_on_flag ? caps->prefix_cache_on_flag : "(the default: on)");
    }
    /* target.c adds --enable-prompt-tokens-details for embedded and vLLM, in both alike. */
    return 0;
}

/* First launch only: block size, lengths (and padding), the cells. 0, or -1 with a reason. */
static int set_prepare(struct run_ctx *x, struct prefix_mode_run *mr)
{
    struct prefix_tokenizer tk = {.base_url = x->L->t->base_url,
                                  .api_key = x->L->cfg.api_key,
                                  .kind = x->L->cfg.kind};
    int bs = 0;
    int64_t kv = -1;
    prefix_fetch_cache_config(x->L->t->base_url, x->L->cfg.api_key, &bs, &kv);
    char err[512];
    if (prefix_set_measure(x->set, prefix_tokenize_http, &tk, bs, x->set->generated, err,
                           sizeof err) != PREFIX_OK) {
        snprintf(x->res->stop_reason, sizeof x->res->stop_reason,
                 "cannot measure prompt lengths: %s", err);
        return -1;
    }
    if (x->set->warnings[0])
        log_warn(MOD, "%s", x->set->warnings);
    int present[PREFIX_REGIME__COUNT] = {0}, n_reg = 0;
    for (size_t i = 0; i < x->set->n_prefixes; i++)
        present[x->set->prefixes[i].regime] = 1;
    for (int r = 0; r < PREFIX_REGIME__COUNT; r++)
        n_reg += present[r] && x->o->regimes[r];
    size_t per_mode = (size_t)n_reg * x->o->n_concurrency * x->o->n_hit_mix;
    x->res->cells = xcalloc(per_mode * 2 + 1, sizeof *x->res->cells);
    x->res->n_cells = per_mode * 2;
    size_t k = 0;
    for (int m = 0; m < PREFIX_MODE__COUNT; m++)
        for (int r = 0; r < PREFIX_REGIME__COUNT; r++)
            for (int ic = 0; ic < x->o->n_concurrency && present[r] && x->o->regimes[r]; ic++)
                for (int ih = 0; ih < x->o->n_hit_mix; ih++) {
                    struct prefix_cell *c = &x->res->cells[k++];
                    c->mode = (enum prefix_mode)m;
                    c->regime = (enum prefix_regime)r;
                    c->concurrency = x->o->concurrency[ic];
                    c->hit_mix = x->o->hit_mix[ih];
                    c->hit_rate = c->kv_usage_max = NAN;
                }
    if (!per_mode) {
        snprintf(x->res->stop_reason, sizeof x->res->stop_reason,
                 "no prefix falls in the selected regimes (--regimes)");
        return -1;
    }
    (void)mr;
    return 0;
}

static void mode_memory(struct launch *L, struct prefix_mode_run *mr, mono_ns t0, mono_ns t1)
{
    mr->rss_ready_bytes = L->rss_ready_bytes;
    mr->gpu_mem_ready_bytes = L->gpu_mem_ready_bytes;
    mr->rss_max_bytes = mr->gpu_mem_max_bytes = -1;
    struct telemetry_window tw;
    if (t1 > t0 && launch_window(L, t0, t1, &tw) == 0) {
        mr->rss_max_bytes = tw.rss_max_bytes;
        mr->gpu_mem_max_bytes = tw.gpu_available ? tw.gpu_mem_used_max_bytes : -1;
    }
    if (L->have_startup && L->startup.kv_cache_tokens > 0 && mr->kv_capacity_tokens < 0)
        mr->kv_capacity_tokens = L->startup.kv_cache_tokens;
}

/* One mode: launch, (measure the set), every cell of the mode, (working set), stop. */
static int mode_run(struct run_ctx *x, enum prefix_mode m)
{
    struct prefix_mode_run *mr = &x->res->modes[m];
    struct target_config cfg;
    char err[1024];
    mr->ran = 1;
    mr->kv_usage_max = NAN;
    mr->kv_capacity_tokens = -1;
    snprintf(mr->script_name, sizeof mr->script_name, "%s",
             m == PREFIX_MODE_ON ? "serve_slm_prefix_cache.sh" : "serve_slm_no_prefix_cache.sh");
    if (mode_config(x->o, x->s->po, m, &cfg, &x->extra_json, mr->how,
                    sizeof mr->how, mr->err, sizeof mr->err) != 0) {
        snprintf(x->res->stop_reason, sizeof x->res->stop_reason, "%s", mr->err);
        return PROBE_EXIT_USAGE;
    }
    /* The scripts must name the real binary, not /proc/self/exe. */
    char exe[1024];
    ssize_t n_exe = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (cfg.kind == TARGET_KIND_EMBEDDED && !cfg.self_exe && n_exe > 0) {
        exe[n_exe] = '\0';
        cfg.self_exe = exe;
    }
    struct launch L;
    launch_init(&L, x->s, &cfg,
                m == PREFIX_MODE_ON ? "server_prefix_cache.log" : "server_no_prefix_cache.log");
    x->L = &L;
    int rc = PROBE_EXIT_OK;
    if (cfg.url)
        log_info(MOD, "%s: the server at %s", prefix_mode_str(m), cfg.url);
    else
        log_info(MOD, "%s: launching the %s server", prefix_mode_str(m), target_kind_str(cfg.kind));
    if (launch_start(&L) != TARGET_OK) {
        snprintf(mr->err, sizeof mr->err, "%s", L.err);
        snprintf(x->res->stop_reason, sizeof x->res->stop_reason, "%s: %s", prefix_mode_str(m),
                 L.err);
        rc = session_interrupted(x->s) ? PROBE_EXIT_INTERRUPTED : PROBE_EXIT_FAILED;
        goto out;
    }
    mr->ready = 1;
    snprintf(mr->cmdline, sizeof mr->cmdline, "%s",
             L.url_mode ? cfg.url : L.cmdline);
    prefix_fetch_cache_config(L.t->base_url, cfg.api_key, &mr->block_size, &mr->kv_capacity_tokens);
    if (!x->res->cells && set_prepare(x, mr) != 0) {
        rc = PROBE_EXIT_FAILED;
        goto out;
    }
    struct client_config cc;
    probe_opts_client_config(x->s->po, L.t->base_url, &cc);
    x->d = driver_new(x->s, &L, &cc, x->res->sink_, err, sizeof err);
    if (!x->d) {
        snprintf(x->res->stop_reason, sizeof x->res->stop_reason, "%s", err);
        rc = PROBE_EXIT_FAILED;
        goto out;
    }
    snprintf(x->res->model, sizeof x->res->model, "%s", driver_model(x->d));
    mono_ns t0 = clock_now_ns();
    for (size_t i = 0; i < x->res->n_cells && rc == PROBE_EXIT_OK; i++) {
        struct prefix_cell *c = &x->res->cells[i];
        if (c->mode != m)
            continue;
        enum driver_status st = cell_run(x, c, i);
        if (!isnan(c->kv_usage_max) && (isnan(mr->kv_usage_max) || c->kv_usage_max > mr->kv_usage_max))
            mr->kv_usage_max = c->kv_usage_max;
        if (prefix_write_outputs(x->res, x->s->out_dir, err, sizeof err) != 0)
            log_warn(MOD, "%s", err);
        if (st == DRIVER_STATUS_CANCELLED)
            rc = session_interrupted(x->s) ? PROBE_EXIT_INTERRUPTED : PROBE_EXIT_FAILED;
        else if (st != DRIVER_STATUS_OK)
            rc = PROBE_EXIT_FAILED;
    }
    if (rc == PROBE_EXIT_OK && m == PREFIX_MODE_ON)
        working_set_run(x);
    mode_memory(&L, mr, t0, clock_now_ns());
out:
    driver_free(x->d);
    x->d = NULL;
    launch_stop(&L);
    if (L.died && !mr->err[0])
        snprintf(mr->err, sizeof mr->err, "the server died: %.2400s", L.log_tail);
    launch_free(&L);
    x->L = NULL;
    return rc;
}

int prefix_run(const struct prefix_opts *o, struct prefix_set *set, struct session *s,
               struct prefix_result *res)
{
    memset(res, 0, sizeof *res);
    res->opts = *o;
    res->set = set;
    res->kind = s->po->target.kind;
    snprintf(res->client_calibration, sizeof res->client_calibration, "%s", s->ceiling_note);
    char err[512];
    res->sink_ = session_sink_open(s, "prefix_requests.jsonl", err, sizeof err);
    if (!res->sink_)
        log_warn(MOD, "no per-request JSONL: %s", err);
    struct run_ctx x = {.o = o, .set = set, .s = s, .res = res};
    int rc = PROBE_EXIT_OK;
    for (int m = 0; m < PREFIX_MODE__COUNT && rc == PROBE_EXIT_OK; m++)
        rc = mode_run(&x, (enum prefix_mode)m);
    prefix_fit_cells(res->cells, res->n_cells, &res->fit);
    res->interrupted = rc == PROBE_EXIT_INTERRUPTED;
    res->failed = rc != PROBE_EXIT_OK;
    record_sink_close(res->sink_);
    res->sink_ = NULL;
    if (res->cells && prefix_write_outputs(res, s->out_dir, err, sizeof err) != 0)
        log_error(MOD, "%s", err);
    return rc;
}

void prefix_result_free(struct prefix_result *res)
{
    if (!res)
        return;
    free(res->cells);
    record_sink_close(res->sink_);
    memset(res, 0, sizeof *res);
}
