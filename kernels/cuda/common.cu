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
    /* lact_cuda_side: the second stream, its cuBLASLt workspace, events */
    cudaStream_t side;
    void *side_ws;
    cudaEvent_t ev[LACT_SIDE_EVENTS];
} cached_buffer;

static cached_buffer buffers[BUF_STREAMS];
static std::mutex buffers_lock;

static void side_free(cached_buffer *b) {
    for (int i = 0; i < LACT_SIDE_EVENTS; i++)
        if (b->ev[i]) cudaEventDestroy(b->ev[i]);
    if (b->side) cudaStreamDestroy(b->side);
    lact_mem_free(LACT_CUDA, b->side_ws);
    memset(b->ev, 0, sizeof b->ev);
    b->side = NULL;
    b->side_ws = NULL;
}

/* The entry of ctx's stream (buffers_lock held). */
static lact_status entry_for(lact_ctx *ctx, cached_buffer **out) {
    cached_buffer *b = NULL;
    for (int i = 0; i < BUF_STREAMS && !b; i++)
        if (buffers[i].stream == ctx->stream && (buffers[i].stream || ctx->stream == NULL))
            b = &buffers[i];
    for (int i = 0; i < BUF_STREAMS && !b; i++) {
        bool empty = true;
        for (int s = 0; s < LACT_BUF_COUNT; s++) empty = empty && !buffers[i].ptr[s];
        if (empty && !buffers[i].side) {
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
        side_free(b);
        b->stream = ctx->stream;
    }
    *out = b;
    return LACT_OK;
}

lact_status lact_cuda_buffer(lact_ctx *ctx, int slot, size_t bytes, void **out) {
    std::lock_guard<std::mutex> guard(buffers_lock);
    cached_buffer *b = NULL;
    LACT_TRY(entry_for(ctx, &b));
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

lact_status lact_cuda_side(lact_ctx *ctx, lact_ctx *side, cudaEvent_t **events) {
    std::lock_guard<std::mutex> guard(buffers_lock);
    cached_buffer *b = NULL;
    LACT_TRY(entry_for(ctx, &b));
    if (!b->side) {
        lact_status s = lact_mem_alloc(LACT_CUDA, ctx->workspace_bytes, &b->side_ws);
        cudaError_t e = cudaSuccess;
        if (s == LACT_OK) e = cudaStreamCreateWithFlags(&b->side, cudaStreamDefault);
        for (int i = 0; i < LACT_SIDE_EVENTS && s == LACT_OK && e == cudaSuccess; i++)
            e = cudaEventCreateWithFlags(&b->ev[i], cudaEventDisableTiming);
        if (s == LACT_OK && e != cudaSuccess)
            s = lact_cuda_status(e, "the side stream", __FILE__, __LINE__);
        if (s != LACT_OK) {
            side_free(b);
            return s;
        }
    }
    *side = *ctx;
    side->stream = b->side;
    side->workspace = b->side_ws;
    *events = b->ev;
    return LACT_OK;
}
