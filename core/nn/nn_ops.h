/* Small helpers the layers share: running kernels under a measuring arena,
 * the middle-dims swap on flat buffers, views, allocation, accumulation.
 * Same conventions as the kernels: outputs first, contiguous tensors,
 * backward overwrites. */
#ifndef LACT_NN_OPS_H
#define LACT_NN_OPS_H

#include <stdint.h>

#include "core/base/arena.h"
#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs a kernel call unless the arena is only measuring (its tensors have
 * no memory then: the layers walk their allocations without computing). */
#define LACT_NN_RUN(arena, expr)                                                                   \
    do {                                                                                           \
        if (!(arena)->measuring) LACT_TRY(expr);                                                   \
    } while (0)

/* out[a, c, b, e] = x[a, b, c, e] through lact_permute_forward: x read as
 * [A, Bd, C, E] (numel must match), out as [A, C, Bd, E]. The backward of
 * (A, Bd, C, E) is the same call with (A, C, Bd, E). */
lact_status lact_nn_permute(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, int64_t A,
                            int64_t Bd, int64_t C, int64_t E);

/* softplus⁻¹(y) = log(expm1(y)), y > 0: the shift that makes a zero
 * projection give learning rate y. */
float lact_nn_inv_softplus(float y);

/* acc += x (same shape), through lact_add: how layers accumulate into
 * parameter gradients and into shared activation gradients. */
lact_status lact_nn_accumulate(lact_ctx *ctx, lact_tensor *acc, const lact_tensor *x);

/* A contiguous view of the leading elements of t with a new shape (numel
 * at most t's), for the many reshapes between [B, L, D], [B·L, D],
 * [B, L, H, d] and [N, L, d], and for reusing one scratch buffer. */
lact_tensor lact_nn_view(const lact_tensor *t, int ndim, const int64_t *shape);
#define LACT_NN_VIEW(t, ...)                                                                       \
    lact_nn_view((t), (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),                   \
                 (int64_t[]){__VA_ARGS__})

/* An arena tensor of F32 (statistics, rates, gates, fast weights: what the
 * ops keep in F32 whatever the activations are), variadic shape. */
lact_status lact_nn_alloc(lact_arena *arena, lact_tensor *t, int ndim, const int64_t *shape);
#define LACT_NN_ALLOC(arena, t, ...)                                                               \
    lact_nn_alloc((arena), (t), (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),         \
                  (int64_t[]){__VA_ARGS__})
/* An arena tensor of dtype dt: the layers' activations and their gradients
 * take the dtype of the layer's input (F32, or BF16 on CUDA). */
#define LACT_NN_ALLOC_AS(arena, dt, t, ...)                                                        \
    lact_arena_tensor((arena), (t), (dt),                                                          \
                      (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),                   \
                      (int64_t[]){__VA_ARGS__})

struct lact_params;
/* x's dtype can be a layer's activation dtype: F32, or BF16 with the
 * store's BF16 shadow allocated (the products read it). what names the
 * layer. */
lact_status lact_nn_check_act(const struct lact_params *p, const lact_tensor *x, const char *what);

/* What every layer's streaming decode state needs: batch and max_tokens
 * ≥ 1, parameters allocated on the context's device (CPU or CUDA). */
lact_status lact_nn_decode_check(const lact_ctx *ctx, const struct lact_params *p, int64_t batch,
                                 int64_t max_tokens, const char *what);
/* A decode step's x and y: contiguous F32 on the context's device (the
 * decode computes in F32 whatever the layer's activation dtype). */
lact_status lact_nn_decode_io_check(const lact_ctx *ctx, const lact_tensor *x, const lact_tensor *y,
                                    const char *what);

#ifdef __cplusplus
}
#endif
#endif
