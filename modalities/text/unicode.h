/* UTF-8 decoding and the three character classes the pre-tokenisers need:
 * letters (\p{L}), numbers (\p{N}) and white space (\s). Bytes that are not
 * valid UTF-8 decode one at a time as "other" characters, so any byte string
 * can be pre-tokenised and, being byte-level, round-trips exactly. */
#ifndef LACT_TEXT_UNICODE_H
#define LACT_TEXT_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decodes the character at s[i] (i < n); returns its length in bytes (1..4)
 * and stores the code point, or -1 for an invalid byte (length 1). */
int text_utf8_next(const uint8_t *s, size_t n, size_t i, int32_t *cp);

/* Class tables. Coverage: Latin (with extensions and IPA), Greek, Cyrillic,
 * Armenian, Hebrew, Arabic, Syriac, Thaana, Devanagari, Bengali, Gurmukhi,
 * Gujarati, Tamil, Telugu, Kannada, Malayalam, Thai, Lao, Georgian, Hangul,
 * Ethiopic, Cherokee, Khmer, Mongolian, kana, Bopomofo, CJK ideographs
 * (with extensions A-H), Yi, fullwidth forms and the mathematical
 * alphanumerics; characters of scripts outside that list count as neither
 * letters nor numbers (they fall into the punctuation-like class). Invalid
 * bytes (cp < 0) belong to no class. */
bool text_is_letter(int32_t cp);
bool text_is_number(int32_t cp);
bool text_is_space(int32_t cp);

#endif
