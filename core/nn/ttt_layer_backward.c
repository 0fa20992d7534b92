/* The LaCT layer: the backward pass (reverse of ttt_layer.c's forward). */
#include <stdint.h>

#include "core/nn/linear.h"
#include "core/nn/nn_ops.h"
#include "kernels/attention.h"
#include "kernels/headprep.h"
#include "kernels/kernels.h"
#include "ttt_layer_internal.h"

void lact_ttt_layer_split_lr(const lact_tensor *lr, lact_tensor out[3], int64_t N, int64_t L) {
    int64_t shape[2] = {N, L};
    for (int i = 0; i < 3; i++)
        out[i] = lact_ttt_slice(lr, (int64_t)i * N * L, 2, shape);
}

/* The three initial weights' gradients dw ([3 · H·dh·d]: w0, w1, w2) into
 * the parameters': one addition where the store keeps the three side by
 * side (they are declared in a row), else one each. */
static lact_status accumulate_w(lact_ctx *ctx, lact_arena *ar, const lact_ttt_layer *l,
                                const lact_tensor *dw) {
    lact_params *p = l->params;
    const lact_tensor *g0 = &p->items[l->w0].g, *g1 = &p->items[l->w1].g, *g2 = &p->items[l->w2].g;
    int64_t n = lact_tensor_numel(g0);
    float *b0 = g0->data;
    if ((float *)g1->data == b0 + n && (float *)g2->data == b0 + 2 * n) {
        lact_tensor all = lact_tensor_view(b0, LACT_F32, g0->device, 1, (int64_t[]){3 * n});
        LACT_NN_RUN(ar, lact_nn_accumulate(ctx, &all, dw));
        return LACT_OK;
    }
    const lact_tensor *g[3] = {g0, g1, g2};
    for (int i = 0; i < 3; i++) {
        lact_tensor part = lact_ttt_slice(dw, i * n, 1, &n);
        lact_tensor dst = LACT_NN_VIEW(g[i], n);
        LACT_NN_RUN(ar, lact_nn_accumulate(ctx, &dst, &part));
    }
    return LACT_OK;
}

/* dz [B, L, D] (overwritten) from the gradients of q's (or k's) ttt-op
 * input dxf [B·H, L, d] and attention-branch input dxa [B, H, L, d] (or
 * NULL); the scale/offset gradients accumulate in the op. */
static lact_status qk_backward(lact_ctx *ctx, lact_arena *ar, const lact_ttt_layer *l,
                               const lact_ttt_layer_saved *s, lact_tensor *dz,
                               const lact_tensor *dxf, const lact_tensor *dxa,
                               const lact_tensor *z, int scale, int offset) {
    int64_t B = s->B, L = s->L, D = l->cfg.dim, H = l->cfg.heads, d = D / H;
    lact_params *p = l->params;
    size_t mark = lact_arena_mark(ar);
    lact_tensor dxs;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, s->x.dtype, &dxs, B, L, H, d));
    lact_tensor z4 = LACT_NN_VIEW(z, B, L, H, d), dz4 = LACT_NN_VIEW(dz, B, L, H, d);
    lact_tensor dxf4 = LACT_NN_VIEW(dxf, B, H, L, d);
    LACT_NN_RUN(ar,
                lact_headprep_backward_acc(ctx, &dz4, &p->items[scale].g, &p->items[offset].g, &dxs,
                                           &dxf4, dxa, &z4, &p->items[scale].w, &p->items[offset].w,
                                           0, lact_ttt_layer_theta(l), LACT_TTT_L2_EPS));
    lact_arena_release(ar, mark);
    return LACT_OK;
}

lact_status lact_ttt_layer_backward(lact_ctx *ctx, lact_ttt_layer *l, lact_arena *ar,
                                    const lact_ttt_layer_saved *s, lact_tensor *dx,
                                    const lact_tensor *dy) {
    const lact_ttt_layer_cfg *c = &l->cfg;
    lact_params *p = l->params;
    int64_t B = s->B, L = s->L, D = c->dim, H = c->heads, d = D / H, dh = d * c->inter_multi;
    int64_t N = B * H;
    lact_dtype act = s->x.dtype;
    if (!lact_tensor_same_shape(dy, &s->x) || (dx && !lact_tensor_same_shape(dx, &s->x)))
        return lact_fail(LACT_E_ARG, "ttt layer backward: dy and dx must have x's shape [%lld, "
                         "%lld, %lld]", (long long)B, (long long)L, (long long)D);
    lact_ttt_args args;
    LACT_TRY(lact_ttt_layer_order(l, L, act, &args));
    size_t mark = lact_arena_mark(ar);

    /* Output projection, then back to the heads' layout. */
    lact_tensor du, dsum, don;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &du, B, L, D));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dsum, N, L, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &don, N, L, d));
    LACT_TRY(lact_linear_backward(ctx, ar, &du, false, &p->items[l->wo].g, NULL, dy, &s->u,
                                  lact_param_mm(&p->items[l->wo], act)));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &dsum, &du, B, L, H, d));

    lact_tensor dqa, dka, dva;
    if (c->window_attn) {
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dqa, B, H, L, d));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dka, B, H, L, d));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dva, B, H, L, d));
        lact_attn_args aa = lact_ttt_layer_attn_args(l);
        lact_tensor v4 = LACT_NN_VIEW(&s->v, B, H, L, d), dy4 = LACT_NN_VIEW(&dsum, B, H, L, d);
        LACT_NN_RUN(ar, lact_attention_backward(ctx, &dqa, &dka, &dva, NULL, &dy4, &s->qa, &s->ka,
                                                &v4, NULL, NULL, &s->ya, &s->lse, &aa));
    }
    LACT_NN_RUN(ar, lact_rmsnorm_backward_acc(ctx, &don, &p->items[l->o_norm].g, &dsum, &s->o,
                                              &p->items[l->o_norm].w, &s->rstd, NULL));

    /* The fast-weight op. */
    lact_tensor dqf, dkf, dvf, dlr, dmom, dw0, dw1, dw2, dlr3[3];
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dqf, N, L, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dkf, N, L, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dvf, N, L, d));
    LACT_TRY(LACT_NN_ALLOC(ar, &dlr, 3, N, L));
    LACT_TRY(LACT_NN_ALLOC(ar, &dmom, N, L));
    /* The initial weights' gradients side by side, summed over the batch
     * by the op (its B·H heads share the H sets). */
    lact_tensor dw;
    int64_t nw = H * dh * d;
    LACT_TRY(LACT_NN_ALLOC(ar, &dw, 3 * nw));
    dw0 = lact_ttt_slice(&dw, 0, 3, (int64_t[]){H, dh, d});
    dw1 = lact_ttt_slice(&dw, nw, 3, (int64_t[]){H, d, dh});
    dw2 = lact_ttt_slice(&dw, 2 * nw, 3, (int64_t[]){H, dh, d});
    lact_tensor lr3[3];
    lact_ttt_layer_split_lr(&s->lr, lr3, N, L);
    lact_ttt_layer_split_lr(&dlr, dlr3, N, L);
    const lact_tensor *mom = c->momentum ? &s->mom : NULL;
    LACT_NN_RUN(ar, lact_ttt_backward(ctx, &dqf, &dkf, &dvf, &dlr3[0], &dlr3[1], &dlr3[2],
                                      c->momentum ? &dmom : NULL, &dw0, &dw1, &dw2, &don,
                                      &s->state, &s->qf, &s->kf, &s->v, &lr3[0], &lr3[1], &lr3[2],
                                      mom, &s->w0, &s->w1, &s->w2, &args));
    LACT_TRY(accumulate_w(ctx, ar, l, &dw));

    /* v: both paths read it; then SiLU and the projection (dx overwritten). */
    lact_tensor dz;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dz, B, L, D));
    if (c->window_attn) {
        lact_tensor dva3 = LACT_NN_VIEW(&dva, N, L, d);
        LACT_NN_RUN(ar, lact_nn_accumulate(ctx, &dvf, &dva3));
    }
    {
        lact_tensor dz4 = LACT_NN_VIEW(&dz, B, L, H, d), zv4 = LACT_NN_VIEW(&s->zv, B, L, H, d);
        lact_tensor dv4 = LACT_NN_VIEW(&dvf, B, H, L, d);
        LACT_NN_RUN(ar, lact_headprep_backward(ctx, &dz4, NULL, NULL, NULL, NULL, &dv4, &zv4,
                                               NULL, NULL, 0, 0.0f, LACT_TTT_L2_EPS));
    }
    LACT_TRY(lact_linear_backward(ctx, ar, dx, false, &p->items[l->wv].g, NULL, &dz, &s->x,
                                  lact_param_mm(&p->items[l->wv], act)));

    /* q and k: both paths, SiLU, projection. */
    LACT_TRY(qk_backward(ctx, ar, l, s, &dz, &dqf, c->window_attn ? &dqa : NULL, &s->zq,
                         l->q_scale, l->q_offset));
    LACT_TRY(lact_linear_backward(ctx, ar, dx, true, &p->items[l->wq].g, NULL, &dz, &s->x,
                                  lact_param_mm(&p->items[l->wq], act)));
    LACT_TRY(qk_backward(ctx, ar, l, s, &dz, &dkf, c->window_attn ? &dka : NULL, &s->zk,
                         l->k_scale, l->k_offset));
    LACT_TRY(lact_linear_backward(ctx, ar, dx, true, &p->items[l->wk].g, NULL, &dz, &s->x,
                                  lact_param_mm(&p->items[l->wk], act)));

    LACT_TRY(lact_ttt_layer_gates_backward(ctx, ar, l, s, dx, &dlr, &dmom));
    lact_arena_release(ar, mark);
    return LACT_OK;
}
