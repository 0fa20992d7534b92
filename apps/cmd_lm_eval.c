/* `lact lm eval`: a checkpoint on held-out data. ppl and bpb are the mean
 * loss of the val shards, as perplexity or bits per byte: bits per byte
 * divide the summed loss (nats / ln 2) by the text bytes of the predicted
 * tokens, each id's bytes coming from decoding it alone with the tokenizer
 * (exact for the bytes tokenizer and byte-level BPE, whose tokens
 * concatenate; the end-of-text separator counts as no bytes). position,
 * niah and mc live in lm_eval_tasks.c. */
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
#include "lm_eval_tasks.h"
#include "modalities/text/tokenizer.h"

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
    if (s != LACT_OK)
        free(b);
    else
        *out = b;
    return s;
}

/* ppl and bpb: the mean loss over the val shards. */
static lact_status eval_loss(const eval_env *e) {
    const eval_opts *o = e->o;
    int32_t *bytes = NULL;
    if (!strcmp(o->task, "bpb")) LACT_TRY(token_bytes(o->tokenizer, e->cfg->model.vocab, &bytes));
    lact_lm_batch b;
    lact_loader l;
    int made = 0;
    int64_t B = o->batch > 0 ? o->batch : e->cfg->batch;
    int64_t L = o->seq_len > 0 ? o->seq_len : e->cfg->seq_len;
    lact_status s = lact_lm_batch_init(&b, e->m, B, L);
    if (s == LACT_OK) made = 1;
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s/*_%s_*.bin", o->data, o->split);
    const char *paths[1] = {pattern};
    if (s == LACT_OK) s = lact_loader_init(&l, paths, 1, B, L, 0, false, false);
    if (s == LACT_OK) made = 2;
    lact_lm_eval_result r;
    if (s == LACT_OK) s = lact_lm_eval(e->ctx, e->m, &b, &l, o->batches, bytes, &r);
    if (s == LACT_OK && r.tokens == 0)
        s = lact_fail(LACT_E_ARG, "%s: no tokens to evaluate", pattern);
    if (s == LACT_OK) {
        long long step = (long long)e->step;
        double loss = r.loss_sum / (double)r.tokens;
        double bpb = bytes && r.bytes > 0 ? r.loss_sum / log(2.0) / (double)r.bytes : NAN;
        if (o->c.json) {
            printf("{\"task\": \"%s\", \"checkpoint_step\": %lld, \"loss\": %.9g, \"ppl\": %.9g, "
                   "\"tokens\": %lld",
                   o->task, step, loss, exp(loss), (long long)r.tokens);
            if (bytes) printf(", \"bytes\": %lld, \"bpb\": %.9g", (long long)r.bytes, bpb);
            printf("}\n");
        } else if (bytes) {
            printf("eval: step %lld, %lld tokens (%lld bytes): loss %.4f, %.4f bits per byte\n",
                   step, (long long)r.tokens, (long long)r.bytes, loss, bpb);
        } else {
            printf("eval: step %lld, %lld tokens: loss %.4f, perplexity %.3f\n", step,
                   (long long)r.tokens, loss, exp(loss));
        }
    }
    if (made >= 2) lact_loader_free(&l);
    if (made >= 1) lact_lm_batch_free(&b);
    free(bytes);
    return s;
}

/* Weights only: the names of the model's parameters. */
static lact_status load_weights(lact_lm *m, const char *path) {
    int n = lact_params_count(&m->params);
    const char **names = malloc((size_t)n * sizeof *names);
    lact_tensor *ts = malloc((size_t)n * sizeof *ts);
    lact_status s = LACT_OK;
    if (!names || !ts) s = lact_fail(LACT_E_NOMEM, "out of memory");
    for (int i = 0; s == LACT_OK && i < n; i++) {
        names[i] = lact_params_at(&m->params, i)->name;
        ts[i] = lact_params_at(&m->params, i)->w;
    }
    if (s == LACT_OK) s = lact_checkpoint_load(path, n, names, ts, NULL);
    free(names);
    free(ts);
    return s;
}

static bool needs_data(const char *task) {
    return !strcmp(task, "ppl") || !strcmp(task, "bpb") || !strcmp(task, "position");
}

static lact_status eval_main(const eval_opts *o, lact_device dev) {
    lact_lm_run_cfg cfg;
    int64_t step;
    LACT_TRY(lact_lm_checkpoint_config(o->checkpoint, &cfg, &step));
    struct stat st;
    if (o->data && (stat(o->data, &st) != 0 || !S_ISDIR(st.st_mode)))
        return lact_fail(LACT_E_NOT_FOUND, "%s: no such data directory", o->data);
    if (!strcmp(o->task, "mc") && (stat(o->tasks_file, &st) != 0 || !S_ISREG(st.st_mode)))
        return lact_fail(LACT_E_NOT_FOUND, "%s: no such tasks file", o->tasks_file);
    lact_ctx ctx;
    lact_lm m;
    int made = 0;
    lact_status s = lact_ctx_init(&ctx, dev, (int)o->c.threads);
    if (s == LACT_OK) made = 1, s = lact_lm_init(&m, &cfg.model, dev);
    if (s == LACT_OK) made = 2, s = load_weights(&m, o->checkpoint);
    eval_env e = {o, &cfg, step, &ctx, &m};
    if (s == LACT_OK) {
        if (!strcmp(o->task, "position"))
            s = eval_position(&e);
        else if (!strcmp(o->task, "niah"))
            s = eval_niah(&e);
        else if (!strcmp(o->task, "mc"))
            s = eval_mc(&e);
        else
            s = eval_loss(&e);
    }
    if (made >= 2) lact_lm_free(&m);
    if (made >= 1) lact_ctx_free(&ctx);
    return s;
}

static const char *const tasks[] = {"ppl", "bpb", "position", "niah", "mc"};

/* The first problem with the flags, or NULL. */
static const char *check_opts(const eval_opts *o, char *buf, size_t n) {
    bool known = false;
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        known |= !strcmp(o->task, tasks[i]);
    if (!o->checkpoint) return "--checkpoint FILE is required";
    if (!known) return "--task expects ppl, bpb, position, niah or mc";
    if (!o->data && needs_data(o->task)) {
        snprintf(buf, n, "--data DIR is required for --task %s", o->task);
        return buf;
    }
    if (!strcmp(o->task, "mc") && !o->tasks_file)
        return "--tasks-file FILE is required for --task mc";
    if (o->batches < 0 || o->batch < 0) return "--batches and --batch must be >= 0";
    if (o->seq_len < 0) return "--seq-len must be >= 0";
    if (o->bucket < 1) return "--bucket must be >= 1";
    if (o->max_length < 0) return "--max-length must be >= 0";
    if (o->trials < 1) return "--trials must be >= 1";
    if (o->c.seed < 0) return "--seed must be >= 0";
    if (strcmp(o->filler, "auto") && strcmp(o->filler, "data") && strcmp(o->filler, "sentence"))
        return "--filler expects auto, data or sentence";
    if (strcmp(o->niah_mode, "auto") && strcmp(o->niah_mode, "decode") &&
        strcmp(o->niah_mode, "forward"))
        return "--niah-mode expects auto, decode or forward";
    if (o->out && (!strcmp(o->task, "ppl") || !strcmp(o->task, "bpb")))
        return "--out is for --task position, niah or mc";
    return NULL;
}

int cmd_lm_eval(int argc, char **argv) {
    eval_opts o;
    const cli_opt opts[] = {
        {"--checkpoint", CLI_STRING, "FILE", "a checkpoint of lact lm train", NULL, &o.checkpoint},
        {"--task", CLI_STRING, "TASK", "ppl, bpb, position, niah or mc (below)", "ppl", &o.task},
        {"--data", CLI_STRING, "DIR", "shards of lact lm prepare (ppl, bpb, position, niah)", NULL,
         &o.data},
        {"--tokenizer", CLI_STRING, "FILE|bytes", "the model's tokenizer (bpb, niah, mc)", "bytes",
         &o.tokenizer},
        {"--split", CLI_STRING, "NAME", "which shards: <name>_<split>_*.bin", "val", &o.split},
        {"--batches", CLI_INT, "N", "batches to evaluate (0: all)", "0", &o.batches},
        {"--batch", CLI_INT, "B", "sequences per batch (0: the config's)", "0", &o.batch},
        {"--seq-len", CLI_INT, "L", "tokens per sequence (0: the config's)", "0", &o.seq_len},
        {"--out", CLI_STRING, "FILE", "results as CSV, or JSON when FILE ends in .json", NULL,
         &o.out},
        {"--bucket", CLI_INT, "N", "position: positions per row of --out", "1", &o.bucket},
        {"--lengths", CLI_STRING, "LIST", "niah: prompt tokens, e.g. 1K,2K (none: below)", NULL,
         &o.lengths},
        {"--max-length", CLI_INT, "N", "niah, mc: the longest sequence (0: seq_len)", "0",
         &o.max_length},
        {"--depths", CLI_STRING, "LIST", "niah: needle depths in [0, 1]", "0,0.25,0.5,0.75,1",
         &o.depths},
        {"--trials", CLI_INT, "N", "niah: keys per length and depth", "5", &o.trials},
        {"--filler", CLI_STRING, "KIND", "niah: auto, data (--data text) or sentence", "auto",
         &o.filler},
        {"--niah-mode", CLI_STRING, "MODE", "niah: auto, decode or forward", "auto", &o.niah_mode},
        {"--tasks-file", CLI_STRING, "FILE", "mc: JSON lines {context, choices, answer}", NULL,
         &o.tasks_file},
        CLI_OPT_SEED(&o.c),
        CLI_OPT_DEVICE(&o.c),
        CLI_OPT_THREADS(&o.c),
        CLI_OPT_JSON(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact lm eval",
        "--checkpoint FILE --task TASK [options]",
        "Evaluate a checkpoint: loss, loss by position, passkey retrieval or multiple choice.",
        "Tasks:\n"
        "  ppl       mean loss per token and perplexity on the --split shards of --data, read in\n"
        "            order as sequences of --seq-len until they end or --batches\n"
        "  bpb       the same loss in bits per byte of text (--tokenizer gives each id's bytes)\n"
        "  position  mean loss at each position 0..seq_len-1 over those sequences; --out gets\n"
        "            position,loss,count per --bucket positions, stdout the first/last 10%\n"
        "  niah      needle in a haystack: a pass key hidden at each --depths of prompts of\n"
        "            --lengths tokens (none: 1K, 2K, ... up to --max-length, or just it when\n"
        "            below 1K); correct when greedy decoding gives the key back exactly;\n"
        "            accuracy per length and depth over --trials keys drawn from --seed. The\n"
        "            haystack is --data text (--filler data; auto when --data is given) or one\n"
        "            sentence repeated. --niah-mode decode runs the streaming decode\n"
        "            (constant memory per token in LaCT layers), forward one full forward of\n"
        "            prompt + key; both run on either device and give the same verdict.\n"
        "            auto: decode on the CPU, forward on the GPU (faster there)\n"
        "  mc        multiple choice from --tasks-file: each choice scored by the log-likelihood\n"
        "            of its tokens after the context (acc) and per byte of the choice (acc_norm)\n",
        opts,
        0};
    cli_result res = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (res != CLI_PARSED) return res == CLI_HELP ? 0 : 2;
    char buf[128];
    const char *bad = check_opts(&o, buf, sizeof buf);
    if (bad) {
        cli_error(&cmd, "%s", bad);
        return 2;
    }
    lact_device dev;
    if (!cli_resolve_device(&cmd, &o.c, &dev)) return 2;
    lact_status s = eval_main(&o, dev);
    if (s != LACT_OK) {
        fflush(stdout);
        cli_error(&cmd, "%s", lact_errmsg());
        return 1;
    }
    return 0;
}
