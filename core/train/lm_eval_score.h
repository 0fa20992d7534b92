/* What the evaluation tasks of `lact lm eval` share: a forward-only scorer
 * of the language model (per-token losses of a [B, len] batch, and the
 * logits of chosen positions), the greedy pick, and the text output helpers.
 *
 * The scorer's arena is sized by a measuring forward alone (no backward),
 * once for the largest (B, L) it will see; any len ≤ L runs in it. Per-token
 * losses come from the model's fused cross-entropy, so no [B·L, V] logits
 * tensor exists; logits are made only for the few positions asked for, as
 * the final hidden rows times the head. Runs on the model's device. */
#ifndef LACT_TRAIN_LM_EVAL_SCORE_H
#define LACT_TRAIN_LM_EVAL_SCORE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/nn/lm_model.h"
#include "modalities/text/textmap.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_lm_scorer {
    int64_t B, L;       /* the most rows and positions a run takes */
    int64_t len;        /* positions of the last run */
    int64_t logit_rows; /* the most positions lact_lm_scorer_logits gives at once */
    lact_tensor ids, targets, loss, logits; /* device buffers */
    int32_t *h_ids, *h_targets;             /* host [B, len] of the next run (row stride len) */
    float *h_loss;                          /* host [B, len] of the last run */
    float *h_logits;                        /* host [logit_rows, V] */
    lact_arena arena;
} lact_lm_scorer;

/* Buffers for up to B rows of L positions and logits of up to logit_rows
 * positions at once (0: none). */
lact_status lact_lm_scorer_init(lact_lm_scorer *s, lact_lm *m, int64_t B, int64_t L,
                                int64_t logit_rows);
void lact_lm_scorer_free(lact_lm_scorer *s);
/* Forward of h_ids / h_targets as [B, len] (1 ≤ len ≤ L; a negative target
 * is ignored and its loss is 0); h_loss receives the per-token losses
 * (nats, −log p(target)). */
lact_status lact_lm_scorer_run(lact_ctx *ctx, lact_lm *m, lact_lm_scorer *s, int64_t len);
/* After a run: h_logits[0..n) = the logits [n, V] of positions
 * [t0, t0 + n) of row `row`. */
lact_status lact_lm_scorer_logits(lact_ctx *ctx, lact_lm *m, lact_lm_scorer *s, int64_t row,
                                  int64_t t0, int64_t n);

/* The largest of logits[0..n_allowed), the lowest id among equals (the
 * sampler's greedy pick). */
int32_t lact_eval_argmax(const float *logits, int64_t n_allowed);

/* printf onto a growing byte buffer. */
lact_status lact_eval_appendf(lact_bytes *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* True when path ends in ".json" (JSON output), else CSV. */
bool lact_eval_path_is_json(const char *path);

#ifdef __cplusplus
}
#endif
#endif
