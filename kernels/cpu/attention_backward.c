/* Attention backward on the CPU: the direct formula, row by row, with the
 * probabilities recomputed from the saved lse:
 *   P_ij = exp(s_ij − lse_i),   dO_i = d_y_i ⊙ σ(g_i),   D_i = Σ_c d_y_ic y_ic
 *   dS_ij = P_ij (dO_i·v_j − D_i)
 *   d_q_i = scale Σ_j dS_ij k_j,  d_k_j = scale Σ_i dS_ij q_i,  d_v_j = Σ_i P_ij dO_i
 *   d_g = d_y ⊙ y ⊙ (1 − σ(g))   (summed over channels for a per-head gate)
 * OpenMP runs over (batch, sequence, key/value head): one task owns the
 * d_k, d_v rows of its sequence and every query head of its group. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/attention_ref.h"

typedef struct bwd_view {
    const float *q, *k, *v, *g, *y, *dy, *lse;
    float *dq, *dk, *dv, *dg;
    int64_t nh, lq, nkv, lk, d, gd, group;
    double scale;
    const lact_attn_args *args;
} bwd_view;

/* Scratch of one task: dO and the d_q accumulator [d], and d_k, d_v
 * accumulators for the keys of the sequence [nk, d]. */
typedef struct bwd_scratch {
    double *d_o, *dq, *dk, *dv;
} bwd_scratch;

/* The gate's part of query row `row`: fills dO (d_y ⊙ σ(g)), writes d_g,
 * returns D = Σ_c d_y y. */
static double gate_row(const bwd_view *w, int64_t row, double *d_o) {
    const int64_t d = w->d;
    const float *dy = w->dy + row * d, *y = w->y + row * d;
    const float *g = w->g ? w->g + row * w->gd : NULL;
    double dd = lact_attn_dot(dy, y, d);
    for (int64_t c = 0; c < d; c++)
        d_o[c] = dy[c] * (g ? lact_attn_sigmoid(g[w->gd == 1 ? 0 : c]) : 1.0);
    if (w->dg && w->gd == 1) {
        w->dg[row] = (float)(dd * (1.0 - lact_attn_sigmoid(g[0])));
    } else if (w->dg) {
        for (int64_t c = 0; c < d; c++)
            w->dg[row * d + c] = (float)((double)dy[c] * y[c] * (1.0 - lact_attn_sigmoid(g[c])));
    }
    return dd;
}

/* One task: sequence sq of batch b, key/value head hk. */
static void backward_task(const bwd_view *w, int64_t b, int64_t hk, lact_attn_seq sq,
                          bwd_scratch *sc) {
    const int64_t d = w->d;
    const int64_t kv_off = ((b * w->nkv + hk) * w->lk + sq.k0) * d;
    const float *kb = w->k + kv_off, *vb = w->v + kv_off;
    bool want_kv = w->dk || w->dv;
    if (want_kv) {
        memset(sc->dk, 0, (size_t)(sq.nk * d) * sizeof *sc->dk);
        memset(sc->dv, 0, (size_t)(sq.nk * d) * sizeof *sc->dv);
    }
    for (int64_t h = hk * w->group; h < (hk + 1) * w->group; h++) {
        for (int64_t i = 0; i < sq.nq; i++) {
            int64_t row = (b * w->nh + h) * w->lq + sq.q0 + i, lo, hi;
            const float *qi = w->q + row * d;
            double dd = gate_row(w, row, sc->d_o);
            if (!w->dq && !want_kv) continue;
            lact_attention_key_range(w->args, sq.nk - sq.nq + i, sq.nk, &lo, &hi);
            double lse = w->lse[row];
            for (int64_t c = 0; c < d; c++)
                sc->dq[c] = 0.0;
            for (int64_t t = lo; t < hi; t++) {
                const float *kt = kb + t * d, *vt = vb + t * d;
                double p = exp(w->scale * lact_attn_dot(qi, kt, d) - lse);
                double dp = 0.0;
                for (int64_t c = 0; c < d; c++)
                    dp += sc->d_o[c] * vt[c];
                double ds = p * (dp - dd);
                for (int64_t c = 0; c < d; c++)
                    sc->dq[c] += ds * kt[c];
                if (!want_kv) continue;
                double *dkt = sc->dk + t * d, *dvt = sc->dv + t * d;
                for (int64_t c = 0; c < d; c++) {
                    dkt[c] += w->scale * ds * qi[c];
                    dvt[c] += p * sc->d_o[c];
                }
            }
            if (w->dq)
                for (int64_t c = 0; c < d; c++)
                    w->dq[row * d + c] = (float)(w->scale * sc->dq[c]);
        }
    }
    for (int64_t j = 0; j < sq.nk * d; j++) {
        if (w->dk) w->dk[kv_off + j] = (float)sc->dk[j];
        if (w->dv) w->dv[kv_off + j] = (float)sc->dv[j];
    }
}

lact_status lact_cpu_attention_backward(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k,
                                        lact_tensor *d_v, lact_tensor *d_g, const lact_tensor *d_y,
                                        const lact_tensor *q, const lact_tensor *k,
                                        const lact_tensor *v, const lact_tensor *g,
                                        const lact_tensor *cu_seqlens, const lact_tensor *y,
                                        const lact_tensor *lse, const lact_attn_args *args) {
    bwd_view w = {
        .q = q->data,
        .k = k->data,
        .v = v->data,
        .g = g ? g->data : NULL,
        .y = y->data,
        .dy = d_y->data,
        .lse = lse->data,
        .dq = d_q ? d_q->data : NULL,
        .dk = d_k ? d_k->data : NULL,
        .dv = d_v ? d_v->data : NULL,
        .dg = d_g ? d_g->data : NULL,
        .nh = q->shape[1],
        .lq = q->shape[2],
        .nkv = k->shape[1],
        .lk = k->shape[2],
        .d = q->shape[3],
        .gd = g ? g->shape[3] : 0,
        .group = q->shape[1] / k->shape[1],
        .scale = lact_attention_scale(args, q->shape[3]),
        .args = args,
    };
    const int32_t *cu = cu_seqlens ? cu_seqlens->data : NULL;
    const int64_t nb = q->shape[0], n_seq = cu ? cu_seqlens->shape[0] - 1 : 1;
    const int64_t n_tasks = nb * n_seq * w.nkv;
    int failed = 0;
#pragma omp parallel for schedule(dynamic)
    for (int64_t task = 0; task < n_tasks; task++) {
        int64_t hk = task % w.nkv, s = (task / w.nkv) % n_seq, b = task / (w.nkv * n_seq);
        lact_attn_seq sq = lact_attn_seq_at(cu, s, w.lq, w.lk);
        size_t kv = (size_t)(sq.nk * w.d);
        bwd_scratch sc = {
            .d_o = malloc((size_t)w.d * sizeof(double)),
            .dq = malloc((size_t)w.d * sizeof(double)),
            .dk = malloc((kv ? kv : 1) * sizeof(double)),
            .dv = malloc((kv ? kv : 1) * sizeof(double)),
        };
        if (sc.d_o && sc.dq && sc.dk && sc.dv) {
            backward_task(&w, b, hk, sq, &sc);
        } else {
#pragma omp atomic write
            failed = 1;
        }
        free(sc.d_o);
        free(sc.dq);
        free(sc.dk);
        free(sc.dv);
    }
    if (failed) return lact_fail(LACT_E_NOMEM, "attention backward: out of memory for scratch");
    return LACT_OK;
}
