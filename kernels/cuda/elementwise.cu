/* Elementwise ops: add/mul with a broadcast second operand, scale, silu,
 * swiglu, softplus, sigmoid and dtype casts, in fp32 arithmetic.
 *
 * They are bound by memory, so each thread moves 16-byte words (vec.cuh):
 * one map kernel runs every op as a functor over NI inputs and NO outputs,
 * V elements per step of a grid-stride loop, with the last n mod V elements
 * done one at a time. Pointers that are not 16-byte aligned take the V = 1
 * instantiation of the same kernel. Optional outputs (swiglu's da or db)
 * select a functor on the host, so no element tests a pointer. The
 * broadcast operand's gradient is a deterministic column sum (colsum.cuh). */
#include <type_traits>

#include "kernels/cuda/colsum.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vec.cuh"

#define EW_THREADS 256

__device__ __forceinline__ float sigmoidf_(float x) {
    return 1.0f / (1.0f + expf(-x));
}

/* ---- the map kernel ------------------------------------------------------------ */

template <int NI, int NO, class TI, class TO> struct ew_io {
    const TI *in[NI];
    TO *out[NO];
};

template <int V, int NI, int NO, class TI, class TO, class F>
__device__ __forceinline__ void map_step(const F &f, const ew_io<NI, NO, TI, TO> &io, int64_t i) {
    float x[NI][V], y[NO][V];
#pragma unroll
    for (int k = 0; k < NI; k++)
        vload<V>(io.in[k] + i, x[k]);
#pragma unroll
    for (int e = 0; e < V; e++) {
        float xe[NI], ye[NO];
#pragma unroll
        for (int k = 0; k < NI; k++)
            xe[k] = x[k][e];
        f(xe, ye);
#pragma unroll
        for (int k = 0; k < NO; k++)
            y[k][e] = ye[k];
    }
#pragma unroll
    for (int k = 0; k < NO; k++)
        vstore<V>(io.out[k] + i, y[k]);
}

template <int V, int NI, int NO, class TI, class TO, class F>
__global__ void __launch_bounds__(EW_THREADS) map_kernel(F f, ew_io<NI, NO, TI, TO> io, int64_t n) {
    const int64_t nv = n / V, stride = (int64_t)gridDim.x * blockDim.x;
    const int64_t t0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    for (int64_t v = t0; v < nv; v += stride)
        map_step<V>(f, io, v * V);
    if (V > 1 && nv * V + t0 < n) map_step<1>(f, io, nv * V + t0);
}

/* Runs f over n elements: 16-byte words when every pointer allows them. */
template <int NI, int NO, class TI, class TO, class F>
static lact_status map_run(lact_ctx *ctx, const F &f, const ew_io<NI, NO, TI, TO> &io, int64_t n,
                           const char *what) {
    if (n <= 0) return LACT_OK;
    constexpr int V =
        vec_width<TI>::value < vec_width<TO>::value ? vec_width<TO>::value : vec_width<TI>::value;
    bool aligned = true;
    for (int k = 0; k < NI; k++)
        aligned = aligned && lact_aligned16(io.in[k]);
    for (int k = 0; k < NO; k++)
        aligned = aligned && lact_aligned16(io.out[k]);
    cudaStream_t st = lact_cuda_stream(ctx);
    if (aligned) {
        int64_t items = n / V > 0 ? n / V : 1;
        map_kernel<V><<<lact_vec_grid(items, EW_THREADS), EW_THREADS, 0, st>>>(f, io, n);
    } else {
        map_kernel<1><<<lact_vec_grid(n, EW_THREADS), EW_THREADS, 0, st>>>(f, io, n);
    }
    LACT_CU_LAUNCH(what);
    return LACT_OK;
}

template <class T, class F>
static lact_status map1(lact_ctx *ctx, const F &f, T *out, const T *x, int64_t n,
                        const char *what) {
    ew_io<1, 1, T, T> io = {{x}, {out}};
    return map_run(ctx, f, io, n, what);
}

template <class T, class F>
static lact_status map2(lact_ctx *ctx, const F &f, T *out, const T *a, const T *b, int64_t n,
                        const char *what) {
    ew_io<2, 1, T, T> io = {{a, b}, {out}};
    return map_run(ctx, f, io, n, what);
}

/* ---- add, mul with broadcast ---------------------------------------------------- */

enum { OP_ADD, OP_MUL };

/* out[i] = a[i] op b[i mod nb]. Each thread keeps its column of b and steps
 * it by the grid stride, so no element divides. With V > 1, V divides nb
 * (hence n) and the V elements of a word share one row of b. */
template <int V, int OP, class T, class TB>
__global__ void __launch_bounds__(EW_THREADS)
    binary_kernel(T *out, const T *a, const TB *b, int64_t n, int64_t nb) {
    const int64_t nv = n / V, stride = (int64_t)gridDim.x * blockDim.x;
    int64_t v = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (v >= nv) return;
    int64_t col = (v * V) % nb;
    const int64_t step = (stride * V) % nb;
    for (; v < nv; v += stride) {
        float x[V], y[V], z[V];
        vload<V>(a + v * V, x);
        vload<V>(b + col, y);
#pragma unroll
        for (int e = 0; e < V; e++)
            z[e] = OP == OP_ADD ? x[e] + y[e] : x[e] * y[e];
        vstore<V>(out + v * V, z);
        col += step;
        if (col >= nb) col -= nb;
    }
}

template <int OP, class T, class TB>
static lact_status binary_run(lact_ctx *ctx, T *out, const T *a, const TB *b, int64_t n,
                              int64_t nb) {
    constexpr int V = vec_width<T>::value;
    cudaStream_t st = lact_cuda_stream(ctx);
    if (nb % V == 0 && lact_aligned16(out, a, b))
        binary_kernel<V, OP>
            <<<lact_vec_grid(n / V, EW_THREADS), EW_THREADS, 0, st>>>(out, a, b, n, nb);
    else
        binary_kernel<1, OP><<<lact_vec_grid(n, EW_THREADS), EW_THREADS, 0, st>>>(out, a, b, n, nb);
    LACT_CU_LAUNCH("binary");
    return LACT_OK;
}

template <int OP>
static lact_status binary_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                  const lact_tensor *b) {
    int64_t n = lact_tensor_numel(a), nb = lact_tensor_numel(b);
    if (n == 0) return LACT_OK;
    if (nb <= 0 || n % nb)
        return lact_fail(LACT_E_ARG, "broadcast operand of %lld elements does not divide %lld",
                         (long long)nb, (long long)n);
    lact_status s = LACT_OK;
    LACT_DISPATCH_FLOAT(a->dtype, "add/mul", {
        if (b->dtype == LACT_F32)
            s = binary_run<OP>(ctx, (T *)out->data, (const T *)a->data, (const float *)b->data, n,
                               nb);
        else
            s = binary_run<OP>(ctx, (T *)out->data, (const T *)a->data, (const T *)b->data, n, nb);
    });
    return s;
}

extern "C" lact_status lact_cuda_add_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                             const lact_tensor *b) {
    return binary_forward<OP_ADD>(ctx, out, a, b);
}

extern "C" lact_status lact_cuda_mul_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                             const lact_tensor *b) {
    return binary_forward<OP_MUL>(ctx, out, a, b);
}

/* ---- broadcast gradients ---------------------------------------------------------- */

/* Values summed into db, viewed as [R, nb]: dout (add) or dout · a (mul). */
template <class T, int V> struct dout_at {
    const T *d;
    int64_t nb;
    __device__ void operator()(int64_t r, int64_t c, float (&v)[V]) const {
        vload<V>(d + r * nb + c, v);
    }
};
template <class T, int V> struct dout_times_a_at {
    const T *d, *a;
    int64_t nb;
    __device__ void operator()(int64_t r, int64_t c, float (&v)[V]) const {
        float x[V];
        vload<V>(d + r * nb + c, v);
        vload<V>(a + r * nb + c, x);
#pragma unroll
        for (int e = 0; e < V; e++)
            v[e] *= x[e];
    }
};

struct ew_copy_f {
    __device__ void operator()(const float (&x)[1], float (&y)[1]) const { y[0] = x[0]; }
};
struct ew_mul_f {
    __device__ void operator()(const float (&x)[2], float (&y)[1]) const { y[0] = x[0] * x[1]; }
};

/* db [nb] = Σ over the R = n / nb rows of dout (· a); a is NULL for add. */
template <class T, class TO>
static lact_status broadcast_grad(lact_ctx *ctx, TO *db, const T *dout, const T *a, int64_t n,
                                  int64_t nb) {
    int64_t R = n / nb;
    if (R == 1) {
        /* No broadcast: db is dout (· a) itself. */
        if (!a) {
            ew_io<1, 1, T, TO> io = {{dout}, {db}};
            return map_run(ctx, ew_copy_f(), io, n, "add_backward_db");
        }
        ew_io<2, 1, T, TO> io = {{dout, a}, {db}};
        return map_run(ctx, ew_mul_f(), io, n, "mul_backward_db");
    }
    constexpr int V = vec_width<T>::value;
    if (nb % V == 0 && lact_aligned16(dout, a)) {
        if (!a) return lact_colsum<V>(ctx, dout_at<T, V>{dout, nb}, R, nb, db);
        return lact_colsum<V>(ctx, dout_times_a_at<T, V>{dout, a, nb}, R, nb, db);
    }
    if (!a) return lact_colsum<1>(ctx, dout_at<T, 1>{dout, nb}, R, nb, db);
    return lact_colsum<1>(ctx, dout_times_a_at<T, 1>{dout, a, nb}, R, nb, db);
}

/* The values dout · a of db, storing da = dout · b[c] on the way: the
 * column sum visits every (r, c) once, so one pass reads dout and a once
 * and writes da. */
template <class T, class TB, int V> struct mul_bwd_at {
    const T *d, *a;
    const TB *b;
    T *da;
    int64_t nb;
    __device__ void operator()(int64_t r, int64_t c, float (&v)[V]) const {
        float x[V], y[V];
        vload<V>(d + r * nb + c, v);
        vload<V>(b + c, y);
#pragma unroll
        for (int e = 0; e < V; e++)
            y[e] = v[e] * y[e];
        vstore<V>(da + r * nb + c, y);
        vload<V>(a + r * nb + c, x);
#pragma unroll
        for (int e = 0; e < V; e++)
            v[e] *= x[e];
    }
};

/* Both gradients of a broadcast mul: one fused pass when b is broadcast,
 * else the forward kernel for da and the plain gradient for db. */
template <class T, class TB, class TO>
static lact_status mul_grads(lact_ctx *ctx, T *da, TO *db, const T *d, const T *a, const TB *b,
                             int64_t n, int64_t nb) {
    int64_t R = n / nb;
    constexpr int V = vec_width<T>::value;
    if (da && db && R > 1) {
        if (nb % V == 0 && lact_aligned16(d, a, b, da))
            return lact_colsum<V>(ctx, mul_bwd_at<T, TB, V>{d, a, b, da, nb}, R, nb, db);
        return lact_colsum<1>(ctx, mul_bwd_at<T, TB, 1>{d, a, b, da, nb}, R, nb, db);
    }
    /* da = dout · b, b broadcast like the forward. */
    if (da) LACT_TRY(binary_run<OP_MUL>(ctx, da, d, b, n, nb));
    if (db) LACT_TRY(broadcast_grad<T>(ctx, db, d, a, n, nb));
    return LACT_OK;
}

extern "C" lact_status lact_cuda_add_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                              const lact_tensor *dout) {
    int64_t n = lact_tensor_numel(dout);
    if (da && n)
        LACT_CU(cudaMemcpyAsync(da->data, dout->data, lact_tensor_nbytes(dout),
                                cudaMemcpyDeviceToDevice, lact_cuda_stream(ctx)));
    if (db && n) {
        int64_t nb = lact_tensor_numel(db);
        if (nb <= 0 || n % nb)
            return lact_fail(LACT_E_ARG, "add backward: db does not divide dout");
        LACT_DISPATCH_FLOAT(dout->dtype, "add backward", {
            const T *d = (const T *)dout->data;
            if (db->dtype == LACT_F32)
                LACT_TRY(broadcast_grad<T>(ctx, (float *)db->data, d, (const T *)NULL, n, nb));
            else
                LACT_TRY(broadcast_grad<T>(ctx, (T *)db->data, d, (const T *)NULL, n, nb));
        });
    }
    return LACT_OK;
}

extern "C" lact_status lact_cuda_mul_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                              const lact_tensor *dout, const lact_tensor *a,
                                              const lact_tensor *b) {
    int64_t n = lact_tensor_numel(dout), nb = lact_tensor_numel(b);
    if (nb <= 0 || n % nb) return lact_fail(LACT_E_ARG, "mul backward: b does not divide a");
    if (!n) return LACT_OK;
    lact_status s = LACT_OK;
    LACT_DISPATCH_FLOAT(dout->dtype, "mul backward", {
        const T *d = (const T *)dout->data, *ap = a ? (const T *)a->data : NULL;
        T *dap = da ? (T *)da->data : NULL;
        /* db is F32 or T, b is F32 or T: the four pairs. */
        bool db32 = !db || db->dtype == LACT_F32;
        if (b->dtype == LACT_F32) {
            const float *bp = (const float *)b->data;
            s = db32 ? mul_grads(ctx, dap, db ? (float *)db->data : NULL, d, ap, bp, n, nb)
                     : mul_grads(ctx, dap, (T *)db->data, d, ap, bp, n, nb);
        } else {
            const T *bp = (const T *)b->data;
            s = db32 ? mul_grads(ctx, dap, db ? (float *)db->data : NULL, d, ap, bp, n, nb)
                     : mul_grads(ctx, dap, (T *)db->data, d, ap, bp, n, nb);
        }
    });
    return s;
}

/* ---- scale, silu, swiglu ---------------------------------------------------------- */

struct scale_f {
    float s;
    __device__ void operator()(const float (&x)[1], float (&y)[1]) const { y[0] = s * x[0]; }
};
struct silu_f {
    __device__ void operator()(const float (&x)[1], float (&y)[1]) const {
        y[0] = x[0] * sigmoidf_(x[0]);
    }
};
/* x = {dout, x} */
struct silu_bwd_f {
    __device__ void operator()(const float (&x)[2], float (&y)[1]) const {
        float v = x[1], s = sigmoidf_(v);
        y[0] = x[0] * s * (1.0f + v * (1.0f - s));
    }
};
/* x = {a, b} */
struct swiglu_f {
    __device__ void operator()(const float (&x)[2], float (&y)[1]) const {
        float v = x[0];
        y[0] = v * sigmoidf_(v) * x[1];
    }
};
/* x = {dout, a, b}; y = {da, db}, {da} or {db}. */
struct swiglu_bwd_f {
    __device__ void operator()(const float (&x)[3], float (&y)[2]) const {
        float v = x[1], s = sigmoidf_(v), g = x[0];
        y[0] = g * x[2] * s * (1.0f + v * (1.0f - s));
        y[1] = g * v * s;
    }
};
struct swiglu_bwd_da_f {
    __device__ void operator()(const float (&x)[3], float (&y)[1]) const {
        float v = x[1], s = sigmoidf_(v), g = x[0];
        y[0] = g * x[2] * s * (1.0f + v * (1.0f - s));
    }
};
struct swiglu_bwd_db_f {
    __device__ void operator()(const float (&x)[2], float (&y)[1]) const {
        float v = x[1], s = sigmoidf_(v), g = x[0];
        y[0] = g * v * s;
    }
};

extern "C" lact_status lact_cuda_scale_forward(lact_ctx *ctx, lact_tensor *out,
                                               const lact_tensor *a, float s) {
    int64_t n = lact_tensor_numel(a);
    LACT_DISPATCH_FLOAT(a->dtype, "scale", {
        LACT_TRY(map1(ctx, scale_f{s}, (T *)out->data, (const T *)a->data, n, "scale"));
    });
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
    LACT_DISPATCH_FLOAT(x->dtype, "silu", {
        LACT_TRY(map1(ctx, silu_f(), (T *)out->data, (const T *)x->data, n, "silu"));
    });
    return LACT_OK;
}

extern "C" lact_status lact_cuda_silu_backward(lact_ctx *ctx, lact_tensor *dx,
                                               const lact_tensor *dout, const lact_tensor *x) {
    int64_t n = lact_tensor_numel(x);
    if (!dx) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "silu backward", {
        LACT_TRY(map2(ctx, silu_bwd_f(), (T *)dx->data, (const T *)dout->data, (const T *)x->data,
                      n, "silu_backward"));
    });
    return LACT_OK;
}

extern "C" lact_status lact_cuda_swiglu_forward(lact_ctx *ctx, lact_tensor *out,
                                                const lact_tensor *a, const lact_tensor *b) {
    int64_t n = lact_tensor_numel(a);
    LACT_DISPATCH_FLOAT(a->dtype, "swiglu", {
        LACT_TRY(map2(ctx, swiglu_f(), (T *)out->data, (const T *)a->data, (const T *)b->data, n,
                      "swiglu"));
    });
    return LACT_OK;
}

extern "C" lact_status lact_cuda_swiglu_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                                 const lact_tensor *dout, const lact_tensor *a,
                                                 const lact_tensor *b) {
    int64_t n = lact_tensor_numel(a);
    if (!da && !db) return LACT_OK;
    LACT_DISPATCH_FLOAT(a->dtype, "swiglu backward", {
        const T *g = (const T *)dout->data, *ap = (const T *)a->data, *bp = (const T *)b->data;
        if (da && db) {
            ew_io<3, 2, T, T> io = {{g, ap, bp}, {(T *)da->data, (T *)db->data}};
            LACT_TRY(map_run(ctx, swiglu_bwd_f(), io, n, "swiglu_backward"));
        } else if (da) {
            ew_io<3, 1, T, T> io = {{g, ap, bp}, {(T *)da->data}};
            LACT_TRY(map_run(ctx, swiglu_bwd_da_f(), io, n, "swiglu_backward"));
        } else {
            LACT_TRY(map2(ctx, swiglu_bwd_db_f(), (T *)db->data, g, ap, n, "swiglu_backward"));
        }
    });
    return LACT_OK;
}

/* ---- swiglu on packed rows ------------------------------------------------------- */

/* The map over rows of F elements whose tensors have their own row strides
 * (the packed a | b rows are 2F apart, out's F): fw words of V per row. */
template <int NI, int NO> struct ew_rows { int64_t in[NI], out[NO]; };

template <int V, class I, int NI, int NO, class T, class F>
__global__ void __launch_bounds__(EW_THREADS)
    map_rows_kernel(F f, ew_io<NI, NO, T, T> io, ew_rows<NI, NO> rs, I rows, I fw) {
    const I n = rows * fw, stride = (I)gridDim.x * blockDim.x;
    /* The (row, word) of v steps by the stride's quotient and remainder:
     * two divisions a thread, not one a word (I is 32 bits whenever the
     * words fit, which makes those cheap too). */
    const I dr = stride / fw, dc = stride - dr * fw;
    I v = (I)blockIdx.x * blockDim.x + threadIdx.x, r = v / fw, w = v - r * fw;
    for (; v < n; v += stride, r += dr, w += dc) {
        if (w >= fw) w -= fw, r++;
        const int64_t c = (int64_t)w * V;
        ew_io<NI, NO, T, T> at;
#pragma unroll
        for (int k = 0; k < NI; k++)
            at.in[k] = io.in[k] + r * rs.in[k];
#pragma unroll
        for (int k = 0; k < NO; k++)
            at.out[k] = io.out[k] + r * rs.out[k];
        map_step<V>(f, at, c);
    }
}

template <int NI, int NO, class T, class F>
static lact_status map_rows(lact_ctx *ctx, const F &f, const ew_io<NI, NO, T, T> &io,
                            const ew_rows<NI, NO> &rs, int64_t rows, int64_t cols,
                            const char *what) {
    if (rows <= 0 || cols <= 0) return LACT_OK;
    constexpr int V = vec_width<T>::value;
    bool wide = cols % V == 0;
    for (int k = 0; k < NI; k++)
        wide = wide && lact_aligned16(io.in[k]) && rs.in[k] % V == 0;
    for (int k = 0; k < NO; k++)
        wide = wide && lact_aligned16(io.out[k]) && rs.out[k] % V == 0;
    cudaStream_t st = lact_cuda_stream(ctx);
    auto launch = [&](auto v) {
        constexpr int W = decltype(v)::value;
        int64_t fw = cols / W;
        unsigned grid = lact_vec_grid(rows * fw, EW_THREADS);
        if (rows * fw < ((int64_t)1 << 31) - (int64_t)grid * EW_THREADS)
            map_rows_kernel<W, uint32_t>
                <<<grid, EW_THREADS, 0, st>>>(f, io, rs, (uint32_t)rows, (uint32_t)fw);
        else
            map_rows_kernel<W, int64_t><<<grid, EW_THREADS, 0, st>>>(f, io, rs, rows, fw);
    };
    if (wide)
        launch(std::integral_constant<int, V>());
    else
        launch(std::integral_constant<int, 1>());
    LACT_CU_LAUNCH(what);
    return LACT_OK;
}

extern "C" lact_status lact_cuda_swiglu_packed_forward(lact_ctx *ctx, lact_tensor *out,
                                                       const lact_tensor *ab) {
    int64_t F = out->shape[out->ndim - 1], rows = F ? lact_tensor_numel(out) / F : 0;
    LACT_DISPATCH_FLOAT(ab->dtype, "swiglu_packed", {
        const T *p = (const T *)ab->data;
        ew_io<2, 1, T, T> io = {{p, p + F}, {(T *)out->data}};
        ew_rows<2, 1> rs = {{2 * F, 2 * F}, {F}};
        LACT_TRY(map_rows(ctx, swiglu_f(), io, rs, rows, F, "swiglu_packed"));
    });
    return LACT_OK;
}

extern "C" lact_status lact_cuda_swiglu_packed_backward(lact_ctx *ctx, lact_tensor *dab,
                                                        const lact_tensor *dout,
                                                        const lact_tensor *ab) {
    int64_t F = dout->shape[dout->ndim - 1], rows = F ? lact_tensor_numel(dout) / F : 0;
    LACT_DISPATCH_FLOAT(ab->dtype, "swiglu_packed backward", {
        const T *p = (const T *)ab->data;
        T *g = (T *)dab->data;
        ew_io<3, 2, T, T> io = {{(const T *)dout->data, p, p + F}, {g, g + F}};
        ew_rows<3, 2> rs = {{F, 2 * F, 2 * F}, {2 * F, 2 * F}};
        LACT_TRY(map_rows(ctx, swiglu_bwd_f(), io, rs, rows, F, "swiglu_packed_backward"));
    });
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

struct softplus_f {
    float shift;
    __device__ void operator()(const float (&x)[1], float (&y)[1]) const {
        y[0] = softplus_stable_(x[0] + shift);
    }
};
/* x = {dout, x} */
struct softplus_bwd_f {
    float shift;
    __device__ void operator()(const float (&x)[2], float (&y)[1]) const {
        y[0] = x[0] * sigmoid_stable_(x[1] + shift);
    }
};
struct sigmoid_f {
    __device__ void operator()(const float (&x)[1], float (&y)[1]) const {
        y[0] = sigmoid_stable_(x[0]);
    }
};
/* x = {dout, y} */
struct sigmoid_bwd_f {
    __device__ void operator()(const float (&x)[2], float (&y)[1]) const {
        float v = x[1];
        y[0] = x[0] * v * (1.0f - v);
    }
};

/* ---- the LaCT layer's gates ------------------------------------------------------ */

/* A block owns runs of pos positions (GATES_POS, fewer when the G·H
 * columns of a run would not fit the shared memory) of one batch row (grid
 * y), for every column: it reads z's rows whole, turns them in shared
 * memory, and writes each column's positions as one run of the
 * [G, B·H, L] layout (the backward the other way). A thread keeps the
 * backward's sums of up to GATES_COLS columns. */
#define GATES_POS 32
#define GATES_THREADS 256
#define GATES_COLS 4
#define GATES_SMEM (48 * 1024)

struct gates_geom {
    int64_t B, L, N;
    int H, G, pos, tiles; /* tiles: runs of pos a block takes */
};

__global__ void __launch_bounds__(GATES_THREADS)
    gates_fwd_kernel(float *lr, float *mom, float *zg, const float *z, const float *b_lr,
                     const float *b_m, gates_geom g, float shift) {
    extern __shared__ float gt_tile[]; /* [pos][GH + 1] */
    const int GH = g.G * g.H, ld = GH + 1;
    const int64_t b = blockIdx.y;
    for (int t = 0; t < g.tiles; t++) {
        const int64_t l0 = ((int64_t)blockIdx.x * g.tiles + t) * g.pos;
        if (l0 >= g.L) break;
        const int nl = (int)(g.L - l0 < g.pos ? g.L - l0 : g.pos);
        __syncthreads();
        for (int e = threadIdx.x; e < nl * GH; e += blockDim.x) {
            const int j = e / GH, c = e - j * GH;
            gt_tile[j * ld + c] =
                z[(b * g.L + l0 + j) * GH + c] + (c < 3 * g.H ? b_lr[c] : b_m[c - 3 * g.H]);
        }
        __syncthreads();
        for (int e = threadIdx.x; e < GH * g.pos; e += blockDim.x) {
            const int c = e / g.pos, j = e - c * g.pos;
            if (j >= nl) continue;
            const int i = c / g.H, h = c - i * g.H;
            const int64_t n = b * g.H + h, at = (i * g.N + n) * g.L + l0 + j;
            const float v = gt_tile[j * ld + c];
            zg[at] = v;
            if (i < 3)
                lr[at] = softplus_stable_(v + shift);
            else
                mom[n * g.L + l0 + j] = sigmoid_stable_(v);
        }
    }
}

template <class T>
__global__ void __launch_bounds__(GATES_THREADS)
    gates_bwd_kernel(T *dz, float *part_lr, float *part_m, const float *dlr, const float *dmom,
                     const float *zg, const float *mom, gates_geom g, float shift) {
    extern __shared__ float gt_tile[];
    const int GH = g.G * g.H, ld = GH + 1;
    const int64_t b = blockIdx.y;
    /* columns threadIdx.x + q·blockDim.x, over the block's positions in order */
    float sum[GATES_COLS] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int t = 0; t < g.tiles; t++) {
        const int64_t l0 = ((int64_t)blockIdx.x * g.tiles + t) * g.pos;
        if (l0 >= g.L) break;
        const int nl = (int)(g.L - l0 < g.pos ? g.L - l0 : g.pos);
        __syncthreads();
        for (int e = threadIdx.x; e < GH * g.pos; e += blockDim.x) {
            const int c = e / g.pos, j = e - c * g.pos;
            float v = 0.0f;
            if (j < nl) {
                const int i = c / g.H, h = c - i * g.H;
                const int64_t n = b * g.H + h, at = (i * g.N + n) * g.L + l0 + j;
                if (i < 3) {
                    v = dlr[at] * sigmoid_stable_(zg[at] + shift);
                } else {
                    const float y = mom[n * g.L + l0 + j];
                    v = dmom[n * g.L + l0 + j] * y * (1.0f - y);
                }
            }
            gt_tile[j * ld + c] = v;
        }
        __syncthreads();
#pragma unroll
        for (int q = 0; q < GATES_COLS; q++) {
            const int c = threadIdx.x + q * blockDim.x;
            if (c < GH)
                for (int j = 0; j < nl; j++)
                    sum[q] += gt_tile[j * ld + c];
        }
        for (int e = threadIdx.x; e < nl * GH; e += blockDim.x) {
            const int j = e / GH, c = e - j * GH;
            dz[(b * g.L + l0 + j) * GH + c] = from_f32<T>(gt_tile[j * ld + c]);
        }
    }
    const int64_t blk = (int64_t)blockIdx.y * gridDim.x + blockIdx.x;
#pragma unroll
    for (int q = 0; q < GATES_COLS; q++) {
        const int c = threadIdx.x + q * blockDim.x;
        if (c >= GH) continue;
        if (c < 3 * g.H)
            part_lr[blk * 3 * g.H + c] = sum[q];
        else
            part_m[blk * g.H + c - 3 * g.H] = sum[q];
    }
}

/* The launch: positions split into runs of pos, tiles runs a block; with
 * parts, as many runs a block as keep the partial rows in the scratch. */
static lact_status gates_plan(const lact_ctx *ctx, int64_t B, int64_t L, int64_t N, int64_t G,
                              bool parts, gates_geom *g, dim3 *grid, size_t *smem) {
    const int64_t H = N / B, GH = G * H;
    int64_t pos = (int64_t)(GATES_SMEM / sizeof(float)) / (GH + 1);
    if (pos > GATES_POS) pos = GATES_POS;
    if (GH > GATES_COLS * GATES_THREADS || pos < 1 || B > 65535)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "gates: %lld heads, batch %lld (at most %d heads, "
                         "batch 65535)",
                         (long long)H, (long long)B, GATES_COLS * GATES_THREADS / (int)G);
    *smem = (size_t)pos * (size_t)(GH + 1) * sizeof(float);
    const int64_t runs = (L + pos - 1) / pos;
    int64_t tiles = 1;
    if (parts) {
        const int64_t most = (int64_t)(ctx->scratch_bytes / sizeof(float)) / GH / B;
        if (most < 1) return lact_fail(LACT_E_UNSUPPORTED, "gates: batch %lld", (long long)B);
        tiles = (runs + most - 1) / most;
    }
    g->B = B, g->L = L, g->N = N, g->H = (int)H, g->G = (int)G, g->pos = (int)pos;
    g->tiles = (int)tiles;
    *grid = dim3((unsigned)((runs + tiles - 1) / tiles), (unsigned)B);
    return LACT_OK;
}

extern "C" lact_status lact_cuda_gates_forward(lact_ctx *ctx, lact_tensor *lr, lact_tensor *mom,
                                               lact_tensor *zg, const lact_tensor *z,
                                               const lact_tensor *b_lr, const lact_tensor *b_m,
                                               float shift) {
    gates_geom g;
    dim3 grid;
    size_t smem;
    LACT_TRY(gates_plan(ctx, z->shape[0], z->shape[1], zg->shape[1], zg->shape[0], false, &g, &grid,
                        &smem));
    gates_fwd_kernel<<<grid, GATES_THREADS, smem, lact_cuda_stream(ctx)>>>(
        (float *)lr->data, mom ? (float *)mom->data : NULL, (float *)zg->data,
        (const float *)z->data, (const float *)b_lr->data, b_m ? (const float *)b_m->data : NULL, g,
        shift);
    LACT_CU_LAUNCH("gates");
    return LACT_OK;
}

extern "C" lact_status lact_cuda_gates_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *db_lr,
                                                lact_tensor *db_m, const lact_tensor *dlr,
                                                const lact_tensor *dmom, const lact_tensor *zg,
                                                const lact_tensor *mom, float shift) {
    gates_geom g;
    dim3 grid;
    size_t smem;
    LACT_TRY(gates_plan(ctx, dz->shape[0], dz->shape[1], zg->shape[1], zg->shape[0], true, &g,
                        &grid, &smem));
    cudaStream_t st = lact_cuda_stream(ctx);
    const int64_t nblk = (int64_t)grid.x * grid.y;
    float *part_lr = (float *)ctx->scratch, *part_m = part_lr + nblk * 3 * g.H;
    const float *pm = mom ? (const float *)mom->data : NULL;
    const float *pdm = dmom ? (const float *)dmom->data : NULL;
    LACT_DISPATCH_FLOAT(dz->dtype, "gates backward", {
        gates_bwd_kernel<T><<<grid, GATES_THREADS, smem, st>>>(
            (T *)dz->data, part_lr, part_m, (const float *)dlr->data, pdm, (const float *)zg->data,
            pm, g, shift);
    });
    LACT_CU_LAUNCH("gates_backward");
    LACT_TRY(lact_colsum_final(st, part_lr, nblk, 3 * g.H, (float *)db_lr->data, true));
    if (db_m) LACT_TRY(lact_colsum_final(st, part_m, nblk, g.H, (float *)db_m->data, true));
    return LACT_OK;
}

extern "C" lact_status lact_cuda_softplus_forward(lact_ctx *ctx, lact_tensor *out,
                                                  const lact_tensor *x, float shift) {
    int64_t n = lact_tensor_numel(x);
    LACT_DISPATCH_FLOAT(x->dtype, "softplus", {
        LACT_TRY(map1(ctx, softplus_f{shift}, (T *)out->data, (const T *)x->data, n, "softplus"));
    });
    return LACT_OK;
}

extern "C" lact_status lact_cuda_softplus_backward(lact_ctx *ctx, lact_tensor *dx,
                                                   const lact_tensor *dout, const lact_tensor *x,
                                                   float shift) {
    int64_t n = lact_tensor_numel(x);
    if (!dx) return LACT_OK;
    LACT_DISPATCH_FLOAT(x->dtype, "softplus backward", {
        LACT_TRY(map2(ctx, softplus_bwd_f{shift}, (T *)dx->data, (const T *)dout->data,
                      (const T *)x->data, n, "softplus_backward"));
    });
    return LACT_OK;
}

extern "C" lact_status lact_cuda_sigmoid_forward(lact_ctx *ctx, lact_tensor *out,
                                                 const lact_tensor *x) {
    int64_t n = lact_tensor_numel(x);
    LACT_DISPATCH_FLOAT(x->dtype, "sigmoid", {
        LACT_TRY(map1(ctx, sigmoid_f(), (T *)out->data, (const T *)x->data, n, "sigmoid"));
    });
    return LACT_OK;
}

extern "C" lact_status lact_cuda_sigmoid_backward(lact_ctx *ctx, lact_tensor *dx,
                                                  const lact_tensor *dout, const lact_tensor *out) {
    int64_t n = lact_tensor_numel(out);
    if (!dx) return LACT_OK;
    LACT_DISPATCH_FLOAT(out->dtype, "sigmoid backward", {
        LACT_TRY(map2(ctx, sigmoid_bwd_f(), (T *)dx->data, (const T *)dout->data,
                      (const T *)out->data, n, "sigmoid_backward"));
    });
    return LACT_OK;
}

/* ---- casts ------------------------------------------------------------------ */

template <class TI>
static lact_status cast_from(lact_ctx *ctx, lact_tensor *out, const TI *x, int64_t n) {
    LACT_DISPATCH_FLOAT(out->dtype, "cast", {
        ew_io<1, 1, TI, T> io = {{x}, {(T *)out->data}};
        LACT_TRY(map_run(ctx, ew_copy_f(), io, n, "cast"));
    });
    return LACT_OK;
}

extern "C" lact_status lact_cuda_cast_forward(lact_ctx *ctx, lact_tensor *out,
                                              const lact_tensor *x) {
    int64_t n = lact_tensor_numel(x);
    if (!n) return LACT_OK;
    if (out->dtype == x->dtype) {
        LACT_CU(cudaMemcpyAsync(out->data, x->data, lact_tensor_nbytes(x), cudaMemcpyDeviceToDevice,
                                lact_cuda_stream(ctx)));
        return LACT_OK;
    }
    LACT_DISPATCH_FLOAT(x->dtype, "cast",
                        { LACT_TRY(cast_from<T>(ctx, out, (const T *)x->data, n)); });
    return LACT_OK;
}
