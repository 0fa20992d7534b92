#include "core/train/lm_eval_score.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/device.h"
#include "kernels/kernels.h"

/* Scoring never runs backward: neither its scratch nor the blocks' saved
 * activations are kept. */
static lact_status score_forward(lact_ctx *ctx, lact_lm *m, lact_arena *arena, lact_tensor *loss,
                                 const lact_tensor *ids, const lact_tensor *targets) {
    bool keep = m->forward_only;
    m->forward_only = true;
    lact_status st = lact_lm_forward(ctx, m, arena, loss, ids, targets);
    m->forward_only = keep;
    return st;
}

lact_status lact_lm_scorer_init(lact_lm_scorer *s, lact_lm *m, int64_t B, int64_t L,
                                int64_t logit_rows) {
    memset(s, 0, sizeof *s);
    if (B < 1 || L < 1 || logit_rows < 0 || logit_rows > L)
        return lact_fail(LACT_E_ARG, "lm scorer: %lld rows of %lld positions, %lld logit rows",
                         (long long)B, (long long)L, (long long)logit_rows);
    s->B = B, s->L = L, s->logit_rows = logit_rows;
    lact_device dev = m->params.device;
    int64_t V = m->cfg.vocab, bl[2] = {B, L}, flat[1] = {B * L}, lv[2] = {logit_rows, V};
    lact_status st = lact_tensor_alloc(&s->ids, LACT_I32, dev, 2, bl);
    if (st == LACT_OK) st = lact_tensor_alloc(&s->targets, LACT_I32, dev, 2, bl);
    if (st == LACT_OK) st = lact_tensor_alloc(&s->loss, LACT_F32, dev, 1, flat);
    if (st == LACT_OK && logit_rows > 0) st = lact_tensor_alloc(&s->logits, LACT_F32, dev, 2, lv);
    size_t n = (size_t)(B * L);
    s->h_ids = malloc(n * sizeof *s->h_ids);
    s->h_targets = malloc(n * sizeof *s->h_targets);
    s->h_loss = malloc(n * sizeof *s->h_loss);
    s->h_logits = malloc((size_t)((logit_rows > 0 ? logit_rows : 1) * V) * sizeof *s->h_logits);
    if (st == LACT_OK && (!s->h_ids || !s->h_targets || !s->h_loss || !s->h_logits))
        st = lact_fail(LACT_E_NOMEM, "lm scorer: out of host memory for %lld x %lld", (long long)B,
                       (long long)L);
    if (st == LACT_OK) {
        lact_ctx none = {.device = dev};
        lact_arena meas;
        lact_arena_init_measure(&meas, dev);
        st = score_forward(&none, m, &meas, &s->loss, &s->ids, &s->targets);
        if (st == LACT_OK) st = lact_arena_init(&s->arena, dev, meas.peak);
    }
    if (st != LACT_OK) lact_lm_scorer_free(s);
    return st;
}

void lact_lm_scorer_free(lact_lm_scorer *s) {
    lact_tensor_free(&s->ids);
    lact_tensor_free(&s->targets);
    lact_tensor_free(&s->loss);
    lact_tensor_free(&s->logits);
    free(s->h_ids);
    free(s->h_targets);
    free(s->h_loss);
    free(s->h_logits);
    lact_arena_free(&s->arena);
    memset(s, 0, sizeof *s);
}

lact_status lact_lm_scorer_run(lact_ctx *ctx, lact_lm *m, lact_lm_scorer *s, int64_t len) {
    if (len < 1 || len > s->L)
        return lact_fail(LACT_E_ARG, "lm scorer: %lld positions, at most %lld", (long long)len,
                         (long long)s->L);
    lact_device dev = s->ids.device;
    int64_t bl[2] = {s->B, len}, flat[1] = {s->B * len};
    size_t n = (size_t)(s->B * len);
    lact_tensor ids = lact_tensor_view(s->ids.data, LACT_I32, dev, 2, bl);
    lact_tensor targets = lact_tensor_view(s->targets.data, LACT_I32, dev, 2, bl);
    lact_tensor loss = lact_tensor_view(s->loss.data, LACT_F32, dev, 1, flat);
    LACT_TRY(lact_mem_copy(ids.data, dev, s->h_ids, LACT_CPU, n * sizeof(int32_t)));
    LACT_TRY(lact_mem_copy(targets.data, dev, s->h_targets, LACT_CPU, n * sizeof(int32_t)));
    lact_arena_reset(&s->arena);
    LACT_TRY(score_forward(ctx, m, &s->arena, &loss, &ids, &targets));
    s->len = len;
    return lact_mem_copy(s->h_loss, LACT_CPU, loss.data, dev, n * sizeof(float));
}

lact_status lact_lm_scorer_logits(lact_ctx *ctx, lact_lm *m, lact_lm_scorer *s, int64_t row,
                                  int64_t t0, int64_t n) {
    if (s->len < 1 || row < 0 || row >= s->B || t0 < 0 || n < 1 || n > s->logit_rows ||
        t0 + n > s->len)
        return lact_fail(LACT_E_ARG,
                         "lm scorer: logits of row %lld, positions [%lld, %lld) after a run of "
                         "%lld positions, up to %lld at once",
                         (long long)row, (long long)t0, (long long)(t0 + n), (long long)s->len,
                         (long long)s->logit_rows);
    /* The forward left the final normed hidden [B·len, D] in m->hf; the
     * wanted rows are contiguous. */
    int64_t D = m->cfg.d_model, V = m->cfg.vocab, hd[2] = {n, D}, lv[2] = {n, V};
    lact_device dev = s->ids.device;
    char *h = (char *)m->hf.data + (size_t)((row * s->len + t0) * D) * lact_dtype_size(m->act);
    lact_tensor hv = lact_tensor_view(h, m->act, dev, 2, hd);
    lact_tensor out = lact_tensor_view(s->logits.data, LACT_F32, dev, 2, lv);
    LACT_TRY(lact_matmul_forward(ctx, &out, &hv, lact_param_mm(&m->params.items[m->head], m->act),
                                 false, true, 1.0f, 0.0f));
    return lact_mem_copy(s->h_logits, LACT_CPU, out.data, dev, (size_t)(n * V) * sizeof(float));
}

int32_t lact_eval_argmax(const float *logits, int64_t n_allowed) {
    int32_t best = 0;
    for (int64_t i = 1; i < n_allowed; i++)
        if (logits[i] > logits[best]) best = (int32_t)i;
    return best;
}

lact_status lact_eval_appendf(lact_bytes *b, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return lact_fail(LACT_E_ARG, "cannot format output text");
    if ((size_t)n < sizeof buf) return lact_bytes_append(b, buf, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return lact_fail(LACT_E_NOMEM, "out of memory");
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    lact_status s = lact_bytes_append(b, big, (size_t)n);
    free(big);
    return s;
}

bool lact_eval_path_is_json(const char *path) {
    size_t n = strlen(path);
    return n >= 5 && !strcmp(path + n - 5, ".json");
}
