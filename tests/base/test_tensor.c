#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/device.h"
#include "core/base/philox.h"
#include "core/base/tensor.h"
#include "tests/support/check.h"

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static void test_dtypes(void) {
    static const lact_dtype all[] = {LACT_F32, LACT_BF16, LACT_F16, LACT_I32,
                                     LACT_U8,  LACT_F64,  LACT_I64};
    static const size_t sizes[] = {4, 2, 2, 4, 1, 8, 8};
    for (int i = 0; i < LACT_DTYPE_COUNT; i++) {
        lact_dtype back;
        CHECK(lact_dtype_size(all[i]) == sizes[i]);
        CHECK_OK(lact_dtype_parse(lact_dtype_name(all[i]), &back));
        CHECK(back == all[i]);
    }
    lact_dtype dt;
    CHECK_FAILS(lact_dtype_parse("F8_E4M3", &dt), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "F8_E4M3") != NULL);
    CHECK(lact_dtype_is_float(LACT_BF16) && lact_dtype_is_float(LACT_F64));
    CHECK(!lact_dtype_is_float(LACT_I32) && !lact_dtype_is_float(LACT_U8));
}

static void test_shapes(void) {
    int64_t shape[3] = {2, 3, 4};
    lact_tensor t;
    size_t before = lact_mem_in_use(LACT_CPU);
    CHECK_OK(lact_tensor_alloc(&t, LACT_F32, LACT_CPU, 3, shape));
    CHECK(lact_mem_in_use(LACT_CPU) == before + 96);
    CHECK(lact_mem_peak(LACT_CPU) >= before + 96);
    CHECK(t.stride[0] == 12 && t.stride[1] == 4 && t.stride[2] == 1);
    CHECK(lact_tensor_numel(&t) == 24 && lact_tensor_nbytes(&t) == 96);
    CHECK(lact_tensor_rows(&t) == 6 && lact_tensor_cols(&t) == 4);
    CHECK(lact_tensor_is_contiguous(&t));
    CHECK(t.owned != NULL && ((uintptr_t)t.data % 256) == 0);
    int nonzero = 0;
    for (int i = 0; i < 24; i++)
        nonzero += ((float *)t.data)[i] != 0.0f;
    CHECK(nonzero == 0);

    char buf[64];
    lact_tensor b = lact_tensor_view(t.data, LACT_BF16, LACT_CPU, 3, shape);
    CHECK(strcmp(lact_tensor_describe(&b, buf, sizeof buf), "[2, 3, 4] bf16 cpu") == 0);
    CHECK(b.owned == NULL);

    int64_t flat[2] = {6, 4}, bad[2] = {5, 5};
    lact_tensor r;
    CHECK_OK(lact_tensor_reshape(&t, 2, flat, &r));
    CHECK(r.data == t.data && r.stride[0] == 4 && r.owned == NULL);
    CHECK(lact_tensor_same_shape(&r, &r) && !lact_tensor_same_shape(&r, &t));
    CHECK_FAILS(lact_tensor_reshape(&t, 2, bad, &r), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "[2, 3, 4]") != NULL && strstr(lact_errmsg(), "[5, 5]") != NULL);

    lact_tensor tr = t; /* a transposed view of the last two dims */
    tr.shape[1] = 4;
    tr.shape[2] = 3;
    tr.stride[1] = 1;
    tr.stride[2] = 4;
    CHECK(!lact_tensor_is_contiguous(&tr));
    CHECK_FAILS(lact_tensor_reshape(&tr, 2, flat, &r), LACT_E_ARG);

    lact_tensor scalar = lact_tensor_view(t.data, LACT_F32, LACT_CPU, 0, NULL);
    CHECK(lact_tensor_numel(&scalar) == 1 && lact_tensor_rows(&scalar) == 1 &&
          lact_tensor_cols(&scalar) == 1 && lact_tensor_is_contiguous(&scalar));

    int64_t big[6] = {1, 1, 1, 1, 1, 1};
    lact_tensor u;
    CHECK_FAILS(lact_tensor_alloc(&u, LACT_F32, LACT_CPU, 6, big), LACT_E_ARG);
    int64_t neg[1] = {-1};
    CHECK_FAILS(lact_tensor_alloc(&u, LACT_F32, LACT_CPU, 1, neg), LACT_E_ARG);

    lact_tensor_free(&t);
    CHECK(t.data == NULL && lact_mem_in_use(LACT_CPU) == before);
    lact_tensor_free(&t); /* safe twice */
    lact_tensor zero;
    memset(&zero, 0, sizeof zero);
    lact_tensor_free(&zero);
}

static void test_bf16(void) {
    CHECK(lact_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(lact_f32_to_bf16(-2.0f) == 0xc000);
    /* Exactly halfway: ties go to the even neighbour. */
    CHECK(lact_f32_to_bf16(from_bits(0x3f808000u)) == 0x3f80);
    CHECK(lact_f32_to_bf16(from_bits(0x3f818000u)) == 0x3f82);
    CHECK(lact_f32_to_bf16(from_bits(0x3f808001u)) == 0x3f81);
    CHECK(lact_f32_to_bf16(from_bits(0x3f807fffu)) == 0x3f80);
    CHECK(lact_f32_to_bf16(INFINITY) == 0x7f80 && lact_f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(lact_f32_to_bf16(from_bits(0x7f7fffffu)) == 0x7f80); /* FLT_MAX rounds to inf */
    CHECK(isnan(lact_bf16_to_f32(lact_f32_to_bf16(NAN))));
    /* A NaN whose payload sits only in the dropped bits must stay a NaN. */
    CHECK(isnan(lact_bf16_to_f32(lact_f32_to_bf16(from_bits(0x7f800001u)))));
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lact_bf16_to_f32((uint16_t)h);
        if (isnan(f))
            bad += !isnan(lact_bf16_to_f32(lact_f32_to_bf16(f)));
        else
            bad += lact_f32_to_bf16(f) != h;
    }
    CHECK_MSG(bad == 0, "%d bf16 values do not round-trip", bad);
    /* Random floats land on the nearest bf16 (ties to even). */
    lact_rng rng = lact_rng_make(7, 0);
    int wrong = 0;
    for (int i = 0; i < 100000; i++) {
        uint32_t u = lact_rng_u32(&rng);
        if (((u >> 23) & 0xffu) >= 0xfeu) continue; /* keep clear of inf and NaN */
        float x = from_bits(u);
        uint16_t h = lact_f32_to_bf16(x);
        double err = fabs((double)lact_bf16_to_f32(h) - x);
        double lo = fabs((double)lact_bf16_to_f32((uint16_t)(h - 1)) - x);
        double hi = fabs((double)lact_bf16_to_f32((uint16_t)(h + 1)) - x);
        if (err > lo || err > hi || ((err == lo || err == hi) && (h & 1))) wrong++;
    }
    CHECK_MSG(wrong == 0, "%d floats not rounded to the nearest bf16", wrong);
}

static void test_f16(void) {
    CHECK(lact_f32_to_f16(1.0f) == 0x3c00 && lact_f32_to_f16(-1.0f) == 0xbc00);
    CHECK(lact_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(lact_f32_to_f16(65519.0f) == 0x7bff);
    CHECK(lact_f32_to_f16(65520.0f) == 0x7c00); /* the tie rounds up to inf */
    CHECK(lact_f32_to_f16(1e6f) == 0x7c00 && lact_f32_to_f16(-INFINITY) == 0xfc00);
    CHECK(lact_f32_to_f16(ldexpf(1, -14)) == 0x0400); /* smallest normal */
    CHECK(lact_f32_to_f16(ldexpf(1, -24)) == 0x0001); /* smallest subnormal */
    CHECK(lact_f32_to_f16(ldexpf(1, -25)) == 0x0000); /* tie to even: zero */
    CHECK(lact_f32_to_f16(ldexpf(3, -26)) == 0x0001); /* 0.75 ulp rounds up */
    CHECK(lact_f32_to_f16(ldexpf(3, -25)) == 0x0002); /* 1.5 ulp tie to even */
    CHECK(lact_f32_to_f16(ldexpf(1023, -24)) == 0x03ff);
    CHECK(lact_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00);
    CHECK(lact_f32_to_f16(1.0f + ldexpf(3, -11)) == 0x3c02);
    CHECK(lact_f32_to_f16(-0.0f) == 0x8000);
    CHECK(lact_f16_to_f32(0x0001) == ldexpf(1, -24));
    CHECK(lact_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(isinf(lact_f16_to_f32(0x7c00)) && isnan(lact_f16_to_f32(0x7e00)));
    CHECK(isnan(lact_f16_to_f32(lact_f32_to_f16(NAN))));
    CHECK(isnan(lact_f16_to_f32(lact_f32_to_f16(from_bits(0x7f800001u)))));
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lact_f16_to_f32((uint16_t)h);
        if (isnan(f))
            bad += !isnan(lact_f16_to_f32(lact_f32_to_f16(f)));
        else
            bad += lact_f32_to_f16(f) != h;
    }
    CHECK_MSG(bad == 0, "%d f16 values do not round-trip", bad);
    lact_rng rng = lact_rng_make(11, 0);
    int wrong = 0;
    for (int i = 0; i < 100000; i++) {
        /* Magnitudes from 2^-30 to 2^17: subnormals, normals and overflow. */
        float x = ldexpf(lact_rng_uniform(&rng) + 0.5f, (int)(lact_rng_u32(&rng) % 47) - 30);
        if (lact_rng_u32(&rng) & 1) x = -x;
        uint16_t h = lact_f32_to_f16(x);
        double v = lact_f16_to_f32(h);
        if (isinf(v)) {
            wrong += fabs((double)x) < 65520.0;
            continue;
        }
        double err = fabs(v - x);
        uint16_t mag = h & 0x7fff;
        double lo = mag ? fabs((double)lact_f16_to_f32((uint16_t)(h - 1)) - x) : INFINITY;
        double hi = fabs((double)lact_f16_to_f32((uint16_t)(h + 1)) - x);
        if (err > lo || err > hi || ((err == lo || err == hi) && (h & 1))) wrong++;
    }
    CHECK_MSG(wrong == 0, "%d floats not rounded to the nearest f16", wrong);
}

static void test_copy(void) {
    int64_t shape[2] = {3, 5};
    lact_tensor a, b, c, d;
    CHECK_OK(lact_tensor_alloc(&a, LACT_F32, LACT_CPU, 2, shape));
    float *av = a.data;
    for (int i = 0; i < 15; i++)
        av[i] = (float)i * 0.37f - 2.0f;
    CHECK_OK(lact_tensor_clone(&b, &a, LACT_BF16, LACT_CPU));
    CHECK_OK(lact_tensor_clone(&c, &b, LACT_F64, LACT_CPU));
    CHECK_OK(lact_tensor_clone(&d, &a, LACT_F16, LACT_CPU));
    int bad = 0;
    for (int i = 0; i < 15; i++) {
        bad += ((uint16_t *)b.data)[i] != lact_f32_to_bf16(av[i]);
        bad += ((double *)c.data)[i] != (double)lact_bf16_to_f32(lact_f32_to_bf16(av[i]));
        bad += ((uint16_t *)d.data)[i] != lact_f32_to_f16(av[i]);
    }
    CHECK(bad == 0);
    lact_tensor back;
    CHECK_OK(lact_tensor_clone(&back, &c, LACT_F32, LACT_CPU));
    CHECK_NEAR(((float *)back.data)[7], av[7], 0.01);
    lact_tensor_free(&back);

    lact_tensor i32, i64, u8;
    CHECK_OK(lact_tensor_alloc(&i32, LACT_I32, LACT_CPU, 2, shape));
    for (int i = 0; i < 15; i++)
        ((int32_t *)i32.data)[i] = i * 100 - 700;
    CHECK_OK(lact_tensor_clone(&i64, &i32, LACT_I64, LACT_CPU));
    CHECK_OK(lact_tensor_clone(&u8, &i64, LACT_U8, LACT_CPU));
    CHECK(((int64_t *)i64.data)[0] == -700 && ((int64_t *)i64.data)[14] == 700);
    CHECK(((uint8_t *)u8.data)[10] == (uint8_t)300);
    CHECK_FAILS(lact_tensor_copy(&i32, &a), LACT_E_ARG); /* float into int */
    lact_tensor small;
    int64_t other[2] = {5, 3};
    CHECK_OK(lact_tensor_alloc(&small, LACT_F32, LACT_CPU, 2, other));
    CHECK_FAILS(lact_tensor_copy(&small, &a), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "[5, 3]") != NULL);

    if (!lact_cuda_available()) {
        lact_tensor g;
        lact_clear_error();
        CHECK(lact_tensor_alloc(&g, LACT_F32, LACT_CUDA, 2, shape) != LACT_OK);
        CHECK(lact_errmsg()[0] != '\0' && g.data == NULL);
    } else {
        lact_tensor g, h;
        CHECK_OK(lact_tensor_clone(&g, &a, LACT_BF16, LACT_CUDA));
        CHECK_OK(lact_tensor_clone(&h, &g, LACT_F32, LACT_CPU));
        CHECK(((float *)h.data)[4] == lact_bf16_to_f32(lact_f32_to_bf16(av[4])));
        lact_tensor_free(&g);
        lact_tensor_free(&h);
    }
    lact_tensor *all[] = {&a, &b, &c, &d, &i32, &i64, &u8, &small};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        lact_tensor_free(all[i]);
}

int main(void) {
    test_dtypes();
    test_shapes();
    test_bf16();
    test_f16();
    test_copy();
    return check_summary("base_tensor");
}
