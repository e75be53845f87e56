/* stream: engine events -> responses. Accumulates detokenized text per request, cuts it at stop
 * strings, writes SSE chunks (completions and chat formats) or the final JSON body, and records
 * the request's metrics. Runs on the loop thread; the engine thread only calls
 * server_on_engine_event, which queues. It parses nothing and routes nothing (routes.c). */
#include "engine/server_impl.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

/* ------------------------------------------------------------------------------------------ */
/* generations: engine events -> responses */

void gen_list_remove(struct server *s, struct gen *g)
{
    if (g->prev)
        g->prev->next = g->next;
    else if (s->gens == g)
        s->gens = g->next;
    if (g->next)
        g->next->prev = g->prev;
    g->prev = g->next = NULL;
}

void gen_free(struct gen *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_stop; i++)
        free(g->stop[i]);
    buf_free(&g->text);
    free(g);
}

static enum api_finish finish_of(enum engine_finish f)
{
    switch (f) {
    case ENGINE_FINISH_LENGTH:
        return API_FINISH_LENGTH;
    case ENGINE_FINISH_EOS:
        return API_FINISH_STOP;
    default:
        return API_FINISH_ABORT;
    }
}

static void gen_record_metrics(struct gen *g, enum api_finish fin, mono_ns t_finish_ns)
{
    struct server *s = g->srv;
    if (g->metrics_done)
        return;
    g->metrics_done = 1;
    struct api_request_obs o = {
        .t_arrival_ns = g->t_arrival_ns,
        .t_scheduled_ns = g->t_scheduled_ns,
        .t_first_token_ns = g->t_first_token_ns,
        .t_finish_ns = t_finish_ns,
        .n_prompt = g->n_prompt,
        .n_generated = fin == API_FINISH_ABORT ? g->n_generated : g->n_completion,
        .max_tokens = g->max_tokens,
        .finish = fin,
    };
    api_metrics_observe_finished(&s->metrics, &o);
    if (s->cfg.log_requests)
        log_info("serve", "Finished request %s: %s, prompt %d tokens (%d cached), %d generated",
                 g->id, api_finish_str(fin), g->n_prompt, g->n_cached, o.n_generated);
}

static void put_usage(struct out *o, const struct gen *g)
{
    const struct server *s = g->srv;
    o_printf(o, "{\"prompt_tokens\":%d,\"total_tokens\":%d,\"completion_tokens\":%d", g->n_prompt,
             g->n_prompt + g->n_completion, g->n_completion);
    if (s->cfg.enable_prompt_tokens_details) /* 0 included: a miss is a figure too */
        o_printf(o, ",\"prompt_tokens_details\":{\"cached_tokens\":%d}", g->n_cached);
    o_puts(o, "}");
}

static void put_chunk_head(struct out *o, const struct gen *g)
{
    const struct server *s = g->srv;
    o_puts(o, "data: {\"id\":");
    o_jstr(o, g->id, strlen(g->id));
    o_printf(o, ",\"object\":\"%s\",\"created\":%lld,\"model\":",
             g->kind == OPENAI_KIND_CHAT ? "chat.completion.chunk" : "text_completion", g->created);
    o_jstr(o, s->served_model_name, strlen(s->served_model_name));
}

static void put_stop_reason(struct out *o, const struct gen *g)
{
    o_puts(o, ",\"stop_reason\":");
    if (g->i_stop_hit >= 0)
        o_jstr(o, g->stop[g->i_stop_hit], g->stop_len[g->i_stop_hit]);
    else
        o_puts(o, "null");
}

/* One SSE event with text[from, to) and, when finish is set, the finish reason. */
void gen_emit_chunk(struct gen *g, size_t from, size_t to, const char *finish, int with_role)
{
    struct server *s = g->srv;
    struct conn *c = g->conn;
    buf_reset(&s->scratch);
    struct out o = {&s->scratch, BUF_OK};
    put_chunk_head(&o, g);
    if (g->kind == OPENAI_KIND_CHAT) {
        o_puts(&o, ",\"choices\":[{\"index\":0,\"delta\":{");
        if (with_role)
            o_puts(&o, "\"role\":\"assistant\",");
        o_puts(&o, "\"content\":");
        o_jstr(&o, g->text.data + from, to - from);
        o_puts(&o, "},\"logprobs\":null,\"finish_reason\":");
        if (finish) {
            o_printf(&o, "\"%s\"", finish);
            put_stop_reason(&o, g);
        } else {
            o_puts(&o, "null");
        }
        o_puts(&o, "}]}\n\n");
    } else {
        o_puts(&o, ",\"choices\":[{\"index\":0,\"text\":");
        o_jstr(&o, g->text.data + from, to - from);
        o_puts(&o, ",\"logprobs\":null,\"finish_reason\":");
        if (finish)
            o_printf(&o, "\"%s\"", finish);
        else
            o_puts(&o, "null");
        if (finish)
            put_stop_reason(&o, g);
        else
            o_puts(&o, ",\"stop_reason\":null");
        o_puts(&o, "}],\"usage\":null}\n\n");
    }
    if (o.st != BUF_OK) {
        log_error("serve", "%s: SSE event over the buffer cap", g->id);
        c->overflow = 1;
        return;
    }
    conn_write_chunk(c, s->scratch.data, s->scratch.len);
}

/* Bytes of text that may be streamed now: all but the last max_stop_len-1 (a stop string may
 * still be completing there), never splitting a UTF-8 character. */
static size_t gen_sendable(const struct gen *g)
{
    size_t hold = g->max_stop_len > 0 ? g->max_stop_len - 1 : 0;
    if (g->text.len <= hold)
        return g->n_text_sent;
    size_t end = g->text.len - hold;
    while (end > g->n_text_sent && ((unsigned char)g->text.data[end] & 0xC0) == 0x80)
        end--;
    return end > g->n_text_sent ? end : g->n_text_sent;
}

/* Complete the client's response. The engine request may still be running (stop string). */
static void gen_finish_client(struct gen *g, enum api_finish fin, mono_ns t_finish_ns)
{
    struct server *s = g->srv;
    struct conn *c = g->conn;
    if (g->client_done)
        return;
    g->client_done = 1;
    if (g->i_stop_hit < 0)
        utf8_stream_flush(&g->u8, &g->text);
    const char *finish = api_finish_str(fin);
    gen_record_metrics(g, fin, t_finish_ns);
    if (!c)
        return;
    if (g->stream) {
        gen_emit_chunk(g, g->n_text_sent, g->text.len, finish, 0);
        g->n_text_sent = g->text.len;
        if (g->include_usage) {
            buf_reset(&s->scratch);
            struct out o = {&s->scratch, BUF_OK};
            put_chunk_head(&o, g);
            o_puts(&o, ",\"choices\":[],\"usage\":");
            put_usage(&o, g);
            o_puts(&o, "}\n\n");
            if (o.st == BUF_OK)
                conn_write_chunk(c, s->scratch.data, s->scratch.len);
        }
        static const char done[] = "data: [DONE]\n\n";
        conn_write_chunk(c, done, sizeof done - 1);
        if (c->resp_chunked)
            conn_write(c, "0\r\n\r\n", 5);
        g->conn = NULL;
        conn_response_done(c);
        return;
    }
    g->conn = NULL;
    buf_reset(&s->scratch);
    struct out o = {&s->scratch, BUF_OK};
    o_puts(&o, "{\"id\":");
    o_jstr(&o, g->id, strlen(g->id));
    o_printf(&o, ",\"object\":\"%s\",\"created\":%lld,\"model\":",
             g->kind == OPENAI_KIND_CHAT ? "chat.completion" : "text_completion", g->created);
    o_jstr(&o, s->served_model_name, strlen(s->served_model_name));
    if (g->kind == OPENAI_KIND_CHAT) {
        o_puts(&o, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        o_jstr(&o, g->text.data, g->text.len);
        o_puts(&o, ",\"tool_calls\":[]},\"logprobs\":null,\"finish_reason\":");
    } else {
        o_puts(&o, ",\"choices\":[{\"index\":0,\"text\":");
        o_jstr(&o, g->text.data, g->text.len);
        o_puts(&o, ",\"logprobs\":null,\"finish_reason\":");
    }
    o_printf(&o, "\"%s\"", finish);
    put_stop_reason(&o, g);
    o_puts(&o, "}],\"usage\":");
    put_usage(&o, g);
    o_puts(&o, "}");
    if (o.st != BUF_OK) {
        conn_send_error(c, 500, NULL, "response larger than the server's buffer cap");
        return;
    }
    conn_send(c, 200, "application/json", s->scratch.data, s->scratch.len, NULL);
}

/* Appends a token's text and looks for stop strings in the new tail. */
static void gen_add_token(struct gen *g, int32_t token)
{
    const struct tokenizer *tok = &g->srv->model->tok;
    if (tokenizer_is_eog(tok, token) || token == tok->bos_id)
        return;
    size_t n = 0;
    const char *piece = tokenizer_piece(tok, token, &n);
    if (!piece || n == 0)
        return;
    size_t old = g->text.len;
    if (utf8_stream_feed(&g->u8, piece, n, &g->text) != BUF_OK) {
        log_error("serve", "%s: output text over its cap (%zu bytes)", g->id, g->text.cap_bytes);
        return;
    }
    size_t best = (size_t)-1;
    for (int i = 0; i < g->n_stop; i++) {
        size_t L = g->stop_len[i];
        if (g->text.len < L)
            continue;
        size_t from = old >= L - 1 ? old - (L - 1) : 0;
        const char *hit = memmem(g->text.data + from, g->text.len - from, g->stop[i], L);
        if (hit && (size_t)(hit - g->text.data) < best) {
            best = (size_t)(hit - g->text.data);
            g->i_stop_hit = i;
        }
    }
    if (g->i_stop_hit >= 0) {
        g->text.len = best;
        g->text.data[best] = 0;
    }
}

static void gen_on_event(struct gen *g, const struct engine_event *ev)
{
    struct server *s = g->srv;
    if (g->engine_done)
        return;
    g->n_prompt = ev->n_prompt;
    g->n_cached = ev->n_cached;
    g->n_generated = ev->n_generated;
    g->t_arrival_ns = ev->t_arrival_ns;
    if (ev->t_scheduled_ns)
        g->t_scheduled_ns = ev->t_scheduled_ns;
    if (ev->token >= 0) {
        if (g->n_token_events == 0) {
            g->t_first_token_ns = ev->t_first_token_ns ? ev->t_first_token_ns : ev->t_event_ns;
            api_metrics_observe_ttft(&s->metrics,
                                     g->t_first_token_ns >= g->t_arrival_ns
                                         ? ns_to_s(g->t_first_token_ns - g->t_arrival_ns)
                                         : 0.0);
        } else if (!g->client_done) {
            api_metrics_observe_itl(&s->metrics, ev->t_event_ns >= g->t_last_token_ns
                                                     ? ns_to_s(ev->t_event_ns - g->t_last_token_ns)
                                                     : 0.0);
        }
        g->t_last_token_ns = ev->t_event_ns;
        g->n_token_events++;
        if (!g->client_done) {
            g->n_completion = ev->n_generated;
            gen_add_token(g, ev->token);
        }
    }

    struct conn *c = g->conn;
    if (ev->finish != ENGINE_FINISH_NONE) {
        g->engine_done = 1;
        gen_list_remove(s, g);
        s->n_in_flight--;
        if (!g->client_done) {
            enum api_finish fin = g->i_stop_hit >= 0 ? API_FINISH_STOP : finish_of(ev->finish);
            gen_finish_client(g, fin, ev->t_event_ns);
        } else {
            gen_record_metrics(g, API_FINISH_ABORT, ev->t_event_ns);
        }
        if (c && c->overflow)
            conn_free(c);
        gen_free(g);
        drain_check(s);
        return;
    }
    if (g->client_done)
        return;
    if (g->i_stop_hit >= 0) {
        /* stop string: answer now, and stop generating */
        gen_finish_client(g, API_FINISH_STOP, ev->t_event_ns);
        engine_abort(s->engine, g->req_id);
    } else if (g->stream && c && ev->token >= 0) {
        size_t end = gen_sendable(g);
        gen_emit_chunk(g, g->n_text_sent, end, NULL, 0);
        g->n_text_sent = end;
    }
    if (c && c->overflow)
        conn_free(c); /* aborts the request; g stays until the engine's final event */
}

/* Engine thread. */
void server_on_engine_event(void *ud, const struct engine_event *ev)
{
    struct gen *g = ud;
    struct server *s = g->srv;
    int wake = 0;
    pthread_mutex_lock(&s->q_mu);
    if (s->q_len == s->q_cap) {
        /* grow (rare): never drop an event, never block the engine thread */
        size_t cap = s->q_cap * 2;
        struct q_item *q = xmalloc(cap * sizeof *q);
        for (size_t i = 0; i < s->q_len; i++)
            q[i] = s->q[(s->q_head + i) % s->q_cap];
        free(s->q);
        s->q = q;
        s->q_cap = cap;
        s->q_head = 0;
    }
    struct q_item *it = &s->q[(s->q_head + s->q_len) % s->q_cap];
    it->g = g;
    it->ev = *ev;
    s->q_len++;
    if (!s->q_wake_pending) {
        s->q_wake_pending = 1;
        wake = 1;
    }
    pthread_mutex_unlock(&s->q_mu);
    if (wake)
        event_active(s->ev_wake, EV_READ, 0);
}

int q_pop(struct server *s, struct q_item *out)
{
    int got = 0;
    pthread_mutex_lock(&s->q_mu);
    if (s->q_len > 0) {
        *out = s->q[s->q_head];
        s->q_head = (s->q_head + 1) % s->q_cap;
        s->q_len--;
        got = 1;
    } else {
        s->q_wake_pending = 0;
    }
    pthread_mutex_unlock(&s->q_mu);
    return got;
}

void on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    struct q_item it;
    for (int i = 0; i < WAKE_BATCH; i++) {
        if (!q_pop(s, &it))
            return;
        gen_on_event(it.g, &it.ev);
    }
    event_active(s->ev_wake, EV_READ, 0); /* more queued: let I/O run first */
}
