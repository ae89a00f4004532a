/* Score predictor (PredictorLG) and its masked global mean: parameter names, a forward
 * against a double transcription of the official module, and finite-difference gradients of
 * every parameter, the tokens and the previous mask. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "support/fixture.h"
#include "support/gradcheck.h"
#include "src/tokens/tokens_internal.h"

#define B 2
#define N 7
#define C 6

/* ---- masked mean ------------------------------------------------------------------------- */

static ag_tensor *f_masked_mean(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return tok_masked_mean_tokens(ctx, in[0], in[1]);
}

Test(tok_predictor, masked_mean_gradcheck) {
    /* mask values 0/1 as in training (the function is smooth in them while the sum stays away
     * from 0); gradcheck h 1e-2, atol 1e-3, rtol 1e-2 */
    const float mask[B * N] = {1, 0, 1, 1, 0, 1, 1, /**/ 0, 1, 1, 0, 0, 1, 0};
    gc_input in[2] = {{3, {B, N, 3}, true, NULL}, {2, {B, N}, true, mask}};
    GRADCHECK(f_masked_mean, 2, in, NULL, 1e-2, 1e-3, 1e-2);
}

Test(tok_predictor, masked_mean_values_and_empty_mask) {
    /* image 0: mean of rows 0 and 2 of [[1,2],[10,20],[3,4]] = [2,3] on every row;
     * image 1: empty mask -> zeros (the official code would produce NaN) */
    float x[] = {1, 2, 10, 20, 3, 4, /**/ 5, 6, 7, 8, 9, 10}, mask[] = {1, 0, 1, 0, 0, 0};
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){2, 3, 2}, false);
    ag_tensor *tm = ag_wrap(ctx, mask, NULL, 2, (size_t[]){2, 3}, false);
    ag_tensor *y = tok_masked_mean_tokens(ctx, tx, tm);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    for (int t = 0; t < 3; t++) {
        cr_assert_float_eq(y->data[t * 2], 2.0f, 1e-6);
        cr_assert_float_eq(y->data[t * 2 + 1], 3.0f, 1e-6);
        cr_assert_eq(y->data[6 + t * 2], 0.0f);
        cr_assert_eq(y->data[6 + t * 2 + 1], 0.0f);
    }
    ag_ctx_free(ctx);
}

/* ---- predictor --------------------------------------------------------------------------- */

typedef struct setup {
    ag_params params;
    tok_predictor pred;
} setup;

/* Parameters with O(1) values (fx_random_predictor), LayerNorm weights around 1. */
static void make_setup(setup *s) {
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 3);
    fx_random_predictor(&s->params, &s->pred, 1, C, &rng);
    float *lnw = ag_param_tensor(&s->params, s->pred.in_norm_w)->data;
    for (int c = 0; c < C; c++) lnw[c] += 1.0f;
}

Test(tok_predictor, official_names_and_shapes) {
    setup s;
    make_setup(&s);
    struct { const char *name; int ndim; size_t s0, s1; } want[] = {
        {"score_predictor.1.in_conv.0.weight", 1, C, 0}, {"score_predictor.1.in_conv.0.bias", 1, C, 0},
        {"score_predictor.1.in_conv.1.weight", 2, C, C}, {"score_predictor.1.in_conv.1.bias", 1, C, 0},
        {"score_predictor.1.out_conv.0.weight", 2, C / 2, C}, {"score_predictor.1.out_conv.0.bias", 1, C / 2, 0},
        {"score_predictor.1.out_conv.2.weight", 2, C / 4, C / 2}, {"score_predictor.1.out_conv.2.bias", 1, C / 4, 0},
        {"score_predictor.1.out_conv.4.weight", 2, 2, C / 4}, {"score_predictor.1.out_conv.4.bias", 1, 2, 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int idx = ag_params_find(&s.params, want[i].name);
        cr_assert(idx >= 0, "%s missing", want[i].name);
        ag_tensor *t = ag_param_tensor(&s.params, idx);
        cr_assert_eq(t->ndim, want[i].ndim, "%s", want[i].name);
        cr_assert_eq(t->shape[0], want[i].s0, "%s", want[i].name);
        if (want[i].ndim == 2) cr_assert_eq(t->shape[1], want[i].s1, "%s", want[i].name);
        cr_assert_eq(s.params.items[idx].group, 1, "%s: predictors are learning-rate group 1", want[i].name);
    }
    cr_assert_eq(s.params.count, 10);
    ag_params_free(&s.params);
}

Test(tok_predictor, official_init) {
    setup s;
    make_setup(&s);
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 11);
    tok_predictor_init(&s.pred, &s.params, &rng);
    const ag_tensor *lnw = ag_param_tensor(&s.params, s.pred.in_norm_w), *b0 = ag_param_tensor(&s.params, s.pred.out0_b);
    const ag_tensor *w1 = ag_param_tensor(&s.params, s.pred.in_fc_w);
    for (int c = 0; c < C; c++) cr_assert_eq(lnw->data[c], 1.0f);
    for (int c = 0; c < C / 2; c++) cr_assert_eq(b0->data[c], 0.0f);
    /* trunc_normal(std 0.02): 36 draws all within 5 std, and not all zero */
    double ss = 0;
    for (int i = 0; i < C * C; i++) {
        cr_assert(fabsf(w1->data[i]) < 0.1f);
        ss += (double)w1->data[i] * w1->data[i];
    }
    cr_assert(ss > 0);
    ag_params_free(&s.params);
}

static double gelu_d(double v) { return 0.5 * v * (1.0 + erf(v / sqrt(2.0))); }

static void linear_d(const double *x, int cin, const float *w, const float *b, int cout, double *y) {
    for (int o = 0; o < cout; o++) {
        double s = b[o];
        for (int i = 0; i < cin; i++) s += w[o * cin + i] * x[i];
        y[o] = s;
    }
}

Test(tok_predictor, forward_matches_official_module) {
    /* reference: PredictorLG.forward transcribed in double (LayerNorm eps 1e-5, local = first
     * half, global = prev-masked mean of the second half, log-softmax); tolerance 1e-5 */
    setup s;
    make_setup(&s);
    float x[B * N * C], prev[B * N] = {1, 1, 0, 1, 0, 1, 1, /**/ 0, 1, 1, 1, 1, 1, 0};
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 21);
    for (int i = 0; i < B * N * C; i++) x[i] = tpsc_rng_normal(&rng);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){B, N, C}, false);
    ag_tensor *tp = ag_wrap(ctx, prev, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *out = tok_predictor_forward(ctx, &s.pred, &s.params, tx, tp);
    cr_assert_not_null(out, "%s", tpsc_last_error());
    cr_assert(out->ndim == 3 && out->shape[0] == B && out->shape[1] == N && out->shape[2] == 2);
#define PD(f) ag_param_tensor(&s.params, s.pred.f)->data
    for (int b = 0; b < B; b++) {
        double h[N][C], g[C] = {0}, den = 0;
        for (int t = 0; t < N; t++) {
            const float *xt = x + (b * N + t) * C;
            double mu = 0, var = 0, ln[C];
            for (int c = 0; c < C; c++) mu += xt[c];
            mu /= C;
            for (int c = 0; c < C; c++) var += (xt[c] - mu) * (xt[c] - mu);
            var /= C;
            for (int c = 0; c < C; c++) ln[c] = (xt[c] - mu) / sqrt(var + 1e-5) * PD(in_norm_w)[c] + PD(in_norm_b)[c];
            linear_d(ln, C, PD(in_fc_w), PD(in_fc_b), C, h[t]);
            for (int c = 0; c < C; c++) h[t][c] = gelu_d(h[t][c]);
            den += prev[b * N + t];
            for (int c = C / 2; c < C; c++) g[c] += prev[b * N + t] * h[t][c];
        }
        for (int t = 0; t < N; t++) {
            double z[C], z1[C / 2], z2[C / 4], z3[2];
            for (int c = 0; c < C; c++) z[c] = c < C / 2 ? h[t][c] : g[c] / den;
            linear_d(z, C, PD(out0_w), PD(out0_b), C / 2, z1);
            for (int c = 0; c < C / 2; c++) z1[c] = gelu_d(z1[c]);
            linear_d(z1, C / 2, PD(out2_w), PD(out2_b), C / 4, z2);
            for (int c = 0; c < C / 4; c++) z2[c] = gelu_d(z2[c]);
            linear_d(z2, C / 4, PD(out4_w), PD(out4_b), 2, z3);
            const double m = fmax(z3[0], z3[1]), lse = m + log(exp(z3[0] - m) + exp(z3[1] - m));
            for (int k = 0; k < 2; k++)
                cr_assert_float_eq(out->data[(b * N + t) * 2 + k], z3[k] - lse, 1e-5, "image %d token %d col %d: %g vs %g",
                                   b, t, k, (double)out->data[(b * N + t) * 2 + k], z3[k] - lse);
        }
    }
#undef PD
    ag_ctx_free(ctx);
    ag_params_free(&s.params);
}

/* The gradient checker's inputs: x, prev, then parameters named by `which` replace the store's
 * tensors for the duration of the call. */
typedef struct pred_user {
    setup *s;
    int n_params;
    int which[8];
} pred_user;

static ag_tensor *f_predictor(ag_ctx *ctx, ag_tensor **in, void *user) {
    pred_user *u = user;
    for (int k = 0; k < u->n_params; k++) {
        ag_param *p = &u->s->params.items[u->which[k]];
        p->t.data = in[2 + k]->data;
        p->t.grad = in[2 + k]->grad;
        p->t.requires_grad = in[2 + k]->requires_grad;
    }
    return tok_predictor_forward(ctx, &u->s->pred, &u->s->params, in[0], in[1]);
}

static void check_params(const int *which, int n, bool grad_x) {
    setup s;
    make_setup(&s);
    pred_user u = {.s = &s, .n_params = n};
    static const float prev[B * N] = {1, 1, 0, 1, 0, 1, 1, /**/ 0, 1, 1, 1, 1, 1, 0};
    gc_input in[8] = {{3, {B, N, C}, grad_x, NULL}, {2, {B, N}, grad_x, prev}};
    for (int k = 0; k < n; k++) {
        u.which[k] = which[k];
        const ag_tensor *t = ag_param_tensor(&s.params, which[k]);
        in[2 + k] = (gc_input){t->ndim, {t->shape[0], t->shape[1]}, true, t->data};
    }
    /* gradcheck h 1e-2, atol 1e-3, rtol 1e-2 (as the linear op) */
    GRADCHECK(f_predictor, 2 + n, in, &u, 1e-2, 1e-3, 1e-2);
    ag_params_free(&s.params);
}

Test(tok_predictor, gradcheck_x_prev_in_conv) {
    tok_predictor p0;
    ag_params tmp;
    ag_params_init(&tmp);
    cr_assert_eq(tok_predictor_declare(&p0, &tmp, 1, C), TPSC_OK);
    const int which[] = {p0.in_norm_w, p0.in_norm_b, p0.in_fc_w, p0.in_fc_b};
    ag_params_free(&tmp);
    check_params(which, 4, true);
}

Test(tok_predictor, gradcheck_out_conv) {
    tok_predictor p0;
    ag_params tmp;
    ag_params_init(&tmp);
    cr_assert_eq(tok_predictor_declare(&p0, &tmp, 1, C), TPSC_OK);
    const int which[] = {p0.out0_w, p0.out0_b, p0.out2_w, p0.out2_b, p0.out4_w, p0.out4_b};
    ag_params_free(&tmp);
    check_params(which, 6, false);
}

Test(tok_predictor, duplicate_stage_is_an_error) {
    ag_params p;
    ag_params_init(&p);
    tok_predictor a, b;
    cr_assert_eq(tok_predictor_declare(&a, &p, 0, C), TPSC_OK);
    cr_assert_neq(tok_predictor_declare(&b, &p, 0, C), TPSC_OK);
    cr_assert(strstr(tpsc_last_error(), "score_predictor.0") != NULL, "%s", tpsc_last_error());
    ag_params_free(&p);
}
