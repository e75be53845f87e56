/* model_default: where the embedded server's default model lives and how it comes to exist, in
 * one place. An installed slmprobe runs from any directory, so the default is a per-user file:
 * $SLMPROBE_MODEL if set (used as given, never generated), else
 * $XDG_DATA_HOME/slmprobe/models/default.gguf (XDG_DATA_HOME absolute), else
 * $HOME/.local/share/slmprobe/models/default.gguf. When that per-user file is missing it is
 * generated from the preset `make run` uses (MODEL_DEFAULT_PRESET, seed 0; the environment
 * variable SLMPROBE_DEFAULT_PRESET picks another, e.g. "tiny" for fast tests), with a progress
 * line and the time it took on stderr. It does not decide whether a default is needed
 * (probe_opts does: embedded server, no --model, --url or --serve-cmd).
 *
 *   char path[4096];
 *   int from_env;
 *   if (model_default_path(path, sizeof path, &from_env) != MODEL_DEFAULT_OK) -> error
 *   if (!from_env && model_default_ensure(path, err, sizeof err) != MODEL_DEFAULT_OK) -> error */
#ifndef SLM_RUN_MODEL_DEFAULT_H
#define SLM_RUN_MODEL_DEFAULT_H

#include <stddef.h>

#define MODEL_DEFAULT_PRESET "small"  /* the preset scripts/run.sh (make run) uses */
#define MODEL_DEFAULT_SEED 0
#define MODEL_DEFAULT_REL "slmprobe/models/default.gguf" /* under the XDG data directory */

enum model_default_status {
    MODEL_DEFAULT_OK = 0,
    MODEL_DEFAULT_NO_HOME,    /* neither SLMPROBE_MODEL, XDG_DATA_HOME nor a home directory */
    MODEL_DEFAULT_TOO_LONG,   /* the path does not fit the caller's buffer */
    MODEL_DEFAULT_BAD_PRESET, /* SLMPROBE_DEFAULT_PRESET names no preset */
    MODEL_DEFAULT_MKDIR,      /* cannot create the models directory */
    MODEL_DEFAULT_WRITE,      /* generating the file failed */
};
const char *model_default_status_str(enum model_default_status s); /* static string */

/* The default model path into out (see above); *from_env = 1 when it came from SLMPROBE_MODEL.
 * Reads only the environment (and the password database when HOME is unset). Any thread. */
enum model_default_status model_default_path(char *out, size_t out_len, int *from_env);

/* Generates path from the default preset when it does not exist (parent directories are made;
 * the file appears atomically, so concurrent runs are safe). Prints
 * "model: generating the default model (preset P, seed 0) at PATH" before and
 * "model: generated PATH (N bytes) in S s" after, on stderr; nothing when path exists.
 * MODEL_DEFAULT_OK, or a status with err saying why. Main thread (writes a file). */
enum model_default_status model_default_ensure(const char *path, char *err, size_t err_len);

#endif
