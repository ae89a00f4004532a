/* fused linear ops: finite differences on odd shapes (with and without bias/residual, and with
 * one tensor feeding two inputs so the accumulate path of ag_grad_write runs), and agreement
 * with the unfused chain of ops they replace. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "src/util/rng.h"
#include "support/gradcheck.h"
#include "support/layernorm_chain.h"

static ag_tensor *f_lin_res(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return ag_linear_residual(ctx, in[0], in[1], in[2], in[3]);
}
static ag_tensor *f_lin_plain(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return ag_linear_residual(ctx, in[0], in[1], NULL, NULL);
}
static ag_tensor *f_gelu_res(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return ag_gelu_linear_residual(ctx, in[0], in[1], in[2], in[3]);
}
static ag_tensor *f_gelu_plain(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return ag_gelu_linear_residual(ctx, in[0], in[1], NULL, NULL);
}
/* x is both the layer input and the residual (Cin == Cout): its gradient has two writers. */
static ag_tensor *f_lin_self(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return ag_linear_residual(ctx, in[0], in[1], in[2], in[0]);
}
static ag_tensor *f_gelu_self(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return ag_gelu_linear_residual(ctx, in[0], in[1], in[2], in[0]);
}
/* The product feeds a second op, so x's gradient is not the first one written downstream. */
static ag_tensor *f_gelu_twice(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    ag_tensor *y = ag_gelu_linear_residual(ctx, in[0], in[1], in[2], NULL);
    return ag_add(ctx, ag_gelu(ctx, in[0]), ag_scale(ctx, ag_gelu_linear_residual(ctx, y, in[1], NULL, in[3]), 0.5f));
}

/* Tolerances as test_ops_linear.c / test_ops_gelu.c: h 1e-2, atol 1e-3, rtol 1e-2 against central
 * differences in double. */
Test(ops_fused, gradcheck_linear_residual_odd_shapes) {
    /* x [B=2,N=7,Cin=5], w [Cout=3,Cin=5], b [3], r [2,7,3] */
    gc_input in[4] = {{3, {2, 7, 5}, true, NULL}, {2, {3, 5}, true, NULL}, {1, {3}, true, NULL}, {3, {2, 7, 3}, true, NULL}};
    GRADCHECK(f_lin_res, 4, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_fused, gradcheck_linear_no_bias_no_residual) {
    gc_input in[2] = {{2, {7, 5}, true, NULL}, {2, {3, 5}, true, NULL}};
    GRADCHECK(f_lin_plain, 2, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_fused, gradcheck_gelu_linear_residual_odd_shapes) {
    gc_input in[4] = {{3, {2, 7, 5}, true, NULL}, {2, {3, 5}, true, NULL}, {1, {3}, true, NULL}, {3, {2, 7, 3}, true, NULL}};
    GRADCHECK(f_gelu_res, 4, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_fused, gradcheck_gelu_linear_no_bias_no_residual) {
    gc_input in[2] = {{2, {7, 5}, true, NULL}, {2, {3, 5}, true, NULL}};
    GRADCHECK(f_gelu_plain, 2, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_fused, gradcheck_frozen_weight_or_constant_input) {
    /* Only dx (frozen w), then only dw (x needs no gradient): the backward's one-sided paths. */
    gc_input frozen_w[4] = {{2, {7, 5}, true, NULL}, {2, {3, 5}, false, NULL}, {1, {3}, true, NULL}, {2, {7, 3}, true, NULL}};
    GRADCHECK(f_gelu_res, 4, frozen_w, NULL, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_lin_res, 4, frozen_w, NULL, 1e-2, 1e-3, 1e-2);
    gc_input const_x[4] = {{2, {7, 5}, false, NULL}, {2, {3, 5}, true, NULL}, {1, {3}, false, NULL}, {2, {7, 3}, false, NULL}};
    GRADCHECK(f_gelu_res, 4, const_x, NULL, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_lin_res, 4, const_x, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_fused, gradcheck_input_that_is_also_the_residual) {
    gc_input in[3] = {{3, {3, 5, 7}, true, NULL}, {2, {7, 7}, true, NULL}, {1, {7}, true, NULL}};
    GRADCHECK(f_lin_self, 3, in, NULL, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_gelu_self, 3, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_fused, gradcheck_gradient_with_several_writers) {
    /* x [7,5] -> y [7,5] -> second layer with residual r [7,5]; x also feeds a plain gelu. */
    gc_input in[4] = {{2, {7, 5}, true, NULL}, {2, {5, 5}, true, NULL}, {1, {5}, true, NULL}, {2, {7, 5}, true, NULL}};
    GRADCHECK(f_gelu_twice, 4, in, NULL, 1e-2, 1e-3, 1e-2);
}

/* Reference: the unfused chain add(r, linear(gelu?(x), w, b)) of already-tested ops, forward and
 * all four gradients. The same float products in a different order of additions: tolerance
 * 1e-5 relative to the largest magnitude of each compared tensor. */
static void compare_with_chain(bool gelu) {
    enum { M = 9, CI = 11, CO = 6 };
    float xd[M * CI], wd[CO * CI], bd[CO], rd[M * CO], seed[M * CO];
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 7);
    for (int i = 0; i < M * CI; i++) xd[i] = 2.0f * tpsc_rng_normal(&rng);
    for (int i = 0; i < CO * CI; i++) wd[i] = tpsc_rng_normal(&rng);
    for (int i = 0; i < CO; i++) bd[i] = tpsc_rng_normal(&rng);
    for (int i = 0; i < M * CO; i++) rd[i] = tpsc_rng_normal(&rng), seed[i] = tpsc_rng_normal(&rng);
    float g[2][4][M * CI];
    float y[2][M * CO];
    memset(g, 0, sizeof g);
    for (int pass = 0; pass < 2; pass++) {
        ag_ctx *ctx = ag_ctx_create(0);
        ag_tensor *x = ag_wrap(ctx, xd, g[pass][0], 2, (size_t[]){M, CI}, true);
        ag_tensor *w = ag_wrap(ctx, wd, g[pass][1], 2, (size_t[]){CO, CI}, true);
        ag_tensor *b = ag_wrap(ctx, bd, g[pass][2], 1, (size_t[]){CO}, true);
        ag_tensor *r = ag_wrap(ctx, rd, g[pass][3], 2, (size_t[]){M, CO}, true);
        ag_tensor *out;
        if (pass == 0)
            out = ag_add(ctx, r, ag_linear(ctx, gelu ? ag_gelu(ctx, x) : x, w, b));
        else
            out = gelu ? ag_gelu_linear_residual(ctx, x, w, b, r) : ag_linear_residual(ctx, x, w, b, r);
        cr_assert_not_null(out, "%s", tpsc_last_error());
        memcpy(y[pass], out->data, sizeof y[pass]);
        cr_assert_eq(ag_backward_from(ctx, out, seed), TPSC_OK, "%s", tpsc_last_error());
        ag_ctx_free(ctx);
    }
    const int sizes[5] = {M * CO, M * CI, CO * CI, CO, M * CO};
    for (int t = 0; t < 5; t++) {
        const float *a = t == 0 ? y[0] : g[0][t - 1], *f = t == 0 ? y[1] : g[1][t - 1];
        double scale = 0.0, worst = 0.0;
        for (int i = 0; i < sizes[t]; i++) {
            scale = fmax(scale, fabs(a[i]));
            worst = fmax(worst, fabs((double)a[i] - f[i]));
        }
        cr_assert(scale > 0.0, "tensor %d is all zeros", t);
        cr_assert(worst <= 1e-5 * scale, "%s: tensor %d (0 = output, then dx dw db dr) differs by %g (scale %g)",
                  gelu ? "gelu_linear_residual" : "linear_residual", t, worst, scale);
    }
}

static ag_tensor *f_ln_lin(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return ag_layernorm_linear(ctx, in[0], in[1], in[2], 1e-5f, in[3], in[4]);
}
static ag_tensor *f_ln_lin_plain(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return ag_layernorm_linear(ctx, in[0], in[1], in[2], 1e-5f, in[3], NULL);
}

/* Tolerances as test_ops_layernorm.c's: h 1e-2, atol 2e-3, rtol 2e-2. */
Test(ops_fused, gradcheck_layernorm_linear_odd_shapes) {
    /* x [B=2,N=7,C=5], ln_w [5], ln_b [5], w [Cout=3,5], b [3] */
    gc_input in[5] = {{3, {2, 7, 5}, true, NULL}, {1, {5}, true, NULL}, {1, {5}, true, NULL}, {2, {3, 5}, true, NULL},
                      {1, {3}, true, NULL}};
    GRADCHECK(f_ln_lin, 5, in, NULL, 1e-2, 2e-3, 2e-2);
}

Test(ops_fused, gradcheck_layernorm_linear_no_bias) {
    gc_input in[4] = {{2, {7, 5}, true, NULL}, {1, {5}, true, NULL}, {1, {5}, true, NULL}, {2, {3, 5}, true, NULL}};
    GRADCHECK(f_ln_lin_plain, 4, in, NULL, 1e-2, 2e-3, 2e-2);
}

/* FP32 here; test_bf16_train.c runs the same check in BF16 */
Test(ops_fused, layernorm_linear_matches_unfused_chain) { layernorm_linear_matches_chain(AG_FP32); }

Test(ops_fused, linear_residual_matches_unfused_chain) { compare_with_chain(false); }
Test(ops_fused, gelu_linear_residual_matches_unfused_chain) { compare_with_chain(true); }

Test(ops_fused, residual_shape_mismatch_is_an_error) {
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[6] = {0}, wd[6] = {0}, rd[6] = {0};
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 2, (size_t[]){2, 3}, false);
    ag_tensor *w = ag_wrap(ctx, wd, NULL, 2, (size_t[]){2, 3}, false);
    ag_tensor *r = ag_wrap(ctx, rd, NULL, 2, (size_t[]){3, 2}, false);
    cr_assert_null(ag_gelu_linear_residual(ctx, x, w, NULL, r));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    cr_assert(strstr(tpsc_last_error(), "residual") != NULL, "message: %s", tpsc_last_error());
    ag_ctx_free(ctx);
}

/* The residual's gradient is the incoming gradient itself: r takes the output's buffer when it
 * has none yet (ag_grad_pass), and must not when the output keeps its gradient (retain_grad):
 * then both hold dy, in two buffers. Here r also feeds the layer's input, x = 2 r, whose
 * backward runs after the fused op's and adds onto the buffer r took:
 *   dr = dy + 2 dy w.
 * Reference: that sum in double; tolerance 1e-6 relative (three float terms per element). */
static void residual_gradient_case(bool retain) {
    enum { M = 4, C = 3 };
    float wd[C * C], seed[M * C];
    for (int i = 0; i < M * C; i++) seed[i] = (float)i - 5.5f;
    for (int i = 0; i < C * C; i++) wd[i] = 0.05f * (float)i - 0.1f;
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *w = ag_wrap(ctx, wd, NULL, 2, (size_t[]){C, C}, false);
    ag_tensor *r = ag_new2(ctx, M, C);
    for (int i = 0; i < M * C; i++) r->data[i] = 0.1f * (float)(i % 5) - 0.2f;
    r->requires_grad = r->retain_grad = true;
    ag_tensor *y = ag_linear_residual(ctx, ag_scale(ctx, r, 2.0f), w, NULL, r);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    y->retain_grad = retain;
    cr_assert_eq(ag_backward_from(ctx, y, seed), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_not_null(r->grad);
    for (int m = 0; m < M; m++)
        for (int c = 0; c < C; c++) {
            double want = seed[m * C + c];
            for (int o = 0; o < C; o++) want += 2.0 * (double)seed[m * C + o] * wd[o * C + c];
            const double got = r->grad[m * C + c];
            cr_assert(fabs(got - want) <= 1e-6 * (1.0 + fabs(want)), "dr[%d,%d] = %.9g, want %.9g", m, c, got, want);
        }
    if (retain) {
        cr_assert_not_null(y->grad, "the retained output gradient was given away");
        cr_assert_neq(y->grad, r->grad, "output and residual share one gradient buffer");
        for (int i = 0; i < M * C; i++) cr_assert_eq(y->grad[i], seed[i], "dy[%d] = %g", i, y->grad[i]);
    }
    ag_ctx_free(ctx);
}

Test(ops_fused, residual_takes_the_output_gradient) { residual_gradient_case(false); }
Test(ops_fused, residual_copies_a_retained_output_gradient) { residual_gradient_case(true); }
