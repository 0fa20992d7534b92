/* Softmax attention with an optional sigmoid output gate (specs/attention.md),
 * one op for every mask the models need; the mask is a parameter, never a
 * tensor. Design notes: docs/attention.md.
 *
 * Shapes (activations share one dtype: F32 on the CPU, F32 or BF16 on CUDA):
 *   q    [B, H,   Lq, d]
 *   k, v [B, Hkv, Lk, d]    H a multiple of Hkv: query head h reads kv head
 *                           h / (H / Hkv) (grouped-query attention)
 *   g    [B, H, Lq, d]      optional gate logits, elementwise, or
 *        [B, H, Lq, 1]      one per head and token
 *   y    [B, H, Lq, d]      y = o ⊙ sigmoid(g) (y = o without a gate)
 *   lse  [B, H, Lq] F32     log Σ_j exp(s_ij) over the keys the row sees
 *   cu_seqlens [n_seq + 1] I32, optional: packed sequences (below)
 *
 * Per query row i and key j: s_ij = scale · q_i·k_j (scale 0 means
 * 1/sqrt(d)), o_i = Σ_j softmax_j(s_ij) v_j over the keys the mask keeps.
 *
 * Positions. Keys sit at positions 0..Lk-1. Queries are aligned to the END
 * of the keys: query i sits at position p = Lk − Lq + i (Lq ≤ Lk), so a
 * decode step (Lq = 1) or a suffix of new queries sees the earlier keys as
 * its past. With Lq = Lk, p = i.
 *
 * Masks, for query position p and key position j (every one keeps key p, so
 * no row is empty):
 *   FULL          all j
 *   CAUSAL        j ≤ p
 *   WINDOW w      p − w < j ≤ p                (w ≥ 1)
 *   BLOCK_CAUSAL  ⌊j / b⌋ ≤ ⌊p / b⌋            (b ≥ 1; frames of a block
 *                                              see each other and the past)
 * Each keeps a contiguous range of keys (lact_attention_key_range), which
 * the kernels visit alone: window and block masks cost O(L·w), not O(L²).
 *
 * Packed variable-length batches: with cu_seqlens, B = 1, Lq = Lk = T and
 * sequence s occupies tokens [cu[s], cu[s+1]) of q, k, v, g and y
 * (cu[0] = 0, non-decreasing, cu[n_seq] = T; an empty sequence is allowed).
 * Positions and masks restart at 0 in each sequence; no token sees another
 * sequence.
 *
 * RMSNorm of q and k and RoPE are separate ops (lact_rmsnorm_*,
 * lact_rope_*): the attention layer composes them before this op. */
#ifndef LACT_ATTENTION_H
#define LACT_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lact_attn_mask {
    LACT_ATTN_FULL = 0,
    LACT_ATTN_CAUSAL = 1,
    LACT_ATTN_WINDOW = 2,
    LACT_ATTN_BLOCK_CAUSAL = 3,
} lact_attn_mask;

typedef struct lact_attn_args {
    lact_attn_mask mask;
    int64_t window; /* WINDOW: keys p − window < j ≤ p */
    int64_t block;  /* BLOCK_CAUSAL: block size */
    float scale;    /* 0: 1 / sqrt(d) */
} lact_attn_args;

/* The keys [*lo, *hi) that the query at position p (0 ≤ p < n) of a
 * sequence of n keys sees under the mask. */
void lact_attention_key_range(const lact_attn_args *args, int64_t p, int64_t n, int64_t *lo,
                              int64_t *hi);
/* The (query, key) pairs one head of a sequence of n tokens computes under
 * the mask: what the FLOP counts of the benchmarks are made of. */
double lact_attention_pairs(const lact_attn_args *args, int64_t n);
/* The scale the op uses for head dim d. */
float lact_attention_scale(const lact_attn_args *args, int64_t d);

/* Shapes, dtypes and options, without touching data (the op table's plan
 * and the kernels' checks share it). g and cu_seqlens may be NULL. */
lact_status lact_attention_check_shapes(const char *op, const lact_tensor *q, const lact_tensor *k,
                                        const lact_tensor *v, const lact_tensor *g,
                                        const lact_tensor *cu_seqlens, const lact_attn_args *args);

/* y and lse from q, k, v (g, cu_seqlens may be NULL; lse may be NULL when
 * no backward follows). */
lact_status lact_attention_forward(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                   const lact_tensor *q, const lact_tensor *k, const lact_tensor *v,
                                   const lact_tensor *g, const lact_tensor *cu_seqlens,
                                   const lact_attn_args *args);

/* Gradients of Σ d_y ⊙ y. y and lse are what the forward wrote: the
 * probabilities are recomputed from lse, and the ungated output is never
 * needed, since with dO = d_y ⊙ σ(g):
 *   Σ_c dO_ic o_ic = Σ_c d_y_ic y_ic,   d_g = d_y ⊙ y ⊙ (1 − σ(g))
 * (summed over c for a per-head gate). Any gradient may be NULL; d_g must be
 * NULL without g. d_k, d_v sum over the query heads of a group. */
lact_status lact_attention_backward(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k,
                                    lact_tensor *d_v, lact_tensor *d_g, const lact_tensor *d_y,
                                    const lact_tensor *q, const lact_tensor *k,
                                    const lact_tensor *v, const lact_tensor *g,
                                    const lact_tensor *cu_seqlens, const lact_tensor *y,
                                    const lact_tensor *lse, const lact_attn_args *args);

/* One decode step: one new query per sequence against a key/value cache.
 *   q, g  [B, H, 1, d] / [B, H, 1, d or 1];  y [B, H, 1, d];  lse [B, H, 1]
 *         F32 or NULL
 *   k_cache, v_cache [B, Hkv, C, d]
 *   lens  [B] I32: tokens of sequence b so far, the new one included
 *         (its k and v already written to the cache), lens[b] ≥ 1
 * Cache layout: token t of a sequence lives in slot t mod C. For the
 * window mask this is a ring buffer, and C = w slots suffice (C ≥
 * min(w, lens[b]) is required); for the other masks the cache is linear and
 * C ≥ lens[b]. The query sits at position lens[b] − 1 and sees the keys the
 * mask keeps among tokens 0..lens[b]−1: the result equals the last row of
 * lact_attention_forward over those lens[b] tokens. CPU and CUDA (head
 * dims up to 256). */
lact_status lact_attention_decode(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                  const lact_tensor *q, const lact_tensor *k_cache,
                                  const lact_tensor *v_cache, const lact_tensor *g,
                                  const lact_tensor *lens, const lact_attn_args *args);

#ifdef __cplusplus
}
#endif
#endif
