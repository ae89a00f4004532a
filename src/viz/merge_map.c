/* Token maps of merging methods (tome, atme): which patches each token holds after chosen
 * blocks. No forward of its own: vit_forward (VIT_INFER, one image) reports the source map
 * after every block (vit_output.patch_token_block [N] per block, docs/merging.md), and the
 * panels read it. Letters: N patches, K classes. */
#include <string.h>

#include "autograd/ops.h"
#include "src/viz/token_map.h"

/* Panel s's block: atme's (and cait's) merge locations; tome's panels spread evenly, the last one after
 * the last block. */
static int panel_block(const vit_model *m, int s, int panels) {
    if (tok_method_merges_on_grid(m->tps.method)) return m->tps.prune_loc[s];
    return (int)(m->cfg.depth * (size_t)(s + 1) / (size_t)panels) - 1;
}

tpsc_status tpsc_merge_map_compute(vit_model *m, ag_ctx *ctx, const float *image_chw, tpsc_token_map *map) {
    const vit_config *c = &m->cfg;
    const size_t N = vit_num_patches(c);
    memset(map, 0, sizeof *map);
    map->method = m->tps.method;
    map->n_stages = tpsc_token_map_panels(m);
    map->n_patches = N;
    map->grid = c->img_size / c->patch_size;
    map->num_classes = c->num_classes;
    ag_ctx_reset(ctx);
    ag_set_grad_enabled(ctx, false);
    size_t shape[4] = {1, c->in_chans, c->img_size, c->img_size};
    vit_forward_opts opts = {.mode = VIT_INFER};
    vit_output out;
    ag_tensor *logits = vit_forward(ctx, m, ag_wrap(ctx, (float *)image_chw, NULL, 4, shape, false), &opts, &out);
    if (!logits) return ag_ctx_status(ctx);
    memcpy(map->logits, logits->data, c->num_classes * sizeof(float));
    for (int s = 0; s < map->n_stages; s++) {
        const int b = panel_block(m, s, map->n_stages);
        const int32_t *pt = out.patch_token_block[b]; /* [N] */
        map->block[s] = b;
        int32_t regions = 0;
        for (size_t j = 0; j < N; j++) {
            map->group[s][j] = pt[j];
            map->alive[s][j] = 1;
            map->host[s][j] = TPSC_VIZ_NO_HOST;
            if (pt[j] + 1 > regions) regions = pt[j] + 1;
        }
        map->kept_count[s] = (size_t)regions;
    }
    return TPSC_OK;
}
