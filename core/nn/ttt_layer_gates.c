/* The LaCT layer's learning-rate and momentum gates, forward and backward.
 *
 * lr = softplus(x W_lrᵀ + b_lr + shift) [3, B·H, L] and, with momentum,
 * mom = sigmoid(x W_mᵀ + b_m) [B·H, L], F32 (the ttt op's rule; with BF16
 * activations the projections write F32). The two projections are skinny
 * (3H and H outputs) and cost what reading x costs, so with momentum they
 * run as one [4H, D] product: its weight is a view of the parameter store,
 * which keeps the two matrices side by side. Its [B, L, 4H] output goes
 * through lact_gates_forward (biases, the [4, B·H, L] layout whose first
 * three slices are the rate logits and whose last is the momentum logits,
 * softplus and sigmoid in one pass), and the backward runs
 * lact_gates_backward (the bias gradients accumulated in it), then one
 * product for d_x and one for the weights' gradient. */
#include "core/nn/linear.h"
#include "core/nn/nn_ops.h"
#include "kernels/kernels.h"
#include "ttt_layer_internal.h"

/* Whether the store keeps the two projections' weights side by side (they
 * are declared in a row; the store puts the matrices together), so that
 * the combined [4H, D] weight is a view and its gradient one addition. */
static bool gates_adjacent(const lact_ttt_layer *l) {
    const lact_params *p = l->params;
    const lact_param *a = &p->items[l->lr_w], *b = &p->items[l->mom_w];
    return b->offset == a->offset + lact_tensor_numel(&a->w);
}

/* wc [4H, D] (the activations' dtype): the rate projection's rows, then
 * the momentum projection's; a view of the store where the two lie side
 * by side (gates_adjacent), else filled. */
static lact_status gate_weight(lact_ctx *ctx, const lact_ttt_layer *l, lact_tensor *wc,
                               lact_dtype act) {
    lact_params *p = l->params;
    int64_t H = l->cfg.heads, D = l->cfg.dim;
    int64_t s1[2] = {3 * H, D}, s2[2] = {H, D};
    if (gates_adjacent(l)) {
        const lact_tensor *w = lact_param_mm(&p->items[l->lr_w], act);
        *wc = lact_tensor_view(w->data, w->dtype, w->device, 2, (int64_t[]){4 * H, D});
        return LACT_OK;
    }
    lact_tensor a = lact_ttt_slice(wc, 0, 2, s1), b = lact_ttt_slice(wc, 3 * H * D, 2, s2);
    LACT_TRY(lact_scale_forward(ctx, &a, lact_param_mm(&p->items[l->lr_w], act), 1.0f));
    return lact_scale_forward(ctx, &b, lact_param_mm(&p->items[l->mom_w], act), 1.0f);
}

lact_status lact_ttt_layer_gates_forward(lact_ctx *ctx, lact_arena *ar, const lact_ttt_layer *l,
                                         lact_ttt_layer_saved *s, const lact_tensor *x) {
    int64_t B = s->B, L = s->L, H = l->cfg.heads, N = B * H, D = l->cfg.dim;
    lact_params *p = l->params;
    float shift = lact_nn_inv_softplus(l->cfg.base_lr);
    LACT_TRY(LACT_NN_ALLOC(ar, &s->lr, 3, N, L));
    if (!l->cfg.momentum) {
        LACT_TRY(LACT_NN_ALLOC(ar, &s->zlr, 3, N, L));
        size_t mark = lact_arena_mark(ar);
        lact_tensor z;
        LACT_TRY(LACT_NN_ALLOC(ar, &z, B, L, 3 * H));
        LACT_NN_RUN(
            ar, lact_linear_forward(ctx, &z, x, lact_param_mm(&p->items[l->lr_w], x->dtype), NULL));
        LACT_NN_RUN(ar, lact_gates_forward(ctx, &s->lr, NULL, &s->zlr, &z, &p->items[l->lr_b].w,
                                           NULL, shift));
        lact_arena_release(ar, mark);
        return LACT_OK;
    }
    lact_tensor zg;
    LACT_TRY(LACT_NN_ALLOC(ar, &zg, 4, N, L));
    int64_t s3[3] = {3, N, L}, s2[2] = {N, L};
    s->zlr = lact_ttt_slice(&zg, 0, 3, s3);
    s->zm = lact_ttt_slice(&zg, 3 * N * L, 2, s2);
    LACT_TRY(LACT_NN_ALLOC(ar, &s->mom, N, L));
    size_t mark = lact_arena_mark(ar);
    lact_tensor wc, z;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, x->dtype, &wc, 4 * H, D));
    LACT_TRY(LACT_NN_ALLOC(ar, &z, B, L, 4 * H));
    LACT_NN_RUN(ar, gate_weight(ctx, l, &wc, x->dtype));
    LACT_NN_RUN(ar, lact_linear_forward(ctx, &z, x, &wc, NULL));
    LACT_NN_RUN(ar, lact_gates_forward(ctx, &s->lr, &s->mom, &zg, &z, &p->items[l->lr_b].w,
                                       &p->items[l->mom_b].w, shift));
    lact_arena_release(ar, mark);
    return LACT_OK;
}

/* The combined product's backward from dz [B·L, 4H]: dx += dz wc, and the
 * weights' gradient dzᵀ x added into the store's [4H, D] view where the
 * two lie side by side, else split over the two parameters. */
static lact_status gates_product_backward(lact_ctx *ctx, lact_arena *ar, const lact_ttt_layer *l,
                                          const lact_ttt_layer_saved *s, lact_tensor *dx,
                                          const lact_tensor *dz) {
    int64_t H = l->cfg.heads, D = l->cfg.dim, R = s->B * s->L;
    lact_params *p = l->params;
    lact_dtype act = s->x.dtype;
    lact_tensor wc;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &wc, 4 * H, D));
    lact_tensor x2 = LACT_NN_VIEW(&s->x, R, D), dz2 = LACT_NN_VIEW(dz, R, 4 * H);
    if (gates_adjacent(l)) {
        const lact_tensor *g = &p->items[l->lr_w].g;
        lact_tensor both = lact_tensor_view(g->data, LACT_F32, g->device, 2, (int64_t[]){4 * H, D});
        LACT_NN_RUN(ar, gate_weight(ctx, l, &wc, act));
        return lact_linear_backward(ctx, ar, dx, true, &both, NULL, &dz2, &x2, &wc);
    }
    lact_tensor dwc;
    LACT_TRY(LACT_NN_ALLOC(ar, &dwc, 4 * H, D));
    if (ar->measuring) return LACT_OK;
    LACT_TRY(gate_weight(ctx, l, &wc, act));
    if (dx) {
        lact_tensor dx2 = LACT_NN_VIEW(dx, R, D);
        LACT_TRY(lact_matmul_forward(ctx, &dx2, &dz2, &wc, false, false, 1.0f, 1.0f));
    }
    LACT_TRY(lact_matmul_forward(ctx, &dwc, &dz2, &x2, true, false, 1.0f, 0.0f));
    int64_t w1[2] = {3 * H, D}, w2[2] = {H, D};
    lact_tensor a = lact_ttt_slice(&dwc, 0, 2, w1), b = lact_ttt_slice(&dwc, 3 * H * D, 2, w2);
    LACT_TRY(lact_nn_accumulate(ctx, &p->items[l->lr_w].g, &a));
    return lact_nn_accumulate(ctx, &p->items[l->mom_w].g, &b);
}

lact_status lact_ttt_layer_gates_backward(lact_ctx *ctx, lact_arena *ar, const lact_ttt_layer *l,
                                          const lact_ttt_layer_saved *s, lact_tensor *dx,
                                          const lact_tensor *dlr, const lact_tensor *dmom) {
    int64_t B = s->B, L = s->L, H = l->cfg.heads, N = B * H;
    lact_params *p = l->params;
    lact_dtype act = s->x.dtype;
    float shift = lact_nn_inv_softplus(l->cfg.base_lr);
    size_t mark = lact_arena_mark(ar);
    /* dz in the activations' dtype: the products read it so */
    lact_tensor dz;
    if (!l->cfg.momentum) {
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dz, B, L, 3 * H));
        LACT_NN_RUN(ar, lact_gates_backward(ctx, &dz, &p->items[l->lr_b].g, NULL, dlr, NULL,
                                            &s->zlr, NULL, shift));
        LACT_TRY(lact_linear_backward(ctx, ar, dx, true, &p->items[l->lr_w].g, NULL, &dz, &s->x,
                                      lact_param_mm(&p->items[l->lr_w], act)));
        lact_arena_release(ar, mark);
        return LACT_OK;
    }
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dz, B, L, 4 * H));
    /* s->zlr and s->zm are the two parts of one [4, N, L] tensor */
    lact_tensor zg =
        lact_tensor_view(s->zlr.data, LACT_F32, s->zlr.device, 3, (int64_t[]){4, N, L});
    LACT_NN_RUN(ar, lact_gates_backward(ctx, &dz, &p->items[l->lr_b].g, &p->items[l->mom_b].g, dlr,
                                        dmom, &zg, &s->mom, shift));
    LACT_TRY(gates_product_backward(ctx, ar, l, s, dx, &dz));
    lact_arena_release(ar, mark);
    return LACT_OK;
}
