/* The language model with Mesa mixers: float central differences on sampled
 * elements of every parameter (Mesa with attention, untied; LaCT with Mesa,
 * tied), streaming decode against the full forward at every position (token
 * by token, in uneven stretches, prompt + steps), the config keys reaching
 * the layer (the chunk changes nothing, one CG step does), and errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"
#include "core/nn/lm_decode.h"
#include "tests/nn/lm_decode_check.h"
#include "kernels/kernels.h"
#include "tests/nn/lm_check.h"
#include "tests/support/check.h"

/* Heads of d = 8 (D 16): with d = 4 the per-head RMSNorm of a nearly
 * cancelled output bends the loss more than central differences of step
 * 4e-3 can follow, in the LaCT layer as in the Mesa layer. */
enum { B = 2, L = 9, V = 13, MAX_T = 5 };

static lact_lm_cfg small(const char *mixers, int64_t layers, bool tied) {
    lact_lm_cfg c = lact_lm_defaults();
    c.vocab = V, c.d_model = 16, c.n_layers = layers, c.n_heads = 2;
    snprintf(c.mixers, sizeof c.mixers, "%s", mixers);
    c.mlp_mult = 2.0;
    c.chunk = 4, c.window = 4, c.mesa_chunk = 4;
    c.base_lr = 0.3, c.muon = false;
    c.init_std = 0.2;
    c.tie_embeddings = tied;
    return c;
}

static void gradcheck(lact_ctx *ctx, const char *name, const lact_lm_cfg *cfg) {
    lm_case s;
    lact_status st = lm_case_init(&s, ctx, cfg, B, L, 42, -1);
    CHECK_OK(st);
    if (st == LACT_OK) {
        lm_case_step(ctx, name, &s);
        lact_params *p = &s.m.params;
        CHECK_MSG(lact_params_find(p, "layers.0.mesa.lambda") >= 0 ||
                      lact_params_find(p, "layers.1.mesa.lambda") >= 0,
                  "%s: no Mesa layer", name);
        lm_gradcheck(ctx, name, &s);
    }
    lm_case_free(&s);
}

/* The worst relative difference between two models' last logits. */
static double last_diff(const lact_tensor *a, const lact_tensor *b) {
    double diff = 0;
    for (int i = 0; i < B; i++)
        diff = fmax(diff, lm_rel_err((const float *)a->data + (i * L + L - 1) * V,
                                     (const float *)b->data + (i * L + L - 1) * V, V));
    return diff;
}

static void logits_of(lact_ctx *ctx, const lact_lm_cfg *cfg, const lact_tensor *ids,
                      lact_tensor *ref) {
    lact_lm m;
    CHECK_OK(lact_lm_init(&m, cfg, LACT_CPU));
    CHECK_OK(lact_lm_init_values(ctx, &m, 11));
    lm_full_logits(ctx, &m, ids, ref);
    lact_lm_free(&m);
}

static void test_decode(lact_ctx *ctx) {
    lact_lm_cfg cfg = small("mesa,lact,attention", 3, false);
    cfg.window = 5;
    lact_lm m;
    CHECK_OK(lact_lm_init(&m, &cfg, LACT_CPU));
    CHECK_OK(lact_lm_init_values(ctx, &m, 11));
    int64_t shape[2] = {B, L}, rs[2] = {B * L, V};
    lact_tensor ids, ref, other;
    CHECK_OK(lact_tensor_alloc(&ids, LACT_I32, LACT_CPU, 2, shape));
    CHECK_OK(lact_tensor_alloc(&ref, LACT_F32, LACT_CPU, 2, rs));
    CHECK_OK(lact_tensor_alloc(&other, LACT_F32, LACT_CPU, 2, rs));
    lm_fill_ids(&ids, V, 5, 1);
    lm_full_logits(ctx, &m, &ids, &ref);

    const int64_t ones[1] = {1}, mixed[4] = {4, 1, 3, 5}, prompt[2] = {5, 1};
    double e1 = lm_decode_run(ctx, &m, &ids, &ref, MAX_T, ones, 1, false, NULL);
    double e2 = lm_decode_run(ctx, &m, &ids, &ref, MAX_T, mixed, 4, true, NULL);
    double e3 = lm_decode_run(ctx, &m, &ids, &ref, MAX_T, prompt, 2, false, NULL);
    printf("lm decode (mesa, lact, attention): token by token %.2e, stretches %.2e, prompt + "
           "steps %.2e\n",
           e1, e2, e3);
    CHECK_MSG(e1 <= 1e-4, "token by token: %.3e", e1);
    CHECK_MSG(e2 <= 1e-4, "stretches: %.3e", e2);
    CHECK_MSG(e3 <= 1e-4, "prompt + steps: %.3e", e3);

    /* The chunk of the parallel form changes nothing but rounding; one CG
     * step (an unconverged solve) changes the logits: the keys reach the
     * layer. */
    lact_lm_cfg c2 = cfg;
    c2.mesa_chunk = 64;
    logits_of(ctx, &c2, &ids, &other);
    double dchunk = last_diff(&ref, &other);
    c2 = cfg;
    c2.mesa_cg_steps = 1;
    logits_of(ctx, &c2, &ids, &other);
    double dcg = last_diff(&ref, &other);
    printf("mesa_chunk 4 vs 64: %.2e; 30 CG steps vs 1: %.2e\n", dchunk, dcg);
    CHECK_MSG(dchunk <= 1e-5, "mesa_chunk 4 vs 64: %.3e", dchunk);
    CHECK_MSG(dcg > 1e-3, "one CG step changes the logits by only %.3e", dcg);
    lact_tensor_free(&ids);
    lact_tensor_free(&ref);
    lact_tensor_free(&other);
    lact_lm_free(&m);
}

static void test_errors(void) {
    lact_lm m;
    lact_lm_cfg c = small("lact,mesa", 2, true);
    lact_mixer mx[2];
    CHECK_OK(lact_lm_parse_mixers(&c, mx));
    CHECK(mx[0] == LACT_MIXER_LACT && mx[1] == LACT_MIXER_MESA);
    CHECK(strcmp(lact_mixer_name(LACT_MIXER_MESA), "mesa") == 0);
    c.mesa_chunk = 0;
    CHECK_FAILS(lact_lm_init(&m, &c, LACT_CPU), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "mesa_chunk") != NULL);
    c = small("mesa", 2, true);
    c.mesa_cg_steps = 0;
    CHECK_FAILS(lact_lm_init(&m, &c, LACT_CPU), LACT_E_ARG);
}

int main(void) {
    lact_ctx ctx;
    lact_status st = lact_ctx_init(&ctx, LACT_CPU, 1);
    CHECK_OK(st);
    if (st != LACT_OK) return check_summary("nn_lm_mesa");
    lact_lm_cfg c = small("mesa,attention", 2, false);
    gradcheck(&ctx, "mesa+attention untied", &c);
    c = small("lact,mesa", 2, true);
    gradcheck(&ctx, "lact+mesa tied", &c);
    c = small("mesa,lact", 2, true);
    c.momentum = false;
    gradcheck(&ctx, "mesa+lact tied, no momentum", &c);
    c = small("attention,mesa", 2, true);
    c.mesa_chunk = 3;
    gradcheck(&ctx, "attention+mesa tied", &c);
    test_decode(&ctx);
    test_errors();
    lact_ctx_free(&ctx);
    return check_summary("nn_lm_mesa");
}
