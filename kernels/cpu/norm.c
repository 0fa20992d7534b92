/* Row normalisations on the CPU: RMSNorm, LayerNorm and L2 normalisation.
 * x [rows, C]; statistics are accumulated in double. */
#include <math.h>

#include <stdlib.h>

#include "kernels/cpu/cpu_kernels.h"

/* dst[c] = Σ_r a[r, c] · (b ? b[r, c] : 1) · (s ? s[r] : 1), for the
 * gradients of per-channel parameters; parallel over channels. */
static void reduce_columns(float *dst, const float *a, const float *b, const float *s,
                           const float *centre, int64_t rows, int64_t c) {
#pragma omp parallel for
    for (int64_t j = 0; j < c; j++) {
        double acc = 0.0;
        for (int64_t r = 0; r < rows; r++) {
            double v = a[r * c + j];
            if (b) v *= (double)b[r * c + j] - (centre ? centre[r] : 0.0f);
            if (s) v *= s[r];
            acc += v;
        }
        dst[j] = (float)acc;
    }
}

lact_status lact_cpu_rmsnorm_forward(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd,
                                     const lact_tensor *x, const lact_tensor *w, float eps,
                                     const lact_tensor *res) {
    int64_t rows = lact_tensor_rows(x), c = lact_tensor_cols(x);
    const float *px = x->data, *pw = w ? w->data : NULL, *pr = res ? res->data : NULL;
    float *po = out->data, *ps = rstd->data;
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = px + r * c;
        double ss = 0.0;
        for (int64_t j = 0; j < c; j++)
            ss += (double)xr[j] * xr[j];
        float s = (float)(1.0 / sqrt(ss / (double)c + eps));
        ps[r] = s;
        for (int64_t j = 0; j < c; j++) {
            const float v = xr[j] * s * (pw ? pw[j] : 1.0f);
            po[r * c + j] = pr ? pr[r * c + j] + v : v;
        }
    }
    return LACT_OK;
}

lact_status lact_cpu_rmsnorm_forward_heads(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd,
                                           const lact_tensor *x, const lact_tensor *w, float eps,
                                           const lact_tensor *res) {
    int64_t n = lact_tensor_numel(x);
    float *tmp = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!tmp) return lact_fail(LACT_E_NOMEM, "rmsnorm: %lld floats of scratch", (long long)n);
    lact_tensor t = lact_tensor_view(tmp, LACT_F32, LACT_CPU, 4, x->shape);
    lact_status s = lact_cpu_rmsnorm_forward(ctx, &t, rstd, x, w, eps, res);
    if (s == LACT_OK) s = lact_cpu_permute_forward(ctx, out, &t);
    free(tmp);
    return s;
}

/* With x̂ = x·rstd and g = dout ⊙ w:
 *   dx = rstd (g − x̂ · mean(g ⊙ x̂)),  dw = Σ_rows dout ⊙ x̂. */
lact_status lact_cpu_rmsnorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                      const lact_tensor *dout, const lact_tensor *x,
                                      const lact_tensor *w, const lact_tensor *rstd,
                                      const lact_tensor *res, bool dw_acc) {
    int64_t rows = lact_tensor_rows(x), c = lact_tensor_cols(x);
    const float *px = x->data, *pw = w ? w->data : NULL, *pd = dout->data, *ps = rstd->data;
    const float *pr = res ? res->data : NULL;
    /* Parameter gradients first: dx may overwrite dout in place. */
    if (dw && dw_acc) {
        float *acc = malloc((size_t)c * sizeof(float)), *pdw = dw->data;
        if (!acc) return lact_fail(LACT_E_NOMEM, "rmsnorm backward: %lld floats", (long long)c);
        reduce_columns(acc, pd, px, ps, NULL, rows, c);
        for (int64_t j = 0; j < c; j++)
            pdw[j] += acc[j];
        free(acc);
    } else if (dw) {
        reduce_columns(dw->data, pd, px, ps, NULL, rows, c);
    }
    if (dx) {
        float *pdx = dx->data;
#pragma omp parallel for
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = px + r * c, *dr = pd + r * c;
            double s = ps[r], dot = 0.0;
            for (int64_t j = 0; j < c; j++)
                dot += dr[j] * (pw ? pw[j] : 1.0) * xr[j] * s;
            double mean_gx = c > 0 ? dot / (double)c : 0.0;
            for (int64_t j = 0; j < c; j++) {
                double g = dr[j] * (pw ? pw[j] : 1.0);
                /* Rounded before the residual is added, as a separate add
                 * would: the fused and unfused steps agree to the bit. */
                const float v = (float)(s * (g - xr[j] * s * mean_gx));
                pdx[r * c + j] = pr ? pr[r * c + j] + v : v;
            }
        }
    }
    return LACT_OK;
}

lact_status lact_cpu_layernorm_forward(lact_ctx *ctx, lact_tensor *out, lact_tensor *mean,
                                       lact_tensor *rstd, const lact_tensor *x,
                                       const lact_tensor *w, const lact_tensor *b, float eps) {
    int64_t rows = lact_tensor_rows(x), c = lact_tensor_cols(x);
    const float *px = x->data, *pw = w ? w->data : NULL, *pb = b ? b->data : NULL;
    float *po = out->data, *pm = mean->data, *ps = rstd->data;
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = px + r * c;
        double sum = 0.0, var = 0.0;
        for (int64_t j = 0; j < c; j++)
            sum += xr[j];
        double mu = c > 0 ? sum / (double)c : 0.0;
        for (int64_t j = 0; j < c; j++)
            var += (xr[j] - mu) * (xr[j] - mu);
        var = c > 0 ? var / (double)c : 0.0;
        double s = 1.0 / sqrt(var + eps);
        pm[r] = (float)mu;
        ps[r] = (float)s;
        for (int64_t j = 0; j < c; j++)
            po[r * c + j] = (float)((xr[j] - mu) * s * (pw ? pw[j] : 1.0) + (pb ? pb[j] : 0.0));
    }
    return LACT_OK;
}

/* With x̂ = (x − mean)·rstd and g = dout ⊙ w:
 *   dx = rstd (g − mean(g) − x̂ · mean(g ⊙ x̂)),
 *   dw = Σ_rows dout ⊙ x̂,  db = Σ_rows dout. */
lact_status lact_cpu_layernorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                        lact_tensor *db, const lact_tensor *dout,
                                        const lact_tensor *x, const lact_tensor *w,
                                        const lact_tensor *mean, const lact_tensor *rstd) {
    int64_t rows = lact_tensor_rows(x), c = lact_tensor_cols(x);
    const float *px = x->data, *pw = w ? w->data : NULL, *pd = dout->data;
    const float *pm = mean->data, *ps = rstd->data;
    /* Parameter gradients first: dx may overwrite dout in place. */
    if (dw) reduce_columns(dw->data, pd, px, ps, pm, rows, c);
    if (db) reduce_columns(db->data, pd, NULL, NULL, NULL, rows, c);
    if (dx) {
        float *pdx = dx->data;
#pragma omp parallel for
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = px + r * c, *dr = pd + r * c;
            double s = ps[r], mu = pm[r], sum_g = 0.0, sum_gx = 0.0;
            for (int64_t j = 0; j < c; j++) {
                double g = dr[j] * (pw ? pw[j] : 1.0);
                sum_g += g;
                sum_gx += g * (xr[j] - mu) * s;
            }
            double mean_g = c > 0 ? sum_g / (double)c : 0.0;
            double mean_gx = c > 0 ? sum_gx / (double)c : 0.0;
            for (int64_t j = 0; j < c; j++) {
                double g = dr[j] * (pw ? pw[j] : 1.0);
                double xhat = (xr[j] - mu) * s;
                pdx[r * c + j] = (float)(s * (g - mean_g - xhat * mean_gx));
            }
        }
    }
    return LACT_OK;
}

static double row_norm(const float *xr, int64_t c) {
    double ss = 0.0;
    for (int64_t j = 0; j < c; j++)
        ss += (double)xr[j] * xr[j];
    return sqrt(ss);
}

lact_status lact_cpu_l2norm_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x,
                                    float eps) {
    int64_t rows = lact_tensor_rows(x), c = lact_tensor_cols(x);
    const float *px = x->data;
    float *po = out->data;
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++) {
        double inv = 1.0 / (row_norm(px + r * c, c) + eps);
        for (int64_t j = 0; j < c; j++)
            po[r * c + j] = (float)(px[r * c + j] * inv);
    }
    return LACT_OK;
}

/* out = x / s with s = ‖x‖ + eps:
 *   dx = dout / s − x · (dout·x) / (‖x‖ s²)   (second term 0 where ‖x‖ = 0). */
lact_status lact_cpu_l2norm_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                     const lact_tensor *x, float eps) {
    int64_t rows = lact_tensor_rows(x), c = lact_tensor_cols(x);
    const float *px = x->data, *pd = dout->data;
    float *pdx = dx->data;
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = px + r * c, *dr = pd + r * c;
        double n = row_norm(xr, c), s = n + eps, dot = 0.0;
        for (int64_t j = 0; j < c; j++)
            dot += (double)dr[j] * xr[j];
        double k = n > 0.0 ? dot / (n * s * s) : 0.0;
        for (int64_t j = 0; j < c; j++)
            pdx[r * c + j] = (float)(dr[j] / s - xr[j] * k);
    }
    return LACT_OK;
}
