/* The CUDA side of the headprep op (kernels/headprep.c). */
#ifndef LACT_CUDA_HEADPREP_CUDA_H
#define LACT_CUDA_HEADPREP_CUDA_H

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

lact_status lact_cuda_headprep_forward(lact_ctx *ctx, lact_tensor *qf, lact_tensor *qa,
                                       const lact_tensor *z, const lact_tensor *scale,
                                       const lact_tensor *offset, int64_t pos0, float theta,
                                       float eps);
lact_status lact_cuda_headprep_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *dscale,
                                        lact_tensor *doffset, lact_tensor *dxs,
                                        const lact_tensor *dqf, const lact_tensor *dqa,
                                        const lact_tensor *z, const lact_tensor *scale,
                                        const lact_tensor *offset, int64_t pos0, float theta,
                                        float eps, bool acc);

#ifdef __cplusplus
}
#endif
#endif
