/* The chunked ttt reference against a token-by-token evaluation written
 * straight from specs/lact.md: explicit per-token outer products, explicit
 * matrix loops for Newton–Schulz, all in double. */
#include <math.h>
#include <stdio.h>

#include "tests/kernels/test_ttt_common.h"
#include "tests/support/check.h"

/* Weights of one head: w[0] = W0 [dh][d], w[1] = W1 [d][dh], w[2] = W2 [dh][d]. */
typedef struct nv_head {
    int64_t d, dh;
    double *w[3], *m[3], *g[3], *r0[3];
} nv_head;

static int64_t nv_rows(const nv_head *h, int i) {
    return i == 1 ? h->d : h->dh;
}
static int64_t nv_cols(const nv_head *h, int i) {
    return i == 1 ? h->dh : h->d;
}
static double nv_sig(double x) {
    return 1.0 / (1.0 + exp(-x));
}
static double nv_silu(double x) {
    return x * nv_sig(x);
}
static double nv_dsilu(double x) {
    return nv_sig(x) * (1 + x * (1 - nv_sig(x)));
}

/* f_W(x) = W1 (silu(W0 x) ⊙ (W2 x)), one token. */
static void nv_apply(const nv_head *h, const double *x, double *out) {
    int64_t d = h->d, dh = h->dh;
    for (int64_t i = 0; i < d; i++) {
        double acc = 0;
        for (int64_t j = 0; j < dh; j++) {
            double a = 0, b = 0;
            for (int64_t c = 0; c < d; c++)
                a += h->w[0][j * d + c] * x[c];
            for (int64_t c = 0; c < d; c++)
                b += h->w[2][j * d + c] * x[c];
            acc += h->w[1][i * dh + j] * nv_silu(a) * b;
        }
        out[i] += acc;
    }
}

/* G_i += the token's terms of the spec's sums. */
static void nv_grad_token(nv_head *h, const double *k, const double *v, double l0, double l1,
                          double l2) {
    int64_t d = h->d, dh = h->dh;
    for (int64_t j = 0; j < dh; j++) {
        double a = 0, b = 0, e = 0;
        for (int64_t c = 0; c < d; c++)
            a += h->w[0][j * d + c] * k[c];
        for (int64_t c = 0; c < d; c++)
            b += h->w[2][j * d + c] * k[c];
        for (int64_t c = 0; c < d; c++)
            e += h->w[1][c * dh + j] * v[c]; /* (W1ᵀ v)_j */
        double hj = nv_silu(a) * b;
        for (int64_t i = 0; i < d; i++)
            h->g[1][i * dh + j] += l1 * v[i] * hj;
        for (int64_t c = 0; c < d; c++) {
            h->g[2][j * d + c] += l2 * e * nv_silu(a) * k[c];
            h->g[0][j * d + c] += l0 * e * b * nv_dsilu(a) * k[c];
        }
    }
}

/* g [rows][cols] = NS5(g), computed on the wide orientation. */
static void nv_newton_schulz(double *g, int64_t rows, int64_t cols, lact_ttt_muon muon) {
    static const double table[5][3] = {{4.0848, -6.8946, 2.9270},
                                       {3.9505, -6.3029, 2.6377},
                                       {3.7418, -5.5913, 2.3037},
                                       {2.8769, -3.1427, 1.2046},
                                       {2.8366, -3.0525, 1.2012}};
    static const double fixed[3] = {3.4445, -4.7750, 2.0315};
    bool tr = rows > cols;
    int64_t p = tr ? cols : rows, q = tr ? rows : cols;
    double *X = malloc((size_t)(p * q) * sizeof(double));
    double *Xn = malloc((size_t)(p * q) * sizeof(double));
    double *A = malloc((size_t)(p * p) * sizeof(double));
    double *B = malloc((size_t)(p * p) * sizeof(double));
    double norm = 0;
    for (int64_t i = 0; i < p; i++)
        for (int64_t j = 0; j < q; j++) {
            X[i * q + j] = tr ? g[j * cols + i] : g[i * cols + j];
            norm += X[i * q + j] * X[i * q + j];
        }
    norm = sqrt(norm);
    for (int64_t i = 0; i < p * q; i++)
        X[i] /= norm + 1e-7;
    for (int s = 0; s < 5; s++) {
        const double *k = muon == LACT_TTT_MUON_FIXED ? fixed : table[s];
        for (int64_t i = 0; i < p; i++)
            for (int64_t j = 0; j < p; j++) {
                double acc = 0;
                for (int64_t c = 0; c < q; c++)
                    acc += X[i * q + c] * X[j * q + c];
                A[i * p + j] = acc;
            }
        for (int64_t i = 0; i < p; i++)
            for (int64_t j = 0; j < p; j++) {
                double acc = 0;
                for (int64_t c = 0; c < p; c++)
                    acc += A[i * p + c] * A[c * p + j];
                B[i * p + j] = k[1] * A[i * p + j] + k[2] * acc;
            }
        for (int64_t i = 0; i < p; i++)
            for (int64_t j = 0; j < q; j++) {
                double acc = 0;
                for (int64_t c = 0; c < p; c++)
                    acc += B[i * p + c] * X[c * q + j];
                Xn[i * q + j] = k[0] * X[i * q + j] + acc;
            }
        memcpy(X, Xn, (size_t)(p * q) * sizeof(double));
    }
    for (int64_t i = 0; i < p; i++)
        for (int64_t j = 0; j < q; j++) {
            if (tr)
                g[j * cols + i] = X[i * q + j];
            else
                g[i * cols + j] = X[i * q + j];
        }
    free(X), free(Xn), free(A), free(B);
}

static void nv_update(nv_head *h, int i, double beta, bool mom, lact_ttt_muon muon) {
    int64_t rows = nv_rows(h, i), cols = nv_cols(h, i), n = rows * cols;
    double *g = h->g[i];
    if (mom) {
        for (int64_t j = 0; j < n; j++)
            h->m[i][j] = beta * h->m[i][j] + g[j];
        memcpy(g, h->m[i], (size_t)n * sizeof(double));
    }
    if (muon != LACT_TTT_MUON_OFF) nv_newton_schulz(g, rows, cols, muon);
    for (int64_t r = 0; r < rows; r++) {
        double *w = h->w[i] + r * cols, norm = 0;
        for (int64_t c = 0; c < cols; c++)
            w[c] += g[r * cols + c], norm += w[c] * w[c];
        for (int64_t c = 0; c < cols; c++)
            w[c] = w[c] / (sqrt(norm) + 1e-5) * h->r0[i][r];
    }
}

static void nv_forward(const tc_case *c, double *o) {
    int64_t N = c->n, L = c->len, d = c->d, dh = c->dh, nel = d * dh;
    nv_head h = {.d = d, .dh = dh};
    for (int i = 0; i < 3; i++) {
        h.w[i] = malloc((size_t)nel * sizeof(double));
        h.m[i] = malloc((size_t)nel * sizeof(double));
        h.g[i] = malloc((size_t)nel * sizeof(double));
        h.r0[i] = malloc((size_t)(d > dh ? d : dh) * sizeof(double));
    }
    memset(o, 0, (size_t)(N * L * d) * sizeof(double));
    for (int64_t n = 0; n < N; n++) {
        for (int i = 0; i < 3; i++) {
            memcpy(h.w[i], c->x[7 + i] + n * nel, (size_t)nel * sizeof(double));
            memset(h.m[i], 0, (size_t)nel * sizeof(double));
            for (int64_t r = 0; r < nv_rows(&h, i); r++) {
                double s = 0;
                for (int64_t k = 0; k < nv_cols(&h, i); k++)
                    s += h.w[i][r * nv_cols(&h, i) + k] * h.w[i][r * nv_cols(&h, i) + k];
                h.r0[i][r] = sqrt(s);
            }
        }
        for (int64_t j = 0; j < c->args.n_ops; j++) {
            const lact_ttt_op *op = &c->args.ops[j];
            if (op->apply)
                for (int64_t t = op->start; t < op->end; t++)
                    nv_apply(&h, c->x[0] + (n * L + t) * d, o + (n * L + t) * d);
            if (!op->update) continue;
            for (int i = 0; i < 3; i++)
                memset(h.g[i], 0, (size_t)nel * sizeof(double));
            double beta = 0;
            for (int64_t t = op->start; t < op->end; t++) {
                nv_grad_token(&h, c->x[1] + (n * L + t) * d, c->x[2] + (n * L + t) * d,
                              c->x[3][n * L + t], c->x[4][n * L + t], c->x[5][n * L + t]);
                if (c->mom) beta += c->x[6][n * L + t] / (double)(op->end - op->start);
            }
            for (int i = 0; i < 3; i++)
                nv_update(&h, i, beta, c->mom, c->muon);
        }
    }
    for (int i = 0; i < 3; i++)
        free(h.w[i]), free(h.m[i]), free(h.g[i]), free(h.r0[i]);
}

/* Is row t of head n covered by some apply op? */
static bool applied(const tc_case *c, int64_t t) {
    for (int64_t j = 0; j < c->args.n_ops; j++)
        if (c->args.ops[j].apply && c->args.ops[j].start <= t && t < c->args.ops[j].end)
            return true;
    return false;
}

static void check_case(tc_case *c, uint64_t seed) {
    CHECK(tc_init(c, seed));
    int64_t no = c->n * c->len * c->d;
    double *ref = malloc((size_t)no * sizeof(double)), *o64 = malloc((size_t)no * sizeof(double));
    float *o32 = malloc((size_t)no * sizeof(float));
    float *x32[10] = {0};
    for (int i = 0; i < 10; i++) {
        if (!c->x[i]) continue;
        x32[i] = malloc((size_t)c->numel[i] * sizeof(float));
        for (int64_t j = 0; j < c->numel[i]; j++)
            x32[i][j] = (float)c->x[i][j];
    }
    nv_forward(c, ref);
    lact_ttt_in_f64 in64 = tc_in64(c);
    lact_ttt_in_f32 in32 = {x32[0], x32[1], x32[2], x32[3], x32[4],
                            x32[5], x32[6], x32[7], x32[8], x32[9]};
    lact_ttt_dims dims = tc_dims(c);
    CHECK_OK(lact_cpu_ttt_forward_f64(o64, NULL, &in64, &dims, &c->args));
    CHECK_OK(lact_cpu_ttt_forward_f32(o32, NULL, &in32, &dims, &c->args));
    double e64 = tc_rel_err(o64, ref, no), e32 = tc_rel_err_f(o32, ref, no);
    CHECK_MSG(e64 < 1e-12, "d=%lld dh=%lld L=%lld C=%lld muon=%s mom=%d %s: f64 rel err %.3g",
              (long long)c->d, (long long)c->dh, (long long)c->len, (long long)c->chunk,
              tc_muon_name(c->muon), c->mom, tc_order_name(c->order), e64);
    /* Float: 1e-5; with Muon looser, since Newton–Schulz's slope at small
     * singular values (the product of the five a's, ~500) magnifies float
     * rounding in those directions (seen: ≤ 3e-5; without Muon ≤ 3e-7). */
    double tol32 = c->muon == LACT_TTT_MUON_OFF ? 1e-5 : 2e-4;
    CHECK_MSG(e32 < tol32, "d=%lld dh=%lld L=%lld C=%lld muon=%s mom=%d %s: f32 rel err %.3g",
              (long long)c->d, (long long)c->dh, (long long)c->len, (long long)c->chunk,
              tc_muon_name(c->muon), c->mom, tc_order_name(c->order), e32);
    /* Rows no apply covers are exactly zero; the others are not. */
    for (int64_t n = 0; n < c->n; n++)
        for (int64_t t = 0; t < c->len; t++) {
            double s = 0;
            for (int64_t j = 0; j < c->d; j++)
                s += fabs(o64[(n * c->len + t) * c->d + j]);
            CHECK(applied(c, t) ? s > 0 : s == 0);
        }
    free(ref), free(o64), free(o32);
    for (int i = 0; i < 10; i++)
        free(x32[i]);
    tc_free(c);
}

/* The comparison must be able to tell the options apart: the naive value
 * with one Muon coefficient set is far from the reference with the other,
 * and with momentum far from without. */
static void check_sensitivity(void) {
    tc_case a = {.n = 1,
                 .len = 15,
                 .d = 8,
                 .dh = 16,
                 .chunk = 4,
                 .mom = true,
                 .muon = LACT_TTT_MUON_TABLE,
                 .order = TC_CAUSAL};
    CHECK(tc_init(&a, 99));
    int64_t no = a.len * a.d;
    double *ref = malloc((size_t)no * sizeof(double)), *o = malloc((size_t)no * sizeof(double));
    nv_forward(&a, ref);
    lact_ttt_dims dims = tc_dims(&a);
    lact_ttt_in_f64 in = tc_in64(&a);
    a.args.muon = LACT_TTT_MUON_FIXED;
    CHECK_OK(lact_cpu_ttt_forward_f64(o, NULL, &in, &dims, &a.args));
    CHECK(tc_rel_err(o, ref, no) > 1e-3);
    a.args.muon = LACT_TTT_MUON_TABLE;
    in.momentum = NULL;
    CHECK_OK(lact_cpu_ttt_forward_f64(o, NULL, &in, &dims, &a.args));
    CHECK(tc_rel_err(o, ref, no) > 1e-3);
    free(ref), free(o);
    tc_free(&a);
}

/* The iterates' room exists with Muon, save_every 1 and keep_ns, for
 * every head shape. */
static void check_ns_room(void) {
    lact_ttt_op op = {0, 8, true, true};
    lact_ttt_args args = {
        .ops = &op, .n_ops = 1, .muon = LACT_TTT_MUON_TABLE, .save_every = 1, .keep_ns = true};
    CHECK(lact_ttt_state_ns_numel(&args, 64, 128) == 9 * 64 * 128 + 4);
    CHECK(lact_ttt_state_ns_numel(&args, 512, 512) == 9 * 512 * 512 + 4);
    CHECK(lact_ttt_state_numel(&args, true, 512, 512) == 6 * 512 * 512 + 9 * 512 * 512 + 4);
    args.save_every = 2;
    CHECK(lact_ttt_state_ns_numel(&args, 64, 64) == 0);
    args.save_every = 1, args.muon = LACT_TTT_MUON_OFF;
    CHECK(lact_ttt_state_ns_numel(&args, 64, 64) == 0);
    args.muon = LACT_TTT_MUON_FIXED, args.keep_ns = false;
    CHECK(lact_ttt_state_ns_numel(&args, 64, 64) == 0);
}

int main(void) {
    check_ns_room();
    static const int64_t sizes[][4] = {
        /* d, dh, L, chunk: L never a multiple of the chunk */
        {4, 4, 7, 3}, {4, 8, 13, 5}, {8, 8, 17, 6}, {8, 16, 20, 8}, {16, 32, 70, 16},
    };
    int n_sizes = (int)(sizeof sizes / sizeof sizes[0]);
    uint64_t seed = 1;
    for (int s = 0; s < n_sizes; s++)
        for (int muon = 0; muon < 3; muon++)
            for (int mom = 0; mom < 2; mom++)
                for (int order = 0; order < 3; order++) {
                    tc_case c = {.n = 2,
                                 .d = sizes[s][0],
                                 .dh = sizes[s][1],
                                 .len = sizes[s][2],
                                 .chunk = sizes[s][3],
                                 .mom = mom,
                                 .muon = (lact_ttt_muon)muon,
                                 .order = (tc_order)order};
                    check_case(&c, seed++);
                }
    /* Long updates span several internal tiles of tokens. */
    tc_case big = {.n = 1,
                   .d = 4,
                   .dh = 8,
                   .len = 700,
                   .chunk = 600,
                   .mom = true,
                   .muon = LACT_TTT_MUON_TABLE,
                   .order = TC_BIDIR};
    check_case(&big, 1234);
    check_sensitivity();
    return check_summary("kernels_test_ttt_naive");
}
