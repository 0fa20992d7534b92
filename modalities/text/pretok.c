#include "pretok.h"

#include "unicode.h"

const char *const text_pretok_gpt2_regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char *const text_pretok_llama3_regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* A cursor over the text: the character at i and its length. */
typedef struct chr {
    int32_t cp; /* -1: invalid byte, -2: end of text */
    int len;
} chr;

static chr at(const uint8_t *s, size_t n, size_t i) {
    chr c = {-2, 0};
    if (i < n) c.len = text_utf8_next(s, n, i, &c.cp);
    return c;
}

static int is_l(chr c) { return c.cp >= 0 && text_is_letter(c.cp); }
static int is_n(chr c) { return c.cp >= 0 && text_is_number(c.cp); }
static int is_s(chr c) { return c.cp >= 0 && text_is_space(c.cp); }
static int is_other(chr c) { return c.cp != -2 && !is_l(c) && !is_n(c) && !is_s(c); }
static int is_crlf(chr c) { return c.cp == '\r' || c.cp == '\n'; }

typedef int (*chr_pred)(chr c);

/* End of the longest run of pred starting at i (i itself when none). */
static size_t run(const uint8_t *s, size_t n, size_t i, chr_pred pred) {
    for (chr c = at(s, n, i); pred(c); c = at(s, n, i))
        i += (size_t)c.len;
    return i;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd at i: the end, or 0. */
static size_t contraction(const uint8_t *s, size_t n, size_t i, int fold) {
    if (s[i] != '\'' || i + 1 >= n) return 0;
    int a = fold ? lower(s[i + 1]) : s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if (i + 2 >= n) return 0;
    int b = fold ? lower(s[i + 2]) : s[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
}

/* \s+(?!\S) then \s+: a whitespace run keeps its last character for the
 * next piece when a non-space follows (so " word" stays together), unless
 * the run is that single character. */
static size_t space_run(const uint8_t *s, size_t n, size_t i) {
    size_t end = run(s, n, i, is_s), last = i;
    if (end == n) return end;
    for (size_t k = i; k < end; k += (size_t)at(s, n, k).len)
        last = k;
    return last > i ? last : end;
}

static size_t next_gpt2(const uint8_t *s, size_t n, size_t i) {
    size_t e = contraction(s, n, i, 0);
    if (e) return e;
    chr c = at(s, n, i);
    size_t j = i;
    if (c.cp == ' ') {
        j = i + 1;
        c = at(s, n, j);
    }
    if (is_l(c)) return run(s, n, j, is_l);
    if (is_n(c)) return run(s, n, j, is_n);
    if (is_other(c)) return run(s, n, j, is_other);
    return space_run(s, n, i);
}

static int not_crlf_l_n(chr c) { return c.cp != -2 && !is_crlf(c) && !is_l(c) && !is_n(c); }

static size_t next_llama3(const uint8_t *s, size_t n, size_t i) {
    size_t e = contraction(s, n, i, 1);
    if (e) return e;
    chr c = at(s, n, i);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (is_l(c)) return run(s, n, i, is_l);
    if (not_crlf_l_n(c) && is_l(at(s, n, i + (size_t)c.len)))
        return run(s, n, i + (size_t)c.len, is_l);
    /* \p{N}{1,3} */
    if (is_n(c)) {
        size_t j = i;
        for (int k = 0; k < 3 && is_n(at(s, n, j)); k++)
            j += (size_t)at(s, n, j).len;
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t j = c.cp == ' ' ? i + 1 : i;
    if (is_other(at(s, n, j))) return run(s, n, run(s, n, j, is_other), is_crlf);
    /* \s*[\r\n]+: the whitespace run up to and including its last CR/LF. */
    size_t end = run(s, n, i, is_s), last_nl = 0;
    int seen = 0;
    for (size_t k = i; k < end; k += (size_t)at(s, n, k).len)
        if (is_crlf(at(s, n, k))) last_nl = k, seen = 1;
    if (seen) return last_nl + 1;
    return space_run(s, n, i);
}

size_t text_pretok_next(text_pretok kind, const uint8_t *s, size_t n, size_t i) {
    switch (kind) {
    case TEXT_PRETOK_GPT2:
        return next_gpt2(s, n, i);
    case TEXT_PRETOK_LLAMA3:
        return next_llama3(s, n, i);
    case TEXT_PRETOK_NONE:
        break;
    }
    return n;
}
