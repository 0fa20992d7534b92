/* The swap of the two middle dims: out[a, c, b, e] = x[a, b, c, e] for
 * x [A, B, C, E], out [A, C, B, E]. Pure data movement, so the kernels move
 * raw words of the element size (or wider vectors) and any 2- or 4-byte
 * dtype takes the same path, bit for bit.
 *  - E ≥ 8: each output row of E elements is one input row; a grid-stride
 *    copy of 16/8/4/2-byte vectors, the widest that the row length and both
 *    base addresses allow. Grid y walks the (a, c) pairs, so a thread
 *    divides once per vector, in 32 bits, to find its b.
 *  - E < 8: rows are too short to coalesce, so a block transposes a
 *    32 × 32 tile of (b, c) cells of E elements through shared memory:
 *    reads run along input rows (c, e), writes along output rows (b, e). */
#include "kernels/cuda/common.cuh"

#define PERMUTE_TILE 32
#define PERMUTE_THREADS 256
#define PERMUTE_ROW_MIN 8

/* ---- long rows: vector copy ------------------------------------------------- */

/* Block row blockIdx.y (stepping by gridDim.y) is one (a, c) pair: its B
 * output rows of R vectors are contiguous, item t = b · R + v of them, and
 * come from input row (a · B + b) · C + c. I is the index type of t: 32-bit
 * unless B · R needs more. */
template <class V, class I>
__global__ void permute_rows_kernel(V *out, const V *x, int64_t A, int64_t B, int64_t C, I R) {
    const I n = (I)B * R, stride = (I)gridDim.x * blockDim.x;
    for (int64_t ac = blockIdx.y; ac < A * C; ac += gridDim.y) {
        const int64_t a = ac / C, c = ac - a * C;
        V *dst = out + ac * (int64_t)n;
        const V *src = x + (a * B * C + c) * (int64_t)R;
        const int64_t in_pitch = C * (int64_t)R; /* input vectors from b to b + 1 */
        for (I t = (I)blockIdx.x * blockDim.x + threadIdx.x; t < n; t += stride) {
            const I b = t / R, v = t - b * R;
            dst[t] = src[(int64_t)b * in_pitch + v];
        }
    }
}

template <class V>
static lact_status permute_rows(lact_ctx *ctx, void *out, const void *x, int64_t A, int64_t B,
                                int64_t C, int64_t row_bytes) {
    int64_t R = row_bytes / (int64_t)sizeof(V), n = B * R, ac = A * C;
    unsigned gx = lact_grid_1d(n, PERMUTE_THREADS);
    int64_t gy = ac < 65535 ? ac : 65535;
    /* About 64k blocks in all: fewer per (a, c) when there are many pairs. */
    while (gx > 1 && (int64_t)gx * gy > 65536)
        gx = (gx + 1) / 2;
    dim3 grid(gx, (unsigned)gy);
    cudaStream_t st = lact_cuda_stream(ctx);
    if (n + (int64_t)gx * PERMUTE_THREADS < 0xffffffffll)
        permute_rows_kernel<V, uint32_t>
            <<<grid, PERMUTE_THREADS, 0, st>>>((V *)out, (const V *)x, A, B, C, (uint32_t)R);
    else
        permute_rows_kernel<V, int64_t>
            <<<grid, PERMUTE_THREADS, 0, st>>>((V *)out, (const V *)x, A, B, C, R);
    LACT_CU_LAUNCH("permute_rows");
    return LACT_OK;
}

/* The widest vector (16, 8, 4 or 2 bytes) that divides the row and both
 * base addresses. */
static int permute_vector_bytes(const void *out, const void *x, int64_t row_bytes) {
    uintptr_t align = (uintptr_t)out | (uintptr_t)x | (uintptr_t)row_bytes;
    for (int w = 16; w > 2; w /= 2)
        if (align % (uintptr_t)w == 0) return w;
    return 2;
}

/* ---- short rows: tiled transpose -------------------------------------------- */

/* Block (blockIdx.x, y, z) = c tile, b tile, a (grid-stride over the last
 * two). Tile row bl holds cells (b0 + bl, c0 .. c0 + 31), E words each, plus
 * one pad word so the column-wise reads of the write phase spread over the
 * banks. */
template <class W>
__global__ void permute_tiled_kernel(W *out, const W *x, int64_t A, int64_t B, int64_t C, int E) {
    extern __shared__ __align__(16) unsigned char permute_smem[];
    W *tile = reinterpret_cast<W *>(permute_smem);
    const int pitch = PERMUTE_TILE * E + 1;
    const int64_t c0 = (int64_t)blockIdx.x * PERMUTE_TILE;
    const int nc = (int)(C - c0 < PERMUTE_TILE ? C - c0 : PERMUTE_TILE);
    const int span_in = nc * E; /* words of one input row inside the tile */
    const int64_t in_pitch = C * E, out_pitch = B * E;
    for (int64_t b0 = (int64_t)blockIdx.y * PERMUTE_TILE; b0 < B;
         b0 += (int64_t)gridDim.y * PERMUTE_TILE) {
        const int nb = (int)(B - b0 < PERMUTE_TILE ? B - b0 : PERMUTE_TILE);
        const int span_out = nb * E; /* words of one output row inside the tile */
        for (int64_t a = blockIdx.z; a < A; a += gridDim.z) {
            const W *src = x + ((a * B + b0) * C + c0) * E;
            for (int k = threadIdx.x; k < nb * span_in; k += blockDim.x) {
                int bl = k / span_in, j = k - bl * span_in;
                tile[bl * pitch + j] = src[bl * in_pitch + j];
            }
            __syncthreads();
            W *dst = out + ((a * C + c0) * B + b0) * E;
            for (int k = threadIdx.x; k < nc * span_out; k += blockDim.x) {
                int cl = k / span_out, j = k - cl * span_out;
                int bl = j / E, e = j - bl * E;
                dst[cl * out_pitch + j] = tile[bl * pitch + cl * E + e];
            }
            __syncthreads();
        }
    }
}

template <class W>
static lact_status permute_tiled(lact_ctx *ctx, void *out, const void *x, int64_t A, int64_t B,
                                 int64_t C, int E) {
    int64_t tiles_c = (C + PERMUTE_TILE - 1) / PERMUTE_TILE;
    int64_t tiles_b = (B + PERMUTE_TILE - 1) / PERMUTE_TILE;
    if (tiles_c > 0x7fffffff)
        return lact_fail(LACT_E_UNSUPPORTED, "permute: dim 2 of x (%lld) is too large",
                         (long long)C);
    dim3 grid((unsigned)tiles_c, (unsigned)(tiles_b < 65535 ? tiles_b : 65535),
              (unsigned)(A < 65535 ? A : 65535));
    size_t smem = (size_t)PERMUTE_TILE * (size_t)(PERMUTE_TILE * E + 1) * sizeof(W);
    permute_tiled_kernel<W><<<grid, PERMUTE_THREADS, smem, lact_cuda_stream(ctx)>>>(
        (W *)out, (const W *)x, A, B, C, E);
    LACT_CU_LAUNCH("permute_tiled");
    return LACT_OK;
}

/* ---- launcher ---------------------------------------------------------------- */

extern "C" lact_status lact_cuda_permute_forward(lact_ctx *ctx, lact_tensor *out,
                                                 const lact_tensor *x) {
    int64_t A = x->shape[0], B = x->shape[1], C = x->shape[2], E = x->shape[3];
    if (lact_tensor_numel(x) == 0) return LACT_OK;
    size_t es = lact_dtype_size(x->dtype);
    if (es != 2 && es != 4)
        return lact_fail(LACT_E_UNSUPPORTED, "permute: dtype %s has no CUDA kernel",
                         lact_dtype_name(x->dtype));
    /* With B or C equal to 1 the swap moves nothing. */
    if (B == 1 || C == 1) {
        LACT_CU(cudaMemcpyAsync(out->data, x->data, lact_tensor_nbytes(x), cudaMemcpyDeviceToDevice,
                                lact_cuda_stream(ctx)));
        return LACT_OK;
    }
    if (E >= PERMUTE_ROW_MIN) {
        int64_t row_bytes = E * (int64_t)es;
        switch (permute_vector_bytes(out->data, x->data, row_bytes)) {
        case 16:
            return permute_rows<uint4>(ctx, out->data, x->data, A, B, C, row_bytes);
        case 8:
            return permute_rows<uint2>(ctx, out->data, x->data, A, B, C, row_bytes);
        case 4:
            return permute_rows<uint32_t>(ctx, out->data, x->data, A, B, C, row_bytes);
        default:
            return permute_rows<uint16_t>(ctx, out->data, x->data, A, B, C, row_bytes);
        }
    }
    if (es == 4) return permute_tiled<uint32_t>(ctx, out->data, x->data, A, B, C, (int)E);
    return permute_tiled<uint16_t>(ctx, out->data, x->data, A, B, C, (int)E);
}
