/* The headprep op on CUDA. headprep_tiled.cu takes the usual shapes; these
 * general kernels take the rest (rows not a whole number of 16-byte words,
 * or more than 32 of them, or unaligned). A block owns one position l (grid
 * x) and a share of the batches (grid y), like the rope kernel: it forms the
 * cos and sin of the position's d / 2 angles once into shared memory, then
 * walks the (batch, head) rows of that position. A row of d elements
 * belongs to a group of TPR lanes; each lane holds V elements of both
 * halves of a rotation pair at a time, so the row's norm and dot products
 * are a shuffle within the group. Everything between z and the outputs
 * stays in fp32; z is read twice (the second time from L1/L2) when the norm
 * is needed. The parameter gradients are deterministic column sums
 * (colsum.cuh) of the dxs the backward writes. */
#include <math.h>

#include "kernels/cuda/colsum.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/headprep_common.cuh"
#include "kernels/cuda/headprep_cuda.h"
#include "kernels/cuda/headprep_tiled.h"
#include "kernels/cuda/vec.cuh"

#define HP_THREADS 128
#define HP_BLOCKS 4096

/* Shapes and angles of one launch. With rope, a unit is V elements of the
 * first half and the V elements d / 2 further (units = d / 2V); without, V
 * consecutive elements (units = d / V). */
struct hp_geom {
    int64_t B, L;
    int H, d, units;
    int64_t pos0;
    double log_theta;
};

/* Fills cs/sn [d / 2] for position l (sign −1: the backward's rotation). */
__device__ __forceinline__ void hp_angles(float *cs, float *sn, const hp_geom &g, int64_t l,
                                          double sign) {
    for (int i = threadIdx.x; i < g.d / 2; i += blockDim.x)
        hp_angle(g.pos0 + l, i, g.d, g.log_theta, sign, &cs[i], &sn[i]);
}

/* The scale and offset of V channels from c (16-byte words when V allows:
 * per-element loads of the two vectors would outnumber the row's own). */
template <int V>
__device__ __forceinline__ void hp_params(const float *scale, const float *offset, int c,
                                          float (&sc)[V], float (&of)[V]) {
    vload<V>(scale + c, sc);
    vload<V>(offset + c, of);
}

/* Sum over the TPR lanes of a group (every lane of the warp calls it). */
template <int TPR> __device__ __forceinline__ float hp_group_sum(float v) {
#pragma unroll
    for (int o = TPR / 2; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Element offsets of unit u within a row: first part at o0, second at o1. */
template <int V, bool ROPE>
__device__ __forceinline__ void hp_unit(const hp_geom &g, int u, int &o0, int &o1) {
    o0 = u * V;
    o1 = ROPE ? o0 + g.d / 2 : o0;
}

template <class T, int V, int TPR, bool ROPE>
__global__ void __launch_bounds__(HP_THREADS)
    headprep_fwd_kernel(T *qf, T *qa, const T *z, const float *scale, const float *offset,
                        hp_geom g, float eps) {
    extern __shared__ float hp_sh[];
    float *cs = hp_sh, *sn = hp_sh + g.d / 2;
    constexpr int P = ROPE ? 2 : 1;
    const int group = threadIdx.x / TPR, lane = threadIdx.x % TPR, per_pass = HP_THREADS / TPR;
    const int64_t nb = (g.B - blockIdx.y + gridDim.y - 1) / gridDim.y;
    const int64_t nrows = nb * g.H;
    for (int64_t l = blockIdx.x; l < g.L; l += gridDim.x) {
        if (ROPE) {
            __syncthreads();
            hp_angles(cs, sn, g, l, 1.0);
            __syncthreads();
        }
        for (int64_t r0 = 0; r0 < nrows; r0 += per_pass) {
            const int64_t r = r0 + group;
            const bool on = r < nrows;
            const int64_t b = blockIdx.y + (on ? r / g.H : 0) * gridDim.y;
            const int h = on ? (int)(r % g.H) : 0;
            const T *zr = z + ((b * g.L + l) * g.H + h) * g.d;
            const int64_t out_row = ((b * g.H + h) * g.L + l) * g.d;
            float inv = 0.0f;
            if (qf) {
                float ss = 0.0f;
                for (int u = lane; u - lane < g.units; u += TPR) {
                    if (!on || u >= g.units) continue;
                    int o[2];
                    hp_unit<V, ROPE>(g, u, o[0], o[1]);
#pragma unroll
                    for (int p = 0; p < P; p++) {
                        float x[V], sc[V], of[V];
                        vload<V>(zr + o[p], x);
                        hp_params<V>(scale, offset, h * g.d + o[p], sc, of);
#pragma unroll
                        for (int e = 0; e < V; e++) {
                            float xs = x[e] * hp_sigmoid(x[e]) * sc[e] + of[e];
                            ss += xs * xs;
                        }
                    }
                }
                ss = hp_group_sum<TPR>(ss);
                inv = 1.0f / (sqrtf(ss) + eps);
            }
            if (!on) continue;
            for (int u = lane; u < g.units; u += TPR) {
                int o0, o1;
                hp_unit<V, ROPE>(g, u, o0, o1);
                float s0[V], s1[V];
                vload<V>(zr + o0, s0);
                if (ROPE) {
                    vload<V>(zr + o1, s1);
                } else {
                    for (int e = 0; e < V; e++)
                        s1[e] = 0.0f;
                }
#pragma unroll
                for (int e = 0; e < V; e++) {
                    s0[e] *= hp_sigmoid(s0[e]);
                    if (ROPE) s1[e] *= hp_sigmoid(s1[e]);
                }
                if (qf) {
                    float n0[V], n1[V], sc0[V], of0[V], sc1[V], of1[V];
                    hp_params<V>(scale, offset, h * g.d + o0, sc0, of0);
                    if (ROPE) hp_params<V>(scale, offset, h * g.d + o1, sc1, of1);
#pragma unroll
                    for (int e = 0; e < V; e++) {
                        n0[e] = (s0[e] * sc0[e] + of0[e]) * inv;
                        n1[e] = ROPE ? (s1[e] * sc1[e] + of1[e]) * inv : 0.0f;
                    }
                    if (ROPE) hp_rotate<V>(n0, n1, cs, sn, o0);
                    vstore<V>(qf + out_row + o0, n0);
                    if (ROPE) vstore<V>(qf + out_row + o1, n1);
                }
                if (qa) {
                    if (ROPE) hp_rotate<V>(s0, s1, cs, sn, o0);
                    vstore<V>(qa + out_row + o0, s0);
                    if (ROPE) vstore<V>(qa + out_row + o1, s1);
                }
            }
        }
    }
}

template <class T, int V, int TPR, bool ROPE>
__global__ void __launch_bounds__(HP_THREADS)
    headprep_bwd_kernel(T *dz, T *dxs, const T *dqf, const T *dqa, const T *z, const float *scale,
                        const float *offset, hp_geom g, float eps) {
    extern __shared__ float hp_sh[];
    float *cs = hp_sh, *sn = hp_sh + g.d / 2;
    constexpr int P = ROPE ? 2 : 1;
    const int group = threadIdx.x / TPR, lane = threadIdx.x % TPR, per_pass = HP_THREADS / TPR;
    const int64_t nb = (g.B - blockIdx.y + gridDim.y - 1) / gridDim.y;
    const int64_t nrows = nb * g.H;
    for (int64_t l = blockIdx.x; l < g.L; l += gridDim.x) {
        if (ROPE) {
            __syncthreads();
            hp_angles(cs, sn, g, l, -1.0);
            __syncthreads();
        }
        for (int64_t r0 = 0; r0 < nrows; r0 += per_pass) {
            const int64_t r = r0 + group;
            const bool on = r < nrows;
            const int64_t b = blockIdx.y + (on ? r / g.H : 0) * gridDim.y;
            const int h = on ? (int)(r % g.H) : 0;
            const int64_t in_row = ((b * g.L + l) * g.H + h) * g.d;
            const int64_t out_row = ((b * g.H + h) * g.L + l) * g.d;
            const T *zr = z + in_row;
            /* dxs = dn / s − xs · k, s = ‖xs‖ + eps, k = (dn · xs) / (‖xs‖ s²). */
            float rs = 0.0f, k = 0.0f;
            if (dqf) {
                float ss = 0.0f, dot = 0.0f;
                for (int u = lane; u - lane < g.units; u += TPR) {
                    if (!on || u >= g.units) continue;
                    int o[2];
                    hp_unit<V, ROPE>(g, u, o[0], o[1]);
                    float x[2][V], dn[2][V], sc[2][V], of[2][V];
#pragma unroll
                    for (int p = 0; p < P; p++) {
                        vload<V>(zr + o[p], x[p]);
                        vload<V>(dqf + out_row + o[p], dn[p]);
                        hp_params<V>(scale, offset, h * g.d + o[p], sc[p], of[p]);
                    }
                    if (ROPE) hp_rotate<V>(dn[0], dn[1], cs, sn, o[0]);
#pragma unroll
                    for (int p = 0; p < P; p++)
#pragma unroll
                        for (int e = 0; e < V; e++) {
                            float xs = x[p][e] * hp_sigmoid(x[p][e]) * sc[p][e] + of[p][e];
                            ss += xs * xs;
                            dot += dn[p][e] * xs;
                        }
                }
                ss = hp_group_sum<TPR>(ss);
                dot = hp_group_sum<TPR>(dot);
                const float nrm = sqrtf(ss), sd = nrm + eps;
                rs = 1.0f / sd;
                k = nrm > 0.0f ? dot / (nrm * sd * sd) : 0.0f;
            }
            if (!on) continue;
            for (int u = lane; u < g.units; u += TPR) {
                int o[2];
                hp_unit<V, ROPE>(g, u, o[0], o[1]);
                float x[2][V], dg[2][V];
#pragma unroll
                for (int p = 0; p < P; p++) {
                    vload<V>(zr + o[p], x[p]);
#pragma unroll
                    for (int e = 0; e < V; e++)
                        dg[p][e] = 0.0f;
                }
                if (dqf) {
                    float dn[2][V], sc[2][V], of[2][V];
#pragma unroll
                    for (int p = 0; p < P; p++) {
                        vload<V>(dqf + out_row + o[p], dn[p]);
                        hp_params<V>(scale, offset, h * g.d + o[p], sc[p], of[p]);
                    }
                    if (ROPE) hp_rotate<V>(dn[0], dn[1], cs, sn, o[0]);
#pragma unroll
                    for (int p = 0; p < P; p++) {
#pragma unroll
                        for (int e = 0; e < V; e++) {
                            float xs = x[p][e] * hp_sigmoid(x[p][e]) * sc[p][e] + of[p][e];
                            dn[p][e] = dn[p][e] * rs - xs * k;
                            dg[p][e] = dn[p][e] * sc[p][e];
                        }
                        vstore<V>(dxs + in_row + o[p], dn[p]);
                    }
                }
                if (dqa) {
                    float da[2][V];
#pragma unroll
                    for (int p = 0; p < P; p++)
                        vload<V>(dqa + out_row + o[p], da[p]);
                    hp_add_grad<V, 2, ROPE>(dg, da, cs, sn, o[0]);
                }
#pragma unroll
                for (int p = 0; p < P; p++) {
#pragma unroll
                    for (int e = 0; e < V; e++) {
                        dg[p][e] *= hp_silu_grad(x[p][e]);
                    }
                    vstore<V>(dz + in_row + o[p], dg[p]);
                }
            }
        }
    }
}

/* Column-sum values: dxs (offset) and dxs · silu(z) (scale), rows of C. */
template <class T, int V> struct hp_dxs_at {
    const T *dxs;
    int64_t C;
    __device__ void operator()(int64_t r, int64_t c, float (&v)[V]) const {
        vload<V>(dxs + r * C + c, v);
    }
};
template <class T, int V> struct hp_dxs_s_at {
    const T *dxs, *z;
    int64_t C;
    __device__ void operator()(int64_t r, int64_t c, float (&v)[V]) const {
        float x[V];
        vload<V>(dxs + r * C + c, v);
        vload<V>(z + r * C + c, x);
#pragma unroll
        for (int e = 0; e < V; e++)
            v[e] *= x[e] * hp_sigmoid(x[e]);
    }
};

/* The launch shape: V, TPR and whether to rotate, then the grid. */
struct hp_launch {
    hp_geom g;
    dim3 grid;
    size_t smem;
    bool rope, vec;
    int tpr;
};

static lact_status hp_plan(hp_launch *lp, const lact_tensor *z, int64_t pos0, float theta, int W,
                           bool aligned) {
    int64_t B = z->shape[0], L = z->shape[1], H = z->shape[2], d = z->shape[3];
    if (d > 0x7fffffff / 2 || H * d > 0x7fffffff || H > 0x3fffffff)
        return lact_fail(LACT_E_UNSUPPORTED, "headprep: %lld heads of %lld", (long long)H,
                         (long long)d);
    lp->rope = theta > 0.0f;
    int64_t part = lp->rope ? d / 2 : d;
    lp->vec = part % W == 0 && aligned;
    int V = lp->vec ? W : 1;
    int units = (int)(part / V);
    int tpr = 1;
    while (tpr < 32 && tpr * 2 <= units)
        tpr *= 2;
    lp->tpr = tpr;
    lp->g = {B, L, (int)H, (int)d, units, pos0, lp->rope ? log((double)theta) : 0.0};
    lp->smem = lp->rope ? (size_t)d * sizeof(float) : 0;
    if (lp->smem > 48 * 1024)
        return lact_fail(LACT_E_UNSUPPORTED, "headprep: head dim %lld", (long long)d);
    int64_t gx = L < (1 << 20) ? L : (1 << 20);
    int64_t gy = (HP_BLOCKS + gx - 1) / gx;
    if (gy > B) gy = B;
    if (gy > 65535) gy = 65535;
    lp->grid = dim3((unsigned)gx, (unsigned)gy);
    return LACT_OK;
}

/* Instantiates a kernel template K<T, V, TPR, ROPE> for the plan and runs
 * it with the arguments that follow. */
#define HP_TPR_CASE(K, TT, VV, RR, n, ...)                                                         \
    case n:                                                                                        \
        K<TT, VV, n, RR><<<lp.grid, HP_THREADS, lp.smem, st>>>(__VA_ARGS__);                       \
        break;
#define HP_LAUNCH_TPR(K, TT, VV, RR, ...)                                                          \
    switch (lp.tpr) {                                                                              \
        HP_TPR_CASE(K, TT, VV, RR, 1, __VA_ARGS__)                                                 \
        HP_TPR_CASE(K, TT, VV, RR, 2, __VA_ARGS__)                                                 \
        HP_TPR_CASE(K, TT, VV, RR, 4, __VA_ARGS__)                                                 \
        HP_TPR_CASE(K, TT, VV, RR, 8, __VA_ARGS__)                                                 \
        HP_TPR_CASE(K, TT, VV, RR, 16, __VA_ARGS__)                                                \
    default:                                                                                       \
        K<TT, VV, 32, RR><<<lp.grid, HP_THREADS, lp.smem, st>>>(__VA_ARGS__);                      \
    }
#define HP_LAUNCH(K, TT, ...)                                                                      \
    do {                                                                                           \
        constexpr int W_ = vec_width<TT>::value;                                                   \
        if (lp.vec && lp.rope)                                                                     \
            HP_LAUNCH_TPR(K, TT, W_, true, __VA_ARGS__)                                            \
        else if (lp.vec)                                                                           \
            HP_LAUNCH_TPR(K, TT, W_, false, __VA_ARGS__)                                           \
        else if (lp.rope)                                                                          \
            HP_LAUNCH_TPR(K, TT, 1, true, __VA_ARGS__)                                             \
        else                                                                                       \
            HP_LAUNCH_TPR(K, TT, 1, false, __VA_ARGS__)                                            \
    } while (0)

extern "C" lact_status lact_cuda_headprep_forward(lact_ctx *ctx, lact_tensor *qf, lact_tensor *qa,
                                                  const lact_tensor *z, const lact_tensor *scale,
                                                  const lact_tensor *offset, int64_t pos0,
                                                  float theta, float eps) {
    cudaStream_t st = lact_cuda_stream(ctx);
    const float *sc = qf ? (const float *)scale->data : NULL;
    const float *of = qf ? (const float *)offset->data : NULL;
    bool done = false;
    LACT_TRY(lact_cuda_headprep_tiled_forward(ctx, qf, qa, z, sc, of, pos0, theta, eps, &done));
    if (done) return LACT_OK;
    LACT_DISPATCH_FLOAT(z->dtype, "headprep", {
        T *pf = qf ? (T *)qf->data : NULL, *pa = qa ? (T *)qa->data : NULL;
        const T *pz = (const T *)z->data;
        hp_launch lp;
        LACT_TRY(
            hp_plan(&lp, z, pos0, theta, vec_width<T>::value, lact_aligned16(pf, pa, pz, sc, of)));
        HP_LAUNCH(headprep_fwd_kernel, T, pf, pa, pz, sc, of, lp.g, eps);
    });
    LACT_CU_LAUNCH("headprep");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_headprep_backward(
    lact_ctx *ctx, lact_tensor *dz, lact_tensor *dscale, lact_tensor *doffset, lact_tensor *dxs,
    const lact_tensor *dqf, const lact_tensor *dqa, const lact_tensor *z, const lact_tensor *scale,
    const lact_tensor *offset, int64_t pos0, float theta, float eps, bool acc) {
    cudaStream_t st = lact_cuda_stream(ctx);
    const float *sc = dqf ? (const float *)scale->data : NULL;
    const float *of = dqf ? (const float *)offset->data : NULL;
    bool done = false;
    LACT_TRY(lact_cuda_headprep_tiled_backward(ctx, dz, dscale, doffset, dqf, dqa, z, sc, of, pos0,
                                               theta, eps, acc, &done));
    if (done) return LACT_OK;
    int64_t C = z->shape[2] * z->shape[3], R = lact_tensor_numel(z) / C;
    LACT_DISPATCH_FLOAT(z->dtype, "headprep backward", {
        T *pdz = (T *)dz->data, *px = dxs ? (T *)dxs->data : NULL;
        const T *pf = dqf ? (const T *)dqf->data : NULL, *pa = dqa ? (const T *)dqa->data : NULL;
        const T *pz = (const T *)z->data;
        hp_launch lp;
        LACT_TRY(hp_plan(&lp, z, pos0, theta, vec_width<T>::value,
                         lact_aligned16(pdz, px, pf, pa, pz) && lact_aligned16(sc, of)));
        HP_LAUNCH(headprep_bwd_kernel, T, pdz, px, pf, pa, pz, sc, of, lp.g, eps);
        LACT_CU_LAUNCH("headprep_backward");
        constexpr int W = vec_width<T>::value;
        bool v = C % W == 0 && lact_aligned16(px, pz);
        if (doffset) {
            float *o = (float *)doffset->data;
            if (v)
                LACT_TRY(lact_colsum<W>(ctx, hp_dxs_at<T, W>{px, C}, R, C, o, acc));
            else
                LACT_TRY(lact_colsum<1>(ctx, hp_dxs_at<T, 1>{px, C}, R, C, o, acc));
        }
        if (dscale) {
            float *o = (float *)dscale->data;
            if (v)
                LACT_TRY(lact_colsum<W>(ctx, hp_dxs_s_at<T, W>{px, pz, C}, R, C, o, acc));
            else
                LACT_TRY(lact_colsum<1>(ctx, hp_dxs_s_at<T, 1>{px, pz, C}, R, C, o, acc));
        }
    });
    return LACT_OK;
}
