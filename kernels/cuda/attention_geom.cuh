/* The attention kernels' shared geometry: the problem as the kernels see it,
 * the packed-sequence lookup and the mask ranges (kernels/attention.h), used
 * by the CUDA-core kernels (attention.cu) and the tensor-core ones
 * (attention_tc_fwd.cu, attention_tc_bwd.cu). */
#ifndef LACT_CUDA_ATTENTION_GEOM_CUH
#define LACT_CUDA_ATTENTION_GEOM_CUH

#include <stdint.h>

#include "kernels/attention.h"
#include "kernels/cuda/common.cuh"

typedef struct attn_geom {
    int64_t nh, lq, nkv, lk, d, gd, group, n_seq;
    const int32_t *cu; /* device, or NULL */
    int mask;
    int64_t window, block;
    float scale;
} attn_geom;

/* Rows [q0, q0 + nq) of q and [k0, k0 + nk) of k of the sequence that holds
 * row `row` (a query row, or a key row: packed sequences share offsets). */
static __device__ __forceinline__ void seq_of(const attn_geom &G, int64_t row, int64_t *q0,
                                              int64_t *nq, int64_t *k0, int64_t *nk) {
    if (!G.cu) {
        *q0 = 0, *nq = G.lq, *k0 = 0, *nk = G.lk;
        return;
    }
    int64_t lo = 0, hi = G.n_seq; /* largest s with cu[s] <= row */
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (G.cu[mid] <= row)
            lo = mid;
        else
            hi = mid;
    }
    *q0 = *k0 = G.cu[lo];
    *nq = *nk = (int64_t)G.cu[lo + 1] - G.cu[lo];
}

/* Keys [lo, hi) seen by the query at position p of a sequence of n keys
 * (lact_attention_key_range). */
static __device__ __forceinline__ void key_range(const attn_geom &G, int64_t p, int64_t n,
                                                 int64_t *lo, int64_t *hi) {
    *lo = 0, *hi = p + 1;
    if (G.mask == LACT_ATTN_FULL) *hi = n;
    if (G.mask == LACT_ATTN_WINDOW) *lo = p - G.window + 1 > 0 ? p - G.window + 1 : 0;
    if (G.mask == LACT_ATTN_BLOCK_CAUSAL) {
        int64_t end = (p / G.block + 1) * G.block;
        *hi = end < n ? end : n;
    }
}

/* The inverse: local query rows [lo, hi) that see key t, with queries at
 * positions off + i (off = nk − nq). */
static __device__ __forceinline__ void query_range(const attn_geom &G, int64_t t, int64_t nq,
                                                   int64_t off, int64_t *lo, int64_t *hi) {
    int64_t first = t, last = INT64_MAX; /* positions */
    if (G.mask == LACT_ATTN_FULL) first = 0;
    if (G.mask == LACT_ATTN_WINDOW) last = t + G.window;
    if (G.mask == LACT_ATTN_BLOCK_CAUSAL) first = t / G.block * G.block;
    int64_t a = first - off, b = last == INT64_MAX ? nq : last - off;
    *lo = a > 0 ? a : 0;
    *hi = b < nq ? b : nq;
    if (*hi < *lo) *hi = *lo;
}

/* Keys [lo, hi) (indices into the k rows of one batch and head) seen by
 * query row `row`; empty (0, 0) for a row past the end. */
static __device__ __forceinline__ void row_keys(const attn_geom &G, int64_t row, int *lo,
                                                int *hi) {
    *lo = *hi = 0;
    if (row < 0 || row >= G.lq) return;
    int64_t q0, nq, k0, nk, a, b;
    seq_of(G, row, &q0, &nq, &k0, &nk);
    key_range(G, nk - nq + row - q0, nk, &a, &b);
    *lo = (int)(a + k0), *hi = (int)(b + k0);
}

/* Query rows [lo, hi) that see key row `key`; empty past the end. */
static __device__ __forceinline__ void key_queries(const attn_geom &G, int64_t key, int *lo,
                                                   int *hi) {
    *lo = *hi = 0;
    if (key < 0 || key >= G.lk) return;
    int64_t q0, nq, k0, nk, a, b;
    seq_of(G, key, &q0, &nq, &k0, &nk);
    query_range(G, key - k0, nq, nk - nq, &a, &b);
    *lo = (int)(a + q0), *hi = (int)(b + q0);
}

static __device__ __forceinline__ float sigmoidf_(float x) {
    return 1.0f / (1.0f + expf(-x));
}

static inline attn_geom attn_make_geom(const lact_tensor *q, const lact_tensor *k,
                                       const lact_tensor *g, const lact_tensor *cu,
                                       const lact_attn_args *a) {
    attn_geom G;
    G.nh = q->shape[1], G.lq = q->shape[2], G.d = q->shape[3];
    G.nkv = k->shape[1], G.lk = k->shape[2], G.group = G.nh / G.nkv;
    G.gd = g ? g->shape[3] : 0;
    G.cu = cu ? (const int32_t *)cu->data : NULL;
    G.n_seq = cu ? cu->shape[0] - 1 : 1;
    G.mask = (int)a->mask, G.window = a->window, G.block = a->block;
    G.scale = lact_attention_scale(a, G.d);
    return G;
}

/* ---- the tensor-core path (BF16, head dims 64, 128 and 256) --------------- */

/* Whether the tensor-core kernels take this problem: BF16, d 64, 128 or 256
 * (the backward at 256 on the mma.sync kernels only), 16-byte aligned rows,
 * lengths that fit 32-bit row indices. */
bool attn_tc_eligible(const lact_tensor *q, const lact_tensor *k, const lact_tensor *v);

lact_status attn_tc_forward(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *y, float *lse,
                            const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *g);

/* d_q (if non-NULL) and d_k / d_v (either may be NULL) from dO = d_y ⊙ σ(g)
 * (bf16, [B, H, Lq, d]), lse and D = Σ_c d_y·y per row (F32). */
lact_status attn_tc_backward(lact_ctx *ctx, const attn_geom &G, int64_t nb, bf16 *dq, bf16 *dk,
                             bf16 *dv, const bf16 *q, const bf16 *k, const bf16 *v,
                             const bf16 *dout, const float *lse, const float *dsum);

#endif
