/* For the harnesses whose input is an HDF5 file.
 *
 * libhdf5 1.10 (Debian 12) allocates, inside its own type conversion, whatever length a corrupt
 * variable-length string claims (H5T__conv_vlen), before it checks the heap it points into; a
 * 3 KB file can make it touch gigabytes. Our code cannot see those allocations coming, so here
 * allocations above 1 GB fail (return NULL, which libhdf5 reports as an error) instead of
 * ending the run; an allocation of ours that fails is caught by the NOMEM checks below, since
 * a file we refuse before allocating never gets that far.
 *
 * After each input no HDF5 object (file,
 * dataset, attribute, ...) may still be open, which is how our own handle leaks show, since
 * HDF5 frees its memory only when the last handle goes. Leaks inside libhdf5's own error paths
 * (it is not built with frame pointers, so their stacks stop in libhdf5) are suppressed below.
 *
 * The loaders let a child process read a file's metadata before libhdf5 reads it here
 * (src/common/h5_probe.h), so an input on which libhdf5 crashes or hangs is refused with a
 * message; the child's bound is set well below libFuzzer's -timeout (10 s in scripts/fuzz.sh),
 * so that a hang in libhdf5 is such a refusal, not a timeout of the harness. */
#ifndef TPSC_FUZZ_H5_H
#define TPSC_FUZZ_H5_H

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>

static inline void fuzz_h5_check_closed(const char *what) {
    ssize_t open = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open != 0) {
        fprintf(stderr, "%s left %zd HDF5 objects open\n", what, open);
        abort();
    }
}

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5_serial.so\n"; }
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1:max_allocation_size_mb=1024"; }

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    setenv("TPSC_HDF5_PROBE_SECONDS", "3", 0);
    return 0;
}

/* A status of ours that says we ran out of memory: the file made us allocate past the cap. */
static inline void fuzz_h5_no_nomem(int is_nomem, const char *what, const char *msg) {
    if (is_nomem) {
        fprintf(stderr, "%s: out of memory on a small input: %s\n", what, msg);
        abort();
    }
}

#endif
