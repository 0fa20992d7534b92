/* Deterministic column sums out[c] = Σ_r f(r, c) over an [R, C] index space
 * for the weight and bias gradients of the row and elementwise kernels.
 *
 * Stage one: a block of 32 × 8 threads owns a strip of 32 · V columns and a
 * slice of rows; each thread reads V columns of a row at once (16-byte
 * words) and walks its rows four at a time, so that enough loads are in
 * flight to run at the copy rate. The block adds its 8 row lanes in a fixed
 * order and writes one F32 partial row per slice to the context scratch.
 * Stage two adds the slices of each column, 32 lanes of slices per column in
 * a fixed order. The slice count depends on R and C only, so the sums are
 * the same bits from run to run and device to device.
 *
 * f is a functor with __device__ void operator()(int64_t r, int64_t c,
 * float (&v)[V]) const that fills v with the V values of row r at columns
 * c .. c + V − 1 (c a multiple of V; V divides C). */
#ifndef LACT_CUDA_COLSUM_CUH
#define LACT_CUDA_COLSUM_CUH

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vec.cuh"

#define COLSUM_LANES 8  /* row lanes of a stage-one block */
#define COLSUM_UNROLL 4 /* rows a lane reads before it adds */
#define COLSUM_BLOCKS 1024
#define COLSUM_FINAL_LANES 32

template <int V, class F>
__global__ void __launch_bounds__(32 * COLSUM_LANES)
    colsum_partial_kernel(F f, int64_t R, int64_t C, int64_t per, float *partial) {
    __shared__ float sh[COLSUM_LANES][32 * V + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t strip = (int64_t)blockIdx.x * 32 * V;
    const int64_t c = strip + (int64_t)tx * V;
    const int64_t r0 = (int64_t)blockIdx.y * per;
    const int64_t r1 = r0 + per < R ? r0 + per : R;
    float acc[V];
#pragma unroll
    for (int e = 0; e < V; e++)
        acc[e] = 0.0f;
    if (c < C) {
        int64_t r = r0 + ty;
        for (; r + (COLSUM_UNROLL - 1) * COLSUM_LANES < r1; r += COLSUM_UNROLL * COLSUM_LANES) {
            float v[COLSUM_UNROLL][V];
#pragma unroll
            for (int u = 0; u < COLSUM_UNROLL; u++)
                f(r + u * COLSUM_LANES, c, v[u]);
#pragma unroll
            for (int u = 0; u < COLSUM_UNROLL; u++)
#pragma unroll
                for (int e = 0; e < V; e++)
                    acc[e] += v[u][e];
        }
        for (; r < r1; r += COLSUM_LANES) {
            float v[V];
            f(r, c, v);
#pragma unroll
            for (int e = 0; e < V; e++)
                acc[e] += v[e];
        }
    }
#pragma unroll
    for (int e = 0; e < V; e++)
        sh[ty][tx * V + e] = acc[e];
    __syncthreads();
    for (int k = ty * 32 + tx; k < 32 * V; k += 32 * COLSUM_LANES) {
        if (strip + k >= C) break;
        float s = 0.0f;
#pragma unroll
        for (int y = 0; y < COLSUM_LANES; y++)
            s += sh[y][k];
        partial[(int64_t)blockIdx.y * C + strip + k] = s;
    }
}

template <class TO>
__global__ void __launch_bounds__(32 * COLSUM_FINAL_LANES)
    colsum_final_kernel(const float *partial, int64_t slices, int64_t C, TO *out, bool acc) {
    __shared__ float sh[COLSUM_FINAL_LANES][33];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t c = (int64_t)blockIdx.x * 32 + tx;
    float s = 0.0f;
    if (c < C) {
#pragma unroll 8
        for (int64_t k = ty; k < slices; k += COLSUM_FINAL_LANES)
            s += partial[k * C + c];
    }
    sh[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && c < C) {
        float t = 0.0f;
#pragma unroll
        for (int y = 0; y < COLSUM_FINAL_LANES; y++)
            t += sh[y][tx];
        st(out, c, acc ? ld(out, c) + t : t);
    }
}

/* Stage two for at most COLSUM_FINAL_LANES slices: a thread per column adds
 * them in order. That is the same sum, bit for bit, as colsum_final_kernel
 * gives for those counts (its lane y then holds slice y alone, and the
 * lanes are added in order), without a block of 1024 threads per 32
 * columns when the partial rows are few (a single slice: a copy). */
template <class TO>
__global__ void __launch_bounds__(256)
    colsum_final_seq_kernel(const float *partial, int64_t slices, int64_t C, TO *out, bool acc) {
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float t = 0.0f;
    for (int64_t k = 0; k < slices; k++)
        t += partial[k * C + c];
    st(out, c, acc ? ld(out, c) + t : t);
}

/* out[c] = Σ_k partial[k · C + c] over the slices, in the fixed order (with
 * acc, added to what out holds: a parameter's gradient takes it so). */
template <class TO>
static inline lact_status lact_colsum_final(cudaStream_t st, const float *partial, int64_t slices,
                                            int64_t C, TO *out, bool acc = false) {
    if (slices <= COLSUM_FINAL_LANES)
        colsum_final_seq_kernel<<<(unsigned)((C + 255) / 256), 256, 0, st>>>(partial, slices, C,
                                                                             out, acc);
    else
        colsum_final_kernel<<<(unsigned)((C + 31) / 32), dim3(32, COLSUM_FINAL_LANES), 0, st>>>(
            partial, slices, C, out, acc);
    LACT_CU_LAUNCH("colsum_final");
    return LACT_OK;
}

/* Slices of rows for stage one: about COLSUM_BLOCKS blocks, at least 32
 * rows each, as many partial rows as the scratch holds. */
static inline lact_status lact_colsum_slices(const lact_ctx *ctx, int64_t R, int64_t C,
                                             int64_t strips, int64_t *slices, int64_t *per) {
    int64_t max_slices = (int64_t)(ctx->scratch_bytes / sizeof(float)) / C;
    if (max_slices < 1)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "column sum over %lld columns needs more than the %zu-byte context "
                         "scratch",
                         (long long)C, ctx->scratch_bytes);
    int64_t s = (COLSUM_BLOCKS + strips - 1) / strips;
    if (s > (R + 31) / 32) s = (R + 31) / 32;
    if (s > max_slices) s = max_slices;
    if (s > 65535) s = 65535;
    if (s < 1) s = 1;
    int64_t p = (R + s - 1) / s;
    *per = p < 1 ? 1 : p;
    *slices = (R + *per - 1) / *per;
    if (*slices < 1) *slices = 1;
    return LACT_OK;
}

/* out[c] = Σ_r f(r, c) (out[c] += with acc), c < C, r < R (R ≥ 1); V
 * divides C. */
template <int V, class F, class TO>
lact_status lact_colsum(lact_ctx *ctx, F f, int64_t R, int64_t C, TO *out, bool acc = false) {
    if (C <= 0) return LACT_OK;
    int64_t strips = (C + 32 * V - 1) / (32 * V), slices = 1, per = R;
    LACT_TRY(lact_colsum_slices(ctx, R, C, strips, &slices, &per));
    if (strips > 0x7fffffff)
        return lact_fail(LACT_E_UNSUPPORTED, "column sum: %lld columns", (long long)C);
    float *partial = (float *)ctx->scratch;
    cudaStream_t st = lact_cuda_stream(ctx);
    colsum_partial_kernel<V>
        <<<dim3((unsigned)strips, (unsigned)slices), dim3(32, COLSUM_LANES), 0, st>>>(f, R, C, per,
                                                                                      partial);
    LACT_CU_LAUNCH("colsum_partial");
    return lact_colsum_final(st, partial, slices, C, out, acc);
}

#endif
