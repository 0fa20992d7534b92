/* The key/value cache: a token's rows move between the step's tensors and
 * the cache through the slice op, so the same code runs on either device. */
#include "kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/device.h"
#include "kernels/kernels.h"

lact_status lact_kv_cache_init(lact_kv_cache *c, lact_device dev, int64_t batch, int64_t heads,
                               int64_t kv_heads, int64_t capacity, int64_t head_dim,
                               int64_t gate_dim) {
    memset(c, 0, sizeof *c);
    c->batch = batch;
    c->heads = heads;
    c->kv_heads = kv_heads;
    c->capacity = capacity;
    c->head_dim = head_dim;
    c->gate_dim = gate_dim;
    c->device = dev;
    int64_t cache[4] = {batch, kv_heads, capacity, head_dim}, one[4] = {batch, heads, 1, head_dim};
    int64_t kv1[4] = {batch, kv_heads, 1, head_dim}, gone[4] = {batch, heads, 1, gate_dim};
    lact_status s = lact_tensor_alloc(&c->k, LACT_F32, dev, 4, cache);
    if (s == LACT_OK) s = lact_tensor_alloc(&c->v, LACT_F32, dev, 4, cache);
    if (s == LACT_OK) s = lact_tensor_alloc(&c->q1, LACT_F32, dev, 4, one);
    if (s == LACT_OK) s = lact_tensor_alloc(&c->y1, LACT_F32, dev, 4, one);
    if (s == LACT_OK) s = lact_tensor_alloc(&c->k1, LACT_F32, dev, 4, kv1);
    if (s == LACT_OK) s = lact_tensor_alloc(&c->v1, LACT_F32, dev, 4, kv1);
    if (s == LACT_OK && gate_dim > 0) s = lact_tensor_alloc(&c->g1, LACT_F32, dev, 4, gone);
    if (s == LACT_OK) s = lact_tensor_alloc(&c->lens, LACT_I32, dev, 1, &batch);
    if (s == LACT_OK && !(c->lens_host = calloc((size_t)batch, sizeof(int32_t))))
        s = lact_fail(LACT_E_NOMEM, "kv cache: out of memory");
    if (s != LACT_OK) lact_kv_cache_free(c);
    return s;
}

void lact_kv_cache_free(lact_kv_cache *c) {
    lact_tensor_free(&c->k);
    lact_tensor_free(&c->v);
    lact_tensor_free(&c->q1);
    lact_tensor_free(&c->g1);
    lact_tensor_free(&c->y1);
    lact_tensor_free(&c->k1);
    lact_tensor_free(&c->v1);
    lact_tensor_free(&c->lens);
    free(c->lens_host);
    memset(c, 0, sizeof *c);
}

/* one [B, heads, 1, w] buffer seen in the step's layout with T = 1. */
static lact_tensor as_layout(const lact_tensor *one, lact_kv_layout layout) {
    int64_t B = one->shape[0], h = one->shape[1], w = one->shape[3];
    int64_t tm[4] = {B, 1, h, w};
    return layout == LACT_KV_TOKEN_MAJOR
               ? lact_tensor_view(one->data, one->dtype, one->device, 4, tm)
               : *one;
}

/* The [B, heads, 1, w] rows of token t of x: x itself when the step has one
 * token (both layouts are then that shape), else copied into one. */
static lact_status token_rows(lact_ctx *ctx, lact_tensor *rows, const lact_tensor *one,
                              const lact_tensor *x, lact_kv_layout layout, int64_t t) {
    int dim = layout == LACT_KV_TOKEN_MAJOR ? 1 : 2;
    if (x->shape[dim] == 1) {
        *rows = lact_tensor_view(x->data, x->dtype, x->device, 4, one->shape);
        return LACT_OK;
    }
    lact_tensor view = as_layout(one, layout);
    *rows = *one;
    return lact_slice_forward(ctx, &view, x, dim, t);
}

lact_status lact_kv_cache_attend(lact_ctx *ctx, lact_kv_cache *c, int64_t pos, int64_t t,
                                 lact_kv_layout layout, const lact_tensor *q, const lact_tensor *k,
                                 const lact_tensor *v, const lact_tensor *g, lact_tensor *out,
                                 const lact_attn_args *mask) {
    int dim = layout == LACT_KV_TOKEN_MAJOR ? 1 : 2;
    const lact_tensor *ts[4] = {q, k, v, out};
    for (int i = 0; i < 4; i++)
        if (ts[i]->ndim != 4 || t < 0 || t >= ts[i]->shape[dim])
            return lact_fail(LACT_E_ARG,
                             "kv cache: the step's tensors must be 4-D, with token %lld",
                             (long long)t);
    bool gated = g && c->gate_dim > 0;
    int64_t slot = pos % c->capacity;
    lact_tensor kr, vr, qr, gr;
    LACT_TRY(token_rows(ctx, &kr, &c->k1, k, layout, t));
    LACT_TRY(token_rows(ctx, &vr, &c->v1, v, layout, t));
    LACT_TRY(lact_slice_assign(ctx, &c->k, &kr, 2, slot));
    LACT_TRY(lact_slice_assign(ctx, &c->v, &vr, 2, slot));
    LACT_TRY(token_rows(ctx, &qr, &c->q1, q, layout, t));
    if (gated) LACT_TRY(token_rows(ctx, &gr, &c->g1, g, layout, t));
    for (int64_t b = 0; b < c->batch; b++)
        c->lens_host[b] = (int32_t)(pos + 1);
    LACT_TRY(lact_mem_copy(c->lens.data, c->device, c->lens_host, LACT_CPU,
                           (size_t)c->batch * sizeof(int32_t)));
    /* One token: the output rows are out itself, as for the inputs. */
    bool direct = out->shape[dim] == 1;
    lact_tensor yr =
        direct ? lact_tensor_view(out->data, out->dtype, out->device, 4, c->y1.shape) : c->y1;
    LACT_TRY(lact_attention_decode(ctx, &yr, NULL, &qr, &c->k, &c->v, gated ? &gr : NULL, &c->lens,
                                   mask));
    if (direct) return LACT_OK;
    lact_tensor y = as_layout(&c->y1, layout);
    return lact_slice_assign(ctx, out, &y, dim, t);
}
