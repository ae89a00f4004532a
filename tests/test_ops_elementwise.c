/* add, sub, mul, scale, add_scalar: finite-difference checks for same-shape, suffix-broadcast
 * and per-row operands, forwards by hand and against naive loops, broadcast errors. */
#include <criterion/criterion.h>
#include <math.h>

#include "support/gradcheck.h"
#include "support/op_error.h"

static ag_tensor *f_add(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_add(ctx, in[0], in[1]); }
static ag_tensor *f_sub(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_sub(ctx, in[0], in[1]); }
static ag_tensor *f_mul(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_mul(ctx, in[0], in[1]); }
static ag_tensor *f_square(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_mul(ctx, in[0], in[0]); }
static ag_tensor *f_scale(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_scale(ctx, in[0], -1.7f); }
static ag_tensor *f_add_scalar(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_add_scalar(ctx, in[0], 2.5f); }

/* b operands for a [B=2,N=7,C=5]: same shape, suffix [C], suffix [1,N,C], suffix [N,C],
 * scalar-like [1]. */
static const gc_input A = {3, {2, 7, 5}, true, NULL};
static const gc_input SUFFIX_B[] = {
    {3, {2, 7, 5}, true, NULL}, {1, {5}, true, NULL}, {3, {1, 7, 5}, true, NULL}, {2, {7, 5}, true, NULL}, {1, {1}, true, NULL},
};

Test(ops_elementwise, gradcheck_add_sub_mul_broadcasts) {
    gc_fn fns[] = {f_add, f_sub, f_mul};
    for (size_t f = 0; f < 3; f++)
        for (size_t i = 0; i < sizeof SUFFIX_B / sizeof *SUFFIX_B; i++) {
            gc_input in[2] = {A, SUFFIX_B[i]};
            GRADCHECK(fns[f], 2, in, NULL, 1e-2, 1e-3, 1e-2);
        }
}

Test(ops_elementwise, gradcheck_mul_per_row) {
    /* Token mask [B,N,1] times tokens [B,N,C]. */
    gc_input in[2] = {A, {3, {2, 7, 1}, true, NULL}};
    GRADCHECK(f_mul, 2, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_elementwise, gradcheck_only_b_requires_grad) {
    gc_input in[2] = {A, {1, {5}, true, NULL}};
    in[0].requires_grad = false;
    GRADCHECK(f_add, 2, in, NULL, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_mul, 2, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_elementwise, gradcheck_same_tensor_twice) {
    /* x * x: both operand slots add into one gradient, d/dx = 2x. */
    gc_input in[1] = {{2, {7, 5}, true, NULL}};
    GRADCHECK(f_square, 1, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_elementwise, gradcheck_scale_and_add_scalar) {
    gc_input in[1] = {A};
    GRADCHECK(f_scale, 1, in, NULL, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_add_scalar, 1, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_elementwise, forward_by_hand) {
    /* a = [[1,2,3],[4,5,6]], bias [10,20,30], mask [[2],[-1]]:
     * a + bias = [[11,22,33],[14,25,36]];  a - bias = [[-9,-18,-27],[-6,-15,-24]];
     * a * bias = [[10,40,90],[40,100,180]]; a * mask = [[2,4,6],[-4,-5,-6]];
     * 3a = [[3,6,9],[12,15,18]]; a + 0.5 = [[1.5,...]]. Exact in float (checked to 1e-6). */
    ag_ctx *ctx = ag_ctx_create(0);
    float ad[] = {1, 2, 3, 4, 5, 6}, bd[] = {10, 20, 30}, md[] = {2, -1};
    ag_tensor *a = ag_wrap(ctx, ad, NULL, 2, (size_t[]){2, 3}, false);
    ag_tensor *b = ag_wrap(ctx, bd, NULL, 1, (size_t[]){3}, false);
    ag_tensor *m = ag_wrap(ctx, md, NULL, 2, (size_t[]){2, 1}, false);
    const float add[] = {11, 22, 33, 14, 25, 36}, sub[] = {-9, -18, -27, -6, -15, -24}, mul[] = {10, 40, 90, 40, 100, 180},
                row[] = {2, 4, 6, -4, -5, -6};
    ag_tensor *ys[4] = {ag_add(ctx, a, b), ag_sub(ctx, a, b), ag_mul(ctx, a, b), ag_mul(ctx, a, m)};
    const float *want[4] = {add, sub, mul, row};
    for (int k = 0; k < 4; k++) {
        cr_assert_not_null(ys[k], "op %d: %s", k, tpsc_last_error());
        cr_assert(ag_same_shape(ys[k], a));
        for (int i = 0; i < 6; i++) cr_assert_float_eq(ys[k]->data[i], want[k][i], 1e-6, "op %d element %d", k, i);
    }
    ag_tensor *s = ag_scale(ctx, a, 3.0f), *p = ag_add_scalar(ctx, a, 0.5f);
    cr_assert_not_null(s);
    cr_assert_not_null(p);
    for (int i = 0; i < 6; i++) {
        cr_assert_float_eq(s->data[i], 3.0f * ad[i], 1e-6);
        cr_assert_float_eq(p->data[i], ad[i] + 0.5f, 1e-6);
    }
    ag_ctx_free(ctx);
}

Test(ops_elementwise, pos_embed_broadcast_matches_naive_loop) {
    /* Reference: y[b,n,c] = x[b,n,c] + pe[0,n,c], an independent loop; exact in float. */
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[2 * 7 * 5], pd[7 * 5];
    for (int i = 0; i < 70; i++) xd[i] = (float)(i % 11) - 3.0f;
    for (int i = 0; i < 35; i++) pd[i] = 0.25f * (float)i;
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 3, (size_t[]){2, 7, 5}, false);
    ag_tensor *pe = ag_wrap(ctx, pd, NULL, 3, (size_t[]){1, 7, 5}, false);
    ag_tensor *y = ag_add(ctx, x, pe);
    cr_assert_not_null(y);
    for (int b = 0; b < 2; b++)
        for (int n = 0; n < 7; n++)
            for (int c = 0; c < 5; c++)
                cr_assert_eq(y->data[(b * 7 + n) * 5 + c], xd[(b * 7 + n) * 5 + c] + pd[n * 5 + c]);
    ag_ctx_free(ctx);
}

Test(ops_elementwise, broadcast_errors) {
    float buf[64] = {0};
    struct {
        ag_tensor *(*op)(ag_ctx *, ag_tensor *, ag_tensor *);
        const char *name;
        int na;
        size_t sa[3];
        int nb;
        size_t sb[3];
    } bad[] = {
        {ag_add, "add", 2, {2, 3}, 1, {2}},          /* trailing 3 vs 2 */
        {ag_add, "add", 2, {2, 3}, 2, {2, 1}},       /* per-row only for mul */
        {ag_sub, "sub", 2, {2, 3}, 3, {2, 2, 3}},    /* b bigger than a */
        {ag_mul, "mul", 3, {2, 7, 5}, 3, {2, 6, 1}}, /* per-row with the wrong N */
        {ag_mul, "mul", 2, {7, 5}, 2, {5, 7}},       /* transposed */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ag_ctx *ctx = ag_ctx_create(0);
        ag_tensor *a = ag_wrap(ctx, buf, NULL, bad[i].na, bad[i].sa, false);
        ag_tensor *b = ag_wrap(ctx, buf, NULL, bad[i].nb, bad[i].sb, false);
        cr_assert_null(bad[i].op(ctx, a, b), "case %zu", i);
        cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE, "case %zu", i);
        cr_assert(strstr(tpsc_last_error(), bad[i].name) != NULL, "case %zu message: %s", i, tpsc_last_error());
        ag_ctx_free(ctx);
    }
}

Test(ops_elementwise, large_broadcast_backward_matches_naive_sums) {
    /* a [R=300, P=130] * b [130], big enough for the threaded, multi-block reduction (130
     * columns = 3 blocks with a remainder). Reference: db[j] = sum_r dy[r,j] a[r,j] and
     * da[r,j] = dy[r,j] b[j], naive loops in double; tolerance 1e-4 relative (float products
     * summed in double). */
    enum { R = 300, P = 130 };
    ag_ctx *ctx = ag_ctx_create(0);
    float *ad = ag_alloc(ctx, R * P * sizeof(float)), *dy = ag_alloc(ctx, R * P * sizeof(float));
    float *ga = ag_alloc(ctx, R * P * sizeof(float)), bd[P], gb[P] = {0};
    for (int i = 0; i < R * P; i++) {
        ad[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
        dy[i] = (float)((i * 13) % 29) / 14.0f - 1.0f;
        ga[i] = 0.0f;
    }
    for (int j = 0; j < P; j++) bd[j] = (float)j / 65.0f - 1.0f;
    ag_tensor *a = ag_wrap(ctx, ad, ga, 2, (size_t[]){R, P}, true);
    ag_tensor *b = ag_wrap(ctx, bd, gb, 1, (size_t[]){P}, true);
    ag_tensor *y = ag_mul(ctx, a, b);
    cr_assert_not_null(y);
    cr_assert_eq(ag_backward_from(ctx, y, dy), TPSC_OK, "%s", tpsc_last_error());
    for (int j = 0; j < P; j++) {
        double s = 0.0;
        for (int r = 0; r < R; r++) s += (double)dy[r * P + j] * ad[r * P + j];
        cr_assert(fabs(gb[j] - s) <= 1e-4 * (1.0 + fabs(s)), "db[%d] %g vs %g", j, (double)gb[j], s);
    }
    for (int i = 0; i < R * P; i++) cr_assert_float_eq(ga[i], dy[i] * bd[i % P], 1e-6);
    ag_ctx_free(ctx);
}

Test(ops_elementwise, long_rows_split_into_tiles_match_naive_loops) {
    /* Same shapes [3, 5000] (one row of 15000 for the op, several tiles with a remainder) and a
     * suffix b [5000] over a [3, 5000]: y and da against direct loops; exact in float. */
    enum { R = 3, P = 5000 };
    ag_ctx *ctx = ag_ctx_create(0);
    float *ad = ag_alloc(ctx, R * P * sizeof(float)), *bd = ag_alloc(ctx, R * P * sizeof(float));
    float *ga = ag_alloc(ctx, R * P * sizeof(float)), *dy = ag_alloc(ctx, R * P * sizeof(float));
    for (int i = 0; i < R * P; i++) {
        ad[i] = (float)(i % 97) - 48.0f;
        bd[i] = (float)(i % 13) * 0.5f;
        dy[i] = (float)(i % 7) - 3.0f;
        ga[i] = 0.0f;
    }
    ag_tensor *a = ag_wrap(ctx, ad, ga, 2, (size_t[]){R, P}, true);
    ag_tensor *same = ag_wrap(ctx, bd, NULL, 2, (size_t[]){R, P}, false);
    ag_tensor *row = ag_wrap(ctx, bd, NULL, 1, (size_t[]){P}, false);
    ag_tensor *s = ag_sub(ctx, a, same), *m = ag_mul(ctx, a, row);
    cr_assert(s && m, "%s", tpsc_last_error());
    for (int i = 0; i < R * P; i++) {
        cr_assert_eq(s->data[i], ad[i] - bd[i], "sub %d", i);
        cr_assert_eq(m->data[i], ad[i] * bd[i % P], "mul %d", i);
    }
    cr_assert_eq(ag_backward_from(ctx, m, dy), TPSC_OK);
    for (int i = 0; i < R * P; i++) cr_assert_eq(ga[i], dy[i] * bd[i % P], "da %d", i);
    ag_ctx_free(ctx);
}

Test(ops_elementwise, scale_and_add_scalar_reject_strided_input) {
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[12] = {0};
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 2, (size_t[]){3, 2}, false);
    x->stride[0] = 4; /* every other pair: a strided view */
    op_expect_error(ctx, ag_scale(ctx, x, 2.0f), TPSC_ERR_SHAPE, "scale");
    x = ag_wrap(ctx, xd, NULL, 2, (size_t[]){3, 2}, false);
    x->stride[0] = 4;
    op_expect_error(ctx, ag_add_scalar(ctx, x, 2.0f), TPSC_ERR_SHAPE, "add_scalar");
    ag_ctx_free(ctx);
}
