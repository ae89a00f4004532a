/* Write-fault injection, a test hook: makes the writes to chosen files fail partway, as a full
 * disk (ENOSPC) or a failing device (EIO) would, so that every error path of a checkpoint,
 * metrics.jsonl or sweep-result write can be exercised without a small filesystem.
 *
 * The writers (HDF5 datasets and attributes in h5util.c, metrics.jsonl in the trainer, the sweep
 * text files) report each write to tpsc_io_fault_write(path, bytes) before calling it done.
 * Writes to paths containing SUBSTRING succeed until BYTES of them (summed over files) have
 * been written; from then on every one fails with the errno given.
 *
 * Set from the environment, read at the first write:
 *     TPSC_FAULT_WRITE=SUBSTRING:ERRNO[:BYTES]      ERRNO is ENOSPC or EIO, BYTES default 0
 * e.g. TPSC_FAULT_WRITE=last.h5:ENOSPC:150000, or from a test with tpsc_io_fault_set. Unset
 * (the default), the hook costs one relaxed load per write. */
#ifndef TPSC_IO_FAULT_H
#define TPSC_IO_FAULT_H

#include <stddef.h>

/* Accounts `bytes` written to `path`; returns the errno to fail this write with, 0 to go on. */
int tpsc_io_fault_write(const char *path, size_t bytes);

/* Arms the hook (substring NULL disarms it) and resets the byte count. Not thread-safe against
 * concurrent writers: arm it before the run. */
void tpsc_io_fault_set(const char *substring, int err, size_t after_bytes);

#endif
