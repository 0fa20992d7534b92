/* What the fused hidden-unit passes of the ttt op share
 * (ttt_hidden_fused.cu for small heads, ttt_hidden_stream.cu for large
 * ones): their arguments, the rates of a warp's rows, and the element-wise
 * step of one slice of 64 hidden units from a warpgroup's accumulators
 * ([a | b] m64n128 and e m64n64, wgmma.cuh layout) to the outputs in
 * memory. */
#ifndef LACT_CUDA_TTT_HIDDEN_SLICE_CUH
#define LACT_CUDA_TTT_HIDDEN_SLICE_CUH

#include <stdint.h>

#include "kernels/cuda/ttt_fused_stage.cuh"

namespace {

/* Streamed kernel only: THF_APPLY, h = silu(a) b of the apply (no y);
 * THF_BWD_AB, THF_BWD forming a, b, e itself from the weights. */
enum { THF_FWD, THF_FWD_DX, THF_BWD, THF_APPLY, THF_BWD_AB };

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
    /* row strides of out02 and dab, of out1 and de (elements; 0: packed,
     * 2·dh and dh) */
    int64_t ld02, ld1;
};

__device__ __forceinline__ int64_t thf_ld02(const thf_args &A, int dh) {
    return A.ld02 ? A.ld02 : 2 * (int64_t)dh;
}
__device__ __forceinline__ int64_t thf_ld1(const thf_args &A, int dh) {
    return A.ld1 ? A.ld1 : (int64_t)dh;
}

/* sigmoid(a) in two MUFU operations (2^x flushing denormals, the
 * approximate reciprocal): 1/(1 + inf) is 0 as it should be. */
template <class F> __device__ __forceinline__ F thf_sigmoid(F a) {
    return __fdividef(1.0f, 1.0f + wg_exp2(-1.4426950408889634f * a));
}

/* The learning rates of the warp's rows r0 + lane / 4 + 8·hh of the tile
 * whose first row is row0 of [N, len] (1 where a rate is NULL), and the
 * rows' rate-gradient sums zeroed. */
__device__ __forceinline__ void thf_rates(float (&L)[2][3], float (&sl)[2][3], const thf_args &A,
                                          size_t row0, int r0, int valid, int lane) {
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int row = r0 + (lane >> 2) + 8 * hh;
        const size_t li = row0 + (size_t)(row < valid ? row : 0);
        L[hh][0] = A.l0 ? A.l0[li] : 1.0f;
        L[hh][1] = A.l1 ? A.l1[li] : 1.0f;
        L[hh][2] = A.l2 ? A.l2[li] : 1.0f;
        sl[hh][0] = sl[hh][1] = sl[hh][2] = 0.0f;
    }
}

/* Adds the backward's rate-gradient sums of the warp's rows (each lane's
 * columns in sl) to dl0..dl2: summed over the quad, added by its first
 * lane, so every row has one writer. */
__device__ __forceinline__ void thf_quad_sum(float (&sl)[2][3]) {
#pragma unroll
    for (int hh = 0; hh < 2; hh++)
#pragma unroll
        for (int k = 0; k < 3; k++) {
            sl[hh][k] += __shfl_xor_sync(~0u, sl[hh][k], 1);
            sl[hh][k] += __shfl_xor_sync(~0u, sl[hh][k], 2);
        }
}
__device__ __forceinline__ void thf_add_rate_grads(float (&sl)[2][3], const thf_args &A,
                                                   size_t row0, int r0, int valid, int lane) {
    thf_quad_sum(sl);
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int row = r0 + (lane >> 2) + 8 * hh;
        if ((lane & 3) == 0 && row < valid) {
            const size_t li = row0 + (size_t)row;
            if (A.dl0) A.dl0[li] += sl[hh][0];
            if (A.dl1) A.dl1[li] += sl[hh][1];
            if (A.dl2) A.dl2[li] += sl[hh][2];
        }
    }
}

/* The same sums stored to part[3 · row + k] (row in the tile) instead,
 * for a reduction in a fixed order across blocks. */
__device__ __forceinline__ void thf_store_rate_grads(float (&sl)[2][3], float *part, int r0,
                                                     int lane) {
    thf_quad_sum(sl);
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        const int row = r0 + (lane >> 2) + 8 * hh;
        if ((lane & 3) == 0)
#pragma unroll
            for (int k = 0; k < 3; k++)
                part[3 * row + k] = sl[hh][k];
    }
}

/* Register i of an m64n64 accumulator, as floats or as BF16 pairs in
 * accumulator order (pair x: registers 2x, 2x + 1), which stay packed
 * until they are used. */
__device__ __forceinline__ float thf_at(const float (&r)[32], int i) { return r[i]; }
__device__ __forceinline__ float thf_at(const uint32_t (&r)[16], int i) {
    const float2 v = taf_unpack(r[i >> 1]);
    return i & 1 ? v.y : v.x;
}

/* The forward's outputs of one element from a, b, e and its row's rates
 * L: f0 = l0 e b silu'(a), f2 = l2 e silu(a), f1 = l1 silu(a) b, as
 * thf_fwd_slice forms them (which keeps its own lines: moved here, they
 * change the code ptxas makes of the kernels that use it). */
__device__ __forceinline__ void thf_fwd_elem(float a, float b, float e, const float (&L)[3],
                                             float &f0, float &f2, float &f1) {
    const float sg = thf_sigmoid(a);
    const float s = a * sg, sp = sg * (1.0f + a * (1.0f - sg));
    f0 = L[0] * e * b * sp;
    f2 = L[2] * e * s;
    f1 = L[1] * s * b;
}

/* A thread's 16-byte words of f0, f2 (va, vb: BF16 pairs in accumulator
 * order) and f1 (vh) at row, col: across its quad into column order, then
 * stored unless the row is past the tile's valid ones. */
__device__ __forceinline__ void thf_fwd_store(uint32_t (&va)[4], uint32_t (&vb)[4],
                                              uint32_t (&vh)[4], bf16 *out02, bf16 *out1,
                                              int64_t ld02, int64_t ld1, size_t orow, int row,
                                              int valid, int col, int dh, int t) {
    wg_quad_transpose(va, t);
    wg_quad_transpose(vb, t);
    wg_quad_transpose(vh, t);
    if (row < valid) {
        bf16 *o02 = out02 + (orow + row) * ld02 + col;
        taf_st16(o02, va);
        taf_st16(o02 + dh, vb);
        taf_st16(out1 + (orow + row) * ld1 + col, vh);
    }
}

/* The forward's element-wise step of one slice: f0, f2 packed in pairs
 * (wg_acc_to_a order, also the A fragments of the dx product) and f1, then
 * the stores. No branch between the elements, so that their MUFU chains
 * interleave. */
template <class E>
__device__ __forceinline__ void thf_fwd_slice(const float (&ab)[64], const E &e,
                                              const float (&L)[2][3], uint32_t (&fa)[4][4],
                                              uint32_t (&fb)[4][4], bf16 *out02, bf16 *out1,
                                              int64_t ld02, int64_t ld1, size_t orow, int r0,
                                              int valid, int h0, int dh, int lane) {
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
            const float ev = thf_at(e, i + u);
            v0[u] = L[hh][0] * ev * b * sp;
            v2[u] = L[hh][2] * ev * s;
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
            thf_fwd_store(va, vb, vh, out02, out1, ld02, ld1, orow, r0 + g + 8 * hh, valid,
                          h0 + 8 * (4 * q + t), dh, t);
        }
}

/* The apply's hidden activations of one slice, h = silu(a) b, stored to
 * out1 (rows of dh). */
__device__ __forceinline__ void thf_apply_slice(const float (&ab)[64], bf16 *out1, size_t orow,
                                                int r0, int valid, int h0, int dh, int lane) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int hh = 0; hh < 2; hh++)
#pragma unroll
        for (int q = 0; q < 2; q++) {
            uint32_t vh[4];
#pragma unroll
            for (int m = 0; m < 4; m++) {
                const int i = 4 * (4 * q + m) + 2 * hh; /* accumulator register of the pair */
                float h[2];
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const float a = ab[i + u];
                    h[u] = a * thf_sigmoid(a) * ab[i + u + 32];
                }
                vh[m] = wg_pack_bf16(h[0], h[1]);
            }
            wg_quad_transpose(vh, t);
            const int row = r0 + g + 8 * hh;
            if (row < valid) taf_st16(out1 + (orow + row) * dh + h0 + 8 * (4 * q + t), vh);
        }
}

/* a, b, e of a slice rounded to BF16 in pairs (accumulator order): [a | b]
 * from an m64n128 accumulator, e from an m64n64 one. */
__device__ __forceinline__ void thf_pack_abe(uint32_t (&abe)[3][16], const float (&ab)[64],
                                             const float (&e)[32]) {
#pragma unroll
    for (int x = 0; x < 16; x++) {
        abe[0][x] = wg_pack_bf16(ab[2 * x], ab[2 * x + 1]);
        abe[1][x] = wg_pack_bf16(ab[2 * x + 32], ab[2 * x + 33]);
        abe[2][x] = wg_pack_bf16(e[2 * x], e[2 * x + 1]);
    }
}

/* Where the backward's element-wise step finds a, b, e: in memory (out02,
 * out1); in registers (thf_pack_abe); or a, b in registers and e and p1 =
 * v dG1 as the thread's own 16-byte words in shared memory, a word (hh, q)
 * 2 KB apart (the streamed kernel's ths_copy_slice). */
enum { THF_ABE_MEM, THF_ABE_REGS, THF_AB_REGS_EP_SMEM };

/* A thread's 16-byte word of shared memory at addr, in accumulator pair
 * order across the quad (wg_quad_transpose). */
__device__ __forceinline__ void thf_ld_pairs(uint32_t (&w)[4], uint32_t addr, int t) {
    asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(w[0]), "=r"(w[1]), "=r"(w[2]), "=r"(w[3])
                 : "r"(addr));
    wg_quad_transpose(w, t);
}

/* A quarter (HH, Q: the thread's 16-byte words of rows HH, columns Q) of
 * the forward's element-wise step of a slice, for the streamed pass that
 * runs it beside the next slice's products: a and b as BF16 pairs in
 * accumulator order (rounded as the batched products round them), e the
 * thread's words in shared memory at se; stores its words of f0, f2 and
 * f1. */
template <int HH, int Q>
__device__ __forceinline__ void thf_fwd_chunk(const uint32_t (&pa)[16], const uint32_t (&pb)[16],
                                              uint32_t se, const float (&L)[2][3], bf16 *out02,
                                              bf16 *out1, int64_t ld02, int64_t ld1, size_t orow,
                                              int r0, int valid, int h0, int dh, int lane) {
    const int g = lane >> 2, t = lane & 3;
    uint32_t we[4], va[4], vb[4], vh[4];
    thf_ld_pairs(we, se + (uint32_t)(2 * HH + Q) * 2048u, t);
#pragma unroll
    for (int m = 0; m < 4; m++) {
        const int x = 2 * (4 * Q + m) + HH; /* pair index */
        const float2 a2 = taf_unpack(pa[x]), b2 = taf_unpack(pb[x]), e2 = taf_unpack(we[m]);
        float f0[2], f2[2], f1[2];
        thf_fwd_elem(a2.x, b2.x, e2.x, L[HH], f0[0], f2[0], f1[0]);
        thf_fwd_elem(a2.y, b2.y, e2.y, L[HH], f0[1], f2[1], f1[1]);
        va[m] = wg_pack_bf16(f0[0], f0[1]), vb[m] = wg_pack_bf16(f2[0], f2[1]);
        vh[m] = wg_pack_bf16(f1[0], f1[1]);
    }
    thf_fwd_store(va, vb, vh, out02, out1, ld02, ld1, orow, r0 + g + 8 * HH, valid,
                  h0 + 8 * (4 * Q + t), dh, t);
}

/* A quarter (HH, Q) of the apply's step of a slice, for the streamed pass
 * that runs it beside the next slice's products: h = silu(a) b from a and
 * b as BF16 pairs in accumulator order, stored to out1. */
template <int HH, int Q>
__device__ __forceinline__ void thf_apply_chunk(const uint32_t (&pa)[16], const uint32_t (&pb)[16],
                                                bf16 *out1, size_t orow, int r0, int valid, int h0,
                                                int dh, int lane) {
    const int t = lane & 3;
    uint32_t vh[4];
#pragma unroll
    for (int m = 0; m < 4; m++) {
        const int x = 2 * (4 * Q + m) + HH; /* pair index */
        const float2 a2 = taf_unpack(pa[x]), b2 = taf_unpack(pb[x]);
        vh[m] = wg_pack_bf16(a2.x * thf_sigmoid(a2.x) * b2.x, a2.y * thf_sigmoid(a2.y) * b2.y);
    }
    wg_quad_transpose(vh, t);
    const int row = r0 + (lane >> 2) + 8 * HH;
    if (row < valid) taf_st16(out1 + (orow + row) * dh + h0 + 8 * (4 * Q + t), vh);
}

/* The backward's element-wise step of one slice, from kg = [k dG0ᵀ | k
 * dG2ᵀ] (in ab) and p1 = v dG1 (in e, or with THF_AB_REGS_EP_SMEM at sp),
 * and a, b, e (BF16) from where SRC says (e at se with
 * THF_AB_REGS_EP_SMEM): writes h1, x0, x2 to out02 and out1, dA, dB and
 * dE, and adds the rows' terms of the learning-rate gradients to
 * sl[h][0..2]. Only its quarters C0 to C1 - 1 (quarter 2 hh + q: the
 * thread's 16-byte words of rows hh, columns q), for a pass that runs the
 * rest beside its next products. */
template <int SRC, int C0 = 0, int C1 = 4, class P>
__device__ __forceinline__ void
thf_bwd_slice_abe(const float (&kg)[64], const P &p, const float (&L)[2][3], float (&sl)[2][3],
                  const thf_args &A, size_t orow, int r0, int valid, int h0, int dh, int lane,
                  const uint32_t (&abe)[3][16], uint32_t se = 0, uint32_t sp = 0) {
    const int g = lane >> 2, t = lane & 3;
    const int64_t ld02 = thf_ld02(A, dh), ld1 = thf_ld1(A, dh);
#pragma unroll
    for (int hh = 0; hh < 2; hh++)
#pragma unroll
        for (int q = 0; q < 2; q++) {
            if (2 * hh + q < C0 || 2 * hh + q >= C1) continue;
            const int row = r0 + g + 8 * hh, col = h0 + 8 * (4 * q + t);
            const bool ok = row < valid;
            bf16 *p02 = A.out02 + (orow + row) * ld02 + col,
                 *p1 = A.out1 + (orow + row) * ld1 + col;
            uint32_t wa[4], wb[4], we[4], wp[4];
            if constexpr (SRC != THF_ABE_MEM) {
#pragma unroll
                for (int m = 0; m < 4; m++) {
                    const int x = 2 * (4 * q + m) + hh; /* pair index */
                    wa[m] = abe[0][x], wb[m] = abe[1][x];
                    if constexpr (SRC == THF_ABE_REGS) we[m] = abe[2][x];
                }
            }
            if constexpr (SRC == THF_AB_REGS_EP_SMEM) {
                thf_ld_pairs(we, se + (uint32_t)(2 * hh + q) * 2048u, t);
                thf_ld_pairs(wp, sp + (uint32_t)(2 * hh + q) * 2048u, t);
            }
            if constexpr (SRC == THF_ABE_MEM) {
                taf_ld16(wa, p02, ok);
                taf_ld16(wb, p02 + dh, ok);
                taf_ld16(we, p1, ok);
                wg_quad_transpose(wa, t); /* back to the accumulator's pairs */
                wg_quad_transpose(wb, t);
                wg_quad_transpose(we, t);
            }
            uint32_t oh[4], o0[4], o2[4], oda[4], odb[4], ode[4];
#pragma unroll
            for (int m = 0; m < 4; m++) {
                const int i = 4 * (4 * q + m) + 2 * hh; /* accumulator register of the pair */
                const float2 a2 = taf_unpack(wa[m]), b2 = taf_unpack(wb[m]), e2 = taf_unpack(we[m]);
                const float av[2] = {a2.x, a2.y}, bv[2] = {b2.x, b2.y}, ev[2] = {e2.x, e2.y};
                float pv[2] = {thf_at(p, i), thf_at(p, i + 1)};
                if constexpr (SRC == THF_AB_REGS_EP_SMEM) {
                    const float2 p2 = taf_unpack(wp[m]);
                    pv[0] = p2.x, pv[1] = p2.y;
                }
                float h1[2], x0[2], x2[2], da[2], db[2], de[2];
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const float a = av[u], b = bv[u], e = ev[u];
                    const float kg0 = kg[i + u], kg2 = kg[i + u + 32], p1 = pv[u];
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
                bf16 *q02 = A.dab + (orow + row) * ld02 + col;
                taf_st16(p02, o0);
                taf_st16(p02 + dh, o2);
                taf_st16(p1, oh);
                taf_st16(q02, oda);
                taf_st16(q02 + dh, odb);
                taf_st16(A.de + (orow + row) * ld1 + col, ode);
            }
        }
}

__device__ __forceinline__ void thf_bwd_slice(const float (&kg)[64], const float (&p)[32],
                                              const float (&L)[2][3], float (&sl)[2][3],
                                              const thf_args &A, size_t orow, int r0, int valid,
                                              int h0, int dh, int lane) {
    const uint32_t none[3][16] = {}; /* not read */
    thf_bwd_slice_abe<THF_ABE_MEM>(kg, p, L, sl, A, orow, r0, valid, h0, dh, lane, none);
}

} // namespace

#endif
