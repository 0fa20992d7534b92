/* Attention decode on CUDA: one new query per (sequence, head) against the
 * key/value cache (kernels/attention.h). A block of DEC_WARPS warps owns one
 * query row; each warp takes every DEC_WARPS-th key of the row's range, so a
 * long context is read by all warps at once. Per key, the lanes hold the
 * channels (up to 8 each for d ≤ 256): the score is a warp-wide dot product,
 * the softmax is online in fp32, and the warps' partial (max, sum, output)
 * are merged through shared memory at the end. The key ranges are computed
 * on the host from lens (a few integers per step) and copied into a
 * per-stream buffer, so a step allocates nothing. */
#include "kernels/cuda/attention_cuda.h"
#include "kernels/cuda/common.cuh"

#define DEC_WARPS 4
#define DEC_MAX_PER_LANE 8 /* d ≤ 256 */

template <class T, int P>
__global__ void __launch_bounds__(DEC_WARPS * 32)
    attn_decode_kernel(T *y, float *lse, const T *q, const T *kc, const T *vc, const T *g,
                       const int32_t *ranges, int64_t nh, int64_t nkv, int64_t slots, int64_t d,
                       int64_t gd, float scale) {
    __shared__ float s_m[DEC_WARPS], s_l[DEC_WARPS];
    __shared__ float s_acc[DEC_WARPS][DEC_MAX_PER_LANE * 32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t row = blockIdx.x, b = row / nh, h = row % nh, group = nh / nkv;
    const int64_t kv_off = (b * nkv + h / group) * slots * d;
    const int lo = ranges[2 * b], hi = ranges[2 * b + 1];
    float qv[P], acc[P];
#pragma unroll
    for (int u = 0; u < P; u++) {
        int64_t c = lane + 32 * u;
        qv[u] = c < d ? ld(q, row * d + c) * scale : 0.0f;
        acc[u] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int t = lo + warp; t < hi; t += DEC_WARPS) {
        const int64_t slot = t < slots ? t : t % slots;
        const int64_t base = kv_off + slot * d;
        float s = 0.0f;
#pragma unroll
        for (int u = 0; u < P; u++) {
            int64_t c = lane + 32 * u;
            if (c < d) s += qv[u] * ld(kc, base + c);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            s += __shfl_xor_sync(0xffffffffu, s, o);
        if (s > m) {
            /* a new maximum: rescale what was summed against the old one */
            float r = __expf(m - s);
            l *= r;
#pragma unroll
            for (int u = 0; u < P; u++)
                acc[u] *= r;
            m = s;
        }
        float p = __expf(s - m);
        l += p;
#pragma unroll
        for (int u = 0; u < P; u++) {
            int64_t c = lane + 32 * u;
            if (c < d) acc[u] += p * ld(vc, base + c);
        }
    }
    if (lane == 0) s_m[warp] = m, s_l[warp] = l;
#pragma unroll
    for (int u = 0; u < P; u++)
        s_acc[warp][lane + 32 * u] = acc[u];
    __syncthreads();
    if (warp != 0) return;
    float M = -INFINITY;
    for (int w = 0; w < DEC_WARPS; w++)
        M = fmaxf(M, s_m[w]);
    float L = 0.0f, f[DEC_WARPS];
    for (int w = 0; w < DEC_WARPS; w++) {
        f[w] = s_l[w] > 0.0f ? __expf(s_m[w] - M) : 0.0f;
        L += s_l[w] * f[w];
    }
#pragma unroll
    for (int u = 0; u < P; u++) {
        int64_t c = lane + 32 * u;
        if (c >= d) continue;
        float o = 0.0f;
        for (int w = 0; w < DEC_WARPS; w++)
            o += s_acc[w][lane + 32 * u] * f[w];
        o /= L;
        if (g) o *= 1.0f / (1.0f + __expf(-ld(g, row * gd + (gd == 1 ? 0 : c))));
        st(y, row * d + c, o);
    }
    if (lse && lane == 0) lse[row] = M + logf(L);
}

/* The kernel for `per` channels a lane (1, 2, 4 or 8). */
template <class T>
static void launch(int per, unsigned rows, cudaStream_t st, T *y, float *lse, const T *q,
                   const T *kc, const T *vc, const T *g, const int32_t *ranges, int64_t nh,
                   int64_t nkv, int64_t slots, int64_t d, int64_t gd, float scale) {
    if (per == 1)
        attn_decode_kernel<T, 1><<<rows, DEC_WARPS * 32, 0, st>>>(y, lse, q, kc, vc, g, ranges, nh,
                                                                  nkv, slots, d, gd, scale);
    else if (per == 2)
        attn_decode_kernel<T, 2><<<rows, DEC_WARPS * 32, 0, st>>>(y, lse, q, kc, vc, g, ranges, nh,
                                                                  nkv, slots, d, gd, scale);
    else if (per == 4)
        attn_decode_kernel<T, 4><<<rows, DEC_WARPS * 32, 0, st>>>(y, lse, q, kc, vc, g, ranges, nh,
                                                                  nkv, slots, d, gd, scale);
    else
        attn_decode_kernel<T, 8><<<rows, DEC_WARPS * 32, 0, st>>>(y, lse, q, kc, vc, g, ranges, nh,
                                                                  nkv, slots, d, gd, scale);
}

extern "C" lact_status lact_cuda_attention_decode(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                                  const lact_tensor *q, const lact_tensor *k_cache,
                                                  const lact_tensor *v_cache, const lact_tensor *g,
                                                  const int32_t *ranges_host, float scale) {
    const int64_t nb = q->shape[0], nh = q->shape[1], d = q->shape[3];
    const int64_t nkv = k_cache->shape[1], slots = k_cache->shape[2];
    const int64_t gd = g ? g->shape[3] : 0;
    if (d > 32 * DEC_MAX_PER_LANE)
        return lact_fail(LACT_E_UNSUPPORTED, "attention decode: head dim %lld > %d on CUDA",
                         (long long)d, 32 * DEC_MAX_PER_LANE);
    if (nb * nh == 0) return LACT_OK;
    cudaStream_t st = lact_cuda_stream(ctx);
    void *ranges = NULL;
    size_t bytes = (size_t)(2 * nb) * sizeof(int32_t);
    LACT_TRY(lact_cuda_buffer(ctx, LACT_BUF_ATTN_DECODE, bytes, &ranges));
    /* From pageable memory the copy has read ranges_host when the call
     * returns, so the caller may free it at once. */
    LACT_CU(cudaMemcpyAsync(ranges, ranges_host, bytes, cudaMemcpyHostToDevice, st));
    const int per = d <= 32 ? 1 : d <= 64 ? 2 : d <= 128 ? 4 : 8;
    float *pl = lse ? (float *)lse->data : NULL;
    LACT_DISPATCH_FLOAT(q->dtype, "attention decode", {
        launch<T>(per, (unsigned)(nb * nh), st, (T *)y->data, pl, (const T *)q->data,
                  (const T *)k_cache->data, (const T *)v_cache->data, g ? (const T *)g->data : NULL,
                  (const int32_t *)ranges, nh, nkv, slots, d, gd, scale);
    });
    LACT_CU_LAUNCH("attention decode");
    return LACT_OK;
}
