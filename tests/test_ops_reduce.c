/* sum, mean, sum_dim, mean_dim: finite differences on odd shapes for every dim, forwards
 * against naive loops, the accuracy of a long sum, and dim errors. */
#include <criterion/criterion.h>
#include <math.h>

#include "support/gradcheck.h"
#include "support/op_error.h"

static ag_tensor *f_sum(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_sum(ctx, in[0]); }
static ag_tensor *f_mean(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_mean(ctx, in[0]); }
static ag_tensor *f_sum_dim(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_sum_dim(ctx, in[0], *(int *)user); }
static ag_tensor *f_mean_dim(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_mean_dim(ctx, in[0], *(int *)user); }

Test(ops_reduce, gradcheck_sum_mean) {
    gc_input in[1] = {{3, {2, 7, 5}, true, NULL}};
    GRADCHECK(f_sum, 1, in, NULL, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_mean, 1, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_reduce, gradcheck_sum_mean_every_dim) {
    gc_input in[1] = {{3, {3, 7, 5}, true, NULL}};
    int dims[] = {0, 1, 2, -1};
    for (int i = 0; i < 4; i++) {
        GRADCHECK(f_sum_dim, 1, in, &dims[i], 1e-2, 1e-3, 1e-2);
        GRADCHECK(f_mean_dim, 1, in, &dims[i], 1e-2, 1e-3, 1e-2);
    }
    /* 1-D -> scalar */
    gc_input v[1] = {{1, {7}, true, NULL}};
    GRADCHECK(f_sum_dim, 1, v, &dims[0], 1e-2, 1e-3, 1e-2);
}

Test(ops_reduce, forwards_match_naive_loops) {
    /* Reference: direct loops in double over x [3,7,70] (70 columns: two column blocks);
     * tolerance 1e-5 absolute. */
    enum { A = 3, B = 7, C = 70 };
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[A * B * C];
    for (int i = 0; i < A * B * C; i++) xd[i] = (float)((i * 7919) % 113) / 37.0f - 1.5f;
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 3, (size_t[]){A, B, C}, false);
    ag_tensor *s = ag_sum(ctx, x), *m = ag_mean(ctx, x), *s1 = ag_sum_dim(ctx, x, 1), *m0 = ag_mean_dim(ctx, x, 0),
              *s2 = ag_sum_dim(ctx, x, 2);
    cr_assert(s && m && s1 && m0 && s2, "%s", tpsc_last_error());
    cr_assert(s->ndim == 1 && s->shape[0] == 1);
    cr_assert(s1->ndim == 2 && s1->shape[0] == A && s1->shape[1] == C);
    cr_assert(m0->ndim == 2 && m0->shape[0] == B && m0->shape[1] == C);
    cr_assert(s2->ndim == 2 && s2->shape[0] == A && s2->shape[1] == B);
    double total = 0.0;
    for (int i = 0; i < A * B * C; i++) total += xd[i];
    cr_assert(fabs(s->data[0] - total) < 1e-4, "sum %g vs %g", (double)s->data[0], total);
    cr_assert(fabs(m->data[0] - total / (A * B * C)) < 1e-5);
    for (int a = 0; a < A; a++)
        for (int c = 0; c < C; c++) {
            double t = 0.0;
            for (int b = 0; b < B; b++) t += xd[(a * B + b) * C + c];
            cr_assert(fabs(s1->data[a * C + c] - t) < 1e-5);
        }
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            double t = 0.0;
            for (int a = 0; a < A; a++) t += xd[(a * B + b) * C + c];
            cr_assert(fabs(m0->data[b * C + c] - t / A) < 1e-5);
        }
    for (int a = 0; a < A; a++)
        for (int b = 0; b < B; b++) {
            double t = 0.0;
            for (int c = 0; c < C; c++) t += xd[(a * B + b) * C + c];
            cr_assert(fabs(s2->data[a * B + b] - t) < 1e-5);
        }
    ag_ctx_free(ctx);
}

Test(ops_reduce, long_sum_keeps_its_digits) {
    /* 10^6 copies of 0.1f: the exact sum is 10^6 * 0.100000001490116 = 100000.00149; a float
     * running sum drifts by about 1%. Tolerance 1e-6 relative (a double accumulator's result
     * rounded once to float). */
    enum { N = 1000000 };
    ag_ctx *ctx = ag_ctx_create(0);
    float *xd = ag_alloc(ctx, N * sizeof(float));
    for (int i = 0; i < N; i++) xd[i] = 0.1f;
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 2, (size_t[]){1000, 1000}, false);
    ag_tensor *s = ag_sum(ctx, x), *s0 = ag_sum_dim(ctx, x, 0);
    cr_assert(s && s0);
    const double want = (double)N * (double)0.1f;
    cr_assert(fabs(s->data[0] - want) <= 1e-6 * want, "sum %.3f vs %.3f", (double)s->data[0], want);
    cr_assert(fabs(s0->data[0] - 1000.0 * (double)0.1f) <= 1e-6 * 100.0, "sum_dim %.6f", (double)s0->data[0]);
    ag_ctx_free(ctx);
}

Test(ops_reduce, dim_out_of_range_is_an_error) {
    ag_ctx *ctx = ag_ctx_create(0);
    float buf[6] = {0};
    ag_tensor *x = ag_wrap(ctx, buf, NULL, 2, (size_t[]){2, 3}, false);
    op_expect_error(ctx, ag_sum_dim(ctx, x, 2), TPSC_ERR_SHAPE, "sum_dim");
    x = ag_wrap(ctx, buf, NULL, 2, (size_t[]){2, 3}, false);
    op_expect_error(ctx, ag_mean_dim(ctx, x, -3), TPSC_ERR_SHAPE, "mean_dim");
    ag_ctx_free(ctx);
}

Test(ops_reduce, empty_or_strided_input_is_an_error) {
    ag_ctx *ctx = ag_ctx_create(0);
    float buf[12] = {0};
    ag_tensor *empty = ag_wrap(ctx, buf, NULL, 2, (size_t[]){3, 0}, false);
    op_expect_error(ctx, ag_sum(ctx, empty), TPSC_ERR_SHAPE, "sum");
    ag_tensor *strided = ag_wrap(ctx, buf, NULL, 2, (size_t[]){3, 2}, false);
    strided->stride[0] = 4;
    op_expect_error(ctx, ag_mean(ctx, strided), TPSC_ERR_SHAPE, "mean");
    ag_ctx_free(ctx);
}
