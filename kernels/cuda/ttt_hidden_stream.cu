/* The ttt op's hidden-unit passes for large heads on Hopper
 * (ttt_hidden_stream.h).
 *
 * A block takes one tile of 128 token rows of one head and walks the
 * hidden units in slices of 64. Per slice its two consumer warpgroups (64
 * rows each) form [a | b] = x [W0ⱼ; W2ⱼ]ᵀ (m64n128) and e = y W1ⱼ (m64n64,
 * W1 read MN-major) over d in steps of 64, then run the slice's
 * element-wise step of ttt_hidden_slice.cuh and store its outputs. A
 * producer warp brings each step's operands with bulk tensor copies into a
 * ring of stages: the x and y tiles (128 × 64), W0ⱼ and W2ⱼ (64 × 64 each,
 * one 128-row B operand) and W1ⱼ's 64 × 64 block. It runs ahead across the
 * slice boundaries, so the next slice's operands arrive while the
 * consumers are in the element-wise step.
 *
 * The x and y tiles are read once per slice (dh / 64 times a tile, from
 * L2); the weights once per tile. Rows past the tile's valid ones are read
 * (zeros past the sequence) and never stored. In the backward (THF_BWD)
 * the weights are the update's gradient dG, the products k dG02ᵀ and v dG1,
 * and a, b, e come from memory as in the small-head kernel; in the apply
 * (THF_APPLY) there is no y and only h = silu(a) b is stored. Both consumers
 * sum the learning-rate gradients of their rows over every slice before
 * adding them once, so the sums do not depend on timing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/ttt_apply_fused.h"
#include "kernels/cuda/ttt_hidden_slice.cuh"
#include "kernels/cuda/ttt_hidden_stream.h"

namespace {

constexpr int THS_STAGES = 4, THS_THREADS = 384, THS_ROWS = 128;
/* one stage: x, y (128 rows × 128 bytes), [W0ⱼ; W2ⱼ] (128 × 128), W1ⱼ (64 × 128) */
enum : uint32_t { THS_X = 0, THS_Y = 16384, THS_W02 = 32768, THS_W1 = 49152, THS_STAGE = 57344 };
constexpr size_t THS_SMEM = (size_t)THS_STAGES * THS_STAGE + 2 * THS_STAGES * 8 + 1024;

/* The copies' tensor maps: token rows x, y; the weights [W0; W2] and W1;
 * in THF_BWD_AB also the update's gradient dG02 and dG1 in their layout. */
struct ths_maps {
    CUtensorMap x, y, w02, w1, g02, g1;
};

template <int MODE>
__global__ void __launch_bounds__(THS_THREADS, 1)
    ttt_hidden_stream_kernel(const __grid_constant__ ths_maps M, const thf_args A, int d, int dh) {
#if WGMMA_DEVICE
    constexpr bool APPLY = MODE == THF_APPLY; /* x and [W0ⱼ; W2ⱼ] only */
    /* two rounds a slice: a, b, e from the weights, then the products with dG */
    constexpr int ROUNDS = MODE == THF_BWD_AB ? 2 : 1;
    extern __shared__ __align__(1024) unsigned char smem_hs[];
    const uint32_t base = (wg_smem(smem_hs) + 1023u) & ~1023u;
    const uint32_t bars = base + THS_STAGES * THS_STAGE;
    auto full = [&](int s) { return bars + 8u * (uint32_t)s; };
    auto empty = [&](int s) { return bars + 8u * (uint32_t)(THS_STAGES + s); };
    const int tiles = (A.Tt + THS_ROWS - 1) / THS_ROWS;
    const int n = (int)blockIdx.x / tiles, r_tile = ((int)blockIdx.x % tiles) * THS_ROWS;
    const int valid = A.Tt - r_tile < THS_ROWS ? A.Tt - r_tile : THS_ROWS;
    const int ks = d / 64, steps = ks * ROUNDS * (dh / 64);

    if (threadIdx.x == 0) {
        for (int s = 0; s < THS_STAGES; s++)
            mbar_init(full(s), 1), mbar_init(empty(s), 8);
        mbar_init_fence();
    }
    __syncthreads();

    if (threadIdx.x < 128) {
        /* ---- producer: one thread issues every copy ---- */
        wg_setmaxnreg_dec<40>();
        if (threadIdx.x == 0) {
            const int row = (int)A.t0 + r_tile;
            for (int s = 0; s < steps; s++) {
                const int st = s % THS_STAGES, j = s / (ks * ROUNDS), kc = (s % ks) * 64;
                const bool grad = ROUNDS == 2 && (s / ks) % 2 == 1;
                const CUtensorMap *w02 = grad ? &M.g02 : &M.w02, *w1 = grad ? &M.g1 : &M.w1;
                const uint32_t sb = base + (uint32_t)st * THS_STAGE;
                mbar_wait(empty(st), ((s / THS_STAGES) & 1) ^ 1);
                mbar_arrive_tx(full(st), APPLY ? THS_Y + THS_W1 - THS_W02 : THS_STAGE);
                tma_load_3d(sb + THS_X, &M.x, kc, row, n, full(st));
                tma_load_3d(sb + THS_W02, w02, kc, 64 * j, n, full(st));
                tma_load_3d(sb + THS_W02 + 8192, w02, kc, dh + 64 * j, n, full(st));
                if (APPLY) continue;
                tma_load_3d(sb + THS_Y, &M.y, kc, row, n, full(st));
                tma_load_3d(sb + THS_W1, w1, 64 * j, kc, n, full(st));
            }
        }
    } else {
        /* ---- consumers: warpgroup wgi owns rows 64·wgi.. of the tile ---- */
        wg_setmaxnreg_inc<232>();
        const int wgi = (threadIdx.x >> 7) - 1, warp = (threadIdx.x >> 5) & 3,
                  lane = threadIdx.x & 31;
        const int r0 = 64 * wgi + 16 * warp; /* the warp's first row in the tile */
        const size_t row0 = (size_t)n * A.len + A.t0 + r_tile, orow = (size_t)n * A.Tt + r_tile;
        const uint32_t rows_off = (uint32_t)wgi * 64 * 128;
        float L[2][3], sl[2][3];
        thf_rates(L, sl, A, row0, r0, valid, lane);
        int s = 0;
        /* [a | b] (columns 0–63 a, 64–127 b) and e over d, or with dG as the
         * weights k dG02ᵀ and v dG1, from the next ks stages */
        auto products = [&](float(&ab)[64], float(&e)[32]) {
#pragma unroll 1
            for (int kc = 0; kc < ks; kc++, s++) {
                const int st = s % THS_STAGES;
                const uint32_t sb = base + (uint32_t)st * THS_STAGE;
                mbar_wait(full(st), (s / THS_STAGES) & 1);
                wg_fence();
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const int acc = kc > 0 || c > 0;
                    wg_mma_ss<128>(ab, wg_desc(sb + THS_X + rows_off + 32 * c, 16, 1024),
                                   wg_desc(sb + THS_W02 + 32 * c, 16, 1024), acc);
                    if (!APPLY)
                        wg_mma_ss_tb64(e, wg_desc(sb + THS_Y + rows_off + 32 * c, 16, 1024),
                                       wg_desc(sb + THS_W1 + 2048 * c, 8192, 1024), acc);
                }
                wg_commit();
                /* the step before has been read: its stage goes back */
                if (kc > 0) {
                    wg_wait<1>();
                    if (lane == 0) mbar_arrive(empty((s - 1) % THS_STAGES));
                }
            }
            wg_wait<0>();
            if (lane == 0) mbar_arrive(empty((s - 1) % THS_STAGES));
            wg_fence_regs(ab);
            wg_fence_regs(e);
        };
#pragma unroll 1
        for (int h0 = 0; h0 < dh; h0 += 64) {
            float ab[64], e[32];
            if constexpr (MODE == THF_BWD_AB) {
                uint32_t abe[3][16];
                products(ab, e);
                thf_pack_abe(abe, ab, e);
                products(ab, e);
                thf_bwd_slice_abe<true>(ab, e, L, sl, A, orow, r0, valid, h0, dh, lane, abe);
                continue;
            }
            products(ab, e);
            if constexpr (APPLY) {
                thf_apply_slice(ab, A.out1, orow, r0, valid, h0, dh, lane);
            } else if constexpr (MODE == THF_BWD) {
                thf_bwd_slice(ab, e, L, sl, A, orow, r0, valid, h0, dh, lane);
            } else {
                uint32_t fa[4][4], fb[4][4];
                thf_fwd_slice(ab, e, L, fa, fb, A.out02, A.out1, orow, r0, valid, h0, dh, lane);
            }
        }
        if constexpr (MODE == THF_BWD || MODE == THF_BWD_AB)
            thf_add_rate_grads(sl, A, row0, r0, valid, lane);
    }
#endif
}

/* Tensor maps of x, y ([N, len, d]) and of the weights in Wc's layout
 * ([W0; W2] as 2·dh rows of d, W1 as d rows of dh, 3·d·dh apart per
 * head): w, and with THF_BWD_AB also the gradient dg. */
lact_status ths_launch(lact_ctx *ctx, const bf16 *x, const bf16 *y, const bf16 *w, const bf16 *dg,
                       const thf_args &a, int64_t d, int64_t dh, int mode) {
    if (a.N <= 0 || a.Tt <= 0) return LACT_OK;
    const int64_t tiles = (a.Tt + THS_ROWS - 1) / THS_ROWS, blocks = (int64_t)a.N * tiles;
    if (blocks >= INT32_MAX || a.len + THS_ROWS >= INT32_MAX || d % 64 || dh % 64)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "ttt streamed hidden pass: %d heads × %lld tokens, "
                         "d = %lld, dh = %lld",
                         a.N, (long long)a.len, (long long)d, (long long)dh);
    const uint64_t per = (uint64_t)(3 * d * dh), N = (uint64_t)a.N;
    ths_maps m;
    LACT_TRY(wg_tensor_map_bf16(&m.x, x, (uint64_t)d, (uint64_t)a.len, N, THS_ROWS));
    LACT_TRY(wg_tensor_map_bf16(&m.y, y, (uint64_t)d, (uint64_t)a.len, N, THS_ROWS));
    for (int i = 0; i < 2; i++) {
        const bf16 *p = i == 0 ? w : dg ? dg : w;
        CUtensorMap *m02 = i == 0 ? &m.w02 : &m.g02, *m1 = i == 0 ? &m.w1 : &m.g1;
        LACT_TRY(wg_tensor_map_bf16_strided(m02, p, (uint64_t)d, (uint64_t)(2 * dh), N, per, 64));
        LACT_TRY(
            wg_tensor_map_bf16_strided(m1, p + 2 * d * dh, (uint64_t)dh, (uint64_t)d, N, per, 64));
    }
    cudaStream_t st = lact_cuda_stream(ctx);
    void (*kernel)(ths_maps, thf_args, int, int) =
        mode == THF_BWD      ? ttt_hidden_stream_kernel<THF_BWD>
        : mode == THF_BWD_AB ? ttt_hidden_stream_kernel<THF_BWD_AB>
        : mode == THF_APPLY  ? ttt_hidden_stream_kernel<THF_APPLY>
                             : ttt_hidden_stream_kernel<THF_FWD>;
    LACT_CU(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)THS_SMEM));
    kernel<<<(unsigned)blocks, THS_THREADS, THS_SMEM, st>>>(m, a, (int)d, (int)dh);
    LACT_CU_LAUNCH("ttt_hidden_stream");
    return LACT_OK;
}

lact_status ths_check(int64_t N, int64_t Tt) {
    if (N >= INT32_MAX || Tt >= INT32_MAX)
        return lact_fail(LACT_E_UNSUPPORTED, "ttt streamed hidden pass: %lld heads × %lld tokens",
                         (long long)N, (long long)Tt);
    return LACT_OK;
}

} // namespace

bool ttt_hidden_stream_forms_abe(void) {
    const char *e = getenv("LACT_TTT_STREAM_ABE");
    return !(e && strcmp(e, "0") == 0);
}

bool ttt_hidden_stream_fills(int64_t N, int64_t Tt) {
    const char *e = getenv("LACT_TTT_HIDDEN_STREAM"); /* "1", "all": whatever the grid */
    if (e && (strcmp(e, "1") == 0 || strcmp(e, "all") == 0)) return true;
    int sms = 0;
    bool wgmma = false;
    if (ttt_fused_device(&sms, &wgmma) != LACT_OK) return false;
    return N * ((Tt + THS_ROWS - 1) / THS_ROWS) >= sms;
}

bool ttt_hidden_stream_all(void) {
    const char *e = getenv("LACT_TTT_HIDDEN_STREAM");
    return e && strcmp(e, "all") == 0;
}

bool ttt_hidden_stream_ready(int64_t d, int64_t dh) {
    const char *e = getenv("LACT_TTT_HIDDEN_STREAM");
    if (e && strcmp(e, "0") == 0) return false;
    const char *f = getenv("LACT_TTT_APPLY_FUSED"); /* "0": every pass batched */
    if (f && strcmp(f, "0") == 0) return false;
    if (d % 64 || dh % 64 || d <= 0 || dh <= 0 || ttt_apply_fused_fits(d, dh)) return false;
    int sms = 0;
    bool wgmma = false;
    return ttt_fused_device(&sms, &wgmma) == LACT_OK && wgmma;
}

lact_status ttt_hidden_stream(lact_ctx *ctx, const bf16 *x, const bf16 *y, const bf16 *Wc,
                              const float *l0, const float *l1, const float *l2, bf16 *out02,
                              bf16 *out1, int64_t N, int64_t len, int64_t t0, int64_t Tt, int64_t d,
                              int64_t dh) {
    LACT_TRY(ths_check(N, Tt));
    thf_args a = {};
    a.x = x, a.y = y, a.Wc = Wc, a.l0 = l0, a.l1 = l1, a.l2 = l2;
    a.out02 = out02, a.out1 = out1;
    a.N = (int)N, a.Tt = (int)Tt, a.len = len, a.t0 = t0;
    return ths_launch(ctx, x, y, Wc, NULL, a, d, dh, THF_FWD);
}

lact_status ttt_hidden_stream_bwd(lact_ctx *ctx, const bf16 *k, const bf16 *v, const bf16 *Wc,
                                  const bf16 *dGc, const float *l0, const float *l1,
                                  const float *l2, bf16 *zab, bf16 *ze, bf16 *dab, bf16 *de,
                                  float *dl0, float *dl1, float *dl2, int64_t N, int64_t len,
                                  int64_t t0, int64_t Tt, int64_t d, int64_t dh) {
    LACT_TRY(ths_check(N, Tt));
    thf_args a = {};
    a.x = k, a.y = v, a.Wc = dGc, a.l0 = l0, a.l1 = l1, a.l2 = l2;
    a.out02 = zab, a.out1 = ze, a.dab = dab, a.de = de, a.dl0 = dl0, a.dl1 = dl1, a.dl2 = dl2;
    a.N = (int)N, a.Tt = (int)Tt, a.len = len, a.t0 = t0;
    return ths_launch(ctx, k, v, Wc ? Wc : dGc, Wc ? dGc : NULL, a, d, dh,
                      Wc ? THF_BWD_AB : THF_BWD);
}

lact_status ttt_hidden_stream_apply(lact_ctx *ctx, const bf16 *q, const bf16 *Wc, bf16 *h,
                                    int64_t N, int64_t len, int64_t t0, int64_t Tt, int64_t d,
                                    int64_t dh) {
    LACT_TRY(ths_check(N, Tt));
    thf_args a = {};
    a.x = q, a.y = q, a.Wc = Wc, a.out1 = h;
    a.N = (int)N, a.Tt = (int)Tt, a.len = len, a.t0 = t0;
    return ths_launch(ctx, q, q, Wc, NULL, a, d, dh, THF_APPLY);
}
