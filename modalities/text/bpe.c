#include "bpe.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Word-cache limits: past either, the cache starts over (it only saves
 * time; a corpus with endless distinct words must not exhaust memory). */
#define CACHE_MAX_WORDS (1 << 20)
#define CACHE_MAX_IDS (1 << 24)
/* Pieces longer than this are encoded without the cache. */
#define CACHE_MAX_PIECE 256

static bool printable_byte(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

int32_t text_byte_to_cp(uint8_t byte) {
    if (printable_byte(byte)) return byte;
    int n = 0; /* how many non-printable bytes precede this one */
    for (int b = 0; b < byte; b++)
        n += !printable_byte(b);
    return 256 + n;
}

int text_cp_to_byte(int32_t cp) {
    if (cp >= 0 && cp < 256) return printable_byte(cp) ? cp : -1;
    if (cp < 256 || cp >= 256 + 68) return -1;
    int n = cp - 256;
    for (int b = 0; b < 256; b++)
        if (!printable_byte(b) && n-- == 0) return b;
    return -1;
}

void lact_bpe_init(lact_bpe *b, text_pretok pretok) {
    memset(b, 0, sizeof *b);
    b->pretok = pretok;
    b->unk_id = -1;
    b->eot_id = -1;
    for (int i = 0; i < 256; i++)
        b->byte_id[i] = -1;
    text_strmap_init(&b->vocab);
    text_u64map_init(&b->merges);
    text_strmap_init(&b->cache);
}

void lact_bpe_free(lact_bpe *b) {
    free(b->tok_off);
    free(b->tok_len);
    lact_bytes_free(&b->tok_pool);
    text_strmap_free(&b->vocab);
    text_u64map_free(&b->merges);
    free(b->merge_a);
    free(b->merge_b);
    for (int i = 0; i < b->n_added; i++)
        free(b->added[i].content);
    free(b->added);
    text_strmap_free(&b->cache);
    lact_ids_free(&b->cache_ids);
    memset(b, 0, sizeof *b);
}

/* Records the bytes of id (growing the id table). */
static lact_status set_id(lact_bpe *b, int32_t id, const void *bytes, size_t len) {
    if (id < 0 || id >= INT32_MAX / 2) return lact_fail(LACT_E_FORMAT, "token id %d out of range", id);
    if (id >= b->n_ids) {
        size_t n = (size_t)id + 1, cap = 1;
        while (cap < n)
            cap *= 2;
        uint32_t *off = realloc(b->tok_off, cap * sizeof *off);
        if (off) b->tok_off = off;
        uint32_t *ln = realloc(b->tok_len, cap * sizeof *ln);
        if (ln) b->tok_len = ln;
        if (!off || !ln) return lact_fail(LACT_E_NOMEM, "tokenizer: out of memory for the vocabulary");
        for (size_t i = (size_t)b->n_ids; i < cap; i++)
            b->tok_len[i] = UINT32_MAX;
        b->n_ids = id + 1;
    }
    if (b->tok_len[id] != UINT32_MAX) return lact_fail(LACT_E_FORMAT, "token id %d appears twice", id);
    if (b->tok_pool.n + len >= UINT32_MAX)
        return lact_fail(LACT_E_FORMAT, "tokenizer: vocabulary strings exceed 4 GiB");
    b->tok_off[id] = (uint32_t)b->tok_pool.n;
    b->tok_len[id] = (uint32_t)len;
    return lact_bytes_append(&b->tok_pool, bytes, len);
}

const uint8_t *lact_bpe_token(const lact_bpe *b, int32_t id, size_t *len) {
    if (id < 0 || id >= b->n_ids || b->tok_len[id] == UINT32_MAX) return NULL;
    *len = b->tok_len[id];
    return b->tok_pool.v + b->tok_off[id];
}

lact_status lact_bpe_add_token(lact_bpe *b, int32_t id, const void *bytes, size_t len) {
    if (len == 0) return lact_fail(LACT_E_FORMAT, "token id %d is empty", id);
    if (text_strmap_get(&b->vocab, bytes, len) >= 0)
        return lact_fail(LACT_E_FORMAT, "token id %d repeats the bytes of id %d", id,
                         text_strmap_get(&b->vocab, bytes, len));
    LACT_TRY(set_id(b, id, bytes, len));
    return text_strmap_put(&b->vocab, bytes, len, id);
}

lact_status lact_bpe_add_merge(lact_bpe *b, int32_t a, int32_t c, const char *where) {
    size_t la = 0, lc = 0;
    const uint8_t *ta = lact_bpe_token(b, a, &la), *tc = lact_bpe_token(b, c, &lc);
    if (!ta || !tc) return lact_fail(LACT_E_FORMAT, "%s: merge of unknown ids %d, %d", where, a, c);
    uint8_t small[512];
    uint8_t *cat = la + lc <= sizeof small ? small : malloc(la + lc);
    if (!cat) return lact_fail(LACT_E_NOMEM, "tokenizer: out of memory");
    memcpy(cat, ta, la);
    memcpy(cat + la, tc, lc);
    int32_t m = text_strmap_get(&b->vocab, cat, la + lc);
    if (cat != small) free(cat);
    if (m < 0)
        return lact_fail(LACT_E_FORMAT, "%s: the merged token is not in the vocabulary", where);
    if (b->n_merges == b->merge_cap) {
        int32_t cap = b->merge_cap ? b->merge_cap * 2 : 1024;
        int32_t *na = realloc(b->merge_a, (size_t)cap * sizeof *na);
        if (na) b->merge_a = na;
        int32_t *nb = realloc(b->merge_b, (size_t)cap * sizeof *nb);
        if (nb) b->merge_b = nb;
        if (!na || !nb) return lact_fail(LACT_E_NOMEM, "tokenizer: out of memory for merges");
        b->merge_cap = cap;
    }
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)c;
    int64_t *slot = text_u64map_find(&b->merges, key);
    /* A repeated pair keeps its first (best) rank, as the reference does. */
    if (!slot) {
        slot = text_u64map_slot(&b->merges, key);
        if (!slot) return lact_fail(LACT_E_NOMEM, "tokenizer: out of memory for merges");
        *slot = (int64_t)b->n_merges << 32 | (uint32_t)m;
    }
    b->merge_a[b->n_merges] = a;
    b->merge_b[b->n_merges] = c;
    b->n_merges++;
    return LACT_OK;
}

lact_status lact_bpe_add_special(lact_bpe *b, int32_t id, const char *content, size_t len,
                                 bool special) {
    if (len == 0) return lact_fail(LACT_E_FORMAT, "added token id %d is empty", id);
    size_t old_len;
    const uint8_t *old = lact_bpe_token(b, id, &old_len);
    if (old && (old_len != len || memcmp(old, content, len)))
        return lact_fail(LACT_E_FORMAT, "added token id %d clashes with a vocabulary token", id);
    if (!old) LACT_TRY(set_id(b, id, content, len));
    lact_added_token *a = realloc(b->added, (size_t)(b->n_added + 1) * sizeof *a);
    if (!a) return lact_fail(LACT_E_NOMEM, "tokenizer: out of memory");
    b->added = a;
    char *c = malloc(len + 1);
    if (!c) return lact_fail(LACT_E_NOMEM, "tokenizer: out of memory");
    memcpy(c, content, len);
    c[len] = '\0';
    a[b->n_added++] = (lact_added_token){c, len, id, special};
    uint8_t first = (uint8_t)content[0];
    b->added_first[first >> 3] |= (uint8_t)(1u << (first & 7));
    return LACT_OK;
}

int32_t lact_bpe_find_added(const lact_bpe *b, const char *content) {
    for (int i = 0; i < b->n_added; i++)
        if (!strcmp(b->added[i].content, content)) return b->added[i].id;
    return -1;
}

lact_status lact_bpe_finish(lact_bpe *b) {
    for (int i = 0; i < 256; i++) {
        uint8_t c = (uint8_t)i;
        b->byte_id[i] = text_strmap_get(&b->vocab, &c, 1);
    }
    b->eot_id = lact_bpe_find_added(b, "<|endoftext|>");
    if (b->eot_id < 0) b->eot_id = lact_bpe_find_added(b, "<|end_of_text|>");
    return LACT_OK;
}

static int32_t merge_rank(const lact_bpe *b, int32_t x, int32_t y, int32_t *merged) {
    int64_t *v = text_u64map_find(&b->merges, (uint64_t)(uint32_t)x << 32 | (uint32_t)y);
    if (!v) return INT32_MAX;
    *merged = (int32_t)(uint32_t)*v;
    return (int32_t)(*v >> 32);
}

/* Merges the piece's bytes by rank: each round applies the lowest-ranked
 * adjacent pair (the leftmost on a tie). Quadratic in the piece length,
 * which is short for text. */
static lact_status encode_piece(const lact_bpe *b, const uint8_t *p, size_t n, lact_ids *out) {
    if (b->ignore_merges) {
        int32_t id = text_strmap_get(&b->vocab, p, n);
        if (id >= 0) return lact_ids_push(out, id);
    }
    size_t start = out->n;
    for (size_t i = 0; i < n; i++) {
        int32_t id = b->byte_id[p[i]] >= 0 ? b->byte_id[p[i]] : b->unk_id;
        if (id < 0)
            return lact_fail(LACT_E_UNSUPPORTED,
                             "tokenizer has no token for byte 0x%02x (and no unk_token)", p[i]);
        LACT_TRY(lact_ids_push(out, id));
    }
    int32_t *s = out->v + start;
    size_t len = n;
    while (len > 1) {
        int32_t best = INT32_MAX, best_id = -1, merged = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < len; i++) {
            int32_t r = merge_rank(b, s[i], s[i + 1], &merged);
            if (r < best) best = r, best_id = merged, at = i;
        }
        if (best == INT32_MAX) break;
        s[at] = best_id;
        memmove(s + at + 1, s + at + 2, (len - at - 2) * sizeof *s);
        len--;
    }
    out->n = start + len;
    return LACT_OK;
}

static lact_status encode_cached(lact_bpe *b, const uint8_t *p, size_t n, lact_ids *out) {
    if (n > CACHE_MAX_PIECE) return encode_piece(b, p, n, out);
    int32_t at = text_strmap_get(&b->cache, p, n);
    if (at >= 0) {
        int32_t count = b->cache_ids.v[at];
        for (int32_t i = 0; i < count; i++)
            LACT_TRY(lact_ids_push(out, b->cache_ids.v[at + 1 + i]));
        return LACT_OK;
    }
    size_t start = out->n;
    LACT_TRY(encode_piece(b, p, n, out));
    if (b->cache.n >= CACHE_MAX_WORDS || b->cache_ids.n >= CACHE_MAX_IDS) {
        text_strmap_free(&b->cache);
        text_strmap_init(&b->cache);
        b->cache_ids.n = 0;
    }
    int32_t pos = (int32_t)b->cache_ids.n;
    LACT_TRY(lact_ids_push(&b->cache_ids, (int32_t)(out->n - start)));
    for (size_t i = start; i < out->n; i++)
        LACT_TRY(lact_ids_push(&b->cache_ids, out->v[i]));
    return text_strmap_put(&b->cache, p, n, pos);
}

/* Pre-tokenises one stretch of text without added tokens. */
static lact_status encode_segment(lact_bpe *b, const uint8_t *s, size_t n, lact_ids *out) {
    uint8_t *copy = NULL;
    if (b->add_prefix_space && n > 0 && s[0] != ' ') {
        copy = malloc(n + 1);
        if (!copy) return lact_fail(LACT_E_NOMEM, "tokenizer: out of memory");
        copy[0] = ' ';
        memcpy(copy + 1, s, n);
        s = copy, n++;
    }
    lact_status st = LACT_OK;
    for (size_t i = 0; i < n && st == LACT_OK;) {
        size_t e = text_pretok_next(b->pretok, s, n, i);
        st = encode_cached(b, s + i, e - i, out);
        i = e;
    }
    free(copy);
    return st;
}

/* The longest added token starting at s[i], or NULL. */
static const lact_added_token *added_at(const lact_bpe *b, const uint8_t *s, size_t n, size_t i) {
    if (!(b->added_first[s[i] >> 3] & (1u << (s[i] & 7)))) return NULL;
    const lact_added_token *best = NULL;
    for (int k = 0; k < b->n_added; k++) {
        const lact_added_token *a = &b->added[k];
        if (a->len <= n - i && (!best || a->len > best->len) && !memcmp(s + i, a->content, a->len))
            best = a;
    }
    return best;
}

lact_status lact_bpe_encode(lact_bpe *b, const void *text, size_t n, lact_ids *out) {
    const uint8_t *s = text;
    size_t seg = 0;
    for (size_t i = 0; i < n;) {
        const lact_added_token *a = b->n_added ? added_at(b, s, n, i) : NULL;
        if (!a) {
            i++;
            continue;
        }
        LACT_TRY(encode_segment(b, s + seg, i - seg, out));
        LACT_TRY(lact_ids_push(out, a->id));
        i += a->len;
        seg = i;
    }
    return encode_segment(b, s + seg, n - seg, out);
}

lact_status lact_bpe_decode(const lact_bpe *b, const int32_t *ids, size_t n, lact_bytes *out) {
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const uint8_t *t = lact_bpe_token(b, ids[i], &len);
        if (!t)
            return lact_fail(LACT_E_ARG, "token id %d is not in the vocabulary (ids 0..%d)",
                             ids[i], b->n_ids - 1);
        LACT_TRY(lact_bytes_append(out, t, len));
    }
    return LACT_OK;
}
