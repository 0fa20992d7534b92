/* The SwiGLU MLP of a block. From x [B, L, D] with hidden width F:
 *
 *   a = x w_gateᵀ, b = x w_upᵀ           [B, L, F]  (one product when the
 *                                         store keeps the two side by side)
 *   y = (silu(a) ⊙ b) w_downᵀ            [B, L, D]
 *
 * Parameters under "<prefix>.": w_gate w_up [F, D], w_down [D, F]. Memory and
 * gradient conventions as in ttt_layer.h: forward keeps what backward needs in
 * the arena, parameter gradients accumulate, dx is overwritten. */
#ifndef LACT_NN_MLP_H
#define LACT_NN_MLP_H

#include <stdint.h>

#include "core/base/arena.h"
#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/nn/params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_mlp {
    int64_t dim, hidden;
    lact_params *params;
    int w_gate, w_up, w_down;
} lact_mlp;

typedef struct lact_mlp_saved {
    lact_tensor x;    /* the caller's input, [B·L, D] */
    lact_tensor a, b; /* [B·L, F] before the gate; or */
    lact_tensor ab;   /* [B·L, 2F] a | b per row, when w_gate, w_up lie side by side */
    lact_tensor s;    /* [B·L, F] silu(a) ⊙ b */
} lact_mlp_saved;

/* init_std: the gate and up projections; w_down uses out_std (the usual
 * residual scaling by the depth). */
lact_status lact_mlp_declare(lact_mlp *m, lact_params *p, const char *prefix, int64_t dim,
                             int64_t hidden, float init_std, float out_std);
/* y = mlp(x), or res + mlp(x) with res (y's shape) added in the down
 * projection. */
lact_status lact_mlp_forward(lact_ctx *ctx, lact_mlp *m, lact_arena *arena, lact_mlp_saved *s,
                             lact_tensor *y, const lact_tensor *x, const lact_tensor *res);
lact_status lact_mlp_backward(lact_ctx *ctx, lact_mlp *m, lact_arena *arena,
                              const lact_mlp_saved *s, lact_tensor *dx, const lact_tensor *dy);

#ifdef __cplusplus
}
#endif
#endif
