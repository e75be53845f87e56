/* cmd_prefix: argv for `slmprobe prefix` (the A/B run) and `slmprobe prefix gen` (write the
 * prompt set, lengths measured with the server's tokenizer). Shared target/client options come
 * from run/probe_opts.h; this file parses only the probe's own options, validates the prompt file
 * before anything is launched, and hands over to prefix_run / prefix_write_outputs. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "prefix/prefix.h"
#include "run/launch.h"
#include "run/probe_opts.h"
#include "run/session.h"
#include "util/log.h"

#define MOD "prefix"

static void prefix_usage(FILE *f)
{
    fprintf(f,
            "usage: slmprobe prefix [options] [-- extra server flags]\n"
            "       slmprobe prefix gen -o prefix_prompts.jsonl [options]\n\n"
            "Tier 2: what prefix caching buys, measured A/B. Two launches that differ only in\n"
            "prefix caching (or --url-off/--url-on), the same prompts, per cell (regime x\n"
            "concurrency x hit mix): TTFT, e2e, tok/s, the server's hit counters, memory.\n"
            "Writes OUT/prefix_caching_results.{csv,md,html}, prefix.json, prefix_requests.jsonl,\n"
            "prefix_prompts.jsonl, serve_slm_no_prefix_cache.sh, serve_slm_prefix_cache.sh.\n\n"
            "prefix options:\n"
            "  --prompts FILE          JSONL {\"prompt\": \"<PREFIX>\\nQ: ...\\nA:\", "
            "\"prefix_len_tokens\": N,\n"
            "                          \"workload\": \"...\"} (default: generated)\n"
            "  --medium-tokens N       generated medium prefix length [384]\n"
            "  --large-tokens N        generated large prefix length [1280]\n"
            "  --variants N            questions per generated prefix [32]\n"
            "  --seed N                ticket numbers of the generated questions [1]\n"
            "  --regimes LIST          medium,large [both]\n"
            "  --concurrency LIST      e.g. 1,16 [1,16]\n"
            "  --hit-mix LIST          percent of requests reusing a shared prefix [100,50,0]\n"
            "  --requests N            measured requests per cell [32]\n"
            "  --max-tokens N          output tokens per request [16]\n"
            "  --url-off URL --url-on URL   two running servers (caching off, on)\n"
            "  --working-set LIST      prefixes in rotation, e.g. 4,16,64 (caching on only)\n"
            "  --no-progress           no live progress line\n"
            "  -o FILE                 (gen) where to write the prompt set\n"
            "  -h, --help              this text\n\n"
            "shared options:\n");
    probe_opts_help(f);
}

/* The probe's own options. 0 ok, 1 help, -1 error (err). gen_out: -o for gen. */
static int prefix_opts_parse(int argc, char **argv, struct prefix_opts *o, int gen,
                             const char **gen_out, char *err, size_t err_len)
{
    for (int i = gen ? 2 : 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
            return 1;
        if (!strcmp(arg, "--no-progress")) {
            o->progress = 0;
            continue;
        }
        char name[64];
        const char *val, *eq = strchr(arg, '=');
        if (strncmp(arg, "-", 1) != 0) {
            snprintf(err, err_len, "unexpected argument '%s'", arg);
            return -1;
        }
        if (eq && (size_t)(eq - arg) < sizeof name) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
            val = eq + 1;
        } else if (i + 1 < argc) {
            snprintf(name, sizeof name, "%s", arg);
            val = argv[++i];
        } else {
            snprintf(err, err_len, "option %s needs a value (or it is unknown)", arg);
            return -1;
        }
        int bad = 0, tmp[PREFIX_MAX_LEVELS], n = 0;
        if (!strcmp(name, "--prompts"))
            o->prompts_path = val;
        else if (!strcmp(name, "-o") && gen)
            *gen_out = val;
        else if (!strcmp(name, "--medium-tokens"))
            bad = probe_opts_parse_int(name, val, 1, 1 << 20,
                                       &o->gen.len_tokens[PREFIX_REGIME_MEDIUM], err, err_len);
        else if (!strcmp(name, "--large-tokens"))
            bad = probe_opts_parse_int(name, val, 1, 1 << 20,
                                       &o->gen.len_tokens[PREFIX_REGIME_LARGE], err, err_len);
        else if (!strcmp(name, "--variants"))
            bad = probe_opts_parse_int(name, val, 1, PREFIX_MAX_VARIANTS, &o->gen.n_variants, err,
                                       err_len);
        else if (!strcmp(name, "--seed")) {
            int sd;
            bad = probe_opts_parse_int(name, val, 0, 1 << 30, &sd, err, err_len);
            o->gen.seed = (uint64_t)sd;
        } else if (!strcmp(name, "--concurrency"))
            bad = probe_opts_parse_int_list(name, val, 1, 4096, o->concurrency, PREFIX_MAX_LEVELS,
                                            &o->n_concurrency, err, err_len);
        else if (!strcmp(name, "--hit-mix")) {
            bad = probe_opts_parse_int_list(name, val, 0, 100, tmp, PREFIX_MAX_LEVELS, &n, err,
                                            err_len);
            for (int k = 0; k < n && !bad; k++)
                o->hit_mix[k] = tmp[k] / 100.0;
            o->n_hit_mix = bad ? o->n_hit_mix : n;
        } else if (!strcmp(name, "--requests"))
            bad = probe_opts_parse_int(name, val, 1, 1000000, &o->n_requests, err, err_len);
        else if (!strcmp(name, "--max-tokens"))
            bad = probe_opts_parse_int(name, val, 1, 1 << 20, &o->max_tokens, err, err_len);
        else if (!strcmp(name, "--url-off"))
            o->url_off = val;
        else if (!strcmp(name, "--url-on"))
            o->url_on = val;
        else if (!strcmp(name, "--working-set"))
            bad = probe_opts_parse_int_list(name, val, 1, 100000, o->working_set, PREFIX_MAX_LEVELS,
                                            &o->n_working_set, err, err_len);
        else if (!strcmp(name, "--regimes")) {
            o->regimes[0] = o->regimes[1] = 0;
            for (const char *p = val; *p && !bad; p += strcspn(p, ","), p += *p == ',') {
                size_t len = strcspn(p, ",");
                if (len == 6 && !strncmp(p, "medium", 6))
                    o->regimes[PREFIX_REGIME_MEDIUM] = 1;
                else if (len == 5 && !strncmp(p, "large", 5))
                    o->regimes[PREFIX_REGIME_LARGE] = 1;
                else
                    bad = 1;
            }
            bad |= !o->regimes[0] && !o->regimes[1];
        } else {
            snprintf(err, err_len, "unknown option '%s' (see slmprobe prefix --help)", name);
            return -1;
        }
        if (bad) { /* -1: the shared parser wrote err; 1: ours did not */
            if (bad > 0)
                snprintf(err, err_len, "invalid value for %s: '%s'", name, val);
            return -1;
        }
    }
    if (!o->url_off != !o->url_on) {
        snprintf(err, err_len, "--url-off and --url-on go together");
        return -1;
    }
    if (gen && !*gen_out) {
        snprintf(err, err_len, "prefix gen: -o FILE is required");
        return -1;
    }
    return 0;
}

/* `prefix gen`: the set measured with the server's tokenizer (launched, or --url). */
static int prefix_gen_cmd(struct session *s, struct prefix_set *set, const char *out)
{
    struct launch L;
    char err[1024];
    launch_init_opts(&L, s, &s->po->target, "server_gen.log",
                     &(struct launch_opts){.no_scraper = 1});
    int rc = PROBE_EXIT_FAILED;
    if (launch_start(&L) != TARGET_OK) {
        log_error(MOD, "server start failed: %s", L.err);
        goto out;
    }
    struct prefix_tokenizer tk = {
        .base_url = L.t->base_url, .api_key = L.cfg.api_key, .kind = L.cfg.kind};
    int bs = 0;
    int64_t kv;
    prefix_fetch_cache_config(L.t->base_url, L.cfg.api_key, &bs, &kv);
    if (prefix_set_measure(set, prefix_tokenize_http, &tk, bs, set->generated, err, sizeof err) !=
        PREFIX_OK) {
        log_error(MOD, "%s", err);
        goto out;
    }
    if (set->warnings[0])
        log_warn(MOD, "%s", set->warnings);
    if (prefix_set_write_jsonl(set, out, err, sizeof err) != PREFIX_OK) {
        log_error(MOD, "%s", err);
        goto out;
    }
    for (size_t i = 0; i < set->n_prefixes; i++)
        printf("%s %s: %d tokens (%d whole blocks of %d)\n", set->prefixes[i].workload,
               prefix_regime_str(set->prefixes[i].regime), set->prefixes[i].len_tokens,
               set->prefixes[i].n_blocks, bs);
    printf("wrote %zu prompts to %s (%d /tokenize calls)\n", set->n_prompts, out, tk.n_calls);
    rc = PROBE_EXIT_OK;
out:
    launch_free(&L);
    return rc;
}

int cmd_prefix(int argc, char **argv)
{
    struct probe_opts po;
    struct prefix_opts o;
    struct prefix_set set;
    struct prefix_result res;
    struct session s;
    memset(&po, 0, sizeof po);
    memset(&set, 0, sizeof set);
    memset(&res, 0, sizeof res);
    memset(&s, 0, sizeof s);
    prefix_opts_defaults(&o);
    int gen = argc > 1 && !strcmp(argv[1], "gen"), rc = PROBE_EXIT_USAGE, have_session = 0;
    const char *gen_out = NULL;
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest), err[2048];
    int n_rest = 0;
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            prefix_usage(stdout);
            rc = PROBE_EXIT_OK;
            goto done;
        }
    if (probe_opts_parse(argc, argv, &po, &n_rest, rest, err, sizeof err) != 0 ||
        prefix_opts_parse(n_rest, rest, &o, gen, &gen_out, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        goto done;
    }
    /* The prompt file is validated before anything is launched. */
    enum prefix_status st = o.prompts_path ? prefix_set_load(&set, o.prompts_path, err, sizeof err)
                                           : prefix_set_generate(&set, &o.gen);
    if (st != PREFIX_OK) {
        log_error(MOD, "%s", st == PREFIX_ERR_ARG ? "invalid generator options" : err);
        goto done;
    }
    if (session_init(&s, &po, argc, argv, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        rc = PROBE_EXIT_FAILED;
        goto done;
    }
    have_session = 1;
    if (gen) {
        rc = prefix_gen_cmd(&s, &set, gen_out);
        goto done;
    }
    rc = prefix_run(&o, &set, &s, &res);
    if (res.stop_reason[0])
        log_error(MOD, "%s", res.stop_reason);
    char path[1200];
    if (res.cells)
        printf("wrote %s\n", session_path(&s, "prefix_caching_results.md", path, sizeof path));
    rc = rc == PROBE_EXIT_USAGE ? rc : session_exit_code(&s, res.failed);
done:
    prefix_result_free(&res);
    prefix_set_free(&set);
    if (have_session)
        session_free(&s);
    probe_opts_free(&po);
    free(rest);
    return rc;
}
