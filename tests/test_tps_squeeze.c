/* TPS squeeze, training (masks) and real removal (hosts): hand-computed examples, a double
 * transcription of the official TPSModule formulas, and finite-difference gradients on inputs
 * whose nearest host wins by a clear margin (the host choice is a constant in backward, so the
 * finite-difference step must not change it). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "support/fixture.h"
#include "support/gradcheck.h"
#include "src/tokens/tokens_internal.h"

#define B 2
#define N 7
#define C 6
#define E_HOST 2.718281828459045

/* ---- references in double -------------------------------------------------------------- */

/* Official training TPSModule for one image, transcribed: out [n,c]. */
static void ref_squeeze_train(const float *x, const float *keep, const float *prev, int n, int c, double *out) {
    double den[64], acc[64 * 16];
    for (int j = 0; j < n; j++) den[j] = E_HOST;
    memset(acc, 0, sizeof acc);
    for (int i = 0; i < n; i++) {
        const double P = (1.0 - keep[i]) * prev[i];
        double S[64], mx = -1e30;
        for (int j = 0; j < n; j++) {
            S[j] = (keep[j] == 0.0f || i == j) ? -100.0 : fx_cosine(x + i * c, x + j * c, c);
            if (S[j] > mx) mx = S[j];
        }
        for (int j = 0; j < n; j++) {
            if (S[j] != mx || P == 0.0) continue;
            const double w = exp(P * S[j]) * P;
            den[j] += w;
            for (int k = 0; k < c; k++) acc[j * c + k] += w * x[i * c + k];
        }
    }
    for (int j = 0; j < n; j++)
        for (int k = 0; k < c; k++) out[j * c + k] = (E_HOST * x[j * c + k] + acc[j * c + k]) / den[j];
}

/* Gap between the best and the second-best host similarity of every row that picks a host
 * (all rows in training: kept rows' choices feed the keep gradient). */
static double smallest_margin(const float *x, const float *keep, int n, int c) {
    double worst = 1e30;
    for (int i = 0; i < n; i++) {
        double best = -1e30, second = -1e30;
        for (int j = 0; j < n; j++) {
            if (keep[j] == 0.0f || j == i) continue;
            const double s = fx_cosine(x + i * c, x + j * c, c);
            if (s > best) second = best, best = s;
            else if (s > second) second = s;
        }
        if (second > -1e29 && best - second < worst) worst = best - second;
    }
    return worst;
}

/* Normal data for B images whose host choices all win by >= 0.05 in cosine: the
 * finite-difference step of 1e-2 moves a cosine by < 1e-2 for these norms. */
static void margin_data(float *x, const float *keep, unsigned *seed_out) {
    for (unsigned seed = 1; seed < 1000; seed++) {
        tpsc_rng rng;
        tpsc_rng_seed(&rng, seed);
        for (int i = 0; i < B * N * C; i++) x[i] = tpsc_rng_normal(&rng);
        bool ok = true;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < N; i++) {
                double nrm = 0;
                for (int k = 0; k < C; k++) nrm += (double)x[(b * N + i) * C + k] * x[(b * N + i) * C + k];
                if (sqrt(nrm) < 1.0) ok = false;
            }
        for (int b = 0; b < B && ok; b++)
            if (smallest_margin(x + b * N * C, keep + b * N, N, C) < 0.05) ok = false;
        if (ok) {
            *seed_out = seed;
            return;
        }
    }
    cr_assert_fail("no seed below 1000 gives a host margin of 0.05");
}

/* keep/prev masks of the checks: token 4 of image 0 and token 2 of image 1 were pruned at an
 * earlier stage (prev = 0); 1, 6 (image 0) and 0, 3, 5 (image 1) are pruned now. */
static const float KEEP[B * N] = {1, 0, 1, 1, 0, 1, 0, /**/ 0, 1, 0, 0, 1, 0, 1};
static const float PREV[B * N] = {1, 1, 1, 1, 0, 1, 1, /**/ 1, 1, 0, 1, 1, 1, 1};

/* ---- values ---------------------------------------------------------------------------- */

static ag_tensor *run_train(ag_ctx *ctx, float *x, const float *keep, const float *prev, int b, int n, int c) {
    ag_tensor *tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){b, n, c}, false);
    ag_tensor *tk = ag_wrap(ctx, (float *)keep, NULL, 2, (size_t[]){b, n}, false);
    ag_tensor *tp = ag_wrap(ctx, (float *)prev, NULL, 2, (size_t[]){b, n}, false);
    ag_tensor *y = tok_squeeze_train(ctx, tx, tk, tp, 1.0f);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    return y;
}

/* The training squeeze of one image of three 2-d tokens x (keep, prev masks) against want[6],
 * within tol. */
static void expect_three_tokens(ag_ctx *ctx, float *x, float *keep, float *prev, const double *want, double tol) {
    ag_tensor *y = run_train(ctx, x, keep, prev, 1, 3, 2);
    for (int i = 0; i < 6; i++)
        cr_assert_float_eq(y->data[i], want[i], tol, "element %d: %g vs %g", i, (double)y->data[i], want[i]);
}

Test(tps_squeeze, three_tokens_by_hand) {
    /* x0 = (1,0), x1 = (0,1) kept; x2 = (2,1) pruned now. cos(x2,x0) = 2/sqrt(5) beats
     * cos(x2,x1) = 1/sqrt(5), so x0' = (e x0 + w x2) / (e + w), w = exp(2/sqrt(5)); x1, x2 unchanged.
     * Tolerance 1e-5: the 1e-6 in the normalisation moves w by ~1e-6 relative. */
    float x[] = {1, 0, 0, 1, 2, 1}, keep[] = {1, 1, 0}, prev[] = {1, 1, 1};
    ag_ctx *ctx = ag_ctx_create(0);
    const double w = exp(2.0 / sqrt(5.0));
    const double want[] = {(E_HOST * 1 + w * 2) / (E_HOST + w), (E_HOST * 0 + w * 1) / (E_HOST + w), 0, 1, 2, 1};
    expect_three_tokens(ctx, x, keep, prev, want, 1e-5);

    /* real removal, same example: kept [x0, x1], dropped [x2] -> the same two host rows */
    ag_tensor *kept = ag_wrap(ctx, x, NULL, 3, (size_t[]){1, 2, 2}, false);
    ag_tensor *dropped = ag_wrap(ctx, x + 4, NULL, 3, (size_t[]){1, 1, 2}, false);
    ag_tensor *h = tok_squeeze_hosts(ctx, kept, dropped, 1.0f, NULL);
    cr_assert_not_null(h, "%s", tpsc_last_error());
    for (int i = 0; i < 4; i++) cr_assert_float_eq(h->data[i], want[i], 1e-5, "host element %d", i);
    ag_ctx_free(ctx);
}

Test(tps_squeeze, exact_tie_feeds_every_tied_host) {
    /* x2 = (1,1) is exactly as similar to x0 = (1,0) as to x1 = (0,1): the official mask
     * (cos == max) selects both, each gets x2 with weight w = exp(1/sqrt(2)) */
    float x[] = {1, 0, 0, 1, 1, 1}, keep[] = {1, 1, 0}, prev[] = {1, 1, 1};
    ag_ctx *ctx = ag_ctx_create(0);
    const double w = exp(1.0 / sqrt(2.0));
    const double want[] = {(E_HOST + w) / (E_HOST + w), w / (E_HOST + w), w / (E_HOST + w), (E_HOST + w) / (E_HOST + w), 1, 1};
    expect_three_tokens(ctx, x, keep, prev, want, 1e-5);
    ag_ctx_free(ctx);
}

Test(tps_squeeze, only_newly_pruned_tokens_move) {
    /* x2 was pruned at an earlier stage (prev = 0): nothing to squeeze, the output is x */
    float x[] = {1, 0, 0, 1, 2, 1}, keep[] = {1, 1, 0}, prev[] = {1, 1, 0};
    ag_ctx *ctx = ag_ctx_create(0);
    const double want[6] = {x[0], x[1], x[2], x[3], x[4], x[5]};
    expect_three_tokens(ctx, x, keep, prev, want, 1e-6);
    ag_ctx_free(ctx);
}

Test(tps_squeeze, train_matches_official_formula) {
    /* reference: ref_squeeze_train (double transcription of TPSModule.forward, training);
     * tolerance 1e-5 absolute for float32 on O(1) values */
    float x[B * N * C];
    unsigned seed;
    margin_data(x, KEEP, &seed);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *y = run_train(ctx, x, KEEP, PREV, B, N, C);
    for (int b = 0; b < B; b++) {
        double want[N * C];
        ref_squeeze_train(x + b * N * C, KEEP + b * N, PREV + b * N, N, C, want);
        for (int i = 0; i < N * C; i++)
            cr_assert_float_eq(y->data[b * N * C + i], want[i], 1e-5, "image %d element %d (seed %u)", b, i, seed);
    }
    ag_ctx_free(ctx);
}

Test(tps_squeeze, hosts_equal_training_rows_of_kept_tokens) {
    /* With no earlier pruning, the training squeeze's kept rows equal the real-removal
     * squeeze of (kept, newly pruned): both choose hosts among kept tokens only. Reference:
     * the double transcription; tolerance 1e-5. */
    float x[B * N * C];
    unsigned seed;
    margin_data(x, KEEP, &seed);
    const float ones[B * N] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    ag_ctx *ctx = ag_ctx_create(0);
    const int b = 0, kept_ids[] = {0, 2, 3, 5}, drop_ids[] = {1, 4, 6};
    float kept[4 * C], dropped[3 * C];
    for (int r = 0; r < 4; r++) memcpy(kept + r * C, x + kept_ids[r] * C, C * sizeof(float));
    for (int r = 0; r < 3; r++) memcpy(dropped + r * C, x + drop_ids[r] * C, C * sizeof(float));
    ag_tensor *tk = ag_wrap(ctx, kept, NULL, 3, (size_t[]){1, 4, C}, false);
    ag_tensor *td = ag_wrap(ctx, dropped, NULL, 3, (size_t[]){1, 3, C}, false);
    ag_tensor *h = tok_squeeze_hosts(ctx, tk, td, 1.0f, NULL);
    cr_assert_not_null(h, "%s", tpsc_last_error());
    double want[N * C];
    ref_squeeze_train(x + b * N * C, KEEP, ones, N, C, want);
    for (int r = 0; r < 4; r++)
        for (int k = 0; k < C; k++)
            cr_assert_float_eq(h->data[r * C + k], want[kept_ids[r] * C + k], 1e-5, "host %d channel %d", r, k);
    ag_ctx_free(ctx);
}

Test(tps_squeeze, nothing_dropped_is_identity) {
    float x[3 * 2] = {1, 2, 3, 4, 5, 6};
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tk = ag_wrap(ctx, x, NULL, 3, (size_t[]){1, 3, 2}, false);
    ag_tensor *td = ag_new3(ctx, 1, 0, 2);
    ag_tensor *h = tok_squeeze_hosts(ctx, tk, td, 1.0f, NULL);
    cr_assert_not_null(h, "%s", tpsc_last_error());
    for (int i = 0; i < 6; i++) cr_assert_eq(h->data[i], x[i]);
    ag_ctx_free(ctx);
}

/* ---- gradients ------------------------------------------------------------------------- */

typedef struct masks {
    const float *keep, *prev;
} masks;

static ag_tensor *f_train_x(ag_ctx *ctx, ag_tensor **in, void *user) {
    masks *m = user;
    ag_tensor *tk = ag_wrap(ctx, (float *)m->keep, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *tp = ag_wrap(ctx, (float *)m->prev, NULL, 2, (size_t[]){B, N}, false);
    return tok_squeeze_train(ctx, in[0], tk, tp, 1.0f);
}

Test(tps_squeeze, train_gradcheck_x) {
    /* gradcheck h 1e-2, atol 1e-3, rtol 1e-2 (as the linear op); masks fixed */
    float x[B * N * C];
    unsigned seed;
    margin_data(x, KEEP, &seed);
    masks m = {KEEP, PREV};
    gc_input in[1] = {{3, {B, N, C}, true, x}};
    GRADCHECK(f_train_x, 1, in, &m, 1e-2, 1e-3, 1e-2);
}

static ag_tensor *f_train_prev(ag_ctx *ctx, ag_tensor **in, void *user) {
    const float *keep = user;
    ag_tensor *tk = ag_wrap(ctx, (float *)keep, NULL, 2, (size_t[]){B, N}, false);
    return tok_squeeze_train(ctx, in[0], tk, in[1], 1.0f);
}

Test(tps_squeeze, train_gradcheck_x_and_prev) {
    /* prev enters only through P = (1 - keep) prev, a smooth product, so finite differences
     * apply to every element (official autograd lets the gradient reach the previous mask) */
    float x[B * N * C];
    unsigned seed;
    margin_data(x, KEEP, &seed);
    gc_input in[2] = {{3, {B, N, C}, true, x}, {2, {B, N}, true, PREV}};
    GRADCHECK(f_train_prev, 2, in, (void *)KEEP, 1e-2, 1e-3, 1e-2);
}

static double train_loss(const float *x, const float *keep, const float *prev, const float *R) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_set_grad_enabled(ctx, false);
    ag_tensor *y = run_train(ctx, (float *)x, keep, prev, B, N, C);
    double l = 0;
    for (int i = 0; i < B * N * C; i++) l += (double)y->data[i] * R[i];
    ag_ctx_free(ctx);
    return l;
}

Test(tps_squeeze, keep_gradient) {
    /* keep also gates the -100 fill (a step), so finite differences hold only where keep = 1
     * (1 +- h is still "kept"): checked there (h 1e-2, atol 1e-3, rtol 1e-2). Where keep = 0
     * the official gradient is through P alone: dkeep = -prev * dP = -prev * dprev. */
    float x[B * N * C], keep[B * N], prev[B * N], R[B * N * C];
    float gx[B * N * C] = {0}, gk[B * N] = {0}, gp[B * N] = {0};
    unsigned seed;
    margin_data(x, KEEP, &seed);
    memcpy(keep, KEEP, sizeof keep);
    memcpy(prev, PREV, sizeof prev);
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 5);
    for (int i = 0; i < B * N * C; i++) R[i] = tpsc_rng_normal(&rng);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tx = ag_wrap(ctx, x, gx, 3, (size_t[]){B, N, C}, true);
    ag_tensor *tk = ag_wrap(ctx, keep, gk, 2, (size_t[]){B, N}, true);
    ag_tensor *tp = ag_wrap(ctx, prev, gp, 2, (size_t[]){B, N}, true);
    ag_tensor *y = tok_squeeze_train(ctx, tx, tk, tp, 1.0f);
    cr_assert_not_null(y);
    cr_assert_eq(ag_backward_from(ctx, y, R), TPSC_OK, "%s", tpsc_last_error());
    ag_ctx_free(ctx);
    int checked = 0;
    for (int i = 0; i < B * N; i++) {
        if (KEEP[i] == 0.0f) {
            cr_assert_float_eq(gk[i], -PREV[i] * gp[i], 1e-6, "token %d: dkeep %g, dprev %g", i, (double)gk[i], (double)gp[i]);
            continue;
        }
        const float h = 1e-2f;
        keep[i] = 1.0f + h;
        const double up = train_loss(x, keep, prev, R);
        keep[i] = 1.0f - h;
        const double down = train_loss(x, keep, prev, R);
        keep[i] = 1.0f;
        const double numeric = (up - down) / (2.0 * h);
        cr_assert(fabs(gk[i] - numeric) <= 1e-3 + 1e-2 * fabs(numeric), "token %d: analytic %g numeric %g", i,
                  (double)gk[i], numeric);
        checked++;
    }
    cr_assert_eq(checked, 7);
}

static ag_tensor *f_hosts(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return tok_squeeze_hosts(ctx, in[0], in[1], 1.0f, NULL);
}

Test(tps_squeeze, hosts_gradcheck) {
    /* kept [2,4,6], dropped [2,3,6], split from margin data: the dropped rows are KEEP = 0
     * rows of an image whose kept rows are KEEP = 1 rows, so their host margins are >= 0.05.
     * gradcheck h 1e-2, atol 1e-3, rtol 1e-2. */
    float x[B * N * C], kept[B * 4 * C], dropped[B * 3 * C];
    const float keep2[B * N] = {1, 0, 1, 1, 0, 1, 0, /**/ 1, 0, 1, 1, 0, 1, 0};
    unsigned seed;
    margin_data(x, keep2, &seed);
    for (int b = 0; b < B; b++) {
        int nk = 0, nd = 0;
        for (int i = 0; i < N; i++) {
            float *dst = keep2[b * N + i] != 0.0f ? kept + (b * 4 + nk++) * C : dropped + (b * 3 + nd++) * C;
            memcpy(dst, x + (b * N + i) * C, C * sizeof(float));
        }
    }
    gc_input in[2] = {{3, {B, 4, C}, true, kept}, {3, {B, 3, C}, true, dropped}};
    GRADCHECK(f_hosts, 2, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(tps_squeeze, bad_shapes_are_errors) {
    float x[12] = {0}, k[3] = {1, 1, 1};
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){1, 3, 4}, false);
    ag_tensor *tk = ag_wrap(ctx, k, NULL, 2, (size_t[]){1, 3}, false);
    ag_tensor *bad = ag_wrap(ctx, k, NULL, 2, (size_t[]){3, 1}, false);
    cr_assert_null(tok_squeeze_train(ctx, tx, tk, bad, 1.0f));
    cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE);
    cr_assert(strstr(tpsc_last_error(), "tok_squeeze_train") != NULL, "%s", tpsc_last_error());
    ag_ctx_free(ctx);
}
