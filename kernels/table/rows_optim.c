/* Table rows: optimizer steps and Newton–Schulz. The steps update in place,
 * so the row copies the inputs into the outputs and steps the outputs. */
#include "kernels/table/rows.h"
#include "kernels/timer.h"

/* Every input is F32 with the shape of the first; outputs 0..n_out-1 take
 * that shape too. */
static lact_status same_f32_plan(const char *op, const lact_tensor *in, int n_in,
                                 const char *const *names, lact_tensor *out, int n_out,
                                 int ndim_min, int ndim_max) {
    const lact_tensor *x = &in[0];
    for (int i = 0; i < n_in; i++)
        LACT_TRY(lact_optab_need(op, names[i], &in[i], OPTAB_F32, x->device));
    LACT_TRY(lact_kcheck_ndim(op, names[0], x, ndim_min, ndim_max));
    for (int i = 1; i < n_in; i++)
        LACT_TRY(lact_kcheck_same_shape(op, names[i], &in[i], names[0], x));
    for (int i = 0; i < n_out; i++)
        out[i] = lact_optab_out(x->device, LACT_F32, x->ndim, x->shape);
    return LACT_OK;
}

/* On the context's stream, so that the step that follows sees the copies. */
static lact_status copy_inputs(lact_ctx *ctx, const char *op, const char *const *names,
                               lact_tensor *out, const lact_tensor *in, int n) {
    for (int i = 0; i < n; i++) {
        LACT_TRY(lact_kcheck_tensor(ctx, op, names[i], &in[i], OPTAB_F32));
        LACT_TRY(lact_kcheck_same_shape(op, "an output", &out[i], names[i], &in[i]));
        LACT_TRY(lact_device_copy(ctx, &out[i], &in[i]));
    }
    return LACT_OK;
}

/* n_in new random F32 tensors of one shape; input pos (if >= 0) is made
 * non-negative (a second moment). */
static bool state_case(lact_tensor *in, int n_in, uint64_t seed, uint64_t stream,
                       const optab_shape *s, int pos) {
    lact_rng rng = lact_rng_make(seed, stream);
    for (int i = 0; i < n_in; i++) {
        bool ok = i == pos ? lact_optab_rand(&in[i], &rng, s->ndim, s->d, 0.0f, 0.01f)
                           : lact_optab_randn(&in[i], &rng, s->ndim, s->d, 1.0f);
        if (!ok) {
            lact_optab_free(in, i);
            return false;
        }
    }
    return true;
}

/* ---- adamw ------------------------------------------------------------------------ */

static const char *const adamw_names[] = {"param", "m", "v", "grad"};
enum { AW_LR, AW_B1, AW_B2, AW_EPS, AW_WD, AW_STEP };

static lact_status adamw_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    if (p[AW_STEP] < 1)
        return lact_fail(LACT_E_ARG, "adamw: step = %g must be >= 1 (it is 1-based)", p[AW_STEP]);
    return same_f32_plan("adamw", in, 4, adamw_names, out, 3, 0, LACT_MAX_DIMS);
}

static lact_status adamw_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                             const double *p) {
    LACT_TRY(copy_inputs(ctx, "adamw", adamw_names, out, in, 3));
    lact_adamw_args a = {.lr = (float)p[AW_LR],
                         .beta1 = (float)p[AW_B1],
                         .beta2 = (float)p[AW_B2],
                         .eps = (float)p[AW_EPS],
                         .weight_decay = (float)p[AW_WD],
                         .step = (int64_t)p[AW_STEP]};
    return lact_adamw_step(ctx, &out[0], &out[1], &out[2], &in[3], &a);
}

static bool adamw_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    static const optab_shape cases[] = {{2, {3, 5}}, {1, {129}}, {2, {17, 64}}};
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    p[AW_STEP] = c == 2 ? 10 : 1 + c;
    return state_case(in, 4, seed, 900 + (uint64_t)c, &cases[c], 2);
}

const lact_op_def lact_op_row_adamw = {
    .name = "adamw",
    .summary = "one AdamW step (decoupled weight decay) on copies of param, m, v",
    .inputs = {"param", "m", "v", "grad"},
    .outputs = {"param_out", "m_out", "v_out"},
    .params = {{"lr", 1e-3, "learning rate"},
               {"beta1", 0.9, "first-moment decay"},
               {"beta2", 0.999, "second-moment decay"},
               {"eps", 1e-8, "added to sqrt(v)"},
               {"weight_decay", 0.01, "decoupled weight decay"},
               {"step", 1, "1-based step for bias correction"}},
    .plan = adamw_plan,
    .forward = adamw_fwd,
    .make_case = adamw_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 0,
    .bf16 = false,
};

/* ---- muon ---------------------------------------------------------------------------- */

static const char *const muon_names[] = {"param", "m", "grad"};
enum { MU_LR, MU_MOMENTUM, MU_WD, MU_NESTEROV, MU_STEPS };

static lact_status muon_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    if (p[MU_STEPS] < 0 || p[MU_STEPS] > 100)
        return lact_fail(LACT_E_ARG, "muon: ns_steps = %g must lie in [0, 100]", p[MU_STEPS]);
    return same_f32_plan("muon", in, 3, muon_names, out, 2, 2, 2);
}

static lact_status muon_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                            const double *p) {
    LACT_TRY(copy_inputs(ctx, "muon", muon_names, out, in, 2));
    lact_muon_args a = {.lr = (float)p[MU_LR],
                        .momentum = (float)p[MU_MOMENTUM],
                        .weight_decay = (float)p[MU_WD],
                        .nesterov = p[MU_NESTEROV] != 0.0,
                        .ns_steps = (int)p[MU_STEPS]};
    return lact_muon_step(ctx, &out[0], &out[1], &in[2], &a);
}

static const optab_shape matrix_cases[] = {{2, {8, 5}}, {2, {5, 8}}, {2, {17, 17}}, {2, {1, 7}}};
#define N_MATRIX_CASES ((int)(sizeof matrix_cases / sizeof matrix_cases[0]))

static bool muon_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    if (c < 0 || c >= N_MATRIX_CASES) return false;
    p[MU_NESTEROV] = c % 2 == 0;
    p[MU_WD] = c == 1 ? 0.1 : 0.0;
    return state_case(in, 3, seed, 1000 + (uint64_t)c, &matrix_cases[c], -1);
}

const lact_op_def lact_op_row_muon = {
    .name = "muon",
    .summary = "one Muon step (momentum, Newton-Schulz orthogonalised) on copies of param, m",
    .inputs = {"param", "m", "grad"},
    .outputs = {"param_out", "m_out"},
    .params = {{"lr", 0.02, "learning rate"},
               {"momentum", 0.95, "momentum"},
               {"weight_decay", 0, "decoupled weight decay"},
               {"nesterov", 1, "1: Nesterov momentum"},
               {"ns_steps", 5, "Newton-Schulz iterations"}},
    .plan = muon_plan,
    .forward = muon_fwd,
    .make_case = muon_case,
    .tol_f32 = 1e-4,
    .tol_bf16 = 0,
    .bf16 = false,
};

/* ---- newton_schulz ------------------------------------------------------------------- */

static const char *const ns_names[] = {"g"};

static lact_status ns_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    if (p[0] < 0 || p[0] > 100)
        return lact_fail(LACT_E_ARG, "newton_schulz: steps = %g must lie in [0, 100]", p[0]);
    return same_f32_plan("newton_schulz", in, 1, ns_names, out, 1, 2, 2);
}

static lact_status ns_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in, const double *p) {
    return lact_newton_schulz(ctx, &out[0], &in[0], (int)p[0]);
}

static bool ns_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    if (c < 0 || c >= N_MATRIX_CASES) return false;
    return state_case(in, 1, seed, 1100 + (uint64_t)c, &matrix_cases[c], -1);
}

const lact_op_def lact_op_row_newton_schulz = {
    .name = "newton_schulz",
    .summary = "out = NS(g): quintic Newton-Schulz orthogonalisation of a matrix",
    .inputs = {"g"},
    .outputs = {"out"},
    .params = {{"steps", 5, "iterations"}},
    .plan = ns_plan,
    .forward = ns_fwd,
    .make_case = ns_case,
    .tol_f32 = 1e-4,
    .tol_bf16 = 0,
    .bf16 = false,
};
