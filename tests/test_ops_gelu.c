/* gelu: finite differences, table values of the exact (erf) GELU, and its derivative. */
#include <criterion/criterion.h>
#include <math.h>

#include "support/gradcheck.h"

static ag_tensor *f_gelu(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_gelu(ctx, in[0]); }

Test(ops_gelu, gradcheck_odd_shape) {
    gc_input in[1] = {{3, {3, 7, 5}, true, NULL}};
    GRADCHECK(f_gelu, 1, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_gelu, gradcheck_wide_range) {
    /* Tails and the curved middle: x from -6 to 6. */
    float xd[25];
    for (int i = 0; i < 25; i++) xd[i] = -6.0f + 0.5f * (float)i;
    gc_input in[1] = {{1, {25}, true, xd}};
    GRADCHECK(f_gelu, 1, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_gelu, forward_table_values) {
    /* Reference: x Phi(x) with the standard normal CDF from tables,
     * Phi(1) = 0.8413447461, Phi(2) = 0.9772498681, Phi(-1) = 0.1586552539, so
     * gelu(0) = 0, gelu(1) = 0.8413447, gelu(-1) = -0.1586553, gelu(2) = 1.9544997,
     * gelu(-2) = -0.0455003. Tolerance 1e-6 absolute (float). */
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[] = {0, 1, -1, 2, -2};
    const double want[] = {0.0, 0.8413447461, -0.1586552539, 1.9544997361, -0.0455002639};
    ag_tensor *y = ag_gelu(ctx, ag_wrap(ctx, xd, NULL, 1, (size_t[]){5}, false));
    cr_assert_not_null(y);
    for (int i = 0; i < 5; i++) cr_assert(fabs(y->data[i] - want[i]) < 1e-6, "gelu(%g) = %.9g, want %.9g", xd[i], (double)y->data[i], want[i]);
    ag_ctx_free(ctx);
}

Test(ops_gelu, derivative_table_values) {
    /* Reference: gelu'(x) = Phi(x) + x phi(x), phi(1) = 0.2419707245 (tables), so
     * gelu'(0) = 0.5, gelu'(1) = 1.0833154706, gelu'(-1) = 0.1586552539 - 0.2419707245
     * = -0.0833154706. Tolerance 1e-6 absolute. */
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[] = {0, 1, -1}, gx[3] = {0}, seed[] = {1, 1, 1};
    const double want[] = {0.5, 1.0833154706, -0.0833154706};
    ag_tensor *x = ag_wrap(ctx, xd, gx, 1, (size_t[]){3}, true);
    ag_tensor *y = ag_gelu(ctx, x);
    cr_assert_not_null(y);
    cr_assert_eq(ag_backward_from(ctx, y, seed), TPSC_OK);
    for (int i = 0; i < 3; i++) cr_assert(fabs(gx[i] - want[i]) < 1e-6, "gelu'(%g) = %.9g, want %.9g", xd[i], (double)gx[i], want[i]);
    ag_ctx_free(ctx);
}

Test(ops_gelu, non_contiguous_input_is_an_error) {
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[12] = {0};
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 2, (size_t[]){3, 2}, false);
    x->stride[0] = 4; /* every other pair: a strided view the ops do not accept */
    cr_assert_null(ag_gelu(ctx, x));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    cr_assert(strstr(tpsc_last_error(), "gelu") != NULL, "message: %s", tpsc_last_error());
    ag_ctx_free(ctx);
}

#include "src/common/vecmath.h"

Test(ops_gelu, normal_cdf_and_pdf_accuracy) {
    /* Phi and phi behind gelu against libm in double, 0.5 erfc(-x / sqrt 2) and
     * exp(-x^2 / 2) / sqrt(2 pi), every 1e-4 on [-12, 12], at the float x actually passed.
     * Bounds from vecmath.h: Phi absolute < 2.5e-7, Phi relative < 3e-5 for x < 0, phi
     * relative < 1e-5. */
    double worst_abs = 0.0, worst_tail = 0.0, worst_pdf = 0.0;
    for (int i = -120000; i <= 120000; i++) {
        const float x = (float)(i * 1e-4);
        const double cdf = 0.5 * erfc(-(double)x / sqrt(2.0)), pdf = exp(-0.5 * (double)x * x) / sqrt(2.0 * M_PI);
        const double err = fabs(vm_normal_cdf(x) - cdf);
        worst_abs = fmax(worst_abs, err);
        if (x < 0) worst_tail = fmax(worst_tail, err / cdf);
        worst_pdf = fmax(worst_pdf, fabs(vm_normal_pdf(x) - pdf) / pdf);
    }
    cr_assert(worst_abs < 2.5e-7, "Phi absolute error %.3g", worst_abs);
    cr_assert(worst_tail < 3e-5, "Phi lower-tail relative error %.3g", worst_tail);
    cr_assert(worst_pdf < 1e-5, "phi relative error %.3g", worst_pdf);
    cr_assert_eq(vm_normal_cdf(-INFINITY), 0.0f);
    cr_assert_eq(vm_normal_cdf(INFINITY), 1.0f);
}

Test(ops_gelu, normal_pdf_is_the_full_range_exp_bit_for_bit) {
    /* vm_normal_pdf takes its exp through vm_expf_nonpos; the reference is the full-range
     * 0.39894228 vm_expf(-x^2 / 2) it replaced. Tolerance: none (FP32 runs must not change by a
     * bit). Every 61st float bit pattern (70 million, both signs, subnormals, Inf and NaN
     * included), and the patterns around the underflow of exp, where the result is subnormal. */
    long differ = 0;
    const float tail = sqrtf(2.0f * 87.33654f); /* exp(-x^2 / 2) = FLT_MIN */
    uint32_t t;
    memcpy(&t, &tail, sizeof t);
    for (uint64_t i = 0; i <= 0xffffffffu; i += 61) {
        const uint32_t u = (uint32_t)i;
        float x;
        memcpy(&x, &u, sizeof x);
        const float a = vm_normal_pdf(x), b = 0.39894228f * vm_expf(-0.5f * x * x);
        differ += memcmp(&a, &b, sizeof a) != 0;
    }
    for (uint32_t u = t - 100000; u <= t + 100000; u++) {
        float x;
        memcpy(&x, &u, sizeof x);
        const float a = vm_normal_pdf(x), b = 0.39894228f * vm_expf(-0.5f * x * x);
        cr_assert(memcmp(&a, &b, sizeof a) == 0, "phi(%.9g) = %.9g, full-range exp gives %.9g", x, a, b);
    }
    cr_assert_eq(differ, 0, "%ld sampled x give a different phi(x)", differ);
}

Test(ops_gelu, rational_normal_cdf_accuracy) {
    /* The Phi gelu uses against libm in double, 0.5 erfc(-x / sqrt 2), every 1e-4 on
     * [-12, 12] at the float x passed. Bound from vecmath.h: absolute < 2.5e-7 (5.5e-8 of fit,
     * the rest float rounding). NaN must pass through, so a NaN activation still stops a run. */
    double worst = 0.0;
    for (int i = -120000; i <= 120000; i++) {
        const float x = (float)(i * 1e-4);
        const double cdf = 0.5 * erfc(-(double)x / sqrt(2.0));
        worst = fmax(worst, fabs(vm_normal_cdf_rational(x) - cdf));
    }
    cr_assert(worst < 2.5e-7, "Phi absolute error %.3g", worst);
    cr_assert(isnan(vm_normal_cdf_rational(NAN)));
    cr_assert_eq(vm_normal_cdf_rational(INFINITY), 1.0f);
}

Test(ops_gelu, large_tensor_matches_libm_formula) {
    /* 40000 elements (the threaded, vectorised path) against 0.5 x (1 + erf(x / sqrt 2)) in
     * double from libm; tolerance 1e-6 absolute (|x| <= 4, Phi absolute error < 2.5e-7). */
    enum { N = 40000 };
    ag_ctx *ctx = ag_ctx_create(0);
    float *xd = ag_alloc(ctx, N * sizeof(float));
    for (int i = 0; i < N; i++) xd[i] = -4.0f + 8.0f * (float)i / N;
    ag_tensor *y = ag_gelu(ctx, ag_wrap(ctx, xd, NULL, 2, (size_t[]){200, 200}, false));
    cr_assert_not_null(y);
    for (int i = 0; i < N; i++) {
        const double want = 0.5 * xd[i] * (1.0 + erf(xd[i] / sqrt(2.0)));
        cr_assert(fabs(y->data[i] - want) < 1e-6, "gelu(%g) = %.9g, want %.9g", xd[i], (double)y->data[i], want);
    }
    ag_ctx_free(ctx);
}
