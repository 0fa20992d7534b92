/* The ttt op's hidden-unit passes for large heads on Hopper
 * (ttt_hidden_stream.h).
 *
 * A block takes one tile of 128 token rows of one head and walks the
 * hidden units in slices of 64. Per slice its two consumer warpgroups (64
 * rows each) form [a | b] = x [W0ⱼ; W2ⱼ]ᵀ (m64n128) and e = y W1ⱼ (m64n64,
 * W1 read MN-major) over d in steps of 64, then run the slice's
 * element-wise step of ttt_hidden_slice.cuh and store its outputs. A
 * producer warp brings each step's operands with bulk tensor copies into a
 * ring of stages: the x and y tiles (128 × 64), W0ⱼ and W2ⱼ (64 × 64 each,
 * one 128-row B operand) and W1ⱼ's 64 × 64 block. It runs ahead across the
 * slice boundaries, so the next slice's operands arrive while the
 * consumers are in the element-wise step. A consumer warp gives a stage
 * back as soon as the products that read it have finished, before it
 * issues the next step's (`early`): the passes wait on the copies'
 * latency, and three stages in flight instead of two outweigh the short
 * gap between steps, which the other warpgroup's products mostly fill.
 *
 * The x and y tiles are read once per slice (dh / 64 times a tile, from
 * L2); the weights once per tile. That makes the pass bound by what L2
 * delivers (56 KB a step for 3.1 MFLOP, about 55 FLOP a byte), so the
 * gradient's passes run in clusters of blocks (cl, ttt_hidden_stream.h):
 * the cl blocks of a cluster take the same tile and every cl-th slice, and
 * each copies 128 / cl rows of each x and y step to all of them with one
 * multicast copy, so L2 delivers each tile row once per cl slices. A stage
 * then goes back only when the consumers of every block of the cluster
 * have left it (their arrivals reach each block's "empty" barrier), which
 * keeps the blocks of a cluster in step.
 *
 * Rows past the tile's valid ones are read (zeros past the sequence) and
 * never stored. In the backward (THF_BWD) the weights are the update's
 * gradient dG, the products k dG02ᵀ and v dG1, and a, b, e come from
 * memory as in the small-head kernel; in THF_BWD_AB a first round per
 * slice forms a, b, e from the weights and a second the products with dG;
 * in the apply (THF_APPLY) there is no y and only h = silu(a) b is stored.
 * The apply takes two slices a round where it can (TWO): with no y and
 * no e its accumulators have room for [a | b] of 128 hidden units, one
 * m64n256 product a step whose 48 KB feed twice the multiply-adds of the
 * 32 KB of a one-slice step. The gradient's passes cannot: their e would
 * need 64 more accumulator registers a thread.
 * Both consumers sum the learning-rate gradients of their rows over their
 * slices before adding them once (in a cluster: the first block adds the
 * blocks' sums in rank order), so the sums do not depend on timing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "kernels/cuda/ttt_apply_fused.h"
#include "kernels/cuda/ttt_hidden_slice.cuh"
#include "kernels/cuda/ttt_hidden_stream.h"

namespace {

constexpr int THS_STAGES = 4, THS_THREADS = 384, THS_ROWS = 128, THS_CLUSTER_MAX = 8;
/* one stage: x, y (128 rows × 128 bytes), [W0ⱼ; W2ⱼ] (128 × 128), W1ⱼ (64 × 128) */
enum : uint32_t { THS_X = 0, THS_Y = 16384, THS_W02 = 32768, THS_W1 = 49152, THS_STAGE = 57344 };
/* the stages, their barriers, the rate-gradient sums, the alignment slack */
constexpr size_t THS_PART = 2 * THS_STAGES * 8;
constexpr size_t THS_SMEM = (size_t)THS_STAGES * THS_STAGE + THS_PART + 3 * THS_ROWS * 4 + 1024;

/* The copies' tensor maps: token rows x, y (boxes of 128 / cluster rows);
 * the weights [W0; W2] and W1; in THF_BWD_AB also the update's gradient
 * dG02 and dG1 in their layout. */
struct ths_maps {
    CUtensorMap x, y, w02, w1, g02, g1;
};

#if WGMMA_DEVICE
/* Copies the 16-byte words of the warp's rows of 64 columns of src (rows
 * ld apart, the tile's first row orow) from column col0 to the thread's
 * own slots at dst (2 KB apart), for ths_pairs: started before a round's
 * products, so that they arrive while the tensor cores work, and held in
 * shared memory, where registers have no room for them. */
__device__ __forceinline__ void ths_copy_slice(uint32_t dst, const bf16 *src, int64_t ld,
                                               size_t orow, int r0, int valid, int col0, int lane) {
#pragma unroll
    for (int hh = 0; hh < 2; hh++)
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const int row = r0 + (lane >> 2) + 8 * hh;
            cp_async16(dst + (uint32_t)(2 * hh + q) * 2048u,
                       src + (orow + row) * ld + col0 + 8 * (4 * q + (lane & 3)), row < valid);
        }
}

/* Those words (after cp_async_wait) as BF16 pairs in accumulator order:
 * pair x holds registers 2x and 2x + 1 of an m64n64 accumulator. */
__device__ __forceinline__ void ths_pairs(uint32_t (&pr)[16], uint32_t src, int lane) {
#pragma unroll
    for (int hh = 0; hh < 2; hh++)
#pragma unroll
        for (int q = 0; q < 2; q++) {
            uint32_t w[4];
            thf_ld_pairs(w, src + (uint32_t)(2 * hh + q) * 2048u, lane & 3);
#pragma unroll
            for (int m = 0; m < 4; m++)
                pr[2 * (4 * q + m) + hh] = w[m];
        }
}

/* The update's backward's round [a | b | k dG0ᵀ | k dG2ᵀ] for its step:
 * a and b rounded to BF16 pairs as the products round them, packed here
 * (fenced: left to the compiler, the floats would hold 32 more registers
 * up to each use), k dG0ᵀ and k dG2ᵀ as they are. */
__device__ __forceinline__ void ths_split_bwd(const float (&ab)[128], uint32_t (&abe)[3][16],
                                              float (&kg)[64]) {
#pragma unroll
    for (int x = 0; x < 16; x++) {
        abe[0][x] = wg_pack_bf16(ab[2 * x], ab[2 * x + 1]);
        abe[1][x] = wg_pack_bf16(ab[2 * x + 32], ab[2 * x + 33]);
    }
    wg_fence_regs(abe[0]);
    wg_fence_regs(abe[1]);
#pragma unroll
    for (int x = 0; x < 64; x++)
        kg[x] = ab[64 + x];
}
#endif

/* WIDE: four 64-row weight blocks as one 256-row B operand where y would
 * be, one m64n256 product a step, so that each x step feeds twice the
 * products of [W0ⱼ; W2ⱼ] for 16 KB more. The apply and the forward take
 * two slices a round, [W0ⱼ; W2ⱼ; W0ⱼ₊₁; W2ⱼ₊₁]; the update's backward one,
 * [W0ⱼ; W2ⱼ; dG0ⱼ; dG2ⱼ]. Without y the forward reads e = y W1 (and the
 * backward [e | v dG1]) from out1 (de, out1), where a product put it
 * before the pass, and overwrites it. */
template <int MODE, bool WIDE, bool OVL = false>
__global__ void __launch_bounds__(THS_THREADS, 1)
    ttt_hidden_stream_kernel(const __grid_constant__ ths_maps M, const thf_args A, int d, int dh,
                             int cl, int early) {
#if WGMMA_DEVICE
    constexpr bool APPLY = MODE == THF_APPLY; /* x and [W0ⱼ; W2ⱼ] only */
    static_assert(APPLY || MODE == THF_FWD || MODE == THF_BWD_AB || !WIDE, "no wide pass");
    static_assert(!OVL || (WIDE && (MODE == THF_FWD || MODE == THF_BWD_AB || APPLY)),
                  "the overlapped step is the wide passes'");
    constexpr int SLICES = WIDE && MODE != THF_BWD_AB ? 2 : 1; /* slices a round */
    constexpr bool BWD = MODE == THF_BWD || MODE == THF_BWD_AB;
    /* two rounds a slice: a, b, e from the weights, then the products with dG */
    constexpr int ROUNDS = MODE == THF_BWD_AB && !WIDE ? 2 : 1;
    extern __shared__ __align__(1024) unsigned char smem_hs[];
    const uint32_t base = (wg_smem(smem_hs) + 1023u) & ~1023u;
    const uint32_t bars = base + THS_STAGES * THS_STAGE;
    /* this block's rate-gradient sums */
    float *rate_part = (float *)(smem_hs + (bars + THS_PART - wg_smem(smem_hs)));
    auto full = [&](int s) { return bars + 8u * (uint32_t)s; };
    auto empty = [&](int s) { return bars + 8u * (uint32_t)(THS_STAGES + s); };
    /* The cl blocks of a cluster share a tile and take every cl-th slice;
     * each brings 128 / cl rows of the x and y tiles to all of them. */
    const uint32_t rank = cl > 1 ? cluster_rank() : 0u;
    /* Without a cluster a wide pass's block walks the tiles item, item +
     * stride, ... (persistent: the stages run on across its tiles, so a
     * tile's first copies arrive while the consumers finish the tile
     * before); a cluster, or a block of the other passes, takes one tile. */
    const int tiles = (A.Tt + THS_ROWS - 1) / THS_ROWS, items = A.N * tiles;
    const int item0 = (int)blockIdx.x / cl, n0 = item0 / tiles, rt0 = (item0 % tiles) * THS_ROWS;
    const int last = WIDE && cl == 1 ? items : item0 + 1, stride = WIDE ? (int)gridDim.x : 1;
    const int ks = d / 64, slices = dh / 64 / SLICES / cl, steps = ks * ROUNDS * slices;

    if (threadIdx.x == 0) {
        for (int s = 0; s < THS_STAGES; s++)
            mbar_init(full(s), 1), mbar_init(empty(s), 8 * cl);
        mbar_init_fence();
    }
    /* the cluster's barriers exist before any copy or arrival reaches them */
    if (cl > 1)
        cluster_sync();
    else
        __syncthreads();

    if (threadIdx.x < 128) {
        /* ---- producer: one thread issues every copy ---- */
        wg_setmaxnreg_dec<40>();
        if (threadIdx.x == 0) {
            const int piece = THS_ROWS / cl;
            const uint32_t poff = rank * (uint32_t)piece * 128u;
            const uint16_t mask = (uint16_t)((1u << cl) - 1u);
            int g = 0; /* the stage count over the block's tiles */
            for (int item = item0; item < last; item += stride) {
                for (int s = 0; s < steps; s++, g++) {
                    const int n = WIDE ? item / tiles : n0;
                    const int row =
                        (int)A.t0 + (WIDE ? (item % tiles) * THS_ROWS : rt0) + (int)rank * piece;
                    const int st = g % THS_STAGES, kc = (s % ks) * 64;
                    const int j = SLICES * ((int)rank + cl * (s / (ks * ROUNDS)));
                    const bool grad = ROUNDS == 2 && (s / ks) % 2 == 1;
                    const CUtensorMap *w02 = grad ? &M.g02 : &M.w02, *w1 = grad ? &M.g1 : &M.w1;
                    const uint32_t sb = base + (uint32_t)st * THS_STAGE;
                    /* with a cluster: every block's consumers have left this stage */
                    mbar_wait(empty(st), ((g / THS_STAGES) & 1) ^ 1);
                    /* x, then four weight blocks (WIDE), two (the apply) or the whole stage */
                    mbar_arrive_tx(full(st), WIDE    ? THS_Y + 4 * 8192u
                                             : APPLY ? THS_Y + THS_W1 - THS_W02
                                                     : THS_STAGE);
                    if (cl > 1)
                        tma_load_3d_mc(sb + THS_X + poff, &M.x, kc, row, n, full(st), mask);
                    else
                        tma_load_3d(sb + THS_X, &M.x, kc, row, n, full(st));
                    if (WIDE) {
                        for (int b = 0; b < 4; b++) {
                            const bool gb = MODE == THF_BWD_AB && b >= 2; /* dG0ⱼ, dG2ⱼ */
                            tma_load_3d(sb + THS_Y + 8192u * b, gb ? &M.g02 : w02, kc,
                                        (b % 2) * dh + 64 * (MODE == THF_BWD_AB ? j : j + b / 2), n,
                                        full(st));
                        }
                        continue;
                    }
                    tma_load_3d(sb + THS_W02, w02, kc, 64 * j, n, full(st));
                    tma_load_3d(sb + THS_W02 + 8192, w02, kc, dh + 64 * j, n, full(st));
                    if (APPLY) continue;
                    if (cl > 1)
                        tma_load_3d_mc(sb + THS_Y + poff, &M.y, kc, row, n, full(st), mask);
                    else
                        tma_load_3d(sb + THS_Y, &M.y, kc, row, n, full(st));
                    tma_load_3d(sb + THS_W1, w1, 64 * j, kc, n, full(st));
                }
                if constexpr (!WIDE) break;
            }
        }
    } else {
        /* ---- consumers: warpgroup wgi owns rows 64·wgi.. of the tile ---- */
        wg_setmaxnreg_inc<232>();
        const int wgi = (threadIdx.x >> 7) - 1, warp = (threadIdx.x >> 5) & 3,
                  lane = threadIdx.x & 31;
        const int r0 = 64 * wgi + 16 * warp; /* the warp's first row in the tile */
        const uint32_t rows_off = (uint32_t)wgi * 64 * 128;
        /* the stage goes back to every block that copies into it */
        auto release = [&](int st) {
            if (lane != 0) return;
            if (cl == 1) {
                mbar_arrive(empty(st));
                return;
            }
            for (int c = 0; c < cl; c++)
                mbar_arrive_cluster(empty(st), (uint32_t)c);
        };
        int s = 0;
        /* Step kc of a round from stage s: once it has arrived, issue(sb, c,
         * acc) gives the products of its 16-column step c (acc: all but a
         * round's first); the stage it reads. */
        auto issue_stage = [&](auto &&issue, int kc) {
            const int st = s % THS_STAGES;
            const uint32_t sb = base + (uint32_t)st * THS_STAGE;
            mbar_wait(full(st), (s / THS_STAGES) & 1);
            wg_fence();
#pragma unroll
            for (int c = 0; c < 4; c++)
                issue(sb, c, kc > 0 || c > 0);
            wg_commit();
            return st;
        };
        /* the next ks stages */
        auto run_steps = [&](auto &&issue) {
#pragma unroll 1
            for (int kc = 0; kc < ks; kc++, s++) {
                const int st = issue_stage(issue, kc);
                if (early) { /* this step's stage goes back as soon as it is read */
                    wg_wait<0>();
                    release(st);
                } else if (kc > 0) { /* the step before has been read */
                    wg_wait<1>();
                    release((s - 1) % THS_STAGES);
                }
            }
            /* On every path, even where the last step waited already: with
             * the wait under the runtime `early`, ptxas saw a path on which
             * a product could still be writing the accumulators that the
             * element-wise step reads, and serialized every product of
             * the kernel (its C7514; cmake/nvcc-check fails the build on
             * it). */
            wg_wait<0>();
            if (!early) release((s - 1) % THS_STAGES);
        };
        /* [a | b] (columns 0–63 a, 64–127 b) and e over d, or with dG as the
         * weights k dG02ᵀ and v dG1 */
        auto products = [&](float(&ab)[64], float(&e)[32]) {
            run_steps([&](uint32_t sb, int c, int acc) {
                wg_mma_ss<128>(ab, wg_desc(sb + THS_X + rows_off + 32 * c, 16, 1024),
                               wg_desc(sb + THS_W02 + 32 * c, 16, 1024), acc);
                if (!APPLY)
                    wg_mma_ss_tb64(e, wg_desc(sb + THS_Y + rows_off + 32 * c, 16, 1024),
                                   wg_desc(sb + THS_W1 + 2048 * c, 8192, 1024), acc);
            });
            wg_fence_regs(ab);
            wg_fence_regs(e);
        };
#pragma unroll 1
        for (int item = item0; item < last; item += stride) {
            const int n = WIDE ? item / tiles : n0, r_tile = WIDE ? (item % tiles) * THS_ROWS : rt0;
            const int valid = A.Tt - r_tile < THS_ROWS ? A.Tt - r_tile : THS_ROWS;
            const size_t row0 = (size_t)n * A.len + A.t0 + r_tile, orow = (size_t)n * A.Tt + r_tile;
            float L[2][3], sl[2][3];
            thf_rates(L, sl, A, row0, r0, valid, lane);
            if constexpr (WIDE) {
                /* rounds of [a₀ | b₀ | a₁ | b₁] (the apply, the forward) or [a | b
                 * | k dG0ᵀ | k dG2ᵀ] (the update's backward) */
                const int64_t ld1 = thf_ld1(A, dh);
                /* e of each slice (the forward), or e and v dG1: two slots of 8 KB
                 * a warpgroup in the stages' W1 blocks, which the wide operand
                 * leaves unused */
                const uint32_t em = base + (uint32_t)(2 * wgi) * THS_STAGE + THS_W1 +
                                    (uint32_t)(threadIdx.x & 127) * 16u;
                if constexpr (OVL) {
                    /* e of round i's two slices (the forward), or e and v dG1
                     * of its slice (the update's backward), into the slots;
                     * the apply has none */
                    auto copy_e = [&](int i) {
                        const int h0 = 64 * SLICES * ((int)rank + cl * i);
                        if constexpr (MODE == THF_FWD) {
                            ths_copy_slice(em, A.out1, ld1, orow, r0, valid, h0, lane);
                            ths_copy_slice(em + THS_STAGE, A.out1, ld1, orow, r0, valid, h0 + 64,
                                           lane);
                        } else if constexpr (MODE == THF_BWD_AB) {
                            ths_copy_slice(em, A.de, ld1, orow, r0, valid, h0, lane);
                            ths_copy_slice(em + THS_STAGE, A.out1, ld1, orow, r0, valid, h0, lane);
                        }
                        cp_async_commit();
                    };
                    float ab[128];
                    auto mma = [&](uint32_t sb, int c, int acc) {
                        wg_mma_ss<256>(ab, wg_desc(sb + THS_X + rows_off + 32 * c, 16, 1024),
                                       wg_desc(sb + THS_Y + 32 * c, 16, 1024), acc);
                    };
                    /* issues step kc of a round into ab; the stage it reads */
                    auto issue_step = [&](int kc) {
                        const int st = issue_stage(mma, kc);
                        s++;
                        return st;
                    };
                    /* step kc beside work(), then its stage back */
                    auto beside = [&](int kc, auto &&work) {
                        const int st = issue_step(kc);
                        work();
                        wg_wait<0>();
                        release(st);
                    };
                    /* the round's steps from kc on, alone */
                    auto rest = [&](int kc) {
#pragma unroll 1
                        for (; kc < ks; kc++)
                            beside(kc, [] {});
                    };
                    copy_e(0);
                    run_steps(mma);
                    /* Every round but the last runs part of its step beside
                     * the next round's first steps. The last round's step
                     * has no products to go beside; it is peeled, so that no
                     * path keeps a round's accumulators alive beside the
                     * next one's. */
                    if constexpr (MODE == THF_BWD_AB) {
                        /* Three quarters of the step alone, the last beside
                         * the next round's first step (two beside two steps
                         * spilled 3.7 KB a thread). From [a | b | k dG0ᵀ | k
                         * dG2ᵀ], a and b packed (fenced: where their floats
                         * die), k dG0ᵀ and k dG2ᵀ kept F32 (packed, the step
                         * spills even alone). */
                        uint32_t abe[3][16] = {}; /* e is in shared memory */
                        float kg[64];
                        auto split = [&] {
                            cp_async_wait<0>();
                            wg_fence_regs(ab);
                            ths_split_bwd(ab, abe, kg);
                        };
                        const float no_p[32] = {}; /* p1 is in shared memory */
                        auto quarters = [&](auto c0, auto c1, int h0) {
                            thf_bwd_slice_abe<THF_AB_REGS_EP_SMEM, decltype(c0)::value,
                                              decltype(c1)::value>(kg, no_p, L, sl, A, orow, r0,
                                                                   valid, h0, dh, lane, abe, em,
                                                                   em + THS_STAGE);
                        };
                        using I0 = std::integral_constant<int, 0>;
                        using I3 = std::integral_constant<int, 3>;
                        using I4 = std::integral_constant<int, 4>;
#pragma unroll 1
                        for (int i = 0; i + 1 < slices; i++) {
                            const int h0 = 64 * ((int)rank + cl * i);
                            split();
                            quarters(I0(), I3(), h0);
                            wg_undef_regs(ab); /* dead since the split */
                            beside(0, [&] { quarters(I3(), I4(), h0); });
                            copy_e(i + 1);
                            rest(1);
                        }
                        split();
                        quarters(I0(), I4(), 64 * ((int)rank + cl * (slices - 1)));
                    } else {
                        /* The forward and the apply: the round's accumulators
                         * [a₀ | b₀ | a₁ | b₁] as BF16 pairs (pair x: registers
                         * 2x, 2x + 1; fenced: packed where the floats die).
                         * The forward runs the first slice's step alone and
                         * the second's four quarters each beside one of the
                         * next round's first four steps (the registers hold
                         * one slice's pairs beside the accumulators, not both
                         * slices'; a fifth quarter beside spilled). */
                        uint32_t pk[4][16];
                        auto pack = [&] {
                            cp_async_wait<0>();
                            wg_fence_regs(ab);
#pragma unroll
                            for (int k = 0; k < 4; k++) {
#pragma unroll
                                for (int x = 0; x < 16; x++)
                                    pk[k][x] =
                                        wg_pack_bf16(ab[32 * k + 2 * x], ab[32 * k + 2 * x + 1]);
                                wg_fence_regs(pk[k]);
                            }
                        };
                        const int64_t ld02 = thf_ld02(A, dh);
                        /* quarter (HH, Q) of slice P's step */
                        auto quarter = [&](auto p, auto hh, auto q, int h0) {
                            constexpr int P = decltype(p)::value, HH = decltype(hh)::value,
                                          Q = decltype(q)::value;
                            if constexpr (APPLY)
                                thf_apply_chunk<HH, Q>(pk[2 * P], pk[2 * P + 1], A.out1, orow, r0,
                                                       valid, h0 + 64 * P, dh, lane);
                            else
                                thf_fwd_chunk<HH, Q>(pk[2 * P], pk[2 * P + 1],
                                                     em + (uint32_t)P * THS_STAGE, L, A.out02,
                                                     A.out1, ld02, ld1, orow, r0, valid,
                                                     h0 + 64 * P, dh, lane);
                        };
                        using I0 = std::integral_constant<int, 0>;
                        using I1 = std::integral_constant<int, 1>;
                        auto slice = [&](auto p, int h0) {
                            quarter(p, I0(), I0(), h0);
                            quarter(p, I0(), I1(), h0);
                            quarter(p, I1(), I0(), h0);
                            quarter(p, I1(), I1(), h0);
                        };
#pragma unroll 1
                        for (int i = 0; i + 1 < slices; i++) {
                            const int h0 = 128 * ((int)rank + cl * i);
                            pack();
                            if constexpr (APPLY) {
                                /* its lighter step: a quarter of it alone,
                                 * the rest beside three steps, two quarters
                                 * each (all of it beside spilled) */
                                quarter(I0(), I0(), I0(), h0);
                                quarter(I0(), I0(), I1(), h0);
                                wg_undef_regs(ab); /* dead since the packing */
                                beside(0, [&] {
                                    quarter(I0(), I1(), I0(), h0);
                                    quarter(I0(), I1(), I1(), h0);
                                });
                                beside(1, [&] {
                                    quarter(I1(), I0(), I0(), h0);
                                    quarter(I1(), I0(), I1(), h0);
                                });
                                beside(2, [&] {
                                    quarter(I1(), I1(), I0(), h0);
                                    quarter(I1(), I1(), I1(), h0);
                                });
                            } else {
                                slice(I0(), h0);
                                wg_undef_regs(ab); /* dead since the packing */
                                beside(0, [&] { quarter(I1(), I0(), I0(), h0); });
                                beside(1, [&] { quarter(I1(), I0(), I1(), h0); });
                                beside(2, [&] { quarter(I1(), I1(), I0(), h0); });
                                beside(3, [&] { quarter(I1(), I1(), I1(), h0); });
                            }
                            /* this round's words are read: the next round's */
                            copy_e(i + 1);
                            rest(APPLY ? 3 : 4);
                        }
                        const int h0 = 128 * ((int)rank + cl * (slices - 1));
                        pack();
                        slice(I0(), h0);
                        slice(I1(), h0);
                    }
                }
#pragma unroll 1
                for (int i = 0; i < (OVL ? 0 : slices); i++) {
                    const int h0 = 64 * SLICES * ((int)rank + cl * i);
                    if constexpr (MODE == THF_FWD) {
#pragma unroll
                        for (int p = 0; p < 2; p++)
                            ths_copy_slice(em + p * THS_STAGE, A.out1, ld1, orow, r0, valid,
                                           h0 + 64 * p, lane);
                    } else if constexpr (MODE == THF_BWD_AB) {
                        ths_copy_slice(em, A.de, ld1, orow, r0, valid, h0, lane);
                        ths_copy_slice(em + THS_STAGE, A.out1, ld1, orow, r0, valid, h0, lane);
                    }
                    cp_async_commit();
                    float ab[128];
                    run_steps([&](uint32_t sb, int c, int acc) {
                        wg_mma_ss<256>(ab, wg_desc(sb + THS_X + rows_off + 32 * c, 16, 1024),
                                       wg_desc(sb + THS_Y + 32 * c, 16, 1024), acc);
                    });
                    cp_async_wait<0>();
                    wg_fence_regs(ab);
                    if constexpr (MODE == THF_BWD_AB) {
                        uint32_t abe[3][16] = {}; /* e is in shared memory */
                        float kg[64];
                        ths_split_bwd(ab, abe, kg);
                        const float no_p[32] = {}; /* p1 is in shared memory */
                        thf_bwd_slice_abe<THF_AB_REGS_EP_SMEM>(kg, no_p, L, sl, A, orow, r0, valid,
                                                               h0, dh, lane, abe, em,
                                                               em + THS_STAGE);
                    } else {
#pragma unroll
                        for (int p = 0; p < 2; p++) {
                            float half[64];
#pragma unroll
                            for (int x = 0; x < 64; x++)
                                half[x] = ab[64 * p + x];
                            if constexpr (APPLY) {
                                thf_apply_slice(half, A.out1, orow, r0, valid, h0 + 64 * p, dh,
                                                lane);
                            } else {
                                uint32_t e[16], fa[4][4], fb[4][4];
                                ths_pairs(e, em + p * THS_STAGE, lane);
                                thf_fwd_slice(half, e, L, fa, fb, A.out02, A.out1, thf_ld02(A, dh),
                                              ld1, orow, r0, valid, h0 + 64 * p, dh, lane);
                            }
                        }
                    }
                }
            }
#pragma unroll 1
            for (int i = 0; i < (WIDE ? 0 : slices); i++) {
                const int h0 = 64 * ((int)rank + cl * i);
                float ab[64], e[32];
                if constexpr (MODE == THF_BWD_AB) {
                    uint32_t abe[3][16];
                    products(ab, e);
                    thf_pack_abe(abe, ab, e);
                    products(ab, e);
                    thf_bwd_slice_abe<THF_ABE_REGS>(ab, e, L, sl, A, orow, r0, valid, h0, dh, lane,
                                                    abe);
                    continue;
                }
                products(ab, e);
                if constexpr (APPLY) {
                    thf_apply_slice(ab, A.out1, orow, r0, valid, h0, dh, lane);
                } else if constexpr (MODE == THF_BWD) {
                    thf_bwd_slice(ab, e, L, sl, A, orow, r0, valid, h0, dh, lane);
                } else {
                    uint32_t fa[4][4], fb[4][4];
                    thf_fwd_slice(ab, e, L, fa, fb, A.out02, A.out1, thf_ld02(A, dh),
                                  thf_ld1(A, dh), orow, r0, valid, h0, dh, lane);
                }
            }
            if constexpr (BWD) {
                if (cl == 1)
                    thf_add_rate_grads(sl, A, row0, r0, valid, lane);
                else
                    thf_store_rate_grads(sl, rate_part, r0, lane);
            }
            if constexpr (!WIDE) break; /* one tile a block */
        }
    }
    if (cl > 1) {
        /* The blocks' rate-gradient sums are added in rank order by the
         * first block, so they do not depend on timing; and no block
         * leaves while another may still arrive on its barriers. */
        cluster_sync();
        const int valid = A.Tt - rt0 < THS_ROWS ? A.Tt - rt0 : THS_ROWS;
        if (BWD && rank == 0 && threadIdx.x >= 128 && threadIdx.x < 128 + THS_ROWS) {
            const int row = (int)threadIdx.x - 128;
            if (row < valid) {
                const size_t li = (size_t)n0 * A.len + A.t0 + rt0 + row;
                float *dl[3] = {A.dl0, A.dl1, A.dl2};
                for (int k = 0; k < 3; k++) {
                    if (!dl[k]) continue;
                    const uint32_t at = wg_smem(&rate_part[3 * row + k]);
                    float sum = 0.0f;
                    for (int c = 0; c < cl; c++)
                        sum += ld_cluster_f32(cluster_map(at, (uint32_t)c));
                    dl[k][li] += sum;
                }
            }
        }
        cluster_sync();
    }
#endif
}

/* Where a pass's weights are: [W0; W2] (2·dh rows of d) and W1 (d rows
 * of dh, `ld1` apart), and in THF_BWD_AB the gradient dG02 and dG1 in the
 * same shapes; heads `per` elements apart. */
struct ths_weights {
    const bf16 *w02, *w1, *g02, *g1;
    uint64_t per, ld1;
};

/* Wc's layout (3·d·dh per head): w, and with THF_BWD_AB the gradient dg. */
ths_weights ths_state_layout(const bf16 *w, const bf16 *dg, int64_t d, int64_t dh) {
    const bf16 *g = dg ? dg : w;
    return {w, w + 2 * d * dh, g, g + 2 * d * dh, (uint64_t)(3 * d * dh), (uint64_t)dh};
}

/* Tensor maps of x, y ([N, len, d]) and of the weights; the blocks of a
 * cluster of cl share each tile of x and y. e_read: the forward and the
 * update's backward take the wide operand and read e from memory. */
lact_status ths_launch(lact_ctx *ctx, const bf16 *x, const bf16 *y, const ths_weights &w,
                       const thf_args &a, int64_t d, int64_t dh, int mode, bool e_read = false) {
    if (a.N <= 0 || a.Tt <= 0) return LACT_OK;
    const int64_t tiles = (a.Tt + THS_ROWS - 1) / THS_ROWS;
    const int cl = ttt_hidden_stream_cluster(dh, mode == THF_APPLY || e_read, a.N * tiles);
    int64_t blocks = (int64_t)a.N * tiles * cl;
    /* half the range: a persistent block's next tile must not overflow */
    if (blocks >= INT32_MAX / 2 || a.len + THS_ROWS >= INT32_MAX || d % 64 || dh % 64)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "ttt streamed hidden pass: %d heads × %lld tokens, "
                         "d = %lld, dh = %lld",
                         a.N, (long long)a.len, (long long)d, (long long)dh);
    const uint64_t N = (uint64_t)a.N;
    const uint32_t piece = (uint32_t)(THS_ROWS / cl);
    ths_maps m;
    LACT_TRY(wg_tensor_map_bf16(&m.x, x, (uint64_t)d, (uint64_t)a.len, N, piece));
    LACT_TRY(wg_tensor_map_bf16(&m.y, y, (uint64_t)d, (uint64_t)a.len, N, piece));
    LACT_TRY(
        wg_tensor_map_bf16_strided(&m.w02, w.w02, (uint64_t)d, (uint64_t)(2 * dh), N, w.per, 64));
    LACT_TRY(
        wg_tensor_map_bf16_strided(&m.g02, w.g02, (uint64_t)d, (uint64_t)(2 * dh), N, w.per, 64));
    LACT_TRY(wg_tensor_map_bf16_rows(&m.w1, w.w1, (uint64_t)dh, (uint64_t)d, N, w.ld1, w.per, 64));
    LACT_TRY(wg_tensor_map_bf16_rows(&m.g1, w.g1, (uint64_t)dh, (uint64_t)d, N, w.ld1, w.per, 64));
    /* the apply takes two slices a round where every block has an even
     * share of them */
    const bool two =
        mode == THF_APPLY && (dh / 64) % (2 * cl) == 0 && ttt_hidden_stream_two_slices();
    if (e_read && mode == THF_FWD && (dh / 64) % (2 * cl))
        return lact_fail(LACT_E_UNSUPPORTED,
                         "ttt streamed forward pass reading e: dh = %lld is not a multiple of %d",
                         (long long)dh, 128 * cl);
    /* the wide passes' blocks walk several tiles where there are more than
     * multiprocessors */
    const int persist = ttt_hidden_stream_persistent();
    if (cl == 1 && (two || e_read) && persist > 0 && blocks > persist) blocks = persist;
    /* the wide gradient passes with half their element-wise step beside
     * the next round's products: the early release, two steps a round */
    const bool early = ttt_hidden_stream_early_release();
    const bool ovl = ((e_read && mode != THF_APPLY) || (mode == THF_APPLY && two)) && early &&
                     d >= 256 && ttt_hidden_stream_overlap();
    void (*kernel)(ths_maps, thf_args, int, int, int, int) =
        mode == THF_BWD      ? ttt_hidden_stream_kernel<THF_BWD, false>
        : mode == THF_BWD_AB ? (ovl      ? ttt_hidden_stream_kernel<THF_BWD_AB, true, true>
                                : e_read ? ttt_hidden_stream_kernel<THF_BWD_AB, true>
                                         : ttt_hidden_stream_kernel<THF_BWD_AB, false>)
        : mode == THF_APPLY  ? (ovl   ? ttt_hidden_stream_kernel<THF_APPLY, true, true>
                                : two ? ttt_hidden_stream_kernel<THF_APPLY, true>
                                      : ttt_hidden_stream_kernel<THF_APPLY, false>)
                             : (ovl      ? ttt_hidden_stream_kernel<THF_FWD, true, true>
                                : e_read ? ttt_hidden_stream_kernel<THF_FWD, true>
                                         : ttt_hidden_stream_kernel<THF_FWD, false>);
    LACT_CU(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)THS_SMEM));
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)blocks);
    cfg.blockDim = dim3(THS_THREADS);
    cfg.dynamicSmemBytes = THS_SMEM;
    cfg.stream = lact_cuda_stream(ctx);
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = (unsigned)cl;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    LACT_CU(cudaLaunchKernelEx(&cfg, kernel, m, a, (int)d, (int)dh, cl, (int)early));
    LACT_CU_LAUNCH("ttt_hidden_stream");
    return LACT_OK;
}

lact_status ths_check(int64_t N, int64_t Tt) {
    if (N >= INT32_MAX || Tt >= INT32_MAX)
        return lact_fail(LACT_E_UNSUPPORTED, "ttt streamed hidden pass: %lld heads × %lld tokens",
                         (long long)N, (long long)Tt);
    return LACT_OK;
}

} // namespace

bool ttt_hidden_stream_forms_abe(void) {
    const char *e = getenv("LACT_TTT_STREAM_ABE");
    return !(e && strcmp(e, "0") == 0);
}

bool ttt_hidden_stream_fills(int64_t N, int64_t Tt, int64_t dh) {
    const char *e = getenv("LACT_TTT_HIDDEN_STREAM"); /* "1", "all": whatever the grid */
    if (e && (strcmp(e, "1") == 0 || strcmp(e, "all") == 0)) return true;
    int sms = 0;
    bool wgmma = false;
    if (ttt_fused_device(&sms, &wgmma) != LACT_OK) return false;
    const int64_t items = N * ((Tt + THS_ROWS - 1) / THS_ROWS);
    return items * ttt_hidden_stream_cluster(dh, true, items) >= sms;
}

int ttt_hidden_stream_cluster(int64_t dh, bool x_only, int64_t items) {
    const char *e = getenv("LACT_TTT_STREAM_CLUSTER");
    int cl = 2;
    if (e && *e) {
        cl = atoi(e);
    } else if (x_only) {
        int sms = 0;
        bool wgmma = false;
        cl = ttt_fused_device(&sms, &wgmma) == LACT_OK && items < sms ? 2 : 1;
    }
    if (cl < 1) cl = 1;
    if (cl > THS_CLUSTER_MAX) cl = THS_CLUSTER_MAX;
    while (cl > 1 && (cl & (cl - 1) || (dh / 64) % cl)) /* a power of two dividing the slices */
        cl--;
    return cl;
}

bool ttt_hidden_stream_early_release(void) {
    const char *e = getenv("LACT_TTT_STREAM_RELEASE");
    return !(e && strcmp(e, "late") == 0);
}

int ttt_hidden_stream_persistent(void) {
    const char *e = getenv("LACT_TTT_STREAM_PERSIST");
    if (e && *e) return atoi(e) > 0 ? atoi(e) : 0;
    int sms = 0;
    bool wgmma = false;
    return ttt_fused_device(&sms, &wgmma) == LACT_OK ? sms : 0;
}

bool ttt_hidden_stream_overlap(void) {
    const char *e = getenv("LACT_TTT_STREAM_OVERLAP");
    return e && strcmp(e, "1") == 0;
}

bool ttt_hidden_stream_two_slices(void) {
    const char *e = getenv("LACT_TTT_STREAM_SLICES");
    return !(e && strcmp(e, "1") == 0);
}

bool ttt_hidden_stream_all(void) {
    const char *e = getenv("LACT_TTT_HIDDEN_STREAM");
    return !(e && strcmp(e, "apply") == 0);
}

bool ttt_hidden_stream_reads_e(int64_t N, int64_t Tt, int64_t dh, bool fwd) {
    const char *e = getenv("LACT_TTT_STREAM_E");
    if (e && strcmp(e, "0") == 0) return false;
    const int64_t items = N * ((Tt + THS_ROWS - 1) / THS_ROWS);
    return !fwd || (dh / 64) % (2 * ttt_hidden_stream_cluster(dh, true, items)) == 0;
}

bool ttt_hidden_stream_pairs(void) {
    const char *e = getenv("LACT_TTT_STREAM_WIDE");
    return !(e && strcmp(e, "0") == 0);
}

bool ttt_hidden_stream_ready(int64_t d, int64_t dh) {
    const char *e = getenv("LACT_TTT_HIDDEN_STREAM");
    if (e && strcmp(e, "0") == 0) return false;
    const char *f = getenv("LACT_TTT_APPLY_FUSED"); /* "0": every pass batched */
    if (f && strcmp(f, "0") == 0) return false;
    if (d % 64 || dh % 64 || d <= 0 || dh <= 0 || ttt_apply_fused_fits(d, dh)) return false;
    int sms = 0;
    bool wgmma = false;
    return ttt_fused_device(&sms, &wgmma) == LACT_OK && wgmma;
}

lact_status ttt_hidden_stream(lact_ctx *ctx, const bf16 *x, const bf16 *y, const bf16 *Wc,
                              const float *l0, const float *l1, const float *l2, bf16 *out02,
                              bf16 *out1, int64_t N, int64_t len, int64_t t0, int64_t Tt, int64_t d,
                              int64_t dh, bool e_read) {
    LACT_TRY(ths_check(N, Tt));
    thf_args a = {};
    a.x = x, a.y = y, a.Wc = Wc, a.l0 = l0, a.l1 = l1, a.l2 = l2;
    a.out02 = out02, a.out1 = out1;
    a.N = (int)N, a.Tt = (int)Tt, a.len = len, a.t0 = t0;
    return ths_launch(ctx, x, y, ths_state_layout(Wc, NULL, d, dh), a, d, dh, THF_FWD, e_read);
}

lact_status ttt_hidden_stream_bwd(lact_ctx *ctx, const bf16 *k, const bf16 *v, const bf16 *Wc,
                                  const bf16 *dGc, const float *l0, const float *l1,
                                  const float *l2, bf16 *zab, bf16 *ze, bf16 *dab, bf16 *de,
                                  float *dl0, float *dl1, float *dl2, int64_t N, int64_t len,
                                  int64_t t0, int64_t Tt, int64_t d, int64_t dh) {
    LACT_TRY(ths_check(N, Tt));
    thf_args a = {};
    a.x = k, a.y = v, a.Wc = dGc, a.l0 = l0, a.l1 = l1, a.l2 = l2;
    a.out02 = zab, a.out1 = ze, a.dab = dab, a.de = de, a.dl0 = dl0, a.dl1 = dl1, a.dl2 = dl2;
    a.N = (int)N, a.Tt = (int)Tt, a.len = len, a.t0 = t0;
    return ths_launch(ctx, k, v, ths_state_layout(Wc ? Wc : dGc, Wc ? dGc : NULL, d, dh), a, d, dh,
                      Wc ? THF_BWD_AB : THF_BWD);
}

lact_status ttt_hidden_stream_bwd_pairs(lact_ctx *ctx, const bf16 *k, const bf16 *v, const bf16 *Bw,
                                        const float *l0, const float *l1, const float *l2, bf16 *zk,
                                        bf16 *ze, float *dl0, float *dl1, float *dl2, int64_t N,
                                        int64_t len, int64_t t0, int64_t Tt, int64_t d, int64_t dh,
                                        bool e_read) {
    LACT_TRY(ths_check(N, Tt));
    thf_args a = {};
    a.x = k, a.y = v, a.l0 = l0, a.l1 = l1, a.l2 = l2;
    a.dab = zk, a.out02 = zk + 2 * dh, a.de = ze, a.out1 = ze + dh, a.ld02 = 4 * dh, a.ld1 = 2 * dh;
    a.dl0 = dl0, a.dl1 = dl1, a.dl2 = dl2;
    a.N = (int)N, a.Tt = (int)Tt, a.len = len, a.t0 = t0;
    const int64_t nel = d * dh;
    const ths_weights w = {
        Bw, Bw + 4 * nel, Bw + 2 * nel, Bw + 4 * nel + dh, (uint64_t)(6 * nel), (uint64_t)(2 * dh)};
    return ths_launch(ctx, k, v, w, a, d, dh, THF_BWD_AB, e_read);
}

lact_status ttt_hidden_stream_apply(lact_ctx *ctx, const bf16 *q, const bf16 *Wc, bf16 *h,
                                    int64_t N, int64_t len, int64_t t0, int64_t Tt, int64_t d,
                                    int64_t dh) {
    LACT_TRY(ths_check(N, Tt));
    thf_args a = {};
    a.x = q, a.y = q, a.Wc = Wc, a.out1 = h;
    a.N = (int)N, a.Tt = (int)Tt, a.len = len, a.t0 = t0;
    return ths_launch(ctx, q, q, ths_state_layout(Wc, NULL, d, dh), a, d, dh, THF_APPLY);
}
