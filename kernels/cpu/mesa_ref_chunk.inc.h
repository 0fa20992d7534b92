/* The mesa reference, part 1: one chunk of the chunkwise form. Included by
 * mesa_ref_f32.c / mesa_ref_f64.c with MESA_REAL (float | double) and
 * MESA_GEMM (cblas_sgemm | cblas_dgemm) defined.
 *
 * For the tokens i = 0..T−1 of a chunk, with H0, G0 the states before it,
 *   ℓ_i = g_0 + … + g_i,   γ̄_i = exp(ℓ_i),   D_ij = exp(ℓ_i − ℓ_j) β_j (j ≤ i),
 *   H_i = γ̄_i H0 + Σ_j D_ij k_j k_jᵀ,   G_i = γ̄_i G0 + Σ_j D_ij v_j k_jᵀ,
 * so for a batch of vectors P (one row per token)
 *   (H_i + Λ) p_i = γ̄_i H0 p_i + Σ_j D_ij (k_j·p_i) k_j + λ ⊙ p_i
 * is two matrix products: P H0 and (D ⊙ P Kᵀ) K. ℓ_i − ℓ_j ≤ 0, so no
 * exponential overflows. */
#include <cblas.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

typedef MESA_REAL real;

/* Guards the CG divisions: a solved (or zero) right-hand side gives
 * 0 / (0 + eps) = 0 and the iteration stands still. Far below any
 * residual that matters in either precision. */
#define MESA_CG_EPS ((real)1e-30)

typedef struct mesa_ws {
    int64_t d, cap;        /* channels, chunk capacity */
    real *h0, *g0;         /* [d, d] states before the chunk */
    real *lcum;            /* [cap] ℓ_i */
    real *gam;             /* [cap] γ̄_i */
    real *dm;              /* [cap, cap] D */
    real *s;               /* [cap, cap] scratch */
    real *x;               /* [cap, d] the solutions */
    real *r, *p, *ap, *kw; /* [cap, d] CG and scratch */
    real *rr;              /* [cap] */
    real *mem;
} mesa_ws;

static lact_status mesa_ws_init(mesa_ws *ws, int64_t d, int64_t cap) {
    memset(ws, 0, sizeof *ws);
    ws->d = d;
    ws->cap = cap;
    int64_t n = 2 * d * d + 3 * cap + 2 * cap * cap + 5 * cap * d;
    ws->mem = calloc((size_t)n, sizeof(real));
    if (!ws->mem)
        return lact_fail(LACT_E_NOMEM, "mesa: cannot allocate %lld bytes of workspace",
                         (long long)(n * (int64_t)sizeof(real)));
    real *m = ws->mem;
    ws->h0 = m, m += d * d;
    ws->g0 = m, m += d * d;
    ws->lcum = m, m += cap;
    ws->gam = m, m += cap;
    ws->rr = m, m += cap;
    ws->dm = m, m += cap * cap;
    ws->s = m, m += cap * cap;
    ws->x = m, m += cap * d;
    ws->r = m, m += cap * d;
    ws->p = m, m += cap * d;
    ws->ap = m, m += cap * d;
    ws->kw = m;
    return LACT_OK;
}

static void mesa_ws_free(mesa_ws *ws) {
    free(ws->mem);
    memset(ws, 0, sizeof *ws);
}

/* Row-major C = alpha op(A) op(B) + beta C, op(A) [M, K], op(B) [K, N]. */
static void mesa_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, real alpha, const real *a,
                      int64_t lda, const real *b, int64_t ldb, real beta, real *c, int64_t ldc) {
    MESA_GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M,
              (int)N, (int)K, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static real mesa_dot(const real *a, const real *b, int64_t n) {
    real s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* ℓ, γ̄ and D of the chunk's T tokens from their g, beta. */
static void mesa_decay(mesa_ws *ws, const real *g, const real *beta, int64_t T) {
    real acc = 0;
    for (int64_t i = 0; i < T; i++) {
        acc += g[i];
        ws->lcum[i] = acc;
        ws->gam[i] = exp(acc);
    }
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++)
            ws->dm[i * T + j] = j <= i ? exp(ws->lcum[i] - ws->lcum[j]) * beta[j] : 0;
}

/* out_i = (H_i + Λ) p_i for the T rows of P (k: the chunk's keys). */
static void mesa_apply(mesa_ws *ws, const real *k, const real *lam, const real *P, int64_t T,
                       real *out) {
    int64_t d = ws->d;
    mesa_gemm(false, false, T, d, d, 1, P, d, ws->h0, d, 0, out, d);
    for (int64_t i = 0; i < T; i++)
        for (int64_t c = 0; c < d; c++)
            out[i * d + c] = ws->gam[i] * out[i * d + c] + lam[c] * P[i * d + c];
    mesa_gemm(false, true, T, T, d, 1, P, d, k, d, 0, ws->s, T);
    for (int64_t n = 0; n < T * T; n++)
        ws->s[n] *= ws->dm[n];
    mesa_gemm(false, false, T, d, T, 1, ws->s, T, k, d, 1, out, d);
}

/* x_i ≈ (H_i + Λ)⁻¹ rhs_i for the chunk's T tokens: `steps` CG iterations
 * from x = 0, every token with its own step sizes. */
static void mesa_cg(mesa_ws *ws, const real *k, const real *lam, const real *rhs, int64_t T,
                    int steps, real *x) {
    int64_t d = ws->d, n = T * d;
    memset(x, 0, (size_t)n * sizeof(real));
    memcpy(ws->r, rhs, (size_t)n * sizeof(real));
    memcpy(ws->p, rhs, (size_t)n * sizeof(real));
    for (int64_t i = 0; i < T; i++)
        ws->rr[i] = mesa_dot(ws->r + i * d, ws->r + i * d, d);
    for (int it = 0; it < steps; it++) {
        mesa_apply(ws, k, lam, ws->p, T, ws->ap);
        for (int64_t i = 0; i < T; i++) {
            real *xi = x + i * d, *ri = ws->r + i * d, *pi = ws->p + i * d;
            const real *api = ws->ap + i * d;
            real alpha = ws->rr[i] / (mesa_dot(pi, api, d) + MESA_CG_EPS);
            for (int64_t c = 0; c < d; c++) {
                xi[c] += alpha * pi[c];
                ri[c] -= alpha * api[c];
            }
            real rn = mesa_dot(ri, ri, d);
            real bt = rn / (ws->rr[i] + MESA_CG_EPS);
            for (int64_t c = 0; c < d; c++)
                pi[c] = ri[c] + bt * pi[c];
            ws->rr[i] = rn;
        }
    }
}

/* max_i ‖rhs_i − (H_i + Λ) x_i‖ / ‖rhs_i‖ (tokens with rhs 0 count as 0). */
static double mesa_residual(mesa_ws *ws, const real *k, const real *lam, const real *rhs,
                            const real *x, int64_t T) {
    int64_t d = ws->d;
    mesa_apply(ws, k, lam, x, T, ws->ap);
    double worst = 0;
    for (int64_t i = 0; i < T; i++) {
        double num = 0, den = 0;
        for (int64_t c = 0; c < d; c++) {
            double e = (double)rhs[i * d + c] - (double)ws->ap[i * d + c];
            num += e * e;
            den += (double)rhs[i * d + c] * (double)rhs[i * d + c];
        }
        if (den > 0 && sqrt(num / den) > worst) worst = sqrt(num / den);
    }
    return worst;
}

/* o_i = G_i x_i = γ̄_i G0 x_i + Σ_j D_ij (k_j·x_i) v_j. */
static void mesa_output(mesa_ws *ws, const real *k, const real *v, const real *x, int64_t T,
                        real *o) {
    int64_t d = ws->d;
    mesa_gemm(false, true, T, d, d, 1, x, d, ws->g0, d, 0, o, d);
    for (int64_t i = 0; i < T; i++)
        for (int64_t c = 0; c < d; c++)
            o[i * d + c] *= ws->gam[i];
    mesa_gemm(false, true, T, T, d, 1, x, d, k, d, 0, ws->s, T);
    for (int64_t n = 0; n < T * T; n++)
        ws->s[n] *= ws->dm[n];
    mesa_gemm(false, false, T, d, T, 1, ws->s, T, v, d, 1, o, d);
}

/* H0, G0 ← the states after the chunk's last token:
 *   H = γ̄_{T−1} H0 + Kᵀ diag(D_{T−1,·}) K,  G = γ̄_{T−1} G0 + Vᵀ diag(D_{T−1,·}) K. */
static void mesa_advance(mesa_ws *ws, const real *k, const real *v, int64_t T) {
    int64_t d = ws->d;
    const real *w = ws->dm + (T - 1) * T;
    for (int64_t j = 0; j < T; j++)
        for (int64_t c = 0; c < d; c++)
            ws->kw[j * d + c] = w[j] * k[j * d + c];
    real decay = ws->gam[T - 1];
    mesa_gemm(true, false, d, d, T, 1, ws->kw, d, k, d, decay, ws->h0, d);
    mesa_gemm(true, false, d, d, T, 1, v, d, ws->kw, d, decay, ws->g0, d);
}
