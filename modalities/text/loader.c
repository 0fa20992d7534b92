#define _POSIX_C_SOURCE 200809L

#include "loader.h"

#include <glob.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"

static lact_status add_path(lact_loader *l, const char *path) {
    char **p = realloc(l->paths, (size_t)(l->n_shards + 1) * sizeof *p);
    if (!p) return lact_fail(LACT_E_NOMEM, "loader: out of memory");
    l->paths = p;
    int64_t *w = realloc(l->n_windows, (size_t)(l->n_shards + 1) * sizeof *w);
    if (!w) return lact_fail(LACT_E_NOMEM, "loader: out of memory");
    l->n_windows = w;
    lact_shard s;
    LACT_TRY(lact_shard_open(&s, path));
    int64_t n = s.n_tokens;
    lact_shard_close(&s);
    if (n < l->seq + 1) return LACT_OK;
    char *copy = malloc(strlen(path) + 1);
    if (!copy) return lact_fail(LACT_E_NOMEM, "loader: out of memory");
    strcpy(copy, path);
    l->paths[l->n_shards] = copy;
    l->n_windows[l->n_shards] = (n - 1) / l->seq;
    l->n_shards++;
    return LACT_OK;
}

static lact_status add_pattern(lact_loader *l, const char *pattern) {
    if (!strpbrk(pattern, "*?[")) return add_path(l, pattern);
    glob_t g;
    int r = glob(pattern, 0, NULL, &g);
    if (r == GLOB_NOMATCH) return lact_fail(LACT_E_NOT_FOUND, "%s: no shard matches", pattern);
    if (r != 0) return lact_fail(LACT_E_IO, "%s: cannot list the shards", pattern);
    lact_status s = LACT_OK;
    for (size_t i = 0; i < g.gl_pathc && s == LACT_OK; i++) /* glob sorts the names */
        s = add_path(l, g.gl_pathv[i]);
    globfree(&g);
    return s;
}

int64_t lact_loader_windows(const lact_loader *l) {
    int64_t n = 0;
    for (int i = 0; i < l->n_shards; i++)
        n += l->n_windows[i];
    return n;
}

/* Fisher-Yates with Philox draws: a pure function of (seed, stream). */
static uint64_t draw(uint64_t seed, uint64_t stream, uint64_t i, uint64_t bound) {
    lact_u32x4 r = lact_philox4x32(seed, i, stream);
    uint64_t x = (uint64_t)r.v[0] << 32 | r.v[1];
    return x % bound;
}

static lact_status draw_orders(lact_loader *l) {
    if (l->order_epoch != l->pos.epoch) {
        for (int i = 0; i < l->n_shards; i++)
            l->shard_order[i] = i;
        if (l->shuffle)
            for (int i = l->n_shards - 1; i > 0; i--) {
                int j = (int)draw(l->seed, (uint64_t)l->pos.epoch << 1, (uint64_t)i, (uint64_t)i + 1);
                int t = l->shard_order[i];
                l->shard_order[i] = l->shard_order[j], l->shard_order[j] = t;
            }
        l->order_epoch = l->pos.epoch;
        l->order_shard = -1;
    }
    int shard = l->shard_order[l->pos.shard];
    if (l->shuffle && l->order_shard != l->pos.shard) {
        int64_t n = l->n_windows[shard];
        int64_t *w = realloc(l->window_order, (size_t)n * sizeof *w);
        if (!w) return lact_fail(LACT_E_NOMEM, "loader: out of memory for %lld windows", (long long)n);
        l->window_order = w;
        for (int64_t i = 0; i < n; i++)
            w[i] = i;
        uint64_t stream = ((uint64_t)l->pos.epoch << 1 | 1) ^ ((uint64_t)l->pos.shard << 40);
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)draw(l->seed, stream, (uint64_t)i, (uint64_t)i + 1);
            int64_t t = w[i];
            w[i] = w[j], w[j] = t;
        }
        l->order_shard = l->pos.shard;
    }
    if (l->open_index != shard) {
        if (l->open_index >= 0) lact_shard_close(&l->open);
        l->open_index = -1;
        LACT_TRY(lact_shard_open(&l->open, l->paths[shard]));
        l->open_index = shard;
    }
    return LACT_OK;
}

lact_status lact_loader_init(lact_loader *l, const char *const *paths, int n_paths, int64_t batch,
                             int64_t seq, uint64_t seed, bool shuffle, bool loop) {
    memset(l, 0, sizeof *l);
    l->open_index = -1;
    l->order_epoch = -1;
    if (batch < 1 || seq < 1)
        return lact_fail(LACT_E_ARG, "loader: batch %lld and sequence %lld must be positive",
                         (long long)batch, (long long)seq);
    l->batch = batch, l->seq = seq, l->seed = seed, l->shuffle = shuffle, l->loop = loop;
    lact_status s = LACT_OK;
    for (int i = 0; i < n_paths && s == LACT_OK; i++)
        s = add_pattern(l, paths[i]);
    if (s == LACT_OK && l->n_shards == 0)
        s = lact_fail(LACT_E_ARG, "loader: no shard holds %lld tokens (one window)",
                      (long long)seq + 1);
    if (s == LACT_OK && !(l->shard_order = malloc((size_t)l->n_shards * sizeof(int))))
        s = lact_fail(LACT_E_NOMEM, "loader: out of memory");
    if (s != LACT_OK) lact_loader_free(l);
    return s;
}

void lact_loader_free(lact_loader *l) {
    for (int i = 0; i < l->n_shards; i++)
        free(l->paths[i]);
    free(l->paths);
    free(l->n_windows);
    free(l->shard_order);
    free(l->window_order);
    if (l->open_index >= 0) lact_shard_close(&l->open);
    memset(l, 0, sizeof *l);
    l->open_index = -1;
}

lact_status lact_loader_seek(lact_loader *l, lact_loader_pos pos) {
    if (pos.epoch < 0 || pos.shard < 0 || pos.shard >= l->n_shards || pos.window < 0)
        return lact_fail(LACT_E_ARG, "loader: position (%lld, %lld, %lld) is outside the %d shards",
                         (long long)pos.epoch, (long long)pos.shard, (long long)pos.window,
                         l->n_shards);
    l->pos = pos;
    LACT_TRY(draw_orders(l));
    if (pos.window > l->n_windows[l->shard_order[pos.shard]])
        return lact_fail(LACT_E_ARG, "loader: window %lld is past the end of %s",
                         (long long)pos.window, l->paths[l->shard_order[pos.shard]]);
    return LACT_OK;
}

lact_status lact_loader_next(lact_loader *l, int32_t *out, int64_t *rows) {
    *rows = 0;
    while (*rows < l->batch) {
        if (!l->loop && l->pos.epoch > 0) break;
        LACT_TRY(draw_orders(l));
        int shard = l->shard_order[l->pos.shard];
        if (l->pos.window >= l->n_windows[shard]) {
            l->pos.window = 0;
            if (++l->pos.shard == l->n_shards) l->pos.shard = 0, l->pos.epoch++;
            continue;
        }
        int64_t w = l->shuffle ? l->window_order[l->pos.window] : l->pos.window;
        LACT_TRY(lact_shard_read(&l->open, w * l->seq, l->seq + 1, out + *rows * (l->seq + 1)));
        l->pos.window++;
        (*rows)++;
    }
    return LACT_OK;
}
