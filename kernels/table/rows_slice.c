/* Table row: slice (a slab of x along one dim). */
#include "kernels/table/rows.h"

static lact_status slice_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "slice";
    const lact_tensor *x = &in[0];
    LACT_TRY(lact_optab_need(op, "x", x, OPTAB_ACT, x->device));
    int dim = (int)p[0];
    int64_t start = (int64_t)p[1], n = (int64_t)p[2];
    if (dim < 0 || dim >= x->ndim || start < 0 || n < 1 || start + n > x->shape[dim])
        return lact_fail(LACT_E_ARG,
                         "%s: dim %d, start %lld, len %lld do not fit x (%d dims, %lld along "
                         "dim)",
                         op, dim, (long long)start, (long long)n, x->ndim,
                         (long long)(dim >= 0 && dim < x->ndim ? x->shape[dim] : 0));
    int64_t shape[LACT_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++)
        shape[i] = i == dim ? n : x->shape[i];
    out[0] = lact_optab_out(x->device, x->dtype, x->ndim, shape);
    return LACT_OK;
}

static lact_status slice_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                             const double *p) {
    return lact_slice_forward(ctx, &out[0], &in[0], (int)p[0], (int64_t)p[1]);
}

static lact_status slice_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                             const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_slice_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0], (int)p[0],
                               (int64_t)p[1]);
}

static bool slice_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    /* The first dim (one contiguous block), a middle dim (strided rows),
     * the last dim (rows of a few elements), the whole extent and one
     * index, as the decode caches use it. */
    static const struct {
        optab_shape x;
        double dim, start, len;
    } cases[] = {
        {{3, {5, 3, 4}}, 0, 1, 3},     {{4, {2, 3, 7, 4}}, 2, 6, 1}, {{4, {2, 5, 3, 8}}, 1, 2, 2},
        {{2, {6, 9}}, 1, 3, 5},        {{3, {2, 4, 6}}, 1, 0, 4},    {{4, {3, 1, 2, 5}}, 3, 4, 1},
        {{4, {2, 9, 2, 16}}, 1, 8, 1},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    p[0] = cases[c].dim;
    p[1] = cases[c].start;
    p[2] = cases[c].len;
    lact_rng rng = lact_rng_make(seed, 1400 + (uint64_t)c);
    return lact_optab_rand(&in[0], &rng, cases[c].x.ndim, cases[c].x.d, -2.0f, 2.0f);
}

const lact_op_def lact_op_row_slice = {
    .name = "slice",
    .summary = "out = x[.., start : start + len, ..] along dim",
    .inputs = {"x"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .params = {{"dim", 1, "the dim sliced"},
               {"start", 0, "first index taken"},
               {"len", 1, "indices taken"}},
    .plan = slice_plan,
    .forward = slice_fwd,
    .backward = slice_bwd,
    .make_case = slice_case,
    .tol_f32 = 1e-7,
    .tol_bf16 = 1e-7,
    .tol_grad = 1e-2,
    .bf16 = true,
};
