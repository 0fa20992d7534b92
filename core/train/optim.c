#include "core/train/optim.h"

#include <string.h>

#include "core/base/device.h"
#include "kernels/kernels.h"

lact_status lact_adamw_init(lact_adamw *o, lact_params *p, float beta1, float beta2, float eps,
                            float weight_decay) {
    memset(o, 0, sizeof *o);
    o->params = p;
    o->beta1 = beta1, o->beta2 = beta2, o->eps = eps, o->weight_decay = weight_decay;
    if (!p->allocated) return lact_fail(LACT_E_ARG, "adamw: the parameter store is not allocated");
    if (p->n_state < 2) LACT_TRY(lact_params_alloc_state(p, 2));
    int64_t one[1] = {1}, all[1] = {p->padded};
    o->all_grads = lact_tensor_view(p->grads, LACT_F32, p->device, 1, all);
    return lact_tensor_alloc(&o->norm, LACT_F32, p->device, 1, one);
}

void lact_adamw_free(lact_adamw *o) {
    lact_tensor_free(&o->norm);
}

lact_status lact_adamw_grad_norm(lact_ctx *ctx, lact_adamw *o) {
    return lact_norm_forward(ctx, &o->norm, &o->all_grads);
}

lact_status lact_adamw_read_norm(lact_adamw *o, float *norm) {
    return lact_mem_copy(norm, LACT_CPU, o->norm.data, o->norm.device, sizeof(float));
}

lact_status lact_adamw_update(lact_ctx *ctx, lact_adamw *o, float lr, int64_t step,
                              float max_norm) {
    lact_params *p = o->params;
    int64_t n[1] = {p->padded};
    if (!n[0]) return LACT_OK;
    /* The whole blocks at once: the padding is zero in weights, gradients
     * and moments, and a step leaves a zero element zero. */
    lact_tensor w = lact_tensor_view(p->weights, LACT_F32, p->device, 1, n);
    lact_tensor m = lact_tensor_view(p->state, LACT_F32, p->device, 1, n);
    lact_tensor v = lact_tensor_view(p->state + p->padded, LACT_F32, p->device, 1, n);
    lact_tensor sh = lact_tensor_view(p->shadow, LACT_BF16, p->device, 1, n);
    lact_adamw_args a = {.lr = lr,
                         .beta1 = o->beta1,
                         .beta2 = o->beta2,
                         .eps = o->eps,
                         /* decay_end 0 would mean every element */
                         .weight_decay = p->matrix_end > 0 ? o->weight_decay : 0.0f,
                         .step = step,
                         .decay_end = p->matrix_end,
                         .grad_norm = &o->norm,
                         .max_norm = max_norm,
                         .shadow = p->shadow ? &sh : NULL};
    LACT_TRY(lact_adamw_step(ctx, &w, &m, &v, &o->all_grads, &a));
    if (p->shadow) p->shadow_stale = false;
    return LACT_OK;
}
