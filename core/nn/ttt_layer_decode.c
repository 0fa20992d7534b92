/* The LaCT layer: streaming decode (the ttt op's decode state and the
 * attention branch's ring buffers) on the forward's own stages. */
#include <string.h>

#include "core/nn/nn_ops.h"
#include "kernels/attention.h"
#include "kernels/kernels.h"
#include "ttt_layer_internal.h"

/* dst [B·H, ...] = B copies of src [H, ...] (the decode state's initial
 * weights, made once). */
static lact_status replicate(lact_ctx *ctx, lact_tensor *dst, const lact_tensor *src, int64_t B) {
    int64_t n = lact_tensor_numel(src);
    lact_tensor flat = LACT_NN_VIEW(src, n);
    lact_tensor part = lact_ttt_slice(dst, 0, 1, &n);
    /* Copies through a kernel, so they are ordered on the context's stream;
     * the copies made so far double each time (log2 B + 1 launches). */
    LACT_TRY(lact_scale_forward(ctx, &part, &flat, 1.0f));
    for (int64_t k = 1; k < B; k *= 2) {
        int64_t m = (k < B - k ? k : B - k) * n;
        lact_tensor from = lact_ttt_slice(dst, 0, 1, &m), to = lact_ttt_slice(dst, k * n, 1, &m);
        LACT_TRY(lact_scale_forward(ctx, &to, &from, 1.0f));
    }
    return LACT_OK;
}

/* One step's work on T tokens; with a measuring arena it only walks the
 * allocations (init sizes the arena with it). */
static lact_status step_body(lact_ctx *ctx, lact_ttt_layer_decode *st, lact_arena *ar,
                             lact_tensor *y, const lact_tensor *x) {
    lact_ttt_layer *l = st->layer;
    const lact_ttt_layer_cfg *c = &l->cfg;
    int64_t H = c->heads, d = c->dim / H, B = st->batch, T = x->shape[1], N = B * H;
    lact_ttt_layer_saved *s = &st->saved;
    memset(s, 0, sizeof *s);
    s->B = B;
    s->L = T;
    s->x = *x;
    LACT_TRY(lact_ttt_layer_inputs(ctx, l, ar, s, x, st->pos));
    LACT_TRY(LACT_NN_ALLOC(ar, &s->o, N, T, d));
    lact_tensor lr[3];
    lact_ttt_layer_split_lr(&s->lr, lr, N, T);
    LACT_NN_RUN(ar, lact_ttt_decode_prefill(ctx, &st->op, &s->o, &s->qf, &s->kf, &s->v, &lr[0],
                                            &lr[1], &lr[2], c->momentum ? &s->mom : NULL));
    if (c->window_attn) {
        LACT_TRY(LACT_NN_ALLOC(ar, &s->ya, B, H, T, d));
        if (!ar->measuring) {
            /* [B·H, T, d] tensors are head-major [B, H, T, d]. */
            lact_tensor q4 = LACT_NN_VIEW(&s->qa, B, H, T, d),
                        k4 = LACT_NN_VIEW(&s->ka, B, H, T, d);
            lact_tensor v4 = LACT_NN_VIEW(&s->v, B, H, T, d);
            lact_attn_args aa = lact_ttt_layer_attn_args(l);
            for (int64_t t = 0; t < T; t++)
                LACT_TRY(lact_kv_cache_attend(ctx, &st->cache, st->pos + t, t, LACT_KV_HEAD_MAJOR,
                                              &q4, &k4, &v4, NULL, &s->ya, &aa));
        }
    }
    return lact_ttt_layer_output(ctx, l, ar, s, y, NULL);
}

/* The initial fast weights replicated over the batch, into a fresh op state. */
static lact_status init_op(lact_ctx *ctx, lact_ttt_layer_decode *st) {
    const lact_ttt_layer *l = st->layer;
    const lact_ttt_layer_cfg *c = &l->cfg;
    int64_t H = c->heads, d = c->dim / H, dh = d * c->inter_multi, N = st->batch * H;
    lact_tensor w[3] = {{0}, {0}, {0}};
    const int ids[3] = {l->w0, l->w1, l->w2};
    lact_status s = LACT_OK;
    for (int i = 0; i < 3 && s == LACT_OK; i++) {
        int64_t shape[3] = {N, i == 1 ? d : dh, i == 1 ? dh : d};
        s = lact_tensor_alloc(&w[i], LACT_F32, ctx->device, 3, shape);
        if (s == LACT_OK) s = replicate(ctx, &w[i], &l->params->items[ids[i]].w, st->batch);
    }
    if (s == LACT_OK)
        s = lact_ttt_decode_init(ctx, &st->op, &w[0], &w[1], &w[2], c->chunk, c->momentum, c->muon);
    for (int i = 0; i < 3; i++)
        lact_tensor_free(&w[i]);
    return s;
}

static lact_status init_all(lact_ctx *ctx, lact_ttt_layer_decode *st) {
    const lact_ttt_layer_cfg *c = &st->layer->cfg;
    int64_t B = st->batch, H = c->heads, d = c->dim / H;
    LACT_TRY(init_op(ctx, st));
    if (c->window_attn) {
        LACT_TRY(lact_kv_cache_init(&st->cache, ctx->device, B, H, H, c->window, d, 0));
    }
    /* Size the arena for the largest step. */
    int64_t shape[3] = {B, st->max_tokens, c->dim};
    lact_tensor x = lact_tensor_view(NULL, LACT_F32, ctx->device, 3, shape);
    lact_tensor y = lact_tensor_view(NULL, LACT_F32, ctx->device, 3, shape);
    lact_arena m;
    lact_arena_init_measure(&m, ctx->device);
    LACT_TRY(step_body(ctx, st, &m, &y, &x));
    return lact_arena_init(&st->arena, ctx->device, m.peak);
}

lact_status lact_ttt_layer_decode_init(lact_ctx *ctx, lact_ttt_layer *l, lact_ttt_layer_decode *st,
                                       int64_t batch, int64_t max_tokens) {
    memset(st, 0, sizeof *st);
    const char *what = "ttt layer decode";
    LACT_TRY(lact_nn_decode_check(ctx, l->params, batch, max_tokens, what));
    if (l->cfg.order != LACT_TTT_LAYER_CAUSAL)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: needs the causal order (the layer's order is %d): later tokens "
                         "would change earlier outputs",
                         what, (int)l->cfg.order);
    st->layer = l;
    st->batch = batch;
    st->max_tokens = max_tokens;
    lact_status s = init_all(ctx, st);
    if (s != LACT_OK) lact_ttt_layer_decode_free(st);
    return s;
}

void lact_ttt_layer_decode_free(lact_ttt_layer_decode *st) {
    if (!st) return;
    lact_ttt_decode_free(&st->op);
    lact_kv_cache_free(&st->cache);
    lact_arena_free(&st->arena);
    memset(st, 0, sizeof *st);
}

lact_status lact_ttt_layer_decode_step(lact_ctx *ctx, lact_ttt_layer_decode *st, lact_tensor *y,
                                       const lact_tensor *x) {
    const char *what = "ttt layer decode";
    if (!st || !st->layer) return lact_fail(LACT_E_ARG, "%s: the state is not initialised", what);
    LACT_TRY(lact_ttt_layer_check_io(st->layer, &st->arena, ctx, what, x, y));
    LACT_TRY(lact_nn_decode_io_check(ctx, x, y, what));
    if (x->shape[0] != st->batch || x->shape[1] < 1 || x->shape[1] > st->max_tokens)
        return lact_fail(LACT_E_ARG,
                         "%s: x has %lld sequences of %lld tokens; the state holds "
                         "%lld sequences and steps of 1 to %lld tokens",
                         what, (long long)x->shape[0], (long long)x->shape[1], (long long)st->batch,
                         (long long)st->max_tokens);
    lact_arena_reset(&st->arena);
    LACT_TRY(step_body(ctx, st, &st->arena, y, x));
    st->pos += x->shape[1];
    return LACT_OK;
}
