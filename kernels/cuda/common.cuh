/* Shared pieces of the CUDA kernels: the one check macro for CUDA and cuBLAS
 * calls, fp32 load/store of the activation types, block reductions, the
 * deterministic column reduction used by every weight gradient, and the
 * per-context cached buffers for kernels that need more than the scratch. */
#ifndef LACT_CUDA_COMMON_CUH
#define LACT_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "kernels/cuda/cuda_kernels.h"

/* ---- errors --------------------------------------------------------------- */

lact_status lact_cuda_status(cudaError_t e, const char *stmt, const char *file, int line);
lact_status lact_cuda_status(cublasStatus_t e, const char *stmt, const char *file, int line);

/* Runs a CUDA runtime or cuBLAS(Lt) call; on failure records
 * "stmt failed at file:line: error" and returns LACT_E_CUDA. */
#define LACT_CU(call)                                                                     \
    do {                                                                                  \
        lact_status lact_cu_s_ = lact_cuda_status((call), #call, __FILE__, __LINE__);     \
        if (lact_cu_s_ != LACT_OK) return lact_cu_s_;                                     \
    } while (0)

/* After a kernel launch: configuration errors surface here. */
#define LACT_CU_LAUNCH(name) LACT_CU(cudaPeekAtLastError())

static inline cudaStream_t lact_cuda_stream(const lact_ctx *ctx) {
    return (cudaStream_t)ctx->stream;
}

/* ---- element types -------------------------------------------------------- */

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ld(const bf16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ld(const __half *p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void st(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void st(bf16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void st(__half *p, int64_t i, float v) { p[i] = __float2half_rn(v); }

/* Calls f.template operator()<T>() with T the C++ type of dt (F32, BF16,
 * F16), or fails for other dtypes. */
#define LACT_DISPATCH_FLOAT(dt, what, ...)                                                \
    do {                                                                                  \
        switch (dt) {                                                                     \
        case LACT_F32: { typedef float T; __VA_ARGS__; } break;                          \
        case LACT_BF16: { typedef bf16 T; __VA_ARGS__; } break;                          \
        case LACT_F16: { typedef __half T; __VA_ARGS__; } break;                         \
        default:                                                                          \
            return lact_fail(LACT_E_UNSUPPORTED, "%s: dtype %s has no CUDA kernel", what, \
                             lact_dtype_name(dt));                                        \
        }                                                                                 \
    } while (0)

/* ---- reductions ----------------------------------------------------------- */

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the result. sh: 32 floats of shared memory, reused after a
 * barrier so consecutive calls are safe. */
__device__ __forceinline__ float block_sum(float v, float *sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return warp_sum(v);
}
__device__ __forceinline__ float block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return warp_max(v);
}

/* Threads per block for one-block-per-row kernels over rows of n elements. */
static inline int lact_row_threads(int64_t n) {
    int t = 32;
    while (t < 1024 && t < n) t *= 2;
    return t;
}

/* Grid size for grid-stride elementwise kernels. */
static inline unsigned lact_grid_1d(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b > 65536) b = 65536;
    return (unsigned)(b < 1 ? 1 : b);
}

/* out[c] = Σ_r f(r, c) over an [R, C] index space, in two deterministic
 * stages: blocks of 32 columns × a slice of rows write partial sums to the
 * context scratch, then one pass adds the slices in a fixed order. */
#define LACT_COLRED_ROWS 8

template <class F>
__global__ void col_reduce_partial_kernel(F f, int64_t R, int64_t C, int64_t rows_per_slice,
                                          float *partial) {
    __shared__ float sh[LACT_COLRED_ROWS][33];
    int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
    int64_t r0 = (int64_t)blockIdx.y * rows_per_slice;
    int64_t r1 = r0 + rows_per_slice < R ? r0 + rows_per_slice : R;
    float acc = 0.0f;
    if (c < C)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += LACT_COLRED_ROWS) acc += f(r, c);
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float s = 0.0f;
        for (int y = 0; y < LACT_COLRED_ROWS; y++) s += sh[y][threadIdx.x];
        partial[(int64_t)blockIdx.y * C + c] = s;
    }
}

template <class TO>
__global__ void col_reduce_final_kernel(const float *partial, int64_t slices, int64_t C,
                                        TO *out) {
    for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < C;
         c += (int64_t)gridDim.x * blockDim.x) {
        float s = 0.0f;
        for (int64_t k = 0; k < slices; k++) s += partial[k * C + c];
        st(out, c, s);
    }
}

template <class F, class TO>
lact_status lact_col_reduce(lact_ctx *ctx, F f, int64_t R, int64_t C, TO *out) {
    if (C <= 0) return LACT_OK;
    int64_t max_slices = (int64_t)(ctx->scratch_bytes / sizeof(float)) / C;
    if (max_slices < 1)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "column reduction over %lld columns needs more than the %zu-byte "
                         "context scratch",
                         (long long)C, ctx->scratch_bytes);
    int64_t col_blocks = (C + 31) / 32;
    /* Enough blocks to fill the GPU, at least 32 rows each. */
    int64_t slices = (2048 + col_blocks - 1) / col_blocks;
    if (slices > (R + 31) / 32) slices = (R + 31) / 32;
    if (slices > max_slices) slices = max_slices;
    if (slices > 65535) slices = 65535;
    if (slices < 1) slices = 1;
    int64_t per = (R + slices - 1) / slices;
    if (per < 1) per = 1;
    slices = (R + per - 1) / per;
    if (slices < 1) slices = 1;
    float *partial = (float *)ctx->scratch;
    dim3 grid((unsigned)col_blocks, (unsigned)slices), block(32, LACT_COLRED_ROWS);
    col_reduce_partial_kernel<<<grid, block, 0, lact_cuda_stream(ctx)>>>(f, R, C, per, partial);
    LACT_CU_LAUNCH("col_reduce_partial");
    col_reduce_final_kernel<<<lact_grid_1d(C, 256), 256, 0, lact_cuda_stream(ctx)>>>(
        partial, slices, C, out);
    LACT_CU_LAUNCH("col_reduce_final");
    return LACT_OK;
}

/* ---- cached device buffers ------------------------------------------------- */

/* A device buffer of at least bytes for (ctx->stream, slot), kept across
 * calls and grown (after a stream sync) when too small. Work queued on the
 * same stream orders every use, so one buffer per slot and stream is safe. */
enum {
    LACT_BUF_XENT = 0,
    LACT_BUF_MUON,
    LACT_BUF_MUON_IO,
    LACT_BUF_NORM,
    LACT_BUF_ATTN_DSUM,
    LACT_BUF_ATTN_DOUT,
    LACT_BUF_ATTN_DQ_ACC,
    LACT_BUF_TTT,
    LACT_BUF_MESA,
    LACT_BUF_ATTN_DECODE,
    LACT_BUF_ATTN_SCHED,
    LACT_BUF_COUNT
};
lact_status lact_cuda_buffer(lact_ctx *ctx, int slot, size_t bytes, void **out);

/* A second stream beside ctx's, for work that may run next to it: side is
 * ctx with that stream and a cuBLASLt workspace of its own (two products
 * at once must not share one), events[0 .. LACT_SIDE_EVENTS) are for
 * handing work between the two. Made on first use and kept, as the
 * buffers are. */
#define LACT_SIDE_EVENTS 8
lact_status lact_cuda_side(lact_ctx *ctx, lact_ctx *side, cudaEvent_t **events);

/* ---- matrix products (matmul.cu) ------------------------------------------- */

/* Row-major batched product c[i] = alpha op(a[i]) op(b[i]) + beta c[i],
 * i < batch, with element strides between batch items (0 broadcasts). With
 * addend set, beta·addend[i] (same layout as c) replaces beta·c[i]. lda,
 * ldb, ldc are the row pitches of a, b, c as stored (before op), 0 where
 * the rows are packed: a band of columns of a wider matrix is an operand. */
typedef struct lact_gemm_desc {
    const void *a, *b;
    void *c;
    lact_dtype ab_dtype, c_dtype;
    bool ta, tb;
    int64_t M, N, K, batch;
    int64_t stride_a, stride_b, stride_c;
    float alpha, beta;
    const void *addend;    /* NULL: c itself */
    int64_t lda, ldb, ldc; /* row pitches, 0: packed */
} lact_gemm_desc;

lact_status lact_cuda_gemm(lact_ctx *ctx, const lact_gemm_desc *g);

/* The descriptor from its fields, in the order the struct declares them. */
static inline lact_gemm_desc lact_gemm_desc_make(const void *a, const void *b, void *c,
                                                 lact_dtype ab, lact_dtype cd, bool ta, bool tb,
                                                 int64_t M, int64_t N, int64_t K, int64_t batch,
                                                 int64_t sa, int64_t sb, int64_t sc, float alpha,
                                                 float beta) {
    lact_gemm_desc g;
    g.a = a;
    g.b = b;
    g.c = c;
    g.addend = NULL;
    g.lda = g.ldb = g.ldc = 0;
    g.ab_dtype = ab;
    g.c_dtype = cd;
    g.ta = ta;
    g.tb = tb;
    g.M = M;
    g.N = N;
    g.K = K;
    g.batch = batch;
    g.stride_a = sa;
    g.stride_b = sb;
    g.stride_c = sc;
    g.alpha = alpha;
    g.beta = beta;
    return g;
}

/* ---- small shared launchers ------------------------------------------------ */

/* out[0] = ‖x‖₂ (F32 device scalar), deterministic two-stage (reduce.cu). */
lact_status lact_cuda_norm_into(lact_ctx *ctx, float *out, const void *x, lact_dtype dt,
                                int64_t n);

#endif
