/* cmd_calibrate: `slmprobe calibrate`, measuring this machine's client ceiling in a few seconds
 * (calibrate.h) and storing it where every probe looks. Prints the figures and the path on
 * stdout; exit 0 ok, 1 failure, 2 usage. It measures no server. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate/calibrate.h"
#include "commands.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: slmprobe calibrate [--seconds S] [--output FILE]\n"
            "\n"
            "Measures the probe client's own ceiling on this machine: 1-token requests per\n"
            "second and SSE events per second at concurrency 1 and 64, against a loopback\n"
            "streaming server in a child process (a short form of bench/bench_client). Every\n"
            "probe reads the result and warns when a run nears it; its reports say whether a\n"
            "calibration was used. A file from another machine (hostname, CPU model, CPU count)\n"
            "or older than 30 days is ignored with a note.\n"
            "\n"
            "options:\n"
            "  --seconds S     measuring time in all (default %.0f, 1..60)\n"
            "  --output FILE   where to write (default $XDG_CACHE_HOME/slmprobe/client.json,\n"
            "                  else ~/.cache/slmprobe/client.json)\n"
            "  -h, --help      this text\n",
            CALIBRATE_DEFAULT_S);
}

static int parse_args(int argc, char **argv, double *seconds, const char **output)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        int is_sec = !strncmp(a, "--seconds", 9) && (a[9] == 0 || a[9] == '=');
        int is_out = !strncmp(a, "--output", 8) && (a[8] == 0 || a[8] == '=');
        if (!is_sec && !is_out) {
            fprintf(stderr, "slmprobe calibrate: unknown argument '%s' (see --help)\n", a);
            return 2;
        }
        v = strchr(a, '=') ? strchr(a, '=') + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "slmprobe calibrate: %s needs a value\n", a);
            return 2;
        }
        if (is_out) {
            *output = v;
            continue;
        }
        char *end;
        errno = 0;
        *seconds = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(*seconds) || *seconds < 1 || *seconds > 60) {
            fprintf(stderr, "slmprobe calibrate: --seconds: expected 1..60, got '%s'\n", v);
            return 2;
        }
    }
    return 0;
}

int cmd_calibrate(int argc, char **argv)
{
    double seconds = CALIBRATE_DEFAULT_S;
    const char *output = NULL;
    int rc = parse_args(argc, argv, &seconds, &output);
    if (rc)
        return rc == 1 ? 0 : 2;
    char path[4096], err[512];
    if (!output) {
        if (calibrate_cache_path(path, sizeof path) != CALIBRATE_OK) {
            fprintf(stderr, "slmprobe calibrate: no cache directory (set HOME or "
                            "XDG_CACHE_HOME, or give --output)\n");
            return 1;
        }
        output = path;
    }
    struct calibrate_result r;
    enum calibrate_status st = calibrate_run(seconds, &r, err, sizeof err);
    if (st == CALIBRATE_OK)
        st = calibrate_write(output, &r, err, sizeof err);
    if (st != CALIBRATE_OK) {
        fprintf(stderr, "slmprobe calibrate: %s: %s\n", calibrate_status_str(st), err);
        return 1;
    }
    printf("client ceiling on %s (%s, %d CPUs), measured in %.1f s:\n", r.machine.hostname,
           r.machine.cpu_model[0] ? r.machine.cpu_model : "CPU unknown", r.machine.n_cpus,
           r.duration_s);
    printf("  requests/s (1-token, 64 in flight)  %.0f\n", r.ceiling.req_per_s);
    printf("  SSE events/s at concurrency 1       %.0f\n", r.ceiling.events_per_s_c1);
    printf("  SSE events/s at concurrency 64      %.0f\n", r.ceiling.events_per_s_c64);
    printf("wrote %s\n", output);
    return 0;
}
