/* The cost model: multiply-accumulates (MACs) of one image's forward pass in inference mode,
 * tokens really removed. The framework (tok_macs_per_image, `tpsc bench`, sweeps) and
 * libtpsinfer (tps_model_macs) both report this number.
 *
 * The papers (DeiT, DynamicViT, EViT, TPS) print "GFLOPs" that are really GMACs; this counts
 * MACs too. Counted: every matrix product. Not counted, as in those papers: LayerNorm, GELU,
 * softmax, residual adds, the predictor's masked mean and the top-k sort (all O(N C) or less
 * against the O(N C^2) linears).
 *
 * Per image, with C channels, F the MLP hidden width and n spatial tokens (1 + n with cls):
 *   patch embed    N_p * P * C                    (P = in_chans * patch^2, a conv as a linear)
 *   block          qkv 3(1+n)C^2, QK^T and AV (1+n)^2 C each (summed over heads: H * D = C),
 *                  proj (1+n)C^2, fc1 and fc2 (1+n)C F each; with kept widths (Q = H dq,
 *                  V = H dv, f): qkv (1+n)C(2Q+V), QK^T (1+n)^2 Q, AV (1+n)^2 V, proj
 *                  (1+n)V C, fc1 and fc2 (1+n)C f each
 *   predictor      n (C^2 + C C/2 + C/2 C/4 + C/4 * 2)   (in_conv linear, out_conv 0/2/4)
 *   squeeze        p k C for the cosine similarity of p pruned to k kept tokens, plus p C for
 *                  adding each pruned token into its host (one host per pruned token)
 *   evit fusion    p C for the attention-weighted sum of the p dropped tokens
 *   head           C K on the cls token
 * Token counts follow keep.h: predictor methods keep keep_count_predictor tokens from block
 * prune_loc[s] on; cls-attention methods keep keep_count_evit inside block prune_loc[s], whose
 * MLP already runs on the reduced sequence. EViT's fused token is counted among the next
 * stage's spatial tokens (as EViT's code does with N - 1).
 *
 * A new method: its row in methods.c says where it scores and what it does with the dropped
 * tokens; a new kind of either gets its case in macs.c. Per-block quantities (a merge count per
 * block, pruned channel widths per block) are fields of macs_tokens / macs_vit, NULL meaning
 * "the dense value everywhere". */
#ifndef TPSC_COMMON_MACS_H
#define TPSC_COMMON_MACS_H

#include <stdbool.h>
#include <stddef.h>

#include "src/common/methods.h"

/* Channel pruning: the widths each block keeps, [depth] each: dq Q/K and dv V channels per
 * head (of D = embed_dim / num_heads), f MLP hidden channels (of mlp_hidden). */
typedef struct macs_widths {
    size_t num_heads;
    const size_t *dq, *dv, *f;
} macs_widths;

/* The dense architecture, and the kept widths per block (NULL: dense everywhere). */
typedef struct macs_vit {
    size_t img_size, patch, in_chans, embed_dim, depth, mlp_hidden, num_classes;
    const macs_widths *widths;
} macs_vit;

/* The token reduction: method TOK_NONE (or a NULL pointer) is the dense model. */
typedef struct macs_tokens {
    tok_method method;
    int n_stages;
    const int *prune_loc;   /* [n_stages] */
    const float *keep_frac; /* [n_stages] cumulative keep fractions (keep.h) */
    bool evit_drop_pruned;  /* a DROPPED_FUSE method run without fusion (tps.fuse_token = false):
                               its dropped tokens are discarded; false = the method's own rule */
} macs_tokens;

/* 0 when the image has no patch (patch 0 or larger than the image) or the width is 0. */
double macs_per_image(const macs_vit *vit, const macs_tokens *tokens);

#endif
