/* The headprep op's main CUDA path (headprep_tiled.cu). Each call returns
 * LACT_OK with *done false, having launched nothing, when the shape is not
 * one it takes (rows whose width is not a whole number of 16-byte words or
 * needs more than 32 of them, unaligned pointers, too many heads); the
 * caller then runs the general kernels of headprep.cu. */
#ifndef LACT_CUDA_HEADPREP_TILED_H
#define LACT_CUDA_HEADPREP_TILED_H

#include <stdbool.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

lact_status lact_cuda_headprep_tiled_forward(lact_ctx *ctx, lact_tensor *qf, lact_tensor *qa,
                                             const lact_tensor *z, const float *scale,
                                             const float *offset, int64_t pos0, float theta,
                                             float eps, bool *done);

/* dscale and doffset are summed in the kernel (per-block partial rows in the
 * context scratch, then a fixed-order final sum); nothing like the general
 * path's dxs is written. */
lact_status lact_cuda_headprep_tiled_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *dscale,
                                              lact_tensor *doffset, const lact_tensor *dqf,
                                              const lact_tensor *dqa, const lact_tensor *z,
                                              const float *scale, const float *offset, int64_t pos0,
                                              float theta, float eps, bool acc, bool *done);

#endif
