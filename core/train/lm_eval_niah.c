#define _POSIX_C_SOURCE 200809L

#include "core/train/lm_eval_niah.h"

#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"
#include "core/io/file.h"
#include "core/nn/lm_decode.h"
#include "modalities/text/shard.h"

const char lact_niah_filler_sentence[] =
    "The river runs past the old mill, and the fields beyond it are quiet in the evening. ";

/* Philox streams of the keys and of the filler offsets. */
enum { KEY_STREAM = 0x6e696168, OFFSET_STREAM = 0x6e696169 };

void lact_niah_key(uint64_t seed, int64_t trial, char key[LACT_NIAH_KEY_DIGITS + 1]) {
    for (int i = 0; i < LACT_NIAH_KEY_DIGITS; i++) {
        float u = lact_philox_uniform(seed, KEY_STREAM, (uint64_t)trial * 8 + (uint64_t)i);
        int d = i == 0 ? 1 + (int)(u * 9.0f) : (int)(u * 10.0f);
        key[i] = (char)('0' + (d > 9 ? 9 : d));
    }
    key[LACT_NIAH_KEY_DIGITS] = '\0';
}

int64_t lact_niah_filler_offset(uint64_t seed, int64_t trial, int64_t n) {
    if (n < 1) return 0;
    lact_u32x4 r = lact_philox4x32(seed, (uint64_t)trial, OFFSET_STREAM);
    return (int64_t)(((uint64_t)r.v[0] << 32 | r.v[1]) % (uint64_t)n);
}

lact_status lact_niah_filler_shards(const char *pattern, int32_t eot, int64_t max_tokens,
                                    lact_ids *out) {
    glob_t g;
    int r = glob(pattern, 0, NULL, &g);
    if (r == GLOB_NOMATCH) return lact_fail(LACT_E_NOT_FOUND, "%s: no shard matches", pattern);
    if (r != 0) return lact_fail(LACT_E_IO, "%s: cannot list the shards", pattern);
    enum { PIECE = 4096 };
    int32_t *buf = malloc(PIECE * sizeof *buf);
    lact_status s = buf ? LACT_OK : lact_fail(LACT_E_NOMEM, "filler: out of memory");
    for (size_t i = 0; s == LACT_OK && i < g.gl_pathc && (int64_t)out->n < max_tokens; i++) {
        lact_shard sh;
        s = lact_shard_open(&sh, g.gl_pathv[i]);
        if (s != LACT_OK) break;
        for (int64_t t0 = 0; s == LACT_OK && t0 < sh.n_tokens && (int64_t)out->n < max_tokens;
             t0 += PIECE) {
            int64_t n = sh.n_tokens - t0 < PIECE ? sh.n_tokens - t0 : PIECE;
            s = lact_shard_read(&sh, t0, n, buf);
            for (int64_t j = 0; s == LACT_OK && j < n && (int64_t)out->n < max_tokens; j++)
                if (buf[j] != eot) s = lact_ids_push(out, buf[j]);
        }
        lact_shard_close(&sh);
    }
    free(buf);
    globfree(&g);
    if (s == LACT_OK && out->n == 0)
        s = lact_fail(LACT_E_ARG, "%s: the shards hold no filler text", pattern);
    return s;
}

static lact_status encode(lact_tokenizer *tok, const char *text, lact_ids *out) {
    return lact_tokenizer_encode(tok, text, strlen(text), out);
}

lact_status lact_niah_build(lact_tokenizer *tok, const int32_t *filler, int64_t n_filler,
                            int64_t start, int64_t length, double depth, const char *key,
                            lact_niah_prompt *p) {
    memset(p, 0, sizeof *p);
    if (n_filler < 1 || !(depth >= 0.0 && depth <= 1.0))
        return lact_fail(LACT_E_ARG, "niah: %lld filler tokens, depth %g (must be in [0, 1])",
                         (long long)n_filler, depth);
    char needle_text[96], answer_text[16];
    snprintf(needle_text, sizeof needle_text, "\nThe pass key is %s. Remember it.\n", key);
    snprintf(answer_text, sizeof answer_text, " %s", key);
    lact_ids needle = {0}, question = {0};
    lact_status s = encode(tok, needle_text, &needle);
    if (s == LACT_OK) s = encode(tok, "\nWhat is the pass key? The pass key is", &question);
    if (s == LACT_OK) s = encode(tok, answer_text, &p->answer);
    int64_t F = length - (int64_t)needle.n - (int64_t)question.n;
    if (s == LACT_OK && F < 0)
        s = lact_fail(LACT_E_ARG,
                      "niah: length %lld is shorter than the needle and question "
                      "(%zu tokens)",
                      (long long)length, needle.n + question.n);
    int64_t before = (int64_t)llround(depth * (double)F);
    for (int64_t i = 0; s == LACT_OK && i < F; i++) {
        if (i == before)
            for (size_t j = 0; s == LACT_OK && j < needle.n; j++)
                s = lact_ids_push(&p->ids, needle.v[j]);
        if (s == LACT_OK) s = lact_ids_push(&p->ids, filler[(start + i) % n_filler]);
    }
    if (before == F)
        for (size_t j = 0; s == LACT_OK && j < needle.n; j++)
            s = lact_ids_push(&p->ids, needle.v[j]);
    for (size_t j = 0; s == LACT_OK && j < question.n; j++)
        s = lact_ids_push(&p->ids, question.v[j]);
    p->needle_at = before;
    p->needle_len = (int64_t)needle.n;
    lact_ids_free(&needle);
    lact_ids_free(&question);
    if (s != LACT_OK) lact_niah_prompt_free(p);
    return s;
}

void lact_niah_prompt_free(lact_niah_prompt *p) {
    lact_ids_free(&p->ids);
    lact_ids_free(&p->answer);
    memset(p, 0, sizeof *p);
}

lact_status lact_niah_greedy_decode(lact_ctx *ctx, lact_lm *m, const lact_niah_prompt *p,
                                    int64_t n_allowed, int64_t prefill_tokens, bool *hit) {
    int64_t n = (int64_t)p->ids.n, k = (int64_t)p->answer.n, V = m->cfg.vocab;
    int64_t piece = prefill_tokens < n ? prefill_tokens : n;
    *hit = false;
    if (n < 1 || k < 1 || piece < 1)
        return lact_fail(LACT_E_ARG, "niah: an empty prompt or answer");
    float *logits = malloc((size_t)V * sizeof *logits);
    if (!logits) return lact_fail(LACT_E_NOMEM, "niah: out of memory");
    lact_lm_decode st;
    lact_status s = lact_lm_decode_init(ctx, m, &st, 1, piece, n + k);
    if (s != LACT_OK) {
        free(logits);
        return s;
    }
    int64_t lshape[2] = {1, V}, pshape[2] = {1, n}, one[2] = {1, 1};
    lact_tensor lv = lact_tensor_view(logits, LACT_F32, LACT_CPU, 2, lshape);
    lact_tensor pv = lact_tensor_view(p->ids.v, LACT_I32, LACT_CPU, 2, pshape);
    s = lact_lm_decode_prefill(ctx, &st, &lv, &pv);
    int32_t id = 0;
    lact_tensor iv = lact_tensor_view(&id, LACT_I32, LACT_CPU, 2, one);
    bool same = true;
    /* Greedy stops at the first id that differs: the verdict is known. */
    for (int64_t j = 0; s == LACT_OK && same && j < k; j++) {
        id = lact_eval_argmax(logits, n_allowed);
        same = id == p->answer.v[j];
        if (same && j + 1 < k) s = lact_lm_decode_step(ctx, &st, &lv, &iv);
    }
    lact_lm_decode_free(&st);
    free(logits);
    if (s == LACT_OK) *hit = same;
    return s;
}

lact_status lact_niah_greedy_forward(lact_ctx *ctx, lact_lm *m, lact_lm_scorer *s,
                                     const lact_niah_prompt *p, int64_t n_allowed, bool *hit) {
    int64_t n = (int64_t)p->ids.n, k = (int64_t)p->answer.n, len = n + k - 1;
    *hit = false;
    if (n < 1 || k < 1) return lact_fail(LACT_E_ARG, "niah: an empty prompt or answer");
    if (len > s->L || k > s->logit_rows)
        return lact_fail(LACT_E_ARG,
                         "niah: %lld positions and %lld answer ids for a scorer of "
                         "%lld and %lld",
                         (long long)len, (long long)k, (long long)s->L, (long long)s->logit_rows);
    for (int64_t r = 0; r < s->B; r++)
        for (int64_t t = 0; t < len; t++) {
            s->h_ids[r * len + t] = r > 0 ? 0 : t < n ? p->ids.v[t] : p->answer.v[t - n];
            s->h_targets[r * len + t] = -1;
        }
    LACT_TRY(lact_lm_scorer_run(ctx, m, s, len));
    /* Position n − 1 + j predicts answer id j. */
    LACT_TRY(lact_lm_scorer_logits(ctx, m, s, 0, n - 1, k));
    int64_t V = m->cfg.vocab;
    bool same = true;
    for (int64_t j = 0; same && j < k; j++)
        same = lact_eval_argmax(s->h_logits + j * V, n_allowed) == p->answer.v[j];
    *hit = same;
    return LACT_OK;
}

lact_status lact_niah_run(lact_ctx *ctx, lact_lm *m, lact_tokenizer *tok, const lact_niah_cfg *c,
                          lact_niah_cell *cells) {
    int64_t max_len = 0;
    for (int i = 0; i < c->n_lengths; i++)
        if (c->lengths[i] > max_len) max_len = c->lengths[i];
    lact_lm_scorer sc;
    memset(&sc, 0, sizeof sc);
    lact_status s = LACT_OK;
    /* " " + the digits: a byte-level tokenizer spends at most one id per byte. */
    int64_t answer_max = LACT_NIAH_KEY_DIGITS + 1;
    if (c->mode == LACT_NIAH_FORWARD)
        s = lact_lm_scorer_init(&sc, m, 1, max_len + answer_max - 1, answer_max);
    for (int li = 0; s == LACT_OK && li < c->n_lengths; li++)
        for (int di = 0; s == LACT_OK && di < c->n_depths; di++) {
            lact_niah_cell *cell = &cells[li * c->n_depths + di];
            cell->length = c->lengths[li];
            cell->depth = c->depths[di];
            cell->trials = c->trials;
            cell->correct = 0;
            for (int64_t t = 0; s == LACT_OK && t < c->trials; t++) {
                char key[LACT_NIAH_KEY_DIGITS + 1];
                lact_niah_key(c->seed, t, key);
                int64_t start =
                    c->shift_filler ? lact_niah_filler_offset(c->seed, t, c->n_filler) : 0;
                lact_niah_prompt p;
                s = lact_niah_build(tok, c->filler, c->n_filler, start, cell->length, cell->depth,
                                    key, &p);
                if (s != LACT_OK) break;
                bool hit = false;
                s = c->mode == LACT_NIAH_FORWARD
                        ? lact_niah_greedy_forward(ctx, m, &sc, &p, c->n_allowed, &hit)
                        : lact_niah_greedy_decode(ctx, m, &p, c->n_allowed, c->prefill_tokens,
                                                  &hit);
                cell->correct += hit;
                lact_niah_prompt_free(&p);
            }
        }
    if (c->mode == LACT_NIAH_FORWARD) lact_lm_scorer_free(&sc);
    return s;
}

const char *lact_niah_mode_name(lact_niah_mode mode) {
    return mode == LACT_NIAH_FORWARD ? "forward" : "decode";
}

lact_status lact_niah_write(const char *path, const lact_niah_cell *cells, int64_t n,
                            lact_niah_mode mode) {
    bool json = lact_eval_path_is_json(path);
    lact_bytes out = {0};
    lact_status s =
        json ? lact_eval_appendf(&out, "{\"task\": \"niah\", \"mode\": \"%s\", \"cells\": [",
                                 lact_niah_mode_name(mode))
             : lact_eval_appendf(&out, "length,depth,trials,correct,accuracy\n");
    for (int64_t i = 0; s == LACT_OK && i < n; i++) {
        const lact_niah_cell *c = &cells[i];
        double acc = c->trials > 0 ? (double)c->correct / (double)c->trials : 0.0;
        s = json ? lact_eval_appendf(&out,
                                     "%s{\"length\": %lld, \"depth\": %g, \"trials\": %lld, "
                                     "\"correct\": %lld, \"accuracy\": %.6g}",
                                     i ? ", " : "", (long long)c->length, c->depth,
                                     (long long)c->trials, (long long)c->correct, acc)
                 : lact_eval_appendf(&out, "%lld,%g,%lld,%lld,%.6g\n", (long long)c->length,
                                     c->depth, (long long)c->trials, (long long)c->correct, acc);
    }
    if (s == LACT_OK && json) s = lact_eval_appendf(&out, "]}\n");
    if (s == LACT_OK) s = lact_file_write_atomic(path, out.v, out.n);
    lact_bytes_free(&out);
    return s;
}
