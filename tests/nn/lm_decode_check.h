/* Shared by the language-model decode tests: the full forward's logits at
 * every position and the streaming decode of the same ids in stretches,
 * on either device (ids, logits and references on the host). */
#ifndef LACT_TESTS_NN_LM_DECODE_CHECK_H
#define LACT_TESTS_NN_LM_DECODE_CHECK_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/lm_decode.h"
#include "kernels/kernels.h"
#include "tests/support/check.h"

/* ref [B·L, V] (host): the full forward over ids [B, L] (host), its final
 * hidden times the head, on the model's device. */
static inline void lm_full_logits(lact_ctx *ctx, lact_lm *m, const lact_tensor *ids,
                                  lact_tensor *ref) {
    lact_device dev = m->params.device;
    int64_t B = ids->shape[0], L = ids->shape[1], flat[1] = {B * L};
    int64_t rs[2] = {B * L, m->cfg.vocab};
    lact_tensor di = {0}, tg = {0}, loss = {0}, lg = {0};
    CHECK_OK(lact_tensor_clone(&di, ids, LACT_I32, dev));
    CHECK_OK(lact_tensor_alloc(&tg, LACT_I32, dev, 2, ids->shape));
    CHECK_OK(lact_tensor_alloc(&loss, LACT_F32, dev, 1, flat));
    CHECK_OK(lact_tensor_alloc(&lg, LACT_F32, dev, 2, rs));
    lact_arena meas, ar;
    lact_arena_init_measure(&meas, dev);
    CHECK_OK(lact_lm_forward(ctx, m, &meas, &loss, &di, &tg));
    CHECK_OK(lact_arena_init(&ar, dev, meas.peak));
    CHECK_OK(lact_lm_forward(ctx, m, &ar, &loss, &di, &tg));
    CHECK_OK(lact_matmul_forward(ctx, &lg, &m->hf, &m->params.items[m->head].w, false, true, 1.0f,
                                 0.0f));
    CHECK_OK(lact_tensor_copy(ref, &lg));
    lact_arena_free(&ar);
    lact_tensor_free(&di);
    lact_tensor_free(&tg);
    lact_tensor_free(&loss);
    lact_tensor_free(&lg);
}

/* ‖a − r‖ / ‖r‖ over n values. */
static inline double lm_rel_err(const float *a, const float *r, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++)
        num += ((double)a[i] - r[i]) * ((double)a[i] - r[i]), den += (double)r[i] * r[i];
    return sqrt(num / den);
}

/* Decodes ids [B, L] in stretches seg[0], seg[1], ... (the last repeats)
 * with a state of max_t tokens per step and a context of L; all_pos:
 * [B, T, V] logits per step, else [B, V] of each stretch's last token.
 * Returns the worst relative error against ref [B·L, V] over the positions
 * the steps gave; out [B·L, V] (may be NULL) receives their logits. Also
 * checks that the arena kept its size and that a token past L is refused. */
static inline double lm_decode_run(lact_ctx *ctx, lact_lm *m, const lact_tensor *ids,
                                   const lact_tensor *ref, int64_t max_t, const int64_t *seg,
                                   int n_seg, bool all_pos, float *out) {
    int64_t B = ids->shape[0], L = ids->shape[1], V = m->cfg.vocab;
    lact_lm_decode st;
    CHECK_OK(lact_lm_decode_init(ctx, m, &st, B, max_t, L));
    int32_t *piece = malloc((size_t)(B * max_t) * sizeof(int32_t));
    float *logits = malloc((size_t)(B * max_t * V) * sizeof(float));
    double worst = 0;
    size_t cap = st.arena.capacity;
    for (int64_t t0 = 0, j = 0; t0 < L; j++) {
        int64_t T = seg[j < n_seg ? j : n_seg - 1];
        if (T > L - t0) T = L - t0;
        for (int64_t b = 0; b < B; b++)
            memcpy(piece + b * T, (const int32_t *)ids->data + b * L + t0,
                   (size_t)T * sizeof(int32_t));
        int64_t ish[2] = {B, T}, lall[3] = {B, T, V}, llast[2] = {B, V};
        lact_tensor iv = lact_tensor_view(piece, LACT_I32, LACT_CPU, 2, ish);
        lact_tensor lv = all_pos ? lact_tensor_view(logits, LACT_F32, LACT_CPU, 3, lall)
                                 : lact_tensor_view(logits, LACT_F32, LACT_CPU, 2, llast);
        CHECK_OK(lact_lm_decode_step(ctx, &st, &lv, &iv));
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = all_pos ? 0 : T - 1; t < T; t++) {
                const float *a = logits + (all_pos ? (b * T + t) : b) * V;
                int64_t at = (b * L + t0 + t) * V;
                worst = fmax(worst, lm_rel_err(a, (const float *)ref->data + at, V));
                if (out) memcpy(out + at, a, (size_t)V * sizeof(float));
            }
        t0 += T;
    }
    CHECK(st.pos == L);
    CHECK(st.arena.capacity == cap && st.arena.peak <= cap); /* sized once, at init */
    /* The caches were sized for L tokens: one more is refused. */
    int64_t ish[2] = {B, 1}, llast[2] = {B, V};
    memset(piece, 0, (size_t)B * sizeof(int32_t));
    lact_tensor iv = lact_tensor_view(piece, LACT_I32, LACT_CPU, 2, ish);
    lact_tensor lv = lact_tensor_view(logits, LACT_F32, LACT_CPU, 2, llast);
    CHECK_FAILS(lact_lm_decode_step(ctx, &st, &lv, &iv), LACT_E_ARG);
    free(piece);
    free(logits);
    lact_lm_decode_free(&st);
    return worst;
}

#endif
