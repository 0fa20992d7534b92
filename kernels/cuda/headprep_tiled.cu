/* The headprep op over position tiles. A block owns a run of positions
 * (grid x) and a share of the batches (grid y); its threads form groups of
 * TPR lanes, one row of d elements per group, each lane one unit (V
 * elements, and with rope the V elements d / 2 further), so z and the
 * gradients are read once. The groups are laid out as `sets` copies of the
 * H heads: a group keeps its head and its lanes their columns for the whole
 * block, which lets the backward sum the scale and offset gradients per
 * column in shared memory and write one partial row per block, instead of
 * storing dxs and reading it back twice for two column sums (the general
 * kernels of headprep.cu). Each thread stages the words of its next rows
 * with cp.async, so that loads stay in flight without registers to hold
 * them; the RoPE angles of the block's positions are computed once per
 * block into shared memory, in double (headprep_common.cuh).
 *
 * What made these kernels slow at first was instructions, not bytes: a
 * 64-bit division per row for its (position, batch), three sigmoids per
 * element with the exact exponential and division, and scalar reads of the
 * angle table. Without them, at the `small` language model's shape (B 8, L
 * 4096, 6 heads of 128, BF16), the q/k backward with its parameter sums
 * takes 94 µs (ncu; 165 µs for the general kernel and 80 µs for its two
 * column sums) and the forward 58 µs (91 µs). */
#include <cuda_pipeline_primitives.h>

#include "kernels/cuda/colsum.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/headprep_common.cuh"
#include "kernels/cuda/headprep_tiled.h"
#include "kernels/cuda/vec.cuh"

#define HPT_THREADS 256          /* nominal block size; sets fill it with whole head sets */
#define HPT_BLOCKS_PER_SM 8      /* blocks a large call is cut into, per multiprocessor */
#define HPT_SUMS_BLOCKS_PER_SM 2 /* the same with parameter sums (a partial row a block) */
#define HPT_ROWS_PER_BLOCK 64    /* (b, l, h) rows a block takes at least */
#define HPT_TABLE_BYTES 32768    /* most for a block's cos and sin table */
#define HPT_SMEM (200 * 1024)    /* most dynamic shared memory a block asks for */

struct hpt_geom {
    int64_t B, L, pos0;
    int64_t lc; /* positions per block (grid x) */
    int H, d, units, tpr, sets, ysplit;
    double log_theta;
};

/* Sum over the tpr lanes of a group; every lane of the warp calls it. */
__device__ __forceinline__ float hpt_group_sum(float v, int tpr) {
    for (int o = tpr >> 1; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Where a thread sits: its set, head, lane and unit columns. */
struct hpt_lane {
    int set, h, lane, o0, o1;
    bool on; /* a real set and a real unit */
};

template <int V, bool ROPE> __device__ __forceinline__ hpt_lane hpt_where(const hpt_geom &g) {
    hpt_lane w;
    const int gi = threadIdx.x / g.tpr;
    w.lane = threadIdx.x % g.tpr;
    w.set = gi / g.H;
    w.h = gi % g.H;
    w.on = w.set < g.sets && w.lane < g.units;
    w.o0 = w.lane * V;
    w.o1 = ROPE ? w.o0 + g.d / 2 : w.o0;
    return w;
}

/* Item i of a thread is pair q = set + i · sets of its block's (position,
 * batch) pairs, positions outermost. Every thread of the block runs the
 * same number of items (valid false past its set's end), so that a group
 * may sum over its lanes with shuffles of the whole warp. The walk steps
 * the pair's (position, batch) without dividing: 64-bit divisions per row
 * cost more than the row's arithmetic. */
struct hpt_block {
    int64_t l_beg, pairs, iters;
    int nl, nb, y, step_l, step_b; /* sets = step_l · nb + step_b */
};

__device__ __forceinline__ hpt_block hpt_block_of(const hpt_geom &g) {
    hpt_block k;
    k.y = blockIdx.y;
    k.nb = (int)((g.B - k.y + g.ysplit - 1) / g.ysplit);
    k.l_beg = (int64_t)blockIdx.x * g.lc;
    k.nl = (int)(k.l_beg + g.lc < g.L ? g.lc : g.L - k.l_beg);
    k.pairs = (int64_t)k.nl * k.nb;
    k.iters = (k.pairs + g.sets - 1) / g.sets;
    k.step_l = g.sets / k.nb;
    k.step_b = g.sets % k.nb;
    return k;
}

struct hpt_walk {
    int64_t q; /* pair index */
    int li, bi;
    __device__ __forceinline__ void start(const hpt_block &k, int set, int64_t i, int sets) {
        q = set + i * sets;
        li = (int)(q / k.nb);
        bi = (int)(q % k.nb);
    }
    __device__ __forceinline__ void next(const hpt_block &k, int sets) {
        q += sets;
        li += k.step_l;
        bi += k.step_b;
        if (bi >= k.nb) {
            bi -= k.nb;
            li++;
        }
    }
    __device__ __forceinline__ bool valid(const hpt_block &k, const hpt_lane &w) const {
        return w.on && q < k.pairs;
    }
    __device__ __forceinline__ int64_t l(const hpt_block &k) const { return k.l_beg + li; }
    __device__ __forceinline__ int64_t b(const hpt_block &k, const hpt_geom &g) const {
        return k.y + (int64_t)bi * g.ysplit;
    }
};

/* A thread's staging in shared memory: DEPTH slots of `words` 16-byte
 * words, word w of slot s at ((s · words + w) · blockDim + thread) · 16, so
 * that a warp's reads of one word are consecutive. Each thread fills and
 * reads only its own words (cp.async, then a wait on its own groups): the
 * loads of the next DEPTH − 1 rows are in flight while a row is worked on,
 * without registers to hold them. */
struct hpt_stage {
    char *base;
    int words;
    __device__ __forceinline__ void *at(int s, int w) const {
        return base + ((size_t)(s * words + w) * blockDim.x + threadIdx.x) * 16;
    }
};

/* The table of the block's positions, cs [nl][d/2] then sn [nl][d/2]. */
__device__ __forceinline__ void hpt_fill_table(float *tab, const hpt_geom &g, const hpt_block &k,
                                               double sign) {
    const int half = g.d / 2;
    float *sn = tab + k.nl * half;
    for (int64_t e = threadIdx.x; e < k.nl * half; e += blockDim.x) {
        const int64_t li = e / half;
        const int i = (int)(e % half);
        hp_angle(g.pos0 + k.l_beg + li, i, g.d, g.log_theta, sign, &tab[e], &sn[e]);
    }
}

template <class T, int V> __device__ __forceinline__ void hpt_ld(float (&f)[V], const void *slot) {
    vload<V>((const T *)slot, f);
}

/* dst[0..V) += v, 16-byte words of shared memory (V is 4 or 8 here). */
template <int V> __device__ __forceinline__ void hpt_acc(float *dst, const float (&v)[V]) {
#pragma unroll
    for (int e = 0; e < V; e += 4) {
        float4 t = *reinterpret_cast<float4 *>(dst + e);
        t.x += v[e];
        t.y += v[e + 1];
        t.z += v[e + 2];
        t.w += v[e + 3];
        *reinterpret_cast<float4 *>(dst + e) = t;
    }
}

#define HPT_FWD_DEPTH 6
#define HPT_BWD_DEPTH 3

template <class T, int V, bool ROPE>
__global__ void __launch_bounds__(HPT_THREADS)
    hpt_fwd_kernel(T *qf, T *qa, const T *z, const float *scale, const float *offset, hpt_geom g,
                   float eps) {
    extern __shared__ __align__(16) char hpt_smem[];
    constexpr int P = ROPE ? 2 : 1, D = HPT_FWD_DEPTH;
    const hpt_lane w = hpt_where<V, ROPE>(g);
    const hpt_block k = hpt_block_of(g);
    const int o[2] = {w.o0, w.o1};
    const int half = g.d / 2;
    float *tab = (float *)hpt_smem;
    const hpt_stage stg = {hpt_smem + (ROPE ? g.lc * g.d * sizeof(float) : 0), P};
    hpt_walk ahead, cur;
    ahead.start(k, w.set, 0, g.sets);
    cur = ahead;
    auto fetch = [&](int64_t i) {
        if (i < k.iters && ahead.valid(k, w)) {
            const T *zr = z + ((ahead.b(k, g) * g.L + ahead.l(k)) * g.H + w.h) * g.d;
#pragma unroll
            for (int p = 0; p < P; p++)
                __pipeline_memcpy_async(stg.at((int)(i % D), p), zr + o[p], 16);
        }
        __pipeline_commit();
        ahead.next(k, g.sets);
    };
#pragma unroll
    for (int i = 0; i < D - 1; i++)
        fetch(i);
    if (ROPE) {
        hpt_fill_table(tab, g, k, 1.0);
        __syncthreads();
    }
    float sc[P][V] = {}, of[P][V] = {};
#pragma unroll
    for (int p = 0; p < P; p++)
        if (qf && w.on) {
            vload<V>(scale + w.h * g.d + o[p], sc[p]);
            vload<V>(offset + w.h * g.d + o[p], of[p]);
        }
    for (int64_t i = 0; i < k.iters; i++) {
        fetch(i + D - 1);
        __pipeline_wait_prior(D - 1);
        const bool on = cur.valid(k, w);
        const int64_t li = cur.li;
        const int64_t out_row = ((cur.b(k, g) * g.H + w.h) * g.L + cur.l(k)) * g.d;
        cur.next(k, g.sets);
        float s[P][V], n[P][V];
#pragma unroll
        for (int p = 0; p < P; p++) {
            if (on) {
                hpt_ld<T, V>(s[p], stg.at((int)(i % D), p));
            } else {
#pragma unroll
                for (int e = 0; e < V; e++)
                    s[p][e] = 0.0f;
            }
#pragma unroll
            for (int e = 0; e < V; e++)
                s[p][e] *= hp_sigmoid(s[p][e]);
        }
        if (qf) {
            float ss = 0.0f;
#pragma unroll
            for (int p = 0; p < P; p++)
#pragma unroll
                for (int e = 0; e < V; e++) {
                    n[p][e] = on ? s[p][e] * sc[p][e] + of[p][e] : 0.0f;
                    ss += n[p][e] * n[p][e];
                }
            ss = hpt_group_sum(ss, g.tpr);
            const float inv = 1.0f / (sqrtf(ss) + eps);
#pragma unroll
            for (int p = 0; p < P; p++)
#pragma unroll
                for (int e = 0; e < V; e++)
                    n[p][e] *= inv;
        }
        if (!on) continue;
        const float *cs = tab + li * half, *sn = tab + (k.nl + li) * half;
        if (qf) {
            if (ROPE) hp_rotate<V>(n[0], n[P - 1], cs, sn, o[0]);
#pragma unroll
            for (int p = 0; p < P; p++)
                vstore<V>(qf + out_row + o[p], n[p]);
        }
        if (qa) {
            if (ROPE) hp_rotate<V>(s[0], s[P - 1], cs, sn, o[0]);
#pragma unroll
            for (int p = 0; p < P; p++)
                vstore<V>(qa + out_row + o[p], s[p]);
        }
    }
}

/* dxs = dn / s − xs · k with s = ‖xs‖ + eps and k = (dn · xs) / (‖xs‖ s²),
 * dz = (dxs ⊙ scale + dqa) ⊙ silu′(z); with SUMS, Σ dxs ⊙ silu(z) and Σ dxs
 * over the block's rows per column go to partial[0 or 1][block][C]. */
template <class T, int V, bool ROPE, bool SUMS>
__global__ void __launch_bounds__(HPT_THREADS, 2)
    hpt_bwd_kernel(T *dz, const T *dqf, const T *dqa, const T *z, const float *scale,
                   const float *offset, float *partial, hpt_geom g, float eps) {
    extern __shared__ __align__(16) char hpt_smem[];
    constexpr int P = ROPE ? 2 : 1, D = HPT_BWD_DEPTH;
    const hpt_lane w = hpt_where<V, ROPE>(g);
    const hpt_block k = hpt_block_of(g);
    const int o[2] = {w.o0, w.o1};
    const int half = g.d / 2;
    const int64_t C = (int64_t)g.H * g.d;
    /* Shared memory: the table, the column sums red[set][0 or 1][C] (each
     * entry owned by one lane: in registers for the whole block they would
     * push the kernel past 128 registers), the staging. */
    float *tab = (float *)hpt_smem;
    float *red = tab + (ROPE ? g.lc * g.d : 0);
    float *red_sc = red + (2 * w.set) * C + (int64_t)w.h * g.d, *red_of = red_sc + C;
    const int wf = dqf ? P : 0, wa = wf + P; /* word index of dqf, dqa */
    const hpt_stage stg = {(char *)(red + (SUMS ? 2 * g.sets * C : 0)),
                           P * (1 + (dqf ? 1 : 0) + (dqa ? 1 : 0))};
    hpt_walk ahead, cur;
    ahead.start(k, w.set, 0, g.sets);
    cur = ahead;
    auto fetch = [&](int64_t i) {
        if (i < k.iters && ahead.valid(k, w)) {
            const int s = (int)(i % D);
            const int64_t b = ahead.b(k, g), l = ahead.l(k);
            const int64_t in_row = ((b * g.L + l) * g.H + w.h) * g.d;
            const int64_t out_row = ((b * g.H + w.h) * g.L + l) * g.d;
#pragma unroll
            for (int p = 0; p < P; p++) {
                __pipeline_memcpy_async(stg.at(s, p), z + in_row + o[p], 16);
                if (dqf) __pipeline_memcpy_async(stg.at(s, wf + p), dqf + out_row + o[p], 16);
                if (dqa) __pipeline_memcpy_async(stg.at(s, wa + p), dqa + out_row + o[p], 16);
            }
        }
        __pipeline_commit();
        ahead.next(k, g.sets);
    };
#pragma unroll
    for (int i = 0; i < D - 1; i++)
        fetch(i);
    if (SUMS && w.on) {
#pragma unroll
        for (int p = 0; p < P; p++)
#pragma unroll
            for (int e = 0; e < V; e++)
                red_sc[o[p] + e] = red_of[o[p] + e] = 0.0f;
    }
    if (ROPE) {
        hpt_fill_table(tab, g, k, -1.0);
        __syncthreads();
    }
    for (int64_t i = 0; i < k.iters; i++) {
        fetch(i + D - 1);
        __pipeline_wait_prior(D - 1);
        const bool on = cur.valid(k, w);
        const int s = (int)(i % D);
        const int64_t in_row = ((cur.b(k, g) * g.L + cur.l(k)) * g.H + w.h) * g.d;
        const float *cs = tab + cur.li * half, *sn = tab + (k.nl + cur.li) * half;
        cur.next(k, g.sets);
        /* Live across the row: silu(z) (sl) and silu'(z) (f); z itself and
         * its sigmoid die here, which keeps the kernel within 128
         * registers. */
        float sl[P][V], f[P][V], dg[P][V];
#pragma unroll
        for (int p = 0; p < P; p++) {
            float x[V];
            if (on) {
                hpt_ld<T, V>(x, stg.at(s, p));
            } else {
#pragma unroll
                for (int e = 0; e < V; e++)
                    x[e] = 0.0f;
            }
#pragma unroll
            for (int e = 0; e < V; e++) {
                const float sg = hp_sigmoid(x[e]);
                sl[p][e] = x[e] * sg;
                f[p][e] = sg * (1.0f + x[e] * (1.0f - sg));
                dg[p][e] = 0.0f;
            }
        }
        if (dqf) {
            float dn[P][V], xs[P][V], sc[P][V];
#pragma unroll
            for (int p = 0; p < P; p++) {
                float of[V];
                if (on) {
                    hpt_ld<T, V>(dn[p], stg.at(s, wf + p));
                    vload<V>(scale + w.h * g.d + o[p], sc[p]);
                    vload<V>(offset + w.h * g.d + o[p], of);
                } else {
#pragma unroll
                    for (int e = 0; e < V; e++)
                        dn[p][e] = sc[p][e] = of[e] = 0.0f;
                }
#pragma unroll
                for (int e = 0; e < V; e++)
                    xs[p][e] = sl[p][e] * sc[p][e] + of[e];
            }
            if (ROPE && on) hp_rotate<V>(dn[0], dn[P - 1], cs, sn, o[0]);
            float ss = 0.0f, dot = 0.0f;
#pragma unroll
            for (int p = 0; p < P; p++)
#pragma unroll
                for (int e = 0; e < V; e++) {
                    ss += xs[p][e] * xs[p][e];
                    dot += dn[p][e] * xs[p][e];
                }
            ss = hpt_group_sum(ss, g.tpr);
            dot = hpt_group_sum(dot, g.tpr);
            const float nrm = sqrtf(ss), sd = nrm + eps;
            const float rs = 1.0f / sd, kk = nrm > 0.0f ? dot / (nrm * sd * sd) : 0.0f;
#pragma unroll
            for (int p = 0; p < P; p++) {
#pragma unroll
                for (int e = 0; e < V; e++) {
                    const float dx = dn[p][e] * rs - xs[p][e] * kk;
                    dg[p][e] = dx * sc[p][e];
                    dn[p][e] = dx;
                    xs[p][e] = dx * sl[p][e];
                }
                if (SUMS && on) {
                    hpt_acc<V>(red_of + o[p], dn[p]);
                    hpt_acc<V>(red_sc + o[p], xs[p]);
                }
            }
        }
        if (!on) continue;
        if (dqa) {
            float da[P][V];
#pragma unroll
            for (int p = 0; p < P; p++)
                hpt_ld<T, V>(da[p], stg.at(s, wa + p));
            hp_add_grad<V, P, ROPE>(dg, da, cs, sn, o[0]);
        }
#pragma unroll
        for (int p = 0; p < P; p++) {
#pragma unroll
            for (int e = 0; e < V; e++)
                dg[p][e] *= f[p][e];
            vstore<V>(dz + in_row + o[p], dg[p]);
        }
    }
    if (!SUMS) return;
    /* The sets' sums, added in set order into the block's partial rows. */
    __syncthreads();
    const int64_t nblk = (int64_t)gridDim.x * gridDim.y;
    const int64_t blk = (int64_t)blockIdx.y * gridDim.x + blockIdx.x;
    for (int64_t e = threadIdx.x; e < 2 * C; e += blockDim.x) {
        const int64_t which = e / C, c = e % C;
        float t = 0.0f;
        for (int q = 0; q < g.sets; q++)
            t += red[(2 * q + which) * C + c];
        partial[(which * nblk + blk) * C + c] = t;
    }
}

/* The launch: geometry, grid, block and shared memory; false when the call
 * is not one these kernels take. */
struct hpt_launch {
    hpt_geom g;
    dim3 grid;
    int threads;
    size_t smem;
    bool rope;
};

/* words: 16-byte words staged per unit and row (z, and the gradients);
 * depth: staging slots; sums: whether the backward sums the parameter
 * gradients (their partial rows must fit the scratch). */
static bool hpt_plan(hpt_launch *lp, const lact_ctx *ctx, const lact_tensor *z, int64_t pos0,
                     float theta, int W, bool aligned, int words, int depth, bool sums) {
    const int64_t B = z->shape[0], L = z->shape[1], H = z->shape[2], d = z->shape[3];
    const bool rope = theta > 0.0f;
    const int64_t part = rope ? d / 2 : d;
    if (!aligned || part % W != 0 || part / W > 32 || H > 1024) return false;
    const int units = (int)(part / W);
    int tpr = 1;
    while (tpr < units)
        tpr *= 2;
    if (tpr * H > 1024) return false;
    const int sets = tpr * H >= HPT_THREADS ? 1 : HPT_THREADS / (tpr * (int)H);
    const int threads = (tpr * (int)H * sets + 31) / 32 * 32;
    const int64_t C = H * d;
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
        return false;
    int64_t target = B * L * H / HPT_ROWS_PER_BLOCK;
    const int64_t per_sm = sums ? HPT_SUMS_BLOCKS_PER_SM : HPT_BLOCKS_PER_SM;
    if (target > sms * per_sm) target = sms * per_sm;
    if (target < 1) target = 1;
    int64_t nbx = L < target ? L : target;
    int64_t lc = (L + nbx - 1) / nbx;
    const int64_t lc_max = rope ? HPT_TABLE_BYTES / (d * (int64_t)sizeof(float)) : lc;
    if (lc_max < 1) return false;
    if (lc > lc_max) lc = lc_max;
    nbx = (L + lc - 1) / lc;
    int64_t ysplit = nbx >= target ? 1 : target / nbx;
    if (ysplit > B) ysplit = B;
    if (ysplit > 65535) ysplit = 65535;
    if (nbx > 0x7fffffff) return false;
    if (sums && (size_t)(nbx * ysplit) * 2 * (size_t)C * sizeof(float) > ctx->scratch_bytes)
        return false;
    const size_t table = rope ? (size_t)lc * (size_t)d * sizeof(float) : 0;
    const size_t red = sums ? (size_t)sets * 2 * (size_t)C * sizeof(float) : 0;
    const size_t stage = (size_t)depth * (size_t)(units > 0 ? words : 0) * (size_t)threads * 16;
    lp->smem = table + red + stage;
    if (lp->smem > HPT_SMEM) return false;
    lp->g = {B,
             L,
             pos0,
             lc,
             (int)H,
             (int)d,
             units,
             tpr,
             sets,
             (int)ysplit,
             rope ? log((double)theta) : 0.0};
    lp->grid = dim3((unsigned)nbx, (unsigned)ysplit);
    lp->threads = threads;
    lp->rope = rope;
    return true;
}

/* Launches K with the plan's shape, allowing it the shared memory first. */
template <class K, class... A>
static lact_status hpt_run(K kernel, const hpt_launch &lp, cudaStream_t st, A... args) {
    LACT_CU(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)lp.smem));
    kernel<<<lp.grid, lp.threads, lp.smem, st>>>(args...);
    return LACT_OK;
}

lact_status lact_cuda_headprep_tiled_forward(lact_ctx *ctx, lact_tensor *qf, lact_tensor *qa,
                                             const lact_tensor *z, const float *scale,
                                             const float *offset, int64_t pos0, float theta,
                                             float eps, bool *done) {
    cudaStream_t st = lact_cuda_stream(ctx);
    *done = false;
    LACT_DISPATCH_FLOAT(z->dtype, "headprep", {
        constexpr int W = vec_width<T>::value;
        T *pf = qf ? (T *)qf->data : NULL, *pa = qa ? (T *)qa->data : NULL;
        const T *pz = (const T *)z->data;
        hpt_launch lp;
        const int P = theta > 0.0f ? 2 : 1;
        if (!hpt_plan(&lp, ctx, z, pos0, theta, W, lact_aligned16(pf, pa, pz, scale, offset), P,
                      HPT_FWD_DEPTH, false))
            return LACT_OK;
        if (lp.rope)
            LACT_TRY(
                hpt_run(hpt_fwd_kernel<T, W, true>, lp, st, pf, pa, pz, scale, offset, lp.g, eps));
        else
            LACT_TRY(
                hpt_run(hpt_fwd_kernel<T, W, false>, lp, st, pf, pa, pz, scale, offset, lp.g, eps));
        LACT_CU_LAUNCH("headprep");
        *done = true;
    });
    return LACT_OK;
}

lact_status lact_cuda_headprep_tiled_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *dscale,
                                              lact_tensor *doffset, const lact_tensor *dqf,
                                              const lact_tensor *dqa, const lact_tensor *z,
                                              const float *scale, const float *offset, int64_t pos0,
                                              float theta, float eps, bool acc, bool *done) {
    cudaStream_t st = lact_cuda_stream(ctx);
    const bool sums = dscale || doffset;
    *done = false;
    LACT_DISPATCH_FLOAT(z->dtype, "headprep backward", {
        constexpr int W = vec_width<T>::value;
        T *pdz = (T *)dz->data;
        const T *pf = dqf ? (const T *)dqf->data : NULL, *pa = dqa ? (const T *)dqa->data : NULL;
        const T *pz = (const T *)z->data;
        hpt_launch lp;
        const int P = theta > 0.0f ? 2 : 1, words = P * (1 + (pf ? 1 : 0) + (pa ? 1 : 0));
        if (!hpt_plan(&lp, ctx, z, pos0, theta, W,
                      lact_aligned16(pdz, pf, pa, pz) && lact_aligned16(scale, offset), words,
                      HPT_BWD_DEPTH, sums))
            return LACT_OK;
        float *part = sums ? (float *)ctx->scratch : NULL;
        if (lp.rope && sums)
            LACT_TRY(hpt_run(hpt_bwd_kernel<T, W, true, true>, lp, st, pdz, pf, pa, pz, scale,
                             offset, part, lp.g, eps));
        else if (lp.rope)
            LACT_TRY(hpt_run(hpt_bwd_kernel<T, W, true, false>, lp, st, pdz, pf, pa, pz, scale,
                             offset, part, lp.g, eps));
        else if (sums)
            LACT_TRY(hpt_run(hpt_bwd_kernel<T, W, false, true>, lp, st, pdz, pf, pa, pz, scale,
                             offset, part, lp.g, eps));
        else
            LACT_TRY(hpt_run(hpt_bwd_kernel<T, W, false, false>, lp, st, pdz, pf, pa, pz, scale,
                             offset, part, lp.g, eps));
        LACT_CU_LAUNCH("headprep_backward");
        const int64_t nblk = (int64_t)lp.grid.x * lp.grid.y, C = z->shape[2] * z->shape[3];
        if (dscale) LACT_TRY(lact_colsum_final(st, part, nblk, C, (float *)dscale->data, acc));
        if (doffset)
            LACT_TRY(lact_colsum_final(st, part + nblk * C, nblk, C, (float *)doffset->data, acc));
        *done = true;
    });
    return LACT_OK;
}
