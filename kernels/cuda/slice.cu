/* The slice op's copies on CUDA: one strided copy (cudaMemcpy2DAsync) per
 * call, ordered on the context's stream like the kernels around it. */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/slice_cuda.h"

extern "C" lact_status lact_cuda_copy_2d(lact_ctx *ctx, void *dst, size_t dpitch, const void *src,
                                         size_t spitch, size_t width, size_t height) {
    if (width == 0 || height == 0) return LACT_OK;
    cudaStream_t st = lact_cuda_stream(ctx);
    if (dpitch == width && spitch == width)
        LACT_CU(cudaMemcpyAsync(dst, src, width * height, cudaMemcpyDeviceToDevice, st));
    else
        LACT_CU(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, cudaMemcpyDeviceToDevice,
                                  st));
    return LACT_OK;
}

extern "C" lact_status lact_cuda_zero(lact_ctx *ctx, void *dst, size_t bytes) {
    if (bytes == 0) return LACT_OK;
    LACT_CU(cudaMemsetAsync(dst, 0, bytes, lact_cuda_stream(ctx)));
    return LACT_OK;
}
