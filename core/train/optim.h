/* AdamW over a parameter store: the moments m, v are the store's two state
 * slots (one allocation), weight decay applies to matrices only (norm
 * weights, scales and biases are not decayed), and the gradient is clipped
 * by its global norm first. The global norm is one lact_norm over the whole
 * gradient block: the padding between parameters is zero, so it is the norm
 * of all gradients together. */
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
/* ‖g‖ over every gradient; when max_norm > 0 and ‖g‖ > max_norm the
 * gradients are scaled by max_norm / ‖g‖. *norm is the norm before. */
lact_status lact_adamw_clip(lact_ctx *ctx, lact_adamw *o, float max_norm, float *norm);
/* One step (1-based step for the bias correction) at rate lr, then the
 * store's BF16 shadow (when it has one) from the new weights. */
lact_status lact_adamw_update(lact_ctx *ctx, lact_adamw *o, float lr, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
