/* DeiT / ViT with timm's layout and parameter names, plus the TPS pruning stages.
 *
 *   patch_embed.proj (conv k=s=patch as a linear over patches) -> [B,N-1,C]
 *   cat(cls_token) + pos_embed                                  -> [B,N,C]   (N = 1 + patches)
 *   blocks.i: x += attn(norm1(x)); x += mlp(norm2(x))          (pre-norm, LayerNorm eps 1e-6)
 *   norm, head on the cls token                                 -> [B,K]
 */
#ifndef TPSC_MODEL_VIT_H
#define TPSC_MODEL_VIT_H

#include "autograd/ag.h"
#include "autograd/params.h"
#include "src/tokens/tokens.h"

typedef struct vit_config {
    char arch[64];          /* "deit_small_patch16_224", or "custom" for free sizes */
    size_t img_size, patch_size, in_chans;
    size_t embed_dim, depth, num_heads, num_classes;
    float mlp_ratio;        /* hidden = embed_dim * mlp_ratio (4) */
    float ln_eps;           /* 1e-6 as timm's DeiT */
} vit_config;

/* Fills a named timm configuration (deit_tiny/small/base_patch16_224); TPSC_ERR_CONFIG for an
 * unknown name. num_classes defaults to 1000. */
tpsc_status vit_config_named(vit_config *cfg, const char *arch);
tpsc_status vit_config_validate(const vit_config *cfg);
size_t vit_num_patches(const vit_config *cfg);

/* Parameter indices of one transformer block in the model's ag_params. */
typedef struct vit_block {
    int norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b;
    int norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b;
} vit_block;

typedef struct vit_model {
    vit_config cfg;
    tok_config tps;
    ag_params params;       /* every parameter, timm / official-TPS names */
    int patch_w, patch_b, cls_token, pos_embed, norm_w, norm_b, head_w, head_b;
    vit_block *blocks;      /* depth entries */
    chan_gates *gates;      /* depth entries: channel gates (tps.chan), -1 where ungated */
    tok_predictor pred[TOK_MAX_STAGES];
} vit_model;

/* Declares every parameter (zeroed). Call vit_model_init for random weights or load them. */
tpsc_status vit_model_create(vit_model *m, const vit_config *cfg, const tok_config *tps);
void vit_model_free(vit_model *m);
/* timm's initialisation: Linear weights trunc_normal(0.02), biases 0, LayerNorm 1/0,
 * pos_embed and cls_token trunc_normal(0.02), patch conv PyTorch's default uniform. */
void vit_model_init(vit_model *m, tpsc_rng *rng);
/* MACs per image in inference mode (src/common/macs.h): tokens as tps says, and with channel
 * gates the widths export keeps (chan_keep_count per block). src/tokens/flops.c. */
double vit_macs_per_image(const vit_config *v, const tok_config *tps);
/* Number of parameters, all or only the backbone (without predictors). */
size_t vit_model_num_params(const vit_model *m, bool backbone_only);

typedef enum vit_mode {
    VIT_TRAIN,  /* predictor methods carry masks (straight-through Gumbel) and keep every token,
                   or with tps.train_removal only the kept ones (src/tokens/stage_removed.c) */
    VIT_INFER,  /* tokens really removed; kept indices reported */
} vit_mode;

typedef struct vit_forward_opts {
    vit_mode mode;
    const float *gumbel_u[TOK_MAX_STAGES]; /* VIT_TRAIN: noise [B,N,2] per stage, or NULL: draw */
    tpsc_rng *rng;                         /* where noise is drawn from when not given */
    const size_t *keep_override;           /* VIT_INFER: tokens kept per stage instead of cfg's */
    /* Channel gates: VIT_TRAIN draws Gumbel-sigmoid noise from rng; VIT_INFER (and
     * chan_hard = true in VIT_TRAIN) keeps the top-k channels of every gate, the masks the
     * exported model realises by removing the others. */
    bool chan_hard;
    /* Dense models only: out->cls_attn[i] receives the cls attention of block probe_blocks[i]
     * (a teacher's, for the predictor guide loss of src/objective/objective.h). */
    int probe_blocks[TOK_MAX_STAGES];
    int n_probe;
    /* VIT_TRAIN, masked predictor path: a pruned token's keep entry takes no gradient from
     * anything after its stage (the later blocks' policy, later predictors and squeezes):
     * the later blocks see keep * constant(keep). This is the gradient real removal computes
     * (docs/tps.md); the tests compare the two with it. */
    bool stop_pruned_grad;
} vit_forward_opts;

typedef struct vit_output {
    ag_tensor *logits;                     /* [B,K] */
    ag_tensor *tokens;                     /* [B,n,C] final normed spatial tokens (distillation) */
    ag_tensor *keep[TOK_MAX_STAGES];       /* VIT_TRAIN, predictor methods: hard masks [B,N] */
    ag_tensor *score[TOK_MAX_STAGES];      /* VIT_TRAIN, predictor methods: predictor log-probs [B,N,2]
                                              (column 0 = keep) */
    ag_tensor *cls_attn[TOK_MAX_STAGES];   /* opts->probe_blocks: head-mean cls attention [B,N] */
    ag_tensor *chan_mask[CHAN_MAX_BLOCKS][CHAN_KINDS]; /* channel gate masks, NULL where ungated */
    int n_stages;
    bool removed;                          /* VIT_TRAIN, predictor methods: stages ran with real
                                              removal (tokens and score[s] are scattered back to
                                              [B,N,.] with zero rows where a token was absent) */
    size_t kept_count[TOK_MAX_STAGES];     /* VIT_INFER (and removed): spatial tokens kept after
                                              each stage */
    int32_t *kept_orig[TOK_MAX_STAGES];    /* VIT_INFER (and removed, ascending there): [B,
                                              kept_count[s]] original patch indices (0..N-1), in
                                              the order kept; arena memory */
    int32_t *squeezed_into[TOK_MAX_STAGES];/* VIT_INFER, squeezing methods (dtps, etps): [B,N] for
                                              each patch squeezed at stage s the original index of
                                              the kept patch it went into (the first of tied
                                              hosts), -1 for every other patch; arena memory */
    /* tome/atme (arena memory): the source map, patch_token [B,N] = the final spatial token
     * (0-based, cls excluded) holding each patch, and token_size [B,n] its patch count (NULL
     * when nothing merged); the same after every block i: patch_token_block[i],
     * token_size_block[i] (depth entries). atme also fills kept_count per stage. */
    int32_t *patch_token;
    float *token_size;
    int32_t **patch_token_block;
    float **token_size_block;
} vit_output;

/* images [B,Cin,H,W] -> out->logits [B,K]. Returns out->logits, or NULL (see ctx status). */
ag_tensor *vit_forward(ag_ctx *ctx, vit_model *m, ag_tensor *images, const vit_forward_opts *opts, vit_output *out);

#endif
