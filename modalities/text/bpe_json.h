/* Hugging Face tokenizer.json for byte-level BPE: loading (GPT-2 style
 * ByteLevel pre-tokenizer, or Llama-3 style Sequence[Split, ByteLevel]) and
 * saving. Configurations this reader cannot reproduce exactly (a normalizer,
 * another split pattern, byte fallback, word suffixes...) are errors that
 * name the field. The post_processor is not applied: encoding never adds
 * BOS/EOS tokens by itself. */
#ifndef LACT_TEXT_BPE_JSON_H
#define LACT_TEXT_BPE_JSON_H

#include "modalities/text/bpe.h"

lact_status lact_bpe_load_json(lact_bpe *b, const char *path);
/* Parses tokenizer.json text; `name` is used in error messages. */
lact_status lact_bpe_parse_json(lact_bpe *b, const char *json, const char *name);
lact_status lact_bpe_save_json(const lact_bpe *b, const char *path);

#endif
