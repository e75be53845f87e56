/* chat_format: the chat formats /v1/chat/completions renders messages in, recognised from a
 * model's tokenizer.chat_template by substring heuristics (no Jinja): ChatML (Qwen2.5), Phi-3,
 * and slmprobe's own default. It does not parse messages (the server does) nor tokenize.
 *
 *   enum chat_format f = chat_format_detect(tok->chat_template, &known);
 *   chat_format_open(f, "user", 4, &b); buf_append(&b, content, n); chat_format_close(f, &b);
 *   chat_format_generation_prompt(f, &b); */
#ifndef SLM_CHAT_FORMAT_H
#define SLM_CHAT_FORMAT_H

#include <stddef.h>

#include "util/buf.h"

enum chat_format {
    CHAT_FORMAT_DEFAULT = 0, /* "<|role|>\n" content "\n" ... "<|assistant|>\n" */
    CHAT_FORMAT_CHATML,      /* "<|im_start|>role\n" content "<|im_end|>\n" ...
                              * "<|im_start|>assistant\n" */
    CHAT_FORMAT_PHI3,        /* "<|role|>\n" content "<|end|>\n" ... "<|assistant|>\n" */
};

const char *chat_format_str(enum chat_format f); /* "default", "chatml", "phi3" */

/* A template containing "<|im_start|>" is ChatML; one with "<|user|>" and "<|end|>" is Phi-3.
 * NULL or "" gives the default with *known = 1 (slmprobe's own models carry none); any other
 * template the default with *known = 0 (callers warn). known may be NULL. */
enum chat_format chat_format_detect(const char *tmpl, int *known);

/* Appends a message's opening (role is rlen bytes), its closing, or the generation prompt.
 * BUF_OK or BUF_ERR_CAP. */
enum buf_status chat_format_open(enum chat_format f, const char *role, size_t rlen,
                                 struct buf *b);
enum buf_status chat_format_close(enum chat_format f, struct buf *b);
enum buf_status chat_format_generation_prompt(enum chat_format f, struct buf *b);

#endif
