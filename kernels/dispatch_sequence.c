/* lact_{rope,softmax,xent,embedding}_*: argument checks, then the CPU or
 * CUDA version. */
#include "kernels/kcheck.h"
#include "kernels/kernels.h"

#define F32_ONLY LACT_DT(LACT_F32)
#define I32_ONLY LACT_DT(LACT_I32)

/* y is an activation with the shape and dtype of x. */
static lact_status check_like(lact_ctx *ctx, const char *op, const char *name, const lact_tensor *y,
                              const char *x_name, const lact_tensor *x) {
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, y, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_same_dtype(op, name, y, x_name, x));
    return lact_kcheck_same_shape(op, name, y, x_name, x);
}

/* ---- rope ---------------------------------------------------------------- */

static lact_status check_rope(lact_ctx *ctx, const char *op, const char *out_name,
                              const lact_tensor *out, const char *x_name, const lact_tensor *x,
                              float theta) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, x_name, x, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_ndim(op, x_name, x, 3, 4));
    int64_t d = x->shape[x->ndim - 1];
    if (d % 2 != 0)
        return lact_fail(LACT_E_ARG, "%s: the last dim of %s is %lld; it must be even", op, x_name,
                         (long long)d);
    if (!(theta > 0.0f)) return lact_fail(LACT_E_ARG, "%s: theta = %g must be > 0", op, theta);
    if (!out) return lact_fail(LACT_E_ARG, "%s: %s is NULL", op, out_name);
    return check_like(ctx, op, out_name, out, x_name, x);
}

lact_status lact_rope_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, int64_t pos0,
                              float theta) {
    LACT_TRY(check_rope(ctx, "rope", "out", out, "x", x, theta));
    return LACT_KDISPATCH(ctx, rope_forward, out, x, pos0, theta);
}

lact_status lact_rope_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                               int64_t pos0, float theta) {
    if (!dx) return lact_kcheck_ctx(ctx, "rope backward");
    LACT_TRY(check_rope(ctx, "rope backward", "dx", dx, "dout", dout, theta));
    return LACT_KDISPATCH(ctx, rope_backward, dx, dout, pos0, theta);
}

/* ---- softmax ------------------------------------------------------------- */

lact_status lact_softmax_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    const char *op = "softmax";
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "x", x, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_ndim(op, "x", x, 1, LACT_MAX_DIMS));
    LACT_TRY(check_like(ctx, op, "out", out, "x", x));
    return LACT_KDISPATCH(ctx, softmax_forward, out, x);
}

lact_status lact_softmax_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                  const lact_tensor *out) {
    const char *op = "softmax backward";
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "out", out, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_ndim(op, "out", out, 1, LACT_MAX_DIMS));
    LACT_TRY(check_like(ctx, op, "dout", dout, "out", out));
    if (!dx) return LACT_OK;
    LACT_TRY(check_like(ctx, op, "dx", dx, "out", out));
    return LACT_KDISPATCH(ctx, softmax_backward, dx, dout, out);
}

/* ---- fused output projection and cross-entropy ---------------------------- */

/* h [N, C] (rows of any leading shape), w [V, C], target [N] I32 and one F32
 * value per row in each of the per-row tensors. */
static lact_status check_xent(lact_ctx *ctx, const char *op, const lact_tensor *h,
                              const lact_tensor *w, const lact_tensor *target,
                              int64_t vocab_chunk) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "h", h, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_ndim(op, "h", h, 1, LACT_MAX_DIMS));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "w", w, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_same_dtype(op, "w", w, "h", h));
    LACT_TRY(lact_kcheck_ndim(op, "w", w, 2, 2));
    char sw[96];
    if (w->shape[1] != lact_tensor_cols(h))
        return lact_fail(LACT_E_ARG, "%s: w has shape %s, expected [V, %lld] (last dim of h)", op,
                         lact_kcheck_shape_str(w, sw, sizeof sw), (long long)lact_tensor_cols(h));
    if (w->shape[0] < 1) return lact_fail(LACT_E_ARG, "%s: w has an empty vocabulary", op);
    LACT_TRY(lact_kcheck_tensor(ctx, op, "target", target, I32_ONLY));
    LACT_TRY(lact_kcheck_numel(op, "target", target, lact_tensor_rows(h), "one per row of h"));
    if (vocab_chunk < 0)
        return lact_fail(LACT_E_ARG, "%s: vocab_chunk = %lld must be >= 0", op,
                         (long long)vocab_chunk);
    return LACT_OK;
}

static lact_status check_row_stat(lact_ctx *ctx, const char *op, const char *name,
                                  const lact_tensor *s, const lact_tensor *h) {
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, s, F32_ONLY));
    return lact_kcheck_numel(op, name, s, lact_tensor_rows(h), "one per row of h");
}

/* dloss one F32 per row; dh like h and dw F32 like w, each optional. */
static lact_status check_xent_grads(lact_ctx *ctx, const char *op, const lact_tensor *dh,
                                    const lact_tensor *dw, const lact_tensor *dloss,
                                    const lact_tensor *h, const lact_tensor *w) {
    LACT_TRY(check_row_stat(ctx, op, "dloss", dloss, h));
    if (dh) LACT_TRY(check_like(ctx, op, "dh", dh, "h", h));
    if (dw) {
        LACT_TRY(lact_kcheck_tensor(ctx, op, "dw", dw, F32_ONLY));
        LACT_TRY(lact_kcheck_same_shape(op, "dw", dw, "w", w));
    }
    return LACT_OK;
}

lact_status lact_xent_forward(lact_ctx *ctx, lact_tensor *loss, lact_tensor *lse,
                              const lact_tensor *h, const lact_tensor *w, const lact_tensor *target,
                              int64_t vocab_chunk) {
    const char *op = "xent";
    LACT_TRY(check_xent(ctx, op, h, w, target, vocab_chunk));
    LACT_TRY(check_row_stat(ctx, op, "loss", loss, h));
    LACT_TRY(check_row_stat(ctx, op, "lse", lse, h));
    return LACT_KDISPATCH(ctx, xent_forward, loss, lse, h, w, target, vocab_chunk);
}

lact_status lact_xent_backward(lact_ctx *ctx, lact_tensor *dh, lact_tensor *dw,
                               const lact_tensor *dloss, const lact_tensor *h, const lact_tensor *w,
                               const lact_tensor *target, const lact_tensor *lse,
                               int64_t vocab_chunk) {
    const char *op = "xent backward";
    LACT_TRY(check_xent(ctx, op, h, w, target, vocab_chunk));
    LACT_TRY(check_row_stat(ctx, op, "lse", lse, h));
    LACT_TRY(check_xent_grads(ctx, op, dh, dw, dloss, h, w));
    if (!dh && !dw) return LACT_OK;
    return LACT_KDISPATCH(ctx, xent_backward, dh, dw, dloss, h, w, target, lse, vocab_chunk);
}

lact_status lact_xent_forward_backward(lact_ctx *ctx, lact_tensor *loss, lact_tensor *lse,
                                       lact_tensor *dh, lact_tensor *dw, const lact_tensor *dloss,
                                       const lact_tensor *h, const lact_tensor *w,
                                       const lact_tensor *target, int64_t vocab_chunk) {
    const char *op = "xent forward_backward";
    LACT_TRY(check_xent(ctx, op, h, w, target, vocab_chunk));
    LACT_TRY(check_row_stat(ctx, op, "loss", loss, h));
    LACT_TRY(check_row_stat(ctx, op, "lse", lse, h));
    LACT_TRY(check_xent_grads(ctx, op, dh, dw, dloss, h, w));
    return LACT_KDISPATCH(ctx, xent_forward_backward, loss, lse, dh, dw, dloss, h, w, target,
                          vocab_chunk);
}

/* ---- embedding ------------------------------------------------------------ */

/* rows [ids..., C]: the shape of ids with the table's width appended. */
static lact_status check_rows_of_ids(const char *op, const char *name, const lact_tensor *t,
                                     const lact_tensor *ids, int64_t c) {
    bool ok = t->ndim == ids->ndim + 1 && t->shape[t->ndim - 1] == c;
    for (int d = 0; ok && d < ids->ndim; d++)
        ok = t->shape[d] == ids->shape[d];
    if (ok) return LACT_OK;
    char st[96], si[96];
    return lact_fail(LACT_E_ARG,
                     "%s: %s has shape %s, expected the shape of ids %s with %lld appended", op,
                     name, lact_kcheck_shape_str(t, st, sizeof st),
                     lact_kcheck_shape_str(ids, si, sizeof si), (long long)c);
}

lact_status lact_embedding_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *table,
                                   const lact_tensor *ids) {
    const char *op = "embedding";
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "out", out, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "table", table, F32_ONLY | LACT_DT(out->dtype)));
    LACT_TRY(lact_kcheck_ndim(op, "table", table, 2, 2));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "ids", ids, I32_ONLY));
    LACT_TRY(lact_kcheck_ndim(op, "ids", ids, 0, LACT_MAX_DIMS - 1));
    LACT_TRY(check_rows_of_ids(op, "out", out, ids, table->shape[1]));
    return LACT_KDISPATCH(ctx, embedding_forward, out, table, ids);
}

static lact_status embedding_backward(lact_ctx *ctx, lact_tensor *dtable, const lact_tensor *dout,
                                      const lact_tensor *ids, bool accumulate) {
    const char *op = "embedding backward";
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    if (!dtable) return LACT_OK;
    LACT_TRY(lact_kcheck_tensor(ctx, op, "dtable", dtable, F32_ONLY));
    LACT_TRY(lact_kcheck_ndim(op, "dtable", dtable, 2, 2));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "dout", dout, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "ids", ids, I32_ONLY));
    LACT_TRY(lact_kcheck_ndim(op, "ids", ids, 0, LACT_MAX_DIMS - 1));
    LACT_TRY(check_rows_of_ids(op, "dout", dout, ids, dtable->shape[1]));
    return LACT_KDISPATCH(ctx, embedding_backward, dtable, dout, ids, accumulate);
}

lact_status lact_embedding_backward(lact_ctx *ctx, lact_tensor *dtable, const lact_tensor *dout,
                                    const lact_tensor *ids) {
    return embedding_backward(ctx, dtable, dout, ids, false);
}

lact_status lact_embedding_backward_add(lact_ctx *ctx, lact_tensor *dtable, const lact_tensor *dout,
                                        const lact_tensor *ids) {
    return embedding_backward(ctx, dtable, dout, ids, true);
}
