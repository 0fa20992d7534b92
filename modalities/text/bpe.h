/* Byte-level BPE: a vocabulary of byte strings, ranked merges, added
 * (special) tokens matched before pre-tokenisation, and a word cache.
 * Encoding pre-tokenises (GPT-2 or Llama-3 rules), then merges each piece
 * by rank; decoding concatenates token bytes, so decode(encode(s)) == s for
 * any byte string, valid UTF-8 or not. */
#ifndef LACT_TEXT_BPE_H
#define LACT_TEXT_BPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "modalities/text/pretok.h"
#include "modalities/text/textmap.h"

typedef struct lact_added_token {
    char *content;
    size_t len;
    int32_t id;
    bool special;
} lact_added_token;

typedef struct lact_bpe {
    text_pretok pretok;
    bool add_prefix_space; /* ByteLevel: a space before each text segment */
    bool ignore_merges;    /* a piece that is itself in the vocabulary is one token */
    int32_t n_ids;         /* one past the largest id */
    uint32_t *tok_off, *tok_len; /* id -> bytes in tok_pool; len UINT32_MAX: unused id */
    lact_bytes tok_pool;
    text_strmap vocab;  /* model vocabulary: bytes -> id */
    text_u64map merges; /* (a << 32 | b) -> rank << 32 | merged id */
    int32_t *merge_a, *merge_b; /* in rank order */
    int32_t n_merges, merge_cap;
    int32_t byte_id[256]; /* the single-byte tokens; -1 when missing */
    int32_t unk_id;       /* -1: none */
    lact_added_token *added;
    int n_added;
    uint8_t added_first[32]; /* bit set of the first bytes of added tokens */
    int32_t eot_id;          /* <|endoftext|> or <|end_of_text|>, else -1 */
    text_strmap cache;       /* piece -> index into cache_ids (count, ids...) */
    lact_ids cache_ids;
} lact_bpe;

void lact_bpe_init(lact_bpe *b, text_pretok pretok);
void lact_bpe_free(lact_bpe *b);
/* A model-vocabulary token. */
lact_status lact_bpe_add_token(lact_bpe *b, int32_t id, const void *bytes, size_t len);
/* The next merge (rank = merges so far); a, b and their concatenation must
 * be in the vocabulary. `where` names the source in errors. */
lact_status lact_bpe_add_merge(lact_bpe *b, int32_t a, int32_t c, const char *where);
/* An added token, matched verbatim in the text before pre-tokenisation. */
lact_status lact_bpe_add_special(lact_bpe *b, int32_t id, const char *content, size_t len,
                                 bool special);
/* Looks up the byte tokens and the end-of-text token; call after adding. */
lact_status lact_bpe_finish(lact_bpe *b);

/* Appends the ids of text[0..n) to out. */
lact_status lact_bpe_encode(lact_bpe *b, const void *text, size_t n, lact_ids *out);
/* Appends the bytes of ids to out; an unknown id is an error. */
lact_status lact_bpe_decode(const lact_bpe *b, const int32_t *ids, size_t n, lact_bytes *out);
/* The bytes of one id (NULL when unused). */
const uint8_t *lact_bpe_token(const lact_bpe *b, int32_t id, size_t *len);
int32_t lact_bpe_find_added(const lact_bpe *b, const char *content);

/* GPT-2's reversible map between bytes and printable characters, which
 * tokenizer.json files use to spell byte-level tokens. */
int32_t text_byte_to_cp(uint8_t byte);
/* The byte a character stands for, or -1 when it is not in the map. */
int text_cp_to_byte(int32_t cp);

#endif
