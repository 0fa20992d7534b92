/* The BF16 attention backward on Hopper's warpgroup MMA (sm_90a), head dims
 * 64, 128 and 256, after the row pass of attention.cu (D = Σ d_y·y, d_g,
 * dO = d_y ⊙ σ(g)). Two ways:
 *   fused (default): one kernel per key block makes d_k, d_v and adds each
 *     tile's share of d_q into an F32 buffer through the copy engine's
 *     reducing bulk copies (five products per tile; the first share of a
 *     block is stored, so the buffer is never cleared); a last pass scales
 *     and rounds d_q. The order of the additions varies from run to run,
 *     so d_q may differ in its last bits between runs.
 *   deterministic (LACT_ATTN_DETERMINISTIC=1): the two kernels of
 *     attention_tc_bwd.cu on wgmma, d_k/d_v and d_q, one writer per result,
 *     bit-reproducible; d_q recomputes the scores (seven products).
 *   d = 256 (either way): three deterministic kernels, d_k and d_v each
 *     its own pass (PART), as both would hold 256 accumulators a thread;
 *     eight products per tile pair.
 *
 * One template. A block owns 128 "fixed" rows and streams "tiles" of BT rows
 * of two other tensors past them:
 *   d_k/d_v (KV): fixed K, V of one kv head; tiles of Q, dO of every query
 *     head of the group that sees the keys (key_queries hull);
 *     Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ, dV += Pᵀ·dO, dK += dSᵀ·Q; fused, also
 *     dQ_tile = dS·K (both consumers' dSᵀ through shared memory, each
 *     consumer one 64 × 64 half of the product), added to F32;
 *   d_q: fixed Q, dO of one head; tiles of K, V (row_keys hull);
 *     S = Q·Kᵀ, dP = dO·Vᵀ, dQ += dS·K;
 * with P = exp2(S·scale·log2 e − lse·log2 e) (masked) and dS = P ⊙ (dP − D).
 * Warpgroup 0 is the producer (one thread issues bulk tensor copies into
 * STAGES tile buffers; in KV mode its first warp also writes each tile's
 * per-query lse, D and key ranges to shared memory; fused, its second warp
 * issues the d_q reductions the consumers stage, which took the consumers'
 * two barriers per tile away: 3-4 % of forward + backward); warpgroups 1
 * and 2 own 64 fixed rows each: the two score products with both operands in shared
 * memory, then the gradient products with P or dS from registers and the
 * tile read transposed by its descriptor (wgmma.cuh). The accumulators stay
 * in registers for the block's life and are written once at the end. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/attention_cuda.h"
#include "kernels/cuda/attention_geom.cuh"
#include "kernels/cuda/wgmma.cuh"

#define WGB_LOG2E 1.4426950408889634f

namespace {

constexpr int WGB_BF = 128, WGB_THREADS = 384;
/* A 64-column slab of the dSᵀ buffer: 128 key rows of 128 bytes. */
#define WGB_DS_SLAB (128u * 128u)

/* Tile rows: 64 for d_k/d_v at d = 128 (two score tiles, their bf16
 * copies and two 64 × 128 accumulators fill the 232 registers; more makes
 * ptxas serialise the wgmma); 32 at d = 256, where 128 fixed rows of two
 * tensors take 128 KiB and three stages of two 32-row tiles 96 KiB; else
 * 128. */
template <bool KV, int D> constexpr int wgb_bt() {
    return D == 256 ? 32 : KV && D == 128 ? 64 : 128;
}

/* Per-query data of one Q tile (KV mode): lse·log2 e, D, the key range. */
template <int BT> struct __align__(16) wgb_info {
    float lse2[BT], dd[BT];
    int lo[BT], hi[BT];
    int full; /* every query of the tile sees every key of the block */
};

/* Shared memory, all of it dynamic: the fixed A0, A1 (128 rows each, A1 at
 * F_BYTES), STAGES tiles of B0 and B1, fused: two dSᵀ buffers (128 keys × BT
 * queries, in 64-query slabs) and NSB 64 × 64 F32 staging buffers per
 * consumer (two where they fit: d = 128), then the mbarriers (fixed full;
 * full and empty per stage and per staging buffer), the tiles' per-query
 * data and the hull, and slack to align the base to 1024 bytes where it
 * fits (else the kernel checks that the base is aligned). */
constexpr uint32_t WGB_SMEM_MAX = 232448; /* 227 KiB, the per-block limit */
template <bool KV, int D, bool FQ = false> struct wgb_cfg {
    static constexpr int BT = wgb_bt<KV, D>();
    /* Three tile buffers where they fit (d_q at d = 128 has room for two). */
    static constexpr int STAGES = (!KV && D == 128) || FQ ? 2 : 3;
    static_assert(D != 256 || !FQ, "d = 256 takes the kernels one result at a time");
    static constexpr int NSB = FQ && D == 128 ? 2 : 1;
    static constexpr uint32_t F_BYTES = WGB_BF * D * 2, T_BYTES = BT * D * 2;
    static constexpr uint32_t DS_BYTES = FQ ? WGB_BF * BT * 2 : 0;
    static constexpr uint32_t B_OFF = 2 * F_BYTES, DS_OFF = B_OFF + 2 * STAGES * T_BYTES;
    static constexpr uint32_t ST_OFF = DS_OFF + 2 * DS_BYTES;
    static constexpr uint32_t BAR_OFF = ST_OFF + (FQ ? 2 * NSB * 16384 : 0);
    static constexpr uint32_t INFO_OFF = (BAR_OFF + 8 * (1 + 2 * STAGES + 4 * NSB) + 15) & ~15u;
    using info_t = wgb_info<KV ? BT : 1>;
    static constexpr uint32_t USED = INFO_OFF + STAGES * sizeof(info_t) + 16;
    static constexpr uint32_t SLACK = USED + 1024 <= WGB_SMEM_MAX ? 1024 : 0;
    static constexpr uint32_t SMEM = USED + SLACK;
    static_assert(SMEM <= WGB_SMEM_MAX, "shared memory over the per-block limit");
    static __device__ __forceinline__ uint32_t b0(uint32_t base, int s) {
        return base + B_OFF + 2 * s * T_BYTES;
    }
    static __device__ __forceinline__ uint32_t b1(uint32_t base, int s) {
        return base + B_OFF + (2 * s + 1) * T_BYTES;
    }
};

} // namespace

__device__ int attn_wgmma_bwd_built = WGMMA_DEVICE;

#if WGMMA_DEVICE

/* Scores of 64 fixed rows against a tile: d (64 × BT) = A·Bᵀ, A at sa (slab
 * stride 128·128 bytes), B at sb (slab stride BT·128). */
template <int D, int BT>
static __device__ __forceinline__ void wgb_issue_scores(float (&d)[BT / 2], uint32_t sa,
                                                        uint32_t sb) {
#pragma unroll
    for (int c = 0; c < D / 16; c++) {
        const uint64_t da = wg_desc(sa + (c / 4) * WGB_BF * 128 + (c % 4) * 32, 16, 1024);
        const uint64_t db = wg_desc(sb + (c / 4) * BT * 128 + (c % 4) * 32, 16, 1024);
        wg_mma_ss<BT>(d, da, db, c > 0);
    }
}

/* acc (64 × D) += X·B: X (64 × BT) from registers, the tile B read N-major. */
template <int D, int BT>
static __device__ __forceinline__ void
wgb_issue_grad(float (&acc)[D / 2], const uint32_t (&x)[BT / 16][4], uint32_t sb) {
#pragma unroll
    for (int j = 0; j < BT / 16; j++)
        wg_mma_rs_tb<D>(acc, x[j], wg_desc(sb + j * 2048, BT * 128, 1024));
}

/* P (into sc) from the scores of a d_k/d_v tile: the tile's lse read two
 * columns at a time, and the mask's ranges only where MASK (tiles that cut
 * some query's range); two loops rather than a test per element, which
 * compiled to a branch and two loads per element. */
template <bool MASK, int BT>
static __device__ __forceinline__ void wgb_probs_kv(float (&sc)[BT / 2], const wgb_info<BT> &inf,
                                                    int key0, int tq, float sl2) {
#pragma unroll
    for (int c8 = 0; c8 < BT / 8; c8++) {
        const int col = 8 * c8 + 2 * tq;
        const float2 l2 = *reinterpret_cast<const float2 *>(&inf.lse2[col]);
        int2 lo = {0, 0}, hi = {0, 0};
        if (MASK) {
            lo = *reinterpret_cast<const int2 *>(&inf.lo[col]);
            hi = *reinterpret_cast<const int2 *>(&inf.hi[col]);
        }
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int i = 4 * c8 + e, odd = e & 1;
            float p = wg_exp2(fmaf(sc[i], sl2, -(odd ? l2.y : l2.x)));
            if (MASK) {
                const int key = key0 + 8 * (e >> 1);
                if (key < (odd ? lo.y : lo.x) || key >= (odd ? hi.y : hi.x)) p = 0.0f;
            }
            sc[i] = p;
        }
    }
}

/* The same for a d_q tile: the rows' lse and ranges are in registers. */
template <bool MASK, int BT>
static __device__ __forceinline__ void wgb_probs_q(float (&sc)[BT / 2], int t0, const int (&lo)[2],
                                                   const int (&hi)[2], const float (&lse2)[2],
                                                   int tq, float sl2) {
#pragma unroll
    for (int i = 0; i < BT / 2; i++) {
        const int col = 8 * (i >> 2) + 2 * tq + (i & 1), r = (i >> 1) & 1;
        float p = wg_exp2(fmaf(sc[i], sl2, -lse2[r]));
        if (MASK && (t0 + col < lo[r] || t0 + col >= hi[r])) p = 0.0f;
        sc[i] = p;
    }
}

/* The d_q blocks' flags (fused): 0 nothing written yet, 1 the first
 * writer's copy is on its way, 2 it has landed. The first writer of a block
 * stores its share, so the F32 buffer needs no clearing; the others add
 * theirs once the flag says 2. */
static __device__ __forceinline__ int wgb_flag_claim(int *f) {
    int old;
    asm volatile("atom.acquire.gpu.global.cas.b32 %0, [%1], 0, 1;\n"
                 : "=r"(old)
                 : "l"(f)
                 : "memory");
    return old;
}
/* Hands a consumer's staged d_q share to the writer: its stores made
 * visible to the copy engine, then one arrival per warp. */
static __device__ __forceinline__ void wgb_stage_publish(uint32_t bar, int lane) {
    wg_fence_proxy_async();
    __syncwarp();
    if (lane == 0) mbar_arrive(bar);
}
static __device__ __forceinline__ void wgb_flag_wait(const int *f) {
    for (;;) {
        int v;
        asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(f) : "memory");
        if (v == 2) return;
        __nanosleep(64);
    }
}
static __device__ __forceinline__ void wgb_flag_publish(int *f) {
    asm volatile("st.release.gpu.global.b32 [%0], 2;\n" ::"l"(f) : "memory");
}

#endif /* WGMMA_DEVICE */

/* Grid: (fixed row blocks, heads (d_q) or kv heads (d_k/d_v), batch). The
 * blocks with the most tiles (causal: the last query rows, the first keys)
 * start first. */
template <bool KV, int D, bool FQ, int PART>
__global__ void __launch_bounds__(WGB_THREADS, 1)
    attn_wgmma_bwd_kernel(const __grid_constant__ CUtensorMap ta0,
                          const __grid_constant__ CUtensorMap ta1,
                          const __grid_constant__ CUtensorMap tb0,
                          const __grid_constant__ CUtensorMap tb1, bf16 *__restrict__ out0,
                          bf16 *__restrict__ out1, const float *__restrict__ lse,
                          const float *__restrict__ dsum, float *__restrict__ dq_acc,
                          int *__restrict__ dq_flag, attn_geom G) {
#if WGMMA_DEVICE
    static_assert(KV || !FQ, "d_q is fused into the d_k/d_v kernel only");
    static_assert(!FQ || PART == 3, "the fused kernel makes d_k and d_v");
    /* PART (KV): 1 d_k only, 2 d_v only (its own pass at d = 256, where
     * both would hold 256 accumulators a thread), 3 both. */
    constexpr bool WK = !KV || (PART & 1), WV = KV && (PART & 2);
    using C = wgb_cfg<KV, D, FQ>;
    constexpr int BT = C::BT, BF = WGB_BF, STAGES = C::STAGES, NSB = C::NSB;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t raw = wg_smem(smem_raw), base = (raw + 1023u) & ~1023u;
    /* Without slack the kernel has no static shared memory, so the
     * dynamic part starts at the window's (aligned) beginning. */
    if (C::SLACK == 0 && base != raw) __trap();
    auto *info = reinterpret_cast<typename C::info_t *>(smem_raw + (base - raw) + C::INFO_OFF);
    int *hull = reinterpret_cast<int *>(info + STAGES);
    const uint32_t sa0 = base, sa1 = base + C::F_BYTES, bars = base + C::BAR_OFF;
    const uint32_t full_f = bars;
    auto full_t = [&](int s) { return bars + 8 * (1 + s); };
    auto empty_t = [&](int s) { return bars + 8 * (1 + STAGES + s); };
    /* Fused: consumer c's d_q staging buffer written (full) / read by the
     * copy engine (empty). */
    auto stage_full = [&](int c, int p) { return bars + 8 * (1 + 2 * STAGES + 2 * p + c); };
    auto stage_empty = [&](int c, int p) {
        return bars + 8 * (1 + 2 * STAGES + 2 * NSB + 2 * p + c);
    };
    auto stage_buf = [&](int c, int p) { return base + C::ST_OFF + (2 * p + c) * 16384u; };

    const int64_t b = blockIdx.z, hh = blockIdx.y; /* KV: kv head; d_q: head */
    const int row0 = KV ? (int)blockIdx.x * BF : (int)(gridDim.x - 1 - blockIdx.x) * BF;
    const int nfix = KV ? (int)G.lk : (int)G.lq;
    const int fix_end = row0 + BF < nfix ? row0 + BF : nfix;

    if (threadIdx.x < 32) {
        if (threadIdx.x == 0) {
            mbar_init(full_f, 1);
            for (int s = 0; s < STAGES; s++)
                mbar_init(full_t(s), 1), mbar_init(empty_t(s), 8);
            for (int p = 0; p < NSB; p++)
                for (int c = 0; c < 2; c++)
                    mbar_init(stage_full(c, p), 4), mbar_init(stage_empty(c, p), 1);
            mbar_init_fence();
            /* The fixed rows need no hull: their copies go out first, and
             * the consumers wait for them even when there is no tile. */
            const int zf = (int)(KV ? b * G.nkv + hh : b * G.nh + hh);
            mbar_arrive_tx(full_f, 2 * C::F_BYTES);
#pragma unroll
            for (int c = 0; c < D / 64; c++) {
                tma_load_3d(sa0 + c * BF * 128, &ta0, c * 64, row0, zf, full_f);
                tma_load_3d(sa1 + c * BF * 128, &ta1, c * 64, row0, zf, full_f);
            }
        }
        /* The hull of the fixed rows' ranges (KV: queries seeing the keys;
         * d_q: keys seen by the rows), and for d_q the largest lo and
         * smallest hi (tiles inside need no mask). */
        const int lane = threadIdx.x;
        int lo_min = INT_MAX, hi_max = 0, lo_max = INT_MIN, hi_min = INT_MAX;
#pragma unroll
        for (int k = 0; k < BF / 32; k++) {
            int lo, hi;
            if (KV)
                key_queries(G, row0 + lane + 32 * k, &lo, &hi);
            else
                row_keys(G, row0 + lane + 32 * k, &lo, &hi);
            if (lo < hi) {
                lo_min = min(lo_min, lo), hi_max = max(hi_max, hi);
                lo_max = max(lo_max, lo), hi_min = min(hi_min, hi);
            } else {
                lo_max = INT_MAX, hi_min = INT_MIN;
            }
        }
        lo_min = __reduce_min_sync(0xffffffffu, lo_min);
        hi_max = __reduce_max_sync(0xffffffffu, hi_max);
        lo_max = __reduce_max_sync(0xffffffffu, lo_max);
        hi_min = __reduce_min_sync(0xffffffffu, hi_min);
        if (lane == 0) hull[0] = lo_min, hull[1] = hi_max, hull[2] = lo_max, hull[3] = hi_min;
    }
    __syncthreads();
    /* Fused: tiles start on 64-row boundaries, the d_q buffer's blocks. */
    const int t_begin = FQ ? hull[0] & ~63 : hull[0], t_end = hull[1];
    const int nrt = t_end > t_begin ? (t_end - t_begin + BT - 1) / BT : 0; /* row tiles */
    const int ntiles = KV ? nrt * (int)G.group : nrt;
    /* Tile `it`: its first row and the z index (batch·heads + head) of its
     * tensor. KV: each block starts at the tile of its own keys' position
     * and wraps, so that blocks whose hulls coincide (block-causal, full)
     * do not add into the same d_q rows at the same time; causal and window
     * hulls begin there anyway. */
    int rot = 0;
    if (KV && nrt > 1) {
        const int qpos = row0 + (int)(G.lq - G.lk) - t_begin;
        rot = qpos > 0 ? min(qpos / BT, nrt - 1) : 0;
    }
    auto tile_row = [&](int it) {
        int i = KV ? it % nrt + rot : it;
        if (KV && i >= nrt) i -= nrt;
        return t_begin + i * BT;
    };
    auto tile_head = [&](int it) -> int64_t { return KV ? hh * G.group + it / nrt : hh / G.group; };

    if (threadIdx.x < 128) {
        /* ---- producer ---- */
        wg_setmaxnreg_dec<40>();
        if (FQ && threadIdx.x == 32) {
            /* d_q writer: adds each consumer's staged 64 × 64 share of a
             * tile (16 KiB in the consumer's register order) into its block
             * of the F32 sums, and frees the staging buffers once the copy
             * engine has read them. */
            const int64_t nb64 = (G.lq + 63) / 64;
            for (int it = 0; it < ntiles; it++) {
                const int64_t z = b * G.nh + tile_head(it);
                const int p = it % NSB;
                int64_t first[2] = {-1, -1};
#pragma unroll
                for (int c = 0; c < 2; c++) {
                    const int ms = D == 128 ? 0 : c, ns = D == 128 ? c : 0;
                    const int64_t blk = (z * nb64 + (tile_row(it) >> 6) + ms) * (D / 64) + ns;
                    mbar_wait(stage_full(c, p), (it / NSB) & 1);
                    /* d = 64: a tile's second half may lie past the last query. */
                    if ((tile_row(it) >> 6) + ms < nb64) {
                        const uint32_t src = stage_buf(c, p);
                        const int old = wgb_flag_claim(dq_flag + blk);
                        if (old == 0) {
                            bulk_store(dq_acc + blk * 4096, src, 16384);
                            first[c] = blk;
                        } else {
                            if (old == 1) wgb_flag_wait(dq_flag + blk);
                            fence_proxy_async_global();
                            bulk_reduce_add_f32(dq_acc + blk * 4096, src, 16384);
                        }
                    }
                }
                tma_commit(); /* one group per tile */
                /* Two buffers: the previous tile's are free once all but
                 * this tile's group have been read, so a consumer never
                 * waits for the copy engine to read the share it staged
                 * just before. One: this tile's, once it has been read. */
                if constexpr (NSB == 2) {
                    tma_wait_read<1>();
                    if (it > 0)
                        mbar_arrive(stage_empty(0, p ^ 1)), mbar_arrive(stage_empty(1, p ^ 1));
                } else {
                    tma_wait_read<0>();
                    mbar_arrive(stage_empty(0, 0)), mbar_arrive(stage_empty(1, 0));
                }
                if (first[0] >= 0 || first[1] >= 0) {
                    /* Tell the other blocks the first values have landed. */
                    tma_wait_all();
                    fence_proxy_async_global();
#pragma unroll
                    for (int c = 0; c < 2; c++)
                        if (first[c] >= 0) wgb_flag_publish(dq_flag + first[c]);
                }
            }
            /* The copy engine must be done reading the staging buffers
             * before the block's shared memory can go to the next block;
             * the last reductions complete before the grid does, which is
             * all the finish pass needs. */
            tma_wait_read<0>();
            return;
        }
        if (threadIdx.x >= 32) return;
        const int lane = threadIdx.x;
        for (int it = 0; it < ntiles; it++) {
            const int s = it % STAGES, t0 = tile_row(it);
            const int64_t h = tile_head(it);
            mbar_wait(empty_t(s), ((it / STAGES) & 1) ^ 1);
            const int zt = (int)(KV ? b * G.nh + h : b * G.nkv + h);
            /* The tile's copies go out before its lse and D are read (KV),
             * and the arrival that publishes those comes after them. */
            if (lane == 0) {
                if (KV)
                    mbar_expect_tx(full_t(s), 2 * C::T_BYTES);
                else
                    mbar_arrive_tx(full_t(s), 2 * C::T_BYTES);
#pragma unroll
                for (int c = 0; c < D / 64; c++) {
                    tma_load_3d(C::b0(base, s) + c * BT * 128, &tb0, c * 64, t0, zt, full_t(s));
                    tma_load_3d(C::b1(base, s) + c * BT * 128, &tb1, c * 64, t0, zt, full_t(s));
                }
            }
            if (KV) {
                const int64_t qbase = (b * G.nh + h) * G.lq;
                bool all = true;
#pragma unroll
                for (int k = 0; k < BT / 32; k++) {
                    const int j = lane + 32 * k, i = t0 + j;
                    int lo, hi;
                    row_keys(G, i, &lo, &hi);
                    info[s].lo[j] = lo, info[s].hi[j] = hi;
                    info[s].lse2[j] = i < G.lq ? lse[qbase + i] * WGB_LOG2E : 0.0f;
                    info[s].dd[j] = i < G.lq ? dsum[qbase + i] : 0.0f;
                    all = all && lo < hi && lo <= row0 && hi >= fix_end;
                }
                all = __all_sync(0xffffffffu, all);
                if (lane == 0) info[s].full = all;
                __threadfence_block();
                __syncwarp();
                if (lane == 0) mbar_arrive(full_t(s));
            }
            __syncwarp();
        }
        return;
    }

    /* ---- consumers: 64 fixed rows each ---- */
    wg_setmaxnreg_inc<232>();
    const int cw = (threadIdx.x >> 7) - 1, tid = threadIdx.x & 127;
    const int warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
    const float sl2 = G.scale * WGB_LOG2E;
    const uint32_t fa0 = sa0 + cw * 64 * 128, fa1 = sa1 + cw * 64 * 128;
    const int r0 = row0 + cw * 64 + warp * 16 + gq; /* this thread's rows r0, r0 + 8 */
    const int max_lo = hull[2], min_hi = hull[3];

    /* d_q: this thread's two query rows. */
    int lo[2] = {0, 0}, hi[2] = {0, 0};
    float lse2[2] = {0.0f, 0.0f}, dd[2] = {0.0f, 0.0f};
    const int64_t qbase = (b * G.nh + hh) * G.lq;
    if (!KV) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int row = r0 + 8 * r;
            row_keys(G, row, &lo[r], &hi[r]);
            if (row < G.lq) lse2[r] = lse[qbase + row] * WGB_LOG2E, dd[r] = dsum[qbase + row];
        }
    }

    float acc0[WK ? D / 2 : 1], acc1[WV ? D / 2 : 1];
#pragma unroll
    for (int i = 0; i < (WK ? D / 2 : 1); i++)
        acc0[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < (WV ? D / 2 : 1); i++)
        acc1[i] = 0.0f;

    /* The two consumers run unsynchronised: taking turns to issue (named
     * barriers, as the forward does) measured the same within noise (+2%
     * block-causal, −5% window on d_q), so it is left out. */
    mbar_wait(full_f, 0);
    for (int it = 0; it < ntiles; it++) {
        const int s = it % STAGES, t0 = tile_row(it);
        const uint32_t tb0s = C::b0(base, s), tb1s = C::b1(base, s);
        mbar_wait(full_t(s), (it / STAGES) & 1);
        float sc[BT / 2], dp[BT / 2];
        wg_fence();
        wgb_issue_scores<D, BT>(sc, fa0, tb0s);
        wg_commit();
        if constexpr (WK) wgb_issue_scores<D, BT>(dp, fa1, tb1s);
        wg_commit();
        if constexpr (FQ && NSB == 2) {
            /* The previous tile's d_q share goes to the writer only now:
             * its stores have long drained, so the proxy fence costs
             * little here, where right after them it waited for them. */
            if (it > 0) wgb_stage_publish(stage_full(cw, (it - 1) % NSB), lane);
        }
        /* Read before the wait (and after the fence, which would wait for
         * it), so that the load's latency hides under the products. */
        const bool full = KV ? info[s].full != 0 : t0 >= max_lo && t0 + BT <= min_hi;
        wg_wait<1>();
        wg_fence_regs(sc);

        uint32_t x[BT / 16][4];
        /* P (in sc) from the scores. */
        if constexpr (KV) {
            if (full)
                wgb_probs_kv<false, BT>(sc, info[s], r0, tq, sl2);
            else
                wgb_probs_kv<true, BT>(sc, info[s], r0, tq, sl2);
        } else {
            if (full)
                wgb_probs_q<false, BT>(sc, t0, lo, hi, lse2, tq, sl2);
            else
                wgb_probs_q<true, BT>(sc, t0, lo, hi, lse2, tq, sl2);
        }
        wg_wait<0>();
        wg_fence_regs(dp);
        /* dS (in dp). */
#pragma unroll
        for (int c8 = 0; c8 < (WK ? BT / 8 : 0); c8++) {
            float2 d2;
            if constexpr (KV) d2 = *reinterpret_cast<const float2 *>(&info[s].dd[8 * c8 + 2 * tq]);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = 4 * c8 + e;
                const float d = KV ? ((e & 1) ? d2.y : d2.x) : dd[e >> 1];
                dp[i] = sc[i] * (dp[i] - d);
            }
        }
        /* dV += Pᵀ·dO, dK += dSᵀ·Q (KV); dQ += dS·K. P and dS are rounded
         * to bf16 only here: dS uses the fp32 P. */
        uint32_t y[BT / 16][4];
#pragma unroll
        for (int j = 0; j < (WK ? BT / 16 : 0); j++)
            wg_acc_to_a(y[j], dp, j);
        if constexpr (WV) {
#pragma unroll
            for (int j = 0; j < BT / 16; j++)
                wg_acc_to_a(x[j], sc, j);
        }
        if constexpr (FQ) {
            const uint32_t dsb = base + C::DS_OFF + (it & 1) * C::DS_BYTES;
            /* This consumer's 64 rows of dSᵀ into the buffer, four 8 × 8
             * matrices of y[j] a store: lane l gives the address of row
             * l % 8 of matrix l / 8 (rows + 8 for odd matrices, columns + 8
             * for the last two), as y[j][m] holds them. */
            const int kr = cw * 64 + warp * 16 + (lane & 7) + 8 * ((lane >> 3) & 1);
#pragma unroll
            for (int j = 0; j < BT / 16; j++) {
                const int col = 16 * j + 8 * (lane >> 4);
                const uint32_t a = dsb + (col >> 6) * WGB_DS_SLAB + sw128_offset(kr, col & 63);
                asm volatile(
                    "stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(a),
                    "r"(y[j][0]), "r"(y[j][1]), "r"(y[j][2]), "r"(y[j][3])
                    : "memory");
            }
            wg_fence_proxy_async();
        }
        wg_fence_regs(acc0);
        if constexpr (KV) wg_fence_regs(acc1);
        wg_fence();
        if constexpr (WV) wgb_issue_grad<D, BT>(acc1, x, tb1s);
        /* Fused, dK goes after dQ, so that this consumer stages its d_q
         * while the tensor cores run dK. */
        if constexpr (!FQ && WK) wgb_issue_grad<D, BT>(acc0, y, tb0s);
        wg_commit();
        if constexpr (FQ) {
            /* dQ_tile = dS·K over the block's 128 keys once both consumers
             * have stored their dSᵀ rows. Consumer cw takes D columns
             * [64cw, 64cw + 64) at d = 128 (BT = 64), query rows
             * [64cw, 64cw + 64) at d = 64 (BT = 128). The buffers alternate:
             * a consumer reaches this barrier again only after its product
             * that read the other buffer has completed. */
            const uint32_t dsb = base + C::DS_OFF + (it & 1) * C::DS_BYTES;
            const int ms = D == 128 ? 0 : cw, ns = D == 128 ? cw : 0;
            float dq[32];
#pragma unroll
            for (int i = 0; i < 32; i++)
                dq[i] = 0.0f;
            wg_bar_sync(1, 256);
            wg_fence_regs(dq);
            wg_fence();
#pragma unroll
            for (int j = 0; j < WGB_BF / 16; j++)
                wg_mma_ss_tt64(dq, wg_desc(dsb + ms * WGB_DS_SLAB + 2048 * j, WGB_DS_SLAB, 1024),
                               wg_desc(sa0 + ns * WGB_BF * 128 + 2048 * j, WGB_BF * 128, 1024),
                               j > 0);
            wg_commit();
            wgb_issue_grad<D, BT>(acc0, y, tb0s);
            wg_commit();
            wg_wait<1>();
            wg_fence_regs(dq);
            {
                /* Through this consumer's staging buffer, in register
                 * order (float4 k of thread t at 16·(128k + t): no bank
                 * conflicts), to the d_q writer, once it has had the
                 * previous tile's read. */
                const int p = it % NSB;
                const uint32_t stg = stage_buf(cw, p);
                mbar_wait(stage_empty(cw, p), ((it / NSB) & 1) ^ 1);
#pragma unroll
                for (int k4 = 0; k4 < 8; k4++)
                    asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(
                                     stg + 16 * (128 * k4 + tid)),
                                 "f"(dq[4 * k4]), "f"(dq[4 * k4 + 1]), "f"(dq[4 * k4 + 2]),
                                 "f"(dq[4 * k4 + 3])
                                 : "memory");
                if constexpr (NSB == 1) wgb_stage_publish(stage_full(cw, p), lane);
            }
            wg_wait<0>();
            wg_fence_regs(acc0);
            wg_fence_regs(acc1);
            if (lane == 0) mbar_arrive(empty_t(s));
        } else {
            wg_wait<0>();
            wg_fence_regs(acc0);
            if constexpr (KV) wg_fence_regs(acc1);
            if (lane == 0) mbar_arrive(empty_t(s));
        }
    }

    if constexpr (FQ && NSB == 2) {
        if (ntiles > 0) wgb_stage_publish(stage_full(cw, (ntiles - 1) % NSB), lane);
    }

    /* Epilogue: KV writes dK = acc0·scale (out0) and dV = acc1 (out1); d_q
     * writes dQ = acc0·scale (out0). Each result goes through this
     * consumer's 64 rows of the second fixed tensor (V or dO), which only
     * its own products read and which are free now: bf16 pairs in, with the
     * 16-byte pieces of a row XOR-swizzled by the row (no bank conflicts
     * either way), then whole rows out in 16-byte stores (straight from
     * registers, a store instruction wrote 16 bytes into each of 8 rows). */
    const int64_t obase = KV ? (b * G.nkv + hh) * G.lk : qbase;
    const uint32_t stg = sa1 + cw * 64 * 128; /* slab j (columns 64j..) at + j·BF·128 */
    /* The address of a row's 16-byte piece. */
    auto stage_at = [&](int row, int piece) -> uint32_t {
        return stg + (piece >> 3) * (WGB_BF * 128) + row * 128 + (((piece & 7) ^ (row & 7)) << 4);
    };
#pragma unroll
    for (int which = 0; which < (KV ? 2 : 1); which++) {
        bf16 *out = which ? out1 : out0;
        if (!out || (which ? !WV : !WK)) continue;
        const float sc = which ? 1.0f : G.scale;
        if (which) wg_bar_sync(3 + cw, 128); /* the last copy-out has read the buffer */
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int lr = warp * 16 + gq + 8 * r;
#pragma unroll
            for (int i = 0; i < D / 8; i++) {
                const float x0 =
                    which ? acc1[WV ? 4 * i + 2 * r : 0] : acc0[WK ? 4 * i + 2 * r : 0];
                const float x1 =
                    which ? acc1[WV ? 4 * i + 2 * r + 1 : 0] : acc0[WK ? 4 * i + 2 * r + 1 : 0];
                const __nv_bfloat162 v = __floats2bfloat162_rn(x0 * sc, x1 * sc);
                asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(stage_at(lr, i) + 4 * tq),
                             "r"(*reinterpret_cast<const uint32_t *>(&v))
                             : "memory");
            }
        }
        wg_bar_sync(3 + cw, 128);
        const bool v16 = ((uintptr_t)out & 15) == 0;
#pragma unroll
        for (int k = 0; k < 64 * (D / 8) / 128; k++) {
            const int q = tid + 128 * k, row = q / (D / 8), piece = q % (D / 8);
            const int grow = row0 + cw * 64 + row;
            if (grow >= nfix) continue;
            uint32_t w0, w1, w2, w3;
            asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                         : "=r"(w0), "=r"(w1), "=r"(w2), "=r"(w3)
                         : "r"(stage_at(row, piece))
                         : "memory");
            bf16 *dst = out + (obase + grow) * D + piece * 8;
            if (v16) {
                *reinterpret_cast<uint4 *>(dst) = make_uint4(w0, w1, w2, w3);
            } else { /* the outputs need only be 4-byte aligned */
                uint32_t *d4 = reinterpret_cast<uint32_t *>(dst);
                d4[0] = w0, d4[1] = w1, d4[2] = w2, d4[3] = w3;
            }
        }
    }
#endif /* WGMMA_DEVICE */
}

namespace {

/* Whether this device runs the sm_90a image of the kernels (as the
 * forward's probe, attention_wgmma_fwd.cu). */
bool wgb_probe(int dev) {
    int major = 0, minor = 0, built = 0;
    cudaFuncAttributes fa;
    bool ok =
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
        major == 9 && minor == 0;
    ok = ok &&
         cudaFuncGetAttributes(&fa, attn_wgmma_bwd_kernel<true, 64, false, 3>) == cudaSuccess &&
         cudaFuncGetAttributes(&fa, attn_wgmma_bwd_kernel<true, 128, false, 3>) == cudaSuccess &&
         cudaFuncGetAttributes(&fa, attn_wgmma_bwd_kernel<true, 64, true, 3>) == cudaSuccess &&
         cudaFuncGetAttributes(&fa, attn_wgmma_bwd_kernel<true, 128, true, 3>) == cudaSuccess &&
         cudaFuncGetAttributes(&fa, attn_wgmma_bwd_kernel<true, 256, false, 1>) == cudaSuccess &&
         cudaFuncGetAttributes(&fa, attn_wgmma_bwd_kernel<true, 256, false, 2>) == cudaSuccess &&
         cudaFuncGetAttributes(&fa, attn_wgmma_bwd_kernel<false, 64, false, 3>) == cudaSuccess &&
         cudaFuncGetAttributes(&fa, attn_wgmma_bwd_kernel<false, 128, false, 3>) == cudaSuccess &&
         cudaFuncGetAttributes(&fa, attn_wgmma_bwd_kernel<false, 256, false, 3>) == cudaSuccess;
    ok = ok && cudaMemcpyFromSymbol(&built, attn_wgmma_bwd_built, sizeof built) == cudaSuccess &&
         built == 1;
    ok = ok && wg_encode_fn() != NULL;
    (void)cudaGetLastError();
    return ok;
}

signed char wgb_known[64]; /* per device: 0 not asked yet, 1 usable, -1 not */

/* Bits of the kernels to run on wgmma: 1 d_k/d_v, 2 d_q. */
int wgb_parts(void) {
    const char *e = getenv("LACT_ATTN_WGMMA_BWD");
    int parts = 3;
    if (e && strcmp(e, "0") == 0) parts = 0;
    if (e && strcmp(e, "dkv") == 0) parts = 1;
    if (e && strcmp(e, "dq") == 0) parts = 2;
    if (!parts) return 0;
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        (void)cudaGetLastError();
        return 0;
    }
    if (!wgb_known[dev]) wgb_known[dev] = wgb_probe(dev) ? 1 : -1;
    return wgb_known[dev] > 0 ? parts : 0;
}

template <bool KV, int D, bool FQ, int PART = 3>
lact_status wgb_launch(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *out0, bf16 *out1,
                       const bf16 *a0, const bf16 *a1, const bf16 *b0, const bf16 *b1,
                       const float *lse, const float *dsum, float *dq_acc, int *dq_flag) {
    using C = wgb_cfg<KV, D, FQ>;
    const int64_t nfix = KV ? G.lk : G.lq, ntile = KV ? G.lq : G.lk;
    const int64_t zf = nb * (KV ? G.nkv : G.nh), zt = nb * (KV ? G.nh : G.nkv);
    if (nfix <= 0 || zf <= 0) return LACT_OK;
    CUtensorMap m0, m1, m2, m3;
    LACT_TRY(wg_tensor_map_bf16(&m0, a0, D, (uint64_t)nfix, (uint64_t)zf, WGB_BF));
    LACT_TRY(wg_tensor_map_bf16(&m1, a1, D, (uint64_t)nfix, (uint64_t)zf, WGB_BF));
    LACT_TRY(wg_tensor_map_bf16(&m2, b0, D, (uint64_t)ntile, (uint64_t)zt, C::BT));
    LACT_TRY(wg_tensor_map_bf16(&m3, b1, D, (uint64_t)ntile, (uint64_t)zt, C::BT));
    LACT_CU(cudaFuncSetAttribute(attn_wgmma_bwd_kernel<KV, D, FQ, PART>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
    dim3 grid((unsigned)((nfix + WGB_BF - 1) / WGB_BF), (unsigned)(KV ? G.nkv : G.nh),
              (unsigned)nb);
    attn_wgmma_bwd_kernel<KV, D, FQ, PART><<<grid, WGB_THREADS, C::SMEM, lact_cuda_stream(ctx)>>>(
        m0, m1, m2, m3, out0, out1, lse, dsum, dq_acc, dq_flag, G);
    LACT_CU_LAUNCH(KV ? "attention backward d_k/d_v (wgmma)" : "attention backward d_q (wgmma)");
    return LACT_OK;
}

/* The fused path's last pass: dq = bf16(acc · scale); zeros where no key
 * block wrote (flag 0: the block holds whatever an earlier call left). acc
 * holds, per (batch·head, 64-row block, 64-column half), the 64 × 64 block
 * in the consumers' register order: float4 k of thread t (t = 32·w + 4·a +
 * b) holds rows 16·w + a and 16·w + a + 8 at columns 8·k + 2·b and
 * 8·k + 2·b + 1. A block of 128 threads per half reads its half in that
 * order (16-byte loads, each thread's eight in flight), puts the rounded
 * values in place in shared memory and writes whole 16-byte pieces of the
 * rows. */
template <int D>
__global__ void __launch_bounds__(128 * (D / 64))
    wgb_dq_finish_kernel(bf16 *__restrict__ dq, const float *__restrict__ acc,
                         const int *__restrict__ flag, int64_t nb64, int64_t lq, float scale) {
    constexpr int PITCH = D + 8; /* bf16s a row: conflict-free 4-byte stores */
    __shared__ __align__(16) bf16 tile[64 * PITCH];
    const int64_t zr = blockIdx.x, z = zr / nb64, row0 = (zr - z * nb64) * 64;
    const int half = threadIdx.x >> 7, t = threadIdx.x & 127;
    const int64_t bi = zr * (D / 64) + half;
    const bool on = flag[bi] != 0;
    const float4 *src = reinterpret_cast<const float4 *>(acc + bi * 4096);
    float4 v[8];
#pragma unroll
    for (int k = 0; k < 8; k++)
        v[k] = on ? src[128 * k + t] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const int r = 16 * (t >> 5) + ((t & 31) >> 2), cb = half * 64 + 2 * (t & 3);
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const int c = cb + 8 * k;
        *reinterpret_cast<__nv_bfloat162 *>(&tile[r * PITCH + c]) =
            __floats2bfloat162_rn(v[k].x * scale, v[k].y * scale);
        *reinterpret_cast<__nv_bfloat162 *>(&tile[(r + 8) * PITCH + c]) =
            __floats2bfloat162_rn(v[k].z * scale, v[k].w * scale);
    }
    __syncthreads();
    const int64_t nrow = lq - row0 < 64 ? lq - row0 : 64;
    bf16 *out = dq + (z * lq + row0) * D;
    if (((uintptr_t)dq & 15) == 0) {
        for (int i = threadIdx.x; i < 64 * (D / 8); i += blockDim.x) {
            const int rr = i / (D / 8), cc = i % (D / 8);
            if (rr < nrow)
                *reinterpret_cast<uint4 *>(out + rr * D + cc * 8) =
                    *reinterpret_cast<const uint4 *>(&tile[rr * PITCH + cc * 8]);
        }
    } else { /* d_q need only be 4-byte aligned */
        for (int i = threadIdx.x; i < 64 * (D / 2); i += blockDim.x) {
            const int rr = i / (D / 2), cc = i % (D / 2);
            if (rr < nrow)
                *reinterpret_cast<__nv_bfloat162 *>(out + rr * D + cc * 2) =
                    *reinterpret_cast<const __nv_bfloat162 *>(&tile[rr * PITCH + cc * 2]);
        }
    }
}

template <int D>
lact_status wgb_fused(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *dq, bf16 *dk, bf16 *dv,
                      const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *dout,
                      const float *lse, const float *dsum) {
    const int64_t nb64 = (G.lq + 63) / 64, nrb = nb * G.nh * nb64; /* 64-row blocks */
    const int64_t n = nrb * 64 * D, nblk = n / 4096; /* 64 × 64 blocks, one flag each */
    if (nrb > INT32_MAX)
        return lact_fail(LACT_E_UNSUPPORTED, "attention backward: too many 64-row blocks of d_q");
    float *acc = NULL;
    LACT_TRY(lact_cuda_buffer(ctx, LACT_BUF_ATTN_DQ_ACC,
                              (size_t)n * sizeof(float) + (size_t)nblk * sizeof(int),
                              (void **)&acc));
    int *flag = (int *)(acc + n);
    cudaStream_t st = lact_cuda_stream(ctx);
    LACT_CU(cudaMemsetAsync(flag, 0, (size_t)nblk * sizeof(int), st));
    LACT_TRY((wgb_launch<true, D, true>(ctx, G, nb, dk, dv, k, v, q, dout, lse, dsum, acc, flag)));
    if (nrb == 0) return LACT_OK; /* no query rows: d_k and d_v are written, zero */
    wgb_dq_finish_kernel<D><<<(unsigned)nrb, 128 * (D / 64), 0, st>>>(dq, acc, flag, nb64, G.lq,
                                                                       G.scale);
    LACT_CU_LAUNCH("attention backward d_q finish");
    return LACT_OK;
}

/* Whether LACT_ATTN_DETERMINISTIC asks for the bit-reproducible backward. */
bool wgb_deterministic(void) {
    const char *e = getenv("LACT_ATTN_DETERMINISTIC");
    return e && *e && strcmp(e, "0") != 0;
}

} // namespace

bool attn_wgmma_bwd_ready(void) {
    return wgb_parts() != 0;
}

lact_status attn_wgmma_backward(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *dq, bf16 *dk,
                                bf16 *dv, const bf16 *q, const bf16 *k, const bf16 *v,
                                const bf16 *dout, const float *lse, const float *dsum) {
    const int parts = wgb_parts();
    const bool wkv = (parts & 1) && (dk || dv), wq = (parts & 2) && dq;
    if (wkv && wq && !wgb_deterministic() && G.d != 256)
        return G.d == 64 ? wgb_fused<64>(ctx, G, nb, dq, dk, dv, q, k, v, dout, lse, dsum)
                         : wgb_fused<128>(ctx, G, nb, dq, dk, dv, q, k, v, dout, lse, dsum);
    if (wkv && G.d == 256) {
        if (dk)
            LACT_TRY((wgb_launch<true, 256, false, 1>(ctx, G, nb, dk, NULL, k, v, q, dout, lse,
                                                      dsum, NULL, NULL)));
        if (dv)
            LACT_TRY((wgb_launch<true, 256, false, 2>(ctx, G, nb, NULL, dv, k, v, q, dout, lse,
                                                      dsum, NULL, NULL)));
    } else if (wkv) {
        if (G.d == 64)
            LACT_TRY((wgb_launch<true, 64, false>(ctx, G, nb, dk, dv, k, v, q, dout, lse, dsum,
                                                  NULL, NULL)));
        else
            LACT_TRY((wgb_launch<true, 128, false>(ctx, G, nb, dk, dv, k, v, q, dout, lse, dsum,
                                                   NULL, NULL)));
    }
    if (wq) {
        if (G.d == 64)
            LACT_TRY((wgb_launch<false, 64, false>(ctx, G, nb, dq, NULL, q, dout, k, v, lse, dsum,
                                                   NULL, NULL)));
        else if (G.d == 256)
            LACT_TRY((wgb_launch<false, 256, false>(ctx, G, nb, dq, NULL, q, dout, k, v, lse, dsum,
                                                    NULL, NULL)));
        else
            LACT_TRY((wgb_launch<false, 128, false>(ctx, G, nb, dq, NULL, q, dout, k, v, lse, dsum,
                                                    NULL, NULL)));
    }
    /* The parts switched off run on the mma.sync kernels. */
    if ((!wq && dq) || (!wkv && (dk || dv)))
        LACT_TRY(attn_tc_backward(ctx, G, nb, wq ? NULL : dq, wkv ? NULL : dk, wkv ? NULL : dv, q,
                                  k, v, dout, lse, dsum));
    return LACT_OK;
}

extern "C" bool lact_cuda_attention_wgmma_bwd_active(void) {
    return attn_wgmma_bwd_ready();
}
