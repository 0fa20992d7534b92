/* Needle in a haystack, passkey retrieval (`lact lm eval --task niah`).
 *
 * A prompt of exactly `length` tokens is filler text with a needle sentence
 * ("The pass key is 48213. Remember it.") after round(depth · F) of its F
 * filler tokens, then the question "What is the pass key? The pass key is".
 * The answer is the key's continuation " 48213" (encoded on its own). A
 * trial is correct when greedy decoding reproduces the answer's ids
 * exactly, checked either
 *   - by the streaming decode (lm_decode.h, CPU): prefill the prompt, then
 *     feed back each greedy id, with constant memory per token for LaCT
 *     layers (attention layers keep their key/value cache), or
 *   - by one full forward of prompt + answer (teacher forcing): greedy
 *     reproduces the answer iff each answer id is the argmax given the
 *     ones before it, so both give the same verdict; this runs on either
 *     device, with the forward's memory for the whole length.
 * Keys are 5 digits drawn from (seed, trial), so every (length, depth)
 * cell sees the same keys. */
#ifndef LACT_TRAIN_LM_EVAL_NIAH_H
#define LACT_TRAIN_LM_EVAL_NIAH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/train/lm_eval_score.h"
#include "modalities/text/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LACT_NIAH_KEY_DIGITS 5

/* The filler used when no text is given: one plain sentence, repeated. */
extern const char lact_niah_filler_sentence[];

typedef struct lact_niah_prompt {
    lact_ids ids;       /* `length` tokens */
    lact_ids answer;    /* " <key>" */
    int64_t needle_at;  /* the needle's first token in ids */
    int64_t needle_len; /* its tokens */
} lact_niah_prompt;

/* The key of a trial: LACT_NIAH_KEY_DIGITS digits, the first not 0. */
void lact_niah_key(uint64_t seed, int64_t trial, char key[LACT_NIAH_KEY_DIGITS + 1]);
/* Where a trial's filler starts in a filler of n tokens (varies the
 * haystack between trials). */
int64_t lact_niah_filler_offset(uint64_t seed, int64_t trial, int64_t n);

/* The filler's ids: the tokens of the shards matching pattern, in order,
 * without end-of-text ids (eot; < 0: none), up to max_tokens. */
lact_status lact_niah_filler_shards(const char *pattern, int32_t eot, int64_t max_tokens,
                                    lact_ids *out);

/* Builds a prompt of `length` tokens from filler[(start + i) mod n_filler]
 * with the needle for `key` at depth in [0, 1]; fails naming the length
 * when the needle and question do not fit. */
lact_status lact_niah_build(lact_tokenizer *tok, const int32_t *filler, int64_t n_filler,
                            int64_t start, int64_t length, double depth, const char *key,
                            lact_niah_prompt *p);
void lact_niah_prompt_free(lact_niah_prompt *p);

/* Greedy verdicts (argmax over ids < n_allowed, the lowest among equals).
 * decode: CPU model; pieces of up to prefill_tokens per prefill step.
 * forward: the scorer needs one row of length + answer − 1 positions and
 * logits of answer-many rows. */
lact_status lact_niah_greedy_decode(lact_ctx *ctx, lact_lm *m, const lact_niah_prompt *p,
                                    int64_t n_allowed, int64_t prefill_tokens, bool *hit);
lact_status lact_niah_greedy_forward(lact_ctx *ctx, lact_lm *m, lact_lm_scorer *s,
                                     const lact_niah_prompt *p, int64_t n_allowed, bool *hit);

typedef enum lact_niah_mode { LACT_NIAH_DECODE = 0, LACT_NIAH_FORWARD = 1 } lact_niah_mode;

typedef struct lact_niah_cfg {
    const int64_t *lengths;
    int n_lengths;
    const double *depths;
    int n_depths;
    int64_t trials;
    uint64_t seed;
    const int32_t *filler;
    int64_t n_filler;
    bool shift_filler; /* start each trial's filler at lact_niah_filler_offset */
    lact_niah_mode mode;
    int64_t n_allowed;      /* ids the argmax ranges over (the tokenizer's) */
    int64_t prefill_tokens; /* decode: tokens per prefill step */
} lact_niah_cfg;

typedef struct lact_niah_cell {
    int64_t length;
    double depth;
    int64_t trials, correct;
} lact_niah_cell;

/* Every (length, depth) cell, lengths major: cells[n_lengths · n_depths]. */
lact_status lact_niah_run(lact_ctx *ctx, lact_lm *m, lact_tokenizer *tok, const lact_niah_cfg *c,
                          lact_niah_cell *cells);
/* CSV "length,depth,trials,correct,accuracy" or, for .json, {"task":
 * "niah", "mode": ..., "cells": [...]}; atomic. */
lact_status lact_niah_write(const char *path, const lact_niah_cell *cells, int64_t n,
                            lact_niah_mode mode);
const char *lact_niah_mode_name(lact_niah_mode mode);

#ifdef __cplusplus
}
#endif
#endif
