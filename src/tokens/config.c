/* TPS configuration: validation, and the shared rules (src/common/keep.h) for a tok_config. */
#include <math.h>
#include <stdio.h>

#include "src/common/keep.h"
#include "src/tokens/tokens.h"

void tok_config_fill_rho(tok_config *cfg, float rho) {
    keep_fill_rho(cfg->keep_frac, cfg->n_stages < TOK_MAX_STAGES ? cfg->n_stages : TOK_MAX_STAGES, rho);
}

const char *tok_config_label(const tok_config *cfg, char *buf, size_t n) {
    const bool plus = chan_enabled(&cfg->chan) && !tok_method_needs_channels(cfg->method);
    char r[32] = "";
    if (cfg->method == TOK_TOME && cfg->tome_inflect != 0.0f)
        snprintf(r, sizeof r, " r=%d/%g", cfg->tome_r, (double)cfg->tome_inflect);
    else if (cfg->method == TOK_TOME)
        snprintf(r, sizeof r, " r=%d", cfg->tome_r);
    snprintf(buf, n, "%s%s%s", tok_method_name(cfg->method), r, plus ? "+cdcp" : "");
    return buf;
}

tpsc_status tok_config_validate(const tok_config *cfg, int depth) {
    if (!cfg) return tpsc_fail(TPSC_ERR_ARG, "tps config: NULL");
    if (!tok_method_row(cfg->method)) {
        char names[128];
        tok_method_list(names, sizeof names);
        return tpsc_fail(TPSC_ERR_CONFIG, "tps.method: %d is not a method (%s)", (int)cfg->method, names);
    }
    if (cfg->n_stages < 0 || cfg->n_stages > TOK_MAX_STAGES)
        return tpsc_fail(TPSC_ERR_CONFIG, "tps.prune_loc: %d stages, at most %d are supported", cfg->n_stages,
                         TOK_MAX_STAGES);
    if (cfg->method == TOK_NONE) return TPSC_OK;
    if (tok_method_needs_channels(cfg->method) && !chan_enabled(&cfg->chan))
        return tpsc_fail(TPSC_ERR_CONFIG,
                         "tps.method = %s joins ATME token merging with CDCP channel gates, and no channel is gated: set "
                         "[cdcp] keep_qk / keep_v (and keep_mlp) below 1 (docs/cait.md), or use tps.method = atme",
                         tok_method_name(cfg->method));
    if (cfg->method == TOK_TOME) {
        if (cfg->tome_r < 0) return tpsc_fail(TPSC_ERR_CONFIG, "tps.tome_r: %d must be >= 0", cfg->tome_r);
        if (!(cfg->tome_inflect >= -1.0f && cfg->tome_inflect <= 1.0f))
            return tpsc_fail(TPSC_ERR_CONFIG, "tps.tome_inflect: %g is outside [-1, 1]", (double)cfg->tome_inflect);
        return TPSC_OK; /* ToMe merges in every block; prune_loc and keep_ratio do not apply */
    }
    if (cfg->n_stages == 0)
        return tpsc_fail(TPSC_ERR_CONFIG, "tps.prune_loc: method %s needs at least one pruning location",
                         tok_method_name(cfg->method));
    if (depth < 2)
        return tpsc_fail(TPSC_ERR_CONFIG, "tps.prune_loc: depth %d leaves no block to prune at (need depth >= 2)",
                         depth);
    for (int s = 0; s < cfg->n_stages; s++) {
        int loc = cfg->prune_loc[s];
        if (loc < 1 || loc >= depth)
            return tpsc_fail(TPSC_ERR_CONFIG, "tps.prune_loc: %d is out of range for depth %d (valid 1..%d)", loc,
                             depth, depth - 1);
        if (s > 0 && loc <= cfg->prune_loc[s - 1])
            return tpsc_fail(TPSC_ERR_CONFIG, "tps.prune_loc: %d follows %d; locations must strictly increase", loc,
                             cfg->prune_loc[s - 1]);
        float f = cfg->keep_frac[s];
        if (!(f > 0.0f && f <= 1.0f))
            return tpsc_fail(TPSC_ERR_CONFIG, "tps.keep_ratio: %g is outside (0, 1] (stage %d)", (double)f, s + 1);
        if (s > 0 && f > cfg->keep_frac[s - 1])
            return tpsc_fail(TPSC_ERR_CONFIG,
                             "tps.keep_ratio: stage %d keeps %g of the tokens, more than stage %d (%g); the "
                             "cumulative fractions must not increase",
                             s + 1, (double)f, s, (double)cfg->keep_frac[s - 1]);
    }
    if (cfg->train_removal && tok_method_has_predictor(cfg->method) && cfg->train_mask != TOK_MASK_TOPK)
        return tpsc_fail(TPSC_ERR_CONFIG, "tps.train_removal: needs tps.train_mask = topk (gumbel masks keep a different "
                         "number of tokens in every image, so training stays masked)");
    if (tok_method_squeezes(cfg->method) && !(cfg->squeeze_temp > 0.0f && isfinite(cfg->squeeze_temp)))
        return tpsc_fail(TPSC_ERR_CONFIG, "tps.squeeze_temp: %g must be a finite number > 0",
                         (double)cfg->squeeze_temp);
    return TPSC_OK;
}

size_t tok_keep_count(const tok_config *cfg, int stage, size_t n_patches) {
    return cfg ? keep_count_predictor(cfg->keep_frac, cfg->n_stages, stage, n_patches) : n_patches;
}

size_t tok_evit_keep_count(const tok_config *cfg, int stage, size_t n) {
    return cfg ? keep_count_evit(cfg->keep_frac, cfg->n_stages, stage, n) : n;
}
