/* The cost model (src/common/macs.h) for a tok_config, with its arguments checked. */
#include <math.h>

#include "src/common/macs.h"
#include "src/model/vit.h"
#include "src/tokens/tokens.h"

double tok_macs_per_image(const tok_config *cfg, size_t img_size, size_t patch, size_t in_chans, size_t embed_dim,
                          size_t depth, size_t mlp_hidden, size_t num_classes) {
    if (patch == 0 || img_size < patch || embed_dim == 0) {
        tpsc_fail(TPSC_ERR_ARG, "macs: image %zu with patch %zu and width %zu has no tokens", img_size, patch,
                  embed_dim);
        return 0.0;
    }
    const macs_vit vit = {img_size, patch, in_chans, embed_dim, depth, mlp_hidden, num_classes, NULL};
    if (!cfg) return macs_per_image(&vit, NULL);
    const macs_tokens tokens = {cfg->method, cfg->n_stages, cfg->prune_loc, cfg->keep_frac, cfg->evit_drop_pruned};
    return macs_per_image(&vit, &tokens);
}

double vit_macs_per_image(const vit_config *v, const tok_config *cfg) {
    const size_t hidden = (size_t)lroundf((float)v->embed_dim * v->mlp_ratio);
    if (!cfg || !chan_enabled(&cfg->chan) || v->num_heads == 0 || v->depth > CHAN_MAX_BLOCKS)
        return tok_macs_per_image(cfg, v->img_size, v->patch_size, v->in_chans, v->embed_dim, v->depth, hidden,
                                  v->num_classes);
    /* channel gates: the widths export keeps (chan_keep_count) */
    size_t w[3][CHAN_MAX_BLOCKS];
    const size_t D = v->embed_dim / v->num_heads;
    for (size_t i = 0; i < v->depth; i++)
        for (int k = 0; k < CHAN_KINDS; k++)
            w[k][i] = chan_keep_count(&cfg->chan, (int)i, (chan_gate_kind)k, k == CHAN_MLP ? hidden : D);
    const macs_widths widths = {v->num_heads, w[CHAN_QK], w[CHAN_V], w[CHAN_MLP]};
    const macs_vit vit = {v->img_size, v->patch_size, v->in_chans, v->embed_dim, v->depth, hidden, v->num_classes, &widths};
    const macs_tokens tokens = {cfg->method, cfg->n_stages, cfg->prune_loc, cfg->keep_frac, cfg->evit_drop_pruned};
    return macs_per_image(&vit, &tokens);
}
