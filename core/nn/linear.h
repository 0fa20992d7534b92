/* y = x Wᵀ (+ b), W [out, in] as PyTorch stores it, x [..., in], y [..., out].
 *
 * Gradient convention of the layers (docs/nn.md): parameter gradients
 * ACCUMULATE (+=) — a parameter may be used more than once (tied weights,
 * several steps of gradient accumulation), and the store's zero_grad clears
 * them once per step. Activation gradients are OVERWRITTEN, as the kernels
 * do, unless the caller asks to accumulate (dx_accumulate), which the layers
 * use when several projections read the same input. */
#ifndef LACT_NN_LINEAR_H
#define LACT_NN_LINEAR_H

#include <stdbool.h>

#include "core/base/arena.h"
#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* b may be NULL (no bias). x and w share a dtype (w is the BF16 shadow for
 * BF16 x: params.h lact_param_mm); y may be F32 with BF16 operands (CUDA),
 * b is F32. */
lact_status lact_linear_forward(lact_ctx *ctx, lact_tensor *y, const lact_tensor *x,
                                const lact_tensor *w, const lact_tensor *b);

/* y = x Wᵀ + res, the residual added in the product's epilogue on CUDA; res
 * has y's shape and dtype and may be NULL (y = x Wᵀ). */
lact_status lact_linear_forward_add(lact_ctx *ctx, lact_tensor *y, const lact_tensor *x,
                                    const lact_tensor *w, const lact_tensor *res);

/* dx = dy W (or dx += dy W with dx_accumulate), dw += dyᵀ x, db += Σ_rows dy.
 * Any of dx, dw, db may be NULL; dw and db are F32. db needs an [out]
 * scratch from the arena, and a dy whose dtype is not w's (an F32 output of
 * BF16 operands) a copy in w's dtype (both released before returning). A
 * measuring arena computes nothing. */
lact_status lact_linear_backward(lact_ctx *ctx, lact_arena *scratch, lact_tensor *dx,
                                 bool dx_accumulate, lact_tensor *dw, lact_tensor *db,
                                 const lact_tensor *dy, const lact_tensor *x, const lact_tensor *w);

#ifdef __cplusplus
}
#endif
#endif
