/* The lock of one sweep point: <dir>/lock holding the pid of the sweep process running it,
 * created exclusively, so several sweep processes sharing one --out run different points.
 *
 * A lock whose process is gone is taken over. A lock without a readable pid is either being
 * written this instant (open and write are two calls) or was left by a writer killed between
 * them; it counts as live only while it is younger than TPSC_SWEEP_LOCK_GRACE_S seconds, so a
 * damaged lock file never blocks its point for ever. */
#ifndef TPSC_SWEEP_LOCK_H
#define TPSC_SWEEP_LOCK_H

#include <stdbool.h>

#include "src/util/status.h"

#define TPSC_SWEEP_LOCK_GRACE_S 30

/* Takes dir/lock. *taken = false (and TPSC_OK) when a live process holds it. */
tpsc_status tpsc_sweep_lock(const char *dir, bool *taken);
/* Removes dir/lock (ours). */
void tpsc_sweep_unlock(const char *dir);

#endif
