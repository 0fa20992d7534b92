#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/io/checkpoint.h"
#include "core/io/file.h"
#include "core/io/safetensors.h"
#include "tests/support/check.h"

static char dir[] = "/tmp/lact_ckpt_XXXXXX";

static const char *path_in(const char *name) {
    static char buf[320];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

/* Names in the directory, space separated, and their count. */
static int list_dir(char *out, size_t n) {
    int count = 0;
    out[0] = '\0';
    DIR *d = opendir(dir);
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        count++;
        strncat(out, e->d_name, n - strlen(out) - 2);
        strcat(out, " ");
    }
    closedir(d);
    return count;
}

static void remove_dir(void) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.') remove(path_in(e->d_name));
    closedir(d);
    rmdir(dir);
}

static void test_checkpoint(void) {
    int64_t s1[2] = {3, 4}, s2[1] = {5}, s3[1] = {2};
    lact_tensor w, b, step;
    CHECK_OK(lact_tensor_alloc(&w, LACT_F32, LACT_CPU, 2, s1));
    CHECK_OK(lact_tensor_alloc(&b, LACT_BF16, LACT_CPU, 1, s2));
    CHECK_OK(lact_tensor_alloc(&step, LACT_I64, LACT_CPU, 1, s3));
    for (int i = 0; i < 12; i++)
        ((float *)w.data)[i] = 0.1f * (float)i - 0.5f;
    for (int i = 0; i < 5; i++)
        ((uint16_t *)b.data)[i] = lact_f32_to_bf16((float)i + 0.5f);
    ((int64_t *)step.data)[1] = 123456789012345ll;
    const char *names[3] = {"layer.w", "layer.b", "opt.step"};
    lact_tensor src[3] = {w, b, step};
    const char *state = "{\"step\": 17, \"data_pos\": 4096, \"rng\": [1, 2]}";
    char path[320];
    snprintf(path, sizeof path, "%s", path_in("model.safetensors"));
    CHECK_OK(lact_checkpoint_save(path, 3, names, src, state));
    char listing[512];
    CHECK_MSG(list_dir(listing, sizeof listing) == 1, "directory holds: %s", listing);
    CHECK(strstr(listing, ".tmp.") == NULL);

    /* Load with other dtypes: weights as bf16, bias as f32, step as i32. */
    lact_tensor w2, b2, step2;
    CHECK_OK(lact_tensor_alloc(&w2, LACT_BF16, LACT_CPU, 2, s1));
    CHECK_OK(lact_tensor_alloc(&b2, LACT_F32, LACT_CPU, 1, s2));
    CHECK_OK(lact_tensor_alloc(&step2, LACT_I64, LACT_CPU, 1, s3));
    lact_tensor dst[3] = {w2, b2, step2};
    char *state_back = NULL;
    CHECK_OK(lact_checkpoint_load(path, 3, names, dst, &state_back));
    CHECK(state_back && strcmp(state_back, state) == 0);
    free(state_back);
    int bad = 0;
    for (int i = 0; i < 12; i++)
        bad += ((uint16_t *)w2.data)[i] != lact_f32_to_bf16(((float *)w.data)[i]);
    for (int i = 0; i < 5; i++)
        bad += ((float *)b2.data)[i] != (float)i + 0.5f;
    bad += ((int64_t *)step2.data)[1] != 123456789012345ll;
    CHECK(bad == 0);

    /* The metadata is visible to any safetensors reader. */
    lact_st_file f;
    CHECK_OK(lact_st_open(&f, path));
    CHECK(lact_st_meta(&f, "lact.state") && lact_st_meta(&f, "format"));
    lact_st_close(&f);

    /* Saving without state, over the old file. */
    CHECK_OK(lact_checkpoint_save(path, 1, names, src, NULL));
    state_back = (char *)"sentinel";
    CHECK_OK(lact_checkpoint_load(path, 1, names, dst, &state_back));
    CHECK(state_back == NULL);
    CHECK(list_dir(listing, sizeof listing) == 1);

    CHECK_FAILS(lact_checkpoint_load(path, 2, names, dst, NULL), LACT_E_NOT_FOUND);
    CHECK(strstr(lact_errmsg(), "layer.b") != NULL);
    lact_tensor wrong;
    int64_t s4[2] = {4, 3};
    CHECK_OK(lact_tensor_alloc(&wrong, LACT_F32, LACT_CPU, 2, s4));
    CHECK_FAILS(lact_checkpoint_load(path, 1, names, &wrong, NULL), LACT_E_FORMAT);
    CHECK(strstr(lact_errmsg(), "[3, 4]") && strstr(lact_errmsg(), "[4, 3]"));
    lact_tensor as_int;
    CHECK_OK(lact_tensor_alloc(&as_int, LACT_I32, LACT_CPU, 2, s1));
    CHECK_FAILS(lact_checkpoint_load(path, 1, names, &as_int, NULL), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "layer.w") != NULL);
    CHECK_FAILS(lact_checkpoint_load(path_in("none.safetensors"), 1, names, dst, NULL),
                LACT_E_NOT_FOUND);

    /* A failed save leaves neither a temporary nor a changed file. */
    const char *dup[2] = {"x", "x"};
    CHECK(lact_checkpoint_save(path_in("bad.safetensors"), 2, dup, src, NULL) != LACT_OK);
    CHECK(list_dir(listing, sizeof listing) == 1);

    lact_tensor *all[] = {&w, &b, &step, &w2, &b2, &step2, &wrong, &as_int};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        lact_tensor_free(all[i]);
    remove(path);
}

static void test_atomic_file(void) {
    char listing[512];
    char path[320];
    snprintf(path, sizeof path, "%s", path_in("notes.txt"));
    CHECK_OK(lact_file_write_atomic(path, "hello\n", 6));
    char *text = NULL;
    size_t size = 0;
    CHECK_OK(lact_file_read(path, &text, &size));
    CHECK(text && size == 6 && strcmp(text, "hello\n") == 0);
    free(text);

    lact_atomic_file af;
    CHECK_OK(lact_atomic_open(&af, path));
    CHECK_OK(lact_atomic_write(&af, "partial", 7));
    CHECK_MSG(list_dir(listing, sizeof listing) == 2, "directory holds: %s", listing);
    lact_atomic_abort(&af);
    CHECK(list_dir(listing, sizeof listing) == 1);
    CHECK_OK(lact_file_read(path, &text, &size));
    CHECK(text && strcmp(text, "hello\n") == 0); /* untouched */
    free(text);
    remove(path);

    /* Reading something large enough to need the buffer to grow. */
    size_t big = 200000;
    char *data = malloc(big);
    for (size_t i = 0; data && i < big; i++)
        data[i] = (char)('a' + i % 26);
    CHECK_OK(lact_file_write_atomic(path, data, big));
    CHECK_OK(lact_file_read(path, &text, &size));
    CHECK(text && size == big && memcmp(text, data, big) == 0 && text[big] == '\0');
    free(text);
    free(data);
    remove(path);

    CHECK_FAILS(lact_file_read(path_in("absent.txt"), &text, &size), LACT_E_NOT_FOUND);
    CHECK(text == NULL && strstr(lact_errmsg(), "absent.txt"));
    CHECK_FAILS(lact_file_write_atomic("/nonexistent-dir/a.txt", "x", 1), LACT_E_IO);
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_checkpoint();
    test_atomic_file();
    remove_dir();
    return check_summary("io_checkpoint");
}
