/* From the keys as written to the configs the model takes: model.vit for a named arch, and
 * tps.cfg (stages, cumulative keep fractions). */
#include <string.h>

#include "src/recipe/schema.h"

/* The sizes a named DeiT fixes; img_size, in_chans and num_classes stay free (fine-tuning at
 * another resolution or class count is ordinary timm practice). */
static const char *const arch_fixed_keys[] = {"patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio"};

static void resolve_model(tpsc_recipe *r) {
    vit_config *v = &r->model.vit;
    v->ln_eps = 1e-6f;
    if (!strcmp(v->arch, "custom")) return;
    vit_config named;
    if (vit_config_named(&named, v->arch) != TPSC_OK) return; /* validate reports it */
    const size_t vit_at = offsetof(tpsc_recipe, model.vit);
    for (size_t j = 0; j < sizeof arch_fixed_keys / sizeof arch_fixed_keys[0]; j++) {
        const int i = recipe_key_find("model", arch_fixed_keys[j]);
        if (i < 0 || r->origin.line[i] != 0) continue; /* set by the user: validate compares */
        const recipe_key *k = &recipe_keys[i];
        memcpy((char *)r + k->offset, (const char *)&named + (k->offset - vit_at), k->size);
    }
}

static void resolve_tps(tpsc_recipe *r) {
    tok_config *c = &r->tps.cfg;
    memset(c->prune_loc, 0, sizeof c->prune_loc);
    memset(c->keep_frac, 0, sizeof c->keep_frac);
    c->n_stages = 0;
    c->evit_drop_pruned = c->method == TOK_EVIT && !r->tps.fuse_token;
    if (c->method == TOK_NONE) return;
    const int n = r->tps.n_prune_loc;
    c->n_stages = n;
    memcpy(c->prune_loc, r->tps.prune_loc, (size_t)n * sizeof(int));
    if (r->tps.n_keep_ratio == 1) {
        /* Compounded in double from the decimal the user wrote, as Python's rho ** (s+1) in the
         * official code, so that token counts derived from keep_frac match it. */
        tok_config_fill_rho(c, r->tps.keep_ratio[0]);
    } else if (r->tps.n_keep_ratio == n) {
        memcpy(c->keep_frac, r->tps.keep_ratio, (size_t)n * sizeof(float));
    } /* else: a length mismatch, reported by validate; keep_frac stays 0 */
}

/* [cdcp] lists -> one keep fraction per block and gate kind; no gate anywhere leaves n_blocks 0.
 * A list of the wrong length is left for validate to report (its blocks stay ungated). */
static void resolve_cdcp(tpsc_recipe *r) {
    chan_config *c = &r->tps.cfg.chan;
    const int depth = (int)r->model.vit.depth;
    c->n_blocks = 0;
    memset(c->keep, 0, sizeof c->keep);
    if (depth < 1 || depth > CHAN_MAX_BLOCKS) return;
    for (int k = 0; k < CHAN_KINDS; k++) {
        const int n = r->cdcp.n_keep[k];
        for (int i = 0; i < depth; i++)
            c->keep[k][i] = n == 1 ? r->cdcp.keep[k][0] : n == depth ? r->cdcp.keep[k][i] : 1.0f;
    }
    c->n_blocks = depth;
    if (!chan_enabled(c)) {
        c->n_blocks = 0;
        memset(c->keep, 0, sizeof c->keep);
    }
}

void recipe_resolve(tpsc_recipe *r) {
    resolve_model(r);
    resolve_tps(r);
    resolve_cdcp(r);
}

bool recipe_key_is_arch_fixed(const char *name) {
    for (size_t j = 0; j < sizeof arch_fixed_keys / sizeof arch_fixed_keys[0]; j++)
        if (!strcmp(arch_fixed_keys[j], name)) return true;
    return false;
}
