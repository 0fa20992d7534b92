#include "params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/device.h"
#include "core/io/safetensors.h"
#include "kernels/kernels.h"

/* 64 F32 elements = 256 bytes: every view starts where a vectorised kernel
 * or cuBLAS wants it. */
#define PARAM_ALIGN 64

void lact_params_init(lact_params *p, lact_device dev) {
    memset(p, 0, sizeof *p);
    p->device = dev;
}

void lact_params_free(lact_params *p) {
    if (!p) return;
    lact_mem_free(p->device, p->weights);
    lact_mem_free(p->device, p->grads);
    lact_mem_free(p->device, p->state);
    lact_mem_free(p->device, p->shadow);
    free(p->items);
    lact_device dev = p->device;
    memset(p, 0, sizeof *p);
    p->device = dev;
}

lact_status lact_params_join(char *buf, size_t n, const char *prefix, const char *name) {
    int w = (prefix && prefix[0]) ? snprintf(buf, n, "%s.%s", prefix, name)
                                  : snprintf(buf, n, "%s", name);
    if (w < 0 || (size_t)w >= n)
        return lact_fail(LACT_E_ARG, "parameter name \"%s.%s\" is longer than %zu characters",
                         prefix ? prefix : "", name, n - 1);
    return LACT_OK;
}

lact_status lact_params_declare_in(lact_params *p, const char *prefix, const char *name, int ndim,
                                   const int64_t *shape, lact_init init, int *id) {
    char full[LACT_PARAM_NAME_MAX];
    LACT_TRY(lact_params_join(full, sizeof full, prefix, name));
    return lact_params_declare(p, full, ndim, shape, init, id);
}

int lact_params_find(const lact_params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->items[i].name, name) == 0) return i;
    return -1;
}

lact_status lact_params_declare(lact_params *p, const char *name, int ndim, const int64_t *shape,
                                lact_init init, int *id) {
    if (p->allocated)
        return lact_fail(LACT_E_ARG, "parameter %s declared after the store was allocated", name);
    size_t len = strlen(name);
    if (len == 0 || len >= LACT_PARAM_NAME_MAX)
        return lact_fail(LACT_E_ARG, "parameter name \"%s\" is empty or longer than %d characters",
                         name, LACT_PARAM_NAME_MAX - 1);
    if (ndim < 1 || ndim > LACT_MAX_DIMS)
        return lact_fail(LACT_E_ARG, "parameter %s has %d dims (1 to %d)", name, ndim,
                         LACT_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 1)
            return lact_fail(LACT_E_ARG, "parameter %s has dim %d = %lld", name, i,
                             (long long)shape[i]);
    if (lact_params_find(p, name) >= 0)
        return lact_fail(LACT_E_ARG, "parameter %s is declared twice", name);
    if (init.kind == LACT_INIT_NORMAL && !(init.value >= 0.0f))
        return lact_fail(LACT_E_ARG, "parameter %s: normal init with std %g", name,
                         (double)init.value);
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 32;
        lact_param *items = realloc(p->items, (size_t)cap * sizeof *items);
        if (!items) return lact_fail(LACT_E_NOMEM, "parameter list of %d entries", cap);
        p->items = items;
        p->cap = cap;
    }
    lact_param *it = &p->items[p->n];
    memset(it, 0, sizeof *it);
    memcpy(it->name, name, len + 1);
    it->ndim = ndim;
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        it->shape[i] = shape[i];
        numel *= shape[i];
    }
    it->init = init;
    p->padded += (numel + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN; /* offset: at alloc */
    p->numel += numel;
    if (id) *id = p->n;
    p->n++;
    return LACT_OK;
}

static lact_tensor block_view(const lact_params *p, float *block, const lact_param *it) {
    return lact_tensor_view(block + it->offset, LACT_F32, p->device, it->ndim, it->shape);
}

static lact_status alloc_block(const lact_params *p, int64_t elems, const char *what, float **out) {
    size_t bytes = (size_t)(elems > 0 ? elems : 1) * sizeof(float);
    void *mem = NULL;
    lact_status s = lact_mem_alloc(p->device, bytes, &mem);
    if (s != LACT_OK)
        return lact_fail_context(s, "parameter %s (%zu bytes on %s)", what, bytes,
                                 lact_device_name(p->device));
    s = lact_mem_zero(p->device, mem, bytes);
    if (s != LACT_OK) {
        lact_mem_free(p->device, mem);
        return s;
    }
    *out = mem;
    return LACT_OK;
}

/* Offsets in the blocks: the matrices in declaration order, then the
 * vectors (params.h). */
static void place(lact_params *p) {
    int64_t at = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < p->n; i++) {
            lact_param *it = &p->items[i];
            if ((it->ndim >= 2) != (pass == 0)) continue;
            int64_t numel = 1;
            for (int k = 0; k < it->ndim; k++)
                numel *= it->shape[k];
            it->offset = at;
            at += (numel + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
        }
        if (pass == 0) p->matrix_end = at;
    }
}

lact_status lact_params_alloc(lact_params *p) {
    if (p->allocated) return lact_fail(LACT_E_ARG, "parameter store allocated twice");
    place(p);
    LACT_TRY(alloc_block(p, p->padded, "weights", &p->weights));
    lact_status s = alloc_block(p, p->padded, "gradients", &p->grads);
    if (s != LACT_OK) {
        lact_mem_free(p->device, p->weights);
        p->weights = NULL;
        return s;
    }
    for (int i = 0; i < p->n; i++) {
        lact_param *it = &p->items[i];
        it->w = block_view(p, p->weights, it);
        it->g = block_view(p, p->grads, it);
        it->wb = lact_tensor_view(NULL, LACT_BF16, p->device, it->ndim, it->shape);
    }
    p->allocated = true;
    return LACT_OK;
}

lact_status lact_params_alloc_shadow(lact_params *p) {
    if (!p->allocated) return lact_fail(LACT_E_ARG, "BF16 shadow before the parameters");
    if (p->shadow) return lact_fail(LACT_E_ARG, "BF16 shadow allocated twice");
    size_t bytes = (size_t)(p->padded > 0 ? p->padded : 1) * sizeof(uint16_t);
    void *mem = NULL;
    lact_status s = lact_mem_alloc(p->device, bytes, &mem);
    if (s != LACT_OK)
        return lact_fail_context(s, "parameter BF16 shadow (%zu bytes on %s)", bytes,
                                 lact_device_name(p->device));
    p->shadow = mem;
    for (int i = 0; i < p->n; i++) {
        lact_param *it = &p->items[i];
        it->wb =
            lact_tensor_view(p->shadow + it->offset, LACT_BF16, p->device, it->ndim, it->shape);
    }
    p->shadow_stale = true;
    return LACT_OK;
}

lact_status lact_params_sync_shadow(lact_ctx *ctx, lact_params *p) {
    if (!p->shadow) return LACT_OK;
    /* The whole block at once: the padding is zero in both. */
    int64_t n[1] = {p->padded > 0 ? p->padded : 1};
    lact_tensor src = lact_tensor_view(p->weights, LACT_F32, p->device, 1, n);
    lact_tensor dst = lact_tensor_view(p->shadow, LACT_BF16, p->device, 1, n);
    LACT_TRY(lact_cast_forward(ctx, &dst, &src));
    p->shadow_stale = false;
    return LACT_OK;
}

lact_status lact_params_refresh_shadow(lact_ctx *ctx, lact_params *p) {
    return p->shadow && p->shadow_stale ? lact_params_sync_shadow(ctx, p) : LACT_OK;
}

void lact_params_weights_changed(lact_params *p) {
    p->shadow_stale = true;
}

lact_status lact_params_alloc_state(lact_params *p, int k) {
    if (!p->allocated) return lact_fail(LACT_E_ARG, "optimizer state before the parameters");
    if (p->state) return lact_fail(LACT_E_ARG, "optimizer state allocated twice");
    if (k < 1 || k > LACT_PARAM_STATE_MAX)
        return lact_fail(LACT_E_ARG, "optimizer state of %d slots (1 to %d)", k,
                         LACT_PARAM_STATE_MAX);
    LACT_TRY(alloc_block(p, p->padded * k, "optimizer state", &p->state));
    for (int i = 0; i < p->n; i++)
        for (int j = 0; j < k; j++)
            p->items[i].state[j] = block_view(p, p->state + (int64_t)j * p->padded, &p->items[i]);
    p->n_state = k;
    return LACT_OK;
}

uint64_t lact_params_stream(const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
        h ^= *c;
        h *= 0x100000001b3ull;
    }
    return h;
}

lact_status lact_params_init_values(lact_ctx *ctx, lact_params *p, uint64_t seed) {
    if (!p->allocated) return lact_fail(LACT_E_ARG, "parameters initialised before allocation");
    for (int i = 0; i < p->n; i++) {
        lact_param *it = &p->items[i];
        lact_status s;
        switch (it->init.kind) {
        case LACT_INIT_NORMAL:
            s = lact_fill_normal(ctx, &it->w, seed, lact_params_stream(it->name), 0.0f,
                                 it->init.value);
            break;
        case LACT_INIT_ONES:
            s = lact_fill_uniform(ctx, &it->w, seed, 0, 1.0f, 1.0f);
            break;
        case LACT_INIT_ZEROS:
            s = lact_fill_uniform(ctx, &it->w, seed, 0, 0.0f, 0.0f);
            break;
        case LACT_INIT_CONSTANT:
            /* lo = hi: lo + 0·u is exactly the constant. */
            s = lact_fill_uniform(ctx, &it->w, seed, 0, it->init.value, it->init.value);
            break;
        default:
            s = lact_fail(LACT_E_ARG, "unknown init kind %d", (int)it->init.kind);
        }
        if (s != LACT_OK) return lact_fail_context(s, "init of parameter %s", it->name);
    }
    return lact_params_sync_shadow(ctx, p);
}

lact_status lact_params_zero_grad(lact_params *p) {
    if (!p->allocated) return LACT_OK;
    return lact_mem_zero(p->device, p->grads, (size_t)p->padded * sizeof(float));
}

int lact_params_count(const lact_params *p) {
    return p->n;
}

lact_param *lact_params_at(lact_params *p, int i) {
    return (i >= 0 && i < p->n) ? &p->items[i] : NULL;
}

size_t lact_params_bytes(const lact_params *p) {
    return (size_t)p->padded * sizeof(float) * (size_t)(2 + p->n_state) +
           (p->shadow ? (size_t)p->padded * sizeof(uint16_t) : 0);
}

lact_status lact_params_save(const lact_params *p, const char *path, int n_meta,
                             const char *const *meta_keys, const char *const *meta_values) {
    if (!p->allocated) return lact_fail(LACT_E_ARG, "%s: parameters saved before allocation", path);
    const char **names = malloc((size_t)(p->n ? p->n : 1) * sizeof *names);
    lact_tensor *ts = malloc((size_t)(p->n ? p->n : 1) * sizeof *ts);
    if (!names || !ts) {
        free(names);
        free(ts);
        return lact_fail(LACT_E_NOMEM, "%s: list of %d tensors", path, p->n);
    }
    for (int i = 0; i < p->n; i++) {
        names[i] = p->items[i].name;
        ts[i] = p->items[i].w;
    }
    lact_status s = lact_st_write(path, p->n, names, ts, n_meta, meta_keys, meta_values);
    free(names);
    free(ts);
    return s;
}

static bool same_shape(const lact_param *it, const lact_st_entry *e) {
    if (e->ndim != it->ndim) return false;
    for (int i = 0; i < it->ndim; i++)
        if (e->shape[i] != it->shape[i]) return false;
    return true;
}

lact_status lact_params_load(lact_params *p, const char *path, bool strict) {
    if (!p->allocated)
        return lact_fail(LACT_E_ARG, "%s: parameters loaded before allocation", path);
    lact_st_file f;
    LACT_TRY(lact_st_open(&f, path));
    lact_params_weights_changed(p);
    lact_status s = LACT_OK;
    for (int i = 0; i < p->n && s == LACT_OK; i++) {
        lact_param *it = &p->items[i];
        int k = lact_st_find(&f, it->name);
        if (k < 0) {
            s = lact_fail(LACT_E_NOT_FOUND, "%s: no tensor %s", path, it->name);
            break;
        }
        const lact_st_entry *e = &f.entries[k];
        if (!same_shape(it, e)) {
            char want[96], got[96];
            lact_tensor fv = lact_st_view(&f, k);
            s = lact_fail(LACT_E_FORMAT, "%s: tensor %s has shape %s, the model expects %s", path,
                          it->name, lact_tensor_describe(&fv, got, sizeof got),
                          lact_tensor_describe(&it->w, want, sizeof want));
            break;
        }
        if (!lact_dtype_is_float(e->dtype)) {
            s = lact_fail(LACT_E_FORMAT, "%s: tensor %s is %s, not a float type", path, it->name,
                          lact_dtype_name(e->dtype));
            break;
        }
        lact_tensor src = lact_st_view(&f, k);
        s = lact_tensor_copy(&it->w, &src);
        if (s != LACT_OK) s = lact_fail_context(s, "%s: tensor %s", path, it->name);
    }
    if (s == LACT_OK && strict) {
        for (int k = 0; k < f.n; k++) {
            if (lact_params_find(p, f.entries[k].name) < 0) {
                s = lact_fail(LACT_E_FORMAT, "%s: tensor %s is not a parameter of this model", path,
                              f.entries[k].name);
                break;
            }
        }
    }
    lact_st_close(&f);
    return s;
}
