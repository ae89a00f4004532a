/* The progress line: epoch, step/total, loss parts, lr, images/s, ETA. On a terminal it
 * rewrites one line in place; in a log (not a tty) it prints a line every `every` steps, so a
 * CI log or `tee` shows steady progress and nobody wonders whether the run hangs. */
#ifndef TPSC_TRAIN_PROGRESS_H
#define TPSC_TRAIN_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct tpsc_progress {
    FILE *out;
    bool tty;
    int every;            /* non-tty: print every N steps */
    double t_start;       /* wall-clock seconds at the first step */
    int64_t step_start;   /* global step at the start (after a resume) */
    int64_t total_steps;
    double last_print;
    int ranks;            /* MPI ranks behind images_per_s (shown when > 1); init sets 1 */
} tpsc_progress;

/* out = NULL: print nothing (MPI ranks other than 0). */
void tpsc_progress_init(tpsc_progress *p, FILE *out, int every, int64_t start_step, int64_t total_steps);
/* `parts` is a short preformatted "loss 1.234 ce 1.2 ratio 0.01" string. */
void tpsc_progress_step(tpsc_progress *p, int epoch, int epochs, int64_t step_in_epoch, int64_t steps_per_epoch,
                        int64_t global_step, const char *parts, double lr, double images_per_s);
/* Ends the in-place line (before other output). */
void tpsc_progress_break(tpsc_progress *p);
/* Seconds since an arbitrary origin (monotonic). */
double tpsc_now(void);
/* "1h02m", "3m20s", "42s" */
const char *tpsc_format_duration(double seconds, char *buf, size_t len);

#endif
