/* The LaCT layer's learning-rate and momentum gates, forward and backward.
 *
 * lr = softplus(x W_lrᵀ + b_lr + shift) [3, B·H, L] and, with momentum,
 * mom = sigmoid(x W_mᵀ + b_m) [B·H, L], F32 (the ttt op's rule; with BF16
 * activations the projections write F32). The two projections are skinny
 * (3H and H outputs) and cost what reading x costs, so with momentum they
 * run as one [4H, D] product: its weight is a view of the parameter store,
 * which keeps the two matrices side by side (the biases, a few floats, are
 * copied next to each other), its [B, L, 4H] output is permuted once into
 * [4, B·H, L], whose first three slices are the rate logits and whose last
 * is the momentum logits, and the backward runs one product for d_x and one
 * for the weights' gradient, split back over the two parameters. */
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

/* wc [4H, D] (the activations' dtype) and, when given, bc [4H] F32: the
 * rate projection's rows, then the momentum projection's; wc is a view of
 * the store where the two lie side by side (gates_adjacent), else it is
 * filled. */
static lact_status gate_params(lact_ctx *ctx, const lact_ttt_layer *l, lact_tensor *wc,
                               lact_tensor *bc, lact_dtype act) {
    lact_params *p = l->params;
    int64_t H = l->cfg.heads, D = l->cfg.dim;
    int64_t s1[2] = {3 * H, D}, s2[2] = {H, D};
    if (gates_adjacent(l)) {
        const lact_tensor *w = lact_param_mm(&p->items[l->lr_w], act);
        *wc = lact_tensor_view(w->data, w->dtype, w->device, 2, (int64_t[]){4 * H, D});
    } else {
        lact_tensor a = lact_ttt_slice(wc, 0, 2, s1), b = lact_ttt_slice(wc, 3 * H * D, 2, s2);
        LACT_TRY(lact_scale_forward(ctx, &a, lact_param_mm(&p->items[l->lr_w], act), 1.0f));
        LACT_TRY(lact_scale_forward(ctx, &b, lact_param_mm(&p->items[l->mom_w], act), 1.0f));
    }
    if (!bc) return LACT_OK;
    int64_t n1 = 3 * H, n2 = H;
    lact_tensor c = lact_ttt_slice(bc, 0, 1, &n1), d = lact_ttt_slice(bc, 3 * H, 1, &n2);
    LACT_TRY(lact_scale_forward(ctx, &c, &p->items[l->lr_b].w, 1.0f));
    return lact_scale_forward(ctx, &d, &p->items[l->mom_b].w, 1.0f);
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
        lact_tensor z, t;
        LACT_TRY(LACT_NN_ALLOC(ar, &z, B, L, 3 * H));
        LACT_TRY(LACT_NN_ALLOC(ar, &t, B, 3 * H, L));
        LACT_NN_RUN(ar, lact_linear_forward(ctx, &z, x, lact_param_mm(&p->items[l->lr_w], x->dtype),
                                            &p->items[l->lr_b].w));
        /* [B, L, (i, h)] -> [B, (i, h), L] -> [i, (B, h), L] */
        LACT_NN_RUN(ar, lact_nn_permute(ctx, &t, &z, B, L, 3 * H, 1));
        LACT_NN_RUN(ar, lact_nn_permute(ctx, &s->zlr, &t, 1, B, 3, H * L));
        LACT_NN_RUN(ar, lact_softplus_forward(ctx, &s->lr, &s->zlr, shift));
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
    lact_tensor wc, bc, z, t;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, x->dtype, &wc, 4 * H, D));
    LACT_TRY(LACT_NN_ALLOC(ar, &bc, 4 * H));
    LACT_TRY(LACT_NN_ALLOC(ar, &z, B, L, 4 * H));
    LACT_TRY(LACT_NN_ALLOC(ar, &t, B, 4 * H, L));
    LACT_NN_RUN(ar, gate_params(ctx, l, &wc, &bc, x->dtype));
    LACT_NN_RUN(ar, lact_linear_forward(ctx, &z, x, &wc, &bc));
    /* [B, L, (i, h)] -> [B, (i, h), L] -> [i, (B, h), L], i < 4 */
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &t, &z, B, L, 4 * H, 1));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &zg, &t, 1, B, 4, H * L));
    LACT_NN_RUN(ar, lact_softplus_forward(ctx, &s->lr, &s->zlr, shift));
    LACT_NN_RUN(ar, lact_sigmoid_forward(ctx, &s->mom, &s->zm));
    lact_arena_release(ar, mark);
    return LACT_OK;
}

/* The combined product's backward: dx += dz wc, dwc = dzᵀ x, dbc = Σ dz
 * (dz [B·L, 4H] F32, read by the products in the activations' dtype), then
 * the four slices into the parameters' gradients. */
static lact_status gates_product_backward(lact_ctx *ctx, lact_arena *ar, const lact_ttt_layer *l,
                                          const lact_ttt_layer_saved *s, lact_tensor *dx,
                                          const lact_tensor *dz) {
    int64_t H = l->cfg.heads, D = l->cfg.dim, R = s->B * s->L;
    lact_params *p = l->params;
    lact_dtype act = s->x.dtype;
    lact_tensor wc, dzc, dwc, dbc;
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &wc, 4 * H, D));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &dzc, R, 4 * H));
    LACT_TRY(LACT_NN_ALLOC(ar, &dwc, 4 * H, D));
    LACT_TRY(LACT_NN_ALLOC(ar, &dbc, 4 * H));
    if (ar->measuring) return LACT_OK;
    lact_tensor x2 = LACT_NN_VIEW(&s->x, R, D), dz2 = LACT_NN_VIEW(dz, R, 4 * H);
    LACT_TRY(gate_params(ctx, l, &wc, NULL, act));
    const lact_tensor *dzp = &dz2;
    if (act != LACT_F32) {
        LACT_TRY(lact_cast_forward(ctx, &dzc, &dz2));
        dzp = &dzc;
    }
    if (dx) {
        lact_tensor dx2 = LACT_NN_VIEW(dx, R, D);
        LACT_TRY(lact_matmul_forward(ctx, &dx2, dzp, &wc, false, false, 1.0f, 1.0f));
    }
    LACT_TRY(lact_matmul_forward(ctx, &dwc, dzp, &x2, true, false, 1.0f, 0.0f));
    LACT_TRY(lact_add_backward(ctx, NULL, &dbc, &dz2));
    int64_t w1[2] = {3 * H, D}, w2[2] = {H, D}, b1 = 3 * H, b2 = H;
    lact_tensor c = lact_ttt_slice(&dbc, 0, 1, &b1), d = lact_ttt_slice(&dbc, 3 * H, 1, &b2);
    if (gates_adjacent(l)) {
        const lact_tensor *g = &p->items[l->lr_w].g;
        lact_tensor both = lact_tensor_view(g->data, LACT_F32, g->device, 2, (int64_t[]){4 * H, D});
        LACT_TRY(lact_nn_accumulate(ctx, &both, &dwc));
    } else {
        lact_tensor a = lact_ttt_slice(&dwc, 0, 2, w1), b = lact_ttt_slice(&dwc, 3 * H * D, 2, w2);
        LACT_TRY(lact_nn_accumulate(ctx, &p->items[l->lr_w].g, &a));
        LACT_TRY(lact_nn_accumulate(ctx, &p->items[l->mom_w].g, &b));
    }
    LACT_TRY(lact_nn_accumulate(ctx, &p->items[l->lr_b].g, &c));
    return lact_nn_accumulate(ctx, &p->items[l->mom_b].g, &d);
}

lact_status lact_ttt_layer_gates_backward(lact_ctx *ctx, lact_arena *ar, const lact_ttt_layer *l,
                                          const lact_ttt_layer_saved *s, lact_tensor *dx,
                                          const lact_tensor *dlr, const lact_tensor *dmom) {
    int64_t B = s->B, L = s->L, H = l->cfg.heads, N = B * H;
    lact_params *p = l->params;
    float shift = lact_nn_inv_softplus(l->cfg.base_lr);
    size_t mark = lact_arena_mark(ar);
    if (!l->cfg.momentum) {
        lact_tensor dz, t, zb;
        LACT_TRY(LACT_NN_ALLOC(ar, &dz, 3, N, L));
        LACT_TRY(LACT_NN_ALLOC(ar, &t, B, 3 * H, L));
        LACT_TRY(LACT_NN_ALLOC(ar, &zb, B, L, 3 * H));
        LACT_NN_RUN(ar, lact_softplus_backward(ctx, &dz, dlr, &s->zlr, shift));
        LACT_NN_RUN(ar, lact_nn_permute(ctx, &t, &dz, 1, 3, B, H * L));
        LACT_NN_RUN(ar, lact_nn_permute(ctx, &zb, &t, B, 3 * H, L, 1));
        LACT_TRY(lact_linear_backward(ctx, ar, dx, true, &p->items[l->lr_w].g, &p->items[l->lr_b].g,
                                      &zb, &s->x, lact_param_mm(&p->items[l->lr_w], s->x.dtype)));
        lact_arena_release(ar, mark);
        return LACT_OK;
    }
    lact_tensor dg, t, zb;
    LACT_TRY(LACT_NN_ALLOC(ar, &dg, 4, N, L));
    LACT_TRY(LACT_NN_ALLOC(ar, &t, B, 4 * H, L));
    LACT_TRY(LACT_NN_ALLOC(ar, &zb, B, L, 4 * H));
    int64_t s3[3] = {3, N, L}, s2[2] = {N, L};
    lact_tensor dz = lact_ttt_slice(&dg, 0, 3, s3), dzm = lact_ttt_slice(&dg, 3 * N * L, 2, s2);
    LACT_NN_RUN(ar, lact_softplus_backward(ctx, &dz, dlr, &s->zlr, shift));
    LACT_NN_RUN(ar, lact_sigmoid_backward(ctx, &dzm, dmom, &s->mom));
    /* [i, (B, h), L] -> [B, (i, h), L] -> [B, L, (i, h)] */
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &t, &dg, 1, 4, B, H * L));
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &zb, &t, B, 4 * H, L, 1));
    LACT_TRY(gates_product_backward(ctx, ar, l, s, dx, &zb));
    lact_arena_release(ar, mark);
    return LACT_OK;
}
