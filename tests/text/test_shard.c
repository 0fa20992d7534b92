/* Token shards: write/read round trips for both versions, clear errors for a
 * bad magic, version or size, and a loader that resumes from a saved
 * position with the same next batch. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "modalities/text/loader.h"
#include "modalities/text/shard.h"
#include "tests/support/check.h"

static char dir[] = "/tmp/lact_text_shard_XXXXXX";

static const char *path_of(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Shard s holds tokens base, base + 1, ... so windows are recognisable. */
static lact_status write_shard(const char *path, int version, int32_t base, int64_t n) {
    lact_shard_writer w;
    LACT_TRY(lact_shard_writer_open(&w, path, version));
    lact_status s = LACT_OK;
    for (int64_t i = 0; i < n && s == LACT_OK; i++) {
        int32_t id = base + (int32_t)i;
        s = lact_shard_writer_put(&w, &id, 1);
    }
    if (s == LACT_OK) s = lact_shard_writer_commit(&w);
    if (s != LACT_OK) lact_shard_writer_abort(&w);
    return s;
}

static void test_round_trip(int version, int32_t base) {
    const char *p = path_of(version == 1 ? "v1.bin" : "v2.bin");
    CHECK_OK(write_shard(p, version, base, 5000));
    lact_shard s;
    CHECK_OK(lact_shard_open(&s, p));
    CHECK(s.version == version && s.n_tokens == 5000 && s.token_bytes == (version == 1 ? 2 : 4));
    int32_t got[100];
    CHECK_OK(lact_shard_read(&s, 4900, 100, got));
    int bad = 0;
    for (int i = 0; i < 100; i++)
        bad += got[i] != base + 4900 + i;
    CHECK(bad == 0);
    CHECK_FAILS(lact_shard_read(&s, 4950, 51, got), LACT_E_ARG);
    lact_shard_close(&s);
    /* The header is llm.c's: magic, version, count as little-endian int32. */
    FILE *fp = fopen(p, "rb");
    uint8_t h[12] = {0};
    CHECK(fp && fread(h, 1, 12, fp) == 12);
    if (fp) fclose(fp);
    CHECK(h[0] == (20240520 & 0xFF) && h[1] == ((20240520 >> 8) & 0xFF) && h[4] == version);
    CHECK(h[8] == (5000 & 0xFF) && h[9] == (5000 >> 8));
}

static void write_raw(const char *path, int32_t magic, int32_t version, int32_t count,
                      size_t token_bytes) {
    FILE *fp = fopen(path, "wb");
    int32_t h[256] = {magic, version, count};
    if (!fp) return;
    fwrite(h, sizeof h, 1, fp);
    for (size_t i = 0; i < token_bytes; i++)
        fputc(0, fp);
    fclose(fp);
}

static void expect_bad(const char *name, const char *words) {
    lact_shard s;
    const char *p = path_of(name);
    CHECK_FAILS(lact_shard_open(&s, p), LACT_E_FORMAT);
    CHECK_MSG(strstr(lact_errmsg(), p) && strstr(lact_errmsg(), words), "%s: \"%s\"", name,
              lact_errmsg());
}

static void test_errors(void) {
    write_raw(path_of("magic.bin"), 1234, 1, 10, 20);
    expect_bad("magic.bin", "bad magic 1234");
    write_raw(path_of("version.bin"), 20240520, 7, 10, 20);
    expect_bad("version.bin", "version 7");
    write_raw(path_of("short.bin"), 20240520, 1, 100, 50);
    expect_bad("short.bin", "header says 100 tokens");
    write_raw(path_of("long.bin"), 20240520, 2, 10, 50);
    expect_bad("long.bin", "header says 10 tokens");
    FILE *fp = fopen(path_of("tiny.bin"), "wb");
    if (fp) fputs("not a shard", fp), fclose(fp);
    expect_bad("tiny.bin", "truncated");
    lact_shard s;
    CHECK_FAILS(lact_shard_open(&s, path_of("missing.bin")), LACT_E_NOT_FOUND);
    lact_shard_writer w;
    CHECK_OK(lact_shard_writer_open(&w, path_of("bad_put.bin"), 1));
    CHECK_FAILS(lact_shard_writer_put(&w, (const int32_t[]){70000}, 1), LACT_E_ARG);
    lact_shard_writer_abort(&w);
    CHECK(access(path_of("bad_put.bin"), F_OK) != 0); /* nothing under the real name */
}

static void test_loader(void) {
    /* Three shards; windows of T = 8 (9 tokens, stride 8). */
    CHECK_OK(write_shard(path_of("d_train_000000.bin"), 1, 0, 81));     /* 10 windows */
    CHECK_OK(write_shard(path_of("d_train_000001.bin"), 1, 10000, 50)); /* 6 windows */
    CHECK_OK(write_shard(path_of("d_train_000002.bin"), 1, 20000, 5));  /* too short */
    CHECK_OK(write_shard(path_of("d_train_000003.bin"), 1, 30000, 33)); /* 4 windows */
    const char *pattern[] = {path_of("d_train_*.bin")};
    lact_loader l;
    CHECK_OK(lact_loader_init(&l, pattern, 1, 4, 8, 42, true, true));
    CHECK(l.n_shards == 3 && lact_loader_windows(&l) == 20);
    /* One epoch of 20 windows: every window once, each a contiguous run. */
    int32_t batch[5][4 * 9];
    int seen[40000 / 8 + 1] = {0}, contiguous = 1;
    int64_t rows;
    for (int b = 0; b < 5; b++) {
        CHECK_OK(lact_loader_next(&l, batch[b], &rows));
        CHECK(rows == 4);
        for (int r = 0; r < 4; r++) {
            const int32_t *w = batch[b] + r * 9;
            for (int j = 1; j < 9; j++)
                contiguous &= w[j] == w[j - 1] + 1;
            if (w[0] % 8 == 0 && w[0] / 8 < (int)(sizeof seen / sizeof seen[0])) seen[w[0] / 8]++;
        }
    }
    CHECK(contiguous);
    int once = 0;
    for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++)
        once += seen[i] == 1;
    CHECK(once == 20);
    CHECK(l.pos.epoch == 0 || (l.pos.epoch == 1 && l.pos.window == 0));

    /* Resume: a fresh loader moved to a saved position yields the same batch. */
    for (int b = 0; b < 3; b++)
        CHECK_OK(lact_loader_next(&l, batch[0], &rows));
    lact_loader_pos pos = l.pos;
    int32_t next[4 * 9], again[4 * 9];
    CHECK_OK(lact_loader_next(&l, next, &rows));
    lact_loader r;
    CHECK_OK(lact_loader_init(&r, pattern, 1, 4, 8, 42, true, true));
    CHECK_OK(lact_loader_seek(&r, pos));
    CHECK_OK(lact_loader_next(&r, again, &rows));
    CHECK(rows == 4 && !memcmp(next, again, sizeof next));
    /* Another seed, another order. */
    lact_loader o;
    int32_t first_a[4 * 9], first_b[4 * 9];
    CHECK_OK(lact_loader_init(&o, pattern, 1, 4, 8, 43, true, true));
    CHECK_OK(lact_loader_next(&o, first_a, &rows));
    lact_loader_free(&r);
    CHECK_OK(lact_loader_init(&r, pattern, 1, 4, 8, 42, true, true));
    CHECK_OK(lact_loader_next(&r, first_b, &rows));
    CHECK(memcmp(first_a, first_b, sizeof first_a) != 0);
    CHECK_FAILS(lact_loader_seek(&r, (lact_loader_pos){0, 5, 0}), LACT_E_ARG);
    lact_loader_free(&o);
    lact_loader_free(&r);
    lact_loader_free(&l);

    /* In order, no loop: windows 0, 8, 16, ... then a short last batch, then 0. */
    const char *one[] = {path_of("d_train_000000.bin")};
    CHECK_OK(lact_loader_init(&l, one, 1, 4, 8, 1, false, false));
    int32_t b3[4 * 9];
    CHECK_OK(lact_loader_next(&l, b3, &rows));
    CHECK(rows == 4 && b3[0] == 0 && b3[9] == 8 && b3[27] == 24 && b3[35] == 32);
    CHECK_OK(lact_loader_next(&l, b3, &rows));
    CHECK_OK(lact_loader_next(&l, b3, &rows));
    CHECK(rows == 2 && b3[0] == 64 && b3[9] == 72);
    CHECK_OK(lact_loader_next(&l, b3, &rows));
    CHECK(rows == 0);
    lact_loader_free(&l);
    const char *none[] = {path_of("nothing_*.bin")};
    CHECK_FAILS(lact_loader_init(&l, none, 1, 4, 8, 1, false, false), LACT_E_NOT_FOUND);
}

int main(void) {
    if (!mkdtemp(dir)) return check_skip("text_shard", "cannot create a temporary directory");
    test_round_trip(1, 60000);
    test_round_trip(2, 100000);
    test_errors();
    test_loader();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_summary("text_shard");
}
