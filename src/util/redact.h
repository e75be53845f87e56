/* redact: keeps secrets out of everything slmprobe writes. An API key given on the command line
 * (--api-key KEY, --api-key=KEY, and the same for the server flags we pass on) is shown as "***"
 * in printed commands, logs, reports, JSON and CSV. It also quotes an argv for a shell so that a
 * printed command can be pasted back. It knows nothing about servers or probes.
 *
 *   char line[4096];
 *   redact_argv_join(argc, argv, line, sizeof line);   // "slmprobe ttft --api-key *** --out r"
 */
#ifndef SLM_UTIL_REDACT_H
#define SLM_UTIL_REDACT_H

#include <stddef.h>

#define REDACT_MASK "***"

/* 1 if opt (e.g. "--api-key", "--api-key=x", "-k") names an option whose value is a secret. */
int redact_is_secret_opt(const char *opt);
/* Joins argv[0..argc) with spaces into out (always NUL-terminated, cut at out_len), quoting
 * arguments with shell metacharacters in '...' and replacing secret values with REDACT_MASK.
 * Returns out. */
const char *redact_argv_join(int argc, char *const *argv, char *out, size_t out_len);
/* Replaces every occurrence of secret (if non-NULL and at least 1 byte) in the NUL-terminated
 * text s with REDACT_MASK, in place (the mask is never longer than what it hides when the
 * secret has >= 3 bytes; shorter secrets are masked with as many '*'). Returns s. */
char *redact_secret_in(char *s, const char *secret);

#endif
