/* Random fills from the Philox stream of core/base/philox.h. The uniform
 * fill must give the CPU's bits exactly, so its affine map is spelled with
 * round-to-nearest intrinsics that the compiler may not fuse into an FMA. */
#include "core/base/philox.h"
#include "kernels/cuda/common.cuh"

template <class T>
__global__ void fill_uniform_kernel(T *x, int64_t n, uint64_t seed, uint64_t stream, float lo,
                                    float hi) {
    float span = __fsub_rn(hi, lo);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float u = lact_philox_uniform(seed, stream, (uint64_t)i);
        st(x, i, __fadd_rn(lo, __fmul_rn(span, u)));
    }
}

template <class T>
__global__ void fill_normal_kernel(T *x, int64_t n, uint64_t seed, uint64_t stream, float mean,
                                   float std) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float z = lact_philox_normal(seed, stream, (uint64_t)i);
        st(x, i, __fadd_rn(mean, __fmul_rn(std, z)));
    }
}

extern "C" lact_status lact_cuda_fill_uniform(lact_ctx *ctx, lact_tensor *x, uint64_t seed,
                                              uint64_t stream, float lo, float hi) {
    int64_t n = lact_tensor_numel(x);
    if (!n) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "fill_uniform", {
        fill_uniform_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)x->data, n, seed, stream, lo, hi);
    });
    LACT_CU_LAUNCH("fill_uniform");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_fill_normal(lact_ctx *ctx, lact_tensor *x, uint64_t seed,
                                             uint64_t stream, float mean, float std) {
    int64_t n = lact_tensor_numel(x);
    if (!n) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "fill_normal", {
        fill_normal_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)x->data, n, seed, stream, mean, std);
    });
    LACT_CU_LAUNCH("fill_normal");
    return LACT_OK;
}
