/* Initial fast weights shared by several heads (w0, w1, w2 with Nw < N
 * heads; head n starts from n mod Nw) against the same weights copied out
 * to every head: the outputs and the per-token gradients must be the same
 * bits, and the shared weights' gradients the sums of the copies'. Runs on
 * ctx's device with activations act (F32 or BF16). */
#ifndef LACT_TEST_TTT_SHARED_H
#define LACT_TEST_TTT_SHARED_H

#include <math.h>
#include <string.h>

#include "core/base/philox.h"
#include "kernels/ttt.h"
#include "tests/support/check.h"

static lact_status ttt_shared_to(lact_ctx *ctx, lact_tensor *dst, const lact_tensor *src,
                                 lact_dtype dt) {
    return lact_tensor_clone(dst, src, dt, ctx->device);
}

static void ttt_check_shared(lact_ctx *ctx, lact_dtype act, lact_ttt_muon muon) {
    enum { NW = 2, COPIES = 2, N = NW * COPIES, L = 96, D = 64, DH = 128, CH = 32 };
    lact_ttt_op ops[16];
    int64_t n_ops = lact_ttt_order_causal(ops, 16, L, CH);
    lact_ttt_args args = {.ops = ops, .n_ops = n_ops, .muon = muon, .save_every = 1};
    int64_t sh[10][3] = {{N, L, D}, {N, L, D}, {N, L, D},   {N, L, 0},   {N, L, 0},
                         {N, L, 0}, {N, L, 0}, {NW, DH, D}, {NW, D, DH}, {NW, DH, D}};
    lact_tensor h[10], full[3], in[10], rep[3], o[2], dout, st[2], g[2][10];
    memset(g, 0, sizeof g);
    lact_rng rng = lact_rng_make(4242, (uint64_t)act);
    for (int i = 0; i < 10; i++) {
        CHECK_OK(lact_tensor_alloc(&h[i], LACT_F32, LACT_CPU, sh[i][2] ? 3 : 2, sh[i]));
        float *x = h[i].data;
        for (int64_t j = 0; j < lact_tensor_numel(&h[i]); j++)
            x[j] = i >= 3 && i <= 6 ? 0.1f + 0.5f * lact_rng_uniform(&rng)
                                    : (i >= 7 ? 0.1f : 0.3f) * lact_rng_normal(&rng);
        CHECK_OK(ttt_shared_to(ctx, &in[i], &h[i], i < 3 ? act : LACT_F32));
    }
    /* the copies: weight head n mod NW at every head n */
    for (int i = 0; i < 3; i++) {
        int64_t per = lact_tensor_numel(&h[7 + i]) / NW, s3[3] = {N, sh[7 + i][1], sh[7 + i][2]};
        CHECK_OK(lact_tensor_alloc(&full[i], LACT_F32, LACT_CPU, 3, s3));
        for (int64_t n = 0; n < N; n++)
            memcpy((float *)full[i].data + n * per, (float *)h[7 + i].data + (n % NW) * per,
                   (size_t)per * sizeof(float));
        CHECK_OK(ttt_shared_to(ctx, &rep[i], &full[i], LACT_F32));
    }
    CHECK_OK(lact_tensor_alloc(&o[0], act, ctx->device, 3, sh[0]));
    CHECK_OK(lact_tensor_alloc(&o[1], act, ctx->device, 3, sh[0]));
    CHECK_OK(ttt_shared_to(ctx, &dout, &h[2], act));
    int64_t S = lact_ttt_state_numel(&args, true, D, DH);
    for (int k = 0; k < 2; k++) {
        CHECK_OK(lact_tensor_alloc(&st[k], LACT_F32, ctx->device, 2, (int64_t[]){N, S}));
        for (int i = 0; i < 10; i++) {
            const lact_tensor *like = i >= 7 && k == 1 ? &rep[i - 7] : &in[i];
            CHECK_OK(
                lact_tensor_alloc(&g[k][i], like->dtype, ctx->device, like->ndim, like->shape));
        }
        const lact_tensor *w[3] = {k ? &rep[0] : &in[7], k ? &rep[1] : &in[8],
                                   k ? &rep[2] : &in[9]};
        CHECK_OK(lact_ttt_forward(ctx, &o[k], &st[k], &in[0], &in[1], &in[2], &in[3], &in[4],
                                  &in[5], &in[6], w[0], w[1], w[2], &args));
        CHECK_OK(lact_ttt_backward(ctx, &g[k][0], &g[k][1], &g[k][2], &g[k][3], &g[k][4], &g[k][5],
                                   &g[k][6], &g[k][7], &g[k][8], &g[k][9], &dout, &st[k], &in[0],
                                   &in[1], &in[2], &in[3], &in[4], &in[5], &in[6], w[0], w[1], w[2],
                                   &args));
    }
    CHECK_OK(lact_ctx_sync(ctx));
    const char *dn = act == LACT_BF16 ? "bf16" : "f32";
    lact_tensor a = {0}, b = {0};
    CHECK_OK(lact_tensor_clone(&a, &o[0], LACT_F32, LACT_CPU));
    CHECK_OK(lact_tensor_clone(&b, &o[1], LACT_F32, LACT_CPU));
    CHECK_MSG(!memcmp(a.data, b.data, lact_tensor_nbytes(&a)), "shared weights %s on %s: o differs",
              dn, lact_device_name(ctx->device));
    lact_tensor_free(&a), lact_tensor_free(&b);
    for (int i = 0; i < 10; i++) {
        CHECK_OK(lact_tensor_clone(&a, &g[0][i], LACT_F32, LACT_CPU));
        CHECK_OK(lact_tensor_clone(&b, &g[1][i], LACT_F32, LACT_CPU));
        const float *x = a.data, *y = b.data;
        if (i < 7) {
            CHECK_MSG(!memcmp(x, y, lact_tensor_nbytes(&a)),
                      "shared weights %s on %s: gradient %d differs", dn,
                      lact_device_name(ctx->device), i);
        } else {
            /* the shared gradient is the copies' sum, in head order */
            int64_t per = lact_tensor_numel(&a) / NW;
            double num = 0, den = 0;
            for (int64_t w = 0; w < NW; w++)
                for (int64_t e = 0; e < per; e++) {
                    double s = 0;
                    for (int64_t c = 0; c < COPIES; c++)
                        s += y[(w + c * NW) * per + e];
                    num += (x[w * per + e] - s) * (x[w * per + e] - s);
                    den += s * s;
                }
            double rel = sqrt(num / (den > 0 ? den : 1));
            CHECK_MSG(rel <= 1e-6,
                      "shared weights %s on %s: d_w%d rel err %.3g against the "
                      "copies' sum",
                      dn, lact_device_name(ctx->device), i - 7, rel);
        }
        lact_tensor_free(&a), lact_tensor_free(&b);
    }
    /* Nw must divide N */
    lact_tensor bad = {0};
    CHECK_OK(lact_tensor_alloc(&bad, LACT_F32, ctx->device, 3, (int64_t[]){3, DH, D}));
    CHECK_FAILS(lact_ttt_forward(ctx, &o[0], NULL, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5],
                                 &in[6], &bad, &in[8], &in[9], &args),
                LACT_E_ARG);
    lact_tensor_free(&bad);
    for (int i = 0; i < 10; i++) {
        lact_tensor_free(&h[i]), lact_tensor_free(&in[i]);
        lact_tensor_free(&g[0][i]), lact_tensor_free(&g[1][i]);
    }
    for (int i = 0; i < 3; i++)
        lact_tensor_free(&full[i]), lact_tensor_free(&rep[i]);
    for (int k = 0; k < 2; k++)
        lact_tensor_free(&o[k]), lact_tensor_free(&st[k]);
    lact_tensor_free(&dout);
}

#endif
