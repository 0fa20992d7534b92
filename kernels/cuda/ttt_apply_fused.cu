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
 * o + h W1ᵀ rounded once. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/ttt_apply_fused.h"

namespace {

constexpr int TAF_WARPS = 8, TAF_THREADS = 32 * TAF_WARPS, TAF_ROWS = 16 * TAF_WARPS;

__device__ __forceinline__ float taf_silu(float x) {
    return x / (1.0f + __expf(-x));
}

/* rows × cols BF16 from global (row-major) into a swizzled shared matrix,
 * rows at or past `valid` zero-filled. */
template <int COLS>
__device__ __forceinline__ void taf_load(smat s, const bf16 *g, int rows, int valid) {
    for (int i = threadIdx.x; i < rows * (COLS / 8); i += TAF_THREADS) {
        const int r = i / (COLS / 8), c = (i % (COLS / 8)) * 8;
        cp_async16(s.at(r, c), g + (size_t)r * COLS + c, r < valid);
    }
}

template <int D, int DH>
__global__ void __launch_bounds__(TAF_THREADS, 1)
    ttt_apply_fused_kernel(const bf16 *__restrict__ q, const bf16 *__restrict__ Wc,
                           bf16 *__restrict__ o, int N, int64_t len, int64_t t0, int Tt) {
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t base = smem_addr(smem);
    const smat s0{base, D}, s2{base + DH * D * 2, D}, s1{base + 2 * DH * D * 2, DH},
        sq{base + 3 * DH * D * 2, D};
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int tiles = (Tt + TAF_ROWS - 1) / TAF_ROWS, items = N * tiles;
    const int per = items / (int)gridDim.x, extra = items % (int)gridDim.x;
    const int b = (int)blockIdx.x;
    const int first = b * per + (b < extra ? b : extra), last = first + per + (b < extra);
    int loaded = -1;
    for (int it = first; it < last; it++) {
        const int n = it / tiles, r0 = (it % tiles) * TAF_ROWS;
        const int valid = Tt - r0 < TAF_ROWS ? Tt - r0 : TAF_ROWS;
        __syncthreads(); /* the previous tile's reads of shared memory are done */
        if (n != loaded) {
            const bf16 *w = Wc + (size_t)n * 3 * D * DH;
            taf_load<D>(s0, w, DH, DH);
            taf_load<D>(s2, w + D * DH, DH, DH);
            taf_load<DH>(s1, w + 2 * D * DH, D, D);
            loaded = n;
        }
        const size_t row0 = (size_t)n * len + t0 + r0;
        taf_load<D>(sq, q + row0 * D, TAF_ROWS, valid);
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();

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

        /* o += acc for the warp's valid rows */
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int rl = m0 + g + 8 * hh;
            if (rl >= valid) continue;
            bf16 *orow = o + (row0 + rl) * D;
#pragma unroll
            for (int j = 0; j < D / 8; j++) {
                __nv_bfloat162 *p = (__nv_bfloat162 *)(orow + j * 8 + 2 * t);
                const float2 old = __bfloat1622float2(*p);
                *p = __floats2bfloat162_rn(old.x + acc[j][2 * hh], old.y + acc[j][2 * hh + 1]);
            }
        }
    }
}

template <int D, int DH> constexpr size_t taf_smem() {
    return (size_t)(3 * DH * D + TAF_ROWS * D) * 2;
}

template <int D, int DH>
lact_status taf_launch(lact_ctx *ctx, const bf16 *q, const bf16 *Wc, bf16 *o, int64_t N,
                       int64_t len, int64_t t0, int64_t Tt) {
    int dev = 0, sms = 0;
    LACT_CU(cudaGetDevice(&dev));
    LACT_CU(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    const int64_t items = N * ((Tt + TAF_ROWS - 1) / TAF_ROWS);
    const unsigned grid = (unsigned)(items < sms ? items : sms);
    const size_t smem = taf_smem<D, DH>();
    LACT_CU(cudaFuncSetAttribute(ttt_apply_fused_kernel<D, DH>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    ttt_apply_fused_kernel<D, DH><<<grid, TAF_THREADS, smem, lact_cuda_stream(ctx)>>>(
        q, Wc, o, (int)N, len, t0, (int)Tt);
    LACT_CU_LAUNCH("ttt_apply_fused");
    return LACT_OK;
}

} // namespace

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
