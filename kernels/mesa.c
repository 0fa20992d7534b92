/* lact_mesa_*: argument and value checks, then the CPU reference or the
 * CUDA version (kernels/cuda/mesa_cuda.h). On the CPU every tensor is F32;
 * on CUDA q, k, v, g, beta, o and their gradients share one activation
 * dtype (F32 or BF16) while lambda, its gradient and the states stay F32. */
#include "kernels/mesa.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#include "kernels/cpu/mesa_ref.h"
#include "kernels/kcheck.h"
#if LACT_WITH_CUDA
#include "kernels/cuda/mesa_cuda.h"
#endif

#define F32_ONLY LACT_DT(LACT_F32)
#define MESA_MAX_CG_STEPS 100000

lact_mesa_args lact_mesa_default_args(void) {
    return (lact_mesa_args){LACT_MESA_CHUNK, LACT_MESA_CG_STEPS};
}

/* t is non-NULL with exactly the shape want[0..ndim). */
static lact_status check_dims(const char *op, const char *name, const lact_tensor *t, int ndim,
                              const int64_t *want, const char *layout) {
    if (!t) return lact_fail(LACT_E_ARG, "%s: %s is NULL", op, name);
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == want[i];
    if (ok) return LACT_OK;
    char got[96], wanted[96];
    lact_tensor shape_only = {0};
    shape_only.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        shape_only.shape[i] = want[i];
    return lact_fail(LACT_E_ARG, "%s: %s has shape %s, expected %s %s", op, name,
                     lact_kcheck_shape_str(t, got, sizeof got),
                     lact_kcheck_shape_str(&shape_only, wanted, sizeof wanted), layout);
}

lact_status lact_mesa_check_shapes(const char *op, const lact_tensor *q, const lact_tensor *k,
                                   const lact_tensor *v, const lact_tensor *g,
                                   const lact_tensor *beta, const lact_tensor *lambda) {
    if (!q) return lact_fail(LACT_E_ARG, "%s: q is NULL", op);
    if (q->ndim != 4 || q->shape[0] < 1 || q->shape[1] < 1 || q->shape[2] < 1 || q->shape[3] < 1) {
        char buf[96];
        return lact_fail(LACT_E_ARG, "%s: q has shape %s, expected [B, H, L, d] (all >= 1)", op,
                         lact_kcheck_shape_str(q, buf, sizeof buf));
    }
    const int64_t *s = q->shape;
    int64_t hd[2] = {s[1], s[3]};
    LACT_TRY(check_dims(op, "k", k, 4, s, "[B, H, L, d] (the shape of q)"));
    LACT_TRY(check_dims(op, "v", v, 4, s, "[B, H, L, d] (the shape of q)"));
    LACT_TRY(check_dims(op, "g", g, 3, s, "[B, H, L]"));
    LACT_TRY(check_dims(op, "beta", beta, 3, s, "[B, H, L]"));
    LACT_TRY(check_dims(op, "lambda", lambda, 2, hd, "[H, d]"));
    return LACT_OK;
}

static lact_status check_args(const char *op, const lact_mesa_args *args) {
    if (args->chunk < 1)
        return lact_fail(LACT_E_ARG, "%s: chunk = %lld must be >= 1", op, (long long)args->chunk);
    if (args->cg_steps < 1 || args->cg_steps > MESA_MAX_CG_STEPS)
        return lact_fail(LACT_E_ARG, "%s: cg_steps = %d must be in [1, %d]", op, args->cg_steps,
                         MESA_MAX_CG_STEPS);
    return LACT_OK;
}

typedef enum value_rule { LOG_DECAY, GATE, POSITIVE } value_rule;

static bool value_ok(float x, value_rule rule) {
    return rule == LOG_DECAY ? (isfinite(x) && x <= 0.0f)
           : rule == GATE    ? (x >= 0.0f && x <= 1.0f)
                             : (isfinite(x) && x > 0.0f);
}

static lact_status bad_value(const char *op, const char *name, int64_t i, float x,
                             value_rule rule) {
    const char *why = rule == LOG_DECAY ? "must be finite and <= 0 (a log decay)"
                      : rule == GATE    ? "must be in [0, 1] (an input gate)"
                                        : "must be finite and > 0 (a regulariser)";
    return lact_fail(LACT_E_ARG, "%s: %s[%lld] = %g %s", op, name, (long long)i, (double)x, why);
}

/* Every value of t (F32, host) obeys the rule: g finite and <= 0, beta in
 * [0, 1], lambda finite and > 0. The first offender is named. */
static lact_status check_values(const char *op, const char *name, const lact_tensor *t,
                                value_rule rule) {
    const float *p = t->data;
    for (int64_t i = 0; i < lact_tensor_numel(t); i++)
        if (!value_ok(p[i], rule)) return bad_value(op, name, i, p[i], rule);
    return LACT_OK;
}

#if LACT_WITH_CUDA
static lact_mesa_cuda_in make_cuda_in(const lact_tensor *q, const lact_tensor *k,
                                      const lact_tensor *v, const lact_tensor *g,
                                      const lact_tensor *beta, const lact_tensor *lambda, int64_t b,
                                      int64_t h, int64_t len, int64_t d, const lact_mesa_args *a) {
    lact_mesa_cuda_in in = {q->dtype,   b,           h,           len,
                            d,          a->chunk,    a->cg_steps, LACT_MESA_IMPL_AUTO,
                            q->data,    k->data,     v->data,     g->data,
                            beta->data, lambda->data};
    return in;
}

/* The same value checks on device data (one small kernel and a wait). */
static lact_status check_values_cuda(lact_ctx *ctx, const char *op, const lact_mesa_cuda_in *in) {
    int64_t first[3];
    float value[3];
    LACT_TRY(lact_cuda_mesa_find_bad(ctx, in, first, value));
    static const char *const names[3] = {"g", "beta", "lambda"};
    static const value_rule rules[3] = {LOG_DECAY, GATE, POSITIVE};
    for (int i = 0; i < 3; i++)
        if (first[i] >= 0) return bad_value(op, names[i], first[i], value[i], rules[i]);
    return LACT_OK;
}
#endif

/* Context, devices, dtypes, shapes and args of the six inputs (values:
 * check_all_values). q fixes the activation dtype. */
static lact_status check_inputs(lact_ctx *ctx, const char *op, const lact_tensor *q,
                                const lact_tensor *k, const lact_tensor *v, const lact_tensor *g,
                                const lact_tensor *beta, const lact_tensor *lambda,
                                const lact_mesa_args *args) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "q", q, lact_kcheck_act_dtypes(ctx)));
    const char *names[4] = {"k", "v", "g", "beta"};
    const lact_tensor *ts[4] = {k, v, g, beta};
    for (int i = 0; i < 4; i++) {
        LACT_TRY(lact_kcheck_tensor(ctx, op, names[i], ts[i], lact_kcheck_act_dtypes(ctx)));
        LACT_TRY(lact_kcheck_same_dtype(op, names[i], ts[i], "q", q));
    }
    LACT_TRY(lact_kcheck_tensor(ctx, op, "lambda", lambda, F32_ONLY));
    return check_args(op, args);
}

/* g, beta, lambda values, on the host or on the device. */
static lact_status check_all_values(lact_ctx *ctx, const char *op, const lact_tensor *g,
                                    const lact_tensor *beta, const lact_tensor *lambda,
                                    const void *cuda_in) {
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA) return check_values_cuda(ctx, op, cuda_in);
#else
    (void)ctx;
    (void)cuda_in;
#endif
    LACT_TRY(check_values(op, "g", g, LOG_DECAY));
    LACT_TRY(check_values(op, "beta", beta, GATE));
    return check_values(op, "lambda", lambda, POSITIVE);
}

/* An optional output or gradient: absent, or of dtype dt and the given
 * shape. */
static lact_status check_slot(lact_ctx *ctx, const char *op, const char *name, const lact_tensor *t,
                              lact_dtype dt, int ndim, const int64_t *want, const char *layout) {
    if (!t) return LACT_OK;
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, t, LACT_DT(dt)));
    return check_dims(op, name, t, ndim, want, layout);
}

static lact_mesa_in_f32 make_in(const lact_tensor *q, const lact_tensor *k, const lact_tensor *v,
                                const lact_tensor *g, const lact_tensor *beta,
                                const lact_tensor *lambda) {
    return (lact_mesa_in_f32){q->data, k->data, v->data, g->data, beta->data, lambda->data};
}

static void *data_or_null(const lact_tensor *t) {
    return t ? t->data : NULL;
}

/* The forward, with the solutions written to x when it is given. */
static lact_status forward(lact_ctx *ctx, lact_tensor *o, lact_tensor *x, lact_tensor *h_last,
                           lact_tensor *g_last, float *residual, const lact_tensor *q,
                           const lact_tensor *k, const lact_tensor *v, const lact_tensor *g,
                           const lact_tensor *beta, const lact_tensor *lambda,
                           const lact_mesa_args *args) {
    const char *op = "mesa";
    lact_mesa_args a = args ? *args : lact_mesa_default_args();
    LACT_TRY(lact_mesa_check_shapes(op, q, k, v, g, beta, lambda));
    LACT_TRY(check_inputs(ctx, op, q, k, v, g, beta, lambda, &a));
    const int64_t *s = q->shape;
    int64_t state[4] = {s[0], s[1], s[3], s[3]};
    const char *qlay = "[B, H, L, d] (the shape of q)";
    if (!o) return lact_fail(LACT_E_ARG, "%s: o is NULL", op);
    LACT_TRY(check_slot(ctx, op, "o", o, q->dtype, 4, s, qlay));
    LACT_TRY(check_slot(ctx, op, "x", x, q->dtype, 4, s, qlay));
    LACT_TRY(check_slot(ctx, op, "h_last", h_last, LACT_F32, 4, state, "[B, H, d, d]"));
    LACT_TRY(check_slot(ctx, op, "g_last", g_last, LACT_F32, 4, state, "[B, H, d, d]"));
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA) {
        lact_mesa_cuda_in in = make_cuda_in(q, k, v, g, beta, lambda, s[0], s[1], s[2], s[3], &a);
        LACT_TRY(check_all_values(ctx, op, g, beta, lambda, &in));
        return lact_cuda_mesa_forward(ctx, o->data, data_or_null(x), data_or_null(h_last),
                                      data_or_null(g_last), residual, &in);
    }
#endif
    LACT_TRY(check_all_values(ctx, op, g, beta, lambda, NULL));
    lact_mesa_dims dims = {s[0], s[1], s[2], s[3], a.chunk, a.cg_steps};
    lact_mesa_in_f32 in = make_in(q, k, v, g, beta, lambda);
    double worst = 0;
    LACT_TRY(lact_cpu_mesa_forward_x_f32(o->data, data_or_null(x), data_or_null(h_last),
                                         data_or_null(g_last), residual ? &worst : NULL, &in,
                                         &dims));
    if (residual) *residual = (float)worst;
    return LACT_OK;
}

lact_status lact_mesa_forward(lact_ctx *ctx, lact_tensor *o, lact_tensor *h_last,
                              lact_tensor *g_last, float *residual, const lact_tensor *q,
                              const lact_tensor *k, const lact_tensor *v, const lact_tensor *g,
                              const lact_tensor *beta, const lact_tensor *lambda,
                              const lact_mesa_args *args) {
    return forward(ctx, o, NULL, h_last, g_last, residual, q, k, v, g, beta, lambda, args);
}

lact_status lact_mesa_forward_x(lact_ctx *ctx, lact_tensor *o, lact_tensor *x, lact_tensor *h_last,
                                lact_tensor *g_last, float *residual, const lact_tensor *q,
                                const lact_tensor *k, const lact_tensor *v, const lact_tensor *g,
                                const lact_tensor *beta, const lact_tensor *lambda,
                                const lact_mesa_args *args) {
    if (!x) return lact_fail(LACT_E_ARG, "mesa: x is NULL");
    return forward(ctx, o, x, h_last, g_last, residual, q, k, v, g, beta, lambda, args);
}

/* The backward, from the saved solutions x when they are given. */
static lact_status backward(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k, lact_tensor *d_v,
                            lact_tensor *d_g, lact_tensor *d_beta, lact_tensor *d_lambda,
                            const lact_tensor *d_o, const lact_tensor *x, const lact_tensor *q,
                            const lact_tensor *k, const lact_tensor *v, const lact_tensor *g,
                            const lact_tensor *beta, const lact_tensor *lambda,
                            const lact_mesa_args *args) {
    const char *op = "mesa backward";
    lact_mesa_args a = args ? *args : lact_mesa_default_args();
    LACT_TRY(lact_mesa_check_shapes(op, q, k, v, g, beta, lambda));
    LACT_TRY(check_inputs(ctx, op, q, k, v, g, beta, lambda, &a));
    const int64_t *s = q->shape;
    const char *qlay = "[B, H, L, d] (the shape of q)";
    lact_dtype act = q->dtype;
    if (!d_o) return lact_fail(LACT_E_ARG, "%s: d_o is NULL", op);
    LACT_TRY(check_slot(ctx, op, "d_o", d_o, act, 4, s, qlay));
    LACT_TRY(check_slot(ctx, op, "x", x, act, 4, s, qlay));
    LACT_TRY(check_slot(ctx, op, "d_q", d_q, act, 4, s, qlay));
    LACT_TRY(check_slot(ctx, op, "d_k", d_k, act, 4, s, qlay));
    LACT_TRY(check_slot(ctx, op, "d_v", d_v, act, 4, s, qlay));
    LACT_TRY(check_slot(ctx, op, "d_g", d_g, act, 3, s, "[B, H, L]"));
    LACT_TRY(check_slot(ctx, op, "d_beta", d_beta, act, 3, s, "[B, H, L]"));
    LACT_TRY(check_slot(ctx, op, "d_lambda", d_lambda, LACT_F32, 2, lambda->shape, "[H, d]"));
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA) {
        lact_mesa_cuda_in in = make_cuda_in(q, k, v, g, beta, lambda, s[0], s[1], s[2], s[3], &a);
        LACT_TRY(check_all_values(ctx, op, g, beta, lambda, &in));
        lact_mesa_cuda_grad grad = {data_or_null(d_q),    data_or_null(d_k),
                                    data_or_null(d_v),    data_or_null(d_g),
                                    data_or_null(d_beta), data_or_null(d_lambda)};
        return lact_cuda_mesa_backward(ctx, &grad, d_o->data, data_or_null(x), &in);
    }
#endif
    LACT_TRY(check_all_values(ctx, op, g, beta, lambda, NULL));
    lact_mesa_dims dims = {s[0], s[1], s[2], s[3], a.chunk, a.cg_steps};
    lact_mesa_in_f32 in = make_in(q, k, v, g, beta, lambda);
    lact_mesa_grad_f32 grad = {data_or_null(d_q), data_or_null(d_k),    data_or_null(d_v),
                               data_or_null(d_g), data_or_null(d_beta), data_or_null(d_lambda)};
    return lact_cpu_mesa_backward_f32(&grad, d_o->data, &in, &dims);
}

lact_status lact_mesa_backward(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k, lact_tensor *d_v,
                               lact_tensor *d_g, lact_tensor *d_beta, lact_tensor *d_lambda,
                               const lact_tensor *d_o, const lact_tensor *q, const lact_tensor *k,
                               const lact_tensor *v, const lact_tensor *g, const lact_tensor *beta,
                               const lact_tensor *lambda, const lact_mesa_args *args) {
    return backward(ctx, d_q, d_k, d_v, d_g, d_beta, d_lambda, d_o, NULL, q, k, v, g, beta, lambda,
                    args);
}

lact_status lact_mesa_backward_x(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k,
                                 lact_tensor *d_v, lact_tensor *d_g, lact_tensor *d_beta,
                                 lact_tensor *d_lambda, const lact_tensor *d_o,
                                 const lact_tensor *x, const lact_tensor *q, const lact_tensor *k,
                                 const lact_tensor *v, const lact_tensor *g,
                                 const lact_tensor *beta, const lact_tensor *lambda,
                                 const lact_mesa_args *args) {
    if (!x) return lact_fail(LACT_E_ARG, "mesa backward: x is NULL");
    return backward(ctx, d_q, d_k, d_v, d_g, d_beta, d_lambda, d_o, x, q, k, v, g, beta, lambda,
                    args);
}

lact_status lact_mesa_decode(lact_ctx *ctx, lact_tensor *o, lact_tensor *h_state,
                             lact_tensor *g_state, const lact_tensor *q, const lact_tensor *k,
                             const lact_tensor *v, const lact_tensor *g, const lact_tensor *beta,
                             const lact_tensor *lambda, const lact_mesa_args *args) {
    const char *op = "mesa decode";
    lact_mesa_args a = args ? *args : lact_mesa_default_args();
    if (!q) return lact_fail(LACT_E_ARG, "%s: q is NULL", op);
    if (q->ndim != 3 || q->shape[0] < 1 || q->shape[1] < 1 || q->shape[2] < 1) {
        char buf[96];
        return lact_fail(LACT_E_ARG, "%s: q has shape %s, expected [B, H, d] (all >= 1)", op,
                         lact_kcheck_shape_str(q, buf, sizeof buf));
    }
    const int64_t *s = q->shape;
    int64_t hd[2] = {s[1], s[2]}, state[4] = {s[0], s[1], s[2], s[2]};
    LACT_TRY(check_dims(op, "k", k, 3, s, "[B, H, d] (the shape of q)"));
    LACT_TRY(check_dims(op, "v", v, 3, s, "[B, H, d] (the shape of q)"));
    LACT_TRY(check_dims(op, "g", g, 2, s, "[B, H]"));
    LACT_TRY(check_dims(op, "beta", beta, 2, s, "[B, H]"));
    LACT_TRY(check_dims(op, "lambda", lambda, 2, hd, "[H, d]"));
    LACT_TRY(check_inputs(ctx, op, q, k, v, g, beta, lambda, &a));
    if (!o || !h_state || !g_state)
        return lact_fail(LACT_E_ARG, "%s: o, h_state and g_state are required", op);
    LACT_TRY(check_slot(ctx, op, "o", o, q->dtype, 3, s, "[B, H, d] (the shape of q)"));
    LACT_TRY(check_slot(ctx, op, "h_state", h_state, LACT_F32, 4, state, "[B, H, d, d]"));
    LACT_TRY(check_slot(ctx, op, "g_state", g_state, LACT_F32, 4, state, "[B, H, d, d]"));
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA) {
        lact_mesa_cuda_in in = make_cuda_in(q, k, v, g, beta, lambda, s[0], s[1], 1, s[2], &a);
        in.chunk = 1;
        LACT_TRY(check_all_values(ctx, op, g, beta, lambda, &in));
        return lact_cuda_mesa_decode(ctx, o->data, h_state->data, g_state->data, &in);
    }
#endif
    LACT_TRY(check_all_values(ctx, op, g, beta, lambda, NULL));
    lact_mesa_dims dims = {s[0], s[1], 1, s[2], 1, a.cg_steps};
    lact_mesa_in_f32 in = make_in(q, k, v, g, beta, lambda);
    return lact_cpu_mesa_decode_f32(o->data, h_state->data, g_state->data, &in, &dims);
}
