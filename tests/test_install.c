/* test_install: the real `make install` rule into a temporary prefix, then the installed binary
 * as a new user meets it: from an empty directory, with HOME and XDG_* pointed at a temporary
 * folder, `slmprobe ttft --warm-runs 1` succeeds, generates the default model in
 * $XDG_DATA_HOME/slmprobe/models/ and a second run reuses it; `slmprobe calibrate` writes
 * $XDG_CACHE_HOME/slmprobe/client.json, which a session loads unless it is from another machine
 * or stale; `man -l` shows a section per command; the bash completion
 * completes `slmprobe b` to `batch`; `make uninstall` removes the files. Run from the source
 * tree's root (tests/run.sh does) with SLMPROBE_BIN naming the build flavour to install.
 * SLMPROBE_DEFAULT_PRESET=tiny keeps the generated model small (run/model_default.h). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "calibrate/calibrate.h"
#include "test.h"
#include "util/buf.h"

static char g_tmp[256], g_prefix[320], g_home[320], g_cwd[320], g_src[4096], g_sanitizer[128];

/* Runs the formatted command through sh (it redirects its own output); exit status, or -1. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len;
    char *s = file_read_all(path, 1u << 24, &len);
    return s ? s : xstrdup("");
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* SLMPROBE_BIN=.../obj-address-undefined/slmprobe -> SANITIZER=address,undefined; obj or none:
 * the release flavour. */
static void flavour_from_bin(void)
{
    const char *bin = getenv("SLMPROBE_BIN");
    const char *dir = bin ? strstr(bin, "/obj-") : NULL;
    g_sanitizer[0] = 0;
    if (!dir)
        return;
    snprintf(g_sanitizer, sizeof g_sanitizer, "%s", dir + 5);
    char *slash = strchr(g_sanitizer, '/');
    if (slash)
        *slash = 0;
    for (char *p = g_sanitizer; *p; p++)
        if (*p == '-')
            *p = ',';
}

static void test_make_install(void)
{
    CHECK_EQ_INT(sh("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C '%s' --no-print-directory "
                    "SANITIZER=%s install PREFIX='%s' > '%s/make.log' 2>&1",
                    g_src, g_sanitizer, g_prefix, g_tmp),
                 0);
    char p[512];
    snprintf(p, sizeof p, "%s/bin/slmprobe", g_prefix);
    CHECK(access(p, X_OK) == 0);
    snprintf(p, sizeof p, "%s/share/man/man1/slmprobe.1", g_prefix);
    CHECK(exists(p));
    snprintf(p, sizeof p, "%s/share/bash-completion/completions/slmprobe", g_prefix);
    CHECK(exists(p));
}

/* The installed ttft from the empty directory; stderr into g_tmp/NAME. */
static int run_ttft(const char *name)
{
    return sh("cd '%s' && '%s/bin/slmprobe' ttft --warm-runs 1 --prompt-len 16 --max-tokens 4 "
              "-- --device-memory 256MiB --max-model-len 256 > '%s/%s.out' 2> '%s/%s'",
              g_cwd, g_prefix, g_tmp, name, g_tmp, name);
}

static void test_ttft_from_empty_dir(void)
{
    char model[512];
    snprintf(model, sizeof model, "%s/data/slmprobe/models/default.gguf", g_home);
    CHECK(!exists(model));
    CHECK_EQ_INT(run_ttft("ttft1.err"), 0);
    char *err1 = slurp(g_tmp, "ttft1.err");
    CHECK_MSG(strstr(err1, "generating the default model (preset tiny"), "stderr:\n%s", err1);
    CHECK(strstr(err1, "model: generated ") && strstr(err1, " s\n"));
    CHECK(exists(model));
    char cwd_models[512];
    snprintf(cwd_models, sizeof cwd_models, "%s/models", g_cwd);
    CHECK(!exists(cwd_models)); /* nothing relative to the current directory */
    CHECK_EQ_INT(run_ttft("ttft2.err"), 0);
    char *err2 = slurp(g_tmp, "ttft2.err");
    CHECK_MSG(!strstr(err2, "generating") && strstr(err2, model), "stderr:\n%s", err2);
    free(err1);
    free(err2);
}

static void test_calibrate(void)
{
    CHECK_EQ_INT(sh("cd '%s' && '%s/bin/slmprobe' calibrate --seconds 1.5 > '%s/cal.out' 2>&1",
                    g_cwd, g_prefix, g_tmp),
                 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/cache/slmprobe", g_home);
    char *j = slurp(dir, "client.json");
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char want[300];
    snprintf(want, sizeof want, "\"hostname\": \"%s\"", host);
    CHECK_MSG(strstr(j, want) && strstr(j, "\"req_per_s\": ") && strstr(j, "\"n_cpus\": "),
              "client.json:\n%s", j);
    free(j);
}

/* Replaces the first `from` in the calibration file by `to`. */
static void cache_edit(const char *from, const char *to)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/cache/slmprobe", g_home);
    snprintf(path, sizeof path, "%s/client.json", dir);
    char *j = slurp(dir, "client.json"), *at = strstr(j, from);
    CHECK_MSG(at != NULL, "no '%s' in client.json", from);
    if (!at) {
        free(j);
        return;
    }
    struct buf b;
    buf_init(&b, 1024, 1 << 20);
    buf_append(&b, j, (size_t)(at - j));
    buf_puts(&b, to);
    buf_puts(&b, at + strlen(from));
    CHECK_EQ_INT(file_write_all(path, b.data, b.len), 0);
    buf_free(&b);
    free(j);
}

/* What a probe's session sees (session_init calls calibrate_ceiling_load), from the empty
 * directory so that no bench/out/client.json is found. */
static void test_ceiling_load(void)
{
    char here[4096], note[512];
    struct client_ceiling c;
    CHECK(getcwd(here, sizeof here) != NULL);
    CHECK_EQ_INT(chdir(g_cwd), 0);
    calibrate_ceiling_load(&c, note, sizeof note);
    CHECK(c.valid && c.req_per_s > 0 && c.events_per_s_c64 > 0);
    CHECK_MSG(!strncmp(note, "calibrated ", 11) && strstr(note, "on this machine"), "%s", note);
    char host[256] = "", from[300];
    gethostname(host, sizeof host - 1);
    snprintf(from, sizeof from, "\"hostname\": \"%s\"", host);
    cache_edit(from, "\"hostname\": \"another-host\"");
    calibrate_ceiling_load(&c, note, sizeof note);
    CHECK(!c.valid);
    CHECK_MSG(strstr(note, "ignored: measured on another machine (another-host") &&
                  strstr(note, "not calibrated (run slmprobe calibrate)"),
              "%s", note);
    cache_edit("\"hostname\": \"another-host\"", from);
    cache_edit("\"measured_at_unix_s\": ", "\"measured_at_unix_s\": 1, \"was\": ");
    calibrate_ceiling_load(&c, note, sizeof note);
    CHECK(!c.valid);
    CHECK_MSG(strstr(note, "ignored: stale (measured "), "%s", note);
    CHECK_EQ_INT(chdir(here), 0);
}

static void test_man_page(void)
{
    CHECK_EQ_INT(sh("MANWIDTH=100 man -l '%s/share/man/man1/slmprobe.1' > '%s/man.txt' 2>&1",
                    g_prefix, g_tmp),
                 0);
    CHECK_EQ_INT(sh("'%s/bin/slmprobe' help > '%s/help.txt'", g_prefix, g_tmp), 0);
    char *man = slurp(g_tmp, "man.txt"), *help = slurp(g_tmp, "help.txt");
    int n_commands = 0;
    for (char *line = strtok(help, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64], want[96];
        if (strncmp(line, "  ", 2) || line[2] == ' ' || sscanf(line + 2, "%63[a-z0-9-]", name) != 1)
            continue;
        n_commands++;
        snprintf(want, sizeof want, "COMMAND %s\n", name);
        for (char *p = want; *p; p++)
            *p = (char)toupper((unsigned char)*p);
        CHECK_MSG(strstr(man, want), "no section %s", want);
        snprintf(want, sizeof want, "usage: slmprobe %s", name);
        CHECK_MSG(strstr(man, want), "no '%s' in the page", want);
    }
    CHECK(n_commands >= 6); /* serve model ttft env batch calibrate */
    CHECK(strstr(man, "XDG_DATA_HOME"));
    free(man);
    free(help);
}

/* COMPREPLY for the words given, through the installed completion file. */
static char *complete_words(const char *words, int cword)
{
    sh("bash -c 'source \"%s/share/bash-completion/completions/slmprobe\"; COMP_WORDS=(%s); "
       "COMP_CWORD=%d; _slmprobe; echo \"${COMPREPLY[*]}\"' > '%s/comp.txt' 2>&1",
       g_prefix, words, cword, g_tmp);
    return slurp(g_tmp, "comp.txt");
}

static void test_completion(void)
{
    char *c = complete_words("slmprobe b", 1);
    CHECK_EQ_STR(c, "batch\n");
    free(c);
    c = complete_words("slmprobe ttft --warm", 2);
    CHECK_EQ_STR(c, "--warm-runs\n");
    free(c);
    c = complete_words("slmprobe model i", 2);
    CHECK_EQ_STR(c, "init info\n");
    free(c);
}

static void test_uninstall(void)
{
    CHECK_EQ_INT(sh("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C '%s' --no-print-directory "
                    "SANITIZER=%s uninstall PREFIX='%s' > '%s/make.log' 2>&1",
                    g_src, g_sanitizer, g_prefix, g_tmp),
                 0);
    CHECK_EQ_INT(sh("test -z \"$(find '%s' -type f)\"", g_prefix), 0);
}

int main(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/slmprobe_install_XXXXXX");
    if (!mkdtemp(g_tmp) || !getcwd(g_src, sizeof g_src)) {
        perror("test_install");
        return 1;
    }
    flavour_from_bin();
    snprintf(g_prefix, sizeof g_prefix, "%s/prefix", g_tmp);
    snprintf(g_home, sizeof g_home, "%s/home", g_tmp);
    snprintf(g_cwd, sizeof g_cwd, "%s/empty", g_tmp);
    mkdir(g_home, 0755);
    mkdir(g_cwd, 0755);
    char v[400];
    setenv("HOME", g_home, 1);
    setenv("XDG_DATA_HOME", strcat(strcpy(v, g_home), "/data"), 1);
    setenv("XDG_CACHE_HOME", strcat(strcpy(v, g_home), "/cache"), 1);
    setenv("XDG_CONFIG_HOME", strcat(strcpy(v, g_home), "/config"), 1);
    setenv("SLMPROBE_DEFAULT_PRESET", "tiny", 1);
    unsetenv("SLMPROBE_MODEL");
    TEST_RUN(test_make_install);
    TEST_RUN(test_ttft_from_empty_dir);
    TEST_RUN(test_calibrate);
    TEST_RUN(test_ceiling_load);
    TEST_RUN(test_man_page);
    TEST_RUN(test_completion);
    TEST_RUN(test_uninstall);
    sh("rm -rf '%s'", g_tmp);
    return TEST_DONE();
}
