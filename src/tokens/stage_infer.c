/* Pruning stages with real removal: the sequence gets shorter, so later blocks cost less.
 *
 * Predictor methods follow DynamicVit.forward_features in eval mode (TPS-CVPR2023
 * torch_codebase/models/dynamic_vit.py): scores = predictor(spatial, prev = ones)[..., 0],
 * sort descending, keep the first k (they come out in score order, not position order),
 * dynamicvit: x = [cls; kept]; dtps: x = [cls; TPSModule(kept, dropped)] with the dropped
 * tokens in score order too.
 * EViT follows Block.forward of youweiliang/evit evit.py: top k by cls attention (sorted),
 * evit appends the fused token sum_{dropped} a_i x_i; etps squeezes the dropped tokens (in
 * position order, like EViT's complement) into their hosts instead. When k equals n EViT prunes nothing and the sequence is returned as is
 * (no fused token), for both evit and etps.
 * Index arrays given to ag_gather_rows live in the arena: its backward may read them. */
#include <string.h>

#include "autograd/ops.h"
#include "src/tokens/tokens_internal.h"

/* Splits the descending order [B,n] into kept positions (+offset) and dropped positions
 * (+offset), both in score order; kept_pos (B*k, may be NULL) receives the unshifted kept ones. */
static bool split_order(ag_ctx *ctx, const int32_t *order, size_t B, size_t n, size_t k, int32_t offset,
                        int32_t **kept_idx, int32_t **drop_idx, int32_t *kept_pos) {
    const size_t p = n - k;
    *kept_idx = ag_alloc(ctx, B * k * sizeof(int32_t));
    *drop_idx = ag_alloc(ctx, B * p * sizeof(int32_t) + 1);
    if (!*kept_idx || !*drop_idx) return false;
    for (size_t b = 0; b < B; b++) {
        for (size_t r = 0; r < k; r++) {
            (*kept_idx)[b * k + r] = order[b * n + r] + offset;
            if (kept_pos) kept_pos[b * k + r] = order[b * n + r];
        }
        for (size_t r = 0; r < p; r++) (*drop_idx)[b * p + r] = order[b * n + k + r] + offset;
    }
    return true;
}

/* [cls; rows idx of x] for idx given among x's 1+n rows. */
static ag_tensor *cls_and_rows(ag_ctx *ctx, ag_tensor *x, const int32_t *kept_idx, size_t B, size_t k) {
    int32_t *idx = ag_alloc(ctx, B * (1 + k) * sizeof(int32_t));
    if (!idx) return NULL;
    for (size_t b = 0; b < B; b++) {
        idx[b * (1 + k)] = 0;
        memcpy(idx + b * (1 + k) + 1, kept_idx + b * k, k * sizeof(int32_t));
    }
    return ag_gather_rows(ctx, x, idx, 1 + k);
}

/* [cls; squeeze(kept, dropped)], kept/dropped given as rows of x. Nothing dropped (k = n):
 * the squeeze is the identity and only the reordering is left. squeezed_into [B,n] (or NULL):
 * see tok_infer_stage. */
static ag_tensor *cls_and_squeezed(ag_ctx *ctx, ag_tensor *x, const int32_t *kept_idx, const int32_t *drop_idx,
                                   size_t k, size_t p, float temp, int32_t *squeezed_into) {
    const size_t B = x->shape[0], n = x->shape[1] - 1;
    if (p == 0) return cls_and_rows(ctx, x, kept_idx, B, k);
    int32_t *host = squeezed_into ? ag_alloc(ctx, B * p * sizeof *host) : NULL;
    if (squeezed_into && !host) return NULL;
    ag_tensor *kept = ag_gather_rows(ctx, x, kept_idx, k);
    ag_tensor *dropped = ag_gather_rows(ctx, x, drop_idx, p);
    ag_tensor *hosts = tok_squeeze_hosts(ctx, kept, dropped, temp, host);
    if (hosts && host) /* rows of x -> positions among the n spatial tokens */
        for (size_t b = 0; b < B; b++)
            for (size_t i = 0; i < p; i++)
                squeezed_into[b * n + (size_t)drop_idx[b * p + i] - 1] = kept_idx[b * k + (size_t)host[b * p + i]] - 1;
    return ag_concat(ctx, 2, (ag_tensor *[]){ag_slice(ctx, x, 1, 0, 1), hosts}, 1);
}

static void no_squeeze(int32_t *squeezed_into, size_t count) {
    if (squeezed_into)
        for (size_t i = 0; i < count; i++) squeezed_into[i] = -1;
}

static ag_tensor *check_stage_input(ag_ctx *ctx, const char *what, ag_tensor *x, size_t k) {
    char sx[64];
    if (x->ndim != 3 || x->shape[1] < 2)
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: x %s must be [B,1+n,C] with n >= 1", what,
                        ag_shape_str(x, sx, sizeof sx));
    if (k < 1 || k > x->shape[1] - 1)
        return ag_error(ctx, TPSC_ERR_ARG, "%s: keeping %zu of %zu tokens (valid 1..%zu)", what, k, x->shape[1] - 1,
                        x->shape[1] - 1);
    if (!ag_is_contiguous(x)) return ag_error(ctx, TPSC_ERR_SHAPE, "%s: x must be contiguous", what);
    return x;
}

ag_tensor *tok_infer_stage(ag_ctx *ctx, const tok_config *cfg, const tok_predictor *pred, ag_params *params,
                           ag_tensor *x, size_t k, int32_t *kept_pos, int32_t *squeezed_into) {
    if (!ag_ok(ctx, 1, x) || !check_stage_input(ctx, "tok_infer_stage", x, k)) return NULL;
    if (!cfg || !tok_method_has_predictor(cfg->method))
        return ag_error(ctx, TPSC_ERR_ARG, "tok_infer_stage: method %s has no score predictor",
                        cfg ? tok_method_name(cfg->method) : "(no config)");
    const size_t B = x->shape[0], n = x->shape[1] - 1;
    no_squeeze(squeezed_into, B * n);
    /* prev is all ones at inference: the tokens pruned earlier are gone, not masked */
    ag_tensor *prev = ag_new2(ctx, B, n);
    if (!prev) return NULL;
    for (size_t i = 0; i < B * n; i++) prev->data[i] = 1.0f;
    ag_tensor *logp = tok_predictor_forward(ctx, pred, params, ag_slice(ctx, x, 1, 1, n), prev);
    float *score = ag_alloc(ctx, B * n * sizeof(float));
    int32_t *order = ag_alloc(ctx, B * n * sizeof(int32_t));
    if (!logp || !score || !order) return NULL;
    for (size_t i = 0; i < B * n; i++) score[i] = logp->data[2 * i];
    int32_t *kept_idx, *drop_idx;
    if (!tok_sort_desc(ctx, score, B, n, order) || !split_order(ctx, order, B, n, k, 1, &kept_idx, &drop_idx, kept_pos))
        return NULL;
    if (cfg->method == TOK_DTPS)
        return cls_and_squeezed(ctx, x, kept_idx, drop_idx, k, n - k, cfg->squeeze_temp, squeezed_into);
    return cls_and_rows(ctx, x, kept_idx, B, k);
}

ag_tensor *tok_evit_stage(ag_ctx *ctx, const tok_config *cfg, ag_tensor *x, ag_tensor *cls_attn, size_t k,
                          int32_t *kept_pos, int32_t *squeezed_into) {
    if (!ag_ok(ctx, 2, x, cls_attn) || !check_stage_input(ctx, "tok_evit_stage", x, k)) return NULL;
    if (!cfg || (cfg->method != TOK_EVIT && cfg->method != TOK_ETPS))
        return ag_error(ctx, TPSC_ERR_ARG, "tok_evit_stage: method %s is not evit or etps",
                        cfg ? tok_method_name(cfg->method) : "(no config)");
    const size_t B = x->shape[0], n = x->shape[1] - 1, p = n - k;
    char sa[64];
    if (cls_attn->ndim != 2 || cls_attn->shape[0] != B || cls_attn->shape[1] != n || !ag_is_contiguous(cls_attn))
        return ag_error(ctx, TPSC_ERR_SHAPE, "tok_evit_stage: cls_attn %s must be [B,n] = [%zu,%zu], contiguous",
                        ag_shape_str(cls_attn, sa, sizeof sa), B, n);
    int32_t *order = ag_alloc(ctx, B * n * sizeof(int32_t));
    if (!order || !tok_sort_desc(ctx, cls_attn->data, B, n, order)) return NULL;
    no_squeeze(squeezed_into, B * n);
    if (p == 0) { /* EViT: left_tokens == N - 1 returns the block's x untouched */
        if (kept_pos)
            for (size_t b = 0; b < B; b++)
                for (size_t i = 0; i < n; i++) kept_pos[b * n + i] = (int32_t)i;
        return x;
    }
    int32_t *kept_idx, *drop_idx;
    if (!split_order(ctx, order, B, n, k, 1, &kept_idx, &drop_idx, kept_pos)) return NULL;

    /* the dropped tokens in position order, as EViT's complement_idx gives them (sums over
     * them are order-free up to rounding) */
    int32_t *compl = ag_alloc(ctx, B * p * sizeof(int32_t));
    int32_t *attn_idx = ag_alloc(ctx, B * p * sizeof(int32_t));
    bool *is_kept = ag_alloc(ctx, n * sizeof(bool));
    if (!compl || !attn_idx || !is_kept) return NULL;
    for (size_t b = 0; b < B; b++) {
        memset(is_kept, 0, n * sizeof(bool));
        for (size_t r = 0; r < k; r++) is_kept[order[b * n + r]] = true;
        size_t q = 0;
        for (size_t i = 0; i < n; i++)
            if (!is_kept[i]) {
                compl[b * p + q] = (int32_t)(i + 1); /* rows of x: cls is row 0 */
                attn_idx[b * p + q] = (int32_t)i;
                q++;
            }
    }
    if (cfg->method == TOK_ETPS) return cls_and_squeezed(ctx, x, kept_idx, compl, k, p, cfg->squeeze_temp, squeezed_into);
    if (cfg->evit_drop_pruned) return cls_and_rows(ctx, x, kept_idx, B, k); /* EViT without --fuse_token */
    /* evit: one fused token sum_{dropped} a_i x_i */
    ag_tensor *dropped = ag_gather_rows(ctx, x, compl, p);                              /* [B,p,C] */
    ag_tensor *a = ag_gather_rows(ctx, ag_reshape(ctx, cls_attn, 3, (size_t[]){B, n, 1}), attn_idx, p); /* [B,p,1] */
    ag_tensor *fused = ag_sum_dim(ctx, ag_mul(ctx, dropped, a), 1);                    /* [B,C] */
    fused = ag_reshape(ctx, fused, 3, (size_t[]){B, 1, x->shape[2]});
    return ag_concat(ctx, 2, (ag_tensor *[]){cls_and_rows(ctx, x, kept_idx, B, k), fused}, 1);
}
