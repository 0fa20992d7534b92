/* Row normalisations: rmsnorm, layernorm and l2norm, one block per row with
 * fp32 statistics. Weight and bias gradients are deterministic column
 * reductions (per-slice partials in the scratch, then a fixed-order sum). */
#include "kernels/cuda/common.cuh"

/* ---- rmsnorm ------------------------------------------------------------------ */

template <class T>
__global__ void rmsnorm_kernel(T *out, float *rstd, const T *x, const float *w, int64_t C,
                               float eps) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C;
    T *yr = out + r * C;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float v = ld(xr, c);
        ss += v * v;
    }
    ss = block_sum(ss, sh);
    float rs = rsqrtf(ss / (float)C + eps);
    if (threadIdx.x == 0) rstd[r] = rs;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float v = ld(xr, c) * rs;
        st(yr, c, w ? v * w[c] : v);
    }
}

/* dx = rstd (g − x rstd² mean(g x)), g = dout ⊙ w. */
template <class T>
__global__ void rmsnorm_backward_kernel(T *dx, const T *dout, const T *x, const float *w,
                                        const float *rstd, int64_t C) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C, *dr = dout + r * C;
    float dot = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float g = ld(dr, c) * (w ? w[c] : 1.0f);
        dot += g * ld(xr, c);
    }
    dot = block_sum(dot, sh);
    float rs = rstd[r], k = rs * rs * dot / (float)C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float g = ld(dr, c) * (w ? w[c] : 1.0f);
        st(dx + r * C, c, rs * (g - ld(xr, c) * k));
    }
}

template <class T>
struct rms_dw_at {
    const T *dout, *x;
    const float *rstd;
    int64_t C;
    __device__ float operator()(int64_t r, int64_t c) const {
        return ld(dout, r * C + c) * ld(x, r * C + c) * rstd[r];
    }
};

extern "C" lact_status lact_cuda_rmsnorm_forward(lact_ctx *ctx, lact_tensor *out,
                                                 lact_tensor *rstd, const lact_tensor *x,
                                                 const lact_tensor *w, float eps) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C) return LACT_OK;
    const float *wp = w && w->data ? (const float *)w->data : NULL;
    LACT_DISPATCH_FLOAT(x->dtype, "rmsnorm", {
        rmsnorm_kernel<T><<<(unsigned)R, lact_row_threads(C), 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (float *)rstd->data, (const T *)x->data, wp, C, eps);
    });
    LACT_CU_LAUNCH("rmsnorm");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_rmsnorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                                  const lact_tensor *dout, const lact_tensor *x,
                                                  const lact_tensor *w, const lact_tensor *rstd) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C) return LACT_OK;
    const float *wp = w && w->data ? (const float *)w->data : NULL;
    LACT_DISPATCH_FLOAT(x->dtype, "rmsnorm backward", {
        if (dx) {
            rmsnorm_backward_kernel<T>
                <<<(unsigned)R, lact_row_threads(C), 0, lact_cuda_stream(ctx)>>>(
                    (T *)dx->data, (const T *)dout->data, (const T *)x->data, wp,
                    (const float *)rstd->data, C);
            LACT_CU_LAUNCH("rmsnorm_backward");
        }
        if (dw) {
            rms_dw_at<T> f = {(const T *)dout->data, (const T *)x->data,
                              (const float *)rstd->data, C};
            LACT_TRY(lact_col_reduce(ctx, f, R, C, (float *)dw->data));
        }
    });
    return LACT_OK;
}

/* ---- layernorm ----------------------------------------------------------------- */

template <class T>
__global__ void layernorm_kernel(T *out, float *mean, float *rstd, const T *x, const float *w,
                                 const float *b, int64_t C, float eps) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C;
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += ld(xr, c);
    float mu = block_sum(s, sh) / (float)C;
    float v = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float d = ld(xr, c) - mu;
        v += d * d;
    }
    float rs = rsqrtf(block_sum(v, sh) / (float)C + eps);
    if (threadIdx.x == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float y = (ld(xr, c) - mu) * rs;
        if (w) y *= w[c];
        if (b) y += b[c];
        st(out + r * C, c, y);
    }
}

/* dx = rstd (g − mean(g) − x̂ mean(g x̂)), g = dout ⊙ w, x̂ = (x − mean) rstd. */
template <class T>
__global__ void layernorm_backward_kernel(T *dx, const T *dout, const T *x, const float *w,
                                          const float *mean, const float *rstd, int64_t C) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C, *dr = dout + r * C;
    float mu = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float g = ld(dr, c) * (w ? w[c] : 1.0f);
        sg += g;
        sgx += g * (ld(xr, c) - mu) * rs;
    }
    float mg = block_sum(sg, sh) / (float)C;
    float mgx = block_sum(sgx, sh) / (float)C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float g = ld(dr, c) * (w ? w[c] : 1.0f);
        float xh = (ld(xr, c) - mu) * rs;
        st(dx + r * C, c, rs * (g - mg - xh * mgx));
    }
}

template <class T>
struct ln_dw_at {
    const T *dout, *x;
    const float *mean, *rstd;
    int64_t C;
    __device__ float operator()(int64_t r, int64_t c) const {
        int64_t i = r * C + c;
        return ld(dout, i) * (ld(x, i) - mean[r]) * rstd[r];
    }
};

template <class T>
struct ln_db_at {
    const T *dout;
    int64_t C;
    __device__ float operator()(int64_t r, int64_t c) const { return ld(dout, r * C + c); }
};

extern "C" lact_status lact_cuda_layernorm_forward(lact_ctx *ctx, lact_tensor *out,
                                                   lact_tensor *mean, lact_tensor *rstd,
                                                   const lact_tensor *x, const lact_tensor *w,
                                                   const lact_tensor *b, float eps) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C) return LACT_OK;
    const float *wp = w && w->data ? (const float *)w->data : NULL;
    const float *bp = b && b->data ? (const float *)b->data : NULL;
    LACT_DISPATCH_FLOAT(x->dtype, "layernorm", {
        layernorm_kernel<T><<<(unsigned)R, lact_row_threads(C), 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (float *)mean->data, (float *)rstd->data, (const T *)x->data, wp, bp,
            C, eps);
    });
    LACT_CU_LAUNCH("layernorm");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_layernorm_backward(lact_ctx *ctx, lact_tensor *dx,
                                                    lact_tensor *dw, lact_tensor *db,
                                                    const lact_tensor *dout, const lact_tensor *x,
                                                    const lact_tensor *w, const lact_tensor *mean,
                                                    const lact_tensor *rstd) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C) return LACT_OK;
    const float *wp = w && w->data ? (const float *)w->data : NULL;
    const float *mp = (const float *)mean->data, *rp = (const float *)rstd->data;
    LACT_DISPATCH_FLOAT(x->dtype, "layernorm backward", {
        if (dx) {
            layernorm_backward_kernel<T>
                <<<(unsigned)R, lact_row_threads(C), 0, lact_cuda_stream(ctx)>>>(
                    (T *)dx->data, (const T *)dout->data, (const T *)x->data, wp, mp, rp, C);
            LACT_CU_LAUNCH("layernorm_backward");
        }
        if (dw) {
            ln_dw_at<T> f = {(const T *)dout->data, (const T *)x->data, mp, rp, C};
            LACT_TRY(lact_col_reduce(ctx, f, R, C, (float *)dw->data));
        }
        if (db) {
            ln_db_at<T> f = {(const T *)dout->data, C};
            LACT_TRY(lact_col_reduce(ctx, f, R, C, (float *)db->data));
        }
    });
    return LACT_OK;
}

/* ---- l2norm -------------------------------------------------------------------- */

template <class T>
__global__ void l2norm_kernel(T *out, const T *x, int64_t C, float eps) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float v = ld(xr, c);
        ss += v * v;
    }
    float inv = 1.0f / (sqrtf(block_sum(ss, sh)) + eps);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) st(out + r * C, c, ld(xr, c) * inv);
}

/* y = x / (n + eps), n = ‖x‖: dx = dout / (n + eps) − x (x·dout) / ((n + eps)² n). */
template <class T>
__global__ void l2norm_backward_kernel(T *dx, const T *dout, const T *x, int64_t C, float eps) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C, *dr = dout + r * C;
    float ss = 0.0f, dot = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float v = ld(xr, c);
        ss += v * v;
        dot += v * ld(dr, c);
    }
    float n = sqrtf(block_sum(ss, sh));
    dot = block_sum(dot, sh);
    float d = n + eps;
    float k = n > 0.0f ? dot / (d * d * n) : 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        st(dx + r * C, c, ld(dr, c) / d - ld(xr, c) * k);
}

extern "C" lact_status lact_cuda_l2norm_forward(lact_ctx *ctx, lact_tensor *out,
                                                const lact_tensor *x, float eps) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "l2norm", {
        l2norm_kernel<T><<<(unsigned)R, lact_row_threads(C), 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (const T *)x->data, C, eps);
    });
    LACT_CU_LAUNCH("l2norm");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_l2norm_backward(lact_ctx *ctx, lact_tensor *dx,
                                                 const lact_tensor *dout, const lact_tensor *x,
                                                 float eps) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C || !dx) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "l2norm backward", {
        l2norm_backward_kernel<T><<<(unsigned)R, lact_row_threads(C), 0, lact_cuda_stream(ctx)>>>(
            (T *)dx->data, (const T *)dout->data, (const T *)x->data, C, eps);
    });
    LACT_CU_LAUNCH("l2norm_backward");
    return LACT_OK;
}
