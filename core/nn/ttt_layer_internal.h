/* Pieces the LaCT layer's forward and backward files share. */
#ifndef LACT_NN_TTT_LAYER_INTERNAL_H
#define LACT_NN_TTT_LAYER_INTERNAL_H

#include "core/nn/ttt_layer.h"

/* The spec's L2 normalisation x / (‖x‖ + 1e-5). */
#define LACT_TTT_L2_EPS 1e-5f

/* The causal order for length len (cached in the layer) into args. */
lact_status lact_ttt_layer_order(lact_ttt_layer *l, int64_t len, lact_ttt_args *args);
/* dst [B·H, ...] = B copies of src [H, ...]. */
lact_status lact_ttt_layer_replicate(lact_ctx *ctx, lact_tensor *dst, const lact_tensor *src,
                                     int64_t B);
/* grad [H, ...] += Σ_b d [b] over the batch copies of d [B·H, ...]. */
lact_status lact_ttt_layer_reduce(lact_ctx *ctx, lact_tensor *grad, const lact_tensor *d,
                                  int64_t B);
/* The three [N, L] views of lr [3, N, L]. */
void lact_ttt_layer_split_lr(const lact_tensor *lr, lact_tensor out[3], int64_t N, int64_t L);

#endif
