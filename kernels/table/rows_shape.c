/* Table row: permute (the swap of the two middle dims of a 4-D tensor). */
#include "kernels/table/rows.h"

static lact_status permute_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "permute";
    const lact_tensor *x = &in[0];
    LACT_TRY(lact_optab_need(op, "x", x, OPTAB_ACT, x->device));
    LACT_TRY(lact_kcheck_ndim(op, "x", x, 4, 4));
    int64_t shape[4] = {x->shape[0], x->shape[2], x->shape[1], x->shape[3]};
    out[0] = lact_optab_out(x->device, x->dtype, 4, shape);
    return LACT_OK;
}

static lact_status permute_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                               const double *p) {
    return lact_permute_forward(ctx, &out[0], &in[0]);
}

static lact_status permute_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                               const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_permute_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0]);
}

static bool permute_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    /* E = 1 and other short rows (the tiled CUDA path, with partial tiles
     * in both dims), rows of 8 and more (the vector copy, with odd lengths
     * that allow only narrow vectors), and B or C of 1 (a plain copy). */
    static const optab_shape cases[] = {
        {4, {1, 3, 5, 1}}, {4, {2, 37, 45, 1}}, {4, {2, 5, 3, 7}},   {4, {3, 33, 2, 3}},
        {4, {2, 3, 4, 8}}, {4, {1, 7, 5, 13}},  {4, {2, 70, 3, 16}}, {4, {2, 1, 6, 4}},
        {4, {1, 4, 1, 5}}, {4, {1, 65, 66, 2}},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    lact_rng rng = lact_rng_make(seed, 1300 + (uint64_t)c);
    return lact_optab_rand(&in[0], &rng, cases[c].ndim, cases[c].d, -2.0f, 2.0f);
}

const lact_op_def lact_op_row_permute = {
    .name = "permute",
    .summary = "out[a, c, b, e] = x[a, b, c, e]: x [A, B, C, E] -> out [A, C, B, E]",
    .inputs = {"x"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .plan = permute_plan,
    .forward = permute_fwd,
    .backward = permute_bwd,
    .make_case = permute_case,
    .tol_f32 = 1e-7,
    .tol_bf16 = 1e-7,
    .tol_grad = 1e-2,
    .bf16 = true,
};
