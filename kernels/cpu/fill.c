/* Random fills on the CPU from the counter-based Philox streams, so the
 * same (seed, stream) gives the same tensor on every device. */
#include "core/base/philox.h"
#include "kernels/cpu/cpu_kernels.h"

static void store(lact_tensor *x, int64_t i, float v) {
    if (x->dtype == LACT_BF16)
        ((uint16_t *)x->data)[i] = lact_f32_to_bf16(v);
    else
        ((float *)x->data)[i] = v;
}

lact_status lact_cpu_fill_uniform(lact_ctx *ctx, lact_tensor *x, uint64_t seed, uint64_t stream,
                                  float lo, float hi) {
    int64_t n = lact_tensor_numel(x);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        store(x, i, lo + (hi - lo) * lact_philox_uniform(seed, stream, (uint64_t)i));
    return LACT_OK;
}

lact_status lact_cpu_fill_normal(lact_ctx *ctx, lact_tensor *x, uint64_t seed, uint64_t stream,
                                 float mean, float std) {
    int64_t n = lact_tensor_numel(x);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        store(x, i, mean + std * lact_philox_normal(seed, stream, (uint64_t)i));
    return LACT_OK;
}
