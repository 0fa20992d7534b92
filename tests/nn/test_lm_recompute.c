/* Activation recompute (cfg.recompute): for every mixer, the losses and
 * every parameter gradient equal the plain step's bit for bit, the measured
 * arena peak equals the real one, and the peak is smaller. A forward-only
 * model (scoring) gives the same losses from a smaller arena and refuses
 * backward. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/nn/lm_model.h"
#include "tests/nn/lm_check.h"
#include "tests/support/check.h"

enum { B = 2, L = 19, V = 13 };

static lact_lm_cfg model(const char *mixers) {
    lact_lm_cfg c = lact_lm_defaults();
    c.vocab = V, c.d_model = 16, c.n_layers = 4, c.n_heads = 2;
    snprintf(c.mixers, sizeof c.mixers, "%s", mixers);
    c.mlp_mult = 2.0;
    c.chunk = 4, c.window = 8;
    c.mesa_chunk = 8, c.mesa_cg_steps = 6;
    c.init_std = 0.3;
    return c;
}

static void compare(lact_ctx *ctx, const char *mixers) {
    lact_lm_cfg c = model(mixers);
    lm_case plain, rc;
    lact_status s1 = lm_case_init(&plain, ctx, &c, B, L, 7, 5);
    c.recompute = true;
    lact_status s2 = lm_case_init(&rc, ctx, &c, B, L, 7, 5);
    CHECK_OK(s1);
    CHECK_OK(s2);
    if (s1 == LACT_OK && s2 == LACT_OK) {
        lm_case_step(ctx, mixers, &plain);
        lm_case_step(ctx, mixers, &rc);
        CHECK_MSG(!memcmp(plain.loss.data, rc.loss.data, (size_t)plain.n * sizeof(float)),
                  "%s: losses differ with recompute", mixers);
        lact_params *p = &plain.m.params, *q = &rc.m.params;
        CHECK(p->padded == q->padded);
        for (int i = 0; i < lact_params_count(p) && p->padded == q->padded; i++) {
            const lact_param *a = lact_params_at(p, i);
            size_t bytes = (size_t)lact_tensor_numel(&a->w) * sizeof(float);
            CHECK_MSG(!memcmp(p->grads + a->offset, q->grads + a->offset, bytes),
                      "%s: gradient of %s differs with recompute", mixers, a->name);
        }
        CHECK_MSG(rc.peak < plain.peak, "%s: recompute peak %zu, plain %zu", mixers, rc.peak,
                  plain.peak);
        printf("%s: arena peak %zu bytes plain, %zu with recompute\n", mixers, plain.peak, rc.peak);
    }
    lm_case_free(&plain);
    lm_case_free(&rc);
}

static size_t forward_peak(lact_ctx *ctx, lm_case *s) {
    lact_arena a;
    lact_arena_init_measure(&a, LACT_CPU);
    CHECK_OK(lact_lm_forward(ctx, &s->m, &a, &s->loss, &s->ids, &s->targets));
    return a.peak;
}

static void forward_only(lact_ctx *ctx) {
    lact_lm_cfg c = model("lact,attention");
    lm_case s;
    lact_status st = lm_case_init(&s, ctx, &c, B, L, 9, -1);
    CHECK_OK(st);
    if (st == LACT_OK) {
        size_t full = forward_peak(ctx, &s);
        lm_case_step(ctx, "forward-only reference", &s);
        float *ref = malloc((size_t)s.n * sizeof *ref);
        CHECK(ref != NULL);
        if (ref) memcpy(ref, s.loss.data, (size_t)s.n * sizeof *ref);
        s.m.forward_only = true;
        size_t fo = forward_peak(ctx, &s);
        CHECK_MSG(fo < full, "forward-only peak %zu, plain forward %zu", fo, full);
        lact_arena_reset(&s.arena);
        CHECK_OK(lact_lm_forward(ctx, &s.m, &s.arena, &s.loss, &s.ids, &s.targets));
        CHECK(ref && !memcmp(ref, s.loss.data, (size_t)s.n * sizeof *ref));
        CHECK_FAILS(lact_lm_backward(ctx, &s.m, &s.arena, &s.dloss), LACT_E_ARG);
        CHECK(strstr(lact_errmsg(), "forward_only") != NULL);
        s.m.forward_only = false; /* a forward that keeps them makes backward possible again */
        lact_arena_reset(&s.arena);
        CHECK_OK(lact_lm_forward(ctx, &s.m, &s.arena, &s.loss, &s.ids, &s.targets));
        CHECK_OK(lact_lm_backward(ctx, &s.m, &s.arena, &s.dloss));
        printf("forward only: arena peak %zu bytes, %zu keeping the blocks' activations\n", fo,
               full);
        free(ref);
    }
    lm_case_free(&s);
}

int main(void) {
    lact_ctx ctx;
    lact_status st = lact_ctx_init(&ctx, LACT_CPU, 1);
    CHECK_OK(st);
    if (st != LACT_OK) return check_summary("nn_lm_recompute");
    compare(&ctx, "lact");
    compare(&ctx, "lact,attention");
    compare(&ctx, "mesa,attention");
    forward_only(&ctx);
    lact_ctx_free(&ctx);
    return check_summary("nn_lm_recompute");
}
