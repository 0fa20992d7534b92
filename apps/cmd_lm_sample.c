/* `lact lm sample`: streaming generation from a checkpoint. The prompt is
 * prefilled through the model's decode state (lm_decode.h), then each
 * sampled token is fed back one at a time; a token's bytes go to stdout as
 * soon as it is drawn. Memory is fixed at start (the caches are sized for
 * the prompt plus --tokens), and the draw at position p uses Philox
 * (seed, p), so a seed reproduces its text. The decode runs on --device;
 * the draw always runs on the host from the last position's logits. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_lm.h"
#include "core/base/log.h"
#include "core/nn/lm_decode.h"
#include "core/train/lm_import.h"
#include "core/train/lm_trainer.h"
#include "modalities/text/tokenizer.h"

/* Prefill steps: long prompts go through in pieces of this many tokens. */
#define PREFILL_TOKENS 256

typedef struct sample_opts {
    const char *checkpoint, *tokenizer, *prompt;
    int64_t tokens, top_k;
    double temperature, top_p;
    cli_common c;
} sample_opts;

/* The prompt's ids; an empty prompt starts a new document (end-of-text). */
static lact_status prompt_ids(lact_tokenizer *tok, const char *text, lact_ids *ids) {
    LACT_TRY(lact_tokenizer_encode(tok, text, strlen(text), ids));
    if (ids->n > 0) return LACT_OK;
    int32_t eot = lact_tokenizer_eot(tok);
    if (eot < 0)
        return lact_fail(LACT_E_ARG, "--prompt is empty and the tokenizer has no end-of-text "
                                     "token to start from");
    return lact_ids_push(ids, eot);
}

/* Draws and prints up to o->tokens ids after the prefilled prompt. */
static lact_status generate(lact_ctx *ctx, lact_lm_decode *st, const lact_tokenizer *tok,
                            lact_sampler *smp, lact_tensor *logits, int64_t n_allowed,
                            const sample_opts *o, int64_t *made) {
    int32_t eot = lact_tokenizer_eot(tok), id = 0;
    int64_t one[2] = {1, 1};
    lact_tensor ids = lact_tensor_view(&id, LACT_I32, LACT_CPU, 2, one);
    lact_bytes text = {0};
    lact_status s = LACT_OK;
    for (int64_t i = 0; s == LACT_OK && i < o->tokens; i++) {
        id = lact_sampler_pick(smp, logits->data, n_allowed, 0, (uint64_t)st->pos);
        if (id == eot) break;
        text.n = 0;
        s = lact_tokenizer_decode(tok, &id, 1, &text);
        if (s == LACT_OK && text.n > 0 &&
            (fwrite(text.v, 1, text.n, stdout) != text.n || fflush(stdout) != 0))
            s = lact_fail(LACT_E_IO, "writing to stdout failed");
        if (s == LACT_OK) ++*made;
        if (s == LACT_OK && i + 1 < o->tokens) s = lact_lm_decode_step(ctx, st, logits, &ids);
    }
    lact_bytes_free(&text);
    return s;
}

static lact_status sample_main(const sample_opts *o, lact_device dev) {
    lact_lm_run_cfg cfg;
    int64_t step;
    LACT_TRY(lact_lm_checkpoint_config(o->checkpoint, &cfg, &step));
    lact_tokenizer tok;
    LACT_TRY(lact_tokenizer_load(&tok, o->tokenizer));
    int64_t tv = lact_tokenizer_vocab_size(&tok), V = cfg.model.vocab;
    lact_ids prompt = {0};
    lact_status s = LACT_OK;
    /* A model's vocabulary may pad the tokenizer's (to a multiple of 64 or
     * 128); anything else is the wrong tokenizer. */
    if (tv > V || V - tv >= 128)
        s = lact_fail(LACT_E_ARG, "tokenizer %s has %lld ids, the checkpoint's vocab is %lld",
                      o->tokenizer, (long long)tv, (long long)V);
    if (s == LACT_OK) s = prompt_ids(&tok, o->prompt ? o->prompt : "", &prompt);
    lact_ctx ctx;
    lact_lm m;
    lact_lm_decode st;
    lact_sampler smp;
    lact_tensor logits = {0};
    int made = 0;
    if (s == LACT_OK) s = lact_ctx_init(&ctx, dev, (int)o->c.threads);
    if (s == LACT_OK) made = 1, s = lact_lm_init(&m, &cfg.model, dev);
    if (s == LACT_OK) made = 2, s = lact_lm_load_weights(&m, o->checkpoint);
    int64_t n = (int64_t)prompt.n, chunk = n < PREFILL_TOKENS ? n : PREFILL_TOKENS;
    if (s == LACT_OK) s = lact_lm_decode_init(&ctx, &m, &st, 1, chunk, n + o->tokens);
    if (s == LACT_OK) made = 3;
    lact_sample_cfg sc = {(float)o->temperature, o->top_k, (float)o->top_p, (uint64_t)o->c.seed};
    if (s == LACT_OK) s = lact_sampler_init(&smp, &sc, V);
    if (s == LACT_OK) made = 4;
    int64_t lshape[2] = {1, V}, pshape[2] = {1, n};
    if (s == LACT_OK) s = lact_tensor_alloc(&logits, LACT_F32, LACT_CPU, 2, lshape);
    double t0 = lact_now();
    lact_tensor pv = lact_tensor_view(prompt.v, LACT_I32, LACT_CPU, 2, pshape);
    if (s == LACT_OK) s = lact_lm_decode_prefill(&ctx, &st, &logits, &pv);
    double t1 = lact_now();
    int64_t generated = 0;
    if (s == LACT_OK) s = generate(&ctx, &st, &tok, &smp, &logits, tv, o, &generated);
    if (s == LACT_OK) {
        printf("\n");
        fflush(stdout);
        double t2 = lact_now();
        if (!o->c.quiet)
            fprintf(stderr,
                    "sample: step %lld checkpoint on %s, %lld prompt tokens (%.1f tokens/s), "
                    "%lld generated (%.1f tokens/s)\n",
                    (long long)step, lact_device_name(dev), (long long)n,
                    (double)n / (t1 - t0 + 1e-9), (long long)generated,
                    (double)generated / (t2 - t1 + 1e-9));
    }
    lact_tensor_free(&logits);
    if (made >= 4) lact_sampler_free(&smp);
    if (made >= 3) lact_lm_decode_free(&st);
    if (made >= 2) lact_lm_free(&m);
    if (made >= 1) lact_ctx_free(&ctx);
    lact_ids_free(&prompt);
    lact_tokenizer_free(&tok);
    return s;
}

int cmd_lm_sample(int argc, char **argv) {
    sample_opts o;
    const cli_opt opts[] = {
        {"--checkpoint", CLI_STRING, "FILE", "a checkpoint of lact lm train", NULL, &o.checkpoint},
        {"--tokenizer", CLI_STRING, "FILE|bytes", "the tokenizer the model was trained with",
         "bytes", &o.tokenizer},
        {"--prompt", CLI_STRING, "TEXT", "text to continue (none: a new document)", NULL,
         &o.prompt},
        {"--tokens", CLI_INT, "N", "tokens to generate (fewer at end-of-text)", "128", &o.tokens},
        {"--temperature", CLI_FLOAT, "T", "softmax temperature (0: greedy)", "1", &o.temperature},
        {"--top-k", CLI_INT, "K", "sample among the K likeliest ids (0: all)", "0", &o.top_k},
        {"--top-p", CLI_FLOAT, "P", "nucleus: the likeliest ids holding probability P", "1",
         &o.top_p},
        CLI_OPT_SEED(&o.c),
        CLI_OPT_DEVICE(&o.c),
        CLI_OPT_THREADS(&o.c),
        CLI_OPT_QUIET(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact lm sample",
        "--checkpoint FILE [--prompt TEXT] [options]",
        "Continue a prompt with a trained model, printing each token as it is drawn.",
        "The prompt is prefilled, then tokens are drawn one at a time with constant memory\n"
        "per token and written to stdout as they come; generation stops early at the\n"
        "end-of-text token. A --seed always gives the same text on one device; the draw\n"
        "itself runs on the host, so the devices differ only where their logits round\n"
        "apart. On CUDA the decode runs in F32 (a bf16 model too).\n",
        opts,
        0};
    cli_result res = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (res != CLI_PARSED) return res == CLI_HELP ? 0 : 2;
    const char *bad = !o.checkpoint                        ? "--checkpoint FILE is required"
                      : o.tokens < 1                       ? "--tokens must be >= 1"
                      : !(o.temperature >= 0)              ? "--temperature must be >= 0"
                      : o.top_k < 0                        ? "--top-k must be >= 0"
                      : !(o.top_p > 0.0 && o.top_p <= 1.0) ? "--top-p must be in (0, 1]"
                      : o.c.seed < 0                       ? "--seed must be >= 0"
                                                           : NULL;
    if (bad) {
        cli_error(&cmd, "%s", bad);
        return 2;
    }
    lact_device dev;
    if (!cli_resolve_device(&cmd, &o.c, &dev)) return 2;
    lact_status s = sample_main(&o, dev);
    if (s != LACT_OK) {
        fflush(stdout);
        cli_error(&cmd, "%s", lact_errmsg());
        return 1;
    }
    return 0;
}
