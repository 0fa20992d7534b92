/* Streaming decode of the ttt op against the full op in the causal order:
 * token by token, prefill + steps and longer stretches, with and without
 * momentum and Muon; in double (exact up to rounding) through the
 * reference, in float through lact_ttt_decode_*; the weights a prefill
 * leaves; and the errors bad arguments give. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ttt_decode.h"
#include "tests/support/check.h"
#include "test_ttt_common.h"

/* dst [N, T, w] = src [N, L, w] rows [t0, t0 + T). */
static void gather(double *dst, const double *src, int64_t N, int64_t L, int64_t w, int64_t t0,
                   int64_t T) {
    for (int64_t h = 0; h < N; h++)
        memcpy(dst + h * T * w, src + (h * L + t0) * w, (size_t)(T * w) * sizeof(double));
}
static void scatter(double *dst, const double *src, int64_t N, int64_t L, int64_t w, int64_t t0,
                    int64_t T) {
    for (int64_t h = 0; h < N; h++)
        memcpy(dst + (h * L + t0) * w, src + h * T * w, (size_t)(T * w) * sizeof(double));
}

/* The decode outputs [N, L, d] when the L tokens arrive in stretches of
 * seg[0], seg[1], ... tokens (the last repeats until L is reached). */
static bool decode_f64(const tc_case *c, const int64_t *seg, int n_seg, double *out,
                       lact_ttt_dec_f64 *st) {
    int64_t N = c->n, L = c->len, d = c->d;
    if (lact_cpu_ttt_decode_init_f64(st, c->x[7], c->x[8], c->x[9], N, d, c->dh, c->chunk, c->mom,
                                     c->muon) != LACT_OK)
        return false;
    double *buf = malloc((size_t)(N * L * (4 * d + 4)) * sizeof(double));
    if (!buf) return false;
    bool ok = true;
    for (int64_t t0 = 0, j = 0; ok && t0 < L; j++) {
        int64_t T = seg[j < n_seg ? j : n_seg - 1];
        if (T > L - t0) T = L - t0;
        double *p[8], *at = buf;
        for (int i = 0; i < 3; i++)
            p[i] = at, at += N * T * d;
        for (int i = 3; i < 7; i++)
            p[i] = at, at += N * T;
        p[7] = at;
        for (int i = 0; i < 7; i++)
            if (c->x[i]) gather(p[i], c->x[i], N, L, i < 3 ? d : 1, t0, T);
        lact_ttt_in_f64 in = {p[0], p[1], p[2], p[3], p[4], p[5], c->mom ? p[6] : NULL,
                              NULL, NULL, NULL};
        ok = lact_cpu_ttt_decode_feed_f64(st, p[7], &in, T) == LACT_OK;
        scatter(out, p[7], N, L, d, t0, T);
        t0 += T;
    }
    free(buf);
    return ok;
}

/* Worst relative error of one token's output over tokens and heads. */
static double worst_token_err(const double *a, const double *ref, int64_t rows, int64_t d) {
    double worst = 0;
    for (int64_t r = 0; r < rows; r++) {
        double e = tc_rel_err(a + r * d, ref + r * d, d);
        if (e > worst) worst = e;
    }
    return worst;
}

static void test_exact(bool mom, lact_ttt_muon muon) {
    tc_case c = {.n = 3,
                 .len = 23,
                 .d = 8,
                 .dh = 16,
                 .chunk = 5,
                 .mom = mom,
                 .muon = muon,
                 .order = TC_CAUSAL};
    CHECK(tc_init(&c, 77 + (uint64_t)mom * 2 + (uint64_t)muon));
    int64_t N = c.n, L = c.len, d = c.d, rows = N * L;
    double *ref = malloc((size_t)(rows * d) * sizeof(double));
    double *got = malloc((size_t)(rows * d) * sizeof(double));
    lact_ttt_in_f64 in = tc_in64(&c);
    lact_ttt_dims dims = tc_dims(&c);
    CHECK_OK(lact_cpu_ttt_forward_f64(ref, NULL, &in, &dims, &c.args));
    /* Token by token; a prefill inside a chunk, then steps, then a stretch
     * across two chunk boundaries; a prefill of exactly two chunks; all
     * at once. */
    const int64_t one[] = {1}, mix[] = {7, 1, 1, 1, 1, 9, 1}, two[] = {10, 1}, all[] = {23};
    const int64_t *sched[] = {one, mix, two, all};
    const int nsched[] = {1, 7, 2, 1};
    for (int s = 0; s < 4; s++) {
        lact_ttt_dec_f64 st;
        memset(got, 0, (size_t)(rows * d) * sizeof(double));
        CHECK(decode_f64(&c, sched[s], nsched[s], got, &st));
        double err = worst_token_err(got, ref, rows, d);
        printf("decode f64 (momentum %d, muon %s, schedule %d): worst token error %.3g\n", mom,
               tc_muon_name(muon), s, err);
        CHECK(err <= 1e-10);
        CHECK(st.pos == L && st.fill == L % c.chunk);
        lact_cpu_ttt_decode_free_f64(&st);
    }
    /* The decode outputs differ from a run with no updates at all (so the
     * comparison above sees the updates). */
    lact_ttt_op apply_all = {0, L, false, true};
    lact_ttt_args none = {.ops = &apply_all, .n_ops = 1, .muon = muon};
    CHECK_OK(lact_cpu_ttt_forward_f64(got, NULL, &in, &dims, &none));
    CHECK(worst_token_err(got, ref, rows, d) > 1e-3);
    free(ref);
    free(got);
    tc_free(&c);
}

/* After 4 whole chunks the decode weights equal the op's state after
 * updates on those 4 chunks. */
static void test_weights(bool mom, lact_ttt_muon muon) {
    tc_case c = {.n = 2,
                 .len = 20,
                 .d = 6,
                 .dh = 12,
                 .chunk = 5,
                 .mom = mom,
                 .muon = muon,
                 .order = TC_CAUSAL};
    CHECK(tc_init(&c, 501));
    for (int64_t j = 0; j < c.args.n_ops; j++)
        c.ops[j].update = true;
    int64_t nel = c.d * c.dh, S = lact_ttt_state_numel(&c.args, mom, c.d, c.dh);
    double *state = malloc((size_t)(c.n * S) * sizeof(double));
    double *o = malloc((size_t)(c.n * c.len * c.d) * sizeof(double));
    double *w = malloc((size_t)(3 * c.n * nel) * sizeof(double));
    lact_ttt_in_f64 in = tc_in64(&c);
    lact_ttt_dims dims = tc_dims(&c);
    CHECK_OK(lact_cpu_ttt_forward_f64(o, state, &in, &dims, &c.args));
    lact_ttt_dec_f64 st;
    const int64_t seg[] = {3, 1, 8, 1};
    CHECK(decode_f64(&c, seg, 4, o, &st));
    CHECK(st.fill == 0);
    lact_cpu_ttt_decode_weights_f64(&st, w, w + c.n * nel, w + 2 * c.n * nel);
    double worst = 0;
    int64_t last = lact_ttt_state_slot(&c.args, lact_ttt_n_updates(&c.args));
    CHECK(last >= 0);
    for (int64_t h = 0; h < c.n; h++)
        for (int i = 0; i < 3; i++) {
            const double *want =
                state + lact_ttt_state_offset(c.n, mom, c.d, c.dh, last, h, i, false);
            double e = tc_rel_err(w + i * c.n * nel + h * nel, want, nel);
            if (e > worst) worst = e;
        }
    printf("decode weights (momentum %d, muon %s): %.3g\n", mom, tc_muon_name(muon), worst);
    CHECK(worst <= 1e-12);
    lact_cpu_ttt_decode_free_f64(&st);
    free(state);
    free(o);
    free(w);
    tc_free(&c);
}

static lact_tensor f32_tensor(const double *src, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    int64_t shape[3] = {d0, d1, d2};
    lact_tensor t = {0};
    CHECK_OK(lact_tensor_alloc(&t, LACT_F32, LACT_CPU, ndim, shape));
    if (src)
        for (int64_t i = 0; i < lact_tensor_numel(&t); i++)
            ((float *)t.data)[i] = (float)src[i];
    return t;
}

/* The public float API: a prefill, then steps, against lact_ttt_forward. */
static void test_float(lact_ctx *ctx, bool mom, lact_ttt_muon muon, int64_t prefill) {
    tc_case c = {.n = 4,
                 .len = 37,
                 .d = 16,
                 .dh = 32,
                 .chunk = 8,
                 .mom = mom,
                 .muon = muon,
                 .order = TC_CAUSAL};
    CHECK(tc_init(&c, 900 + (uint64_t)prefill));
    int64_t N = c.n, L = c.len, d = c.d, dh = c.dh;
    lact_tensor x[10];
    for (int i = 0; i < 10; i++) {
        int nd = i < 3 ? 3 : i < 7 ? 2 : 3;
        int64_t a1 = i < 7 ? L : i == 8 ? d : dh, a2 = i < 3 ? d : i == 8 ? dh : d;
        x[i] = (i == 6 && !mom) ? (lact_tensor){0} : f32_tensor(c.x[i], nd, N, a1, a2);
    }
    lact_tensor ref = f32_tensor(NULL, 3, N, L, d);
    const lact_tensor *mt = mom ? &x[6] : NULL;
    CHECK_OK(lact_ttt_forward(ctx, &ref, NULL, &x[0], &x[1], &x[2], &x[3], &x[4], &x[5], mt, &x[7],
                              &x[8], &x[9], &c.args));
    lact_ttt_decode st;
    CHECK_OK(lact_ttt_decode_init(ctx, &st, &x[7], &x[8], &x[9], c.chunk, mom, muon));
    /* Prefill: the first tokens as [N, P, d]. */
    lact_tensor pin[8];
    for (int i = 0; i < 7; i++) {
        if (i == 6 && !mom) {
            pin[i] = (lact_tensor){0};
            continue;
        }
        int64_t w = i < 3 ? d : 1;
        double *tmp = malloc((size_t)(N * prefill * w) * sizeof(double));
        gather(tmp, c.x[i], N, L, w, 0, prefill);
        pin[i] = f32_tensor(tmp, i < 3 ? 3 : 2, N, prefill, d);
        free(tmp);
    }
    pin[7] = f32_tensor(NULL, 3, N, prefill, d);
    CHECK_OK(lact_ttt_decode_prefill(ctx, &st, &pin[7], &pin[0], &pin[1], &pin[2], &pin[3], &pin[4],
                                     &pin[5], mom ? &pin[6] : NULL));
    double worst = 0;
    const float *rf = ref.data;
    for (int64_t h = 0; h < N; h++)
        for (int64_t t = 0; t < prefill; t++) {
            double num = 0, den = 0;
            for (int64_t j = 0; j < d; j++) {
                double a = ((float *)pin[7].data)[(h * prefill + t) * d + j];
                double b = rf[(h * L + t) * d + j];
                num += (a - b) * (a - b), den += b * b;
            }
            worst = fmax(worst, sqrt(num / den));
        }
    /* Steps: one token as [N, d]. */
    lact_tensor s[8];
    for (int i = 0; i < 8; i++)
        s[i] = f32_tensor(NULL, i < 3 || i == 7 ? 2 : 1, N, d, 0);
    for (int64_t t = prefill; t < L; t++) {
        for (int i = 0; i < 7; i++) {
            if (i == 6 && !mom) continue;
            int64_t w = i < 3 ? d : 1;
            for (int64_t h = 0; h < N; h++)
                for (int64_t j = 0; j < w; j++)
                    ((float *)s[i].data)[h * w + j] = (float)c.x[i][(h * L + t) * w + j];
        }
        CHECK_OK(lact_ttt_decode_step(ctx, &st, &s[7], &s[0], &s[1], &s[2], &s[3], &s[4], &s[5],
                                      mom ? &s[6] : NULL));
        for (int64_t h = 0; h < N; h++) {
            double num = 0, den = 0;
            for (int64_t j = 0; j < d; j++) {
                double a = ((float *)s[7].data)[h * d + j], b = rf[(h * L + t) * d + j];
                num += (a - b) * (a - b), den += b * b;
            }
            worst = fmax(worst, sqrt(num / den));
        }
    }
    /* Without Muon the two runs differ only in how the apply products are
     * grouped (one row against tiles of rows): float rounding, 1e-5. With
     * Muon, Newton–Schulz on G of rank ≤ C = 8 < dh multiplies its tiny
     * singular directions by ~1e3 (docs/ttt.md "Accuracy"), so any rounding
     * difference in an update is lifted: 1e-4. The double test above
     * checks the same schedules exactly. */
    double bound = muon == LACT_TTT_MUON_OFF ? 1e-5 : 1e-4;
    printf("decode f32 (momentum %d, muon %s, prefill %lld): worst token error %.3g\n", mom,
           tc_muon_name(muon), (long long)prefill, worst);
    CHECK(worst <= bound);
    CHECK(st.pos == L && st.fill == L % c.chunk);
    lact_ttt_decode_free(&st);
    for (int i = 0; i < 10; i++)
        lact_tensor_free(&x[i]);
    for (int i = 0; i < 8; i++)
        lact_tensor_free(&pin[i]), lact_tensor_free(&s[i]);
    lact_tensor_free(&ref);
    tc_free(&c);
}

static void test_errors(lact_ctx *ctx) {
    int64_t N = 2, d = 4, dh = 8;
    lact_tensor w0 = f32_tensor(NULL, 3, N, dh, d), w1 = f32_tensor(NULL, 3, N, d, dh);
    lact_tensor w2 = f32_tensor(NULL, 3, N, dh, d), bad = f32_tensor(NULL, 3, N, dh, d + 1);
    lact_ttt_decode st;
    CHECK_FAILS(lact_ttt_decode_init(ctx, &st, &w0, &w1, &bad, 4, false, LACT_TTT_MUON_OFF),
                LACT_E_ARG);
    CHECK_FAILS(lact_ttt_decode_init(ctx, &st, &w0, &w1, &w2, 0, false, LACT_TTT_MUON_OFF),
                LACT_E_ARG);
    CHECK_OK(lact_ttt_decode_init(ctx, &st, &w0, &w1, &w2, 4, false, LACT_TTT_MUON_OFF));
    lact_tensor q = f32_tensor(NULL, 2, N, d, 0), lr = f32_tensor(NULL, 1, N, 0, 0);
    lact_tensor qbad = f32_tensor(NULL, 2, N, d + 1, 0);
    CHECK_OK(lact_ttt_decode_step(ctx, &st, &q, &q, &q, &q, &lr, &lr, &lr, NULL));
    CHECK_FAILS(lact_ttt_decode_step(ctx, &st, &q, &qbad, &q, &q, &lr, &lr, &lr, NULL), LACT_E_ARG);
    /* Momentum given to a state made without it. */
    CHECK_FAILS(lact_ttt_decode_step(ctx, &st, &q, &q, &q, &q, &lr, &lr, &lr, &lr), LACT_E_ARG);
    /* A prefill wants [N, T, d]. */
    CHECK_FAILS(lact_ttt_decode_prefill(ctx, &st, &q, &q, &q, &q, &lr, &lr, &lr, NULL), LACT_E_ARG);
    CHECK(st.pos == 1);
    lact_ttt_decode_free(&st);
    CHECK_FAILS(lact_ttt_decode_step(ctx, &st, &q, &q, &q, &q, &lr, &lr, &lr, NULL), LACT_E_ARG);
    lact_tensor *all[] = {&w0, &w1, &w2, &bad, &q, &lr, &qbad};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        lact_tensor_free(all[i]);
}

int main(void) {
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    for (int mom = 0; mom < 2; mom++)
        for (int m = 0; m < 3; m++) {
            test_exact(mom, (lact_ttt_muon)m);
            test_weights(mom, (lact_ttt_muon)m);
        }
    for (int mom = 0; mom < 2; mom++)
        for (int m = 0; m < 2; m++) {
            test_float(&ctx, mom, (lact_ttt_muon)m, 11);
            test_float(&ctx, mom, (lact_ttt_muon)m, 16);
        }
    test_errors(&ctx);
    lact_ctx_free(&ctx);
    return check_summary("kernels_ttt_decode");
}
