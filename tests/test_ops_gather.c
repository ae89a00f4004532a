/* gather_rows / scatter_rows: finite differences with repeated indices, forwards against naive
 * loops, the kept copy of the caller's index buffer, and index/shape errors. */
#include <criterion/criterion.h>
#include <math.h>

#include "support/gradcheck.h"

/* B = 2, N = 7, n = 4; batch 1 repeats row 5, so backward must add both copies. */
static const int32_t IDX[8] = {6, 0, 3, 2, 5, 1, 5, 4};

static ag_tensor *f_gather(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_gather_rows(ctx, in[0], IDX, 4); }
static ag_tensor *f_scatter(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_scatter_rows(ctx, in[0], IDX, 7); }

Test(ops_gather, gradcheck_gather_rows) {
    gc_input in[1] = {{3, {2, 7, 5}, true, NULL}};
    GRADCHECK(f_gather, 1, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_gather, gradcheck_scatter_rows) {
    gc_input in[1] = {{3, {2, 4, 5}, true, NULL}};
    GRADCHECK(f_scatter, 1, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_gather, forwards_match_naive_loops) {
    /* Reference: gather y[b,j,c] = x[b, idx[b*n+j], c]; scatter z[b,i,c] = sum_{j: idx = i} s[b,j,c],
     * both by direct loops; exact in float (at most two terms summed). */
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[70], sd[40];
    for (int i = 0; i < 70; i++) xd[i] = (float)i;
    for (int i = 0; i < 40; i++) sd[i] = (float)(i * 3 % 17) - 8.0f;
    ag_tensor *y = ag_gather_rows(ctx, ag_wrap(ctx, xd, NULL, 3, (size_t[]){2, 7, 5}, false), IDX, 4);
    ag_tensor *z = ag_scatter_rows(ctx, ag_wrap(ctx, sd, NULL, 3, (size_t[]){2, 4, 5}, false), IDX, 7);
    cr_assert(y && z, "%s", tpsc_last_error());
    cr_assert(y->shape[0] == 2 && y->shape[1] == 4 && y->shape[2] == 5);
    cr_assert(z->shape[0] == 2 && z->shape[1] == 7 && z->shape[2] == 5);
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < 4; j++)
            for (int c = 0; c < 5; c++) cr_assert_eq(y->data[(b * 4 + j) * 5 + c], xd[(b * 7 + IDX[b * 4 + j]) * 5 + c]);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 7; i++)
            for (int c = 0; c < 5; c++) {
                float want = 0.0f;
                for (int j = 0; j < 4; j++)
                    if (IDX[b * 4 + j] == i) want += sd[(b * 4 + j) * 5 + c];
                cr_assert_eq(z->data[(b * 7 + i) * 5 + c], want, "b %d i %d c %d", b, i, c);
            }
    ag_ctx_free(ctx);
}

Test(ops_gather, backward_uses_a_copy_of_the_indices) {
    /* The caller reuses its index buffer before backward; the gradient must still follow the
     * indices of the forward. x [1,3,1] = [a,b,c], idx [2,2,0] -> y = [c,c,a]; with seed
     * [1,10,100]: dx = [100, 0, 11]. Small integers: exact. */
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[3] = {1, 2, 3}, gx[3] = {0}, seed[3] = {1, 10, 100};
    int32_t idx[3] = {2, 2, 0};
    ag_tensor *x = ag_wrap(ctx, xd, gx, 3, (size_t[]){1, 3, 1}, true);
    ag_tensor *y = ag_gather_rows(ctx, x, idx, 3);
    cr_assert_not_null(y);
    idx[0] = idx[1] = idx[2] = 1;
    cr_assert_eq(ag_backward_from(ctx, y, seed), TPSC_OK);
    cr_assert_eq(gx[0], 100.0f);
    cr_assert_eq(gx[1], 0.0f);
    cr_assert_eq(gx[2], 11.0f);
    ag_ctx_free(ctx);
}

Test(ops_gather, index_and_shape_errors) {
    ag_ctx *ctx = ag_ctx_create(0);
    float buf[64] = {0};
    int32_t too_big[4] = {0, 1, 7, 2}, negative[4] = {0, -1, 2, 3};
    ag_tensor *x = ag_wrap(ctx, buf, NULL, 3, (size_t[]){2, 7, 2}, false);
    cr_assert_null(ag_gather_rows(ctx, x, too_big, 2));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_ARG);
    cr_assert(strstr(tpsc_last_error(), "gather_rows") && strstr(tpsc_last_error(), "7"), "message: %s", tpsc_last_error());
    ag_ctx_reset(ctx);
    ag_tensor *s = ag_wrap(ctx, buf, NULL, 3, (size_t[]){2, 2, 2}, false);
    cr_assert_null(ag_scatter_rows(ctx, s, negative, 7));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_ARG);
    cr_assert(strstr(tpsc_last_error(), "scatter_rows") != NULL, "message: %s", tpsc_last_error());
    ag_ctx_reset(ctx);
    ag_tensor *flat = ag_wrap(ctx, buf, NULL, 2, (size_t[]){7, 2}, false);
    cr_assert_null(ag_gather_rows(ctx, flat, too_big, 2));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    cr_assert(strstr(tpsc_last_error(), "gather_rows") != NULL, "message: %s", tpsc_last_error());
    ag_ctx_free(ctx);
}

Test(ops_gather, large_gather_backward_matches_naive_loop) {
    /* B = 8, N = 197, C = 64, n = 137 kept rows with repeats (the threaded path). Reference:
     * dx[b, i, c] = sum over j with idx = i of dy[b, j, c], by direct loops; exact (small
     * integers). */
    enum { B = 8, N = 197, C = 64, n = 137 };
    ag_ctx *ctx = ag_ctx_create(0);
    float *x = ag_alloc(ctx, B * N * C * sizeof(float)), *gx = ag_alloc(ctx, B * N * C * sizeof(float));
    float *dy = ag_alloc(ctx, B * n * C * sizeof(float));
    int32_t *idx = ag_alloc(ctx, B * n * sizeof(int32_t));
    for (int i = 0; i < B * N * C; i++) {
        x[i] = (float)(i % 31);
        gx[i] = 0.0f;
    }
    for (int i = 0; i < B * n * C; i++) dy[i] = (float)(i % 17) - 8.0f;
    for (int i = 0; i < B * n; i++) idx[i] = (int32_t)((i * 7) % 150);
    ag_tensor *y = ag_gather_rows(ctx, ag_wrap(ctx, x, gx, 3, (size_t[]){B, N, C}, true), idx, n);
    cr_assert_not_null(y);
    cr_assert_eq(ag_backward_from(ctx, y, dy), TPSC_OK);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++)
            for (int c = 0; c < C; c++) {
                float want = 0.0f;
                for (int j = 0; j < n; j++)
                    if (idx[b * n + j] == i) want += dy[(b * n + j) * C + c];
                cr_assert_eq(gx[(b * N + i) * C + c], want, "b %d row %d c %d", b, i, c);
            }
    ag_ctx_free(ctx);
}
