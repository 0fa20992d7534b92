/* lact_{rmsnorm,layernorm,l2norm}_*: argument checks, then the CPU or CUDA
 * version. */
#include "kernels/kcheck.h"
#include "kernels/kernels.h"

#define F32_ONLY LACT_DT(LACT_F32)

/* y is an activation with the shape and dtype of x (x at least 1-D). */
static lact_status check_like_x(lact_ctx *ctx, const char *op, const char *name,
                                const lact_tensor *y, const lact_tensor *x) {
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, y, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_same_dtype(op, name, y, "x", x));
    return lact_kcheck_same_shape(op, name, y, "x", x);
}

static lact_status check_x(lact_ctx *ctx, const char *op, const lact_tensor *x) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "x", x, lact_kcheck_act_dtypes(ctx)));
    return lact_kcheck_ndim(op, "x", x, 1, LACT_MAX_DIMS);
}

/* An optional per-channel F32 vector [C]. */
static lact_status check_channel(lact_ctx *ctx, const char *op, const char *name,
                                 const lact_tensor *v, const lact_tensor *x) {
    if (!v) return LACT_OK;
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, v, F32_ONLY));
    return lact_kcheck_vector(op, name, v, lact_tensor_cols(x), "last dim of x");
}

/* A per-row F32 statistic (rstd, mean): one value per row of x. */
static lact_status check_stat(lact_ctx *ctx, const char *op, const char *name, const lact_tensor *s,
                              const lact_tensor *x) {
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, s, F32_ONLY));
    return lact_kcheck_numel(op, name, s, lact_tensor_rows(x), "one per row of x");
}

lact_status lact_rmsnorm_forward(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd,
                                 const lact_tensor *x, const lact_tensor *w, float eps) {
    return lact_rmsnorm_forward_add(ctx, out, rstd, x, w, eps, NULL);
}

lact_status lact_rmsnorm_forward_add(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd,
                                     const lact_tensor *x, const lact_tensor *w, float eps,
                                     const lact_tensor *res) {
    const char *op = "rmsnorm";
    LACT_TRY(check_x(ctx, op, x));
    LACT_TRY(check_like_x(ctx, op, "out", out, x));
    LACT_TRY(check_stat(ctx, op, "rstd", rstd, x));
    LACT_TRY(check_channel(ctx, op, "w", w, x));
    if (res) LACT_TRY(check_like_x(ctx, op, "res", res, x));
    if (!(eps >= 0.0f)) return lact_fail(LACT_E_ARG, "%s: eps = %g must be >= 0", op, eps);
    return LACT_KDISPATCH(ctx, rmsnorm_forward, out, rstd, x, w, eps, res);
}

lact_status lact_rmsnorm_forward_heads(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd,
                                       const lact_tensor *x, const lact_tensor *w, float eps,
                                       const lact_tensor *res) {
    const char *op = "rmsnorm (heads to tokens)";
    LACT_TRY(check_x(ctx, op, x));
    LACT_TRY(lact_kcheck_ndim(op, "x", x, 4, 4));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "out", out, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_same_dtype(op, "out", out, "x", x));
    LACT_TRY(check_stat(ctx, op, "rstd", rstd, x));
    LACT_TRY(check_channel(ctx, op, "w", w, x));
    if (res) LACT_TRY(check_like_x(ctx, op, "res", res, x));
    if (out->ndim != 4 || out->shape[0] != x->shape[0] || out->shape[1] != x->shape[2] ||
        out->shape[2] != x->shape[1] || out->shape[3] != x->shape[3]) {
        char a[96], b[96];
        return lact_fail(LACT_E_ARG, "%s: out is %s; x %s [B, H, L, d] needs [B, L, H, d]", op,
                         lact_kcheck_shape_str(out, a, sizeof a),
                         lact_kcheck_shape_str(x, b, sizeof b));
    }
    if (!(eps >= 0.0f)) return lact_fail(LACT_E_ARG, "%s: eps = %g must be >= 0", op, eps);
    return LACT_KDISPATCH(ctx, rmsnorm_forward_heads, out, rstd, x, w, eps, res);
}

lact_status lact_rmsnorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                  const lact_tensor *dout, const lact_tensor *x,
                                  const lact_tensor *w, const lact_tensor *rstd) {
    return lact_rmsnorm_backward_add(ctx, dx, dw, dout, x, w, rstd, NULL);
}

static lact_status rmsnorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                    const lact_tensor *dout, const lact_tensor *x,
                                    const lact_tensor *w, const lact_tensor *rstd,
                                    const lact_tensor *res, bool dw_acc) {
    const char *op = "rmsnorm backward";
    LACT_TRY(check_x(ctx, op, x));
    LACT_TRY(check_like_x(ctx, op, "dout", dout, x));
    LACT_TRY(check_stat(ctx, op, "rstd", rstd, x));
    LACT_TRY(check_channel(ctx, op, "w", w, x));
    if (dx) LACT_TRY(check_like_x(ctx, op, "dx", dx, x));
    if (dw && !w) return lact_fail(LACT_E_ARG, "%s: dw is given but w is NULL", op);
    LACT_TRY(check_channel(ctx, op, "dw", dw, x));
    if (res) {
        if (!dx) return lact_fail(LACT_E_ARG, "%s: res is given but dx is NULL", op);
        LACT_TRY(check_like_x(ctx, op, "res", res, x));
    }
    if (!dx && !dw) return LACT_OK;
    return LACT_KDISPATCH(ctx, rmsnorm_backward, dx, dw, dout, x, w, rstd, res, dw_acc);
}

lact_status lact_rmsnorm_backward_add(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                      const lact_tensor *dout, const lact_tensor *x,
                                      const lact_tensor *w, const lact_tensor *rstd,
                                      const lact_tensor *res) {
    return rmsnorm_backward(ctx, dx, dw, dout, x, w, rstd, res, false);
}

lact_status lact_rmsnorm_backward_acc(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                      const lact_tensor *dout, const lact_tensor *x,
                                      const lact_tensor *w, const lact_tensor *rstd,
                                      const lact_tensor *res) {
    return rmsnorm_backward(ctx, dx, dw, dout, x, w, rstd, res, true);
}

lact_status lact_layernorm_forward(lact_ctx *ctx, lact_tensor *out, lact_tensor *mean,
                                   lact_tensor *rstd, const lact_tensor *x, const lact_tensor *w,
                                   const lact_tensor *b, float eps) {
    const char *op = "layernorm";
    LACT_TRY(check_x(ctx, op, x));
    LACT_TRY(check_like_x(ctx, op, "out", out, x));
    LACT_TRY(check_stat(ctx, op, "mean", mean, x));
    LACT_TRY(check_stat(ctx, op, "rstd", rstd, x));
    LACT_TRY(check_channel(ctx, op, "w", w, x));
    LACT_TRY(check_channel(ctx, op, "b", b, x));
    if (!(eps >= 0.0f)) return lact_fail(LACT_E_ARG, "%s: eps = %g must be >= 0", op, eps);
    return LACT_KDISPATCH(ctx, layernorm_forward, out, mean, rstd, x, w, b, eps);
}

lact_status lact_layernorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                    lact_tensor *db, const lact_tensor *dout, const lact_tensor *x,
                                    const lact_tensor *w, const lact_tensor *mean,
                                    const lact_tensor *rstd) {
    const char *op = "layernorm backward";
    LACT_TRY(check_x(ctx, op, x));
    LACT_TRY(check_like_x(ctx, op, "dout", dout, x));
    LACT_TRY(check_stat(ctx, op, "mean", mean, x));
    LACT_TRY(check_stat(ctx, op, "rstd", rstd, x));
    LACT_TRY(check_channel(ctx, op, "w", w, x));
    if (dx) LACT_TRY(check_like_x(ctx, op, "dx", dx, x));
    if (dw && !w) return lact_fail(LACT_E_ARG, "%s: dw is given but w is NULL", op);
    LACT_TRY(check_channel(ctx, op, "dw", dw, x));
    LACT_TRY(check_channel(ctx, op, "db", db, x));
    if (!dx && !dw && !db) return LACT_OK;
    return LACT_KDISPATCH(ctx, layernorm_backward, dx, dw, db, dout, x, w, mean, rstd);
}

lact_status lact_l2norm_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, float eps) {
    const char *op = "l2norm";
    LACT_TRY(check_x(ctx, op, x));
    LACT_TRY(check_like_x(ctx, op, "out", out, x));
    if (!(eps >= 0.0f)) return lact_fail(LACT_E_ARG, "%s: eps = %g must be >= 0", op, eps);
    return LACT_KDISPATCH(ctx, l2norm_forward, out, x, eps);
}

lact_status lact_l2norm_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                 const lact_tensor *x, float eps) {
    const char *op = "l2norm backward";
    LACT_TRY(check_x(ctx, op, x));
    LACT_TRY(check_like_x(ctx, op, "dout", dout, x));
    if (!dx) return LACT_OK;
    LACT_TRY(check_like_x(ctx, op, "dx", dx, x));
    if (!(eps >= 0.0f)) return lact_fail(LACT_E_ARG, "%s: eps = %g must be >= 0", op, eps);
    return LACT_KDISPATCH(ctx, l2norm_backward, dx, dout, x, eps);
}
