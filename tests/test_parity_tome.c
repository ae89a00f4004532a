/* ToMe parity with the official code (fixture tests/fixtures/vit_tome.h5, made by
 * tests/reference/make_tome_fixture.py: facebookresearch/ToMe's tome.patch.timm applied to a
 * timm VisionTransformer with random weights; commits pinned in the script).
 *
 * One backbone (img 32, patch 4, N = 64, C 32, depth 4, H 4), three schedules: r = 8,
 * r = 15 (ToMe's own half-the-tokens limit bites in the last block) and ToMe's decreasing
 * schedule (12, -1) = [24, 16, 8, 0]; proportional attention on, as tome.patch.timm's default.
 * Every matching decision clears 1e-4 in cosine (the script checks), so:
 *   the merged-group assignment after every block (which token holds each patch) and the
 *   token sizes must be identical;
 *   logits: max|c - torch| <= 1e-4 * max|torch|;
 *   r = 8 also stores the gradient of the soft-target CE (training through ToMe's weighted
 *   averages): every parameter gradient within 1e-3 * max|torch| of that tensor, as
 *   test_parity_dense.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "autograd/ops.h"
#include "src/model/vit.h"
#include "support/fixture_run.h"

static void check_case(const char *name, int r, float inflect, bool grads) {
    fx_run run;
    fx_run_open(&run, "vit_tome.h5");
    tok_config tps = {.method = TOK_TOME, .tome_r = r, .tome_inflect = inflect, .prop_attn = true};
    fx_run_model(&run, &tps);
    const fixture *fx = &run.fx;
    const size_t B = run.img_shape[0], N = vit_num_patches(&run.cfg);
    vit_output out;
    ag_tensor *logits = fx_run_forward(&run, VIT_TRAIN, &out);
    char path[256];
    snprintf(path, sizeof path, "/%s/logits", name);
    fx_expect_close(fx, path, logits->data, ag_numel(logits), 1e-4);

    for (size_t i = 0; i < run.cfg.depth; i++) {
        size_t n_g, n_s, s_shape[2];
        int nd;
        snprintf(path, sizeof path, "/%s/group_b%zu", name, i);
        int64_t *group = fx_read_i64(fx, path, &n_g);
        snprintf(path, sizeof path, "/%s/size_b%zu", name, i);
        float *size = fx_read_f32(fx, path, &n_s, s_shape, &nd);
        cr_assert_eq(n_g, B * (1 + N), "%s", path);
        const int32_t *pt = out.patch_token_block[i];
        const float *sz = out.token_size_block[i];
        const size_t n_tok = s_shape[1]; /* tokens after block i, cls included */
        for (size_t b = 0; b < B; b++) {
            cr_assert_eq(group[b * (1 + N)], 0, "%s: cls moved", name);
            for (size_t p = 0; p < N; p++)
                cr_assert_eq(pt[b * N + p], group[b * (1 + N) + 1 + p] - 1,
                             "%s block %zu image %zu: patch %zu in token %d, torch %lld", name, i, b, p,
                             pt[b * N + p], (long long)group[b * (1 + N) + 1 + p] - 1);
            for (size_t j = 0; j < n_tok; j++) {
                float mine = sz ? sz[b * n_tok + j] : 1.0f;
                cr_assert_eq(mine, size[b * n_tok + j], "%s block %zu image %zu token %zu: size %g, torch %g", name, i,
                             b, j, (double)mine, (double)size[b * n_tok + j]);
            }
        }
        free(group), free(size);
    }

    if (grads) {
        ag_tensor *loss = ag_cross_entropy_soft(run.ctx, logits, run.t);
        snprintf(path, sizeof path, "/%s/loss", name);
        fx_expect_scalar(fx, path, loss, 1e-5);
        ag_params_zero_grad(&run.m.params);
        cr_assert_eq(ag_backward(run.ctx, loss), TPSC_OK, "%s", tpsc_last_error());
        snprintf(path, sizeof path, "/%s", name);
        fx_expect_grads(fx, path, &run.m.params, 1e-3);
    }
    fx_run_close(&run);
}

Test(parity_tome, constant_r8_logits_groups_sizes_and_gradients) { check_case("r8", 8, 0.0f, true); }
Test(parity_tome, r15_hits_tomes_half_limit_in_the_last_block) { check_case("r15", 15, 0.0f, false); }
Test(parity_tome, decreasing_schedule) { check_case("dec12", 12, -1.0f, false); }

Test(parity_tome, dense_when_r_is_zero) {
    /* r = 0 merges nothing: the fixture's dense logits (ToMe with model.r = 0) */
    fx_run run;
    fx_run_open(&run, "vit_tome.h5");
    tok_config tps = {.method = TOK_TOME, .tome_r = 0, .prop_attn = true};
    fx_run_model(&run, &tps);
    vit_output out;
    ag_tensor *logits = fx_run_forward(&run, VIT_INFER, &out);
    fx_expect_close(&run.fx, "/dense/logits", logits->data, ag_numel(logits), 1e-4);
    fx_run_close(&run);
}
