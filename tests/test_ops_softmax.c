/* softmax and log_softmax over the last dim: finite differences, hand values, overflow safety
 * and a naive double reference, shape errors; the vectorised exp, scalar and AVX-512. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "src/util/rng.h"
#include "support/gradcheck.h"

static ag_tensor *f_softmax(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_softmax(ctx, in[0]); }
static ag_tensor *f_log_softmax(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_log_softmax(ctx, in[0]); }

Test(ops_softmax, gradcheck_odd_shapes) {
    gc_input in3[1] = {{3, {3, 7, 5}, true, NULL}};
    GRADCHECK(f_softmax, 1, in3, NULL, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_log_softmax, 1, in3, NULL, 1e-2, 1e-3, 1e-2);
    gc_input in1[1] = {{1, {7}, true, NULL}};
    GRADCHECK(f_softmax, 1, in1, NULL, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_log_softmax, 1, in1, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_softmax, forward_by_hand) {
    /* softmax([0, ln 2, ln 3]) = [1/6, 2/6, 3/6]; log_softmax = [-ln 6, ln 2 - ln 6, ln 3 - ln 6].
     * Tolerance 1e-6 absolute. */
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[] = {0.0f, logf(2.0f), logf(3.0f)};
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 2, (size_t[]){1, 3}, false);
    ag_tensor *p = ag_softmax(ctx, x), *lp = ag_log_softmax(ctx, x);
    cr_assert_not_null(p);
    cr_assert_not_null(lp);
    for (int i = 0; i < 3; i++) {
        cr_assert(fabs(p->data[i] - (i + 1) / 6.0) < 1e-6, "p[%d] = %g", i, (double)p->data[i]);
        cr_assert(fabs(lp->data[i] - log((i + 1) / 6.0)) < 1e-6, "logp[%d] = %g", i, (double)lp->data[i]);
    }
    ag_ctx_free(ctx);
}

Test(ops_softmax, large_logits_do_not_overflow) {
    /* softmax([1000, 1000, 0]) = [0.5, 0.5, e^-1000 ~ 0]; log_softmax = [-ln 2, -ln 2, -1000 - ln 2].
     * Tolerances 1e-6 on p, 1e-5 on log p near 0, 1e-3 at -1000 (float spacing there is 6e-5). */
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[] = {1000.0f, 1000.0f, 0.0f};
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 1, (size_t[]){3}, false);
    ag_tensor *p = ag_softmax(ctx, x), *lp = ag_log_softmax(ctx, x);
    cr_assert_not_null(p);
    cr_assert_not_null(lp);
    cr_assert_float_eq(p->data[0], 0.5f, 1e-6);
    cr_assert_float_eq(p->data[1], 0.5f, 1e-6);
    cr_assert_float_eq(p->data[2], 0.0f, 1e-6);
    cr_assert_float_eq(lp->data[0], -(float)M_LN2, 1e-5);
    cr_assert_float_eq(lp->data[2], -1000.0f - (float)M_LN2, 1e-3);
    ag_ctx_free(ctx);
}

Test(ops_softmax, matches_naive_double_loop) {
    /* Reference: exp(x_c) / sum exp(x) per row in double, rows [M=100, C=197] (threaded path).
     * Tolerance 1e-6 absolute on p, 1e-5 on log p. */
    enum { M = 100, C = 197 };
    ag_ctx *ctx = ag_ctx_create(0);
    float *xd = ag_alloc(ctx, M * C * sizeof(float));
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 3);
    for (int i = 0; i < M * C; i++) xd[i] = 3.0f * tpsc_rng_normal(&rng);
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 2, (size_t[]){M, C}, false);
    ag_tensor *p = ag_softmax(ctx, x), *lp = ag_log_softmax(ctx, x);
    cr_assert_not_null(p);
    cr_assert_not_null(lp);
    for (int r = 0; r < M; r++) {
        double s = 0.0;
        for (int c = 0; c < C; c++) s += exp((double)xd[r * C + c]);
        for (int c = 0; c < C; c++) {
            double want = exp((double)xd[r * C + c]) / s;
            cr_assert(fabs(p->data[r * C + c] - want) < 1e-6, "row %d col %d", r, c);
            cr_assert(fabs(lp->data[r * C + c] - log(want)) < 1e-5, "row %d col %d", r, c);
        }
    }
    ag_ctx_free(ctx);
}

Test(ops_softmax, empty_last_dim_is_an_error) {
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[1] = {0};
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 2, (size_t[]){3, 0}, false);
    cr_assert_null(ag_softmax(ctx, x));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    cr_assert(strstr(tpsc_last_error(), "softmax") != NULL, "message: %s", tpsc_last_error());
    ag_ctx_reset(ctx); /* drops x too: wrap it again */
    x = ag_wrap(ctx, xd, NULL, 2, (size_t[]){3, 0}, false);
    cr_assert_null(ag_log_softmax(ctx, x));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    ag_ctx_free(ctx);
}

#include "src/common/vecmath.h"

Test(ops_softmax, vectorised_exp_accuracy) {
    /* vm_expf (used by softmax, log_softmax backward and the losses) against libm's exp in
     * double over 2*10^6 points of [-87.3, 88.7]: relative error < 2.5e-7 (vecmath.h's
     * contract); and the ends: exp(-inf) = 0, tiny arguments flush to 0, large ones to +inf,
     * NaN stays NaN, exp(0) = 1 exactly. */
    double worst = 0.0, at = 0.0;
    for (int i = 0; i <= 2000000; i++) {
        const float x = -87.3f + (float)i * (176.0f / 2000000.0f);
        if (x > 88.7f) break;
        const double want = exp((double)x), rel = fabs(vm_expf(x) - want) / want;
        if (rel > worst) {
            worst = rel;
            at = x;
        }
    }
    cr_assert(worst < 2.5e-7, "worst relative error %.3g at x = %g", worst, at);
    cr_assert_eq(vm_expf(-INFINITY), 0.0f);
    cr_assert_eq(vm_expf(-100.0f), 0.0f);
    cr_assert(isinf(vm_expf(100.0f)) && vm_expf(100.0f) > 0);
    cr_assert(isnan(vm_expf(NAN)));
    cr_assert_eq(vm_expf(0.0f), 1.0f);
}

#if defined(__x86_64__) || defined(__i386__)
/* vm_expf_nonpos_avx512 (libtpsinfer's fused softmax) against vm_expf_nonpos (the training ops'
 * and row_softmax's), bit for bit: every float of [-88, 0] at a step of 2^-13 (the reduction's
 * rounding points and the underflow edge at ln FLT_MIN among them), and -inf, NaN, -0, the
 * largest finite negative, subnormals. Any reordered operation or a fused multiply-add moves
 * some of these 720 897 grid results by an ulp. */
__attribute__((target("avx512f"))) static void exp16_avx512(const float *x, float *y) {
    _mm512_storeu_ps(y, vm_expf_nonpos_avx512(_mm512_loadu_ps(x)));
}

Test(ops_softmax, avx512_exp_equals_scalar_to_the_bit) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) {
        cr_log_warn("this CPU has no AVX-512F; skipped");
        return;
    }
    float xs[16], ys[16];
    const float special[] = {-INFINITY, NAN, -0.0f, 0.0f, -FLT_MAX, -1e-40f, -1.4e-45f, -87.33654f, -87.336548f, -87.33653f};
    size_t count = 0, mismatches = 0;
    float first_bad = 0.0f;
    const size_t grid = (size_t)88 << 13, total = grid + 1 + sizeof special / sizeof *special;
    for (size_t i = 0; i < total; i += 16) {
        for (size_t l = 0; l < 16; l++) {
            const size_t k = i + l;
            xs[l] = k <= grid ? -(float)k / 8192.0f : (k - grid - 1 < sizeof special / sizeof *special ? special[k - grid - 1] : -1.0f);
        }
        exp16_avx512(xs, ys);
        for (size_t l = 0; l < 16; l++) {
            const float want = vm_expf_nonpos(xs[l]);
            count++;
            if (memcmp(&want, &ys[l], sizeof want) != 0 && !(isnan(want) && isnan(ys[l]))) {
                if (!mismatches) first_bad = xs[l];
                mismatches++;
            }
        }
    }
    cr_assert_gt(count, 720000);
    cr_assert_eq(mismatches, 0, "%zu of %zu results differ, the first at x = %.9g", mismatches, count, first_bad);
}
#endif
