/* lact_permute_*: argument checks, then the CPU or CUDA version. The
 * backward of a swap is the same swap of the gradient, so both directions
 * run the one backend function. */
#include <stdint.h>

#include "kernels/kcheck.h"
#include "kernels/kernels.h"

/* x [A, B, C, E] and out [A, C, B, E]: activations of one dtype, 4-D, with
 * the middle dims swapped, in disjoint memory. */
static lact_status check_permute(lact_ctx *ctx, const char *op, const char *out_name,
                                 const lact_tensor *out, const char *x_name, const lact_tensor *x) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    unsigned act = lact_kcheck_act_dtypes(ctx);
    LACT_TRY(lact_kcheck_tensor(ctx, op, x_name, x, act));
    LACT_TRY(lact_kcheck_tensor(ctx, op, out_name, out, act));
    LACT_TRY(lact_kcheck_same_dtype(op, out_name, out, x_name, x));
    LACT_TRY(lact_kcheck_ndim(op, x_name, x, 4, 4));
    LACT_TRY(lact_kcheck_ndim(op, out_name, out, 4, 4));
    const int64_t *s = x->shape, *o = out->shape;
    if (o[0] != s[0] || o[1] != s[2] || o[2] != s[1] || o[3] != s[3]) {
        char so[96], sx[96];
        return lact_fail(LACT_E_ARG,
                         "%s: %s has shape %s, expected [%lld, %lld, %lld, %lld] (%s %s with "
                         "dims 1 and 2 swapped)",
                         op, out_name, lact_kcheck_shape_str(out, so, sizeof so), (long long)s[0],
                         (long long)s[2], (long long)s[1], (long long)s[3], x_name,
                         lact_kcheck_shape_str(x, sx, sizeof sx));
    }
    size_t n = lact_tensor_nbytes(x);
    uintptr_t px = (uintptr_t)x->data, po = (uintptr_t)out->data;
    if (n > 0 && px < po + n && po < px + n)
        return lact_fail(LACT_E_ARG, "%s: %s overlaps %s (a swap cannot run in place)", op,
                         out_name, x_name);
    return LACT_OK;
}

lact_status lact_permute_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    LACT_TRY(check_permute(ctx, "permute", "out", out, "x", x));
    return LACT_KDISPATCH(ctx, permute_forward, out, x);
}

lact_status lact_permute_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout) {
    const char *op = "permute backward";
    if (!dx) return lact_kcheck_ctx(ctx, op);
    LACT_TRY(check_permute(ctx, op, "dx", dx, "dout", dout));
    return LACT_KDISPATCH(ctx, permute_forward, dx, dout);
}
