/* The evaluation tasks of `lact lm eval` on models whose answers are known.
 *
 * A "bigram" model: every block's output projections (the mixer's wo, the
 * MLP's w_down) are zero, so each block passes its input through and the
 * final hidden of token i is rmsnorm(embed[i]); with embed[i] the unit
 * vector e_i and head[j][i] = A[i][j] / rstd, the logits after token i are
 * exactly row A[i]. Against it: the scorer's logits and per-token losses,
 * multiple choice (log-likelihood sums, the pick, the per-byte pick that
 * differs from it, the context's trailing space), loss by position (every
 * position's mean against A) and needle retrieval (an A whose greedy path
 * spells one key: a hit for that key in both verdicts, a miss for keys
 * that differ in any digit). On a random LaCT + attention model: the
 * per-position losses add up to the loss of lact_lm_eval, and the decode
 * and forward verdicts agree. Also prompt construction (length, the
 * needle's depth and text, the question at the end), keys, and the
 * JSON-lines errors naming file and line. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/philox.h"
#include "core/io/file.h"
#include "core/train/lm_batch.h"
#include "core/train/lm_eval_mc.h"
#include "core/train/lm_eval_niah.h"
#include "core/train/lm_eval_position.h"
#include "modalities/text/shard.h"
#include "modalities/text/tokenizer.h"
#include "tests/support/check.h"

enum { V = 257, D = 260 };

static char g_dir[256];

static lact_lm_cfg bigram_cfg(void) {
    lact_lm_cfg c = lact_lm_defaults();
    /* One attention layer: its output is zeroed anyway, and D ≥ V makes
     * the mixer the costly part. */
    c.vocab = V, c.d_model = D, c.n_layers = 1, c.n_heads = 2;
    strcpy(c.mixers, "attention");
    c.mlp_mult = 0.25;
    c.tie_embeddings = false;
    return c;
}

static bool ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && !strcmp(s + n - k, tail);
}

/* The model whose logits after token i are A[i] (row-major [V, V]). */
static void set_bigram(lact_lm *m, const float *A) {
    double rstd = 1.0 / sqrt(1.0 / D + m->cfg.norm_eps);
    for (int p = 0; p < lact_params_count(&m->params); p++) {
        lact_param *it = lact_params_at(&m->params, p);
        if (ends_with(it->name, ".wo") || ends_with(it->name, ".w_down"))
            memset(it->w.data, 0, lact_tensor_nbytes(&it->w));
    }
    float *embed = m->params.items[m->embed].w.data, *head = m->params.items[m->head].w.data;
    memset(embed, 0, (size_t)(V * D) * sizeof(float));
    memset(head, 0, (size_t)(V * D) * sizeof(float));
    for (int i = 0; i < V; i++) {
        embed[i * D + i] = 1.0f;
        for (int j = 0; j < V; j++)
            head[j * D + i] = (float)(A[i * V + j] / rstd);
    }
}

/* log p(j | i) under A. */
static double logp(const float *A, int i, int j) {
    double mx = -INFINITY, z = 0;
    for (int k = 0; k < V; k++)
        mx = fmax(mx, A[i * V + k]);
    for (int k = 0; k < V; k++)
        z += exp(A[i * V + k] - mx);
    return A[i * V + j] - mx - log(z);
}

/* ---- scorer ----------------------------------------------------------------- */

static void test_scorer(lact_ctx *ctx, lact_lm *m, const float *A) {
    lact_lm_scorer s;
    CHECK_OK(lact_lm_scorer_init(&s, m, 2, 12, 3));
    const char *rows[2] = {"the cat sat", "on the mat."}; /* len + 1 bytes each */
    int64_t len = 10;
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < len; t++) {
            s.h_ids[r * len + t] = (unsigned char)rows[r][t];
            s.h_targets[r * len + t] = t == 3 ? -1 : (unsigned char)rows[r][t + 1];
        }
    CHECK_OK(lact_lm_scorer_run(ctx, m, &s, len));
    double worst = 0;
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < len; t++) {
            double want =
                t == 3 ? 0.0 : -logp(A, (unsigned char)rows[r][t], (unsigned char)rows[r][t + 1]);
            worst = fmax(worst, fabs(s.h_loss[r * len + t] - want));
        }
    CHECK_MSG(worst < 1e-4, "per-token losses off the bigram's by %g", worst);
    CHECK_OK(lact_lm_scorer_logits(ctx, m, &s, 1, 4, 3));
    worst = 0;
    for (int t = 0; t < 3; t++)
        for (int j = 0; j < V; j++)
            worst =
                fmax(worst, fabs(s.h_logits[t * V + j] - A[(unsigned char)rows[1][4 + t] * V + j]));
    CHECK_MSG(worst < 1e-4, "logits off A by %g", worst);
    CHECK_FAILS(lact_lm_scorer_run(ctx, m, &s, 13), LACT_E_ARG);
    CHECK_FAILS(lact_lm_scorer_logits(ctx, m, &s, 0, 8, 3), LACT_E_ARG);
    lact_lm_scorer_free(&s);
    float tie[4] = {1.0f, 3.0f, 3.0f, 9.0f};
    CHECK(lact_eval_argmax(tie, 3) == 1); /* the lowest id among equals, below n_allowed */
}

/* ---- multiple choice -------------------------------------------------------- */

static void write_file(const char *path, const char *text) {
    CHECK_OK(lact_file_write_atomic(path, text, strlen(text)));
}

static void test_mc(lact_ctx *ctx, lact_lm *m, lact_tokenizer *tok) {
    /* A flat table but: after "b", x likelier than y; after y, y nearly
     * sure. "x" wins on the sum, "yyyy" per byte. After " ": z. */
    float *A = calloc((size_t)V * V, sizeof *A);
    A['b' * V + 'x'] = 8.0f, A['b' * V + 'y'] = 7.5f, A['y' * V + 'y'] = 10.0f;
    A[' ' * V + 'z'] = 4.0f;
    set_bigram(m, A);
    char path[512];
    snprintf(path, sizeof path, "%s/mc.jsonl", g_dir);
    write_file(path, "{\"context\": \"ab\", \"choices\": [\"x\", \"yyyy\"], \"answer\": 1}\n"
                     "\n"
                     "{\"context\": \"ab \", \"choices\": [\"x\", \"z\", \"q\"], \"answer\": 1}\n");
    lact_mc_set set;
    CHECK_OK(lact_mc_load(path, &set));
    CHECK(set.n == 2 && set.items[1].line == 3 && set.items[1].n_choices == 3);
    lact_mc_result r;
    CHECK_OK(lact_mc_eval(ctx, m, tok, &set, 2, 64, &r));
    double want[5] = {
        logp(A, 'b', 'x'),
        logp(A, 'b', 'y') + 3 * logp(A, 'y', 'y'),
        logp(A, 'b', ' ') + logp(A, ' ', 'x'), /* the trailing space leads the choice */
        logp(A, 'b', ' ') + logp(A, ' ', 'z'),
        logp(A, 'b', ' ') + logp(A, ' ', 'q'),
    };
    CHECK(r.pairs == 5 && r.offset[1] == 2);
    for (int k = 0; k < 5 && r.pairs == 5; k++)
        CHECK_NEAR(r.ll[k], want[k], 1e-4);
    CHECK(r.bytes[0] == 1 && r.bytes[1] == 4);
    CHECK(want[0] > want[1] && want[0] / 1 < want[1] / 4); /* the design holds */
    CHECK(r.pred[0] == 0 && r.pred_norm[0] == 1);
    CHECK(r.pred[1] == 1 && r.pred_norm[1] == 1);
    CHECK(r.n == 2 && r.correct == 1 && r.correct_norm == 2);
    /* Batches of one row, and a max length that cuts the context: same ll
     * for the first question (its context is kept whole at 2 + 4 − 1). */
    lact_mc_result r1;
    CHECK_OK(lact_mc_eval(ctx, m, tok, &set, 1, 5, &r1));
    for (int k = 0; k < 5 && r1.pairs == 5; k++)
        CHECK_NEAR(r1.ll[k], r.ll[k], 1e-5);
    lact_mc_result r2; /* a failed call leaves nothing to free */
    CHECK_FAILS(lact_mc_eval(ctx, m, tok, &set, 1, 3, &r2), LACT_E_ARG); /* "yyyy" needs 4 */
    CHECK(strstr(lact_errmsg(), "mc.jsonl:1") != NULL);
    CHECK(lact_mc_pick((double[]){-1.0, -0.5, -0.5}, NULL, 3) == 1);
    CHECK(lact_mc_pick((double[]){-1.0, -3.0}, (int64_t[]){1, 6}, 2) == 1);
    lact_mc_result_free(&r);
    lact_mc_result_free(&r1);
    lact_mc_free(&set);
    free(A);
}

static void mc_error(const char *line_text, const char *want) {
    lact_mc_item it;
    CHECK_FAILS(lact_mc_parse_line("q.jsonl", 7, line_text, &it), LACT_E_ARG);
    CHECK_MSG(strstr(lact_errmsg(), "q.jsonl:7: ") && strstr(lact_errmsg(), want),
              "'%s' -> '%s', expected '%s'", line_text, lact_errmsg(), want);
    CHECK_MSG(!strchr(lact_errmsg(), '\n'), "multi-line error: %s", lact_errmsg());
}

static void test_mc_errors(void) {
    mc_error("{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 2}", "\"answer\"");
    mc_error("{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 0.5}", "integer");
    mc_error("{\"context\": \"a\", \"choices\": [\"b\", \"c\"]}", "\"answer\"");
    mc_error("{\"choices\": [\"b\", \"c\"], \"answer\": 0}", "\"context\"");
    mc_error("{\"context\": \"a\", \"choices\": [\"b\"], \"answer\": 0}", "\"choices\"");
    mc_error("{\"context\": \"a\", \"choices\": [\"b\", \"\"], \"answer\": 0}", "choice 1");
    mc_error("{\"context\": \"a\", \"choices\": [\"b\", 3], \"answer\": 0}", "choice 1");
    mc_error("[1, 2]", "not a JSON object");
    mc_error("{\"context\": \"a\",", "not a JSON object");
    mc_error("{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 0} x",
             "not a JSON object");
    lact_mc_item it;
    CHECK_OK(lact_mc_parse_line(
        "q.jsonl", 1, "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 1}\r\n", &it));
    CHECK(it.n_choices == 2 && it.answer == 1 && !strcmp(it.choices[1], "c"));
    lact_mc_item_free(&it);
    char path[512];
    snprintf(path, sizeof path, "%s/bad.jsonl", g_dir);
    write_file(path, "{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"answer\": 1}\n\nnope\n");
    lact_mc_set set;
    CHECK_FAILS(lact_mc_load(path, &set), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "bad.jsonl:3: ") != NULL);
    write_file(path, "\n  \n");
    CHECK_FAILS(lact_mc_load(path, &set), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "no questions") != NULL);
    snprintf(path, sizeof path, "%s/none.jsonl", g_dir);
    CHECK_FAILS(lact_mc_load(path, &set), LACT_E_NOT_FOUND);
    CHECK(strstr(lact_errmsg(), "none.jsonl") != NULL);
}

/* ---- loss by position --------------------------------------------------------- */

enum { PB = 3, PL = 16, PWIN = 7 };

/* A val shard of PWIN windows of PL + 1 tokens (batches of 3, 3, 1). */
static void write_shard(const char *path, int32_t *tokens) {
    int64_t n = PWIN * PL + 1;
    for (int64_t i = 0; i < n; i++) {
        float u = lact_philox_uniform(7, 3, (uint64_t)i);
        tokens[i] = i % 29 == 5 ? LACT_BYTES_EOT : 'a' + (int32_t)(u * 26.0f);
    }
    lact_shard_writer w;
    CHECK_OK(lact_shard_writer_open(&w, path, 1));
    CHECK_OK(lact_shard_writer_put(&w, tokens, (size_t)n));
    CHECK_OK(lact_shard_writer_commit(&w));
}

static void positions_of(lact_ctx *ctx, lact_lm *m, const char *pattern, lact_lm_positions *p) {
    lact_loader l;
    lact_lm_scorer s;
    const char *paths[1] = {pattern};
    CHECK_OK(lact_loader_init(&l, paths, 1, PB, PL, 0, false, false));
    CHECK_OK(lact_lm_scorer_init(&s, m, PB, PL, 0));
    CHECK_OK(lact_lm_positions_init(p, PL));
    CHECK_OK(lact_lm_eval_positions(ctx, m, &s, &l, 0, p));
    lact_lm_scorer_free(&s);
    lact_loader_free(&l);
}

static void test_positions(lact_ctx *ctx, lact_lm *bigram, lact_lm *rnd, const float *A) {
    char path[512], pattern[512];
    snprintf(path, sizeof path, "%s/pos_val_000000.bin", g_dir);
    snprintf(pattern, sizeof pattern, "%s/pos_val_*.bin", g_dir);
    int32_t tokens[PWIN * PL + 1];
    write_shard(path, tokens);

    /* Bigram: each position's mean against A. */
    set_bigram(bigram, A);
    lact_lm_positions p;
    positions_of(ctx, bigram, pattern, &p);
    CHECK(p.sequences == PWIN);
    double worst = 0;
    for (int t = 0; t < PL; t++) {
        double want = 0;
        for (int w = 0; w < PWIN; w++)
            want -= logp(A, tokens[w * PL + t], tokens[w * PL + t + 1]);
        want /= PWIN;
        CHECK(p.count[t] == PWIN);
        worst = fmax(worst, fabs(lact_lm_positions_mean(&p, t, t + 1) - want));
    }
    CHECK_MSG(worst < 1e-4, "per-position means off the bigram's by %g", worst);
    lact_lm_positions_free(&p);

    /* Random model: the positions add up to the full loss of lact_lm_eval. */
    positions_of(ctx, rnd, pattern, &p);
    lact_lm_batch b;
    lact_loader l;
    const char *paths[1] = {pattern};
    CHECK_OK(lact_lm_batch_init(&b, rnd, PB, PL));
    CHECK_OK(lact_loader_init(&l, paths, 1, PB, PL, 0, false, false));
    lact_lm_eval_result full;
    CHECK_OK(lact_lm_eval(ctx, rnd, &b, &l, 0, NULL, &full));
    int64_t tokens_n = 0;
    double total = lact_lm_positions_total(&p, &tokens_n);
    CHECK(tokens_n == full.tokens && tokens_n == PWIN * PL);
    CHECK_NEAR(total / (double)tokens_n, full.loss_sum / (double)full.tokens, 1e-6);
    double mean_of_means = 0;
    for (int t = 0; t < PL; t++)
        mean_of_means += lact_lm_positions_mean(&p, t, t + 1) / PL;
    CHECK_NEAR(mean_of_means, full.loss_sum / (double)full.tokens, 1e-6);
    lact_loader_free(&l);
    lact_lm_batch_free(&b);

    /* Buckets of 5 over 16 positions: 4 rows, the last of one position. */
    lact_lm_position_row rows[PL];
    int64_t n = lact_lm_positions_buckets(&p, 5, rows);
    CHECK(n == 4 && rows[3].position == 15 && rows[3].count == PWIN && rows[1].count == 5 * PWIN);
    CHECK_NEAR(rows[1].loss, lact_lm_positions_mean(&p, 5, 10), 1e-12);
    double sum = 0;
    for (int t = 5; t < 10; t++)
        sum += p.sum[t];
    CHECK_NEAR(rows[1].loss, sum / (5.0 * PWIN), 1e-12);
    CHECK(lact_lm_positions_buckets(&p, 1, rows) == PL);

    /* CSV: a header and one line per row. */
    snprintf(path, sizeof path, "%s/pos.csv", g_dir);
    CHECK_OK(lact_lm_positions_write(path, rows, PL, 1));
    char *text = NULL;
    size_t size = 0;
    CHECK_OK(lact_file_read(path, &text, &size));
    int lines = 0;
    for (size_t i = 0; text && i < size; i++)
        lines += text[i] == '\n';
    CHECK(lines == PL + 1 && text && !strncmp(text, "position,loss,count\n0,", 22));
    free(text);
    snprintf(path, sizeof path, "%s/pos.json", g_dir);
    CHECK_OK(lact_lm_positions_write(path, rows, PL, 1));
    CHECK_OK(lact_file_read(path, &text, &size));
    const char *head = "{\"task\": \"position\", \"bucket\": 1, \"rows\": [{\"position\": 0, ";
    CHECK(text && !strncmp(text, head, strlen(head)));
    free(text);
    lact_lm_positions_free(&p);
}

/* ---- needle in a haystack --------------------------------------------------------- */

static bool ids_are_text(lact_tokenizer *tok, const int32_t *ids, size_t n, const char *text) {
    lact_bytes b = {0};
    bool ok = lact_tokenizer_decode(tok, ids, n, &b) == LACT_OK && b.n == strlen(text) &&
              !memcmp(b.v, text, b.n);
    lact_bytes_free(&b);
    return ok;
}

static void test_niah_prompt(lact_tokenizer *tok) {
    lact_ids filler = {0};
    CHECK_OK(lact_tokenizer_encode(tok, lact_niah_filler_sentence,
                                   strlen(lact_niah_filler_sentence), &filler));
    const char *needle = "\nThe pass key is 31415. Remember it.\n";
    const char *question = "\nWhat is the pass key? The pass key is";
    int64_t nn = (int64_t)strlen(needle), nq = (int64_t)strlen(question), len = 500;
    int64_t F = len - nn - nq;
    double depths[5] = {0.0, 0.25, 0.5, 0.8, 1.0};
    for (int d = 0; d < 5; d++) {
        lact_niah_prompt p;
        CHECK_OK(lact_niah_build(tok, filler.v, (int64_t)filler.n, 3, len, depths[d], "31415", &p));
        int64_t at = (int64_t)llround(depths[d] * (double)F);
        CHECK((int64_t)p.ids.n == len);
        CHECK_MSG(p.needle_at == at && p.needle_len == nn, "depth %g: needle at %lld, want %lld",
                  depths[d], (long long)p.needle_at, (long long)at);
        CHECK(ids_are_text(tok, p.ids.v + at, (size_t)nn, needle));
        CHECK(ids_are_text(tok, p.ids.v + len - nq, (size_t)nq, question));
        CHECK(ids_are_text(tok, p.answer.v, p.answer.n, " 31415"));
        /* The filler runs on from its start around the needle. */
        bool filler_ok = true;
        for (int64_t i = 0; i < F; i++) {
            int64_t at_i = i < at ? i : i + nn;
            filler_ok &= p.ids.v[at_i] == filler.v[(3 + i) % (int64_t)filler.n];
        }
        CHECK_MSG(filler_ok, "depth %g: the filler around the needle", depths[d]);
        lact_niah_prompt_free(&p);
    }
    lact_niah_prompt p;
    CHECK_FAILS(lact_niah_build(tok, filler.v, (int64_t)filler.n, 0, nn + nq - 1, 0.5, "31415", &p),
                LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "length") != NULL);
    CHECK_FAILS(lact_niah_build(tok, filler.v, (int64_t)filler.n, 0, len, 1.5, "31415", &p),
                LACT_E_ARG);
    CHECK_OK(lact_niah_build(tok, filler.v, (int64_t)filler.n, 0, nn + nq, 0.5, "31415", &p));
    CHECK(p.needle_at == 0 && (int64_t)p.ids.n == nn + nq);
    lact_niah_prompt_free(&p);
    lact_ids_free(&filler);

    /* Keys: five digits, the first not 0, a function of (seed, trial). */
    char k0[8], k1[8];
    int distinct = 0;
    for (int t = 0; t < 10; t++) {
        lact_niah_key(5, t, k0);
        lact_niah_key(5, t, k1);
        CHECK(!strcmp(k0, k1) && strlen(k0) == 5 && k0[0] >= '1' && k0[0] <= '9');
        for (int i = 1; i < 5; i++)
            CHECK(k0[i] >= '0' && k0[i] <= '9');
        lact_niah_key(5, t + 1, k1);
        distinct += strcmp(k0, k1) != 0;
    }
    CHECK(distinct >= 8);
}

static void verdicts(lact_ctx *ctx, lact_lm *m, lact_lm_scorer *s, lact_tokenizer *tok,
                     const lact_ids *filler, const char *key, bool *dec, bool *fwd) {
    lact_niah_prompt p;
    CHECK_OK(lact_niah_build(tok, filler->v, (int64_t)filler->n, 0, 120, 0.5, key, &p));
    CHECK_OK(lact_niah_greedy_decode(ctx, m, &p, 256, 32, dec));
    CHECK_OK(lact_niah_greedy_forward(ctx, m, s, &p, 256, fwd));
    lact_niah_prompt_free(&p);
}

/* A flat table whose greedy path after the question's last "s" is path. */
static float *path_table(lact_lm *m, const char *path) {
    float *A = calloc((size_t)V * V, sizeof *A);
    for (int i = 0; path[i + 1]; i++)
        A[(unsigned char)path[i] * V + (unsigned char)path[i + 1]] = 12.0f;
    set_bigram(m, A);
    return A;
}

static bool distinct_digits(const char *key) {
    for (int i = 0; key[i]; i++)
        if (strchr(key + i + 1, key[i])) return false;
    return true;
}

static void test_niah_greedy(lact_ctx *ctx, lact_lm *bigram, lact_lm *rnd, lact_tokenizer *tok) {
    lact_ids filler = {0};
    CHECK_OK(lact_tokenizer_encode(tok, lact_niah_filler_sentence,
                                   strlen(lact_niah_filler_sentence), &filler));
    /* The greedy path spells " 48213". */
    float *A = path_table(bigram, "s 48213");
    lact_lm_scorer s;
    CHECK_OK(lact_lm_scorer_init(&s, bigram, 1, 120 + 5, 6));
    const char *keys[4] = {"48213", "48212", "98213", "48913"};
    for (int k = 0; k < 4; k++) {
        bool dec = !k, fwd = !k;
        verdicts(ctx, bigram, &s, tok, &filler, keys[k], &dec, &fwd);
        CHECK_MSG(dec == (k == 0) && fwd == (k == 0), "key %s: decode %d, forward %d", keys[k], dec,
                  fwd);
    }
    lact_lm_scorer_free(&s);

    /* A whole run on a table that spells trial 0's key (a seed whose key
     * has no repeated digit, so the path is one greedy chain): trial 0 hits
     * in every cell, the other keys miss, the same way in both modes; the
     * cells come lengths major. */
    free(A);
    uint64_t seed = 11;
    char key0[8], path[16];
    for (lact_niah_key(seed, 0, key0); !distinct_digits(key0); lact_niah_key(++seed, 0, key0)) {
    }
    snprintf(path, sizeof path, "s %s", key0);
    A = path_table(bigram, path);
    int64_t lengths[2] = {100, 140};
    double depths[3] = {0.0, 0.5, 1.0};
    lact_niah_cfg c = {lengths,           2,    depths,           3,   4, seed, filler.v,
                       (int64_t)filler.n, true, LACT_NIAH_DECODE, 256, 32};
    lact_niah_cell cd[6], cf[6];
    CHECK_OK(lact_niah_run(ctx, bigram, tok, &c, cd));
    c.mode = LACT_NIAH_FORWARD;
    CHECK_OK(lact_niah_run(ctx, bigram, tok, &c, cf));
    int want = 0;
    for (int t = 0; t < 4; t++) {
        char key[8];
        lact_niah_key(seed, t, key);
        want += !strcmp(key, key0);
    }
    for (int i = 0; i < 6; i++) {
        CHECK(cd[i].length == lengths[i / 3] && cd[i].depth == depths[i % 3]);
        CHECK(cd[i].trials == 4 && cd[i].correct == want && cf[i].correct == want);
    }
    CHECK(want >= 1);
    free(A);

    /* A random LaCT + attention model: decode and forward agree, key by key. */
    CHECK_OK(lact_lm_scorer_init(&s, rnd, 1, 120 + 5, 6));
    int agree = 0;
    for (int t = 0; t < 6; t++) {
        char key[8];
        lact_niah_key(3, t, key);
        bool dec = false, fwd = true;
        verdicts(ctx, rnd, &s, tok, &filler, key, &dec, &fwd);
        agree += dec == fwd;
    }
    CHECK(agree == 6);
    lact_lm_scorer_free(&s);

    char out[512];
    snprintf(out, sizeof out, "%s/niah.csv", g_dir);
    CHECK_OK(lact_niah_write(out, cd, 6, LACT_NIAH_DECODE));
    char *text = NULL;
    size_t size = 0;
    CHECK_OK(lact_file_read(out, &text, &size));
    CHECK(text && !strncmp(text, "length,depth,trials,correct,accuracy\n100,0,4,", 45));
    free(text);
    lact_ids_free(&filler);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lact_test_lm_eval_XXXXXX");
    if (!mkdtemp(g_dir)) return check_summary("train_lm_eval");
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 1));
    lact_tokenizer tok;
    CHECK_OK(lact_tokenizer_load(&tok, "bytes"));
    lact_lm_cfg bc = bigram_cfg();
    lact_lm bigram, rnd;
    CHECK_OK(lact_lm_init(&bigram, &bc, LACT_CPU));
    CHECK_OK(lact_lm_init_values(&ctx, &bigram, 1));
    lact_lm_cfg rc = lact_lm_defaults();
    rc.d_model = 32, rc.n_heads = 2, rc.chunk = 8, rc.window = 8, rc.init_std = 0.2;
    strcpy(rc.mixers, "lact,attention");
    CHECK_OK(lact_lm_init(&rnd, &rc, LACT_CPU));
    CHECK_OK(lact_lm_init_values(&ctx, &rnd, 2));
    /* A: mostly flat with some structure. */
    float *A = calloc((size_t)V * V, sizeof *A);
    for (int i = 0; i < V * V; i++)
        A[i] = 0.5f * lact_philox_normal(9, 0, (uint64_t)i);
    set_bigram(&bigram, A);

    test_scorer(&ctx, &bigram, A);
    test_mc(&ctx, &bigram, &tok);
    test_mc_errors();
    test_positions(&ctx, &bigram, &rnd, A);
    test_niah_prompt(&tok);
    test_niah_greedy(&ctx, &bigram, &rnd, &tok);

    free(A);
    lact_lm_free(&bigram);
    lact_lm_free(&rnd);
    lact_tokenizer_free(&tok);
    lact_ctx_free(&ctx);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return check_summary("train_lm_eval");
}
