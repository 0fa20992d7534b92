/* Reading safetensors files: map, validate everything, then hand out views. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L

#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest integer a JSON number (a double) holds exactly. */
#define ST_MAX_INT 9007199254740992.0

static uint64_t read_u64_le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static bool json_to_size(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static void format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && len < n; d++)
        len += (size_t)snprintf(buf + len, n - len, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (len < n) snprintf(buf + len, n - len, "]");
}

/* Parses one tensor entry into e (name set by the caller). */
static lact_status parse_entry(const char *path, const char *name, const cJSON *obj,
                               uint64_t data_bytes, lact_st_entry *e) {
    if (!cJSON_IsObject(obj))
        return lact_fail(LACT_E_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return lact_fail(LACT_E_FORMAT,
                         "%s: tensor '%s': needs \"dtype\" (string), \"shape\" (array) and "
                         "\"data_offsets\" (array)",
                         path, name);
    if (lact_dtype_parse(dtype->valuestring, &e->dtype) != LACT_OK)
        return lact_fail(LACT_E_FORMAT,
                         "%s: tensor '%s': unsupported dtype '%s' (expected F32, BF16, F16, I32, "
                         "U8, F64 or I64)",
                         path, name, dtype->valuestring);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > LACT_MAX_DIMS)
        return lact_fail(LACT_E_FORMAT, "%s: tensor '%s': %d dims (at most %d are supported)", path,
                         name, ndim, LACT_MAX_DIMS);
    e->ndim = ndim;
    uint64_t numel = 1;
    bool overflow = false;
    for (int d = 0; d < ndim; d++) {
        uint64_t dim;
        if (!json_to_size(cJSON_GetArrayItem(shape, d), &dim))
            return lact_fail(LACT_E_FORMAT,
                             "%s: tensor '%s': shape entry %d is not a non-negative integer", path,
                             name, d);
        e->shape[d] = (int64_t)dim;
        if (dim && numel > UINT64_MAX / dim) overflow = true;
        numel *= dim;
    }
    uint64_t begin, end;
    if (cJSON_GetArraySize(offs) != 2 || !json_to_size(cJSON_GetArrayItem(offs, 0), &begin) ||
        !json_to_size(cJSON_GetArrayItem(offs, 1), &end))
        return lact_fail(LACT_E_FORMAT,
                         "%s: tensor '%s': data_offsets must be two non-negative integers", path,
                         name);
    if (begin > end || end > data_bytes)
        return lact_fail(LACT_E_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] lie outside the data "
                         "section (%llu bytes)",
                         path, name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_bytes);
    size_t esize = lact_dtype_size(e->dtype);
    if (overflow || numel > UINT64_MAX / esize || end - begin != numel * esize) {
        char sh[128];
        format_shape(sh, sizeof sh, ndim, e->shape);
        return lact_fail(LACT_E_FORMAT,
                         "%s: tensor '%s': data_offsets [%llu, %llu] do not match shape %s %s "
                         "(%llu bytes)",
                         path, name, (unsigned long long)begin, (unsigned long long)end, sh,
                         lact_dtype_name(e->dtype),
                         overflow ? 0ull : (unsigned long long)(numel * esize));
    }
    e->offset = (size_t)begin;
    e->nbytes = (size_t)(end - begin);
    return LACT_OK;
}

static int entry_cmp(const void *a, const void *b) {
    const lact_st_entry *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Copies the string into the file's string storage. */
static const char *store_string(char **cursor, const char *s) {
    size_t n = strlen(s) + 1;
    memcpy(*cursor, s, n);
    const char *out = *cursor;
    *cursor += n;
    return out;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* cJSON keeps repeated keys, so a file could name one tensor twice. */
static lact_status check_unique(const lact_st_file *f) {
    if (f->n < 2) return LACT_OK;
    const char **names = malloc((size_t)f->n * sizeof *names);
    if (!names) return lact_fail(LACT_E_NOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < f->n; i++)
        names[i] = f->entries[i].name;
    qsort(names, (size_t)f->n, sizeof *names, name_cmp);
    lact_status s = LACT_OK;
    for (int i = 1; i < f->n && s == LACT_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            s = lact_fail(LACT_E_FORMAT, "%s: tensor '%s' appears twice", f->path, names[i]);
    free(names);
    return s;
}

static lact_status parse_header(lact_st_file *f, const cJSON *root, uint64_t data_bytes) {
    const char *path = f->path;
    if (!cJSON_IsObject(root))
        return lact_fail(LACT_E_FORMAT, "%s: header is not a JSON object", path);
    size_t strings = 0;
    int n = 0, n_meta = 0;
    const cJSON *meta = NULL;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) {
            meta = it;
            continue;
        }
        n++;
        strings += strlen(it->string) + 1;
    }
    if (meta) {
        if (!cJSON_IsObject(meta))
            return lact_fail(LACT_E_FORMAT, "%s: __metadata__ is not a JSON object", path);
        for (const cJSON *it = meta->child; it; it = it->next) {
            if (!cJSON_IsString(it))
                return lact_fail(LACT_E_FORMAT, "%s: __metadata__ value of '%s' is not a string",
                                 path, it->string);
            n_meta++;
            strings += strlen(it->string) + strlen(it->valuestring) + 2;
        }
    }
    f->entries = calloc((size_t)n + 1, sizeof *f->entries);
    f->meta_keys = calloc((size_t)n_meta + 1, sizeof *f->meta_keys);
    f->meta_values = calloc((size_t)n_meta + 1, sizeof *f->meta_values);
    f->strings = malloc(strings + 1);
    if (!f->entries || !f->meta_keys || !f->meta_values || !f->strings)
        return lact_fail(LACT_E_NOMEM, "%s: out of memory reading the header", path);
    char *cursor = f->strings;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (it == meta) continue;
        lact_st_entry *e = &f->entries[f->n];
        LACT_TRY(parse_entry(path, it->string, it, data_bytes, e));
        e->name = store_string(&cursor, it->string);
        f->n++;
    }
    if (meta) {
        for (const cJSON *it = meta->child; it; it = it->next) {
            f->meta_keys[f->n_meta] = store_string(&cursor, it->string);
            f->meta_values[f->n_meta] = store_string(&cursor, it->valuestring);
            f->n_meta++;
        }
    }
    qsort(f->entries, (size_t)f->n, sizeof *f->entries, entry_cmp);
    /* Empty tensors occupy no bytes and cannot overlap anything. */
    const lact_st_entry *prev = NULL;
    for (int i = 0; i < f->n; i++) {
        const lact_st_entry *e = &f->entries[i];
        if (e->nbytes == 0) continue;
        if (prev && e->offset < prev->offset + prev->nbytes)
            return lact_fail(LACT_E_FORMAT,
                             "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap", path,
                             prev->name, prev->offset, prev->offset + prev->nbytes, e->name,
                             e->offset, e->offset + e->nbytes);
        prev = e;
    }
    return check_unique(f);
    return LACT_OK;
}

/* Other writers may leave tensors unaligned for their element type. Reading
 * them through typed pointers would be undefined, so such files get their data
 * section copied into an anonymous (page-aligned) mapping. */
static lact_status align_data(lact_st_file *f, size_t data_bytes) {
    bool aligned = true;
    for (int i = 0; i < f->n; i++) {
        size_t a = lact_dtype_size(f->entries[i].dtype);
        if (f->entries[i].nbytes && (uintptr_t)(f->data + f->entries[i].offset) % a)
            aligned = false;
    }
    if (aligned || data_bytes == 0) return LACT_OK;
    void *copy = mmap(NULL, data_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED)
        return lact_fail(LACT_E_NOMEM, "%s: cannot allocate %zu bytes to align the tensors",
                         f->path, data_bytes);
    memcpy(copy, f->data, data_bytes);
    munmap(f->map, f->map_bytes);
    f->map = copy;
    f->map_bytes = data_bytes;
    f->data = copy;
    return LACT_OK;
}

static lact_status st_open(lact_st_file *f, const char *path) {
    f->path = malloc(strlen(path) + 1);
    if (!f->path) return lact_fail(LACT_E_NOMEM, "%s: out of memory", path);
    strcpy(f->path, path);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return lact_fail(errno == ENOENT ? LACT_E_NOT_FOUND : LACT_E_IO, "%s: cannot open: %s",
                         path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return lact_fail(LACT_E_IO, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lact_fail(LACT_E_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return lact_fail(LACT_E_FORMAT, "%s: file is %zu bytes, too short for a safetensors header",
                         path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (map == MAP_FAILED) return lact_fail(LACT_E_IO, "%s: cannot map: %s", path, strerror(err));
    f->map = map;
    f->map_bytes = size;
    const uint8_t *bytes = map;
    uint64_t hlen = read_u64_le(bytes);
    if (hlen > size - 8)
        return lact_fail(LACT_E_FORMAT,
                         "%s: header length %llu runs past the end of the file (%zu bytes); "
                         "truncated or not a safetensors file",
                         path, (unsigned long long)hlen, size);
    cJSON *root = cJSON_ParseWithLength((const char *)bytes + 8, (size_t)hlen);
    if (!root)
        return lact_fail(LACT_E_FORMAT, "%s: header (%llu bytes) is not valid JSON", path,
                         (unsigned long long)hlen);
    f->data = bytes + 8 + hlen;
    size_t data_bytes = size - 8 - (size_t)hlen;
    lact_status s = parse_header(f, root, data_bytes);
    cJSON_Delete(root);
    if (s == LACT_OK) s = align_data(f, data_bytes);
    return s;
}

lact_status lact_st_open(lact_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    lact_status s = st_open(f, path);
    if (s != LACT_OK) lact_st_close(f);
    return s;
}

void lact_st_close(lact_st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_bytes);
    free(f->path);
    free(f->entries);
    free((void *)f->meta_keys);
    free((void *)f->meta_values);
    free(f->strings);
    memset(f, 0, sizeof *f);
}

int lact_st_find(const lact_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->entries[i].name, name) == 0) return i;
    return -1;
}

lact_tensor lact_st_view(const lact_st_file *f, int i) {
    const lact_st_entry *e = &f->entries[i];
    return lact_tensor_view((void *)(f->data + e->offset), e->dtype, LACT_CPU, e->ndim, e->shape);
}

lact_status lact_st_get(const lact_st_file *f, const char *name, lact_tensor *out) {
    int i = lact_st_find(f, name);
    if (i < 0)
        return lact_fail(LACT_E_NOT_FOUND, "%s: no tensor named '%s'", f->path ? f->path : "?",
                         name);
    *out = lact_st_view(f, i);
    return LACT_OK;
}

const char *lact_st_meta(const lact_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}
