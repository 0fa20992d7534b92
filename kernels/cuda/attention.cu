/* Attention on CUDA: the entry points, and the flash-style kernels on CUDA
 * cores (fp32 FMAs) that serve F32, F16 and the head dims the tensor-core
 * kernels do not take (BF16 with d 64, 128 or 256 goes to attention_tc_fwd.cu
 * and attention_tc_bwd.cu). A block holds WARPS query rows of one (batch, head),
 * one warp per row; it streams the K/V tiles of BK keys that cover the union
 * of its rows' key ranges through shared memory (tiles outside every range
 * are never read), with an online softmax in fp32. Inside a tile, lanes own
 * keys for the scores and channels for the output. The backward recomputes
 * P from lse: a row pass (D = Σ d_y·y, and d_g), a d_q pass shaped like the
 * forward, and a d_k/d_v pass with one warp per key streaming the query
 * tiles that see it. No atomics: every result has one writer. */
#include <math.h>

#include "kernels/cuda/attention_cuda.h"
#include "kernels/cuda/attention_geom.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vec.cuh"

#define WARPS 8
#define BK 32 /* keys (or queries) per shared tile: one per lane */
#define FULL 0xffffffffu

/* Min of lo and max of hi over the block's warps (empty ranges ignored). */
__device__ void block_hull(int64_t lo, int64_t hi, int64_t *hlo, int64_t *hhi) {
    __shared__ int64_t s_lo[WARPS], s_hi[WARPS];
    int warp = threadIdx.x >> 5;
    __syncthreads();
    if ((threadIdx.x & 31) == 0)
        s_lo[warp] = lo < hi ? lo : INT64_MAX, s_hi[warp] = lo < hi ? hi : 0;
    __syncthreads();
    int64_t a = INT64_MAX, b = 0;
    for (int w = 0; w < WARPS; w++)
        a = s_lo[w] < a ? s_lo[w] : a, b = s_hi[w] > b ? s_hi[w] : b;
    *hlo = a, *hhi = b;
}

/* Loads rows [t0, t0 + BK) (those < end) of src [.., d] into dst[BK][d + 1]
 * as fp32, zeros past end. */
template <class T>
__device__ void load_tile(float *dst, const T *src, int64_t t0, int64_t end, int64_t d) {
    for (int64_t i = threadIdx.x; i < BK * d; i += blockDim.x) {
        int64_t j = i / d, c = i % d;
        dst[j * (d + 1) + c] = t0 + j < end ? ld(src, (t0 + j) * d + c) : 0.0f;
    }
}

/* ---- forward ------------------------------------------------------------------ */

template <class T, int DPL>
__global__ void __launch_bounds__(WARPS * 32)
    attn_fwd_kernel(T *y, float *lse, const T *q, const T *k, const T *v, const T *g, attn_geom G) {
    extern __shared__ float sm[];
    const int64_t d = G.d, ldk = d + 1;
    float *ks = sm, *vs = ks + BK * ldk, *qs = vs + BK * ldk;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t b = blockIdx.z, h = blockIdx.y, hk = h / G.group;
    const int64_t row = (int64_t)blockIdx.x * WARPS + warp,
                  qoff = ((b * G.nh + h) * G.lq + row) * d;
    const bool active = row < G.lq;
    int64_t lo = 0, hi = 0;
    if (active) {
        int64_t q0, nq, k0, nk;
        seq_of(G, row, &q0, &nq, &k0, &nk);
        key_range(G, nk - nq + row - q0, nk, &lo, &hi);
        lo += k0, hi += k0;
        for (int64_t c = lane; c < d; c += 32)
            qs[warp * d + c] = ld(q, qoff + c) * G.scale;
    }
    int64_t hlo, hhi;
    block_hull(lo, hi, &hlo, &hhi);
    const int64_t kv = (b * G.nkv + hk) * G.lk * d;
    float acc[DPL], m = -INFINITY, l = 0.0f;
#pragma unroll
    for (int u = 0; u < DPL; u++)
        acc[u] = 0.0f;
    for (int64_t t0 = hlo; t0 < hhi; t0 += BK) {
        __syncthreads();
        load_tile(ks, k + kv, t0, hhi, d);
        load_tile(vs, v + kv, t0, hhi, d);
        __syncthreads();
        if (!active || hi <= t0 || lo >= t0 + BK) continue;
        const int64_t key = t0 + lane;
        const bool ok = key >= lo && key < hi;
        float s = -INFINITY;
        if (ok) {
            s = 0.0f;
            for (int64_t c = 0; c < d; c++)
                s += qs[warp * d + c] * ks[lane * ldk + c];
        }
        const float mn = fmaxf(m, warp_max(s));
        const float p = ok ? expf(s - mn) : 0.0f, r = expf(m - mn);
        l = l * r + warp_sum(p);
#pragma unroll
        for (int u = 0; u < DPL; u++)
            acc[u] *= r;
        for (int j = 0; j < BK; j++) {
            const float pj = __shfl_sync(FULL, p, j);
#pragma unroll
            for (int u = 0; u < DPL; u++) {
                const int64_t c = lane + 32 * u;
                if (c < d) acc[u] += pj * vs[j * ldk + c];
            }
        }
        m = mn;
    }
    if (!active) return;
    const int64_t grow = (b * G.nh + h) * G.lq + row;
#pragma unroll
    for (int u = 0; u < DPL; u++) {
        const int64_t c = lane + 32 * u;
        if (c >= d) continue;
        const float gate = g ? sigmoidf_(ld(g, grow * G.gd + (G.gd == 1 ? 0 : c))) : 1.0f;
        st(y, qoff + c, acc[u] / l * gate);
    }
    if (lse && lane == 0) lse[grow] = m + logf(l);
}

/* ---- backward ----------------------------------------------------------------- */

/* Per row: D = Σ_c d_y y; d_g = d_y ⊙ y ⊙ (1 − σ(g)) (summed for a per-head gate);
 * and, for the tensor-core kernels of a gated op, dO = d_y ⊙ σ(g). */
template <class T>
__global__ void attn_bwd_rows_kernel(float *dsum, T *dg, T *dout, const T *dy, const T *y,
                                     const T *g, int64_t rows, int64_t d, int64_t gd) {
    const int lane = threadIdx.x & 31;
    const int64_t step = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; row < rows;
         row += step) {
        float s = 0.0f;
        for (int64_t c = lane; c < d; c += 32) {
            const float dyy = ld(dy, row * d + c) * ld(y, row * d + c);
            s += dyy;
            if (dg && gd != 1) st(dg, row * d + c, dyy * (1.0f - sigmoidf_(ld(g, row * d + c))));
            if (dout)
                st(dout, row * d + c,
                   ld(dy, row * d + c) * sigmoidf_(ld(g, row * gd + (gd == 1 ? 0 : c))));
        }
        s = warp_sum(s);
        if (lane == 0) {
            dsum[row] = s;
            if (dg && gd == 1) st(dg, row, s * (1.0f - sigmoidf_(ld(g, row))));
        }
    }
}

/* The row pass with V elements per lane in 16-byte words and GL = d / V
 * lanes per row (a power of two up to 32), several rows per warp: the
 * element-wise loop above moves two bytes per lane and load. */
template <class T, int V>
__global__ void attn_bwd_rows_vec_kernel(float *dsum, T *dg, T *dout, const T *dy, const T *y,
                                         const T *g, int64_t rows, int d, int64_t gd) {
    const int gl = d / V, lane = threadIdx.x & 31, sub = lane % gl;
    /* The lanes of this row only: the warp's other rows may have left the
     * loop already. */
    const unsigned gmask = gl == 32 ? FULL : ((1u << gl) - 1u) << (lane - sub);
    const int64_t per = ((int64_t)gridDim.x * blockDim.x) / gl;
    for (int64_t row = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / gl; row < rows;
         row += per) {
        const int64_t o = row * d + (int64_t)sub * V;
        float a[V], b[V];
        vload<V>(dy + o, a);
        vload<V>(y + o, b);
        float s = 0.0f, dyy[V];
#pragma unroll
        for (int e = 0; e < V; e++)
            dyy[e] = a[e] * b[e], s += dyy[e];
        if (dg && gd != 1) {
            float gv[V];
            vload<V>(g + o, gv);
#pragma unroll
            for (int e = 0; e < V; e++)
                gv[e] = dyy[e] * (1.0f - sigmoidf_(gv[e]));
            vstore<V>(dg + o, gv);
        }
        if (dout) {
            float gv[V];
            if (gd == 1) {
                const float sg = sigmoidf_(ld(g, row));
#pragma unroll
                for (int e = 0; e < V; e++)
                    gv[e] = a[e] * sg;
            } else {
                vload<V>(g + o, gv);
#pragma unroll
                for (int e = 0; e < V; e++)
                    gv[e] = a[e] * sigmoidf_(gv[e]);
            }
            vstore<V>(dout + o, gv);
        }
        for (int m = gl / 2; m > 0; m /= 2)
            s += __shfl_xor_sync(gmask, s, m);
        if (sub == 0) {
            dsum[row] = s;
            if (dg && gd == 1) st(dg, row, s * (1.0f - sigmoidf_(ld(g, row))));
        }
    }
}

/* The row pass: the vector kernel where d and the addresses allow it. */
template <class T>
void attn_bwd_rows(cudaStream_t st, float *dsum, T *dg, T *dout, const T *dy, const T *y,
                   const T *g, int64_t rows, int64_t d, int64_t gd) {
    constexpr int V = vec_width<T>::value;
    const int64_t gl = d / V;
    if (d % V == 0 && gl > 0 && gl <= 32 && (gl & (gl - 1)) == 0 &&
        lact_aligned16(dy, y, dout, gd != 1 ? g : NULL, gd != 1 ? dg : NULL))
        attn_bwd_rows_vec_kernel<T, V><<<lact_grid_1d(rows * gl, 256), 256, 0, st>>>(
            dsum, dg, dout, dy, y, g, rows, (int)d, gd);
    else
        attn_bwd_rows_kernel<T>
            <<<lact_grid_1d(rows * 32, 256), 256, 0, st>>>(dsum, dg, dout, dy, y, g, rows, d, gd);
}

/* dO of a row into dst[d]: d_y ⊙ σ(g). */
template <class T>
__device__ void load_do(float *dst, const T *dy, const T *g, int64_t grow, int64_t d, int64_t gd,
                        int lane) {
    for (int64_t c = lane; c < d; c += 32)
        dst[c] =
            ld(dy, grow * d + c) * (g ? sigmoidf_(ld(g, grow * gd + (gd == 1 ? 0 : c))) : 1.0f);
}

template <class T, int DPL>
__global__ void __launch_bounds__(WARPS * 32)
    attn_bwd_dq_kernel(T *dq, const T *q, const T *k, const T *v, const T *g, const T *dy,
                       const float *lse, const float *dsum, attn_geom G) {
    extern __shared__ float sm[];
    const int64_t d = G.d, ldk = d + 1;
    float *ks = sm, *vs = ks + BK * ldk, *qs = vs + BK * ldk, *dos = qs + WARPS * d;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t b = blockIdx.z, h = blockIdx.y, hk = h / G.group;
    const int64_t row = (int64_t)blockIdx.x * WARPS + warp, grow = (b * G.nh + h) * G.lq + row;
    const bool active = row < G.lq;
    int64_t lo = 0, hi = 0;
    float lse_r = 0.0f, dd = 0.0f;
    if (active) {
        int64_t q0, nq, k0, nk;
        seq_of(G, row, &q0, &nq, &k0, &nk);
        key_range(G, nk - nq + row - q0, nk, &lo, &hi);
        lo += k0, hi += k0;
        for (int64_t c = lane; c < d; c += 32)
            qs[warp * d + c] = ld(q, grow * d + c) * G.scale;
        load_do(dos + warp * d, dy, g, grow, d, G.gd, lane);
        lse_r = lse[grow], dd = dsum[grow];
    }
    int64_t hlo, hhi;
    block_hull(lo, hi, &hlo, &hhi);
    const int64_t kv = (b * G.nkv + hk) * G.lk * d;
    float acc[DPL];
#pragma unroll
    for (int u = 0; u < DPL; u++)
        acc[u] = 0.0f;
    for (int64_t t0 = hlo; t0 < hhi; t0 += BK) {
        __syncthreads();
        load_tile(ks, k + kv, t0, hhi, d);
        load_tile(vs, v + kv, t0, hhi, d);
        __syncthreads();
        if (!active || hi <= t0 || lo >= t0 + BK) continue;
        const int64_t key = t0 + lane;
        float ds = 0.0f;
        if (key >= lo && key < hi) {
            float s = 0.0f, dp = 0.0f;
            for (int64_t c = 0; c < d; c++) {
                s += qs[warp * d + c] * ks[lane * ldk + c];
                dp += dos[warp * d + c] * vs[lane * ldk + c];
            }
            ds = expf(s - lse_r) * (dp - dd);
        }
        for (int j = 0; j < BK; j++) {
            const float dsj = __shfl_sync(FULL, ds, j);
#pragma unroll
            for (int u = 0; u < DPL; u++) {
                const int64_t c = lane + 32 * u;
                if (c < d) acc[u] += dsj * ks[j * ldk + c];
            }
        }
    }
    if (!active) return;
#pragma unroll
    for (int u = 0; u < DPL; u++) {
        const int64_t c = lane + 32 * u;
        if (c < d) st(dq, grow * d + c, acc[u] * G.scale);
    }
}

/* One warp per key row of (batch, kv head); the block streams the query
 * tiles (of every head of the group) that see any of its keys. */
template <class T, int DPL>
__global__ void __launch_bounds__(WARPS * 32)
    attn_bwd_dkv_kernel(T *dk, T *dv, const T *q, const T *k, const T *v, const T *g, const T *dy,
                        const float *lse, const float *dsum, attn_geom G) {
    extern __shared__ float sm[];
    const int64_t d = G.d, ldq = d + 1;
    float *qs = sm, *dos = qs + BK * ldq, *kw = dos + BK * ldq, *vw = kw + WARPS * d;
    float *lses = vw + WARPS * d, *dds = lses + BK;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t b = blockIdx.z, hk = blockIdx.y;
    const int64_t key = (int64_t)blockIdx.x * WARPS + warp,
                  koff = ((b * G.nkv + hk) * G.lk + key) * d;
    const bool active = key < G.lk;
    int64_t lo = 0, hi = 0;
    if (active) {
        int64_t q0, nq, k0, nk;
        seq_of(G, key, &q0, &nq, &k0, &nk);
        query_range(G, key - k0, nq, nk - nq, &lo, &hi);
        lo += q0, hi += q0;
        for (int64_t c = lane; c < d; c += 32) {
            kw[warp * d + c] = ld(k, koff + c) * G.scale;
            vw[warp * d + c] = ld(v, koff + c);
        }
    }
    int64_t hlo, hhi;
    block_hull(lo, hi, &hlo, &hhi);
    float adk[DPL], adv[DPL];
#pragma unroll
    for (int u = 0; u < DPL; u++)
        adk[u] = adv[u] = 0.0f;
    for (int64_t h = hk * G.group; h < (hk + 1) * G.group; h++) {
        const int64_t hrow = (b * G.nh + h) * G.lq;
        for (int64_t t0 = hlo; t0 < hhi; t0 += BK) {
            __syncthreads();
            load_tile(qs, q + hrow * d, t0, hhi, d);
            for (int64_t i = threadIdx.x; i < BK * d; i += blockDim.x) {
                const int64_t j = i / d, c = i % d, r = hrow + t0 + j;
                float o = 0.0f;
                if (t0 + j < hhi)
                    o = ld(dy, r * d + c) *
                        (g ? sigmoidf_(ld(g, r * G.gd + (G.gd == 1 ? 0 : c))) : 1.0f);
                dos[j * ldq + c] = o;
            }
            for (int64_t j = threadIdx.x; j < BK; j += blockDim.x) {
                lses[j] = t0 + j < hhi ? lse[hrow + t0 + j] : 0.0f;
                dds[j] = t0 + j < hhi ? dsum[hrow + t0 + j] : 0.0f;
            }
            __syncthreads();
            if (!active || hi <= t0 || lo >= t0 + BK) continue;
            const int64_t qr = t0 + lane;
            float p = 0.0f, ds = 0.0f;
            if (qr >= lo && qr < hi) {
                float s = 0.0f, dp = 0.0f;
                for (int64_t c = 0; c < d; c++) {
                    s += qs[lane * ldq + c] * kw[warp * d + c];
                    dp += dos[lane * ldq + c] * vw[warp * d + c];
                }
                p = expf(s - lses[lane]);
                ds = p * (dp - dds[lane]);
            }
            for (int j = 0; j < BK; j++) {
                const float pj = __shfl_sync(FULL, p, j), dsj = __shfl_sync(FULL, ds, j);
#pragma unroll
                for (int u = 0; u < DPL; u++) {
                    const int64_t c = lane + 32 * u;
                    if (c < d) {
                        adv[u] += pj * dos[j * ldq + c];
                        adk[u] += dsj * qs[j * ldq + c];
                    }
                }
            }
        }
    }
    if (!active) return;
#pragma unroll
    for (int u = 0; u < DPL; u++) {
        const int64_t c = lane + 32 * u;
        if (c >= d) continue;
        if (dk) st(dk, koff + c, adk[u] * G.scale);
        if (dv) st(dv, koff + c, adv[u]);
    }
}

/* ---- launchers ------------------------------------------------------------------ */

static lact_status check_head_dim(const char *op, int64_t d, int *dpl) {
    if (d > 256)
        return lact_fail(LACT_E_UNSUPPORTED, "%s: head dim %lld > 256 has no CUDA kernel", op,
                         (long long)d);
    *dpl = d <= 32 ? 1 : d <= 64 ? 2 : d <= 128 ? 4 : 8;
    return LACT_OK;
}

/* Head dims above 128 need more than the default 48 KiB of dynamic shared
 * memory (d = 256: 82 KiB for the d_k/d_v pass); raising a kernel's limit
 * is one attribute call, made before each such launch. */
template <class K> static lact_status allow_smem(K *kernel, size_t bytes) {
    if (bytes <= 48 * 1024) return LACT_OK;
    LACT_CU(cudaFuncSetAttribute((const void *)kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)bytes));
    return LACT_OK;
}

static size_t smem_bytes(int64_t d, int kind) {
    size_t tiles = 2 * BK * (size_t)(d + 1);
    if (kind == 0) return (tiles + WARPS * (size_t)d) * sizeof(float);
    if (kind == 1) return (tiles + 2 * WARPS * (size_t)d) * sizeof(float);
    return (tiles + 2 * WARPS * (size_t)d + 2 * BK) * sizeof(float);
}

#define ATTN_DPL(dpl, ...)                                                                         \
    do {                                                                                           \
        if (dpl == 1) {                                                                            \
            constexpr int P = 1;                                                                   \
            __VA_ARGS__;                                                                           \
        } else if (dpl == 2) {                                                                     \
            constexpr int P = 2;                                                                   \
            __VA_ARGS__;                                                                           \
        } else if (dpl == 4) {                                                                     \
            constexpr int P = 4;                                                                   \
            __VA_ARGS__;                                                                           \
        } else {                                                                                   \
            constexpr int P = 8;                                                                   \
            __VA_ARGS__;                                                                           \
        }                                                                                          \
    } while (0)

extern "C" lact_status lact_cuda_attention_forward(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                                   const lact_tensor *q, const lact_tensor *k,
                                                   const lact_tensor *v, const lact_tensor *g,
                                                   const lact_tensor *cu_seqlens,
                                                   const lact_attn_args *args) {
    const char *op = "attention";
    int dpl = 1;
    LACT_TRY(check_head_dim(op, q->shape[3], &dpl));
    attn_geom G = attn_make_geom(q, k, g, cu_seqlens, args);
    if (!G.lq || !q->shape[0] || !G.nh) return LACT_OK;
    dim3 grid((unsigned)((G.lq + WARPS - 1) / WARPS), (unsigned)G.nh, (unsigned)q->shape[0]);
    size_t sm = smem_bytes(G.d, 0);
    float *pl = lse ? (float *)lse->data : NULL;
    if (attn_tc_eligible(q, k, v) && ((uintptr_t)y->data & 3) == 0 &&
        (!g || ((uintptr_t)g->data & 3) == 0))
        return (attn_wgmma_ready() ? attn_wgmma_forward : attn_tc_forward)(
            ctx, G, q->shape[0], (bf16 *)y->data, pl, (const bf16 *)q->data, (const bf16 *)k->data,
            (const bf16 *)v->data, g ? (const bf16 *)g->data : NULL);
    LACT_DISPATCH_FLOAT(q->dtype, op, {
        ATTN_DPL(dpl, {
            LACT_TRY(allow_smem(attn_fwd_kernel<T, P>, sm));
            attn_fwd_kernel<T, P><<<grid, WARPS * 32, sm, lact_cuda_stream(ctx)>>>(
                (T *)y->data, pl, (const T *)q->data, (const T *)k->data, (const T *)v->data,
                g ? (const T *)g->data : NULL, G);
        });
    });
    LACT_CU_LAUNCH("attention forward");
    return LACT_OK;
}

extern "C" lact_status
lact_cuda_attention_backward(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k, lact_tensor *d_v,
                             lact_tensor *d_g, const lact_tensor *d_y, const lact_tensor *q,
                             const lact_tensor *k, const lact_tensor *v, const lact_tensor *g,
                             const lact_tensor *cu_seqlens, const lact_tensor *y,
                             const lact_tensor *lse, const lact_attn_args *args) {
    const char *op = "attention backward";
    int dpl = 1;
    LACT_TRY(check_head_dim(op, q->shape[3], &dpl));
    attn_geom G = attn_make_geom(q, k, g, cu_seqlens, args);
    const int64_t nb = q->shape[0], rows = nb * G.nh * G.lq;
    cudaStream_t st = lact_cuda_stream(ctx);
    const bool tc = attn_tc_eligible(q, k, v) && ((uintptr_t)d_y->data & 15) == 0 &&
                    (!d_q || ((uintptr_t)d_q->data & 3) == 0) &&
                    (!d_k || ((uintptr_t)d_k->data & 3) == 0) &&
                    (!d_v || ((uintptr_t)d_v->data & 3) == 0);
    /* D per query row, and for the tensor-core kernels of a gated op
     * dO = d_y ⊙ σ(g): per-stream buffers kept across calls, so a training
     * step allocates nothing once they have grown to the largest shape. */
    float *dsum = (float *)ctx->scratch;
    if ((size_t)rows * sizeof(float) > ctx->scratch_bytes)
        LACT_TRY(lact_cuda_buffer(ctx, LACT_BUF_ATTN_DSUM, (size_t)rows * sizeof(float),
                                  (void **)&dsum));
    void *dout = NULL;
    lact_status s = LACT_OK;
    if (tc && g && rows > 0)
        s = lact_cuda_buffer(ctx, LACT_BUF_ATTN_DOUT, (size_t)rows * G.d * sizeof(bf16), &dout);
    LACT_DISPATCH_FLOAT(q->dtype, op, {
        const T *tq = (const T *)q->data, *tk = (const T *)k->data, *tv = (const T *)v->data;
        const T *tg = g ? (const T *)g->data : NULL, *tdy = (const T *)d_y->data;
        if (s == LACT_OK && rows > 0) {
            attn_bwd_rows<T>(st, dsum, d_g ? (T *)d_g->data : NULL, (T *)dout, tdy,
                             (const T *)y->data, tg, rows, G.d, G.gd);
            s = lact_cuda_status(cudaPeekAtLastError(), "attention backward rows", __FILE__,
                                 __LINE__);
        }
        if (tc) {
            if (s == LACT_OK && rows > 0 && G.lk > 0)
                s = (attn_wgmma_bwd_ready() ? attn_wgmma_backward : attn_tc_backward)(
                    ctx, G, nb, d_q ? (bf16 *)d_q->data : NULL, d_k ? (bf16 *)d_k->data : NULL,
                    d_v ? (bf16 *)d_v->data : NULL, (const bf16 *)tq, (const bf16 *)tk,
                    (const bf16 *)tv, dout ? (const bf16 *)dout : (const bf16 *)tdy,
                    (const float *)lse->data, dsum);
            break;
        }
        if (s == LACT_OK && d_q && rows > 0) {
            dim3 grid((unsigned)((G.lq + WARPS - 1) / WARPS), (unsigned)G.nh, (unsigned)nb);
            ATTN_DPL(dpl, {
                s = allow_smem(attn_bwd_dq_kernel<T, P>, smem_bytes(G.d, 1));
                if (s == LACT_OK)
                    attn_bwd_dq_kernel<T, P><<<grid, WARPS * 32, smem_bytes(G.d, 1), st>>>(
                    (T *)d_q->data, tq, tk, tv, tg, tdy, (const float *)lse->data, dsum, G);
            });
            if (s == LACT_OK)
                s = lact_cuda_status(cudaPeekAtLastError(), "attention backward dq", __FILE__,
                                     __LINE__);
        }
        if (s == LACT_OK && (d_k || d_v) && G.lk > 0 && nb > 0) {
            dim3 grid((unsigned)((G.lk + WARPS - 1) / WARPS), (unsigned)G.nkv, (unsigned)nb);
            ATTN_DPL(dpl, {
                s = allow_smem(attn_bwd_dkv_kernel<T, P>, smem_bytes(G.d, 2));
                if (s == LACT_OK)
                    attn_bwd_dkv_kernel<T, P><<<grid, WARPS * 32, smem_bytes(G.d, 2), st>>>(
                    d_k ? (T *)d_k->data : NULL, d_v ? (T *)d_v->data : NULL, tq, tk, tv, tg, tdy,
                    (const float *)lse->data, dsum, G);
            });
            if (s == LACT_OK)
                s = lact_cuda_status(cudaPeekAtLastError(), "attention backward dk/dv",
                                     __FILE__, __LINE__);
        }
    });
    return s;
}
