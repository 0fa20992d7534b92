/* The Mesa layer (specs/mesa.md, docs/mesa.md). From x [B, L, D], H heads of
 * dimension d:
 *
 *   q, k, v = x wqᵀ, x wkᵀ, x wvᵀ                              [B, L, H·d]
 *   q, k   ← l2norm_head(q), l2norm_head(k)
 *   g      = −softplus(x w_decayᵀ + b_decay)   (log decay)      [B, H, L]
 *   β      = sigmoid(x w_betaᵀ + b_beta)       (input gate)     [B, H, L]
 *   λ      = softplus(lambda) + lambda_min     (regulariser)    [H, d]
 *   o      = mesa(q, k, v, g, β, λ)            (kernels/mesa.h) [B, H, L, d]
 *   u      = rmsnorm_head(o) · o_norm ⊙ sigmoid(x w_gateᵀ)       [B, L, H·d]
 *   y      = u woᵀ                                              [B, L, D]
 *
 * Parameters under "<prefix>.": wq wk wv w_gate [H·d, D]; w_decay w_beta
 * [H, D]; b_decay b_beta [H]; lambda [H·d] (the raw value behind λ, rows
 * ordered (h, i); a vector so that AdamW leaves it undecayed); o_norm [d];
 * wo [D, H·d]. b_decay starts at the value that gives the decay decay_init
 * for a zero projection, lambda at the value that gives λ = lambda_init.
 *
 * Memory and gradients as in ttt_layer.h: forward keeps what backward needs
 * in the arena (x must stay valid until backward); parameter gradients
 * accumulate, dx is overwritten. */
#ifndef LACT_NN_MESA_LAYER_H
#define LACT_NN_MESA_LAYER_H

#include <stdint.h>

#include "core/base/arena.h"
#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/nn/params.h"
#include "kernels/mesa.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_mesa_layer_cfg {
    int64_t dim;       /* D */
    int64_t heads;     /* H */
    int64_t head_dim;  /* d */
    lact_mesa_args op; /* tokens per chunk, CG steps per solve */
    float lambda_init; /* λ at initialisation, > lambda_min */
    float lambda_min;  /* λ's floor, ≥ 0 (keeps H_t + Λ well conditioned for CG) */
    float decay_init;  /* exp(g) for a zero decay projection at initialisation, in (0, 1) */
    float init_std;    /* std of the projections' normal init */
    float norm_eps;    /* eps of the output RMSNorm */
} lact_mesa_layer_cfg;

/* d = D / H, chunk 64, 30 CG steps, λ starting at 1 with floor 0.25, decay
 * 0.95, init std 0.02, eps 1e-6. */
lact_mesa_layer_cfg lact_mesa_layer_defaults(int64_t dim, int64_t heads);

typedef struct lact_mesa_layer {
    lact_mesa_layer_cfg cfg;
    lact_params *params;
    int wq, wk, wv, w_decay, b_decay, w_beta, b_beta, lambda, o_norm, w_gate, wo;
} lact_mesa_layer;

/* What forward keeps for backward (views into the arena). The op's inputs
 * are head-major [B, H, L, ·] in the forward; decode keeps them token-major
 * [L, B, H, ·] (one token's heads contiguous). */
typedef struct lact_mesa_layer_saved {
    int64_t B, L;
    lact_tensor x;           /* the caller's input */
    lact_tensor q0, k0;      /* [B, L, H·d] projections (the L2 norms' inputs) */
    lact_tensor q, k, v;     /* [B, H, L, d] the op's inputs */
    lact_tensor zg, g, beta; /* [B, H, L] decay logits, log decays, input gates */
    lact_tensor lambda;      /* [H, d] λ */
    lact_tensor xs;          /* [B, H, L, d] the op's solutions, reused by its backward */
    lact_tensor o;           /* [B, L, H·d] the op's output (the RMSNorm's input) */
    lact_tensor rstd;        /* [B·L·H] */
    lact_tensor n;           /* [B, L, H·d] normed output */
    lact_tensor gate;        /* [B, L, H·d] sigmoid output gate */
    lact_tensor u;           /* [B, L, H·d] input of wo */
} lact_mesa_layer_saved;

/* Checks cfg and declares the parameters under prefix. */
lact_status lact_mesa_layer_declare(lact_mesa_layer *l, lact_params *p, const char *prefix,
                                    const lact_mesa_layer_cfg *cfg);
/* y [B, L, D] from x [B, L, D]; with res (y's shape, or NULL) y = res +
 * layer(x), the block's residual added in the output projection. */
lact_status lact_mesa_layer_forward(lact_ctx *ctx, lact_mesa_layer *l, lact_arena *arena,
                                    lact_mesa_layer_saved *s, lact_tensor *y, const lact_tensor *x,
                                    const lact_tensor *res);
/* dx [B, L, D] (overwritten; may be NULL) from dy; parameter gradients
 * accumulate into the store. */
lact_status lact_mesa_layer_backward(lact_ctx *ctx, lact_mesa_layer *l, lact_arena *arena,
                                     const lact_mesa_layer_saved *s, lact_tensor *dx,
                                     const lact_tensor *dy);

/* Streaming decode: the op's states H, G [B, H, d, d] of every sequence.
 * Each step takes the next T ≥ 1 tokens of every sequence (1 when
 * generating, a piece of the prompt when prefilling, up to max_tokens), runs
 * the forward's input and output stages on them at once and the recurrence
 * token by token (lact_mesa_decode: rank-1 state updates, CG on the explicit
 * d×d matrix), so it gives what lact_mesa_layer_forward gives at those
 * positions, up to the CG's convergence. The memory does not grow with the
 * context. CPU or CUDA (F32). Everything is allocated by init, nothing per
 * step. */
typedef struct lact_mesa_layer_decode {
    lact_mesa_layer *layer;
    int64_t batch, max_tokens, pos; /* pos: tokens seen per sequence */
    lact_tensor h_state, g_state;   /* [B, H, d, d] H_t, G_t */
    lact_arena arena;               /* the step's activations, sized for max_tokens */
    lact_mesa_layer_saved saved;    /* the last step's activations (token-major) */
} lact_mesa_layer_decode;

lact_status lact_mesa_layer_decode_init(lact_ctx *ctx, lact_mesa_layer *l,
                                        lact_mesa_layer_decode *st, int64_t batch,
                                        int64_t max_tokens);
void lact_mesa_layer_decode_free(lact_mesa_layer_decode *st);
/* y [B, T, D] from x [B, T, D], 1 ≤ T ≤ max_tokens: the next T tokens. */
lact_status lact_mesa_layer_decode_step(lact_ctx *ctx, lact_mesa_layer_decode *st, lact_tensor *y,
                                        const lact_tensor *x);

#ifdef __cplusplus
}
#endif
#endif
