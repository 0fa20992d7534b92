/* The BF16 attention forward on Hopper's warpgroup MMA (sm_90a), head dims
 * 64, 128 and 256; same contract as attention_tc_fwd.cu (y with the gate,
 * lse in natural log), so the mma.sync backward takes its outputs unchanged.
 *
 * Work item: BM = 128 query rows of one (batch, head). A persistent grid of
 * at most one block per multiprocessor takes the items from a counter,
 * longest first within sections of heads that share L2 (wgf_item_at). A
 * block is three warpgroups. Warpgroup 0 is the producer (40 registers):
 * its first warp finds each item's key hull (every mask, Lq < Lk, packed
 * sequences: row_keys) and its first thread brings Q and the K/V tiles of
 * BN = 128 keys (64 at d = 256) covering the hull through the bulk tensor
 * copy engine into STAGES shared buffers (128-byte swizzle, wgmma.cuh),
 * each completing on an mbarrier; tiles outside every row's range are never
 * loaded. Warpgroups 1 and 2 are consumers (232 registers), 64 query rows each: S = Q·Kᵀ with
 * both operands in shared memory, the online softmax in registers (base 2,
 * scale·log2 e folded in, P rounded to bf16; the element mask only on tiles
 * that cut some row's range), O += P·V with P from registers and V read
 * transposed by its descriptor.
 *
 * Overlap: each consumer issues S for tile j and P·V for tile j − 1
 * together, then runs the softmax of tile j while P·V is still in the
 * tensor cores; the two consumers take turns issuing their products (named
 * barriers 1 and 2), so one's softmax runs under the other's products. K
 * and V buffers are released separately (K after S, V after P·V) so that
 * the producer refills K a tile earlier, and Q is released after an item's
 * last S, so the next item's Q and first tiles arrive during its tail. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "kernels/cuda/attention_cuda.h"
#include "kernels/cuda/attention_geom.cuh"
#include "kernels/cuda/wgmma.cuh"

#define WGF_LOG2E 1.4426950408889634f
#define WGF_LN2 0.6931471805599453f

namespace {

constexpr int WGF_BM = 128, WGF_THREADS = 384;

/* Keys per K/V tile: 128, but 64 at d = 256, where a consumer's 64 × 256
 * output alone holds 128 accumulators a thread and two 256-wide tiles fill
 * shared memory. */
template <int D> constexpr int wgf_bn() {
    return D == 256 ? 64 : 128;
}

/* Shared memory: Q, then STAGES K tiles, STAGES V tiles, the mbarriers
 * (full and empty Q; full K, full V, empty K, empty V per stage), and 1024
 * bytes of slack to align the base for the swizzle. */
template <int D, int STAGES> struct wgf_cfg {
    static constexpr uint32_t Q_BYTES = WGF_BM * D * 2, KV_BYTES = wgf_bn<D>() * D * 2;
    static constexpr uint32_t K_OFF = Q_BYTES, V_OFF = K_OFF + STAGES * KV_BYTES,
                              BAR_OFF = V_OFF + STAGES * KV_BYTES;
    static constexpr uint32_t SMEM = BAR_OFF + 8 * (2 + 4 * STAGES) + 1024;
    static __device__ __forceinline__ uint32_t full_q(uint32_t bars) { return bars; }
    static __device__ __forceinline__ uint32_t empty_q(uint32_t bars) { return bars + 8; }
    static __device__ __forceinline__ uint32_t full_k(uint32_t bars, int s) {
        return bars + 8 * (2 + s);
    }
    static __device__ __forceinline__ uint32_t full_v(uint32_t bars, int s) {
        return bars + 8 * (2 + STAGES + s);
    }
    static __device__ __forceinline__ uint32_t empty_k(uint32_t bars, int s) {
        return bars + 8 * (2 + 2 * STAGES + s);
    }
    static __device__ __forceinline__ uint32_t empty_v(uint32_t bars, int s) {
        return bars + 8 * (2 + 3 * STAGES + s);
    }
};

} // namespace

/* Set to 1 by the sm_90a pass only: tells the host that the loaded image
 * holds the kernel's body rather than the empty one of other targets. */
__device__ int attn_wgmma_built = WGMMA_DEVICE;

#if WGMMA_DEVICE

/* Rows [row0, row0 + BM) as seen by one warp (four rows a lane): the hull
 * [lo, hi) of their key ranges, and the largest lo and smallest hi (a tile
 * inside [max_lo, min_hi) needs no mask). */
static __device__ void wgf_hull(const attn_geom &G, int row0, int lane, int *h) {
    int lo_min = INT_MAX, hi_max = 0, lo_max = INT_MIN, hi_min = INT_MAX;
#pragma unroll
    for (int k = 0; k < WGF_BM / 32; k++) {
        int lo, hi;
        row_keys(G, row0 + lane + 32 * k, &lo, &hi);
        if (lo < hi) {
            lo_min = min(lo_min, lo), hi_max = max(hi_max, hi);
            lo_max = max(lo_max, lo), hi_min = min(hi_min, hi);
        } else { /* a row past the end: no tile is mask-free */
            lo_max = INT_MAX, hi_min = INT_MIN;
        }
    }
    h[0] = __reduce_min_sync(0xffffffffu, lo_min);
    h[1] = __reduce_max_sync(0xffffffffu, hi_max);
    h[2] = __reduce_max_sync(0xffffffffu, lo_max);
    h[3] = __reduce_min_sync(0xffffffffu, hi_min);
}

/* S (64 rows × BN keys) = Q·Kᵀ: Q rows of this warpgroup at sq (slab stride
 * BM·128 bytes), the K tile at sk (slab stride BN·128). */
template <int D, int BN = wgf_bn<D>()>
static __device__ __forceinline__ void wgf_issue_qk(float (&s)[BN / 2], uint32_t sq, uint32_t sk) {
#pragma unroll
    for (int c = 0; c < D / 16; c++) {
        const uint64_t da = wg_desc(sq + (c / 4) * WGF_BM * 128 + (c % 4) * 32, 16, 1024);
        const uint64_t db = wg_desc(sk + (c / 4) * BN * 128 + (c % 4) * 32, 16, 1024);
        wg_mma_ss<BN>(s, da, db, c > 0);
    }
}

/* O (64 × D) += P·V: P from registers, V tile at sv read N-major. */
template <int D, int BN = wgf_bn<D>()>
static __device__ __forceinline__ void wgf_issue_pv(float (&o)[D / 2],
                                                    const uint32_t (&p)[BN / 16][4], uint32_t sv) {
#pragma unroll
    for (int j = 0; j < BN / 16; j++)
        wg_mma_rs_tb<D>(o, p[j], wg_desc(sv + j * 2048, BN * 128, 1024));
}

/* Mask (MASK: the tile cuts some row's range), scale to base 2 and take the
 * tile into the running max and sum of this thread's two rows; s becomes
 * the unnormalised probabilities, alpha the factor for O. With a positive
 * scale (FMA) the max is taken on the raw scores and scaling and shifting
 * are one FFMA; a negative scale multiplies first. */
template <bool MASK, bool FMA, int NS>
static __device__ __forceinline__ void wgf_softmax(float (&s)[NS], int t0, const int (&lo)[2],
                                                   const int (&hi)[2], float sl2, float (&m)[2],
                                                   float (&l)[2], float (&alpha)[2], int lane) {
    const int tq = lane & 3;
#pragma unroll
    for (int i = 0; i < NS; i++) {
        const int key = t0 + 8 * (i >> 2) + 2 * tq + (i & 1), r = (i >> 1) & 1;
        if (!FMA) s[i] *= sl2;
        if (MASK && (key < lo[r] || key >= hi[r])) s[i] = -INFINITY;
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < NS / 4; j++)
            mx = fmaxf(mx, fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mn = fmaxf(m[r], FMA ? mx * sl2 : mx);
        const float base = mn == -INFINITY ? 0.0f : mn; /* a row with no key yet */
        alpha[r] = wg_exp2(m[r] - base);
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < NS / 4; j++) {
#pragma unroll
            for (int e = 0; e < 2; e++) {
                float &x = s[4 * j + 2 * r + e];
                x = wg_exp2(FMA ? fmaf(x, sl2, -base) : x - base);
                sum += x;
            }
        }
        l[r] = l[r] * alpha[r] + sum;
        m[r] = mn;
    }
}

template <int NS>
static __device__ __forceinline__ void
wgf_softmax_tile(float (&s)[NS], int t0, bool full, const int (&lo)[2], const int (&hi)[2],
                 float sl2, float (&m)[2], float (&l)[2], float (&alpha)[2], int lane) {
    if (sl2 > 0.0f) {
        if (full)
            wgf_softmax<false, true>(s, t0, lo, hi, sl2, m, l, alpha, lane);
        else
            wgf_softmax<true, true>(s, t0, lo, hi, sl2, m, l, alpha, lane);
    } else {
        if (full)
            wgf_softmax<false, false>(s, t0, lo, hi, sl2, m, l, alpha, lane);
        else
            wgf_softmax<true, false>(s, t0, lo, hi, sl2, m, l, alpha, lane);
    }
}

/* Work item `item`: its first query row, batch and head. The (batch, head)
 * pairs are cut into sections of `sect` consecutive pairs whose keys and
 * values fit in L2 together; a section's items run longest first, head
 * after head within a row block, so the blocks running at one time read the
 * same few heads' K and V and those come from L2 (across all heads at once
 * they came from DRAM, 5 GB a causal 8K forward). Blocks take the items
 * in this order from a counter as they finish the previous ones (a fixed
 * assignment balanced badly once sections break the longest-first order). */
struct wgf_item {
    int row0;
    int64_t b, h;
};
static __device__ __forceinline__ wgf_item wgf_item_at(const attn_geom &G, int nb, int sect,
                                                       int item) {
    const int nqb = (int)((G.lq + WGF_BM - 1) / WGF_BM), nbh = nb * (int)G.nh;
    const int per = sect * nqb, sec = item / per, within = item - sec * per;
    const int heads = min(sect, nbh - sec * sect);
    const int bh = sec * sect + within % heads;
    return {(nqb - 1 - within / heads) * WGF_BM, bh / G.nh, bh % G.nh};
}

#endif /* WGMMA_DEVICE */

/* A persistent grid (at most one block per multiprocessor) whose blocks
 * loop over work items (wgf_item_at); the producer brings the next item's
 * Q and first K/V tiles while the consumers finish the current one. */
template <int D, int STAGES>
__global__ void __launch_bounds__(WGF_THREADS, 1)
    attn_wgmma_fwd_kernel(const __grid_constant__ CUtensorMap tq,
                          const __grid_constant__ CUtensorMap tk,
                          const __grid_constant__ CUtensorMap tv, bf16 *__restrict__ y,
                          float *__restrict__ lse, const bf16 *__restrict__ g, attn_geom G, int nb,
                          int sect, int n_items, int *__restrict__ sched) {
#if WGMMA_DEVICE
    using C = wgf_cfg<D, STAGES>;
    constexpr int BM = WGF_BM, BN = wgf_bn<D>();
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    __shared__ int hull[4];
    __shared__ int cur_item; /* the item whose Q the last full_q brought; −1: no more */
    const uint32_t sbase = (wg_smem(smem_raw) + 1023u) & ~1023u;
    const uint32_t sq = sbase, sk = sbase + C::K_OFF, sv = sbase + C::V_OFF,
                   bars = sbase + C::BAR_OFF;

    if (threadIdx.x == 0) {
        mbar_init(C::full_q(bars), 1), mbar_init(C::empty_q(bars), 8);
        for (int s = 0; s < STAGES; s++) {
            mbar_init(C::full_k(bars, s), 1), mbar_init(C::full_v(bars, s), 1);
            mbar_init(C::empty_k(bars, s), 8), mbar_init(C::empty_v(bars, s), 8);
        }
        mbar_init_fence();
    }
    __syncthreads();

    if (threadIdx.x < 128) {
        /* ---- producer: warp 0 finds each item's hull, its lane 0 loads ---- */
        wg_setmaxnreg_dec<40>();
        if (threadIdx.x < 32) {
            const int lane = threadIdx.x;
            int kv = 0; /* K/V tiles loaded so far: stage kv % STAGES */
            for (int qi = 0;; qi++) {
                /* The block's first item is its index, the next ones come
                 * from the shared counter, so a block that finishes early
                 * takes more. */
                int item = 0;
                if (lane == 0)
                    item = qi == 0 ? (int)blockIdx.x : (int)gridDim.x + atomicAdd(sched, 1);
                item = __shfl_sync(0xffffffffu, item, 0);
                if (item >= n_items) {
                    if (lane == 0) {
                        mbar_wait(C::empty_q(bars), (qi & 1) ^ 1);
                        cur_item = -1;
                        mbar_arrive(C::full_q(bars));
                    }
                    break;
                }
                const wgf_item w = wgf_item_at(G, nb, sect, item);
                int hl[4];
                wgf_hull(G, w.row0, lane, hl);
                const int ntiles = hl[1] > hl[0] ? (hl[1] - hl[0] + BN - 1) / BN : 0;
                if (lane == 0) {
                    const int zq = (int)(w.b * G.nh + w.h), zk = (int)(w.b * G.nkv + w.h / G.group);
                    mbar_wait(C::empty_q(bars), (qi & 1) ^ 1);
                    hull[0] = hl[0], hull[1] = hl[1], hull[2] = hl[2], hull[3] = hl[3];
                    cur_item = item;
                    mbar_arrive_tx(C::full_q(bars), C::Q_BYTES);
#pragma unroll
                    for (int c = 0; c < D / 64; c++)
                        tma_load_3d(sq + c * BM * 128, &tq, c * 64, w.row0, zq, C::full_q(bars));
                    for (int it = 0; it < ntiles; it++, kv++) {
                        const int s = kv % STAGES, t0 = hl[0] + it * BN;
                        const uint32_t ph = ((kv / STAGES) & 1) ^ 1;
                        const uint32_t kd = sk + s * C::KV_BYTES, vd = sv + s * C::KV_BYTES;
                        mbar_wait(C::empty_k(bars, s), ph);
                        mbar_arrive_tx(C::full_k(bars, s), C::KV_BYTES);
#pragma unroll
                        for (int c = 0; c < D / 64; c++)
                            tma_load_3d(kd + c * BN * 128, &tk, c * 64, t0, zk, C::full_k(bars, s));
                        mbar_wait(C::empty_v(bars, s), ph);
                        mbar_arrive_tx(C::full_v(bars, s), C::KV_BYTES);
#pragma unroll
                        for (int c = 0; c < D / 64; c++)
                            tma_load_3d(vd + c * BN * 128, &tv, c * 64, t0, zk, C::full_v(bars, s));
                    }
                }
                __syncwarp();
            }
        }
    } else {
        /* ---- consumers ---- */
        wg_setmaxnreg_inc<232>();
        const int cw = (threadIdx.x >> 7) - 1, tid = threadIdx.x & 127;
        const int warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq4 = lane & 3;
        const int me = 1 + cw, other = 2 - cw; /* named barriers: whose turn to issue */
        const float sl2 = G.scale * WGF_LOG2E;
        const uint32_t sqw = sq + cw * 64 * 128;
        int kv = 0;                         /* K/V tiles consumed so far */
        if (cw == 1) wg_bar_arrive(1, 256); /* consumer 0 issues first */

        for (int qi = 0;; qi++) {
            mbar_wait(C::full_q(bars), qi & 1);
            const int item = cur_item;
            if (item < 0) break;
            const wgf_item w = wgf_item_at(G, nb, sect, item);
            const int rbase = w.row0 + cw * 64 + warp * 16 + gq;
            int lo[2], hi[2];
            row_keys(G, rbase, &lo[0], &hi[0]);
            row_keys(G, rbase + 8, &lo[1], &hi[1]);
            const int t_begin = hull[0], t_end = hull[1], max_lo = hull[2], min_hi = hull[3];
            const int ntiles = t_end > t_begin ? (t_end - t_begin + BN - 1) / BN : 0;
            float o[D / 2], s[BN / 2], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, al[2];
            uint32_t p[BN / 16][4];
#pragma unroll
            for (int i = 0; i < D / 2; i++)
                o[i] = 0.0f;

            if (ntiles == 0 && lane == 0) mbar_arrive(C::empty_q(bars));
            if (ntiles > 0) {
                const int s0 = kv % STAGES;
                mbar_wait(C::full_k(bars, s0), (kv / STAGES) & 1);
                wg_bar_sync(me, 256);
                wg_fence();
                wgf_issue_qk<D>(s, sqw, sk + s0 * C::KV_BYTES);
                wg_commit();
                wg_bar_arrive(other, 256);
                wg_wait<0>();
                wg_fence_regs(s);
                if (lane == 0) {
                    mbar_arrive(C::empty_k(bars, s0));
                    if (ntiles == 1) mbar_arrive(C::empty_q(bars));
                }
                wgf_softmax_tile(s, t_begin, t_begin >= max_lo && t_begin + BN <= min_hi, lo, hi,
                                 sl2, m, l, al, lane);
#pragma unroll
                for (int j = 0; j < BN / 16; j++)
                    wg_acc_to_a(p[j], s, j);

                for (int it = 1; it < ntiles; it++) {
                    const int cur = kv + it, st = cur % STAGES, ps = (cur - 1) % STAGES;
                    const int t0 = t_begin + it * BN;
                    mbar_wait(C::full_k(bars, st), (cur / STAGES) & 1);
                    mbar_wait(C::full_v(bars, ps), ((cur - 1) / STAGES) & 1);
                    wg_bar_sync(me, 256);
                    wg_fence_regs(o);
                    wg_fence();
                    wgf_issue_qk<D>(s, sqw, sk + st * C::KV_BYTES);
                    wg_commit();
                    wgf_issue_pv<D>(o, p, sv + ps * C::KV_BYTES);
                    wg_commit();
                    wg_bar_arrive(other, 256);
                    wg_wait<1>();
                    wg_fence_regs(s);
                    if (lane == 0) {
                        mbar_arrive(C::empty_k(bars, st));
                        if (it == ntiles - 1) mbar_arrive(C::empty_q(bars));
                    }
                    wgf_softmax_tile(s, t0, t0 >= max_lo && t0 + BN <= min_hi, lo, hi, sl2, m, l,
                                     al, lane);
                    wg_wait<0>();
                    wg_fence_regs(o);
                    if (lane == 0) mbar_arrive(C::empty_v(bars, ps));
                    if (__any_sync(0xffffffffu, al[0] != 1.0f || al[1] != 1.0f)) {
#pragma unroll
                        for (int i = 0; i < D / 2; i++)
                            o[i] *= al[(i >> 1) & 1];
                    }
#pragma unroll
                    for (int j = 0; j < BN / 16; j++)
                        wg_acc_to_a(p[j], s, j);
                }

                const int last = kv + ntiles - 1, ls = last % STAGES;
                mbar_wait(C::full_v(bars, ls), (last / STAGES) & 1);
                wg_bar_sync(me, 256);
                wg_fence_regs(o);
                wg_fence();
                wgf_issue_pv<D>(o, p, sv + ls * C::KV_BYTES);
                wg_commit();
                wg_bar_arrive(other, 256);
                wg_wait<0>();
                wg_fence_regs(o);
                if (lane == 0) mbar_arrive(C::empty_v(bars, ls));
            }
            kv += ntiles;

            const int64_t qbase = (w.b * G.nh + w.h) * G.lq;
#pragma unroll
            for (int r = 0; r < 2; r++) {
                l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
                l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
                const int row = rbase + 8 * r;
                if (row >= G.lq) continue;
                const int64_t grow = qbase + row;
                const float inv = 1.0f / l[r];
                if (lse && tq4 == 0) lse[grow] = (m[r] + log2f(l[r])) * WGF_LN2;
                const float gh = g && G.gd == 1 ? sigmoidf_(__bfloat162float(g[grow])) : 1.0f;
#pragma unroll
                for (int i = 0; i < D / 8; i++) {
                    const int c = i * 8 + 2 * tq4;
                    float y0 = o[4 * i + 2 * r] * inv * gh, y1 = o[4 * i + 2 * r + 1] * inv * gh;
                    if (g && G.gd != 1) {
                        const __nv_bfloat162 gg = *(const __nv_bfloat162 *)(g + grow * D + c);
                        y0 *= sigmoidf_(__low2float(gg)), y1 *= sigmoidf_(__high2float(gg));
                    }
                    *(__nv_bfloat162 *)(y + grow * D + c) = __floats2bfloat162_rn(y0, y1);
                }
            }
        }
        if (cw == 0) wg_bar_sync(1, 256); /* consumer 1's last arrival */
    }
#endif /* WGMMA_DEVICE */
}

namespace {

/* Two K/V stages: a third (224 KiB of shared memory at d = 128) timed the
 * same on causal [4, 16, 8192, 128] (docs/attention.md). */
constexpr int WGF_STAGES = 2;

/* Whether this device runs the sm_90a image of the kernel: compute
 * capability 9.0, the kernel present, its body built (attn_wgmma_built) and
 * the driver able to encode tensor maps. Asked once per device, with the
 * multiprocessor count (the persistent grid's size). */
bool wgf_probe(int dev, int *sms, int *l2) {
    int major = 0, minor = 0, built = 0;
    cudaFuncAttributes fa;
    bool ok =
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
        major == 9 && minor == 0;
    ok = ok && cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
         *sms > 0;
    ok = ok && cudaDeviceGetAttribute(l2, cudaDevAttrL2CacheSize, dev) == cudaSuccess;
    ok = ok && cudaFuncGetAttributes(&fa, attn_wgmma_fwd_kernel<64, WGF_STAGES>) == cudaSuccess &&
         cudaFuncGetAttributes(&fa, attn_wgmma_fwd_kernel<128, WGF_STAGES>) == cudaSuccess &&
         cudaFuncGetAttributes(&fa, attn_wgmma_fwd_kernel<256, WGF_STAGES>) == cudaSuccess;
    ok = ok && cudaMemcpyFromSymbol(&built, attn_wgmma_built, sizeof built) == cudaSuccess &&
         built == 1;
    ok = ok && wg_encode_fn() != NULL;
    (void)cudaGetLastError(); /* a failed query is an answer, not an error to report later */
    return ok;
}

signed char wgf_known[64]; /* per device: 0 not asked yet, 1 usable, -1 not */
int wgf_sms[64], wgf_l2[64];

/* (batch, head) pairs per section of the item order: as many as have their
 * keys and values fit in a third of L2, at least one. (Budgets of 8, 16, 30
 * and 48 MB of the H100's 50 timed within 3 % of each other at 8K and 32K,
 * all 12-20 % faster than no sections.) LACT_ATTN_SECTION=N sets N pairs a
 * section instead (read at every call), which is how the test runs small
 * shapes through several sections. */
int wgf_section(const attn_geom &G, int64_t nb, int dev) {
    const int64_t nbh = nb * G.nh;
    const int64_t kv_bytes = 2 * G.lk * G.d * 2 / (G.group > 0 ? G.group : 1);
    const int64_t budget = (int64_t)wgf_l2[dev] / 3;
    int64_t sect = kv_bytes > 0 ? budget / kv_bytes : nbh;
    const char *e = getenv("LACT_ATTN_SECTION");
    if (e && atoi(e) > 0) sect = atoi(e);
    if (sect < 1) sect = 1;
    if (sect > nbh) sect = nbh;
    return (int)sect;
}

template <int D, int STAGES>
lact_status wgf_launch(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *y, float *lse,
                       const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *g) {
    using C = wgf_cfg<D, STAGES>;
    const int64_t n_items = (G.lq + WGF_BM - 1) / WGF_BM * G.nh * nb;
    if (n_items >= INT32_MAX / 2) /* the counter runs a grid past the last item */
        return lact_fail(LACT_E_UNSUPPORTED, "attention forward (wgmma): too many row blocks");
    int dev = 0;
    LACT_CU(cudaGetDevice(&dev));
    /* LACT_ATTN_GRID=N caps the grid (read at every call): the test runs
     * its shapes on a few blocks, so that each block takes many items. */
    int64_t blocks = wgf_sms[dev];
    const char *e = getenv("LACT_ATTN_GRID");
    if (e && atoi(e) > 0 && atoi(e) < blocks) blocks = atoi(e);
    const int64_t grid = n_items < blocks ? n_items : blocks;
    CUtensorMap mq, mk, mv;
    LACT_TRY(wg_tensor_map_bf16(&mq, q, D, (uint64_t)G.lq, (uint64_t)(nb * G.nh), WGF_BM));
    LACT_TRY(wg_tensor_map_bf16(&mk, k, D, (uint64_t)G.lk, (uint64_t)(nb * G.nkv), wgf_bn<D>()));
    LACT_TRY(wg_tensor_map_bf16(&mv, v, D, (uint64_t)G.lk, (uint64_t)(nb * G.nkv), wgf_bn<D>()));
    LACT_CU(cudaFuncSetAttribute(attn_wgmma_fwd_kernel<D, STAGES>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
    int *sched = NULL;
    LACT_TRY(lact_cuda_buffer(ctx, LACT_BUF_ATTN_SCHED, sizeof(int), (void **)&sched));
    LACT_CU(cudaMemsetAsync(sched, 0, sizeof(int), lact_cuda_stream(ctx)));
    attn_wgmma_fwd_kernel<D, STAGES>
        <<<(unsigned)grid, WGF_THREADS, C::SMEM, lact_cuda_stream(ctx)>>>(
            mq, mk, mv, y, lse, g, G, (int)nb, wgf_section(G, nb, dev), (int)n_items, sched);
    LACT_CU_LAUNCH("attention forward (wgmma)");
    return LACT_OK;
}

} // namespace

bool attn_wgmma_ready(void) {
    const char *e = getenv("LACT_ATTN_WGMMA");
    if (e && e[0] == '0' && e[1] == '\0') return false;
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        (void)cudaGetLastError();
        return false;
    }
    if (!wgf_known[dev]) wgf_known[dev] = wgf_probe(dev, &wgf_sms[dev], &wgf_l2[dev]) ? 1 : -1;
    return wgf_known[dev] > 0;
}

lact_status attn_wgmma_forward(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *y, float *lse,
                               const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *g) {
    if (G.d == 64) return wgf_launch<64, WGF_STAGES>(ctx, G, nb, y, lse, q, k, v, g);
    if (G.d == 256) return wgf_launch<256, WGF_STAGES>(ctx, G, nb, y, lse, q, k, v, g);
    return wgf_launch<128, WGF_STAGES>(ctx, G, nb, y, lse, q, k, v, g);
}

extern "C" bool lact_cuda_attention_wgmma_active(void) {
    return attn_wgmma_ready();
}
