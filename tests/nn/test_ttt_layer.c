/* The LaCT layer: gradients by central differences (attention branch off
 * and on), the projections and gates against a direct composition in
 * double, the attention branch's exact contribution, the residual added by
 * the output projection, arena sizing, and argument errors. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/nn/ttt_layer.h"
#include "nn_check.h"

enum { B = 2, L = 13, D = 16, H = 2, DH = D / H, CHUNK = 4 };

static lact_status fwd(lact_ctx *ctx, void *layer, lact_arena *ar, void *saved, lact_tensor *y,
                       const lact_tensor *x) {
    return lact_ttt_layer_forward(ctx, layer, ar, saved, y, x, NULL);
}
static lact_status bwd(lact_ctx *ctx, void *layer, lact_arena *ar, const void *saved,
                       lact_tensor *dx, const lact_tensor *dy) {
    return lact_ttt_layer_backward(ctx, layer, ar, saved, dx, dy);
}

/* full: RoPE and momentum on; muon: Newton–Schulz on the updates. */
static lact_ttt_layer_cfg small_cfg(bool attn, bool full, bool muon) {
    lact_ttt_layer_cfg c = lact_ttt_layer_defaults(D, H);
    c.chunk = CHUNK;
    c.window = c.chunk + 2;
    c.inter_multi = 2;
    c.window_attn = attn;
    c.rope = full;
    c.momentum = full;
    c.muon = muon ? LACT_TTT_MUON_TABLE : LACT_TTT_MUON_OFF;
    /* Large enough that every path moves the output measurably. */
    c.base_lr = 0.3f;
    c.init_std = 0.3f;
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
    /* Non-trivial scale/offset/norm values, so their gradients are tested
     * away from the identity. */
    for (int i = 0; i < lact_params_count(&s->params); i++) {
        lact_param *p = lact_params_at(&s->params, i);
        if (p->init.kind != LACT_INIT_NORMAL) {
            float *w = p->w.data;
            for (int64_t j = 0; j < lact_tensor_numel(&p->w); j++)
                w[j] += 0.2f * lact_philox_normal(seed, 3 + (uint64_t)i, (uint64_t)j);
        }
    }
    s->c = (nn_case){.name = name, .ctx = ctx, .params = &s->params, .layer = &s->layer,
                     .saved = &s->saved, .forward = fwd, .backward = bwd};
    return nn_case_init(&s->c, B, L, D, seed + 10);
}

static void setup_free(setup *s) {
    nn_case_free(&s->c);
    lact_ttt_layer_free(&s->layer);
    lact_params_free(&s->params);
}

static double silu_d(double z) {
    return z / (1.0 + exp(-z));
}

static const float *W(setup *s, const char *suffix) {
    char name[96];
    snprintf(name, sizeof name, "layers.0.lact.%s", suffix);
    int i = lact_params_find(&s->params, name);
    return i < 0 ? NULL : lact_params_at(&s->params, i)->w.data;
}

/* Projections, fast-path q/k/v, learning rates and momentum, and the
 * output stage from the op's o, all in double from the definition. */
static void test_direct(lact_ctx *ctx) {
    setup s;
    lact_ttt_layer_cfg cfg = small_cfg(false, false, false);
    cfg.momentum = true;
    CHECK_OK(setup_init(&s, ctx, "direct", &cfg, 5));
    CHECK_OK(nn_case_run(&s.c, false));
    const float *x = s.c.x.data, *wq = W(&s, "wq"), *wk = W(&s, "wk"), *wv = W(&s, "wv");
    const float *qsc = W(&s, "q_scale"), *qof = W(&s, "q_offset"), *ksc = W(&s, "k_scale"),
                *kof = W(&s, "k_offset"), *lrw = W(&s, "lr_w"), *lrb = W(&s, "lr_b"),
                *mw = W(&s, "mom_w"), *mb = W(&s, "mom_b"), *on = W(&s, "o_norm"),
                *wo = W(&s, "wo");
    const lact_ttt_layer_saved *sv = &s.saved;
    double shift = log(expm1((double)cfg.base_lr)), err = 0, err_lr = 0, err_y = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < L; t++) {
            const float *xt = x + ((int64_t)b * L + t) * D;
            double q[D], k[D], v[D];
            for (int c = 0; c < D; c++) {
                double zq = 0, zk = 0, zv = 0;
                for (int i = 0; i < D; i++) {
                    zq += (double)wq[c * D + i] * xt[i];
                    zk += (double)wk[c * D + i] * xt[i];
                    zv += (double)wv[c * D + i] * xt[i];
                }
                q[c] = silu_d(zq) * qsc[c] + qof[c];
                k[c] = silu_d(zk) * ksc[c] + kof[c];
                v[c] = silu_d(zv);
            }
            for (int h = 0; h < H; h++) {
                double nq = 0, nk = 0;
                for (int j = 0; j < DH; j++) {
                    nq += q[h * DH + j] * q[h * DH + j];
                    nk += k[h * DH + j] * k[h * DH + j];
                }
                nq = sqrt(nq) + 1e-5;
                nk = sqrt(nk) + 1e-5;
                int64_t row = (((int64_t)b * H + h) * L + t) * DH;
                for (int j = 0; j < DH; j++) {
                    err = fmax(err, fabs(q[h * DH + j] / nq - ((float *)sv->qf.data)[row + j]));
                    err = fmax(err, fabs(k[h * DH + j] / nk - ((float *)sv->kf.data)[row + j]));
                    err = fmax(err, fabs(v[h * DH + j] - ((float *)sv->v.data)[row + j]));
                }
                for (int i = 0; i < 3; i++) {
                    double z = lrb[i * H + h] + shift;
                    for (int c = 0; c < D; c++) z += (double)lrw[(i * H + h) * D + c] * xt[c];
                    double eta = log1p(exp(z));
                    double got = ((float *)sv->lr.data)[((int64_t)i * B * H + b * H + h) * L + t];
                    err_lr = fmax(err_lr, fabs(eta - got) / eta);
                }
                double zm = mb[h];
                for (int c = 0; c < D; c++) zm += (double)mw[h * D + c] * xt[c];
                double beta = 1.0 / (1.0 + exp(-zm));
                err_lr = fmax(err_lr, fabs(beta - ((float *)sv->mom.data)[(b * H + h) * L + t]));
            }
            /* y_t = wo · concat_h(rmsnorm(o_{b,h,t}) ⊙ o_norm) */
            double u[D];
            for (int h = 0; h < H; h++) {
                const float *o = (const float *)sv->o.data + (((int64_t)b * H + h) * L + t) * DH;
                double ms = 0;
                for (int j = 0; j < DH; j++) ms += (double)o[j] * o[j];
                double rs = 1.0 / sqrt(ms / DH + (double)cfg.norm_eps);
                for (int j = 0; j < DH; j++) u[h * DH + j] = o[j] * rs * on[j];
            }
            for (int c = 0; c < D; c++) {
                double yc = 0;
                for (int i = 0; i < D; i++) yc += (double)wo[c * D + i] * u[i];
                err_y = fmax(err_y, fabs(yc - ((float *)s.c.y.data)[((int64_t)b * L + t) * D + c]));
            }
        }
    }
    printf("direct: q/k/v %.3g, lr/momentum (rel) %.3g, output %.3g\n", err, err_lr, err_y);
    CHECK(err < 1e-5);
    CHECK(err_lr < 1e-5);
    CHECK(err_y < 1e-4);
    setup_free(&s);
}

/* A residual given to the forward lands in y: y(res) = y + res, the add
 * done by the output projection. */
static void test_residual(lact_ctx *ctx) {
    setup s;
    lact_ttt_layer_cfg cfg = small_cfg(true, true, false);
    CHECK_OK(setup_init(&s, ctx, "residual", &cfg, 13));
    CHECK_OK(nn_case_run(&s.c, false));
    lact_tensor y2;
    CHECK_OK(lact_tensor_alloc(&y2, LACT_F32, LACT_CPU, 3, s.c.y.shape));
    lact_arena_reset(&s.c.arena);
    CHECK_OK(lact_ttt_layer_forward(ctx, &s.layer, &s.c.arena, &s.saved, &y2, &s.c.x, &s.c.r));
    const float *y = s.c.y.data, *r = s.c.r.data, *got = y2.data;
    double err = 0, mag = 0;
    for (int64_t i = 0; i < lact_tensor_numel(&y2); i++) {
        err = fmax(err, fabs((double)got[i] - ((double)y[i] + r[i])));
        mag = fmax(mag, fabs((double)r[i]));
    }
    printf("residual: max |res| %.3g, mismatch %.3g\n", mag, err);
    CHECK(mag > 0.5);
    CHECK(err < 1e-5 * (1 + mag));
    lact_tensor_free(&y2);
    setup_free(&s);
}

/* With the same parameters, the attention branch adds exactly
 * wo · permute(ya) to the output, and ya is not negligible. */
static void test_branch(lact_ctx *ctx) {
    setup off, on;
    lact_ttt_layer_cfg c0 = small_cfg(false, true, true), c1 = small_cfg(true, true, true);
    CHECK_OK(setup_init(&off, ctx, "branch off", &c0, 9));
    CHECK_OK(setup_init(&on, ctx, "branch on", &c1, 9));
    CHECK_OK(nn_case_run(&off.c, false));
    CHECK_OK(nn_case_run(&on.c, false));
    CHECK(on.params.numel == off.params.numel);
    const float *wo = W(&on, "wo"), *ya = on.saved.ya.data;
    const float *y0 = off.c.y.data, *y1 = on.c.y.data;
    double err = 0, mag = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++)
            for (int c = 0; c < D; c++) {
                double add = 0;
                for (int h = 0; h < H; h++)
                    for (int j = 0; j < DH; j++)
                        add += (double)wo[c * D + h * DH + j] *
                               ya[(((int64_t)b * H + h) * L + t) * DH + j];
                int64_t i = ((int64_t)b * L + t) * D + c;
                err = fmax(err, fabs(y1[i] - y0[i] - add));
                mag = fmax(mag, fabs(add));
            }
    printf("branch: attention contribution max %.3g, mismatch %.3g\n", mag, err);
    CHECK(mag > 1e-2);
    CHECK(err < 1e-5 * (1 + mag));
    setup_free(&off);
    setup_free(&on);
}

static void test_gradcheck(lact_ctx *ctx, const char *name, bool attn, bool full, bool muon) {
    setup s;
    lact_ttt_layer_cfg cfg = small_cfg(attn, full, muon);
    CHECK_OK(setup_init(&s, ctx, name, &cfg, 21));
    if (muon) {
        /* Newton–Schulz on rank-deficient chunk gradients (4 tokens, d = 8)
         * lifts float rounding of the forward into the loss, so central
         * differences in float resolve the gradient only to several percent
         * here; the op's own gradient through Muon is checked in double by
         * the kernel tests. This run checks the layer's wiring with Muon. */
        s.c.h = 8e-3f;
        s.c.tol = 10.0;
    }
    printf("%s: arena peak %zu bytes, parameters %lld\n", name, s.c.peak,
           (long long)s.params.numel);
    nn_gradcheck(&s.c, 3);
    /* The real pass peaks where the measuring pass said. */
    CHECK(s.c.arena.peak == s.c.peak);
    setup_free(&s);
}

static void test_errors(lact_ctx *ctx) {
    lact_params p;
    lact_params_init(&p, LACT_CPU);
    lact_ttt_layer l;
    lact_ttt_layer_cfg c = small_cfg(true, true, true);
    c.window = 2; /* shorter than the chunk */
    CHECK_FAILS(lact_ttt_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    c = small_cfg(false, false, false);
    c.heads = 3; /* does not divide 16 */
    CHECK_FAILS(lact_ttt_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    c = small_cfg(false, false, false);
    CHECK_OK(lact_ttt_layer_declare(&l, &p, "a", &c));
    CHECK_OK(lact_params_alloc(&p));
    int64_t shape[3] = {1, 5, D + 1};
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

int main(void) {
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    test_direct(&ctx);
    test_branch(&ctx);
    test_residual(&ctx);
    test_gradcheck(&ctx, "lact (plain)", false, false, false);
    test_gradcheck(&ctx, "lact (attention, rope, momentum)", true, true, false);
    test_gradcheck(&ctx, "lact (rope, momentum, muon)", false, true, true);
    test_gradcheck(&ctx, "lact (attention, rope, momentum, muon)", true, true, true);
    test_errors(&ctx);
    lact_ctx_free(&ctx);
    return check_summary("nn_ttt_layer");
}
