/* Running the built tpsc from a test. Test-only: a command that cannot be started is a
 * Criterion assertion. */
#ifndef TPSC_TESTS_COMMAND_H
#define TPSC_TESTS_COMMAND_H

#include <stddef.h>

/* Runs `<build>/tpsc args` with stdout and stderr into out (NUL-terminated, cut at size - 1);
 * returns its exit status (-1: it did not exit normally). */
int tcmd_tpsc(const char *args, char *out, size_t size);

#endif
