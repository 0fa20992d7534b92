#define _POSIX_C_SOURCE 200809L

#include "core/train/lm_eval_mc.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/io/file.h"

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void lact_mc_item_free(lact_mc_item *item) {
    free(item->context);
    if (item->choices)
        for (int j = 0; j < item->n_choices; j++)
            free(item->choices[j]);
    free(item->choices);
    memset(item, 0, sizeof *item);
}

lact_status lact_mc_parse_line(const char *path, int64_t line, const char *text,
                               lact_mc_item *item) {
    memset(item, 0, sizeof *item);
    item->line = line;
    /* Nothing but whitespace may follow the object. */
    cJSON *root = cJSON_ParseWithOpts(text, NULL, true);
    const char *bad = NULL;
    int bad_choice = -1;
    const cJSON *ctx = NULL, *choices = NULL, *answer = NULL;
    if (!root || !cJSON_IsObject(root)) bad = "not a JSON object";
    if (!bad) {
        ctx = cJSON_GetObjectItemCaseSensitive(root, "context");
        choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
        answer = cJSON_GetObjectItemCaseSensitive(root, "answer");
        if (!cJSON_IsString(ctx))
            bad = "\"context\" must be a string";
        else if (!cJSON_IsArray(choices) || cJSON_GetArraySize(choices) < 2)
            bad = "\"choices\" must be an array of at least 2 strings";
        else if (!cJSON_IsNumber(answer) || answer->valuedouble != floor(answer->valuedouble) ||
                 fabs(answer->valuedouble) > 1e9)
            bad = "\"answer\" must be an integer";
    }
    if (!bad) {
        item->n_choices = cJSON_GetArraySize(choices);
        item->answer = (int)answer->valuedouble;
        if (item->answer < 0 || item->answer >= item->n_choices)
            bad = "\"answer\" is not the index of a choice";
    }
    if (!bad) {
        item->context = dup_str(ctx->valuestring);
        item->choices = calloc((size_t)item->n_choices, sizeof *item->choices);
        if (!item->context || !item->choices) bad = "out of memory";
    }
    for (int j = 0; !bad && j < item->n_choices; j++) {
        const cJSON *c = cJSON_GetArrayItem(choices, j);
        if (!cJSON_IsString(c) || c->valuestring[0] == '\0')
            bad_choice = j, bad = "";
        else if (!(item->choices[j] = dup_str(c->valuestring)))
            bad = "out of memory";
    }
    cJSON_Delete(root);
    if (!bad) return LACT_OK;
    lact_mc_item_free(item);
    if (bad_choice >= 0)
        return lact_fail(LACT_E_ARG, "%s:%lld: choice %d must be a non-empty string", path,
                         (long long)line, bad_choice);
    return lact_fail(LACT_E_ARG, "%s:%lld: %s", path, (long long)line, bad);
}

static bool blank(const char *s) {
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return false;
    return true;
}

lact_status lact_mc_load(const char *path, lact_mc_set *set) {
    memset(set, 0, sizeof *set);
    FILE *fp = fopen(path, "r");
    if (!fp) return lact_fail(LACT_E_NOT_FOUND, "%s: %s", path, strerror(errno));
    set->path = dup_str(path);
    char *buf = NULL;
    size_t cap = 0, room = 0;
    lact_status s = set->path ? LACT_OK : lact_fail(LACT_E_NOMEM, "out of memory");
    for (int64_t line = 1; s == LACT_OK; line++) {
        errno = 0;
        ssize_t got = getline(&buf, &cap, fp);
        if (got < 0) {
            if (ferror(fp)) s = lact_fail(LACT_E_IO, "%s: read error", path);
            break;
        }
        if ((size_t)got != strlen(buf)) {
            s = lact_fail(LACT_E_ARG, "%s:%lld: a NUL byte in the line", path, (long long)line);
            break;
        }
        if (blank(buf)) continue;
        if ((size_t)set->n == room) {
            size_t nr = room ? 2 * room : 64;
            lact_mc_item *ni = realloc(set->items, nr * sizeof *ni);
            if (!ni) {
                s = lact_fail(LACT_E_NOMEM, "out of memory");
                break;
            }
            set->items = ni, room = nr;
        }
        s = lact_mc_parse_line(path, line, buf, &set->items[set->n]);
        if (s == LACT_OK) set->n++;
    }
    free(buf);
    fclose(fp);
    if (s == LACT_OK && set->n == 0) s = lact_fail(LACT_E_ARG, "%s: no questions", path);
    if (s != LACT_OK) lact_mc_free(set);
    return s;
}

void lact_mc_free(lact_mc_set *set) {
    for (int64_t i = 0; i < set->n; i++)
        lact_mc_item_free(&set->items[i]);
    free(set->items);
    free(set->path);
    memset(set, 0, sizeof *set);
}

int lact_mc_pick(const double *ll, const int64_t *bytes, int n) {
    int best = 0;
    double bs = 0;
    for (int j = 0; j < n; j++) {
        double v = bytes ? ll[j] / (double)(bytes[j] > 0 ? bytes[j] : 1) : ll[j];
        if (j == 0 || v > bs) best = j, bs = v;
    }
    return best;
}

/* The tokens of one (question, choice) pair: the kept end of the context,
 * then the choice. */
typedef struct pair {
    int64_t q;
    lact_ids ids;
    int64_t ctx; /* context tokens in ids */
} pair;

static lact_status encode_pair(lact_tokenizer *tok, const lact_mc_item *it, const char *path, int j,
                               int64_t max_len, pair *p) {
    const char *c = it->context;
    size_t n = strlen(c), keep = n;
    while (keep > 0 && isspace((unsigned char)c[keep - 1]))
        keep--;
    lact_ids ctx = {0}, cont = {0};
    lact_status s = lact_tokenizer_encode(tok, c, keep, &ctx);
    if (s == LACT_OK && ctx.n == 0) {
        int32_t eot = lact_tokenizer_eot(tok);
        s = eot >= 0 ? lact_ids_push(&ctx, eot)
                     : lact_fail(LACT_E_ARG,
                                 "%s:%lld: the context is empty and the tokenizer "
                                 "has no end-of-text id",
                                 path, (long long)it->line);
    }
    /* The context's trailing whitespace leads the choice. */
    size_t cn = strlen(it->choices[j]);
    char *text = malloc(n - keep + cn + 1);
    if (s == LACT_OK && !text) s = lact_fail(LACT_E_NOMEM, "out of memory");
    if (s == LACT_OK) {
        memcpy(text, c + keep, n - keep);
        memcpy(text + n - keep, it->choices[j], cn + 1);
        s = lact_tokenizer_encode(tok, text, n - keep + cn, &cont);
    }
    free(text);
    if (s == LACT_OK && (int64_t)cont.n > max_len)
        s = lact_fail(LACT_E_ARG,
                      "%s:%lld: choice %d has %zu tokens, more than the %lld "
                      "positions of the longest sequence",
                      path, (long long)it->line, j, cont.n, (long long)max_len);
    /* positions = context + choice − 1 ≤ max_len: keep the end of the context. */
    int64_t kept = (int64_t)ctx.n;
    if (s == LACT_OK && kept + (int64_t)cont.n - 1 > max_len) kept = max_len + 1 - (int64_t)cont.n;
    for (int64_t i = (int64_t)ctx.n - kept; s == LACT_OK && i < (int64_t)ctx.n; i++)
        s = lact_ids_push(&p->ids, ctx.v[i]);
    for (size_t i = 0; s == LACT_OK && i < cont.n; i++)
        s = lact_ids_push(&p->ids, cont.v[i]);
    p->ctx = kept;
    lact_ids_free(&ctx);
    lact_ids_free(&cont);
    return s;
}

static lact_status alloc_result(lact_mc_result *r, const lact_mc_set *set) {
    memset(r, 0, sizeof *r);
    r->n = set->n;
    for (int64_t i = 0; i < set->n; i++)
        r->pairs += set->items[i].n_choices;
    r->ll = calloc((size_t)r->pairs, sizeof *r->ll);
    r->bytes = calloc((size_t)r->pairs, sizeof *r->bytes);
    r->offset = calloc((size_t)r->n, sizeof *r->offset);
    r->pred = calloc((size_t)r->n, sizeof *r->pred);
    r->pred_norm = calloc((size_t)r->n, sizeof *r->pred_norm);
    if (!r->ll || !r->bytes || !r->offset || !r->pred || !r->pred_norm)
        return lact_fail(LACT_E_NOMEM, "mc: out of memory");
    return LACT_OK;
}

/* Rows [first, first + rows) of pairs through one forward; ll of each. */
static lact_status score_rows(lact_ctx *ctx, lact_lm *m, lact_lm_scorer *sc, const pair *pairs,
                              int64_t first, int64_t rows, double *ll) {
    int64_t len = 1;
    for (int64_t r = 0; r < rows; r++)
        if ((int64_t)pairs[first + r].ids.n - 1 > len) len = (int64_t)pairs[first + r].ids.n - 1;
    for (int64_t r = 0; r < sc->B; r++) {
        const pair *p = r < rows ? &pairs[first + r] : NULL;
        int64_t n = p ? (int64_t)p->ids.n : 0;
        for (int64_t t = 0; t < len; t++) {
            bool in = t + 1 < n;
            sc->h_ids[r * len + t] = in ? p->ids.v[t] : 0;
            /* Only the choice's tokens are predicted. */
            sc->h_targets[r * len + t] = in && t + 1 >= p->ctx ? p->ids.v[t + 1] : -1;
        }
    }
    LACT_TRY(lact_lm_scorer_run(ctx, m, sc, len));
    for (int64_t r = 0; r < rows; r++) {
        double s = 0;
        for (int64_t t = 0; t < len; t++)
            s += sc->h_loss[r * len + t];
        ll[first + r] = -s;
    }
    return LACT_OK;
}

lact_status lact_mc_eval(lact_ctx *ctx, lact_lm *m, lact_tokenizer *tok, const lact_mc_set *set,
                         int64_t batch, int64_t max_len, lact_mc_result *r) {
    if (batch < 1 || max_len < 1)
        return lact_fail(LACT_E_ARG, "mc: batch %lld and max_len %lld must be ≥ 1",
                         (long long)batch, (long long)max_len);
    lact_status s = alloc_result(r, set);
    pair *pairs = s == LACT_OK ? calloc((size_t)r->pairs, sizeof *pairs) : NULL;
    if (s == LACT_OK && !pairs) s = lact_fail(LACT_E_NOMEM, "mc: out of memory");
    int64_t L = 1, k = 0;
    for (int64_t i = 0; s == LACT_OK && i < set->n; i++) {
        const lact_mc_item *it = &set->items[i];
        r->offset[i] = k;
        for (int j = 0; s == LACT_OK && j < it->n_choices; j++, k++) {
            pairs[k].q = i;
            r->bytes[k] = (int64_t)strlen(it->choices[j]);
            s = encode_pair(tok, it, set->path ? set->path : "mc", j, max_len, &pairs[k]);
            if (s == LACT_OK && (int64_t)pairs[k].ids.n - 1 > L) L = (int64_t)pairs[k].ids.n - 1;
        }
    }
    lact_lm_scorer sc;
    int64_t B = batch < r->pairs ? batch : r->pairs;
    bool made = false;
    if (s == LACT_OK) s = lact_lm_scorer_init(&sc, m, B, L, 0);
    if (s == LACT_OK) made = true;
    for (int64_t first = 0; s == LACT_OK && first < r->pairs; first += B) {
        int64_t rows = r->pairs - first < B ? r->pairs - first : B;
        s = score_rows(ctx, m, &sc, pairs, first, rows, r->ll);
    }
    for (int64_t i = 0; s == LACT_OK && i < set->n; i++) {
        const lact_mc_item *it = &set->items[i];
        int64_t o = r->offset[i];
        r->pred[i] = lact_mc_pick(r->ll + o, NULL, it->n_choices);
        r->pred_norm[i] = lact_mc_pick(r->ll + o, r->bytes + o, it->n_choices);
        r->correct += r->pred[i] == it->answer;
        r->correct_norm += r->pred_norm[i] == it->answer;
    }
    if (made) lact_lm_scorer_free(&sc);
    if (pairs)
        for (int64_t i = 0; i < r->pairs; i++)
            lact_ids_free(&pairs[i].ids);
    free(pairs);
    if (s != LACT_OK) lact_mc_result_free(r);
    return s;
}

void lact_mc_result_free(lact_mc_result *r) {
    free(r->ll);
    free(r->bytes);
    free(r->offset);
    free(r->pred);
    free(r->pred_norm);
    memset(r, 0, sizeof *r);
}

lact_status lact_mc_write(const char *path, const lact_mc_set *set, const lact_mc_result *r) {
    bool json = lact_eval_path_is_json(path);
    lact_bytes out = {0};
    double n = r->n > 0 ? (double)r->n : 1.0;
    lact_status s = json ? lact_eval_appendf(
                               &out,
                               "{\"task\": \"mc\", \"n\": %lld, \"acc\": %.6g, \"acc_norm\": "
                               "%.6g, \"questions\": [",
                               (long long)r->n, (double)r->correct / n, (double)r->correct_norm / n)
                         : lact_eval_appendf(&out, "question,answer,pred,pred_norm\n");
    for (int64_t i = 0; s == LACT_OK && i < r->n; i++) {
        int a = set->items[i].answer;
        s = json ? lact_eval_appendf(&out,
                                     "%s{\"question\": %lld, \"line\": %lld, \"answer\": %d, "
                                     "\"pred\": %d, \"pred_norm\": %d}",
                                     i ? ", " : "", (long long)i, (long long)set->items[i].line, a,
                                     r->pred[i], r->pred_norm[i])
                 : lact_eval_appendf(&out, "%lld,%d,%d,%d\n", (long long)i, a, r->pred[i],
                                     r->pred_norm[i]);
    }
    if (s == LACT_OK && json) s = lact_eval_appendf(&out, "]}\n");
    if (s == LACT_OK) s = lact_file_write_atomic(path, out.v, out.n);
    lact_bytes_free(&out);
    return s;
}
