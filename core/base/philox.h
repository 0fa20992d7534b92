/* Philox4x32-10, a counter-based RNG (Salmon et al., SC'11): the numbers are a
 * pure function of (seed, counter), so the CPU and every CUDA thread draw the
 * same values without shared state. Included by C and by CUDA code. */
#ifndef LACT_PHILOX_H
#define LACT_PHILOX_H

#include <stdint.h>
#if !defined(__CUDACC__)
#include <math.h>
#endif

#if defined(__CUDACC__)
#define LACT_HD __host__ __device__ __forceinline__
#else
#define LACT_HD static inline
#endif

typedef struct lact_u32x4 {
    uint32_t v[4];
} lact_u32x4;

LACT_HD void lact_philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    *lo = (uint32_t)p;
}

/* Four 32-bit words for (seed, counter, stream). */
LACT_HD lact_u32x4 lact_philox4x32(uint64_t seed, uint64_t counter, uint64_t stream) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint32_t hi0, lo0, hi1, lo1;
        lact_philox_mulhilo(0xD2511F53u, c0, &hi0, &lo0);
        lact_philox_mulhilo(0xCD9E8D57u, c2, &hi1, &lo1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    lact_u32x4 out;
    out.v[0] = c0;
    out.v[1] = c1;
    out.v[2] = c2;
    out.v[3] = c3;
    return out;
}

/* A float in the open interval (0, 1) from 23 random bits: the midpoints
 * k/2^23 + 2^-24 are all exact in float, so the result never rounds to 1. */
LACT_HD float lact_u32_to_unit(uint32_t x) {
    return (float)(x >> 9) * (1.0f / 8388608.0f) + (0.5f / 8388608.0f);
}

/* Element i of a uniform stream: word i % 4 of block i / 4. Identical bits on
 * the CPU and the GPU. */
LACT_HD float lact_philox_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
    lact_u32x4 r = lact_philox4x32(seed, i >> 2, stream);
    return lact_u32_to_unit(r.v[i & 3]);
}

/* Element i of a standard normal stream: Box-Muller on words (2j, 2j+1) of
 * block i / 2, j = i % 2, cosine branch. The GPU's log/cos may differ from
 * the CPU's in the last bits; everything upstream is bit-identical. */
LACT_HD float lact_philox_normal(uint64_t seed, uint64_t stream, uint64_t i) {
    lact_u32x4 r = lact_philox4x32(seed, i >> 1, stream);
    int j = (int)(i & 1) * 2;
    float u1 = lact_u32_to_unit(r.v[j]);
    float u2 = lact_u32_to_unit(r.v[j + 1]);
    float rad = sqrtf(-2.0f * logf(u1));
    return rad * cosf(6.283185307179586f * u2);
}

/* Host-side sequential generator for code that just wants numbers. */
typedef struct lact_rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t next; /* element index */
} lact_rng;

#if !defined(__CUDACC__)
static inline lact_rng lact_rng_make(uint64_t seed, uint64_t stream) {
    lact_rng r = {seed, stream, 0};
    return r;
}
static inline float lact_rng_uniform(lact_rng *r) {
    return lact_philox_uniform(r->seed, r->stream, r->next++);
}
static inline float lact_rng_normal(lact_rng *r) {
    return lact_philox_normal(r->seed, r->stream, r->next++);
}
static inline uint32_t lact_rng_u32(lact_rng *r) {
    uint64_t i = r->next++;
    return lact_philox4x32(r->seed, i >> 2, r->stream).v[i & 3];
}
#endif

#endif
