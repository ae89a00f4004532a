/* Parity with the official code itself (fixtures made by tests/reference/make_official_fixtures.py
 * from megvii-research/TPS-CVPR2023 with timm 0.6.13 and youweiliang/evit with timm 0.4.12, at
 * the commits the README there pins), in training mode, and the official training checkpoints
 * as tools/convert_timm.py converts them.
 *
 * official_tps.h5: TPS's DynamicVit (with TPSModule: dtps; without: dynamicvit), its teacher
 * (utils.get_modified_teacher_model), KeepRatioLoss and DistillKLLoss at the weights of
 * dtps_deit_s_30e.sh, the Gumbel draw fed given uniforms. official_evit.h5: EViT's
 * deit_small_patch16_shrink_base with and without --fuse_token, its training criterion.
 * interop_dtps_net.h5: the {'net', 'optimizer', 'epoch', ...} file TPS's train.py saves,
 * converted; interop_evit_nofuse.h5: the {'model', 'model_ema', 'args', ...} file EViT's main.py
 * saves for a run without --fuse_token, converted with no flags (its args say so).
 *
 * Tolerances, each relative to the largest magnitude of the official tensor (as
 * test_parity_tps.c): logits and squeezed tokens 1e-4; every loss term 1e-5 of its value;
 * every parameter gradient 1e-3. Keep masks, kept indices and counts must be equal. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/ops.h"
#include "src/infer/tps_infer.h"
#include "src/io/checkpoint.h"
#include "src/objective/objective.h"
#include "src/model/vit.h"
#include "support/fixture_run.h"
#include "support/small_model.h"

#define LOGIT_RTOL 1e-4
#define LOSS_RTOL 1e-5
#define GRAD_RTOL 1e-3

/* The n values of an integer array attribute. */
static void int_attr(const fixture *fx, const char *obj, const char *name, long *out, size_t want_n) {
    cr_assert_eq(fx_attr_ints(fx, obj, name, out, want_n), want_n, "%s: %s on %s", fx->path, name, obj);
}

/* ---- the fixture's model and inputs ------------------------------------------------------- */

static tok_config stages(tok_method method, float temp, bool drop_pruned) {
    tok_config t = {.method = method, .n_stages = 3, .prune_loc = {1, 2, 3}, .squeeze_temp = temp,
                    .evit_drop_pruned = drop_pruned};
    tok_config_fill_rho(&t, 0.7f);
    return t;
}

/* The fixture's model and inputs; the fixture must prune where tps does. */
static void run_open(fx_run *r, const char *file, const tok_config *tps) {
    fx_run_open(r, file);
    long loc[3];
    int_attr(&r->fx, "/", "prune_loc", loc, 3);
    for (int s = 0; s < 3; s++) cr_assert_eq(loc[s], tps->prune_loc[s], "the fixture prunes at other blocks");
    fx_run_model(r, tps);
}

/* The official keep masks [B,N] of every stage, exactly. */
static void expect_masks(const fx_run *r, const vit_output *out, const char *group) {
    char path[96];
    for (int s = 0; s < out->n_stages; s++) {
        snprintf(path, sizeof path, "%s/keep_s%d", group, s);
        size_t n;
        float *ref = fx_read_f32(&r->fx, path, &n, NULL, NULL);
        cr_assert_not_null(out->keep[s]);
        cr_assert_eq(ag_numel(out->keep[s]), n, "%s: size", path);
        size_t wrong = 0;
        for (size_t i = 0; i < n; i++) wrong += out->keep[s]->data[i] != ref[i];
        cr_expect_eq(wrong, 0, "%s: %zu of %zu decisions differ from the official run", path, wrong, n);
        free(ref);
    }
}

/* ---- TPS-CVPR2023: dTPS and DynamicViT, training mode ------------------------------------- */

static void check_predictor_training(tok_method method) {
    fx_run r;
    tok_config tps = stages(method, 1.0f, false);
    run_open(&r, "official_tps.h5", &tps);
    char group[64];
    snprintf(group, sizeof group, "/%s/train", tok_method_name(method));

    vit_model teacher;
    tok_config none = {.method = TOK_NONE};
    cr_assert_eq(vit_model_create(&teacher, &r.cfg, &none), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&r.fx, "/model", &teacher.params);
    vit_output te, st;
    ag_set_grad_enabled(r.ctx, false);
    vit_forward_opts topts = {.mode = VIT_INFER};
    ag_tensor *tl = vit_forward(r.ctx, &teacher, r.x, &topts, &te);
    cr_assert_not_null(tl, "%s", tpsc_last_error());
    ag_set_grad_enabled(r.ctx, true);
    fx_expect_close(&r.fx, "/teacher/logits", tl->data, ag_numel(tl), LOGIT_RTOL);

    ag_tensor *logits = fx_run_forward(&r, VIT_TRAIN, &st);
    char path[128];
    snprintf(path, sizeof path, "%s/logits", group);
    fx_expect_close(&r.fx, path, logits->data, ag_numel(logits), LOGIT_RTOL);
    expect_masks(&r, &st, group);

    /* the official weights: train.py sums ce + KeepRatioLoss(alpha 2) + DistillKLLoss(alpha 0.5) */
    objective_config lc = {.clf_weight = (float)fx_attr_double(&r.fx, "clf_weight"),
                           .ratio_weight = (float)fx_attr_double(&r.fx, "ratio_weight"),
                           .distill_weight = (float)fx_attr_double(&r.fx, "distill_weight"),
                           .distill_token = OBJ_DISTILL_TOKEN_KL,
                           .distill_cls = true};
    objective_parts parts;
    cr_assert_eq(objective_compute(r.ctx, &r.m.tps, &lc, &st, r.t, &te, &parts), TPSC_OK, "%s", tpsc_last_error());
    const struct { ag_tensor *t; const char *name; } terms[] = {
        {parts.ce, "loss_ce"}, {parts.ratio, "loss_ratio"}, {parts.cls_kl, "loss_cls_kl"},
        {parts.token_kl, "loss_token_kl"}, {parts.total, "loss"}};
    for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", group, terms[i].name);
        fx_expect_scalar(&r.fx, path, terms[i].t, LOSS_RTOL);
    }
    ag_params_zero_grad(&r.m.params);
    cr_assert_eq(ag_backward(r.ctx, parts.total), TPSC_OK, "%s", tpsc_last_error());
    fx_expect_grads(&r.fx, group, &r.m.params, GRAD_RTOL);
    vit_model_free(&teacher);
    fx_run_close(&r);
}

Test(parity_official, dtps_training_masks_losses_and_every_gradient) { check_predictor_training(TOK_DTPS); }
Test(parity_official, dynamicvit_training_masks_losses_and_every_gradient) {
    check_predictor_training(TOK_DYNAMICVIT);
}

/* TPSModule's training branch on the official tokens and masks of each stage: the squeeze op
 * alone, at T = 1 and at T = 0.5 (the factory's temperature argument). */
static void check_squeeze(const char *group, float temp) {
    fixture fx;
    fx_open(&fx, "official_tps.h5");
    ag_ctx *ctx = ag_ctx_create(0);
    float *prev = NULL;
    char path[128];
    for (int s = 0; s < 3; s++) {
        size_t shape[3], n, nk;
        int nd;
        snprintf(path, sizeof path, "/%s/train/squeeze_in_s%d", group, s);
        float *xin = fx_read_f32(&fx, path, &n, shape, &nd);
        cr_assert_eq(nd, 3);
        snprintf(path, sizeof path, "/%s/train/keep_s%d", group, s);
        float *keep = fx_read_f32(&fx, path, &nk, NULL, NULL);
        cr_assert_eq(nk, shape[0] * shape[1]);
        if (!prev) {
            prev = malloc(nk * sizeof *prev);
            for (size_t i = 0; i < nk; i++) prev[i] = 1.0f;
        }
        ag_tensor *x = ag_wrap(ctx, xin, NULL, 3, shape, false);
        ag_tensor *k = ag_wrap(ctx, keep, NULL, 2, shape, false);
        ag_tensor *p = ag_wrap(ctx, prev, NULL, 2, shape, false);
        ag_tensor *y = tok_squeeze_train(ctx, x, k, p, temp);
        cr_assert_not_null(y, "%s", tpsc_last_error());
        snprintf(path, sizeof path, "/%s/train/squeezed_s%d", group, s);
        fx_expect_close(&fx, path, y->data, n, LOGIT_RTOL);
        free(xin);
        free(prev);
        prev = keep;
    }
    free(prev);
    ag_ctx_free(ctx);
    fx_close(&fx);
}

Test(parity_official, dtps_training_squeeze_of_every_stage) { check_squeeze("dtps", 1.0f); }
Test(parity_official, dtps_training_squeeze_at_temperature_half) { check_squeeze("dtps_t05", 0.5f); }

Test(parity_official, dtps_training_at_temperature_half) {
    fx_run r;
    tok_config tps = stages(TOK_DTPS, 0.5f, false);
    run_open(&r, "official_tps.h5", &tps);
    vit_output st;
    ag_tensor *logits = fx_run_forward(&r, VIT_TRAIN, &st);
    fx_expect_close(&r.fx, "/dtps_t05/train/logits", logits->data, ag_numel(logits), LOGIT_RTOL);
    expect_masks(&r, &st, "/dtps_t05/train");
    fx_run_close(&r);
}

/* ---- EViT, with and without token fusion ---------------------------------------------------- */

static void check_evit(const char *group, bool drop_pruned) {
    fx_run r;
    tok_config tps = stages(TOK_EVIT, 1.0f, drop_pruned);
    run_open(&r, "official_evit.h5", &tps);
    char obj[64], path[128];
    snprintf(obj, sizeof obj, "/%s", group);
    long counts[3];
    int_attr(&r.fx, obj, "keep_counts", counts, 3);

    vit_output tr;
    ag_tensor *logits = fx_run_forward(&r, VIT_TRAIN, &tr);
    snprintf(path, sizeof path, "/%s/train/logits", group);
    fx_expect_close(&r.fx, path, logits->data, ag_numel(logits), LOGIT_RTOL);
    ag_tensor *ce = ag_cross_entropy_soft(r.ctx, logits, r.t);
    snprintf(path, sizeof path, "/%s/train/loss_ce", group);
    fx_expect_scalar(&r.fx, path, ce, LOSS_RTOL);
    ag_params_zero_grad(&r.m.params);
    cr_assert_eq(ag_backward(r.ctx, ce), TPSC_OK, "%s", tpsc_last_error());
    snprintf(path, sizeof path, "/%s/train", group);
    fx_expect_grads(&r.fx, path, &r.m.params, GRAD_RTOL);
    for (int s = 0; s < 3; s++)
        cr_expect_eq((long)tr.kept_count[s], counts[s], "%s stage %d: keeps %zu, official %ld", group, s,
                     tr.kept_count[s], counts[s]);

    vit_output inf;
    logits = fx_run_forward(&r, VIT_INFER, &inf);
    snprintf(path, sizeof path, "/%s/infer/logits", group);
    fx_expect_close(&r.fx, path, logits->data, ag_numel(logits), LOGIT_RTOL);
    for (int s = 0; s < 3; s++) {
        snprintf(path, sizeof path, "/%s/infer/kept_s%d", group, s);
        size_t n;
        int64_t *ref = fx_read_i64(&r.fx, path, &n);
        cr_assert_eq(n, inf.kept_count[s] * r.img_shape[0], "%s: count", path);
        for (size_t i = 0; i < n; i++)
            cr_expect_eq((int64_t)inf.kept_orig[s][i], ref[i], "%s[%zu]: %d, official %lld", path, i,
                         (int)inf.kept_orig[s][i], (long long)ref[i]);
        free(ref);
    }
    fx_run_close(&r);
}

Test(parity_official, evit_fused_training_and_inference) { check_evit("evit", false); }
Test(parity_official, evit_without_fusion_training_and_inference) { check_evit("evit_nofuse", true); }

/* The official EViT at DeiT-S (196 patches, keep rate 0.7 at blocks 3, 6, 9) kept 138, 98, 70
 * tokens with fusion and 138, 97, 68 without; so must our counting. */
Test(parity_official, evit_deit_s_counts_with_and_without_fusion) {
    fixture fx;
    fx_open(&fx, "official_evit.h5");
    const char *names[2] = {"deit_s_counts_fused", "deit_s_counts_nofuse"};
    for (int f = 0; f < 2; f++) {
        long want[3];
        int_attr(&fx, "/", names[f], want, 3);
        tok_config t = stages(TOK_EVIT, 1.0f, f == 1);
        size_t n = 196;
        for (int s = 0; s < 3; s++) {
            size_t k = tok_evit_keep_count(&t, s, n);
            cr_expect_eq((long)k, want[s], "%s stage %d: %zu, official %ld", names[f], s, k, want[s]);
            n = t.evit_drop_pruned ? k : k + 1;
        }
    }
    fx_close(&fx);
}

/* ---- official training checkpoints, converted --------------------------------------------- */

/* Loads a converted checkpoint as `tpsc eval` does (its attributes give the model), runs it in
 * inference mode on the fixture's images in the framework and in libtpsinfer (exported), and
 * compares with the official model's logits (and, when given, EViT's kept indices). */
static void check_converted(const char *file, const char *expected, const char *group, tok_method method,
                            bool drop_pruned) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", TPSC_FIXTURE_DIR, file);
    vit_config cfg;
    tok_config tps;
    tpsc_checkpoint_info info;
    cr_assert_eq(tpsc_checkpoint_read_config(path, &cfg, &tps, &info), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tps.method, method, "%s: method %s", file, tok_method_name(tps.method));
    cr_assert_eq(tps.evit_drop_pruned, drop_pruned, "%s: fuse_token", file);
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &tps), TPSC_OK, "%s", tpsc_last_error());
    tpsc_load_opts strict = {0};
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &m.params, &strict, NULL), TPSC_OK, "%s",
                 tpsc_last_error());

    fixture fx;
    fx_open(&fx, expected);
    size_t shape[4], n;
    int nd;
    float *images = fx_read_f32(&fx, "/input/images", &n, shape, &nd);
    const size_t B = shape[0];
    ag_ctx *ctx = ag_ctx_create(0);
    ag_set_grad_enabled(ctx, false);
    ag_tensor *x = ag_wrap(ctx, images, NULL, 4, shape, false);
    vit_forward_opts opts = {.mode = VIT_INFER};
    vit_output out;
    ag_tensor *logits = vit_forward(ctx, &m, x, &opts, &out);
    cr_assert_not_null(logits, "%s", tpsc_last_error());
    char ds[128];
    snprintf(ds, sizeof ds, "/%s/infer/logits", group);
    fx_expect_close(&fx, ds, logits->data, ag_numel(logits), LOGIT_RTOL);

    /* the same file exported for libtpsinfer */
    char lib_path[512];
    snprintf(lib_path, sizeof lib_path, "%s/test_parity_official_%d_%s", TPSC_BINARY_DIR, (int)getpid(), file);
    sm_save_inference(lib_path, &m);
    tps_model *lib;
    tps_workspace *ws;
    cr_assert_eq(tps_model_open(lib_path, &lib), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tps_workspace_create(lib, B, &ws), TPS_OK, "%s", tps_last_error());
    float *lib_logits = malloc(B * cfg.num_classes * sizeof(float));
    cr_assert_eq(tps_run(ws, images, B, lib_logits), TPS_OK, "%s", tps_last_error());
    fx_expect_close(&fx, ds, lib_logits, B * cfg.num_classes, LOGIT_RTOL);

    for (int s = 0; s < out.n_stages; s++) {
        snprintf(ds, sizeof ds, "/%s/infer/kept_s%d", group, s);
        if (!fx_exists(&fx, ds)) continue;
        int64_t *ref = fx_read_i64(&fx, ds, &n);
        const size_t k = n / B;
        cr_assert_eq(out.kept_count[s], k, "%s: keeps %zu, official %zu", ds, out.kept_count[s], k);
        for (size_t b = 0; b < B; b++) {
            const int32_t *idx;
            size_t kn;
            cr_assert_eq(tps_kept_tokens(ws, s, b, &idx, &kn), TPS_OK, "%s", tps_last_error());
            cr_assert_eq(kn, k, "libtpsinfer %s: keeps %zu", ds, kn);
            for (size_t i = 0; i < k; i++) {
                cr_expect_eq((int64_t)out.kept_orig[s][b * k + i], ref[b * k + i], "%s framework [%zu,%zu]", ds, b, i);
                cr_expect_eq((int64_t)idx[i], ref[b * k + i], "%s libtpsinfer [%zu,%zu]", ds, b, i);
            }
        }
        free(ref);
    }
    free(lib_logits);
    tps_workspace_free(ws);
    tps_model_close(lib);
    unlink(lib_path);
    ag_ctx_free(ctx);
    free(images);
    fx_close(&fx);
    vit_model_free(&m);
}

Test(parity_official, tps_train_py_checkpoint_converts_to_the_official_logits) {
    check_converted("interop_dtps_net.h5", "official_tps.h5", "dtps", TOK_DTPS, false);
}

Test(parity_official, evit_checkpoint_without_fusion_converts_to_the_official_logits_and_counts) {
    check_converted("interop_evit_nofuse.h5", "official_evit.h5", "evit_nofuse", TOK_EVIT, true);
}
