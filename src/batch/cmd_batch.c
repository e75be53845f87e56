/* cmd_batch: `slmprobe batch`, Tier 3B. Measures what batching buys on a server: N requests one
 * after another versus all at once; a closed-loop concurrency sweep (warm-up at each level's
 * concurrency, repeats with median and spread) with the knee, sweet spot, SLO limit and rules of
 * thumb (knee.h); and open-loop load at fixed rates (Poisson or gamma arrivals from a precomputed
 * schedule, latency from both the intended and the actual send time). Per level: e2e, TTFT, ITL,
 * TPOT, QPS, token throughput, achieved in-flight concurrency, errors by class, GPU/CPU from the
 * telemetry sampler, server queue/running from /metrics, goodput under an SLO. Outputs go through
 * report.h (Markdown, HTML, JSON, CSV) and every finished request is appended to a JSONL file at
 * once. It reuses the shared client, records, target lifecycle and telemetry: it holds no HTTP,
 * SSE, process or statistics code of its own, and it never re-tokenises (tokens come from usage).
 * Single-threaded except for a /metrics scraper thread (blocking GETs must not stall the client's
 * timestamps). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "net/client.h"
#include "measure/knee.h"
#include "run/probe_opts.h"
#include "server/promscrape.h"
#include "measure/record.h"
#include "report/report.h"
#include "measure/stats.h"
#include "server/target.h"
#include "server/telemetry.h"
#include "measure/workload.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

#define MOD "batch"
#define BATCH_MAX_LEVELS 64
#define BATCH_MAX_REQUESTS 1000000
#define BATCH_WARMUP_TOKENS 16 /* max_tokens of warm-up requests (at most --output-len) */

/* ------------------------------------------------------------------------------------------ */
/* Options                                                                                    */
/* ------------------------------------------------------------------------------------------ */

struct batch_opts {
    int num_requests;           /* sequential vs concurrent: N */
    int conc[BATCH_MAX_LEVELS]; /* sweep levels */
    int n_conc;
    int requests;      /* per level; 0: max(8, rounds x level) */
    int rounds;        /* requests per in-flight slot when --requests is not given */
    double duration_s; /* per level / rate instead of a count; 0: by count */
    int warmup;        /* warm-up requests per level; -1: the level's concurrency */
    int repeat;
    double rates[BATCH_MAX_LEVELS];
    int n_rates;
    double burstiness;   /* gamma shape; 1 = Poisson */
    int max_concurrency; /* open-loop cap; 0 none */
    int input_len;
    double input_len_range;
    int output_len;
    const char *prompt_file;
    const char *slo_spec;
    struct knee_slo slo;
    double knee_threshold;
    double slo_attainment;
    uint64_t seed;
    int do_seqconc, do_sweep, do_open;
    int modes_given;
    int metrics_interval_ms;
    int progress; /* -1 auto (stderr is a TTY), 0, 1 */
    int unit;     /* -1 auto: byte for the embedded runtime, word otherwise */
};

static void batch_opts_defaults(struct batch_opts *o)
{
    memset(o, 0, sizeof *o);
    o->num_requests = 32;
    static const int def_conc[] = {1, 2, 4, 8, 16, 32};
    o->n_conc = 6;
    memcpy(o->conc, def_conc, sizeof def_conc);
    o->warmup = -1;
    o->rounds = 4;
    o->repeat = 3;
    o->burstiness = 1.0;
    o->input_len = 128;
    o->output_len = 64;
    knee_slo_none(&o->slo);
    o->knee_threshold = 0.10;
    o->slo_attainment = 0.95;
    o->seed = 1;
    o->do_seqconc = o->do_sweep = 1;
    o->metrics_interval_ms = 200;
    o->progress = -1;
    o->unit = -1;
}

static void batch_usage(FILE *f)
{
    fprintf(
        f,
        "usage: slmprobe batch [options] [-- server flags...]\n"
        "\n"
        "Tier 3B: what batching buys. Sequential vs concurrent requests, a closed-loop\n"
        "concurrency sweep with the knee, sweet spot and rules of thumb, and open-loop load at\n"
        "fixed request rates. Launches the embedded server by default (or vllm/llamacpp/sglang,\n"
        "or probes a running one with --url).\n"
        "\n"
        "Modes:\n"
        "  --modes LIST            any of seqconc,sweep,open [seqconc,sweep; open is added\n"
        "                          when --rate is given]\n"
        "\n"
        "Sequential vs concurrent:\n"
        "  --num-requests N        N requests one after another, then all N at once [32]\n"
        "\n"
        "Closed-loop sweep:\n"
        "  --concurrency LIST      levels, e.g. 1,2,4,8,16,32 [1,2,4,8,16,32]\n"
        "  --requests N            measured requests per level [max(8, rounds x level)]\n"
        "  --rounds K              without --requests: each of a level's in-flight slots runs\n"
        "                          K requests in turn, i.e. max(8, K x level) per level [4]\n"
        "  --duration SECONDS      run each level (and each rate) this long instead of a count\n"
        "  --warmup N              warm-up requests before each level, sent at the level's\n"
        "                          concurrency and left out of the statistics [= the level]\n"
        "  --repeat N              runs per level; the report gives the median and min/max [3]\n"
        "  --knee-threshold F      doubling concurrency must add at least this fraction of\n"
        "                          throughput to keep scaling [0.10]\n"
        "\n"
        "Open loop:\n"
        "  --rate LIST             request rates in req/s, e.g. 2,4,8 (adds mode open)\n"
        "  --burstiness B          gamma-distributed gaps with shape B (1 = Poisson) [1]\n"
        "  --max-concurrency N     cap on requests in flight; later sends queue client-side\n"
        "                          (visible as queueing delay) [none]\n"
        "                          (each rate sends --requests requests [max(8, 10 s x rate)]\n"
        "                          or runs for --duration)\n"
        "\n"
        "Workload:\n"
        "  --input-len N           prompt length in tokens [128]\n"
        "  --input-len-range R     lengths uniform in [N(1-R), N(1+R)], 0 <= R < 1 [0]\n"
        "  --output-len N          max_tokens, with ignore_eos and min_tokens = N [64]\n"
        "  --prompt-file FILE      JSONL {\"prompt\": ...} per line, or a ShareGPT JSON array\n"
        "  --token-unit byte|word  how lengths map to text: byte (exact on the embedded\n"
        "                          runtime) or word (approximate, other servers) [auto]\n"
        "  --seed N                prompt and arrival seed [1]\n"
        "\n"
        "Goals and output:\n"
        "  --slo SPEC              e.g. ttft:500ms,tpot:50ms,e2e:2s (units us, ms, s)\n"
        "  --slo-attainment F      a level meets the SLO when this fraction of its requests\n"
        "                          meets it [0.95]\n"
        "  --metrics-interval MS   /metrics scrape period [200]\n"
        "  --progress / --no-progress   live progress line on stderr [on a TTY only]\n"
        "  -h, --help              this text\n"
        "\n"
        "Writes to --out: batching_benchmark.md, batching_benchmark.html, concurrency_sweep.csv,\n"
        "open_loop.csv (with --rate), batch.json, batch_requests.jsonl (one line per request,\n"
        "written as it completes) and the server log.\n"
        "\n"
        "Common probe options:\n");
    probe_opts_help(f);
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* Copies the next comma-separated item of a list into item and advances *p past it.
 * 1: an item; 0: end of list; -1: an empty or over-long item, or a trailing comma. */
static int list_next(const char **p, char *item, size_t cap)
{
    if (!**p)
        return 0;
    size_t len = strcspn(*p, ",");
    if (len == 0 || len >= cap)
        return -1;
    memcpy(item, *p, len);
    item[len] = '\0';
    *p += len;
    if (**p == ',' && *++*p == '\0')
        return -1;
    return 1;
}

static int parse_int_list(const char *s, int *out, int *n_out, long lo, long hi)
{
    int n = 0, st;
    char item[32];
    while ((st = list_next(&s, item, sizeof item)) == 1)
        if (n >= BATCH_MAX_LEVELS || parse_int(item, lo, hi, &out[n++]))
            return -1;
    *n_out = n;
    return st == 0 && n ? 0 : -1;
}

static int parse_double_list(const char *s, double *out, int *n_out, double lo, double hi)
{
    int n = 0, st;
    char item[48];
    while ((st = list_next(&s, item, sizeof item)) == 1)
        if (n >= BATCH_MAX_LEVELS || parse_double(item, lo, hi, &out[n++]))
            return -1;
    *n_out = n;
    return st == 0 && n ? 0 : -1;
}

/* Parses the command's own options (argv[0] is the command name). 0 ok, 1 help shown, -1 error
 * (message in err). */
static int batch_opts_parse(int argc, char **argv, struct batch_opts *o, char *err, size_t err_len)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
            return 1;
        if (!strcmp(arg, "--progress")) {
            o->progress = 1;
            continue;
        }
        if (!strcmp(arg, "--no-progress")) {
            o->progress = 0;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, err_len, "unexpected argument '%s'", arg);
            return -1;
        }
        char name[64];
        const char *val;
        const char *eq = strchr(arg, '=');
        if (eq) {
            size_t len = (size_t)(eq - arg);
            if (len >= sizeof name) {
                snprintf(err, err_len, "unknown option '%s'", arg);
                return -1;
            }
            memcpy(name, arg, len);
            name[len] = '\0';
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", arg);
            if (i + 1 >= argc) {
                snprintf(err, err_len, "option %s needs a value (or it is unknown)", arg);
                return -1;
            }
            val = argv[++i];
        }
        int bad = 0;
        if (!strcmp(name, "--num-requests"))
            bad = parse_int(val, 1, BATCH_MAX_REQUESTS, &o->num_requests);
        else if (!strcmp(name, "--concurrency"))
            bad = parse_int_list(val, o->conc, &o->n_conc, 1, 100000);
        else if (!strcmp(name, "--requests"))
            bad = parse_int(val, 1, BATCH_MAX_REQUESTS, &o->requests);
        else if (!strcmp(name, "--rounds"))
            bad = parse_int(val, 1, 10000, &o->rounds);
        else if (!strcmp(name, "--duration"))
            bad = parse_double(val, 0.001, 86400.0, &o->duration_s);
        else if (!strcmp(name, "--warmup"))
            bad = parse_int(val, 0, 100000, &o->warmup);
        else if (!strcmp(name, "--repeat"))
            bad = parse_int(val, 1, 100, &o->repeat);
        else if (!strcmp(name, "--rate")) {
            bad = parse_double_list(val, o->rates, &o->n_rates, 1e-6, 1e6);
        } else if (!strcmp(name, "--burstiness"))
            bad = parse_double(val, 1e-3, 1e3, &o->burstiness);
        else if (!strcmp(name, "--max-concurrency"))
            bad = parse_int(val, 1, 100000, &o->max_concurrency);
        else if (!strcmp(name, "--input-len"))
            bad = parse_int(val, 1, WORKLOAD_MAX_LEN_TOKENS, &o->input_len);
        else if (!strcmp(name, "--input-len-range"))
            bad = parse_double(val, 0.0, 0.999, &o->input_len_range);
        else if (!strcmp(name, "--output-len"))
            bad = parse_int(val, 1, 1 << 20, &o->output_len);
        else if (!strcmp(name, "--prompt-file"))
            o->prompt_file = val;
        else if (!strcmp(name, "--token-unit")) {
            if (!strcmp(val, "byte"))
                o->unit = WORKLOAD_UNIT_BYTE;
            else if (!strcmp(val, "word"))
                o->unit = WORKLOAD_UNIT_WORD;
            else
                bad = 1;
        } else if (!strcmp(name, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(val, &end, 10);
            bad = errno || end == val || *end;
            o->seed = v;
        } else if (!strcmp(name, "--slo")) {
            char e[256];
            if (knee_slo_parse(val, &o->slo, e, sizeof e) != KNEE_OK) {
                snprintf(err, err_len, "--slo: %s", e);
                return -1;
            }
            o->slo_spec = val;
        } else if (!strcmp(name, "--slo-attainment"))
            bad = parse_double(val, 0.01, 1.0, &o->slo_attainment);
        else if (!strcmp(name, "--knee-threshold"))
            bad = parse_double(val, 0.001, 10.0, &o->knee_threshold);
        else if (!strcmp(name, "--metrics-interval"))
            bad = parse_int(val, 10, 60000, &o->metrics_interval_ms);
        else if (!strcmp(name, "--modes")) {
            o->do_seqconc = o->do_sweep = o->do_open = 0;
            o->modes_given = 1;
            const char *p = val;
            while (*p && !bad) {
                size_t len = strcspn(p, ",");
                if (len == 7 && !strncmp(p, "seqconc", 7))
                    o->do_seqconc = 1;
                else if (len == 5 && !strncmp(p, "sweep", 5))
                    o->do_sweep = 1;
                else if (len == 4 && !strncmp(p, "open", 4))
                    o->do_open = 1;
                else
                    bad = 1;
                p += len;
                if (*p == ',')
                    p++;
            }
            if (!o->do_seqconc && !o->do_sweep && !o->do_open)
                bad = 1;
        } else {
            snprintf(err, err_len, "unknown option '%s' (see slmprobe batch --help)", name);
            return -1;
        }
        if (bad) {
            snprintf(err, err_len, "invalid value for %s: '%s'", name, val);
            return -1;
        }
    }
    if (o->n_rates && !o->modes_given)
        o->do_open = 1;
    if (o->do_open && !o->n_rates) {
        snprintf(err, err_len, "mode open needs --rate");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* /metrics scraper thread                                                                    */
/* ------------------------------------------------------------------------------------------ */

struct scrape_sample {
    mono_ns t_ns;
    double running, waiting;
    int has_running, has_waiting;
};

struct scraper {
    pthread_t thread;
    int started;
    atomic_int stop;
    pthread_mutex_t mu;
    char url[320];
    const char *api_key;
    int interval_ms;
    struct scrape_sample *s; /* ring of cap samples, guarded by mu */
    size_t n, cap;
    int n_ok, n_fail;
    int gave_up;
    char reason[256];
};

static void *scraper_main(void *arg)
{
    struct scraper *sc = arg;
    int fails_in_row = 0;
    while (!atomic_load(&sc->stop)) {
        struct prom_set set = {0};
        int status = 0;
        char err[256] = "";
        mono_ns t = clock_now_ns();
        enum prom_status st =
            prom_fetch(sc->url, sc->api_key, 2000, &set, &status, err, sizeof err);
        if (st == PROM_OK) {
            struct server_metrics m;
            server_metrics_from_prom(&set, &m);
            pthread_mutex_lock(&sc->mu);
            struct scrape_sample *d = &sc->s[sc->n % sc->cap];
            d->t_ns = t;
            d->running = m.running;
            d->waiting = m.waiting;
            d->has_running = m.has_running;
            d->has_waiting = m.has_waiting;
            sc->n++;
            sc->n_ok++;
            pthread_mutex_unlock(&sc->mu);
            fails_in_row = 0;
        } else {
            pthread_mutex_lock(&sc->mu);
            sc->n_fail++;
            if (!sc->reason[0] || st == PROM_ERR_HTTP)
                snprintf(sc->reason, sizeof sc->reason, "%.60s: %s%s%.150s", sc->url,
                         prom_status_str(st), err[0] ? ": " : "", err);
            pthread_mutex_unlock(&sc->mu);
            /* A server without /metrics (404/501) will not grow one: stop asking. */
            if (st == PROM_ERR_HTTP && ++fails_in_row >= 3) {
                sc->gave_up = 1;
                break;
            }
        }
        prom_set_free(&set);
        for (int slept = 0; slept < sc->interval_ms && !atomic_load(&sc->stop); slept += 10)
            clock_sleep_ns(10 * 1000000ull);
    }
    return NULL;
}

static struct scraper *scraper_new(const char *base_url, const char *api_key, int interval_ms)
{
    struct scraper *sc = xcalloc(1, sizeof *sc);
    snprintf(sc->url, sizeof sc->url, "%s/metrics", base_url);
    sc->api_key = api_key;
    sc->interval_ms = interval_ms;
    sc->cap = 200000;
    sc->s = xcalloc(sc->cap, sizeof *sc->s);
    pthread_mutex_init(&sc->mu, NULL);
    atomic_init(&sc->stop, 0);
    if (pthread_create(&sc->thread, NULL, scraper_main, sc) == 0)
        sc->started = 1;
    else
        snprintf(sc->reason, sizeof sc->reason, "could not start the scraper thread");
    return sc;
}

static void scraper_free(struct scraper *sc)
{
    if (!sc)
        return;
    atomic_store(&sc->stop, 1);
    if (sc->started)
        pthread_join(sc->thread, NULL);
    pthread_mutex_destroy(&sc->mu);
    free(sc->s);
    free(sc);
}

struct scrape_window {
    int n;
    int has_waiting, has_running;
    double waiting_mean, waiting_max, running_mean, running_max;
};

static void scraper_window(struct scraper *sc, mono_ns t0, mono_ns t1, struct scrape_window *w)
{
    memset(w, 0, sizeof *w);
    w->waiting_mean = w->waiting_max = w->running_mean = w->running_max = NAN;
    if (!sc)
        return;
    double ws = 0, rs = 0, wmax = -1, rmax = -1;
    int nw = 0, nr = 0;
    pthread_mutex_lock(&sc->mu);
    size_t first = sc->n > sc->cap ? sc->n - sc->cap : 0;
    for (size_t i = first; i < sc->n; i++) {
        const struct scrape_sample *s = &sc->s[i % sc->cap];
        if (s->t_ns < t0 || s->t_ns > t1)
            continue;
        w->n++;
        if (s->has_waiting) {
            ws += s->waiting;
            wmax = s->waiting > wmax ? s->waiting : wmax;
            nw++;
        }
        if (s->has_running) {
            rs += s->running;
            rmax = s->running > rmax ? s->running : rmax;
            nr++;
        }
    }
    pthread_mutex_unlock(&sc->mu);
    if (nw) {
        w->has_waiting = 1;
        w->waiting_mean = ws / nw;
        w->waiting_max = wmax;
    }
    if (nr) {
        w->has_running = 1;
        w->running_mean = rs / nr;
        w->running_max = rmax;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Level statistics                                                                           */
/* ------------------------------------------------------------------------------------------ */

struct lstats {
    double load;  /* concurrency, or offered rate */
    int complete; /* 0: cut short (server exit, interrupt) */
    int n_sent, n_ok, n_err, n_good;
    int n_err_class[REQ_ERROR__COUNT];
    char err_msg[REQ_ERROR__COUNT][200]; /* first message of each class */
    int n_no_usage;                      /* successful requests without usage (tokens unknown) */
    double duration_s;
    struct summary e2e_ms, ttft_ms, itl_ms, tpot_ms;
    struct summary e2e_int_ms, ttft_int_ms, qdelay_ms; /* open loop: from the intended time */
    double qps, tok_s, total_tok_s, inflight_mean;
    double prompt_tok_mean, prompt_tok_min, prompt_tok_max, out_tok_mean;
    double goodput_frac, goodput_rps;
    double send_rate, offered_rate;
    int gpu_available;
    double gpu_util_mean, gpu_util_max, gpu_mem_max_gib, cpu_mean, cpu_max;
    char gpu_reason[256];
    struct scrape_window sw;
    /* spread over repeats (aggregates only) */
    int n_repeats;
    int n_repeats_cut; /* repeats cut short and left out */
    double tok_s_min, tok_s_max, p95_e2e_min_s, p95_e2e_max_s;
};

/* ------------------------------------------------------------------------------------------ */
/* Run context and phases                                                                     */
/* ------------------------------------------------------------------------------------------ */

enum phase_status { PHASE_STATUS_OK = 0, PHASE_STATUS_SERVER_EXIT, PHASE_STATUS_INTERRUPTED };

struct run_ctx {
    const struct batch_opts *o;
    struct probe_opts *po;
    struct target *t;
    struct client *c;
    struct workload *w;
    struct record_writer *jsonl;
    struct telemetry_sampler *tel;
    struct scraper *scr;
    struct buf prompt;
    uint64_t next_id;
    uint64_t next_prompt;
    int jsonl_failed;
    int progress;
    /* the phase being run */
    const char *tag;
    int level;
    int collect;         /* keep records for statistics (0: warm-up) */
    int closed;          /* closed loop: top up from the callback */
    int to_submit;       /* closed loop: submissions left */
    mono_ns deadline_ns; /* closed loop with --duration: no submissions after */
    int in_flight;
    int n_done;
    mono_ns t_last_ns;
    double inflight_area_ns; /* integral of in-flight count over time */
    struct request_record *recs;
    size_t n_recs, cap_recs;
    /* server health */
    int server_dead;
    int suspect; /* url mode: a connect error asks for a health check */
    char death_msg[768];
    int interrupted;
    int aborted; /* client_abort_all done after a death or interrupt */
    int n_submit_fail;
    struct client_ceiling ceiling; /* the client's measured limits (make bench), if any */
};

static void inflight_account(struct run_ctx *x, mono_ns now)
{
    if (x->t_last_ns && now > x->t_last_ns)
        x->inflight_area_ns += (double)(now - x->t_last_ns) * x->in_flight;
    x->t_last_ns = now;
}

static void note_death(struct run_ctx *x)
{
    if (x->server_dead)
        return;
    x->server_dead = 1;
    if (x->t->launched) {
        char ex[128];
        target_exit_str(&x->t->exit, ex, sizeof ex);
        snprintf(x->death_msg, sizeof x->death_msg, "The server (pid %d) exited during the run: %s",
                 (int)x->t->pid, ex);
    } else {
        snprintf(x->death_msg, sizeof x->death_msg,
                 "The server at %s stopped answering during the run", x->t->base_url);
    }
    log_error(MOD, "%s", x->death_msg);
}

/* Launched server: 1 if it has exited. A connection reset can be seen a moment before the exit is
 * visible to waitpid, so a failing request waits up to ~100 ms for it. */
static int server_exited(struct run_ctx *x, int wait_a_moment)
{
    if (!x->t->launched)
        return 0;
    for (int i = 0; i < (wait_a_moment ? 20 : 1); i++) {
        if (!target_alive(x->t))
            return 1;
        if (wait_a_moment)
            clock_sleep_ns(5 * 1000000ull);
    }
    return 0;
}

static int submit_one(struct run_ctx *x, mono_ns t_intended_ns);

static void on_done(void *ud, struct request_record *rec)
{
    struct run_ctx *x = ud;
    mono_ns now = clock_now_ns();
    inflight_account(x, now);
    x->in_flight--;
    x->n_done++;
    enum req_error e = rec->error;
    if (e == REQ_ERROR_CONNECT || e == REQ_ERROR_PROTOCOL || e == REQ_ERROR_ABORTED ||
        e == REQ_ERROR_TIMEOUT) {
        if (!x->server_dead && server_exited(x, e != REQ_ERROR_ABORTED))
            note_death(x);
        if (x->server_dead)
            rec->error = REQ_ERROR_SERVER_EXIT;
        else if (e == REQ_ERROR_CONNECT && !x->t->launched)
            x->suspect = 1;
    }
    if (x->jsonl && record_writer_append(x->jsonl, rec) != 0 && !x->jsonl_failed) {
        x->jsonl_failed = 1;
        log_error(MOD, "cannot append to the request log: %s", strerror(errno));
    }
    if (x->collect) {
        if (x->n_recs == x->cap_recs) {
            size_t cap = x->cap_recs ? x->cap_recs * 2 : 256;
            struct request_record *p = xrealloc(x->recs, cap * sizeof *p);
            x->recs = p;
            x->cap_recs = cap;
        }
        x->recs[x->n_recs++] = *rec; /* takes t_content_ns */
    } else {
        record_free(rec);
    }
    if (x->closed && x->to_submit > 0 && !x->server_dead && !x->interrupted &&
        !target_interrupted() && (!x->deadline_ns || now < x->deadline_ns)) {
        x->to_submit--;
        submit_one(x, 0);
    }
}

static int submit_one(struct run_ctx *x, mono_ns t_intended_ns)
{
    buf_reset(&x->prompt);
    if (workload_prompt(x->w, x->next_prompt++, &x->prompt, NULL) != WORKLOAD_OK) {
        log_error(MOD, "prompt %llu does not fit the prompt buffer",
                  (unsigned long long)(x->next_prompt - 1));
        x->n_submit_fail++;
        return -1;
    }
    const struct batch_opts *o = x->o;
    /* Warm-ups only need to open connections and run every batch shape: short answers. */
    int n_out =
        x->collect || o->output_len < BATCH_WARMUP_TOKENS ? o->output_len : BATCH_WARMUP_TOKENS;
    struct client_request rq = {
        .id = x->next_id++,
        .tag = x->tag,
        .level = x->level,
        .prompt = x->prompt.data,
        .prompt_len = x->prompt.len,
        .max_tokens = n_out,
        .ignore_eos = 1,
        .min_tokens = n_out,
        .temperature = 0.0,
        .extra_json = NULL,
        .t_intended_ns = t_intended_ns,
    };
    inflight_account(x, clock_now_ns());
    x->in_flight++;
    if (client_submit(x->c, &rq) != 0) {
        x->in_flight--;
        x->n_submit_fail++;
        log_error(MOD, "the client refused request %llu", (unsigned long long)rq.id);
        return -1;
    }
    return 0;
}

static void phase_reset(struct run_ctx *x, const char *tag, int level, int collect)
{
    x->tag = tag;
    x->level = level;
    x->collect = collect;
    x->closed = 0;
    x->to_submit = 0;
    x->deadline_ns = 0;
    x->n_done = 0;
    x->t_last_ns = 0;
    x->inflight_area_ns = 0;
    for (size_t i = 0; i < x->n_recs; i++)
        record_free(&x->recs[i]);
    x->n_recs = 0;
}

static void progress_line(struct run_ctx *x, const char *what, int total, mono_ns t_start)
{
    static mono_ns last;
    mono_ns now = clock_now_ns();
    if (!x->progress || now - last < 250 * 1000000ull)
        return;
    last = now;
    char tot[32] = "";
    if (total > 0)
        snprintf(tot, sizeof tot, "/%d", total);
    fprintf(stderr, "\r\033[K%s: %d%s done, %d in flight, %.1f s", what, x->n_done, tot,
            x->in_flight, ns_to_s(now - t_start));
    fflush(stderr);
}

static void progress_end(struct run_ctx *x)
{
    if (x->progress) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
}

/* Polls until every request of the phase finished; for open loop also sends on schedule. */
static enum phase_status phase_drive(struct run_ctx *x, const char *what, int total,
                                     const mono_ns *sched, int n_sched, int max_conc)
{
    mono_ns t_start = clock_now_ns();
    int i_next = 0;
    while (1) {
        if (target_interrupted() && !x->interrupted) {
            x->interrupted = 1;
            log_warn(MOD, "interrupted: ending the requests in flight");
            client_abort_all(x->c);
        }
        if (!x->server_dead && server_exited(x, 0)) {
            note_death(x);
            client_abort_all(x->c);
        }
        if (x->suspect && !x->server_dead) {
            x->suspect = 0;
            struct buf body;
            buf_init(&body, 256, 4096);
            int status = 0;
            char err[256], url[320];
            snprintf(url, sizeof url, "%s/health", x->t->base_url);
            if (http_get(url, x->po->target.api_key, 2000, &body, &status, err, sizeof err) != 0) {
                note_death(x);
                client_abort_all(x->c);
            }
            buf_free(&body);
        }
        int stopping = x->server_dead || x->interrupted;
        /* A death noticed inside a callback: end what is still in flight (once). */
        if (stopping && !x->aborted && client_in_flight(x->c) > 0) {
            x->aborted = 1;
            client_abort_all(x->c);
        }
        mono_ns now = clock_now_ns();
        long timeout_ms = 50;
        if (sched && !stopping) {
            while (i_next < n_sched && sched[i_next] <= now &&
                   (max_conc <= 0 || x->in_flight < max_conc)) {
                submit_one(x, sched[i_next]);
                i_next++;
                now = clock_now_ns();
            }
            if (i_next < n_sched && (max_conc <= 0 || x->in_flight < max_conc)) {
                mono_ns due = sched[i_next];
                timeout_ms = due > now ? (long)((due - now) / 1000000ull) : 0;
                if (timeout_ms > 50)
                    timeout_ms = 50;
            }
        }
        int pending = sched && !stopping && i_next < n_sched;
        if (!pending && x->in_flight <= 0 && client_in_flight(x->c) == 0)
            break;
        client_poll(x->c, (int)timeout_ms);
        progress_line(x, what, total, t_start);
    }
    progress_end(x);
    if (x->server_dead)
        return PHASE_STATUS_SERVER_EXIT;
    if (x->interrupted)
        return PHASE_STATUS_INTERRUPTED;
    return PHASE_STATUS_OK;
}

/* Closed loop: keeps `concurrency` requests in flight until n_total were sent (or duration_s is
 * over, when > 0). */
static enum phase_status run_closed(struct run_ctx *x, const char *tag, int level, int collect,
                                    int concurrency, int n_total, double duration_s)
{
    phase_reset(x, tag, level, collect);
    x->closed = 1;
    if (duration_s > 0) {
        n_total = BATCH_MAX_REQUESTS;
        x->deadline_ns = clock_now_ns() + (mono_ns)(duration_s * 1e9);
    }
    int first = concurrency < n_total ? concurrency : n_total;
    x->to_submit = n_total - first;
    for (int i = 0; i < first && !x->server_dead; i++)
        submit_one(x, 0);
    return phase_drive(x, tag, duration_s > 0 ? 0 : n_total, NULL, 0, 0);
}

/* Open loop: sends at the precomputed intended times. */
static enum phase_status run_open(struct run_ctx *x, const char *tag, int level,
                                  const mono_ns *sched, int n, int max_conc)
{
    phase_reset(x, tag, level, 1);
    return phase_drive(x, tag, n, sched, n, max_conc);
}

/* ------------------------------------------------------------------------------------------ */
/* Statistics over a phase's records                                                          */
/* ------------------------------------------------------------------------------------------ */

static void compute_stats(struct run_ctx *x, double load, int open_loop, struct lstats *ls)
{
    memset(ls, 0, sizeof *ls);
    ls->load = load;
    ls->complete = !x->server_dead && !x->interrupted;
    ls->n_repeats = 1;
    size_t n = x->n_recs;
    const struct request_record *r = x->recs;
    double *e2e = xcalloc(n + 1, sizeof(double)), *ttft = xcalloc(n + 1, sizeof(double));
    double *tpot = xcalloc(n + 1, sizeof(double)), *e2e_i = xcalloc(n + 1, sizeof(double));
    double *ttft_i = xcalloc(n + 1, sizeof(double)), *qd = xcalloc(n + 1, sizeof(double));
    size_t n_itl = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].error == REQ_ERROR_NONE && r[i].n_content_events > 1)
            n_itl += r[i].n_content_events - 1;
    double *itl = xcalloc(n_itl + 1, sizeof(double));
    size_t n_e2e = 0, n_ttft = 0, n_tpot = 0, n_e2e_i = 0, n_ttft_i = 0, n_qd = 0, k_itl = 0;
    mono_ns t0 = 0, t1 = 0, s0 = 0, s1 = 0, i0 = 0, i1 = 0;
    double out_tok = 0, prompt_tok = 0, n_prompt_known = 0;
    double pmin = NAN, pmax = NAN;
    for (size_t i = 0; i < n; i++) {
        const struct request_record *q = &r[i];
        ls->n_sent++;
        mono_ns start = open_loop && q->t_intended_ns ? q->t_intended_ns : q->t_sent_ns;
        if (q->t_sent_ns && (!t0 || start < t0))
            t0 = start;
        if (q->t_done_ns > t1)
            t1 = q->t_done_ns;
        if (q->t_sent_ns && (!s0 || q->t_sent_ns < s0))
            s0 = q->t_sent_ns;
        if (q->t_sent_ns > s1)
            s1 = q->t_sent_ns;
        if (q->t_intended_ns && (!i0 || q->t_intended_ns < i0))
            i0 = q->t_intended_ns;
        if (q->t_intended_ns > i1)
            i1 = q->t_intended_ns;
        if (q->t_sent_ns && q->t_intended_ns && q->t_sent_ns >= q->t_intended_ns)
            qd[n_qd++] = ns_to_ms(q->t_sent_ns - q->t_intended_ns);
        if (q->error != REQ_ERROR_NONE) {
            ls->n_err++;
            if ((unsigned)q->error < REQ_ERROR__COUNT) {
                if (!ls->n_err_class[q->error]++)
                    snprintf(ls->err_msg[q->error], sizeof ls->err_msg[q->error], "%.*s",
                             (int)sizeof ls->err_msg[0] - 1, q->error_msg);
            }
            continue;
        }
        ls->n_ok++;
        int64_t v;
        double e2e_v = NAN, ttft_v = NAN, tpot_v = record_tpot_ms(q);
        if ((v = record_e2e_ns(q)) >= 0)
            e2e[n_e2e++] = e2e_v = ns_to_ms((uint64_t)v);
        if ((v = record_ttft_ns(q)) >= 0)
            ttft[n_ttft++] = ttft_v = ns_to_ms((uint64_t)v);
        if (!isnan(tpot_v))
            tpot[n_tpot++] = tpot_v;
        if ((v = record_e2e_intended_ns(q)) >= 0)
            e2e_i[n_e2e_i++] = ns_to_ms((uint64_t)v);
        if ((v = record_ttft_intended_ns(q)) >= 0)
            ttft_i[n_ttft_i++] = ns_to_ms((uint64_t)v);
        k_itl += record_itl_ms(q, itl + k_itl, n_itl - k_itl);
        if (q->n_completion_tokens >= 0)
            out_tok += q->n_completion_tokens;
        else
            ls->n_no_usage++;
        if (q->n_prompt_tokens >= 0) {
            prompt_tok += q->n_prompt_tokens;
            n_prompt_known++;
            if (isnan(pmin) || q->n_prompt_tokens < pmin)
                pmin = q->n_prompt_tokens;
            if (isnan(pmax) || q->n_prompt_tokens > pmax)
                pmax = q->n_prompt_tokens;
        }
        /* Goodput: latency measured from the intended send time in open loop (what a user sees). */
        double slo_e2e = e2e_v, slo_ttft = ttft_v;
        if (open_loop) {
            int64_t a = record_e2e_intended_ns(q), b = record_ttft_intended_ns(q);
            slo_e2e = a >= 0 ? ns_to_ms((uint64_t)a) : NAN;
            slo_ttft = b >= 0 ? ns_to_ms((uint64_t)b) : NAN;
        }
        if (knee_slo_met(&x->o->slo, slo_ttft, tpot_v, slo_e2e))
            ls->n_good++;
    }
    if (k_itl > n_itl)
        k_itl = n_itl;
    summary_of(e2e, n_e2e, &ls->e2e_ms);
    summary_of(ttft, n_ttft, &ls->ttft_ms);
    summary_of(tpot, n_tpot, &ls->tpot_ms);
    summary_of(itl, k_itl, &ls->itl_ms);
    summary_of(e2e_i, n_e2e_i, &ls->e2e_int_ms);
    summary_of(ttft_i, n_ttft_i, &ls->ttft_int_ms);
    summary_of(qd, n_qd, &ls->qdelay_ms);
    ls->duration_s = t1 > t0 ? ns_to_s(t1 - t0) : NAN;
    ls->qps = stats_rate(ls->n_ok, ls->duration_s);
    ls->tok_s = ls->n_ok > ls->n_no_usage ? stats_rate(out_tok, ls->duration_s) : NAN;
    ls->total_tok_s = n_prompt_known ? stats_rate(out_tok + prompt_tok, ls->duration_s) : NAN;
    ls->inflight_mean = t1 > t0 ? x->inflight_area_ns / (double)(t1 - t0) : NAN;
    ls->prompt_tok_mean = n_prompt_known ? prompt_tok / n_prompt_known : NAN;
    ls->prompt_tok_min = pmin;
    ls->prompt_tok_max = pmax;
    ls->out_tok_mean = ls->n_ok > ls->n_no_usage ? out_tok / (ls->n_ok - ls->n_no_usage) : NAN;
    if (knee_slo_is_set(&x->o->slo)) {
        ls->goodput_frac = ls->n_sent ? (double)ls->n_good / ls->n_sent : NAN;
        ls->goodput_rps = stats_rate(ls->n_good, ls->duration_s);
    } else {
        ls->goodput_frac = ls->goodput_rps = NAN;
    }
    ls->send_rate = s1 > s0 && ls->n_sent > 1 ? (ls->n_sent - 1) / ns_to_s(s1 - s0) : NAN;
    ls->offered_rate = i1 > i0 && ls->n_sent > 1 ? (ls->n_sent - 1) / ns_to_s(i1 - i0) : NAN;
    /* One content event carries about one token: tok/s stands for the client's event rate. */
    char ceiling_msg[256];
    if (x->ceiling.valid &&
        client_ceiling_warn(&x->ceiling, ls->tok_s, ls->qps, ceiling_msg, sizeof ceiling_msg))
        log_warn(MOD, "%s %g: %s", x->tag ? x->tag : "level", ls->load, ceiling_msg);
    /* Telemetry and /metrics over the same window. */
    ls->gpu_util_mean = ls->gpu_util_max = ls->gpu_mem_max_gib = ls->cpu_mean = ls->cpu_max = NAN;
    if (x->tel && t1 > t0) {
        struct telemetry_window tw;
        if (telemetry_sampler_window(x->tel, t0, t1 + 1000000, &tw) == 0) {
            ls->cpu_mean = tw.cpu_mean_pct;
            ls->cpu_max = tw.cpu_max_pct;
            ls->gpu_available = tw.gpu_available;
            if (tw.gpu_available) {
                ls->gpu_util_mean = tw.gpu_util_mean_pct;
                ls->gpu_util_max = tw.gpu_util_max_pct;
                ls->gpu_mem_max_gib =
                    tw.gpu_mem_used_max_bytes >= 0
                        ? (double)tw.gpu_mem_used_max_bytes / (1024.0 * 1024 * 1024)
                        : NAN;
            } else {
                snprintf(ls->gpu_reason, sizeof ls->gpu_reason, "%s", tw.gpu_reason);
            }
        }
    }
    scraper_window(x->scr, t0, t1, &ls->sw);
    free(e2e);
    free(ttft);
    free(tpot);
    free(e2e_i);
    free(ttft_i);
    free(qd);
    free(itl);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *v, int n)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i]))
            v[m++] = v[i];
    if (!m)
        return NAN;
    qsort(v, (size_t)m, sizeof *v, cmp_double);
    return m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
}

static void minmax_of(const double *v, int n, double *lo, double *hi)
{
    *lo = *hi = NAN;
    for (int i = 0; i < n; i++) {
        if (isnan(v[i]))
            continue;
        if (isnan(*lo) || v[i] < *lo)
            *lo = v[i];
        if (isnan(*hi) || v[i] > *hi)
            *hi = v[i];
    }
}

/* One row from R repeats: medians of every metric, sums of counts, min/max of the spreads. */
static void aggregate(const struct lstats *rep, int R, struct lstats *out)
{
    double v[128];
    if (R > 128)
        R = 128;
    *out = rep[0];
    out->n_repeats = R;
#define AGG(f)                                                                                     \
    do {                                                                                           \
        for (int k_ = 0; k_ < R; k_++)                                                             \
            v[k_] = rep[k_].f;                                                                     \
        out->f = median_of(v, R);                                                                  \
    } while (0)
#define AGG_SUM(f)                                                                                 \
    do {                                                                                           \
        for (int k_ = 1; k_ < R; k_++)                                                             \
            out->f += rep[k_].f;                                                                   \
    } while (0)
#define AGG_SUMMARY(s)                                                                             \
    do {                                                                                           \
        AGG(s.mean);                                                                               \
        AGG(s.p50);                                                                                \
        AGG(s.p90);                                                                                \
        AGG(s.p95);                                                                                \
        AGG(s.p99);                                                                                \
        AGG(s.stddev);                                                                             \
        double lo_, hi_;                                                                           \
        for (int k_ = 0; k_ < R; k_++)                                                             \
            v[k_] = rep[k_].s.min;                                                                 \
        minmax_of(v, R, &lo_, &hi_);                                                               \
        out->s.min = lo_;                                                                          \
        for (int k_ = 0; k_ < R; k_++)                                                             \
            v[k_] = rep[k_].s.max;                                                                 \
        minmax_of(v, R, &lo_, &hi_);                                                               \
        out->s.max = hi_;                                                                          \
        AGG_SUM(s.n);                                                                              \
    } while (0)
    AGG_SUMMARY(e2e_ms);
    AGG_SUMMARY(ttft_ms);
    AGG_SUMMARY(itl_ms);
    AGG_SUMMARY(tpot_ms);
    AGG_SUMMARY(e2e_int_ms);
    AGG_SUMMARY(ttft_int_ms);
    AGG_SUMMARY(qdelay_ms);
    AGG(duration_s);
    AGG(qps);
    AGG(tok_s);
    AGG(total_tok_s);
    AGG(inflight_mean);
    AGG(prompt_tok_mean);
    AGG(out_tok_mean);
    AGG(goodput_rps);
    AGG(send_rate);
    AGG(offered_rate);
    AGG(gpu_util_mean);
    AGG(cpu_mean);
    AGG(sw.waiting_mean);
    AGG(sw.running_mean);
    for (int k = 0; k < R; k++)
        v[k] = rep[k].tok_s;
    minmax_of(v, R, &out->tok_s_min, &out->tok_s_max);
    for (int k = 0; k < R; k++)
        v[k] = rep[k].e2e_ms.p95 / 1000.0;
    minmax_of(v, R, &out->p95_e2e_min_s, &out->p95_e2e_max_s);
    double lo, hi;
#define AGG_MAX(f)                                                                                 \
    do {                                                                                           \
        for (int k_ = 0; k_ < R; k_++)                                                             \
            v[k_] = rep[k_].f;                                                                     \
        minmax_of(v, R, &lo, &hi);                                                                 \
        out->f = hi;                                                                               \
    } while (0)
#define AGG_MIN(f)                                                                                 \
    do {                                                                                           \
        for (int k_ = 0; k_ < R; k_++)                                                             \
            v[k_] = rep[k_].f;                                                                     \
        minmax_of(v, R, &lo, &hi);                                                                 \
        out->f = lo;                                                                               \
    } while (0)
    AGG_MAX(gpu_util_max);
    AGG_MAX(gpu_mem_max_gib);
    AGG_MAX(cpu_max);
    AGG_MAX(sw.waiting_max);
    AGG_MAX(sw.running_max);
    AGG_MAX(prompt_tok_max);
    AGG_MIN(prompt_tok_min);
    AGG_SUM(n_sent);
    AGG_SUM(n_ok);
    AGG_SUM(n_err);
    AGG_SUM(n_good);
    AGG_SUM(n_no_usage);
    AGG_SUM(sw.n);
    for (int k = 1; k < R; k++) {
        out->complete &= rep[k].complete;
        out->gpu_available |= rep[k].gpu_available;
        out->sw.has_waiting |= rep[k].sw.has_waiting;
        out->sw.has_running |= rep[k].sw.has_running;
        for (int e = 0; e < REQ_ERROR__COUNT; e++) {
            if (!out->n_err_class[e] && rep[k].n_err_class[e])
                memcpy(out->err_msg[e], rep[k].err_msg[e], sizeof out->err_msg[e]);
            out->n_err_class[e] += rep[k].n_err_class[e];
        }
    }
    out->goodput_frac =
        !isnan(rep[0].goodput_frac) && out->n_sent ? (double)out->n_good / out->n_sent : NAN;
#undef AGG
#undef AGG_SUM
#undef AGG_SUMMARY
#undef AGG_MAX
#undef AGG_MIN
}

static void errors_str(const struct lstats *ls, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (int e = 1; e < REQ_ERROR__COUNT; e++) {
        if (!ls->n_err_class[e])
            continue;
        int w = snprintf(out + len, n - len, "%s%s:%d", len ? " " : "", req_error_str(e),
                         ls->n_err_class[e]);
        if (w < 0 || (size_t)w >= n - len)
            break;
        len += (size_t)w;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Open-loop schedules                                                                        */
/* ------------------------------------------------------------------------------------------ */

static uint64_t rng_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) /* (0, 1] */
{
    return ((double)(rng_u64(s) >> 11) + 1.0) / 9007199254740992.0;
}

static double rng_normal(uint64_t *s)
{
    double u1 = rng_unit(s), u2 = rng_unit(s);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Gamma(shape k, scale 1): Marsaglia-Tsang; k < 1 via Gamma(k+1) * U^(1/k). */
static double rng_gamma(uint64_t *s, double k)
{
    if (k < 1.0)
        return rng_gamma(s, k + 1.0) * pow(rng_unit(s), 1.0 / k);
    double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    while (1) {
        double z = rng_normal(s), v = 1.0 + c * z;
        if (v <= 0)
            continue;
        v = v * v * v;
        double u = rng_unit(s);
        if (log(u) < 0.5 * z * z + d - d * v + d * log(v))
            return d * v;
    }
}

/* n intended send times from t0: gaps Gamma(B, 1/(rate B)) (B = 1: exponential, Poisson). The
 * first request goes at t0. */
static void make_schedule(mono_ns *out, int n, mono_ns t0, double rate, double burstiness,
                          uint64_t seed)
{
    uint64_t s = seed ^ 0x5eed5eed5eedull;
    double t = 0;
    for (int i = 0; i < n; i++) {
        out[i] = t0 + (mono_ns)(t * 1e9);
        double gap = burstiness == 1.0 ? -log(rng_unit(&s)) / rate
                                       : rng_gamma(&s, burstiness) / (rate * burstiness);
        t += gap;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Report                                                                                     */
/* ------------------------------------------------------------------------------------------ */

struct batch_results {
    struct lstats seq, conc;
    int have_seqconc;
    struct lstats sweep[BATCH_MAX_LEVELS];
    int n_sweep;
    struct lstats open[BATCH_MAX_LEVELS];
    int n_open;
    char open_warn[BATCH_MAX_LEVELS][256];
    struct knee_level kl[BATCH_MAX_LEVELS];
    int kl_row[BATCH_MAX_LEVELS]; /* sweep row of each knee level */
    int n_kl;
    struct knee_result kr;
    struct knee_rules rules;
    struct knee_level okl[BATCH_MAX_LEVELS];
    int n_okl;
    struct knee_result okr;
    struct knee_rules orules;
    char slo_desc[160];
    char failure[1024];
    struct stop_info {
        int launched;
        struct target_stop_result sr;
    } stop;
};

static double ms_to_s(double ms)
{
    return ms / 1000.0;
}

static void knee_levels_fill(const struct lstats *ls, int n, struct knee_level *kl, int *row,
                             int *n_out)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!ls[i].complete)
            continue;
        kl[m] =
            (struct knee_level){.load = ls[i].load,
                                .tok_s = ls[i].tok_s,
                                .qps = ls[i].qps,
                                .p95_e2e_s = ms_to_s(ls[i].e2e_ms.p95),
                                .p95_ttft_ms = ls[i].ttft_ms.p95,
                                .p95_tpot_ms = ls[i].tpot_ms.p95,
                                .goodput_frac = ls[i].goodput_frac,
                                .goodput_rps = ls[i].goodput_rps,
                                .waiting_mean = ls[i].sw.has_waiting ? ls[i].sw.waiting_mean : NAN,
                                .waiting_max = ls[i].sw.has_waiting ? ls[i].sw.waiting_max : NAN,
                                .n_ok = ls[i].n_ok,
                                .n_err = ls[i].n_err};
        if (row)
            row[m] = i;
        m++;
    }
    *n_out = m;
}

static void add_summary_cells(struct report_table *t, size_t row, int *col, const struct summary *s,
                              double scale)
{
    report_cell_num(t, row, (*col)++, s->mean * scale);
    report_cell_num(t, row, (*col)++, s->p50 * scale);
    report_cell_num(t, row, (*col)++, s->p95 * scale);
    report_cell_num(t, row, (*col)++, s->p99 * scale);
}

static void add_summary_cols(struct report_table *t, const char *key, const char *label,
                             const char *unit, int prec)
{
    const char *q[4] = {"mean", "p50", "p95", "p99"};
    for (int i = 0; i < 4; i++) {
        char k[64], l[64];
        snprintf(k, sizeof k, "%s_%s_%s", q[i], key, unit);
        snprintf(l, sizeof l, "%s %s", q[i], label);
        report_table_col(t, k, l, unit, REPORT_COL_NUMBER, prec);
    }
}

static void sweep_notes(const struct batch_results *res, int row, char *out, size_t n)
{
    const struct lstats *ls = &res->sweep[row];
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
        errors_str(ls, e, sizeof e);
        NOTE("errors %s", e);
    }
    if (ls->n_no_usage)
        NOTE("%d responses without usage", ls->n_no_usage);
#undef NOTE
}

static void build_report(struct report *r, const struct batch_opts *o, const struct probe_opts *po,
                         const struct target *t, const struct workload *w,
                         struct batch_results *res, const char *cmdline, const char *model)
{
    char when[32];
    clock_wall_iso(when, sizeof when);
    report_meta(r, "date", "%s", when);
    report_meta(r, "slmprobe", "%s", SLMPROBE_VERSION);
    report_meta(r, "server", "%s%s", target_kind_str(po->target.kind),
                t->launched ? " (launched by slmprobe)" : " (already running; not launched)");
    report_meta(r, "url", "%s", t->base_url);
    report_meta(r, "model", "%s", model ? model : "?");
    if (t->version[0])
        report_meta(r, "server_version", "%s", t->version);
    if (t->max_model_len > 0)
        report_meta(r, "max_model_len", "%d", t->max_model_len);
    report_meta(r, "command", "%s", cmdline);
    report_set_html_name(r, "batching_benchmark.html");

    if (res->failure[0]) {
        struct report_section *s = report_section_add(r, "failure", "Run failure");
        report_paragraph(s, "%s", res->failure);
    }

    /* Configuration and workload. */
    struct report_section *s = report_section_add(r, "config", "Configuration and workload");
    struct buf d;
    buf_init(&d, 512, 8192);
    workload_describe(w, &d);
    report_paragraph(s, "%s", d.data);
    buf_free(&d);
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
        const struct lstats *ls = &res->sweep[i];
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

    /* Definitions. */
    s = report_section_add(r, "definitions", "Metric definitions");
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

    /* Sequential vs concurrent. */
    if (res->have_seqconc) {
        s = report_section_add(r, "seqconc", "Sequential vs concurrent");
        struct report_table *tb = report_table_add(s, "seqconc", NULL);
        report_table_col(tb, "mode", "Mode", NULL, REPORT_COL_TEXT, 0);
        report_table_col(tb, "n_requests", "Requests", NULL, REPORT_COL_NUMBER, 0);
        report_table_col(tb, "n_ok", "Succeeded", NULL, REPORT_COL_NUMBER, 0);
        report_table_col(tb, "wall_s", "Wall time", "s", REPORT_COL_NUMBER, 3);
        report_table_col(tb, "qps", "QPS", "req/s", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "tok_s", "Output tok/s", "tok/s", REPORT_COL_NUMBER, 1);
        report_table_col(tb, "p95_e2e_s", "p95 e2e", "s", REPORT_COL_NUMBER, 3);
        report_table_col(tb, "inflight_mean", "In flight (mean)", NULL, REPORT_COL_NUMBER, 2);
        const struct lstats *rows[2] = {&res->seq, &res->conc};
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

    /* Sweep. */
    if (res->n_sweep) {
        s = report_section_add(r, "sweep", "Concurrency sweep");
        struct report_table *tb = report_table_add(s, "sweep", NULL);
        report_table_col(tb, "concurrency", "Concurrency", NULL, REPORT_COL_NUMBER, 0);
        report_table_col(tb, "mean_e2e_s", "mean e2e", "s", REPORT_COL_NUMBER, 3);
        report_table_col(tb, "p95_e2e_s", "p95 e2e", "s", REPORT_COL_NUMBER, 3);
        report_table_col(tb, "qps", "QPS", "req/s", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "tok_s", "Output tok/s", "tok/s", REPORT_COL_NUMBER, 1);
        int c_gpu = report_table_col(tb, "gpu_util_pct", "GPU util", "%", REPORT_COL_NUMBER, 0);
        int c_notes = report_table_col(tb, "notes", "Notes", NULL, REPORT_COL_TEXT, 0);
        report_table_col(tb, "p50_e2e_s", "p50 e2e", "s", REPORT_COL_NUMBER, 3);
        report_table_col(tb, "p99_e2e_s", "p99 e2e", "s", REPORT_COL_NUMBER, 3);
        add_summary_cols(tb, "ttft", "TTFT", "ms", 1);
        add_summary_cols(tb, "itl", "ITL", "ms", 2);
        add_summary_cols(tb, "tpot", "TPOT", "ms", 2);
        report_table_col(tb, "total_tok_s", "Total tok/s", "tok/s", REPORT_COL_NUMBER, 1);
        report_table_col(tb, "inflight_mean", "In flight (mean)", NULL, REPORT_COL_NUMBER, 2);
        report_table_col(tb, "n_requests", "Requests", NULL, REPORT_COL_NUMBER, 0);
        report_table_col(tb, "n_ok", "Succeeded", NULL, REPORT_COL_NUMBER, 0);
        report_table_col(tb, "n_errors", "Errors", NULL, REPORT_COL_NUMBER, 0);
        int c_errs = report_table_col(tb, "errors", "Errors by class", NULL, REPORT_COL_TEXT, 0);
        int c_gmax =
            report_table_col(tb, "gpu_util_max_pct", "GPU util max", "%", REPORT_COL_NUMBER, 0);
        int c_gmem =
            report_table_col(tb, "gpu_mem_max_gib", "GPU memory max", "GiB", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "cpu_mean_pct", "Server CPU", "%", REPORT_COL_NUMBER, 0);
        report_table_col(tb, "cpu_max_pct", "Server CPU max", "%", REPORT_COL_NUMBER, 0);
        int c_wm =
            report_table_col(tb, "waiting_mean", "Waiting (mean)", NULL, REPORT_COL_NUMBER, 2);
        int c_wx = report_table_col(tb, "waiting_max", "Waiting (max)", NULL, REPORT_COL_NUMBER, 0);
        int c_rm =
            report_table_col(tb, "running_mean", "Running (mean)", NULL, REPORT_COL_NUMBER, 2);
        int c_rx = report_table_col(tb, "running_max", "Running (max)", NULL, REPORT_COL_NUMBER, 0);
        int c_gp = report_table_col(tb, "goodput_pct", "Goodput", "%", REPORT_COL_NUMBER, 1);
        int c_gr =
            report_table_col(tb, "goodput_rps", "Goodput rate", "req/s", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "repeats", "Repeats", NULL, REPORT_COL_NUMBER, 0);
        report_table_col(tb, "tok_s_min", "tok/s min", "tok/s", REPORT_COL_NUMBER, 1);
        report_table_col(tb, "tok_s_max", "tok/s max", "tok/s", REPORT_COL_NUMBER, 1);
        report_table_col(tb, "p95_e2e_min_s", "p95 e2e min", "s", REPORT_COL_NUMBER, 3);
        report_table_col(tb, "p95_e2e_max_s", "p95 e2e max", "s", REPORT_COL_NUMBER, 3);
        report_table_col(tb, "prompt_tokens_mean", "Prompt tokens (mean)", NULL, REPORT_COL_NUMBER,
                         1);
        report_table_col(tb, "output_tokens_mean", "Output tokens (mean)", NULL, REPORT_COL_NUMBER,
                         1);
        report_table_col(tb, "duration_s", "Window", "s", REPORT_COL_NUMBER, 3);
        double xs[BATCH_MAX_LEVELS], ys_t[BATCH_MAX_LEVELS], ys_l[BATCH_MAX_LEVELS],
            ys_ttft[BATCH_MAX_LEVELS];
        size_t nc = 0;
        for (int i = 0; i < res->n_sweep; i++) {
            const struct lstats *ls = &res->sweep[i];
            size_t row = report_table_row_add(tb);
            int col = 0;
            report_cell_num(tb, row, col++, ls->load);
            report_cell_num(tb, row, col++, ms_to_s(ls->e2e_ms.mean));
            report_cell_num(tb, row, col++, ms_to_s(ls->e2e_ms.p95));
            report_cell_num(tb, row, col++, ls->qps);
            report_cell_num(tb, row, col++, ls->tok_s);
            if (ls->gpu_available)
                report_cell_num(tb, row, c_gpu, ls->gpu_util_mean);
            else
                report_cell_na(tb, row, c_gpu, "no GPU");
            char notes[512];
            sweep_notes(res, i, notes, sizeof notes);
            report_cell_text(tb, row, c_notes, "%s", notes);
            col = c_notes + 1;
            report_cell_num(tb, row, col++, ms_to_s(ls->e2e_ms.p50));
            report_cell_num(tb, row, col++, ms_to_s(ls->e2e_ms.p99));
            add_summary_cells(tb, row, &col, &ls->ttft_ms, 1.0);
            add_summary_cells(tb, row, &col, &ls->itl_ms, 1.0);
            add_summary_cells(tb, row, &col, &ls->tpot_ms, 1.0);
            report_cell_num(tb, row, col++, ls->total_tok_s);
            report_cell_num(tb, row, col++, ls->inflight_mean);
            report_cell_num(tb, row, col++, ls->n_sent);
            report_cell_num(tb, row, col++, ls->n_ok);
            report_cell_num(tb, row, col++, ls->n_err);
            char e[160];
            errors_str(ls, e, sizeof e);
            report_cell_text(tb, row, c_errs, "%s", e[0] ? e : "none");
            if (ls->gpu_available) {
                report_cell_num(tb, row, c_gmax, ls->gpu_util_max);
                report_cell_num(tb, row, c_gmem, ls->gpu_mem_max_gib);
            } else {
                report_cell_na(tb, row, c_gmax, "no GPU");
                report_cell_na(tb, row, c_gmem, "no GPU");
            }
            col = c_gmem + 1;
            report_cell_num(tb, row, col++, ls->cpu_mean);
            report_cell_num(tb, row, col++, ls->cpu_max);
            if (ls->sw.has_waiting) {
                report_cell_num(tb, row, c_wm, ls->sw.waiting_mean);
                report_cell_num(tb, row, c_wx, ls->sw.waiting_max);
            } else {
                report_cell_na(tb, row, c_wm, "no /metrics");
                report_cell_na(tb, row, c_wx, "no /metrics");
            }
            if (ls->sw.has_running) {
                report_cell_num(tb, row, c_rm, ls->sw.running_mean);
                report_cell_num(tb, row, c_rx, ls->sw.running_max);
            } else {
                report_cell_na(tb, row, c_rm, "no /metrics");
                report_cell_na(tb, row, c_rx, "no /metrics");
            }
            if (!isnan(ls->goodput_frac)) {
                report_cell_num(tb, row, c_gp, 100.0 * ls->goodput_frac);
                report_cell_num(tb, row, c_gr, ls->goodput_rps);
            } else {
                report_cell_na(tb, row, c_gp, "no SLO");
                report_cell_na(tb, row, c_gr, "no SLO");
            }
            col = c_gr + 1;
            report_cell_num(tb, row, col++, ls->n_repeats);
            report_cell_num(tb, row, col++, ls->tok_s_min);
            report_cell_num(tb, row, col++, ls->tok_s_max);
            report_cell_num(tb, row, col++, ls->p95_e2e_min_s);
            report_cell_num(tb, row, col++, ls->p95_e2e_max_s);
            report_cell_num(tb, row, col++, ls->prompt_tok_mean);
            report_cell_num(tb, row, col++, ls->out_tok_mean);
            report_cell_num(tb, row, col++, ls->duration_s);
            if (ls->complete && ls->n_ok > 0) {
                xs[nc] = ls->load;
                ys_t[nc] = ls->tok_s;
                ys_l[nc] = ms_to_s(ls->e2e_ms.p95);
                ys_ttft[nc] = ls->ttft_ms.p95;
                nc++;
            }
        }
        if (!res->sweep[0].gpu_available && res->sweep[0].gpu_reason[0])
            report_paragraph(s, "GPU columns: no GPU (%s).", res->sweep[0].gpu_reason);
        struct report_chart *ch =
            report_chart_add(s, REPORT_CHART_LINE, "throughput", "Throughput vs concurrency",
                             "concurrency", NULL, "output throughput", "tok/s");
        report_chart_log_x(ch, 1);
        report_chart_series(ch, "output tok/s (median)", xs, ys_t, nc);
        ch = report_chart_add(s, REPORT_CHART_LINE, "p95_e2e", "p95 e2e latency vs concurrency",
                              "concurrency", NULL, "p95 e2e", "s");
        report_chart_log_x(ch, 1);
        report_chart_series(ch, "p95 e2e (median)", xs, ys_l, nc);
        ch = report_chart_add(s, REPORT_CHART_LINE, "p95_ttft", "p95 TTFT vs concurrency",
                              "concurrency", NULL, "p95 TTFT", "ms");
        report_chart_log_x(ch, 1);
        report_chart_series(ch, "p95 TTFT (median)", xs, ys_ttft, nc);

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

    /* Open loop. */
    if (res->n_open) {
        s = report_section_add(r, "open", "Open-loop load");
        for (int i = 0; i < res->n_open; i++)
            if (res->open_warn[i][0])
                report_bullet(s, "%s", res->open_warn[i]);
        struct report_table *tb = report_table_add(s, "open", NULL);
        report_table_col(tb, "rate_rps", "Offered rate", "req/s", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "scheduled_rate_rps", "Scheduled rate", "req/s", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "send_rate_rps", "Achieved send rate", "req/s", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "n_requests", "Requests", NULL, REPORT_COL_NUMBER, 0);
        report_table_col(tb, "n_ok", "Succeeded", NULL, REPORT_COL_NUMBER, 0);
        report_table_col(tb, "qps", "QPS", "req/s", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "tok_s", "Output tok/s", "tok/s", REPORT_COL_NUMBER, 1);
        report_table_col(tb, "p50_e2e_s", "p50 e2e (from send)", "s", REPORT_COL_NUMBER, 3);
        report_table_col(tb, "p95_e2e_s", "p95 e2e (from send)", "s", REPORT_COL_NUMBER, 3);
        report_table_col(tb, "p50_e2e_intended_s", "p50 e2e (from intended)", "s",
                         REPORT_COL_NUMBER, 3);
        report_table_col(tb, "p95_e2e_intended_s", "p95 e2e (from intended)", "s",
                         REPORT_COL_NUMBER, 3);
        report_table_col(tb, "p95_ttft_ms", "p95 TTFT (from send)", "ms", REPORT_COL_NUMBER, 1);
        report_table_col(tb, "p95_ttft_intended_ms", "p95 TTFT (from intended)", "ms",
                         REPORT_COL_NUMBER, 1);
        report_table_col(tb, "p95_tpot_ms", "p95 TPOT", "ms", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "p95_itl_ms", "p95 ITL", "ms", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "p50_queue_delay_ms", "p50 queue delay", "ms", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "p95_queue_delay_ms", "p95 queue delay", "ms", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "max_queue_delay_ms", "max queue delay", "ms", REPORT_COL_NUMBER, 2);
        report_table_col(tb, "inflight_mean", "In flight (mean)", NULL, REPORT_COL_NUMBER, 2);
        int c_errs = report_table_col(tb, "errors", "Errors by class", NULL, REPORT_COL_TEXT, 0);
        int c_gpu = report_table_col(tb, "gpu_util_pct", "GPU util", "%", REPORT_COL_NUMBER, 0);
        report_table_col(tb, "cpu_mean_pct", "Server CPU", "%", REPORT_COL_NUMBER, 0);
        int c_wm =
            report_table_col(tb, "waiting_mean", "Waiting (mean)", NULL, REPORT_COL_NUMBER, 2);
        int c_wx = report_table_col(tb, "waiting_max", "Waiting (max)", NULL, REPORT_COL_NUMBER, 0);
        int c_gp = report_table_col(tb, "goodput_pct", "Goodput", "%", REPORT_COL_NUMBER, 1);
        int c_gr =
            report_table_col(tb, "goodput_rps", "Goodput rate", "req/s", REPORT_COL_NUMBER, 2);
        double xs[BATCH_MAX_LEVELS], ys_s[BATCH_MAX_LEVELS], ys_i[BATCH_MAX_LEVELS];
        size_t nc = 0;
        for (int i = 0; i < res->n_open; i++) {
            const struct lstats *ls = &res->open[i];
            size_t row = report_table_row_add(tb);
            int col = 0;
            report_cell_num(tb, row, col++, ls->load);
            report_cell_num(tb, row, col++, ls->offered_rate);
            report_cell_num(tb, row, col++, ls->send_rate);
            report_cell_num(tb, row, col++, ls->n_sent);
            report_cell_num(tb, row, col++, ls->n_ok);
            report_cell_num(tb, row, col++, ls->qps);
            report_cell_num(tb, row, col++, ls->tok_s);
            report_cell_num(tb, row, col++, ms_to_s(ls->e2e_ms.p50));
            report_cell_num(tb, row, col++, ms_to_s(ls->e2e_ms.p95));
            report_cell_num(tb, row, col++, ms_to_s(ls->e2e_int_ms.p50));
            report_cell_num(tb, row, col++, ms_to_s(ls->e2e_int_ms.p95));
            report_cell_num(tb, row, col++, ls->ttft_ms.p95);
            report_cell_num(tb, row, col++, ls->ttft_int_ms.p95);
            report_cell_num(tb, row, col++, ls->tpot_ms.p95);
            report_cell_num(tb, row, col++, ls->itl_ms.p95);
            report_cell_num(tb, row, col++, ls->qdelay_ms.p50);
            report_cell_num(tb, row, col++, ls->qdelay_ms.p95);
            report_cell_num(tb, row, col++, ls->qdelay_ms.max);
            report_cell_num(tb, row, col++, ls->inflight_mean);
            char e[160];
            errors_str(ls, e, sizeof e);
            report_cell_text(tb, row, c_errs, "%s", e[0] ? e : "none");
            if (ls->gpu_available)
                report_cell_num(tb, row, c_gpu, ls->gpu_util_mean);
            else
                report_cell_na(tb, row, c_gpu, "no GPU");
            report_cell_num(tb, row, c_gpu + 1, ls->cpu_mean);
            if (ls->sw.has_waiting) {
                report_cell_num(tb, row, c_wm, ls->sw.waiting_mean);
                report_cell_num(tb, row, c_wx, ls->sw.waiting_max);
            } else {
                report_cell_na(tb, row, c_wm, "no /metrics");
                report_cell_na(tb, row, c_wx, "no /metrics");
            }
            if (!isnan(ls->goodput_frac)) {
                report_cell_num(tb, row, c_gp, 100.0 * ls->goodput_frac);
                report_cell_num(tb, row, c_gr, ls->goodput_rps);
            } else {
                report_cell_na(tb, row, c_gp, "no SLO");
                report_cell_na(tb, row, c_gr, "no SLO");
            }
            if (ls->complete && ls->n_ok) {
                xs[nc] = ls->load;
                ys_s[nc] = ms_to_s(ls->e2e_ms.p95);
                ys_i[nc] = ms_to_s(ls->e2e_int_ms.p95);
                nc++;
            }
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

    /* Errors with the servers' own messages. */
    int any_err = res->seq.n_err || res->conc.n_err;
    for (int i = 0; i < res->n_sweep; i++)
        any_err |= res->sweep[i].n_err;
    for (int i = 0; i < res->n_open; i++)
        any_err |= res->open[i].n_err;
    if (any_err) {
        s = report_section_add(r, "errors", "Errors");
        struct lstats *all[2 + 2 * BATCH_MAX_LEVELS];
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

    /* Server lifecycle. */
    s = report_section_add(r, "server", "Server");
    if (t->launched) {
        char ex[128];
        target_exit_str(&res->stop.sr.exit, ex, sizeof ex);
        report_paragraph(s, "Launched by slmprobe (pid %d); log: %s. %s%s.", (int)t->pid,
                         t->log_path,
                         res->stop.sr.was_running ? "Stopped at the end: " : "Exited: ", ex);
    } else {
        report_paragraph(s, "Already running at %s; slmprobe neither launched nor stopped it.",
                         t->base_url);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Runs                                                                                       */
/* ------------------------------------------------------------------------------------------ */

static int level_requests(const struct batch_opts *o, int conc)
{
    if (o->requests)
        return o->requests;
    long n = (long)o->rounds * conc;
    return n < 8 ? 8 : n > BATCH_MAX_REQUESTS ? BATCH_MAX_REQUESTS : (int)n;
}

static enum phase_status warmup(struct run_ctx *x, int conc, const char *what)
{
    int n = x->o->warmup < 0 ? conc : x->o->warmup;
    if (n <= 0)
        return PHASE_STATUS_OK;
    char tag[32];
    snprintf(tag, sizeof tag, "warmup %s", what);
    return run_closed(x, tag, -1, 0, conc, n, 0);
}

static enum phase_status run_seqconc(struct run_ctx *x, struct batch_results *res)
{
    const struct batch_opts *o = x->o;
    int n = o->num_requests;
    log_info(MOD, "sequential vs concurrent: %d requests", n);
    enum phase_status st = warmup(x, 1, "seq");
    if (st)
        return st;
    st = run_closed(x, "seq", -1, 1, 1, n, 0);
    compute_stats(x, 1, 0, &res->seq);
    res->have_seqconc = 1;
    if (st)
        return st;
    st = warmup(x, n, "conc");
    if (st)
        return st;
    st = run_closed(x, "conc", -1, 1, n, n, 0);
    compute_stats(x, n, 0, &res->conc);
    return st;
}

static enum phase_status run_sweep(struct run_ctx *x, struct batch_results *res)
{
    const struct batch_opts *o = x->o;
    enum phase_status st = PHASE_STATUS_OK;
    int L = o->n_conc, R = o->repeat;
    /* Repeats are whole sweeps (1..32, then 1..32 again), so a slow drift of the machine spreads
     * over every level instead of biasing one. */
    struct lstats *rep = xcalloc((size_t)L * (size_t)R, sizeof *rep);
    int *n_rep = xcalloc((size_t)L, sizeof *n_rep);
    for (int k = 0; k < R && !st; k++) {
        for (int i = 0; i < L && !st; i++) {
            int conc = o->conc[i];
            char what[32], tag[32];
            snprintf(what, sizeof what, "c=%d", conc);
            log_info(MOD, "sweep %d/%d: concurrency %d", k + 1, R, conc);
            st = warmup(x, conc, what);
            if (st)
                break;
            snprintf(tag, sizeof tag, "c=%d r%d", conc, k + 1);
            st = run_closed(x, tag, i, 1, conc, level_requests(o, conc), o->duration_s);
            struct lstats *ls = &rep[(size_t)i * R + (size_t)n_rep[i]++];
            compute_stats(x, conc, 0, ls);
            log_info(MOD, "concurrency %d: %.1f tok/s, p95 e2e %.3f s, %d/%d ok", conc, ls->tok_s,
                     ms_to_s(ls->e2e_ms.p95), ls->n_ok, ls->n_sent);
        }
    }
    for (int i = 0; i < L; i++) {
        if (!n_rep[i])
            continue;
        /* Repeats cut short (server exit, interrupt) are left out when complete ones exist. */
        struct lstats *r0 = &rep[(size_t)i * R];
        int n_ok = 0;
        for (int k = 0; k < n_rep[i]; k++)
            if (r0[k].complete)
                r0[n_ok++] = r0[k];
        struct lstats *row = &res->sweep[res->n_sweep++];
        if (n_ok) {
            aggregate(r0, n_ok, row);
            row->n_repeats_cut = n_rep[i] - n_ok;
        } else {
            aggregate(r0, n_rep[i], row);
            row->complete = 0;
        }
    }
    free(n_rep);
    free(rep);
    return st;
}

static enum phase_status run_open_rates(struct run_ctx *x, struct batch_results *res)
{
    const struct batch_opts *o = x->o;
    enum phase_status st = PHASE_STATUS_OK;
    for (int i = 0; i < o->n_rates && !st; i++) {
        double rate = o->rates[i];
        long n = o->requests     ? o->requests
                 : o->duration_s ? lround(rate * o->duration_s)
                                 : lround(10.0 * rate);
        if (n < (o->requests ? 1 : 8))
            n = o->requests ? 1 : 8;
        if (n > BATCH_MAX_REQUESTS)
            n = BATCH_MAX_REQUESTS;
        char what[48];
        snprintf(what, sizeof what, "rate=%g", rate);
        int wn = o->warmup < 0 ? 4 : o->warmup;
        if (wn > 0) {
            char tag[64];
            snprintf(tag, sizeof tag, "warmup %s", what);
            st = run_closed(x, tag, -1, 0, wn, wn, 0);
            if (st)
                break;
        }
        log_info(MOD, "open loop: %g req/s, %ld requests%s", rate, n,
                 o->burstiness != 1.0 ? " (bursty)" : "");
        mono_ns *sched = xcalloc((size_t)n, sizeof *sched);
        make_schedule(sched, (int)n, clock_now_ns() + 1000000ull, rate, o->burstiness,
                      o->seed + (uint64_t)i);
        char tag[32];
        snprintf(tag, sizeof tag, "rate=%g", rate);
        st = run_open(x, tag, i, sched, (int)n, o->max_concurrency);
        free(sched);
        struct lstats *ls = &res->open[res->n_open++];
        compute_stats(x, rate, 1, ls);
        /* Could the client keep the schedule? */
        if (ls->n_sent > 2 && ((!isnan(ls->send_rate) && !isnan(ls->offered_rate) &&
                                ls->send_rate < 0.95 * ls->offered_rate) ||
                               ls->qdelay_ms.p95 > 50.0)) {
            snprintf(res->open_warn[res->n_open - 1], sizeof res->open_warn[0],
                     "rate %g req/s was not sustained: the schedule asked for %.2f req/s, requests "
                     "went out at %.2f req/s, with client-side queueing delay p95 %.1f ms (max "
                     "%.1f ms)%s.",
                     rate, ls->offered_rate, ls->send_rate, ls->qdelay_ms.p95, ls->qdelay_ms.max,
                     o->max_concurrency ? " (--max-concurrency holds requests back)" : "");
            log_warn(MOD, "%s", res->open_warn[res->n_open - 1]);
        }
    }
    return st;
}

static void print_results(const struct batch_results *res, const char *out_dir)
{
    if (res->have_seqconc && res->seq.n_sent && res->conc.n_sent) {
        printf("sequential: %d requests, sequential_s %.3f, QPS %.2f, output tok/s %.1f\n",
               res->seq.n_sent, res->seq.duration_s, res->seq.qps, res->seq.tok_s);
        printf("concurrent: %d requests, concurrent_s %.3f, QPS %.2f, output tok/s %.1f\n",
               res->conc.n_sent, res->conc.duration_s, res->conc.qps, res->conc.tok_s);
        printf("speed-up: %.2fx\n\n", res->seq.duration_s / res->conc.duration_s);
    }
    if (res->n_sweep) {
        printf("%-11s %10s %10s %8s %10s %10s %10s %8s %7s %7s\n", "concurrency", "mean_e2e_s",
               "p95_e2e_s", "qps", "tok_s", "p95_ttft", "p95_tpot", "inflight", "waiting",
               "errors");
        for (int i = 0; i < res->n_sweep; i++) {
            const struct lstats *ls = &res->sweep[i];
            printf("%-11g %10.3f %10.3f %8.2f %10.1f %10.1f %10.2f %8.2f %7.1f %7d%s\n", ls->load,
                   ms_to_s(ls->e2e_ms.mean), ms_to_s(ls->e2e_ms.p95), ls->qps, ls->tok_s,
                   ls->ttft_ms.p95, ls->tpot_ms.p95, ls->inflight_mean,
                   ls->sw.has_waiting ? ls->sw.waiting_max : NAN, ls->n_err,
                   ls->complete ? "" : "  (incomplete)");
        }
        printf("\n%s\n", res->kr.summary);
        for (int i = 0; i < res->rules.n; i++)
            printf("- %s\n", res->rules.text[i]);
        printf("\n");
    }
    for (int i = 0; i < res->n_open; i++) {
        const struct lstats *ls = &res->open[i];
        printf("rate %g req/s: sent at %.2f req/s, QPS %.2f, tok/s %.1f, p95 e2e %.3f s (from "
               "intended %.3f s), p95 queue delay %.1f ms, errors %d\n",
               ls->load, ls->send_rate, ls->qps, ls->tok_s, ms_to_s(ls->e2e_ms.p95),
               ms_to_s(ls->e2e_int_ms.p95), ls->qdelay_ms.p95, ls->n_err);
    }
    if (res->failure[0])
        printf("FAILED: %s\n", res->failure);
    printf("report: %s/batching_benchmark.md\n", out_dir);
}

static void join_cmdline(int argc, char **argv, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    len += (size_t)snprintf(out, n, "slmprobe");
    for (int i = 0; i < argc && len < n; i++)
        len += (size_t)snprintf(out + len, n - len, " %s", argv[i]);
}

int cmd_batch(int argc, char **argv)
{
    int rc = 1;
    char err[1024] = "";
    struct probe_opts po;
    memset(&po, 0, sizeof po);
    struct batch_opts o;
    batch_opts_defaults(&o);
    struct workload w;
    memset(&w, 0, sizeof w);
    struct target *t = NULL;
    struct run_ctx x;
    memset(&x, 0, sizeof x);
    struct batch_results *res = xcalloc(1, sizeof *res);
    struct report *rep = NULL;
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0;
    char cmdline[4096], model[256] = "?";
    join_cmdline(argc, argv, cmdline, sizeof cmdline);

    /* --help first, so that it works without a model or server. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            batch_usage(stdout);
            rc = 0;
            goto done;
        }
    }
    if (probe_opts_parse(argc, argv, &po, &n_rest, rest, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        rc = 2;
        goto done;
    }
    int pr = batch_opts_parse(n_rest, rest, &o, err, sizeof err);
    if (pr == 1) {
        batch_usage(stdout);
        rc = 0;
        goto done;
    }
    if (pr < 0) {
        log_error(MOD, "%s", err);
        rc = 2;
        goto done;
    }
    enum workload_unit unit =
        o.unit >= 0
            ? (enum workload_unit)o.unit
            : (po.target.kind == TARGET_KIND_EMBEDDED ? WORKLOAD_UNIT_BYTE : WORKLOAD_UNIT_WORD);
    /* The workload is fully validated before anything is launched. */
    if (o.prompt_file) {
        if (workload_init_file(&w, o.prompt_file, 0, unit, o.seed, err, sizeof err) !=
            WORKLOAD_OK) {
            log_error(MOD, "%s", err);
            rc = 2;
            goto done;
        }
    } else if (workload_init_synth(&w,
                                   &(struct workload_synth){.input_len_tokens = o.input_len,
                                                            .input_len_range = o.input_len_range,
                                                            .unit = unit,
                                                            .seed = o.seed}) != WORKLOAD_OK) {
        log_error(MOD, "invalid --input-len / --input-len-range");
        rc = 2;
        goto done;
    }
    if (knee_slo_is_set(&o.slo))
        knee_slo_str(&o.slo, res->slo_desc, sizeof res->slo_desc);
    if (dir_make_all(po.out_dir) != 0) {
        log_error(MOD, "cannot create %s: %s", po.out_dir, strerror(errno));
        goto done;
    }

    target_install_signal_handlers();
    t = target_new(&po.target);
    log_info(MOD, "starting the %s server", target_kind_str(po.target.kind));
    if (target_start(t, err, sizeof err) != TARGET_OK) {
        log_error(MOD, "server start failed: %s", err);
        goto done;
    }
    log_info(MOD, "server ready at %s", t->base_url);

    struct client_config cc;
    probe_opts_client_config(&po, t->base_url, &cc);
    x.o = &o;
    client_ceiling_load(NULL, &x.ceiling);
    x.po = &po;
    x.t = t;
    x.w = &w;
    x.progress = o.progress < 0 ? isatty(2) : o.progress;
    buf_init(&x.prompt, 4096, (size_t)1 << 28);
    x.c = client_new(&cc, on_done, &x, err, sizeof err);
    if (!x.c) {
        log_error(MOD, "client: %s", err);
        snprintf(res->failure, sizeof res->failure, "The client could not start: %s", err);
        goto stop;
    }
    snprintf(model, sizeof model, "%s", client_model(x.c));
    char path[1200];
    snprintf(path, sizeof path, "%s/batch_requests.jsonl", po.out_dir);
    FILE *trunc = fopen(path, "w"); /* one run per file: start it empty */
    if (trunc)
        fclose(trunc);
    x.jsonl = record_writer_open(path, err, sizeof err);
    if (!x.jsonl)
        log_warn(MOD, "no per-request log: %s", err);
    x.tel = telemetry_sampler_new(
        &(struct telemetry_sampler_config){.root_pid = t->launched ? t->pid : 0,
                                           .interval_ms = 200,
                                           .cap_samples = 36000,
                                           .with_gpu = 1});
    if (telemetry_sampler_start(x.tel) != 0)
        log_warn(MOD, "telemetry sampler did not start");
    x.scr = scraper_new(t->base_url, po.target.api_key, o.metrics_interval_ms);

    enum phase_status st = PHASE_STATUS_OK;
    if (o.do_seqconc)
        st = run_seqconc(&x, res);
    if (!st && o.do_sweep)
        st = run_sweep(&x, res);
    if (!st && o.do_open)
        st = run_open_rates(&x, res);

    if (x.scr && x.scr->gave_up)
        log_info(MOD, "no /metrics from the server (%s): queue columns are n/a", x.scr->reason);
    if (st == PHASE_STATUS_SERVER_EXIT) {
        snprintf(res->failure, sizeof res->failure,
                 "%s. Levels finished before the failure are reported; the level that was running "
                 "is marked incomplete and left out of the knee.",
                 x.death_msg);
    } else if (st == PHASE_STATUS_INTERRUPTED) {
        snprintf(res->failure, sizeof res->failure,
                 "Interrupted (signal) during the run: levels finished before are reported; the "
                 "level that was running is marked incomplete.");
    }

    /* Analysis. */
    struct knee_config kc;
    knee_config_defaults(&kc);
    kc.threshold = o.knee_threshold;
    kc.slo_attainment = o.slo_attainment;
    kc.slo_desc = res->slo_desc[0] ? res->slo_desc : NULL;
    knee_levels_fill(res->sweep, res->n_sweep, res->kl, res->kl_row, &res->n_kl);
    knee_analyze(res->kl, (size_t)res->n_kl, &kc, &res->kr);
    knee_rules_make(res->kl, (size_t)res->n_kl, &kc, &res->kr, &res->rules);
    if (res->n_open >= 2) {
        kc.load_name = "rate";
        kc.load_unit = " req/s";
        knee_levels_fill(res->open, res->n_open, res->okl, NULL, &res->n_okl);
        knee_analyze(res->okl, (size_t)res->n_okl, &kc, &res->okr);
        knee_rules_make(res->okl, (size_t)res->n_okl, &kc, &res->okr, &res->orules);
    }

stop:
    rc = res->failure[0] ? 1 : 0;
    client_free(x.c); /* aborts anything still in flight (delivered to on_done first) */
    x.c = NULL;
    scraper_free(x.scr);
    x.scr = NULL;
    telemetry_sampler_free(x.tel);
    x.tel = NULL;
    res->stop.launched = t->launched;
    if (t->launched)
        target_stop(t, &res->stop.sr);
    rep = report_new("Batching benchmark");
    build_report(rep, &o, &po, t, &w, res, cmdline, model);
    {
        const struct {
            enum report_format f;
            const char *name;
        } outs[] = {{REPORT_FORMAT_MARKDOWN, "batching_benchmark.md"},
                    {REPORT_FORMAT_HTML, "batching_benchmark.html"},
                    {REPORT_FORMAT_JSON, "batch.json"}};
        for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
            snprintf(path, sizeof path, "%s/%s", po.out_dir, outs[i].name);
            if (report_write_file(rep, outs[i].f, path, err, sizeof err) != REPORT_OK) {
                log_error(MOD, "%s", err);
                rc = 1;
            }
        }
        if (res->n_sweep) {
            snprintf(path, sizeof path, "%s/concurrency_sweep.csv", po.out_dir);
            if (report_write_csv(rep, "sweep", path, err, sizeof err) != REPORT_OK) {
                log_error(MOD, "%s", err);
                rc = 1;
            }
        }
        if (res->n_open) {
            snprintf(path, sizeof path, "%s/open_loop.csv", po.out_dir);
            if (report_write_csv(rep, "open", path, err, sizeof err) != REPORT_OK) {
                log_error(MOD, "%s", err);
                rc = 1;
            }
        }
    }
    print_results(res, po.out_dir);
    fflush(stdout);

done:
    report_free(rep);
    client_free(x.c);
    for (size_t i = 0; i < x.n_recs; i++)
        record_free(&x.recs[i]);
    free(x.recs);
    record_writer_close(x.jsonl);
    buf_free(&x.prompt);
    target_free(t);
    workload_free(&w);
    probe_opts_free(&po);
    free(rest);
    free(res);
    return rc;
}
