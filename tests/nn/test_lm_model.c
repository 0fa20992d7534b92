/* The language model: float central differences on sampled elements of every
 * parameter (both mixers, tied and untied heads), the measuring arena's
 * peak equal to the real pass's, ignored targets, and config errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"
#include "core/nn/lm_model.h"
#include "tests/nn/lm_check.h"
#include "tests/support/check.h"

enum { B = 2, L = 9, V = 11 };

static void gradcheck(lact_ctx *ctx, const char *name, const lact_lm_cfg *cfg) {
    lm_case s;
    lact_status st = lm_case_init(&s, ctx, cfg, B, L, 42, 3); /* target 3 ignored */
    CHECK_OK(st);
    if (st == LACT_OK) {
        lm_case_step(ctx, name, &s);
        CHECK(((float *)s.loss.data)[3] == 0.0f);
        lm_gradcheck(ctx, name, &s);
    }
    lm_case_free(&s);
}

static lact_lm_cfg small(const char *mixers, bool tied) {
    lact_lm_cfg c = lact_lm_defaults();
    c.vocab = V, c.d_model = 8, c.n_layers = 2, c.n_heads = 2;
    snprintf(c.mixers, sizeof c.mixers, "%s", mixers);
    c.mlp_mult = 2.0;
    c.chunk = 4, c.window = 4;
    c.base_lr = 0.3, c.muon = false;
    c.init_std = 0.3;
    c.tie_embeddings = tied;
    return c;
}

static void test_errors(void) {
    lact_lm m;
    lact_lm_cfg c = small("lact,rnn", true);
    CHECK_FAILS(lact_lm_init(&m, &c, LACT_CPU), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "'rnn'") != NULL);
    c = small("lact,attention,lact", true);
    CHECK_FAILS(lact_lm_init(&m, &c, LACT_CPU), LACT_E_ARG);
    c = small("lact,,attention", true);
    CHECK_FAILS(lact_lm_init(&m, &c, LACT_CPU), LACT_E_ARG);
    c = small("lact", true);
    c.n_heads = 3;
    CHECK_FAILS(lact_lm_init(&m, &c, LACT_CPU), LACT_E_ARG);
    /* The pattern repeats: "attention" for one layer names both layers. */
    c = small("attention", true);
    lact_mixer mx[2];
    CHECK_OK(lact_lm_parse_mixers(&c, mx));
    CHECK(mx[0] == LACT_MIXER_ATTENTION && mx[1] == LACT_MIXER_ATTENTION);
    c.n_layers = 2;
    snprintf(c.mixers, sizeof c.mixers, " lact , attn");
    CHECK_OK(lact_lm_parse_mixers(&c, mx));
    CHECK(mx[0] == LACT_MIXER_LACT && mx[1] == LACT_MIXER_ATTENTION);
}

int main(void) {
    lact_ctx ctx;
    lact_status st = lact_ctx_init(&ctx, LACT_CPU, 1);
    CHECK_OK(st);
    if (st != LACT_OK) return check_summary("nn_lm_model");
    lact_lm_cfg c = small("lact,attention", false);
    gradcheck(&ctx, "lact+attention untied", &c);
    c = small("attention,lact", true);
    c.momentum = false;
    gradcheck(&ctx, "attention+lact tied", &c);
    c = small("lact", true);
    c.window = 0;
    gradcheck(&ctx, "lact without window", &c);
    test_errors();
    lact_ctx_free(&ctx);
    return check_summary("nn_lm_model");
}
