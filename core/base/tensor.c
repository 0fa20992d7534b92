#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"

static const struct {
    const char *name;
    size_t size;
    bool is_float;
} dtype_info[] = {
    [LACT_F32] = {"F32", 4, true},  [LACT_BF16] = {"BF16", 2, true}, [LACT_F16] = {"F16", 2, true},
    [LACT_I32] = {"I32", 4, false}, [LACT_U8] = {"U8", 1, false},    [LACT_F64] = {"F64", 8, true},
    [LACT_I64] = {"I64", 8, false},
};
_Static_assert(sizeof dtype_info / sizeof dtype_info[0] == LACT_DTYPE_COUNT, "one entry per dtype");

static bool dtype_valid(lact_dtype dt) {
    return (int)dt >= 0 && dt < LACT_DTYPE_COUNT;
}

size_t lact_dtype_size(lact_dtype dt) {
    return dtype_valid(dt) ? dtype_info[dt].size : 0;
}

const char *lact_dtype_name(lact_dtype dt) {
    return dtype_valid(dt) ? dtype_info[dt].name : "?";
}

lact_status lact_dtype_parse(const char *name, lact_dtype *out) {
    for (int i = 0; i < LACT_DTYPE_COUNT; i++) {
        if (name && strcmp(name, dtype_info[i].name) == 0) {
            *out = (lact_dtype)i;
            return LACT_OK;
        }
    }
    return lact_fail(LACT_E_ARG,
                     "unknown dtype '%s' (expected F32, BF16, F16, I32, U8, F64 or I64)",
                     name ? name : "(null)");
}

bool lact_dtype_is_float(lact_dtype dt) {
    return dtype_valid(dt) && dtype_info[dt].is_float;
}

const char *lact_device_name(lact_device dev) {
    return dev == LACT_CUDA ? "cuda" : "cpu";
}

static void set_contiguous_strides(lact_tensor *t) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        t->stride[d] = s;
        s *= t->shape[d];
    }
}

lact_tensor lact_tensor_view(void *data, lact_dtype dt, lact_device dev, int ndim,
                             const int64_t *shape) {
    lact_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dt;
    t.device = dev;
    if (ndim < 0) ndim = 0;
    if (ndim > LACT_MAX_DIMS) ndim = LACT_MAX_DIMS;
    t.ndim = ndim;
    for (int d = 0; d < ndim; d++)
        t.shape[d] = shape[d];
    set_contiguous_strides(&t);
    return t;
}

static lact_status check_shape(lact_dtype dt, int ndim, const int64_t *shape) {
    if (!dtype_valid(dt)) return lact_fail(LACT_E_ARG, "invalid dtype %d", (int)dt);
    if (ndim < 0 || ndim > LACT_MAX_DIMS)
        return lact_fail(LACT_E_ARG, "tensor has %d dims (at most %d)", ndim, LACT_MAX_DIMS);
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0)
            return lact_fail(LACT_E_ARG, "tensor dim %d is negative (%lld)", d,
                             (long long)shape[d]);
    return LACT_OK;
}

lact_status lact_tensor_alloc(lact_tensor *t, lact_dtype dt, lact_device dev, int ndim,
                              const int64_t *shape) {
    memset(t, 0, sizeof *t);
    LACT_TRY(check_shape(dt, ndim, shape));
    lact_tensor v = lact_tensor_view(NULL, dt, dev, ndim, shape);
    size_t bytes = lact_tensor_nbytes(&v);
    void *p = NULL;
    /* Zero-sized tensors still get a (small) buffer so data is never NULL. */
    LACT_TRY(lact_mem_alloc(dev, bytes ? bytes : 1, &p));
    lact_status s = lact_mem_zero(dev, p, bytes ? bytes : 1);
    if (s != LACT_OK) {
        lact_mem_free(dev, p);
        return s;
    }
    v.data = p;
    v.owned = p;
    *t = v;
    return LACT_OK;
}

void lact_tensor_free(lact_tensor *t) {
    if (!t) return;
    if (t->owned) lact_mem_free(t->device, t->owned);
    memset(t, 0, sizeof *t);
}

int64_t lact_tensor_numel(const lact_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

size_t lact_tensor_nbytes(const lact_tensor *t) {
    return (size_t)lact_tensor_numel(t) * lact_dtype_size(t->dtype);
}

bool lact_tensor_is_contiguous(const lact_tensor *t) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        /* A dim of size 1 may carry any stride without changing the layout. */
        if (t->shape[d] != 1 && t->stride[d] != s) return false;
        s *= t->shape[d];
    }
    return true;
}

bool lact_tensor_same_shape(const lact_tensor *a, const lact_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

int64_t lact_tensor_rows(const lact_tensor *t) {
    int64_t r = 1;
    for (int d = 0; d + 1 < t->ndim; d++)
        r *= t->shape[d];
    return r;
}

int64_t lact_tensor_cols(const lact_tensor *t) {
    return t->ndim == 0 ? 1 : t->shape[t->ndim - 1];
}

static void format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t len = 0;
    len += (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && len < n; d++)
        len += (size_t)snprintf(buf + len, n - len, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (len < n) snprintf(buf + len, n - len, "]");
}

lact_status lact_tensor_reshape(const lact_tensor *t, int ndim, const int64_t *shape,
                                lact_tensor *out) {
    LACT_TRY(check_shape(t->dtype, ndim, shape));
    if (!lact_tensor_is_contiguous(t))
        return lact_fail(LACT_E_ARG, "cannot reshape a non-contiguous tensor");
    lact_tensor v = lact_tensor_view(t->data, t->dtype, t->device, ndim, shape);
    if (lact_tensor_numel(&v) != lact_tensor_numel(t)) {
        char a[96], b[96];
        format_shape(a, sizeof a, t->ndim, t->shape);
        format_shape(b, sizeof b, ndim, shape);
        return lact_fail(LACT_E_ARG, "cannot reshape %s to %s: element counts differ", a, b);
    }
    *out = v;
    return LACT_OK;
}

const char *lact_tensor_describe(const lact_tensor *t, char *buf, size_t n) {
    char shape[96];
    format_shape(shape, sizeof shape, t->ndim, t->shape);
    snprintf(buf, n, "%s %s %s", shape, lact_dtype_name(t->dtype), lact_device_name(t->device));
    /* The header promises lower-case dtype names here ("bf16"). */
    size_t len = strlen(shape) + 1;
    for (size_t i = len; i < n && buf[i] && buf[i] != ' '; i++)
        if (buf[i] >= 'A' && buf[i] <= 'Z') buf[i] = (char)(buf[i] - 'A' + 'a');
    return buf;
}

/* ---- scalar conversions ------------------------------------------------- */

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

uint16_t lact_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
        return (uint16_t)((u >> 16) | 0x0040u);
    uint32_t round = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + round) >> 16);
}

float lact_bf16_to_f32(uint16_t x) {
    return bits_f32((uint32_t)x << 16);
}

uint16_t lact_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((absu >> 13) & 0x3ffu));
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
    int32_t exp = (int32_t)(absu >> 23) - 127;
    uint32_t mant = absu & 0x7fffffu;
    if (exp >= -14) {
        /* Normal half: 10 mantissa bits, round the 13 dropped bits to even. */
        uint32_t h = ((uint32_t)(exp + 15) << 10) | (mant >> 13);
        uint32_t rest = mant & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
        return (uint16_t)(sign | h);
    }
    if (exp < -25) return sign; /* below half the smallest subnormal */
    /* Subnormal half: value = m * 2^-24 with the implicit bit made explicit. */
    uint32_t full = mant | 0x800000u;
    int shift = -exp - 1; /* 14..24 -> shift of the 24-bit significand */
    uint32_t h = full >> shift;
    uint32_t rest = full & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float lact_f16_to_f32(uint16_t x) {
    uint32_t sign = (uint32_t)(x & 0x8000u) << 16;
    uint32_t exp = (x >> 10) & 0x1fu;
    uint32_t mant = x & 0x3ffu;
    if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        float v = (float)mant * (1.0f / 16777216.0f); /* exact: mant * 2^-24 */
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* ---- tensor copy -------------------------------------------------------- */

static double load_float(const void *p, lact_dtype dt, int64_t i) {
    switch (dt) {
    case LACT_F32:
        return ((const float *)p)[i];
    case LACT_BF16:
        return lact_bf16_to_f32(((const uint16_t *)p)[i]);
    case LACT_F16:
        return lact_f16_to_f32(((const uint16_t *)p)[i]);
    default:
        return ((const double *)p)[i];
    }
}

static void store_float(void *p, lact_dtype dt, int64_t i, double v) {
    switch (dt) {
    case LACT_F32:
        ((float *)p)[i] = (float)v;
        break;
    case LACT_BF16:
        ((uint16_t *)p)[i] = lact_f32_to_bf16((float)v);
        break;
    case LACT_F16:
        ((uint16_t *)p)[i] = lact_f32_to_f16((float)v);
        break;
    default:
        ((double *)p)[i] = v;
        break;
    }
}

static int64_t load_int(const void *p, lact_dtype dt, int64_t i) {
    switch (dt) {
    case LACT_I32:
        return ((const int32_t *)p)[i];
    case LACT_U8:
        return ((const uint8_t *)p)[i];
    default:
        return ((const int64_t *)p)[i];
    }
}

/* Narrowing integer conversion wraps like a C cast to the unsigned type. */
static void store_int(void *p, lact_dtype dt, int64_t i, int64_t v) {
    switch (dt) {
    case LACT_I32:
        ((int32_t *)p)[i] = (int32_t)(uint32_t)(uint64_t)v;
        break;
    case LACT_U8:
        ((uint8_t *)p)[i] = (uint8_t)(uint64_t)v;
        break;
    default:
        ((int64_t *)p)[i] = v;
        break;
    }
}

/* Converts n elements between two host buffers. */
static void convert_host(void *dst, lact_dtype ddt, const void *src, lact_dtype sdt, int64_t n) {
    if (lact_dtype_is_float(ddt)) {
        if (ddt == LACT_F32 && sdt == LACT_BF16) {
            const uint16_t *s = src;
            float *d = dst;
            for (int64_t i = 0; i < n; i++)
                d[i] = lact_bf16_to_f32(s[i]);
        } else if (ddt == LACT_BF16 && sdt == LACT_F32) {
            const float *s = src;
            uint16_t *d = dst;
            for (int64_t i = 0; i < n; i++)
                d[i] = lact_f32_to_bf16(s[i]);
        } else {
            for (int64_t i = 0; i < n; i++)
                store_float(dst, ddt, i, load_float(src, sdt, i));
        }
    } else {
        for (int64_t i = 0; i < n; i++)
            store_int(dst, ddt, i, load_int(src, sdt, i));
    }
}

lact_status lact_tensor_copy(lact_tensor *dst, const lact_tensor *src) {
    char a[128], b[128];
    if (!lact_tensor_same_shape(dst, src))
        return lact_fail(LACT_E_ARG, "tensor copy: shapes differ (%s <- %s)",
                         lact_tensor_describe(dst, a, sizeof a),
                         lact_tensor_describe(src, b, sizeof b));
    if (!lact_tensor_is_contiguous(dst) || !lact_tensor_is_contiguous(src))
        return lact_fail(LACT_E_ARG, "tensor copy: both tensors must be contiguous");
    if (!dtype_valid(dst->dtype) || !dtype_valid(src->dtype))
        return lact_fail(LACT_E_ARG, "tensor copy: invalid dtype");
    if (lact_dtype_is_float(dst->dtype) != lact_dtype_is_float(src->dtype))
        return lact_fail(LACT_E_ARG,
                         "tensor copy: cannot convert %s to %s (float and integer dtypes do "
                         "not mix)",
                         lact_dtype_name(src->dtype), lact_dtype_name(dst->dtype));
    int64_t n = lact_tensor_numel(src);
    if (n == 0) return LACT_OK;
    if (dst->dtype == src->dtype)
        return lact_mem_copy(dst->data, dst->device, src->data, src->device,
                             lact_tensor_nbytes(src));
    if (dst->device == LACT_CPU && src->device == LACT_CPU) {
        convert_host(dst->data, dst->dtype, src->data, src->dtype, n);
        return LACT_OK;
    }
    /* Conversion involving a GPU: stage both sides through host buffers. */
    size_t sbytes = lact_tensor_nbytes(src), dbytes = lact_tensor_nbytes(dst);
    void *hs = NULL, *hd = NULL;
    lact_status s = LACT_OK;
    const void *sp = src->data;
    void *dp = dst->data;
    if (src->device != LACT_CPU) {
        s = lact_mem_alloc(LACT_CPU, sbytes, &hs);
        if (s == LACT_OK) s = lact_mem_copy(hs, LACT_CPU, src->data, src->device, sbytes);
        sp = hs;
    }
    if (s == LACT_OK && dst->device != LACT_CPU) {
        s = lact_mem_alloc(LACT_CPU, dbytes, &hd);
        dp = hd;
    }
    if (s == LACT_OK) {
        convert_host(dp, dst->dtype, sp, src->dtype, n);
        if (dst->device != LACT_CPU)
            s = lact_mem_copy(dst->data, dst->device, hd, LACT_CPU, dbytes);
    }
    lact_mem_free(LACT_CPU, hs);
    lact_mem_free(LACT_CPU, hd);
    return s;
}

lact_status lact_tensor_clone(lact_tensor *dst, const lact_tensor *src, lact_dtype dt,
                              lact_device dev) {
    LACT_TRY(lact_tensor_alloc(dst, dt, dev, src->ndim, src->shape));
    lact_status s = lact_tensor_copy(dst, src);
    if (s != LACT_OK) lact_tensor_free(dst);
    return s;
}
