/* Softmax over rows, and cross-entropy fused with the output projection.
 *
 * The cross-entropy never holds [N, V] logits: it walks the vocabulary in
 * chunks of vocab_chunk columns, computing each chunk's logits with the GEMM
 * into a cached buffer [N, chunk] and folding them into a running
 * (max, sum of exp, target logit) per row. The backward recomputes each
 * chunk, turns it into dlogits in place and applies the two products
 * dh += dlogits · w_chunk and dw_chunk = dlogitsᵀ · h. The logits have the
 * activations' type (F32 or BF16, as a BF16 model rounds them in the
 * frameworks too): the fold and the dlogits pass are pure memory traffic
 * over [N, V], and so is a good part of the vocabulary GEMM's epilogue, so
 * BF16 logits halve both (the sums stay in F32). */
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/xent_common.cuh"

/* ---- softmax ------------------------------------------------------------------ */

template <class T> __global__ void softmax_kernel(T *out, const T *x, int64_t C) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C;
    float m = -INFINITY;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        m = fmaxf(m, ld(xr, c));
    m = block_max(m, sh);
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        s += expf(ld(xr, c) - m);
    float inv = 1.0f / block_sum(s, sh);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        st(out + r * C, c, expf(ld(xr, c) - m) * inv);
}

template <class T>
__global__ void softmax_backward_kernel(T *dx, const T *dy, const T *y, int64_t C) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *yr = y + r * C, *dr = dy + r * C;
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        s += ld(dr, c) * ld(yr, c);
    s = block_sum(s, sh);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        st(dx + r * C, c, ld(yr, c) * (ld(dr, c) - s));
}

extern "C" lact_status lact_cuda_softmax_forward(lact_ctx *ctx, lact_tensor *out,
                                                 const lact_tensor *x) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "softmax", {
        softmax_kernel<T><<<(unsigned)R, lact_row_threads(C), 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (const T *)x->data, C);
    });
    LACT_CU_LAUNCH("softmax");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_softmax_backward(lact_ctx *ctx, lact_tensor *dx,
                                                  const lact_tensor *dout, const lact_tensor *out) {
    int64_t R = lact_tensor_rows(out), C = lact_tensor_cols(out);
    if (!R || !C || !dx) return LACT_OK;
    LACT_DISPATCH_FLOAT(out->dtype, "softmax backward", {
        softmax_backward_kernel<T><<<(unsigned)R, lact_row_threads(C), 0, lact_cuda_stream(ctx)>>>(
            (T *)dx->data, (const T *)dout->data, (const T *)out->data, C);
    });
    LACT_CU_LAUNCH("softmax_backward");
    return LACT_OK;
}

/* ---- cross-entropy -------------------------------------------------------------- */

#define XENT_FOLD_THREADS 256
#define XENT_FOLD_ROWS (XENT_FOLD_THREADS / 32)
#define XENT_FOLD_UNROLL 4

/* Folds logits [N, cw] of vocabulary columns [v0, v0 + cw) into the running
 * max m, sum s (relative to m) and target logit tl of each row. One pass
 * over the chunk, read once (the chunk is far larger than the caches): a
 * warp per row, each lane with XENT_FOLD_UNROLL 16-byte loads in flight
 * when rows start on 16 bytes (cw a multiple of 16 / sizeof(L)), single
 * elements otherwise; the lanes' pairs are merged by shuffles. (A block
 * per row with 8-byte loads read at 1.9 TB/s on an H100: the row of an
 * 8192-column chunk was too little work for a block and its barrier.) */
template <class L>
__global__ void __launch_bounds__(XENT_FOLD_THREADS)
    xent_fold_kernel(float *m, float *s, float *tl, const L *logits, const int32_t *target,
                     int64_t N, int64_t cw, int64_t v0, int first) {
    constexpr int E = 16 / sizeof(L);
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * XENT_FOLD_ROWS + (threadIdx.x >> 5);
    if (r >= N) return;
    const L *lr = logits + r * cw;
    float cm = -INFINITY, cs = 0.0f;
    if (cw % E == 0) {
        const int64_t n = cw / E;
        for (int64_t b = lane; b < n; b += 32 * XENT_FOLD_UNROLL) {
            float v[XENT_FOLD_UNROLL][E];
#pragma unroll
            for (int u = 0; u < XENT_FOLD_UNROLL; u++) {
                const int64_t c = b + 32 * u;
                if (c < n) {
                    ld16(lr, c, v[u]);
                } else {
#pragma unroll
                    for (int k = 0; k < E; k++)
                        v[u][k] = -INFINITY;
                }
            }
#pragma unroll
            for (int u = 0; u < XENT_FOLD_UNROLL; u++)
                lse_addn<E>(cm, cs, v[u]);
        }
    } else {
        for (int64_t c = lane; c < cw; c += 32) {
            const float v[1] = {ld(lr, c)};
            lse_addn<1>(cm, cs, v);
        }
    }
    lse_warp_merge(cm, cs);
    if (lane == 0) {
        const int64_t t = target[r];
        if (first) {
            m[r] = cm;
            s[r] = cs;
            tl[r] = 0.0f;
        } else {
            float om = m[r], os = s[r];
            lse_merge(om, os, cm, cs);
            m[r] = om;
            s[r] = os;
        }
        if (t >= v0 && t < v0 + cw) tl[r] = ld(lr, t - v0);
    }
}

__global__ void xent_finish_kernel(float *loss, float *lse, const float *m, const float *s,
                                   const float *tl, const int32_t *target, int64_t N) {
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < N;
         r += (int64_t)gridDim.x * blockDim.x) {
        float l = m[r] + logf(s[r]);
        lse[r] = l;
        loss[r] = target[r] >= 0 ? l - tl[r] : 0.0f;
    }
}

/* dlogits = dloss (softmax − onehot(target)), written in place over the
 * logits (each element by the thread that read it) for the two products
 * that follow. A block per row: the row's lse, weight and target are read
 * once, four columns at a time when rows are aligned. */
template <class T>
__global__ void xent_dlogits_kernel(T *dl, const float *lse, const float *dloss,
                                    const int32_t *target, int64_t cw, int64_t v0) {
    int64_t r = blockIdx.x, base = r * cw;
    int32_t t = target[r];
    float l = lse[r], w = t >= 0 ? dloss[r] : 0.0f;
    int64_t tc = t >= 0 ? (int64_t)t - v0 : -1; /* the target's column in this chunk */
    int64_t c0 = 0;
    if (cw % 4 == 0) {
        for (int64_t c = threadIdx.x; c < cw / 4; c += blockDim.x) {
            float4 x = ld4(dl + base, c), g;
            g.x = w * (expf(x.x - l) - (4 * c == tc ? 1.0f : 0.0f));
            g.y = w * (expf(x.y - l) - (4 * c + 1 == tc ? 1.0f : 0.0f));
            g.z = w * (expf(x.z - l) - (4 * c + 2 == tc ? 1.0f : 0.0f));
            g.w = w * (expf(x.w - l) - (4 * c + 3 == tc ? 1.0f : 0.0f));
            st4(dl, base + 4 * c, g);
        }
        c0 = cw;
    }
    for (int64_t c = c0 + threadIdx.x; c < cw; c += blockDim.x)
        st(dl, base + c, w * (expf(ld(dl, base + c) - l) - (c == tc ? 1.0f : 0.0f)));
}

static int64_t xent_chunk(int64_t vocab_chunk, int64_t V) {
    int64_t c = vocab_chunk > 0 ? vocab_chunk : 8192;
    return c < V ? c : V;
}

/* Cached layout: logits (then dlogits in place) [N, chunk] of the
 * activations' type | dh accumulator [N, C] F32 (BF16 backward only) |
 * m, s, tl [N] F32 each. */
static lact_status xent_buffers(lact_ctx *ctx, int64_t N, int64_t C, int64_t chunk, lact_dtype dt,
                                bool backward, void **logits, float **dh_acc, float **stats) {
    size_t lg = (size_t)(N * chunk) * lact_dtype_size(dt), acc = 0, st3 = (size_t)(3 * N) * 4;
    if (backward && dt != LACT_F32) acc = (size_t)(N * C) * 4;
    lg = (lg + 255) / 256 * 256;
    acc = (acc + 255) / 256 * 256;
    char *base = NULL;
    LACT_TRY(lact_cuda_buffer(ctx, LACT_BUF_XENT, lg + acc + st3, (void **)&base));
    *logits = base;
    *dh_acc = acc ? (float *)(base + lg) : NULL;
    *stats = (float *)(base + lg + acc);
    return LACT_OK;
}

/* logits [N, cw] = h [N, C] · w[v0 : v0 + cw]ᵀ, of h's type. */
static lact_status xent_logits(lact_ctx *ctx, void *logits, const lact_tensor *h,
                               const lact_tensor *w, int64_t v0, int64_t cw) {
    int64_t N = lact_tensor_rows(h), C = lact_tensor_cols(h);
    const char *wp = (const char *)w->data + (size_t)(v0 * C) * lact_dtype_size(w->dtype);
    lact_gemm_desc g = lact_gemm_desc_make(h->data, wp, logits, h->dtype, h->dtype, false, true, N,
                                           cw, C, 1, 0, 0, 0, 1.0f, 0.0f);
    return lact_cuda_gemm(ctx, &g);
}

extern "C" lact_status lact_cuda_xent_forward(lact_ctx *ctx, lact_tensor *loss, lact_tensor *lse,
                                              const lact_tensor *h, const lact_tensor *w,
                                              const lact_tensor *target, int64_t vocab_chunk) {
    int64_t N = lact_tensor_rows(h), C = lact_tensor_cols(h), V = w->shape[0];
    if (!N) return LACT_OK;
    if (!V) return lact_fail(LACT_E_ARG, "xent: empty vocabulary");
    if (h->dtype != LACT_F32 && h->dtype != LACT_BF16)
        return lact_fail(LACT_E_UNSUPPORTED, "xent: activations must be F32 or BF16, not %s",
                         lact_dtype_name(h->dtype));
    int64_t chunk = xent_chunk(vocab_chunk, V);
    float *dh_acc, *stats;
    void *logits;
    LACT_TRY(xent_buffers(ctx, N, C, chunk, h->dtype, false, &logits, &dh_acc, &stats));
    float *m = stats, *s = stats + N, *tl = stats + 2 * N;
    const int32_t *tg = (const int32_t *)target->data;
    cudaStream_t st = lact_cuda_stream(ctx);
    for (int64_t v0 = 0; v0 < V; v0 += chunk) {
        int64_t cw = V - v0 < chunk ? V - v0 : chunk;
        LACT_TRY(xent_logits(ctx, logits, h, w, v0, cw));
        const unsigned blocks = (unsigned)((N + XENT_FOLD_ROWS - 1) / XENT_FOLD_ROWS);
        if (h->dtype == LACT_BF16)
            xent_fold_kernel<bf16><<<blocks, XENT_FOLD_THREADS, 0, st>>>(
                m, s, tl, (const bf16 *)logits, tg, N, cw, v0, v0 == 0);
        else
            xent_fold_kernel<float><<<blocks, XENT_FOLD_THREADS, 0, st>>>(
                m, s, tl, (const float *)logits, tg, N, cw, v0, v0 == 0);
        LACT_CU_LAUNCH("xent_fold");
    }
    xent_finish_kernel<<<lact_grid_1d(N, 256), 256, 0, st>>>((float *)loss->data,
                                                             (float *)lse->data, m, s, tl, tg, N);
    LACT_CU_LAUNCH("xent_finish");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_xent_backward(lact_ctx *ctx, lact_tensor *dh, lact_tensor *dw,
                                               const lact_tensor *dloss, const lact_tensor *h,
                                               const lact_tensor *w, const lact_tensor *target,
                                               const lact_tensor *lse, int64_t vocab_chunk) {
    int64_t N = lact_tensor_rows(h), C = lact_tensor_cols(h), V = w->shape[0];
    if (!dh && !dw) return LACT_OK;
    if (!N) {
        if (dw)
            LACT_CU(cudaMemsetAsync(dw->data, 0, lact_tensor_nbytes(dw), lact_cuda_stream(ctx)));
        return LACT_OK;
    }
    int64_t chunk = xent_chunk(vocab_chunk, V);
    lact_dtype dt = h->dtype;
    if (dt != LACT_F32 && dt != LACT_BF16)
        return lact_fail(LACT_E_UNSUPPORTED, "xent: activations must be F32 or BF16, not %s",
                         lact_dtype_name(dt));
    float *dh_acc, *stats;
    void *dl;
    LACT_TRY(xent_buffers(ctx, N, C, chunk, dt, true, &dl, &dh_acc, &stats));
    cudaStream_t st = lact_cuda_stream(ctx);
    size_t es = lact_dtype_size(dt);
    /* fp32 accumulation of dh across chunks; for F32 straight into dh. */
    void *dh_out = dh ? (dt == LACT_F32 ? dh->data : (void *)dh_acc) : NULL;
    for (int64_t v0 = 0; v0 < V; v0 += chunk) {
        int64_t cw = V - v0 < chunk ? V - v0 : chunk;
        LACT_TRY(xent_logits(ctx, dl, h, w, v0, cw));
        if (dt == LACT_BF16)
            xent_dlogits_kernel<bf16><<<(unsigned)N, 256, 0, st>>>(
                (bf16 *)dl, (const float *)lse->data, (const float *)dloss->data,
                (const int32_t *)target->data, cw, v0);
        else
            xent_dlogits_kernel<float><<<(unsigned)N, 256, 0, st>>>(
                (float *)dl, (const float *)lse->data, (const float *)dloss->data,
                (const int32_t *)target->data, cw, v0);
        LACT_CU_LAUNCH("xent_dlogits");
        const char *wp = (const char *)w->data + (size_t)(v0 * C) * es;
        if (dh_out) { /* dh [N, C] += dl [N, cw] · w_chunk [cw, C] */
            lact_gemm_desc g = lact_gemm_desc_make(dl, wp, dh_out, dt, LACT_F32, false, false, N, C,
                                                   cw, 1, 0, 0, 0, 1.0f, v0 == 0 ? 0.0f : 1.0f);
            LACT_TRY(lact_cuda_gemm(ctx, &g));
        }
        if (dw) { /* dw_chunk [cw, C] = dlᵀ [cw, N] · h [N, C] */
            float *dwp = (float *)dw->data + v0 * C;
            lact_gemm_desc g = lact_gemm_desc_make(dl, h->data, dwp, dt, LACT_F32, true, false, cw,
                                                   C, N, 1, 0, 0, 0, 1.0f, 0.0f);
            LACT_TRY(lact_cuda_gemm(ctx, &g));
        }
    }
    if (dh && dt != LACT_F32) {
        lact_tensor acc = lact_tensor_view(dh_acc, LACT_F32, LACT_CUDA, dh->ndim, dh->shape);
        LACT_TRY(lact_cuda_cast_forward(ctx, dh, &acc));
    }
    return LACT_OK;
}
