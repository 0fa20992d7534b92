/* Newton–Schulz of the ttt update for small matrices on Hopper's warpgroup
 * tensor cores, one block per matrix with every step in shared memory: the
 * forward's five steps in one kernel and their backward in another,
 * instead of five to ten batched cuBLASLt products per step (each a few
 * microseconds at these sizes, where the launch and the ramp cost more
 * than the arithmetic).
 *
 * A matrix is worked on wide, X [p, q] with p <= q: a tall stored matrix
 * Y [q, p] is transposed on its way in and out (the iterates kept for the
 * backward are not: they stay wide). The normalisation X[0] = u / ‖u‖ and
 * its backward run inside the kernels too. Per step, with (a, b, c) the
 * step's coefficients:
 *   forward   A = X Xᵀ, P = bA + cA², X' = aX + P X;
 *   backward  from G = ∂/∂X': Q = G Xᵀ + X Gᵀ, R = bQ + c(QA + AQ),
 *             ∂/∂X = aG + P G + R X.
 * A, P, Q, R are symmetric, so X Gᵀ = (G Xᵀ)ᵀ and AQ = (QA)ᵀ: one product
 * each and a transposed read of shared memory. The backward forms A and P
 * again from the kept X (three products a step, bit for bit the forward's)
 * rather than reading them back: that halves what the forward writes and
 * the backward reads, and leaves the backward's shared memory to G, X, A
 * and one scratch matrix.
 *
 * Warpgroup w (of p / 64) owns rows 64w.. of every product. Its own rows of
 * A, P, Q, R come out of the tensor cores in registers, which is also the
 * layout of wgmma's A operand from registers, so P X, Q A, P G and R X take
 * them from there; matrices read whole (X, G and A as the B operand, A and
 * the scratch for transposed reads) sit in shared memory in the 128-byte
 * swizzled slabs of wgmma.cuh. X' (and ∂/∂X) are formed 64 columns at a
 * time and written over the slab of X (G) they read once every warpgroup is
 * past it, the next slab's product already issued.
 *
 * Operands are BF16 with fp32 accumulation, rounded where the batched path
 * (ttt_ns.cuh) rounds: A, P, X', M = G Xᵀ, Q, T = Q A, R and ∂/∂X. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/ttt_apply_fused.h"
#include "kernels/cuda/ttt_ns_fused.h"
#include "kernels/cuda/wgmma.cuh"

namespace {

/* The helpers serve only the sm_90a pass's kernel bodies (wgmma.cuh). */
#if WGMMA_DEVICE

constexpr bool NSW_FWD_PIPE = false;

/* A [rows, cols] BF16 matrix in shared memory as SW128 slabs of 64 columns
 * (rows · 128 bytes each), the base 1024-aligned. */
struct nsw_mat {
    uint32_t base;
    int rows;
    __device__ __forceinline__ uint32_t slab(int j) const {
        return base + (uint32_t)(j * rows * 128);
    }
    __device__ __forceinline__ uint32_t at(int r, int c) const {
        return slab(c >> 6) + sw128_offset(r, c & 63);
    }
};

__device__ __forceinline__ uint32_t lds_u32(uint32_t a) {
    uint32_t v;
    asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(a));
    return v;
}
__device__ __forceinline__ float2 bf2(uint32_t w) {
    return __bfloat1622float2(*(const __nv_bfloat162 *)&w);
}
__device__ __forceinline__ float round_bf16(float x) {
    return __bfloat162float(__float2bfloat16_rn(x));
}

/* One matrix of the NS layout is stored [P, Q] (wide) or [Q, P] (tall);
 * X in shared memory is always [P, Q]. Unit i of the P·Q/8 covers eight
 * consecutive stored elements, at stored row r, columns c..c+7: X(r, c..)
 * when wide, X(c.., r) when tall, so that consecutive threads take
 * consecutive stored rows of a tall matrix. */
template <int P, int Q> struct nsw_unit {
    int r, c;
    bool tall;
    __device__ __forceinline__ nsw_unit(int i, bool t) : tall(t) {
        r = t ? i % Q : i / (Q / 8);
        c = t ? (i / Q) * 8 : (i % (Q / 8)) * 8;
    }
    __device__ __forceinline__ size_t off() const { return (size_t)r * (tall ? P : Q) + c; }
    __device__ __forceinline__ void put(nsw_mat s, const float *v) const {
        if (!tall) {
            sts_v4(s.at(r, c), make_uint4(pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]),
                                          pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7])));
            return;
        }
#pragma unroll
        for (int k = 0; k < 8; k++)
            sts_bf16(s.at(c + k, r), v[k]);
    }
    __device__ __forceinline__ void get(nsw_mat s, float *v) const {
        if (!tall) {
            const uint4 w = lds_v4(s.at(r, c));
            const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const float2 f = bf2(u[k]);
                v[2 * k] = f.x, v[2 * k + 1] = f.y;
            }
            return;
        }
#pragma unroll
        for (int k = 0; k < 8; k++)
            v[k] = lds_bf16(s.at(c + k, r));
    }
};

__device__ __forceinline__ void ld8(float *v, const float *p) {
    const float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void ld8(float *v, const bf16 *p) {
    const uint4 w = *(const uint4 *)p;
    const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float2 f = bf2(u[k]);
        v[2 * k] = f.x, v[2 * k + 1] = f.y;
    }
}

/* X = scale · g (F32 or BF16 source; BF16 with scale 1 is exact). */
template <int P, int Q, class S>
__device__ void nsw_load(nsw_mat s, const S *__restrict__ g, bool tall, float scale) {
    for (int i = threadIdx.x; i < P * Q / 8; i += (int)blockDim.x) {
        const nsw_unit<P, Q> u(i, tall);
        float v[8];
        ld8(v, g + u.off());
#pragma unroll
        for (int k = 0; k < 8; k++)
            v[k] *= scale;
        u.put(s, v);
    }
}

template <int P, int Q> __device__ void nsw_store(bf16 *__restrict__ g, nsw_mat s, bool tall) {
    for (int i = threadIdx.x; i < P * Q / 8; i += (int)blockDim.x) {
        const nsw_unit<P, Q> u(i, tall);
        float v[8];
        u.get(s, v);
        *(uint4 *)(g + u.off()) = make_uint4(pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]),
                                             pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7]));
    }
}

/* A kept (wide, BF16, row-major) iterate into shared memory, in flight
 * until the caller's cp_async_wait. */
template <int P, int Q> __device__ void nsw_fetch(nsw_mat s, const bf16 *__restrict__ g) {
    for (int i = threadIdx.x; i < P * Q / 8; i += (int)blockDim.x) {
        const int r = i / (Q / 8), c = (i % (Q / 8)) * 8;
        cp_async16(s.at(r, c), g + (size_t)r * Q + c, true);
    }
    cp_async_commit();
}

/* Matrix mi of the NS layout in the master layout (ttt_kernels.cuh): the
 * W0/W2 group is head mi / 2, slot mi % 2; the W1 group head mi − 2N. */
__device__ __forceinline__ size_t nsw_master(const nsf_args &a, int mi) {
    const int n = a.count / 3;
    const size_t nel = (size_t)a.p * a.q;
    return mi < 2 * n ? (size_t)(mi / 2) * 3 * nel + (size_t)(mi % 2) * nel
                      : (size_t)(mi - 2 * n) * 3 * nel + 2 * nel;
}

/* The thread's place in its warpgroup's m64 accumulators (wgmma.cuh):
 * pair i (even) of an m64nN tile is row row0 + 8·((i / 2) % 2), columns
 * 8·(i / 4) + col0 and + 1, and word (i % 8) / 2 of A fragment i / 8
 * (wg_acc_to_a). */
struct nsw_lane {
    int wg, row0, col0;
    __device__ __forceinline__ nsw_lane() {
        const int lane = threadIdx.x & 31;
        wg = threadIdx.x >> 7;
        row0 = 64 * wg + 16 * ((threadIdx.x >> 5) & 3) + (lane >> 2);
        col0 = 2 * (lane & 3);
    }
};

/* Shared addresses of accumulator pairs, with the swizzle written out for
 * the accumulator's rows and columns: a thread's addresses then differ by
 * constants and eight swizzle terms, where nsw_mat::at per element leaves
 * the compiler one invariant offset per element to keep in a register. */
/* Pair i of an m64nN tile whose columns start at c0 (a multiple of 64). */
__device__ __forceinline__ uint32_t nsw_pair(nsw_mat s, const nsw_lane &l, int i, int c0) {
    const int k = i >> 2, h = (i >> 1) & 1;
    return s.base + (uint32_t)(((c0 >> 6) + (k >> 3)) * s.rows * 128 + h * 1024) +
           (uint32_t)(l.row0 * 128 + l.col0 * 2) + ((uint32_t)((k & 7) ^ (l.row0 & 7)) << 4);
}
/* The element transposed to column e (0 or 1) of pair i of an m64nP tile
 * of a [P, P] matrix: s(c + e, r) for the pair at (r, c). */
__device__ __forceinline__ uint32_t nsw_pair_t(nsw_mat s, const nsw_lane &l, int i, int e) {
    const int k = i >> 2, h = (i >> 1) & 1;
    return s.base + (uint32_t)(k * 1024 + e * 128) +
           (uint32_t)(l.wg * s.rows * 128 + l.col0 * 128 + (l.row0 & 7) * 2) +
           ((uint32_t)((((l.row0 >> 3) + h) & 7) ^ (l.col0 + e)) << 4);
}

template <int N> __device__ __forceinline__ void nsw_zero(float (&d)[N / 2]) {
#pragma unroll
    for (int i = 0; i < N / 2; i++)
        d[i] = 0.0f;
}

/* A descriptor the compiler must form where it is used: hoisted out of
 * the step loop, every product's descriptors would stay live in registers
 * (64 bits each) and crowd out the accumulators. Offsets are added to the
 * address field (bits 0–13, in 16-byte units), which shared addresses
 * below 256 KB never carry out of. */
__device__ __forceinline__ uint64_t nsw_desc(uint32_t addr, uint32_t lbo) {
    uint64_t d = wg_desc(addr, lbo, 1024);
    asm volatile("" : "+l"(d));
    return d;
}

/* d (m64nN) = rows 64·wg.. of a · bᵀ over K: both operands K-major in
 * shared memory (b's rows are d's columns). Waited for. */
template <int N, int K>
__device__ __forceinline__ void nsw_abt(float (&d)[N / 2], nsw_mat a, int wg, nsw_mat b) {
    const uint64_t da = nsw_desc(a.base + (uint32_t)(wg * 64 * 128), 16), db = nsw_desc(b.base, 16);
    wg_fence_regs(d);
    wg_fence();
#pragma unroll
    for (int c = 0; c < K / 16; c++) {
        const uint32_t k = (uint32_t)((c / 4) * a.rows * 128 + (c % 4) * 32) >> 4;
        wg_mma_ss<N>(d, da + k, db + k, c > 0);
    }
    wg_commit();
    wg_wait<0>();
    wg_fence_regs(d);
}

/* d (m64nP) += f · s for symmetric s [P, P] in shared memory (read as
 * K-major: s's rows are d's columns), f the A fragments of K = P. */
template <int P>
__device__ __forceinline__ void nsw_fs(float (&d)[P / 2], const uint32_t (&f)[P / 16][4],
                                       nsw_mat s) {
    const uint64_t ds = nsw_desc(s.base, 16);
#pragma unroll
    for (int kk = 0; kk < P / 16; kk++)
        wg_mma_rs<P>(d, f[kk], ds + ((uint32_t)((kk / 4) * P * 128 + (kk % 4) * 32) >> 4));
}

/* d (m64n64) += f · m[:, slab j] (m [P, ·] read MN-major), f the A
 * fragments of K = P. */
template <int P>
__device__ __forceinline__ void nsw_fm(float (&d)[32], const uint32_t (&f)[P / 16][4], nsw_mat m,
                                       int j) {
    const uint64_t dm = nsw_desc(m.slab(j), P * 128);
#pragma unroll
    for (int kk = 0; kk < P / 16; kk++)
        wg_mma_rs_tb<64>(d, f[kk], dm + (uint32_t)(kk * 2048 / 16));
}

/* Writes the rounded accumulator into rows of s (columns from c0). */
template <int N>
__device__ __forceinline__ void nsw_put(const nsw_lane &l, nsw_mat s, const float (&d)[N / 2],
                                        int c0) {
#pragma unroll
    for (int i = 0; i < N / 2; i += 2)
        sts_u32(nsw_pair(s, l, i, c0), pack_bf16(d[i], d[i + 1]));
}

/* A = X Xᵀ into sa (every warpgroup's rows, rounded), then this
 * warpgroup's rows of P = bA + cA² as A fragments. sa stays read by the
 * tensor cores' A² until the caller's next barrier. */
template <int P, int Q>
__device__ __forceinline__ void nsw_poly(const nsw_lane &l, nsw_mat sx, nsw_mat sa, float cb,
                                         float cc, uint32_t (&pf)[P / 16][4]) {
    float d[P / 2];
    nsw_abt<P, Q>(d, sx, l.wg, sx);
    nsw_put<P>(l, sa, d, 0);
    wg_fence_proxy_async();
    __syncthreads();
    /* A² from the rounded A in shared memory, both operands */
    nsw_abt<P, P>(d, sa, l.wg, sa);
#pragma unroll
    for (int i = 0; i < P / 2; i += 2) {
        const float2 a = bf2(lds_u32(nsw_pair(sa, l, i, 0)));
        pf[i / 8][(i % 8) / 2] = pack_bf16(cc * d[i] + cb * a.x, cc * d[i + 1] + cb * a.y);
    }
}

/* Slab by slab of 64 columns: out = scale · s + f₁ · m₁ (+ f₂ · m₂), written
 * over s once every warpgroup is past the slab. With PIPE the next slab's
 * products are issued before the wait (a second accumulator). Ends with s
 * complete for the tensor cores. */
template <int P, int Q, bool TWO, bool PIPE>
__device__ __forceinline__ void nsw_update(const nsw_lane &l, nsw_mat s, float scale,
                                           const uint32_t (&f1)[P / 16][4], nsw_mat m1,
                                           const uint32_t (&f2)[P / 16][4], nsw_mat m2) {
    constexpr int SL = Q / 64;
    float acc[PIPE ? 2 : 1][32];
    auto issue = [&](int j) {
        float(&d)[32] = acc[PIPE ? j & 1 : 0];
        nsw_zero<64>(d);
        wg_fence_regs(d);
        wg_fence();
        nsw_fm<P>(d, f1, m1, j);
        if constexpr (TWO) nsw_fm<P>(d, f2, m2, j);
        wg_commit();
    };
    if (PIPE) issue(0);
#pragma unroll
    for (int j = 0; j < SL; j++) {
        if (!PIPE) {
            issue(j);
            wg_wait<0>();
        } else if (j + 1 < SL) {
            issue(j + 1);
            wg_wait<1>();
        } else {
            wg_wait<0>();
        }
        float(&d)[32] = acc[PIPE ? j & 1 : 0];
        wg_fence_regs(d);
#pragma unroll
        for (int i = 0; i < 32; i += 2) {
            const float2 v = bf2(lds_u32(nsw_pair(s, l, i, 64 * j)));
            d[i] += scale * v.x;
            d[i + 1] += scale * v.y;
        }
        __syncthreads(); /* every warpgroup's products and reads of slab j are done */
        nsw_put<64>(l, s, d, 64 * j);
    }
    wg_fence_proxy_async();
    __syncthreads();
}

#endif

/* Forward: X[0] from u, then X[1..5] (X[5] only, unless keep); ‖u‖ into
 * nnorm. Shared: X [P, Q] | A [P, P]. Two blocks fit an SM at 128 × 256. */
template <int P, int Q>
__global__ void __launch_bounds__(2 * P, 2) ttt_ns_wg_fwd_kernel(nsf_args args) {
#if WGMMA_DEVICE
    extern __shared__ __align__(128) unsigned char smem[];
    const int mi = blockIdx.x;
    const bool tall = mi < args.split ? args.tall0 : args.tall1;
    const size_t nel = (size_t)P * Q;
    const uint32_t base = (wg_smem(smem) + 1023u) & ~1023u;
    const nsw_mat sx{base, P}, sa{base + (uint32_t)(nel * 2), P};
    const nsw_lane l;
    /* X[0] = u / (‖u‖_F + eps) straight from the master layout: two reads
     * of u, the second from L2. */
    __shared__ float red[32];
    const float *u = args.u + nsw_master(args, mi);
    float ss = 0.0f;
    for (int i = threadIdx.x; i < P * Q / 4; i += (int)blockDim.x) {
        const float4 v = ((const float4 *)u)[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    const float nr = sqrtf(block_sum(ss, red));
    if (threadIdx.x == 0) args.nnorm[mi] = nr;
    nsw_load<P, Q>(sx, u, tall, 1.0f / (nr + args.eps));
    wg_fence_proxy_async();
    __syncthreads();
    /* The iterates the backward reads stay in X's own (wide) layout. */
    if (args.keep) nsw_store<P, Q>(args.x[0] + mi * nel, sx, false);
#pragma unroll 1
    for (int s = 0; s < 5; s++) {
        uint32_t pf[P / 16][4];
        nsw_poly<P, Q>(l, sx, sa, args.coef[s][1], args.coef[s][2], pf);
        nsw_update<P, Q, false, NSW_FWD_PIPE>(l, sx, args.coef[s][0], pf, sx, pf, sx);
        if (args.keep || s == 4) nsw_store<P, Q>(args.x[s + 1] + mi * nel, sx, tall && s == 4);
    }
#endif
}

/* Backward: from the adjoint of X[5] in g_in to that of u in du, with the
 * kept X[s] and nnorm. Shared: G | X[s] | X[s − 1] [P, Q], the next
 * iterate landing while this step runs | one [P, P] scratch, which holds M
 * for its transposed read, then A, then T. */
template <int P, int Q>
__global__ void __launch_bounds__(2 * P, 1) ttt_ns_wg_bwd_kernel(nsf_args args) {
#if WGMMA_DEVICE
    extern __shared__ __align__(128) unsigned char smem[];
    const int mi = blockIdx.x;
    const bool tall = mi < args.split ? args.tall0 : args.tall1;
    const size_t nel = (size_t)P * Q;
    const uint32_t base = (wg_smem(smem) + 1023u) & ~1023u;
    const nsw_mat sg{base, P}, ss{base + (uint32_t)(nel * 6), P};
    /* X[s] in buffer (s + 1) % 2: X[4] in the first */
    auto xbuf = [&](int k) { return nsw_mat{base + (uint32_t)(nel * (k & 1 ? 2 : 4)), P}; };
    const nsw_lane l;
    nsw_fetch<P, Q>(xbuf(4), args.x[4] + mi * nel);
    nsw_load<P, Q>(sg, args.g_in + mi * nel, tall, 1.0f);
#pragma unroll 1
    for (int s = 4; s >= 0; s--) {
        const float ca = args.coef[s][0], cb = args.coef[s][1], cc = args.coef[s][2];
        const nsw_mat sx = xbuf(s);
        cp_async_wait<0>();
        wg_fence_proxy_async();
        __syncthreads(); /* X[s] landed; the other buffer's X[s + 1] is read no more */
        if (s > 0) nsw_fetch<P, Q>(xbuf(s - 1), args.x[s - 1] + mi * nel);
        /* M = G Xᵀ (rounded) into the scratch; Q = M + Mᵀ as A fragments */
        uint32_t f[P / 16][4];
        {
            float m[P / 2];
            nsw_abt<P, Q>(m, sg, l.wg, sx);
            nsw_put<P>(l, ss, m, 0);
            __syncthreads();
#pragma unroll
            for (int i = 0; i < P / 2; i += 2)
                f[i / 8][(i % 8) / 2] =
                    pack_bf16(round_bf16(m[i]) + lds_bf16(nsw_pair_t(ss, l, i, 0)),
                              round_bf16(m[i + 1]) + lds_bf16(nsw_pair_t(ss, l, i, 1)));
            __syncthreads(); /* every Mᵀ read is done before A goes there */
        }
        uint32_t pf[P / 16][4];
        nsw_poly<P, Q>(l, sx, ss, cb, cc, pf);
        /* T = Q A (rounded) over the scratch once every read of A is done;
         * R = bQ + c(T + Tᵀ) into the fragments Q leaves */
        {
            float t[P / 2];
            nsw_zero<P>(t);
            wg_fence_regs(t);
            wg_fence();
            nsw_fs<P>(t, f, ss);
            wg_commit();
            wg_wait<0>();
            wg_fence_regs(t);
            __syncthreads();
            nsw_put<P>(l, ss, t, 0);
            __syncthreads();
#pragma unroll
            for (int i = 0; i < P / 2; i += 2) {
                uint32_t &w = f[i / 8][(i % 8) / 2];
                const float2 qv = bf2(w);
                w = pack_bf16(
                    cb * qv.x + cc * (round_bf16(t[i]) + lds_bf16(nsw_pair_t(ss, l, i, 0))),
                    cb * qv.y + cc * (round_bf16(t[i + 1]) + lds_bf16(nsw_pair_t(ss, l, i, 1))));
            }
        }
        /* ∂/∂X = aG + P G + R X over G */
        nsw_update<P, Q, true, true>(l, sg, ca, pf, sg, f, sx);
    }
    /* dU = dX0 / ne − k u with k = <dX0, u> / (ne² ‖u‖), ne = ‖u‖ + eps,
     * into the master layout: the backward of the normalisation. */
    __shared__ float red[32];
    const size_t mo = nsw_master(args, mi);
    const float *u = args.u + mo;
    float *du = args.du + mo;
    auto each = [&](auto fn) {
        for (int i = threadIdx.x; i < P * Q / 8; i += (int)blockDim.x) {
            const nsw_unit<P, Q> un(i, tall);
            float x[8], v[8];
            un.get(sg, x);
            ld8(v, u + un.off());
            fn(x, v, un.off());
        }
    };
    float dot = 0.0f;
    each([&](const float *x, const float *v, size_t) {
#pragma unroll
        for (int k = 0; k < 8; k++)
            dot += x[k] * v[k];
    });
    dot = block_sum(dot, red);
    const float nr = args.nnorm[mi], ne = nr + args.eps,
                kk = nr > 0.0f ? dot / (ne * ne * nr) : 0.0f;
    each([&](float *x, const float *v, size_t o) {
#pragma unroll
        for (int k = 0; k < 8; k++)
            x[k] = x[k] / ne - kk * v[k];
        *(float4 *)(du + o) = make_float4(x[0], x[1], x[2], x[3]);
        *(float4 *)(du + o + 4) = make_float4(x[4], x[5], x[6], x[7]);
    });
#endif
}

template <int P, int Q> constexpr size_t nsw_fwd_smem() {
    return (size_t)P * Q * 2 + (size_t)P * P * 2 + 1024; /* slabs 1024-aligned */
}
template <int P, int Q> constexpr size_t nsw_bwd_smem() {
    return (size_t)P * Q * 6 + (size_t)P * P * 2 + 1024;
}

template <int P, int Q> lact_status nsw_launch(lact_ctx *ctx, const nsf_args &a, bool bwd) {
    const size_t smem = bwd ? nsw_bwd_smem<P, Q>() : nsw_fwd_smem<P, Q>();
    if (bwd) {
        LACT_CU(cudaFuncSetAttribute(ttt_ns_wg_bwd_kernel<P, Q>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        ttt_ns_wg_bwd_kernel<P, Q><<<(unsigned)a.count, 2 * P, smem, lact_cuda_stream(ctx)>>>(a);
    } else {
        LACT_CU(cudaFuncSetAttribute(ttt_ns_wg_fwd_kernel<P, Q>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        ttt_ns_wg_fwd_kernel<P, Q><<<(unsigned)a.count, 2 * P, smem, lact_cuda_stream(ctx)>>>(a);
    }
    LACT_CU_LAUNCH(bwd ? "ttt_ns_fused_bwd" : "ttt_ns_fused_fwd");
    return LACT_OK;
}

lact_status nsw_run(lact_ctx *ctx, const nsf_args &a, bool bwd) {
    switch (a.p * 1000 + a.q) {
    case 64064:
        return nsw_launch<64, 64>(ctx, a, bwd);
    case 64128:
        return nsw_launch<64, 128>(ctx, a, bwd);
    case 64256:
        return nsw_launch<64, 256>(ctx, a, bwd);
    case 128128:
        return nsw_launch<128, 128>(ctx, a, bwd);
    case 128256:
        return nsw_launch<128, 256>(ctx, a, bwd);
    default:
        return lact_fail(LACT_E_UNSUPPORTED, "ttt: no fused Newton–Schulz for %d × %d", a.p, a.q);
    }
}

} // namespace

bool ttt_ns_fused_fits(int64_t p, int64_t q) {
    const char *e = getenv("LACT_TTT_NS_FUSED");
    if (e && strcmp(e, "0") == 0) return false;
    if (!((p == 64 && (q == 64 || q == 128 || q == 256)) || (p == 128 && (q == 128 || q == 256))))
        return false;
    int sms = 0;
    bool wgmma = false;
    if (ttt_fused_device(&sms, &wgmma) != LACT_OK) {
        lact_clear_error();
        return false;
    }
    return wgmma;
}

lact_status ttt_ns_fused_forward(lact_ctx *ctx, const nsf_args *a) {
    if (a->count <= 0) return LACT_OK;
    return nsw_run(ctx, *a, false);
}

lact_status ttt_ns_fused_backward(lact_ctx *ctx, const nsf_args *a) {
    if (a->count <= 0) return LACT_OK;
    return nsw_run(ctx, *a, true);
}
