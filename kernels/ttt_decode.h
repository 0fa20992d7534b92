/* Streaming decode of the ttt op (specs/lact.md "Decoding"): the state a
 * generating model keeps per head, and the steps that extend it token by
 * token. The outputs equal the full op in the shifted block-causal order
 * (lact_ttt_order_causal) with the same chunk C, token for token.
 *
 * State per head-batch n in [0, N): the current fast weights W0, W1, W2
 * (fp32), the momentum buffers, the norms of the initial weights' rows (the
 * renorm's targets), and the k, v, lr0..2, β of the current unfinished
 * chunk (capacity C tokens). A token is applied with the current weights,
 * which hold only what earlier chunks taught, then buffered; when the buffer
 * holds C tokens the update runs on it (G, momentum with the mean β of the
 * chunk, Muon, W += G, row renorm) and the buffer empties.
 *
 * Where the full causal order leaves its last chunk apply-only, the decode
 * state keeps that chunk's tokens waiting in the buffer: the next tokens
 * complete it. A prefill of L tokens therefore equals the full op over those
 * L tokens and leaves the state the L+1-th token needs.
 *
 * Cost per token O(d·dh) (three products of one row) plus one update every
 * C tokens; the state is allocated once by init, nothing per token.
 * CPU and CUDA (kernels/cuda/ttt_decode_cuda.h; F32 activations there too):
 * the state lives on the context's device, and so do the tensors of every
 * call. */
#ifndef LACT_TTT_DECODE_H
#define LACT_TTT_DECODE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"
#include "kernels/ttt.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lact_ttt_dec_f32;
struct lact_ttt_dec_cuda;

typedef struct lact_ttt_decode {
    int64_t n, d, dh, chunk;
    bool momentum;
    lact_ttt_muon muon;
    int64_t pos;                    /* tokens seen so far */
    int64_t fill;                   /* of them, tokens waiting in the buffer (< chunk) */
    struct lact_ttt_dec_f32 *cpu;   /* a CPU state, or */
    struct lact_ttt_dec_cuda *cuda; /* a CUDA one */
} lact_ttt_decode;

/* A fresh state from the initial fast weights w0, w2 [N, dh, d], w1
 * [N, d, dh] (F32, copied); momentum says whether the steps will bring β. */
lact_status lact_ttt_decode_init(lact_ctx *ctx, lact_ttt_decode *s, const lact_tensor *w0,
                                 const lact_tensor *w1, const lact_tensor *w2, int64_t chunk,
                                 bool momentum, lact_ttt_muon muon);
void lact_ttt_decode_free(lact_ttt_decode *s);

/* T ≥ 1 more tokens at once (a prompt, or the tokens of any later stretch):
 *   o [N, T, d] (overwritten), q, k, v [N, T, d], lr0..2 [N, T],
 *   momentum [N, T] (NULL iff the state has no momentum). */
lact_status lact_ttt_decode_prefill(lact_ctx *ctx, lact_ttt_decode *s, lact_tensor *o,
                                    const lact_tensor *q, const lact_tensor *k,
                                    const lact_tensor *v, const lact_tensor *lr0,
                                    const lact_tensor *lr1, const lact_tensor *lr2,
                                    const lact_tensor *momentum);

/* One token: o, q, k, v [N, d]; lr0..2, momentum [N]. */
lact_status lact_ttt_decode_step(lact_ctx *ctx, lact_ttt_decode *s, lact_tensor *o,
                                 const lact_tensor *q, const lact_tensor *k, const lact_tensor *v,
                                 const lact_tensor *lr0, const lact_tensor *lr1,
                                 const lact_tensor *lr2, const lact_tensor *momentum);

/* Copies the current fast weights out (shapes as init's, on the state's
 * device; any may be NULL). */
lact_status lact_ttt_decode_weights(const lact_ttt_decode *s, lact_tensor *w0, lact_tensor *w1,
                                    lact_tensor *w2);

#ifdef __cplusplus
}
#endif
#endif
