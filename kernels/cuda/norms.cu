/* Row normalisations: rmsnorm, layernorm and l2norm, fp32 statistics.
 *
 * rmsnorm and l2norm are bound by memory, so they read each row once: a
 * group of TPR threads (4 .. 256, a power of two) owns a row, each thread
 * holds up to ROW_MAX_NV 16-byte words of it in registers between the
 * statistic and the write, and the row's sum is a butterfly of shuffles
 * (plus one shared-memory step when the row spans several warps). Rows that
 * do not fit (more than 256 · ROW_MAX_NV words; 256 · 2 for the bf16
 * rmsnorm backward) take the loop kernels, one block per row, which read
 * the row twice. The rmsnorm weight gradient is
 * summed in the same pass as dx: each block adds its rows per column, in a
 * fixed order, into one partial row of the scratch, and colsum.cuh's final
 * stage adds the partial rows. Layernorm keeps one block per row; its weight
 * and bias gradients are column sums. */
#include <type_traits>

#include "kernels/cuda/colsum.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vec.cuh"

#define ROW_THREADS 256
#define ROW_MAX_NV 4
#define ROW_MAX_TPR 256
#define ROW_MAX_ELEMS 32 /* values of a row per thread, per tensor */
/* The fused rmsnorm backward holds dout, x and the dw sums: fewer values a
 * thread, so that ROW_DW_MIN_BLOCKS blocks fit an SM and the
 * ROW_DW_BLOCKS blocks of partial sums run as one wave on a large GPU. The
 * counts are fixed, not taken from the device, so dw's bits do not depend
 * on it. */
#define ROW_DW_ELEMS 16
#define ROW_DW_MIN_BLOCKS 3
#define ROW_DW_BLOCKS 384 /* partial rows of the fused weight gradient */

template <int N> using int_c = std::integral_constant<int, N>;

/* ---- register rows ---------------------------------------------------------------- */

/* Row layout: tpr threads per row (blockDim.x), rpb rows per block
 * (blockDim.y), nv words per thread, nvec words per row. */
typedef struct row_geom {
    int tpr, rpb, nv;
    int64_t nvec;
} row_geom;

/* The smallest row group that holds a row of nvec words in max_nv words
 * per thread; false when even ROW_MAX_TPR threads cannot. */
static bool row_geom_make(int64_t nvec, int max_nv, row_geom *g) {
    int tpr = 4;
    while (tpr < ROW_MAX_TPR && (int64_t)tpr * max_nv < nvec)
        tpr *= 2;
    if ((int64_t)tpr * max_nv < nvec) return false;
    g->tpr = tpr;
    g->rpb = ROW_THREADS / tpr;
    g->nv = (int)((nvec + tpr - 1) / tpr);
    g->nvec = nvec;
    return true;
}

/* Calls f(int_c<V>, int_c<NV>, g) with V = 16-byte words of T when every
 * pointer is aligned and the word divides C, else V = 1, and NV words of V
 * per thread, NV · V ≤ max_elems (at most ROW_MAX_NV words); false when the
 * row is too long for registers (the caller takes the loop kernel). */
template <class T, class F>
static bool row_launch(int64_t C, bool aligned, int max_elems, row_geom *g, const F &f,
                       lact_status *s) {
    constexpr int W = vec_width<T>::value;
    bool wide = aligned && C % W == 0;
    int max_nv = max_elems / (wide ? W : 1);
    if (max_nv > ROW_MAX_NV) max_nv = ROW_MAX_NV;
    if (max_nv < 1) max_nv = 1;
    if (!row_geom_make(wide ? C / W : C, max_nv, g)) return false;
#define ROW_CASES(V)                                                                               \
    switch (g->nv) {                                                                               \
    case 1:                                                                                        \
        *s = f(int_c<V>(), int_c<1>(), *g);                                                        \
        break;                                                                                     \
    case 2:                                                                                        \
        *s = f(int_c<V>(), int_c<2>(), *g);                                                        \
        break;                                                                                     \
    case 3:                                                                                        \
        *s = f(int_c<V>(), int_c<3>(), *g);                                                        \
        break;                                                                                     \
    default:                                                                                       \
        *s = f(int_c<V>(), int_c<4>(), *g);                                                        \
        break;                                                                                     \
    }
    if (wide) {
        ROW_CASES(W)
    } else {
        ROW_CASES(1)
    }
#undef ROW_CASES
    return true;
}

static unsigned row_grid(int64_t R, const row_geom *g) {
    int64_t b = (R + g->rpb - 1) / g->rpb;
    if (b > (1 << 20)) b = 1 << 20;
    return (unsigned)(b < 1 ? 1 : b);
}

/* v[k] = Σ over the row's threads, the same bits in every thread. All
 * threads of the block call it (the shared step has barriers). sh: 8 · K
 * floats. */
template <int K> __device__ __forceinline__ void row_sum(float (&v)[K], float *sh) {
    const int tpr = blockDim.x;
    for (int o = (tpr < 32 ? tpr : 32) / 2; o > 0; o >>= 1)
#pragma unroll
        for (int k = 0; k < K; k++)
            v[k] += __shfl_xor_sync(0xffffffffu, v[k], o);
    if (tpr > 32) {
        const int wpr = tpr / 32;
        float *row = sh + threadIdx.y * wpr * K;
        __syncthreads();
        if ((threadIdx.x & 31) == 0)
#pragma unroll
            for (int k = 0; k < K; k++)
                row[(threadIdx.x / 32) * K + k] = v[k];
        __syncthreads();
#pragma unroll
        for (int k = 0; k < K; k++) {
            float s = 0.0f;
            for (int i = 0; i < wpr; i++)
                s += row[i * K + k];
            v[k] = s;
        }
    }
}

/* Words k of the thread: word tx + k · tpr of the row; absent ones are 0. */
template <int V, int NV, class T>
__device__ __forceinline__ void row_load(float (&v)[NV][V], const T *row, bool ok, int64_t nvec) {
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
        if (ok && j < nvec) {
            vload<V>(row + j * V, v[k]);
        } else {
#pragma unroll
            for (int e = 0; e < V; e++)
                v[k][e] = 0.0f;
        }
    }
}

/* The scale vector's word j, or ones without one (a uniform branch). */
template <int V>
__device__ __forceinline__ void row_weight(float (&wv)[V], const float *w, int64_t j) {
    if (w) {
        vload<V>(w + j * V, wv);
    } else {
#pragma unroll
        for (int e = 0; e < V; e++)
            wv[e] = 1.0f;
    }
}

/* ---- rmsnorm ------------------------------------------------------------------ */

/* y = res + y, y rounded to T first: the bits of a separate add (the
 * `_add` variants of the rmsnorm forward and backward). */
template <class T, int V>
__device__ __forceinline__ void add_rounded(float (&y)[V], const T (&res)[V]) {
#pragma unroll
    for (int e = 0; e < V; e++)
        y[e] = to_f32(res[e]) + to_f32(from_f32<T>(y[e]));
}

/* t = p[0..V) as stored (16-byte words when V · sizeof(T) allows). */
template <int V, class T> __device__ __forceinline__ void vload_raw(T (&t)[V], const T *p) {
    if constexpr ((V * sizeof(T)) % 16 == 0) {
#pragma unroll
        for (int w = 0; w < (int)(V * sizeof(T)) / 16; w++)
            reinterpret_cast<uint4 *>(t)[w] = reinterpret_cast<const uint4 *>(p)[w];
    } else {
#pragma unroll
        for (int e = 0; e < V; e++)
            t[e] = p[e];
    }
}

/* The residual's words of a row, loaded with the row itself and kept in
 * T (a bf16 word is four registers): read after the row's sum, their
 * latency would be the rmsnorm backward's. */
template <int V, int NV, class T>
__device__ __forceinline__ void row_load_raw(T (&t)[NV][V], const T *row, bool ok, int64_t nvec) {
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
        if (ok && j < nvec) vload_raw<V>(t[k], row + j * V);
    }
}

/* Where row r of x lands in out: r itself, or with H > 0 (x's rows in
 * heads order [B, H, L], out's in token order [B, L, H]) its swapped
 * place. */
struct row_perm {
    int64_t H, L;
};

__device__ __forceinline__ int64_t out_row(int64_t r, row_perm p) {
    if (p.H == 0) return r;
    const int64_t n = r / p.L, l = r - n * p.L, b = n / p.H, h = n - b * p.H;
    return (b * p.L + l) * p.H + h;
}

template <class T, int V, int NV, bool RES, bool PERM>
__global__ void __launch_bounds__(ROW_THREADS)
    rmsnorm_kernel(T *out, float *rstd, const T *x, const float *w, const T *res, int64_t R,
                   int64_t C, float eps, row_perm perm) {
    __shared__ float sh[8];
    const int64_t nvec = C / V;
    for (int64_t r0 = (int64_t)blockIdx.x * blockDim.y; r0 < R;
         r0 += (int64_t)gridDim.x * blockDim.y) {
        const int64_t r = r0 + threadIdx.y;
        const bool ok = r < R;
        float v[NV][V];
        row_load<V>(v, x + r * C, ok, nvec);
        float ss[1] = {0.0f};
#pragma unroll
        for (int k = 0; k < NV; k++)
#pragma unroll
            for (int e = 0; e < V; e++)
                ss[0] += v[k][e] * v[k][e];
        row_sum(ss, sh);
        const float rs = rsqrtf(ss[0] / (float)C + eps);
        if (!ok) continue;
        if (threadIdx.x == 0) rstd[r] = rs;
        T *orow = out + (PERM ? out_row(r, perm) : r) * C;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
            if (j >= nvec) continue;
            float wv[V], y[V];
            row_weight(wv, w, j);
#pragma unroll
            for (int e = 0; e < V; e++)
                y[e] = v[k][e] * rs * wv[e];
            if constexpr (RES) {
                /* read here, not with the row: held across the row's sum
                 * the words cost the forward more occupancy than latency */
                alignas(16) T rr[V];
                vload_raw<V>(rr, res + r * C + j * V);
                add_rounded<T, V>(y, rr);
            }
            vstore<V>(orow + j * V, y);
        }
    }
}

/* dx = rstd (g − x rstd² mean(g x)), g = dout ⊙ w. With dw_part, also the
 * block's share of dw = Σ_r dout x rstd: its rows per column in registers,
 * then its rpb row lanes added in order through shared memory into
 * dw_part[blockIdx.x, :]. */
template <class T, int V, int NV, bool RES>
__global__ void __launch_bounds__(ROW_THREADS, ROW_DW_MIN_BLOCKS)
    rmsnorm_backward_kernel(T *dx, float *dw_part, const T *dout, const T *x, const float *w,
                            const float *rstd, const T *res, int64_t R, int64_t C) {
    __shared__ float sh[8];
    extern __shared__ float dw_sh[]; /* [rpb, C] when dw_part and rpb > 1 */
    const int64_t nvec = C / V;
    float acc[NV][V];
#pragma unroll
    for (int k = 0; k < NV; k++)
#pragma unroll
        for (int e = 0; e < V; e++)
            acc[k][e] = 0.0f;
    for (int64_t r0 = (int64_t)blockIdx.x * blockDim.y; r0 < R;
         r0 += (int64_t)gridDim.x * blockDim.y) {
        const int64_t r = r0 + threadIdx.y;
        const bool ok = r < R;
        float d[NV][V], xv[NV][V];
        row_load<V>(d, dout + r * C, ok, nvec);
        row_load<V>(xv, x + r * C, ok, nvec);
        alignas(16) T rr[RES ? NV : 1][V];
        if constexpr (RES) row_load_raw<V, NV>(rr, res + r * C, ok, nvec);
        float dot[1] = {0.0f};
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
            float wv[V];
            row_weight(wv, w, j < nvec ? j : 0);
#pragma unroll
            for (int e = 0; e < V; e++) {
                dot[0] += d[k][e] * wv[e] * xv[k][e];
            }
        }
        row_sum(dot, sh);
        if (!ok) continue;
        const float rs = rstd[r], kk = rs * rs * dot[0] / (float)C;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
            if (j >= nvec) continue;
            if (dx) {
                float wv[V], y[V];
                row_weight(wv, w, j);
#pragma unroll
                for (int e = 0; e < V; e++)
                    y[e] = rs * (d[k][e] * wv[e] - xv[k][e] * kk);
                if constexpr (RES) add_rounded<T, V>(y, rr[k]);
                vstore<V>(dx + r * C + j * V, y);
            }
            if (dw_part)
#pragma unroll
                for (int e = 0; e < V; e++)
                    acc[k][e] += d[k][e] * xv[k][e] * rs;
        }
    }
    if (!dw_part) return;
    float *part = dw_part + (int64_t)blockIdx.x * C;
    if (blockDim.y == 1) {
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
            if (j < nvec) vstore<V>(part + j * V, acc[k]);
        }
        return;
    }
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
        if (j < nvec)
#pragma unroll
            for (int e = 0; e < V; e++)
                dw_sh[threadIdx.y * C + j * V + e] = acc[k][e];
    }
    __syncthreads();
    for (int64_t c = threadIdx.y * blockDim.x + threadIdx.x; c < C;
         c += (int64_t)blockDim.x * blockDim.y) {
        float s = 0.0f;
        for (unsigned y = 0; y < blockDim.y; y++)
            s += dw_sh[y * C + c];
        part[c] = s;
    }
}

/* ---- loop rows (rows too long for registers) ------------------------------------ */

template <class T>
__global__ void rmsnorm_loop_kernel(T *out, float *rstd, const T *x, const float *w, const T *res,
                                    int64_t C, float eps, row_perm perm) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C;
    T *yr = out + out_row(r, perm) * C;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float v = ld(xr, c);
        ss += v * v;
    }
    ss = block_sum(ss, sh);
    float rs = rsqrtf(ss / (float)C + eps);
    if (threadIdx.x == 0) rstd[r] = rs;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        const float v = ld(xr, c) * rs * (w ? w[c] : 1.0f);
        st(yr, c, res ? ld(res + r * C, c) + to_f32(from_f32<T>(v)) : v);
    }
}

template <class T>
__global__ void rmsnorm_backward_loop_kernel(T *dx, const T *dout, const T *x, const float *w,
                                             const float *rstd, const T *res, int64_t C) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C, *dr = dout + r * C;
    float dot = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float g = ld(dr, c) * (w ? w[c] : 1.0f);
        dot += g * ld(xr, c);
    }
    dot = block_sum(dot, sh);
    float rs = rstd[r], k = rs * rs * dot / (float)C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float g = ld(dr, c) * (w ? w[c] : 1.0f);
        const float v = rs * (g - ld(xr, c) * k);
        st(dx + r * C, c, res ? ld(res + r * C, c) + to_f32(from_f32<T>(v)) : v);
    }
}

template <class T, int V> struct rms_dw_at {
    const T *dout, *x;
    const float *rstd;
    int64_t C;
    __device__ void operator()(int64_t r, int64_t c, float (&v)[V]) const {
        float xv[V];
        vload<V>(dout + r * C + c, v);
        vload<V>(x + r * C + c, xv);
        const float rs = rstd[r];
#pragma unroll
        for (int e = 0; e < V; e++)
            v[e] = v[e] * xv[e] * rs;
    }
};

static lact_status rmsnorm_forward(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd,
                                   const lact_tensor *x, const lact_tensor *w, float eps,
                                   const lact_tensor *res, row_perm perm) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C) return LACT_OK;
    const float *wp = w && w->data ? (const float *)w->data : NULL;
    cudaStream_t st = lact_cuda_stream(ctx);
    lact_status s = LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "rmsnorm", {
        T *o = (T *)out->data;
        const T *xp = (const T *)x->data;
        float *rp = (float *)rstd->data;
        const T *rsp = res ? (const T *)res->data : NULL;
        row_geom g;
        auto launch = [&](auto v, auto nv, const row_geom &rg) -> lact_status {
            const unsigned grid = row_grid(R, &rg);
            constexpr int VV = decltype(v)::value, NN = decltype(nv)::value;
            const dim3 blk(rg.tpr, rg.rpb);
            if (rsp && perm.H)
                rmsnorm_kernel<T, VV, NN, true, true>
                    <<<grid, blk, 0, st>>>(o, rp, xp, wp, rsp, R, C, eps, perm);
            else if (rsp)
                rmsnorm_kernel<T, VV, NN, true, false>
                    <<<grid, blk, 0, st>>>(o, rp, xp, wp, rsp, R, C, eps, perm);
            else if (perm.H)
                rmsnorm_kernel<T, VV, NN, false, true>
                    <<<grid, blk, 0, st>>>(o, rp, xp, wp, NULL, R, C, eps, perm);
            else
                rmsnorm_kernel<T, VV, NN, false, false>
                    <<<grid, blk, 0, st>>>(o, rp, xp, wp, NULL, R, C, eps, perm);
            LACT_CU_LAUNCH("rmsnorm");
            return LACT_OK;
        };
        if (!row_launch<T>(C, lact_aligned16(o, xp, wp) && lact_aligned16(rsp), ROW_MAX_ELEMS, &g,
                           launch, &s)) {
            rmsnorm_loop_kernel<T>
                <<<(unsigned)R, lact_row_threads(C), 0, st>>>(o, rp, xp, wp, rsp, C, eps, perm);
            LACT_CU_LAUNCH("rmsnorm");
        }
    });
    return s;
}

extern "C" lact_status lact_cuda_rmsnorm_forward(lact_ctx *ctx, lact_tensor *out, lact_tensor *rstd,
                                                 const lact_tensor *x, const lact_tensor *w,
                                                 float eps, const lact_tensor *res) {
    return rmsnorm_forward(ctx, out, rstd, x, w, eps, res, row_perm{0, 0});
}

extern "C" lact_status lact_cuda_rmsnorm_forward_heads(lact_ctx *ctx, lact_tensor *out,
                                                       lact_tensor *rstd, const lact_tensor *x,
                                                       const lact_tensor *w, float eps,
                                                       const lact_tensor *res) {
    return rmsnorm_forward(ctx, out, rstd, x, w, eps, res, row_perm{x->shape[1], x->shape[2]});
}

extern "C" lact_status lact_cuda_rmsnorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                                  const lact_tensor *dout, const lact_tensor *x,
                                                  const lact_tensor *w, const lact_tensor *rstd,
                                                  const lact_tensor *res, bool dw_acc) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C || (!dx && !dw)) return LACT_OK;
    const float *wp = w && w->data ? (const float *)w->data : NULL;
    const float *rp = (const float *)rstd->data;
    cudaStream_t st = lact_cuda_stream(ctx);
    /* Partial rows of dw: a fixed count for the shape, within the scratch. */
    int64_t max_part = (int64_t)(ctx->scratch_bytes / sizeof(float)) / C;
    float *part = dw && max_part >= 1 ? (float *)ctx->scratch : NULL;
    lact_status s = LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "rmsnorm backward", {
        T *dxp = dx ? (T *)dx->data : NULL;
        const T *dp = (const T *)dout->data, *xp = (const T *)x->data;
        const T *rsp = res ? (const T *)res->data : NULL;
        row_geom g;
        int64_t blocks = 0;
        auto launch = [&](auto v, auto nv, const row_geom &rg) -> lact_status {
            blocks = row_grid(R, &rg);
            size_t smem = 0;
            if (part) {
                if (blocks > ROW_DW_BLOCKS) blocks = ROW_DW_BLOCKS;
                if (blocks > max_part) blocks = max_part;
                if (rg.rpb > 1) smem = (size_t)rg.rpb * (size_t)C * sizeof(float);
            }
            /* The residual is a template switch: the plain kernel keeps
             * its registers (a runtime test cost it a fifth of its rate). */
            if (rsp)
                rmsnorm_backward_kernel<T, decltype(v)::value, decltype(nv)::value, true>
                    <<<(unsigned)blocks, dim3(rg.tpr, rg.rpb), smem, st>>>(dxp, part, dp, xp, wp,
                                                                           rp, rsp, R, C);
            else
                rmsnorm_backward_kernel<T, decltype(v)::value, decltype(nv)::value, false>
                    <<<(unsigned)blocks, dim3(rg.tpr, rg.rpb), smem, st>>>(dxp, part, dp, xp, wp,
                                                                           rp, NULL, R, C);
            LACT_CU_LAUNCH("rmsnorm_backward");
            return LACT_OK;
        };
        if (row_launch<T>(C, lact_aligned16(dxp, dp, xp, wp) && lact_aligned16(rsp), ROW_DW_ELEMS,
                          &g, launch, &s)) {
            if (s == LACT_OK && part) {
                s = lact_colsum_final(st, part, blocks, C, (float *)dw->data, dw_acc);
            }
        } else {
            if (dxp) {
                rmsnorm_backward_loop_kernel<T>
                    <<<(unsigned)R, lact_row_threads(C), 0, st>>>(dxp, dp, xp, wp, rp, rsp, C);
                LACT_CU_LAUNCH("rmsnorm_backward");
            }
            if (dw)
                LACT_TRY(lact_colsum<1>(ctx, rms_dw_at<T, 1>{dp, xp, rp, C}, R, C,
                                        (float *)dw->data, dw_acc));
        }
    });
    return s;
}

/* ---- layernorm ----------------------------------------------------------------- */

template <class T>
__global__ void layernorm_kernel(T *out, float *mean, float *rstd, const T *x, const float *w,
                                 const float *b, int64_t C, float eps) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C;
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        s += ld(xr, c);
    float mu = block_sum(s, sh) / (float)C;
    float v = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float d = ld(xr, c) - mu;
        v += d * d;
    }
    float rs = rsqrtf(block_sum(v, sh) / (float)C + eps);
    if (threadIdx.x == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float y = (ld(xr, c) - mu) * rs;
        if (w) y *= w[c];
        if (b) y += b[c];
        st(out + r * C, c, y);
    }
}

/* dx = rstd (g − mean(g) − x̂ mean(g x̂)), g = dout ⊙ w, x̂ = (x − mean) rstd. */
template <class T>
__global__ void layernorm_backward_kernel(T *dx, const T *dout, const T *x, const float *w,
                                          const float *mean, const float *rstd, int64_t C) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C, *dr = dout + r * C;
    float mu = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float g = ld(dr, c) * (w ? w[c] : 1.0f);
        sg += g;
        sgx += g * (ld(xr, c) - mu) * rs;
    }
    float mg = block_sum(sg, sh) / (float)C;
    float mgx = block_sum(sgx, sh) / (float)C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float g = ld(dr, c) * (w ? w[c] : 1.0f);
        float xh = (ld(xr, c) - mu) * rs;
        st(dx + r * C, c, rs * (g - mg - xh * mgx));
    }
}

template <class T, int V> struct ln_dw_at {
    const T *dout, *x;
    const float *mean, *rstd;
    int64_t C;
    __device__ void operator()(int64_t r, int64_t c, float (&v)[V]) const {
        float xv[V];
        vload<V>(dout + r * C + c, v);
        vload<V>(x + r * C + c, xv);
        const float mu = mean[r], rs = rstd[r];
#pragma unroll
        for (int e = 0; e < V; e++)
            v[e] = v[e] * (xv[e] - mu) * rs;
    }
};

template <class T, int V> struct ln_db_at {
    const T *dout;
    int64_t C;
    __device__ void operator()(int64_t r, int64_t c, float (&v)[V]) const {
        vload<V>(dout + r * C + c, v);
    }
};

extern "C" lact_status lact_cuda_layernorm_forward(lact_ctx *ctx, lact_tensor *out,
                                                   lact_tensor *mean, lact_tensor *rstd,
                                                   const lact_tensor *x, const lact_tensor *w,
                                                   const lact_tensor *b, float eps) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C) return LACT_OK;
    const float *wp = w && w->data ? (const float *)w->data : NULL;
    const float *bp = b && b->data ? (const float *)b->data : NULL;
    LACT_DISPATCH_FLOAT(x->dtype, "layernorm", {
        layernorm_kernel<T><<<(unsigned)R, lact_row_threads(C), 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (float *)mean->data, (float *)rstd->data, (const T *)x->data, wp, bp, C,
            eps);
    });
    LACT_CU_LAUNCH("layernorm");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_layernorm_backward(lact_ctx *ctx, lact_tensor *dx, lact_tensor *dw,
                                                    lact_tensor *db, const lact_tensor *dout,
                                                    const lact_tensor *x, const lact_tensor *w,
                                                    const lact_tensor *mean,
                                                    const lact_tensor *rstd) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C) return LACT_OK;
    const float *wp = w && w->data ? (const float *)w->data : NULL;
    const float *mp = (const float *)mean->data, *rp = (const float *)rstd->data;
    LACT_DISPATCH_FLOAT(x->dtype, "layernorm backward", {
        const T *dp = (const T *)dout->data, *xp = (const T *)x->data;
        constexpr int W = vec_width<T>::value;
        const bool wide = C % W == 0 && lact_aligned16(dp, xp);
        if (dx) {
            layernorm_backward_kernel<T>
                <<<(unsigned)R, lact_row_threads(C), 0, lact_cuda_stream(ctx)>>>((T *)dx->data, dp,
                                                                                 xp, wp, mp, rp, C);
            LACT_CU_LAUNCH("layernorm_backward");
        }
        if (dw) {
            float *o = (float *)dw->data;
            if (wide)
                LACT_TRY(lact_colsum<W>(ctx, ln_dw_at<T, W>{dp, xp, mp, rp, C}, R, C, o));
            else
                LACT_TRY(lact_colsum<1>(ctx, ln_dw_at<T, 1>{dp, xp, mp, rp, C}, R, C, o));
        }
        if (db) {
            float *o = (float *)db->data;
            if (wide)
                LACT_TRY(lact_colsum<W>(ctx, ln_db_at<T, W>{dp, C}, R, C, o));
            else
                LACT_TRY(lact_colsum<1>(ctx, ln_db_at<T, 1>{dp, C}, R, C, o));
        }
    });
    return LACT_OK;
}

/* ---- l2norm -------------------------------------------------------------------- */

template <class T, int V, int NV>
__global__ void __launch_bounds__(ROW_THREADS)
    l2norm_kernel(T *out, const T *x, int64_t R, int64_t C, float eps) {
    __shared__ float sh[8];
    const int64_t nvec = C / V;
    for (int64_t r0 = (int64_t)blockIdx.x * blockDim.y; r0 < R;
         r0 += (int64_t)gridDim.x * blockDim.y) {
        const int64_t r = r0 + threadIdx.y;
        const bool ok = r < R;
        float v[NV][V];
        row_load<V>(v, x + r * C, ok, nvec);
        float ss[1] = {0.0f};
#pragma unroll
        for (int k = 0; k < NV; k++)
#pragma unroll
            for (int e = 0; e < V; e++)
                ss[0] += v[k][e] * v[k][e];
        row_sum(ss, sh);
        const float inv = 1.0f / (sqrtf(ss[0]) + eps);
        if (!ok) continue;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
            if (j >= nvec) continue;
            float y[V];
#pragma unroll
            for (int e = 0; e < V; e++)
                y[e] = v[k][e] * inv;
            vstore<V>(out + r * C + j * V, y);
        }
    }
}

/* y = x / (n + eps), n = ‖x‖: dx = dout / (n + eps) − x (x·dout) / ((n + eps)² n). */
template <class T, int V, int NV>
__global__ void __launch_bounds__(ROW_THREADS)
    l2norm_backward_kernel(T *dx, const T *dout, const T *x, int64_t R, int64_t C, float eps) {
    __shared__ float sh[16];
    const int64_t nvec = C / V;
    for (int64_t r0 = (int64_t)blockIdx.x * blockDim.y; r0 < R;
         r0 += (int64_t)gridDim.x * blockDim.y) {
        const int64_t r = r0 + threadIdx.y;
        const bool ok = r < R;
        float v[NV][V], d[NV][V];
        row_load<V>(v, x + r * C, ok, nvec);
        row_load<V>(d, dout + r * C, ok, nvec);
        float sums[2] = {0.0f, 0.0f}; /* ‖x‖², x·dout */
#pragma unroll
        for (int k = 0; k < NV; k++)
#pragma unroll
            for (int e = 0; e < V; e++) {
                sums[0] += v[k][e] * v[k][e];
                sums[1] += v[k][e] * d[k][e];
            }
        row_sum(sums, sh);
        const float n = sqrtf(sums[0]), dd = n + eps;
        const float kk = n > 0.0f ? sums[1] / (dd * dd * n) : 0.0f;
        if (!ok) continue;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int64_t j = threadIdx.x + (int64_t)k * blockDim.x;
            if (j >= nvec) continue;
            float y[V];
#pragma unroll
            for (int e = 0; e < V; e++)
                y[e] = d[k][e] / dd - v[k][e] * kk;
            vstore<V>(dx + r * C + j * V, y);
        }
    }
}

template <class T> __global__ void l2norm_loop_kernel(T *out, const T *x, int64_t C, float eps) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float v = ld(xr, c);
        ss += v * v;
    }
    float inv = 1.0f / (sqrtf(block_sum(ss, sh)) + eps);
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        st(out + r * C, c, ld(xr, c) * inv);
}

template <class T>
__global__ void l2norm_backward_loop_kernel(T *dx, const T *dout, const T *x, int64_t C,
                                            float eps) {
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const T *xr = x + r * C, *dr = dout + r * C;
    float ss = 0.0f, dot = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float v = ld(xr, c);
        ss += v * v;
        dot += v * ld(dr, c);
    }
    float n = sqrtf(block_sum(ss, sh));
    dot = block_sum(dot, sh);
    float d = n + eps;
    float k = n > 0.0f ? dot / (d * d * n) : 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
        st(dx + r * C, c, ld(dr, c) / d - ld(xr, c) * k);
}

extern "C" lact_status lact_cuda_l2norm_forward(lact_ctx *ctx, lact_tensor *out,
                                                const lact_tensor *x, float eps) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C) return LACT_OK;
    cudaStream_t st = lact_cuda_stream(ctx);
    lact_status s = LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "l2norm", {
        T *o = (T *)out->data;
        const T *xp = (const T *)x->data;
        row_geom g;
        auto launch = [&](auto v, auto nv, const row_geom &rg) -> lact_status {
            l2norm_kernel<T, decltype(v)::value, decltype(nv)::value>
                <<<row_grid(R, &rg), dim3(rg.tpr, rg.rpb), 0, st>>>(o, xp, R, C, eps);
            LACT_CU_LAUNCH("l2norm");
            return LACT_OK;
        };
        if (!row_launch<T>(C, lact_aligned16(o, xp), ROW_MAX_ELEMS, &g, launch, &s)) {
            l2norm_loop_kernel<T><<<(unsigned)R, lact_row_threads(C), 0, st>>>(o, xp, C, eps);
            LACT_CU_LAUNCH("l2norm");
        }
    });
    return s;
}

extern "C" lact_status lact_cuda_l2norm_backward(lact_ctx *ctx, lact_tensor *dx,
                                                 const lact_tensor *dout, const lact_tensor *x,
                                                 float eps) {
    int64_t R = lact_tensor_rows(x), C = lact_tensor_cols(x);
    if (!R || !C || !dx) return LACT_OK;
    cudaStream_t st = lact_cuda_stream(ctx);
    lact_status s = LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "l2norm backward", {
        T *o = (T *)dx->data;
        const T *dp = (const T *)dout->data, *xp = (const T *)x->data;
        row_geom g;
        auto launch = [&](auto v, auto nv, const row_geom &rg) -> lact_status {
            l2norm_backward_kernel<T, decltype(v)::value, decltype(nv)::value>
                <<<row_grid(R, &rg), dim3(rg.tpr, rg.rpb), 0, st>>>(o, dp, xp, R, C, eps);
            LACT_CU_LAUNCH("l2norm_backward");
            return LACT_OK;
        };
        if (!row_launch<T>(C, lact_aligned16(o, dp, xp), ROW_MAX_ELEMS, &g, launch, &s)) {
            l2norm_backward_loop_kernel<T>
                <<<(unsigned)R, lact_row_threads(C), 0, st>>>(o, dp, xp, C, eps);
            LACT_CU_LAUNCH("l2norm_backward");
        }
    });
    return s;
}
