/* cmd_ttft: `slmprobe ttft` from argv to exit code: parses the shared probe options and the ttft
 * options, opens the session, runs the probe (ttft_run.c), and writes the report as
 * OUT/first_token_latency.md and .html, OUT/ttft.json (ttft_json.c) and OUT/ttft_runs.csv, also
 * after a failure or Ctrl-C. Exit status by session_exit_code: 0 ok, 1 failed, 2 usage, 130
 * interrupted. It measures nothing itself. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "measure/workload.h"
#include "report/report.h"
#include "run/probe_opts.h"
#include "run/session.h"
#include "ttft/ttft.h"
#include "util/buf.h"
#include "util/log.h"

#define MOD "ttft"

/* ------------------------------------------------------------------ options */

static void ttft_usage(FILE *f)
{
    fprintf(
        f,
        "usage: slmprobe ttft [options] [-- extra server flags]\n"
        "\n"
        "Tier 1: cold vs warm time to first token. Launches the server, records the launch\n"
        "timeline (process start, port open, /health ok, /v1/models ok), sends the cold request\n"
        "the moment it is ready, one request right after it (warm_1), then N warm runs; stops\n"
        "the server and reads its start-up phases from its log. Writes OUT/ttft_requests.jsonl\n"
        "(one line per finished request), OUT/first_token_latency.md and .html, OUT/ttft.json\n"
        "and OUT/ttft_runs.csv. With --url: no launch, warm runs only.\n"
        "\n"
        "ttft options:\n"
        "  --warm-runs N        warm requests after warm_1 (statistics use these) [5]\n"
        "  --idle-gap SECONDS   idle time before each warm run [0]\n"
        "  --repeat K           launch the server K times; report the spread of cold numbers [1]\n"
        "  --prompt-len TOKENS  synthetic prompt length; on the embedded runtime one token is\n"
        "                       one byte (exact), elsewhere one common word (approximate) [128]\n"
        "  --max-tokens N       tokens generated per request (sent with ignore_eos) [32]\n"
        "  --drop-caches        (root) sync and drop the page cache before each launch, so the\n"
        "                       weights are read from storage: a disk-cold start\n"
        "  -h, --help           this text\n"
        "\n"
        "Exit status: 0 ok; 1 a run failed (server did not start, died, or a request failed);\n"
        "2 usage error; 130 interrupted (partial results are written).\n"
        "\n"
        "common probe options:\n");
    probe_opts_help(f);
}

/* Parses the ttft options out of rest[1..n). 0, or -1 with a message. */
static int ttft_parse(int n, char **rest, struct ttft_opts *o, char *err, size_t err_len)
{
    ttft_opts_defaults(o);
    for (int i = 1; i < n; i++) {
        const char *a = rest[i];
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, err_len, "unexpected argument '%s'", a);
            return -1;
        }
        char name[64];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
        int known = !strcmp(name, "--warm-runs") || !strcmp(name, "--idle-gap") ||
                    !strcmp(name, "--repeat") || !strcmp(name, "--prompt-len") ||
                    !strcmp(name, "--max-tokens");
        if (!known) {
            snprintf(err, err_len, "unknown option '%s'", a);
            return -1;
        }
        if (!val) {
            if (i + 1 >= n) {
                snprintf(err, err_len, "%s needs a value", name);
                return -1;
            }
            val = rest[++i];
        }
        int r;
        if (!strcmp(name, "--warm-runs"))
            r = probe_opts_parse_int(name, val, 0, 100000, &o->warm_runs, err, err_len);
        else if (!strcmp(name, "--idle-gap"))
            r = probe_opts_parse_double(name, val, 0, 86400, &o->idle_gap_s, err, err_len);
        else if (!strcmp(name, "--repeat"))
            r = probe_opts_parse_int(name, val, 1, 1000, &o->repeat, err, err_len);
        else if (!strcmp(name, "--prompt-len"))
            r = probe_opts_parse_int(name, val, 1, WORKLOAD_MAX_LEN_TOKENS, &o->prompt_len, err,
                                     err_len);
        else
            r = probe_opts_parse_int(name, val, 1, 1000000, &o->max_tokens, err, err_len);
        if (r)
            return -1;
    }
    return 0;
}

static void print_headline(const struct ttft_result *res)
{
    if (!res->n_reps || res->interrupted)
        return;
    struct summary sm;
    ttft_warm_summary(&res->reps[0], &sm);
    char a[32], b[32];
    ttft_fmt_ms(ttft_cold_ttft_ms(&res->reps[0]), a, sizeof a);
    ttft_fmt_ms(sm.p50, b, sizeof b);
    printf("cold ttft %s, warm median ttft %s over %zu runs%s\n", a, b, sm.n,
           res->failed ? " (run FAILED)" : "");
}

int cmd_ttft(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            ttft_usage(stdout);
            return PROBE_EXIT_OK;
        }
    }
    struct probe_opts po;
    struct ttft_opts opt;
    char err[1024] = "";
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0;
    if (probe_opts_parse(argc, argv, &po, &n_rest, rest, err, sizeof err) != 0 ||
        ttft_parse(n_rest, rest, &opt, err, sizeof err) != 0) {
        fprintf(stderr, "slmprobe ttft: %s\n(slmprobe ttft --help lists the options)\n", err);
        probe_opts_free(&po);
        free(rest);
        return PROBE_EXIT_USAGE;
    }
    struct session *s = xcalloc(1, sizeof *s);
    int rc = PROBE_EXIT_FAILED;
    if (session_init(s, &po, argc, argv, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
    } else {
        struct ttft_result *res = xcalloc(1, sizeof *res);
        int failed = ttft_run(&opt, s, res);
        failed |= ttft_write_outputs(res, s) != 0;
        print_headline(res);
        rc = res->interrupted ? PROBE_EXIT_INTERRUPTED : session_exit_code(s, failed);
        ttft_result_free(res);
        free(res);
    }
    session_free(s);
    free(s);
    probe_opts_free(&po);
    free(rest);
    return rc;
}
