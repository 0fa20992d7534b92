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
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &s->a, n, F));
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &s->b, n, F));
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &s->s, n, F));
    LACT_NN_RUN(arena,
                lact_linear_forward(ctx, &s->a, &s->x, lact_param_mm(&it[m->w_gate], act), NULL));
    LACT_NN_RUN(arena,
                lact_linear_forward(ctx, &s->b, &s->x, lact_param_mm(&it[m->w_up], act), NULL));
    LACT_NN_RUN(arena, lact_swiglu_forward(ctx, &s->s, &s->a, &s->b));
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
    lact_tensor ds, da, db;
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &ds, n, F));
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &da, n, F));
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &db, n, F));
    lact_tensor dy2 = LACT_NN_VIEW(dy, n, m->dim);
    LACT_NN_RUN(arena, lact_linear_backward(ctx, arena, &ds, false, &it[m->w_down].g, NULL, &dy2,
                                            &s->s, lact_param_mm(&it[m->w_down], act)));
    LACT_NN_RUN(arena, lact_swiglu_backward(ctx, &da, &db, &ds, &s->a, &s->b));
    lact_tensor dx2, *dxp = NULL;
    if (dx) {
        dx2 = LACT_NN_VIEW(dx, n, m->dim);
        dxp = &dx2;
    }
    LACT_NN_RUN(arena, lact_linear_backward(ctx, arena, dxp, false, &it[m->w_gate].g, NULL, &da,
                                            &s->x, lact_param_mm(&it[m->w_gate], act)));
    LACT_NN_RUN(arena, lact_linear_backward(ctx, arena, dxp, true, &it[m->w_up].g, NULL, &db, &s->x,
                                            lact_param_mm(&it[m->w_up], act)));
    lact_arena_release(arena, mark);
    return LACT_OK;
}
