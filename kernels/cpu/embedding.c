/* Embedding lookup on the CPU: rows of a table gathered by id, and the
 * scatter-add of their gradients. Ids are checked here (the data is on the
 * host), so a bad id is an error rather than a stray read. */
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"

static lact_status check_ids(const char *op, const int32_t *ids, int64_t n, int64_t v) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= v)
            return lact_fail(LACT_E_ARG, "%s: ids[%lld] = %d is outside [0, %lld)", op,
                             (long long)i, (int)ids[i], (long long)v);
    return LACT_OK;
}

lact_status lact_cpu_embedding_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *table,
                                       const lact_tensor *ids) {
    int64_t n = lact_tensor_numel(ids), v = table->shape[0], c = table->shape[1];
    const int32_t *pid = ids->data;
    LACT_TRY(check_ids("embedding", pid, n, v));
    const float *pt = table->data;
    float *po = out->data;
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        memcpy(po + i * c, pt + (int64_t)pid[i] * c, (size_t)c * sizeof(float));
    return LACT_OK;
}

lact_status lact_cpu_embedding_backward(lact_ctx *ctx, lact_tensor *dtable, const lact_tensor *dout,
                                        const lact_tensor *ids, bool accumulate) {
    int64_t n = lact_tensor_numel(ids), v = dtable->shape[0], c = dtable->shape[1];
    const int32_t *pid = ids->data;
    LACT_TRY(check_ids("embedding backward", pid, n, v));
    const float *pd = dout->data;
    float *pt = dtable->data;
    if (!accumulate) memset(pt, 0, (size_t)(v * c) * sizeof(float));
        /* Parallel over channels: rows with a repeated id never race. */
#pragma omp parallel for
    for (int64_t j = 0; j < c; j++)
        for (int64_t i = 0; i < n; i++)
            pt[(int64_t)pid[i] * c + j] += pd[i * c + j];
    return LACT_OK;
}
