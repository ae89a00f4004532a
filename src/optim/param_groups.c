#include "src/optim/param_groups.h"

#include <string.h>

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* DeiT's no_weight_decay() set: exact names, as timm compares them. */
static bool in_no_decay_list(const char *name) {
    return strcmp(name, "cls_token") == 0 || strcmp(name, "pos_embed") == 0 ||
           strcmp(name, "dist_token") == 0;
}

void tpsc_param_groups_assign(ag_params *p) {
    for (int i = 0; i < p->count; i++) {
        ag_param *it = &p->items[i];
        it->no_decay = it->t.ndim <= 1 || ends_with(it->name, ".bias") || in_no_decay_list(it->name);
        /* channel gates are decisions, as the predictors: they train at the full lr */
        it->group = starts_with(it->name, TPSC_PREDICTOR_PREFIX) || ends_with(it->name, "_gate") ? TPSC_GROUP_PREDICTOR
                                                                                                  : TPSC_GROUP_BACKBONE;
    }
}

void tpsc_param_groups_decay_all(ag_params *p) {
    for (int i = 0; i < p->count; i++) p->items[i].no_decay = false;
}

static int matching_prefix(const char *name, const char *const *prefixes, int n_prefixes) {
    for (int k = 0; k < n_prefixes; k++)
        if (starts_with(name, prefixes[k])) return k;
    return -1;
}

tpsc_status tpsc_param_groups_freeze(ag_params *p, const char *const *prefixes, int n_prefixes,
                                     bool frozen, int *n_changed) {
    if (n_changed) *n_changed = 0;
    if (n_prefixes < 0 || (n_prefixes > 0 && !prefixes))
        return tpsc_fail(TPSC_ERR_ARG, "freeze: %d prefixes given without a list", n_prefixes);
    /* Check every prefix first so a typo leaves the flags as they were. */
    for (int k = 0; k < n_prefixes; k++) {
        if (!prefixes[k]) return tpsc_fail(TPSC_ERR_ARG, "freeze: prefix %d is NULL", k);
        bool hit = false;
        for (int i = 0; i < p->count && !hit; i++) hit = starts_with(p->items[i].name, prefixes[k]);
        if (!hit)
            return tpsc_fail(TPSC_ERR_MISSING, "freeze: no parameter name starts with \"%s\"",
                             prefixes[k]);
    }
    int changed = 0;
    for (int i = 0; i < p->count; i++) {
        if (matching_prefix(p->items[i].name, prefixes, n_prefixes) < 0) continue;
        ag_param_set_frozen(p, i, frozen);
        changed++;
    }
    if (n_changed) *n_changed = changed;
    return TPSC_OK;
}

size_t tpsc_param_groups_trainable(const ag_params *p) {
    size_t n = 0;
    for (int i = 0; i < p->count; i++)
        if (!p->items[i].frozen) n += p->items[i].numel;
    return n;
}
