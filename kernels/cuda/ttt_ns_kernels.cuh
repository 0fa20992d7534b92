/* The element-wise kernels of the batched Newton–Schulz (ttt_ns.cuh), in
 * its layout (ttt_kernels.cuh): the input's normalisation and its
 * backward, the symmetric adjoints of the backward, and the last of them
 * fused with the momentum's backward. */
#ifndef LACT_CUDA_TTT_NS_KERNELS_CUH
#define LACT_CUDA_TTT_NS_KERNELS_CUH

#include "kernels/cuda/ttt_kernels.cuh"

/* The NS matrix idx of the master layout: head n, slot j. */
__device__ __forceinline__ const float *ttt_ns_src(const ttt_geom g, const float *u, int64_t idx) {
    int64_t n = idx < 2 * g.n ? idx / 2 : idx - 2 * g.n, j = idx < 2 * g.n ? idx % 2 : 2;
    return u + n * 3 * g.nel + j * g.nel;
}

/* Per-block partial sums of the Newton–Schulz normalisation: grid (slices,
 * 3N), partial [idx · slices + slice], summed in a fixed order by the
 * kernel that reads them (no atomics: the forward must give the same bits
 * every time, which activation recompute relies on). */
__device__ __forceinline__ float ttt_ns_total(const float *part, int64_t idx) {
    float s = 0.0f;
    for (unsigned b = 0; b < gridDim.x; b++)
        s += part[idx * gridDim.x + b];
    return s;
}

/* The normalisation's kernels take TTT_NS_V consecutive elements a thread
 * a step, so their sums run in one order whatever the alignment: A (all
 * matrices 16-byte aligned, nel a multiple of TTT_NS_V) only chooses
 * 16-byte words over single elements. The recompute of an update in the
 * backward then gives the forward's bits even where its input lies
 * elsewhere. */
#define TTT_NS_V 8

template <bool A, class T>
__device__ __forceinline__ void ttt_ns_ld(const T *p, int64_t e, int64_t nel,
                                          float (&f)[TTT_NS_V]) {
    if constexpr (A) {
        vload<TTT_NS_V>(p + e, f);
    } else {
#pragma unroll
        for (int k = 0; k < TTT_NS_V; k++)
            f[k] = e + k < nel ? to_f32(p[e + k]) : 0.0f;
    }
}

template <bool A, class T>
__device__ __forceinline__ void ttt_ns_st(T *p, int64_t e, int64_t nel,
                                          const float (&f)[TTT_NS_V]) {
    if constexpr (A) {
        vstore<TTT_NS_V>(p + e, f);
    } else {
#pragma unroll
        for (int k = 0; k < TTT_NS_V; k++)
            if (e + k < nel) p[e + k] = from_f32<T>(f[k]);
    }
}

/* ttt_ns_st into the dG side of the paired operands (ttt_wide_dg): element
 * e of the head's matrix slot (0..2: W0, W2, W1). With A the row length is
 * a multiple of TTT_NS_V too, so the elements share a row. */
template <bool A, class T>
__device__ __forceinline__ void ttt_ns_st_wide(const ttt_geom &g, T *Bw, int64_t n, int64_t slot,
                                               int64_t e, const float (&f)[TTT_NS_V]) {
    const int64_t len = slot < 2 ? g.d : g.dh, r0 = slot < 2 ? slot * g.dh : 2 * g.dh;
    if constexpr (A) {
        vstore<TTT_NS_V>(Bw + ttt_wide_dg(g, n, r0 + e / len) + e % len, f);
    } else {
#pragma unroll
        for (int k = 0; k < TTT_NS_V; k++)
            if (e + k < g.nel)
                Bw[ttt_wide_dg(g, n, r0 + (e + k) / len) + (e + k) % len] = from_f32<T>(f[k]);
    }
}

/* The loop of the normalisation's kernels over matrix blockIdx.y: e the
 * first of the thread's TTT_NS_V elements. */
#define TTT_NS_FOR(e)                                                                              \
    for (int64_t e = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * TTT_NS_V; e < g.nel;       \
         e += (int64_t)gridDim.x * blockDim.x * TTT_NS_V)

/* The thread's share of <a, b> over one matrix. */
template <bool A, class TA, class TB>
__device__ __forceinline__ float ttt_ns_dot(const ttt_geom &g, const TA *a, const TB *b) {
    float dot = 0.0f;
    TTT_NS_FOR(e) {
        float x[TTT_NS_V], y[TTT_NS_V];
        ttt_ns_ld<A>(a, e, g.nel, x);
        ttt_ns_ld<A>(b, e, g.nel, y);
#pragma unroll
        for (int k = 0; k < TTT_NS_V; k++)
            dot += x[k] * y[k];
    }
    return dot;
}

/* The block's sum of v into its partial (ttt_ns_total). */
__device__ __forceinline__ void ttt_ns_put(float *acc, float v) {
    __shared__ float sh[32];
    v = block_sum(v, sh);
    if (threadIdx.x == 0) acc[blockIdx.y * gridDim.x + blockIdx.x] = v;
}

/* Newton–Schulz input: X0 = u / (‖u‖_F + eps) per matrix, u in the master
 * layout. Two launches over grid (slices, 3N): partial sums of squares
 * into acc, then the scaling, which also stores ‖u‖_F. */
template <bool A> __global__ void ttt_ns_sumsq_kernel(ttt_geom g, const float *u, float *acc) {
    const float *src = ttt_ns_src(g, u, blockIdx.y);
    ttt_ns_put(acc, ttt_ns_dot<A>(g, src, src));
}

/* The momentum's mix (ttt_mom_mix_kernel: u = beta[n] M + G, its copy in T
 * to ms when given) with ttt_ns_sumsq_kernel's sums of u, in the same
 * order, in one pass. Grid (slices, 3N) as that kernel's. */
template <class T, bool A>
__global__ void ttt_ns_mix_sumsq_kernel(ttt_geom g, const float *beta, const float *M,
                                        const float *G, float *u, T *ms, float *acc) {
    int64_t idx = blockIdx.y;
    const int64_t o = ttt_ns_src(g, u, idx) - u, n = o / (3 * g.nel);
    const float bn = beta[n];
    float ss = 0.0f;
    TTT_NS_FOR(e) {
        float x[TTT_NS_V], m[TTT_NS_V];
        ttt_ns_ld<A>(G + o, e, g.nel, x);
        ttt_ns_ld<A>(M + o, e, g.nel, m);
#pragma unroll
        for (int k = 0; k < TTT_NS_V; k++) {
            x[k] += bn * m[k];
            ss += x[k] * x[k];
        }
        ttt_ns_st<A>(u + o, e, g.nel, x);
        if (ms) ttt_ns_st<A>(ms + o, e, g.nel, x);
    }
    ttt_ns_put(acc, ss);
}

template <class T, bool A>
__global__ void ttt_ns_scale_kernel(ttt_geom g, const float *u, const float *acc, T *X0,
                                    float *nnorm) {
    int64_t idx = blockIdx.y;
    const float *src = ttt_ns_src(g, u, idx);
    float nr = sqrtf(ttt_ns_total(acc, idx)), inv = 1.0f / (nr + TTT_NS_EPS);
    T *dst = X0 + idx * g.nel;
    TTT_NS_FOR(e) {
        float x[TTT_NS_V];
        ttt_ns_ld<A>(src, e, g.nel, x);
#pragma unroll
        for (int k = 0; k < TTT_NS_V; k++)
            x[k] *= inv;
        ttt_ns_st<A>(dst, e, g.nel, x);
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) nnorm[idx] = nr;
}

/* Backward of the normalisation: partial dots <dX0, u> into acc, then (in
 * ttt_ns_unscale_mom_kernel) dU = dX0 / ne − k u with k = dot / (ne² ‖u‖). */
template <class T, bool A>
__global__ void ttt_ns_dot_kernel(ttt_geom g, const float *u, const T *dX0, float *acc) {
    ttt_ns_put(acc, ttt_ns_dot<A>(g, dX0 + blockIdx.y * g.nel, ttt_ns_src(g, u, blockIdx.y)));
}

/* dU of the normalisation's backward at the thread's elements from e. */
template <class T, bool A>
__device__ __forceinline__ void ttt_ns_unscale_at(const ttt_geom &g, const float *src, const T *dx,
                                                  int64_t e, float ne, float k,
                                                  float (&du)[TTT_NS_V]) {
    float b[TTT_NS_V];
    ttt_ns_ld<A>(dx, e, g.nel, du);
    ttt_ns_ld<A>(src, e, g.nel, b);
#pragma unroll
    for (int i = 0; i < TTT_NS_V; i++)
        du[i] = du[i] / ne - k * b[i];
}

/* ne and k of matrix idx (after ttt_ns_dot_kernel). */
__device__ __forceinline__ void ttt_ns_unscale_coef(const float *acc, const float *nnorm,
                                                    int64_t idx, float *ne, float *k) {
    float nr = nnorm[idx];
    *ne = nr + TTT_NS_EPS;
    *k = nr > 0.0f ? ttt_ns_total(acc, idx) / (*ne * *ne * nr) : 0.0f;
}

/* The normalisation's backward followed by the momentum's (as
 * ttt_mom_bwd_kernel's, with dun the dU it would have stored): dmu = dU +
 * dM; dM = β dmu; dGc = dmu (master layout); and where M is given, the
 * block's share of Σ dmu ⊙ M in part[n · 3S + slot · S + blockIdx.x] (S =
 * gridDim.x, slot 0..2 the head's W0, W2, W1), summed per head in a fixed
 * order by ttt_sum_parts_kernel over 3S parts. dU itself is never stored.
 * Grid (S, 3N). */
template <class T, bool A, class SW>
__global__ void ttt_ns_unscale_mom_kernel(ttt_geom g, const float *u, const T *dX0,
                                          const float *acc, const float *nnorm, const float *beta,
                                          const SW *M, float *dM, T *dGc, T *Bw, float *part) {
    __shared__ float sh[32];
    int64_t idx = blockIdx.y;
    int64_t n = idx < 2 * g.n ? idx / 2 : idx - 2 * g.n, slot = idx < 2 * g.n ? idx % 2 : 2;
    const float *src = ttt_ns_src(g, u, idx);
    const int64_t o = src - u;
    const T *dx = dX0 + idx * g.nel;
    float ne, k, dot = 0.0f;
    const float bn = beta ? beta[n] : 0.0f;
    ttt_ns_unscale_coef(acc, nnorm, idx, &ne, &k);
    TTT_NS_FOR(e) {
        float dmu[TTT_NS_V];
        ttt_ns_unscale_at<T, A>(g, src, dx, e, ne, k, dmu);
        if (dM) {
            float dm[TTT_NS_V];
            ttt_ns_ld<A>(dM + o, e, g.nel, dm);
#pragma unroll
            for (int i = 0; i < TTT_NS_V; i++) {
                dmu[i] += dm[i];
                dm[i] = bn * dmu[i];
            }
            ttt_ns_st<A>(dM + o, e, g.nel, dm);
        }
        if (M) {
            float m[TTT_NS_V];
            ttt_ns_ld<A>(M + o, e, g.nel, m);
#pragma unroll
            for (int i = 0; i < TTT_NS_V; i++)
                dot += dmu[i] * m[i];
        }
        if (Bw)
            ttt_ns_st_wide<A>(g, Bw, n, slot, e, dmu);
        else
            ttt_ns_st<A>(dGc + o, e, g.nel, dmu);
    }
    if (!M) return;
    dot = block_sum(dot, sh);
    if (threadIdx.x == 0) part[(n * 3 + slot) * gridDim.x + blockIdx.x] = dot;
}

/* Whether the normalisation's kernels may take 16-byte words (A): nel a
 * multiple of TTT_NS_V and every matrix 16-byte aligned, as the
 * workspace's carving and the state's layout give. */
static inline bool ttt_ns_words(const ttt_geom &g, const void *a, const void *b,
                                const void *c = NULL, const void *d = NULL, const void *e = NULL) {
    return g.nel % TTT_NS_V == 0 && lact_aligned16(a, b, c, d, e);
}

#define TTT_NS_SYM_TILE 32

/* out = b·q + c·(s + sᵀ) on each of the p × p matrices (back to back,
 * grid.y of them); q NULL leaves out b·q. The Newton–Schulz backward's
 * symmetric adjoints: a transposed copy costs one pass over the matrices
 * where the second product it replaces costs their FLOPs again. The block
 * of tile (i, j), i <= j, also writes tile (j, i), from both tiles read
 * whole before either is written, so out may be s or q. Grid (t², count)
 * with t tiles a side (blocks with i > j return at once), 32 × 8
 * threads. */
template <class T>
__global__ void ttt_ns_sym_kernel(int64_t p, const T *s, const T *q, T *out, float b, float c) {
    __shared__ float ta[TTT_NS_SYM_TILE][TTT_NS_SYM_TILE + 1];
    __shared__ float tb[TTT_NS_SYM_TILE][TTT_NS_SYM_TILE + 1];
    const int64_t t = (p + TTT_NS_SYM_TILE - 1) / TTT_NS_SYM_TILE;
    const int64_t i = blockIdx.x / t, j = blockIdx.x % t;
    if (i > j) return;
    const int64_t base = (int64_t)blockIdx.y * p * p;
    const int x = threadIdx.x;
    const int64_t ri = i * TTT_NS_SYM_TILE, rj = j * TTT_NS_SYM_TILE;
    for (int y = threadIdx.y; y < TTT_NS_SYM_TILE; y += blockDim.y) {
        /* ta = s(i, j), tb = s(j, i), row y, column x */
        if (ri + y < p && rj + x < p) ta[y][x] = ld(s, base + (ri + y) * p + rj + x);
        if (rj + y < p && ri + x < p) tb[y][x] = ld(s, base + (rj + y) * p + ri + x);
    }
    __syncthreads();
    for (int y = threadIdx.y; y < TTT_NS_SYM_TILE; y += blockDim.y) {
        if (ri + y < p && rj + x < p) {
            int64_t at = base + (ri + y) * p + rj + x;
            st(out, at, (q ? b * ld(q, at) : 0.0f) + c * (ta[y][x] + tb[x][y]));
        }
        if (i != j && rj + y < p && ri + x < p) {
            int64_t at = base + (rj + y) * p + ri + x;
            st(out, at, (q ? b * ld(q, at) : 0.0f) + c * (tb[y][x] + ta[x][y]));
        }
    }
}

/* ttt_ns_sym_kernel with 64 × 64 tiles moved in 16-byte words, for p a
 * multiple of 64 and 16-byte aligned matrices: the scalar kernel's 2-byte
 * accesses leave it at a third of the copy rate. Grid as that kernel's
 * with t = p / 64, 256 threads. */
template <class T>
__global__ void __launch_bounds__(256)
    ttt_ns_sym64_kernel(int64_t p, const T *s, const T *q, T *out, float b, float c) {
    constexpr int TS = 64, V = 16 / (int)sizeof(T), VPR = TS / V;
    __shared__ float ta[TS][TS + 1], tb[TS][TS + 1];
    const int64_t t = p / TS, i = blockIdx.x / t, j = blockIdx.x % t;
    if (i > j) return;
    const int64_t base = (int64_t)blockIdx.y * p * p, ri = i * TS, rj = j * TS;
    float(*B)[TS + 1] = i == j ? ta : tb; /* the tile (j, i) */
    for (int v = threadIdx.x; v < TS * VPR; v += blockDim.x) {
        const int y = v / VPR, x = (v % VPR) * V;
        float f[V];
        vload<V>(s + base + (ri + y) * p + rj + x, f);
#pragma unroll
        for (int k = 0; k < V; k++)
            ta[y][x + k] = f[k];
        if (i == j) continue;
        vload<V>(s + base + (rj + y) * p + ri + x, f);
#pragma unroll
        for (int k = 0; k < V; k++)
            tb[y][x + k] = f[k];
    }
    __syncthreads();
    for (int v = threadIdx.x; v < TS * VPR; v += blockDim.x) {
        const int y = v / VPR, x = (v % VPR) * V;
        float o[V], qv[V];
        int64_t at = base + (ri + y) * p + rj + x;
        if (q) vload<V>(q + at, qv);
#pragma unroll
        for (int k = 0; k < V; k++)
            o[k] = (q ? b * qv[k] : 0.0f) + c * (ta[y][x + k] + B[x + k][y]);
        vstore<V>(out + at, o);
        if (i == j) continue;
        at = base + (rj + y) * p + ri + x;
        if (q) vload<V>(q + at, qv);
#pragma unroll
        for (int k = 0; k < V; k++)
            o[k] = (q ? b * qv[k] : 0.0f) + c * (tb[y][x + k] + ta[x + k][y]);
        vstore<V>(out + at, o);
    }
}

#endif
