/* Losses: finite differences (soft and hard cross-entropy, KL in log space, MSE), values
 * against the formulas evaluated in double in this file, the -inf rule of KL, and errors. */
#include <criterion/criterion.h>
#include <math.h>

#include "src/util/rng.h"
#include "support/gradcheck.h"
#include "support/op_error.h"

enum { B = 3, K = 7 };

/* A soft target: rows of positive weights normalised to 1 (what mixup + smoothing yield). */
static void soft_target(float *t, unsigned seed) {
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    for (int b = 0; b < B; b++) {
        double s = 0.0;
        for (int k = 0; k < K; k++) s += t[b * K + k] = 0.05f + tpsc_rng_uniform(&rng);
        for (int k = 0; k < K; k++) t[b * K + k] = (float)(t[b * K + k] / s);
    }
}

static void logits(float *z, unsigned seed) {
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    for (int i = 0; i < B * K; i++) z[i] = 2.0f * tpsc_rng_normal(&rng);
}

/* log_softmax of one row in double: the reference for every cross-entropy value below. */
static void ref_log_softmax(const float *z, double *lp) {
    double m = z[0], s = 0.0;
    for (int k = 1; k < K; k++) m = z[k] > m ? z[k] : m;
    for (int k = 0; k < K; k++) s += exp(z[k] - m);
    for (int k = 0; k < K; k++) lp[k] = z[k] - m - log(s);
}

/* ---- gradchecks ----------------------------------------------------------------------------- */

static ag_tensor *f_ce_soft(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_cross_entropy_soft(ctx, in[0], in[1]); }

Test(ops_loss, gradcheck_cross_entropy_soft) {
    /* Gradients into the logits and into the target (a distillation target may need one). */
    float t[B * K];
    soft_target(t, 5);
    gc_input in[2] = {{2, {B, K}, true, NULL}, {2, {B, K}, true, t}};
    GRADCHECK(f_ce_soft, 2, in, NULL, 1e-2, 1e-3, 1e-2);
}

static const int32_t LABELS[B] = {2, 0, 6};
static ag_tensor *f_ce(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_cross_entropy(ctx, in[0], LABELS, *(float *)user); }

Test(ops_loss, gradcheck_cross_entropy_smoothing) {
    float eps[] = {0.0f, 0.1f, 1.0f};
    gc_input in[1] = {{2, {B, K}, true, NULL}};
    for (int i = 0; i < 3; i++) GRADCHECK(f_ce, 1, in, &eps[i], 1e-2, 1e-3, 1e-2);
}

static ag_tensor *f_kl(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_kl_div(ctx, in[0], in[1], (float)B); }
static ag_tensor *f_kl_of_logits(ag_ctx *ctx, ag_tensor **in, void *user) {
    /* KL between two log_softmax outputs, as the distillation loss builds it. */
    return ag_kl_div(ctx, ag_log_softmax(ctx, in[0]), ag_log_softmax(ctx, in[1]), (float)B);
}

Test(ops_loss, gradcheck_kl_div) {
    gc_input in[2] = {{2, {B, K}, true, NULL}, {2, {B, K}, true, NULL}};
    GRADCHECK(f_kl, 2, in, NULL, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_kl_of_logits, 2, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_loss, gradcheck_kl_div_with_zero_target_probabilities) {
    /* logq = -inf entries (q = 0) contribute nothing, and no NaN reaches logp's gradient. */
    float lq[B * K];
    for (int i = 0; i < B * K; i++) lq[i] = i % 3 == 0 ? -INFINITY : -1.0f - 0.1f * (float)i;
    gc_input in[2] = {{2, {B, K}, true, NULL}, {2, {B, K}, false, lq}};
    GRADCHECK(f_kl, 2, in, NULL, 1e-2, 1e-3, 1e-2);
}

static ag_tensor *f_mse(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_mse(ctx, in[0], in[1]); }

Test(ops_loss, gradcheck_mse) {
    gc_input in[2] = {{3, {2, 7, 5}, true, NULL}, {3, {2, 7, 5}, true, NULL}};
    GRADCHECK(f_mse, 2, in, NULL, 1e-2, 1e-3, 1e-2);
}

/* ---- values against double formulas -------------------------------------------------------- */

Test(ops_loss, cross_entropy_soft_value) {
    /* Reference: mean_b sum_k -t log_softmax(z) in double. Tolerance 1e-5 relative. */
    ag_ctx *ctx = ag_ctx_create(0);
    float z[B * K], t[B * K];
    logits(z, 1);
    soft_target(t, 2);
    ag_tensor *L = ag_cross_entropy_soft(ctx, ag_wrap(ctx, z, NULL, 2, (size_t[]){B, K}, false), ag_wrap(ctx, t, NULL, 2, (size_t[]){B, K}, false));
    cr_assert_not_null(L);
    cr_assert(L->ndim == 1 && L->shape[0] == 1);
    double want = 0.0, lp[K];
    for (int b = 0; b < B; b++) {
        ref_log_softmax(z + b * K, lp);
        for (int k = 0; k < K; k++) want -= t[b * K + k] * lp[k];
    }
    want /= B;
    cr_assert(fabs(L->data[0] - want) <= 1e-5 * fabs(want), "%.8g vs %.8g", (double)L->data[0], want);
    ag_ctx_free(ctx);
}

Test(ops_loss, cross_entropy_label_smoothing_value) {
    /* Reference (timm LabelSmoothingCrossEntropy): mean_b [(1-eps)(-lp[y]) + eps mean_k(-lp)],
     * in double; eps = 0.1. Also the gradient: (softmax - ((1-eps) onehot + eps/K)) / B.
     * Tolerances 1e-5 relative on the loss, 1e-6 absolute on the gradient. */
    const float eps = 0.1f;
    ag_ctx *ctx = ag_ctx_create(0);
    float z[B * K], gz[B * K] = {0};
    logits(z, 4);
    ag_tensor *x = ag_wrap(ctx, z, gz, 2, (size_t[]){B, K}, true);
    ag_tensor *L = ag_cross_entropy(ctx, x, LABELS, eps);
    cr_assert_not_null(L);
    cr_assert_eq(ag_backward(ctx, L), TPSC_OK);
    double want = 0.0, lp[K];
    for (int b = 0; b < B; b++) {
        ref_log_softmax(z + b * K, lp);
        double mean_neg = 0.0;
        for (int k = 0; k < K; k++) mean_neg -= lp[k] / K;
        want += (1.0 - eps) * -lp[LABELS[b]] + eps * mean_neg;
        for (int k = 0; k < K; k++) {
            double q = (k == LABELS[b] ? 1.0 - eps : 0.0) + eps / K;
            double g = (exp(lp[k]) - q) / B;
            cr_assert(fabs(gz[b * K + k] - g) < 1e-6, "grad [%d,%d] %g vs %g", b, k, (double)gz[b * K + k], g);
        }
    }
    want /= B;
    cr_assert(fabs(L->data[0] - want) <= 1e-5 * fabs(want), "%.8g vs %.8g", (double)L->data[0], want);
    ag_ctx_free(ctx);
}

Test(ops_loss, kl_div_value_and_minus_infinity_terms) {
    /* Reference: sum exp(lq) (lq - lp) / divisor in double, skipping lq = -inf terms (their
     * limit q log q -> 0); divisor = B ("batchmean"). KL(q || q) = 0. Tolerance 1e-5 relative. */
    ag_ctx *ctx = ag_ctx_create(0);
    float zp[B * K], zq[B * K], lp[B * K], lq[B * K];
    logits(zp, 7);
    logits(zq, 8);
    for (int b = 0; b < B; b++) {
        double r[K];
        ref_log_softmax(zp + b * K, r);
        for (int k = 0; k < K; k++) lp[b * K + k] = (float)r[k];
        ref_log_softmax(zq + b * K, r);
        for (int k = 0; k < K; k++) lq[b * K + k] = (float)r[k];
    }
    lq[3] = -INFINITY;
    lq[K + 1] = -INFINITY;
    ag_tensor *P = ag_wrap(ctx, lp, NULL, 2, (size_t[]){B, K}, false), *Q = ag_wrap(ctx, lq, NULL, 2, (size_t[]){B, K}, false);
    ag_tensor *L = ag_kl_div(ctx, P, Q, (float)B), *zero = ag_kl_div(ctx, P, P, (float)B);
    cr_assert(L && zero, "%s", tpsc_last_error());
    double want = 0.0;
    for (int i = 0; i < B * K; i++)
        if (!isinf(lq[i])) want += exp((double)lq[i]) * ((double)lq[i] - (double)lp[i]);
    want /= B;
    cr_assert(isfinite(L->data[0]));
    cr_assert(fabs(L->data[0] - want) <= 1e-5 * fabs(want), "%.8g vs %.8g", (double)L->data[0], want);
    cr_assert(fabs(zero->data[0]) < 1e-7, "KL(p||p) = %g", (double)zero->data[0]);
    ag_ctx_free(ctx);
}

Test(ops_loss, mse_by_hand) {
    /* a = [1, 2, 3, 4], b = [0, 2, 5, 3]: mean of [1, 0, 4, 1] = 1.5; dL/da = 2 (a - b) / 4 =
     * [0.5, 0, -1, 0.5], dL/db the negative. Exact in float (checked to 1e-7). */
    ag_ctx *ctx = ag_ctx_create(0);
    float ad[] = {1, 2, 3, 4}, bd[] = {0, 2, 5, 3}, ga[4] = {0}, gb[4] = {0};
    ag_tensor *a = ag_wrap(ctx, ad, ga, 2, (size_t[]){2, 2}, true), *b = ag_wrap(ctx, bd, gb, 2, (size_t[]){2, 2}, true);
    ag_tensor *L = ag_mse(ctx, a, b);
    cr_assert_not_null(L);
    cr_assert_float_eq(L->data[0], 1.5f, 1e-7);
    cr_assert_eq(ag_backward(ctx, L), TPSC_OK);
    const float want[] = {0.5f, 0.0f, -1.0f, 0.5f};
    for (int i = 0; i < 4; i++) {
        cr_assert_float_eq(ga[i], want[i], 1e-7);
        cr_assert_float_eq(gb[i], -want[i], 1e-7);
    }
    ag_ctx_free(ctx);
}

/* ---- errors --------------------------------------------------------------------------------- */

Test(ops_loss, shape_and_argument_errors) {
    ag_ctx *ctx = ag_ctx_create(0);
    float buf[64] = {0};
#define X(...) ag_wrap(ctx, buf, NULL, 2, (size_t[]){__VA_ARGS__}, false)
    op_expect_error(ctx, ag_cross_entropy_soft(ctx, X(3, 7), X(3, 6)), TPSC_ERR_SHAPE, "cross_entropy_soft");
    op_expect_error(ctx, ag_cross_entropy(ctx, X(3, 7), (int32_t[]){0, 7, 1}, 0.1f), TPSC_ERR_ARG, "cross_entropy");
    op_expect_error(ctx, ag_cross_entropy(ctx, X(3, 7), (int32_t[]){0, -1, 1}, 0.1f), TPSC_ERR_ARG, "cross_entropy");
    op_expect_error(ctx, ag_cross_entropy(ctx, X(3, 0), (int32_t[]){0, 0, 0}, 0.1f), TPSC_ERR_SHAPE, "cross_entropy");
    op_expect_error(ctx, ag_kl_div(ctx, X(3, 7), X(7, 3), 3.0f), TPSC_ERR_SHAPE, "kl_div");
    op_expect_error(ctx, ag_kl_div(ctx, X(3, 7), X(3, 7), 0.0f), TPSC_ERR_ARG, "kl_div");
    op_expect_error(ctx, ag_mse(ctx, X(3, 7), X(3, 5)), TPSC_ERR_SHAPE, "mse");
#undef X
    ag_ctx_free(ctx);
}

Test(ops_loss, large_batch_cross_entropy_matches_double_formula) {
    /* R = 64 rows, K = 300 classes (the threaded path), eps = 0.1: loss against the double
     * formula of cross_entropy_label_smoothing_value; tolerance 1e-5 relative. */
    enum { R = 64, KK = 300 };
    ag_ctx *ctx = ag_ctx_create(0);
    float *z = ag_alloc(ctx, R * KK * sizeof(float));
    int32_t labels[R];
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 21);
    for (int i = 0; i < R * KK; i++) z[i] = 3.0f * tpsc_rng_normal(&rng);
    for (int r = 0; r < R; r++) labels[r] = (int32_t)((r * 37) % KK);
    ag_tensor *L = ag_cross_entropy(ctx, ag_wrap(ctx, z, NULL, 2, (size_t[]){R, KK}, false), labels, 0.1f);
    cr_assert_not_null(L);
    double want = 0.0;
    for (int r = 0; r < R; r++) {
        const float *zr = z + r * KK;
        double m = zr[0], s = 0.0, mean_neg = 0.0;
        for (int k = 1; k < KK; k++) m = zr[k] > m ? zr[k] : m;
        for (int k = 0; k < KK; k++) s += exp(zr[k] - m);
        for (int k = 0; k < KK; k++) mean_neg -= (zr[k] - m - log(s)) / KK;
        want += 0.9 * -(zr[labels[r]] - m - log(s)) + 0.1 * mean_neg;
    }
    want /= R;
    cr_assert(fabs(L->data[0] - want) <= 1e-5 * fabs(want), "%.8g vs %.8g", (double)L->data[0], want);
    ag_ctx_free(ctx);
}
