/* The CUDA ttt op against the CPU reference: forward output and every
 * gradient, on fresh random inputs, in F32 (true fp32 products) and BF16
 * (bf16 operands, fp32 accumulation and fast weights), at head dims 64,
 * 128, 192, 256 and 512, inter_multi 1 and 2, lengths that are not a multiple of the
 * chunk, Muon and momentum on and off, causal, bidirectional and a long
 * update that spans several tiles, the weights after every update saved or
 * after every second one, in F32 or (BF16 activations) in BF16. The forward
 * saves the state and the backward reads it. Device outputs are poisoned with NaN first. Skips
 * without a GPU.
 *
 * F32 with Muon: Newton–Schulz magnifies rounding by the inverse of G's
 * smallest singular values, so two fp32 summation orders differ by up to
 * 3e-4 there (the CPU float reference itself is that far from double at
 * d = 512). Those cases compare the CUDA result with the CPU reference in
 * double and require it within max(2e-4, 4× the CPU float run's error).
 * BF16 with Muon runs twice, with the fused and the batched Newton–Schulz. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/context.h"
#include "core/base/device.h"
#include "core/base/philox.h"
#include "kernels/cpu/ttt_ref.h"
#include "kernels/ttt.h"
#include "tests/kernels/test_ttt_shared.h"
#include "tests/support/check.h"

#define NT 10 /* q k v lr0 lr1 lr2 momentum w0 w1 w2 */

typedef struct cuda_case {
    int64_t n, len, d, mult, chunk;
    bool mom;
    lact_ttt_muon muon;
    int64_t n_ctx;  /* 0: causal order; -1: overlapping ops (overlapping_order); else
                     * bidirectional, updates on [0, n_ctx) */
    int save_every; /* args.save_every */
} cuda_case;

/* With Muon every update chunk has at least dh tokens, as in the layer
 * (chunk >= dh): a G of lower rank has near-zero singular values that
 * Newton–Schulz amplifies about a thousandfold, and then even two fp32
 * summation orders differ by 1e-3. */
static const cuda_case cases[] = {
    {2, 200, 64, 1, 64, true, LACT_TTT_MUON_OFF, 0, 1},
    {2, 300, 64, 2, 128, false, LACT_TTT_MUON_TABLE, 0, 1},
    {2, 300, 64, 1, 128, true, LACT_TTT_MUON_TABLE, 0, 1},
    {1, 700, 128, 1, 160, true, LACT_TTT_MUON_TABLE, 480, 1},
    {1, 700, 128, 2, 256, true, LACT_TTT_MUON_FIXED, 0, 1},
    {1, 1300, 512, 1, 512, true, LACT_TTT_MUON_TABLE, 0, 1},
    {1, 100, 512, 2, 48, false, LACT_TTT_MUON_OFF, 0, 1},
    {1, 4500, 16, 2, 4500, true, LACT_TTT_MUON_TABLE, 4500, 1},
    /* dh not a multiple of 16 bytes' columns: the row kernels' narrower
     * accesses (two columns, then one); no momentum, whose per-token
     * gradient sums so few products at these sizes that bf16 rounding alone
     * leaves it at 2e-2 */
    {2, 90, 6, 1, 32, false, LACT_TTT_MUON_OFF, 0, 1},
    {1, 70, 5, 1, 20, false, LACT_TTT_MUON_OFF, 0, 1},
    /* the weights after every second update saved, the others rebuilt:
     * an odd last update, momentum's input rebuilt before the final apply,
     * and no momentum */
    {2, 200, 64, 1, 64, true, LACT_TTT_MUON_OFF, 0, 2},
    {1, 700, 128, 1, 160, true, LACT_TTT_MUON_TABLE, 480, 2},
    {1, 2000, 128, 2, 256, true, LACT_TTT_MUON_FIXED, 0, 2},
    {2, 300, 64, 2, 64, false, LACT_TTT_MUON_OFF, 0, 2},
    /* large heads off the 128-row tile (the streamed hidden-unit passes):
     * several tiles and slices, tiles starting mid-chunk, d = dh = 192 */
    {2, 600, 256, 1, 200, true, LACT_TTT_MUON_OFF, 0, 1},
    {1, 500, 192, 1, 500, false, LACT_TTT_MUON_OFF, 300, 1},
    /* momentum without Muon on the batched products (d neither small nor
     * streamed): the backward's paired products in BF16, bidirectional,
     * a short last chunk */
    {1, 700, 96, 2, 224, true, LACT_TTT_MUON_OFF, 480, 1},
    /* overlapping ops, uncovered rows */
    {2, 300, 64, 1, 128, true, LACT_TTT_MUON_OFF, -1, 1},
    {1, 300, 64, 2, 128, false, LACT_TTT_MUON_TABLE, -1, 2},
    /* streamed with momentum and without Muon, dh = 2d: the update's
     * backward in the paired layout over three slice pairs, a partial tile */
    {1, 450, 192, 2, 150, true, LACT_TTT_MUON_OFF, 0, 1},
    /* the same with the weights of every second update rebuilt in the
     * backward: the paired layout after a rebuild, an odd last update */
    {2, 700, 256, 1, 200, true, LACT_TTT_MUON_OFF, 0, 2},
};

/* run_case's BF16 runs save the state in BF16 (lact_ttt_args.state_bf16);
 * the CPU reference keeps its state in F32, the definition's weights. */
static bool g_state_bf16;

static const char *const names[NT] = {"q",   "k",        "v",  "lr0", "lr1",
                                      "lr2", "momentum", "w0", "w1",  "w2"};

static bool is_act(int i) {
    return i <= 2;
}

static void fill(lact_tensor *t, lact_rng *rng, int i, int64_t d, int64_t dh) {
    float *x = t->data;
    int64_t n = lact_tensor_numel(t);
    if (is_act(i)) {
        for (int64_t j = 0; j < n; j++) {
            float a = lact_rng_normal(rng);
            x[j] = a / (1.0f + expf(-a));
        }
        if (i < 2)
            for (int64_t r = 0; r < n / d; r++) {
                double ss = 0;
                for (int64_t j = 0; j < d; j++)
                    ss += (double)x[r * d + j] * x[r * d + j];
                for (int64_t j = 0; j < d; j++)
                    x[r * d + j] /= (float)(sqrt(ss) + 1e-5);
            }
    } else if (i <= 5) {
        for (int64_t j = 0; j < n; j++)
            x[j] = 0.05f + 0.35f * lact_rng_uniform(rng);
    } else if (i == 6) {
        for (int64_t j = 0; j < n; j++)
            x[j] = 0.3f + 0.65f * lact_rng_uniform(rng);
    } else {
        float s = 1.0f / sqrtf((float)(i == 8 ? dh : d));
        for (int64_t j = 0; j < n; j++)
            x[j] = s * lact_rng_normal(rng);
    }
}

static void round_bf16(lact_tensor *t) {
    float *p = t->data;
    for (int64_t i = 0; i < lact_tensor_numel(t); i++)
        p[i] = lact_bf16_to_f32(lact_f32_to_bf16(p[i]));
}

static lact_status poison(lact_tensor *t) {
    size_t n = lact_tensor_nbytes(t);
    void *h = malloc(n);
    if (!h) return lact_fail(LACT_E_NOMEM, "poison: out of host memory");
    memset(h, 0xFF, n);
    lact_status s = lact_mem_copy(t->data, LACT_CUDA, h, LACT_CPU, n);
    free(h);
    return s;
}

static double rel_err(const lact_tensor *got, const lact_tensor *ref) {
    lact_tensor g = {0};
    if (lact_tensor_clone(&g, got, LACT_F32, LACT_CPU) != LACT_OK) return INFINITY;
    const float *a = g.data, *b = ref->data;
    double num = 0, den = 0;
    bool bad = false;
    for (int64_t i = 0; i < lact_tensor_numel(ref); i++) {
        if (!isfinite(a[i])) bad = true;
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    lact_tensor_free(&g);
    return bad ? INFINITY : sqrt(num / (den > 0 ? den : 1));
}

/* ‖got − ref‖ / ‖ref‖ against a double array. */
static double rel_err_f64(const lact_tensor *got, const double *ref) {
    lact_tensor g = {0};
    if (lact_tensor_clone(&g, got, LACT_F32, LACT_CPU) != LACT_OK) return INFINITY;
    const float *a = g.data;
    double num = 0, den = 0;
    bool bad = false;
    for (int64_t i = 0; i < lact_tensor_numel(&g); i++) {
        if (!isfinite(a[i])) bad = true;
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    lact_tensor_free(&g);
    return bad ? INFINITY : sqrt(num / (den > 0 ? den : 1));
}

/* The double reference of a case: out[0] = o, out[1 + i] = gradient of
 * input i (NULL when absent). Returns false on allocation failure. */
static bool reference_f64(const lact_tensor *h, const lact_tensor *hdo, int64_t N, int64_t L,
                          int64_t d, int64_t dh, const lact_ttt_args *args, double **out) {
    double *x[NT + 1] = {0};
    bool ok = true;
    for (int i = 0; i < NT && ok; i++) {
        if (!h[i].data) continue;
        int64_t n = lact_tensor_numel(&h[i]);
        x[i] = malloc((size_t)n * sizeof(double));
        out[1 + i] = calloc((size_t)n, sizeof(double));
        ok = x[i] && out[1 + i];
        for (int64_t j = 0; ok && j < n; j++)
            x[i][j] = ((const float *)h[i].data)[j];
    }
    int64_t nact = N * L * d, S = lact_ttt_state_numel(args, h[6].data != NULL, d, dh);
    double *dO = malloc((size_t)nact * sizeof(double)),
           *st = malloc((size_t)(N * S) * sizeof(double));
    out[0] = malloc((size_t)nact * sizeof(double));
    ok = ok && dO && st && out[0];
    for (int64_t j = 0; ok && j < nact; j++)
        dO[j] = ((const float *)hdo->data)[j];
    lact_ttt_dims dims = {N, L, d, dh, N};
    lact_ttt_in_f64 in = {x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9]};
    lact_ttt_grad_f64 gr = {out[1], out[2], out[3], out[4], out[5],
                            out[6], out[7], out[8], out[9], out[10]};
    ok = ok && lact_cpu_ttt_forward_f64(out[0], st, &in, &dims, args) == LACT_OK &&
         lact_cpu_ttt_backward_f64(&gr, dO, st, &in, &dims, args) == LACT_OK;
    for (int i = 0; i < NT; i++)
        free(x[i]);
    free(dO);
    free(st);
    return ok;
}

/* The backward from the iterates the forward kept gives the bits of the
 * one that runs the iteration again whenever both start from the same G.
 * They do with momentum, and without it when the hidden-unit passes are
 * the batched products (LACT_TTT_APPLY_FUSED or LACT_TTT_APPLY_WGMMA set
 * to 0). Otherwise the forward forms G in the fused pass and the backward
 * without momentum along the batched one (it keeps that tile's products
 * for the gradient), G's rounding differs, and the quintic iteration
 * amplifies it to the size of the case's BF16 error: there the two must
 * agree within the case's bound. So with a BF16 state, where the iteration
 * run again starts from the saved, rounded momentum and the kept iterates
 * from the forward's F32 one. */
static bool env_off(const char *name) {
    const char *e = getenv(name);
    return e && !strcmp(e, "0");
}

static void kept_same(lact_ctx *gpu, int ci, const lact_tensor *dg, const lact_tensor *ddo,
                      const lact_tensor *dv, bool mom, const lact_ttt_args *kept, double tol) {
    const bool bits = !kept->state_bf16 &&
                      (mom || env_off("LACT_TTT_APPLY_FUSED") || env_off("LACT_TTT_APPLY_WGMMA"));
    lact_ttt_args args = *kept;
    args.keep_ns = false;
    int64_t N = dv[0].shape[0], d = dv[0].shape[2], dh = dv[7].shape[1];
    int64_t S = lact_ttt_state_numel(&args, mom, d, dh);
    lact_tensor g2[NT], o = {0}, st = {0};
    memset(g2, 0, sizeof g2);
    lact_status s = lact_tensor_alloc(&o, dv[0].dtype, LACT_CUDA, 3, dv[0].shape);
    if (s == LACT_OK) s = lact_tensor_alloc(&st, LACT_F32, LACT_CUDA, 2, (int64_t[]){N, S});
    for (int i = 0; i < NT && s == LACT_OK; i++)
        if (dg[i].data)
            s = lact_tensor_alloc(&g2[i], dg[i].dtype, LACT_CUDA, dg[i].ndim, dg[i].shape);
    const lact_tensor *dm = mom ? &dv[6] : NULL;
    if (s == LACT_OK)
        s = lact_ttt_forward(gpu, &o, &st, &dv[0], &dv[1], &dv[2], &dv[3], &dv[4], &dv[5], dm,
                             &dv[7], &dv[8], &dv[9], &args);
    if (s == LACT_OK)
        s = lact_ttt_backward(gpu, &g2[0], &g2[1], &g2[2], &g2[3], &g2[4], &g2[5],
                              mom ? &g2[6] : NULL, &g2[7], &g2[8], &g2[9], ddo, &st, &dv[0], &dv[1],
                              &dv[2], &dv[3], &dv[4], &dv[5], dm, &dv[7], &dv[8], &dv[9], &args);
    if (s == LACT_OK) s = lact_ctx_sync(gpu);
    CHECK_MSG(s == LACT_OK, "case %d: CUDA without kept iterates: %s", ci, lact_errmsg());
    for (int i = 0; i < NT && s == LACT_OK; i++) {
        if (!dg[i].data) continue;
        lact_tensor a = {0}, b = {0};
        CHECK_OK(lact_tensor_clone(&a, &dg[i], dg[i].dtype, LACT_CPU));
        CHECK_OK(lact_tensor_clone(&b, &g2[i], g2[i].dtype, LACT_CPU));
        if (bits) {
            CHECK_MSG(!memcmp(a.data, b.data, lact_tensor_nbytes(&a)),
                      "case %d: d_%s from the kept iterates differs from the recomputed one", ci,
                      names[i]);
        } else {
            lact_tensor af = {0};
            CHECK_OK(lact_tensor_clone(&af, &b, LACT_F32, LACT_CPU));
            double e = rel_err(&a, &af);
            printf("   kept vs recomputed iterates, d_%s: %.1e\n", names[i], e);
            CHECK_MSG(e <= tol,
                      "case %d: d_%s from the kept iterates is %.3g from the "
                      "recomputed one",
                      ci, names[i], e);
            lact_tensor_free(&af);
        }
        lact_tensor_free(&a), lact_tensor_free(&b);
    }
    for (int i = 0; i < NT; i++)
        lact_tensor_free(&g2[i]);
    lact_tensor_free(&o), lact_tensor_free(&st);
}

/* The backward on two streams (the default where the streamed passes and
 * the paired products run) gives the bits of the same order on one stream
 * (LACT_TTT_OVERLAP=0): the second stream only moves work in time. So
 * does the forward (o and the snapshots), whose apply product and, with
 * the step split by rows, G1 and W1's step run on the second stream. */
static bool g_check_one_stream;

static void forward_one_stream_same(lact_ctx *gpu, int ci, const lact_tensor *o,
                                    const lact_tensor *st, const lact_tensor *dv, bool mom,
                                    const lact_ttt_args *args) {
    lact_tensor o2 = {0}, st2 = {0};
    lact_status s = lact_tensor_alloc(&o2, o->dtype, LACT_CUDA, o->ndim, o->shape);
    if (s == LACT_OK) s = lact_tensor_alloc(&st2, st->dtype, LACT_CUDA, st->ndim, st->shape);
    if (s == LACT_OK) s = poison(&o2);
    if (s == LACT_OK) s = poison(&st2);
    setenv("LACT_TTT_OVERLAP", "0", 1);
    if (s == LACT_OK)
        s = lact_ttt_forward(gpu, &o2, &st2, &dv[0], &dv[1], &dv[2], &dv[3], &dv[4], &dv[5],
                             mom ? &dv[6] : NULL, &dv[7], &dv[8], &dv[9], args);
    unsetenv("LACT_TTT_OVERLAP");
    if (s == LACT_OK) s = lact_ctx_sync(gpu);
    CHECK_MSG(s == LACT_OK, "case %d: CUDA forward on one stream: %s", ci, lact_errmsg());
    if (s == LACT_OK) {
        lact_tensor a = {0}, b = {0};
        CHECK_OK(lact_tensor_clone(&a, o, o->dtype, LACT_CPU));
        CHECK_OK(lact_tensor_clone(&b, &o2, o2.dtype, LACT_CPU));
        CHECK_MSG(!memcmp(a.data, b.data, lact_tensor_nbytes(&a)),
                  "case %d: o on two streams differs from one stream", ci);
        lact_tensor_free(&a), lact_tensor_free(&b);
        /* the snapshots' elements (as run_case counts them); the iterates'
         * room is not compared */
        lact_ttt_args ea = *args;
        ea.state_bf16 = false;
        int64_t n =
            st->shape[0] * lact_ttt_state_snap_numel(&ea, mom, dv[0].shape[2], dv[7].shape[1]);
        size_t bytes = (size_t)n * (args->state_bf16 ? 2 : 4);
        CHECK_OK(lact_tensor_clone(&a, st, st->dtype, LACT_CPU));
        CHECK_OK(lact_tensor_clone(&b, &st2, st2.dtype, LACT_CPU));
        CHECK_MSG(!memcmp(a.data, b.data, bytes),
                  "case %d: the state on two streams differs from one stream", ci);
        printf("   forward on two streams against one: o and the state the same bits\n");
        lact_tensor_free(&a), lact_tensor_free(&b);
    }
    lact_tensor_free(&o2), lact_tensor_free(&st2);
}

static void one_stream_same(lact_ctx *gpu, int ci, const lact_tensor *dg, const lact_tensor *ddo,
                            const lact_tensor *st, const lact_tensor *dv, bool mom,
                            const lact_ttt_args *args) {
    lact_tensor g2[NT];
    memset(g2, 0, sizeof g2);
    lact_status s = LACT_OK;
    for (int i = 0; i < NT && s == LACT_OK; i++)
        if (dg[i].data) {
            s = lact_tensor_alloc(&g2[i], dg[i].dtype, LACT_CUDA, dg[i].ndim, dg[i].shape);
            if (s == LACT_OK) s = poison(&g2[i]);
        }
    const lact_tensor *dm = mom ? &dv[6] : NULL;
    setenv("LACT_TTT_OVERLAP", "0", 1);
    if (s == LACT_OK)
        s = lact_ttt_backward(gpu, &g2[0], &g2[1], &g2[2], &g2[3], &g2[4], &g2[5],
                              mom ? &g2[6] : NULL, &g2[7], &g2[8], &g2[9], ddo, st, &dv[0], &dv[1],
                              &dv[2], &dv[3], &dv[4], &dv[5], dm, &dv[7], &dv[8], &dv[9], args);
    unsetenv("LACT_TTT_OVERLAP");
    if (s == LACT_OK) s = lact_ctx_sync(gpu);
    CHECK_MSG(s == LACT_OK, "case %d: CUDA on one stream: %s", ci, lact_errmsg());
    int same = 0, n = 0;
    for (int i = 0; i < NT && s == LACT_OK; i++) {
        if (!dg[i].data) continue;
        lact_tensor a = {0}, b = {0};
        CHECK_OK(lact_tensor_clone(&a, &dg[i], dg[i].dtype, LACT_CPU));
        CHECK_OK(lact_tensor_clone(&b, &g2[i], g2[i].dtype, LACT_CPU));
        bool eq = !memcmp(a.data, b.data, lact_tensor_nbytes(&a));
        CHECK_MSG(eq, "case %d: d_%s on two streams differs from one stream", ci, names[i]);
        same += eq, n++;
        lact_tensor_free(&a), lact_tensor_free(&b);
    }
    printf("   two streams against one: %d of %d gradients the same bits\n", same, n);
    for (int i = 0; i < NT; i++)
        lact_tensor_free(&g2[i]);
}

/* Applies and updates whose ranges overlap, and tokens that no apply (at
 * the end) or no update (after the second) covers: the CUDA products store
 * on the rows an op writes first and add on the others, and the uncovered
 * rows are zeroed apart. */
static int64_t overlapping_order(lact_ttt_op *ops, int64_t L, int64_t C) {
    ops[0] = (lact_ttt_op){0, C, true, true};
    ops[1] = (lact_ttt_op){C / 2, C / 2 + C, true, true};
    ops[2] = (lact_ttt_op){C / 4, L - 7, false, true};
    return 3;
}

/* Runs one case against the CPU; returns the worst relative error of the
 * outputs and gradients (-1 when the case could not run). */
static double run_case(lact_ctx *cpu, lact_ctx *gpu, const cuda_case *cc, int ci, lact_dtype act) {
    double result = -1.0;
    int64_t N = cc->n, L = cc->len, d = cc->d, dh = d * cc->mult;
    int64_t shapes[NT][3] = {{N, L, d}, {N, L, d}, {N, L, d},  {N, L, 0},  {N, L, 0},
                             {N, L, 0}, {N, L, 0}, {N, dh, d}, {N, d, dh}, {N, dh, d}};
    lact_ttt_op ops[256];
    int64_t n_ops = cc->n_ctx == 0 ? lact_ttt_order_causal(ops, 256, L, cc->chunk)
                    : cc->n_ctx < 0
                        ? overlapping_order(ops, L, cc->chunk)
                        : lact_ttt_order_bidirectional(ops, 256, L, cc->n_ctx, cc->chunk);
    /* BF16 keeps the Newton–Schulz iterates in the state, as the layer
     * does (used where the iteration is fused; kept_same checks it). */
    lact_ttt_args args = {.ops = ops,
                          .n_ops = n_ops,
                          .muon = cc->muon,
                          .save_every = cc->save_every,
                          .keep_ns = act == LACT_BF16,
                          .state_bf16 = g_state_bf16 && act == LACT_BF16};
    lact_tensor h[NT], dv[NT], hg[NT], dg[NT];
    lact_tensor ho = {0}, dov = {0}, hdo = {0}, ddo = {0}, hst = {0}, dst = {0};
    memset(h, 0, sizeof h), memset(dv, 0, sizeof dv), memset(hg, 0, sizeof hg);
    memset(dg, 0, sizeof dg);
    lact_rng rng = lact_rng_make(777 + (uint64_t)ci, act == LACT_BF16 ? 2 : 1);
    lact_status s = LACT_OK;
    for (int i = 0; i < NT && s == LACT_OK; i++) {
        if (i == 6 && !cc->mom) continue;
        int nd = shapes[i][2] ? 3 : 2;
        s = lact_tensor_alloc(&h[i], LACT_F32, LACT_CPU, nd, shapes[i]);
        if (s != LACT_OK) break;
        fill(&h[i], &rng, i, d, dh);
        bool low = act == LACT_BF16 && is_act(i);
        if (low) round_bf16(&h[i]);
        s = lact_tensor_clone(&dv[i], &h[i], low ? LACT_BF16 : LACT_F32, LACT_CUDA);
        if (s == LACT_OK) s = lact_tensor_alloc(&hg[i], LACT_F32, LACT_CPU, nd, shapes[i]);
        if (s == LACT_OK)
            s = lact_tensor_alloc(&dg[i], low ? LACT_BF16 : LACT_F32, LACT_CUDA, nd, shapes[i]);
        if (s == LACT_OK) s = poison(&dg[i]);
    }
    lact_ttt_args cargs = args;
    cargs.state_bf16 = false;
    int64_t S = lact_ttt_state_numel(&args, cc->mom, d, dh);
    int64_t cS = lact_ttt_state_numel(&cargs, cc->mom, d, dh);
    if (s == LACT_OK) s = lact_tensor_alloc(&ho, LACT_F32, LACT_CPU, 3, shapes[0]);
    if (s == LACT_OK) s = lact_tensor_alloc(&dov, act, LACT_CUDA, 3, shapes[0]);
    if (s == LACT_OK) s = poison(&dov);
    if (s == LACT_OK) s = lact_tensor_alloc(&hst, LACT_F32, LACT_CPU, 2, (int64_t[]){N, cS});
    if (s == LACT_OK) s = lact_tensor_alloc(&dst, LACT_F32, LACT_CUDA, 2, (int64_t[]){N, S});
    if (s == LACT_OK) s = poison(&dst);
    if (s == LACT_OK) s = lact_tensor_alloc(&hdo, LACT_F32, LACT_CPU, 3, shapes[0]);
    if (s == LACT_OK) {
        float *g = hdo.data;
        for (int64_t i = 0; i < lact_tensor_numel(&hdo); i++)
            g[i] = lact_rng_normal(&rng);
        if (act == LACT_BF16) round_bf16(&hdo);
        s = lact_tensor_clone(&ddo, &hdo, act, LACT_CUDA);
    }
    const lact_tensor *hm = cc->mom ? &h[6] : NULL, *dm = cc->mom ? &dv[6] : NULL;
    if (s == LACT_OK)
        s = lact_ttt_forward(cpu, &ho, &hst, &h[0], &h[1], &h[2], &h[3], &h[4], &h[5], hm, &h[7],
                             &h[8], &h[9], &cargs);
    if (s == LACT_OK)
        s = lact_ttt_backward(cpu, &hg[0], &hg[1], &hg[2], &hg[3], &hg[4], &hg[5],
                              cc->mom ? &hg[6] : NULL, &hg[7], &hg[8], &hg[9], &hdo, &hst, &h[0],
                              &h[1], &h[2], &h[3], &h[4], &h[5], hm, &h[7], &h[8], &h[9], &cargs);
    CHECK_MSG(s == LACT_OK, "case %d: CPU: %s", ci, lact_errmsg());
    if (s == LACT_OK)
        s = lact_ttt_forward(gpu, &dov, &dst, &dv[0], &dv[1], &dv[2], &dv[3], &dv[4], &dv[5], dm,
                             &dv[7], &dv[8], &dv[9], &args);
    if (s == LACT_OK)
        s = lact_ttt_backward(gpu, &dg[0], &dg[1], &dg[2], &dg[3], &dg[4], &dg[5],
                              cc->mom ? &dg[6] : NULL, &dg[7], &dg[8], &dg[9], &ddo, &dst, &dv[0],
                              &dv[1], &dv[2], &dv[3], &dv[4], &dv[5], dm, &dv[7], &dv[8], &dv[9],
                              &args);
    if (s == LACT_OK) s = lact_ctx_sync(gpu);
    CHECK_MSG(s == LACT_OK, "case %d: CUDA: %s", ci, lact_errmsg());
    double *ref[NT + 1] = {0};
    bool vs_f64 = s == LACT_OK && act == LACT_F32 && cc->muon != LACT_TTT_MUON_OFF;
    if (vs_f64) {
        bool ok = reference_f64(h, &hdo, N, L, d, dh, &args, ref);
        CHECK_MSG(ok, "case %d: the double reference failed", ci);
        if (!ok) s = LACT_E_NOMEM;
    }
    if (s == LACT_OK) {
        /* BF16 with Muon: Newton–Schulz runs on bf16 operands (as the
         * public implementation runs it), whose rounding the quintic
         * iteration amplifies; the F32 run of the same case checks the
         * algorithm. */
        double tol = act == LACT_F32 ? 1e-5 : cc->muon ? 1e-1 : 1e-2;
        const char *dn = act == LACT_BF16 ? "bf16" : "f32";
        double worst = 0, worst_tol = tol;
        const char *wn = "-";
        char each[512]; /* every tensor's error, for the log */
        size_t used = 0;
        each[0] = 0;
        for (int i = -1; i < NT; i++) {
            const lact_tensor *got = i < 0 ? &dov : &dg[i], *host = i < 0 ? &ho : &hg[i];
            const char *nm = i < 0 ? "o" : names[i];
            if (!host->data) continue;
            double e, t = tol;
            if (vs_f64) {
                e = rel_err_f64(got, ref[1 + i]);
                t = fmax(2e-4, 4 * rel_err_f64(host, ref[1 + i]));
            } else {
                e = rel_err(got, host);
            }
            CHECK_MSG(e <= t, "case %d %s: %s%s rel err %.3g > %.3g", ci, dn, i < 0 ? "" : "d_", nm,
                      e, t);
            if (used < sizeof each - 40)
                used += (size_t)snprintf(each + used, sizeof each - used, " %s%s %.1e",
                                         i < 0 ? "" : "d_", nm, e);
            if (!(e / t <= worst / worst_tol)) worst = e, worst_tol = t, wn = nm;
        }
        if (!vs_f64) {
            /* the snapshots; the CPU leaves the iterates' room unwritten */
            int64_t snap = N * lact_ttt_state_snap_numel(&cargs, cc->mom, d, dh);
            lact_tensor a = lact_tensor_view(dst.data, args.state_bf16 ? LACT_BF16 : LACT_F32,
                                             LACT_CUDA, 1, &snap);
            lact_tensor b = lact_tensor_view(hst.data, LACT_F32, LACT_CPU, 1, &snap);
            double e = rel_err(&a, &b);
            CHECK_MSG(e <= tol, "case %d %s: state rel err %.3g > %.3g", ci, dn, e, tol);
        }
        if (act == LACT_BF16 && lact_ttt_state_ns_numel(&args, d, dh) > 0)
            kept_same(gpu, ci, dg, &ddo, dv, cc->mom, &args, tol);
        if (g_check_one_stream) {
            forward_one_stream_same(gpu, ci, &dov, &dst, dv, cc->mom, &args);
            one_stream_same(gpu, ci, dg, &ddo, &dst, dv, cc->mom, &args);
        }
        result = worst;
        printf("case %d %-4s N=%lld L=%lld d=%lld dh=%lld C=%lld mom=%d muon=%d n_ctx=%lld "
               "save_every=%d: worst %.2e of bound %.2e (%s)%s\n   %s\n",
               ci, dn, (long long)N, (long long)L, (long long)d, (long long)dh,
               (long long)cc->chunk, cc->mom, (int)cc->muon, (long long)cc->n_ctx, cc->save_every,
               worst, worst_tol, wn, vs_f64 ? ", against float64" : "", each);
    }
    for (int i = 0; i <= NT; i++)
        free(ref[i]);
    for (int i = 0; i < NT; i++) {
        lact_tensor_free(&h[i]), lact_tensor_free(&dv[i]);
        lact_tensor_free(&hg[i]), lact_tensor_free(&dg[i]);
    }
    lact_tensor_free(&ho), lact_tensor_free(&dov), lact_tensor_free(&hdo);
    lact_tensor_free(&ddo), lact_tensor_free(&hst), lact_tensor_free(&dst);
    return result;
}

/* The BF16 error of case c with the environment switch name set to value
 * for the run (unset after it). */
static double run_with(lact_ctx *cpu, lact_ctx *gpu, int c, const char *name, const char *value) {
    setenv(name, value, 1);
    double err = run_case(cpu, gpu, &cases[c], c, LACT_BF16);
    unsetenv(name);
    return err;
}

/* Case c in BF16 with the environment switch name=value: its error must
 * stay within twice the batched products' (plus 1e-3). */
static void variant_within(lact_ctx *cpu, lact_ctx *gpu, int c, const char *name, const char *value,
                           const char *what, double batched) {
    printf("   the same with %s:\n", what);
    double err = run_with(cpu, gpu, c, name, value);
    CHECK_MSG(err >= 0 && err <= 2 * batched + 1e-3,
              "case %d bf16: error %.3g with %s, %.3g batched", c, err, what, batched);
}

/* A BF16-state run of case c with the switch `name` set to value, held to
 * the bound of the state in BF16 against the F32 state's batched error. */
static void state_variant(lact_ctx *cpu, lact_ctx *gpu, int c, const char *name, const char *value,
                          const char *what, double batched) {
    printf("   and with %s:\n", what);
    double err = run_with(cpu, gpu, c, name, value);
    CHECK_MSG(err >= 0 && err <= 2 * batched + 3e-3,
              "case %d bf16: error %.3g with %s, %.3g with the F32 state", c, err, what, batched);
}

/* With F32 activations the CUDA version refuses a BF16 state, by name. */
static void bf16_state_needs_bf16(lact_ctx *gpu) {
    lact_ttt_op ops[4];
    lact_ttt_args args = {
        .ops = ops, .n_ops = lact_ttt_order_causal(ops, 4, 8, 4), .state_bf16 = true};
    int64_t N = 1, L = 8, d = 4, S = lact_ttt_state_numel(&args, false, d, d);
    int64_t act[3] = {N, L, d}, tok[2] = {N, L}, w[3] = {N, d, d};
    lact_tensor x[3], lr = {0}, wt = {0}, o = {0}, st = {0};
    memset(x, 0, sizeof x);
    for (int i = 0; i < 3; i++)
        CHECK_OK(lact_tensor_alloc(&x[i], LACT_F32, LACT_CUDA, 3, act));
    CHECK_OK(lact_tensor_alloc(&lr, LACT_F32, LACT_CUDA, 2, tok));
    CHECK_OK(lact_tensor_alloc(&wt, LACT_F32, LACT_CUDA, 3, w));
    CHECK_OK(lact_tensor_alloc(&o, LACT_F32, LACT_CUDA, 3, act));
    CHECK_OK(lact_tensor_alloc(&st, LACT_F32, LACT_CUDA, 2, (int64_t[]){N, S}));
    lact_status s = lact_ttt_forward(gpu, &o, &st, &x[0], &x[1], &x[2], &lr, &lr, &lr, NULL, &wt,
                                     &wt, &wt, &args);
    CHECK(s == LACT_E_UNSUPPORTED);
    CHECK_MSG(strstr(lact_errmsg(), "state_bf16") != NULL, "message: %s", lact_errmsg());
    for (int i = 0; i < 3; i++)
        lact_tensor_free(&x[i]);
    lact_tensor_free(&lr), lact_tensor_free(&wt), lact_tensor_free(&o), lact_tensor_free(&st);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!lact_cuda_available())
        return check_skip("ttt_cuda", "no CUDA device: runs on the GPU machine");
    lact_ctx cpu, gpu;
    CHECK_OK(lact_ctx_init(&cpu, LACT_CPU, 0));
    CHECK_OK(lact_ctx_init(&gpu, LACT_CUDA, 0));
    ttt_check_shared(&gpu, LACT_F32, LACT_TTT_MUON_TABLE);
    ttt_check_shared(&gpu, LACT_BF16, LACT_TTT_MUON_TABLE);
    ttt_check_shared(&gpu, LACT_BF16, LACT_TTT_MUON_OFF);
    enum { NC = (int)(sizeof cases / sizeof cases[0]) };
    double batched_err[NC];
    for (int c = 0; c < NC; c++) {
        run_case(&cpu, &gpu, &cases[c], c, LACT_F32);
        /* The BF16 apply and (on Hopper) Newton–Schulz and the hidden-unit
         * passes of the update, its backward and the apply's backward run
         * as single kernels where the heads are small enough, the hidden-unit
         * passes also for large heads (streamed): the batched products
         * (LACT_TTT_NS_FUSED=0, LACT_TTT_APPLY_FUSED=0) are the reference
         * they must not fall behind. */
        setenv("LACT_TTT_NS_FUSED", "0", 1);
        setenv("LACT_TTT_APPLY_FUSED", "0", 1);
        double batched = batched_err[c] = run_case(&cpu, &gpu, &cases[c], c, LACT_BF16);
        unsetenv("LACT_TTT_NS_FUSED");
        unsetenv("LACT_TTT_APPLY_FUSED");
        /* With momentum the backward pairs its products (LACT_TTT_WIDE;
         * with Muon where the iteration is batched, as in the runs
         * above); one by one is the reference. */
        if (cases[c].mom && cases[c].save_every == 1) {
            printf("   the same with the backward's products one by one:\n");
            setenv("LACT_TTT_WIDE", "0", 1);
            run_case(&cpu, &gpu, &cases[c], c, LACT_F32);
            unsetenv("LACT_TTT_WIDE");
            variant_within(&cpu, &gpu, c, "LACT_TTT_WIDE", "0",
                           "the backward's products one by one", batched);
        }
        int64_t d = cases[c].d, dh = d * cases[c].mult;
        bool small = (d == 64 || d == 128) && (dh == d || dh == 2 * d);
        bool stream = !small && d % 64 == 0 && dh % 64 == 0;
        if (cases[c].muon == LACT_TTT_MUON_OFF && !small && !stream) continue;
        printf("   the same with the default kernels (fused where they fit):\n");
        /* the streamed apply even where the grid is too small to pay */
        if (stream) setenv("LACT_TTT_HIDDEN_STREAM", "1", 1);
        g_check_one_stream = stream;
        double fused = run_case(&cpu, &gpu, &cases[c], c, LACT_BF16);
        g_check_one_stream = false;
        unsetenv("LACT_TTT_HIDDEN_STREAM");
        CHECK_MSG(fused >= 0 && batched >= 0 && fused <= 2 * batched + 1e-3,
                  "case %d bf16: error %.3g with the fused kernels, %.3g batched", c, fused,
                  batched);
        /* the streamed passes' other settings: only the apply's pass
         * streamed; the update's backward in its own layout (products one
         * by one after it); each cluster size (a tile's blocks sharing its
         * rows by multicast; 1: no cluster; in clusters of 4 and 8 the
         * apply takes one slice a round where dh / 64 is not a multiple of
         * 8 and 16); the apply one slice a round everywhere; the
         * gradient's passes forming e themselves instead of reading it;
         * stages given back one step later; the weight gradients' products
         * adding into the F32 dW instead of storing BF16 sums; those sums
         * of the first op added by dw_out instead of a pass of their own;
         * the weight-row kernels eight columns a lane; the streamed
         * forward pass's and apply's element-wise steps beside the next
         * round's products */
        static const char *const var[][3] = {
            {"LACT_TTT_HIDDEN_STREAM", "apply", "only the apply's pass streamed"},
            {"LACT_TTT_STREAM_WIDE", "0", "the streamed update's backward in its own layout"},
            {"LACT_TTT_STREAM_CLUSTER", "1", "the streamed passes without clusters"},
            {"LACT_TTT_STREAM_CLUSTER", "4", "the streamed passes in clusters of 4"},
            {"LACT_TTT_STREAM_CLUSTER", "8", "the streamed passes in clusters of 8"},
            {"LACT_TTT_STREAM_SLICES", "1", "the streamed apply one slice a round"},
            {"LACT_TTT_STREAM_E", "0", "the streamed gradient's passes forming e themselves"},
            {"LACT_TTT_STREAM_RELEASE", "late", "the streamed passes' stages given back late"},
            {"LACT_TTT_DW16", "0", "the weight gradients' products adding into F32"},
            {"LACT_TTT_DWOUT_SUMS", "1", "the first op's sums added by dw_out"},
            {"LACT_TTT_WROW_V8", "1", "the weight-row kernels eight columns a lane"},
            {"LACT_TTT_STREAM_OVERLAP", "1",
             "the streamed forward pass's and apply's steps beside the next products"},
        };
        for (int k = 0; stream && k < (int)(sizeof var / sizeof var[0]); k++) {
            if (k > 0) setenv("LACT_TTT_HIDDEN_STREAM", "1", 1);
            variant_within(&cpu, &gpu, c, var[k][0], var[k][1], var[k][2], batched);
            unsetenv("LACT_TTT_HIDDEN_STREAM");
        }
        /* without clusters and with two blocks, so that each walks several
         * tiles with its stages running on from one to the next; with a
         * block a tile; and the overlapped forward pass */
        if (stream) {
            setenv("LACT_TTT_HIDDEN_STREAM", "1", 1);
            setenv("LACT_TTT_STREAM_CLUSTER", "1", 1);
            variant_within(&cpu, &gpu, c, "LACT_TTT_STREAM_PERSIST", "2",
                           "the streamed passes without clusters, two blocks", batched);
            variant_within(&cpu, &gpu, c, "LACT_TTT_STREAM_PERSIST", "0",
                           "the streamed passes without clusters, a block a tile", batched);
            /* a block then takes every round of its tile's slices, so the
             * overlapped step runs beside products (in a cluster of two
             * these cases have one round a block) */
            variant_within(&cpu, &gpu, c, "LACT_TTT_STREAM_OVERLAP", "1",
                           "the streamed forward pass and apply overlapped, without clusters",
                           batched);
            unsetenv("LACT_TTT_STREAM_CLUSTER");
            unsetenv("LACT_TTT_HIDDEN_STREAM");
        }
        /* the fused apply's mma.sync kernel with the batched hidden-unit
         * passes, which other GPUs than Hopper run */
        if (small)
            variant_within(&cpu, &gpu, c, "LACT_TTT_APPLY_WGMMA", "0",
                           "the fused apply on mma.sync", batched);
    }
    /* The state in BF16, as the layer saves it with BF16 activations and
     * without Muon, against the CPU's F32 state: the default kernels, and
     * the batched products. The rounded weights alone move the
     * CPU float gradients by up to 3e-3 (kernels_test_ttt_precision); here
     * the products read BF16 weights either way, so less is added. */
    for (int c = 0; c < NC; c++) {
        const double batched = batched_err[c];
        printf("case %d with the state in BF16 (F32 state, batched: %.2e):\n", c, batched);
        g_state_bf16 = true;
        const int64_t d = cases[c].d, dh = d * cases[c].mult;
        g_check_one_stream = d % 64 == 0 && dh % 64 == 0 && cases[c].mom;
        double b16 = run_case(&cpu, &gpu, &cases[c], c, LACT_BF16);
        g_check_one_stream = false;
        CHECK_MSG(b16 >= 0 && batched >= 0 && b16 <= 2 * batched + 3e-3,
                  "case %d bf16: error %.3g with the state in BF16, %.3g in F32 (batched)", c, b16,
                  batched);
        /* With Muon the batched iteration runs again from the rounded
         * momentum, which it amplifies (case 3: d_momentum 0.135 against
         * 0.093 with the F32 state, over the 0.1 bound): the layer saves
         * F32 snapshots with Muon, and only the kept iterates are checked. */
        if (cases[c].muon != LACT_TTT_MUON_OFF) {
            g_state_bf16 = false;
            continue;
        }
        printf("   and with the batched products:\n");
        setenv("LACT_TTT_NS_FUSED", "0", 1);
        setenv("LACT_TTT_APPLY_FUSED", "0", 1);
        b16 = run_case(&cpu, &gpu, &cases[c], c, LACT_BF16);
        CHECK_MSG(b16 >= 0 && b16 <= 2 * batched + 3e-3,
                  "case %d bf16: error %.3g with the state in BF16 and the batched products, "
                  "%.3g in F32",
                  c, b16, batched);
        /* The runs above had G and the momentum in BF16 where there is
         * momentum; the F32 step (LACT_TTT_G16=0) too: batched, then with
         * the default kernels */
        for (int path = 0; cases[c].mom && path < 2; path++) {
            if (path == 1) {
                unsetenv("LACT_TTT_NS_FUSED");
                unsetenv("LACT_TTT_APPLY_FUSED");
            }
            state_variant(&cpu, &gpu, c, "LACT_TTT_G16", "0",
                          path == 0 ? "G and the momentum in F32, batched"
                                    : "G and the momentum in F32, default kernels",
                          batched);
        }
        unsetenv("LACT_TTT_NS_FUSED");
        unsetenv("LACT_TTT_APPLY_FUSED");
        /* the default runs above kept the momentum's adjoint in BF16
         * beside the BF16 momentum; the F32 one too. And the weight-row
         * kernels eight columns a lane, the BF16 copies in 16-byte words;
         * the first op's weight-gradient sums added by the last pass. */
        if (cases[c].mom) {
            state_variant(&cpu, &gpu, c, "LACT_TTT_DM16", "0", "the momentum's adjoint in F32",
                          batched);
            state_variant(&cpu, &gpu, c, "LACT_TTT_WROW_V8", "1",
                          "the weight-row kernels eight columns a lane", batched);
            state_variant(&cpu, &gpu, c, "LACT_TTT_DWOUT_SUMS", "1",
                          "the first op's sums added by dw_out", batched);
        }
        g_state_bf16 = false;
    }
    bf16_state_needs_bf16(&gpu);
    lact_ctx_free(&gpu);
    lact_ctx_free(&cpu);
    return check_summary("ttt_cuda");
}
