/* reshape, permute, transpose, concat, slice, expand0: finite differences on odd shapes,
 * forwards against naive index arithmetic, and shape errors. */
#include <criterion/criterion.h>
#include <math.h>

#include "support/gradcheck.h"
#include "support/op_error.h"

/* ---- gradchecks ----------------------------------------------------------------------------- */

static ag_tensor *f_reshape(ag_ctx *ctx, ag_tensor **in, void *user) {
    /* [2,7,5] -> [14,5], then a scale so the view's gradient must travel through a node. */
    return ag_scale(ctx, ag_reshape(ctx, in[0], 2, (size_t[]){14, 5}), 3.0f);
}
static ag_tensor *f_reshape_only(ag_ctx *ctx, ag_tensor **in, void *user) {
    return ag_reshape(ctx, in[0], 4, (size_t[]){7, 1, 2, 5});
}

Test(ops_shape, gradcheck_reshape) {
    gc_input in[1] = {{3, {2, 7, 5}, true, NULL}};
    GRADCHECK(f_reshape, 1, in, NULL, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_reshape_only, 1, in, NULL, 1e-2, 1e-3, 1e-2);
}

static ag_tensor *f_permute(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_permute(ctx, in[0], user); }

Test(ops_shape, gradcheck_permute_4d_3d_2d) {
    /* [B,N,H,D] -> [B,H,N,D] (the attention split), a permute whose last dim is strided, and
     * 3-D / 2-D ones. */
    gc_input in4[1] = {{4, {2, 3, 5, 7}, true, NULL}};
    int p0[] = {0, 2, 1, 3}, p1[] = {3, 1, 0, 2}, p2[] = {2, 0, 1}, p3[] = {1, 0};
    GRADCHECK(f_permute, 1, in4, p0, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_permute, 1, in4, p1, 1e-2, 1e-3, 1e-2);
    gc_input in3[1] = {{3, {3, 7, 5}, true, NULL}};
    GRADCHECK(f_permute, 1, in3, p2, 1e-2, 1e-3, 1e-2);
    gc_input in2[1] = {{2, {7, 5}, true, NULL}};
    GRADCHECK(f_permute, 1, in2, p3, 1e-2, 1e-3, 1e-2);
}

static ag_tensor *f_transpose(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_transpose(ctx, in[0], 1, -1); }

Test(ops_shape, gradcheck_transpose) {
    gc_input in[1] = {{3, {3, 7, 5}, true, NULL}};
    GRADCHECK(f_transpose, 1, in, NULL, 1e-2, 1e-3, 1e-2);
}

static ag_tensor *f_concat(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_concat(ctx, 3, in, *(int *)user); }

Test(ops_shape, gradcheck_concat_every_dim) {
    int d0 = 0, d1 = 1, d2 = 2, dm = -1;
    gc_input a[3] = {{3, {1, 7, 5}, true, NULL}, {3, {3, 7, 5}, true, NULL}, {3, {2, 7, 5}, true, NULL}};
    GRADCHECK(f_concat, 3, a, &d0, 1e-2, 1e-3, 1e-2);
    /* cls token [B,1,C] + patch tokens [B,6,C] + a fused token [B,1,C] */
    gc_input b[3] = {{3, {2, 1, 5}, true, NULL}, {3, {2, 6, 5}, true, NULL}, {3, {2, 1, 5}, false, NULL}};
    GRADCHECK(f_concat, 3, b, &d1, 1e-2, 1e-3, 1e-2);
    gc_input c[3] = {{3, {2, 7, 3}, true, NULL}, {3, {2, 7, 1}, true, NULL}, {3, {2, 7, 5}, true, NULL}};
    GRADCHECK(f_concat, 3, c, &d2, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_concat, 3, c, &dm, 1e-2, 1e-3, 1e-2);
}

static ag_tensor *f_concat8(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_concat(ctx, 8, in, 1); }

Test(ops_shape, gradcheck_concat_more_inputs_than_a_node_holds) {
    /* 8 > AG_MAX_INPUTS inputs: joined in two nodes. */
    gc_input in[8];
    for (int k = 0; k < 8; k++) in[k] = (gc_input){2, {3, (size_t)(k % 3 + 1)}, true, NULL};
    GRADCHECK(f_concat8, 8, in, NULL, 1e-2, 1e-3, 1e-2);
}

typedef struct slice_args {
    int dim;
    size_t start, len;
} slice_args;

static ag_tensor *f_slice(ag_ctx *ctx, ag_tensor **in, void *user) {
    const slice_args *s = user;
    return ag_slice(ctx, in[0], s->dim, s->start, s->len);
}

Test(ops_shape, gradcheck_slice) {
    gc_input in[1] = {{3, {3, 7, 5}, true, NULL}};
    slice_args cases[] = {{0, 1, 2}, {1, 2, 3}, {1, 0, 1}, {2, 4, 1}, {-1, 1, 3}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) GRADCHECK(f_slice, 1, in, &cases[i], 1e-2, 1e-3, 1e-2);
}

static ag_tensor *f_expand0(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_expand0(ctx, in[0], 3); }

Test(ops_shape, gradcheck_expand0) {
    gc_input in[1] = {{3, {1, 7, 5}, true, NULL}};
    GRADCHECK(f_expand0, 1, in, NULL, 1e-2, 1e-3, 1e-2);
}

/* ---- forwards ------------------------------------------------------------------------------- */

static void iota(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = (float)i;
}

Test(ops_shape, reshape_is_a_view) {
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[6];
    iota(xd, 6);
    ag_tensor *y = ag_reshape(ctx, ag_wrap(ctx, xd, NULL, 2, (size_t[]){2, 3}, false), 3, (size_t[]){3, 1, 2});
    cr_assert_not_null(y);
    cr_assert_eq(y->data, xd);
    cr_assert_eq(y->ndim, 3);
    cr_assert_eq(y->shape[0], 3);
    cr_assert_eq(y->shape[2], 2);
    ag_ctx_free(ctx);
}

Test(ops_shape, permute_matches_index_arithmetic) {
    /* Reference: y[i0,i1,i2,i3] = x[...] with x's index given by perm, from row-major offsets.
     * A copy: exact. */
    ag_ctx *ctx = ag_ctx_create(0);
    const size_t s[4] = {2, 3, 5, 7};
    float xd[210];
    iota(xd, 210);
    const int perm[4] = {3, 1, 0, 2};
    ag_tensor *y = ag_permute(ctx, ag_wrap(ctx, xd, NULL, 4, s, false), perm);
    cr_assert_not_null(y);
    for (int i = 0; i < 4; i++) cr_assert_eq(y->shape[i], s[perm[i]]);
    size_t o = 0, idx[4];
    for (idx[0] = 0; idx[0] < y->shape[0]; idx[0]++)
        for (idx[1] = 0; idx[1] < y->shape[1]; idx[1]++)
            for (idx[2] = 0; idx[2] < y->shape[2]; idx[2]++)
                for (idx[3] = 0; idx[3] < y->shape[3]; idx[3]++, o++) {
                    size_t xi[4];
                    for (int k = 0; k < 4; k++) xi[perm[k]] = idx[k];
                    size_t off = ((xi[0] * s[1] + xi[1]) * s[2] + xi[2]) * s[3] + xi[3];
                    cr_assert_eq(y->data[o], xd[off], "out %zu", o);
                }
    ag_ctx_free(ctx);
}

Test(ops_shape, transpose_by_hand) {
    /* [[0,1,2],[3,4,5]]^T = [[0,3],[1,4],[2,5]]; a copy: exact. */
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[6];
    iota(xd, 6);
    ag_tensor *y = ag_transpose(ctx, ag_wrap(ctx, xd, NULL, 2, (size_t[]){2, 3}, false), 0, 1);
    cr_assert_not_null(y);
    const float want[] = {0, 3, 1, 4, 2, 5};
    for (int i = 0; i < 6; i++) cr_assert_eq(y->data[i], want[i]);
    ag_ctx_free(ctx);
}

Test(ops_shape, concat_slice_expand_by_hand) {
    /* a = [[0,1],[2,3]], b = [[10],[11]]: concat dim 1 = [[0,1,10],[2,3,11]];
     * concat dim 0 of a, a = [[0,1],[2,3],[0,1],[2,3]]; slice dim 1 [1,3) of the first = [[1,10],[3,11]];
     * expand0 of [1,2] row [5,6] to 3 = [[5,6],[5,6],[5,6]]. Copies: exact. */
    ag_ctx *ctx = ag_ctx_create(0);
    float ad[] = {0, 1, 2, 3}, bd[] = {10, 11}, ed[] = {5, 6};
    ag_tensor *a = ag_wrap(ctx, ad, NULL, 2, (size_t[]){2, 2}, false);
    ag_tensor *b = ag_wrap(ctx, bd, NULL, 2, (size_t[]){2, 1}, false);
    ag_tensor *c1 = ag_concat(ctx, 2, (ag_tensor *[]){a, b}, 1);
    ag_tensor *c0 = ag_concat(ctx, 2, (ag_tensor *[]){a, a}, 0);
    ag_tensor *sl = ag_slice(ctx, c1, 1, 1, 2);
    ag_tensor *ex = ag_expand0(ctx, ag_wrap(ctx, ed, NULL, 2, (size_t[]){1, 2}, false), 3);
    cr_assert(c1 && c0 && sl && ex, "%s", tpsc_last_error());
    const float w1[] = {0, 1, 10, 2, 3, 11}, w0[] = {0, 1, 2, 3, 0, 1, 2, 3}, ws[] = {1, 10, 3, 11}, we[] = {5, 6, 5, 6, 5, 6};
    cr_assert(c1->shape[0] == 2 && c1->shape[1] == 3);
    cr_assert(c0->shape[0] == 4 && c0->shape[1] == 2);
    cr_assert(sl->shape[0] == 2 && sl->shape[1] == 2);
    cr_assert(ex->shape[0] == 3 && ex->shape[1] == 2);
    for (int i = 0; i < 6; i++) cr_assert_eq(c1->data[i], w1[i]);
    for (int i = 0; i < 8; i++) cr_assert_eq(c0->data[i], w0[i]);
    for (int i = 0; i < 4; i++) cr_assert_eq(sl->data[i], ws[i]);
    for (int i = 0; i < 6; i++) cr_assert_eq(ex->data[i], we[i]);
    ag_ctx_free(ctx);
}

/* ---- errors --------------------------------------------------------------------------------- */

/* Every case here is a shape error. */
static void expect_shape_error(ag_ctx *ctx, ag_tensor *y, const char *op) { op_expect_error(ctx, y, TPSC_ERR_SHAPE, op); }

Test(ops_shape, shape_errors) {
    ag_ctx *ctx = ag_ctx_create(0);
    float buf[64] = {0};
#define X(n, ...) ag_wrap(ctx, buf, NULL, n, (size_t[]){__VA_ARGS__}, false)
    expect_shape_error(ctx, ag_reshape(ctx, X(2, 2, 3), 2, (size_t[]){4, 2}), "reshape");
    expect_shape_error(ctx, ag_reshape(ctx, X(2, 2, 3), 5, (size_t[]){1, 1, 1, 2, 3}), "reshape");
    expect_shape_error(ctx, ag_permute(ctx, X(3, 2, 3, 4), (int[]){0, 0, 1}), "permute");
    expect_shape_error(ctx, ag_permute(ctx, X(2, 2, 3), (int[]){0, 2}), "permute");
    expect_shape_error(ctx, ag_transpose(ctx, X(2, 2, 3), 0, 2), "transpose");
    expect_shape_error(ctx, ag_concat(ctx, 2, (ag_tensor *[]){X(2, 2, 3), X(2, 3, 3)}, 1), "concat");
    expect_shape_error(ctx, ag_concat(ctx, 2, (ag_tensor *[]){X(2, 2, 3), X(3, 2, 3, 1)}, 0), "concat");
    expect_shape_error(ctx, ag_concat(ctx, 2, (ag_tensor *[]){X(2, 2, 3), X(2, 2, 3)}, 2), "concat");
    expect_shape_error(ctx, ag_slice(ctx, X(2, 2, 3), 1, 2, 2), "slice");
    expect_shape_error(ctx, ag_slice(ctx, X(2, 2, 3), 1, 0, 0), "slice");
    expect_shape_error(ctx, ag_slice(ctx, X(2, 2, 3), 2, 0, 1), "slice");
    expect_shape_error(ctx, ag_expand0(ctx, X(2, 2, 3), 4), "expand0");
#undef X
    ag_ctx_free(ctx);
}

Test(ops_shape, large_permute_and_its_backward_match_index_arithmetic) {
    /* [B=4, N=33, H=6, D=64] -> [B, H, N, D], 50688 elements (threaded path). Forward against
     * the row-major index formula; backward with dy = y must give dx = x (a permutation
     * moves every element exactly once). Exact in float. */
    enum { B = 4, N = 33, H = 6, D = 64, T = B * N * H * D };
    ag_ctx *ctx = ag_ctx_create(0);
    float *xd = ag_alloc(ctx, T * sizeof(float)), *gx = ag_alloc(ctx, T * sizeof(float));
    for (int i = 0; i < T; i++) {
        xd[i] = (float)i;
        gx[i] = 0.0f;
    }
    ag_tensor *x = ag_wrap(ctx, xd, gx, 4, (size_t[]){B, N, H, D}, true);
    ag_tensor *y = ag_permute(ctx, x, (int[]){0, 2, 1, 3});
    cr_assert_not_null(y);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int n = 0; n < N; n++)
                for (int d = 0; d < D; d++)
                    cr_assert_eq(y->data[((b * H + h) * N + n) * D + d], xd[((b * N + n) * H + h) * D + d]);
    cr_assert_eq(ag_backward_from(ctx, y, y->data), TPSC_OK);
    for (int i = 0; i < T; i++) cr_assert_eq(gx[i], xd[i], "dx[%d]", i);
    ag_ctx_free(ctx);
}
