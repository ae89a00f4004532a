/* ToMe in the framework: one block's bipartite soft matching (merge_rules.h) on the keys
 * averaged over heads, then the size-weighted merge (ag_merge_tokens). Train and inference
 * are the same computation; only the averages carry gradient, as in ToMe. */
#include <stdlib.h>

#include "autograd/ops.h"
#include "src/common/merge_rules.h"
#include "src/tokens/tokens.h"
#include "src/tokens/tokens_internal.h"

ag_tensor *tok_tome_merge(ag_ctx *ctx, tok_merge_state *st, ag_tensor *x, const ag_tensor *qkv, size_t heads, int r) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    const size_t B = st->B, t = st->t, C = x->shape[2], D = C / heads;
    if (x->shape[0] != B || x->shape[1] != t || !qkv || qkv->shape[1] != t || qkv->shape[2] != 3 * C) {
        char sx[64];
        return ag_error(ctx, TPSC_ERR_SHAPE, "tome: x %s does not match the merge state (B %zu, t %zu) or qkv",
                        ag_shape_str(x, sx, sizeof sx), B, t);
    }
    const size_t rr = tok_tome_block_r(r, t);
    if (rr == 0) return x;
    float *metric = ag_alloc(ctx, t * D * sizeof *metric);
    void *scratch = ag_alloc(ctx, tok_tome_scratch_bytes(t, D));
    int32_t *map = ag_alloc(ctx, B * t * sizeof *map);
    if (!metric || !scratch || !map) return NULL;
    size_t m = 0;
    for (size_t b = 0; b < B; b++) {
        tok_key_mean(qkv->data + b * t * 3 * C, t, C, heads, metric);
        m = tok_tome_match(metric, t, D, rr, map + b * t, scratch);
    }
    return tok_merge_apply(ctx, st, x, map, m);
}
