/* The ttt op's apply, o += W1 (silu(W0 q) ⊙ (W2 q)), as one kernel for
 * the small heads of the language models (ttt_apply_fused.cu): the hidden
 * activations stay in registers instead of two products and an
 * element-wise pass over [N, tokens, 2·dh] in memory. */
#ifndef LACT_CUDA_TTT_APPLY_FUSED_H
#define LACT_CUDA_TTT_APPLY_FUSED_H

#include "kernels/cuda/common.cuh"

/* Whether BF16 heads of d × dh have the fused apply (d ∈ {64, 128},
 * dh ∈ {d, 2d}); LACT_TTT_APPLY_FUSED=0 in the environment forces the
 * products instead. */
bool ttt_apply_fused_fits(int64_t d, int64_t dh);

/* o[n, t0 + i] += W1 (silu(W0 q) ⊙ (W2 q)) for i < Tt and every head n of
 * N, with q[n, t0 + i], q and o [N, len, d], Wc the BF16 fast weights
 * [N][W0 (dh × d) | W2 (dh × d) | W1 (d × dh)]. */
lact_status ttt_apply_fused(lact_ctx *ctx, const bf16 *q, const bf16 *Wc, bf16 *o, int64_t N,
                            int64_t len, int64_t t0, int64_t Tt, int64_t d, int64_t dh);

/* The current device's multiprocessor count (the fused kernels' persistent
 * grid) and whether they run on its warpgroup tensor cores: compute
 * capability 9.0 with the sm_90a image built, and LACT_TTT_APPLY_WGMMA not
 * "0" in the environment (else the apply takes its mma.sync kernel and
 * the hidden-unit passes of ttt_hidden_fused.h the batched products). */
lact_status ttt_fused_device(int *sms, bool *wgmma);

#endif
