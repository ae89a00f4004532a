/* Sweep grids: `--grid section.key=v1,v2,...` axes, their cartesian product, and the folder
 * name of each point (docs/sweeps.md).
 *
 *     tpsc_sweep_grid g = {0};
 *     TPSC_TRY(tpsc_grid_add(&g, "tps.keep_ratio=0.5,0.7"));
 *     TPSC_TRY(tpsc_grid_add(&g, "tps.method=dynamicvit,dtps"));
 *     TPSC_TRY(tpsc_grid_check(&g, &base_recipe, NULL));     // every point, before any run
 *     for (size_t i = 0; i < tpsc_grid_size(&g); i++) {
 *         tpsc_grid_point(&g, i, idx);                         // idx[a]: value index on axis a
 *         tpsc_grid_run_name(&g, idx, name, sizeof name);      // "keep_ratio-0.5_method-dtps"
 *         tpsc_grid_apply(&g, idx, &r);                        // tpsc_recipe_set per axis
 *     }
 *
 * Values are separated by ','; a key whose values are themselves lists (tps.prune_loc) takes
 * ';' between values instead: "tps.prune_loc=2,3,5;1,3,5". Every value goes through
 * tpsc_recipe_set, so a bad key or value gets the recipe's own error naming it. */
#ifndef TPSC_SWEEP_GRID_H
#define TPSC_SWEEP_GRID_H

#include <stddef.h>

#include "src/recipe/recipe.h"

#define TPSC_SWEEP_MAX_AXES 8
#define TPSC_SWEEP_MAX_VALUES 32
#define TPSC_SWEEP_VALUE_MAX 64   /* one value, with its NUL */
#define TPSC_SWEEP_KEY_MAX 64     /* "section.key", with its NUL */

typedef struct tpsc_sweep_axis {
    char key[TPSC_SWEEP_KEY_MAX];                             /* "tps.keep_ratio" */
    char values[TPSC_SWEEP_MAX_VALUES][TPSC_SWEEP_VALUE_MAX]; /* as written, trimmed */
    int n_values;
} tpsc_sweep_axis;

typedef struct tpsc_sweep_grid {
    tpsc_sweep_axis axes[TPSC_SWEEP_MAX_AXES];
    int n_axes;
} tpsc_sweep_grid;

/* Adds one axis from "section.key=v1,v2,...". Errors (TPSC_ERR_CONFIG / TPSC_ERR_ARG) name the
 * spec: no '=', no value, an empty value, too many values or axes, a key given twice, the same
 * value twice, a key the sweep sets itself (run.name, run.out_dir, run.resume). The key and
 * the values are checked against the recipe schema by tpsc_grid_check. */
tpsc_status tpsc_grid_add(tpsc_sweep_grid *g, const char *spec);

/* Number of points: the product of the axis lengths (1 for an empty grid). */
size_t tpsc_grid_size(const tpsc_sweep_grid *g);

/* idx[a] for point i; the first axis varies slowest (nested loops in the order given). */
void tpsc_grid_point(const tpsc_sweep_grid *g, size_t i, int idx[TPSC_SWEEP_MAX_AXES]);

/* Applies the point's values to r with tpsc_recipe_set, in axis order; the error names the
 * grid value and the recipe's own complaint ("--grid tps.keep_ratio=1.5: ..."). Does not run
 * the cross-key checks (call tpsc_recipe_validate). */
tpsc_status tpsc_grid_apply(const tpsc_sweep_grid *g, const int idx[TPSC_SWEEP_MAX_AXES], tpsc_recipe *r);

/* The run folder of a point: "<key>-<value>" per axis in axis order, joined by '_', with
 * <key> the key without its section ("keep_ratio") unless two axes share it (then
 * "tps.keep_ratio"). Characters outside [A-Za-z0-9.+-] in a value become '+', so
 * "2,3,5" -> "2+3+5". An empty grid names its single point "base". TPSC_ERR_ARG when the
 * name does not fit run.name (TPSC_RECIPE_NAME_MAX - 1 characters) or cap. */
tpsc_status tpsc_grid_run_name(const tpsc_sweep_grid *g, const int idx[TPSC_SWEEP_MAX_AXES], char *out, size_t cap);

/* Every point on top of base: each value parses (tpsc_recipe_set), the combination passes
 * tpsc_recipe_validate, names fit and no two points share a folder name. allowed_prefixes
 * (NULL-terminated, or NULL for all keys) restricts the keys, e.g. {"tps.", "data.", NULL}
 * for an evaluation-only sweep. The first failure is returned, naming the key and point. */
tpsc_status tpsc_grid_check(const tpsc_sweep_grid *g, const tpsc_recipe *base, const char *const *allowed_prefixes);

/* Index of the axis with this key ("run.seed"), or -1. */
int tpsc_grid_find(const tpsc_sweep_grid *g, const char *key);

#endif
