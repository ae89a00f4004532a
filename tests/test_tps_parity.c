/* The TPS stages inside the model against the PyTorch reference (fixture
 * tests/fixtures/vit_dtps.h5 from tests/reference/make_fixtures.py, a transcription of the
 * official TPS-CVPR2023 DynamicVit/TPSModule and of EViT): the same tokens are kept, in the
 * same order, and the outputs and dtps gradients agree. The fixture was drawn tie-free
 * (Gumbel, top-k and host margins), so decisions must match exactly.
 *
 * Tolerances: keep masks and kept indices exact; logits max|c - torch| <= 1e-4 * max|torch|;
 * losses 1e-5 relative; every parameter gradient max|c - torch| <= 1e-3 * max|torch|
 * (the dense parity test's tolerances). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "autograd/ops.h"
#include "src/loss/tps_loss.h"
#include "src/model/vit.h"
#include "support/fixture.h"

#define STAGES 3

static double max_abs(const float *v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
    return m;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

typedef struct bench {
    fixture fx;
    vit_config cfg;
    tps_config tps;
    vit_model m;
    float *images, *targets, *u[STAGES];
    size_t img_shape[4], t_shape[2];
    ag_ctx *ctx;
} bench;

static void open_bench(bench *b, const char *method) {
    fx_open(&b->fx, "vit_dtps.h5");
    b->cfg = (vit_config){0};
    snprintf(b->cfg.arch, sizeof b->cfg.arch, "custom");
    b->cfg.img_size = (size_t)fx_attr_int(&b->fx, "img_size");
    b->cfg.patch_size = (size_t)fx_attr_int(&b->fx, "patch_size");
    b->cfg.in_chans = (size_t)fx_attr_int(&b->fx, "in_chans");
    b->cfg.embed_dim = (size_t)fx_attr_int(&b->fx, "embed_dim");
    b->cfg.depth = (size_t)fx_attr_int(&b->fx, "depth");
    b->cfg.num_heads = (size_t)fx_attr_int(&b->fx, "num_heads");
    b->cfg.num_classes = (size_t)fx_attr_int(&b->fx, "num_classes");
    b->cfg.mlp_ratio = (float)fx_attr_double(&b->fx, "mlp_ratio");
    b->cfg.ln_eps = 1e-6f;
    /* the fixture's prune_loc [1, 2, 3] and keep_ratio 0.7 (attributes of the file) */
    b->tps = (tps_config){.method = tps_method_from_name(method), .n_stages = STAGES, .prune_loc = {1, 2, 3},
                          .squeeze_temp = 1.0f};
    tps_config_fill_rho(&b->tps, (float)fx_attr_double(&b->fx, "keep_ratio"));
    cr_assert_eq(vit_model_create(&b->m, &b->cfg, &b->tps), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&b->fx, "/model", &b->m.params);
    size_t n;
    int nd;
    b->images = fx_read_f32(&b->fx, "/input/images", &n, b->img_shape, &nd);
    b->targets = fx_read_f32(&b->fx, "/input/targets", &n, b->t_shape, &nd);
    for (int s = 0; s < STAGES; s++) {
        char name[64];
        snprintf(name, sizeof name, "/input/gumbel_u_s%d", s);
        b->u[s] = fx_read_f32(&b->fx, name, &n, NULL, NULL);
    }
    b->ctx = ag_ctx_create(0);
}

static void close_bench(bench *b) {
    free(b->images), free(b->targets);
    for (int s = 0; s < STAGES; s++) free(b->u[s]);
    ag_ctx_free(b->ctx);
    vit_model_free(&b->m);
    fx_close(&b->fx);
}

static void check_logits(bench *b, const ag_tensor *logits, const char *path) {
    size_t n;
    float *ref = fx_read_f32(&b->fx, path, &n, NULL, NULL);
    cr_assert_eq(n, ag_numel(logits), "%s", path);
    const double scale = max_abs(ref, n), d = max_diff(logits->data, ref, n);
    cr_assert(d <= 1e-4 * scale, "%s differs by %g (scale %g)", path, d, scale);
    free(ref);
}

static void check_infer(const char *method) {
    bench b;
    open_bench(&b, method);
    ag_set_grad_enabled(b.ctx, false);
    ag_tensor *x = ag_wrap(b.ctx, b.images, NULL, 4, b.img_shape, false);
    vit_forward_opts opts = {.mode = VIT_INFER};
    vit_output out;
    ag_tensor *logits = vit_forward(b.ctx, &b.m, x, &opts, &out);
    cr_assert_not_null(logits, "%s: %s", method, tpsc_last_error());
    const size_t B = b.img_shape[0];
    for (int s = 0; s < STAGES; s++) {
        char path[96];
        snprintf(path, sizeof path, "/%s/infer/kept_s%d", method, s);
        size_t n;
        int64_t *kept = fx_read_i64(&b.fx, path, &n);
        cr_assert_eq(out.kept_count[s] * B, n, "%s: C keeps %zu tokens, torch %zu", path, out.kept_count[s], n / B);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(out.kept_orig[s][i], kept[i], "%s: image %zu rank %zu is patch %d, torch %lld", path,
                         i / out.kept_count[s], i % out.kept_count[s], out.kept_orig[s][i], (long long)kept[i]);
        free(kept);
    }
    char path[96];
    snprintf(path, sizeof path, "/%s/infer/logits", method);
    check_logits(&b, logits, path);
    close_bench(&b);
}

Test(tps_parity, dtps_inference_keeps_the_same_tokens) { check_infer("dtps"); }
Test(tps_parity, dynamicvit_inference_keeps_the_same_tokens) { check_infer("dynamicvit"); }
Test(tps_parity, evit_keeps_the_same_tokens) { check_infer("evit"); }
Test(tps_parity, etps_keeps_the_same_tokens) { check_infer("etps"); }

static void check_train(const char *method, bool grads) {
    bench b;
    open_bench(&b, method);
    ag_tensor *x = ag_wrap(b.ctx, b.images, NULL, 4, b.img_shape, false);
    ag_tensor *targets = ag_wrap(b.ctx, b.targets, NULL, 2, b.t_shape, false);
    /* teacher: the dense model with the student's backbone (fixture attr teacher) */
    tps_config dense = {.method = TPS_NONE};
    vit_model teacher;
    cr_assert_eq(vit_model_create(&teacher, &b.cfg, &dense), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&b.fx, "/model", &teacher.params);
    vit_forward_opts topts = {.mode = VIT_INFER};
    vit_output tout;
    ag_set_grad_enabled(b.ctx, false);
    cr_assert_not_null(vit_forward(b.ctx, &teacher, x, &topts, &tout), "%s", tpsc_last_error());
    ag_set_grad_enabled(b.ctx, true);

    vit_forward_opts opts = {.mode = VIT_TRAIN};
    for (int s = 0; s < STAGES; s++) opts.gumbel_u[s] = b.u[s];
    vit_output out;
    ag_tensor *logits = vit_forward(b.ctx, &b.m, x, &opts, &out);
    cr_assert_not_null(logits, "%s: %s", method, tpsc_last_error());
    char path[160];
    for (int s = 0; s < STAGES; s++) {
        snprintf(path, sizeof path, "/%s/train/keep_s%d", method, s);
        size_t n;
        float *keep = fx_read_f32(&b.fx, path, &n, NULL, NULL);
        cr_assert_eq(n, ag_numel(out.keep[s]), "%s", path);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(out.keep[s]->data[i], keep[i], "%s: token %zu is %g, torch %g", path, i,
                         (double)out.keep[s]->data[i], (double)keep[i]);
        free(keep);
    }
    snprintf(path, sizeof path, "/%s/train/logits", method);
    check_logits(&b, logits, path);

    /* the official dTPS DeiT-S objective with the fixture's weights */
    tps_loss_config lc = {.clf_weight = (float)fx_attr_double(&b.fx, "clf_weight"),
                          .ratio_weight = (float)fx_attr_double(&b.fx, "ratio_weight"),
                          .distill_weight = (float)fx_attr_double(&b.fx, "distill_weight"),
                          .distill_token = TPS_DISTILL_TOKEN_KL,
                          .distill_cls = true};
    tps_loss_parts parts;
    cr_assert_eq(tps_loss_compute(b.ctx, &b.tps, &lc, &out, targets, &tout, &parts), TPSC_OK, "%s", tpsc_last_error());
    snprintf(path, sizeof path, "/%s/train/loss", method);
    float *ref_loss = fx_read_f32(&b.fx, path, NULL, NULL, NULL);
    cr_assert(fabs(parts.total->data[0] - ref_loss[0]) <= 1e-5 * fabs(ref_loss[0]), "%s: %.8g vs torch %.8g", path,
              (double)parts.total->data[0], (double)ref_loss[0]);
    free(ref_loss);
    if (grads) {
        ag_params_zero_grad(&b.m.params);
        cr_assert_eq(ag_backward(b.ctx, parts.total), TPSC_OK, "%s", tpsc_last_error());
        for (int i = 0; i < b.m.params.count; i++) {
            const ag_param *it = &b.m.params.items[i];
            snprintf(path, sizeof path, "/%s/train/grad/%s", method, it->name);
            size_t n;
            float *g = fx_read_f32(&b.fx, path, &n, NULL, NULL);
            cr_assert_eq(n, it->numel, "%s", path);
            const double gs = max_abs(g, n), d = max_diff(it->t.grad, g, n);
            cr_assert(d <= 1e-3 * gs, "gradient of %s differs by %g (scale %g)", it->name, d, gs);
            free(g);
        }
    }
    vit_model_free(&teacher);
    close_bench(&b);
}

/* dtps gradients reach the predictors through the Gumbel keep masks, the policy softmax, the
 * masked mean and the squeeze (into keep and prev too): all must match the official autograd */
Test(tps_parity, dtps_training_masks_loss_and_every_gradient) { check_train("dtps", true); }
Test(tps_parity, dynamicvit_training_masks_and_loss) { check_train("dynamicvit", false); }
