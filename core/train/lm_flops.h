/* Training FLOPs per token of the language model, by term, from its config
 * (docs/lm.md, "Throughput benchmark"). A training step is counted as 3×
 * the forward (forward + backward with both input and weight gradients):
 *
 *   matmul     6·N, N = the weights used as matrix products: the head V·D
 *              once (tied or not: the embedding lookup is no product), every
 *              mixer's projections, the MLPs. Norm weights, scales, offsets,
 *              biases and the fast weights' initial values are not in N.
 *   attention  12·D·K per causal attention layer: 4·d·K per head forward
 *              (QKᵀ and PV), K the mean number of keys a query attends.
 *   window     the same with the sliding-window mask, per LaCT layer that
 *              has the window branch.
 *   ttt        54·D·dh per LaCT layer: 18·d·dh per head forward (the fast
 *              net on k, its gradient and the apply on q; specs/lact.md
 *              "Costs", as `lact bench ttt` counts it) × 3; Newton–Schulz is
 *              not counted.
 *
 * The Mesa op itself (state updates and conjugate-gradient solves) is not
 * counted either: only the Mesa layer's projections, in N. */
#ifndef LACT_TRAIN_LM_FLOPS_H
#define LACT_TRAIN_LM_FLOPS_H

#include <stdint.h>

#include "core/nn/lm_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_lm_flops {
    int64_t seq_len;
    int64_t layers[3];                     /* layers per mixer, indexed by lact_mixer */
    int64_t n_head;                        /* V·D */
    int64_t n_mixer[3];                    /* matmul weights of all the layers of each mixer */
    int64_t n_mlp;                         /* matmul weights of all the MLPs */
    int64_t n_matmul;                      /* N: the sum of the above */
    double keys_causal;                    /* K of the causal mask: (L + 1) / 2 */
    double keys_window;                    /* K of the window mask (0 without the branch) */
    double matmul, attention, window, ttt; /* the terms, FLOPs per token */
    double total;
} lact_lm_flops;

/* Mean keys per query over a sequence of len tokens: query i attends the
 * keys max(0, i − window + 1) .. i, all of 0 .. i when window is 0. */
double lact_lm_keys_per_query(int64_t len, int64_t window);

/* The terms for cfg at seq_len tokens per sequence; fails like the model
 * would on a bad shape or mixer list. */
lact_status lact_lm_flops_per_token(const lact_lm_cfg *cfg, int64_t seq_len, lact_lm_flops *f);

#ifdef __cplusplus
}
#endif
#endif
