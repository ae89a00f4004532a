/* Token-pruning parity with PyTorch (fixture tests/fixtures/vit_dtps.h5, made by
 * tests/reference/make_fixtures.py; the README there says which official code it reproduces).
 *
 * One backbone (img 32, patch 4, N = 64, C 32, depth 4), prune_loc [1,2,3], keep ratio 0.7,
 * the Gumbel uniforms of every stage given, so the C engine must take the same discrete
 * decisions as torch: keep masks and kept indices are compared exactly (the fixture was
 * chosen so that no decision is within 1e-3 / 1e-4 of a tie).
 *
 * Tolerances, per tensor, relative to the reference tensor's largest magnitude (as
 * test_parity_dense.c):
 *   logits: max|c - torch| <= 1e-4 * max|torch|;  every loss part: 1e-5 relative;
 *   every student gradient (score predictors included): max|c - torch| <= 1e-3 * max|torch|. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "src/objective/objective.h"
#include "src/model/vit.h"
#include "support/fixture_run.h"

#define FIXTURE "vit_dtps.h5"
#define LOGIT_RTOL 1e-4
#define LOSS_RTOL 1e-5
#define GRAD_RTOL 1e-3

/* The fixture's pruning stages for a method; evit/etps read their rate from their group. */
static tok_config tps_from_fixture(const fixture *fx, tok_method method) {
    tok_config t = {.method = method, .squeeze_temp = 1.0f};
    long loc[TOK_MAX_STAGES];
    t.n_stages = (int)fx_attr_ints(fx, "/", "prune_loc", loc, TOK_MAX_STAGES);
    for (int s = 0; s < t.n_stages; s++) t.prune_loc[s] = (int)loc[s];
    double rho = (method == TOK_EVIT || method == TOK_ETPS) ? fx_attr_double_of(fx, tok_method_name(method), "keep_rate")
                                                            : fx_attr_double(fx, "keep_ratio");
    tok_config_fill_rho(&t, (float)rho);
    return t;
}

/* Everything a parity run needs: the fixture, the model with /model loaded, the inputs, the
 * Gumbel noise of every stage. */
static void run_open(fx_run *r, tok_method method) {
    fx_run_open(r, FIXTURE);
    tok_config tps = tps_from_fixture(&r->fx, method);
    for (int s = 0; s < tps.n_stages; s++) cr_assert_not_null(r->u[s], "%s: no Gumbel noise for stage %d", r->fx.path, s);
    fx_run_model(r, &tps);
}

/* The teacher of the fixture: the dense model with the student's backbone weights, plain
 * softmax, no gradient. Its output lives in r->ctx; *teacher must be freed by the caller. */
static void teacher_forward(fx_run *r, vit_model *teacher, vit_output *out) {
    tok_config none = {.method = TOK_NONE};
    cr_assert_eq(vit_model_create(teacher, &r->cfg, &none), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&r->fx, "/model", &teacher->params);
    ag_set_grad_enabled(r->ctx, false);
    vit_forward_opts opts = {.mode = VIT_INFER};
    cr_assert_not_null(vit_forward(r->ctx, teacher, r->x, &opts, out), "teacher: %s", tpsc_last_error());
    ag_set_grad_enabled(r->ctx, true);
}

/* Hard keep masks of every stage, over the original N patches: exactly torch's 0/1. */
static void expect_masks(const fx_run *r, const vit_output *out, const char *group) {
    const size_t B = r->img_shape[0], N = vit_num_patches(&r->cfg);
    char path[96];
    cr_assert_eq(out->n_stages, r->m.tps.n_stages);
    for (int s = 0; s < out->n_stages; s++) {
        snprintf(path, sizeof path, "/%s/keep_s%d", group, s);
        size_t n;
        float *ref = fx_read_f32(&r->fx, path, &n, NULL, NULL);
        cr_assert_not_null(out->keep[s], "stage %d: no keep mask", s);
        cr_assert_eq(ag_numel(out->keep[s]), B * N, "%s: mask size", path);
        cr_assert_eq(n, B * N, "%s: fixture size", path);
        size_t wrong = 0, first = 0;
        for (size_t i = 0; i < n; i++)
            if (out->keep[s]->data[i] != ref[i] && wrong++ == 0) first = i;
        cr_expect_eq(wrong, 0, "%s: %zu decisions differ, first image %zu patch %zu (C %g, torch %g)", path, wrong,
                     first / N, first % N, (double)out->keep[s]->data[first], (double)ref[first]);
        free(ref);
    }
}

/* Kept original patch indices per stage, in the reference's order (-1: EViT fused token). */
static void expect_kept(const fx_run *r, const vit_output *out, const char *group) {
    const size_t B = r->img_shape[0];
    char path[96];
    cr_assert_eq(out->n_stages, r->m.tps.n_stages);
    for (int s = 0; s < out->n_stages; s++) {
        snprintf(path, sizeof path, "/%s/kept_s%d", group, s);
        size_t n;
        int64_t *ref = fx_read_i64(&r->fx, path, &n);
        cr_assert_not_null(out->kept_orig[s], "%s: no kept indices", path);
        cr_assert_eq(out->kept_count[s] * B, n, "%s: C keeps %zu per image, torch %zu", path, out->kept_count[s], n / B);
        const size_t k = out->kept_count[s];
        for (size_t i = 0; i < n; i++)
            cr_assert_eq((int64_t)out->kept_orig[s][i], ref[i], "%s: image %zu, rank %zu: C keeps %d, torch %lld",
                         path, i / k, i % k, (int)out->kept_orig[s][i], (long long)ref[i]);
        free(ref);
    }
}

static objective_config loss_config_from_fixture(const fixture *fx) {
    return (objective_config){
        .clf_weight = (float)fx_attr_double(fx, "clf_weight"),
        .ratio_weight = (float)fx_attr_double(fx, "ratio_weight"),
        .distill_weight = (float)fx_attr_double(fx, "distill_weight"),
        .distill_token = OBJ_DISTILL_TOKEN_KL,
        .distill_cls = true,
    };
}

/* r's method in training beside the dense teacher (into teacher, te): logits against
 * /<method>/train/logits, the keep masks, and the loss parts into parts. */
static void train_with_teacher(fx_run *r, vit_model *teacher, vit_output *te, vit_output *st, objective_parts *parts) {
    char group[64], path[96];
    snprintf(group, sizeof group, "%s/train", tok_method_name(r->m.tps.method));
    snprintf(path, sizeof path, "/%s/logits", group);
    teacher_forward(r, teacher, te);
    ag_tensor *logits = fx_run_forward(r, VIT_TRAIN, st);
    fx_expect_close(&r->fx, path, logits->data, ag_numel(logits), LOGIT_RTOL);
    expect_masks(r, st, group);
    objective_config lc = loss_config_from_fixture(&r->fx);
    cr_assert_eq(objective_compute(r->ctx, &r->m.tps, &lc, st, r->t, te, parts), TPSC_OK, "%s", tpsc_last_error());
}

/* Inference logits and kept indices of `method` against the fixture's /<method>/infer. */
static void check_infer(tok_method method) {
    fx_run r;
    run_open(&r, method);
    char group[64], path[96];
    snprintf(group, sizeof group, "%s/infer", tok_method_name(method));
    snprintf(path, sizeof path, "/%s/logits", group);
    vit_output out;
    ag_tensor *logits = fx_run_forward(&r, VIT_INFER, &out);
    fx_expect_close(&r.fx, path, logits->data, ag_numel(logits), LOGIT_RTOL);
    expect_kept(&r, &out, group);
    fx_run_close(&r);
}

/* ---- dTPS ------------------------------------------------------------------------------- */

Test(parity_tps, teacher_is_the_dense_backbone) {
    fx_run r;
    run_open(&r, TOK_DTPS);
    vit_model teacher;
    vit_output te;
    teacher_forward(&r, &teacher, &te);
    fx_expect_close(&r.fx, "/teacher/logits", te.logits->data, ag_numel(te.logits), LOGIT_RTOL);
    vit_model_free(&teacher);
    fx_run_close(&r);
}

Test(parity_tps, dtps_train_logits_masks_losses_and_every_gradient) {
    fx_run r;
    run_open(&r, TOK_DTPS);
    vit_model teacher;
    vit_output te, st;
    objective_parts parts;
    train_with_teacher(&r, &teacher, &te, &st, &parts);
    fx_expect_scalar(&r.fx, "/dtps/train/loss_ce", parts.ce, LOSS_RTOL);
    fx_expect_scalar(&r.fx, "/dtps/train/loss_ratio", parts.ratio, LOSS_RTOL);
    fx_expect_scalar(&r.fx, "/dtps/train/loss_cls_kl", parts.cls_kl, LOSS_RTOL);
    fx_expect_scalar(&r.fx, "/dtps/train/loss_token_kl", parts.token_kl, LOSS_RTOL);
    fx_expect_scalar(&r.fx, "/dtps/train/loss", parts.total, LOSS_RTOL);

    ag_params_zero_grad(&r.m.params);
    cr_assert_eq(ag_backward(r.ctx, parts.total), TPSC_OK, "%s", tpsc_last_error());
    char path[256];
    int predictor_params = 0;
    for (int i = 0; i < r.m.params.count; i++) {
        ag_param *it = &r.m.params.items[i];
        snprintf(path, sizeof path, "/dtps/train/grad/%s", it->name);
        fx_expect_close(&r.fx, path, it->t.grad, it->numel, GRAD_RTOL);
        predictor_params += strncmp(it->name, "score_predictor.", 16) == 0;
    }
    /* 10 tensors per stage: in_conv.{0,1}, out_conv.{0,2,4}, weight and bias each */
    cr_expect_eq(predictor_params, 10 * r.m.tps.n_stages, "the predictors' gradients were not all checked");
    vit_model_free(&teacher);
    fx_run_close(&r);
}

Test(parity_tps, dtps_infer_logits_and_kept_indices) { check_infer(TOK_DTPS); }

/* ---- DynamicViT (prune, no squeeze) ------------------------------------------------------ */

Test(parity_tps, dynamicvit_train_logits_masks_and_loss) {
    fx_run r;
    run_open(&r, TOK_DYNAMICVIT);
    vit_model teacher;
    vit_output te, st;
    objective_parts parts;
    train_with_teacher(&r, &teacher, &te, &st, &parts);
    fx_expect_scalar(&r.fx, "/dynamicvit/train/loss", parts.total, LOSS_RTOL);
    vit_model_free(&teacher);
    fx_run_close(&r);
}

Test(parity_tps, dynamicvit_infer_logits_and_kept_indices) { check_infer(TOK_DYNAMICVIT); }

/* ---- EViT and eTPS (cls-attention score inside the block; train = infer computation) ---- */

static void check_attention_method(tok_method method) {
    fx_run r;
    run_open(&r, method);
    const char *name = tok_method_name(method);
    char path[96];
    /* the group's keep_counts are what the fixture's torch run kept: check our counting first */
    long counts[TOK_MAX_STAGES];
    snprintf(path, sizeof path, "/%s", name);
    size_t n_counts = fx_attr_ints(&r.fx, path, "keep_counts", counts, TOK_MAX_STAGES);
    cr_assert_eq((int)n_counts, r.m.tps.n_stages);

    vit_output tr;
    ag_tensor *logits = fx_run_forward(&r, VIT_TRAIN, &tr);
    snprintf(path, sizeof path, "/%s/train/logits", name);
    fx_expect_close(&r.fx, path, logits->data, ag_numel(logits), LOGIT_RTOL);
    ag_tensor *ce = ag_cross_entropy_soft(r.ctx, logits, r.t);
    snprintf(path, sizeof path, "/%s/train/loss_ce", name);
    fx_expect_scalar(&r.fx, path, ce, LOSS_RTOL);

    vit_output inf;
    logits = fx_run_forward(&r, VIT_INFER, &inf);
    snprintf(path, sizeof path, "/%s/infer/logits", name);
    fx_expect_close(&r.fx, path, logits->data, ag_numel(logits), LOGIT_RTOL);
    for (int s = 0; s < inf.n_stages; s++)
        cr_expect_eq((long)inf.kept_count[s], counts[s], "%s stage %d: keeps %zu, torch %ld", name, s,
                     inf.kept_count[s], counts[s]);
    snprintf(path, sizeof path, "%s/infer", name);
    expect_kept(&r, &inf, path);
    fx_run_close(&r);
}

Test(parity_tps, evit_train_and_infer) { check_attention_method(TOK_EVIT); }
Test(parity_tps, etps_train_and_infer) { check_attention_method(TOK_ETPS); }
