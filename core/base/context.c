#include "context.h"

#include <string.h>

#include "device.h"
#include "threads.h"

#if LACT_WITH_CUDA
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#define CTX_WORKSPACE_BYTES ((size_t)32 << 20)
#define CTX_SCRATCH_BYTES ((size_t)16 << 20)

#define CUDA_TRY(call)                                                                             \
    do {                                                                                           \
        cudaError_t lact_cu_e_ = (call);                                                           \
        if (lact_cu_e_ != cudaSuccess)                                                             \
            return lact_fail(LACT_E_CUDA, "%s failed: %s", #call, cudaGetErrorString(lact_cu_e_)); \
    } while (0)

#define CUBLAS_TRY(call)                                                                           \
    do {                                                                                           \
        cublasStatus_t lact_cb_e_ = (call);                                                        \
        if (lact_cb_e_ != CUBLAS_STATUS_SUCCESS)                                                   \
            return lact_fail(LACT_E_CUDA, "%s failed: %s", #call,                                  \
                             cublasGetStatusString(lact_cb_e_));                                   \
    } while (0)

/* Fills ctx step by step; on failure the caller frees what was made. */
static lact_status ctx_init_cuda(lact_ctx *ctx) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        if (e != cudaSuccess)
            return lact_fail(LACT_E_UNSUPPORTED, "--device cuda: no usable CUDA device (%s)",
                             cudaGetErrorString(e));
        return lact_fail(LACT_E_UNSUPPORTED, "--device cuda: no CUDA device is visible");
    }
    CUDA_TRY(cudaSetDevice(0));
    cudaStream_t stream = NULL;
    /* A blocking stream on purpose: the synchronous copies and memsets of
     * device.c run on the legacy default stream, which then orders itself
     * against this one (a non-blocking stream would let a zero-fill land
     * after a kernel that already wrote the buffer, or a copy read a result
     * before its kernel ran). */
    CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamDefault));
    ctx->stream = stream;

    cublasHandle_t h = NULL;
    CUBLAS_TRY(cublasCreate(&h));
    ctx->cublas = h;
    CUBLAS_TRY(cublasSetStream(h, stream));
    CUBLAS_TRY(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));

    cublasLtHandle_t lt = NULL;
    CUBLAS_TRY(cublasLtCreate(&lt));
    ctx->cublaslt = lt;

    LACT_TRY(lact_mem_alloc(LACT_CUDA, CTX_WORKSPACE_BYTES, &ctx->workspace));
    ctx->workspace_bytes = CTX_WORKSPACE_BYTES;
    LACT_TRY(lact_mem_alloc(LACT_CUDA, CTX_SCRATCH_BYTES, &ctx->scratch));
    ctx->scratch_bytes = CTX_SCRATCH_BYTES;
    return LACT_OK;
}
#endif

lact_status lact_ctx_init(lact_ctx *ctx, lact_device dev, int n_threads) {
    memset(ctx, 0, sizeof *ctx);
    ctx->device = dev;
    lact_threads_set(n_threads);
    ctx->n_threads = lact_threads_get();
    if (dev == LACT_CPU) return LACT_OK;
#if LACT_WITH_CUDA
    lact_status s = ctx_init_cuda(ctx);
    if (s != LACT_OK) {
        lact_ctx_free(ctx);
        ctx->device = dev;
    }
    return s;
#else
    return lact_fail(LACT_E_UNSUPPORTED, "this build has no CUDA (configure with -DLACT_CUDA=ON)");
#endif
}

void lact_ctx_free(lact_ctx *ctx) {
    if (!ctx) return;
#if LACT_WITH_CUDA
    if (ctx->stream) cudaStreamSynchronize((cudaStream_t)ctx->stream);
    lact_mem_free(LACT_CUDA, ctx->scratch);
    lact_mem_free(LACT_CUDA, ctx->workspace);
    if (ctx->cublaslt) cublasLtDestroy((cublasLtHandle_t)ctx->cublaslt);
    if (ctx->cublas) cublasDestroy((cublasHandle_t)ctx->cublas);
    if (ctx->stream) cudaStreamDestroy((cudaStream_t)ctx->stream);
#endif
    memset(ctx, 0, sizeof *ctx);
}

lact_status lact_ctx_sync(lact_ctx *ctx) {
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA && ctx->stream)
        CUDA_TRY(cudaStreamSynchronize((cudaStream_t)ctx->stream));
#else
    (void)ctx;
#endif
    return LACT_OK;
}
