/* The ttt op's hidden-unit passes on Hopper (ttt_hidden_fused.h).
 *
 * Blocks, items and staging are the fused apply's (ttt_fused_stage.cuh): a
 * block holds one head's BF16 weights in shared memory (the fast weights,
 * or for the backward the update's gradient dG, which has their layout),
 * x's tile of 128 rows beside them, and its two warpgroups take 64 rows
 * each, taking turns at the tensor cores (taf_turns). y is read straight
 * from global memory into A fragments, as the weights leave no room for a
 * second tile. Per slice of 64 hidden units a warpgroup forms
 * [a | b] = x [W0ⱼ; W2ⱼ]ᵀ (m64n128, both operands in shared memory) and
 * e = y W1ⱼ (m64n64, W1 read MN-major), then, by mode:
 *   THF_FWD     the element-wise step, f0, f2, f1 stored as BF16;
 *   THF_FWD_DX  the same, and f0, f2 become the A fragments of
 *               f0 W0ⱼ + f2 W2ⱼ (W0ⱼ, W2ⱼ read MN-major), accumulated over
 *               the slices and added to dx once per tile;
 *   THF_BWD     with dG as the weights the products are k dG02ᵀ and v dG1;
 *               a, b, e are read from the forward's products and the
 *               backward of the element-wise step runs in registers.
 * Every global access moves 16 bytes a lane (wg_quad_transpose): 4-byte
 * pieces of eight rows per instruction leave the L2 one request per
 * 4 bytes, which bounded the first version of this kernel at 310 µs a
 * pass where 66 µs were its arithmetic.
 *
 * Rounding: in the forward modes a, b and e stay fp32 (the batched path
 * rounds them to BF16 as its products' outputs); in the backward, k dG02ᵀ
 * and v dG1 do. Outputs are rounded once, as there. */
#include <stdint.h>

#include "kernels/cuda/ttt_apply_fused.h"
#include "kernels/cuda/ttt_fused_stage.cuh"
#include "kernels/cuda/ttt_hidden_slice.cuh"
#include "kernels/cuda/ttt_hidden_fused.h"

namespace {

/* The A fragments (wg_acc_to_a layout) of the warp's 16 rows r.. of y's
 * tile starting at global row row0; rows at or past `valid` are zeros. */
template <int D>
__device__ __forceinline__ void thf_load_a(uint32_t (&a)[D / 16][4], const bf16 *y, size_t row0,
                                           int r, int valid, int lane) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int row = r + g + 8 * (i & 1), col = 16 * kk + 8 * (i >> 1) + 2 * t;
            a[kk][i] = row < valid ? __ldg((const unsigned int *)(y + (row0 + row) * D + col)) : 0u;
        }
}

template <int D, int DH, int MODE>
__global__ void __launch_bounds__(TAF_THREADS, 1) ttt_hidden_wg_kernel(const thf_args A) {
#if WGMMA_DEVICE
    constexpr bool DX = MODE == THF_FWD_DX;
    extern __shared__ __align__(128) unsigned char smem_th[];
    const uint32_t base = (smem_addr(smem_th) + 1023u) & ~1023u;
    const uint32_t s0 = base, s2 = s0 + DH * D * 2, s1 = s2 + DH * D * 2, sx = s1 + D * DH * 2;
    const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3, wgi = threadIdx.x >> 7;
    const uint32_t sxw = sx + (uint32_t)(wgi * 64 * 128);
    const int r0 = 64 * wgi + 16 * warp; /* the warp's first row in the tile */
    const taf_run run(A.N, A.Tt);
    int loaded = -1;
    taf_turns turns(wgi);
    for (int it = run.first; it < run.last; it++) {
        const taf_item xi =
            taf_stage<D, DH, true>(it, run, A.Tt, A.len, A.t0, A.x, A.Wc, s0, s2, s1, sx, loaded);
        const int valid = xi.valid;
        const size_t orow = (size_t)xi.n * A.Tt + (size_t)((it % run.tiles) * TAF_ROWS);
        uint32_t ya[D / 16][4];
        thf_load_a<D>(ya, A.y, xi.row0, r0, valid, lane);
        float L[2][3], sl[2][3];
        thf_rates(L, sl, A, xi.row0, r0, valid, lane);
        float acc[DX ? D / 2 : 2];
#pragma unroll
        for (int i = 0; i < (DX ? D / 2 : 2); i++)
            acc[i] = 0.0f;

#pragma unroll 1
        for (int h0 = 0; h0 < DH; h0 += 64) {
            const uint32_t w02 = s0 + (uint32_t)((h0 / 64) * 128 * D * 2);
            float ab[64], e[32]; /* [a | b]: columns 0–63 a, 64–127 b */
#pragma unroll
            for (int i = 0; i < 32; i++)
                e[i] = 0.0f;
            wg_fence_regs(ab);
            wg_fence_regs(e);
            turns.wait();
            wg_fence();
            taf_mma_ab<D>(ab, sxw, w02);
#pragma unroll
            for (int c = 0; c < D / 16; c++)
                wg_mma_rs_tb<64>(
                    e, ya[c],
                    wg_desc(s1 + (uint32_t)((h0 / 64) * D * 128 + c * 2048), D * 128, 1024));
            wg_commit();
            turns.issued();
            wg_wait<0>();
            wg_fence_regs(ab);
            wg_fence_regs(e);

            if constexpr (MODE == THF_BWD) {
                thf_bwd_slice(ab, e, L, sl, A, orow, r0, valid, h0, DH, lane);
            } else {
                uint32_t fa[4][4], fb[4][4];
                thf_fwd_slice(ab, e, L, fa, fb, A.out02, A.out1, 2 * DH, DH, orow, r0, valid, h0,
                              DH, lane);
                if constexpr (DX) {
                    wg_fence_regs(acc);
                    wg_fence();
#pragma unroll
                    for (int kk = 0; kk < 4; kk++) {
                        wg_mma_rs_tb<D>(acc, fa[kk], wg_desc(w02 + kk * 2048, 128 * 128, 1024));
                        wg_mma_rs_tb<D>(acc, fb[kk],
                                        wg_desc(w02 + 64 * 128 + kk * 2048, 128 * 128, 1024));
                    }
                    wg_commit();
                    /* waited for here: held over the next slice's products,
                     * fa and fb cost more in spills than the overlap gains */
                    wg_wait<0>();
                    wg_fence_regs(acc);
                }
            }
        }

        if constexpr (DX) taf_add_rows<D>(A.dx, xi.row0, r0, valid, acc, lane);
        if constexpr (MODE == THF_BWD) thf_add_rate_grads(sl, A, xi.row0, r0, valid, lane);
    }
    turns.finish();
#endif
}

template <int D, int DH, int MODE> lact_status thf_launch_mode(lact_ctx *ctx, const thf_args &a) {
    const int64_t items = (int64_t)a.N * ((a.Tt + TAF_ROWS - 1) / TAF_ROWS);
    int sms = 0;
    bool wgmma = false;
    LACT_TRY(ttt_fused_device(&sms, &wgmma));
    if (!wgmma) return lact_fail(LACT_E_UNSUPPORTED, "ttt fused hidden pass: needs Hopper's wgmma");
    const unsigned grid = (unsigned)(items < sms ? items : sms);
    const size_t smem = taf_smem<D, DH>() + 1024; /* slabs 1024-aligned */
    LACT_CU(cudaFuncSetAttribute(ttt_hidden_wg_kernel<D, DH, MODE>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    ttt_hidden_wg_kernel<D, DH, MODE><<<grid, TAF_THREADS, smem, lact_cuda_stream(ctx)>>>(a);
    LACT_CU_LAUNCH("ttt_hidden_fused");
    return LACT_OK;
}

template <int D, int DH> lact_status thf_launch(lact_ctx *ctx, const thf_args &a, bool bwd) {
    if (bwd) return thf_launch_mode<D, DH, THF_BWD>(ctx, a);
    if (a.dx) return thf_launch_mode<D, DH, THF_FWD_DX>(ctx, a);
    return thf_launch_mode<D, DH, THF_FWD>(ctx, a);
}

lact_status thf_dispatch(lact_ctx *ctx, const thf_args &a, bool bwd, int64_t d, int64_t dh) {
    switch (d * 1000 + dh) {
    case 64064:
        return thf_launch<64, 64>(ctx, a, bwd);
    case 64128:
        return thf_launch<64, 128>(ctx, a, bwd);
    case 128128:
        return thf_launch<128, 128>(ctx, a, bwd);
    case 128256:
        return thf_launch<128, 256>(ctx, a, bwd);
    default:
        return lact_fail(LACT_E_UNSUPPORTED, "ttt: no fused hidden pass for d = %lld, dh = %lld",
                         (long long)d, (long long)dh);
    }
}

lact_status thf_check(int64_t N, int64_t Tt) {
    if ((N * ((Tt + TAF_ROWS - 1) / TAF_ROWS)) >= INT32_MAX || N >= INT32_MAX)
        return lact_fail(LACT_E_UNSUPPORTED, "ttt fused hidden pass: %lld heads × %lld tokens",
                         (long long)N, (long long)Tt);
    return LACT_OK;
}

} // namespace

bool ttt_hidden_fused_ready(int64_t d, int64_t dh) {
    int sms = 0;
    bool wgmma = false;
    if (!ttt_apply_fused_fits(d, dh) || ttt_fused_device(&sms, &wgmma) != LACT_OK) return false;
    return wgmma;
}

lact_status ttt_hidden_fused(lact_ctx *ctx, const bf16 *x, const bf16 *y, const bf16 *Wc,
                             const float *l0, const float *l1, const float *l2, bf16 *out02,
                             bf16 *out1, bf16 *dx, int64_t N, int64_t len, int64_t t0, int64_t Tt,
                             int64_t d, int64_t dh) {
    if (N <= 0 || Tt <= 0) return LACT_OK;
    LACT_TRY(thf_check(N, Tt));
    thf_args a = {};
    a.x = x, a.y = y, a.Wc = Wc, a.l0 = l0, a.l1 = l1, a.l2 = l2;
    a.out02 = out02, a.out1 = out1, a.dx = dx;
    a.N = (int)N, a.Tt = (int)Tt, a.len = len, a.t0 = t0;
    return thf_dispatch(ctx, a, false, d, dh);
}

lact_status ttt_hidden_bwd_fused(lact_ctx *ctx, const bf16 *k, const bf16 *v, const bf16 *dGc,
                                 const float *l0, const float *l1, const float *l2, bf16 *zab,
                                 bf16 *ze, bf16 *dab, bf16 *de, float *dl0, float *dl1, float *dl2,
                                 int64_t N, int64_t len, int64_t t0, int64_t Tt, int64_t d,
                                 int64_t dh) {
    if (N <= 0 || Tt <= 0) return LACT_OK;
    LACT_TRY(thf_check(N, Tt));
    thf_args a = {};
    a.x = k, a.y = v, a.Wc = dGc, a.l0 = l0, a.l1 = l1, a.l2 = l2;
    a.out02 = zab, a.out1 = ze, a.dab = dab, a.de = de, a.dl0 = dl0, a.dl1 = dl1, a.dl2 = dl2;
    a.N = (int)N, a.Tt = (int)Tt, a.len = len, a.t0 = t0;
    return thf_dispatch(ctx, a, true, d, dh);
}
