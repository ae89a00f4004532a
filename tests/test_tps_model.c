/* Properties of the whole pruning model that need no PyTorch:
 *   - at keep ratio 1.0 every pruning method's inference equals the dense model's logits;
 *   - at rho < 1 inference keeps exactly int(N * rho^(s+1)) patch tokens after stage s
 *     (EViT/eTPS: ceil(rho * n) of the n current ones), the logits are [B,K] and the final
 *     tokens [B,k,C];
 *   - the cls token is never pruned: kept indices are distinct patch indices 0..N-1, each
 *     stage's set inside the previous one; training masks are 0/1 over the N patches only,
 *     and never revive a token;
 *   - keep_override replaces the counts; impossible counts are errors;
 *   - vit_model_create rejects bad pruning configurations, naming the key;
 *   - pruning is per image (batched = one by one); evit/etps train = infer;
 *   - the loss composition on hand-made outputs, and its shape errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "src/objective/objective.h"
#include "src/model/vit.h"
#include "support/fixture.h"

static tok_config stages(tok_method method, float rho) {
    tok_config t = {.method = method, .n_stages = 3, .prune_loc = {1, 2, 3}, .squeeze_temp = 1.0f};
    tok_config_fill_rho(&t, rho);
    return t;
}

/* A small model with N = (img/patch)^2 patches and random weights spread wider than timm's
 * 0.02 (x10 on every matrix) so attention and predictor scores are far from uniform. */
static void small_model(vit_model *m, size_t img, size_t patch, const tok_config *tps, uint64_t seed) {
    vit_config c = {.img_size = img, .patch_size = patch, .in_chans = 1, .embed_dim = 16, .depth = 4,
                    .num_heads = 2, .num_classes = 5, .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    cr_assert_eq(vit_model_create(m, &c, tps), TPSC_OK, "%s", tpsc_last_error());
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    vit_model_init(m, &rng);
    for (int i = 0; i < m->params.count; i++) {
        ag_param *p = &m->params.items[i];
        if (p->t.ndim < 2) continue;
        for (size_t j = 0; j < p->numel; j++) p->t.data[j] *= 10.0f;
    }
}

/* small_model of `method` at rho 0.7, and a context for inference (no gradients). */
static ag_ctx *small_infer_model(vit_model *m, tok_method method, size_t img, size_t patch, uint64_t seed) {
    tok_config tps = stages(method, 0.7f);
    small_model(m, img, patch, &tps, seed);
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_not_null(ctx);
    ag_set_grad_enabled(ctx, false);
    return ctx;
}

static ag_tensor *random_images(ag_ctx *ctx, size_t B, const vit_config *c, uint64_t seed) {
    ag_tensor *x = ag_new4(ctx, B, c->in_chans, c->img_size, c->img_size);
    cr_assert_not_null(x);
    tpsc_rng rng = tpsc_rng_keyed(seed, 1, 2, 3);
    for (size_t i = 0; i < ag_numel(x); i++) x->data[i] = tpsc_rng_normal(&rng);
    return x;
}

static void expect_shape(const ag_tensor *t, int ndim, size_t a, size_t b, size_t c, const char *what) {
    cr_assert_not_null(t, "%s: missing", what);
    cr_assert_eq(t->ndim, ndim, "%s: %d dims, want %d", what, t->ndim, ndim);
    size_t want[3] = {a, b, c};
    for (int d = 0; d < ndim; d++)
        cr_assert_eq(t->shape[d], want[d], "%s: dim %d is %zu, want %zu", what, d, t->shape[d], want[d]);
}

/* kept_orig of every stage: patch indices in [0,N) (or -1, EViT's fused token, when allowed),
 * distinct within an image, and a subset of the previous stage's. */
static void expect_valid_kept(const vit_output *out, size_t B, size_t N, bool fused_allowed, bool nested) {
    bool *alive = calloc(B * N, sizeof *alive), *seen = calloc(N, sizeof *seen);
    cr_assert(alive && seen);
    for (size_t i = 0; i < B * N; i++) alive[i] = true;
    for (int s = 0; s < out->n_stages; s++) {
        const size_t k = out->kept_count[s];
        cr_assert_not_null(out->kept_orig[s], "stage %d: no kept indices", s);
        for (size_t b = 0; b < B; b++) {
            memset(seen, 0, N * sizeof *seen);
            int fused = 0;
            for (size_t j = 0; j < k; j++) {
                int32_t p = out->kept_orig[s][b * k + j];
                if (p == -1 && fused_allowed) {
                    /* the fused tokens of the s earlier stages are ordinary tokens by now */
                    cr_assert(++fused <= s, "stage %d image %zu: %d fused tokens kept, only %d exist", s, b, fused, s);
                    continue;
                }
                cr_assert(p >= 0 && (size_t)p < N, "stage %d image %zu rank %zu: index %d is not a patch", s, b, j, p);
                cr_assert(!seen[p], "stage %d image %zu: patch %d kept twice", s, b, p);
                seen[p] = true;
                if (nested) cr_assert(alive[b * N + p], "stage %d image %zu: patch %d was pruned earlier", s, b, p);
            }
            for (size_t p = 0; p < N; p++) alive[b * N + p] = seen[p];
        }
    }
    free(alive), free(seen);
}

/* ---- keep ratio 1.0 is the dense model ----------------------------------------------------- */

/* Reference: the dense model (TOK_NONE) with the same backbone weights. At keep 1.0 nothing is
 * removed but dtps/dynamicvit reorder the tokens by score; attention and the MLP are
 * permutation-equivariant and the head reads the cls token, so only the summation order of
 * the attention changes: tolerance 1e-5 * max|logit| (float32 reordering, depth 4). */
static void check_keep_all_is_dense(tok_method method) {
    fixture fx;
    fx_open(&fx, "vit_dtps.h5"); /* its random weights give a peaked attention, unlike timm's init */
    vit_config c;
    fx_vit_config(&fx, &c);
    tok_config none = {.method = TOK_NONE}, all = stages(method, 1.0f);
    vit_model dense, pruned;
    cr_assert_eq(vit_model_create(&dense, &c, &none), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(vit_model_create(&pruned, &c, &all), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&fx, "/model", &dense.params);
    fx_load_params(&fx, "/model", &pruned.params);
    size_t n, shape[4];
    int nd;
    float *images = fx_read_f32(&fx, "/input/images", &n, shape, &nd);

    ag_ctx *ctx = ag_ctx_create(0);
    ag_set_grad_enabled(ctx, false);
    ag_tensor *x = ag_wrap(ctx, images, NULL, 4, shape, false);
    vit_forward_opts opts = {.mode = VIT_INFER};
    vit_output od, op;
    ag_tensor *ld = vit_forward(ctx, &dense, x, &opts, &od);
    ag_tensor *lp = vit_forward(ctx, &pruned, x, &opts, &op);
    cr_assert_not_null(ld, "%s", tpsc_last_error());
    cr_assert_not_null(lp, "%s", tpsc_last_error());
    const size_t B = shape[0], N = vit_num_patches(&c);
    for (int s = 0; s < op.n_stages; s++) cr_assert_eq(op.kept_count[s], N, "stage %d keeps %zu of %zu", s, op.kept_count[s], N);
    expect_shape(lp, 2, B, c.num_classes, 0, "logits");
    double scale = fx_max_abs(ld->data, ag_numel(ld)), d = fx_max_diff(lp->data, ld->data, ag_numel(ld));
    cr_expect(scale > 1.0, "degenerate reference: logits span only %g", scale);
    cr_expect(d <= 1e-5 * scale, "%s at keep 1.0: logits differ from dense by %g (scale %g)", tok_method_name(method), d,
              scale);
    expect_valid_kept(&op, B, N, false, true);
    ag_ctx_free(ctx);
    vit_model_free(&dense);
    vit_model_free(&pruned);
    free(images);
    fx_close(&fx);
}

Test(tps_model, dtps_keep_all_equals_dense) { check_keep_all_is_dense(TOK_DTPS); }
Test(tps_model, dynamicvit_keep_all_equals_dense) { check_keep_all_is_dense(TOK_DYNAMICVIT); }
Test(tps_model, evit_keep_all_equals_dense) { check_keep_all_is_dense(TOK_EVIT); }
Test(tps_model, etps_keep_all_equals_dense) { check_keep_all_is_dense(TOK_ETPS); }

/* Inference of m on B images from seed, with keep_override (NULL: the model's own counts):
 * logits [B,K]; every stage keeps exactly want[s] tokens (the last stage's output also holds
 * EViT's fused token when `fused`), and the kept indices are valid and nested. out receives
 * the output; returns the logits. */
static ag_tensor *expect_infer_kept(ag_ctx *ctx, vit_model *m, size_t B, const size_t *override, const size_t want[3],
                                    uint64_t seed, bool fused, vit_output *out) {
    const size_t N = vit_num_patches(&m->cfg);
    vit_forward_opts opts = {.mode = VIT_INFER, .keep_override = override};
    ag_tensor *logits = vit_forward(ctx, m, random_images(ctx, B, &m->cfg, seed), &opts, out);
    cr_assert_not_null(logits, "%s", tpsc_last_error());
    expect_shape(logits, 2, B, m->cfg.num_classes, 0, "logits");
    for (int s = 0; s < 3; s++)
        cr_expect_eq(out->kept_count[s], want[s], "%s N %zu stage %d: kept %zu, want %zu", tok_method_name(m->tps.method), N,
                     s, out->kept_count[s], want[s]);
    expect_shape(out->tokens, 3, B, want[2] + fused, m->cfg.embed_dim, fused ? "final tokens (kept + fused)" : "final tokens");
    expect_valid_kept(out, B, N, fused, true);
    return logits;
}

/* ---- token counts and shapes at rho < 1 --------------------------------------------------- */

/* want: int(N * 0.7 ** (s+1)) in Python; N = 64 -> 44, 31, 21; N = 196 -> 137, 96, 67. */
static void check_predictor_counts(tok_method method, size_t img, size_t patch, const size_t want[3]) {
    vit_model m;
    ag_ctx *ctx = small_infer_model(&m, method, img, patch, 11);
    const size_t N = vit_num_patches(&m.cfg);
    for (int s = 0; s < 3; s++) cr_assert_eq(tok_keep_count(&m.tps, s, N), want[s], "tok_keep_count(stage %d, N %zu)", s, N);
    vit_output out;
    ag_tensor *logits = expect_infer_kept(ctx, &m, 2, NULL, want, 5, false, &out);
    cr_assert_eq(out.n_stages, 3);
    for (size_t i = 0; i < ag_numel(logits); i++) cr_assert(isfinite(logits->data[i]), "logit %zu is %g", i, (double)logits->data[i]);
    ag_ctx_free(ctx);
    vit_model_free(&m);
}

Test(tps_model, dtps_counts_64_patches) { check_predictor_counts(TOK_DTPS, 32, 4, (size_t[]){44, 31, 21}); }
Test(tps_model, dtps_counts_196_patches) { check_predictor_counts(TOK_DTPS, 28, 2, (size_t[]){137, 96, 67}); }
Test(tps_model, dynamicvit_counts_196_patches) { check_predictor_counts(TOK_DYNAMICVIT, 28, 2, (size_t[]){137, 96, 67}); }

/* EViT keeps ceil(0.7 * n) of the n current spatial tokens; its fused token counts among the
 * next stage's n, eTPS has none: Python math.ceil(0.7 * 64) = 45, then evit
 * ceil(0.7 * 46) = 33, ceil(0.7 * 34) = 24; etps ceil(0.7 * 45) = 32, ceil(0.7 * 32) = 23. */
static void check_attention_counts(tok_method method, const size_t want[3]) {
    vit_model m;
    ag_ctx *ctx = small_infer_model(&m, method, 32, 4, 12);
    vit_output out;
    expect_infer_kept(ctx, &m, 2, NULL, want, 6, method == TOK_EVIT, &out);
    ag_ctx_free(ctx);
    vit_model_free(&m);
}

Test(tps_model, evit_counts_and_fused_token) { check_attention_counts(TOK_EVIT, (size_t[]){45, 33, 24}); }
Test(tps_model, etps_counts) { check_attention_counts(TOK_ETPS, (size_t[]){45, 32, 23}); }

/* ---- training masks ---------------------------------------------------------------------- */

/* Masks are [B,N] over the patches only (the cls token has no entry, so it cannot be pruned),
 * exactly 0 or 1, never revive a token, and the sequence keeps all 1+N tokens. Drawn noise:
 * the same rng seed gives the same masks. */
Test(tps_model, training_masks_are_nested_and_reproducible) {
    tok_config tps = stages(TOK_DTPS, 0.7f);
    vit_model m;
    small_model(&m, 32, 4, &tps, 13);
    const size_t B = 2, N = 64;
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = random_images(ctx, B, &m.cfg, 7);
    vit_output out[2];
    for (int run = 0; run < 2; run++) {
        tpsc_rng rng;
        tpsc_rng_seed(&rng, 99);
        vit_forward_opts opts = {.mode = VIT_TRAIN, .rng = &rng};
        cr_assert_not_null(vit_forward(ctx, &m, x, &opts, &out[run]), "%s", tpsc_last_error());
        expect_shape(out[run].tokens, 3, B, N, m.cfg.embed_dim, "training tokens");
    }
    for (int s = 0; s < 3; s++) {
        ag_tensor *k = out[0].keep[s];
        expect_shape(k, 2, B, N, 0, "keep mask");
        size_t kept = 0;
        for (size_t i = 0; i < B * N; i++) {
            float v = k->data[i];
            cr_assert(v == 0.0f || v == 1.0f, "stage %d: mask value %g", s, (double)v);
            if (s > 0) cr_assert(v <= out[0].keep[s - 1]->data[i], "stage %d revives token %zu", s, i);
            cr_assert_eq(v, out[1].keep[s]->data[i], "stage %d: the same seed gave another mask at %zu", s, i);
            kept += v == 1.0f;
        }
        /* with random predictors about half the live tokens survive each stage: not all, not none */
        cr_expect(kept > 0 && kept < B * N, "stage %d keeps %zu of %zu", s, kept, B * N);
    }
    ag_ctx_free(ctx);
    vit_model_free(&m);
}

/* ---- keep_override ----------------------------------------------------------------------- */

Test(tps_model, keep_override_sets_the_counts) {
    vit_model m;
    ag_ctx *ctx = small_infer_model(&m, TOK_DTPS, 32, 4, 14);
    const size_t B = 2, want[3] = {50, 20, 5};
    vit_output out;
    expect_infer_kept(ctx, &m, B, want, want, 8, false, &out);

    /* more tokens than are left (20 after 10) and zero are errors, not silent clamps */
    const size_t grow[3] = {10, 20, 5}, zero[3] = {50, 0, 5};
    const size_t *bad[2] = {grow, zero};
    for (int i = 0; i < 2; i++) {
        ag_ctx_reset(ctx);
        ag_set_grad_enabled(ctx, false);
        ag_tensor *x = random_images(ctx, B, &m.cfg, 8);
        vit_forward_opts o = {.mode = VIT_INFER, .keep_override = bad[i]};
        cr_expect_null(vit_forward(ctx, &m, x, &o, &out), "override %d accepted", i);
        cr_expect_neq(ag_ctx_status(ctx), TPSC_OK);
        cr_expect(strstr(tpsc_last_error(), "stage 1") != NULL, "error names no stage: %s", tpsc_last_error());
    }
    ag_ctx_free(ctx);
    vit_model_free(&m);
}

Test(tps_model, keep_override_for_evit) {
    vit_model m;
    ag_ctx *ctx = small_infer_model(&m, TOK_EVIT, 32, 4, 15);
    const size_t want[3] = {40, 20, 10};
    vit_output out;
    expect_infer_kept(ctx, &m, 2, want, want, 9, true, &out);
    ag_ctx_free(ctx);
    vit_model_free(&m);
}

/* ---- configuration errors ----------------------------------------------------------------- */

static void expect_rejected(const tok_config *tps, const char *key) {
    vit_config c = {.img_size = 16, .patch_size = 4, .in_chans = 1, .embed_dim = 8, .depth = 4, .num_heads = 2,
                    .num_classes = 3, .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    vit_model m;
    tpsc_clear_error();
    tpsc_status st = vit_model_create(&m, &c, tps);
    cr_expect_eq(st, TPSC_ERR_CONFIG, "accepted a bad %s (status %s)", key, tpsc_status_name(st));
    cr_expect(strstr(tpsc_last_error(), key) != NULL, "the error does not name %s: %s", key, tpsc_last_error());
    vit_model_free(&m);
}

Test(tps_model, bad_configs_are_rejected) {
    tok_config t = stages(TOK_DTPS, 0.7f);
    t.prune_loc[2] = 4; /* depth 4: blocks 0..3 */
    expect_rejected(&t, "prune_loc");
    t = stages(TOK_DTPS, 0.7f);
    t.prune_loc[0] = 0; /* the predictor needs a block before it */
    expect_rejected(&t, "prune_loc");
    t = stages(TOK_EVIT, 0.7f);
    t.prune_loc[1] = 1; /* not increasing */
    expect_rejected(&t, "prune_loc");
    t = stages(TOK_DTPS, 0.7f);
    t.prune_loc[0] = -1;
    expect_rejected(&t, "prune_loc");

    const float bad_frac[] = {0.0f, -0.5f, 1.5f, NAN};
    for (size_t i = 0; i < sizeof bad_frac / sizeof *bad_frac; i++) {
        t = stages(TOK_DTPS, 0.7f);
        t.keep_frac[1] = bad_frac[i];
        expect_rejected(&t, "keep_ratio");
    }
    t = stages(TOK_DTPS, 0.5f);
    t.keep_frac[2] = 0.9f; /* more than the stage before */
    expect_rejected(&t, "keep_ratio");
    t = stages(TOK_DTPS, 0.7f);
    t.n_stages = 0;
    expect_rejected(&t, "prune_loc");
    t = stages(TOK_DTPS, 0.7f);
    t.method = (tok_method)9;
    expect_rejected(&t, "method");
    t = stages(TOK_DTPS, 0.7f);
    t.squeeze_temp = 0.0f;
    expect_rejected(&t, "squeeze_temp");

    cr_expect_eq(tok_method_from_name("tps"), -1);
    cr_expect_eq(tok_method_from_name("dynamic_vit"), -1);
    cr_expect_eq(tok_method_from_name("etps"), TOK_ETPS);

    /* the boundary values are fine: keep 1.0, the last block */
    t = stages(TOK_DTPS, 1.0f);
    vit_model m;
    vit_config c = {.img_size = 16, .patch_size = 4, .in_chans = 1, .embed_dim = 8, .depth = 4, .num_heads = 2,
                    .num_classes = 3, .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    cr_expect_eq(vit_model_create(&m, &c, &t), TPSC_OK, "%s", tpsc_last_error());
    vit_model_free(&m);
}

/* Predictor methods carry one score predictor per stage; the others none. */
Test(tps_model, predictor_parameters_only_for_predictor_methods) {
    const tok_method methods[] = {TOK_NONE, TOK_DYNAMICVIT, TOK_DTPS, TOK_EVIT, TOK_ETPS};
    size_t backbone = 0;
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        tok_config t = methods[i] == TOK_NONE ? (tok_config){.method = TOK_NONE} : stages(methods[i], 0.7f);
        vit_model m;
        small_model(&m, 16, 4, &t, 1);
        size_t all = vit_model_num_params(&m, false), bb = vit_model_num_params(&m, true);
        if (i == 0) backbone = bb;
        cr_expect_eq(bb, backbone, "%s: backbone differs", tok_method_name(methods[i]));
        /* PredictorLG with C = 16: LN 2C, C*C + C, C*C/2 + C/2, C/2*C/4 + C/4, C/4*2 + 2 */
        const size_t C = 16, per_stage = 2 * C + (C * C + C) + (C * C / 2 + C / 2) + (C / 2 * C / 4 + C / 4) + (C / 4 * 2 + 2);
        size_t want = tok_method_has_predictor(methods[i]) ? 3 * per_stage : 0;
        cr_expect_eq(all - bb, want, "%s: %zu predictor parameters, want %zu", tok_method_name(methods[i]), all - bb, want);
        vit_model_free(&m);
    }
}

/* ---- per-image independence ------------------------------------------------------------ */

/* Pruning decides per image: running image b alone must give its row of the batched logits
 * and the same kept indices (catches index offsets across the batch in gathers and in the
 * kept-index bookkeeping). Reference: the batched run; tolerance 1e-5 * max|logit| (sgemm may
 * block a 1-image batch differently); indices exact. */
static void check_batch_independence(tok_method method, vit_mode mode) {
    vit_model m;
    ag_ctx *ctx = small_infer_model(&m, method, 32, 4, 16);
    const size_t B = 3, N = 64, K = m.cfg.num_classes, pix = m.cfg.in_chans * 32 * 32;
    ag_tensor *x = random_images(ctx, B, &m.cfg, 10);
    float *u[3];
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 77);
    for (int s = 0; s < 3; s++) {
        u[s] = ag_alloc(ctx, B * N * 2 * sizeof(float));
        cr_assert_not_null(u[s]);
        for (size_t i = 0; i < B * N * 2; i++) u[s][i] = tpsc_rng_uniform_open(&rng);
    }
    vit_forward_opts opts = {.mode = mode, .gumbel_u = {u[0], u[1], u[2]}};
    vit_output all;
    ag_tensor *logits = vit_forward(ctx, &m, x, &opts, &all);
    cr_assert_not_null(logits, "%s", tpsc_last_error());
    const double scale = fx_max_abs(logits->data, B * K);
    for (size_t b = 0; b < B; b++) {
        ag_tensor *one = ag_new4(ctx, 1, m.cfg.in_chans, 32, 32);
        cr_assert_not_null(one);
        memcpy(one->data, x->data + b * pix, pix * sizeof(float));
        vit_forward_opts o = {.mode = mode, .gumbel_u = {u[0] + b * N * 2, u[1] + b * N * 2, u[2] + b * N * 2}};
        vit_output single;
        ag_tensor *l1 = vit_forward(ctx, &m, one, &o, &single);
        cr_assert_not_null(l1, "%s", tpsc_last_error());
        double d = fx_max_diff(l1->data, logits->data + b * K, K);
        cr_expect(d <= 1e-5 * scale, "%s image %zu alone: logits differ by %g (scale %g)", tok_method_name(method), b, d,
                  scale);
        for (int s = 0; s < all.n_stages; s++) {
            if (mode == VIT_TRAIN) {
                for (size_t i = 0; i < N; i++)
                    cr_assert_eq(single.keep[s]->data[i], all.keep[s]->data[b * N + i], "stage %d image %zu patch %zu", s, b, i);
                continue;
            }
            const size_t k = all.kept_count[s];
            cr_assert_eq(single.kept_count[s], k);
            for (size_t j = 0; j < k; j++)
                cr_assert_eq(single.kept_orig[s][j], all.kept_orig[s][b * k + j], "stage %d image %zu rank %zu", s, b, j);
        }
    }
    ag_ctx_free(ctx);
    vit_model_free(&m);
}

Test(tps_model, dtps_infer_is_per_image) { check_batch_independence(TOK_DTPS, VIT_INFER); }
Test(tps_model, dtps_train_is_per_image) { check_batch_independence(TOK_DTPS, VIT_TRAIN); }
Test(tps_model, evit_infer_is_per_image) { check_batch_independence(TOK_EVIT, VIT_INFER); }
Test(tps_model, etps_infer_is_per_image) { check_batch_independence(TOK_ETPS, VIT_INFER); }

/* EViT and eTPS prune for real in training too, and nothing is random: VIT_TRAIN and VIT_INFER
 * are the same computation. Reference: the VIT_INFER logits; tolerance 0 (same ops, same order). */
Test(tps_model, evit_train_equals_infer) {
    const tok_method methods[2] = {TOK_EVIT, TOK_ETPS};
    for (int i = 0; i < 2; i++) {
        tok_config tps = stages(methods[i], 0.7f);
        vit_model m;
        small_model(&m, 32, 4, &tps, 17);
        ag_ctx *ctx = ag_ctx_create(0);
        ag_tensor *x = random_images(ctx, 2, &m.cfg, 11);
        vit_output tr, inf;
        ag_tensor *lt = vit_forward(ctx, &m, x, &(vit_forward_opts){.mode = VIT_TRAIN}, &tr);
        ag_tensor *li = vit_forward(ctx, &m, x, &(vit_forward_opts){.mode = VIT_INFER}, &inf);
        cr_assert(lt && li, "%s", tpsc_last_error());
        cr_expect_eq(fx_max_diff(lt->data, li->data, ag_numel(li)), 0.0, "%s: train and infer differ",
                     tok_method_name(methods[i]));
        expect_shape(tr.tokens, 3, 2, inf.tokens->shape[1], m.cfg.embed_dim, "training tokens");
        ag_ctx_free(ctx);
        vit_model_free(&m);
    }
}

/* ---- the loss composition (src/objective/objective.c) on hand-made outputs ------------------- */

typedef struct toy_outputs {
    vit_output st, te;
    ag_tensor *targets;
} toy_outputs;

/* B 2, N 4, C 3, K 5, two stages. Student logits equal the teacher's and so do the tokens, so
 * both KL terms are exactly 0; stage 0 keeps [1,1,0,0] and [1,1,1,1], stage 1 [1,0,0,0] and
 * [1,1,0,0]; uniform logits give CE = log 5 for any target. */
static void toy(ag_ctx *ctx, toy_outputs *o) {
    const size_t B = 2, N = 4, C = 3, K = 5;
    memset(o, 0, sizeof *o);
    o->st.logits = ag_zeros(ctx, 2, (size_t[]){B, K});
    o->te.logits = ag_zeros(ctx, 2, (size_t[]){B, K});
    o->st.tokens = ag_new3(ctx, B, N, C);
    o->te.tokens = ag_new3(ctx, B, N, C);
    o->targets = ag_zeros(ctx, 2, (size_t[]){B, K});
    const float k0[8] = {1, 1, 0, 0, 1, 1, 1, 1}, k1[8] = {1, 0, 0, 0, 1, 1, 0, 0};
    o->st.keep[0] = ag_new2(ctx, B, N);
    o->st.keep[1] = ag_new2(ctx, B, N);
    cr_assert(o->st.logits && o->te.logits && o->st.tokens && o->te.tokens && o->targets && o->st.keep[1]);
    memcpy(o->st.keep[0]->data, k0, sizeof k0);
    memcpy(o->st.keep[1]->data, k1, sizeof k1);
    o->st.n_stages = 2;
    for (size_t i = 0; i < B * N * C; i++) o->st.tokens->data[i] = o->te.tokens->data[i] = (float)(i % 7) * 0.3f;
    for (size_t b = 0; b < B; b++) o->targets->data[b * K + b] = 1.0f;
}

static tok_config toy_tps(void) {
    return (tok_config){.method = TOK_DTPS, .n_stages = 2, .prune_loc = {1, 2}, .keep_frac = {0.5f, 0.25f},
                        .squeeze_temp = 1.0f};
}

/* Reference by hand: ratio = mean_s mean_b (mean_i keep - frac_s)^2
 *   = ((0.5-0.5)^2 + (1-0.5)^2)/2 = 0.125 for stage 0, ((0.25-0.25)^2 + (0.5-0.25)^2)/2 = 0.03125
 *   for stage 1, mean 0.078125; CE = log 5; KL terms 0; total = 1*log 5 + 2*0.078125.
 * Tolerance 1e-6 relative (float32 of a few operations). */
Test(tps_model, loss_parts_by_hand) {
    ag_ctx *ctx = ag_ctx_create(0);
    toy_outputs o;
    toy(ctx, &o);
    tok_config tps = toy_tps();
    objective_config lc = {.clf_weight = 1, .ratio_weight = 2, .distill_weight = 0.5f,
                          .distill_token = OBJ_DISTILL_TOKEN_KL, .distill_cls = true};
    objective_parts p;
    cr_assert_eq(objective_compute(ctx, &tps, &lc, &o.st, o.targets, &o.te, &p), TPSC_OK, "%s", tpsc_last_error());
    cr_assert(p.ce && p.ratio && p.cls_kl && p.token_kl && p.total);
    cr_expect_float_eq(p.ce->data[0], logf(5.0f), 1e-6f * logf(5.0f), "ce %g", (double)p.ce->data[0]);
    cr_expect_float_eq(p.ratio->data[0], 0.078125f, 1e-6f * 0.078125f, "ratio %g", (double)p.ratio->data[0]);
    cr_expect(fabsf(p.cls_kl->data[0]) <= 1e-7f, "cls_kl %g", (double)p.cls_kl->data[0]);
    cr_expect(fabsf(p.token_kl->data[0]) <= 1e-7f, "token_kl %g", (double)p.token_kl->data[0]);
    const float want = logf(5.0f) + 2.0f * 0.078125f;
    cr_expect_float_eq(p.total->data[0], want, 1e-6f * want, "total %g, want %g", (double)p.total->data[0], (double)want);
    ag_ctx_free(ctx);
}

/* A teacher whose tokens do not line up with the student's (here one token fewer, as a pruned
 * teacher would give) is an error naming the shapes, not a silently missing term. */
Test(tps_model, loss_rejects_mismatched_teacher_tokens) {
    ag_ctx *ctx = ag_ctx_create(0);
    toy_outputs o;
    toy(ctx, &o);
    o.te.tokens = ag_zeros(ctx, 3, (size_t[]){2, 3, 3});
    tok_config tps = toy_tps();
    objective_config lc = {.clf_weight = 1, .ratio_weight = 2, .distill_weight = 0.5f,
                          .distill_token = OBJ_DISTILL_TOKEN_KL, .distill_cls = true};
    objective_parts p;
    cr_expect_eq(objective_compute(ctx, &tps, &lc, &o.st, o.targets, &o.te, &p), TPSC_ERR_SHAPE, "%s",
                 tpsc_last_error());
    cr_expect_null(p.total, "a total without the token term was returned");
    cr_expect(strstr(tpsc_last_error(), "[2, 3, 3]") != NULL, "error names no shape: %s", tpsc_last_error());

    ag_ctx_reset(ctx);
    toy(ctx, &o);
    o.te.tokens = NULL;
    cr_expect_eq(objective_compute(ctx, &tps, &lc, &o.st, o.targets, &o.te, &p), TPSC_ERR_ARG, "%s", tpsc_last_error());
    cr_expect_null(p.total);
    ag_ctx_free(ctx);
}
