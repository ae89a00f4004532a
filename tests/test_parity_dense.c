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
#include "support/fixture_run.h"

Test(parity_dense, logits_loss_and_every_gradient_match_pytorch) {
    fx_run r;
    fx_run_open(&r, "vit_dense.h5");
    tok_config tps = {.method = TOK_NONE};
    fx_run_model(&r, &tps);
    size_t n_lab;
    int64_t *labels64 = fx_read_i64(&r.fx, "/input/labels", &n_lab);
    int32_t labels[16];
    cr_assert_leq(n_lab, 16u);
    for (size_t i = 0; i < n_lab; i++) labels[i] = (int32_t)labels64[i];

    vit_output out;
    ag_tensor *logits = fx_run_forward(&r, VIT_TRAIN, &out);
    ag_tensor *loss = ag_cross_entropy_soft(r.ctx, logits, r.t);
    ag_tensor *loss_smooth = ag_cross_entropy(r.ctx, logits, labels, 0.1f);
    cr_assert_not_null(loss_smooth, "%s", tpsc_last_error());
    fx_expect_close(&r.fx, "/output/logits", logits->data, ag_numel(logits), 1e-4);
    fx_expect_scalar(&r.fx, "/output/loss", loss, 1e-5);
    fx_expect_scalar(&r.fx, "/output/loss_smooth", loss_smooth, 1e-5);

    ag_params_zero_grad(&r.m.params);
    cr_assert_eq(ag_backward(r.ctx, loss), TPSC_OK, "%s", tpsc_last_error());
    fx_expect_grads(&r.fx, "", &r.m.params, 1e-3);
    free(labels64);
    fx_run_close(&r);
}
