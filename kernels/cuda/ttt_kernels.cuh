/* The element-wise and row kernels of the CUDA ttt op, templated on the
 * activation type T (float or bf16). Everything that is a matrix product
 * lives in ttt.cu / ttt_ns.cu as batched cuBLASLt calls.
 *
 * Layouts, per head n of N:
 *   master fast weights W, momentum M, G, dW, dM: fp32 [N][3·nel] holding
 *     W0 [dh, d] at 0, W2 [dh, d] at nel, W1 [d, dh] at 2·nel, so that
 *     W0 and W2 stacked are one [2dh, d] operand; Wc is the T copy.
 *   rows: R = 2dh + d per head (W0 rows, W2 rows, W1 rows), r0 [N][R].
 *   Newton–Schulz layout: 3N matrices of nel, W0/W2 of head n at 2n, 2n+1,
 *     W1 of head n at 2N + n, so the W0/W2 group and the W1 group are each
 *     one strided batch.
 *   tile activations: [N][Tt][2dh] (a | b columns, or X0 | X2, or dA | dB)
 *     and [N][Tt][dh], type T. */
#ifndef LACT_CUDA_TTT_KERNELS_CUH
#define LACT_CUDA_TTT_KERNELS_CUH

#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vec.cuh"
#include "kernels/ttt.h"

#define TTT_ROW_EPS 1e-5f
#define TTT_NS_EPS 1e-7f
#define TTT_NS_SLICES 16  /* blocks per matrix in the normalisation's sums */
#define TTT_MOM_BLOCKS 64 /* most blocks per head in ttt_mom_bwd_kernel */

typedef struct ttt_geom {
    int64_t n, len, d, dh, nel, rows; /* rows = 2dh + d */
    int64_t wn; /* heads of the initial weights: head n starts from n mod wn */
    /* the weight rows a row kernel takes: [wr_lo, wr_lo + wr_n) of every
     * head (ttt_wrow; all of them but where a pass is split by rows) */
    int64_t wr_lo, wr_n;
} ttt_geom;

__device__ __forceinline__ float ttt_sig(float x) {
    return 1.0f / (1.0f + __expf(-x));
}

/* Offset and length in the master layout of row r of one head. */
__device__ __forceinline__ int64_t ttt_row_off(const ttt_geom g, int64_t r) {
    return r < 2 * g.dh ? r * g.d : 2 * g.nel + (r - 2 * g.dh) * g.dh;
}
__device__ __forceinline__ int64_t ttt_row_len(const ttt_geom g, int64_t r) {
    return r < 2 * g.dh ? g.d : g.dh;
}
/* The backward's paired operands (ttt.cu, wide), 6nel per head: [W0; W2;
 * dG0; dG2] as one [4dh, d] matrix, then rows [W1ᵢ | dG1ᵢ] as one [d, 2dh]
 * matrix. Where the copy of master row r of head n starts, and its dG. */
__device__ __forceinline__ int64_t ttt_wide_off(const ttt_geom g, int64_t n, int64_t r) {
    const int64_t base = n * 6 * g.nel;
    return r < 2 * g.dh ? base + r * g.d : base + 4 * g.nel + (r - 2 * g.dh) * 2 * g.dh;
}
__device__ __forceinline__ int64_t ttt_wide_dg(const ttt_geom g, int64_t n, int64_t r) {
    return ttt_wide_off(g, n, r) + (r < 2 * g.dh ? 2 * g.nel : g.dh);
}
/* Newton–Schulz layout offset of master element e (in [0, 3nel)) of head n. */
__device__ __forceinline__ int64_t ttt_ns_off(const ttt_geom g, int64_t n, int64_t e) {
    int64_t j = e / g.nel, w = e - j * g.nel;
    int64_t idx = j < 2 ? 2 * n + j : 2 * g.n + n;
    return idx * g.nel + w;
}

/* ---- set-up, snapshots --------------------------------------------------- */

/* The weight-row kernels below take a warp per row of the master layout
 * (rows of every head, blockDim.x / 32 rows a block; ttt_wrow_grid), V
 * columns a lane at a time: 16-byte words of the fp32 buffers when d and
 * dh allow (TTT_LAUNCH_WROWS picks V = 4 or 8 then, else 1). A block per row with a
 * block-wide sum spent most of its time in the sum's barriers: the rows
 * are 128 to 512 long. */
__device__ __forceinline__ bool ttt_wrow(const ttt_geom &g, int64_t *n, int64_t *r) {
    const int64_t id = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (id >= g.n * g.wr_n) return false;
    *n = id / g.wr_n;
    *r = g.wr_lo + (id - *n * g.wr_n);
    return true;
}
static inline unsigned ttt_wrow_grid(const ttt_geom &g, int threads) {
    return (unsigned)((g.n * g.wr_n + threads / 32 - 1) / (threads / 32));
}
/* g with its row kernels restricted to rows [lo, lo + n) of every head */
static inline ttt_geom ttt_rows_of(ttt_geom g, int64_t lo, int64_t n) {
    g.wr_lo = lo, g.wr_n = n;
    return g;
}

/* Whether the weight-row kernels take 8 columns a lane where rows allow
 * (LACT_TTT_WROW_V8=1): the BF16 buffers beside the F32 ones then move in
 * 16-byte words too; with 4 columns a lane vload moves them element by
 * element. */
static inline bool ttt_wrow_v8(void) {
    const char *e = getenv("LACT_TTT_WROW_V8");
    return e && strcmp(e, "1") == 0;
}

/* Runs a weight-row kernel K<T, V> with the arguments that follow: V = 4
 * when every row is whole 16-byte words of the fp32 buffers (aligned:
 * whether the caller's pointers are), V = 8 with ttt_wrow_v8() where rows
 * are whole pairs of them, else 1. */
#define TTT_LAUNCH_WROWS(K, T, threads, aligned, ...)                                              \
    do {                                                                                           \
        const unsigned grid_ = ttt_wrow_grid(g, threads);                                          \
        if (g.d % 8 == 0 && g.dh % 8 == 0 && (aligned) && ttt_wrow_v8())                           \
            K<T, 8><<<grid_, threads, 0, st>>>(__VA_ARGS__);                                       \
        else if (g.d % 4 == 0 && g.dh % 4 == 0 && (aligned))                                       \
            K<T, 4><<<grid_, threads, 0, st>>>(__VA_ARGS__);                                       \
        else                                                                                       \
            K<T, 1><<<grid_, threads, 0, st>>>(__VA_ARGS__);                                       \
    } while (0)

/* W, Wc from the initial weights, M = 0, r0 = initial row norms. */
template <class T, int V>
__global__ void ttt_init_kernel(ttt_geom g, const float *w0, const float *w1, const float *w2,
                                float *W, T *Wc, float *M, float *r0) {
    int64_t n, r;
    if (!ttt_wrow(g, &n, &r)) return;
    const int lane = threadIdx.x & 31;
    const int64_t len = ttt_row_len(g, r);
    const int64_t wo = (n % g.wn) * g.nel;
    const float *src = r < g.dh       ? w0 + wo + r * g.d
                       : r < 2 * g.dh ? w2 + wo + (r - g.dh) * g.d
                                      : w1 + wo + (r - 2 * g.dh) * g.dh;
    const int64_t off = n * 3 * g.nel + ttt_row_off(g, r);
    float ss = 0.0f;
    for (int64_t c = lane * V; c < len; c += 32 * V) {
        float x[V], z[V];
        vload<V>(src + c, x);
#pragma unroll
        for (int e = 0; e < V; e++) {
            ss += x[e] * x[e];
            z[e] = 0.0f;
        }
        if (W) vstore<V>(W + off + c, x); /* the backward reads W from the state */
        vstore<V>(Wc + off + c, x);
        if (M) vstore<V>(M + off + c, z);
    }
    ss = warp_sum(ss);
    if (lane == 0) r0[n * g.rows + r] = sqrtf(ss);
}

/* out = in, converted (n a multiple of nothing in particular). */
template <class A, class B> __global__ void ttt_cast_kernel(int64_t n, const A *in, B *out) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        st(out, i, ld(in, i));
}

/* beta[j·N + n] = mean of momentum over update op j's range (0 otherwise).
 * Grid (n_ops, N). */
__global__ void ttt_beta_kernel(ttt_geom g, const float *mom, const lact_ttt_op *ops, float *beta) {
    __shared__ float sh[32];
    int64_t j = blockIdx.x, n = blockIdx.y;
    lact_ttt_op op = ops[j];
    float s = 0.0f;
    if (op.update)
        for (int64_t t = op.start + threadIdx.x; t < op.end; t += blockDim.x)
            s += mom[n * g.len + t];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) beta[j * g.n + n] = op.update ? s / (float)(op.end - op.start) : 0.0f;
}

/* ---- per-token element-wise parts ------------------------------------------ */

/* V consecutive elements at p in one access (V · sizeof(T) ≤ 16 bytes; the
 * launcher picks V so that every access is aligned: dh a multiple of V). */
template <int V> __device__ __forceinline__ void ldv(float *x, const float *p) {
    if constexpr (V == 4) {
        const float4 v = *(const float4 *)p;
        x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
    } else if constexpr (V == 2) {
        const float2 v = *(const float2 *)p;
        x[0] = v.x, x[1] = v.y;
    } else {
        x[0] = p[0];
    }
}
template <int V> __device__ __forceinline__ void ldv(float *x, const bf16 *p) {
    if constexpr (V >= 2) {
        constexpr int W = V / 2; /* 32-bit words */
        uint32_t u[W];
        if constexpr (W == 4) {
            const uint4 q = *(const uint4 *)p;
            u[0] = q.x, u[1] = q.y, u[2] = q.z, u[3] = q.w;
        } else if constexpr (W == 2) {
            const uint2 q = *(const uint2 *)p;
            u[0] = q.x, u[1] = q.y;
        } else {
            u[0] = *(const uint32_t *)p;
        }
#pragma unroll
        for (int w = 0; w < W; w++) {
            const float2 f = __bfloat1622float2(*(const __nv_bfloat162 *)&u[w]);
            x[2 * w] = f.x, x[2 * w + 1] = f.y;
        }
    } else {
        x[0] = __bfloat162float(p[0]);
    }
}
template <int V> __device__ __forceinline__ void stv(float *p, const float *x) {
    if constexpr (V == 4)
        *(float4 *)p = make_float4(x[0], x[1], x[2], x[3]);
    else if constexpr (V == 2)
        *(float2 *)p = make_float2(x[0], x[1]);
    else
        p[0] = x[0];
}
template <int V> __device__ __forceinline__ void stv(bf16 *p, const float *x) {
    if constexpr (V >= 2) {
        constexpr int W = V / 2;
        uint32_t u[W];
#pragma unroll
        for (int w = 0; w < W; w++) {
            const __nv_bfloat162 h = __floats2bfloat162_rn(x[2 * w], x[2 * w + 1]);
            u[w] = *(const uint32_t *)&h;
        }
        if constexpr (W == 4)
            *(uint4 *)p = make_uint4(u[0], u[1], u[2], u[3]);
        else if constexpr (W == 2)
            *(uint2 *)p = make_uint2(u[0], u[1]);
        else
            *(uint32_t *)p = u[0];
    } else {
        p[0] = __float2bfloat16_rn(x[0]);
    }
}

/* Lanes per token row in the kernels below: the power of two covering
 * dh / V accesses, at most a warp (a wider row loops), so that a row's sums
 * are warp shuffles within an aligned group of lanes. The launcher sizes
 * the grid with the same function. */
__host__ __device__ __forceinline__ int ttt_row_lanes(int64_t accesses) {
    int t = 1;
    while (t < 32 && t < accesses)
        t *= 2;
    return t;
}

/* Every kernel below takes blockDim.x / lanes token rows per block
 * (grid-stride over the N·Tt rows), lanes threads over the dh columns of
 * each, V columns per access. Each row of a group of lanes runs the same
 * number of column steps. A thread reads all its inputs at (row, j) before
 * it writes there, so an output may be the input of the same shape (ttt.cu
 * runs them in place): no __restrict__ on these pointers. */
#define TTT_ROWS_LOOP(rows)                                                                        \
    const int lanes_ = ttt_row_lanes(dh / V), per_block_ = blockDim.x / lanes_;                    \
    for (int64_t row = (int64_t)blockIdx.x * per_block_ + threadIdx.x / lanes_; row < (rows);      \
         row += (int64_t)gridDim.x * per_block_)                                                   \
        for (int64_t j = (int64_t)(threadIdx.x % lanes_) * V; j < dh; j += (int64_t)lanes_ * V)

/* From a, b (Zab) and e (Ze): X0 = l0 e b silu'(a), X2 = l2 e silu(a),
 * H1 = l1 silu(a) b. Tokens t0 + [0, Tt) of each head. */
template <class T, int V>
__global__ void ttt_grad_ew_kernel(ttt_geom g, int64_t Tt, int64_t t0, const T *Zab, const T *Ze,
                                   const float *l0, const float *l1, const float *l2, T *X02,
                                   T *H1) {
    int64_t dh = g.dh;
    TTT_ROWS_LOOP(g.n * Tt) {
        int64_t n = row / Tt, li = n * g.len + t0 + (row - n * Tt);
        float L0 = l0[li], L1 = l1[li], L2 = l2[li];
        float a[V], b[V], e[V], x0[V], x2[V], h[V];
        ldv<V>(a, Zab + row * 2 * dh + j);
        ldv<V>(b, Zab + row * 2 * dh + dh + j);
        ldv<V>(e, Ze + row * dh + j);
#pragma unroll
        for (int u = 0; u < V; u++) {
            float sg = ttt_sig(a[u]), s = a[u] * sg, sp = sg * (1.0f + a[u] * (1.0f - sg));
            x0[u] = L0 * e[u] * b[u] * sp;
            x2[u] = L2 * e[u] * s;
            h[u] = L1 * s * b[u];
        }
        stv<V>(X02 + row * 2 * dh + j, x0);
        stv<V>(X02 + row * 2 * dh + dh + j, x2);
        stv<V>(H1 + row * dh + j, h);
    }
}

/* H = silu(a) ⊙ b. */
template <class T, int V>
__global__ void ttt_apply_ew_kernel(ttt_geom g, int64_t Tt, const T *Zab, T *H) {
    int64_t dh = g.dh;
    TTT_ROWS_LOOP(g.n * Tt) {
        float a[V], b[V], h[V];
        ldv<V>(a, Zab + row * 2 * dh + j);
        ldv<V>(b, Zab + row * 2 * dh + dh + j);
#pragma unroll
        for (int u = 0; u < V; u++)
            h[u] = a[u] * ttt_sig(a[u]) * b[u];
        stv<V>(H + row * dh + j, h);
    }
}

/* Backward of the apply non-linearity: H = silu(a) b, dA = dH b silu'(a),
 * dB = dH silu(a). */
template <class T, int V>
__global__ void ttt_apply_bwd_ew_kernel(ttt_geom g, int64_t Tt, const T *Zab, const T *dH, T *H,
                                        T *dAB) {
    int64_t dh = g.dh;
    TTT_ROWS_LOOP(g.n * Tt) {
        float a[V], b[V], dd[V], h[V], da[V], db[V];
        ldv<V>(a, Zab + row * 2 * dh + j);
        ldv<V>(b, Zab + row * 2 * dh + dh + j);
        ldv<V>(dd, dH + row * dh + j);
#pragma unroll
        for (int u = 0; u < V; u++) {
            float sg = ttt_sig(a[u]), s = a[u] * sg, sp = sg * (1.0f + a[u] * (1.0f - sg));
            h[u] = s * b[u];
            da[u] = dd[u] * b[u] * sp;
            db[u] = dd[u] * s;
        }
        stv<V>(H + row * dh + j, h);
        stv<V>(dAB + row * 2 * dh + j, da);
        stv<V>(dAB + row * 2 * dh + dh + j, db);
    }
}

/* Backward of ttt_grad_ew_kernel and of the products that feed it: from
 * P1 = V dG1 and KG = K [dG0; dG2]ᵀ, writes H1, X02 (recomputed), dAB
 * (adjoints of a, b), dE and adds the per-token lr gradients. Token rows
 * are p2 apart in Zab, KG, X02, dAB and p1 apart in Ze, P1, H1, dE (2dh
 * and dh when packed; wider where the pairs share rows, ttt.cu). Each
 * element is read and written by one thread, so outputs may overwrite
 * inputs. Rows as in TTT_ROWS_LOOP, but every lane of the block takes the
 * same number of steps over the rows so that the sums' shuffles see the
 * whole warp (blockDim a multiple of 32). */
template <class T, int V>
__global__ void ttt_grad_bwd_ew_kernel(ttt_geom g, int64_t Tt, int64_t t0, int64_t p2, int64_t p1,
                                       const T *Zab, const T *Ze, const T *P1, const T *KG,
                                       const float *l0, const float *l1, const float *l2, T *H1,
                                       T *X02, T *dAB, T *dE, float *dl0, float *dl1, float *dl2) {
    const int64_t dh = g.dh, rows = g.n * Tt;
    const int lanes = ttt_row_lanes(dh / V), per_block = blockDim.x / lanes;
    const int lane = threadIdx.x % lanes;
    for (int64_t base = (int64_t)blockIdx.x * per_block; base < rows;
         base += (int64_t)gridDim.x * per_block) {
        const int64_t row = base + threadIdx.x / lanes;
        const bool valid = row < rows;
        const int64_t n = row / Tt, li = n * g.len + t0 + (row - n * Tt);
        float L0 = valid ? l0[li] : 0.0f, L1 = valid ? l1[li] : 0.0f, L2 = valid ? l2[li] : 0.0f;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f;
        const int64_t r2 = row * p2, r1 = row * p1;
        for (int64_t j = (int64_t)lane * V; valid && j < dh; j += (int64_t)lanes * V) {
            float a[V], b[V], e[V], p1[V], kg0[V], kg2[V];
            float h1[V], x0[V], x2[V], da[V], db[V], de[V];
            ldv<V>(a, Zab + r2 + j);
            ldv<V>(b, Zab + r2 + dh + j);
            ldv<V>(e, Ze + r1 + j);
            ldv<V>(p1, P1 + r1 + j);
            ldv<V>(kg0, KG + r2 + j);
            ldv<V>(kg2, KG + r2 + dh + j);
#pragma unroll
            for (int u = 0; u < V; u++) {
                float sg = ttt_sig(a[u]), s = a[u] * sg, sp = sg * (1.0f + a[u] * (1.0f - sg));
                float spp = sg * (1.0f - sg) * (2.0f + a[u] * (1.0f - 2.0f * sg));
                s1 += p1[u] * s * b[u];
                s2 += kg2[u] * e[u] * s;
                s0 += kg0[u] * e[u] * b[u] * sp;
                float dh1 = L1 * p1[u], gg2 = L2 * kg2[u], gg0 = L0 * kg0[u];
                float ds = gg2 * e[u] + dh1 * b[u];
                float dsp = gg0 * e[u] * b[u];
                de[u] = gg2 * s + gg0 * b[u] * sp;
                db[u] = gg0 * e[u] * sp + dh1 * s;
                da[u] = ds * sp + dsp * spp;
                h1[u] = L1 * s * b[u];
                x0[u] = L0 * e[u] * b[u] * sp;
                x2[u] = L2 * e[u] * s;
            }
            stv<V>(H1 + r1 + j, h1);
            stv<V>(X02 + r2 + j, x0);
            stv<V>(X02 + r2 + dh + j, x2);
            stv<V>(dAB + r2 + j, da);
            stv<V>(dAB + r2 + dh + j, db);
            stv<V>(dE + r1 + j, de);
        }
        for (int o = lanes / 2; o > 0; o /= 2) {
            s0 += __shfl_xor_sync(0xffffffffu, s0, o);
            s1 += __shfl_xor_sync(0xffffffffu, s1, o);
            s2 += __shfl_xor_sync(0xffffffffu, s2, o);
        }
        if (valid && lane == 0) {
            if (dl0) dl0[li] += s0;
            if (dl1) dl1[li] += s1;
            if (dl2) dl2[li] += s2;
        }
    }
}

/* ---- the update of the fast weights ----------------------------------------- */

/* out = beta[n] M + G over the master layout (out may be M), and its copy
 * in T when ms is given (a BF16 state's snapshot). */
template <class T>
__global__ void ttt_mom_mix_kernel(ttt_geom g, const float *beta, const float *M, const float *G,
                                   float *out, T *ms) {
    int64_t total = g.n * 3 * g.nel;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float x = beta[i / (3 * g.nel)] * M[i] + G[i];
        out[i] = x;
        if (ms) st(ms, i, x);
    }
}

/* One row of the update, by its warp: u = (NS output | beta Mi + G, stored
 * in Mo and Ms | G); p = Wi + u; Wo = p · r0 / (‖p‖ + eps); Wc = Wo in T.
 * A NULL Mi is zero momentum (the first update); Mo (F32) and Ms (T, a BF16
 * state's copy) are each stored when given. Wo, Mo may be Wi, Mi (each
 * element is read before it is written, by the same thread): the forward
 * writes the new weights straight into an F32 state's snapshot, which the
 * next update reads. G and Mi are F32 (SG, SM = float) or, with a BF16
 * state, T. */
template <class T, int V, class SG, class SM>
__device__ __forceinline__ void ttt_renorm_row(const ttt_geom &g, int64_t n, int64_t r, const T *ns,
                                               const float *beta, const SM *Mi, float *Mo,
                                               const SG *G, const float *Wi, float *Wo, T *Wc,
                                               const float *r0, T *Ms) {
    const int lane = threadIdx.x & 31;
    const int64_t len = ttt_row_len(g, r);
    const int64_t rel = ttt_row_off(g, r), off = n * 3 * g.nel + rel;
    const float bn = beta ? beta[n] : 0.0f;
    float ss = 0.0f;
    for (int64_t c = lane * V; c < len; c += 32 * V) {
        float u[V], p[V];
        if (ns) {
            vload<V>(ns + ttt_ns_off(g, n, rel + c), u);
        } else {
            vload<V>(G + off + c, u);
            if (Mi) {
                float m[V];
                vload<V>(Mi + off + c, m);
#pragma unroll
                for (int e = 0; e < V; e++)
                    u[e] += bn * m[e];
            }
            if (Mo) vstore<V>(Mo + off + c, u);
            if (Ms) vstore<V>(Ms + off + c, u);
        }
        vload<V>(Wi + off + c, p);
#pragma unroll
        for (int e = 0; e < V; e++) {
            p[e] += u[e];
            ss += p[e] * p[e];
        }
        vstore<V>(Wo + off + c, p);
    }
    ss = warp_sum(ss);
    const float sc = r0[n * g.rows + r] / (sqrtf(ss) + TTT_ROW_EPS);
    for (int64_t c = lane * V; c < len; c += 32 * V) {
        float w[V];
        vload<V>(Wo + off + c, w);
#pragma unroll
        for (int e = 0; e < V; e++)
            w[e] *= sc;
        vstore<V>(Wo + off + c, w);
        vstore<V>(Wc + off + c, w);
    }
}

/* The update with G and the momentum in F32 (ttt_renorm_row). A warp per
 * row. */
template <class T, int V>
__global__ void ttt_renorm_kernel(ttt_geom g, const T *ns, const float *beta, const float *Mi,
                                  float *Mo, const float *G, const float *Wi, float *Wo, T *Wc,
                                  const float *r0, T *Ms) {
    int64_t n, r;
    if (!ttt_wrow(g, &n, &r)) return;
    ttt_renorm_row<T, V, float, float>(g, n, r, ns, beta, Mi, Mo, G, Wi, Wo, Wc, r0, Ms);
}

/* The update with G and the momentum in T (a BF16 state without Muon): the
 * momentum goes from update to update as the snapshots' copy (Mi, Ms, which
 * may be the same buffer), with no F32 one beside it. */
template <class T, int V>
__global__ void ttt_renorm16_kernel(ttt_geom g, const float *beta, const T *Mi, const T *G,
                                    const float *Wi, float *Wo, T *Wc, const float *r0, T *Ms) {
    int64_t n, r;
    if (!ttt_wrow(g, &n, &r)) return;
    ttt_renorm_row<T, V, T, T>(g, n, r, (const T *)NULL, beta, Mi, (float *)NULL, G, Wi, Wo, Wc, r0,
                               Ms);
}

/* u (from ns or U), W and dW at column c of a row (master offset o). U and
 * W are F32, or BF16 where they come from a BF16 state. */
template <class T, int V, class SU, class SW>
__device__ __forceinline__ void ttt_renorm_bwd_load(const ttt_geom &g, const T *ns, const SU *U,
                                                    const SW *W, const float *dW, int64_t n,
                                                    int64_t rel, int64_t o, int64_t c,
                                                    float (&u)[V], float (&p)[V], float (&dw)[V]) {
    if (ns)
        vload<V>(ns + ttt_ns_off(g, n, rel + c), u);
    else
        vload<V>(U + o, u);
    vload<V>(W + o, p);
    vload<V>(dW + o, dw);
}

/* The first pass of one row's renorm backward, by its warp: dot = Σ dW · p
 * over the row (p = W + u), ne = ‖p‖ + eps and the coefficient k of p in
 * dp = dW · rr / ne − k p. */
template <class T, int V, class SU, class SW>
__device__ __forceinline__ void ttt_renorm_bwd_row(const ttt_geom &g, const T *ns, const SU *U,
                                                   const SW *W, const float *dW, int64_t n,
                                                   int64_t rel, int64_t off, int64_t len, float rr,
                                                   float *dot, float *ne, float *k) {
    float ss = 0.0f, dt = 0.0f;
    for (int64_t c = (threadIdx.x & 31) * V; c < len; c += 32 * V) {
        float u[V], p[V], dw[V];
        ttt_renorm_bwd_load<T, V, SU, SW>(g, ns, U, W, dW, n, rel, off + c, c, u, p, dw);
#pragma unroll
        for (int e = 0; e < V; e++) {
            p[e] += u[e];
            ss += p[e] * p[e];
            dt += dw[e] * p[e];
        }
    }
    ss = warp_sum(ss);
    *dot = warp_sum(dt);
    const float nr = sqrtf(ss);
    *ne = nr + TTT_ROW_EPS;
    *k = nr > 0.0f ? rr * *dot / (*ne * *ne * nr) : 0.0f;
}

/* Backward of the renorm of one row, W (before the step) and u given as in
 * ttt_renorm_kernel (u from ns, else from U, master layout): dW := dp,
 * dr0 += ∂/∂r0, dns (if given) = dp in the NS layout, and with Bw given
 * W's copy in the paired operands (ttt_wide_off). A warp per row. */
template <class T, int V, class SU, class SW>
__global__ void ttt_renorm_bwd_kernel(ttt_geom g, const T *ns, const SU *U, const SW *W,
                                      const float *r0, float *dW, float *dr0, T *dns, T *Bw) {
    int64_t n, r;
    if (!ttt_wrow(g, &n, &r)) return;
    const int lane = threadIdx.x & 31;
    const int64_t len = ttt_row_len(g, r);
    const int64_t rel = ttt_row_off(g, r), off = n * 3 * g.nel + rel;
    const float rr = r0[n * g.rows + r];
    float dot, ne, k;
    ttt_renorm_bwd_row<T, V, SU, SW>(g, ns, U, W, dW, n, rel, off, len, rr, &dot, &ne, &k);
    for (int64_t c = lane * V; c < len; c += 32 * V) {
        float u[V], p[V], dw[V];
        ttt_renorm_bwd_load<T, V, SU, SW>(g, ns, U, W, dW, n, rel, off + c, c, u, p, dw);
#pragma unroll
        for (int e = 0; e < V; e++)
            dw[e] = dw[e] * (rr / ne) - k * (p[e] + u[e]);
        vstore<V>(dW + off + c, dw);
        if (dns) vstore<V>(dns + ttt_ns_off(g, n, rel + c), dw);
        if (Bw) vstore<V>(Bw + ttt_wide_off(g, n, r) + c, p);
    }
    if (lane == 0) dr0[n * g.rows + r] += dot / ne;
}

/* dw[0, V) += a + b over V consecutive elements (a or b may be NULL). */
template <class T, int V>
__device__ __forceinline__ void ttt_fold_shares(float *dw, const T *a, const T *b) {
    float acc[V], x[V];
    vload<V>(dw, acc);
    if (a) {
        vload<V>(a, x);
#pragma unroll
        for (int e = 0; e < V; e++)
            acc[e] += x[e];
    }
    if (b) {
        vload<V>(b, x);
#pragma unroll
        for (int e = 0; e < V; e++)
            acc[e] += x[e];
    }
    vstore<V>(dw, acc);
}

/* dW += a + b over n elements, V at a time (n a multiple of V): the weight
 * gradients stored in T where no step's backward follows to add them. */
template <class T, int V>
__global__ void ttt_fold_kernel(float *dW, const T *a, const T *b, int64_t n) {
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * V; i < n;
         i += (int64_t)gridDim.x * blockDim.x * V)
        ttt_fold_shares<T, V>(dW + i, a ? a + i : NULL, b ? b + i : NULL);
}

/* Momentum backward: dmu = dun + dM; dG = dmu (T copy for the products);
 * dM = beta dmu; dbeta[n] += Σ dmu ⊙ M. Without momentum (dM NULL) dG =
 * dun; M is NULL where the momentum before the update is zero.
 * Grid (blocks per head, N). */
template <class T, class SW>
__global__ void ttt_mom_bwd_kernel(ttt_geom g, const float *dun, const float *beta, const SW *M,
                                   float *dM, T *dGc, float *dbeta_part) {
    __shared__ float sh[32];
    int64_t n = blockIdx.y, per = 3 * g.nel;
    float bn = beta ? beta[n] : 0.0f, dot = 0.0f;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < per;
         e += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = n * per + e;
        float dmu = dun[i];
        if (dM) {
            dmu += dM[i];
            dM[i] = bn * dmu;
        }
        if (M) dot += dmu * ld(M, i);
        st(dGc, i, dmu);
    }
    if (!M) return;
    dot = block_sum(dot, sh);
    /* one partial per block, summed in order by ttt_sum_parts_kernel: the
     * gradient must not depend on the blocks' timing */
    if (threadIdx.x == 0) dbeta_part[n * gridDim.x + blockIdx.x] = dot;
}

/* The step's backward without Newton–Schulz in one pass per row: the
 * renorm's backward (as ttt_renorm_kernel's, u from U), then the momentum's
 * (as ttt_mom_bwd_kernel's, dun the new dW), and Wc = W (the copy the
 * products read next, which would otherwise take a pass over W of its
 * own). dG goes to dGc, or with Bw given to the paired operands beside a
 * copy of W (ttt_wide_off). Row r of head n leaves its share of dbeta[n] in
 * part[n · rows + r] (when M is given), summed by ttt_sum_rows_kernel. dM is
 * F32, or T beside a momentum in T (SD). The weight gradients of the
 * products since the last step, where they were stored in T (sa, su: the
 * apply's and the update's, either NULL), are added into dW first: each
 * lane adds its own columns, which it alone reads again, and the row
 * stays in cache for the passes below. A warp per row. */
template <class T, int V, class SU, class SW, class SD>
__global__ void ttt_step_bwd_kernel(ttt_geom g, const SU *U, const SW *W, const float *r0,
                                    float *dW, float *dr0, const float *beta, const SW *M, SD *dM,
                                    T *dGc, T *Wc, T *Bw, float *part, const T *sa, const T *su) {
    int64_t n, r;
    if (!ttt_wrow(g, &n, &r)) return;
    const int lane = threadIdx.x & 31;
    const int64_t len = ttt_row_len(g, r);
    const int64_t rel = ttt_row_off(g, r), off = n * 3 * g.nel + rel;
    const float rr = r0[n * g.rows + r];
    if (sa || su)
        for (int64_t c = lane * V; c < len; c += 32 * V)
            ttt_fold_shares<T, V>(dW + off + c, sa ? sa + off + c : NULL, su ? su + off + c : NULL);
    float dot, ne, k;
    ttt_renorm_bwd_row<T, V, SU, SW>(g, (const T *)NULL, U, W, dW, n, rel, off, len, rr, &dot, &ne,
                                     &k);
    const float bn = beta ? beta[n] : 0.0f;
    float dbeta = 0.0f;
    for (int64_t c = lane * V; c < len; c += 32 * V) {
        float u[V], w[V], dw[V], dmu[V];
        vload<V>(U + off + c, u);
        vload<V>(W + off + c, w);
        vload<V>(dW + off + c, dw);
#pragma unroll
        for (int e = 0; e < V; e++)
            dmu[e] = dw[e] = dw[e] * (rr / ne) - k * (w[e] + u[e]);
        vstore<V>(dW + off + c, dw);
        if (dM) {
            float dm[V];
            vload<V>(dM + off + c, dm);
#pragma unroll
            for (int e = 0; e < V; e++) {
                dmu[e] += dm[e];
                dm[e] = bn * dmu[e];
            }
            vstore<V>(dM + off + c, dm);
        }
        if (M) {
            float m[V];
            vload<V>(M + off + c, m);
#pragma unroll
            for (int e = 0; e < V; e++)
                dbeta += dmu[e] * m[e];
        }
        if (dGc) vstore<V>(dGc + off + c, dmu);
        if (Wc) vstore<V>(Wc + off + c, w);
        if (Bw) {
            vstore<V>(Bw + ttt_wide_off(g, n, r) + c, w);
            vstore<V>(Bw + ttt_wide_dg(g, n, r) + c, dmu);
        }
    }
    if (lane == 0) dr0[n * g.rows + r] += dot / ne;
    if (!M) return;
    dbeta = warp_sum(dbeta);
    if (lane == 0) part[n * g.rows + r] = dbeta;
}

/* out[n] += Σ_r part[n · rows + r] in a fixed order (each thread's rows in
 * turn, then the block's tree). A block per head. */
__global__ void ttt_sum_rows_kernel(const float *part, int64_t rows, float *out) {
    __shared__ float sh[32];
    const int64_t n = blockIdx.x;
    float s = 0.0f;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x)
        s += part[n * rows + r];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) out[n] += s;
}

/* out[i] += Σ_b part[i · nb + b], b in order (the deterministic end of a
 * per-block reduction). */
__global__ void ttt_sum_parts_kernel(const float *part, int64_t nb, int64_t n, float *out) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int64_t b = 0; b < nb; b++)
            s += part[i * nb + b];
        out[i] += s;
    }
}

/* d_momentum[n][t] = Σ over update ops j covering t of dbeta[j][n] / len_j. */
__global__ void ttt_dmom_kernel(ttt_geom g, const lact_ttt_op *ops, int64_t n_ops,
                                const float *dbeta, float *dmom) {
    int64_t total = g.n * g.len;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t n = i / g.len, t = i - n * g.len;
        float s = 0.0f;
        for (int64_t j = 0; j < n_ops; j++) {
            lact_ttt_op op = ops[j];
            if (op.update && t >= op.start && t < op.end)
                s += dbeta[j * g.n + n] / (float)(op.end - op.start);
        }
        dmom[i] = s;
    }
}

/* d_w{0,1,2} = Σ over the heads sharing them of dW + (dr0 / r0) · w_init,
 * row by row. Grid (R, wn). */
template <class T>
__global__ void ttt_dw_out_kernel(ttt_geom g, const float *dW, const T *sa, const T *su,
                                  const float *dr0, const float *r0, const float *w0,
                                  const float *w1, const float *w2, float *d0, float *d1,
                                  float *d2) {
    int64_t r = blockIdx.x, h = blockIdx.y, len = ttt_row_len(g, r);
    const float *src;
    float *dst;
    if (r < g.dh) {
        src = w0 + h * g.nel + r * g.d;
        dst = d0 ? d0 + h * g.nel + r * g.d : NULL;
    } else if (r < 2 * g.dh) {
        src = w2 + h * g.nel + (r - g.dh) * g.d;
        dst = d2 ? d2 + h * g.nel + (r - g.dh) * g.d : NULL;
    } else {
        src = w1 + h * g.nel + (r - 2 * g.dh) * g.dh;
        dst = d1 ? d1 + h * g.nel + (r - 2 * g.dh) * g.dh : NULL;
    }
    if (!dst) return;
    /* The heads n = h, h + wn, ... share these weights: their gradients in
     * a fixed order. */
    for (int64_t c = threadIdx.x; c < len; c += blockDim.x) {
        float acc = 0.0f;
        for (int64_t n = h; n < g.n; n += g.wn) {
            float nr = r0[n * g.rows + r], f = nr > 0.0f ? dr0[n * g.rows + r] / nr : 0.0f;
            const int64_t i = n * 3 * g.nel + ttt_row_off(g, r) + c;
            float x = dW[i];
            if (sa) x += to_f32(sa[i]);
            if (su) x += to_f32(su[i]);
            acc += x + f * src[c];
        }
        dst[c] = acc;
    }
}

#endif
