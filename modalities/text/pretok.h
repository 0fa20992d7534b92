/* Pre-tokenisers: the regular expressions of GPT-2 and Llama-3 written out by
 * hand over UTF-8. Each splits text into pieces that BPE then encodes one by
 * one; the pieces cover the text exactly (every byte lands in one piece). */
#ifndef LACT_TEXT_PRETOK_H
#define LACT_TEXT_PRETOK_H

#include <stddef.h>
#include <stdint.h>

typedef enum text_pretok {
    /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    TEXT_PRETOK_GPT2,
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
     *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    TEXT_PRETOK_LLAMA3,
    /* The whole text is one piece (ByteLevel with use_regex false alone). */
    TEXT_PRETOK_NONE,
} text_pretok;

/* The pattern strings exactly as tokenizer.json files spell them. */
extern const char *const text_pretok_gpt2_regex;
extern const char *const text_pretok_llama3_regex;

/* The end of the piece that starts at s[i] (i < n); always > i. */
size_t text_pretok_next(text_pretok kind, const uint8_t *s, size_t n, size_t i);

#endif
