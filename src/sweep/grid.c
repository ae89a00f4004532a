/* Grid axes, their product and run-folder names. See grid.h. */
#include "src/sweep/grid.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "src/util/alloc.h"

/* Keys the sweep owns: each run's folder and its resume point. */
static const char *const sweep_owned_keys[] = {"run.name", "run.out_dir", "run.resume"};

static void trim(char *s) {
    size_t n = strlen(s), a = 0;
    while (a < n && isspace((unsigned char)s[a])) a++;
    while (n > a && isspace((unsigned char)s[n - 1])) n--;
    memmove(s, s + a, n - a);
    s[n - a] = '\0';
}

tpsc_status tpsc_grid_add(tpsc_sweep_grid *g, const char *spec) {
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec)
        return tpsc_fail(TPSC_ERR_CONFIG, "--grid %s: expected section.key=v1,v2,..., e.g. tps.keep_ratio=0.5,0.7", spec);
    if (g->n_axes == TPSC_SWEEP_MAX_AXES)
        return tpsc_fail(TPSC_ERR_ARG, "--grid %s: at most %d grid axes", spec, TPSC_SWEEP_MAX_AXES);
    tpsc_sweep_axis *ax = &g->axes[g->n_axes];
    memset(ax, 0, sizeof *ax);
    size_t klen = (size_t)(eq - spec);
    if (klen >= sizeof ax->key) return tpsc_fail(TPSC_ERR_CONFIG, "--grid %s: key too long", spec);
    memcpy(ax->key, spec, klen);
    trim(ax->key);
    if (!strchr(ax->key, '.'))
        return tpsc_fail(TPSC_ERR_CONFIG, "--grid %s: key '%s' must be section.key, e.g. tps.keep_ratio", spec, ax->key);
    for (size_t i = 0; i < sizeof sweep_owned_keys / sizeof sweep_owned_keys[0]; i++)
        if (!strcmp(ax->key, sweep_owned_keys[i]))
            return tpsc_fail(TPSC_ERR_CONFIG, "--grid %s: %s is set by the sweep itself (one folder per point under --out)",
                             spec, ax->key);
    for (int a = 0; a < g->n_axes; a++)
        if (!strcmp(g->axes[a].key, ax->key))
            return tpsc_fail(TPSC_ERR_CONFIG, "--grid %s: key %s is already a grid axis", spec, ax->key);

    /* ';' separates values when present, so list values keep their commas */
    const char sep = strchr(eq + 1, ';') ? ';' : ',';
    const char *p = eq + 1;
    for (;;) {
        const char *end = strchr(p, sep);
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (ax->n_values == TPSC_SWEEP_MAX_VALUES)
            return tpsc_fail(TPSC_ERR_ARG, "--grid %s: at most %d values per key", spec, TPSC_SWEEP_MAX_VALUES);
        char *v = ax->values[ax->n_values];
        if (len >= TPSC_SWEEP_VALUE_MAX)
            return tpsc_fail(TPSC_ERR_CONFIG, "--grid %s: value '%.*s' longer than %d characters", spec, (int)len, p,
                             TPSC_SWEEP_VALUE_MAX - 1);
        memcpy(v, p, len);
        v[len] = '\0';
        trim(v);
        if (!v[0]) return tpsc_fail(TPSC_ERR_CONFIG, "--grid %s: empty value for %s", spec, ax->key);
        /* values travel through done.json and CSV unescaped */
        for (const char *c = v; *c; c++)
            if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
                return tpsc_fail(TPSC_ERR_CONFIG, "--grid %s: value '%s' of %s holds a quote, backslash or control "
                                 "character", spec, v, ax->key);
        for (int j = 0; j < ax->n_values; j++)
            if (!strcmp(ax->values[j], v))
                return tpsc_fail(TPSC_ERR_CONFIG, "--grid %s: value '%s' of %s given twice", spec, v, ax->key);
        ax->n_values++;
        if (!end) break;
        p = end + 1;
    }
    g->n_axes++;
    return TPSC_OK;
}

size_t tpsc_grid_size(const tpsc_sweep_grid *g) {
    size_t n = 1;
    for (int a = 0; a < g->n_axes; a++) n *= (size_t)g->axes[a].n_values;
    return n;
}

void tpsc_grid_point(const tpsc_sweep_grid *g, size_t i, int idx[TPSC_SWEEP_MAX_AXES]) {
    for (int a = g->n_axes - 1; a >= 0; a--) {
        size_t nv = (size_t)g->axes[a].n_values;
        idx[a] = (int)(i % nv);
        i /= nv;
    }
}

int tpsc_grid_find(const tpsc_sweep_grid *g, const char *key) {
    for (int a = 0; a < g->n_axes; a++)
        if (!strcmp(g->axes[a].key, key)) return a;
    return -1;
}

tpsc_status tpsc_grid_apply(const tpsc_sweep_grid *g, const int idx[TPSC_SWEEP_MAX_AXES], tpsc_recipe *r) {
    for (int a = 0; a < g->n_axes; a++) {
        char set[TPSC_SWEEP_KEY_MAX + TPSC_SWEEP_VALUE_MAX + 2];
        snprintf(set, sizeof set, "%s=%s", g->axes[a].key, g->axes[a].values[idx[a]]);
        tpsc_status st = tpsc_recipe_set(r, set);
        if (st != TPSC_OK) {
            tpsc_error_context("--grid %s: ", g->axes[a].key);
            return st;
        }
    }
    return TPSC_OK;
}

static const char *short_key(const tpsc_sweep_grid *g, int a) {
    const char *k = strchr(g->axes[a].key, '.') + 1;
    for (int b = 0; b < g->n_axes; b++)
        if (b != a && !strcmp(strchr(g->axes[b].key, '.') + 1, k)) return g->axes[a].key;
    return k;
}

tpsc_status tpsc_grid_run_name(const tpsc_sweep_grid *g, const int idx[TPSC_SWEEP_MAX_AXES], char *out, size_t cap) {
    char name[256];
    size_t n = 0;
    if (g->n_axes == 0) n = (size_t)snprintf(name, sizeof name, "base");
    for (int a = 0; a < g->n_axes && n < sizeof name; a++) {
        n += (size_t)snprintf(name + n, sizeof name - n, "%s%s-", a ? "_" : "", short_key(g, a));
        for (const char *v = g->axes[a].values[idx[a]]; *v && n + 1 < sizeof name; v++) {
            const bool safe = isalnum((unsigned char)*v) || *v == '.' || *v == '+' || *v == '-';
            name[n++] = safe ? *v : '+';
        }
        name[n < sizeof name ? n : sizeof name - 1] = '\0';
    }
    size_t limit = cap < TPSC_RECIPE_NAME_MAX ? cap : TPSC_RECIPE_NAME_MAX;
    if (n + 1 > limit || n + 1 > sizeof name)
        return tpsc_fail(TPSC_ERR_ARG, "sweep: run folder name '%s' has %zu characters, more than the %zu run.name holds "
                         "(fewer or shorter grid axes)", name, n, limit - 1);
    memcpy(out, name, n + 1);
    return TPSC_OK;
}

static bool allowed(const char *key, const char *const *prefixes) {
    if (!prefixes) return true;
    for (; *prefixes; prefixes++)
        if (!strncmp(key, *prefixes, strlen(*prefixes))) return true;
    return false;
}

tpsc_status tpsc_grid_check(const tpsc_sweep_grid *g, const tpsc_recipe *base, const char *const *allowed_prefixes) {
    for (int a = 0; a < g->n_axes; a++)
        if (!allowed(g->axes[a].key, allowed_prefixes)) {
            char list[128] = "";
            size_t n = 0;
            for (const char *const *p = allowed_prefixes; *p && n < sizeof list; p++)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s*", n ? ", " : "", *p);
            return tpsc_fail(TPSC_ERR_CONFIG, "--grid %s: this sweep only varies %s", g->axes[a].key, list);
        }
    const size_t n_points = tpsc_grid_size(g);
    tpsc_recipe *r = tpsc_malloc(sizeof *r, "sweep recipe copy");
    char(*names)[TPSC_RECIPE_NAME_MAX] = tpsc_calloc(n_points, sizeof *names, "sweep run names");
    tpsc_status st = (r && names) ? TPSC_OK : TPSC_ERR_NOMEM;
    for (size_t i = 0; st == TPSC_OK && i < n_points; i++) {
        int idx[TPSC_SWEEP_MAX_AXES];
        tpsc_grid_point(g, i, idx);
        st = tpsc_grid_run_name(g, idx, names[i], sizeof names[i]);
        if (st != TPSC_OK) break;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(names[j], names[i])) {
                st = tpsc_fail(TPSC_ERR_CONFIG, "sweep: two grid points share the run folder '%s' (values that differ "
                               "only in characters outside [A-Za-z0-9.+-])", names[i]);
                break;
            }
        if (st != TPSC_OK) break;
        *r = *base;
        st = tpsc_grid_apply(g, idx, r);
        if (st == TPSC_OK) {
            st = tpsc_recipe_validate(r);
            if (st != TPSC_OK) tpsc_error_context("sweep point %s: ", names[i]);
        }
    }
    tpsc_free(names);
    tpsc_free(r);
    return st;
}
