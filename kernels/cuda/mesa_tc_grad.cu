/* The per-chunk gradients on tensor cores: one block of 8 warps per item
 * computes d_k, d_v, d_beta and d_g of its tokens from x, y, d_o, the
 * chunk-start states and the state adjoints after the chunk (the formulas
 * of mesa_generic.cu's gen_grads_kernel, in products):
 *   phase 1  Eᵀ = Mᵀ ⊙ K Xᵀ, (Gm − F)ᵀ = Mᵀ ⊙ (V d_Oᵀ − K Yᵀ), Zᵀ sums
 *   phase 2  a = w' ⊙ K dHᵀ − Eᵀ Y,  b = w' ⊙ K dGᵀ + Eᵀ d_O,
 *            c = w' ⊙ (K dH + V dG) + (Gm − F)ᵀ X  →  d_k, d_v, d_β
 *   phase 3  X H0, X Gt for the γ̄ terms of dℓ, then d_g by a reverse sum.
 * Everything an item needs sits in shared memory at once (about 190 KB
 * at d = 128), the two d×d state tiles reloaded between phases 2 and 3. */
#include "kernels/cuda/mesa_tc.cuh"

#define GR_THREADS 256
#define GR_SLD 72

template <int DH> struct gr_shape {
    static constexpr int NW = DH / 8, NT = NW / 8, KS = DH / 16, LD = DH + 8;
    static constexpr int SROWS =
        DH + 16; /* state tiles: ldmatrix of the last warp may run 8 rows over */
    static constexpr size_t smem = (size_t)(5 * 64 + 2 * SROWS) * LD * 2 + 2 * 64 * GR_SLD * 2 +
                                   (size_t)(5 * 64 + (4 + 2 + 8 + 8 + 8) * 64 + 8 + 64) * 4;
};

/* Rows [0, DH) of a d×d matrix into a tile of stride LD, zero beyond d. */
template <int DH, int LD>
static __device__ __forceinline__ void gr_state_load(bf16 *dst, const bf16 *src, int d) {
    constexpr int CPR = DH / 8;
    for (int i = threadIdx.x; i < DH * CPR; i += GR_THREADS) {
        const int r = i / CPR, c = (i % CPR) * 8;
        const bool ok = r < d && c < d;
        cp_async16(smem_addr(dst + r * LD + c), ok ? src + (int64_t)r * d + c : src, ok);
    }
}

static __device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/* acc[4][NT][4] += A (64 rows at As, stride LDA, k over KS2 steps) · B,
 * B from a [k][n] tile (stride LDB) at columns n0. */
template <int NT, int KS2, int LDA, int LDB>
static __device__ __forceinline__ void gr_mma_kn(float acc[4][NT][4], const bf16 *As,
                                                 const bf16 *Bs, int n0, int lane) {
#pragma unroll
    for (int ks = 0; ks < KS2; ks++) {
        uint32_t b[4];
        frag_b_kn<LDB - 8>(b, Bs, ks * 16, n0, lane);
#pragma unroll
        for (int mt = 0; mt < 4; mt++) {
            uint32_t a[4];
            frag_a<LDA - 8>(a, As + mt * 16 * LDA, ks * 16, lane);
            mma_bf16(acc[mt][0], a, b[0], b[1]);
            if (NT == 2) mma_bf16(acc[mt][NT - 1], a, b[2], b[3]);
        }
    }
}

/* The same with B from an [n][k] tile. */
template <int NT, int KS2, int LDA, int LDB>
static __device__ __forceinline__ void gr_mma_nk(float acc[4][NT][4], const bf16 *As,
                                                 const bf16 *Bs, int n0, int lane) {
#pragma unroll
    for (int ks = 0; ks < KS2; ks++) {
        uint32_t b[4];
        frag_b_nk<LDB - 8>(b, Bs, n0, ks * 16, lane);
#pragma unroll
        for (int mt = 0; mt < 4; mt++) {
            uint32_t a[4];
            frag_a<LDA - 8>(a, As + mt * 16 * LDA, ks * 16, lane);
            mma_bf16(acc[mt][0], a, b[0], b[1]);
            if (NT == 2) mma_bf16(acc[mt][NT - 1], a, b[2], b[3]);
        }
    }
}

template <int NT> static __device__ __forceinline__ void gr_zero(float acc[4][NT][4]) {
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[mt][nt][e] = 0.0f;
}

template <int DH>
__global__ void __launch_bounds__(GR_THREADS, 1)
    tc_grad_kernel(mesa_geom G, mesa_tok tok, mesa_tc_grad_io io) {
    typedef gr_shape<DH> S;
    constexpr int NT = S::NT, KS = S::KS, LD = S::LD, NW = S::NW;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16 *Xs = (bf16 *)smem, *Ys = Xs + 64 * LD, *Os = Ys + 64 * LD, *Ks = Os + 64 * LD;
    bf16 *Vs = Ks + 64 * LD, *St0 = Vs + 64 * LD, *St1 = St0 + S::SROWS * LD;
    bf16 *ET = St1 + S::SROWS * LD, *GF = ET + 64 * GR_SLD;
    float *lc = (float *)(GF + 64 * GR_SLD), *bt = lc + 64, *gmv = bt + 64, *wp = gmv + 64;
    float *sv = wp + 64;
    float *redA = sv + 64, *redB = redA + 4 * 64, *redC = redB + 2 * 64, *redD = redC + 8 * 64;
    float *redE = redD + 8 * 64, *ipred = redE + 8 * 64, *dl = ipred + 8;

    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g = lane >> 2, t = lane & 3;
    const int64_t n = blockIdx.x;
    const mesa_item it = mesa_item_of(G, n);
    const int T = (int)it.T, d = (int)G.d;
    const int64_t dd = (int64_t)d * d, row0 = it.row * d;
    const bf16 *Hs = io.Hs + n * dd, *Gt = io.Gt + n * dd;

    tc_tile_load<DH, LD, GR_THREADS>(Xs, io.x + row0, T, d);
    tc_tile_load<DH, LD, GR_THREADS>(Ys, io.y + row0, T, d);
    tc_tile_load<DH, LD, GR_THREADS>(Os, io.d_o + row0, T, d);
    tc_tile_load<DH, LD, GR_THREADS>(Ks, io.k + row0, T, d);
    tc_tile_load<DH, LD, GR_THREADS>(Vs, io.v + row0, T, d);
    gr_state_load<DH, LD>(St0, io.dH + n * dd, d);
    gr_state_load<DH, LD>(St1, io.dG + n * dd, d);
    cp_async_commit();
    if (tid < 64) {
        bool ok = tid < T;
        float lT = tok.lc[it.row + T - 1];
        lc[tid] = ok ? tok.lc[it.row + tid] : 0.0f;
        bt[tid] = ok ? tok.bt[it.row + tid] : 0.0f;
        gmv[tid] = ok ? tok.gm[it.row + tid] : 0.0f;
        wp[tid] = ok ? expf(lT - tok.lc[it.row + tid]) : 0.0f;
    }
    cp_async_wait<0>();
    __syncthreads();

    /* ---- phase 1: [j][t] pair matrices; warp: rows j0 + [0, 32), cols t0 + [0, 16) */
    {
        const int j0 = 32 * (w >> 2), t0 = 16 * (w & 3);
        float cx[2][2][4], cy[2][2][4], cv[2][2][4];
#pragma unroll
        for (int jm = 0; jm < 2; jm++)
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    cx[jm][nt][e] = cy[jm][nt][e] = cv[jm][nt][e] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
            uint32_t bx[4], by[4], bo[4];
            frag_b_nk<DH>(bx, Xs, t0, ks * 16, lane);
            frag_b_nk<DH>(by, Ys, t0, ks * 16, lane);
            frag_b_nk<DH>(bo, Os, t0, ks * 16, lane);
#pragma unroll
            for (int jm = 0; jm < 2; jm++) {
                uint32_t ak[4], av[4];
                frag_a<DH>(ak, Ks + (j0 + jm * 16) * LD, ks * 16, lane);
                frag_a<DH>(av, Vs + (j0 + jm * 16) * LD, ks * 16, lane);
                mma_bf16(cx[jm][0], ak, bx[0], bx[1]);
                mma_bf16(cx[jm][1], ak, bx[2], bx[3]);
                mma_bf16(cy[jm][0], ak, by[0], by[1]);
                mma_bf16(cy[jm][1], ak, by[2], by[3]);
                mma_bf16(cv[jm][0], av, bo[0], bo[1]);
                mma_bf16(cv[jm][1], av, bo[2], bo[3]);
            }
        }
        float zcol[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}}; /* per (nt, e): Σ over this thread's j */
#pragma unroll
        for (int jm = 0; jm < 2; jm++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int j = j0 + jm * 16 + g + 8 * h;
                float zrow = 0.0f;
#pragma unroll
                for (int nt = 0; nt < 2; nt++) {
                    float ev[2], gv[2];
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        int tc = t0 + nt * 8 + 2 * t + e;
                        float m = (tc >= j && tc < T) ? expf(lc[tc] - lc[j]) : 0.0f;
                        float xk = cx[jm][nt][2 * h + e], yk = cy[jm][nt][2 * h + e];
                        float dvv = cv[jm][nt][2 * h + e];
                        ev[e] = m * xk;
                        gv[e] = m * (dvv - yk);
                        float z = ev[e] * bt[j] * (dvv - yk);
                        zrow += z;
                        zcol[nt][e] += z;
                    }
                    int tc = t0 + nt * 8 + 2 * t;
                    *reinterpret_cast<uint32_t *>(ET + j * GR_SLD + tc) = pack_bf16(ev[0], ev[1]);
                    *reinterpret_cast<uint32_t *>(GF + j * GR_SLD + tc) = pack_bf16(gv[0], gv[1]);
                }
                zrow = quad_sum(zrow);
                if (t == 0) redA[(w & 3) * 64 + j] = zrow;
            }
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                float v = zcol[nt][e];
                v += __shfl_xor_sync(0xffffffffu, v, 4);
                v += __shfl_xor_sync(0xffffffffu, v, 8);
                v += __shfl_xor_sync(0xffffffffu, v, 16);
                if (g == 0) redB[(w >> 2) * 64 + t0 + nt * 8 + 2 * t + e] = v;
            }
    }
    __syncthreads();

    /* ---- phase 2: [64, d] rows j, this warp's columns */
    const int n0 = w * NW;
    float pb[4][2], ps[4][2];
    {
        float acc1[4][NT][4], acc2[4][NT][4];
        auto kval = [&](const bf16 *M, int row, int col) {
            return __bfloat162float(M[row * LD + col]);
        };
        /* a = w' ⊙ K dHᵀ − Eᵀ Y */
        gr_zero<NT>(acc1);
        gr_mma_nk<NT, KS, LD, LD>(acc1, Ks, St0, n0, lane);
        gr_zero<NT>(acc2);
        gr_mma_kn<NT, 4, GR_SLD, LD>(acc2, ET, Ys, n0, lane);
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int j = mt * 16 + g + 8 * h;
                float s = 0.0f, b2 = 0.0f;
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        int col = n0 + nt * 8 + 2 * t + e;
                        float kv = kval(Ks, j, col), v = acc1[mt][nt][2 * h + e];
                        s += kv * v;
                        v = wp[j] * v - acc2[mt][nt][2 * h + e];
                        acc1[mt][nt][2 * h + e] = v;
                        b2 += kv * v;
                    }
                ps[mt][h] = s;
                pb[mt][h] = b2;
            }
        /* b = w' ⊙ K dGᵀ + Eᵀ d_O */
        gr_zero<NT>(acc2);
        gr_mma_nk<NT, KS, LD, LD>(acc2, Ks, St1, n0, lane);
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int j = mt * 16 + g + 8 * h;
                float s = 0.0f;
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        int col = n0 + nt * 8 + 2 * t + e;
                        float v = acc2[mt][nt][2 * h + e];
                        s += kval(Vs, j, col) * v;
                        acc2[mt][nt][2 * h + e] = wp[j] * v;
                    }
                ps[mt][h] += s;
            }
        gr_mma_kn<NT, 4, GR_SLD, LD>(acc2, ET, Os, n0, lane);
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int j = mt * 16 + g + 8 * h;
                float s = 0.0f;
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    int col = n0 + nt * 8 + 2 * t;
                    float b0v = acc2[mt][nt][2 * h], b1v = acc2[mt][nt][2 * h + 1];
                    s += kval(Vs, j, col) * b0v + kval(Vs, j, col + 1) * b1v;
                    if (io.dv && j < T && col < d)
                        *reinterpret_cast<uint32_t *>(io.dv + row0 + (int64_t)j * d + col) =
                            pack_bf16(bt[j] * b0v, bt[j] * b1v);
                }
                pb[mt][h] += s;
            }
        /* c = w' ⊙ (K dH + V dG) + (Gm − F)ᵀ X; d_k = β (a + c) */
        gr_zero<NT>(acc2);
        gr_mma_kn<NT, KS, LD, LD>(acc2, Ks, St0, n0, lane);
        gr_mma_kn<NT, KS, LD, LD>(acc2, Vs, St1, n0, lane);
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++)
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++)
                        acc2[mt][nt][2 * h + e] *= wp[mt * 16 + g + 8 * h];
        gr_mma_kn<NT, 4, GR_SLD, LD>(acc2, GF, Xs, n0, lane);
        if (io.dk) {
#pragma unroll
            for (int mt = 0; mt < 4; mt++)
#pragma unroll
                for (int h = 0; h < 2; h++)
#pragma unroll
                    for (int nt = 0; nt < NT; nt++) {
                        int j = mt * 16 + g + 8 * h, col = n0 + nt * 8 + 2 * t;
                        if (j < T && col < d)
                            *reinterpret_cast<uint32_t *>(io.dk + row0 + (int64_t)j * d + col) =
                                pack_bf16(bt[j] * (acc1[mt][nt][2 * h] + acc2[mt][nt][2 * h]),
                                          bt[j] *
                                              (acc1[mt][nt][2 * h + 1] + acc2[mt][nt][2 * h + 1]));
                    }
        }
    }
#pragma unroll
    for (int mt = 0; mt < 4; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int j = mt * 16 + g + 8 * h;
            float b2 = quad_sum(pb[mt][h]), s = quad_sum(ps[mt][h]);
            if (t == 0) redC[w * 64 + j] = b2, redD[w * 64 + j] = s;
        }
    __syncthreads();

    /* ---- phase 3: γ̄_t (d_o_t · G0 x_t − y_t · H0 x_t) */
    gr_state_load<DH, LD>(St0, Hs, d);
    gr_state_load<DH, LD>(St1, Gt, d);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    {
        /* ⟨dH, H0⟩ + ⟨dG, G0⟩ with G0[v][k] = Gt[k][v]: dH, dG from global
         * memory in order, H0 and Gt from the tiles */
        float ip = 0.0f;
        for (int64_t e = tid; e < dd; e += GR_THREADS) {
            int a = (int)(e / d), b = (int)(e % d);
            ip += __bfloat162float(io.dH[n * dd + e]) * __bfloat162float(St0[a * LD + b]) +
                  __bfloat162float(io.dG[n * dd + e]) * __bfloat162float(St1[b * LD + a]);
        }
        ip = warp_sum(ip);
        if (lane == 0) ipred[w] = ip;
    }
    {
        float xh[4][NT][4], xg[4][NT][4];
        gr_zero<NT>(xh);
        gr_zero<NT>(xg);
        gr_mma_kn<NT, KS, LD, LD>(xh, Xs, St0, n0, lane);
        gr_mma_kn<NT, KS, LD, LD>(xg, Xs, St1, n0, lane);
#pragma unroll
        for (int mt = 0; mt < 4; mt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int row = mt * 16 + g + 8 * h;
                float s = 0.0f;
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        int col = n0 + nt * 8 + 2 * t + e;
                        s += __bfloat162float(Os[row * LD + col]) * xg[mt][nt][2 * h + e] -
                             __bfloat162float(Ys[row * LD + col]) * xh[mt][nt][2 * h + e];
                    }
                s = quad_sum(s);
                if (t == 0) redE[w * 64 + row] = s * gmv[row];
            }
    }
    __syncthreads();

    /* ---- the sums per token, then d_g */
    if (tid < 64) {
        float e = 0.0f, b2 = 0.0f, sd = 0.0f;
#pragma unroll
        for (int q = 0; q < 8; q++) {
            e += redE[q * 64 + tid];
            b2 += redC[q * 64 + tid];
            sd += redD[q * 64 + tid];
        }
        float zr = redB[tid] + redB[64 + tid];
        float zc = redA[tid] + redA[64 + tid] + redA[128 + tid] + redA[192 + tid];
        float s = wp[tid] * bt[tid] * sd;
        sv[tid] = s;
        dl[tid] = e + zr - zc - s;
        if (io.dbeta && tid < T) io.dbeta[it.row + tid] = __float2bfloat16_rn(b2);
    }
    __syncthreads();
    if (tid == 0 && io.dg) {
        float acc = 0.0f, ipt = 0.0f;
        for (int j = 0; j < T; j++)
            acc += sv[j];
        for (int q = 0; q < 8; q++)
            ipt += ipred[q];
        acc += gmv[T - 1] * ipt;
        for (int j = T - 1; j >= 0; j--) {
            acc += dl[j];
            io.dg[it.row + j] = __float2bfloat16_rn(acc);
        }
    }
}

template <int DH>
static lact_status launch(lact_ctx *ctx, const mesa_geom &G, const mesa_tok &tok,
                          const mesa_tc_grad_io &io) {
    size_t smem = gr_shape<DH>::smem;
    LACT_CU(cudaFuncSetAttribute(tc_grad_kernel<DH>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)smem));
    tc_grad_kernel<DH><<<(unsigned)G.items, GR_THREADS, smem, lact_cuda_stream(ctx)>>>(G, tok, io);
    LACT_CU_LAUNCH("mesa_tc_grads");
    return LACT_OK;
}

lact_status mesa_tc_grads(lact_ctx *ctx, const mesa_geom &G, const mesa_tok &tok,
                          const mesa_tc_grad_io &io) {
    if (G.items > 0x7fffffff)
        return lact_fail(LACT_E_UNSUPPORTED, "mesa: %lld chunks exceed one CUDA grid",
                         (long long)G.items);
    return G.d <= 64 ? launch<64>(ctx, G, tok, io) : launch<128>(ctx, G, tok, io);
}
