/* `tpsc sweep`: runs every point of a grid, each in its own folder, resumably, and writes the
 * tables (docs/sweeps.md).
 *
 * Training sweep (checkpoint NULL): point i trains base + grid values with run.out_dir = out,
 * run.name = its folder name. A folder with done.json is finished and skipped (its row is read
 * back); a folder with last.h5 but no done.json was interrupted and continues from last.h5
 * (run.resume), so a sweep killed at any moment picks up where it stopped. done.json is written
 * last, atomically, after the run's final evaluation.
 * Evaluation sweep (checkpoint set): base is the checkpoint's own recipe; each point evaluates
 * the checkpoint's weights (EMA when stored) with the point's tps.* / data.* values, e.g.
 * several inference keep ratios, without training.
 * Several sweep processes on one machine may share out_dir: a point being run holds
 * <run>/lock (the pid), and the others pass over it (counted busy, left out of their tables),
 * so starting the same command twice runs the grid two points at a time. A lock whose
 * process is gone is taken over.
 * A finished folder whose recipe differs from the point's (another base recipe or --set under
 * the same --out) is an error, not a silent reuse. */
#ifndef TPSC_SWEEP_SWEEP_H
#define TPSC_SWEEP_SWEEP_H

#include "src/sweep/results.h"

/* Called before each point with what is about to happen: "skipped (finished)", "training",
 * "resuming from <run>/last.h5", "evaluating"; and after it with done = true. */
typedef void (*tpsc_sweep_progress)(void *user, size_t index, size_t points, const char *run, const char *what,
                                    bool done);

typedef struct tpsc_sweep_opts {
    const char *out_dir;     /* the sweep's folder: <out_dir>/<run>/ per point, tables at the top */
    const char *checkpoint;  /* evaluation-only sweep of this checkpoint; NULL: train each point */
    int threads;             /* run.threads for every point; < 0: as the recipe says */
    /* Training sweeps: run each point as `<launcher> <exe> train <run>/launch.ini` in its own
     * processes, e.g. launcher "mpirun -np 4" for data-parallel points, and read its results
     * back from metrics.jsonl. NULL or "": in this process. */
    const char *launcher;
    const char *exe;         /* the tpsc executable for launcher */
    tpsc_sweep_progress progress; /* NULL: none (library code prints nothing itself) */
    void *progress_user;
} tpsc_sweep_opts;

typedef struct tpsc_sweep_counts {
    size_t points, skipped, resumed, trained, evaluated;
    size_t busy;             /* left to another sweep process running them */
} tpsc_sweep_counts;

/* Keys an evaluation-only sweep may vary: NULL-terminated prefixes. */
extern const char *const tpsc_sweep_eval_keys[];

/* Runs (or skips) every point in grid order, rewriting results.csv, summary.csv and
 * results.md in out_dir after each one. rows: tpsc_grid_size(g) entries, filled in order.
 * Checks the whole grid (tpsc_grid_check) before the first run. On failure the message names
 * the point's folder; the tables hold the points finished before it. */
tpsc_status tpsc_sweep_run(const tpsc_recipe *base, const tpsc_sweep_grid *g, const tpsc_sweep_opts *o,
                           tpsc_sweep_row *rows, tpsc_sweep_counts *counts);

/* results.csv, summary.csv and results.md in out_dir for the first n rows. */
tpsc_status tpsc_sweep_write_tables(const char *out_dir, const tpsc_sweep_grid *g, const tpsc_sweep_row *rows, size_t n);

/* The recipe a checkpoint was trained with (stored in it), for an evaluation sweep's base. */
tpsc_status tpsc_sweep_checkpoint_recipe(const char *checkpoint, tpsc_recipe *r);

#endif
