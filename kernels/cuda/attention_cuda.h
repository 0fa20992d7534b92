/* The CUDA version of the attention op (kernels/attention.h): same
 * arguments as the public functions, called after their checks. Head dims
 * up to 256. */
#ifndef LACT_CUDA_ATTENTION_CUDA_H
#define LACT_CUDA_ATTENTION_CUDA_H

#include "kernels/attention.h"

#ifdef __cplusplus
extern "C" {
#endif

lact_status lact_cuda_attention_forward(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                        const lact_tensor *q, const lact_tensor *k,
                                        const lact_tensor *v, const lact_tensor *g,
                                        const lact_tensor *cu_seqlens, const lact_attn_args *args);
lact_status lact_cuda_attention_backward(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k,
                                         lact_tensor *d_v, lact_tensor *d_g, const lact_tensor *d_y,
                                         const lact_tensor *q, const lact_tensor *k,
                                         const lact_tensor *v, const lact_tensor *g,
                                         const lact_tensor *cu_seqlens, const lact_tensor *y,
                                         const lact_tensor *lse, const lact_attn_args *args);
/* One decode step (checks done): ranges_host holds [lo, hi) of the keys each
 * sequence's new query sees, 2·B int32 on the host; scale as the op uses. */
lact_status lact_cuda_attention_decode(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                       const lact_tensor *q, const lact_tensor *k_cache,
                                       const lact_tensor *v_cache, const lact_tensor *g,
                                       const int32_t *ranges_host, float scale);
/* Whether the BF16 forward runs on the Hopper kernel (attention_wgmma_fwd.cu):
 * a compute capability 9.0 device running the sm_90a image, unless the
 * environment sets LACT_ATTN_WGMMA=0 (then the mma.sync kernel runs). */
bool lact_cuda_attention_wgmma_active(void);
/* Whether the BF16 backward runs on the Hopper kernels
 * (attention_wgmma_bwd.cu), unless LACT_ATTN_WGMMA_BWD=0 (then the mma.sync
 * kernels run; "dkv" or "dq" keeps only that kernel on wgmma). */
bool lact_cuda_attention_wgmma_bwd_active(void);

#ifdef __cplusplus
}
#include <cuda_bf16.h>
struct attn_geom;
/* attn_wgmma_ready: lact_cuda_attention_wgmma_active; attn_wgmma_forward: the
 * forward of attn_tc_forward (attention_geom.cuh) on wgmma, same outputs. */
bool attn_wgmma_ready(void);
lact_status attn_wgmma_forward(lact_ctx *ctx, const attn_geom &G, int64_t nb, __nv_bfloat16 *y,
                               float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                               const __nv_bfloat16 *v, const __nv_bfloat16 *g);
/* attn_wgmma_bwd_ready: lact_cuda_attention_wgmma_bwd_active;
 * attn_wgmma_backward: attn_tc_backward (attention_geom.cuh) with its
 * kernels on wgmma, the ones switched off on mma.sync. */
bool attn_wgmma_bwd_ready(void);
lact_status attn_wgmma_backward(lact_ctx *ctx, const attn_geom &G, int64_t nb, __nv_bfloat16 *dq,
                                __nv_bfloat16 *dk, __nv_bfloat16 *dv, const __nv_bfloat16 *q,
                                const __nv_bfloat16 *k, const __nv_bfloat16 *v,
                                const __nv_bfloat16 *dout, const float *lse, const float *dsum);
#endif
#endif
