/* Optimizer steps and Newton–Schulz: argument checks, then the CPU or CUDA
 * version. All tensors are F32. */
#include <math.h>

#include "kernels/kcheck.h"
#include "kernels/kernels.h"

#define F32_ONLY LACT_DT(LACT_F32)

/* t is F32 with the shape of param. */
static lact_status check_state(lact_ctx *ctx, const char *op, const char *name,
                               const lact_tensor *t, const lact_tensor *param) {
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, t, F32_ONLY));
    return lact_kcheck_same_shape(op, name, t, "param", param);
}

lact_status lact_adamw_step(lact_ctx *ctx, lact_tensor *param, lact_tensor *m, lact_tensor *v,
                            const lact_tensor *grad, const lact_adamw_args *args) {
    const char *op = "adamw";
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "param", param, F32_ONLY));
    LACT_TRY(check_state(ctx, op, "m", m, param));
    LACT_TRY(check_state(ctx, op, "v", v, param));
    LACT_TRY(check_state(ctx, op, "grad", grad, param));
    if (!args) return lact_fail(LACT_E_ARG, "%s: args is NULL", op);
    if (args->step < 1)
        return lact_fail(LACT_E_ARG, "%s: step = %lld must be >= 1 (it is 1-based)", op,
                         (long long)args->step);
    if (!(args->beta1 >= 0.0f && args->beta1 < 1.0f) ||
        !(args->beta2 >= 0.0f && args->beta2 < 1.0f))
        return lact_fail(LACT_E_ARG, "%s: beta1 = %g and beta2 = %g must lie in [0, 1)", op,
                         args->beta1, args->beta2);
    if (!(args->eps > 0.0f))
        return lact_fail(LACT_E_ARG, "%s: eps = %g must be > 0", op, args->eps);
    if (!isfinite(args->lr) || !isfinite(args->weight_decay))
        return lact_fail(LACT_E_ARG, "%s: lr and weight_decay must be finite", op);
    int64_t n = lact_tensor_numel(param);
    if (args->decay_end < 0 || args->decay_end > n)
        return lact_fail(LACT_E_ARG, "%s: decay_end = %lld outside [0, %lld]", op,
                         (long long)args->decay_end, (long long)n);
    if (!(args->max_norm >= 0.0f) || !isfinite(args->max_norm))
        return lact_fail(LACT_E_ARG, "%s: max_norm = %g must be finite and >= 0", op,
                         args->max_norm);
    if (args->max_norm > 0.0f && !args->grad_norm)
        return lact_fail(LACT_E_ARG, "%s: max_norm needs grad_norm", op);
    if (args->grad_norm) {
        LACT_TRY(lact_kcheck_tensor(ctx, op, "grad_norm", args->grad_norm, F32_ONLY));
        if (lact_tensor_numel(args->grad_norm) != 1)
            return lact_fail(LACT_E_ARG, "%s: grad_norm has %lld elements, expected 1", op,
                             (long long)lact_tensor_numel(args->grad_norm));
    }
    if (args->shadow) {
        LACT_TRY(lact_kcheck_tensor(ctx, op, "shadow", args->shadow, LACT_DT(LACT_BF16)));
        if (lact_tensor_numel(args->shadow) != n)
            return lact_fail(LACT_E_ARG, "%s: shadow has %lld elements, param %lld", op,
                             (long long)lact_tensor_numel(args->shadow), (long long)n);
    }
    return LACT_KDISPATCH(ctx, adamw_step, param, m, v, grad, args);
}

static lact_status check_matrix(lact_ctx *ctx, const char *op, const char *name,
                                const lact_tensor *t) {
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, t, F32_ONLY));
    return lact_kcheck_ndim(op, name, t, 2, 2);
}

lact_status lact_muon_step(lact_ctx *ctx, lact_tensor *param, lact_tensor *m,
                           const lact_tensor *grad, const lact_muon_args *args) {
    const char *op = "muon";
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(check_matrix(ctx, op, "param", param));
    LACT_TRY(check_state(ctx, op, "m", m, param));
    LACT_TRY(check_state(ctx, op, "grad", grad, param));
    if (!args) return lact_fail(LACT_E_ARG, "%s: args is NULL", op);
    if (args->ns_steps < 0)
        return lact_fail(LACT_E_ARG, "%s: ns_steps = %d must be >= 0", op, args->ns_steps);
    if (!isfinite(args->lr) || !isfinite(args->momentum) || !isfinite(args->weight_decay))
        return lact_fail(LACT_E_ARG, "%s: lr, momentum and weight_decay must be finite", op);
    return LACT_KDISPATCH(ctx, muon_step, param, m, grad, args);
}

lact_status lact_newton_schulz(lact_ctx *ctx, lact_tensor *out, const lact_tensor *g, int steps) {
    const char *op = "newton_schulz";
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(check_matrix(ctx, op, "g", g));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "out", out, F32_ONLY));
    LACT_TRY(lact_kcheck_same_shape(op, "out", out, "g", g));
    if (steps < 0) return lact_fail(LACT_E_ARG, "%s: steps = %d must be >= 0", op, steps);
    return LACT_KDISPATCH(ctx, newton_schulz, out, g, steps);
}
