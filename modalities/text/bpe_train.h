/* Byte-level BPE training: pre-tokenise a corpus, count the pieces, then
 * repeatedly merge the most frequent adjacent pair of tokens (counted over
 * the piece counts, overlapping pairs included). Ties go to the pair with
 * the smaller (left id, right id), so a run is fully deterministic.
 * Ids: 0..255 are the bytes (id = byte value), then one id per new token in
 * merge order, then the special tokens. Training is O(merges x corpus
 * symbols): meant for corpora of tens of megabytes, not the web. */
#ifndef LACT_TEXT_BPE_TRAIN_H
#define LACT_TEXT_BPE_TRAIN_H

#include "modalities/text/bpe.h"

typedef struct lact_bpe_trainer {
    text_pretok pretok;
    text_strmap words; /* piece -> index into counts */
    int64_t *counts;
    size_t n_words, cap_words;
    int64_t bytes_seen;
} lact_bpe_trainer;

void lact_bpe_trainer_init(lact_bpe_trainer *t, text_pretok pretok);
void lact_bpe_trainer_free(lact_bpe_trainer *t);
/* Pre-tokenises text and adds its pieces to the counts. */
lact_status lact_bpe_trainer_add(lact_bpe_trainer *t, const void *text, size_t n);

typedef struct lact_bpe_train_opts {
    int64_t vocab_size;    /* including the 256 bytes and the specials */
    int64_t min_frequency; /* stop when the best pair occurs fewer times */
    const char *const *specials;
    int n_specials;
} lact_bpe_train_opts;

/* Learns the merges and builds a tokenizer in out (initialised here). */
lact_status lact_bpe_trainer_finish(lact_bpe_trainer *t, const lact_bpe_train_opts *o,
                                    lact_bpe *out);

#endif
