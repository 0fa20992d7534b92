/* The generic mesa stages: CUDA-core kernels in fp32 for any head dim and
 * chunk, one block per item (or per head and state tile for the scans),
 * with the per-item intermediates in the call's device workspace. They
 * follow the CPU reference operation for operation where it is chunkwise
 * (the CG, its divisions and ε), and the formulas of docs/mesa.md for the
 * chunkwise backward. Loads of the activation dtype and of the state type
 * go through ld(), so the same kernels serve F32 and BF16 inputs and fp32
 * or bf16 states. */
#include "kernels/cuda/mesa_common.cuh"

#define GEN_THREADS 256

/* ---- per-token scalars ------------------------------------------------------- */

template <class T>
__global__ void prep_kernel(mesa_geom G, const T *g, const T *beta, mesa_tok tok) {
    for (int64_t n = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; n < G.items;
         n += (int64_t)gridDim.x * blockDim.x) {
        mesa_item it = mesa_item_of(G, n);
        float acc = 0.0f;
        for (int64_t i = 0; i < it.T; i++) {
            int64_t t = it.row + i;
            acc += ld(g, t);
            tok.lc[t] = acc;
            tok.gm[t] = expf(acc);
            tok.bt[t] = ld(beta, t);
        }
        for (int64_t i = 0; i < it.T; i++) {
            int64_t t = it.row + i;
            tok.wf[t] = expf(acc - tok.lc[t]) * tok.bt[t];
        }
    }
}

lact_status mesa_prep(lact_ctx *ctx, const mesa_geom &G, lact_dtype act, const void *g,
                      const void *beta, const mesa_tok &tok) {
    cudaStream_t st = lact_cuda_stream(ctx);
    unsigned grid = lact_grid_1d(G.items, 128);
    if (act == LACT_BF16)
        prep_kernel<<<grid, 128, 0, st>>>(G, (const bf16 *)g, (const bf16 *)beta, tok);
    else
        prep_kernel<<<grid, 128, 0, st>>>(G, (const float *)g, (const float *)beta, tok);
    LACT_CU_LAUNCH("mesa_prep");
    return LACT_OK;
}

/* ---- scans over chunks ----------------------------------------------------- */

/* One thread per element e = (a, b) of one head's d×d state. Forward:
 * out[c] = S, then S = γ̄_{T−1} S + Σ_j w_j A[j][a] B[j][b] over the chunks
 * in order; reverse: the same from the last chunk down. last (optional)
 * gets the final S, transposed when last_t. */
template <class TA, class TB, class S, bool REV>
__global__ void scan_kernel(mesa_geom G, const TA *A, const TB *B, const float *w, float sgn,
                            const float *gm, S *out, float *last, bool last_t) {
    int64_t bh = blockIdx.x, d = G.d, dd = d * d;
    int64_t e = (int64_t)blockIdx.y * blockDim.x + threadIdx.x;
    if (e >= dd) return;
    int64_t a = e / d, b = e % d;
    float s = 0.0f;
    for (int64_t cc = 0; cc < G.nc; cc++) {
        int64_t c = REV ? G.nc - 1 - cc : cc;
        mesa_item it = mesa_item_of(G, bh * G.nc + c);
        st(out, (bh * G.nc + c) * dd + e, s);
        float acc = 0.0f;
        for (int64_t j = 0; j < it.T; j++) {
            int64_t t = it.row + j;
            acc += w[t] * ld(A, t * d + a) * ld(B, t * d + b);
        }
        s = gm[it.row + it.T - 1] * s + sgn * acc;
    }
    if (last) last[bh * dd + (last_t ? b * d + a : e)] = s;
}

template <class TA, class TB, class S, bool REV>
static lact_status scan(lact_ctx *ctx, const mesa_geom &G, const TA *A, const TB *B, const float *w,
                        float sgn, const float *gm, S *out, float *last, bool last_t) {
    dim3 grid((unsigned)G.bh, (unsigned)((G.d * G.d + GEN_THREADS - 1) / GEN_THREADS));
    scan_kernel<TA, TB, S, REV>
        <<<grid, GEN_THREADS, 0, lact_cuda_stream(ctx)>>>(G, A, B, w, sgn, gm, out, last, last_t);
    LACT_CU_LAUNCH("mesa_scan");
    return LACT_OK;
}

template <class T, class S>
static lact_status gen_states_t(lact_ctx *ctx, const mesa_geom &G, const void *k, const void *v,
                                const mesa_tok &tok, void *Hs, void *Gt, float *h_last,
                                float *g_last) {
    const T *kk = (const T *)k, *vv = (const T *)v;
    LACT_TRY((scan<T, T, S, false>(ctx, G, kk, kk, tok.wf, 1.0f, tok.gm, (S *)Hs, h_last, false)));
    return scan<T, T, S, false>(ctx, G, kk, vv, tok.wf, 1.0f, tok.gm, (S *)Gt, g_last, true);
}

lact_status mesa_gen_states(lact_ctx *ctx, const mesa_geom &G, lact_dtype act, bool bf,
                            const void *k, const void *v, const mesa_tok &tok, void *Hs, void *Gt,
                            float *h_last, float *g_last) {
    if (act == LACT_BF16)
        return bf ? gen_states_t<bf16, bf16>(ctx, G, k, v, tok, Hs, Gt, h_last, g_last)
                  : gen_states_t<bf16, float>(ctx, G, k, v, tok, Hs, Gt, h_last, g_last);
    return gen_states_t<float, float>(ctx, G, k, v, tok, Hs, Gt, h_last, g_last);
}

template <class T, class S>
static lact_status gen_adjoints_t(lact_ctx *ctx, const mesa_geom &G, const void *y, const void *d_o,
                                  const void *x, const mesa_tok &tok, void *dH, void *dG) {
    const S *yy = (const S *)y, *xx = (const S *)x;
    LACT_TRY((scan<S, S, S, true>(ctx, G, yy, xx, tok.gm, -1.0f, tok.gm, (S *)dH, NULL, false)));
    return scan<T, S, S, true>(ctx, G, (const T *)d_o, xx, tok.gm, 1.0f, tok.gm, (S *)dG, NULL,
                               false);
}

lact_status mesa_gen_adjoints(lact_ctx *ctx, const mesa_geom &G, lact_dtype act, bool bf,
                              const void *y, const void *d_o, const void *x, const mesa_tok &tok,
                              void *dH, void *dG) {
    if (act == LACT_BF16)
        return bf ? gen_adjoints_t<bf16, bf16>(ctx, G, y, d_o, x, tok, dH, dG)
                  : gen_adjoints_t<bf16, float>(ctx, G, y, d_o, x, tok, dH, dG);
    return gen_adjoints_t<float, float>(ctx, G, y, d_o, x, tok, dH, dG);
}

/* ---- one item's products ---------------------------------------------------- */

/* The view of one item that every generic per-item kernel starts from. */
struct gen_item {
    mesa_item it;
    int64_t n, d, T, C;
    const float *lc, *bt, *gm;

    __device__ gen_item(const mesa_geom &G, const mesa_tok &tok, int64_t n_) {
        n = n_;
        it = mesa_item_of(G, n);
        d = G.d, T = it.T, C = G.chunk;
        lc = tok.lc + it.row, bt = tok.bt + it.row, gm = tok.gm + it.row;
    }
    /* D_ij = exp(ℓ_i − ℓ_j) β_j for j ≤ i, else 0. */
    __device__ float dm(int64_t i, int64_t j) const {
        return j <= i ? expf(lc[i] - lc[j]) * bt[j] : 0.0f;
    }
};

/* sm[i][j] = D_ij (P_i · Q_j) for the item's rows (P, Q row pointers). */
template <class TP, class TQ>
__device__ void gen_smat(const gen_item &I, const TP *P, const TQ *Q, float *sm) {
    for (int64_t idx = threadIdx.x; idx < I.T * I.T; idx += blockDim.x) {
        int64_t i = idx / I.T, j = idx % I.T;
        float s = 0.0f;
        if (j <= i) {
            for (int64_t e = 0; e < I.d; e++)
                s += ld(P, i * I.d + e) * ld(Q, j * I.d + e);
            s *= I.dm(i, j);
        }
        sm[idx] = s;
    }
}

/* out_i = γ̄_i M(P_i) + Σ_j sm[i][j] R_j + λ ⊙ P_i, where M(p)[b] =
 * Σ_a p[a] st[a][b] (st_t: Σ_a p[a] st[b][a]); lam NULL: no λ term. */
template <class TP, class S, class TR>
__device__ void gen_combine(const gen_item &I, const TP *P, const S *stt, bool st_t,
                            const float *sm, const TR *R, const float *lam, float *out) {
    int64_t d = I.d;
    for (int64_t idx = threadIdx.x; idx < I.T * d; idx += blockDim.x) {
        int64_t i = idx / d, b = idx % d;
        float acc = 0.0f;
        for (int64_t a = 0; a < d; a++)
            acc += ld(P, i * d + a) * ld(stt, st_t ? b * d + a : a * d + b);
        acc *= I.gm[i];
        for (int64_t j = 0; j <= i; j++)
            acc += sm[i * I.T + j] * ld(R, j * d + b);
        if (lam) acc += lam[b] * ld(P, idx);
        out[idx] = acc;
    }
}

/* ---- the CG solve ------------------------------------------------------------ */

template <class TV, class S, int MODE>
__global__ void __launch_bounds__(GEN_THREADS)
    gen_solve_kernel(mesa_geom G, mesa_tok tok, mesa_solve_io io) {
    gen_item I(G, tok, blockIdx.x);
    int64_t d = I.d, row0 = I.it.row * d, T = I.T;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const TV *K = (const TV *)io.k + row0, *V = (const TV *)io.v + row0;
    const S *Hs = (const S *)io.Hs + I.n * d * d, *Gt = (const S *)io.Gt + I.n * d * d;
    const float *lam = io.lambda + (I.it.bh % G.h) * d;
    float *r = io.r + row0, *p = io.p + row0, *ap = io.ap + row0, *sm = io.s + I.n * I.C * I.C;
    float *rr = io.rr + I.it.row;
    float *x = MODE == MESA_SOLVE_RESID ? (float *)io.x_in + row0 : io.x + row0;

    if (MODE == MESA_SOLVE_ADJ) {
        /* u_i = γ̄_i G0ᵀ d_o_i + Σ_j D_ij (d_o_i · v_j) k_j */
        const TV *dO = (const TV *)io.d_o + row0;
        gen_smat(I, dO, V, sm);
        __syncthreads();
        gen_combine(I, dO, Gt, true, sm, K, (const float *)NULL, r);
    } else if (MODE != MESA_SOLVE_RESID) {
        const TV *Q = (const TV *)io.q + row0;
        for (int64_t idx = threadIdx.x; idx < T * d; idx += blockDim.x)
            r[idx] = ld(Q, idx);
    }
    __syncthreads();

    if (MODE != MESA_SOLVE_RESID) {
        for (int64_t i = warp; i < T; i += nw) {
            float s = 0.0f;
            for (int64_t e = lane; e < d; e += 32) {
                float v = r[i * d + e];
                p[i * d + e] = v;
                x[i * d + e] = 0.0f;
                s += v * v;
            }
            s = warp_sum(s);
            if (lane == 0) rr[i] = s;
        }
        __syncthreads();
        for (int step = 0; step < G.steps; step++) {
            gen_smat(I, p, K, sm);
            __syncthreads();
            gen_combine(I, p, Hs, false, sm, K, lam, ap);
            __syncthreads();
            for (int64_t i = warp; i < T; i += nw) {
                float *xi = x + i * d, *ri = r + i * d, *pi = p + i * d;
                const float *api = ap + i * d;
                float pap = 0.0f;
                for (int64_t e = lane; e < d; e += 32)
                    pap += pi[e] * api[e];
                pap = warp_sum(pap);
                float alpha = rr[i] / (pap + MESA_CG_EPS), rn = 0.0f;
                for (int64_t e = lane; e < d; e += 32) {
                    xi[e] += alpha * pi[e];
                    ri[e] -= alpha * api[e];
                    rn += ri[e] * ri[e];
                }
                rn = warp_sum(rn);
                float bt = rn / (rr[i] + MESA_CG_EPS);
                for (int64_t e = lane; e < d; e += 32)
                    pi[e] = ri[e] + bt * pi[e];
                __syncwarp();
                if (lane == 0) rr[i] = rn;
            }
            __syncthreads();
        }
    }

    if (MODE == MESA_SOLVE_FWD) {
        /* o_i = γ̄_i G0 x_i + Σ_j D_ij (k_j · x_i) v_j */
        gen_smat(I, x, K, sm);
        __syncthreads();
        gen_combine(I, x, Gt, false, sm, V, (const float *)NULL, ap);
        __syncthreads();
        TV *o = (TV *)io.o + row0;
        for (int64_t idx = threadIdx.x; idx < T * d; idx += blockDim.x)
            st(o, idx, ap[idx]);
        __syncthreads();
    }
    if (io.x_act && MODE == MESA_SOLVE_FWD) {
        TV *xa = (TV *)io.x_act + row0;
        for (int64_t idx = threadIdx.x; idx < T * d; idx += blockDim.x)
            st(xa, idx, x[idx]);
    }
    if (io.x_out && MODE != MESA_SOLVE_RESID) {
        S *xo = (S *)io.x_out + row0;
        for (int64_t idx = threadIdx.x; idx < T * d; idx += blockDim.x)
            st(xo, idx, x[idx]);
    }
    if (io.resid && (MODE == MESA_SOLVE_FWD || MODE == MESA_SOLVE_RESID)) {
        gen_smat(I, x, K, sm);
        __syncthreads();
        gen_combine(I, x, Hs, false, sm, K, lam, ap);
        __syncthreads();
        const TV *Q = (const TV *)io.q + row0;
        for (int64_t i = warp; i < T; i += nw) {
            float num = 0.0f, den = 0.0f;
            for (int64_t e = lane; e < d; e += 32) {
                float q = ld(Q, i * d + e), df = q - ap[i * d + e];
                num += df * df;
                den += q * q;
            }
            num = warp_sum(num);
            den = warp_sum(den);
            if (lane == 0 && den > 0.0f) {
                float rel = sqrtf(num / den);
                /* non-negative floats order like their bit patterns */
                atomicMax((int *)io.resid, __float_as_int(rel));
            }
        }
    }
}

template <class T, class S>
static lact_status gen_solve_t(lact_ctx *ctx, const mesa_geom &G, mesa_solve_mode mode,
                               const mesa_tok &tok, const mesa_solve_io &io) {
    cudaStream_t st = lact_cuda_stream(ctx);
    unsigned grid = (unsigned)G.items;
    switch (mode) {
    case MESA_SOLVE_FWD:
        gen_solve_kernel<T, S, MESA_SOLVE_FWD><<<grid, GEN_THREADS, 0, st>>>(G, tok, io);
        break;
    case MESA_SOLVE_X:
        gen_solve_kernel<T, S, MESA_SOLVE_X><<<grid, GEN_THREADS, 0, st>>>(G, tok, io);
        break;
    case MESA_SOLVE_ADJ:
        gen_solve_kernel<T, S, MESA_SOLVE_ADJ><<<grid, GEN_THREADS, 0, st>>>(G, tok, io);
        break;
    case MESA_SOLVE_RESID:
        gen_solve_kernel<T, S, MESA_SOLVE_RESID><<<grid, GEN_THREADS, 0, st>>>(G, tok, io);
        break;
    }
    LACT_CU_LAUNCH("mesa_gen_solve");
    return LACT_OK;
}

lact_status mesa_gen_solve(lact_ctx *ctx, const mesa_geom &G, lact_dtype act, bool bf,
                           mesa_solve_mode mode, const mesa_tok &tok, const mesa_solve_io &io) {
    if (G.items > 0x7fffffff)
        return lact_fail(LACT_E_UNSUPPORTED, "mesa: %lld chunks exceed one CUDA grid",
                         (long long)G.items);
    if (act == LACT_BF16)
        return bf ? gen_solve_t<bf16, bf16>(ctx, G, mode, tok, io)
                  : gen_solve_t<bf16, float>(ctx, G, mode, tok, io);
    return gen_solve_t<float, float>(ctx, G, mode, tok, io);
}

/* ---- gradients per item -------------------------------------------------------- */

/* With M_tj = exp(ℓ_t − ℓ_j) (j ≤ t), E = M ⊙ X Kᵀ, F = M ⊙ Y Kᵀ,
 * Gm = M ⊙ d_O Vᵀ, w'_j = exp(ℓ_{T−1} − ℓ_j) and dH, dG the adjoints after
 * the chunk:
 *   a_j = w'_j dH k_j − (Eᵀ Y)_j           (= H̄_j k_j)
 *   b_j = w'_j dG k_j + (Eᵀ d_O)_j         (= Ḡ_j k_j)
 *   c_j = w'_j (dHᵀ k_j + dGᵀ v_j) + ((Gm − F)ᵀ X)_j
 *   d_k = β (a + c),  d_v = β b,  d_β_j = k_j·a_j + v_j·b_j
 * and the derivative wrt ℓ_t (then d_g by a reverse cumulative sum):
 *   Z_tj = D_tj (x_t·k_j)(d_o_t·v_j − y_t·k_j):  +Σ_j Z_tj − Σ_s Z_st
 *   γ̄_t (d_o_t·G0 x_t − y_t·H0 x_t)
 *   s_j = w'_j β_j (k_jᵀ dH k_j + v_jᵀ dG k_j):  −s_t, and Σ_j s_j at T−1
 *   γ̄_{T−1} (⟨dH, H0⟩ + ⟨dG, G0⟩) at T−1. */
template <class TV, class S>
__global__ void __launch_bounds__(GEN_THREADS)
    gen_grads_kernel(mesa_geom G, mesa_tok tok, mesa_grad_io io) {
    __shared__ float red[32];
    gen_item I(G, tok, blockIdx.x);
    int64_t d = I.d, row0 = I.it.row * d, T = I.T, dd = d * d;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const TV *K = (const TV *)io.k + row0, *V = (const TV *)io.v + row0;
    const TV *dO = (const TV *)io.d_o + row0;
    const S *X = (const S *)io.x + row0, *Y = (const S *)io.y + row0;
    const S *Hs = (const S *)io.Hs + I.n * dd, *Gt = (const S *)io.Gt + I.n * dd;
    const S *dH = (const S *)io.dH + I.n * dd, *dG = (const S *)io.dG + I.n * dd;
    float *et = io.et + I.n * I.C * I.C, *gft = io.gft + I.n * I.C * I.C;
    float *zt = io.zt + I.n * I.C * I.C;
    float *dl = io.dl + I.it.row, *sv = io.sv + I.it.row;
    float lT = I.lc[T - 1];

    /* transposed [j][t] pair matrices */
    for (int64_t idx = threadIdx.x; idx < T * T; idx += blockDim.x) {
        int64_t j = idx / T, t = idx % T;
        float e = 0.0f, gf = 0.0f, z = 0.0f;
        if (t >= j) {
            float xk = 0.0f, yk = 0.0f, dv = 0.0f;
            for (int64_t c = 0; c < d; c++) {
                float kc = ld(K, j * d + c);
                xk += ld(X, t * d + c) * kc;
                yk += ld(Y, t * d + c) * kc;
                dv += ld(dO, t * d + c) * ld(V, j * d + c);
            }
            float m = expf(I.lc[t] - I.lc[j]);
            e = m * xk;
            gf = m * (dv - yk);
            z = e * I.bt[j] * (dv - yk);
        }
        et[idx] = e;
        gft[idx] = gf;
        zt[idx] = z;
    }
    __syncthreads();

    for (int64_t j = warp; j < T; j += nw) {
        float wp = expf(lT - I.lc[j]), bj = I.bt[j];
        float db = 0.0f, sd = 0.0f;
        for (int64_t e = lane; e < d; e += 32) {
            float khT = 0.0f, kgT = 0.0f, kh = 0.0f, vg = 0.0f;
            for (int64_t c = 0; c < d; c++) {
                float kc = ld(K, j * d + c);
                khT += kc * ld(dH, e * d + c);
                kgT += kc * ld(dG, e * d + c);
                kh += kc * ld(dH, c * d + e);
                vg += ld(V, j * d + c) * ld(dG, c * d + e);
            }
            float ey = 0.0f, edo = 0.0f, gfx = 0.0f;
            for (int64_t t = j; t < T; t++) {
                float ejt = et[j * T + t];
                ey += ejt * ld(Y, t * d + e);
                edo += ejt * ld(dO, t * d + e);
                gfx += gft[j * T + t] * ld(X, t * d + e);
            }
            float a = wp * khT - ey, b = wp * kgT + edo, c = gfx + wp * (kh + vg);
            float ke = ld(K, j * d + e), ve = ld(V, j * d + e);
            if (io.dk) st((TV *)io.dk + row0, j * d + e, bj * (a + c));
            if (io.dv) st((TV *)io.dv + row0, j * d + e, bj * b);
            db += ke * a + ve * b;
            sd += ke * khT + ve * kgT;
        }
        db = warp_sum(db);
        sd = warp_sum(sd);
        /* the ℓ_j terms of row j */
        float zr = 0.0f, zc = 0.0f;
        for (int64_t s = lane; s < T; s += 32) {
            zr += zt[s * T + j]; /* Σ_s Z_js: column j of Zᵀ */
            zc += zt[j * T + s]; /* Σ_t Z_tj: row j of Zᵀ */
        }
        zr = warp_sum(zr);
        zc = warp_sum(zc);
        float hx = 0.0f;
        for (int64_t b = lane; b < d; b += 32) {
            float xh = 0.0f, xg = 0.0f;
            for (int64_t a = 0; a < d; a++) {
                float xa = ld(X, j * d + a);
                xh += xa * ld(Hs, a * d + b);
                xg += xa * ld(Gt, a * d + b);
            }
            hx += ld(dO, j * d + b) * xg - ld(Y, j * d + b) * xh;
        }
        hx = warp_sum(hx);
        if (lane == 0) {
            if (io.dbeta) st((TV *)io.dbeta, I.it.row + j, db);
            float s = wp * bj * sd;
            sv[j] = s;
            dl[j] = zr - zc + I.gm[j] * hx - s;
        }
    }
    float ip = 0.0f;
    for (int64_t e = threadIdx.x; e < dd; e += blockDim.x) {
        int64_t a = e / d, b = e % d;
        ip += ld(dH, e) * ld(Hs, e) + ld(dG, e) * ld(Gt, b * d + a);
    }
    ip = block_sum(ip, red);
    __syncthreads();
    if (threadIdx.x == 0 && io.dg) {
        float ssum = 0.0f;
        for (int64_t j = 0; j < T; j++)
            ssum += sv[j];
        float acc = ssum + I.gm[T - 1] * ip;
        for (int64_t t = T - 1; t >= 0; t--) {
            acc += dl[t];
            st((TV *)io.dg, I.it.row + t, acc);
        }
    }
}

lact_status mesa_gen_grads(lact_ctx *ctx, const mesa_geom &G, lact_dtype act, bool bf,
                           const mesa_tok &tok, const mesa_grad_io &io) {
    cudaStream_t st = lact_cuda_stream(ctx);
    unsigned grid = (unsigned)G.items;
    if (act == LACT_BF16) {
        if (bf)
            gen_grads_kernel<bf16, bf16><<<grid, GEN_THREADS, 0, st>>>(G, tok, io);
        else
            gen_grads_kernel<bf16, float><<<grid, GEN_THREADS, 0, st>>>(G, tok, io);
    } else {
        gen_grads_kernel<float, float><<<grid, GEN_THREADS, 0, st>>>(G, tok, io);
    }
    LACT_CU_LAUNCH("mesa_gen_grads");
    return LACT_OK;
}

/* ---- d_lambda and conversions ------------------------------------------------- */

template <class S> struct dlam_term {
    const S *x, *y;
    int64_t h, len, d;
    __device__ float operator()(int64_t r, int64_t c) const {
        int64_t b = r / len, l = r % len, hh = c / d, e = c % d;
        int64_t i = ((b * h + hh) * len + l) * d + e;
        return -ld(y, i) * ld(x, i);
    }
};

lact_status mesa_dlambda(lact_ctx *ctx, const mesa_geom &G, bool bf, const void *x, const void *y,
                         float *d_lambda) {
    if (bf) {
        dlam_term<bf16> f = {(const bf16 *)x, (const bf16 *)y, G.h, G.len, G.d};
        return lact_col_reduce(ctx, f, G.b * G.len, G.h * G.d, d_lambda);
    }
    dlam_term<float> f = {(const float *)x, (const float *)y, G.h, G.len, G.d};
    return lact_col_reduce(ctx, f, G.b * G.len, G.h * G.d, d_lambda);
}

template <class TD, class TS> __global__ void convert_kernel(TD *dst, const TS *src, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        st(dst, i, ld(src, i));
}

lact_status mesa_convert(lact_ctx *ctx, lact_dtype dst_dt, void *dst, lact_dtype src_dt,
                         const void *src, int64_t n) {
    cudaStream_t st = lact_cuda_stream(ctx);
    unsigned grid = lact_grid_1d(n, 256);
    bool db = dst_dt == LACT_BF16, sb = src_dt == LACT_BF16;
    if (db && sb)
        convert_kernel<<<grid, 256, 0, st>>>((bf16 *)dst, (const bf16 *)src, n);
    else if (db)
        convert_kernel<<<grid, 256, 0, st>>>((bf16 *)dst, (const float *)src, n);
    else if (sb)
        convert_kernel<<<grid, 256, 0, st>>>((float *)dst, (const bf16 *)src, n);
    else
        convert_kernel<<<grid, 256, 0, st>>>((float *)dst, (const float *)src, n);
    LACT_CU_LAUNCH("mesa_convert");
    return LACT_OK;
}
