#include "textmap.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a with a final mix, enough for vocabularies and word caches. */
uint64_t text_hash_bytes(const void *data, size_t len) {
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

void text_strmap_init(text_strmap *m) { memset(m, 0, sizeof *m); }

void text_strmap_free(text_strmap *m) {
    free(m->slots);
    free(m->values);
    free(m->pool);
    memset(m, 0, sizeof *m);
}

static const char *slot_key(const text_strmap *m, uint64_t slot, size_t *len) {
    *len = (size_t)(slot & 0xFFFFFF);
    return m->pool + ((slot >> 24) - 1);
}

static size_t strmap_index(const text_strmap *m, const void *key, size_t len) {
    size_t mask = m->cap - 1, i = (size_t)text_hash_bytes(key, len) & mask;
    for (;; i = (i + 1) & mask) {
        uint64_t s = m->slots[i];
        if (!s) return i;
        size_t klen;
        const char *k = slot_key(m, s, &klen);
        if (klen == len && !memcmp(k, key, len)) return i;
    }
}

int32_t text_strmap_get(const text_strmap *m, const void *key, size_t len) {
    if (!m->cap) return -1;
    size_t i = strmap_index(m, key, len);
    return m->slots[i] ? m->values[i] : -1;
}

static lact_status strmap_grow(text_strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *slots = calloc(cap, sizeof *slots);
    int32_t *values = malloc(cap * sizeof *values);
    if (!slots || !values) {
        free(slots);
        free(values);
        return lact_fail(LACT_E_NOMEM, "tokenizer: out of memory for a hash table");
    }
    text_strmap old = *m;
    m->slots = slots, m->values = values, m->cap = cap;
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.slots[i]) continue;
        size_t len;
        const char *k = slot_key(&old, old.slots[i], &len);
        size_t j = strmap_index(m, k, len);
        m->slots[j] = old.slots[i];
        m->values[j] = old.values[i];
    }
    free(old.slots);
    free(old.values);
    return LACT_OK;
}

lact_status text_strmap_put(text_strmap *m, const void *key, size_t len, int32_t value) {
    if (len >= (1u << 24)) return lact_fail(LACT_E_ARG, "tokenizer: a token of %zu bytes", len);
    if ((m->n + 1) * 4 > m->cap * 3) LACT_TRY(strmap_grow(m));
    size_t i = strmap_index(m, key, len);
    if (m->slots[i]) {
        m->values[i] = value;
        return LACT_OK;
    }
    if (m->pool_len + len > m->pool_cap) {
        size_t cap = m->pool_cap ? m->pool_cap * 2 : 4096;
        while (cap < m->pool_len + len)
            cap *= 2;
        char *p = realloc(m->pool, cap);
        if (!p) return lact_fail(LACT_E_NOMEM, "tokenizer: out of memory for token strings");
        m->pool = p, m->pool_cap = cap;
    }
    if (len) memcpy(m->pool + m->pool_len, key, len);
    m->slots[i] = ((uint64_t)(m->pool_len + 1) << 24) | len;
    m->values[i] = value;
    m->pool_len += len;
    m->n++;
    return LACT_OK;
}

void text_u64map_init(text_u64map *m) { memset(m, 0, sizeof *m); }

void text_u64map_free(text_u64map *m) {
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

static size_t u64_index(const text_u64map *m, uint64_t key) {
    size_t mask = m->cap - 1, i = (size_t)hash_u64(key) & mask;
    while (m->keys[i] && m->keys[i] != key + 1)
        i = (i + 1) & mask;
    return i;
}

int64_t *text_u64map_find(const text_u64map *m, uint64_t key) {
    if (!m->cap) return NULL;
    size_t i = u64_index(m, key);
    return m->keys[i] ? &m->values[i] : NULL;
}

int64_t *text_u64map_slot(text_u64map *m, uint64_t key) {
    if ((m->n + 1) * 4 > m->cap * 3) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        text_u64map old = *m;
        m->keys = calloc(cap, sizeof *m->keys);
        m->values = malloc(cap * sizeof *m->values);
        if (!m->keys || !m->values) {
            free(m->keys);
            free(m->values);
            *m = old;
            return NULL;
        }
        m->cap = cap;
        for (size_t i = 0; i < old.cap; i++) {
            if (!old.keys[i]) continue;
            size_t j = u64_index(m, old.keys[i] - 1);
            m->keys[j] = old.keys[i];
            m->values[j] = old.values[i];
        }
        free(old.keys);
        free(old.values);
    }
    size_t i = u64_index(m, key);
    if (!m->keys[i]) {
        m->keys[i] = key + 1;
        m->values[i] = 0;
        m->n++;
    }
    return &m->values[i];
}

lact_status lact_ids_push(lact_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return lact_fail(LACT_E_NOMEM, "tokenizer: out of memory for token ids");
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = id;
    return LACT_OK;
}

lact_status lact_bytes_append(lact_bytes *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *v = realloc(b->v, cap);
        if (!v) return lact_fail(LACT_E_NOMEM, "tokenizer: out of memory for text");
        b->v = v, b->cap = cap;
    }
    if (n) memcpy(b->v + b->n, data, n);
    b->n += n;
    return LACT_OK;
}

void lact_ids_free(lact_ids *a) {
    free(a->v);
    a->v = NULL, a->n = a->cap = 0;
}

void lact_bytes_free(lact_bytes *b) {
    free(b->v);
    b->v = NULL, b->n = b->cap = 0;
}
