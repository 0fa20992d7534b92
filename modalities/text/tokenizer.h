/* The tokenizer a command names: "bytes" (ids 0..255 are the bytes, 256 is
 * the end-of-text separator, so the vocabulary has 257 ids and no byte
 * value is taken for it) or a Hugging Face tokenizer.json holding a
 * byte-level BPE model. */
#ifndef LACT_TEXT_TOKENIZER_H
#define LACT_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "modalities/text/bpe.h"

#define LACT_BYTES_EOT 256

typedef struct lact_tokenizer {
    bool is_bytes;
    lact_bpe bpe; /* when !is_bytes */
} lact_tokenizer;

/* spec: "bytes" or a path to tokenizer.json. */
lact_status lact_tokenizer_load(lact_tokenizer *t, const char *spec);
void lact_tokenizer_free(lact_tokenizer *t);
/* One past the largest id. */
int64_t lact_tokenizer_vocab_size(const lact_tokenizer *t);
/* The end-of-text id, or -1 when the tokenizer has none. */
int32_t lact_tokenizer_eot(const lact_tokenizer *t);
/* Appends the ids of text[0..n). Special tokens in the text are matched. */
lact_status lact_tokenizer_encode(lact_tokenizer *t, const void *text, size_t n, lact_ids *out);
/* Appends the bytes of ids (the bytes tokenizer spells 256 "<|endoftext|>"). */
lact_status lact_tokenizer_decode(const lact_tokenizer *t, const int32_t *ids, size_t n,
                                  lact_bytes *out);

#endif
