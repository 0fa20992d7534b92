/* Optimizer steps: AdamW as one fused elementwise kernel (16-byte words of
 * the four arrays where they are aligned, then a scalar tail; clipping and
 * the BF16 shadow folded in, so a whole parameter block is one launch);
 * Muon as a momentum kernel, the quintic Newton–Schulz orthogonalisation
 * (fp32 GEMMs through lact_cuda_gemm) and an update kernel. Newton–Schulz
 * works on the wide orientation (rows ≤ cols) in a cached per-stream
 * buffer. */
#include <math.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vec.cuh"

#define GRID_LOOP(i, n)                                                                            \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

/* One element's AdamW update (the same expression on both paths, so the
 * vector and scalar kernels give the same bits). */
__device__ __forceinline__ void adamw_one(float &p, float &m, float &v, float g, float lr, float b1,
                                          float b2, float eps, float wd, float bc1, float bc2) {
    m = b1 * m + (1.0f - b1) * g;
    v = b2 * v + (1.0f - b2) * g * g;
    p = p - lr * ((m / bc1) / (sqrtf(v / bc2) + eps) + wd * p);
}

/* The clipping factor from ‖g‖ (adamw args), or 0 where ‖g‖ is not
 * finite and the step is skipped. */
__device__ __forceinline__ float adamw_scale(const float *norm, float max_norm) {
    if (!norm) return 1.0f;
    float n = *norm;
    if (!isfinite(n)) return 0.0f;
    return max_norm > 0.0f && n > max_norm ? max_norm / n : 1.0f;
}

/* Four BF16 values as one 8-byte store. */
struct alignas(8) adamw_bf16x4 {
    __nv_bfloat162 a, b;
};

/* Elements [0, n): words of four from 16-byte aligned arrays (then the
 * scalar tail) when vec, else one by one. Weight decay applies below
 * decay_end; the BF16 shadow is written when given. */
template <bool vec>
__global__ void adamw_kernel(float *p, float *m, float *v, const float *g, bf16 *shadow, int64_t n,
                             int64_t decay_end, const float *norm, float max_norm, float lr,
                             float b1, float b2, float eps, float wd, float bc1, float bc2) {
    const float s = adamw_scale(norm, max_norm);
    if (s == 0.0f) return;
    const int64_t n4 = vec ? n / 4 : 0;
    GRID_LOOP(i, n4) {
        float4 pi = ((float4 *)p)[i], mi = ((float4 *)m)[i], vi = ((float4 *)v)[i];
        float4 gi = ((const float4 *)g)[i];
        float w = 4 * i < decay_end ? wd : 0.0f; /* decay_end is a multiple of 4 here */
        adamw_one(pi.x, mi.x, vi.x, gi.x * s, lr, b1, b2, eps, w, bc1, bc2);
        adamw_one(pi.y, mi.y, vi.y, gi.y * s, lr, b1, b2, eps, w, bc1, bc2);
        adamw_one(pi.z, mi.z, vi.z, gi.z * s, lr, b1, b2, eps, w, bc1, bc2);
        adamw_one(pi.w, mi.w, vi.w, gi.w * s, lr, b1, b2, eps, w, bc1, bc2);
        ((float4 *)p)[i] = pi, ((float4 *)m)[i] = mi, ((float4 *)v)[i] = vi;
        if (shadow) {
            adamw_bf16x4 o;
            o.a = __floats2bfloat162_rn(pi.x, pi.y);
            o.b = __floats2bfloat162_rn(pi.z, pi.w);
            ((adamw_bf16x4 *)shadow)[i] = o;
        }
    }
    GRID_LOOP(j, n - 4 * n4) {
        int64_t i = 4 * n4 + j;
        float pi = p[i], mi = m[i], vi = v[i];
        adamw_one(pi, mi, vi, g[i] * s, lr, b1, b2, eps, i < decay_end ? wd : 0.0f, bc1, bc2);
        p[i] = pi, m[i] = mi, v[i] = vi;
        if (shadow) shadow[i] = __float2bfloat16_rn(pi);
    }
}

extern "C" lact_status lact_cuda_adamw_step(lact_ctx *ctx, lact_tensor *param, lact_tensor *m,
                                            lact_tensor *v, const lact_tensor *grad,
                                            const lact_adamw_args *a) {
    int64_t n = lact_tensor_numel(param);
    if (!n) return LACT_OK;
    float bc1 = (float)(1.0 - pow((double)a->beta1, (double)a->step));
    float bc2 = (float)(1.0 - pow((double)a->beta2, (double)a->step));
    float *pp = (float *)param->data, *pm = (float *)m->data, *pv = (float *)v->data;
    const float *pg = (const float *)grad->data;
    bf16 *sh = a->shadow ? (bf16 *)a->shadow->data : NULL;
    const float *norm = a->grad_norm ? (const float *)a->grad_norm->data : NULL;
    int64_t decay_end = a->decay_end > 0 ? a->decay_end : n;
    cudaStream_t st = lact_cuda_stream(ctx);
    /* Words of four where every array allows them (the shadow's 8 bytes
     * too) and the decay boundary falls between words. */
    bool vec =
        lact_aligned16(pp, pm, pv, pg) && (!sh || (uintptr_t)sh % 8 == 0) && decay_end % 4 == 0;
    int64_t work = vec ? n / 4 + n % 4 : n;
    if (vec)
        adamw_kernel<true><<<lact_grid_1d(work, 256), 256, 0, st>>>(
            pp, pm, pv, pg, sh, n, decay_end, norm, a->max_norm, a->lr, a->beta1, a->beta2, a->eps,
            a->weight_decay, bc1, bc2);
    else
        adamw_kernel<false><<<lact_grid_1d(work, 256), 256, 0, st>>>(
            pp, pm, pv, pg, sh, n, decay_end, norm, a->max_norm, a->lr, a->beta1, a->beta2, a->eps,
            a->weight_decay, bc1, bc2);
    LACT_CU_LAUNCH("adamw");
    return LACT_OK;
}

/* ---- Newton–Schulz -------------------------------------------------------------- */

/* x = g / (‖g‖ + 1e-7), transposed ([C, R]) when transpose. */
__global__ void ns_init_kernel(float *x, const float *g, const float *nrm, int64_t R, int64_t C,
                               int transpose) {
    float inv = 1.0f / (nrm[0] + 1e-7f);
    GRID_LOOP(i, R * C) {
        int64_t r = i / C, c = i % C;
        x[transpose ? c * R + r : i] = g[i] * inv;
    }
}

/* out [R, C] = xᵀ for x [C, R]. */
__global__ void transpose_kernel(float *out, const float *x, int64_t R, int64_t C) {
    GRID_LOOP(i, R * C) {
        int64_t r = i / C, c = i % C;
        out[i] = x[c * R + r];
    }
}

static lact_status newton_schulz_run(lact_ctx *ctx, float *out, const float *g, int64_t R,
                                     int64_t C, int steps) {
    const float qa = 3.4445f, qb = -4.7750f, qc = 2.0315f;
    bool tr = R > C;
    int64_t r = tr ? C : R, c = tr ? R : C;
    size_t xs = (size_t)(r * c), as = (size_t)(r * r);
    float *buf = NULL;
    LACT_TRY(lact_cuda_buffer(ctx, LACT_BUF_MUON, (2 * xs + 2 * as + 64) * sizeof(float),
                              (void **)&buf));
    float *nrm = buf, *x = buf + 64, *y = x + xs, *A = y + xs, *B = A + as;
    cudaStream_t st = lact_cuda_stream(ctx);
    LACT_TRY(lact_cuda_norm_into(ctx, nrm, g, LACT_F32, R * C));
    ns_init_kernel<<<lact_grid_1d(R * C, 256), 256, 0, st>>>(x, g, nrm, R, C, tr);
    LACT_CU_LAUNCH("ns_init");
    for (int it = 0; it < steps; it++) {
        /* A = X Xᵀ;  B = qb A + qc A A;  Y = qa X + B X */
        lact_gemm_desc ga = lact_gemm_desc_make(x, x, A, LACT_F32, LACT_F32, false, true, r, r, c,
                                                1, 0, 0, 0, 1.0f, 0.0f);
        LACT_TRY(lact_cuda_gemm(ctx, &ga));
        lact_gemm_desc gb = lact_gemm_desc_make(A, A, B, LACT_F32, LACT_F32, false, false, r, r, r,
                                                1, 0, 0, 0, qc, qb);
        gb.addend = A;
        LACT_TRY(lact_cuda_gemm(ctx, &gb));
        lact_gemm_desc gy = lact_gemm_desc_make(B, x, y, LACT_F32, LACT_F32, false, false, r, c, r,
                                                1, 0, 0, 0, 1.0f, qa);
        gy.addend = x;
        LACT_TRY(lact_cuda_gemm(ctx, &gy));
        float *t = x;
        x = y;
        y = t;
    }
    if (tr) {
        transpose_kernel<<<lact_grid_1d(R * C, 256), 256, 0, st>>>(out, x, R, C);
        LACT_CU_LAUNCH("ns_transpose");
    } else {
        LACT_CU(cudaMemcpyAsync(out, x, xs * sizeof(float), cudaMemcpyDeviceToDevice, st));
    }
    return LACT_OK;
}

extern "C" lact_status lact_cuda_newton_schulz(lact_ctx *ctx, lact_tensor *out,
                                               const lact_tensor *g, int steps) {
    if (g->ndim != 2) return lact_fail(LACT_E_ARG, "newton_schulz: g must be 2-D");
    if (!lact_tensor_numel(g)) return LACT_OK;
    return newton_schulz_run(ctx, (float *)out->data, (const float *)g->data, g->shape[0],
                             g->shape[1], steps);
}

/* ---- Muon ------------------------------------------------------------------------ */

__global__ void muon_momentum_kernel(float *m, float *u, const float *g, int64_t n, float mu,
                                     int nesterov) {
    GRID_LOOP(i, n) {
        float mi = mu * m[i] + g[i];
        m[i] = mi;
        u[i] = nesterov ? g[i] + mu * mi : mi;
    }
}

__global__ void muon_update_kernel(float *p, const float *o, int64_t n, float decay, float step) {
    GRID_LOOP(i, n) p[i] = p[i] * decay - step * o[i];
}

extern "C" lact_status lact_cuda_muon_step(lact_ctx *ctx, lact_tensor *param, lact_tensor *m,
                                           const lact_tensor *grad, const lact_muon_args *a) {
    if (param->ndim != 2) return lact_fail(LACT_E_ARG, "muon: param must be 2-D");
    int64_t R = param->shape[0], C = param->shape[1], n = R * C;
    if (!n) return LACT_OK;
    /* u and o live in the scratch when they fit, else in a cached buffer
     * (Newton–Schulz holds its own). */
    float *u = NULL;
    size_t need = (size_t)(2 * n) * sizeof(float);
    if (need <= ctx->scratch_bytes)
        u = (float *)ctx->scratch;
    else
        LACT_TRY(lact_cuda_buffer(ctx, LACT_BUF_MUON_IO, need, (void **)&u));
    float *o = u + n;
    cudaStream_t st = lact_cuda_stream(ctx);
    muon_momentum_kernel<<<lact_grid_1d(n, 256), 256, 0, st>>>(
        (float *)m->data, u, (const float *)grad->data, n, a->momentum, a->nesterov ? 1 : 0);
    LACT_CU_LAUNCH("muon_momentum");
    LACT_TRY(newton_schulz_run(ctx, o, u, R, C, a->ns_steps));
    float scale = (float)sqrt(fmax(1.0, (double)R / (double)C));
    muon_update_kernel<<<lact_grid_1d(n, 256), 256, 0, st>>>(
        (float *)param->data, o, n, 1.0f - a->lr * a->weight_decay, a->lr * scale);
    LACT_CU_LAUNCH("muon_update");
    return LACT_OK;
}
