/* One predictor-method pruning stage in training, as the body of `if i in self.prune_loc`
 * with self.training in DynamicVit.forward_features (TPS-CVPR2023
 * torch_codebase/models/dynamic_vit.py):
 *   logp = predictor(x[:, 1:], prev)
 *   keep = gumbel_softmax(logp, hard=True)[..., 0] * prev
 *     (tps.train_mask = topk: the k_s highest perturbed keep logits instead, gumbel.c)
 *   dtps: spatial = TPSModule(x[:, 1:], keep, (1 - keep) prev); x = [cls; spatial]
 * The squeeze happens here, before the block at prune_loc, on the tokens the predictor just
 * scored, and only tokens newly pruned at this stage move into hosts. Nothing is removed:
 * the model passes policy [1; keep] to the masked attention of every later block.
 *
 * Noise, when u is NULL: B*N*2 draws of tpsc_rng_uniform_open from rng in row-major order
 * (image, token, column 0 then 1), so a run is reproducible from the rng state. */
#include "autograd/ops.h"
#include "src/tokens/tokens_internal.h"

ag_tensor *tok_train_stage_keeping(ag_ctx *ctx, const tok_config *cfg, int stage, const tok_predictor *pred,
                                   ag_params *params, ag_tensor *x, ag_tensor *prev, const float *u, tpsc_rng *rng,
                                   size_t topk, ag_tensor **keep, ag_tensor **logp_out) {
    if (keep) *keep = NULL;
    if (logp_out) *logp_out = NULL;
    if (!ag_ok(ctx, 2, x, prev)) return NULL;
    if (!cfg || !tok_method_has_predictor(cfg->method))
        return ag_error(ctx, TPSC_ERR_ARG, "tok_train_stage: method %s has no score predictor",
                        cfg ? tok_method_name(cfg->method) : "(no config)");
    char sx[64], sp[64];
    if (x->ndim != 3 || x->shape[1] < 2 || prev->ndim != 2 || prev->shape[0] != x->shape[0] ||
        prev->shape[1] != x->shape[1] - 1)
        return ag_error(ctx, TPSC_ERR_SHAPE, "tok_train_stage: x %s must be [B,1+N,C] and prev %s [B,N]",
                        ag_shape_str(x, sx, sizeof sx), ag_shape_str(prev, sp, sizeof sp));
    const size_t B = x->shape[0], N = x->shape[1] - 1;
    if (!u) {
        if (!rng) return ag_error(ctx, TPSC_ERR_ARG, "tok_train_stage: neither noise u nor an rng was given");
        float *drawn = ag_alloc(ctx, B * N * 2 * sizeof(float));
        if (!drawn) return NULL;
        for (size_t i = 0; i < B * N * 2; i++) drawn[i] = tpsc_rng_uniform_open(rng);
        u = drawn;
    }
    ag_tensor *spatial = ag_slice(ctx, x, 1, 1, N);
    ag_tensor *logp = tok_predictor_forward(ctx, pred, params, spatial, prev);
    ag_tensor *k = cfg->train_mask == TOK_MASK_TOPK
                       ? tok_gumbel_topk_keep(ctx, logp, u, prev, topk)
                       : tok_gumbel_keep(ctx, logp, u, prev);
    if (!k) return NULL;
    if (keep) *keep = k;
    if (logp_out) *logp_out = logp;
    if (cfg->method != TOK_DTPS) return x;
    ag_tensor *squeezed = tok_squeeze_train(ctx, spatial, k, prev, cfg->squeeze_temp);
    return ag_concat(ctx, 2, (ag_tensor *[]){ag_slice(ctx, x, 1, 0, 1), squeezed}, 1);
}

ag_tensor *tok_train_stage(ag_ctx *ctx, const tok_config *cfg, int stage, const tok_predictor *pred,
                           ag_params *params, ag_tensor *x, ag_tensor *prev, const float *u, tpsc_rng *rng,
                           ag_tensor **keep, ag_tensor **logp_out) {
    const size_t N = x && x->ndim == 3 && x->shape[1] > 1 ? x->shape[1] - 1 : 0;
    return tok_train_stage_keeping(ctx, cfg, stage, pred, params, x, prev, u, rng, tok_keep_count(cfg, stage, N), keep,
                                   logp_out);
}
