/* The fused Newton–Schulz of the ttt update for small matrices
 * (ttt_ns_fused.cu), used by ttt_ns.cuh where the shape and the device
 * allow. */
#ifndef LACT_CUDA_TTT_NS_FUSED_H
#define LACT_CUDA_TTT_NS_FUSED_H

#include "kernels/cuda/common.cuh"

/* Buffers in the Newton–Schulz layout (ttt_kernels.cuh): count matrices of
 * p·q elements, matrix i stored tall ([q, p]) when (i < split ? tall0 :
 * tall1); A and P hold count p×p matrices per step. The kernels read u and
 * write dU in the master layout themselves (the normalisation and its
 * backward), and keep the iterates the backward reads as X is held ([p, q]),
 * so only x[5] and g_in are transposed on the way. */
typedef struct nsf_args {
    const float *u; /* the fp32 input, master layout; X[0] = u / (‖u‖_F + eps) */
    float *nnorm;   /* ‖u‖_F per matrix: forward writes, backward reads */
    float eps;
    bf16 *x[6];         /* iterates: x[5] in the stored orientation, x[0..4] (keep) wide */
    bf16 *a[5], *pm[5]; /* per step, A and P: the batched path's; the fused
                           backward forms them again from x[s] */
    const bf16 *g_in;   /* backward: the adjoint of x[5] */
    float *du;          /* backward: the adjoint of u, master layout */
    float coef[5][3];   /* per step (a, b, c) */
    int p, q, count, split;
    bool tall0, tall1;
    bool keep; /* forward: write x[0..4] for the backward */
} nsf_args;

/* Whether p × q matrices have a fused kernel on this device (Hopper's
 * warpgroup tensor cores; LACT_TTT_NS_FUSED=0 in the environment forces the
 * batched products instead). */
bool ttt_ns_fused_fits(int64_t p, int64_t q);
lact_status ttt_ns_fused_forward(lact_ctx *ctx, const nsf_args *a);
lact_status ttt_ns_fused_backward(lact_ctx *ctx, const nsf_args *a);

#endif
