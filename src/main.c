/* main: parses the command word and dispatches to one command's entry point. The only place
 * that calls exit(). Each command parses its own options and returns an exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "engine/blas_env.h"

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"serve", cmd_serve, "run the embedded reference runtime (OpenAI-compatible server)"},
    {"model", cmd_model, "create or inspect model files (model init, model info)"},
    {"ttft", cmd_ttft, "Tier 1: cold vs warm time to first token, start-up phases"},
    {"env", cmd_env, "host facts and GPU telemetry (NVML/nvidia-smi) as the probe sees them"},
    {"batch", cmd_batch, "Tier 3B: sequential vs concurrent, concurrency sweep, knee, open-loop"},
    {"check", cmd_check, "health check: a few warm requests judged against SLO bounds (cron, CI)"},
    {"lab", cmd_lab, "the whole day: every tier, DAY.md write-up, presets, one report page"},
    {"kv", cmd_kv, "Tier 3A: KV cache capacity and memory vs max-model-len, per launch, vs theory"},
    {"calibrate", cmd_calibrate, "measure this machine's client ceiling (used by every probe)"},
    {"prefix", cmd_prefix, "Tier 2: prefix caching A/B (off vs on), hit-rate mix, fit, working set"},
};

static void usage(FILE *f)
{
    fprintf(f, "slmprobe %s: measure small language model servers\n\n", SLMPROBE_VERSION);
    fprintf(f, "usage: slmprobe <command> [options]   (slmprobe <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        exit(2);
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        exit(0);
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("slmprobe %s\n", SLMPROBE_VERSION);
        exit(0);
    }
    /* The engine's matrix products need OpenBLAS's kernels for this CPU (see blas_env.h). */
    if (!strcmp(argv[1], "serve"))
        blas_env_reexec_if_needed(argv);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            exit(commands[i].run(argc - 1, argv + 1));
    fprintf(stderr, "slmprobe: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    exit(2);
}
