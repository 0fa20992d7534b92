#include "core/train/lm_batch.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/device.h"

lact_status lact_lm_batch_init(lact_lm_batch *b, lact_lm *m, int64_t B, int64_t T) {
    memset(b, 0, sizeof *b);
    b->B = B, b->T = T;
    lact_device dev = m->params.device;
    int64_t bt[2] = {B, T}, flat[1] = {B * T};
    LACT_TRY(lact_tensor_alloc(&b->ids, LACT_I32, dev, 2, bt));
    LACT_TRY(lact_tensor_alloc(&b->targets, LACT_I32, dev, 2, bt));
    LACT_TRY(lact_tensor_alloc(&b->loss, LACT_F32, dev, 1, flat));
    LACT_TRY(lact_tensor_alloc(&b->dloss, LACT_F32, dev, 1, flat));
    size_t n = (size_t)(B * T);
    b->window = malloc((size_t)(B * (T + 1)) * sizeof(int32_t));
    b->h_ids = malloc(n * sizeof(int32_t));
    b->h_targets = malloc(n * sizeof(int32_t));
    b->h_loss = malloc(n * sizeof(float));
    if (!b->window || !b->h_ids || !b->h_targets || !b->h_loss)
        return lact_fail(LACT_E_NOMEM, "lm: out of host memory for a batch of %lld x %lld",
                         (long long)B, (long long)T);
    /* The measuring pass walks forward and backward without memory. */
    lact_ctx none = {.device = dev};
    lact_arena meas;
    lact_arena_init_measure(&meas, dev);
    LACT_TRY(lact_lm_forward_train(&none, m, &meas, &b->loss, &b->ids, &b->targets, &b->dloss));
    LACT_TRY(lact_lm_backward(&none, m, &meas, &b->dloss));
    return lact_arena_init(&b->arena, dev, meas.peak);
}

void lact_lm_batch_free(lact_lm_batch *b) {
    lact_tensor_free(&b->ids);
    lact_tensor_free(&b->targets);
    lact_tensor_free(&b->loss);
    lact_tensor_free(&b->dloss);
    free(b->window);
    free(b->h_ids);
    free(b->h_targets);
    free(b->h_loss);
    lact_arena_free(&b->arena);
    memset(b, 0, sizeof *b);
}

lact_status lact_lm_batch_upload(lact_lm_batch *b, int64_t rows, float weight, int64_t *n_tokens) {
    int64_t T = b->T;
    for (int64_t r = 0; r < b->B; r++)
        for (int64_t t = 0; t < T; t++) {
            int64_t i = r * T + t;
            bool real = r < rows;
            b->h_ids[i] = real ? b->window[r * (T + 1) + t] : 0;
            b->h_targets[i] = real ? b->window[r * (T + 1) + t + 1] : -1;
            b->h_loss[i] = real ? weight : 0.0f;
        }
    *n_tokens = rows * T;
    lact_device dev = b->ids.device;
    size_t n = (size_t)(b->B * T);
    LACT_TRY(lact_mem_copy(b->ids.data, dev, b->h_ids, LACT_CPU, n * sizeof(int32_t)));
    LACT_TRY(lact_mem_copy(b->targets.data, dev, b->h_targets, LACT_CPU, n * sizeof(int32_t)));
    return lact_mem_copy(b->dloss.data, dev, b->h_loss, LACT_CPU, n * sizeof(float));
}

lact_status lact_lm_batch_forward_device(lact_ctx *ctx, lact_lm *m, lact_lm_batch *b) {
    lact_arena_reset(&b->arena);
    return lact_lm_forward(ctx, m, &b->arena, &b->loss, &b->ids, &b->targets);
}

lact_status lact_lm_batch_forward(lact_ctx *ctx, lact_lm *m, lact_lm_batch *b, double *sum) {
    LACT_TRY(lact_lm_batch_forward_device(ctx, m, b));
    return lact_lm_batch_loss_sum(b, sum);
}

lact_status lact_lm_batch_loss_sum(lact_lm_batch *b, double *sum) {
    size_t n = (size_t)(b->B * b->T);
    LACT_TRY(lact_mem_copy(b->h_loss, LACT_CPU, b->loss.data, b->loss.device, n * sizeof(float)));
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += b->h_loss[i];
    *sum = s;
    return LACT_OK;
}

lact_status lact_lm_eval(lact_ctx *ctx, lact_lm *m, lact_lm_batch *b, lact_loader *l,
                         int64_t max_batches, const int32_t *token_bytes, lact_lm_eval_result *r) {
    memset(r, 0, sizeof *r);
    while (max_batches == 0 || r->batches < max_batches) {
        int64_t rows, n;
        LACT_TRY(lact_loader_next(l, b->window, &rows));
        if (rows == 0) break;
        LACT_TRY(lact_lm_batch_upload(b, rows, 1.0f, &n));
        double sum;
        LACT_TRY(lact_lm_batch_forward(ctx, m, b, &sum));
        r->loss_sum += sum;
        r->tokens += n;
        r->batches++;
        if (token_bytes)
            for (int64_t i = 0; i < b->B * b->T; i++)
                if (b->h_targets[i] >= 0) r->bytes += token_bytes[b->h_targets[i]];
    }
    return LACT_OK;
}
