/* The LaCT fast-weight op (specs/lact.md): a SwiGLU fast network per head,
 * trained on the sequence itself by large-chunk updates, and read out by
 * apply steps, in the order a list of operations gives.
 *
 * Shapes, per "head-batch" n in [0, N):
 *   q, k, v       [N, L, d]    F32 (CPU)
 *   lr0, lr1, lr2 [N, L]       F32, per-token learning rates (already > 0)
 *   momentum      [N, L]       F32 in (0, 1), optional (NULL = no momentum)
 *   w0, w2        [Nw, dh, d]  F32, initial fast weights; Nw divides N and
 *   w1            [Nw, d, dh]  head n starts from those of n mod Nw, so a
 *                              batch of N / Nw sequences can share one set
 *                              per head (Nw = heads) with no copies; their
 *                              gradients are then the sums over the heads
 *                              that share them
 *   o             [N, L, d]    output; rows no apply op covers are zero
 *   state         [N, S]       F32, S = lact_ttt_state_numel(...): the fast
 *                              weights (and momentum) after each update, or
 *                              after every second one (args->save_every),
 *                              saved for the backward pass (where each
 *                              lies: lact_ttt_state_slot, _offset), in F32
 *                              or, with args->state_bf16, in BF16 two to
 *                              an element; may be NULL.
 *
 * The operations run in sequence. An operation {start, end, update, apply}
 * covers tokens [start, end):
 *   - apply:  o_t += f_W(q_t) = W1 (silu(W0 q_t) ⊙ W2 q_t) with the current W
 *             (o accumulates when apply ranges overlap);
 *   - update: one step on the whole range: G from k, v and the lrs of the
 *             range, then momentum (M ← mean_t(β_t) M + G over the range's
 *             tokens), Muon (Newton–Schulz, 5 steps), W ← W + G and the
 *             row renorm to the initial rows' norms.
 * When an operation has both, apply comes FIRST, with the weights before
 * that operation's update. Each update operation is exactly one step, so
 * the chunk size lives in the order (the order builders below split into chunks).
 *
 * Backward recomputes each update from the saved state, in reverse, and
 * propagates through the renorm (including the initial norms, which depend
 * on w0, w1, w2), Newton–Schulz and momentum. */
#ifndef LACT_TTT_H
#define LACT_TTT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_ttt_op {
    int64_t start, end; /* token range [start, end), 0 <= start < end <= L */
    bool update;
    bool apply;
} lact_ttt_op;

typedef enum lact_ttt_muon {
    LACT_TTT_MUON_OFF = 0,
    /* five steps with the per-step (a, b, c) table of the spec */
    LACT_TTT_MUON_TABLE = 1,
    /* five steps of the fixed (3.4445, −4.7750, 2.0315) */
    LACT_TTT_MUON_FIXED = 2,
} lact_ttt_muon;

typedef struct lact_ttt_args {
    const lact_ttt_op *ops;
    int64_t n_ops;
    lact_ttt_muon muon;
    /* Which weights the forward saves for the backward: 0 or 1, those after
     * every update; 2, those after every second update, the backward
     * recomputing the others (one more gradient pass per two updates for
     * about half the state). The initial weights are never saved: the
     * backward rebuilds them from w0, w1, w2. */
    int save_every;
    /* With Muon and save_every 1: the state also has room for every
     * update's Newton–Schulz iterates, which the forward keeps there and
     * the backward reads instead of running the iteration again. The CUDA
     * version uses the room with BF16 activations (the fused iteration,
     * ttt_ns_fused.cu, and the batched products alike); elsewhere it stays
     * unwritten. */
    bool keep_ns;
    /* The snapshots in BF16, two to an F32 element of the state: half the
     * state, at the precision the BF16 products read the weights in. The
     * forward still carries its weights in F32 from update to update; the
     * backward's local derivatives (renorm, momentum) then start from
     * weights rounded once, an error of the size of the BF16 products'
     * own. The CPU reference rounds the same way; the CUDA version takes
     * it with BF16 activations only. */
    bool state_bf16;
} lact_ttt_args;

/* Shifted block-causal order: chunk c = [cC, min(L, (c+1)C)) is applied
 * with the weights learnt from chunks < c, then updated on; the last chunk is
 * apply-only. Writes up to cap ops (ops may be NULL) and returns how many the
 * order has. */
int64_t lact_ttt_order_causal(lact_ttt_op *ops, int64_t cap, int64_t len, int64_t chunk);
/* Bidirectional order: updates on [0, n_ctx) in chunks of C (update-only),
 * then one apply on [0, L). Same return convention. */
int64_t lact_ttt_order_bidirectional(lact_ttt_op *ops, int64_t cap, int64_t len, int64_t n_ctx,
                                     int64_t chunk);

/* Checks the order against the sequence length, and save_every (records
 * why not). */
lact_status lact_ttt_check_args(const lact_ttt_args *args, int64_t len);
/* Number of update operations in the order. */
int64_t lact_ttt_n_updates(const lact_ttt_args *args);
/* Elements of the saved state per head: one snapshot of W0, W1, W2 (and
 * M0, M1, M2 with momentum) per saved update (lact_ttt_state_slot), then,
 * with keep_ns, the iterates' room (lact_ttt_state_ns_numel). */
int64_t lact_ttt_state_numel(const lact_ttt_args *args, bool momentum, int64_t d, int64_t dh);
/* The F32 elements per head that the snapshots take (with state_bf16 half
 * of them, rounded up): the iterates' room of a state of N heads starts N ·
 * this elements in. */
int64_t lact_ttt_state_snap_numel(const lact_ttt_args *args, bool momentum, int64_t d, int64_t dh);
/* The keep_ns room per head per update, in F32 elements: six BF16
 * iterates of the three matrices (the CUDA version's layout) and the three
 * matrices' norms, padded to four; 0 when the args keep none. After the
 * snapshots, update u's room for all N heads starts N · u · this elements
 * in. */
int64_t lact_ttt_state_ns_numel(const lact_ttt_args *args, int64_t d, int64_t dh);
/* The slot in the state of the weights after u updates (u in [0, updates]),
 * or -1 when the forward does not save them: u = 0, and with save_every 2
 * the odd u. */
int64_t lact_ttt_state_slot(const lact_ttt_args *args, int64_t u);
/* Where, in elements of the snapshots' type (F32, or BF16 with
 * state_bf16) from the start of a state of n heads, fast weight i
 * (0: W0, 1: W1, 2: W2; with moment its momentum M_i) of head h lies in
 * the state's snapshot slot. The [N, S] shape of the state gives its size
 * only: the layout is snapshot-major, each snapshot the N heads' weights (per head W0, W2, W1)
 * followed by, with momentum, their momenta in the same order, so that a
 * snapshot is the CUDA version's working layout and is read in place. */
int64_t lact_ttt_state_offset(int64_t n, bool momentum, int64_t d, int64_t dh, int64_t slot,
                              int64_t h, int i, bool moment);

/* o and state (state may be NULL) from the inputs; momentum may be NULL. */
lact_status lact_ttt_forward(lact_ctx *ctx, lact_tensor *o, lact_tensor *state,
                             const lact_tensor *q, const lact_tensor *k, const lact_tensor *v,
                             const lact_tensor *lr0, const lact_tensor *lr1, const lact_tensor *lr2,
                             const lact_tensor *momentum, const lact_tensor *w0,
                             const lact_tensor *w1, const lact_tensor *w2,
                             const lact_ttt_args *args);

/* Gradients of Σ d_o ⊙ o. Every gradient may be NULL (skipped); d_momentum
 * must be NULL when momentum is. state: what the forward saved, or NULL to
 * recompute it here. Gradients are overwritten. */
lact_status lact_ttt_backward(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k, lact_tensor *d_v,
                              lact_tensor *d_lr0, lact_tensor *d_lr1, lact_tensor *d_lr2,
                              lact_tensor *d_momentum, lact_tensor *d_w0, lact_tensor *d_w1,
                              lact_tensor *d_w2, const lact_tensor *d_o, const lact_tensor *state,
                              const lact_tensor *q, const lact_tensor *k, const lact_tensor *v,
                              const lact_tensor *lr0, const lact_tensor *lr1,
                              const lact_tensor *lr2, const lact_tensor *momentum,
                              const lact_tensor *w0, const lact_tensor *w1, const lact_tensor *w2,
                              const lact_ttt_args *args);

#ifdef __cplusplus
}
#endif
#endif
