#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/device.h"
#include "core/base/tensor.h"
#include "core/io/safetensors.h"
#include "tests/support/check.h"

static char dir[] = "/tmp/lact_st_XXXXXX";

static const char *path_in(const char *name) {
    static char buf[320];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static void remove_dir(void) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) remove(path_in(e->d_name));
    closedir(d);
    rmdir(dir);
}

static int count_files(void) {
    int n = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Writes an 8-byte length (hlen, or strlen(json) when hlen is 0), the JSON and
 * data_bytes bytes of data. */
static const char *write_raw(const char *name, const char *json, unsigned long long hlen,
                             size_t data_bytes) {
    const char *path = path_in(name);
    FILE *fp = fopen(path, "wb");
    if (!fp) return path;
    if (!hlen) hlen = strlen(json);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(hlen >> (8 * i));
    fwrite(len, 1, 8, fp);
    fwrite(json, 1, strlen(json), fp);
    for (size_t i = 0; i < data_bytes; i++)
        fputc((int)(i * 7 & 0xff), fp);
    fclose(fp);
    return path;
}

/* Fills t with a pattern that differs per tensor and per element. */
static void fill(lact_tensor *t, int salt) {
    int64_t n = lact_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = (double)((i * 37 + salt * 11) % 101) - 50.0;
        switch (t->dtype) {
        case LACT_F32:
            ((float *)t->data)[i] = (float)(v * 0.25);
            break;
        case LACT_BF16:
            ((uint16_t *)t->data)[i] = lact_f32_to_bf16((float)v);
            break;
        case LACT_F16:
            ((uint16_t *)t->data)[i] = lact_f32_to_f16((float)(v * 0.5));
            break;
        case LACT_I32:
            ((int32_t *)t->data)[i] = (int32_t)v * 1000;
            break;
        case LACT_U8:
            ((uint8_t *)t->data)[i] = (uint8_t)(v + 50);
            break;
        case LACT_F64:
            ((double *)t->data)[i] = v / 3.0;
            break;
        case LACT_I64:
            ((int64_t *)t->data)[i] = (int64_t)v * ((int64_t)1 << 40);
            break;
        default:
            break;
        }
    }
}

static void test_round_trip(void) {
    enum { N = 10 };
    const char *names[N] = {"u8.bytes", "f32.w", "bf16.w", "f16.w",  "i32.idx",
                            "f64.x",    "i64.y", "scalar", "five_d", "empty"};
    lact_dtype dts[N] = {LACT_U8,  LACT_F32, LACT_BF16, LACT_F16,  LACT_I32,
                         LACT_F64, LACT_I64, LACT_F32,  LACT_BF16, LACT_F32};
    int ndims[N] = {1, 2, 3, 1, 2, 2, 1, 0, 5, 2};
    int64_t shapes[N][5] = {{13}, {4, 8}, {2, 3, 5},       {7},   {3, 3}, {2, 2},
                            {5},  {0},    {2, 1, 3, 1, 2}, {0, 4}};
    lact_tensor ts[N];
    for (int i = 0; i < N; i++) {
        CHECK_OK(lact_tensor_alloc(&ts[i], dts[i], LACT_CPU, ndims[i], shapes[i]));
        fill(&ts[i], i);
    }
    const char *mk[2] = {"format", "note"}, *mv[2] = {"pt", "quote \" and unicode \xc3\xa9"};
    char path[320];
    snprintf(path, sizeof path, "%s", path_in("all.safetensors"));
    CHECK_OK(lact_st_write(path, N, names, ts, 2, mk, mv));
    CHECK(count_files() == 1); /* no temporary left behind */

    lact_st_file f;
    CHECK_OK(lact_st_open(&f, path));
    CHECK(f.n == N && f.n_meta == 2);
    CHECK(lact_st_meta(&f, "note") && strcmp(lact_st_meta(&f, "note"), mv[1]) == 0);
    CHECK(lact_st_meta(&f, "format") && strcmp(lact_st_meta(&f, "format"), "pt") == 0);
    CHECK(lact_st_meta(&f, "missing") == NULL);
    /* The data section starts 8-aligned and the tensors tile it with no gaps,
     * each at a multiple of its element size. */
    CHECK(((uintptr_t)f.data) % 8 == 0);
    size_t expect = 0;
    for (int i = 0; i < f.n; i++) {
        CHECK(f.entries[i].offset == expect);
        CHECK(f.entries[i].offset % lact_dtype_size(f.entries[i].dtype) == 0);
        expect += f.entries[i].nbytes;
    }
    CHECK((size_t)((const uint8_t *)f.map + f.map_bytes - f.data) == expect);
    for (int i = 0; i < N; i++) {
        lact_tensor v;
        CHECK_OK(lact_st_get(&f, names[i], &v));
        CHECK(v.dtype == dts[i] && v.device == LACT_CPU && lact_tensor_same_shape(&v, &ts[i]));
        CHECK_MSG(memcmp(v.data, ts[i].data, lact_tensor_nbytes(&ts[i])) == 0,
                  "tensor %s differs after the round trip", names[i]);
    }
    lact_tensor v;
    CHECK_FAILS(lact_st_get(&f, "nope", &v), LACT_E_NOT_FOUND);
    CHECK(strstr(lact_errmsg(), "nope") && strstr(lact_errmsg(), "all.safetensors"));
    lact_st_close(&f);
    lact_st_close(&f); /* safe twice */

    /* Writing again over the same name replaces the file. */
    CHECK_OK(lact_st_write(path, 1, names, ts, 0, NULL, NULL));
    CHECK_OK(lact_st_open(&f, path));
    CHECK(f.n == 1 && f.n_meta == 0);
    lact_st_close(&f);

    const char *dup[2] = {"a", "a"};
    CHECK_FAILS(lact_st_write(path_in("dup.safetensors"), 2, dup, ts, 0, NULL, NULL), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "'a'") != NULL);
    const char *meta_name[1] = {"__metadata__"};
    CHECK_FAILS(lact_st_write(path_in("m.safetensors"), 1, meta_name, ts, 0, NULL, NULL),
                LACT_E_ARG);
    lact_tensor strided = ts[1];
    strided.stride[0] = 16;
    CHECK_FAILS(lact_st_write(path_in("s.safetensors"), 1, names, &strided, 0, NULL, NULL),
                LACT_E_ARG);
    CHECK_FAILS(lact_st_write("/nonexistent-dir/x.safetensors", 1, names, ts, 0, NULL, NULL),
                LACT_E_IO);
    CHECK(count_files() == 1);
    for (int i = 0; i < N; i++)
        lact_tensor_free(&ts[i]);
}

static void test_unaligned(void) {
    /* A 3-byte header puts the data at offset 11; floats must still read. */
    char json[96];
    snprintf(json, sizeof json, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}");
    char path[320];
    snprintf(path, sizeof path, "%s", path_in("unaligned.safetensors"));
    FILE *fp = fopen(path, "wb");
    unsigned long long hlen = strlen(json);
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(hlen >> (8 * i));
    float vals[2] = {1.5f, -2.25f};
    CHECK(fp && fwrite(len, 1, 8, fp) == 8 && fwrite(json, 1, hlen, fp) == hlen &&
          fwrite(vals, 1, 8, fp) == 8);
    if (fp) fclose(fp);
    lact_st_file f;
    CHECK_OK(lact_st_open(&f, path));
    lact_tensor v;
    CHECK_OK(lact_st_get(&f, "w", &v));
    CHECK(((uintptr_t)v.data) % 4 == 0);
    CHECK(v.data && ((float *)v.data)[0] == 1.5f && ((float *)v.data)[1] == -2.25f);
    lact_st_close(&f);
}

static void expect_bad(const char *name, const char *path, lact_status code, const char *needle) {
    lact_st_file f;
    lact_clear_error();
    lact_status s = lact_st_open(&f, path);
    CHECK_MSG(s == code, "%s: got %s (%s), expected %s", name, lact_status_name(s), lact_errmsg(),
              lact_status_name(code));
    CHECK_MSG(strstr(lact_errmsg(), needle) != NULL, "%s: message '%s' lacks '%s'", name,
              lact_errmsg(), needle);
    CHECK_MSG(strchr(lact_errmsg(), '\n') == NULL, "%s: message has more than one line", name);
    CHECK(f.map == NULL && f.entries == NULL && f.path == NULL);
}

static void test_malformed(void) {
    const char *w = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4,8],\"data_offsets\":[0,128]}}";
    expect_bad("missing", path_in("missing.safetensors"), LACT_E_NOT_FOUND, "missing.safetensors");
    FILE *fp = fopen(path_in("empty.safetensors"), "wb");
    if (fp) fclose(fp);
    expect_bad("empty", path_in("empty.safetensors"), LACT_E_FORMAT, "too short");
    expect_bad("header past end", write_raw("long.safetensors", w, 1000000, 128), LACT_E_FORMAT,
               "header length 1000000");
    /* A good header whose data was cut short. */
    expect_bad("truncated", write_raw("trunc.safetensors", w, 0, 100), LACT_E_FORMAT,
               "outside the data section");
    expect_bad("not json", write_raw("nj.safetensors", "{\"w\": [1, 2", 0, 0), LACT_E_FORMAT,
               "not valid JSON");
    expect_bad("not object", write_raw("arr.safetensors", "[1, 2]", 0, 0), LACT_E_FORMAT,
               "not a JSON object");
    expect_bad("dtype",
               write_raw("dt.safetensors",
                         "{\"w\":{\"dtype\":\"F8_E5M2\",\"shape\":[2],\"data_offsets\":[0,2]}}", 0,
                         2),
               LACT_E_FORMAT, "unsupported dtype 'F8_E5M2'");
    expect_bad("range",
               write_raw("range.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 0,
                         16),
               LACT_E_FORMAT, "data_offsets [16, 32]");
    expect_bad("size mismatch",
               write_raw("size.safetensors",
                         "{\"w\":{\"dtype\":\"F32\",\"shape\":[4,8],\"data_offsets\":[0,96]}}", 0,
                         128),
               LACT_E_FORMAT,
               "tensor 'w': data_offsets [0, 96] do not match shape [4, 8] F32 (128 bytes)");
    expect_bad("overlap",
               write_raw("overlap.safetensors",
                         "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                         0, 16),
               LACT_E_FORMAT, "overlap");
    expect_bad(
        "dims",
        write_raw("dims.safetensors",
                  "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,2],\"data_offsets\":[0,2]}}", 0,
                  2),
        LACT_E_FORMAT, "6 dims");
    expect_bad("negative dim",
               write_raw("neg.safetensors",
                         "{\"w\":{\"dtype\":\"U8\",\"shape\":[-2],\"data_offsets\":[0,2]}}", 0, 2),
               LACT_E_FORMAT, "shape entry 0");
    expect_bad("fractional offset",
               write_raw("frac.safetensors",
                         "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2.5]}}", 0, 3),
               LACT_E_FORMAT, "data_offsets must be");
    expect_bad("missing field",
               write_raw("field.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[2]}}", 0, 2),
               LACT_E_FORMAT, "data_offsets");
    expect_bad("metadata not strings",
               write_raw("meta.safetensors", "{\"__metadata__\":{\"step\":3}}", 0, 0),
               LACT_E_FORMAT, "__metadata__");
    expect_bad("duplicate",
               write_raw("twice.safetensors",
                         "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                         "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                         0, 2),
               LACT_E_FORMAT, "twice");
    /* Headers that are fine: zero tensors, and a 0-d tensor. */
    lact_st_file f;
    CHECK_OK(lact_st_open(&f, write_raw("none.safetensors", "{}", 0, 0)));
    CHECK(f.n == 0);
    lact_st_close(&f);
    CHECK_OK(lact_st_open(&f, write_raw("zero_d.safetensors",
                                        "{\"s\":{\"dtype\":\"F64\",\"shape\":[],"
                                        "\"data_offsets\":[0,8]}}",
                                        0, 8)));
    CHECK(f.n == 1 && f.entries[0].ndim == 0 && f.entries[0].nbytes == 8);
    lact_st_close(&f);
}

/* The pattern scripts/ref/safetensors_check.py writes: tensor k of the list
 * holds (7 i + 3 k) % 23 - 11 at flat index i (without the - 11 for U8). */
static const struct {
    const char *name;
    lact_dtype dtype;
    int ndim;
    int64_t shape[5];
} pattern[] = {
    {"f32", LACT_F32, 2, {3, 4}},
    {"f64", LACT_F64, 1, {5}},
    {"f16", LACT_F16, 2, {2, 3}},
    {"bf16", LACT_BF16, 2, {4, 2}},
    {"i32", LACT_I32, 1, {7}},
    {"i64", LACT_I64, 2, {2, 2}},
    {"u8", LACT_U8, 1, {9}},
    {"scalar", LACT_F32, 0, {0}},
    {"five_d", LACT_F32, 5, {2, 1, 2, 1, 3}},
    {"empty", LACT_F32, 2, {0, 3}},
};

/* Reads a file the reference package wrote (LACT_ST_REF_FILE), checks the
 * pattern, and writes it back (LACT_ST_REF_OUT) for the script to verify. */
static void test_reference_file(void) {
    const char *in = getenv("LACT_ST_REF_FILE"), *out = getenv("LACT_ST_REF_OUT");
    if (!in) return;
    lact_st_file f;
    CHECK_OK(lact_st_open(&f, in));
    if (!f.map) return;
    int n = (int)(sizeof pattern / sizeof pattern[0]), found = 0;
    for (int k = 0; k < n; k++) {
        lact_tensor v;
        if (lact_st_get(&f, pattern[k].name, &v) != LACT_OK) {
            /* numpy alone cannot write bf16, so the script may leave it out */
            CHECK_MSG(pattern[k].dtype == LACT_BF16, "%s: missing %s", in, pattern[k].name);
            continue;
        }
        found++;
        lact_tensor want =
            lact_tensor_view(NULL, pattern[k].dtype, LACT_CPU, pattern[k].ndim, pattern[k].shape);
        CHECK_MSG(v.dtype == want.dtype && lact_tensor_same_shape(&v, &want),
                  "%s: tensor %s has the wrong dtype or shape", in, pattern[k].name);
        if (v.dtype != want.dtype || !lact_tensor_same_shape(&v, &want)) continue;
        lact_tensor as_f64, as_i64;
        bool is_float = lact_dtype_is_float(v.dtype);
        CHECK_OK(lact_tensor_clone(is_float ? &as_f64 : &as_i64, &v, is_float ? LACT_F64 : LACT_I64,
                                   LACT_CPU));
        int bad = 0;
        for (int64_t i = 0; i < lact_tensor_numel(&v); i++) {
            int64_t expect = (7 * i + 3 * k) % 23 - (v.dtype == LACT_U8 ? 0 : 11);
            double got =
                is_float ? ((double *)as_f64.data)[i] : (double)((int64_t *)as_i64.data)[i];
            bad += got != (double)expect;
        }
        CHECK_MSG(bad == 0, "%s: tensor %s: %d values differ from the pattern", in, pattern[k].name,
                  bad);
        lact_tensor_free(is_float ? &as_f64 : &as_i64);
    }
    CHECK(found == f.n);
    CHECK(lact_st_meta(&f, "source") &&
          strcmp(lact_st_meta(&f, "source"), "safetensors_check.py") == 0);
    if (out) {
        const char **names = calloc((size_t)f.n + 1, sizeof *names);
        lact_tensor *ts = calloc((size_t)f.n + 1, sizeof *ts);
        for (int i = 0; names && ts && i < f.n; i++) {
            names[i] = f.entries[i].name;
            ts[i] = lact_st_view(&f, i);
        }
        CHECK_OK(lact_st_write(out, f.n, names, ts, f.n_meta, f.meta_keys, f.meta_values));
        free(names);
        free(ts);
    }
    lact_st_close(&f);
}

/* Tensors on the GPU are written through a host copy. */
static void test_gpu_write(void) {
    if (!lact_cuda_available()) return;
    int64_t shape[2] = {3, 5};
    lact_tensor h, d, hb;
    CHECK_OK(lact_tensor_alloc(&h, LACT_F32, LACT_CPU, 2, shape));
    fill(&h, 3);
    CHECK_OK(lact_tensor_clone(&d, &h, LACT_BF16, LACT_CUDA));
    CHECK_OK(lact_tensor_clone(&hb, &h, LACT_BF16, LACT_CPU));
    const char *names[2] = {"gpu", "cpu"};
    lact_tensor ts[2] = {d, h};
    char path[320];
    snprintf(path, sizeof path, "%s", path_in("gpu.safetensors"));
    CHECK_OK(lact_st_write(path, 2, names, ts, 0, NULL, NULL));
    lact_st_file f;
    lact_tensor v;
    CHECK_OK(lact_st_open(&f, path));
    CHECK_OK(lact_st_get(&f, "gpu", &v));
    CHECK(v.dtype == LACT_BF16 && memcmp(v.data, hb.data, lact_tensor_nbytes(&hb)) == 0);
    lact_st_close(&f);
    lact_tensor_free(&h);
    lact_tensor_free(&d);
    lact_tensor_free(&hb);
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_unaligned();
    test_gpu_write();
    test_malformed();
    test_reference_file();
    remove_dir();
    return check_summary("io_safetensors");
}
