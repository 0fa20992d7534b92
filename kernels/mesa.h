/* The Mesa op (specs/mesa.md, docs/mesa.md): per head, a decayed
 * regression state solved exactly at every token.
 *
 *   H_t = γ_t H_{t−1} + β_t k_t k_tᵀ,   G_t = γ_t G_{t−1} + β_t v_t k_tᵀ,
 *   x_t = (H_t + diag(λ))⁻¹ q_t,         o_t = G_t x_t,
 * with γ_t = exp(g_t), H_0 = G_0 = 0.
 *
 * Shapes (CPU, F32):
 *   q, k, v  [B, H, L, d]   q and k already L2-normalised by the caller
 *                           (the layer runs the l2norm op; the op itself
 *                           takes any q, k)
 *   g        [B, H, L]      log decay, finite and ≤ 0
 *   beta     [B, H, L]      input gate in [0, 1]
 *   lambda   [H, d]         per-channel regulariser, > 0 (a parameter)
 *   o        [B, H, L, d]
 *
 * The forward runs the chunkwise form: chunk-start states by a scan over
 * chunks, in-chunk terms through the decay matrix, and a fixed number of
 * conjugate-gradient steps from x = 0 for all tokens of a chunk at once.
 * The backward differentiates the exact solve (implicit differentiation:
 * one more CG solve per token, no unrolling), so it matches the forward
 * when CG has converged. */
#ifndef LACT_MESA_H
#define LACT_MESA_H

#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LACT_MESA_CHUNK 64
#define LACT_MESA_CG_STEPS 30

typedef struct lact_mesa_args {
    int64_t chunk; /* tokens per chunk, ≥ 1 (LACT_MESA_CHUNK) */
    int cg_steps;  /* CG iterations per solve, ≥ 1 (LACT_MESA_CG_STEPS) */
} lact_mesa_args;

/* The defaults above. */
lact_mesa_args lact_mesa_default_args(void);

/* Shapes only (no values, devices or dtypes): q [B, H, L, d] with every dim
 * ≥ 1, k and v like q, g and beta [B, H, L], lambda [H, d]. */
lact_status lact_mesa_check_shapes(const char *op, const lact_tensor *q, const lact_tensor *k,
                                   const lact_tensor *v, const lact_tensor *g,
                                   const lact_tensor *beta, const lact_tensor *lambda);

/* o from the inputs. Optional outputs (NULL to skip):
 *   h_last, g_last [B, H, d, d]  the states after the last token (to continue
 *                                with lact_mesa_decode; not differentiated);
 *   residual                     max over tokens of ‖q_t − A_t x_t‖ / ‖q_t‖
 *                                after the last CG step (true residual). */
lact_status lact_mesa_forward(lact_ctx *ctx, lact_tensor *o, lact_tensor *h_last,
                              lact_tensor *g_last, float *residual, const lact_tensor *q,
                              const lact_tensor *k, const lact_tensor *v, const lact_tensor *g,
                              const lact_tensor *beta, const lact_tensor *lambda,
                              const lact_mesa_args *args);

/* Gradients of Σ d_o ⊙ o; any gradient may be NULL (skipped); all are
 * overwritten. d_lambda [H, d] is summed over the batch. */
lact_status lact_mesa_backward(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k, lact_tensor *d_v,
                               lact_tensor *d_g, lact_tensor *d_beta, lact_tensor *d_lambda,
                               const lact_tensor *d_o, const lact_tensor *q, const lact_tensor *k,
                               const lact_tensor *v, const lact_tensor *g, const lact_tensor *beta,
                               const lact_tensor *lambda, const lact_mesa_args *args);

/* For a training step: lact_mesa_forward that also writes the solutions
 * x_t ≈ A_t⁻¹ q_t into x [B, H, L, d] (the dtype of q), and the backward
 * that takes them instead of solving for them again, so that a forward
 * and a backward make two CG solves per token instead of three. x must
 * come from lact_mesa_forward_x on the same inputs and args. (The CPU
 * reference's backward solves again either way; its result is the same.) */
lact_status lact_mesa_forward_x(lact_ctx *ctx, lact_tensor *o, lact_tensor *x, lact_tensor *h_last,
                                lact_tensor *g_last, float *residual, const lact_tensor *q,
                                const lact_tensor *k, const lact_tensor *v, const lact_tensor *g,
                                const lact_tensor *beta, const lact_tensor *lambda,
                                const lact_mesa_args *args);
lact_status lact_mesa_backward_x(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k,
                                 lact_tensor *d_v, lact_tensor *d_g, lact_tensor *d_beta,
                                 lact_tensor *d_lambda, const lact_tensor *d_o,
                                 const lact_tensor *x, const lact_tensor *q, const lact_tensor *k,
                                 const lact_tensor *v, const lact_tensor *g,
                                 const lact_tensor *beta, const lact_tensor *lambda,
                                 const lact_mesa_args *args);

/* One token of decoding. q, k, v, o [B, H, d]; g, beta [B, H]; lambda [H, d];
 * h_state, g_state [B, H, d, d] hold H_{t−1}, G_{t−1} on entry (zeros before
 * the first token) and H_t, G_t on return. x_t by args->cg_steps CG steps
 * from zero on the explicit matrix; args->chunk is ignored. */
lact_status lact_mesa_decode(lact_ctx *ctx, lact_tensor *o, lact_tensor *h_state,
                             lact_tensor *g_state, const lact_tensor *q, const lact_tensor *k,
                             const lact_tensor *v, const lact_tensor *g, const lact_tensor *beta,
                             const lact_tensor *lambda, const lact_mesa_args *args);

#ifdef __cplusplus
}
#endif
#endif
