/* patchify: finite differences, the (patch, (cin, ky, kx)) layout by index arithmetic, the
 * conv equivalence it exists for (patchify + linear == conv2d with stride = kernel = p), and
 * shape errors. */
#include <criterion/criterion.h>
#include <math.h>

#include "src/util/rng.h"
#include "support/gradcheck.h"

static ag_tensor *f_patchify(ag_ctx *ctx, ag_tensor **in, void *user) { return ag_patchify(ctx, in[0], *(size_t *)user); }

Test(ops_patchify, gradcheck_odd_shapes) {
    size_t p2 = 2, p3 = 3;
    gc_input a[1] = {{4, {2, 3, 4, 6}, true, NULL}};
    GRADCHECK(f_patchify, 1, a, &p2, 1e-2, 1e-3, 1e-2);
    gc_input b[1] = {{4, {1, 2, 6, 9}, true, NULL}};
    GRADCHECK(f_patchify, 1, b, &p3, 1e-2, 1e-3, 1e-2);
}

Test(ops_patchify, layout_matches_index_arithmetic) {
    /* Reference: out[b, py*GW + px, (c*p + ky)*p + kx] = img[b, c, py*p + ky, px*p + kx].
     * A copy: exact. */
    enum { B = 2, CI = 3, H = 4, W = 6, P = 2, GH = H / P, GW = W / P };
    ag_ctx *ctx = ag_ctx_create(0);
    float img[B * CI * H * W];
    for (int i = 0; i < B * CI * H * W; i++) img[i] = (float)i;
    ag_tensor *y = ag_patchify(ctx, ag_wrap(ctx, img, NULL, 4, (size_t[]){B, CI, H, W}, false), P);
    cr_assert_not_null(y);
    cr_assert(y->ndim == 3 && y->shape[0] == B && y->shape[1] == GH * GW && y->shape[2] == CI * P * P);
    for (int b = 0; b < B; b++)
        for (int py = 0; py < GH; py++)
            for (int px = 0; px < GW; px++)
                for (int c = 0; c < CI; c++)
                    for (int ky = 0; ky < P; ky++)
                        for (int kx = 0; kx < P; kx++) {
                            float got = y->data[((size_t)b * GH * GW + py * GW + px) * CI * P * P + (c * P + ky) * P + kx];
                            float want = img[((b * CI + c) * H + py * P + ky) * W + px * P + kx];
                            cr_assert_eq(got, want, "b %d patch (%d,%d) c %d ky %d kx %d", b, py, px, c, ky, kx);
                        }
    ag_ctx_free(ctx);
}

Test(ops_patchify, patchify_then_linear_is_the_patch_conv) {
    /* Reference: a direct conv2d in double, weight [C=4, Cin=3, 3, 3], stride 3, bias, on
     * img [2, 3, 6, 9]; out[b, c, py, px] compared with linear(patchify)[b, py*GW+px, c].
     * Tolerance 1e-5 absolute (27-term float dot products). */
    enum { B = 2, CI = 3, H = 6, W = 9, P = 3, C = 4, GH = H / P, GW = W / P, PP = CI * P * P };
    ag_ctx *ctx = ag_ctx_create(0);
    float img[B * CI * H * W], w[C * PP], bias[C];
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 9);
    for (int i = 0; i < B * CI * H * W; i++) img[i] = tpsc_rng_normal(&rng);
    for (int i = 0; i < C * PP; i++) w[i] = tpsc_rng_normal(&rng);
    for (int i = 0; i < C; i++) bias[i] = tpsc_rng_normal(&rng);
    ag_tensor *patches = ag_patchify(ctx, ag_wrap(ctx, img, NULL, 4, (size_t[]){B, CI, H, W}, false), P);
    ag_tensor *y = ag_linear(ctx, patches, ag_wrap(ctx, w, NULL, 2, (size_t[]){C, PP}, false), ag_wrap(ctx, bias, NULL, 1, (size_t[]){C}, false));
    cr_assert_not_null(y, "%s", tpsc_last_error());
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int py = 0; py < GH; py++)
                for (int px = 0; px < GW; px++) {
                    double s = bias[c];
                    for (int ci = 0; ci < CI; ci++)
                        for (int ky = 0; ky < P; ky++)
                            for (int kx = 0; kx < P; kx++)
                                s += (double)w[((c * CI + ci) * P + ky) * P + kx] *
                                     img[((b * CI + ci) * H + py * P + ky) * W + px * P + kx];
                    float got = y->data[((size_t)b * GH * GW + py * GW + px) * C + c];
                    cr_assert(fabs(got - s) < 1e-5, "b %d c %d (%d,%d): %g vs %g", b, c, py, px, (double)got, s);
                }
    ag_ctx_free(ctx);
}

Test(ops_patchify, indivisible_image_is_an_error) {
    ag_ctx *ctx = ag_ctx_create(0);
    float buf[256] = {0};
    const size_t shapes[3][4] = {{1, 3, 7, 8}, {1, 3, 8, 7}, {1, 3, 8, 8}};
    const int ndims[3] = {4, 4, 3};
    for (int i = 0; i < 3; i++) {
        ag_tensor *img = ag_wrap(ctx, buf, NULL, ndims[i], shapes[i], false);
        cr_assert_null(ag_patchify(ctx, img, 4), "case %d", i);
        cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE, "case %d", i);
        cr_assert(strstr(tpsc_last_error(), "patchify") != NULL, "message: %s", tpsc_last_error());
        ag_ctx_reset(ctx);
    }
    ag_ctx_free(ctx);
}

Test(ops_patchify, large_image_backward_returns_every_pixel) {
    /* img [4, 3, 64, 64], p = 8 (49152 elements, the threaded path): with dy = the patches
     * themselves, backward must give dimg = img (every pixel is in exactly one patch). */
    enum { T = 4 * 3 * 64 * 64 };
    ag_ctx *ctx = ag_ctx_create(0);
    float *img = ag_alloc(ctx, T * sizeof(float)), *g = ag_alloc(ctx, T * sizeof(float));
    for (int i = 0; i < T; i++) {
        img[i] = (float)(i % 1009);
        g[i] = 0.0f;
    }
    ag_tensor *x = ag_wrap(ctx, img, g, 4, (size_t[]){4, 3, 64, 64}, true);
    ag_tensor *y = ag_patchify(ctx, x, 8);
    cr_assert_not_null(y);
    cr_assert(y->shape[1] == 64 && y->shape[2] == 192);
    cr_assert_eq(ag_backward_from(ctx, y, y->data), TPSC_OK);
    for (int i = 0; i < T; i++) cr_assert_eq(g[i], img[i], "pixel %d", i);
    ag_ctx_free(ctx);
}
