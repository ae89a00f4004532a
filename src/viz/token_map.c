/* Token maps observe the one forward: vit_forward (VIT_INFER, one image) reports the patches
 * each stage kept (vit_output.kept_orig) and where the squeeze put each dropped patch
 * (squeezed_into); merge_map.c reads the source map of merging methods. Letters: N patches,
 * K classes. */
#include "src/viz/token_map.h"

#include <string.h>

#include "autograd/ops.h"

int tpsc_token_map_panels(const vit_model *m) {
    if (m->tps.method == TOK_NONE) return 0;
    if (m->tps.method == TOK_TOME)
        return m->cfg.depth < TPSC_VIZ_TOME_PANELS ? (int)m->cfg.depth : TPSC_VIZ_TOME_PANELS;
    return m->tps.n_stages;
}

/* Pruning methods: alive and kept_orig from kept_orig; a patch dropped at stage s goes to its
 * squeeze host (dtps, etps), to evit's fused token, or nowhere. */
static void pruning_map(const vit_model *m, const vit_output *out, tpsc_token_map *map) {
    const bool fuses = m->tps.method == TOK_EVIT && !m->tps.evit_drop_pruned;
    for (int s = 0; s < map->n_stages; s++) {
        map->kept_count[s] = out->kept_count[s];
        for (size_t j = 0; j < out->kept_count[s]; j++) {
            const int32_t p = out->kept_orig[s][j];
            map->kept_orig[s][j] = p;
            if (p >= 0) map->alive[s][p] = 1;
        }
        for (size_t j = 0; j < map->n_patches; j++) {
            const bool dropped_here = !map->alive[s][j] && (s == 0 || map->alive[s - 1][j]);
            if (out->squeezed_into[s] && out->squeezed_into[s][j] >= 0) map->host[s][j] = out->squeezed_into[s][j];
            else map->host[s][j] = dropped_here && fuses ? TPSC_VIZ_FUSED : TPSC_VIZ_NO_HOST;
        }
    }
}

tpsc_status tpsc_token_map_compute(vit_model *m, ag_ctx *ctx, const float *image_chw, const size_t *keep_override,
                                   tpsc_token_map *map) {
    const vit_config *c = &m->cfg;
    const size_t N = vit_num_patches(c);
    if (N > TPSC_VIZ_MAX_PATCHES)
        return tpsc_fail(TPSC_ERR_ARG, "visualize: %zu patches, more than the %d a token map holds", N, TPSC_VIZ_MAX_PATCHES);
    if (c->num_classes > TPSC_VIZ_MAX_CLASSES)
        return tpsc_fail(TPSC_ERR_ARG, "visualize: %zu classes, more than %d", c->num_classes, TPSC_VIZ_MAX_CLASSES);
    memset(map, 0, sizeof *map);
    map->method = m->tps.method;
    map->n_stages = tpsc_token_map_panels(m);
    map->n_patches = N;
    map->grid = c->img_size / c->patch_size;
    map->num_classes = c->num_classes;
    ag_ctx_reset(ctx);
    ag_set_grad_enabled(ctx, false);
    size_t shape[4] = {1, c->in_chans, c->img_size, c->img_size};
    vit_forward_opts opts = {.mode = VIT_INFER, .keep_override = keep_override};
    vit_output out;
    ag_tensor *logits = vit_forward(ctx, m, ag_wrap(ctx, (float *)image_chw, NULL, 4, shape, false), &opts, &out);
    if (!logits) return ag_ctx_status(ctx);
    memcpy(map->logits, logits->data, c->num_classes * sizeof(float));
    if (tok_method_merges(m->tps.method)) tpsc_merge_map_fill(m, &out, map);
    else pruning_map(m, &out, map);
    return TPSC_OK;
}
