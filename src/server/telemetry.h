/* telemetry: what the machine was doing while a server ran. GPU state through NVML loaded with
 * dlopen("libnvidia-ml.so.1") (no build dependency), falling back to `nvidia-smi --query-gpu`
 * (fork/exec, no shell, with a timeout); the server's process tree from /proc (CPU %, RSS, bytes
 * read from storage, major page faults); host facts (CPU model, cores, memory, page cache, OS,
 * kernel); a model's files in the page cache (mincore residency, and eviction of just those files
 * with fsync + posix_fadvise(DONTNEED), no root needed); and a sampler thread that keeps samples in a preallocated ring so a probe can ask for stats over a window.
 * Unknown is never reported as zero: GPU fields carry `available` + a reason, unknown doubles are
 * NAN and unknown byte counts -1. It does not launch servers (target.h) or scrape /metrics.
 *
 *   struct telemetry_sampler *s = telemetry_sampler_new(&(struct telemetry_sampler_config){
 *       .root_pid = t->pid, .interval_ms = 100, .cap_samples = 36000, .with_gpu = 1 });
 *   telemetry_sampler_start(s);
 *   mono_ns t0 = clock_now_ns();  ... run the load ...  mono_ns t1 = clock_now_ns();
 *   struct telemetry_window w;
 *   telemetry_sampler_window(s, t0, t1, &w);     // mean/max CPU %, max RSS, GPU util/memory
 *   telemetry_sampler_free(s);                    // stops the thread
 */
#ifndef SLM_PROBE_TELEMETRY_H
#define SLM_PROBE_TELEMETRY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "util/clock.h"

#define TELEMETRY_MAX_GPUS 16

/* ---- GPU ---- */

struct telemetry_gpu {
    char name[96];
    int64_t mem_total_bytes;  /* -1 unknown */
    int64_t mem_used_bytes;   /* -1 unknown */
    double util_gpu_pct;      /* 0..100; NAN unknown */
    double util_mem_pct;      /* memory-controller busy 0..100; NAN unknown (nvidia-smi path) */
    double power_w;           /* NAN unknown (optional in NVML, absent on some boards) */
};

struct telemetry_gpus {
    int available;            /* 1 if at least one GPU was read this time */
    char reason[256];         /* why not (available == 0), e.g. "no NVIDIA driver
                                 (libnvidia-ml.so.1 not found; nvidia-smi not found)" */
    const char *source;       /* "nvml", "nvidia-smi", or "none" (static string) */
    char driver_version[80];  /* "" unknown */
    int n_gpus;
    struct telemetry_gpu gpu[TELEMETRY_MAX_GPUS];
};

/* Reads every GPU now. NVML is loaded and initialised once per process (thread-safe); if it is
 * missing or fails, nvidia-smi is tried (timeout 5 s). Returns 0 if available, -1 otherwise (the
 * reason in out->reason). Any thread; NVML calls are serialised internally. */
int telemetry_gpu_read(struct telemetry_gpus *out);
/* Prints what was found (source, driver, each GPU's name/memory/util/power, or the reason) to
 * out; for `slmprobe env`. Returns 0 if a GPU was found, 1 if not. */
int telemetry_gpu_selftest(FILE *out);

/* ---- process tree ---- */

struct telemetry_proc_sample {
    mono_ns t_ns;
    int n_procs;                 /* root + descendants found (0: root gone) */
    uint64_t cpu_ticks;          /* sum of utime+stime (+cutime+cstime) over the tree, in clock ticks */
    int64_t rss_bytes;           /* sum of VmRSS over the tree; -1 unknown */
    int64_t read_bytes;          /* sum of /proc/PID/io read_bytes; -1 if any was unreadable */
    char read_bytes_reason[96];  /* why read_bytes is -1 ("" otherwise) */
    int64_t majflt;              /* sum of majflt + cmajflt (/proc/PID/stat fields 12, 13) over
                                  * the tree: page faults that waited for storage; -1 unknown */
};
/* Samples root_pid and all its descendants (scans /proc/[0-9]* /stat for parent pids).
 * 0, or -1 if root_pid does not exist (out->n_procs = 0). Any thread. */
int telemetry_proc_tree_sample(pid_t root_pid, struct telemetry_proc_sample *out);
/* CPU % between two samples of the same tree (100 = one core busy). NAN if dt is 0 or ticks went
 * backwards (a member exited without being reaped by a member). */
double telemetry_cpu_pct(const struct telemetry_proc_sample *a, const struct telemetry_proc_sample *b);

/* ---- host ---- */

struct telemetry_host {
    char cpu_model[128];          /* /proc/cpuinfo "model name" ("" unknown) */
    int n_cpus;                   /* online CPUs */
    int64_t mem_total_bytes;      /* MemTotal; -1 unknown */
    int64_t mem_available_bytes;  /* MemAvailable; -1 unknown */
    int64_t page_cache_bytes;     /* file page cache: Cached - Shmem; -1 unknown */
    char os[128];                 /* /etc/os-release PRETTY_NAME */
    char kernel[128];             /* uname: sysname release machine */
};
int telemetry_host_read(struct telemetry_host *out); /* 0, or -1 if /proc/meminfo unreadable */
/* The file page cache: "Cached" minus "Shmem" of /proc/meminfo ("Cached" counts tmpfs, /dev/shm
 * and shared anonymous memory too, which a server's IPC segments move), or -1. It is machine-wide:
 * every other process's reads and the kernel's reclaim move it, so a difference of two readings
 * corroborates a model's storage reads at best; it cannot show them (residency below can). */
int64_t telemetry_page_cache_bytes(void);

/* ---- a model's files in the page cache ---- */

/* path: one file, or a directory whose regular files (recursively, symlinks followed, as in a
 * Hugging Face snapshot) all count. */
/* Bytes of path's files resident in the page cache now (mincore on a read-only mmap, which reads
 * nothing) into *resident_bytes, their size into *total_bytes. 0, or -1 (errno set; both -1):
 * no such path, or a file that cannot be opened or mapped. */
int telemetry_file_residency(const char *path, int64_t *resident_bytes, int64_t *total_bytes);
/* Evicts path's files from the page cache: fsync (dirty pages cannot be dropped) then
 * posix_fadvise(POSIX_FADV_DONTNEED) on each. Other files are left alone. Filesystems without a
 * page cache of their own (tmpfs, some overlay setups) ignore it: check with
 * telemetry_file_residency afterwards. 0, or -1 with the reason in err. */
int telemetry_file_evict(const char *path, char *err, size_t err_len);
/* resident / total in 0..1; NAN when either is unknown (< 0) or total is 0. */
double telemetry_resident_frac(int64_t resident_bytes, int64_t total_bytes);

/* ---- sampler thread ---- */

struct telemetry_sampler_config {
    pid_t root_pid;       /* process tree to follow; 0: none (GPU/host only) */
    int interval_ms;      /* default 100 when 0 */
    size_t cap_samples;   /* ring size; default 36000 when 0; oldest overwritten when full */
    int with_gpu;         /* sample GPUs too (one NVML/nvidia-smi read per tick) */
};

struct telemetry_sample {
    mono_ns t_ns;
    double cpu_pct;           /* since the previous sample; NAN for the first */
    int64_t rss_bytes;        /* -1 unknown */
    int64_t read_bytes;       /* cumulative for the tree; -1 unknown */
    int64_t majflt;           /* cumulative major faults of the tree; -1 unknown */
    int n_procs;
    int gpu_available;
    double gpu_util_pct;      /* mean over GPUs; NAN unknown */
    int64_t gpu_mem_used_bytes; /* sum over GPUs; -1 unknown */
};

struct telemetry_window {
    size_t n_samples;          /* samples with t0 <= t_ns <= t1 */
    size_t n_dropped;          /* ring overwrote samples of the window (cap too small) */
    double cpu_mean_pct, cpu_max_pct;       /* NAN if no CPU sample */
    int64_t rss_max_bytes;                  /* -1 unknown */
    int64_t read_bytes_delta;               /* last - first in the window; -1 unknown */
    int64_t read_bytes_max;                 /* highest cumulative tree total in the window (the
                                               sum falls when a member exits); -1 unknown */
    int64_t majflt_max;                     /* the same for major faults; -1 unknown */
    int gpu_available;                      /* 1 if any sample had GPU data */
    double gpu_util_mean_pct, gpu_util_max_pct; /* NAN unless gpu_available */
    int64_t gpu_mem_used_max_bytes;         /* -1 unless gpu_available */
    char gpu_reason[256];                   /* when !gpu_available */
};

/* Allocates the ring; never NULL. The thread starts with telemetry_sampler_start. */
struct telemetry_sampler *telemetry_sampler_new(const struct telemetry_sampler_config *cfg);
int telemetry_sampler_start(struct telemetry_sampler *s); /* 0, or -1 (thread creation failed) */
/* Changes the followed tree (e.g. after a relaunch). Any thread. */
void telemetry_sampler_set_root(struct telemetry_sampler *s, pid_t root_pid);
/* Takes one sample now on the caller's thread (also what the thread does each tick). */
void telemetry_sampler_tick(struct telemetry_sampler *s);
void telemetry_sampler_stop(struct telemetry_sampler *s); /* joins; idempotent */
void telemetry_sampler_free(struct telemetry_sampler *s); /* stops; NULL-safe */
/* Stats over samples with t0_ns <= t_ns <= t1_ns. Any thread. 0, or -1 if no sample in range. */
int telemetry_sampler_window(struct telemetry_sampler *s, mono_ns t0_ns, mono_ns t1_ns,
                             struct telemetry_window *out);
/* Copies up to max samples (oldest first) into out; returns the count. Any thread. */
size_t telemetry_sampler_copy(struct telemetry_sampler *s, struct telemetry_sample *out, size_t max);

#endif
