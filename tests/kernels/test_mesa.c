/* The mesa op: the chunkwise CG forward against the token-by-token form with
 * an exact (Cholesky) solve, the implicit-gradient backward against finite
 * differences in double, decoding against the full forward, the CG residual
 * report, and the argument checks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"
#include "kernels/cpu/mesa_ref.h"
#include "kernels/mesa.h"
#include "kernels/op_table.h"
#include "tests/support/check.h"

#define SEED 77031u

/* One problem in double; every array owned. */
typedef struct mcase {
    int64_t b, h, len, d;
    double *q, *k, *v, *g, *beta, *lam;
} mcase;

static int64_t n_tok(const mcase *m) {
    return m->b * m->h * m->len;
}

static void unit_rows(double *x, int64_t rows, int64_t d) {
    for (int64_t r = 0; r < rows; r++) {
        double n2 = 0;
        for (int64_t c = 0; c < d; c++)
            n2 += x[r * d + c] * x[r * d + c];
        for (int64_t c = 0; c < d; c++)
            x[r * d + c] /= sqrt(n2);
    }
}

/* q, k unit rows, v normal, g = −softplus(n) − 0.05, beta = sigmoid(n),
 * lambda in [lam_lo, lam_lo + 1). */
static mcase case_make(int64_t b, int64_t h, int64_t len, int64_t d, uint64_t stream,
                       double lam_lo) {
    mcase m = {b, h, len, d, NULL, NULL, NULL, NULL, NULL, NULL};
    int64_t nt = n_tok(&m);
    m.q = malloc((size_t)(nt * d) * sizeof(double));
    m.k = malloc((size_t)(nt * d) * sizeof(double));
    m.v = malloc((size_t)(nt * d) * sizeof(double));
    m.g = malloc((size_t)nt * sizeof(double));
    m.beta = malloc((size_t)nt * sizeof(double));
    m.lam = malloc((size_t)(h * d) * sizeof(double));
    if (!m.q || !m.k || !m.v || !m.g || !m.beta || !m.lam) {
        fprintf(stderr, "test_mesa: out of memory\n");
        exit(1);
    }
    lact_rng rng = lact_rng_make(SEED, stream);
    for (int64_t i = 0; i < nt * d; i++) {
        m.q[i] = lact_rng_normal(&rng);
        m.k[i] = lact_rng_normal(&rng);
        m.v[i] = lact_rng_normal(&rng);
    }
    unit_rows(m.q, nt, d);
    unit_rows(m.k, nt, d);
    for (int64_t i = 0; i < nt; i++) {
        m.g[i] = -log1p(exp(lact_rng_normal(&rng))) - 0.05;
        m.beta[i] = 1.0 / (1.0 + exp(-lact_rng_normal(&rng)));
    }
    for (int64_t i = 0; i < h * d; i++)
        m.lam[i] = lam_lo + lact_rng_uniform(&rng);
    return m;
}

static void case_free(mcase *m) {
    free(m->q), free(m->k), free(m->v), free(m->g), free(m->beta), free(m->lam);
}

static lact_mesa_in_f64 case_in(const mcase *m) {
    return (lact_mesa_in_f64){m->q, m->k, m->v, m->g, m->beta, m->lam};
}

static lact_mesa_dims case_dims(const mcase *m, int64_t chunk, int steps) {
    return (lact_mesa_dims){m->b, m->h, m->len, m->d, chunk, steps};
}

/* x = A⁻¹ q by Cholesky (A symmetric positive definite, d ≤ 64). */
static void chol_solve(const double *a, const double *q, int64_t d, double *x) {
    double l[64 * 64], y[64];
    for (int64_t j = 0; j < d; j++) {
        for (int64_t i = j; i < d; i++) {
            double s = a[i * d + j];
            for (int64_t p = 0; p < j; p++)
                s -= l[i * d + p] * l[j * d + p];
            l[i * d + j] = i == j ? sqrt(s) : s / l[j * d + j];
        }
    }
    for (int64_t i = 0; i < d; i++) {
        double s = q[i];
        for (int64_t p = 0; p < i; p++)
            s -= l[i * d + p] * y[p];
        y[i] = s / l[i * d + i];
    }
    for (int64_t i = d - 1; i >= 0; i--) {
        double s = y[i];
        for (int64_t p = i + 1; p < d; p++)
            s -= l[p * d + i] * x[p];
        x[i] = s / l[i * d + i];
    }
}

/* The definition, token by token, with exact solves. */
static void sequential_exact(const mcase *m, double *o) {
    int64_t d = m->d, L = m->len;
    double *hs = calloc((size_t)(d * d), sizeof(double));
    double *gs = calloc((size_t)(d * d), sizeof(double));
    double *a = malloc((size_t)(d * d) * sizeof(double));
    double x[64];
    for (int64_t bh = 0; bh < m->b * m->h; bh++) {
        memset(hs, 0, (size_t)(d * d) * sizeof(double));
        memset(gs, 0, (size_t)(d * d) * sizeof(double));
        const double *lam = m->lam + (bh % m->h) * d;
        for (int64_t t = 0; t < L; t++) {
            int64_t r = bh * L + t;
            const double *k = m->k + r * d, *v = m->v + r * d;
            double gam = exp(m->g[r]), b = m->beta[r];
            for (int64_t i = 0; i < d; i++)
                for (int64_t j = 0; j < d; j++) {
                    hs[i * d + j] = gam * hs[i * d + j] + b * k[i] * k[j];
                    gs[i * d + j] = gam * gs[i * d + j] + b * v[i] * k[j];
                    a[i * d + j] = hs[i * d + j] + (i == j ? lam[i] : 0.0);
                }
            chol_solve(a, m->q + r * d, d, x);
            for (int64_t i = 0; i < d; i++) {
                double s = 0;
                for (int64_t j = 0; j < d; j++)
                    s += gs[i * d + j] * x[j];
                o[r * d + i] = s;
            }
        }
    }
    free(hs), free(gs), free(a);
}

static double rel_diff(const double *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-300);
}

/* (a) chunked CG in double = the exact sequential form, for several chunk
 * sizes (1, not dividing L, equal to L, past L). */
static void test_forward_exact(void) {
    static const struct {
        int64_t b, h, len, d;
    } shapes[] = {{1, 1, 13, 4}, {2, 2, 23, 8}, {1, 3, 37, 16}};
    static const int64_t chunks[] = {1, 3, 8, 16, 64};
    for (int s = 0; s < 3; s++) {
        mcase m = case_make(shapes[s].b, shapes[s].h, shapes[s].len, shapes[s].d, 10 + s, 0.5);
        int64_t n = n_tok(&m) * m.d;
        double *ref = malloc((size_t)n * sizeof(double)), *o = malloc((size_t)n * sizeof(double));
        sequential_exact(&m, ref);
        lact_mesa_in_f64 in = case_in(&m);
        for (int c = 0; c < 5; c++) {
            lact_mesa_dims dims = case_dims(&m, chunks[c], 30);
            double res = -1;
            CHECK_OK(lact_cpu_mesa_forward_f64(o, NULL, NULL, &res, &in, &dims));
            double e = rel_diff(o, ref, n);
            CHECK_MSG(e < 1e-5, "forward d=%lld chunk %lld: rel diff %.3g vs exact solve",
                      (long long)m.d, (long long)chunks[c], e);
            CHECK_MSG(res >= 0 && res < 1e-8, "forward d=%lld: residual %.3g after 30 steps",
                      (long long)m.d, res);
        }
        /* Too few steps must show: the comparison can fail. */
        lact_mesa_dims few = case_dims(&m, 8, 1);
        CHECK_OK(lact_cpu_mesa_forward_f64(o, NULL, NULL, NULL, &in, &few));
        CHECK_MSG(rel_diff(o, ref, n) > 1e-3, "one CG step already matches the exact solve");
        printf("forward d=%-2lld L=%lld: chunked CG (30 steps) vs Cholesky ok\n", (long long)m.d,
               (long long)m.len);
        free(ref), free(o);
        case_free(&m);
    }
}

/* Loss Σ w ⊙ o of the double reference. */
static double loss_f64(const mcase *m, const double *w, double *o, int64_t chunk, int steps) {
    lact_mesa_in_f64 in = case_in(m);
    lact_mesa_dims dims = case_dims(m, chunk, steps);
    if (lact_cpu_mesa_forward_f64(o, NULL, NULL, NULL, &in, &dims) != LACT_OK) return NAN;
    double s = 0;
    for (int64_t i = 0; i < n_tok(m) * m->d; i++)
        s += w[i] * o[i];
    return s;
}

/* (b) every input's gradient, every element, against 4th-order central
 * differences of the double forward. */
static void test_gradcheck_f64(int64_t b, int64_t h, int64_t len, int64_t d, int64_t chunk,
                               uint64_t stream) {
    mcase m = case_make(b, h, len, d, stream, 0.5);
    int64_t nt = n_tok(&m), n = nt * d;
    double *w = malloc((size_t)n * sizeof(double)), *o = malloc((size_t)n * sizeof(double));
    lact_rng rng = lact_rng_make(SEED, stream + 100);
    for (int64_t i = 0; i < n; i++)
        w[i] = lact_rng_normal(&rng);
    double *grads[6];
    int64_t sizes[6] = {n, n, n, nt, nt, h * d};
    double *vals[6] = {m.q, m.k, m.v, m.g, m.beta, m.lam};
    static const char *names[6] = {"q", "k", "v", "g", "beta", "lambda"};
    for (int i = 0; i < 6; i++) {
        grads[i] = malloc((size_t)sizes[i] * sizeof(double));
        for (int64_t j = 0; j < sizes[i]; j++)
            grads[i][j] = 1e3; /* must be overwritten */
    }
    lact_mesa_grad_f64 grad = {grads[0], grads[1], grads[2], grads[3], grads[4], grads[5]};
    lact_mesa_in_f64 in = case_in(&m);
    lact_mesa_dims dims = case_dims(&m, chunk, 40);
    CHECK_OK(lact_cpu_mesa_backward_f64(&grad, w, &in, &dims));
    const double hstep = 1e-3;
    for (int i = 0; i < 6; i++) {
        double num2 = 0, diff2 = 0;
        for (int64_t j = 0; j < sizes[i]; j++) {
            double orig = vals[i][j], f[4];
            static const double off[4] = {-2, -1, 1, 2};
            for (int s = 0; s < 4; s++) {
                vals[i][j] = orig + off[s] * hstep;
                f[s] = loss_f64(&m, w, o, chunk, 40);
            }
            vals[i][j] = orig;
            double numeric = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * hstep);
            num2 += numeric * numeric;
            diff2 += (numeric - grads[i][j]) * (numeric - grads[i][j]);
        }
        double e = sqrt(diff2) / fmax(sqrt(num2), 1e-12);
        CHECK_MSG(e < 1e-6, "gradcheck f64 (B%lld H%lld L%lld d%lld C%lld): d_%s off by %.3g",
                  (long long)b, (long long)h, (long long)len, (long long)d, (long long)chunk,
                  names[i], e);
        printf("gradcheck f64 L=%lld d=%lld chunk %lld: d_%-6s rel err %.2e\n", (long long)len,
               (long long)d, (long long)chunk, names[i], e);
    }
    for (int i = 0; i < 6; i++)
        free(grads[i]);
    free(w), free(o);
    case_free(&m);
}

/* ---- float API helpers ---------------------------------------------------- */

static lact_tensor tensor_from(const double *src, int ndim, const int64_t *shape) {
    lact_tensor t = {0};
    if (lact_tensor_alloc(&t, LACT_F32, LACT_CPU, ndim, shape) != LACT_OK) {
        fprintf(stderr, "test_mesa: %s\n", lact_errmsg());
        exit(1);
    }
    float *p = t.data;
    for (int64_t i = 0; src && i < lact_tensor_numel(&t); i++)
        p[i] = (float)src[i];
    if (!src) memset(p, 0, lact_tensor_nbytes(&t));
    return t;
}

/* The six inputs of m as F32 tensors, q k v g beta lambda. */
static void case_tensors(const mcase *m, lact_tensor *t) {
    int64_t s4[4] = {m->b, m->h, m->len, m->d}, hd[2] = {m->h, m->d};
    t[0] = tensor_from(m->q, 4, s4);
    t[1] = tensor_from(m->k, 4, s4);
    t[2] = tensor_from(m->v, 4, s4);
    t[3] = tensor_from(m->g, 3, s4);
    t[4] = tensor_from(m->beta, 3, s4);
    t[5] = tensor_from(m->lam, 2, hd);
}

static void tensors_free(lact_tensor *t, int n) {
    for (int i = 0; i < n; i++)
        lact_tensor_free(&t[i]);
}

static double max_abs_diff(const lact_tensor *a, const lact_tensor *b) {
    const float *pa = a->data, *pb = b->data;
    double worst = 0;
    for (int64_t i = 0; i < lact_tensor_numel(a); i++)
        worst = fmax(worst, fabs((double)pa[i] - pb[i]));
    return worst;
}

/* Tokens [t0, t0 + n) of m as F32 tensors; with squeeze (n = 1) in the
 * decode layout [B, H, d] / [B, H]. */
static void case_slice(const mcase *m, int64_t t0, int64_t n, bool squeeze, lact_tensor *t) {
    int64_t s4[4] = {m->b, m->h, n, m->d}, s3[3] = {m->b, m->h, m->d}, hd[2] = {m->h, m->d};
    for (int i = 0; i < 5; i++) {
        bool vec = i < 3;
        t[i] = squeeze ? tensor_from(NULL, vec ? 3 : 2, vec ? s3 : s4)
                       : tensor_from(NULL, vec ? 4 : 3, s4);
    }
    t[5] = tensor_from(m->lam, 2, hd);
    const double *src[5] = {m->q, m->k, m->v, m->g, m->beta};
    for (int64_t bh = 0; bh < m->b * m->h; bh++)
        for (int64_t j = 0; j < n; j++)
            for (int i = 0; i < 5; i++) {
                int64_t w = i < 3 ? m->d : 1;
                float *dst = (float *)t[i].data + (bh * n + j) * w;
                for (int64_t c = 0; c < w; c++)
                    dst[c] = (float)src[i][(bh * m->len + t0 + j) * w + c];
            }
}

/* Float public backward = the double reference (checks the wrapper's
 * argument order), and a gradient asked for alone equals the full run's. */
static void test_backward_f32(void) {
    mcase m = case_make(2, 2, 15, 6, 40, 0.5);
    int64_t nt = n_tok(&m), n = nt * m.d;
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    lact_tensor in[6], dg[6], d_o, only;
    case_tensors(&m, in);
    double *w = malloc((size_t)n * sizeof(double)), *ref[6];
    lact_rng rng = lact_rng_make(SEED, 41);
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)lact_rng_normal(&rng); /* representable in float */
    int64_t s4[4] = {m.b, m.h, m.len, m.d};
    d_o = tensor_from(w, 4, s4);
    for (int i = 0; i < 6; i++) {
        dg[i] = tensor_from(NULL, in[i].ndim, in[i].shape);
        ref[i] = malloc((size_t)lact_tensor_numel(&in[i]) * sizeof(double));
    }
    lact_mesa_args args = {4, 30};
    CHECK_OK(lact_mesa_backward(&ctx, &dg[0], &dg[1], &dg[2], &dg[3], &dg[4], &dg[5], &d_o, &in[0],
                                &in[1], &in[2], &in[3], &in[4], &in[5], &args));
    /* The double reference on the float-rounded inputs. */
    for (int64_t i = 0; i < n; i++) {
        m.q[i] = ((float *)in[0].data)[i];
        m.k[i] = ((float *)in[1].data)[i];
        m.v[i] = ((float *)in[2].data)[i];
    }
    for (int64_t i = 0; i < nt; i++) {
        m.g[i] = ((float *)in[3].data)[i];
        m.beta[i] = ((float *)in[4].data)[i];
    }
    for (int64_t i = 0; i < m.h * m.d; i++)
        m.lam[i] = ((float *)in[5].data)[i];
    lact_mesa_grad_f64 g64 = {ref[0], ref[1], ref[2], ref[3], ref[4], ref[5]};
    lact_mesa_in_f64 i64 = case_in(&m);
    lact_mesa_dims dims = case_dims(&m, 4, 30);
    CHECK_OK(lact_cpu_mesa_backward_f64(&g64, w, &i64, &dims));
    static const char *names[6] = {"q", "k", "v", "g", "beta", "lambda"};
    for (int i = 0; i < 6; i++) {
        int64_t cnt = lact_tensor_numel(&in[i]);
        double *got = malloc((size_t)cnt * sizeof(double));
        for (int64_t j = 0; j < cnt; j++)
            got[j] = ((float *)dg[i].data)[j];
        double e = rel_diff(got, ref[i], cnt);
        CHECK_MSG(e < 1e-4, "f32 backward: d_%s differs from the double reference by %.3g",
                  names[i], e);
        free(got);
    }
    only = tensor_from(NULL, in[4].ndim, in[4].shape);
    CHECK_OK(lact_mesa_backward(&ctx, NULL, NULL, NULL, NULL, &only, NULL, &d_o, &in[0], &in[1],
                                &in[2], &in[3], &in[4], &in[5], &args));
    CHECK_MSG(max_abs_diff(&only, &dg[4]) == 0, "d_beta alone differs from the full run");
    printf("backward f32 vs f64 reference ok\n");
    for (int i = 0; i < 6; i++)
        free(ref[i]);
    free(w);
    lact_tensor_free(&only);
    lact_tensor_free(&d_o);
    tensors_free(dg, 6);
    tensors_free(in, 6);
    lact_ctx_free(&ctx);
    case_free(&m);
}

/* (c) decoding token by token = the full forward, outputs and states; and
 * decoding after a prefill forward continues it. */
static void test_decode(void) {
    mcase m = case_make(2, 2, 19, 8, 50, 0.5);
    int64_t B = m.b, H = m.h, L = m.len, d = m.d;
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    lact_tensor in[6], tok[6];
    case_tensors(&m, in);
    int64_t s4[4] = {B, H, L, d}, st[4] = {B, H, d, d}, s3[3] = {B, H, d};
    lact_tensor o = tensor_from(NULL, 4, s4), hl = tensor_from(NULL, 4, st),
                gl = tensor_from(NULL, 4, st), hs = tensor_from(NULL, 4, st),
                gs = tensor_from(NULL, 4, st), ot = tensor_from(NULL, 3, s3);
    lact_mesa_args args = {5, 30};
    CHECK_OK(lact_mesa_forward(&ctx, &o, &hl, &gl, NULL, &in[0], &in[1], &in[2], &in[3], &in[4],
                               &in[5], &args));
    double worst = 0, scale = 0;
    for (int64_t t = 0; t < L; t++) {
        case_slice(&m, t, 1, true, tok);
        CHECK_OK(lact_mesa_decode(&ctx, &ot, &hs, &gs, &tok[0], &tok[1], &tok[2], &tok[3], &tok[4],
                                  &tok[5], &args));
        for (int64_t bh = 0; bh < B * H; bh++)
            for (int64_t c = 0; c < d; c++) {
                double full = ((float *)o.data)[(bh * L + t) * d + c];
                worst = fmax(worst, fabs(full - ((float *)ot.data)[bh * d + c]));
                scale = fmax(scale, fabs(full));
            }
        tensors_free(tok, 6);
    }
    CHECK_MSG(scale > 0.1 && worst < 1e-5 * scale, "decode vs full: max diff %.3g (max |o| %.3g)",
              worst, scale);
    CHECK_MSG(max_abs_diff(&hs, &hl) < 1e-5 && max_abs_diff(&gs, &gl) < 1e-5,
              "decoded states differ from the forward's final states");
    /* Prefill 11 tokens, decode the rest from the returned states. */
    int64_t pre = 11, sp[4] = {B, H, pre, d};
    lact_tensor op = tensor_from(NULL, 4, sp);
    case_slice(&m, 0, pre, false, tok);
    CHECK_OK(lact_mesa_forward(&ctx, &op, &hs, &gs, NULL, &tok[0], &tok[1], &tok[2], &tok[3],
                               &tok[4], &tok[5], &args));
    tensors_free(tok, 6);
    double worst2 = 0;
    for (int64_t t = pre; t < L; t++) {
        case_slice(&m, t, 1, true, tok);
        CHECK_OK(lact_mesa_decode(&ctx, &ot, &hs, &gs, &tok[0], &tok[1], &tok[2], &tok[3], &tok[4],
                                  &tok[5], &args));
        for (int64_t bh = 0; bh < B * H; bh++)
            for (int64_t c = 0; c < d; c++)
                worst2 = fmax(worst2, fabs(((float *)o.data)[(bh * L + t) * d + c] -
                                           ((float *)ot.data)[bh * d + c]));
        tensors_free(tok, 6);
    }
    CHECK_MSG(worst2 < 1e-5 * scale, "prefill + decode vs full: max diff %.3g", worst2);
    printf("decode vs full: max diff %.2e, after prefill %.2e\n", worst, worst2);
    lact_tensor *all[] = {&o, &hl, &gl, &hs, &gs, &ot, &op};
    for (int i = 0; i < 7; i++)
        lact_tensor_free(all[i]);
    tensors_free(in, 6);
    lact_ctx_free(&ctx);
    case_free(&m);
}

/* (d) the reported residual falls as CG steps grow, to float precision. */
static void test_residual(void) {
    mcase m = case_make(1, 2, 50, 32, 60, 0.05);
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    lact_tensor in[6];
    case_tensors(&m, in);
    int64_t s4[4] = {m.b, m.h, m.len, m.d};
    lact_tensor o = tensor_from(NULL, 4, s4);
    static const int steps[] = {1, 2, 4, 8, 16, 60};
    float res[6];
    for (int i = 0; i < 6; i++) {
        lact_mesa_args args = {16, steps[i]};
        res[i] = -1;
        CHECK_OK(lact_mesa_forward(&ctx, &o, NULL, NULL, &res[i], &in[0], &in[1], &in[2], &in[3],
                                   &in[4], &in[5], &args));
        printf("residual after %2d CG steps: %.3e\n", steps[i], (double)res[i]);
    }
    CHECK_MSG(res[0] > 1e-2, "one CG step leaves residual %.3g; expected a visible one",
              (double)res[0]);
    for (int i = 1; i < 5; i++)
        CHECK_MSG(res[i] < res[i - 1], "residual did not fall from %d to %d steps (%.3g, %.3g)",
                  steps[i - 1], steps[i], (double)res[i - 1], (double)res[i]);
    CHECK_MSG(res[5] >= 0 && res[5] < 1e-4, "residual %.3g after 60 steps", (double)res[5]);
    lact_tensor_free(&o);
    tensors_free(in, 6);
    lact_ctx_free(&ctx);
    case_free(&m);
}

int main(void) {
    test_forward_exact();
    test_gradcheck_f64(1, 2, 11, 5, 4, 20);
    test_gradcheck_f64(2, 1, 9, 8, 3, 21);
    test_gradcheck_f64(1, 1, 7, 3, 64, 22);
    test_backward_f32();
    test_decode();
    test_residual();
    return check_summary("kernels_mesa");
}
