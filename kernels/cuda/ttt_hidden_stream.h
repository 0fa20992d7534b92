/* The ttt op's hidden-unit passes for heads too large to keep their
 * weights in shared memory (ttt_hidden_stream.cu): the two passes of
 * ttt_hidden_fused.h and the apply's h = silu(q W0ᵀ) ⊙ (q W2ᵀ), with the
 * token rows and the weights streamed through shared memory by the copy
 * engine, so a, b (and k dG02ᵀ in the backward) stay in registers instead
 * of a round trip through memory around an element-wise pass; e (and
 * v dG1) too, or by default from a product before the pass
 * (ttt_hidden_stream_reads_e). None adds d_q or o: products afterwards
 * do. */
#ifndef LACT_CUDA_TTT_HIDDEN_STREAM_H
#define LACT_CUDA_TTT_HIDDEN_STREAM_H

#include "kernels/cuda/common.cuh"

/* Whether BF16 heads of d × dh take the apply's pass on the current
 * device: d and dh multiples of 64, heads the small-head kernels do not
 * take (ttt_apply_fused_fits), warpgroup tensor cores (ttt_fused_device);
 * LACT_TTT_HIDDEN_STREAM=0 in the environment turns it off. */
bool ttt_hidden_stream_ready(int64_t d, int64_t dh);

/* Whether N heads × Tt tokens give the pass a block (128 rows of a head
 * and its share of the hidden units, ttt_hidden_stream_cluster) for every
 * multiprocessor: with fewer the products, which split their work finer,
 * are faster. LACT_TTT_HIDDEN_STREAM=1 (or all) takes the pass whatever
 * the grid. */
bool ttt_hidden_stream_fills(int64_t N, int64_t Tt, int64_t dh);

/* How many blocks, a cluster, share one token tile, each taking every
 * cl-th slice of the hidden units and bringing 1/cl of the tile's rows to
 * all of them by multicast copies: 2 for the passes that copy x and y;
 * for those that copy only x (the apply's, and the gradient's passes
 * that read e) 1 where `items` tiles (heads × token tiles) give every
 * multiprocessor a block, else 2 (LACT_TTT_STREAM_CLUSTER=1, 2, 4 or 8
 * sets all); lowered to a power of two that divides dh / 64. */
int ttt_hidden_stream_cluster(int64_t dh, bool x_only, int64_t items);

/* How many blocks at most the passes without clusters launch, each
 * walking every so-many-th tile with its stages running on from tile to
 * tile: the multiprocessors' count, or LACT_TTT_STREAM_PERSIST (0: a block
 * a tile). */
int ttt_hidden_stream_persistent(void);

/* Whether the wide passes run part of each round's element-wise step
 * beside the next round's first steps of products
 * (LACT_TTT_STREAM_OVERLAP=1; needs d ≥ 256 and the early release): the
 * forward pass (the update's gradient and the apply's backward, reading e)
 * the second slice's step, a quarter a step over four steps, and the apply
 * two slices a round three quarters of its step over three steps, with
 * the round's a and b held as BF16 pairs meanwhile; the update's backward
 * the last quarter of its step beside the first step. */
bool ttt_hidden_stream_overlap(void);

/* Whether the apply's pass takes two slices of 64 hidden units a round
 * where each block's share of the slices is even (one m64n256 product a
 * step, which reads a quarter less of L2 and shared memory per
 * multiply-add): unless LACT_TTT_STREAM_SLICES=1. */
bool ttt_hidden_stream_two_slices(void);

/* Whether the consumers give a stage back as soon as its step's products
 * have read it, waiting for them before the next step, so that three of
 * the four stages can be in flight; or, with LACT_TTT_STREAM_RELEASE=late,
 * only once the next step's products are issued (two in flight, the
 * tensor cores never waiting between steps). */
bool ttt_hidden_stream_early_release(void);

/* Whether the gradient's passes (ttt_hidden_stream, ttt_hidden_stream_bwd
 * and _bwd_pairs) run too, whatever the grid: unless
 * LACT_TTT_HIDDEN_STREAM=apply (only the apply's pass) or 0 (none). */
bool ttt_hidden_stream_all(void);

/* Whether the update's backward writes the paired layout of the batched
 * path (ttt_hidden_stream_bwd_pairs), so that d_k and d_v stay one product
 * each: unless LACT_TTT_STREAM_WIDE=0. */
bool ttt_hidden_stream_pairs(void);

/* Whether the gradient's passes read e = y W1 (the update's backward: [e |
 * v dG1]) from their output rows, where a product writes it before the
 * pass, and take instead of y four weight blocks a step as one 256-row
 * operand (the forward two slices a round, so only where each block's
 * share of the slices is even): unless LACT_TTT_STREAM_E=0. The pass then
 * brings 48 KB a step for 2.1 M multiply-adds where it brought 56 KB for
 * 1.6 M; its bound is what L2 delivers. */
bool ttt_hidden_stream_reads_e(int64_t N, int64_t Tt, int64_t dh, bool fwd);

/* As ttt_hidden_fused without dx: out02 [N][Tt][2·dh] = [f0 | f2], out1
 * [N][Tt][dh] = f1 for the tokens t0 + [0, Tt) of x, y [N, len, d]; with
 * e_read (ttt_hidden_stream_reads_e) out1 holds y W1 on entry and y is
 * not read. */
lact_status ttt_hidden_stream(lact_ctx *ctx, const bf16 *x, const bf16 *y, const bf16 *Wc,
                              const float *l0, const float *l1, const float *l2, bf16 *out02,
                              bf16 *out1, int64_t N, int64_t len, int64_t t0, int64_t Tt, int64_t d,
                              int64_t dh, bool e_read);

/* The apply's hidden activations h [N][Tt][dh] = silu(q W0ᵀ) ⊙ (q W2ᵀ) for
 * the tokens t0 + [0, Tt) of q [N, len, d]. */
lact_status ttt_hidden_stream_apply(lact_ctx *ctx, const bf16 *q, const bf16 *Wc, bf16 *h,
                                    int64_t N, int64_t len, int64_t t0, int64_t Tt, int64_t d,
                                    int64_t dh);

/* As ttt_hidden_bwd_fused; with Wc given the kernel forms a, b, e itself
 * from the weights (zab and ze are then only written), else it reads them
 * from zab and ze. */
lact_status ttt_hidden_stream_bwd(lact_ctx *ctx, const bf16 *k, const bf16 *v, const bf16 *Wc,
                                  const bf16 *dGc, const float *l0, const float *l1,
                                  const float *l2, bf16 *zab, bf16 *ze, bf16 *dab, bf16 *de,
                                  float *dl0, float *dl1, float *dl2, int64_t N, int64_t len,
                                  int64_t t0, int64_t Tt, int64_t d, int64_t dh);

/* The update's backward in the paired layout of the batched path, from
 * Bw = per head [W0; W2; dG0; dG2] (4·dh rows of d), then [W1 | dG1] (d
 * rows of 2·dh): forms a, b, e and k dG02ᵀ, v dG1 itself (with e_read, ze
 * holds v [W1 | dG1] on entry) and writes zk [N][Tt][4·dh] = [dA dB | x0
 * x2], ze [N][Tt][2·dh] = [dE | h1], and adds the rate gradients. */
lact_status ttt_hidden_stream_bwd_pairs(lact_ctx *ctx, const bf16 *k, const bf16 *v, const bf16 *Bw,
                                        const float *l0, const float *l1, const float *l2, bf16 *zk,
                                        bf16 *ze, float *dl0, float *dl1, float *dl2, int64_t N,
                                        int64_t len, int64_t t0, int64_t Tt, int64_t d, int64_t dh,
                                        bool e_read);

/* Whether the backward pass forms a, b, e itself where they are not at
 * hand (LACT_TTT_STREAM_ABE=0: products form them first). */
bool ttt_hidden_stream_forms_abe(void);

#endif
