/* `lact lm eval`: the mean loss of a checkpoint on the val shards of a data
 * folder, as perplexity (ppl) or bits per byte (bpb). Bits per byte divide
 * the summed loss (nats / ln 2) by the text bytes of the predicted tokens:
 * each id's bytes come from decoding it alone with the tokenizer (exact for
 * the bytes tokenizer and byte-level BPE, whose tokens concatenate), and the
 * end-of-text separator counts as no bytes. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cmd_lm.h"
#include "core/io/checkpoint.h"
#include "core/train/lm_trainer.h"
#include "modalities/text/tokenizer.h"

typedef struct eval_opts {
    const char *checkpoint, *data, *task, *tokenizer, *split;
    int64_t batches, batch;
    cli_common c;
} eval_opts;

/* bytes[id] for every id of the model's vocabulary. */
static lact_status token_bytes(const char *spec, int64_t vocab, int32_t **out) {
    lact_tokenizer tok;
    LACT_TRY(lact_tokenizer_load(&tok, spec));
    lact_status s = LACT_OK;
    int64_t tv = lact_tokenizer_vocab_size(&tok);
    int32_t eot = lact_tokenizer_eot(&tok);
    int32_t *b = calloc((size_t)vocab, sizeof *b);
    if (!b) s = lact_fail(LACT_E_NOMEM, "out of memory");
    if (s == LACT_OK && tv > vocab)
        s = lact_fail(LACT_E_ARG, "tokenizer %s has %lld ids, the model's vocab is %lld", spec,
                      (long long)tv, (long long)vocab);
    lact_bytes text = {0};
    for (int32_t id = 0; s == LACT_OK && id < tv; id++) {
        if (id == eot) continue;
        text.n = 0;
        s = lact_tokenizer_decode(&tok, &id, 1, &text);
        b[id] = (int32_t)text.n;
    }
    lact_bytes_free(&text);
    lact_tokenizer_free(&tok);
    if (s != LACT_OK) free(b);
    else *out = b;
    return s;
}

static lact_status eval_main(const eval_opts *o, lact_device dev) {
    lact_lm_run_cfg cfg;
    int64_t step;
    LACT_TRY(lact_lm_checkpoint_config(o->checkpoint, &cfg, &step));
    struct stat st;
    if (stat(o->data, &st) != 0 || !S_ISDIR(st.st_mode))
        return lact_fail(LACT_E_NOT_FOUND, "%s: no such data directory", o->data);
    int32_t *bytes = NULL;
    if (!strcmp(o->task, "bpb")) LACT_TRY(token_bytes(o->tokenizer, cfg.model.vocab, &bytes));
    lact_ctx ctx;
    lact_lm m;
    lact_lm_batch b;
    lact_loader l;
    int made = 0;
    lact_status s = lact_ctx_init(&ctx, dev, (int)o->c.threads);
    if (s == LACT_OK) made = 1, s = lact_lm_init(&m, &cfg.model, dev);
    if (s == LACT_OK) {
        made = 2;
        /* Weights only: the names of the model's parameters. */
        int n = lact_params_count(&m.params);
        const char **names = malloc((size_t)n * sizeof *names);
        lact_tensor *ts = malloc((size_t)n * sizeof *ts);
        if (!names || !ts) s = lact_fail(LACT_E_NOMEM, "out of memory");
        for (int i = 0; s == LACT_OK && i < n; i++) {
            names[i] = lact_params_at(&m.params, i)->name;
            ts[i] = lact_params_at(&m.params, i)->w;
        }
        if (s == LACT_OK) s = lact_checkpoint_load(o->checkpoint, n, names, ts, NULL);
        free(names);
        free(ts);
    }
    int64_t B = o->batch > 0 ? o->batch : cfg.batch;
    if (s == LACT_OK) s = lact_lm_batch_init(&b, &m, B, cfg.seq_len);
    if (s == LACT_OK) made = 3;
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s/*_%s_*.bin", o->data, o->split);
    const char *paths[1] = {pattern};
    if (s == LACT_OK) s = lact_loader_init(&l, paths, 1, B, cfg.seq_len, 0, false, false);
    if (s == LACT_OK) made = 4;
    lact_lm_eval_result r;
    if (s == LACT_OK) s = lact_lm_eval(&ctx, &m, &b, &l, o->batches, bytes, &r);
    if (s == LACT_OK && r.tokens == 0) s = lact_fail(LACT_E_ARG, "%s: no tokens to evaluate", pattern);
    if (s == LACT_OK) {
        double loss = r.loss_sum / (double)r.tokens;
        double bpb = bytes && r.bytes > 0 ? r.loss_sum / log(2.0) / (double)r.bytes : NAN;
        if (o->c.json) {
            printf("{\"task\": \"%s\", \"checkpoint_step\": %lld, \"loss\": %.9g, \"ppl\": %.9g, "
                   "\"tokens\": %lld",
                   o->task, (long long)step, loss, exp(loss), (long long)r.tokens);
            if (bytes) printf(", \"bytes\": %lld, \"bpb\": %.9g", (long long)r.bytes, bpb);
            printf("}\n");
        } else if (bytes) {
            printf("eval: step %lld, %lld tokens (%lld bytes): loss %.4f, %.4f bits per byte\n",
                   (long long)step, (long long)r.tokens, (long long)r.bytes, loss, bpb);
        } else {
            printf("eval: step %lld, %lld tokens: loss %.4f, perplexity %.3f\n", (long long)step,
                   (long long)r.tokens, loss, exp(loss));
        }
    }
    if (made >= 4) lact_loader_free(&l);
    if (made >= 3) lact_lm_batch_free(&b);
    if (made >= 2) lact_lm_free(&m);
    if (made >= 1) lact_ctx_free(&ctx);
    free(bytes);
    return s;
}

int cmd_lm_eval(int argc, char **argv) {
    eval_opts o;
    const cli_opt opts[] = {
        {"--checkpoint", CLI_STRING, "FILE", "a checkpoint of lact lm train", NULL, &o.checkpoint},
        {"--data", CLI_STRING, "DIR", "shards from lact lm prepare", NULL, &o.data},
        {"--task", CLI_STRING, "ppl|bpb", "perplexity, or bits per byte", "ppl", &o.task},
        {"--tokenizer", CLI_STRING, "FILE|bytes", "the shards' tokenizer (bpb only)", "bytes",
         &o.tokenizer},
        {"--split", CLI_STRING, "NAME", "which shards: <name>_<split>_*.bin", "val", &o.split},
        {"--batches", CLI_INT, "N", "batches to evaluate (0: all)", "0", &o.batches},
        {"--batch", CLI_INT, "B", "sequences per batch (0: the config's)", "0", &o.batch},
        CLI_OPT_DEVICE(&o.c),
        CLI_OPT_THREADS(&o.c),
        CLI_OPT_JSON(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact lm eval",
        "--checkpoint FILE --data DIR [options]",
        "Mean loss of a checkpoint on the val shards, as perplexity or bits per byte. Sequences\n"
        "are the config's seq_len, read in order from the start of the shards.",
        NULL,
        opts,
        0};
    cli_result res = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (res != CLI_PARSED) return res == CLI_HELP ? 0 : 2;
    if (!o.checkpoint || !o.data || (strcmp(o.task, "ppl") && strcmp(o.task, "bpb")) ||
        o.batches < 0 || o.batch < 0) {
        cli_error(&cmd, !o.checkpoint ? "--checkpoint FILE is required"
                        : !o.data     ? "--data DIR is required"
                        : o.batches < 0 || o.batch < 0
                            ? "--batches and --batch must be >= 0"
                            : "--task expects ppl or bpb");
        return 2;
    }
    lact_device dev;
    if (!cli_resolve_device(&cmd, &o.c, &dev)) return 2;
    lact_status s = eval_main(&o, dev);
    if (s != LACT_OK) {
        cli_error(&cmd, "%s", lact_errmsg());
        return 1;
    }
    return 0;
}
