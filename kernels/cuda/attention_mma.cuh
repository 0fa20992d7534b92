/* Warp-level tensor-core pieces of the BF16 attention kernels: 16-byte
 * asynchronous copies into padded shared tiles, ldmatrix fragment loads and
 * the m16n8k16 bf16 MMA with fp32 accumulators.
 *
 * Fragment layout of mma.m16n8k16 (g = lane / 4, t = lane % 4):
 *   A 16×16: a0 (row g, cols 2t, 2t+1), a1 (row g+8, same), a2 (row g,
 *            cols 2t+8, 2t+9), a3 (row g+8, cols 2t+8, 2t+9)
 *   B 16×8:  b0 (k rows 2t, 2t+1, col g), b1 (k rows 2t+8, 2t+9, col g)
 *   C 16×8:  c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, same)
 * so the C fragments of two adjacent n-tiles are, packed to bf16, the A
 * fragment of the next product (P in P·V, dS in dS·K). */
#ifndef LACT_CUDA_ATTENTION_MMA_CUH
#define LACT_CUDA_ATTENTION_MMA_CUH

#include <stdint.h>

#include "kernels/cuda/common.cuh"

static __device__ __forceinline__ uint32_t smem_addr(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global → shared; zero-fills when !ok (src is then not read). */
static __device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, bool ok) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(ok ? 16 : 0));
}
static __device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> static __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

static __device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
static __device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* c += a · b (bf16 in, fp32 accumulate). */
static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
                                                uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats as bf16x2, the first in the low half (the lower column). */
static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&p);
}

/* Rows [r0, r0 + R) of a row-major [.., D] bf16 matrix into a shared tile
 * with row stride D + 8 (the 16-byte pad keeps ldmatrix conflict-free);
 * rows outside [0, rend) are zero-filled. */
template <int R, int D, int NT>
static __device__ __forceinline__ void tile_load(bf16 *dst, const bf16 *src, int r0, int rend) {
    constexpr int CPR = D / 8;
#pragma unroll
    for (int it = 0; it < (R * CPR + NT - 1) / NT; it++) {
        const int i = it * NT + (int)threadIdx.x;
        if ((R * CPR) % NT != 0 && i >= R * CPR) break;
        const int r = i / CPR, c = (i % CPR) * 8, row = r0 + r;
        const bool ok = row >= 0 && row < rend;
        cp_async16(smem_addr(dst + r * (D + 8) + c), ok ? src + (int64_t)row * D + c : src, ok);
    }
}

/* The A fragment (16 rows × 16 columns from column c0) of a padded tile
 * whose rows start at `rows`: ldmatrix addresses, lanes 0–15 rows 0–15 at
 * c0, lanes 16–31 the same rows at c0 + 8. */
template <int D>
static __device__ __forceinline__ void frag_a(uint32_t a[4], const bf16 *rows, int c0, int lane) {
    ldsm_x4(a, smem_addr(rows + (lane & 15) * (D + 8) + c0 + (lane >> 4) * 8));
}

/* B fragments of two n-tiles (rows n0..n0+15 of a tile stored [n][k], k
 * from k0): b[0], b[1] for rows n0..n0+7, b[2], b[3] for n0+8..n0+15. */
template <int D>
static __device__ __forceinline__ void frag_b_nk(uint32_t b[4], const bf16 *tile, int n0, int k0,
                                                 int lane) {
    ldsm_x4(b, smem_addr(tile + (n0 + (lane & 7) + ((lane >> 4) << 3)) * (D + 8) + k0 +
                         ((lane >> 3) & 1) * 8));
}

/* B fragments of two n-tiles from a tile stored [k][n] (k rows k0..k0+15,
 * columns n0..n0+15): b[0], b[1] for columns n0..n0+7, b[2], b[3] for
 * n0+8..n0+15. */
template <int D>
static __device__ __forceinline__ void frag_b_kn(uint32_t b[4], const bf16 *tile, int k0, int n0,
                                                 int lane) {
    ldsm_x4_t(b, smem_addr(tile + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * (D + 8) + n0 +
                           (lane >> 4) * 8));
}

/* A row-major shared matrix whose 16-byte chunks are swizzled by the row
 * (chunk c of row r at c ^ (r % 8) within each group of eight), so that
 * ldmatrix reads of eight rows at one column hit eight bank groups without
 * padding; cols a multiple of 64. Base address and row length in elements. */
struct smat {
    uint32_t base;
    int cols;
    __device__ __forceinline__ uint32_t at(int r, int c) const {
        return base + (uint32_t)(r * cols * 2) + ((((c >> 3) ^ r) & 7) << 4) +
               (((c >> 3) & ~7) << 4) + (uint32_t)((c & 7) * 2);
    }
};

static __device__ __forceinline__ float lds_bf16(uint32_t a) {
    unsigned short v;
    asm volatile("ld.shared.u16 %0, [%1];\n" : "=h"(v) : "r"(a));
    return __bfloat162float(__ushort_as_bfloat16(v));
}
static __device__ __forceinline__ void sts_bf16(uint32_t a, float x) {
    unsigned short v = __bfloat16_as_ushort(__float2bfloat16_rn(x));
    asm volatile("st.shared.u16 [%0], %1;\n" ::"r"(a), "h"(v));
}
static __device__ __forceinline__ void sts_u32(uint32_t a, uint32_t v) {
    asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(a), "r"(v));
}
static __device__ __forceinline__ uint4 lds_v4(uint32_t a) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(a));
    return v;
}
static __device__ __forceinline__ void sts_v4(uint32_t a, uint4 v) {
    asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};\n" ::"r"(a), "r"(v.x), "r"(v.y),
                 "r"(v.z), "r"(v.w));
}

#endif
