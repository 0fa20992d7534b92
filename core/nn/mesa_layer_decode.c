/* The Mesa layer: streaming decode. The input and output stages run on all
 * T new tokens at once; the recurrence runs one token at a time through
 * lact_mesa_decode on the explicit states H, G, so each token is solved
 * against exactly the state the full forward reaches at its position. */
#include <string.h>

#include "core/nn/nn_ops.h"
#include "kernels/kernels.h"
#include "mesa_layer_internal.h"

/* Token t's [B, H, ·] block of a token-major [T, B, H, ·] tensor. */
static lact_tensor token(const lact_tensor *t, int64_t i, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int j = 0; j < ndim; j++)
        n *= shape[j];
    return lact_tensor_view((float *)t->data + i * n, LACT_F32, t->device, ndim, shape);
}

/* One step's work on T tokens; with a measuring arena it only walks the
 * allocations (init sizes the arena with it). */
static lact_status step_body(lact_ctx *ctx, lact_mesa_layer_decode *st, lact_arena *ar,
                             lact_tensor *y, const lact_tensor *x) {
    lact_mesa_layer *l = st->layer;
    const lact_mesa_layer_cfg *c = &l->cfg;
    int64_t B = st->batch, T = x->shape[1], H = c->heads, d = c->head_dim;
    lact_mesa_layer_saved *s = &st->saved;
    memset(s, 0, sizeof *s);
    s->B = B;
    s->L = T;
    s->x = *x;
    LACT_TRY(lact_mesa_layer_inputs(ctx, l, ar, s, x, true));
    LACT_TRY(LACT_NN_ALLOC(ar, &s->o, B, T, H * d));
    size_t mark = lact_arena_mark(ar);
    lact_tensor o;
    LACT_TRY(LACT_NN_ALLOC(ar, &o, T, B, H, d));
    if (!ar->measuring) {
        const int64_t vec[3] = {B, H, d}, gate[2] = {B, H};
        for (int64_t t = 0; t < T; t++) {
            lact_tensor ot = token(&o, t, 3, vec), qt = token(&s->q, t, 3, vec);
            lact_tensor kt = token(&s->k, t, 3, vec), vt = token(&s->v, t, 3, vec);
            lact_tensor gt = token(&s->g, t, 2, gate), bt = token(&s->beta, t, 2, gate);
            LACT_TRY(lact_mesa_decode(ctx, &ot, &st->h_state, &st->g_state, &qt, &kt, &vt, &gt, &bt,
                                      &s->lambda, &c->op));
        }
    }
    LACT_NN_RUN(ar, lact_nn_permute(ctx, &s->o, &o, 1, T, B, H * d));
    lact_arena_release(ar, mark);
    return lact_mesa_layer_output(ctx, l, ar, s, y, NULL);
}

static lact_status init_all(lact_ctx *ctx, lact_mesa_layer_decode *st) {
    const lact_mesa_layer_cfg *c = &st->layer->cfg;
    int64_t state[4] = {st->batch, c->heads, c->head_dim, c->head_dim};
    LACT_TRY(lact_tensor_alloc(&st->h_state, LACT_F32, ctx->device, 4, state));
    LACT_TRY(lact_tensor_alloc(&st->g_state, LACT_F32, ctx->device, 4, state));
    int64_t shape[3] = {st->batch, st->max_tokens, c->dim};
    lact_tensor x = lact_tensor_view(NULL, LACT_F32, ctx->device, 3, shape);
    lact_tensor y = lact_tensor_view(NULL, LACT_F32, ctx->device, 3, shape);
    lact_arena m;
    lact_arena_init_measure(&m, ctx->device);
    LACT_TRY(step_body(ctx, st, &m, &y, &x));
    return lact_arena_init(&st->arena, ctx->device, m.peak);
}

lact_status lact_mesa_layer_decode_init(lact_ctx *ctx, lact_mesa_layer *l,
                                        lact_mesa_layer_decode *st, int64_t batch,
                                        int64_t max_tokens) {
    const char *what = "mesa layer decode";
    memset(st, 0, sizeof *st);
    LACT_TRY(lact_nn_decode_check(ctx, l->params, batch, max_tokens, what));
    st->layer = l;
    st->batch = batch;
    st->max_tokens = max_tokens;
    lact_status s = init_all(ctx, st);
    if (s != LACT_OK) lact_mesa_layer_decode_free(st);
    return s;
}

void lact_mesa_layer_decode_free(lact_mesa_layer_decode *st) {
    if (!st) return;
    lact_tensor_free(&st->h_state);
    lact_tensor_free(&st->g_state);
    lact_arena_free(&st->arena);
    memset(st, 0, sizeof *st);
}

lact_status lact_mesa_layer_decode_step(lact_ctx *ctx, lact_mesa_layer_decode *st, lact_tensor *y,
                                        const lact_tensor *x) {
    const char *what = "mesa layer decode";
    if (!st || !st->layer) return lact_fail(LACT_E_ARG, "%s: the state is not initialised", what);
    LACT_TRY(lact_mesa_layer_check_io(st->layer, &st->arena, ctx, what, x, y));
    LACT_TRY(lact_nn_decode_io_check(ctx, x, y, what));
    if (x->shape[0] != st->batch || x->shape[1] < 1 || x->shape[1] > st->max_tokens)
        return lact_fail(LACT_E_ARG,
                         "%s: x has %lld sequences of %lld tokens; the state holds %lld "
                         "sequences and steps of 1 to %lld tokens",
                         what, (long long)x->shape[0], (long long)x->shape[1], (long long)st->batch,
                         (long long)st->max_tokens);
    lact_arena_reset(&st->arena);
    LACT_TRY(step_body(ctx, st, &st->arena, y, x));
    st->pos += x->shape[1];
    return LACT_OK;
}
