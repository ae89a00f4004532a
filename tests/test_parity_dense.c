/* Dense ViT parity with PyTorch (fixture tests/fixtures/vit_dense.h5, made by
 * tests/reference/make_fixtures.py from a plain-torch timm DeiT with the same weights).
 *
 * Tolerances, per tensor, relative to the reference tensor's largest magnitude:
 *   logits: max|c - torch| <= 1e-4 * max|torch|;  losses: 1e-5 relative;
 *   every parameter gradient: max|c - torch| <= 1e-3 * max|torch|. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "autograd/ops.h"
#include "src/model/vit.h"
#include "support/fixture.h"




Test(parity_dense, logits_loss_and_every_gradient_match_pytorch) {
    fixture fx;
    fx_open(&fx, "vit_dense.h5");
    vit_config cfg;
    fx_vit_config(&fx, &cfg);
    tok_config tps = {.method = TOK_NONE};
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &tps), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&fx, "/model", &m.params);

    size_t n_img, img_shape[4], n_t, t_shape[2], n_lab;
    int nd;
    float *images = fx_read_f32(&fx, "/input/images", &n_img, img_shape, &nd);
    float *targets = fx_read_f32(&fx, "/input/targets", &n_t, t_shape, &nd);
    int64_t *labels64 = fx_read_i64(&fx, "/input/labels", &n_lab);
    int32_t labels[16];
    for (size_t i = 0; i < n_lab; i++) labels[i] = (int32_t)labels64[i];

    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_wrap(ctx, images, NULL, 4, img_shape, false);
    ag_tensor *t = ag_wrap(ctx, targets, NULL, 2, t_shape, false);
    vit_forward_opts opts = {.mode = VIT_TRAIN};
    vit_output out;
    ag_tensor *logits = vit_forward(ctx, &m, x, &opts, &out);
    cr_assert_not_null(logits, "forward failed: %s", tpsc_last_error());
    ag_tensor *loss = ag_cross_entropy_soft(ctx, logits, t);
    ag_tensor *loss_smooth = ag_cross_entropy(ctx, logits, labels, 0.1f);
    cr_assert_not_null(loss_smooth, "%s", tpsc_last_error());

    size_t n_ref;
    float *ref_logits = fx_read_f32(&fx, "/output/logits", &n_ref, NULL, NULL);
    cr_assert_eq(n_ref, ag_numel(logits));
    double scale = fx_max_abs(ref_logits, n_ref);
    cr_assert(fx_max_diff(logits->data, ref_logits, n_ref) <= 1e-4 * scale, "logits differ by %g (scale %g)",
              fx_max_diff(logits->data, ref_logits, n_ref), scale);
    float *ref_loss = fx_read_f32(&fx, "/output/loss", NULL, NULL, NULL);
    float *ref_smooth = fx_read_f32(&fx, "/output/loss_smooth", NULL, NULL, NULL);
    cr_assert(fabs(loss->data[0] - ref_loss[0]) <= 1e-5 * fabs(ref_loss[0]), "loss %.8g vs torch %.8g", loss->data[0], ref_loss[0]);
    cr_assert(fabs(loss_smooth->data[0] - ref_smooth[0]) <= 1e-5 * fabs(ref_smooth[0]), "smoothed CE %.8g vs torch %.8g",
              loss_smooth->data[0], ref_smooth[0]);

    ag_params_zero_grad(&m.params);
    cr_assert_eq(ag_backward(ctx, loss), TPSC_OK, "%s", tpsc_last_error());
    char path[256];
    for (int i = 0; i < m.params.count; i++) {
        ag_param *it = &m.params.items[i];
        snprintf(path, sizeof path, "/grad/%s", it->name);
        size_t n;
        float *g = fx_read_f32(&fx, path, &n, NULL, NULL);
        cr_assert_eq(n, it->numel, "%s", path);
        double gs = fx_max_abs(g, n), d = fx_max_diff(it->t.grad, g, n);
        cr_assert(d <= 1e-3 * gs, "gradient of %s differs by %g (scale %g)", it->name, d, gs);
        free(g);
    }
    free(images), free(targets), free(labels64), free(ref_logits), free(ref_loss), free(ref_smooth);
    ag_ctx_free(ctx);
    vit_model_free(&m);
    fx_close(&fx);
}
