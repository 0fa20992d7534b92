/* Row sums and the global 2-norm. The norm is deterministic: per-block
 * partial sums of squares in the scratch, then one block adds them in a
 * fixed order. */
#include "kernels/cuda/common.cuh"

template <class T>
__global__ void row_sum_kernel(T *out, const T *x, int64_t C) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += ld(x + r * C, c);
    s = block_sum(s, sh);
    if (threadIdx.x == 0) st(out, r, s);
}

template <class T>
__global__ void row_sum_backward_kernel(T *dx, const T *dout, int64_t R, int64_t C) {
    int64_t n = R * C;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        st(dx, i, ld(dout, i / C));
}

extern "C" lact_status lact_cuda_sum_forward(lact_ctx *ctx, lact_tensor *out,
                                             const lact_tensor *x) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R) return LACT_OK;
    if (!C) {
        LACT_CU(cudaMemsetAsync(out->data, 0, lact_tensor_nbytes(out), lact_cuda_stream(ctx)));
        return LACT_OK;
    }
    LACT_DISPATCH_FLOAT(x->dtype, "sum", {
        row_sum_kernel<T><<<(unsigned)R, lact_row_threads(C), 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (const T *)x->data, C);
    });
    LACT_CU_LAUNCH("sum");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_sum_backward(lact_ctx *ctx, lact_tensor *dx,
                                              const lact_tensor *dout) {
    if (!dx) return LACT_OK;
    int64_t R = lact_tensor_rows(dx), C = lact_tensor_cols(dx);
    if (!R || !C) return LACT_OK;
    LACT_DISPATCH_FLOAT(dx->dtype, "sum backward", {
        row_sum_backward_kernel<T><<<lact_grid_1d(R * C, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)dx->data, (const T *)dout->data, R, C);
    });
    LACT_CU_LAUNCH("sum_backward");
    return LACT_OK;
}

#define NORM_BLOCKS 1024
#define NORM_THREADS 256

template <class T>
__global__ void sumsq_partial_kernel(float *partial, const T *x, int64_t n) {
    __shared__ float sh[32];
    float s = 0.0f;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = ld(x, i);
        s += v * v;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sqrt_sum_kernel(float *out, const float *partial, int n) {
    __shared__ float sh[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) out[0] = sqrtf(s);
}

/* The partials live in a cached buffer, not the scratch: callers such as
 * Newton–Schulz use the norm while their own data may sit in the scratch. */
lact_status lact_cuda_norm_into(lact_ctx *ctx, float *out, const void *x, lact_dtype dt,
                                int64_t n) {
    float *partial = NULL;
    LACT_TRY(lact_cuda_buffer(ctx, LACT_BUF_NORM, NORM_BLOCKS * sizeof(float),
                              (void **)&partial));
    int blocks = (int)lact_grid_1d(n, NORM_THREADS);
    if (blocks > NORM_BLOCKS) blocks = NORM_BLOCKS;
    cudaStream_t st = lact_cuda_stream(ctx);
    LACT_DISPATCH_FLOAT(dt, "norm", {
        sumsq_partial_kernel<T><<<blocks, NORM_THREADS, 0, st>>>(partial, (const T *)x, n);
    });
    LACT_CU_LAUNCH("sumsq_partial");
    sqrt_sum_kernel<<<1, 1024, 0, st>>>(out, partial, blocks);
    LACT_CU_LAUNCH("sqrt_sum");
    return LACT_OK;
}

template <class T>
__global__ void norm_backward_kernel(T *dx, const float *dout, const T *x, const float *nrm,
                                     int64_t n) {
    float k = nrm[0] > 0.0f ? dout[0] / nrm[0] : 0.0f;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        st(dx, i, k * ld(x, i));
}

extern "C" lact_status lact_cuda_norm_forward(lact_ctx *ctx, lact_tensor *out,
                                              const lact_tensor *x) {
    return lact_cuda_norm_into(ctx, (float *)out->data, x->data, x->dtype, lact_tensor_numel(x));
}

extern "C" lact_status lact_cuda_norm_backward(lact_ctx *ctx, lact_tensor *dx,
                                               const lact_tensor *dout, const lact_tensor *x,
                                               const lact_tensor *out) {
    int64_t n = lact_tensor_numel(x);
    if (!dx || !n) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "norm backward", {
        norm_backward_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)dx->data, (const float *)dout->data, (const T *)x->data,
            (const float *)out->data, n);
    });
    LACT_CU_LAUNCH("norm_backward");
    return LACT_OK;
}
