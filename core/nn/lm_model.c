#include "core/nn/lm_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/nn_ops.h"
#include "kernels/kernels.h"

lact_lm_cfg lact_lm_defaults(void) {
    lact_lm_cfg c;
    memset(&c, 0, sizeof c);
    c.vocab = 257, c.d_model = 64, c.n_layers = 2, c.n_heads = 2;
    strcpy(c.mixers, "lact");
    c.mlp_mult = 4.0;
    c.chunk = 32, c.window = 32, c.inter_multi = 2;
    c.base_lr = 1e-3;
    c.muon = true, c.momentum = true, c.tie_embeddings = true;
    c.mesa_chunk = LACT_MESA_CHUNK, c.mesa_cg_steps = LACT_MESA_CG_STEPS;
    c.init_std = 0.02, c.rope_theta = 10000.0, c.norm_eps = 1e-6;
    strcpy(c.dtype, "f32");
    return c;
}

static bool is_bf16(const lact_lm_cfg *c) {
    return !strcmp(c->dtype, "bf16");
}

lact_status lact_lm_check_device(const lact_lm_cfg *cfg, lact_device dev) {
    if (strcmp(cfg->dtype, "f32") != 0 && !is_bf16(cfg))
        return lact_fail(LACT_E_ARG, "dtype '%s': expected f32 or bf16", cfg->dtype);
    if (is_bf16(cfg) && dev != LACT_CUDA)
        return lact_fail(LACT_E_ARG, "dtype bf16 needs a CUDA device: the CPU kernels compute "
                                     "in F32 only (set dtype to f32)");
    return LACT_OK;
}

lact_status lact_lm_parse_mixers(const lact_lm_cfg *cfg, lact_mixer *out) {
    lact_mixer list[LACT_LM_MIXERS_MAX];
    int n = 0;
    const char *p = cfg->mixers;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char word[32];
        while (len > 0 && *p == ' ') p++, len--;
        while (len > 0 && p[len - 1] == ' ') len--;
        if (len == 0 || len >= sizeof word)
            return lact_fail(LACT_E_ARG, "mixers '%s': %s entry", cfg->mixers,
                             len == 0 ? "an empty" : "an over-long");
        memcpy(word, p, len);
        word[len] = '\0';
        if (!lact_mixer_parse(word, &list[n]))
            return lact_fail(LACT_E_ARG, "mixers: unknown mixer '%s' (lact, attention, mesa)",
                             word);
        n++;
        if (!end) break;
        p = end + 1;
    }
    if (n > cfg->n_layers)
        return lact_fail(LACT_E_ARG, "mixers '%s' names %d layers, the model has %lld",
                         cfg->mixers, n, (long long)cfg->n_layers);
    for (int64_t i = 0; i < cfg->n_layers; i++)
        out[i] = list[i % n];
    return LACT_OK;
}

static lact_status check_cfg(const lact_lm_cfg *c) {
    if (c->vocab < 2 || c->d_model < 1 || c->n_layers < 1 || c->n_heads < 1)
        return lact_fail(LACT_E_ARG, "vocab (≥ 2), d_model, n_layers and n_heads must be positive");
    if (c->d_model % c->n_heads != 0)
        return lact_fail(LACT_E_ARG, "d_model %lld is not a multiple of n_heads %lld",
                         (long long)c->d_model, (long long)c->n_heads);
    if (c->n_layers > 4096) return lact_fail(LACT_E_ARG, "n_layers %lld is too many",
                                             (long long)c->n_layers);
    if (!(c->mlp_mult > 0) || llround(c->mlp_mult * (double)c->d_model) < 1)
        return lact_fail(LACT_E_ARG, "mlp_mult %g must give a positive hidden size", c->mlp_mult);
    if (c->window < 0) return lact_fail(LACT_E_ARG, "window %lld must be ≥ 0", (long long)c->window);
    if (!(c->init_std >= 0) || !(c->norm_eps > 0))
        return lact_fail(LACT_E_ARG, "init_std must be ≥ 0 and norm_eps > 0");
    if (c->mesa_chunk < 1 || c->mesa_cg_steps < 1 || c->mesa_cg_steps > 100000)
        return lact_fail(LACT_E_ARG, "mesa_chunk %lld must be ≥ 1 and mesa_cg_steps %lld in %s",
                         (long long)c->mesa_chunk, (long long)c->mesa_cg_steps, "[1, 100000]");
    if (strcmp(c->dtype, "f32") != 0 && !is_bf16(c))
        return lact_fail(LACT_E_ARG, "dtype '%s': expected f32 or bf16", c->dtype);
    return LACT_OK;
}

static lact_block_cfg block_cfg(const lact_lm_cfg *c, lact_mixer mixer) {
    lact_block_cfg b;
    memset(&b, 0, sizeof b);
    float out_std = (float)(c->init_std / sqrt(2.0 * (double)c->n_layers));
    b.dim = c->d_model;
    b.mixer = mixer;
    b.lact = lact_ttt_layer_defaults(c->d_model, c->n_heads);
    b.lact.chunk = c->chunk;
    b.lact.inter_multi = c->inter_multi;
    b.lact.base_lr = (float)c->base_lr;
    b.lact.muon = c->muon ? LACT_TTT_MUON_TABLE : LACT_TTT_MUON_OFF;
    b.lact.momentum = c->momentum;
    b.lact.window_attn = c->window > 0;
    b.lact.window = c->window > 0 ? c->window : c->chunk;
    b.lact.rope_theta = (float)c->rope_theta;
    b.lact.init_std = (float)c->init_std;
    b.lact.norm_eps = (float)c->norm_eps;
    b.attn = lact_attn_layer_defaults(c->d_model, c->n_heads);
    b.attn.rope_theta = (float)c->rope_theta;
    b.attn.init_std = (float)c->init_std;
    b.attn.norm_eps = (float)c->norm_eps;
    b.mesa = lact_mesa_layer_defaults(c->d_model, c->n_heads);
    b.mesa.op.chunk = c->mesa_chunk;
    b.mesa.op.cg_steps = (int)c->mesa_cg_steps;
    b.mesa.init_std = (float)c->init_std;
    b.mesa.norm_eps = (float)c->norm_eps;
    b.mlp_hidden = (int64_t)llround(c->mlp_mult * (double)c->d_model);
    b.init_std = (float)c->init_std;
    b.out_std = out_std;
    b.norm_eps = (float)c->norm_eps;
    return b;
}

static lact_status lm_declare(lact_lm *m, const lact_lm_cfg *cfg) {
    int64_t V = cfg->vocab, D = cfg->d_model;
    int64_t table[2] = {V, D}, vec[1] = {D};
    lact_mixer *mixers = malloc((size_t)cfg->n_layers * sizeof *mixers);
    if (!mixers) return lact_fail(LACT_E_NOMEM, "lm: out of memory");
    lact_status s = lact_lm_parse_mixers(cfg, mixers);
    if (s == LACT_OK)
        s = lact_params_declare(&m->params, "embed", 2, table, lact_init_normal((float)cfg->init_std),
                                &m->embed);
    for (int i = 0; i < m->n_layers && s == LACT_OK; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "layers.%d", i);
        lact_block_cfg bc = block_cfg(cfg, mixers[i]);
        s = lact_block_declare(&m->blocks[i], &m->params, prefix, &bc);
    }
    if (s == LACT_OK)
        s = lact_params_declare(&m->params, "norm_f", 1, vec, lact_init_ones(), &m->norm_f);
    m->head = m->embed;
    if (s == LACT_OK && !cfg->tie_embeddings)
        s = lact_params_declare(&m->params, "head", 2, table,
                                lact_init_normal((float)cfg->init_std), &m->head);
    free(mixers);
    return s;
}

lact_status lact_lm_init(lact_lm *m, const lact_lm_cfg *cfg, lact_device dev) {
    memset(m, 0, sizeof *m);
    LACT_TRY(check_cfg(cfg));
    m->cfg = *cfg;
    m->n_layers = (int)cfg->n_layers;
    lact_params_init(&m->params, dev);
    m->blocks = calloc((size_t)m->n_layers, sizeof *m->blocks);
    m->saved = calloc((size_t)m->n_layers, sizeof *m->saved);
    m->xs = calloc((size_t)m->n_layers + 1, sizeof *m->xs);
    lact_status s = LACT_OK;
    if (!m->blocks || !m->saved || !m->xs) s = lact_fail(LACT_E_NOMEM, "lm: out of memory");
    if (s == LACT_OK) s = lm_declare(m, cfg);
    if (s == LACT_OK) s = lact_params_alloc(&m->params);
    /* BF16 where the kernels have it; the CPU model computes in F32. */
    m->act = is_bf16(cfg) && dev == LACT_CUDA ? LACT_BF16 : LACT_F32;
    if (s == LACT_OK && m->act == LACT_BF16) s = lact_params_alloc_shadow(&m->params);
    if (s != LACT_OK) lact_lm_free(m);
    return s;
}

void lact_lm_free(lact_lm *m) {
    if (m->blocks)
        for (int i = 0; i < m->n_layers; i++)
            lact_block_free(&m->blocks[i]);
    free(m->blocks);
    free(m->saved);
    free(m->xs);
    lact_params_free(&m->params);
    m->blocks = NULL, m->saved = NULL, m->xs = NULL;
}

lact_status lact_lm_init_values(lact_ctx *ctx, lact_lm *m, uint64_t seed) {
    return lact_params_init_values(ctx, &m->params, seed);
}

int64_t lact_lm_numel(const lact_lm *m) {
    return m->params.numel;
}

/* The forward; with dloss, the head's backward too (lact_lm_forward_train). */
static lact_status lm_forward(lact_ctx *ctx, lact_lm *m, lact_arena *arena, lact_tensor *loss,
                              const lact_tensor *ids, const lact_tensor *targets,
                              const lact_tensor *dloss) {
    if (ids->ndim != 2 || ids->dtype != LACT_I32 || !lact_tensor_same_shape(ids, targets) ||
        targets->dtype != LACT_I32 || lact_tensor_numel(loss) != lact_tensor_numel(ids))
        return lact_fail(LACT_E_ARG, "lm: ids and targets must be [B, L] I32 and loss [B·L]");
    if (dloss && (dloss->dtype != LACT_F32 || lact_tensor_numel(dloss) != lact_tensor_numel(ids)))
        return lact_fail(LACT_E_ARG, "lm: dloss must be [B·L] F32");
    m->head_done = false;
    int64_t B = ids->shape[0], L = ids->shape[1], D = m->cfg.d_model, N = B * L;
    lact_param *it = m->params.items;
    lact_dtype act = m->act;
    if (!arena->measuring) LACT_TRY(lact_params_refresh_shadow(ctx, &m->params));
    m->backward_ready = false;
    m->B = B, m->L = L;
    m->ids = LACT_NN_VIEW(ids, N);
    m->targets = LACT_NN_VIEW(targets, N);
    for (int i = 0; i <= m->n_layers; i++)
        LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &m->xs[i], B, L, D));
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &m->hf, N, D));
    LACT_TRY(LACT_NN_ALLOC(arena, &m->rstd_f, N));
    LACT_TRY(LACT_NN_ALLOC(arena, &m->lse, N));
    lact_tensor x0 = LACT_NN_VIEW(&m->xs[0], N, D);
    LACT_NN_RUN(arena, lact_embedding_forward(ctx, &x0, &it[m->embed].w, &m->ids));
    for (int i = 0; i < m->n_layers; i++) {
        size_t mark = lact_arena_mark(arena);
        LACT_TRY(lact_block_forward(ctx, &m->blocks[i], arena, &m->saved[i], &m->xs[i + 1],
                                    &m->xs[i]));
        /* The backward rebuilds what the block saved (block_backward). */
        if (m->cfg.recompute || m->forward_only) lact_arena_release(arena, mark);
    }
    m->backward_ready = !m->forward_only;
    lact_tensor xl = LACT_NN_VIEW(&m->xs[m->n_layers], N, D), loss1 = LACT_NN_VIEW(loss, N);
    LACT_NN_RUN(arena, lact_rmsnorm_forward(ctx, &m->hf, &m->rstd_f, &xl, &it[m->norm_f].w,
                                            (float)m->cfg.norm_eps));
    /* The head is a product: BF16 hidden states read the BF16 shadow. */
    const lact_tensor *wh = lact_param_mm(&it[m->head], act);
    if (!dloss || m->forward_only) {
        LACT_NN_RUN(arena, lact_xent_forward(ctx, &loss1, &m->lse, &m->hf, wh, &m->targets, 0));
        return LACT_OK;
    }
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &m->dhf, N, D));
    lact_tensor dl = LACT_NN_VIEW(dloss, N);
    /* The head's gradient takes dw directly (the call accumulates). */
    LACT_NN_RUN(arena, lact_xent_forward_backward(ctx, &loss1, &m->lse, &m->dhf, &it[m->head].g,
                                                  &dl, &m->hf, wh, &m->targets, 0));
    m->head_done = true;
    return LACT_OK;
}

lact_status lact_lm_forward(lact_ctx *ctx, lact_lm *m, lact_arena *arena, lact_tensor *loss,
                            const lact_tensor *ids, const lact_tensor *targets) {
    return lm_forward(ctx, m, arena, loss, ids, targets, NULL);
}

lact_status lact_lm_forward_train(lact_ctx *ctx, lact_lm *m, lact_arena *arena, lact_tensor *loss,
                                  const lact_tensor *ids, const lact_tensor *targets,
                                  const lact_tensor *dloss) {
    if (!dloss) return lact_fail(LACT_E_ARG, "lm: forward_train needs dloss");
    return lm_forward(ctx, m, arena, loss, ids, targets, dloss);
}

/* Block i's backward; with recompute, its forward runs again first (from
 * the kept residual stream xs[i], into scratch: xs[i + 1] is not touched)
 * so that its saved activations exist for as long as the backward needs
 * them. The ops are deterministic, so the recomputed activations equal the
 * forward's. */
static lact_status block_backward(lact_ctx *ctx, lact_lm *m, lact_arena *arena, int i,
                                  lact_tensor *dx, const lact_tensor *dout) {
    if (!m->cfg.recompute)
        return lact_block_backward(ctx, &m->blocks[i], arena, &m->saved[i], dx, dout);
    size_t mark = lact_arena_mark(arena);
    lact_tensor out;
    LACT_TRY(LACT_NN_ALLOC_AS(arena, m->act, &out, m->B, m->L, m->cfg.d_model));
    LACT_TRY(lact_block_forward(ctx, &m->blocks[i], arena, &m->saved[i], &out, &m->xs[i]));
    LACT_TRY(lact_block_backward(ctx, &m->blocks[i], arena, &m->saved[i], dx, dout));
    lact_arena_release(arena, mark);
    return LACT_OK;
}

lact_status lact_lm_backward(lact_ctx *ctx, lact_lm *m, lact_arena *arena,
                             const lact_tensor *dloss) {
    if (!m->backward_ready)
        return lact_fail(LACT_E_ARG, "lm: backward without a forward that kept its activations "
                                     "(none yet, or a forward_only one)");
    int64_t B = m->B, L = m->L, D = m->cfg.d_model, V = m->cfg.vocab, N = B * L;
    lact_param *it = m->params.items;
    lact_dtype act = m->act;
    size_t mark = lact_arena_mark(arena);
    lact_tensor dtable, dhf = m->dhf, dx[2];
    if (!m->head_done) {
        LACT_TRY(LACT_NN_ALLOC(arena, &dtable, V, D));
        LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &dhf, N, D));
    }
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &dx[0], B, L, D));
    LACT_TRY(LACT_NN_ALLOC_AS(arena, act, &dx[1], B, L, D));
    if (!m->head_done) {
        lact_tensor dl = LACT_NN_VIEW(dloss, N);
        LACT_NN_RUN(arena,
                    lact_xent_backward(ctx, &dhf, &dtable, &dl, &m->hf,
                                       lact_param_mm(&it[m->head], act), &m->targets, &m->lse, 0));
        LACT_NN_RUN(arena, lact_nn_accumulate(ctx, &it[m->head].g, &dtable));
    }
    lact_tensor xl = LACT_NN_VIEW(&m->xs[m->n_layers], N, D);
    lact_tensor d0 = LACT_NN_VIEW(&dx[0], N, D);
    LACT_NN_RUN(arena, lact_rmsnorm_backward_acc(ctx, &d0, &it[m->norm_f].g, &dhf, &xl,
                                                 &it[m->norm_f].w, &m->rstd_f, NULL));
    int cur = 0;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        LACT_TRY(block_backward(ctx, m, arena, i, &dx[1 - cur], &dx[cur]));
        cur = 1 - cur;
    }
    lact_tensor dxe = LACT_NN_VIEW(&dx[cur], N, D);
    LACT_NN_RUN(arena, lact_embedding_backward_add(ctx, &it[m->embed].g, &dxe, &m->ids));
    lact_arena_release(arena, mark);
    return LACT_OK;
}
