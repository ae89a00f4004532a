/* Atomic file replacement: a reader (or the next run) sees either the old file or the complete
 * new one, never a half-written file, even if the writer is killed or the machine loses power.
 *
 * The content goes to "<path>.tmp-<pid>" in the same directory (rename is only atomic within one
 * filesystem), which is closed, fsynced, renamed over <path>, and the directory is fsynced so
 * the rename itself is durable. Temporaries left by writers that died (their pid no longer
 * runs) are removed at the start of the next write to the same path. */
#ifndef TPSC_IO_ATOMIC_H
#define TPSC_IO_ATOMIC_H

#include "src/util/status.h"

/* Writes the whole content to tmp_path (creating it) and closes it. Messages should name
 * final_path, which is what the user knows. */
typedef tpsc_status (*tpsc_atomic_writer)(const char *tmp_path, const char *final_path, void *user);

/* Runs `write` into a temporary and moves it over `path`. On failure the temporary is removed
 * and `path` is untouched. */
tpsc_status tpsc_atomic_write(const char *path, tpsc_atomic_writer write, void *user);

/* Checks that files can be created in `dir` (a run's checkpoint folder) by creating, writing and
 * removing a small probe file, so a run refuses to start rather than failing at its first
 * checkpoint hours later. The message names the folder and the reason. */
tpsc_status tpsc_check_writable_dir(const char *dir);

/* Test hook: called with the temporary's path after it is complete and synced, just before the
 * rename. Lets a test kill the writer at the worst moment. NULL (the default) disables it. */
typedef void (*tpsc_atomic_hook)(const char *tmp_path, void *user);
void tpsc_atomic_set_before_rename_hook(tpsc_atomic_hook hook, void *user);

#endif
