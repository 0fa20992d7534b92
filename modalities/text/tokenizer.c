#include "tokenizer.h"

#include <string.h>

#include "bpe_json.h"

lact_status lact_tokenizer_load(lact_tokenizer *t, const char *spec) {
    memset(t, 0, sizeof *t);
    if (!strcmp(spec, "bytes")) {
        t->is_bytes = true;
        return LACT_OK;
    }
    return lact_bpe_load_json(&t->bpe, spec);
}

void lact_tokenizer_free(lact_tokenizer *t) {
    if (!t->is_bytes) lact_bpe_free(&t->bpe);
    memset(t, 0, sizeof *t);
}

int64_t lact_tokenizer_vocab_size(const lact_tokenizer *t) {
    return t->is_bytes ? LACT_BYTES_EOT + 1 : t->bpe.n_ids;
}

int32_t lact_tokenizer_eot(const lact_tokenizer *t) {
    return t->is_bytes ? LACT_BYTES_EOT : t->bpe.eot_id;
}

lact_status lact_tokenizer_encode(lact_tokenizer *t, const void *text, size_t n, lact_ids *out) {
    if (!t->is_bytes) return lact_bpe_encode(&t->bpe, text, n, out);
    const uint8_t *s = text;
    for (size_t i = 0; i < n; i++)
        LACT_TRY(lact_ids_push(out, s[i]));
    return LACT_OK;
}

lact_status lact_tokenizer_decode(const lact_tokenizer *t, const int32_t *ids, size_t n,
                                  lact_bytes *out) {
    if (!t->is_bytes) return lact_bpe_decode(&t->bpe, ids, n, out);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == LACT_BYTES_EOT) {
            LACT_TRY(lact_bytes_append(out, "<|endoftext|>", 13));
            continue;
        }
        if (ids[i] < 0 || ids[i] > 255)
            return lact_fail(LACT_E_ARG, "token id %d is not a byte (bytes tokenizer: 0..256)",
                             ids[i]);
        uint8_t c = (uint8_t)ids[i];
        LACT_TRY(lact_bytes_append(out, &c, 1));
    }
    return LACT_OK;
}
