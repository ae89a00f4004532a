/* A structural check of the global heap collections ("GCOL") of an HDF5 file, which hold
 * variable-length strings (attributes such as a model's arch and class names, h5py's str
 * data sets).
 *
 * libhdf5 1.10 (Debian 12) walks a collection's objects without bounds checks
 * (H5HG__cache_heap_deserialize, then H5HG_read): an object size that overruns the collection
 * makes it read or copy out of bounds, and a zero-sized free-space object makes it loop
 * forever. A corrupt file can thus crash or hang any reader before it can say a word
 * (docs/reliability.md). Both engines run this check on a file before HDF5 opens it: every
 * collection found (signature, version 1, reserved bytes zero) must lie inside the file and
 * its objects must tile it exactly as HDF5 will walk them. Plain reads, no allocation. */
#ifndef TPSC_COMMON_H5_HEAP_H
#define TPSC_COMMON_H5_HEAP_H

#include <stdint.h>

/* 1: a corrupt collection at byte *where of the open file fd (file_bytes long); 0: none (or
 * the file uses lengths other than 8 bytes, which this check does not read); -1: a read
 * failed (errno set). */
int h5_heap_find_corrupt(int fd, uint64_t file_bytes, uint64_t *where);

#endif
