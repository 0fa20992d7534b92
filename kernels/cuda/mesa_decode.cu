/* One decoding step of the mesa op on CUDA: one block per head applies the
 * rank-1 updates to the fp32 states in place and runs CG on the explicit
 * d×d matrix, as the CPU reference's decode does (a warp per matrix row,
 * block-wide dot products). */
#include "kernels/cuda/mesa_common.cuh"

#define DEC_THREADS 256

template <class T>
__global__ void __launch_bounds__(DEC_THREADS)
    decode_kernel(lact_mesa_cuda_in in, T *o, float *hst, float *gst) {
    extern __shared__ float dsm[];
    __shared__ float red[32];
    const int64_t d = in.d, dd = d * d, bh = blockIdx.x;
    float *kk = dsm, *vv = kk + d, *x = vv + d, *r = x + d, *p = r + d, *ap = p + d;
    const T *q = (const T *)in.q + bh * d, *k = (const T *)in.k + bh * d;
    const T *v = (const T *)in.v + bh * d;
    const float *lam = in.lambda + (bh % in.h) * d;
    float *H = hst + bh * dd, *Gs = gst + bh * dd;
    const float gam = expf(ld((const T *)in.g, bh)), b = ld((const T *)in.beta, bh);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

    float part = 0.0f;
    for (int64_t a = threadIdx.x; a < d; a += blockDim.x) {
        kk[a] = ld(k, a);
        vv[a] = ld(v, a);
        float qa = ld(q, a);
        x[a] = 0.0f;
        r[a] = qa;
        p[a] = qa;
        part += qa * qa;
    }
    float rr = block_sum(part, red);
    for (int64_t e = threadIdx.x; e < dd; e += blockDim.x) {
        int64_t a = e / d, c = e % d;
        H[e] = gam * H[e] + b * kk[a] * kk[c];
        Gs[e] = gam * Gs[e] + b * vv[a] * kk[c];
    }
    __syncthreads();
    for (int step = 0; step < in.cg_steps; step++) {
        for (int64_t a = warp; a < d; a += nw) {
            float s = 0.0f;
            for (int64_t c = lane; c < d; c += 32)
                s += H[a * d + c] * p[c];
            s = warp_sum(s);
            if (lane == 0) ap[a] = s + lam[a] * p[a];
        }
        __syncthreads();
        part = 0.0f;
        for (int64_t a = threadIdx.x; a < d; a += blockDim.x)
            part += p[a] * ap[a];
        float alpha = rr / (block_sum(part, red) + MESA_CG_EPS);
        part = 0.0f;
        for (int64_t a = threadIdx.x; a < d; a += blockDim.x) {
            x[a] += alpha * p[a];
            r[a] -= alpha * ap[a];
            part += r[a] * r[a];
        }
        float rn = block_sum(part, red), bt = rn / (rr + MESA_CG_EPS);
        for (int64_t a = threadIdx.x; a < d; a += blockDim.x)
            p[a] = r[a] + bt * p[a];
        rr = rn;
        __syncthreads();
    }
    for (int64_t a = warp; a < d; a += nw) {
        float s = 0.0f;
        for (int64_t c = lane; c < d; c += 32)
            s += Gs[a * d + c] * x[c];
        s = warp_sum(s);
        if (lane == 0) st(o + bh * d, a, s);
    }
}

extern "C" lact_status lact_cuda_mesa_decode(lact_ctx *ctx, void *o, float *h_state, float *g_state,
                                             const lact_mesa_cuda_in *in) {
    int64_t nbh = in->b * in->h;
    size_t smem = (size_t)(6 * in->d) * sizeof(float);
    if (smem > 48 * 1024)
        return lact_fail(LACT_E_UNSUPPORTED, "mesa decode: d = %lld is too large for CUDA",
                         (long long)in->d);
    cudaStream_t st = lact_cuda_stream(ctx);
    if (in->act == LACT_BF16)
        decode_kernel<bf16>
            <<<(unsigned)nbh, DEC_THREADS, smem, st>>>(*in, (bf16 *)o, h_state, g_state);
    else if (in->act == LACT_F32)
        decode_kernel<float>
            <<<(unsigned)nbh, DEC_THREADS, smem, st>>>(*in, (float *)o, h_state, g_state);
    else
        return lact_fail(LACT_E_UNSUPPORTED, "mesa decode: dtype %s has no CUDA kernel",
                         lact_dtype_name(in->act));
    LACT_CU_LAUNCH("mesa_decode");
    return LACT_OK;
}
