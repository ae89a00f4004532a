/* Rules that involve more than one key, checked after the file and again after overrides.
 *
 * Every message starts with where the offending key was set ("recipes/x.ini:12: [tps]
 * prune_loc: ", "--set tps.prune_loc: ", or "recipes/x.ini (default): [tps] prune_loc: "),
 * so the user edits the right line at once. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/recipe/schema.h"

void recipe_key_place(const tpsc_recipe *r, int i, char *buf, size_t n) {
    const recipe_key *k = &recipe_keys[i];
    const int line = r->origin.line[i];
    const char *source = r->origin.source[0] ? r->origin.source : "recipe";
    if (line > 0) snprintf(buf, n, "%s:%d: [%s] %s: ", source, line, k->section, k->name);
    else if (line < 0) snprintf(buf, n, "--set %s.%s: [%s] %s: ", k->section, k->name, k->section, k->name);
    else snprintf(buf, n, "%s (default): [%s] %s: ", source, k->section, k->name);
}

static int key_index(const char *section, const char *name) { return recipe_key_find(section, name); }

__attribute__((format(printf, 4, 5))) static tpsc_status key_fail(const tpsc_recipe *r, const char *section, const char *name,
                                                                  const char *fmt, ...) {
    char place[TPSC_RECIPE_PATH_MAX + 96], why[768];
    recipe_key_place(r, key_index(section, name), place, sizeof place);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return tpsc_fail(TPSC_ERR_CONFIG, "%s%s", place, why);
}

/* Of two keys in a conflict, the one set last (an override beats any line, a later line an
 * earlier one): that is the edit most likely to be wrong. */
static const char *later_key(const tpsc_recipe *r, const char *section, const char *a, const char *b) {
    int la = r->origin.line[key_index(section, a)], lb = r->origin.line[key_index(section, b)];
    if (la < 0) return a;
    if (lb < 0) return b;
    return lb > la ? b : a;
}

/* "set at line 7" / "set by --set" / "the default": where the other key of a conflict came from. */
static const char *origin_word(const tpsc_recipe *r, const char *section, const char *name, char *buf, size_t n) {
    int line = r->origin.line[key_index(section, name)];
    if (line > 0) snprintf(buf, n, "set at line %d", line);
    else snprintf(buf, n, "%s", line < 0 ? "set by --set" : "the default");
    return buf;
}

static tpsc_status validate_model(const tpsc_recipe *r) {
    const vit_config *v = &r->model.vit;
    char other[32];
    if (strcmp(v->arch, "custom") != 0) {
        vit_config named;
        if (vit_config_named(&named, v->arch) != TPSC_OK)
            return key_fail(r, "model", "arch", "%s", tpsc_last_error());
        for (int i = 0; i < recipe_key_count; i++) {
            const recipe_key *k = &recipe_keys[i];
            if (strcmp(k->section, "model") != 0 || !recipe_key_is_arch_fixed(k->name)) continue;
            const size_t at = k->offset - offsetof(tpsc_recipe, model.vit);
            if (!memcmp((const char *)r + k->offset, (const char *)&named + at, k->size)) continue;
            char mine[64], theirs[64];
            recipe_value_format(k, r, mine, sizeof mine);
            tpsc_recipe tmp;
            memcpy((char *)&tmp + k->offset, (const char *)&named + at, k->size);
            recipe_value_format(k, &tmp, theirs, sizeof theirs);
            return key_fail(r, "model", k->name, "%s contradicts arch = %s (%s), which has %s = %s; use arch = custom for free sizes", mine,
                            v->arch, origin_word(r, "model", "arch", other, sizeof other), k->name, theirs);
        }
    }
    if (v->img_size % v->patch_size != 0) {
        const char *at = later_key(r, "model", "img_size", "patch_size");
        return key_fail(r, "model", at, "patch_size %zu does not divide img_size %zu (%s %s)", v->patch_size, v->img_size,
                        strcmp(at, "img_size") ? "img_size" : "patch_size",
                        origin_word(r, "model", strcmp(at, "img_size") ? "img_size" : "patch_size", other, sizeof other));
    }
    if (v->embed_dim % v->num_heads != 0) {
        const char *at = later_key(r, "model", "embed_dim", "num_heads");
        return key_fail(r, "model", at, "num_heads %zu does not divide embed_dim %zu (%s %s)", v->num_heads, v->embed_dim,
                        strcmp(at, "embed_dim") ? "embed_dim" : "num_heads",
                        origin_word(r, "model", strcmp(at, "embed_dim") ? "embed_dim" : "num_heads", other, sizeof other));
    }
    if (vit_config_validate(v) != TPSC_OK) {
        tpsc_error_context("%s: [model]: ", r->origin.source[0] ? r->origin.source : "recipe");
        return TPSC_ERR_CONFIG;
    }
    return TPSC_OK;
}

static tpsc_status validate_tps(const tpsc_recipe *r) {
    const tpsc_recipe_tps *t = &r->tps;
    if (!t->fuse_token && t->cfg.method != TOK_EVIT)
        return key_fail(r, "tps", "fuse_token", "false applies to tps.method = evit only, not %s",
                        tok_method_name(t->cfg.method));
    if (t->cfg.method == TOK_NONE) return TPSC_OK;
    const int depth = (int)r->model.vit.depth;
    char other[32];
    for (int s = 0; s < t->n_prune_loc; s++) {
        if (t->prune_loc[s] < 1 || t->prune_loc[s] >= depth)
            return key_fail(r, "tps", "prune_loc", "location %d is outside [1, %d) for model.depth = %d (%s)", t->prune_loc[s],
                            depth, depth, origin_word(r, "model", "depth", other, sizeof other));
        if (s > 0 && t->prune_loc[s] <= t->prune_loc[s - 1])
            return key_fail(r, "tps", "prune_loc", "locations must increase: %d comes after %d", t->prune_loc[s], t->prune_loc[s - 1]);
    }
    if (t->n_keep_ratio != 1 && t->n_keep_ratio != t->n_prune_loc)
        return key_fail(r, "tps", "keep_ratio",
                        "%d values for %d prune locations (prune_loc %s): give one rho, or one cumulative fraction per location",
                        t->n_keep_ratio, t->n_prune_loc, origin_word(r, "tps", "prune_loc", other, sizeof other));
    for (int s = 1; s < t->n_keep_ratio; s++)
        if (t->keep_ratio[s] > t->keep_ratio[s - 1])
            return key_fail(r, "tps", "keep_ratio",
                            "the list gives cumulative fractions of the patch tokens, which cannot grow: %g after %g",
                            (double)t->keep_ratio[s], (double)t->keep_ratio[s - 1]);
    /* The model checks the resolved config again (vit_model_create); failing here instead
     * keeps the error at load time, with the recipe's name on it. */
    if (tok_config_validate(&t->cfg, depth) != TPSC_OK) {
        tpsc_error_context("%s: [tps]: ", r->origin.source[0] ? r->origin.source : "recipe");
        return TPSC_ERR_CONFIG;
    }
    return TPSC_OK;
}

static tpsc_status validate_cdcp(const tpsc_recipe *r) {
    const int depth = (int)r->model.vit.depth;
    char other[32];
    for (int k = 0; k < CHAN_KINDS; k++) {
        const char *name = chan_key_name((chan_gate_kind)k) + 5; /* after "cdcp." */
        const int n = r->cdcp.n_keep[k];
        if (n != 1 && n != depth)
            return key_fail(r, "cdcp", name, "%d values for model.depth = %d (%s): give one for every block, or one per block",
                            n, depth, origin_word(r, "model", "depth", other, sizeof other));
    }
    const chan_config *c = &r->tps.cfg.chan;
    const size_t D = r->model.vit.num_heads ? r->model.vit.embed_dim / r->model.vit.num_heads : 0;
    const size_t F = (size_t)((float)r->model.vit.embed_dim * r->model.vit.mlp_ratio + 0.5f);
    for (int k = 0; k < CHAN_KINDS; k++) {
        const size_t width = k == CHAN_MLP ? F : D;
        for (int i = 0; i < c->n_blocks; i++)
            if (chan_keep_count(c, i, (chan_gate_kind)k, width) == 0)
                return key_fail(r, "cdcp", chan_key_name((chan_gate_kind)k) + 5,
                                "%g keeps floor(%zu * %g) = 0 of the %zu channels of block %d (%s wide); the smallest "
                                "ratio that keeps one is %g",
                                (double)c->keep[k][i], width, (double)c->keep[k][i], width, i,
                                k == CHAN_MLP ? "MLP hidden: embed_dim * mlp_ratio" : "a head: embed_dim / num_heads",
                                1.0 / (double)width);
    }
    if (chan_config_validate(c, depth, D, F) != TPSC_OK) {
        tpsc_error_context("%s: [cdcp]: ", r->origin.source[0] ? r->origin.source : "recipe");
        return TPSC_ERR_CONFIG;
    }
    return TPSC_OK;
}

static tpsc_status validate_augment(const tpsc_recipe *r) {
    const tpsc_recipe_augment *a = &r->augment;
    const int chans = (int)r->model.vit.in_chans;
    char other[32];
    if (a->n_mean != chans)
        return key_fail(r, "augment", "mean", "%d values for model.in_chans = %d (%s); give one per channel", a->n_mean, chans,
                        origin_word(r, "model", "in_chans", other, sizeof other));
    if (a->n_std != chans)
        return key_fail(r, "augment", "std", "%d values for model.in_chans = %d (%s); give one per channel", a->n_std, chans,
                        origin_word(r, "model", "in_chans", other, sizeof other));
    if (a->scale[0] > a->scale[1])
        return key_fail(r, "augment", "scale", "min %g is above max %g", (double)a->scale[0], (double)a->scale[1]);
    if (a->ratio[0] > a->ratio[1])
        return key_fail(r, "augment", "ratio", "min %g is above max %g", (double)a->ratio[0], (double)a->ratio[1]);
    if (!a->randaug[0]) return TPSC_OK;
    /* timm's grammar: "rand" then "-<key><number>" parts, keys m n w mstd mmax inc p. Checked
     * here so that a typo stops the run at load time, not when the loader starts. */
    static const char *const keys[] = {"m", "n", "w", "mstd", "mmax", "inc", "p"};
    char spec[TPSC_RECIPE_NAME_MAX];
    snprintf(spec, sizeof spec, "%s", a->randaug);
    char *save = NULL, *part = strtok_r(spec, "-", &save);
    if (!part || strcmp(part, "rand") != 0)
        return key_fail(r, "augment", "randaug", "'%s' must start with 'rand-' (timm grammar, e.g. rand-m9-mstd0.5-inc1)", a->randaug);
    while ((part = strtok_r(NULL, "-", &save))) {
        size_t klen = 0;
        while (isalpha((unsigned char)part[klen])) klen++;
        bool known = false;
        for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++) known |= strlen(keys[j]) == klen && !strncmp(keys[j], part, klen);
        char *end;
        const char *num = part + klen;
        (void)strtod(num, &end);
        if (!known || !*num || *end)
            return key_fail(r, "augment", "randaug",
                            "'%s' in '%s' is not <key><number> with key one of m, n, w, mstd, mmax, inc, p", part, a->randaug);
    }
    return TPSC_OK;
}

static tpsc_status validate_training(const tpsc_recipe *r) {
    char other[32];
    if (r->schedule.warmup_epochs >= (float)r->schedule.epochs)
        return key_fail(r, "schedule", "warmup_epochs", "%g warm-up epochs leave nothing of %d epochs (%s) to train", (double)r->schedule.warmup_epochs,
                        r->schedule.epochs, origin_word(r, "schedule", "epochs", other, sizeof other));
    if (r->schedule.min_lr > r->optim.lr)
        return key_fail(r, "schedule", "min_lr", "%g is above optim.lr = %g (%s)", (double)r->schedule.min_lr, (double)r->optim.lr,
                        origin_word(r, "optim", "lr", other, sizeof other));
    /* Empty items would match every parameter name (every name starts with ""). */
    const char *f = r->optim.freeze;
    if (f[0]) {
        for (const char *p = f;;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            size_t blank = 0;
            while (blank < len && isspace((unsigned char)p[blank])) blank++;
            if (blank == len) return key_fail(r, "optim", "freeze", "'%s' has an empty prefix, which would freeze everything", f);
            if (!comma) break;
            p = comma + 1;
        }
    }
    const tok_method m = r->tps.cfg.method;
    if (tok_method_has_predictor(m) && r->loss.distill_weight > 0) {
        if (!r->teacher.checkpoint[0])
            return key_fail(r, "loss", "distill_weight",
                            "%g with tps.method = %s needs [teacher] checkpoint (a dense model); set loss.distill_weight = 0 to "
                            "train without a teacher",
                            (double)r->loss.distill_weight, tok_method_name(m));
        if (r->loss.distill_token == TPSC_DISTILL_TOKEN_NONE && !r->loss.distill_cls)
            return key_fail(r, "loss", "distill_weight", "%g but distill_token = none and distill_cls = false: nothing to distill",
                            (double)r->loss.distill_weight);
    }
    if (tok_method_has_predictor(m) && r->loss.guide_weight > 0 && !r->teacher.checkpoint[0])
        return key_fail(r, "loss", "guide_weight",
                        "%g needs [teacher] checkpoint: the guide is the teacher's cls attention", (double)r->loss.guide_weight);
    if (r->data.format != TPSC_DATA_FASHION_MNIST) {
        if (!r->data.train[0]) return key_fail(r, "data", "train", "data.format needs a training set path");
        if (!r->data.val[0]) return key_fail(r, "data", "val", "data.format needs a validation set path");
    }
    return TPSC_OK;
}

tpsc_status tpsc_recipe_validate(const tpsc_recipe *r) {
    TPSC_TRY(validate_model(r));
    TPSC_TRY(validate_tps(r));
    TPSC_TRY(validate_cdcp(r));
    TPSC_TRY(validate_augment(r));
    return validate_training(r);
}
