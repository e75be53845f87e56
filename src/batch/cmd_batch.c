/* cmd_batch: `slmprobe batch` from argv to exit code, and nothing more: parses the shared and
 * the batch options, runs batch_run, renders batch_report into batching_benchmark.md/.html,
 * concurrency_sweep.csv and open_loop.csv, writes batch.json and prints the summary. Partial
 * results are always written; exit 0 ok, 1 failed, 2 usage, 130 interrupted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"
#include "commands.h"
#include "report/report.h"
#include "run/session.h"
#include "util/buf.h"
#include "util/log.h"

#define MOD "batch"

/* Every output file of a run; 0, or 1 when one could not be written (logged). */
int cmd_batch(int argc, char **argv)
{
    int rc = 2;
    char err[1024] = "";
    struct probe_opts po;
    memset(&po, 0, sizeof po);
    struct batch_opts o;
    batch_opts_defaults(&o);
    struct batch_result *res = xcalloc(1, sizeof *res);
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    int n_rest = 0;
    /* --help first, so that it works without a model or server. */
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            batch_usage(stdout);
            rc = 0;
            goto done;
        }
    }
    if (probe_opts_parse(argc, argv, &po, &n_rest, rest, err, sizeof err) != 0 ||
        batch_opts_parse(n_rest, rest, &o, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        goto done;
    }
    struct session s;
    if (session_init(&s, &po, argc, argv, err, sizeof err) != 0) {
        log_error(MOD, "%s", err);
        rc = PROBE_EXIT_FAILED;
        session_free(&s);
        goto done;
    }
    rc = batch_run(&o, &s, res);
    if (rc == PROBE_EXIT_USAGE) {
        log_error(MOD, "%s", res->failure);
    } else {
        if (batch_write_outputs(res, &s) != 0 && rc == PROBE_EXIT_OK)
            rc = PROBE_EXIT_FAILED;
        batch_print_summary(res, stdout, s.out_dir);
        fflush(stdout);
    }
    session_free(&s);
done:
    probe_opts_free(&po);
    free(rest);
    free(res);
    return rc;
}
