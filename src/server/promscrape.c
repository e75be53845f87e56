/* promscrape: Prometheus text format 0.0.4 parser, /metrics fetch, histogram helpers and the
 * server-agnostic metrics view (see promscrape.h). The parser works in place on its own copy of
 * the text (names and unescaped label values become NUL-terminated views into it). It does not
 * validate HELP text or check that a family's samples are contiguous. */
#include "server/promscrape.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/client.h"
#include "util/buf.h"

const char *prom_status_str(enum prom_status st)
{
    switch (st) {
    case PROM_OK:
        return "ok";
    case PROM_ERR_SYNTAX:
        return "syntax error";
    case PROM_ERR_CAP:
        return "too large";
    case PROM_ERR_CONNECT:
        return "connect error";
    case PROM_ERR_HTTP:
        return "http error";
    }
    return "unknown";
}

const char *server_metrics_source_str(enum server_metrics_source s)
{
    switch (s) {
    case SERVER_METRICS_SOURCE_VLLM:
        return "vllm";
    case SERVER_METRICS_SOURCE_LLAMACPP:
        return "llamacpp";
    case SERVER_METRICS_SOURCE_SGLANG:
        return "sglang";
    case SERVER_METRICS_SOURCE_NONE:
        break;
    }
    return "none";
}

/* ---- parser ---- */

struct prom_family {
    const char *name;
    enum prom_type type;
};

struct prom_parser {
    struct prom_set *set;
    size_t cap_samples, cap_labels;
    size_t *label_first; /* [cap_samples] index of each sample's first label in the pool */
    struct prom_family *fam;
    size_t n_fam, cap_fam;
    size_t i_cur_fam; /* last family declared (most samples follow their TYPE line) */
    int have_cur_fam;
    unsigned line_no;
    char *err;
    size_t err_len;
};

static int is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static char *skip_ws(char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static enum prom_status perr(struct prom_parser *ps, const char *msg)
{
    snprintf(ps->err, ps->err_len, "line %u: %s", ps->line_no, msg);
    return PROM_ERR_SYNTAX;
}

static enum prom_type type_parse(const char *s)
{
    if (!strcmp(s, "counter"))
        return PROM_TYPE_COUNTER;
    if (!strcmp(s, "gauge"))
        return PROM_TYPE_GAUGE;
    if (!strcmp(s, "histogram"))
        return PROM_TYPE_HISTOGRAM;
    if (!strcmp(s, "summary"))
        return PROM_TYPE_SUMMARY;
    return PROM_TYPE_UNTYPED;
}

static int family_matches(const char *fam, const char *name)
{
    size_t nf = strlen(fam);
    if (strncmp(fam, name, nf) != 0)
        return 0;
    const char *suf = name + nf;
    return !*suf || !strcmp(suf, "_bucket") || !strcmp(suf, "_sum") || !strcmp(suf, "_count") ||
           !strcmp(suf, "_total") || !strcmp(suf, "_created");
}

static enum prom_type type_of(struct prom_parser *ps, const char *name)
{
    if (ps->have_cur_fam && family_matches(ps->fam[ps->i_cur_fam].name, name))
        return ps->fam[ps->i_cur_fam].type;
    for (size_t i = 0; i < ps->n_fam; i++)
        if (family_matches(ps->fam[i].name, name))
            return ps->fam[i].type;
    return PROM_TYPE_UNTYPED;
}

/* "# TYPE name type" / "# HELP ..." / other comments. line is NUL-terminated. */
static enum prom_status parse_comment(struct prom_parser *ps, char *p)
{
    p = skip_ws(p + 1);
    if (strncmp(p, "TYPE", 4) != 0 || (p[4] != ' ' && p[4] != '\t'))
        return PROM_OK; /* HELP or a plain comment */
    p = skip_ws(p + 4);
    char *name = p;
    if (!is_name_start(*p))
        return perr(ps, "bad metric name in TYPE");
    while (is_name_char(*p))
        p++;
    if (*p != ' ' && *p != '\t')
        return perr(ps, "TYPE without a type");
    *p++ = 0;
    p = skip_ws(p);
    char *t = p;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    *p = 0;
    if (ps->n_fam == ps->cap_fam) {
        size_t n = ps->cap_fam ? ps->cap_fam * 2 : 64;
        struct prom_family *f = xmalloc(n * sizeof *f);
        if (ps->n_fam)
            memcpy(f, ps->fam, ps->n_fam * sizeof *f);
        free(ps->fam);
        ps->fam = f;
        ps->cap_fam = n;
    }
    ps->fam[ps->n_fam].name = name;
    ps->fam[ps->n_fam].type = type_parse(t);
    ps->i_cur_fam = ps->n_fam++;
    ps->have_cur_fam = 1;
    return PROM_OK;
}

static void grow_labels(struct prom_parser *ps)
{
    struct prom_set *s = ps->set;
    size_t n = ps->cap_labels ? ps->cap_labels * 2 : 256;
    struct prom_label *l = xmalloc(n * sizeof *l);
    if (s->n_labels_)
        memcpy(l, s->labels_, s->n_labels_ * sizeof *l);
    free(s->labels_);
    s->labels_ = l;
    ps->cap_labels = n;
}

static void grow_samples(struct prom_parser *ps)
{
    struct prom_set *s = ps->set;
    size_t n = ps->cap_samples ? ps->cap_samples * 2 : 256;
    if (n > PROM_MAX_SAMPLES)
        n = PROM_MAX_SAMPLES;
    struct prom_sample *sm = xmalloc(n * sizeof *sm);
    size_t *lf = xmalloc(n * sizeof *lf);
    if (s->n_samples) {
        memcpy(sm, s->samples, s->n_samples * sizeof *sm);
        memcpy(lf, ps->label_first, s->n_samples * sizeof *lf);
    }
    free(s->samples);
    free(ps->label_first);
    s->samples = sm;
    ps->label_first = lf;
    ps->cap_samples = n;
}

/* Parses a float token (Go's ParseFloat spellings: 1.5e3, +Inf, -Inf, NaN, Inf). */
static int parse_value(const char *tok, double *out)
{
    if (!strcmp(tok, "+Inf") || !strcmp(tok, "Inf") || !strcmp(tok, "+inf") || !strcmp(tok, "inf")) {
        *out = INFINITY;
        return 0;
    }
    if (!strcmp(tok, "-Inf") || !strcmp(tok, "-inf")) {
        *out = -INFINITY;
        return 0;
    }
    if (!strcmp(tok, "NaN") || !strcmp(tok, "nan")) {
        *out = NAN;
        return 0;
    }
    if (!*tok)
        return -1;
    for (const char *c = tok; *c; c++)
        if (!((*c >= '0' && *c <= '9') || *c == '.' || *c == 'e' || *c == 'E' || *c == '+' ||
              *c == '-'))
            return -1;
    char *end;
    errno = 0;
    double v = strtod(tok, &end);
    if (*end || end == tok)
        return -1;
    *out = v;
    return 0;
}

static enum prom_status parse_sample(struct prom_parser *ps, char *p)
{
    struct prom_set *s = ps->set;
    char *name = p;
    if (!is_name_start(*p))
        return perr(ps, "bad metric name");
    while (is_name_char(*p))
        p++;
    char *name_end = p;
    p = skip_ws(p);
    size_t first_label = s->n_labels_;
    int n_labels = 0;
    if (*p == '{') {
        *name_end = 0;
        p = skip_ws(p + 1);
        while (*p != '}') {
            char *lname = p;
            if (!is_name_start(*p) || *p == ':')
                return perr(ps, "bad label name");
            while (is_name_char(*p) && *p != ':')
                p++;
            char *lname_end = p;
            p = skip_ws(p);
            if (*p != '=')
                return perr(ps, "expected '=' after label name");
            *lname_end = 0;
            p = skip_ws(p + 1);
            if (*p != '"')
                return perr(ps, "expected '\"' to open a label value");
            p++;
            char *val = p, *w = p;
            for (;;) {
                if (!*p)
                    return perr(ps, "unterminated label value");
                if (*p == '"')
                    break;
                if (*p == '\\') {
                    p++;
                    if (*p == 'n')
                        *w++ = '\n';
                    else if (*p == '\\' || *p == '"')
                        *w++ = *p;
                    else
                        return perr(ps, "bad escape in label value");
                    p++;
                } else {
                    *w++ = *p++;
                }
            }
            p++; /* past the closing quote; w <= p - 1 so the NUL never overwrites unread text */
            *w = 0;
            if (s->n_labels_ == ps->cap_labels)
                grow_labels(ps);
            s->labels_[s->n_labels_].name = lname;
            s->labels_[s->n_labels_].value = val;
            s->n_labels_++;
            n_labels++;
            p = skip_ws(p);
            if (*p == ',')
                p = skip_ws(p + 1);
            else if (*p != '}')
                return perr(ps, "expected ',' or '}' after a label");
        }
        p = skip_ws(p + 1);
    } else {
        if (*p == 0)
            return perr(ps, "sample without a value");
        if (p == name_end)
            return perr(ps, "bad character after metric name");
        *name_end = 0;
    }
    /* value */
    char *tok = p;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    char *tok_end = p;
    p = skip_ws(p);
    *tok_end = 0;
    double v;
    if (parse_value(tok, &v) != 0)
        return perr(ps, "bad sample value");
    int64_t ts = 0;
    int has_ts = 0;
    if (*p) {
        char *end;
        errno = 0;
        long long t = strtoll(p, &end, 10);
        if (end == p || errno)
            return perr(ps, "bad timestamp");
        if (*skip_ws(end))
            return perr(ps, "trailing text after timestamp");
        ts = t;
        has_ts = 1;
    }
    if (s->n_samples == PROM_MAX_SAMPLES) {
        snprintf(ps->err, ps->err_len, "line %u: more than %d samples", ps->line_no,
                 PROM_MAX_SAMPLES);
        return PROM_ERR_CAP;
    }
    if (s->n_samples == ps->cap_samples)
        grow_samples(ps);
    struct prom_sample *sm = &s->samples[s->n_samples];
    memset(sm, 0, sizeof *sm);
    sm->name = name;
    sm->n_labels = n_labels;
    sm->value = v;
    sm->timestamp_ms = ts;
    sm->has_timestamp = has_ts;
    sm->type = type_of(ps, name);
    ps->label_first[s->n_samples] = first_label;
    s->n_samples++;
    return PROM_OK;
}

void prom_set_free(struct prom_set *s)
{
    if (!s)
        return;
    free(s->text_);
    free(s->samples);
    free(s->labels_);
    memset(s, 0, sizeof *s);
}

enum prom_status prom_parse(const char *text, size_t len, struct prom_set *out, char *err,
                            size_t err_len)
{
    memset(out, 0, sizeof *out);
    struct prom_parser ps;
    memset(&ps, 0, sizeof ps);
    ps.set = out;
    ps.err = err;
    ps.err_len = err_len;
    if (err_len)
        err[0] = 0;
    out->text_ = xmalloc(len + 1);
    memcpy(out->text_, text, len);
    out->text_[len] = 0;
    enum prom_status st = PROM_OK;
    char *p = out->text_, *end = out->text_ + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *line_end = nl ? nl : end;
        ps.line_no++;
        if (memchr(p, 0, (size_t)(line_end - p))) {
            st = perr(&ps, "NUL byte in line");
            goto fail;
        }
        *line_end = 0;
        if (line_end > p && line_end[-1] == '\r')
            line_end[-1] = 0;
        char *q = skip_ws(p);
        if (*q == '#')
            st = parse_comment(&ps, q);
        else if (*q)
            st = parse_sample(&ps, q);
        if (st != PROM_OK)
            goto fail;
        p = line_end + 1;
    }
    for (size_t i = 0; i < out->n_samples; i++)
        out->samples[i].labels = out->labels_ ? out->labels_ + ps.label_first[i] : NULL;
    free(ps.label_first);
    free(ps.fam);
    return PROM_OK;
fail:
    free(ps.label_first);
    free(ps.fam);
    prom_set_free(out);
    return st;
}

enum prom_status prom_fetch(const char *url, const char *api_key, long timeout_ms,
                            struct prom_set *out, int *http_status_out, char *err, size_t err_len)
{
    struct buf b;
    int status = 0;
    enum prom_status st;
    memset(out, 0, sizeof *out);
    buf_init(&b, 64 * 1024, (size_t)PROM_MAX_BODY_BYTES + 256 * 1024);
    if (http_get(url, api_key, timeout_ms, &b, &status, err, err_len) != 0) {
        st = PROM_ERR_CONNECT;
        goto done;
    }
    if (status != 200) {
        char msg[200];
        size_t n = b.len < sizeof msg - 1 ? b.len : sizeof msg - 1;
        memcpy(msg, b.data ? b.data : "", n);
        msg[n] = 0;
        for (size_t i = 0; i < n; i++)
            if (msg[i] == '\n' || msg[i] == '\r')
                msg[i] = ' ';
        snprintf(err, err_len, "GET %s: HTTP %d: %s", url, status, msg);
        st = PROM_ERR_HTTP;
        goto done;
    }
    if (b.len > PROM_MAX_BODY_BYTES) {
        snprintf(err, err_len, "GET %s: body larger than %u bytes", url, PROM_MAX_BODY_BYTES);
        st = PROM_ERR_CAP;
        goto done;
    }
    st = prom_parse(b.data ? b.data : "", b.len, out, err, err_len);
done:
    if (http_status_out)
        *http_status_out = status;
    buf_free(&b);
    return st;
}

/* ---- queries ---- */

const char *prom_label_get(const struct prom_sample *s, const char *name)
{
    for (int i = 0; i < s->n_labels; i++)
        if (!strcmp(s->labels[i].name, name))
            return s->labels[i].value;
    return NULL;
}

int prom_sample_matches(const struct prom_sample *s, const char *const *matchers)
{
    if (!matchers)
        return 1;
    for (size_t i = 0; matchers[i]; i++) {
        const char *eq = strchr(matchers[i], '=');
        if (!eq)
            return 0;
        size_t nlen = (size_t)(eq - matchers[i]);
        int found = 0;
        for (int k = 0; k < s->n_labels; k++)
            if (strlen(s->labels[k].name) == nlen &&
                !memcmp(s->labels[k].name, matchers[i], nlen) &&
                !strcmp(s->labels[k].value, eq + 1)) {
                found = 1;
                break;
            }
        if (!found)
            return 0;
    }
    return 1;
}

int prom_sum(const struct prom_set *s, const char *name, const char *const *matchers,
             double *sum_out)
{
    int n = 0;
    double sum = 0;
    for (size_t i = 0; i < s->n_samples; i++) {
        const struct prom_sample *sm = &s->samples[i];
        if (!strcmp(sm->name, name) && prom_sample_matches(sm, matchers)) {
            sum += sm->value;
            n++;
        }
    }
    *sum_out = sum;
    return n;
}

void prom_histogram_free(struct prom_histogram *h)
{
    if (!h)
        return;
    free(h->le);
    free(h->count_le);
    memset(h, 0, sizeof *h);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int prom_histogram_get(const struct prom_set *s, const char *base, const char *const *matchers,
                       struct prom_histogram *h)
{
    memset(h, 0, sizeof *h);
    size_t blen = strlen(base);
    char *name_bucket = xmalloc(blen + 16), *name_sum = xmalloc(blen + 16),
         *name_count = xmalloc(blen + 16);
    snprintf(name_bucket, blen + 16, "%s_bucket", base);
    snprintf(name_sum, blen + 16, "%s_sum", base);
    snprintf(name_count, blen + 16, "%s_count", base);

    /* distinct bounds */
    size_t n_cand = 0;
    for (size_t i = 0; i < s->n_samples; i++)
        if (!strcmp(s->samples[i].name, name_bucket))
            n_cand++;
    double *les = xmalloc((n_cand ? n_cand : 1) * sizeof *les);
    size_t n_les = 0;
    for (size_t i = 0; i < s->n_samples; i++) {
        const struct prom_sample *sm = &s->samples[i];
        if (strcmp(sm->name, name_bucket) || !prom_sample_matches(sm, matchers))
            continue;
        const char *le = prom_label_get(sm, "le");
        double v;
        if (!le || parse_value(le, &v) != 0 || isnan(v))
            continue;
        les[n_les++] = v;
    }
    qsort(les, n_les, sizeof *les, cmp_double);
    size_t n_uniq = 0;
    for (size_t i = 0; i < n_les; i++)
        if (n_uniq == 0 || les[i] != les[n_uniq - 1])
            les[n_uniq++] = les[i];
    int rc = -1;
    if (n_uniq == 0)
        goto out;
    h->le = xmalloc(n_uniq * sizeof *h->le);
    h->count_le = xcalloc(n_uniq, sizeof *h->count_le);
    memcpy(h->le, les, n_uniq * sizeof *les);
    h->n_buckets = (int)n_uniq;
    for (size_t i = 0; i < s->n_samples; i++) {
        const struct prom_sample *sm = &s->samples[i];
        if (!prom_sample_matches(sm, matchers))
            continue;
        if (!strcmp(sm->name, name_bucket)) {
            const char *le = prom_label_get(sm, "le");
            double v;
            if (!le || parse_value(le, &v) != 0 || isnan(v))
                continue;
            double *hit = bsearch(&v, h->le, n_uniq, sizeof *h->le, cmp_double);
            if (hit)
                h->count_le[hit - h->le] += sm->value;
        } else if (!strcmp(sm->name, name_sum)) {
            h->sum += sm->value;
        } else if (!strcmp(sm->name, name_count)) {
            h->count += sm->value;
        }
    }
    rc = 0;
out:
    free(les);
    free(name_bucket);
    free(name_sum);
    free(name_count);
    return rc;
}

int prom_histogram_sub(const struct prom_histogram *a, const struct prom_histogram *b,
                       struct prom_histogram *out)
{
    memset(out, 0, sizeof *out);
    if (a->n_buckets != b->n_buckets || a->n_buckets == 0)
        return -1;
    for (int i = 0; i < a->n_buckets; i++)
        if (a->le[i] != b->le[i])
            return -1;
    out->n_buckets = a->n_buckets;
    out->le = xmalloc((size_t)a->n_buckets * sizeof *out->le);
    out->count_le = xmalloc((size_t)a->n_buckets * sizeof *out->count_le);
    for (int i = 0; i < a->n_buckets; i++) {
        out->le[i] = a->le[i];
        out->count_le[i] = a->count_le[i] - b->count_le[i];
    }
    out->sum = a->sum - b->sum;
    out->count = a->count - b->count;
    return 0;
}

double prom_histogram_quantile(const struct prom_histogram *h, double q)
{
    int n = h->n_buckets;
    if (n == 0 || isnan(q) || q < 0 || q > 1)
        return NAN;
    double total = h->count_le[n - 1];
    if (!(total > 0))
        return NAN;
    double rank = q * total;
    int b = 0;
    while (b < n - 1 && h->count_le[b] < rank)
        b++;
    if (isinf(h->le[b]) && h->le[b] > 0) {
        /* in the +Inf bucket: the highest finite bound (Prometheus' rule) */
        return b > 0 ? h->le[b - 1] : NAN;
    }
    double start = 0, below = 0;
    if (b == 0) {
        if (h->le[0] <= 0)
            return h->le[0];
    } else {
        start = h->le[b - 1];
        below = h->count_le[b - 1];
    }
    double in_bucket = h->count_le[b] - below;
    if (!(in_bucket > 0))
        return h->le[b];
    return start + (h->le[b] - start) * ((rank - below) / in_bucket);
}

double prom_histogram_mean(const struct prom_histogram *h)
{
    return h->count > 0 ? h->sum / h->count : NAN;
}

/* ---- server view ---- */

/* Sum of name (or name without "_total" for counters registered without the suffix). */
static int get_sum(const struct prom_set *s, const char *name, double *v)
{
    if (prom_sum(s, name, NULL, v) > 0)
        return 1;
    size_t n = strlen(name);
    if (n > 6 && !strcmp(name + n - 6, "_total")) {
        char tmp[128];
        if (n - 6 < sizeof tmp) {
            memcpy(tmp, name, n - 6);
            tmp[n - 6] = 0;
            if (prom_sum(s, tmp, NULL, v) > 0)
                return 1;
        }
    }
    return 0;
}

/* Mean over series (for ratios such as KV usage, where a sum over engines means nothing). */
static int get_mean(const struct prom_set *s, const char *name, double *v)
{
    double sum;
    int n = prom_sum(s, name, NULL, &sum);
    if (n > 0)
        *v = sum / n;
    return n > 0;
}

static int has_prefix(const struct prom_set *s, const char *prefix)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < s->n_samples; i++)
        if (!strncmp(s->samples[i].name, prefix, n))
            return 1;
    return 0;
}

void server_metrics_from_prom(const struct prom_set *s, struct server_metrics *m)
{
    memset(m, 0, sizeof *m);
    if (has_prefix(s, "vllm:")) {
        m->source = SERVER_METRICS_SOURCE_VLLM;
        m->has_running = get_sum(s, "vllm:num_requests_running", &m->running);
        m->has_waiting = get_sum(s, "vllm:num_requests_waiting", &m->waiting);
        m->has_kv_usage = get_mean(s, "vllm:kv_cache_usage_perc", &m->kv_usage) ||
                          get_mean(s, "vllm:gpu_cache_usage_perc", &m->kv_usage);
        m->has_prompt_tokens = get_sum(s, "vllm:prompt_tokens_total", &m->prompt_tokens);
        m->has_generation_tokens =
            get_sum(s, "vllm:generation_tokens_total", &m->generation_tokens);
        m->has_prefix_queries = get_sum(s, "vllm:prefix_cache_queries_total", &m->prefix_queries) ||
                                get_sum(s, "vllm:gpu_prefix_cache_queries_total", &m->prefix_queries);
        m->has_prefix_hits = get_sum(s, "vllm:prefix_cache_hits_total", &m->prefix_hits) ||
                             get_sum(s, "vllm:gpu_prefix_cache_hits_total", &m->prefix_hits);
        m->has_cached_tokens = get_sum(s, "vllm:prompt_tokens_cached_total", &m->cached_tokens);
        if (!m->has_cached_tokens && m->has_prefix_hits) {
            m->cached_tokens = m->prefix_hits;
            m->has_cached_tokens = 1;
        }
        m->has_preemptions = get_sum(s, "vllm:num_preemptions_total", &m->preemptions);
        m->has_requests_success =
            get_sum(s, "vllm:request_success_total", &m->requests_success);
    } else if (has_prefix(s, "llamacpp:")) {
        m->source = SERVER_METRICS_SOURCE_LLAMACPP;
        m->has_running = get_sum(s, "llamacpp:requests_processing", &m->running);
        m->has_waiting = get_sum(s, "llamacpp:requests_deferred", &m->waiting);
        m->has_kv_usage = get_mean(s, "llamacpp:kv_cache_usage_ratio", &m->kv_usage);
        m->has_prompt_tokens = get_sum(s, "llamacpp:prompt_tokens_total", &m->prompt_tokens);
        m->has_generation_tokens =
            get_sum(s, "llamacpp:tokens_predicted_total", &m->generation_tokens);
        m->has_cached_tokens =
            get_sum(s, "llamacpp:prompt_tokens_cached_total", &m->cached_tokens);
    } else if (has_prefix(s, "sglang:")) {
        m->source = SERVER_METRICS_SOURCE_SGLANG;
        m->has_running = get_sum(s, "sglang:num_running_reqs", &m->running);
        m->has_waiting = get_sum(s, "sglang:num_queue_reqs", &m->waiting);
        m->has_kv_usage = get_mean(s, "sglang:token_usage", &m->kv_usage);
        m->has_prompt_tokens = get_sum(s, "sglang:prompt_tokens_total", &m->prompt_tokens);
        m->has_generation_tokens =
            get_sum(s, "sglang:generation_tokens_total", &m->generation_tokens);
        m->has_cached_tokens = get_sum(s, "sglang:cached_tokens_total", &m->cached_tokens);
        m->has_prefix_hit_rate = get_mean(s, "sglang:cache_hit_rate", &m->prefix_hit_rate);
    }
}

void server_metrics_delta(const struct server_metrics *before, const struct server_metrics *after,
                          struct server_metrics *out)
{
    struct server_metrics d = *after; /* gauges: after's */
#define SM_COUNTER(f)                                                                              \
    do {                                                                                           \
        d.has_##f = before->has_##f && after->has_##f;                                             \
        d.f = d.has_##f ? after->f - before->f : 0;                                                \
    } while (0)
    SM_COUNTER(prompt_tokens);
    SM_COUNTER(generation_tokens);
    SM_COUNTER(prefix_queries);
    SM_COUNTER(prefix_hits);
    SM_COUNTER(cached_tokens);
    SM_COUNTER(preemptions);
    SM_COUNTER(requests_success);
#undef SM_COUNTER
    *out = d;
}
