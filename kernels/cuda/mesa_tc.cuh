/* Tensor-core pieces shared by the mesa kernels (mesa_tc_*.cu), on top of
 * the attention kernels' m16n8k16 helpers (attention_mma.cuh): tile loads
 * of one item's rows into padded shared tiles, the transposed A fragment,
 * and B fragments read straight from global memory into registers for the
 * operands that stay fixed across CG steps.
 *
 * Fragment of a [64, NW·..] accumulator owned by one warp (g = lane / 4,
 * t = lane % 4): acc[mt][nt][2h + e] is row mt·16 + g + 8h, column
 * n0 + nt·8 + 2t + e. */
#ifndef LACT_CUDA_MESA_TC_CUH
#define LACT_CUDA_MESA_TC_CUH

#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/mesa_common.cuh"

#define MESA_TC_ROWS 64

/* Rows [0, 64) of an item (row-major [T, d] at src, d a multiple of 8)
 * into a shared tile of stride LD; rows ≥ T and columns ≥ d are zero. */
template <int DH, int LD, int NTH>
static __device__ __forceinline__ void tc_tile_load(bf16 *dst, const bf16 *src, int T, int d) {
    constexpr int CPR = DH / 8;
    for (int i = threadIdx.x; i < MESA_TC_ROWS * CPR; i += NTH) {
        const int r = i / CPR, c = (i % CPR) * 8;
        const bool ok = r < T && c < d;
        cp_async16(smem_addr(dst + r * LD + c), ok ? src + (int64_t)r * d + c : src, ok);
    }
}

/* The A fragment of the transpose of a tile stored [k][m] (stride LD): rows
 * m0..m0+15 of Aᵀ, k from k0. */
template <int LD>
static __device__ __forceinline__ void frag_a_t(uint32_t a[4], const bf16 *tile, int k0, int m0,
                                                int lane) {
    ldsm_x4_t(a, smem_addr(tile + (k0 + (lane & 7) + ((lane >> 4) << 3)) * LD + m0 +
                           ((lane >> 3) & 1) * 8));
}

/* Two adjacent bf16 of global memory as one register, or 0. */
static __device__ __forceinline__ uint32_t ld_pair(const bf16 *p, bool ok) {
    return ok ? *reinterpret_cast<const uint32_t *>(p) : 0u;
}

/* Two bf16 of global memory (a stride apart) as one register, or 0. */
static __device__ __forceinline__ uint32_t ld_pair_strided(const bf16 *p, int64_t stride, bool ok) {
    if (!ok) return 0u;
    __nv_bfloat162 v;
    v.x = p[0];
    v.y = p[stride];
    return *reinterpret_cast<uint32_t *>(&v);
}

static __device__ __forceinline__ float bf_round(float x) {
    return __bfloat162float(__float2bfloat16_rn(x));
}

static __device__ __forceinline__ float2 unpack_bf16(uint32_t u) {
    __nv_bfloat162 v = *reinterpret_cast<__nv_bfloat162 *>(&u);
    return __bfloat1622float2(v);
}

#endif
