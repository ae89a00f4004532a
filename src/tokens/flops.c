/* The cost model (src/common/macs.h) for a tok_config, with its arguments checked. */
#include "src/common/macs.h"
#include "src/tokens/tokens.h"

double tok_macs_per_image(const tok_config *cfg, size_t img_size, size_t patch, size_t in_chans, size_t embed_dim,
                          size_t depth, size_t mlp_hidden, size_t num_classes) {
    if (patch == 0 || img_size < patch || embed_dim == 0) {
        tpsc_fail(TPSC_ERR_ARG, "macs: image %zu with patch %zu and width %zu has no tokens", img_size, patch,
                  embed_dim);
        return 0.0;
    }
    const macs_vit vit = {img_size, patch, in_chans, embed_dim, depth, mlp_hidden, num_classes};
    if (!cfg) return macs_per_image(&vit, NULL);
    const macs_tokens tokens = {cfg->method, cfg->n_stages, cfg->prune_loc, cfg->keep_frac};
    return macs_per_image(&vit, &tokens);
}
