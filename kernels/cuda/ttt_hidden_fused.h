/* The ttt op's hidden-unit pass for small heads in one kernel
 * (ttt_hidden_fused.cu). Two steps of the op share one shape: from rows x
 * and y of a token tile, a = x W0ᵀ, b = x W2ᵀ, e = y W1 (per hidden unit),
 * then
 *   f0 = l0 e b silu'(a),  f2 = l2 e silu(a),  f1 = l1 silu(a) b.
 * The update's gradient takes x = k, y = v with the token learning rates;
 * the apply's backward takes x = q, y = d_o with rates 1, where f1 is the
 * hidden activation h and (f0, f2) the adjoints of (a, b). The kernel
 * writes f0, f2 and f1 for the weight products that follow and, for the
 * apply's backward, adds d_q = f0 W0 + f2 W2 itself: a, b and e never
 * reach memory, where the batched path stores and reloads them around an
 * element-wise pass. */
#ifndef LACT_CUDA_TTT_HIDDEN_FUSED_H
#define LACT_CUDA_TTT_HIDDEN_FUSED_H

#include "kernels/cuda/common.cuh"

/* Whether the pass runs fused for BF16 heads of d × dh on the current
 * device: the fused apply's sizes (ttt_apply_fused_fits), on warpgroup
 * tensor cores (ttt_fused_device). */
bool ttt_hidden_fused_ready(int64_t d, int64_t dh);

/* For the tokens t0 + [0, Tt) of each head n of N (x, y, dx [N, len, d];
 * l0, l1, l2 [N, len] or NULL for rates of 1; Wc the BF16 fast weights as
 * for ttt_apply_fused): out02[n][i] = [f0 | f2] (2·dh) and out1[n][i] = f1
 * (dh), rows i < Tt of a tile-local [N, Tt] layout; with dx given,
 * dx[n, t0 + i] += f0 W0 + f2 W2. */
lact_status ttt_hidden_fused(lact_ctx *ctx, const bf16 *x, const bf16 *y, const bf16 *Wc,
                             const float *l0, const float *l1, const float *l2, bf16 *out02,
                             bf16 *out1, bf16 *dx, int64_t N, int64_t len, int64_t t0, int64_t Tt,
                             int64_t d, int64_t dh);

/* The backward of the update's pass (grad_bwd in ttt.cu) for tokens
 * t0 + [0, Tt): with dGc the BF16 gradient of the update's G in the
 * layout of Wc, forms k dG02ᵀ and v dG1 itself, reads a, b from zab
 * ([N][Tt][2·dh]) and e from ze ([N][Tt][dh]), the forward's products, and
 * writes [x0 | x2] over zab, h1 over ze, [dA | dB] to dab and dE to de (the
 * element-wise step's outputs and the adjoints of a, b, e), adding the
 * learning-rate gradients to dl0, dl1, dl2 ([N, len], each may be NULL). */
lact_status ttt_hidden_bwd_fused(lact_ctx *ctx, const bf16 *k, const bf16 *v, const bf16 *dGc,
                                 const float *l0, const float *l1, const float *l2, bf16 *zab,
                                 bf16 *ze, bf16 *dab, bf16 *de, float *dl0, float *dl1, float *dl2,
                                 int64_t N, int64_t len, int64_t t0, int64_t Tt, int64_t d,
                                 int64_t dh);

#endif
