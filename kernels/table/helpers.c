/* Helpers shared by the rows of the op table. */
#include "kernels/table/rows.h"

bool lact_optab_present(const lact_tensor *t) {
    return t->data != NULL || t->ndim > 0;
}

const lact_tensor *lact_optab_opt(const lact_tensor *t) {
    return lact_optab_present(t) ? t : NULL;
}

lact_status lact_optab_need(const char *op, const char *name, const lact_tensor *t, unsigned dtypes,
                            lact_device dev) {
    if (!lact_optab_present(t)) return lact_fail(LACT_E_ARG, "%s: input %s is missing", op, name);
    return lact_optab_maybe(op, name, t, dtypes, dev);
}

lact_status lact_optab_maybe(const char *op, const char *name, const lact_tensor *t,
                             unsigned dtypes, lact_device dev) {
    if (!lact_optab_present(t)) return LACT_OK;
    if ((int)t->dtype < 0 || t->dtype >= LACT_DTYPE_COUNT || !(dtypes & LACT_DT(t->dtype))) {
        const char *want = dtypes == OPTAB_ACT   ? "F32 or BF16"
                           : dtypes == OPTAB_F32 ? "F32"
                           : dtypes == OPTAB_I32 ? "I32"
                                                 : "F32, BF16 or F16";
        return lact_fail(LACT_E_ARG, "%s: input %s has dtype %s, expected %s", op, name,
                         lact_dtype_name(t->dtype), want);
    }
    if (t->device != dev)
        return lact_fail(LACT_E_ARG, "%s: input %s is on %s, the other inputs on %s", op, name,
                         lact_device_name(t->device), lact_device_name(dev));
    return LACT_OK;
}

lact_tensor lact_optab_out(lact_device dev, lact_dtype dt, int ndim, const int64_t *shape) {
    return lact_tensor_view(NULL, dt, dev, ndim, shape);
}

lact_tensor *lact_optab_grad(lact_tensor *d_in, const lact_tensor *in, int i) {
    if (!d_in || !lact_optab_present(&in[i]) || !lact_optab_present(&d_in[i])) return NULL;
    return &d_in[i];
}

bool lact_optab_rand(lact_tensor *t, lact_rng *rng, int ndim, const int64_t *shape, float lo,
                     float hi) {
    if (lact_tensor_alloc(t, LACT_F32, LACT_CPU, ndim, shape) != LACT_OK) return false;
    float *p = t->data;
    for (int64_t i = 0; i < lact_tensor_numel(t); i++)
        p[i] = lo + (hi - lo) * lact_rng_uniform(rng);
    return true;
}

bool lact_optab_randn(lact_tensor *t, lact_rng *rng, int ndim, const int64_t *shape, float std) {
    if (lact_tensor_alloc(t, LACT_F32, LACT_CPU, ndim, shape) != LACT_OK) return false;
    float *p = t->data;
    for (int64_t i = 0; i < lact_tensor_numel(t); i++)
        p[i] = std * lact_rng_normal(rng);
    return true;
}

bool lact_optab_ids(lact_tensor *t, lact_rng *rng, int ndim, const int64_t *shape, int64_t lo,
                    int64_t hi) {
    if (lact_tensor_alloc(t, LACT_I32, LACT_CPU, ndim, shape) != LACT_OK) return false;
    int32_t *p = t->data;
    uint64_t span = (uint64_t)(hi - lo);
    for (int64_t i = 0; i < lact_tensor_numel(t); i++)
        p[i] = (int32_t)(lo + (int64_t)(lact_rng_u32(rng) % span));
    return true;
}

void lact_optab_free(lact_tensor *in, int n) {
    for (int i = 0; i < n; i++)
        lact_tensor_free(&in[i]);
}
