/* Embedding lookup and its scatter-add gradient. The gradient adds rows with
 * fp32 atomics: rows sharing an id are summed in an unspecified order, so the
 * last bits of dtable may differ between runs (a sort by id would make it
 * deterministic at the cost of a sort per step). */
#include "kernels/cuda/common.cuh"

/* Out-of-range ids are clamped (an assertion here would kill the context);
 * the CPU path reports them as errors. */
__device__ __forceinline__ int64_t clamp_id(int32_t id, int64_t V) {
    return id < 0 ? 0 : (id >= V ? V - 1 : id);
}

template <class T, class TT>
__global__ void embedding_kernel(T *out, const TT *table, const int32_t *ids, int64_t N,
                                 int64_t C, int64_t V) {
    int64_t n = N * C;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / C, c = i % C;
        st(out, i, ld(table, clamp_id(ids[r], V) * C + c));
    }
}

template <class T>
__global__ void embedding_backward_kernel(float *dtable, const T *dout, const int32_t *ids,
                                          int64_t N, int64_t C, int64_t V) {
    int64_t n = N * C;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / C, c = i % C;
        atomicAdd(dtable + clamp_id(ids[r], V) * C + c, ld(dout, i));
    }
}

extern "C" lact_status lact_cuda_embedding_forward(lact_ctx *ctx, lact_tensor *out,
                                                   const lact_tensor *table,
                                                   const lact_tensor *ids) {
    int64_t N = lact_tensor_numel(ids), V = table->shape[0], C = lact_tensor_cols(table);
    if (!N || !C) return LACT_OK;
    if (!V) return lact_fail(LACT_E_ARG, "embedding: empty table");
    unsigned grid = lact_grid_1d(N * C, 256);
    cudaStream_t st = lact_cuda_stream(ctx);
    const int32_t *ip = (const int32_t *)ids->data;
    LACT_DISPATCH_FLOAT(out->dtype, "embedding", {
        if (table->dtype == LACT_F32)
            embedding_kernel<T, float><<<grid, 256, 0, st>>>((T *)out->data,
                                                             (const float *)table->data, ip, N,
                                                             C, V);
        else
            embedding_kernel<T, T><<<grid, 256, 0, st>>>((T *)out->data, (const T *)table->data,
                                                         ip, N, C, V);
    });
    LACT_CU_LAUNCH("embedding");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_embedding_backward(lact_ctx *ctx, lact_tensor *dtable,
                                                    const lact_tensor *dout, const lact_tensor *ids,
                                                    bool accumulate) {
    if (!dtable) return LACT_OK;
    cudaStream_t st = lact_cuda_stream(ctx);
    if (!accumulate) LACT_CU(cudaMemsetAsync(dtable->data, 0, lact_tensor_nbytes(dtable), st));
    int64_t N = lact_tensor_numel(ids), V = dtable->shape[0], C = lact_tensor_cols(dtable);
    if (!N || !C || !V) return LACT_OK;
    LACT_DISPATCH_FLOAT(dout->dtype, "embedding backward", {
        embedding_backward_kernel<T><<<lact_grid_1d(N * C, 256), 256, 0, st>>>(
            (float *)dtable->data, (const T *)dout->data, (const int32_t *)ids->data, N, C, V);
    });
    LACT_CU_LAUNCH("embedding_backward");
    return LACT_OK;
}
