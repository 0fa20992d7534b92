/* `lact lm loss`: the mean loss of a checkpoint on one given token batch,
 * and optionally the gradients of that loss under lact's parameter names:
 * what a comparison with another implementation of the model needs
 * (scripts/ref/lm_parity.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_lm.h"
#include "core/train/lm_import.h"
#include "core/train/lm_loss.h"
#include "core/base/log.h"
#include "core/train/lm_trainer.h"

typedef struct loss_opts {
    const char *checkpoint, *tokens, *grads_out;
    cli_common c;
} loss_opts;

static lact_status loss_main(const loss_opts *o, lact_device dev) {
    lact_lm_run_cfg cfg;
    int64_t step, B = 0, L = 0;
    LACT_TRY(lact_lm_checkpoint_config(o->checkpoint, &cfg, &step));
    int32_t *tokens = NULL;
    LACT_TRY(lact_lm_tokens_load(o->tokens, cfg.model.vocab, &tokens, &B, &L));
    lact_ctx ctx;
    lact_lm m;
    int made = 0;
    double loss = 0;
    lact_status s = lact_ctx_init(&ctx, dev, (int)o->c.threads);
    if (s == LACT_OK) made = 1, s = lact_lm_init(&m, &cfg.model, dev);
    if (s == LACT_OK) made = 2, s = lact_lm_load_weights(&m, o->checkpoint);
    double t0 = lact_now();
    if (s == LACT_OK) s = lact_lm_batch_loss(&ctx, &m, tokens, B, L, o->grads_out != NULL, &loss);
    double secs = lact_now() - t0;
    if (s == LACT_OK && o->grads_out) s = lact_lm_save_grads(&m, o->grads_out);
    if (s == LACT_OK) {
        if (o->c.json)
            printf("{\"loss\": %.9g, \"batch\": %lld, \"seq_len\": %lld, \"device\": \"%s\", "
                   "\"grads\": %s, \"seconds\": %.3f}\n",
                   loss, (long long)B, (long long)L, lact_device_name(dev),
                   o->grads_out ? "true" : "false", secs);
        else
            printf("loss: %.9g over %lld x %lld tokens on %s (%.2f s%s)\n", loss, (long long)B,
                   (long long)L, lact_device_name(dev), secs,
                   o->grads_out ? ", with gradients" : "");
    }
    if (made >= 2) lact_lm_free(&m);
    if (made >= 1) lact_ctx_free(&ctx);
    free(tokens);
    return s;
}

int cmd_lm_loss(int argc, char **argv) {
    loss_opts o;
    const cli_opt opts[] = {
        {"--checkpoint", CLI_STRING, "FILE", "a lact lm checkpoint", NULL, &o.checkpoint},
        {"--tokens", CLI_STRING, "FILE", "safetensors with \"tokens\" [B, L + 1] (I32 or I64)",
         NULL, &o.tokens},
        {"--grads-out", CLI_STRING, "FILE", "also write the gradients of the mean loss", NULL,
         &o.grads_out},
        CLI_OPT_DEVICE(&o.c),
        CLI_OPT_THREADS(&o.c),
        CLI_OPT_JSON(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact lm loss",
        "--checkpoint FILE --tokens FILE [options]",
        "The mean cross-entropy of a checkpoint on one token batch (ids tokens[:, :-1], targets\n"
        "tokens[:, 1:]) and, with --grads-out, the gradients of that mean under lact's names.",
        NULL,
        opts,
        0};
    cli_result res = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (res != CLI_PARSED) return res == CLI_HELP ? 0 : 2;
    if (!o.checkpoint || !o.tokens) {
        cli_error(&cmd,
                  !o.checkpoint ? "--checkpoint FILE is required" : "--tokens FILE is required");
        return 2;
    }
    lact_device dev;
    if (!cli_resolve_device(&cmd, &o.c, &dev)) return 2;
    lact_status s = loss_main(&o, dev);
    if (s != LACT_OK) {
        cli_error(&cmd, "%s", lact_errmsg());
        return 1;
    }
    return 0;
}
