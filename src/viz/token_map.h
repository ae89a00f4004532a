/* Which patches of one image survive each TPS stage, and where squeezed tokens went
 * (`tpsc visualize`). The picture DynamicViT and EViT users ask for. For merging methods
 * (tome, atme) the groups of patches each token holds after chosen blocks, as ToMe's figures
 * show them (merge_map.c).
 *
 * No forward of its own: the map reads what vit_forward (VIT_INFER, one image) reports, the
 * kept original patch indices per stage (vit_output.kept_orig), the host of each squeezed patch
 * (squeezed_into: the first of tied maxima of the squeeze's cosine similarities) and the
 * merging methods' source map. tests/test_visualize.c checks the hosts against the rule
 * recomputed from each stage's tokens. */
#ifndef TPSC_VIZ_TOKEN_MAP_H
#define TPSC_VIZ_TOKEN_MAP_H

#include <stdint.h>

#include "src/model/vit.h"

#define TPSC_VIZ_MAX_PATCHES 1024  /* N: a 32 x 32 patch grid */
#define TPSC_VIZ_MAX_CLASSES 1000  /* K */
#define TPSC_VIZ_NO_HOST (-1)      /* not dropped at this stage, or dropped by a prune-only method */
#define TPSC_VIZ_FUSED (-2)        /* evit: merged into the one fused token, which has no patch */

typedef struct tpsc_token_map {
    tok_method method;
    int n_stages;
    size_t grid;                   /* patches per side; N = grid * grid */
    size_t n_patches;              /* N */
    size_t kept_count[TOK_MAX_STAGES];
    /* alive[s][j]: patch j is still a token of its own after stage s (cumulative) */
    uint8_t alive[TOK_MAX_STAGES][TPSC_VIZ_MAX_PATCHES];
    /* host[s][j], for a patch dropped AT stage s: the original patch index of the kept token
     * it was squeezed into (>= 0), TPSC_VIZ_FUSED, or TPSC_VIZ_NO_HOST. */
    int32_t host[TOK_MAX_STAGES][TPSC_VIZ_MAX_PATCHES];
    int32_t kept_orig[TOK_MAX_STAGES][TPSC_VIZ_MAX_PATCHES]; /* as vit_output.kept_orig, order kept */
    float logits[TPSC_VIZ_MAX_CLASSES];                      /* [K] */
    size_t num_classes;
    /* merging methods: panel s shows the model after block block[s]; group[s][j] is the token
     * (0-based, cls excluded) holding patch j there, so the patches of one token form one
     * region (kept_count[s] regions); alive[s] is all ones, host unused */
    int block[TOK_MAX_STAGES];
    int32_t group[TOK_MAX_STAGES][TPSC_VIZ_MAX_PATCHES];
} tpsc_token_map;

/* Panels after the input image that tpsc_token_map_compute fills for m: a pruning method's
 * stages; atme's merge locations; tome: TPSC_VIZ_TOME_PANELS blocks spread over the depth (the
 * last block last); 0 for a dense model. */
#define TPSC_VIZ_TOME_PANELS 4
int tpsc_token_map_panels(const vit_model *m);

/* One image image_chw [Cin,H,W] (normalised, the model's input) through vit_forward in
 * inference mode. keep_override: tokens per stage instead of the model's (NULL = the model's).
 * ctx is reset and left with grad disabled. Errors name the stage or size at fault. */
tpsc_status tpsc_token_map_compute(vit_model *m, ag_ctx *ctx, const float *image_chw, const size_t *keep_override,
                                   tpsc_token_map *map);
/* merge_map.c: the panels of merging methods from out's source map (one image); map's
 * n_stages and n_patches set. Called by tpsc_token_map_compute. */
void tpsc_merge_map_fill(const vit_model *m, const vit_output *out, tpsc_token_map *map);

#endif
