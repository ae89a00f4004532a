/* One predictor-method stage in training: it must be exactly predictor -> Gumbel keep ->
 * (dtps) squeeze of the spatial tokens with cls passed through, the noise drawn in the
 * documented order, and gradients must reach x, prev and the predictor through every piece
 * (each piece has its own finite-difference check in test_tps_{predictor,gumbel,squeeze}.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "support/fixture.h"
#include "src/tokens/tokens_internal.h"

#define B 2
#define N 7
#define C 6

typedef struct setup {
    ag_params params;
    tok_predictor pred;
    tok_config cfg;
    float x[B * (1 + N) * C], prev[B * N], u[B * N * 2];
} setup;

static void make_setup(setup *s, tok_method m) {
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 3);
    fx_random_predictor(&s->params, &s->pred, 0, C, &rng);
    for (int i = 0; i < B * (1 + N) * C; i++) s->x[i] = tpsc_rng_normal(&rng);
    for (int i = 0; i < B * N; i++) s->prev[i] = i % 4 == 1 ? 0.0f : 1.0f;
    for (int i = 0; i < B * N * 2; i++) s->u[i] = tpsc_rng_uniform_open(&rng);
    s->cfg = (tok_config){.method = m, .n_stages = 1, .prune_loc = {3}, .squeeze_temp = 1.0f};
    tok_config_fill_rho(&s->cfg, 0.7f);
}

/* The stage's pieces called one by one: keep and the expected next sequence. */
static void expected(setup *s, ag_ctx *ctx, ag_tensor **keep, ag_tensor **next) {
    ag_tensor *tx = ag_wrap(ctx, s->x, NULL, 3, (size_t[]){B, 1 + N, C}, false);
    ag_tensor *tp = ag_wrap(ctx, s->prev, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *spatial = ag_slice(ctx, tx, 1, 1, N);
    ag_tensor *logp = tok_predictor_forward(ctx, &s->pred, &s->params, spatial, tp);
    *keep = tok_gumbel_keep(ctx, logp, s->u, tp);
    *next = s->cfg.method == TOK_DTPS ? tok_squeeze_train(ctx, spatial, *keep, tp, 1.0f) : spatial;
    cr_assert_not_null(*next, "%s", tpsc_last_error());
}

static void check_stage(tok_method m) {
    setup s;
    make_setup(&s, m);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *want_keep, *want_spatial;
    expected(&s, ctx, &want_keep, &want_spatial);
    ag_tensor *tx = ag_wrap(ctx, s.x, NULL, 3, (size_t[]){B, 1 + N, C}, false);
    ag_tensor *tp = ag_wrap(ctx, s.prev, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *keep = NULL;
    ag_tensor *y = tok_train_stage(ctx, &s.cfg, 0, &s.pred, &s.params, tx, tp, s.u, NULL, &keep, NULL);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    cr_assert_not_null(keep);
    cr_assert(y->ndim == 3 && y->shape[0] == B && y->shape[1] == 1 + N && y->shape[2] == C);
    cr_assert_arr_eq(keep->data, want_keep->data, B * N * sizeof(float));
    int kept = 0, newly_pruned = 0;
    for (int i = 0; i < B * N; i++) {
        cr_assert(keep->data[i] == 0.0f || (keep->data[i] == 1.0f && s.prev[i] == 1.0f), "token %d", i);
        kept += keep->data[i] == 1.0f;
        newly_pruned += keep->data[i] == 0.0f && s.prev[i] == 1.0f;
    }
    cr_assert(kept > 0 && newly_pruned > 0, "the draw should keep and prune (kept %d, pruned %d)", kept, newly_pruned);
    for (int b = 0; b < B; b++) {
        cr_assert_arr_eq(y->data + b * (1 + N) * C, s.x + b * (1 + N) * C, C * sizeof(float), "cls of image %d", b);
        cr_assert_arr_eq(y->data + (b * (1 + N) + 1) * C, want_spatial->data + b * N * C, N * C * sizeof(float),
                         "spatial tokens of image %d", b);
    }
    if (m == TOK_DTPS) {
        /* squeezing changed some host: the output is not x */
        cr_assert(memcmp(y->data, s.x, sizeof s.x) != 0);
    } else {
        cr_assert_eq(y, tx, "dynamicvit returns x itself");
    }
    ag_ctx_free(ctx);
    ag_params_free(&s.params);
}

Test(tps_train, dynamicvit_stage_is_predictor_then_gumbel) { check_stage(TOK_DYNAMICVIT); }
Test(tps_train, dtps_stage_squeezes_before_the_block) { check_stage(TOK_DTPS); }

Test(tps_train, noise_is_drawn_in_row_major_order) {
    /* u NULL: B*N*2 draws of tpsc_rng_uniform_open in (image, token, column) order, so the
     * same rng state as explicit noise gives the same mask and leaves the rng at the same
     * state */
    setup s;
    make_setup(&s, TOK_DTPS);
    tpsc_rng r1, r2;
    tpsc_rng_seed(&r1, 42);
    tpsc_rng_seed(&r2, 42);
    float u[B * N * 2];
    for (int i = 0; i < B * N * 2; i++) u[i] = tpsc_rng_uniform_open(&r2);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tx = ag_wrap(ctx, s.x, NULL, 3, (size_t[]){B, 1 + N, C}, false);
    ag_tensor *tp = ag_wrap(ctx, s.prev, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *k1, *k2;
    ag_tensor *y1 = tok_train_stage(ctx, &s.cfg, 0, &s.pred, &s.params, tx, tp, NULL, &r1, &k1, NULL);
    ag_tensor *y2 = tok_train_stage(ctx, &s.cfg, 0, &s.pred, &s.params, tx, tp, u, NULL, &k2, NULL);
    cr_assert(y1 && y2, "%s", tpsc_last_error());
    cr_assert_arr_eq(k1->data, k2->data, B * N * sizeof(float));
    cr_assert_arr_eq(y1->data, y2->data, B * (1 + N) * C * sizeof(float));
    cr_assert_eq(tpsc_rng_u64(&r1), tpsc_rng_u64(&r2));
    ag_ctx_free(ctx);
    ag_params_free(&s.params);
}

Test(tps_train, gradients_reach_tokens_mask_and_predictor) {
    setup s;
    make_setup(&s, TOK_DTPS);
    float gx[B * (1 + N) * C] = {0}, gp[B * N] = {0};
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tx = ag_wrap(ctx, s.x, gx, 3, (size_t[]){B, 1 + N, C}, true);
    ag_tensor *tp = ag_wrap(ctx, s.prev, gp, 2, (size_t[]){B, N}, true);
    ag_tensor *keep;
    ag_tensor *y = tok_train_stage(ctx, &s.cfg, 0, &s.pred, &s.params, tx, tp, s.u, NULL, &keep, NULL);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    /* L = sum(y) + sum(keep): keep's straight-through gradient reaches the predictor */
    ag_tensor *loss = ag_add(ctx, ag_sum(ctx, y), ag_sum(ctx, keep));
    cr_assert_eq(ag_backward(ctx, loss), TPSC_OK, "%s", tpsc_last_error());
    double nx = 0, np = 0, nw = 0;
    for (int i = 0; i < B * (1 + N) * C; i++) nx += fabs(gx[i]);
    for (int i = 0; i < B * N; i++) np += fabs(gp[i]);
    const ag_tensor *w4 = ag_param_tensor(&s.params, s.pred.out4_w);
    for (size_t i = 0; i < ag_numel(w4); i++) nw += fabs(w4->grad[i]);
    cr_assert(nx > 0 && np > 0 && nw > 0, "|dx| %g |dprev| %g |dW4| %g", nx, np, nw);
    ag_ctx_free(ctx);
    ag_params_free(&s.params);
}

Test(tps_train, missing_noise_and_wrong_method_are_errors) {
    setup s;
    make_setup(&s, TOK_DTPS);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tx = ag_wrap(ctx, s.x, NULL, 3, (size_t[]){B, 1 + N, C}, false);
    ag_tensor *tp = ag_wrap(ctx, s.prev, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *keep = tx;
    cr_assert_null(tok_train_stage(ctx, &s.cfg, 0, &s.pred, &s.params, tx, tp, NULL, NULL, &keep, NULL));
    cr_assert_null(keep);
    cr_assert(strstr(tpsc_last_error(), "neither noise u nor an rng") != NULL, "%s", tpsc_last_error());
    ag_ctx_reset(ctx);
    tx = ag_wrap(ctx, s.x, NULL, 3, (size_t[]){B, 1 + N, C}, false);
    tp = ag_wrap(ctx, s.prev, NULL, 2, (size_t[]){B, N}, false);
    s.cfg.method = TOK_ETPS;
    cr_assert_null(tok_train_stage(ctx, &s.cfg, 0, &s.pred, &s.params, tx, tp, s.u, NULL, &keep, NULL));
    cr_assert(strstr(tpsc_last_error(), "etps has no score predictor") != NULL, "%s", tpsc_last_error());
    ag_ctx_free(ctx);
    ag_params_free(&s.params);
}
