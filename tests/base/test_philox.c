#include <math.h>

#include "core/base/philox.h"
#include "tests/support/check.h"

/* Known answers of Philox4x32-10 as published with the Random123 library. */
static void test_known_answers(void) {
    lact_u32x4 r = lact_philox4x32(0, 0, 0);
    CHECK(r.v[0] == 0x6627e8d5u && r.v[1] == 0xe169c58du);
    CHECK(r.v[2] == 0xbc57ac4cu && r.v[3] == 0x9b00dbd8u);
    uint64_t ones = 0xffffffffffffffffull;
    r = lact_philox4x32(ones, ones, ones);
    CHECK(r.v[0] == 0x408f276du && r.v[1] == 0x41c83b0eu);
    CHECK(r.v[2] == 0xa20bc7c6u && r.v[3] == 0x6d5451fdu);
    /* The digits of pi as counter and key. */
    r = lact_philox4x32(0x299f31d0a4093822ull, 0x85a308d3243f6a88ull, 0x0370734413198a2eull);
    CHECK(r.v[0] == 0xd16cfe09u && r.v[1] == 0x94fdccebu);
    CHECK(r.v[2] == 0x5001e420u && r.v[3] == 0x24126ea1u);
}

static void test_streams(void) {
    /* Element i of the uniform stream is word i % 4 of block i / 4. */
    lact_u32x4 blk = lact_philox4x32(42, 3, 5);
    CHECK(lact_philox_uniform(42, 5, 13) == lact_u32_to_unit(blk.v[1]));
    lact_rng a = lact_rng_make(42, 5), b = lact_rng_make(42, 6);
    int same = 0;
    for (int i = 0; i < 64; i++)
        same += lact_rng_u32(&a) == lact_rng_u32(&b);
    CHECK(same < 2); /* different streams are different */
    /* The extremes of the mapping must stay inside the open interval. */
    CHECK_MSG(lact_u32_to_unit(0) > 0.0f, "unit(0) = %.9g", (double)lact_u32_to_unit(0));
    CHECK_MSG(lact_u32_to_unit(0xffffffffu) < 1.0f, "unit(0xffffffff) = %.9g, not below 1",
              (double)lact_u32_to_unit(0xffffffffu));
}

static void test_distributions(void) {
    const int n = 100000;
    double sum = 0, sum2 = 0, nsum = 0, nsum2 = 0;
    int outside = 0;
    for (int i = 0; i < n; i++) {
        double u = lact_philox_uniform(1234, 7, (uint64_t)i);
        outside += !(u > 0.0 && u < 1.0);
        sum += u;
        sum2 += u * u;
        double z = lact_philox_normal(1234, 8, (uint64_t)i);
        outside += !isfinite(z);
        nsum += z;
        nsum2 += z * z;
    }
    CHECK(outside == 0);
    double mean = sum / n, var = sum2 / n - mean * mean;
    CHECK_NEAR(mean, 0.5, 0.005); /* sd of the mean ~0.0009 */
    CHECK_NEAR(var, 1.0 / 12.0, 0.002);
    double nmean = nsum / n, nvar = nsum2 / n - nmean * nmean;
    CHECK_NEAR(nmean, 0.0, 0.015); /* sd of the mean ~0.003 */
    CHECK_NEAR(nvar, 1.0, 0.02);
}

int main(void) {
    test_known_answers();
    test_streams();
    test_distributions();
    return check_summary("base_philox");
}
