/* The gated attention layer: streaming decode on a key/value cache. The
 * projections, norms and RoPE run on all T new tokens at once; the
 * attention itself runs one token at a time through lact_attention_decode,
 * so each token sees exactly the keys it saw in the full forward. */
#include <string.h>

#include "attn_layer.h"
#include "core/nn/linear.h"
#include "core/nn/nn_ops.h"
#include "kernels/kernels.h"

static int64_t gate_dim(const lact_attn_layer_cfg *c) {
    return c->gate == LACT_ATTN_GATE_HEAD ? 1 : c->head_dim;
}

/* x0 [B, T, h·d] -> (norm, rope at pos0..) -> out [B, T, h, d], in place of
 * the forward's layout change: decode copies rows straight from [B, T, h, d]. */
static lact_status qk_step(lact_ctx *ctx, lact_arena *ar, const lact_attn_layer *l,
                           lact_tensor *out, const lact_tensor *x0, int64_t B, int64_t T, int64_t h,
                           int norm, int64_t pos0) {
    const lact_attn_layer_cfg *c = &l->cfg;
    int64_t d = c->head_dim;
    LACT_TRY(LACT_NN_ALLOC(ar, out, B, T, h, d));
    size_t mark = lact_arena_mark(ar);
    lact_tensor n, rstd, x4 = LACT_NN_VIEW(x0, B, T, h, d);
    const lact_tensor *src = &x4;
    if (c->qk_norm) {
        LACT_TRY(LACT_NN_ALLOC(ar, &n, B, T, h, d));
        LACT_TRY(LACT_NN_ALLOC(ar, &rstd, B * T * h));
        LACT_NN_RUN(
            ar, lact_rmsnorm_forward(ctx, &n, &rstd, &x4, &l->params->items[norm].w, c->norm_eps));
        src = &n;
    }
    if (c->rope)
        LACT_NN_RUN(ar, lact_rope_forward(ctx, out, src, pos0, c->rope_theta));
    else
        LACT_NN_RUN(ar, lact_tensor_copy(out, src));
    lact_arena_release(ar, mark);
    return LACT_OK;
}

static lact_status step_body(lact_ctx *ctx, lact_attn_layer_decode *st, lact_arena *ar,
                             lact_tensor *y, const lact_tensor *x) {
    lact_attn_layer *l = st->layer;
    const lact_attn_layer_cfg *c = &l->cfg;
    lact_params *p = l->params;
    int64_t B = st->batch, T = x->shape[1], H = c->heads, Hk = c->kv_heads, d = c->head_dim;
    int64_t gd = gate_dim(c);
    bool gated = c->gate != LACT_ATTN_GATE_NONE;
    lact_tensor q0, k0, q, k, v, g, u;
    LACT_TRY(LACT_NN_ALLOC(ar, &q0, B, T, H * d));
    LACT_TRY(LACT_NN_ALLOC(ar, &k0, B, T, Hk * d));
    LACT_TRY(LACT_NN_ALLOC(ar, &v, B, T, Hk * d));
    LACT_TRY(LACT_NN_ALLOC(ar, &u, B, T, H * d));
    if (gated) LACT_TRY(LACT_NN_ALLOC(ar, &g, B, T, H * gd));
    LACT_NN_RUN(ar, lact_linear_forward(ctx, &q0, x, &p->items[l->wq].w, NULL));
    LACT_NN_RUN(ar, lact_linear_forward(ctx, &k0, x, &p->items[l->wk].w, NULL));
    LACT_NN_RUN(ar, lact_linear_forward(ctx, &v, x, &p->items[l->wv].w, NULL));
    if (gated)
        LACT_NN_RUN(ar, lact_linear_forward(ctx, &g, x, &p->items[l->wg].w, &p->items[l->bg].w));
    LACT_TRY(qk_step(ctx, ar, l, &q, &q0, B, T, H, l->q_norm, st->pos));
    LACT_TRY(qk_step(ctx, ar, l, &k, &k0, B, T, Hk, l->k_norm, st->pos));
    if (!ar->measuring) {
        lact_tensor v4 = LACT_NN_VIEW(&v, B, T, Hk, d), u4 = LACT_NN_VIEW(&u, B, T, H, d);
        lact_tensor g4 = gated ? LACT_NN_VIEW(&g, B, T, H, gd) : (lact_tensor){0};
        for (int64_t t = 0; t < T; t++)
            LACT_TRY(lact_kv_cache_attend(ctx, &st->cache, st->pos + t, t, LACT_KV_TOKEN_MAJOR, &q,
                                          &k, &v4, gated ? &g4 : NULL, &u4, &c->mask));
    }
    LACT_NN_RUN(ar, lact_linear_forward(ctx, y, &u, &p->items[l->wo].w, NULL));
    return LACT_OK;
}

static lact_status init_all(lact_ctx *ctx, lact_attn_layer_decode *st) {
    const lact_attn_layer_cfg *c = &st->layer->cfg;
    int64_t B = st->batch;
    /* With the window mask the cache is a ring of the window's slots. */
    int64_t capacity = st->max_context;
    if (c->mask.mask == LACT_ATTN_WINDOW && c->mask.window < capacity) capacity = c->mask.window;
    LACT_TRY(lact_kv_cache_init(&st->cache, ctx->device, B, c->heads, c->kv_heads, capacity,
                                c->head_dim, c->gate != LACT_ATTN_GATE_NONE ? gate_dim(c) : 0));
    int64_t shape[3] = {B, st->max_tokens, c->dim};
    lact_tensor x = lact_tensor_view(NULL, LACT_F32, ctx->device, 3, shape);
    lact_tensor y = lact_tensor_view(NULL, LACT_F32, ctx->device, 3, shape);
    lact_arena m;
    lact_arena_init_measure(&m, ctx->device);
    LACT_TRY(step_body(ctx, st, &m, &y, &x));
    return lact_arena_init(&st->arena, ctx->device, m.peak);
}

lact_status lact_attn_layer_decode_init(lact_ctx *ctx, lact_attn_layer *l,
                                        lact_attn_layer_decode *st, int64_t batch,
                                        int64_t max_tokens, int64_t max_context) {
    const char *what = "attention layer decode";
    memset(st, 0, sizeof *st);
    LACT_TRY(lact_nn_decode_check(ctx, l->params, batch, max_tokens, what));
    const lact_attn_args *mask = &l->cfg.mask;
    if (mask->mask != LACT_ATTN_CAUSAL && mask->mask != LACT_ATTN_WINDOW)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: needs the causal or window mask (mask %d lets a token see "
                         "later ones)",
                         what, (int)mask->mask);
    if (max_context < 1)
        return lact_fail(LACT_E_ARG, "%s: max_context %lld must be positive", what,
                         (long long)max_context);
    st->layer = l;
    st->batch = batch;
    st->max_tokens = max_tokens;
    st->max_context = max_context;
    lact_status s = init_all(ctx, st);
    if (s != LACT_OK) lact_attn_layer_decode_free(st);
    return s;
}

void lact_attn_layer_decode_free(lact_attn_layer_decode *st) {
    if (!st) return;
    lact_kv_cache_free(&st->cache);
    lact_arena_free(&st->arena);
    memset(st, 0, sizeof *st);
}

lact_status lact_attn_layer_decode_step(lact_ctx *ctx, lact_attn_layer_decode *st, lact_tensor *y,
                                        const lact_tensor *x) {
    const char *what = "attention layer decode";
    if (!st || !st->layer) return lact_fail(LACT_E_ARG, "%s: the state is not initialised", what);
    int64_t D = st->layer->cfg.dim;
    if (ctx->device != st->arena.device || x->device != ctx->device || y->device != ctx->device ||
        x->dtype != LACT_F32 || y->dtype != LACT_F32 || x->ndim != 3 || x->shape[2] != D ||
        !lact_tensor_same_shape(x, y) || !lact_tensor_is_contiguous(x) ||
        !lact_tensor_is_contiguous(y))
        return lact_fail(LACT_E_ARG,
                         "%s: x and y must be contiguous F32 [B, T, %lld] on the state's device "
                         "(%s)",
                         what, (long long)D, lact_device_name(st->arena.device));
    int64_t T = x->shape[1];
    if (x->shape[0] != st->batch || T < 1 || T > st->max_tokens)
        return lact_fail(LACT_E_ARG,
                         "%s: x has %lld sequences of %lld tokens; the state holds %lld "
                         "sequences and steps of 1 to %lld tokens",
                         what, (long long)x->shape[0], (long long)T, (long long)st->batch,
                         (long long)st->max_tokens);
    if (st->layer->cfg.mask.mask == LACT_ATTN_CAUSAL && st->pos + T > st->max_context)
        return lact_fail(LACT_E_ARG,
                         "%s: %lld tokens would pass the context of %lld the cache "
                         "was sized for",
                         what, (long long)(st->pos + T), (long long)st->max_context);
    lact_arena_reset(&st->arena);
    LACT_TRY(step_body(ctx, st, &st->arena, y, x));
    st->pos += T;
    return LACT_OK;
}
