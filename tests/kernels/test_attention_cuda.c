/* The CUDA attention against the CPU reference on cases larger than the
 * table's (several key tiles, head dims 64 and 128, packed sequences, GQA),
 * in F32 and BF16, forward and backward; then the forward and backward time
 * of one long causal case. Skips (77) without a CUDA device. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/base/device.h"
#include "core/base/philox.h"
#include "kernels/attention.h"
#include "kernels/kernels.h"
#include "kernels/timer.h"
#include "tests/support/check.h"

typedef struct big {
    int64_t b, h, hkv, lq, lk, d;
    int gate; /* 0 none, 1 elementwise, 2 per head */
    lact_attn_args a;
    int32_t seq[4]; /* packed lengths, 0-terminated */
} big;

static const big bigs[] = {
    {2, 4, 2, 300, 300, 64, 1, {LACT_ATTN_CAUSAL, 0, 0, 0}, {0}},
    {1, 2, 2, 257, 257, 128, 2, {LACT_ATTN_WINDOW, 50, 0, 0}, {0}},
    {1, 4, 1, 0, 0, 128, 1, {LACT_ATTN_BLOCK_CAUSAL, 0, 16, 0}, {100, 37, 190, 0}},
    {2, 2, 2, 33, 200, 64, 0, {LACT_ATTN_FULL, 0, 0, 0}, {0}},
    {1, 2, 1, 1, 513, 96, 2, {LACT_ATTN_CAUSAL, 0, 0, 0}, {0}},
};

enum { Q, K, V, G, CU, Y, LSE, DY, DQ, DK, DV, DG, N_T };

static void fill(lact_tensor *t, lact_rng *rng, float s) {
    for (int64_t i = 0; i < lact_tensor_numel(t); i++)
        ((float *)t->data)[i] = s * lact_rng_normal(rng);
}

static void round_bf16(lact_tensor *t) {
    for (int64_t i = 0; t->data && t->dtype == LACT_F32 && i < lact_tensor_numel(t); i++)
        ((float *)t->data)[i] = lact_bf16_to_f32(lact_f32_to_bf16(((float *)t->data)[i]));
}

static double rel_err(const lact_tensor *dev, const lact_tensor *ref) {
    lact_tensor h = {0};
    if (lact_tensor_clone(&h, dev, LACT_F32, LACT_CPU) != LACT_OK) return INFINITY;
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < lact_tensor_numel(ref); i++) {
        double a = ((float *)h.data)[i], b = ((float *)ref->data)[i];
        if (isnan(a)) num = INFINITY;
        num += (a - b) * (a - b), den += b * b;
    }
    lact_tensor_free(&h);
    return sqrt(num / fmax(den, 1e-30));
}

static void run_big(lact_ctx *cpu, lact_ctx *gpu, int c, lact_dtype dt) {
    const big *bc = &bigs[c];
    int n_seq = 0;
    int64_t lq = bc->lq, lk = bc->lk;
    while (n_seq < 4 && bc->seq[n_seq])
        n_seq++;
    if (n_seq) {
        lq = 0;
        for (int s = 0; s < n_seq; s++)
            lq += bc->seq[s];
        lk = lq;
    }
    int64_t qs[4] = {bc->b, bc->h, lq, bc->d}, ks[4] = {bc->b, bc->hkv, lk, bc->d};
    int64_t gs[4] = {bc->b, bc->h, lq, bc->gate == 2 ? 1 : bc->d}, cs = n_seq + 1;
    lact_tensor h[N_T], d[N_T];
    memset(h, 0, sizeof h);
    memset(d, 0, sizeof d);
    lact_rng rng = lact_rng_make(99, (uint64_t)c);
    CHECK_OK(lact_tensor_alloc(&h[Q], LACT_F32, LACT_CPU, 4, qs));
    CHECK_OK(lact_tensor_alloc(&h[K], LACT_F32, LACT_CPU, 4, ks));
    CHECK_OK(lact_tensor_alloc(&h[V], LACT_F32, LACT_CPU, 4, ks));
    CHECK_OK(lact_tensor_alloc(&h[DY], LACT_F32, LACT_CPU, 4, qs));
    fill(&h[Q], &rng, 1.0f), fill(&h[K], &rng, 1.0f), fill(&h[V], &rng, 1.0f);
    fill(&h[DY], &rng, 1.0f);
    if (bc->gate) {
        CHECK_OK(lact_tensor_alloc(&h[G], LACT_F32, LACT_CPU, 4, gs));
        fill(&h[G], &rng, 1.5f);
    }
    if (n_seq) {
        CHECK_OK(lact_tensor_alloc(&h[CU], LACT_I32, LACT_CPU, 1, &cs));
        int32_t *cu = h[CU].data;
        for (int s = 0; s <= n_seq; s++)
            cu[s] = s ? cu[s - 1] + bc->seq[s - 1] : 0;
    }
    int inputs[] = {Q, K, V, G, DY};
    for (int j = 0; j < 5; j++) {
        if (dt == LACT_BF16) round_bf16(&h[inputs[j]]);
        if (h[inputs[j]].data)
            CHECK_OK(lact_tensor_clone(&d[inputs[j]], &h[inputs[j]], dt, LACT_CUDA));
    }
    if (n_seq) CHECK_OK(lact_tensor_clone(&d[CU], &h[CU], LACT_I32, LACT_CUDA));
    const lact_tensor *like[] = {
        [Y] = &h[Q], [LSE] = &h[Q], [DQ] = &h[Q], [DK] = &h[K], [DV] = &h[V], [DG] = &h[G]};
    for (int j = Y; j < N_T; j++) {
        if (j == DY || (j == DG && !bc->gate)) continue;
        int nd = j == LSE ? 3 : 4;
        CHECK_OK(lact_tensor_alloc(&h[j], LACT_F32, LACT_CPU, nd, like[j]->shape));
        CHECK_OK(lact_tensor_alloc(&d[j], j == LSE ? LACT_F32 : dt, LACT_CUDA, nd, like[j]->shape));
    }
    const lact_tensor *hg = bc->gate ? &h[G] : NULL, *dg_in = bc->gate ? &d[G] : NULL;
    const lact_tensor *hcu = n_seq ? &h[CU] : NULL, *dcu = n_seq ? &d[CU] : NULL;
    CHECK_OK(lact_attention_forward(cpu, &h[Y], &h[LSE], &h[Q], &h[K], &h[V], hg, hcu, &bc->a));
    CHECK_OK(lact_attention_backward(cpu, &h[DQ], &h[DK], &h[DV], bc->gate ? &h[DG] : NULL, &h[DY],
                                     &h[Q], &h[K], &h[V], hg, hcu, &h[Y], &h[LSE], &bc->a));
    CHECK_OK(lact_attention_forward(gpu, &d[Y], &d[LSE], &d[Q], &d[K], &d[V], dg_in, dcu, &bc->a));
    CHECK_OK(lact_attention_backward(gpu, &d[DQ], &d[DK], &d[DV], bc->gate ? &d[DG] : NULL, &d[DY],
                                     &d[Q], &d[K], &d[V], dg_in, dcu, &d[Y], &d[LSE], &bc->a));
    CHECK_OK(lact_ctx_sync(gpu));
    double tol = dt == LACT_BF16 ? 2e-2 : 1e-5;
    static const char *names[N_T] = {
        [Y] = "y", [LSE] = "lse", [DQ] = "d_q", [DK] = "d_k", [DV] = "d_v", [DG] = "d_g"};
    int outs[] = {Y, LSE, DQ, DK, DV, DG};
    for (int j = 0; j < 6; j++) {
        if (!h[outs[j]].data) continue;
        double e = rel_err(&d[outs[j]], &h[outs[j]]);
        printf("  attention big %d %-4s %-4s rel err %.3e%s\n", c, dt == LACT_BF16 ? "bf16" : "f32",
               names[outs[j]], e, e <= tol ? "" : "  FAIL");
        CHECK_MSG(e <= tol, "big case %d: %s rel err %.3g > %.3g", c, names[outs[j]], e, tol);
    }
    for (int j = 0; j < N_T; j++)
        lact_tensor_free(&h[j]), lact_tensor_free(&d[j]);
}

/* Forward and backward time of a long causal bf16 case. */
static void time_long(lact_ctx *gpu) {
    int64_t s[4] = {1, 16, 4096, 128};
    lact_tensor q = {0}, y = {0}, lse = {0}, dq = {0}, dk = {0}, dv = {0};
    CHECK_OK(lact_tensor_alloc(&q, LACT_BF16, LACT_CUDA, 4, s));
    CHECK_OK(lact_tensor_alloc(&y, LACT_BF16, LACT_CUDA, 4, s));
    CHECK_OK(lact_tensor_alloc(&dq, LACT_BF16, LACT_CUDA, 4, s));
    CHECK_OK(lact_tensor_alloc(&dk, LACT_BF16, LACT_CUDA, 4, s));
    CHECK_OK(lact_tensor_alloc(&dv, LACT_BF16, LACT_CUDA, 4, s));
    CHECK_OK(lact_tensor_alloc(&lse, LACT_F32, LACT_CUDA, 3, s));
    CHECK_OK(lact_fill_uniform(gpu, &q, 1, 1, -1.0f, 1.0f));
    lact_attn_args a = {LACT_ATTN_CAUSAL, 0, 0, 0};
    lact_timer t;
    double ms_f = 0.0, ms_b = 0.0;
    CHECK_OK(lact_timer_init(&t, gpu));
    CHECK_OK(lact_attention_forward(gpu, &y, &lse, &q, &q, &q, NULL, NULL, &a));
    CHECK_OK(lact_timer_start(&t));
    CHECK_OK(lact_attention_forward(gpu, &y, &lse, &q, &q, &q, NULL, NULL, &a));
    CHECK_OK(lact_timer_stop(&t, &ms_f));
    CHECK_OK(lact_timer_start(&t));
    CHECK_OK(lact_attention_backward(gpu, &dq, &dk, &dv, NULL, &y, &q, &q, &q, NULL, NULL, &y, &lse,
                                     &a));
    CHECK_OK(lact_timer_stop(&t, &ms_b));
    double flops = 4.0 * 4096 * 4096 * 128 * 16 / 2;
    printf("  attention causal bf16 [1,16,4096,128]: forward %.2f ms (%.1f TFLOP/s), backward "
           "%.2f ms (%.1f TFLOP/s at 2.5x)\n",
           ms_f, flops / ms_f * 1e-9, ms_b, 2.5 * flops / ms_b * 1e-9);
    lact_timer_free(&t);
    lact_tensor *all[] = {&q, &y, &lse, &dq, &dk, &dv};
    for (int j = 0; j < 6; j++)
        lact_tensor_free(all[j]);
}

int main(void) {
    if (!lact_cuda_available()) return check_skip("attention_cuda", "no CUDA device");
    lact_ctx cpu, gpu;
    CHECK_OK(lact_ctx_init(&cpu, LACT_CPU, 0));
    CHECK_OK(lact_ctx_init(&gpu, LACT_CUDA, 0));
    for (int c = 0; c < (int)(sizeof bigs / sizeof bigs[0]); c++) {
        run_big(&cpu, &gpu, c, LACT_F32);
        run_big(&cpu, &gpu, c, LACT_BF16);
    }
    time_long(&gpu);
    lact_ctx_free(&gpu);
    lact_ctx_free(&cpu);
    return check_summary("kernels_attention_cuda");
}
