/* The BF16 attention forward on tensor cores (FlashAttention-2 shape).
 *
 * A block of NW warps owns BM = 16·NW query rows of one (batch, head); each
 * warp owns 16 of them and keeps their Q fragments, the fp32 output
 * accumulator and the running max and sum in registers. The block streams
 * the K/V tiles of BN keys that cover the union of its rows' key ranges
 * through shared memory, double-buffered with cp.async: tiles outside every
 * row's range are never loaded, so window and block masks cost O(L·w).
 * S = Q·Kᵀ and O += P·V run as mma.m16n8k16 (bf16 in, fp32 accumulate);
 * the softmax works in base 2 with the scale folded into log2(e). Only
 * tiles that cut some row's range are masked element by element. Head
 * dims 64 and 128, and 256 with four warps and key tiles of 32. */
#include <limits.h>
#include <math.h>

#include "kernels/cuda/attention_geom.cuh"
#include "kernels/cuda/attention_mma.cuh"

#define TC_BN 64
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

/* Per block: the hull [lo, hi) of its rows' key ranges, and the largest lo
 * and smallest hi (a tile inside [max_lo, min_hi) needs no mask). Threads
 * below `rows` each take one row. */
static __device__ void block_key_hull(const attn_geom &G, int64_t row0, int rows, int *s) {
    if (threadIdx.x == 0) s[0] = INT_MAX, s[1] = 0, s[2] = INT_MIN, s[3] = INT_MAX;
    __syncthreads();
    if ((int)threadIdx.x < rows) {
        int lo, hi;
        row_keys(G, row0 + threadIdx.x, &lo, &hi);
        if (lo < hi) {
            atomicMin(&s[0], lo), atomicMax(&s[1], hi);
            atomicMax(&s[2], lo), atomicMin(&s[3], hi);
        } else { /* a row past the end: no tile is mask-free */
            atomicMax(&s[2], INT_MAX), atomicMin(&s[3], INT_MIN);
        }
    }
    __syncthreads();
}

template <int D, int NW, int BN>
__global__ void __launch_bounds__(NW * 32)
    attn_tc_fwd_kernel(bf16 *__restrict__ y, float *__restrict__ lse, const bf16 *__restrict__ q,
                       const bf16 *__restrict__ k, const bf16 *__restrict__ v,
                       const bf16 *__restrict__ g, attn_geom G) {
    constexpr int BM = 16 * NW, LDS = D + 8, NT = NW * 32;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    bf16 *qs = (bf16 *)smem_raw, *ks = qs + BM * LDS, *vs = ks + 2 * BN * LDS;
    __shared__ int hull[4];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gq = lane >> 2, tq = lane & 3;
    const int64_t b = blockIdx.z, h = blockIdx.y, hk = h / G.group;
    const int row0 = (int)(gridDim.x - 1 - blockIdx.x) * BM; /* long rows first */
    const int64_t qbase = (b * G.nh + h) * G.lq;
    const bf16 *kp = k + (b * G.nkv + hk) * G.lk * D, *vp = v + (b * G.nkv + hk) * G.lk * D;

    block_key_hull(G, row0, BM, hull);
    const int t_begin = hull[0], t_end = hull[1], max_lo = hull[2], min_hi = hull[3];
    int lo[2], hi[2];
#pragma unroll
    for (int r = 0; r < 2; r++)
        row_keys(G, row0 + warp * 16 + gq + 8 * r, &lo[r], &hi[r]);

    const int ntiles = t_end > t_begin ? (t_end - t_begin + BN - 1) / BN : 0;
    tile_load<BM, D, NT>(qs, q + qbase * D, row0, (int)G.lq);
    if (ntiles > 0) {
        tile_load<BN, D, NT>(ks, kp, t_begin, (int)G.lk);
        tile_load<BN, D, NT>(vs, vp, t_begin, (int)G.lk);
    }
    cp_async_commit();

    const float sl2 = G.scale * LOG2E;
    uint32_t qf[D / 16][4];
    float o[D / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < D / 8; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;

    for (int it = 0; it < ntiles; it++) {
        const int t0 = t_begin + it * BN, buf = it & 1;
        if (it + 1 < ntiles) {
            tile_load<BN, D, NT>(ks + (buf ^ 1) * BN * LDS, kp, t0 + BN, (int)G.lk);
            tile_load<BN, D, NT>(vs + (buf ^ 1) * BN * LDS, vp, t0 + BN, (int)G.lk);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (it == 0) {
#pragma unroll
            for (int c = 0; c < D / 16; c++)
                frag_a<D>(qf[c], qs + warp * 16 * LDS, c * 16, lane);
        }
        const bf16 *kt = ks + buf * BN * LDS, *vt = vs + buf * BN * LDS;

        float s[BN / 8][4];
#pragma unroll
        for (int j = 0; j < BN / 8; j++)
            s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int c = 0; c < D / 16; c++) {
#pragma unroll
            for (int j = 0; j < BN / 16; j++) {
                uint32_t kb[4];
                frag_b_nk<D>(kb, kt, j * 16, c * 16, lane);
                mma_bf16(s[2 * j], qf[c], kb[0], kb[1]);
                mma_bf16(s[2 * j + 1], qf[c], kb[2], kb[3]);
            }
        }

        const bool full = t0 >= max_lo && t0 + BN <= min_hi;
#pragma unroll
        for (int j = 0; j < BN / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = t0 + j * 8 + 2 * tq + (e & 1), r = e >> 1;
                s[j][e] *= sl2;
                if (!full && (key < lo[r] || key >= hi[r])) s[j][e] = -INFINITY;
            }

#pragma unroll
        for (int r = 0; r < 2; r++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < BN / 8; j++)
                mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float mn = fmaxf(m[r], mx);
            const float base = mn == -INFINITY ? 0.0f : mn; /* a row with no key yet */
            const float alpha = exp2f(m[r] - base);
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                s[j][2 * r] = exp2f(s[j][2 * r] - base);
                s[j][2 * r + 1] = exp2f(s[j][2 * r + 1] - base);
                sum += s[j][2 * r] + s[j][2 * r + 1];
            }
            l[r] = l[r] * alpha + sum;
            m[r] = mn;
#pragma unroll
            for (int i = 0; i < D / 8; i++)
                o[i][2 * r] *= alpha, o[i][2 * r + 1] *= alpha;
        }

#pragma unroll
        for (int j = 0; j < BN / 16; j++) {
            uint32_t pa[4] = {pack_bf16(s[2 * j][0], s[2 * j][1]),
                              pack_bf16(s[2 * j][2], s[2 * j][3]),
                              pack_bf16(s[2 * j + 1][0], s[2 * j + 1][1]),
                              pack_bf16(s[2 * j + 1][2], s[2 * j + 1][3])};
#pragma unroll
            for (int c = 0; c < D / 16; c++) {
                uint32_t vb[4];
                frag_b_kn<D>(vb, vt, j * 16, c * 16, lane);
                mma_bf16(o[2 * c], pa, vb[0], vb[1]);
                mma_bf16(o[2 * c + 1], pa, vb[2], vb[3]);
            }
        }
        __syncthreads(); /* the next iteration's loads overwrite this buffer's twin */
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
        const int row = row0 + warp * 16 + gq + 8 * r;
        if (row >= G.lq) continue;
        const int64_t grow = qbase + row;
        const float inv = 1.0f / l[r];
        if (lse && tq == 0) lse[grow] = (m[r] + log2f(l[r])) * LN2;
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
            const int c = i * 8 + 2 * tq;
            float y0 = o[i][2 * r] * inv, y1 = o[i][2 * r + 1] * inv;
            if (g) {
                if (G.gd == 1) {
                    const float s1 = sigmoidf_(__bfloat162float(g[grow]));
                    y0 *= s1, y1 *= s1;
                } else {
                    const __nv_bfloat162 gg = *(const __nv_bfloat162 *)(g + grow * D + c);
                    y0 *= sigmoidf_(__low2float(gg)), y1 *= sigmoidf_(__high2float(gg));
                }
            }
            *(__nv_bfloat162 *)(y + grow * D + c) = __floats2bfloat162_rn(y0, y1);
        }
    }
}

bool attn_tc_eligible(const lact_tensor *q, const lact_tensor *k, const lact_tensor *v) {
    const int64_t d = q->shape[3];
    if (q->dtype != LACT_BF16 || (d != 64 && d != 128 && d != 256)) return false;
    if (q->shape[2] >= INT32_MAX / 2 || k->shape[2] >= INT32_MAX / 2) return false;
    const uintptr_t a = (uintptr_t)q->data | (uintptr_t)k->data | (uintptr_t)v->data;
    return (a & 15) == 0;
}

template <int D, int NW, int BN>
static lact_status launch_fwd(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *y, float *lse,
                              const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *g) {
    constexpr int BM = 16 * NW;
    const size_t sm = (size_t)(BM + 4 * BN) * (D + 8) * sizeof(bf16);
    LACT_CU(cudaFuncSetAttribute(attn_tc_fwd_kernel<D, NW, BN>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
    dim3 grid((unsigned)((G.lq + BM - 1) / BM), (unsigned)G.nh, (unsigned)nb);
    attn_tc_fwd_kernel<D, NW, BN>
        <<<grid, NW * 32, sm, lact_cuda_stream(ctx)>>>(y, lse, q, k, v, g, G);
    LACT_CU_LAUNCH("attention forward (tensor cores)");
    return LACT_OK;
}

/* d = 256 takes four warps and key tiles of 32: a warp's output rows alone
 * hold 128 accumulators a thread. */
lact_status attn_tc_forward(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *y, float *lse,
                            const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *g) {
    if (G.d == 64) return launch_fwd<64, 8, TC_BN>(ctx, G, nb, y, lse, q, k, v, g);
    if (G.d == 256) return launch_fwd<256, 4, 32>(ctx, G, nb, y, lse, q, k, v, g);
    return launch_fwd<128, 8, TC_BN>(ctx, G, nb, y, lse, q, k, v, g);
}
