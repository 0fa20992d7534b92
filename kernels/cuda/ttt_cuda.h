/* The CUDA version of the ttt op (kernels/ttt.h) on raw, validated,
 * contiguous device buffers. Activations q, k, v, o and their gradients are
 * all of one dtype (F32 or BF16); lrs, momentum, weights, state and their
 * gradients are F32. The matrix products use operands of the activation
 * dtype with fp32 accumulation; the fast weights and momentum stay fp32. */
#ifndef LACT_CUDA_TTT_CUDA_H
#define LACT_CUDA_TTT_CUDA_H

#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "kernels/ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_ttt_cuda_in {
    lact_dtype act; /* dtype of q, k, v, o, d_o, d_q, d_k, d_v */
    int64_t n, len, d, dh;
    int64_t wn; /* heads of w0, w1, w2 (and their gradients): head n reads n mod wn */
    const void *q, *k, *v;
    const float *lr0, *lr1, *lr2;
    const float *momentum; /* NULL: no momentum */
    const float *w0, *w1, *w2;
} lact_ttt_cuda_in;

/* Any pointer may be NULL (skipped). */
typedef struct lact_ttt_cuda_grad {
    void *q, *k, *v;
    float *lr0, *lr1, *lr2, *momentum, *w0, *w1, *w2;
} lact_ttt_cuda_grad;

/* o [N, L, d]; state [N, S] or NULL. */
lact_status lact_cuda_ttt_forward(lact_ctx *ctx, void *o, float *state, const lact_ttt_cuda_in *in,
                                  const lact_ttt_args *args);
/* state: what the forward saved, or NULL (then the forward runs again into
 * a temporary state). */
lact_status lact_cuda_ttt_backward(lact_ctx *ctx, const lact_ttt_cuda_grad *grad, const void *d_o,
                                   const float *state, const lact_ttt_cuda_in *in,
                                   const lact_ttt_args *args);

#ifdef __cplusplus
}
#endif
#endif
