/* Reading a file whole in tests (logs, reports, checkpoints as bytes). Test-only: a file that
 * cannot be read is a Criterion assertion naming it. */
#ifndef TPSC_TESTS_FILES_H
#define TPSC_TESTS_FILES_H

#include <stddef.h>

/* The bytes of path, malloc'd with a NUL after them (text or binary; the caller frees);
 * *len (may be NULL) receives their count. */
char *tfile_read(const char *path, size_t *len);

#endif
