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
#include "kernels/cuda/ttt_hidden_fused.h"

namespace {

enum { THF_FWD, THF_FWD_DX, THF_BWD };

struct thf_args {
    const bf16 *x, *y, *Wc;
    const float *l0, *l1, *l2;
    /* forward: out02 = [f0 | f2], out1 = f1, dx; backward: out02 holds
     * [a | b] and gets [x0 | x2], out1 holds e and gets h1, and dab, de,
     * dl0..dl2 (+=) are written */
    bf16 *out02, *out1, *dx, *dab, *de;
    float *dl0, *dl1, *dl2;
    int N, Tt;
    int64_t len, t0;
};

/* sigmoid(a) in two MUFU operations (2^x flushing denormals, the
 * approximate reciprocal): 1/(1 + inf) is 0 as it should be. */
template <class F> __device__ __forceinline__ F thf_sigmoid(F a) {
    return __fdividef(1.0f, 1.0f + wg_exp2(-1.4426950408889634f * a));
}

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

/* The forward's element-wise step of one slice: f0, f2 packed in pairs
 * (wg_acc_to_a order, also the A fragments of the dx product) and f1, then
 * the stores. No branch between the elements, so that their MUFU chains
 * interleave. */
template <int DH>
__device__ __forceinline__ void thf_fwd_slice(const float (&ab)[64], const float (&e)[32],
                                              const float (&L)[2][3], uint32_t (&fa)[4][4],
                                              uint32_t (&fb)[4][4], bf16 *out02, bf16 *out1,
                                              size_t orow, int r0, int valid, int h0, int lane) {
    const int g = lane >> 2, t = lane & 3;
    uint32_t fh[16];
#pragma unroll
    for (int i = 0; i < 32; i += 2) {
        const int hh = (i >> 1) & 1;
        float v0[2], v2[2], v1[2];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const float a = ab[i + u], b = ab[i + u + 32];
            const float sg = thf_sigmoid(a);
            const float s = a * sg, sp = sg * (1.0f + a * (1.0f - sg));
            v0[u] = L[hh][0] * e[i + u] * b * sp;
            v2[u] = L[hh][2] * e[i + u] * s;
            v1[u] = L[hh][1] * s * b;
        }
        fa[i / 8][(i % 8) / 2] = wg_pack_bf16(v0[0], v0[1]);
        fb[i / 8][(i % 8) / 2] = wg_pack_bf16(v2[0], v2[1]);
        fh[i / 2] = wg_pack_bf16(v1[0], v1[1]);
    }
#pragma unroll
    for (int hh = 0; hh < 2; hh++)
#pragma unroll
        for (int q = 0; q < 2; q++) {
            uint32_t va[4], vb[4], vh[4];
#pragma unroll
            for (int m = 0; m < 4; m++) {
                const int x = 2 * (4 * q + m) + hh; /* pair index i / 2 */
                va[m] = fa[x >> 2][x & 3], vb[m] = fb[x >> 2][x & 3], vh[m] = fh[x];
            }
            wg_quad_transpose(va, t);
            wg_quad_transpose(vb, t);
            wg_quad_transpose(vh, t);
            const int row = r0 + g + 8 * hh, col = h0 + 8 * (4 * q + t);
            if (row < valid) {
                bf16 *o02 = out02 + (orow + row) * 2 * DH + col;
                taf_st16(o02, va);
                taf_st16(o02 + DH, vb);
                taf_st16(out1 + (orow + row) * DH + col, vh);
            }
        }
}

/* The backward's element-wise step of one slice, from kg = [k dG0ᵀ | k
 * dG2ᵀ] (in ab) and p1 = v dG1 (in e), a, b, e read from out02 and out1:
 * writes h1, x0, x2 over them, dA, dB and dE, and adds the rows' terms of
 * the learning-rate gradients to sl[h][0..2]. */
template <int DH>
__device__ __forceinline__ void thf_bwd_slice(const float (&kg)[64], const float (&p)[32],
                                              const float (&L)[2][3], float (&sl)[2][3],
                                              const thf_args &A, size_t orow, int r0, int valid,
                                              int h0, int lane) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int hh = 0; hh < 2; hh++)
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const int row = r0 + g + 8 * hh, col = h0 + 8 * (4 * q + t);
            const bool ok = row < valid;
            bf16 *p02 = A.out02 + (orow + row) * 2 * DH + col,
                 *p1 = A.out1 + (orow + row) * DH + col;
            uint32_t wa[4], wb[4], we[4];
            taf_ld16(wa, p02, ok);
            taf_ld16(wb, p02 + DH, ok);
            taf_ld16(we, p1, ok);
            wg_quad_transpose(wa, t); /* back to the accumulator's pairs */
            wg_quad_transpose(wb, t);
            wg_quad_transpose(we, t);
            uint32_t oh[4], o0[4], o2[4], oda[4], odb[4], ode[4];
#pragma unroll
            for (int m = 0; m < 4; m++) {
                const int i = 4 * (4 * q + m) + 2 * hh; /* accumulator register of the pair */
                const float2 a2 = taf_unpack(wa[m]), b2 = taf_unpack(wb[m]), e2 = taf_unpack(we[m]);
                const float av[2] = {a2.x, a2.y}, bv[2] = {b2.x, b2.y}, ev[2] = {e2.x, e2.y};
                float h1[2], x0[2], x2[2], da[2], db[2], de[2];
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const float a = av[u], b = bv[u], e = ev[u];
                    const float kg0 = kg[i + u], kg2 = kg[i + u + 32], p1 = p[i + u];
                    const float sg = thf_sigmoid(a), s = a * sg;
                    const float sp = sg * (1.0f + a * (1.0f - sg));
                    const float spp = sg * (1.0f - sg) * (2.0f + a * (1.0f - 2.0f * sg));
                    sl[hh][1] += p1 * s * b;
                    sl[hh][2] += kg2 * e * s;
                    sl[hh][0] += kg0 * e * b * sp;
                    const float dh1 = L[hh][1] * p1, gg2 = L[hh][2] * kg2, gg0 = L[hh][0] * kg0;
                    const float ds = gg2 * e + dh1 * b, dsp = gg0 * e * b;
                    de[u] = gg2 * s + gg0 * b * sp;
                    db[u] = gg0 * e * sp + dh1 * s;
                    da[u] = ds * sp + dsp * spp;
                    h1[u] = L[hh][1] * s * b;
                    x0[u] = L[hh][0] * e * b * sp;
                    x2[u] = L[hh][2] * e * s;
                }
                oh[m] = wg_pack_bf16(h1[0], h1[1]), o0[m] = wg_pack_bf16(x0[0], x0[1]);
                o2[m] = wg_pack_bf16(x2[0], x2[1]), oda[m] = wg_pack_bf16(da[0], da[1]);
                odb[m] = wg_pack_bf16(db[0], db[1]), ode[m] = wg_pack_bf16(de[0], de[1]);
            }
            wg_quad_transpose(oh, t);
            wg_quad_transpose(o0, t);
            wg_quad_transpose(o2, t);
            wg_quad_transpose(oda, t);
            wg_quad_transpose(odb, t);
            wg_quad_transpose(ode, t);
            if (ok) {
                bf16 *q02 = A.dab + (orow + row) * 2 * DH + col;
                taf_st16(p02, o0);
                taf_st16(p02 + DH, o2);
                taf_st16(p1, oh);
                taf_st16(q02, oda);
                taf_st16(q02 + DH, odb);
                taf_st16(A.de + (orow + row) * DH + col, ode);
            }
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
    const int g = lane >> 2;
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
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            const int row = r0 + g + 8 * hh;
            const size_t li = xi.row0 + (size_t)(row < valid ? row : 0);
            L[hh][0] = A.l0 ? A.l0[li] : 1.0f;
            L[hh][1] = A.l1 ? A.l1[li] : 1.0f;
            L[hh][2] = A.l2 ? A.l2[li] : 1.0f;
            sl[hh][0] = sl[hh][1] = sl[hh][2] = 0.0f;
        }
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
                thf_bwd_slice<DH>(ab, e, L, sl, A, orow, r0, valid, h0, lane);
            } else {
                uint32_t fa[4][4], fb[4][4];
                thf_fwd_slice<DH>(ab, e, L, fa, fb, A.out02, A.out1, orow, r0, valid, h0, lane);
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
        if constexpr (MODE == THF_BWD) {
            /* the rows' sums over the quad's columns; its first lane adds them */
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
#pragma unroll
                for (int k = 0; k < 3; k++) {
                    sl[hh][k] += __shfl_xor_sync(~0u, sl[hh][k], 1);
                    sl[hh][k] += __shfl_xor_sync(~0u, sl[hh][k], 2);
                }
                const int row = r0 + g + 8 * hh;
                if ((lane & 3) == 0 && row < valid) {
                    const size_t li = xi.row0 + (size_t)row;
                    if (A.dl0) A.dl0[li] += sl[hh][0];
                    if (A.dl1) A.dl1[li] += sl[hh][1];
                    if (A.dl2) A.dl2[li] += sl[hh][2];
                }
            }
        }
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
