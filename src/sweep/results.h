/* Sweep results: one row per run, its done.json marker, results.csv, summary.csv and
 * results.md. See docs/sweeps.md for the columns. */
#ifndef TPSC_SWEEP_RESULTS_H
#define TPSC_SWEEP_RESULTS_H

#include <stdbool.h>
#include <stdint.h>

#include "src/sweep/grid.h"

typedef struct tpsc_sweep_row {
    char run[TPSC_RECIPE_NAME_MAX];      /* folder under the sweep's --out */
    char method[16];                     /* tps method name */
    char keep_ratio[64];                 /* tps.keep_ratio as the recipe holds it: "0.7" or "0.7;0.5" */
    char keep_frac[96];                  /* cumulative kept fraction per stage: "0.7;0.49;0.343" */
    int seed;
    double gmacs, top1, top5, images_per_s; /* as tpsc_eval_result (GMACs per image) */
    double train_seconds;                /* this process's part of the training; 0 = evaluation only */
    int64_t steps;
    bool resumed;                        /* training continued from an earlier last.h5 */
    bool busy;                           /* being run by another sweep process: no result here */
    uint64_t recipe_hash;                /* of the point's normalised recipe text (sweep.c) */
    char values[TPSC_SWEEP_MAX_AXES][TPSC_SWEEP_VALUE_MAX]; /* the grid values of the point */
} tpsc_sweep_row;

/* The marker of a finished run: dir/done.json, written atomically, holding the row. */
tpsc_status tpsc_sweep_write_done(const char *dir, const tpsc_sweep_row *row, const tpsc_sweep_grid *g);
/* Reads dir/done.json back. TPSC_ERR_MISSING (no message needed by callers that only ask
 * "is it done?") when absent; TPSC_ERR_FORMAT naming the file and field when damaged. */
tpsc_status tpsc_sweep_read_done(const char *dir, const tpsc_sweep_grid *g, tpsc_sweep_row *row);

/* A small text file written atomically (the point's recipe.ini). */
tpsc_status tpsc_sweep_write_text(const char *path, const char *text);

/* The writers below leave out rows marked busy. */

/* results.csv: header then one line per row, fixed columns first (run, method, keep_ratio,
 * keep_frac, seed, gmacs_per_image, top1, top5, images_per_s, train_seconds, steps, resumed),
 * then one column per grid key. Written atomically. */
tpsc_status tpsc_sweep_write_csv(const char *path, const tpsc_sweep_grid *g, const tpsc_sweep_row *rows, size_t n);

/* One group of rows that differ only in run.seed: mean and spread over seeds. */
typedef struct tpsc_sweep_group {
    char label[TPSC_RECIPE_NAME_MAX * 2]; /* the grid values without the seed: "keep_ratio=0.5 method=dtps" */
    char method[16], keep_ratio[64];
    int n;                               /* runs (seeds) in the group */
    double gmacs, top1_mean, top1_min, top1_max, top1_std, top5_mean, images_per_s, train_seconds;
} tpsc_sweep_group;

/* Groups rows by every grid value except run.seed, sorted by method then GMACs (the order of
 * the plot's lines). groups must hold n entries; returns the count in *n_groups. */
void tpsc_sweep_group_rows(const tpsc_sweep_grid *g, const tpsc_sweep_row *rows, size_t n, tpsc_sweep_group *groups,
                           size_t *n_groups);

/* summary.csv: method, keep_ratio, gmacs_per_image, top1_mean, top1_min, top1_max, top1_std,
 * top5_mean, images_per_s, train_seconds, n_runs, group; the file the plot reads. */
tpsc_status tpsc_sweep_write_summary_csv(const char *path, const tpsc_sweep_group *groups, size_t n);

/* results.md: the per-seed summary table and the per-run table, Markdown. */
tpsc_status tpsc_sweep_write_markdown(const char *path, const tpsc_sweep_grid *g, const tpsc_sweep_row *rows, size_t n,
                                      const tpsc_sweep_group *groups, size_t n_groups);

#endif
