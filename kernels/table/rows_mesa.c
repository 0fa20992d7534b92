/* Table row: the Mesa op (kernels/mesa.h). */
#include <math.h>

#include "core/base/log.h"
#include "kernels/mesa.h"
#include "kernels/table/rows.h"

static lact_mesa_args mesa_row_args(const double *p) {
    return (lact_mesa_args){(int64_t)p[0], (int)p[1]};
}

static lact_status mesa_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "mesa";
    static const char *const names[6] = {"q", "k", "v", "g", "beta", "lambda"};
    lact_device dev = in[0].device;
    for (int i = 0; i < 6; i++)
        LACT_TRY(lact_optab_need(op, names[i], &in[i], i == 5 ? OPTAB_F32 : OPTAB_ACT, dev));
    LACT_TRY(lact_mesa_check_shapes(op, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5]));
    if (!(p[0] >= 1)) return lact_fail(LACT_E_ARG, "%s: chunk = %g must be >= 1", op, p[0]);
    if (!(p[1] >= 1)) return lact_fail(LACT_E_ARG, "%s: cg_steps = %g must be >= 1", op, p[1]);
    if (p[2] != 0 && p[2] != 1)
        return lact_fail(LACT_E_ARG, "%s: residual = %g must be 0 or 1", op, p[2]);
    out[0] = lact_optab_out(dev, in[0].dtype, 4, in[0].shape);
    return LACT_OK;
}

static lact_status mesa_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                            const double *p) {
    lact_mesa_args a = mesa_row_args(p);
    float res = 0.0f;
    LACT_TRY(lact_mesa_forward(ctx, &out[0], NULL, NULL, p[2] == 1 ? &res : NULL, &in[0], &in[1],
                               &in[2], &in[3], &in[4], &in[5], &a));
    /* The debug report: how far the fixed number of CG steps got. */
    if (p[2] == 1)
        lact_log(LACT_LOG_WARN,
                 "mesa: CG residual %.3g after %d steps (max over tokens of "
                 "|q - (H + diag(lambda)) x| / |q|)",
                 (double)res, a.cg_steps);
    return LACT_OK;
}

static lact_status mesa_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                            const lact_tensor *in, const lact_tensor *out, const double *p) {
    lact_mesa_args a = mesa_row_args(p);
    return lact_mesa_backward(ctx, lact_optab_grad(d_in, in, 0), lact_optab_grad(d_in, in, 1),
                              lact_optab_grad(d_in, in, 2), lact_optab_grad(d_in, in, 3),
                              lact_optab_grad(d_in, in, 4), lact_optab_grad(d_in, in, 5), &d_out[0],
                              &in[0], &in[1], &in[2], &in[3], &in[4], &in[5], &a);
}

/* Rows of t [..., d] scaled to unit norm (what the layer's l2norm does). */
static void unit_rows(lact_tensor *t) {
    float *p = t->data;
    int64_t d = t->shape[t->ndim - 1];
    for (int64_t r = 0; r < lact_tensor_numel(t) / d; r++) {
        double n2 = 0;
        for (int64_t c = 0; c < d; c++)
            n2 += (double)p[r * d + c] * p[r * d + c];
        float inv = (float)(1.0 / sqrt(n2 > 0 ? n2 : 1.0));
        for (int64_t c = 0; c < d; c++)
            p[r * d + c] *= inv;
    }
}

/* Small heads, lengths that are not multiples of the chunk (and one chunk
 * longer than the sequence). On CUDA in BF16, d 8 and 16 take the
 * tensor-core kernels and d 4, 5, 12 the generic ones. g = −softplus(n) − 0.01 and beta =
 * sigmoid(n) clamped to [0.01, 0.99] keep the finite-difference steps of
 * the gradcheck inside the valid ranges; lambda in [0.5, 1.5) keeps A
 * well conditioned, so 30 CG steps reach float precision (d <= 16). */
static bool mesa_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    static const struct {
        int64_t b, h, len, d, chunk;
    } cases[] = {
        {1, 1, 9, 4, 4}, {2, 2, 21, 8, 8}, {1, 2, 40, 16, 16}, {2, 1, 13, 5, 6}, {1, 1, 17, 12, 64},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    p[0] = (double)cases[c].chunk;
    p[1] = 30;
    p[2] = 0;
    lact_rng rng = lact_rng_make(seed, 1300 + (uint64_t)c);
    int64_t qs[4] = {cases[c].b, cases[c].h, cases[c].len, cases[c].d};
    int64_t hd[2] = {cases[c].h, cases[c].d};
    for (int i = 0; i < 5; i++)
        if (!lact_optab_randn(&in[i], &rng, i < 3 ? 4 : 3, qs, 1.0f)) {
            lact_optab_free(in, i);
            return false;
        }
    if (!lact_optab_rand(&in[5], &rng, 2, hd, 0.5f, 1.5f)) {
        lact_optab_free(in, 5);
        return false;
    }
    unit_rows(&in[0]);
    unit_rows(&in[1]);
    float *g = in[3].data, *beta = in[4].data;
    for (int64_t i = 0; i < lact_tensor_numel(&in[3]); i++) {
        g[i] = -(log1pf(expf(g[i])) + 0.01f);
        float s = 1.0f / (1.0f + expf(-beta[i]));
        beta[i] = fminf(fmaxf(s, 0.01f), 0.99f);
    }
    return true;
}

const lact_op_def lact_op_row_mesa = {
    .name = "mesa",
    .summary = "Mesa layer core: o_t = G_t (H_t + diag(lambda))^-1 q_t, chunkwise CG",
    .inputs = {"q", "k", "v", "g", "beta", "lambda"},
    .outputs = {"o"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x3f,
    .param_inputs = 0x20,
    .params = {{"chunk", LACT_MESA_CHUNK, "tokens per chunk"},
               {"cg_steps", LACT_MESA_CG_STEPS, "conjugate-gradient steps per solve"},
               {"residual", 0, "1: report the CG residual reached (stderr)"}},
    .plan = mesa_plan,
    .forward = mesa_fwd,
    .backward = mesa_bwd,
    .make_case = mesa_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};
