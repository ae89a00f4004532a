/* Five AdamW steps of the small ViT against PyTorch (fixture tests/fixtures/vit_adamw.h5:
 * torch.optim.AdamW, lr 1e-3, betas 0.9/0.999, eps 1e-8, wd 0.05 with timm's no-decay group
 * for 1-D params, cls_token and pos_embed; the same batch every step).
 *
 * Tolerances: each step's loss within 1e-4 relative of torch's; the final tensors within
 * 1e-4 * max|torch| + 1e-6 (five steps of float32 updates from two implementations). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "autograd/ops.h"
#include "src/model/vit.h"
#include "src/optim/adamw.h"
#include "src/optim/param_groups.h"
#include "support/fixture.h"

Test(parity_adamw, five_step_loss_trajectory_and_final_weights_match_pytorch) {
    fixture fx;
    fx_open(&fx, "vit_adamw.h5");
    vit_config cfg;
    fx_vit_config(&fx, &cfg);
    vit_model m;
    tok_config dense = {.method = TOK_NONE};
    cr_assert_eq(vit_model_create(&m, &cfg, &dense), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&fx, "/model", &m.params);
    tpsc_param_groups_assign(&m.params);

    tpsc_adamw_config oc = tpsc_adamw_defaults();
    oc.beta1 = (float)fx_attr_double(&fx, "beta1");
    oc.beta2 = (float)fx_attr_double(&fx, "beta2");
    oc.eps = (float)fx_attr_double(&fx, "eps");
    oc.weight_decay = (float)fx_attr_double(&fx, "weight_decay");
    float lr = (float)fx_attr_double(&fx, "lr");
    tpsc_adamw opt;
    cr_assert_eq(tpsc_adamw_init(&opt, &m.params, &oc), TPSC_OK, "%s", tpsc_last_error());

    size_t img_shape[4], t_shape[2], n_losses;
    float *images = fx_read_f32(&fx, "/input/images", NULL, img_shape, NULL);
    float *targets = fx_read_f32(&fx, "/input/targets", NULL, t_shape, NULL);
    float *losses = fx_read_f32(&fx, "/adamw/losses", &n_losses, NULL, NULL);
    ag_ctx *ctx = ag_ctx_create(0);
    for (size_t step = 0; step < n_losses; step++) {
        ag_ctx_reset(ctx);
        ag_tensor *x = ag_wrap(ctx, images, NULL, 4, img_shape, false);
        ag_tensor *t = ag_wrap(ctx, targets, NULL, 2, t_shape, false);
        vit_forward_opts fo = {.mode = VIT_TRAIN};
        vit_output out;
        ag_tensor *loss = ag_cross_entropy_soft(ctx, vit_forward(ctx, &m, x, &fo, &out), t);
        cr_assert_not_null(loss, "%s", tpsc_last_error());
        cr_assert(fabs(loss->data[0] - losses[step]) <= 1e-4 * fabs(losses[step]), "step %zu: loss %.7g vs torch %.7g", step,
                  loss->data[0], losses[step]);
        ag_params_zero_grad(&m.params);
        cr_assert_eq(ag_backward(ctx, loss), TPSC_OK, "%s", tpsc_last_error());
        cr_assert_eq(tpsc_adamw_step(&opt, &m.params, lr), TPSC_OK, "%s", tpsc_last_error());
    }
    const char *names[] = {"head.weight", "head.bias", "blocks.0.attn.qkv.weight", "blocks.3.mlp.fc2.weight",
                           "cls_token", "pos_embed", "norm.weight", "patch_embed.proj.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "/adamw/final/%s", names[i]);
        size_t n;
        float *ref = fx_read_f32(&fx, path, &n, NULL, NULL);
        int idx = ag_params_find(&m.params, names[i]);
        cr_assert(idx >= 0 && m.params.items[idx].numel == n, "%s", names[i]);
        double scale = 0, diff = 0;
        for (size_t k = 0; k < n; k++) {
            scale = fmax(scale, fabs(ref[k]));
            diff = fmax(diff, fabs((double)m.params.items[idx].t.data[k] - ref[k]));
        }
        cr_assert(diff <= 1e-4 * scale + 1e-6, "%s after %zu steps differs by %g (scale %g)", names[i], n_losses, diff, scale);
        free(ref);
    }
    free(images), free(targets), free(losses);
    tpsc_adamw_free(&opt);
    ag_ctx_free(ctx);
    vit_model_free(&m);
    fx_close(&fx);
}
