#include "tests/support/tensors.h"

#include <string.h>

#include "tests/support/check.h"

lact_tensor test_zeros(int ndim, const int64_t *shape, lact_dtype dt) {
    lact_tensor t;
    memset(&t, 0, sizeof t);
    CHECK_OK(lact_tensor_alloc(&t, dt, LACT_CPU, ndim, shape));
    return t;
}

lact_tensor test_randn(lact_rng *rng, int ndim, const int64_t *shape, float scale) {
    lact_tensor t = test_zeros(ndim, shape, LACT_F32);
    float *p = t.data;
    for (int64_t i = 0; t.data && i < lact_tensor_numel(&t); i++)
        p[i] = scale * lact_rng_normal(rng);
    return t;
}
