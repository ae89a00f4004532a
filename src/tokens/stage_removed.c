/* One predictor-method pruning stage in training with real removal (tps.train_removal with
 * tps.train_mask = topk): the stage of stage_train.c on the tokens still present, then the
 * k_s kept ones are gathered and every later block runs on them only.
 *
 *   u_cur  = u rows of the present tokens (the noise of the masked stage, same draws)
 *   keep   = tok_train_stage(x, prev, u_cur)   [B,n]   (dtps: squeeze into hosts, as masked)
 *   x'     = [cls; the rows with keep = 1]     [B,1+k,C]  in ascending original position
 *   prev'  = keep at those rows (all 1)        [B,k]   differentiable: the next stage's prev
 *                                                      and the policy of the later blocks
 *
 * Exact against the masked stage where the pruned tokens' keep entries take no gradient from
 * anything after this stage (docs/tps.md, "Real removal in training"): the kept tokens, the
 * squeeze (its weights and hosts, all in this stage), the straight-through keep and the losses
 * see the same values and gradients. What removal cannot give is the masked path's gradient to
 * a pruned token's keep entry through the later blocks' attention policy: it depends on the
 * pruned token's keys and values in those blocks, which removal never computes. */
#include <string.h>

#include "autograd/ops.h"
#include "src/tokens/tokens_internal.h"

/* [B,n] (or [B,n,c]) -> [B,N,c] rows placed at orig (B*n indices), zeros elsewhere. */
static ag_tensor *scatter_back(ag_ctx *ctx, ag_tensor *t, size_t cols, const int32_t *orig, size_t N) {
    if (!t) return NULL;
    const size_t B = t->shape[0], n = t->shape[1];
    ag_tensor *r = ag_reshape(ctx, t, 3, (size_t[]){B, n, cols});
    ag_tensor *s = ag_scatter_rows(ctx, r, orig, N);
    return cols == 1 ? ag_reshape(ctx, s, 2, (size_t[]){B, N}) : s;
}

tpsc_status tok_train_stage_removed(ag_ctx *ctx, const tok_config *cfg, int stage, const tok_predictor *pred,
                                    ag_params *params, ag_tensor *x, ag_tensor *prev, const int32_t *orig, size_t N,
                                    const float *u, tpsc_rng *rng, tok_removed_stage *out) {
    memset(out, 0, sizeof *out);
    if (!ag_ok(ctx, 2, x, prev)) return ag_ctx_status(ctx);
    if (!cfg || cfg->train_mask != TOK_MASK_TOPK) {
        ag_error(ctx, TPSC_ERR_ARG, "tok_train_stage_removed: real removal in training needs tps.train_mask = topk");
        return ag_ctx_status(ctx);
    }
    char sx[64];
    if (x->ndim != 3 || x->shape[1] < 2 || x->shape[1] - 1 > N || !orig) {
        ag_error(ctx, TPSC_ERR_SHAPE, "tok_train_stage_removed: x %s must be [B,1+n,C] with n <= N = %zu and orig given",
                 ag_shape_str(x, sx, sizeof sx), N);
        return ag_ctx_status(ctx);
    }
    const size_t B = x->shape[0], n = x->shape[1] - 1, k = tok_keep_count(cfg, stage, N);
    if (k < 1 || k > n) {
        ag_error(ctx, TPSC_ERR_ARG, "tok_train_stage_removed: stage %d cannot keep %zu of %zu present tokens", stage, k, n);
        return ag_ctx_status(ctx);
    }
    if (!u) { /* the masked stage's draws: B*N*2, so a run's noise stream does not depend on removal */
        if (!rng) {
            ag_error(ctx, TPSC_ERR_ARG, "tok_train_stage_removed: neither noise u nor an rng was given");
            return ag_ctx_status(ctx);
        }
        float *drawn = ag_alloc(ctx, B * N * 2 * sizeof(float));
        if (!drawn) return ag_ctx_status(ctx);
        for (size_t i = 0; i < B * N * 2; i++) drawn[i] = tpsc_rng_uniform_open(rng);
        u = drawn;
    }
    float *u_cur = ag_alloc(ctx, B * n * 2 * sizeof(float)); /* [B,n,2] */
    int32_t *rows = ag_alloc(ctx, B * (1 + k) * sizeof *rows); /* [B,1+k] rows of x' in x */
    int32_t *pos = ag_alloc(ctx, B * k * sizeof *pos);          /* [B,k] kept among the present */
    int32_t *orig_out = ag_alloc(ctx, B * k * sizeof *orig_out);
    if (!u_cur || !rows || !pos || !orig_out) return ag_ctx_status(ctx);
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < n; j++) {
            const int32_t o = orig[b * n + j];
            if (o < 0 || (size_t)o >= N) {
                ag_error(ctx, TPSC_ERR_ARG, "tok_train_stage_removed: original index %d outside [0, %zu)", (int)o, N);
                return ag_ctx_status(ctx);
            }
            memcpy(u_cur + (b * n + j) * 2, u + ((b * N) + (size_t)o) * 2, 2 * sizeof(float));
        }

    ag_tensor *keep = NULL, *logp = NULL;
    ag_tensor *y = tok_train_stage_keeping(ctx, cfg, stage, pred, params, x, prev, u_cur, NULL, k, &keep, &logp);
    if (!y || !keep) return ag_ctx_status(ctx);
    for (size_t b = 0; b < B; b++) {
        size_t got = 0;
        rows[b * (1 + k)] = 0;
        for (size_t j = 0; j < n; j++) {
            if (keep->data[b * n + j] == 0.0f) continue;
            if (got == k) break;
            pos[b * k + got] = (int32_t)j;
            rows[b * (1 + k) + 1 + got] = (int32_t)(1 + j);
            orig_out[b * k + got] = orig[b * n + j];
            got++;
        }
        if (got != k) { /* the top-k mask keeps exactly k: anything else is a bug upstream */
            ag_error(ctx, TPSC_ERR_INTERNAL, "tok_train_stage_removed: stage %d image %zu keeps %zu tokens, not %zu", stage, b,
                     got, k);
            return ag_ctx_status(ctx);
        }
    }
    out->x = ag_gather_rows(ctx, y, rows, 1 + k);                                           /* [B,1+k,C] */
    out->prev = ag_reshape(ctx, ag_gather_rows(ctx, ag_reshape(ctx, keep, 3, (size_t[]){B, n, 1}), pos, k), 2,
                           (size_t[]){B, k});                                                  /* [B,k] */
    out->keep = n == N ? keep : scatter_back(ctx, keep, 1, orig, N);                           /* [B,N] */
    out->score = n == N ? logp : scatter_back(ctx, logp, 2, orig, N);                          /* [B,N,2] */
    out->orig = orig_out;
    out->k = k;
    if (!out->x || !out->prev || !out->keep || !out->score) return ag_ctx_status(ctx);
    return TPSC_OK;
}
