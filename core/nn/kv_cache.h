/* A key/value cache for streaming attention, shared by the layers that
 * decode (the gated attention layer, the LaCT layer's window branch).
 * Token p of every sequence lives in slot p mod capacity, so with a window
 * mask of capacity slots it is a ring buffer. Tokens are attended one at a
 * time through lact_attention_decode, so each sees exactly the keys it saw
 * in the full forward. CPU, F32; allocated once by init. */
#ifndef LACT_NN_KV_CACHE_H
#define LACT_NN_KV_CACHE_H

#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "kernels/attention.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_kv_cache {
    int64_t batch, heads, kv_heads, capacity, head_dim, gate_dim; /* gate_dim 0: no gate */
    lact_tensor k, v;      /* [B, Hkv, capacity, d] */
    lact_tensor lens;      /* [B] I32 */
    lact_tensor q1, g1, y1; /* [B, H, 1, d | gate_dim]: one query per sequence */
} lact_kv_cache;

/* Where row (b, h, t) of a [.., d]-row tensor starts: p + b·sb + h·sh + t·st
 * (strides in elements), so callers keep their own layouts. */
typedef struct lact_kv_rows {
    float *p;
    int64_t sb, sh, st;
} lact_kv_rows;

lact_status lact_kv_cache_init(lact_kv_cache *c, int64_t batch, int64_t heads, int64_t kv_heads,
                               int64_t capacity, int64_t head_dim, int64_t gate_dim);
void lact_kv_cache_free(lact_kv_cache *c);

/* Token t of the step, at position pos of every sequence: stores its keys
 * and values (kv_heads rows), attends with its queries (and gate logits,
 * g.p may be NULL) and writes the heads' outputs to out. */
lact_status lact_kv_cache_attend(lact_ctx *ctx, lact_kv_cache *c, int64_t pos, int64_t t,
                                 lact_kv_rows q, lact_kv_rows k, lact_kv_rows v, lact_kv_rows g,
                                 lact_kv_rows out, const lact_attn_args *mask);

#ifdef __cplusplus
}
#endif
#endif
