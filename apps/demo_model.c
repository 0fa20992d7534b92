#include "demo_model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/base/device.h"
#include "kernels/kernels.h"

#define DEMO_EPS 1e-5f

/* Parameter slots: embed, w_in, then per block {norm, w0, w1, w2}, then the
 * final norm and the head. */
enum { P_EMBED = 0, P_WIN = 1, P_BLOCK0 = 2 };
#define P_NORM(l) (P_BLOCK0 + 4 * (l))
#define P_W0(l) (P_BLOCK0 + 4 * (l) + 1)
#define P_W1(l) (P_BLOCK0 + 4 * (l) + 2)
#define P_W2(l) (P_BLOCK0 + 4 * (l) + 3)
#define P_NORMF(L) (P_BLOCK0 + 4 * (L))
#define P_HEAD(L) (P_BLOCK0 + 4 * (L) + 1)

/* Each tensor starts on a 256-byte boundary inside the block. */
static int64_t round_up64(int64_t n) {
    return (n + 63) / 64 * 64;
}

typedef struct param_spec {
    int64_t rows, cols; /* cols 0: a vector of rows */
    float std;          /* < 0: ones */
} param_spec;

static void spec_params(const demo_config *c, param_spec *sp, demo_model *md) {
    int64_t L = c->blocks, C = c->dim, F = c->hidden, V = c->vocab, K = c->context;
    int i = 0;
    snprintf(md->names[i], 32, "embed");
    sp[i++] = (param_spec){V, C, 1.0f};
    snprintf(md->names[i], 32, "w_in");
    sp[i++] = (param_spec){K * C, C, 1.0f / sqrtf((float)(K * C))};
    for (int64_t l = 0; l < L; l++) {
        snprintf(md->names[i], 32, "blocks.%d.norm", (int)l);
        sp[i++] = (param_spec){C, 0, -1.0f};
        snprintf(md->names[i], 32, "blocks.%d.w0", (int)l);
        sp[i++] = (param_spec){C, F, 1.0f / sqrtf((float)C)};
        snprintf(md->names[i], 32, "blocks.%d.w1", (int)l);
        sp[i++] = (param_spec){C, F, 1.0f / sqrtf((float)C)};
        snprintf(md->names[i], 32, "blocks.%d.w2", (int)l);
        sp[i++] = (param_spec){F, C, 0.5f / sqrtf((float)F)};
    }
    snprintf(md->names[i], 32, "norm_f");
    sp[i++] = (param_spec){C, 0, -1.0f};
    snprintf(md->names[i], 32, "head");
    sp[i++] = (param_spec){V, C, 0.5f / sqrtf((float)C)};
    md->n = i;
}

size_t demo_model_bytes(const demo_model *md) {
    int64_t per = 0;
    for (int i = 0; i < md->n; i++)
        per += round_up64(lact_tensor_numel(&md->p[i]));
    return (size_t)per * 4 * sizeof(float);
}

lact_status demo_model_init(demo_model *md, lact_ctx *ctx, const demo_config *cfg, uint64_t seed) {
    memset(md, 0, sizeof *md);
    if (cfg->blocks < 1 || cfg->blocks > DEMO_MAX_BLOCKS)
        return lact_fail(LACT_E_ARG, "demo model: blocks must be 1..%d, got %lld", DEMO_MAX_BLOCKS,
                         (long long)cfg->blocks);
    md->cfg = *cfg;
    md->device = ctx->device;
    param_spec sp[DEMO_MAX_PARAMS];
    spec_params(cfg, sp, md);
    int64_t per = 0;
    for (int i = 0; i < md->n; i++)
        per += round_up64(sp[i].rows * (sp[i].cols ? sp[i].cols : 1));
    size_t bytes = (size_t)per * 4 * sizeof(float);
    LACT_TRY(lact_mem_alloc(ctx->device, bytes, &md->block));
    lact_status s = lact_mem_zero(ctx->device, md->block, bytes);
    float *base = md->block;
    lact_tensor *sets[4] = {md->p, md->g, md->m, md->v};
    int64_t off = 0;
    for (int i = 0; i < md->n && s == LACT_OK; i++) {
        int64_t shape[2] = {sp[i].rows, sp[i].cols};
        int ndim = sp[i].cols ? 2 : 1;
        int64_t numel = sp[i].rows * (sp[i].cols ? sp[i].cols : 1);
        for (int k = 0; k < 4; k++)
            sets[k][i] = lact_tensor_view(base + (size_t)(k * per + off), LACT_F32, ctx->device,
                                          ndim, shape);
        off += round_up64(numel);
        md->n_values += numel;
        md->decay[i] = ndim == 2;
        if (sp[i].std < 0)
            s = lact_fill_uniform(ctx, &md->p[i], seed, 1000 + (uint64_t)i, 1.0f, 1.0f);
        else
            s = lact_fill_normal(ctx, &md->p[i], seed, 1000 + (uint64_t)i, 0.0f, sp[i].std);
    }
    if (s != LACT_OK) demo_model_free(md);
    return s;
}

void demo_model_free(demo_model *md) {
    if (md->block) lact_mem_free(md->device, md->block);
    md->block = NULL;
}

static lact_status carve(lact_arena *ar, lact_tensor *t, lact_dtype dt, int64_t d0, int64_t d1) {
    int64_t shape[2] = {d0, d1};
    return lact_arena_tensor(ar, t, dt, d1 ? 2 : 1, shape);
}

lact_status demo_acts_plan(demo_acts *a, lact_arena *ar, const demo_config *c) {
    memset(a, 0, sizeof *a);
    int64_t B = c->batch, C = c->dim, F = c->hidden, K = c->context, V = c->vocab;
    int64_t L = c->blocks;
    LACT_TRY(carve(ar, &a->ids, LACT_I32, B * K, 0));
    LACT_TRY(carve(ar, &a->target, LACT_I32, B, 0));
    LACT_TRY(carve(ar, &a->emb, LACT_F32, B * K, C));
    int64_t xs[2] = {B, K * C};
    a->x = lact_tensor_view(a->emb.data, LACT_F32, ar->device, 2, xs);
    for (int64_t l = 0; l <= L; l++)
        LACT_TRY(carve(ar, &a->h[l], LACT_F32, B, C));
    for (int64_t l = 0; l < L; l++) {
        LACT_TRY(carve(ar, &a->n[l], LACT_F32, B, C));
        LACT_TRY(carve(ar, &a->rstd[l], LACT_F32, B, 0));
        LACT_TRY(carve(ar, &a->a[l], LACT_F32, B, F));
        LACT_TRY(carve(ar, &a->b[l], LACT_F32, B, F));
        LACT_TRY(carve(ar, &a->s[l], LACT_F32, B, F));
    }
    LACT_TRY(carve(ar, &a->mlp, LACT_F32, B, C));
    LACT_TRY(carve(ar, &a->hf, LACT_F32, B, C));
    LACT_TRY(carve(ar, &a->rstd_f, LACT_F32, B, 0));
    LACT_TRY(carve(ar, &a->loss, LACT_F32, B, 0));
    LACT_TRY(carve(ar, &a->lse, LACT_F32, B, 0));
    LACT_TRY(carve(ar, &a->dloss, LACT_F32, B, 0));
    LACT_TRY(carve(ar, &a->logits, LACT_F32, B, V));
    LACT_TRY(carve(ar, &a->dhf, LACT_F32, B, C));
    LACT_TRY(carve(ar, &a->dh[0], LACT_F32, B, C));
    LACT_TRY(carve(ar, &a->dh[1], LACT_F32, B, C));
    LACT_TRY(carve(ar, &a->ds, LACT_F32, B, F));
    LACT_TRY(carve(ar, &a->da, LACT_F32, B, F));
    LACT_TRY(carve(ar, &a->db, LACT_F32, B, F));
    LACT_TRY(carve(ar, &a->dn_a, LACT_F32, B, C));
    LACT_TRY(carve(ar, &a->dn_b, LACT_F32, B, C));
    LACT_TRY(carve(ar, &a->dn, LACT_F32, B, C));
    LACT_TRY(carve(ar, &a->dxn, LACT_F32, B, C));
    LACT_TRY(carve(ar, &a->dx, LACT_F32, B, K * C));
    int64_t es[2] = {B * K, C};
    a->demb = lact_tensor_view(a->dx.data, LACT_F32, ar->device, 2, es);
    return LACT_OK;
}

lact_status demo_forward(lact_ctx *ctx, const demo_model *md, demo_acts *a) {
    const lact_tensor *p = md->p;
    int L = (int)md->cfg.blocks;
    LACT_TRY(lact_embedding_forward(ctx, &a->emb, &p[P_EMBED], &a->ids));
    LACT_TRY(lact_matmul_forward(ctx, &a->h[0], &a->x, &p[P_WIN], false, false, 1.0f, 0.0f));
    for (int l = 0; l < L; l++) {
        LACT_TRY(
            lact_rmsnorm_forward(ctx, &a->n[l], &a->rstd[l], &a->h[l], &p[P_NORM(l)], DEMO_EPS));
        LACT_TRY(lact_matmul_forward(ctx, &a->a[l], &a->n[l], &p[P_W0(l)], false, false, 1, 0));
        LACT_TRY(lact_matmul_forward(ctx, &a->b[l], &a->n[l], &p[P_W1(l)], false, false, 1, 0));
        LACT_TRY(lact_swiglu_forward(ctx, &a->s[l], &a->a[l], &a->b[l]));
        LACT_TRY(lact_matmul_forward(ctx, &a->mlp, &a->s[l], &p[P_W2(l)], false, false, 1, 0));
        LACT_TRY(lact_add_forward(ctx, &a->h[l + 1], &a->h[l], &a->mlp));
    }
    LACT_TRY(lact_rmsnorm_forward(ctx, &a->hf, &a->rstd_f, &a->h[L], &p[P_NORMF(L)], DEMO_EPS));
    return lact_xent_forward(ctx, &a->loss, &a->lse, &a->hf, &p[P_HEAD(L)], &a->target, 0);
}

lact_status demo_backward(lact_ctx *ctx, demo_model *md, demo_acts *a) {
    const lact_tensor *p = md->p;
    lact_tensor *g = md->g;
    int L = (int)md->cfg.blocks;
    LACT_TRY(lact_xent_backward(ctx, &a->dhf, &g[P_HEAD(L)], &a->dloss, &a->hf, &p[P_HEAD(L)],
                                &a->target, &a->lse, 0));
    LACT_TRY(lact_rmsnorm_backward(ctx, &a->dh[0], &g[P_NORMF(L)], &a->dhf, &a->h[L],
                                   &p[P_NORMF(L)], &a->rstd_f));
    int cur = 0;
    for (int l = L - 1; l >= 0; l--) {
        /* h_{l+1} = h_l + mlp: the residual passes dh through unchanged. */
        LACT_TRY(lact_matmul_backward(ctx, &a->ds, &g[P_W2(l)], &a->dh[cur], &a->s[l], &p[P_W2(l)],
                                      false, false, 1.0f));
        LACT_TRY(lact_swiglu_backward(ctx, &a->da, &a->db, &a->ds, &a->a[l], &a->b[l]));
        LACT_TRY(lact_matmul_backward(ctx, &a->dn_a, &g[P_W0(l)], &a->da, &a->n[l], &p[P_W0(l)],
                                      false, false, 1.0f));
        LACT_TRY(lact_matmul_backward(ctx, &a->dn_b, &g[P_W1(l)], &a->db, &a->n[l], &p[P_W1(l)],
                                      false, false, 1.0f));
        LACT_TRY(lact_add_forward(ctx, &a->dn, &a->dn_a, &a->dn_b));
        LACT_TRY(lact_rmsnorm_backward(ctx, &a->dxn, &g[P_NORM(l)], &a->dn, &a->h[l], &p[P_NORM(l)],
                                       &a->rstd[l]));
        LACT_TRY(lact_add_forward(ctx, &a->dh[1 - cur], &a->dh[cur], &a->dxn));
        cur = 1 - cur;
    }
    LACT_TRY(lact_matmul_backward(ctx, &a->dx, &g[P_WIN], &a->dh[cur], &a->x, &p[P_WIN], false,
                                  false, 1.0f));
    return lact_embedding_backward(ctx, &g[P_EMBED], &a->demb, &a->ids);
}

lact_status demo_logits(lact_ctx *ctx, const demo_model *md, demo_acts *a) {
    int L = (int)md->cfg.blocks;
    return lact_matmul_forward(ctx, &a->logits, &a->hf, &md->p[P_HEAD(L)], false, true, 1.0f, 0.0f);
}

lact_status demo_adamw(lact_ctx *ctx, demo_model *md, float lr, float weight_decay, int64_t step) {
    for (int i = 0; i < md->n; i++) {
        lact_adamw_args args = {lr, 0.9f, 0.95f, 1e-8f, md->decay[i] ? weight_decay : 0.0f, step};
        LACT_TRY(lact_adamw_step(ctx, &md->p[i], &md->m[i], &md->v[i], &md->g[i], &args));
    }
    return LACT_OK;
}
