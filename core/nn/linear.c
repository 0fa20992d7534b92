#include "linear.h"

#include "kernels/kernels.h"
#include "nn_ops.h"

/* The 2-D [rows, cols] view every product here works on. */
static lact_tensor rows_view(const lact_tensor *t) {
    return LACT_NN_VIEW(t, lact_tensor_rows(t), lact_tensor_cols(t));
}

lact_status lact_linear_forward(lact_ctx *ctx, lact_tensor *y, const lact_tensor *x,
                                const lact_tensor *w, const lact_tensor *b) {
    lact_tensor x2 = rows_view(x), y2 = rows_view(y);
    LACT_TRY(lact_matmul_forward(ctx, &y2, &x2, w, false, true, 1.0f, 0.0f));
    if (b) LACT_TRY(lact_add_forward(ctx, &y2, &y2, b));
    return LACT_OK;
}

lact_status lact_linear_forward_add(lact_ctx *ctx, lact_tensor *y, const lact_tensor *x,
                                    const lact_tensor *w, const lact_tensor *res) {
    if (!res) return lact_linear_forward(ctx, y, x, w, NULL);
    lact_tensor x2 = rows_view(x), y2 = rows_view(y), r2 = rows_view(res);
    return lact_matmul_add_forward(ctx, &y2, &x2, w, false, true, 1.0f, &r2);
}

lact_status lact_linear_backward(lact_ctx *ctx, lact_arena *scratch, lact_tensor *dx,
                                 bool dx_accumulate, lact_tensor *dw, lact_tensor *db,
                                 const lact_tensor *dy, const lact_tensor *x, const lact_tensor *w) {
    lact_tensor x2 = rows_view(x), dy2 = rows_view(dy);
    size_t mark = lact_arena_mark(scratch);
    lact_status s = LACT_OK;
    /* A projection with an F32 output (the LaCT layer's rate and momentum
     * gates) from BF16 operands: the products read its gradient in BF16,
     * the bias gradient sums the F32 values. */
    lact_tensor dyp = dy2;
    if (dy->dtype != w->dtype) {
        s = lact_arena_tensor(scratch, &dyp, w->dtype, 2, dy2.shape);
        if (s == LACT_OK && !scratch->measuring) s = lact_cast_forward(ctx, &dyp, &dy2);
    }
    if (s == LACT_OK && dx && !scratch->measuring) {
        lact_tensor dx2 = rows_view(dx);
        s = lact_matmul_forward(ctx, &dx2, &dyp, w, false, false, 1.0f,
                                dx_accumulate ? 1.0f : 0.0f);
    }
    /* dW [out, in] += dyᵀ [out, rows] · x [rows, in] */
    if (s == LACT_OK && dw && !scratch->measuring)
        s = lact_matmul_forward(ctx, dw, &dyp, &x2, true, false, 1.0f, 1.0f);
    if (s == LACT_OK && db) {
        lact_tensor tmp;
        s = lact_arena_tensor(scratch, &tmp, LACT_F32, db->ndim, db->shape);
        if (s == LACT_OK && !scratch->measuring) {
            s = lact_add_backward(ctx, NULL, &tmp, &dy2);
            if (s == LACT_OK) s = lact_nn_accumulate(ctx, db, &tmp);
        }
    }
    lact_arena_release(scratch, mark);
    return s;
}
