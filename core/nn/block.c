#include "core/nn/block.h"

#include <string.h>

#include "core/nn/nn_ops.h"
#include "kernels/kernels.h"

bool lact_mixer_parse(const char *name, lact_mixer *out) {
    if (!strcmp(name, "lact"))
        *out = LACT_MIXER_LACT;
    else if (!strcmp(name, "attention") || !strcmp(name, "attn"))
        *out = LACT_MIXER_ATTENTION;
    else if (!strcmp(name, "mesa"))
        *out = LACT_MIXER_MESA;
    else
        return false;
    return true;
}

const char *lact_mixer_name(lact_mixer m) {
    return m == LACT_MIXER_LACT        ? "lact"
           : m == LACT_MIXER_ATTENTION ? "attention"
           : m == LACT_MIXER_MESA      ? "mesa"
                                       : "unknown";
}

lact_status lact_block_declare(lact_block *b, lact_params *p, const char *prefix,
                               const lact_block_cfg *cfg) {
    memset(b, 0, sizeof *b);
    b->cfg = *cfg;
    b->params = p;
    char name[LACT_PARAM_NAME_MAX];
    int64_t shape[1] = {cfg->dim};
    LACT_TRY(lact_params_join(name, sizeof name, prefix, "norm1"));
    LACT_TRY(lact_params_declare(p, name, 1, shape, lact_init_ones(), &b->norm1));
    switch (cfg->mixer) {
    case LACT_MIXER_LACT:
        LACT_TRY(lact_params_join(name, sizeof name, prefix, "lact"));
        LACT_TRY(lact_ttt_layer_declare(&b->lact, p, name, &cfg->lact));
        break;
    case LACT_MIXER_ATTENTION:
        LACT_TRY(lact_params_join(name, sizeof name, prefix, "attn"));
        LACT_TRY(lact_attn_layer_declare(&b->attn, p, name, &cfg->attn));
        break;
    case LACT_MIXER_MESA:
        LACT_TRY(lact_params_join(name, sizeof name, prefix, "mesa"));
        LACT_TRY(lact_mesa_layer_declare(&b->mesa, p, name, &cfg->mesa));
        break;
    default:
        return lact_fail(LACT_E_ARG, "%s: mixer %d is not lact, attention or mesa", prefix,
                         (int)cfg->mixer);
    }
    LACT_TRY(lact_params_join(name, sizeof name, prefix, "norm2"));
    LACT_TRY(lact_params_declare(p, name, 1, shape, lact_init_ones(), &b->norm2));
    LACT_TRY(lact_params_join(name, sizeof name, prefix, "mlp"));
    return lact_mlp_declare(&b->mlp, p, name, cfg->dim, cfg->mlp_hidden, cfg->init_std,
                            cfg->out_std);
}

void lact_block_free(lact_block *b) {
    if (b->cfg.mixer == LACT_MIXER_LACT) lact_ttt_layer_free(&b->lact);
}

/* y = res + mixer(x) */
static lact_status mixer_forward(lact_ctx *ctx, lact_block *b, lact_arena *arena,
                                 lact_block_saved *s, lact_tensor *y, const lact_tensor *x,
                                 const lact_tensor *res) {
    if (b->cfg.mixer == LACT_MIXER_LACT)
        return lact_ttt_layer_forward(ctx, &b->lact, arena, &s->lact, y, x, res);
    if (b->cfg.mixer == LACT_MIXER_MESA)
        return lact_mesa_layer_forward(ctx, &b->mesa, arena, &s->mesa, y, x, res);
    return lact_attn_layer_forward(ctx, &b->attn, arena, &s->attn, y, x, res);
}

static lact_status mixer_backward(lact_ctx *ctx, lact_block *b, lact_arena *arena,
                                  const lact_block_saved *s, lact_tensor *dx,
                                  const lact_tensor *dy) {
    if (b->cfg.mixer == LACT_MIXER_LACT)
        return lact_ttt_layer_backward(ctx, &b->lact, arena, &s->lact, dx, dy);
    if (b->cfg.mixer == LACT_MIXER_MESA)
        return lact_mesa_layer_backward(ctx, &b->mesa, arena, &s->mesa, dx, dy);
    return lact_attn_layer_backward(ctx, &b->attn, arena, &s->attn, dx, dy);
}

lact_status lact_block_forward(lact_ctx *ctx, lact_block *b, lact_arena *arena, lact_block_saved *s,
                               lact_tensor *out, const lact_tensor *x) {
    int64_t B = x->shape[0], L = x->shape[1], D = b->cfg.dim;
    if (x->ndim != 3 || x->shape[2] != D || !lact_tensor_same_shape(x, out))
        return lact_fail(LACT_E_ARG, "block: x and out must both be [B, L, %lld]", (long long)D);
    if (x->dtype != out->dtype)
        return lact_fail(LACT_E_ARG, "block: x is %s, out %s (one activation dtype)",
                         lact_dtype_name(x->dtype), lact_dtype_name(out->dtype));
    lact_param *it = b->params->items;
    lact_dtype act = x->dtype;
    s->x = *x;
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &s->n1, B, L, D));
    LACT_TRY(LACT_NN_ALLOC(arena, &s->rstd1, B * L));
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &s->h, B, L, D));
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &s->n2, B, L, D));
    LACT_TRY(LACT_NN_ALLOC(arena, &s->rstd2, B * L));
    lact_tensor x2 = LACT_NN_VIEW(x, B * L, D), n1 = LACT_NN_VIEW(&s->n1, B * L, D);
    lact_tensor h2 = LACT_NN_VIEW(&s->h, B * L, D), n2 = LACT_NN_VIEW(&s->n2, B * L, D);
    LACT_NN_RUN(arena,
                lact_rmsnorm_forward(ctx, &n1, &s->rstd1, &x2, &it[b->norm1].w, b->cfg.norm_eps));
    /* Both residual adds happen in the output products' epilogues. */
    LACT_TRY(mixer_forward(ctx, b, arena, s, &s->h, &s->n1, x));
    LACT_NN_RUN(arena,
                lact_rmsnorm_forward(ctx, &n2, &s->rstd2, &h2, &it[b->norm2].w, b->cfg.norm_eps));
    LACT_TRY(lact_mlp_forward(ctx, &b->mlp, arena, &s->mlp, out, &s->n2, &s->h));
    return LACT_OK;
}

/* out = res + rmsnorm_backward(dn) in one pass (out may alias res), with
 * the norm weight's gradient accumulated into the store by the same call. */
static lact_status norm_backward_add(lact_ctx *ctx, lact_arena *arena, lact_tensor *out,
                                     const lact_tensor *res, lact_param *w, const lact_tensor *dn,
                                     const lact_tensor *x, const lact_tensor *rstd, int64_t D) {
    int64_t n = lact_tensor_numel(x) / D;
    lact_tensor x2 = LACT_NN_VIEW(x, n, D), dn2 = LACT_NN_VIEW(dn, n, D);
    lact_tensor o2 = LACT_NN_VIEW(out, n, D), r2 = LACT_NN_VIEW(res, n, D);
    LACT_NN_RUN(arena, lact_rmsnorm_backward_acc(ctx, &o2, &w->g, &dn2, &x2, &w->w, rstd, &r2));
    return LACT_OK;
}

lact_status lact_block_backward(lact_ctx *ctx, lact_block *b, lact_arena *arena,
                                const lact_block_saved *s, lact_tensor *dx,
                                const lact_tensor *dout) {
    int64_t B = s->x.shape[0], L = s->x.shape[1], D = b->cfg.dim;
    lact_param *it = b->params->items;
    lact_dtype act = s->x.dtype;
    size_t mark = lact_arena_mark(arena);
    lact_tensor dh, dn;
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &dh, B, L, D));
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &dn, B, L, D));
    /* out = h + mlp(norm2(h)): dh = dout + norm2ᵀ(mlpᵀ(dout)). */
    LACT_TRY(lact_mlp_backward(ctx, &b->mlp, arena, &s->mlp, &dn, dout));
    LACT_TRY(norm_backward_add(ctx, arena, &dh, dout, &it[b->norm2], &dn, &s->h, &s->rstd2, D));
    /* h = x + mixer(norm1(x)): dx = dh + norm1ᵀ(mixerᵀ(dh)). */
    LACT_TRY(mixer_backward(ctx, b, arena, s, &dn, &dh));
    LACT_TRY(norm_backward_add(ctx, arena, dx, &dh, &it[b->norm1], &dn, &s->x, &s->rstd1, D));
    lact_arena_release(arena, mark);
    return LACT_OK;
}
