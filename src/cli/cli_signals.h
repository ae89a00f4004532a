/* SIGTERM (what SLURM sends before it kills a preempted job) and SIGINT (Ctrl-C) during
 * `tpsc train` and `tpsc sweep`: the first asks the trainer to stop at the next step boundary
 * after writing a resumable last.h5 (src/train/stop.h); a second one exits at once. */
#ifndef TPSC_CLI_SIGNALS_H
#define TPSC_CLI_SIGNALS_H

/* Installs the handlers (first signal: stop request; second: _exit(128 + signal)). */
void cli_stop_on_signals(void);

/* The conventional exit code of a run stopped by a signal: 128 + the signal (130 for SIGINT,
 * 143 for SIGTERM); 1 when no signal was recorded. */
int cli_interrupted_exit_code(void);

#endif
