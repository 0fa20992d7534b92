/* ttt at a realistic size: float against double (forward and every
 * gradient), the public tensor interface against the raw reference, the
 * state in BF16, the order builders and the argument checks. */
#include <math.h>
#include <stdio.h>

#include "core/base/context.h"
#include "core/base/tensor.h"
#include "tests/kernels/test_ttt_common.h"
#include "tests/kernels/test_ttt_shared.h"
#include "tests/support/check.h"

typedef struct f32_case {
    float *x[10];
    lact_tensor t[10]; /* views of x */
} f32_case;

static void to_f32(const tc_case *c, f32_case *f) {
    int64_t N = c->n, L = c->len, d = c->d, dh = c->dh;
    const int64_t shapes[10][3] = {{N, L, d}, {N, L, d}, {N, L, d},  {N, L, 0},  {N, L, 0},
                                   {N, L, 0}, {N, L, 0}, {N, dh, d}, {N, d, dh}, {N, dh, d}};
    for (int i = 0; i < 10; i++) {
        f->x[i] = NULL;
        f->t[i] = (lact_tensor){0};
        if (!c->numel[i]) continue;
        f->x[i] = malloc((size_t)c->numel[i] * sizeof(float));
        for (int64_t j = 0; j < c->numel[i]; j++)
            f->x[i][j] = (float)c->x[i][j];
        f->t[i] = lact_tensor_view(f->x[i], LACT_F32, LACT_CPU, shapes[i][2] ? 3 : 2, shapes[i]);
    }
}

static void free_f32(f32_case *f) {
    for (int i = 0; i < 10; i++)
        free(f->x[i]);
}

static lact_tensor *opt(lact_tensor *t) {
    return t->data ? t : NULL;
}

/* The double reference of a case: output, saved state and every gradient
 * for a random d_o in [-1, 1]. */
typedef struct ref64 {
    double *o, *st, *d_o, *g[10];
} ref64;

static void ref64_run(const tc_case *c, ref64 *r) {
    int64_t no = c->n * c->len * c->d;
    memset(r, 0, sizeof *r);
    r->o = malloc((size_t)no * sizeof(double));
    r->st = malloc((size_t)tc_state_numel(c) * sizeof(double));
    r->d_o = malloc((size_t)no * sizeof(double));
    tc_fill(r->d_o, no, -1, 1);
    for (int i = 0; i < 10; i++)
        if (c->numel[i]) r->g[i] = malloc((size_t)c->numel[i] * sizeof(double));
    lact_ttt_in_f64 in64 = tc_in64(c);
    lact_ttt_dims dims = tc_dims(c);
    lact_ttt_grad_f64 gr = {r->g[0], r->g[1], r->g[2], r->g[3], r->g[4],
                            r->g[5], r->g[6], r->g[7], r->g[8], r->g[9]};
    CHECK_OK(lact_cpu_ttt_forward_f64(r->o, r->st, &in64, &dims, &c->args));
    CHECK_OK(lact_cpu_ttt_backward_f64(&gr, r->d_o, r->st, &in64, &dims, &c->args));
}

static void ref64_free(ref64 *r) {
    free(r->o), free(r->st), free(r->d_o);
    for (int i = 0; i < 10; i++)
        free(r->g[i]);
}

/* The shape both checks below run: two heads of d = 64, dh = 128, 300
 * tokens in chunks of 64 (the last one short). */
static tc_case small_case(lact_ttt_muon muon, bool mom, tc_order order, int save_every) {
    return (tc_case){.n = 2,
                     .d = 64,
                     .dh = 128,
                     .len = 300,
                     .chunk = 64,
                     .mom = mom,
                     .muon = muon,
                     .order = order,
                     .save_every = save_every};
}

/* Float forward/backward through the public interface vs the double
 * reference; also state = NULL vs the saved state, bit for bit. */
static void check_precision(lact_ctx *ctx, lact_ttt_muon muon, bool mom, tc_order order,
                            double tol_o, double tol_g) {
    tc_case c = small_case(muon, mom, order, 0);
    CHECK(tc_init(&c, 4242 + (uint64_t)muon * 7 + (uint64_t)mom * 3 + (uint64_t)order));
    int64_t N = c.n, L = c.len, d = c.d, no = N * L * d, S = tc_state_numel(&c);
    f32_case f;
    to_f32(&c, &f);
    lact_tensor *in = f.t;

    ref64 r;
    ref64_run(&c, &r);
    const double *o64 = r.o, *do64 = r.d_o;
    double *const *g64 = r.g;

    /* float through the public interface */
    lact_tensor o = {0}, st = {0}, d_o = {0}, g[10] = {{0}}, g2[10] = {{0}};
    CHECK_OK(lact_tensor_alloc(&o, LACT_F32, LACT_CPU, 3, (int64_t[]){N, L, d}));
    CHECK_OK(lact_tensor_alloc(&d_o, LACT_F32, LACT_CPU, 3, (int64_t[]){N, L, d}));
    CHECK_OK(lact_tensor_alloc(&st, LACT_F32, LACT_CPU, 2, (int64_t[]){N, S / N}));
    for (int64_t j = 0; j < no; j++)
        ((float *)d_o.data)[j] = (float)do64[j];
    for (int i = 0; i < 10; i++) {
        if (!c.numel[i]) continue;
        CHECK_OK(lact_tensor_alloc(&g[i], LACT_F32, LACT_CPU, in[i].ndim, in[i].shape));
        CHECK_OK(lact_tensor_alloc(&g2[i], LACT_F32, LACT_CPU, in[i].ndim, in[i].shape));
    }
    CHECK_OK(lact_ttt_forward(ctx, &o, &st, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5],
                              opt(&in[6]), &in[7], &in[8], &in[9], &c.args));
    CHECK_OK(lact_ttt_backward(ctx, &g[0], &g[1], &g[2], &g[3], &g[4], &g[5], opt(&g[6]), &g[7],
                               &g[8], &g[9], &d_o, &st, &in[0], &in[1], &in[2], &in[3], &in[4],
                               &in[5], opt(&in[6]), &in[7], &in[8], &in[9], &c.args));
    CHECK_OK(lact_ttt_backward(ctx, &g2[0], &g2[1], &g2[2], &g2[3], &g2[4], &g2[5], opt(&g2[6]),
                               &g2[7], &g2[8], &g2[9], &d_o, NULL, &in[0], &in[1], &in[2], &in[3],
                               &in[4], &in[5], opt(&in[6]), &in[7], &in[8], &in[9], &c.args));
    double e = tc_rel_err_f(o.data, o64, no);
    CHECK_MSG(e < tol_o, "muon=%s mom=%d %s: o f32 vs f64 rel err %.3g", tc_muon_name(muon), mom,
              tc_order_name(order), e);
    for (int i = 0; i < 10; i++) {
        if (!c.numel[i]) continue;
        e = tc_rel_err_f(g[i].data, g64[i], c.numel[i]);
        CHECK_MSG(e < tol_g, "muon=%s mom=%d %s: d_%s f32 vs f64 rel err %.3g", tc_muon_name(muon),
                  mom, tc_order_name(order), tc_name(i), e);
        CHECK_MSG(memcmp(g[i].data, g2[i].data, lact_tensor_nbytes(&g[i])) == 0,
                  "d_%s differs when the backward recomputes the state", tc_name(i));
    }
    for (int i = 0; i < 10; i++)
        lact_tensor_free(&g[i]), lact_tensor_free(&g2[i]);
    lact_tensor_free(&o), lact_tensor_free(&st), lact_tensor_free(&d_o);
    ref64_free(&r);
    free_f32(&f);
    tc_free(&c);
}

/* The state in BF16 (state_bf16): half the elements; the forward's output
 * is the F32 state's bit for bit (the weights go on in F32) and the saved
 * values are the F32 state's rounded; the gradients, from the rounded
 * weights, stay within the BF16 paths' bound of the double reference and
 * differ from the F32 state's (the backward reads what was saved). */
static void check_state_bf16(lact_ctx *ctx, lact_ttt_muon muon, bool mom, int save_every) {
    tc_case c = small_case(muon, mom, TC_CAUSAL, save_every);
    CHECK(tc_init(&c, 99 + (uint64_t)muon * 7 + (uint64_t)mom * 3 + (uint64_t)save_every));
    int64_t N = c.n, L = c.len, d = c.d, no = N * L * d, S = tc_state_numel(&c) / N;
    lact_ttt_args a16 = c.args;
    a16.state_bf16 = true;
    int64_t S16 = lact_ttt_state_numel(&a16, mom, d, c.dh);
    CHECK_MSG(S16 == (S + 1) / 2, "BF16 state of %lld elements a head, F32 %lld", (long long)S16,
              (long long)S);
    f32_case f;
    to_f32(&c, &f);
    lact_tensor *in = f.t;
    ref64 r;
    ref64_run(&c, &r);
    const double *do64 = r.d_o;
    double *const *g64 = r.g;

    lact_tensor o[2] = {{0}}, st[2] = {{0}}, d_o = {0}, g[2][10] = {{{0}}};
    CHECK_OK(lact_tensor_alloc(&d_o, LACT_F32, LACT_CPU, 3, (int64_t[]){N, L, d}));
    for (int64_t j = 0; j < no; j++)
        ((float *)d_o.data)[j] = (float)do64[j];
    for (int b = 0; b < 2; b++) {
        const lact_ttt_args *a = b ? &a16 : &c.args;
        CHECK_OK(lact_tensor_alloc(&o[b], LACT_F32, LACT_CPU, 3, (int64_t[]){N, L, d}));
        CHECK_OK(lact_tensor_alloc(&st[b], LACT_F32, LACT_CPU, 2, (int64_t[]){N, b ? S16 : S}));
        for (int i = 0; i < 10; i++)
            if (c.numel[i])
                CHECK_OK(lact_tensor_alloc(&g[b][i], LACT_F32, LACT_CPU, in[i].ndim, in[i].shape));
        lact_tensor *gb = g[b];
        CHECK_OK(lact_ttt_forward(ctx, &o[b], &st[b], &in[0], &in[1], &in[2], &in[3], &in[4],
                                  &in[5], opt(&in[6]), &in[7], &in[8], &in[9], a));
        CHECK_OK(lact_ttt_backward(ctx, &gb[0], &gb[1], &gb[2], &gb[3], &gb[4], &gb[5], opt(&gb[6]),
                                   &gb[7], &gb[8], &gb[9], &d_o, &st[b], &in[0], &in[1], &in[2],
                                   &in[3], &in[4], &in[5], opt(&in[6]), &in[7], &in[8], &in[9], a));
    }
    CHECK(!memcmp(o[0].data, o[1].data, lact_tensor_nbytes(&o[0])));
    const float *s32 = st[0].data;
    const uint16_t *s16 = st[1].data;
    int64_t wrong = 0;
    for (int64_t j = 0; j < N * S; j++)
        wrong += s16[j] != lact_f32_to_bf16(s32[j]);
    CHECK_MSG(wrong == 0, "%lld BF16 state values are not the F32 state's rounded",
              (long long)wrong);
    double worst = 0;
    bool differs = false;
    for (int i = 0; i < 10; i++) {
        if (!c.numel[i]) continue;
        double e = tc_rel_err_f(g[1][i].data, g64[i], c.numel[i]);
        if (e > worst) worst = e;
        CHECK_MSG(e < 1e-2, "muon=%s mom=%d save_every=%d: d_%s with a BF16 state: rel err %.3g",
                  tc_muon_name(muon), mom, save_every, tc_name(i), e);
        differs = differs || memcmp(g[0][i].data, g[1][i].data, lact_tensor_nbytes(&g[0][i]));
    }
    CHECK_MSG(differs, "the gradients do not depend on the BF16 state");
    printf("state in BF16, muon=%s mom=%d save_every=%d: worst gradient rel err %.2e\n",
           tc_muon_name(muon), mom, save_every, worst);
    for (int b = 0; b < 2; b++) {
        for (int i = 0; i < 10; i++)
            lact_tensor_free(&g[b][i]);
        lact_tensor_free(&o[b]), lact_tensor_free(&st[b]);
    }
    lact_tensor_free(&d_o);
    ref64_free(&r);
    free_f32(&f);
    tc_free(&c);
}

static void check_orders(void) {
    lact_ttt_op ops[8];
    CHECK(lact_ttt_order_causal(ops, 8, 10, 4) == 3);
    CHECK(ops[0].start == 0 && ops[0].end == 4 && ops[0].update && ops[0].apply);
    CHECK(ops[2].start == 8 && ops[2].end == 10 && !ops[2].update && ops[2].apply);
    CHECK(lact_ttt_order_causal(NULL, 0, 8, 4) == 2);
    CHECK(lact_ttt_order_causal(ops, 8, 3, 4) == 1 && !ops[0].update);
    CHECK(lact_ttt_order_bidirectional(ops, 8, 10, 7, 3) == 4);
    CHECK(ops[2].start == 6 && ops[2].end == 7 && ops[2].update && !ops[2].apply);
    CHECK(ops[3].start == 0 && ops[3].end == 10 && !ops[3].update && ops[3].apply);
    lact_ttt_args a = {.ops = ops, .n_ops = 4, .muon = LACT_TTT_MUON_OFF};
    CHECK(lact_ttt_n_updates(&a) == 3);
    /* The weights after updates 1..3 are saved, not the initial ones; with
     * save_every 2 only those after update 2. */
    CHECK(lact_ttt_state_numel(&a, true, 2, 3) == 3 * 6 * 6);
    CHECK(lact_ttt_state_slot(&a, 0) == -1 && lact_ttt_state_slot(&a, 1) == 0);
    CHECK(lact_ttt_state_slot(&a, 3) == 2 && lact_ttt_state_slot(&a, 4) == -1);
    a.save_every = 2;
    CHECK(lact_ttt_state_numel(&a, true, 2, 3) == 1 * 6 * 6);
    CHECK(lact_ttt_state_slot(&a, 1) == -1 && lact_ttt_state_slot(&a, 2) == 0);
    CHECK(lact_ttt_state_slot(&a, 3) == -1);
    a.save_every = 3;
    CHECK_FAILS(lact_ttt_check_args(&a, 10), LACT_E_ARG);
    a.save_every = 0;
    CHECK(lact_ttt_state_slot(&a, 1) == 0);
    /* The offsets tile a state of 5 heads exactly: every block of 2·3
     * elements named once, none past the end; snapshot 1 of head 0's W1
     * comes after its W0 and W2 (W0 | W2 | W1 per head). */
    for (int mom = 0; mom < 2; mom++) {
        int64_t n = 5, nel = 6, total = n * lact_ttt_state_numel(&a, mom, 2, 3);
        int hits[5 * 3 * 6 * 6 / 6] = {0};
        bool ok = true;
        for (int64_t u = 0; u < 3; u++)
            for (int64_t h = 0; h < n; h++)
                for (int i = 0; i < 3; i++)
                    for (int m = 0; m <= mom; m++) {
                        int64_t off = lact_ttt_state_offset(n, mom, 2, 3, u, h, i, m);
                        ok = ok && off >= 0 && off % nel == 0 && off + nel <= total;
                        if (ok) hits[off / nel]++;
                    }
        CHECK(ok);
        for (int64_t b = 0; b < total / nel; b++)
            CHECK(hits[b] == 1);
        CHECK(lact_ttt_state_offset(n, mom, 2, 3, 1, 0, 1, false) ==
              (mom ? 6 : 3) * nel * n + 2 * nel);
    }
    CHECK_OK(lact_ttt_check_args(&a, 10));
    CHECK_FAILS(lact_ttt_check_args(&a, 9), LACT_E_ARG);
    ops[1].update = false;
    ops[1].apply = false;
    CHECK_FAILS(lact_ttt_check_args(&a, 10), LACT_E_ARG);
    ops[1] = (lact_ttt_op){5, 5, true, false};
    CHECK_FAILS(lact_ttt_check_args(&a, 10), LACT_E_ARG);
    a.muon = (lact_ttt_muon)7;
    ops[1] = (lact_ttt_op){3, 6, true, false};
    CHECK_FAILS(lact_ttt_check_args(&a, 10), LACT_E_ARG);
}

static void check_errors(lact_ctx *ctx) {
    tc_case c = {.n = 1,
                 .d = 4,
                 .dh = 8,
                 .len = 9,
                 .chunk = 4,
                 .mom = true,
                 .muon = LACT_TTT_MUON_OFF,
                 .order = TC_CAUSAL};
    CHECK(tc_init(&c, 5));
    f32_case f;
    to_f32(&c, &f);
    lact_tensor *in = f.t, o = {0}, bad = {0};
    CHECK_OK(lact_tensor_alloc(&o, LACT_F32, LACT_CPU, 3, (int64_t[]){1, 9, 4}));
    CHECK_OK(lact_tensor_alloc(&bad, LACT_F32, LACT_CPU, 3, (int64_t[]){1, 8, 4}));
    CHECK_OK(lact_ttt_forward(ctx, &o, NULL, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5], &in[6],
                              &in[7], &in[8], &in[9], &c.args));
    CHECK_FAILS(lact_ttt_forward(ctx, &o, NULL, &in[0], &bad, &in[2], &in[3], &in[4], &in[5],
                                 &in[6], &in[7], &in[8], &in[9], &c.args),
                LACT_E_ARG);
    CHECK_FAILS(lact_ttt_forward(ctx, &bad, NULL, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5],
                                 &in[6], &in[7], &in[8], &in[9], &c.args),
                LACT_E_ARG);
    /* w1 must be [N, d, dh]: passing w0 ([N, dh, d]) in its place fails */
    CHECK_FAILS(lact_ttt_forward(ctx, &o, NULL, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5],
                                 &in[6], &in[7], &in[7], &in[9], &c.args),
                LACT_E_ARG);
    /* a state of the wrong size */
    CHECK_FAILS(lact_ttt_forward(ctx, &o, &bad, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5],
                                 &in[6], &in[7], &in[8], &in[9], &c.args),
                LACT_E_ARG);
    /* d_momentum without momentum */
    CHECK_FAILS(lact_ttt_backward(ctx, NULL, NULL, NULL, NULL, NULL, NULL, &in[3], NULL, NULL, NULL,
                                  &o, NULL, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5], NULL,
                                  &in[7], &in[8], &in[9], &c.args),
                LACT_E_ARG);
    /* CPU tensors under a CUDA context: a device mismatch with CUDA built
     * in, "no CUDA" without it; never a silent run on the wrong device. */
    lact_ctx cuda = *ctx;
    cuda.device = LACT_CUDA;
    CHECK_FAILS(lact_ttt_forward(&cuda, &o, NULL, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5],
                                 &in[6], &in[7], &in[8], &in[9], &c.args),
                LACT_WITH_CUDA ? LACT_E_ARG : LACT_E_UNSUPPORTED);
    lact_tensor_free(&o), lact_tensor_free(&bad);
    free_f32(&f);
    tc_free(&c);
}

int main(void) {
    lact_ctx ctx;
    if (lact_ctx_init(&ctx, LACT_CPU, 0) != LACT_OK) return check_skip("ttt", lact_errmsg());
    check_orders();
    check_errors(&ctx);
    ttt_check_shared(&ctx, LACT_F32, LACT_TTT_MUON_TABLE);
    ttt_check_shared(&ctx, LACT_F32, LACT_TTT_MUON_OFF);
    /* Seen: without Muon o ~4e-7, gradients ≤ 6e-6 (d_momentum, a sum of
     * many small terms); with Muon o ≤ 1e-5, gradients ≤ 2e-5, since
     * Newton–Schulz magnifies rounding (see test_ttt_naive.c). */
    for (int order = 0; order < 3; order++) {
        check_precision(&ctx, LACT_TTT_MUON_OFF, false, (tc_order)order, 5e-6, 5e-5);
        check_precision(&ctx, LACT_TTT_MUON_OFF, true, (tc_order)order, 5e-6, 5e-5);
        check_precision(&ctx, LACT_TTT_MUON_TABLE, true, (tc_order)order, 1e-4, 2e-4);
        check_precision(&ctx, LACT_TTT_MUON_FIXED, false, (tc_order)order, 1e-4, 2e-4);
    }
    for (int se = 1; se <= 2; se++) {
        check_state_bf16(&ctx, LACT_TTT_MUON_OFF, true, se);
        check_state_bf16(&ctx, LACT_TTT_MUON_OFF, false, se);
        check_state_bf16(&ctx, LACT_TTT_MUON_TABLE, true, se);
    }
    lact_ctx_free(&ctx);
    return check_summary("kernels_test_ttt_precision");
}
