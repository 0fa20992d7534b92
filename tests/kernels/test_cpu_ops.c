/* The CPU reference kernels against naive formulas in double, and the
 * argument checks of the public functions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"
#include "kernels/kernels.h"
#include "kernels/op_table.h"
#include "tests/support/check.h"
#include "tests/support/tensors.h"

static lact_ctx ctx;
static lact_rng rng;

static lact_tensor rand_tensor(int ndim, const int64_t *shape, float scale) {
    return test_randn(&rng, ndim, shape, scale);
}

static lact_tensor zeros(int ndim, const int64_t *shape, lact_dtype dt) {
    return test_zeros(ndim, shape, dt);
}

static float *F(const lact_tensor *t) {
    return t->data;
}

/* ---- matmul -------------------------------------------------------------------- */

/* out[b] = alpha op(a[b]) op(b[b or 0]) + beta out[b], in double. */
static void naive_matmul(double *out, const float *a, const float *b, int64_t batch, int64_t m,
                         int64_t n, int64_t k, bool ta, bool tb, bool b_bcast, double alpha,
                         double beta, const float *out0) {
    for (int64_t t = 0; t < batch; t++) {
        const float *at = a + t * m * k, *bt = b + (b_bcast ? 0 : t * k * n);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0.0;
                for (int64_t l = 0; l < k; l++)
                    acc += (double)(ta ? at[l * m + i] : at[i * k + l]) *
                           (tb ? bt[j * k + l] : bt[l * n + j]);
                int64_t o = t * m * n + i * n + j;
                out[o] = alpha * acc + (beta != 0.0 ? beta * out0[o] : 0.0);
            }
    }
}

static void test_matmul(void) {
    const int64_t m = 5, n = 3, k = 7;
    for (int combo = 0; combo < 8; combo++) {
        bool ta = combo & 1, tb = combo & 2, bcast = combo & 4;
        int64_t as[3] = {2, ta ? k : m, ta ? m : k};
        int64_t bs3[3] = {2, tb ? n : k, tb ? k : n};
        int64_t os[3] = {2, m, n};
        lact_tensor a = rand_tensor(3, as, 1.0f);
        lact_tensor b = bcast ? rand_tensor(2, bs3 + 1, 1.0f) : rand_tensor(3, bs3, 1.0f);
        lact_tensor out = rand_tensor(3, os, 1.0f);
        float out0[2 * 5 * 3];
        memcpy(out0, out.data, sizeof out0);
        float alpha = 0.75f, beta = combo % 3 == 0 ? 0.5f : 0.0f;
        CHECK_OK(lact_matmul_forward(&ctx, &out, &a, &b, ta, tb, alpha, beta));
        double ref[2 * 5 * 3];
        naive_matmul(ref, a.data, b.data, 2, m, n, k, ta, tb, bcast, alpha, beta, out0);
        double worst = 0.0;
        for (int i = 0; i < 2 * 5 * 3; i++)
            worst = fmax(worst, fabs(F(&out)[i] - ref[i]));
        CHECK_MSG(worst < 1e-4, "matmul ta=%d tb=%d bcast=%d beta=%g: max error %g", ta, tb, bcast,
                  beta, worst);
        lact_tensor_free(&a);
        lact_tensor_free(&b);
        lact_tensor_free(&out);
    }
}

/* ---- xent ----------------------------------------------------------------------- */

static void test_xent(void) {
    const int64_t n = 9, c = 6, v = 23;
    int64_t hs[2] = {n, c}, ws[2] = {v, c};
    lact_tensor h = rand_tensor(2, hs, 1.0f), w = rand_tensor(2, ws, 1.0f);
    lact_tensor target = zeros(1, &n, LACT_I32);
    int32_t *t = target.data;
    for (int64_t i = 0; i < n; i++)
        t[i] = (int32_t)((i * 5) % v);
    t[3] = -1;
    lact_tensor loss = zeros(1, &n, LACT_F32), lse = zeros(1, &n, LACT_F32);
    lact_tensor loss7 = zeros(1, &n, LACT_F32), lse7 = zeros(1, &n, LACT_F32);
    CHECK_OK(lact_xent_forward(&ctx, &loss, &lse, &h, &w, &target, 0));
    CHECK_OK(lact_xent_forward(&ctx, &loss7, &lse7, &h, &w, &target, 7));
    for (int64_t i = 0; i < n; i++) {
        double logits[23], mx = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < v; j++) {
            double acc = 0.0;
            for (int64_t l = 0; l < c; l++)
                acc += (double)F(&h)[i * c + l] * F(&w)[j * c + l];
            logits[j] = acc;
            mx = fmax(mx, acc);
        }
        for (int64_t j = 0; j < v; j++)
            sum += exp(logits[j] - mx);
        double ref_lse = mx + log(sum);
        double ref_loss = t[i] < 0 ? 0.0 : ref_lse - logits[t[i]];
        CHECK_NEAR(F(&lse)[i], ref_lse, 1e-4);
        CHECK_NEAR(F(&loss)[i], ref_loss, 1e-4);
        CHECK_NEAR(F(&loss7)[i], F(&loss)[i], 1e-5);
        CHECK_NEAR(F(&lse7)[i], F(&lse)[i], 1e-5);
    }
    CHECK(F(&loss)[3] == 0.0f);

    /* The gradients do not depend on the chunking; the ignored row gets none. */
    lact_tensor dloss = rand_tensor(1, &n, 1.0f);
    lact_tensor dh0 = zeros(2, hs, LACT_F32), dw0 = zeros(2, ws, LACT_F32);
    lact_tensor dh7 = zeros(2, hs, LACT_F32), dw7 = zeros(2, ws, LACT_F32);
    CHECK_OK(lact_xent_backward(&ctx, &dh0, &dw0, &dloss, &h, &w, &target, &lse, 0));
    CHECK_OK(lact_xent_backward(&ctx, &dh7, &dw7, &dloss, &h, &w, &target, &lse7, 7));
    double diff = 0.0;
    for (int64_t i = 0; i < n * c; i++)
        diff = fmax(diff, fabs(F(&dh0)[i] - F(&dh7)[i]));
    for (int64_t i = 0; i < v * c; i++)
        diff = fmax(diff, fabs(F(&dw0)[i] - F(&dw7)[i]));
    CHECK_MSG(diff < 1e-5, "xent gradients differ between chunk 0 and 7 by %g", diff);
    for (int64_t l = 0; l < c; l++)
        CHECK(F(&dh0)[3 * c + l] == 0.0f);
    /* The one-call form: dw is added to what it holds (dw7 = dw0 now). */
    CHECK_OK(
        lact_xent_forward_backward(&ctx, &loss7, &lse7, &dh7, &dw7, &dloss, &h, &w, &target, 0));
    diff = 0.0;
    for (int64_t i = 0; i < v * c; i++)
        diff = fmax(diff, fabs(F(&dw7)[i] - 2 * F(&dw0)[i]));
    for (int64_t i = 0; i < n * c; i++)
        diff = fmax(diff, fabs(F(&dh7)[i] - F(&dh0)[i]));
    CHECK_MSG(diff < 1e-5, "xent forward_backward: dw not accumulated (%g)", diff);

    /* A target past the vocabulary is an error, not a stray read. */
    t[0] = (int32_t)v;
    CHECK_FAILS(lact_xent_forward(&ctx, &loss, &lse, &h, &w, &target, 0), LACT_E_ARG);
    lact_tensor *all[] = {&h,    &w,     &target, &loss, &lse, &loss7,
                          &lse7, &dloss, &dh0,    &dw0,  &dh7, &dw7};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        lact_tensor_free(all[i]);
}

/* ---- rope, softmax, l2norm, norms --------------------------------------------------- */

static void test_rope(void) {
    int64_t s4[4] = {2, 5, 3, 8}, s3[3] = {2, 5, 8}, s31[4] = {2, 5, 1, 8};
    lact_tensor x = rand_tensor(4, s4, 1.0f), y = zeros(4, s4, LACT_F32),
                z = zeros(4, s4, LACT_F32);
    CHECK_OK(lact_rope_forward(&ctx, &y, &x, 100, 10000.0f));
    CHECK_OK(lact_rope_backward(&ctx, &z, &y, 100, 10000.0f));
    double worst = 0.0;
    for (int64_t i = 0; i < lact_tensor_numel(&x); i++)
        worst = fmax(worst, fabs(F(&z)[i] - F(&x)[i]));
    CHECK_MSG(worst < 1e-5, "rope backward(forward(x)) differs from x by %g", worst);
    /* One element against the formula: b 1, l 2, h 1, pair i = 1. */
    int64_t base = ((1 * 5 + 2) * 3 + 1) * 8;
    double ang = (100 + 2) * pow(10000.0, -2.0 * 1 / 8);
    double x1 = F(&x)[base + 1], x2 = F(&x)[base + 5];
    CHECK_NEAR(F(&y)[base + 1], x1 * cos(ang) - x2 * sin(ang), 1e-5);
    CHECK_NEAR(F(&y)[base + 5], x2 * cos(ang) + x1 * sin(ang), 1e-5);
    /* [B, L, D] reads as H = 1. */
    lact_tensor a3 = rand_tensor(3, s3, 1.0f), o3 = zeros(3, s3, LACT_F32),
                o4 = zeros(4, s31, LACT_F32);
    lact_tensor a4 = lact_tensor_view(a3.data, LACT_F32, LACT_CPU, 4, s31);
    CHECK_OK(lact_rope_forward(&ctx, &o3, &a3, 0, 500.0f));
    CHECK_OK(lact_rope_forward(&ctx, &o4, &a4, 0, 500.0f));
    CHECK(memcmp(o3.data, o4.data, lact_tensor_nbytes(&o3)) == 0);
    int64_t odd[3] = {1, 2, 7};
    lact_tensor bad = zeros(3, odd, LACT_F32);
    CHECK_FAILS(lact_rope_forward(&ctx, &bad, &bad, 0, 10000.0f), LACT_E_ARG);
    lact_tensor *all[] = {&x, &y, &z, &a3, &o3, &o4, &bad};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        lact_tensor_free(all[i]);
}

static void test_rows(void) {
    int64_t s[2] = {7, 33};
    lact_tensor x = rand_tensor(2, s, 3.0f), y = zeros(2, s, LACT_F32);
    CHECK_OK(lact_softmax_forward(&ctx, &y, &x));
    for (int r = 0; r < 7; r++) {
        double sum = 0.0;
        bool positive = true;
        for (int j = 0; j < 33; j++) {
            sum += F(&y)[r * 33 + j];
            positive = positive && F(&y)[r * 33 + j] > 0.0f;
        }
        CHECK_NEAR(sum, 1.0, 1e-5);
        CHECK(positive);
    }
    CHECK_OK(lact_l2norm_forward(&ctx, &y, &x, 1e-5f));
    for (int r = 0; r < 7; r++) {
        double ss = 0.0;
        for (int j = 0; j < 33; j++)
            ss += (double)F(&y)[r * 33 + j] * F(&y)[r * 33 + j];
        CHECK_NEAR(sqrt(ss), 1.0, 1e-4);
    }
    /* rmsnorm and layernorm statistics against their definitions. */
    int64_t rows = 7, ch = 33;
    lact_tensor rstd = zeros(1, &rows, LACT_F32), mean = zeros(1, &rows, LACT_F32);
    lact_tensor w = rand_tensor(1, &ch, 1.0f), b = rand_tensor(1, &ch, 1.0f);
    CHECK_OK(lact_rmsnorm_forward(&ctx, &y, &rstd, &x, &w, 1e-6f));
    double ss = 0.0;
    for (int j = 0; j < 33; j++)
        ss += (double)F(&x)[2 * 33 + j] * F(&x)[2 * 33 + j];
    double r2 = 1.0 / sqrt(ss / 33 + 1e-6);
    CHECK_NEAR(F(&rstd)[2], r2, 1e-5 * r2);
    CHECK_NEAR(F(&y)[2 * 33 + 4], F(&x)[2 * 33 + 4] * r2 * F(&w)[4], 1e-5);
    CHECK_OK(lact_layernorm_forward(&ctx, &y, &mean, &rstd, &x, &w, &b, 1e-5f));
    for (int r = 0; r < 7; r++) {
        double mu = 0.0, var = 0.0;
        for (int j = 0; j < 33; j++)
            mu += F(&x)[r * 33 + j] / 33.0;
        for (int j = 0; j < 33; j++)
            var += pow(F(&x)[r * 33 + j] - mu, 2) / 33.0;
        CHECK_NEAR(F(&mean)[r], mu, 1e-5);
        CHECK_NEAR(F(&rstd)[r], 1.0 / sqrt(var + 1e-5), 1e-4);
        double want = (F(&x)[r * 33] - mu) / sqrt(var + 1e-5) * F(&w)[0] + F(&b)[0];
        CHECK_NEAR(F(&y)[r * 33], want, 1e-4);
    }
    /* sum and norm. */
    lact_tensor sum = zeros(1, &rows, LACT_F32);
    int64_t one = 1;
    lact_tensor nrm = zeros(1, &one, LACT_F32);
    CHECK_OK(lact_sum_forward(&ctx, &sum, &x));
    CHECK_OK(lact_norm_forward(&ctx, &nrm, &x));
    double total2 = 0.0, row5 = 0.0;
    for (int j = 0; j < 7 * 33; j++)
        total2 += (double)F(&x)[j] * F(&x)[j];
    for (int j = 0; j < 33; j++)
        row5 += F(&x)[5 * 33 + j];
    CHECK_NEAR(F(&sum)[5], row5, 1e-4);
    CHECK_NEAR(F(&nrm)[0], sqrt(total2), 1e-4);
    lact_tensor *all[] = {&x, &y, &rstd, &mean, &w, &b, &sum, &nrm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        lact_tensor_free(all[i]);
}

/* Repeated ids add up their rows' gradients; NULL gradients are skipped. */
static void test_embedding_and_skips(void) {
    int64_t ts[2] = {4, 3}, n = 5, os[2] = {5, 3};
    lact_tensor table = rand_tensor(2, ts, 1.0f), ids = zeros(1, &n, LACT_I32);
    int32_t id[5] = {2, 0, 2, 3, 2};
    memcpy(ids.data, id, sizeof id);
    lact_tensor out = zeros(2, os, LACT_F32), dout = rand_tensor(2, os, 1.0f);
    lact_tensor dtable = rand_tensor(2, ts, 1.0f);
    CHECK_OK(lact_embedding_forward(&ctx, &out, &table, &ids));
    CHECK(memcmp(F(&out) + 2 * 3, F(&table) + 2 * 3, 3 * sizeof(float)) == 0);
    CHECK_OK(lact_embedding_backward(&ctx, &dtable, &dout, &ids));
    for (int j = 0; j < 3; j++) {
        CHECK_NEAR(F(&dtable)[2 * 3 + j], F(&dout)[j] + F(&dout)[2 * 3 + j] + F(&dout)[4 * 3 + j],
                   1e-6);
        CHECK(F(&dtable)[1 * 3 + j] == 0.0f); /* overwritten, not accumulated */
    }
    /* The _add form adds the same rows to what dtable holds. */
    lact_tensor before = {0};
    CHECK_OK(lact_tensor_clone(&before, &dtable, LACT_F32, LACT_CPU));
    CHECK_OK(lact_embedding_backward_add(&ctx, &dtable, &dout, &ids));
    for (int j = 0; j < 3; j++) {
        CHECK_NEAR(F(&dtable)[2 * 3 + j], 2 * F(&before)[2 * 3 + j], 1e-6);
        CHECK_NEAR(F(&dtable)[0 * 3 + j], F(&before)[0 * 3 + j] + F(&dout)[1 * 3 + j], 1e-6);
        CHECK(F(&dtable)[1 * 3 + j] == 0.0f);
    }
    lact_tensor_free(&before);
    id[1] = 4;
    memcpy(ids.data, id, sizeof id);
    CHECK_FAILS(lact_embedding_forward(&ctx, &out, &table, &ids), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "ids[1]") != NULL);

    /* rmsnorm backward with only dw requested leaves nothing else written. */
    int64_t xs[2] = {3, 4}, c = 4, r = 3;
    lact_tensor x = rand_tensor(2, xs, 1.0f), y = zeros(2, xs, LACT_F32);
    lact_tensor rstd = zeros(1, &r, LACT_F32), w = rand_tensor(1, &c, 1.0f);
    lact_tensor dw = zeros(1, &c, LACT_F32), dy = rand_tensor(2, xs, 1.0f);
    CHECK_OK(lact_rmsnorm_forward(&ctx, &y, &rstd, &x, &w, 1e-6f));
    CHECK_OK(lact_rmsnorm_backward(&ctx, NULL, &dw, &dy, &x, &w, &rstd));
    double want = 0.0;
    for (int i = 0; i < 3; i++)
        want += F(&dy)[i * 4 + 1] * F(&x)[i * 4 + 1] * F(&rstd)[i];
    CHECK_NEAR(F(&dw)[1], want, 1e-5);
    /* The _acc form adds dw to what it holds. */
    CHECK_OK(lact_rmsnorm_backward_acc(&ctx, NULL, &dw, &dy, &x, &w, &rstd, NULL));
    CHECK_NEAR(F(&dw)[1], 2 * want, 2e-5);
    CHECK_OK(lact_rmsnorm_backward(&ctx, NULL, NULL, &dy, &x, &w, &rstd));
    /* With a residual: res + the gradient, to the bit of a separate add,
     * also in place (dx = res); res without dx is refused. */
    lact_tensor g = zeros(2, xs, LACT_F32), res = rand_tensor(2, xs, 2.0f);
    lact_tensor sum = zeros(2, xs, LACT_F32), fused = zeros(2, xs, LACT_F32);
    CHECK_OK(lact_rmsnorm_backward(&ctx, &g, NULL, &dy, &x, &w, &rstd));
    CHECK_OK(lact_add_forward(&ctx, &sum, &res, &g));
    CHECK_OK(lact_rmsnorm_backward_add(&ctx, &fused, NULL, &dy, &x, &w, &rstd, &res));
    CHECK(memcmp(F(&fused), F(&sum), lact_tensor_nbytes(&sum)) == 0);
    CHECK_OK(lact_rmsnorm_backward_add(&ctx, &res, NULL, &dy, &x, &w, &rstd, &res));
    CHECK(memcmp(F(&res), F(&sum), lact_tensor_nbytes(&sum)) == 0);
    CHECK_FAILS(lact_rmsnorm_backward_add(&ctx, NULL, &dw, &dy, &x, &w, &rstd, &res), LACT_E_ARG);
    /* The forward with a tensor added: the same bits as the norm then an add,
     * also in place (out = res). */
    lact_tensor yf = zeros(2, xs, LACT_F32), rstd2 = zeros(1, &r, LACT_F32);
    CHECK_OK(lact_add_forward(&ctx, &sum, &dy, &y));
    CHECK_OK(lact_rmsnorm_forward_add(&ctx, &yf, &rstd2, &x, &w, 1e-6f, &dy));
    CHECK(memcmp(F(&yf), F(&sum), lact_tensor_nbytes(&sum)) == 0);
    CHECK(memcmp(F(&rstd2), F(&rstd), lact_tensor_nbytes(&rstd)) == 0);
    CHECK_OK(lact_rmsnorm_forward_add(&ctx, &dy, &rstd2, &x, &w, 1e-6f, &dy));
    CHECK(memcmp(F(&dy), F(&sum), lact_tensor_nbytes(&sum)) == 0);
    CHECK(strstr(lact_errmsg(), "res is given but dx is NULL") != NULL);
    lact_tensor *all[] = {&table, &ids, &out, &dout, &dtable, &x,     &y,  &rstd, &w,
                          &dw,    &dy,  &g,   &res,  &sum,    &fused, &yf, &rstd2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        lact_tensor_free(all[i]);
}

/* ---- optimizers ------------------------------------------------------------------- */

static void test_adamw(void) {
    int64_t n = 50;
    lact_tensor p = rand_tensor(1, &n, 1.0f), m = rand_tensor(1, &n, 0.1f);
    lact_tensor v = rand_tensor(1, &n, 0.1f), g = rand_tensor(1, &n, 1.0f);
    for (int i = 0; i < n; i++)
        F(&v)[i] = fabsf(F(&v)[i]);
    float p0[50], m0[50], v0[50];
    memcpy(p0, p.data, sizeof p0);
    memcpy(m0, m.data, sizeof m0);
    memcpy(v0, v.data, sizeof v0);
    lact_adamw_args a = {
        .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.1f, .step = 3};
    CHECK_OK(lact_adamw_step(&ctx, &p, &m, &v, &g, &a));
    for (int i = 0; i < n; i++) {
        double gi = F(&g)[i];
        double mi = 0.9 * m0[i] + 0.1 * gi, vi = 0.99 * v0[i] + 0.01 * gi * gi;
        double mhat = mi / (1 - pow(0.9, 3)), vhat = vi / (1 - pow(0.99, 3));
        double pi = p0[i] - 0.01 * (mhat / (sqrt(vhat) + 1e-8) + 0.1 * p0[i]);
        CHECK_NEAR(F(&m)[i], mi, 1e-6);
        CHECK_NEAR(F(&v)[i], vi, 1e-6);
        CHECK_NEAR(F(&p)[i], pi, 1e-5);
    }
    a.step = 0;
    CHECK_FAILS(lact_adamw_step(&ctx, &p, &m, &v, &g, &a), LACT_E_ARG);
    lact_tensor *all[] = {&p, &m, &v, &g};
    for (size_t i = 0; i < 4; i++)
        lact_tensor_free(all[i]);
}

/* The whole-block options: a clipped step is the step on g scaled first,
 * elements past decay_end take no decay, the shadow is bf16(p), and a
 * non-finite norm leaves everything as it was. */
static void test_adamw_block(void) {
    int64_t n = 37, one = 1;
    lact_tensor p = rand_tensor(1, &n, 1.0f), m = rand_tensor(1, &n, 0.1f);
    lact_tensor v = rand_tensor(1, &n, 0.1f), g = rand_tensor(1, &n, 1.0f);
    for (int i = 0; i < n; i++)
        F(&v)[i] = fabsf(F(&v)[i]);
    lact_tensor norm, shadow, ref[4];
    CHECK_OK(lact_tensor_alloc(&norm, LACT_F32, LACT_CPU, 1, &one));
    CHECK_OK(lact_tensor_alloc(&shadow, LACT_BF16, LACT_CPU, 1, &n));
    lact_tensor *src[4] = {&p, &m, &v, &g};
    for (int k = 0; k < 4; k++)
        CHECK_OK(lact_tensor_clone(&ref[k], src[k], LACT_F32, LACT_CPU));
    F(&norm)[0] = 8.0f;
    lact_adamw_args a = {.lr = 0.01f,
                         .beta1 = 0.9f,
                         .beta2 = 0.99f,
                         .eps = 1e-8f,
                         .weight_decay = 0.5f,
                         .step = 2,
                         .decay_end = 20,
                         .grad_norm = &norm,
                         .max_norm = 2.0f,
                         .shadow = &shadow};
    CHECK_OK(lact_adamw_step(&ctx, &p, &m, &v, &g, &a));
    /* The reference: g scaled by 2/8 first, then plain steps on the two
     * ranges. */
    for (int i = 0; i < n; i++)
        F(&ref[3])[i] *= 0.25f;
    lact_adamw_args b = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .step = 2};
    int64_t lo = 20, hi = n - 20;
    for (int part = 0; part < 2; part++) {
        int64_t at = part ? lo : 0, len = part ? hi : lo;
        lact_tensor r[4];
        for (int k = 0; k < 4; k++)
            r[k] = lact_tensor_view(F(&ref[k]) + at, LACT_F32, LACT_CPU, 1, &len);
        b.weight_decay = part ? 0.0f : 0.5f;
        CHECK_OK(lact_adamw_step(&ctx, &r[0], &r[1], &r[2], &r[3], &b));
    }
    CHECK(memcmp(p.data, ref[0].data, lact_tensor_nbytes(&p)) == 0);
    CHECK(memcmp(m.data, ref[1].data, lact_tensor_nbytes(&m)) == 0);
    CHECK(memcmp(v.data, ref[2].data, lact_tensor_nbytes(&v)) == 0);
    for (int i = 0; i < n; i++)
        CHECK(((uint16_t *)shadow.data)[i] == lact_f32_to_bf16(F(&p)[i]));
    /* A non-finite norm: nothing moves. */
    lact_tensor_free(&ref[0]);
    CHECK_OK(lact_tensor_clone(&ref[0], &p, LACT_F32, LACT_CPU));
    F(&norm)[0] = INFINITY;
    CHECK_OK(lact_adamw_step(&ctx, &p, &m, &v, &g, &a));
    CHECK(memcmp(p.data, ref[0].data, lact_tensor_nbytes(&p)) == 0);
    /* Bad options: one-line errors naming them. */
    a.decay_end = n + 1;
    CHECK_FAILS(lact_adamw_step(&ctx, &p, &m, &v, &g, &a), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "decay_end") != NULL);
    a.decay_end = 0;
    a.grad_norm = NULL;
    CHECK_FAILS(lact_adamw_step(&ctx, &p, &m, &v, &g, &a), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "max_norm needs grad_norm") != NULL);
    a.max_norm = 0.0f;
    a.shadow = &norm;
    CHECK_FAILS(lact_adamw_step(&ctx, &p, &m, &v, &g, &a), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "shadow") != NULL);
    lact_tensor *all[] = {&p, &m, &v, &g, &norm, &shadow, &ref[0], &ref[1], &ref[2], &ref[3]};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        lact_tensor_free(all[i]);
}

/* NS drives the singular values of a well-conditioned matrix towards 1:
 * the small Gram matrix is close to the identity. */
static void check_orthogonal(int64_t rows, int64_t cols) {
    int64_t s[2] = {rows, cols};
    lact_tensor g = rand_tensor(2, s, 1.0f), o = zeros(2, s, LACT_F32);
    CHECK_OK(lact_newton_schulz(&ctx, &o, &g, 5));
    int64_t k = rows < cols ? rows : cols;
    double worst_off = 0.0, lo = INFINITY, hi = 0.0;
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < k; j++) {
            double acc = 0.0;
            for (int64_t l = 0; l < (rows < cols ? cols : rows); l++)
                acc += rows < cols ? (double)F(&o)[i * cols + l] * F(&o)[j * cols + l]
                                   : (double)F(&o)[l * cols + i] * F(&o)[l * cols + j];
            if (i == j) {
                lo = fmin(lo, acc);
                hi = fmax(hi, acc);
            } else {
                worst_off = fmax(worst_off, fabs(acc));
            }
        }
    CHECK_MSG(lo >= 0.6 && hi <= 1.3, "NS %lldx%lld: Gram diagonal in [%g, %g]", (long long)rows,
              (long long)cols, lo, hi);
    CHECK_MSG(worst_off < 0.3, "NS %lldx%lld: Gram off-diagonal up to %g", (long long)rows,
              (long long)cols, worst_off);
    lact_tensor_free(&g);
    lact_tensor_free(&o);
}

static void test_muon(void) {
    check_orthogonal(16, 64);
    check_orthogonal(64, 16);
    /* Muon without momentum or decay steps along −NS(g), scaled by
     * sqrt(max(1, R/C)); the step descends along g. */
    int64_t s[2] = {24, 8};
    lact_tensor p = rand_tensor(2, s, 1.0f), m = zeros(2, s, LACT_F32);
    lact_tensor g = rand_tensor(2, s, 1.0f), o = zeros(2, s, LACT_F32);
    float p0[24 * 8];
    memcpy(p0, p.data, sizeof p0);
    lact_muon_args a = {
        .lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.0f, .nesterov = false, .ns_steps = 5};
    CHECK_OK(lact_muon_step(&ctx, &p, &m, &g, &a));
    CHECK_OK(lact_newton_schulz(&ctx, &o, &g, 5));
    double dot = 0.0, worst = 0.0;
    for (int i = 0; i < 24 * 8; i++) {
        double step = F(&p)[i] - p0[i];
        dot += step * F(&g)[i];
        worst = fmax(worst, fabs(step - (-0.1 * sqrt(3.0) * F(&o)[i])));
        CHECK(F(&m)[i] == F(&g)[i]); /* m = 0.9 · 0 + g */
    }
    CHECK_MSG(dot < 0.0, "muon step is not a descent direction (<step, g> = %g)", dot);
    CHECK_MSG(worst < 1e-5, "muon step differs from -lr sqrt(R/C) NS(g) by %g", worst);
    /* Weight decay alone (zero gradient, zero momentum) shrinks the weights. */
    memset(m.data, 0, lact_tensor_nbytes(&m));
    memset(g.data, 0, lact_tensor_nbytes(&g));
    memcpy(p0, p.data, sizeof p0);
    a.weight_decay = 0.5f;
    CHECK_OK(lact_muon_step(&ctx, &p, &m, &g, &a));
    CHECK_NEAR(F(&p)[7], p0[7] * (1 - 0.1 * 0.5), 1e-6);
    lact_tensor *all[] = {&p, &m, &g, &o};
    for (size_t i = 0; i < 4; i++)
        lact_tensor_free(all[i]);
}

/* ---- fills ------------------------------------------------------------------------ */

static void test_fill(void) {
    int64_t n = 100000;
    lact_tensor x = zeros(1, &n, LACT_F32), y = zeros(1, &n, LACT_F32);
    CHECK_OK(lact_fill_uniform(&ctx, &x, 42, 3, -2.0f, 6.0f));
    double sum = 0.0, sum2 = 0.0;
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        sum += F(&x)[i];
        lo = fminf(lo, F(&x)[i]);
        hi = fmaxf(hi, F(&x)[i]);
    }
    CHECK(lo >= -2.0f && hi <= 6.0f && hi - lo > 7.9f);
    CHECK_NEAR(sum / n, 2.0, 0.05);
    CHECK_NEAR(F(&x)[17], -2.0f + 8.0f * lact_philox_uniform(42, 3, 17), 1e-6);
    CHECK_OK(lact_fill_uniform(&ctx, &y, 42, 4, -2.0f, 6.0f));
    CHECK(memcmp(x.data, y.data, lact_tensor_nbytes(&x)) != 0);

    CHECK_OK(lact_fill_normal(&ctx, &x, 7, 0, 1.5f, 0.5f));
    sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        sum += F(&x)[i];
        sum2 += (double)F(&x)[i] * F(&x)[i];
    }
    double mean = sum / n, std = sqrt(sum2 / n - mean * mean);
    CHECK_NEAR(mean, 1.5, 0.01);
    CHECK_NEAR(std, 0.5, 0.01);
    lact_tensor hb = zeros(1, &n, LACT_BF16);
    CHECK_OK(lact_fill_normal(&ctx, &hb, 7, 0, 1.5f, 0.5f));
    CHECK_NEAR(lact_bf16_to_f32(((uint16_t *)hb.data)[9]), F(&x)[9], 0.02);
    CHECK_FAILS(lact_fill_normal(&ctx, &x, 7, 0, 0.0f, -1.0f), LACT_E_ARG);
    lact_tensor_free(&x);
    lact_tensor_free(&y);
    lact_tensor_free(&hb);
}

static void test_cast(void) {
    int64_t n = 64;
    lact_tensor x = rand_tensor(1, &n, 10.0f), h = zeros(1, &n, LACT_BF16),
                back = zeros(1, &n, LACT_F32);
    CHECK_OK(lact_cast_forward(&ctx, &h, &x));
    CHECK_OK(lact_cast_forward(&ctx, &back, &h));
    for (int i = 0; i < n; i++)
        CHECK_MSG(fabsf(F(&back)[i] - F(&x)[i]) <= fabsf(F(&x)[i]) * (1.0f / 256.0f),
                  "cast %d: %g -> bf16 -> %g", i, F(&x)[i], F(&back)[i]);
    lact_tensor_free(&x);
    lact_tensor_free(&h);
    lact_tensor_free(&back);
}

/* ---- permute, softplus, sigmoid ------------------------------------------------------------ */

/* Each permute element against direct indexing; twice is the identity. */
static void check_permute_shape(int64_t A, int64_t B, int64_t C, int64_t E) {
    int64_t xs[4] = {A, B, C, E}, ys[4] = {A, C, B, E};
    lact_tensor x = rand_tensor(4, xs, 1.0f), y = zeros(4, ys, LACT_F32);
    lact_tensor back = zeros(4, xs, LACT_F32);
    CHECK_OK(lact_permute_forward(&ctx, &y, &x));
    int64_t bad = 0;
    for (int64_t a = 0; a < A; a++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t e = 0; e < E; e++)
                    bad += F(&y)[((a * C + c) * B + b) * E + e] !=
                           F(&x)[((a * B + b) * C + c) * E + e];
    CHECK_MSG(bad == 0, "permute [%lld, %lld, %lld, %lld]: %lld elements misplaced", (long long)A,
              (long long)B, (long long)C, (long long)E, (long long)bad);
    CHECK_OK(lact_permute_backward(&ctx, &back, &y));
    CHECK(memcmp(back.data, x.data, lact_tensor_nbytes(&x)) == 0);
    lact_tensor_free(&x);
    lact_tensor_free(&y);
    lact_tensor_free(&back);
}

static void test_permute(void) {
    check_permute_shape(2, 5, 3, 4);
    check_permute_shape(3, 7, 11, 1);
    check_permute_shape(1, 1, 6, 2);
    check_permute_shape(2, 4, 1, 9);
    int64_t xs[4] = {2, 5, 3, 4}, wrong[4] = {2, 5, 3, 4};
    lact_tensor x = rand_tensor(4, xs, 1.0f), y = zeros(4, wrong, LACT_F32);
    CHECK_FAILS(lact_permute_forward(&ctx, &y, &x), LACT_E_ARG);
    CHECK_MSG(strstr(lact_errmsg(), "expected [2, 3, 5, 4]") != NULL, "message was \"%s\"",
              lact_errmsg());
    int64_t flat[2] = {10, 12};
    lact_tensor x2 = lact_tensor_view(x.data, LACT_F32, LACT_CPU, 2, flat);
    CHECK_FAILS(lact_permute_forward(&ctx, &y, &x2), LACT_E_ARG);
    /* In place would read what it already overwrote. */
    int64_t sq[4] = {1, 3, 3, 1};
    lact_tensor a = lact_tensor_view(x.data, LACT_F32, LACT_CPU, 4, sq);
    CHECK_FAILS(lact_permute_forward(&ctx, &a, &a), LACT_E_ARG);
    lact_tensor_free(&x);
    lact_tensor_free(&y);
}

/* Saturated arguments stay finite and correct; the rest matches double. */
static void test_softplus_sigmoid(void) {
    static const float xv[] = {-100.0f, -30.0f, -5.0f, -0.5f, 0.0f, 0.5f, 5.0f, 30.0f, 100.0f};
    int64_t n = (int64_t)(sizeof xv / sizeof xv[0]);
    lact_tensor x = zeros(1, &n, LACT_F32), y = zeros(1, &n, LACT_F32);
    lact_tensor d = zeros(1, &n, LACT_F32), dx = zeros(1, &n, LACT_F32);
    lact_tensor xm = zeros(1, &n, LACT_F32), ym = zeros(1, &n, LACT_F32);
    for (int64_t i = 0; i < n; i++) {
        F(&x)[i] = xv[i];
        F(&xm)[i] = -xv[i];
        F(&d)[i] = 1.5f;
    }
    for (int k = 0; k < 2; k++) {
        /* The shift moves the argument: x − 3 with shift 3 is x. */
        float shift = k ? 3.0f : 0.0f;
        for (int64_t i = 0; i < n; i++)
            F(&x)[i] = xv[i] - shift;
        CHECK_OK(lact_softplus_forward(&ctx, &y, &x, shift));
        CHECK_OK(lact_softplus_backward(&ctx, &dx, &d, &x, shift));
        for (int64_t i = 0; i < n; i++) {
            double z = xv[i], want = z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
            double g = 1.5 / (1.0 + exp(-z));
            float got = F(&y)[i], gd = F(&dx)[i];
            CHECK_MSG(isfinite(got) && got >= 0.0f && fabs(got - want) <= 1e-6 * want + 1e-37,
                      "softplus(%g) shift %g = %g, expected %g", z, shift, got, want);
            CHECK_MSG(isfinite(gd) && fabs(gd - g) <= 1e-6 * g + 1e-37,
                      "softplus backward at %g = %g, expected %g", z, gd, g);
        }
    }
    CHECK(F(&y)[n - 1] == 100.0f);
    CHECK(F(&y)[0] > 0.0f && F(&y)[0] < 1e-40f);

    for (int64_t i = 0; i < n; i++)
        F(&x)[i] = xv[i];
    CHECK_OK(lact_sigmoid_forward(&ctx, &y, &x));
    CHECK_OK(lact_sigmoid_forward(&ctx, &ym, &xm));
    CHECK_OK(lact_sigmoid_backward(&ctx, &dx, &d, &y));
    for (int64_t i = 0; i < n; i++) {
        double z = xv[i], want = 1.0 / (1.0 + exp(-z));
        float got = F(&y)[i];
        CHECK_MSG(isfinite(got) && fabs(got - want) <= 1e-6 * want + 1e-37,
                  "sigmoid(%g) = %g, expected %g", z, got, want);
        CHECK_MSG(fabsf(got + F(&ym)[i] - 1.0f) <= 1e-6f, "sigmoid(%g) + sigmoid(%g) = %g", z, -z,
                  got + F(&ym)[i]);
        double g = 1.5 * (double)got * (1.0 - (double)got);
        CHECK_MSG(fabs(F(&dx)[i] - g) <= 1e-6 * g + 1e-37,
                  "sigmoid backward at %g = %g, expected %g", z, F(&dx)[i], g);
    }
    CHECK(F(&y)[4] == 0.5f);
    lact_tensor_free(&x);
    lact_tensor_free(&y);
    lact_tensor_free(&d);
    lact_tensor_free(&dx);
    lact_tensor_free(&xm);
    lact_tensor_free(&ym);
}

/* ---- argument checks ------------------------------------------------------------------- */

static void test_validation(void) {
    int64_t xs[2] = {3, 8}, r = 3, seven = 7, eight = 8;
    lact_tensor x = rand_tensor(2, xs, 1.0f), y = zeros(2, xs, LACT_F32);
    lact_tensor rstd = zeros(1, &r, LACT_F32), w7 = zeros(1, &seven, LACT_F32);
    lact_tensor w8 = zeros(1, &eight, LACT_F32);
    CHECK_FAILS(lact_rmsnorm_forward(&ctx, &y, &rstd, &x, &w7, 1e-6f), LACT_E_ARG);
    CHECK_MSG(strstr(lact_errmsg(), "rmsnorm: w has shape [7], expected [8]") != NULL,
              "message was \"%s\"", lact_errmsg());

    /* BF16 activations are a CUDA feature. */
    lact_tensor xb = zeros(2, xs, LACT_BF16), yb = zeros(2, xs, LACT_BF16);
    CHECK_FAILS(lact_rmsnorm_forward(&ctx, &yb, &rstd, &xb, &w8, 1e-6f), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "x has dtype BF16") != NULL);
    CHECK_FAILS(lact_silu_forward(&ctx, &y, &xb), LACT_E_ARG);

    /* A tensor on another device than the context. */
    lact_tensor xg = lact_tensor_view(x.data, LACT_F32, LACT_CUDA, 2, xs);
    CHECK_FAILS(lact_softmax_forward(&ctx, &y, &xg), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "x is on cuda") != NULL);

    /* Shapes that do not fit. */
    int64_t as[2] = {3, 4}, bs[2] = {5, 2}, os[2] = {3, 2};
    lact_tensor a = zeros(2, as, LACT_F32), b = zeros(2, bs, LACT_F32), o = zeros(2, os, LACT_F32);
    CHECK_FAILS(lact_matmul_forward(&ctx, &o, &a, &b, false, false, 1.0f, 0.0f), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "matmul: inner dims differ") != NULL);
    /* [3, 4] · [3, 4]ᵀ is [3, 3], not out's [3, 2]. */
    CHECK_FAILS(lact_matmul_forward(&ctx, &o, &a, &a, false, true, 1.0f, 0.0f), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "out has shape [3, 2]") != NULL);
    CHECK_FAILS(lact_add_forward(&ctx, &y, &x, &w7), LACT_E_ARG);
    CHECK_FAILS(lact_swiglu_forward(&ctx, &y, &x, &rstd), LACT_E_ARG);
    CHECK_FAILS(lact_layernorm_forward(&ctx, &y, &w8, &rstd, &x, NULL, NULL, 1e-5f), LACT_E_ARG);
    CHECK_FAILS(lact_silu_forward(NULL, &y, &x), LACT_E_ARG);
    CHECK_FAILS(lact_newton_schulz(&ctx, &rstd, &rstd, 5), LACT_E_ARG);

#if !LACT_WITH_CUDA
    /* A CUDA context in a build without CUDA. */
    lact_ctx cuda_ctx = {.device = LACT_CUDA};
    lact_tensor yg = lact_tensor_view(y.data, LACT_F32, LACT_CUDA, 2, xs);
    CHECK_FAILS(lact_silu_forward(&cuda_ctx, &yg, &xg), LACT_E_UNSUPPORTED);
#endif

    /* The table's plans name the missing or misshapen input. */
    const lact_op_def *op = lact_op_find("rmsnorm");
    CHECK(op != NULL);
    if (op) {
        lact_tensor in[LACT_OP_MAX_IO], out[LACT_OP_MAX_IO];
        double params[LACT_OP_MAX_PARAMS];
        memset(in, 0, sizeof in);
        lact_op_default_params(op, params);
        CHECK_FAILS(op->plan(in, params, out), LACT_E_ARG);
        CHECK(strstr(lact_errmsg(), "missing") != NULL);
        in[0] = x;
        in[1] = w7;
        CHECK_FAILS(op->plan(in, params, out), LACT_E_ARG);
        in[1] = w8;
        CHECK_OK(op->plan(in, params, out));
        CHECK(out[0].ndim == 2 && out[0].shape[1] == 8 && out[1].ndim == 1 &&
              out[1].shape[0] == 3 && out[1].dtype == LACT_F32);
        in[1].ndim = 0; /* w is optional */
        in[1].data = NULL;
        CHECK_OK(op->plan(in, params, out));
        in[0] = xb;
        CHECK_OK(op->plan(in, params, out)); /* BF16 plans; the CPU kernel refuses it */
        CHECK(out[0].dtype == LACT_BF16 && out[1].dtype == LACT_F32);
    }
    op = lact_op_find("matmul");
    if (op) {
        lact_tensor in[LACT_OP_MAX_IO], out[LACT_OP_MAX_IO];
        double params[LACT_OP_MAX_PARAMS];
        memset(in, 0, sizeof in);
        lact_op_default_params(op, params);
        in[0] = a;
        in[1] = b;
        CHECK_FAILS(op->plan(in, params, out), LACT_E_ARG);
        params[lact_op_param_index(op, "tb")] = 1;
        in[1] = a;
        CHECK_OK(op->plan(in, params, out));
        CHECK(out[0].shape[0] == 3 && out[0].shape[1] == 3);
    }
    lact_tensor *all[] = {&x, &y, &rstd, &w7, &w8, &xb, &yb, &a, &b, &o};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        lact_tensor_free(all[i]);
}

/* ---- the table: every row's cases plan and run, with finite outputs --------------- */

static void test_table_rows(void) {
    for (int r = 0; r < lact_op_count(); r++) {
        const lact_op_def *op = lact_op_at(r);
        for (int c = 0;; c++) {
            lact_tensor in[LACT_OP_MAX_IO], plan[LACT_OP_MAX_IO], out[LACT_OP_MAX_IO];
            double params[LACT_OP_MAX_PARAMS];
            memset(in, 0, sizeof in);
            memset(out, 0, sizeof out);
            lact_op_default_params(op, params);
            if (!op->make_case(c, 99, in, params)) break;
            CHECK_OK(op->plan(in, params, plan));
            int n_out = lact_op_n_outputs(op);
            bool finite = true;
            for (int k = 0; k < n_out; k++) {
                CHECK(plan[k].device == LACT_CPU && plan[k].data == NULL);
                CHECK_OK(lact_tensor_alloc(&out[k], plan[k].dtype, LACT_CPU, plan[k].ndim,
                                           plan[k].shape));
            }
            CHECK_MSG(op->forward(&ctx, out, in, params) == LACT_OK, "%s case %d: %s", op->name, c,
                      lact_errmsg());
            for (int k = 0; k < n_out; k++)
                for (int64_t i = 0; out[k].dtype == LACT_F32 && i < lact_tensor_numel(&out[k]); i++)
                    finite = finite && isfinite(F(&out[k])[i]);
            CHECK_MSG(finite, "%s case %d: non-finite output", op->name, c);
            /* The in-place steps run on copies: the inputs stay as they were. */
            if (strcmp(op->name, "adamw") == 0 && c == 0) {
                lact_tensor p, m, v;
                CHECK_OK(lact_tensor_clone(&p, &in[0], LACT_F32, LACT_CPU));
                CHECK_OK(lact_tensor_clone(&m, &in[1], LACT_F32, LACT_CPU));
                CHECK_OK(lact_tensor_clone(&v, &in[2], LACT_F32, LACT_CPU));
                lact_adamw_args a = {.lr = (float)params[0],
                                     .beta1 = (float)params[1],
                                     .beta2 = (float)params[2],
                                     .eps = (float)params[3],
                                     .weight_decay = (float)params[4],
                                     .step = (int64_t)params[5]};
                CHECK_OK(lact_adamw_step(&ctx, &p, &m, &v, &in[3], &a));
                CHECK(memcmp(p.data, out[0].data, lact_tensor_nbytes(&p)) == 0);
                CHECK(memcmp(v.data, out[2].data, lact_tensor_nbytes(&v)) == 0);
                CHECK(memcmp(p.data, in[0].data, lact_tensor_nbytes(&p)) != 0);
                lact_tensor_free(&p);
                lact_tensor_free(&m);
                lact_tensor_free(&v);
            }
            for (int k = 0; k < LACT_OP_MAX_IO; k++) {
                lact_tensor_free(&in[k]);
                lact_tensor_free(&out[k]);
            }
        }
    }
}

int main(void) {
    rng = lact_rng_make(1234, 1);
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    test_matmul();
    test_xent();
    test_rope();
    test_rows();
    test_embedding_and_skips();
    test_adamw();
    test_adamw_block();
    test_muon();
    test_fill();
    test_cast();
    test_permute();
    test_softplus_sigmoid();
    test_validation();
    test_table_rows();
    lact_ctx_free(&ctx);
    return check_summary("kernels_cpu_ops");
}
