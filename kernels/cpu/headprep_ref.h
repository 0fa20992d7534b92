/* The CPU side of the headprep op (kernels/headprep.c). */
#ifndef LACT_CPU_HEADPREP_REF_H
#define LACT_CPU_HEADPREP_REF_H

#include <stdbool.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

lact_status lact_cpu_headprep_forward(lact_ctx *ctx, lact_tensor *qf, lact_tensor *qa,
                                      const lact_tensor *z, const lact_tensor *scale,
                                      const lact_tensor *offset, int64_t pos0, float theta,
                                      float eps);
lact_status lact_cpu_headprep_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *dscale,
                                       lact_tensor *doffset, lact_tensor *dxs,
                                       const lact_tensor *dqf, const lact_tensor *dqa,
                                       const lact_tensor *z, const lact_tensor *scale,
                                       const lact_tensor *offset, int64_t pos0, float theta,
                                       float eps, bool acc);

#endif
