/* The CUDA attention against the CPU reference on cases larger than the
 * table's (several key tiles, head dims 64, 96, 128 and 256, packed sequences,
 * GQA, both gates, every mask, Lq < Lk), in F32 (CUDA-core kernels) and
 * BF16 (tensor-core kernels for d 64 and 128), forward and backward, with
 * the outputs poisoned before each run; then a timing table of long BF16
 * cases. Where the Hopper kernels (wgmma) run, every BF16 case runs four
 * times and the table three: with them (the fused backward), with them and
 * LACT_ATTN_DETERMINISTIC=1 (the two-kernel backward, whose second run
 * must repeat the first bit for bit), with them, LACT_ATTN_SECTION=3 and
 * LACT_ATTN_GRID=5 (cases only), and with LACT_ATTN_WGMMA=0 and
 * LACT_ATTN_WGMMA_BWD=0 (mma.sync).
 * Skips (77) without a CUDA device. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/base/device.h"
#include "core/base/philox.h"
#include "kernels/attention.h"
#include "kernels/kernels.h"
#include "kernels/timer.h"
#include "tests/support/check.h"
#if LACT_WITH_CUDA
#include "kernels/cuda/attention_cuda.h"
#endif

/* The BF16 kernels to run: the Hopper forward and backward where they are
 * active (fused, and deterministic through LACT_ATTN_DETERMINISTIC=1; the
 * forward once more with three (batch, head) pairs a section of its item
 * order, LACT_ATTN_SECTION=3, on a grid of five blocks, LACT_ATTN_GRID=5,
 * so that each block runs many items: the test's shapes reach neither by
 * themselves), and always the mma.sync ones (forced through the
 * environment switches LACT_ATTN_WGMMA=0 and LACT_ATTN_WGMMA_BWD=0). */
enum { KERN_DEFAULT, KERN_DETERMINISTIC, KERN_SECTIONS, KERN_MMA_SYNC, KERN_COUNT };
static bool wgmma_active, wgmma_bwd_active;
static int n_kernels(void) {
    return wgmma_active ? KERN_COUNT : 1;
}
static const char *kern_name(int kern) {
    if (kern == KERN_MMA_SYNC || !wgmma_active) return "mma.sync";
    if (kern == KERN_SECTIONS) return "wgmma-s3";
    return kern == KERN_DETERMINISTIC ? "wgmma-det" : "wgmma";
}
static void select_kernel(int kern) {
    if (!wgmma_active) return; /* one kernel only: leave the caller's environment alone */
    if (kern == KERN_MMA_SYNC) {
        setenv("LACT_ATTN_WGMMA", "0", 1);
        setenv("LACT_ATTN_WGMMA_BWD", "0", 1);
    } else {
        unsetenv("LACT_ATTN_WGMMA");
        unsetenv("LACT_ATTN_WGMMA_BWD");
    }
    if (kern == KERN_DETERMINISTIC)
        setenv("LACT_ATTN_DETERMINISTIC", "1", 1);
    else
        unsetenv("LACT_ATTN_DETERMINISTIC");
    if (kern == KERN_SECTIONS) {
        setenv("LACT_ATTN_SECTION", "3", 1);
        setenv("LACT_ATTN_GRID", "5", 1);
    } else {
        unsetenv("LACT_ATTN_SECTION");
        unsetenv("LACT_ATTN_GRID");
    }
}

typedef struct big {
    int64_t b, h, hkv, lq, lk, d;
    int gate; /* 0 none, 1 elementwise, 2 per head */
    lact_attn_args a;
    int32_t seq[4]; /* packed lengths, 0-terminated */
    int offset_out; /* d_q, d_k, d_v only 4-byte aligned: views 2 elements into larger buffers */
} big;

static const big bigs[] = {
    {2, 4, 2, 300, 300, 64, 1, {LACT_ATTN_CAUSAL, 0, 0, 0}, {0}, 0},
    {1, 2, 2, 257, 257, 128, 2, {LACT_ATTN_WINDOW, 50, 0, 0}, {0}, 0},
    {1, 4, 1, 0, 0, 128, 1, {LACT_ATTN_BLOCK_CAUSAL, 0, 16, 0}, {100, 37, 190, 0}, 0},
    {2, 2, 2, 33, 200, 64, 0, {LACT_ATTN_FULL, 0, 0, 0}, {0}, 0},
    {1, 2, 1, 1, 513, 96, 2, {LACT_ATTN_CAUSAL, 0, 0, 0}, {0}, 0},
    {1, 4, 2, 150, 150, 256, 1, {LACT_ATTN_CAUSAL, 0, 0, 0}, {0}, 0},
    {1, 2, 2, 0, 0, 256, 0, {LACT_ATTN_BLOCK_CAUSAL, 0, 32, 0}, {70, 90, 0}, 0},
};

/* BF16 only: lengths of the tensor-core kernels' many tiles. */
static const big bigs_bf16[] = {
    {1, 4, 2, 1000, 1000, 128, 1, {LACT_ATTN_CAUSAL, 0, 0, 0}, {0}, 0},
    {1, 2, 2, 1000, 1000, 64, 2, {LACT_ATTN_WINDOW, 512, 0, 0}, {0}, 0},
    {1, 4, 4, 4096, 4096, 128, 0, {LACT_ATTN_CAUSAL, 0, 0, 0}, {0}, 0},
    {1, 4, 2, 4096, 4096, 64, 1, {LACT_ATTN_BLOCK_CAUSAL, 0, 256, 0}, {0}, 0},
    {1, 4, 1, 0, 0, 128, 2, {LACT_ATTN_WINDOW, 512, 0, 0}, {1000, 37, 2500, 0}, 0},
    {1, 2, 2, 0, 0, 64, 1, {LACT_ATTN_CAUSAL, 0, 0, 0.1f}, {77, 1100, 0}, 0},
    {2, 2, 2, 700, 1000, 64, 0, {LACT_ATTN_CAUSAL, 0, 0, 0}, {0}, 0},
    {1, 4, 2, 300, 4096, 128, 1, {LACT_ATTN_BLOCK_CAUSAL, 0, 256, 0}, {0}, 0},
    {1, 4, 4, 1000, 1000, 64, 0, {LACT_ATTN_FULL, 0, 0, 0}, {0}, 0},
    {1, 8, 2, 200, 1500, 128, 1, {LACT_ATTN_FULL, 0, 0, 0}, {0}, 0},
    {1, 4, 2, 0, 0, 64, 2, {LACT_ATTN_WINDOW, 300, 0, 0}, {513, 1, 900, 0}, 0},
    {2, 2, 1, 1, 777, 128, 2, {LACT_ATTN_CAUSAL, 0, 0, 0}, {0}, 0},
    {2, 2, 2, 1030, 1030, 128, 0, {LACT_ATTN_BLOCK_CAUSAL, 0, 100, 0}, {0}, 0},
    {1, 4, 2, 1500, 1500, 128, 0, {LACT_ATTN_WINDOW, 300, 0, 0}, {0}, 0},
    {1, 4, 2, 1000, 1000, 256, 2, {LACT_ATTN_WINDOW, 300, 0, 0}, {0}, 0},
    {1, 2, 1, 200, 700, 256, 1, {LACT_ATTN_FULL, 0, 0, 0}, {0}, 0},
    {1, 2, 2, 600, 600, 128, 1, {LACT_ATTN_CAUSAL, 0, 0, -0.09f}, {0}, 0}, /* negative scale */
    {1, 4, 2, 500, 500, 128, 0, {LACT_ATTN_CAUSAL, 0, 0, 0}, {0}, 1},
    {1, 2, 1, 300, 300, 64, 1, {LACT_ATTN_WINDOW, 100, 0, 0}, {0}, 1},
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

/* A second backward with the same inputs gives the same gradients, bit for
 * bit. */
static void check_repeatable(lact_ctx *gpu, lact_tensor *d, const big *bc, const lact_tensor *dg_in,
                             const lact_tensor *dcu, int c) {
    const int outs[] = {DQ, DK, DV};
    lact_tensor first[3] = {{0}}, again = {0};
    for (int j = 0; j < 3; j++)
        CHECK_OK(lact_tensor_clone(&first[j], &d[outs[j]], d[outs[j]].dtype, LACT_CPU));
    CHECK_OK(lact_attention_backward(gpu, &d[DQ], &d[DK], &d[DV], bc->gate ? &d[DG] : NULL, &d[DY],
                                     &d[Q], &d[K], &d[V], dg_in, dcu, &d[Y], &d[LSE], &bc->a));
    for (int j = 0; j < 3; j++) {
        CHECK_OK(lact_tensor_clone(&again, &d[outs[j]], d[outs[j]].dtype, LACT_CPU));
        CHECK_MSG(memcmp(again.data, first[j].data, lact_tensor_nbytes(&again)) == 0,
                  "big case %d (wgmma-det): gradient %d differs between two runs", c, j);
        lact_tensor_free(&again), lact_tensor_free(&first[j]);
    }
}

/* The two guard elements on each side of an offset gradient still hold
 * what they were filled with. */
static void check_guards(const lact_tensor *pad, const lact_tensor *ref, int c, const char *kern,
                         const char *name) {
    lact_tensor now = {0};
    CHECK_OK(lact_tensor_clone(&now, pad, LACT_F32, LACT_CPU));
    const int64_t n = lact_tensor_numel(ref);
    const float *a = now.data, *b = ref->data;
    bool same = a != NULL;
    for (int64_t i = 0; same && i < n; i += (i == 1 ? n - 3 : 1))
        same = a[i] == b[i];
    CHECK_MSG(same, "big case %d (%s): %s written outside its 4-byte-aligned view", c, kern, name);
    lact_tensor_free(&now);
}

static void run_big(lact_ctx *cpu, lact_ctx *gpu, const big *bc, int c, lact_dtype dt) {
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
    lact_tensor h[N_T], d[N_T], pad[3], pad_ref[3];
    memset(h, 0, sizeof h);
    memset(d, 0, sizeof d);
    memset(pad, 0, sizeof pad);
    memset(pad_ref, 0, sizeof pad_ref);
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
        if (bc->offset_out && j >= DQ && j <= DV) {
            /* Two elements of guard on each side, filled with values the
             * kernels never write; the gradient is the view between them. */
            lact_tensor *p = &pad[j - DQ];
            const int64_t n = lact_tensor_numel(&h[j]) + 4;
            CHECK_OK(lact_tensor_alloc(p, dt, LACT_CUDA, 1, &n));
            CHECK_OK(lact_fill_uniform(gpu, p, 7, (uint64_t)j, -3e3f, -2e3f));
            CHECK_OK(lact_tensor_clone(&pad_ref[j - DQ], p, LACT_F32, LACT_CPU));
            d[j] = lact_tensor_view((char *)p->data + 2 * lact_dtype_size(dt), dt, LACT_CUDA, nd,
                                    like[j]->shape);
            continue;
        }
        CHECK_OK(lact_tensor_alloc(&d[j], j == LSE ? LACT_F32 : dt, LACT_CUDA, nd, like[j]->shape));
    }
    const lact_tensor *hg = bc->gate ? &h[G] : NULL, *dg_in = bc->gate ? &d[G] : NULL;
    const lact_tensor *hcu = n_seq ? &h[CU] : NULL, *dcu = n_seq ? &d[CU] : NULL;
    CHECK_OK(lact_attention_forward(cpu, &h[Y], &h[LSE], &h[Q], &h[K], &h[V], hg, hcu, &bc->a));
    CHECK_OK(lact_attention_backward(cpu, &h[DQ], &h[DK], &h[DV], bc->gate ? &h[DG] : NULL, &h[DY],
                                     &h[Q], &h[K], &h[V], hg, hcu, &h[Y], &h[LSE], &bc->a));
    const int n_kern = dt == LACT_BF16 ? n_kernels() : 1;
    for (int kern = 0; kern < n_kern; kern++) {
        select_kernel(kern);
        for (int j = Y; j < N_T; j++) /* poison: an unwritten element fails the check */
            if (j != DY && d[j].data)
                CHECK_OK(lact_fill_uniform(gpu, &d[j], 5, (uint64_t)j, 1e3f, 2e3f));
        CHECK_OK(
            lact_attention_forward(gpu, &d[Y], &d[LSE], &d[Q], &d[K], &d[V], dg_in, dcu, &bc->a));
        CHECK_OK(lact_attention_backward(gpu, &d[DQ], &d[DK], &d[DV], bc->gate ? &d[DG] : NULL,
                                         &d[DY], &d[Q], &d[K], &d[V], dg_in, dcu, &d[Y], &d[LSE],
                                         &bc->a));
        CHECK_OK(lact_ctx_sync(gpu));
        double tol = dt == LACT_BF16 ? 1e-2 : 1e-5;
        static const char *names[N_T] = {
            [Y] = "y", [LSE] = "lse", [DQ] = "d_q", [DK] = "d_k", [DV] = "d_v", [DG] = "d_g"};
        int outs[] = {Y, LSE, DQ, DK, DV, DG};
        for (int j = 0; j < 6; j++) {
            if (!h[outs[j]].data) continue;
            double e = rel_err(&d[outs[j]], &h[outs[j]]);
            printf("  attention case %2d %-4s %-8s %-4s rel err %.3e%s\n", c,
                   dt == LACT_BF16 ? "bf16" : "f32", dt == LACT_BF16 ? kern_name(kern) : "",
                   names[outs[j]], e, e <= tol ? "" : "  FAIL");
            CHECK_MSG(e <= tol, "big case %d (%s): %s rel err %.3g > %.3g", c,
                      dt == LACT_BF16 ? kern_name(kern) : "f32", names[outs[j]], e, tol);
        }
        if (dt == LACT_BF16 && wgmma_active && kern == KERN_DETERMINISTIC)
            check_repeatable(gpu, d, bc, dg_in, dcu, c);
        for (int j = 0; j < 3 && bc->offset_out; j++)
            check_guards(&pad[j], &pad_ref[j], c, kern_name(kern), names[DQ + j]);
    }
    select_kernel(KERN_DEFAULT);
    for (int j = 0; j < N_T; j++)
        lact_tensor_free(&h[j]), lact_tensor_free(&d[j]);
    for (int j = 0; j < 3; j++)
        lact_tensor_free(&pad[j]), lact_tensor_free(&pad_ref[j]);
}

static double median(double *x, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j - 1] > x[j]; j--) {
            double t = x[j];
            x[j] = x[j - 1], x[j - 1] = t;
        }
    return x[n / 2];
}

/* Forward and forward + backward of long bf16 cases, [B=4, H=16, L=8192,
 * d=128], then the same with d=64 (views of the same buffers). FLOPs: 4·d
 * per unmasked (query, key) pair and head for the forward; forward +
 * backward counted as 3.5× the forward (PyTorch's convention: the
 * backward's 5 products over the forward's 2). */
static void time_long(lact_ctx *gpu) {
    enum { REPS = 5, N_BUF = 9 }; /* q k v y dy dq dk dv, and lse */
    int64_t s[4] = {4, 16, 8192, 128};
    lact_tensor t[N_BUF];
    memset(t, 0, sizeof t);
    for (int j = 0; j < N_BUF - 1; j++) {
        CHECK_OK(lact_tensor_alloc(&t[j], LACT_BF16, LACT_CUDA, 4, s));
        CHECK_OK(lact_fill_uniform(gpu, &t[j], 11, (uint64_t)j, -1.0f, 1.0f));
    }
    CHECK_OK(lact_tensor_alloc(&t[N_BUF - 1], LACT_F32, LACT_CUDA, 3, s));
    static const struct {
        const char *name;
        lact_attn_args a;
    } cases[] = {{"causal", {LACT_ATTN_CAUSAL, 0, 0, 0}},
                 {"window 2048", {LACT_ATTN_WINDOW, 2048, 0, 0}},
                 {"block-causal 4096", {LACT_ATTN_BLOCK_CAUSAL, 0, 4096, 0}}};
    lact_timer tm;
    CHECK_OK(lact_timer_init(&tm, gpu));
    const int n_kern = n_kernels();
    for (int64_t d = 128; d >= 64; d -= 64) {
        int64_t sd[4] = {4, 16, 8192, d};
        lact_tensor v[N_BUF];
        for (int j = 0; j < N_BUF; j++)
            v[j] = lact_tensor_view(t[j].data, t[j].dtype, LACT_CUDA, j == N_BUF - 1 ? 3 : 4, sd);
        lact_tensor *q = &v[0], *k = &v[1], *vv = &v[2], *y = &v[3], *dy = &v[4], *dq = &v[5],
                    *dk = &v[6], *dv = &v[7], *lse = &v[8];
        printf("  attention bf16 [B=4, H=16, L=8192, d=%d]; FLOPs 4·d per unmasked pair, "
               "fwd+bwd = 3.5x fwd; median of %d\n",
               (int)d, REPS);
        printf("  %-18s %-9s %10s %10s %12s %12s\n", "mask", "kernels", "fwd ms", "fwd TF/s",
               "fwd+bwd ms", "f+b TF/s");
        for (int row = 0; row < 3 * n_kern; row++) {
            const int c = row / n_kern, kern = row % n_kern;
            const lact_attn_args *a = &cases[c].a;
            if (kern == KERN_SECTIONS) continue; /* a check, not a configuration to time */
            select_kernel(kern);
            double fwd[REPS], both[REPS];
            for (int r = -1; r < REPS; r++) { /* r = -1: warm-up */
                double ms_f = 0.0, ms_b = 0.0;
                CHECK_OK(lact_timer_start(&tm));
                CHECK_OK(lact_attention_forward(gpu, y, lse, q, k, vv, NULL, NULL, a));
                CHECK_OK(lact_timer_stop(&tm, &ms_f));
                CHECK_OK(lact_timer_start(&tm));
                CHECK_OK(lact_attention_backward(gpu, dq, dk, dv, NULL, dy, q, k, vv, NULL, NULL, y,
                                                 lse, a));
                CHECK_OK(lact_timer_stop(&tm, &ms_b));
                if (r >= 0) fwd[r] = ms_f, both[r] = ms_f + ms_b;
            }
            const double flops = 4.0 * (double)d * lact_attention_pairs(a, 8192) * 4 * 16;
            const double mf = median(fwd, REPS), mb = median(both, REPS);
            printf("  %-18s %-9s %10.3f %10.1f %12.3f %12.1f\n", cases[c].name, kern_name(kern), mf,
                   flops / mf * 1e-9, mb, 3.5 * flops / mb * 1e-9);
        }
    }
    select_kernel(KERN_DEFAULT);
    lact_timer_free(&tm);
    for (int j = 0; j < N_BUF; j++)
        lact_tensor_free(&t[j]);
}

/* ---- decode: one query per sequence against a cache, CUDA vs CPU ---- */

typedef struct dec_case {
    int64_t b, h, hkv, slots, d;
    int gate; /* 0 none, 1 elementwise, 2 per head */
    lact_attn_args a;
    int32_t lens[3]; /* per sequence (b ≤ 3) */
} dec_case;

static const dec_case decs[] = {
    {2, 4, 2, 700, 64, 1, {LACT_ATTN_CAUSAL, 0, 0, 0}, {700, 33}},
    {3, 4, 4, 64, 128, 2, {LACT_ATTN_WINDOW, 64, 0, 0}, {1, 64, 1000}}, /* ring of w slots */
    {1, 2, 1, 300, 256, 0, {LACT_ATTN_BLOCK_CAUSAL, 0, 128, 0}, {300}},
    {2, 8, 2, 5000, 128, 0, {LACT_ATTN_FULL, 0, 0, 0}, {5000, 4097}},
    {1, 3, 3, 40, 96, 1, {LACT_ATTN_CAUSAL, 0, 0, 0.25f}, {17}},
};

static void run_decode(lact_ctx *cpu, lact_ctx *gpu, const dec_case *dc, int c, lact_dtype dt) {
    int64_t qs[4] = {dc->b, dc->h, 1, dc->d}, cs[4] = {dc->b, dc->hkv, dc->slots, dc->d};
    int64_t gs[4] = {dc->b, dc->h, 1, dc->gate == 2 ? 1 : dc->d}, ls[3] = {dc->b, dc->h, 1};
    lact_tensor h[6] = {{0}}, dv[6] = {{0}}, y = {0}, lse = {0}, yd = {0}, lsed = {0};
    lact_rng rng = lact_rng_make(4242, 9000 + (uint64_t)c);
    const int64_t *shapes[4] = {qs, cs, cs, gs};
    bool ok = true;
    for (int i = 0; i < 4 && ok; i++) {
        if (i == 3 && !dc->gate) break;
        ok = lact_tensor_alloc(&h[i], LACT_F32, LACT_CPU, 4, shapes[i]) == LACT_OK;
        if (ok) fill(&h[i], &rng, 1.0f);
        if (ok && dt == LACT_BF16) round_bf16(&h[i]);
        if (ok) ok = lact_tensor_clone(&dv[i], &h[i], dt, LACT_CUDA) == LACT_OK;
    }
    int64_t nb = dc->b;
    lact_tensor lens_h = lact_tensor_view((void *)dc->lens, LACT_I32, LACT_CPU, 1, &nb);
    if (ok) ok = lact_tensor_clone(&dv[4], &lens_h, LACT_I32, LACT_CUDA) == LACT_OK;
    if (ok) ok = lact_tensor_alloc(&y, LACT_F32, LACT_CPU, 4, qs) == LACT_OK;
    if (ok) ok = lact_tensor_alloc(&lse, LACT_F32, LACT_CPU, 3, ls) == LACT_OK;
    if (ok) ok = lact_tensor_alloc(&yd, dt, LACT_CUDA, 4, qs) == LACT_OK;
    if (ok) ok = lact_tensor_alloc(&lsed, LACT_F32, LACT_CUDA, 3, ls) == LACT_OK;
    CHECK_MSG(ok, "decode case %d: set-up failed: %s", c, lact_errmsg());
    if (ok) {
        CHECK_OK(lact_attention_decode(cpu, &y, &lse, &h[0], &h[1], &h[2], dc->gate ? &h[3] : NULL,
                                       &lens_h, &dc->a));
        CHECK_OK(lact_attention_decode(gpu, &yd, &lsed, &dv[0], &dv[1], &dv[2],
                                       dc->gate ? &dv[3] : NULL, &dv[4], &dc->a));
        CHECK_OK(lact_ctx_sync(gpu));
        double ey = rel_err(&yd, &y), el = rel_err(&lsed, &lse);
        double tol = dt == LACT_F32 ? 1e-5 : 1e-2;
        printf("  decode case %d %-4s y rel err %.3e  lse rel err %.3e\n", c,
               dt == LACT_F32 ? "f32" : "bf16", ey, el);
        CHECK_MSG(ey <= tol && el <= 1e-5, "decode case %d: y %.3g lse %.3g (tol %.1g)", c, ey, el,
                  tol);
    }
    for (int i = 0; i < 6; i++)
        lact_tensor_free(&h[i]), lact_tensor_free(&dv[i]);
    lact_tensor_free(&y), lact_tensor_free(&lse), lact_tensor_free(&yd), lact_tensor_free(&lsed);
}

int main(void) {
    if (!lact_cuda_available()) return check_skip("attention_cuda", "no CUDA device");
    lact_ctx cpu, gpu;
    CHECK_OK(lact_ctx_init(&cpu, LACT_CPU, 0));
    CHECK_OK(lact_ctx_init(&gpu, LACT_CUDA, 0));
#if LACT_WITH_CUDA
    wgmma_active = lact_cuda_attention_wgmma_active();
    wgmma_bwd_active = lact_cuda_attention_wgmma_bwd_active();
    wgmma_active = wgmma_active || wgmma_bwd_active;
#endif
    printf("  bf16 kernels: %s%s; backward on wgmma: %s\n", kern_name(KERN_DEFAULT),
           wgmma_active ? " (and mma.sync through the environment switches)" : "",
           wgmma_bwd_active ? "yes" : "no");
    for (int c = 0; c < (int)(sizeof bigs / sizeof bigs[0]); c++) {
        run_big(&cpu, &gpu, &bigs[c], c, LACT_F32);
        run_big(&cpu, &gpu, &bigs[c], c, LACT_BF16);
    }
    const int n0 = (int)(sizeof bigs / sizeof bigs[0]);
    for (int c = 0; c < (int)(sizeof bigs_bf16 / sizeof bigs_bf16[0]); c++)
        run_big(&cpu, &gpu, &bigs_bf16[c], n0 + c, LACT_BF16);
    for (int c = 0; c < (int)(sizeof decs / sizeof decs[0]); c++) {
        run_decode(&cpu, &gpu, &decs[c], c, LACT_F32);
        run_decode(&cpu, &gpu, &decs[c], c, LACT_BF16);
    }
    time_long(&gpu);
    lact_ctx_free(&gpu);
    lact_ctx_free(&cpu);
    return check_summary("kernels_attention_cuda");
}
