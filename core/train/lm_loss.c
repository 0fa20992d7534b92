#include "core/train/lm_loss.h"

#include <stdlib.h>
#include <string.h>

#include "core/io/safetensors.h"
#include "core/train/lm_batch.h"

lact_status lact_lm_tokens_load(const char *path, int64_t vocab, int32_t **tokens, int64_t *B,
                                int64_t *L) {
    *tokens = NULL;
    lact_st_file f;
    LACT_TRY(lact_st_open(&f, path));
    lact_tensor src;
    lact_status s = lact_st_get(&f, "tokens", &src);
    if (s == LACT_OK && (src.ndim != 2 || src.shape[1] < 2 || src.shape[0] < 1 ||
                         (src.dtype != LACT_I32 && src.dtype != LACT_I64))) {
        char buf[96];
        s = lact_fail(LACT_E_FORMAT,
                      "%s: 'tokens' is %s; expected [B, L + 1] I32 or I64 with L "
                      ">= 1",
                      path, lact_tensor_describe(&src, buf, sizeof buf));
    }
    int32_t *buf = NULL;
    if (s == LACT_OK) {
        buf = malloc((size_t)lact_tensor_numel(&src) * sizeof *buf);
        if (!buf) s = lact_fail(LACT_E_NOMEM, "%s: out of memory for the tokens", path);
    }
    lact_tensor dst;
    if (s == LACT_OK) {
        dst = lact_tensor_view(buf, LACT_I32, LACT_CPU, 2, src.shape);
        s = lact_tensor_copy(&dst, &src);
    }
    int64_t n = s == LACT_OK ? lact_tensor_numel(&src) : 0;
    for (int64_t i = 0; i < n && s == LACT_OK; i++)
        if (buf[i] < 0 || buf[i] >= vocab)
            s = lact_fail(LACT_E_ARG,
                          "%s: token %lld is %d, outside the model's vocabulary of "
                          "%lld",
                          path, (long long)i, (int)buf[i], (long long)vocab);
    if (s == LACT_OK) {
        *tokens = buf;
        *B = src.shape[0];
        *L = src.shape[1] - 1;
    } else {
        free(buf);
    }
    lact_st_close(&f);
    return s;
}

lact_status lact_lm_batch_loss(lact_ctx *ctx, lact_lm *m, const int32_t *tokens, int64_t B,
                               int64_t L, bool grads, double *loss) {
    lact_lm_batch b;
    lact_status s = lact_lm_batch_init(&b, m, B, L);
    int64_t n = 0;
    double sum = 0;
    if (s == LACT_OK) {
        memcpy(b.window, tokens, (size_t)(B * (L + 1)) * sizeof *tokens);
        s = lact_lm_batch_upload(&b, B, 1.0f / (float)(B * L), &n);
    }
    if (s == LACT_OK && grads) {
        /* The training step's pair of calls, whose memory the batch's arena
         * was measured for. */
        s = lact_params_zero_grad(&m->params);
        lact_arena_reset(&b.arena);
        if (s == LACT_OK)
            s = lact_lm_forward_train(ctx, m, &b.arena, &b.loss, &b.ids, &b.targets, &b.dloss);
        if (s == LACT_OK) s = lact_lm_batch_loss_sum(&b, &sum);
        if (s == LACT_OK) s = lact_lm_backward(ctx, m, &b.arena, &b.dloss);
    } else if (s == LACT_OK) {
        s = lact_lm_batch_forward(ctx, m, &b, &sum);
    }
    if (s == LACT_OK) s = lact_ctx_sync(ctx);
    if (s == LACT_OK) *loss = sum / (double)n;
    lact_lm_batch_free(&b);
    return s;
}

lact_status lact_lm_save_grads(lact_lm *m, const char *path) {
    int n = lact_params_count(&m->params);
    const char **names = malloc((size_t)(n > 0 ? n : 1) * sizeof *names);
    lact_tensor *ts = malloc((size_t)(n > 0 ? n : 1) * sizeof *ts);
    lact_status s = names && ts ? LACT_OK : lact_fail(LACT_E_NOMEM, "out of memory");
    for (int i = 0; i < n && s == LACT_OK; i++) {
        names[i] = lact_params_at(&m->params, i)->name;
        ts[i] = lact_params_at(&m->params, i)->g;
    }
    if (s == LACT_OK) s = lact_st_write(path, n, names, ts, 0, NULL, NULL);
    free(names);
    free(ts);
    return s;
}
