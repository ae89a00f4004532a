/* linear: finite-difference checks (odd shapes) and a hand-computed forward. */
#include <criterion/criterion.h>

#include "support/gradcheck.h"

static ag_tensor *f_linear(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return ag_linear(ctx, in[0], in[1], in[2]);
}

static ag_tensor *f_linear_nobias(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return ag_linear(ctx, in[0], in[1], NULL);
}

Test(ops_linear, gradcheck_3d_odd_shapes) {
    /* x [B=2,N=7,Cin=5], w [Cout=3,Cin=5], b [3] */
    gc_input in[3] = {{3, {2, 7, 5}, true, NULL}, {2, {3, 5}, true, NULL}, {1, {3}, true, NULL}};
    GRADCHECK(f_linear, 3, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_linear, gradcheck_no_bias) {
    gc_input in[2] = {{2, {7, 5}, true, NULL}, {2, {1, 5}, true, NULL}};
    GRADCHECK(f_linear_nobias, 2, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_linear, forward_by_hand) {
    /* y = x w^T + b with x = [[1,2]], w = [[3,4],[5,6],[7,8]], b = [1,0,-1] -> [12, 17, 22] */
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[] = {1, 2}, wd[] = {3, 4, 5, 6, 7, 8}, bd[] = {1, 0, -1};
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 2, (size_t[]){1, 2}, false);
    ag_tensor *w = ag_wrap(ctx, wd, NULL, 2, (size_t[]){3, 2}, false);
    ag_tensor *b = ag_wrap(ctx, bd, NULL, 1, (size_t[]){3}, false);
    ag_tensor *y = ag_linear(ctx, x, w, b);
    cr_assert_not_null(y);
    cr_assert_float_eq(y->data[0], 12.0f, 1e-6);
    cr_assert_float_eq(y->data[1], 17.0f, 1e-6);
    cr_assert_float_eq(y->data[2], 22.0f, 1e-6);
    ag_ctx_free(ctx);
}

Test(ops_linear, shape_mismatch_is_an_error) {
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[6] = {0}, wd[6] = {0};
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 2, (size_t[]){2, 3}, false);
    ag_tensor *w = ag_wrap(ctx, wd, NULL, 2, (size_t[]){3, 2}, false);
    cr_assert_null(ag_linear(ctx, x, w, NULL));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    cr_assert(strstr(tpsc_last_error(), "linear") != NULL, "message: %s", tpsc_last_error());
    ag_ctx_free(ctx);
}
