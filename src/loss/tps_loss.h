/* The training objective of TPS / DynamicViT fine-tuning (official losses/loss.py):
 *
 *   loss = clf_weight * CE(student, targets)
 *        + ratio_weight * mean_s mean_b (mean_i keep^s_{b,i} - keep_frac_s)^2
 *        + distill_weight * KL(teacher cls || student cls)          (log-space, batchmean)
 *        + distill_weight * token term over the final kept tokens   (KL over channels, or MSE)
 *
 * The ratio term exists only for predictor methods in training (they carry masks); the token
 * term needs masks as well, so evit/etps distil the cls logits only. */
#ifndef TPSC_LOSS_TPS_LOSS_H
#define TPSC_LOSS_TPS_LOSS_H

#include "src/model/vit.h"

typedef enum { TPS_DISTILL_TOKEN_NONE = 0, TPS_DISTILL_TOKEN_KL, TPS_DISTILL_TOKEN_MSE } tps_distill_token;

typedef struct tps_loss_config {
    float clf_weight, ratio_weight, distill_weight;
    tps_distill_token distill_token;
    bool distill_cls;
} tps_loss_config;

typedef struct tps_loss_parts {
    ag_tensor *total, *ce, *ratio, *cls_kl, *token_kl; /* scalars [1]; NULL when absent */
} tps_loss_parts;

/* student: a VIT_TRAIN output. targets [B,K] soft. teacher: a dense model's output on the same
 * images (logits and tokens, no gradient), or NULL for no distillation. */
tpsc_status tps_loss_compute(ag_ctx *ctx, const tps_config *tps, const tps_loss_config *cfg, const vit_output *student,
                             ag_tensor *targets, const vit_output *teacher, tps_loss_parts *out);

#endif
