/* libhdf5's first read of an untrusted file, in a child process.
 *
 * libhdf5 1.10 (Debian 12) crashes or hangs on some malformed files (docs/reliability.md,
 * "libhdf5's own bugs"), inside its own parser, before a reader can say a word; checking its
 * bugs one by one from outside (h5_heap.h) never ends. So, as browsers do for untrusted
 * parsers, both engines let a forked child read the file's metadata first: it opens the file
 * and walks every group, link, object, attribute value and dataset header, and reads each
 * dataset's first and last element (all of it when it is at most 64 KB), never the bulk
 * data. The parent waits for it with a time bound. Only when the child finished does the
 * parent open the file itself; a child killed by a signal, one that exited without finishing
 * (a sanitizer's report), one that ran past the bound and one whose libhdf5 ran out of memory
 * (the child's address space is capped at what the file can justify) make the file refused.
 * An HDF5 error in the child is no verdict: the loaders then report it their own way.
 *
 * The environment: TPSC_HDF5_PROBE=off (or 0) skips the probe; TPSC_HDF5_PROBE_SECONDS sets the
 * bound, a whole number of seconds from 1 to 3600 (default 30 when unset). Any other value is an
 * error (H5_PROBE_BAD_SETTING, H5_FILE_BAD_SETTING) whose problem names the variable and its
 * value, never a silent default; with the probe off the bound is not read. A file that passed is remembered by device, inode, size,
 * modification and change times and, up to 1 MB, a hash of its bytes (16 files), so that a
 * loader that opens it several times forks once (a larger file changed in the last 100 ms is
 * not remembered).
 *
 * Threads: fork() copies only the calling thread. The child calls only HDF5, write() and
 * _exit(); a lock another thread held at the fork (HDF5's own, in its thread-safe build) would
 * block the child, which the bound then reports as a hang. Callers fork with their own HDF5
 * lock held. The fork copies page tables only, but the parent then takes a copy-on-write fault
 * on each page it writes that existed at the fork: readers probe at their first open, before
 * they allocate what the file fills (docs/reliability.md, "Cost"). When fork() itself fails the
 * file is opened unprobed. */
#ifndef TPSC_COMMON_H5_PROBE_H
#define TPSC_COMMON_H5_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/common/h5_file.h"

typedef enum {
    H5_PROBE_CLEAN,   /* the child read the metadata (HDF5 errors included) and exited */
    H5_PROBE_CRASHED, /* killed by a signal or exited without finishing */
    H5_PROBE_HUNG,    /* still running at the bound: killed */
    H5_PROBE_NOMEM,   /* libhdf5 asked for more memory than the file can justify */
    H5_PROBE_SKIPPED, /* turned off, or fork() failed */
    H5_PROBE_BAD_SETTING /* TPSC_HDF5_PROBE_SECONDS is set but not a bound: no child ran */
} h5_probe_verdict;

/* Whether the environment leaves the probe on (TPSC_HDF5_PROBE). */
bool h5_probe_enabled(void);

/* Probes the file at path (file_bytes long), or, path NULL, the file image image[0, bytes)
 * through HDF5's core driver. On a refusal writes "corrupt HDF5 metadata: libhdf5 ..." into
 * problem (cap bytes); on H5_PROBE_BAD_SETTING, "TPSC_HDF5_PROBE_SECONDS is '...': ...". Runs whatever the environment says; callers check h5_probe_enabled. */
h5_probe_verdict h5_probe(const char *path, const void *image, uint64_t bytes, char *problem, size_t cap);

/* Forgets the files that passed, so that the next open of each is probed again (benchmarks). */
void h5_probe_forget(void);

/* h5_file_precheck (h5_file.h), then, when probe is true and the environment leaves it on,
 * h5_probe: the one gate before libhdf5 opens an untrusted file. */
h5_file_check h5_file_vet(const char *path, bool probe, h5_file_facts *facts);

#endif
