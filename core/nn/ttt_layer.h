/* The LaCT layer (specs/lact.md "Per token", "Apply", "Orders", "Decoding"),
 * language variant. From x [B, L, D], H heads of d = D / H, dh = d·inter_multi:
 *
 *   q, k, v  = silu(x Wqᵀ), silu(x Wkᵀ), silu(x Wvᵀ)                [B, L, D]
 *   fast path: q_f = rope(l2norm_head(q ⊙ q_scale + q_offset)),
 *              k_f likewise with k_scale, k_offset; v_f = v
 *   η_i      = softplus(x lr_wᵀ + lr_b + softplus⁻¹(base_lr))   i = 0, 1, 2
 *              (lr_w rows ordered (i, h))                            [B·H, L]
 *   β        = sigmoid(x mom_wᵀ + mom_b)              (momentum on)  [B·H, L]
 *   o        = ttt(q_f, k_f, v_f, η, β; w0, w1, w2 broadcast over the batch)
 *              in the layer's order (below)
 *   u        = rmsnorm_head(o) · o_norm  [+ window_attention(rope(q), rope(k), v)]
 *   y        = u Woᵀ                                                [B, L, D]
 *
 * The window attention (window ≥ C, optional) reads the SiLU outputs q, k
 * (RoPE'd when rope is on, no scale/offset, no L2 norm: it is ordinary
 * softmax attention) and the same v.
 *
 * Orders (specs/lact.md "Orders"):
 *   CAUSAL         shifted block-causal with chunk C (language, video); the
 *                  attention branch is the sliding window;
 *   BIDIRECTIONAL  update on tokens [0, n_ctx) in chunks of C, then apply on
 *                  all L tokens (view synthesis: n_ctx input-view tokens,
 *                  n_ctx = 0 means all L); the attention branch, when on, is
 *                  full (non-causal) attention over the L tokens, O(L²);
 *   CUSTOM         cfg.ops, a list of {start, end, update, apply} (copied by
 *                  declare), run as kernels/ttt.h says; every range must lie
 *                  inside the sequence; attention as BIDIRECTIONAL.
 * Streaming decode (lact_ttt_layer_decode_*) needs the causal order.
 *
 * Parameters, under "<prefix>.": wq wk wv wo [D, D]; q_scale q_offset
 * k_scale k_offset [D]; lr_w [3H, D], lr_b [3H]; mom_w [H, D], mom_b [H]
 * (momentum on); w0 w2 [H, dh, d], w1 [H, d, dh]; o_norm [d].
 *
 * Memory: forward takes what backward needs from the arena (kept until the
 * caller releases or resets it) and returns its scratch; backward takes and
 * returns scratch. With a measuring arena both only walk the allocations.
 * x must stay valid (unchanged) until backward. */
#ifndef LACT_NN_TTT_LAYER_H
#define LACT_NN_TTT_LAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/arena.h"
#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/nn/kv_cache.h"
#include "core/nn/params.h"
#include "kernels/ttt.h"
#include "kernels/ttt_decode.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lact_ttt_layer_order_kind {
    LACT_TTT_LAYER_CAUSAL = 0,
    LACT_TTT_LAYER_BIDIRECTIONAL = 1,
    LACT_TTT_LAYER_CUSTOM = 2,
} lact_ttt_layer_order_kind;

typedef struct lact_ttt_layer_cfg {
    int64_t dim;         /* D */
    int64_t heads;       /* H; D % H == 0 */
    int64_t inter_multi; /* dh = d · inter_multi */
    int64_t chunk;       /* C, tokens per update */
    float base_lr;       /* η for a zero projection (1e-3 for language) */
    bool momentum;
    lact_ttt_muon muon;
    bool rope;
    float rope_theta;
    bool window_attn;    /* sum with sliding-window attention */
    int64_t window;      /* ≥ chunk */
    float init_std;      /* std of the projections' normal init */
    float norm_eps;      /* eps of the output RMSNorm */
    lact_ttt_layer_order_kind order; /* CAUSAL by default */
    int64_t n_ctx;       /* BIDIRECTIONAL: tokens updated on (0: all) */
    const lact_ttt_op *ops; /* CUSTOM: the operations (n_ops of them) */
    int64_t n_ops;
} lact_ttt_layer_cfg;

/* Language defaults: inter_multi 2, chunk 2048, base_lr 1e-3, momentum and
 * Muon (table) on, RoPE θ 10000, window attention of 2048, init std 0.02. */
lact_ttt_layer_cfg lact_ttt_layer_defaults(int64_t dim, int64_t heads);

typedef struct lact_ttt_layer {
    lact_ttt_layer_cfg cfg;
    lact_params *params;
    int wq, wk, wv, wo, q_scale, q_offset, k_scale, k_offset;
    int lr_w, lr_b, mom_w, mom_b, w0, w1, w2, o_norm;
    lact_ttt_op *ops; /* the order for the last length seen */
    int64_t n_ops, ops_cap, ops_len;
    lact_ttt_op *custom; /* CUSTOM: the layer's copy of cfg.ops */
} lact_ttt_layer;

/* What forward keeps for backward (views into the arena). */
typedef struct lact_ttt_layer_saved {
    int64_t B, L;
    lact_tensor x;                /* the caller's input */
    lact_tensor zq, zk, zv;       /* [B, L, D] before SiLU */
    lact_tensor qf, kf, v;        /* [B·H, L, d] the ttt op's inputs */
    lact_tensor qa, ka;           /* [B, H, L, d] attention's q, k */
    lact_tensor zlr, lr;          /* [3, B·H, L] logits, rates */
    lact_tensor zm, mom;          /* [B·H, L] */
    lact_tensor w0, w1, w2;       /* [H, ...] initial fast weights (the parameters) */
    lact_tensor state;            /* [B·H, S] */
    lact_tensor o, rstd;          /* [B·H, L, d], [B·H·L] */
    lact_tensor ya, lse;          /* [B, H, L, d], [B, H, L] */
    lact_tensor u;                /* [B, L, D] input of wo */
} lact_ttt_layer_saved;

/* Checks cfg and declares the parameters under prefix. */
lact_status lact_ttt_layer_declare(lact_ttt_layer *l, lact_params *p, const char *prefix,
                                   const lact_ttt_layer_cfg *cfg);
void lact_ttt_layer_free(lact_ttt_layer *l);

/* y [B, L, D] from x [B, L, D]; with res (y's shape, or NULL) y = res +
 * layer(x), the block's residual added in the output projection. */
lact_status lact_ttt_layer_forward(lact_ctx *ctx, lact_ttt_layer *l, lact_arena *arena,
                                   lact_ttt_layer_saved *s, lact_tensor *y, const lact_tensor *x,
                                   const lact_tensor *res);
/* dx [B, L, D] (overwritten; may be NULL) from dy; parameter gradients
 * accumulate into the store. */
lact_status lact_ttt_layer_backward(lact_ctx *ctx, lact_ttt_layer *l, lact_arena *arena,
                                    const lact_ttt_layer_saved *s, lact_tensor *dx,
                                    const lact_tensor *dy);

/* Streaming decode (specs/lact.md "Decoding"): per layer, the ttt op's
 * decode state for the B·H heads and the attention branch's key/value ring
 * buffers of `window` slots. Each step takes the next T ≥ 1 tokens of every
 * sequence (T = 1 when generating, the prompt when prefilling) and gives
 * what lact_ttt_layer_forward gives at those positions of the whole
 * sequence. CPU or CUDA (F32); causal order only. Everything is allocated
 * by init (the step's activations in an arena sized for max_tokens),
 * nothing per step. */
typedef struct lact_ttt_layer_decode {
    lact_ttt_layer *layer;
    int64_t batch, max_tokens, pos; /* pos: tokens seen per sequence */
    lact_ttt_decode op;
    lact_kv_cache cache;          /* the window branch: [B, H, window, d] */
    lact_arena arena;
    lact_ttt_layer_saved saved;   /* the last step's activations */
} lact_ttt_layer_decode;

lact_status lact_ttt_layer_decode_init(lact_ctx *ctx, lact_ttt_layer *l,
                                       lact_ttt_layer_decode *st, int64_t batch,
                                       int64_t max_tokens);
void lact_ttt_layer_decode_free(lact_ttt_layer_decode *st);
/* y [B, T, D] from x [B, T, D], 1 ≤ T ≤ max_tokens: the next T tokens. */
lact_status lact_ttt_layer_decode_step(lact_ctx *ctx, lact_ttt_layer_decode *st, lact_tensor *y,
                                       const lact_tensor *x);

#ifdef __cplusplus
}
#endif
#endif
