/* BF16 compute of the language model on CUDA (dtype "bf16") against F32
 * from the same weights and batch.
 *
 * Models: D 128, 2 heads of 64, 2 layers, vocabulary 512, 2 × 384 tokens,
 * LaCT chunk and window 128 with fast hidden 128 (chunk ≥ dh, as in the
 * shipped configs, so that Newton–Schulz sees full-rank updates):
 *   - lact + attention, untied head, Muon and momentum on;
 *   - attention + lact, tied head, Muon and momentum off;
 *   - mesa + attention, tied head (reported as skipped when the mesa op has
 *     no CUDA BF16 path; any other failure fails).
 * Norm weights, scales, offsets and biases are moved off their init values
 * (written into the F32 masters behind the store's back, which exercises
 * the stale-shadow refresh).
 *
 * Checks, per model:
 *   - the mean loss of the BF16 run within 2e-2 relative of the F32 run;
 *   - every parameter gradient close to F32 in norm, rel = |a − b| / |b|:
 *     without Muon rel ≤ 5e-2. Why: bf16 keeps 8 significant bits (unit
 *     roundoff u = 2^-8 ≈ 3.9e-3, RMS error of one rounding ≈ u / √3 ≈
 *     2.3e-3). A gradient here passes through some tens of BF16 roundings
 *     (saved activations, the operands of every backward product, the
 *     residual stream), whose independent errors add in quadrature:
 *     √60 · 2.3e-3 ≈ 1.7e-2; 5e-2 leaves a factor of three for the mildly
 *     ill-conditioned steps (RMS and L2 norms, softmax).
 *     With Muon on, rel ≤ 1.5e-1 and cosine ≥ 0.99: the ttt op itself
 *     runs Newton–Schulz on bf16 operands, which amplifies their rounding
 *     through G's small singular values to up to 1e-1 in some of its
 *     gradients (docs/ttt.md, Accuracy; tests/kernels/test_ttt_cuda.c
 *     bounds it so), and that error reaches every tensor upstream of the
 *     LaCT layer. lr_b is not bounded there: Newton–Schulz's Frobenius
 *     normalisation removes what a shift of a head's rate logits does (a
 *     near-pure scale of its update), so its F32 gradient is itself mostly
 *     rounding (docs/lm.md, parity); it is printed;
 *   - the measuring pass's arena peak equals the real pass's, in F32 and
 *     BF16, and the BF16 peak is below the F32 one;
 *   - the shadow equals the round-to-nearest bf16 of the masters after the
 *     refresh (weights written directly) and after optimizer steps.
 * Recompute (cfg.recompute) against the plain step in BF16, lact + attention
 * and mesa + attention: equal losses and gradients (≤ 1e-6), smaller arena.
 * The training forward with the head's backward fused in against the plain
 * forward and backward (compare_fused).
 * Graph replay: the trainer's recorded micro-step trains as the
 * kernel-by-kernel one does (test_graph_replay).
 * Training: 20 AdamW steps through lact_lm_trainer on a fixed batch from a
 * learnable sequence (x' = 5x + 3 mod 512), in BF16 and in F32: the BF16
 * loss falls to below 0.9 of its first value and by at least half of what
 * F32 achieves; the first step's losses agree to 2e-2; the trainer's arena
 * peak equals its measured capacity.
 *
 * Before the GPU part (and without a GPU): the dtype key's parsing and
 * errors, and the CPU refusing bf16 for training. Skips (77) without a GPU
 * when those pass. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/device.h"
#include "core/base/philox.h"
#include "core/nn/lm_model.h"
#include "core/train/lm_trainer.h"
#include "tests/support/check.h"

enum { B = 2, T = 384, V = 512, SEED = 5 };

#define LOSS_TOL 2e-2
#define GRAD_TOL 5e-2
#define GRAD_TOL_MUON 1.5e-1
#define COS_MIN_MUON 0.99

static lact_lm_cfg model_cfg(const char *mixers, bool tied, bool muon, const char *dtype) {
    lact_lm_cfg c = lact_lm_defaults();
    c.vocab = V, c.d_model = 128, c.n_layers = 2, c.n_heads = 2;
    snprintf(c.mixers, sizeof c.mixers, "%s", mixers);
    c.mlp_mult = 2.0;
    c.chunk = 128, c.window = 128, c.inter_multi = 2;
    c.muon = muon, c.momentum = muon;
    c.tie_embeddings = tied;
    snprintf(c.dtype, sizeof c.dtype, "%s", dtype);
    return c;
}

/* ---- CPU-side checks -------------------------------------------------------- */

static void test_dtype_key(void) {
    int nf;
    const lact_cfg_field *fields = lact_lm_run_fields(&nf);
    lact_lm_run_cfg c = lact_lm_run_defaults();
    CHECK(!strcmp(c.model.dtype, "f32"));
    CHECK_OK(lact_config_set("dtype=bf16", fields, nf, &c));
    CHECK(!strcmp(c.model.dtype, "bf16"));
    CHECK_OK(lact_lm_run_check(&c));
    CHECK_OK(lact_lm_check_device(&c.model, LACT_CUDA));
    CHECK_FAILS(lact_lm_check_device(&c.model, LACT_CPU), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "dtype") != NULL);

    /* Training on a CPU context refuses it, in one line naming the key. */
    lact_ctx cpu;
    CHECK_OK(lact_ctx_init(&cpu, LACT_CPU, 1));
    lact_lm_trainer t;
    CHECK_FAILS(lact_lm_trainer_init(&t, &cpu, &c, NULL), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "dtype bf16") != NULL && !strchr(lact_errmsg(), '\n'));
    lact_ctx_free(&cpu);

    /* A model built on the CPU (the checkpoint readers) computes in F32. */
    lact_lm m;
    CHECK_OK(lact_lm_init(&m, &c.model, LACT_CPU));
    CHECK(m.act == LACT_F32 && m.params.shadow == NULL);
    lact_lm_free(&m);

    CHECK_OK(lact_config_set("dtype=fp16", fields, nf, &c));
    CHECK_FAILS(lact_lm_run_check(&c), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "dtype") != NULL);
    CHECK_FAILS(lact_lm_init(&m, &c.model, LACT_CPU), LACT_E_ARG);
}

/* ---- one model, one forward + backward -------------------------------------- */

typedef struct run {
    lact_lm m;
    lact_tensor ids, targets, loss, dloss;
    lact_arena arena;
    size_t measured;
    double loss_mean;
    float *grads; /* host copy of the gradient block */
} run;

static lact_status upload(lact_tensor *t, const void *host) {
    return lact_mem_copy(t->data, t->device, host, LACT_CPU, lact_tensor_nbytes(t));
}

/* Norm weights, scales, offsets and biases moved by 0.1·N(0, 1): written
 * into the F32 masters directly, so the store is told. */
static lact_status perturb(lact_lm *m) {
    lact_params *p = &m->params;
    for (int i = 0; i < lact_params_count(p); i++) {
        lact_param *it = lact_params_at(p, i);
        if (it->init.kind == LACT_INIT_NORMAL) continue;
        int64_t n = lact_tensor_numel(&it->w);
        float *h = malloc((size_t)n * sizeof *h);
        if (!h) return lact_fail(LACT_E_NOMEM, "out of memory");
        lact_status s = lact_mem_copy(h, LACT_CPU, it->w.data, LACT_CUDA, (size_t)n * sizeof *h);
        for (int64_t j = 0; j < n; j++)
            h[j] += 0.1f * lact_philox_normal(SEED, 100 + (uint64_t)i, (uint64_t)j);
        if (s == LACT_OK) s = upload(&it->w, h);
        free(h);
        LACT_TRY(s);
    }
    lact_params_weights_changed(p);
    return LACT_OK;
}

/* shadow == bf16(weights) over the whole block; *bad receives the
 * mismatches. */
static lact_status shadow_mismatches(lact_params *p, int64_t *bad) {
    size_t n = (size_t)p->padded;
    float *w = malloc(n * sizeof *w);
    uint16_t *sh = malloc(n * sizeof *sh);
    lact_status s = w && sh ? LACT_OK : lact_fail(LACT_E_NOMEM, "out of memory");
    if (s == LACT_OK) s = lact_mem_copy(w, LACT_CPU, p->weights, p->device, n * sizeof *w);
    if (s == LACT_OK) s = lact_mem_copy(sh, LACT_CPU, p->shadow, p->device, n * sizeof *sh);
    *bad = 0;
    for (size_t i = 0; s == LACT_OK && i < n; i++)
        *bad += lact_f32_to_bf16(w[i]) != sh[i];
    free(w);
    free(sh);
    return s;
}

static void run_free(run *r) {
    lact_lm_free(&r->m);
    lact_tensor_free(&r->ids);
    lact_tensor_free(&r->targets);
    lact_tensor_free(&r->loss);
    lact_tensor_free(&r->dloss);
    lact_arena_free(&r->arena);
    free(r->grads);
    memset(r, 0, sizeof *r);
}

/* Model from cfg (weights from SEED, then perturbed), a random batch, a
 * measuring pass, then the real forward + backward. */
static lact_status run_model_as(lact_ctx *ctx, run *r, const lact_lm_cfg *cfg, bool fused) {
    memset(r, 0, sizeof *r);
    LACT_TRY(lact_lm_init(&r->m, cfg, LACT_CUDA));
    LACT_TRY(lact_lm_init_values(ctx, &r->m, SEED));
    LACT_TRY(perturb(&r->m));
    int64_t bt[2] = {B, T}, flat[1] = {B * T};
    LACT_TRY(lact_tensor_alloc(&r->ids, LACT_I32, LACT_CUDA, 2, bt));
    LACT_TRY(lact_tensor_alloc(&r->targets, LACT_I32, LACT_CUDA, 2, bt));
    LACT_TRY(lact_tensor_alloc(&r->loss, LACT_F32, LACT_CUDA, 1, flat));
    LACT_TRY(lact_tensor_alloc(&r->dloss, LACT_F32, LACT_CUDA, 1, flat));
    int32_t hi[B * T], ht[B * T];
    float hw[B * T];
    for (int i = 0; i < B * T; i++) {
        hi[i] = (int32_t)(lact_philox_uniform(SEED, 1, (uint64_t)i) * V) % V;
        ht[i] = (int32_t)(lact_philox_uniform(SEED, 2, (uint64_t)i) * V) % V;
        hw[i] = 1.0f / (B * T);
    }
    LACT_TRY(upload(&r->ids, hi));
    LACT_TRY(upload(&r->targets, ht));
    LACT_TRY(upload(&r->dloss, hw));

    lact_ctx none = {.device = LACT_CUDA};
    lact_arena meas;
    lact_arena_init_measure(&meas, LACT_CUDA);
    for (int k = 0; k < 2; k++) {
        lact_ctx *c = k ? ctx : &none;
        lact_arena *a = k ? &r->arena : &meas;
        if (k) {
            r->measured = meas.peak;
            LACT_TRY(lact_arena_init(&r->arena, LACT_CUDA, r->measured));
            LACT_TRY(lact_params_zero_grad(&r->m.params));
        }
        if (fused)
            LACT_TRY(lact_lm_forward_train(c, &r->m, a, &r->loss, &r->ids, &r->targets, &r->dloss));
        else
            LACT_TRY(lact_lm_forward(c, &r->m, a, &r->loss, &r->ids, &r->targets));
        LACT_TRY(lact_lm_backward(c, &r->m, a, &r->dloss));
    }
    LACT_TRY(lact_ctx_sync(ctx));
    float hl[B * T];
    LACT_TRY(lact_mem_copy(hl, LACT_CPU, r->loss.data, LACT_CUDA, sizeof hl));
    double sum = 0;
    for (int i = 0; i < B * T; i++)
        sum += hl[i];
    r->loss_mean = sum / (B * T);
    size_t gb = (size_t)r->m.params.padded * sizeof(float);
    r->grads = malloc(gb);
    if (!r->grads) return lact_fail(LACT_E_NOMEM, "out of memory");
    return lact_mem_copy(r->grads, LACT_CPU, r->m.params.grads, LACT_CUDA, gb);
}

static lact_status run_model(lact_ctx *ctx, run *r, const lact_lm_cfg *cfg) {
    return run_model_as(ctx, r, cfg, false);
}

/* |a − b| / |b| and the cosine of a and b. */
static void compare(const float *a, const float *b, int64_t n, double *rel, double *cosine) {
    double d2 = 0, a2 = 0, b2 = 0, ab = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = a[i], y = b[i];
        d2 += (x - y) * (x - y), a2 += x * x, b2 += y * y, ab += x * y;
    }
    *rel = b2 > 0 ? sqrt(d2 / b2) : (a2 > 0 ? INFINITY : 0.0);
    *cosine = a2 > 0 && b2 > 0 ? ab / sqrt(a2 * b2) : (a2 == b2 ? 1.0 : 0.0);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* F32 and BF16 runs of one model, compared. With may_be_unsupported, a
 * BF16 run that the ops refuse as unsupported is reported, not failed. */
static void compare_model(lact_ctx *ctx, const char *name, const char *mixers, bool tied, bool muon,
                          bool may_be_unsupported) {
    printf("%s (mixers %s, %s head, muon %s):\n", name, mixers, tied ? "tied" : "untied",
           muon ? "on" : "off");
    run f, h;
    lact_lm_cfg cf = model_cfg(mixers, tied, muon, "f32"),
                ch = model_cfg(mixers, tied, muon, "bf16");
    lact_status sf = run_model(ctx, &f, &cf);
    CHECK_OK(sf);
    lact_clear_error();
    lact_status sh = run_model(ctx, &h, &ch);
    if (sh == LACT_E_UNSUPPORTED && may_be_unsupported) {
        printf("  skipped: %s\n", lact_errmsg());
        run_free(&f);
        run_free(&h);
        return;
    }
    CHECK_OK(sh);
    if (sf != LACT_OK || sh != LACT_OK) {
        run_free(&f);
        run_free(&h);
        return;
    }
    CHECK(f.m.act == LACT_F32 && h.m.act == LACT_BF16 && h.m.params.shadow != NULL);
    int64_t bad = -1;
    CHECK_OK(shadow_mismatches(&h.m.params, &bad));
    CHECK_MSG(bad == 0, "%s: %lld shadow elements differ from bf16(master) after the refresh", name,
              (long long)bad);

    double lrel = fabs(h.loss_mean - f.loss_mean) / fabs(f.loss_mean);
    printf("  loss f32 %.7f bf16 %.7f rel %.2e (bound %.0e)\n", f.loss_mean, h.loss_mean, lrel,
           LOSS_TOL);
    CHECK_MSG(lrel <= LOSS_TOL, "%s: loss rel %.3g", name, lrel);
    printf("  arena peak f32 %zu (measured %zu), bf16 %zu (measured %zu)\n", f.arena.peak,
           f.measured, h.arena.peak, h.measured);
    CHECK_MSG(f.arena.peak == f.measured, "%s: f32 real peak %zu, measured %zu", name, f.arena.peak,
              f.measured);
    CHECK_MSG(h.arena.peak == h.measured, "%s: bf16 real peak %zu, measured %zu", name,
              h.arena.peak, h.measured);
    CHECK_MSG(h.measured < f.measured, "%s: bf16 arena %zu is not below f32's %zu", name,
              h.measured, f.measured);

    if (muon)
        printf("  bounds: rel <= %.2g and cos >= %.2f (Muon)\n", GRAD_TOL_MUON, COS_MIN_MUON);
    else
        printf("  bounds: rel <= %.0e\n", GRAD_TOL);
    printf("  %-28s %9s %11s %9s %9s\n", "gradient", "numel", "|g| f32", "rel", "cos");
    lact_params *p = &f.m.params;
    for (int i = 0; i < lact_params_count(p); i++) {
        lact_param *it = lact_params_at(p, i);
        int64_t n = lact_tensor_numel(&it->w);
        double rel, cosine, norm = 0;
        compare(h.grads + it->offset, f.grads + it->offset, n, &rel, &cosine);
        for (int64_t j = 0; j < n; j++)
            norm += (double)f.grads[it->offset + j] * f.grads[it->offset + j];
        bool exempt = muon && ends_with(it->name, ".lr_b");
        printf("  %-28s %9lld %11.4e %9.2e %9.6f%s\n", it->name, (long long)n, sqrt(norm), rel,
               cosine, exempt ? "  (not bounded: Muon)" : "");
        CHECK_MSG(norm > 0, "%s: %s has an all-zero F32 gradient", name, it->name);
        if (exempt) continue;
        if (muon)
            CHECK_MSG(rel <= GRAD_TOL_MUON && cosine >= COS_MIN_MUON,
                      "%s: gradient of %s rel %.3g (bound %.2g), cos %.6f (bound %.2f)", name,
                      it->name, rel, GRAD_TOL_MUON, cosine, COS_MIN_MUON);
        else
            CHECK_MSG(rel <= GRAD_TOL, "%s: gradient of %s rel %.3g > %.0e (cos %.6f)", name,
                      it->name, rel, GRAD_TOL, cosine);
    }
    double rel, cosine;
    compare(h.grads, f.grads, p->padded, &rel, &cosine);
    printf("  whole gradient block: rel %.2e cos %.6f\n", rel, cosine);
    run_free(&f);
    run_free(&h);
}

/* The training forward (the head's backward with it, one pass over the
 * logits: lact_lm_forward_train) against the plain forward and backward,
 * in F32 and BF16: the same loss and gradients up to the order of the
 * head's sums (F32) and the bf16 rounding of dlogits that the changed
 * log-sum-exp bits move (BF16). */
static void compare_fused(lact_ctx *ctx, const char *mixers, const char *dtype, double tol) {
    run a, b;
    lact_lm_cfg c = model_cfg(mixers, true, false, dtype);
    lact_status sa = run_model_as(ctx, &a, &c, false);
    lact_status sb = run_model_as(ctx, &b, &c, true);
    CHECK_OK(sa);
    CHECK_OK(sb);
    if (sa == LACT_OK && sb == LACT_OK) {
        double lrel = fabs(b.loss_mean - a.loss_mean) / fabs(a.loss_mean), rel, cosine;
        compare(b.grads, a.grads, a.m.params.padded, &rel, &cosine);
        printf("fused head %s %s: loss %.7f vs %.7f (rel %.2e), gradients rel %.2e cos %.8f, "
               "arena %zu vs %zu (bound %.0e)\n",
               mixers, dtype, b.loss_mean, a.loss_mean, lrel, rel, cosine, b.measured, a.measured,
               tol);
        CHECK_MSG(lrel <= tol && rel <= tol, "fused head %s %s: loss rel %.3g, gradients rel %.3g",
                  mixers, dtype, lrel, rel);
        CHECK_MSG(b.arena.peak == b.measured, "fused head: real peak %zu, measured %zu",
                  b.arena.peak, b.measured);
    }
    run_free(&a);
    run_free(&b);
}

/* BF16 with cfg.recompute against without: the same losses and gradients
 * (the kernels are deterministic, so the recomputed activations are the
 * forward's; 1e-6 leaves room only for a reduction order changing), and a
 * smaller arena. */
static void compare_recompute(lact_ctx *ctx, const char *mixers) {
    run a, b;
    lact_lm_cfg c = model_cfg(mixers, true, true, "bf16");
    lact_status sa = run_model(ctx, &a, &c);
    c.recompute = true;
    lact_status sb = run_model(ctx, &b, &c);
    CHECK_OK(sa);
    CHECK_OK(sb);
    if (sa == LACT_OK && sb == LACT_OK) {
        double rel, cosine;
        compare(b.grads, a.grads, a.m.params.padded, &rel, &cosine);
        printf("recompute (%s, bf16): loss %.9f vs %.9f, gradients rel %.2e, arena %zu -> %zu\n",
               mixers, b.loss_mean, a.loss_mean, rel, a.measured, b.measured);
        CHECK_MSG(fabs(b.loss_mean - a.loss_mean) <= 1e-6 * fabs(a.loss_mean),
                  "recompute %s: loss %.9g vs %.9g", mixers, b.loss_mean, a.loss_mean);
        CHECK_MSG(rel <= 1e-6, "recompute %s: gradients rel %.3g", mixers, rel);
        CHECK_MSG(b.arena.peak == b.measured && b.measured < a.measured,
                  "recompute %s: arena peak %zu, measured %zu, plain %zu", mixers, b.arena.peak,
                  b.measured, a.measured);
    }
    run_free(&a);
    run_free(&b);
}

/* ---- training ----------------------------------------------------------------- */

/* The same B windows every step: rows of x' = 5x + 3 mod 512 (a full
 * cycle), from different starts. */
static lact_status fixed_windows(void *arg, int32_t *window, int64_t *rows) {
    (void)arg;
    for (int r = 0; r < B; r++) {
        int32_t x = (int32_t)(17 + 101 * r) % V;
        for (int t = 0; t <= T; t++) {
            window[r * (T + 1) + t] = x;
            x = (5 * x + 3) % V;
        }
    }
    *rows = B;
    return LACT_OK;
}

/* 20 steps of the mixers; losses[20]. */
static lact_status train_mixers(lact_ctx *ctx, const char *mixers, const char *dtype,
                                double *losses, lact_lm_trainer *t, bool *made) {
    lact_lm_run_cfg c = lact_lm_run_defaults();
    c.model = model_cfg(mixers, true, true, dtype);
    c.seq_len = T, c.batch = B, c.accum = 1;
    c.steps = 20, c.warmup = 2, c.lr = 3e-3;
    c.eval_every = 0, c.checkpoint_every = 0;
    *made = false;
    LACT_TRY(lact_lm_trainer_init(t, ctx, &c, NULL));
    *made = true;
    for (int k = 0; k < 20; k++) {
        lact_lm_step_stats st;
        LACT_TRY(lact_lm_trainer_step_from(t, fixed_windows, NULL, &st));
        losses[k] = st.loss;
    }
    return lact_ctx_sync(ctx);
}

static lact_status train(lact_ctx *ctx, const char *dtype, double *losses, lact_lm_trainer *t,
                         bool *made) {
    return train_mixers(ctx, "lact,attention", dtype, losses, t, made);
}

/* The trainer replays its micro-step as a CUDA graph from the second step
 * on: the losses of 20 steps equal those of the kernel-by-kernel run
 * (LACT_CUDA_GRAPH=0) up to the order of the atomic additions (attention
 * d_q, embedding gradient), and the graph was recorded. A model whose
 * step cannot be recorded (the Mesa layer reads its inputs' check back)
 * falls back and trains the same. */
static void test_graph_replay(lact_ctx *ctx, const char *mixers, bool must_record) {
    double lg[20] = {0}, lk[20] = {0};
    lact_lm_trainer tg, tk;
    bool mg, mk;
    lact_status sg = train_mixers(ctx, mixers, "bf16", lg, &tg, &mg);
    setenv("LACT_CUDA_GRAPH", "0", 1);
    lact_status sk = train_mixers(ctx, mixers, "bf16", lk, &tk, &mk);
    unsetenv("LACT_CUDA_GRAPH");
    CHECK_OK(sg);
    CHECK_OK(sk);
    if (sg == LACT_OK && sk == LACT_OK) {
        double worst = 0;
        for (int k = 0; k < 20; k++)
            worst = fmax(worst, fabs(lg[k] - lk[k]) / fabs(lk[k]));
        printf("graph replay (%s): recorded %s; 20 losses vs kernel by kernel, worst rel %.2e "
               "(last %.6f / %.6f)\n",
               mixers, tg.graph.exec ? "yes" : "no", worst, lg[19], lk[19]);
        CHECK_MSG(worst <= 1e-3, "graph replay (%s): losses differ by %.3g relative", mixers,
                  worst);
        CHECK_MSG(!must_record || tg.graph.exec != NULL, "graph replay (%s): nothing recorded",
                  mixers);
        CHECK_MSG(tk.graph.exec == NULL && tk.graph_state < 0,
                  "graph replay (%s): LACT_CUDA_GRAPH=0 still recorded", mixers);
    }
    if (mg) lact_lm_trainer_free(&tg);
    if (mk) lact_lm_trainer_free(&tk);
}

static void test_training(lact_ctx *ctx) {
    double lf[20] = {0}, lh[20] = {0};
    lact_lm_trainer tf, th;
    bool mf, mh;
    CHECK_OK(train(ctx, "f32", lf, &tf, &mf));
    lact_status s = train(ctx, "bf16", lh, &th, &mh);
    CHECK_OK(s);
    printf("training, 20 AdamW steps on a fixed batch (lact + attention, tied, muon):\n");
    printf("  step   loss f32     loss bf16\n");
    for (int k = 0; k < 20; k++)
        printf("  %4d   %.6f   %.6f\n", k + 1, lf[k], lh[k]);
    if (s == LACT_OK) {
        double first = fabs(lh[0] - lf[0]) / lf[0];
        double drop_f = lf[0] - lf[19], drop_h = lh[0] - lh[19];
        printf("  first-step rel %.2e; drop f32 %.4f, bf16 %.4f\n", first, drop_f, drop_h);
        CHECK_MSG(first <= LOSS_TOL, "training: first-step losses rel %.3g", first);
        CHECK_MSG(isfinite(lh[19]) && lh[19] < 0.9 * lh[0],
                  "training: bf16 loss %.4f -> %.4f does not fall below 0.9 of its start", lh[0],
                  lh[19]);
        CHECK_MSG(drop_f > 0 && drop_h >= 0.5 * drop_f, "training: bf16 drop %.4f, f32 drop %.4f",
                  drop_h, drop_f);
        lact_arena *a = &th.batch.arena;
        printf("  trainer arena bf16: peak %zu, capacity %zu\n", a->peak, a->capacity);
        CHECK_MSG(a->peak == a->capacity, "training: bf16 arena peak %zu, measured %zu", a->peak,
                  a->capacity);
        int64_t bad = -1;
        CHECK_OK(shadow_mismatches(&th.model.params, &bad));
        CHECK_MSG(bad == 0,
                  "training: %lld shadow elements differ from bf16(master) after the "
                  "optimizer steps",
                  (long long)bad);
    }
    if (mf) lact_lm_trainer_free(&tf);
    if (mh) lact_lm_trainer_free(&th);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_dtype_key();
    if (!lact_cuda_available()) {
        if (check_failures) return check_summary("nn_lm_bf16_cuda");
        printf("dtype key and CPU checks: %d passed\n", check_count);
        return check_skip("nn_lm_bf16_cuda", "no CUDA device: runs on the GPU machine");
    }
    lact_ctx gpu;
    lact_status s = lact_ctx_init(&gpu, LACT_CUDA, 0);
    CHECK_OK(s);
    if (s != LACT_OK) return check_summary("nn_lm_bf16_cuda");
    compare_model(&gpu, "lact+attention untied", "lact,attention", false, true, false);
    compare_model(&gpu, "attention+lact tied", "attention,lact", true, false, false);
    compare_model(&gpu, "mesa+attention tied", "mesa,attention", true, false, true);
    compare_fused(&gpu, "lact,attention", "f32", 1e-5);
    compare_fused(&gpu, "lact,attention", "bf16", 1e-2);
    compare_recompute(&gpu, "lact,attention");
    compare_recompute(&gpu, "mesa,attention");
    test_training(&gpu);
    test_graph_replay(&gpu, "lact,attention", true);
    test_graph_replay(&gpu, "mesa,attention", false);
    lact_ctx_free(&gpu);
    return check_summary("nn_lm_bf16_cuda");
}
