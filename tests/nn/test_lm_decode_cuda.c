/* Streaming decode on CUDA (F32).
 *
 * - The ttt op's decode state on CUDA against the CPU one on the same
 *   weights and tokens (momentum and Muon on and off), fed in uneven
 *   stretches across chunk boundaries: every output row and the final fast
 *   weights within 1e-4 relative.
 * - A language model with every mixer (LaCT with its window branch,
 *   attention, Mesa; Muon and momentum on), decoded on CUDA token by token,
 *   in uneven stretches and as prompt + steps: at every position the logits
 *   within 1e-4 relative of (a) the CPU decode on the same weights and (b)
 *   the CUDA full-sequence forward. The sequence (23 tokens) passes several
 *   LaCT chunks (4) and the window (6), so the fast weights update and the
 *   ring buffer wraps while decoding.
 * - After the first step (which sizes the ops' cached workspaces), steps
 *   allocate no device memory; a state refuses a context of the other
 *   device.
 * Skips (77) without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/device.h"
#include "core/base/philox.h"
#include "core/nn/lm_decode.h"
#include "kernels/kernels.h"
#include "kernels/ttt_decode.h"
#include "tests/nn/lm_decode_check.h"
#include "tests/support/check.h"

#define TOL 1e-4

/* ---- the ttt op's decode state ------------------------------------------------ */

enum { TN = 3, TD = 8, TDH = 16, TC = 4, TL = 15 };

/* A host tensor of the shape, normal(0, std) (or uniform in [lo, hi) when
 * std is 0) from Philox stream `stream`. */
static lact_tensor host_rand(int ndim, const int64_t *shape, uint64_t stream, float std, float lo,
                             float hi) {
    lact_tensor t;
    CHECK_OK(lact_tensor_alloc(&t, LACT_F32, LACT_CPU, ndim, shape));
    float *p = t.data;
    for (int64_t i = 0; i < lact_tensor_numel(&t); i++)
        p[i] = std > 0 ? std * lact_philox_normal(31, stream, (uint64_t)i)
                       : lo + (hi - lo) * lact_philox_uniform(31, stream, (uint64_t)i);
    return t;
}

/* Tokens [t0, t0 + T) of src [N, L, w] into dst [N, T, w] (host). */
static void take(float *dst, const lact_tensor *src, int64_t t0, int64_t T) {
    int64_t N = src->shape[0], L = src->shape[1], w = src->ndim == 3 ? src->shape[2] : 1;
    for (int64_t n = 0; n < N; n++)
        memcpy(dst + n * T * w, (const float *)src->data + (n * L + t0) * w,
               (size_t)(T * w) * sizeof(float));
}

static void check_ttt_op(lact_ctx *cpu, lact_ctx *gpu, bool mom, lact_ttt_muon muon) {
    int64_t act[3] = {TN, TL, TD}, row[2] = {TN, TL}, wa[3] = {TN, TDH, TD}, wb[3] = {TN, TD, TDH};
    /* q, k, v, lr0, lr1, lr2, β over the whole sequence; w0, w1, w2. */
    lact_tensor in[7], w[3];
    for (int i = 0; i < 3; i++)
        in[i] = host_rand(3, act, 1 + (uint64_t)i, 1.0f, 0, 0);
    for (int i = 3; i < 6; i++)
        in[i] = host_rand(2, row, 1 + (uint64_t)i, 0.0f, 0.05f, 0.3f);
    in[6] = host_rand(2, row, 7, 0.0f, 0.5f, 0.95f);
    w[0] = host_rand(3, wa, 8, 0.3f, 0, 0);
    w[1] = host_rand(3, wb, 9, 0.3f, 0, 0);
    w[2] = host_rand(3, wa, 10, 0.3f, 0, 0);
    lact_tensor dw[3];
    for (int i = 0; i < 3; i++)
        CHECK_OK(lact_tensor_clone(&dw[i], &w[i], LACT_F32, LACT_CUDA));
    lact_ttt_decode hs, ds;
    CHECK_OK(lact_ttt_decode_init(cpu, &hs, &w[0], &w[1], &w[2], TC, mom, muon));
    CHECK_OK(lact_ttt_decode_init(gpu, &ds, &dw[0], &dw[1], &dw[2], TC, mom, muon));
    CHECK(ds.cuda != NULL && ds.cpu == NULL);

    const int64_t seg[6] = {1, 5, 2, 3, 1, 6};
    float buf[8][TN * 6 * TDH];
    double worst = 0;
    for (int64_t t0 = 0, j = 0; t0 < TL; j++) {
        int64_t T = seg[j % 6] < TL - t0 ? seg[j % 6] : TL - t0;
        int64_t a3[3] = {TN, T, TD}, r2[2] = {TN, T};
        lact_tensor h[8], d[8];
        for (int i = 0; i < 7; i++) {
            take(buf[i], &in[i], t0, T);
            h[i] = i < 3 ? lact_tensor_view(buf[i], LACT_F32, LACT_CPU, 3, a3)
                         : lact_tensor_view(buf[i], LACT_F32, LACT_CPU, 2, r2);
        }
        h[7] = lact_tensor_view(buf[7], LACT_F32, LACT_CPU, 3, a3);
        for (int i = 0; i < 8; i++)
            CHECK_OK(lact_tensor_clone(&d[i], &h[i], LACT_F32, LACT_CUDA));
        CHECK_OK(lact_ttt_decode_prefill(cpu, &hs, &h[7], &h[0], &h[1], &h[2], &h[3], &h[4], &h[5],
                                         mom ? &h[6] : NULL));
        CHECK_OK(lact_ttt_decode_prefill(gpu, &ds, &d[7], &d[0], &d[1], &d[2], &d[3], &d[4], &d[5],
                                         mom ? &d[6] : NULL));
        float got[TN * 6 * TD];
        CHECK_OK(lact_mem_copy(got, LACT_CPU, d[7].data, LACT_CUDA,
                               (size_t)(TN * T * TD) * sizeof(float)));
        for (int64_t r = 0; r < TN * T; r++)
            worst = fmax(worst, lm_rel_err(got + r * TD, buf[7] + r * TD, TD));
        for (int i = 0; i < 8; i++)
            lact_tensor_free(&d[i]);
        t0 += T;
    }
    CHECK(hs.pos == TL && ds.pos == TL && hs.fill == TL % TC && ds.fill == TL % TC);
    /* The fast weights after the stream. */
    double wworst = 0;
    lact_tensor hw[3], gw[3];
    for (int i = 0; i < 3; i++) {
        CHECK_OK(lact_tensor_alloc(&hw[i], LACT_F32, LACT_CPU, 3, w[i].shape));
        CHECK_OK(lact_tensor_alloc(&gw[i], LACT_F32, LACT_CUDA, 3, w[i].shape));
    }
    CHECK_OK(lact_ttt_decode_weights(&hs, &hw[0], &hw[1], &hw[2]));
    CHECK_OK(lact_ttt_decode_weights(&ds, &gw[0], &gw[1], &gw[2]));
    double moved = 0;
    for (int i = 0; i < 3; i++) {
        lact_tensor back;
        CHECK_OK(lact_tensor_clone(&back, &gw[i], LACT_F32, LACT_CPU));
        wworst = fmax(wworst, lm_rel_err(back.data, hw[i].data, lact_tensor_numel(&back)));
        moved = fmax(moved, lm_rel_err(w[i].data, hw[i].data, lact_tensor_numel(&back)));
        lact_tensor_free(&back);
    }
    printf("ttt decode op (momentum %d, muon %d): outputs %.2e, weights %.2e (updates moved "
           "them by %.2e)\n",
           (int)mom, (int)muon, worst, wworst, moved);
    CHECK_MSG(worst <= TOL, "ttt decode outputs: %.3e", worst);
    CHECK_MSG(wworst <= TOL, "ttt decode weights: %.3e", wworst);
    CHECK_MSG(moved > 1e-2, "the updates moved the weights by only %.3e", moved);

    /* A state lives on one device. */
    float q1[TN * TD] = {0}, l1[TN] = {0};
    int64_t s2[2] = {TN, TD}, s1[1] = {TN};
    lact_tensor hq = lact_tensor_view(q1, LACT_F32, LACT_CPU, 2, s2);
    lact_tensor hl = lact_tensor_view(l1, LACT_F32, LACT_CPU, 1, s1);
    CHECK_FAILS(lact_ttt_decode_step(cpu, &ds, &hq, &hq, &hq, &hq, &hl, &hl, &hl, mom ? &hl : NULL),
                LACT_E_ARG);
    for (int i = 0; i < 3; i++) {
        lact_tensor_free(&hw[i]);
        lact_tensor_free(&gw[i]);
        lact_tensor_free(&dw[i]);
        lact_tensor_free(&w[i]);
    }
    for (int i = 0; i < 7; i++)
        lact_tensor_free(&in[i]);
    lact_ttt_decode_free(&hs);
    lact_ttt_decode_free(&ds);
}

/* ---- the language model --------------------------------------------------------- */

enum { B = 2, L = 23, V = 29, MAX_T = 7 };

static lact_lm_cfg model_cfg(void) {
    lact_lm_cfg c = lact_lm_defaults();
    c.vocab = V, c.d_model = 32, c.n_layers = 3, c.n_heads = 2;
    snprintf(c.mixers, sizeof c.mixers, "lact,attention,mesa");
    c.mlp_mult = 2.0;
    c.chunk = 4, c.window = 6, c.mesa_chunk = 4;
    c.muon = true, c.momentum = true;
    /* Large enough that the fast-weight updates change the logits. */
    c.base_lr = 0.3;
    c.init_std = 0.3;
    c.tie_embeddings = false;
    return c;
}

/* Worst relative error between two [B·L, V] logit sets over every position. */
static double all_pos_err(const float *a, const float *r) {
    double worst = 0;
    for (int64_t p = 0; p < B * L; p++)
        worst = fmax(worst, lm_rel_err(a + p * V, r + p * V, V));
    return worst;
}

/* Steps token by token after a first one, checking that no step allocates
 * device memory once the ops' cached workspaces exist. */
static void check_no_alloc(lact_ctx *gpu, lact_lm *m, const lact_tensor *ids) {
    lact_lm_decode st;
    CHECK_OK(lact_lm_decode_init(gpu, m, &st, B, 1, L));
    float logits[B * V];
    int32_t one[B];
    int64_t ish[2] = {B, 1}, lsh[2] = {B, V};
    lact_tensor iv = lact_tensor_view(one, LACT_I32, LACT_CPU, 2, ish);
    lact_tensor lv = lact_tensor_view(logits, LACT_F32, LACT_CPU, 2, lsh);
    size_t in_use = 0;
    for (int64_t t = 0; t < L; t++) {
        for (int64_t b = 0; b < B; b++)
            one[b] = ((const int32_t *)ids->data)[b * L + t];
        CHECK_OK(lact_lm_decode_step(gpu, &st, &lv, &iv));
        if (t == 0) {
            in_use = lact_mem_in_use(LACT_CUDA);
            lact_mem_reset_peak(LACT_CUDA);
        }
    }
    size_t peak = lact_mem_peak(LACT_CUDA), now = lact_mem_in_use(LACT_CUDA);
    printf("device memory over %d steps: %zu bytes in use, peak %zu\n", L - 1, now, peak);
    CHECK_MSG(now == in_use && peak == in_use, "steps allocated: %zu -> %zu, peak %zu", in_use, now,
              peak);
    lact_lm_decode_free(&st);
}

static void check_model(lact_ctx *cpu, lact_ctx *gpu) {
    lact_lm_cfg cfg = model_cfg();
    lact_lm hm, dm;
    CHECK_OK(lact_lm_init(&hm, &cfg, LACT_CPU));
    CHECK_OK(lact_lm_init_values(cpu, &hm, 11));
    CHECK_OK(lact_lm_init(&dm, &cfg, LACT_CUDA));
    CHECK(lact_params_count(&hm.params) == lact_params_count(&dm.params));
    for (int i = 0; i < lact_params_count(&hm.params); i++)
        CHECK_OK(
            lact_tensor_copy(&lact_params_at(&dm.params, i)->w, &lact_params_at(&hm.params, i)->w));
    int64_t shape[2] = {B, L}, rs[2] = {B * L, V};
    lact_tensor ids, ref_cpu, ref_gpu;
    CHECK_OK(lact_tensor_alloc(&ids, LACT_I32, LACT_CPU, 2, shape));
    CHECK_OK(lact_tensor_alloc(&ref_cpu, LACT_F32, LACT_CPU, 2, rs));
    CHECK_OK(lact_tensor_alloc(&ref_gpu, LACT_F32, LACT_CPU, 2, rs));
    for (int i = 0; i < B * L; i++)
        ((int32_t *)ids.data)[i] = (int32_t)(lact_philox_uniform(5, 1, (uint64_t)i) * V) % V;
    lm_full_logits(cpu, &hm, &ids, &ref_cpu);
    lm_full_logits(gpu, &dm, &ids, &ref_gpu);

    size_t n = (size_t)(B * L * V);
    float *dec_cpu = calloc(n, sizeof(float)), *dec1 = calloc(n, sizeof(float));
    float *dec2 = calloc(n, sizeof(float));
    const int64_t ones[1] = {1}, mixed[4] = {5, 1, 3, 7}, prompt[2] = {7, 1};
    double e0 = lm_decode_run(cpu, &hm, &ids, &ref_cpu, MAX_T, ones, 1, false, dec_cpu);
    double e1 = lm_decode_run(gpu, &dm, &ids, &ref_gpu, MAX_T, ones, 1, false, dec1);
    double e2 = lm_decode_run(gpu, &dm, &ids, &ref_gpu, MAX_T, mixed, 4, true, dec2);
    double e3 = lm_decode_run(gpu, &dm, &ids, &ref_gpu, MAX_T, prompt, 2, false, NULL);
    double c1 = all_pos_err(dec1, dec_cpu), c2 = all_pos_err(dec2, dec_cpu);
    double fwd = all_pos_err(ref_gpu.data, ref_cpu.data);
    printf("lm decode on CUDA (lact, attention, mesa; muon, momentum), worst relative error of "
           "the logits:\n");
    printf("  vs the CUDA forward: token by token %.2e, stretches %.2e, prompt + steps %.2e\n", e1,
           e2, e3);
    printf("  vs the CPU decode:   token by token %.2e, stretches %.2e\n", c1, c2);
    printf("  (CPU decode vs CPU forward %.2e; CUDA forward vs CPU forward %.2e)\n", e0, fwd);
    CHECK_MSG(e0 <= TOL, "CPU decode vs CPU forward: %.3e", e0);
    CHECK_MSG(e1 <= TOL, "token by token vs the CUDA forward: %.3e", e1);
    CHECK_MSG(e2 <= TOL, "stretches vs the CUDA forward: %.3e", e2);
    CHECK_MSG(e3 <= TOL, "prompt + steps vs the CUDA forward: %.3e", e3);
    CHECK_MSG(c1 <= TOL, "token by token vs the CPU decode: %.3e", c1);
    CHECK_MSG(c2 <= TOL, "stretches vs the CPU decode: %.3e", c2);

    check_no_alloc(gpu, &dm, &ids);

    /* The state and the model must share the context's device. */
    lact_lm_decode st;
    CHECK_FAILS(lact_lm_decode_init(cpu, &dm, &st, B, MAX_T, L), LACT_E_ARG);
    CHECK_OK(lact_lm_decode_init(gpu, &dm, &st, B, MAX_T, L));
    int32_t one[B] = {0, 0};
    float logits[B * V];
    int64_t ish[2] = {B, 1}, lsh[2] = {B, V};
    lact_tensor iv = lact_tensor_view(one, LACT_I32, LACT_CPU, 2, ish);
    lact_tensor lv = lact_tensor_view(logits, LACT_F32, LACT_CPU, 2, lsh);
    CHECK_FAILS(lact_lm_decode_step(cpu, &st, &lv, &iv), LACT_E_ARG);
    lact_lm_decode_free(&st);

    free(dec_cpu);
    free(dec1);
    free(dec2);
    lact_tensor_free(&ids);
    lact_tensor_free(&ref_cpu);
    lact_tensor_free(&ref_gpu);
    lact_lm_free(&hm);
    lact_lm_free(&dm);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!lact_cuda_available())
        return check_skip("nn_lm_decode_cuda", "no CUDA device: runs on the GPU machine");
    lact_ctx cpu, gpu;
    if (lact_ctx_init(&cpu, LACT_CPU, 2) != LACT_OK ||
        lact_ctx_init(&gpu, LACT_CUDA, 0) != LACT_OK) {
        fprintf(stderr, "lm_decode_cuda: %s\n", lact_errmsg());
        return 1;
    }
    check_ttt_op(&cpu, &gpu, false, LACT_TTT_MUON_OFF);
    check_ttt_op(&cpu, &gpu, true, LACT_TTT_MUON_OFF);
    check_ttt_op(&cpu, &gpu, true, LACT_TTT_MUON_TABLE);
    check_model(&cpu, &gpu);
    lact_ctx_free(&gpu);
    lact_ctx_free(&cpu);
    return check_summary("nn_lm_decode_cuda");
}
