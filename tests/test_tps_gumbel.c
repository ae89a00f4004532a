/* Straight-through Gumbel keep mask: hard values, and a backward equal to that of the soft
 * sample softmax(logp + g)[0] * prev (the straight-through definition), checked against
 * central differences of the soft sample computed here in double. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "support/gradcheck.h"
#include "src/tokens/tokens.h"

#define B 2
#define N 7

static double soft_keep(double l0, double l1, double u0, double u1) {
    const double z0 = l0 - log(-log(u0)), z1 = l1 - log(-log(u1));
    return 1.0 / (1.0 + exp(z1 - z0));
}

static void make_inputs(float *logp, float *u, float *prev) {
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 7);
    for (int i = 0; i < B * N * 2; i++) {
        logp[i] = tpsc_rng_normal(&rng);
        u[i] = 0.05f + 0.9f * tpsc_rng_uniform(&rng);
    }
    for (int i = 0; i < B * N; i++) prev[i] = (i % 5 == 3) ? 0.0f : 1.0f;
}

Test(tps_gumbel, hard_value_is_argmax_of_perturbed_logits) {
    float logp[B * N * 2], u[B * N * 2], prev[B * N];
    make_inputs(logp, u, prev);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *lp = ag_wrap(ctx, logp, NULL, 3, (size_t[]){B, N, 2}, false);
    ag_tensor *pv = ag_wrap(ctx, prev, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *k = tok_gumbel_keep(ctx, lp, u, pv);
    cr_assert_not_null(k, "%s", tpsc_last_error());
    int kept = 0;
    for (int m = 0; m < B * N; m++) {
        /* reference: keep iff logp0 + g0 >= logp1 + g1 (double), times prev; exact 0/1 */
        const double s = soft_keep(logp[2 * m], logp[2 * m + 1], u[2 * m], u[2 * m + 1]);
        const float want = (s >= 0.5 ? 1.0f : 0.0f) * prev[m];
        cr_assert_eq(k->data[m], want, "token %d: keep %g, expected %g (soft %g)", m, (double)k->data[m],
                     (double)want, s);
        kept += want == 1.0f;
    }
    cr_assert(kept > 0 && kept < B * N, "the draw should keep some tokens and drop others (kept %d)", kept);
    ag_ctx_free(ctx);
}

Test(tps_gumbel, zero_noise_and_ties_keep) {
    /* u = exp(-1) gives g = -log(-log u) = 0: keep iff logp0 >= logp1; an exact tie keeps, as
     * torch's max returns the first index */
    float logp[] = {-0.1f, -2.4f, -3.0f, -0.05f, -0.7f, -0.7f}, prev[] = {1, 1, 1};
    const float e1 = expf(-1.0f);
    float u[] = {e1, e1, e1, e1, e1, e1};
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *lp = ag_wrap(ctx, logp, NULL, 3, (size_t[]){1, 3, 2}, false);
    ag_tensor *pv = ag_wrap(ctx, prev, NULL, 2, (size_t[]){1, 3}, false);
    ag_tensor *k = tok_gumbel_keep(ctx, lp, u, pv);
    cr_assert_not_null(k, "%s", tpsc_last_error());
    cr_assert_eq(k->data[0], 1.0f);
    cr_assert_eq(k->data[1], 0.0f);
    cr_assert_eq(k->data[2], 1.0f);
    ag_ctx_free(ctx);
}

Test(tps_gumbel, logp_gradient_is_the_soft_samples) {
    float logp[B * N * 2], u[B * N * 2], prev[B * N], grad[B * N * 2] = {0}, seed[B * N];
    make_inputs(logp, u, prev);
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 99);
    for (int m = 0; m < B * N; m++) seed[m] = tpsc_rng_normal(&rng);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *lp = ag_wrap(ctx, logp, grad, 3, (size_t[]){B, N, 2}, true);
    ag_tensor *pv = ag_wrap(ctx, prev, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *k = tok_gumbel_keep(ctx, lp, u, pv);
    cr_assert_not_null(k);
    cr_assert_eq(ag_backward_from(ctx, k, seed), TPSC_OK, "%s", tpsc_last_error());
    /* reference: central differences (h = 1e-4, in double) of L = sum_m seed_m soft0_m prev_m;
     * the function is smooth and evaluated in double, so the FD error is ~1e-8; tolerance
     * atol 1e-5 + rtol 1e-4 covers the float32 analytic gradient */
    const double h = 1e-4;
    for (int m = 0; m < B * N; m++)
        for (int c = 0; c < 2; c++) {
            double l[2] = {logp[2 * m], logp[2 * m + 1]};
            l[c] += h;
            const double up = soft_keep(l[0], l[1], u[2 * m], u[2 * m + 1]);
            l[c] -= 2 * h;
            const double down = soft_keep(l[0], l[1], u[2 * m], u[2 * m + 1]);
            const double numeric = seed[m] * prev[m] * (up - down) / (2 * h);
            cr_assert(fabs(grad[2 * m + c] - numeric) <= 1e-5 + 1e-4 * fabs(numeric),
                      "token %d col %d: analytic %g numeric %g", m, c, (double)grad[2 * m + c], numeric);
        }
    ag_ctx_free(ctx);
}

typedef struct gumbel_user {
    float logp[B * N * 2], u[B * N * 2];
} gumbel_user;

static ag_tensor *f_keep_of_prev(ag_ctx *ctx, ag_tensor **in, void *user) {
    gumbel_user *g = user;
    ag_tensor *lp = ag_wrap(ctx, g->logp, NULL, 3, (size_t[]){B, N, 2}, false);
    return tok_gumbel_keep(ctx, lp, g->u, in[0]);
}

Test(tps_gumbel, prev_gradient) {
    /* keep = hard * prev is linear in prev: gradcheck (h 1e-2, atol 1e-3, rtol 1e-2) */
    gumbel_user g;
    float prev[B * N];
    make_inputs(g.logp, g.u, prev);
    gc_input in[1] = {{2, {B, N}, true, prev}};
    GRADCHECK(f_keep_of_prev, 1, in, &g, 1e-2, 1e-3, 1e-2);
}

Test(tps_gumbel, bad_noise_and_shapes_are_errors) {
    float logp[4] = {0}, prev[2] = {1, 1}, u[4] = {0.5f, 0.5f, 1.0f, 0.5f};
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *lp = ag_wrap(ctx, logp, NULL, 3, (size_t[]){1, 2, 2}, false);
    ag_tensor *pv = ag_wrap(ctx, prev, NULL, 2, (size_t[]){1, 2}, false);
    cr_assert_null(tok_gumbel_keep(ctx, lp, u, pv));
    cr_assert(strstr(tpsc_last_error(), "u[2] = 1") != NULL, "message: %s", tpsc_last_error());
    ag_ctx_reset(ctx); /* tensors from before the reset are gone */
    lp = ag_wrap(ctx, logp, NULL, 3, (size_t[]){1, 2, 2}, false);
    ag_tensor *pv3 = ag_wrap(ctx, prev, NULL, 2, (size_t[]){2, 1}, false);
    cr_assert_null(tok_gumbel_keep(ctx, lp, u, pv3));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    ag_ctx_free(ctx);
}
