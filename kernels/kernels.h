/* The one interface every op is called through.
 *
 * Each op X has lact_X_forward and, where it has inputs to differentiate,
 * lact_X_backward, with the same argument order: outputs first, then inputs,
 * then sizes and options. The function checks shapes, dtypes and devices,
 * then runs the CPU reference (kernels/cpu) or the CUDA version
 * (kernels/cuda) according to the tensors' device; all tensors of one call
 * live on ctx->device.
 *
 * Conventions
 * - Tensors are contiguous. "rows" = product of all dims but the last.
 * - Backward overwrites the gradients it is given; any gradient pointer may
 *   be NULL to skip it.
 * - Dtypes. Activations (x, out, dx, dout) share one dtype: F32 on the CPU,
 *   F32 or BF16 on CUDA. Parameters (norm weights, biases), saved statistics
 *   (rstd, mean, lse), losses and parameter gradients are F32. Index inputs
 *   (ids, targets) are I32. All arithmetic accumulates in fp32.
 * - The CPU reference is the definition; CUDA must agree with it to the
 *   tolerance of its dtype. */
#ifndef LACT_KERNELS_H
#define LACT_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- matrix products ---------------------------------------------------- */

/* out = alpha * op(a) · op(b) + beta * out, batched.
 * a: [..., M, K] ([..., K, M] when ta), b: [..., K, N] ([..., N, K] when tb),
 * out: [..., M, N]. Leading (batch) dims of a and out are equal; b's are the
 * same or absent (one matrix broadcast over the batch). 2-D is batch 1.
 * CPU: F32 (OpenBLAS sgemm). CUDA: a, b both F32 (fp32 compute) or both BF16
 * (fp32 accumulate, cuBLASLt); out F32 or BF16. beta != 0 reads out. */
lact_status lact_matmul_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                const lact_tensor *b, bool ta, bool tb, float alpha, float beta);
/* out = alpha * op(a) · op(b) + c: a product and a residual in one pass
 * (on CUDA the add happens in the GEMM's epilogue). c has out's shape and
 * dtype and may be out itself. The gradients are matmul's, and c's is dout. */
lact_status lact_matmul_add_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                    const lact_tensor *b, bool ta, bool tb, float alpha,
                                    const lact_tensor *c);
/* da = alpha * dout · op(b)ᵀ (arranged for ta), db = alpha * op(a)ᵀ · dout
 * (summed over the batch when b is broadcast). da, db may be F32 when a, b
 * are BF16 on CUDA. */
lact_status lact_matmul_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                 const lact_tensor *dout, const lact_tensor *a,
                                 const lact_tensor *b, bool ta, bool tb, float alpha);

/* ---- elementwise -------------------------------------------------------- */

/* out[i] = a[i] + b[i % nb]; nb = numel(b) divides numel(a) (bias broadcast).
 * b has a's dtype, or F32. */
lact_status lact_add_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                             const lact_tensor *b);
/* da = dout; db[j] = sum over i ≡ j (mod nb) of dout[i]. */
lact_status lact_add_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                              const lact_tensor *dout);
/* out[i] = a[i] * b[i % nb], same broadcast rule as add. */
lact_status lact_mul_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                             const lact_tensor *b);
lact_status lact_mul_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                              const lact_tensor *dout, const lact_tensor *a, const lact_tensor *b);
/* out = s * a */
lact_status lact_scale_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a, float s);
lact_status lact_scale_backward(lact_ctx *ctx, lact_tensor *da, const lact_tensor *dout, float s);
/* out = silu(x) = x * sigmoid(x) */
lact_status lact_silu_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
lact_status lact_silu_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                               const lact_tensor *x);
/* out = silu(a) * b (the SwiGLU gate); a, b, out same shape. */
lact_status lact_swiglu_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                const lact_tensor *b);
lact_status lact_swiglu_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                 const lact_tensor *dout, const lact_tensor *a,
                                 const lact_tensor *b);
/* The same gate on one input ab [..., 2F] that holds a and b side by side
 * in each row (the gate and up projections as one product): out [..., F]
 * = silu(ab[..., :F]) * ab[..., F:]; dab [..., 2F] overwritten. */
lact_status lact_swiglu_packed_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *ab);
lact_status lact_swiglu_packed_backward(lact_ctx *ctx, lact_tensor *dab, const lact_tensor *dout,
                                        const lact_tensor *ab);
/* Dtype conversion (F32 <-> BF16 <-> F16), same shape and device. */
lact_status lact_cast_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
/* out = softplus(x + shift) = log(1 + exp(x + shift)), computed without
 * overflow (≈ x + shift for large arguments, ≈ exp(x + shift) for very
 * negative ones); x, out same shape. */
lact_status lact_softplus_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x,
                                  float shift);
/* dx = dout * sigmoid(x + shift). */
lact_status lact_softplus_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                   const lact_tensor *x, float shift);
/* out = sigmoid(x) = 1 / (1 + exp(−x)). */
lact_status lact_sigmoid_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
/* dx = dout * y * (1 − y), y = the forward output. */
lact_status lact_sigmoid_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                  const lact_tensor *out);
/* The LaCT layer's gates from their combined product z [B, L, G·H] F32,
 * columns (i, h), G = 4 with momentum (else 3): per column the bias is
 * added (b_lr [3H] for i < 3, b_m [H] for i = 3) into zg [G, B·H, L] F32
 * (kept for the backward), then lr [3, B·H, L] = softplus(zg[:3] + shift)
 * and mom [B·H, L] = sigmoid(zg[3]) (NULL, with b_m, when G = 3): the bias
 * add, the layout change, softplus and sigmoid as one pass, with their
 * bits. */
lact_status lact_gates_forward(lact_ctx *ctx, lact_tensor *lr, lact_tensor *mom, lact_tensor *zg,
                               const lact_tensor *z, const lact_tensor *b_lr,
                               const lact_tensor *b_m, float shift);
/* From dlr [3, B·H, L] and dmom [B·H, L] (F32; dmom NULL when G = 3): dz
 * [B, L, G·H] (F32, or BF16 for the products that read it; overwritten) is
 * the gradient at the product's output, and db_lr, db_m += its column
 * sums (F32, accumulated). */
lact_status lact_gates_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *db_lr,
                                lact_tensor *db_m, const lact_tensor *dlr, const lact_tensor *dmom,
                                const lact_tensor *zg, const lact_tensor *mom, float shift);
/* out[a, c, b, e] = x[a, b, c, e]: swaps dims 1 and 2 of a 4-D x [A, B, C, E]
 * into out [A, C, B, E] (the [B, L, H, d] <-> [B, H, L, d] transpose; E may
 * be 1). out must not overlap x. */
lact_status lact_permute_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
/* dx [A, B, C, E] = the same swap of dout [A, C, B, E]. */
lact_status lact_permute_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout);
/* out = x[.., start : start + n, ..] along dim (n = out.shape[dim], every
 * other dim equal); any dtype, a copy of bytes. out must not overlap x. */
lact_status lact_slice_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, int dim,
                               int64_t start);
/* dx = zeros but dout in the slab [start, start + n) along dim. */
lact_status lact_slice_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout, int dim,
                                int64_t start);
/* dst's slab [start, start + n) along dim = x, the rest of dst untouched
 * (how the decode caches store a token's rows). */
lact_status lact_slice_assign(lact_ctx *ctx, lact_tensor *dst, const lact_tensor *x, int dim,
                              int64_t start);

/* ---- normalisation ------------------------------------------------------ */

/* Per row of x [rows, C]: rstd = 1 / sqrt(mean(x²) + eps); out = x * rstd * w.
 * w [C] F32 or NULL (no scale); rstd [rows] F32 (saved for backward). */
lact_status lact_rmsnorm_forward(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd,
                                 const lact_tensor *x, const lact_tensor *w, float eps);
/* The same with a tensor added in the same pass: out = res + x * rstd * w
 * (res like x, may be out itself; the normalised value rounded first, as a
 * separate add would round it; NULL adds nothing). */
lact_status lact_rmsnorm_forward_add(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd,
                                     const lact_tensor *x, const lact_tensor *w, float eps,
                                     const lact_tensor *res);
/* lact_rmsnorm_forward_add over the rows of x and res [B, H, L, d] (per
 * head), written in token order: out [B, L, H, d] is the [B, H, L, d]
 * result with dims 1 and 2 swapped, the bits of the add and a
 * lact_permute_forward, in one pass; rstd [B·H·L] per row of x. */
lact_status lact_rmsnorm_forward_heads(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd,
                                       const lact_tensor *x, const lact_tensor *w, float eps,
                                       const lact_tensor *res);
lact_status lact_rmsnorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                  const lact_tensor *dout, const lact_tensor *x,
                                  const lact_tensor *w, const lact_tensor *rstd);
/* The same with a residual gradient added in the same pass:
 * dx = res + rmsnormᵀ(dout) (res like x, may be dx itself; NULL adds
 * nothing). A pre-norm block's backward takes its residual branch so. */
lact_status lact_rmsnorm_backward_add(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                      const lact_tensor *dout, const lact_tensor *x,
                                      const lact_tensor *w, const lact_tensor *rstd,
                                      const lact_tensor *res);
/* lact_rmsnorm_backward_add with dw ACCUMULATED (dw += Σ_rows ...), so that
 * a parameter's gradient takes it directly. */
lact_status lact_rmsnorm_backward_acc(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                      const lact_tensor *dout, const lact_tensor *x,
                                      const lact_tensor *w, const lact_tensor *rstd,
                                      const lact_tensor *res);
/* Per row: mean, rstd = 1/sqrt(var + eps) (biased variance);
 * out = (x - mean) * rstd * w + b. w, b [C] F32 or NULL; mean, rstd [rows] F32. */
lact_status lact_layernorm_forward(lact_ctx *ctx, lact_tensor *out, lact_tensor *mean,
                                   lact_tensor *rstd, const lact_tensor *x, const lact_tensor *w,
                                   const lact_tensor *b, float eps);
lact_status lact_layernorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                    lact_tensor *db, const lact_tensor *dout, const lact_tensor *x,
                                    const lact_tensor *w, const lact_tensor *mean,
                                    const lact_tensor *rstd);
/* Per row: out = x / (‖x‖₂ + eps)  (the LaCT convention, eps 1e-5). */
lact_status lact_l2norm_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, float eps);
lact_status lact_l2norm_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                 const lact_tensor *x, float eps);

/* ---- positions ---------------------------------------------------------- */

/* Rotary embedding, rotate-half (GPT-NeoX/LLaMA) convention.
 * x [B, L, H, D] (or [B, L, D], read as H = 1), D even. Token l has position
 * p = pos0 + l; pair (i, i + D/2), i < D/2, is rotated by p * theta^(-2i/D):
 *   out_i = x_i cos - x_{i+D/2} sin,  out_{i+D/2} = x_{i+D/2} cos + x_i sin. */
lact_status lact_rope_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, int64_t pos0,
                              float theta);
/* dx = rotation by the opposite angle of dout. */
lact_status lact_rope_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                               int64_t pos0, float theta);

/* ---- softmax and loss --------------------------------------------------- */

/* Softmax over the last dim of x [rows, C]. */
lact_status lact_softmax_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
/* dx = y ⊙ (dy − Σ dy ⊙ y), y = the forward output. */
lact_status lact_softmax_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                  const lact_tensor *out);

/* Cross-entropy fused with the output projection, chunked over the
 * vocabulary so that no [N, V] logits tensor exists:
 *   logits = h · wᵀ,  loss[n] = lse(logits[n]) − logits[n, target[n]].
 * h [N, C], w [V, C] (same dtype as h), target [N] I32 (a negative target
 * means "ignore": loss 0 and no gradient); loss [N] F32; lse [N] F32 saved.
 * vocab_chunk: columns of the vocabulary per pass (0 = default 8192). */
lact_status lact_xent_forward(lact_ctx *ctx, lact_tensor *loss, lact_tensor *lse,
                              const lact_tensor *h, const lact_tensor *w, const lact_tensor *target,
                              int64_t vocab_chunk);
/* dh [N, C] (h's dtype), dw [V, C] F32, from dloss [N] F32:
 *   dlogits[n, v] = dloss[n] * (softmax[n, v] − [v == target[n]]). */
lact_status lact_xent_backward(lact_ctx *ctx, lact_tensor *dh, lact_tensor *dw,
                               const lact_tensor *dloss, const lact_tensor *h, const lact_tensor *w,
                               const lact_tensor *target, const lact_tensor *lse,
                               int64_t vocab_chunk);

/* lact_xent_forward then lact_xent_backward in one call, for a training step
 * whose dloss is known before its forward (the arguments are theirs; dh and
 * dw may be NULL), except that dw ACCUMULATES (dw += dlogitsᵀ h), so that a
 * parameter's gradient takes it directly. The CUDA version forms each block
 * of rows' logits once, where the pair of calls forms them twice. */
lact_status lact_xent_forward_backward(lact_ctx *ctx, lact_tensor *loss, lact_tensor *lse,
                                       lact_tensor *dh, lact_tensor *dw, const lact_tensor *dloss,
                                       const lact_tensor *h, const lact_tensor *w,
                                       const lact_tensor *target, int64_t vocab_chunk);

/* ---- embedding ---------------------------------------------------------- */

/* out[n, :] = table[ids[n], :]. table [V, C] F32 (or out's dtype), ids [N] I32
 * in [0, V) (checked on the CPU; the CUDA kernel clamps and flags). */
lact_status lact_embedding_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *table,
                                   const lact_tensor *ids);
/* dtable [V, C] F32 = scatter-add of dout rows by ids (zeroed first). */
lact_status lact_embedding_backward(lact_ctx *ctx, lact_tensor *dtable, const lact_tensor *dout,
                                    const lact_tensor *ids);
/* The same scatter-add into dtable as it is (dtable += ...), so that a
 * parameter's gradient takes it directly. */
lact_status lact_embedding_backward_add(lact_ctx *ctx, lact_tensor *dtable, const lact_tensor *dout,
                                        const lact_tensor *ids);

/* ---- reductions --------------------------------------------------------- */

/* out[r] = Σ_c x[r, c]  (x [rows, C], out [rows], x's dtype). */
lact_status lact_sum_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
lact_status lact_sum_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout);
/* out[0] = ‖x‖₂ over all elements, out [1] F32. */
lact_status lact_norm_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
/* dx = dout[0] * x / ‖x‖₂ (0 where ‖x‖ = 0). */
lact_status lact_norm_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                               const lact_tensor *x, const lact_tensor *out);

/* ---- random fills (Philox; see core/base/philox.h) ----------------------- */

/* x[i] = lo + (hi − lo) * uniform(seed, stream, i); F32 or BF16. */
lact_status lact_fill_uniform(lact_ctx *ctx, lact_tensor *x, uint64_t seed, uint64_t stream,
                              float lo, float hi);
/* x[i] = mean + std * normal(seed, stream, i). */
lact_status lact_fill_normal(lact_ctx *ctx, lact_tensor *x, uint64_t seed, uint64_t stream,
                             float mean, float std);

/* ---- optimizer steps (no backward) --------------------------------------- */

typedef struct lact_adamw_args {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step; /* 1-based, for bias correction */
    /* Optional parts, off when zero / NULL, so that one launch can step a
     * whole parameter block: */
    int64_t decay_end; /* > 0: only elements [0, decay_end) are decayed */
    /* ‖g‖ ([1] F32 on the op's device): with max_norm > 0 and ‖g‖ >
     * max_norm, g is taken as g · max_norm / ‖g‖ (clipping without
     * rewriting g); a non-finite ‖g‖ leaves every tensor as it was. */
    const lact_tensor *grad_norm;
    float max_norm;
    lact_tensor *shadow; /* BF16, param's size: receives bf16(p) after the step */
} lact_adamw_args;

/* Decoupled weight decay (AdamW), all tensors F32 and the same shape:
 *   g *= s (clipping, above; else s = 1);
 *   m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²;
 *   p -= lr * ( (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps) + wd * p ). */
lact_status lact_adamw_step(lact_ctx *ctx, lact_tensor *param, lact_tensor *m, lact_tensor *v,
                            const lact_tensor *grad, const lact_adamw_args *args);

typedef struct lact_muon_args {
    float lr, momentum, weight_decay;
    bool nesterov;
    int ns_steps; /* Newton–Schulz iterations, 5 */
} lact_muon_args;

/* Muon for a 2-D weight [R, C], F32:
 *   m = μ m + g;  u = nesterov ? g + μ m : m;
 *   o = NS(u) (quintic Newton–Schulz, (a,b,c) = (3.4445, −4.7750, 2.0315),
 *       on u / (‖u‖_F + 1e-7), transposed when R > C);
 *   p = p (1 − lr wd) − lr * sqrt(max(1, R / C)) * o.
 * scratch: the CPU needs none; CUDA takes its buffers from the context's
 * scratch or allocates once. */
lact_status lact_muon_step(lact_ctx *ctx, lact_tensor *param, lact_tensor *m,
                           const lact_tensor *grad, const lact_muon_args *args);
/* The orthogonalisation alone: out = NS(g) as above (out, g [R, C] F32). */
lact_status lact_newton_schulz(lact_ctx *ctx, lact_tensor *out, const lact_tensor *g, int steps);

#ifdef __cplusplus
}
#endif
#endif
