/* The training objective of TPS / DynamicViT fine-tuning (official losses/loss.py):
 *
 *   loss = clf_weight * CE(student, targets)
 *        + ratio_weight * mean_s mean_b (mean_i keep^s_{b,i} - keep_frac_s)^2
 *        + distill_weight * KL(teacher cls || student cls)          (log-space, batchmean)
 *        + distill_weight * token term over the final kept tokens   (KL over channels, or MSE)
 *        + guide_weight * mean_s CE(predictor_s, teacher's top-k_s by cls attention)    (ours)
 *        + channel_ratio_weight * mean_g (mean_c mask^g_c - keep_g)^2       (channel gates, ours)
 *
 * The ratio term exists only for predictor methods in training (they carry masks); the token
 * term needs masks as well, so evit/etps distil the cls logits only.
 *
 * The guide term is not in the official code (default weight 0). A score predictor starts from
 * random weights and learns only through the straight-through Gumbel masks, which takes the
 * official 30 ImageNet epochs; in a fine-tune of a few hundred steps it still ranks tokens worse
 * than the teacher's cls attention does with no training at all (EViT's criterion). The guide
 * teaches each stage's predictor, by cross-entropy per token, to keep the k_s tokens that the
 * teacher's head-mean cls attention ranks highest at the block the stage precedes
 * (k_s = tok_keep_count), so the Gumbel masks start near a good policy and the ratio loss near
 * its target. The teacher is dense: its attention never saw a pruned sequence. */
#ifndef TPSC_OBJECTIVE_H
#define TPSC_OBJECTIVE_H

#include "src/model/vit.h"

typedef enum { OBJ_DISTILL_TOKEN_NONE = 0, OBJ_DISTILL_TOKEN_KL, OBJ_DISTILL_TOKEN_MSE } objective_distill_token;

typedef struct objective_config {
    float clf_weight, ratio_weight, distill_weight, guide_weight, channel_ratio_weight;
    objective_distill_token distill_token;
    bool distill_cls;
} objective_config;

typedef struct objective_parts {
    ag_tensor *total, *ce, *ratio, *cls_kl, *token_kl, *guide; /* scalars [1]; NULL when absent */
    ag_tensor *chan_ratio;                                    /* channel keep-ratio term */
} objective_parts;

/* student: a VIT_TRAIN output. targets [B,K] soft. teacher: a dense model's output on the same
 * images (logits and tokens, no gradient), or NULL for no distillation. The guide term needs
 * the student's score[s] and the teacher's cls_attn[s], probed at block tps->prune_loc[s]
 * (vit_forward_opts.probe_blocks). */
tpsc_status objective_compute(ag_ctx *ctx, const tok_config *tps, const objective_config *cfg, const vit_output *student,
                             ag_tensor *targets, const vit_output *teacher, objective_parts *out);

#endif
