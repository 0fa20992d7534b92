/* Elementwise ops: add/mul with a broadcast second operand, scale, silu,
 * swiglu, softplus, sigmoid and dtype casts. Grid-stride loops, fp32 arithmetic; the broadcast
 * operand's gradient is a deterministic column reduction (common.cuh). */
#include "kernels/cuda/common.cuh"

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

#define GRID_LOOP(i, n)                                                                   \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);             \
         i += (int64_t)gridDim.x * blockDim.x)

enum { OP_ADD, OP_MUL };

template <int OP, class T, class TB>
__global__ void binary_kernel(T *out, const T *a, const TB *b, int64_t n, int64_t nb) {
    GRID_LOOP(i, n) {
        float x = ld(a, i), y = ld(b, nb == n ? i : i % nb);
        st(out, i, OP == OP_ADD ? x + y : x * y);
    }
}

template <int OP>
static lact_status binary_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                  const lact_tensor *b) {
    int64_t n = lact_tensor_numel(a), nb = lact_tensor_numel(b);
    if (n == 0) return LACT_OK;
    if (nb <= 0 || n % nb)
        return lact_fail(LACT_E_ARG, "broadcast operand of %lld elements does not divide %lld",
                         (long long)nb, (long long)n);
    cudaStream_t st = lact_cuda_stream(ctx);
    unsigned grid = lact_grid_1d(n, 256);
    LACT_DISPATCH_FLOAT(a->dtype, "add/mul", {
        if (b->dtype == LACT_F32)
            binary_kernel<OP, T, float><<<grid, 256, 0, st>>>((T *)out->data, (const T *)a->data,
                                                              (const float *)b->data, n, nb);
        else
            binary_kernel<OP, T, T><<<grid, 256, 0, st>>>((T *)out->data, (const T *)a->data,
                                                          (const T *)b->data, n, nb);
    });
    LACT_CU_LAUNCH("binary");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_add_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                             const lact_tensor *b) {
    return binary_forward<OP_ADD>(ctx, out, a, b);
}

extern "C" lact_status lact_cuda_mul_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                             const lact_tensor *b) {
    return binary_forward<OP_MUL>(ctx, out, a, b);
}

/* Values summed into db: dout (add) or dout * a (mul), viewed as [R, nb]. */
template <class T>
struct dout_at {
    const T *d;
    int64_t nb;
    __device__ float operator()(int64_t r, int64_t c) const { return ld(d, r * nb + c); }
};
template <class T>
struct dout_times_a_at {
    const T *d, *a;
    int64_t nb;
    __device__ float operator()(int64_t r, int64_t c) const {
        int64_t i = r * nb + c;
        return ld(d, i) * ld(a, i);
    }
};

template <class T, class TB>
__global__ void mul_da_mixed_kernel(T *da, const T *dout, const TB *b, int64_t n, int64_t nb) {
    GRID_LOOP(i, n) st(da, i, ld(dout, i) * ld(b, nb == n ? i : i % nb));
}

extern "C" lact_status lact_cuda_add_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                              const lact_tensor *dout) {
    int64_t n = lact_tensor_numel(dout);
    if (da && n)
        LACT_CU(cudaMemcpyAsync(da->data, dout->data, lact_tensor_nbytes(dout),
                                cudaMemcpyDeviceToDevice, lact_cuda_stream(ctx)));
    if (db) {
        int64_t nb = lact_tensor_numel(db);
        if (nb <= 0 || n % nb) return lact_fail(LACT_E_ARG, "add backward: db does not divide dout");
        LACT_DISPATCH_FLOAT(dout->dtype, "add backward", {
            dout_at<T> f = {(const T *)dout->data, nb};
            if (db->dtype == LACT_F32)
                LACT_TRY(lact_col_reduce(ctx, f, n / nb, nb, (float *)db->data));
            else
                LACT_TRY(lact_col_reduce(ctx, f, n / nb, nb, (T *)db->data));
        });
    }
    return LACT_OK;
}

extern "C" lact_status lact_cuda_mul_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                              const lact_tensor *dout, const lact_tensor *a,
                                              const lact_tensor *b) {
    int64_t n = lact_tensor_numel(dout), nb = lact_tensor_numel(b);
    if (nb <= 0 || n % nb) return lact_fail(LACT_E_ARG, "mul backward: b does not divide a");
    cudaStream_t st = lact_cuda_stream(ctx);
    LACT_DISPATCH_FLOAT(dout->dtype, "mul backward", {
        if (da && n) {
            if (b->dtype == LACT_F32)
                mul_da_mixed_kernel<T, float><<<lact_grid_1d(n, 256), 256, 0, st>>>(
                    (T *)da->data, (const T *)dout->data, (const float *)b->data, n, nb);
            else
                mul_da_mixed_kernel<T, T><<<lact_grid_1d(n, 256), 256, 0, st>>>(
                    (T *)da->data, (const T *)dout->data, (const T *)b->data, n, nb);
            LACT_CU_LAUNCH("mul_da");
        }
        if (db) {
            dout_times_a_at<T> f = {(const T *)dout->data, (const T *)a->data, nb};
            if (db->dtype == LACT_F32)
                LACT_TRY(lact_col_reduce(ctx, f, n / nb, nb, (float *)db->data));
            else
                LACT_TRY(lact_col_reduce(ctx, f, n / nb, nb, (T *)db->data));
        }
    });
    return LACT_OK;
}

/* ---- scale, silu, swiglu ---------------------------------------------------- */

template <class T>
__global__ void scale_kernel(T *out, const T *a, float s, int64_t n) {
    GRID_LOOP(i, n) st(out, i, s * ld(a, i));
}

template <class T>
__global__ void silu_kernel(T *out, const T *x, int64_t n) {
    GRID_LOOP(i, n) {
        float v = ld(x, i);
        st(out, i, v * sigmoidf_(v));
    }
}

template <class T>
__global__ void silu_backward_kernel(T *dx, const T *dout, const T *x, int64_t n) {
    GRID_LOOP(i, n) {
        float v = ld(x, i), s = sigmoidf_(v);
        st(dx, i, ld(dout, i) * s * (1.0f + v * (1.0f - s)));
    }
}

template <class T>
__global__ void swiglu_kernel(T *out, const T *a, const T *b, int64_t n) {
    GRID_LOOP(i, n) {
        float v = ld(a, i);
        st(out, i, v * sigmoidf_(v) * ld(b, i));
    }
}

template <class T>
__global__ void swiglu_backward_kernel(T *da, T *db, const T *dout, const T *a, const T *b,
                                       int64_t n) {
    GRID_LOOP(i, n) {
        float v = ld(a, i), s = sigmoidf_(v), g = ld(dout, i);
        if (da) st(da, i, g * ld(b, i) * s * (1.0f + v * (1.0f - s)));
        if (db) st(db, i, g * v * s);
    }
}

extern "C" lact_status lact_cuda_scale_forward(lact_ctx *ctx, lact_tensor *out,
                                               const lact_tensor *a, float s) {
    int64_t n = lact_tensor_numel(a);
    if (!n) return LACT_OK;
    LACT_DISPATCH_FLOAT(a->dtype, "scale", {
        scale_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (const T *)a->data, s, n);
    });
    LACT_CU_LAUNCH("scale");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_scale_backward(lact_ctx *ctx, lact_tensor *da,
                                                const lact_tensor *dout, float s) {
    if (!da) return LACT_OK;
    return lact_cuda_scale_forward(ctx, da, dout, s);
}

extern "C" lact_status lact_cuda_silu_forward(lact_ctx *ctx, lact_tensor *out,
                                              const lact_tensor *x) {
    int64_t n = lact_tensor_numel(x);
    if (!n) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "silu", {
        silu_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (const T *)x->data, n);
    });
    LACT_CU_LAUNCH("silu");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_silu_backward(lact_ctx *ctx, lact_tensor *dx,
                                               const lact_tensor *dout, const lact_tensor *x) {
    int64_t n = lact_tensor_numel(x);
    if (!n || !dx) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "silu backward", {
        silu_backward_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)dx->data, (const T *)dout->data, (const T *)x->data, n);
    });
    LACT_CU_LAUNCH("silu_backward");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_swiglu_forward(lact_ctx *ctx, lact_tensor *out,
                                                const lact_tensor *a, const lact_tensor *b) {
    int64_t n = lact_tensor_numel(a);
    if (!n) return LACT_OK;
    LACT_DISPATCH_FLOAT(a->dtype, "swiglu", {
        swiglu_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (const T *)a->data, (const T *)b->data, n);
    });
    LACT_CU_LAUNCH("swiglu");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_swiglu_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                                 const lact_tensor *dout, const lact_tensor *a,
                                                 const lact_tensor *b) {
    int64_t n = lact_tensor_numel(a);
    if (!n || (!da && !db)) return LACT_OK;
    LACT_DISPATCH_FLOAT(a->dtype, "swiglu backward", {
        swiglu_backward_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            da ? (T *)da->data : NULL, db ? (T *)db->data : NULL, (const T *)dout->data,
            (const T *)a->data, (const T *)b->data, n);
    });
    LACT_CU_LAUNCH("swiglu_backward");
    return LACT_OK;
}

/* ---- softplus, sigmoid ---------------------------------------------------------- */

/* The CPU's stable forms (kernels/cpu/elementwise.c), in fp32. */
__device__ __forceinline__ float sigmoid_stable_(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}
__device__ __forceinline__ float softplus_stable_(float z) {
    return fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z)));
}

template <class T>
__global__ void softplus_kernel(T *out, const T *x, float shift, int64_t n) {
    GRID_LOOP(i, n) st(out, i, softplus_stable_(ld(x, i) + shift));
}

template <class T>
__global__ void softplus_backward_kernel(T *dx, const T *dout, const T *x, float shift,
                                         int64_t n) {
    GRID_LOOP(i, n) st(dx, i, ld(dout, i) * sigmoid_stable_(ld(x, i) + shift));
}

template <class T>
__global__ void sigmoid_kernel(T *out, const T *x, int64_t n) {
    GRID_LOOP(i, n) st(out, i, sigmoid_stable_(ld(x, i)));
}

template <class T>
__global__ void sigmoid_backward_kernel(T *dx, const T *dout, const T *y, int64_t n) {
    GRID_LOOP(i, n) {
        float v = ld(y, i);
        st(dx, i, ld(dout, i) * v * (1.0f - v));
    }
}

extern "C" lact_status lact_cuda_softplus_forward(lact_ctx *ctx, lact_tensor *out,
                                                  const lact_tensor *x, float shift) {
    int64_t n = lact_tensor_numel(x);
    if (!n) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "softplus", {
        softplus_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (const T *)x->data, shift, n);
    });
    LACT_CU_LAUNCH("softplus");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_softplus_backward(lact_ctx *ctx, lact_tensor *dx,
                                                   const lact_tensor *dout, const lact_tensor *x,
                                                   float shift) {
    int64_t n = lact_tensor_numel(x);
    if (!n || !dx) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "softplus backward", {
        softplus_backward_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)dx->data, (const T *)dout->data, (const T *)x->data, shift, n);
    });
    LACT_CU_LAUNCH("softplus_backward");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_sigmoid_forward(lact_ctx *ctx, lact_tensor *out,
                                                 const lact_tensor *x) {
    int64_t n = lact_tensor_numel(x);
    if (!n) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "sigmoid", {
        sigmoid_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)out->data, (const T *)x->data, n);
    });
    LACT_CU_LAUNCH("sigmoid");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_sigmoid_backward(lact_ctx *ctx, lact_tensor *dx,
                                                  const lact_tensor *dout,
                                                  const lact_tensor *out) {
    int64_t n = lact_tensor_numel(out);
    if (!n || !dx) return LACT_OK;
    LACT_DISPATCH_FLOAT(out->dtype, "sigmoid backward", {
        sigmoid_backward_kernel<T><<<lact_grid_1d(n, 256), 256, 0, lact_cuda_stream(ctx)>>>(
            (T *)dx->data, (const T *)dout->data, (const T *)out->data, n);
    });
    LACT_CU_LAUNCH("sigmoid_backward");
    return LACT_OK;
}

/* ---- casts ------------------------------------------------------------------ */

template <class TI, class TO>
__global__ void cast_kernel(TO *out, const TI *x, int64_t n) {
    GRID_LOOP(i, n) st(out, i, ld(x, i));
}

template <class TI>
static lact_status cast_from(lact_ctx *ctx, lact_tensor *out, const TI *x, int64_t n) {
    unsigned grid = lact_grid_1d(n, 256);
    cudaStream_t st = lact_cuda_stream(ctx);
    LACT_DISPATCH_FLOAT(out->dtype, "cast", {
        cast_kernel<TI, T><<<grid, 256, 0, st>>>((T *)out->data, x, n);
    });
    LACT_CU_LAUNCH("cast");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_cast_forward(lact_ctx *ctx, lact_tensor *out,
                                              const lact_tensor *x) {
    int64_t n = lact_tensor_numel(x);
    if (!n) return LACT_OK;
    if (out->dtype == x->dtype) {
        LACT_CU(cudaMemcpyAsync(out->data, x->data, lact_tensor_nbytes(x),
                                cudaMemcpyDeviceToDevice, lact_cuda_stream(ctx)));
        return LACT_OK;
    }
    LACT_DISPATCH_FLOAT(x->dtype, "cast", {
        LACT_TRY(cast_from<T>(ctx, out, (const T *)x->data, n));
    });
    return LACT_OK;
}
