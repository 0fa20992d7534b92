/* Streaming decode of the language model against the full-sequence forward
 * at every position (LaCT + attention, chunk smaller than the sequence so
 * the fast weights update while decoding; token by token and in uneven
 * stretches), the attention layer's decode with a wrapping window ring
 * buffer and grouped heads, the sampler (determinism by seed, top-k 1 =
 * greedy, nucleus and top-k bounds, the drawn frequencies), and errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"
#include "core/nn/lm_decode.h"
#include "tests/nn/lm_decode_check.h"
#include "kernels/kernels.h"
#include "tests/support/check.h"

enum { B = 2, L = 19, V = 13, MAX_T = 6 };

static lact_lm_cfg model_cfg(bool muon) {
    lact_lm_cfg c = lact_lm_defaults();
    c.vocab = V, c.d_model = 16, c.n_layers = 3, c.n_heads = 2;
    strcpy(c.mixers, "lact,attention");
    c.chunk = 4, c.window = 5;
    c.muon = muon;
    /* Large enough that the fast-weight updates change the logits. */
    c.base_lr = 0.3;
    c.init_std = 0.3;
    c.tie_embeddings = false;
    return c;
}

static void test_model(lact_ctx *ctx, bool muon) {
    lact_lm_cfg cfg = model_cfg(muon);
    lact_lm m;
    CHECK_OK(lact_lm_init(&m, &cfg, LACT_CPU));
    CHECK_OK(lact_lm_init_values(ctx, &m, 11));
    int64_t shape[2] = {B, L}, rs[2] = {B * L, V};
    lact_tensor ids, ref;
    CHECK_OK(lact_tensor_alloc(&ids, LACT_I32, LACT_CPU, 2, shape));
    CHECK_OK(lact_tensor_alloc(&ref, LACT_F32, LACT_CPU, 2, rs));
    for (int i = 0; i < B * L; i++)
        ((int32_t *)ids.data)[i] = (int32_t)(lact_philox_uniform(5, 1, (uint64_t)i) * V) % V;
    lm_full_logits(ctx, &m, &ids, &ref);

    const int64_t ones[1] = {1}, mixed[4] = {5, 1, 3, 6}, prompt[2] = {6, 1};
    double e1 = lm_decode_run(ctx, &m, &ids, &ref, MAX_T, ones, 1, false, NULL);
    double e2 = lm_decode_run(ctx, &m, &ids, &ref, MAX_T, mixed, 4, true, NULL);
    double e3 = lm_decode_run(ctx, &m, &ids, &ref, MAX_T, prompt, 2, false, NULL);
    printf("lm decode (muon %d): token by token %.2e, stretches %.2e, prompt + steps %.2e\n",
           (int)muon, e1, e2, e3);
    CHECK_MSG(e1 <= 1e-4, "token by token: %.3e", e1);
    CHECK_MSG(e2 <= 1e-4, "stretches: %.3e", e2);
    CHECK_MSG(e3 <= 1e-4, "prompt + steps: %.3e", e3);

    /* The fast weights matter: a model whose LaCT layers never update
     * (a chunk past the sequence) gives other logits, so the decode above
     * had to follow the updates. */
    lact_lm_cfg nc = cfg;
    nc.chunk = 64, nc.window = 64;
    lact_lm m2;
    lact_tensor ref2;
    CHECK_OK(lact_lm_init(&m2, &nc, LACT_CPU));
    CHECK_OK(lact_lm_init_values(ctx, &m2, 11));
    CHECK_OK(lact_tensor_alloc(&ref2, LACT_F32, LACT_CPU, 2, rs));
    lm_full_logits(ctx, &m2, &ids, &ref2);
    double diff = 0;
    for (int b = 0; b < B; b++)
        diff = fmax(diff, lm_rel_err((const float *)ref2.data + (b * L + L - 1) * V,
                                     (const float *)ref.data + (b * L + L - 1) * V, V));
    CHECK_MSG(diff > 1e-2, "updates change the last logits by only %.3e", diff);
    lact_tensor_free(&ref2);
    lact_lm_free(&m2);

    lact_lm_decode st;
    CHECK_FAILS(lact_lm_decode_init(ctx, &m, &st, B, 0, L), LACT_E_ARG);
    CHECK_FAILS(lact_lm_decode_init(ctx, &m, &st, B, 8, 4), LACT_E_ARG);
    lact_tensor_free(&ids);
    lact_tensor_free(&ref);
    lact_lm_free(&m);
}

/* The attention layer alone: window mask whose ring buffer wraps, grouped
 * kv heads, a per-head gate, no qk norm. */
static void test_attn_window(lact_ctx *ctx) {
    enum { D = 16, T = 11 };
    lact_attn_layer_cfg c = lact_attn_layer_defaults(D, 4);
    c.kv_heads = 2, c.head_dim = 4, c.qk_norm = false, c.gate = LACT_ATTN_GATE_HEAD;
    c.mask.mask = LACT_ATTN_WINDOW, c.mask.window = 3, c.init_std = 0.4f;
    lact_params p;
    lact_attn_layer l;
    lact_params_init(&p, LACT_CPU);
    CHECK_OK(lact_attn_layer_declare(&l, &p, "attn", &c));
    CHECK_OK(lact_params_alloc(&p));
    CHECK_OK(lact_params_init_values(ctx, &p, 3));
    int64_t sh[3] = {B, T, D};
    lact_tensor x, y;
    CHECK_OK(lact_tensor_alloc(&x, LACT_F32, LACT_CPU, 3, sh));
    CHECK_OK(lact_tensor_alloc(&y, LACT_F32, LACT_CPU, 3, sh));
    for (int64_t i = 0; i < B * T * D; i++)
        ((float *)x.data)[i] = lact_philox_normal(9, 2, (uint64_t)i);
    lact_arena meas, ar;
    lact_attn_layer_saved sv;
    lact_arena_init_measure(&meas, LACT_CPU);
    CHECK_OK(lact_attn_layer_forward(ctx, &l, &meas, &sv, &y, &x, NULL));
    CHECK_OK(lact_arena_init(&ar, LACT_CPU, meas.peak));
    CHECK_OK(lact_attn_layer_forward(ctx, &l, &ar, &sv, &y, &x, NULL));

    lact_attn_layer_decode st;
    CHECK_OK(lact_attn_layer_decode_init(ctx, &l, &st, B, 4, 100));
    CHECK(st.cache.capacity == 3);
    float xs[B * 4 * D], ys[B * 4 * D];
    const int64_t seg[4] = {1, 4, 2, 4};
    double worst = 0;
    for (int64_t t0 = 0, j = 0; t0 < T; j++) {
        int64_t n = seg[j % 4] < T - t0 ? seg[j % 4] : T - t0, s3[3] = {B, n, D};
        for (int64_t b = 0; b < B; b++)
            memcpy(xs + b * n * D, (const float *)x.data + (b * T + t0) * D,
                   (size_t)(n * D) * sizeof(float));
        lact_tensor xv = lact_tensor_view(xs, LACT_F32, LACT_CPU, 3, s3);
        lact_tensor yv = lact_tensor_view(ys, LACT_F32, LACT_CPU, 3, s3);
        CHECK_OK(lact_attn_layer_decode_step(ctx, &st, &yv, &xv));
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < n; t++)
                worst = fmax(worst, lm_rel_err(ys + (b * n + t) * D,
                                               (const float *)y.data + (b * T + t0 + t) * D, D));
        t0 += n;
    }
    printf("attention layer decode, window 3: %.2e\n", worst);
    CHECK_MSG(worst <= 1e-5, "window decode: %.3e", worst);
    lact_attn_layer_decode_free(&st);

    l.cfg.mask.mask = LACT_ATTN_FULL;
    CHECK_FAILS(lact_attn_layer_decode_init(ctx, &l, &st, B, 4, 100), LACT_E_UNSUPPORTED);
    lact_arena_free(&ar);
    lact_tensor_free(&x);
    lact_tensor_free(&y);
    lact_params_free(&p);
}

static void test_sampler(void) {
    enum { NV = 40, N = 64 };
    float logits[N][NV];
    for (int i = 0; i < N; i++)
        for (int v = 0; v < NV; v++)
            logits[i][v] = 2.0f * lact_philox_normal(21, (uint64_t)i, (uint64_t)v);
    int32_t a[N], b[N], c[N], greedy[N];
    lact_sampler s;
    lact_sample_cfg cfg = {1.0f, 0, 1.0f, 7};
    for (int pass = 0; pass < 3; pass++) {
        cfg.seed = pass == 2 ? 8 : 7;
        CHECK_OK(lact_sampler_init(&s, &cfg, NV));
        for (int i = 0; i < N; i++)
            (pass == 0   ? a
             : pass == 1 ? b
                         : c)[i] = lact_sampler_pick(&s, logits[i], NV, 0, (uint64_t)i);
        lact_sampler_free(&s);
    }
    int same = 0, differ = 0, not_greedy = 0;
    for (int i = 0; i < N; i++) {
        int64_t best = 0;
        for (int v = 1; v < NV; v++)
            if (logits[i][v] > logits[i][best]) best = v;
        greedy[i] = (int32_t)best;
        same += a[i] == b[i];
        differ += a[i] != c[i];
        not_greedy += a[i] != greedy[i];
    }
    CHECK(same == N);      /* a seed gives the same ids */
    CHECK(differ > 0);     /* another seed, other ids */
    CHECK(not_greedy > 0); /* temperature 1 does sample */

    /* top-k 1 and temperature 0 are greedy; a tiny top-p keeps one id. */
    const lact_sample_cfg greedy_cfgs[3] = {
        {1.0f, 1, 1.0f, 7}, {0.0f, 0, 1.0f, 7}, {1.5f, 0, 1e-6f, 7}};
    for (int g = 0; g < 3; g++) {
        CHECK_OK(lact_sampler_init(&s, &greedy_cfgs[g], NV));
        int ok = 0;
        for (int i = 0; i < N; i++)
            ok += lact_sampler_pick(&s, logits[i], NV, 0, (uint64_t)i) == greedy[i];
        CHECK_MSG(ok == N, "config %d: %d of %d greedy", g, ok, N);
        lact_sampler_free(&s);
    }
    /* top-k 3: always one of the three largest; n_allowed bounds the ids. */
    lact_sample_cfg k3 = {2.0f, 3, 1.0f, 9};
    CHECK_OK(lact_sampler_init(&s, &k3, NV));
    int outside = 0, hits[3] = {0, 0, 0};
    for (int i = 0; i < N; i++) {
        int32_t id = lact_sampler_pick(&s, logits[i], NV, 0, (uint64_t)i);
        int rank = 0;
        for (int v = 0; v < NV; v++)
            rank += logits[i][v] > logits[i][id];
        outside += rank >= 3;
        if (rank < 3) hits[rank]++;
        outside += lact_sampler_pick(&s, logits[i], 5, 1, (uint64_t)i) >= 5;
    }
    CHECK(outside == 0);
    CHECK(hits[1] + hits[2] > 0);
    lact_sampler_free(&s);

    /* Frequencies: logits (0, ln 3) give id 1 with probability 3/4. */
    float two[2] = {0.0f, logf(3.0f)};
    lact_sample_cfg t1 = {1.0f, 0, 1.0f, 3};
    CHECK_OK(lact_sampler_init(&s, &t1, 2));
    int ones = 0;
    for (int i = 0; i < 4000; i++)
        ones += lact_sampler_pick(&s, two, 2, 0, (uint64_t)i);
    CHECK_NEAR(ones / 4000.0, 0.75, 0.03);
    lact_sampler_free(&s);
    /* top-p 0.7 keeps only id 1 (0.75 ≥ 0.7). */
    lact_sample_cfg p7 = {1.0f, 0, 0.7f, 3};
    CHECK_OK(lact_sampler_init(&s, &p7, 2));
    ones = 0;
    for (int i = 0; i < 500; i++)
        ones += lact_sampler_pick(&s, two, 2, 0, (uint64_t)i);
    CHECK(ones == 500);
    lact_sampler_free(&s);

    lact_sample_cfg bad[3] = {{-1.0f, 0, 1.0f, 0}, {1.0f, -2, 1.0f, 0}, {1.0f, 0, 1.5f, 0}};
    for (int i = 0; i < 3; i++)
        CHECK_FAILS(lact_sampler_init(&s, &bad[i], NV), LACT_E_ARG);
}

int main(void) {
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 2));
    test_model(&ctx, false);
    test_model(&ctx, true);
    test_attn_window(&ctx);
    test_sampler();
    lact_ctx_free(&ctx);
    return check_summary("lm_decode");
}
