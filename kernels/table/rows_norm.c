/* Table rows: normalisations, rotary embedding and softmax. */
#include "kernels/table/rows.h"

/* x [..., C] with one F32 statistic per row and optional F32 vectors [C]
 * at inputs 1.. n_vec. */
static lact_status rownorm_plan(const char *op, const lact_tensor *in, int n_vec,
                                const char *const *vec_names, lact_tensor *out, int n_stats) {
    const lact_tensor *x = &in[0];
    LACT_TRY(lact_optab_need(op, "x", x, OPTAB_ACT, x->device));
    LACT_TRY(lact_kcheck_ndim(op, "x", x, 1, LACT_MAX_DIMS));
    for (int i = 1; i <= n_vec; i++) {
        LACT_TRY(lact_optab_maybe(op, vec_names[i - 1], &in[i], OPTAB_F32, x->device));
        if (lact_optab_present(&in[i]))
            LACT_TRY(lact_kcheck_vector(op, vec_names[i - 1], &in[i], lact_tensor_cols(x),
                                        "last dim of x"));
    }
    out[0] = lact_optab_out(x->device, x->dtype, x->ndim, x->shape);
    int64_t rows = lact_tensor_rows(x);
    for (int s = 1; s <= n_stats; s++)
        out[s] = lact_optab_out(x->device, LACT_F32, 1, &rows);
    return LACT_OK;
}

/* Rows and widths for the norm cases: 1, 3, 17 rows; C 1, 5, 64, 129. */
static const optab_shape norm_shapes[] = {
    {2, {3, 5}}, {2, {1, 1}}, {2, {17, 64}}, {3, {2, 3, 129}}, {2, {3, 5}}, {2, {1, 64}},
};
#define N_NORM_CASES ((int)(sizeof norm_shapes / sizeof norm_shapes[0]))

/* x, plus the vectors at inputs 1..n_vec when with_vec says so. */
static bool rownorm_case(int c, uint64_t seed, lact_tensor *in, int n_vec, bool with_vec,
                         float x_offset) {
    if (c < 0 || c >= N_NORM_CASES) return false;
    lact_rng rng = lact_rng_make(seed, 400 + (uint64_t)c);
    const optab_shape *s = &norm_shapes[c];
    if (!lact_optab_rand(&in[0], &rng, s->ndim, s->d, x_offset - 2.0f, x_offset + 2.0f))
        return false;
    for (int i = 1; with_vec && i <= n_vec; i++) {
        int64_t ch = s->d[s->ndim - 1];
        if (!lact_optab_rand(&in[i], &rng, 1, &ch, 0.5f, 1.5f)) {
            lact_optab_free(in, i);
            return false;
        }
    }
    return true;
}

/* ---- rmsnorm ------------------------------------------------------------------- */

static const char *const rms_vecs[] = {"w"};

static lact_status rmsnorm_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    return rownorm_plan("rmsnorm", in, 1, rms_vecs, out, 1);
}

static lact_status rmsnorm_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                               const double *p) {
    return lact_rmsnorm_forward(ctx, &out[0], &out[1], &in[0], lact_optab_opt(&in[1]), (float)p[0]);
}

static lact_status rmsnorm_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                               const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_rmsnorm_backward(ctx, lact_optab_grad(d_in, in, 0), lact_optab_grad(d_in, in, 1),
                                 &d_out[0], &in[0], lact_optab_opt(&in[1]), &out[1]);
}

static bool rmsnorm_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    /* A single channel makes out ≈ sign(x): a larger eps keeps it smooth
     * enough for finite differences. */
    p[0] = c == 1 ? 0.5 : 1e-6;
    return rownorm_case(c, seed, in, 1, c != 3, 0.0f);
}

const lact_op_def lact_op_row_rmsnorm = {
    .name = "rmsnorm",
    .summary = "out = x / sqrt(mean(x^2) + eps) * w per row; rstd saved",
    .inputs = {"x", "?w"},
    .outputs = {"out", "rstd"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x3,
    .param_inputs = 0x2,
    .params = {{"eps", 1e-6, "added to mean(x^2)"}},
    .plan = rmsnorm_plan,
    .forward = rmsnorm_fwd,
    .backward = rmsnorm_bwd,
    .make_case = rmsnorm_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- layernorm ------------------------------------------------------------------ */

static const char *const ln_vecs[] = {"w", "b"};

static lact_status layernorm_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    return rownorm_plan("layernorm", in, 2, ln_vecs, out, 2);
}

static lact_status layernorm_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                                 const double *p) {
    return lact_layernorm_forward(ctx, &out[0], &out[1], &out[2], &in[0], lact_optab_opt(&in[1]),
                                  lact_optab_opt(&in[2]), (float)p[0]);
}

static lact_status layernorm_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                                 const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_layernorm_backward(ctx, lact_optab_grad(d_in, in, 0), lact_optab_grad(d_in, in, 1),
                                   lact_optab_grad(d_in, in, 2), &d_out[0], &in[0],
                                   lact_optab_opt(&in[1]), &out[1], &out[2]);
}

static bool layernorm_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    p[0] = 1e-5;
    /* An offset mean checks that the centring is differentiated. */
    return rownorm_case(c, seed, in, 2, c != 3, c == 2 ? 1.5f : 0.0f);
}

const lact_op_def lact_op_row_layernorm = {
    .name = "layernorm",
    .summary = "out = (x - mean) / sqrt(var + eps) * w + b per row; mean, rstd saved",
    .inputs = {"x", "?w", "?b"},
    .outputs = {"out", "mean", "rstd"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x7,
    .param_inputs = 0x6,
    .params = {{"eps", 1e-5, "added to the variance"}},
    .plan = layernorm_plan,
    .forward = layernorm_fwd,
    .backward = layernorm_bwd,
    .make_case = layernorm_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- l2norm -------------------------------------------------------------------- */

static lact_status l2norm_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    return rownorm_plan("l2norm", in, 0, NULL, out, 0);
}

static lact_status l2norm_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                              const double *p) {
    return lact_l2norm_forward(ctx, &out[0], &in[0], (float)p[0]);
}

static lact_status l2norm_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                              const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_l2norm_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0], &in[0], (float)p[0]);
}

static bool l2norm_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    p[0] = c == 1 ? 0.5 : 1e-5;
    return rownorm_case(c, seed, in, 0, false, 0.0f);
}

const lact_op_def lact_op_row_l2norm = {
    .name = "l2norm",
    .summary = "out = x / (||x|| + eps) per row",
    .inputs = {"x"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .params = {{"eps", 1e-5, "added to the norm"}},
    .plan = l2norm_plan,
    .forward = l2norm_fwd,
    .backward = l2norm_bwd,
    .make_case = l2norm_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- rope ---------------------------------------------------------------------- */

static lact_status rope_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "rope";
    const lact_tensor *x = &in[0];
    LACT_TRY(lact_optab_need(op, "x", x, OPTAB_ACT, x->device));
    LACT_TRY(lact_kcheck_ndim(op, "x", x, 3, 4));
    if (x->shape[x->ndim - 1] % 2 != 0)
        return lact_fail(LACT_E_ARG, "%s: the last dim of x is %lld; it must be even", op,
                         (long long)x->shape[x->ndim - 1]);
    if (!(p[1] > 0.0)) return lact_fail(LACT_E_ARG, "%s: theta = %g must be > 0", op, p[1]);
    out[0] = lact_optab_out(x->device, x->dtype, x->ndim, x->shape);
    return LACT_OK;
}

static lact_status rope_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                            const double *p) {
    return lact_rope_forward(ctx, &out[0], &in[0], (int64_t)p[0], (float)p[1]);
}

static lact_status rope_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                            const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_rope_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0], (int64_t)p[0],
                              (float)p[1]);
}

static bool rope_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    static const struct {
        optab_shape x;
        double pos0, theta;
    } cases[] = {
        {{4, {2, 3, 2, 8}}, 0, 10000},     {{3, {1, 5, 6}}, 7, 10000},
        {{4, {2, 4, 3, 2}}, 3, 100},       {{4, {1, 17, 1, 64}}, 1000, 10000},
        {{3, {3, 2, 130}}, 12345, 500000},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    p[0] = cases[c].pos0;
    p[1] = cases[c].theta;
    lact_rng rng = lact_rng_make(seed, 500 + (uint64_t)c);
    return lact_optab_rand(&in[0], &rng, cases[c].x.ndim, cases[c].x.d, -1.0f, 1.0f);
}

const lact_op_def lact_op_row_rope = {
    .name = "rope",
    .summary = "rotary embedding (rotate-half) of x [B, L, H, D] or [B, L, D]",
    .inputs = {"x"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .params = {{"pos0", 0, "position of the first token"}, {"theta", 10000, "frequency base"}},
    .plan = rope_plan,
    .forward = rope_fwd,
    .backward = rope_bwd,
    .make_case = rope_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- softmax ------------------------------------------------------------------- */

static lact_status softmax_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    return rownorm_plan("softmax", in, 0, NULL, out, 0);
}

static lact_status softmax_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                               const double *p) {
    return lact_softmax_forward(ctx, &out[0], &in[0]);
}

static lact_status softmax_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                               const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_softmax_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0], &out[0]);
}

static bool softmax_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    return rownorm_case(c, seed, in, 0, false, 0.0f);
}

const lact_op_def lact_op_row_softmax = {
    .name = "softmax",
    .summary = "softmax over the last dim",
    .inputs = {"x"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .plan = softmax_plan,
    .forward = softmax_fwd,
    .backward = softmax_bwd,
    .make_case = softmax_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};
