/* Reductions on the CPU: row sums and the global L2 norm (double
 * accumulation). */
#include <math.h>

#include "kernels/cpu/cpu_kernels.h"

lact_status lact_cpu_sum_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    int64_t rows = lact_tensor_rows(x), c = lact_tensor_cols(x);
    const float *px = x->data;
    float *po = out->data;
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++) {
        double acc = 0.0;
        for (int64_t j = 0; j < c; j++)
            acc += px[r * c + j];
        po[r] = (float)acc;
    }
    return LACT_OK;
}

lact_status lact_cpu_sum_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout) {
    int64_t rows = lact_tensor_rows(dx), c = lact_tensor_cols(dx);
    const float *pd = dout->data;
    float *pdx = dx->data;
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < c; j++)
            pdx[r * c + j] = pd[r];
    return LACT_OK;
}

lact_status lact_cpu_norm_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    int64_t n = lact_tensor_numel(x);
    const float *px = x->data;
    double ss = 0.0;
#pragma omp parallel for reduction(+ : ss)
    for (int64_t i = 0; i < n; i++)
        ss += (double)px[i] * px[i];
    ((float *)out->data)[0] = (float)sqrt(ss);
    return LACT_OK;
}

/* dx = dout · x / ‖x‖, 0 where ‖x‖ = 0. */
lact_status lact_cpu_norm_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                   const lact_tensor *x, const lact_tensor *out) {
    int64_t n = lact_tensor_numel(x);
    const float *px = x->data;
    float *pdx = dx->data;
    float nrm = ((const float *)out->data)[0];
    float k = nrm > 0.0f ? ((const float *)dout->data)[0] / nrm : 0.0f;
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        pdx[i] = k * px[i];
    return LACT_OK;
}
