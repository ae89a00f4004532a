/* What both engines check on a path before libhdf5 opens it, in this order: the file exists,
 * is not a folder, opens, carries HDF5's signature (at byte 0, or 512, 1024, ... after a user
 * block), and its string heaps are sound (h5_heap.h). A file that fails is refused with the
 * message h5_file_problem writes, never handed to libhdf5. Plain reads, no allocation, no
 * HDF5 calls. h5_file_vet (h5_probe.h) adds libhdf5's own read of the metadata, in a child. */
#ifndef TPSC_COMMON_H5_FILE_H
#define TPSC_COMMON_H5_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    H5_FILE_OK,
    H5_FILE_MISSING,    /* stat failed (errno in *err) */
    H5_FILE_IS_FOLDER,
    H5_FILE_UNOPENED,   /* fopen failed (errno in *err) */
    H5_FILE_NOT_HDF5,
    H5_FILE_UNREADABLE, /* a read of the heap check failed (errno in *err) */
    H5_FILE_BAD_HEAP,   /* a corrupt string heap at byte *heap_at */
    H5_FILE_BAD_METADATA, /* libhdf5 crashed, hung or over-allocated reading it (h5_probe.h) */
    H5_FILE_BAD_SETTING   /* the probe's environment is wrong (TPSC_HDF5_PROBE_SECONDS): the file is not judged */
} h5_file_check;

/* What the checks found: the file's size (HDF5 readers bound a data set's claimed size by it)
 * and, on a failure, the problem for a message "PATH: <problem>". */
typedef struct {
    uint64_t bytes;
    char problem[192];
} h5_file_facts;

/* Runs the checks on path, filling *facts. */
h5_file_check h5_file_precheck(const char *path, h5_file_facts *facts);

/* True when the failure is the file's content (a format error), false when it is the file
 * system's (an I/O error) or the environment's (H5_FILE_BAD_SETTING, a configuration error). */
bool h5_file_check_is_format(h5_file_check c);

#endif
