/* BPE training reproduces the hand-worked "aaabdaaabac" example, a saved
 * tokenizer.json re-loads to the same encoder, and decode(encode(s)) == s
 * for random byte strings (invalid UTF-8, emoji, CJK, combining marks). */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/philox.h"
#include "core/io/file.h"
#include "modalities/text/bpe_json.h"
#include "modalities/text/bpe_train.h"
#include "modalities/text/tokenizer.h"
#include "tests/support/check.h"

static const char *const eot[] = {"<|endoftext|>"};

static bool same_encoding(lact_bpe *a, lact_bpe *b, const void *text, size_t n) {
    lact_ids x = {0}, y = {0};
    bool ok = lact_bpe_encode(a, text, n, &x) == LACT_OK && lact_bpe_encode(b, text, n, &y) == LACT_OK &&
              x.n == y.n && (x.n == 0 || !memcmp(x.v, y.v, x.n * sizeof *x.v));
    lact_ids_free(&x);
    lact_ids_free(&y);
    return ok;
}

static void test_hand_example(const char *dir) {
    lact_bpe_trainer t;
    lact_bpe_trainer_init(&t, TEXT_PRETOK_GPT2);
    CHECK_OK(lact_bpe_trainer_add(&t, "aaabdaaabac", 11));
    lact_bpe b;
    lact_bpe_train_opts o = {300, 2, eot, 1};
    CHECK_OK(lact_bpe_trainer_finish(&t, &o, &b));
    /* aa -> 256 (count 4); then "ab" and "aa a" tie at 2, the smaller pair
     * (97, 98) wins -> 257; then (256, 257) -> 258 "aaab"; every pair left
     * occurs once. */
    CHECK(b.n_merges == 3);
    if (b.n_merges == 3) {
        CHECK(b.merge_a[0] == 'a' && b.merge_b[0] == 'a');
        CHECK(b.merge_a[1] == 'a' && b.merge_b[1] == 'b');
        CHECK(b.merge_a[2] == 256 && b.merge_b[2] == 257);
    }
    size_t len = 0;
    const uint8_t *tok = lact_bpe_token(&b, 258, &len);
    CHECK(tok && len == 4 && !memcmp(tok, "aaab", 4));
    CHECK(b.eot_id == 259 && b.n_ids == 260);
    lact_ids ids = {0};
    CHECK_OK(lact_bpe_encode(&b, "aaabdaaabac", 11, &ids));
    const int32_t want[] = {258, 'd', 258, 'a', 'c'};
    CHECK(ids.n == 5 && !memcmp(ids.v, want, sizeof want));
    ids.n = 0;
    CHECK_OK(lact_bpe_encode(&b, "aaa<|endoftext|>b", 17, &ids));
    const int32_t want2[] = {256, 'a', 259, 'b'};
    CHECK(ids.n == 4 && !memcmp(ids.v, want2, sizeof want2));

    /* Saved and re-loaded: same merges spelled as GPT-2 writes them. */
    char path[1024];
    snprintf(path, sizeof path, "%s/hand.json", dir);
    CHECK_OK(lact_bpe_save_json(&b, path));
    char *json = NULL;
    CHECK_OK(lact_file_read(path, &json, NULL));
    CHECK(json && strstr(json, "\"a a\"") && strstr(json, "\"aa ab\"") &&
          strstr(json, "\"<|endoftext|>\"") && strstr(json, "\"\xc4\x80\"") != NULL);
    free(json);
    lact_bpe r;
    CHECK_OK(lact_bpe_load_json(&r, path));
    CHECK(r.n_merges == 3 && r.n_ids == 260 && r.eot_id == 259);
    CHECK(same_encoding(&b, &r, "aaabdaaabac<|endoftext|>aab", 27));
    lact_bpe_free(&r);
    lact_bpe_free(&b);
    lact_ids_free(&ids);
    lact_bpe_trainer_free(&t);
}

/* Snippets random strings are built from. */
static const char *const snippets[] = {
    "the ", "The", " quick", "'s", "'LL", " 123", "4567", "\n", "\r\n", "  ", "\t", "!?",
    "\xf0\x9f\x98\x80",                 /* emoji */
    "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd", /* emoji + skin tone */
    "\xe4\xb8\xad\xe6\x96\x87",         /* CJK */
    "e\xcc\x81", "n\xcc\x83\xcc\x88",   /* combining marks */
    "\xd0\x9c\xd0\xb8\xd1\x80",         /* Cyrillic */
    "\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80", "\xc0\xaf", /* invalid UTF-8 */
    "<|endoftext|>", "<|endof",
};
#define N_SNIPPETS ((int)(sizeof snippets / sizeof snippets[0]))

static size_t random_text(uint64_t seed, uint64_t k, uint8_t *buf, size_t cap) {
    lact_u32x4 r = lact_philox4x32(seed, k, 0);
    size_t n = 0, pieces = r.v[0] % 40;
    for (size_t i = 0; i < pieces; i++) {
        lact_u32x4 q = lact_philox4x32(seed, k, i + 1);
        if (q.v[0] % 3 == 0) {
            size_t m = q.v[1] % 8;
            for (size_t j = 0; j < m && n < cap; j++)
                buf[n++] = (uint8_t)(q.v[2] >> (j % 4 * 8)) ^ (uint8_t)(j * 37);
        } else {
            const char *s = snippets[q.v[1] % N_SNIPPETS];
            size_t m = strlen(s);
            if (n + m <= cap) memcpy(buf + n, s, m), n += m;
        }
    }
    return n;
}

static void round_trips(lact_tokenizer *t, uint64_t seed, const char *what) {
    uint8_t buf[1024];
    int bad = 0;
    lact_ids ids = {0};
    lact_bytes back = {0};
    for (uint64_t k = 0; k < 300; k++) {
        size_t n = random_text(seed, k, buf, sizeof buf);
        ids.n = back.n = 0;
        if (lact_tokenizer_encode(t, buf, n, &ids) != LACT_OK ||
            lact_tokenizer_decode(t, ids.v, ids.n, &back) != LACT_OK || back.n != n ||
            memcmp(back.v, buf, n))
            bad++;
    }
    CHECK_MSG(bad == 0, "%s: %d of 300 random strings did not round-trip", what, bad);
    lact_ids_free(&ids);
    lact_bytes_free(&back);
}

static void test_trained_round_trip(const char *dir, text_pretok kind, const char *what) {
    const char *root = getenv("LACT_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/data/demo/tiny.txt", root ? root : ".");
    char *text = NULL;
    size_t n = 0;
    CHECK_OK(lact_file_read(path, &text, &n));
    if (!text) return;
    lact_bpe_trainer tr;
    lact_bpe_trainer_init(&tr, kind);
    CHECK_OK(lact_bpe_trainer_add(&tr, text, n));
    lact_bpe_train_opts o = {512, 2, eot, 1};
    lact_tokenizer t = {0};
    CHECK_OK(lact_bpe_trainer_finish(&tr, &o, &t.bpe));
    CHECK(t.bpe.n_ids == 512 && t.bpe.n_merges >= 255);
    lact_ids ids = {0};
    CHECK_OK(lact_tokenizer_encode(&t, text, n, &ids));
    /* The merges compress their own corpus. */
    CHECK_MSG(ids.n * 2 < n, "%s: %zu bytes -> %zu tokens", what, n, ids.n);
    round_trips(&t, 7, what);

    snprintf(path, sizeof path, "%s/%s.json", dir, what);
    CHECK_OK(lact_bpe_save_json(&t.bpe, path));
    lact_tokenizer r;
    CHECK_OK(lact_tokenizer_load(&r, path));
    CHECK(r.bpe.pretok == kind && r.bpe.n_ids == 512 && r.bpe.n_merges == t.bpe.n_merges);
    CHECK(same_encoding(&t.bpe, &r.bpe, text, n));
    uint8_t buf[1024];
    int differ = 0;
    for (uint64_t k = 0; k < 100; k++) {
        size_t m = random_text(11, k, buf, sizeof buf);
        differ += !same_encoding(&t.bpe, &r.bpe, buf, m);
    }
    CHECK(differ == 0);
    lact_tokenizer_free(&r);
    lact_tokenizer_free(&t);
    lact_ids_free(&ids);
    lact_bpe_trainer_free(&tr);
    free(text);
}

static void test_bytes(void) {
    lact_tokenizer t;
    CHECK_OK(lact_tokenizer_load(&t, "bytes"));
    CHECK(lact_tokenizer_vocab_size(&t) == 257 && lact_tokenizer_eot(&t) == 256);
    round_trips(&t, 3, "bytes");
    lact_ids ids = {0};
    CHECK_OK(lact_tokenizer_encode(&t, "\xff" "a", 2, &ids));
    CHECK(ids.n == 2 && ids.v[0] == 255 && ids.v[1] == 'a');
    CHECK_FAILS(lact_tokenizer_decode(&t, (const int32_t[]){257}, 1, &(lact_bytes){0}), LACT_E_ARG);
    lact_ids_free(&ids);
    lact_tokenizer_free(&t);
}

static void test_byte_map(void) {
    int bad = 0;
    for (int b = 0; b < 256; b++)
        bad += text_cp_to_byte(text_byte_to_cp((uint8_t)b)) != b;
    CHECK(bad == 0);
    CHECK(text_byte_to_cp(' ') == 0x120 && text_byte_to_cp('\n') == 0x10A);
    CHECK(text_byte_to_cp('A') == 'A' && text_byte_to_cp(0xAD) == 0x143);
    CHECK(text_cp_to_byte(0x144) == -1 && text_cp_to_byte(' ') == -1);
}

int main(void) {
    char dir[] = "/tmp/lact_text_bpe_XXXXXX";
    if (!mkdtemp(dir)) return check_skip("text_bpe", "cannot create a temporary directory");
    test_byte_map();
    test_bytes();
    test_hand_example(dir);
    test_trained_round_trip(dir, TEXT_PRETOK_GPT2, "gpt2");
    test_trained_round_trip(dir, TEXT_PRETOK_LLAMA3, "llama3");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_summary("text_bpe");
}
