#include "core/nn/mlp.h"

#include "core/nn/linear.h"
#include "core/nn/nn_ops.h"
#include "kernels/kernels.h"

lact_status lact_mlp_declare(lact_mlp *m, lact_params *p, const char *prefix, int64_t dim,
                             int64_t hidden, float init_std, float out_std) {
    if (dim < 1 || hidden < 1)
        return lact_fail(LACT_E_ARG, "%s: dim %lld and hidden %lld must be positive", prefix,
                         (long long)dim, (long long)hidden);
    m->dim = dim, m->hidden = hidden, m->params = p;
    char name[LACT_PARAM_NAME_MAX];
    int64_t in_shape[2] = {hidden, dim}, out_shape[2] = {dim, hidden};
    LACT_TRY(lact_params_join(name, sizeof name, prefix, "w_gate"));
    LACT_TRY(lact_params_declare(p, name, 2, in_shape, lact_init_normal(init_std), &m->w_gate));
    LACT_TRY(lact_params_join(name, sizeof name, prefix, "w_up"));
    LACT_TRY(lact_params_declare(p, name, 2, in_shape, lact_init_normal(init_std), &m->w_up));
    LACT_TRY(lact_params_join(name, sizeof name, prefix, "w_down"));
    return lact_params_declare(p, name, 2, out_shape, lact_init_normal(out_std), &m->w_down);
}

/* Whether the store keeps w_gate and w_up side by side (declared in a row;
 * the store puts the matrices together unless padding parts them), so that
 * [w_gate; w_up] is one [2F, D] weight: one product for a and b, one for
 * dx and one for the two weights' gradient. */
static bool gate_up_adjacent(const lact_mlp *m) {
    const lact_param *a = &m->params->items[m->w_gate], *b = &m->params->items[m->w_up];
    return b->offset == a->offset + lact_tensor_numel(&a->w);
}

static lact_tensor gate_up_view(const lact_tensor *first, int64_t F, int64_t D) {
    return lact_tensor_view(first->data, first->dtype, first->device, 2, (int64_t[]){2 * F, D});
}

lact_status lact_mlp_forward(lact_ctx *ctx, lact_mlp *m, lact_arena *arena, lact_mlp_saved *s,
                             lact_tensor *y, const lact_tensor *x, const lact_tensor *res) {
    int64_t n = lact_tensor_numel(x) / m->dim, F = m->hidden;
    if (lact_tensor_numel(x) != n * m->dim || lact_tensor_numel(y) != n * m->dim ||
        (res && lact_tensor_numel(res) != n * m->dim))
        return lact_fail(LACT_E_ARG, "mlp: x, y (and res) must hold rows of %lld",
                         (long long)m->dim);
    LACT_TRY(lact_nn_check_act(m->params, x, "mlp"));
    lact_param *it = m->params->items;
    lact_dtype act = x->dtype;
    s->x = LACT_NN_VIEW(x, n, m->dim);
    lact_tensor y2 = LACT_NN_VIEW(y, n, m->dim);
    s->a = s->b = s->ab = (lact_tensor){0};
    if (gate_up_adjacent(m)) {
        LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &s->ab, n, 2 * F));
        LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &s->s, n, F));
        lact_tensor w = gate_up_view(lact_param_mm(&it[m->w_gate], act), F, m->dim);
        LACT_NN_RUN(arena, lact_linear_forward(ctx, &s->ab, &s->x, &w, NULL));
        LACT_NN_RUN(arena, lact_swiglu_packed_forward(ctx, &s->s, &s->ab));
    } else {
        LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &s->a, n, F));
        LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &s->b, n, F));
        LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &s->s, n, F));
        LACT_NN_RUN(arena, lact_linear_forward(ctx, &s->a, &s->x,
                                               lact_param_mm(&it[m->w_gate], act), NULL));
        LACT_NN_RUN(arena,
                    lact_linear_forward(ctx, &s->b, &s->x, lact_param_mm(&it[m->w_up], act), NULL));
        LACT_NN_RUN(arena, lact_swiglu_forward(ctx, &s->s, &s->a, &s->b));
    }
    lact_tensor r2 = res ? LACT_NN_VIEW(res, n, m->dim) : (lact_tensor){0};
    LACT_NN_RUN(arena, lact_linear_forward_add(ctx, &y2, &s->s, lact_param_mm(&it[m->w_down], act),
                                               res ? &r2 : NULL));
    return LACT_OK;
}

lact_status lact_mlp_backward(lact_ctx *ctx, lact_mlp *m, lact_arena *arena,
                              const lact_mlp_saved *s, lact_tensor *dx, const lact_tensor *dy) {
    int64_t n = lact_tensor_rows(&s->x), F = m->hidden;
    lact_param *it = m->params->items;
    lact_dtype act = s->x.dtype;
    size_t mark = lact_arena_mark(arena);
    lact_tensor ds;
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &ds, n, F));
    lact_tensor dy2 = LACT_NN_VIEW(dy, n, m->dim);
    LACT_NN_RUN(arena, lact_linear_backward(ctx, arena, &ds, false, &it[m->w_down].g, NULL, &dy2,
                                            &s->s, lact_param_mm(&it[m->w_down], act)));
    lact_tensor dx2, *dxp = NULL;
    if (dx) {
        dx2 = LACT_NN_VIEW(dx, n, m->dim);
        dxp = &dx2;
    }
    if (s->ab.ndim) {
        lact_tensor dab;
        LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &dab, n, 2 * F));
        LACT_NN_RUN(arena, lact_swiglu_packed_backward(ctx, &dab, &ds, &s->ab));
        lact_tensor w = gate_up_view(lact_param_mm(&it[m->w_gate], act), F, m->dim);
        lact_tensor g = gate_up_view(&it[m->w_gate].g, F, m->dim);
        LACT_NN_RUN(arena, lact_linear_backward(ctx, arena, dxp, false, &g, NULL, &dab, &s->x, &w));
    } else {
        lact_tensor da, db;
        LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &da, n, F));
        LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &db, n, F));
        LACT_NN_RUN(arena, lact_swiglu_backward(ctx, &da, &db, &ds, &s->a, &s->b));
        LACT_NN_RUN(arena, lact_linear_backward(ctx, arena, dxp, false, &it[m->w_gate].g, NULL, &da,
                                                &s->x, lact_param_mm(&it[m->w_gate], act)));
        LACT_NN_RUN(arena, lact_linear_backward(ctx, arena, dxp, true, &it[m->w_up].g, NULL, &db,
                                                &s->x, lact_param_mm(&it[m->w_up], act)));
    }
    lact_arena_release(arena, mark);
    return LACT_OK;
}
