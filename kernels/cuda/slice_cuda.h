/* The CUDA side of the slice op (kernels/dispatch_slice.c): strided copies
 * of whole rows of bytes and zero fills, queued on the context's stream. */
#ifndef LACT_CUDA_SLICE_CUDA_H
#define LACT_CUDA_SLICE_CUDA_H

#include <stddef.h>

#include "core/base/context.h"
#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* height rows of width bytes, row i from src + i·spitch to dst + i·dpitch
 * (device memory on both sides). */
lact_status lact_cuda_copy_2d(lact_ctx *ctx, void *dst, size_t dpitch, const void *src,
                              size_t spitch, size_t width, size_t height);
lact_status lact_cuda_zero(lact_ctx *ctx, void *dst, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
