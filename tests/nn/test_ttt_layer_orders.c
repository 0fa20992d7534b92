/* The LaCT layer's non-causal orders: bidirectional (update on the first
 * n_ctx tokens, apply on all) and a custom list of operations. Gradients by
 * central differences; the bidirectional order equals the same operations
 * given as a custom list; outputs depend on later tokens (they are not
 * causal); the attention branch is full attention; errors. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/nn/ttt_layer.h"
#include "kernels/attention.h"
#include "nn_check.h"

enum { B = 2, L = 13, D = 16, H = 2, DH = D / H, CHUNK = 4, N_CTX = 9 };

static lact_status fwd(lact_ctx *ctx, void *layer, lact_arena *ar, void *saved, lact_tensor *y,
                       const lact_tensor *x) {
    return lact_ttt_layer_forward(ctx, layer, ar, saved, y, x, NULL);
}
static lact_status bwd(lact_ctx *ctx, void *layer, lact_arena *ar, const void *saved,
                       lact_tensor *dx, const lact_tensor *dy) {
    return lact_ttt_layer_backward(ctx, layer, ar, saved, dx, dy);
}

/* Overlapping rounds: apply before any update, updates that also apply,
 * an update over the whole context twice. */
static const lact_ttt_op custom_ops[] = {
    {0, 3, false, true}, {0, 5, true, false}, {3, 10, true, true},
    {0, L, false, true}, {6, L, true, false}, {1, 9, false, true},
};

static lact_ttt_layer_cfg make_cfg(lact_ttt_layer_order_kind order, bool attn, bool full) {
    lact_ttt_layer_cfg c = lact_ttt_layer_defaults(D, H);
    c.chunk = CHUNK;
    c.window = 2; /* ignored outside the causal order */
    c.window_attn = attn;
    c.rope = full;
    c.momentum = full;
    c.muon = LACT_TTT_MUON_OFF;
    c.base_lr = 0.3f;
    c.init_std = 0.3f;
    c.order = order;
    c.n_ctx = N_CTX;
    if (order == LACT_TTT_LAYER_CUSTOM) {
        c.ops = custom_ops;
        c.n_ops = (int64_t)(sizeof custom_ops / sizeof *custom_ops);
    }
    return c;
}

typedef struct setup {
    lact_params params;
    lact_ttt_layer layer;
    lact_ttt_layer_saved saved;
    nn_case c;
} setup;

static lact_status setup_init(setup *s, lact_ctx *ctx, const char *name,
                              const lact_ttt_layer_cfg *cfg, uint64_t seed) {
    memset(s, 0, sizeof *s);
    lact_params_init(&s->params, LACT_CPU);
    LACT_TRY(lact_ttt_layer_declare(&s->layer, &s->params, "layers.0.lact", cfg));
    LACT_TRY(lact_params_alloc(&s->params));
    LACT_TRY(lact_params_init_values(ctx, &s->params, seed));
    for (int i = 0; i < lact_params_count(&s->params); i++) {
        lact_param *p = lact_params_at(&s->params, i);
        if (p->init.kind != LACT_INIT_NORMAL) {
            float *w = p->w.data;
            for (int64_t j = 0; j < lact_tensor_numel(&p->w); j++)
                w[j] += 0.2f * lact_philox_normal(seed, 3 + (uint64_t)i, (uint64_t)j);
        }
    }
    s->c = (nn_case){.name = name,
                     .ctx = ctx,
                     .params = &s->params,
                     .layer = &s->layer,
                     .saved = &s->saved,
                     .forward = fwd,
                     .backward = bwd};
    return nn_case_init(&s->c, B, L, D, seed + 10);
}

static void setup_free(setup *s) {
    nn_case_free(&s->c);
    lact_ttt_layer_free(&s->layer);
    lact_params_free(&s->params);
}

static void test_gradcheck(lact_ctx *ctx, const char *name, lact_ttt_layer_order_kind order,
                           bool attn, bool full) {
    setup s;
    lact_ttt_layer_cfg cfg = make_cfg(order, attn, full);
    CHECK_OK(setup_init(&s, ctx, name, &cfg, 41));
    nn_gradcheck(&s.c, 3);
    CHECK(s.c.arena.peak == s.c.peak);
    setup_free(&s);
}

/* Bidirectional = its operations as a custom list, bit for bit; and the
 * output of an early token moves when only a later context token does. */
static void test_equivalence(lact_ctx *ctx) {
    setup bi, cu;
    lact_ttt_layer_cfg cb = make_cfg(LACT_TTT_LAYER_BIDIRECTIONAL, true, true);
    lact_ttt_op ops[8];
    int64_t n = lact_ttt_order_bidirectional(ops, 8, L, N_CTX, CHUNK);
    CHECK(n == 4);
    lact_ttt_layer_cfg cc = cb;
    cc.order = LACT_TTT_LAYER_CUSTOM;
    cc.ops = ops;
    cc.n_ops = n;
    CHECK_OK(setup_init(&bi, ctx, "bidirectional", &cb, 5));
    CHECK_OK(setup_init(&cu, ctx, "custom", &cc, 5));
    memset(ops, 0, sizeof ops); /* the layer keeps its own copy */
    CHECK_OK(nn_case_run(&bi.c, false));
    CHECK_OK(nn_case_run(&cu.c, false));
    int64_t ny = lact_tensor_numel(&bi.c.y);
    CHECK(memcmp(bi.c.y.data, cu.c.y.data, (size_t)ny * sizeof(float)) == 0);
    /* Changing token N_CTX - 1 (context) changes token 0's output; changing
     * a token past the context changes token 0 only through attention, so
     * without it not at all. */
    float *x = bi.c.x.data, *y = bi.c.y.data;
    float y0[D];
    memcpy(y0, y, sizeof y0);
    for (int c = 0; c < D; c++)
        x[(N_CTX - 1) * D + c] += 0.5f;
    CHECK_OK(nn_case_run(&bi.c, false));
    double moved = 0;
    for (int c = 0; c < D; c++)
        moved = fmax(moved, fabs(y[c] - y0[c]));
    printf("bidirectional: token 0 moves by %.3g when token %d changes\n", moved, N_CTX - 1);
    CHECK(moved > 1e-4);
    setup_free(&bi);
    setup_free(&cu);

    setup na;
    lact_ttt_layer_cfg cn = make_cfg(LACT_TTT_LAYER_BIDIRECTIONAL, false, true);
    CHECK_OK(setup_init(&na, ctx, "bidirectional, no attention", &cn, 5));
    CHECK_OK(nn_case_run(&na.c, false));
    x = na.c.x.data, y = na.c.y.data;
    memcpy(y0, y, sizeof y0);
    for (int c = 0; c < D; c++)
        x[(L - 1) * D + c] += 0.5f;
    CHECK_OK(nn_case_run(&na.c, false));
    moved = 0;
    for (int c = 0; c < D; c++)
        moved = fmax(moved, fabs(y[c] - y0[c]));
    CHECK(moved == 0);
    setup_free(&na);
}

/* With attention on, a non-causal order uses full attention: ya equals
 * lact_attention_forward with the FULL mask on the saved q, k, v. */
static void test_full_attention(lact_ctx *ctx) {
    setup s;
    lact_ttt_layer_cfg cfg = make_cfg(LACT_TTT_LAYER_CUSTOM, true, true);
    CHECK_OK(setup_init(&s, ctx, "custom, attention", &cfg, 8));
    CHECK_OK(nn_case_run(&s.c, false));
    int64_t shape[4] = {B, H, L, DH}, ls[3] = {B, H, L};
    lact_tensor ya, lse;
    CHECK_OK(lact_tensor_alloc(&ya, LACT_F32, LACT_CPU, 4, shape));
    CHECK_OK(lact_tensor_alloc(&lse, LACT_F32, LACT_CPU, 3, ls));
    lact_attn_args aa = {LACT_ATTN_FULL, 0, 0, 0.0f};
    lact_tensor v4 = lact_tensor_view(s.saved.v.data, LACT_F32, LACT_CPU, 4, shape);
    CHECK_OK(
        lact_attention_forward(ctx, &ya, &lse, &s.saved.qa, &s.saved.ka, &v4, NULL, NULL, &aa));
    CHECK(memcmp(ya.data, s.saved.ya.data, (size_t)lact_tensor_numel(&ya) * sizeof(float)) == 0);
    lact_tensor_free(&ya);
    lact_tensor_free(&lse);
    setup_free(&s);
}

static void test_errors(lact_ctx *ctx) {
    lact_params p;
    lact_ttt_layer l;
    lact_ttt_layer_cfg c = make_cfg(LACT_TTT_LAYER_CUSTOM, false, false);
    c.n_ops = 0;
    lact_params_init(&p, LACT_CPU);
    CHECK_FAILS(lact_ttt_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    lact_ttt_op empty = {3, 3, true, true}, idle = {0, 4, false, false};
    c.ops = &empty;
    c.n_ops = 1;
    CHECK_FAILS(lact_ttt_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    c.ops = &idle;
    CHECK_FAILS(lact_ttt_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    c = make_cfg(LACT_TTT_LAYER_BIDIRECTIONAL, false, false);
    c.n_ctx = -1;
    CHECK_FAILS(lact_ttt_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    c.order = (lact_ttt_layer_order_kind)7;
    CHECK_FAILS(lact_ttt_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    lact_params_free(&p);

    /* Orders that do not fit the sequence fail at forward. */
    lact_ttt_layer_order_kind kinds[2] = {LACT_TTT_LAYER_BIDIRECTIONAL, LACT_TTT_LAYER_CUSTOM};
    for (int i = 0; i < 2; i++) {
        lact_params_init(&p, LACT_CPU);
        c = make_cfg(kinds[i], false, false);
        CHECK_OK(lact_ttt_layer_declare(&l, &p, "a", &c));
        CHECK_OK(lact_params_alloc(&p));
        int64_t shape[3] = {1, N_CTX - 1, D}; /* shorter than n_ctx and the custom ranges */
        lact_tensor x, y;
        CHECK_OK(lact_tensor_alloc(&x, LACT_F32, LACT_CPU, 3, shape));
        CHECK_OK(lact_tensor_alloc(&y, LACT_F32, LACT_CPU, 3, shape));
        lact_arena ar;
        lact_arena_init_measure(&ar, LACT_CPU);
        lact_ttt_layer_saved sv;
        CHECK_FAILS(lact_ttt_layer_forward(ctx, &l, &ar, &sv, &y, &x, NULL), LACT_E_ARG);
        lact_tensor_free(&x);
        lact_tensor_free(&y);
        lact_ttt_layer_free(&l);
        lact_params_free(&p);
    }
}

int main(void) {
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    test_equivalence(&ctx);
    test_full_attention(&ctx);
    test_gradcheck(&ctx, "bidirectional (plain)", LACT_TTT_LAYER_BIDIRECTIONAL, false, false);
    test_gradcheck(&ctx, "bidirectional (full attention, rope, momentum)",
                   LACT_TTT_LAYER_BIDIRECTIONAL, true, true);
    test_gradcheck(&ctx, "custom (rope, momentum)", LACT_TTT_LAYER_CUSTOM, false, true);
    test_gradcheck(&ctx, "custom (full attention)", LACT_TTT_LAYER_CUSTOM, true, false);
    test_errors(&ctx);
    lact_ctx_free(&ctx);
    return check_summary("nn_ttt_layer_orders");
}
