/* Real token removal in training (tps.train_removal, src/tokens/stage_removed.c) against the
 * masked step, on a tiny dTPS / DynamicViT model with topk masks:
 *   - reference: the masked forward with stop_pruned_grad (a pruned token's keep entry takes no
 *     gradient from anything after its stage), the same seed, so the same noise and top-k;
 *   - the same masks, the same loss (CE + ratio + cls and token distillation against a dense
 *     teacher: the official objective) and the same gradient for every parameter;
 *   - against the plain masked step: the same loss and the same gradients of the head and of
 *     the blocks after the last stage, while the predictors' gradients differ (the masked path
 *     also sends a pruned token's keep entry the gradient of the later blocks' attention
 *     policy, which depends on that token's keys and values there: docs/tps.md).
 *
 * Tolerance: relative, per tensor, ||g_removed - g_ref|| / ||g_ref|| <= 2e-5 (and the loss
 * 2e-6). The two steps are the same function up to two things: float rounding of sums taken
 * over different row counts and in another order (weight gradients sum over B*n rows instead
 * of B*N; the predictor's mean over the present tokens), a few ulp of float32 (6e-8) grown
 * through 4 blocks; and the DynamicViT policy softmax's eps = 1e-6 terms, eps/N on every masked
 * key and in the denominator, which removal does not carry: relative 1e-6 of an attention row
 * whose kept weights sum to about 1. Measured: see the cr_log_info lines. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/ops.h"
#include "src/objective/objective.h"
#include "src/model/vit.h"

#define TOL_GRAD 2e-5
#define TOL_LOSS 2e-6

enum { B = 4, IMG = 32, PATCH = 4, N = 64 };

static void make_model(vit_model *m, tok_method method, bool removal, uint64_t seed) {
    tok_config t = {.method = method, .n_stages = 3, .prune_loc = {1, 2, 3}, .squeeze_temp = 1.0f,
                    .train_mask = TOK_MASK_TOPK, .train_removal = removal};
    tok_config_fill_rho(&t, 0.7f);
    vit_config c = {.img_size = IMG, .patch_size = PATCH, .in_chans = 1, .embed_dim = 16, .depth = 5,
                    .num_heads = 2, .num_classes = 5, .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    cr_assert_eq(vit_model_create(m, &c, method == TOK_NONE ? &(tok_config){.method = TOK_NONE} : &t), TPSC_OK, "%s",
                 tpsc_last_error());
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    vit_model_init(m, &rng);
    /* timm's 0.02 x 5 on every matrix: scores away from uniform, attention logits still O(1) */
    for (int i = 0; i < m->params.count; i++) {
        ag_param *p = &m->params.items[i];
        if (p->t.ndim < 2) continue;
        for (size_t j = 0; j < p->numel; j++) p->t.data[j] *= 5.0f;
    }
}

typedef struct step_result {
    double loss;
    float *grad;       /* every parameter gradient, concatenated in parameter order */
    float keep[3][B * N];
    bool removed;
} step_result;

/* One training step (forward, objective, backward) of student with a fixed teacher. */
static void run_step(vit_model *st, vit_model *te, const float *img, bool stop, step_result *r) {
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_not_null(ctx);
    ag_tensor *x = ag_wrap(ctx, (float *)img, NULL, 4, (size_t[]){B, 1, IMG, IMG}, false);
    vit_output to, so;
    ag_set_grad_enabled(ctx, false);
    cr_assert_not_null(vit_forward(ctx, te, x, &(vit_forward_opts){.mode = VIT_TRAIN}, &to), "%s", tpsc_last_error());
    ag_set_grad_enabled(ctx, true);
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 1234);
    vit_forward_opts fo = {.mode = VIT_TRAIN, .rng = &rng, .stop_pruned_grad = stop};
    cr_assert_not_null(vit_forward(ctx, st, x, &fo, &so), "%s", tpsc_last_error());
    ag_tensor *targets = ag_zeros(ctx, 2, (size_t[]){B, 5});
    for (size_t b = 0; b < B; b++) targets->data[b * 5 + (b * 3) % 5] = 1.0f;
    objective_config oc = {.clf_weight = 1.0f, .ratio_weight = 2.0f, .distill_weight = 0.5f, .distill_cls = true,
                           .distill_token = OBJ_DISTILL_TOKEN_KL};
    objective_parts parts;
    cr_assert_eq(objective_compute(ctx, &st->tps, &oc, &so, targets, &to, &parts), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_not_null(parts.token_kl, "the token term did not run");
    r->loss = parts.total->data[0];
    r->removed = so.removed;
    /* the removed step really ran the last blocks on the k_2 = int(64 * 0.343) = 21 kept tokens */
    if (so.removed) cr_assert_eq(so.kept_count[2], 21);
    for (int s = 0; s < 3; s++) memcpy(r->keep[s], so.keep[s]->data, sizeof r->keep[s]);
    ag_params_zero_grad(&st->params);
    cr_assert_eq(ag_backward(ctx, parts.total), TPSC_OK, "%s", tpsc_last_error());
    size_t total = 0;
    for (int i = 0; i < st->params.count; i++) total += st->params.items[i].numel;
    r->grad = malloc(total * sizeof *r->grad);
    cr_assert_not_null(r->grad);
    for (int i = 0, o = 0; i < st->params.count; o += (int)st->params.items[i].numel, i++)
        memcpy(r->grad + o, st->params.items[i].t.grad, st->params.items[i].numel * sizeof(float));
    ag_ctx_free(ctx);
}

static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

static bool is_predictor(const char *name) { return !strncmp(name, "score_predictor.", 16); }
/* the head, the final norm and the blocks after the last stage (prune_loc 3, depth 5) */
static bool after_last_stage(const char *name) {
    return !strncmp(name, "head.", 5) || !strncmp(name, "norm.", 5) || !strncmp(name, "blocks.3.", 9) ||
           !strncmp(name, "blocks.4.", 9);
}

static void check(tok_method method) {
    static float img[B * IMG * IMG];
    tpsc_rng ir = tpsc_rng_keyed(5, 1, 2, 3);
    for (size_t i = 0; i < sizeof img / sizeof *img; i++) img[i] = tpsc_rng_normal(&ir);
    vit_model masked, removed, teacher;
    make_model(&masked, method, false, 21);
    make_model(&removed, method, true, 21);
    make_model(&teacher, TOK_NONE, false, 22);
    cr_assert_eq(masked.params.count, removed.params.count);
    step_result ref, plain, rm;
    run_step(&masked, &teacher, img, true, &ref);
    run_step(&masked, &teacher, img, false, &plain);
    run_step(&removed, &teacher, img, false, &rm);
    const char *mn = tok_method_name(method);
    cr_assert(rm.removed && !ref.removed && !plain.removed);
    for (int s = 0; s < 3; s++)
        cr_assert(!memcmp(ref.keep[s], rm.keep[s], sizeof ref.keep[s]), "%s stage %d: the masks differ", mn, s);
    const double dl = fabs(rm.loss - ref.loss) / fabs(ref.loss), dlp = fabs(rm.loss - plain.loss) / fabs(plain.loss);
    cr_expect(dl <= TOL_LOSS, "%s: loss removed %.9g, masked %.9g (%.3g relative)", mn, rm.loss, ref.loss, dl);
    cr_expect(dlp <= TOL_LOSS, "%s: loss removed %.9g, plain masked %.9g (%.3g relative)", mn, rm.loss, plain.loss, dlp);
    double worst = 0, worst_plain_pred = 0;
    for (int i = 0, o = 0; i < removed.params.count; o += (int)removed.params.items[i].numel, i++) {
        const ag_param *p = &removed.params.items[i];
        const double d = rel_diff(rm.grad + o, ref.grad + o, p->numel);
        cr_expect(d <= TOL_GRAD, "%s: gradient of %s differs by %.3g relative", mn, p->name, d);
        worst = fmax(worst, d);
        const double dp = rel_diff(rm.grad + o, plain.grad + o, p->numel);
        if (after_last_stage(p->name))
            cr_expect(dp <= TOL_GRAD, "%s: gradient of %s differs from the plain masked one by %.3g", mn, p->name, dp);
        if (is_predictor(p->name)) worst_plain_pred = fmax(worst_plain_pred, dp);
    }
    /* the predictor's gradient is where removal and the plain masked path part */
    cr_expect(worst_plain_pred > 100 * TOL_GRAD, "%s: predictor gradients equal the plain masked ones (%.3g)", mn,
              worst_plain_pred);
    cr_log_info("%s: loss %.9g (masked %.9g) %.3g relative, worst parameter gradient %.3g relative; plain masked predictor gradients "
                "differ by up to %.3g", mn, rm.loss, ref.loss, dl, worst, worst_plain_pred);
    free(ref.grad);
    free(plain.grad);
    free(rm.grad);
    vit_model_free(&masked);
    vit_model_free(&removed);
    vit_model_free(&teacher);
}

Test(tps_removal, dtps_topk_removed_equals_masked) { check(TOK_DTPS); }
Test(tps_removal, dynamicvit_topk_removed_equals_masked) { check(TOK_DYNAMICVIT); }

Test(tps_removal, gumbel_masks_refuse_removal) {
    tok_config t = {.method = TOK_DTPS, .n_stages = 1, .prune_loc = {1}, .keep_frac = {0.7f}, .squeeze_temp = 1.0f,
                    .train_mask = TOK_MASK_GUMBEL, .train_removal = true};
    cr_assert_eq(tok_config_validate(&t, 4), TPSC_ERR_CONFIG);
    cr_assert(strstr(tpsc_last_error(), "tps.train_removal") != NULL, "message: %s", tpsc_last_error());
}

/* The guide loss (ours) with removal: at stage 0 every token is present, later only the tokens
 * kept by the stage before; the term is the mean over stages of the mean cross-entropy over
 * the present rows. Reference: that formula in double from the outputs, with the teacher's
 * top-k_s from tok_sort_desc; tolerance 1e-5 relative (float log-probs, a few hundred terms). */
Test(tps_removal, guide_loss_covers_the_present_tokens) {
    static float img[B * IMG * IMG];
    tpsc_rng ir = tpsc_rng_keyed(6, 1, 2, 3);
    for (size_t i = 0; i < sizeof img / sizeof *img; i++) img[i] = tpsc_rng_normal(&ir);
    vit_model st, te;
    make_model(&st, TOK_DTPS, true, 31);
    make_model(&te, TOK_NONE, false, 32);
    /* predictors far from 50/50, so that rows of absent tokens (zeros, i.e. 50/50) would show */
    for (int i = 0; i < st.params.count; i++)
        if (strstr(st.params.items[i].name, "out_conv.4.weight"))
            for (size_t j = 0; j < st.params.items[i].numel; j++) st.params.items[i].t.data[j] *= 50.0f;
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = ag_wrap(ctx, img, NULL, 4, (size_t[]){B, 1, IMG, IMG}, false);
    vit_output to, so;
    ag_set_grad_enabled(ctx, false);
    vit_forward_opts tfo = {.mode = VIT_TRAIN, .probe_blocks = {1, 2, 3}, .n_probe = 3};
    cr_assert_not_null(vit_forward(ctx, &te, x, &tfo, &to), "%s", tpsc_last_error());
    ag_set_grad_enabled(ctx, true);
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 77);
    cr_assert_not_null(vit_forward(ctx, &st, x, &(vit_forward_opts){.mode = VIT_TRAIN, .rng = &rng}, &so), "%s",
                       tpsc_last_error());
    ag_tensor *targets = ag_zeros(ctx, 2, (size_t[]){B, 5});
    objective_config oc = {.clf_weight = 1.0f, .guide_weight = 1.0f};
    objective_parts parts;
    cr_assert_eq(objective_compute(ctx, &st.tps, &oc, &so, targets, &to, &parts), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_not_null(parts.guide);
    double want = 0, want_all = 0;
    int32_t order[B * N];
    for (int s = 0; s < 3; s++) {
        cr_assert(tok_sort_desc(ctx, to.cls_attn[s]->data, B, N, order));
        const size_t k = tok_keep_count(&st.tps, s, N);
        double sum = 0, sum_all = 0;
        size_t rows = 0;
        for (size_t b = 0; b < B; b++)
            for (size_t r = 0; r < N; r++) {
                const size_t i = b * N + (size_t)order[b * N + r];
                const double l0 = so.score[s]->data[2 * i], l1 = so.score[s]->data[2 * i + 1];
                const double lse = fmax(l0, l1) + log(exp(l0 - fmax(l0, l1)) + exp(l1 - fmax(l0, l1)));
                sum_all -= (r < k ? l0 : l1) - lse;
                if (s > 0 && so.keep[s - 1]->data[i] != 1.0f) continue;
                sum -= (r < k ? l0 : l1) - lse;
                rows++;
            }
        cr_assert_eq(rows, s == 0 ? (size_t)(B * N) : B * so.kept_count[s - 1]);
        want += sum / (double)rows / 3.0;
        want_all += sum_all / (double)(B * N) / 3.0;
    }
    /* the test tells the two apart: counting the absent rows would move the term by far more */
    cr_assert(fabs(want_all - want) > 100 * 1e-5 * want, "present-only %.8g vs all rows %.8g", want, want_all);
    cr_expect(fabs(parts.guide->data[0] - want) <= 1e-5 * want, "guide %.8g, want %.8g", parts.guide->data[0], want);
    cr_assert_eq(ag_backward(ctx, parts.total), TPSC_OK, "%s", tpsc_last_error());
    ag_ctx_free(ctx);
    vit_model_free(&st);
    vit_model_free(&te);
}
