/* Table row: softmax attention with an optional output gate
 * (kernels/attention.h). */
#include "kernels/attention.h"
#include "kernels/table/rows.h"

enum { IN_Q, IN_K, IN_V, IN_G, IN_CU };
enum { P_MASK, P_WINDOW, P_BLOCK, P_SCALE };

static lact_attn_args attn_args(const double *p) {
    return (lact_attn_args){
        .mask = (lact_attn_mask)(int)p[P_MASK],
        .window = (int64_t)p[P_WINDOW],
        .block = (int64_t)p[P_BLOCK],
        .scale = (float)p[P_SCALE],
    };
}

static lact_status attention_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "attention";
    const lact_tensor *q = &in[IN_Q];
    LACT_TRY(lact_optab_need(op, "q", q, OPTAB_ACT, q->device));
    LACT_TRY(lact_optab_need(op, "k", &in[IN_K], OPTAB_ACT, q->device));
    LACT_TRY(lact_optab_need(op, "v", &in[IN_V], OPTAB_ACT, q->device));
    LACT_TRY(lact_optab_maybe(op, "g", &in[IN_G], OPTAB_ACT, q->device));
    LACT_TRY(lact_optab_maybe(op, "cu_seqlens", &in[IN_CU], OPTAB_I32, q->device));
    lact_attn_args a = attn_args(p);
    LACT_TRY(lact_attention_check_shapes(op, q, &in[IN_K], &in[IN_V], lact_optab_opt(&in[IN_G]),
                                         lact_optab_opt(&in[IN_CU]), &a));
    out[0] = lact_optab_out(q->device, q->dtype, 4, q->shape);
    out[1] = lact_optab_out(q->device, LACT_F32, 3, q->shape);
    return LACT_OK;
}

static lact_status attention_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                                 const double *p) {
    lact_attn_args a = attn_args(p);
    return lact_attention_forward(ctx, &out[0], &out[1], &in[IN_Q], &in[IN_K], &in[IN_V],
                                  lact_optab_opt(&in[IN_G]), lact_optab_opt(&in[IN_CU]), &a);
}

static lact_status attention_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                                 const lact_tensor *in, const lact_tensor *out, const double *p) {
    lact_attn_args a = attn_args(p);
    return lact_attention_backward(ctx, lact_optab_grad(d_in, in, IN_Q),
                                   lact_optab_grad(d_in, in, IN_K), lact_optab_grad(d_in, in, IN_V),
                                   lact_optab_grad(d_in, in, IN_G), &d_out[0], &in[IN_Q], &in[IN_K],
                                   &in[IN_V], lact_optab_opt(&in[IN_G]), lact_optab_opt(&in[IN_CU]),
                                   &out[0], &out[1], &a);
}

/* One test case. gate: 0 none, 1 elementwise, 2 per head. seq: lengths of
 * packed sequences (0-terminated; none: B batches of Lq queries, Lk keys). */
typedef struct attn_case {
    int64_t b, h, hkv, lq, lk, d;
    int gate;
    lact_attn_mask mask;
    int64_t window, block;
    double scale;
    int32_t seq[4];
} attn_case;

/* Odd lengths (none a multiple of 64), GQA, both gates, every mask,
 * queries that are a suffix of the keys, and packed sequences. */
static const attn_case attn_cases[] = {
    {2, 2, 2, 13, 13, 8, 0, LACT_ATTN_FULL, 0, 0, 0, {0}},
    {1, 4, 2, 67, 67, 16, 1, LACT_ATTN_CAUSAL, 0, 0, 0, {0}},
    {1, 2, 1, 70, 70, 32, 2, LACT_ATTN_WINDOW, 9, 0, 0, {0}},
    {2, 2, 2, 37, 37, 8, 1, LACT_ATTN_BLOCK_CAUSAL, 0, 8, 0, {0}},
    {1, 4, 2, 5, 41, 64, 0, LACT_ATTN_CAUSAL, 0, 0, 0, {0}},
    {1, 2, 1, 0, 0, 16, 1, LACT_ATTN_CAUSAL, 0, 0, 0, {17, 5, 26, 0}},
    {1, 4, 2, 0, 0, 8, 2, LACT_ATTN_WINDOW, 4, 0, 0, {11, 30, 7, 0}},
    {1, 2, 2, 9, 33, 8, 2, LACT_ATTN_WINDOW, 6, 0, 0, {0}},
    {2, 2, 1, 10, 29, 8, 1, LACT_ATTN_BLOCK_CAUSAL, 0, 4, 0.3, {0}},
    {1, 3, 3, 1, 23, 8, 0, LACT_ATTN_FULL, 0, 0, 0, {0}},
    {1, 2, 2, 0, 0, 8, 0, LACT_ATTN_BLOCK_CAUSAL, 0, 5, 0, {13, 1, 20, 0}},
    {1, 2, 1, 0, 0, 8, 1, LACT_ATTN_FULL, 0, 0, 0, {6, 15, 10, 0}},
    {1, 2, 1, 45, 45, 128, 1, LACT_ATTN_CAUSAL, 0, 0, 0, {0}},
};
#define N_ATTN_CASES ((int)(sizeof attn_cases / sizeof attn_cases[0]))

static bool attention_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    if (c < 0 || c >= N_ATTN_CASES) return false;
    const attn_case *ac = &attn_cases[c];
    lact_rng rng = lact_rng_make(seed, 1700 + (uint64_t)c);
    int n_seq = 0;
    int64_t lq = ac->lq, lk = ac->lk;
    while (n_seq < 4 && ac->seq[n_seq] > 0)
        n_seq++;
    if (n_seq) {
        lq = 0;
        for (int s = 0; s < n_seq; s++)
            lq += ac->seq[s];
        lk = lq;
    }
    int64_t qs[4] = {ac->b, ac->h, lq, ac->d}, ks[4] = {ac->b, ac->hkv, lk, ac->d};
    int64_t gs[4] = {ac->b, ac->h, lq, ac->gate == 2 ? 1 : ac->d}, cs = n_seq + 1;
    bool ok = lact_optab_rand(&in[IN_Q], &rng, 4, qs, -1.0f, 1.0f) &&
              lact_optab_rand(&in[IN_K], &rng, 4, ks, -1.0f, 1.0f) &&
              lact_optab_randn(&in[IN_V], &rng, 4, ks, 1.0f) &&
              (!ac->gate || lact_optab_rand(&in[IN_G], &rng, 4, gs, -2.0f, 2.0f)) &&
              (!n_seq || lact_tensor_alloc(&in[IN_CU], LACT_I32, LACT_CPU, 1, &cs) == LACT_OK);
    if (!ok) {
        lact_optab_free(in, IN_CU + 1);
        return false;
    }
    int32_t *cu = n_seq ? in[IN_CU].data : NULL;
    for (int s = 0; cu && s <= n_seq; s++)
        cu[s] = s == 0 ? 0 : cu[s - 1] + ac->seq[s - 1];
    p[P_MASK] = ac->mask;
    p[P_WINDOW] = (double)ac->window;
    p[P_BLOCK] = (double)ac->block;
    p[P_SCALE] = ac->scale;
    return true;
}

const lact_op_def lact_op_row_attention = {
    .name = "attention",
    .summary = "y = softmax(q k^T * scale + mask) v * sigmoid(g); lse saved",
    .inputs = {"q", "k", "v", "?g", "?cu_seqlens"},
    .outputs = {"y", "lse"},
    .n_diff_outputs = 1,
    .grad_inputs = 0xF,
    .params =
        {
            {"mask", 1, "0 full, 1 causal, 2 sliding window, 3 block-causal"},
            {"window", 0, "window mask: keys p - window < j <= p"},
            {"block", 0, "block-causal mask: block size"},
            {"scale", 0, "score scale (0 = 1/sqrt(d))"},
        },
    .plan = attention_plan,
    .forward = attention_fwd,
    .backward = attention_bwd,
    .make_case = attention_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 2e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};
