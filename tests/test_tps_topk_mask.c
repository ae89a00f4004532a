/* Gumbel top-k keep mask (tps.train_mask = topk): each image keeps exactly k of its live
 * tokens, those with the highest perturbed keep logit (logp0 + g0) - (logp1 + g1), computed
 * here independently in double; the backward is the straight-through one of the per-token
 * Gumbel mask (the same soft sample), so it must equal tok_gumbel_keep's gradient bit for bit;
 * through tok_train_stage the count is tok_keep_count of the stage. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "src/tokens/tokens_internal.h"

#define B 3
#define N 11

static void make_inputs(float *logp, float *u, float *prev) {
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 21);
    for (int i = 0; i < B * N * 2; i++) {
        logp[i] = 1.5f * tpsc_rng_normal(&rng);
        u[i] = 0.02f + 0.96f * tpsc_rng_uniform(&rng);
    }
    /* image 0 all live, images 1 and 2 with 3 and 4 tokens pruned earlier */
    for (int i = 0; i < B * N; i++) prev[i] = 1.0f;
    for (int j = 0; j < 3; j++) prev[1 * N + 2 * j + 1] = 0.0f;
    for (int j = 0; j < 4; j++) prev[2 * N + j] = 0.0f;
}

static double perturbed_margin(const float *logp, const float *u, int m) {
    return ((double)logp[2 * m] - log(-log((double)u[2 * m]))) -
           ((double)logp[2 * m + 1] - log(-log((double)u[2 * m + 1])));
}

Test(tps_topk_mask, keeps_exactly_the_k_highest_perturbed_live_tokens) {
    float logp[B * N * 2], u[B * N * 2], prev[B * N];
    make_inputs(logp, u, prev);
    const size_t k = 5;
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *lp = ag_wrap(ctx, logp, NULL, 3, (size_t[]){B, N, 2}, false);
    ag_tensor *pv = ag_wrap(ctx, prev, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *keep = tok_gumbel_topk_keep(ctx, lp, u, pv, k);
    cr_assert_not_null(keep, "%s", tpsc_last_error());
    for (int b = 0; b < B; b++) {
        /* reference: a live token is kept iff fewer than k live tokens beat its margin (the
         * random margins have no ties) */
        int kept = 0;
        for (int i = 0; i < N; i++) {
            const int m = b * N + i;
            int above = 0;
            for (int j = 0; j < N; j++)
                if (prev[b * N + j] == 1.0f && perturbed_margin(logp, u, b * N + j) > perturbed_margin(logp, u, m))
                    above++;
            const float want = prev[m] == 1.0f && above < (int)k ? 1.0f : 0.0f;
            cr_assert_eq(keep->data[m], want, "image %d token %d: keep %g, expected %g (%d live tokens above)", b, i,
                         (double)keep->data[m], (double)want, above);
            kept += want == 1.0f;
        }
        cr_assert_eq(kept, (int)k, "image %d keeps %d tokens, not k = %zu", b, kept, k);
    }
    ag_ctx_free(ctx);
}

Test(tps_topk_mask, backward_is_the_straight_through_soft_sample) {
    /* reference: tok_gumbel_keep on the same inputs; both differentiate softmax(logp + g)[0] *
     * prev (checked against finite differences in test_tps_gumbel.c), and prev receives the
     * hard value, which the two masks choose differently: dprev is compared with the top-k
     * hard mask itself */
    float logp[B * N * 2], u[B * N * 2], prev[B * N], seed[B * N];
    float g_topk[B * N * 2] = {0}, g_ref[B * N * 2] = {0}, gp_topk[B * N] = {0};
    make_inputs(logp, u, prev);
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 5);
    for (int m = 0; m < B * N; m++) seed[m] = tpsc_rng_normal(&rng);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *lp = ag_wrap(ctx, logp, g_topk, 3, (size_t[]){B, N, 2}, true);
    ag_tensor *pv = ag_wrap(ctx, prev, gp_topk, 2, (size_t[]){B, N}, true);
    ag_tensor *keep = tok_gumbel_topk_keep(ctx, lp, u, pv, 4);
    cr_assert_not_null(keep, "%s", tpsc_last_error());
    float hard[B * N];
    memcpy(hard, keep->data, sizeof hard);
    cr_assert_eq(ag_backward_from(ctx, keep, seed), TPSC_OK, "%s", tpsc_last_error());
    ag_ctx_reset(ctx);
    lp = ag_wrap(ctx, logp, g_ref, 3, (size_t[]){B, N, 2}, true);
    pv = ag_wrap(ctx, prev, NULL, 2, (size_t[]){B, N}, false);
    keep = tok_gumbel_keep(ctx, lp, u, pv);
    cr_assert_not_null(keep, "%s", tpsc_last_error());
    cr_assert_eq(ag_backward_from(ctx, keep, seed), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_arr_eq(g_topk, g_ref, sizeof g_ref, "d logp differs from the per-token Gumbel mask's");
    for (int m = 0; m < B * N; m++)
        cr_assert_eq(gp_topk[m], seed[m] * hard[m], "token %d: d prev %g, expected seed * hard = %g", m,
                     (double)gp_topk[m], (double)(seed[m] * hard[m]));
    ag_ctx_free(ctx);
}

Test(tps_topk_mask, train_stage_keeps_the_stage_budget) {
    /* stage 1 of keep 0.7 over N = 11 patches: floor(11 * 0.49) = 5 of the 7 tokens stage 0
     * kept (floor(11 * 0.7)) */
    ag_params params;
    tok_predictor pred;
    ag_params_init(&params);
    cr_assert_eq(tok_predictor_declare(&pred, &params, 1, 8), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(ag_params_finalise(&params), TPSC_OK, "%s", tpsc_last_error());
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 8);
    tok_predictor_init(&pred, &params, &rng);
    float x[B * (1 + N) * 8], prev[B * N];
    for (int i = 0; i < B * (1 + N) * 8; i++) x[i] = tpsc_rng_normal(&rng);
    for (int i = 0; i < B * N; i++) prev[i] = (i % N) < 7 ? 1.0f : 0.0f;
    tok_config cfg = {.method = TOK_DTPS, .n_stages = 2, .prune_loc = {1, 2}, .squeeze_temp = 1.0f,
                      .train_mask = TOK_MASK_TOPK};
    tok_config_fill_rho(&cfg, 0.7f);
    cr_assert_eq(tok_keep_count(&cfg, 0, N), 7u);
    cr_assert_eq(tok_keep_count(&cfg, 1, N), 5u);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){B, 1 + N, 8}, false);
    ag_tensor *tp = ag_wrap(ctx, prev, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *keep = NULL;
    ag_tensor *y = tok_train_stage(ctx, &cfg, 1, &pred, &params, tx, tp, NULL, &rng, &keep, NULL);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    for (int b = 0; b < B; b++) {
        int kept = 0;
        for (int i = 0; i < N; i++) {
            cr_assert(keep->data[b * N + i] == 0.0f || prev[b * N + i] == 1.0f, "image %d token %d revived", b, i);
            kept += keep->data[b * N + i] == 1.0f;
        }
        cr_assert_eq(kept, 5, "image %d keeps %d tokens at stage 1, expected 5", b, kept);
    }
    ag_ctx_free(ctx);
    ag_params_free(&params);
}

Test(tps_topk_mask, too_few_live_tokens_and_bad_k_are_errors) {
    float logp[B * N * 2], u[B * N * 2], prev[B * N];
    make_inputs(logp, u, prev);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *lp = ag_wrap(ctx, logp, NULL, 3, (size_t[]){B, N, 2}, false);
    ag_tensor *pv = ag_wrap(ctx, prev, NULL, 2, (size_t[]){B, N}, false);
    /* image 2 has 7 live tokens */
    cr_assert_null(tok_gumbel_topk_keep(ctx, lp, u, pv, 8));
    cr_assert(strstr(tpsc_last_error(), "image 2 has fewer than k = 8 live tokens") != NULL, "%s",
              tpsc_last_error());
    ag_ctx_reset(ctx);
    lp = ag_wrap(ctx, logp, NULL, 3, (size_t[]){B, N, 2}, false);
    pv = ag_wrap(ctx, prev, NULL, 2, (size_t[]){B, N}, false);
    cr_assert_null(tok_gumbel_topk_keep(ctx, lp, u, pv, N + 1));
    cr_assert(strstr(tpsc_last_error(), "cannot keep k = 12 of 11 tokens") != NULL, "%s", tpsc_last_error());
    ag_ctx_reset(ctx);
    prev[4] = 0.5f;
    lp = ag_wrap(ctx, logp, NULL, 3, (size_t[]){B, N, 2}, false);
    pv = ag_wrap(ctx, prev, NULL, 2, (size_t[]){B, N}, false);
    cr_assert_null(tok_gumbel_topk_keep(ctx, lp, u, pv, 3));
    cr_assert(strstr(tpsc_last_error(), "prev[4] = 0.5 is not a 0/1 mask") != NULL, "%s", tpsc_last_error());
    ag_ctx_free(ctx);
}
