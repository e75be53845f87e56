/* batch_opts: the options of `slmprobe batch` (its own; the shared ones are run/probe_opts.h):
 * defaults, --help text and one parser. Numbers go through probe_opts_parse_int/_double, lists
 * through one comma splitter. It reads no files (the prompt file is checked by batch_run before
 * anything is launched) and launches nothing. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"
#include "measure/workload.h"

void batch_opts_defaults(struct batch_opts *o)
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

void batch_usage(FILE *f)
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
        "  --progress / --no-progress   live progress line on stderr, drawn only when it is a\n"
        "                          terminal [--progress]\n"
        "  -h, --help              this text\n"
        "\n"
        "Writes to --out: batching_benchmark.md, batching_benchmark.html, concurrency_sweep.csv,\n"
        "open_loop.csv (with --rate), batch.json, batch_requests.jsonl (one line per request,\n"
        "written as it completes) and the server log.\n"
        "\n"
        "Common probe options:\n");
    probe_opts_help(f);
}

int batch_level_requests(const struct batch_opts *o, int conc)
{
    if (o->requests)
        return o->requests;
    long n = (long)o->rounds * conc;
    return n < 8 ? 8 : n > BATCH_MAX_REQUESTS ? BATCH_MAX_REQUESTS : (int)n;
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

/* A list of integers (ints != NULL) or of doubles, each in [lo, hi], at most BATCH_MAX_LEVELS. */
static int parse_list(const char *name, const char *s, int *ints, double *dbls, int *n_out,
                      double lo, double hi, char *err, size_t err_len)
{
    int n = 0, st;
    char item[48];
    while ((st = list_next(&s, item, sizeof item)) == 1) {
        if (n >= BATCH_MAX_LEVELS) {
            snprintf(err, err_len, "%s: at most %d values", name, BATCH_MAX_LEVELS);
            return -1;
        }
        int bad = ints ? probe_opts_parse_int(name, item, (long)lo, (long)hi, &ints[n], err,
                                              err_len)
                       : probe_opts_parse_double(name, item, lo, hi, &dbls[n], err, err_len);
        if (bad)
            return -1;
        n++;
    }
    if (st != 0 || !n) {
        snprintf(err, err_len, "%s: expected a comma-separated list, got '%s'", name, s);
        return -1;
    }
    *n_out = n;
    return 0;
}

static int parse_modes(const char *val, struct batch_opts *o)
{
    o->do_seqconc = o->do_sweep = o->do_open = 0;
    o->modes_given = 1;
    const char *p = val;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len == 7 && !strncmp(p, "seqconc", 7))
            o->do_seqconc = 1;
        else if (len == 5 && !strncmp(p, "sweep", 5))
            o->do_sweep = 1;
        else if (len == 4 && !strncmp(p, "open", 4))
            o->do_open = 1;
        else
            return -1;
        p += len;
        if (*p == ',')
            p++;
    }
    return o->do_seqconc || o->do_sweep || o->do_open ? 0 : -1;
}

enum opt_kind { OPT_INT, OPT_DOUBLE };

/* The plain numeric options: name, kind, range, where the value goes (offset into batch_opts). */
static const struct {
    const char *name;
    enum opt_kind kind;
    double lo, hi;
    size_t off;
} num_opts[] = {
    {"--num-requests", OPT_INT, 1, BATCH_MAX_REQUESTS, offsetof(struct batch_opts, num_requests)},
    {"--requests", OPT_INT, 1, BATCH_MAX_REQUESTS, offsetof(struct batch_opts, requests)},
    {"--rounds", OPT_INT, 1, 10000, offsetof(struct batch_opts, rounds)},
    {"--duration", OPT_DOUBLE, 0.001, 86400.0, offsetof(struct batch_opts, duration_s)},
    {"--warmup", OPT_INT, 0, 100000, offsetof(struct batch_opts, warmup)},
    {"--repeat", OPT_INT, 1, 100, offsetof(struct batch_opts, repeat)},
    {"--burstiness", OPT_DOUBLE, 1e-3, 1e3, offsetof(struct batch_opts, burstiness)},
    {"--max-concurrency", OPT_INT, 1, 100000, offsetof(struct batch_opts, max_concurrency)},
    {"--input-len", OPT_INT, 1, WORKLOAD_MAX_LEN_TOKENS, offsetof(struct batch_opts, input_len)},
    {"--input-len-range", OPT_DOUBLE, 0.0, 0.999, offsetof(struct batch_opts, input_len_range)},
    {"--output-len", OPT_INT, 1, 1 << 20, offsetof(struct batch_opts, output_len)},
    {"--slo-attainment", OPT_DOUBLE, 0.01, 1.0, offsetof(struct batch_opts, slo_attainment)},
    {"--knee-threshold", OPT_DOUBLE, 0.001, 10.0, offsetof(struct batch_opts, knee_threshold)},
    {"--metrics-interval", OPT_INT, 10, 60000, offsetof(struct batch_opts, metrics_interval_ms)},
};

/* One option with its value. 0, or -1 with err. */
static int parse_one(const char *name, const char *val, struct batch_opts *o, char *err,
                     size_t err_len)
{
    for (size_t i = 0; i < sizeof num_opts / sizeof num_opts[0]; i++) {
        if (strcmp(name, num_opts[i].name))
            continue;
        char *dst = (char *)o + num_opts[i].off;
        if (num_opts[i].kind == OPT_INT)
            return probe_opts_parse_int(name, val, (long)num_opts[i].lo, (long)num_opts[i].hi,
                                        (int *)(void *)dst, err, err_len);
        return probe_opts_parse_double(name, val, num_opts[i].lo, num_opts[i].hi,
                                       (double *)(void *)dst, err, err_len);
    }
    int bad = 0;
    if (!strcmp(name, "--concurrency"))
        return parse_list(name, val, o->conc, NULL, &o->n_conc, 1, 100000, err, err_len);
    if (!strcmp(name, "--rate"))
        return parse_list(name, val, NULL, o->rates, &o->n_rates, 1e-6, 1e6, err, err_len);
    if (!strcmp(name, "--prompt-file")) {
        o->prompt_file = val;
    } else if (!strcmp(name, "--token-unit")) {
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
    } else if (!strcmp(name, "--modes")) {
        bad = parse_modes(val, o);
    } else {
        snprintf(err, err_len, "unknown option '%s' (see slmprobe batch --help)", name);
        return -1;
    }
    if (bad)
        snprintf(err, err_len, "invalid value for %s: '%s'", name, val);
    return bad ? -1 : 0;
}

int batch_opts_parse(int argc, char **argv, struct batch_opts *o, char *err, size_t err_len)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
            return 1;
        if (!strcmp(arg, "--progress") || !strcmp(arg, "--no-progress")) {
            o->progress = arg[2] == 'p';
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, err_len, "unexpected argument '%s'", arg);
            return -1;
        }
        char name[64];
        const char *val;
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (len >= sizeof name) {
            snprintf(err, err_len, "unknown option '%s'", arg);
            return -1;
        }
        memcpy(name, arg, len);
        name[len] = '\0';
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            snprintf(err, err_len, "option %s needs a value (or it is unknown)", arg);
            return -1;
        }
        if (parse_one(name, val, o, err, err_len) != 0)
            return -1;
    }
    if (o->n_rates && !o->modes_given)
        o->do_open = 1;
    if (o->do_open && !o->n_rates) {
        snprintf(err, err_len, "mode open needs --rate");
        return -1;
    }
    return 0;
}
