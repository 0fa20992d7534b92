/* The execution context every kernel receives: which device, and for CUDA the
 * stream, cuBLAS/cuBLASLt handles and their workspace. Handles are opaque
 * pointers so that host code never includes CUDA headers. */
#ifndef LACT_CONTEXT_H
#define LACT_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_ctx {
    lact_device device;
    int n_threads;          /* CPU threads (OpenMP); 0 = all cores */
    void *stream;           /* cudaStream_t */
    void *cublas;           /* cublasHandle_t */
    void *cublaslt;         /* cublasLtHandle_t */
    void *workspace;        /* device buffer for cuBLASLt */
    size_t workspace_bytes;
    void *scratch;          /* device scratch for kernels (reductions) */
    size_t scratch_bytes;
} lact_ctx;

/* Makes a context for dev. CUDA: device 0, a new stream, cuBLAS and cuBLASLt
 * handles bound to it and a 32 MiB workspace. */
lact_status lact_ctx_init(lact_ctx *ctx, lact_device dev, int n_threads);
void lact_ctx_free(lact_ctx *ctx);
/* Waits for all work queued on the context (no-op on the CPU). */
lact_status lact_ctx_sync(lact_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
