/* cmd_check: argv for `slmprobe check` (see check.h). Parses the shared probe options
 * (run/probe_opts.h) and the check's own, runs check_run, judges, prints the human line (or JSON
 * or Prometheus text with --format) and writes --json/--prom files atomically (a textfile
 * collector never reads half a file). Exit 0 ok, 1 a bound failed or nothing could be measured,
 * 2 usage, 130 interrupted. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check/check.h"
#include "commands.h"
#include "run/probe_opts.h"
#include "run/session.h"
#include "util/log.h"

#define MOD "check"

struct check_cli {
    struct check_opts o;
    const char *format; /* line | json | prom */
    const char *json_path, *prom_path;
};

static void check_usage(FILE *f)
{
    fprintf(f,
            "usage: slmprobe check [--url URL | launch options] [--slo SPEC] [options]\n\n"
            "A short warm probe judged against SLO bounds: exit 0 when every bound holds, 1 when\n"
            "one fails (or nothing could be measured), 2 on usage errors. For cron and CI.\n\n"
            "  --slo SPEC          bounds, comma-separated [error_rate:0%%]\n"
            "                      ttft|tpot|itl|e2e[_p50|_p90|_p95|_p99|_mean|_max]:DURATION\n"
            "                      (us, ms, s; no suffix means p95), error_rate:N%% or a fraction\n"
            "                      e.g. ttft_p95:500ms,tpot_p95:50ms,error_rate:1%%\n"
            "  --requests N        measured requests [8]\n"
            "  --warmup N          warm-up requests, not judged [1]\n"
            "  --concurrency N     requests in flight [1]\n"
            "  --prompt-len N      prompt tokens [128]\n"
            "  --max-tokens N      output tokens per request [32]\n"
            "  --timeout SECONDS   bound on the whole check, launch included, and on each\n"
            "                      request [60]\n"
            "  --format line|json|prom   what goes to stdout [line]\n"
            "  --json FILE         also write the JSON result (slmprobe.check/1)\n"
            "  --prom FILE         also write Prometheus text (node_exporter textfile collector;\n"
            "                      written atomically, e.g. /var/lib/node_exporter/slmprobe.prom)\n\n");
    probe_opts_help(f);
}

static int parse_count(const char *name, const char *v, long lo, long hi, int *out, char *err,
                       size_t err_len)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        snprintf(err, err_len, "invalid value for %s: '%s' (an integer in %ld..%ld)", name, v, lo,
                 hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* argv after probe_opts took its share. 0, -1 usage error. */
static int check_parse(int argc, char **argv, struct check_cli *c, char *err, size_t err_len)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '='), *v;
        char name[32];
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            snprintf(err, err_len, "option %s needs a value (or it is unknown)", a);
            return -1;
        }
        int bad = 0;
        if (!strcmp(name, "--slo"))
            c->o.slo_spec = v;
        else if (!strcmp(name, "--requests"))
            bad = parse_count(name, v, 1, 100000, &c->o.n_requests, err, err_len);
        else if (!strcmp(name, "--warmup"))
            bad = parse_count(name, v, 0, 1000, &c->o.n_warmup, err, err_len);
        else if (!strcmp(name, "--concurrency"))
            bad = parse_count(name, v, 1, 4096, &c->o.concurrency, err, err_len);
        else if (!strcmp(name, "--prompt-len"))
            bad = parse_count(name, v, 1, 1 << 20, &c->o.prompt_len, err, err_len);
        else if (!strcmp(name, "--max-tokens"))
            bad = parse_count(name, v, 1, 1 << 20, &c->o.max_tokens, err, err_len);
        else if (!strcmp(name, "--format")) {
            if (strcmp(v, "line") && strcmp(v, "json") && strcmp(v, "prom")) {
                snprintf(err, err_len, "--format must be line, json or prom, not '%s'", v);
                return -1;
            }
            c->format = v;
        } else if (!strcmp(name, "--json"))
            c->json_path = v;
        else if (!strcmp(name, "--prom"))
            c->prom_path = v;
        else {
            snprintf(err, err_len, "unknown option '%s'", a);
            return -1;
        }
        if (bad)
            return -1;
    }
    char perr[256];
    if (check_slo_parse(c->o.slo_spec, &c->o.slo, perr, sizeof perr) != CHECK_OK) {
        snprintf(err, err_len, "--slo: %s", perr);
        return -1;
    }
    return 0;
}

/* 1 if argv sets the shared --timeout. */
static int timeout_given(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--timeout") || !strncmp(argv[i], "--timeout=", 10))
            return 1;
    return 0;
}

static int write_outputs(const struct check_cli *c, const struct check_result *r)
{
    struct buf b;
    buf_init(&b, 4096, 1 << 20);
    int rc = 0;
    if (!strcmp(c->format, "json"))
        check_render_json(&c->o, r, &b);
    else if (!strcmp(c->format, "prom"))
        check_render_prom(r, &b);
    else
        check_render_line(r, &b);
    fwrite(b.data, 1, b.len, stdout);
    fflush(stdout);
    const struct {
        const char *path;
        int json;
    } files[] = {{c->json_path, 1}, {c->prom_path, 0}};
    for (size_t i = 0; i < 2; i++) {
        if (!files[i].path)
            continue;
        buf_reset(&b);
        if (files[i].json)
            check_render_json(&c->o, r, &b);
        else
            check_render_prom(r, &b);
        if (file_write_all(files[i].path, b.data, b.len) != 0) {
            log_error(MOD, "cannot write %s: %s", files[i].path, strerror(errno));
            rc = -1;
        }
    }
    buf_free(&b);
    return rc;
}

int cmd_check(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            check_usage(stdout);
            return PROBE_EXIT_OK;
        }
    struct check_cli c = {.o = {.n_requests = 8, .n_warmup = 1, .concurrency = 1,
                                .prompt_len = 128, .max_tokens = 32, .timeout_s = 60,
                                .slo_spec = "error_rate:0%"},
                          .format = "line"};
    struct probe_opts po;
    char err[1024] = "";
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0, rc = PROBE_EXIT_USAGE;
    if (probe_opts_parse(argc, argv, &po, &n_rest, rest, err, sizeof err) != 0 ||
        check_parse(n_rest, rest, &c, err, sizeof err) != 0) {
        fprintf(stderr, "slmprobe check: %s\n(slmprobe check --help lists the options)\n", err);
        goto out;
    }
    if (timeout_given(argc, argv))
        c.o.timeout_s = po.timeout_ms / 1000.0;
    else
        po.timeout_ms = (long)(c.o.timeout_s * 1000);
    struct session s;
    rc = PROBE_EXIT_FAILED;
    if (session_init(&s, &po, argc, argv, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        session_free(&s);
        goto out;
    }
    struct check_result *r = xcalloc(1, sizeof *r);
    check_run(&c.o, &s, r);
    check_judge(&c.o.slo, r);
    int wrc = write_outputs(&c, r);
    rc = session_interrupted(&s) ? PROBE_EXIT_INTERRUPTED
         : r->all_ok && wrc == 0 ? PROBE_EXIT_OK
                                 : PROBE_EXIT_FAILED;
    free(r);
    session_free(&s);
out:
    probe_opts_free(&po);
    free(rest);
    return rc;
}
