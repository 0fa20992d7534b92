/* Rotary embedding, rotate-half convention. One thread per rotated pair; the
 * angle is formed in double precision so that large positions keep their
 * phase (p · θ^(−2i/D) loses it in fp32 beyond a few thousand tokens). */
#include "kernels/cuda/common.cuh"

/* x viewed as [B·L, H, D]; sign = +1 forward, −1 for the backward. */
template <class T>
__global__ void rope_kernel(T *out, const T *x, int64_t rows, int64_t L, int64_t H, int64_t D,
                            int64_t pos0, double log_theta, double sign) {
    int64_t half = D / 2, n = rows * H * half;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = t % half, rh = t / half; /* rh = row * H + head */
        int64_t l = (rh / H) % L;
        double inv_freq = exp(-2.0 * (double)i / (double)D * log_theta);
        double ang = (double)(pos0 + l) * inv_freq;
        double sd, cd;
        sincos(ang, &sd, &cd);
        float c = (float)cd, s = (float)(sign * sd);
        int64_t base = rh * D;
        float x0 = ld(x, base + i), x1 = ld(x, base + i + half);
        st(out, base + i, x0 * c - x1 * s);
        st(out, base + i + half, x1 * c + x0 * s);
    }
}

static lact_status rope_run(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, int64_t pos0,
                            float theta, double sign) {
    if (x->ndim != 3 && x->ndim != 4)
        return lact_fail(LACT_E_ARG, "rope: x must be [B, L, H, D] or [B, L, D]");
    int64_t B = x->shape[0], L = x->shape[1];
    int64_t H = x->ndim == 4 ? x->shape[2] : 1, D = x->shape[x->ndim - 1];
    if (D % 2) return lact_fail(LACT_E_ARG, "rope: head dim %lld is odd", (long long)D);
    int64_t n = B * L * H * (D / 2);
    if (!n) return LACT_OK;
    double lt = log((double)theta);
    LACT_DISPATCH_FLOAT(x->dtype, "rope", {
        rope_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (const T *)x->data, B * L, L, H, D, pos0, lt, sign);
    });
    LACT_CU_LAUNCH("rope");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_rope_forward(lact_ctx *ctx, lact_tensor *out,
                                              const lact_tensor *x, int64_t pos0, float theta) {
    return rope_run(ctx, out, x, pos0, theta, 1.0);
}

extern "C" lact_status lact_cuda_rope_backward(lact_ctx *ctx, lact_tensor *dx,
                                               const lact_tensor *dout, int64_t pos0,
                                               float theta) {
    if (!dx) return LACT_OK;
    return rope_run(ctx, dx, dout, pos0, theta, -1.0);
}
