/* ToMe and ATME in the model: ATME's regions are 8-connected and meet the budget exactly,
 * unmerge gives back the full grid, training runs backward through the merges, and the bad
 * inputs of the issue (an r removing more tokens than exist, a budget leaving none, a grid
 * that is not square) are errors naming the key and the numbers. ToMe's numerics are checked
 * against the official code in test_parity_tome.c. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "src/model/vit.h"
#include "src/common/merge_rules.h"
#include "src/util/rng.h"

static vit_config small_cfg(void) {
    /* img 32, patch 4: an 8 x 8 grid of 64 patches */
    return (vit_config){.arch = "custom", .img_size = 32, .patch_size = 4, .in_chans = 3, .embed_dim = 24,
                        .depth = 4, .num_heads = 3, .num_classes = 5, .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
}

/* Every token's patches form one 8-connected region (flood fill over the g x g grid), every
 * token 0..n-1 holds at least one patch, and the patch counts equal the sizes. */
static void check_regions(const int32_t *pt, const float *size, size_t g, size_t n, const char *what, bool connected) {
    const size_t N = g * g;
    int count[256] = {0};
    cr_assert(n <= 256);
    for (size_t p = 0; p < N; p++) {
        cr_assert(pt[p] >= 0 && (size_t)pt[p] < n, "%s: patch %zu in token %d of %zu", what, p, pt[p], n);
        count[pt[p]]++;
    }
    for (size_t j = 0; j < n; j++) {
        cr_assert(count[j] > 0, "%s: token %zu holds no patch", what, j);
        if (size) cr_assert_eq(size[j], (float)count[j], "%s: token %zu size %g, %d patches", what, j, (double)size[j], count[j]);
    }
    int stack[256], visited[256];
    for (size_t j = 0; connected && j < n; j++) {
        memset(visited, 0, sizeof visited);
        size_t start = 0;
        while (pt[start] != (int32_t)j) start++;
        int top = 0, reached = 0;
        stack[top++] = (int)start;
        visited[start] = 1;
        while (top) {
            int p = stack[--top];
            reached++;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    int y = p / (int)g + dy, x = p % (int)g + dx;
                    if (y < 0 || x < 0 || y >= (int)g || x >= (int)g) continue;
                    int q = y * (int)g + x;
                    if (!visited[q] && pt[q] == (int32_t)j) visited[q] = 1, stack[top++] = q;
                }
        }
        cr_assert_eq(reached, count[j], "%s: token %zu covers %d patches but only %d are 8-connected to patch %zu", what,
                     j, count[j], reached, start);
    }
}

Test(tokens_merge, atme_plan_regions_connected_budget_exact) {
    /* Random importances and metrics on a 9 x 9 grid, three locations in a row, down to 5. */
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 7);
    const size_t g = 9, N = 81, D = 6;
    int32_t pt[81], map[81];
    float imp[81], metric[81 * 6];
    unsigned char scratch[81 * 64];
    for (size_t p = 0; p < N; p++) pt[p] = (int32_t)p;
    size_t n = N;
    const size_t keeps[] = {50, 20, 5};
    for (int s = 0; s < 3; s++) {
        for (size_t i = 0; i < n; i++) imp[i] = tpsc_rng_uniform(&rng);
        for (size_t i = 0; i < n * D; i++) metric[i] = tpsc_rng_normal(&rng);
        cr_assert(tok_atme_scratch_bytes(n) <= sizeof scratch);
        size_t m = tok_atme_plan(n, pt, g, imp, metric, D, n - keeps[s], map, scratch);
        cr_assert_eq(m, keeps[s], "stage %d kept %zu, budget %zu", s, m, keeps[s]);
        check_regions(pt, NULL, g, m, "plan", true);
        n = m;
    }
}

Test(tokens_merge, atme_sources_are_the_least_important) {
    /* 3 x 3 grid, remove 2: the two lowest-importance tokens (4 and 7) disappear as tokens;
     * every other token keeps its own patch. */
    int32_t pt[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8}, map[9];
    const float imp[9] = {0.9f, 0.8f, 0.7f, 0.6f, 0.05f, 0.5f, 0.4f, 0.01f, 0.3f};
    float metric[9 * 2];
    for (int i = 0; i < 9; i++) metric[2 * i] = 1.0f, metric[2 * i + 1] = 0.1f * (float)i;
    unsigned char scratch[9 * 64];
    cr_assert_eq(tok_atme_plan(9, pt, 3, imp, metric, 2, 2, map, scratch), 7);
    for (int i = 0; i < 9; i++)
        if (i != 4 && i != 7) cr_assert_eq(pt[i], map[i], "token %d moved", i);
    cr_assert(pt[4] != map[4] || map[4] == map[pt[4]], "token 4 folded");
    /* survivors keep their order: map of the survivors is increasing */
    int last = -1;
    for (int i = 0; i < 9; i++)
        if (i != 4 && i != 7) {
            cr_assert(map[i] > last);
            last = map[i];
        }
}

static void run_model(tok_config tps, size_t B, bool backward, vit_output *out_copy) {
    vit_config cfg = small_cfg();
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &tps), TPSC_OK, "%s", tpsc_last_error());
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 3);
    vit_model_init(&m, &rng);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *img = ag_new(ctx, 4, (size_t[]){B, 3, 32, 32});
    for (size_t i = 0; i < ag_numel(img); i++) img->data[i] = tpsc_rng_normal(&rng);
    vit_forward_opts opts = {.mode = backward ? VIT_TRAIN : VIT_INFER, .rng = &rng};
    vit_output out;
    ag_tensor *logits = vit_forward(ctx, &m, img, &opts, &out);
    cr_assert_not_null(logits, "%s", tpsc_last_error());
    const size_t N = 64, n = out.tokens->shape[1];
    for (size_t b = 0; b < B; b++)
        check_regions(out.patch_token + b * N, out.token_size ? out.token_size + b * (n + 1) + 1 : NULL, 8, n, "model",
                      tps.method == TOK_ATME); /* ToMe's groups need not be connected */
    /* unmerge: every patch cell takes its token's row -> the full grid [B,N,C] */
    ag_tensor *grid = tok_unmerge(ctx, out.tokens, out.patch_token, N);
    cr_assert_not_null(grid, "%s", tpsc_last_error());
    cr_assert(grid->shape[0] == B && grid->shape[1] == N && grid->shape[2] == cfg.embed_dim);
    for (size_t b = 0; b < B; b++)
        for (size_t p = 0; p < N; p++)
            cr_assert_eq(memcmp(grid->data + (b * N + p) * 24, out.tokens->data + (b * n + (size_t)out.patch_token[b * N + p]) * 24,
                                24 * sizeof(float)), 0);
    if (backward) {
        ag_tensor *loss = ag_mean(ctx, ag_mul(ctx, logits, logits));
        ag_params_zero_grad(&m.params);
        cr_assert_eq(ag_backward(ctx, loss), TPSC_OK, "%s", tpsc_last_error());
        ag_param *qkv = NULL;
        for (int i = 0; i < m.params.count; i++)
            if (!strcmp(m.params.items[i].name, "blocks.0.attn.qkv.weight")) qkv = &m.params.items[i];
        cr_assert_not_null(qkv);
        double g = 0;
        for (size_t i = 0; i < qkv->numel; i++) g += fabs(qkv->t.grad[i]);
        cr_assert(g > 0, "no gradient reached block 0 through the merges");
    }
    if (out_copy) *out_copy = out;
    ag_ctx_free(ctx);
    vit_model_free(&m);
}

Test(tokens_merge, atme_model_train_and_infer) {
    tok_config tps = {.method = TOK_ATME, .n_stages = 3, .prune_loc = {1, 2, 3}, .prop_attn = true};
    tok_config_fill_rho(&tps, 0.7f);
    run_model(tps, 2, true, NULL);
    run_model(tps, 3, false, NULL);
}

Test(tokens_merge, tome_model_train_and_infer) {
    tok_config tps = {.method = TOK_TOME, .tome_r = 10, .prop_attn = true};
    run_model(tps, 2, true, NULL);
    tps.tome_inflect = -1.0f;
    run_model(tps, 2, false, NULL);
}

Test(tokens_merge, bad_inputs_name_key_and_numbers) {
    vit_config cfg = small_cfg();
    vit_model m;
    /* 4 blocks x r 17 = 68 > 64 patch tokens */
    tok_config tome = {.method = TOK_TOME, .tome_r = 17};
    cr_assert_neq(vit_model_create(&m, &cfg, &tome), TPSC_OK);
    cr_assert(strstr(tpsc_last_error(), "tps.tome_r: 17") && strstr(tpsc_last_error(), "68 tokens") &&
                  strstr(tpsc_last_error(), "64 patch tokens"),
              "%s", tpsc_last_error());
    /* a budget of 0.01 * 64 < 1 token */
    tok_config atme = {.method = TOK_ATME, .n_stages = 1, .prune_loc = {2}, .keep_frac = {0.01f}};
    cr_assert_neq(vit_model_create(&m, &cfg, &atme), TPSC_OK);
    cr_assert(strstr(tpsc_last_error(), "tps.keep_ratio") && strstr(tpsc_last_error(), "64 patch tokens") &&
                  strstr(tpsc_last_error(), "leaves no token"),
              "%s", tpsc_last_error());
    /* a grid that is not square */
    atme.keep_frac[0] = 0.5f;
    cr_assert_neq(tok_config_validate_tokens(&atme, 4, 50), TPSC_OK);
    cr_assert(strstr(tpsc_last_error(), "square grid") && strstr(tpsc_last_error(), "50"), "%s", tpsc_last_error());
    /* and in the op itself */
    ag_ctx *ctx = ag_ctx_create(0);
    tok_merge_state st;
    cr_assert_eq(tok_merge_state_init(ctx, &st, 1, 50), TPSC_OK);
    ag_tensor *x = ag_zeros(ctx, 3, (size_t[]){1, 51, 6});
    ag_tensor *qkv = ag_zeros(ctx, 3, (size_t[]){1, 51, 18});
    ag_tensor *cls = ag_zeros(ctx, 2, (size_t[]){1, 50});
    cr_assert_null(tok_atme_merge(ctx, &st, x, qkv, 2, cls, 10));
    cr_assert(strstr(tpsc_last_error(), "50 patch tokens do not form a square grid"), "%s", tpsc_last_error());
    ag_ctx_free(ctx);
}

Test(tokens_merge, macs_of_tome_and_atme) {
    /* Reference: the block formula of src/common/macs.h written out by hand for the small
     * model (C 24, F 48, N 64, depth 4, K 5, patch 4x4x3): attention 4tC^2 + 2t^2C on the t
     * tokens entering the block, MLP 2tCF on the tokens after the merge, p C per merged token.
     * tome r = 8: t = 65, 57, 49, 41 in, 8 merged in each block. Exact in double. */
    const double C = 24, F = 48;
    double want = 64.0 * 48 * C + C * 5;
    for (int i = 0; i < 4; i++) {
        const double t = 65 - 8 * i;
        want += 4 * t * C * C + 2 * t * t * C + 8 * C + 2 * (t - 8) * C * F;
    }
    tok_config tome = {.method = TOK_TOME, .tome_r = 8};
    cr_assert_eq(tok_macs_per_image(&tome, 32, 4, 3, 24, 4, 48, 5), want);
    /* atme at blocks 1, 3 keeping 0.5 then 0.25 of 64: 32 then 16 spatial tokens */
    want = 64.0 * 48 * C + C * 5;
    const double tin[4] = {65, 65, 33, 33}, tout[4] = {65, 33, 33, 17};
    for (int i = 0; i < 4; i++)
        want += 4 * tin[i] * C * C + 2 * tin[i] * tin[i] * C + (tin[i] - tout[i]) * C + 2 * tout[i] * C * F;
    tok_config atme = {.method = TOK_ATME, .n_stages = 2, .prune_loc = {1, 3}, .keep_frac = {0.5f, 0.25f}};
    cr_assert_eq(tok_macs_per_image(&atme, 32, 4, 3, 24, 4, 48, 5), want);
}
