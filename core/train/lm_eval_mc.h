/* Multiple-choice log-likelihood (`lact lm eval --task mc`), the
 * lm-evaluation-harness convention. Each JSON line is {"context": str,
 * "choices": [str, ...], "answer": int}. A choice scores
 *   ll    = Σ log p(choice token | context, earlier choice tokens)
 * with the context's trailing whitespace moved to the front of the choice
 * (the context and the choice are encoded apart, so the boundary stays a
 * word boundary); an empty context is the end-of-text id. acc picks the
 * largest ll, acc_norm the largest ll / (the choice's bytes) (so longer
 * choices are not penalised for their length); ties go to the first.
 *
 * Every (question, choice) pair is one row of a batched forward (targets
 * only on the choice's tokens), so the cost is one forward per B pairs.
 * A pair longer than max_len keeps the end of its context. */
#ifndef LACT_TRAIN_LM_EVAL_MC_H
#define LACT_TRAIN_LM_EVAL_MC_H

#include <stdint.h>

#include "core/train/lm_eval_score.h"
#include "modalities/text/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_mc_item {
    char *context;
    char **choices;
    int n_choices;
    int answer;
    int64_t line; /* in the file, from 1 */
} lact_mc_item;

typedef struct lact_mc_set {
    lact_mc_item *items;
    int64_t n;
    char *path;
} lact_mc_set;

/* One line (NUL-terminated, no newline) into item; errors read
 * "<path>:<line>: ...". */
lact_status lact_mc_parse_line(const char *path, int64_t line, const char *text,
                               lact_mc_item *item);
void lact_mc_item_free(lact_mc_item *item);
/* Every non-blank line of a file; a file without questions is an error. */
lact_status lact_mc_load(const char *path, lact_mc_set *set);
void lact_mc_free(lact_mc_set *set);

/* The choice with the largest score (the first among equals); with
 * bytes != NULL the score is ll / bytes. */
int lact_mc_pick(const double *ll, const int64_t *bytes, int n);

typedef struct lact_mc_result {
    int64_t n, correct, correct_norm;
    int64_t pairs;         /* Σ choices */
    double *ll;            /* [pairs]: question i's choices from offset[i] */
    int64_t *bytes;        /* [pairs] */
    int64_t *offset;       /* [n] */
    int *pred, *pred_norm; /* [n] */
} lact_mc_result;

/* Scores every question; batch rows per forward, pairs of at most max_len
 * tokens (context + choice − 1 positions). */
lact_status lact_mc_eval(lact_ctx *ctx, lact_lm *m, lact_tokenizer *tok, const lact_mc_set *set,
                         int64_t batch, int64_t max_len, lact_mc_result *r);
void lact_mc_result_free(lact_mc_result *r);
/* CSV "question,answer,pred,pred_norm" (question from 0) or, for .json,
 * {"task": "mc", "n", "acc", "acc_norm", "questions": [...]}; atomic. */
lact_status lact_mc_write(const char *path, const lact_mc_set *set, const lact_mc_result *r);

#ifdef __cplusplus
}
#endif
#endif
