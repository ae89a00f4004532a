/* libtpsinfer's token merging (ToMe, ATME) against the training framework's inference
 * (vit_forward, VIT_INFER) and against the official ToMe code (tests/fixtures/vit_tome.h5,
 * tests/reference/make_tome_fixture.py).
 *
 * Tolerances:
 *   library vs framework logits: max|lib - framework| <= 1e-5 * max|framework| (the same
 *     operations in the same order, merge_rules.h's decisions; only BLAS blocking differs);
 *   library vs the official ToMe: 1e-4 * max|torch|, as tests/test_parity_tome.c;
 *   source maps (which token holds each patch) and token counts: identical;
 *   BF16 vs FP32 (same file): tests/test_infer_bf16.c's bound 4 sqrt(2/3) 2^-8 sqrt(2 + 4 depth)
 *     max|fp32| for rounding alone; merging decisions whose cosines are closer than the rounding
 *     may flip, so, as there for pruning, >= 90% of the images within it and >= 90% with the
 *     same top-1. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/infer/tps_infer.h"
#include "src/io/checkpoint.h"
#include "src/model/vit.h"
#include "support/fixture.h"
#include "support/small_model.h"

static void one_thread(void) { omp_set_num_threads(1); }
TestSuite(infer_merge, .init = one_thread);

#define LIB_RTOL 1e-5
#define TORCH_RTOL 1e-4

/* tests/support/small_model.h's model (N = 64 patches, an 8 x 8 grid; depth 4) with merging */
static void make_model(vit_model *m, const tok_config *t, uint64_t seed) {
    vit_config c = sm_config();
    cr_assert_eq(vit_model_create(m, &c, t), TPSC_OK, "%s", tpsc_last_error());
    sm_random_weights(m, seed);
}

static tok_config tome_cfg(int r, float inflect) {
    return (tok_config){.method = TOK_TOME, .tome_r = r, .tome_inflect = inflect, .prop_attn = true, .squeeze_temp = 1.0f};
}

static tok_config atme_cfg(float rho) {
    tok_config t = {.method = TOK_ATME, .n_stages = 3, .prune_loc = {1, 2, 3}, .prop_attn = true, .squeeze_temp = 1.0f};
    tok_config_fill_rho(&t, rho);
    return t;
}

/* m saved as an inference file (what `tpsc export` writes), opened by the library */
static tps_model *open_lib(const vit_model *m, const char *name, const tps_open_options *opt, char *path) {
    sm_tmp_path(path, 512, "test_infer_merge", name);
    sm_save_inference(path, (vit_model *)m);
    tps_model *lib;
    cr_assert_eq(tps_model_open_ex(path, opt, &lib), TPS_OK, "%s", tps_last_error());
    return lib;
}

/* The framework's inference: logits [B,K], the final source map [B,N] and token count. */
typedef struct reference {
    float *logits;
    int32_t *patch_token;
    size_t tokens;
    size_t kept_count[TOK_MAX_STAGES];
} reference;

static void framework_infer(vit_model *m, const float *images, size_t B, const size_t *keep_override, reference *ref) {
    const vit_config *c = &m->cfg;
    const size_t N = vit_num_patches(c), K = c->num_classes;
    ag_ctx *ctx = ag_ctx_create(0);
    ag_set_grad_enabled(ctx, false);
    ag_tensor *x = ag_wrap(ctx, (float *)images, NULL, 4, (size_t[]){B, c->in_chans, c->img_size, c->img_size}, false);
    vit_forward_opts opts = {.mode = VIT_INFER, .keep_override = keep_override};
    vit_output out;
    ag_tensor *logits = vit_forward(ctx, m, x, &opts, &out);
    cr_assert_not_null(logits, "framework forward: %s", tpsc_last_error());
    ref->logits = malloc(B * K * sizeof(float));
    ref->patch_token = malloc(B * N * sizeof(int32_t));
    memcpy(ref->logits, logits->data, B * K * sizeof(float));
    memcpy(ref->patch_token, out.patch_token, B * N * sizeof(int32_t));
    ref->tokens = out.tokens ? out.tokens->shape[1] : 0;
    memcpy(ref->kept_count, out.kept_count, sizeof ref->kept_count);
    ag_ctx_free(ctx);
}

static void expect_same_map(const tps_workspace *ws, size_t B, size_t N, const reference *ref, const char *what) {
    for (size_t b = 0; b < B; b++) {
        const int32_t *pt;
        size_t n;
        cr_assert_eq(tps_token_map(ws, b, &pt, &n), TPS_OK, "%s", tps_last_error());
        cr_assert_eq(n, ref->tokens, "%s: image %zu keeps %zu tokens, framework %zu", what, b, n, ref->tokens);
        for (size_t p = 0; p < N; p++)
            cr_assert_eq(pt[p], ref->patch_token[b * N + p], "%s: image %zu patch %zu in token %d, framework %d", what,
                         b, p, pt[p], ref->patch_token[b * N + p]);
    }
}

/* Library vs framework on B images with `threads` OpenMP threads; atme_override > 0 runs
 * ATME at that keep ratio (the framework with the counts a model trained at it keeps). */
static void check_parity(tok_config t, size_t B, int threads, float atme_override, const char *what) {
    vit_model m;
    make_model(&m, &t, 11 + (uint64_t)t.method);
    char path[512];
    tps_model *lib = open_lib(&m, "parity.h5", NULL, path);
    tps_workspace *ws;
    omp_set_num_threads(threads);
    cr_assert_eq(tps_workspace_create(lib, B, &ws), TPS_OK, "%s", tps_last_error());
    const vit_config *c = &m.cfg;
    const size_t N = vit_num_patches(c), K = c->num_classes;
    float *images = fx_random_normal(B * c->in_chans * c->img_size * c->img_size, 99);
    size_t counts[TOK_MAX_STAGES], *override = NULL;
    tok_config costed = t;
    if (atme_override > 0.0f) {
        tps_budget bu = {.mode = TPS_BUDGET_FIXED, .keep_ratio = atme_override};
        cr_assert_eq(tps_workspace_set_budget(ws, &bu), TPS_OK, "%s", tps_last_error());
        costed = atme_cfg(atme_override);
        for (int s = 0; s < costed.n_stages; s++) counts[s] = tok_keep_count(&costed, s, N);
        override = counts;
    }
    float *logits = malloc(B * K * sizeof(float));
    cr_assert_eq(tps_run(ws, images, B, logits), TPS_OK, "%s", tps_last_error());
    omp_set_num_threads(1);
    reference ref;
    framework_infer(&m, images, B, override, &ref);
    const double scale = fx_max_abs(ref.logits, B * K), d = fx_max_diff(logits, ref.logits, B * K);
    cr_expect(d <= LIB_RTOL * scale, "%s: logits differ by %g (scale %g)", what, d, scale);
    expect_same_map(ws, B, N, &ref, what);
    const int stages = t.method == TOK_ATME ? t.n_stages : 0;
    cr_assert_eq(tps_num_stages(ws), stages, "%s: %d stages", what, tps_num_stages(ws));
    for (int s = 0; s < stages; s++) cr_expect_float_eq(tps_mean_kept(ws, s), (double)ref.kept_count[s], 1e-12, "stage %d", s);
    /* the cost model is the framework's (src/common/macs.c), exactly */
    const double want = vit_macs_per_image(c, &costed);
    cr_expect_float_eq(tps_model_macs(lib, atme_override), want, 0.5, "%s: MACs %.0f, framework %.0f", what,
                       tps_model_macs(lib, atme_override), want);
    free(ref.logits), free(ref.patch_token), free(logits), free(images);
    tps_workspace_free(ws);
    tps_model_close(lib);
    vit_model_free(&m);
    unlink(path);
}

Test(infer_merge, tome_r8) { check_parity(tome_cfg(8, 0.0f), 3, 1, 0.0f, "tome r8"); }
/* 65 -> 50 -> 35 -> 20 -> 11: ToMe's half-the-tokens limit bites in the last block */
Test(infer_merge, tome_r15_hits_the_half_limit) { check_parity(tome_cfg(15, 0.0f), 3, 1, 0.0f, "tome r15"); }
Test(infer_merge, tome_decreasing_schedule) { check_parity(tome_cfg(12, -1.0f), 3, 1, 0.0f, "tome dec12"); }
Test(infer_merge, tome_without_prop_attn) {
    tok_config t = tome_cfg(8, 0.0f);
    t.prop_attn = false;
    check_parity(t, 3, 1, 0.0f, "tome r8 plain attention");
}
Test(infer_merge, tome_r0_is_dense) { check_parity(tome_cfg(0, 0.0f), 2, 1, 0.0f, "tome r0"); }
Test(infer_merge, tome_one_image_two_threads) { check_parity(tome_cfg(8, 0.0f), 1, 2, 0.0f, "tome B1 T2"); }
Test(infer_merge, tome_shared_loops_two_threads) { check_parity(tome_cfg(8, 0.0f), 3, 2, 0.0f, "tome B3 T2"); }
Test(infer_merge, tome_split_batch_two_threads) { check_parity(tome_cfg(8, 0.0f), 9, 2, 0.0f, "tome B9 split"); }
Test(infer_merge, atme_rho07) { check_parity(atme_cfg(0.7f), 3, 1, 0.0f, "atme 0.7"); }
Test(infer_merge, atme_keep_ratio_override) { check_parity(atme_cfg(0.7f), 3, 1, 0.5f, "atme at 0.5"); }
Test(infer_merge, atme_one_image_two_threads) { check_parity(atme_cfg(0.7f), 1, 2, 0.0f, "atme B1 T2"); }
Test(infer_merge, atme_split_batch_two_threads) { check_parity(atme_cfg(0.7f), 9, 2, 0.0f, "atme B9 split"); }

/* The official ToMe: the fixture's model through an inference file, each case's logits and
 * the merged groups after the last block. */
static void check_official(const char *name, int r, float inflect) {
    fixture fx;
    fx_open(&fx, "vit_tome.h5");
    vit_config cfg;
    fx_vit_config(&fx, &cfg);
    tok_config t = tome_cfg(r, inflect);
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &t), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&fx, "/model", &m.params);
    size_t n_img, shape[4], n_ref, n_g;
    int nd;
    float *images = fx_read_f32(&fx, "/input/images", &n_img, shape, &nd);
    const size_t B = shape[0], N = vit_num_patches(&cfg), K = cfg.num_classes;
    char path[512], ds[128];
    tps_model *lib = open_lib(&m, "official.h5", NULL, path);
    tps_workspace *ws;
    cr_assert_eq(tps_workspace_create(lib, B, &ws), TPS_OK, "%s", tps_last_error());
    float *logits = malloc(B * K * sizeof(float));
    cr_assert_eq(tps_run(ws, images, B, logits), TPS_OK, "%s", tps_last_error());
    snprintf(ds, sizeof ds, "/%s/logits", name);
    float *ref = fx_read_f32(&fx, ds, &n_ref, NULL, NULL);
    cr_assert_eq(n_ref, B * K);
    const double scale = fx_max_abs(ref, n_ref), d = fx_max_diff(logits, ref, n_ref);
    cr_expect(d <= TORCH_RTOL * scale, "%s: logits differ from the official ToMe by %g (scale %g)", name, d, scale);
    snprintf(ds, sizeof ds, "/%s/group_b%zu", name, cfg.depth - 1);
    int64_t *group = fx_read_i64(&fx, ds, &n_g); /* [B, 1+N]: token of each input row, cls first */
    cr_assert_eq(n_g, B * (1 + N));
    for (size_t b = 0; b < B; b++) {
        const int32_t *pt;
        size_t n;
        cr_assert_eq(tps_token_map(ws, b, &pt, &n), TPS_OK, "%s", tps_last_error());
        for (size_t p = 0; p < N; p++)
            cr_assert_eq(pt[p], group[b * (1 + N) + 1 + p] - 1, "%s image %zu: patch %zu in token %d, official %lld",
                         name, b, p, pt[p], (long long)group[b * (1 + N) + 1 + p] - 1);
    }
    free(group), free(ref), free(logits), free(images);
    tps_workspace_free(ws);
    tps_model_close(lib);
    vit_model_free(&m);
    unlink(path);
    fx_close(&fx);
}

Test(infer_merge, official_tome_r8) { check_official("r8", 8, 0.0f); }
Test(infer_merge, official_tome_r15) { check_official("r15", 15, 0.0f); }
Test(infer_merge, official_tome_decreasing) { check_official("dec12", 12, -1.0f); }

/* ---- BF16 against FP32 on the same file --------------------------------------------------- */

static void check_bf16(tok_config t, const char *what) {
    if (tps_precision_supported(TPS_PRECISION_BF16) != TPS_OK) cr_skip_test("BF16 unavailable: %s", tps_last_error());
    vit_model m;
    make_model(&m, &t, 23 + (uint64_t)t.method);
    char path[512];
    const tps_open_options o16 = {.precision = TPS_PRECISION_BF16};
    tps_model *f32 = open_lib(&m, "bf16.h5", NULL, path), *b16;
    cr_assert_eq(tps_model_open_ex(path, &o16, &b16), TPS_OK, "%s", tps_last_error());
    const size_t B = 20, K = m.cfg.num_classes;
    const double rtol = 4.0 * sqrt(2.0 / 3.0) / 256.0 * sqrt(2.0 + 4.0 * (double)m.cfg.depth);
    float *images = fx_random_normal(B * 3 * 32 * 32, 5), *l32 = malloc(B * K * sizeof(float)), *l16 = malloc(B * K * sizeof(float));
    tps_workspace *w32, *w16;
    cr_assert_eq(tps_workspace_create(f32, B, &w32), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tps_workspace_create(b16, B, &w16), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tps_run(w32, images, B, l32), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tps_run(w16, images, B, l16), TPS_OK, "%s", tps_last_error());
    const double scale = fx_max_abs(l32, B * K);
    size_t close = 0, same_top1 = 0;
    for (size_t b = 0; b < B; b++) {
        close += fx_max_diff(l16 + b * K, l32 + b * K, K) <= rtol * scale;
        size_t a32 = 0, a16 = 0;
        for (size_t k = 1; k < K; k++) {
            if (l32[b * K + k] > l32[b * K + a32]) a32 = k;
            if (l16[b * K + k] > l16[b * K + a16]) a16 = k;
        }
        same_top1 += a32 == a16;
    }
    cr_expect(close >= 0.9 * B, "%s: %zu of %zu images within %g of the FP32 logits", what, close, B, rtol * scale);
    cr_expect(same_top1 >= 0.9 * B, "%s: %zu of %zu images with the same top-1", what, same_top1, B);
    free(images), free(l32), free(l16);
    tps_workspace_free(w32), tps_workspace_free(w16);
    tps_model_close(f32), tps_model_close(b16);
    vit_model_free(&m);
    unlink(path);
}

Test(infer_merge, bf16_tome) { check_bf16(tome_cfg(8, 0.0f), "tome bf16"); }
Test(infer_merge, bf16_atme) { check_bf16(atme_cfg(0.7f), "atme bf16"); }

/* ---- bad input ------------------------------------------------------------------------- */

Test(infer_merge, tome_has_no_keep_ratio_and_dense_has_no_map) {
    tok_config t = tome_cfg(8, 0.0f);
    vit_model m;
    make_model(&m, &t, 3);
    char path[512];
    tps_model *lib = open_lib(&m, "budget.h5", NULL, path);
    tps_workspace *ws;
    cr_assert_eq(tps_workspace_create(lib, 1, &ws), TPS_OK, "%s", tps_last_error());
    tps_budget bu = {.mode = TPS_BUDGET_FIXED, .keep_ratio = 0.5f};
    cr_assert_eq(tps_workspace_set_budget(ws, &bu), TPS_ERR_ARG);
    cr_expect(strstr(tps_last_error(), "tome"), "%s", tps_last_error());
    const int32_t *pt;
    size_t n;
    cr_expect_eq(tps_token_map(ws, 0, &pt, &n), TPS_ERR_ARG, "no run yet");
    tps_workspace_free(ws);
    tps_model_close(lib);
    vit_model_free(&m);
    unlink(path);
    tok_config dense = {.method = TOK_NONE};
    make_model(&m, &dense, 3);
    lib = open_lib(&m, "dense.h5", NULL, path);
    cr_assert_eq(tps_workspace_create(lib, 1, &ws), TPS_OK, "%s", tps_last_error());
    cr_expect_eq(tps_token_map(ws, 0, &pt, &n), TPS_ERR_ARG);
    cr_expect(strstr(tps_last_error(), "does not merge"), "%s", tps_last_error());
    tps_workspace_free(ws);
    tps_model_close(lib);
    vit_model_free(&m);
    unlink(path);
}

Test(infer_merge, tome_r_beyond_the_patches_is_refused_naming_the_numbers) {
    /* r = 17 at depth 4 merges 68 > 64 tokens: the framework refuses it at the recipe, a file
     * that says so anyway is refused at open */
    tok_config ok = tome_cfg(8, 0.0f);
    vit_model m;
    make_model(&m, &ok, 3);
    m.tps.tome_r = 17;
    char path[512];
    snprintf(path, sizeof path, "%s/test_infer_merge_%d_big_r.h5", TPSC_BINARY_DIR, (int)getpid());
    sm_save_inference(path, &m);
    tps_model *lib = NULL;
    cr_assert_eq(tps_model_open(path, &lib), TPS_ERR_FORMAT);
    cr_expect(strstr(tps_last_error(), "tome_r 17") && strstr(tps_last_error(), "68 tokens") &&
                  strstr(tps_last_error(), "64 patch tokens"),
              "%s", tps_last_error());
    vit_model_free(&m);
    unlink(path);
}
