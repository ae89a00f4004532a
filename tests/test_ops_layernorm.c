/* layernorm over the last dim: finite differences for x, w, b; a hand value; a naive double
 * reference with PyTorch's definition (biased variance, eps inside the sqrt); shape errors. */
#include <criterion/criterion.h>
#include <math.h>

#include "src/util/rng.h"
#include "support/gradcheck.h"

static ag_tensor *f_ln(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_layernorm(ctx, in[0], in[1], in[2], 1e-6f); }

Test(ops_layernorm, gradcheck_odd_shapes) {
    gc_input in[3] = {{3, {2, 7, 5}, true, NULL}, {1, {5}, true, NULL}, {1, {5}, true, NULL}};
    GRADCHECK(f_ln, 3, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_layernorm, gradcheck_x_only_wide_rows) {
    /* C = 131: more than two column blocks of the w/b reduction (w, b frozen here, then x). */
    gc_input in[3] = {{2, {3, 131}, false, NULL}, {1, {131}, true, NULL}, {1, {131}, true, NULL}};
    GRADCHECK(f_ln, 3, in, NULL, 1e-2, 1e-3, 1e-2);
    gc_input in2[3] = {{2, {3, 131}, true, NULL}, {1, {131}, false, NULL}, {1, {131}, false, NULL}};
    GRADCHECK(f_ln, 3, in2, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_layernorm, forward_by_hand) {
    /* x = [1, 2, 3], eps = 0: mean 2, biased var 2/3, rstd = sqrt(3/2) = 1.2247449;
     * with w = [1, 2, 3], b = [0, 0, 1]: y = [-1.2247449, 0, 1 + 3 * 1.2247449 = 4.6742346].
     * Tolerance 1e-6 absolute. */
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[] = {1, 2, 3}, wd[] = {1, 2, 3}, bd[] = {0, 0, 1};
    ag_tensor *y = ag_layernorm(ctx, ag_wrap(ctx, xd, NULL, 1, (size_t[]){3}, false), ag_wrap(ctx, wd, NULL, 1, (size_t[]){3}, false),
                                ag_wrap(ctx, bd, NULL, 1, (size_t[]){3}, false), 0.0f);
    cr_assert_not_null(y);
    cr_assert_float_eq(y->data[0], -1.2247449f, 1e-6);
    cr_assert_float_eq(y->data[1], 0.0f, 1e-6);
    cr_assert_float_eq(y->data[2], 4.6742346f, 1e-6);
    ag_ctx_free(ctx);
}

Test(ops_layernorm, matches_naive_double_reference) {
    /* Reference: PyTorch's LayerNorm in double, rows [M=100, C=192] (threaded path) with an offset mean of 100
     * (where a one-pass variance would lose digits), eps 1e-6. Tolerance 1e-4 absolute on y
     * (float inputs with |x| ~ 100 have ~1e-5 spacing, divided by std ~1). */
    enum { M = 100, C = 192 };
    ag_ctx *ctx = ag_ctx_create(0);
    float *xd = ag_alloc(ctx, M * C * sizeof(float)), wd[C], bd[C];
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 11);
    for (int i = 0; i < M * C; i++) xd[i] = 100.0f + tpsc_rng_normal(&rng);
    for (int c = 0; c < C; c++) {
        wd[c] = 1.0f + 0.1f * tpsc_rng_normal(&rng);
        bd[c] = 0.1f * tpsc_rng_normal(&rng);
    }
    ag_tensor *y = ag_layernorm(ctx, ag_wrap(ctx, xd, NULL, 2, (size_t[]){M, C}, false), ag_wrap(ctx, wd, NULL, 1, (size_t[]){C}, false),
                                ag_wrap(ctx, bd, NULL, 1, (size_t[]){C}, false), 1e-6f);
    cr_assert_not_null(y);
    for (int r = 0; r < M; r++) {
        double mean = 0.0, var = 0.0;
        for (int c = 0; c < C; c++) mean += xd[r * C + c];
        mean /= C;
        for (int c = 0; c < C; c++) var += (xd[r * C + c] - mean) * (xd[r * C + c] - mean);
        var /= C;
        for (int c = 0; c < C; c++) {
            double want = (xd[r * C + c] - mean) / sqrt(var + 1e-6) * wd[c] + bd[c];
            cr_assert(fabs(y->data[r * C + c] - want) < 1e-4, "row %d col %d: %g vs %g", r, c, (double)y->data[r * C + c], want);
        }
    }
    ag_ctx_free(ctx);
}

Test(ops_layernorm, wrong_weight_shape_is_an_error) {
    ag_ctx *ctx = ag_ctx_create(0);
    float buf[16] = {0};
    ag_tensor *x = ag_wrap(ctx, buf, NULL, 2, (size_t[]){2, 5}, false);
    ag_tensor *w = ag_wrap(ctx, buf, NULL, 1, (size_t[]){4}, false);
    ag_tensor *b = ag_wrap(ctx, buf, NULL, 1, (size_t[]){5}, false);
    cr_assert_null(ag_layernorm(ctx, x, w, b, 1e-6f));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    cr_assert(strstr(tpsc_last_error(), "layernorm") != NULL, "message: %s", tpsc_last_error());
    ag_ctx_free(ctx);
}
