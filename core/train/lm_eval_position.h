/* Loss by token position (`lact lm eval --task position`): the mean loss at
 * each position 0..L−1 of the evaluated sequences, the long-context curve
 * (a model that uses its context predicts later positions better). Rows
 * come from a loader in order; a position's mean is over the sequences
 * that reach it with a counted target. Buckets of N positions average
 * their tokens (not their positions' means), so every bucket is a mean per
 * token like the whole-run loss. */
#ifndef LACT_TRAIN_LM_EVAL_POSITION_H
#define LACT_TRAIN_LM_EVAL_POSITION_H

#include "core/train/lm_eval_score.h"
#include "modalities/text/loader.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_lm_positions {
    int64_t L;
    double *sum;    /* [L] nats */
    int64_t *count; /* [L] counted targets */
    int64_t sequences;
} lact_lm_positions;

lact_status lact_lm_positions_init(lact_lm_positions *p, int64_t L);
void lact_lm_positions_free(lact_lm_positions *p);
/* Adds rows × L per-token losses; positions whose target is negative do
 * not count. */
void lact_lm_positions_add(lact_lm_positions *p, const float *loss, const int32_t *targets,
                           int64_t rows);
/* Σ loss and tokens over every position. */
double lact_lm_positions_total(const lact_lm_positions *p, int64_t *tokens);
/* The mean loss per token over positions [first, end). NAN when none count. */
double lact_lm_positions_mean(const lact_lm_positions *p, int64_t first, int64_t end);

/* Up to max_batches batches (0: until the loader ends) of the loader's
 * [rows, L + 1] windows through the scorer (B rows of L = p->L positions). */
lact_status lact_lm_eval_positions(lact_ctx *ctx, lact_lm *m, lact_lm_scorer *s, lact_loader *l,
                                   int64_t max_batches, lact_lm_positions *p);

typedef struct lact_lm_position_row {
    int64_t position; /* the bucket's first position */
    double loss;      /* mean per token, NAN when none count */
    int64_t count;
} lact_lm_position_row;

/* ceil(L / bucket) rows of bucket positions each (the last may be
 * shorter) into rows (room for that many). Returns the row count. */
int64_t lact_lm_positions_buckets(const lact_lm_positions *p, int64_t bucket,
                                  lact_lm_position_row *rows);
/* Writes the rows atomically: CSV "position,loss,count" (one line per row)
 * or, for a path ending in .json, {"task": "position", "bucket": N,
 * "rows": [{"position", "loss", "count"}, ...]}. */
lact_status lact_lm_positions_write(const char *path, const lact_lm_position_row *rows, int64_t n,
                                    int64_t bucket);

#ifdef __cplusplus
}
#endif
#endif
