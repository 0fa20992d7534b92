/* The BF16 attention backward on tensor cores, as two kernels with one
 * writer per result (deterministic, no atomics), after the row pass of
 * attention.cu (D = Σ d_y·y, d_g, and dO = d_y ⊙ σ(g) in bf16):
 *
 *   d_q: shaped like the forward, a block per BM query rows, streaming the
 *        key tiles its rows see: S = Q·Kᵀ, P = exp2(S·scale·log2e − lse·log2e),
 *        dP = dO·Vᵀ, dS = P ⊙ (dP − D), dQ += dS·K. Three products per tile.
 *   d_k, d_v: a block per BKV keys of one kv head, streaming the query tiles
 *        (of every query head of its group) that see them, with the keys as
 *        the MMA rows: Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ, dV += Pᵀ·dO, dK += dSᵀ·Q.
 *
 * Recomputing S and dP in both kernels costs two products more than one
 * fused kernel with atomic d_q updates (7 instead of 5), in exchange for
 * results that do not depend on the order of atomics. */
#include <limits.h>
#include <math.h>

#include "kernels/cuda/attention_geom.cuh"
#include "kernels/cuda/attention_mma.cuh"

#define LOG2E 1.4426950408889634f

/* Hull [s[0], s[1]) of the ranges of `rows` indices from `first`; s[2] =
 * max lo, s[3] = min hi (an empty range makes nothing mask-free).
 * of_queries: the indices are query rows (ranges of keys), else key rows
 * (ranges of queries). */
static __device__ void block_hull(const attn_geom &G, int64_t first, int rows, bool of_queries,
                                  int *s) {
    if (threadIdx.x == 0) s[0] = INT_MAX, s[1] = 0, s[2] = INT_MIN, s[3] = INT_MAX;
    __syncthreads();
    if ((int)threadIdx.x < rows) {
        int lo, hi;
        if (of_queries)
            row_keys(G, first + threadIdx.x, &lo, &hi);
        else
            key_queries(G, first + threadIdx.x, &lo, &hi);
        if (lo < hi) {
            atomicMin(&s[0], lo), atomicMax(&s[1], hi);
            atomicMax(&s[2], lo), atomicMin(&s[3], hi);
        } else {
            atomicMax(&s[2], INT_MAX), atomicMin(&s[3], INT_MIN);
        }
    }
    __syncthreads();
}

template <int D, int NW, int BN>
__global__ void __launch_bounds__(NW * 32)
    attn_tc_dq_kernel(bf16 *__restrict__ dq, const bf16 *__restrict__ q,
                      const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                      const bf16 *__restrict__ dout, const float *__restrict__ lse,
                      const float *__restrict__ dsum, attn_geom G) {
    constexpr int BM = 16 * NW, LDS = D + 8, NT = NW * 32;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *qs = (bf16 *)smem_raw, *dos = qs + BM * LDS, *ks = dos + BM * LDS,
         *vs = ks + 2 * BN * LDS;
    __shared__ int hull[4];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const int64_t b = blockIdx.z, h = blockIdx.y, hk = h / G.group;
    const int row0 = (int)(gridDim.x - 1 - blockIdx.x) * BM;
    const int64_t qbase = (b * G.nh + h) * G.lq;
    const bf16 *kp = k + (b * G.nkv + hk) * G.lk * D, *vp = v + (b * G.nkv + hk) * G.lk * D;

    block_hull(G, row0, BM, true, hull);
    const int t_begin = hull[0], t_end = hull[1], max_lo = hull[2], min_hi = hull[3];
    int lo[2], hi[2];
    float lse2[2], dd[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row0 + warp * 16 + gq + 8 * r;
        row_keys(G, row, &lo[r], &hi[r]);
        lse2[r] = row < G.lq ? lse[qbase + row] * LOG2E : 0.0f;
        dd[r] = row < G.lq ? dsum[qbase + row] : 0.0f;
    }

    const int ntiles = t_end > t_begin ? (t_end - t_begin + BN - 1) / BN : 0;
    tile_load<BM, D, NT>(qs, q + qbase * D, row0, (int)G.lq);
    tile_load<BM, D, NT>(dos, dout + qbase * D, row0, (int)G.lq);
    if (ntiles > 0) {
        tile_load<BN, D, NT>(ks, kp, t_begin, (int)G.lk);
        tile_load<BN, D, NT>(vs, vp, t_begin, (int)G.lk);
    }
    cp_async_commit();

    const float sl2 = G.scale * LOG2E;
    /* At d = 256 the Q fragments would take 64 registers a thread beside
     * the 128 accumulators: they are read from shared memory at each step,
     * as dO's are. */
    constexpr bool QREG = D <= 128;
    uint32_t qf[QREG ? D / 16 : 1][4];
    float acc[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;

    for (int it = 0; it < ntiles; it++) {
        const int t0 = t_begin + it * BN, buf = it & 1;
        if (it + 1 < ntiles) {
            tile_load<BN, D, NT>(ks + (buf ^ 1) * BN * LDS, kp, t0 + BN, (int)G.lk);
            tile_load<BN, D, NT>(vs + (buf ^ 1) * BN * LDS, vp, t0 + BN, (int)G.lk);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (QREG && it == 0) {
#pragma unroll
            for (int c = 0; c < D / 16; c++)
                frag_a<D>(qf[QREG ? c : 0], qs + warp * 16 * LDS, c * 16, lane);
        }
        const bf16 *kt = ks + buf * BN * LDS, *vt = vs + buf * BN * LDS;

        float s[BN / 8][4], dp[BN / 8][4];
#pragma unroll
        for (int j = 0; j < BN / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                s[j][e] = dp[j][e] = 0.0f;
#pragma unroll
        for (int c = 0; c < D / 16; c++) {
            uint32_t da[4], qa[4];
            frag_a<D>(da, dos + warp * 16 * LDS, c * 16, lane);
            if (!QREG) frag_a<D>(qa, qs + warp * 16 * LDS, c * 16, lane);
            const uint32_t(&qc)[4] = QREG ? qf[QREG ? c : 0] : qa;
#pragma unroll
            for (int j = 0; j < BN / 16; j++) {
                uint32_t kb[4], vb[4];
                frag_b_nk<D>(kb, kt, j * 16, c * 16, lane);
                frag_b_nk<D>(vb, vt, j * 16, c * 16, lane);
                mma_bf16(s[2 * j], qc, kb[0], kb[1]);
                mma_bf16(s[2 * j + 1], qc, kb[2], kb[3]);
                mma_bf16(dp[2 * j], da, vb[0], vb[1]);
                mma_bf16(dp[2 * j + 1], da, vb[2], vb[3]);
            }
        }
        const bool full = t0 >= max_lo && t0 + BN <= min_hi;
#pragma unroll
        for (int j = 0; j < BN / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = t0 + j * 8 + 2 * tq + (e & 1), r = e >> 1;
                float p = exp2f(s[j][e] * sl2 - lse2[r]);
                if (!full && (key < lo[r] || key >= hi[r])) p = 0.0f;
                s[j][e] = p * (dp[j][e] - dd[r]);
            }
#pragma unroll
        for (int j = 0; j < BN / 16; j++) {
            uint32_t da[4] = {pack_bf16(s[2 * j][0], s[2 * j][1]),
                              pack_bf16(s[2 * j][2], s[2 * j][3]),
                              pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]),
                              pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3])};
#pragma unroll
            for (int c = 0; c < D / 16; c++) {
                uint32_t kb[4];
                frag_b_kn<D>(kb, kt, j * 16, c * 16, lane);
                mma_bf16(acc[2 * c], da, kb[0], kb[1]);
                mma_bf16(acc[2 * c + 1], da, kb[2], kb[3]);
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = row0 + warp * 16 + gq + 8 * r;
        if (row >= G.lq) continue;
        bf16 *dst = dq + (qbase + row) * D;
#pragma unroll
        for (int i = 0; i < D / 8; i++)
            *(__nv_bfloat162 *)(dst + i * 8 + 2 * tq) =
                __floats2bfloat162_rn(acc[i][2 * r] * G.scale, acc[i][2 * r + 1] * G.scale);
    }
}

/* Per-query data of one query tile of the d_k/d_v kernel. */
template <int BQ> struct qtile_info {
    float lse2[BQ], dd[BQ];
    int lo[BQ], hi[BQ];
};

template <int D, int NW, int BQ>
__global__ void __launch_bounds__(NW * 32)
    attn_tc_dkv_kernel(bf16 *__restrict__ dk, bf16 *__restrict__ dv, const bf16 *__restrict__ q,
                       const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                       const bf16 *__restrict__ dout, const float *__restrict__ lse,
                       const float *__restrict__ dsum, attn_geom G) {
    constexpr int BKV = 16 * NW, LDS = D + 8, NT = NW * 32;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *kts = (bf16 *)smem_raw, *vts = kts + BKV * LDS, *qs = vts + BKV * LDS,
         *dos = qs + 2 * BQ * LDS;
    __shared__ qtile_info<BQ> info[2];
    __shared__ int hull[4];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const int64_t b = blockIdx.z, hk = blockIdx.y;
    const int key0 = (int)blockIdx.x * BKV;
    const int key_end = key0 + BKV < G.lk ? key0 + BKV : (int)G.lk;
    const int64_t kvrow = (b * G.nkv + hk) * G.lk;

    block_hull(G, key0, BKV, false, hull);
    const int q_begin = hull[0], q_end = hull[1];
    const int nqt = q_end > q_begin ? (q_end - q_begin + BQ - 1) / BQ : 0;
    const int ntiles = nqt * (int)G.group;
    int kr[2];
#pragma unroll
    for (int r = 0; r < 2; r++)
        kr[r] = key0 + warp * 16 + gq + 8 * r;

    tile_load<BKV, D, NT>(kts, k + kvrow * D, key0, (int)G.lk);
    tile_load<BKV, D, NT>(vts, v + kvrow * D, key0, (int)G.lk);

    /* Queues the loads of tile `it` into buffer `buf`; returns whether this
     * thread's query (if any) sees every key of the block. */
    auto issue = [&](int it, int buf) -> bool {
        const int64_t h = hk * G.group + it / nqt;
        const int i0 = q_begin + (it % nqt) * BQ;
        const int64_t qbase = (b * G.nh + h) * G.lq;
        tile_load<BQ, D, NT>(qs + buf * BQ * LDS, q + qbase * D, i0, (int)G.lq);
        tile_load<BQ, D, NT>(dos + buf * BQ * LDS, dout + qbase * D, i0, (int)G.lq);
        if ((int)threadIdx.x >= BQ) return true;
        const int i = i0 + threadIdx.x;
        int lo, hi;
        row_keys(G, i, &lo, &hi);
        qtile_info<BQ> &in = info[buf];
        in.lo[threadIdx.x] = lo, in.hi[threadIdx.x] = hi;
        in.lse2[threadIdx.x] = i < G.lq ? lse[qbase + i] * LOG2E : 0.0f;
        in.dd[threadIdx.x] = i < G.lq ? dsum[qbase + i] : 0.0f;
        return lo < hi && lo <= key0 && hi >= key_end;
    };

    bool f_cur = ntiles > 0 ? issue(0, 0) : true;
    cp_async_commit();

    const float sl2 = G.scale * LOG2E;
    float adk[D / 8][4], adv[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            adk[i][e] = adv[i][e] = 0.0f;

    for (int it = 0; it < ntiles; it++) {
        const int buf = it & 1;
        bool f_next = true;
        if (it + 1 < ntiles) {
            f_next = issue(it + 1, buf ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        const bool full = __syncthreads_and(f_cur);
        f_cur = f_next;
        const bf16 *qt = qs + buf * BQ * LDS, *dt = dos + buf * BQ * LDS;
        const qtile_info<BQ> &in = info[buf];

        float s[BQ / 8][4], dp[BQ / 8][4];
#pragma unroll
        for (int j = 0; j < BQ / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                s[j][e] = dp[j][e] = 0.0f;
#pragma unroll
        for (int c = 0; c < D / 16; c++) {
            uint32_t ka[4], va[4];
            frag_a<D>(ka, kts + warp * 16 * LDS, c * 16, lane);
            frag_a<D>(va, vts + warp * 16 * LDS, c * 16, lane);
#pragma unroll
            for (int j = 0; j < BQ / 16; j++) {
                uint32_t qb[4], ob[4];
                frag_b_nk<D>(qb, qt, j * 16, c * 16, lane);
                frag_b_nk<D>(ob, dt, j * 16, c * 16, lane);
                mma_bf16(s[2 * j], ka, qb[0], qb[1]);
                mma_bf16(s[2 * j + 1], ka, qb[2], qb[3]);
                mma_bf16(dp[2 * j], va, ob[0], ob[1]);
                mma_bf16(dp[2 * j + 1], va, ob[2], ob[3]);
            }
        }
#pragma unroll
        for (int j = 0; j < BQ / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int iq = j * 8 + 2 * tq + (e & 1), r = e >> 1;
                float p = exp2f(s[j][e] * sl2 - in.lse2[iq]);
                if (!full && (kr[r] < in.lo[iq] || kr[r] >= in.hi[iq])) p = 0.0f;
                s[j][e] = p;
                dp[j][e] = p * (dp[j][e] - in.dd[iq]);
            }
#pragma unroll
        for (int j = 0; j < BQ / 16; j++) {
            uint32_t pa[4] = {pack_bf16(s[2 * j][0], s[2 * j][1]),
                              pack_bf16(s[2 * j][2], s[2 * j][3]),
                              pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]),
                              pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3])};
            uint32_t da[4] = {pack_bf16(dp[2 * j][0], dp[2 * j][1]),
                              pack_bf16(dp[2 * j][2], dp[2 * j][3]),
                              pack_bf16(dp[2 * j + 1][0], dp[2 * j + 1][1]),
                              pack_bf16(dp[2 * j + 1][2], dp[2 * j + 1][3])};
#pragma unroll
            for (int c = 0; c < D / 16; c++) {
                uint32_t ob[4], qb[4];
                frag_b_kn<D>(ob, dt, j * 16, c * 16, lane);
                frag_b_kn<D>(qb, qt, j * 16, c * 16, lane);
                mma_bf16(adv[2 * c], pa, ob[0], ob[1]);
                mma_bf16(adv[2 * c + 1], pa, ob[2], ob[3]);
                mma_bf16(adk[2 * c], da, qb[0], qb[1]);
                mma_bf16(adk[2 * c + 1], da, qb[2], qb[3]);
            }
        }
        __syncthreads();
    }
    /* K/V rows loaded but no query tile (no query sees these keys): the
     * group still has to land before the block exits. */
    cp_async_wait<0>();

#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (kr[r] >= G.lk) continue;
        const int64_t off = (kvrow + kr[r]) * D;
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
            const int c = i * 8 + 2 * tq;
            if (dk)
                *(__nv_bfloat162 *)(dk + off + c) =
                    __floats2bfloat162_rn(adk[i][2 * r] * G.scale, adk[i][2 * r + 1] * G.scale);
            if (dv)
                *(__nv_bfloat162 *)(dv + off + c) =
                    __floats2bfloat162_rn(adv[i][2 * r], adv[i][2 * r + 1]);
        }
    }
}

template <int D, int NW, int BN>
static lact_status launch_dq(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *dq,
                             const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dout,
                             const float *lse, const float *dsum) {
    constexpr int BM = 16 * NW;
    const size_t sm = (size_t)(2 * BM + 4 * BN) * (D + 8) * sizeof(bf16);
    LACT_CU(cudaFuncSetAttribute(attn_tc_dq_kernel<D, NW, BN>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
    dim3 grid((unsigned)((G.lq + BM - 1) / BM), (unsigned)G.nh, (unsigned)nb);
    attn_tc_dq_kernel<D, NW, BN>
        <<<grid, NW * 32, sm, lact_cuda_stream(ctx)>>>(dq, q, k, v, dout, lse, dsum, G);
    LACT_CU_LAUNCH("attention backward d_q (tensor cores)");
    return LACT_OK;
}

template <int D, int NW, int BQ>
static lact_status launch_dkv(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *dk, bf16 *dv,
                              const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dout,
                              const float *lse, const float *dsum) {
    constexpr int BKV = 16 * NW;
    const size_t sm = (size_t)(2 * BKV + 4 * BQ) * (D + 8) * sizeof(bf16);
    LACT_CU(cudaFuncSetAttribute(attn_tc_dkv_kernel<D, NW, BQ>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
    dim3 grid((unsigned)((G.lk + BKV - 1) / BKV), (unsigned)G.nkv, (unsigned)nb);
    attn_tc_dkv_kernel<D, NW, BQ>
        <<<grid, NW * 32, sm, lact_cuda_stream(ctx)>>>(dk, dv, q, k, v, dout, lse, dsum, G);
    LACT_CU_LAUNCH("attention backward d_k/d_v (tensor cores)");
    return LACT_OK;
}

lact_status attn_tc_backward(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *dq, bf16 *dk,
                             bf16 *dv, const bf16 *q, const bf16 *k, const bf16 *v,
                             const bf16 *dout, const float *lse, const float *dsum) {
    if (G.d == 64) {
        if (dq) LACT_TRY((launch_dq<64, 4, 64>(ctx, G, nb, dq, q, k, v, dout, lse, dsum)));
        if (dk || dv)
            LACT_TRY((launch_dkv<64, 4, 64>(ctx, G, nb, dk, dv, q, k, v, dout, lse, dsum)));
        return LACT_OK;
    }
    /* d = 256: tiles of 16 keys (d_q) and 16 queries (d_k/d_v), so that each
     * block's 101 KiB of shared memory lets two blocks share a multiprocessor
     * (tiles of 32: one block, 7 % slower). d_k and d_v together hold 256
     * accumulators a thread and spill 352 bytes, yet took 3-13 % less time
     * than two spill-free passes, which compute the scores twice. */
    if (G.d == 256) {
        if (dq) LACT_TRY((launch_dq<256, 4, 16>(ctx, G, nb, dq, q, k, v, dout, lse, dsum)));
        if (dk || dv)
            LACT_TRY((launch_dkv<256, 4, 16>(ctx, G, nb, dk, dv, q, k, v, dout, lse, dsum)));
        return LACT_OK;
    }
    if (dq) LACT_TRY((launch_dq<128, 4, 64>(ctx, G, nb, dq, q, k, v, dout, lse, dsum)));
    if (dk || dv)
        LACT_TRY((launch_dkv<128, 4, 32>(ctx, G, nb, dk, dv, q, k, v, dout, lse, dsum)));
    return LACT_OK;
}
