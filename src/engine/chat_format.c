/* chat_format: three fixed renderings, chosen once per request from the template text. A
 * template is recognised by the special tokens it writes, not evaluated. */
#include "engine/chat_format.h"

#include <string.h>

const char *chat_format_str(enum chat_format f)
{
    switch (f) {
    case CHAT_FORMAT_DEFAULT: return "default";
    case CHAT_FORMAT_CHATML: return "chatml";
    case CHAT_FORMAT_PHI3: return "phi3";
    }
    return "?";
}

enum chat_format chat_format_detect(const char *tmpl, int *known)
{
    int k = 1;
    enum chat_format f = CHAT_FORMAT_DEFAULT;
    if (tmpl && strstr(tmpl, "<|im_start|>"))
        f = CHAT_FORMAT_CHATML;
    else if (tmpl && strstr(tmpl, "<|user|>") && strstr(tmpl, "<|end|>"))
        f = CHAT_FORMAT_PHI3;
    else if (tmpl && *tmpl)
        k = 0;
    if (known)
        *known = k;
    return f;
}

static enum buf_status put(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

enum buf_status chat_format_open(enum chat_format f, const char *role, size_t rlen,
                                 struct buf *b)
{
    enum buf_status st = put(b, f == CHAT_FORMAT_CHATML ? "<|im_start|>" : "<|");
    if (!st)
        st = buf_append(b, role, rlen);
    if (!st)
        st = put(b, f == CHAT_FORMAT_CHATML ? "\n" : "|>\n");
    return st;
}

enum buf_status chat_format_close(enum chat_format f, struct buf *b)
{
    return put(b, f == CHAT_FORMAT_CHATML ? "<|im_end|>\n"
                : f == CHAT_FORMAT_PHI3 ? "<|end|>\n" : "\n");
}

enum buf_status chat_format_generation_prompt(enum chat_format f, struct buf *b)
{
    return put(b, f == CHAT_FORMAT_CHATML ? "<|im_start|>assistant\n" : "<|assistant|>\n");
}
