/* Cross-entropy forward and backward in one call (lact_xent_forward_backward),
 * for a training step that knows dloss before its forward. The forward and
 * backward of softmax_xent.cu walk the vocabulary in chunks and so need the
 * final log-sum-exp of a row before its dlogits exist: the backward forms
 * every chunk's logits a second time, one [N, V, C] product more. Here the
 * walk is by blocks of rows instead, each with its full [rows, V] logits:
 *
 *   logits = h[rows] · wᵀ                        (product, into the buffer)
 *   per row: lse, loss, dlogits in place          (xent_rows_kernel)
 *   dh[rows] = dlogits · w                        (product, K = V)
 *   dw += dlogitsᵀ · h[rows]                      (product, accumulated)
 *
 * The row kernel takes a block per row. When the row fits (V · sizeof(T) up
 * to XR_STAGE_BYTES, so two blocks share a multiprocessor) it keeps the row
 * in shared memory between its two passes, so the logits are read once and
 * written once; otherwise the second pass reads them again. Its two
 * exponentials per element use the hardware's approximation: with the
 * exact one the special-function unit, not memory, set its pace. */
#include <stdlib.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/xent_common.cuh"

#define XR_THREADS 512
#define XR_UNROLL 4
#define XR_STAGE_BYTES (110 * 1024)
#define XR_BUDGET ((size_t)1 << 30) /* bytes of logits a block of rows takes */

/* The block's (m, s) pairs merged; every thread gets the result. */
__device__ __forceinline__ void xr_block_merge(float &m, float &s, float *sh) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    lse_warp_merge(m, s);
    if (lane == 0) sh[warp] = m, sh[32 + warp] = s;
    __syncthreads();
    if (warp == 0) {
        m = lane < nw ? sh[lane] : -INFINITY;
        s = lane < nw ? sh[32 + lane] : 0.0f;
        lse_warp_merge(m, s);
        if (lane == 0) sh[64] = m, sh[65] = s;
    }
    __syncthreads();
    m = sh[64], s = sh[65];
}

/* Row r of lg [rows, V]: lse[r], loss[r] (0 for a negative target) and, in
 * place of the logits, dlogits = dloss[r] (softmax − onehot(target)) (0 for
 * a negative target). VEC: 16-byte words (V a multiple of 16 / sizeof(T));
 * STAGE: the row's words kept in shared memory between the passes. */
template <class T, bool VEC, bool STAGE>
__global__ void __launch_bounds__(XR_THREADS)
    xent_rows_kernel(T *lg, const int32_t *target, const float *dloss, float *loss, float *lse,
                     int64_t V) {
    extern __shared__ __align__(16) uint4 xr_stage[];
    __shared__ float sh[66];
    constexpr int E = 16 / sizeof(T);
    const int64_t r = blockIdx.x;
    T *row = lg + r * V;
    const int32_t t = target[r];
    float tl = 0.0f;
    if (threadIdx.x == 0 && t >= 0 && t < V) tl = ld(row, t); /* before the second pass writes it */
    float m = -INFINITY, s = 0.0f;
    const int64_t n = VEC ? V / E : V;
    uint4 *words = (uint4 *)row;
    if (VEC) {
        for (int64_t b = threadIdx.x; b < n; b += (int64_t)blockDim.x * XR_UNROLL) {
            uint4 u[XR_UNROLL];
#pragma unroll
            for (int k = 0; k < XR_UNROLL; k++) {
                const int64_t c = b + (int64_t)k * blockDim.x;
                if (c < n) u[k] = words[c];
            }
#pragma unroll
            for (int k = 0; k < XR_UNROLL; k++) {
                const int64_t c = b + (int64_t)k * blockDim.x;
                if (c >= n) continue;
                if (STAGE) xr_stage[c] = u[k];
                float v[E];
                xent_unpack<T>(u[k], v);
                lse_addn<E, true>(m, s, v);
            }
        }
    } else {
        for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
            const float v[1] = {ld(row, c)};
            lse_addn<1, true>(m, s, v);
        }
    }
    xr_block_merge(m, s, sh); /* its barriers also order the stage and tl */
    const float l = m + logf(s);
    if (threadIdx.x == 0) {
        lse[r] = l;
        loss[r] = t >= 0 ? l - tl : 0.0f;
    }
    const float w = t >= 0 ? dloss[r] : 0.0f;
    if (VEC) {
        for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
            float v[E];
            xent_unpack<T>(STAGE ? xr_stage[c] : words[c], v);
#pragma unroll
            for (int e = 0; e < E; e++)
                v[e] = w * (__expf(v[e] - l) - (c * E + e == t ? 1.0f : 0.0f));
            words[c] = xent_pack<T>(v);
        }
    } else {
        for (int64_t c = threadIdx.x; c < n; c += blockDim.x)
            st(row, c, w * (__expf(ld(row, c) - l) - (c == t ? 1.0f : 0.0f)));
    }
}

template <class T, bool VEC, bool STAGE>
static lact_status xr_launch(cudaStream_t st, void *lg, const int32_t *tg, const float *dl,
                             float *loss, float *lse, int64_t rows, int64_t V) {
    const size_t smem = STAGE ? (size_t)V * sizeof(T) : 0;
    if (STAGE)
        LACT_CU(cudaFuncSetAttribute(xent_rows_kernel<T, VEC, STAGE>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    xent_rows_kernel<T, VEC, STAGE>
        <<<(unsigned)rows, XR_THREADS, smem, st>>>((T *)lg, tg, dl, loss, lse, V);
    LACT_CU_LAUNCH("xent_rows");
    return LACT_OK;
}

template <class T>
static lact_status xr_rows(cudaStream_t st, void *lg, const int32_t *tg, const float *dl,
                           float *loss, float *lse, int64_t rows, int64_t V) {
    constexpr int E = 16 / sizeof(T);
    if (V % E != 0) return xr_launch<T, false, false>(st, lg, tg, dl, loss, lse, rows, V);
    if ((size_t)V * sizeof(T) <= XR_STAGE_BYTES)
        return xr_launch<T, true, true>(st, lg, tg, dl, loss, lse, rows, V);
    return xr_launch<T, true, false>(st, lg, tg, dl, loss, lse, rows, V);
}

/* Rows per block: as many as XR_BUDGET bytes of logits hold (a multiple of
 * 128 when more than 128), at most LACT_XENT_ROWS when set (tests use it to
 * walk several blocks at small sizes). */
static int64_t xr_block_rows(int64_t N, int64_t V, size_t es) {
    int64_t R = (int64_t)(XR_BUDGET / ((size_t)V * es));
    if (R > 128) R -= R % 128;
    const char *e = getenv("LACT_XENT_ROWS");
    if (e && atoll(e) > 0 && atoll(e) < R) R = atoll(e);
    if (R < 1) R = 1;
    return R < N ? R : N;
}

extern "C" lact_status lact_cuda_xent_forward_backward(lact_ctx *ctx, lact_tensor *loss,
                                                       lact_tensor *lse, lact_tensor *dh,
                                                       lact_tensor *dw, const lact_tensor *dloss,
                                                       const lact_tensor *h, const lact_tensor *w,
                                                       const lact_tensor *target,
                                                       int64_t vocab_chunk) {
    (void)vocab_chunk; /* the vocabulary is walked whole, a block of rows at a time */
    const int64_t N = lact_tensor_rows(h), C = lact_tensor_cols(h), V = w->shape[0];
    const lact_dtype dt = h->dtype;
    cudaStream_t st = lact_cuda_stream(ctx);
    if (!N) return LACT_OK; /* dw accumulates: nothing to add */
    if (dt != LACT_F32 && dt != LACT_BF16)
        return lact_fail(LACT_E_UNSUPPORTED, "xent: activations must be F32 or BF16, not %s",
                         lact_dtype_name(dt));
    const size_t es = lact_dtype_size(dt);
    const int64_t R = xr_block_rows(N, V, es);
    void *lg = NULL;
    LACT_TRY(lact_cuda_buffer(ctx, LACT_BUF_XENT, (size_t)(R * V) * es, &lg));
    const int32_t *tg = (const int32_t *)target->data;
    const float *dl = (const float *)dloss->data;
    for (int64_t r0 = 0; r0 < N; r0 += R) {
        const int64_t nr = N - r0 < R ? N - r0 : R;
        const char *hr = (const char *)h->data + (size_t)(r0 * C) * es;
        lact_gemm_desc g = lact_gemm_desc_make(hr, w->data, lg, dt, dt, false, true, nr, V, C, 1, 0,
                                               0, 0, 1.0f, 0.0f);
        LACT_TRY(lact_cuda_gemm(ctx, &g));
        float *lo = (float *)loss->data + r0, *ls = (float *)lse->data + r0;
        if (dt == LACT_BF16)
            LACT_TRY(xr_rows<bf16>(st, lg, tg + r0, dl + r0, lo, ls, nr, V));
        else
            LACT_TRY(xr_rows<float>(st, lg, tg + r0, dl + r0, lo, ls, nr, V));
        if (dh) { /* dh[rows] [nr, C] = dlogits [nr, V] · w [V, C] */
            char *dhr = (char *)dh->data + (size_t)(r0 * C) * es;
            g = lact_gemm_desc_make(lg, w->data, dhr, dt, dt, false, false, nr, C, V, 1, 0, 0, 0,
                                    1.0f, 0.0f);
            LACT_TRY(lact_cuda_gemm(ctx, &g));
        }
        if (dw) { /* dw [V, C] += dlogitsᵀ [V, nr] · h[rows] [nr, C] */
            g = lact_gemm_desc_make(lg, hr, dw->data, dt, LACT_F32, true, false, V, C, nr, 1, 0, 0,
                                    0, 1.0f, 1.0f);
            LACT_TRY(lact_cuda_gemm(ctx, &g));
        }
    }
    return LACT_OK;
}
