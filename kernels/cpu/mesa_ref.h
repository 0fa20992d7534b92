/* The CPU reference of the mesa op on raw, contiguous, validated buffers, in
 * float (what lact_mesa_* runs) and in double (for finite-difference checks
 * and comparisons with an exact solve). Layouts and semantics are those of
 * kernels/mesa.h; one body (mesa_ref_*.inc.h) is compiled twice. */
#ifndef LACT_CPU_MESA_REF_H
#define LACT_CPU_MESA_REF_H

#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* b batches, h heads, len tokens, d channels; chunk ≥ 1, cg_steps ≥ 1. */
typedef struct lact_mesa_dims {
    int64_t b, h, len, d;
    int64_t chunk;
    int cg_steps;
} lact_mesa_dims;

#define LACT_MESA_REF_DECLARE(real, sfx)                                                           \
    /* q, k, v [B, H, L, d]; g, beta [B, H, L]; lambda [H, d]. */                                  \
    typedef struct lact_mesa_in_##sfx {                                                            \
        const real *q, *k, *v, *g, *beta, *lambda;                                                 \
    } lact_mesa_in_##sfx;                                                                          \
    /* Any pointer may be NULL (gradient skipped). */                                              \
    typedef struct lact_mesa_grad_##sfx {                                                          \
        real *q, *k, *v, *g, *beta, *lambda;                                                       \
    } lact_mesa_grad_##sfx;                                                                        \
    /* o [B, H, L, d]; h_last, g_last [B, H, d, d] or NULL; residual or NULL. */                   \
    lact_status lact_cpu_mesa_forward_##sfx(real *o, real *h_last, real *g_last, double *residual, \
                                            const lact_mesa_in_##sfx *in,                          \
                                            const lact_mesa_dims *dims);                           \
    /* The same, also writing the solutions x [B, H, L, d]. */                                     \
    lact_status lact_cpu_mesa_forward_x_##sfx(real *o, real *x, real *h_last, real *g_last,        \
                                              double *residual, const lact_mesa_in_##sfx *in,      \
                                              const lact_mesa_dims *dims);                         \
    lact_status lact_cpu_mesa_backward_##sfx(const lact_mesa_grad_##sfx *grad, const real *d_o,    \
                                             const lact_mesa_in_##sfx *in,                         \
                                             const lact_mesa_dims *dims);                          \
    /* One token: in's q, k, v [B, H, d], g, beta [B, H]; dims->len is 1. */                       \
    lact_status lact_cpu_mesa_decode_##sfx(real *o, real *h_state, real *g_state,                  \
                                           const lact_mesa_in_##sfx *in,                           \
                                           const lact_mesa_dims *dims);

LACT_MESA_REF_DECLARE(float, f32)
LACT_MESA_REF_DECLARE(double, f64)

#undef LACT_MESA_REF_DECLARE

#ifdef __cplusplus
}
#endif
#endif
