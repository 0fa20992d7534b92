/* The swap of the two middle dims on the CPU: out[a, c, b, e] = x[a, b, c, e]
 * for x [A, B, C, E], out [A, C, B, E]. */
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"

lact_status lact_cpu_permute_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    int64_t A = x->shape[0], B = x->shape[1], C = x->shape[2], E = x->shape[3];
    const float *src = x->data;
    float *dst = out->data;
    if (lact_tensor_numel(x) == 0) return LACT_OK;
    /* With B or C equal to 1 the swap moves nothing. */
    if (B == 1 || C == 1) {
        memcpy(dst, src, lact_tensor_nbytes(x));
        return LACT_OK;
    }
    /* One output row (a, c) of B·E elements per iteration: writes are
     * sequential, reads stride by C·E. */
#pragma omp parallel for
    for (int64_t ac = 0; ac < A * C; ac++) {
        int64_t a = ac / C, c = ac % C;
        const float *s = src + (a * B * C + c) * E;
        float *d = dst + ac * B * E;
        if (E == 1) {
            for (int64_t b = 0; b < B; b++)
                d[b] = s[b * C];
        } else {
            for (int64_t b = 0; b < B; b++)
                memcpy(d + b * E, s + b * C * E, (size_t)E * sizeof(float));
        }
    }
    return LACT_OK;
}
