/* Table rows: softplus (with a shift) and sigmoid. */
#include "kernels/table/rows.h"

static lact_status act_plan(const char *op, const lact_tensor *in, lact_tensor *out) {
    LACT_TRY(lact_optab_need(op, "x", &in[0], OPTAB_ACT, in[0].device));
    out[0] = lact_optab_out(in[0].device, in[0].dtype, in[0].ndim, in[0].shape);
    return LACT_OK;
}

/* Shapes with odd sizes, and argument ranges wide enough to reach the
 * saturated ends (where the stable forms matter); softplus also gets
 * shifts of both signs. */
static const struct {
    optab_shape x;
    float lo, hi;
    double shift;
} act_cases[] = {
    {{2, {3, 5}}, -4.0f, 4.0f, 0.0},        {{1, {1}}, -1.0f, 1.0f, 2.5},
    {{3, {2, 3, 65}}, -12.0f, 12.0f, -3.0}, {{2, {17, 129}}, -30.0f, 30.0f, 0.5},
    {{3, {3, 7, 1}}, -2.0f, 2.0f, -6.9},
};

static bool act_case(int c, uint64_t seed, lact_tensor *in) {
    if (c < 0 || c >= (int)(sizeof act_cases / sizeof act_cases[0])) return false;
    lact_rng rng = lact_rng_make(seed, 1400 + (uint64_t)c);
    return lact_optab_rand(&in[0], &rng, act_cases[c].x.ndim, act_cases[c].x.d, act_cases[c].lo,
                           act_cases[c].hi);
}

/* ---- softplus ------------------------------------------------------------------ */

static bool softplus_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    if (!act_case(c, seed, in)) return false;
    p[0] = act_cases[c].shift;
    return true;
}

static lact_status softplus_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    return act_plan("softplus", in, out);
}

static lact_status softplus_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                                const double *p) {
    return lact_softplus_forward(ctx, &out[0], &in[0], (float)p[0]);
}

static lact_status softplus_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                                const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_softplus_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0], &in[0],
                                  (float)p[0]);
}

const lact_op_def lact_op_row_softplus = {
    .name = "softplus",
    .summary = "out = log(1 + exp(x + shift)), overflow-free",
    .inputs = {"x"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .params = {{"shift", 0, "added to x before the softplus"}},
    .plan = softplus_plan,
    .forward = softplus_fwd,
    .backward = softplus_bwd,
    .make_case = softplus_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- sigmoid ------------------------------------------------------------------- */

static bool sigmoid_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    return act_case(c, seed, in);
}

static lact_status sigmoid_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    return act_plan("sigmoid", in, out);
}

static lact_status sigmoid_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                               const double *p) {
    return lact_sigmoid_forward(ctx, &out[0], &in[0]);
}

static lact_status sigmoid_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                               const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_sigmoid_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0], &out[0]);
}

const lact_op_def lact_op_row_sigmoid = {
    .name = "sigmoid",
    .summary = "out = 1 / (1 + exp(-x))",
    .inputs = {"x"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .plan = sigmoid_plan,
    .forward = sigmoid_fwd,
    .backward = sigmoid_bwd,
    .make_case = sigmoid_case,
    .tol_f32 = 1e-5,
    /* The backward reads the BF16 forward output, and y (1 − y) loses
     * relative precision where y is near 1 (BF16 spacing 2⁻⁸ there). */
    .tol_bf16 = 3e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};
