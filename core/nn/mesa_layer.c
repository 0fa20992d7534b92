/* The Mesa layer: configuration, parameters, the input and output stages
 * and the forward pass. */
#include "mesa_layer.h"

#include <math.h>
#include <string.h>

#include "core/nn/linear.h"
#include "core/nn/nn_ops.h"
#include "kernels/kernels.h"
#include "mesa_layer_internal.h"

lact_mesa_layer_cfg lact_mesa_layer_defaults(int64_t dim, int64_t heads) {
    lact_mesa_layer_cfg c;
    memset(&c, 0, sizeof c);
    c.dim = dim;
    c.heads = heads;
    c.head_dim = heads > 0 ? dim / heads : 0;
    c.op = lact_mesa_default_args();
    c.lambda_init = 1.0f;
    c.lambda_min = 0.25f;
    c.decay_init = 0.95f;
    c.init_std = 0.02f;
    c.norm_eps = 1e-6f;
    return c;
}

static lact_status check_cfg(const lact_mesa_layer_cfg *c, const char *prefix) {
    if (c->dim < 1 || c->heads < 1 || c->head_dim < 1)
        return lact_fail(LACT_E_ARG, "%s: dim %lld, heads %lld and head_dim %lld must be positive",
                         prefix, (long long)c->dim, (long long)c->heads, (long long)c->head_dim);
    if (c->op.chunk < 1 || c->op.cg_steps < 1)
        return lact_fail(LACT_E_ARG, "%s: chunk %lld and cg_steps %d must be positive", prefix,
                         (long long)c->op.chunk, c->op.cg_steps);
    if (!(c->lambda_min >= 0.0f) || !(c->lambda_init > c->lambda_min) || !isfinite(c->lambda_init))
        return lact_fail(LACT_E_ARG,
                         "%s: lambda_init %g must be finite and above lambda_min %g ≥ 0", prefix,
                         (double)c->lambda_init, (double)c->lambda_min);
    if (!(c->decay_init > 0.0f && c->decay_init < 1.0f))
        return lact_fail(LACT_E_ARG, "%s: decay_init %g must be in (0, 1)", prefix,
                         (double)c->decay_init);
    if (!(c->init_std >= 0.0f) || !(c->norm_eps > 0.0f))
        return lact_fail(LACT_E_ARG, "%s: init_std must be ≥ 0 and norm_eps > 0", prefix);
    return LACT_OK;
}

#define DECL(name, init, id, ...) LACT_PARAMS_DECL(p, prefix, name, init, id, __VA_ARGS__)

lact_status lact_mesa_layer_declare(lact_mesa_layer *l, lact_params *p, const char *prefix,
                                    const lact_mesa_layer_cfg *c) {
    memset(l, 0, sizeof *l);
    LACT_TRY(check_cfg(c, prefix));
    l->cfg = *c;
    l->params = p;
    int64_t D = c->dim, H = c->heads, Hd = c->heads * c->head_dim;
    lact_init proj = lact_init_normal(c->init_std);
    /* −softplus(b_decay) = log(decay_init) and softplus(lambda) + lambda_min
     * = lambda_init for a zero input. */
    float b_decay = lact_nn_inv_softplus(-logf(c->decay_init));
    float lambda = lact_nn_inv_softplus(c->lambda_init - c->lambda_min);
    DECL("wq", proj, &l->wq, Hd, D);
    DECL("wk", proj, &l->wk, Hd, D);
    DECL("wv", proj, &l->wv, Hd, D);
    DECL("w_decay", proj, &l->w_decay, H, D);
    DECL("b_decay", lact_init_constant(b_decay), &l->b_decay, H);
    DECL("w_beta", proj, &l->w_beta, H, D);
    DECL("b_beta", lact_init_zeros(), &l->b_beta, H);
    DECL("lambda", lact_init_constant(lambda), &l->lambda, Hd);
    DECL("o_norm", lact_init_ones(), &l->o_norm, c->head_dim);
    DECL("w_gate", proj, &l->w_gate, Hd, D);
    DECL("wo", proj, &l->wo, D, Hd);
    return LACT_OK;
}

lact_status lact_mesa_layer_check_io(const lact_mesa_layer *l, const lact_arena *ar,
                                     const lact_ctx *ctx, const char *what, const lact_tensor *x,
                                     const lact_tensor *y) {
    int64_t D = l->cfg.dim;
    if (x->ndim != 3 || x->shape[2] != D || !lact_tensor_same_shape(x, y)) {
        char bx[96], by[96];
        return lact_fail(LACT_E_ARG, "%s: x %s and y %s must both be [B, L, %lld]", what,
                         lact_tensor_describe(x, bx, sizeof bx),
                         lact_tensor_describe(y, by, sizeof by), (long long)D);
    }
    if (ar->device != ctx->device || !l->params->allocated)
        return lact_fail(LACT_E_ARG, "%s: arena on %s, context on %s, parameters %s", what,
                         lact_device_name(ar->device), lact_device_name(ctx->device),
                         l->params->allocated ? "allocated" : "not allocated");
    if (x->dtype != y->dtype)
        return lact_fail(LACT_E_ARG, "%s: x is %s, y %s (one activation dtype)", what,
                         lact_dtype_name(x->dtype), lact_dtype_name(y->dtype));
    return lact_nn_check_act(l->params, x, what);
}

/* λ = softplus(lambda) + lambda_min into out [H, d]. */
static lact_status lambda_forward(lact_ctx *ctx, lact_arena *ar, const lact_mesa_layer *l,
                                  lact_tensor *out) {
    const lact_mesa_layer_cfg *c = &l->cfg;
    lact_tensor raw = LACT_NN_VIEW(&l->params->items[l->lambda].w, c->heads, c->head_dim);
    LACT_NN_RUN(ar, lact_softplus_forward(ctx, out, &raw, 0.0f));
    if (c->lambda_min == 0.0f) return LACT_OK;
    size_t mark = lact_arena_mark(ar);
    lact_tensor floor;
    LACT_TRY(LACT_NN_ALLOC(ar, &floor, 1));
    /* A one-element constant on the context's device, added by broadcast. */
    LACT_NN_RUN(ar, lact_fill_uniform(ctx, &floor, 0, 0, c->lambda_min, c->lambda_min));
    LACT_NN_RUN(ar, lact_add_forward(ctx, out, out, &floor));
    lact_arena_release(ar, mark);
    return LACT_OK;
}

lact_status lact_mesa_layer_inputs(lact_ctx *ctx, lact_mesa_layer *l, lact_arena *ar,
                                   lact_mesa_layer_saved *s, const lact_tensor *x,
                                   bool token_major) {
    const lact_mesa_layer_cfg *c = &l->cfg;
    lact_params *p = l->params;
    int64_t B = s->B, L = s->L, H = c->heads, d = c->head_dim;
    /* Layout change [B, L, H, e] -> the op's layout, as lact_nn_permute's
     * (A, Bd, C, E): [B, H, L, e] or [L, B, H, e]. */
    int64_t A = token_major ? 1 : B, Bd = token_major ? B : L, C = token_major ? L : H;
    int64_t Ev = token_major ? H * d : d, Eg = token_major ? H : 1;
    /* The op takes g and beta in the activations' dtype too; λ is F32. */
    lact_dtype act = x->dtype;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->q0, B, L, H * d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->k0, B, L, H * d));
    if (token_major) {
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->q, L, B, H, d));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->k, L, B, H, d));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->v, L, B, H, d));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->zg, L, B, H));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->g, L, B, H));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->beta, L, B, H));
    } else {
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->q, B, H, L, d));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->k, B, H, L, d));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->v, B, H, L, d));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->zg, B, H, L));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->g, B, H, L));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->beta, B, H, L));
    }
    LACT_TRY(LACT_NN_ALLOC(ar, &s->lambda, H, d));
    LACT_NN_RUN(ar,
                lact_linear_forward(ctx, &s->q0, x, lact_param_mm(&p->items[l->wq], act), NULL));
    LACT_NN_RUN(ar,
                lact_linear_forward(ctx, &s->k0, x, lact_param_mm(&p->items[l->wk], act), NULL));
    size_t mark = lact_arena_mark(ar);
    lact_tensor t;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &t, B, L, H, d));
    lact_tensor q4 = LACT_NN_VIEW(&s->q0, B, L, H, d), k4 = LACT_NN_VIEW(&s->k0, B, L, H, d);
    LACT_NN_RUN(ar, lact_l2norm_forward(ctx, &t, &q4, LACT_MESA_L2_EPS));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &s->q, &t, A, Bd, C, Ev));
    LACT_NN_RUN(ar, lact_l2norm_forward(ctx, &t, &k4, LACT_MESA_L2_EPS));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &s->k, &t, A, Bd, C, Ev));
    lact_tensor t3 = LACT_NN_VIEW(&t, B, L, H * d);
    LACT_NN_RUN(ar, lact_linear_forward(ctx, &t3, x, lact_param_mm(&p->items[l->wv], act), NULL));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &s->v, &t3, A, Bd, C, Ev));
    /* Gates: logits [B, L, H] -> the op's layout; g = −softplus(z). */
    lact_tensor tg = LACT_NN_VIEW(&t, B, L, H);
    LACT_NN_RUN(ar, lact_linear_forward(ctx, &tg, x, lact_param_mm(&p->items[l->w_decay], act),
                                        &p->items[l->b_decay].w));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &s->zg, &tg, A, Bd, C, Eg));
    LACT_NN_RUN(ar, lact_softplus_forward(ctx, &s->g, &s->zg, 0.0f));
    LACT_NN_RUN(ar, lact_scale_forward(ctx, &s->g, &s->g, -1.0f));
    LACT_NN_RUN(ar, lact_linear_forward(ctx, &tg, x, lact_param_mm(&p->items[l->w_beta], act),
                                        &p->items[l->b_beta].w));
    LACT_NN_RUN(ar, lact_sigmoid_forward(ctx, &tg, &tg));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &s->beta, &tg, A, Bd, C, Eg));
    lact_arena_release(ar, mark);
    return lambda_forward(ctx, ar, l, &s->lambda);
}

lact_status lact_mesa_layer_output(lact_ctx *ctx, lact_mesa_layer *l, lact_arena *ar,
                                   lact_mesa_layer_saved *s, lact_tensor *y,
                                   const lact_tensor *res) {
    const lact_mesa_layer_cfg *c = &l->cfg;
    lact_params *p = l->params;
    int64_t B = s->B, L = s->L, H = c->heads, d = c->head_dim;
    lact_dtype act = s->o.dtype;
    LACT_TRY(LACT_NN_ALLOC(ar, &s->rstd, B * L * H));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->n, B, L, H * d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->gate, B, L, H * d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->u, B, L, H * d));
    lact_tensor o2 = LACT_NN_VIEW(&s->o, B * L * H, d), n2 = LACT_NN_VIEW(&s->n, B * L * H, d);
    LACT_NN_RUN(ar,
                lact_rmsnorm_forward(ctx, &n2, &s->rstd, &o2, &p->items[l->o_norm].w, c->norm_eps));
    LACT_NN_RUN(ar, lact_linear_forward(ctx, &s->gate, &s->x,
                                        lact_param_mm(&p->items[l->w_gate], act), NULL));
    LACT_NN_RUN(ar, lact_sigmoid_forward(ctx, &s->gate, &s->gate));
    LACT_NN_RUN(ar, lact_mul_forward(ctx, &s->u, &s->n, &s->gate));
    LACT_NN_RUN(ar,
                lact_linear_forward_add(ctx, y, &s->u, lact_param_mm(&p->items[l->wo], act), res));
    return LACT_OK;
}

lact_status lact_mesa_layer_forward(lact_ctx *ctx, lact_mesa_layer *l, lact_arena *ar,
                                    lact_mesa_layer_saved *s, lact_tensor *y, const lact_tensor *x,
                                    const lact_tensor *res) {
    const lact_mesa_layer_cfg *c = &l->cfg;
    int64_t H = c->heads, d = c->head_dim;
    LACT_TRY(lact_mesa_layer_check_io(l, ar, ctx, "mesa layer", x, y));
    memset(s, 0, sizeof *s);
    int64_t B = x->shape[0], L = x->shape[1];
    s->B = B;
    s->L = L;
    s->x = *x;
    LACT_TRY(lact_mesa_layer_inputs(ctx, l, ar, s, x, false));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, x->dtype, &s->o, B, L, H * d));
    /* Keeping the solutions saves the backward a second solve of every
     * token (docs/mesa.md). */
    LACT_TRY(LACT_NN_ALLOC_AS(ar, x->dtype, &s->xs, B, H, L, d));
    size_t mark = lact_arena_mark(ar);
    lact_tensor o;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, x->dtype, &o, B, H, L, d));
    LACT_NN_RUN(ar, lact_mesa_forward_x(ctx, &o, &s->xs, NULL, NULL, NULL, &s->q, &s->k, &s->v,
                                        &s->g, &s->beta, &s->lambda, &c->op));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &s->o, &o, B, H, L, d));
    lact_arena_release(ar, mark);
    return lact_mesa_layer_output(ctx, l, ar, s, y, res);
}
