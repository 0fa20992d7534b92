#include "kernels/cuda/common.cuh"

#include <mutex>

#include "core/base/device.h"

static const char *base_name(const char *file) {
    const char *p = file;
    for (const char *q = file; *q; q++)
        if (*q == '/') p = q + 1;
    return p;
}

lact_status lact_cuda_status(cudaError_t e, const char *stmt, const char *file, int line) {
    if (e == cudaSuccess) return LACT_OK;
    cudaGetLastError(); /* clear non-sticky errors so the next call starts clean */
    return lact_fail(LACT_E_CUDA, "%s failed at %s:%d: %s", stmt, base_name(file), line,
                     cudaGetErrorString(e));
}

lact_status lact_cuda_status(cublasStatus_t e, const char *stmt, const char *file, int line) {
    if (e == CUBLAS_STATUS_SUCCESS) return LACT_OK;
    return lact_fail(LACT_E_CUDA, "%s failed at %s:%d: %s", stmt, base_name(file), line,
                     cublasGetStatusString(e));
}

/* A few streams at a time is the realistic case (one context per thread). */
#define BUF_STREAMS 8

typedef struct cached_buffer {
    void *stream;
    void *ptr[LACT_BUF_COUNT];
    size_t bytes[LACT_BUF_COUNT];
} cached_buffer;

static cached_buffer buffers[BUF_STREAMS];
static std::mutex buffers_lock;

lact_status lact_cuda_buffer(lact_ctx *ctx, int slot, size_t bytes, void **out) {
    std::lock_guard<std::mutex> guard(buffers_lock);
    cached_buffer *b = NULL;
    for (int i = 0; i < BUF_STREAMS && !b; i++)
        if (buffers[i].stream == ctx->stream && (buffers[i].stream || ctx->stream == NULL))
            b = &buffers[i];
    for (int i = 0; i < BUF_STREAMS && !b; i++) {
        bool empty = true;
        for (int s = 0; s < LACT_BUF_COUNT; s++) empty = empty && !buffers[i].ptr[s];
        if (empty) {
            b = &buffers[i];
            b->stream = ctx->stream;
        }
    }
    if (!b) {
        /* Streams of freed contexts leave entries behind: recycle one, after
         * the device is idle so no stream still reads it. */
        static int next_victim;
        b = &buffers[next_victim];
        next_victim = (next_victim + 1) % BUF_STREAMS;
        LACT_CU(cudaDeviceSynchronize());
        for (int s = 0; s < LACT_BUF_COUNT; s++) {
            lact_mem_free(LACT_CUDA, b->ptr[s]);
            b->ptr[s] = NULL;
            b->bytes[s] = 0;
        }
        b->stream = ctx->stream;
    }
    if (b->bytes[slot] < bytes) {
        /* Work still queued may read the old buffer. */
        LACT_CU(cudaStreamSynchronize(lact_cuda_stream(ctx)));
        lact_mem_free(LACT_CUDA, b->ptr[slot]);
        b->ptr[slot] = NULL;
        b->bytes[slot] = 0;
        LACT_TRY(lact_mem_alloc(LACT_CUDA, bytes, &b->ptr[slot]));
        b->bytes[slot] = bytes;
    }
    *out = b->ptr[slot];
    return LACT_OK;
}
