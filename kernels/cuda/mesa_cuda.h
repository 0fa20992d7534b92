/* The CUDA version of the mesa op (kernels/mesa.h) on raw, validated,
 * contiguous device buffers. q, k, v, g, beta, o and their gradients share
 * one activation dtype (F32 or BF16); lambda, its gradient, h_last and
 * g_last are F32.
 *
 * Two implementations of every stage (docs/mesa.md): generic CUDA-core
 * kernels in fp32 for any d and chunk, and tensor-core kernels (bf16
 * operands, fp32 accumulation) for BF16 activations with d ≤ 128, d a
 * multiple of 8 and chunk ≤ 64. `impl` picks them per stage; the public op
 * passes LACT_MESA_IMPL_AUTO. */
#ifndef LACT_CUDA_MESA_CUDA_H
#define LACT_CUDA_MESA_CUDA_H

#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Stages that may run on the tensor-core kernels (bit set) instead of the
 * generic ones. AUTO: all of them where the shape allows, else none. */
enum {
    LACT_MESA_TC_SCAN = 1,  /* chunk-start states and their adjoints */
    LACT_MESA_TC_SOLVE = 2, /* the CG solves, the output and the adjoint right-hand side */
    LACT_MESA_TC_GRAD = 4,  /* the per-chunk gradients of k, v, beta, g */
    LACT_MESA_IMPL_GENERIC = 0,
    LACT_MESA_IMPL_AUTO = -1
};

typedef struct lact_mesa_cuda_in {
    lact_dtype act; /* F32 or BF16 */
    int64_t b, h, len, d, chunk;
    int cg_steps;
    int impl; /* LACT_MESA_IMPL_AUTO, or a mask of LACT_MESA_TC_* */
    const void *q, *k, *v, *g, *beta;
    const float *lambda;
} lact_mesa_cuda_in;

/* Any pointer may be NULL (skipped); lambda's gradient is F32. */
typedef struct lact_mesa_cuda_grad {
    void *q, *k, *v, *g, *beta;
    float *lambda;
} lact_mesa_cuda_grad;

/* True when the tensor-core kernels serve this shape and dtype. */
int lact_cuda_mesa_tc_ok(const lact_mesa_cuda_in *in);

/* Index of the first g that is not finite and <= 0, the first beta outside
 * [0, 1] and the first lambda that is not finite and > 0 (-1: none), with
 * their values; waits for the stream. */
lact_status lact_cuda_mesa_find_bad(lact_ctx *ctx, const lact_mesa_cuda_in *in, int64_t first[3],
                                    float value[3]);

/* o [B, H, L, d]; x (the activation dtype, [B, H, L, d]) or NULL: the
 * solutions, for the backward; h_last, g_last [B, H, d, d] F32 or NULL;
 * residual (host) or NULL: max over tokens of ‖q_t − A_t x_t‖ / ‖q_t‖,
 * evaluated in fp32 with the operator the solve used (waits for the
 * stream). */
lact_status lact_cuda_mesa_forward(lact_ctx *ctx, void *o, void *x, float *h_last, float *g_last,
                                   float *residual, const lact_mesa_cuda_in *in);

/* x: what the forward wrote, or NULL (then the backward solves for it). */
lact_status lact_cuda_mesa_backward(lact_ctx *ctx, const lact_mesa_cuda_grad *grad, const void *d_o,
                                    const void *x, const lact_mesa_cuda_in *in);

/* One token: q, k, v, o [B, H, d]; g, beta [B, H]; h_state, g_state
 * [B, H, d, d] F32, updated in place (in->len and in->chunk are ignored). */
lact_status lact_cuda_mesa_decode(lact_ctx *ctx, void *o, float *h_state, float *g_state,
                                  const lact_mesa_cuda_in *in);

#ifdef __cplusplus
}
#endif
#endif
