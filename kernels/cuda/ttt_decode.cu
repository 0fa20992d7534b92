/* The ttt op's streaming decode on CUDA: per stretch of tokens, the apply
 * with the current weights (two batched products around the SiLU-gate
 * kernel), the tokens appended to the chunk buffer (strided copies), and
 * when the buffer holds C tokens the op's update on it (G from two
 * products, momentum with the chunk's mean β, Newton–Schulz, add, renorm).
 * Every head-batch moves in step (they all see the same T tokens), so each
 * stage is one launch over the N heads.
 *
 * The kernels and the Newton–Schulz driver are the CUDA op's
 * (ttt_kernels.cuh, ttt_ns.cuh), compiled here inside an unnamed namespace:
 * ttt.cu compiles the same non-template kernels, and the unnamed namespace
 * keeps this file's copies local to it. */
#include <string.h>

#include "core/base/device.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ttt_decode_cuda.h"
#include "kernels/cuda/ttt_ns_fused.h"
#include "kernels/ttt.h"

namespace {
#include "kernels/cuda/ttt_ns.cuh"
} // namespace

#define DEC_THREADS 256

/* Bump allocation in 256-byte steps; with base NULL it only measures. */
static float *carve(char *base, size_t *off, int64_t floats) {
    float *p = base ? (float *)(base + *off) : NULL;
    *off += ((size_t)floats * 4 + 255) & ~(size_t)255;
    return p;
}

static void layout(lact_ttt_dec_cuda *s, char *base, size_t *off) {
    int64_t N = s->n, C = s->chunk, d = s->d, dh = s->dh, nel3 = 3 * d * dh;
    s->W = carve(base, off, N * nel3);
    s->M = s->momentum ? carve(base, off, N * nel3) : NULL;
    s->G = carve(base, off, N * nel3);
    s->r0 = carve(base, off, N * (2 * dh + d));
    s->beta = carve(base, off, N);
    s->bk = carve(base, off, N * C * d);
    s->bv = carve(base, off, N * C * d);
    s->bl = carve(base, off, 3 * N * C);
    s->bm = carve(base, off, N * C);
    s->Zab = carve(base, off, N * C * 2 * dh);
    s->Ze = carve(base, off, N * C * dh);
    s->X02 = carve(base, off, N * C * 2 * dh);
    s->H1 = carve(base, off, N * C * dh);
    if (s->muon != LACT_TTT_MUON_OFF) {
        int64_t p = d < dh ? d : dh;
        for (int i = 0; i < 6; i++)
            s->ns_x[i] = carve(base, off, N * nel3);
        for (int i = 0; i < 5; i++) {
            s->ns_a[i] = carve(base, off, 3 * N * p * p);
            s->ns_p[i] = carve(base, off, 3 * N * p * p);
        }
        s->ns_norm = carve(base, off, 3 * N);
        s->ns_acc = carve(base, off, 3 * N * TTT_NS_SLICES);
    }
    s->update = (lact_ttt_op *)carve(base, off, (int64_t)(sizeof(lact_ttt_op) + 3) / 4);
}

static ttt_geom geom(const lact_ttt_dec_cuda *s, int64_t len) {
    ttt_geom g;
    g.n = s->n, g.len = len, g.d = s->d, g.dh = s->dh;
    g.nel = s->d * s->dh, g.rows = 2 * s->dh + s->d;
    g.wr_lo = 0, g.wr_n = g.rows;
    g.wn = s->n;
    return g;
}

extern "C" lact_status lact_cuda_ttt_decode_init(lact_ctx *ctx, lact_ttt_dec_cuda *s,
                                                 const float *w0, const float *w1, const float *w2,
                                                 int64_t n, int64_t d, int64_t dh, int64_t chunk,
                                                 bool momentum, lact_ttt_muon muon) {
    memset(s, 0, sizeof *s);
    s->n = n, s->d = d, s->dh = dh, s->chunk = chunk;
    s->momentum = momentum;
    s->muon = muon;
    if (muon != LACT_TTT_MUON_OFF && 3 * n > 65535)
        return lact_fail(LACT_E_UNSUPPORTED, "ttt decode: Muon on more than 21845 head-batches");
    size_t bytes = 0;
    layout(s, NULL, &bytes);
    void *mem = NULL;
    LACT_TRY(lact_mem_alloc(LACT_CUDA, bytes, &mem));
    s->mem = mem;
    bytes = 0;
    layout(s, (char *)mem, &bytes);
    cudaStream_t st = lact_cuda_stream(ctx);
    lact_ttt_op whole = {0, chunk, true, false};
    ttt_geom g = geom(s, chunk);
    lact_status rc = lact_cuda_status(
        cudaMemcpyAsync(s->update, &whole, sizeof whole, cudaMemcpyHostToDevice, st),
        "cudaMemcpyAsync", __FILE__, __LINE__);
    if (rc == LACT_OK) {
        /* W (also its activation-dtype copy: the same buffer in F32), M = 0,
         * r0 = the initial rows' norms. */
        TTT_LAUNCH_WROWS(ttt_init_kernel, float, DEC_THREADS,
                         lact_aligned16(w0, w1, w2, s->W, s->M), g, w0, w1, w2, s->W, s->W, s->M,
                         s->r0);
        rc = lact_cuda_status(cudaPeekAtLastError(), "ttt_init", __FILE__, __LINE__);
    }
    /* The host copy of `whole` must outlive the queued copy. */
    if (rc == LACT_OK)
        rc = lact_cuda_status(cudaStreamSynchronize(st), "cudaStreamSynchronize", __FILE__,
                              __LINE__);
    if (rc != LACT_OK) lact_cuda_ttt_decode_free(s);
    return rc;
}

extern "C" void lact_cuda_ttt_decode_free(lact_ttt_dec_cuda *s) {
    if (!s) return;
    if (s->mem) lact_mem_free(LACT_CUDA, s->mem);
    memset(s, 0, sizeof *s);
}

/* Launches a row kernel over rows token rows, two columns per access when
 * dh is even (as the op does). */
#define DEC_LAUNCH_ROWS(kernel, rows, ...)                                                         \
    do {                                                                                           \
        int v_ = s->dh % 2 == 0 ? 2 : 1;                                                           \
        int th_ = lact_row_threads(s->dh / v_);                                                    \
        if (th_ > DEC_THREADS) th_ = DEC_THREADS;                                                  \
        unsigned bl_ = (unsigned)((rows) < 1048576 ? (rows) : 1048576);                            \
        if (v_ == 2)                                                                               \
            kernel<float, 2><<<bl_, th_, 0, st>>>(__VA_ARGS__);                                    \
        else                                                                                       \
            kernel<float, 1><<<bl_, th_, 0, st>>>(__VA_ARGS__);                                    \
        LACT_CU_LAUNCH(#kernel);                                                                   \
    } while (0)

/* o rows [t, t + m) of each head = f_W(q rows), q and o [N, T, d]. */
static lact_status apply(lact_ctx *ctx, lact_ttt_dec_cuda *s, float *o, const float *q, int64_t T,
                         int64_t t, int64_t m) {
    cudaStream_t st = lact_cuda_stream(ctx);
    int64_t N = s->n, d = s->d, dh = s->dh, nel3 = 3 * d * dh;
    ttt_geom g = geom(s, T);
    LACT_TRY(ttt_gemm(ctx, LACT_F32, LACT_F32, false, true, m, 2 * dh, d, N, q + t * d, T * d, s->W,
                      nel3, s->Zab, m * 2 * dh, 1.0f, 0.0f));
    DEC_LAUNCH_ROWS(ttt_apply_ew_kernel, N * m, g, m, s->Zab, s->H1);
    return ttt_gemm(ctx, LACT_F32, LACT_F32, false, true, m, d, dh, N, s->H1, m * dh,
                    s->W + 2 * d * dh, nel3, o + t * d, T * d, 1.0f, 0.0f);
}

/* rows [t, t + m) of src [N, T, w] to rows [at, at + m) of dst [N, C, w]. */
static lact_status buffer(cudaStream_t st, float *dst, int64_t C, int64_t at, const float *src,
                          int64_t T, int64_t t, int64_t m, int64_t w, int64_t N) {
    LACT_CU(cudaMemcpy2DAsync(dst + at * w, (size_t)(C * w) * 4, src + t * w, (size_t)(T * w) * 4,
                              (size_t)(m * w) * 4, (size_t)N, cudaMemcpyDeviceToDevice, st));
    return LACT_OK;
}

/* The update from the C buffered tokens (the op's grad_fwd and step_fwd on
 * one whole-chunk op). */
static lact_status update(lact_ctx *ctx, lact_ttt_dec_cuda *s) {
    cudaStream_t st = lact_cuda_stream(ctx);
    int64_t N = s->n, C = s->chunk, d = s->d, dh = s->dh, nel = d * dh, nel3 = 3 * nel;
    ttt_geom g = geom(s, C);
    const float *l0 = s->bl, *l1 = s->bl + N * C, *l2 = s->bl + 2 * N * C;
    LACT_TRY(ttt_gemm(ctx, LACT_F32, LACT_F32, false, true, C, 2 * dh, d, N, s->bk, C * d, s->W,
                      nel3, s->Zab, C * 2 * dh, 1.0f, 0.0f));
    LACT_TRY(ttt_gemm(ctx, LACT_F32, LACT_F32, false, false, C, dh, d, N, s->bv, C * d,
                      s->W + 2 * nel, nel3, s->Ze, C * dh, 1.0f, 0.0f));
    DEC_LAUNCH_ROWS(ttt_grad_ew_kernel, N * C, g, C, (int64_t)0, s->Zab, s->Ze, l0, l1, l2, s->X02,
                    s->H1);
    LACT_TRY(ttt_gemm(ctx, LACT_F32, LACT_F32, true, false, 2 * dh, d, C, N, s->X02, C * 2 * dh,
                      s->bk, C * d, s->G, nel3, 1.0f, 0.0f));
    LACT_TRY(ttt_gemm(ctx, LACT_F32, LACT_F32, true, false, d, dh, C, N, s->bv, C * d, s->H1,
                      C * dh, s->G + 2 * nel, nel3, 1.0f, 0.0f));
    const float *bj = NULL;
    if (s->momentum) {
        ttt_beta_kernel<<<dim3(1, (unsigned)N), DEC_THREADS, 0, st>>>(g, s->bm, s->update, s->beta);
        LACT_CU_LAUNCH("ttt_beta");
        bj = s->beta;
    }
    if (s->muon == LACT_TTT_MUON_OFF) {
        TTT_LAUNCH_WROWS(ttt_renorm_kernel, float, DEC_THREADS, lact_aligned16(s->M, s->G, s->W), g,
                         (const float *)NULL, bj, s->M, s->M, s->G, s->W, s->W, s->W, s->r0,
                         (float *)NULL);
        LACT_CU_LAUNCH("ttt_renorm");
        return LACT_OK;
    }
    const float *u = s->G;
    if (s->momentum) {
        ttt_mom_mix_kernel<<<lact_grid_1d(N * nel3, DEC_THREADS), DEC_THREADS, 0, st>>>(
            g, bj, s->M, s->G, s->M, (float *)NULL);
        LACT_CU_LAUNCH("ttt_mom_mix");
        u = s->M;
    }
    ttt_ns<float> ns;
    ns.setup(ctx, g, s->muon);
    for (int i = 0; i < 6; i++)
        ns.X[i] = s->ns_x[i];
    for (int i = 0; i < 5; i++)
        ns.A[i] = s->ns_a[i], ns.P[i] = s->ns_p[i];
    ns.Q = ns.R = ns.dX[0] = ns.dX[1] = NULL;
    ns.nnorm = s->ns_norm;
    ns.acc = s->ns_acc;
    LACT_TRY(ns.forward(u, false));
    TTT_LAUNCH_WROWS(ttt_renorm_kernel, float, DEC_THREADS, lact_aligned16(s->W), g, ns.X[5], NULL,
                     NULL, NULL, NULL, s->W, s->W, s->W, s->r0, (float *)NULL);
    LACT_CU_LAUNCH("ttt_renorm");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_ttt_decode_feed(lact_ctx *ctx, lact_ttt_dec_cuda *s, float *o,
                                                 const float *q, const float *k, const float *v,
                                                 const float *lr0, const float *lr1,
                                                 const float *lr2, const float *momentum,
                                                 int64_t T) {
    if (!s->mem) return lact_fail(LACT_E_ARG, "ttt decode: the state is not initialised");
    cudaStream_t st = lact_cuda_stream(ctx);
    int64_t N = s->n, C = s->chunk, d = s->d, fill = s->fill;
    const float *lr[3] = {lr0, lr1, lr2};
    for (int64_t t = 0; t < T;) {
        int64_t m = C - fill < T - t ? C - fill : T - t;
        /* Apply first: these tokens see only the chunks before theirs. */
        LACT_TRY(apply(ctx, s, o, q, T, t, m));
        LACT_TRY(buffer(st, s->bk, C, fill, k, T, t, m, d, N));
        LACT_TRY(buffer(st, s->bv, C, fill, v, T, t, m, d, N));
        for (int i = 0; i < 3; i++)
            LACT_TRY(buffer(st, s->bl + i * N * C, C, fill, lr[i], T, t, m, 1, N));
        if (momentum) LACT_TRY(buffer(st, s->bm, C, fill, momentum, T, t, m, 1, N));
        fill += m;
        t += m;
        if (fill == C) {
            LACT_TRY(update(ctx, s));
            fill = 0;
        }
    }
    s->fill = fill;
    return LACT_OK;
}

extern "C" lact_status lact_cuda_ttt_decode_weights(const lact_ttt_dec_cuda *s, float *w0,
                                                    float *w1, float *w2) {
    int64_t nel = s->d * s->dh;
    /* Master slots W0 | W2 | W1 -> w0, w1, w2. */
    float *out[3] = {w0, w2, w1};
    for (int j = 0; j < 3; j++)
        if (out[j])
            LACT_CU(cudaMemcpy2D(out[j], (size_t)nel * 4, s->W + j * nel, (size_t)(3 * nel) * 4,
                                 (size_t)nel * 4, (size_t)s->n, cudaMemcpyDeviceToDevice));
    LACT_CU(cudaDeviceSynchronize());
    return LACT_OK;
}
