/* Pre-tokeniser splits on tricky inputs, written out by hand from the GPT-2
 * and Llama-3 regular expressions, and the character classes under them. */
#include <stdbool.h>
#include <string.h>

#include "modalities/text/pretok.h"
#include "modalities/text/unicode.h"
#include "tests/support/check.h"

bool text_unicode_tables_sorted(void);

/* The pieces joined with '|' (no input below contains '|'). */
static const char *split(text_pretok kind, const char *s, char *buf, size_t cap) {
    size_t n = strlen(s), len = 0;
    for (size_t i = 0; i < n;) {
        size_t e = text_pretok_next(kind, (const uint8_t *)s, n, i);
        if (e <= i || e > n) return "(no progress)";
        if (len + (e - i) + 2 > cap) return "(overflow)";
        if (len) buf[len++] = '|';
        memcpy(buf + len, s + i, e - i);
        len += e - i;
        i = e;
    }
    buf[len] = '\0';
    return buf;
}

static void expect(text_pretok kind, const char *in, const char *want) {
    char buf[512];
    const char *got = split(kind, in, buf, sizeof buf);
    CHECK_MSG(!strcmp(got, want), "%s split of \"%s\": got \"%s\", want \"%s\"",
              kind == TEXT_PRETOK_GPT2 ? "gpt2" : "llama3", in, got, want);
}

static void test_gpt2(void) {
    text_pretok g = TEXT_PRETOK_GPT2;
    expect(g, "Hello world", "Hello| world");
    expect(g, "I'm can't we've they'll he'd she's you're",
           "I|'m| can|'t| we|'ve| they|'ll| he|'d| she|'s| you|'re");
    expect(g, "DON'T", "DON|'|T"); /* contractions are case-sensitive here */
    expect(g, "'sun", "'s|un");
    expect(g, "a   b", "a|  | b");
    expect(g, "x \n\n y", "x| \n\n| y");
    expect(g, "a\n\n  b", "a|\n\n | b");
    expect(g, "end  ", "end|  ");
    expect(g, "\thello", "\t|hello");
    expect(g, "(hello", "(|hello");
    expect(g, "abc123def", "abc|123|def");
    expect(g, " 2024!! ok", " 2024|!!| ok");
    expect(g, "12345", "12345");
    expect(g, "3.14", "3|.|14");
    expect(g, "e\xcc\x81t\xc3\xa9", "e|\xcc\x81|t\xc3\xa9"); /* combining acute is a mark */
    expect(g, "a\xff\xfe" "b", "a|\xff\xfe|b");          /* invalid bytes: punctuation-like */
    expect(g, "hi \xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd!", "hi| \xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd!");
    expect(g, "\xe6\x97\xa5\xe6\x9c\xac \xe3\x83\x86\xe3\x82\xad", /* 日本 テキ */
           "\xe6\x97\xa5\xe6\x9c\xac| \xe3\x83\x86\xe3\x82\xad");
    expect(g, "\xd0\x9f\xd1\x80\xd0\xb8 42", "\xd0\x9f\xd1\x80\xd0\xb8| 42"); /* При 42 */
    expect(g, "a\xc2\xa0" "b", "a|\xc2\xa0|b"); /* no-break space is \s but not ' ' */
}

static void test_llama3(void) {
    text_pretok l = TEXT_PRETOK_LLAMA3;
    expect(l, "Hello world", "Hello| world");
    expect(l, "I'M DON'T we'Ll", "I|'M| DON|'T| we|'Ll");
    expect(l, "12345", "123|45");
    expect(l, "x1234567y", "x|123|456|7|y");
    expect(l, "a   b", "a|  | b");
    expect(l, "hi!!\n\nthere", "hi|!!\n\n|there");
    expect(l, "x \n\n y", "x| \n\n| y");
    expect(l, "a\n\n  b", "a|\n\n| | b");
    expect(l, "\thello", "\thello");
    expect(l, "(hello", "(hello");
    expect(l, "word?\r\n", "word|?\r\n");
    expect(l, "3.14", "3|.|14");
    expect(l, "end  ", "end|  ");
    expect(l, "a \n", "a| \n");
    expect(l, "e\xcc\x81t", "e|\xcc\x81t"); /* a mark is [^\r\n\p{L}\p{N}] */
    expect(l, "  \xf0\x9f\x98\x80\n", " | \xf0\x9f\x98\x80\n");
}

static void test_classes(void) {
    CHECK(text_unicode_tables_sorted());
    CHECK(text_is_letter('q') && !text_is_letter('5') && !text_is_letter('_'));
    CHECK(text_is_letter(0xE9) && text_is_letter(0x3B1) && text_is_letter(0x4E2D));
    CHECK(text_is_letter(0xAC00) && text_is_letter(0x5D0) && text_is_letter(0x627));
    CHECK(!text_is_letter(0x301) && !text_is_letter(0x1F600) && !text_is_letter(0xD7));
    CHECK(text_is_number('7') && text_is_number(0x663) && text_is_number(0xBD));
    CHECK(!text_is_number('a') && !text_is_number(0x3B1));
    CHECK(text_is_space(' ') && text_is_space('\n') && text_is_space(0x3000));
    CHECK(!text_is_space('x') && !text_is_space(0x200B) && !text_is_space(-1));
    int32_t cp;
    const uint8_t ok[] = {0xE2, 0x82, 0xAC}, overlong[] = {0xC0, 0xAF}, cut[] = {0xE2, 0x82};
    const uint8_t surrogate[] = {0xED, 0xA0, 0x80};
    CHECK(text_utf8_next(ok, 3, 0, &cp) == 3 && cp == 0x20AC);
    CHECK(text_utf8_next(overlong, 2, 0, &cp) == 1 && cp == -1);
    CHECK(text_utf8_next(cut, 2, 0, &cp) == 1 && cp == -1);
    CHECK(text_utf8_next(surrogate, 3, 0, &cp) == 1 && cp == -1);
}

int main(void) {
    test_classes();
    test_gpt2();
    test_llama3();
    return check_summary("text_pretok");
}
