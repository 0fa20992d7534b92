/* Vector access for the memory-bound kernels: V consecutive elements moved
 * as 16-byte words and held as fp32 in registers. A kernel instantiated
 * with V = 16 / sizeof(T) reaches the copy rate; V = 1 is the same code
 * path element by element, for lengths or addresses that a vector does not
 * divide. The conversions are the ones of ld/st (round to nearest even), so
 * both instantiations give the same bits. */
#ifndef LACT_CUDA_VEC_CUH
#define LACT_CUDA_VEC_CUH

#include <stdint.h>

#include "kernels/cuda/common.cuh"

/* Elements of T in one 16-byte word. */
template <class T> struct vec_width { static constexpr int value = 16 / (int)sizeof(T); };

__device__ __forceinline__ float to_f32(float v) {
    return v;
}
__device__ __forceinline__ float to_f32(bf16 v) {
    return __bfloat162float(v);
}
__device__ __forceinline__ float to_f32(__half v) {
    return __half2float(v);
}
template <class T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) {
    return v;
}
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float v) {
    return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half from_f32<__half>(float v) {
    return __float2half_rn(v);
}

/* f[0..V) = p[0..V). With V · sizeof(T) a multiple of 16, p must be 16-byte
 * aligned and the loads are 16-byte words. */
template <int V, class T> __device__ __forceinline__ void vload(const T *p, float (&f)[V]) {
    if constexpr ((V * sizeof(T)) % 16 == 0) {
        constexpr int E = 16 / (int)sizeof(T);
#pragma unroll
        for (int w = 0; w < V / E; w++) {
            alignas(16) T t[E];
            *reinterpret_cast<uint4 *>(t) = reinterpret_cast<const uint4 *>(p)[w];
#pragma unroll
            for (int e = 0; e < E; e++)
                f[w * E + e] = to_f32(t[e]);
        }
    } else {
#pragma unroll
        for (int e = 0; e < V; e++)
            f[e] = to_f32(p[e]);
    }
}

/* p[0..V) = f[0..V), rounded to T; the same alignment rule as vload. */
template <int V, class T> __device__ __forceinline__ void vstore(T *p, const float (&f)[V]) {
    if constexpr ((V * sizeof(T)) % 16 == 0) {
        constexpr int E = 16 / (int)sizeof(T);
#pragma unroll
        for (int w = 0; w < V / E; w++) {
            alignas(16) T t[E];
#pragma unroll
            for (int e = 0; e < E; e++)
                t[e] = from_f32<T>(f[w * E + e]);
            reinterpret_cast<uint4 *>(p)[w] = *reinterpret_cast<const uint4 *>(t);
        }
    } else {
#pragma unroll
        for (int e = 0; e < V; e++)
            p[e] = from_f32<T>(f[e]);
    }
}

/* True when every pointer is 16-byte aligned (NULL counts as aligned). */
static inline bool lact_aligned16(const void *a, const void *b = NULL, const void *c = NULL,
                                  const void *d = NULL, const void *e = NULL) {
    return (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d | (uintptr_t)e) & 15u) == 0;
}

/* Blocks for a grid-stride loop over n items, threads per block: enough to
 * fill the device several times over, capped so that every thread of a
 * large launch handles a few items. */
static inline unsigned lact_vec_grid(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b > 8192) b = 8192;
    return (unsigned)(b < 1 ? 1 : b);
}

#endif
