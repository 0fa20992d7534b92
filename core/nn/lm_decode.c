/* The language model's streaming decode (the block composition of block.c,
 * with each mixer's decode step in place of its forward) and sampling. The
 * step runs on the context's device; only ids come in from the host and
 * logits go out to it. */
#include "core/nn/lm_decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/device.h"
#include "core/base/philox.h"
#include "core/nn/nn_ops.h"
#include "kernels/kernels.h"

static lact_status mixer_step(lact_ctx *ctx, lact_lm_decode_layer *l, lact_tensor *y,
                              const lact_tensor *x) {
    if (l->mixer == LACT_MIXER_LACT) return lact_ttt_layer_decode_step(ctx, &l->lact, y, x);
    if (l->mixer == LACT_MIXER_MESA) return lact_mesa_layer_decode_step(ctx, &l->mesa, y, x);
    return lact_attn_layer_decode_step(ctx, &l->attn, y, x);
}

/* The final hidden rows [B, 1, D] of token t of n [B, T, D] (n itself when
 * T is 1). */
static lact_status token_hidden(lact_ctx *ctx, lact_lm_decode *st, lact_tensor *rows,
                                const lact_tensor *n, int64_t t) {
    int64_t B = n->shape[0], D = n->shape[2];
    if (n->shape[1] == 1) {
        *rows = LACT_NN_VIEW(n, B, 1, D);
        return LACT_OK;
    }
    *rows = LACT_NN_VIEW(&st->last, B, 1, D);
    return lact_slice_forward(ctx, rows, n, 1, t);
}

/* logits from the final hidden n [B, T, D]: every position ([B, T, V]) or
 * each sequence's last token ([B, V]). On the context's device the products
 * write logits directly; host logits of a device step come through the
 * [B, V] staging buffer one position at a time. */
static lact_status head(lact_ctx *ctx, lact_lm_decode *st, lact_tensor *logits,
                        const lact_tensor *n) {
    const lact_tensor *w = &st->model->params.items[st->model->head].w;
    int64_t B = n->shape[0], T = n->shape[1], D = n->shape[2], V = st->model->cfg.vocab;
    bool all = lact_tensor_numel(logits) == B * T * V;
    lact_tensor rows;
    if (logits->device == ctx->device) {
        lact_tensor h2 = LACT_NN_VIEW(n, B * T, D), l2 = LACT_NN_VIEW(logits, all ? B * T : B, V);
        if (!all) {
            LACT_TRY(token_hidden(ctx, st, &rows, n, T - 1));
            h2 = LACT_NN_VIEW(&rows, B, D);
        }
        return lact_matmul_forward(ctx, &l2, &h2, w, false, true, 1.0f, 0.0f);
    }
    for (int64_t t = all ? 0 : T - 1; t < T; t++) {
        LACT_TRY(token_hidden(ctx, st, &rows, n, t));
        lact_tensor h2 = LACT_NN_VIEW(&rows, B, D);
        LACT_TRY(lact_matmul_forward(ctx, &st->logits, &h2, w, false, true, 1.0f, 0.0f));
        float *out = logits->data;
        for (int64_t b = 0; b < B; b++)
            LACT_TRY(lact_mem_copy(out + (all ? b * T + t : b) * V, LACT_CPU,
                                   (const float *)st->logits.data + b * V, ctx->device,
                                   (size_t)V * sizeof(float)));
    }
    return LACT_OK;
}

/* One step on T tokens; with a measuring arena it only walks the
 * allocations (the layers' states have arenas of their own). */
static lact_status step_body(lact_ctx *ctx, lact_lm_decode *st, lact_arena *ar, lact_tensor *logits,
                             const lact_tensor *ids) {
    lact_lm *m = st->model;
    int64_t B = st->batch, T = ids->shape[1], D = m->cfg.d_model, N = B * T;
    float eps = (float)m->cfg.norm_eps;
    lact_param *it = m->params.items;
    lact_tensor x, h, n, mix, rstd;
    LACT_TRY(LACT_NN_ALLOC(ar, &x, B, T, D));
    LACT_TRY(LACT_NN_ALLOC(ar, &h, B, T, D));
    LACT_TRY(LACT_NN_ALLOC(ar, &n, B, T, D));
    LACT_TRY(LACT_NN_ALLOC(ar, &mix, B, T, D));
    LACT_TRY(LACT_NN_ALLOC(ar, &rstd, N));
    lact_tensor ids1 = LACT_NN_VIEW(ids, N), x2 = LACT_NN_VIEW(&x, N, D);
    lact_tensor h2 = LACT_NN_VIEW(&h, N, D), n2 = LACT_NN_VIEW(&n, N, D);
    LACT_NN_RUN(ar, lact_embedding_forward(ctx, &x2, &it[m->embed].w, &ids1));
    for (int i = 0; i < m->n_layers; i++) {
        lact_block *b = &m->blocks[i];
        LACT_NN_RUN(ar, lact_rmsnorm_forward(ctx, &n2, &rstd, &x2, &it[b->norm1].w, eps));
        LACT_NN_RUN(ar, mixer_step(ctx, &st->layers[i], &mix, &n));
        LACT_NN_RUN(ar, lact_add_forward(ctx, &h, &x, &mix));
        LACT_NN_RUN(ar, lact_rmsnorm_forward(ctx, &n2, &rstd, &h2, &it[b->norm2].w, eps));
        size_t mark = lact_arena_mark(ar);
        lact_mlp_saved ms;
        LACT_TRY(lact_mlp_forward(ctx, &b->mlp, ar, &ms, &x, &n, &h));
        lact_arena_release(ar, mark);
    }
    LACT_NN_RUN(ar, lact_rmsnorm_forward(ctx, &n2, &rstd, &x2, &it[m->norm_f].w, eps));
    if (ar->measuring) return LACT_OK;
    return head(ctx, st, logits, &n);
}

static lact_status init_all(lact_ctx *ctx, lact_lm_decode *st) {
    lact_lm *m = st->model;
    int64_t B = st->batch, D = m->cfg.d_model;
    st->layers = calloc((size_t)m->n_layers, sizeof *st->layers);
    if (!st->layers) return lact_fail(LACT_E_NOMEM, "lm decode: out of memory");
    for (int i = 0; i < m->n_layers; i++) {
        lact_block *b = &m->blocks[i];
        lact_lm_decode_layer *l = &st->layers[i];
        l->mixer = b->cfg.mixer;
        if (l->mixer == LACT_MIXER_LACT)
            LACT_TRY(lact_ttt_layer_decode_init(ctx, &b->lact, &l->lact, B, st->max_tokens));
        else if (l->mixer == LACT_MIXER_ATTENTION)
            LACT_TRY(lact_attn_layer_decode_init(ctx, &b->attn, &l->attn, B, st->max_tokens,
                                                 st->max_context));
        else if (l->mixer == LACT_MIXER_MESA)
            LACT_TRY(lact_mesa_layer_decode_init(ctx, &b->mesa, &l->mesa, B, st->max_tokens));
        else
            return lact_fail(LACT_E_UNSUPPORTED, "lm decode: layer %d's mixer '%s' cannot decode",
                             i, lact_mixer_name(l->mixer));
    }
    lact_device dev = ctx->device;
    int64_t last[2] = {B, D}, piece[2] = {B, st->max_tokens}, lg[2] = {B, m->cfg.vocab};
    LACT_TRY(lact_tensor_alloc(&st->last, LACT_F32, dev, 2, last));
    LACT_TRY(lact_tensor_alloc(&st->piece, LACT_I32, LACT_CPU, 2, piece));
    if (dev != LACT_CPU) {
        LACT_TRY(lact_tensor_alloc(&st->ids, LACT_I32, dev, 2, piece));
        LACT_TRY(lact_tensor_alloc(&st->logits, LACT_F32, dev, 2, lg));
    }
    lact_tensor ids = lact_tensor_view(NULL, LACT_I32, dev, 2, piece);
    lact_arena meas;
    lact_arena_init_measure(&meas, dev);
    LACT_TRY(step_body(ctx, st, &meas, NULL, &ids));
    return lact_arena_init(&st->arena, dev, meas.peak);
}

lact_status lact_lm_decode_init(lact_ctx *ctx, lact_lm *m, lact_lm_decode *st, int64_t batch,
                                int64_t max_tokens, int64_t max_context) {
    memset(st, 0, sizeof *st);
    if (m->params.device != ctx->device)
        return lact_fail(LACT_E_ARG, "lm decode: the model is on %s, the context on %s",
                         lact_device_name(m->params.device), lact_device_name(ctx->device));
    if (batch < 1 || max_tokens < 1 || max_context < max_tokens)
        return lact_fail(LACT_E_ARG,
                         "lm decode: batch %lld, max_tokens %lld must be positive "
                         "and max_context %lld at least max_tokens",
                         (long long)batch, (long long)max_tokens, (long long)max_context);
    st->model = m;
    st->batch = batch;
    st->max_tokens = max_tokens;
    st->max_context = max_context;
    lact_status s = init_all(ctx, st);
    if (s != LACT_OK) lact_lm_decode_free(st);
    return s;
}

void lact_lm_decode_free(lact_lm_decode *st) {
    if (!st) return;
    if (st->layers)
        for (int i = 0; i < st->model->n_layers; i++) {
            if (st->layers[i].mixer == LACT_MIXER_LACT)
                lact_ttt_layer_decode_free(&st->layers[i].lact);
            else if (st->layers[i].mixer == LACT_MIXER_MESA)
                lact_mesa_layer_decode_free(&st->layers[i].mesa);
            else
                lact_attn_layer_decode_free(&st->layers[i].attn);
        }
    free(st->layers);
    lact_tensor_free(&st->last);
    lact_tensor_free(&st->piece);
    lact_tensor_free(&st->ids);
    lact_tensor_free(&st->logits);
    lact_arena_free(&st->arena);
    memset(st, 0, sizeof *st);
}

lact_status lact_lm_decode_step(lact_ctx *ctx, lact_lm_decode *st, lact_tensor *logits,
                                const lact_tensor *ids) {
    if (!st || !st->model) return lact_fail(LACT_E_ARG, "lm decode: the state is not initialised");
    int64_t B = st->batch, V = st->model->cfg.vocab;
    lact_device dev = ctx->device;
    if (dev != st->arena.device)
        return lact_fail(LACT_E_ARG, "lm decode: the state lives on %s, the context on %s",
                         lact_device_name(st->arena.device), lact_device_name(dev));
    if (ids->ndim != 2 || ids->dtype != LACT_I32 ||
        (ids->device != LACT_CPU && ids->device != dev) || !lact_tensor_is_contiguous(ids) ||
        ids->shape[0] != B || ids->shape[1] < 1 || ids->shape[1] > st->max_tokens)
        return lact_fail(LACT_E_ARG, "lm decode: ids must be I32 [%lld, 1..%lld] on the CPU or %s",
                         (long long)B, (long long)st->max_tokens, lact_device_name(dev));
    int64_t T = ids->shape[1], n = lact_tensor_numel(logits);
    if (logits->dtype != LACT_F32 || (logits->device != LACT_CPU && logits->device != dev) ||
        !lact_tensor_is_contiguous(logits) || (n != B * V && n != B * T * V))
        return lact_fail(LACT_E_ARG,
                         "lm decode: logits must be F32 [%lld, %lld] or [%lld, %lld, "
                         "%lld] on the CPU or %s",
                         (long long)B, (long long)V, (long long)B, (long long)T, (long long)V,
                         lact_device_name(dev));
    if (st->pos + T > st->max_context)
        return lact_fail(LACT_E_ARG, "lm decode: %lld tokens would pass the context of %lld",
                         (long long)(st->pos + T), (long long)st->max_context);
    lact_tensor dids = *ids;
    if (ids->device != dev) {
        /* The step's ids to the device (the one upload of a step). */
        dids = LACT_NN_VIEW(&st->ids, B, T);
        LACT_TRY(lact_tensor_copy(&dids, ids));
    }
    lact_arena_reset(&st->arena);
    LACT_TRY(step_body(ctx, st, &st->arena, logits, &dids));
    st->pos += T;
    return LACT_OK;
}

lact_status lact_lm_decode_prefill(lact_ctx *ctx, lact_lm_decode *st, lact_tensor *logits,
                                   const lact_tensor *ids) {
    if (ids->ndim != 2 || ids->dtype != LACT_I32 || ids->device != LACT_CPU ||
        ids->shape[0] != st->batch || ids->shape[1] < 1)
        return lact_fail(LACT_E_ARG, "lm decode prefill: ids must be I32 [%lld, n ≥ 1] on the CPU",
                         (long long)st->batch);
    int64_t B = st->batch, n = ids->shape[1];
    const int32_t *src = ids->data;
    for (int64_t t0 = 0; t0 < n; t0 += st->max_tokens) {
        int64_t T = n - t0 < st->max_tokens ? n - t0 : st->max_tokens;
        int32_t *dst = st->piece.data;
        for (int64_t b = 0; b < B; b++)
            memcpy(dst + b * T, src + b * n + t0, (size_t)T * sizeof(int32_t));
        lact_tensor piece = LACT_NN_VIEW(&st->piece, B, T);
        LACT_TRY(lact_lm_decode_step(ctx, st, logits, &piece));
    }
    return LACT_OK;
}

/* ---- sampling ---------------------------------------------------------- */

lact_status lact_sampler_init(lact_sampler *s, const lact_sample_cfg *cfg, int64_t vocab) {
    memset(s, 0, sizeof *s);
    if (!(cfg->temperature >= 0.0f) || cfg->top_k < 0 || !(cfg->top_p > 0.0f) ||
        !(cfg->top_p <= 1.0f) || vocab < 1)
        return lact_fail(LACT_E_ARG,
                         "sampler: temperature %g must be ≥ 0, top_k %lld ≥ 0, "
                         "top_p %g in (0, 1]",
                         (double)cfg->temperature, (long long)cfg->top_k, (double)cfg->top_p);
    s->cfg = *cfg;
    s->vocab = vocab;
    s->entries = malloc((size_t)vocab * sizeof *s->entries);
    if (!s->entries) return lact_fail(LACT_E_NOMEM, "sampler: out of memory");
    return LACT_OK;
}

void lact_sampler_free(lact_sampler *s) {
    free(s->entries);
    memset(s, 0, sizeof *s);
}

/* Larger logit first; the lower id among equals, so the order is total and
 * qsort's instability cannot change a draw. */
static int entry_cmp(const void *a, const void *b) {
    const lact_sample_entry *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

int32_t lact_sampler_pick(lact_sampler *s, const float *logits, int64_t n_allowed, uint64_t stream,
                          uint64_t position) {
    int64_t n = n_allowed < s->vocab ? n_allowed : s->vocab;
    const lact_sample_cfg *c = &s->cfg;
    if (c->temperature <= 0.0f || c->top_k == 1) {
        int64_t best = 0;
        for (int64_t i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        return (int32_t)best;
    }
    lact_sample_entry *e = s->entries;
    for (int64_t i = 0; i < n; i++)
        e[i].p = logits[i], e[i].id = (int32_t)i;
    qsort(e, (size_t)n, sizeof *e, entry_cmp);
    int64_t k = c->top_k > 0 && c->top_k < n ? c->top_k : n;
    double top = e[0].p, sum = 0.0;
    for (int64_t i = 0; i < k; i++) {
        e[i].p = (float)exp(((double)e[i].p - top) / (double)c->temperature);
        sum += e[i].p;
    }
    if (c->top_p < 1.0f) {
        double cum = 0.0, need = (double)c->top_p * sum;
        int64_t kept = 0;
        while (kept < k && cum < need)
            cum += e[kept++].p;
        k = kept > 0 ? kept : 1;
        sum = cum > 0.0 ? cum : e[0].p;
    }
    double target = (double)lact_philox_uniform(c->seed, stream, position) * sum, acc = 0.0;
    for (int64_t i = 0; i < k; i++) {
        acc += e[i].p;
        if (acc > target) return e[i].id;
    }
    return e[k - 1].id;
}
