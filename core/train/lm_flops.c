#include "core/train/lm_flops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double lact_lm_keys_per_query(int64_t len, int64_t window) {
    if (len < 1) return 0.0;
    double L = (double)len;
    if (window <= 0 || window >= len) return (L + 1.0) / 2.0;
    /* Σ_i min(i + 1, w) = w(w + 1)/2 + (L − w)·w = L·w − w(w − 1)/2. */
    double w = (double)window;
    return w - w * (w - 1.0) / (2.0 * L);
}

/* Matmul weights of one mixer, from the shapes its layer declares for the
 * language model (core/nn/lm_model.c takes the layers' defaults for what the
 * config does not set: head dims, key/value heads, the gate). */
static int64_t mixer_matmul(const lact_lm_cfg *c, lact_mixer m) {
    int64_t D = c->d_model, H = c->n_heads;
    if (m == LACT_MIXER_LACT) {
        /* wq wk wv wo [D, D]; lr_w [3H, D]; mom_w [H, D] */
        return 4 * D * D + 3 * H * D + (c->momentum ? H * D : 0);
    }
    if (m == LACT_MIXER_ATTENTION) {
        lact_attn_layer_cfg a = lact_attn_layer_defaults(D, H);
        int64_t q = a.heads * a.head_dim, kv = a.kv_heads * a.head_dim;
        int64_t gate = a.gate == LACT_ATTN_GATE_NONE   ? 0
                       : a.gate == LACT_ATTN_GATE_HEAD ? a.heads
                                                       : a.heads * a.head_dim;
        /* wq, wk, wv, wg, wo */
        return D * q + 2 * D * kv + D * gate + D * q;
    }
    lact_mesa_layer_cfg me = lact_mesa_layer_defaults(D, H);
    int64_t hd = me.heads * me.head_dim;
    /* wq wk wv w_gate [H·d, D]; w_decay w_beta [H, D]; wo [D, H·d] */
    return 4 * D * hd + 2 * me.heads * D + D * hd;
}

lact_status lact_lm_flops_per_token(const lact_lm_cfg *cfg, int64_t seq_len, lact_lm_flops *f) {
    memset(f, 0, sizeof *f);
    const lact_lm_cfg *c = cfg;
    if (c->vocab < 1 || c->d_model < 1 || c->n_heads < 1 || c->n_layers < 1 || c->n_layers > 4096 ||
        c->d_model % c->n_heads != 0 || c->inter_multi < 1 || c->window < 0 || seq_len < 1)
        return lact_fail(LACT_E_ARG,
                         "lm flops: vocab %lld, d_model %lld, n_heads %lld (dividing d_model), "
                         "n_layers %lld, inter_multi %lld, seq_len %lld must be positive and "
                         "window %lld not negative",
                         (long long)c->vocab, (long long)c->d_model, (long long)c->n_heads,
                         (long long)c->n_layers, (long long)c->inter_multi, (long long)seq_len,
                         (long long)c->window);
    int64_t F = (int64_t)llround(c->mlp_mult * (double)c->d_model);
    if (!(c->mlp_mult > 0) || F < 1)
        return lact_fail(LACT_E_ARG, "lm flops: mlp_mult %g must give a positive hidden size",
                         c->mlp_mult);
    lact_mixer *mixers = malloc((size_t)c->n_layers * sizeof *mixers);
    if (!mixers) return lact_fail(LACT_E_NOMEM, "lm flops: out of memory");
    lact_status s = lact_lm_parse_mixers(c, mixers);
    if (s == LACT_OK)
        for (int64_t i = 0; i < c->n_layers; i++)
            f->layers[mixers[i]]++;
    free(mixers);
    if (s != LACT_OK) return s;

    int64_t D = c->d_model, d = D / c->n_heads, dh = d * c->inter_multi;
    f->seq_len = seq_len;
    f->n_head = c->vocab * D;
    for (int m = 0; m < 3; m++)
        f->n_mixer[m] = f->layers[m] * mixer_matmul(c, (lact_mixer)m);
    f->n_mlp = c->n_layers * 3 * D * F;
    f->n_matmul = f->n_head + f->n_mixer[0] + f->n_mixer[1] + f->n_mixer[2] + f->n_mlp;
    f->keys_causal = lact_lm_keys_per_query(seq_len, 0);
    f->keys_window = c->window > 0 ? lact_lm_keys_per_query(seq_len, c->window) : 0.0;

    double n_lact = (double)f->layers[LACT_MIXER_LACT];
    f->matmul = 6.0 * (double)f->n_matmul;
    f->attention = (double)f->layers[LACT_MIXER_ATTENTION] * 12.0 * (double)D * f->keys_causal;
    f->window = n_lact * 12.0 * (double)D * f->keys_window;
    f->ttt = n_lact * 54.0 * (double)D * (double)dh;
    f->total = f->matmul + f->attention + f->window + f->ttt;
    return LACT_OK;
}
