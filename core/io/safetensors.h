/* Safetensors files (the format PyTorch's `safetensors` package reads):
 * 8-byte little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}},
 * then the data. Reading maps the file and checks everything against the
 * file before any tensor is used: header length inside the file, valid JSON,
 * known dtypes, offsets inside the data section, end − begin equal to
 * numel × dtype size, no two tensors overlapping. */
#ifndef LACT_SAFETENSORS_H
#define LACT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_st_entry {
    const char *name;
    lact_dtype dtype;
    int ndim;
    int64_t shape[LACT_MAX_DIMS];
    size_t offset; /* from the start of the data section */
    size_t nbytes;
} lact_st_entry;

typedef struct lact_st_file {
    char *path;
    void *map;
    size_t map_bytes;
    const uint8_t *data; /* start of the data section */
    int n;
    lact_st_entry *entries; /* in file order of offsets */
    int n_meta;
    const char **meta_keys, **meta_values;
    char *strings; /* storage for names and metadata */
} lact_st_file;

/* Maps and validates path. On failure nothing is left open and the error
 * names the file and the problem. */
lact_status lact_st_open(lact_st_file *f, const char *path);
void lact_st_close(lact_st_file *f);
/* Index of name, or -1. */
int lact_st_find(const lact_st_file *f, const char *name);
/* A read-only CPU view of tensor i inside the mapping (valid until close). */
lact_tensor lact_st_view(const lact_st_file *f, int i);
/* Looks name up and returns its view; LACT_E_NOT_FOUND names file and tensor. */
lact_status lact_st_get(const lact_st_file *f, const char *name, lact_tensor *out);
/* Value of metadata key, or NULL. */
const char *lact_st_meta(const lact_st_file *f, const char *key);

/* Writes n named tensors (CPU or CUDA, contiguous) and optional metadata
 * pairs to path atomically (temporary file, fsync, rename). Names must be
 * unique. Tensors are packed without gaps (PyTorch's reader rejects gaps),
 * largest element size first so each starts at a multiple of its own element
 * size; the header is padded with spaces so the data section starts 8-aligned. */
lact_status lact_st_write(const char *path, int n, const char *const *names,
                          const lact_tensor *tensors, int n_meta, const char *const *meta_keys,
                          const char *const *meta_values);

#ifdef __cplusplus
}
#endif
#endif
