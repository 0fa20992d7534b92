/* Timing device work: CUDA events recorded on the context's stream (the
 * CPU path uses the host clock), and the bare-library references that
 * benchmarks compare against. */
#ifndef LACT_TIMER_H
#define LACT_TIMER_H

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_timer {
    lact_ctx *ctx;
    void *start, *stop; /* cudaEvent_t */
    double t0;
} lact_timer;

lact_status lact_timer_init(lact_timer *t, lact_ctx *ctx);
lact_status lact_timer_start(lact_timer *t);
/* Records the stop, waits for it, and returns the elapsed milliseconds. */
lact_status lact_timer_stop(lact_timer *t, double *ms);
void lact_timer_free(lact_timer *t);

/* One plain cublasGemmEx call (no cuBLASLt, no heuristics of ours):
 * c [M, N] = a [M, K] · b [K, N], all BF16 on CUDA, fp32 compute. The
 * ceiling that `lact bench gemm` reports lact_matmul_forward against. */
lact_status lact_reference_gemm(lact_ctx *ctx, lact_tensor *c, const lact_tensor *a,
                                const lact_tensor *b);
/* Device-to-device copy on the context's stream (asynchronous on CUDA);
 * dst and src of equal byte size on ctx->device. */
lact_status lact_device_copy(lact_ctx *ctx, lact_tensor *dst, const lact_tensor *src);

#ifdef __cplusplus
}
#endif
#endif
