#define _POSIX_C_SOURCE 200809L

#include "config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

#define CFG_KEY_MAX 256

static const char *type_name(lact_cfg_type t) {
    switch (t) {
    case LACT_CFG_INT:
        return "an integer";
    case LACT_CFG_FLOAT:
        return "a number";
    case LACT_CFG_BOOL:
        return "true or false";
    default:
        return "a string";
    }
}

static const lact_cfg_field *find_field(const lact_cfg_field *fields, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (strcmp(fields[i].key, key) == 0) return &fields[i];
    return NULL;
}

/* True when some field lives under "prefix." */
static bool is_section(const lact_cfg_field *fields, int n, const char *prefix) {
    size_t len = strlen(prefix);
    for (int i = 0; i < n; i++)
        if (strncmp(fields[i].key, prefix, len) == 0 && fields[i].key[len] == '.') return true;
    return false;
}

/* Edit distance, capped: enough to suggest the key a typo meant. */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 99;
    int row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static lact_status unknown_key(const char *source, const char *key, const lact_cfg_field *fields,
                               int n) {
    const char *best = NULL;
    int best_d = 3;
    for (int i = 0; i < n; i++) {
        int d = edit_distance(key, fields[i].key);
        if (d < best_d) {
            best_d = d;
            best = fields[i].key;
        }
    }
    if (best)
        return lact_fail(LACT_E_ARG, "%s: unknown key '%s' (did you mean '%s'?)", source, key,
                         best);
    return lact_fail(LACT_E_ARG, "%s: unknown key '%s'", source, key);
}

static lact_status set_string(const char *source, const lact_cfg_field *f, void *out,
                              const char *s) {
    size_t len = strlen(s);
    if (f->size == 0 || len >= f->size)
        return lact_fail(LACT_E_ARG, "%s: key '%s': string is %zu characters (at most %zu)", source,
                         f->key, len, f->size ? f->size - 1 : 0);
    memcpy((char *)out + f->offset, s, len + 1);
    return LACT_OK;
}

static const char *json_kind(const cJSON *v) {
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    return "an object";
}

static lact_status set_from_json(const char *source, const lact_cfg_field *f, void *out,
                                 const cJSON *v) {
    char *dst = (char *)out + f->offset;
    switch (f->type) {
    case LACT_CFG_INT: {
        if (!cJSON_IsNumber(v)) break;
        double d = v->valuedouble;
        if (d != floor(d) || !(d >= -9.2233720368547758e18 && d < 9.2233720368547758e18))
            return lact_fail(LACT_E_ARG, "%s: key '%s' must be an integer (got %g)", source, f->key,
                             d);
        int64_t i = (int64_t)d;
        memcpy(dst, &i, sizeof i);
        return LACT_OK;
    }
    case LACT_CFG_FLOAT: {
        if (!cJSON_IsNumber(v)) break;
        double d = v->valuedouble;
        memcpy(dst, &d, sizeof d);
        return LACT_OK;
    }
    case LACT_CFG_BOOL: {
        if (!cJSON_IsBool(v)) break;
        bool b = cJSON_IsTrue(v);
        memcpy(dst, &b, sizeof b);
        return LACT_OK;
    }
    case LACT_CFG_STRING:
        if (!cJSON_IsString(v)) break;
        return set_string(source, f, out, v->valuestring);
    }
    return lact_fail(LACT_E_ARG, "%s: key '%s' must be %s, got %s", source, f->key,
                     type_name(f->type), json_kind(v));
}

static lact_status apply_object(const char *source, const char *prefix, const cJSON *obj,
                                const lact_cfg_field *fields, int n, void *out) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        char key[CFG_KEY_MAX];
        int len = prefix[0] ? snprintf(key, sizeof key, "%s.%s", prefix, it->string)
                            : snprintf(key, sizeof key, "%s", it->string);
        if (len < 0 || (size_t)len >= sizeof key)
            return lact_fail(LACT_E_ARG, "%s: key '%.64s...' is too long", source, key);
        const lact_cfg_field *f = find_field(fields, n, key);
        if (f) {
            LACT_TRY(set_from_json(source, f, out, it));
        } else if (cJSON_IsObject(it) && is_section(fields, n, key)) {
            LACT_TRY(apply_object(source, key, it, fields, n, out));
        } else if (is_section(fields, n, key)) {
            return lact_fail(LACT_E_ARG, "%s: key '%s' must be an object (a section), got %s",
                             source, key, json_kind(it));
        } else {
            return unknown_key(source, key, fields, n);
        }
    }
    return LACT_OK;
}

lact_status lact_config_parse(const char *json, const char *source, const lact_cfg_field *fields,
                              int n_fields, void *out) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
    if (!root) {
        /* Point at the line where parsing stopped. */
        int line = 1;
        const char *stop = cJSON_GetErrorPtr();
        for (const char *p = json; stop && p < stop && *p; p++)
            line += *p == '\n';
        return lact_fail(LACT_E_FORMAT, "%s: not valid JSON (near line %d)", source, line);
    }
    lact_status s = LACT_OK;
    if (!cJSON_IsObject(root))
        s = lact_fail(LACT_E_FORMAT, "%s: a config must be a JSON object", source);
    else
        s = apply_object(source, "", root, fields, n_fields, out);
    cJSON_Delete(root);
    return s;
}

lact_status lact_config_load(const char *path, const lact_cfg_field *fields, int n_fields,
                             void *out) {
    char *text = NULL;
    LACT_TRY(lact_file_read(path, &text, NULL));
    lact_status s = lact_config_parse(text, path, fields, n_fields, out);
    free(text);
    return s;
}

static bool parse_bool(const char *s, bool *out) {
    if (!strcmp(s, "true") || !strcmp(s, "1"))
        *out = true;
    else if (!strcmp(s, "false") || !strcmp(s, "0"))
        *out = false;
    else
        return false;
    return true;
}

lact_status lact_config_set(const char *assignment, const lact_cfg_field *fields, int n_fields,
                            void *out) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return lact_fail(LACT_E_ARG, "--set %s: expected key=value", assignment);
    char key[CFG_KEY_MAX];
    size_t klen = (size_t)(eq - assignment);
    if (klen >= sizeof key) return lact_fail(LACT_E_ARG, "--set: key is too long");
    memcpy(key, assignment, klen);
    key[klen] = '\0';
    const char *value = eq + 1;
    const lact_cfg_field *f = find_field(fields, n_fields, key);
    if (!f) return unknown_key("--set", key, fields, n_fields);
    char *dst = (char *)out + f->offset;
    char *end = NULL;
    errno = 0;
    switch (f->type) {
    case LACT_CFG_INT: {
        long long v = strtoll(value, &end, 10);
        if (!value[0] || *end || errno)
            return lact_fail(LACT_E_ARG, "--set %s: '%s' is not an integer", key, value);
        int64_t i = v;
        memcpy(dst, &i, sizeof i);
        return LACT_OK;
    }
    case LACT_CFG_FLOAT: {
        double d = strtod(value, &end);
        if (!value[0] || *end || errno || !isfinite(d))
            return lact_fail(LACT_E_ARG, "--set %s: '%s' is not a finite number", key, value);
        memcpy(dst, &d, sizeof d);
        return LACT_OK;
    }
    case LACT_CFG_BOOL: {
        bool b;
        if (!parse_bool(value, &b))
            return lact_fail(LACT_E_ARG, "--set %s: '%s' is not true, false, 1 or 0", key, value);
        memcpy(dst, &b, sizeof b);
        return LACT_OK;
    }
    case LACT_CFG_STRING:
        return set_string("--set", f, out, value);
    }
    return lact_fail(LACT_E_ARG, "--set %s: field has an unknown type", key);
}

/* The object that holds the last component of key, made as needed. */
static cJSON *section_for(cJSON *root, const char *key, const char **leaf) {
    cJSON *obj = root;
    const char *part = key;
    for (const char *dot; (dot = strchr(part, '.')) != NULL; part = dot + 1) {
        char name[CFG_KEY_MAX];
        size_t len = (size_t)(dot - part);
        if (len >= sizeof name) return NULL;
        memcpy(name, part, len);
        name[len] = '\0';
        cJSON *next = cJSON_GetObjectItemCaseSensitive(obj, name);
        if (!next) next = cJSON_AddObjectToObject(obj, name);
        if (!cJSON_IsObject(next)) return NULL;
        obj = next;
    }
    *leaf = part;
    return obj;
}

char *lact_config_to_json(const lact_cfg_field *fields, int n_fields, const void *in) {
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    for (int i = 0; ok && i < n_fields; i++) {
        const lact_cfg_field *f = &fields[i];
        const char *src = (const char *)in + f->offset;
        const char *leaf = NULL;
        cJSON *obj = section_for(root, f->key, &leaf);
        if (!obj) {
            ok = false;
            break;
        }
        switch (f->type) {
        case LACT_CFG_INT: {
            int64_t v;
            memcpy(&v, src, sizeof v);
            char num[32];
            snprintf(num, sizeof num, "%lld", (long long)v); /* exact beyond 2^53 */
            ok = cJSON_AddRawToObject(obj, leaf, num) != NULL;
            break;
        }
        case LACT_CFG_FLOAT: {
            double v;
            memcpy(&v, src, sizeof v);
            ok = cJSON_AddNumberToObject(obj, leaf, v) != NULL;
            break;
        }
        case LACT_CFG_BOOL: {
            bool v;
            memcpy(&v, src, sizeof v);
            ok = cJSON_AddBoolToObject(obj, leaf, v) != NULL;
            break;
        }
        case LACT_CFG_STRING: {
            /* Bounded: a string field need not be terminated if never set. */
            char buf[1024];
            size_t n = f->size < sizeof buf ? f->size : sizeof buf;
            size_t len = n ? strnlen(src, n - 1) : 0;
            memcpy(buf, src, len);
            buf[len] = '\0';
            ok = cJSON_AddStringToObject(obj, leaf, buf) != NULL;
            break;
        }
        }
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    return text;
}
