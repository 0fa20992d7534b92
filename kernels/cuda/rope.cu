/* Rotary embedding, rotate-half convention. The angle of (position l, pair
 * i) does not depend on the batch or the head, so a block owns one position
 * (grid x) and a share of the batches (grid y): it forms the cos and sin of
 * up to ROPE_CHUNK pair indices once into shared memory, then rotates every
 * (batch, head) row of that position with 16-byte words of both halves. The
 * angle is formed in double precision so that large positions keep their
 * phase (p · θ^(−2i/D) loses it in fp32 beyond a few thousand tokens); the
 * expression is the same as before, so the table holds the same bits. The
 * per-word index math is 32-bit. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vec.cuh"

#define ROPE_THREADS 128
#define ROPE_CHUNK 256 /* pair indices per table fill; a multiple of every V */
#define ROPE_BLOCKS 4096

/* x viewed as [B, L, H, D]; sign = +1 forward, −1 for the backward. V
 * divides D / 2. Block (l, y) handles batches y, y + gridDim.y, ...; their
 * count times H · min(D / 2, ROPE_CHUNK) fits in an int (the launcher's
 * split). */
template <class T, int V>
__global__ void __launch_bounds__(ROPE_THREADS)
    rope_kernel(T *out, const T *x, int64_t B, int64_t L, int H, int D, int64_t pos0,
                double log_theta, double sign) {
    __shared__ float cs[ROPE_CHUNK], sn[ROPE_CHUNK];
    const int half = D / 2;
    const int nb = (int)((B - blockIdx.y + gridDim.y - 1) / gridDim.y);
    for (int64_t l = blockIdx.x; l < L; l += gridDim.x) {
        const double p = (double)(pos0 + l);
        for (int i0 = 0; i0 < half; i0 += ROPE_CHUNK) {
            const int n = half - i0 < ROPE_CHUNK ? half - i0 : ROPE_CHUNK;
            __syncthreads(); /* the previous chunk's readers are done */
            for (int i = threadIdx.x; i < n; i += blockDim.x) {
                double inv_freq = exp(-2.0 * (double)(i0 + i) / (double)D * log_theta);
                double sd, cd;
                sincos(p * inv_freq, &sd, &cd);
                cs[i] = (float)cd;
                sn[i] = (float)(sign * sd);
            }
            __syncthreads();
            const int nw = n / V, per_b = H * nw;
            for (int t = threadIdx.x; t < nb * per_b; t += blockDim.x) {
                const int bi = t / per_b, rem = t - bi * per_b;
                const int h = rem / nw, j = rem - h * nw;
                const int64_t b = blockIdx.y + (int64_t)bi * gridDim.y;
                const int64_t base = ((b * L + l) * H + h) * D + i0 + j * V;
                float x0[V], x1[V], y0[V], y1[V];
                vload<V>(x + base, x0);
                vload<V>(x + base + half, x1);
#pragma unroll
                for (int e = 0; e < V; e++) {
                    const float c = cs[j * V + e], s = sn[j * V + e];
                    y0[e] = x0[e] * c - x1[e] * s;
                    y1[e] = x1[e] * c + x0[e] * s;
                }
                vstore<V>(out + base, y0);
                vstore<V>(out + base + half, y1);
            }
        }
    }
}

static lact_status rope_run(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, int64_t pos0,
                            float theta, double sign) {
    if (x->ndim != 3 && x->ndim != 4)
        return lact_fail(LACT_E_ARG, "rope: x must be [B, L, H, D] or [B, L, D]");
    int64_t B = x->shape[0], L = x->shape[1];
    int64_t H = x->ndim == 4 ? x->shape[2] : 1, D = x->shape[x->ndim - 1];
    if (D % 2) return lact_fail(LACT_E_ARG, "rope: head dim %lld is odd", (long long)D);
    if (!B || !L || !H || !D) return LACT_OK;
    if (D > 0x7fffffff) return lact_fail(LACT_E_UNSUPPORTED, "rope: head dim %lld", (long long)D);
    double lt = log((double)theta);
    /* Positions on grid x; the batches split over grid y until there are
     * about ROPE_BLOCKS blocks, and further while a block's count of
     * (batch, head, pair) items would not fit an int. */
    int64_t per_b = H * (D / 2 < ROPE_CHUNK ? D / 2 : ROPE_CHUNK);
    if (per_b > 0x3fffffff)
        return lact_fail(LACT_E_UNSUPPORTED, "rope: %lld heads of %lld", (long long)H,
                         (long long)D);
    int64_t b_max = 0x3fffffff / per_b;
    int64_t gx = L < (1 << 20) ? L : (1 << 20);
    int64_t gy = (ROPE_BLOCKS + gx - 1) / gx;
    if (gy < (B + b_max - 1) / b_max) gy = (B + b_max - 1) / b_max;
    if (gy > B) gy = B;
    if (gy > 65535)
        return lact_fail(LACT_E_UNSUPPORTED, "rope: %lld batches of %lld heads is too many",
                         (long long)B, (long long)H);
    dim3 grid((unsigned)gx, (unsigned)gy);
    cudaStream_t st = lact_cuda_stream(ctx);
    LACT_DISPATCH_FLOAT(x->dtype, "rope", {
        constexpr int W = vec_width<T>::value;
        T *o = (T *)out->data;
        const T *xp = (const T *)x->data;
        if ((D / 2) % W == 0 && lact_aligned16(o, xp))
            rope_kernel<T, W>
                <<<grid, ROPE_THREADS, 0, st>>>(o, xp, B, L, (int)H, (int)D, pos0, lt, sign);
        else
            rope_kernel<T, 1>
                <<<grid, ROPE_THREADS, 0, st>>>(o, xp, B, L, (int)H, (int)D, pos0, lt, sign);
    });
    LACT_CU_LAUNCH("rope");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_rope_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x,
                                              int64_t pos0, float theta) {
    return rope_run(ctx, out, x, pos0, theta, 1.0);
}

extern "C" lact_status lact_cuda_rope_backward(lact_ctx *ctx, lact_tensor *dx,
                                               const lact_tensor *dout, int64_t pos0, float theta) {
    if (!dx) return LACT_OK;
    return rope_run(ctx, dx, dout, pos0, theta, -1.0);
}
