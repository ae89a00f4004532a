/* Pruning with real removal: predictor stages (dynamicvit, dtps) and EViT stages (evit,
 * etps). Token counts, kept order (descending score, ties to the lower index), gathered rows,
 * squeeze values against a double transcription of the official eval-mode TPSModule, the
 * host each squeezed token is reported in (squeezed_into), EViT's fused token by hand, and
 * finite-difference gradients of the EViT stages. */
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

/* Official eval TPSModule for one image: kept rows kr[k], dropped rows dr[p] of x (row
 * pointers), out [k,c]. */
static void ref_hosts(const float *const *kr, int k, const float *const *dr, int p, int c, double *out) {
    double den[16], acc[16 * 16] = {0};
    for (int j = 0; j < k; j++) den[j] = E_HOST;
    for (int i = 0; i < p; i++) {
        double S[16], mx = -1e30;
        for (int j = 0; j < k; j++) {
            S[j] = fx_cosine(dr[i], kr[j], c);
            if (S[j] > mx) mx = S[j];
        }
        for (int j = 0; j < k; j++) {
            if (S[j] != mx) continue;
            den[j] += exp(S[j]);
            for (int q = 0; q < c; q++) acc[j * c + q] += exp(S[j]) * dr[i][q];
        }
    }
    for (int j = 0; j < k; j++)
        for (int q = 0; q < c; q++) out[j * c + q] = (E_HOST * kr[j][q] + acc[j * c + q]) / den[j];
}

/* ref_hosts on image b of x [B,1+N,C] whose kept positions are kept[0..k): the dropped rows
 * are the others, in position order. out [k,C]. */
static void ref_hosts_of(const float *x, int b, const int32_t *kept, int k, double *out) {
    const float *kr[N], *dr[N];
    bool used[N] = {false};
    for (int r = 0; r < k; r++) {
        kr[r] = x + (b * (1 + N) + 1 + kept[r]) * C;
        used[kept[r]] = true;
    }
    int p = 0;
    for (int i = 0; i < N; i++)
        if (!used[i]) dr[p++] = x + (b * (1 + N) + 1 + i) * C;
    ref_hosts(kr, k, dr, p, C, out);
}

/* squeezed_into [B,N] of a stage that kept kept[B,k] of x [B,1+N,C]: a kept token -1; a
 * dropped one (squeezes = true) the kept position of highest cosine similarity (fx_cosine, in
 * double; the first in kept order on a tie), or -1 (methods that do not squeeze). Exact. */
static void assert_squeezed_into(const float *x, const int32_t *kept, int k, const int32_t *into, bool squeezes) {
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++) {
            bool is_kept = false;
            int32_t want = -1;
            double best = -INFINITY;
            for (int r = 0; r < k; r++) {
                const int32_t j = kept[b * k + r];
                is_kept |= j == i;
                const double cos = fx_cosine(x + (b * (1 + N) + 1 + i) * C, x + (b * (1 + N) + 1 + j) * C, C);
                if (cos > best) best = cos, want = j;
            }
            if (is_kept || !squeezes) want = -1;
            cr_assert_eq(into[b * N + i], want, "image %d token %d: squeezed into %d, want %d", b, i, into[b * N + i], want);
        }
}

/* One predictor (stage 0, width C) with random weights, its stage config, and a context. */
typedef struct setup {
    ag_params params;
    tok_predictor pred;
    tok_config cfg;
    ag_ctx *ctx;
} setup;

static void make_setup(setup *s, tok_method m) {
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 3);
    fx_random_predictor(&s->params, &s->pred, 0, C, &rng);
    s->cfg = (tok_config){.method = m, .n_stages = 2, .prune_loc = {3, 6}, .squeeze_temp = 1.0f};
    tok_config_fill_rho(&s->cfg, 0.7f);
    s->ctx = ag_ctx_create(0);
    cr_assert_not_null(s->ctx);
}

static void free_setup(setup *s) {
    ag_ctx_free(s->ctx);
    ag_params_free(&s->params);
}

static void random_tokens(float *x, size_t count, uint64_t seed) {
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    for (size_t i = 0; i < count; i++) x[i] = tpsc_rng_normal(&rng);
}

/* keep scores of the n spatial tokens of x [B,1+n,C], with prev = ones */
static void keep_scores(setup *s, float *x, size_t n, float *score) {
    ag_ctx *ctx = ag_ctx_create(0);
    float ones[B * 16];
    for (int i = 0; i < B * 16; i++) ones[i] = 1.0f;
    float sp[B * 16 * C];
    for (int b = 0; b < B; b++) memcpy(sp + b * n * C, x + (b * (1 + n) + 1) * C, n * C * sizeof(float));
    ag_tensor *tx = ag_wrap(ctx, sp, NULL, 3, (size_t[]){B, n, C}, false);
    ag_tensor *tp = ag_wrap(ctx, ones, NULL, 2, (size_t[]){B, n}, false);
    ag_tensor *lp = tok_predictor_forward(ctx, &s->pred, &s->params, tx, tp);
    cr_assert_not_null(lp, "%s", tpsc_last_error());
    for (size_t i = 0; i < B * n; i++) score[i] = lp->data[2 * i];
    ag_ctx_free(ctx);
}

/* kept_pos is the top k by score, in descending order, ties to the lower index */
static void assert_descending_topk(const float *score, size_t n, const int32_t *kept, size_t k);

/* One predictor stage keeping k of the N tokens of x [B,1+N,C], random from seed: checks the
 * kept positions (kept [B,k]) are the top k of the predictor's scores, in descending order.
 * Returns the stage's output, [B,1+k,C] in s->ctx. */
static ag_tensor *run_stage(setup *s, float *x, uint64_t seed, size_t k, int32_t *kept) {
    ag_ctx *ctx = s->ctx;
    float score[B * N];
    int32_t into[B * N];
    random_tokens(x, B * (1 + N) * C, seed);
    keep_scores(s, x, N, score);
    ag_tensor *tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){B, 1 + N, C}, false);
    ag_tensor *y = tok_infer_stage(ctx, &s->cfg, &s->pred, &s->params, tx, k, kept, into);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    assert_descending_topk(score, N, kept, k);
    assert_squeezed_into(x, kept, (int)k, into, tok_method_squeezes(s->cfg.method));
    return y;
}

static void assert_descending_topk(const float *score, size_t n, const int32_t *kept, size_t k) {
    for (int b = 0; b < B; b++) {
        bool used[16] = {false};
        for (size_t r = 0; r < k; r++) {
            const int32_t i = kept[b * k + r];
            cr_assert(i >= 0 && (size_t)i < n && !used[i], "image %d rank %zu: bad or repeated position %d", b, r, i);
            used[i] = true;
            if (r > 0) {
                const int32_t h = kept[b * k + r - 1];
                cr_assert(score[b * n + h] > score[b * n + i] || (score[b * n + h] == score[b * n + i] && h < i),
                          "image %d: rank %zu (pos %d, %g) after pos %d (%g)", b, r, i, (double)score[b * n + i], h,
                          (double)score[b * n + h]);
            }
        }
        for (size_t i = 0; i < n; i++)
            if (!used[i])
                cr_assert(score[b * n + i] <= score[b * n + kept[b * k + k - 1]], "image %d: dropped %zu outscores kept", b, i);
    }
}

Test(tps_infer, dynamicvit_keeps_topk_rows_in_score_order) {
    setup s;
    make_setup(&s, TOK_DYNAMICVIT);
    float x[B * (1 + N) * C];
    const size_t k = tok_keep_count(&s.cfg, 0, N); /* int(7 * 0.7) = 4 */
    cr_assert_eq(k, 4);
    int32_t kept[B * 4];
    ag_set_grad_enabled(s.ctx, false);
    ag_tensor *y = run_stage(&s, x, 8, k, kept);
    cr_assert(y->ndim == 3 && y->shape[0] == B && y->shape[1] == 1 + k && y->shape[2] == C);
    for (int b = 0; b < B; b++) {
        cr_assert_arr_eq(y->data + b * (1 + k) * C, x + b * (1 + N) * C, C * sizeof(float), "cls row of image %d", b);
        for (size_t r = 0; r < k; r++)
            cr_assert_arr_eq(y->data + (b * (1 + k) + 1 + r) * C, x + (b * (1 + N) + 1 + kept[b * k + r]) * C,
                             C * sizeof(float), "image %d kept row %zu", b, r);
    }
    free_setup(&s);
}

Test(tps_infer, dtps_squeezes_dropped_into_hosts) {
    /* reference: ref_hosts, the eval TPSModule in double, on the kept / dropped rows in score
     * order; tolerance 1e-5 */
    setup s;
    make_setup(&s, TOK_DTPS);
    float x[B * (1 + N) * C];
    const size_t k = 4;
    int32_t kept[B * 4];
    ag_tensor *y = run_stage(&s, x, 9, k, kept);
    cr_assert(y->shape[1] == 1 + k);
    for (int b = 0; b < B; b++) {
        double want[N * C];
        ref_hosts_of(x, b, kept + b * k, (int)k, want);
        cr_assert_arr_eq(y->data + b * (1 + k) * C, x + b * (1 + N) * C, C * sizeof(float), "cls row");
        for (size_t r = 0; r < k; r++)
            for (int q = 0; q < C; q++)
                cr_assert_float_eq(y->data[(b * (1 + k) + 1 + r) * C + q], want[r * C + q], 1e-5, "image %d host %zu", b, r);
    }
    free_setup(&s);
}

Test(tps_infer, keep_all_is_a_permutation_by_score) {
    /* rho = 1: every token stays, reordered by descending score (as the official argsort),
     * and dtps has nothing to squeeze, so the rows are exactly the input rows */
    setup s;
    make_setup(&s, TOK_DTPS);
    float x[B * (1 + N) * C];
    int32_t kept[B * N];
    ag_tensor *y = run_stage(&s, x, 10, N, kept);
    for (int b = 0; b < B; b++)
        for (int r = 0; r < N; r++)
            cr_assert_arr_eq(y->data + (b * (1 + N) + 1 + r) * C, x + (b * (1 + N) + 1 + kept[b * N + r]) * C,
                             C * sizeof(float), "image %d row %d", b, r);
    free_setup(&s);
}

Test(tps_infer, equal_scores_keep_position_order) {
    /* identical tokens get identical scores: the kept positions are 0, 1, 2, 3 */
    setup s;
    make_setup(&s, TOK_DYNAMICVIT);
    float x[B * (1 + N) * C];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < 1 + N; t++)
            for (int q = 0; q < C; q++) x[(b * (1 + N) + t) * C + q] = (float)(q + 1) * (t == 0 ? -1.0f : 0.5f);
    int32_t kept[B * 4];
    ag_ctx *ctx = s.ctx;
    ag_tensor *tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){B, 1 + N, C}, false);
    cr_assert_not_null(tok_infer_stage(ctx, &s.cfg, &s.pred, &s.params, tx, 4, kept, NULL), "%s", tpsc_last_error());
    for (int b = 0; b < B; b++)
        for (int r = 0; r < 4; r++) cr_assert_eq(kept[b * 4 + r], r, "image %d rank %d", b, r);
    free_setup(&s);
}

Test(tps_infer, bad_counts_and_methods_are_errors) {
    setup s;
    make_setup(&s, TOK_DTPS);
    float x[B * (1 + N) * C] = {0};
    ag_ctx *ctx = s.ctx;
    ag_tensor *tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){B, 1 + N, C}, false);
    cr_assert_null(tok_infer_stage(ctx, &s.cfg, &s.pred, &s.params, tx, N + 1, NULL, NULL));
    cr_assert(strstr(tpsc_last_error(), "keeping 8 of 7 tokens") != NULL, "%s", tpsc_last_error());
    ag_ctx_reset(ctx);
    tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){B, 1 + N, C}, false);
    s.cfg.method = TOK_EVIT;
    cr_assert_null(tok_infer_stage(ctx, &s.cfg, &s.pred, &s.params, tx, 3, NULL, NULL));
    cr_assert(strstr(tpsc_last_error(), "evit has no score predictor") != NULL, "%s", tpsc_last_error());
    free_setup(&s);
}

/* ---- EViT stages --------------------------------------------------------------------------- */

Test(tps_evit, fused_token_by_hand) {
    /* n = 4, cls_attn = [0.1, 0.4, 0.2, 0.3], k = 2: kept positions [1, 3] (descending),
     * fused = 0.1 x_0 + 0.2 x_2; output [cls, x_1, x_3, fused] */
    tok_config cfg = {.method = TOK_EVIT, .n_stages = 1, .prune_loc = {3}, .keep_frac = {0.5f}};
    float x[5 * 2] = {9, 9, 1, 2, 3, 4, 5, 6, 7, 8}, a[4] = {0.1f, 0.4f, 0.2f, 0.3f};
    int32_t kept[2];
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){1, 5, 2}, false);
    ag_tensor *ta = ag_wrap(ctx, a, NULL, 2, (size_t[]){1, 4}, false);
    ag_tensor *y = tok_evit_stage(ctx, &cfg, tx, ta, 2, kept, NULL);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    cr_assert(y->shape[1] == 4);
    cr_assert(kept[0] == 1 && kept[1] == 3);
    const float want[] = {9, 9, 3, 4, 7, 8, 0.1f * 1 + 0.2f * 5, 0.1f * 2 + 0.2f * 6};
    for (int i = 0; i < 8; i++) cr_assert_float_eq(y->data[i], want[i], 1e-6, "element %d", i);
    /* keep all: EViT leaves the sequence untouched, no fused token */
    ag_tensor *same = tok_evit_stage(ctx, &cfg, tx, ta, 4, NULL, NULL);
    cr_assert_eq(same, tx);
    /* without fusion (EViT's default without --fuse_token): [cls, x_1, x_3] only */
    cfg.evit_drop_pruned = true;
    ag_tensor *dropped = tok_evit_stage(ctx, &cfg, tx, ta, 2, kept, NULL);
    cr_assert_not_null(dropped, "%s", tpsc_last_error());
    cr_assert(dropped->shape[1] == 3 && kept[0] == 1 && kept[1] == 3);
    for (int i = 0; i < 6; i++) cr_assert_eq(dropped->data[i], want[i], "element %d", i);
    ag_ctx_free(ctx);
}

/* cls attention with a spacing of 0.05 between scores: the finite-difference step (1e-2)
 * cannot reorder them. kept (k = 4) in image 0: 6, 2, 0, 5; image 1: 0, 1, 3, 4. */
static const float ATTN[B * N] = {0.30f, 0.05f, 0.35f, 0.10f, 0.15f, 0.25f, 0.40f,
                                  0.40f, 0.35f, 0.05f, 0.30f, 0.25f, 0.10f, 0.20f};

static ag_tensor *f_evit(ag_ctx *ctx, ag_tensor **in, void *user) {
    const tok_config *cfg = user;
    return tok_evit_stage(ctx, cfg, in[0], in[1], 4, NULL, NULL);
}

Test(tps_evit, evit_gradcheck_x_and_attention) {
    /* gradcheck h 1e-2 (below half the attention spacing), atol 1e-3, rtol 1e-2 */
    tok_config cfg = {.method = TOK_EVIT, .n_stages = 1, .prune_loc = {3}, .keep_frac = {0.6f}};
    gc_input in[2] = {{3, {B, 1 + N, C}, true, NULL}, {2, {B, N}, true, ATTN}};
    GRADCHECK(f_evit, 2, in, &cfg, 1e-2, 1e-3, 1e-2);
}

/* Tokens whose dropped rows (per ATTN) pick their host by a cosine margin >= 0.05. */
static void etps_margin_tokens(float *x) {
    static const int kept[B][4] = {{6, 2, 0, 5}, {0, 1, 3, 4}};
    for (uint64_t seed = 1; seed < 1000; seed++) {
        random_tokens(x, B * (1 + N) * C, seed);
        bool ok = true;
        for (int b = 0; b < B && ok; b++)
            for (int i = 0; i < N && ok; i++) {
                bool is_kept = false;
                for (int r = 0; r < 4; r++) is_kept |= kept[b][r] == i;
                if (is_kept) continue;
                double best = -2, second = -2;
                for (int r = 0; r < 4; r++) {
                    double s = fx_cosine(x + (b * (1 + N) + 1 + i) * C, x + (b * (1 + N) + 1 + kept[b][r]) * C, C);
                    if (s > best) second = best, best = s;
                    else if (s > second) second = s;
                }
                ok = best - second >= 0.05;
            }
        if (ok) return;
    }
    cr_assert_fail("no seed below 1000 gives host margins of 0.05");
}

Test(tps_evit, etps_squeezes_and_gradchecks) {
    tok_config cfg = {.method = TOK_ETPS, .n_stages = 1, .prune_loc = {3}, .keep_frac = {0.6f}, .squeeze_temp = 1.0f};
    float x[B * (1 + N) * C];
    etps_margin_tokens(x);
    /* values: [cls; eval TPSModule(kept, dropped)] against ref_hosts, tolerance 1e-5 */
    int32_t kept[B * 4], into[B * N];
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){B, 1 + N, C}, false);
    ag_tensor *ta = ag_wrap(ctx, (float *)ATTN, NULL, 2, (size_t[]){B, N}, false);
    ag_tensor *y = tok_evit_stage(ctx, &cfg, tx, ta, 4, kept, into);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    cr_assert(y->shape[1] == 5);
    const int32_t want_kept[B * 4] = {6, 2, 0, 5, 0, 1, 3, 4};
    cr_assert_arr_eq(kept, want_kept, sizeof want_kept);
    assert_squeezed_into(x, kept, 4, into, true);
    cfg.method = TOK_EVIT; /* fuses, squeezes nothing */
    cr_assert_not_null(tok_evit_stage(ctx, &cfg, tx, ta, 4, kept, into), "%s", tpsc_last_error());
    assert_squeezed_into(x, kept, 4, into, false);
    cfg.method = TOK_ETPS;
    for (int b = 0; b < B; b++) {
        double want[4 * C];
        ref_hosts_of(x, b, kept + b * 4, 4, want);
        for (int i = 0; i < 4 * C; i++) cr_assert_float_eq(y->data[(b * 5 + 1) * C + i], want[i], 1e-5, "image %d", b);
    }
    ag_ctx_free(ctx);
    /* gradients through x (attention only selects): gradcheck h 1e-2, atol 1e-3, rtol 1e-2 */
    gc_input in[2] = {{3, {B, 1 + N, C}, true, x}, {2, {B, N}, false, ATTN}};
    GRADCHECK(f_evit, 2, in, &cfg, 1e-2, 1e-3, 1e-2);
}

Test(tps_evit, wrong_attention_shape_is_an_error) {
    tok_config cfg = {.method = TOK_EVIT, .n_stages = 1, .prune_loc = {3}, .keep_frac = {0.6f}};
    float x[1 * 5 * 2] = {0}, a[3] = {0};
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *tx = ag_wrap(ctx, x, NULL, 3, (size_t[]){1, 5, 2}, false);
    ag_tensor *ta = ag_wrap(ctx, a, NULL, 2, (size_t[]){1, 3}, false);
    cr_assert_null(tok_evit_stage(ctx, &cfg, tx, ta, 2, NULL, NULL));
    cr_assert(strstr(tpsc_last_error(), "cls_attn [1, 3] must be [B,n] = [1,4]") != NULL, "%s", tpsc_last_error());
    ag_ctx_free(ctx);
}
