/* cmd_lab: argv for `slmprobe lab` (see lab.h): the shared probe options (one server
 * configuration for every tier), --tiers, --quick, --resume, --concurrency-wanted; then lab_run
 * and lab_write. Exit 0 when every tier ran ok, 1 when one failed, 2 usage, 130 interrupted (what
 * was done is written either way). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "lab/lab.h"
#include "run/probe_opts.h"
#include "run/session.h"
#include "util/buf.h"
#include "util/log.h"

#define MOD "lab"

static void lab_usage(FILE *f)
{
    fprintf(f,
            "usage: slmprobe lab [options] [-- extra server flags]\n\n"
            "The whole day in one run: Tier 1 (ttft), Tier 2 (prefix), Tier 3A (kv) and Tier 3B\n"
            "(batch) against one server configuration, every artifact in OUT under the seed's\n"
            "names, then DAY.md (the day's write-up, every field measured), lab.json, report.html\n"
            "(one page, every chart), serve_slm*.sh (launch scripts, with an interactive and a\n"
            "throughput preset derived from the sweep and the KV data).\n\n"
            "lab options:\n"
            "  --tiers LIST            which tiers, e.g. 1,3b or ttft,batch [1,2,3a,3b]\n"
            "  --quick                 minutes instead of the full day (laptops, CI, make run)\n"
            "  --resume                reuse tiers whose result file in OUT says they finished;\n"
            "                          an unfinished kv sweep goes on at the lengths not done\n"
            "  --concurrency-wanted N  concurrent requests the service needs, for the KV\n"
            "                          headroom answer and the presets [8]\n"
            "  -h, --help              this text\n\n"
            "Exit status: 0 every tier ok; 1 a tier failed; 2 usage error; 130 interrupted\n"
            "(what was done is written).\n\ncommon probe options:\n");
    probe_opts_help(f);
}

/* The lab's own options out of rest[1..n). 0, or -1 with err. */
static int lab_parse(int n, char **rest, struct lab_opts *o, char *err, size_t err_len)
{
    for (int i = 1; i < n; i++) {
        const char *a = rest[i], *eq = strchr(a, '=');
        char name[48];
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
        if (!strcmp(name, "--quick")) {
            o->quick = 1;
            continue;
        }
        if (!strcmp(name, "--resume")) {
            o->resume = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : i + 1 < n ? rest[++i] : NULL;
        if (strcmp(name, "--tiers") && strcmp(name, "--concurrency-wanted")) {
            snprintf(err, err_len, "unknown option '%s'", a);
            return -1;
        }
        if (!v) {
            snprintf(err, err_len, "%s needs a value", name);
            return -1;
        }
        if (!strcmp(name, "--tiers") ? lab_tiers_parse(v, o, err, err_len)
                                     : probe_opts_parse_int(name, v, 1, 65536,
                                                            &o->concurrency_wanted, err, err_len))
            return -1;
    }
    return 0;
}

int cmd_lab(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            lab_usage(stdout);
            return PROBE_EXIT_OK;
        }
    struct lab_opts o;
    lab_opts_defaults(&o);
    struct probe_opts po;
    char err[1024] = "";
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0, rc = PROBE_EXIT_USAGE;
    if (probe_opts_parse(argc, argv, &po, &n_rest, rest, err, sizeof err) != 0 ||
        lab_parse(n_rest, rest, &o, err, sizeof err) != 0) {
        fprintf(stderr, "slmprobe lab: %s\n(slmprobe lab --help lists the options)\n", err);
        goto out;
    }
    struct session s;
    rc = PROBE_EXIT_FAILED;
    if (session_init(&s, &po, argc, argv, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        session_free(&s);
        goto out;
    }
    struct lab_result r;
    lab_run(&o, &s, &r);
    int failed = r.failed;
    if (lab_write(&o, &s, &r, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        failed = 1;
    } else {
        printf("wrote %s/DAY.md, %s/report.html, %s/lab.json\n", s.out_dir, s.out_dir, s.out_dir);
    }
    rc = session_exit_code(&s, failed);
    session_free(&s);
out:
    probe_opts_free(&po);
    free(rest);
    return rc;
}
