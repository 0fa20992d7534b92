/* The CPU reference of the attention op (kernels/attention.h), on validated
 * contiguous F32 tensors; same arguments as the public functions. */
#ifndef LACT_CPU_ATTENTION_REF_H
#define LACT_CPU_ATTENTION_REF_H

#include <math.h>
#include <stdint.h>

#include "kernels/attention.h"

#ifdef __cplusplus
extern "C" {
#endif

lact_status lact_cpu_attention_forward(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                       const lact_tensor *q, const lact_tensor *k,
                                       const lact_tensor *v, const lact_tensor *g,
                                       const lact_tensor *cu_seqlens, const lact_attn_args *args);
lact_status lact_cpu_attention_backward(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k,
                                        lact_tensor *d_v, lact_tensor *d_g, const lact_tensor *d_y,
                                        const lact_tensor *q, const lact_tensor *k,
                                        const lact_tensor *v, const lact_tensor *g,
                                        const lact_tensor *cu_seqlens, const lact_tensor *y,
                                        const lact_tensor *lse, const lact_attn_args *args);
lact_status lact_cpu_attention_decode(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                      const lact_tensor *q, const lact_tensor *k_cache,
                                      const lact_tensor *v_cache, const lact_tensor *g,
                                      const lact_tensor *lens, const lact_attn_args *args);

/* Query rows [q0, q0 + nq) and key rows [k0, k0 + nk) of sequence s along
 * L: the whole of L without packed sequences, else cu[s]..cu[s+1]. */
typedef struct lact_attn_seq {
    int64_t q0, nq, k0, nk;
} lact_attn_seq;

static inline lact_attn_seq lact_attn_seq_at(const int32_t *cu, int64_t s, int64_t lq, int64_t lk) {
    if (!cu) return (lact_attn_seq){0, lq, 0, lk};
    int64_t n = (int64_t)cu[s + 1] - cu[s];
    return (lact_attn_seq){cu[s], n, cu[s], n};
}

static inline double lact_attn_sigmoid(double x) {
    return 1.0 / (1.0 + exp(-x));
}

static inline double lact_attn_dot(const float *a, const float *b, int64_t d) {
    double s = 0.0;
    for (int64_t c = 0; c < d; c++)
        s += (double)a[c] * b[c];
    return s;
}

#ifdef __cplusplus
}
#endif
#endif
