/* The FLOP accounting of `lact bench lm` (core/train/lm_flops.h): every
 * term against values worked out by hand for a tiny config, causal against
 * window masks, tied against untied, each mixer alone; N against the
 * parameters the model really declares; the shipped small config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/train/lm_config.h"
#include "core/train/lm_flops.h"
#include "tests/support/check.h"

/* vocab 11, D 8, 2 heads (d 4), dh 8, F = round(1.5 · 8) = 12, window 3. */
static lact_lm_cfg tiny(const char *mixers, int64_t layers) {
    lact_lm_cfg c = lact_lm_defaults();
    c.vocab = 11, c.d_model = 8, c.n_heads = 2, c.n_layers = layers;
    snprintf(c.mixers, sizeof c.mixers, "%s", mixers);
    c.mlp_mult = 1.5, c.inter_multi = 2, c.chunk = 2, c.window = 3;
    c.momentum = true, c.tie_embeddings = true;
    return c;
}

static void test_keys(void) {
    CHECK_NEAR(lact_lm_keys_per_query(1, 0), 1.0, 0);
    CHECK_NEAR(lact_lm_keys_per_query(4, 0), 2.5, 0);      /* (1+2+3+4)/4 */
    CHECK_NEAR(lact_lm_keys_per_query(4, 1), 1.0, 0);      /* itself only */
    CHECK_NEAR(lact_lm_keys_per_query(4, 2), 1.75, 0);     /* (1+2+2+2)/4 */
    CHECK_NEAR(lact_lm_keys_per_query(10, 3), 2.7, 1e-12); /* (1+2+3·8)/10 */
    CHECK_NEAR(lact_lm_keys_per_query(10, 10), 5.5, 0);    /* window ≥ L: causal */
    CHECK_NEAR(lact_lm_keys_per_query(10, 64), 5.5, 0);
}

/* One layer of each mixer, L = 10. Per layer, matmul weights:
 *   LaCT       wq wk wv wo 4·64 + lr_w 3·2·8 + mom_w 2·8        = 320
 *   attention  wq wk wv wg wo 5·64                              = 320
 *   Mesa       wq wk wv w_gate 4·64 + w_decay w_beta 2·2·8 + wo = 352
 *   MLP        3·8·12                                           = 288
 * head 11·8 = 88, so N = 88 + 320 + 320 + 352 + 3·288 = 1944. */
static void test_terms(void) {
    lact_lm_cfg c = tiny("lact,attention,mesa", 3);
    lact_lm_flops f;
    CHECK_OK(lact_lm_flops_per_token(&c, 10, &f));
    CHECK(f.layers[LACT_MIXER_LACT] == 1 && f.layers[LACT_MIXER_ATTENTION] == 1 &&
          f.layers[LACT_MIXER_MESA] == 1);
    CHECK(f.n_head == 88);
    CHECK(f.n_mixer[LACT_MIXER_LACT] == 320);
    CHECK(f.n_mixer[LACT_MIXER_ATTENTION] == 320);
    CHECK(f.n_mixer[LACT_MIXER_MESA] == 352);
    CHECK(f.n_mlp == 864);
    CHECK(f.n_matmul == 1944);
    CHECK_NEAR(f.matmul, 6.0 * 1944, 0);
    CHECK_NEAR(f.keys_causal, 5.5, 0);
    CHECK_NEAR(f.attention, 12.0 * 8 * 5.5, 1e-9); /* 528 */
    CHECK_NEAR(f.keys_window, 2.7, 1e-12);
    CHECK_NEAR(f.window, 12.0 * 8 * 2.7, 1e-9); /* 259.2 */
    CHECK_NEAR(f.ttt, 54.0 * 8 * 8, 0);         /* 3456 */
    CHECK_NEAR(f.total, 11664 + 528 + 259.2 + 3456, 1e-9);

    /* Without momentum the LaCT layer loses mom_w (2·8). */
    c.momentum = false;
    CHECK_OK(lact_lm_flops_per_token(&c, 10, &f));
    CHECK(f.n_mixer[LACT_MIXER_LACT] == 304 && f.n_matmul == 1928);
}

static void test_masks(void) {
    lact_lm_cfg c = tiny("lact,attention,mesa", 3);
    lact_lm_flops causal, wide, none;
    /* A window at least as long as the sequence is the causal mask. */
    c.window = 16;
    CHECK_OK(lact_lm_flops_per_token(&c, 10, &wide));
    CHECK_NEAR(wide.keys_window, 5.5, 0);
    CHECK_NEAR(wide.window, wide.attention, 1e-9);
    /* Without the window branch the LaCT layer has no attention term. */
    c.window = 0;
    CHECK_OK(lact_lm_flops_per_token(&c, 10, &none));
    CHECK(none.keys_window == 0 && none.window == 0);
    CHECK_NEAR(none.ttt, 3456, 0);
    CHECK_NEAR(none.total, 11664 + 528 + 3456, 1e-9);
    /* Causal attention grows with L, the window branch stops at w. */
    c.window = 3;
    CHECK_OK(lact_lm_flops_per_token(&c, 1000, &causal));
    CHECK_NEAR(causal.attention, 12.0 * 8 * 500.5, 1e-6);
    CHECK_NEAR(causal.keys_window, 3.0 - 3.0 * 2 / 2000, 1e-12);
    CHECK(causal.n_matmul == 1944);
}

static void test_tied(void) {
    lact_lm_cfg c = tiny("lact,attention,mesa", 3);
    lact_lm_flops tied, untied;
    CHECK_OK(lact_lm_flops_per_token(&c, 10, &tied));
    c.tie_embeddings = false;
    CHECK_OK(lact_lm_flops_per_token(&c, 10, &untied));
    /* The head is one V·D product either way; the untied embedding is a
     * lookup. */
    CHECK(untied.n_head == 88 && untied.n_matmul == tied.n_matmul);
    CHECK_NEAR(untied.total, tied.total, 0);
}

static void test_mixers(void) {
    lact_lm_flops f;
    lact_lm_cfg c = tiny("lact", 2);
    CHECK_OK(lact_lm_flops_per_token(&c, 10, &f));
    CHECK(f.layers[LACT_MIXER_LACT] == 2 && f.layers[LACT_MIXER_ATTENTION] == 0);
    CHECK(f.n_matmul == 88 + 2 * 320 + 2 * 288);
    CHECK(f.attention == 0);
    CHECK_NEAR(f.window, 2 * 259.2, 1e-9);
    CHECK_NEAR(f.ttt, 2 * 3456, 0);

    /* window is a LaCT key: attention layers ignore it. */
    c = tiny("attention", 2);
    CHECK_OK(lact_lm_flops_per_token(&c, 10, &f));
    CHECK(f.n_matmul == 88 + 2 * 320 + 2 * 288);
    CHECK_NEAR(f.attention, 2 * 528, 1e-9);
    CHECK(f.window == 0 && f.ttt == 0 && f.keys_window > 0);

    /* Mesa: projections only (its op is not counted). */
    c = tiny("mesa", 2);
    CHECK_OK(lact_lm_flops_per_token(&c, 10, &f));
    CHECK(f.n_matmul == 88 + 2 * 352 + 2 * 288);
    CHECK(f.attention == 0 && f.window == 0 && f.ttt == 0);
    CHECK_NEAR(f.total, 6.0 * f.n_matmul, 0);

    /* The list repeats over the layers. */
    c = tiny("lact,lact,attention", 7);
    CHECK_OK(lact_lm_flops_per_token(&c, 10, &f));
    CHECK(f.layers[LACT_MIXER_LACT] == 5 && f.layers[LACT_MIXER_ATTENTION] == 2);
}

/* N against what the model declares: every 2-D parameter is a product's
 * weight, plus the untied embedding table (a lookup, not in N). */
static void test_against_model(void) {
    const char *lists[4] = {"lact,attention,mesa", "mesa,lact", "attention", "lact"};
    for (int i = 0; i < 4; i++)
        for (int tied = 0; tied < 2; tied++)
            for (int mom = 0; mom < 2; mom++) {
                lact_lm_cfg c = tiny(lists[i], 3);
                c.tie_embeddings = tied, c.momentum = mom;
                lact_lm m;
                lact_lm_flops f;
                CHECK_OK(lact_lm_flops_per_token(&c, 16, &f));
                if (lact_lm_init(&m, &c, LACT_CPU) != LACT_OK) {
                    CHECK_MSG(0, "lact_lm_init %s: %s", lists[i], lact_errmsg());
                    continue;
                }
                int64_t two_d = 0;
                for (int p = 0; p < m.params.n; p++)
                    if (m.params.items[p].ndim == 2)
                        two_d += lact_tensor_numel(&m.params.items[p].w);
                CHECK_MSG(two_d == f.n_matmul + (tied ? 0 : c.vocab * c.d_model),
                          "%s tied %d momentum %d: 2-D parameters %lld, N %lld", lists[i], tied,
                          mom, (long long)two_d, (long long)f.n_matmul);
                lact_lm_free(&m);
            }
}

/* configs/lm-small.json: D 768, 6 heads of 128, dh 256, F 2064, vocab
 * 50304, 9 LaCT + 3 attention layers, window 2048, L 4096. */
static void test_small(void) {
    const char *src = getenv("LACT_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/lm-small.json", src ? src : ".");
    int nf;
    const lact_cfg_field *fields = lact_lm_run_fields(&nf);
    lact_lm_run_cfg c = lact_lm_run_defaults();
    CHECK_OK(lact_config_load(path, fields, nf, &c));
    lact_lm_flops f;
    CHECK_OK(lact_lm_flops_per_token(&c.model, c.seq_len, &f));
    /* 50304·768 + 9·2377728 + 3·2949120 + 12·4755456 */
    CHECK(f.n_matmul == 125945856);
    CHECK_NEAR(f.matmul, 755675136.0, 0);
    CHECK_NEAR(f.attention, 3 * 12.0 * 768 * 2048.5, 1e-3); /* 56636928 */
    CHECK_NEAR(f.window, 9 * 12.0 * 768 * 1536.25, 1e-3);   /* 127422720 */
    CHECK_NEAR(f.ttt, 9 * 54.0 * 768 * 256, 0);             /* 95551488 */
    CHECK_NEAR(f.total, 1035286272.0, 1e-3);
}

static void test_errors(void) {
    lact_lm_flops f;
    lact_lm_cfg c = tiny("lact,nope", 2);
    CHECK_FAILS(lact_lm_flops_per_token(&c, 10, &f), LACT_E_ARG);
    c = tiny("lact", 2);
    c.n_heads = 3;
    CHECK_FAILS(lact_lm_flops_per_token(&c, 10, &f), LACT_E_ARG);
    c = tiny("lact", 2);
    CHECK_FAILS(lact_lm_flops_per_token(&c, 0, &f), LACT_E_ARG);
    c = tiny("lact,attention,lact", 2);
    CHECK_FAILS(lact_lm_flops_per_token(&c, 10, &f), LACT_E_ARG);
}

int main(void) {
    test_keys();
    test_terms();
    test_masks();
    test_tied();
    test_mixers();
    test_against_model();
    test_small();
    test_errors();
    return check_summary("test_lm_flops");
}
