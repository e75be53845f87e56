/* tok_hf: builds a tokenizer from a Hugging Face tokenizer.json (model.vocab, model.merges,
 * added_tokens, pre_tokenizer) and, when it sits beside it, tokenizer_config.json (bos_token,
 * eos_token, add_bos_token, chat_template), the way llama.cpp's convert script maps them to GGUF.
 * For `slmprobe model init --tokenizer`. It does not read GGUF files (model_file does).
 *
 * Supported: BPE with ByteLevel (-> "gpt2", pre-tokenizer recognised from the Split regex: qwen2,
 * llama-bpe, or GPT-2's default) and BPE with byte_fallback (-> "llama" SentencePiece; scores
 * from the merge ranks: the token made by merge r scores -r). */
#ifndef SLM_TOK_HF_H
#define SLM_TOK_HF_H

#include <stddef.h>

#include "engine/tokenizer.h"

/* 0 and *out initialised (free with tokenizer_free), or -1 with err. Start-up only. */
int tok_hf_load(const char *json_path, struct tokenizer *out, char *err, size_t err_len);

#endif
