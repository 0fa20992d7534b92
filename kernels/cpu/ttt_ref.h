/* The CPU reference of the ttt op on raw, contiguous, validated buffers, in
 * float (what lact_ttt_* runs) and in double (for finite-difference checks).
 * Layouts and semantics are those of kernels/ttt.h; one body
 * (ttt_ref_*.inc.h) is compiled twice. */
#ifndef LACT_CPU_TTT_REF_H
#define LACT_CPU_TTT_REF_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/status.h"
#include "kernels/ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_ttt_dims {
    int64_t n, len, d, dh;
    int64_t wn; /* heads of the initial weights (lact_ttt_forward's Nw; 0: n) */
} lact_ttt_dims;

#define LACT_TTT_REF_DECLARE(real, sfx)                                                            \
    typedef struct lact_ttt_in_##sfx {                                                             \
        const real *q, *k, *v, *lr0, *lr1, *lr2;                                                   \
        const real *momentum; /* NULL: no momentum */                                              \
        const real *w0, *w1, *w2;                                                                  \
    } lact_ttt_in_##sfx;                                                                           \
    /* Any pointer may be NULL (gradient skipped). */                                              \
    typedef struct lact_ttt_grad_##sfx {                                                           \
        real *q, *k, *v, *lr0, *lr1, *lr2, *momentum, *w0, *w1, *w2;                               \
    } lact_ttt_grad_##sfx;                                                                         \
    /* o [N, L, d]; state [N, S] or NULL. */                                                       \
    lact_status lact_cpu_ttt_forward_##sfx(real *o, real *state, const lact_ttt_in_##sfx *in,      \
                                           const lact_ttt_dims *dims, const lact_ttt_args *args);  \
    /* state: as the forward wrote it (required). */                                               \
    lact_status lact_cpu_ttt_backward_##sfx(const lact_ttt_grad_##sfx *grad, const real *d_o,      \
                                            const real *state, const lact_ttt_in_##sfx *in,        \
                                            const lact_ttt_dims *dims, const lact_ttt_args *args); \
    /* Streaming decode state of n heads (ttt_ref_decode.inc.h). */                                \
    typedef struct lact_ttt_dec_##sfx {                                                            \
        int64_t n, d, dh, chunk;                                                                   \
        bool momentum;                                                                             \
        lact_ttt_muon muon;                                                                        \
        int64_t fill; /* tokens of the unfinished chunk in the buffer */                           \
        int64_t pos;  /* tokens seen */                                                            \
        real *mem;    /* per head: W, M, initial row norms, the buffer */                          \
        void *ws;     /* the workspace */                                                          \
    } lact_ttt_dec_##sfx;                                                                          \
    /* w0, w2 [n, dh, d], w1 [n, d, dh]: the initial fast weights. */                              \
    lact_status lact_cpu_ttt_decode_init_##sfx(lact_ttt_dec_##sfx *s, const real *w0,              \
                                               const real *w1, const real *w2, int64_t n,          \
                                               int64_t d, int64_t dh, int64_t chunk,               \
                                               bool momentum, lact_ttt_muon muon);                 \
    void lact_cpu_ttt_decode_free_##sfx(lact_ttt_dec_##sfx *s);                                    \
    /* o [n, T, d] for T more tokens: q, k, v [n, T, d], lrs and momentum                          \
     * [n, T] in `in` (its w0..w2 are unused; momentum NULL iff the state                          \
     * has none). */                                                                               \
    lact_status lact_cpu_ttt_decode_feed_##sfx(lact_ttt_dec_##sfx *s, real *o,                     \
                                               const lact_ttt_in_##sfx *in, int64_t T);            \
    /* The current fast weights (any output may be NULL). */                                       \
    void lact_cpu_ttt_decode_weights_##sfx(const lact_ttt_dec_##sfx *s, real *w0, real *w1,        \
                                           real *w2);

LACT_TTT_REF_DECLARE(float, f32)
LACT_TTT_REF_DECLARE(double, f64)

#undef LACT_TTT_REF_DECLARE

#ifdef __cplusplus
}
#endif
#endif
