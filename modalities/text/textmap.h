/* Two open-addressing hash maps the tokenizers share: byte strings to int32
 * (a vocabulary) and uint64 keys to int64 values (token pairs). Keys are
 * never removed; tables double when 3/4 full. */
#ifndef LACT_TEXT_TEXTMAP_H
#define LACT_TEXT_TEXTMAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

typedef struct text_strmap {
    uint64_t *slots; /* (offset + 1) << 24 | len; 0 = empty */
    int32_t *values;
    size_t cap, n;
    char *pool; /* the key bytes */
    size_t pool_len, pool_cap;
} text_strmap;

void text_strmap_init(text_strmap *m);
void text_strmap_free(text_strmap *m);
/* The value for key, or -1. */
int32_t text_strmap_get(const text_strmap *m, const void *key, size_t len);
/* Inserts or overwrites. Keys are at most 16 MiB - 1 bytes long. */
lact_status text_strmap_put(text_strmap *m, const void *key, size_t len, int32_t value);

typedef struct text_u64map {
    uint64_t *keys; /* key + 1; 0 = empty */
    int64_t *values;
    size_t cap, n;
} text_u64map;

void text_u64map_init(text_u64map *m);
void text_u64map_free(text_u64map *m);
/* A pointer to the value for key, or NULL. */
int64_t *text_u64map_find(const text_u64map *m, uint64_t key);
/* The value slot for key, created as 0 when absent (NULL: out of memory). */
int64_t *text_u64map_slot(text_u64map *m, uint64_t key);

uint64_t text_hash_bytes(const void *data, size_t len);



/* Growable arrays of token ids and of bytes. */
typedef struct lact_ids {
    int32_t *v;
    size_t n, cap;
} lact_ids;

typedef struct lact_bytes {
    uint8_t *v;
    size_t n, cap;
} lact_bytes;

lact_status lact_ids_push(lact_ids *a, int32_t id);
lact_status lact_bytes_append(lact_bytes *b, const void *data, size_t n);
void lact_ids_free(lact_ids *a);
void lact_bytes_free(lact_bytes *b);
#endif
