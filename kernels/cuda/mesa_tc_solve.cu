/* The CG solves on tensor cores: one block of 8 warps per item runs every
 * CG step of its 64 tokens on chip. Each warp owns d/8 columns of the
 * [64, d] iterates x, r, p (fp32 registers) and one 8-column slice of the
 * [64, 64] in-chunk matrix S; the operands that stay fixed across steps
 * (its columns of H0, its 8 keys) live in registers as mma B fragments, p
 * and S go through shared memory as bf16. One operator application
 *   A p = γ̄ ⊙ (P H0) + (D ⊙ P Kᵀ) K + λ ⊙ p
 * is three m16n8k16 products per warp; the per-row dot products combine
 * the 8 warps' partial sums in a fixed order (deterministic).
 *
 * p is rounded to bf16 where it is formed, and x moves along the rounded p,
 * so x and the recursively updated r stay consistent with the operator
 * the tensor cores apply. The same routine forms the output
 * o = γ̄ ⊙ (X Gt) + (D ⊙ X Kᵀ) V and the adjoint right-hand side
 * u = γ̄ ⊙ (d_O Gtᵀ) + (D ⊙ d_O Vᵀ) K. */
#include "kernels/cuda/mesa_tc.cuh"

#define TC_THREADS 256
#define SLD 72 /* stride of the [64, 64] tiles */

template <int DH> struct tc_shape {
    static constexpr int NW = DH / 8;  /* columns per warp */
    static constexpr int NT = NW / 8;  /* n-tiles per warp */
    static constexpr int KS = DH / 16; /* k-steps over d */
    static constexpr int LD = DH + 8;  /* stride of [64, d] tiles */
};

/* B fragments of a matrix stored [n][k] (row-major d×d at m): columns
 * n0 + nt·8 + g, k = ks·16 + 2t (+8). */
template <int DH>
static __device__ __forceinline__ void load_b_nk(uint32_t b[][tc_shape<DH>::NT][2], const bf16 *m,
                                                 int d, int n0, int g, int t) {
#pragma unroll
    for (int ks = 0; ks < tc_shape<DH>::KS; ks++)
#pragma unroll
        for (int nt = 0; nt < tc_shape<DH>::NT; nt++) {
            int n = n0 + nt * 8 + g, k = ks * 16 + 2 * t;
            b[ks][nt][0] = ld_pair(m + (int64_t)n * d + k, n < d && k < d);
            b[ks][nt][1] = ld_pair(m + (int64_t)n * d + k + 8, n < d && k + 8 < d);
        }
}

/* B fragments of a matrix stored [k][n]. */
template <int DH>
static __device__ __forceinline__ void load_b_kn(uint32_t b[][tc_shape<DH>::NT][2], const bf16 *m,
                                                 int d, int n0, int g, int t) {
#pragma unroll
    for (int ks = 0; ks < tc_shape<DH>::KS; ks++)
#pragma unroll
        for (int nt = 0; nt < tc_shape<DH>::NT; nt++) {
            int n = n0 + nt * 8 + g, k = ks * 16 + 2 * t;
            b[ks][nt][0] = ld_pair_strided(m + (int64_t)k * d + n, d, n < d && k < d);
            b[ks][nt][1] = ld_pair_strided(m + (int64_t)(k + 8) * d + n, d, n < d && k + 8 < d);
        }
}

/* B fragments of Rᵀ for R the item's rows [T, d]: token columns
 * j = w·8 + g, k = channel. */
template <int DH>
static __device__ __forceinline__ void load_s_frag(uint32_t s[][2], const bf16 *rows, int T, int d,
                                                   int w, int g, int t) {
    int j = w * 8 + g;
#pragma unroll
    for (int ks = 0; ks < tc_shape<DH>::KS; ks++) {
        int k = ks * 16 + 2 * t;
        s[ks][0] = ld_pair(rows + (int64_t)j * d + k, j < T && k < d);
        s[ks][1] = ld_pair(rows + (int64_t)j * d + k + 8, j < T && k + 8 < d);
    }
}

/* acc = γ̄ ⊙ (A B) + (D ⊙ A Sᵀ) R for A [64, d] in shared memory, B and Sᵀ
 * as register fragments, R [64, d] in shared memory. Ss is overwritten;
 * the caller makes sure no warp still reads it, and that A and R are
 * complete. One barrier inside. */
template <int DH>
static __device__ __forceinline__ void
tc_apply(float acc[4][tc_shape<DH>::NT][4], const bf16 *As,
         const uint32_t bfr[][tc_shape<DH>::NT][2], const uint32_t sfr[][2], const bf16 *R,
         bf16 *Ss, const float *Dm, const float *gam, int w, int lane) {
    typedef tc_shape<DH> S;
    const int g = lane >> 2, t = lane & 3;
    float sacc[4][4];
#pragma unroll
    for (int mt = 0; mt < 4; mt++) {
#pragma unroll
        for (int e = 0; e < 4; e++)
            sacc[mt][e] = 0.0f;
#pragma unroll
        for (int nt = 0; nt < S::NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[mt][nt][e] = 0.0f;
    }
#pragma unroll
    for (int ks = 0; ks < S::KS; ks++)
#pragma unroll
        for (int mt = 0; mt < 4; mt++) {
            uint32_t a[4];
            frag_a<DH>(a, As + mt * 16 * S::LD, ks * 16, lane);
            mma_bf16(sacc[mt], a, sfr[ks][0], sfr[ks][1]);
#pragma unroll
            for (int nt = 0; nt < S::NT; nt++)
                mma_bf16(acc[mt][nt], a, bfr[ks][nt][0], bfr[ks][nt][1]);
        }
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int row = mt * 16 + g + 8 * h, col = w * 8 + 2 * t;
            float2 dm = *reinterpret_cast<const float2 *>(Dm + row * SLD + col);
            *reinterpret_cast<uint32_t *>(Ss + row * SLD + col) =
                pack_bf16(sacc[mt][2 * h] * dm.x, sacc[mt][2 * h + 1] * dm.y);
            float gr = gam[row];
#pragma unroll
            for (int nt = 0; nt < S::NT; nt++) {
                acc[mt][nt][2 * h] *= gr;
                acc[mt][nt][2 * h + 1] *= gr;
            }
        }
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < 4; ks++) {
        uint32_t b[4];
        frag_b_kn<DH>(b, R, ks * 16, w * S::NW, lane);
#pragma unroll
        for (int mt = 0; mt < 4; mt++) {
            uint32_t a[4];
            frag_a<64>(a, Ss + mt * 16 * SLD, ks * 16, lane);
            mma_bf16(acc[mt][0], a, b[0], b[1]);
            if (S::NT == 2) mma_bf16(acc[mt][S::NT - 1], a, b[2], b[3]);
        }
    }
}

/* One CG step's per-row sums: each thread's rows (mt·16 + g + 8h) after a
 * quad reduction go to red [8 warps][64 rows] as (p·Ap, r·r, r·Ap, Ap·Ap);
 * after a barrier threads 0–63 add the 8 warps' sums of their row in a
 * fixed order and publish (α, β) for it. With α = rᵀr / pᵀAp, the new
 * residual's square is rᵀr − 2α rᵀAp + α² (Ap)ᵀAp (CG's identity), so one
 * round of sums serves both coefficients; rᵀr itself is summed afresh
 * every step, so nothing drifts. */
static __device__ __forceinline__ void step_sums_put(float4 *red, float4 part, int row, int w,
                                                     int t) {
#pragma unroll
    for (int o = 1; o <= 2; o <<= 1) {
        part.x += __shfl_xor_sync(0xffffffffu, part.x, o);
        part.y += __shfl_xor_sync(0xffffffffu, part.y, o);
        part.z += __shfl_xor_sync(0xffffffffu, part.z, o);
        part.w += __shfl_xor_sync(0xffffffffu, part.w, o);
    }
    if (t == 0) red[w * 64 + row] = part;
}
static __device__ __forceinline__ void step_coefs(const float4 *red, float2 *coef, int row) {
    float4 s = red[row];
#pragma unroll
    for (int w = 1; w < 8; w++) {
        float4 v = red[w * 64 + row];
        s.x += v.x, s.y += v.y, s.z += v.z, s.w += v.w;
    }
    float alpha = s.y / (s.x + MESA_CG_EPS);
    float rn = fmaxf(s.y - 2.0f * alpha * s.z + alpha * alpha * s.w, 0.0f);
    coef[row] = make_float2(alpha, rn / (s.y + MESA_CG_EPS));
}

template <int DH> static constexpr size_t tc_solve_smem(int mode) {
    return (size_t)(mode == MESA_SOLVE_FWD ? 3 : 2) * 64 * tc_shape<DH>::LD * 2 /* P, K (, V) */ +
           64 * SLD * 2 /* S */ + 64 * SLD * 4 /* D */ + 64 * 4 /* γ̄ */ + 8 * 64 * 16 /* sums */ +
           64 * 8 /* α, β */;
}

template <int DH, int MODE>
__global__ void __launch_bounds__(TC_THREADS, 1)
    tc_solve_kernel(mesa_geom G, mesa_tok tok, mesa_tc_solve_io io) {
    typedef tc_shape<DH> S;
    constexpr int NT = S::NT, KS = S::KS, LD = S::LD, NW = S::NW;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *Ps = (bf16 *)smem, *Ks = Ps + 64 * LD;
    bf16 *Vs = Ks + 64 * LD;
    bf16 *Ss = MODE == MESA_SOLVE_FWD ? Vs + 64 * LD : Vs;
    float *Dm = (float *)(Ss + 64 * SLD), *gam = Dm + 64 * SLD;
    float4 *red = (float4 *)(gam + 64);
    float2 *coef = (float2 *)(red + 8 * 64);

    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g = lane >> 2, t = lane & 3;
    const mesa_item it = mesa_item_of(G, blockIdx.x);
    const int T = (int)it.T, d = (int)G.d;
    const int64_t dd = (int64_t)d * d;
    const bf16 *K = io.k + it.row * d, *V = io.v + it.row * d;
    const bf16 *Hs = io.Hs + (int64_t)blockIdx.x * dd, *Gt = io.Gt + (int64_t)blockIdx.x * dd;
    const float *lam = io.lambda + (it.bh % G.h) * d;

    tc_tile_load<DH, LD, TC_THREADS>(Ks, K, T, d);
    if (MODE == MESA_SOLVE_FWD) tc_tile_load<DH, LD, TC_THREADS>(Vs, V, T, d);
    if (MODE == MESA_SOLVE_ADJ) tc_tile_load<DH, LD, TC_THREADS>(Ps, io.d_o + it.row * d, T, d);
    cp_async_commit();
    if (tid < 64) gam[tid] = tid < T ? tok.gm[it.row + tid] : 0.0f;
    for (int idx = tid; idx < 64 * 64; idx += TC_THREADS) {
        int i = idx >> 6, j = idx & 63;
        float v = 0.0f;
        if (i < T && j <= i) v = expf(tok.lc[it.row + i] - tok.lc[it.row + j]) * tok.bt[it.row + j];
        Dm[i * SLD + j] = v;
    }
    float lamr[NT][2];
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int col = w * NW + nt * 8 + 2 * t + e;
            lamr[nt][e] = col < d ? lam[col] : 0.0f;
        }
    cp_async_wait<0>();
    __syncthreads();

    uint32_t bfr[KS][NT][2], sfr[KS][2];
    float x[4][NT][4], r[4][NT][4], p[4][NT][4], ap[4][NT][4];
    if (MODE == MESA_SOLVE_ADJ) {
        load_b_nk<DH>(bfr, Gt, d, w * NW, g, t); /* B = Gtᵀ */
        load_s_frag<DH>(sfr, V, T, d, w, g, t);
        tc_apply<DH>(r, Ps, bfr, sfr, Ks, Ss, Dm, gam, w, lane);
    } else {
        const bf16 *Q = io.q + it.row * d;
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    int row = mt * 16 + g + 8 * h, col = w * NW + nt * 8 + 2 * t;
                    float2 q = unpack_bf16(ld_pair(Q + (int64_t)row * d + col, row < T && col < d));
                    r[mt][nt][2 * h] = q.x;
                    r[mt][nt][2 * h + 1] = q.y;
                }
    }
    /* x = 0, p = bf16(r) */
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int row = mt * 16 + g + 8 * h;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                float p0 = bf_round(r[mt][nt][2 * h]), p1 = bf_round(r[mt][nt][2 * h + 1]);
                p[mt][nt][2 * h] = p0, p[mt][nt][2 * h + 1] = p1;
                x[mt][nt][2 * h] = x[mt][nt][2 * h + 1] = 0.0f;
                *reinterpret_cast<uint32_t *>(Ps + row * LD + w * NW + nt * 8 + 2 * t) =
                    pack_bf16(p0, p1);
            }
        }
    load_b_nk<DH>(bfr, Hs, d, w * NW, g, t); /* H0 is symmetric: B = H0 */
    load_s_frag<DH>(sfr, K, T, d, w, g, t);
    __syncthreads();

    for (int step = 0; step < G.steps; step++) {
        tc_apply<DH>(ap, Ps, bfr, sfr, Ks, Ss, Dm, gam, w, lane);
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                float4 part = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float pv = p[mt][nt][2 * h + e], rv = r[mt][nt][2 * h + e];
                        float v = ap[mt][nt][2 * h + e] + lamr[nt][e] * pv;
                        ap[mt][nt][2 * h + e] = v;
                        part.x += pv * v;
                        part.y += rv * rv;
                        part.z += rv * v;
                        part.w += v * v;
                    }
                step_sums_put(red, part, mt * 16 + g + 8 * h, w, t);
            }
        __syncthreads();
        if (tid < 64) step_coefs(red, coef, tid);
        __syncthreads();
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int row = mt * 16 + g + 8 * h;
                float2 ab = coef[row];
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    float pn[2];
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        float pv = p[mt][nt][2 * h + e];
                        x[mt][nt][2 * h + e] += ab.x * pv;
                        float rv = r[mt][nt][2 * h + e] - ab.x * ap[mt][nt][2 * h + e];
                        r[mt][nt][2 * h + e] = rv;
                        pn[e] = bf_round(rv + ab.y * pv);
                        p[mt][nt][2 * h + e] = pn[e];
                    }
                    *reinterpret_cast<uint32_t *>(Ps + row * LD + w * NW + nt * 8 + 2 * t) =
                        pack_bf16(pn[0], pn[1]);
                }
            }
        __syncthreads();
    }

    /* x: to global (bf16, and fp32 when asked), and for FWD into Ps */
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int row = mt * 16 + g + 8 * h, col = w * NW + nt * 8 + 2 * t;
                float x0 = x[mt][nt][2 * h], x1 = x[mt][nt][2 * h + 1];
                uint32_t packed = pack_bf16(x0, x1);
                bool ok = row < T && col < d;
                int64_t off = (it.row + row) * d + col;
                if (MODE == MESA_SOLVE_FWD)
                    *reinterpret_cast<uint32_t *>(Ps + row * LD + col) = packed;
                if (ok && io.x_out) *reinterpret_cast<uint32_t *>(io.x_out + off) = packed;
                if (ok && io.x32) *reinterpret_cast<float2 *>(io.x32 + off) = make_float2(x0, x1);
            }
    if (MODE != MESA_SOLVE_FWD) return;
    load_b_kn<DH>(bfr, Gt, d, w * NW, g, t); /* B = Gt */
    __syncthreads();
    tc_apply<DH>(ap, Ps, bfr, sfr, Vs, Ss, Dm, gam, w, lane);
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int row = mt * 16 + g + 8 * h, col = w * NW + nt * 8 + 2 * t;
                if (row < T && col < d)
                    *reinterpret_cast<uint32_t *>(io.o + (it.row + row) * d + col) =
                        pack_bf16(ap[mt][nt][2 * h], ap[mt][nt][2 * h + 1]);
            }
}

template <int DH, int MODE>
static lact_status launch(lact_ctx *ctx, const mesa_geom &G, const mesa_tok &tok,
                          const mesa_tc_solve_io &io) {
    size_t smem = tc_solve_smem<DH>(MODE);
    LACT_CU(cudaFuncSetAttribute(tc_solve_kernel<DH, MODE>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    tc_solve_kernel<DH, MODE>
        <<<(unsigned)G.items, TC_THREADS, smem, lact_cuda_stream(ctx)>>>(G, tok, io);
    LACT_CU_LAUNCH("mesa_tc_solve");
    return LACT_OK;
}

template <int DH>
static lact_status launch_dh(lact_ctx *ctx, const mesa_geom &G, mesa_solve_mode mode,
                             const mesa_tok &tok, const mesa_tc_solve_io &io) {
    switch (mode) {
    case MESA_SOLVE_FWD:
        return launch<DH, MESA_SOLVE_FWD>(ctx, G, tok, io);
    case MESA_SOLVE_X:
        return launch<DH, MESA_SOLVE_X>(ctx, G, tok, io);
    case MESA_SOLVE_ADJ:
        return launch<DH, MESA_SOLVE_ADJ>(ctx, G, tok, io);
    default:
        return lact_fail(LACT_E_ARG, "mesa: no tensor-core kernel for solve mode %d", mode);
    }
}

lact_status mesa_tc_solve(lact_ctx *ctx, const mesa_geom &G, mesa_solve_mode mode,
                          const mesa_tok &tok, const mesa_tc_solve_io &io) {
    if (G.items > 0x7fffffff)
        return lact_fail(LACT_E_UNSUPPORTED, "mesa: %lld chunks exceed one CUDA grid",
                         (long long)G.items);
    return G.d <= 64 ? launch_dh<64>(ctx, G, mode, tok, io) : launch_dh<128>(ctx, G, mode, tok, io);
}
