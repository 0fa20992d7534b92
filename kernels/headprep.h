/* The LaCT layer's per-head input preparation as one op: what q, k (and v)
 * go through between their projection and the ttt op / the window
 * attention, fused so that the [B, L, D] activations are read once and
 * written once in the heads' layout.
 *
 * Shapes (activations share one dtype: F32 on the CPU, F32 or BF16 on CUDA):
 *   z              [B, L, H, d]   the projection's output (before SiLU)
 *   scale, offset  [H · d] F32    per channel
 *   qf, qa         [B, H, L, d]   the two outputs, each optional
 *
 * With s = silu(z), per row (b, l, h) of d elements:
 *   qf = rope(l2norm(s ⊙ scale + offset))     l2norm: x / (‖x‖₂ + eps)
 *   qa = rope(s)
 * written transposed to [B, H, L, d]. rope is the rotate-half rotation of
 * lact_rope_forward with token l at position pos0 + l; theta = 0 means no
 * rotation. v is qa with theta 0 (no scale, offset or norm).
 *
 * The CPU reference runs the separate ops (silu, mul, add, l2norm, rope,
 * permute) in this order, so its results are theirs bit for bit; the CUDA
 * version keeps everything between z and the outputs in fp32. */
#ifndef LACT_HEADPREP_H
#define LACT_HEADPREP_H

#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* qf or qa may be NULL (not both); scale and offset are required with qf. */
lact_status lact_headprep_forward(lact_ctx *ctx, lact_tensor *qf, lact_tensor *qa,
                                  const lact_tensor *z, const lact_tensor *scale,
                                  const lact_tensor *offset, int64_t pos0, float theta, float eps);

/* From the outputs' gradients dqf, dqa (either may be NULL, not both):
 *   dz [B, L, H, d]           overwritten
 *   dxs [B, L, H, d]          scratch for the gradient at s ⊙ scale + offset,
 *                             which the parameter gradients are sums of;
 *                             required with dqf (z's dtype). The CPU and the
 *                             general CUDA kernels write it; the tiled CUDA
 *                             kernels sum in the kernel and leave it alone.
 *   dscale, doffset [H · d]   F32, overwritten; optional, need dqf. */
lact_status lact_headprep_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *dscale,
                                   lact_tensor *doffset, lact_tensor *dxs, const lact_tensor *dqf,
                                   const lact_tensor *dqa, const lact_tensor *z,
                                   const lact_tensor *scale, const lact_tensor *offset,
                                   int64_t pos0, float theta, float eps);
/* The same with dscale and doffset ACCUMULATED (+=): a parameter's gradient
 * takes them so, without a scratch and an addition. */
lact_status lact_headprep_backward_acc(lact_ctx *ctx, lact_tensor *dz, lact_tensor *dscale,
                                       lact_tensor *doffset, lact_tensor *dxs,
                                       const lact_tensor *dqf, const lact_tensor *dqa,
                                       const lact_tensor *z, const lact_tensor *scale,
                                       const lact_tensor *offset, int64_t pos0, float theta,
                                       float eps);

#ifdef __cplusplus
}
#endif
#endif
