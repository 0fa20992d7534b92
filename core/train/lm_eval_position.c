#include "core/train/lm_eval_position.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/io/file.h"

lact_status lact_lm_positions_init(lact_lm_positions *p, int64_t L) {
    memset(p, 0, sizeof *p);
    if (L < 1) return lact_fail(LACT_E_ARG, "positions: L %lld must be ≥ 1", (long long)L);
    p->L = L;
    p->sum = calloc((size_t)L, sizeof *p->sum);
    p->count = calloc((size_t)L, sizeof *p->count);
    if (!p->sum || !p->count) {
        lact_lm_positions_free(p);
        return lact_fail(LACT_E_NOMEM, "positions: out of memory");
    }
    return LACT_OK;
}

void lact_lm_positions_free(lact_lm_positions *p) {
    free(p->sum);
    free(p->count);
    memset(p, 0, sizeof *p);
}

void lact_lm_positions_add(lact_lm_positions *p, const float *loss, const int32_t *targets,
                           int64_t rows) {
    for (int64_t r = 0; r < rows; r++) {
        bool any = false;
        for (int64_t t = 0; t < p->L; t++) {
            int64_t i = r * p->L + t;
            if (targets[i] < 0) continue;
            p->sum[t] += loss[i];
            p->count[t]++;
            any = true;
        }
        p->sequences += any;
    }
}

double lact_lm_positions_total(const lact_lm_positions *p, int64_t *tokens) {
    double s = 0;
    int64_t n = 0;
    for (int64_t t = 0; t < p->L; t++)
        s += p->sum[t], n += p->count[t];
    *tokens = n;
    return s;
}

double lact_lm_positions_mean(const lact_lm_positions *p, int64_t first, int64_t end) {
    double s = 0;
    int64_t n = 0;
    for (int64_t t = first < 0 ? 0 : first; t < end && t < p->L; t++)
        s += p->sum[t], n += p->count[t];
    return n > 0 ? s / (double)n : NAN;
}

lact_status lact_lm_eval_positions(lact_ctx *ctx, lact_lm *m, lact_lm_scorer *s, lact_loader *l,
                                   int64_t max_batches, lact_lm_positions *p) {
    int64_t L = p->L, B = s->B;
    if (l->seq != L || l->batch > B)
        return lact_fail(LACT_E_ARG, "positions: loader of %lld x %lld for a scorer of %lld x %lld",
                         (long long)l->batch, (long long)l->seq, (long long)B, (long long)L);
    int32_t *win = malloc((size_t)(B * (L + 1)) * sizeof *win);
    if (!win) return lact_fail(LACT_E_NOMEM, "positions: out of memory");
    lact_status st = LACT_OK;
    for (int64_t done = 0; st == LACT_OK && (max_batches == 0 || done < max_batches); done++) {
        int64_t rows;
        st = lact_loader_next(l, win, &rows);
        if (st != LACT_OK || rows == 0) break;
        for (int64_t r = 0; r < B; r++)
            for (int64_t t = 0; t < L; t++) {
                bool real = r < rows;
                s->h_ids[r * L + t] = real ? win[r * (L + 1) + t] : 0;
                s->h_targets[r * L + t] = real ? win[r * (L + 1) + t + 1] : -1;
            }
        st = lact_lm_scorer_run(ctx, m, s, L);
        if (st == LACT_OK) lact_lm_positions_add(p, s->h_loss, s->h_targets, rows);
    }
    free(win);
    return st;
}

int64_t lact_lm_positions_buckets(const lact_lm_positions *p, int64_t bucket,
                                  lact_lm_position_row *rows) {
    int64_t n = 0;
    for (int64_t t0 = 0; t0 < p->L; t0 += bucket, n++) {
        int64_t end = t0 + bucket < p->L ? t0 + bucket : p->L, c = 0;
        for (int64_t t = t0; t < end; t++)
            c += p->count[t];
        rows[n].position = t0;
        rows[n].count = c;
        rows[n].loss = lact_lm_positions_mean(p, t0, end);
    }
    return n;
}

lact_status lact_lm_positions_write(const char *path, const lact_lm_position_row *rows, int64_t n,
                                    int64_t bucket) {
    bool json = lact_eval_path_is_json(path);
    lact_bytes out = {0};
    lact_status s = json ? lact_eval_appendf(&out,
                                             "{\"task\": \"position\", \"bucket\": %lld, "
                                             "\"rows\": [",
                                             (long long)bucket)
                         : lact_eval_appendf(&out, "position,loss,count\n");
    for (int64_t i = 0; s == LACT_OK && i < n; i++) {
        /* An empty bucket has no mean: null in JSON, an empty field in CSV. */
        char loss[32];
        if (isnan(rows[i].loss))
            snprintf(loss, sizeof loss, "%s", json ? "null" : "");
        else
            snprintf(loss, sizeof loss, "%.9g", rows[i].loss);
        s = json ? lact_eval_appendf(&out, "%s{\"position\": %lld, \"loss\": %s, \"count\": %lld}",
                                     i ? ", " : "", (long long)rows[i].position, loss,
                                     (long long)rows[i].count)
                 : lact_eval_appendf(&out, "%lld,%s,%lld\n", (long long)rows[i].position, loss,
                                     (long long)rows[i].count);
    }
    if (s == LACT_OK && json) s = lact_eval_appendf(&out, "]}\n");
    if (s == LACT_OK) s = lact_file_write_atomic(path, out.v, out.n);
    lact_bytes_free(&out);
    return s;
}
