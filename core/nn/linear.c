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

lact_status lact_linear_backward(lact_ctx *ctx, lact_arena *scratch, lact_tensor *dx,
                                 bool dx_accumulate, lact_tensor *dw, lact_tensor *db,
                                 const lact_tensor *dy, const lact_tensor *x, const lact_tensor *w) {
    lact_tensor x2 = rows_view(x), dy2 = rows_view(dy);
    if (dx) {
        lact_tensor dx2 = rows_view(dx);
        LACT_NN_RUN(scratch, lact_matmul_forward(ctx, &dx2, &dy2, w, false, false, 1.0f,
                                                 dx_accumulate ? 1.0f : 0.0f));
    }
    /* dW [out, in] += dyᵀ [out, rows] · x [rows, in] */
    if (dw) LACT_NN_RUN(scratch, lact_matmul_forward(ctx, dw, &dy2, &x2, true, false, 1.0f, 1.0f));
    if (db) {
        size_t mark = lact_arena_mark(scratch);
        lact_tensor tmp;
        lact_status s = lact_arena_tensor(scratch, &tmp, LACT_F32, db->ndim, db->shape);
        if (s == LACT_OK && !scratch->measuring) {
            s = lact_add_backward(ctx, NULL, &tmp, &dy2);
            if (s == LACT_OK) s = lact_nn_accumulate(ctx, db, &tmp);
        }
        lact_arena_release(scratch, mark);
        LACT_TRY(s);
    }
    return LACT_OK;
}
