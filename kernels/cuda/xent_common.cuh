/* Row pieces of the cross-entropy kernels (softmax_xent.cu: vocabulary
 * chunks; xent_fused.cu: blocks of rows): running log-sum-exp pairs, their
 * merges, and 16-byte loads of logits. */
#ifndef LACT_CUDA_XENT_COMMON_CUH
#define LACT_CUDA_XENT_COMMON_CUH

#include <math.h>

#include "kernels/cuda/common.cuh"

/* (m, s) ← (m, s) ⊕ (m2, s2): two partial softmax sums, each relative to its
 * own maximum (an empty one is (−∞, 0)). */
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
    if (m2 == -INFINITY) return;
    if (m == -INFINITY) {
        m = m2, s = s2;
        return;
    }
    float nm = fmaxf(m, m2);
    s = s * expf(m - nm) + s2 * expf(m2 - nm);
    m = nm;
}

/* Four consecutive logits from a 16-byte (F32) or 8-byte (BF16) word. */
__device__ __forceinline__ float4 ld4(const float *p, int64_t c4) {
    return ((const float4 *)p)[c4];
}
__device__ __forceinline__ float4 ld4(const bf16 *p, int64_t c4) {
    const uint2 u = ((const uint2 *)p)[c4];
    const float2 a = __bfloat1622float2(*(const __nv_bfloat162 *)&u.x),
                 b = __bfloat1622float2(*(const __nv_bfloat162 *)&u.y);
    return make_float4(a.x, a.y, b.x, b.y);
}

__device__ __forceinline__ void lse_warp_merge(float &m, float &s) {
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        lse_merge(m, s, m2, s2);
    }
}

/* Eight consecutive logits from a 16-byte word (BF16), or four (F32). */
__device__ __forceinline__ void ld16(const bf16 *p, int64_t i, float (&v)[8]) {
    const uint4 u = ((const uint4 *)p)[i];
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float2 f = __bfloat1622float2(*(const __nv_bfloat162 *)&w[k]);
        v[2 * k] = f.x, v[2 * k + 1] = f.y;
    }
}
__device__ __forceinline__ void ld16(const float *p, int64_t i, float (&v)[4]) {
    const float4 u = ((const float4 *)p)[i];
    v[0] = u.x, v[1] = u.y, v[2] = u.z, v[3] = u.w;
}

/* exp; FAST: the hardware's approximation (a few ulp; a pass over the
 * logits that takes two exponentials per element is otherwise bound by
 * the special-function unit). */
template <bool FAST> __device__ __forceinline__ float xent_exp(float x) {
    return FAST ? __expf(x) : expf(x);
}

/* Takes E logits into the running max m and sum s (relative to m). */
template <int E, bool FAST = false>
__device__ __forceinline__ void lse_addn(float &m, float &s, const float (&v)[E]) {
    float lm = v[0];
#pragma unroll
    for (int k = 1; k < E; k++)
        lm = fmaxf(lm, v[k]);
    if (lm == -INFINITY) return;
    const float nm = fmaxf(m, lm);
    float t = m == -INFINITY ? 0.0f : s * xent_exp<FAST>(m - nm);
#pragma unroll
    for (int k = 0; k < E; k++)
        t += xent_exp<FAST>(v[k] - nm);
    s = t, m = nm;
}

__device__ __forceinline__ void st4(float *p, int64_t i, float4 v) {
    *(float4 *)(p + i) = v;
}
__device__ __forceinline__ void st4(bf16 *p, int64_t i, float4 v) {
    __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
    uint2 u;
    u.x = *(uint32_t *)&a, u.y = *(uint32_t *)&b;
    *(uint2 *)(p + i) = u;
}

/* The logits of a 16-byte word held in registers (16 / sizeof(T) of them),
 * and a word from floats (rounded to nearest for BF16). */
template <class T> __device__ __forceinline__ void xent_unpack(const uint4 &u, float *v) {
    if constexpr (sizeof(T) == 2) {
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float2 f = __bfloat1622float2(*(const __nv_bfloat162 *)&w[k]);
            v[2 * k] = f.x, v[2 * k + 1] = f.y;
        }
    } else {
        v[0] = __uint_as_float(u.x), v[1] = __uint_as_float(u.y);
        v[2] = __uint_as_float(u.z), v[3] = __uint_as_float(u.w);
    }
}
template <class T> __device__ __forceinline__ uint4 xent_pack(const float *v) {
    uint4 u;
    if constexpr (sizeof(T) == 2) {
        uint32_t w[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const __nv_bfloat162 b = __floats2bfloat162_rn(v[2 * k], v[2 * k + 1]);
            w[k] = *(const uint32_t *)&b;
        }
        u.x = w[0], u.y = w[1], u.z = w[2], u.w = w[3];
    } else {
        u.x = __float_as_uint(v[0]), u.y = __float_as_uint(v[1]);
        u.z = __float_as_uint(v[2]), u.w = __float_as_uint(v[3]);
    }
    return u;
}

#endif
