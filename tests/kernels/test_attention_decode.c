/* Attention decode steps (linear caches and window ring buffers, sequences
 * of different lengths in one batch) against the forward over the same
 * tokens, and the errors bad arguments give. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"
#include "kernels/attention.h"
#include "tests/support/check.h"

#define SEED 4242u

static lact_tensor make(lact_dtype dt, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t s[4] = {d0, d1, d2, d3};
    lact_tensor t = {0};
    CHECK_OK(lact_tensor_alloc(&t, dt, LACT_CPU, ndim, s));
    return t;
}

static lact_tensor make_rand(lact_rng *rng, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    lact_tensor t = make(LACT_F32, 4, d0, d1, d2, d3);
    for (int64_t i = 0; i < lact_tensor_numel(&t); i++)
        ((float *)t.data)[i] = lact_rng_normal(rng);
    return t;
}

/* dst[b_dst, h, t_dst, :] = src[b_src, h, t_src, :] for every head h. */
static void copy_token(lact_tensor *dst, int64_t b_dst, int64_t t_dst, const lact_tensor *src,
                       int64_t b_src, int64_t t_src) {
    int64_t nh = src->shape[1], d = src->shape[3];
    for (int64_t h = 0; h < nh; h++)
        memcpy((float *)dst->data + ((b_dst * nh + h) * dst->shape[2] + t_dst) * d,
               (const float *)src->data + ((b_src * nh + h) * src->shape[2] + t_src) * d,
               (size_t)d * sizeof(float));
}

/* The first n tokens of batch b of src, as a [1, H, n, d] tensor. */
static lact_tensor prefix(const lact_tensor *src, int64_t b, int64_t n) {
    lact_tensor t = make(LACT_F32, 4, 1, src->shape[1], n, src->shape[3]);
    for (int64_t i = 0; i < n; i++)
        copy_token(&t, 0, i, src, b, i);
    return t;
}

/* Steps through a sequence of L tokens per batch (batch 1 three tokens
 * behind batch 0), writing each new key/value into slot t mod slots, and
 * compares each decode output with the last row of the forward over the
 * tokens so far. Returns the worst relative difference. */
static double decode_run(lact_ctx *ctx, const lact_attn_args *a, int64_t slots, int64_t gd) {
    const int64_t nb = 2, nh = 4, nkv = 2, len = 29, d = 16;
    lact_rng rng = lact_rng_make(SEED, (uint64_t)(a->mask * 100 + slots));
    lact_tensor q = make_rand(&rng, nb, nh, len, d), k = make_rand(&rng, nb, nkv, len, d);
    lact_tensor v = make_rand(&rng, nb, nkv, len, d), g = {0};
    if (gd) g = make_rand(&rng, nb, nh, len, gd);
    lact_tensor kc = make(LACT_F32, 4, nb, nkv, slots, d),
                vc = make(LACT_F32, 4, nb, nkv, slots, d);
    lact_tensor qs = make(LACT_F32, 4, nb, nh, 1, d), ys = make(LACT_F32, 4, nb, nh, 1, d);
    lact_tensor ls = make(LACT_F32, 3, nb, nh, 1, 0), gs = {0};
    if (gd) gs = make(LACT_F32, 4, nb, nh, 1, gd);
    lact_tensor lens = make(LACT_I32, 1, nb, 0, 0, 0);
    int32_t *n = lens.data;
    int64_t written[2] = {0, 0};
    double worst = 0.0;
    for (int64_t step = 0; step < len; step++) {
        n[0] = (int32_t)(step + 1);
        n[1] = (int32_t)(step > 3 ? step - 2 : 1);
        for (int64_t b = 0; b < nb; b++) {
            for (; written[b] < n[b]; written[b]++) {
                copy_token(&kc, b, written[b] % slots, &k, b, written[b]);
                copy_token(&vc, b, written[b] % slots, &v, b, written[b]);
            }
            copy_token(&qs, b, 0, &q, b, n[b] - 1);
            if (gd) copy_token(&gs, b, 0, &g, b, n[b] - 1);
        }
        CHECK_OK(lact_attention_decode(ctx, &ys, &ls, &qs, &kc, &vc, gd ? &gs : NULL, &lens, a));
        for (int64_t b = 0; b < nb; b++) {
            lact_tensor qp = prefix(&q, b, n[b]), kp = prefix(&k, b, n[b]);
            lact_tensor vp = prefix(&v, b, n[b]), gp = {0};
            if (gd) gp = prefix(&g, b, n[b]);
            lact_tensor yp = make(LACT_F32, 4, 1, nh, n[b], d),
                        lp = make(LACT_F32, 3, 1, nh, n[b], 0);
            CHECK_OK(
                lact_attention_forward(ctx, &yp, &lp, &qp, &kp, &vp, gd ? &gp : NULL, NULL, a));
            for (int64_t h = 0; h < nh; h++) {
                const float *got = (const float *)ys.data + (b * nh + h) * d;
                const float *ref = (const float *)yp.data + (h * n[b] + n[b] - 1) * d;
                double num = 0.0, den = 1e-30;
                for (int64_t c = 0; c < d; c++) {
                    num += ((double)got[c] - ref[c]) * ((double)got[c] - ref[c]);
                    den += (double)ref[c] * ref[c];
                }
                double lse_got = ((float *)ls.data)[b * nh + h];
                double lse_ref = ((float *)lp.data)[h * n[b] + n[b] - 1];
                worst = fmax(worst, sqrt(num / den));
                worst = fmax(worst, fabs(lse_got - lse_ref) / fmax(1.0, fabs(lse_ref)));
                if (isnan(got[0]) || isnan(lse_got)) worst = INFINITY;
            }
            lact_tensor *t[] = {&qp, &kp, &vp, &gp, &yp, &lp};
            for (size_t j = 0; j < sizeof t / sizeof t[0]; j++)
                lact_tensor_free(t[j]);
        }
    }
    lact_tensor *t[] = {&q, &k, &v, &g, &kc, &vc, &qs, &ys, &ls, &gs, &lens};
    for (size_t j = 0; j < sizeof t / sizeof t[0]; j++)
        lact_tensor_free(t[j]);
    return worst;
}

static void check_decode(lact_ctx *ctx) {
    static const struct {
        lact_attn_args a;
        int64_t slots, gd;
        const char *what;
    } runs[] = {
        {{LACT_ATTN_CAUSAL, 0, 0, 0}, 29, 16, "causal, linear cache, elementwise gate"},
        {{LACT_ATTN_WINDOW, 5, 0, 0}, 5, 1, "window 5, ring of 5, per-head gate"},
        {{LACT_ATTN_WINDOW, 6, 0, 0}, 9, 0, "window 6, ring of 9"},
        {{LACT_ATTN_BLOCK_CAUSAL, 0, 4, 0}, 32, 16, "block-causal 4, linear cache"},
        {{LACT_ATTN_FULL, 0, 0, 0.25f}, 29, 0, "full, scale 0.25, linear cache"},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        double e = decode_run(ctx, &runs[r].a, runs[r].slots, runs[r].gd);
        printf("decode %-40s worst rel diff vs forward %.2e\n", runs[r].what, e);
        CHECK_MSG(e <= 1e-6, "decode (%s): differs from the forward by %.3g", runs[r].what, e);
    }
}

/* ---- bad arguments ----------------------------------------------------------- */

#define CHECK_ERR(expr, word)                                                                      \
    do {                                                                                           \
        CHECK_FAILS(expr, LACT_E_ARG);                                                             \
        CHECK_MSG(strstr(lact_errmsg(), word) != NULL, "message \"%s\" does not mention \"%s\"",   \
                  lact_errmsg(), word);                                                            \
    } while (0)

static void check_bad_inputs(lact_ctx *ctx) {
    lact_rng rng = lact_rng_make(SEED, 1);
    lact_tensor q = make_rand(&rng, 1, 4, 10, 8), k = make_rand(&rng, 1, 2, 10, 8);
    lact_tensor v = make_rand(&rng, 1, 2, 10, 8), y = make(LACT_F32, 4, 1, 4, 10, 8);
    lact_tensor lse = make(LACT_F32, 3, 1, 4, 10, 0);
    lact_tensor k3 = make_rand(&rng, 1, 3, 10, 8), kd = make_rand(&rng, 1, 2, 10, 9);
    lact_tensor vshort = make_rand(&rng, 1, 2, 9, 8), kshort = make_rand(&rng, 1, 2, 9, 8);
    lact_tensor g2 = make_rand(&rng, 1, 4, 10, 2), ybad = make(LACT_F32, 4, 1, 4, 10, 7);
    lact_tensor lbad = make(LACT_F32, 3, 1, 4, 9, 0), kbf = make(LACT_BF16, 4, 1, 2, 10, 8);
    lact_tensor q2 = make_rand(&rng, 2, 4, 10, 8), k2 = make_rand(&rng, 2, 2, 10, 8);
    lact_tensor y2 = make(LACT_F32, 4, 2, 4, 10, 8), lse2 = make(LACT_F32, 3, 2, 4, 10, 0);
    lact_tensor cu = make(LACT_I32, 1, 4, 0, 0, 0), cuf = make(LACT_F32, 1, 4, 0, 0, 0);
    lact_attn_args causal = {LACT_ATTN_CAUSAL, 0, 0, 0};
    int32_t *c = cu.data;

    CHECK_OK(lact_attention_forward(ctx, &y, &lse, &q, &k, &v, NULL, NULL, &causal));
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &k3, &k3, NULL, NULL, &causal), "multiple");
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &kd, &kd, NULL, NULL, &causal),
              "k has shape");
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &k, &vshort, NULL, NULL, &causal),
              "v has shape");
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &kshort, &vshort, NULL, NULL, &causal),
              "Lq <= Lk");
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &k, &v, &g2, NULL, &causal), "g has shape");
    CHECK_ERR(lact_attention_forward(ctx, &ybad, &lse, &q, &k, &v, NULL, NULL, &causal),
              "y has shape");
    CHECK_ERR(lact_attention_forward(ctx, &y, &lbad, &q, &k, &v, NULL, NULL, &causal), "lse");
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &kbf, &kbf, NULL, NULL, &causal),
              "k has dtype");
    CHECK_ERR(lact_attention_forward(ctx, NULL, &lse, &q, &k, &v, NULL, NULL, &causal),
              "y is NULL");

    lact_attn_args bad = {LACT_ATTN_WINDOW, 0, 0, 0};
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &k, &v, NULL, NULL, &bad), "window >= 1");
    bad = (lact_attn_args){LACT_ATTN_BLOCK_CAUSAL, 0, 0, 0};
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &k, &v, NULL, NULL, &bad), "block >= 1");
    bad = (lact_attn_args){(lact_attn_mask)7, 0, 0, 0};
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &k, &v, NULL, NULL, &bad), "mask = 7");
    bad = (lact_attn_args){LACT_ATTN_CAUSAL, 0, 0, NAN};
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &k, &v, NULL, NULL, &bad), "scale");

    /* Packed sequences. */
    c[0] = 0, c[1] = 4, c[2] = 7, c[3] = 10;
    CHECK_OK(lact_attention_forward(ctx, &y, &lse, &q, &k, &v, NULL, &cu, &causal));
    c[2] = 3;
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &k, &v, NULL, &cu, &causal), "decreases");
    c[2] = 7, c[3] = 9;
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &k, &v, NULL, &cu, &causal), "ends at 9");
    c[3] = 10, c[0] = 1;
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &k, &v, NULL, &cu, &causal),
              "cu_seqlens[0]");
    c[0] = 0;
    CHECK_ERR(lact_attention_forward(ctx, &y2, &lse2, &q2, &k2, &k2, NULL, &cu, &causal), "B = 1");
    CHECK_ERR(lact_attention_forward(ctx, &y, &lse, &q, &k, &v, NULL, &cuf, &causal), "cu_seqlens");

    /* Backward. */
    CHECK_ERR(lact_attention_backward(ctx, NULL, NULL, NULL, &y, &y, &q, &k, &v, NULL, NULL, &y,
                                      &lse, &causal),
              "d_g is given but g is NULL");
    CHECK_ERR(lact_attention_backward(ctx, &y, NULL, NULL, NULL, &y, &q, &k, &v, NULL, NULL, &y,
                                      NULL, &causal),
              "lse is NULL");
    CHECK_ERR(lact_attention_backward(ctx, &y2, NULL, NULL, NULL, &y, &q, &k, &v, NULL, NULL, &y,
                                      &lse, &causal),
              "d_q has shape");

    /* Decode: one query per sequence, lengths that fit the cache. */
    lact_tensor qd = make_rand(&rng, 2, 4, 1, 8), yd = make(LACT_F32, 4, 2, 4, 1, 8);
    lact_tensor kc = make_rand(&rng, 2, 2, 6, 8), lens = make(LACT_I32, 1, 2, 0, 0, 0);
    lact_tensor lens3 = make(LACT_I32, 1, 3, 0, 0, 0);
    int32_t *n = lens.data;
    n[0] = 6, n[1] = 1;
    CHECK_OK(lact_attention_decode(ctx, &yd, NULL, &qd, &kc, &kc, NULL, &lens, &causal));
    n[0] = 7;
    CHECK_ERR(lact_attention_decode(ctx, &yd, NULL, &qd, &kc, &kc, NULL, &lens, &causal), "slots");
    lact_attn_args win = {LACT_ATTN_WINDOW, 6, 0, 0};
    n[0] = 100;
    CHECK_OK(lact_attention_decode(ctx, &yd, NULL, &qd, &kc, &kc, NULL, &lens, &win));
    win.window = 7;
    CHECK_ERR(lact_attention_decode(ctx, &yd, NULL, &qd, &kc, &kc, NULL, &lens, &win), "slots");
    n[0] = 0;
    CHECK_ERR(lact_attention_decode(ctx, &yd, NULL, &qd, &kc, &kc, NULL, &lens, &causal),
              "lens[0] = 0");
    n[0] = 3;
    CHECK_ERR(lact_attention_decode(ctx, &yd, NULL, &qd, &kc, &kc, NULL, &lens3, &causal), "lens");
    lact_tensor k2c = make_rand(&rng, 1, 2, 10, 8);
    CHECK_ERR(lact_attention_decode(ctx, &y, NULL, &q, &k2c, &k2c, NULL, &lens, &causal),
              "one query");

    lact_tensor *t[] = {&q,   &k,    &v,    &y,   &lse,  &k3,    &kd, &vshort, &kshort,
                        &g2,  &ybad, &lbad, &kbf, &q2,   &k2,    &y2, &lse2,   &cu,
                        &cuf, &qd,   &yd,   &kc,  &lens, &lens3, &k2c};
    for (size_t j = 0; j < sizeof t / sizeof t[0]; j++)
        lact_tensor_free(t[j]);
}

int main(void) {
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    check_decode(&ctx);
    check_bad_inputs(&ctx);
    lact_ctx_free(&ctx);
    return check_summary("kernels_attention_decode");
}
