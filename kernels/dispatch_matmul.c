/* lact_matmul_*: argument checks, then the CPU or CUDA version. */
#include "kernels/kcheck.h"
#include "kernels/kernels.h"

/* The checks of a product out = op(a) · op(b) the forward ops share. */
static lact_status check_product(lact_ctx *ctx, const char *op, const lact_tensor *out,
                                 const lact_tensor *a, const lact_tensor *b, bool ta, bool tb) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    unsigned act = lact_kcheck_act_dtypes(ctx);
    LACT_TRY(lact_kcheck_tensor(ctx, op, "out", out, act));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "a", a, act));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "b", b, act));
    LACT_TRY(lact_kcheck_same_dtype(op, "b", b, "a", a));
    return lact_kcheck_matmul(op, "out", out, a, b, ta, tb);
}

lact_status lact_matmul_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                const lact_tensor *b, bool ta, bool tb, float alpha, float beta) {
    LACT_TRY(check_product(ctx, "matmul", out, a, b, ta, tb));
    return LACT_KDISPATCH(ctx, matmul_forward, out, a, b, ta, tb, alpha, beta);
}

lact_status lact_matmul_add_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                    const lact_tensor *b, bool ta, bool tb, float alpha,
                                    const lact_tensor *c) {
    const char *op = "matmul_add";
    LACT_TRY(check_product(ctx, op, out, a, b, ta, tb));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "c", c, LACT_DT(out->dtype)));
    LACT_TRY(lact_kcheck_same_shape(op, "c", c, "out", out));
    return LACT_KDISPATCH(ctx, matmul_add_forward, out, a, b, ta, tb, alpha, c);
}

lact_status lact_matmul_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                 const lact_tensor *dout, const lact_tensor *a,
                                 const lact_tensor *b, bool ta, bool tb, float alpha) {
    const char *op = "matmul backward";
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    unsigned act = lact_kcheck_act_dtypes(ctx);
    LACT_TRY(lact_kcheck_tensor(ctx, op, "dout", dout, act));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "a", a, act));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "b", b, act));
    LACT_TRY(lact_kcheck_same_dtype(op, "b", b, "a", a));
    LACT_TRY(lact_kcheck_matmul(op, "dout", dout, a, b, ta, tb));
    /* Gradients may be F32 when the operands are BF16 (fp32 masters). */
    LACT_TRY(lact_kcheck_optional(ctx, op, "da", da, LACT_DT(a->dtype) | LACT_DT(LACT_F32)));
    LACT_TRY(lact_kcheck_optional(ctx, op, "db", db, LACT_DT(b->dtype) | LACT_DT(LACT_F32)));
    if (da) LACT_TRY(lact_kcheck_same_shape(op, "da", da, "a", a));
    if (db) LACT_TRY(lact_kcheck_same_shape(op, "db", db, "b", b));
    if (!da && !db) return LACT_OK;
    return LACT_KDISPATCH(ctx, matmul_backward, da, db, dout, a, b, ta, tb, alpha);
}
