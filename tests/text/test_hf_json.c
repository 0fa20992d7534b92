/* Loading Hugging Face tokenizer.json files: a GPT-2 style and a Llama-3
 * style fixture encode known strings to ids derived by hand from their
 * merges, and unsupported configurations fail naming the field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "modalities/text/bpe_json.h"
#include "modalities/text/tokenizer.h"
#include "tests/support/check.h"

static void fixture(char *buf, size_t n, const char *name) {
    const char *root = getenv("LACT_SOURCE_DIR");
    snprintf(buf, n, "%s/tests/data/text/%s", root ? root : ".", name);
}

static void expect_ids(lact_tokenizer *t, const char *text, const int32_t *want, size_t n_want) {
    lact_ids ids = {0};
    lact_bytes back = {0};
    CHECK_OK(lact_tokenizer_encode(t, text, strlen(text), &ids));
    bool same = ids.n == n_want && !memcmp(ids.v, want, n_want * sizeof *want);
    char got[256] = "";
    for (size_t i = 0, len = 0; i < ids.n && len < sizeof got - 12; i++)
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%d", i ? "," : "", ids.v[i]);
    CHECK_MSG(same, "encode(\"%s\") = [%s]", text, got);
    CHECK_OK(lact_tokenizer_decode(t, ids.v, ids.n, &back));
    CHECK(back.n == strlen(text) && !memcmp(back.v, text, back.n));
    lact_ids_free(&ids);
    lact_bytes_free(&back);
}

static void test_gpt2_fixture(void) {
    char path[1024];
    fixture(path, sizeof path, "gpt2_tiny.json");
    lact_tokenizer t;
    CHECK_OK(lact_tokenizer_load(&t, path));
    CHECK(t.bpe.pretok == TEXT_PRETOK_GPT2 && !t.bpe.ignore_merges);
    CHECK(lact_tokenizer_vocab_size(&t) == 20 && lact_tokenizer_eot(&t) == 19);
    CHECK(t.bpe.n_merges == 9);
    expect_ids(&t, "hello world!", (const int32_t[]){12, 17, 8}, 3);
    expect_ids(&t, "hello\n<|endoftext|>world", (const int32_t[]){12, 18, 19, 5, 14, 16}, 6);
    expect_ids(&t, " hello", (const int32_t[]){4, 12}, 2);
    expect_ids(&t, "oh hell", (const int32_t[]){3, 0, 4, 11}, 4);
    expect_ids(&t, "<|endoftext|><|endoftext|>", (const int32_t[]){19, 19}, 2);
    lact_ids ids = {0};
    CHECK_FAILS(lact_tokenizer_encode(&t, "xyz", 3, &ids), LACT_E_UNSUPPORTED);
    CHECK(strstr(lact_errmsg(), "0x78") != NULL);
    CHECK_FAILS(lact_tokenizer_decode(&t, (const int32_t[]){20}, 1, &(lact_bytes){0}), LACT_E_ARG);
    lact_ids_free(&ids);
    lact_tokenizer_free(&t);
}

static void test_llama3_fixture(void) {
    char path[1024];
    fixture(path, sizeof path, "llama3_tiny.json");
    lact_tokenizer t;
    CHECK_OK(lact_tokenizer_load(&t, path));
    CHECK(t.bpe.pretok == TEXT_PRETOK_LLAMA3 && t.bpe.ignore_merges);
    CHECK(lact_tokenizer_eot(&t) == 21);
    expect_ids(&t, "<|begin_of_text|>cat's 1234\n\n", (const int32_t[]){20, 11, 15, 6, 5, 3, 17},
               7);
    expect_ids(&t, " cat", (const int32_t[]){12}, 1); /* whole piece in the vocabulary */
    expect_ids(&t, "cats", (const int32_t[]){11, 13}, 2);
    expect_ids(&t, "tat", (const int32_t[]){9, 18}, 2);
    expect_ids(&t, "12312", (const int32_t[]){5, 4}, 2);
    /* Without ignore_merges " cat" merges to Ġ + cat. */
    t.bpe.ignore_merges = false;
    text_strmap_free(&t.bpe.cache);
    text_strmap_init(&t.bpe.cache);
    t.bpe.cache_ids.n = 0;
    expect_ids(&t, " cat", (const int32_t[]){6, 11}, 2);
    lact_tokenizer_free(&t);
}

/* A minimal valid file with one field replaced. */
static void expect_bad(const char *normalizer, const char *pretok, const char *model_extra,
                       const char *merges, const char *field) {
    char json[2048];
    snprintf(json, sizeof json,
             "{\"normalizer\": %s, \"pre_tokenizer\": %s, \"decoder\": null, \"added_tokens\": [],"
             " \"model\": {\"type\": \"BPE\", %s \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2},"
             " \"merges\": %s}}",
             normalizer, pretok, model_extra, merges);
    lact_bpe b;
    lact_clear_error();
    lact_status s = lact_bpe_parse_json(&b, json, "tok.json");
    CHECK_MSG(s != LACT_OK && strstr(lact_errmsg(), field) && strstr(lact_errmsg(), "tok.json"),
              "expected an error naming %s, got %s: \"%s\"", field, lact_status_name(s),
              lact_errmsg());
    if (s == LACT_OK) lact_bpe_free(&b);
}

static void test_errors(void) {
    const char *bl = "{\"type\": \"ByteLevel\"}";
    lact_bpe b;
    char json[512];
    snprintf(json, sizeof json,
             "{\"pre_tokenizer\": %s, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, "
             "\"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}",
             bl);
    CHECK_OK(lact_bpe_parse_json(&b, json, "tok.json"));
    lact_bpe_free(&b);
    expect_bad("{\"type\": \"NFC\"}", bl, "", "[\"a b\"]", "normalizer");
    expect_bad("null", "{\"type\": \"Metaspace\"}", "", "[\"a b\"]", "pre_tokenizer.type");
    expect_bad("null", "null", "", "[\"a b\"]", "pre_tokenizer");
    expect_bad("null",
               "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
               "{\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\", "
               "\"use_regex\": false}]}",
               "", "[\"a b\"]", "pretokenizers[0].pattern.Regex");
    expect_bad("null", bl, "\"byte_fallback\": true,", "[\"a b\"]", "model.byte_fallback");
    expect_bad("null", bl, "\"end_of_word_suffix\": \"</w>\",", "[\"a b\"]",
               "model.end_of_word_suffix");
    expect_bad("null", bl, "", "[\"a c\"]", "model.merges[0]");
    expect_bad("null", bl, "", "[\"a b c\"]", "model.merges[0]");
    expect_bad("null", bl, "", "[[\"a\"]]", "model.merges[0]");
    expect_bad("null", bl, "", "{}", "model.merges");
    CHECK_FAILS(lact_bpe_parse_json(&b, "{\"model\": [", "tok.json"), LACT_E_FORMAT);
    CHECK_FAILS(lact_bpe_load_json(&b, "/nonexistent/tokenizer.json"), LACT_E_NOT_FOUND);
    CHECK(strstr(lact_errmsg(), "/nonexistent/tokenizer.json") != NULL);
}

int main(void) {
    test_gpt2_fixture();
    test_llama3_fixture();
    test_errors();
    return check_summary("text_hf_json");
}
