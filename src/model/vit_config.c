/* ViT sizes: the named DeiT configurations and the checks every configuration must pass.
 *
 * The named sizes are timm's deit_{tiny,small,base}_patch16_224 (timm/models/deit.py), so a
 * checkpoint converted from timm loads into the model these produce without reshaping. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "src/model/vit.h"

typedef struct named_vit {
    const char *arch;
    size_t embed_dim, depth, num_heads;
} named_vit;

static const named_vit named_vits[] = {
    {"deit_tiny_patch16_224", 192, 12, 3},
    {"deit_small_patch16_224", 384, 12, 6},
    {"deit_base_patch16_224", 768, 12, 12},
};
#define N_NAMED ((int)(sizeof named_vits / sizeof named_vits[0]))

tpsc_status vit_config_named(vit_config *cfg, const char *arch) {
    for (int i = 0; i < N_NAMED; i++) {
        if (strcmp(arch, named_vits[i].arch) != 0) continue;
        memset(cfg, 0, sizeof *cfg);
        snprintf(cfg->arch, sizeof cfg->arch, "%s", arch);
        cfg->img_size = 224;
        cfg->patch_size = 16;
        cfg->in_chans = 3;
        cfg->embed_dim = named_vits[i].embed_dim;
        cfg->depth = named_vits[i].depth;
        cfg->num_heads = named_vits[i].num_heads;
        cfg->num_classes = 1000;
        cfg->mlp_ratio = 4.0f;
        cfg->ln_eps = 1e-6f;
        return TPSC_OK;
    }
    return tpsc_fail(TPSC_ERR_CONFIG,
                     "unknown arch '%s' (known: deit_tiny_patch16_224, deit_small_patch16_224, "
                     "deit_base_patch16_224, or custom with explicit sizes)",
                     arch);
}

tpsc_status vit_config_validate(const vit_config *cfg) {
    if (memchr(cfg->arch, '\0', sizeof cfg->arch) == NULL)
        return tpsc_fail(TPSC_ERR_CONFIG, "vit config: arch name is not terminated");
    const struct {
        const char *name;
        size_t value;
    } sizes[] = {
        {"img_size", cfg->img_size},   {"patch_size", cfg->patch_size}, {"in_chans", cfg->in_chans},
        {"embed_dim", cfg->embed_dim}, {"depth", cfg->depth},           {"num_heads", cfg->num_heads},
        {"num_classes", cfg->num_classes},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value == 0) return tpsc_fail(TPSC_ERR_CONFIG, "vit config %s: %s must be positive", cfg->arch, sizes[i].name);
    /* The patch embedding is a conv with kernel = stride = patch: a remainder would be dropped. */
    if (cfg->img_size % cfg->patch_size != 0)
        return tpsc_fail(TPSC_ERR_CONFIG, "vit config %s: patch_size %zu does not divide img_size %zu", cfg->arch,
                         cfg->patch_size, cfg->img_size);
    if (cfg->embed_dim % cfg->num_heads != 0)
        return tpsc_fail(TPSC_ERR_CONFIG, "vit config %s: num_heads %zu does not divide embed_dim %zu", cfg->arch,
                         cfg->num_heads, cfg->embed_dim);
    if (!(cfg->mlp_ratio > 0.0f) || !isfinite(cfg->mlp_ratio))
        return tpsc_fail(TPSC_ERR_CONFIG, "vit config %s: mlp_ratio %g must be positive", cfg->arch, (double)cfg->mlp_ratio);
    if (lroundf((float)cfg->embed_dim * cfg->mlp_ratio) < 1)
        return tpsc_fail(TPSC_ERR_CONFIG, "vit config %s: embed_dim %zu * mlp_ratio %g leaves no MLP hidden unit",
                         cfg->arch, cfg->embed_dim, (double)cfg->mlp_ratio);
    if (!(cfg->ln_eps > 0.0f) || !isfinite(cfg->ln_eps))
        return tpsc_fail(TPSC_ERR_CONFIG, "vit config %s: ln_eps %g must be positive", cfg->arch, (double)cfg->ln_eps);
    return TPSC_OK;
}

size_t vit_num_patches(const vit_config *cfg) {
    if (cfg->patch_size == 0) return 0;
    const size_t side = cfg->img_size / cfg->patch_size;
    return side * side;
}
