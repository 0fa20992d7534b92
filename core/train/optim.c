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

lact_status lact_adamw_clip(lact_ctx *ctx, lact_adamw *o, float max_norm, float *norm) {
    LACT_TRY(lact_norm_forward(ctx, &o->norm, &o->all_grads));
    LACT_TRY(lact_mem_copy(norm, LACT_CPU, o->norm.data, o->norm.device, sizeof(float)));
    if (max_norm > 0 && *norm > max_norm)
        LACT_TRY(lact_scale_forward(ctx, &o->all_grads, &o->all_grads, max_norm / *norm));
    return LACT_OK;
}

/* A flat view of n elements of a block, starting at param's place in it. */
static lact_tensor run_view(const lact_tensor *t, int64_t n) {
    return lact_tensor_view(t->data, LACT_F32, t->device, 1, &n);
}

static float decay_of(const lact_adamw *o, const lact_param *it) {
    return it->ndim >= 2 ? o->weight_decay : 0.0f;
}

lact_status lact_adamw_update(lact_ctx *ctx, lact_adamw *o, float lr, int64_t step) {
    lact_params *p = o->params;
    int n = lact_params_count(p);
    /* One step per run of consecutive parameters with the same weight
     * decay, over the block from the run's first element to its last: the
     * padding between them is zero in weights, gradients and moments, and
     * an AdamW step leaves a zero element zero, so the run's elements get
     * exactly the per-parameter update, in fewer launches. */
    for (int i = 0; i < n;) {
        lact_param *first = lact_params_at(p, i);
        float wd = decay_of(o, first);
        int j = i;
        while (j + 1 < n && decay_of(o, lact_params_at(p, j + 1)) == wd &&
               lact_params_at(p, j + 1)->offset > lact_params_at(p, j)->offset)
            j++;
        lact_param *last = lact_params_at(p, j);
        int64_t len = last->offset + lact_tensor_numel(&last->w) - first->offset;
        lact_tensor w = run_view(&first->w, len), g = run_view(&first->g, len);
        lact_tensor m = run_view(&first->state[0], len), v = run_view(&first->state[1], len);
        lact_adamw_args a = {lr, o->beta1, o->beta2, o->eps, wd, step};
        LACT_TRY(lact_adamw_step(ctx, &w, &m, &v, &g, &a));
        i = j + 1;
    }
    /* The next forward's BF16 operands: one cast of the whole block. */
    return lact_params_sync_shadow(ctx, p);
}
