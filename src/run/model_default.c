/* model_default: the per-user default model path and its generation when missing (see
 * model_default.h). It writes the file with the same library call `slmprobe model init` uses
 * (model_write_gguf), in process; it does not load or validate existing files (the server does). */
#include "run/model_default.h"

#include <errno.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/model.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"

#define MOD "model"

const char *model_default_status_str(enum model_default_status s)
{
    switch (s) {
    case MODEL_DEFAULT_OK: return "ok";
    case MODEL_DEFAULT_NO_HOME: return "no home directory";
    case MODEL_DEFAULT_TOO_LONG: return "path too long";
    case MODEL_DEFAULT_BAD_PRESET: return "unknown preset";
    case MODEL_DEFAULT_MKDIR: return "cannot create directory";
    case MODEL_DEFAULT_WRITE: return "cannot write model";
    }
    return "?";
}

static const char *home_dir(void)
{
    const char *home = getenv("HOME");
    if (home && home[0] == '/')
        return home;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : NULL;
}

enum model_default_status model_default_path(char *out, size_t out_len, int *from_env)
{
    *from_env = 0;
    const char *env = getenv("SLMPROBE_MODEL");
    int n;
    if (env && env[0]) {
        *from_env = 1;
        n = snprintf(out, out_len, "%s", env);
    } else {
        /* XDG Base Directory: a relative XDG_DATA_HOME is invalid and ignored. */
        const char *xdg = getenv("XDG_DATA_HOME");
        if (xdg && xdg[0] == '/') {
            n = snprintf(out, out_len, "%s/" MODEL_DEFAULT_REL, xdg);
        } else {
            const char *home = home_dir();
            if (!home)
                return MODEL_DEFAULT_NO_HOME;
            n = snprintf(out, out_len, "%s/.local/share/" MODEL_DEFAULT_REL, home);
        }
    }
    return n < 0 || (size_t)n >= out_len ? MODEL_DEFAULT_TOO_LONG : MODEL_DEFAULT_OK;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

enum model_default_status model_default_ensure(const char *path, char *err, size_t err_len)
{
    if (file_exists(path))
        return MODEL_DEFAULT_OK;
    const char *preset = getenv("SLMPROBE_DEFAULT_PRESET");
    if (!preset || !preset[0])
        preset = MODEL_DEFAULT_PRESET;
    struct model_config cfg;
    if (model_preset(preset, &cfg) != 0) {
        snprintf(err, err_len, "SLMPROBE_DEFAULT_PRESET: unknown preset '%s' (one of: %s)", preset,
                 model_preset_names());
        return MODEL_DEFAULT_BAD_PRESET;
    }
    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        char *dir = xstrndup(path, (size_t)(slash - path));
        int rc = dir_make_all(dir);
        if (rc != 0)
            snprintf(err, err_len, "cannot create %s: %s", dir, strerror(errno));
        free(dir);
        if (rc != 0)
            return MODEL_DEFAULT_MKDIR;
    }
    log_info(MOD, "generating the default model (preset %s, seed %d) at %s", preset,
             MODEL_DEFAULT_SEED, path);
    mono_ns t0 = clock_now_ns();
    char why[512];
    if (model_write_gguf(&cfg, MODEL_DEFAULT_SEED, MODEL_DTYPE_F32, path, why, sizeof why) != 0) {
        snprintf(err, err_len, "generating the default model: %s", why);
        return MODEL_DEFAULT_WRITE;
    }
    struct stat st;
    long long n_bytes = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    log_info(MOD, "generated %s (%lld bytes) in %.2f s", path, n_bytes,
             ns_to_s(clock_now_ns() - t0));
    return MODEL_DEFAULT_OK;
}
