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
#include "src/loss/objective.h"
#include "src/model/vit.h"
#include "support/fixture.h"

#define FIXTURE "vit_dtps.h5"
#define LOGIT_RTOL 1e-4
#define LOSS_RTOL 1e-5
#define GRAD_RTOL 1e-3



/* An integer array attribute of object obj ("/" or a group); returns its length. */
static size_t attr_ints(const fixture *fx, const char *obj, const char *name, long *out, size_t cap) {
    cr_assert(H5Aexists_by_name(fx->file, obj, name, H5P_DEFAULT) > 0, "%s: no attribute %s on %s", fx->path, name, obj);
    hid_t a = H5Aopen_by_name(fx->file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    cr_assert(n > 0 && (size_t)n <= cap, "%s: attribute %s of %s has %lld values (at most %zu)", fx->path, name, obj,
              (long long)n, cap);
    long long v[TOK_MAX_STAGES];
    cr_assert(H5Aread(a, H5T_NATIVE_LLONG, v) >= 0, "%s: reading attribute %s", fx->path, name);
    for (hssize_t i = 0; i < n; i++) out[i] = (long)v[i];
    H5Sclose(sp);
    H5Aclose(a);
    return (size_t)n;
}

static double attr_double_of(const fixture *fx, const char *obj, const char *name) {
    cr_assert(H5Aexists_by_name(fx->file, obj, name, H5P_DEFAULT) > 0, "%s: no attribute %s on %s", fx->path, name, obj);
    hid_t a = H5Aopen_by_name(fx->file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    double v = 0;
    H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    return v;
}


/* The fixture's pruning stages for a method; evit/etps read their rate from their group. */
static tok_config tps_from_fixture(const fixture *fx, tok_method method) {
    tok_config t = {.method = method, .squeeze_temp = 1.0f};
    long loc[TOK_MAX_STAGES];
    t.n_stages = (int)attr_ints(fx, "/", "prune_loc", loc, TOK_MAX_STAGES);
    for (int s = 0; s < t.n_stages; s++) t.prune_loc[s] = (int)loc[s];
    double rho = (method == TOK_EVIT || method == TOK_ETPS) ? attr_double_of(fx, tok_method_name(method), "keep_rate")
                                                            : fx_attr_double(fx, "keep_ratio");
    tok_config_fill_rho(&t, (float)rho);
    return t;
}

/* Everything a parity run needs: the fixture, the model with /model loaded, the inputs. */
typedef struct run {
    fixture fx;
    vit_config cfg;
    vit_model m;
    float *images, *targets, *u[TOK_MAX_STAGES];
    size_t img_shape[4], t_shape[2];
    ag_ctx *ctx;
    ag_tensor *x, *t;
} run;

static void run_open(run *r, tok_method method) {
    memset(r, 0, sizeof *r);
    fx_open(&r->fx, FIXTURE);
    fx_vit_config(&r->fx, &r->cfg);
    tok_config tps = tps_from_fixture(&r->fx, method);
    cr_assert_eq(vit_model_create(&r->m, &r->cfg, &tps), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&r->fx, "/model", &r->m.params);
    size_t n;
    int nd;
    r->images = fx_read_f32(&r->fx, "/input/images", &n, r->img_shape, &nd);
    r->targets = fx_read_f32(&r->fx, "/input/targets", &n, r->t_shape, &nd);
    const size_t B = r->img_shape[0], N = vit_num_patches(&r->cfg);
    char path[64];
    for (int s = 0; s < tps.n_stages; s++) {
        snprintf(path, sizeof path, "/input/gumbel_u_s%d", s);
        r->u[s] = fx_read_f32(&r->fx, path, &n, NULL, NULL);
        cr_assert_eq(n, B * N * 2, "%s: %zu values, want [%zu,%zu,2]", path, n, B, N);
    }
    r->ctx = ag_ctx_create(0);
    r->x = ag_wrap(r->ctx, r->images, NULL, 4, r->img_shape, false);
    r->t = ag_wrap(r->ctx, r->targets, NULL, 2, r->t_shape, false);
    cr_assert_not_null(r->x);
    cr_assert_not_null(r->t);
}

static void run_close(run *r) {
    ag_ctx_free(r->ctx);
    vit_model_free(&r->m);
    free(r->images), free(r->targets);
    for (int s = 0; s < TOK_MAX_STAGES; s++) free(r->u[s]);
    fx_close(&r->fx);
}

static ag_tensor *forward(run *r, vit_mode mode, vit_output *out) {
    vit_forward_opts opts = {.mode = mode};
    for (int s = 0; s < TOK_MAX_STAGES; s++) opts.gumbel_u[s] = r->u[s];
    ag_tensor *logits = vit_forward(r->ctx, &r->m, r->x, &opts, out);
    cr_assert_not_null(logits, "%s forward (%s) failed: %s", tok_method_name(r->m.tps.method),
                       mode == VIT_TRAIN ? "train" : "infer", tpsc_last_error());
    return logits;
}

/* The teacher of the fixture: the dense model with the student's backbone weights, plain
 * softmax, no gradient. Its output lives in r->ctx; *teacher must be freed by the caller. */
static void teacher_forward(run *r, vit_model *teacher, vit_output *out) {
    tok_config none = {.method = TOK_NONE};
    cr_assert_eq(vit_model_create(teacher, &r->cfg, &none), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&r->fx, "/model", &teacher->params);
    ag_set_grad_enabled(r->ctx, false);
    vit_forward_opts opts = {.mode = VIT_INFER};
    cr_assert_not_null(vit_forward(r->ctx, teacher, r->x, &opts, out), "teacher: %s", tpsc_last_error());
    ag_set_grad_enabled(r->ctx, true);
}

static void expect_close(const float *got, const char *dataset, const fixture *fx, size_t n, double rtol) {
    size_t n_ref;
    float *ref = fx_read_f32(fx, dataset, &n_ref, NULL, NULL);
    cr_assert_eq(n_ref, n, "%s: %zu values in the fixture, %zu computed", dataset, n_ref, n);
    double scale = fx_max_abs(ref, n), d = fx_max_diff(got, ref, n);
    cr_expect(d <= rtol * scale, "%s differs by %g (scale %g, tolerance %g)", dataset, d, scale, rtol * scale);
    free(ref);
}

static void expect_scalar(const ag_tensor *got, const char *dataset, const fixture *fx) {
    cr_assert_not_null(got, "%s: not computed (%s)", dataset, tpsc_last_error());
    float *ref = fx_read_f32(fx, dataset, NULL, NULL, NULL);
    cr_expect(fabs((double)got->data[0] - ref[0]) <= LOSS_RTOL * fabs(ref[0]), "%s: %.8g vs torch %.8g", dataset,
              (double)got->data[0], (double)ref[0]);
    free(ref);
}

/* Hard keep masks of every stage, over the original N patches: exactly torch's 0/1. */
static void expect_masks(const run *r, const vit_output *out, const char *group) {
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
static void expect_kept(const run *r, const vit_output *out, const char *group) {
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
static void train_with_teacher(run *r, vit_model *teacher, vit_output *te, vit_output *st, objective_parts *parts) {
    char group[64], path[96];
    snprintf(group, sizeof group, "%s/train", tok_method_name(r->m.tps.method));
    snprintf(path, sizeof path, "/%s/logits", group);
    teacher_forward(r, teacher, te);
    ag_tensor *logits = forward(r, VIT_TRAIN, st);
    expect_close(logits->data, path, &r->fx, ag_numel(logits), LOGIT_RTOL);
    expect_masks(r, st, group);
    objective_config lc = loss_config_from_fixture(&r->fx);
    cr_assert_eq(objective_compute(r->ctx, &r->m.tps, &lc, st, r->t, te, parts), TPSC_OK, "%s", tpsc_last_error());
}

/* Inference logits and kept indices of `method` against the fixture's /<method>/infer. */
static void check_infer(tok_method method) {
    run r;
    run_open(&r, method);
    char group[64], path[96];
    snprintf(group, sizeof group, "%s/infer", tok_method_name(method));
    snprintf(path, sizeof path, "/%s/logits", group);
    vit_output out;
    ag_tensor *logits = forward(&r, VIT_INFER, &out);
    expect_close(logits->data, path, &r.fx, ag_numel(logits), LOGIT_RTOL);
    expect_kept(&r, &out, group);
    run_close(&r);
}

/* ---- dTPS ------------------------------------------------------------------------------- */

Test(parity_tps, teacher_is_the_dense_backbone) {
    run r;
    run_open(&r, TOK_DTPS);
    vit_model teacher;
    vit_output te;
    teacher_forward(&r, &teacher, &te);
    expect_close(te.logits->data, "/teacher/logits", &r.fx, ag_numel(te.logits), LOGIT_RTOL);
    vit_model_free(&teacher);
    run_close(&r);
}

Test(parity_tps, dtps_train_logits_masks_losses_and_every_gradient) {
    run r;
    run_open(&r, TOK_DTPS);
    vit_model teacher;
    vit_output te, st;
    objective_parts parts;
    train_with_teacher(&r, &teacher, &te, &st, &parts);
    expect_scalar(parts.ce, "/dtps/train/loss_ce", &r.fx);
    expect_scalar(parts.ratio, "/dtps/train/loss_ratio", &r.fx);
    expect_scalar(parts.cls_kl, "/dtps/train/loss_cls_kl", &r.fx);
    expect_scalar(parts.token_kl, "/dtps/train/loss_token_kl", &r.fx);
    expect_scalar(parts.total, "/dtps/train/loss", &r.fx);

    ag_params_zero_grad(&r.m.params);
    cr_assert_eq(ag_backward(r.ctx, parts.total), TPSC_OK, "%s", tpsc_last_error());
    char path[256];
    int predictor_params = 0;
    for (int i = 0; i < r.m.params.count; i++) {
        ag_param *it = &r.m.params.items[i];
        snprintf(path, sizeof path, "/dtps/train/grad/%s", it->name);
        expect_close(it->t.grad, path, &r.fx, it->numel, GRAD_RTOL);
        predictor_params += strncmp(it->name, "score_predictor.", 16) == 0;
    }
    /* 10 tensors per stage: in_conv.{0,1}, out_conv.{0,2,4}, weight and bias each */
    cr_expect_eq(predictor_params, 10 * r.m.tps.n_stages, "the predictors' gradients were not all checked");
    vit_model_free(&teacher);
    run_close(&r);
}

Test(parity_tps, dtps_infer_logits_and_kept_indices) { check_infer(TOK_DTPS); }

/* ---- DynamicViT (prune, no squeeze) ------------------------------------------------------ */

Test(parity_tps, dynamicvit_train_logits_masks_and_loss) {
    run r;
    run_open(&r, TOK_DYNAMICVIT);
    vit_model teacher;
    vit_output te, st;
    objective_parts parts;
    train_with_teacher(&r, &teacher, &te, &st, &parts);
    expect_scalar(parts.total, "/dynamicvit/train/loss", &r.fx);
    vit_model_free(&teacher);
    run_close(&r);
}

Test(parity_tps, dynamicvit_infer_logits_and_kept_indices) { check_infer(TOK_DYNAMICVIT); }

/* ---- EViT and eTPS (cls-attention score inside the block; train = infer computation) ---- */

static void check_attention_method(tok_method method) {
    run r;
    run_open(&r, method);
    const char *name = tok_method_name(method);
    char path[96];
    /* the group's keep_counts are what the fixture's torch run kept: check our counting first */
    long counts[TOK_MAX_STAGES];
    snprintf(path, sizeof path, "/%s", name);
    size_t n_counts = attr_ints(&r.fx, path, "keep_counts", counts, TOK_MAX_STAGES);
    cr_assert_eq((int)n_counts, r.m.tps.n_stages);

    vit_output tr;
    ag_tensor *logits = forward(&r, VIT_TRAIN, &tr);
    snprintf(path, sizeof path, "/%s/train/logits", name);
    expect_close(logits->data, path, &r.fx, ag_numel(logits), LOGIT_RTOL);
    ag_tensor *ce = ag_cross_entropy_soft(r.ctx, logits, r.t);
    snprintf(path, sizeof path, "/%s/train/loss_ce", name);
    expect_scalar(ce, path, &r.fx);

    vit_output inf;
    logits = forward(&r, VIT_INFER, &inf);
    snprintf(path, sizeof path, "/%s/infer/logits", name);
    expect_close(logits->data, path, &r.fx, ag_numel(logits), LOGIT_RTOL);
    for (int s = 0; s < inf.n_stages; s++)
        cr_expect_eq((long)inf.kept_count[s], counts[s], "%s stage %d: keeps %zu, torch %ld", name, s,
                     inf.kept_count[s], counts[s]);
    snprintf(path, sizeof path, "%s/infer", name);
    expect_kept(&r, &inf, path);
    run_close(&r);
}

Test(parity_tps, evit_train_and_infer) { check_attention_method(TOK_EVIT); }
Test(parity_tps, etps_train_and_infer) { check_attention_method(TOK_ETPS); }
