/* The ttt op's apply for small heads in one kernel (ttt_apply_fused.h).
 *
 * A block holds one head's BF16 fast weights in shared memory (W0, W2
 * [dh, d] and W1 [d, dh], 192 KB at d = 128, dh = 256) and walks tiles of
 * 128 token rows; each of its eight warps takes 16 rows. Per slice of 64
 * hidden units a warp forms a = q W0ᵀ and b = q W2ᵀ in fp32 accumulators,
 * h = silu(a) ⊙ b packed to BF16 straight into the A fragments of the next
 * product (the m16n8 accumulator layout is the m16n8k16 A layout), and adds
 * h W1ᵀ into its output rows, so the hidden activations never leave the
 * registers. q's A fragments are loaded once per tile and kept.
 *
 * Work items are (head, tile) pairs in head-major order; a persistent grid
 * of one block per multiprocessor takes contiguous runs of them, so a block
 * reloads weights only where its run crosses into the next head and the
 * runs differ in length by at most one tile.
 *
 * Rounding: a and b stay fp32 (the unfused path rounds them to BF16 as its
 * products' outputs), h is rounded to BF16 as the product's input, o gets
 * o + h W1ᵀ rounded once. On Hopper a wgmma version of the same kernel
 * (ttt_apply_wg_kernel, below) runs instead. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/ttt_apply_fused.h"
#include "kernels/cuda/ttt_fused_stage.cuh"

/* 1 only in the sm_90a image, whose wgmma kernel has a body (wgmma.cuh). */
__device__ int taf_wgmma_built = WGMMA_DEVICE;

namespace {

template <int D, int DH>
__global__ void __launch_bounds__(TAF_THREADS, 1)
    ttt_apply_fused_kernel(const bf16 *__restrict__ q, const bf16 *__restrict__ Wc,
                           bf16 *__restrict__ o, int N, int64_t len, int64_t t0, int Tt) {
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t base = smem_addr(smem);
    const smat s0{base, D}, s2{base + DH * D * 2, D}, s1{base + 2 * DH * D * 2, DH},
        sq{base + 3 * DH * D * 2, D};
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const taf_run run(N, Tt);
    int loaded = -1;
    for (int it = run.first; it < run.last; it++) {
        const taf_item x = taf_stage<D, DH, false>(it, run, Tt, len, t0, q, Wc, s0.base, s2.base,
                                                   s1.base, sq.base, loaded);
        const int valid = x.valid;
        const size_t row0 = x.row0;

        const int m0 = warp * 16;
        uint32_t qa[D / 16][4];
#pragma unroll
        for (int k = 0; k < D / 16; k++)
            ldsm_x4(qa[k], sq.at(m0 + (lane & 15), k * 16 + (lane >> 4) * 8));
        float acc[D / 8][4];
#pragma unroll
        for (int j = 0; j < D / 8; j++)
            acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

#pragma unroll 1
        for (int h0 = 0; h0 < DH; h0 += 64) {
            float a[8][4], bb[8][4];
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    a[j][e] = bb[j][e] = 0.0f;
#pragma unroll
            for (int k = 0; k < D / 16; k++)
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    const int rr = h0 + np * 16 + (lane & 7) + ((lane >> 4) << 3);
                    const int cc = k * 16 + ((lane >> 3) & 1) * 8;
                    uint32_t r[4];
                    ldsm_x4(r, s0.at(rr, cc));
                    mma_bf16(a[2 * np], qa[k], r[0], r[1]);
                    mma_bf16(a[2 * np + 1], qa[k], r[2], r[3]);
                    ldsm_x4(r, s2.at(rr, cc));
                    mma_bf16(bb[2 * np], qa[k], r[0], r[1]);
                    mma_bf16(bb[2 * np + 1], qa[k], r[2], r[3]);
                }
            /* h = silu(a) b as the A fragments of h W1ᵀ, 16 hidden units each */
            uint32_t hf[4][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                const float *x = a[2 * kk], *y = bb[2 * kk], *x2 = a[2 * kk + 1],
                            *y2 = bb[2 * kk + 1];
                hf[kk][0] = pack_bf16(taf_silu(x[0]) * y[0], taf_silu(x[1]) * y[1]);
                hf[kk][1] = pack_bf16(taf_silu(x[2]) * y[2], taf_silu(x[3]) * y[3]);
                hf[kk][2] = pack_bf16(taf_silu(x2[0]) * y2[0], taf_silu(x2[1]) * y2[1]);
                hf[kk][3] = pack_bf16(taf_silu(x2[2]) * y2[2], taf_silu(x2[3]) * y2[3]);
            }
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
#pragma unroll
                for (int np = 0; np < D / 16; np++) {
                    uint32_t r[4];
                    ldsm_x4(r, s1.at(np * 16 + (lane & 7) + ((lane >> 4) << 3),
                                     h0 + kk * 16 + ((lane >> 3) & 1) * 8));
                    mma_bf16(acc[2 * np], hf[kk], r[0], r[1]);
                    mma_bf16(acc[2 * np + 1], hf[kk], r[2], r[3]);
                }
        }

        /* o += acc for the warp's valid rows; every old value is loaded
         * before the first store, or each store would wait for its own
         * load's latency in turn */
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int rl = m0 + g + 8 * hh;
            if (rl >= valid) continue;
            __nv_bfloat162 *orow = (__nv_bfloat162 *)(o + (row0 + rl) * D + 2 * t);
            __nv_bfloat162 old[D / 8];
#pragma unroll
            for (int j = 0; j < D / 8; j++)
                old[j] = orow[j * 4];
#pragma unroll
            for (int j = 0; j < D / 8; j++) {
                const float2 f = __bfloat1622float2(old[j]);
                orow[j * 4] = __floats2bfloat162_rn(f.x + acc[j][2 * hh], f.y + acc[j][2 * hh + 1]);
            }
        }
    }
}

/* The same apply on Hopper's warpgroup products: two warpgroups of 64 rows
 * each; per slice of 64 hidden units [a | b] = q [W0ⱼ; W2ⱼ]ᵀ is one chain
 * of m64n128k16 with both operands in shared memory (W0 and W2 stored
 * interleaved per slice, taf_stage), and h W1ᵀ is m64nDk16 with h from
 * registers (the accumulator layout is the A layout). Same items, rounding
 * and results as the mma.sync kernel. */
template <int D, int DH>
__global__ void __launch_bounds__(TAF_THREADS, 1)
    ttt_apply_wg_kernel(const bf16 *__restrict__ q, const bf16 *__restrict__ Wc,
                        bf16 *__restrict__ o, int N, int64_t len, int64_t t0, int Tt) {
#if WGMMA_DEVICE
    extern __shared__ __align__(128) unsigned char smem_wg[];
    const uint32_t base = (smem_addr(smem_wg) + 1023u) & ~1023u;
    const uint32_t s0 = base, s2 = s0 + DH * D * 2, s1 = s2 + DH * D * 2, sq = s1 + D * DH * 2;
    const int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3, wgi = threadIdx.x >> 7;
    const uint32_t sqw = sq + (uint32_t)(wgi * 64 * 128);
    const taf_run run(N, Tt);
    int loaded = -1;
    taf_turns turns(wgi);
    for (int it = run.first; it < run.last; it++) {
        const taf_item x =
            taf_stage<D, DH, true>(it, run, Tt, len, t0, q, Wc, s0, s2, s1, sq, loaded);
        const int valid = x.valid;
        const size_t row0 = x.row0;

        float acc[D / 2];
#pragma unroll
        for (int i = 0; i < D / 2; i++)
            acc[i] = 0.0f;
#pragma unroll 1
        for (int h0 = 0; h0 < DH; h0 += 64) {
            float ab[64]; /* [a | b]: accumulator columns 0–63 a, 64–127 b */
#pragma unroll
            for (int i = 0; i < 64; i++)
                ab[i] = 0.0f;
            wg_fence_regs(ab);
            turns.wait();
            wg_fence();
            taf_mma_ab<D>(ab, sqw, s0 + (uint32_t)((h0 / 64) * 128 * D * 2));
            wg_commit();
            turns.issued();
            /* also waits for the last slice's h W1ᵀ, whose A registers hf
             * are rewritten below */
            wg_wait<0>();
            wg_fence_regs(ab);
            float a[32];
#pragma unroll
            for (int i = 0; i < 32; i++)
                a[i] = taf_silu(ab[i]) * ab[i + 32];
            uint32_t hf[4][4];
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                wg_acc_to_a(hf[kk], a, kk);
            wg_fence_regs(acc);
            wg_fence();
#pragma unroll
            for (int kk = 0; kk < 4; kk++)
                wg_mma_rs<D>(acc, hf[kk],
                             wg_desc(s1 + (uint32_t)((h0 / 64) * D * 128 + kk * 32), 16, 1024));
            wg_commit(); /* runs on beside the next slice's [a | b] */
        }
        wg_wait<0>();
        wg_fence_regs(acc);

        taf_add_rows<D>(o, row0, 64 * wgi + 16 * warp, valid, acc, lane);
    }
    turns.finish();
#endif
}

template <int D, int DH>
lact_status taf_launch(lact_ctx *ctx, const bf16 *q, const bf16 *Wc, bf16 *o, int64_t N,
                       int64_t len, int64_t t0, int64_t Tt) {
    const int64_t items = N * ((Tt + TAF_ROWS - 1) / TAF_ROWS);
    if (items >= INT32_MAX || N >= INT32_MAX)
        return lact_fail(LACT_E_UNSUPPORTED, "ttt fused apply: %lld heads × %lld tokens",
                         (long long)N, (long long)Tt);
    int sms = 0;
    bool wgmma = false;
    LACT_TRY(ttt_fused_device(&sms, &wgmma));
    const unsigned grid = (unsigned)(items < sms ? items : sms);
    cudaStream_t st = lact_cuda_stream(ctx);
    if (wgmma) {
        const size_t smem = taf_smem<D, DH>() + 1024; /* slabs 1024-aligned */
        LACT_CU(cudaFuncSetAttribute(ttt_apply_wg_kernel<D, DH>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        ttt_apply_wg_kernel<D, DH>
            <<<grid, TAF_THREADS, smem, st>>>(q, Wc, o, (int)N, len, t0, (int)Tt);
    } else {
        const size_t smem = taf_smem<D, DH>();
        LACT_CU(cudaFuncSetAttribute(ttt_apply_fused_kernel<D, DH>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        ttt_apply_fused_kernel<D, DH>
            <<<grid, TAF_THREADS, smem, st>>>(q, Wc, o, (int)N, len, t0, (int)Tt);
    }
    LACT_CU_LAUNCH("ttt_apply_fused");
    return LACT_OK;
}

} // namespace

/* Per device, asked once: the multiprocessor count and whether the device
 * runs the sm_90a image (compute capability 9.0 and the wgmma kernel's
 * body built). */
struct taf_device {
    signed char wgmma; /* 0 not asked yet, 1 usable, -1 not */
    int sms;
};
static taf_device taf_devices[64];

lact_status ttt_fused_device(int *sms, bool *wgmma) {
    int dev = 0;
    LACT_CU(cudaGetDevice(&dev));
    if (dev < 0 || dev >= 64)
        return lact_fail(LACT_E_UNSUPPORTED, "ttt fused kernels: device %d", dev);
    taf_device &d = taf_devices[dev];
    if (!d.wgmma) {
        LACT_CU(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, dev));
        int major = 0, minor = 0, built = 0;
        bool ok =
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
            major == 9 && minor == 0 &&
            cudaMemcpyFromSymbol(&built, taf_wgmma_built, sizeof built) == cudaSuccess &&
            built == 1;
        (void)cudaGetLastError(); /* a failed query is an answer */
        d.wgmma = ok ? 1 : -1;
    }
    const char *e = getenv("LACT_TTT_APPLY_WGMMA"); /* "0": the mma.sync kernels */
    *sms = d.sms;
    *wgmma = d.wgmma > 0 && !(e && strcmp(e, "0") == 0);
    return LACT_OK;
}

bool ttt_apply_fused_fits(int64_t d, int64_t dh) {
    const char *e = getenv("LACT_TTT_APPLY_FUSED");
    if (e && strcmp(e, "0") == 0) return false;
    return (d == 64 || d == 128) && (dh == d || dh == 2 * d);
}

lact_status ttt_apply_fused(lact_ctx *ctx, const bf16 *q, const bf16 *Wc, bf16 *o, int64_t N,
                            int64_t len, int64_t t0, int64_t Tt, int64_t d, int64_t dh) {
    if (N <= 0 || Tt <= 0) return LACT_OK;
    switch (d * 1000 + dh) {
    case 64064:
        return taf_launch<64, 64>(ctx, q, Wc, o, N, len, t0, Tt);
    case 64128:
        return taf_launch<64, 128>(ctx, q, Wc, o, N, len, t0, Tt);
    case 128128:
        return taf_launch<128, 128>(ctx, q, Wc, o, N, len, t0, Tt);
    case 128256:
        return taf_launch<128, 256>(ctx, q, Wc, o, N, len, t0, Tt);
    default:
        return lact_fail(LACT_E_UNSUPPORTED, "ttt: no fused apply for d = %lld, dh = %lld",
                         (long long)d, (long long)dh);
    }
}
