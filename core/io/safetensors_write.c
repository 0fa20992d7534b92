/* Writing safetensors files.
 *
 * PyTorch's reader insists that the tensors tile the data section exactly (no
 * gaps), so alignment cannot come from padding between tensors. Instead the
 * tensors are laid out by element size, largest first: every tensor then
 * starts at a multiple of its own element size, and the header is padded with
 * spaces so that the data section starts on an 8-byte boundary. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/device.h"
#include "file.h"

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static lact_status check_names(const char *path, int n, const char *const *names) {
    for (int i = 0; i < n; i++) {
        if (!names[i] || !names[i][0])
            return lact_fail(LACT_E_ARG, "%s: tensor %d has an empty name", path, i);
        if (strcmp(names[i], "__metadata__") == 0)
            return lact_fail(LACT_E_ARG, "%s: '__metadata__' cannot name a tensor", path);
    }
    if (n < 2) return LACT_OK;
    const char **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return lact_fail(LACT_E_NOMEM, "%s: out of memory", path);
    memcpy(sorted, names, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, name_cmp);
    lact_status s = LACT_OK;
    for (int i = 1; i < n && s == LACT_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            s = lact_fail(LACT_E_ARG, "%s: tensor name '%s' is used twice", path, sorted[i]);
    free(sorted);
    return s;
}

static lact_status check_tensor(const char *path, const char *name, const lact_tensor *t) {
    if ((int)t->dtype < 0 || t->dtype >= LACT_DTYPE_COUNT)
        return lact_fail(LACT_E_ARG, "%s: tensor '%s' has an invalid dtype", path, name);
    if (t->ndim < 0 || t->ndim > LACT_MAX_DIMS)
        return lact_fail(LACT_E_ARG, "%s: tensor '%s' has %d dims", path, name, t->ndim);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0)
            return lact_fail(LACT_E_ARG, "%s: tensor '%s' has a negative dim", path, name);
    if (!lact_tensor_is_contiguous(t))
        return lact_fail(LACT_E_ARG, "%s: tensor '%s' is not contiguous", path, name);
    if (lact_tensor_nbytes(t) && !t->data)
        return lact_fail(LACT_E_ARG, "%s: tensor '%s' has no data", path, name);
    return LACT_OK;
}

/* Stable order by element size, largest first. */
static void order_by_size(int n, const lact_tensor *tensors, int *order) {
    static const size_t sizes[] = {8, 4, 2, 1};
    int k = 0;
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < n; i++)
            if (lact_dtype_size(tensors[i].dtype) == sizes[s]) order[k++] = i;
}

static cJSON *json_int_array(int count, const int64_t *v) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < count; i++) {
        char num[32];
        snprintf(num, sizeof num, "%lld", (long long)v[i]);
        /* Raw digits: cJSON's own number printing can switch to exponents. */
        if (!cJSON_AddItemToArray(arr, cJSON_CreateRaw(num))) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

static cJSON *build_header(int n, const char *const *names, const lact_tensor *tensors,
                           const int *order, int n_meta, const char *const *meta_keys,
                           const char *const *meta_values) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    if (n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; meta && i < n_meta; i++)
            if (!cJSON_AddStringToObject(meta, meta_keys[i], meta_values[i])) meta = NULL;
        if (!meta) goto fail;
    }
    int64_t offset = 0;
    for (int k = 0; k < n; k++) {
        const lact_tensor *t = &tensors[order[k]];
        int64_t offs[2] = {offset, offset + (int64_t)lact_tensor_nbytes(t)};
        offset = offs[1];
        cJSON *e = cJSON_AddObjectToObject(root, names[order[k]]);
        if (!e || !cJSON_AddStringToObject(e, "dtype", lact_dtype_name(t->dtype))) goto fail;
        cJSON *shape = json_int_array(t->ndim, t->shape);
        if (!shape || !cJSON_AddItemToObject(e, "shape", shape)) {
            cJSON_Delete(shape);
            goto fail;
        }
        cJSON *range = json_int_array(2, offs);
        if (!range || !cJSON_AddItemToObject(e, "data_offsets", range)) {
            cJSON_Delete(range);
            goto fail;
        }
    }
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}

/* Writes the data of every tensor in order, staging device tensors through
 * one host buffer. */
static lact_status write_data(lact_atomic_file *af, int n, const lact_tensor *tensors,
                              const int *order) {
    size_t staging_bytes = 0;
    for (int i = 0; i < n; i++)
        if (tensors[i].device != LACT_CPU && lact_tensor_nbytes(&tensors[i]) > staging_bytes)
            staging_bytes = lact_tensor_nbytes(&tensors[i]);
    void *staging = NULL;
    if (staging_bytes) LACT_TRY(lact_mem_alloc(LACT_CPU, staging_bytes, &staging));
    lact_status s = LACT_OK;
    for (int k = 0; k < n && s == LACT_OK; k++) {
        const lact_tensor *t = &tensors[order[k]];
        size_t bytes = lact_tensor_nbytes(t);
        if (!bytes) continue;
        if (t->device == LACT_CPU) {
            s = lact_atomic_write(af, t->data, bytes);
        } else {
            lact_tensor host = lact_tensor_view(staging, t->dtype, LACT_CPU, t->ndim, t->shape);
            s = lact_tensor_copy(&host, t);
            if (s == LACT_OK) s = lact_atomic_write(af, staging, bytes);
        }
    }
    lact_mem_free(LACT_CPU, staging);
    return s;
}

static lact_status st_write(const char *path, int n, const char *const *names,
                            const lact_tensor *tensors, int n_meta, const char *const *meta_keys,
                            const char *const *meta_values, int *order) {
    LACT_TRY(check_names(path, n, names));
    for (int i = 0; i < n; i++)
        LACT_TRY(check_tensor(path, names[i], &tensors[i]));
    for (int i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i])
            return lact_fail(LACT_E_ARG, "%s: metadata entry %d is NULL", path, i);
        for (int j = 0; j < i; j++)
            if (strcmp(meta_keys[i], meta_keys[j]) == 0)
                return lact_fail(LACT_E_ARG, "%s: metadata key '%s' is used twice", path,
                                 meta_keys[i]);
    }
    order_by_size(n, tensors, order);

    cJSON *root = build_header(n, names, tensors, order, n_meta, meta_keys, meta_values);
    char *json = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) return lact_fail(LACT_E_NOMEM, "%s: out of memory building the header", path);
    size_t jlen = strlen(json);
    size_t hlen = (jlen + 7) & ~(size_t)7;
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    static const char spaces[8] = "        ";

    lact_atomic_file af;
    lact_status s = lact_atomic_open(&af, path);
    if (s == LACT_OK) s = lact_atomic_write(&af, prefix, sizeof prefix);
    if (s == LACT_OK) s = lact_atomic_write(&af, json, jlen);
    if (s == LACT_OK) s = lact_atomic_write(&af, spaces, hlen - jlen);
    free(json);
    if (s == LACT_OK) s = write_data(&af, n, tensors, order);
    if (s == LACT_OK) return lact_atomic_commit(&af);
    if (af.fp) lact_atomic_abort(&af);
    return s;
}

lact_status lact_st_write(const char *path, int n, const char *const *names,
                          const lact_tensor *tensors, int n_meta, const char *const *meta_keys,
                          const char *const *meta_values) {
    if (n < 0 || n_meta < 0)
        return lact_fail(LACT_E_ARG, "%s: negative tensor or metadata count", path);
    int *order = malloc(((size_t)n + 1) * sizeof *order);
    if (!order) return lact_fail(LACT_E_NOMEM, "%s: out of memory", path);
    lact_status s = st_write(path, n, names, tensors, n_meta, meta_keys, meta_values, order);
    free(order);
    return s;
}
