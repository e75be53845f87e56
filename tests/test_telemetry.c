/* test_telemetry: process-tree CPU % (a busy child ~100 %, an idle one ~0 %, a busy grandchild
 * counted under its parent), RSS of a child that touched 200 MB, host facts and page cache, the
 * GPU path on whatever machine this runs (no GPU here: available == 0 with a reason and no
 * numeric field reported as a measured zero), the sampler thread and its window stats, ring
 * overwrite accounting, the page-cache residency of files (mincore) and their eviction
 * (fadvise), major faults of a tree. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/telemetry.h"
#include "test.h"
#include "util/clock.h"

enum child_kind { CHILD_BUSY, CHILD_IDLE, CHILD_TOUCH_200MB, CHILD_BUSY_GRANDCHILD };

/* Forks a child of the given kind; returns once it is in its steady state. */
static pid_t spawn(enum child_kind kind)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        if (kind == CHILD_TOUCH_200MB) {
            size_t n = 200u << 20;
            volatile char *p = malloc(n);
            for (size_t i = 0; p && i < n; i += 4096)
                p[i] = (char)i;
        }
        if (kind == CHILD_BUSY_GRANDCHILD)
            setpgid(0, 0); /* its own group, so the test can kill both at once */
        if (kind == CHILD_BUSY_GRANDCHILD && fork() == 0) {
            for (volatile unsigned long x = 0;; x++)
                ;
        }
        if (write(pfd[1], "r", 1) != 1)
            _exit(1);
        if (kind == CHILD_BUSY)
            for (volatile unsigned long x = 0;; x++)
                ;
        for (;;)
            pause();
    }
    close(pfd[1]);
    char c;
    if (read(pfd[0], &c, 1) != 1) {
        close(pfd[0]);
        return -1;
    }
    close(pfd[0]);
    return pid;
}

static void reap(pid_t pid, int group)
{
    if (group)
        kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static double cpu_over(pid_t pid, int ms, int *n_procs)
{
    struct telemetry_proc_sample a, b;
    CHECK(telemetry_proc_tree_sample(pid, &a) == 0);
    clock_sleep_ns((uint64_t)ms * 1000000ull);
    CHECK(telemetry_proc_tree_sample(pid, &b) == 0);
    if (n_procs)
        *n_procs = b.n_procs;
    return telemetry_cpu_pct(&a, &b);
}

/* CPU % of a child over its whole life from the kernel's wait4() rusage: an independent
 * reference for what /proc said (on a loaded 2-core machine a spinning child may get far less
 * than a core, so "~100 %" alone would test the machine, not the code). */
static double reap_cpu_pct(pid_t pid, mono_ns t_spawn_ns)
{
    struct rusage ru;
    int status;
    kill(pid, SIGKILL);
    if (wait4(pid, &status, 0, &ru) != pid)
        return NAN;
    double cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                   (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    return 100.0 * cpu_s / ns_to_s(clock_now_ns() - t_spawn_ns);
}

static void test_cpu_busy_and_idle(void)
{
    mono_ns t_spawn = clock_now_ns();
    pid_t busy = spawn(CHILD_BUSY), idle = spawn(CHILD_IDLE);
    CHECK(busy > 0 && idle > 0);
    int np = 0;
    double b = cpu_over(busy, 1000, &np);
    double i = cpu_over(idle, 500, NULL);
    double ref = reap_cpu_pct(busy, t_spawn);
    fprintf(stderr, "  busy %.1f%% (wait4 rusage over its life: %.1f%%), idle %.1f%%\n", b, ref, i);
    CHECK_EQ_INT(np, 1);
    CHECK_MSG(b > 30 || (b > 5 && fabs(b - ref) < 25), "busy child %.1f%% (rusage %.1f%%)", b, ref);
    CHECK_MSG(b < 130, "busy child %.1f%%: more than one core from one thread", b);
    CHECK_MSG(i >= 0 && i < 5, "idle child %.1f%%", i);
    reap(idle, 0);

    /* a busy grandchild is part of the tree */
    pid_t parent = spawn(CHILD_BUSY_GRANDCHILD);
    double g = cpu_over(parent, 700, &np);
    fprintf(stderr, "  tree with busy grandchild %.1f%% (%d procs)\n", g, np);
    CHECK_EQ_INT(np, 2);
    CHECK_MSG(g > 5, "tree %.1f%%", g); /* the only CPU user in it is the grandchild */
    struct telemetry_proc_sample s;
    telemetry_proc_tree_sample(parent, &s);
    CHECK(s.rss_bytes > 0);
    reap(parent, 1);
}

static void test_rss_200mb(void)
{
    pid_t pid = spawn(CHILD_TOUCH_200MB);
    CHECK(pid > 0);
    struct telemetry_proc_sample s;
    CHECK(telemetry_proc_tree_sample(pid, &s) == 0);
    fprintf(stderr, "  rss %.1f MiB, read_bytes %lld%s%s\n", s.rss_bytes / 1048576.0,
            (long long)s.read_bytes, s.read_bytes < 0 ? ": " : "", s.read_bytes_reason);
    CHECK_MSG(s.rss_bytes >= 150ll << 20, "rss %lld", (long long)s.rss_bytes);
    CHECK(s.read_bytes >= 0 || s.read_bytes_reason[0]); /* a number, or why not */
    reap(pid, 0);

    /* a pid that does not exist: nothing measured, nothing reported as 0 */
    CHECK(telemetry_proc_tree_sample(999999999, &s) == -1);
    CHECK_EQ_INT(s.n_procs, 0);
    CHECK_EQ_INT(s.rss_bytes, -1);
    CHECK_EQ_INT(s.read_bytes, -1);
    struct telemetry_proc_sample a = s;
    CHECK(isnan(telemetry_cpu_pct(&a, &s)));
}

static void test_host(void)
{
    struct telemetry_host h;
    CHECK(telemetry_host_read(&h) == 0);
    fprintf(stderr, "  %s | %d cpus | %.1f GiB | cache %.2f GiB | %s | %s\n", h.cpu_model, h.n_cpus,
            h.mem_total_bytes / 1073741824.0, h.page_cache_bytes / 1073741824.0, h.os, h.kernel);
    CHECK(h.n_cpus >= 1);
    CHECK(h.mem_total_bytes > 0);
    CHECK(h.mem_available_bytes > 0 && h.mem_available_bytes <= h.mem_total_bytes);
    CHECK(h.page_cache_bytes >= 0);
    CHECK(h.kernel[0] != 0);
    CHECK(strncmp(h.kernel, "Linux", 5) == 0);
    CHECK(h.os[0] != 0);
    CHECK(h.os[0] != '"');
    int64_t pc = telemetry_page_cache_bytes();
    CHECK(pc >= 0);

    /* reading a file we just wrote puts it in the page cache: Cached does not drop to 0 */
    char path[] = "/tmp/slm_tele_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    static char block[1 << 16];
    memset(block, 'x', sizeof block);
    for (int i = 0; i < 64; i++)
        CHECK(write(fd, block, sizeof block) == (ssize_t)sizeof block);
    close(fd);
    CHECK(telemetry_page_cache_bytes() > 0);
    unlink(path);
}

static void test_gpu(void)
{
    struct telemetry_gpus g;
    int rc = telemetry_gpu_read(&g);
    if (rc != 0) {
        fprintf(stderr, "  no GPU: %s\n", g.reason);
        CHECK_EQ_INT(g.available, 0);
        CHECK(g.reason[0] != 0);
        CHECK_EQ_INT(g.n_gpus, 0); /* no device rows, so no field can read as a measured 0 */
        CHECK_EQ_STR(g.source, "none");
        if (access("/dev/nvidiactl", F_OK) != 0) {
            CHECK(strstr(g.reason, "libnvidia-ml.so.1") != NULL);
            CHECK(strstr(g.reason, "nvidia-smi") != NULL);
        }
        /* the second read is the cached answer, same reason */
        struct telemetry_gpus g2;
        CHECK(telemetry_gpu_read(&g2) == -1);
        CHECK_EQ_STR(g2.reason, g.reason);
    } else {
        fprintf(stderr, "  %d GPU(s) via %s, driver %s\n", g.n_gpus, g.source, g.driver_version);
        CHECK(g.available);
        CHECK(g.n_gpus >= 1);
        for (int i = 0; i < g.n_gpus; i++) {
            CHECK(g.gpu[i].name[0] != 0);
            CHECK(g.gpu[i].mem_total_bytes > 0);
            CHECK(g.gpu[i].mem_used_bytes >= 0 &&
                  g.gpu[i].mem_used_bytes <= g.gpu[i].mem_total_bytes);
            CHECK(isnan(g.gpu[i].util_gpu_pct) ||
                  (g.gpu[i].util_gpu_pct >= 0 && g.gpu[i].util_gpu_pct <= 100));
        }
    }
    char path[] = "/tmp/slm_gpu_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w+");
    CHECK(f != NULL);
    if (!f)
        return;
    int st = telemetry_gpu_selftest(f);
    fflush(f);
    rewind(f);
    char line[512] = "";
    CHECK(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    unlink(path);
    CHECK_EQ_INT(st, rc == 0 ? 0 : 1);
    CHECK(strncmp(line, rc == 0 ? "gpu: " : "gpu: none: ", rc == 0 ? 5 : 11) == 0);
}

static void test_sampler_window(void)
{
    pid_t busy = spawn(CHILD_BUSY);
    CHECK(busy > 0);
    struct telemetry_sampler *s = telemetry_sampler_new(&(struct telemetry_sampler_config){
        .root_pid = busy, .interval_ms = 50, .cap_samples = 1000, .with_gpu = 1});
    CHECK(telemetry_sampler_start(s) == 0);
    CHECK(telemetry_sampler_start(s) == 0); /* already running: fine */
    clock_sleep_ns(150 * 1000 * 1000);
    mono_ns t0 = clock_now_ns();
    clock_sleep_ns(1000 * 1000 * 1000);
    mono_ns t1 = clock_now_ns();
    /* switch to an idle child: CPU of the later window drops */
    pid_t idle = spawn(CHILD_IDLE);
    telemetry_sampler_set_root(s, idle);
    clock_sleep_ns(200 * 1000 * 1000);
    mono_ns t2 = clock_now_ns();
    clock_sleep_ns(600 * 1000 * 1000);
    mono_ns t3 = clock_now_ns();
    telemetry_sampler_stop(s);
    telemetry_sampler_stop(s); /* idempotent */

    struct telemetry_window w;
    CHECK(telemetry_sampler_window(s, t0, t1, &w) == 0);
    fprintf(stderr, "  busy window: %zu samples, cpu mean %.1f%% max %.1f%%, rss max %lld, gpu %s\n",
            w.n_samples, w.cpu_mean_pct, w.cpu_max_pct, (long long)w.rss_max_bytes,
            w.gpu_available ? "yes" : w.gpu_reason);
    CHECK(w.n_samples >= 10 && w.n_samples <= 25);
    CHECK_EQ_INT(w.n_dropped, 0);
    CHECK_MSG(w.cpu_mean_pct > 5, "%.1f", w.cpu_mean_pct);
    double busy_mean = w.cpu_mean_pct;
    CHECK(w.cpu_max_pct >= w.cpu_mean_pct);
    CHECK(w.rss_max_bytes > 0);
    struct telemetry_gpus g;
    if (telemetry_gpu_read(&g) != 0) {
        CHECK_EQ_INT(w.gpu_available, 0);
        CHECK(w.gpu_reason[0] != 0);
        CHECK(isnan(w.gpu_util_mean_pct) && isnan(w.gpu_util_max_pct));
        CHECK_EQ_INT(w.gpu_mem_used_max_bytes, -1);
    } else {
        CHECK(w.gpu_available);
        CHECK(w.gpu_mem_used_max_bytes > 0);
    }
    CHECK(telemetry_sampler_window(s, t2, t3, &w) == 0);
    fprintf(stderr, "  idle window: %zu samples, cpu mean %.1f%%\n", w.n_samples, w.cpu_mean_pct);
    CHECK_MSG(w.cpu_mean_pct < 5 && w.cpu_mean_pct < busy_mean, "%.1f", w.cpu_mean_pct);
    CHECK(telemetry_sampler_window(s, t3 + 1000000000ull, t3 + 2000000000ull, &w) == -1);
    CHECK_EQ_INT(w.n_samples, 0);
    CHECK(isnan(w.cpu_mean_pct));
    CHECK_EQ_INT(w.rss_max_bytes, -1);

    struct telemetry_sample all[1000];
    size_t n = telemetry_sampler_copy(s, all, 1000);
    CHECK(n >= 30);
    for (size_t i = 1; i < n; i++)
        CHECK(all[i].t_ns > all[i - 1].t_ns);
    telemetry_sampler_free(s);
    reap(busy, 0);
    reap(idle, 0);
}

static void test_ring_overwrite(void)
{
    struct telemetry_sampler *s = telemetry_sampler_new(&(struct telemetry_sampler_config){
        .root_pid = getpid(), .interval_ms = 1, .cap_samples = 5, .with_gpu = 0});
    mono_ns t0 = clock_now_ns();
    for (int i = 0; i < 20; i++) {
        telemetry_sampler_tick(s);
        clock_sleep_ns(2 * 1000 * 1000);
    }
    struct telemetry_sample out[10];
    CHECK_EQ_INT(telemetry_sampler_copy(s, out, 10), 5);
    struct telemetry_window w;
    CHECK(telemetry_sampler_window(s, t0, clock_now_ns(), &w) == 0);
    CHECK_EQ_INT(w.n_samples, 5);
    CHECK_MSG(w.n_dropped >= 10, "%zu", w.n_dropped); /* the window began before the ring */
    CHECK_EQ_INT(w.gpu_available, 0);
    CHECK_EQ_STR(w.gpu_reason, "GPU sampling not requested");
    telemetry_sampler_free(s);
    telemetry_sampler_free(NULL);
}

/* 1 when dir's filesystem keeps its own page cache that fadvise(DONTNEED) can evict (not tmpfs,
 * ramfs or overlay); prints why not otherwise. */
static int fs_can_evict(const char *dir)
{
    struct statfs sf;
    if (statfs(dir, &sf) != 0)
        return 0;
    const char *why = (unsigned long)sf.f_type == TMPFS_MAGIC       ? "tmpfs"
                      : (unsigned long)sf.f_type == RAMFS_MAGIC     ? "ramfs"
                      : (unsigned long)sf.f_type == OVERLAYFS_SUPER_MAGIC ? "overlay"
                                                                          : NULL;
    if (why)
        fprintf(stderr, "  SKIP eviction checks: %s is on %s, which ignores fadvise(DONTNEED)\n",
                dir, why);
    return why == NULL;
}

/* Writes n_blocks of 64 KiB to path. */
static void write_file(const char *path, int n_blocks)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    static char block[1 << 16];
    memset(block, 'w', sizeof block);
    for (int i = 0; fd >= 0 && i < n_blocks; i++)
        CHECK(write(fd, block, sizeof block) == (ssize_t)sizeof block);
    if (fd >= 0)
        close(fd);
}

/* Reads the whole file (brings it into the page cache). */
static void read_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    static char block[1 << 16];
    while (fd >= 0 && read(fd, block, sizeof block) > 0)
        ;
    if (fd >= 0)
        close(fd);
}

static void test_file_residency(void)
{
    char dir[] = "/tmp/slm_resid_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char sub[128], a[160], b[160];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    CHECK(mkdir(sub, 0755) == 0);
    snprintf(a, sizeof a, "%s/a.bin", dir);
    snprintf(b, sizeof b, "%s/b.bin", sub);
    write_file(a, 64); /* 4 MiB */
    write_file(b, 16); /* 1 MiB + a partial page below */
    int fd = open(b, O_WRONLY | O_APPEND | O_CLOEXEC);
    CHECK(fd >= 0 && write(fd, "tail", 4) == 4);
    if (fd >= 0)
        close(fd);
    int64_t res, total;
    CHECK_EQ_INT(telemetry_file_residency(a, &res, &total), 0);
    CHECK_EQ_INT(total, 4 << 20);
    CHECK_MSG(res == total, "just written: %lld of %lld resident", (long long)res,
              (long long)total);
    /* a directory: every regular file under it, the partial last page counted in bytes */
    CHECK_EQ_INT(telemetry_file_residency(dir, &res, &total), 0);
    CHECK_EQ_INT(total, (5 << 20) + 4);
    CHECK_MSG(res == total, "%lld of %lld", (long long)res, (long long)total);

    char err[256] = "x";
    CHECK_EQ_INT(telemetry_file_evict(dir, err, sizeof err), 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(telemetry_file_residency(dir, &res, &total), 0);
    fprintf(stderr, "  after eviction: %lld of %lld bytes resident\n", (long long)res,
            (long long)total);
    if (fs_can_evict(dir)) {
        CHECK_MSG(telemetry_resident_frac(res, total) < 0.05, "%lld of %lld", (long long)res,
                  (long long)total);
        read_file(a);
        CHECK_EQ_INT(telemetry_file_residency(a, &res, &total), 0);
        CHECK_MSG(res == total, "read back: %lld of %lld", (long long)res, (long long)total);
        CHECK_EQ_INT(telemetry_file_residency(b, &res, &total), 0);
        CHECK_MSG(res < total / 20, "b stays evicted: %lld of %lld", (long long)res,
                  (long long)total);
    }

    /* unknown is -1, never 0 */
    char missing[200];
    snprintf(missing, sizeof missing, "%s/nope.gguf", dir);
    CHECK_EQ_INT(telemetry_file_residency(missing, &res, &total), -1);
    CHECK_EQ_INT(res, -1);
    CHECK_EQ_INT(total, -1);
    CHECK_EQ_INT(telemetry_file_evict(missing, err, sizeof err), -1);
    CHECK_MSG(strstr(err, "nope.gguf") != NULL, "%s", err);
    CHECK_EQ_INT(telemetry_file_residency("Qwen/Qwen2.5-0.5B", &res, &total), -1);
    CHECK(isnan(telemetry_resident_frac(-1, 100)));
    CHECK(isnan(telemetry_resident_frac(5, 0)));
    CHECK_NEAR(telemetry_resident_frac(25, 100), 0.25, 1e-12);
    unlink(a);
    unlink(b);
    rmdir(sub);
    rmdir(dir);
}

/* A child that faults in a file it mapped after eviction shows major faults in the tree. */
static void test_majflt(void)
{
    struct telemetry_proc_sample s;
    CHECK_EQ_INT(telemetry_proc_tree_sample(getpid(), &s), 0);
    CHECK_MSG(s.majflt >= 0, "%lld", (long long)s.majflt);
    char path[] = "/tmp/slm_majflt_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    write_file(path, 128); /* 8 MiB */
    char err[256];
    CHECK_EQ_INT(telemetry_file_evict(path, err, sizeof err), 0);
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        int f = open(path, O_RDONLY);
        volatile const char *m = mmap(NULL, 8 << 20, PROT_READ, MAP_PRIVATE, f, 0);
        unsigned sum = 0;
        for (size_t i = 0; m != MAP_FAILED && i < (8u << 20); i += 4096)
            sum += (unsigned char)m[i];
        char c = (char)(sum & 1);
        if (write(pipefd[1], &c, 1) != 1)
            _exit(2);
        pause();
        _exit(0);
    }
    close(pipefd[1]);
    char c;
    CHECK(read(pipefd[0], &c, 1) == 1);
    close(pipefd[0]);
    struct telemetry_proc_sample t;
    CHECK_EQ_INT(telemetry_proc_tree_sample(pid, &t), 0);
    fprintf(stderr, "  child after touching an evicted 8 MiB map: majflt %lld, read_bytes %lld\n",
            (long long)t.majflt, (long long)t.read_bytes);
    if (fs_can_evict("/tmp"))
        CHECK_MSG(t.majflt > 0, "%lld", (long long)t.majflt);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    unlink(path);
}

int main(void)
{
    TEST_RUN(test_cpu_busy_and_idle);
    TEST_RUN(test_rss_200mb);
    TEST_RUN(test_host);
    TEST_RUN(test_gpu);
    TEST_RUN(test_sampler_window);
    TEST_RUN(test_ring_overwrite);
    TEST_RUN(test_file_residency);
    TEST_RUN(test_majflt);
    return TEST_DONE();
}
