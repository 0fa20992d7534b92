/* The AdamW step on the CPU (decoupled weight decay, bias-corrected
 * moments), elementwise over F32 tensors. */
#include <math.h>

#include "kernels/cpu/cpu_kernels.h"

lact_status lact_cpu_adamw_step(lact_ctx *ctx, lact_tensor *param, lact_tensor *m, lact_tensor *v,
                                const lact_tensor *grad, const lact_adamw_args *args) {
    (void)ctx;
    int64_t n = lact_tensor_numel(param);
    float *pp = param->data, *pm = m->data, *pv = v->data;
    const float *pg = grad->data;
    float b1 = args->beta1, b2 = args->beta2, lr = args->lr, wd = args->weight_decay;
    float eps = args->eps;
    int64_t decay_end = args->decay_end > 0 ? args->decay_end : n;
    float scale = 1.0f;
    if (args->grad_norm) {
        float norm = *(const float *)args->grad_norm->data;
        if (!isfinite(norm)) return LACT_OK;
        if (args->max_norm > 0.0f && norm > args->max_norm) scale = args->max_norm / norm;
    }
    /* Bias corrections 1 − β^t, in double: t may be large. */
    float c1 = (float)(1.0 - pow(b1, (double)args->step));
    float c2 = (float)(1.0 - pow(b2, (double)args->step));
    uint16_t *shadow = args->shadow ? args->shadow->data : NULL;
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++) {
        float g = scale == 1.0f ? pg[i] : pg[i] * scale;
        float mi = b1 * pm[i] + (1.0f - b1) * g;
        float vi = b2 * pv[i] + (1.0f - b2) * g * g;
        pm[i] = mi;
        pv[i] = vi;
        float update = (mi / c1) / (sqrtf(vi / c2) + eps) + (i < decay_end ? wd : 0.0f) * pp[i];
        pp[i] -= lr * update;
        if (shadow) shadow[i] = lact_f32_to_bf16(pp[i]);
    }
    return LACT_OK;
}
