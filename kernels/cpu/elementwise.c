/* Elementwise ops on the CPU: add, mul (with b broadcast by repetition),
 * scale, silu, swiglu, softplus, sigmoid, and dtype casts. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"

static inline float sigmoid(float x) {
    return 1.0f / (1.0f + expf(-x));
}

/* d silu / dx = σ(x) (1 + x (1 − σ(x))). */
static inline float silu_grad(float x) {
    float s = sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
}

lact_status lact_cpu_add_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                 const lact_tensor *b) {
    const float *pa = a->data, *pb = b->data;
    float *po = out->data;
    int64_t n = lact_tensor_numel(a), nb = lact_tensor_numel(b);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        po[i] = pa[i] + pb[i % nb];
    return LACT_OK;
}

/* Sum of x[i] * (y ? y[i] : 1) over i ≡ j (mod nb), into r[j]: the gradient
 * of a broadcast operand. */
static void reduce_broadcast(float *r, int64_t nb, const float *x, const float *y, int64_t n) {
    int64_t reps = nb > 0 ? n / nb : 0;
#pragma omp parallel for
    for (int64_t j = 0; j < nb; j++) {
        double acc = 0.0;
        for (int64_t k = 0; k < reps; k++) {
            int64_t i = k * nb + j;
            acc += y ? (double)x[i] * y[i] : (double)x[i];
        }
        r[j] = (float)acc;
    }
}

lact_status lact_cpu_add_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                  const lact_tensor *dout) {
    int64_t n = lact_tensor_numel(dout);
    if (da) memmove(da->data, dout->data, (size_t)n * sizeof(float));
    if (db) reduce_broadcast(db->data, lact_tensor_numel(db), dout->data, NULL, n);
    return LACT_OK;
}

lact_status lact_cpu_mul_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                 const lact_tensor *b) {
    const float *pa = a->data, *pb = b->data;
    float *po = out->data;
    int64_t n = lact_tensor_numel(a), nb = lact_tensor_numel(b);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        po[i] = pa[i] * pb[i % nb];
    return LACT_OK;
}

lact_status lact_cpu_mul_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                  const lact_tensor *dout, const lact_tensor *a,
                                  const lact_tensor *b) {
    const float *pd = dout->data, *pb = b->data;
    int64_t n = lact_tensor_numel(a), nb = lact_tensor_numel(b);
    if (da) {
        float *pda = da->data;
#pragma omp parallel for
        for (int64_t i = 0; i < n; i++)
            pda[i] = pd[i] * pb[i % nb];
    }
    if (db) reduce_broadcast(db->data, nb, pd, a->data, n);
    return LACT_OK;
}

lact_status lact_cpu_scale_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a, float s) {
    const float *pa = a->data;
    float *po = out->data;
    int64_t n = lact_tensor_numel(a);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        po[i] = s * pa[i];
    return LACT_OK;
}

lact_status lact_cpu_scale_backward(lact_ctx *ctx, lact_tensor *da, const lact_tensor *dout,
                                    float s) {
    return lact_cpu_scale_forward(ctx, da, dout, s);
}

lact_status lact_cpu_silu_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    const float *px = x->data;
    float *po = out->data;
    int64_t n = lact_tensor_numel(x);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        po[i] = px[i] * sigmoid(px[i]);
    return LACT_OK;
}

lact_status lact_cpu_silu_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                   const lact_tensor *x) {
    const float *px = x->data, *pd = dout->data;
    float *pdx = dx->data;
    int64_t n = lact_tensor_numel(x);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        pdx[i] = pd[i] * silu_grad(px[i]);
    return LACT_OK;
}

lact_status lact_cpu_swiglu_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                    const lact_tensor *b) {
    const float *pa = a->data, *pb = b->data;
    float *po = out->data;
    int64_t n = lact_tensor_numel(a);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        po[i] = pa[i] * sigmoid(pa[i]) * pb[i];
    return LACT_OK;
}

lact_status lact_cpu_swiglu_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                     const lact_tensor *dout, const lact_tensor *a,
                                     const lact_tensor *b) {
    const float *pa = a->data, *pb = b->data, *pd = dout->data;
    float *pda = da ? da->data : NULL, *pdb = db ? db->data : NULL;
    int64_t n = lact_tensor_numel(a);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++) {
        if (pda) pda[i] = pd[i] * pb[i] * silu_grad(pa[i]);
        if (pdb) pdb[i] = pd[i] * pa[i] * sigmoid(pa[i]);
    }
    return LACT_OK;
}

lact_status lact_cpu_swiglu_packed_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *ab) {
    int64_t F = out->shape[out->ndim - 1], rows = F ? lact_tensor_numel(out) / F : 0;
    const float *p = ab->data;
    float *po = out->data;
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++) {
        const float *a = p + r * 2 * F, *b = a + F;
        for (int64_t c = 0; c < F; c++)
            po[r * F + c] = a[c] * sigmoid(a[c]) * b[c];
    }
    return LACT_OK;
}

lact_status lact_cpu_swiglu_packed_backward(lact_ctx *ctx, lact_tensor *dab,
                                            const lact_tensor *dout, const lact_tensor *ab) {
    int64_t F = dout->shape[dout->ndim - 1], rows = F ? lact_tensor_numel(dout) / F : 0;
    const float *p = ab->data, *pd = dout->data;
    float *pg = dab->data;
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++) {
        const float *a = p + r * 2 * F, *b = a + F, *d = pd + r * F;
        float *da = pg + r * 2 * F, *db = da + F;
        for (int64_t c = 0; c < F; c++) {
            da[c] = d[c] * b[c] * silu_grad(a[c]);
            db[c] = d[c] * a[c] * sigmoid(a[c]);
        }
    }
    return LACT_OK;
}

/* σ(z) without overflow for either sign: e^z / (1 + e^z) below zero. */
static inline float sigmoid_stable(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

/* log(1 + e^z) = max(z, 0) + log1p(e^−|z|): e^−|z| ≤ 1 never overflows, and
 * log1p keeps the tiny values of very negative z. */
static inline float softplus_stable(float z) {
    return fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z)));
}

lact_status lact_cpu_softplus_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x,
                                      float shift) {
    const float *px = x->data;
    float *po = out->data;
    int64_t n = lact_tensor_numel(x);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        po[i] = softplus_stable(px[i] + shift);
    return LACT_OK;
}

lact_status lact_cpu_softplus_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                       const lact_tensor *x, float shift) {
    const float *px = x->data, *pd = dout->data;
    float *pdx = dx->data;
    int64_t n = lact_tensor_numel(x);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        pdx[i] = pd[i] * sigmoid_stable(px[i] + shift);
    return LACT_OK;
}

lact_status lact_cpu_gates_forward(lact_ctx *ctx, lact_tensor *lr, lact_tensor *mom,
                                   lact_tensor *zg, const lact_tensor *z, const lact_tensor *b_lr,
                                   const lact_tensor *b_m, float shift) {
    int64_t G = zg->shape[0], N = zg->shape[1], L = zg->shape[2], B = z->shape[0], H = N / B;
    const float *pz = z->data, *pb = b_lr->data, *pm = b_m ? b_m->data : NULL;
    float *pg = zg->data, *pl = lr->data, *po = mom ? mom->data : NULL;
#pragma omp parallel for
    for (int64_t n = 0; n < N; n++) {
        int64_t b = n / H, h = n % H;
        for (int64_t i = 0; i < G; i++) {
            float bias = i < 3 ? pb[i * H + h] : pm[h];
            for (int64_t l = 0; l < L; l++) {
                float t = pz[(b * L + l) * G * H + i * H + h] + bias;
                int64_t at = (i * N + n) * L + l;
                pg[at] = t;
                if (i < 3)
                    pl[at] = softplus_stable(t + shift);
                else
                    po[n * L + l] = sigmoid_stable(t);
            }
        }
    }
    return LACT_OK;
}

lact_status lact_cpu_gates_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *db_lr,
                                    lact_tensor *db_m, const lact_tensor *dlr,
                                    const lact_tensor *dmom, const lact_tensor *zg,
                                    const lact_tensor *mom, float shift) {
    int64_t G = zg->shape[0], N = zg->shape[1], L = zg->shape[2], B = dz->shape[0], H = N / B;
    const float *pg = zg->data, *pd = dlr->data, *pdm = dmom ? dmom->data : NULL;
    const float *po = mom ? mom->data : NULL;
    float *pz = dz->data, *pb = db_lr->data, *pm = db_m ? db_m->data : NULL;
    /* per column: the gradient in z's layout, and its sum over (b, l) in
     * that order */
#pragma omp parallel for
    for (int64_t c = 0; c < G * H; c++) {
        int64_t i = c / H, h = c % H;
        double sum = 0.0;
        for (int64_t b = 0; b < B; b++) {
            int64_t n = b * H + h;
            for (int64_t l = 0; l < L; l++) {
                int64_t at = (i * N + n) * L + l;
                float g = i < 3 ? pd[at] * sigmoid_stable(pg[at] + shift)
                                : pdm[n * L + l] * po[n * L + l] * (1.0f - po[n * L + l]);
                pz[(b * L + l) * G * H + c] = g;
                sum += g;
            }
        }
        if (i < 3)
            pb[c] += (float)sum;
        else
            pm[h] += (float)sum;
    }
    return LACT_OK;
}

lact_status lact_cpu_sigmoid_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    const float *px = x->data;
    float *po = out->data;
    int64_t n = lact_tensor_numel(x);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        po[i] = sigmoid_stable(px[i]);
    return LACT_OK;
}

lact_status lact_cpu_sigmoid_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                      const lact_tensor *out) {
    const float *py = out->data, *pd = dout->data;
    float *pdx = dx->data;
    int64_t n = lact_tensor_numel(out);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        pdx[i] = pd[i] * py[i] * (1.0f - py[i]);
    return LACT_OK;
}

static float load_float(const void *p, lact_dtype dt, int64_t i) {
    switch (dt) {
    case LACT_BF16:
        return lact_bf16_to_f32(((const uint16_t *)p)[i]);
    case LACT_F16:
        return lact_f16_to_f32(((const uint16_t *)p)[i]);
    default:
        return ((const float *)p)[i];
    }
}

static void store_float(void *p, lact_dtype dt, int64_t i, float v) {
    switch (dt) {
    case LACT_BF16:
        ((uint16_t *)p)[i] = lact_f32_to_bf16(v);
        break;
    case LACT_F16:
        ((uint16_t *)p)[i] = lact_f32_to_f16(v);
        break;
    default:
        ((float *)p)[i] = v;
        break;
    }
}

lact_status lact_cpu_cast_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    int64_t n = lact_tensor_numel(x);
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        store_float(out->data, out->dtype, i, load_float(x->data, x->dtype, i));
    return LACT_OK;
}
