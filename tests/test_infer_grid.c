/* tps_patch_grid: the last block's tokens scattered back to the patch grid (the transfer
 * output of CAIT-style compression), against the framework's inference: its final normed
 * spatial tokens (vit_output.tokens) unmerged through its source map (tok_unmerge).
 *
 * Tolerance: max|lib - framework| <= 1e-5 * max|framework| over the grid (the same operations
 * in the same order; only BLAS blocking differs, as tests/test_infer_merge.c's logits). Every
 * cell of a merged region must hold the same vector, and the regions must be those of the
 * framework's source map (identical integers). */
#include <criterion/criterion.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/infer/tps_infer.h"
#include "src/model/vit.h"
#include "src/tokens/tokens.h"
#include "support/fixture.h"
#include "support/small_model.h"

static void one_thread(void) { omp_set_num_threads(1); }
TestSuite(infer_grid, .init = one_thread);

#define LIB_RTOL 1e-5

/* The framework's grid [B,N,C]: final normed spatial tokens, unmerged when tokens merged. */
static float *framework_grid(vit_model *m, const float *images, size_t B) {
    const vit_config *c = &m->cfg;
    const size_t N = vit_num_patches(c), C = c->embed_dim;
    ag_ctx *ctx = ag_ctx_create(0);
    ag_set_grad_enabled(ctx, false);
    ag_tensor *x = ag_wrap(ctx, (float *)images, NULL, 4, (size_t[]){B, c->in_chans, c->img_size, c->img_size}, false);
    vit_forward_opts opts = {.mode = VIT_INFER};
    vit_output out;
    cr_assert_not_null(vit_forward(ctx, m, x, &opts, &out), "%s", tpsc_last_error());
    cr_assert_not_null(out.tokens);
    ag_tensor *g = out.patch_token ? tok_unmerge(ctx, out.tokens, out.patch_token, N) : out.tokens;
    cr_assert_not_null(g, "%s", tpsc_last_error());
    cr_assert_eq(ag_numel(g), B * N * C);
    cr_assert(ag_is_contiguous(g));
    float *r = malloc(B * N * C * sizeof(float));
    memcpy(r, g->data, B * N * C * sizeof(float));
    ag_ctx_free(ctx);
    return r;
}

static void check_grid(tok_config t, size_t B, int threads, uint64_t seed) {
    omp_set_num_threads(threads);
    const vit_config c = sm_config();
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &c, &t), TPSC_OK, "%s", tpsc_last_error());
    sm_random_weights(&m, seed);
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_grid", "model.h5");
    sm_save_inference(path, &m);
    const size_t N = vit_num_patches(&c), C = c.embed_dim;
    float *images = sm_random_images(B, &c, seed + 1);
    float *want = framework_grid(&m, images, B);
    tps_model *lib;
    tps_workspace *ws;
    cr_assert_eq(tps_model_open(path, &lib), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tps_workspace_create(lib, B, &ws), TPS_OK, "%s", tps_last_error());
    float *logits = malloc(B * c.num_classes * sizeof(float)), *got = malloc(B * N * C * sizeof(float));
    cr_assert_eq(tps_run(ws, images, B, logits), TPS_OK, "%s", tps_last_error());
    for (size_t b = 0; b < B; b++) cr_assert_eq(tps_patch_grid(ws, b, got + b * N * C), TPS_OK, "%s", tps_last_error());
    const double scale = fx_max_abs(want, B * N * C), d = fx_max_diff(got, want, B * N * C);
    cr_expect(d <= LIB_RTOL * scale, "%s, batch %zu, %d threads: grids differ by %g (scale %g)", tok_method_name(t.method), B,
              threads, d, scale);
    if (tok_method_merges(t.method)) { /* a merged region: the same vector in each of its cells */
        size_t merged = 0;
        for (size_t b = 0; b < B; b++) {
            const int32_t *map;
            size_t n;
            cr_assert_eq(tps_token_map(ws, b, &map, &n), TPS_OK, "%s", tps_last_error());
            cr_assert_lt(n, N, "nothing merged: the test would prove little");
            for (size_t p = 1; p < N; p++)
                for (size_t q = 0; q < p; q++)
                    if (map[p] == map[q]) {
                        merged++;
                        cr_assert(!memcmp(got + (b * N + p) * C, got + (b * N + q) * C, C * sizeof(float)),
                                  "image %zu: patches %zu and %zu share token %d but not its vector", b, q, p, map[p]);
                        break;
                    }
        }
        cr_expect_gt(merged, 0);
    }
    tps_workspace_free(ws);
    tps_model_close(lib);
    free(images), free(want), free(got), free(logits);
    vit_model_free(&m);
    unlink(path);
}

Test(infer_grid, dense) { check_grid(sm_tokens(TOK_NONE, 1.0f), 3, 1, 21); }

Test(infer_grid, tome) {
    tok_config t = {.method = TOK_TOME, .tome_r = 6, .prop_attn = true, .squeeze_temp = 1.0f};
    check_grid(t, 3, 1, 22);
}

Test(infer_grid, atme_one_team_and_split) {
    tok_config t = sm_tokens(TOK_ATME, 0.7f);
    t.prop_attn = true;
    check_grid(t, 1, 2, 23); /* one image, a team of 2 */
    check_grid(t, 9, 2, 24); /* the split batch: one chunk per thread */
}

/* dTPS removes tokens: some patches have none, so there is no grid to give. */
Test(infer_grid, pruning_methods_are_refused) {
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_grid", "dtps.h5");
    sm_write_random_model(path, TOK_DTPS, 25);
    tps_model *lib;
    tps_workspace *ws;
    cr_assert_eq(tps_model_open(path, &lib), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tps_workspace_create(lib, 1, &ws), TPS_OK, "%s", tps_last_error());
    const vit_config c = sm_config();
    float *images = sm_random_images(1, &c, 26), logits[10], grid[64 * 48];
    cr_assert_eq(tps_run(ws, images, 1, logits), TPS_OK, "%s", tps_last_error());
    cr_expect_eq(tps_patch_grid(ws, 0, grid), TPS_ERR_ARG);
    cr_expect(strstr(tps_last_error(), "dtps removes tokens"), "%s", tps_last_error());
    free(images);
    tps_workspace_free(ws);
    tps_model_close(lib);
    unlink(path);
}
