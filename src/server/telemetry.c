/* telemetry: GPU state (NVML through dlopen, nvidia-smi as a fallback), the server's process tree
 * from /proc, host facts, and a sampler thread with a preallocated ring (see telemetry.h). No
 * build-time dependency on NVIDIA libraries; unknown values stay unknown (NAN / -1 / available=0
 * with a reason), never zero. */
#include "server/telemetry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/log.h"

/* ---- NVML (layouts and codes from the NVML API reference) ---- */

typedef int nvml_return;
typedef struct nvml_device_st *nvml_device;
struct nvml_memory {
    unsigned long long total, free, used; /* bytes */
};
/* nvmlMemory_v2_t: used excludes the driver-reserved memory, like nvidia-smi's memory.used */
struct nvml_memory_v2 {
    unsigned int version; /* sizeof | 2 << 24 (NVML_STRUCT_VERSION(Memory, 2)) */
    unsigned long long total, reserved, free, used;
};
struct nvml_utilization {
    unsigned int gpu, memory; /* percent over the last sample period */
};
#define NVML_SUCCESS 0
#define NVML_DEVICE_NAME_BUFFER_SIZE 96
#define NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE 80

struct nvml_api {
    void *lib;
    nvml_return (*init_v2)(void);
    nvml_return (*device_get_count_v2)(unsigned int *);
    nvml_return (*device_get_handle_by_index_v2)(unsigned int, nvml_device *);
    nvml_return (*device_get_name)(nvml_device, char *, unsigned int);
    nvml_return (*device_get_memory_info)(nvml_device, struct nvml_memory *);
    nvml_return (*device_get_memory_info_v2)(nvml_device, struct nvml_memory_v2 *); /* optional */
    nvml_return (*device_get_utilization_rates)(nvml_device, struct nvml_utilization *);
    nvml_return (*system_get_driver_version)(char *, unsigned int);
    nvml_return (*device_get_power_usage)(nvml_device, unsigned int *); /* mW; optional */
    const char *(*error_string)(nvml_return);                            /* optional */
    int ok;
    char reason[200];
};

static struct nvml_api g_nvml;
static pthread_once_t g_nvml_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_gpu_mu = PTHREAD_MUTEX_INITIALIZER;

static const char *nvml_err(nvml_return r)
{
    static char buf[32];
    if (g_nvml.error_string) {
        const char *s = g_nvml.error_string(r);
        if (s)
            return s;
    }
    snprintf(buf, sizeof buf, "NVML error %d", r);
    return buf;
}

static void nvml_load(void)
{
    struct nvml_api *n = &g_nvml;
    n->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) {
        snprintf(n->reason, sizeof n->reason, "libnvidia-ml.so.1 not found");
        return;
    }
#define NVML_SYM(field, name)                                                                      \
    do {                                                                                           \
        *(void **)(&n->field) = dlsym(n->lib, name);                                               \
    } while (0)
    NVML_SYM(init_v2, "nvmlInit_v2");
    NVML_SYM(device_get_count_v2, "nvmlDeviceGetCount_v2");
    NVML_SYM(device_get_handle_by_index_v2, "nvmlDeviceGetHandleByIndex_v2");
    NVML_SYM(device_get_name, "nvmlDeviceGetName");
    NVML_SYM(device_get_memory_info, "nvmlDeviceGetMemoryInfo");
    NVML_SYM(device_get_memory_info_v2, "nvmlDeviceGetMemoryInfo_v2");
    NVML_SYM(device_get_utilization_rates, "nvmlDeviceGetUtilizationRates");
    NVML_SYM(system_get_driver_version, "nvmlSystemGetDriverVersion");
    NVML_SYM(device_get_power_usage, "nvmlDeviceGetPowerUsage");
    NVML_SYM(error_string, "nvmlErrorString");
#undef NVML_SYM
    if (!n->init_v2 || !n->device_get_count_v2 || !n->device_get_handle_by_index_v2 ||
        !n->device_get_name || !n->device_get_memory_info) {
        snprintf(n->reason, sizeof n->reason, "libnvidia-ml.so.1 lacks required symbols");
        return;
    }
    nvml_return r = n->init_v2();
    if (r != NVML_SUCCESS) {
        snprintf(n->reason, sizeof n->reason, "nvmlInit_v2 failed: %s", nvml_err(r));
        return;
    }
    n->ok = 1;
}

static int nvml_read(struct telemetry_gpus *out, char *reason, size_t reason_len)
{
    pthread_once(&g_nvml_once, nvml_load);
    if (!g_nvml.ok) {
        snprintf(reason, reason_len, "%s", g_nvml.reason);
        return -1;
    }
    unsigned int count = 0;
    nvml_return r = g_nvml.device_get_count_v2(&count);
    if (r != NVML_SUCCESS) {
        snprintf(reason, reason_len, "nvmlDeviceGetCount_v2: %s", nvml_err(r));
        return -1;
    }
    if (count == 0) {
        snprintf(reason, reason_len, "NVML reports no GPU");
        return -1;
    }
    if (g_nvml.system_get_driver_version) {
        char v[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE] = {0};
        if (g_nvml.system_get_driver_version(v, sizeof v) == NVML_SUCCESS)
            snprintf(out->driver_version, sizeof out->driver_version, "%s", v);
    }
    int n = 0;
    for (unsigned int i = 0; i < count && n < TELEMETRY_MAX_GPUS; i++) {
        nvml_device dev;
        if (g_nvml.device_get_handle_by_index_v2(i, &dev) != NVML_SUCCESS)
            continue;
        struct telemetry_gpu *g = &out->gpu[n];
        g->mem_total_bytes = g->mem_used_bytes = -1;
        g->util_gpu_pct = g->util_mem_pct = g->power_w = NAN;
        char name[NVML_DEVICE_NAME_BUFFER_SIZE] = {0};
        if (g_nvml.device_get_name(dev, name, sizeof name) == NVML_SUCCESS)
            snprintf(g->name, sizeof g->name, "%s", name);
        struct nvml_memory_v2 m2;
        memset(&m2, 0, sizeof m2);
        m2.version = (unsigned int)sizeof m2 | (2u << 24);
        struct nvml_memory mem;
        if (g_nvml.device_get_memory_info_v2 &&
            g_nvml.device_get_memory_info_v2(dev, &m2) == NVML_SUCCESS) {
            g->mem_total_bytes = (int64_t)m2.total;
            g->mem_used_bytes = (int64_t)m2.used;
        } else if (g_nvml.device_get_memory_info(dev, &mem) == NVML_SUCCESS) {
            g->mem_total_bytes = (int64_t)mem.total;
            g->mem_used_bytes = (int64_t)mem.used;
        }
        struct nvml_utilization u;
        if (g_nvml.device_get_utilization_rates &&
            g_nvml.device_get_utilization_rates(dev, &u) == NVML_SUCCESS) {
            g->util_gpu_pct = u.gpu;
            g->util_mem_pct = u.memory;
        }
        unsigned int mw;
        if (g_nvml.device_get_power_usage && g_nvml.device_get_power_usage(dev, &mw) == NVML_SUCCESS)
            g->power_w = mw / 1000.0;
        n++;
    }
    if (n == 0) {
        snprintf(reason, reason_len, "NVML: no GPU handle could be opened");
        return -1;
    }
    out->n_gpus = n;
    out->source = "nvml";
    out->available = 1;
    return 0;
}

/* ---- nvidia-smi fallback ---- */

static int find_in_path(const char *name, char *out, size_t out_len)
{
    const char *path = getenv("PATH");
    if (!path || !path[0])
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        if (n > 0 && n + strlen(name) + 2 <= out_len) {
            memcpy(out, path, n);
            out[n] = '/';
            strcpy(out + n + 1, name);
            if (access(out, X_OK) == 0)
                return 0;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    return -1;
}

/* Runs argv with stdout+stderr into out (capped), killing it after timeout_ms. Returns the wait
 * status, or -1 (fork/pipe failure, or timeout: then *timed_out = 1). No shell. */
static int run_capture(char *const argv[], long timeout_ms, struct buf *out, int *timed_out)
{
    int pfd[2];
    *timed_out = 0;
    if (pipe2(pfd, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    mono_ns deadline = clock_now_ns() + (mono_ns)timeout_ms * 1000000ull;
    char chunk[4096];
    for (;;) {
        mono_ns now = clock_now_ns();
        if (now >= deadline) {
            *timed_out = 1;
            break;
        }
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int pr = poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        ssize_t n = read(pfd[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        buf_append(out, chunk, (size_t)n); /* over the cap: the rest is not needed */
    }
    close(pfd[0]);
    if (*timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return *timed_out ? -1 : status;
}

static double smi_num(const char *s)
{
    while (*s == ' ')
        s++;
    if (!*s || *s == '[' || !strncmp(s, "N/A", 3))
        return NAN; /* "[N/A]", "[Not Supported]" */
    char *end;
    double v = strtod(s, &end);
    return end == s ? NAN : v;
}

static int smi_read(struct telemetry_gpus *out, char *reason, size_t reason_len)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static mono_ns t_retry_ns;
    static char last_reason[200];
    char exe[1024];
    int rc = -1;
    pthread_mutex_lock(&mu);
    if (t_retry_ns && clock_now_ns() < t_retry_ns) {
        snprintf(reason, reason_len, "%s", last_reason);
        pthread_mutex_unlock(&mu);
        return -1;
    }
    if (find_in_path("nvidia-smi", exe, sizeof exe) != 0) {
        snprintf(last_reason, sizeof last_reason, "nvidia-smi not found");
        t_retry_ns = clock_now_ns() + 3600ull * 1000000000ull; /* it will not appear */
        snprintf(reason, reason_len, "%s", last_reason);
        pthread_mutex_unlock(&mu);
        return -1;
    }
    char *argv[] = {exe,
                    "--query-gpu=name,memory.used,memory.total,utilization.gpu,power.draw,"
                    "driver_version",
                    "--format=csv,noheader,nounits", NULL};
    struct buf b;
    buf_init(&b, 4096, 64 * 1024);
    int timed_out;
    int status = run_capture(argv, 5000, &b, &timed_out);
    if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char first[120] = "";
        if (b.len) {
            size_t n = strcspn(b.data, "\n");
            if (n >= sizeof first)
                n = sizeof first - 1;
            memcpy(first, b.data, n);
            first[n] = 0;
        }
        if (timed_out)
            snprintf(last_reason, sizeof last_reason, "nvidia-smi timed out after 5 s");
        else
            snprintf(last_reason, sizeof last_reason, "nvidia-smi failed (%s %d): %s",
                     status >= 0 && WIFEXITED(status) ? "exit status" : "status",
                     status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : status, first);
        t_retry_ns = clock_now_ns() + 10ull * 1000000000ull;
        snprintf(reason, reason_len, "%s", last_reason);
        goto done;
    }
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(b.data, "\n", &save); line && n < TELEMETRY_MAX_GPUS;
         line = strtok_r(NULL, "\n", &save)) {
        char *f[6];
        int nf = 0;
        char *p = line;
        while (nf < 6) {
            f[nf++] = p;
            char *c = strchr(p, ',');
            if (!c)
                break;
            *c = 0;
            p = c + 1;
        }
        if (nf < 4)
            continue;
        struct telemetry_gpu *g = &out->gpu[n];
        while (*f[0] == ' ')
            f[0]++;
        snprintf(g->name, sizeof g->name, "%s", f[0]);
        double used = smi_num(f[1]), total = smi_num(f[2]);
        g->mem_used_bytes = isnan(used) ? -1 : (int64_t)(used * 1048576.0);
        g->mem_total_bytes = isnan(total) ? -1 : (int64_t)(total * 1048576.0);
        g->util_gpu_pct = smi_num(f[3]);
        g->util_mem_pct = NAN;
        g->power_w = nf > 4 ? smi_num(f[4]) : NAN;
        if (nf > 5 && !out->driver_version[0]) {
            char *v = f[5];
            while (*v == ' ')
                v++;
            v[strcspn(v, " \r")] = 0;
            snprintf(out->driver_version, sizeof out->driver_version, "%s", v);
        }
        n++;
    }
    if (n == 0) {
        snprintf(reason, reason_len, "nvidia-smi listed no GPU");
        goto done;
    }
    out->n_gpus = n;
    out->source = "nvidia-smi";
    out->available = 1;
    rc = 0;
done:
    buf_free(&b);
    pthread_mutex_unlock(&mu);
    return rc;
}

int telemetry_gpu_read(struct telemetry_gpus *out)
{
    memset(out, 0, sizeof *out);
    out->source = "none";
    char r1[200], r2[200];
    pthread_mutex_lock(&g_gpu_mu);
    int rc = nvml_read(out, r1, sizeof r1);
    pthread_mutex_unlock(&g_gpu_mu);
    if (rc == 0)
        return 0;
    memset(out, 0, sizeof *out);
    out->source = "none";
    if (smi_read(out, r2, sizeof r2) == 0)
        return 0;
    memset(out, 0, sizeof *out);
    out->source = "none";
    if (strstr(r1, "not found") && strstr(r2, "not found"))
        snprintf(out->reason, sizeof out->reason, "no NVIDIA driver (%.110s; %.110s)", r1, r2);
    else
        snprintf(out->reason, sizeof out->reason, "no GPU readable (%.110s; %.110s)", r1, r2);
    return -1;
}

int telemetry_gpu_selftest(FILE *out)
{
    struct telemetry_gpus g;
    if (telemetry_gpu_read(&g) != 0) {
        fprintf(out, "gpu: none: %s\n", g.reason);
        return 1;
    }
    fprintf(out, "gpu: %d found via %s, driver %s\n", g.n_gpus, g.source,
            g.driver_version[0] ? g.driver_version : "unknown");
    for (int i = 0; i < g.n_gpus; i++) {
        const struct telemetry_gpu *d = &g.gpu[i];
        fprintf(out, "  gpu %d: %s", i, d->name[0] ? d->name : "(name unknown)");
        if (d->mem_total_bytes >= 0)
            fprintf(out, ", memory %.2f / %.2f GiB used", d->mem_used_bytes / 1073741824.0,
                    d->mem_total_bytes / 1073741824.0);
        else
            fprintf(out, ", memory unknown");
        if (!isnan(d->util_gpu_pct))
            fprintf(out, ", util %.0f%%", d->util_gpu_pct);
        else
            fprintf(out, ", util unknown");
        if (!isnan(d->util_mem_pct))
            fprintf(out, ", memory-controller %.0f%%", d->util_mem_pct);
        if (!isnan(d->power_w))
            fprintf(out, ", power %.1f W", d->power_w);
        else
            fprintf(out, ", power unknown");
        fputc('\n', out);
    }
    return 0;
}

/* ---- /proc ---- */

/* Reads a small /proc file into buf (NUL-terminated). Returns bytes or -1 (errno set). */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got < len - 1) {
        ssize_t n = read(fd, buf + got, len - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    buf[got] = 0;
    return (ssize_t)got;
}

struct proc_ent {
    pid_t pid, ppid;
    uint64_t ticks, majflt;
};

static int parse_stat(const char *buf, pid_t *ppid, uint64_t *ticks, uint64_t *majflt)
{
    const char *rp = strrchr(buf, ')');
    if (!rp)
        return -1;
    char state;
    int pp;
    unsigned long long f[15];
    /* after ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
     * stime cutime cstime */
    int n = sscanf(rp + 1, " %c %d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                   &state, &pp, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8],
                   &f[9], &f[10], &f[11], &f[12]);
    if (n < 15)
        return -1;
    *ppid = pp;
    *ticks = f[9] + f[10] + f[11] + f[12]; /* utime + stime + cutime + cstime */
    *majflt = f[7] + f[8];                  /* majflt + cmajflt */
    return 0;
}

int telemetry_proc_tree_sample(pid_t root_pid, struct telemetry_proc_sample *out)
{
    memset(out, 0, sizeof *out);
    out->t_ns = clock_now_ns();
    out->rss_bytes = -1;
    out->read_bytes = -1;
    out->majflt = -1;
    if (root_pid <= 0)
        return -1;
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    size_t cap = 1024, n = 0;
    struct proc_ent *ents = xmalloc(cap * sizeof *ents);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        if (read_small(path, buf, sizeof buf) <= 0)
            continue;
        struct proc_ent e;
        e.pid = (pid_t)atoi(de->d_name);
        if (parse_stat(buf, &e.ppid, &e.ticks, &e.majflt) != 0)
            continue;
        if (n == cap) {
            struct proc_ent *bigger = xmalloc(cap * 2 * sizeof *bigger);
            memcpy(bigger, ents, n * sizeof *ents);
            free(ents);
            ents = bigger;
            cap *= 2;
        }
        ents[n++] = e;
    }
    closedir(d);

    /* Mark the tree: repeat until no new member (n is small; O(n * depth)). */
    char *in = xcalloc(n ? n : 1, 1);
    int found_root = 0;
    for (size_t i = 0; i < n; i++)
        if (ents[i].pid == root_pid) {
            in[i] = 1;
            found_root = 1;
        }
    for (int changed = found_root; changed;) {
        changed = 0;
        for (size_t i = 0; i < n; i++) {
            if (in[i])
                continue;
            for (size_t j = 0; j < n; j++)
                if (in[j] && ents[j].pid == ents[i].ppid) {
                    in[i] = 1;
                    changed = 1;
                    break;
                }
        }
    }
    long page = sysconf(_SC_PAGESIZE);
    int64_t rss = 0, rd = 0;
    int rss_ok = 1, rd_ok = 1;
    for (size_t i = 0; i < n; i++) {
        if (!in[i])
            continue;
        out->n_procs++;
        out->cpu_ticks += ents[i].ticks;
        out->majflt = (out->majflt < 0 ? 0 : out->majflt) + (int64_t)ents[i].majflt;
        char path[64], buf[2048];
        snprintf(path, sizeof path, "/proc/%d/statm", (int)ents[i].pid);
        unsigned long long size_pages, rss_pages;
        if (read_small(path, buf, sizeof buf) > 0 &&
            sscanf(buf, "%llu %llu", &size_pages, &rss_pages) == 2)
            rss += (int64_t)rss_pages * page;
        else
            rss_ok = 0;
        snprintf(path, sizeof path, "/proc/%d/io", (int)ents[i].pid);
        if (read_small(path, buf, sizeof buf) > 0) {
            const char *p = strstr(buf, "\nread_bytes:");
            if (p)
                rd += strtoll(p + 12, NULL, 10);
            else
                rd_ok = 0;
        } else {
            if (rd_ok)
                snprintf(out->read_bytes_reason, sizeof out->read_bytes_reason,
                         "/proc/%d/io: %s", (int)ents[i].pid, strerror(errno));
            rd_ok = 0;
        }
    }
    if (out->n_procs > 0) {
        out->rss_bytes = rss_ok ? rss : -1;
        out->read_bytes = rd_ok ? rd : -1;
        if (!rd_ok && !out->read_bytes_reason[0])
            snprintf(out->read_bytes_reason, sizeof out->read_bytes_reason,
                     "read_bytes missing from /proc/PID/io");
    }
    free(in);
    free(ents);
    return found_root ? 0 : -1;
}

double telemetry_cpu_pct(const struct telemetry_proc_sample *a, const struct telemetry_proc_sample *b)
{
    if (b->t_ns <= a->t_ns || b->n_procs == 0 || a->n_procs == 0 || b->cpu_ticks < a->cpu_ticks)
        return NAN;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        return NAN;
    double cpu_s = (double)(b->cpu_ticks - a->cpu_ticks) / (double)hz;
    return 100.0 * cpu_s / ns_to_s(b->t_ns - a->t_ns);
}

/* ---- host ---- */

static int64_t meminfo_kb(const char *text, const char *key)
{
    const char *p = text;
    size_t kl = strlen(key);
    while (p && *p) {
        if (!strncmp(p, key, kl) && p[kl] == ':')
            return strtoll(p + kl + 1, NULL, 10) * 1024;
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

/* Cached - Shmem (telemetry.h says why); Cached alone when Shmem is missing (old kernels). */
static int64_t meminfo_file_cache(const char *text)
{
    int64_t cached = meminfo_kb(text, "Cached"), shmem = meminfo_kb(text, "Shmem");
    if (cached < 0)
        return -1;
    return shmem >= 0 && shmem <= cached ? cached - shmem : cached;
}

int64_t telemetry_page_cache_bytes(void)
{
    char buf[8192];
    if (read_small("/proc/meminfo", buf, sizeof buf) <= 0)
        return -1;
    return meminfo_file_cache(buf);
}

int telemetry_host_read(struct telemetry_host *out)
{
    memset(out, 0, sizeof *out);
    out->mem_total_bytes = out->mem_available_bytes = out->page_cache_bytes = -1;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    out->n_cpus = n > 0 ? (int)n : -1;
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(out->kernel, sizeof out->kernel, "%.40s %.60s %.20s", u.sysname, u.release, u.machine);
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "model name", 10) || !strncmp(line, "Hardware", 8) ||
                !strncmp(line, "Model\t", 6)) {
                char *c = strchr(line, ':');
                if (!c)
                    continue;
                c++;
                while (*c == ' ' || *c == '\t')
                    c++;
                c[strcspn(c, "\n")] = 0;
                snprintf(out->cpu_model, sizeof out->cpu_model, "%s", c);
                if (!strncmp(line, "model name", 10))
                    break;
            }
        }
        fclose(f);
    }
    f = fopen("/etc/os-release", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "PRETTY_NAME=", 12)) {
                char *v = line + 12;
                v[strcspn(v, "\n")] = 0;
                size_t l = strlen(v);
                if (l >= 2 && (v[0] == '"' || v[0] == '\'') && v[l - 1] == v[0]) {
                    v[l - 1] = 0;
                    v++;
                }
                snprintf(out->os, sizeof out->os, "%.127s", v);
                break;
            }
        fclose(f);
    }
    char buf[8192];
    if (read_small("/proc/meminfo", buf, sizeof buf) <= 0)
        return -1;
    out->mem_total_bytes = meminfo_kb(buf, "MemTotal");
    out->mem_available_bytes = meminfo_kb(buf, "MemAvailable");
    out->page_cache_bytes = meminfo_file_cache(buf);
    return 0;
}

/* ---- a model's files in the page cache ---- */

#define RESIDENCY_MAX_DEPTH 8
#define RESIDENCY_CHUNK_BYTES ((size_t)1 << 30) /* mapped and probed a GiB at a time */

struct file_walk {
    int (*fn)(struct file_walk *w, int fd, int64_t size, const char *path);
    int64_t resident_bytes, total_bytes;
    char *err;
    size_t err_len;
};

/* Calls w->fn on every regular file of path (a file, or a directory walked recursively). 0, or
 * -1 (errno set; w->err filled when given) at the first failure. */
static int walk_files(struct file_walk *w, const char *path, int depth)
{
    struct stat st;
    if (stat(path, &st) != 0)
        goto fail;
    if (S_ISREG(st.st_mode)) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            goto fail;
        int rc = w->fn(w, fd, (int64_t)st.st_size, path);
        int saved = errno;
        close(fd);
        errno = saved;
        return rc;
    }
    if (!S_ISDIR(st.st_mode) || depth >= RESIDENCY_MAX_DEPTH)
        return 0; /* sockets, devices, a loop of links: not model files */
    DIR *d = opendir(path);
    if (!d)
        goto fail;
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char sub[4096];
        if (snprintf(sub, sizeof sub, "%s/%s", path, de->d_name) >= (int)sizeof sub)
            continue;
        rc = walk_files(w, sub, depth + 1);
    }
    int saved = errno;
    closedir(d);
    errno = saved;
    return rc;
fail:
    if (w->err && w->err_len)
        snprintf(w->err, w->err_len, "%s: %s", path, strerror(errno));
    return -1;
}

static int residency_fn(struct file_walk *w, int fd, int64_t size, const char *path)
{
    (void)path;
    long page = sysconf(_SC_PAGESIZE);
    size_t max_pages = RESIDENCY_CHUNK_BYTES / (size_t)page;
    unsigned char *vec = xmalloc(max_pages);
    int rc = 0;
    for (int64_t off = 0; off < size && rc == 0; off += (int64_t)RESIDENCY_CHUNK_BYTES) {
        int64_t left = size - off;
        size_t len = left < (int64_t)RESIDENCY_CHUNK_BYTES ? (size_t)left : RESIDENCY_CHUNK_BYTES;
        void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
        if (m == MAP_FAILED) {
            rc = -1;
            break;
        }
        size_t n_pages = (len + (size_t)page - 1) / (size_t)page, n_res = 0;
        if (mincore(m, len, vec) != 0)
            rc = -1;
        for (size_t i = 0; rc == 0 && i < n_pages; i++)
            n_res += vec[i] & 1;
        size_t res = n_res * (size_t)page; /* a resident partial last page counts its bytes */
        w->resident_bytes += (int64_t)(res > len ? len : res);
        int saved = errno;
        munmap(m, len);
        errno = saved;
    }
    free(vec);
    w->total_bytes += size;
    return rc;
}

int telemetry_file_residency(const char *path, int64_t *resident_bytes, int64_t *total_bytes)
{
    struct file_walk w = {.fn = residency_fn};
    int rc = path && path[0] ? walk_files(&w, path, 0) : (errno = ENOENT, -1);
    *resident_bytes = rc == 0 ? w.resident_bytes : -1;
    *total_bytes = rc == 0 ? w.total_bytes : -1;
    return rc;
}

static int evict_fn(struct file_walk *w, int fd, int64_t size, const char *path)
{
    (void)size;
    /* fsync of a read-only fd is allowed; EINVAL/EROFS: nothing to flush there */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
        snprintf(w->err, w->err_len, "fsync %s: %s", path, strerror(errno));
        return -1;
    }
    int e = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (e != 0) {
        snprintf(w->err, w->err_len, "posix_fadvise(DONTNEED) %s: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    return 0;
}

int telemetry_file_evict(const char *path, char *err, size_t err_len)
{
    char local[256];
    struct file_walk w = {.fn = evict_fn, .err = err_len ? err : local,
                          .err_len = err_len ? err_len : sizeof local};
    w.err[0] = 0;
    if (!path || !path[0]) {
        snprintf(w.err, w.err_len, "no model path");
        return -1;
    }
    return walk_files(&w, path, 0);
}

double telemetry_resident_frac(int64_t resident_bytes, int64_t total_bytes)
{
    if (resident_bytes < 0 || total_bytes <= 0)
        return NAN;
    return (double)resident_bytes / (double)total_bytes;
}

/* ---- sampler ---- */

struct telemetry_sampler {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int running, stop;
    pid_t root_pid;
    int interval_ms;
    int with_gpu;
    struct telemetry_sample *ring;
    size_t cap, head, n; /* next write index, valid count */
    uint64_t n_written;
    struct telemetry_proc_sample prev;
    int have_prev;
    pid_t prev_root;
    char gpu_reason[256];
};

struct telemetry_sampler *telemetry_sampler_new(const struct telemetry_sampler_config *cfg)
{
    struct telemetry_sampler *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->root_pid = cfg->root_pid;
    s->interval_ms = cfg->interval_ms > 0 ? cfg->interval_ms : 100;
    s->cap = cfg->cap_samples > 0 ? cfg->cap_samples : 36000;
    s->with_gpu = cfg->with_gpu;
    s->ring = xcalloc(s->cap, sizeof *s->ring);
    return s;
}

void telemetry_sampler_set_root(struct telemetry_sampler *s, pid_t root_pid)
{
    pthread_mutex_lock(&s->mu);
    s->root_pid = root_pid;
    pthread_mutex_unlock(&s->mu);
}

void telemetry_sampler_tick(struct telemetry_sampler *s)
{
    pthread_mutex_lock(&s->mu);
    pid_t root = s->root_pid;
    int with_gpu = s->with_gpu;
    pthread_mutex_unlock(&s->mu);

    struct telemetry_sample smp;
    memset(&smp, 0, sizeof smp);
    smp.cpu_pct = NAN;
    smp.rss_bytes = -1;
    smp.read_bytes = -1;
    smp.majflt = -1;
    smp.gpu_util_pct = NAN;
    smp.gpu_mem_used_bytes = -1;
    struct telemetry_proc_sample ps;
    int have_ps = 0;
    if (root > 0 && telemetry_proc_tree_sample(root, &ps) == 0) {
        have_ps = 1;
        smp.rss_bytes = ps.rss_bytes;
        smp.read_bytes = ps.read_bytes;
        smp.majflt = ps.majflt;
        smp.n_procs = ps.n_procs;
    }
    struct telemetry_gpus g;
    int gpu_ok = 0;
    if (with_gpu) {
        gpu_ok = telemetry_gpu_read(&g) == 0;
        if (gpu_ok) {
            double util = 0;
            int n_util = 0;
            int64_t used = 0;
            int used_ok = 1;
            for (int i = 0; i < g.n_gpus; i++) {
                if (!isnan(g.gpu[i].util_gpu_pct)) {
                    util += g.gpu[i].util_gpu_pct;
                    n_util++;
                }
                if (g.gpu[i].mem_used_bytes >= 0)
                    used += g.gpu[i].mem_used_bytes;
                else
                    used_ok = 0;
            }
            smp.gpu_available = 1;
            smp.gpu_util_pct = n_util ? util / n_util : NAN;
            smp.gpu_mem_used_bytes = used_ok ? used : -1;
        }
    }
    smp.t_ns = have_ps ? ps.t_ns : clock_now_ns();

    pthread_mutex_lock(&s->mu);
    if (have_ps) {
        if (s->have_prev && s->prev_root == root)
            smp.cpu_pct = telemetry_cpu_pct(&s->prev, &ps);
        s->prev = ps;
        s->have_prev = 1;
        s->prev_root = root;
    } else {
        s->have_prev = 0;
    }
    if (with_gpu && !gpu_ok)
        snprintf(s->gpu_reason, sizeof s->gpu_reason, "%s", g.reason);
    else if (!with_gpu)
        snprintf(s->gpu_reason, sizeof s->gpu_reason, "GPU sampling not requested");
    s->ring[s->head] = smp;
    s->head = (s->head + 1) % s->cap;
    if (s->n < s->cap)
        s->n++;
    s->n_written++;
    pthread_mutex_unlock(&s->mu);
}

static void *sampler_main(void *arg)
{
    struct telemetry_sampler *s = arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        pthread_mutex_unlock(&s->mu);
        telemetry_sampler_tick(s);
        pthread_mutex_lock(&s->mu);
        next.tv_nsec += (long)s->interval_ms * 1000000L;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec))
            next = now; /* fell behind (slow nvidia-smi): no burst of catch-up samples */
        while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &next) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int telemetry_sampler_start(struct telemetry_sampler *s)
{
    pthread_mutex_lock(&s->mu);
    if (s->running) {
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    s->stop = 0;
    pthread_mutex_unlock(&s->mu);
    if (pthread_create(&s->th, NULL, sampler_main, s) != 0)
        return -1;
    pthread_mutex_lock(&s->mu);
    s->running = 1;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void telemetry_sampler_stop(struct telemetry_sampler *s)
{
    pthread_mutex_lock(&s->mu);
    if (!s->running) {
        pthread_mutex_unlock(&s->mu);
        return;
    }
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    pthread_mutex_lock(&s->mu);
    s->running = 0;
    pthread_mutex_unlock(&s->mu);
}

void telemetry_sampler_free(struct telemetry_sampler *s)
{
    if (!s)
        return;
    telemetry_sampler_stop(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->ring);
    free(s);
}

int telemetry_sampler_window(struct telemetry_sampler *s, mono_ns t0_ns, mono_ns t1_ns,
                             struct telemetry_window *out)
{
    memset(out, 0, sizeof *out);
    out->cpu_mean_pct = out->cpu_max_pct = NAN;
    out->gpu_util_mean_pct = out->gpu_util_max_pct = NAN;
    out->rss_max_bytes = -1;
    out->read_bytes_delta = -1;
    out->read_bytes_max = out->majflt_max = -1;
    out->gpu_mem_used_max_bytes = -1;
    pthread_mutex_lock(&s->mu);
    size_t start = (s->head + s->cap - s->n) % s->cap;
    double cpu_sum = 0, gpu_sum = 0;
    size_t n_cpu = 0, n_gpu = 0;
    int64_t rd_first = -1, rd_last = -1;
    for (size_t k = 0; k < s->n; k++) {
        const struct telemetry_sample *x = &s->ring[(start + k) % s->cap];
        if (k == 0 && s->n_written > s->cap && x->t_ns > t0_ns)
            out->n_dropped = (size_t)((x->t_ns - t0_ns) / ((mono_ns)s->interval_ms * 1000000ull));
        if (x->t_ns < t0_ns || x->t_ns > t1_ns)
            continue;
        out->n_samples++;
        if (!isnan(x->cpu_pct)) {
            cpu_sum += x->cpu_pct;
            n_cpu++;
            if (isnan(out->cpu_max_pct) || x->cpu_pct > out->cpu_max_pct)
                out->cpu_max_pct = x->cpu_pct;
        }
        if (x->rss_bytes > out->rss_max_bytes)
            out->rss_max_bytes = x->rss_bytes;
        if (x->read_bytes > out->read_bytes_max)
            out->read_bytes_max = x->read_bytes;
        if (x->majflt > out->majflt_max)
            out->majflt_max = x->majflt;
        if (x->read_bytes >= 0) {
            if (rd_first < 0)
                rd_first = x->read_bytes;
            rd_last = x->read_bytes;
        }
        if (x->gpu_available) {
            out->gpu_available = 1;
            if (!isnan(x->gpu_util_pct)) {
                gpu_sum += x->gpu_util_pct;
                n_gpu++;
                if (isnan(out->gpu_util_max_pct) || x->gpu_util_pct > out->gpu_util_max_pct)
                    out->gpu_util_max_pct = x->gpu_util_pct;
            }
            if (x->gpu_mem_used_bytes > out->gpu_mem_used_max_bytes)
                out->gpu_mem_used_max_bytes = x->gpu_mem_used_bytes;
        }
    }
    if (n_cpu)
        out->cpu_mean_pct = cpu_sum / (double)n_cpu;
    if (n_gpu)
        out->gpu_util_mean_pct = gpu_sum / (double)n_gpu;
    if (rd_first >= 0 && rd_last >= rd_first)
        out->read_bytes_delta = rd_last - rd_first;
    if (!out->gpu_available)
        snprintf(out->gpu_reason, sizeof out->gpu_reason, "%s",
                 s->gpu_reason[0] ? s->gpu_reason : "no GPU sample in the window");
    pthread_mutex_unlock(&s->mu);
    return out->n_samples > 0 ? 0 : -1;
}

size_t telemetry_sampler_copy(struct telemetry_sampler *s, struct telemetry_sample *out, size_t max)
{
    pthread_mutex_lock(&s->mu);
    size_t start = (s->head + s->cap - s->n) % s->cap;
    size_t n = s->n < max ? s->n : max;
    for (size_t k = 0; k < n; k++)
        out[k] = s->ring[(start + k) % s->cap];
    pthread_mutex_unlock(&s->mu);
    return n;
}
