/* The CUDA version of the ttt op's streaming decode state
 * (kernels/ttt_decode.h): the same steps as the CPU reference
 * (kernels/cpu/ttt_ref_decode.inc.h) on all N head-batches at once, with
 * the CUDA op's own kernels and batched products. F32 activations; the
 * fast weights, momentum and rates are fp32. One device allocation made by
 * init; a feed queues work on the context's stream and allocates nothing. */
#ifndef LACT_CUDA_TTT_DECODE_CUDA_H
#define LACT_CUDA_TTT_DECODE_CUDA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "kernels/ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device buffers (fp32) of one state. Master layout as the CUDA op's
 * (ttt_kernels.cuh): per head W0 | W2 | W1. */
typedef struct lact_ttt_dec_cuda {
    int64_t n, d, dh, chunk;
    bool momentum;
    lact_ttt_muon muon;
    int64_t fill; /* tokens waiting in the buffer (< chunk) */
    void *mem;
    float *W, *M, *G, *r0, *beta;
    float *bk, *bv, *bl, *bm; /* the chunk's k, v [N, C, d]; lr0..2 [3, N, C]; β [N, C] */
    float *Zab, *Ze, *X02, *H1;
    float *ns_x[6], *ns_a[5], *ns_p[5], *ns_norm, *ns_acc;
    lact_ttt_op *update; /* {0, C, update} on the device, for the mean β */
} lact_ttt_dec_cuda;

/* w0, w2 [N, dh, d], w1 [N, d, dh]: device F32 (copied). */
lact_status lact_cuda_ttt_decode_init(lact_ctx *ctx, lact_ttt_dec_cuda *s, const float *w0,
                                      const float *w1, const float *w2, int64_t n, int64_t d,
                                      int64_t dh, int64_t chunk, bool momentum, lact_ttt_muon muon);
void lact_cuda_ttt_decode_free(lact_ttt_dec_cuda *s);
/* T tokens: o, q, k, v [N, T, d]; lr0..2, momentum [N, T] (momentum NULL
 * iff the state has none); device F32. */
lact_status lact_cuda_ttt_decode_feed(lact_ctx *ctx, lact_ttt_dec_cuda *s, float *o, const float *q,
                                      const float *k, const float *v, const float *lr0,
                                      const float *lr1, const float *lr2, const float *momentum,
                                      int64_t T);
/* The current weights into device buffers of init's shapes (any may be
 * NULL); waits for the copies. */
lact_status lact_cuda_ttt_decode_weights(const lact_ttt_dec_cuda *s, float *w0, float *w1,
                                         float *w2);

#ifdef __cplusplus
}
#endif
#endif
