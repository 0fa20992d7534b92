/* The parameter store: one allocation, unique names, deterministic init
 * independent of the declaration order, save/load round trip, zero_grad,
 * optimizer state. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/nn/params.h"
#include "tests/support/check.h"

static const char *names[4] = {"layers.0.attn.wq", "layers.0.attn.q_norm", "layers.1.w0", "head.b"};
static const int64_t shapes[4][3] = {{64, 32, 0}, {8, 0, 0}, {2, 4, 3}, {5, 0, 0}};
static const int ndims[4] = {2, 1, 3, 1};

static lact_init init_of(int i) {
    switch (i) {
    case 0: return lact_init_normal(0.5f);
    case 1: return lact_init_ones();
    case 2: return lact_init_normal(0.1f);
    default: return lact_init_constant(0.25f);
    }
}

/* Declares the four parameters in the order given. */
static lact_status make(lact_params *p, const int *order, lact_ctx *ctx, uint64_t seed) {
    lact_params_init(p, LACT_CPU);
    for (int k = 0; k < 4; k++) {
        int i = order[k];
        LACT_TRY(lact_params_declare(p, names[i], ndims[i], shapes[i], init_of(i), NULL));
    }
    LACT_TRY(lact_params_alloc(p));
    return lact_params_init_values(ctx, p, seed);
}

static bool same_values(lact_params *a, lact_params *b) {
    for (int i = 0; i < lact_params_count(a); i++) {
        lact_param *pa = lact_params_at(a, i);
        int j = lact_params_find(b, pa->name);
        if (j < 0) return false;
        lact_param *pb = lact_params_at(b, j);
        if (lact_tensor_nbytes(&pa->w) != lact_tensor_nbytes(&pb->w) ||
            memcmp(pa->w.data, pb->w.data, lact_tensor_nbytes(&pa->w)) != 0)
            return false;
    }
    return true;
}

int main(void) {
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    int fwd[4] = {0, 1, 2, 3}, rev[4] = {3, 2, 1, 0};
    lact_params a, b, c;
    CHECK_OK(make(&a, fwd, &ctx, 42));
    CHECK_OK(make(&b, rev, &ctx, 42));
    CHECK_OK(make(&c, fwd, &ctx, 43));

    /* One block: every view inside it, 256-byte aligned, none overlapping;
     * the matrices first (declaration order), then the vectors. */
    for (int i = 0; i < lact_params_count(&a); i++) {
        lact_param *p = lact_params_at(&a, i);
        float *w = p->w.data, *g = p->g.data;
        int64_t n = lact_tensor_numel(&p->w);
        CHECK(w >= a.weights && w + n <= a.weights + a.padded);
        CHECK(g - a.grads == w - a.weights);
        CHECK(((uintptr_t)w % 256) == 0);
        if (p->ndim >= 2)
            CHECK(p->offset + n <= a.matrix_end);
        else
            CHECK(p->offset >= a.matrix_end);
        for (int j = 0; j < i; j++) {
            lact_param *q = lact_params_at(&a, j);
            CHECK(p->offset >= q->offset + lact_tensor_numel(&q->w) || q->offset >= p->offset + n);
            if ((q->ndim >= 2) == (p->ndim >= 2)) CHECK(q->offset < p->offset);
        }
    }
    CHECK(a.matrix_end == 64 * 32 + 64); /* wq, then w0 (24, padded to 64) */
    CHECK(a.numel == 64 * 32 + 8 + 24 + 5);
    CHECK(lact_params_bytes(&a) == (size_t)a.padded * 4 * 2);

    /* Deterministic, independent of order, dependent on the seed. */
    CHECK(same_values(&a, &b));
    CHECK(!same_values(&a, &c));
    lact_param *wq = lact_params_at(&a, lact_params_find(&a, "layers.0.attn.wq"));
    double s = 0, s2 = 0;
    int64_t n = lact_tensor_numel(&wq->w);
    for (int64_t i = 0; i < n; i++) {
        double v = ((float *)wq->w.data)[i];
        s += v;
        s2 += v * v;
    }
    double sd = sqrt(s2 / n - (s / n) * (s / n));
    CHECK_NEAR(sd, 0.5, 0.05);
    CHECK_NEAR(s / n, 0.0, 0.05);
    lact_param *qn = lact_params_at(&a, lact_params_find(&a, "layers.0.attn.q_norm"));
    lact_param *hb = lact_params_at(&a, lact_params_find(&a, "head.b"));
    for (int i = 0; i < 8; i++) CHECK(((float *)qn->w.data)[i] == 1.0f);
    for (int i = 0; i < 5; i++) CHECK(((float *)hb->w.data)[i] == 0.25f);
    CHECK(lact_params_stream("a.b") != lact_params_stream("a.c"));

    /* Errors: duplicates, late declarations, bad shapes. */
    lact_params d;
    lact_params_init(&d, LACT_CPU);
    int64_t sh[1] = {3}, bad[1] = {0};
    CHECK_OK(lact_params_declare(&d, "x", 1, sh, lact_init_zeros(), NULL));
    CHECK_FAILS(lact_params_declare(&d, "x", 1, sh, lact_init_zeros(), NULL), LACT_E_ARG);
    CHECK_FAILS(lact_params_declare(&d, "y", 1, bad, lact_init_zeros(), NULL), LACT_E_ARG);
    CHECK_FAILS(lact_params_declare(&d, "z", 1, sh, lact_init_normal(-1.0f), NULL), LACT_E_ARG);
    CHECK_OK(lact_params_alloc(&d));
    CHECK_FAILS(lact_params_declare(&d, "w", 1, sh, lact_init_zeros(), NULL), LACT_E_ARG);
    lact_params_free(&d);

    /* zero_grad, optimizer state. */
    ((float *)wq->g.data)[7] = 3.0f;
    CHECK_OK(lact_params_zero_grad(&a));
    CHECK(((float *)wq->g.data)[7] == 0.0f);
    CHECK_OK(lact_params_alloc_state(&a, 2));
    CHECK((float *)wq->state[1].data - (float *)wq->state[0].data == a.padded);
    CHECK(((float *)wq->state[1].data)[5] == 0.0f);
    CHECK(lact_params_bytes(&a) == (size_t)a.padded * 4 * 4);

    /* Save / load round trip by name, into a store declared in another order. */
    char path[] = "/tmp/lact_params_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    CHECK_OK(lact_params_save(&a, path, 0, NULL, NULL));
    CHECK(!same_values(&a, &c));
    lact_params e;
    int order_e[4] = {2, 0, 3, 1};
    CHECK_OK(make(&e, order_e, &ctx, 7));
    CHECK(!same_values(&a, &e));
    CHECK_OK(lact_params_load(&e, path, true));
    CHECK(same_values(&a, &e));
    /* A model with a parameter the file lacks, or of another shape, fails;
     * a file with extra tensors fails only when strict. */
    lact_params f;
    lact_params_init(&f, LACT_CPU);
    int64_t wrong[2] = {32, 64};
    CHECK_OK(lact_params_declare(&f, "layers.0.attn.wq", 2, wrong, lact_init_zeros(), NULL));
    CHECK_OK(lact_params_alloc(&f));
    CHECK_FAILS(lact_params_load(&f, path, false), LACT_E_FORMAT);
    lact_params_free(&f);
    lact_params_init(&f, LACT_CPU);
    CHECK_OK(lact_params_declare(&f, "head.b", 1, shapes[3], lact_init_zeros(), NULL));
    CHECK_OK(lact_params_alloc(&f));
    CHECK_FAILS(lact_params_load(&f, path, true), LACT_E_FORMAT);
    CHECK_OK(lact_params_load(&f, path, false));
    CHECK(((float *)lact_params_at(&f, 0)->w.data)[4] == 0.25f);
    lact_params_free(&f);
    lact_params_init(&f, LACT_CPU);
    CHECK_OK(lact_params_declare(&f, "missing", 1, sh, lact_init_zeros(), NULL));
    CHECK_OK(lact_params_alloc(&f));
    CHECK_FAILS(lact_params_load(&f, path, false), LACT_E_NOT_FOUND);
    lact_params_free(&f);
    unlink(path);

    lact_params_free(&a);
    lact_params_free(&b);
    lact_params_free(&c);
    lact_params_free(&e);
    lact_ctx_free(&ctx);
    return check_summary("nn_params");
}
