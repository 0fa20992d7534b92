/* Argument checks shared by the public kernel functions in kernels/, and
 * the switch between the CPU reference and the CUDA version. Every check
 * records one line naming the op and the tensor, e.g.
 *   "rmsnorm: w has shape [7], expected [8] (last dim of x)". */
#ifndef LACT_KCHECK_H
#define LACT_KCHECK_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "kernels/cpu/cpu_kernels.h"
#if LACT_WITH_CUDA
#include "kernels/cuda/cuda_kernels.h"
#endif

/* Calls lact_cpu_<fn> or lact_cuda_<fn> according to ctx->device. The
 * caller has run lact_kcheck_ctx, so a CUDA context exists only in a CUDA
 * build. */
#if LACT_WITH_CUDA
#define LACT_KDISPATCH(ctx, fn, ...)                                                               \
    ((ctx)->device == LACT_CUDA ? lact_cuda_##fn(ctx, __VA_ARGS__)                                 \
                                : lact_cpu_##fn(ctx, __VA_ARGS__))
#else
#define LACT_KDISPATCH(ctx, fn, ...) lact_cpu_##fn(ctx, __VA_ARGS__)
#endif

#define LACT_DT(d) (1u << (unsigned)(d))
#define LACT_DT_FLOATS (LACT_DT(LACT_F32) | LACT_DT(LACT_BF16) | LACT_DT(LACT_F16))

/* The context exists and its device is served by this build. */
lact_status lact_kcheck_ctx(const lact_ctx *ctx, const char *op);
/* Dtypes allowed for activations on the context's device: F32 on the CPU,
 * F32 or BF16 on CUDA. */
unsigned lact_kcheck_act_dtypes(const lact_ctx *ctx);
/* t is non-NULL, has data (unless empty), lives on ctx->device, has a dtype
 * in the mask and is contiguous. */
lact_status lact_kcheck_tensor(const lact_ctx *ctx, const char *op, const char *name,
                               const lact_tensor *t, unsigned dtypes);
/* Same, but a NULL t passes (optional inputs, skipped gradients). */
lact_status lact_kcheck_optional(const lact_ctx *ctx, const char *op, const char *name,
                                 const lact_tensor *t, unsigned dtypes);
/* t has the shape of ref. */
lact_status lact_kcheck_same_shape(const char *op, const char *name, const lact_tensor *t,
                                   const char *ref_name, const lact_tensor *ref);
/* t has the dtype of ref. */
lact_status lact_kcheck_same_dtype(const char *op, const char *name, const lact_tensor *t,
                                   const char *ref_name, const lact_tensor *ref);
/* t is 1-D of length n; why explains n ("last dim of x"). */
lact_status lact_kcheck_vector(const char *op, const char *name, const lact_tensor *t, int64_t n,
                               const char *why);
/* t has n elements in any shape; why explains n. */
lact_status lact_kcheck_numel(const char *op, const char *name, const lact_tensor *t, int64_t n,
                              const char *why);
/* t has at least min_ndim dims. */
lact_status lact_kcheck_ndim(const char *op, const char *name, const lact_tensor *t, int min_ndim,
                             int max_ndim);
/* op(a) [..., M, K] · op(b) [..., K, N] fits out [..., M, N]; b has a's
 * batch dims or is one 2-D matrix. */
lact_status lact_kcheck_matmul(const char *op, const char *out_name, const lact_tensor *out,
                               const lact_tensor *a, const lact_tensor *b, bool ta, bool tb);
/* "[2, 3, 4]" into buf; returns buf. */
const char *lact_kcheck_shape_str(const lact_tensor *t, char *buf, size_t n);

#endif
