/* lact_{sum,norm}_* and the random fills: argument checks, then the CPU or
 * CUDA version. */
#include "kernels/kcheck.h"
#include "kernels/kernels.h"

#define F32_ONLY LACT_DT(LACT_F32)

static lact_status check_x(lact_ctx *ctx, const char *op, const lact_tensor *x) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "x", x, lact_kcheck_act_dtypes(ctx)));
    return lact_kcheck_ndim(op, "x", x, 1, LACT_MAX_DIMS);
}

/* dx is an activation with x's shape and dtype. */
static lact_status check_dx(lact_ctx *ctx, const char *op, const lact_tensor *dx,
                            const char *ref_name, const lact_tensor *ref) {
    LACT_TRY(lact_kcheck_tensor(ctx, op, "dx", dx, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_same_dtype(op, "dx", dx, ref_name, ref));
    return LACT_OK;
}

lact_status lact_sum_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    const char *op = "sum";
    LACT_TRY(check_x(ctx, op, x));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "out", out, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_same_dtype(op, "out", out, "x", x));
    LACT_TRY(lact_kcheck_numel(op, "out", out, lact_tensor_rows(x), "one per row of x"));
    return LACT_KDISPATCH(ctx, sum_forward, out, x);
}

/* The row count comes from dout, the row length from dx. */
lact_status lact_sum_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout) {
    const char *op = "sum backward";
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "dout", dout, lact_kcheck_act_dtypes(ctx)));
    if (!dx) return LACT_OK;
    LACT_TRY(check_dx(ctx, op, dx, "dout", dout));
    LACT_TRY(lact_kcheck_ndim(op, "dx", dx, 1, LACT_MAX_DIMS));
    LACT_TRY(lact_kcheck_numel(op, "dout", dout, lact_tensor_rows(dx), "one per row of dx"));
    return LACT_KDISPATCH(ctx, sum_backward, dx, dout);
}

lact_status lact_norm_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    const char *op = "norm";
    LACT_TRY(check_x(ctx, op, x));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "out", out, F32_ONLY));
    LACT_TRY(lact_kcheck_numel(op, "out", out, 1, "one value"));
    return LACT_KDISPATCH(ctx, norm_forward, out, x);
}

lact_status lact_norm_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                               const lact_tensor *x, const lact_tensor *out) {
    const char *op = "norm backward";
    LACT_TRY(check_x(ctx, op, x));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "dout", dout, F32_ONLY));
    LACT_TRY(lact_kcheck_numel(op, "dout", dout, 1, "one value"));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "out", out, F32_ONLY));
    LACT_TRY(lact_kcheck_numel(op, "out", out, 1, "one value"));
    if (!dx) return LACT_OK;
    LACT_TRY(check_dx(ctx, op, dx, "x", x));
    LACT_TRY(lact_kcheck_same_shape(op, "dx", dx, "x", x));
    return LACT_KDISPATCH(ctx, norm_backward, dx, dout, x, out);
}

static lact_status check_fill(lact_ctx *ctx, const char *op, const lact_tensor *x) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    return lact_kcheck_tensor(ctx, op, "x", x, F32_ONLY | LACT_DT(LACT_BF16));
}

lact_status lact_fill_uniform(lact_ctx *ctx, lact_tensor *x, uint64_t seed, uint64_t stream,
                              float lo, float hi) {
    const char *op = "fill_uniform";
    LACT_TRY(check_fill(ctx, op, x));
    if (!(lo <= hi)) return lact_fail(LACT_E_ARG, "%s: lo = %g is above hi = %g", op, lo, hi);
    return LACT_KDISPATCH(ctx, fill_uniform, x, seed, stream, lo, hi);
}

lact_status lact_fill_normal(lact_ctx *ctx, lact_tensor *x, uint64_t seed, uint64_t stream,
                             float mean, float std) {
    const char *op = "fill_normal";
    LACT_TRY(check_fill(ctx, op, x));
    if (!(std >= 0.0f)) return lact_fail(LACT_E_ARG, "%s: std = %g must be >= 0", op, std);
    return LACT_KDISPATCH(ctx, fill_normal, x, seed, stream, mean, std);
}
