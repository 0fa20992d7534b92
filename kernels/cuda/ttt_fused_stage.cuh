/* What the fused ttt kernels of the small heads share (ttt_apply_fused.cu,
 * ttt_hidden_fused.cu): a block of eight warps walks contiguous runs of
 * (head, 128-row token tile) items, keeping one head's BF16 fast weights
 * in shared memory while its run stays in that head. */
#ifndef LACT_CUDA_TTT_FUSED_STAGE_CUH
#define LACT_CUDA_TTT_FUSED_STAGE_CUH

#include <stdint.h>

#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/wgmma.cuh"

namespace {

constexpr int TAF_WARPS = 8, TAF_THREADS = 32 * TAF_WARPS, TAF_ROWS = 16 * TAF_WARPS;

/* silu(x) in two MUFU operations (2^x flushing denormals, the approximate
 * division): x / inf is 0 for very negative x, as it should be. */
__device__ __forceinline__ float taf_silu(float x) {
    return __fdividef(x, 1.0f + wg_exp2(-1.4426950408889634f * x));
}

/* rows × COLS BF16 from global (row-major) into shared memory at s, rows at
 * or past `valid` zero-filled: swizzled rows (smat) for the mma.sync
 * kernel, or with SW the SW128 layout of wgmma.cuh (64-column slabs of
 * rows·128 bytes). */
template <int COLS, bool SW>
__device__ __forceinline__ void taf_load(uint32_t s, const bf16 *g, int rows, int valid) {
    for (int i = threadIdx.x; i < rows * (COLS / 8); i += TAF_THREADS) {
        const int r = i / (COLS / 8), c = (i % (COLS / 8)) * 8;
        const uint32_t dst = SW ? s + (uint32_t)((c / 64) * rows * 128) + sw128_offset(r, c % 64)
                                : smat{s, COLS}.at(r, c);
        cp_async16(dst, g + (size_t)r * COLS + c, r < valid);
    }
}

/* A block's contiguous run [first, last) of the N·tiles (head, 128-row
 * tile) items, the runs of the grid differing in length by at most one. */
struct taf_run {
    int tiles, first, last;
    __device__ __forceinline__ taf_run(int N, int Tt) {
        tiles = (Tt + TAF_ROWS - 1) / TAF_ROWS;
        const int items = N * tiles, per = items / (int)gridDim.x, extra = items % (int)gridDim.x;
        const int b = (int)blockIdx.x;
        first = b * per + (b < extra ? b : extra);
        last = first + per + (b < extra);
    }
};

struct taf_item {
    int n, valid;
    size_t row0; /* the tile's first row of q and o */
};

/* Item it into shared memory: the head's weights W0 at s0, W2 at s2, W1 at
 * s1 where the head differs from `loaded`, the q tile at sq; returns when
 * the copies have landed and every thread of the block sees them. */
template <int D, int DH, bool SW>
__device__ __forceinline__ taf_item taf_stage(int it, const taf_run &run, int Tt, int64_t len,
                                              int64_t t0, const bf16 *q, const bf16 *Wc,
                                              uint32_t s0, uint32_t s2, uint32_t s1, uint32_t sq,
                                              int &loaded) {
    taf_item x;
    x.n = it / run.tiles;
    const int r0 = (it % run.tiles) * TAF_ROWS;
    x.valid = Tt - r0 < TAF_ROWS ? Tt - r0 : TAF_ROWS;
    x.row0 = (size_t)x.n * len + t0 + r0;
    __syncthreads(); /* the previous tile's reads of shared memory are done */
    if (x.n != loaded) {
        const bf16 *w = Wc + (size_t)x.n * 3 * D * DH;
        if constexpr (SW) {
            /* W0 and W2 interleaved per slice of 64 hidden units from s0: slice
             * j is its 64 rows of W0 then its 64 rows of W2 (SW128 slabs of
             * 128 rows), one B operand for [a | b] */
            for (int i = threadIdx.x; i < 2 * DH * (D / 8); i += TAF_THREADS) {
                const int r = i / (D / 8), c = (i % (D / 8)) * 8, m = r % DH;
                const int row = (r / DH) * 64 + m % 64;
                cp_async16(s0 + (uint32_t)((m / 64) * 128 * D * 2 + (c / 64) * 128 * 128) +
                               sw128_offset(row, c % 64),
                           w + (size_t)r * D + c, true);
            }
        } else {
            taf_load<D, SW>(s0, w, DH, DH);
            taf_load<D, SW>(s2, w + D * DH, DH, DH);
        }
        taf_load<DH, SW>(s1, w + 2 * D * DH, D, D);
        loaded = x.n;
    }
    taf_load<D, SW>(sq, q + x.row0 * D, TAF_ROWS, x.valid);
    cp_async_commit();
    cp_async_wait<0>();
    if constexpr (SW) wg_fence_proxy_async(); /* copies before the tensor cores read */
    __syncthreads();
    return x;
}

/* 16 bytes at p as four words, or zeros where !ok. */
__device__ __forceinline__ void taf_ld16(uint32_t (&w)[4], const bf16 *p, bool ok) {
    const uint4 v = ok ? *(const uint4 *)p : make_uint4(0u, 0u, 0u, 0u);
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
}
__device__ __forceinline__ void taf_st16(bf16 *p, const uint32_t (&w)[4]) {
    *(uint4 *)p = make_uint4(w[0], w[1], w[2], w[3]);
}
__device__ __forceinline__ float2 taf_unpack(uint32_t w) {
    return __bfloat1622float2(*(const __nv_bfloat162 *)&w);
}

/* dst[row0 + r] += the warp's rows of a warpgroup's m64nD accumulator
 * (wgmma.cuh layout; r = r0 + lane / 4 + 8·h, the warp's rows from r0),
 * for rows r < valid, rounded once to BF16. The low and high words of each
 * column pair are transposed across the quad (wg_quad_transpose), so the
 * loads and stores move 16 bytes a lane; every old value is loaded before
 * the first store, or each store would wait for its own load in turn. */
template <int D>
__device__ __forceinline__ void taf_add_rows(bf16 *dst, size_t row0, int r0, int valid,
                                             const float (&acc)[D / 2], int lane) {
    constexpr int PIECES = 2 * (D / 32);
    const int g = lane >> 2, t = lane & 3;
    uint32_t lo[PIECES][4], hi[PIECES][4];
    uint4 old[PIECES];
#pragma unroll
    for (int k = 0; k < PIECES; k++) {
        const int hh = k & 1, q = k >> 1;
#pragma unroll
        for (int m = 0; m < 4; m++) {
            const int i = 4 * (4 * q + m) + 2 * hh;
            lo[k][m] = __float_as_uint(acc[i]), hi[k][m] = __float_as_uint(acc[i + 1]);
        }
        wg_quad_transpose(lo[k], t);
        wg_quad_transpose(hi[k], t);
        const int row = r0 + g + 8 * hh;
        if (row < valid) old[k] = *(const uint4 *)(dst + (row0 + row) * D + 8 * (4 * q + t));
    }
#pragma unroll
    for (int k = 0; k < PIECES; k++) {
        const int hh = k & 1, q = k >> 1, row = r0 + g + 8 * hh;
        if (row >= valid) continue;
        uint32_t w[4] = {old[k].x, old[k].y, old[k].z, old[k].w};
#pragma unroll
        for (int m = 0; m < 4; m++) {
            const float2 f = __bfloat1622float2(*(const __nv_bfloat162 *)&w[m]);
            w[m] = wg_pack_bf16(f.x + __uint_as_float(lo[k][m]), f.y + __uint_as_float(hi[k][m]));
        }
        *(uint4 *)(dst + (row0 + row) * D + 8 * (4 * q + t)) = make_uint4(w[0], w[1], w[2], w[3]);
    }
}

/* [a | b] (m64n128, fp32) = the warpgroup's 64 rows of the x tile (SW128
 * slabs at sxw, taf_stage) times the slice's interleaved [W0ⱼ; W2ⱼ]ᵀ at
 * w02: one chain over d, both operands in shared memory. Only kernels
 * built for sm_90a instantiate it (wgmma.cuh). */
template <int D>
__device__ __forceinline__ void taf_mma_ab(float (&ab)[64], uint32_t sxw, uint32_t w02) {
#pragma unroll
    for (int c = 0; c < D / 16; c++) {
        const uint32_t k = (uint32_t)((c % 4) * 32);
        wg_mma_ss<128>(ab, wg_desc(sxw + (c / 4) * TAF_ROWS * 128 + k, 16, 1024),
                       wg_desc(w02 + (uint32_t)((c / 4) * 128 * 128) + k, 16, 1024), c > 0);
    }
}

/* The two warpgroups' turns at the tensor cores, on named barriers 1 and 2:
 * warpgroup 1 issues a slice's products once warpgroup 0 has issued its
 * own, and warpgroup 0 its next once warpgroup 1 has. Turns alternate, so
 * one warpgroup's element-wise work runs beside the other's products
 * instead of both waiting on the tensor cores at once and then leaving them
 * idle. Both warpgroups take the same number of turns; finish() takes the
 * last arrival so that no barrier is left half complete. */
struct taf_turns {
    int wgi, taken;
    __device__ __forceinline__ explicit taf_turns(int w) : wgi(w), taken(0) {}
    __device__ __forceinline__ void wait() const {
        if (wgi == 0) {
            if (taken > 0) wg_bar_sync(1, 2 * 128);
        } else {
            wg_bar_sync(2, 2 * 128);
        }
    }
    __device__ __forceinline__ void issued() {
        wg_bar_arrive(wgi == 0 ? 2 : 1, 2 * 128);
        taken++;
    }
    __device__ __forceinline__ void finish() const {
        if (wgi == 0 && taken > 0) wg_bar_sync(1, 2 * 128);
    }
};

template <int D, int DH> constexpr size_t taf_smem() {
    return (size_t)(3 * DH * D + TAF_ROWS * D) * 2;
}

} // namespace

#endif
