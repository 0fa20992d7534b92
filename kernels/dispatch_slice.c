/* lact_slice_*: argument checks, then one strided copy of rows of bytes on
 * the CPU or CUDA. A slice along dim of a contiguous tensor is A = Π of the
 * leading dims blocks of n·E contiguous elements (E = Π of the trailing
 * dims) at a pitch of X·E in the whole tensor. */
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/slice_ref.h"
#include "kernels/kcheck.h"
#include "kernels/kernels.h"
#if LACT_WITH_CUDA
#include "kernels/cuda/slice_cuda.h"
#endif

#define ANY_DTYPE ((1u << (unsigned)LACT_DTYPE_COUNT) - 1u)

typedef struct slice_geom {
    size_t rows, width, pitch, offset; /* bytes, except rows */
} slice_geom;

/* whole (the tensor sliced) and part (the slab) agree but for dim, where
 * [start, start + part.shape[dim]) lies inside whole; one dtype, one device,
 * disjoint memory. */
static lact_status check_slice(lact_ctx *ctx, const char *op, const char *whole_name,
                               const lact_tensor *whole, const char *part_name,
                               const lact_tensor *part, int dim, int64_t start, slice_geom *g) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, whole_name, whole, ANY_DTYPE));
    LACT_TRY(lact_kcheck_tensor(ctx, op, part_name, part, ANY_DTYPE));
    LACT_TRY(lact_kcheck_same_dtype(op, part_name, part, whole_name, whole));
    if (dim < 0 || dim >= whole->ndim)
        return lact_fail(LACT_E_ARG, "%s: dim %d is not a dim of %s (%d dims)", op, dim, whole_name,
                         whole->ndim);
    bool same = part->ndim == whole->ndim;
    for (int i = 0; same && i < whole->ndim; i++)
        same = i == dim || part->shape[i] == whole->shape[i];
    int64_t n = same ? part->shape[dim] : 0, X = whole->shape[dim];
    if (!same || start < 0 || start + n > X) {
        char sw[96], sp[96];
        return lact_fail(LACT_E_ARG,
                         "%s: %s %s must have the shape of %s %s but along dim %d, where "
                         "start %lld + its length must not pass %lld",
                         op, part_name, lact_kcheck_shape_str(part, sp, sizeof sp), whole_name,
                         lact_kcheck_shape_str(whole, sw, sizeof sw), dim, (long long)start,
                         (long long)X);
    }
    size_t bw = lact_tensor_nbytes(whole), bp = lact_tensor_nbytes(part);
    uintptr_t pw = (uintptr_t)whole->data, pp = (uintptr_t)part->data;
    if (bw > 0 && bp > 0 && pw < pp + bp && pp < pw + bw)
        return lact_fail(LACT_E_ARG, "%s: %s overlaps %s", op, part_name, whole_name);
    int64_t A = 1, E = 1;
    for (int i = 0; i < dim; i++)
        A *= whole->shape[i];
    for (int i = dim + 1; i < whole->ndim; i++)
        E *= whole->shape[i];
    size_t sz = lact_dtype_size(whole->dtype);
    g->rows = (size_t)A;
    g->width = (size_t)(n * E) * sz;
    g->pitch = (size_t)(X * E) * sz;
    g->offset = (size_t)(start * E) * sz;
    return LACT_OK;
}

static lact_status copy_2d(lact_ctx *ctx, void *dst, size_t dpitch, const void *src, size_t spitch,
                           const slice_geom *g) {
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA)
        return lact_cuda_copy_2d(ctx, dst, dpitch, src, spitch, g->width, g->rows);
#else
    (void)ctx;
#endif
    lact_cpu_copy_2d(dst, dpitch, src, spitch, g->width, g->rows);
    return LACT_OK;
}

lact_status lact_slice_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, int dim,
                               int64_t start) {
    slice_geom g = {0, 0, 0, 0};
    LACT_TRY(check_slice(ctx, "slice", "x", x, "out", out, dim, start, &g));
    return copy_2d(ctx, out->data, g.width, (const char *)x->data + g.offset, g.pitch, &g);
}

lact_status lact_slice_assign(lact_ctx *ctx, lact_tensor *dst, const lact_tensor *x, int dim,
                              int64_t start) {
    slice_geom g = {0, 0, 0, 0};
    LACT_TRY(check_slice(ctx, "slice assign", "dst", dst, "x", x, dim, start, &g));
    return copy_2d(ctx, (char *)dst->data + g.offset, g.pitch, x->data, g.width, &g);
}

lact_status lact_slice_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout, int dim,
                                int64_t start) {
    const char *op = "slice backward";
    if (!dx) return lact_kcheck_ctx(ctx, op);
    slice_geom g = {0, 0, 0, 0};
    LACT_TRY(check_slice(ctx, op, "dx", dx, "dout", dout, dim, start, &g));
    size_t bytes = lact_tensor_nbytes(dx);
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA) LACT_TRY(lact_cuda_zero(ctx, dx->data, bytes));
#endif
    if (ctx->device == LACT_CPU && bytes > 0) memset(dx->data, 0, bytes);
    return copy_2d(ctx, (char *)dx->data + g.offset, g.pitch, dout->data, g.width, &g);
}
