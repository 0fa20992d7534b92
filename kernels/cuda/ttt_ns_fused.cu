/* Newton–Schulz of the ttt update for small matrices, one block per matrix
 * with every step in shared memory: the forward's five steps in one kernel
 * and their backward in another, instead of five to ten batched cuBLASLt
 * products per step (each a few microseconds at these sizes, where the
 * launch and the ramp cost more than the arithmetic).
 *
 * A matrix is worked on wide, X [p, q] with p <= q: a tall stored matrix
 * Y [q, p] is transposed on its way in and out (the iterates kept for the
 * backward are not: they stay wide). The normalisation X[0] = u / ‖u‖ and
 * its backward run inside the kernels too. Per step, with (a, b, c)
 * the step's coefficients (ttt_ns.cuh keeps the same buffers):
 *   forward   A = X Xᵀ, P = bA + cA², X' = aX + P X;
 *   backward  from G = ∂/∂X': Q = G Xᵀ + X Gᵀ, R = bQ + c(QA + AQ),
 *             ∂/∂X = aG + P G + R X;
 * A, P, Q, R are symmetric, so AQ = (QA)ᵀ and X Gᵀ = (G Xᵀ)ᵀ: one product
 * each and a transposed add in shared memory. Operands are BF16 with F32
 * accumulation, rounded where the batched path rounds (A, P, X' and the
 * adjoints in BF16).
 *
 * Shared matrices are row-major with 16-byte chunks swizzled by the row
 * (chunk ^ (row % 8)), so the ldmatrix reads of eight rows at one column
 * hit eight different bank groups without padding; that is what lets the
 * backward's five matrices (224 KB at p = 128, q = 256) fit in one SM. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/ttt_ns_fused.h"

namespace {

constexpr int NSF_THREADS = 256; /* eight warps: 2 along rows × 4 along columns */
/* The backward (one block per multiprocessor, 224 KB of shared memory at
 * 128 × 256) takes sixteen warps, 4 along rows × 4 along columns, to hide
 * more of its latency. */
constexpr int NSF_BWD_WM = 4, NSF_BWD_THREADS = 32 * 4 * NSF_BWD_WM;

/* One matrix of the NS layout is stored [P, Q] (wide) or [Q, P] (tall);
 * X in shared memory is always [P, Q]. Unit i of the P·Q/8 covers eight
 * consecutive stored elements, at stored row r, columns c..c+7: X(r, c..)
 * when wide, X(c.., r) when tall, so that consecutive threads take
 * consecutive stored rows of a tall matrix and their 2-byte shared accesses
 * land side by side on one row of X. */
template <int P, int Q> struct nsf_unit {
    int r, c;
    bool tall;
    __device__ __forceinline__ nsf_unit(int i, bool t) : tall(t) {
        r = t ? i % Q : i / (Q / 8);
        c = t ? (i / Q) * 8 : (i % (Q / 8)) * 8;
    }
    __device__ __forceinline__ size_t off() const { return (size_t)r * (tall ? P : Q) + c; }
    __device__ __forceinline__ void put(smat s, const float *v) const {
        if (!tall) {
            sts_v4(s.at(r, c), make_uint4(pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]),
                                          pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7])));
            return;
        }
#pragma unroll
        for (int k = 0; k < 8; k++)
            sts_bf16(s.at(c + k, r), v[k]);
    }
    __device__ __forceinline__ void get(smat s, float *v) const {
        if (!tall) {
            const uint4 w = lds_v4(s.at(r, c));
            const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const float2 f = __bfloat1622float2(*(const __nv_bfloat162 *)&u[k]);
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
        const float2 f = __bfloat1622float2(*(const __nv_bfloat162 *)&u[k]);
        v[2 * k] = f.x, v[2 * k + 1] = f.y;
    }
}

/* X = scale · g (F32 or BF16 source; BF16 with scale 1 is exact). */
template <int P, int Q, class S>
__device__ void nsf_load(smat s, const S *__restrict__ g, bool tall, float scale = 1.0f) {
    for (int i = threadIdx.x; i < P * Q / 8; i += (int)blockDim.x) {
        const nsf_unit<P, Q> u(i, tall);
        float v[8];
        ld8(v, g + u.off());
#pragma unroll
        for (int k = 0; k < 8; k++)
            v[k] *= scale;
        u.put(s, v);
    }
}

template <int P, int Q> __device__ void nsf_store(bf16 *__restrict__ g, smat s, bool tall) {
    for (int i = threadIdx.x; i < P * Q / 8; i += (int)blockDim.x) {
        const nsf_unit<P, Q> u(i, tall);
        float v[8];
        u.get(s, v);
        *(uint4 *)(g + u.off()) = make_uint4(pack_bf16(v[0], v[1]), pack_bf16(v[2], v[3]),
                                             pack_bf16(v[4], v[5]), pack_bf16(v[6], v[7]));
    }
}

/* Matrix mi of the NS layout in the master layout (ttt_kernels.cuh): the
 * W0/W2 group is head mi / 2, slot mi % 2; the W1 group head mi − 2N. */
__device__ __forceinline__ size_t nsf_master(const nsf_args &a, int mi) {
    const int n = a.count / 3;
    const size_t nel = (size_t)a.p * a.q;
    return mi < 2 * n ? (size_t)(mi / 2) * 3 * nel + (size_t)(mi % 2) * nel
                      : (size_t)(mi - 2 * n) * 3 * nel + 2 * nel;
}

/* The warp's tile of C [M, N] (rows m0.., columns n0..; MT m16 tiles, NT n8
 * tiles) += A·B over K: A [M, K] row-major in sa; B from sb either as its
 * transpose's rows (KN false: B[k][n] = sb(n, k), e.g. Xᵀ or a symmetric
 * matrix) or row-major (KN true: B[k][n] = sb(k, n + nb)). */
template <int MT, int NT, bool KN>
__device__ __forceinline__ void nsf_mma(float (&acc)[MT][NT][4], smat sa, int m0, smat sb, int n0,
                                        int nb, int K) {
    const int lane = threadIdx.x & 31;
    for (int kk = 0; kk < K; kk += 16) {
        uint32_t a[MT][4], b[NT][2];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
            ldsm_x4(a[mt], sa.at(m0 + mt * 16 + (lane & 15), kk + (lane >> 4) * 8));
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t r[4];
            if (KN)
                ldsm_x4_t(r, sb.at(kk + (lane & 7) + ((lane >> 3) & 1) * 8,
                                   nb + n0 + np * 16 + (lane >> 4) * 8));
            else
                ldsm_x4(r, sb.at(n0 + np * 16 + (lane & 7) + ((lane >> 4) << 3),
                                 kk + ((lane >> 3) & 1) * 8));
            b[2 * np][0] = r[0], b[2 * np][1] = r[1];
            b[2 * np + 1][0] = r[2], b[2 * np + 1][1] = r[3];
        }
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
                mma_bf16(acc[mt][nt], a[mt], b[nt][0], b[nt][1]);
    }
}

/* The warp's place in an [M, N] output: 2 warps along M, 4 along N. */
template <int M, int N, int WM = 2> struct nsf_tile {
    static constexpr int MT = M / (16 * WM), NT = N / 32;
    int m0, n0;
    __device__ __forceinline__ nsf_tile() {
        const int w = threadIdx.x >> 5;
        m0 = (w >> 2) * (M / WM), n0 = (w & 3) * (N / 4);
    }
};

template <int MT, int NT> __device__ __forceinline__ void nsf_zero(float (&acc)[MT][NT][4]) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[mt][nt][e] = 0.0f;
}

/* Calls f(row, col, acc[..][..][e], acc[..][..][e + 1]) for each pair of
 * adjacent columns the thread holds. */
template <int MT, int NT, class F>
__device__ __forceinline__ void nsf_each(float (&acc)[MT][NT][4], int m0, int n0, F f) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                f(m0 + mt * 16 + g + 8 * h, n0 + nt * 8 + 2 * t, acc[mt][nt][2 * h],
                  acc[mt][nt][2 * h + 1]);
}

template <int MT, int NT>
__device__ __forceinline__ void nsf_put(smat s, float (&acc)[MT][NT][4], int m0, int n0, int nb) {
    nsf_each(acc, m0, n0,
             [&](int r, int c, float x, float y) { sts_u32(s.at(r, nb + c), pack_bf16(x, y)); });
}

/* Columns of X' (or ∂/∂X) computed per pass: 128 keeps the accumulators at
 * 64 registers a thread. */
template <int Q> constexpr int nsf_chunk() {
    return Q < 128 ? Q : 128;
}

/* Forward: X[0] from u, then X[1..5] (X[5] only, unless keep) and A[s],
 * P[s] (keep); ‖u‖ into nnorm. Shared: X [P, Q] | A then P [P, P]. Two
 * blocks fit an SM. */
template <int P, int Q>
__global__ void __launch_bounds__(NSF_THREADS, 2) ttt_ns_fused_fwd_kernel(nsf_args args) {
    extern __shared__ __align__(128) unsigned char smem[];
    const int mi = blockIdx.x;
    const bool tall = mi < args.split ? args.tall0 : args.tall1;
    const size_t nel = (size_t)P * Q, sq = (size_t)P * P;
    const uint32_t base = smem_addr(smem);
    const smat sx{base, Q}, sa{base + (uint32_t)(nel * 2), P};
    /* X[0] = u / (‖u‖_F + eps) straight from the master layout: two reads
     * of u, the second from L2. */
    __shared__ float red[32];
    const float *u = args.u + nsf_master(args, mi);
    float ss = 0.0f;
    for (int i = threadIdx.x; i < P * Q / 4; i += (int)blockDim.x) {
        const float4 v = ((const float4 *)u)[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    const float nr = sqrtf(block_sum(ss, red));
    if (threadIdx.x == 0) args.nnorm[mi] = nr;
    nsf_load<P, Q>(sx, u, tall, 1.0f / (nr + args.eps));
    __syncthreads();
    /* The iterates the backward reads stay in X's own (wide) layout. */
    if (args.keep) nsf_store<P, Q>(args.x[0] + mi * nel, sx, false);
    for (int s = 0; s < 5; s++) {
        const float ca = args.coef[s][0], cb = args.coef[s][1], cc = args.coef[s][2];
        {
            /* A = X Xᵀ */
            nsf_tile<P, P> t;
            float acc[nsf_tile<P, P>::MT][nsf_tile<P, P>::NT][4];
            nsf_zero(acc);
            nsf_mma<nsf_tile<P, P>::MT, nsf_tile<P, P>::NT, false>(acc, sx, t.m0, sx, t.n0, 0, Q);
            nsf_put(sa, acc, t.m0, t.n0, 0);
            __syncthreads();
            if (args.keep) nsf_store<P, P>(args.a[s] + mi * sq, sa, false);
            /* P = bA + cA² over A's place, the A operand read first */
            nsf_zero(acc);
            nsf_mma<nsf_tile<P, P>::MT, nsf_tile<P, P>::NT, false>(acc, sa, t.m0, sa, t.n0, 0, P);
            nsf_each(acc, t.m0, t.n0, [&](int r, int c, float &x, float &y) {
                x = cc * x + cb * lds_bf16(sa.at(r, c));
                y = cc * y + cb * lds_bf16(sa.at(r, c + 1));
            });
            __syncthreads();
            nsf_put(sa, acc, t.m0, t.n0, 0);
            __syncthreads();
            if (args.keep) nsf_store<P, P>(args.pm[s] + mi * sq, sa, false);
        }
        /* X' = aX + P X, a column chunk at a time, each written over the
         * chunk of X it read */
        constexpr int CH = nsf_chunk<Q>();
        for (int nb = 0; nb < Q; nb += CH) {
            nsf_tile<P, CH> t;
            float acc[nsf_tile<P, CH>::MT][nsf_tile<P, CH>::NT][4];
            nsf_zero(acc);
            nsf_mma<nsf_tile<P, CH>::MT, nsf_tile<P, CH>::NT, true>(acc, sa, t.m0, sx, t.n0, nb, P);
            nsf_each(acc, t.m0, t.n0, [&](int r, int c, float &x, float &y) {
                x += ca * lds_bf16(sx.at(r, nb + c));
                y += ca * lds_bf16(sx.at(r, nb + c + 1));
            });
            __syncthreads();
            nsf_put(sx, acc, t.m0, t.n0, nb);
        }
        __syncthreads();
        if (args.keep || s == 4) nsf_store<P, Q>(args.x[s + 1] + mi * nel, sx, tall && s == 4);
    }
}

/* Backward: from the adjoint of X[5] in g_in to that of u in du, with
 * X[s], A[s], P[s] and nnorm kept by the forward. Shared: G, X [P, Q] | A
 * (then T, then R), P, Q [P, P]. */
template <int P, int Q>
__global__ void __launch_bounds__(NSF_BWD_THREADS, 1) ttt_ns_fused_bwd_kernel(nsf_args args) {
    extern __shared__ __align__(128) unsigned char smem[];
    const int mi = blockIdx.x;
    const bool tall = mi < args.split ? args.tall0 : args.tall1;
    const size_t nel = (size_t)P * Q, sq = (size_t)P * P;
    const uint32_t base = smem_addr(smem);
    const smat sg{base, Q}, sx{base + (uint32_t)(nel * 2), Q};
    const smat sa{base + (uint32_t)(nel * 4), P}, sp{base + (uint32_t)(nel * 4 + sq * 2), P},
        sqm{base + (uint32_t)(nel * 4 + sq * 4), P};
    nsf_load<P, Q>(sg, args.g_in + mi * nel, tall);
    for (int s = 4; s >= 0; s--) {
        const float ca = args.coef[s][0], cb = args.coef[s][1], cc = args.coef[s][2];
        nsf_load<P, Q>(sx, args.x[s] + mi * nel, false);
        nsf_load<P, P>(sa, args.a[s] + mi * sq, false);
        nsf_load<P, P>(sp, args.pm[s] + mi * sq, false);
        __syncthreads();
        nsf_tile<P, P, NSF_BWD_WM> t;
        float acc[nsf_tile<P, P, NSF_BWD_WM>::MT][nsf_tile<P, P, NSF_BWD_WM>::NT][4];
        /* Q = G Xᵀ + (G Xᵀ)ᵀ */
        nsf_zero(acc);
        nsf_mma<nsf_tile<P, P, NSF_BWD_WM>::MT, nsf_tile<P, P, NSF_BWD_WM>::NT, false>(
            acc, sg, t.m0, sx, t.n0, 0, Q);
        nsf_put(sqm, acc, t.m0, t.n0, 0);
        __syncthreads();
        for (int i = threadIdx.x; i < P * P; i += (int)blockDim.x) {
            const int r = i / P, c = i % P;
            if (r > c) continue;
            const float v = lds_bf16(sqm.at(r, c)) + lds_bf16(sqm.at(c, r));
            sts_bf16(sqm.at(r, c), v);
            sts_bf16(sqm.at(c, r), v);
        }
        __syncthreads();
        /* T = Q A over A's place once A is read; R = bQ + c(T + Tᵀ) there */
        nsf_zero(acc);
        nsf_mma<nsf_tile<P, P, NSF_BWD_WM>::MT, nsf_tile<P, P, NSF_BWD_WM>::NT, false>(
            acc, sqm, t.m0, sa, t.n0, 0, P);
        __syncthreads();
        nsf_put(sa, acc, t.m0, t.n0, 0);
        __syncthreads();
        for (int i = threadIdx.x; i < P * P; i += (int)blockDim.x) {
            const int r = i / P, c = i % P;
            if (r > c) continue;
            const float v =
                cb * lds_bf16(sqm.at(r, c)) + cc * (lds_bf16(sa.at(r, c)) + lds_bf16(sa.at(c, r)));
            sts_bf16(sa.at(r, c), v);
            sts_bf16(sa.at(c, r), v);
        }
        __syncthreads();
        /* ∂/∂X = aG + P G + R X, a column chunk at a time over G */
        constexpr int CH = nsf_chunk<Q>();
        for (int nb = 0; nb < Q; nb += CH) {
            nsf_tile<P, CH, NSF_BWD_WM> u;
            float acc2[nsf_tile<P, CH, NSF_BWD_WM>::MT][nsf_tile<P, CH, NSF_BWD_WM>::NT][4];
            nsf_zero(acc2);
            nsf_mma<nsf_tile<P, CH, NSF_BWD_WM>::MT, nsf_tile<P, CH, NSF_BWD_WM>::NT, true>(
                acc2, sp, u.m0, sg, u.n0, nb, P);
            nsf_mma<nsf_tile<P, CH, NSF_BWD_WM>::MT, nsf_tile<P, CH, NSF_BWD_WM>::NT, true>(
                acc2, sa, u.m0, sx, u.n0, nb, P);
            nsf_each(acc2, u.m0, u.n0, [&](int r, int c, float &x, float &y) {
                x += ca * lds_bf16(sg.at(r, nb + c));
                y += ca * lds_bf16(sg.at(r, nb + c + 1));
            });
            __syncthreads();
            nsf_put(sg, acc2, u.m0, u.n0, nb);
        }
        __syncthreads();
    }
    /* dU = dX0 / ne − k u with k = <dX0, u> / (ne² ‖u‖), ne = ‖u‖ + eps,
     * into the master layout: the backward of the normalisation. */
    __shared__ float red[32];
    const size_t mo = nsf_master(args, mi);
    const float *u = args.u + mo;
    float *du = args.du + mo;
    /* f(X's eight values, u's, their stored offset) over the matrix */
    auto each = [&](auto f) {
        for (int i = threadIdx.x; i < P * Q / 8; i += (int)blockDim.x) {
            const nsf_unit<P, Q> un(i, tall);
            float x[8], v[8];
            un.get(sg, x);
            ld8(v, u + un.off());
            f(x, v, un.off());
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
}

template <int P, int Q> constexpr size_t nsf_fwd_smem() {
    return (size_t)P * Q * 2 + (size_t)P * P * 2;
}
template <int P, int Q> constexpr size_t nsf_bwd_smem() {
    return (size_t)P * Q * 4 + (size_t)P * P * 6;
}

template <int P, int Q> lact_status nsf_launch(lact_ctx *ctx, const nsf_args &a, bool bwd) {
    const size_t smem = bwd ? nsf_bwd_smem<P, Q>() : nsf_fwd_smem<P, Q>();
    if (bwd) {
        LACT_CU(cudaFuncSetAttribute(ttt_ns_fused_bwd_kernel<P, Q>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        ttt_ns_fused_bwd_kernel<P, Q>
            <<<(unsigned)a.count, NSF_BWD_THREADS, smem, lact_cuda_stream(ctx)>>>(a);
    } else {
        LACT_CU(cudaFuncSetAttribute(ttt_ns_fused_fwd_kernel<P, Q>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        ttt_ns_fused_fwd_kernel<P, Q>
            <<<(unsigned)a.count, NSF_THREADS, smem, lact_cuda_stream(ctx)>>>(a);
    }
    LACT_CU_LAUNCH(bwd ? "ttt_ns_fused_bwd" : "ttt_ns_fused_fwd");
    return LACT_OK;
}

lact_status nsf_run(lact_ctx *ctx, const nsf_args &a, bool bwd) {
    switch (a.p * 1000 + a.q) {
    case 64064:
        return nsf_launch<64, 64>(ctx, a, bwd);
    case 64128:
        return nsf_launch<64, 128>(ctx, a, bwd);
    case 64256:
        return nsf_launch<64, 256>(ctx, a, bwd);
    case 128128:
        return nsf_launch<128, 128>(ctx, a, bwd);
    case 128256:
        return nsf_launch<128, 256>(ctx, a, bwd);
    default:
        return lact_fail(LACT_E_UNSUPPORTED, "ttt: no fused Newton–Schulz for %d × %d", a.p, a.q);
    }
}

} // namespace

bool ttt_ns_fused_fits(int64_t p, int64_t q) {
    const char *e = getenv("LACT_TTT_NS_FUSED");
    if (e && strcmp(e, "0") == 0) return false;
    return (p == 64 && (q == 64 || q == 128 || q == 256)) || (p == 128 && (q == 128 || q == 256));
}

lact_status ttt_ns_fused_forward(lact_ctx *ctx, const nsf_args *a) {
    if (a->count <= 0) return LACT_OK;
    return nsf_run(ctx, *a, false);
}

lact_status ttt_ns_fused_backward(lact_ctx *ctx, const nsf_args *a) {
    if (a->count <= 0) return LACT_OK;
    return nsf_run(ctx, *a, true);
}
