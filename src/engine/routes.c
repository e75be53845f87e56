/* routes: dispatch of a parsed request (auth, route table, method check, readiness) and the route
 * handlers: completions and chat (submitted to the engine; stream.c answers), /v1/models,
 * /tokenize, /detokenize, /metrics, /health, /version, /reset_prefix_cache. Request bodies are
 * parsed by openai_request.c; this file only turns results into responses. Loop thread only. */
#include "engine/server_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

/* The limits a request body is checked against, from the server's config and model. */
static void route_limits(const struct server *s, struct openai_limits *lim)
{
    memset(lim, 0, sizeof *lim);
    lim->served_model_name = s->served_model_name;
    lim->tok = &s->model->tok;
    lim->chat_fmt = s->chat_fmt;
    lim->max_model_len = s->info.max_model_len;
    lim->max_chat_prompt_bytes = s->cfg.max_body_bytes * 2 + 4096;
    if (s->cfg.has_seed) {
        uint64_t st = s->cfg.seed + s->n_requests;
        lim->has_default_seed = 1;
        lim->default_seed = rng_next(&st);
    }
}

static void conn_send_openai_error(struct conn *c, const struct openai_error *e)
{
    conn_send_error(c, openai_status_code(e->status), e->param, "%s", e->msg);
}

static struct gen *gen_new(struct server *s, enum openai_kind kind, const struct openai_request *p)
{
    struct gen *g = xcalloc(1, sizeof *g);
    g->srv = s;
    g->kind = kind;
    g->stream = p->stream;
    g->include_usage = p->include_usage;
    g->max_tokens = p->sp.max_tokens;
    g->n_prompt = p->n_prompt;
    g->i_stop_hit = -1;
    g->created = (long long)clock_wall_s();
    uint64_t r1 = rng_next(&s->rng), r2 = rng_next(&s->rng);
    snprintf(g->id, sizeof g->id, "%s-%016llx%016llx",
             kind == OPENAI_KIND_CHAT ? "chatcmpl" : "cmpl", (unsigned long long)r1,
             (unsigned long long)r2);
    for (int i = 0; i < p->n_stop; i++) {
        g->stop[i] = xstrndup(p->stop[i], p->stop_len[i]);
        g->stop_len[i] = p->stop_len[i];
        if (p->stop_len[i] > g->max_stop_len)
            g->max_stop_len = p->stop_len[i];
    }
    g->n_stop = p->n_stop;
    size_t text_cap = ((size_t)p->sp.max_tokens + 2) * ((size_t)s->max_piece_len + 4) + 64;
    buf_init(&g->text, 256, text_cap);
    return g;
}

static void handle_generate(struct conn *c, enum openai_kind kind)
{
    struct server *s = c->srv;
    struct openai_limits lim;
    struct openai_request p;
    struct openai_error e;
    route_limits(s, &lim);
    const struct buf *body = &c->hp.req.body;
    if (openai_request_parse(&lim, kind, body->data, body->len, &p, &e) != OPENAI_STATUS_OK) {
        openai_request_free(&p);
        conn_send_openai_error(c, &e);
        return;
    }
    struct gen *g = gen_new(s, kind, &p);
    struct engine_request req = {.prompt = p.prompt, .n_prompt = p.n_prompt, .sp = p.sp};
    enum engine_status est = engine_submit(s->engine, &req, server_on_engine_event, g, &g->req_id);
    if (est != ENGINE_OK) {
        gen_free(g);
        openai_request_free(&p);
        if (est == ENGINE_ERR_STOPPED)
            conn_send_error(c, 503, NULL, "The server is shutting down");
        else
            conn_send_error(c, 400, NULL, "The engine refused the request: %s",
                            engine_status_str(est));
        return;
    }
    s->n_requests++;
    g->next = s->gens;
    if (s->gens)
        s->gens->prev = g;
    s->gens = g;
    s->n_in_flight++;
    g->conn = c;
    c->gen = g;
    c->state = CONN_STATE_BUSY;
    bufferevent_setwatermark(c->bev, EV_READ, 0, BUSY_READ_CAP);
    conn_set_timeouts(c);
    if (s->cfg.log_requests)
        log_info("serve",
                 "Received request %s: prompt %d tokens, max_tokens %d, temperature %g, "
                 "stream %s",
                 g->id, p.n_prompt, p.sp.max_tokens, (double)p.sp.temperature,
                 p.stream ? "true" : "false");
    if (g->stream) {
        conn_write_head(c, 200, "text/event-stream; charset=utf-8", -1, NULL);
        if (kind == OPENAI_KIND_CHAT)
            gen_emit_chunk(g, 0, 0, NULL, 1);
    }
    openai_request_free(&p);
}

static void handle_models(struct conn *c)
{
    struct server *s = c->srv;
    buf_reset(&s->scratch);
    struct out o = {&s->scratch, BUF_OK};
    uint64_t r = rng_next(&s->rng);
    o_puts(&o, "{\"object\":\"list\",\"data\":[{\"id\":");
    o_jstr(&o, s->served_model_name, strlen(s->served_model_name));
    o_printf(&o, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"slmprobe\",\"root\":",
             s->created);
    const char *root = s->model_path ? s->model_path : s->served_model_name;
    o_jstr(&o, root, strlen(root));
    o_printf(&o,
             ",\"parent\":null,\"max_model_len\":%d,\"permission\":[{\"id\":\"modelperm-%016llx\","
             "\"object\":\"model_permission\",\"created\":%lld,\"allow_create_engine\":false,"
             "\"allow_sampling\":true,\"allow_logprobs\":false,\"allow_search_indices\":false,"
             "\"allow_view\":true,\"allow_fine_tuning\":false,\"organization\":\"*\","
             "\"group\":null,\"is_blocking\":false}]}]}",
             s->info.max_model_len, (unsigned long long)r, s->created);
    conn_send(c, 200, "application/json", s->scratch.data, s->scratch.len, NULL);
}

static void send_scratch(struct conn *c, const struct out *o)
{
    if (o->st != BUF_OK) {
        conn_send_error(c, 500, NULL, "response larger than the server's buffer cap");
        return;
    }
    conn_send(c, 200, "application/json", o->b->data, o->b->len, NULL);
}

/* Parses the request body into token ids with parse (openai_tokenize_parse or
 * openai_detokenize_parse). 0 with *ids (caller frees) and *n, or -1 after sending the error. */
static int route_parse_ids(struct conn *c,
                           enum openai_status (*parse)(const struct openai_limits *, const char *,
                                                       size_t, int32_t **, int *,
                                                       struct openai_error *),
                           int32_t **ids, int *n)
{
    struct openai_limits lim;
    struct openai_error e;
    route_limits(c->srv, &lim);
    const struct buf *body = &c->hp.req.body;
    if (parse(&lim, body->data, body->len, ids, n, &e) != OPENAI_STATUS_OK) {
        conn_send_openai_error(c, &e);
        return -1;
    }
    return 0;
}

static void handle_tokenize(struct conn *c)
{
    struct server *s = c->srv;
    int32_t *ids;
    int n;
    if (route_parse_ids(c, openai_tokenize_parse, &ids, &n) != 0)
        return;
    buf_reset(&s->scratch);
    struct out o = {&s->scratch, BUF_OK};
    o_printf(&o, "{\"count\":%d,\"max_model_len\":%d,\"tokens\":[", n, s->info.max_model_len);
    for (int i = 0; i < n; i++)
        o_printf(&o, i ? ",%d" : "%d", (int)ids[i]);
    o_puts(&o, "],\"token_strs\":null}");
    free(ids);
    send_scratch(c, &o);
}

static void handle_detokenize(struct conn *c)
{
    struct server *s = c->srv;
    int32_t *ids;
    int n;
    if (route_parse_ids(c, openai_detokenize_parse, &ids, &n) != 0)
        return;
    struct buf text;
    buf_init(&text, 0, s->scratch.cap_bytes / 2);
    enum buf_status bst = tokenizer_decode(&s->model->tok, ids, (size_t)n, &text);
    free(ids);
    if (bst != BUF_OK) {
        conn_send_error(c, 413, "tokens", "detokenized text larger than %zu bytes", text.cap_bytes);
        buf_free(&text);
        return;
    }
    buf_reset(&s->scratch);
    struct out o = {&s->scratch, BUF_OK};
    o_puts(&o, "{\"prompt\":");
    o_jstr(&o, text.data ? text.data : "", text.len);
    o_puts(&o, "}");
    buf_free(&text);
    send_scratch(c, &o);
}

static void handle_metrics(struct conn *c)
{
    struct server *s = c->srv;
    struct engine_stats st;
    engine_get_stats(s->engine, &st);
    buf_reset(&s->scratch);
    if (api_metrics_render(&s->metrics, s->served_model_name, &st, &s->info, &s->scratch) !=
        BUF_OK) {
        conn_send_error(c, 500, NULL, "metrics page larger than the server's buffer cap");
        return;
    }
    conn_send(c, 200, "text/plain; version=0.0.4; charset=utf-8", s->scratch.data, s->scratch.len,
              NULL);
}

/* Constant-time comparison of the Authorization header with "Bearer KEY". */
static int auth_ok(const struct server *s, const struct http_req *r)
{
    if (!s->api_key)
        return 1;
    if (!r->has_auth)
        return 0;
    char want[600];
    int n = snprintf(want, sizeof want, "Bearer %s", s->api_key);
    size_t got_len = strlen(r->auth);
    unsigned diff = (size_t)n != got_len;
    for (size_t i = 0; i < got_len && i < (size_t)n; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)r->auth[i];
    return diff == 0;
}

enum route_id {
    ROUTE_NONE = 0,
    ROUTE_HEALTH,
    ROUTE_VERSION,
    ROUTE_MODELS,
    ROUTE_METRICS,
    ROUTE_COMPLETIONS,
    ROUTE_CHAT,
    ROUTE_TOKENIZE,
    ROUTE_DETOKENIZE,
    ROUTE_RESET_PREFIX_CACHE,
};

static const struct {
    const char *path;
    int is_post;
    enum route_id id;
} routes[] = {
    {"/health", 0, ROUTE_HEALTH},
    {"/version", 0, ROUTE_VERSION},
    {"/v1/models", 0, ROUTE_MODELS},
    {"/metrics", 0, ROUTE_METRICS},
    {"/v1/completions", 1, ROUTE_COMPLETIONS},
    {"/v1/chat/completions", 1, ROUTE_CHAT},
    {"/tokenize", 1, ROUTE_TOKENIZE},
    {"/detokenize", 1, ROUTE_DETOKENIZE},
    {"/reset_prefix_cache", 1, ROUTE_RESET_PREFIX_CACHE},
};

void conn_dispatch(struct conn *c)
{
    struct server *s = c->srv;
    struct http_req *r = &c->hp.req;
    c->state = CONN_STATE_BUSY;
    if (!strncmp(r->path, "/v1/", 4) && !auth_ok(s, r)) {
        conn_send_error(c, 401, NULL, "Unauthorized: a valid API key is required");
        return;
    }
    enum route_id id = ROUTE_NONE;
    int is_post = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!strcmp(r->path, routes[i].path)) {
            id = routes[i].id;
            is_post = routes[i].is_post;
        }
    }
    if (id == ROUTE_NONE) {
        conn_send_error(c, 404, NULL, "Not Found: %.200s", r->path);
        return;
    }
    int method_ok = is_post ? !strcmp(r->method, "POST")
                            : (!strcmp(r->method, "GET") || !strcmp(r->method, "HEAD"));
    if (!method_ok) {
        conn_send_error(c, 405, NULL, "Method Not Allowed: %s %.200s", r->method, r->path);
        return;
    }
    enum server_state st = st_get(s);
    int ready = st == SERVER_STATE_READY;
    if (id == ROUTE_VERSION) {
        char body[128];
        int n = snprintf(body, sizeof body, "{\"version\":\"%s\"}", SLMPROBE_VERSION);
        conn_send(c, 200, "application/json", body, (size_t)n, NULL);
        return;
    }
    if (id == ROUTE_HEALTH) {
        conn_send(c, ready ? 200 : 503, NULL, "", 0, NULL);
        return;
    }
    if (!ready) {
        conn_send_error(c, 503, NULL,
                        st == SERVER_STATE_DRAINING ? "The server is shutting down"
                                                    : "The model is loading");
        return;
    }
    switch (id) {
    case ROUTE_MODELS:
        handle_models(c);
        break;
    case ROUTE_METRICS:
        handle_metrics(c);
        break;
    case ROUTE_COMPLETIONS:
        handle_generate(c, OPENAI_KIND_COMPLETION);
        break;
    case ROUTE_CHAT:
        handle_generate(c, OPENAI_KIND_CHAT);
        break;
    case ROUTE_TOKENIZE:
        handle_tokenize(c);
        break;
    case ROUTE_DETOKENIZE:
        handle_detokenize(c);
        break;
    case ROUTE_RESET_PREFIX_CACHE:
        engine_reset_prefix_cache(s->engine);
        log_info("serve", "Resetting the prefix cache");
        conn_send(c, 200, NULL, "", 0, NULL);
        break;
    default:
        conn_send_error(c, 404, NULL, "Not Found");
        break;
    }
}
