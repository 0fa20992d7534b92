/* Cross-entropy fused with the output projection, on the CPU. The logits
 * h · wᵀ are formed one block of rows by one chunk of the vocabulary at a
 * time (sgemm), with a running log-sum-exp, so no [N, V] tensor exists. */
#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_kernels.h"

#define XENT_DEFAULT_CHUNK 8192
#define XENT_ROW_BLOCK 256

typedef struct xent_plan {
    int64_t n, c, v, chunk, rows;
    float *logits; /* [rows, chunk] */
} xent_plan;

static lact_status xent_plan_init(xent_plan *p, const char *op, const lact_tensor *h,
                                  const lact_tensor *w, const lact_tensor *target,
                                  int64_t vocab_chunk) {
    p->n = lact_tensor_rows(h);
    p->c = lact_tensor_cols(h);
    p->v = w->shape[0];
    p->chunk = vocab_chunk > 0 ? vocab_chunk : XENT_DEFAULT_CHUNK;
    if (p->chunk > p->v) p->chunk = p->v;
    p->rows = p->n < XENT_ROW_BLOCK ? p->n : XENT_ROW_BLOCK;
    p->logits = NULL;
    const int32_t *t = target->data;
    for (int64_t i = 0; i < p->n; i++)
        if (t[i] >= p->v)
            return lact_fail(LACT_E_ARG,
                             "%s: target[%lld] = %d is not below the vocabulary size %lld", op,
                             (long long)i, (int)t[i], (long long)p->v);
    size_t bytes = (size_t)(p->rows > 0 ? p->rows : 1) * (size_t)p->chunk * sizeof(float);
    p->logits = malloc(bytes);
    if (!p->logits)
        return lact_fail(LACT_E_NOMEM, "%s: cannot allocate %zu bytes of logits", op, bytes);
    return LACT_OK;
}

/* Views of rows [r0, r0 + nr) of a row-major matrix with c columns. */
static lact_tensor rows_view(const lact_tensor *t, int64_t r0, int64_t nr, int64_t c) {
    int64_t shape[2] = {nr, c};
    return lact_tensor_view((float *)t->data + r0 * c, LACT_F32, LACT_CPU, 2, shape);
}

/* logits [nr, nv] = h[r0 : r0 + nr] · w[v0 : v0 + nv]ᵀ. */
static lact_status xent_logits(lact_ctx *ctx, const xent_plan *p, lact_tensor *logits,
                               const lact_tensor *h, const lact_tensor *w, int64_t r0, int64_t nr,
                               int64_t v0, int64_t nv) {
    int64_t shape[2] = {nr, nv};
    *logits = lact_tensor_view(p->logits, LACT_F32, LACT_CPU, 2, shape);
    lact_tensor hv = rows_view(h, r0, nr, p->c), wv = rows_view(w, v0, nv, p->c);
    return lact_cpu_matmul_forward(ctx, logits, &hv, &wv, false, true, 1.0f, 0.0f);
}

lact_status lact_cpu_xent_forward(lact_ctx *ctx, lact_tensor *loss, lact_tensor *lse,
                                  const lact_tensor *h, const lact_tensor *w,
                                  const lact_tensor *target, int64_t vocab_chunk) {
    xent_plan p;
    LACT_TRY(xent_plan_init(&p, "xent", h, w, target, vocab_chunk));
    const int32_t *pt = target->data;
    float *ploss = loss->data, *plse = lse->data;
    /* Per row of the block: running max, running Σ exp(logit − max), and
     * the target's logit. */
    float *run_max = malloc((size_t)(p.rows + 1) * sizeof(float));
    double *run_sum = malloc((size_t)(p.rows + 1) * sizeof(double));
    float *tgt = malloc((size_t)(p.rows + 1) * sizeof(float));
    lact_status st = LACT_OK;
    if (!run_max || !run_sum || !tgt) st = lact_fail(LACT_E_NOMEM, "xent: out of host memory");
    for (int64_t r0 = 0; st == LACT_OK && r0 < p.n; r0 += p.rows) {
        int64_t nr = p.n - r0 < p.rows ? p.n - r0 : p.rows;
        for (int64_t i = 0; i < nr; i++) {
            run_max[i] = -INFINITY;
            run_sum[i] = 0.0;
            tgt[i] = 0.0f;
        }
        for (int64_t v0 = 0; st == LACT_OK && v0 < p.v; v0 += p.chunk) {
            int64_t nv = p.v - v0 < p.chunk ? p.v - v0 : p.chunk;
            lact_tensor logits;
            st = xent_logits(ctx, &p, &logits, h, w, r0, nr, v0, nv);
            if (st != LACT_OK) break;
#pragma omp parallel for
            for (int64_t i = 0; i < nr; i++) {
                const float *lr = p.logits + i * nv;
                float mx = run_max[i];
                for (int64_t j = 0; j < nv; j++)
                    mx = fmaxf(mx, lr[j]);
                double sum = run_max[i] == -INFINITY ? 0.0 : run_sum[i] * exp(run_max[i] - mx);
                for (int64_t j = 0; j < nv; j++)
                    sum += exp((double)lr[j] - mx);
                run_max[i] = mx;
                run_sum[i] = sum;
                int32_t t = pt[r0 + i];
                if (t >= v0 && t < v0 + nv) tgt[i] = lr[t - v0];
            }
        }
        for (int64_t i = 0; st == LACT_OK && i < nr; i++) {
            float l = (float)(run_max[i] + log(run_sum[i]));
            plse[r0 + i] = l;
            ploss[r0 + i] = pt[r0 + i] < 0 ? 0.0f : l - tgt[i];
        }
    }
    free(run_max);
    free(run_sum);
    free(tgt);
    free(p.logits);
    return st;
}

/* dlogits[n, v] = dloss[n] (softmax[n, v] − [v = target[n]]), then
 * dh += dlogits · w and dw += dlogitsᵀ · h, chunk by chunk (dw starting
 * from zero unless acc_dw). */
static lact_status xent_backward(lact_ctx *ctx, lact_tensor *dh, lact_tensor *dw,
                                 const lact_tensor *dloss, const lact_tensor *h,
                                 const lact_tensor *w, const lact_tensor *target,
                                 const lact_tensor *lse, int64_t vocab_chunk, bool acc_dw) {
    xent_plan p;
    LACT_TRY(xent_plan_init(&p, "xent backward", h, w, target, vocab_chunk));
    const int32_t *pt = target->data;
    const float *pdl = dloss->data, *plse = lse->data;
    lact_status st = LACT_OK;
    if (dw && p.n == 0 && !acc_dw)
        for (int64_t i = 0; i < p.v * p.c; i++)
            ((float *)dw->data)[i] = 0.0f;
    for (int64_t r0 = 0; st == LACT_OK && r0 < p.n; r0 += p.rows) {
        int64_t nr = p.n - r0 < p.rows ? p.n - r0 : p.rows;
        for (int64_t v0 = 0; st == LACT_OK && v0 < p.v; v0 += p.chunk) {
            int64_t nv = p.v - v0 < p.chunk ? p.v - v0 : p.chunk;
            lact_tensor g;
            st = xent_logits(ctx, &p, &g, h, w, r0, nr, v0, nv);
            if (st != LACT_OK) break;
#pragma omp parallel for
            for (int64_t i = 0; i < nr; i++) {
                float *gr = p.logits + i * nv;
                int32_t t = pt[r0 + i];
                float scale = t < 0 ? 0.0f : pdl[r0 + i], l = plse[r0 + i];
                for (int64_t j = 0; j < nv; j++) {
                    float sm = expf(gr[j] - l);
                    gr[j] = scale * (sm - (v0 + j == t ? 1.0f : 0.0f));
                }
            }
            if (dh) {
                lact_tensor dhv = rows_view(dh, r0, nr, p.c), wv = rows_view(w, v0, nv, p.c);
                st = lact_cpu_matmul_forward(ctx, &dhv, &g, &wv, false, false, 1.0f,
                                             v0 > 0 ? 1.0f : 0.0f);
            }
            if (dw && st == LACT_OK) {
                lact_tensor dwv = rows_view(dw, v0, nv, p.c), hv = rows_view(h, r0, nr, p.c);
                st = lact_cpu_matmul_forward(ctx, &dwv, &g, &hv, true, false, 1.0f,
                                             r0 > 0 || acc_dw ? 1.0f : 0.0f);
            }
        }
    }
    free(p.logits);
    return st;
}

lact_status lact_cpu_xent_backward(lact_ctx *ctx, lact_tensor *dh, lact_tensor *dw,
                                   const lact_tensor *dloss, const lact_tensor *h,
                                   const lact_tensor *w, const lact_tensor *target,
                                   const lact_tensor *lse, int64_t vocab_chunk) {
    return xent_backward(ctx, dh, dw, dloss, h, w, target, lse, vocab_chunk, false);
}

lact_status lact_cpu_xent_forward_backward(lact_ctx *ctx, lact_tensor *loss, lact_tensor *lse,
                                           lact_tensor *dh, lact_tensor *dw,
                                           const lact_tensor *dloss, const lact_tensor *h,
                                           const lact_tensor *w, const lact_tensor *target,
                                           int64_t vocab_chunk) {
    LACT_TRY(lact_cpu_xent_forward(ctx, loss, lse, h, w, target, vocab_chunk));
    if (!dh && !dw) return LACT_OK;
    return xent_backward(ctx, dh, dw, dloss, h, w, target, lse, vocab_chunk, true);
}
