/* CPU reference implementations (plain C, F32). Same arguments as the public
 * functions in kernels/kernels.h, which check shapes and dtypes before calling
 * these. */
#ifndef LACT_CPU_KERNELS_H
#define LACT_CPU_KERNELS_H

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

lact_status lact_cpu_matmul_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a, const lact_tensor *b, bool ta, bool tb, float alpha, float beta);
lact_status lact_cpu_matmul_add_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                        const lact_tensor *b, bool ta, bool tb, float alpha,
                                        const lact_tensor *c);
lact_status lact_cpu_matmul_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db, const lact_tensor *dout, const lact_tensor *a, const lact_tensor *b, bool ta, bool tb, float alpha);
lact_status lact_cpu_add_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a, const lact_tensor *b);
lact_status lact_cpu_add_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db, const lact_tensor *dout);
lact_status lact_cpu_mul_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a, const lact_tensor *b);
lact_status lact_cpu_mul_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db, const lact_tensor *dout, const lact_tensor *a, const lact_tensor *b);
lact_status lact_cpu_scale_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a, float s);
lact_status lact_cpu_scale_backward(lact_ctx *ctx, lact_tensor *da, const lact_tensor *dout, float s);
lact_status lact_cpu_silu_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
lact_status lact_cpu_silu_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout, const lact_tensor *x);
lact_status lact_cpu_swiglu_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a, const lact_tensor *b);
lact_status lact_cpu_swiglu_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db, const lact_tensor *dout, const lact_tensor *a, const lact_tensor *b);
lact_status lact_cpu_gates_forward(lact_ctx *ctx, lact_tensor *lr, lact_tensor *mom,
                                   lact_tensor *zg, const lact_tensor *z, const lact_tensor *b_lr,
                                   const lact_tensor *b_m, float shift);
lact_status lact_cpu_gates_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *db_lr,
                                    lact_tensor *db_m, const lact_tensor *dlr,
                                    const lact_tensor *dmom, const lact_tensor *zg,
                                    const lact_tensor *mom, float shift);
lact_status lact_cpu_swiglu_packed_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *ab);
lact_status lact_cpu_swiglu_packed_backward(lact_ctx *ctx, lact_tensor *dab,
                                            const lact_tensor *dout, const lact_tensor *ab);
lact_status lact_cpu_cast_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
lact_status lact_cpu_softplus_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, float shift);
lact_status lact_cpu_softplus_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout, const lact_tensor *x, float shift);
lact_status lact_cpu_sigmoid_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
lact_status lact_cpu_sigmoid_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout, const lact_tensor *out);
lact_status lact_cpu_permute_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
lact_status lact_cpu_rmsnorm_forward(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd, const lact_tensor *x, const lact_tensor *w, float eps, const lact_tensor *res);
lact_status lact_cpu_rmsnorm_forward_heads(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd,
                                           const lact_tensor *x, const lact_tensor *w, float eps,
                                           const lact_tensor *res);
lact_status lact_cpu_rmsnorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                      const lact_tensor *dout, const lact_tensor *x,
                                      const lact_tensor *w, const lact_tensor *rstd,
                                      const lact_tensor *res, bool dw_acc);
lact_status lact_cpu_layernorm_forward(lact_ctx *ctx, lact_tensor *out, lact_tensor *mean, lact_tensor *rstd, const lact_tensor *x, const lact_tensor *w, const lact_tensor *b, float eps);
lact_status lact_cpu_layernorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw, lact_tensor *db, const lact_tensor *dout, const lact_tensor *x, const lact_tensor *w, const lact_tensor *mean, const lact_tensor *rstd);
lact_status lact_cpu_l2norm_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, float eps);
lact_status lact_cpu_l2norm_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout, const lact_tensor *x, float eps);
lact_status lact_cpu_rope_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, int64_t pos0, float theta);
lact_status lact_cpu_rope_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout, int64_t pos0, float theta);
lact_status lact_cpu_softmax_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
lact_status lact_cpu_softmax_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout, const lact_tensor *out);
lact_status lact_cpu_xent_forward(lact_ctx *ctx, lact_tensor *loss, lact_tensor *lse, const lact_tensor *h, const lact_tensor *w, const lact_tensor *target, int64_t vocab_chunk);
lact_status lact_cpu_xent_backward(lact_ctx *ctx, lact_tensor *dh, lact_tensor *dw, const lact_tensor *dloss, const lact_tensor *h, const lact_tensor *w, const lact_tensor *target, const lact_tensor *lse, int64_t vocab_chunk);
lact_status lact_cpu_xent_forward_backward(lact_ctx *ctx, lact_tensor *loss, lact_tensor *lse,
                                           lact_tensor *dh, lact_tensor *dw,
                                           const lact_tensor *dloss, const lact_tensor *h,
                                           const lact_tensor *w, const lact_tensor *target,
                                           int64_t vocab_chunk);
lact_status lact_cpu_embedding_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *table, const lact_tensor *ids);
lact_status lact_cpu_embedding_backward(lact_ctx *ctx, lact_tensor *dtable, const lact_tensor *dout,
                                        const lact_tensor *ids, bool accumulate);
lact_status lact_cpu_sum_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
lact_status lact_cpu_sum_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout);
lact_status lact_cpu_norm_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x);
lact_status lact_cpu_norm_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout, const lact_tensor *x, const lact_tensor *out);
lact_status lact_cpu_fill_uniform(lact_ctx *ctx, lact_tensor *x, uint64_t seed, uint64_t stream, float lo, float hi);
lact_status lact_cpu_fill_normal(lact_ctx *ctx, lact_tensor *x, uint64_t seed, uint64_t stream, float mean, float std);
lact_status lact_cpu_adamw_step(lact_ctx *ctx, lact_tensor *param, lact_tensor *m, lact_tensor *v, const lact_tensor *grad, const lact_adamw_args *args);
lact_status lact_cpu_muon_step(lact_ctx *ctx, lact_tensor *param, lact_tensor *m, const lact_tensor *grad, const lact_muon_args *args);
lact_status lact_cpu_newton_schulz(lact_ctx *ctx, lact_tensor *out, const lact_tensor *g, int steps);

#ifdef __cplusplus
}
#endif
#endif
