/* Newton–Schulz of the ttt update as batched products over the 3N matrices
 * of one step (NS layout, ttt_kernels.cuh), forward and backward.
 *
 * Each matrix is kept in its stored orientation Y [rows, cols]. A wide one
 * (rows <= cols) is X = Y; a tall one is X = Yᵀ, and the step
 * X' = P X with A = X Xᵀ, P = aI + bA + cA² becomes Y' = Y P with A = Yᵀ Y,
 * so no transposes are materialised. With d == dh all 3N matrices share
 * one orientation and every product is one call. BF16 matrices of up to
 * 128 × 256 run every step in one kernel instead on Hopper
 * (ttt_ns_fused.cu). */
#ifndef LACT_CUDA_TTT_NS_CUH
#define LACT_CUDA_TTT_NS_CUH

#include "kernels/cuda/ttt_ns_kernels.cuh"
#include "kernels/cuda/ttt_ns_fused.h"

static inline lact_status ttt_gemm(lact_ctx *ctx, lact_dtype ab, lact_dtype cd, bool ta, bool tb,
                                   int64_t M, int64_t N, int64_t K, int64_t batch, const void *a,
                                   int64_t sa, const void *b, int64_t sb, void *c, int64_t sc,
                                   float alpha, float beta) {
    lact_gemm_desc g =
        lact_gemm_desc_make(a, b, c, ab, cd, ta, tb, M, N, K, batch, sa, sb, sc, alpha, beta);
    return lact_cuda_gemm(ctx, &g);
}

template <class T> struct ttt_dt;
template <> struct ttt_dt<float> { static const lact_dtype v = LACT_F32; };
template <> struct ttt_dt<bf16> { static const lact_dtype v = LACT_BF16; };

static const float ttt_ns_table[5][3] = {
    {4.0848f, -6.8946f, 2.9270f}, {3.9505f, -6.3029f, 2.6377f}, {3.7418f, -5.5913f, 2.3037f},
    {2.8769f, -3.1427f, 1.2046f}, {2.8366f, -3.0525f, 1.2012f},
};
static const float ttt_ns_fixed[3] = {3.4445f, -4.7750f, 2.0315f};

static inline const float *ttt_ns_coef(lact_ttt_muon muon, int step) {
    return muon == LACT_TTT_MUON_FIXED ? ttt_ns_fixed : ttt_ns_table[step];
}

template <class T> struct ttt_ns {
    lact_ctx *ctx;
    ttt_geom g;
    lact_ttt_muon muon;
    int64_t p, q; /* p = min(d, dh), q = max(d, dh) */
    int n_groups;
    int64_t first[2], count[2];
    bool tall[2];
    T *X[6];        /* iterates, 3N·nel each */
    T *A[5], *P[5]; /* per step, kept for the backward; 3N·p² each */
    T *Q, *R;
    T *dX[2];
    float *nnorm; /* 3N */
    float *acc;   /* 3N · TTT_NS_SLICES partial sums */

    void setup(lact_ctx *c, ttt_geom geom, lact_ttt_muon m) {
        ctx = c;
        g = geom;
        muon = m;
        p = g.d < g.dh ? g.d : g.dh;
        q = g.d < g.dh ? g.dh : g.d;
        if (g.d == g.dh) {
            n_groups = 1;
            first[0] = 0, count[0] = 3 * g.n, tall[0] = false;
        } else {
            n_groups = 2;
            first[0] = 0, count[0] = 2 * g.n, tall[0] = g.dh > g.d;   /* W0, W2 [dh, d] */
            first[1] = 2 * g.n, count[1] = g.n, tall[1] = g.d > g.dh; /* W1 [d, dh] */
        }
    }

    lact_dtype dt() const { return ttt_dt<T>::v; }
    /* c = alpha·op(a)·op(b) + beta·(add ? add : c). */
    lact_status gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, int64_t batch, const T *a,
                     int64_t sa, const T *b, int64_t sb, T *c, int64_t sc, float alpha, float beta,
                     const T *add = NULL) const {
        lact_gemm_desc gd = lact_gemm_desc_make(a, b, c, dt(), dt(), ta, tb, M, N, K, batch, sa, sb,
                                                sc, alpha, beta);
        gd.addend = add;
        return lact_cuda_gemm(ctx, &gd);
    }
    const T *mat(const T *base, int k) const { return base + first[k] * g.nel; }
    T *mat(T *base, int k) const { return base + first[k] * g.nel; }
    T *sq(T *base, int k) const { return base + first[k] * p * p; }

    /* A[s] = X Xᵀ (wide) or Yᵀ Y (tall), then P[s] = bA + cA²: the aI term
     * is added by times(), so no element-wise pass is needed. */
    lact_status poly(const T *Xs, int s) {
        const float *k = ttt_ns_coef(muon, s);
        T *As = A[s], *Ps = P[s];
        for (int j = 0; j < n_groups; j++)
            LACT_TRY(gemm(tall[j], !tall[j], p, p, q, count[j], mat(Xs, j), g.nel, mat(Xs, j),
                          g.nel, sq(As, j), p * p, 1.0f, 0.0f));
        return gemm(false, false, p, p, p, 3 * g.n, As, p * p, As, p * p, Ps, p * p, k[2], k[1],
                    As);
    }
    /* A[s] and P[s] of every step from iterates kept by forward(). */
    lact_status polys() {
        for (int s = 0; s < 5; s++)
            LACT_TRY(poly(X[s], s));
        return LACT_OK;
    }
    /* X[0] from u (master layout, fp32); ‖u‖_F into nnorm. With summed,
     * acc holds u's sums of squares already (mix()). */
    lact_status prepare(const float *u, bool summed = false) {
        cudaStream_t st = lact_cuda_stream(ctx);
        dim3 grid(TTT_NS_SLICES, (unsigned)(3 * g.n));
        const bool w = ttt_ns_words(g, u, X[0]);
        if (!summed) {
            if (w)
                ttt_ns_sumsq_kernel<true><<<grid, 256, 0, st>>>(g, u, acc);
            else
                ttt_ns_sumsq_kernel<false><<<grid, 256, 0, st>>>(g, u, acc);
            LACT_CU_LAUNCH("ttt_ns_sumsq");
        }
        if (w)
            ttt_ns_scale_kernel<T, true><<<grid, 256, 0, st>>>(g, u, acc, X[0], nnorm);
        else
            ttt_ns_scale_kernel<T, false><<<grid, 256, 0, st>>>(g, u, acc, X[0], nnorm);
        LACT_CU_LAUNCH("ttt_ns_scale");
        return LACT_OK;
    }

    /* u = beta[n] M + G (master layout; ms its T copy when given) with the
     * sums of squares prepare(u, true) takes: the momentum's mix and the
     * first pass of the normalisation in one. (The fused iteration
     * normalises u itself and takes the mix alone.) */
    lact_status mix(const float *beta, const float *M, const float *G, float *u, T *ms) {
        cudaStream_t st = lact_cuda_stream(ctx);
        dim3 grid(TTT_NS_SLICES, (unsigned)(3 * g.n));
        if (ttt_ns_words(g, u, M, G, ms))
            ttt_ns_mix_sumsq_kernel<T, true><<<grid, 256, 0, st>>>(g, beta, M, G, u, ms, acc);
        else
            ttt_ns_mix_sumsq_kernel<T, false><<<grid, 256, 0, st>>>(g, beta, M, G, u, ms, acc);
        LACT_CU_LAUNCH("ttt_ns_mix_sumsq");
        return LACT_OK;
    }

    /* From the adjoint of X[0] (steps_bwd), u as given to prepare: the
     * normalisation's backward dU, and on it the momentum's (beta, M, dM
     * as ttt_mom_bwd_kernel takes them; dU + dM to dGc in the master
     * layout, or with Bw given to the paired operands' dG), Σ dmu ⊙ M in
     * part: 3 · TTT_NS_SLICES parts a head for ttt_sum_parts_kernel. */
    template <class SW>
    lact_status prepare_bwd_mom(const float *u, const T *dx0, const float *beta, const SW *M,
                                float *dM, T *dGc, T *Bw, float *part) {
        cudaStream_t st = lact_cuda_stream(ctx);
        dim3 grid(TTT_NS_SLICES, (unsigned)(3 * g.n));
        LACT_TRY(dots(u, dx0));
        const bool rows = !Bw || (g.d % TTT_NS_V == 0 && g.dh % TTT_NS_V == 0);
        if (rows && ttt_ns_words(g, u, dx0, M, dM, dGc) && lact_aligned16(Bw))
            ttt_ns_unscale_mom_kernel<T, true, SW>
                <<<grid, 256, 0, st>>>(g, u, dx0, acc, nnorm, beta, M, dM, dGc, Bw, part);
        else
            ttt_ns_unscale_mom_kernel<T, false, SW>
                <<<grid, 256, 0, st>>>(g, u, dx0, acc, nnorm, beta, M, dM, dGc, Bw, part);
        LACT_CU_LAUNCH("ttt_ns_unscale_mom");
        return LACT_OK;
    }

    /* The partial dots <dX0, u> of the normalisation's backward. */
    lact_status dots(const float *u, const T *dx0) {
        cudaStream_t st = lact_cuda_stream(ctx);
        dim3 grid(TTT_NS_SLICES, (unsigned)(3 * g.n));
        if (ttt_ns_words(g, u, dx0))
            ttt_ns_dot_kernel<T, true><<<grid, 256, 0, st>>>(g, u, dx0, acc);
        else
            ttt_ns_dot_kernel<T, false><<<grid, 256, 0, st>>>(g, u, dx0, acc);
        LACT_CU_LAUNCH("ttt_ns_dot");
        return LACT_OK;
    }

    /* out = b·q + c·(s + sᵀ) over the 3N p × p matrices (ttt_ns_sym_kernel). */
    lact_status sym(const T *s, const T *q, T *out, float b, float c) {
        cudaStream_t st = lact_cuda_stream(ctx);
        if (p % 64 == 0 && lact_aligned16(s, q, out)) {
            const int64_t t = p / 64;
            ttt_ns_sym64_kernel<T>
                <<<dim3((unsigned)(t * t), (unsigned)(3 * g.n)), 256, 0, st>>>(p, s, q, out, b, c);
        } else {
            const int64_t t = (p + TTT_NS_SYM_TILE - 1) / TTT_NS_SYM_TILE;
            ttt_ns_sym_kernel<T>
                <<<dim3((unsigned)(t * t), (unsigned)(3 * g.n)), dim3(32, 8), 0, st>>>(p, s, q, out,
                                                                                       b, c);
        }
        LACT_CU_LAUNCH("ttt_ns_sym");
        return LACT_OK;
    }

    /* out = P·X (wide) or Y·P (tall), plus beta·add (beta·out without add):
     * with add = X and beta = a that is (aI + P)·X. */
    lact_status times(const T *Pm, const T *Xs, T *out, float beta, const T *add) {
        for (int k = 0; k < n_groups; k++) {
            const T *ak = add ? mat(add, k) : NULL;
            if (!tall[k])
                LACT_TRY(gemm(false, false, p, q, p, count[k], sq((T *)Pm, k), p * p, mat(Xs, k),
                              g.nel, mat(out, k), g.nel, 1.0f, beta, ak));
            else
                LACT_TRY(gemm(false, false, q, p, p, count[k], mat(Xs, k), g.nel, sq((T *)Pm, k),
                              p * p, mat(out, k), g.nel, 1.0f, beta, ak));
        }
        return LACT_OK;
    }

    bool fused() const { return ttt_dt<T>::v == LACT_BF16 && ttt_ns_fused_fits(p, q); }

    nsf_args fused_args(bool keep) const {
        nsf_args a;
        memset(&a, 0, sizeof a);
        for (int i = 0; i < 6; i++)
            a.x[i] = (bf16 *)X[i];
        for (int i = 0; i < 5; i++) {
            a.a[i] = (bf16 *)A[i], a.pm[i] = (bf16 *)P[i];
            memcpy(a.coef[i], ttt_ns_coef(muon, i), sizeof a.coef[i]);
        }
        a.p = (int)p, a.q = (int)q, a.count = (int)(3 * g.n);
        a.split = (int)count[0], a.tall0 = tall[0], a.tall1 = n_groups > 1 ? tall[1] : tall[0];
        a.keep = keep;
        a.nnorm = nnorm, a.eps = TTT_NS_EPS;
        return a;
    }

    /* X[5] from u (master layout, fp32) normalised; with keep, also what
     * the backward needs (X[0..4], A[s], P[s], nnorm). */
    lact_status forward(const float *u, bool keep = true, bool summed = false) {
        if (fused()) {
            nsf_args a = fused_args(keep);
            a.u = u;
            return ttt_ns_fused_forward(ctx, &a);
        }
        LACT_TRY(prepare(u, summed));
        for (int s = 0; s < 5; s++) {
            LACT_TRY(poly(X[s], s));
            LACT_TRY(times(P[s], X[s], X[s + 1], ttt_ns_coef(muon, s)[0], X[s]));
        }
        return LACT_OK;
    }

    /* The fused iteration's backward (fused() only): from dX[0] = adjoint
     * of X[5], right after forward(u) with keep, dU (master layout), the
     * adjoint of u. The batched iteration takes steps_bwd and
     * prepare_bwd_mom instead. */
    lact_status fused_backward(const float *u, float *dU) {
        nsf_args a = fused_args(true);
        a.u = u, a.g_in = (const bf16 *)dX[0], a.du = dU;
        return ttt_ns_fused_backward(ctx, &a);
    }

    /* The batched iteration's backward up to the adjoint of X[0] (in *dx0,
     * one of dX), from dX[0] = adjoint of X[5], right after forward(u)
     * with keep. */
    lact_status steps_bwd(const T **dx0) {
        int cur = 0;
        for (int s = 4; s >= 0; s--) {
            const float *k = ttt_ns_coef(muon, s);
            const T *Xs = X[s];
            T *dXo = dX[cur], *dXn = dX[1 - cur], *As = A[s], *Ps = P[s];
            /* dP = dX' Xᵀ (wide; dY'ᵀ Y tall) into R, then Q = dP + dPᵀ */
            for (int j = 0; j < n_groups; j++) {
                bool t = tall[j];
                LACT_TRY(gemm(t, !t, p, p, q, count[j], mat(dXo, j), g.nel, mat(Xs, j), g.nel,
                              sq(R, j), p * p, 1.0f, 0.0f));
            }
            LACT_TRY(sym(R, NULL, Q, 0.0f, 1.0f));
            /* R = b Q + c (QA + AQ), the symmetrised adjoint of A, with
             * AQ = (QA)ᵀ as both are symmetric */
            LACT_TRY(
                gemm(false, false, p, p, p, 3 * g.n, Q, p * p, As, p * p, R, p * p, 1.0f, 0.0f));
            LACT_TRY(sym(R, Q, R, k[1], k[2]));
            /* dX = (aI + P)·dX' + R·X (P and R symmetric) */
            LACT_TRY(times(Ps, dXo, dXn, k[0], dXo));
            LACT_TRY(times(R, Xs, dXn, 1.0f, NULL));
            cur = 1 - cur;
        }
        *dx0 = dX[cur];
        return LACT_OK;
    }
};

#endif
