/* Token Pruning & Squeezing (TPS, CVPR 2023) and the baselines it is compared with.
 *
 * Methods (tok_config.method): the table in src/common/methods.h (none, dynamicvit, dtps,
 * evit, etps), which libtpsinfer reads too; token counts, fractions and the cost model are
 * src/common/keep.h and macs.h, wrapped here for a tok_config.
 *
 * The model (src/model/vit_forward.c) calls these at the pruning locations. Training of predictor
 * methods carries a hard keep mask (straight-through Gumbel) and a policy for the masked
 * attention softmax; with topk masks and tps.train_removal it shortens the sequence as
 * inference does (stage_removed.c). Inference really removes tokens.
 * Formulas: docs/tps.md. */
#ifndef TPSC_TOKENS_TOKENS_H
#define TPSC_TOKENS_TOKENS_H

#include "autograd/ag.h"
#include "autograd/params.h"
#include "src/channels/channels.h"
#include "src/common/methods.h"
#include "src/util/rng.h"

#define TOK_MAX_STAGES 8

/* How predictor methods draw the hard keep mask in training (recipe key tps.train_mask):
 *   gumbel  the official per-token straight-through Gumbel-softmax sample; the keep-ratio loss
 *           pulls the mean count towards the budget, so training may keep more than inference
 *   topk    ours: the Gumbel top-k trick, the k_s = tok_keep_count tokens with the highest
 *           perturbed keep logit, so every image trains at exactly the inference budget;
 *           the same straight-through backward */
typedef enum tok_train_mask { TOK_MASK_GUMBEL = 0, TOK_MASK_TOPK } tok_train_mask;

typedef struct tok_config {
    tok_method method;
    int n_stages;
    int prune_loc[TOK_MAX_STAGES];   /* block index before which (predictor methods) or inside
                                        which (evit/etps) stage s prunes; strictly increasing */
    float keep_frac[TOK_MAX_STAGES]; /* cumulative fraction of the N patch tokens kept after
                                        stage s: rho^(s+1) for a single rho, or the list given */
    float squeeze_temp;              /* T in the cosine similarity; 1 in the paper */
    tok_train_mask train_mask;       /* predictor methods in training; gumbel = official */
    bool train_removal;              /* predictor methods with topk masks: the blocks after a stage
                                        run on the kept tokens only (recipe tps.train_removal;
                                        stage_removed.c). evit/etps always remove. */
    int tome_r;                      /* tome: tokens merged per block (ToMe's r) */
    float tome_inflect;              /* tome: schedule, 0 constant, -1 decreasing (2r .. 0) */
    bool prop_attn;                  /* tome/atme: proportional attention with log token sizes */
    bool evit_drop_pruned;           /* evit: drop the pruned tokens instead of fusing them into
                                        one (recipe tps.fuse_token = false, EViT's default without
                                        --fuse_token); zero = fused, as the published runs */
    chan_config chan;                /* channel gates (recipe section [cdcp]); zeroed = none */
} tok_config;

/* keep_frac[s] = rho^(s+1) for s < n_stages (set n_stages first): keep_fill_rho. */
void tok_config_fill_rho(tok_config *cfg, float rho);
/* Validates: locations inside [1, depth), increasing; fractions in (0,1], non-increasing;
 * squeeze_temp > 0 for squeezing methods. Errors name the offending value. */
tpsc_status tok_config_validate(const tok_config *cfg, int depth);
/* The name tables and bench rows show for a config: the method, ToMe's r (and schedule), and
 * "+cdcp" when channel gates are added to a method that does not already include them
 * ("dtps+cdcp", "tome r=8", "tome r=8/-1", "cait"). Returns buf. */
const char *tok_config_label(const tok_config *cfg, char *buf, size_t n);
/* Patch tokens kept after stage s for predictor methods: keep_count_predictor. */
size_t tok_keep_count(const tok_config *cfg, int stage, size_t n_patches);
/* topk.c (also the guide loss): order[b*n + r] = index of the r-th highest score[b*n + :] (n per row); ties: lower
 * index first; NaN scores last. Scratch from the context's arena; false on failure. */
bool tok_sort_desc(ag_ctx *ctx, const float *score, size_t B, size_t n, int32_t *order);


/* ---- score predictor (DynamicViT PredictorLG), predictor.c --------------------------------- */
/* Parameter indices into the model's ag_params; names score_predictor.{s}.in_conv.{0,1}.*,
 * score_predictor.{s}.out_conv.{0,2,4}.* as in the official code. */
typedef struct tok_predictor {
    int in_norm_w, in_norm_b, in_fc_w, in_fc_b;
    int out0_w, out0_b, out2_w, out2_b, out4_w, out4_b;
} tok_predictor;

tpsc_status tok_predictor_declare(tok_predictor *p, ag_params *params, int stage, size_t C);
/* Official initialisation: Linear weights trunc_normal(std 0.02), biases 0, LayerNorm 1/0. */
void tok_predictor_init(const tok_predictor *p, ag_params *params, tpsc_rng *rng);
/* x [B,N,C] spatial tokens, prev [B,N] previous keep mask -> log-probs [B,N,2] (col 0 keep). */
ag_tensor *tok_predictor_forward(ag_ctx *ctx, const tok_predictor *p, ag_params *params, ag_tensor *x, ag_tensor *prev);

/* ---- training-time ops (differentiable), train.c / gumbel.c / squeeze.c --------------------- */
/* Straight-through Gumbel-softmax keep mask: logp [B,N,2], u [B,N,2] uniform noise in (0,1),
 * prev [B,N] -> keep [B,N] = onehot(argmax(logp + g))[0] * prev with g = -log(-log u); the
 * backward is that of softmax(logp + g)[...,0] * prev (tau = 1). */
ag_tensor *tok_gumbel_keep(ag_ctx *ctx, ag_tensor *logp, const float *u, ag_tensor *prev);
/* Gumbel top-k keep mask: the same noise and backward, but the forward keeps, in each image,
 * exactly the k tokens of prev with the highest perturbed keep logit
 * (logp[0] + g[0]) - (logp[1] + g[1]) (ties: lower index). prev must hold at least k ones per
 * image and be 0/1. */
ag_tensor *tok_gumbel_topk_keep(ag_ctx *ctx, ag_tensor *logp, const float *u, ag_tensor *prev, size_t k);
/* TPS training squeeze: x [B,N,C] spatial tokens, keep [B,N], prev [B,N]; tokens newly pruned
 * (prev=1, keep=0) are merged into their most cosine-similar kept host (weights exp(sim),
 * host weight e). Gradients flow through x and the similarities. -> [B,N,C]. */
ag_tensor *tok_squeeze_train(ag_ctx *ctx, ag_tensor *x, ag_tensor *keep, ag_tensor *prev, float temp);

/* One predictor-method pruning stage in training (stage s of cfg). x [B,1+N,C] (cls first),
 * prev [B,N]. u: [B,N,2] uniform noise, or NULL to draw it from rng. cfg->train_mask chooses
 * the mask (topk keeps tok_keep_count(cfg, stage, N) tokens). Returns the sequence for the next
 * blocks [B,1+N,C] (dtps: squeezed; dynamicvit: x itself); *keep receives [B,N] and, when
 * logp is not NULL, *logp the predictor's log-probs [B,N,2]. */
ag_tensor *tok_train_stage(ag_ctx *ctx, const tok_config *cfg, int stage, const tok_predictor *pred,
                           ag_params *params, ag_tensor *x, ag_tensor *prev, const float *u, tpsc_rng *rng,
                           ag_tensor **keep, ag_tensor **logp);

/* One predictor-method stage in training with real removal (tps.train_removal, topk masks only;
 * stage_removed.c). x [B,1+n,C] the present tokens in ascending original position, prev [B,n]
 * their keep entries (differentiable; constant ones before the first stage), orig [B,n] their
 * original patch indices, N patches. u: the masked stage's noise [B,N,2] over every patch, or
 * NULL to draw it from rng (the same B*N*2 draws). Fills out; arena memory. */
typedef struct tok_removed_stage {
    ag_tensor *x;     /* [B,1+k,C] cls and the k kept tokens (dtps: squeezed), ascending position */
    ag_tensor *prev;  /* [B,k] their keep entries (all 1): the next stage's prev and the policy */
    ag_tensor *keep;  /* [B,N] the stage's keep mask over every patch (0 where absent), as masked */
    ag_tensor *score; /* [B,N,2] predictor log-probs over every patch (0 rows where absent) */
    int32_t *orig;    /* [B,k] original patch index of each kept token */
    size_t k;
} tok_removed_stage;
tpsc_status tok_train_stage_removed(ag_ctx *ctx, const tok_config *cfg, int stage, const tok_predictor *pred,
                                    ag_params *params, ag_tensor *x, ag_tensor *prev, const int32_t *orig, size_t N,
                                    const float *u, tpsc_rng *rng, tok_removed_stage *out);

/* ---- inference: real removal, infer.c ------------------------------------------------------- */
/* Predictor methods. x [B,1+n,C]; keeps the k spatial tokens with the highest keep score,
 * in descending score order (ties: lower index first); dtps squeezes the dropped ones into
 * their hosts. Returns [B,1+k,C]; kept_pos (B*k) receives the kept tokens' positions among
 * the incoming n spatial tokens. squeezed_into [B,n] (or NULL) receives, for each incoming
 * token the squeeze merged into a host, the host's incoming position (the first of tied
 * hosts), and -1 for every other token: what observers of the forward draw. */
ag_tensor *tok_infer_stage(ag_ctx *ctx, const tok_config *cfg, const tok_predictor *pred, ag_params *params,
                           ag_tensor *x, size_t k, int32_t *kept_pos, int32_t *squeezed_into);
/* evit/etps, inside a block after the attention residual. x [B,1+n,C], cls_attn [B,n] (cls
 * attention to each spatial token, mean over heads). Keeps the top k by cls_attn;
 * evit appends one fused token sum_{dropped} a_i x_i (-> [B,2+k,C]), or with
 * cfg->evit_drop_pruned drops them (-> [B,1+k,C]); etps squeezes dropped tokens into hosts
 * (-> [B,1+k,C]). Differentiable (EViT trains with real removal).
 * kept_pos and squeezed_into as above (the fused token is not listed). k = n prunes nothing,
 * as EViT: x is returned as is (no reordering, no fused token) and kept_pos is 0..n-1. */
ag_tensor *tok_evit_stage(ag_ctx *ctx, const tok_config *cfg, ag_tensor *x, ag_tensor *cls_attn, size_t k,
                          int32_t *kept_pos, int32_t *squeezed_into);
/* evit/etps: spatial tokens kept at a stage with n current spatial tokens: keep_count_evit. */
size_t tok_evit_keep_count(const tok_config *cfg, int stage, size_t n);

/* ---- token merging: ToMe and ATME (merge.c, tome.c, atme.c; rules in merge_rules.h) -------- */
/* Checks what depends on the token count: tome's schedule must not remove more tokens than
 * the N patches hold; atme needs a square grid of patches and a budget of at least one token
 * per location. Errors name the key and the numbers. */
tpsc_status tok_config_validate_tokens(const tok_config *cfg, int depth, size_t n_patches);
/* tome: the requested r of every block (ToMe's parse_r of tome_r, tome_inflect); r_out[depth]. */
void tok_tome_r_list(const tok_config *cfg, int depth, int *r_out);

/* What a merging forward carries from block to block (arena memory; every update allocates
 * anew, so arrays handed out earlier stay valid). */
typedef struct tok_merge_state {
    size_t B, N, g;        /* batch, patches, grid side (g*g == N, or 0 when not square) */
    size_t t;              /* current tokens, cls included */
    float *size;           /* [B,t] patches per token (cls: 1); NULL while every size is 1 */
    float *log_size;       /* [B,t] log(size) for proportional attention; NULL while sizes are 1 */
    int32_t *patch_token;  /* [B,N] current spatial token (0-based, cls excluded) of each patch */
} tok_merge_state;

/* A state with every patch its own token. g = sqrt(N) when N is a square, else 0. */
tpsc_status tok_merge_state_init(ag_ctx *ctx, tok_merge_state *st, size_t B, size_t N);
/* ToMe between attention and MLP: x [B,t,C] (after the attention residual), qkv the block's
 * [B,t,3C] (the metric is its keys averaged over heads), r the requested merges (clamped to
 * ToMe's (t-1)/2). Returns [B,t-r',C] and updates st. */
ag_tensor *tok_tome_merge(ag_ctx *ctx, tok_merge_state *st, ag_tensor *x, const ag_tensor *qkv, size_t heads, int r);
/* ATME between attention and MLP: x [B,t,C], qkv [B,t,3C], cls_attn [B,t-1] (cls attention,
 * mean over heads: importance), keep = spatial tokens left afterwards (the location's budget;
 * 1 <= keep). Needs st->g > 0. Returns [B,1+keep,C] (x itself when nothing is removed). */
ag_tensor *tok_atme_merge(ag_ctx *ctx, tok_merge_state *st, ag_tensor *x, const ag_tensor *qkv, size_t heads,
                          const ag_tensor *cls_attn, size_t keep);
/* Unmerge: tokens [B,n,C] (spatial, cls excluded) -> [B,N,C], every patch cell taking its
 * token's row (patch_token [B,N] from a state or a vit_output). Differentiable. */
ag_tensor *tok_unmerge(ag_ctx *ctx, ag_tensor *tokens, const int32_t *patch_token, size_t N);

/* ---- cost, flops.c ------------------------------------------------------------------------ */
/* Multiply-accumulates per image of a forward pass in inference mode (tokens really removed):
 * macs_per_image (src/common/macs.h). 0 with an error set when the image has no tokens. */
double tok_macs_per_image(const tok_config *cfg, size_t img_size, size_t patch, size_t in_chans, size_t embed_dim,
                          size_t depth, size_t mlp_hidden, size_t num_classes);

#endif
