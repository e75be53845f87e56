/* probe_opts: the options every probe command (ttft, batch, prefix, capacity) shares: which server
 * to launch or probe (target.h) and how the client talks to it (client.h). Parsed once here; each
 * command parses only its own options from what is handed back. It does not launch anything and
 * reads no files, except that the embedded default model is generated here when missing
 * (run/model_default.h).
 *
 *   struct probe_opts o;
 *   char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
 *   int n_rest;
 *   if (probe_opts_parse(argc, argv, &o, &n_rest, rest, err, sizeof err) != 0) -> usage error
 *   ... parse rest[0..n_rest) (rest[0] is argv[0], the command name) with the command's parser ...
 *   struct target *t = target_new(&o.target);
 *   struct client_config cc;
 *   probe_opts_client_config(&o, t->base_url, &cc);   // after target_start
 *   probe_opts_free(&o);                               // after the target and client are gone
 *
 * Options (defaults in brackets):
 *   --server embedded|vllm|llamacpp|sglang [embedded]
 *   --model PATH|ID        [embedded: model_default_path(), generated when missing; others:
 *                          required unless --url/--serve-cmd]
 *   --url URL              probe a running server (no launch; warm-only)
 *   --serve-cmd "ARGV..."  explicit launch argv, split on spaces; '...' and "..." group, \ escapes
 *   --host H [127.0.0.1]   --port N [8000; embedded: a free port]
 *   --max-model-len N      --gpu-memory-utilization F
 *   --prefix-caching on|off|default [default]
 *   --served-model-name NAME   (also the "model" field the client sends)
 *   --api-key KEY          --endpoint completions|chat [completions]
 *   --timeout SECONDS      per request [600]
 *   --ready-timeout SECONDS [600 for vllm/sglang, 120 otherwise]
 *   --stop-grace SECONDS [10]
 *   --log FILE [OUT/server.log]   --out DIR [results]   --drop-caches   --cold-storage
 *   -- ARGS...             extra server flags (everything after `--`)
 * Both "--opt value" and "--opt=value" are accepted. */
#ifndef SLM_PROBE_PROBE_OPTS_H
#define SLM_PROBE_PROBE_OPTS_H

#include <stddef.h>
#include <stdio.h>

#include "net/client.h"
#include "server/target.h"

struct probe_opts {
    struct target_config target;  /* strings point into argv or into owned_ */
    enum client_api api;          /* --endpoint */
    long timeout_ms;              /* per request; 0 none */
    const char *model_name;       /* client "model" field; NULL: ask /v1/models */
    const char *out_dir;          /* --out */
    int port_given;               /* 1 if --port was given */
    /* private: strings and arrays this struct owns */
    char *log_path_;
    char *model_path_; /* the default model path, when --model was not given */
    char **serve_cmd_;
};

/* Parses the shared options out of argv[1..argc) and hands the others back, in order, in
 * argv_rest (room for argc + 1 pointers: argv_rest[0] = argv[0], NULL-terminated, count in
 * *argc_rest). Unknown options and their values pass through untouched: a command's option that
 * takes a value must be given as "--opt=value" or come with a value not starting with "--",
 * which is passed through with it. Resolves defaults that depend on --server (port, ready timeout,
 * model, log path). 0, or -1 with a message in err (bad value, missing --model, unknown server,
 * unbalanced quotes in --serve-cmd). Pointers in *o borrow from argv: argv must outlive o.
 * Always call probe_opts_free, also after an error. */
int probe_opts_parse(int argc, char **argv, struct probe_opts *o, int *argc_rest, char **argv_rest,
                     char *err, size_t err_len);
void probe_opts_free(struct probe_opts *o); /* NULL-safe */
void probe_opts_help(FILE *f);              /* the option list above, for --help */

/* Client config for base_url (t->base_url; borrowed): api key, endpoint, timeout, model name. */
void probe_opts_client_config(const struct probe_opts *o, const char *base_url,
                              struct client_config *out);

/* Splits a command line on spaces with simple quoting ('...', "...", backslash escapes; no
 * variables, globs or other shell syntax). Returns a NULL-terminated argv whose pointers and
 * strings are one allocation (free with probe_opts_split_free). 0 or -1 (err: unbalanced quote,
 * empty command). */
int probe_opts_split(const char *line, char ***argv_out, int *argc_out, char *err, size_t err_len);
void probe_opts_split_free(char **argv); /* NULL-safe */

/* Number parsers for every command's own options (one copy project-wide). v is the option's value
 * (whole string, no trailing characters), name the option for the message. 0 with *out set, or -1
 * with "NAME: expected an integer in [LO, HI], got 'V'" in err (*out untouched). */
int probe_opts_parse_int(const char *name, const char *v, long lo, long hi, int *out, char *err,
                         size_t err_len);
/* The same for a finite double in [lo, hi] ("expected a number in [LO, HI]"). */
int probe_opts_parse_double(const char *name, const char *v, double lo, double hi, double *out,
                            char *err, size_t err_len);
/* "a,b,c": up to cap integers in [lo, hi] into out, count in *n_out (untouched on error). 0, or
 * -1 with err naming the option and the bad item. */
int probe_opts_parse_int_list(const char *name, const char *v, long lo, long hi, int *out,
                              int cap, int *n_out, char *err, size_t err_len);

/* 1 when one byte of prompt text is one token on the target: the embedded runtime with
 * slmprobe's own byte vocabulary (its default model, or a GGUF file without a real tokenizer);
 * 0 for other servers and for an embedded model that carries a real vocabulary (e.g. Qwen's
 * BPE, `model init --tokenizer`), where lengths are approximate (WORKLOAD_UNIT_WORD) and the
 * server's usage gives the real counts. Reads the GGUF header (no weights). */
int probe_tokens_are_bytes(const struct target_config *t);

#endif
