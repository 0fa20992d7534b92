/* AdamW over a parameter store: the moments m, v are the store's two state
 * slots (one allocation), weight decay applies to matrices only (norm
 * weights, scales and biases are not decayed), and the gradient is clipped
 * by its global norm first. The global norm is one lact_norm over the whole
 * gradient block: the padding between parameters is zero, so it is the norm
 * of all gradients together. The step is one launch over the whole block
 * (the store keeps the matrices first, so the decayed elements are one
 * range), clipping by the norm on the device and writing the BF16 shadow
 * as it goes: nothing waits for the host between the backward and the
 * next forward. */
#ifndef LACT_TRAIN_OPTIM_H
#define LACT_TRAIN_OPTIM_H

#include "core/base/context.h"
#include "core/nn/params.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_adamw {
    lact_params *params;
    float beta1, beta2, eps, weight_decay;
    lact_tensor norm; /* [1] on the device */
    lact_tensor all_grads; /* the whole gradient block as one vector */
} lact_adamw;

/* Allocates the moments (zeroed) in the store. */
lact_status lact_adamw_init(lact_adamw *o, lact_params *p, float beta1, float beta2, float eps,
                            float weight_decay);
void lact_adamw_free(lact_adamw *o);
/* ‖g‖ over every gradient into o->norm, on the device (nothing waits). */
lact_status lact_adamw_grad_norm(lact_ctx *ctx, lact_adamw *o);
/* One step (1-based step for the bias correction) at rate lr, with the
 * gradients taken as clipped to max_norm (0: no clipping) by the norm of
 * the last lact_adamw_grad_norm, which must come first; a non-finite norm
 * leaves weights and moments as they were. The store's BF16 shadow (when
 * it has one) gets the new weights in the same pass. */
lact_status lact_adamw_update(lact_ctx *ctx, lact_adamw *o, float lr, int64_t step, float max_norm);
/* The norm of the last lact_adamw_grad_norm, read back (waits for it). */
lact_status lact_adamw_read_norm(lact_adamw *o, float *norm);

#ifdef __cplusplus
}
#endif
#endif
