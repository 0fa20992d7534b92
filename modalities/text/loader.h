/* Batches of (B, T+1) token windows streamed from a list of shards without
 * loading them whole. A shard of n tokens holds (n - 1) / T windows, window
 * k starting at token k*T (consecutive windows share one token, so every
 * token is a target once). With shuffling, each epoch visits the shards and
 * the windows within each shard in an order drawn from (seed, epoch); the
 * position (epoch, shard, window) is all the state, so saving it and
 * restoring it later gives the same following batches. */
#ifndef LACT_TEXT_LOADER_H
#define LACT_TEXT_LOADER_H

#include <stdbool.h>
#include <stdint.h>

#include "modalities/text/shard.h"

typedef struct lact_loader_pos {
    int64_t epoch;
    int64_t shard;  /* index into this epoch's shard order */
    int64_t window; /* index into the current shard's window order */
} lact_loader_pos;

typedef struct lact_loader {
    char **paths;
    int64_t *n_windows; /* per shard */
    int n_shards;
    int64_t batch, seq; /* B, T */
    uint64_t seed;
    bool shuffle;
    bool loop; /* false: stop after one epoch (validation) */
    lact_loader_pos pos;
    int *shard_order;      /* for pos.epoch */
    int64_t *window_order; /* for the current shard, when shuffling */
    int64_t order_epoch, order_shard; /* what the orders were drawn for */
    lact_shard open;       /* the current shard */
    int open_index;        /* its index in paths, -1: none */
} lact_loader;

/* paths: shard files, or glob patterns ("data/tiny_train_*.bin"), checked
 * (header and size) up front. A shard with fewer than T + 1 tokens is
 * skipped; none usable is an error. */
lact_status lact_loader_init(lact_loader *l, const char *const *paths, int n_paths, int64_t batch,
                             int64_t seq, uint64_t seed, bool shuffle, bool loop);
void lact_loader_free(lact_loader *l);
/* Fills out[rows][seq + 1]; *rows is batch except at the end of a
 * non-looping loader (0 when it is exhausted). */
lact_status lact_loader_next(lact_loader *l, int32_t *out, int64_t *rows);
/* Moves to a saved position (from l->pos), checked against the shards. */
lact_status lact_loader_seek(lact_loader *l, lact_loader_pos pos);
/* Total windows in one epoch. */
int64_t lact_loader_windows(const lact_loader *l);

#endif
