/* Pieces shared by the files of src/tokens/ (not part of the model's contract in tokens.h). */
#ifndef TPSC_TOKENS_TOKENS_INTERNAL_H
#define TPSC_TOKENS_TOKENS_INTERNAL_H

#include "src/common/squeeze.h"
#include "src/tokens/tokens.h"

/* The value the official code writes into similarities that must never win (self, pruned). */
#define TOK_SIM_MASKED -100.0f

/* cosine.c: row normalisation x [R,C] -> xh = x / (||x|| + eps), norm [R] = ||x||
 * (row_normalise of src/common/rows.h on every row). */
void tok_rows_normalise(const float *x, size_t rows, size_t C, float *xh, float *norm);
/* dx [R,C] += the gradient through that normalisation, given dxh [R,C]. */
void tok_rows_normalise_backward(const float *x, const float *norm, const float *dxh, size_t rows, size_t C,
                                 float *dx);

/* masked_mean.c: the predictor's global feature, broadcast back to every token:
 * out[b,n,:] = sum_i mask[b,i] x[b,i,:] / sum_i mask[b,i]   (x [B,N,C], mask [B,N]).
 * An all-zero mask gives zeros (the official code divides by zero). Differentiable in x and
 * in mask. */
ag_tensor *tok_masked_mean_tokens(ag_ctx *ctx, ag_tensor *x, ag_tensor *mask);

/* squeeze_remove.c: TPS squeeze with real removal (official TPSModule in eval mode; the
 * forward is squeeze_image of src/common/squeeze.h):
 * kept [B,k,C], dropped [B,p,C] -> [B,k,C]; every dropped token goes to its most
 * cosine-similar kept token (all of them on an exact tie), weight exp(sim / T), host weight e.
 * Differentiable in kept and dropped (through the similarities too); the host choice is a
 * constant. host [B,p] (or NULL) receives each dropped token's host among the k kept, the
 * first of tied maxima: what an observer of the forward draws (tpsc visualize). */
ag_tensor *tok_squeeze_hosts(ag_ctx *ctx, ag_tensor *kept, ag_tensor *dropped, float temp, int32_t *host);
/* stage_train.c: tok_train_stage with the top-k count given (topk masks keep `topk` tokens;
 * tok_train_stage passes tok_keep_count of the x's own N, real removal the count of all N
 * patches while x holds only the present ones). */
ag_tensor *tok_train_stage_keeping(ag_ctx *ctx, const tok_config *cfg, int stage, const tok_predictor *pred,
                                   ag_params *params, ag_tensor *x, ag_tensor *prev, const float *u, tpsc_rng *rng,
                                   size_t topk, ag_tensor **keep, ag_tensor **logp_out);
/* merge.c: applies per-image maps [B, st->t] with m outputs each to x [B,t,C] and to the
 * merge state (sizes, log sizes, source map). */
ag_tensor *tok_merge_apply(ag_ctx *ctx, tok_merge_state *st, ag_tensor *x, const int32_t *map, size_t m);

#endif
