/* The gated attention layer: parameters, forward and backward. */
#include "attn_layer.h"

#include <string.h>

#include "core/nn/linear.h"
#include "core/nn/nn_ops.h"
#include "kernels/kernels.h"

lact_attn_layer_cfg lact_attn_layer_defaults(int64_t dim, int64_t heads) {
    lact_attn_layer_cfg c;
    memset(&c, 0, sizeof c);
    c.dim = dim;
    c.heads = heads;
    c.kv_heads = heads;
    c.head_dim = heads > 0 ? dim / heads : 0;
    c.qk_norm = true;
    c.rope = true;
    c.rope_theta = 10000.0f;
    c.mask.mask = LACT_ATTN_CAUSAL;
    c.gate = LACT_ATTN_GATE_ELEMENTWISE;
    c.init_std = 0.02f;
    c.norm_eps = 1e-6f;
    return c;
}

static int64_t gate_dim(const lact_attn_layer_cfg *c) {
    return c->gate == LACT_ATTN_GATE_HEAD ? 1 : c->head_dim;
}

#define DECL(name, init, id, ...) LACT_PARAMS_DECL(p, prefix, name, init, id, __VA_ARGS__)

lact_status lact_attn_layer_declare(lact_attn_layer *l, lact_params *p, const char *prefix,
                                    const lact_attn_layer_cfg *c) {
    memset(l, 0, sizeof *l);
    if (c->dim < 1 || c->heads < 1 || c->kv_heads < 1 || c->heads % c->kv_heads != 0 ||
        c->head_dim < 1)
        return lact_fail(LACT_E_ARG, "%s: dim %lld, heads %lld, kv_heads %lld (must divide "
                         "heads), head_dim %lld", prefix, (long long)c->dim, (long long)c->heads,
                         (long long)c->kv_heads, (long long)c->head_dim);
    if (c->rope && (c->head_dim % 2 != 0 || !(c->rope_theta > 0.0f)))
        return lact_fail(LACT_E_ARG, "%s: RoPE needs an even head dim and theta > 0", prefix);
    if ((int)c->gate < 0 || (int)c->gate > 2)
        return lact_fail(LACT_E_ARG, "%s: gate %d is not none (0), elementwise (1) or head (2)",
                         prefix, (int)c->gate);
    if (!(c->norm_eps > 0.0f) || !(c->init_std >= 0.0f))
        return lact_fail(LACT_E_ARG, "%s: norm_eps must be > 0 and init_std ≥ 0", prefix);
    l->cfg = *c;
    l->params = p;
    l->wg = l->bg = l->q_norm = l->k_norm = -1;
    int64_t D = c->dim, Hd = c->heads * c->head_dim, Kd = c->kv_heads * c->head_dim;
    lact_init proj = lact_init_normal(c->init_std);
    DECL("wq", proj, &l->wq, Hd, D);
    DECL("wk", proj, &l->wk, Kd, D);
    DECL("wv", proj, &l->wv, Kd, D);
    if (c->gate != LACT_ATTN_GATE_NONE) {
        DECL("wg", proj, &l->wg, c->heads * gate_dim(c), D);
        DECL("bg", lact_init_zeros(), &l->bg, c->heads * gate_dim(c));
    }
    if (c->qk_norm) {
        DECL("q_norm", lact_init_ones(), &l->q_norm, c->head_dim);
        DECL("k_norm", lact_init_ones(), &l->k_norm, c->head_dim);
    }
    DECL("wo", proj, &l->wo, D, Hd);
    return LACT_OK;
}

/* x0 [B, L, h·d] -> (norm, rope) -> out [B, h, L, d]. */
static lact_status qk_forward(lact_ctx *ctx, lact_arena *ar, const lact_attn_layer *l,
                              const lact_attn_layer_saved *s, lact_tensor *out, lact_tensor *rstd,
                              const lact_tensor *x0, int64_t h, int norm) {
    const lact_attn_layer_cfg *c = &l->cfg;
    int64_t B = s->B, L = s->L, d = c->head_dim;
    lact_dtype act = x0->dtype;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, out, B, h, L, d));
    if (c->qk_norm) LACT_TRY(LACT_NN_ALLOC(ar, rstd, B * L * h));
    size_t mark = lact_arena_mark(ar);
    lact_tensor n, r, x4 = LACT_NN_VIEW(x0, B, L, h, d);
    const lact_tensor *src = &x4;
    if (c->qk_norm) {
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &n, B, L, h, d));
        LACT_NN_RUN(ar, lact_rmsnorm_forward(ctx, &n, rstd, &x4, &l->params->items[norm].w,
                                             c->norm_eps));
        src = &n;
    }
    if (c->rope) {
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &r, B, L, h, d));
        LACT_NN_RUN(ar, lact_rope_forward(ctx, &r, src, 0, c->rope_theta));
        src = &r;
    }
    LACT_NN_RUN(ar, lact_nn_permute(ctx, out, src, B, L, h, d));
    lact_arena_release(ar, mark);
    return LACT_OK;
}

lact_status lact_attn_layer_forward(lact_ctx *ctx, lact_attn_layer *l, lact_arena *ar,
                                    lact_attn_layer_saved *s, lact_tensor *y, const lact_tensor *x,
                                    const lact_tensor *res) {
    const lact_attn_layer_cfg *c = &l->cfg;
    lact_params *p = l->params;
    int64_t D = c->dim, H = c->heads, Hk = c->kv_heads, d = c->head_dim, gd = gate_dim(c);
    if (x->ndim != 3 || x->shape[2] != D || !lact_tensor_same_shape(x, y)) {
        char bx[96], by[96];
        return lact_fail(LACT_E_ARG, "attention layer: x %s and y %s must both be [B, L, %lld]",
                         lact_tensor_describe(x, bx, sizeof bx),
                         lact_tensor_describe(y, by, sizeof by), (long long)D);
    }
    if (ar->device != ctx->device || !p->allocated)
        return lact_fail(LACT_E_ARG, "attention layer: arena on %s, context on %s, parameters %s",
                         lact_device_name(ar->device), lact_device_name(ctx->device),
                         p->allocated ? "allocated" : "not allocated");
    if (x->dtype != y->dtype)
        return lact_fail(LACT_E_ARG, "attention layer: x is %s, y %s (one activation dtype)",
                         lact_dtype_name(x->dtype), lact_dtype_name(y->dtype));
    LACT_TRY(lact_nn_check_act(p, x, "attention layer"));
    lact_dtype act = x->dtype;
    memset(s, 0, sizeof *s);
    int64_t B = x->shape[0], L = x->shape[1];
    s->B = B;
    s->L = L;
    s->x = *x;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->q0, B, L, H * d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->k0, B, L, Hk * d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->v, B, Hk, L, d));
    LACT_NN_RUN(ar,
                lact_linear_forward(ctx, &s->q0, x, lact_param_mm(&p->items[l->wq], act), NULL));
    LACT_NN_RUN(ar,
                lact_linear_forward(ctx, &s->k0, x, lact_param_mm(&p->items[l->wk], act), NULL));
    LACT_TRY(qk_forward(ctx, ar, l, s, &s->q, &s->rstd_q, &s->q0, H, l->q_norm));
    LACT_TRY(qk_forward(ctx, ar, l, s, &s->k, &s->rstd_k, &s->k0, Hk, l->k_norm));
    if (c->gate != LACT_ATTN_GATE_NONE) LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->g, B, H, L, gd));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->y, B, H, L, d));
    LACT_TRY(LACT_NN_ALLOC(ar, &s->lse, B, H, L));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->u, B, L, H * d));
    size_t mark = lact_arena_mark(ar);
    lact_tensor t;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &t, B, L, (H * gd > Hk * d ? H * gd : Hk * d)));
    lact_tensor tv = LACT_NN_VIEW(&t, B, L, Hk * d);
    LACT_NN_RUN(ar, lact_linear_forward(ctx, &tv, x, lact_param_mm(&p->items[l->wv], act), NULL));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &s->v, &tv, B, L, Hk, d));
    if (c->gate != LACT_ATTN_GATE_NONE) {
        lact_tensor tg = LACT_NN_VIEW(&t, B, L, H * gd);
        LACT_NN_RUN(ar, lact_linear_forward(ctx, &tg, x, lact_param_mm(&p->items[l->wg], act),
                                            &p->items[l->bg].w));
        LACT_NN_RUN(ar, lact_nn_permute(ctx, &s->g, &tg, B, L, H, gd));
    }
    lact_arena_release(ar, mark);
    const lact_tensor *g = c->gate != LACT_ATTN_GATE_NONE ? &s->g : NULL;
    LACT_NN_RUN(ar, lact_attention_forward(ctx, &s->y, &s->lse, &s->q, &s->k, &s->v, g, NULL,
                                           &c->mask));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &s->u, &s->y, B, H, L, d));
    LACT_NN_RUN(ar,
                lact_linear_forward_add(ctx, y, &s->u, lact_param_mm(&p->items[l->wo], act), res));
    return LACT_OK;
}

/* dq [B, h, L, d] -> (rope, norm backward) -> dx += projection backward. */
static lact_status qk_backward(lact_ctx *ctx, lact_arena *ar, const lact_attn_layer *l,
                               const lact_attn_layer_saved *s, lact_tensor *dx, bool dx_acc,
                               const lact_tensor *dq, const lact_tensor *x0,
                               const lact_tensor *rstd, int64_t h, int norm, int w) {
    const lact_attn_layer_cfg *c = &l->cfg;
    lact_params *p = l->params;
    int64_t B = s->B, L = s->L, d = c->head_dim;
    lact_dtype act = s->x.dtype;
    size_t mark = lact_arena_mark(ar);
    lact_tensor r, n, dx0;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &r, B, L, h, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &n, B, L, h, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dx0, B, L, h, d));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &r, dq, B, h, L, d));
    lact_tensor *cur = &r;
    if (c->rope) {
        LACT_NN_RUN(ar, lact_rope_backward(ctx, &n, &r, 0, c->rope_theta));
        cur = &n;
    }
    if (c->qk_norm) {
        lact_tensor x4 = LACT_NN_VIEW(x0, B, L, h, d);
        LACT_NN_RUN(ar, lact_rmsnorm_backward_acc(ctx, &dx0, &p->items[norm].g, cur, &x4,
                                                  &p->items[norm].w, rstd, NULL));
        cur = &dx0;
    }
    lact_tensor d3 = LACT_NN_VIEW(cur, B, L, h * d);
    LACT_TRY(lact_linear_backward(ctx, ar, dx, dx_acc, &p->items[w].g, NULL, &d3, &s->x,
                                  lact_param_mm(&p->items[w], act)));
    lact_arena_release(ar, mark);
    return LACT_OK;
}

lact_status lact_attn_layer_backward(lact_ctx *ctx, lact_attn_layer *l, lact_arena *ar,
                                     const lact_attn_layer_saved *s, lact_tensor *dx,
                                     const lact_tensor *dy) {
    const lact_attn_layer_cfg *c = &l->cfg;
    lact_params *p = l->params;
    int64_t B = s->B, L = s->L, H = c->heads, Hk = c->kv_heads, d = c->head_dim;
    int64_t gd = gate_dim(c);
    bool gated = c->gate != LACT_ATTN_GATE_NONE;
    lact_dtype act = s->x.dtype;
    if (!lact_tensor_same_shape(dy, &s->x) || (dx && !lact_tensor_same_shape(dx, &s->x)))
        return lact_fail(LACT_E_ARG, "attention layer backward: dy and dx must have x's shape");
    size_t mark = lact_arena_mark(ar);
    lact_tensor du, dyh, dq, dk, dv, dg, t;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &du, B, L, H * d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dyh, B, H, L, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dq, B, H, L, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dk, B, Hk, L, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dv, B, Hk, L, d));
    if (gated) LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dg, B, H, L, gd));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &t, B, L, (H * gd > Hk * d ? H * gd : Hk * d)));
    LACT_TRY(lact_linear_backward(ctx, ar, &du, false, &p->items[l->wo].g, NULL, dy, &s->u,
                                  lact_param_mm(&p->items[l->wo], act)));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &dyh, &du, B, L, H, d));
    LACT_NN_RUN(ar, lact_attention_backward(ctx, &dq, &dk, &dv, gated ? &dg : NULL, &dyh, &s->q,
                                            &s->k, &s->v, gated ? &s->g : NULL, NULL, &s->y,
                                            &s->lse, &c->mask));
    lact_tensor tv = LACT_NN_VIEW(&t, B, L, Hk * d);
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &tv, &dv, B, Hk, L, d));
    LACT_TRY(lact_linear_backward(ctx, ar, dx, false, &p->items[l->wv].g, NULL, &tv, &s->x,
                                  lact_param_mm(&p->items[l->wv], act)));
    if (gated) {
        lact_tensor tg = LACT_NN_VIEW(&t, B, L, H * gd);
        LACT_NN_RUN(ar, lact_nn_permute(ctx, &tg, &dg, B, H, L, gd));
        LACT_TRY(lact_linear_backward(ctx, ar, dx, true, &p->items[l->wg].g, &p->items[l->bg].g,
                                      &tg, &s->x, lact_param_mm(&p->items[l->wg], act)));
    }
    LACT_TRY(qk_backward(ctx, ar, l, s, dx, true, &dq, &s->q0, &s->rstd_q, H, l->q_norm, l->wq));
    LACT_TRY(qk_backward(ctx, ar, l, s, dx, true, &dk, &s->k0, &s->rstd_k, Hk, l->k_norm, l->wk));
    lact_arena_release(ar, mark);
    return LACT_OK;
}
