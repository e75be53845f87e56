/* kv_fit: the pure arithmetic of `slmprobe kv`: option lists, the theoretical bytes per KV token
 * (from a GGUF header through the engine's model_file_info, or from a config.json), the
 * least-squares line memory = fixed + slope x length with R² and residuals, step changes in the
 * residuals, the regime (pre-allocating or per-context), the headroom envelope and the picks. It
 * launches nothing and writes no file; every number it makes is derived from the rows. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/model.h"
#include "kv/kv_probe.h"
#include "util/buf.h"
#include "util/json.h"

static const int kv_env_conc[KV_ENV_N] = {1, 4, 8, 16, 32};

void kv_opts_defaults(struct kv_opts *o)
{
    memset(o, 0, sizeof *o);
    o->concurrency = 8;
    o->verify_max = 32;
    o->verify_output_tokens = 4;
}

const char *kv_row_status_str(enum kv_row_status st)
{
    switch (st) {
    case KV_ROW_OK: return "ok";
    case KV_ROW_START_FAILED: return "start_failed";
    case KV_ROW_DIED: return "died";
    case KV_ROW_SKIPPED: return "skipped";
    case KV_ROW_RESUMED: return "resumed";
    }
    return "?";
}

const char *kv_verify_verdict_str(enum kv_verify_verdict v)
{
    switch (v) {
    case KV_VERIFY_NOT_RUN: return "not_run";
    case KV_VERIFY_CONCURRENT: return "concurrent";
    case KV_VERIFY_QUEUED: return "queued";
    case KV_VERIFY_FAILED: return "failed";
    }
    return "?";
}

const char *kv_regime_str(enum kv_regime r)
{
    switch (r) {
    case KV_REGIME_UNKNOWN: return "unknown";
    case KV_REGIME_PRE_ALLOCATING: return "pre-allocating";
    case KV_REGIME_PER_CONTEXT: return "per-context";
    }
    return "?";
}

const char *kv_mem_source_str(enum kv_mem_source m)
{
    switch (m) {
    case KV_MEM_NONE: return "none";
    case KV_MEM_GPU: return "gpu";
    case KV_MEM_RSS: return "rss";
    }
    return "?";
}

/* ---- option lists ---- */

/* Calls item(text, len) for each comma-separated item; an empty item is an error. */
static int list_each(const char *list, char *err, size_t err_len,
                     int (*item)(void *ud, const char *s, size_t n, char *err, size_t err_len),
                     void *ud)
{
    if (!list || !*list) {
        snprintf(err, err_len, "empty list");
        return -1;
    }
    const char *p = list;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        if (n == 0) {
            snprintf(err, err_len, "empty item in '%s'", list);
            return -1;
        }
        if (item(ud, p, n, err, err_len) != 0)
            return -1;
        if (!c)
            return 0;
        p = c + 1;
    }
}

struct int_list {
    int *out, cap, n;
};

static int int_item(void *ud, const char *s, size_t n, char *err, size_t err_len)
{
    struct int_list *l = ud;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > INT_MAX / 10) {
            snprintf(err, err_len, "'%.*s' is not a positive integer", (int)n, s);
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v <= 0 || v > INT_MAX) {
        snprintf(err, err_len, "'%.*s' is not a positive integer", (int)n, s);
        return -1;
    }
    for (int i = 0; i < l->n; i++) {
        if (l->out[i] == (int)v) {
            snprintf(err, err_len, "%ld is given twice", v);
            return -1;
        }
    }
    if (l->n >= l->cap) {
        snprintf(err, err_len, "more than %d values", l->cap);
        return -1;
    }
    l->out[l->n++] = (int)v;
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int kv_lengths_parse(const char *list, int *out, int cap, int *n_out, char *err, size_t err_len)
{
    struct int_list l = {out, cap, 0};
    *n_out = 0;
    if (list_each(list, err, err_len, int_item, &l) != 0)
        return -1;
    qsort(out, (size_t)l.n, sizeof *out, cmp_int);
    *n_out = l.n;
    return 0;
}

struct dbl_list {
    double *out;
    int cap, n;
};

static int util_item(void *ud, const char *s, size_t n, char *err, size_t err_len)
{
    struct dbl_list *l = ud;
    char tmp[64];
    if (n >= sizeof tmp) {
        snprintf(err, err_len, "'%.*s' is not a fraction", (int)n, s);
        return -1;
    }
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(tmp, &end);
    if (errno || *end || !(v > 0.0 && v <= 1.0)) {
        snprintf(err, err_len, "'%s' is not a fraction in (0, 1]", tmp);
        return -1;
    }
    for (int i = 0; i < l->n; i++) {
        if (l->out[i] == v) {
            snprintf(err, err_len, "%g is given twice", v);
            return -1;
        }
    }
    if (l->n >= l->cap) {
        snprintf(err, err_len, "more than %d values", l->cap);
        return -1;
    }
    l->out[l->n++] = v;
    return 0;
}

int kv_utils_parse(const char *list, double *out, int cap, int *n_out, char *err, size_t err_len)
{
    struct dbl_list l = {out, cap, 0};
    *n_out = 0;
    if (list_each(list, err, err_len, util_item, &l) != 0)
        return -1;
    *n_out = l.n;
    return 0;
}

int kv_lengths_default(int lo, int ctx, int *out, int cap)
{
    int n = 0;
    long v = lo;
    while (v <= ctx && n < cap) {
        out[n++] = (int)v;
        v *= 2;
    }
    if (n > 0 && n < cap && out[n - 1] != ctx && ctx >= lo)
        out[n++] = ctx;
    return n;
}

/* ---- theory ---- */

int kv_dtype_bytes(const char *name)
{
    if (!name)
        return -1;
    static const struct {
        const char *name;
        int bytes;
    } tab[] = {{"f16", 2},      {"float16", 2}, {"half", 2},    {"bf16", 2},   {"bfloat16", 2},
               {"f32", 4},      {"float32", 4}, {"float", 4},   {"fp8", 1},    {"fp8_e4m3", 1},
               {"fp8_e5m2", 1}, {"f8", 1},      {"q8_0", 1},    {"int8", 1}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcasecmp(name, tab[i].name) == 0)
            return tab[i].bytes;
    return -1;
}

static const char *dtype_name(int bytes)
{
    return bytes == 4 ? "f32" : bytes == 2 ? "f16" : bytes == 1 ? "fp8" : "?";
}

static void theory_finish(struct kv_theory *t)
{
    t->bytes_per_token = 2.0 * t->n_layer * t->n_head_kv * t->head_dim * t->dtype_bytes;
    t->known = 1;
}

int kv_theory_from_gguf(const char *path, int dtype_bytes, struct kv_theory *out)
{
    memset(out, 0, sizeof *out);
    out->bytes_per_token = NAN;
    struct model_file_info info;
    char err[240];
    if (model_file_info(path, &info, err, sizeof err) != 0) {
        snprintf(out->reason, sizeof out->reason, "%s", err);
        return -1;
    }
    out->n_layer = info.cfg.n_layer;
    out->n_head_kv = info.cfg.n_head_kv;
    out->head_dim = info.cfg.head_dim;
    out->n_ctx_train = info.cfg.n_ctx_train;
    out->dtype_bytes = dtype_bytes > 0 ? dtype_bytes : 4;
    snprintf(out->dtype, sizeof out->dtype, "%s", dtype_name(out->dtype_bytes));
    snprintf(out->source, sizeof out->source, "GGUF %s", path);
    theory_finish(out);
    /* the engine's own figure, so that the two can never disagree */
    out->bytes_per_token = (double)model_kv_bytes_per_token(&info.cfg, out->dtype_bytes);
    return 0;
}

static int json_get_int(const struct json *root, const char *key, long long *v)
{
    return json_int(json_get(root, key), v);
}

int kv_theory_from_config_json(const char *path, const char *dtype, struct kv_theory *out)
{
    memset(out, 0, sizeof *out);
    out->bytes_per_token = NAN;
    size_t len;
    char *text = file_read_all(path, 4u << 20, &len);
    if (!text) {
        snprintf(out->reason, sizeof out->reason, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    char err[200];
    struct json *root = json_parse(text, len, err, sizeof err);
    free(text);
    if (!root) {
        snprintf(out->reason, sizeof out->reason, "%s: %s", path, err);
        return -1;
    }
    long long layers = 0, heads = 0, kv_heads = 0, head_dim = 0, hidden = 0, ctx = 0;
    json_get_int(root, "num_hidden_layers", &layers);
    json_get_int(root, "num_attention_heads", &heads);
    if (json_get_int(root, "num_key_value_heads", &kv_heads) != 0)
        kv_heads = heads;
    json_get_int(root, "hidden_size", &hidden);
    if (json_get_int(root, "head_dim", &head_dim) != 0 && heads > 0)
        head_dim = hidden / heads;
    json_get_int(root, "max_position_embeddings", &ctx);
    const char *torch = json_str(json_get(root, "torch_dtype"), NULL);
    int bytes = (!dtype || strcasecmp(dtype, "auto") == 0) ? (torch ? kv_dtype_bytes(torch) : 2)
                                                            : kv_dtype_bytes(dtype);
    json_free(root);
    if (layers <= 0 || kv_heads <= 0 || head_dim <= 0 || layers > 100000 || kv_heads > 100000 ||
        head_dim > 100000) {
        snprintf(out->reason, sizeof out->reason,
                 "%s lacks num_hidden_layers / num_key_value_heads / head_dim", path);
        return -1;
    }
    if (bytes <= 0) {
        snprintf(out->reason, sizeof out->reason, "unknown KV dtype '%s'",
                 dtype ? dtype : torch);
        return -1;
    }
    out->n_layer = (int)layers;
    out->n_head_kv = (int)kv_heads;
    out->head_dim = (int)head_dim;
    out->n_ctx_train = ctx > 0 && ctx < INT_MAX ? (int)ctx : 0;
    out->dtype_bytes = bytes;
    snprintf(out->dtype, sizeof out->dtype, "%s", dtype_name(bytes));
    snprintf(out->source, sizeof out->source, "config.json %s", path);
    theory_finish(out);
    return 0;
}

/* ---- result ---- */

void kv_result_init(struct kv_result *r)
{
    memset(r, 0, sizeof *r);
    r->theory.bytes_per_token = NAN;
    r->slope_vs_theory = NAN;
}

void kv_result_free(struct kv_result *r)
{
    if (!r)
        return;
    free(r->rows);
    r->rows = NULL;
    r->n_rows = 0;
}

struct kv_row *kv_result_add_row(struct kv_result *r)
{
    struct kv_row *rows = xrealloc(r->rows, (r->n_rows + 1) * sizeof *rows);
    r->rows = rows;
    struct kv_row *w = &rows[r->n_rows++];
    memset(w, 0, sizeof *w);
    w->estimated_max_model_len = -1;
    w->gpu_mem_used_mb = w->gpu_mem_total_used_mb = w->server_rss_mb = NAN;
    w->kv_capacity_tokens = -1;
    w->max_concurrency = w->start_s = NAN;
    w->capacity_source = "";
    w->delta_mb_from_prev = w->bytes_per_token_est = w->resid_mb = NAN;
    struct kv_verify *v = &w->verify;
    v->waiting_max_claimed = v->waiting_max_above = NAN;
    v->running_max_claimed = v->running_max_above = NAN;
    v->preemptions_claimed = v->preemptions_above = NAN;
    return w;
}

/* ---- fit and steps ---- */

int kv_fit_linear(const double *x, const double *y, size_t n, struct kv_fit *out, double *resid)
{
    memset(out, 0, sizeof *out);
    out->fixed_mb = out->slope_bytes_per_token = out->r2 = out->max_abs_resid_mb = NAN;
    out->n = (int)n;
    if (n < 2)
        return -1;
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxx = 0, sxy = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        sxx += (x[i] - mx) * (x[i] - mx);
        sxy += (x[i] - mx) * (y[i] - my);
        syy += (y[i] - my) * (y[i] - my);
    }
    if (!(sxx > 0))
        return -1;
    double b = sxy / sxx, a = my - b * mx, ss_res = 0, max_r = 0;
    for (size_t i = 0; i < n; i++) {
        double r = y[i] - (a + b * x[i]);
        ss_res += r * r;
        if (fabs(r) > max_r)
            max_r = fabs(r);
        if (resid)
            resid[i] = r;
    }
    out->ok = 1;
    out->fixed_mb = a;
    out->slope_bytes_per_token = b * 1048576.0; /* y in MiB, x in tokens */
    /* a flat or exact line explains everything there is to explain */
    out->r2 = syy > 1e-12 ? 1.0 - ss_res / syy : 1.0;
    out->max_abs_resid_mb = max_r;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int kv_steps_detect(const double *x, const double *y, size_t n, const double *resid, int *flags)
{
    int n_steps = 0;
    for (size_t i = 0; i < n; i++)
        flags[i] = 0;
    if (n < 4)
        return 0;
    double y_lo = y[0], y_hi = y[0];
    for (size_t i = 0; i < n; i++) {
        y_lo = y[i] < y_lo ? y[i] : y_lo;
        y_hi = y[i] > y_hi ? y[i] : y_hi;
    }
    /* a step is an interval whose slope departs from the median interval slope by more than
     * the noise floor (in MiB over the interval) where the residuals jump as well */
    double floor_mb = 0.05 * (y_hi - y_lo) > 1.0 ? 0.05 * (y_hi - y_lo) : 1.0;
    double sl[KV_MAX_ROWS], sorted[KV_MAX_ROWS];
    size_t m = 0;
    for (size_t i = 1; i < n && i < KV_MAX_ROWS; i++) {
        double dx = x[i] - x[i - 1];
        sl[i] = dx > 0 ? (y[i] - y[i - 1]) / dx : NAN;
        if (!isnan(sl[i]))
            sorted[m++] = sl[i];
    }
    if (m < 3)
        return 0;
    qsort(sorted, m, sizeof *sorted, cmp_double);
    double med = m % 2 ? sorted[m / 2] : (sorted[m / 2 - 1] + sorted[m / 2]) / 2;
    for (size_t i = 1; i < n && i < KV_MAX_ROWS; i++) {
        if (isnan(sl[i]))
            continue;
        double dev_mb = fabs(sl[i] - med) * (x[i] - x[i - 1]);
        if (dev_mb > floor_mb && fabs(resid[i] - resid[i - 1]) > floor_mb) {
            flags[i] = 1;
            n_steps++;
        }
    }
    return n_steps;
}

/* ---- analysis ---- */

#define KV_GPU_USED_MIN_MB 1.0 /* below: the server put nothing on the GPU */

static int row_measured(const struct kv_row *w)
{
    return w->status == KV_ROW_OK || w->status == KV_ROW_RESUMED;
}

static double row_mem_mb(const struct kv_row *w, enum kv_mem_source m)
{
    return m == KV_MEM_GPU ? w->gpu_mem_used_mb : m == KV_MEM_RSS ? w->server_rss_mb : NAN;
}

/* GPU when every measured row of the first utilisation has it and the server put something on
 * the GPU (a CPU server on a GPU host reads 0 MiB there: its memory is its RSS), else RSS, else
 * none. */
static enum kv_mem_source pick_mem_source(const struct kv_result *r, double util)
{
    int n = 0, gpu = 0, gpu_used = 0, rss = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        const struct kv_row *w = &r->rows[i];
        if (!row_measured(w) || w->gpu_util != util)
            continue;
        n++;
        gpu += !isnan(w->gpu_mem_used_mb);
        gpu_used += w->gpu_mem_used_mb > KV_GPU_USED_MIN_MB;
        rss += !isnan(w->server_rss_mb);
    }
    if (n == 0)
        return KV_MEM_NONE;
    if (gpu == n && (gpu_used > 0 || rss < n))
        return KV_MEM_GPU;
    return rss == n ? KV_MEM_RSS : gpu == n ? KV_MEM_GPU : KV_MEM_NONE;
}

/* Delta from the previous measured row of the same utilisation (the first is the baseline). */
static void analyse_deltas(struct kv_result *r)
{
    for (size_t i = 0; i < r->n_rows; i++) {
        struct kv_row *w = &r->rows[i];
        w->delta_mb_from_prev = w->bytes_per_token_est = w->resid_mb = NAN;
        w->step = 0;
        double m = row_mem_mb(w, r->mem_source);
        if (!row_measured(w) || isnan(m))
            continue;
        for (size_t k = i; k-- > 0;) {
            const struct kv_row *p = &r->rows[k];
            double pm = row_mem_mb(p, r->mem_source);
            if (p->gpu_util != w->gpu_util || !row_measured(p) || isnan(pm))
                continue;
            w->delta_mb_from_prev = m - pm;
            if (w->max_model_len != p->max_model_len)
                w->bytes_per_token_est =
                    (m - pm) * 1048576.0 / (double)(w->max_model_len - p->max_model_len);
            break;
        }
    }
}

static void analyse_deltas_fit(struct kv_result *r, double util)
{
    double x[KV_MAX_ROWS] = {0}, y[KV_MAX_ROWS] = {0}, res[KV_MAX_ROWS];
    size_t idx[KV_MAX_ROWS], n = 0;
    for (size_t i = 0; i < r->n_rows && n < KV_MAX_ROWS; i++) {
        struct kv_row *w = &r->rows[i];
        double m = row_mem_mb(w, r->mem_source);
        if (w->gpu_util != util || !row_measured(w) || isnan(m))
            continue;
        x[n] = w->max_model_len;
        y[n] = m;
        idx[n++] = i;
    }
    if (kv_fit_linear(x, y, n, &r->fit, res) != 0)
        return;
    int flags[KV_MAX_ROWS];
    r->n_steps = kv_steps_detect(x, y, n, res, flags);
    for (size_t k = 0; k < n; k++) {
        r->rows[idx[k]].resid_mb = res[k];
        r->rows[idx[k]].step = flags[k];
    }
    if (r->theory.known && r->theory.bytes_per_token > 0)
        r->slope_vs_theory = r->fit.slope_bytes_per_token / r->theory.bytes_per_token;
}

/* Capacity evidence over the first utilisation: constant, or tracking the length. */
static void capacity_shape(const struct kv_result *r, double util, int *n_cap, int *constant,
                           int *tracks)
{
    int64_t lo = -1, hi = -1;
    *n_cap = 0;
    *tracks = 1;
    for (size_t i = 0; i < r->n_rows; i++) {
        const struct kv_row *w = &r->rows[i];
        if (!row_measured(w) || w->gpu_util != util || w->kv_capacity_tokens < 0)
            continue;
        lo = lo < 0 || w->kv_capacity_tokens < lo ? w->kv_capacity_tokens : lo;
        hi = w->kv_capacity_tokens > hi ? w->kv_capacity_tokens : hi;
        double q = (double)w->kv_capacity_tokens / w->max_model_len;
        if (q < 0.9 || q > 1.5) /* llama.cpp pads n_ctx to 256 cells */
            *tracks = 0;
        (*n_cap)++;
    }
    *constant = *n_cap >= 2 && (double)hi <= 1.02 * (double)lo;
}

static void analyse_regime(struct kv_result *r, double util)
{
    int n_cap, constant, tracks;
    capacity_shape(r, util, &n_cap, &constant, &tracks);
    double q = r->slope_vs_theory;
    r->regime = KV_REGIME_UNKNOWN;
    if (r->fit.ok && !isnan(q) && q >= 0.5) {
        r->regime = KV_REGIME_PER_CONTEXT;
        snprintf(r->regime_why, sizeof r->regime_why,
                 "memory grows with max-model-len at %.0f%% of the theoretical KV slope", 100 * q);
    } else if (r->fit.ok && !isnan(q) && fabs(q) < 0.25 && (constant || n_cap < 2)) {
        r->regime = KV_REGIME_PRE_ALLOCATING;
        snprintf(r->regime_why, sizeof r->regime_why,
                 "memory grows at only %.1f%% of the theoretical KV slope%s", 100 * q,
                 constant ? " and the KV capacity stays the same at every length" : "");
    } else if (constant) {
        r->regime = KV_REGIME_PRE_ALLOCATING;
        snprintf(r->regime_why, sizeof r->regime_why,
                 "the KV capacity stays the same at every length (%d launches)", n_cap);
    } else if (n_cap >= 2 && tracks) {
        r->regime = KV_REGIME_PER_CONTEXT;
        snprintf(r->regime_why, sizeof r->regime_why,
                 "the KV capacity follows max-model-len at every length (%d launches)", n_cap);
    } else {
        snprintf(r->regime_why, sizeof r->regime_why,
                 "too few launches with memory or capacity readings to tell");
    }
}

/* Does row w hold n concurrent requests of len tokens? */
static int row_holds(const struct kv_row *w, int n, int len)
{
    return row_measured(w) && w->max_model_len >= len && w->kv_capacity_tokens >= 0 &&
           (double)w->kv_capacity_tokens >= (double)n * len;
}

static void analyse_envelope(struct kv_result *r)
{
    int max_len = 0;
    for (size_t i = 0; i < r->n_rows; i++)
        if (row_measured(&r->rows[i]) && r->rows[i].max_model_len > max_len)
            max_len = r->rows[i].max_model_len;
    int base[KV_ENV_L] = {2048, 4096, 8192};
    if (max_len > 0 && max_len < 8192) /* the model's range: the top three powers of two */
        for (int j = 0; j < KV_ENV_L; j++)
            base[j] = max_len >> (KV_ENV_L - 1 - j) > 0 ? max_len >> (KV_ENV_L - 1 - j) : 1;
    for (int j = 0; j < KV_ENV_L; j++)
        r->env_len[j] = base[j];
    for (int a = 0; a < KV_ENV_N; a++) {
        for (int j = 0; j < KV_ENV_L; j++) {
            struct kv_envelope_cell *c = &r->env[a][j];
            c->n_conc = kv_env_conc[a];
            c->req_len = r->env_len[j];
            c->predicted_mb = NAN;
            for (size_t i = 0; i < r->n_rows; i++) {
                const struct kv_row *w = &r->rows[i];
                if (!row_holds(w, c->n_conc, c->req_len))
                    continue;
                if (!c->fits || w->max_model_len < c->max_model_len ||
                    (w->max_model_len == c->max_model_len && w->gpu_util < c->gpu_util)) {
                    c->fits = 1;
                    c->max_model_len = w->max_model_len;
                    c->gpu_util = w->gpu_util;
                }
            }
            if (r->regime == KV_REGIME_PER_CONTEXT && r->fit.ok)
                c->predicted_mb = r->fit.fixed_mb + r->fit.slope_bytes_per_token *
                                                        (double)c->n_conc * c->req_len /
                                                        1048576.0;
        }
    }
}

static void pick_set(struct kv_pick *p, const struct kv_row *w)
{
    p->found = 1;
    p->max_model_len = w->max_model_len;
    p->gpu_util = w->gpu_util;
    p->max_concurrency = w->max_concurrency;
    p->kv_capacity_tokens = w->kv_capacity_tokens;
}

/* Safe length: the largest measured max-model-len whose max concurrency >= wanted. Latency pick:
 * that row (longest requests at the wanted concurrency, none queued). Throughput pick: the row
 * with the most concurrent max-length requests (ties: the longer length). */
static void analyse_picks(struct kv_result *r)
{
    memset(&r->pick_latency, 0, sizeof r->pick_latency);
    memset(&r->pick_throughput, 0, sizeof r->pick_throughput);
    r->safe_max_model_len = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        const struct kv_row *w = &r->rows[i];
        if (!row_measured(w) || isnan(w->max_concurrency))
            continue;
        if (w->max_concurrency >= r->concurrency_wanted &&
            w->max_model_len > r->safe_max_model_len) {
            r->safe_max_model_len = w->max_model_len;
            r->safe_gpu_util = w->gpu_util;
            pick_set(&r->pick_latency, w);
        }
        struct kv_pick *t = &r->pick_throughput;
        if (!t->found || w->max_concurrency > t->max_concurrency ||
            (w->max_concurrency == t->max_concurrency && w->max_model_len > t->max_model_len))
            pick_set(t, w);
    }
}

void kv_analyse(struct kv_result *r)
{
    double util = 0;
    for (size_t i = 0; i < r->n_rows; i++) {
        if (row_measured(&r->rows[i])) {
            util = r->rows[i].gpu_util;
            break;
        }
    }
    r->slope_vs_theory = NAN;
    r->mem_source = pick_mem_source(r, util);
    memset(&r->fit, 0, sizeof r->fit);
    analyse_deltas(r);
    analyse_deltas_fit(r, util);
    analyse_regime(r, util);
    analyse_envelope(r);
    analyse_picks(r);
}
