/* ToMe parity with the official code (fixture tests/fixtures/vit_tome.h5, made by
 * tests/reference/make_tome_fixture.py: facebookresearch/ToMe's tome.patch.timm applied to a
 * timm VisionTransformer with random weights; commits pinned in the script).
 *
 * One backbone (img 32, patch 4, N = 64, C 32, depth 4, H 4), three schedules: r = 8,
 * r = 15 (ToMe's own half-the-tokens limit bites in the last block) and ToMe's decreasing
 * schedule (12, -1) = [24, 16, 8, 0]; proportional attention on, as tome.patch.timm's default.
 * Every matching decision clears 1e-4 in cosine (the script checks), so:
 *   the merged-group assignment after every block (which token holds each patch) and the
 *   token sizes must be identical;
 *   logits: max|c - torch| <= 1e-4 * max|torch|;
 *   r = 8 also stores the gradient of the soft-target CE (training through ToMe's weighted
 *   averages): every parameter gradient within 1e-3 * max|torch| of that tensor, as
 *   test_parity_dense.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "autograd/ops.h"
#include "src/model/vit.h"
#include "support/fixture.h"

static void check_case(const char *name, int r, float inflect, bool grads) {
    fixture fx;
    fx_open(&fx, "vit_tome.h5");
    vit_config cfg;
    fx_vit_config(&fx, &cfg);
    tok_config tps = {.method = TOK_TOME, .tome_r = r, .tome_inflect = inflect, .prop_attn = true};
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &tps), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&fx, "/model", &m.params);
    size_t n_img, img_shape[4], n_t, t_shape[2];
    int nd;
    float *images = fx_read_f32(&fx, "/input/images", &n_img, img_shape, &nd);
    float *targets = fx_read_f32(&fx, "/input/targets", &n_t, t_shape, &nd);
    const size_t B = img_shape[0], N = vit_num_patches(&cfg);

    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_wrap(ctx, images, NULL, 4, img_shape, false);
    ag_tensor *t = ag_wrap(ctx, targets, NULL, 2, t_shape, false);
    vit_forward_opts opts = {.mode = VIT_TRAIN};
    vit_output out;
    ag_tensor *logits = vit_forward(ctx, &m, x, &opts, &out);
    cr_assert_not_null(logits, "%s: forward failed: %s", name, tpsc_last_error());

    char path[256];
    size_t n_ref;
    snprintf(path, sizeof path, "/%s/logits", name);
    float *ref = fx_read_f32(&fx, path, &n_ref, NULL, NULL);
    cr_assert_eq(n_ref, ag_numel(logits));
    double scale = fx_max_abs(ref, n_ref), d = fx_max_diff(logits->data, ref, n_ref);
    cr_assert(d <= 1e-4 * scale, "%s: logits differ by %g (scale %g)", name, d, scale);
    free(ref);

    for (size_t i = 0; i < cfg.depth; i++) {
        size_t n_g, n_s, s_shape[2];
        snprintf(path, sizeof path, "/%s/group_b%zu", name, i);
        int64_t *group = fx_read_i64(&fx, path, &n_g);
        snprintf(path, sizeof path, "/%s/size_b%zu", name, i);
        float *size = fx_read_f32(&fx, path, &n_s, s_shape, &nd);
        cr_assert_eq(n_g, B * (1 + N), "%s", path);
        const int32_t *pt = out.patch_token_block[i];
        const float *sz = out.token_size_block[i];
        const size_t n_tok = s_shape[1]; /* tokens after block i, cls included */
        for (size_t b = 0; b < B; b++) {
            cr_assert_eq(group[b * (1 + N)], 0, "%s: cls moved", name);
            for (size_t p = 0; p < N; p++)
                cr_assert_eq(pt[b * N + p], group[b * (1 + N) + 1 + p] - 1,
                             "%s block %zu image %zu: patch %zu in token %d, torch %lld", name, i, b, p,
                             pt[b * N + p], (long long)group[b * (1 + N) + 1 + p] - 1);
            for (size_t j = 0; j < n_tok; j++) {
                float mine = sz ? sz[b * n_tok + j] : 1.0f;
                cr_assert_eq(mine, size[b * n_tok + j], "%s block %zu image %zu token %zu: size %g, torch %g", name, i,
                             b, j, (double)mine, (double)size[b * n_tok + j]);
            }
        }
        free(group), free(size);
    }

    if (grads) {
        ag_tensor *loss = ag_cross_entropy_soft(ctx, logits, t);
        snprintf(path, sizeof path, "/%s/loss", name);
        float *ref_loss = fx_read_f32(&fx, path, NULL, NULL, NULL);
        cr_assert(fabs(loss->data[0] - ref_loss[0]) <= 1e-5 * fabs(ref_loss[0]), "%s: loss %.8g vs torch %.8g", name,
                  loss->data[0], ref_loss[0]);
        free(ref_loss);
        ag_params_zero_grad(&m.params);
        cr_assert_eq(ag_backward(ctx, loss), TPSC_OK, "%s", tpsc_last_error());
        for (int i = 0; i < m.params.count; i++) {
            ag_param *it = &m.params.items[i];
            snprintf(path, sizeof path, "/%s/grad/%s", name, it->name);
            size_t n;
            float *g = fx_read_f32(&fx, path, &n, NULL, NULL);
            cr_assert_eq(n, it->numel, "%s", path);
            double gs = fx_max_abs(g, n), gd = fx_max_diff(it->t.grad, g, n);
            cr_assert(gd <= 1e-3 * gs, "%s: gradient of %s differs by %g (scale %g)", name, it->name, gd, gs);
            free(g);
        }
    }
    free(images), free(targets);
    ag_ctx_free(ctx);
    vit_model_free(&m);
    fx_close(&fx);
}

Test(parity_tome, constant_r8_logits_groups_sizes_and_gradients) { check_case("r8", 8, 0.0f, true); }
Test(parity_tome, r15_hits_tomes_half_limit_in_the_last_block) { check_case("r15", 15, 0.0f, false); }
Test(parity_tome, decreasing_schedule) { check_case("dec12", 12, -1.0f, false); }

Test(parity_tome, dense_when_r_is_zero) {
    /* r = 0 merges nothing: the fixture's dense logits (ToMe with model.r = 0) */
    fixture fx;
    fx_open(&fx, "vit_tome.h5");
    vit_config cfg;
    fx_vit_config(&fx, &cfg);
    tok_config tps = {.method = TOK_TOME, .tome_r = 0, .prop_attn = true};
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &tps), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&fx, "/model", &m.params);
    size_t n_img, img_shape[4], n_ref;
    int nd;
    float *images = fx_read_f32(&fx, "/input/images", &n_img, img_shape, &nd);
    ag_ctx *ctx = ag_ctx_create(0);
    vit_forward_opts opts = {.mode = VIT_INFER};
    vit_output out;
    ag_tensor *logits = vit_forward(ctx, &m, ag_wrap(ctx, images, NULL, 4, img_shape, false), &opts, &out);
    cr_assert_not_null(logits, "%s", tpsc_last_error());
    float *ref = fx_read_f32(&fx, "/dense/logits", &n_ref, NULL, NULL);
    double scale = fx_max_abs(ref, n_ref), d = fx_max_diff(logits->data, ref, n_ref);
    cr_assert(d <= 1e-4 * scale, "logits differ by %g (scale %g)", d, scale);
    free(ref), free(images);
    ag_ctx_free(ctx);
    vit_model_free(&m);
    fx_close(&fx);
}
