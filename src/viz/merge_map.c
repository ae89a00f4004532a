/* Token maps of merging methods (tome, atme): which patches each token holds after chosen
 * blocks, read from the source map vit_forward reports after every block
 * (vit_output.patch_token_block [N] per block, docs/merging.md). Letters: N patches. */
#include "src/viz/token_map.h"

/* Panel s's block: atme's (and cait's) merge locations; tome's panels spread evenly, the last one after
 * the last block. */
static int panel_block(const vit_model *m, int s, int panels) {
    if (tok_method_merges_on_grid(m->tps.method)) return m->tps.prune_loc[s];
    return (int)(m->cfg.depth * (size_t)(s + 1) / (size_t)panels) - 1;
}

void tpsc_merge_map_fill(const vit_model *m, const vit_output *out, tpsc_token_map *map) {
    for (int s = 0; s < map->n_stages; s++) {
        const int b = panel_block(m, s, map->n_stages);
        const int32_t *pt = out->patch_token_block[b]; /* [N] */
        map->block[s] = b;
        int32_t regions = 0;
        for (size_t j = 0; j < map->n_patches; j++) {
            map->group[s][j] = pt[j];
            map->alive[s][j] = 1;
            map->host[s][j] = TPSC_VIZ_NO_HOST;
            if (pt[j] + 1 > regions) regions = pt[j] + 1;
        }
        map->kept_count[s] = (size_t)regions;
    }
}
