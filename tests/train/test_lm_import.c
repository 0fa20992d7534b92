/* Importing PyTorch state dicts: the default and JSON name maps; export then
 * import gives the weights back bit for bit (F32) or rounded (BF16); a file
 * that does not fit the model gives one problem line per tensor (missing,
 * wrong shape, unexpected, an unused map entry); the step-0 checkpoint reads
 * back as a training checkpoint; the loss and gradients of one batch agree
 * between the original and the imported model. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/io/safetensors.h"
#include "core/train/lm_import.h"
#include "core/train/lm_loss.h"
#include "core/train/lm_trainer.h"
#include "tests/support/check.h"

static char g_dir[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void check_default(const char *lact, const char *file) {
    char buf[256];
    CHECK_OK(lact_lm_default_name(lact, buf, sizeof buf));
    CHECK_MSG(!strcmp(buf, file), "default name of %s: %s, expected %s", lact, buf, file);
}

static void test_default_map(void) {
    check_default("embed", "embed.weight");
    check_default("head", "head.weight");
    check_default("norm_f", "norm_f.weight");
    check_default("layers.0.norm1", "layers.0.norm1.weight");
    check_default("layers.11.mlp.w_down", "layers.11.mlp.w_down.weight");
    check_default("layers.3.lact.wq", "layers.3.lact.wq.weight");
    check_default("layers.3.lact.lr_w", "layers.3.lact.lr.weight");
    check_default("layers.3.lact.lr_b", "layers.3.lact.lr.bias");
    check_default("layers.3.lact.mom_w", "layers.3.lact.mom.weight");
    check_default("layers.3.lact.mom_b", "layers.3.lact.mom.bias");
    check_default("layers.3.lact.q_scale", "layers.3.lact.q_scale");
    check_default("layers.3.lact.k_offset", "layers.3.lact.k_offset");
    check_default("layers.3.lact.w1", "layers.3.lact.w1");
    check_default("layers.3.lact.o_norm", "layers.3.lact.o_norm.weight");
    check_default("layers.7.attn.bg", "layers.7.attn.wg.bias");
    check_default("layers.7.attn.wg", "layers.7.attn.wg.weight");
    check_default("layers.7.attn.q_norm", "layers.7.attn.q_norm.weight");
    check_default("layers.2.mesa.b_decay", "layers.2.mesa.decay.bias");
    check_default("layers.2.mesa.w_beta", "layers.2.mesa.beta.weight");
    check_default("layers.2.mesa.lambda", "layers.2.mesa.lambda");
    char tiny[8];
    CHECK_FAILS(lact_lm_default_name("layers.3.lact.wq", tiny, sizeof tiny), LACT_E_ARG);
}

static void check_mapped(const lact_lm_name_map *m, const char *lact, const char *file, int entry) {
    char buf[256];
    int e = -2;
    CHECK_OK(lact_lm_map_name(m, lact, buf, sizeof buf, &e));
    CHECK_MSG(!strcmp(buf, file) && e == entry, "%s -> %s (entry %d), expected %s (entry %d)", lact,
              buf, e, file, entry);
}

static void test_json_map(void) {
    lact_lm_name_map m;
    lact_lm_name_map_init(&m);
    CHECK_OK(lact_lm_name_map_parse(&m,
                                    "{\"layers.{i}.lact.wq\": \"model.layers.{i}.mixer.q.weight\","
                                    " \"embed\": \"tok_embeddings.weight\","
                                    " \"layers.{i}.mlp.{i}\": \"bad\","
                                    " \"layers.{i}.norm1\": \"blocks.{i}.ln_{i}.weight\"}",
                                    "test map"));
    CHECK(m.n == 4);
    check_mapped(&m, "layers.12.lact.wq", "model.layers.12.mixer.q.weight", 0);
    check_mapped(&m, "embed", "tok_embeddings.weight", 1);
    check_mapped(&m, "layers.3.norm1", "blocks.3.ln_3.weight", 3);
    /* No key matches: the default. */
    check_mapped(&m, "layers.12.lact.wk", "layers.12.lact.wk.weight", -1);
    check_mapped(&m, "layers.x.lact.wq", "layers.x.lact.wq.weight", -1);
    check_mapped(&m, "layers.1.lact.wqq", "layers.1.lact.wqq.weight", -1);
    /* "{i}" twice must see the same digits. */
    check_mapped(&m, "layers.2.mlp.2", "bad", 2);
    check_mapped(&m, "layers.2.mlp.3", "layers.2.mlp.3.weight", -1);
    lact_lm_name_map_free(&m);
    CHECK(m.n == 0);

    const char *bad[] = {
        "[1, 2]",        "{\"embed\": 3}",    "{\"embed\": \"tok.{i}\"}",
        "{\"\": \"x\"}", "{\"embed\": \"\"}", "{\"embed\": ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lact_lm_name_map_init(&m);
        CHECK_FAILS(lact_lm_name_map_parse(&m, bad[i], "bad map"), LACT_E_FORMAT);
        CHECK(m.n == 0);
    }
    lact_lm_name_map_init(&m);
    CHECK_FAILS(lact_lm_name_map_load(&m, tmp_path("no-such-map.json")), LACT_E_NOT_FOUND);
}

static lact_lm_cfg model_cfg(int layers, int dim, bool tied) {
    lact_lm_cfg c = lact_lm_defaults();
    c.vocab = 40, c.d_model = dim, c.n_heads = 2, c.n_layers = layers;
    snprintf(c.mixers, sizeof c.mixers, "lact,attention");
    c.chunk = 8, c.window = 8;
    c.tie_embeddings = tied;
    return c;
}

static bool weights_equal(lact_lm *a, lact_lm *b) {
    if (a->params.numel != b->params.numel) return false;
    for (int i = 0; i < lact_params_count(&a->params); i++) {
        lact_param *p = lact_params_at(&a->params, i), *q = lact_params_at(&b->params, i);
        if (strcmp(p->name, q->name) ||
            memcmp(p->w.data, q->w.data, lact_tensor_nbytes(&p->w)) != 0)
            return false;
    }
    return true;
}

/* Largest |a − b| / max|a| over the parameters. */
static double weights_diff(lact_lm *a, lact_lm *b) {
    double worst = 0;
    for (int i = 0; i < lact_params_count(&a->params); i++) {
        lact_param *p = lact_params_at(&a->params, i), *q = lact_params_at(&b->params, i);
        const float *x = p->w.data, *y = q->w.data;
        double top = 0, diff = 0;
        for (int64_t j = 0; j < lact_tensor_numel(&p->w); j++) {
            top = fmax(top, fabs(x[j]));
            diff = fmax(diff, fabs((double)x[j] - y[j]));
        }
        if (top > 0) worst = fmax(worst, diff / top);
    }
    return worst;
}

static bool has_line(const lact_lm_problems *pr, const char *a, const char *b) {
    for (int i = 0; i < pr->n; i++)
        if (strstr(pr->lines[i], a) && (!b || strstr(pr->lines[i], b))) return true;
    return false;
}

static void test_round_trip(void) {
    lact_lm_cfg c = model_cfg(2, 32, false);
    lact_lm a, b;
    CHECK_OK(lact_lm_init(&a, &c, LACT_CPU));
    CHECK_OK(lact_lm_init(&b, &c, LACT_CPU));
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 2));
    CHECK_OK(lact_lm_init_values(&ctx, &a, 7));
    CHECK(!weights_equal(&a, &b));

    /* Default names, F32: bit for bit. */
    const char *sd = tmp_path("sd.safetensors");
    CHECK_OK(lact_lm_export_weights(&a, sd, NULL, LACT_F32));
    lact_st_file f;
    CHECK_OK(lact_st_open(&f, sd));
    CHECK(lact_st_find(&f, "layers.0.lact.lr.weight") >= 0);
    CHECK(lact_st_find(&f, "layers.1.attn.wg.bias") >= 0);
    CHECK(lact_st_find(&f, "head.weight") >= 0);
    CHECK(f.n == lact_params_count(&a.params));
    lact_st_close(&f);
    lact_lm_problems pr;
    CHECK_OK(lact_lm_import_weights(&b, sd, NULL, &pr));
    CHECK(pr.n == 0);
    CHECK(weights_equal(&a, &b));
    lact_lm_problems_free(&pr);

    /* A renaming map both ways. */
    lact_lm_name_map m;
    lact_lm_name_map_init(&m);
    CHECK_OK(lact_lm_name_map_parse(&m,
                                    "{\"layers.{i}.lact.{i}\": \"never\", "
                                    "\"layers.{i}.mlp.w_up\": \"blk{i}.up\", "
                                    "\"embed\": \"wte\"}",
                                    "map"));
    const char *renamed = tmp_path("renamed.safetensors");
    /* The first entry matches no parameter: an error both ways. */
    CHECK_FAILS(lact_lm_export_weights(&a, renamed, &m, LACT_F32), LACT_E_FORMAT);
    CHECK(strstr(lact_errmsg(), "layers.{i}.lact.{i}") != NULL);
    lact_lm_name_map_free(&m);
    lact_lm_name_map_init(&m);
    CHECK_OK(lact_lm_name_map_parse(&m,
                                    "{\"layers.{i}.mlp.w_up\": \"blk{i}.up\", "
                                    "\"embed\": \"wte\"}",
                                    "map"));
    CHECK_OK(lact_lm_export_weights(&a, renamed, &m, LACT_F32));
    CHECK_OK(lact_st_open(&f, renamed));
    CHECK(lact_st_find(&f, "blk1.up") >= 0 && lact_st_find(&f, "wte") >= 0);
    CHECK(lact_st_find(&f, "embed.weight") < 0);
    lact_st_close(&f);
    CHECK_OK(lact_lm_init_values(&ctx, &b, 99));
    CHECK_OK(lact_lm_import_weights(&b, renamed, &m, &pr));
    CHECK(weights_equal(&a, &b));
    lact_lm_problems_free(&pr);
    /* The renamed file through the default map: two missing, two unexpected. */
    CHECK_FAILS(lact_lm_import_weights(&b, renamed, NULL, &pr), LACT_E_FORMAT);
    CHECK(pr.n == 2 + 2 + 2);
    CHECK(has_line(&pr, "missing tensor 'embed.weight'", "(for embed [40, 32])"));
    CHECK(has_line(&pr, "missing tensor 'layers.1.mlp.w_up.weight'", NULL));
    CHECK(has_line(&pr, "unexpected tensor 'wte' [40, 32]", NULL));
    CHECK(has_line(&pr, "unexpected tensor 'blk0.up'", NULL));
    CHECK(strstr(lact_errmsg(), "and 5 more problems") != NULL);
    lact_lm_problems_free(&pr);
    lact_lm_name_map_free(&m);

    /* BF16: each weight rounded to 8 bits of mantissa. */
    const char *half = tmp_path("bf16.safetensors");
    CHECK_OK(lact_lm_export_weights(&a, half, NULL, LACT_BF16));
    CHECK_OK(lact_lm_import_weights(&b, half, NULL, &pr));
    double d = weights_diff(&a, &b);
    CHECK_MSG(d > 0 && d < 1.0 / 128, "bf16 round trip differs by %g", d);
    lact_lm_problems_free(&pr);
    CHECK_FAILS(lact_lm_export_weights(&a, half, NULL, LACT_I32), LACT_E_ARG);

    /* The step-0 checkpoint: config, weights, and the same loss and gradients. */
    CHECK_OK(lact_lm_import_weights(&b, sd, NULL, &pr));
    lact_lm_problems_free(&pr);
    lact_lm_run_cfg run = lact_lm_run_defaults(), back;
    run.model = c;
    const char *ckpt = tmp_path("ckpt.safetensors");
    CHECK_OK(lact_lm_import_save(&b, &run, ckpt, sd));
    int64_t step = -1;
    CHECK_OK(lact_lm_checkpoint_config(ckpt, &back, &step));
    CHECK(step == 0 && back.model.d_model == 32 && !back.model.tie_embeddings);
    CHECK(!strcmp(back.model.mixers, "lact,attention"));
    CHECK_OK(lact_st_open(&f, ckpt));
    CHECK(lact_st_find(&f, "optim.m.layers.0.lact.wq") >= 0);
    CHECK(lact_st_find(&f, "optim.v.embed") >= 0);
    lact_tensor mv;
    CHECK_OK(lact_st_get(&f, "optim.v.head", &mv));
    CHECK(mv.ndim == 2 && mv.shape[0] == 40 && ((const float *)mv.data)[17] == 0.0f);
    lact_st_close(&f);
    lact_lm c2;
    CHECK_OK(lact_lm_init(&c2, &c, LACT_CPU));
    CHECK_OK(lact_lm_load_weights(&c2, ckpt));
    CHECK(weights_equal(&a, &c2));

    int32_t tokens[2 * 21];
    for (int i = 0; i < 2 * 21; i++)
        tokens[i] = (i * 7 + 3) % 40;
    double la = 0, lc = 0;
    CHECK_OK(lact_lm_batch_loss(&ctx, &a, tokens, 2, 20, true, &la));
    CHECK_OK(lact_lm_batch_loss(&ctx, &c2, tokens, 2, 20, true, &lc));
    CHECK_MSG(la == lc && la > 3.0 && la < 4.5, "losses %.9g and %.9g (ln 40 = 3.69)", la, lc);
    const lact_param *ga = lact_params_at(&a.params, 0), *gc = lact_params_at(&c2.params, 0);
    CHECK(memcmp(ga->g.data, gc->g.data, lact_tensor_nbytes(&ga->g)) == 0);
    /* Gradients replace, not accumulate: a second call gives the same. */
    float g0 = ((const float *)ga->g.data)[5];
    CHECK_OK(lact_lm_batch_loss(&ctx, &a, tokens, 2, 20, true, &la));
    CHECK(((const float *)ga->g.data)[5] == g0 && g0 != 0.0f);
    const char *grads = tmp_path("grads.safetensors");
    CHECK_OK(lact_lm_save_grads(&a, grads));
    CHECK_OK(lact_st_open(&f, grads));
    CHECK(f.n == lact_params_count(&a.params) && lact_st_find(&f, "layers.0.lact.w0") >= 0);
    lact_st_close(&f);

    lact_lm_free(&c2);
    lact_lm_free(&a);
    lact_lm_free(&b);
    lact_ctx_free(&ctx);
}

static void test_misfits(void) {
    lact_lm_cfg c = model_cfg(2, 32, true);
    lact_lm a;
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 2));
    lact_lm_problems pr;

    /* An untied file into a tied model: the head is unexpected. */
    lact_lm_cfg cu = model_cfg(2, 32, false);
    lact_lm u;
    CHECK_OK(lact_lm_init(&u, &cu, LACT_CPU));
    CHECK_OK(lact_lm_init_values(&ctx, &u, 1));
    const char *untied = tmp_path("untied.safetensors");
    CHECK_OK(lact_lm_export_weights(&u, untied, NULL, LACT_F32));
    lact_lm_free(&u);
    CHECK_OK(lact_lm_init(&a, &c, LACT_CPU));
    CHECK_FAILS(lact_lm_import_weights(&a, untied, NULL, &pr), LACT_E_FORMAT);
    CHECK(pr.n == 1 && has_line(&pr, "unexpected tensor 'head.weight' [40, 32]", NULL));
    CHECK(strstr(lact_errmsg(), "head.weight") && !strstr(lact_errmsg(), "more problems"));
    lact_lm_problems_free(&pr);

    /* One layer short: every tensor of layer 1 is missing. */
    lact_lm_cfg c1 = model_cfg(1, 32, true);
    snprintf(c1.mixers, sizeof c1.mixers, "lact");
    CHECK_OK(lact_lm_init(&u, &c1, LACT_CPU));
    const char *short1 = tmp_path("short.safetensors");
    CHECK_OK(lact_lm_export_weights(&u, short1, NULL, LACT_F32));
    lact_lm_free(&u);
    CHECK_FAILS(lact_lm_import_weights(&a, short1, NULL, &pr), LACT_E_FORMAT);
    CHECK(has_line(&pr, "missing tensor 'layers.1.attn.wq.weight'", "[32, 32]"));
    CHECK(has_line(&pr, "missing tensor 'layers.1.norm2.weight'", NULL));
    CHECK(!has_line(&pr, "layers.0.", NULL));
    lact_lm_problems_free(&pr);

    /* Another width: every shape is wrong, named with both shapes. */
    lact_lm_cfg cw = model_cfg(2, 16, true);
    CHECK_OK(lact_lm_init(&u, &cw, LACT_CPU));
    const char *narrow = tmp_path("narrow.safetensors");
    CHECK_OK(lact_lm_export_weights(&u, narrow, NULL, LACT_F32));
    lact_lm_free(&u);
    CHECK_FAILS(lact_lm_import_weights(&a, narrow, NULL, &pr), LACT_E_FORMAT);
    /* All but the learning-rate and momentum biases ([3H], [H]). */
    CHECK(pr.n == lact_params_count(&a.params) - 2);
    CHECK(has_line(&pr, "tensor 'embed.weight' has shape [40, 16], embed needs [40, 32]", NULL));
    CHECK(has_line(&pr, "tensor 'layers.0.lact.w0' has shape [2, 16, 8]", "[2, 32, 16]"));
    lact_lm_problems_free(&pr);

    /* A map entry for a parameter the model lacks, and two names made one. */
    lact_lm_name_map m;
    lact_lm_name_map_init(&m);
    CHECK_OK(lact_lm_name_map_parse(&m,
                                    "{\"layers.{i}.norm1\": \"x\", "
                                    "\"layers.{i}.attn.nothing\": \"y\"}",
                                    "two.json"));
    CHECK_FAILS(lact_lm_import_weights(&a, narrow, &m, &pr), LACT_E_FORMAT);
    CHECK(
        has_line(&pr, "two.json: map entry 'layers.{i}.attn.nothing' matches no parameter", NULL));
    CHECK(has_line(&pr, "'x' is the name of both layers.0.norm1 and layers.1.norm1", NULL));
    lact_lm_problems_free(&pr);
    lact_lm_name_map_free(&m);

    /* Not a float tensor; not a file. */
    int32_t ids[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    lact_tensor t = lact_tensor_view(ids, LACT_I32, LACT_CPU, 1, shape);
    const char *name = "norm_f.weight";
    const char *ints = tmp_path("ints.safetensors");
    CHECK_OK(lact_st_write(ints, 1, &name, &t, 0, NULL, NULL));
    CHECK_FAILS(lact_lm_import_weights(&a, ints, NULL, &pr), LACT_E_FORMAT);
    CHECK(has_line(&pr, "tensor 'norm_f.weight' is I32", NULL));
    lact_lm_problems_free(&pr);
    CHECK_FAILS(lact_lm_import_weights(&a, tmp_path("none.safetensors"), NULL, &pr),
                LACT_E_NOT_FOUND);

    /* Token batches: I64 read as I32; ids outside the vocabulary refused. */
    int64_t tok64[2 * 5] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 39};
    int64_t tshape[2] = {2, 5};
    lact_tensor tt = lact_tensor_view(tok64, LACT_I64, LACT_CPU, 2, tshape);
    const char *tname = "tokens", *tfile = tmp_path("tokens.safetensors");
    CHECK_OK(lact_st_write(tfile, 1, &tname, &tt, 0, NULL, NULL));
    int32_t *tokens = NULL;
    int64_t B = 0, L = 0;
    CHECK_OK(lact_lm_tokens_load(tfile, 40, &tokens, &B, &L));
    CHECK(B == 2 && L == 4 && tokens && tokens[9] == 39 && tokens[4] == 5);
    free(tokens);
    CHECK_FAILS(lact_lm_tokens_load(tfile, 39, &tokens, &B, &L), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "token 9 is 39") != NULL && tokens == NULL);
    CHECK_FAILS(lact_lm_tokens_load(ints, 40, &tokens, &B, &L), LACT_E_NOT_FOUND);

    lact_lm_free(&a);
    lact_ctx_free(&ctx);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lact_test_lm_import_XXXXXX");
    if (!mkdtemp(g_dir)) {
        CHECK_MSG(false, "cannot make %s", g_dir);
        return check_summary("train_lm_import");
    }
    test_default_map();
    test_json_map();
    test_round_trip();
    test_misfits();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return check_summary("train_lm_import");
}
