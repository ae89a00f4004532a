/* ATME (our CAIT-style design, docs/merging.md) in the framework: importance from the cls
 * attention, neighbour-only, importance-directed folding (merge_rules.h), then the
 * size-weighted merge (ag_merge_tokens). Train and inference are the same computation. */
#include "autograd/ops.h"
#include "src/common/merge_rules.h"
#include "src/tokens/tokens.h"
#include "src/tokens/tokens_internal.h"

ag_tensor *tok_atme_merge(ag_ctx *ctx, tok_merge_state *st, ag_tensor *x, const ag_tensor *qkv, size_t heads,
                          const ag_tensor *cls_attn, size_t keep) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    const size_t B = st->B, t = st->t, n = t - 1, C = x->shape[2], D = C / heads, N = st->N;
    char sx[64];
    if (x->shape[0] != B || x->shape[1] != t || !qkv || qkv->shape[1] != t || qkv->shape[2] != 3 * C || !cls_attn ||
        cls_attn->shape[0] != B || cls_attn->shape[1] != n)
        return ag_error(ctx, TPSC_ERR_SHAPE, "atme: x %s does not match the merge state (B %zu, t %zu), qkv or cls_attn",
                        ag_shape_str(x, sx, sizeof sx), B, t);
    if (st->g == 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "atme: %zu patch tokens do not form a square grid", N);
    if (keep < 1)
        return ag_error(ctx, TPSC_ERR_ARG, "atme: a budget of %zu tokens leaves none of %zu", keep, n);
    const size_t k = tok_atme_remove_count(n, keep);
    if (k == 0) return x;
    float *metric = ag_alloc(ctx, t * D * sizeof *metric);
    void *scratch = ag_alloc(ctx, tok_atme_scratch_bytes(n));
    int32_t *map = ag_alloc(ctx, B * t * sizeof *map);
    int32_t *spatial = ag_alloc(ctx, n * sizeof *spatial);
    int32_t *pt = ag_alloc(ctx, N * sizeof *pt);
    if (!metric || !scratch || !map || !spatial || !pt) return NULL;
    for (size_t b = 0; b < B; b++) {
        tok_key_mean(qkv->data + b * t * 3 * C, t, C, heads, metric);
        for (size_t p = 0; p < N; p++) pt[p] = st->patch_token[b * N + p];
        const size_t m = tok_atme_plan(n, pt, st->g, cls_attn->data + b * n, metric + D, D, k, spatial, scratch);
        if (m != n - k)
            return ag_error(ctx, TPSC_ERR_ARG, "atme: image %zu: a token has no neighbour region to merge into", b);
        map[b * t] = 0;
        for (size_t i = 0; i < n; i++) map[b * t + 1 + i] = 1 + spatial[i];
    }
    return tok_merge_apply(ctx, st, x, map, 1 + n - k);
}
