/* Stop requests for a running training (preemption: SLURM's SIGTERM, a user's Ctrl-C).
 *
 * The CLI's signal handler calls tpsc_train_request_stop; the trainer looks at the flag at
 * every step boundary, writes a resumable last.h5 (atomically), and returns
 * TPSC_ERR_INTERRUPTED. Library code installs no handler itself. Under MPI the ranks agree on
 * the flag at each step (the largest signal number wins), so they stop at the same step. */
#ifndef TPSC_TRAIN_STOP_H
#define TPSC_TRAIN_STOP_H

/* Records signo (> 0) unless a signal is already recorded, and returns the one recorded before
 * (0: none, so this call asked for the stop). Async-signal-safe: one compare-and-swap on a
 * lock-free atomic. Two signals may arrive together on two threads (SIGINT and SIGTERM
 * delivered on SIGCONT land on whichever threads do not block them), so the test and the store
 * must be one step: exactly one caller sees 0. */
int tpsc_train_request_stop(int signo);

/* The signal recorded (0: none). */
int tpsc_train_stop_signal(void);

#endif
