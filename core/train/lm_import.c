#include "core/train/lm_import.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/io/checkpoint.h"
#include "core/io/file.h"
#include "core/io/safetensors.h"

/* Longest tensor name of a file (lact names are shorter). */
#define FILE_NAME_MAX 256

/* ---- the name map ------------------------------------------------------------ */

void lact_lm_name_map_init(lact_lm_name_map *m) {
    memset(m, 0, sizeof *m);
}

void lact_lm_name_map_free(lact_lm_name_map *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->lact[i]);
        free(m->file[i]);
    }
    free(m->lact);
    free(m->file);
    free(m->source);
    memset(m, 0, sizeof *m);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

lact_status lact_lm_name_map_parse(lact_lm_name_map *m, const char *json, const char *source) {
    if (m->n != 0) return lact_fail(LACT_E_ARG, "%s: the name map is not empty", source);
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lact_fail(LACT_E_FORMAT,
                         "%s: a name map is one JSON object {\"lact name\": \"file "
                         "name\", ...}",
                         source);
    }
    int n = cJSON_GetArraySize(root);
    lact_status s = LACT_OK;
    m->lact = calloc((size_t)(n > 0 ? n : 1), sizeof *m->lact);
    m->file = calloc((size_t)(n > 0 ? n : 1), sizeof *m->file);
    m->source = dup_str(source);
    if (!m->lact || !m->file || !m->source)
        s = lact_fail(LACT_E_NOMEM, "%s: out of memory", source);
    const cJSON *it = NULL;
    cJSON_ArrayForEach(it, root) {
        if (s != LACT_OK) break;
        const char *key = it->string;
        if (!cJSON_IsString(it)) {
            s = lact_fail(LACT_E_FORMAT, "%s: the value of '%s' is not a string", source, key);
        } else if (!key[0] || strlen(key) >= LACT_PARAM_NAME_MAX) {
            s = lact_fail(LACT_E_FORMAT, "%s: key '%s' is empty or longer than %d characters",
                          source, key, LACT_PARAM_NAME_MAX - 1);
        } else if (!it->valuestring[0] || strlen(it->valuestring) >= FILE_NAME_MAX) {
            s = lact_fail(LACT_E_FORMAT,
                          "%s: the value of '%s' is empty or longer than %d "
                          "characters",
                          source, key, FILE_NAME_MAX - 1);
        } else if (strstr(it->valuestring, "{i}") && !strstr(key, "{i}")) {
            s = lact_fail(LACT_E_FORMAT, "%s: the value of '%s' uses {i}, the key does not", source,
                          key);
        } else {
            m->lact[m->n] = dup_str(key);
            m->file[m->n] = dup_str(it->valuestring);
            if (!m->lact[m->n] || !m->file[m->n]) s = lact_fail(LACT_E_NOMEM, "out of memory");
            m->n++;
        }
    }
    cJSON_Delete(root);
    if (s != LACT_OK) lact_lm_name_map_free(m);
    return s;
}

lact_status lact_lm_name_map_load(lact_lm_name_map *m, const char *path) {
    char *text = NULL;
    size_t size = 0;
    LACT_TRY(lact_file_read(path, &text, &size));
    lact_status s = lact_lm_name_map_parse(m, text, path);
    free(text);
    return s;
}

/* Components whose file name is not "<name>.weight". */
static const char *const renamed[][2] = {
    {"lr_w", "lr.weight"},
    {"lr_b", "lr.bias"},
    {"mom_w", "mom.weight"},
    {"mom_b", "mom.bias"},
    {"bg", "wg.bias"},
    {"q_scale", "q_scale"},
    {"q_offset", "q_offset"},
    {"k_scale", "k_scale"},
    {"k_offset", "k_offset"},
    {"w0", "w0"},
    {"w1", "w1"},
    {"w2", "w2"},
    {"w_decay", "decay.weight"},
    {"b_decay", "decay.bias"},
    {"w_beta", "beta.weight"},
    {"b_beta", "beta.bias"},
    {"lambda", "lambda"},
};

lact_status lact_lm_default_name(const char *name, char *buf, size_t n) {
    const char *dot = strrchr(name, '.');
    size_t stem = dot ? (size_t)(dot - name) + 1 : 0;
    const char *last = name + stem, *tail = ".weight";
    size_t keep = strlen(name);
    for (size_t i = 0; i < sizeof renamed / sizeof renamed[0]; i++)
        if (!strcmp(last, renamed[i][0])) keep = stem, tail = renamed[i][1];
    if ((size_t)snprintf(buf, n, "%.*s%s", (int)keep, name, tail) >= n)
        return lact_fail(LACT_E_ARG, "parameter name '%s' is too long to map", name);
    return LACT_OK;
}

/* name against pattern, where "{i}" matches one or more digits (the same
 * digits at every "{i}"); the digits go to idx. */
static bool pattern_match(const char *pat, const char *name, char *idx, size_t idx_n) {
    idx[0] = '\0';
    while (*pat) {
        if (!strncmp(pat, "{i}", 3)) {
            size_t k = 0;
            while (name[k] >= '0' && name[k] <= '9')
                k++;
            if (k == 0 || k >= idx_n) return false;
            if (idx[0] && (strlen(idx) != k || strncmp(idx, name, k) != 0)) return false;
            memcpy(idx, name, k);
            idx[k] = '\0';
            pat += 3, name += k;
        } else if (*pat++ != *name++) {
            return false;
        }
    }
    return *name == '\0';
}

lact_status lact_lm_map_name(const lact_lm_name_map *m, const char *name, char *buf, size_t n,
                             int *entry) {
    if (entry) *entry = -1;
    char idx[24];
    for (int e = 0; m && e < m->n; e++) {
        if (!pattern_match(m->lact[e], name, idx, sizeof idx)) continue;
        if (entry) *entry = e;
        size_t at = 0;
        for (const char *p = m->file[e]; *p;) {
            const char *piece = p;
            size_t len = 1;
            if (!strncmp(p, "{i}", 3))
                piece = idx, len = strlen(idx), p += 3;
            else
                p++;
            if (at + len >= n)
                return lact_fail(LACT_E_ARG, "%s: the name '%s' maps to is too long", m->source,
                                 name);
            memcpy(buf + at, piece, len);
            at += len;
        }
        buf[at] = '\0';
        return LACT_OK;
    }
    return lact_lm_default_name(name, buf, n);
}

/* ---- problems ------------------------------------------------------------------ */

void lact_lm_problems_free(lact_lm_problems *p) {
    for (int i = 0; i < p->n; i++)
        free(p->lines[i]);
    free(p->lines);
    memset(p, 0, sizeof *p);
}

static lact_status add_problem(lact_lm_problems *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static lact_status add_problem(lact_lm_problems *p, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char **lines = realloc(p->lines, (size_t)(p->n + 1) * sizeof *lines);
    if (!lines) return lact_fail(LACT_E_NOMEM, "out of memory");
    p->lines = lines;
    if (!(p->lines[p->n] = dup_str(line))) return lact_fail(LACT_E_NOMEM, "out of memory");
    p->n++;
    return LACT_OK;
}

/* The status of a list of problems: the first line and how many more. */
static lact_status problems_status(const lact_lm_problems *p) {
    if (p->n == 0) return LACT_OK;
    if (p->n == 1) return lact_fail(LACT_E_FORMAT, "%s", p->lines[0]);
    return lact_fail(LACT_E_FORMAT, "%s (and %d more problems)", p->lines[0], p->n - 1);
}

static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
    return buf;
}

/* ---- names of the whole model ---------------------------------------------------- */

/* The file name of every parameter (names[i], FILE_NAME_MAX each), with a
 * problem for a map entry that matches nothing and for two parameters given
 * one name. */
static lact_status map_all(lact_lm *m, const lact_lm_name_map *map, const char *what, char **names,
                           lact_lm_problems *pr) {
    int np = lact_params_count(&m->params);
    bool *used = calloc((size_t)(map->n + 1), sizeof *used);
    if (!used) return lact_fail(LACT_E_NOMEM, "out of memory");
    lact_status s = LACT_OK;
    for (int i = 0; i < np && s == LACT_OK; i++) {
        int e;
        s = lact_lm_map_name(map, lact_params_at(&m->params, i)->name, names[i], FILE_NAME_MAX, &e);
        if (e >= 0) used[e] = true;
    }
    for (int i = 0; i < np && s == LACT_OK; i++)
        for (int j = 0; j < i && s == LACT_OK; j++)
            if (!strcmp(names[i], names[j]))
                s = add_problem(pr, "%s: '%s' is the name of both %s and %s", what, names[i],
                                lact_params_at(&m->params, j)->name,
                                lact_params_at(&m->params, i)->name);
    for (int e = 0; e < map->n && s == LACT_OK; e++)
        if (!used[e])
            s = add_problem(pr, "%s: map entry '%s' matches no parameter of the model", map->source,
                            map->lact[e]);
    free(used);
    return s;
}

static char **alloc_names(int n) {
    char **names = calloc((size_t)(n > 0 ? n : 1), sizeof *names);
    char *block = calloc((size_t)(n > 0 ? n : 1), FILE_NAME_MAX);
    if (!names || !block) {
        free(names);
        free(block);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        names[i] = block + (size_t)i * FILE_NAME_MAX;
    return names;
}

static void free_names(char **names) {
    if (names) free(names[0]);
    free(names);
}

/* ---- import ------------------------------------------------------------------------ */

static bool float_dtype(lact_dtype dt) {
    return dt == LACT_F32 || dt == LACT_BF16 || dt == LACT_F16 || dt == LACT_F64;
}

/* Checks each parameter's tensor and each tensor's owner; owner[j] is the
 * parameter reading tensor j of the file (-1: none), src[i] the tensor of
 * parameter i. */
static lact_status check_tensors(lact_lm *m, const lact_st_file *f, const char *path, char **names,
                                 int *src, int *owner, lact_lm_problems *pr) {
    int np = lact_params_count(&m->params);
    char a[128], b[128];
    for (int j = 0; j < f->n; j++)
        owner[j] = -1;
    for (int i = 0; i < np; i++) {
        const lact_param *p = lact_params_at(&m->params, i);
        int j = lact_st_find(f, names[i]);
        src[i] = j;
        if (j < 0) {
            LACT_TRY(add_problem(pr, "%s: missing tensor '%s' (for %s %s)", path, names[i], p->name,
                                 shape_str(p->ndim, p->shape, a, sizeof a)));
            continue;
        }
        const lact_st_entry *e = &f->entries[j];
        owner[j] = i;
        if (!float_dtype(e->dtype))
            LACT_TRY(add_problem(pr, "%s: tensor '%s' is %s, not F32, BF16, F16 or F64", path,
                                 names[i], lact_dtype_name(e->dtype)));
        else if (e->ndim != p->ndim ||
                 memcmp(e->shape, p->shape, (size_t)p->ndim * sizeof(int64_t)))
            LACT_TRY(add_problem(pr, "%s: tensor '%s' has shape %s, %s needs %s", path, names[i],
                                 shape_str(e->ndim, e->shape, a, sizeof a), p->name,
                                 shape_str(p->ndim, p->shape, b, sizeof b)));
    }
    for (int j = 0; j < f->n; j++)
        if (owner[j] < 0)
            LACT_TRY(add_problem(pr,
                                 "%s: unexpected tensor '%s' %s (no parameter of the model "
                                 "maps to it)",
                                 path, f->entries[j].name,
                                 shape_str(f->entries[j].ndim, f->entries[j].shape, a, sizeof a)));
    return LACT_OK;
}

lact_status lact_lm_import_weights(lact_lm *m, const char *path, const lact_lm_name_map *map,
                                   lact_lm_problems *pr) {
    memset(pr, 0, sizeof *pr);
    lact_lm_name_map none;
    lact_lm_name_map_init(&none);
    if (!map) map = &none;
    lact_st_file f;
    LACT_TRY(lact_st_open(&f, path));
    int np = lact_params_count(&m->params);
    char **names = alloc_names(np);
    int *src = malloc((size_t)(np + 1) * sizeof *src);
    int *owner = malloc((size_t)(f.n + 1) * sizeof *owner);
    lact_status s = names && src && owner ? LACT_OK : lact_fail(LACT_E_NOMEM, "out of memory");
    if (s == LACT_OK) s = map_all(m, map, path, names, pr);
    if (s == LACT_OK) s = check_tensors(m, &f, path, names, src, owner, pr);
    if (s == LACT_OK) s = problems_status(pr);
    for (int i = 0; i < np && s == LACT_OK; i++) {
        lact_param *p = lact_params_at(&m->params, i);
        lact_tensor v = lact_st_view(&f, src[i]);
        s = lact_tensor_copy(&p->w, &v);
        if (s != LACT_OK) s = lact_fail_context(s, "%s: tensor '%s'", path, names[i]);
    }
    free(owner);
    free(src);
    free_names(names);
    lact_st_close(&f);
    return s;
}

/* ---- checkpoints ---------------------------------------------------------------------- */

/* The training state of a checkpoint at step 0 (the trainer's format). */
static char *import_state(const lact_lm_run_cfg *cfg, const char *source) {
    int nf;
    const lact_cfg_field *fields = lact_lm_run_fields(&nf);
    char *cfg_text = lact_config_to_json(fields, nf, cfg);
    cJSON *root = cJSON_CreateObject();
    cJSON *c = cfg_text ? cJSON_Parse(cfg_text) : NULL;
    free(cfg_text);
    cJSON *loader = root ? cJSON_AddObjectToObject(root, "loader") : NULL;
    if (!root || !c || !loader) {
        cJSON_Delete(root);
        cJSON_Delete(c);
        return NULL;
    }
    cJSON_AddStringToObject(root, "format", "lact.lm.train");
    cJSON_AddRawToObject(root, "step", "0");
    cJSON_AddRawToObject(root, "tokens", "0");
    cJSON_AddRawToObject(loader, "epoch", "0");
    cJSON_AddRawToObject(loader, "shard", "0");
    cJSON_AddRawToObject(loader, "window", "0");
    cJSON_AddStringToObject(root, "imported_from", source);
    cJSON_AddItemToObject(root, "config", c);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

lact_status lact_lm_import_save(lact_lm *m, const lact_lm_run_cfg *cfg, const char *path,
                                const char *source) {
    lact_params *p = &m->params;
    int np = lact_params_count(p), n = 3 * np;
    if (p->device != LACT_CPU) return lact_fail(LACT_E_ARG, "import: the model must be on the CPU");
    /* The moments are all zero: one zero block serves every view. */
    int64_t most = 1;
    for (int i = 0; i < np; i++)
        if (lact_tensor_numel(&lact_params_at(p, i)->w) > most)
            most = lact_tensor_numel(&lact_params_at(p, i)->w);
    char **names = alloc_names(n);
    lact_tensor *ts = calloc((size_t)n, sizeof *ts);
    float *zeros = calloc((size_t)most, sizeof *zeros);
    char *state = import_state(cfg, source);
    lact_status s =
        names && ts && zeros && state ? LACT_OK : lact_fail(LACT_E_NOMEM, "import: out of memory");
    static const char *const pre[3] = {"", "optim.m.", "optim.v."};
    for (int k = 0; k < 3 && s == LACT_OK; k++)
        for (int i = 0; i < np; i++) {
            const lact_param *it = lact_params_at(p, i);
            snprintf(names[k * np + i], FILE_NAME_MAX, "%s%s", pre[k], it->name);
            ts[k * np + i] =
                k == 0 ? it->w : lact_tensor_view(zeros, LACT_F32, LACT_CPU, it->ndim, it->shape);
        }
    if (s == LACT_OK) s = lact_checkpoint_save(path, n, (const char *const *)names, ts, state);
    free(state);
    free(zeros);
    free(ts);
    free_names(names);
    return s;
}

lact_status lact_lm_export_weights(lact_lm *m, const char *path, const lact_lm_name_map *map,
                                   lact_dtype dtype) {
    if (dtype != LACT_F32 && dtype != LACT_BF16 && dtype != LACT_F16)
        return lact_fail(LACT_E_ARG, "export: dtype %s (F32, BF16 or F16)", lact_dtype_name(dtype));
    lact_lm_name_map none;
    lact_lm_name_map_init(&none);
    if (!map) map = &none;
    lact_params *p = &m->params;
    int np = lact_params_count(p);
    char **names = alloc_names(np);
    lact_tensor *ts = calloc((size_t)(np > 0 ? np : 1), sizeof *ts);
    lact_lm_problems pr = {0};
    lact_status s = names && ts ? LACT_OK : lact_fail(LACT_E_NOMEM, "export: out of memory");
    if (s == LACT_OK) s = map_all(m, map, path, names, &pr);
    if (s == LACT_OK) s = problems_status(&pr);
    int made = 0;
    for (; made < np && s == LACT_OK; made++)
        s = lact_tensor_clone(&ts[made], &lact_params_at(p, made)->w, dtype, LACT_CPU);
    const char *keys[1] = {"format"}, *values[1] = {"pt"};
    if (s == LACT_OK) s = lact_st_write(path, np, (const char *const *)names, ts, 1, keys, values);
    for (int i = 0; i < made; i++)
        lact_tensor_free(&ts[i]);
    lact_lm_problems_free(&pr);
    free(ts);
    free_names(names);
    return s;
}

lact_status lact_lm_load_weights(lact_lm *m, const char *path) {
    int n = lact_params_count(&m->params);
    const char **names = malloc((size_t)(n > 0 ? n : 1) * sizeof *names);
    lact_tensor *ts = malloc((size_t)(n > 0 ? n : 1) * sizeof *ts);
    lact_status s = names && ts ? LACT_OK : lact_fail(LACT_E_NOMEM, "out of memory");
    for (int i = 0; i < n && s == LACT_OK; i++) {
        names[i] = lact_params_at(&m->params, i)->name;
        ts[i] = lact_params_at(&m->params, i)->w;
    }
    if (s == LACT_OK) s = lact_checkpoint_load(path, n, names, ts, NULL);
    free(names);
    free(ts);
    return s;
}
