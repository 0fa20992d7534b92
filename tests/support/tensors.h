/* CPU F32 tensors for the tests: zeros, and normal draws from a given
 * stream. A failed allocation is a failed check. */
#ifndef LACT_TEST_TENSORS_H
#define LACT_TEST_TENSORS_H

#include <stdint.h>

#include "core/base/philox.h"
#include "core/base/tensor.h"

lact_tensor test_zeros(int ndim, const int64_t *shape, lact_dtype dt);
/* scale · N(0, 1) per element from rng. */
lact_tensor test_randn(lact_rng *rng, int ndim, const int64_t *shape, float scale);

#endif
