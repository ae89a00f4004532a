/* Token merging shared by ToMe and ATME: the state a merging forward carries (sizes, log sizes
 * for proportional attention, the source map), the checks that need the token count, and
 * unmerge. The discrete rules live in merge_rules.h (shared with libtpsinfer). */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "src/common/merge_rules.h"
#include "src/tokens/tokens.h"
#include "src/tokens/tokens_internal.h"

void tok_tome_r_list(const tok_config *cfg, int depth, int *r_out) {
    tok_tome_schedule(depth, cfg->tome_r, (double)cfg->tome_inflect, r_out);
}

static size_t grid_side(size_t N) {
    size_t g = (size_t)llround(sqrt((double)N));
    return g * g == N ? g : 0;
}

tpsc_status tok_config_validate_tokens(const tok_config *cfg, int depth, size_t n_patches) {
    if (cfg->method == TOK_TOME) {
        if (depth < 1 || depth > 1024) return tpsc_fail(TPSC_ERR_CONFIG, "tps.tome_r: depth %d is not supported", depth);
        int r[1024];
        tok_tome_r_list(cfg, depth, r);
        long total = 0;
        for (int i = 0; i < depth; i++) {
            if (r[i] < 0)
                return tpsc_fail(TPSC_ERR_CONFIG, "tps.tome_r: %d with tps.tome_inflect %g gives r = %d in block %d",
                                 cfg->tome_r, (double)cfg->tome_inflect, r[i], i);
            total += r[i];
        }
        if (total > (long)n_patches)
            return tpsc_fail(TPSC_ERR_CONFIG,
                             "tps.tome_r: %d (tps.tome_inflect %g) merges %ld tokens over %d blocks, but the model "
                             "has only %zu patch tokens (at most r = %zu per block)",
                             cfg->tome_r, (double)cfg->tome_inflect, total, depth, n_patches,
                             n_patches / (size_t)depth);
    }
    if (tok_method_merges_on_grid(cfg->method)) {
        if (!grid_side(n_patches))
            return tpsc_fail(TPSC_ERR_CONFIG,
                             "tps.method: atme merges grid neighbours and needs a square grid of patch tokens; the "
                             "model has %zu",
                             n_patches);
        for (int s = 0; s < cfg->n_stages; s++)
            if ((double)n_patches * (double)cfg->keep_frac[s] < 1.0)
                return tpsc_fail(TPSC_ERR_CONFIG,
                                 "tps.keep_ratio: stage %d keeps %g of %zu patch tokens, which leaves no token "
                                 "(floor %g)",
                                 s + 1, (double)cfg->keep_frac[s], n_patches,
                                 floor((double)n_patches * (double)cfg->keep_frac[s]));
    }
    return TPSC_OK;
}

tpsc_status tok_merge_state_init(ag_ctx *ctx, tok_merge_state *st, size_t B, size_t N) {
    memset(st, 0, sizeof *st);
    st->B = B;
    st->N = N;
    st->g = grid_side(N);
    st->t = 1 + N;
    st->patch_token = ag_alloc(ctx, B * N * sizeof *st->patch_token);
    if (!st->patch_token) return ctx->status;
    for (size_t b = 0; b < B; b++)
        for (size_t p = 0; p < N; p++) st->patch_token[b * N + p] = (int32_t)p;
    return TPSC_OK;
}

/* Applies per-image maps [B,t] (m outputs each) to x and to the state. */
ag_tensor *tok_merge_apply(ag_ctx *ctx, tok_merge_state *st, ag_tensor *x, const int32_t *map, size_t m) {
    const size_t B = st->B, t = st->t, N = st->N;
    float *size = ag_alloc(ctx, B * m * sizeof *size);
    float *log_size = ag_alloc(ctx, B * m * sizeof *log_size);
    int32_t *pt = ag_alloc(ctx, B * N * sizeof *pt);
    if (!size || !log_size || !pt) return NULL;
    ag_tensor *y = ag_merge_tokens(ctx, x, st->size, map, m, size);
    if (!y) return NULL;
    for (size_t i = 0; i < B * m; i++) log_size[i] = logf(size[i]);
    for (size_t b = 0; b < B; b++)
        for (size_t p = 0; p < N; p++) pt[b * N + p] = map[b * t + 1 + (size_t)st->patch_token[b * N + p]] - 1;
    st->size = size;
    st->log_size = log_size;
    st->patch_token = pt;
    st->t = m;
    return y;
}

ag_tensor *tok_unmerge(ag_ctx *ctx, ag_tensor *tokens, const int32_t *patch_token, size_t N) {
    return ag_gather_rows(ctx, tokens, patch_token, N);
}
