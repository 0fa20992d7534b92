/* The LaCT layer: configuration, parameters and the forward pass. */
#include "ttt_layer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/linear.h"
#include "core/nn/nn_ops.h"
#include "kernels/attention.h"
#include "kernels/headprep.h"
#include "kernels/kernels.h"
#include "ttt_layer_internal.h"

lact_ttt_layer_cfg lact_ttt_layer_defaults(int64_t dim, int64_t heads) {
    lact_ttt_layer_cfg c;
    memset(&c, 0, sizeof c);
    c.dim = dim;
    c.heads = heads;
    c.inter_multi = 2;
    c.chunk = 2048;
    c.base_lr = 1e-3f;
    c.momentum = true;
    c.muon = LACT_TTT_MUON_TABLE;
    c.rope = true;
    c.rope_theta = 10000.0f;
    c.window_attn = true;
    c.window = 2048;
    c.init_std = 0.02f;
    c.norm_eps = 1e-5f;
    return c;
}

static lact_status check_cfg(const lact_ttt_layer_cfg *c, const char *prefix) {
    if (c->dim < 1 || c->heads < 1 || c->dim % c->heads != 0)
        return lact_fail(LACT_E_ARG, "%s: dim %lld is not a positive multiple of heads %lld",
                         prefix, (long long)c->dim, (long long)c->heads);
    if (c->inter_multi < 1 || c->chunk < 1)
        return lact_fail(LACT_E_ARG, "%s: inter_multi %lld and chunk %lld must be positive",
                         prefix, (long long)c->inter_multi, (long long)c->chunk);
    if (!(c->base_lr > 0.0f) || !isfinite(lact_nn_inv_softplus(c->base_lr)))
        return lact_fail(LACT_E_ARG, "%s: base_lr %g must be positive", prefix,
                         (double)c->base_lr);
    if (c->rope && ((c->dim / c->heads) % 2 != 0 || !(c->rope_theta > 0.0f)))
        return lact_fail(LACT_E_ARG, "%s: RoPE needs an even head dim and theta > 0", prefix);
    if (c->order == LACT_TTT_LAYER_CUSTOM) {
        if (!c->ops || c->n_ops < 1)
            return lact_fail(LACT_E_ARG, "%s: the custom order has no operations", prefix);
        for (int64_t j = 0; j < c->n_ops; j++) {
            const lact_ttt_op *op = &c->ops[j];
            if (op->start < 0 || op->end <= op->start || (!op->update && !op->apply))
                return lact_fail(LACT_E_ARG,
                                 "%s: custom operation %lld covers [%lld, %lld) with update %d "
                                 "apply %d: it needs a non-empty range and something to do",
                                 prefix, (long long)j, (long long)op->start, (long long)op->end,
                                 (int)op->update, (int)op->apply);
        }
    } else if (c->order == LACT_TTT_LAYER_BIDIRECTIONAL) {
        if (c->n_ctx < 0)
            return lact_fail(LACT_E_ARG, "%s: n_ctx %lld must be ≥ 0 (0: every token)", prefix,
                             (long long)c->n_ctx);
    } else if (c->order != LACT_TTT_LAYER_CAUSAL) {
        return lact_fail(LACT_E_ARG, "%s: order %d is not causal (0), bidirectional (1) or "
                         "custom (2)", prefix, (int)c->order);
    }
    /* Only the causal order pairs the fast path with a window; the others
     * use full attention (lact_ttt_layer_attn_args). */
    if (c->order == LACT_TTT_LAYER_CAUSAL && c->window_attn && c->window < c->chunk)
        return lact_fail(LACT_E_ARG,
                         "%s: the attention window %lld is shorter than the chunk %lld (tokens "
                         "of a chunk would see each other through neither path)",
                         prefix, (long long)c->window, (long long)c->chunk);
    if (!(c->init_std >= 0.0f) || !(c->norm_eps > 0.0f))
        return lact_fail(LACT_E_ARG, "%s: init_std must be ≥ 0 and norm_eps > 0", prefix);
    return LACT_OK;
}

#define DECL(name, init, id, ...) LACT_PARAMS_DECL(p, prefix, name, init, id, __VA_ARGS__)

lact_status lact_ttt_layer_declare(lact_ttt_layer *l, lact_params *p, const char *prefix,
                                   const lact_ttt_layer_cfg *cfg) {
    memset(l, 0, sizeof *l);
    LACT_TRY(check_cfg(cfg, prefix));
    l->cfg = *cfg;
    l->params = p;
    l->mom_w = l->mom_b = -1;
    if (cfg->order == LACT_TTT_LAYER_CUSTOM) {
        /* The layer owns its copy: the caller's list may be temporary. */
        l->custom = malloc((size_t)cfg->n_ops * sizeof *l->custom);
        if (!l->custom)
            return lact_fail(LACT_E_NOMEM, "%s: custom order of %lld operations", prefix,
                             (long long)cfg->n_ops);
        memcpy(l->custom, cfg->ops, (size_t)cfg->n_ops * sizeof *l->custom);
        l->cfg.ops = l->custom;
    } else {
        l->cfg.ops = NULL;
        l->cfg.n_ops = 0;
    }
    int64_t D = cfg->dim, H = cfg->heads, d = D / H, dh = d * cfg->inter_multi;
    lact_init proj = lact_init_normal(cfg->init_std);
    DECL("wq", proj, &l->wq, D, D);
    DECL("wk", proj, &l->wk, D, D);
    DECL("wv", proj, &l->wv, D, D);
    DECL("q_scale", lact_init_ones(), &l->q_scale, D);
    DECL("q_offset", lact_init_zeros(), &l->q_offset, D);
    DECL("k_scale", lact_init_ones(), &l->k_scale, D);
    DECL("k_offset", lact_init_zeros(), &l->k_offset, D);
    DECL("lr_w", proj, &l->lr_w, 3 * H, D);
    DECL("lr_b", lact_init_zeros(), &l->lr_b, 3 * H);
    if (cfg->momentum) {
        DECL("mom_w", proj, &l->mom_w, H, D);
        DECL("mom_b", lact_init_zeros(), &l->mom_b, H);
    }
    /* The spec's N(0, 1/fan_in) for the initial fast weights. */
    DECL("w0", lact_init_normal(1.0f / sqrtf((float)d)), &l->w0, H, dh, d);
    DECL("w1", lact_init_normal(1.0f / sqrtf((float)dh)), &l->w1, H, d, dh);
    DECL("w2", lact_init_normal(1.0f / sqrtf((float)d)), &l->w2, H, dh, d);
    DECL("o_norm", lact_init_ones(), &l->o_norm, d);
    DECL("wo", proj, &l->wo, D, D);
    return LACT_OK;
}

void lact_ttt_layer_free(lact_ttt_layer *l) {
    if (!l) return;
    free(l->ops);
    free(l->custom);
    l->ops = l->custom = NULL;
    l->cfg.ops = NULL;
    l->n_ops = l->ops_cap = l->ops_len = 0;
}

/* Writes the order for len into ops (NULL: count only); returns how many. */
static int64_t build_order(const lact_ttt_layer_cfg *c, lact_ttt_op *ops, int64_t cap,
                           int64_t len) {
    if (c->order == LACT_TTT_LAYER_BIDIRECTIONAL)
        return lact_ttt_order_bidirectional(ops, cap, len, c->n_ctx ? c->n_ctx : len, c->chunk);
    return lact_ttt_order_causal(ops, cap, len, c->chunk);
}

lact_status lact_ttt_layer_order(lact_ttt_layer *l, int64_t len, lact_dtype act,
                                 lact_ttt_args *args) {
    const lact_ttt_layer_cfg *c = &l->cfg;
    args->muon = c->muon;
    args->save_every = 1;
    /* BF16 activations run on CUDA, whose fused iteration keeps the
     * iterates for the backward (the room is unused elsewhere); without
     * Muon their snapshots are BF16 too, the type the products read (half
     * the state). With Muon an iteration run again in the backward would
     * start from the rounded momentum and amplify it (docs/ttt.md). */
    args->keep_ns = act == LACT_BF16;
    args->state_bf16 = act == LACT_BF16 && c->muon == LACT_TTT_MUON_OFF;
    if (c->order == LACT_TTT_LAYER_CUSTOM) {
        args->ops = l->custom;
        args->n_ops = c->n_ops;
        return lact_ttt_check_args(args, len);
    }
    if (c->order == LACT_TTT_LAYER_BIDIRECTIONAL && c->n_ctx > len)
        return lact_fail(LACT_E_ARG, "ttt layer: %lld context tokens to update on, but the "
                         "sequence has only %lld", (long long)c->n_ctx, (long long)len);
    if (l->ops_len != len) {
        int64_t n = build_order(c, NULL, 0, len);
        if (n > l->ops_cap) {
            lact_ttt_op *ops = realloc(l->ops, (size_t)n * sizeof *ops);
            if (!ops) return lact_fail(LACT_E_NOMEM, "ttt layer: order of %lld operations",
                                       (long long)n);
            l->ops = ops;
            l->ops_cap = n;
        }
        l->n_ops = build_order(c, l->ops, l->ops_cap, len);
        l->ops_len = len;
    }
    args->ops = l->ops;
    args->n_ops = l->n_ops;
    return LACT_OK;
}

lact_attn_args lact_ttt_layer_attn_args(const lact_ttt_layer *l) {
    if (l->cfg.order == LACT_TTT_LAYER_CAUSAL)
        return (lact_attn_args){LACT_ATTN_WINDOW, l->cfg.window, 0, 0.0f};
    return (lact_attn_args){LACT_ATTN_FULL, 0, 0, 0.0f};
}

lact_status lact_ttt_layer_inputs(lact_ctx *ctx, lact_ttt_layer *l, lact_arena *ar,
                                  lact_ttt_layer_saved *s, const lact_tensor *x, int64_t pos0) {
    const lact_ttt_layer_cfg *c = &l->cfg;
    lact_params *p = l->params;
    int64_t D = c->dim, H = c->heads, d = D / H, B = s->B, L = s->L, N = B * H;
    lact_dtype act = x->dtype;

    /* Projections z = x W{q,k,v}ᵀ; then, per head, q and k through SiLU,
     * scale/offset, L2 norm and RoPE into the ttt op's [B·H, L, d] (and
     * through SiLU and RoPE into the attention branch's [B, H, L, d]), v
     * through SiLU: one headprep op each. */
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->zq, B, L, D));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->zk, B, L, D));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->zv, B, L, D));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->qf, N, L, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->kf, N, L, d));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->v, N, L, d));
    if (c->window_attn) {
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->qa, B, H, L, d));
        LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->ka, B, H, L, d));
    }
    LACT_NN_RUN(ar,
                lact_linear_forward(ctx, &s->zq, x, lact_param_mm(&p->items[l->wq], act), NULL));
    LACT_NN_RUN(ar,
                lact_linear_forward(ctx, &s->zk, x, lact_param_mm(&p->items[l->wk], act), NULL));
    LACT_NN_RUN(ar,
                lact_linear_forward(ctx, &s->zv, x, lact_param_mm(&p->items[l->wv], act), NULL));
    float theta = lact_ttt_layer_theta(l);
    lact_tensor zq = LACT_NN_VIEW(&s->zq, B, L, H, d), zk = LACT_NN_VIEW(&s->zk, B, L, H, d);
    lact_tensor zv = LACT_NN_VIEW(&s->zv, B, L, H, d);
    lact_tensor qf = LACT_NN_VIEW(&s->qf, B, H, L, d), kf = LACT_NN_VIEW(&s->kf, B, H, L, d);
    lact_tensor v4 = LACT_NN_VIEW(&s->v, B, H, L, d);
    lact_tensor *qa = c->window_attn ? &s->qa : NULL, *ka = c->window_attn ? &s->ka : NULL;
    LACT_NN_RUN(ar, lact_headprep_forward(ctx, &qf, qa, &zq, &p->items[l->q_scale].w,
                                          &p->items[l->q_offset].w, pos0, theta, LACT_TTT_L2_EPS));
    LACT_NN_RUN(ar, lact_headprep_forward(ctx, &kf, ka, &zk, &p->items[l->k_scale].w,
                                          &p->items[l->k_offset].w, pos0, theta, LACT_TTT_L2_EPS));
    LACT_NN_RUN(ar, lact_headprep_forward(ctx, NULL, &v4, &zv, NULL, NULL, pos0, 0.0f,
                                          LACT_TTT_L2_EPS));
    return lact_ttt_layer_gates_forward(ctx, ar, l, s, x);
}

lact_status lact_ttt_layer_output(lact_ctx *ctx, lact_ttt_layer *l, lact_arena *ar,
                                  lact_ttt_layer_saved *s, lact_tensor *y, const lact_tensor *res) {
    const lact_ttt_layer_cfg *c = &l->cfg;
    lact_params *p = l->params;
    int64_t D = c->dim, H = c->heads, d = D / H, B = s->B, L = s->L, N = B * H;
    lact_dtype act = s->o.dtype;
    LACT_TRY(LACT_NN_ALLOC(ar, &s->rstd, N * L));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, act, &s->u, B, L, D));
    /* The window branch's output is added in the norm's pass, which writes
     * the heads' rows in token order for the output projection. */
    lact_tensor o4 = LACT_NN_VIEW(&s->o, B, H, L, d), u4 = LACT_NN_VIEW(&s->u, B, L, H, d);
    lact_tensor ya4 = c->window_attn ? LACT_NN_VIEW(&s->ya, B, H, L, d) : (lact_tensor){0};
    LACT_NN_RUN(ar, lact_rmsnorm_forward_heads(ctx, &u4, &s->rstd, &o4, &p->items[l->o_norm].w,
                                               c->norm_eps, c->window_attn ? &ya4 : NULL));
    LACT_NN_RUN(ar,
                lact_linear_forward_add(ctx, y, &s->u, lact_param_mm(&p->items[l->wo], act), res));
    return LACT_OK;
}

lact_status lact_ttt_layer_forward(lact_ctx *ctx, lact_ttt_layer *l, lact_arena *ar,
                                   lact_ttt_layer_saved *s, lact_tensor *y, const lact_tensor *x,
                                   const lact_tensor *res) {
    const lact_ttt_layer_cfg *c = &l->cfg;
    lact_params *p = l->params;
    int64_t D = c->dim, H = c->heads, d = D / H, dh = d * c->inter_multi;
    LACT_TRY(lact_ttt_layer_check_io(l, ar, ctx, "ttt layer", x, y));
    memset(s, 0, sizeof *s);
    int64_t B = x->shape[0], L = x->shape[1], N = B * H;
    s->B = B;
    s->L = L;
    s->x = *x;
    lact_ttt_args args;
    LACT_TRY(lact_ttt_layer_order(l, L, x->dtype, &args));
    LACT_TRY(lact_ttt_check_args(&args, L));
    LACT_TRY(lact_ttt_layer_inputs(ctx, l, ar, s, x, 0));

    /* The initial fast weights: the parameters themselves, which the op
     * shares over the batch (head b·H + h starts from h's). */
    s->w0 = p->items[l->w0].w;
    s->w1 = p->items[l->w1].w;
    s->w2 = p->items[l->w2].w;

    LACT_TRY(LACT_NN_ALLOC(ar, &s->state, N, lact_ttt_state_numel(&args, c->momentum, d, dh)));
    LACT_TRY(LACT_NN_ALLOC_AS(ar, x->dtype, &s->o, N, L, d));
    lact_tensor lr[3];
    lact_ttt_layer_split_lr(&s->lr, lr, N, L);
    LACT_NN_RUN(ar, lact_ttt_forward(ctx, &s->o, &s->state, &s->qf, &s->kf, &s->v, &lr[0], &lr[1],
                                     &lr[2], c->momentum ? &s->mom : NULL, &s->w0, &s->w1, &s->w2,
                                     &args));
    if (c->window_attn) {
        LACT_TRY(LACT_NN_ALLOC_AS(ar, x->dtype, &s->ya, B, H, L, d));
        LACT_TRY(LACT_NN_ALLOC(ar, &s->lse, B, H, L));
        lact_attn_args aa = lact_ttt_layer_attn_args(l);
        lact_tensor v4 = LACT_NN_VIEW(&s->v, B, H, L, d);
        LACT_NN_RUN(ar, lact_attention_forward(ctx, &s->ya, &s->lse, &s->qa, &s->ka, &v4, NULL,
                                               NULL, &aa));
    }
    return lact_ttt_layer_output(ctx, l, ar, s, y, res);
}

lact_status lact_ttt_layer_check_io(const lact_ttt_layer *l, const lact_arena *ar,
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
