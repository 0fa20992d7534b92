/* A key/value cache for streaming attention, shared by the layers that
 * decode (the gated attention layer, the LaCT layer's window branch).
 * Token p of every sequence lives in slot p mod capacity, so with a window
 * mask of capacity slots it is a ring buffer. Tokens are attended one at a
 * time through lact_attention_decode, so each sees exactly the keys it saw
 * in the full forward. F32, on the CPU or a CUDA device (every tensor of a
 * call on the cache's device); allocated once by init. */
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

/* How a step's rows of T tokens are laid out: token-major [B, T, heads, ·]
 * (the attention layer's projections) or head-major [B, heads, T, ·] (the
 * LaCT layer's attention branch). */
typedef enum lact_kv_layout { LACT_KV_TOKEN_MAJOR = 1, LACT_KV_HEAD_MAJOR = 2 } lact_kv_layout;

typedef struct lact_kv_cache {
    int64_t batch, heads, kv_heads, capacity, head_dim, gate_dim; /* gate_dim 0: no gate */
    lact_device device;
    lact_tensor k, v;       /* [B, Hkv, capacity, d] */
    lact_tensor lens;       /* [B] I32 */
    lact_tensor q1, g1, y1; /* [B, H, 1, d | gate_dim]: one query per sequence */
    lact_tensor k1, v1;     /* [B, Hkv, 1, d]: the token's keys and values on their way in */
    int32_t *lens_host;     /* [B]: lens as written */
} lact_kv_cache;

lact_status lact_kv_cache_init(lact_kv_cache *c, lact_device dev, int64_t batch, int64_t heads,
                               int64_t kv_heads, int64_t capacity, int64_t head_dim,
                               int64_t gate_dim);
void lact_kv_cache_free(lact_kv_cache *c);

/* Token t of a step of T tokens, at position pos of every sequence: stores
 * its keys and values, attends with its queries (and gate logits; g may be
 * NULL) and writes the heads' outputs to token t of out. q, out [B, T, H, d],
 * k, v [B, T, Hkv, d], g [B, T, H, gate_dim] token-major, or with T and
 * the heads swapped head-major; 4-D, contiguous. */
lact_status lact_kv_cache_attend(lact_ctx *ctx, lact_kv_cache *c, int64_t pos, int64_t t,
                                 lact_kv_layout layout, const lact_tensor *q, const lact_tensor *k,
                                 const lact_tensor *v, const lact_tensor *g, lact_tensor *out,
                                 const lact_attn_args *mask);

#ifdef __cplusplus
}
#endif
#endif
