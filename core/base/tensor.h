/* Tensors: up to 5-D, strided, on the CPU or a CUDA device.
 * A tensor either owns its buffer (made by lact_tensor_alloc) or views memory
 * owned elsewhere (an arena, a mapped file, another tensor). Strides are in
 * elements. Kernels require contiguous tensors unless they say otherwise. */
#ifndef LACT_TENSOR_H
#define LACT_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LACT_MAX_DIMS 5

typedef enum lact_dtype {
    LACT_F32 = 0,
    LACT_BF16,
    LACT_F16,
    LACT_I32,
    LACT_U8,
    LACT_F64, /* storage and file exchange only; no kernel computes in it */
    LACT_I64, /* storage and file exchange only */
    LACT_DTYPE_COUNT
} lact_dtype;

typedef enum lact_device { LACT_CPU = 0, LACT_CUDA = 1 } lact_device;

typedef struct lact_tensor {
    void *data;
    lact_dtype dtype;
    lact_device device;
    int ndim;
    int64_t shape[LACT_MAX_DIMS];
    int64_t stride[LACT_MAX_DIMS];
    void *owned; /* buffer to free with the tensor; NULL for views */
} lact_tensor;

size_t lact_dtype_size(lact_dtype dt);
/* Safetensors spelling: "F32", "BF16", "F16", "I32", "U8", "F64", "I64". */
const char *lact_dtype_name(lact_dtype dt);
lact_status lact_dtype_parse(const char *name, lact_dtype *out);
bool lact_dtype_is_float(lact_dtype dt);
const char *lact_device_name(lact_device dev);

/* A contiguous view of data (not owned). ndim in 0..LACT_MAX_DIMS. */
lact_tensor lact_tensor_view(void *data, lact_dtype dt, lact_device dev, int ndim,
                             const int64_t *shape);
/* Allocates a contiguous, zero-filled tensor. */
lact_status lact_tensor_alloc(lact_tensor *t, lact_dtype dt, lact_device dev, int ndim,
                              const int64_t *shape);
/* Frees an owned buffer; safe on views and on zeroed structs. */
void lact_tensor_free(lact_tensor *t);

int64_t lact_tensor_numel(const lact_tensor *t);
size_t lact_tensor_nbytes(const lact_tensor *t);
bool lact_tensor_is_contiguous(const lact_tensor *t);
bool lact_tensor_same_shape(const lact_tensor *a, const lact_tensor *b);
/* Product of all dims but the last (1 for 0-D/1-D), and the last dim. */
int64_t lact_tensor_rows(const lact_tensor *t);
int64_t lact_tensor_cols(const lact_tensor *t);
/* Reinterprets a contiguous tensor with a new shape of equal numel (a view). */
lact_status lact_tensor_reshape(const lact_tensor *t, int ndim, const int64_t *shape,
                                lact_tensor *out);
/* "[2, 3, 4] bf16 cuda" into buf; returns buf. */
const char *lact_tensor_describe(const lact_tensor *t, char *buf, size_t n);

/* Copies src into dst (same shape, both contiguous), across devices and
 * converting dtypes between F32/BF16/F16/F64 and between I32/I64/U8. */
lact_status lact_tensor_copy(lact_tensor *dst, const lact_tensor *src);
/* Allocates dst on dev with dtype dt and copies src into it. */
lact_status lact_tensor_clone(lact_tensor *dst, const lact_tensor *src, lact_dtype dt,
                              lact_device dev);

/* bf16 / f16 scalar conversion (round to nearest even). */
uint16_t lact_f32_to_bf16(float x);
float lact_bf16_to_f32(uint16_t x);
uint16_t lact_f32_to_f16(float x);
float lact_f16_to_f32(uint16_t x);

#ifdef __cplusplus
}
#endif
#endif
