/* The gated softmax attention layer (specs/attention.md). From x [B, L, D]:
 *
 *   q = x wqᵀ [B, L, H·d],  k, v = x wkᵀ, x wvᵀ [B, L, Hkv·d]   (GQA: Hkv | H)
 *   q, k ← rmsnorm_head(q) · q_norm, rmsnorm_head(k) · k_norm    (qk_norm on)
 *   q, k ← rope(q), rope(k)                                      (rope on)
 *   g    = x wgᵀ + bg, [B, L, H·d] (elementwise gate) or [B, L, H] (per head)
 *   o    = attention(q, k, v; mask) ⊙ sigmoid(g)     (the attention op)
 *   y    = o woᵀ [B, L, D]
 *
 * Parameters under "<prefix>.": wq [H·d, D], wk wv [Hkv·d, D], wg [H·gd, D],
 * bg [H·gd] (gd = d, or 1 per head; absent without a gate), q_norm k_norm [d]
 * (qk_norm on), wo [D, H·d].
 *
 * Memory and gradients as in ttt_layer.h: forward keeps what backward needs
 * in the arena; parameter gradients accumulate, dx is overwritten. */
#ifndef LACT_NN_ATTN_LAYER_H
#define LACT_NN_ATTN_LAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/arena.h"
#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "core/nn/kv_cache.h"
#include "core/nn/params.h"
#include "kernels/attention.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lact_attn_gate {
    LACT_ATTN_GATE_NONE = 0,
    LACT_ATTN_GATE_ELEMENTWISE = 1, /* one gate per channel of a head */
    LACT_ATTN_GATE_HEAD = 2,        /* one gate per head and token */
} lact_attn_gate;

typedef struct lact_attn_layer_cfg {
    int64_t dim;      /* D */
    int64_t heads;    /* H */
    int64_t kv_heads; /* Hkv, divides H (Hkv = H: ordinary attention) */
    int64_t head_dim; /* d */
    bool qk_norm;
    bool rope;
    float rope_theta;
    lact_attn_args mask; /* mask kind, window, block, scale */
    lact_attn_gate gate;
    float init_std;
    float norm_eps;
} lact_attn_layer_cfg;

/* Causal, d = D / H, Hkv = H, elementwise gate, qk_norm and RoPE (θ 10000)
 * on, init std 0.02, eps 1e-6. */
lact_attn_layer_cfg lact_attn_layer_defaults(int64_t dim, int64_t heads);

typedef struct lact_attn_layer {
    lact_attn_layer_cfg cfg;
    lact_params *params;
    int wq, wk, wv, wg, bg, q_norm, k_norm, wo;
} lact_attn_layer;

typedef struct lact_attn_layer_saved {
    int64_t B, L;
    lact_tensor x;
    lact_tensor q0, k0;         /* [B, L, H·d], [B, L, Hkv·d] projections */
    lact_tensor rstd_q, rstd_k; /* [B·L·H], [B·L·Hkv] (qk_norm) */
    lact_tensor q, k, v;        /* [B, H|Hkv, L, d] the op's inputs */
    lact_tensor g;              /* [B, H, L, gd] gate logits */
    lact_tensor y, lse;         /* [B, H, L, d], [B, H, L] */
    lact_tensor u;              /* [B, L, H·d] input of wo */
} lact_attn_layer_saved;

lact_status lact_attn_layer_declare(lact_attn_layer *l, lact_params *p, const char *prefix,
                                    const lact_attn_layer_cfg *cfg);
/* y [B, L, D] from x [B, L, D]; with res (y's shape, or NULL) y = res +
 * layer(x), the block's residual added in the output projection. */
lact_status lact_attn_layer_forward(lact_ctx *ctx, lact_attn_layer *l, lact_arena *arena,
                                    lact_attn_layer_saved *s, lact_tensor *y, const lact_tensor *x,
                                    const lact_tensor *res);
lact_status lact_attn_layer_backward(lact_ctx *ctx, lact_attn_layer *l, lact_arena *arena,
                                     const lact_attn_layer_saved *s, lact_tensor *dx,
                                     const lact_tensor *dy);

/* Streaming decode: the key/value cache of every sequence, [B, Hkv, C, d].
 * With the window mask the cache is a ring buffer of C = min(window,
 * max_context) slots; with the causal mask C = max_context, the most tokens
 * a sequence may reach. Each step takes the next T ≥ 1 tokens of every
 * sequence (up to max_tokens) and gives what lact_attn_layer_forward gives at
 * those positions of the whole sequence (RoPE at the right positions). CPU
 * or CUDA, F32 (lact_attention_decode); the full and block-causal masks
 * cannot stream. Everything is allocated by init, nothing per step. */
typedef struct lact_attn_layer_decode {
    lact_attn_layer *layer;
    int64_t batch, max_tokens, max_context, pos;
    lact_kv_cache cache;          /* [B, Hkv, C, d] keys and values */
    lact_arena arena;             /* the step's activations, sized for max_tokens */
} lact_attn_layer_decode;

lact_status lact_attn_layer_decode_init(lact_ctx *ctx, lact_attn_layer *l,
                                        lact_attn_layer_decode *st, int64_t batch,
                                        int64_t max_tokens, int64_t max_context);
void lact_attn_layer_decode_free(lact_attn_layer_decode *st);
/* y [B, T, D] from x [B, T, D], 1 ≤ T ≤ max_tokens: the next T tokens. */
lact_status lact_attn_layer_decode_step(lact_ctx *ctx, lact_attn_layer_decode *st, lact_tensor *y,
                                        const lact_tensor *x);

#ifdef __cplusplus
}
#endif
#endif
