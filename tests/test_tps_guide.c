/* The predictor guide (loss.guide_weight, src/objective/objective.h): the teacher's cls attention
 * probed at the pruning blocks, the top-k targets built from it, and the cross-entropy and
 * its gradient against the predictor's log-probs.
 *
 * References: the loss and gradient are checked against the closed form
 *   L = -1/(B*N) sum_{b,i} [y_bi log p_bi + (1 - y_bi) log(1 - p_bi)],  dL/dlogp = (p - t)/(B*N)
 * written out here in double (tolerance 1e-6 relative, float rounding of a few terms); the
 * probed attention is checked against EViT's own choice, which ranks by the same quantity. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "autograd/ops.h"
#include "src/objective/objective.h"
#include "src/model/vit.h"

#define B 2
#define N 5

/* One stage, keep 0.6 of N = 5: k = 3. */
static tok_config one_stage(void) {
    tok_config t = {.method = TOK_DTPS, .n_stages = 1, .prune_loc = {2}, .squeeze_temp = 1.0f};
    tok_config_fill_rho(&t, 0.6f);
    return t;
}

Test(tps_guide, loss_and_gradient_match_the_closed_form) {
    ag_ctx *ctx = ag_ctx_create(1 << 20);
    tok_config tps = one_stage();
    cr_assert_eq(tok_keep_count(&tps, 0, N), 3);
    /* keep probabilities per token, stored as log-probs (keep, drop) */
    const double p[B * N] = {0.9, 0.2, 0.6, 0.5, 0.3, 0.1, 0.8, 0.7, 0.4, 0.55};
    float logp_data[B * N * 2], logp_grad[B * N * 2] = {0};
    for (int i = 0; i < B * N; i++) {
        logp_data[2 * i] = (float)log(p[i]);
        logp_data[2 * i + 1] = (float)log(1.0 - p[i]);
    }
    /* teacher attention: image 0 ranks tokens 3 > 0 > 4 > 1 > 2, image 1 ranks 1 > 2 > 0 > 4 > 3 */
    float attn_data[B * N] = {0.20f, 0.05f, 0.01f, 0.30f, 0.10f, 0.12f, 0.40f, 0.25f, 0.02f, 0.05f};
    const int top[B * N] = {1, 0, 0, 1, 1, 1, 1, 1, 0, 0};
    ag_tensor *logp = ag_wrap(ctx, logp_data, logp_grad, 3, (size_t[]){B, N, 2}, true);
    ag_tensor *attn = ag_wrap(ctx, attn_data, NULL, 2, (size_t[]){B, N}, false);
    vit_output student = {.n_stages = 1, .score = {logp}};
    vit_output teacher = {.cls_attn = {attn}};
    /* every other term off: the total is the guide alone */
    float logits_data[B * 3] = {0}, targets_data[B * 3] = {1, 0, 0, 0, 1, 0};
    student.logits = ag_wrap(ctx, logits_data, NULL, 2, (size_t[]){B, 3}, false);
    ag_tensor *targets = ag_wrap(ctx, targets_data, NULL, 2, (size_t[]){B, 3}, false);
    objective_config cfg = {.clf_weight = 0.0f, .guide_weight = 1.0f};
    objective_parts parts;
    cr_assert_eq(objective_compute(ctx, &tps, &cfg, &student, targets, &teacher, &parts), TPSC_OK, "%s",
                 tpsc_last_error());
    cr_assert_not_null(parts.guide);
    double want = 0;
    for (int i = 0; i < B * N; i++) want -= top[i] ? log(p[i]) : log(1.0 - p[i]);
    want /= B * N;
    cr_assert(fabs(parts.guide->data[0] - want) <= 1e-6 * fabs(want), "guide %.8f, closed form %.8f",
              parts.guide->data[0], want);
    cr_assert(fabs(parts.total->data[0] - want) <= 1e-6 * fabs(want), "total %.8f", parts.total->data[0]);

    cr_assert_eq(ag_backward(ctx, parts.total), TPSC_OK, "%s", tpsc_last_error());
    for (int i = 0; i < B * N; i++) {
        const double g_keep = (p[i] - top[i]) / (B * N), g_drop = ((1.0 - p[i]) - (1 - top[i])) / (B * N);
        cr_assert(fabs(logp_grad[2 * i] - g_keep) <= 1e-6, "token %d keep: grad %.8f, want %.8f", i, logp_grad[2 * i], g_keep);
        cr_assert(fabs(logp_grad[2 * i + 1] - g_drop) <= 1e-6, "token %d drop: grad %.8f, want %.8f", i,
                  logp_grad[2 * i + 1], g_drop);
    }
    ag_ctx_free(ctx);
}

Test(tps_guide, needs_a_teacher_and_its_attention) {
    ag_ctx *ctx = ag_ctx_create(1 << 20);
    tok_config tps = one_stage();
    float logp_data[B * N * 2] = {0}, logits_data[B * 3] = {0}, targets_data[B * 3] = {1, 0, 0, 0, 1, 0};
    vit_output student = {.n_stages = 1, .score = {ag_wrap(ctx, logp_data, NULL, 3, (size_t[]){B, N, 2}, false)}};
    student.logits = ag_wrap(ctx, logits_data, NULL, 2, (size_t[]){B, 3}, false);
    ag_tensor *targets = ag_wrap(ctx, targets_data, NULL, 2, (size_t[]){B, 3}, false);
    objective_config cfg = {.clf_weight = 1.0f, .guide_weight = 0.5f};
    objective_parts parts;
    cr_assert_neq(objective_compute(ctx, &tps, &cfg, &student, targets, NULL, &parts), TPSC_OK);
    cr_assert(strstr(tpsc_last_error(), "needs a teacher"), "%s", tpsc_last_error());
    vit_output teacher = {0}; /* forward run without probes */
    cr_assert_neq(objective_compute(ctx, &tps, &cfg, &student, targets, &teacher, &parts), TPSC_OK);
    cr_assert(strstr(tpsc_last_error(), "cls attention at block 2"), "%s", tpsc_last_error());
    ag_ctx_free(ctx);
}

static void make_model(vit_model *m, const tok_config *tps) {
    vit_config c = {.img_size = 12, .patch_size = 3, .in_chans = 1, .embed_dim = 16, .depth = 4,
                    .num_heads = 2, .num_classes = 5, .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    cr_assert_eq(vit_model_create(m, &c, tps), TPSC_OK, "%s", tpsc_last_error());
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 11);
    vit_model_init(m, &rng);
    /* weights x10 so that attention is far from uniform and the ranking has no near-ties */
    for (int i = 0; i < m->params.count; i++)
        if (m->params.items[i].t.ndim >= 2)
            for (size_t j = 0; j < m->params.items[i].numel; j++) m->params.items[i].t.data[j] *= 10.0f;
}

/* The probe at block 2 of a dense model ranks tokens exactly as an EViT model with the same
 * weights does when it prunes at block 2 (EViT's score is that block's head-mean cls attention),
 * and probing changes nothing else in the forward. */
Test(tps_guide, probe_ranks_tokens_as_evit_does) {
    tok_config dense_cfg = {.method = TOK_NONE};
    tok_config evit_cfg = {.method = TOK_EVIT, .n_stages = 1, .prune_loc = {2}};
    tok_config_fill_rho(&evit_cfg, 0.5f);
    vit_model dense, evit;
    make_model(&dense, &dense_cfg);
    make_model(&evit, &evit_cfg);
    const size_t NP = 16, BI = 3;
    ag_ctx *ctx = ag_ctx_create(8 << 20);
    ag_tensor *x = ag_new4(ctx, BI, 1, 12, 12);
    tpsc_rng rng = tpsc_rng_keyed(5, 1, 2, 3);
    for (size_t i = 0; i < ag_numel(x); i++) x->data[i] = tpsc_rng_normal(&rng);

    vit_forward_opts plain = {.mode = VIT_TRAIN}, probed = {.mode = VIT_TRAIN, .probe_blocks = {2}, .n_probe = 1};
    vit_output o_plain, o_probed, o_evit;
    cr_assert_not_null(vit_forward(ctx, &dense, x, &plain, &o_plain), "%s", tpsc_last_error());
    cr_assert_not_null(vit_forward(ctx, &dense, x, &probed, &o_probed), "%s", tpsc_last_error());
    cr_assert_eq(memcmp(o_plain.logits->data, o_probed.logits->data, BI * 5 * sizeof(float)), 0);
    ag_tensor *a = o_probed.cls_attn[0];
    cr_assert_not_null(a);
    cr_assert_eq(a->ndim, 2);
    cr_assert(a->shape[0] == BI && a->shape[1] == NP);

    vit_forward_opts infer = {.mode = VIT_INFER};
    cr_assert_not_null(vit_forward(ctx, &evit, x, &infer, &o_evit), "%s", tpsc_last_error());
    const size_t k = o_evit.kept_count[0];
    cr_assert(k > 0 && k < NP);
    for (size_t b = 0; b < BI; b++) {
        /* the k-th largest probed score separates EViT's kept set from the rest */
        for (size_t j = 0; j < NP; j++) {
            bool kept = false;
            for (size_t r = 0; r < k; r++) kept |= o_evit.kept_orig[0][b * k + r] == (int32_t)j;
            size_t above = 0;
            for (size_t i = 0; i < NP; i++) above += a->data[b * NP + i] > a->data[b * NP + j];
            cr_assert_eq(kept, above < k, "image %zu token %zu: EViT kept %d, probe rank %zu of k = %zu", b, j, kept,
                         above, k);
        }
    }
    /* probes are for dense models: a pruned model's sequence no longer has N tokens */
    cr_assert_null(vit_forward(ctx, &evit, x, &probed, &o_evit));
    cr_assert(strstr(tpsc_last_error(), "dense model"), "%s", tpsc_last_error());
    ag_ctx_free(ctx);
    vit_model_free(&dense);
    vit_model_free(&evit);
}
