#include "bpe_train.h"

#include <stdlib.h>
#include <string.h>

void lact_bpe_trainer_init(lact_bpe_trainer *t, text_pretok pretok) {
    memset(t, 0, sizeof *t);
    t->pretok = pretok;
    text_strmap_init(&t->words);
}

void lact_bpe_trainer_free(lact_bpe_trainer *t) {
    text_strmap_free(&t->words);
    free(t->counts);
    memset(t, 0, sizeof *t);
}

lact_status lact_bpe_trainer_add(lact_bpe_trainer *t, const void *text, size_t n) {
    const uint8_t *s = text;
    for (size_t i = 0; i < n;) {
        size_t e = text_pretok_next(t->pretok, s, n, i);
        int32_t w = text_strmap_get(&t->words, s + i, e - i);
        if (w < 0) {
            if (t->n_words == t->cap_words) {
                size_t cap = t->cap_words ? t->cap_words * 2 : 4096;
                int64_t *c = realloc(t->counts, cap * sizeof *c);
                if (!c) return lact_fail(LACT_E_NOMEM, "bpe train: out of memory for word counts");
                t->counts = c, t->cap_words = cap;
            }
            w = (int32_t)t->n_words;
            t->counts[t->n_words++] = 0;
            LACT_TRY(text_strmap_put(&t->words, s + i, e - i, w));
        }
        t->counts[w]++;
        i = e;
    }
    t->bytes_seen += (int64_t)n;
    return LACT_OK;
}

/* The corpus as symbol sequences: word w is sym[start[w] .. start[w]+len[w]). */
typedef struct train_words {
    int32_t *sym;
    size_t *start;
    int32_t *len;
    int64_t *freq;
    size_t n;
} train_words;

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

/* Adds sign * freq to the count of every adjacent pair of word w. */
static lact_status count_pairs(text_u64map *pairs, const train_words *tw, size_t w, int64_t sign) {
    const int32_t *s = tw->sym + tw->start[w];
    for (int32_t i = 0; i + 1 < tw->len[w]; i++) {
        int64_t *c = text_u64map_slot(pairs, pair_key(s[i], s[i + 1]));
        if (!c) return lact_fail(LACT_E_NOMEM, "bpe train: out of memory for pair counts");
        *c += sign * tw->freq[w];
    }
    return LACT_OK;
}

static lact_status build_words(const lact_bpe_trainer *t, train_words *tw) {
    const text_strmap *m = &t->words;
    tw->n = t->n_words;
    tw->sym = malloc((m->pool_len + 1) * sizeof *tw->sym);
    tw->start = malloc((tw->n + 1) * sizeof *tw->start);
    tw->len = malloc((tw->n + 1) * sizeof *tw->len);
    tw->freq = malloc((tw->n + 1) * sizeof *tw->freq);
    if (!tw->sym || !tw->start || !tw->len || !tw->freq)
        return lact_fail(LACT_E_NOMEM, "bpe train: out of memory for %zu words", tw->n);
    for (size_t i = 0; i < m->cap; i++) {
        uint64_t slot = m->slots[i];
        if (!slot) continue;
        size_t off = (size_t)(slot >> 24) - 1, len = (size_t)(slot & 0xFFFFFF);
        int32_t w = m->values[i];
        tw->start[w] = off;
        tw->len[w] = (int32_t)len;
        tw->freq[w] = t->counts[w];
        for (size_t k = 0; k < len; k++)
            tw->sym[off + k] = (uint8_t)m->pool[off + k];
    }
    return LACT_OK;
}

/* The most frequent pair (smallest key on a tie); count 0 when none. */
static uint64_t best_pair(const text_u64map *pairs, int64_t *count) {
    uint64_t best = 0;
    *count = 0;
    for (size_t i = 0; i < pairs->cap; i++) {
        if (!pairs->keys[i]) continue;
        uint64_t k = pairs->keys[i] - 1;
        int64_t c = pairs->values[i];
        if (c > *count || (c == *count && c > 0 && k < best)) best = k, *count = c;
    }
    return best;
}

/* Replaces every (a, b) in word w, left to right, by m. */
static void merge_word(train_words *tw, size_t w, int32_t a, int32_t b, int32_t m) {
    int32_t *s = tw->sym + tw->start[w];
    int32_t n = tw->len[w], o = 0;
    for (int32_t i = 0; i < n; i++) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[o++] = m;
            i++;
        } else {
            s[o++] = s[i];
        }
    }
    tw->len[w] = o;
}

static bool word_has(const train_words *tw, size_t w, int32_t a, int32_t b) {
    const int32_t *s = tw->sym + tw->start[w];
    for (int32_t i = 0; i + 1 < tw->len[w]; i++)
        if (s[i] == a && s[i + 1] == b) return true;
    return false;
}

static lact_status learn(lact_bpe *out, train_words *tw, const lact_bpe_train_opts *o) {
    text_u64map pairs;
    text_u64map_init(&pairs);
    lact_status s = LACT_OK;
    for (size_t w = 0; w < tw->n && s == LACT_OK; w++)
        s = count_pairs(&pairs, tw, w, 1);
    int64_t target = o->vocab_size - o->n_specials;
    uint8_t buf[4096];
    while (s == LACT_OK && out->vocab.n < (size_t)target) {
        int64_t count;
        uint64_t key = best_pair(&pairs, &count);
        if (count < o->min_frequency || count <= 0) break;
        int32_t a = (int32_t)(key >> 32), b = (int32_t)(uint32_t)key;
        size_t la = 0, lb = 0;
        const uint8_t *ta = lact_bpe_token(out, a, &la), *tb = lact_bpe_token(out, b, &lb);
        if (la + lb > sizeof buf) {
            *text_u64map_slot(&pairs, key) = 0; /* a token this long is never worth it */
            continue;
        }
        memcpy(buf, ta, la);
        memcpy(buf + la, tb, lb);
        int32_t m = text_strmap_get(&out->vocab, buf, la + lb);
        if (m < 0) {
            m = out->n_ids;
            s = lact_bpe_add_token(out, m, buf, la + lb);
        }
        if (s == LACT_OK) s = lact_bpe_add_merge(out, a, b, "bpe train");
        for (size_t w = 0; w < tw->n && s == LACT_OK; w++) {
            if (!word_has(tw, w, a, b)) continue;
            s = count_pairs(&pairs, tw, w, -1);
            merge_word(tw, w, a, b, m);
            if (s == LACT_OK) s = count_pairs(&pairs, tw, w, 1);
        }
    }
    text_u64map_free(&pairs);
    return s;
}

lact_status lact_bpe_trainer_finish(lact_bpe_trainer *t, const lact_bpe_train_opts *o,
                                    lact_bpe *out) {
    lact_bpe_init(out, t->pretok);
    if (o->vocab_size < 256 + o->n_specials || o->vocab_size > (1 << 30))
        return lact_fail(LACT_E_ARG, "bpe train: vocabulary size %lld must be at least 256 + %d "
                                     "specials",
                         (long long)o->vocab_size, o->n_specials);
    lact_status s = LACT_OK;
    for (int b = 0; b < 256 && s == LACT_OK; b++) {
        uint8_t c = (uint8_t)b;
        s = lact_bpe_add_token(out, b, &c, 1);
    }
    train_words tw = {0};
    if (s == LACT_OK) s = build_words(t, &tw);
    if (s == LACT_OK) s = learn(out, &tw, o);
    for (int i = 0; i < o->n_specials && s == LACT_OK; i++)
        s = lact_bpe_add_special(out, out->n_ids, o->specials[i], strlen(o->specials[i]), true);
    if (s == LACT_OK) s = lact_bpe_finish(out);
    free(tw.sym);
    free(tw.start);
    free(tw.len);
    free(tw.freq);
    if (s != LACT_OK) lact_bpe_free(out);
    return s;
}
