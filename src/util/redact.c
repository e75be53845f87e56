/* redact: secrets out of printed commands and text (see redact.h). No allocation. */
#include "util/redact.h"

#include <stdio.h>
#include <string.h>

static const char *const secret_opts[] = {"--api-key", "--api_key", "--hf-token", "--token", NULL};

int redact_is_secret_opt(const char *opt)
{
    if (!opt)
        return 0;
    for (int i = 0; secret_opts[i]; i++) {
        size_t n = strlen(secret_opts[i]);
        if (!strncmp(opt, secret_opts[i], n) && (opt[n] == 0 || opt[n] == '='))
            return 1;
    }
    return 0;
}

static int needs_quotes(const char *s)
{
    if (!*s)
        return 1;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%", *s))
            return 1;
    return 0;
}

/* Appends s (quoted when needed) to out at *pos. */
static void put_word(char *out, size_t out_len, size_t *pos, const char *s)
{
    if (*pos + 1 >= out_len)
        return;
    int q = needs_quotes(s) && strcmp(s, REDACT_MASK) != 0;
    if (*pos)
        out[(*pos)++] = ' ';
    if (q && *pos + 1 < out_len)
        out[(*pos)++] = '\'';
    for (; *s && *pos + 1 < out_len; s++) {
        if (*s == '\'' && q) { /* ' -> '\'' */
            const char *esc = "'\\''";
            for (; *esc && *pos + 1 < out_len; esc++)
                out[(*pos)++] = *esc;
            continue;
        }
        out[(*pos)++] = *s;
    }
    if (q && *pos + 1 < out_len)
        out[(*pos)++] = '\'';
    out[*pos] = 0;
}

const char *redact_argv_join(int argc, char *const *argv, char *out, size_t out_len)
{
    size_t pos = 0;
    if (!out_len)
        return out;
    out[0] = 0;
    for (int i = 0; i < argc && argv[i]; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        if (a[0] == '-' && eq && redact_is_secret_opt(a)) {
            char w[128];
            snprintf(w, sizeof w, "%.*s=", (int)(eq - a) < 100 ? (int)(eq - a) : 100, a);
            put_word(out, out_len, &pos, w);
            size_t l = strlen(out);
            snprintf(out + l, out_len - l, "%s", REDACT_MASK);
            pos = strlen(out);
        } else if (redact_is_secret_opt(a) && i + 1 < argc && argv[i + 1]) {
            put_word(out, out_len, &pos, a);
            put_word(out, out_len, &pos, REDACT_MASK);
            i++;
        } else {
            put_word(out, out_len, &pos, a);
        }
    }
    return out;
}

char *redact_secret_in(char *s, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (!s || !n)
        return s;
    size_t mask_n = n >= 3 ? 3 : n;
    char *p;
    while ((p = strstr(s, secret)) != NULL) {
        memset(p, '*', mask_n);
        memmove(p + mask_n, p + n, strlen(p + n) + 1);
    }
    return s;
}
