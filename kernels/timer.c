/* Timers and the bare-library references that benchmarks compare against:
 * CUDA events on the context's stream, the host clock on the CPU. */
#include "kernels/timer.h"

#include <cblas.h>
#include <string.h>

#include "core/base/log.h"

#if LACT_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#define TIMER_CUDA(call)                                                                  \
    do {                                                                                  \
        cudaError_t timer_e_ = (call);                                                    \
        if (timer_e_ != cudaSuccess)                                                      \
            return lact_fail(LACT_E_CUDA, "%s failed at %s:%d: %s", #call, __FILE__,      \
                             __LINE__, cudaGetErrorString(timer_e_));                     \
    } while (0)

#define TIMER_CUBLAS(call)                                                                \
    do {                                                                                  \
        cublasStatus_t timer_b_ = (call);                                                 \
        if (timer_b_ != CUBLAS_STATUS_SUCCESS)                                            \
            return lact_fail(LACT_E_CUDA, "%s failed at %s:%d: %s", #call, __FILE__,      \
                             __LINE__, cublasGetStatusString(timer_b_));                  \
    } while (0)
#endif

static bool on_cuda(const lact_ctx *ctx) { return ctx && ctx->device == LACT_CUDA; }

lact_status lact_timer_init(lact_timer *t, lact_ctx *ctx) {
    memset(t, 0, sizeof *t);
    if (!ctx) return lact_fail(LACT_E_ARG, "timer: no context");
    t->ctx = ctx;
    if (!on_cuda(ctx)) return LACT_OK;
#if LACT_WITH_CUDA
    cudaEvent_t a = NULL, b = NULL;
    TIMER_CUDA(cudaEventCreate(&a));
    t->start = a;
    TIMER_CUDA(cudaEventCreate(&b));
    t->stop = b;
    return LACT_OK;
#else
    return lact_fail(LACT_E_UNSUPPORTED, "timer: this build has no CUDA");
#endif
}

lact_status lact_timer_start(lact_timer *t) {
    if (!on_cuda(t->ctx)) {
        t->t0 = lact_now();
        return LACT_OK;
    }
#if LACT_WITH_CUDA
    TIMER_CUDA(cudaEventRecord((cudaEvent_t)t->start, (cudaStream_t)t->ctx->stream));
#endif
    return LACT_OK;
}

lact_status lact_timer_stop(lact_timer *t, double *ms) {
    *ms = 0.0;
    if (!on_cuda(t->ctx)) {
        *ms = (lact_now() - t->t0) * 1e3;
        return LACT_OK;
    }
#if LACT_WITH_CUDA
    float e = 0.0f;
    TIMER_CUDA(cudaEventRecord((cudaEvent_t)t->stop, (cudaStream_t)t->ctx->stream));
    TIMER_CUDA(cudaEventSynchronize((cudaEvent_t)t->stop));
    TIMER_CUDA(cudaEventElapsedTime(&e, (cudaEvent_t)t->start, (cudaEvent_t)t->stop));
    *ms = e;
#endif
    return LACT_OK;
}

void lact_timer_free(lact_timer *t) {
#if LACT_WITH_CUDA
    if (t->start) cudaEventDestroy((cudaEvent_t)t->start);
    if (t->stop) cudaEventDestroy((cudaEvent_t)t->stop);
#endif
    memset(t, 0, sizeof *t);
}

lact_status lact_reference_gemm(lact_ctx *ctx, lact_tensor *c, const lact_tensor *a,
                                const lact_tensor *b) {
    if (a->ndim != 2 || b->ndim != 2 || c->ndim != 2 || a->shape[1] != b->shape[0] ||
        c->shape[0] != a->shape[0] || c->shape[1] != b->shape[1])
        return lact_fail(LACT_E_ARG, "reference gemm: expected c [M, N] = a [M, K] · b [K, N]");
    int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (a->device != ctx->device || b->device != ctx->device || c->device != ctx->device)
        return lact_fail(LACT_E_ARG, "reference gemm: tensors must live on the context's device");
    if (!on_cuda(ctx)) {
        if (a->dtype != LACT_F32 || b->dtype != LACT_F32 || c->dtype != LACT_F32)
            return lact_fail(LACT_E_ARG, "reference gemm: the CPU reference takes F32 tensors");
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f,
                    a->data, (int)K, b->data, (int)N, 0.0f, c->data, (int)N);
        return LACT_OK;
    }
#if LACT_WITH_CUDA
    if (a->dtype != LACT_BF16 || b->dtype != LACT_BF16 || c->dtype != LACT_BF16)
        return lact_fail(LACT_E_ARG, "reference gemm: the CUDA reference takes BF16 tensors");
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
        return lact_fail(LACT_E_ARG, "reference gemm: dimension beyond 2^31");
    float alpha = 1.0f, beta = 0.0f;
    /* Row-major c = a b is column-major cᵀ = bᵀ aᵀ: swap the operands. */
    TIMER_CUBLAS(cublasGemmEx((cublasHandle_t)ctx->cublas, CUBLAS_OP_N, CUBLAS_OP_N, (int)N,
                              (int)M, (int)K, &alpha, b->data, CUDA_R_16BF, (int)N, a->data,
                              CUDA_R_16BF, (int)K, &beta, c->data, CUDA_R_16BF, (int)N,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return LACT_OK;
#else
    return lact_fail(LACT_E_UNSUPPORTED, "reference gemm: this build has no CUDA");
#endif
}

lact_status lact_device_copy(lact_ctx *ctx, lact_tensor *dst, const lact_tensor *src) {
    size_t n = lact_tensor_nbytes(src);
    if (lact_tensor_nbytes(dst) != n)
        return lact_fail(LACT_E_ARG, "device copy: %zu bytes into a %zu-byte tensor", n,
                         lact_tensor_nbytes(dst));
    if (dst->device != ctx->device || src->device != ctx->device)
        return lact_fail(LACT_E_ARG, "device copy: tensors must live on the context's device");
    if (!n) return LACT_OK;
    if (!on_cuda(ctx)) {
        memmove(dst->data, src->data, n);
        return LACT_OK;
    }
#if LACT_WITH_CUDA
    TIMER_CUDA(cudaMemcpyAsync(dst->data, src->data, n, cudaMemcpyDeviceToDevice,
                               (cudaStream_t)ctx->stream));
    return LACT_OK;
#else
    return lact_fail(LACT_E_UNSUPPORTED, "device copy: this build has no CUDA");
#endif
}
