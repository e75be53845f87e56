/* test_secrets: an API key given to a probe must appear in nothing slmprobe writes. Runs
 * `slmprobe ttft` and `slmprobe batch` (small runs) against the real embedded server with
 * --api-key (passed to the server, sent by the client as Bearer), then reads every file under
 * each output directory (reports, JSON, CSV, JSONL, server logs) and the probes' stdout/stderr
 * and fails on each one that contains the key, naming the file and the line. It does not check
 * that the key works (test_server does); a run that fails still has its files checked. The
 * binary comes from SLMPROBE_BIN (default ./slmprobe). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"
#include "util/buf.h"
#include "serve_harness.h"

#define SECRET "sk-test-SECRET123"
#define SERVER_FLAGS                                                                               \
    "--kv-cache-memory-bytes", "8MiB", "--threads", "1", "--max-num-seqs", "4", "--max-model-len", \
        "512", "--enforce-eager"

static const char *bin;
static char dir[256];
static char model[512];

/* Fails once per file that contains SECRET, with the first line that does. */
static void check_file(const char *path)
{
    size_t len = 0;
    char *s = file_read_all(path, (size_t)1 << 28, &len);
    CHECK_MSG(s != NULL, "cannot read %s", path);
    if (!s)
        return;
    const char *hit = memmem(s, len, SECRET, strlen(SECRET));
    if (hit) {
        const char *a = hit, *b = hit;
        while (a > s && a[-1] != '\n')
            a--;
        while (b < s + len && *b != '\n')
            b++;
        CHECK_MSG(0, "%s contains the API key: %.*s", path, (int)(b - a), a);
    }
    free(s);
}

/* check_file on every regular file under path (recursive). Returns the number of files. */
static int check_tree(const char *path)
{
    DIR *d = opendir(path);
    CHECK_MSG(d != NULL, "cannot open %s", path);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            n += check_tree(p);
        } else if (S_ISREG(st.st_mode)) {
            check_file(p);
            n++;
        }
    }
    closedir(d);
    return n;
}

static void test_model_init(void)
{
    snprintf(model, sizeof model, "%s/tiny.gguf", dir);
    char log[512];
    snprintf(log, sizeof log, "%s/model_init.log", dir);
    char *argv[] = {(char *)bin, "model", "init", "--preset", "tiny", "-o", model, NULL};
    CHECK_EQ_INT(run_logged(argv, log), 0);
}

/* Runs argv (output dir out, console log log), then checks out/ and the log. */
static void run_and_check(char *const argv[], const char *out, const char *log, int min_files)
{
    int rc = run_logged(argv, log);
    CHECK_MSG(rc == 0, "%s exited %d (see %s)", argv[1], rc, log);
    int n = check_tree(out);
    CHECK_MSG(n >= min_files, "%s wrote %d files under %s, expected at least %d", argv[1], n, out,
              min_files);
    check_file(log);
}

static void test_ttft(void)
{
    char out[512], log[512];
    snprintf(out, sizeof out, "%s/ttft", dir);
    snprintf(log, sizeof log, "%s/ttft.console", dir);
    char *argv[] = {(char *)bin,   "ttft", "--model",      model, "--out",   out,
                    "--api-key",   SECRET, "--warm-runs",  "2",   "--prompt-len", "32",
                    "--max-tokens", "4",   "--",           SERVER_FLAGS, NULL};
    /* md, html, json, csv, jsonl, server.log */
    run_and_check(argv, out, log, 6);
}

static void test_batch(void)
{
    char out[512], log[512];
    snprintf(out, sizeof out, "%s/batch", dir);
    snprintf(log, sizeof log, "%s/batch.console", dir);
    char *argv[] = {(char *)bin,    "batch",   "--model",        model, "--out", out,
                    "--api-key",    SECRET,    "--modes",        "seqconc",
                    "--num-requests", "4",     "--input-len",    "32",  "--output-len", "4",
                    "--",           SERVER_FLAGS, NULL};
    run_and_check(argv, out, log, 3);
}

int main(void)
{
    bin = getenv("SLMPROBE_BIN");
    if (!bin)
        bin = "./slmprobe";
    snprintf(dir, sizeof dir, "/tmp/slmprobe_test_secrets_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_model_init);
    TEST_RUN(test_ttft);
    TEST_RUN(test_batch);
    harness_cleanup(dir, test_n_fail);
    return TEST_DONE();
}
