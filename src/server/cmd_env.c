/* cmd_env: `slmprobe env` prints what the probe can see of this machine: host facts (CPU,
 * memory, page cache, OS, kernel) and the GPUs through NVML (dlopen) or nvidia-smi, or why none.
 * It is the quick check that telemetry works before a long run; it measures nothing else. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "server/telemetry.h"

static void env_usage(FILE *f)
{
    fprintf(f, "usage: slmprobe env\n\n"
               "Prints host facts (CPU model, cores, memory, page cache, OS, kernel) and the\n"
               "GPUs the probe's telemetry sees (NVML via dlopen, else nvidia-smi), or why none.\n"
               "Exit status: 0 (a GPU was found or not: both are answers), 2 on bad options.\n");
}

int cmd_env(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            env_usage(stdout);
            return 0;
        }
        fprintf(stderr, "env: unknown option '%s'\n", argv[i]);
        env_usage(stderr);
        return 2;
    }
    struct telemetry_host h;
    if (telemetry_host_read(&h) == 0) {
        printf("cpu:         %s (%d online)\n", h.cpu_model[0] ? h.cpu_model : "unknown",
               h.n_cpus);
        if (h.mem_total_bytes >= 0)
            printf("memory:      %.1f GiB total, %.1f GiB available\n",
                   (double)h.mem_total_bytes / 1073741824.0,
                   h.mem_available_bytes >= 0 ? (double)h.mem_available_bytes / 1073741824.0
                                              : -1.0);
        if (h.page_cache_bytes >= 0)
            printf("page cache:  %.1f GiB\n", (double)h.page_cache_bytes / 1073741824.0);
        printf("os:          %s\n", h.os[0] ? h.os : "unknown");
        printf("kernel:      %s\n", h.kernel[0] ? h.kernel : "unknown");
    } else {
        printf("host:        /proc/meminfo unreadable\n");
    }
    printf("gpu:\n");
    telemetry_gpu_selftest(stdout);
    return 0;
}
