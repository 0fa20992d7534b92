/* Attention on the CPU, forward and decode: the direct formula, one query
 * row at a time with a running maximum (online softmax) in double, visiting
 * only the keys the mask keeps. No score matrix exists; OpenMP runs over
 * (batch, sequence, head). */
#include <stdlib.h>

#include "kernels/cpu/attention_ref.h"

/* y_i (and lse_i when non-NULL) for query qi against keys [lo, hi) of a
 * sequence whose token t sits in row t mod slots of kb and vb. gi: the
 * gate logits of the row (gd of them: d or 1) or NULL. acc: d doubles. */
static void attend_row(float *yi, float *lse_i, const float *qi, const float *kb, const float *vb,
                       int64_t slots, int64_t lo, int64_t hi, int64_t d, double scale,
                       const float *gi, int64_t gd, double *acc) {
    double m = -INFINITY, l = 0.0;
    for (int64_t c = 0; c < d; c++)
        acc[c] = 0.0;
    for (int64_t t = lo; t < hi; t++) {
        int64_t slot = t < slots ? t : t % slots;
        const float *kt = kb + slot * d, *vt = vb + slot * d;
        double s = scale * lact_attn_dot(qi, kt, d);
        if (s > m) {
            /* A new maximum: rescale what was summed against the old one. */
            double r = exp(m - s);
            l *= r;
            for (int64_t c = 0; c < d; c++)
                acc[c] *= r;
            m = s;
        }
        double p = exp(s - m);
        l += p;
        for (int64_t c = 0; c < d; c++)
            acc[c] += p * vt[c];
    }
    for (int64_t c = 0; c < d; c++) {
        double gate = gi ? lact_attn_sigmoid(gi[gd == 1 ? 0 : c]) : 1.0;
        yi[c] = (float)(acc[c] / l * gate);
    }
    if (lse_i) *lse_i = (float)(m + log(l));
}

lact_status lact_cpu_attention_forward(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                       const lact_tensor *q, const lact_tensor *k,
                                       const lact_tensor *v, const lact_tensor *g,
                                       const lact_tensor *cu_seqlens, const lact_attn_args *args) {
    const int64_t nb = q->shape[0], nh = q->shape[1], lq = q->shape[2], d = q->shape[3];
    const int64_t nkv = k->shape[1], lk = k->shape[2], group = nh / nkv;
    const int64_t gd = g ? g->shape[3] : 0;
    const int32_t *cu = cu_seqlens ? cu_seqlens->data : NULL;
    const int64_t n_seq = cu ? cu_seqlens->shape[0] - 1 : 1;
    const double scale = lact_attention_scale(args, d);
    const float *pq = q->data, *pk = k->data, *pv = v->data, *pg = g ? g->data : NULL;
    float *py = y->data, *pl = lse ? lse->data : NULL;
    const int64_t n_tasks = nb * n_seq * nh;
    int failed = 0;
#pragma omp parallel
    {
        double *acc = malloc((size_t)d * sizeof *acc);
        if (!acc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic)
        for (int64_t task = 0; task < n_tasks; task++) {
            if (!acc) continue;
            int64_t h = task % nh, s = (task / nh) % n_seq, b = task / (nh * n_seq);
            lact_attn_seq sq = lact_attn_seq_at(cu, s, lq, lk);
            int64_t kv_off = ((b * nkv + h / group) * lk + sq.k0) * d;
            for (int64_t i = 0; i < sq.nq; i++) {
                int64_t row = (b * nh + h) * lq + sq.q0 + i, lo, hi;
                lact_attention_key_range(args, sq.nk - sq.nq + i, sq.nk, &lo, &hi);
                attend_row(py + row * d, pl ? pl + row : NULL, pq + row * d, pk + kv_off,
                           pv + kv_off, sq.nk, lo, hi, d, scale, pg ? pg + row * gd : NULL, gd,
                           acc);
            }
        }
        free(acc);
    }
    if (failed) return lact_fail(LACT_E_NOMEM, "attention: out of memory for row buffers");
    return LACT_OK;
}

lact_status lact_cpu_attention_decode(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                      const lact_tensor *q, const lact_tensor *k_cache,
                                      const lact_tensor *v_cache, const lact_tensor *g,
                                      const lact_tensor *lens, const lact_attn_args *args) {
    const int64_t nb = q->shape[0], nh = q->shape[1], d = q->shape[3];
    const int64_t nkv = k_cache->shape[1], slots = k_cache->shape[2], group = nh / nkv;
    const int64_t gd = g ? g->shape[3] : 0;
    const int32_t *n = lens->data;
    const double scale = lact_attention_scale(args, d);
    const float *pq = q->data, *pk = k_cache->data, *pv = v_cache->data;
    const float *pg = g ? g->data : NULL;
    float *py = y->data, *pl = lse ? lse->data : NULL;
    int failed = 0;
#pragma omp parallel
    {
        double *acc = malloc((size_t)d * sizeof *acc);
        if (!acc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic)
        for (int64_t row = 0; row < nb * nh; row++) {
            if (!acc) continue;
            int64_t b = row / nh, h = row % nh, lo, hi;
            int64_t kv_off = (b * nkv + h / group) * slots * d;
            lact_attention_key_range(args, n[b] - 1, n[b], &lo, &hi);
            attend_row(py + row * d, pl ? pl + row : NULL, pq + row * d, pk + kv_off, pv + kv_off,
                       slots, lo, hi, d, scale, pg ? pg + row * gd : NULL, gd, acc);
        }
        free(acc);
    }
    if (failed) return lact_fail(LACT_E_NOMEM, "attention decode: out of memory for row buffers");
    return LACT_OK;
}
