/* merge_tokens (size-weighted merge by a map) and attention_sized (proportional attention):
 * finite differences on odd shapes, the forward against direct loops, and bad maps/sizes. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "support/gradcheck.h"
#include "support/op_error.h"

/* B = 2, n = 7 -> m = 4; image 1 folds three tokens into output 2. */
static const int32_t MAP[14] = {0, 1, 1, 2, 3, 2, 0, /* */ 3, 2, 2, 0, 1, 2, 1};
static const float SIZE[14] = {1, 2, 1, 3, 1, 1, 4, /* */ 2, 1, 5, 1, 1, 2, 3};

static ag_tensor *f_merge(ag_ctx *ctx, ag_tensor **in, void *user) {
    return ag_merge_tokens(ctx, in[0], user ? SIZE : NULL, MAP, 4, NULL);
}

Test(ops_merge, gradcheck_merge_tokens_unit_sizes) {
    gc_input in[1] = {{3, {2, 7, 5}, true, NULL}};
    GRADCHECK(f_merge, 1, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(ops_merge, gradcheck_merge_tokens_with_sizes) {
    gc_input in[1] = {{3, {2, 7, 5}, true, NULL}};
    GRADCHECK(f_merge, 1, in, (void *)1, 1e-2, 1e-3, 1e-2);
}

Test(ops_merge, forward_is_the_size_weighted_average) {
    /* Reference: direct loops in double, y[b,o] = sum s_i x_i / sum s_i over map[b,i] = o;
     * tolerance 1e-6 relative (float sums of at most three terms). */
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[70], size_out[8];
    for (int i = 0; i < 70; i++) xd[i] = (float)sin(0.37 * i) * 3.0f;
    ag_tensor *y = ag_merge_tokens(ctx, ag_wrap(ctx, xd, NULL, 3, (size_t[]){2, 7, 5}, false), SIZE, MAP, 4, size_out);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    cr_assert(y->shape[0] == 2 && y->shape[1] == 4 && y->shape[2] == 5);
    for (int b = 0; b < 2; b++)
        for (int o = 0; o < 4; o++) {
            double S = 0;
            for (int i = 0; i < 7; i++)
                if (MAP[b * 7 + i] == o) S += SIZE[b * 7 + i];
            cr_assert_eq(size_out[b * 4 + o], (float)S, "size of output %d image %d", o, b);
            for (int c = 0; c < 5; c++) {
                double want = 0;
                for (int i = 0; i < 7; i++)
                    if (MAP[b * 7 + i] == o) want += SIZE[b * 7 + i] * xd[(b * 7 + i) * 5 + c];
                want /= S;
                cr_assert(fabs(y->data[(b * 4 + o) * 5 + c] - want) <= 1e-6 * (1 + fabs(want)), "b %d o %d c %d: %g vs %g",
                          b, o, c, y->data[(b * 4 + o) * 5 + c], want);
            }
        }
    ag_ctx_free(ctx);
}

Test(ops_merge, bad_maps_and_sizes_are_errors) {
    ag_ctx *ctx = ag_ctx_create(0);
    float xd[6] = {0};
    ag_tensor *x = ag_wrap(ctx, xd, NULL, 3, (size_t[]){1, 3, 2}, false);
    const int32_t out_of_range[3] = {0, 1, 2};
    cr_assert_null(ag_merge_tokens(ctx, x, NULL, out_of_range, 2, NULL));
    cr_assert(strstr(tpsc_last_error(), "outside [0, 2)"), "%s", tpsc_last_error());
    ag_ctx_free(ctx);
    ctx = ag_ctx_create(0);
    x = ag_wrap(ctx, xd, NULL, 3, (size_t[]){1, 3, 2}, false);
    const int32_t hole[3] = {0, 0, 2};
    cr_assert_null(ag_merge_tokens(ctx, x, NULL, hole, 3, NULL));
    cr_assert(strstr(tpsc_last_error(), "receives no input"), "%s", tpsc_last_error());
    ag_ctx_free(ctx);
    ctx = ag_ctx_create(0);
    x = ag_wrap(ctx, xd, NULL, 3, (size_t[]){1, 3, 2}, false);
    const float zero[3] = {1, 0, 1};
    cr_assert_null(ag_merge_tokens(ctx, x, zero, (const int32_t[]){0, 0, 1}, 2, NULL));
    cr_assert(strstr(tpsc_last_error(), "must be positive"), "%s", tpsc_last_error());
    ag_ctx_free(ctx);
}

/* Proportional attention: B = 2, N = 5, C = 6, H = 2; log sizes as constants. */
static const float LOGS[10] = {0, 0.69f, 1.1f, 0, 1.39f, 0, 0, 0.4f, 2.0f, 0.69f};
static ag_tensor *f_attn_sized(ag_ctx *ctx, ag_tensor **in, void *user) {
    ag_tensor *cls = NULL;
    ag_tensor *o = ag_attention_sized(ctx, in[0], 2, LOGS, user ? &cls : NULL);
    return user ? cls : o;
}

Test(ops_merge, gradcheck_attention_sized) {
    gc_input in[1] = {{3, {2, 5, 18}, true, NULL}};
    GRADCHECK(f_attn_sized, 1, in, NULL, 1e-2, 1e-3, 1e-2);
    GRADCHECK(f_attn_sized, 1, in, (void *)1, 1e-2, 1e-3, 1e-2);
}

Test(ops_merge, attention_sized_equals_duplicated_keys) {
    /* A key of size s weighs as s identical keys: attention over [k0, k1] with log sizes
     * [0, log 2] equals plain attention over [k0, k1, k1] for the first two queries
     * (exact math; float tolerance 1e-6). B = 1, C = 2, H = 1. */
    ag_ctx *ctx = ag_ctx_create(0);
    float q2[12] = {0.3f, -1.0f, 0.5f, 0.2f, 1.0f, 2.0f, /* token 1 */ -0.7f, 0.4f, -0.3f, 0.9f, -1.5f, 0.5f};
    float q3[18];
    for (int i = 0; i < 12; i++) q3[i] = q2[i];
    for (int i = 0; i < 6; i++) q3[12 + i] = q2[6 + i];
    const float logs[2] = {0.0f, logf(2.0f)};
    ag_tensor *a = ag_attention_sized(ctx, ag_wrap(ctx, q2, NULL, 3, (size_t[]){1, 2, 6}, false), 1, logs, NULL);
    ag_tensor *b = ag_attention(ctx, ag_wrap(ctx, q3, NULL, 3, (size_t[]){1, 3, 6}, false), 1, NULL, NULL);
    cr_assert(a && b, "%s", tpsc_last_error());
    for (int i = 0; i < 4; i++) cr_assert(fabsf(a->data[i] - b->data[i]) <= 1e-6f, "%d: %g vs %g", i, a->data[i], b->data[i]);
    ag_ctx_free(ctx);
}
