/* The Mesa layer: the backward pass (reverse of mesa_layer.c's forward). */
#include "core/nn/linear.h"
#include "core/nn/nn_ops.h"
#include "kernels/kernels.h"
#include "mesa_layer_internal.h"

/* dq [B, H, L, d] -> [B, L, H, d] -> l2norm backward -> dx += projection
 * backward (w's gradient accumulates). */
static lact_status qk_backward(lact_ctx *ctx, lact_arena *ar, const lact_mesa_layer *l,
                               const lact_mesa_layer_saved *s, lact_tensor *dx,
                               const lact_tensor *dq, const lact_tensor *x0, int w) {
    lact_params *p = l->params;
    int64_t B = s->B, L = s->L, H = l->cfg.heads, d = l->cfg.head_dim;
    lact_dtype act = s->x.dtype;
    size_t mark = lact_arena_mark(ar);
    lact_tensor r, dn;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &r, B, L, H, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dn, B, L, H, d));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &r, dq, B, H, L, d));
    lact_tensor x4 = LACT_NN_VIEW(x0, B, L, H, d);
    LACT_NN_RUN(ar, lact_l2norm_backward(ctx, &dn, &r, &x4, LACT_MESA_L2_EPS));
    lact_tensor dn3 = LACT_NN_VIEW(&dn, B, L, H * d);
    LACT_TRY(lact_linear_backward(ctx, ar, dx, true, &p->items[w].g, NULL, &dn3, &s->x,
                                  lact_param_mm(&p->items[w], act)));
    lact_arena_release(ar, mark);
    return LACT_OK;
}

/* The gates' logit gradients dz [B, H, L] -> [B, L, H] -> dx += projection
 * backward (weight and bias gradients accumulate). */
static lact_status gate_backward(lact_ctx *ctx, lact_arena *ar, const lact_mesa_layer *l,
                                 const lact_mesa_layer_saved *s, lact_tensor *dx,
                                 const lact_tensor *dz, int w, int b) {
    lact_params *p = l->params;
    int64_t B = s->B, L = s->L, H = l->cfg.heads;
    size_t mark = lact_arena_mark(ar);
    lact_tensor t;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, dz->dtype, &t, B, L, H));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &t, dz, B, H, L, 1));
    LACT_TRY(lact_linear_backward(ctx, ar, dx, true, &p->items[w].g, &p->items[b].g, &t, &s->x,
                                  lact_param_mm(&p->items[w], s->x.dtype)));
    lact_arena_release(ar, mark);
    return LACT_OK;
}

lact_status lact_mesa_layer_backward(lact_ctx *ctx, lact_mesa_layer *l, lact_arena *ar,
                                     const lact_mesa_layer_saved *s, lact_tensor *dx,
                                     const lact_tensor *dy) {
    const lact_mesa_layer_cfg *c = &l->cfg;
    lact_params *p = l->params;
    int64_t B = s->B, L = s->L, H = c->heads, d = c->head_dim;
    lact_dtype act = s->x.dtype;
    if (!lact_tensor_same_shape(dy, &s->x) || (dx && !lact_tensor_same_shape(dx, &s->x)))
        return lact_fail(LACT_E_ARG,
                         "mesa layer backward: dy and dx must have x's shape [%lld, "
                         "%lld, %lld]",
                         (long long)B, (long long)L, (long long)c->dim);
    size_t mark = lact_arena_mark(ar);

    /* y = (n ⊙ gate) woᵀ, gate = sigmoid(x w_gateᵀ): dx starts here. */
    lact_tensor du, dn, dgate;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &du, B, L, H * d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dn, B, L, H * d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dgate, B, L, H * d));
    LACT_TRY(lact_linear_backward(ctx, ar, &du, false, &p->items[l->wo].g, NULL, dy, &s->u,
                                  lact_param_mm(&p->items[l->wo], act)));
    LACT_NN_RUN(ar, lact_mul_backward(ctx, &dn, &dgate, &du, &s->n, &s->gate));
    LACT_NN_RUN(ar, lact_sigmoid_backward(ctx, &du, &dgate, &s->gate));
    LACT_TRY(lact_linear_backward(ctx, ar, dx, false, &p->items[l->w_gate].g, NULL, &du, &s->x,
                                  lact_param_mm(&p->items[l->w_gate], act)));

    /* n = rmsnorm_head(o) · o_norm, then back to the op's layout. */
    lact_tensor do3 = LACT_NN_VIEW(&du, B * L * H, d), dn2 = LACT_NN_VIEW(&dn, B * L * H, d);
    lact_tensor o2 = LACT_NN_VIEW(&s->o, B * L * H, d), dout;
    LACT_NN_RUN(ar, lact_rmsnorm_backward_acc(ctx, &do3, &p->items[l->o_norm].g, &dn2, &o2,
                                              &p->items[l->o_norm].w, &s->rstd, NULL));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dout, B, H, L, d));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &dout, &du, B, L, H, d));

    /* The op. */
    lact_tensor dq, dk, dv, dg, dbeta, dlam;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dq, B, H, L, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dk, B, H, L, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dv, B, H, L, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dg, B, H, L));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dbeta, B, H, L));
    LACT_TRY(LACT_NN_ALLOC(ar, &dlam, H, d));
    LACT_NN_RUN(ar, lact_mesa_backward_x(ctx, &dq, &dk, &dv, &dg, &dbeta, &dlam, &dout, &s->xs,
                                         &s->q, &s->k, &s->v, &s->g, &s->beta, &s->lambda, &c->op));

    /* λ = softplus(lambda) + lambda_min. */
    lact_tensor raw = LACT_NN_VIEW(&p->items[l->lambda].w, H, d);
    lact_tensor graw = LACT_NN_VIEW(&p->items[l->lambda].g, H, d);
    LACT_NN_RUN(ar, lact_softplus_backward(ctx, &dlam, &dlam, &raw, 0.0f));
    LACT_NN_RUN(ar, lact_nn_accumulate(ctx, &graw, &dlam));

    /* g = −softplus(zg), β = sigmoid(zb): the logits' gradients in place. */
    LACT_NN_RUN(ar, lact_scale_forward(ctx, &dg, &dg, -1.0f));
    LACT_NN_RUN(ar, lact_softplus_backward(ctx, &dg, &dg, &s->zg, 0.0f));
    LACT_TRY(gate_backward(ctx, ar, l, s, dx, &dg, l->w_decay, l->b_decay));
    LACT_NN_RUN(ar, lact_sigmoid_backward(ctx, &dbeta, &dbeta, &s->beta));
    LACT_TRY(gate_backward(ctx, ar, l, s, dx, &dbeta, l->w_beta, l->b_beta));

    /* v, then q and k through their L2 norms. */
    lact_tensor dv3 = LACT_NN_VIEW(&dn, B, L, H * d);
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &dv3, &dv, B, H, L, d));
    LACT_TRY(lact_linear_backward(ctx, ar, dx, true, &p->items[l->wv].g, NULL, &dv3, &s->x,
                                  lact_param_mm(&p->items[l->wv], act)));
    LACT_TRY(qk_backward(ctx, ar, l, s, dx, &dq, &s->q0, l->wq));
    LACT_TRY(qk_backward(ctx, ar, l, s, dx, &dk, &s->k0, l->wk));
    lact_arena_release(ar, mark);
    return LACT_OK;
}
