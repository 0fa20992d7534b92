#define _POSIX_C_SOURCE 200809L

#include "lm_eval_tasks.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/train/lm_eval_mc.h"
#include "core/train/lm_eval_niah.h"
#include "core/train/lm_eval_position.h"
#include "modalities/text/tokenizer.h"

/* Long prompts go through the streaming decode in pieces of this many. */
#define PREFILL_TOKENS 256
#define NIAH_LIST_MAX 64

static int64_t seq_len_of(const eval_env *e) {
    return e->o->seq_len > 0 ? e->o->seq_len : e->cfg->seq_len;
}

/* The tokenizer for text tasks; it must be the model's (the model's
 * vocabulary may pad it by fewer than 128 ids, which are never picked). */
static lact_status load_tokenizer(const eval_env *e, lact_tokenizer *tok, int64_t *n_allowed) {
    LACT_TRY(lact_tokenizer_load(tok, e->o->tokenizer));
    int64_t tv = lact_tokenizer_vocab_size(tok), V = e->cfg->model.vocab;
    if (tv > V || V - tv >= 128) {
        lact_tokenizer_free(tok);
        return lact_fail(LACT_E_ARG, "--tokenizer %s has %lld ids, the checkpoint's vocab is %lld",
                         e->o->tokenizer, (long long)tv, (long long)V);
    }
    *n_allowed = tv;
    return LACT_OK;
}

/* ---- position ------------------------------------------------------------ */

lact_status eval_position(const eval_env *e) {
    const eval_opts *o = e->o;
    int64_t L = seq_len_of(e), B = o->batch > 0 ? o->batch : e->cfg->batch;
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s/*_%s_*.bin", o->data, o->split);
    const char *paths[1] = {pattern};
    lact_loader l;
    lact_lm_scorer sc;
    lact_lm_positions p;
    lact_lm_position_row *rows = NULL;
    int made = 0;
    lact_status s = lact_loader_init(&l, paths, 1, B, L, 0, false, false);
    if (s == LACT_OK) made = 1, s = lact_lm_scorer_init(&sc, e->m, B, L, 0);
    if (s == LACT_OK) made = 2, s = lact_lm_positions_init(&p, L);
    if (s == LACT_OK) made = 3, s = lact_lm_eval_positions(e->ctx, e->m, &sc, &l, o->batches, &p);
    int64_t tokens = 0;
    double total = s == LACT_OK ? lact_lm_positions_total(&p, &tokens) : 0;
    if (s == LACT_OK && tokens == 0)
        s = lact_fail(LACT_E_ARG, "%s: no tokens to evaluate", pattern);
    int64_t n_rows = (L + o->bucket - 1) / o->bucket;
    if (s == LACT_OK && !(rows = malloc((size_t)n_rows * sizeof *rows)))
        s = lact_fail(LACT_E_NOMEM, "out of memory");
    if (s == LACT_OK) n_rows = lact_lm_positions_buckets(&p, o->bucket, rows);
    if (s == LACT_OK && o->out) s = lact_lm_positions_write(o->out, rows, n_rows, o->bucket);
    if (s == LACT_OK) {
        /* The ends of the curve: the first and last tenth of the positions. */
        int64_t tenth = (L + 9) / 10;
        double first = lact_lm_positions_mean(&p, 0, tenth);
        double last = lact_lm_positions_mean(&p, L - tenth, L);
        double loss = total / (double)tokens;
        if (o->c.json)
            printf("{\"task\": \"position\", \"checkpoint_step\": %lld, \"seq_len\": %lld, "
                   "\"sequences\": %lld, \"tokens\": %lld, \"loss\": %.9g, \"loss_first_10pct\": "
                   "%.9g, \"loss_last_10pct\": %.9g, \"bucket\": %lld, \"rows\": %lld}\n",
                   (long long)e->step, (long long)L, (long long)p.sequences, (long long)tokens,
                   loss, first, last, (long long)o->bucket, (long long)n_rows);
        else
            printf("position: step %lld, %lld sequences of %lld tokens: loss %.4f; positions "
                   "0-%lld %.4f, %lld-%lld %.4f%s%s\n",
                   (long long)e->step, (long long)p.sequences, (long long)L, loss,
                   (long long)(tenth - 1), first, (long long)(L - tenth), (long long)(L - 1), last,
                   o->out ? "; per position in " : "", o->out ? o->out : "");
    }
    free(rows);
    if (made >= 3) lact_lm_positions_free(&p);
    if (made >= 2) lact_lm_scorer_free(&sc);
    if (made >= 1) lact_loader_free(&l);
    return s;
}

/* ---- needle in a haystack -------------------------------------------------- */

/* "1024,2K,4096": positive integers, K = 1024. */
static lact_status parse_lengths(const char *text, int64_t *out, int *n) {
    *n = 0;
    const char *p = text;
    for (;;) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end != p && (*end == 'K' || *end == 'k')) v *= 1024, end++;
        if (end == p || errno || v < 1 || (*end != ',' && *end != '\0') || *n == NIAH_LIST_MAX)
            return lact_fail(LACT_E_ARG,
                             "--lengths '%s': expected up to %d positive integers "
                             "separated by commas",
                             text, NIAH_LIST_MAX);
        out[(*n)++] = v;
        if (*end == '\0') return LACT_OK;
        p = end + 1;
    }
}

static lact_status parse_depths(const char *text, double *out, int *n) {
    *n = 0;
    const char *p = text;
    for (;;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v >= 0.0 && v <= 1.0) || (*end != ',' && *end != '\0') ||
            *n == NIAH_LIST_MAX)
            return lact_fail(LACT_E_ARG,
                             "--depths '%s': expected up to %d numbers in [0, 1] "
                             "separated by commas",
                             text, NIAH_LIST_MAX);
        out[(*n)++] = v;
        if (*end == '\0') return LACT_OK;
        p = end + 1;
    }
}

/* Powers of two from 1024 up to max (just max when it is below 1024). */
static void default_lengths(int64_t max, int64_t *out, int *n) {
    *n = 0;
    if (max < 1024) out[(*n)++] = max;
    for (int64_t v = 1024; v <= max && *n < NIAH_LIST_MAX; v *= 2)
        out[(*n)++] = v;
}

static void print_niah(const eval_env *e, const lact_niah_cell *cells, int nl, int nd,
                       lact_niah_mode mode) {
    int64_t correct = 0, trials = 0;
    for (int i = 0; i < nl * nd; i++)
        correct += cells[i].correct, trials += cells[i].trials;
    double acc = trials > 0 ? (double)correct / (double)trials : 0.0;
    if (e->o->c.json) {
        printf("{\"task\": \"niah\", \"checkpoint_step\": %lld, \"mode\": \"%s\", \"trials\": "
               "%lld, \"correct\": %lld, \"accuracy\": %.6g, \"cells\": [",
               (long long)e->step, lact_niah_mode_name(mode), (long long)trials, (long long)correct,
               acc);
        for (int i = 0; i < nl * nd; i++)
            printf("%s{\"length\": %lld, \"depth\": %g, \"trials\": %lld, \"correct\": %lld, "
                   "\"accuracy\": %.6g}",
                   i ? ", " : "", (long long)cells[i].length, cells[i].depth,
                   (long long)cells[i].trials, (long long)cells[i].correct,
                   (double)cells[i].correct / (double)cells[i].trials);
        printf("]}\n");
        return;
    }
    printf("niah: step %lld, %s, %lld trials per cell: accuracy by length (rows) and depth\n",
           (long long)e->step,
           mode == LACT_NIAH_DECODE ? "greedy streaming decode" : "greedy by full forward",
           (long long)cells[0].trials);
    printf("%8s", "length");
    for (int d = 0; d < nd; d++)
        printf("  %6.3g", cells[d].depth);
    printf("    mean\n");
    for (int li = 0; li < nl; li++) {
        int64_t c = 0, t = 0;
        printf("%8lld", (long long)cells[li * nd].length);
        for (int d = 0; d < nd; d++) {
            const lact_niah_cell *x = &cells[li * nd + d];
            printf("  %6.3f", (double)x->correct / (double)x->trials);
            c += x->correct, t += x->trials;
        }
        printf("  %6.3f\n", (double)c / (double)t);
    }
    printf("niah: %lld of %lld correct (%.3f)\n", (long long)correct, (long long)trials, acc);
}

lact_status eval_niah(const eval_env *e) {
    const eval_opts *o = e->o;
    int64_t lengths[NIAH_LIST_MAX];
    double depths[NIAH_LIST_MAX];
    int nl = 0, nd = 0;
    int64_t max = o->max_length > 0 ? o->max_length : e->cfg->seq_len;
    if (o->lengths)
        LACT_TRY(parse_lengths(o->lengths, lengths, &nl));
    else
        default_lengths(max, lengths, &nl);
    LACT_TRY(parse_depths(o->depths, depths, &nd));
    lact_niah_mode mode = LACT_NIAH_DECODE;
    if (!strcmp(o->niah_mode, "forward") ||
        (!strcmp(o->niah_mode, "auto") && e->m->params.device != LACT_CPU))
        mode = LACT_NIAH_FORWARD;
    bool from_data = !strcmp(o->filler, "data") || (!strcmp(o->filler, "auto") && o->data);
    if (from_data && !o->data) return lact_fail(LACT_E_ARG, "--filler data needs --data DIR");
    int64_t max_len = 0;
    for (int i = 0; i < nl; i++)
        if (lengths[i] > max_len) max_len = lengths[i];

    lact_tokenizer tok;
    int64_t n_allowed = 0;
    LACT_TRY(load_tokenizer(e, &tok, &n_allowed));
    lact_ids filler = {0};
    lact_niah_cell *cells = calloc((size_t)(nl * nd), sizeof *cells);
    lact_status s = cells ? LACT_OK : lact_fail(LACT_E_NOMEM, "out of memory");
    if (s == LACT_OK && from_data) {
        char pattern[4096];
        snprintf(pattern, sizeof pattern, "%s/*_%s_*.bin", o->data, o->split);
        s = lact_niah_filler_shards(pattern, lact_tokenizer_eot(&tok), max_len, &filler);
    } else if (s == LACT_OK) {
        s = lact_tokenizer_encode(&tok, lact_niah_filler_sentence,
                                  strlen(lact_niah_filler_sentence), &filler);
    }
    /* Every length must hold the needle and the question. */
    for (int i = 0; s == LACT_OK && i < nl; i++) {
        char key[LACT_NIAH_KEY_DIGITS + 1];
        lact_niah_key((uint64_t)o->c.seed, 0, key);
        lact_niah_prompt p;
        s = lact_niah_build(&tok, filler.v, (int64_t)filler.n, 0, lengths[i], 0.0, key, &p);
        if (s == LACT_OK) {
            lact_niah_prompt_free(&p);
        } else {
            char why[512];
            snprintf(why, sizeof why, "%s", lact_errmsg());
            s = lact_fail(LACT_E_ARG, "--lengths: %s", why);
        }
    }
    lact_niah_cfg c = {lengths,   nl,
                       depths,    nd,
                       o->trials, (uint64_t)o->c.seed,
                       filler.v,  (int64_t)filler.n,
                       from_data, mode,
                       n_allowed, PREFILL_TOKENS};
    if (s == LACT_OK) s = lact_niah_run(e->ctx, e->m, &tok, &c, cells);
    if (s == LACT_OK && o->out) s = lact_niah_write(o->out, cells, nl * nd, mode);
    if (s == LACT_OK) print_niah(e, cells, nl, nd, mode);
    free(cells);
    lact_ids_free(&filler);
    lact_tokenizer_free(&tok);
    return s;
}

/* ---- multiple choice ------------------------------------------------------- */

lact_status eval_mc(const eval_env *e) {
    const eval_opts *o = e->o;
    lact_tokenizer tok;
    int64_t n_allowed = 0;
    LACT_TRY(load_tokenizer(e, &tok, &n_allowed));
    lact_mc_set set;
    lact_mc_result r;
    memset(&r, 0, sizeof r);
    lact_status s = lact_mc_load(o->tasks_file, &set);
    if (s != LACT_OK) {
        lact_tokenizer_free(&tok);
        return s;
    }
    int64_t B = o->batch > 0 ? o->batch : e->cfg->batch;
    int64_t max = o->max_length > 0 ? o->max_length : e->cfg->seq_len;
    s = lact_mc_eval(e->ctx, e->m, &tok, &set, B, max, &r);
    if (s == LACT_OK && o->out) s = lact_mc_write(o->out, &set, &r);
    if (s == LACT_OK) {
        double n = (double)r.n;
        if (o->c.json)
            printf("{\"task\": \"mc\", \"checkpoint_step\": %lld, \"n\": %lld, "
                   "\"choices\": %lld, \"acc\": %.6g, \"correct\": %lld, \"acc_norm\": %.6g, "
                   "\"correct_norm\": %lld}\n",
                   (long long)e->step, (long long)r.n, (long long)r.pairs, (double)r.correct / n,
                   (long long)r.correct, (double)r.correct_norm / n, (long long)r.correct_norm);
        else
            printf("mc: step %lld, %lld questions (%lld choices): acc %.4f (%lld/%lld), acc_norm "
                   "%.4f (%lld/%lld)\n",
                   (long long)e->step, (long long)r.n, (long long)r.pairs, (double)r.correct / n,
                   (long long)r.correct, (long long)r.n, (double)r.correct_norm / n,
                   (long long)r.correct_norm, (long long)r.n);
    }
    lact_mc_result_free(&r);
    lact_mc_free(&set);
    lact_tokenizer_free(&tok);
    return s;
}
