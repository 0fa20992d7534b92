#include "bpe_json.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/io/file.h"
#include "unicode.h"

/* A byte-level spelling ("Ġthe") to bytes (" the"); false when a character
 * is outside the byte map. */
static bool unspell(const char *s, lact_bytes *out, int32_t *bad_cp) {
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s);
    out->n = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        i += (size_t)text_utf8_next(p, n, i, &cp);
        int byte = text_cp_to_byte(cp);
        if (byte < 0) {
            *bad_cp = cp;
            return false;
        }
        uint8_t c = (uint8_t)byte;
        if (lact_bytes_append(out, &c, 1) != LACT_OK) return false;
    }
    return true;
}

static lact_status spell(const uint8_t *t, size_t len, lact_bytes *out) {
    out->n = 0;
    for (size_t i = 0; i < len; i++) {
        int32_t cp = text_byte_to_cp(t[i]);
        uint8_t u[2];
        if (cp < 0x80) {
            u[0] = (uint8_t)cp;
            LACT_TRY(lact_bytes_append(out, u, 1));
        } else {
            u[0] = (uint8_t)(0xC0 | (cp >> 6));
            u[1] = (uint8_t)(0x80 | (cp & 0x3F));
            LACT_TRY(lact_bytes_append(out, u, 2));
        }
    }
    return lact_bytes_append(out, "", 1);
}

static bool is_null_or_absent(const cJSON *j) { return !j || cJSON_IsNull(j); }

static const char *type_of(const cJSON *obj) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static bool flag_true(const cJSON *obj, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

static bool empty_string_or_null(const cJSON *j) {
    return is_null_or_absent(j) || (cJSON_IsString(j) && j->valuestring[0] == '\0');
}

/* ByteLevel{...} at `field`: sets add_prefix_space; *use_regex gets its flag. */
static lact_status read_byte_level(lact_bpe *b, const cJSON *pt, const char *name, const char *field,
                                   bool *use_regex) {
    const cJSON *ur = cJSON_GetObjectItemCaseSensitive(pt, "use_regex");
    *use_regex = !cJSON_IsFalse(ur); /* absent means true */
    b->add_prefix_space = flag_true(pt, "add_prefix_space");
    (void)name, (void)field;
    return LACT_OK;
}

static lact_status read_pretok(lact_bpe *b, const cJSON *root, const char *name) {
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (is_null_or_absent(pt))
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: pre_tokenizer is null; only byte-level BPE (ByteLevel) is supported",
                         name);
    const char *type = type_of(pt);
    bool use_regex;
    if (type && !strcmp(type, "ByteLevel")) {
        LACT_TRY(read_byte_level(b, pt, name, "pre_tokenizer", &use_regex));
        b->pretok = use_regex ? TEXT_PRETOK_GPT2 : TEXT_PRETOK_NONE;
        return LACT_OK;
    }
    if (!type || strcmp(type, "Sequence"))
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: pre_tokenizer.type \"%s\" is unsupported (ByteLevel or Sequence of "
                         "Split and ByteLevel)",
                         name, type ? type : "(missing)");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    int n = cJSON_IsArray(seq) ? cJSON_GetArraySize(seq) : -1;
    if (n < 1 || n > 2)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: pre_tokenizer.pretokenizers must hold [Split, ByteLevel] or "
                         "[ByteLevel]",
                         name);
    const cJSON *last = cJSON_GetArrayItem(seq, n - 1);
    if (!type_of(last) || strcmp(type_of(last), "ByteLevel"))
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: pre_tokenizer.pretokenizers[%d].type must be ByteLevel", name, n - 1);
    LACT_TRY(read_byte_level(b, last, name, "", &use_regex));
    if (n == 1) {
        b->pretok = use_regex ? TEXT_PRETOK_GPT2 : TEXT_PRETOK_NONE;
        return LACT_OK;
    }
    if (use_regex)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: pre_tokenizer.pretokenizers[1].use_regex must be false after a Split",
                         name);
    const cJSON *split = cJSON_GetArrayItem(seq, 0);
    if (!type_of(split) || strcmp(type_of(split), "Split"))
        return lact_fail(LACT_E_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[0].type must be Split",
                         name);
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(split, "behavior");
    if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") || flag_true(split, "invert"))
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: pre_tokenizer.pretokenizers[0].behavior must be Isolated (invert "
                         "false)",
                         name);
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(split, "pattern");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    if (!cJSON_IsString(re))
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: pre_tokenizer.pretokenizers[0].pattern.Regex is missing", name);
    if (!strcmp(re->valuestring, text_pretok_llama3_regex))
        b->pretok = TEXT_PRETOK_LLAMA3;
    else if (!strcmp(re->valuestring, text_pretok_gpt2_regex))
        b->pretok = TEXT_PRETOK_GPT2;
    else
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: pre_tokenizer.pretokenizers[0].pattern.Regex is not the GPT-2 or "
                         "Llama-3 pattern",
                         name);
    return LACT_OK;
}

static lact_status read_model_flags(lact_bpe *b, const cJSON *model, const char *name) {
    const char *type = type_of(model);
    if (type && strcmp(type, "BPE"))
        return lact_fail(LACT_E_UNSUPPORTED, "%s: model.type \"%s\" is unsupported (only BPE)",
                         name, type);
    if (flag_true(model, "byte_fallback"))
        return lact_fail(LACT_E_UNSUPPORTED, "%s: model.byte_fallback true is unsupported", name);
    const char *strs[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++)
        if (!empty_string_or_null(cJSON_GetObjectItemCaseSensitive(model, strs[i])))
            return lact_fail(LACT_E_UNSUPPORTED, "%s: model.%s is unsupported (must be null)",
                             name, strs[i]);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (!is_null_or_absent(d) && !(cJSON_IsNumber(d) && d->valuedouble == 0))
        return lact_fail(LACT_E_UNSUPPORTED, "%s: model.dropout is unsupported (must be null)",
                         name);
    b->ignore_merges = flag_true(model, "ignore_merges");
    return LACT_OK;
}

static lact_status read_vocab(lact_bpe *b, const cJSON *model, const char *name, lact_bytes *tmp) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return lact_fail(LACT_E_FORMAT, "%s: model.vocab is missing or not an object", name);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t bad = 0;
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble != (int32_t)e->valuedouble)
            return lact_fail(LACT_E_FORMAT, "%s: model.vocab[\"%s\"] is not a token id", name,
                             e->string);
        if (!unspell(e->string, tmp, &bad))
            return lact_fail(LACT_E_FORMAT,
                             "%s: model.vocab[\"%s\"] is not byte-level (character U+%04X)", name,
                             e->string, (unsigned)bad);
        if (lact_bpe_add_token(b, e->valueint, tmp->v, tmp->n) != LACT_OK)
            return lact_fail_context(LACT_E_FORMAT, "%s: model.vocab", name);
    }
    return LACT_OK;
}

static int32_t vocab_id(const lact_bpe *b, const char *spelled, lact_bytes *tmp) {
    int32_t bad;
    if (!unspell(spelled, tmp, &bad)) return -1;
    return text_strmap_get(&b->vocab, tmp->v, tmp->n);
}

static lact_status read_merges(lact_bpe *b, const cJSON *model, const char *name, lact_bytes *tmp) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges))
        return lact_fail(LACT_E_FORMAT, "%s: model.merges is missing or not an array", name);
    int i = 0;
    char where[96], left[1024];
    for (const cJSON *m = merges->child; m; m = m->next, i++) {
        const char *a = NULL, *c = NULL;
        snprintf(where, sizeof where, "%s: model.merges[%d]", name, i);
        if (cJSON_IsString(m)) {
            const char *sp = strchr(m->valuestring, ' ');
            size_t la = sp ? (size_t)(sp - m->valuestring) : 0;
            if (!sp || la >= sizeof left || strchr(sp + 1, ' '))
                return lact_fail(LACT_E_FORMAT, "%s: \"%s\" is not two tokens separated by a space",
                                 where, m->valuestring);
            memcpy(left, m->valuestring, la);
            left[la] = '\0';
            a = left, c = sp + 1;
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            a = cJSON_GetArrayItem(m, 0)->valuestring;
            c = cJSON_GetArrayItem(m, 1)->valuestring;
        } else {
            return lact_fail(LACT_E_FORMAT, "%s: expected \"a b\" or [\"a\", \"b\"]", where);
        }
        int32_t ia = vocab_id(b, a, tmp), ic = vocab_id(b, c, tmp);
        if (ia < 0 || ic < 0)
            return lact_fail(LACT_E_FORMAT, "%s: token \"%s\" is not in model.vocab", where,
                             ia < 0 ? a : c);
        LACT_TRY(lact_bpe_add_merge(b, ia, ic, where));
    }
    return LACT_OK;
}

static lact_status read_added(lact_bpe *b, const cJSON *root, const char *name) {
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (is_null_or_absent(added)) return LACT_OK;
    if (!cJSON_IsArray(added))
        return lact_fail(LACT_E_FORMAT, "%s: added_tokens is not an array", name);
    int i = 0;
    for (const cJSON *a = added->child; a; a = a->next, i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(content))
            return lact_fail(LACT_E_FORMAT, "%s: added_tokens[%d] needs an id and a content", name,
                             i);
        const char *flags[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 3; k++)
            if (flag_true(a, flags[k]))
                return lact_fail(LACT_E_UNSUPPORTED, "%s: added_tokens[%d].%s true is unsupported",
                                 name, i, flags[k]);
        if (lact_bpe_add_special(b, id->valueint, content->valuestring,
                                 strlen(content->valuestring), flag_true(a, "special")) != LACT_OK)
            return lact_fail_context(LACT_E_FORMAT, "%s: added_tokens[%d]", name, i);
    }
    return LACT_OK;
}

static lact_status parse_root(lact_bpe *b, const cJSON *root, const char *name) {
    lact_bytes tmp = {0};
    if (!cJSON_IsObject(root)) return lact_fail(LACT_E_FORMAT, "%s: not a JSON object", name);
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (!is_null_or_absent(norm))
        return lact_fail(LACT_E_UNSUPPORTED, "%s: normalizer \"%s\" is unsupported (must be null)",
                         name, type_of(norm) ? type_of(norm) : "?");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!is_null_or_absent(dec) && (!type_of(dec) || strcmp(type_of(dec), "ByteLevel")))
        return lact_fail(LACT_E_UNSUPPORTED, "%s: decoder.type \"%s\" is unsupported (ByteLevel)",
                         name, type_of(dec) ? type_of(dec) : "?");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return lact_fail(LACT_E_FORMAT, "%s: model is missing", name);
    lact_status s = read_pretok(b, root, name);
    if (s == LACT_OK) s = read_model_flags(b, model, name);
    if (s == LACT_OK) s = read_vocab(b, model, name, &tmp);
    if (s == LACT_OK) s = read_merges(b, model, name, &tmp);
    if (s == LACT_OK) s = read_added(b, root, name);
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (s == LACT_OK && cJSON_IsString(unk)) {
        b->unk_id = vocab_id(b, unk->valuestring, &tmp);
        if (b->unk_id < 0) b->unk_id = lact_bpe_find_added(b, unk->valuestring);
        if (b->unk_id < 0)
            s = lact_fail(LACT_E_FORMAT, "%s: model.unk_token \"%s\" is not a token", name,
                          unk->valuestring);
    }
    lact_bytes_free(&tmp);
    if (s == LACT_OK) s = lact_bpe_finish(b);
    return s;
}

lact_status lact_bpe_parse_json(lact_bpe *b, const char *json, const char *name) {
    lact_bpe_init(b, TEXT_PRETOK_GPT2);
    cJSON *root = cJSON_Parse(json);
    if (!root) return lact_fail(LACT_E_FORMAT, "%s: not valid JSON", name);
    lact_status s = parse_root(b, root, name);
    cJSON_Delete(root);
    if (s != LACT_OK) lact_bpe_free(b);
    return s;
}

lact_status lact_bpe_load_json(lact_bpe *b, const char *path) {
    char *text;
    lact_bpe_init(b, TEXT_PRETOK_GPT2);
    LACT_TRY(lact_file_read(path, &text, NULL));
    lact_status s = lact_bpe_parse_json(b, text, path);
    free(text);
    return s;
}

static cJSON *byte_level_json(bool use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", false);
    cJSON_AddBoolToObject(o, "trim_offsets", true);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

static cJSON *pretok_json(const lact_bpe *b) {
    if (b->pretok != TEXT_PRETOK_LLAMA3) return byte_level_json(b->pretok == TEXT_PRETOK_GPT2);
    cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray(), *split = cJSON_CreateObject();
    cJSON *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(pat, "Regex", text_pretok_llama3_regex);
    cJSON_AddItemToObject(split, "pattern", pat);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddBoolToObject(split, "invert", false);
    cJSON_AddItemToArray(list, split);
    cJSON_AddItemToArray(list, byte_level_json(false));
    cJSON_AddItemToObject(seq, "pretokenizers", list);
    return seq;
}

static lact_status build_json(const lact_bpe *b, cJSON *root, lact_bytes *sa, lact_bytes *sb) {
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < b->n_added; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", b->added[i].id);
        cJSON_AddStringToObject(a, "content", b->added[i].content);
        cJSON_AddBoolToObject(a, "single_word", false);
        cJSON_AddBoolToObject(a, "lstrip", false);
        cJSON_AddBoolToObject(a, "rstrip", false);
        cJSON_AddBoolToObject(a, "normalized", false);
        cJSON_AddBoolToObject(a, "special", b->added[i].special);
        cJSON_AddItemToArray(added, a);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", pretok_json(b));
    cJSON_AddNullToObject(root, "post_processor");
    cJSON_AddItemToObject(root, "decoder", byte_level_json(true));
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", false);
    cJSON_AddBoolToObject(model, "byte_fallback", false);
    cJSON_AddBoolToObject(model, "ignore_merges", b->ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int32_t id = 0; id < b->n_ids; id++) {
        size_t len;
        const uint8_t *t = lact_bpe_token(b, id, &len);
        if (!t || text_strmap_get(&b->vocab, t, len) != id) continue;
        LACT_TRY(spell(t, len, sa));
        cJSON_AddNumberToObject(vocab, (const char *)sa->v, id);
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (int32_t r = 0; r < b->n_merges; r++) {
        size_t la = 0, lb = 0;
        const uint8_t *ta = lact_bpe_token(b, b->merge_a[r], &la);
        const uint8_t *tb = lact_bpe_token(b, b->merge_b[r], &lb);
        LACT_TRY(spell(ta, la, sa));
        LACT_TRY(spell(tb, lb, sb));
        sa->v[sa->n - 1] = ' ';
        LACT_TRY(lact_bytes_append(sa, sb->v, sb->n));
        cJSON_AddItemToArray(merges, cJSON_CreateString((const char *)sa->v));
    }
    return LACT_OK;
}

lact_status lact_bpe_save_json(const lact_bpe *b, const char *path) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return lact_fail(LACT_E_NOMEM, "%s: out of memory", path);
    lact_bytes sa = {0}, sb = {0};
    lact_status s = build_json(b, root, &sa, &sb);
    char *text = s == LACT_OK ? cJSON_Print(root) : NULL;
    if (s == LACT_OK && !text) s = lact_fail(LACT_E_NOMEM, "%s: out of memory", path);
    if (s == LACT_OK) s = lact_file_write_atomic(path, text, strlen(text));
    free(text);
    cJSON_Delete(root);
    lact_bytes_free(&sa);
    lact_bytes_free(&sb);
    return s;
}
