/* lact_headprep_*: argument checks, then the CPU reference or the CUDA
 * version. */
#include "kernels/headprep.h"

#include <math.h>

#include "kernels/cpu/headprep_ref.h"
#include "kernels/kcheck.h"
#if LACT_WITH_CUDA
#include "kernels/cuda/headprep_cuda.h"
#endif

#define F32_ONLY LACT_DT(LACT_F32)

/* t (when given) is an activation of z's dtype and shape ([B, L, H, d]) or
 * its heads' layout [B, H, L, d]. */
static lact_status check_act(lact_ctx *ctx, const char *op, const char *name, const lact_tensor *t,
                             const lact_tensor *z, bool heads) {
    if (!t) return LACT_OK;
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, t, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_same_dtype(op, name, t, "z", z));
    if (!heads) return lact_kcheck_same_shape(op, name, t, "z", z);
    LACT_TRY(lact_kcheck_ndim(op, name, t, 4, 4));
    if (t->shape[0] != z->shape[0] || t->shape[1] != z->shape[2] || t->shape[2] != z->shape[1] ||
        t->shape[3] != z->shape[3]) {
        char a[96], b[96];
        return lact_fail(LACT_E_ARG, "%s: %s is %s; z %s needs [B, H, L, d]", op, name,
                         lact_kcheck_shape_str(t, a, sizeof a),
                         lact_kcheck_shape_str(z, b, sizeof b));
    }
    return LACT_OK;
}

static lact_status check_channel(lact_ctx *ctx, const char *op, const char *name,
                                 const lact_tensor *v, const lact_tensor *z) {
    if (!v) return lact_fail(LACT_E_ARG, "%s: %s is NULL", op, name);
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, v, F32_ONLY));
    return lact_kcheck_vector(op, name, v, z->shape[2] * z->shape[3], "H · d of z");
}

static lact_status check_common(lact_ctx *ctx, const char *op, const lact_tensor *z, bool with_norm,
                                const lact_tensor *scale, const lact_tensor *offset, float theta,
                                float eps) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "z", z, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_ndim(op, "z", z, 4, 4));
    if (with_norm) {
        LACT_TRY(check_channel(ctx, op, "scale", scale, z));
        LACT_TRY(check_channel(ctx, op, "offset", offset, z));
    }
    if (!(theta >= 0.0f) || !isfinite(theta))
        return lact_fail(LACT_E_ARG, "%s: theta = %g must be ≥ 0 (0: no RoPE)", op, theta);
    if (theta > 0.0f && z->shape[3] % 2 != 0)
        return lact_fail(LACT_E_ARG, "%s: RoPE needs an even head dim, z has %lld", op,
                         (long long)z->shape[3]);
    if (!(eps >= 0.0f)) return lact_fail(LACT_E_ARG, "%s: eps = %g must be ≥ 0", op, eps);
    return LACT_OK;
}

lact_status lact_headprep_forward(lact_ctx *ctx, lact_tensor *qf, lact_tensor *qa,
                                  const lact_tensor *z, const lact_tensor *scale,
                                  const lact_tensor *offset, int64_t pos0, float theta, float eps) {
    const char *op = "headprep";
    if (!qf && !qa) return lact_fail(LACT_E_ARG, "%s: neither qf nor qa is asked for", op);
    LACT_TRY(check_common(ctx, op, z, qf != NULL, scale, offset, theta, eps));
    LACT_TRY(check_act(ctx, op, "qf", qf, z, true));
    LACT_TRY(check_act(ctx, op, "qa", qa, z, true));
    if (lact_tensor_numel(z) == 0) return LACT_OK;
    return LACT_KDISPATCH(ctx, headprep_forward, qf, qa, z, scale, offset, pos0, theta, eps);
}

static lact_status backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *dscale,
                            lact_tensor *doffset, lact_tensor *dxs, const lact_tensor *dqf,
                            const lact_tensor *dqa, const lact_tensor *z, const lact_tensor *scale,
                            const lact_tensor *offset, int64_t pos0, float theta, float eps,
                            bool acc) {
    const char *op = "headprep backward";
    if (!dqf && !dqa) return lact_fail(LACT_E_ARG, "%s: neither dqf nor dqa is given", op);
    if (!dz) return lact_fail(LACT_E_ARG, "%s: dz is NULL", op);
    if (!dqf && (dscale || doffset))
        return lact_fail(LACT_E_ARG, "%s: dscale and doffset need dqf", op);
    if (dqf && !dxs) return lact_fail(LACT_E_ARG, "%s: dqf needs the dxs scratch", op);
    LACT_TRY(check_common(ctx, op, z, dqf != NULL, scale, offset, theta, eps));
    LACT_TRY(check_act(ctx, op, "dz", dz, z, false));
    LACT_TRY(check_act(ctx, op, "dxs", dxs, z, false));
    LACT_TRY(check_act(ctx, op, "dqf", dqf, z, true));
    LACT_TRY(check_act(ctx, op, "dqa", dqa, z, true));
    if (dscale) LACT_TRY(check_channel(ctx, op, "dscale", dscale, z));
    if (doffset) LACT_TRY(check_channel(ctx, op, "doffset", doffset, z));
    if (lact_tensor_numel(z) == 0) return LACT_OK;
    return LACT_KDISPATCH(ctx, headprep_backward, dz, dscale, doffset, dxs, dqf, dqa, z, scale,
                          offset, pos0, theta, eps, acc);
}

lact_status lact_headprep_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *dscale,
                                   lact_tensor *doffset, lact_tensor *dxs, const lact_tensor *dqf,
                                   const lact_tensor *dqa, const lact_tensor *z,
                                   const lact_tensor *scale, const lact_tensor *offset,
                                   int64_t pos0, float theta, float eps) {
    return backward(ctx, dz, dscale, doffset, dxs, dqf, dqa, z, scale, offset, pos0, theta, eps,
                    false);
}

lact_status lact_headprep_backward_acc(lact_ctx *ctx, lact_tensor *dz, lact_tensor *dscale,
                                       lact_tensor *doffset, lact_tensor *dxs,
                                       const lact_tensor *dqf, const lact_tensor *dqa,
                                       const lact_tensor *z, const lact_tensor *scale,
                                       const lact_tensor *offset, int64_t pos0, float theta,
                                       float eps) {
    return backward(ctx, dz, dscale, doffset, dxs, dqf, dqa, z, scale, offset, pos0, theta, eps,
                    true);
}
