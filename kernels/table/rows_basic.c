/* Table rows: matmul and the elementwise ops. */
#include <string.h>

#include "kernels/table/rows.h"

/* ---- matmul ---------------------------------------------------------------- */

enum { MM_TA, MM_TB, MM_ALPHA, MM_BETA };

/* The options and tolerances of the two product rows. */
#define MM_PARAMS(beta_help)                                                                       \
    {                                                                                              \
        {"ta", 0, "1: a is stored transposed ([..., K, M])"},                                      \
            {"tb", 0, "1: b is stored transposed ([..., N, K])"},                                  \
            {"alpha", 1, "scale of the product"}, {                                                \
            "beta", 0, beta_help                                                                   \
        }                                                                                          \
    }
#define MM_TOLERANCES .tol_f32 = 1e-5, .tol_bf16 = 2e-2, .tol_grad = 1e-2, .bf16 = true

static lact_status matmul_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "matmul";
    const lact_tensor *a = &in[0], *b = &in[1];
    LACT_TRY(lact_optab_need(op, "a", a, OPTAB_ACT, a->device));
    LACT_TRY(lact_optab_need(op, "b", b, OPTAB_ACT, a->device));
    LACT_TRY(lact_kcheck_same_dtype(op, "b", b, "a", a));
    LACT_TRY(lact_kcheck_ndim(op, "a", a, 2, LACT_MAX_DIMS));
    LACT_TRY(lact_kcheck_ndim(op, "b", b, 2, LACT_MAX_DIMS));
    if (p[MM_BETA] != 0.0)
        return lact_fail(LACT_E_ARG, "%s: beta = %g; here it must be 0 (out starts empty)", op,
                         p[MM_BETA]);
    bool ta = p[MM_TA] != 0.0, tb = p[MM_TB] != 0.0;
    int64_t shape[LACT_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++)
        shape[d] = a->shape[d];
    shape[a->ndim - 2] = a->shape[a->ndim - (ta ? 1 : 2)];
    shape[a->ndim - 1] = b->shape[b->ndim - (tb ? 2 : 1)];
    out[0] = lact_optab_out(a->device, a->dtype, a->ndim, shape);
    return lact_kcheck_matmul(op, "out", &out[0], a, b, ta, tb);
}

static lact_status matmul_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                              const double *p) {
    return lact_matmul_forward(ctx, &out[0], &in[0], &in[1], p[MM_TA] != 0.0, p[MM_TB] != 0.0,
                               (float)p[MM_ALPHA], 0.0f);
}

static lact_status matmul_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                              const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_matmul_backward(ctx, lact_optab_grad(d_in, in, 0), lact_optab_grad(d_in, in, 1),
                                &d_out[0], &in[0], &in[1], p[MM_TA] != 0.0, p[MM_TB] != 0.0,
                                (float)p[MM_ALPHA]);
}

static bool matmul_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    /* a, b as stored, then ta, tb, alpha: square, transposed, batched,
     * broadcast b, and dims of 1. */
    static const struct {
        optab_shape a, b;
        int ta, tb;
        double alpha;
    } cases[] = {
        {{2, {3, 5}}, {2, {5, 4}}, 0, 0, 1.0},
        {{2, {5, 3}}, {2, {5, 4}}, 1, 0, 1.0},
        {{2, {3, 5}}, {2, {4, 5}}, 0, 1, 0.5},
        {{2, {5, 1}}, {2, {17, 5}}, 1, 1, 1.0},
        {{4, {2, 3, 4, 6}}, {4, {2, 3, 5, 6}}, 0, 1, 1.0},
        {{3, {4, 3, 7}}, {2, {7, 5}}, 0, 0, 0.7},
        {{4, {2, 3, 9, 4}}, {2, {6, 9}}, 1, 1, 1.0},
        {{3, {3, 1, 1}}, {3, {3, 1, 2}}, 0, 0, 2.0},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    lact_rng rng = lact_rng_make(seed, 100 + (uint64_t)c);
    if (!lact_optab_rand(&in[0], &rng, cases[c].a.ndim, cases[c].a.d, -1.0f, 1.0f)) return false;
    if (!lact_optab_rand(&in[1], &rng, cases[c].b.ndim, cases[c].b.d, -1.0f, 1.0f)) {
        lact_optab_free(in, 1);
        return false;
    }
    p[MM_TA] = cases[c].ta;
    p[MM_TB] = cases[c].tb;
    p[MM_ALPHA] = cases[c].alpha;
    p[MM_BETA] = 0.0;
    return true;
}

const lact_op_def lact_op_row_matmul = {
    .name = "matmul",
    .summary = "out = alpha * op(a) @ op(b), batched; b may be one matrix for the batch",
    .inputs = {"a", "b"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x3,
    .params = MM_PARAMS("must be 0 here (out starts empty)"),
    .plan = matmul_plan,
    .forward = matmul_fwd,
    .backward = matmul_bwd,
    .make_case = matmul_case,
    MM_TOLERANCES,
};

/* ---- matmul_add: the product with a residual --------------------------------- */

static lact_status matmul_add_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    LACT_TRY(matmul_plan(in, p, out));
    LACT_TRY(lact_optab_need("matmul_add", "c", &in[2], LACT_DT(in[0].dtype), in[0].device));
    return lact_kcheck_same_shape("matmul_add", "c", &in[2], "out", &out[0]);
}

static lact_status matmul_add_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                                  const double *p) {
    return lact_matmul_add_forward(ctx, &out[0], &in[0], &in[1], p[MM_TA] != 0.0, p[MM_TB] != 0.0,
                                   (float)p[MM_ALPHA], &in[2]);
}

static lact_status matmul_add_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                                  const lact_tensor *in, const lact_tensor *out, const double *p) {
    LACT_TRY(matmul_bwd(ctx, d_in, d_out, in, out, p));
    lact_tensor *dc = lact_optab_grad(d_in, in, 2);
    return dc ? lact_scale_forward(ctx, dc, &d_out[0], 1.0f) : LACT_OK;
}

static bool matmul_add_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    if (!matmul_case(c, seed, in, p)) return false;
    lact_tensor out;
    if (matmul_plan(in, p, &out) != LACT_OK) {
        lact_optab_free(in, 2);
        return false;
    }
    lact_rng rng = lact_rng_make(seed, 200 + (uint64_t)c);
    if (!lact_optab_rand(&in[2], &rng, out.ndim, out.shape, -1.0f, 1.0f)) {
        lact_optab_free(in, 2);
        return false;
    }
    return true;
}

const lact_op_def lact_op_row_matmul_add = {
    .name = "matmul_add",
    .summary = "out = alpha * op(a) @ op(b) + c (the residual added in the product's epilogue)",
    .inputs = {"a", "b", "c"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x7,
    .params = MM_PARAMS("must be 0 here (c is the addend)"),
    .plan = matmul_add_plan,
    .forward = matmul_add_fwd,
    .backward = matmul_add_bwd,
    .make_case = matmul_add_case,
    MM_TOLERANCES,
};

/* ---- add, mul: b broadcast by repetition ------------------------------------ */

static lact_status broadcast_plan(const char *op, const lact_tensor *in, lact_tensor *out) {
    const lact_tensor *a = &in[0], *b = &in[1];
    LACT_TRY(lact_optab_need(op, "a", a, OPTAB_ACT, a->device));
    LACT_TRY(lact_optab_need(op, "b", b, LACT_DT(a->dtype) | OPTAB_F32, a->device));
    int64_t na = lact_tensor_numel(a), nb = lact_tensor_numel(b);
    if (nb == 0 ? na != 0 : na % nb != 0) {
        char sa[96], sb[96];
        return lact_fail(LACT_E_ARG, "%s: b %s (%lld elements) does not broadcast over a %s", op,
                         lact_kcheck_shape_str(b, sb, sizeof sb), (long long)nb,
                         lact_kcheck_shape_str(a, sa, sizeof sa));
    }
    out[0] = lact_optab_out(a->device, a->dtype, a->ndim, a->shape);
    return LACT_OK;
}

static lact_status add_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    return broadcast_plan("add", in, out);
}

static lact_status mul_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    return broadcast_plan("mul", in, out);
}

static lact_status add_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                           const double *p) {
    return lact_add_forward(ctx, &out[0], &in[0], &in[1]);
}

static lact_status add_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                           const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_add_backward(ctx, lact_optab_grad(d_in, in, 0), lact_optab_grad(d_in, in, 1),
                             &d_out[0]);
}

static lact_status mul_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                           const double *p) {
    return lact_mul_forward(ctx, &out[0], &in[0], &in[1]);
}

static lact_status mul_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                           const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_mul_backward(ctx, lact_optab_grad(d_in, in, 0), lact_optab_grad(d_in, in, 1),
                             &d_out[0], &in[0], &in[1]);
}

static bool broadcast_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    static const struct {
        optab_shape a, b;
    } cases[] = {
        {{2, {3, 5}}, {1, {5}}},     {{2, {17, 1}}, {2, {17, 1}}}, {{3, {2, 3, 64}}, {1, {64}}},
        {{2, {1, 129}}, {1, {129}}}, {{2, {4, 6}}, {2, {2, 6}}},   {{2, {3, 5}}, {1, {1}}},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    lact_rng rng = lact_rng_make(seed, 200 + (uint64_t)c);
    if (!lact_optab_rand(&in[0], &rng, cases[c].a.ndim, cases[c].a.d, -2.0f, 2.0f)) return false;
    if (!lact_optab_rand(&in[1], &rng, cases[c].b.ndim, cases[c].b.d, -2.0f, 2.0f)) {
        lact_optab_free(in, 1);
        return false;
    }
    return true;
}

const lact_op_def lact_op_row_add = {
    .name = "add",
    .summary = "out[i] = a[i] + b[i % numel(b)]",
    .inputs = {"a", "b"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x3,
    .plan = add_plan,
    .forward = add_fwd,
    .backward = add_bwd,
    .make_case = broadcast_case,
    .tol_f32 = 1e-6,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

const lact_op_def lact_op_row_mul = {
    .name = "mul",
    .summary = "out[i] = a[i] * b[i % numel(b)]",
    .inputs = {"a", "b"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x3,
    .plan = mul_plan,
    .forward = mul_fwd,
    .backward = mul_bwd,
    .make_case = broadcast_case,
    .tol_f32 = 1e-6,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- one-input elementwise ops: scale, silu ----------------------------------- */

static lact_status unary_plan(const char *op, const char *name, const lact_tensor *in,
                              lact_tensor *out) {
    LACT_TRY(lact_optab_need(op, name, &in[0], OPTAB_ACT, in[0].device));
    out[0] = lact_optab_out(in[0].device, in[0].dtype, in[0].ndim, in[0].shape);
    return LACT_OK;
}

static bool unary_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    static const optab_shape cases[] = {
        {2, {3, 5}},
        {1, {1}},
        {3, {2, 3, 64}},
        {2, {17, 129}},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    lact_rng rng = lact_rng_make(seed, 300 + (uint64_t)c);
    return lact_optab_rand(&in[0], &rng, cases[c].ndim, cases[c].d, -4.0f, 4.0f);
}

static lact_status scale_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    return unary_plan("scale", "a", in, out);
}

static lact_status scale_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                             const double *p) {
    return lact_scale_forward(ctx, &out[0], &in[0], (float)p[0]);
}

static lact_status scale_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                             const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_scale_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0], (float)p[0]);
}

static bool scale_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    p[0] = c % 2 ? -0.75 : 3.0;
    return unary_case(c, seed, in, p);
}

const lact_op_def lact_op_row_scale = {
    .name = "scale",
    .summary = "out = s * a",
    .inputs = {"a"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .params = {{"s", 1, "the factor"}},
    .plan = scale_plan,
    .forward = scale_fwd,
    .backward = scale_bwd,
    .make_case = scale_case,
    .tol_f32 = 1e-6,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

static lact_status silu_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    return unary_plan("silu", "x", in, out);
}

static lact_status silu_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                            const double *p) {
    return lact_silu_forward(ctx, &out[0], &in[0]);
}

static lact_status silu_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                            const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_silu_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0], &in[0]);
}

const lact_op_def lact_op_row_silu = {
    .name = "silu",
    .summary = "out = x * sigmoid(x)",
    .inputs = {"x"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .plan = silu_plan,
    .forward = silu_fwd,
    .backward = silu_bwd,
    .make_case = unary_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- swiglu ----------------------------------------------------------------- */

static lact_status swiglu_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "swiglu";
    LACT_TRY(lact_optab_need(op, "a", &in[0], OPTAB_ACT, in[0].device));
    LACT_TRY(lact_optab_need(op, "b", &in[1], OPTAB_ACT, in[0].device));
    LACT_TRY(lact_kcheck_same_dtype(op, "b", &in[1], "a", &in[0]));
    LACT_TRY(lact_kcheck_same_shape(op, "b", &in[1], "a", &in[0]));
    out[0] = lact_optab_out(in[0].device, in[0].dtype, in[0].ndim, in[0].shape);
    return LACT_OK;
}

static lact_status swiglu_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                              const double *p) {
    return lact_swiglu_forward(ctx, &out[0], &in[0], &in[1]);
}

static lact_status swiglu_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                              const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_swiglu_backward(ctx, lact_optab_grad(d_in, in, 0), lact_optab_grad(d_in, in, 1),
                                &d_out[0], &in[0], &in[1]);
}

static bool swiglu_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    if (!unary_case(c, seed, &in[0], p)) return false;
    lact_rng rng = lact_rng_make(seed, 350 + (uint64_t)c);
    if (!lact_optab_rand(&in[1], &rng, in[0].ndim, in[0].shape, -2.0f, 2.0f)) {
        lact_optab_free(in, 1);
        return false;
    }
    return true;
}

const lact_op_def lact_op_row_swiglu = {
    .name = "swiglu",
    .summary = "out = silu(a) * b",
    .inputs = {"a", "b"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x3,
    .plan = swiglu_plan,
    .forward = swiglu_fwd,
    .backward = swiglu_bwd,
    .make_case = swiglu_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- swiglu_packed ---------------------------------------------------------- */

static lact_status swiglu_packed_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "swiglu_packed";
    LACT_TRY(lact_optab_need(op, "ab", &in[0], OPTAB_ACT, in[0].device));
    int64_t shape[LACT_MAX_DIMS];
    int nd = in[0].ndim;
    memcpy(shape, in[0].shape, sizeof shape);
    if (nd < 1 || shape[nd - 1] % 2)
        return lact_fail(LACT_E_ARG, "%s: ab's last dim must be even (a then b)", op);
    shape[nd - 1] /= 2;
    out[0] = lact_optab_out(in[0].device, in[0].dtype, nd, shape);
    return LACT_OK;
}

static lact_status swiglu_packed_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                                     const double *p) {
    return lact_swiglu_packed_forward(ctx, &out[0], &in[0]);
}

static lact_status swiglu_packed_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                                     const lact_tensor *in, const lact_tensor *out,
                                     const double *p) {
    return lact_swiglu_packed_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0], &in[0]);
}

/* Odd halves take the element-wise path; the last is the small model's
 * hidden width (whole 16-byte words). */
static bool swiglu_packed_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    static const optab_shape cases[] = {
        {2, {3, 10}}, {1, {2}}, {3, {2, 3, 128}}, {2, {17, 258}}, {2, {5, 4128}},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    lact_rng rng = lact_rng_make(seed, 360 + (uint64_t)c);
    return lact_optab_rand(&in[0], &rng, cases[c].ndim, cases[c].d, -4.0f, 4.0f);
}

const lact_op_def lact_op_row_swiglu_packed = {
    .name = "swiglu_packed",
    .summary = "out = silu(a) * b with ab = [a | b] along the last dim",
    .inputs = {"ab"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .plan = swiglu_packed_plan,
    .forward = swiglu_packed_fwd,
    .backward = swiglu_packed_bwd,
    .make_case = swiglu_packed_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- cast --------------------------------------------------------------------- */

static lact_status cast_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "cast";
    LACT_TRY(lact_optab_need(op, "x", &in[0], LACT_DT_FLOATS, in[0].device));
    int code = (int)p[0];
    if ((double)code != p[0] || (code != LACT_F32 && code != LACT_BF16 && code != LACT_F16))
        return lact_fail(LACT_E_ARG, "%s: dtype = %g; expected %d (F32), %d (BF16) or %d (F16)", op,
                         p[0], LACT_F32, LACT_BF16, LACT_F16);
    out[0] = lact_optab_out(in[0].device, (lact_dtype)code, in[0].ndim, in[0].shape);
    return LACT_OK;
}

static lact_status cast_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                            const double *p) {
    return lact_cast_forward(ctx, &out[0], &in[0]);
}

static bool cast_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    static const int codes[] = {LACT_BF16, LACT_F16, LACT_F32};
    if (c < 0 || c >= 3) return false;
    p[0] = codes[c];
    return unary_case(c, seed, in, p);
}

const lact_op_def lact_op_row_cast = {
    .name = "cast",
    .summary = "out = x converted to another float dtype (round to nearest even)",
    .inputs = {"x"},
    .outputs = {"out"},
    .params = {{"dtype", LACT_BF16, "target dtype code: 0 F32, 1 BF16, 2 F16"}},
    .plan = cast_plan,
    .forward = cast_fwd,
    .make_case = cast_case,
    .tol_f32 = 1e-6,
    .tol_bf16 = 1e-6,
    .tol_grad = 0,
    .bf16 = true,
};
