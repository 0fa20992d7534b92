/* Rotary position embedding on the CPU, rotate-half convention.
 * x [B, L, H, D] or [B, L, D]; token l sits at position pos0 + l and the
 * pair (i, i + D/2) turns by (pos0 + l) · theta^(−2i/D). */
#include <math.h>

#include "kernels/cpu/cpu_kernels.h"

/* Rotates every pair of x by sign · angle into out (out may be x). Angles
 * are formed in double so that large positions keep their precision. */
static void rope_rotate(float *out, const float *x, const lact_tensor *shape, int64_t pos0,
                        double theta, double sign) {
    int nd = shape->ndim;
    int64_t b = shape->shape[0], l = shape->shape[1];
    int64_t h = nd == 4 ? shape->shape[2] : 1, d = shape->shape[nd - 1], half = d / 2;
#pragma omp parallel for
    for (int64_t bl = 0; bl < b * l; bl++) {
        double p = (double)(pos0 + bl % l);
        for (int64_t i = 0; i < half; i++) {
            double angle = sign * p * pow(theta, -2.0 * (double)i / (double)d);
            float cs = (float)cos(angle), sn = (float)sin(angle);
            for (int64_t hh = 0; hh < h; hh++) {
                int64_t base = (bl * h + hh) * d;
                float x1 = x[base + i], x2 = x[base + i + half];
                out[base + i] = x1 * cs - x2 * sn;
                out[base + i + half] = x2 * cs + x1 * sn;
            }
        }
    }
}

lact_status lact_cpu_rope_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x,
                                  int64_t pos0, float theta) {
    rope_rotate(out->data, x->data, x, pos0, theta, 1.0);
    return LACT_OK;
}

lact_status lact_cpu_rope_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                   int64_t pos0, float theta) {
    rope_rotate(dx->data, dout->data, dout, pos0, theta, -1.0);
    return LACT_OK;
}
