/* Pieces shared by the two families of headprep kernels (headprep.cu: a
 * block per position, any shape; headprep_tiled.cu: position tiles with the
 * parameter gradients summed in the kernel). */
#ifndef LACT_CUDA_HEADPREP_COMMON_CUH
#define LACT_CUDA_HEADPREP_COMMON_CUH

#include <math.h>

#include "kernels/cuda/common.cuh"

/* The fast exponential and division: these kernels are bound by their
 * instruction count, and the error (a few ulp) is far inside the op's. */
__device__ __forceinline__ float hp_sigmoid(float x) {
    return __fdividef(1.0f, 1.0f + __expf(-x));
}

/* cos and sign · sin of the angle of pair i at position p, in double with
 * the expression of rope.cu, so that both ops rotate by the same floats. */
__device__ __forceinline__ void hp_angle(int64_t p, int i, int d, double log_theta, double sign,
                                         float *c, float *s) {
    double inv_freq = exp(-2.0 * (double)i / (double)d * log_theta);
    double sd, cd;
    sincos((double)p * inv_freq, &sd, &cd);
    *c = (float)cd;
    *s = (float)(sign * sd);
}

/* (a, b) = the pair (x_i, x_{i+d/2}) rotated by the table's angle, in place. */
/* With V a multiple of 4 the table reads are 16-byte words (cs + i0 and
 * sn + i0 are then 16-byte aligned: the tables hold d / 2 floats a row). */
template <int V>
__device__ __forceinline__ void hp_rotate(float (&a)[V], float (&b)[V], const float *cs,
                                          const float *sn, int i0) {
    float c[V], s[V];
    if constexpr (V % 4 == 0) {
#pragma unroll
        for (int e = 0; e < V; e += 4) {
            *reinterpret_cast<float4 *>(&c[e]) = *reinterpret_cast<const float4 *>(cs + i0 + e);
            *reinterpret_cast<float4 *>(&s[e]) = *reinterpret_cast<const float4 *>(sn + i0 + e);
        }
    } else {
#pragma unroll
        for (int e = 0; e < V; e++) {
            c[e] = cs[i0 + e];
            s[e] = sn[i0 + e];
        }
    }
#pragma unroll
    for (int e = 0; e < V; e++) {
        const float x0 = a[e], x1 = b[e];
        a[e] = x0 * c[e] - x1 * s[e];
        b[e] = x1 * c[e] + x0 * s[e];
    }
}

/* dg += da, with rope da's pair (da[0], da[1]) rotated by the table first. */
template <int V, int N, bool ROPE>
__device__ __forceinline__ void hp_add_grad(float (&dg)[N][V], float (&da)[N][V], const float *cs,
                                            const float *sn, int i0) {
    if (ROPE) hp_rotate<V>(da[0], da[N - 1], cs, sn, i0);
    constexpr int P = ROPE ? 2 : 1;
#pragma unroll
    for (int p = 0; p < P; p++)
#pragma unroll
        for (int e = 0; e < V; e++)
            dg[p][e] += da[p][e];
}

/* d silu(x) / dx. */
__device__ __forceinline__ float hp_silu_grad(float x) {
    const float s = hp_sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
}

#endif
