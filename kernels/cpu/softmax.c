/* Softmax over the last dim on the CPU. */
#include <math.h>

#include "kernels/cpu/cpu_kernels.h"

lact_status lact_cpu_softmax_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    int64_t rows = lact_tensor_rows(x), c = lact_tensor_cols(x);
    const float *px = x->data;
    float *po = out->data;
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = px + r * c;
        float *yr = po + r * c;
        float mx = -INFINITY;
        for (int64_t j = 0; j < c; j++)
            mx = fmaxf(mx, xr[j]);
        double sum = 0.0;
        for (int64_t j = 0; j < c; j++) {
            yr[j] = expf(xr[j] - mx);
            sum += yr[j];
        }
        float inv = (float)(1.0 / sum);
        for (int64_t j = 0; j < c; j++)
            yr[j] *= inv;
    }
    return LACT_OK;
}

/* dx = y ⊙ (dy − Σ dy ⊙ y). */
lact_status lact_cpu_softmax_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                      const lact_tensor *out) {
    int64_t rows = lact_tensor_rows(out), c = lact_tensor_cols(out);
    const float *py = out->data, *pd = dout->data;
    float *pdx = dx->data;
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = py + r * c, *dr = pd + r * c;
        double dot = 0.0;
        for (int64_t j = 0; j < c; j++)
            dot += (double)dr[j] * yr[j];
        for (int64_t j = 0; j < c; j++)
            pdx[r * c + j] = (float)(yr[j] * (dr[j] - dot));
    }
    return LACT_OK;
}
