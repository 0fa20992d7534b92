#include "kv_cache.h"

#include <string.h>

lact_status lact_kv_cache_init(lact_kv_cache *c, int64_t batch, int64_t heads, int64_t kv_heads,
                               int64_t capacity, int64_t head_dim, int64_t gate_dim) {
    memset(c, 0, sizeof *c);
    c->batch = batch;
    c->heads = heads;
    c->kv_heads = kv_heads;
    c->capacity = capacity;
    c->head_dim = head_dim;
    c->gate_dim = gate_dim;
    int64_t cache[4] = {batch, kv_heads, capacity, head_dim}, one[4] = {batch, heads, 1, head_dim};
    int64_t gone[4] = {batch, heads, 1, gate_dim};
    lact_status s = lact_tensor_alloc(&c->k, LACT_F32, LACT_CPU, 4, cache);
    if (s == LACT_OK) s = lact_tensor_alloc(&c->v, LACT_F32, LACT_CPU, 4, cache);
    if (s == LACT_OK) s = lact_tensor_alloc(&c->q1, LACT_F32, LACT_CPU, 4, one);
    if (s == LACT_OK) s = lact_tensor_alloc(&c->y1, LACT_F32, LACT_CPU, 4, one);
    if (s == LACT_OK && gate_dim > 0) s = lact_tensor_alloc(&c->g1, LACT_F32, LACT_CPU, 4, gone);
    if (s == LACT_OK) s = lact_tensor_alloc(&c->lens, LACT_I32, LACT_CPU, 1, &batch);
    if (s != LACT_OK) lact_kv_cache_free(c);
    return s;
}

void lact_kv_cache_free(lact_kv_cache *c) {
    lact_tensor_free(&c->k);
    lact_tensor_free(&c->v);
    lact_tensor_free(&c->q1);
    lact_tensor_free(&c->g1);
    lact_tensor_free(&c->y1);
    lact_tensor_free(&c->lens);
    memset(c, 0, sizeof *c);
}

static const float *row(lact_kv_rows r, int64_t b, int64_t h, int64_t t) {
    return r.p + b * r.sb + h * r.sh + t * r.st;
}

lact_status lact_kv_cache_attend(lact_ctx *ctx, lact_kv_cache *c, int64_t pos, int64_t t,
                                 lact_kv_rows q, lact_kv_rows k, lact_kv_rows v, lact_kv_rows g,
                                 lact_kv_rows out, const lact_attn_args *mask) {
    int64_t B = c->batch, H = c->heads, Hk = c->kv_heads, d = c->head_dim, gd = c->gate_dim;
    int64_t C = c->capacity, slot = pos % C;
    size_t bytes = (size_t)d * sizeof(float);
    float *kc = c->k.data, *vc = c->v.data, *q1 = c->q1.data, *g1 = c->g1.data;
    int32_t *lens = c->lens.data;
    bool gated = g.p && gd > 0;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < Hk; h++) {
            int64_t dst = ((b * Hk + h) * C + slot) * d;
            memcpy(kc + dst, row(k, b, h, t), bytes);
            memcpy(vc + dst, row(v, b, h, t), bytes);
        }
        for (int64_t h = 0; h < H; h++) {
            memcpy(q1 + (b * H + h) * d, row(q, b, h, t), bytes);
            if (gated) memcpy(g1 + (b * H + h) * gd, row(g, b, h, t), (size_t)gd * sizeof(float));
        }
        lens[b] = (int32_t)(pos + 1);
    }
    LACT_TRY(lact_attention_decode(ctx, &c->y1, NULL, &c->q1, &c->k, &c->v, gated ? &c->g1 : NULL,
                                   &c->lens, mask));
    const float *y1 = c->y1.data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            memcpy(out.p + b * out.sb + h * out.sh + t * out.st, y1 + (b * H + h) * d, bytes);
    return LACT_OK;
}
