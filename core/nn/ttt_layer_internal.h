/* Pieces the LaCT layer's forward and backward files share. */
#ifndef LACT_NN_TTT_LAYER_INTERNAL_H
#define LACT_NN_TTT_LAYER_INTERNAL_H

#include "core/nn/ttt_layer.h"
#include "kernels/attention.h"

/* The spec's L2 normalisation x / (‖x‖ + 1e-5). */
#define LACT_TTT_L2_EPS 1e-5f

/* RoPE's theta as the headprep op takes it (0: no RoPE). */
static inline float lact_ttt_layer_theta(const lact_ttt_layer *l) {
    return l->cfg.rope ? l->cfg.rope_theta : 0.0f;
}

/* The layer's order for length len (built orders are cached in the layer)
 * into args, keeping the iterates in the state for BF16 activations act;
 * fails when the order does not fit len. */
lact_status lact_ttt_layer_order(lact_ttt_layer *l, int64_t len, lact_dtype act,
                                 lact_ttt_args *args);
/* A view of t's elements from offset on, with the given shape (no data
 * pointer while t has none: a measuring arena's tensors). */
static inline lact_tensor lact_ttt_slice(const lact_tensor *t, int64_t offset, int ndim,
                                         const int64_t *shape) {
    lact_tensor v = lact_tensor_view(NULL, t->dtype, t->device, ndim, shape);
    if (t->data) v.data = (char *)t->data + (size_t)offset * lact_dtype_size(t->dtype);
    return v;
}
/* The per-head learning rates and momentum gates from x: s->zlr, s->lr and
 * with momentum s->zm, s->mom ([·, B·H, L], F32). */
lact_status lact_ttt_layer_gates_forward(lact_ctx *ctx, lact_arena *ar, const lact_ttt_layer *l,
                                         lact_ttt_layer_saved *s, const lact_tensor *x);
/* d_x += the gates' projections' gradients from dlr [3, B·H, L] and dmom
 * [B·H, L] (NULL without momentum); the parameters' gradients accumulate. */
lact_status lact_ttt_layer_gates_backward(lact_ctx *ctx, lact_arena *ar, const lact_ttt_layer *l,
                                          const lact_ttt_layer_saved *s, lact_tensor *dx,
                                          const lact_tensor *dlr, const lact_tensor *dmom);
/* The three [N, L] views of lr [3, N, L]. */
void lact_ttt_layer_split_lr(const lact_tensor *lr, lact_tensor out[3], int64_t N, int64_t L);

/* The attention branch's mask: a window in the causal order, full
 * attention in the others. */
lact_attn_args lact_ttt_layer_attn_args(const lact_ttt_layer *l);
/* x [B, L, D] and y agree with the layer; arena, context and parameters are
 * usable. what names the caller in the message. */
lact_status lact_ttt_layer_check_io(const lact_ttt_layer *l, const lact_arena *ar,
                                    const lact_ctx *ctx, const char *what, const lact_tensor *x,
                                    const lact_tensor *y);
/* Stage 1 of the forward, for tokens at positions pos0.. (RoPE): s->zq … s->mom
 * (and qa, ka with the attention branch) from x; s->B, s->L set. */
lact_status lact_ttt_layer_inputs(lact_ctx *ctx, lact_ttt_layer *l, lact_arena *ar,
                                  lact_ttt_layer_saved *s, const lact_tensor *x, int64_t pos0);
/* Last stage: s->rstd, s->u and y (+ res unless NULL) from s->o (+ s->ya
 * with the attention branch). */
lact_status lact_ttt_layer_output(lact_ctx *ctx, lact_ttt_layer *l, lact_arena *ar,
                                  lact_ttt_layer_saved *s, lact_tensor *y, const lact_tensor *res);

#endif
