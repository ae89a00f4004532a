/* CDCP-style channel pruning (our design after CAIT's abstract; docs/cait.md): learned gates on
 * channels that keep attention heads uniform.
 *
 * Per gated block i (letters: H heads, D = C/H head size, F MLP hidden width):
 *   qk_gate [D]  one mask over a head's channels, shared by every head and by Q and K (q.k
 *                sums over the channels kept in both);
 *   v_gate  [D]  one mask over a head's V channels, which also selects proj's input columns;
 *   fc1_gate [F] optional MLP hidden-channel mask (fc1 rows, fc2 columns).
 * Training: a straight-through Gumbel-sigmoid sample per channel (noise drawn per step, the
 * same mask for every image) and a keep-ratio loss towards the block's target. Inference: the
 * top-k channels by gate logit, k = chan_keep_count. Export removes the other channels from
 * the weights, so every head of block i is dq = k_qk wide in Q/K and dv = k_v wide in V.
 * The softmax scale stays 1/sqrt(D) of the dense model. */
#ifndef TPSC_CHANNELS_CHANNELS_H
#define TPSC_CHANNELS_CHANNELS_H

#include "autograd/ag.h"
#include "autograd/params.h"
#include "src/util/rng.h"

#define CHAN_MAX_BLOCKS 32

/* The three gates of a block. */
typedef enum chan_gate_kind { CHAN_QK = 0, CHAN_V, CHAN_MLP, CHAN_KINDS } chan_gate_kind;

/* Recipe keys [cdcp] keep_qk, keep_v, keep_mlp, gate_init, gate_temp. A zeroed struct is a
 * model without gates. */
typedef struct chan_config {
    int n_blocks;                          /* 0: no gates; else the model depth */
    float keep[CHAN_KINDS][CHAN_MAX_BLOCKS]; /* target kept fraction per kind and block; 1 = no gate */
    float gate_init;                       /* initial gate logit (sigmoid(3) = 0.95 kept) */
    float gate_temp;                       /* Gumbel-sigmoid temperature tau of the backward */
} chan_config;

/* Parameter indices of block i's gates in the model's ag_params, -1 where ungated. */
typedef struct chan_gates {
    int gate[CHAN_KINDS];
} chan_gates;

/* Recipe keys "cdcp.keep_qk", "cdcp.keep_v", "cdcp.keep_mlp". */
const char *chan_key_name(chan_gate_kind k);
/* True when the config gates anything at all. */
bool chan_enabled(const chan_config *cfg);
/* True when block i has a gate of kind k (its keep fraction is below 1). */
bool chan_gated(const chan_config *cfg, int block, chan_gate_kind k);
/* Channels kept out of `width` by block i's gate of kind k: floor(width * keep) computed in
 * double from the decimal the recipe gave (as tok_keep_count); width when ungated; may be 0
 * (chan_config_validate rejects that). */
size_t chan_keep_count(const chan_config *cfg, int block, chan_gate_kind k, size_t width);
/* Checks a config for a model of `depth` blocks, head size D and MLP width F. A keep fraction
 * that leaves zero channels is an error naming the key, the block and the numbers. */
tpsc_status chan_config_validate(const chan_config *cfg, int depth, size_t D, size_t F);

/* Declares block i's gates ("blocks.{i}.attn.qk_gate" [D], "blocks.{i}.attn.v_gate" [D],
 * "blocks.{i}.mlp.fc1_gate" [F]); no weight decay (a decayed logit drifts to 0.5 keep). */
tpsc_status chan_gates_declare(chan_gates *g, ag_params *p, const chan_config *cfg, int block, size_t D, size_t F);
void chan_gates_init(const chan_gates *g, ag_params *p, const chan_config *cfg);

/* ---- the gate ops (gate.c) --------------------------------------------------------------- */
/* Straight-through Gumbel-sigmoid: logits [L], u [L] uniform in (0,1) ->
 * mask [L] = 1[l + log u - log(1-u) > 0] (a tie keeps); backward that of
 * sigmoid((l + log u - log(1-u)) / tau). */
ag_tensor *chan_gumbel_gate(ag_ctx *ctx, ag_tensor *logits, const float *u, float tau);
/* Top-k of the logits [L] (ties: lower index first) -> a 0/1 mask [L] with no gradient. */
ag_tensor *chan_topk_gate(ag_ctx *ctx, ag_tensor *logits, size_t k);
/* kept[0..k) = indices of the k largest logits in ascending index order (export and libtpsinfer
 * keep channels in their original order). false when k is outside [1, L]. */
bool chan_topk_indices(const float *logits, size_t L, size_t k, int32_t *kept);
/* qkv [B,n,3C] * [qk mask tiled over heads | qk tiled | v tiled]: either mask may be NULL
 * (ungated); gradients flow into qkv and both masks. */
ag_tensor *chan_mask_qkv(ag_ctx *ctx, ag_tensor *qkv, ag_tensor *qk, ag_tensor *v, size_t heads);

#endif
