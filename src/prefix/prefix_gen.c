/* prefix_gen: the prefix probe's prompt set. Generates shared prefixes of three realistic kinds
 * (a support policy, a chat history, a RAG preamble) in two regimes with numbered question
 * variants, loads and validates a user's JSONL file (errors name the line), measures every prefix
 * with the server's own tokenizer (POST /tokenize), trims a generated prefix to its target length
 * and pads it to a whole number of KV blocks, and writes the set as prefix_prompts.jsonl. It
 * sends no completions and launches nothing (prefix_run.c and cmd_prefix.c do). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/client.h"
#include "prefix/prefix.h"
#include "server/promscrape.h"
#include "util/buf.h"
#include "util/json.h"

#define PREFIX_FILE_MAX_BYTES (256u << 20)
#define PREFIX_PAD_MAX_ROUNDS 64
#define PREFIX_TRIM_ROUNDS 4

const char *prefix_status_str(enum prefix_status st)
{
    switch (st) {
    case PREFIX_OK: return "ok";
    case PREFIX_ERR_IO: return "i/o error";
    case PREFIX_ERR_INPUT: return "bad input";
    case PREFIX_ERR_ARG: return "bad argument";
    case PREFIX_ERR_TOKENIZE: return "tokenize failed";
    }
    return "unknown";
}

const char *prefix_regime_str(enum prefix_regime r)
{
    return r == PREFIX_REGIME_LARGE ? "large" : r == PREFIX_REGIME_MEDIUM ? "medium" : "unknown";
}

const char *prefix_mode_str(enum prefix_mode m)
{
    return m == PREFIX_MODE_ON ? "with_prefix_cache" : m == PREFIX_MODE_OFF ? "no_prefix_cache"
                                                                           : "unknown";
}

void prefix_gen_opts_defaults(struct prefix_gen_opts *g)
{
    memset(g, 0, sizeof *g);
    g->len_tokens[PREFIX_REGIME_MEDIUM] = 384;
    g->len_tokens[PREFIX_REGIME_LARGE] = 1280;
    g->n_variants = 32;
    g->seed = 1;
}

void prefix_opts_defaults(struct prefix_opts *o)
{
    memset(o, 0, sizeof *o);
    prefix_gen_opts_defaults(&o->gen);
    o->regimes[PREFIX_REGIME_MEDIUM] = o->regimes[PREFIX_REGIME_LARGE] = 1;
    o->concurrency[0] = 1;
    o->concurrency[1] = 16;
    o->n_concurrency = 2;
    o->hit_mix[0] = 1.0;
    o->hit_mix[1] = 0.5;
    o->hit_mix[2] = 0.0;
    o->n_hit_mix = 3;
    o->n_requests = 32;
    o->max_tokens = 16;
    o->progress = 1;
}

/* ---- the generated kinds ---- */

struct prefix_kind_text {
    const char *workload;
    const char *opening;
    const char *const *sentences; /* cycled, numbered as sections, until the text is long enough */
    size_t n_sentences;
    const char *const *questions;
    size_t n_questions;
};

static const char *const policy_sentences[] = {
    "Customers may reset their password from the sign-in page by choosing Forgot password; the "
    "reset link expires after 30 minutes and can be used once.",
    "Refunds are issued to the original payment method within 5 to 10 business days after the "
    "returned item has been inspected by the warehouse team.",
    "Agents must verify the account holder with two of the following: the billing postcode, the "
    "last four digits of the card, or a code sent to the registered phone number.",
    "Data export requests are fulfilled within 72 hours as a ZIP archive of JSON files sent to "
    "the primary email address on the account.",
    "Accounts with a past-due balance older than 60 days are suspended, not deleted; service "
    "resumes within one hour of the payment clearing.",
    "Never ask a customer for their full password, full card number or security answers, and "
    "never paste them into a ticket.",
    "Escalate to tier two when a customer reports data loss, a security incident, a charge they "
    "did not make, or a legal request.",
    "Notification settings are per device: email digests are set on the web, push alerts in the "
    "mobile app under Settings, Notifications.",
    "Plan downgrades take effect at the end of the billing period; upgrades take effect at once "
    "and are prorated to the day.",
    "Answer in plain language, in at most five sentences, and link the relevant help article "
    "when one exists.",
};
static const char *const policy_questions[] = {
    "How do I reset my password?", "How do I export my account data?",
    "How can I change my notification settings?", "When will my refund arrive?",
    "Why was my account suspended?", "Can I downgrade my plan mid-month?",
    "Someone charged my card without permission, what now?", "How do you verify who I am?",
    "Can I get push alerts only for mentions?", "Is my data deleted when I cancel?",
    "How long is the reset link valid?", "Can you read my password back to me?",
};

static const char *const history_sentences[] = {
    "User: Hi, I am planning a three-day trip to Lisbon in May with my partner.\n"
    "Assistant: Lovely choice. May is warm and dry; do you prefer museums, food or walking?",
    "User: Mostly food and walking, and one day trip if it is easy by train.\n"
    "Assistant: Sintra is 40 minutes by train from Rossio station and makes a good day trip.",
    "User: We are vegetarian, is that a problem in Portugal?\n"
    "Assistant: Not in Lisbon: many tascas have vegetable dishes and there are fully vegetarian "
    "places in Principe Real and Intendente.",
    "User: What about getting around, should we buy a travel card?\n"
    "Assistant: A Viva Viagem card loaded with zapping credit covers metro, trams and the Sintra "
    "train; tram 28 is scenic but crowded.",
    "User: Our hotel is near Baixa. Which neighbourhoods are walkable from there?\n"
    "Assistant: Chiado, Alfama and Bairro Alto are all within 20 minutes on foot, mostly uphill.",
    "User: Any tips for the heat and the hills?\n"
    "Assistant: Walk early, carry water, use the Santa Justa lift or the funiculars, and plan a "
    "long lunch indoors.",
    "User: We land at 9 in the morning on Friday and fly out Sunday night.\n"
    "Assistant: Then keep Friday light near the hotel, do Sintra on Saturday and Belem on Sunday.",
    "User: Is Belem worth it if we skip the monastery queue?\n"
    "Assistant: Yes: the riverside walk, the tower from outside and the custard tarts are enough.",
};
static const char *const history_questions[] = {
    "Can you turn this into a day-by-day plan?", "Which restaurant should we book for Saturday?",
    "How early should we leave for Sintra?", "What should we pack for May?",
    "Is tram 28 worth the queue?", "Can we fit a fado evening in?",
    "What is the cheapest way from the airport?", "Where do we buy the travel card?",
    "Which day is best for a rainy-day backup?", "How much walking is that per day?",
    "Should we book Pena Palace tickets ahead?", "What would you change for a rainy forecast?",
};

static const char *const rag_sentences[] = {
    "[doc 1] The X200 router supports WPA3 and WPA2 mixed mode; firmware 4.2 added band steering "
    "between the 2.4 GHz and 5 GHz radios.",
    "[doc 2] To factory-reset the X200, hold the recessed button on the back for 10 seconds until "
    "the status light blinks amber three times.",
    "[doc 3] Guest networks on the X200 are isolated from the main LAN by default; isolation can "
    "be turned off under Advanced, Guest Access.",
    "[doc 4] Parental controls schedule internet access per device; schedules use the router's "
    "clock, which is set by NTP when the WAN link is up.",
    "[doc 5] The mesh satellite M20 pairs with the X200 over WPS; place it within two rooms of the "
    "router for the first pairing.",
    "[doc 6] Firmware updates install automatically between 02:00 and 04:00 local time unless "
    "automatic updates are disabled in the app.",
    "[doc 7] Port forwarding rules take an external port range, an internal IP address and a "
    "protocol; UPnP is off by default since firmware 4.0.",
    "[doc 8] The warranty covers hardware faults for 24 months from purchase; water damage and "
    "opened housings are excluded.",
};
static const char *const rag_questions[] = {
    "How do I factory-reset the router?", "Does the X200 support WPA3?",
    "Can guests see my printer?", "Why does the parental schedule run an hour late?",
    "How do I pair the M20 satellite?", "When do firmware updates install?",
    "How do I forward port 25565 for a game server?", "Is UPnP on by default?",
    "Is water damage covered by the warranty?", "Can I turn off band steering?",
    "What does three amber blinks mean?", "How far can the satellite be from the router?",
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
static const struct prefix_kind_text kinds[] = {
    {"chat_policy",
     "You are the support assistant of Acme Cloud. Follow this policy exactly when you answer.",
     policy_sentences, N_OF(policy_sentences), policy_questions, N_OF(policy_questions)},
    {"chat_history", "The conversation so far between a traveller and a trip-planning assistant.",
     history_sentences, N_OF(history_sentences), history_questions, N_OF(history_questions)},
    {"rag_prefix",
     "Answer the question using only the retrieved documents below; cite them as [doc N].",
     rag_sentences, N_OF(rag_sentences), rag_questions, N_OF(rag_questions)},
};
static const char *const qualifiers[] = {"", " Please keep it short.", " I am on the mobile app."};

/* Long enough for any tokenizer of at least one character per token at the target length:
 * byte tokenizers need target bytes; BPE about 4 bytes a token. Trimmed by prefix_set_measure. */
static char *kind_text(const struct prefix_kind_text *k, int target_tokens, size_t *len_out)
{
    struct buf b;
    size_t want = (size_t)target_tokens * 5 + 256;
    buf_init(&b, want + 512, want + 4096);
    buf_puts(&b, k->opening);
    for (size_t i = 0; b.len < want; i++)
        buf_printf(&b, "\n%zu.%zu %s", i / k->n_sentences + 1, i % k->n_sentences + 1,
                   k->sentences[i % k->n_sentences]);
    *len_out = b.len;
    return buf_steal(&b);
}

static void prompt_rebuild(struct prefix_set *set, struct prefix_prompt *p)
{
    const struct prefix_shared *sh = &set->prefixes[p->i_prefix];
    free(p->text);
    p->len = sh->len + p->suffix_len;
    p->text = xmalloc(p->len + 1);
    memcpy(p->text, sh->text, sh->len);
    memcpy(p->text + sh->len, p->suffix, p->suffix_len);
    p->text[p->len] = '\0';
}

static void set_add_prompt(struct prefix_set *set, size_t *cap, size_t i_prefix, const char *sfx,
                           size_t sfx_len)
{
    if (set->n_prompts == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        set->prompts = xrealloc(set->prompts, *cap * sizeof *set->prompts);
    }
    struct prefix_prompt *p = &set->prompts[set->n_prompts++];
    memset(p, 0, sizeof *p);
    p->suffix = xstrndup(sfx, sfx_len);
    p->suffix_len = sfx_len;
    p->i_prefix = i_prefix;
    prompt_rebuild(set, p);
}

static void shared_init(struct prefix_shared *sh, char *text, size_t len, const char *workload)
{
    memset(sh, 0, sizeof *sh);
    sh->text = text;
    sh->len = len;
    snprintf(sh->workload, sizeof sh->workload, "%s", workload);
    sh->len_tokens = sh->len_tokens_given = sh->n_blocks = -1;
}

enum prefix_status prefix_set_generate(struct prefix_set *set, const struct prefix_gen_opts *g)
{
    memset(set, 0, sizeof *set);
    if (g->n_variants < 1 || g->n_variants > PREFIX_MAX_VARIANTS)
        return PREFIX_ERR_ARG;
    for (int r = 0; r < PREFIX_REGIME__COUNT; r++)
        if (g->len_tokens[r] < 1 || g->len_tokens[r] > (1 << 20))
            return PREFIX_ERR_ARG;
    set->generated = 1;
    snprintf(set->source, sizeof set->source, "generated");
    set->n_prefixes = PREFIX_REGIME__COUNT * N_OF(kinds);
    set->prefixes = xcalloc(set->n_prefixes, sizeof *set->prefixes);
    size_t cap = 0;
    uint64_t ticket = 1000 + (g->seed % 9000) * 7;
    for (int r = 0; r < PREFIX_REGIME__COUNT; r++) {
        for (size_t k = 0; k < N_OF(kinds); k++) {
            size_t ip = (size_t)r * N_OF(kinds) + k, len;
            char *text = kind_text(&kinds[k], g->len_tokens[r], &len);
            shared_init(&set->prefixes[ip], text, len, kinds[k].workload);
            set->prefixes[ip].regime = (enum prefix_regime)r;
            set->prefixes[ip].len_tokens_given = g->len_tokens[r]; /* the target */
            for (int v = 0; v < g->n_variants; v++) {
                /* The ticket number comes first, so that no two variants share a KV block
                 * after the prefix (the hit counter then counts exactly the prefix's blocks). */
                char q[512];
                int n = snprintf(q, sizeof q, "%sTicket %llu: %s%s\nA:", PREFIX_QUESTION_SEP,
                                 (unsigned long long)ticket++,
                                 kinds[k].questions[(size_t)v % kinds[k].n_questions],
                                 qualifiers[((size_t)v / kinds[k].n_questions) % N_OF(qualifiers)]);
                set_add_prompt(set, &cap, ip, q, (size_t)n);
            }
        }
    }
    return PREFIX_OK;
}

void prefix_set_free(struct prefix_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n_prefixes; i++)
        free(set->prefixes[i].text);
    for (size_t i = 0; i < set->n_prompts; i++) {
        free(set->prompts[i].text);
        free(set->prompts[i].suffix);
    }
    free(set->prefixes);
    free(set->prompts);
    memset(set, 0, sizeof *set);
}

/* ---- loading a user's file ---- */

/* The last occurrence of the separator, or NULL. */
static const char *find_last_sep(const char *s, size_t len)
{
    size_t sl = strlen(PREFIX_QUESTION_SEP);
    for (size_t i = len >= sl ? len - sl + 1 : 0; i-- > 0;)
        if (!memcmp(s + i, PREFIX_QUESTION_SEP, sl))
            return s + i;
    return NULL;
}

/* Validates one parsed line and adds it. 0, or -1 with err ("path:line: ..."). */
static int load_line(struct prefix_set *set, size_t *cap, const struct json *root, const char *path,
                     size_t line, char *err, size_t err_len)
{
    const struct json *jp = json_get(root, "prompt");
    size_t plen = 0;
    const char *prompt = json_str(jp, &plen);
    if (json_type_of(root) != JSON_TYPE_OBJECT) {
        snprintf(err, err_len, "%s:%zu: not a JSON object", path, line);
        return -1;
    }
    if (!jp) {
        snprintf(err, err_len, "%s:%zu: \"prompt\" is missing", path, line);
        return -1;
    }
    if (!prompt) {
        snprintf(err, err_len, "%s:%zu: \"prompt\" is a %s, not a string", path, line,
                 json_type_str(json_type_of(jp)));
        return -1;
    }
    const char *sep = find_last_sep(prompt, plen);
    if (!sep || sep == prompt) {
        snprintf(err, err_len,
                 "%s:%zu: \"prompt\" has no shared prefix before a \"\\nQ: \" separator (format: "
                 "\"<PREFIX>\\nQ: <question>\\nA:\")", path, line);
        return -1;
    }
    long long given = -1;
    const struct json *jl = json_get(root, "prefix_len_tokens");
    if (jl && json_type_of(jl) != JSON_TYPE_NULL && (json_int(jl, &given) != 0 || given < 0)) {
        snprintf(err, err_len, "%s:%zu: \"prefix_len_tokens\" is not a non-negative integer", path,
                 line);
        return -1;
    }
    const struct json *jw = json_get(root, "workload");
    const char *workload = json_str(jw, NULL);
    if (jw && json_type_of(jw) != JSON_TYPE_NULL && !workload) {
        snprintf(err, err_len, "%s:%zu: \"workload\" is not a string", path, line);
        return -1;
    }
    size_t pre_len = (size_t)(sep - prompt), ip = set->n_prefixes;
    for (size_t i = 0; i < set->n_prefixes; i++)
        if (set->prefixes[i].len == pre_len && !memcmp(set->prefixes[i].text, prompt, pre_len))
            ip = i;
    if (ip == set->n_prefixes) {
        set->prefixes = xrealloc(set->prefixes, (ip + 1) * sizeof *set->prefixes);
        shared_init(&set->prefixes[ip], xstrndup(prompt, pre_len), pre_len,
                    workload ? workload : "user");
        set->prefixes[ip].len_tokens_given = given > INT32_MAX ? INT32_MAX : (int)given;
        set->n_prefixes++;
    }
    set_add_prompt(set, cap, ip, sep, plen - pre_len);
    return 0;
}

enum prefix_status prefix_set_load(struct prefix_set *set, const char *path, char *err,
                                   size_t err_len)
{
    memset(set, 0, sizeof *set);
    size_t len, cap = 0, line = 0;
    char *text = file_read_all(path, PREFIX_FILE_MAX_BYTES, &len);
    if (!text) {
        snprintf(err, err_len, "%s: %s", path, errno == EFBIG ? "file too large" : strerror(errno));
        return PREFIX_ERR_IO;
    }
    snprintf(set->source, sizeof set->source, "%s", path);
    enum prefix_status st = PREFIX_OK;
    for (char *p = text, *end = text + len; p < end && st == PREFIX_OK;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
            k++;
        if (k < n) {
            char jerr[256];
            struct json *root = json_parse(p, n, jerr, sizeof jerr);
            if (!root) {
                snprintf(err, err_len, "%s:%zu: malformed JSON: %s", path, line, jerr);
                st = PREFIX_ERR_INPUT;
            } else if (set->n_prompts >= PREFIX_MAX_PROMPTS) {
                snprintf(err, err_len, "%s:%zu: more than %d prompts", path, line,
                         PREFIX_MAX_PROMPTS);
                st = PREFIX_ERR_INPUT;
            } else if (load_line(set, &cap, root, path, line, err, err_len) != 0) {
                st = PREFIX_ERR_INPUT;
            }
            json_free(root);
        }
        p += n + (nl ? 1 : 0);
    }
    free(text);
    if (st == PREFIX_OK && set->n_prompts == 0) {
        snprintf(err, err_len, "%s: no prompts", path);
        st = PREFIX_ERR_INPUT;
    }
    if (st != PREFIX_OK)
        prefix_set_free(set);
    return st;
}

/* ---- measuring, trimming, padding ---- */

static void set_warn(struct prefix_set *set, const char *fmt, const char *workload, int a, int b)
{
    size_t used = strlen(set->warnings);
    char msg[256];
    snprintf(msg, sizeof msg, fmt, workload, a, b);
    snprintf(set->warnings + used, sizeof set->warnings - used, "%s%s", used ? "; " : "", msg);
}

/* Cuts a generated prefix at a space so that it measures about target tokens (a few rounds of
 * proportional cuts, each measured). */
static int trim_to_target(struct prefix_shared *sh, int target, prefix_count_cb count, void *ud,
                          char *err, size_t err_len)
{
    int n = count(ud, sh->text, sh->len, err, err_len);
    for (int round = 0; n > target && round < PREFIX_TRIM_ROUNDS; round++) {
        size_t cut = (size_t)((double)sh->len * target / n);
        while (cut > 1 && sh->text[cut] != ' ' && sh->text[cut] != '\n')
            cut--;
        if (cut <= 1)
            break;
        sh->len = cut;
        sh->text[cut] = '\0';
        n = count(ud, sh->text, sh->len, err, err_len);
    }
    return n;
}

/* Appends filler (" ." pairs, then ".") until n % block_size == 0. Returns the final count. */
static int pad_to_block(struct prefix_shared *sh, int n, int block_size, prefix_count_cb count,
                        void *ud, char *err, size_t err_len)
{
    int n0 = n;
    for (int round = 0; n >= 0 && n % block_size && round < PREFIX_PAD_MAX_ROUNDS; round++) {
        int need = block_size - n % block_size;
        size_t add = need >= 2 ? (size_t)(need / 2) * 2 : 1;
        char *t = xmalloc(sh->len + add + 1);
        memcpy(t, sh->text, sh->len);
        for (size_t i = 0; i < add; i++)
            t[sh->len + i] = add == 1 ? '.' : (i % 2 ? '.' : ' ');
        t[sh->len + add] = '\0';
        free(sh->text);
        sh->text = t;
        sh->len += add;
        n = count(ud, sh->text, sh->len, err, err_len);
    }
    sh->n_pad_tokens = n >= 0 ? n - n0 : 0;
    return n;
}

enum prefix_status prefix_set_measure(struct prefix_set *set, prefix_count_cb count, void *ud,
                                      int block_size, int pad, char *err, size_t err_len)
{
    set->block_size = block_size > 0 ? block_size : 0;
    set->warnings[0] = '\0';
    for (size_t i = 0; i < set->n_prefixes; i++) {
        struct prefix_shared *sh = &set->prefixes[i];
        int n = set->generated ? trim_to_target(sh, sh->len_tokens_given, count, ud, err, err_len)
                               : count(ud, sh->text, sh->len, err, err_len);
        if (n >= 0 && pad && set->block_size)
            n = pad_to_block(sh, n, set->block_size, count, ud, err, err_len);
        if (n < 0)
            return PREFIX_ERR_TOKENIZE;
        sh->len_tokens = n;
        sh->regime = n >= PREFIX_LARGE_MIN_TOKENS ? PREFIX_REGIME_LARGE : PREFIX_REGIME_MEDIUM;
        sh->n_blocks = set->block_size ? n / set->block_size : -1;
        if (set->block_size && n < set->block_size)
            set_warn(set, "prefix '%s' is %d tokens, shorter than one KV block of %d: it can "
                     "never hit", sh->workload, n, set->block_size);
        else if (pad && set->block_size && n % set->block_size)
            set_warn(set, "prefix '%s' could not be padded to a whole block (%d tokens, block "
                     "%d)", sh->workload, n, set->block_size);
        if (!set->generated && sh->len_tokens_given >= 0 && sh->len_tokens_given != n)
            set_warn(set, "prefix '%s': the file says %d tokens, the server counts %d",
                     sh->workload, sh->len_tokens_given, n);
    }
    for (size_t i = 0; i < set->n_prompts; i++)
        prompt_rebuild(set, &set->prompts[i]);
    return PREFIX_OK;
}

enum prefix_status prefix_set_write_jsonl(const struct prefix_set *set, const char *path,
                                          char *err, size_t err_len)
{
    struct buf b;
    buf_init(&b, 1 << 16, (size_t)1 << 30);
    for (size_t i = 0; i < set->n_prompts; i++) {
        const struct prefix_prompt *p = &set->prompts[i];
        const struct prefix_shared *sh = &set->prefixes[p->i_prefix];
        buf_puts(&b, "{\"prompt\":");
        buf_json_strn(&b, p->text, p->len);
        if (sh->len_tokens >= 0)
            buf_printf(&b, ",\"prefix_len_tokens\":%d", sh->len_tokens);
        buf_puts(&b, ",\"workload\":");
        buf_json_str(&b, sh->workload);
        if (sh->len_tokens >= 0)
            buf_printf(&b, ",\"regime\":\"%s\"", prefix_regime_str(sh->regime));
        buf_puts(&b, "}\n");
    }
    int rc = b.len < b.cap_bytes ? file_write_all(path, b.data, b.len) : -1;
    if (rc != 0)
        snprintf(err, err_len, "cannot write %s: %s", path, strerror(errno));
    buf_free(&b);
    return rc ? PREFIX_ERR_IO : PREFIX_OK;
}

/* ---- the server's tokenizer and cache configuration ---- */

int prefix_tokenize_http(void *ud, const char *text, size_t len, char *err, size_t err_len)
{
    struct prefix_tokenizer *tk = ud;
    char url[512];
    snprintf(url, sizeof url, "%s/tokenize", tk->base_url);
    struct buf req, body;
    buf_init(&req, len + 64, len * 6 + 256);
    buf_init(&body, 4096, (size_t)64 << 20);
    buf_puts(&req, tk->kind == TARGET_KIND_LLAMACPP ? "{\"content\":" : "{\"prompt\":");
    buf_json_strn(&req, text, len);
    buf_puts(&req, "}");
    int status = 0, n = -1;
    char herr[256];
    tk->n_calls++;
    if (http_post_json(url, tk->api_key, req.data, 30000, &body, &status, herr, sizeof herr) != 0) {
        snprintf(err, err_len, "POST %s: %s", url, herr);
    } else if (status != 200) {
        char msg[256];
        client_error_message(body.data, body.len, msg, sizeof msg);
        snprintf(err, err_len, "POST %s: HTTP %d: %s", url, status, msg);
    } else {
        struct json *root = json_parse(body.data, body.len, herr, sizeof herr);
        long long c;
        if (root && json_int(json_get(root, "count"), &c) == 0 && c >= 0 && c <= INT32_MAX)
            n = (int)c;
        else if (root && json_type_of(json_get(root, "tokens")) == JSON_TYPE_ARRAY)
            n = (int)json_len(json_get(root, "tokens"));
        else
            snprintf(err, err_len, "POST %s: no \"count\" or \"tokens\" in the answer", url);
        json_free(root);
    }
    buf_free(&req);
    buf_free(&body);
    return n;
}

int prefix_fetch_cache_config(const char *base_url, const char *api_key, int *block_size_out,
                              int64_t *kv_tokens_out)
{
    char url[512], err[256];
    snprintf(url, sizeof url, "%s/metrics", base_url);
    struct prom_set ps;
    int rc = -1;
    *kv_tokens_out = -1;
    if (prom_fetch(url, api_key, 5000, &ps, NULL, err, sizeof err) == PROM_OK) {
        for (size_t i = 0; i < ps.n_samples; i++) {
            const struct prom_sample *sm = &ps.samples[i];
            if (strcmp(sm->name, "vllm:cache_config_info"))
                continue;
            const char *bs = prom_label_get(sm, "block_size");
            const char *kv = prom_label_get(sm, "kv_cache_size_tokens");
            if (bs && atoi(bs) > 0) {
                *block_size_out = atoi(bs);
                rc = 0;
            }
            if (kv && atoll(kv) > 0)
                *kv_tokens_out = atoll(kv);
        }
    }
    prom_set_free(&ps);
    return rc;
}
