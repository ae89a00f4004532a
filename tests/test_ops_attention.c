/* attention: finite-difference checks on odd shapes (plain, with a policy, through cls_attn),
 * the forward against a naive double-precision triple loop, the all-ones policy against the
 * plain softmax, the threaded path against a single thread, and shape errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "src/util/rng.h"
#include "support/gradcheck.h"

/* ---- the functions under check ---------------------------------------------------------- */

typedef struct att_args {
    size_t heads;
} att_args;

static ag_tensor *f_attn(ag_ctx *ctx, ag_tensor **in, void *user) {
    return ag_attention(ctx, in[0], ((att_args *)user)->heads, NULL, NULL);
}

static ag_tensor *f_attn_policy(ag_ctx *ctx, ag_tensor **in, void *user) {
    return ag_attention(ctx, in[0], ((att_args *)user)->heads, in[1], NULL);
}

static ag_tensor *f_cls(ag_ctx *ctx, ag_tensor **in, void *user) {
    ag_tensor *cls = NULL;
    ag_tensor *out = ag_attention(ctx, in[0], ((att_args *)user)->heads, NULL, &cls);
    return out ? cls : NULL;
}

static ag_tensor *f_cls_policy(ag_ctx *ctx, ag_tensor **in, void *user) {
    ag_tensor *cls = NULL;
    ag_tensor *out = ag_attention(ctx, in[0], ((att_args *)user)->heads, in[1], &cls);
    return out ? cls : NULL;
}

/* Both outputs at once, flattened into one vector by a test-only node, so the checker sees a
 * loss that uses out and cls_attn together (the accumulate-then-consume path of the op). */
static void both_backward(ag_ctx *ctx, ag_node *n) {
    size_t n0 = ag_numel(n->in[0]), n1 = ag_numel(n->in[1]);
    float *g0 = ag_grad(ctx, n->in[0]), *g1 = ag_grad(ctx, n->in[1]);
    for (size_t i = 0; i < n0; i++) g0[i] += n->out->grad[i];
    for (size_t i = 0; i < n1; i++) g1[i] += n->out->grad[n0 + i];
}

static ag_tensor *f_both_policy(ag_ctx *ctx, ag_tensor **in, void *user) {
    ag_tensor *cls = NULL;
    ag_tensor *out = ag_attention(ctx, in[0], ((att_args *)user)->heads, in[1], &cls);
    if (!out || !cls) return NULL;
    size_t n0 = ag_numel(out), n1 = ag_numel(cls);
    ag_tensor *y = ag_new1(ctx, n0 + n1);
    if (!y) return NULL;
    memcpy(y->data, out->data, n0 * sizeof(float));
    memcpy(y->data + n0, cls->data, n1 * sizeof(float));
    ag_record(ctx, "test_concat", both_backward, y, 2, (ag_tensor *[]){out, cls});
    return y;
}

/* ---- finite differences (reference: central differences in double on the float32 forward,
 * tolerance |a - n| <= 1e-3 + 1e-2 |n| with step 1e-2, the same as the linear op's checks) -- */

/* B=2, N=7, C=12: qkv [2,7,36]. Policy rows: cls always kept, some pruned, fractional values. */
static const float policy_binary[14] = {1, 1, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0};
static const float policy_fraction[14] = {1, 0.3f, 0.9f, 0.05f, 0.6f, 1, 0.5f, 1, 0.75f, 0.2f, 0, 0.45f, 1, 0.1f};

Test(ops_attention, gradcheck_three_heads) {
    att_args a = {3}; /* D = 4 */
    gc_input in[1] = {{3, {2, 7, 36}, true, NULL}};
    GRADCHECK(f_attn, 1, in, &a, 1e-2, 1e-3, 1e-2);
}

Test(ops_attention, gradcheck_one_head) {
    att_args a = {1}; /* D = 12 */
    gc_input in[1] = {{3, {2, 7, 36}, true, NULL}};
    GRADCHECK(f_attn, 1, in, &a, 1e-2, 1e-3, 1e-2);
}

Test(ops_attention, gradcheck_binary_policy_qkv_and_policy) {
    att_args a = {3};
    gc_input in[2] = {{3, {2, 7, 36}, true, NULL}, {2, {2, 7}, true, policy_binary}};
    GRADCHECK(f_attn_policy, 2, in, &a, 1e-2, 1e-3, 1e-2);
}

Test(ops_attention, gradcheck_fractional_policy_qkv_and_policy) {
    att_args a = {3};
    gc_input in[2] = {{3, {2, 7, 36}, true, NULL}, {2, {2, 7}, true, policy_fraction}};
    GRADCHECK(f_attn_policy, 2, in, &a, 1e-2, 1e-3, 1e-2);
}

Test(ops_attention, gradcheck_fractional_policy_one_head) {
    att_args a = {1};
    gc_input in[2] = {{3, {2, 7, 36}, true, NULL}, {2, {2, 7}, true, policy_fraction}};
    GRADCHECK(f_attn_policy, 2, in, &a, 1e-2, 1e-3, 1e-2);
}

Test(ops_attention, gradcheck_cls_attn_output) {
    att_args a = {3};
    gc_input in[1] = {{3, {2, 7, 36}, true, NULL}};
    GRADCHECK(f_cls, 1, in, &a, 1e-2, 1e-3, 1e-2);
}

Test(ops_attention, gradcheck_cls_attn_with_policy) {
    att_args a = {3};
    gc_input in[2] = {{3, {2, 7, 36}, true, NULL}, {2, {2, 7}, true, policy_fraction}};
    GRADCHECK(f_cls_policy, 2, in, &a, 1e-2, 1e-3, 1e-2);
}

Test(ops_attention, gradcheck_out_and_cls_attn_together) {
    att_args a = {3};
    gc_input in[2] = {{3, {2, 7, 36}, true, NULL}, {2, {2, 7}, true, policy_binary}};
    GRADCHECK(f_both_policy, 2, in, &a, 1e-2, 1e-3, 1e-2);
}

Test(ops_attention, gradcheck_policy_only) {
    /* qkv is a constant: only the policy path of the backward runs. */
    att_args a = {3};
    gc_input in[2] = {{3, {2, 7, 36}, false, NULL}, {2, {2, 7}, true, policy_fraction}};
    GRADCHECK(f_attn_policy, 2, in, &a, 1e-2, 1e-3, 1e-2);
}

/* The official code does not detach the row max m: the output depends on it only through the
 * eps terms, so its gradient is O(eps) on ordinary rows. Here it is not: every patch token is
 * pruned (G = identity plus the cls column) and the scores are spread widely, so for many rows
 * exp(S_ii - m_i) is far below eps and the eps terms dominate the row. Only qkv is checked:
 * at P_j = 0 such a row's denominator is ~eps, so the output is far from linear in P_j over a
 * step of 1e-2 and a finite difference cannot see the (correct, ~1e6) derivative there. */
Test(ops_attention, gradcheck_policy_where_eps_terms_dominate) {
    att_args a = {3};
    static float qkv[2 * 7 * 36], pruned[14];
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 99u);
    for (size_t i = 0; i < sizeof qkv / sizeof *qkv; i++) qkv[i] = 3.0f * tpsc_rng_normal(&rng);
    for (int i = 0; i < 14; i++) pruned[i] = (i % 7 == 0) ? 1.0f : 0.0f;
    gc_input in[2] = {{3, {2, 7, 36}, true, qkv}, {2, {2, 7}, false, pruned}};
    GRADCHECK(f_attn_policy, 2, in, &a, 1e-2, 1e-3, 1e-2);
}

/* ---- naive reference: the official formulas term by term, in double -------------------- */

/* out [B,N,C] and cls [B,N-1] from qkv [B,N,3C]; policy [B,N] or NULL. */
static void reference(const float *qkv, const float *policy, size_t B, size_t N, size_t C, size_t H, double *out,
                      double *cls) {
    const size_t D = C / H;
    const double scale = 1.0 / sqrt((double)D), eps = 1e-6;
    double *s = malloc(N * sizeof(double));
    memset(cls, 0, B * (N - 1) * sizeof(double));
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < N; i++) {
                double m = -INFINITY, sum = 0.0;
                for (size_t j = 0; j < N; j++) {
                    double dot = 0.0;
                    for (size_t d = 0; d < D; d++)
                        dot += (double)qkv[(b * N + i) * 3 * C + h * D + d] * qkv[(b * N + j) * 3 * C + C + h * D + d];
                    s[j] = dot * scale;
                    if (s[j] > m) m = s[j];
                }
                for (size_t j = 0; j < N; j++) {
                    double g = 1.0;
                    if (policy) g = i == j ? 1.0 : policy[b * N + j];
                    s[j] = exp(s[j] - m) * g;
                    sum += s[j];
                }
                for (size_t j = 0; j < N; j++) s[j] = policy ? (s[j] + eps / (double)N) / (sum + eps) : s[j] / sum;
                if (i == 0)
                    for (size_t j = 1; j < N; j++) cls[b * (N - 1) + j - 1] += s[j] / (double)H;
                for (size_t d = 0; d < D; d++) {
                    double o = 0.0;
                    for (size_t j = 0; j < N; j++) o += s[j] * qkv[(b * N + j) * 3 * C + 2 * C + h * D + d];
                    out[(b * N + i) * C + h * D + d] = o;
                }
            }
    free(s);
}

static float *random_qkv(size_t n, unsigned seed) {
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = tpsc_rng_normal(&rng);
    return x;
}

/* Forward of ag_attention vs the double reference; returns the worst absolute differences. */
static void compare_forward(size_t B, size_t N, size_t C, size_t H, const float *policy, double *worst_out,
                            double *worst_cls) {
    float *qkv = random_qkv(B * N * 3 * C, 7u);
    double *ref_out = malloc(B * N * C * sizeof(double)), *ref_cls = malloc(B * (N - 1) * sizeof(double));
    reference(qkv, policy, B, N, C, H, ref_out, ref_cls);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_wrap(ctx, qkv, NULL, 3, (size_t[]){B, N, 3 * C}, false);
    ag_tensor *p = policy ? ag_wrap(ctx, (float *)policy, NULL, 2, (size_t[]){B, N}, false) : NULL;
    ag_tensor *cls = NULL;
    ag_tensor *out = ag_attention(ctx, x, H, p, &cls);
    cr_assert_not_null(out, "%s", tpsc_last_error());
    cr_assert_not_null(cls);
    cr_assert_eq(out->shape[0], B);
    cr_assert_eq(out->shape[1], N);
    cr_assert_eq(out->shape[2], C);
    cr_assert_eq(cls->shape[1], N - 1);
    *worst_out = *worst_cls = 0.0;
    for (size_t i = 0; i < B * N * C; i++) *worst_out = fmax(*worst_out, fabs(out->data[i] - ref_out[i]));
    for (size_t i = 0; i < B * (N - 1); i++) *worst_cls = fmax(*worst_cls, fabs(cls->data[i] - ref_cls[i]));
    ag_ctx_free(ctx);
    free(qkv);
    free(ref_out);
    free(ref_cls);
}

/* Tolerance 1e-5 absolute: float32 products of N(0,1) entries over D <= 12 terms and softmax
 * sums over N = 7 terms carry relative errors of a few 1e-7; outputs are O(1). */
Test(ops_attention, forward_matches_naive_reference) {
    double wo, wc;
    compare_forward(2, 7, 12, 3, NULL, &wo, &wc);
    cr_assert_lt(wo, 1e-5, "out differs from the reference by %g", wo);
    cr_assert_lt(wc, 1e-5, "cls_attn differs from the reference by %g", wc);
    compare_forward(2, 7, 12, 1, NULL, &wo, &wc);
    cr_assert_lt(wo, 1e-5, "one head: out differs by %g", wo);
    cr_assert_lt(wc, 1e-5, "one head: cls_attn differs by %g", wc);
}

Test(ops_attention, forward_with_policy_matches_naive_reference) {
    double wo, wc;
    compare_forward(2, 7, 12, 3, policy_binary, &wo, &wc);
    cr_assert_lt(wo, 1e-5, "binary policy: out differs by %g", wo);
    cr_assert_lt(wc, 1e-5, "binary policy: cls_attn differs by %g", wc);
    compare_forward(2, 7, 12, 3, policy_fraction, &wo, &wc);
    cr_assert_lt(wo, 1e-5, "fractional policy: out differs by %g", wo);
    cr_assert_lt(wc, 1e-5, "fractional policy: cls_attn differs by %g", wc);
}

/* B*H*N*N*D = 2*3*48*48*16 is above the op's threading threshold: the parallel loop runs.
 * Tolerance 1e-5 as above (D = 16 terms, N = 48 terms: still a few 1e-7 relative). */
Test(ops_attention, forward_threaded_shape_matches_naive_reference) {
    double wo, wc;
    compare_forward(2, 48, 48, 3, NULL, &wo, &wc);
    cr_assert_lt(wo, 1e-5, "out differs by %g", wo);
    cr_assert_lt(wc, 1e-5, "cls_attn differs by %g", wc);
}

/* With P = 1 everywhere, G = 1 and attn = (a Z + eps/N) / (Z + eps) with a the plain softmax and
 * Z = sum_k exp(S_ik - m_i) >= 1, so |attn - a| = eps |1/N - a| / (Z + eps) <= eps = 1e-6.
 * cls_attn inherits that bound (a mean of such entries), and out = attn v moves by at most
 * eps * sum_j |v_j| <= 1e-6 * N * max|v| (N = 7, |v| < 5 for these N(0,1) draws: 3.5e-5).
 * Allowed: 1e-6 + 5e-7 float rounding on cls_attn, 3.5e-5 + 1e-6 on out. */
Test(ops_attention, all_ones_policy_is_plain_softmax_up_to_eps) {
    const size_t B = 2, N = 7, C = 12, H = 3;
    float *qkv = random_qkv(B * N * 3 * C, 11u);
    float ones[14];
    for (int i = 0; i < 14; i++) ones[i] = 1.0f;
    float vmax = 0.0f;
    for (size_t r = 0; r < B * N; r++)
        for (size_t c = 2 * C; c < 3 * C; c++) vmax = fmaxf(vmax, fabsf(qkv[r * 3 * C + c]));
    cr_assert_lt(vmax, 5.0f, "the bound below assumes |v| < 5");
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_wrap(ctx, qkv, NULL, 3, (size_t[]){B, N, 3 * C}, false);
    ag_tensor *p = ag_wrap(ctx, ones, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *cls_plain = NULL, *cls_pol = NULL;
    ag_tensor *plain = ag_attention(ctx, x, H, NULL, &cls_plain);
    ag_tensor *pol = ag_attention(ctx, x, H, p, &cls_pol);
    cr_assert(plain && pol && cls_plain && cls_pol, "%s", tpsc_last_error());
    double worst_out = 0.0, worst_cls = 0.0;
    for (size_t i = 0; i < B * N * C; i++) worst_out = fmax(worst_out, fabs(plain->data[i] - pol->data[i]));
    for (size_t i = 0; i < B * (N - 1); i++) worst_cls = fmax(worst_cls, fabs(cls_plain->data[i] - cls_pol->data[i]));
    cr_assert_leq(worst_cls, 1.5e-6, "cls_attn: policy of ones differs from softmax by %g", worst_cls);
    cr_assert_leq(worst_out, 3.6e-5, "out: policy of ones differs from softmax by %g", worst_out);
    cr_assert_gt(worst_cls, 0.0, "the eps terms must be there (official arithmetic)");
    ag_ctx_free(ctx);
    free(qkv);
}

/* The threaded backward (pairs split over threads, policy gradient reduced over heads) must
 * give what one thread gives. Each (b,h) pair does the same float operations either way, so
 * the only differences allowed are OpenBLAS blocking choices: tolerance 1e-5 relative. */
static void grads_with_threads(int threads, const float *qkv, const float *policy, size_t B, size_t N, size_t C,
                               size_t H, float *dqkv, float *dpol) {
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    ag_ctx *ctx = ag_ctx_create(0);
    memset(dqkv, 0, B * N * 3 * C * sizeof(float));
    memset(dpol, 0, B * N * sizeof(float));
    ag_tensor *x = ag_wrap(ctx, (float *)qkv, dqkv, 3, (size_t[]){B, N, 3 * C}, true);
    ag_tensor *p = ag_wrap(ctx, (float *)policy, dpol, 2, (size_t[]){B, N}, true);
    ag_tensor *cls = NULL;
    ag_tensor *out = ag_attention(ctx, x, H, p, &cls);
    cr_assert_not_null(out, "%s", tpsc_last_error());
    float *seed = malloc(B * N * C * sizeof(float));
    for (size_t i = 0; i < B * N * C; i++) seed[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    cr_assert_eq(ag_backward_from(ctx, out, seed), TPSC_OK, "%s", tpsc_last_error());
    free(seed);
    ag_ctx_free(ctx);
    omp_set_num_threads(saved);
}

Test(ops_attention, threaded_backward_matches_one_thread) {
    const size_t B = 2, N = 48, C = 48, H = 3; /* above the threading threshold */
    float *qkv = random_qkv(B * N * 3 * C, 5u);
    float policy[2 * 48];
    for (size_t i = 0; i < B * N; i++) policy[i] = (i % N == 0) ? 1.0f : (float)((i * 7) % 5) / 4.0f;
    float *d1 = malloc(B * N * 3 * C * sizeof(float)), *dn = malloc(B * N * 3 * C * sizeof(float));
    float p1[2 * 48], pn[2 * 48];
    grads_with_threads(1, qkv, policy, B, N, C, H, d1, p1);
    grads_with_threads(omp_get_num_procs() > 1 ? omp_get_num_procs() : 2, qkv, policy, B, N, C, H, dn, pn);
    double worst = 0.0, norm = 0.0;
    for (size_t i = 0; i < B * N * 3 * C; i++) {
        worst = fmax(worst, fabs(d1[i] - dn[i]));
        norm = fmax(norm, fabs(d1[i]));
    }
    cr_assert_gt(norm, 0.0, "qkv gradient is all zero");
    cr_assert_leq(worst, 1e-5 * norm, "dqkv: threaded differs from one thread by %g (max %g)", worst, norm);
    worst = norm = 0.0;
    for (size_t i = 0; i < B * N; i++) {
        worst = fmax(worst, fabs(p1[i] - pn[i]));
        norm = fmax(norm, fabs(p1[i]));
    }
    cr_assert_gt(norm, 0.0, "policy gradient is all zero");
    cr_assert_leq(worst, 1e-5 * norm, "dpolicy: threaded differs from one thread by %g (max %g)", worst, norm);
    free(qkv);
    free(d1);
    free(dn);
}

/* ---- errors ------------------------------------------------------------------------------ */

Test(ops_attention, channels_not_divisible_by_heads_is_an_error) {
    ag_ctx *ctx = ag_ctx_create(0);
    float d[2 * 3 * 30] = {0};
    ag_tensor *x = ag_wrap(ctx, d, NULL, 3, (size_t[]){2, 3, 30}, false); /* C = 10, 3 heads */
    cr_assert_null(ag_attention(ctx, x, 3, NULL, NULL));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    cr_assert(strstr(tpsc_last_error(), "attention") && strstr(tpsc_last_error(), "[2, 3, 30]"), "message: %s",
              tpsc_last_error());
    ag_ctx_free(ctx);
}

Test(ops_attention, width_not_a_multiple_of_three_is_an_error) {
    ag_ctx *ctx = ag_ctx_create(0);
    float d[2 * 3 * 13] = {0};
    ag_tensor *x = ag_wrap(ctx, d, NULL, 3, (size_t[]){2, 3, 13}, false);
    cr_assert_null(ag_attention(ctx, x, 1, NULL, NULL));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    ag_ctx_free(ctx);
}

Test(ops_attention, policy_shape_mismatch_is_an_error) {
    ag_ctx *ctx = ag_ctx_create(0);
    float d[2 * 3 * 12] = {0}, p[2 * 4] = {0};
    ag_tensor *x = ag_wrap(ctx, d, NULL, 3, (size_t[]){2, 3, 12}, false);
    ag_tensor *pol = ag_wrap(ctx, p, NULL, 2, (size_t[]){2, 4}, false);
    ag_tensor *cls = (ag_tensor *)1;
    cr_assert_null(ag_attention(ctx, x, 2, pol, &cls));
    cr_assert_null(cls, "cls_attn must be cleared on failure");
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    cr_assert(strstr(tpsc_last_error(), "policy"), "message: %s", tpsc_last_error());
    ag_ctx_free(ctx);
}

Test(ops_attention, null_input_propagates) {
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_null(ag_attention(ctx, NULL, 2, NULL, NULL));
    cr_assert_neq(ag_ctx_status(ctx), TPSC_OK);
    ag_ctx_free(ctx);
}
