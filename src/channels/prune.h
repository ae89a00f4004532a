/* Export of a gated model: the channels its gates drop are removed from the weights. */
#ifndef TPSC_CHANNELS_PRUNE_H
#define TPSC_CHANNELS_PRUNE_H

#include "src/model/vit.h"

/* out (initialised here; free with ag_params_free) receives every parameter of m but the gates,
 * in m's order, with block i's pruned channels removed (H heads, D = C/H; dq, dv, f the kept
 * counts of chan_keep_count, the kept channels those of chan_topk_indices, in index order):
 *   attn.qkv.weight [H(2dq+dv), C], attn.qkv.bias [H(2dq+dv)]: rows q(h, j) for j in I_qk,
 *       then k(h, j) for j in I_qk, then v(h, j) for j in I_v, head by head;
 *   attn.proj.weight [C, H dv]: columns v(h, j) for j in I_v, head by head;
 *   mlp.fc1.weight [f, C], mlp.fc1.bias [f], mlp.fc2.weight [C, f]: the kept hidden channels.
 * width[k][i] receives dq, dv and f of block i. A model without gates is copied as it is. */
tpsc_status chan_prune_params(const vit_model *m, ag_params *out, int32_t width[CHAN_KINDS][CHAN_MAX_BLOCKS]);

/* Writes m as an inference file (ck gives everything but format, params and widths): the pruned
 * parameters and the per-block widths when m has gates, m's parameters as they are otherwise. */
struct tpsc_checkpoint;
tpsc_status chan_save_inference(const char *path, const vit_model *m, const struct tpsc_checkpoint *ck);
/* The same file made in memory (tpsc_checkpoint_save_image): *image (tpsc_free) of *bytes. */
tpsc_status chan_save_inference_image(const vit_model *m, const struct tpsc_checkpoint *ck, const char *name,
                                      void **image, size_t *bytes);

#endif
